// The process group of a data-parallel job: c10d's TCPStore rendezvous and Gloo collectives from
// the addon (native/distributed.cc), with torch.distributed's names (init_process_group,
// all_reduce, broadcast, barrier). A collective returns once every rank took part; a rank that
// exits makes the others' next collective fail at once, one that hangs fails them after the
// group's timeout. Either way the error names this rank and what it was doing.
import { native } from '../tensor/native.js';
import { fromBytes, type Tensor, tensor, tidy } from '../tensor/tensor.js';
import type { World } from './world.js';

/** A collective that failed: a peer stopped, hung past the timeout, or could not be reached. */
export class DistributedError extends Error {}

export type ReduceOp = 'sum' | 'avg' | 'max' | 'min';

export interface ProcessGroupOptions {
  /** How long a collective (and the rendezvous) waits for the other ranks, in seconds. */
  timeoutSeconds: number;
  /** The network interface Gloo uses (GLOO_SOCKET_IFNAME); default: chosen from MASTER_ADDR. */
  networkInterface?: string;
}

/**
 * Tensors travel in flat buckets of this many bytes (torch's DDP default, bucket_cap_mb = 25):
 * one collective per bucket instead of one per parameter.
 */
export const BUCKET_BYTES = 25 * 1024 * 1024;

/** This process's membership in the job; one per process (c10d's default group). */
export class ProcessGroup {
  private destroyed = false;

  private constructor(readonly world: World) {}

  get rank(): number {
    return this.world.rank;
  }

  get size(): number {
    return this.world.size;
  }

  /** Joins the job: rank 0 serves the store at MASTER_ADDR:MASTER_PORT, every rank connects (blocks until all did, or the timeout). */
  static init(world: World, options: ProcessGroupOptions): ProcessGroup {
    if (!native.distAvailable()) {
      throw new DistributedError('this build of masksub has no distributed support: gloo\'s headers were not found when the addon was built (Debian: apt-get install -y libgloo-dev, then npm rebuild masksub)');
    }
    const group = new ProcessGroup(world);
    group.call(`joining the job at ${world.masterAddr}:${world.masterPort}`, () => {
      native.distInit(world.rank, world.size, world.masterAddr, world.masterPort, Math.round(options.timeoutSeconds * 1000), options.networkInterface ?? process.env.GLOO_SOCKET_IFNAME ?? '');
    });
    return group;
  }

  /** In place on every rank: the element-wise sum (mean, max, min) over ranks. */
  allReduce(tensors: readonly Tensor[], op: ReduceOp = 'sum', what = 'all-reduce'): void {
    if (tensors.length === 0) return;
    this.call(what, () => native.distAllReduce(tensors.map((item) => item.handle), op, BUCKET_BYTES));
  }

  /** Numbers reduced over ranks (float64), e.g. metric sums. */
  allReduceNumbers(values: readonly number[], op: ReduceOp = 'sum', what = 'all-reduce of metrics'): number[] {
    return tidy(() => {
      const buffer = tensor(Float64Array.from(values));
      this.allReduce([buffer], op, what);
      return Array.from(buffer.toTypedArray() as Float64Array);
    });
  }

  /** In place: every rank's tensors take rank `root`'s values. */
  broadcast(tensors: readonly Tensor[], root = 0, what = 'broadcast'): void {
    this.checkRoot(root);
    if (tensors.length === 0) return;
    this.call(what, () => native.distBroadcast(tensors.map((item) => item.handle), root, BUCKET_BYTES));
  }

  /** Rank `root`'s value (any JSON) on every rank; the others pass undefined. */
  broadcastJson<T>(value: T | undefined, root = 0, what = 'broadcast'): T {
    this.checkRoot(root);
    const bytes = this.rank === root ? new TextEncoder().encode(JSON.stringify(value ?? null)) : new Uint8Array(0);
    const length = tidy(() => {
      const buffer = tensor(Float64Array.of(bytes.length));
      this.broadcast([buffer], root, what);
      return (buffer.toTypedArray() as Float64Array)[0]!;
    });
    const received = tidy(() => {
      const buffer = this.rank === root ? fromBytes(bytes, 'uint8', [length]) : fromBytes(new Uint8Array(length), 'uint8', [length]);
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
