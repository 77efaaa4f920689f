// RandAugment as timm implements it (timm/data/auto_augment.py: rand_augment_transform, RandAugment,
// AugmentOp), driven by timm's config strings such as `rand-m9-mstd0.5-inc1`, on decoded images
// (RawImage: uint8, height x width x channels, 1 or 3 channels).
//
// timm applies these ops to PIL images, so each pixel op here reproduces Pillow 9's arithmetic
// (test/randaugment.test.ts compares each with PIL 9.4; all equal it byte for byte, the resampling ops
// too, though the test allows them one level in under 1% of bytes), not torchvision's tensor
// functional that src/data/color.ts follows; the two differ in rounding:
//   autoContrast, equalize, invert, posterize, solarize  PIL ImageOps (integer lookup tables)
//   solarizeAdd                                          timm's own lookup table through Image.point
//   color, contrast, brightness, sharpness               PIL ImageEnhance: Image.blend in float32,
//                                                        truncated (not rounded) to uint8; Color's
//                                                        gray is PIL's "L" conversion (fixed-point
//                                                        19595/38470/7471 >> 16, rounded); Contrast's
//                                                        gray level is int(mean of L + 0.5);
//                                                        Sharpness blends with ImageFilter.SMOOTH
//   rotate, shearX/Y, translateX/Y                       PIL Image.rotate / Image.transform(AFFINE)
//                                                        with bilinear or bicubic (PIL's a = -1
//                                                        cubic), pixels mapped from outside the
//                                                        image keep the fill color
// color.ts's functions are not reused: none of them has PIL's rounding.
//
// Random draws follow timm's order per image: n op indices uniformly with replacement, then for each
// op: the apply-probability test, the magnitude noise, the sign flip (ops with a signed argument)
// and the resampling choice (geometric ops). They come from our seeded Random, not Python's.
//
// The loader applies the drawn steps through the native image module when it loaded
// (native/image/randaugment.h via native-image.ts' nativeRandAugment: the same bytes, test/
// randaugment-native.test.ts); the ops here stay the reference and the fallback, and the draws are
// made here on both paths (encodeRandAugmentSteps hands them to C++), so the bytes of a sample do
// not depend on which path ran.
//
// Config strings are parsed more strictly than timm does, so a typo cannot pass silently: timm skips
// sections without a digit ("rand-foo") and reads `inc0` as increasing (Python's bool('0') is True);
// here both are errors naming the section. Transform-set sections (`t...`) are not supported.

import type { Random } from './random.js';
import type { RawImage } from './transforms.js';

/** timm's _LEVEL_DENOM: magnitudes are on a 0-10 scale. */
export const LEVEL_DENOMINATOR = 10;

export type RandAugmentOpName =
  | 'AutoContrast' | 'Equalize' | 'Invert' | 'Rotate'
  | 'Posterize' | 'PosterizeIncreasing' | 'Solarize' | 'SolarizeIncreasing' | 'SolarizeAdd'
  | 'Color' | 'ColorIncreasing' | 'Contrast' | 'ContrastIncreasing'
  | 'Brightness' | 'BrightnessIncreasing' | 'Sharpness' | 'SharpnessIncreasing'
  | 'ShearX' | 'ShearY' | 'TranslateXRel' | 'TranslateYRel';

/** timm's _RAND_TRANSFORMS (Cutout is left out there too; timm uses random erasing instead). */
export const RAND_TRANSFORMS: readonly RandAugmentOpName[] = [
  'AutoContrast', 'Equalize', 'Invert', 'Rotate', 'Posterize', 'Solarize', 'SolarizeAdd',
  'Color', 'Contrast', 'Brightness', 'Sharpness', 'ShearX', 'ShearY', 'TranslateXRel', 'TranslateYRel',
];

/** timm's _RAND_INCREASING_TRANSFORMS (`inc1`): severity grows with the magnitude for every op. */
export const RAND_INCREASING_TRANSFORMS: readonly RandAugmentOpName[] = [
  'AutoContrast', 'Equalize', 'Invert', 'Rotate', 'PosterizeIncreasing', 'SolarizeIncreasing', 'SolarizeAdd',
  'ColorIncreasing', 'ContrastIncreasing', 'BrightnessIncreasing', 'SharpnessIncreasing',
  'ShearX', 'ShearY', 'TranslateXRel', 'TranslateYRel',
];

export type ResampleMode = 'bilinear' | 'bicubic';

export interface RandAugmentConfig {
  /** `m`: magnitude on the 0-10 scale (timm's default 10). */
  magnitude: number;
  /** `n`: ops drawn per image, with replacement (default 2). */
  layers: number;
  /** `p`: probability that a drawn op is applied (default 0.5). */
  probability: number;
  /** `mstd`: std of the Gaussian noise on the magnitude per op; Infinity (mstd > 100) draws U(0, m). */
  magnitudeStd: number;
  /** `mmax`: upper clip of the noisy magnitude (default 10). */
  magnitudeMax: number;
  /** `inc1`: timm's increasing op set. */
  increasing: boolean;
}

export interface RandAugmentOptions {
  /** Fill of pixels that geometric ops map from outside the image; timm's default (128, 128, 128).
   *  timm's create_transform passes the dataset mean instead: round(255 * mean), (124, 116, 104) for ImageNet. */
  fill?: readonly number[];
  /** Resampling of geometric ops; 'random' (timm's default) picks bilinear or bicubic per op. */
  interpolation?: ResampleMode | 'random';
  /** Largest translation as a fraction of the side (timm's translate_pct, 0.45). */
  translatePercent?: number;
}

function sectionError(text: string, section: string, why: string): Error {
  return new Error(`rand-augment '${text}': section '${section}' ${why} (expected rand-m<0-10>[-n<ops>][-p<prob>][-mstd<std>][-mmax<max>][-inc1])`);
}

/**
 * Parses timm's RandAugment config string: `rand` then dash-separated sections in any order,
 * m (integer magnitude), n (integer ops per image), p (apply probability), mstd (magnitude std;
 * above 100 means uniform in [0, m]), mmax (integer magnitude clip), inc1 (increasing op set).
 */
export function parseRandAugment(text: string): RandAugmentConfig {
  const sections = text.split('-');
  if (sections[0] !== 'rand') throw new Error(`rand-augment '${text}': must start with 'rand' (e.g. rand-m9-mstd0.5-inc1), got '${sections[0]}'`);
  const config: RandAugmentConfig = { magnitude: LEVEL_DENOMINATOR, layers: 2, probability: 0.5, magnitudeStd: 0, magnitudeMax: LEVEL_DENOMINATOR, increasing: false };
  const seen = new Set<string>();
  for (const section of sections.slice(1)) {
    if (section.startsWith('t')) throw sectionError(text, section, 'names a transform set, which is not supported (only the default and inc1 sets)');
    // timm splits a section at its first digit: key before it, value from it on.
    const match = /^([a-z]+)(\d.*)$/.exec(section);
    if (match === null) throw sectionError(text, section, 'is not a key followed by a number');
    const key = match[1]!;
    const value = match[2]!;
    if (seen.has(key)) throw sectionError(text, section, `repeats '${key}'`);
    seen.add(key);
    const integer = (): number => {
      if (!/^\d+$/.test(value)) throw sectionError(text, section, `needs a non-negative integer after '${key}'`);
      return Number(value);
    };
    const decimal = (): number => {
      if (!/^\d+(\.\d*)?([eE][+-]?\d+)?$/.test(value)) throw sectionError(text, section, `needs a non-negative number after '${key}'`);
      return Number(value);
    };
    if (key === 'm') config.magnitude = integer();
    else if (key === 'n') config.layers = integer();
    else if (key === 'p') {
      config.probability = decimal();
      if (config.probability > 1) throw sectionError(text, section, 'is a probability above 1');
    } else if (key === 'mstd') {
      const std = decimal();
      config.magnitudeStd = std > 100 ? Number.POSITIVE_INFINITY : std;
    } else if (key === 'mmax') {
      config.magnitudeMax = integer();
      // timm's `magnitude_max or 10` turns mmax0 into 10; refusing it keeps the two from disagreeing.
      if (config.magnitudeMax === 0) throw sectionError(text, section, 'must be at least 1 (timm reads mmax0 as 10)');
    }
    else if (key === 'inc') {
      if (value !== '1') throw sectionError(text, section, "must be 'inc1' (timm reads any inc value, inc0 too, as on)");
      config.increasing = true;
    } else throw sectionError(text, section, `has an unknown key '${key}'`);
  }
  return config;
}

/** The op set a config draws from. */
export function randAugmentOps(config: RandAugmentConfig): readonly RandAugmentOpName[] {
  return config.increasing ? RAND_INCREASING_TRANSFORMS : RAND_TRANSFORMS;
}

/** timm's _randomly_negate: negative when the draw is above 0.5. */
function randomlyNegate(value: number, random: Random): number {
  return random.next() > 0.5 ? -value : value;
}

/**
 * timm's LEVEL_TO_ARG for one op: the op's argument at `magnitude` (0-10), drawing the sign where
 * timm does; null for the ops without an argument. Translations give a fraction of the side.
 */
export function opArgument(name: RandAugmentOpName, magnitude: number, random: Random, translatePercent = 0.45): number | null {
  const level = magnitude / LEVEL_DENOMINATOR;
  switch (name) {
    case 'AutoContrast':
    case 'Equalize':
    case 'Invert':
      return null;
    case 'Rotate':
      return randomlyNegate(level * 30, random);
    case 'Posterize':
      return Math.trunc(level * 4);
    case 'PosterizeIncreasing':
      return 4 - Math.trunc(level * 4);
    case 'Solarize':
      return Math.min(256, Math.trunc(level * 256));
    case 'SolarizeIncreasing':
      return 256 - Math.min(256, Math.trunc(level * 256));
    case 'SolarizeAdd':
      return Math.min(128, Math.trunc(level * 110));
    case 'Color':
    case 'Contrast':
    case 'Brightness':
    case 'Sharpness':
      return level * 1.8 + 0.1;
    case 'ColorIncreasing':
    case 'ContrastIncreasing':
    case 'BrightnessIncreasing':
    case 'SharpnessIncreasing':
      // 1 is no change; moving towards 0.1 or 1.9 strengthens the blend either way.
      return Math.max(0.1, 1 + randomlyNegate(level * 0.9, random));
    case 'ShearX':
    case 'ShearY':
      return randomlyNegate(level * 0.3, random);
    case 'TranslateXRel':
    case 'TranslateYRel':
      return randomlyNegate(level * translatePercent, random);
  }
}

function isGeometric(name: RandAugmentOpName): boolean {
  return name === 'Rotate' || name === 'ShearX' || name === 'ShearY' || name === 'TranslateXRel' || name === 'TranslateYRel';
}

/** One drawn op of one image: whether it is applied and with what. */
export interface RandAugmentStep {
  op: RandAugmentOpName;
  applied: boolean;
  /** The magnitude after noise and clipping (NaN when not applied). */
  magnitude: number;
  argument: number | null;
  /** Resampling of a geometric op, null otherwise. */
  interpolation: ResampleMode | null;
}

/** All random draws of one image, in timm's order, without touching pixels. */
export function randAugmentSteps(config: RandAugmentConfig, random: Random, options: RandAugmentOptions = {}): RandAugmentStep[] {
  const ops = randAugmentOps(config);
  const chosen: RandAugmentOpName[] = [];
  // numpy.random.choice(ops, n, replace=True) draws all indices before any op runs.
  for (let layer = 0; layer < config.layers; layer++) chosen.push(ops[random.int(ops.length)]!);
  const interpolation = options.interpolation ?? 'random';
  return chosen.map((op) => {
    if (config.probability < 1 && random.next() > config.probability) {
      return { op, applied: false, magnitude: Number.NaN, argument: null, interpolation: null };
    }
    let magnitude = config.magnitude;
    if (config.magnitudeStd === Number.POSITIVE_INFINITY) magnitude = random.uniform(0, magnitude);
    else if (config.magnitudeStd > 0) magnitude = magnitude + config.magnitudeStd * random.normal();
    // timm clips even without noise, so m above 10 acts as 10 unless mmax is raised.
    magnitude = Math.max(0, Math.min(magnitude, config.magnitudeMax));
    const argument = opArgument(op, magnitude, random, options.translatePercent);
    let resample: ResampleMode | null = null;
    if (isGeometric(op)) resample = interpolation === 'random' ? (random.int(2) === 0 ? 'bilinear' : 'bicubic') : interpolation;
    return { op, applied: true, magnitude, argument, interpolation: resample };
  });
}

/** Applies one drawn step (an op that was not applied returns the image as it is). */
export function applyRandAugmentStep(image: RawImage, step: RandAugmentStep, options: RandAugmentOptions = {}): RawImage {
  if (!step.applied) return image;
  const argument = step.argument ?? 0;
  const fill = options.fill ?? [128, 128, 128];
  const resample = step.interpolation ?? 'bicubic';
  switch (step.op) {
    case 'AutoContrast': return autoContrast(image);
    case 'Equalize': return equalize(image);
    case 'Invert': return invert(image);
    case 'Rotate': return rotate(image, argument, resample, fill);
    case 'Posterize':
    case 'PosterizeIncreasing': return posterize(image, argument);
    case 'Solarize':
    case 'SolarizeIncreasing': return solarize(image, argument);
    case 'SolarizeAdd': return solarizeAdd(image, argument);
    case 'Color':
    case 'ColorIncreasing': return color(image, argument);
    case 'Contrast':
    case 'ContrastIncreasing': return contrast(image, argument);
    case 'Brightness':
    case 'BrightnessIncreasing': return brightness(image, argument);
    case 'Sharpness':
    case 'SharpnessIncreasing': return sharpness(image, argument);
    case 'ShearX': return shearX(image, argument, resample, fill);
    case 'ShearY': return shearY(image, argument, resample, fill);
    // timm's translate_x_rel: pct * width pixels (a float; PIL resamples the fractional shift).
    case 'TranslateXRel': return translateX(image, argument * image.width, resample, fill);
    case 'TranslateYRel': return translateY(image, argument * image.height, resample, fill);
  }
}

/** Applies drawn steps one after another; returns a new image (the input is not modified). */
export function applyRandAugmentSteps(image: RawImage, steps: readonly RandAugmentStep[], options: RandAugmentOptions = {}): RawImage {
  checkImage(image);
  let result = image;
  for (const step of steps) result = applyRandAugmentStep(result, step, options);
  return result === image ? { ...image, pixels: image.pixels.slice() } : result;
}

/**
 * RandAugment on one image: `config.layers` ops drawn from the config's set, each applied with
 * `config.probability`. Returns a new image (the input is not modified).
 */
export function randAugment(image: RawImage, config: RandAugmentConfig, random: Random, options: RandAugmentOptions = {}): RawImage {
  checkImage(image);
  return applyRandAugmentSteps(image, randAugmentSteps(config, random, options), options);
}

// ---- the steps for the native image module (native/image/randaugment.h) ----

/** Numbers per op in encodeRandAugmentSteps' output: code, argument, bicubic, affine matrix a-f. */
export const RANDAUGMENT_STEP_FIELDS = 9;

/** The op codes of native/image/randaugment.h (0 is an op that changes nothing). */
export const NATIVE_OP_CODES = {
  AutoContrast: 1, Equalize: 2, Invert: 3, Posterize: 4, Solarize: 5, SolarizeAdd: 6,
  Color: 7, Contrast: 8, Brightness: 9, Sharpness: 10, Affine: 11,
} as const;

/**
 * Drawn steps as the native module's randAugment takes them, for an image of `height` x `width`
 * (every op keeps the size): what applyRandAugmentStep would call, with the arguments that need
 * JavaScript's own arithmetic worked out here (the rotation matrix, rounded through toFixed; the
 * posterize bit mask; the translation in pixels), so the C++ side only does pixel arithmetic. Steps
 * that change nothing (not applied, posterize at 8 bits or more, a rotation by a multiple of 360
 * degrees) are left out.
 */
export function encodeRandAugmentSteps(steps: readonly RandAugmentStep[], height: number, width: number): Float64Array {
  const encoded: number[] = [];
  const push = (code: number, argument = 0, resample: ResampleMode | null = null, matrix: AffineMatrix = [0, 0, 0, 0, 0, 0]): void => {
    encoded.push(code, argument, resample === 'bilinear' ? 0 : 1, ...matrix);
  };
  for (const step of steps) {
    if (!step.applied) continue;
    const argument = step.argument ?? 0;
    const resample = step.interpolation ?? 'bicubic';
    const affine = (matrix: AffineMatrix | null): void => {
      if (matrix !== null) push(NATIVE_OP_CODES.Affine, 0, resample, matrix);
    };
    switch (step.op) {
      case 'AutoContrast': push(NATIVE_OP_CODES.AutoContrast); break;
      case 'Equalize': push(NATIVE_OP_CODES.Equalize); break;
      case 'Invert': push(NATIVE_OP_CODES.Invert); break;
      case 'Rotate': affine(rotationMatrix(argument, height, width)); break;
      case 'Posterize':
      case 'PosterizeIncreasing': if (argument < 8) push(NATIVE_OP_CODES.Posterize, posterizeMask(argument)); break;
      case 'Solarize':
      case 'SolarizeIncreasing': push(NATIVE_OP_CODES.Solarize, argument); break;
      case 'SolarizeAdd': push(NATIVE_OP_CODES.SolarizeAdd, argument); break;
      case 'Color':
      case 'ColorIncreasing': push(NATIVE_OP_CODES.Color, argument); break;
      case 'Contrast':
      case 'ContrastIncreasing': push(NATIVE_OP_CODES.Contrast, argument); break;
      case 'Brightness':
      case 'BrightnessIncreasing': push(NATIVE_OP_CODES.Brightness, argument); break;
      case 'Sharpness':
      case 'SharpnessIncreasing': push(NATIVE_OP_CODES.Sharpness, argument); break;
      case 'ShearX': affine(shearXMatrix(argument)); break;
      case 'ShearY': affine(shearYMatrix(argument)); break;
      case 'TranslateXRel': affine(translateXMatrix(argument * width)); break;
      case 'TranslateYRel': affine(translateYMatrix(argument * height)); break;
    }
  }
  return Float64Array.from(encoded);
}

function checkImage(image: RawImage): void {
  if (image.channels !== 1 && image.channels !== 3) throw new RangeError(`rand-augment needs 1- or 3-channel images (PIL's L or RGB), got ${image.channels} channels`);
}

// ---- lookup-table ops (PIL ImageOps, exact integer arithmetic) ----

/** Applies a 256-entry table per channel (`tables[channel]`), as PIL's Image.point does. */
function applyTables(image: RawImage, tables: readonly Uint8Array[]): RawImage {
  checkImage(image);
  const { pixels, channels } = image;
  const out = new Uint8Array(pixels.length);
  if (channels === 1) {
    const table = tables[0]!;
    for (let index = 0; index < pixels.length; index++) out[index] = table[pixels[index]!]!;
  } else {
    // One table per channel in locals, not `tables[index % channels]` per byte (about 10x slower).
    const [red, green, blue] = tables as [Uint8Array, Uint8Array, Uint8Array];
    for (let index = 0; index < pixels.length; index += 3) {
      out[index] = red[pixels[index]!]!;
      out[index + 1] = green[pixels[index + 1]!]!;
      out[index + 2] = blue[pixels[index + 2]!]!;
    }
  }
  return { ...image, pixels: out };
}

function sameTable(image: RawImage, build: (value: number) => number): RawImage {
  const table = new Uint8Array(256);
  for (let value = 0; value < 256; value++) table[value] = build(value);
  return applyTables(image, Array.from({ length: image.channels }, () => table));
}

/** One 256-bin histogram per channel. */
function histograms(image: RawImage): Float64Array[] {
  checkImage(image);
  const { pixels, channels } = image;
  const counts = Array.from({ length: channels }, () => new Float64Array(256));
  if (channels === 1) {
    const count = counts[0]!;
    for (let index = 0; index < pixels.length; index++) count[pixels[index]!]!++;
  } else {
    const [red, green, blue] = counts as [Float64Array, Float64Array, Float64Array];
    for (let index = 0; index < pixels.length; index += 3) {
      red[pixels[index]!]!++;
      green[pixels[index + 1]!]!++;
      blue[pixels[index + 2]!]!++;
    }
  }
  return counts;
}

/** PIL's ImageOps.autocontrast (cutoff 0): each channel's [lowest, highest] stretched to [0, 255], truncated. */
export function autoContrast(image: RawImage): RawImage {
  const tables = histograms(image).map((histogram) => {
    let low = 0;
    while (low < 256 && histogram[low] === 0) low++;
    let high = 255;
    while (high >= 0 && histogram[high] === 0) high--;
    const table = new Uint8Array(256);
    if (high <= low) {
      for (let value = 0; value < 256; value++) table[value] = value;
      return table;
    }
    const scale = 255 / (high - low);
    const offset = -low * scale;
    for (let value = 0; value < 256; value++) table[value] = Math.max(0, Math.min(255, Math.trunc(value * scale + offset)));
    return table;
  });
  return applyTables(image, tables);
}

/** PIL's ImageOps.equalize: the step is (pixels - count of the top used value) // 255 per channel. */
export function equalize(image: RawImage): RawImage {
  const tables = histograms(image).map((histogram) => {
    const table = new Uint8Array(256);
    const used: number[] = [];
    for (let value = 0; value < 256; value++) if (histogram[value]! > 0) used.push(histogram[value]!);
    const step = used.length <= 1 ? 0 : Math.floor((used.reduce((total, count) => total + count, 0) - used[used.length - 1]!) / 255);
    if (step === 0) {
      for (let value = 0; value < 256; value++) table[value] = value;
      return table;
    }
    let running = Math.floor(step / 2);
    for (let value = 0; value < 256; value++) {
      table[value] = Math.min(255, Math.floor(running / step));
      running += histogram[value]!;
    }
    return table;
  });
  return applyTables(image, tables);
}

/** PIL's ImageOps.invert. */
export function invert(image: RawImage): RawImage {
  return sameTable(image, (value) => 255 - value);
}

/** The byte mask that keeps the top `bits` bits (below 8). */
function posterizeMask(bits: number): number {
  return ~(2 ** (8 - bits) - 1) & 0xff;
}

/** PIL's ImageOps.posterize: keeps the top `bits` bits (0 gives black); timm skips it at 8 bits or more. */
export function posterize(image: RawImage, bits: number): RawImage {
  if (bits >= 8) return { ...image, pixels: image.pixels.slice() };
  const mask = posterizeMask(bits);
  return sameTable(image, (value) => value & mask);
}

/** PIL's ImageOps.solarize: values at or above `threshold` inverted (256 changes nothing). */
export function solarize(image: RawImage, threshold: number): RawImage {
  return sameTable(image, (value) => (value < threshold ? value : 255 - value));
}

/** timm's solarize_add: `add` to values below `threshold` (128), capped at 255. */
export function solarizeAdd(image: RawImage, add: number, threshold = 128): RawImage {
  return sameTable(image, (value) => (value < threshold ? Math.min(255, value + add) : value));
}

// ---- ImageEnhance ops (PIL's Image.blend: float32, truncated) ----

const f32 = Math.fround;

/**
 * PIL's Image.blend(degenerate, image, factor): degenerate + factor * (image - degenerate) in float32,
 * truncated to uint8, clipped only when extrapolating (factor outside [0, 1]).
 */
function blend(image: RawImage, degenerate: Uint8Array | number, factor: number): RawImage {
  checkImage(image);
  const alpha = f32(factor);
  const { pixels } = image;
  if (alpha === 1) return { ...image, pixels: pixels.slice() };
  const out = new Uint8Array(pixels.length);
  // The degenerate image as bytes or one constant, not a callback per byte (a closure call per
  // byte made Color, Contrast, Brightness and Sharpness several times slower).
  if (typeof degenerate === 'number') {
    if (alpha === 0) return { ...image, pixels: out.fill(degenerate) };
    for (let index = 0; index < pixels.length; index++) {
      const value = f32(degenerate + f32(alpha * (pixels[index]! - degenerate)));
      out[index] = value <= 0 ? 0 : value >= 255 ? 255 : Math.trunc(value);
    }
  } else {
    if (alpha === 0) return { ...image, pixels: degenerate.slice(0, pixels.length) };
    for (let index = 0; index < pixels.length; index++) {
      const base = degenerate[index]!;
      const value = f32(base + f32(alpha * (pixels[index]! - base)));
      out[index] = value <= 0 ? 0 : value >= 255 ? 255 : Math.trunc(value);
    }
  }
  return { ...image, pixels: out };
}

/** PIL's RGB -> L conversion: ITU-R 601-2 luma in 16-bit fixed point, rounded. */
function pilLuma(red: number, green: number, blue: number): number {
  return (red * 19595 + green * 38470 + blue * 7471 + 0x8000) >>> 16;
}

/** The L image of PIL's convert('L'), one value per pixel. */
function lumaPlane(image: RawImage): Uint8Array {
  checkImage(image);
  const { pixels, channels } = image;
  if (channels === 1) return pixels;
  const plane = new Uint8Array(image.height * image.width);
  for (let pixel = 0; pixel < plane.length; pixel++) plane[pixel] = pilLuma(pixels[pixel * 3]!, pixels[pixel * 3 + 1]!, pixels[pixel * 3 + 2]!);
  return plane;
}

/** PIL's ImageEnhance.Color: blend with the image's L conversion (0 gray, 1 unchanged). */
export function color(image: RawImage, factor: number): RawImage {
  const gray = lumaPlane(image);
  if (image.channels === 1) return blend(image, gray, factor);
  // The L value repeated in each pixel's three channels, as Image.blend sees the L image converted to RGB.
  const degenerate = new Uint8Array(gray.length * 3);
  for (let pixel = 0; pixel < gray.length; pixel++) degenerate[3 * pixel] = degenerate[3 * pixel + 1] = degenerate[3 * pixel + 2] = gray[pixel]!;
  return blend(image, degenerate, factor);
}

/** PIL's ImageEnhance.Contrast: blend with a flat image at int(mean of L + 0.5). */
export function contrast(image: RawImage, factor: number): RawImage {
  const gray = lumaPlane(image);
  let sum = 0;
  for (let index = 0; index < gray.length; index++) sum += gray[index]!;
  const mean = Math.trunc(sum / gray.length + 0.5);
  return blend(image, mean, factor);
}

/** PIL's ImageEnhance.Brightness: blend with black. */
export function brightness(image: RawImage, factor: number): RawImage {
  return blend(image, 0, factor);
}

/**
 * PIL's ImageFilter.SMOOTH (3x3, weights 1 1 1 / 1 5 1 / 1 1 1 over 13) in float32, rounded;
 * the outermost rows and columns are copied unchanged, as PIL's 3x3 filter does.
 */
export function smooth(image: RawImage): RawImage {
  checkImage(image);
  const { pixels, height, width, channels } = image;
  const out = pixels.slice();
  const edge = f32(1 / 13);
  const center = f32(5 / 13);
  const stride = width * channels;
  for (let row = 1; row < height - 1; row++) {
    for (let column = 1; column < width - 1; column++) {
      for (let channel = 0; channel < channels; channel++) {
        const at = row * stride + column * channels + channel;
        // PIL sums the row below, the row itself, then the row above, each left to right (written
        // out: a closure made per byte here cost most of Sharpness's time).
        const below = at + stride;
        const above = at - stride;
        let total = f32(f32(f32(pixels[below - channels]! * edge) + f32(pixels[below]! * edge)) + f32(pixels[below + channels]! * edge));
        total = f32(total + f32(f32(f32(pixels[at - channels]! * edge) + f32(pixels[at]! * center)) + f32(pixels[at + channels]! * edge)));
        total = f32(total + f32(f32(f32(pixels[above - channels]! * edge) + f32(pixels[above]! * edge)) + f32(pixels[above + channels]! * edge)));
        out[at] = total <= 0 ? 0 : total >= 255 ? 255 : Math.trunc(f32(total + 0.5));
      }
    }
  }
  return { ...image, pixels: out };
}

/** PIL's ImageEnhance.Sharpness: blend with the SMOOTH-filtered image (0 blurred, above 1 sharpened). */
export function sharpness(image: RawImage, factor: number): RawImage {
  return blend(image, smooth(image).pixels, factor);
}

// ---- geometric ops (PIL's Image.transform with an AFFINE matrix) ----

/** `matrix` maps output to input: (x, y) -> (a x + b y + c, d x + e y + f), PIL's convention. */
export type AffineMatrix = readonly [number, number, number, number, number, number];

/**
 * PIL's affine transform with bilinear or bicubic sampling: each output pixel center (x + 0.5,
 * y + 0.5) is mapped to the input; a point outside [0, width) x [0, height) keeps the fill, one
 * inside is interpolated from the pixels around it with edge rows and columns repeated. Bilinear
 * truncates; bicubic uses PIL's a = -1 cubic and truncates after clipping to [0, 255].
 */
export function affineTransform(image: RawImage, matrix: AffineMatrix, resample: ResampleMode, fill: readonly number[]): RawImage {
  checkImage(image);
  const { pixels, height, width, channels } = image;
  const [a, b, c, d, e, f] = matrix;
  const out = new Uint8Array(pixels.length);
  const stride = width * channels;
  const clampX = (x: number): number => (x < 0 ? 0 : x < width ? x : width - 1);
  const clampY = (y: number): number => (y < 0 ? 0 : y < height ? y : height - 1);
  const columns = [0, 0, 0, 0];
  const rows = [0, 0, 0, 0];
  const values = [0, 0, 0, 0];
  for (let row = 0; row < height; row++) {
    for (let column = 0; column < width; column++) {
      const at = (row * width + column) * channels;
      const xOut = column + 0.5;
      const yOut = row + 0.5;
      let x = a * xOut + b * yOut + c;
      let y = d * xOut + e * yOut + f;
      if (x < 0 || x >= width || y < 0 || y >= height) {
        for (let channel = 0; channel < channels; channel++) out[at + channel] = fill[channel] ?? fill[0] ?? 0;
        continue;
      }
      x -= 0.5;
      y -= 0.5;
      const x0 = Math.floor(x);
      const y0 = Math.floor(y);
      const dx = x - x0;
      const dy = y - y0;
      if (resample === 'bilinear') {
        const left = clampX(x0) * channels;
        const right = clampX(x0 + 1) * channels;
        const top = clampY(y0) * stride;
        const bottom = clampY(y0 + 1) * stride;
        for (let channel = 0; channel < channels; channel++) {
          const upper = pixels[top + left + channel]! + (pixels[top + right + channel]! - pixels[top + left + channel]!) * dx;
          const lower = pixels[bottom + left + channel]! + (pixels[bottom + right + channel]! - pixels[bottom + left + channel]!) * dx;
          out[at + channel] = Math.trunc(upper + (lower - upper) * dy);
        }
      } else {
        for (let tap = 0; tap < 4; tap++) {
          columns[tap] = clampX(x0 - 1 + tap) * channels;
          rows[tap] = clampY(y0 - 1 + tap) * stride;
        }
        for (let channel = 0; channel < channels; channel++) {
          for (let tap = 0; tap < 4; tap++) {
            const base = rows[tap]! + channel;
            values[tap] = cubic(pixels[base + columns[0]!]!, pixels[base + columns[1]!]!, pixels[base + columns[2]!]!, pixels[base + columns[3]!]!, dx);
          }
          const value = cubic(values[0]!, values[1]!, values[2]!, values[3]!, dy);
          out[at + channel] = value <= 0 ? 0 : value >= 255 ? 255 : Math.trunc(value);
        }
      }
    }
  }
  return { ...image, pixels: out };
}

/** PIL's BICUBIC macro (Geometry.c): the a = -1 cubic through four samples at offset t from the second. */
function cubic(v1: number, v2: number, v3: number, v4: number, t: number): number {
  const p1 = v2;
  const p2 = -v1 + v3;
  const p3 = 2 * (v1 - v2) + v3 - v4;
  const p4 = -v1 + v2 - v3 + v4;
  return p1 + t * (p2 + t * (p3 + t * p4));
}

/** Python's round(value, 15), as PIL rounds the rotation matrix (toFixed rounds the exact binary value). */
function round15(value: number): number {
  return Number(value.toFixed(15));
}

/**
 * PIL's Image.rotate(degrees) matrix without expand: counter-clockwise about the center (width / 2,
 * height / 2); null for a multiple of 360 degrees, which PIL returns as a copy.
 */
export function rotationMatrix(degrees: number, height: number, width: number): AffineMatrix | null {
  // Python's float modulo: the sign follows the divisor, so -10 becomes 350.
  let angle = degrees % 360;
  if (angle < 0) angle += 360;
  if (angle === 0) return null;
  const radians = -(angle * (Math.PI / 180));
  const cosine = round15(Math.cos(radians));
  const sine = round15(Math.sin(radians));
  const negativeSine = round15(-Math.sin(radians));
  const centerX = width / 2;
  const centerY = height / 2;
  // PIL maps the center to itself: offset = M (-center) + center, summed in its order.
  const offsetX = cosine * -centerX + sine * -centerY + 0 + centerX;
  const offsetY = negativeSine * -centerX + cosine * -centerY + 0 + centerY;
  return [cosine, sine, offsetX, negativeSine, cosine, offsetY];
}

/** PIL's Image.rotate(degrees) without expand: counter-clockwise about the center (width / 2, height / 2). */
export function rotate(image: RawImage, degrees: number, resample: ResampleMode, fill: readonly number[]): RawImage {
  const matrix = rotationMatrix(degrees, image.height, image.width);
  if (matrix === null) return { ...image, pixels: image.pixels.slice() };
  return affineTransform(image, matrix, resample, fill);
}

const shearXMatrix = (factor: number): AffineMatrix => [1, factor, 0, 0, 1, 0];
const shearYMatrix = (factor: number): AffineMatrix => [1, 0, 0, factor, 1, 0];
const translateXMatrix = (pixels: number): AffineMatrix => [1, 0, pixels, 0, 1, 0];
const translateYMatrix = (pixels: number): AffineMatrix => [1, 0, 0, 0, 1, pixels];

/** timm's shear_x: input x = x + factor * y. */
export function shearX(image: RawImage, factor: number, resample: ResampleMode, fill: readonly number[]): RawImage {
  return affineTransform(image, shearXMatrix(factor), resample, fill);
}

/** timm's shear_y: input y = factor * x + y. */
export function shearY(image: RawImage, factor: number, resample: ResampleMode, fill: readonly number[]): RawImage {
  return affineTransform(image, shearYMatrix(factor), resample, fill);
}

/** timm's translate_x: input x = x + pixels (positive moves the content left). */
export function translateX(image: RawImage, pixels: number, resample: ResampleMode, fill: readonly number[]): RawImage {
  return affineTransform(image, translateXMatrix(pixels), resample, fill);
}

/** timm's translate_y: input y = y + pixels (positive moves the content up). */
export function translateY(image: RawImage, pixels: number, resample: ResampleMode, fill: readonly number[]): RawImage {
  return affineTransform(image, translateYMatrix(pixels), resample, fill);
}
