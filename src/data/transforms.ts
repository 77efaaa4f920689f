// Geometric transforms of decoded images (uint8, height x width x channels, interleaved as decoders
// deliver them), each a named function; the random ones draw from a seeded Random:
//   randomResizedCropBox   torchvision's RandomResizedCrop.get_params (scale 0.08-1, ratio 3/4-4/3)
//   resizedCrop            crop a box, resize it to the output size (bilinear or bicubic)
//   evalResizeCenterCrop   resize the shorter side to floor(size / crop_pct), center crop size
//   flipHorizontal         mirror left-right
// Resampling is antialiased separable filtering with torch's `interpolate(..., antialias=True)`
// rules (the same filter PIL applies, which timm's transforms use): the filter widens by the
// reduction factor when shrinking, so a 500-px image shrunk to 224 px is averaged, not aliased.
// Results are rounded to uint8 as torchvision rounds its float result.

import type { Random } from './random.js';

export type Interpolation = 'bilinear' | 'bicubic';
export const INTERPOLATIONS: readonly Interpolation[] = ['bilinear', 'bicubic'];

/** A decoded image: `height * width * channels` bytes, rows top to bottom, channels interleaved. */
export interface RawImage {
  pixels: Uint8Array;
  height: number;
  width: number;
  channels: number;
}

/** A rectangle of an image in pixels. */
export interface Box {
  top: number;
  left: number;
  height: number;
  width: number;
}

/** Python's round(): halves go to the even neighbour (torchvision's and timm's box sizes use it). */
export function roundHalfEven(value: number): number {
  const floor = Math.floor(value);
  const fraction = value - floor;
  if (fraction > 0.5) return floor + 1;
  if (fraction < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

export interface RandomResizedCropOptions {
  /** Range of the crop's area as a fraction of the image; timm and torchvision: [0.08, 1]. */
  scale?: readonly [number, number];
  /** Range of the crop's width / height, sampled log-uniformly; [3/4, 4/3]. */
  ratio?: readonly [number, number];
}

/**
 * torchvision's RandomResizedCrop.get_params: up to 10 tries of an area fraction U(scale) and a
 * log-uniform aspect ratio; the first box that fits is placed uniformly. When none fits, the
 * largest centered box whose aspect is within `ratio`.
 */
export function randomResizedCropBox(height: number, width: number, random: Random, options: RandomResizedCropOptions = {}): Box {
  const [scaleLow, scaleHigh] = options.scale ?? [0.08, 1];
  const [ratioLow, ratioHigh] = options.ratio ?? [3 / 4, 4 / 3];
  const area = height * width;
  const logLow = Math.log(ratioLow);
  const logHigh = Math.log(ratioHigh);
  for (let attempt = 0; attempt < 10; attempt++) {
    const targetArea = area * random.uniform(scaleLow, scaleHigh);
    const aspect = Math.exp(random.uniform(logLow, logHigh));
    const boxWidth = roundHalfEven(Math.sqrt(targetArea * aspect));
    const boxHeight = roundHalfEven(Math.sqrt(targetArea / aspect));
    if (boxWidth > 0 && boxWidth <= width && boxHeight > 0 && boxHeight <= height) {
      const top = random.int(height - boxHeight + 1);
      const left = random.int(width - boxWidth + 1);
      return { top, left, height: boxHeight, width: boxWidth };
    }
  }
  const inputRatio = width / height;
  let boxWidth = width;
  let boxHeight = height;
  if (inputRatio < Math.min(ratioLow, ratioHigh)) {
    boxHeight = roundHalfEven(boxWidth / Math.min(ratioLow, ratioHigh));
  } else if (inputRatio > Math.max(ratioLow, ratioHigh)) {
    boxWidth = roundHalfEven(boxHeight * Math.max(ratioLow, ratioHigh));
  }
  return { top: Math.floor((height - boxHeight) / 2), left: Math.floor((width - boxWidth) / 2), height: boxHeight, width: boxWidth };
}

/** Filter taps of one output line: for output index i, weights over input indices start..start+count-1. */
interface Taps {
  start: Int32Array;
  count: Int32Array;
  weights: Float32Array; // `span` weights per output index
  span: number;
}

function bilinearFilter(x: number): number {
  const distance = Math.abs(x);
  return distance < 1 ? 1 - distance : 0;
}

// Keys' cubic with a = -0.5, the antialiasing bicubic of PIL and torch (the non-antialiased one uses -0.75).
function bicubicFilter(x: number): number {
  const a = -0.5;
  const distance = Math.abs(x);
  if (distance < 1) return ((a + 2) * distance - (a + 3)) * distance * distance + 1;
  if (distance < 2) return ((a * distance - 5 * a) * distance + 8 * a) * distance - 4 * a;
  return 0;
}

/**
 * Taps of torch's _compute_indices_weights_aa for an input line of `inputSize` pixels resized to
 * `outputSize`, only for output indices first..first+length-1 (the rest would be cropped away).
 */
function computeTaps(inputSize: number, outputSize: number, first: number, length: number, interpolation: Interpolation): Taps {
  const scale = inputSize / outputSize;
  const filter = interpolation === 'bicubic' ? bicubicFilter : bilinearFilter;
  const halfWidth = interpolation === 'bicubic' ? 2 : 1;
  const support = scale >= 1 ? halfWidth * scale : halfWidth;
  const inverseScale = scale >= 1 ? 1 / scale : 1;
  const span = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(length);
  const count = new Int32Array(length);
  const weights = new Float32Array(length * span);
  for (let position = 0; position < length; position++) {
    const center = scale * (first + position + 0.5);
    // C++'s static_cast<int64_t> truncates toward zero; below zero it is clamped to 0 anyway.
    const low = Math.max(Math.trunc(center - support + 0.5), 0);
    const size = Math.min(Math.trunc(center + support + 0.5), inputSize) - low;
    let total = 0;
    for (let tap = 0; tap < size; tap++) {
      const weight = filter((tap + low - center + 0.5) * inverseScale);
      weights[position * span + tap] = weight;
      total += weight;
    }
    if (total !== 0) for (let tap = 0; tap < size; tap++) weights[position * span + tap]! /= total;
    start[position] = low;
    count[position] = size;
  }
  return { start, count, weights, span };
}

/**
 * Resizes the `box` of `image` to outputHeight x outputWidth and returns the `window` of that
 * result (default: all of it) as a new interleaved image. Computing only the window gives exactly
 * the pixels that resizing everything and cropping afterwards would give, without the waste.
 */
export function resampleBox(
  image: RawImage,
  box: Box,
  outputHeight: number,
  outputWidth: number,
  interpolation: Interpolation,
  window: Box = { top: 0, left: 0, height: outputHeight, width: outputWidth },
): RawImage {
  const { pixels, width, channels } = image;
  if (!(box.top >= 0 && box.left >= 0 && box.height >= 1 && box.width >= 1 && box.top + box.height <= image.height && box.left + box.width <= width)) {
    throw new Error(`resize: box ${JSON.stringify(box)} is not inside the ${image.height}x${width} image`);
  }
  if (!(window.top >= 0 && window.left >= 0 && window.top + window.height <= outputHeight && window.left + window.width <= outputWidth)) {
    throw new Error(`resize: window ${JSON.stringify(window)} is not inside the ${outputHeight}x${outputWidth} output`);
  }
  const horizontal = computeTaps(box.width, outputWidth, window.left, window.width, interpolation);
  const vertical = computeTaps(box.height, outputHeight, window.top, window.height, interpolation);
  // Only the input rows some output row reads need the horizontal pass.
  const firstRow = vertical.start[0]!;
  const lastRow = vertical.start[window.height - 1]! + vertical.count[window.height - 1]!;
  const rows = lastRow - firstRow;
  // Width first, then height, in float32 like torch's separable kernel. The loops keep the taps
  // in locals and handle the three channels of RGB together: this is the per-image hot path.
  const middle = new Float32Array(rows * window.width * channels);
  const horizontalStart = horizontal.start;
  const horizontalCount = horizontal.count;
  const horizontalWeights = horizontal.weights;
  const horizontalSpan = horizontal.span;
  const windowWidth = window.width;
  for (let row = 0; row < rows; row++) {
    const rowBase = ((box.top + firstRow + row) * width + box.left) * channels;
    const targetRow = row * windowWidth * channels;
    for (let column = 0; column < windowWidth; column++) {
      const size = horizontalCount[column]!;
      const weightBase = column * horizontalSpan;
      let source = rowBase + horizontalStart[column]! * channels;
      const target = targetRow + column * channels;
      if (channels === 3) {
        let red = 0;
        let green = 0;
        let blue = 0;
        for (let tap = 0; tap < size; tap++, source += 3) {
          const weight = horizontalWeights[weightBase + tap]!;
          red += weight * pixels[source]!;
          green += weight * pixels[source + 1]!;
          blue += weight * pixels[source + 2]!;
        }
        middle[target] = red;
        middle[target + 1] = green;
        middle[target + 2] = blue;
      } else {
        for (let channel = 0; channel < channels; channel++) {
          let sum = 0;
          for (let tap = 0; tap < size; tap++) sum += horizontalWeights[weightBase + tap]! * pixels[source + tap * channels + channel]!;
          middle[target + channel] = sum;
        }
      }
    }
  }
  const output = new Uint8Array(window.height * window.width * channels);
  const lineLength = window.width * channels;
  const verticalWeights = vertical.weights;
  const sums = new Float64Array(lineLength);
  for (let row = 0; row < window.height; row++) {
    const low = vertical.start[row]! - firstRow;
    const size = vertical.count[row]!;
    const weightBase = row * vertical.span;
    // Row by row over the taps, so that the inner loop runs along contiguous memory.
    sums.fill(0);
    for (let tap = 0; tap < size; tap++) {
      const weight = verticalWeights[weightBase + tap]!;
      const line = (low + tap) * lineLength;
      for (let offset = 0; offset < lineLength; offset++) sums[offset]! += weight * middle[line + offset]!;
    }
    const outputLine = row * lineLength;
    for (let offset = 0; offset < lineLength; offset++) {
      // torchvision rounds half to even (torch.round) and bicubic overshoots are clamped.
      const value = Math.fround(sums[offset]!);
      output[outputLine + offset] = value <= 0 ? 0 : value >= 255 ? 255 : roundHalfEven(value);
    }
  }
  return { pixels: output, height: window.height, width: window.width, channels };
}

/** Crops `box` and resizes it to size x size (RandomResizedCrop's second half, torchvision's resized_crop). */
export function resizedCrop(image: RawImage, box: Box, size: number, interpolation: Interpolation): RawImage {
  return resampleBox(image, box, size, size, interpolation);
}

/**
 * The size torchvision's Resize(shorter) gives: the shorter side becomes `shorter`, the longer
 * side int(shorter * longer / shorter_input) (truncated, as torchvision 0.14 computes it).
 */
export function shorterSideSize(height: number, width: number, shorter: number): { height: number; width: number } {
  if (height <= width) return { height: shorter, width: Math.trunc((shorter * width) / height) };
  return { height: Math.trunc((shorter * height) / width), width: shorter };
}

/** timm's eval scale: the shorter side before the center crop, floor(size / crop_pct). */
export function evalResizeSize(size: number, cropPercent: number): number {
  return Math.floor(size / cropPercent);
}

/**
 * The evaluation transform of timm and torchvision: Resize(floor(size / cropPercent)) on the
 * shorter side, then CenterCrop(size) (offsets round((resized - size) / 2), half to even). An
 * image smaller than the crop after resizing is an error here, where torchvision would pad.
 */
export function evalResizeCenterCrop(image: RawImage, size: number, cropPercent: number, interpolation: Interpolation): RawImage {
  const resized = shorterSideSize(image.height, image.width, evalResizeSize(size, cropPercent));
  if (resized.height < size || resized.width < size) {
    throw new Error(`center crop ${size} does not fit the ${resized.height}x${resized.width} resized image (crop_pct ${cropPercent} above 1?)`);
  }
  const window: Box = {
    top: roundHalfEven((resized.height - size) / 2),
    left: roundHalfEven((resized.width - size) / 2),
    height: size,
    width: size,
  };
  return resampleBox(image, { top: 0, left: 0, height: image.height, width: image.width }, resized.height, resized.width, interpolation, window);
}

/** Mirrors an interleaved image left-right in place. */
export function flipHorizontal(image: RawImage): RawImage {
  const { pixels, height, width, channels } = image;
  for (let row = 0; row < height; row++) {
    let left = row * width;
    let right = left + width - 1;
    while (left < right) {
      for (let channel = 0; channel < channels; channel++) {
        const held = pixels[left * channels + channel]!;
        pixels[left * channels + channel] = pixels[right * channels + channel]!;
        pixels[right * channels + channel] = held;
      }
      left++;
      right--;
    }
  }
  return image;
}

/** Copies an interleaved image into channel-first layout at `offset` of `target` (the batch layout). */
export function toChannelFirst(image: RawImage, target: Uint8Array, offset: number): void {
  const { pixels, height, width, channels } = image;
  const plane = height * width;
  for (let pixel = 0; pixel < plane; pixel++) {
    for (let channel = 0; channel < channels; channel++) target[offset + channel * plane + pixel] = pixels[pixel * channels + channel]!;
  }
}
