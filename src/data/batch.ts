// The deterministic recipe for one batch, shared by the in-thread loader and the prefetch worker so
// that both produce bit-identical batches.
//
// Random streams: the sample order of epoch e comes from deriveSeed(seed, e, 0); batch b of epoch e
// is augmented and mixed with its own stream deriveSeed(seed, e, 1, b). Because each batch has its
// own stream, any batch of any epoch can be rebuilt alone, in any thread, in any order.

import { augmentSample, blackFill, normalizeInto, type AugmentOptions } from './augment.js';
import { mixBatch, type MixupOptions } from './mixup.js';
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
}

export interface Batch {
  images: Float32Array; // size * channels * height * width, normalized and augmented
  labels: Int32Array;
  softTargets: Float32Array | null; // size * numClasses when mixup is configured
  size: number;
  index: number; // batch index within the epoch
  /** Image files left out of this batch because they could not be decoded (--skip-bad-images). */
  badImages?: string[];
}

/** Number of batches per epoch. */
export function countBatches(count: number, batchSize: number, dropLast: boolean): number {
  return dropLast ? Math.floor(count / batchSize) : Math.ceil(count / batchSize);
}

/** Sample order of an epoch: 0..count-1, shuffled with the epoch's stream when `shuffle`. */
export function epochOrder(count: number, shuffle: boolean, seed: number, epoch: number): Int32Array {
  const order = new Int32Array(count);
  for (let index = 0; index < count; index++) order[index] = index;
  if (shuffle) new Random(deriveSeed(seed, epoch, 0)).shuffle(order);
  return order;
}

/** Builds batch `batchIndex` of `epoch` given that epoch's sample order. */
export function buildBatch(data: LoaderData, recipe: BatchRecipe, order: Int32Array, epoch: number, batchIndex: number): Batch {
  const start = batchIndex * recipe.batchSize;
  const size = Math.min(recipe.batchSize, order.length - start);
  const { channels, height, width } = data;
  const sampleSize = channels * height * width;
  const images = new Float32Array(size * sampleSize);
  const labels = new Int32Array(size);
  const random = new Random(deriveSeed(recipe.seed, epoch, 1, batchIndex));
  const scratch = new Float32Array(sampleSize);
  const fill = blackFill(data.mean, data.std);
  for (let position = 0; position < size; position++) {
    const sample = order[start + position]!;
    labels[position] = data.labels[sample]!;
    normalizeInto(data.images, sample * sampleSize, images, position * sampleSize, channels, height * width, data.mean, data.std);
    augmentSample(images, position * sampleSize, channels, height, width, recipe.augment, fill, random, scratch);
  }
  let softTargets: Float32Array | null = null;
  if (recipe.mixup !== null) {
    softTargets = mixBatch(images, labels, channels, height, width, recipe.mixup, random).softTargets;
  }
  return { images, labels, softTargets, size, index: batchIndex };
}
