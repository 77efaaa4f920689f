// Per-sample image augmentations on channel-first images, driven by our seeded PRNG: random crop
// with padding and horizontal flip on the loader's uint8 pixels, and the box of random erasing
// (timm semantics), whose fill and the normalization are applied on the training device
// (src/train/device-batch.ts). normalizeInto is the JavaScript normalization that device-batch.ts
// reproduces byte for byte (test/device-batch.test.ts).
//
// Padding choice: like torchvision/timm (RandomCrop(padding=p) pads raw pixels with 0), the padded
// border is black: raw 0, whose normalized value is (0 - mean) / std per channel. Random erasing
// runs after normalization, as in timm, so its 'pixel' and 'rand' fill values are N(0, 1) in
// normalized space.

import type { Random } from './random.js';
import { roundHalfEven } from './transforms.js';

export interface AugmentOptions {
  /** Zero-padding (raw black) on each side before a random crop back to the original size; 0 = off. */
  cropPadding: number;
  /** Random horizontal flip with probability 0.5. */
  hflip: boolean;
  /** Random erasing probability (timm --reprob); 0 = off. */
  randomErasing: number;
  /** What random erasing fills its box with (timm --remode); default 'pixel'. */
  erasingMode?: ErasingMode;
}

/**
 * timm's RandomErasing modes: 'const' fills the box with 0 (the normalized mean), 'rand' with one
 * N(0, 1) value per channel, 'pixel' with an N(0, 1) value per channel and pixel.
 */
export type ErasingMode = 'const' | 'rand' | 'pixel';

export const ERASING_MODES: readonly ErasingMode[] = ['const', 'rand', 'pixel'];

/** Channel-first pixels: the loader's uint8, or normalized float32. */
export type PixelArray = Uint8Array | Float32Array;

export interface RandomErasingOptions {
  probability: number;
  minArea?: number; // fraction of the image, timm default 0.02
  maxArea?: number; // timm default 1/3
  minAspect?: number; // timm default 0.3; the maximum is 1/minAspect, sampled log-uniformly
  maxAttempts?: number; // timm tries 10 boxes before giving up
}

/** The rectangle random erasing filled (rows top..top+height-1, columns left..left+width-1). */
export interface ErasedBox {
  top: number;
  left: number;
  height: number;
  width: number;
}

/** Writes (pixel / 255 - mean[c]) / std[c] for one channel-first uint8 image into `target`. */
export function normalizeInto(
  source: Uint8Array,
  sourceOffset: number,
  target: Float32Array,
  targetOffset: number,
  channels: number,
  pixelsPerChannel: number,
  mean: readonly number[],
  std: readonly number[],
): void {
  for (let channel = 0; channel < channels; channel++) {
    // Folding the three operations into one multiply-add keeps the inner loop cheap; the constants
    // are computed in double precision, the result rounded once to float32.
    const scale = 1 / (255 * std[channel]!);
    const shift = -mean[channel]! / std[channel]!;
    const sourceStart = sourceOffset + channel * pixelsPerChannel;
    const targetStart = targetOffset + channel * pixelsPerChannel;
    for (let pixel = 0; pixel < pixelsPerChannel; pixel++) {
      target[targetStart + pixel] = source[sourceStart + pixel]! * scale + shift;
    }
  }
}

/**
 * Random crop of an image padded by `padding` on every side, back to the original size, in place.
 * The offset is uniform in [0, 2*padding] for rows, then columns (torchvision's draw order).
 * `fill[c]` is the value of the padded border in channel c. `scratch` must hold one image.
 * Returns the chosen (row, column) offset into the padded image.
 */
export function randomCrop(
  image: PixelArray,
  imageOffset: number,
  channels: number,
  height: number,
  width: number,
  padding: number,
  fill: readonly number[],
  random: Random,
  scratch: PixelArray,
): { rowOffset: number; columnOffset: number } {
  const rowOffset = random.int(2 * padding + 1);
  const columnOffset = random.int(2 * padding + 1);
  const shiftRows = rowOffset - padding;
  const shiftColumns = columnOffset - padding;
  if (shiftRows === 0 && shiftColumns === 0) return { rowOffset, columnOffset };
  const plane = height * width;
  scratch.set(image.subarray(imageOffset, imageOffset + channels * plane));
  for (let channel = 0; channel < channels; channel++) {
    const value = fill[channel]!;
    const base = imageOffset + channel * plane;
    const scratchBase = channel * plane;
    for (let row = 0; row < height; row++) {
      const sourceRow = row + shiftRows;
      const targetRow = base + row * width;
      if (sourceRow < 0 || sourceRow >= height) {
        image.fill(value, targetRow, targetRow + width);
        continue;
      }
      const sourceRowStart = scratchBase + sourceRow * width;
      for (let column = 0; column < width; column++) {
        const sourceColumn = column + shiftColumns;
        image[targetRow + column] =
          sourceColumn >= 0 && sourceColumn < width ? scratch[sourceRowStart + sourceColumn]! : value;
      }
    }
  }
  return { rowOffset, columnOffset };
}

/** Mirrors an image left-right in place. */
export function horizontalFlip(image: PixelArray, imageOffset: number, channels: number, height: number, width: number): void {
  for (let line = 0; line < channels * height; line++) {
    let left = imageOffset + line * width;
    let right = left + width - 1;
    while (left < right) {
      const held = image[left]!;
      image[left] = image[right]!;
      image[right] = held;
      left++;
      right--;
    }
  }
}

/** Flips with probability `probability` (one uniform draw, always consumed). Returns whether it flipped. */
export function randomHorizontalFlip(
  image: PixelArray,
  imageOffset: number,
  channels: number,
  height: number,
  width: number,
  random: Random,
  probability = 0.5,
): boolean {
  const flip = random.next() < probability;
  if (flip) horizontalFlip(image, imageOffset, channels, height, width);
  return flip;
}


/**
 * The box of timm's RandomErasing (one box): with probability `probability`, try up to 10 times a
 * box of area U(minArea, maxArea) * H * W and aspect ratio exp(U(log minAspect, log 1/minAspect));
 * the first box that fits strictly inside the image is returned (its fill is drawn on the training
 * device, device-batch.ts), else null. The draws are the ones the JavaScript erasing made before
 * it drew the fill values, so the boxes of a run are unchanged.
 */
export function drawErasingBox(height: number, width: number, random: Random, options: RandomErasingOptions): ErasedBox | null {
  if (random.next() >= options.probability) return null;
  const minArea = options.minArea ?? 0.02;
  const maxArea = options.maxArea ?? 1 / 3;
  const minAspect = options.minAspect ?? 0.3;
  const logMin = Math.log(minAspect);
  const logMax = Math.log(1 / minAspect);
  const area = height * width;
  const attempts = options.maxAttempts ?? 10;
  for (let attempt = 0; attempt < attempts; attempt++) {
    const targetArea = random.uniform(minArea, maxArea) * area;
    const aspect = Math.exp(random.uniform(logMin, logMax));
    const boxHeight = roundHalfEven(Math.sqrt(targetArea * aspect));
    const boxWidth = roundHalfEven(Math.sqrt(targetArea / aspect));
    if (boxWidth < width && boxHeight < height) {
      const top = random.int(height - boxHeight + 1);
      const left = random.int(width - boxWidth + 1);
      return { top, left, height: boxHeight, width: boxWidth };
    }
  }
  return null;
}

/** Checks augmentation options; the error names the bad field. */
export function validateAugmentOptions(options: AugmentOptions, label = 'augment'): void {
  if (!Number.isInteger(options.cropPadding) || options.cropPadding < 0) {
    throw new Error(`${label}: cropPadding must be a non-negative integer, got ${String(options.cropPadding)}`);
  }
  if (typeof options.hflip !== 'boolean') {
    throw new Error(`${label}: hflip must be true or false, got ${String(options.hflip)}`);
  }
  if (!(options.randomErasing >= 0 && options.randomErasing <= 1)) {
    throw new Error(`${label}: randomErasing must be a probability in [0, 1], got ${String(options.randomErasing)}`);
  }
  if (options.erasingMode !== undefined && !ERASING_MODES.includes(options.erasingMode)) {
    throw new Error(`${label}: erasingMode must be one of ${ERASING_MODES.join(', ')}, got ${String(options.erasingMode)}`);
  }
}

/**
 * The loader's per-sample pipeline on a channel-first uint8 image, in timm's order: crop (raw
 * black border), flip, then the random-erasing box, returned (null: nothing erased) for the
 * training device to fill after normalizing. `scratch` must hold one image.
 */
export function augmentSample(
  image: Uint8Array,
  imageOffset: number,
  channels: number,
  height: number,
  width: number,
  options: AugmentOptions,
  random: Random,
  scratch: Uint8Array,
): ErasedBox | null {
  if (options.cropPadding > 0) {
    randomCrop(image, imageOffset, channels, height, width, options.cropPadding, new Array<number>(channels).fill(0), random, scratch);
  }
  if (options.hflip) randomHorizontalFlip(image, imageOffset, channels, height, width, random);
  if (options.randomErasing > 0) return drawErasingBox(height, width, random, { probability: options.randomErasing });
  return null;
}
