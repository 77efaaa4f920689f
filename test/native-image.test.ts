// The native image module (native/image/image.cc through src/data/native-image.ts) against the
// path it replaces: its resampler gives transforms.ts' bytes on random boxes (both
// interpolations, flip, both layouts, windows, 1 and 3 channels); its region decode gives the full
// decode's bytes inside the box, and its full decode sharp's bytes (4:2:0, 4:4:4 and grey JPEGs);
// trainSample gives the same batch bytes with the module and without it (a child process with
// MASKSUB_IMAGE_ADDON=off, the sharp + JavaScript path); a truncated or corrupt JPEG is an error
// naming the file; two worker threads use the module at once and get the main thread's bytes;
// --jpeg-dct-scaling decodes at reduced size only where the box allows, close to the full bytes.
// Skipped, saying so, when the module was not built (no libjpeg62-turbo-dev).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import sharp from 'sharp';
import type { FileSource } from '../src/data/datasets.js';
import { BadImageError, decodeImage } from '../src/data/decode.js';
import { dctScaledBox, trainSample } from '../src/data/file-batch.js';
import { nativeImage, nativeImageProblem, nativeResampleBox, REGION_MARGIN } from '../src/data/native-image.js';
import { Random } from '../src/data/random.js';
import { type Interpolation, type RawImage, resampleBox } from '../src/data/transforms.js';

const root = mkdtempSync(join(tmpdir(), 'masksub-native-image-'));
after(() => rmSync(root, { recursive: true, force: true }));

/** A photo-like test image: smooth gradients, a few edges and noise (so chroma varies locally). */
function testImage(height: number, width: number, channels: number, seed: number): RawImage {
  const random = new Random(seed);
  const pixels = new Uint8Array(height * width * channels);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < channels; c++) {
        const wave = 100 * Math.sin((x + 40 * c) / 23) * Math.cos((y - 17 * c) / 31);
        const edge = (x > width / 3) !== (y > height / 2) ? 40 : -40;
        pixels[(y * width + x) * channels + c] = Math.max(0, Math.min(255, Math.round(128 + wave + edge + 30 * (random.next() - 0.5))));
      }
    }
  }
  return { pixels, height, width, channels };
}

async function writeJpeg(path: string, image: RawImage, chromaSubsampling: '4:2:0' | '4:4:4'): Promise<Buffer> {
  const input = sharp(image.pixels, { raw: { width: image.width, height: image.height, channels: image.channels as 1 | 3 } });
  const bytes = await (image.channels === 1 ? input.toColourspace('b-w') : input).jpeg({ quality: 90, chromaSubsampling }).toBuffer();
  writeFileSync(path, bytes);
  return bytes;
}

const files = (paths: string[], interpolation: Interpolation, augment: boolean): FileSource => ({
  paths, classes: ['a'], size: 224, scale: [0.08, 1], ratio: [3 / 4, 4 / 3], interpolation, cropPercent: 0.875, skipBadImages: false,
  threeAugment: augment, colorJitter: augment ? 0.3 : 0, randAugment: null, fill: [124, 116, 104],
});

describe('native image module', { skip: nativeImage === null ? `not built: ${nativeImageProblem}` : false }, () => {
  const addon = nativeImage!;
  const jpegs: { path: string; bytes: Buffer; height: number; width: number; label: string }[] = [];

  before(async () => {
    mkdirSync(join(root, 'img'));
    for (const [index, [height, width, channels, sampling]] of ([[375, 500, 3, '4:2:0'], [333, 261, 3, '4:4:4'], [200, 301, 1, '4:2:0'], [17, 9, 3, '4:2:0']] as const).entries()) {
      const path = join(root, 'img', `${index}.jpg`);
      const bytes = await writeJpeg(path, testImage(height, width, channels, index + 1), sampling);
      jpegs.push({ path, bytes, height, width, label: `${width}x${height} ${channels === 1 ? 'grey' : sampling}` });
    }
  });

  test('resampleBox gives the JavaScript bytes on random boxes, both interpolations, flip, layouts and windows', () => {
    const random = new Random(7);
    for (const channels of [3, 1]) {
      const image = testImage(181, 243, channels, 3 + channels);
      for (let trial = 0; trial < 160; trial++) {
        const height = 1 + random.int(image.height);
        const width = 1 + random.int(image.width);
        const box = { top: random.int(image.height - height + 1), left: random.int(image.width - width + 1), height, width };
        // Shrinking (the usual case), enlarging and 224 itself.
        const outputHeight = trial % 3 === 0 ? 224 : 1 + random.int(400);
        const outputWidth = trial % 3 === 0 ? 224 : 1 + random.int(400);
        const interpolation: Interpolation = trial % 2 === 0 ? 'bilinear' : 'bicubic';
        const flip = random.next() < 0.5;
        const windowHeight = 1 + random.int(outputHeight);
        const windowWidth = 1 + random.int(outputWidth);
        const window = trial % 4 === 1
          ? { top: random.int(outputHeight - windowHeight + 1), left: random.int(outputWidth - windowWidth + 1), height: windowHeight, width: windowWidth }
          : undefined;
        const what = `trial ${trial}: ${channels} channels, box ${JSON.stringify(box)} -> ${outputHeight}x${outputWidth} ${interpolation} flip ${flip} window ${JSON.stringify(window)}`;
        const expected = resampleBox(image, box, outputHeight, outputWidth, interpolation, window, { flip });
        const interleaved = nativeResampleBox(addon, image, box, outputHeight, outputWidth, interpolation, window, { flip });
        assert.deepEqual(interleaved.pixels, expected.pixels, what);
        // Channel-first at an offset inside a larger target, the bytes around it untouched.
        const size = expected.pixels.length;
        const jsTarget = new Uint8Array(size + 10).fill(7);
        const nativeTarget = new Uint8Array(size + 10).fill(7);
        resampleBox(image, box, outputHeight, outputWidth, interpolation, window, { flip, channelFirst: { target: jsTarget, offset: 5 } });
        nativeResampleBox(addon, image, box, outputHeight, outputWidth, interpolation, window, { flip, channelFirst: { target: nativeTarget, offset: 5 } });
        assert.deepEqual(nativeTarget, jsTarget, `${what} (channel-first)`);
      }
    }
  });

  test('bad arguments are refused with the problem named, nothing written', () => {
    const image = testImage(10, 12, 3, 1);
    assert.throws(() => nativeResampleBox(addon, image, { top: 5, left: 0, height: 6, width: 12 }, 4, 4, 'bilinear'), /box .* is not inside the 10x12 image/);
    const target = new Uint8Array(40);
    assert.throws(() => nativeResampleBox(addon, image, { top: 0, left: 0, height: 10, width: 12 }, 4, 4, 'bilinear', undefined, { channelFirst: { target, offset: 0 } }), /4x4x3 output does not fit at offset 0 of a 40-byte target/);
    assert.ok(target.every((value) => value === 0));
    // The addon itself re-checks what would make memory access unsafe.
    assert.throws(() => addon.resampleBox(image.pixels, 100, 100, 3, 0, 0, 100, 100, 4, 4, false, 0, 0, 4, 4, false, target, 0, true), /pixels are not a 100x100x3 image/);
    assert.throws(() => addon.decodeJpegRegion(jpegs[0]!.bytes, 0, 0, 10, 10, 3, 0, true), /denominator must be 1, 2, 4 or 8, got 3/);
    assert.throws(() => addon.decodeJpegRegion(jpegs[0]!.bytes, 370, 0, 10, 10, 1, 0, true), /box 370,0 10x10 is not inside the 375x500 image/);
    assert.throws(() => addon.jpegInfo(new Uint8Array([1, 2, 3, 4])), /not a JPEG file/);
  });

  test('the full decode is sharp\'s bytes; a region with its margin is the full decode\'s bytes inside the box', async () => {
    const random = new Random(11);
    for (const jpeg of jpegs) {
      const viaSharp = await decodeImage(jpeg.path);
      const full = addon.decodeJpegRegion(jpeg.bytes, 0, 0, jpeg.height, jpeg.width, 1, 0, true);
      assert.deepEqual([full.height, full.width, full.channels], [jpeg.height, jpeg.width, 3], jpeg.label);
      assert.deepEqual(full.pixels, viaSharp.pixels, `${jpeg.label}: native full decode vs sharp`);
      assert.deepEqual(addon.jpegInfo(jpeg.bytes), { height: jpeg.height, width: jpeg.width, channels: jpeg.label.includes('grey') ? 1 : 3 });
      let withoutMargin = 0;
      for (let trial = 0; trial < 60; trial++) {
        const height = 1 + random.int(jpeg.height);
        const width = 1 + random.int(jpeg.width);
        const top = random.int(jpeg.height - height + 1);
        const left = random.int(jpeg.width - width + 1);
        for (const margin of [REGION_MARGIN, 0]) {
          const region = addon.decodeJpegRegion(jpeg.bytes, top, left, height, width, 1, margin, true);
          assert.ok(region.top <= top && region.left <= left && region.top + region.height >= top + height && region.left + region.width >= left + width);
          let differing = 0;
          for (let y = 0; y < height; y++) {
            for (let x = 0; x < width * 3; x++) {
              if (region.pixels[(top - region.top + y) * region.width * 3 + (left - region.left) * 3 + x] !== full.pixels[(top + y) * jpeg.width * 3 + left * 3 + x]) differing++;
            }
          }
          if (margin === REGION_MARGIN) assert.equal(differing, 0, `${jpeg.label}: box ${top},${left} ${height}x${width}`);
          else withoutMargin += differing;
        }
      }
      // Why the margin: without it the chroma upsampling at the cut differs (4:2:0 only).
      if (jpeg.label === '500x375 4:2:0') assert.ok(withoutMargin > 0, 'a region cut at the box differs from the full decode at its edges');
      if (jpeg.label.includes('4:4:4')) assert.equal(withoutMargin, 0);
    }
    // Grey stays one channel when asked.
    const grey = jpegs.find((jpeg) => jpeg.label.includes('grey'))!;
    const one = addon.decodeJpegRegion(grey.bytes, 0, 0, grey.height, grey.width, 1, 0, false);
    const three = addon.decodeJpegRegion(grey.bytes, 0, 0, grey.height, grey.width, 1, 0, true);
    assert.equal(one.channels, 1);
    for (let pixel = 0; pixel < one.pixels.length; pixel++) assert.equal(three.pixels[3 * pixel + 1], one.pixels[pixel]);
  });

  test('DCT-scaled decoding: the image at 1/2, 1/4, 1/8 size (ceil), close to a full decode resized', () => {
    const jpeg = jpegs[0]!;
    const full = addon.decodeJpegRegion(jpeg.bytes, 0, 0, jpeg.height, jpeg.width, 1, 0, true);
    for (const denominator of [2, 4, 8]) {
      const height = Math.ceil(jpeg.height / denominator);
      const width = Math.ceil(jpeg.width / denominator);
      const scaled = addon.decodeJpegRegion(jpeg.bytes, 0, 0, height, width, denominator, 0, true);
      assert.deepEqual([scaled.imageHeight, scaled.imageWidth, scaled.height, scaled.width], [height, width, height, width]);
      // The DCT's reduced inverse averages blocks; PIL's antialiased bilinear filter weighs a
      // wider neighbourhood, so they are close, not equal.
      const resized = resampleBox(full, { top: 0, left: 0, height: jpeg.height, width: jpeg.width }, height, width, 'bilinear');
      let total = 0;
      for (let index = 0; index < resized.pixels.length; index++) total += Math.abs(resized.pixels[index]! - scaled.pixels[index]!);
      const mean = total / resized.pixels.length;
      assert.ok(mean < 6, `1/${denominator}: mean difference ${mean.toFixed(2)} levels`);
    }
  });

  test('--jpeg-dct-scaling: a reduced-size decode only where the box is twice the output, close to the full-size bytes', async () => {
    assert.deepEqual(dctScaledBox({ top: 0, left: 0, height: 447, width: 900 }, 750, 1000, 224), { denominator: 1, scaled: { top: 0, left: 0, height: 447, width: 900 } });
    assert.deepEqual(dctScaledBox({ top: 3, left: 5, height: 450, width: 901 }, 750, 1000, 224), { denominator: 2, scaled: { top: 2, left: 3, height: 225, width: 450 } });
    assert.deepEqual(dctScaledBox({ top: 0, left: 0, height: 3600, width: 3600 }, 3600, 3600, 224), { denominator: 8, scaled: { top: 0, left: 0, height: 450, width: 450 } });
    const large = join(root, 'img', 'large.jpg');
    await writeJpeg(large, testImage(750, 1000, 3, 21), '4:2:0');
    let scaledSamples = 0;
    let total = 0;
    let bytes = 0;
    for (let seed = 0; seed < 24; seed++) {
      for (const path of [large, jpegs[0]!.path]) {
        const plain = new Uint8Array(3 * 224 * 224);
        const scaled = new Uint8Array(3 * 224 * 224);
        await trainSample(files([path], 'bilinear', false), 0, seed, 0, true, plain, 0);
        await trainSample({ ...files([path], 'bilinear', false), jpegDctScaling: true }, 0, seed, 0, true, scaled, 0);
        let differing = 0;
        let sum = 0;
        for (let index = 0; index < plain.length; index++) {
          differing += plain[index] !== scaled[index] ? 1 : 0;
          sum += Math.abs(plain[index]! - scaled[index]!);
        }
        // A 500 x 375 image never has a 448-px box, so its bytes are the full-size path's.
        if (path !== large) assert.equal(differing, 0, `seed ${seed}: 500x375 with jpegDctScaling`);
        else if (differing > 0) {
          scaledSamples++;
          total += sum;
          bytes += plain.length;
        }
      }
    }
    assert.ok(scaledSamples >= 3, `only ${scaledSamples} of 24 boxes were scaled`);
    // Measured: 20 of the 24 boxes of the 1000 x 750 image scaled, mean 1.71 levels from the
    // full-size bytes (this test image is noisier than the README's, 1.0).
    const mean = total / bytes;
    assert.ok(mean < 2, `mean difference ${mean.toFixed(2)} levels over ${scaledSamples} scaled samples`);
  });

  test('a truncated or corrupt JPEG is an error naming the file', async () => {
    const good = jpegs[0]!.bytes;
    const truncated = join(root, 'truncated.jpg');
    writeFileSync(truncated, good.subarray(0, Math.floor(good.length / 2)));
    // A frame header (SOF0) that says the image is 0 rows tall: libjpeg and sharp both refuse it.
    // (Corrupt entropy-coded data is only a warning to libjpeg, which sharp's failOn 'error'
    // accepts; trainSample then returns sharp's decode, as it did before the native path.)
    const garbage = join(root, 'zero-height.jpg');
    const bytes = Buffer.from(good);
    const frame = bytes.indexOf(Buffer.from([0xff, 0xc0]));
    assert.ok(frame > 0);
    bytes[frame + 5] = 0;
    bytes[frame + 6] = 0;
    writeFileSync(garbage, bytes);
    const headerOnly = join(root, 'header-only.jpg');
    writeFileSync(headerOnly, good.subarray(0, 20));
    for (const path of [truncated, garbage, headerOnly]) {
      await assert.rejects(trainSample(files([path], 'bilinear', false), 0, 1, 0, true, new Uint8Array(3 * 224 * 224), 0), (error: unknown) => {
        assert.ok(error instanceof BadImageError, String(error));
        assert.equal(error.path, path);
        assert.match(error.message, new RegExp(`^image ${path.replace(/[.]/g, '\\.')}: cannot be decoded`));
        return true;
      });
    }
    // The decoder itself says what libjpeg found, without crashing.
    assert.throws(() => addon.decodeJpegRegion(readFileSync(truncated), 0, 0, 375, 500, 1, 0, true), /corrupt JPEG: Premature end of JPEG file/);
    assert.throws(() => addon.jpegInfo(readFileSync(headerOnly)), /corrupt JPEG/);
  });

  test('trainSample gives the same bytes with and without the native module', async () => {
    const paths = jpegs.map((jpeg) => jpeg.path);
    mkdirSync(join(root, 'png'));
    const png = join(root, 'png', 'x.png');
    await sharp(testImage(120, 90, 3, 9).pixels, { raw: { width: 90, height: 120, channels: 3 } }).png().toFile(png);
    paths.push(png);
    const script = `
      import { createHash } from 'node:crypto';
      import { trainSample } from './src/data/file-batch.ts';
      const paths = ${JSON.stringify(paths)};
      const hash = createHash('sha256');
      for (const interpolation of ['bilinear', 'bicubic']) for (const augment of [false, true]) for (let seed = 0; seed < 6; seed++) {
        const source = { paths, classes: ['a'], size: 224, scale: [0.08, 1], ratio: [3 / 4, 4 / 3], interpolation, cropPercent: 0.875,
          skipBadImages: false, threeAugment: augment, colorJitter: augment ? 0.3 : 0, randAugment: null, fill: [124, 116, 104] };
        for (let sample = 0; sample < paths.length; sample++) {
          const target = new Uint8Array(3 * 224 * 224);
          await trainSample(source, sample, seed, 1, true, target, 0);
          hash.update(target);
        }
      }
      console.log(hash.digest('hex'));`;
    const run = (setting: string | undefined): string => execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: join(import.meta.dirname, '..'), encoding: 'utf8', env: { ...process.env, MASKSUB_IMAGE_ADDON: setting },
    }).trim();
    const withoutModule = run('off');
    const withModule = run(undefined);
    assert.match(withModule, /^[0-9a-f]{64}$/);
    assert.equal(withModule, withoutModule);
  });

  test('two worker threads use the module at once and get the main thread\'s bytes', async () => {
    const jpeg = jpegs[0]!;
    const boxes = Array.from({ length: 40 }, (_, index) => ({ top: (index * 7) % 150, left: (index * 13) % 250, height: 150 + index, width: 180 + index }));
    const expected = createHash('sha256');
    for (const box of boxes) {
      const region = addon.decodeJpegRegion(jpeg.bytes, box.top, box.left, box.height, box.width, 1, REGION_MARGIN, true);
      const local = { top: box.top - region.top, left: box.left - region.left, height: box.height, width: box.width };
      expected.update(nativeResampleBox(addon, region, local, 224, 224, 'bicubic', undefined, { flip: true }).pixels);
    }
    const digest = expected.digest('hex');
    const source = `
      const { parentPort, workerData } = require('node:worker_threads');
      const { createHash } = require('node:crypto');
      const addon = require(workerData.addon);
      const bytes = require('node:fs').readFileSync(workerData.path);
      const hash = createHash('sha256');
      for (let round = 0; round < 3; round++) {
        const h = createHash('sha256');
        for (const box of workerData.boxes) {
          const region = addon.decodeJpegRegion(bytes, box.top, box.left, box.height, box.width, 1, ${REGION_MARGIN}, true);
          const out = new Uint8Array(224 * 224 * 3);
          addon.resampleBox(region.pixels, region.height, region.width, 3, box.top - region.top, box.left - region.left, box.height, box.width,
            224, 224, true, 0, 0, 224, 224, true, out, 0, false);
          h.update(out);
        }
        parentPort.postMessage(h.digest('hex'));
      }`;
    const addonPath = join(import.meta.dirname, '..', 'build', 'Release', 'masksub_image.node');
    const results = await Promise.all([0, 1].map((index) => new Promise<string[]>((resolve, reject) => {
      const worker = new Worker(source, { eval: true, workerData: { addon: addonPath, path: jpeg.path, boxes: index === 0 ? boxes : boxes } });
      const digests: string[] = [];
      worker.on('message', (message: string) => digests.push(message));
      worker.on('error', reject);
      worker.on('exit', (code) => (code === 0 ? resolve(digests) : reject(new Error(`worker ${index} exited with ${code}`))));
    })));
    for (const digests of results) assert.deepEqual(digests, [digest, digest, digest]);
  });
});
