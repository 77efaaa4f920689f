// A loader batch (uint8 pixels + what finishes them, src/data/batch.ts) as tensors on the training
// device, the way timm's CUDA prefetcher does it: copy the uint8 pixels (on CUDA from pinned host
// memory, without blocking the host), then on the device: to float and normalize, fill the
// random-erasing boxes, mix (mixup / cutmix). The trainer, evaluation and library users that
// take loader batches all go through deviceBatch.
//
// Normalization gives the bytes of the former JavaScript path (normalizeInto in
// src/data/augment.ts: (pixel / 255 - mean) / std folded into pixel * scale + shift with the two
// constants in double precision, rounded once to float32): the same two double operations as
// tensor ops in float64, then one rounding to float32. A float32 multiply-add would differ in the
// last bit for some pixels and change every committed run's numbers (test/device-batch.test.ts).
//
// Erasing fill values are drawn, box by box, from a CPU generator seeded with the sample's erasing
// seed (batch.ts; the binding's generators are CPU generators) into one tensor, copied to the
// device in one piece: the values depend on (seed, epoch, sample) only, so on neither the batch,
// the worker count nor the data-parallel rank, and they are the same on CPU and CUDA.
// They are libtorch's normal draws, not the JavaScript PRNG's that filled boxes before, so a run
// with random erasing differs from one before this change (boxes are unchanged).
import type { Batch } from '../data/batch.js';
import type { ImageDataset } from '../data/datasets.js';
import { empty, Generator, type Tensor, tensor } from '../tensor/tensor.js';

/** What deviceBatch needs to know about the images: their shape and the normalization constants. */
export type BatchGeometry = Pick<ImageDataset, 'channels' | 'height' | 'width' | 'mean' | 'std' | 'numClasses'>;

export interface DeviceBatch {
  /** [B, C, H, W] float32, normalized, erased and mixed. */
  images: Tensor;
  /** [B] int64 class indices. */
  labels: Tensor;
  /** [B, numClasses] float32 mixup / cutmix targets, or null without mixup. */
  soft: Tensor | null;
}

/** Whether `device` names a CUDA device ('cuda', 'cuda:1'). */
function isCuda(device: string): boolean {
  return device === 'cuda' || device.startsWith('cuda:');
}

/**
 * A tensor of host data on `device`. On CUDA the host copy is pinned and copied with
 * non_blocking, so the host goes on to queue the step's kernels while the copy runs (libtorch's
 * pinned-memory allocator keeps the pinned block until the copy has finished, even though the
 * handle is disposed at once).
 */
function toDevice(host: Tensor, device: string): Tensor {
  if (device === 'cpu') return host;
  if (!isCuda(device)) return host.to({ device: device as 'cuda' });
  return host.pinMemory().to({ device: device as 'cuda', nonBlocking: true });
}

/** Per-channel constants [1, C, 1, 1] in float64 on `device`. */
function channelConstants(values: number[], device: string): Tensor {
  return toDevice(tensor(Float64Array.from(values), { shape: [1, values.length, 1, 1] }), device);
}

/**
 * x = pixel * (1 / (255 std)) + (-mean / std) in float64, rounded once to float32: normalizeInto's
 * bytes (see the module comment).
 */
export function normalizeOnDevice(pixels: Tensor, mean: readonly number[], std: readonly number[], device: string): Tensor {
  const scale = channelConstants(std.map((value) => 1 / (255 * value)), device);
  const shift = channelConstants(mean.map((value, channel) => -value / std[channel]!), device);
  // In place on the fresh float64 copy: 25 % less CPU time than out of place (14.7 vs 19.7 ms per
  // batch of 20 x 3 x 224 x 224, one thread, load 19).
  return pixels.double().mul_(scale).add_(shift).float();
}

/** Fills the batch's erasing boxes in `images` [B, C, H, W] (normalized) in place. */
export function eraseOnDevice(images: Tensor, erasing: NonNullable<Batch['erasing']>, channels: number, device: string): void {
  const { boxes, mode } = erasing;
  if (boxes.length !== images.size(0) || erasing.seeds.length !== boxes.length) {
    throw new Error(`deviceBatch: ${boxes.length} erasing boxes and ${erasing.seeds.length} seeds for a batch of ${images.size(0)}`);
  }
  const sizes = boxes.map((box) => (box === null ? 0 : mode === 'pixel' ? channels * box.height * box.width : mode === 'rand' ? channels : 0));
  const total = sizes.reduce((sum, size) => sum + size, 0);
  let noise: Tensor | null = null;
  if (total > 0) {
    const host = empty([total]);
    let start = 0;
    sizes.forEach((count, sample) => {
      if (count > 0) host.narrow(0, start, count).normal_(0, 1, new Generator(erasing.seeds[sample]!));
      start += count;
    });
    noise = toDevice(host, device);
  }
  let offset = 0;
  boxes.forEach((box, sample) => {
    if (box === null) return;
    const region = images.select(0, sample).narrow(1, box.top, box.height).narrow(2, box.left, box.width);
    if (mode === 'const') region.zero_();
    else if (mode === 'rand') region.copy_(noise!.narrow(0, offset, channels).view(channels, 1, 1).expand(channels, box.height, box.width));
    else region.copy_(noise!.narrow(0, offset, sizes[sample]!).view(channels, box.height, box.width));
    offset += sizes[sample]!;
  });
}

/**
 * Mixes `images` [B, C, H, W] with the flipped batch as timm's Mixup does: CutMix pastes the box
 * from sample B-1-i into sample i (in place); Mixup returns lam * x + (1 - lam) * flip(x), each
 * product rounded to float32 (mixup.ts' applyMix gives the same bytes).
 */
export function mixOnDevice(images: Tensor, mix: NonNullable<Batch['mix']>): Tensor {
  if (mix.lambda === 1) return images;
  if (mix.useCutmix) {
    const box = mix.box;
    if (box !== null && box.bottom > box.top && box.right > box.left) {
      const region = images.narrow(2, box.top, box.bottom - box.top).narrow(3, box.left, box.right - box.left);
      region.copy_(region.flip(0));
    }
    return images;
  }
  return images.mul(mix.lambda).add(images.flip(0).mul(1 - mix.lambda));
}

/**
 * A loader batch as tensors on `device`: pixels copied as uint8 (pinned and non-blocking on CUDA),
 * then normalized, erased and mixed there. Call it inside a tidy() scope; every intermediate
 * tensor is then freed with the step's.
 */
export function deviceBatch(batch: Batch, geometry: BatchGeometry, device: string): DeviceBatch {
  const { channels, height, width } = geometry;
  const size = batch.labels.length;
  if (batch.size !== size || batch.pixels.length !== size * channels * height * width) {
    throw new Error(
      `deviceBatch: the batch holds ${batch.pixels.length} pixels and ${size} labels (size ${batch.size}), ` +
        `expected ${batch.size} x ${channels}x${height}x${width} = ${batch.size * channels * height * width} pixels`,
    );
  }
  if (geometry.mean.length !== channels || geometry.std.length !== channels) {
    throw new Error(`deviceBatch: mean/std need ${channels} values, got ${geometry.mean.length}/${geometry.std.length}`);
  }
  const pixels = toDevice(tensor(batch.pixels, { shape: [size, channels, height, width] }), device);
  let images = normalizeOnDevice(pixels, geometry.mean, geometry.std, device);
  if (batch.erasing !== null) eraseOnDevice(images, batch.erasing, channels, device);
  if (batch.mix !== null) images = mixOnDevice(images, batch.mix);
  const labels = toDevice(tensor(batch.labels).long(), device);
  const soft = batch.softTargets === null ? null : toDevice(tensor(batch.softTargets, { shape: [size, geometry.numClasses] }), device);
  return { images, labels, soft };
}
