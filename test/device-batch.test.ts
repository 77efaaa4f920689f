// deviceBatch (src/train/device-batch.ts): the loader's uint8 batches finished on the training
// device. Normalization gives the former JavaScript bytes (normalizeInto); erasing and mixup
// against hand computations on small inputs; the finished values do not depend on the worker
// count or on rebuilding a batch alone (resume); the live-tensor count stays flat; pinned memory
// is refused with a clear error without CUDA. The CUDA branch (pinMemory + non_blocking copy) is
// not run on a machine without a GPU.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { normalizeInto } from '../src/data/augment.js';
import type { Batch } from '../src/data/batch.js';
import { loadDataset } from '../src/data/datasets.js';
import { BatchLoader } from '../src/data/loader.js';
import { applyMix, type MixDecision } from '../src/data/mixup.js';
import { Random } from '../src/data/random.js';
import { cudaAvailable, liveTensors } from '../src/tensor/native.js';
import { Generator, randn, tensor, tidy } from '../src/tensor/tensor.js';
import { deviceBatch } from '../src/train/device-batch.js';

const IMAGENET = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };

function geometry(channels: number, height: number, width: number, numClasses = 3, norm = IMAGENET): { channels: number; height: number; width: number; numClasses: number; mean: number[]; std: number[] } {
  return { channels, height, width, numClasses, mean: norm.mean.slice(0, channels), std: norm.std.slice(0, channels) };
}

function plainBatch(pixels: Uint8Array, size: number): Batch {
  return { pixels, labels: Int32Array.from({ length: size }, (_, index) => index % 3), softTargets: null, size, index: 0, erasing: null, mix: null };
}

/** The finished images of a batch on the CPU, as float32 values. */
function finish(batch: Batch, shape: ReturnType<typeof geometry>): Float32Array {
  return tidy(() => deviceBatch(batch, shape, 'cpu').images.toTypedArray() as Float32Array);
}

/** normalizeInto over a whole batch: the former JavaScript path's bytes. */
function normalizedInJs(pixels: Uint8Array, size: number, shape: ReturnType<typeof geometry>): Float32Array {
  const sampleSize = shape.channels * shape.height * shape.width;
  const out = new Float32Array(size * sampleSize);
  for (let sample = 0; sample < size; sample++) {
    normalizeInto(pixels, sample * sampleSize, out, sample * sampleSize, shape.channels, shape.height * shape.width, shape.mean, shape.std);
  }
  return out;
}

describe('deviceBatch', () => {
  test('normalization gives the bytes of the former JavaScript normalizeInto, for every pixel value and several mean/std', () => {
    // Every value 0..255 in every channel, and random pixels, for ImageNet's, Fashion-MNIST's and CIFAR's constants.
    const cases = [
      { shape: geometry(3, 16, 16), norm: IMAGENET },
      { shape: geometry(1, 16, 16, 3, { mean: [0.286], std: [0.353] }), norm: null },
      { shape: geometry(3, 16, 16, 3, { mean: [0.4914, 0.4822, 0.4465], std: [0.247, 0.2435, 0.2616] }), norm: null },
    ];
    const random = new Random(4);
    for (const { shape } of cases) {
      const size = 3;
      const plane = shape.height * shape.width;
      const pixels = new Uint8Array(size * shape.channels * plane);
      for (let index = 0; index < pixels.length; index++) pixels[index] = index < shape.channels * plane ? index % 256 : random.int(256);
      const expected = normalizedInJs(pixels, size, shape);
      const actual = finish(plainBatch(pixels, size), shape);
      assert.deepEqual(Buffer.from(actual.buffer), Buffer.from(expected.buffer), `mean ${shape.mean} std ${shape.std}`);
      // And both are (x / 255 - mean) / std up to float32 rounding.
      actual.forEach((value, index) => {
        const channel = Math.floor(index / plane) % shape.channels;
        const exact = (pixels[index]! / 255 - shape.mean[channel]!) / shape.std[channel]!;
        assert.ok(Math.abs(value - exact) <= 1e-6 * Math.max(1, Math.abs(exact)), `${value} vs ${exact}`);
      });
    }
  });

  test('random erasing fills exactly the boxes: const with 0, rand with one N(0, 1) per channel, pixel per channel and pixel, from each sample\'s seed', () => {
    const shape = geometry(3, 4, 5);
    const size = 3;
    const pixels = Uint8Array.from({ length: size * 60 }, (_, index) => (index * 37) % 256);
    const normalized = normalizedInJs(pixels, size, shape);
    const boxes = [{ top: 1, left: 2, height: 2, width: 3 }, null, { top: 0, left: 0, height: 3, width: 1 }];
    const seeds = [11, 12, 13];
    for (const mode of ['const', 'rand', 'pixel'] as const) {
      const batch = { ...plainBatch(pixels, size), erasing: { boxes, mode, seeds } };
      const actual = finish(batch, shape);
      const expected = Float32Array.from(normalized);
      boxes.forEach((box, sample) => {
        if (box === null) return;
        // The fill a hand computation expects: the sample's generator's first normal draws.
        const count = mode === 'pixel' ? 3 * box.height * box.width : 3;
        const noise = tidy(() => randn([count], { generator: new Generator(seeds[sample]!) }).toTypedArray() as Float32Array);
        for (let channel = 0; channel < 3; channel++) {
          for (let row = 0; row < box.height; row++) {
            for (let column = 0; column < box.width; column++) {
              const value = mode === 'const' ? 0 : mode === 'rand' ? noise[channel]! : noise[(channel * box.height + row) * box.width + column]!;
              expected[sample * 60 + channel * 20 + (box.top + row) * 5 + box.left + column] = value;
            }
          }
        }
      });
      assert.deepEqual(Array.from(actual), Array.from(expected), `mode ${mode}`);
    }
    // The fill is the sample's, wherever it sits: the same box and seed in another batch position give the same values.
    const moved = finish({ ...plainBatch(pixels.slice(120, 180), 1), erasing: { boxes: [boxes[2]!], mode: 'pixel', seeds: [13] } }, shape);
    assert.deepEqual(Array.from(moved), Array.from(finish({ ...plainBatch(pixels, size), erasing: { boxes, mode: 'pixel', seeds } }, shape).slice(120, 180)));
  });

  test('mixup blends with the flipped batch, lam * x + (1 - lam) * flip(x) in float32; cutmix swaps the box; both as mixup.ts\' applyMix', () => {
    const shape = geometry(1, 2, 3, 3, { mean: [0.5], std: [0.25] });
    const size = 3;
    const pixels = Uint8Array.from([0, 10, 20, 30, 40, 50, 255, 128, 64, 32, 16, 8, 7, 77, 177, 200, 100, 1]);
    const normalized = normalizedInJs(pixels, size, shape);
    const lambda = 0.7;
    const mixed = finish({ ...plainBatch(pixels, size), mix: { lambda, useCutmix: false, box: null } }, shape);
    for (let sample = 0; sample < size; sample++) {
      for (let pixel = 0; pixel < 6; pixel++) {
        const own = normalized[sample * 6 + pixel]!;
        const partner = normalized[(size - 1 - sample) * 6 + pixel]!;
        const expected = Math.fround(Math.fround(own * Math.fround(lambda)) + Math.fround(partner * Math.fround(1 - lambda)));
        assert.equal(mixed[sample * 6 + pixel], expected, `sample ${sample} pixel ${pixel}`);
      }
    }
    // CutMix: rows 0..1, column 1..2 of sample i come from sample 2 - i; the middle sample keeps its own.
    const box = { top: 0, bottom: 2, left: 1, right: 3 };
    const cut = finish({ ...plainBatch(pixels, size), mix: { lambda: 1 - 4 / 6, useCutmix: true, box } }, shape);
    for (let sample = 0; sample < size; sample++) {
      for (let row = 0; row < 2; row++) {
        for (let column = 0; column < 3; column++) {
          const inside = column >= 1;
          const source = inside ? size - 1 - sample : sample;
          assert.equal(cut[sample * 6 + row * 3 + column], normalized[source * 6 + row * 3 + column]);
        }
      }
    }
    for (const decision of [{ lambda, useCutmix: false, box: null }, { lambda: 1 - 4 / 6, useCutmix: true, box }] as MixDecision[]) {
      const reference = Float32Array.from(normalized);
      applyMix(reference, size, 1, 2, 3, decision);
      assert.deepEqual(Array.from(finish({ ...plainBatch(pixels, size), mix: decision }, shape)), Array.from(reference));
    }
    // Soft targets go to the device as they are.
    const soft = Float32Array.from({ length: 9 }, (_, index) => index / 10);
    const targets = tidy(() => deviceBatch({ ...plainBatch(pixels, size), softTargets: soft }, shape, 'cpu').soft!.toTypedArray() as Float32Array);
    assert.deepEqual(targets, soft);
  });

  test('finished batches do not depend on the worker count or on rebuilding a batch alone; the live-tensor count stays flat', async () => {
    const dataset = loadDataset('synthetic', { split: 'train', limit: 200 });
    const options = {
      batchSize: 25, shuffle: true, seed: 7,
      augment: { cropPadding: 2, hflip: true, randomErasing: 0.5 },
      mixup: { mixupAlpha: 0.8, cutmixAlpha: 1.0, labelSmoothing: 0.1, numClasses: dataset.numClasses },
    };
    const finishedAll = async (loader: BatchLoader): Promise<number[][]> => {
      const out: number[][] = [];
      try {
        for await (const batch of loader.epochBatches(2)) out.push(Array.from(finish(batch, dataset)));
      } finally {
        await loader.close();
      }
      return out;
    };
    const inThread = await finishedAll(new BatchLoader(dataset, options));
    assert.equal(inThread.length, 8);
    assert.deepEqual(await finishedAll(new BatchLoader(dataset, { ...options, useWorker: true, workers: 3, prefetch: 3 })), inThread);
    assert.deepEqual(Array.from(finish(new BatchLoader(dataset, { ...options, epoch: 2 }).batchAt(2, 5), dataset)), inThread[5]);
    // Erasing and mixup did something: the finished values are not the plain normalization.
    const plain = new BatchLoader(dataset, { ...options, augment: { ...options.augment, randomErasing: 0 }, mixup: undefined }).batchAt(2, 5);
    assert.notDeepEqual(Array.from(finish(plain, dataset)), inThread[5]);

    const loader = new BatchLoader(dataset, options);
    const batches = [...loader.batchesSync(1)];
    tidy(() => deviceBatch(batches[0]!, dataset, 'cpu'));
    const before = liveTensors();
    for (const batch of batches) tidy(() => { deviceBatch(batch, dataset, 'cpu'); });
    assert.equal(liveTensors(), before, 'deviceBatch left tensors alive');
  });

  test('errors: a batch that does not match the shape, mean/std of the wrong length; pinned memory without CUDA', () => {
    const shape = geometry(3, 2, 2);
    assert.throws(() => finish(plainBatch(new Uint8Array(11), 1), shape), /deviceBatch: the batch holds 11 pixels and 1 labels \(size 1\), expected 1 x 3x2x2 = 12 pixels/);
    assert.throws(() => finish(plainBatch(new Uint8Array(12), 1), { ...shape, mean: [0.5] }), /mean\/std need 3 values, got 1\/3/);
    assert.throws(
      () => finish({ ...plainBatch(new Uint8Array(12), 1), erasing: { boxes: [null, null], mode: 'pixel', seeds: [1, 2] } }, shape),
      /2 erasing boxes and 2 seeds for a batch of 1/,
    );
    tidy(() => {
      const host = tensor(new Uint8Array(4));
      assert.equal(host.isPinned(), false);
      if (cudaAvailable()) {
        assert.equal(host.pinMemory().isPinned(), true);
      } else {
        assert.throws(() => host.pinMemory(), /pinMemory: pinned \(page-locked\) host memory needs CUDA/);
      }
    });
  });
});
