// Tests of the data layer: PRNG, IDX and CIFAR readers (real Fashion-MNIST cross-checked with
// Python, and damaged files), the dataset registry, augmentations, Mixup/CutMix and BatchLoader.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';

import {
  augmentSample,
  horizontalFlip,
  normalizeInto,
  randomCrop,
  drawErasingBox,
} from '../src/data/augment.js';
import { parseCifarRecords } from '../src/data/cifar.js';
import {
  balancedPrefixIndices,
  DATASET_INFO,
  loadDataset,
  missingDataHint,
  type ImageDataset,
} from '../src/data/datasets.js';
import { BatchLoader, measureLoaderThroughput, type Batch } from '../src/data/loader.js';
import { mixBatch, mixTargets, randomBox, type MixupOptions } from '../src/data/mixup.js';
import { deriveSeed, Random, sampleBeta, sampleGamma } from '../src/data/random.js';
import { idxFile } from './helpers/idx.js';
import { errorMessage } from './helpers/errors.js';

const FASHION_DIR = '/usr/share/datasets/fashion-mnist';
const temporaryRoot = mkdtempSync(join(tmpdir(), 'masksub-data-test-'));
after(() => rmSync(temporaryRoot, { recursive: true, force: true }));

let directoryCounter = 0;
function freshDirectory(): string {
  const directory = join(temporaryRoot, `case-${directoryCounter++}`);
  mkdirSync(directory);
  return directory;
}


/** A small valid MNIST-like split (28x28) written into `directory`, gzip or raw. */
function writeIdxSplit(
  directory: string,
  split: 'train' | 't10k',
  options: { count: number; labelCount?: number; labels?: number[]; gzip?: boolean },
): { images: Uint8Array; labels: number[] } {
  const pixels = new Uint8Array(options.count * 784);
  for (let index = 0; index < pixels.length; index++) pixels[index] = (index * 7 + 3) % 256;
  const labels = options.labels ?? Array.from({ length: options.labelCount ?? options.count }, (_, index) => index % 10);
  const imageBytes = idxFile(0x803, [options.count, 28, 28], pixels);
  const labelBytes = idxFile(0x801, [labels.length], Uint8Array.from(labels));
  const suffix = options.gzip === true ? '.gz' : '';
  const encode = (bytes: Uint8Array): Uint8Array => (options.gzip === true ? gzipSync(bytes) : bytes);
  writeFileSync(join(directory, `${split}-images-idx3-ubyte${suffix}`), encode(imageBytes));
  writeFileSync(join(directory, `${split}-labels-idx1-ubyte${suffix}`), encode(labelBytes));
  return { images: pixels, labels };
}

describe('Random', () => {
  test('same seed gives the same stream; different seeds and parts differ', () => {
    const first = new Random(42);
    const second = new Random(42);
    const values = Array.from({ length: 100 }, () => first.nextUint32());
    assert.deepEqual(Array.from({ length: 100 }, () => second.nextUint32()), values);
    assert.notDeepEqual(Array.from({ length: 100 }, () => new Random(43).nextUint32()), values.slice(0, 1));
    assert.notEqual(new Random(43).nextUint32(), new Random(42).nextUint32());
    assert.notEqual(deriveSeed(1, 2, 3), deriveSeed(1, 3, 2));
    assert.notEqual(deriveSeed(1, 2), deriveSeed(2, 1));
    assert.equal(deriveSeed(7, 0), deriveSeed(7, 0));
    assert.notEqual(deriveSeed(7, 0), deriveSeed(7, 0, 0));
    const derived = deriveSeed(123456789012, -5, 0.5);
    assert.ok(Number.isInteger(derived) && derived >= 0 && derived < 2 ** 32);
  });

  test('state() / fromState() resume exactly, also through JSON', () => {
    const random = new Random(9);
    for (let index = 0; index < 17; index++) random.normal();
    const saved = JSON.parse(JSON.stringify(random.state())) as number[];
    const expected = Array.from({ length: 50 }, () => random.next());
    const restored = Random.fromState(saved);
    assert.deepEqual(Array.from({ length: 50 }, () => restored.next()), expected);
    assert.match(errorMessage(() => Random.fromState([1, 2, 3])), /4 unsigned 32-bit integers/);
    assert.match(errorMessage(() => Random.fromState([0, 0, 0, 0])), /invalid/);
    assert.match(errorMessage(() => Random.fromState([1, 2, 3, -1])), /not an unsigned 32-bit integer/);
  });

  test('uniform, int, normal, gamma and beta have the right moments', () => {
    const random = new Random(2024);
    const samples = 40000;
    let sum = 0;
    let minimum = 1;
    let maximum = 0;
    for (let index = 0; index < samples; index++) {
      const value = random.next();
      sum += value;
      minimum = Math.min(minimum, value);
      maximum = Math.max(maximum, value);
    }
    assert.ok(minimum >= 0 && maximum < 1);
    assert.ok(Math.abs(sum / samples - 0.5) < 0.01, `uniform mean ${sum / samples}`);

    const counts = new Array<number>(7).fill(0);
    for (let index = 0; index < 70000; index++) counts[random.int(7)]!++;
    // Chi-square with 6 degrees of freedom: 22.5 is the 0.999 quantile.
    const chiSquare = counts.reduce((total, count) => total + (count - 10000) ** 2 / 10000, 0);
    assert.ok(chiSquare < 22.5, `int(7) chi-square ${chiSquare}, counts ${counts.join(',')}`);

    let normalSum = 0;
    let normalSquares = 0;
    for (let index = 0; index < samples; index++) {
      const value = random.normal();
      normalSum += value;
      normalSquares += value * value;
    }
    assert.ok(Math.abs(normalSum / samples) < 0.02);
    assert.ok(Math.abs(normalSquares / samples - 1) < 0.03);

    for (const shape of [0.3, 2.5]) {
      let gammaSum = 0;
      for (let index = 0; index < 20000; index++) gammaSum += sampleGamma(random, shape);
      assert.ok(Math.abs(gammaSum / 20000 - shape) < 0.05 * Math.max(1, shape), `gamma(${shape}) mean ${gammaSum / 20000}`);
    }
    // Beta(0.8, 0.8): mean 1/2, variance 1 / (4 (2a + 1)) = 0.09615.
    let betaSum = 0;
    let betaSquares = 0;
    for (let index = 0; index < 20000; index++) {
      const value = sampleBeta(random, 0.8, 0.8);
      assert.ok(value >= 0 && value <= 1);
      betaSum += value;
      betaSquares += value * value;
    }
    const betaMean = betaSum / 20000;
    assert.ok(Math.abs(betaMean - 0.5) < 0.01, `beta mean ${betaMean}`);
    assert.ok(Math.abs(betaSquares / 20000 - betaMean ** 2 - 0.09615) < 0.005);
  });

  test('shuffle is a seeded permutation', () => {
    const array = Int32Array.from({ length: 1000 }, (_, index) => index);
    new Random(5).shuffle(array);
    const again = Int32Array.from({ length: 1000 }, (_, index) => index);
    new Random(5).shuffle(again);
    assert.deepEqual(array, again);
    assert.deepEqual([...array].sort((a, b) => a - b), Array.from({ length: 1000 }, (_, index) => index));
    assert.ok(array.some((value, index) => value !== index));
  });
});

describe('Fashion-MNIST IDX files (real data, cross-checked with Python)', () => {
  const python = `
import gzip, hashlib, json, struct, numpy as np
out = {}
for split, prefix in (("train", "train"), ("test", "t10k")):
    with gzip.open("${FASHION_DIR}/%s-images-idx3-ubyte.gz" % prefix, "rb") as f:
        images = f.read()
    with gzip.open("${FASHION_DIR}/%s-labels-idx1-ubyte.gz" % prefix, "rb") as f:
        labels = f.read()
    magic, count, rows, cols = struct.unpack(">IIII", images[:16])
    label_magic, label_count = struct.unpack(">II", labels[:8])
    pixels = np.frombuffer(images, dtype=np.uint8, offset=16).reshape(count, rows * cols)
    sums = pixels.sum(axis=1, dtype=np.int64)
    weights = (np.arange(count, dtype=np.int64) % 997) + 1
    label_values = np.frombuffer(labels, dtype=np.uint8, offset=8)
    out[split] = {
        "magic": magic, "count": count, "rows": rows, "cols": cols,
        "label_magic": label_magic, "label_count": label_count,
        "pixel_sum": int(sums.sum()), "weighted_sum": int((sums * weights).sum()),
        "sha256": hashlib.sha256(images[16:]).hexdigest(),
        "first_labels": [int(v) for v in label_values[:20]],
        "histogram": [int(v) for v in np.bincount(label_values, minlength=10)],
    }
print(json.dumps(out))
`;
  interface PythonSplit {
    magic: number; count: number; rows: number; cols: number; label_magic: number; label_count: number;
    pixel_sum: number; weighted_sum: number; sha256: string; first_labels: number[]; histogram: number[];
  }
  const reference = JSON.parse(execFileSync('/usr/bin/python3', ['-c', python], { encoding: 'utf8', timeout: 60000 })) as Record<
    'train' | 'test',
    PythonSplit
  >;

  for (const split of ['train', 'test'] as const) {
    test(`${split} split matches Python's gzip+struct reading`, () => {
      const dataset = loadDataset('fashion-mnist', { split });
      const expected = reference[split];
      assert.equal(expected.magic, 0x803);
      assert.equal(expected.label_magic, 0x801);
      assert.equal(dataset.count, split === 'train' ? 60000 : 10000);
      assert.equal(dataset.count, expected.count);
      assert.equal(dataset.height, 28);
      assert.equal(dataset.width, 28);
      assert.equal(dataset.channels, 1);
      assert.equal(dataset.numClasses, 10);
      assert.deepEqual(dataset.mean, [0.286]);
      assert.deepEqual(dataset.std, [0.353]);
      assert.equal(dataset.images.length, dataset.count * 784);
      assert.equal(dataset.source, join(FASHION_DIR, `${split === 'train' ? 'train' : 't10k'}-images-idx3-ubyte.gz`));
      let pixelSum = 0;
      let weightedSum = 0;
      for (let image = 0; image < dataset.count; image++) {
        let imageSum = 0;
        for (let pixel = image * 784; pixel < (image + 1) * 784; pixel++) imageSum += dataset.images[pixel]!;
        pixelSum += imageSum;
        weightedSum += imageSum * ((image % 997) + 1);
      }
      assert.equal(pixelSum, expected.pixel_sum);
      assert.equal(weightedSum, expected.weighted_sum);
      assert.equal(createHash('sha256').update(dataset.images).digest('hex'), expected.sha256);
      assert.deepEqual([...dataset.labels.subarray(0, 20)], expected.first_labels);
      const histogram = new Array<number>(10).fill(0);
      for (const label of dataset.labels) histogram[label]!++;
      assert.deepEqual(histogram, expected.histogram);
    });
  }

  test('limit keeps a class-balanced prefix in file order', () => {
    const full = loadDataset('fashion-mnist', { split: 'test' });
    const limited = loadDataset('fashion-mnist', { split: 'test', limit: 1005 });
    assert.equal(limited.count, 1005);
    const histogram = new Array<number>(10).fill(0);
    for (const label of limited.labels) histogram[label]!++;
    // 1005 = 10 x 100 + 5: classes 0..4 get one more.
    assert.deepEqual(histogram, [101, 101, 101, 101, 101, 100, 100, 100, 100, 100]);
    const indices = balancedPrefixIndices(full.labels, 10, 1005);
    for (let position = 1; position < indices.length; position++) assert.ok(indices[position]! > indices[position - 1]!);
    // Each chosen index is among the first (count of its class) samples of that class.
    const seen = new Array<number>(10).fill(0);
    let position = 0;
    for (let index = 0; index < full.count && position < indices.length; index++) {
      const label = full.labels[index]!;
      if (seen[label]! < histogram[label]!) {
        assert.equal(indices[position], index);
        position++;
      }
      seen[label]!++;
    }
    const third = indices[3]!;
    assert.deepEqual(limited.images.subarray(3 * 784, 4 * 784), full.images.subarray(third * 784, (third + 1) * 784));
    assert.equal(loadDataset('fashion-mnist', { split: 'test', limit: 50000 }).count, 10000);
  });
});

describe('IDX reader errors', () => {
  test('missing directory, missing default directory, missing file', () => {
    const missing = join(temporaryRoot, 'does-not-exist');
    const message = errorMessage(() => loadDataset('fashion-mnist', { split: 'train', dataDir: missing }));
    assert.match(message, /^fashion-mnist: data directory .*does-not-exist does not exist/);
    assert.match(message, /--data-dir/);
    assert.match(missingDataHint('fashion-mnist', true), /apt-get install dataset-fashion-mnist/);
    const mnistMessage = errorMessage(() => loadDataset('mnist', { split: 'train' }));
    assert.match(mnistMessage, /^mnist: data directory \/usr\/share\/datasets\/mnist does not exist/);
    assert.match(mnistMessage, /--data-dir/);
    const directory = freshDirectory();
    writeIdxSplit(directory, 'train', { count: 3 });
    const fileMessage = errorMessage(() => loadDataset('mnist', { split: 'test', dataDir: directory }));
    assert.match(fileMessage, /missing file t10k-images-idx3-ubyte \(looked for t10k-images-idx3-ubyte and t10k-images-idx3-ubyte\.gz\)/);
  });

  test('valid raw and gzip files load identically', () => {
    const raw = freshDirectory();
    const zipped = freshDirectory();
    const written = writeIdxSplit(raw, 'train', { count: 12 });
    writeIdxSplit(zipped, 'train', { count: 12, gzip: true });
    const a = loadDataset('mnist', { split: 'train', dataDir: raw });
    const b = loadDataset('mnist', { split: 'train', dataDir: zipped });
    assert.equal(a.count, 12);
    assert.deepEqual(a.images, written.images);
    assert.deepEqual(b.images, written.images);
    assert.deepEqual([...b.labels], written.labels);
    assert.deepEqual(a.mean, [0.1307]);
    assert.ok(b.source.endsWith('train-images-idx3-ubyte.gz'));
  });

  test('truncated and corrupt gzip', () => {
    const directory = freshDirectory();
    writeIdxSplit(directory, 'train', { count: 20, gzip: true });
    const path = join(directory, 'train-images-idx3-ubyte.gz');
    const valid = gzipSync(idxFile(0x803, [20, 28, 28], new Uint8Array(20 * 784).map((_, index) => index % 251)));
    writeFileSync(path, valid.subarray(0, Math.floor(valid.length / 2)));
    const truncated = errorMessage(() => loadDataset('mnist', { split: 'train', dataDir: directory }));
    assert.match(truncated, /^mnist: .*train-images-idx3-ubyte\.gz: truncated gzip data/);
    const corrupt = Uint8Array.from(valid);
    for (let index = 12; index < 40; index++) corrupt[index] = corrupt[index]! ^ 0x5a;
    writeFileSync(path, corrupt);
    const corruptMessage = errorMessage(() => loadDataset('mnist', { split: 'train', dataDir: directory }));
    assert.match(corruptMessage, /^mnist: .*train-images-idx3-ubyte\.gz: (corrupt|truncated) gzip data/);
  });

  test('wrong magic, truncated data, trailing data, wrong size, count mismatch, label out of range', () => {
    const directory = freshDirectory();
    writeIdxSplit(directory, 'train', { count: 4 });
    const images = join(directory, 'train-images-idx3-ubyte');
    const labels = join(directory, 'train-labels-idx1-ubyte');
    const load = (): unknown => loadDataset('mnist', { split: 'train', dataDir: directory });

    writeFileSync(labels, idxFile(0x803, [4], new Uint8Array(4)));
    assert.equal(
      errorMessage(load),
      `mnist: ${labels}: wrong IDX magic number 0x00000803, expected 0x00000801 for labels`,
    );
    writeFileSync(labels, idxFile(0x801, [4], Uint8Array.from([1, 2, 3, 4])));

    writeFileSync(images, idxFile(0x803, [4, 28, 28], new Uint8Array(4 * 784 - 10)));
    assert.equal(
      errorMessage(load),
      `mnist: ${images}: truncated: dimensions 4x28x28 need 16 + 3136 bytes, the file has 3142 (16 + 3126)`,
    );
    writeFileSync(images, idxFile(0x803, [4, 28, 28], new Uint8Array(4 * 784 + 1)));
    assert.match(errorMessage(load), /has trailing bytes: dimensions 4x28x28 need 16 \+ 3136 bytes/);
    writeFileSync(images, idxFile(0x803, [4, 32, 32], new Uint8Array(4 * 1024)));
    assert.match(errorMessage(load), /images are 32x32, expected 28x28/);
    writeFileSync(images, new Uint8Array([0, 0, 8, 3, 0, 0]));
    assert.match(errorMessage(load), /truncated IDX header: 6 bytes, expected at least 16 for 3 dimensions/);

    writeFileSync(images, idxFile(0x803, [5, 28, 28], new Uint8Array(5 * 784)));
    assert.equal(
      errorMessage(load),
      `mnist: ${labels}: 4 labels but ${images} has 5 images; the counts must match`,
    );

    writeFileSync(images, idxFile(0x803, [4, 28, 28], new Uint8Array(4 * 784)));
    writeFileSync(labels, idxFile(0x801, [4], Uint8Array.from([1, 2, 10, 4])));
    assert.equal(errorMessage(load), `mnist: ${labels}: label 10 at index 2 is out of range 0..9`);
  });
});

describe('CIFAR binary reader', () => {
  function cifarRecords(labels: number[][]): Uint8Array {
    const recordBytes = labels[0]!.length + 3072;
    const out = new Uint8Array(labels.length * recordBytes);
    labels.forEach((labelBytes, record) => {
      out.set(labelBytes, record * recordBytes);
      for (let pixel = 0; pixel < 3072; pixel++) out[record * recordBytes + labelBytes.length + pixel] = (record * 31 + pixel) % 256;
    });
    return out;
  }

  test('reads CIFAR-10 and CIFAR-100 records and the directory layout', () => {
    const parsed = parseCifarRecords(cifarRecords([[3], [9], [0]]), 'cifar10', 'x.bin');
    assert.equal(parsed.count, 3);
    assert.deepEqual([...parsed.labels], [3, 9, 0]);
    assert.equal(parsed.images[3072 + 5], (31 + 5) % 256);
    const hundred = parseCifarRecords(cifarRecords([[19, 99], [0, 42]]), 'cifar100', 'y.bin');
    assert.deepEqual([...hundred.labels], [99, 42]);
    assert.equal(hundred.images[3072 + 2047], (31 + 2047) % 256);

    const root = freshDirectory();
    const directory = join(root, 'cifar-10-batches-bin');
    mkdirSync(directory);
    for (let batch = 1; batch <= 5; batch++) writeFileSync(join(directory, `data_batch_${batch}.bin`), cifarRecords([[batch], [batch + 1]]));
    writeFileSync(join(directory, 'test_batch.bin'), cifarRecords([[7]]));
    const train = loadDataset('cifar10', { split: 'train', dataDir: root });
    assert.equal(train.count, 10);
    assert.deepEqual([...train.labels], [1, 2, 2, 3, 3, 4, 4, 5, 5, 6]);
    assert.equal(train.channels, 3);
    assert.deepEqual(train.mean, [0.4914, 0.4822, 0.4465]);
    assert.equal(loadDataset('cifar10', { split: 'test', dataDir: directory }).count, 1);
    assert.match(errorMessage(() => loadDataset('cifar10', { split: 'train' })), /^cifar10: no data directory; pass --data-dir/);
    assert.match(errorMessage(() => loadDataset('cifar100', { split: 'train' })), /^cifar100: no data directory; pass --data-dir/);
    assert.match(errorMessage(() => loadDataset('cifar100', { split: 'train', dataDir: root })), /cifar100: .*missing file train\.bin/);
  });

  test('wrong size and labels out of range', () => {
    const records = cifarRecords([[1], [2]]);
    assert.equal(
      errorMessage(() => parseCifarRecords(records.subarray(0, records.length - 7), 'cifar10', '/d/data_batch_1.bin')),
      'cifar10: /d/data_batch_1.bin: file size 6139 is not a multiple of the 3073-byte record (1 whole records and 3066 extra bytes); ' +
        'the file is truncated or not a CIFAR binary file',
    );
    assert.equal(
      errorMessage(() => parseCifarRecords(cifarRecords([[1], [10]]), 'cifar10', 'b.bin')),
      'cifar10: b.bin: label 10 of record 1 is out of range 0..9',
    );
    assert.match(errorMessage(() => parseCifarRecords(cifarRecords([[20, 5]]), 'cifar100', 'c.bin')), /coarse label 20 of record 0 is out of range 0\.\.19/);
    assert.match(errorMessage(() => parseCifarRecords(cifarRecords([[2, 100]]), 'cifar100', 'c.bin')), /fine label 100 of record 0 is out of range 0\.\.99/);
    // A CIFAR-10 file read as CIFAR-100 is the wrong size.
    assert.match(errorMessage(() => parseCifarRecords(cifarRecords([[1], [2]]), 'cifar100', 'd.bin')), /not a multiple of the 3074-byte record/);
  });
});

describe('synthetic dataset and registry', () => {
  test('synthetic is deterministic, balanced and its normalization constants fit', () => {
    const a = loadDataset('synthetic', { split: 'train', limit: 500 });
    const b = loadDataset('synthetic', { split: 'train' });
    assert.equal(b.count, 10000);
    assert.equal(a.count, 500);
    assert.deepEqual(a.images, b.images.subarray(0, 500 * 784));
    assert.deepEqual([...a.labels.subarray(0, 12)], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);
    const test = loadDataset('synthetic', { split: 'test' });
    assert.equal(test.count, 2000);
    assert.notDeepEqual(test.images.subarray(0, 784), b.images.subarray(0, 784));
    let sum = 0;
    let squares = 0;
    for (const pixel of b.images) {
      sum += pixel / 255;
      squares += (pixel / 255) ** 2;
    }
    const mean = sum / b.images.length;
    const std = Math.sqrt(squares / b.images.length - mean * mean);
    assert.ok(Math.abs(mean - DATASET_INFO.synthetic.mean[0]!) < 0.002, `mean ${mean}`);
    assert.ok(Math.abs(std - DATASET_INFO.synthetic.std[0]!) < 0.002, `std ${std}`);
    // Learnable: a nearest-class-mean classifier already beats chance (10%) by far.
    const centroids = Array.from({ length: 10 }, () => new Float64Array(784));
    for (let index = 0; index < 2000; index++) {
      for (let pixel = 0; pixel < 784; pixel++) centroids[b.labels[index]!]![pixel]! += b.images[index * 784 + pixel]! / 200;
    }
    let correct = 0;
    for (let index = 0; index < 500; index++) {
      let best = -1;
      let bestDistance = Infinity;
      for (let label = 0; label < 10; label++) {
        let distance = 0;
        for (let pixel = 0; pixel < 784; pixel++) distance += (test.images[index * 784 + pixel]! - centroids[label]![pixel]!) ** 2;
        if (distance < bestDistance) {
          bestDistance = distance;
          best = label;
        }
      }
      if (best === test.labels[index]) correct++;
    }
    assert.ok(correct / 500 > 0.5, `nearest-centroid accuracy ${correct / 500}`);
  });

  test('registry input errors', () => {
    assert.match(errorMessage(() => loadDataset('imagenet' as 'mnist', { split: 'train' })), /unknown dataset 'imagenet'/);
    assert.match(errorMessage(() => loadDataset('synthetic', { split: 'val' as 'train' })), /unknown split 'val'/);
    assert.match(errorMessage(() => loadDataset('synthetic', { split: 'train', limit: 0 })), /limit must be a positive integer, got 0/);
  });
});

describe('augmentations', () => {
  const channels = 2;
  const height = 5;
  const width = 6;
  const size = channels * height * width;
  const base = Float32Array.from({ length: size }, (_, index) => index + 1);

  test('normalization is (x / 255 - mean) / std per channel', () => {
    const pixels = Uint8Array.from([0, 255, 128, 7, 0, 255]);
    const out = new Float32Array(6);
    normalizeInto(pixels, 0, out, 0, 2, 3, [0.5, 0.25], [0.2, 0.5]);
    const expected = [0, 255, 128].map((x) => (x / 255 - 0.5) / 0.2).concat([7, 0, 255].map((x) => (x / 255 - 0.25) / 0.5));
    expected.forEach((value, index) => assert.ok(Math.abs(out[index]! - value) < 1e-6, `${out[index]} vs ${value}`));
  });

  test('random crop keeps the shape, shifts the content and fills the border', () => {
    const random = new Random(11);
    const scratch = new Float32Array(size);
    let shifted = 0;
    for (let trial = 0; trial < 40; trial++) {
      const image = Float32Array.from(base);
      const { rowOffset, columnOffset } = randomCrop(image, 0, channels, height, width, 2, [-7, -9], random, scratch);
      assert.equal(image.length, size);
      assert.ok(rowOffset >= 0 && rowOffset <= 4 && columnOffset >= 0 && columnOffset <= 4);
      if (rowOffset !== 2 || columnOffset !== 2) shifted++;
      for (let channel = 0; channel < channels; channel++) {
        for (let row = 0; row < height; row++) {
          for (let column = 0; column < width; column++) {
            const sourceRow = row + rowOffset - 2;
            const sourceColumn = column + columnOffset - 2;
            const inside = sourceRow >= 0 && sourceRow < height && sourceColumn >= 0 && sourceColumn < width;
            const expected = inside ? base[channel * 30 + sourceRow * width + sourceColumn]! : channel === 0 ? -7 : -9;
            assert.equal(image[channel * 30 + row * width + column], expected);
          }
        }
      }
    }
    assert.ok(shifted > 20);
  });

  test('flipping twice is the identity; once mirrors each row', () => {
    const image = Float32Array.from(base);
    horizontalFlip(image, 0, channels, height, width);
    assert.equal(image[0], base[width - 1]);
    assert.equal(image[width * height + 1], base[width * height + width - 2]);
    horizontalFlip(image, 0, channels, height, width);
    assert.deepEqual(image, base);
  });

  test('random erasing draws one in-bounds rectangle of timm-sized area (its fill: test/device-batch.test.ts)', () => {
    const random = new Random(3);
    let erased = 0;
    for (let trial = 0; trial < 60; trial++) {
      const box = drawErasingBox(28, 28, random, { probability: 0.7 });
      if (box === null) continue;
      erased++;
      assert.ok(box.top >= 0 && box.left >= 0 && box.top + box.height <= 28 && box.left + box.width <= 28);
      assert.ok(box.height >= 1 && box.width >= 1 && box.height < 28 && box.width < 28);
      const area = box.height * box.width;
      // Rounding each side can move the area a little beyond [0.02, 1/3] of 784 = [15.7, 261.3].
      assert.ok(area >= 0.02 * 784 * 0.5 && area <= (784 / 3) * 1.3, `area ${area}`);
    }
    assert.ok(erased > 25 && erased < 55, `erased ${erased} of 60 at probability 0.7`);
  });

  test('the pipeline consumes a fixed stream: same seed, same result', () => {
    const options = { cropPadding: 1, hflip: true, randomErasing: 0.5 };
    const run = (): [Uint8Array, unknown] => {
      const image = Uint8Array.from(base);
      const box = augmentSample(image, 0, channels, height, width, options, new Random(99), new Uint8Array(size));
      return [image, box];
    };
    assert.deepEqual(run(), run());
  });
});

describe('mixup and cutmix', () => {
  const rowSums = (targets: Float32Array, classes: number): number[] =>
    Array.from({ length: targets.length / classes }, (_, row) => targets.subarray(row * classes, (row + 1) * classes).reduce((a, b) => a + b, 0));

  test('mixTargets equals the hand computation', () => {
    const targets = mixTargets(Int32Array.from([0, 1, 3]), 4, 0.1, 0.7);
    // off = 0.1 / 4 = 0.025, on = 0.925. Row 0 mixes label 0 (w 0.7) with label 3 (w 0.3).
    const expected = [
      [0.925 * 0.7 + 0.025 * 0.3, 0.025, 0.025, 0.025 * 0.7 + 0.925 * 0.3],
      [0.025, 0.925, 0.025, 0.025],
      [0.025 * 0.7 + 0.925 * 0.3, 0.025, 0.025, 0.925 * 0.7 + 0.025 * 0.3],
    ].flat();
    expected.forEach((value, index) => assert.ok(Math.abs(targets[index]! - value) < 1e-7, `${index}: ${targets[index]} vs ${value}`));
  });

  test('mixup blends with the flipped batch and the targets follow lambda', () => {
    const batch = 3;
    const sampleSize = 2 * 2 * 2;
    const images = Float32Array.from({ length: batch * sampleSize }, (_, index) => index);
    const original = Float32Array.from(images);
    const labels = Int32Array.from([2, 0, 1]);
    const options: MixupOptions = { mixupAlpha: 0.4, cutmixAlpha: 0, labelSmoothing: 0.1, numClasses: 3 };
    const result = mixBatch(images, labels, 2, 2, 2, options, new Random(8));
    assert.equal(result.useCutmix, false);
    assert.ok(result.lambda > 0 && result.lambda < 1);
    const lambda = result.lambda;
    for (let offset = 0; offset < sampleSize; offset++) {
      assert.ok(Math.abs(images[offset]! - (lambda * original[offset]! + (1 - lambda) * original[2 * sampleSize + offset]!)) < 1e-5);
      assert.equal(images[sampleSize + offset], original[sampleSize + offset]); // the middle sample mixes with itself
      assert.ok(Math.abs(images[2 * sampleSize + offset]! - (lambda * original[2 * sampleSize + offset]! + (1 - lambda) * original[offset]!)) < 1e-5);
    }
    const off = 0.1 / 3;
    const on = 1 - 0.1 + off;
    const row0 = [off * lambda + off * (1 - lambda), off * lambda + on * (1 - lambda), on * lambda + off * (1 - lambda)];
    row0.forEach((value, index) => assert.ok(Math.abs(result.softTargets[index]! - value) < 1e-6));
    rowSums(result.softTargets, 3).forEach((sum) => assert.ok(Math.abs(sum - 1) < 1e-6));
    // Same generator state, same outcome.
    const again = mixBatch(Float32Array.from(original), labels, 2, 2, 2, options, new Random(8));
    assert.equal(again.lambda, lambda);
  });

  test('cutmix pastes a box from the partner and lambda equals 1 - box area', () => {
    const random = new Random(21);
    let cutmixCount = 0;
    for (let trial = 0; trial < 30; trial++) {
      const batch = 4;
      const channels = 2;
      const side = 16;
      const sampleSize = channels * side * side;
      const images = Float32Array.from({ length: batch * sampleSize }, (_, index) => Math.floor(index / sampleSize) * 1000 + (index % sampleSize));
      const original = Float32Array.from(images);
      const labels = Int32Array.from([0, 1, 2, 3]);
      const result = mixBatch(images, labels, channels, side, side, { mixupAlpha: 0, cutmixAlpha: 1, labelSmoothing: 0, numClasses: 4 }, random);
      // Cutmix-only always picks cutmix once lambda < 1 was drawn; a box clipped to nothing gives lambda 1.
      if (!result.useCutmix) {
        assert.equal(result.lambda, 1);
        continue;
      }
      cutmixCount++;
      const box = result.box!;
      const area = (box.bottom - box.top) * (box.right - box.left);
      assert.ok(Math.abs(result.lambda - (1 - area / (side * side))) < 1e-12);
      for (let sample = 0; sample < batch; sample++) {
        const partner = batch - 1 - sample;
        for (let channel = 0; channel < channels; channel++) {
          for (let row = 0; row < side; row++) {
            for (let column = 0; column < side; column++) {
              const offset = channel * side * side + row * side + column;
              const inside = row >= box.top && row < box.bottom && column >= box.left && column < box.right;
              assert.equal(images[sample * sampleSize + offset], original[(inside ? partner : sample) * sampleSize + offset]);
            }
          }
        }
        // Without smoothing, the target is lam on the own label and 1 - lam on the partner's.
        assert.ok(Math.abs(result.softTargets[sample * 4 + sample]! - result.lambda) < 1e-6);
        assert.ok(Math.abs(result.softTargets[sample * 4 + partner]! - (1 - result.lambda)) < 1e-6);
      }
      rowSums(result.softTargets, 4).forEach((sum) => assert.ok(Math.abs(sum - 1) < 1e-6));
    }
    assert.ok(cutmixCount >= 25);
  });

  test('rand_bbox sizes follow sqrt(1 - lam); prob 0 only smooths labels', () => {
    const random = new Random(4);
    for (let trial = 0; trial < 50; trial++) {
      const box = randomBox(32, 32, 0.75, random);
      // cut = int(32 * sqrt(0.25)) = 16, half 8: unclipped boxes are 16 x 16.
      assert.ok(box.bottom - box.top <= 16 && box.right - box.left <= 16);
      assert.ok(box.top >= 0 && box.bottom <= 32 && box.left >= 0 && box.right <= 32);
    }
    const labels = Int32Array.from([1, 0]);
    const result = mixBatch(new Float32Array(2 * 4), labels, 1, 2, 2, { mixupAlpha: 1, cutmixAlpha: 1, prob: 0, labelSmoothing: 0.2, numClasses: 2 }, random);
    assert.equal(result.lambda, 1);
    assert.deepEqual([...result.softTargets], [0.1, 0.9, 0.9, 0.1].map(Math.fround));
  });
});

describe('BatchLoader', () => {
  /** A dataset whose pixels 0 and 1 encode the sample index, so batches can be traced back. */
  function indexedDataset(count: number): ImageDataset {
    const channels = 1;
    const height = 6;
    const width = 6;
    const images = new Uint8Array(count * 36);
    for (let index = 0; index < count; index++) {
      images[index * 36] = index % 256;
      images[index * 36 + 1] = Math.floor(index / 256);
      for (let pixel = 2; pixel < 36; pixel++) images[index * 36 + pixel] = (index * 13 + pixel * 5) % 256;
    }
    const labels = Int32Array.from({ length: count }, (_, index) => (index * 7) % 10);
    return { name: 'indexed', split: 'train', images, labels, count, channels, height, width, numClasses: 10, mean: [0], std: [1], source: 'test' };
  }
  const decodeIndex = (batch: Batch, position: number): number =>
    batch.pixels[position * 36]! + 256 * batch.pixels[position * 36 + 1]!;

  async function collect(loader: BatchLoader, epoch: number): Promise<Batch[]> {
    const batches: Batch[] = [];
    for await (const batch of loader.epochBatches(epoch)) batches.push(batch);
    return batches;
  }

  test('every sample appears once per epoch; the order depends on the epoch; dropLast', async () => {
    const dataset = indexedDataset(530);
    const loader = new BatchLoader(dataset, { batchSize: 64, shuffle: true, seed: 5 });
    assert.equal(loader.batchCount, 9);
    const orders: number[][] = [];
    for (const epoch of [0, 1]) {
      const seen: number[] = [];
      for (const batch of await collect(loader, epoch)) {
        for (let position = 0; position < batch.size; position++) {
          const index = decodeIndex(batch, position);
          seen.push(index);
          assert.equal(batch.labels[position], dataset.labels[index]);
        }
      }
      assert.equal(seen.length, 530);
      assert.deepEqual([...seen].sort((a, b) => a - b), Array.from({ length: 530 }, (_, index) => index));
      assert.deepEqual(seen, [...loader.order(epoch)]);
      orders.push(seen);
    }
    assert.notDeepEqual(orders[0], orders[1]);
    const last = (await collect(loader, 0)).at(-1)!;
    assert.equal(last.size, 530 - 8 * 64);
    assert.equal(last.pixels.length, last.size * 36);
    const dropping = new BatchLoader(dataset, { batchSize: 64, shuffle: false, dropLast: true });
    const dropped = await collect(dropping, 0);
    assert.equal(dropped.length, 8);
    assert.ok(dropped.every((batch) => batch.size === 64));
    assert.equal(decodeIndex(dropped[1]!, 0), 64); // no shuffle: file order
  });

  const fullOptions = {
    batchSize: 50,
    shuffle: true,
    seed: 77,
    augment: { cropPadding: 2, hflip: true, randomErasing: 0.5 },
    mixup: { mixupAlpha: 0.8, cutmixAlpha: 1.0, labelSmoothing: 0.1, numClasses: 10 },
  };

  test('same seed and epoch give identical batches; a new loader resumes bit-exactly', async () => {
    const dataset = loadDataset('synthetic', { split: 'train', limit: 400 });
    const first = await collect(new BatchLoader(dataset, fullOptions), 3);
    const second = await collect(new BatchLoader(dataset, { ...fullOptions, epoch: 3 }), 3);
    assert.equal(first.length, 8);
    assert.deepEqual(first, second);
    assert.ok(first.every((batch) => batch.softTargets !== null && batch.softTargets.length === batch.size * 10));
    assert.ok(first.every((batch) => batch.mix !== null && batch.erasing !== null && batch.erasing.boxes.length === batch.size));
    const other = await collect(new BatchLoader(dataset, fullOptions), 4);
    assert.notDeepEqual(other[0]!.pixels, first[0]!.pixels);
    const otherSeed = await collect(new BatchLoader(dataset, { ...fullOptions, seed: 78 }), 3);
    assert.notDeepEqual(otherSeed[0]!.labels, first[0]!.labels);
    // Rebuilding one batch alone gives the same bytes (mid-epoch resume).
    assert.deepEqual(new BatchLoader(dataset, fullOptions).batchAt(3, 5), first[5]);
  });

  test('the worker gives bit-identical batches, survives an abandoned epoch, and closes', async () => {
    const dataset = loadDataset('synthetic', { split: 'train', limit: 400 });
    const reference = new BatchLoader(dataset, fullOptions);
    const worker = new BatchLoader(dataset, { ...fullOptions, useWorker: true, prefetch: 3 });
    try {
      const expected = await collect(reference, 2);
      const fromWorker = await collect(worker, 2);
      assert.equal(fromWorker.length, expected.length);
      for (let index = 0; index < expected.length; index++) {
        assert.deepEqual(fromWorker[index], expected[index]);
        assert.equal(fromWorker[index]!.index, index);
      }
      // Break out of an epoch, then run another one: stale batches must not leak into it.
      let taken = 0;
      for await (const batch of worker.epochBatches(5)) {
        assert.equal(batch.index, taken);
        if (++taken === 2) break;
      }
      worker.setEpoch(6);
      const sixth: Batch[] = [];
      for await (const batch of worker) sixth.push(batch);
      assert.deepEqual(sixth, await collect(reference, 6));
    } finally {
      await worker.close();
    }
    // After close() the loader starts a fresh worker on demand.
    const reopened = await collect(worker, 2);
    assert.deepEqual(reopened.map((batch) => batch.labels), (await collect(reference, 2)).map((batch) => batch.labels));
    await worker.close();
  });

  test('repeated augmentation: each index of the epoch\'s permutation 3 times in a row, the epoch keeps its length', async () => {
    const dataset = indexedDataset(530);
    const plain = new BatchLoader(dataset, { batchSize: 64, shuffle: true, seed: 5 });
    const repeated = new BatchLoader(dataset, { batchSize: 64, shuffle: true, seed: 5, repeats: 3 });
    assert.equal(repeated.batchCount, plain.batchCount);
    for (const epoch of [0, 1]) {
      // DeiT's RASampler on one process: torch.repeat_interleave(permutation, 3)[:len].
      const permutation = [...plain.order(epoch)];
      const expected = permutation.flatMap((index) => [index, index, index]).slice(0, 530);
      assert.deepEqual([...repeated.order(epoch)], expected);
      const seen: number[] = [];
      for (const batch of await collect(repeated, epoch)) {
        for (let position = 0; position < batch.size; position++) seen.push(decodeIndex(batch, position));
      }
      assert.deepEqual(seen, expected, 'the batches do not follow the order');
      // 530 = 176 * 3 + 2: 176 images three times, the 177th twice, the other 353 not this epoch.
      const counts = new Map<number, number>();
      for (const index of seen) counts.set(index, (counts.get(index) ?? 0) + 1);
      assert.equal(counts.size, 177);
      assert.deepEqual([...counts.values()].sort(), [...Array(176).fill(3), 2].sort());
    }
    assert.notDeepEqual([...repeated.order(0)], [...repeated.order(1)]);
    assert.match(errorMessage(() => new BatchLoader(dataset, { batchSize: 4, repeats: 0 })), /repeats must be a positive integer, got 0/);
    assert.match(errorMessage(() => new BatchLoader(dataset, { batchSize: 4, repeats: 1.5 })), /repeats must be a positive integer, got 1.5/);
  });

  test('repeated augmentation: copies are augmented differently, copy 0 as without repeats; resume, workers and data-parallel shards give the same bytes', async () => {
    const dataset = loadDataset('synthetic', { split: 'train', limit: 240 });
    const augment = { cropPadding: 4, hflip: true, randomErasing: 0.5 };
    const sampleSize = dataset.channels * dataset.height * dataset.width;
    // One batch holding the whole epoch, in file order, so that position p is sample p (plain) or
    // copy p % 3 of sample p / 3 (repeated).
    const plain = new BatchLoader(dataset, { batchSize: 240, seed: 9, augment }).batchAt(2, 0);
    const repeated = new BatchLoader(dataset, { batchSize: 240, seed: 9, augment, repeats: 3 }).batchAt(2, 0);
    // A sample's pixels and its erasing box and fill seed: all that sets its finished values.
    const image = (batch: Batch, position: number): Uint8Array => Buffer.concat([
      batch.pixels.subarray(position * sampleSize, (position + 1) * sampleSize),
      Buffer.from(JSON.stringify([batch.erasing!.boxes[position], batch.erasing!.seeds[position]])),
    ]);
    let identicalPairs = 0;
    for (let sample = 0; sample < 80; sample++) {
      assert.equal(repeated.labels[3 * sample], dataset.labels[sample]);
      assert.deepEqual(image(repeated, 3 * sample), image(plain, sample), `copy 0 of sample ${sample} is not augmented as without repeats`);
      const copies = [0, 1, 2].map((copy) => Buffer.from(image(repeated, 3 * sample + copy)));
      for (const [left, right] of [[0, 1], [0, 2], [1, 2]] as const) if (copies[left]!.equals(copies[right]!)) identicalPairs++;
    }
    // 81 shifts x 2 flips x erasing: two independent draws coincide with probability < 1 / 162;
    // a stream shared by the copies would make all 240 pairs identical.
    assert.ok(identicalPairs <= 6, `${identicalPairs} of 240 pairs of copies are augmented alike`);

    const options = { batchSize: 24, shuffle: true, seed: 3, augment, repeats: 3 };
    const reference = await collect(new BatchLoader(dataset, options), 4);
    assert.equal(reference.length, 10);
    // A batch rebuilt alone (a resumed run) and a new loader give the same bytes.
    assert.deepEqual(new BatchLoader(dataset, { ...options, epoch: 4 }).batchAt(4, 7), reference[7]);
    const workers = new BatchLoader(dataset, { ...options, useWorker: true, workers: 2, prefetch: 3 });
    try {
      assert.deepEqual(await collect(workers, 4), reference, 'two worker threads gave other batches');
    } finally {
      await workers.close();
    }
    // Two data-parallel ranks with local batches of 12: side by side they are the global batches.
    const ranks = [0, 1].map((rank) => new BatchLoader(dataset, { ...options, batchSize: 12, shard: { rank, world: 2 } }));
    const local = await Promise.all(ranks.map((loader) => collect(loader, 4)));
    assert.equal(local[0]!.length, 10);
    for (let index = 0; index < 10; index++) {
      for (let rank = 0; rank < 2; rank++) {
        const global = reference[index]!;
        assert.deepEqual(local[rank]![index]!.pixels, global.pixels.slice(rank * 12 * sampleSize, (rank + 1) * 12 * sampleSize));
        assert.deepEqual(local[rank]![index]!.labels, global.labels.slice(rank * 12, (rank + 1) * 12));
        assert.deepEqual(local[rank]![index]!.erasing, { ...global.erasing!, boxes: global.erasing!.boxes.slice(rank * 12, (rank + 1) * 12), seeds: global.erasing!.seeds.slice(rank * 12, (rank + 1) * 12) });
      }
    }
  });

  test('throughput measurement and option errors', async () => {
    const dataset = loadDataset('synthetic', { split: 'train', limit: 300 });
    const result = await measureLoaderThroughput(dataset, { batchSize: 32, augment: { cropPadding: 2, hflip: true, randomErasing: 0 } }, { maxBatches: 6 });
    assert.equal(result.batches, 5);
    assert.equal(result.images, 5 * 32);
    assert.ok(result.imagesPerSecond > 0 && Number.isFinite(result.imagesPerSecond));
    assert.match(errorMessage(() => new BatchLoader(dataset, { batchSize: 0 })), /^loader\(synthetic\/train\): batchSize must be a positive integer, got 0/);
    assert.match(
      errorMessage(() => new BatchLoader(dataset, { batchSize: 4, mixup: { mixupAlpha: -1, cutmixAlpha: 0, labelSmoothing: 0, numClasses: 10 } })),
      /mixupAlpha must be a finite number >= 0, got -1/,
    );
    assert.match(
      errorMessage(() => new BatchLoader(dataset, { batchSize: 4, mixup: { mixupAlpha: 1, cutmixAlpha: 0, labelSmoothing: 0, numClasses: 100 } })),
      /mixup numClasses 100 differs from the dataset's 10 classes/,
    );
    assert.match(errorMessage(() => new BatchLoader(dataset, { batchSize: 4, augment: { cropPadding: -1, hflip: false, randomErasing: 0 } })), /cropPadding must be a non-negative integer/);
    const badMode = { cropPadding: 0, hflip: false, randomErasing: 0.5, erasingMode: 'noise' as 'pixel' };
    assert.match(errorMessage(() => new BatchLoader(dataset, { batchSize: 4, augment: badMode })), /erasingMode must be one of const, rand, pixel, got noise/);
    assert.match(errorMessage(() => new BatchLoader(dataset, { batchSize: 4 }).batchAt(0, 99)), /batch index 99 is out of range 0\.\.74/);
  });
});
