// The loader's native image path (build/Release/masksub_image.node, native/image/image.cc):
// libjpeg-turbo decoding of only a crop box's rows and columns, transforms.ts' resampleBox in
// C++ with the same bytes, and RandAugment's pixel ops (native/image/randaugment.h) and
// 3-Augment + color jitter (native/image/color.h) with randaugment.ts' and color.ts' bytes, the
// random draws staying in JavaScript. A module of its own, not the libtorch addon, so that the loader's
// worker threads can load it (the libtorch addon installs libtorch's allocator when it loads).
// Optional: when it was not built (no libjpeg62-turbo-dev at install; scripts/build-native.mjs
// says so) or does not load, `nativeImage` is null and the loader decodes with sharp and resamples
// in JavaScript, with the same training bytes (test/native-image.test.ts).

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ColorJitterParameters, encodeColorSteps, type ThreeAugmentDraw } from './color.js';
import { encodeRandAugmentSteps, type RandAugmentOptions, type RandAugmentStep } from './randaugment.js';
import { type Box, checkResampleArguments, type Interpolation, type RawImage, type ResampleOutput } from './transforms.js';

/** A JPEG region decoded by decodeJpegRegion: its pixels and where it sits in the (scaled) image. */
export interface JpegRegion extends RawImage {
  /** The region's first row and column in the image at 1/denominator size. */
  top: number;
  left: number;
  /** The image's size at 1/denominator size. */
  imageHeight: number;
  imageWidth: number;
}

interface ImageAddon {
  jpegInfo(bytes: Uint8Array): { height: number; width: number; channels: number };
  decodeJpegRegion(bytes: Uint8Array, top: number, left: number, height: number, width: number, denominator: number, margin: number, rgb: boolean): JpegRegion;
  resampleBox(
    pixels: Uint8Array, imageHeight: number, imageWidth: number, channels: number,
    boxTop: number, boxLeft: number, boxHeight: number, boxWidth: number,
    outputHeight: number, outputWidth: number, bicubic: boolean,
    windowTop: number, windowLeft: number, windowHeight: number, windowWidth: number,
    flip: boolean, target: Uint8Array, offset: number, channelFirst: boolean,
  ): void;
  augment(
    pixels: Uint8Array, height: number, width: number, channels: number, steps: Float64Array, fill: Uint8Array,
    target: Uint8Array, offset: number, channelFirst: boolean, kernels?: Float32Array,
  ): void;
  libjpegTurboVersion: number;
}

/** Pixels decoded outside the box on each side: a whole iMCU, so the box's bytes are the full decode's. */
export const REGION_MARGIN = 16;

const here = dirname(fileURLToPath(import.meta.url));
// MASKSUB_IMAGE_ADDON=off forces the sharp + JavaScript path (the tests compare the two).
const setting = process.env.MASKSUB_IMAGE_ADDON;
const addonPath = setting && setting !== 'off' ? resolve(setting) : join(here, '..', '..', 'build', 'Release', 'masksub_image.node');

function load(): { addon: ImageAddon | null; problem: string } {
  if (setting === 'off') return { addon: null, problem: 'disabled by MASKSUB_IMAGE_ADDON=off' };
  if (!existsSync(addonPath)) return { addon: null, problem: `${addonPath} was not built (libjpeg62-turbo-dev missing at install?)` };
  try {
    return { addon: createRequire(import.meta.url)(addonPath) as ImageAddon, problem: '' };
  } catch (error) {
    return { addon: null, problem: `${addonPath} did not load: ${(error as Error).message.split('\n')[0]}` };
  }
}

const loaded = load();

/** The native image module, or null when the loader uses sharp and JavaScript (see nativeImageProblem). */
export const nativeImage: ImageAddon | null = loaded.addon;
/** Why nativeImage is null ('' when it loaded). */
export const nativeImageProblem: string = loaded.problem;

/** Whether the bytes start as a JPEG (SOI marker, then another marker). */
export function isJpeg(bytes: Uint8Array): boolean {
  return bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff;
}

/**
 * transforms.ts' resampleBox through the native module: the same checks, messages and bytes.
 * `output.channelFirst` writes into the batch; otherwise a new interleaved image is returned.
 */
export function nativeResampleBox(
  addon: ImageAddon,
  image: RawImage,
  box: Box,
  outputHeight: number,
  outputWidth: number,
  interpolation: Interpolation,
  window: Box = { top: 0, left: 0, height: outputHeight, width: outputWidth },
  output: ResampleOutput = {},
): RawImage {
  const { height, width, channels } = image;
  checkResampleArguments(image, box, outputHeight, outputWidth, window, output);
  const into = output.channelFirst;
  const size = window.height * window.width * channels;
  const target = into?.target ?? new Uint8Array(size);
  const offset = into?.offset ?? 0;
  addon.resampleBox(
    image.pixels, height, width, channels, box.top, box.left, box.height, box.width, outputHeight, outputWidth, interpolation === 'bicubic',
    window.top, window.left, window.height, window.width, output.flip === true, target, offset, into !== undefined,
  );
  return { pixels: into === undefined ? target : target.subarray(offset, offset + size), height: window.height, width: window.width, channels };
}

/** The augmentations of one sample, drawn (in JavaScript) and not yet applied. */
export interface DrawnAugmentation {
  randAugment?: readonly RandAugmentStep[];
  threeAugment?: ThreeAugmentDraw | null;
  colorJitter?: ColorJitterParameters | null;
}

/**
 * Applies drawn augmentations in the loader's order (RandAugment's steps, then 3-Augment's
 * transform, then color jitter) in one native call, with the bytes of randaugment.ts'
 * applyRandAugmentSteps, color.ts' applyThreeAugment and colorJitter (test/randaugment-native.test.ts,
 * test/color-native.test.ts). The draws were made by randAugmentSteps, drawThreeAugment and
 * colorJitterParameters as on the JavaScript path, so a sample's bytes do not depend on which path
 * ran. With `into`, the result goes channel-first into the batch at `into.offset` (transforms.ts'
 * toChannelFirst layout); otherwise a new interleaved image is returned. The input is not modified.
 */
export function nativeAugment(
  addon: ImageAddon,
  image: RawImage,
  drawn: DrawnAugmentation,
  options: RandAugmentOptions = {},
  into?: { target: Uint8Array; offset: number },
): RawImage {
  const { height, width, channels } = image;
  if (channels !== 1 && channels !== 3) throw new RangeError(`rand-augment needs 1- or 3-channel images (PIL's L or RGB), got ${channels} channels`);
  const size = height * width * channels;
  if (into !== undefined && !(Number.isInteger(into.offset) && into.offset >= 0 && into.offset + size <= into.target.length)) {
    throw new Error(`augment: the ${height}x${width}x${channels} result does not fit at offset ${into.offset} of a ${into.target.length}-byte target`);
  }
  // Each channel's fill as randaugment.ts' affineTransform stores it into its Uint8Array.
  const given = options.fill ?? [128, 128, 128];
  const fill = Uint8Array.from({ length: channels }, (_, channel) => given[channel] ?? given[0] ?? 0);
  const random = encodeRandAugmentSteps(drawn.randAugment ?? [], height, width);
  const color = encodeColorSteps(drawn.threeAugment ?? null, drawn.colorJitter ?? null, height, width);
  let steps = random;
  if (color.steps.length > 0) {
    steps = new Float64Array(random.length + color.steps.length);
    steps.set(random);
    steps.set(color.steps, random.length);
  }
  const target = into?.target ?? new Uint8Array(size);
  const offset = into?.offset ?? 0;
  addon.augment(image.pixels, height, width, channels, steps, fill, target, offset, into !== undefined, color.kernels);
  return { pixels: into === undefined ? target : target.subarray(offset, offset + size), height, width, channels };
}

/** randaugment.ts' applyRandAugmentSteps through the native module (nativeAugment with RandAugment only). */
export function nativeRandAugment(
  addon: ImageAddon,
  image: RawImage,
  steps: readonly RandAugmentStep[],
  options: RandAugmentOptions = {},
  into?: { target: Uint8Array; offset: number },
): RawImage {
  return nativeAugment(addon, image, { randAugment: steps }, options, into);
}
