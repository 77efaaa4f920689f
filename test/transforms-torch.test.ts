// The image transforms against torchvision 0.14 (Debian's python3-torchvision) on the same pixels:
// resized crops (also flipped and written channel-first in one pass, as training does) and the
// eval resize + center crop (antialiased bilinear and bicubic, torchvision's tensor path with
// antialias=True, the filter PIL uses), the flip, and sharp's decoding against
// PIL's on the same PNG and JPEG files. RandomResizedCrop's random boxes are compared with
// torchvision's own get_params as distributions (area fraction, aspect ratio, position).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import sharp from 'sharp';
import { decodeImage } from '../src/data/decode.js';
import { Random } from '../src/data/random.js';
import {
  adjustBrightness, adjustContrast, adjustSaturation, blurKernelSize, colorJitter, colorJitterParameters, gaussianBlur, grayscale, solarize, threeAugment,
} from '../src/data/color.js';
import {
  evalResizeCenterCrop, flipHorizontal, randomResizedCropBox, type RawImage, resizedCrop, toChannelFirst, type Interpolation,
} from '../src/data/transforms.js';
import { compareBytes, testImage } from './helpers/images.js';
import { skipWithout } from './helpers/skip.js';

const PYTHON = process.env.MASKSUB_PYTHON ?? '/usr/bin/python3';

function torchvisionMissing(): string | null {
  if (!existsSync(PYTHON)) return `${PYTHON} not found`;
  try {
    execFileSync(PYTHON, ['-c', 'import torchvision'], { stdio: 'ignore' });
    return null;
  } catch {
    return 'python3-torchvision is not installed (apt-get install python3-torchvision)';
  }
}
const missing = torchvisionMissing();

const directory = mkdtempSync(join(tmpdir(), 'masksub-transforms-'));
after(() => rmSync(directory, { recursive: true, force: true }));


/** Runs Python with the image as a uint8 CHW tensor `image`; the script prints JSON. */
function python(image: RawImage, script: string): unknown {
  const path = join(directory, `image-${image.height}x${image.width}.bin`);
  writeFileSync(path, image.pixels);
  const prelude = `
import json, sys, numpy as np, torch
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode
torch.set_num_threads(1)
image = torch.from_numpy(np.fromfile(${JSON.stringify(path)}, dtype=np.uint8).reshape(${image.height}, ${image.width}, 3).copy()).permute(2, 0, 1).contiguous()
def hwc(t): return t.permute(1, 2, 0).reshape(-1).tolist()
`;
  return JSON.parse(execFileSync(PYTHON, ['-c', prelude + script], { encoding: 'utf8', timeout: 120000, maxBuffer: 1 << 28 }));
}


describe('transforms against torchvision 0.14', () => {
  const image = testImage(75, 100, 7);

  for (const interpolation of ['bilinear', 'bicubic'] as Interpolation[]) {
    test(`resized crops (${interpolation}, shrinking and enlarging) equal torchvision's resized_crop`, (t) => {
      if (skipWithout(t, missing)) return;
      const boxes = [
        { top: 0, left: 0, height: 75, width: 100, size: 32 }, // shrink 2.3x / 3.1x
        { top: 10, left: 21, height: 40, width: 53, size: 24 },
        { top: 5, left: 7, height: 13, width: 11, size: 40 }, // enlarge 3x
        { top: 60, left: 90, height: 15, width: 10, size: 12 }, // touches the bottom-right border
      ];
      const mode = interpolation === 'bicubic' ? 'BICUBIC' : 'BILINEAR';
      const reference = python(image, `
boxes = ${JSON.stringify(boxes)}
crops = [TF.resized_crop(image, b['top'], b['left'], b['height'], b['width'], [b['size'], b['size']], InterpolationMode.${mode}, antialias=True) for b in boxes]
# The flipped crops channel-first, the batch layout the training transform writes directly.
print(json.dumps([[hwc(c) for c in crops], [TF.hflip(c).reshape(-1).tolist() for c in crops]]))
`) as number[][][];
      boxes.forEach((box, index) => {
        const ours = resizedCrop(image, box, box.size, interpolation);
        const { largest, differing } = compareBytes(ours.pixels, reference[0]![index]!);
        // torch accumulates in float32, we in float64 with float32 taps: a sum that lands within
        // float32 rounding of a .5 may round the other way, one level apart, in a few pixels.
        assert.ok(largest <= 1, `box ${index}: largest difference ${largest}`);
        assert.ok(differing < 0.01, `box ${index}: ${(differing * 100).toFixed(2)}% of bytes differ`);
        // Flip and channel-first fused into the resampling (the training path), written at an
        // offset into a larger batch: torchvision's hflip of the crop, and the same bytes as
        // flipping and copying the unfused result.
        const batch = new Uint8Array(5 + 3 * box.size * box.size + 7).fill(77);
        resizedCrop(image, box, box.size, interpolation, { flip: true, channelFirst: { target: batch, offset: 5 } });
        const fused = batch.subarray(5, 5 + 3 * box.size * box.size);
        const flippedReference = compareBytes(fused, reference[1]![index]!);
        assert.ok(flippedReference.largest <= 1 && flippedReference.differing < 0.01, `flipped box ${index}: largest ${flippedReference.largest}`);
        const unfused = new Uint8Array(fused.length);
        toChannelFirst(flipHorizontal(ours), unfused, 0);
        assert.deepEqual(fused, unfused, `flipped box ${index}: fused bytes differ from flip + toChannelFirst`);
        assert.ok(batch.subarray(0, 5).every((value) => value === 77) && batch.subarray(5 + fused.length).every((value) => value === 77), 'wrote outside its sample');
      });
    });
  }

  test('eval transform: resize shorter side to floor(size / crop_pct), center crop, as timm builds it from torchvision', (t) => {
    if (skipWithout(t, missing)) return;
    const cases = [
      { size: 32, cropPercent: 0.875, interpolation: 'bicubic' as Interpolation }, // resize 36, crop 32
      { size: 48, cropPercent: 0.95, interpolation: 'bilinear' as Interpolation },
      { size: 64, cropPercent: 1, interpolation: 'bicubic' as Interpolation },
      { size: 90, cropPercent: 0.875, interpolation: 'bilinear' as Interpolation }, // enlarges (shorter side 75 -> 102)
    ];
    const tall: RawImage = testImage(97, 61, 11);
    for (const source of [image, tall]) {
      const reference = python(source, `
import math
cases = ${JSON.stringify(cases)}
out = []
for c in cases:
    mode = InterpolationMode.BICUBIC if c['interpolation'] == 'bicubic' else InterpolationMode.BILINEAR
    resized = TF.resize(image, math.floor(c['size'] / c['cropPercent']), mode, antialias=True)
    out.append(hwc(TF.center_crop(resized, [c['size'], c['size']])))
print(json.dumps(out))
`) as number[][];
      cases.forEach((entry, index) => {
        const ours = evalResizeCenterCrop(source, entry.size, entry.cropPercent, entry.interpolation);
        assert.equal(ours.height, entry.size);
        const { largest, differing } = compareBytes(ours.pixels, reference[index]!);
        assert.ok(largest <= 1 && differing < 0.01, `${source.height}x${source.width} case ${index}: largest ${largest}, ${(differing * 100).toFixed(2)}% differ`);
      });
    }
  });

  test('a channel-first target that the crop does not fit is refused with the sizes named, nothing written', () => {
    const box = { top: 0, left: 0, height: 75, width: 100 };
    const small = new Uint8Array(3 * 8 * 8 + 2).fill(9);
    assert.throws(() => resizedCrop(image, box, 8, 'bilinear', { channelFirst: { target: small, offset: 3 } }), /8x8x3 output does not fit at offset 3 of a 194-byte target/);
    assert.throws(() => resizedCrop(image, box, 8, 'bilinear', { channelFirst: { target: small, offset: -1 } }), /offset -1/);
    assert.ok(small.every((value) => value === 9));
  });

  test('horizontal flip equals torchvision hflip exactly', (t) => {
    if (skipWithout(t, missing)) return;
    const reference = python(image, 'print(json.dumps(hwc(TF.hflip(image))))') as number[];
    const ours = flipHorizontal({ ...image, pixels: image.pixels.slice() });
    assert.deepEqual(Array.from(ours.pixels), reference);
  });

  test('RandomResizedCrop boxes: same distribution as torchvision get_params (area, aspect, position)', (t) => {
    if (skipWithout(t, missing)) return;
    const samples = 20000;
    // A wide image, so that some tries fail and the fallback matters too.
    const [height, width] = [150, 500];
    const statistics = (boxes: { top: number; left: number; height: number; width: number }[]): number[] => {
      const area = boxes.map((box) => (box.height * box.width) / (height * width));
      const logAspect = boxes.map((box) => Math.log(box.width / box.height));
      const centerX = boxes.map((box) => (box.left + box.width / 2) / width);
      const mean = (values: number[]): number => values.reduce((sum, value) => sum + value, 0) / values.length;
      const quantile = (values: number[], q: number): number => [...values].sort((a, b) => a - b)[Math.floor(q * (values.length - 1))]!;
      return [mean(area), quantile(area, 0.1), quantile(area, 0.5), quantile(area, 0.9), mean(logAspect), quantile(logAspect, 0.1), quantile(logAspect, 0.9), mean(centerX)];
    };
    const random = new Random(3);
    const ours = Array.from({ length: samples }, () => randomResizedCropBox(height, width, random));
    for (const box of ours) {
      assert.ok(box.top >= 0 && box.left >= 0 && box.top + box.height <= height && box.left + box.width <= width, `box ${JSON.stringify(box)} outside`);
      const aspect = box.width / box.height;
      const area = (box.width * box.height) / (height * width);
      // Rounding to whole pixels moves aspect and area a little past the sampled ranges.
      assert.ok(aspect > 0.7 && aspect < 1.4 && area > 0.07 && area <= 1, `box ${JSON.stringify(box)}: aspect ${aspect}, area ${area}`);
    }
    const reference = python({ pixels: new Uint8Array(3), height: 1, width: 1, channels: 3 }, `
import random
from torchvision.transforms import RandomResizedCrop
torch.manual_seed(5)
img = torch.zeros(3, ${height}, ${width}, dtype=torch.uint8)
boxes = [RandomResizedCrop.get_params(img, [0.08, 1.0], [3/4, 4/3]) for _ in range(${samples})]
print(json.dumps([[i, j, h, w] for i, j, h, w in boxes]))
`) as number[][];
    const theirs = reference.map(([top, left, boxHeight, boxWidth]) => ({ top: top!, left: left!, height: boxHeight!, width: boxWidth! }));
    const a = statistics(ours);
    const b = statistics(theirs);
    // Standard errors at 20,000 samples are about 0.002 for the area statistics and 0.001 for the
    // others; 0.015 is several of them, and a wrong range, log-uniform or placement is far more.
    const names = ['mean area', 'area q10', 'area q50', 'area q90', 'mean log aspect', 'log aspect q10', 'log aspect q90', 'mean center x'];
    names.forEach((name, index) => assert.ok(Math.abs(a[index]! - b[index]!) < 0.015, `${name}: ours ${a[index]!.toFixed(4)}, torchvision ${b[index]!.toFixed(4)}`));
  });

  test('decoding: sharp gives PIL\'s RGB pixels for PNG (exactly) and JPEG (within libjpeg-turbo vs mozjpeg IDCT rounding)', async (t) => {
    if (skipWithout(t, missing)) return;
    const source = testImage(75, 100, 9);
    const pngPath = join(directory, 'sample.png');
    const jpegPath = join(directory, 'sample.jpg');
    const greyPath = join(directory, 'grey.png');
    const raw = { raw: { width: source.width, height: source.height, channels: 3 as const } };
    await sharp(Buffer.from(source.pixels), raw).png().toFile(pngPath);
    await sharp(Buffer.from(source.pixels), raw).jpeg({ quality: 90 }).toFile(jpegPath);
    await sharp(Buffer.from(source.pixels), raw).greyscale().png().toFile(greyPath);
    const reference = python(source, `
from PIL import Image
print(json.dumps([np.asarray(Image.open(p).convert('RGB')).reshape(-1).tolist() for p in ${JSON.stringify([pngPath, jpegPath, greyPath])}]))
`) as number[][];
    const png = await decodeImage(pngPath);
    assert.deepEqual([png.height, png.width, png.channels], [75, 100, 3]);
    assert.deepEqual(Array.from(png.pixels), reference[0]);
    assert.deepEqual(Array.from(png.pixels), Array.from(source.pixels));
    const jpeg = await decodeImage(jpegPath);
    const { largest, differing } = compareBytes(jpeg.pixels, reference[1]!);
    assert.ok(largest <= 2 && differing < 0.05, `JPEG: largest ${largest}, ${(differing * 100).toFixed(2)}% differ`);
    const grey = await decodeImage(greyPath);
    assert.deepEqual(Array.from(grey.pixels), reference[2]);
  });
});

describe('photometric transforms and 3-Augment against torchvision 0.14\'s tensor functional', () => {
  const image = testImage(40, 52, 11);

  test('grayscale, solarize, brightness, contrast, saturation and a jitter order equal torchvision on the same pixels', (t) => {
    if (skipWithout(t, missing)) return;
    const reference = python(image, `
out = [
  hwc(TF.rgb_to_grayscale(image, num_output_channels=3)),
  hwc(TF.solarize(image, 128)),
  hwc(TF.adjust_brightness(image, 1.27)),
  hwc(TF.adjust_brightness(image, 0.71)),
  hwc(TF.adjust_contrast(image, 0.73)),
  hwc(TF.adjust_contrast(image, 1.29)),
  hwc(TF.adjust_saturation(image, 1.2)),
  hwc(TF.adjust_saturation(image, 0.75)),
  hwc(TF.adjust_contrast(TF.adjust_brightness(TF.adjust_saturation(image, 0.8), 1.1), 0.9)),
]
print(json.dumps(out))
`) as number[][];
    const ours = [
      grayscale(image), solarize(image, 128), adjustBrightness(image, 1.27), adjustBrightness(image, 0.71),
      adjustContrast(image, 0.73), adjustContrast(image, 1.29), adjustSaturation(image, 1.2), adjustSaturation(image, 0.75),
      colorJitter(image, { order: [2, 0, 1], saturation: 0.8, brightness: 1.1, contrast: 0.9 }),
    ];
    const names = ['grayscale', 'solarize', 'brightness 1.27', 'brightness 0.71', 'contrast 0.73', 'contrast 1.29', 'saturation 1.2', 'saturation 0.75', 'jitter'];
    ours.forEach((result, index) => {
      const { largest, differing } = compareBytes(result.pixels, reference[index]!);
      t.diagnostic(`${names[index]}: largest difference ${largest}, ${(differing * 100).toFixed(2)}% of bytes differ`);
      // float32 arithmetic emulated step by step: measured equal byte for byte; a value landing on
      // a truncation boundary within float32 rounding could differ by one level in a rare byte.
      assert.ok(largest <= 1 && differing < 0.001, `${names[index]}: largest ${largest}, ${(differing * 100).toFixed(2)}% differ`);
    });
  });

  test('Gaussian blur equals torchvision\'s gaussian_blur (kernel 2 ceil(3 sigma) + 1, reflect padding)', (t) => {
    if (skipWithout(t, missing)) return;
    const sigmas = [0.1, 0.6, 1.3, 2.0];
    const reference = python(image, `
sigmas = ${JSON.stringify(sigmas)}
sizes = ${JSON.stringify(sigmas.map(blurKernelSize))}
print(json.dumps([hwc(TF.gaussian_blur(image, [k, k], [s, s])) for k, s in zip(sizes, sigmas)]))
`) as number[][];
    sigmas.forEach((sigma, index) => {
      const size = blurKernelSize(sigma);
      const { largest, differing } = compareBytes(gaussianBlur(image, sigma, size).pixels, reference[index]!);
      t.diagnostic(`sigma ${sigma} (kernel ${size}): largest difference ${largest}, ${(differing * 100).toFixed(2)}% of bytes differ`);
      // Measured equal byte for byte; torch's float32 convolution may sum in another order, which
      // could move a value across a rounding boundary in a rare byte.
      assert.ok(largest <= 1 && differing < 0.001, `sigma ${sigma}: largest ${largest}, ${(differing * 100).toFixed(2)}% differ`);
    });
  });
});

test('3-Augment: each of grayscale, solarize and blur a third of the time; jitter factors in [0.7, 1.3]; seeded', () => {
  const image = testImage(16, 16, 3);
  const counts = [0, 0, 0];
  const random = new Random(1);
  for (let draw = 0; draw < 3000; draw++) {
    const result = threeAugment(image, random, 0);
    const isGray = Array.from({ length: 256 }, (_, pixel) => result.pixels[pixel * 3] === result.pixels[pixel * 3 + 1] && result.pixels[pixel * 3] === result.pixels[pixel * 3 + 2]).every(Boolean);
    const isSolarized = result.pixels.every((value, index) => value === (image.pixels[index]! >= 128 ? 255 - image.pixels[index]! : image.pixels[index]!));
    counts[isGray ? 0 : isSolarized ? 1 : 2]!++;
  }
  counts.forEach((count, index) => assert.ok(Math.abs(count / 3000 - 1 / 3) < 0.04, `choice ${index}: ${count} of 3000`));
  const factors = Array.from({ length: 2000 }, () => colorJitterParameters(0.3, random));
  for (const { brightness, contrast, saturation, order } of factors) {
    for (const factor of [brightness, contrast, saturation]) assert.ok(factor >= 0.7 && factor < 1.3);
    assert.deepEqual([...order].sort(), [0, 1, 2]);
  }
  assert.deepEqual(threeAugment(image, new Random(5)).pixels, threeAugment(image, new Random(5)).pixels);
  assert.throws(() => colorJitterParameters(1.5, random), /strength must be in \[0, 1\)/);
});
