// RandAugment's native ops (native/image/randaugment.h through src/data/native-image.ts'
// nativeRandAugment) against the JavaScript ops of src/data/randaugment.ts, the reference (which
// test/randaugment.test.ts compares with Pillow 9.4): every op of both op sets at several
// magnitudes, both signs and both resamplings, on random images of odd sizes with 1 and 3
// channels, equal byte for byte; whole drawn chains and the channel-first output; bad arguments
// refused with the problem named; two worker threads at once getting the main thread's bytes; and
// trainSample with RandAugment giving the same batch bytes with and without the module (a child
// process with MASKSUB_IMAGE_ADDON=off).
// Skipped, saying so, when the module was not built (no libjpeg62-turbo-dev).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import sharp from 'sharp';
import { nativeImage, nativeImageProblem, nativeRandAugment } from '../src/data/native-image.js';
import { Random } from '../src/data/random.js';
import {
  applyRandAugmentStep, applyRandAugmentSteps, encodeRandAugmentSteps, opArgument, parseRandAugment, RAND_INCREASING_TRANSFORMS, RAND_TRANSFORMS,
  randAugment, randAugmentSteps, type RandAugmentOpName, type RandAugmentStep, type ResampleMode,
} from '../src/data/randaugment.js';
import { type RawImage, toChannelFirst } from '../src/data/transforms.js';
import { assertSameBytesWithoutImageModule, noiseImage, testImage } from './helpers/images.js';

const directory = mkdtempSync(join(tmpdir(), 'masksub-randaugment-native-'));
after(() => rmSync(directory, { recursive: true, force: true }));

/** The first position where two byte arrays differ, for the assertion message. */
function firstDifference(ours: Uint8Array, reference: Uint8Array): string {
  if (ours.length !== reference.length) return `lengths ${ours.length} vs ${reference.length}`;
  for (let index = 0; index < ours.length; index++) {
    if (ours[index] !== reference[index]) return `byte ${index}: native ${ours[index]} vs JavaScript ${reference[index]}`;
  }
  return 'equal';
}

const GEOMETRIC = new Set<RandAugmentOpName>(['Rotate', 'ShearX', 'ShearY', 'TranslateXRel', 'TranslateYRel']);
const SIGNED = new Set<RandAugmentOpName>([
  ...GEOMETRIC, 'ColorIncreasing', 'ContrastIncreasing', 'BrightnessIncreasing', 'SharpnessIncreasing',
]);

/** A random source whose draws are fixed: opArgument's sign test reads `next`. */
const fixedDraw = (value: number): Random => ({ next: () => value }) as unknown as Random;

/** Every op of both sets at `magnitude`, each sign where the op has one, each resampling where it resamples. */
function stepsAt(magnitude: number): RandAugmentStep[] {
  const steps: RandAugmentStep[] = [];
  for (const op of new Set([...RAND_TRANSFORMS, ...RAND_INCREASING_TRANSFORMS])) {
    for (const sign of SIGNED.has(op) ? [0.2, 0.8] : [0.2]) {
      const argument = opArgument(op, magnitude, fixedDraw(sign));
      for (const interpolation of GEOMETRIC.has(op) ? (['bilinear', 'bicubic'] as ResampleMode[]) : [null]) {
        steps.push({ op, applied: true, magnitude, argument, interpolation });
      }
    }
  }
  return steps;
}

describe('RandAugment native ops equal the JavaScript ops', { skip: nativeImage === null ? `not built: ${nativeImageProblem}` : false }, () => {
  const addon = nativeImage!;
  const fill = [124, 116, 104];

  const images: [string, RawImage][] = [
    ['RGB 37x45 photo-like', testImage(37, 45, 1)],
    ['RGB 53x29 noise', noiseImage(53, 29, 3, 2)],
    ['RGB 23x61 values 60-190', testImage(23, 61, 3, 3, 60, 190)],
    ['L 41x19 photo-like', testImage(41, 19, 4, 1)],
    ['L 17x33 noise', noiseImage(17, 33, 1, 5)],
    ['RGB 3x2', noiseImage(3, 2, 3, 6)],
    ['L 1x7', noiseImage(1, 7, 1, 7)],
    ['RGB 1x1', noiseImage(1, 1, 3, 8)],
    ['RGB 12x10 flat', { pixels: new Uint8Array(12 * 10 * 3).fill(77), height: 12, width: 10, channels: 3 }],
  ];
  // 0 (identity arguments: rotation by 0, solarize at 256, posterize at 4 bits), timm's m9 and
  // m10, fractional magnitudes from the mstd noise, and 15 with mmax20 (posterize below 0 bits,
  // enhance factors above 2).
  const magnitudes = [0, 2.35, 5, 7.77, 9, 10, 15];

  for (const [label, image] of images) {
    test(`every op at magnitudes ${magnitudes.join(', ')}, both signs and resamplings (${label})`, () => {
      const before = image.pixels.slice();
      let compared = 0;
      let changed = 0;
      for (const magnitude of magnitudes) {
        for (const step of stepsAt(magnitude)) {
          const expected = applyRandAugmentStep(image, step, { fill });
          if (!Buffer.from(expected.pixels).equals(Buffer.from(image.pixels))) changed++;
          const native = nativeRandAugment(addon, image, [step], { fill });
          assert.deepEqual([native.height, native.width, native.channels], [image.height, image.width, image.channels]);
          const what = `${label}: ${step.op}(${step.argument}, ${step.interpolation}) at m${magnitude}`;
          assert.ok(Buffer.from(native.pixels).equals(Buffer.from(expected.pixels)), `${what}: ${firstDifference(native.pixels, expected.pixels)}`);
          compared++;
        }
      }
      assert.ok(compared >= 7 * 30, `${compared} comparisons`);
      // Most ops change the pixels (not on a flat or one-pixel image), so equal bytes are not two no-ops.
      if (image.height * image.width > 1 && !label.includes('flat')) assert.ok(changed > compared / 2, `${label}: only ${changed} of ${compared} ops changed the image`);
      assert.deepEqual(image.pixels, before, 'the input is not modified');
    });
  }

  test('enhance factors and translations off timm\'s grid (arguments as test/randaugment.test.ts gives PIL)', () => {
    const image = testImage(31, 47, 11);
    const gray = testImage(29, 35, 12, 1);
    for (const subject of [image, gray]) {
      for (const factor of [0, 0.1, 0.37, 1, 1.27, 1.9, 2.6]) {
        for (const op of ['Color', 'Contrast', 'Brightness', 'Sharpness'] as const) {
          const step: RandAugmentStep = { op, applied: true, magnitude: 0, argument: factor, interpolation: null };
          const native = nativeRandAugment(addon, subject, [step], { fill });
          assert.ok(Buffer.from(native.pixels).equals(Buffer.from(applyRandAugmentStep(subject, step, { fill }).pixels)), `${op}(${factor}), ${subject.channels} channel(s)`);
        }
      }
      for (const argument of [0.45, -0.45, 0.1553, -0.0127, 1.3, -2]) {
        for (const op of ['TranslateXRel', 'TranslateYRel', 'ShearX', 'ShearY'] as const) {
          for (const interpolation of ['bilinear', 'bicubic'] as const) {
            const step: RandAugmentStep = { op, applied: true, magnitude: 0, argument, interpolation };
            const native = nativeRandAugment(addon, subject, [step], { fill: [200] });
            assert.ok(Buffer.from(native.pixels).equals(Buffer.from(applyRandAugmentStep(subject, step, { fill: [200] }).pixels)), `${op}(${argument}, ${interpolation}), fill [200]`);
          }
        }
      }
    }
  });

  test('drawn chains (plain and inc1 sets, n up to 4, mstd noise) equal randAugment, interleaved and channel-first', () => {
    const configs = ['rand-m9-mstd0.5-inc1', 'rand-m7-mstd0.5', 'rand-m9-n4-p1-mstd1-inc1', 'rand-m10-n3-p0.8', 'rand-m15-mmax20-n4-p1-mstd2-inc1'].map((text) => [text, parseRandAugment(text)] as const);
    const subjects = [testImage(35, 43, 21), noiseImage(27, 31, 1, 22), testImage(224, 224, 23)];
    let applied = 0;
    for (const [text, config] of configs) {
      for (const subject of subjects) {
        for (let seed = 0; seed < (subject.height === 224 ? 4 : 12); seed++) {
          const expected = randAugment(subject, config, new Random(seed), { fill });
          const steps = randAugmentSteps(config, new Random(seed), { fill });
          applied += steps.filter((step) => step.applied).length;
          const what = `${text} seed ${seed} on ${subject.height}x${subject.width}x${subject.channels} (${steps.map((step) => (step.applied ? step.op : '-')).join(' -> ')})`;
          const native = nativeRandAugment(addon, subject, steps, { fill });
          assert.ok(Buffer.from(native.pixels).equals(Buffer.from(expected.pixels)), `${what}: ${firstDifference(native.pixels, expected.pixels)}`);
          assert.ok(Buffer.from(applyRandAugmentSteps(subject, steps, { fill }).pixels).equals(Buffer.from(expected.pixels)));
          // Channel-first at an offset of a larger target, the bytes around it untouched.
          const size = expected.pixels.length;
          const reference = new Uint8Array(size + 9).fill(3);
          toChannelFirst(expected, reference, 4);
          const target = new Uint8Array(size + 9).fill(3);
          nativeRandAugment(addon, subject, steps, { fill }, { target, offset: 4 });
          assert.ok(Buffer.from(target).equals(Buffer.from(reference)), `${what} (channel-first)`);
        }
      }
    }
    assert.ok(applied > 200, `only ${applied} ops applied`);
  });

  test('steps that change nothing are left out of the encoding; the image comes back as it was', () => {
    const image = testImage(9, 11, 31);
    const unchanged: RandAugmentStep[] = [
      { op: 'Rotate', applied: true, magnitude: 0, argument: -360, interpolation: 'bilinear' },
      { op: 'Posterize', applied: true, magnitude: 10, argument: 8, interpolation: null },
      { op: 'Equalize', applied: false, magnitude: Number.NaN, argument: null, interpolation: null },
    ];
    assert.equal(encodeRandAugmentSteps(unchanged, 9, 11).length, 0);
    assert.deepEqual(nativeRandAugment(addon, image, unchanged).pixels, image.pixels);
    // Nine numbers per op: code, argument, bicubic, matrix.
    const encoded = encodeRandAugmentSteps([{ op: 'TranslateXRel', applied: true, magnitude: 9, argument: -0.25, interpolation: 'bilinear' }], 9, 11);
    assert.deepEqual([...encoded], [11, 0, 0, 1, 0, -2.75, 0, 1, 0]);
  });

  test('bad arguments are refused with the problem named, nothing written', () => {
    const image = testImage(6, 5, 41);
    const step: RandAugmentStep = { op: 'Invert', applied: true, magnitude: 0, argument: null, interpolation: null };
    assert.throws(() => nativeRandAugment(addon, { ...image, pixels: new Uint8Array(6 * 5 * 4), channels: 4 }, [step]), /1- or 3-channel images .* got 4 channels/);
    const target = new Uint8Array(80);
    assert.throws(() => nativeRandAugment(addon, image, [step], {}, { target, offset: 0 }), /6x5x3 result does not fit at offset 0 of a 80-byte target/);
    assert.ok(target.every((value) => value === 0));
    // The addon itself checks everything that would make memory access unsafe.
    const out = new Uint8Array(90);
    const fill = new Uint8Array([1, 2, 3]);
    const valid = Float64Array.from([3, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert.throws(() => addon.augment(image.pixels, 60, 5, 3, valid, fill, out, 0, false), /pixels are not a 60x5x3 image/);
    assert.throws(() => addon.augment(image.pixels, 6, 5, 3, valid, fill, out, 1, false), /does not fit at offset 1 of a 90-byte target/);
    assert.throws(() => addon.augment(image.pixels, 6, 5, 3, Float64Array.from([3, 0, 0]), fill, out, 0, false), /9 numbers per op, got 3/);
    assert.throws(() => addon.augment(image.pixels, 6, 5, 3, Float64Array.from([17, 0, 0, 0, 0, 0, 0, 0, 0]), fill, out, 0, false), /step 0 has no op code 0-16/);
    assert.throws(() => addon.augment(image.pixels, 6, 5, 3, Float64Array.from([11, 0, 1, Number.NaN, 0, 0, 0, 1, 0]), fill, out, 0, false), /step 0 has a value that is not finite/);
    assert.throws(() => addon.augment(image.pixels, 6, 5, 3, valid, new Uint8Array(1), out, 0, false), /fill needs one byte per channel \(3\)/);
    assert.throws(() => addon.augment(image.pixels, 6, 5, 3, [3, 0, 0, 0, 0, 0, 0, 0, 0] as unknown as Float64Array, fill, out, 0, false), /steps must be a Float64Array/);
    assert.throws(() => addon.augment(image.pixels, 6, 5, 2, valid, fill, out, 0, false), /got 2 channels/);
    assert.ok(out.every((value) => value === 0));
  });

  test('two worker threads apply steps at once (per-thread buffers) and get the main thread\'s bytes', async () => {
    const image = testImage(224, 224, 61);
    const config = parseRandAugment('rand-m9-n4-p1-mstd0.5-inc1');
    const random = new Random(62);
    const encoded = Array.from({ length: 30 }, () => encodeRandAugmentSteps(randAugmentSteps(config, random, { fill }), 224, 224));
    const expected = createHash('sha256');
    const out = new Uint8Array(image.pixels.length);
    for (const steps of encoded) {
      addon.augment(image.pixels, 224, 224, 3, steps, Uint8Array.from(fill), out, 0, true);
      expected.update(out);
    }
    const digest = expected.digest('hex');
    const source = `
      const { parentPort, workerData } = require('node:worker_threads');
      const { createHash } = require('node:crypto');
      const addon = require(workerData.addon);
      for (let round = 0; round < 3; round++) {
        const hash = createHash('sha256');
        const out = new Uint8Array(workerData.pixels.length);
        for (const steps of workerData.encoded) {
          addon.augment(workerData.pixels, 224, 224, 3, steps, Uint8Array.from(workerData.fill), out, 0, true);
          hash.update(out);
        }
        parentPort.postMessage(hash.digest('hex'));
      }`;
    const addonPath = join(import.meta.dirname, '..', 'build', 'Release', 'masksub_image.node');
    const results = await Promise.all([0, 1].map((index) => new Promise<string[]>((resolve, reject) => {
      const worker = new Worker(source, { eval: true, workerData: { addon: addonPath, pixels: image.pixels, encoded, fill } });
      const digests: string[] = [];
      worker.on('message', (message: string) => digests.push(message));
      worker.on('error', reject);
      worker.on('exit', (code) => (code === 0 ? resolve(digests) : reject(new Error(`worker ${index} exited with ${code}`))));
    })));
    for (const digests of results) assert.deepEqual(digests, [digest, digest, digest]);
  });

  test('trainSample with RandAugment gives the same batch bytes with and without the native module', async () => {
    const paths: string[] = [];
    for (const [index, [height, width, channels]] of ([[375, 500, 3], [201, 163, 1], [97, 131, 3]] as const).entries()) {
      const image = testImage(height, width, 50 + index, channels);
      const path = join(directory, `${index}.${index === 2 ? 'png' : 'jpg'}`);
      const input = sharp(image.pixels, { raw: { width, height, channels } });
      if (index === 2) await input.png().toFile(path);
      else await (channels === 1 ? input.toColourspace('b-w') : input).jpeg({ quality: 90 }).toFile(path);
      paths.push(path);
    }
    const script = `
      import { createHash } from 'node:crypto';
      import { trainSample } from './src/data/file-batch.ts';
      import { parseRandAugment } from './src/data/randaugment.ts';
      const paths = ${JSON.stringify(paths)};
      const hash = createHash('sha256');
      for (const text of ['rand-m9-mstd0.5-inc1', 'rand-m7-n3-p1-mstd0.5']) for (const jitter of [false, true]) for (let seed = 0; seed < 5; seed++) {
        const source = { paths, classes: ['a'], size: 64, scale: [0.08, 1], ratio: [3 / 4, 4 / 3], interpolation: seed % 2 ? 'bicubic' : 'bilinear', cropPercent: 0.875,
          skipBadImages: false, threeAugment: false, colorJitter: jitter ? 0.3 : 0, randAugment: parseRandAugment(text), fill: [124, 116, 104] };
        for (let sample = 0; sample < paths.length; sample++) {
          const target = new Uint8Array(3 * 64 * 64);
          await trainSample(source, sample, seed, 2, true, target, 0);
          hash.update(target);
        }
      }
      console.log(hash.digest('hex'));`;
    assertSameBytesWithoutImageModule(script);
  });
});
