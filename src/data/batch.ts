// The deterministic recipe for one batch, shared by the in-thread loader and the prefetch worker so
// that both produce bit-identical batches.
//
// Random streams: the sample order of epoch e comes from deriveSeed(seed, e, 0); sample s is
// augmented in epoch e with its own stream deriveSeed(seed, e, 1, s), and batch b of epoch e is
// mixed (mixup / cutmix) with deriveSeed(seed, e, 3, b). Because each sample and each batch has
// its own stream, any batch of any epoch can be rebuilt alone, in any thread, in any order, and a
// sample is augmented the same whichever batch, thread or rank builds it.
//
// What a batch carries (timm's CUDA prefetcher's split): uint8 pixels, cropped and flipped, plus
// what finishes them on the training device (src/train/device-batch.ts): each sample's
// random-erasing box and the seed of the generator that draws its fill values, deriveSeed(seed, e,
// 5, s) (per sample, like its augmentation stream, so that the fill too is the same whichever
// batch, thread or rank holds the sample), and the batch's mixup / cutmix decision. uint8 is a quarter of
// float32's bytes to write, to hand between threads and to copy to the device; normalizing,
// erasing and mixing there are tensor ops.
//
// Data-parallel shards: with `shard` {rank, world} a loader's batches are local batches of
// batchSize = global batch / world, and its batch k is local batch k * world + rank of the epoch's
// order: the ranks' batches k, side by side, are the single process's global batch k, sample for
// sample and, without mixup (which mixes within a local batch, as timm's DDP does), value for value.
//
// Repeated augmentation (DeiT's RASampler, `repeats` N > 1): the epoch's order is the shuffled
// permutation with each index repeated N times in a row, cut to the data set's length, so an epoch
// has as many samples as without it and sees about 1/N of the images, each N times. Copy c (0..N-1)
// of a sample is augmented with the seed augmentSeed(seed, c) in place of seed: copy 0 as without
// repetition, the others from streams of their own, so the copies differ and each is still a
// function of (seed, epoch, position). Where we differ from DeiT's samplers.py: its permutation is
// seeded by the epoch alone (ours by seed and epoch); it cuts the epoch to a multiple of 256
// (floor(len / 256) * 256) where we keep len and leave the last partial batch to dropLast; and it
// deals the repeated list to the ranks round-robin (indices[rank::world]), which puts the copies of
// an image on different GPUs. Our global batch k holds the same positions as DeiT's (k * B to
// (k + 1) * B - 1 of the repeated list) but splits them among the ranks in contiguous slices, so
// the global order, and every sample's augmentation, is the same for any world size; only which
// rank holds a copy differs, which matters for per-rank BatchNorm statistics and per-rank mixup.

import { augmentSample, type AugmentOptions, type ErasedBox, type ErasingMode } from './augment.js';
import { drawMix, type MixDecision, mixTargets, type MixupOptions } from './mixup.js';
import { deriveSeed, Random } from './random.js';
import type { ImageDataset } from './datasets.js';

/** The part of an ImageDataset the batch builder needs (structured-clone friendly). */
export type LoaderData = Pick<ImageDataset, 'images' | 'labels' | 'count' | 'channels' | 'height' | 'width' | 'numClasses' | 'mean' | 'std' | 'files'>;

/** Everything that decides the content of a batch besides the data. */
export interface BatchRecipe {
  batchSize: number;
  shuffle: boolean;
  dropLast: boolean;
  seed: number;
  augment: AugmentOptions;
  mixup: MixupOptions | null;
  /** This process's part of each global batch in a data-parallel run; null = all of it. */
  shard: DataShard | null;
  /** Repeated augmentation: copies of each sample in a row in the epoch's order (1: off). */
  repeats: number;
}

/** A rank of `world` data-parallel processes (see the file's header). */
export interface DataShard {
  rank: number;
  world: number;
}

/**
 * One batch as the loader hands it over: raw pixels and what finishes them. deviceBatch
 * (src/train/device-batch.ts) turns it into normalized, erased and mixed tensors on a device.
 */
export interface Batch {
  /** size * channels * height * width uint8 pixels, channel-first, cropped and flipped, not normalized. */
  pixels: Uint8Array;
  labels: Int32Array;
  /** size * numClasses when mixup is configured (computed here: they are small). */
  softTargets: Float32Array | null;
  size: number;
  /** Batch index within the epoch. */
  index: number;
  /** Random erasing still to apply (null: erasing is off). */
  erasing: BatchErasing | null;
  /** The mixup / cutmix decision still to apply (null: mixup is off). */
  mix: MixDecision | null;
  /** Image files left out of this batch because they could not be decoded (--skip-bad-images). */
  badImages?: string[];
}

/** A batch's random erasing: the box of each sample and how to fill them. */
export interface BatchErasing {
  /** Per sample, in batch order: the box to fill, or null. */
  boxes: (ErasedBox | null)[];
  mode: ErasingMode;
  /** Per sample: the seed of the generator that draws its box's fill values. */
  seeds: number[];
}

/** Number of batches per epoch. */
export function countBatches(count: number, batchSize: number, dropLast: boolean): number {
  return dropLast ? Math.floor(count / batchSize) : Math.ceil(count / batchSize);
}

/** Batches a loader with this recipe yields per epoch (the last partial ones are left to no rank). */
export function recipeBatchCount(count: number, recipe: Pick<BatchRecipe, 'batchSize' | 'dropLast' | 'shard'>): number {
  const all = countBatches(count, recipe.batchSize, recipe.dropLast);
  return recipe.shard === null ? all : Math.floor(all / recipe.shard.world);
}

/** The epoch's batch, numbered as one process with batches of recipe.batchSize sees them, that batch `index` of this shard is. */
export function epochBatchIndex(recipe: Pick<BatchRecipe, 'shard'>, index: number): number {
  return recipe.shard === null ? index : index * recipe.shard.world + recipe.shard.rank;
}

/**
 * Sample order of an epoch: 0..count-1, shuffled with the epoch's stream when `shuffle`; with
 * `repeats` N > 1 each index of that permutation N times in a row, cut to `count` entries (DeiT's
 * RASampler: torch.repeat_interleave(permutation, N)[:count]).
 */
export function epochOrder(count: number, shuffle: boolean, seed: number, epoch: number, repeats = 1): Int32Array {
  if (!Number.isInteger(repeats) || repeats < 1) throw new RangeError(`epoch order: repeats must be a positive integer, got ${String(repeats)}`);
  const permutation = new Int32Array(count);
  for (let index = 0; index < count; index++) permutation[index] = index;
  if (shuffle) new Random(deriveSeed(seed, epoch, 0)).shuffle(permutation);
  if (repeats === 1) return permutation;
  const order = new Int32Array(count);
  for (let position = 0; position < count; position++) order[position] = permutation[Math.floor(position / repeats)]!;
  return order;
}

/** Which copy of its sample (0..repeats-1) the entry at `position` of an epoch's order is. */
export function copyAt(recipe: Pick<BatchRecipe, 'repeats'>, position: number): number {
  return position % recipe.repeats;
}

/**
 * The seed that augments copy `copy` of a sample: the run's seed for copy 0 (so repeats 1 gives the
 * bytes it gave before repeated augmentation existed), a derived one for the others.
 */
export function augmentSeed(seed: number, copy: number): number {
  return copy === 0 ? seed : deriveSeed(seed, 4, copy);
}

/** The seed that augments the entry at `position` of an epoch's order. */
export function positionSeed(recipe: Pick<BatchRecipe, 'seed' | 'repeats'>, position: number): number {
  return augmentSeed(recipe.seed, copyAt(recipe, position));
}

/** The stream that augments `sample` in `epoch` (see the file's header). */
export function sampleRandom(seed: number, epoch: number, sample: number): Random {
  return new Random(deriveSeed(seed, epoch, 1, sample));
}

/** The stream that mixes batch `epochBatch` of `epoch`. */
export function batchMixRandom(seed: number, epoch: number, epochBatch: number): Random {
  return new Random(deriveSeed(seed, epoch, 3, epochBatch));
}

/** The seed of the generator that draws the erasing fill of `sample` in `epoch` (`seed`: positionSeed's). */
export function erasingSeed(seed: number, epoch: number, sample: number): number {
  return deriveSeed(seed, epoch, 5, sample);
}

/**
 * What a batch needs besides its pixels: the erasing of its samples (boxes in batch order) and its
 * mix decision with the soft targets.
 */
export function finishRecipe(
  recipe: BatchRecipe,
  data: Pick<LoaderData, 'height' | 'width'>,
  epoch: number,
  epochBatch: number,
  labels: Int32Array,
  boxes: (ErasedBox | null)[],
  seeds: number[],
): Pick<Batch, 'erasing' | 'mix' | 'softTargets'> {
  const erasing = recipe.augment.randomErasing > 0 ? { boxes, mode: recipe.augment.erasingMode ?? 'pixel', seeds } : null;
  if (recipe.mixup === null) return { erasing, mix: null, softTargets: null };
  const mix = drawMix(data.height, data.width, recipe.mixup, batchMixRandom(recipe.seed, epoch, epochBatch));
  return { erasing, mix, softTargets: mixTargets(labels, recipe.mixup.numClasses, recipe.mixup.labelSmoothing, mix.lambda) };
}

/** Builds batch `batchIndex` of `epoch` given that epoch's sample order. */
export function buildBatch(data: LoaderData, recipe: BatchRecipe, order: Int32Array, epoch: number, batchIndex: number): Batch {
  const epochBatch = epochBatchIndex(recipe, batchIndex);
  const start = epochBatch * recipe.batchSize;
  const size = Math.min(recipe.batchSize, order.length - start);
  const { channels, height, width } = data;
  const sampleSize = channels * height * width;
  const pixels = new Uint8Array(size * sampleSize);
  const labels = new Int32Array(size);
  const scratch = new Uint8Array(sampleSize);
  const boxes: (ErasedBox | null)[] = [];
  const seeds: number[] = [];
  for (let position = 0; position < size; position++) {
    const sample = order[start + position]!;
    labels[position] = data.labels[sample]!;
    pixels.set(data.images.subarray(sample * sampleSize, (sample + 1) * sampleSize), position * sampleSize);
    const seed = positionSeed(recipe, start + position);
    boxes.push(augmentSample(pixels, position * sampleSize, channels, height, width, recipe.augment, sampleRandom(seed, epoch, sample), scratch));
    seeds.push(erasingSeed(seed, epoch, sample));
  }
  return { pixels, labels, size, index: batchIndex, ...finishRecipe(recipe, data, epoch, epochBatch, labels, boxes, seeds) };
}
