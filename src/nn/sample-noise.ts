// Per-sample random decisions (which tokens or patches a mask hides, which samples drop a residual
// path) drawn so that they do not depend on how many processes share a batch.
//
// Inside `withBatchShard`, such noise is drawn for the whole global batch from the shard's
// generator (the same generator, in the same state, on every rank) and this rank's rows are
// returned: a data-parallel run of W ranks with B/W samples each masks and drops sample i exactly
// as one process with batch B does, so a distributed run reproduces the single-process one (the
// test in test/distributed.test.ts). The cost is W times the noise of a local batch, [B, L] floats
// for a mask and [B] for a drop path: nothing next to a forward pass. Element-wise dropout is not
// per-sample and keeps each rank's own stream (as torch's DDP does).
// Outside a shard scope the device's global generator draws the local batch's noise, as PyTorch.
import { type Generator, rand, type Tensor } from '../tensor/tensor.js';

/** This process's part of a data-parallel batch, and the generator every rank shares for it. */
export interface BatchShard {
  generator: Generator;
  /** This process's rank, in [0, world). */
  rank: number;
  /** Processes sharing each batch; each holds batch/world consecutive samples, rank 0 first. */
  world: number;
}

let current: BatchShard | null = null;

/** Runs fn with per-sample noise drawn for the global batch of `shard` (see the file's header). */
export function withBatchShard<T>(shard: BatchShard, fn: () => T): T {
  if (!(Number.isInteger(shard.world) && shard.world >= 1 && Number.isInteger(shard.rank) && shard.rank >= 0 && shard.rank < shard.world)) {
    throw new RangeError(`batch shard: rank ${shard.rank} of world ${shard.world} is not a rank in [0, world)`);
  }
  const previous = current;
  current = shard;
  try {
    return fn();
  } finally {
    current = previous;
  }
}

/** The shard scope in force, or null. */
export function currentBatchShard(): BatchShard | null {
  return current;
}

/**
 * Uniform [0, 1) float32 noise of `shape` ([local batch, ...]) on `device` for per-sample choices.
 * With an explicit generator (fixed probe masks) it is drawn from it on the CPU and moved, so the
 * choice is the same on every device and no training stream is touched; inside a shard scope it
 * is this rank's rows of the global batch's noise; otherwise the device's global generator draws
 * it in place.
 */
export function sampleNoise(shape: readonly number[], device: string, generator?: Generator): Tensor {
  const onDevice = (noise: Tensor): Tensor => (device === 'cpu' ? noise : noise.to({ device: device as 'cuda' }));
  if (generator) return onDevice(rand([...shape], { generator }));
  if (current === null) return rand([...shape], { device: device as 'cpu' });
  const { generator: shared, rank, world } = current;
  const local = shape[0] ?? 1;
  if (world === 1) return onDevice(rand([...shape], { generator: shared }));
  const global = rand([local * world, ...shape.slice(1)], { generator: shared });
  const rows = global.narrow(0, rank * local, local).contiguous();
  global.dispose();
  return onDevice(rows);
}
