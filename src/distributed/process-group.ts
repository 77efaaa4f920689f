// The process group of a data-parallel job: c10d's TCPStore rendezvous and Gloo or NCCL
// collectives from the addon (native/distributed.cc), with torch.distributed's names
// (init_process_group, all_reduce, broadcast, barrier) and its choice of backend (NCCL for CUDA
// tensors, Gloo for CPU ones). With Gloo a collective returns once every rank took part; a rank
// that exits makes the others' next collective fail at once, one that hangs fails them after the
// group's timeout, and the error names this rank and what it was doing. With NCCL the host does
// not wait for the GPU: a failed peer is caught by NCCL's watchdog after the timeout, which ends
// the process (torch.distributed's NCCL behaviour).
import { native } from '../tensor/native.js';
import { type Device, fromBytes, type Tensor, tensor, tidy } from '../tensor/tensor.js';
import type { World } from './world.js';

/** A collective that failed: a peer stopped, hung past the timeout, or could not be reached. */
export class DistributedError extends Error {}

export type ReduceOp = 'sum' | 'avg' | 'max' | 'min';

/** c10d's collective engines: Gloo (CPU tensors, and CUDA ones through host memory), NCCL (CUDA tensors only). */
export type DistBackend = 'gloo' | 'nccl';

/** `--dist-backend`: a backend, or 'auto' for torch.distributed's default by device. */
export type DistBackendChoice = 'auto' | DistBackend;

/** The backends this build of the addon has (NCCL only in a build against a CUDA torch with NCCL's headers). */
export function availableBackends(): DistBackend[] {
  return native.distBackends();
}

/**
 * The backend a job on `device` uses: `auto` is torch.distributed's default, NCCL for a CUDA
 * device and Gloo for the CPU; on a CUDA device of a build without NCCL, auto takes Gloo (which
 * all-reduces CUDA tensors through host memory) and says so in `note`. Throws DistributedError
 * when the choice cannot work: NCCL on the CPU, or a backend this build lacks (naming what is
 * missing).
 */
export function resolveBackend(choice: DistBackendChoice, device: string, available: readonly DistBackend[] = availableBackends()): { backend: DistBackend; note: string | null } {
  const cuda = device !== 'cpu';
  if (choice === 'nccl' && !cuda) {
    throw new DistributedError(`--dist-backend nccl needs a CUDA device: NCCL moves CUDA tensors only, and this job trains on ${device}; use --dist-backend gloo (or auto) on the CPU, or --device cuda`);
  }
  if (choice === 'auto') {
    if (!cuda) choice = 'gloo';
    else if (available.includes('nccl')) return { backend: 'nccl', note: null };
    else {
      if (!available.includes('gloo')) throw new DistributedError(native.distMissing('gloo'));
      return { backend: 'gloo', note: `--dist-backend auto on ${device} uses gloo: ${native.distMissing('nccl')}` };
    }
  }
  if (!available.includes(choice)) throw new DistributedError(native.distMissing(choice));
  return { backend: choice, note: null };
}

export interface ProcessGroupOptions {
  /** How long a collective (and the rendezvous) waits for the other ranks, in seconds. */
  timeoutSeconds: number;
  /** The network interface Gloo uses (GLOO_SOCKET_IFNAME); default: chosen from MASTER_ADDR. */
  networkInterface?: string;
  /** The collective engine (default gloo); see {@link resolveBackend}. */
  backend?: DistBackend;
  /**
   * The device of this rank's model (default cpu). NCCL reduces CUDA tensors only, so the group
   * stages its own small buffers (metric sums, the start's JSON) there.
   */
  device?: Device;
}

/**
 * Tensors travel in flat buckets of this many bytes (torch's DDP default, bucket_cap_mb = 25):
 * one collective per bucket instead of one per parameter.
 */
export const BUCKET_BYTES = 25 * 1024 * 1024;

/** This process's membership in the job; one per process (c10d's default group). */
export class ProcessGroup {
  private destroyed = false;

  private constructor(readonly world: World, readonly backend: DistBackend, readonly device: Device) {}

  get rank(): number {
    return this.world.rank;
  }

  get size(): number {
    return this.world.size;
  }

  /** Joins the job: rank 0 serves the store at MASTER_ADDR:MASTER_PORT, every rank connects (blocks until all did, or the timeout). */
  static init(world: World, options: ProcessGroupOptions): ProcessGroup {
    const backend = options.backend ?? 'gloo';
    const device = options.device ?? 'cpu';
    if (!availableBackends().includes(backend)) throw new DistributedError(native.distMissing(backend));
    if (backend === 'nccl' && device === 'cpu') throw new DistributedError('the nccl backend needs a CUDA device: NCCL moves CUDA tensors only');
    const group = new ProcessGroup(world, backend, device);
    group.call(`joining the job at ${world.masterAddr}:${world.masterPort} (${backend})`, () => {
      native.distInit(world.rank, world.size, world.masterAddr, world.masterPort, Math.round(options.timeoutSeconds * 1000), options.networkInterface ?? process.env.GLOO_SOCKET_IFNAME ?? '', backend);
    });
    return group;
  }

  /** In place on every rank: the element-wise sum (mean, max, min) over ranks. */
  allReduce(tensors: readonly Tensor[], op: ReduceOp = 'sum', what = 'all-reduce'): void {
    if (tensors.length === 0) return;
    this.checkDevices(tensors, what);
    this.call(what, () => native.distAllReduce(tensors.map((item) => item.handle), op, BUCKET_BYTES));
  }

  /** Numbers reduced over ranks (float64), e.g. metric sums. */
  allReduceNumbers(values: readonly number[], op: ReduceOp = 'sum', what = 'all-reduce of metrics'): number[] {
    return tidy(() => {
      const buffer = this.staged(tensor(Float64Array.from(values)));
      this.allReduce([buffer], op, what);
      return Array.from(buffer.toTypedArray() as Float64Array);
    });
  }

  /** In place: every rank's tensors take rank `root`'s values. */
  broadcast(tensors: readonly Tensor[], root = 0, what = 'broadcast'): void {
    this.checkRoot(root);
    if (tensors.length === 0) return;
    this.checkDevices(tensors, what);
    this.call(what, () => native.distBroadcast(tensors.map((item) => item.handle), root, BUCKET_BYTES));
  }

  /** Rank `root`'s value (any JSON) on every rank; the others pass undefined. */
  broadcastJson<T>(value: T | undefined, root = 0, what = 'broadcast'): T {
    this.checkRoot(root);
    const bytes = this.rank === root ? new TextEncoder().encode(JSON.stringify(value ?? null)) : new Uint8Array(0);
    const length = tidy(() => {
      const buffer = this.staged(tensor(Float64Array.of(bytes.length)));
      this.broadcast([buffer], root, what);
      return (buffer.toTypedArray() as Float64Array)[0]!;
    });
    const received = tidy(() => {
      const buffer = this.staged(this.rank === root ? fromBytes(bytes, 'uint8', [length]) : fromBytes(new Uint8Array(length), 'uint8', [length]));
      this.broadcast([buffer], root, what);
      return new Uint8Array(buffer.toBytes());
    });
    return JSON.parse(new TextDecoder().decode(received)) as T;
  }

  /** Returns once every rank reached it. */
  barrier(what = 'barrier'): void {
    this.call(what, () => native.distBarrier());
  }

  /** Leaves the job (destroy_process_group); the process may join another one afterwards. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    native.distDestroy();
  }

  /** A host-made buffer where this group's backend can reach it: the rank's GPU for NCCL, as is for Gloo. */
  private staged(buffer: Tensor): Tensor {
    return this.backend === 'nccl' ? buffer.to({ device: this.device }) : buffer;
  }

  /** NCCL would refuse a CPU tensor with its own words; say which collective got one. */
  private checkDevices(tensors: readonly Tensor[], what: string): void {
    if (this.backend !== 'nccl') return;
    const index = tensors.findIndex((item) => item.device === 'cpu');
    if (index >= 0) throw new DistributedError(`rank ${this.rank}: ${what}: tensor ${index} is on the CPU, and the nccl backend moves CUDA tensors only (use --dist-backend gloo for CPU tensors)`);
  }

  private checkRoot(root: number): void {
    if (!(Number.isInteger(root) && root >= 0 && root < this.size)) throw new RangeError(`broadcast: root ${root} is not a rank of this job (0..${this.size - 1})`);
  }

  private call(what: string, body: () => void): void {
    if (this.destroyed) throw new DistributedError(`rank ${this.rank}: ${what}: the process group was destroyed`);
    try {
      body();
    } catch (error) {
      const message = (error as Error).message.replace(/^dist\w+\([^)]*\): /, '');
      throw new DistributedError(`rank ${this.rank} of ${this.size}: ${what} failed: ${message}. ` +
        'Another rank probably stopped or cannot be reached; its own output says why');
    }
  }
}
