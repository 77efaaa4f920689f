// 3-Augment and color jitter through the native image module (native/image/color.h via
// src/data/native-image.ts' nativeAugment) against src/data/color.ts, the reference that
// test/transforms-torch.test.ts compares with torchvision: grayscale, solarize, the Gaussian blur
// at sigmas across DeiT-III's 0.1-2 (kernels clipped on small images), and brightness, contrast
// and saturation at factors in and beyond [0.7, 1.3], on random images of odd sizes with 1 and 3
// channels, equal byte for byte; drawn 3-Augment + jitter (after RandAugment) chains; bad kernels
// refused with the problem named; trainSample with 3-Augment + jitter (+ RandAugment) gives the
// same batch bytes with and without the module. Skipped, saying so, when the module was not built.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import sharp from 'sharp';
import {
  applyThreeAugment, blurKernelSize, colorJitter, colorJitterParameters, type ColorJitterParameters, drawThreeAugment, encodeColorSteps, type ThreeAugmentDraw,
} from '../src/data/color.js';
import { nativeAugment, nativeImage, nativeImageProblem } from '../src/data/native-image.js';
import { Random } from '../src/data/random.js';
import { applyRandAugmentSteps, parseRandAugment, randAugmentSteps } from '../src/data/randaugment.js';
import type { RawImage } from '../src/data/transforms.js';
import { assertSameBytesWithoutImageModule, noiseImage, testImage } from './helpers/images.js';

const directory = mkdtempSync(join(tmpdir(), 'masksub-color-native-'));
after(() => rmSync(directory, { recursive: true, force: true }));

const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(Buffer.from(b));

describe('3-Augment and color jitter: native ops equal color.ts', { skip: nativeImage === null ? `not built: ${nativeImageProblem}` : false }, () => {
  const addon = nativeImage!;
  const images: [string, RawImage][] = [
    ['RGB 37x45 photo-like', testImage(37, 45, 1)],
    ['RGB 29x53 noise', noiseImage(29, 53, 3, 2)],
    ['L 41x19 photo-like', testImage(41, 19, 4, 1)],
    ['L 13x33 noise', noiseImage(13, 33, 1, 5)],
    ['RGB 4x3', noiseImage(4, 3, 3, 6)],
    ['RGB 1x5', noiseImage(1, 5, 3, 7)],
  ];

  for (const [label, image] of images) {
    test(`grayscale, solarize, blur at sigmas 0.1-2 and each jitter op at factors 0-1.9 (${label})`, () => {
      const before = image.pixels.slice();
      const limit = 2 * (Math.min(image.height, image.width) - 1) + 1;
      const draws: ThreeAugmentDraw[] = [
        { choice: 'grayscale' }, { choice: 'solarize' },
        ...[0.1, 0.37, 0.8, 1.234, 2].map((sigma) => ({ choice: 'blur' as const, sigma, kernelSize: Math.min(blurKernelSize(sigma), limit) })),
      ];
      for (const three of draws) {
        const native = nativeAugment(addon, image, { threeAugment: three });
        assert.ok(same(native.pixels, applyThreeAugment(image, three).pixels), `${label}: ${JSON.stringify(three)}`);
      }
      for (const factor of [0, 0.31, 0.7, 0.93, 1, 1.17, 1.3, 1.9]) {
        for (const order of [[0], [1], [2]]) {
          const jitter: ColorJitterParameters = { order, brightness: factor, contrast: factor, saturation: factor };
          const native = nativeAugment(addon, image, { colorJitter: jitter });
          assert.ok(same(native.pixels, colorJitter(image, jitter).pixels), `${label}: ${['brightness', 'contrast', 'saturation'][order[0]!]}(${factor})`);
        }
      }
      assert.deepEqual(image.pixels, before, 'the input is not modified');
    });
  }

  test('drawn chains: RandAugment, then 3-Augment, then jitter 0.3, as trainSample draws them, interleaved and channel-first', () => {
    const config = parseRandAugment('rand-m9-mstd0.5-inc1');
    const fill = [124, 116, 104];
    let blurs = 0;
    for (const image of [testImage(33, 47, 11), noiseImage(25, 19, 1, 12), testImage(96, 96, 13)]) {
      for (let seed = 0; seed < 24; seed++) {
        const random = new Random(seed);
        const steps = seed % 2 === 0 ? randAugmentSteps(config, random, { fill }) : [];
        const three = drawThreeAugment(random, image.height, image.width);
        const jitter = colorJitterParameters(0.3, random);
        if (three.choice === 'blur') blurs++;
        let expected = applyRandAugmentSteps(image, steps, { fill });
        expected = colorJitter(applyThreeAugment(expected, three), jitter);
        const drawn = { randAugment: steps, threeAugment: three, colorJitter: jitter };
        const native = nativeAugment(addon, image, drawn, { fill });
        assert.ok(same(native.pixels, expected.pixels), `seed ${seed} on ${image.height}x${image.width}x${image.channels}: ${three.choice}, jitter order ${jitter.order}`);
        const target = new Uint8Array(expected.pixels.length + 6).fill(9);
        nativeAugment(addon, image, drawn, { fill }, { target, offset: 3 });
        const plane = image.height * image.width;
        for (let pixel = 0; pixel < plane; pixel += 7) {
          for (let channel = 0; channel < image.channels; channel++) assert.equal(target[3 + channel * plane + pixel], expected.pixels[pixel * image.channels + channel]);
        }
        assert.deepEqual([target[0], target[1], target[2], target[target.length - 1]], [9, 9, 9, 9]);
      }
    }
    assert.ok(blurs >= 10, `only ${blurs} blurs drawn`);
  });

  test('bad blur steps are refused with the problem named', () => {
    const image = testImage(6, 5, 21);
    const out = new Uint8Array(90);
    const fill = new Uint8Array([0, 0, 0]);
    const kernel = Float32Array.from([0.25, 0.5, 0.25]);
    const blur = (size: number, start: number): Float64Array => Float64Array.from([13, size, 0, start, 0, 0, 0, 0, 0]);
    assert.throws(() => addon.augment(image.pixels, 6, 5, 3, blur(3, 1), fill, out, 0, false, kernel), /step 0: the blur kernel \(size 3.* at 1.*\) is not an odd size within the 3 kernel taps/);
    assert.throws(() => addon.augment(image.pixels, 6, 5, 3, blur(2, 0), fill, out, 0, false, kernel), /not an odd size/);
    assert.throws(() => addon.augment(image.pixels, 6, 5, 3, blur(3, 0), fill, out, 0, false), /not an odd size within the 0 kernel taps/);
    assert.throws(() => addon.augment(image.pixels, 6, 5, 3, blur(11, 0), fill, out, 0, false, new Float32Array(11)), /blur kernel 11 is too large for a 6x5 image/);
    assert.throws(() => addon.augment(image.pixels, 6, 5, 3, blur(3, 0), fill, out, 0, false, [1, 2, 3] as unknown as Float32Array), /kernels must be a Float32Array/);
    assert.ok(out.every((value) => value === 0));
    assert.throws(() => encodeColorSteps({ choice: 'blur', sigma: 2, kernelSize: 13 }, null, 6, 5), /blur kernel 13 is too large for a 6x5 image/);
  });

  test('trainSample with 3-Augment and jitter (and RandAugment) gives the same batch bytes with and without the native module', async () => {
    const paths: string[] = [];
    for (const [index, [height, width, channels]] of ([[375, 500, 3], [201, 163, 1]] as const).entries()) {
      const image = testImage(height, width, 60 + index, channels);
      const path = join(directory, `${index}.jpg`);
      const input = sharp(image.pixels, { raw: { width, height, channels } });
      await (channels === 1 ? input.toColourspace('b-w') : input).jpeg({ quality: 90 }).toFile(path);
      paths.push(path);
    }
    const script = `
      import { createHash } from 'node:crypto';
      import { trainSample } from './src/data/file-batch.ts';
      import { parseRandAugment } from './src/data/randaugment.ts';
      const paths = ${JSON.stringify(paths)};
      const hash = createHash('sha256');
      for (const rand of [null, 'rand-m9-mstd0.5-inc1']) for (const [three, jitter] of [[true, 0.3], [true, 0], [false, 0.3]]) for (let seed = 0; seed < 4; seed++) {
        const source = { paths, classes: ['a'], size: 48, scale: [0.08, 1], ratio: [3 / 4, 4 / 3], interpolation: 'bicubic', cropPercent: 0.875,
          skipBadImages: false, threeAugment: three, colorJitter: jitter, randAugment: rand === null ? null : parseRandAugment(rand), fill: [124, 116, 104] };
        for (let sample = 0; sample < paths.length; sample++) {
          const target = new Uint8Array(3 * 48 * 48);
          await trainSample(source, sample, seed, 3, true, target, 0);
          hash.update(target);
        }
      }
      console.log(hash.digest('hex'));`;
    assertSameBytesWithoutImageModule(script);
  });
});
