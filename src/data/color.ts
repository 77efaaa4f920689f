// Photometric transforms of decoded images (uint8, height x width x channels) and DeiT-III's
// 3-Augment built from them: one of grayscale / solarize / Gaussian blur, chosen uniformly, then
// color jitter (brightness, contrast, saturation, each by a factor in [1 - s, 1 + s], in a random
// order). Each transform is the arithmetic of torchvision 0.14's tensor functional on uint8 images
// (float32 math, truncation to uint8 where torchvision casts, round-half-even where it rounds), so
// `test/transforms-torch.test.ts` compares them with torchvision value for value. The random
// choices come from our seeded Random, not from torch's generator.
// One difference from DeiT-III's code, which blurs with PIL's ImageFilter.GaussianBlur (a box-blur
// approximation): the blur here is torchvision's exact Gaussian (kernel 2 * ceil(3 sigma) + 1,
// reflect padding), with DeiT-III's sigma range 0.1-2.
// With the native image module, the loader applies these in C++ (native/image/color.h, the same
// bytes, test/color-native.test.ts); the draws and the blur kernel are made here on both paths.
import type { Random } from './random.js';
import type { RawImage } from './transforms.js';

const f32 = Math.fround;
const GRAY_R = f32(0.2989);
const GRAY_G = f32(0.587);
const GRAY_B = f32(0.114);

/** float32 -> uint8 as a tensor cast does: truncation toward zero after clamping to [0, 255]. */
function toByte(value: number): number {
  return Math.trunc(Math.min(255, Math.max(0, value)));
}

/** The luma of one RGB pixel as torchvision computes it (float32 products and sums, truncated). */
function luma(r: number, g: number, b: number): number {
  return Math.trunc(f32(f32(f32(GRAY_R * r) + f32(GRAY_G * g)) + f32(GRAY_B * b)));
}

/** Grayscale with as many channels as the input (torchvision's Grayscale(num_output_channels=3)). */
export function grayscale(image: RawImage): RawImage {
  const { pixels, channels } = image;
  if (channels === 1) return { ...image, pixels: pixels.slice() };
  const out = new Uint8Array(pixels.length);
  for (let index = 0; index < pixels.length; index += channels) {
    const value = luma(pixels[index]!, pixels[index + 1]!, pixels[index + 2]!);
    for (let channel = 0; channel < channels; channel++) out[index + channel] = value;
  }
  return { ...image, pixels: out };
}

/** Inverts every value at or above `threshold` (torchvision's solarize; DeiT-III uses 128). */
export function solarize(image: RawImage, threshold = 128): RawImage {
  return { ...image, pixels: image.pixels.map((value) => (value >= threshold ? 255 - value : value)) };
}

/** torchvision's Gaussian kernel: linspace(-half, half, size), exp(-x^2 / 2 sigma^2), normalised, in float32. */
export function gaussianKernel(size: number, sigma: number): Float32Array {
  if (!(Number.isInteger(size) && size >= 1 && size % 2 === 1)) throw new RangeError(`kernel size must be a positive odd integer, got ${size}`);
  if (!(sigma > 0)) throw new RangeError(`sigma must be > 0, got ${sigma}`);
  const half = (size - 1) * 0.5;
  const pdf = new Float32Array(size);
  let sum = 0;
  for (let index = 0; index < size; index++) {
    const x = f32(-half + index);
    pdf[index] = f32(Math.exp(f32(-0.5 * f32(f32(x / f32(sigma)) ** 2))));
    sum = f32(sum + pdf[index]!);
  }
  return pdf.map((value) => f32(value / sum));
}

/** Kernel size for a sigma: 2 * ceil(3 sigma) + 1 (covers +-3 sigma). */
export function blurKernelSize(sigma: number): number {
  return 2 * Math.ceil(3 * sigma) + 1;
}

/** Reflect-pad index (PyTorch's 'reflect': the edge pixel is not repeated). */
function reflect(index: number, length: number): number {
  if (length === 1) return 0;
  let position = index;
  while (position < 0 || position >= length) position = position < 0 ? -position : 2 * (length - 1) - position;
  return position;
}

/**
 * Gaussian blur (torchvision's gaussian_blur on a uint8 tensor): separable float32 convolution
 * with reflect padding, rounded half to even. The kernel must be smaller than twice each side.
 */
export function gaussianBlur(image: RawImage, sigma: number, kernelSize = blurKernelSize(sigma)): RawImage {
  const { pixels, height, width, channels } = image;
  const kernel = gaussianKernel(kernelSize, sigma);
  const half = (kernelSize - 1) / 2;
  if (half >= height || half >= width) throw new RangeError(`blur kernel ${kernelSize} is too large for a ${height}x${width} image (reflect padding needs half the kernel below each side)`);
  const rows = new Float32Array(pixels.length);
  for (let row = 0; row < height; row++) {
    for (let column = 0; column < width; column++) {
      for (let channel = 0; channel < channels; channel++) {
        let total = 0;
        for (let tap = 0; tap < kernelSize; tap++) {
          const source = reflect(column + tap - half, width);
          total = f32(total + f32(kernel[tap]! * pixels[(row * width + source) * channels + channel]!));
        }
        rows[(row * width + column) * channels + channel] = total;
      }
    }
  }
  const out = new Uint8Array(pixels.length);
  for (let row = 0; row < height; row++) {
    for (let column = 0; column < width; column++) {
      for (let channel = 0; channel < channels; channel++) {
        let total = 0;
        for (let tap = 0; tap < kernelSize; tap++) {
          const source = reflect(row + tap - half, height);
          total = f32(total + f32(kernel[tap]! * rows[(source * width + column) * channels + channel]!));
        }
        out[(row * width + column) * channels + channel] = Math.min(255, Math.max(0, roundEven(total)));
      }
    }
  }
  return { ...image, pixels: out };
}

/** torch.round: halves to even. */
function roundEven(value: number): number {
  const floor = Math.floor(value);
  const fraction = value - floor;
  if (fraction !== 0.5) return Math.round(value);
  return floor % 2 === 0 ? floor : floor + 1;
}

/** torchvision's _blend on uint8: (ratio * a + (1 - ratio) * b) in float32, clamped, truncated. */
function blend(image: RawImage, other: (index: number) => number, ratio: number): RawImage {
  const r = f32(ratio);
  const q = f32(1 - ratio);
  return { ...image, pixels: image.pixels.map((value, index) => toByte(f32(f32(r * value) + f32(q * other(index))))) };
}

export function adjustBrightness(image: RawImage, factor: number): RawImage {
  return blend(image, () => 0, factor);
}

export function adjustContrast(image: RawImage, factor: number): RawImage {
  // The mean of the (truncated) grayscale image, as torch.mean in float32 over all pixels.
  const gray = image.channels === 1 ? image.pixels : grayscale(image).pixels;
  let sum = 0;
  for (let index = 0; index < gray.length; index += image.channels) sum += gray[index]!;
  const mean = f32(sum / (gray.length / image.channels));
  return blend(image, () => mean, factor);
}

export function adjustSaturation(image: RawImage, factor: number): RawImage {
  if (image.channels === 1) return { ...image, pixels: image.pixels.slice() };
  const gray = grayscale(image).pixels;
  return blend(image, (index) => gray[index]!, factor);
}

export interface ColorJitterParameters {
  /** The order of brightness (0), contrast (1) and saturation (2). */
  order: number[];
  brightness: number;
  contrast: number;
  saturation: number;
}

/** ColorJitter(s, s, s)'s random draw: factors in [1 - s, 1 + s] and a random order. */
export function colorJitterParameters(strength: number, random: Random): ColorJitterParameters {
  if (!(strength >= 0 && strength < 1)) throw new RangeError(`color jitter strength must be in [0, 1), got ${strength}`);
  const order = random.shuffle([0, 1, 2]);
  const factor = (): number => random.uniform(1 - strength, 1 + strength);
  return { order, brightness: factor(), contrast: factor(), saturation: factor() };
}

export function colorJitter(image: RawImage, parameters: ColorJitterParameters): RawImage {
  let result = image;
  for (const step of parameters.order) {
    if (step === 0) result = adjustBrightness(result, parameters.brightness);
    else if (step === 1) result = adjustContrast(result, parameters.contrast);
    else result = adjustSaturation(result, parameters.saturation);
  }
  return result;
}

/** DeiT-III's blur radius range, used as the Gaussian's sigma. */
export const THREE_AUGMENT_SIGMA: readonly [number, number] = [0.1, 2];

/** 3-Augment's draw for one image: which transform, and for the blur its sigma and kernel size. */
export type ThreeAugmentDraw = { choice: 'grayscale' } | { choice: 'solarize' } | { choice: 'blur'; sigma: number; kernelSize: number };

/** The random part of threeAugment (without its jitter), for an image of `height` x `width`. */
export function drawThreeAugment(random: Random, height: number, width: number): ThreeAugmentDraw {
  const choice = random.int(3);
  if (choice === 0) return { choice: 'grayscale' };
  if (choice === 1) return { choice: 'solarize' };
  const sigma = random.uniform(THREE_AUGMENT_SIGMA[0], THREE_AUGMENT_SIGMA[1]);
  // Small images: the kernel shrinks to what reflect padding allows (half of it below each side).
  const limit = 2 * (Math.min(height, width) - 1) + 1;
  return { choice: 'blur', sigma, kernelSize: Math.min(blurKernelSize(sigma), limit) };
}

/** Applies a drawn 3-Augment transform. */
export function applyThreeAugment(image: RawImage, draw: ThreeAugmentDraw): RawImage {
  if (draw.choice === 'grayscale') return grayscale(image);
  if (draw.choice === 'solarize') return solarize(image, 128);
  return gaussianBlur(image, draw.sigma, draw.kernelSize);
}

/**
 * DeiT-III's 3-Augment: one of grayscale, solarize (threshold 128) or Gaussian blur (sigma
 * uniform in 0.1-2) chosen uniformly, then color jitter of `jitter` (0.3 in DeiT-III; 0 skips it).
 */
export function threeAugment(image: RawImage, random: Random, jitter = 0.3): RawImage {
  const result = applyThreeAugment(image, drawThreeAugment(random, image.height, image.width));
  return jitter > 0 ? colorJitter(result, colorJitterParameters(jitter, random)) : result;
}

// ---- the steps for the native image module (native/image/color.h) ----

/** The op codes of native/image/color.h; solarize at 128 is randaugment.h's Solarize (5). */
export const NATIVE_COLOR_CODES = { Grayscale: 12, Blur: 13, Brightness: 14, Contrast: 15, Saturation: 16, Solarize: 5 } as const;

/**
 * A 3-Augment draw and color jitter as native steps (randaugment.ts' RANDAUGMENT_STEP_FIELDS
 * numbers each) for an image of `height` x `width`, with the blur kernel (computed here with
 * JavaScript's Math.exp, as gaussianBlur computes it): a blur step's argument is its kernel size
 * and its fourth number where its taps start in `kernels`.
 */
export function encodeColorSteps(three: ThreeAugmentDraw | null, jitter: ColorJitterParameters | null, height: number, width: number): { steps: Float64Array; kernels: Float32Array } {
  const steps: number[] = [];
  const push = (code: number, argument = 0, kernelStart = 0): void => {
    steps.push(code, argument, 0, kernelStart, 0, 0, 0, 0, 0);
  };
  let kernels: Float32Array = new Float32Array(0);
  if (three?.choice === 'grayscale') push(NATIVE_COLOR_CODES.Grayscale);
  else if (three?.choice === 'solarize') push(NATIVE_COLOR_CODES.Solarize, 128);
  else if (three?.choice === 'blur') {
    kernels = gaussianKernel(three.kernelSize, three.sigma);
    const half = (three.kernelSize - 1) / 2;
    if (half >= height || half >= width) throw new RangeError(`blur kernel ${three.kernelSize} is too large for a ${height}x${width} image (reflect padding needs half the kernel below each side)`);
    push(NATIVE_COLOR_CODES.Blur, three.kernelSize, 0);
  }
  for (const step of jitter?.order ?? []) {
    if (step === 0) push(NATIVE_COLOR_CODES.Brightness, jitter!.brightness);
    else if (step === 1) push(NATIVE_COLOR_CODES.Contrast, jitter!.contrast);
    else push(NATIVE_COLOR_CODES.Saturation, jitter!.saturation);
  }
  return { steps: Float64Array.from(steps), kernels };
}
