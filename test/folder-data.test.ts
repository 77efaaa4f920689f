// Image folders and file lists on generated folders: classes and order as torchvision's
// ImageFolder gives them, non-image files skipped, empty and unknown class folders, list files,
// a corrupt JPEG named in the error (or counted and skipped), nothing written into the data
// directory, and the loader's batches: pixel values by hand on single-colour images, and the same
// bytes with and without the worker thread and for a batch rebuilt alone (resume). End to end: a
// run on a folder records its class map, learns three colours, and resumes to the same weights.
// Repeated augmentation on files (copies cropped differently, worker invariance), the presets'
// values, eval-image-size, and DeiT-III's two runs on a small ViT (train small, --init larger).
// export-images: a data set written as PNG folders reads back with its pixels and labels.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { loadDataset } from '../src/data/datasets.js';
import { checkExportDirectory, exportSplit } from '../src/data/export-images.js';
import { loadFolderDataset } from '../src/data/folder-dataset.js';
import { readImageList, scanImageFolder } from '../src/data/folder.js';
import { type Batch, BatchLoader } from '../src/data/loader.js';
import type { ImageDataset } from '../src/data/datasets.js';
import { createModel, type VisionTransformer } from '../src/models/index.js';
import { loadCheckpoint } from '../src/run/checkpoint.js';
import { CHECKPOINT_FILE } from '../src/run/format.js';
import { loadSafetensors } from '../src/tensor/safetensors.js';
import { buildConfig } from '../src/train/config.js';
import { loadSplit, train } from '../src/train/trainer.js';
import { deviceBatch } from '../src/train/device-batch.js';
import { tidy } from '../src/tensor/tensor.js';

/** A loader batch's finished images (normalized, erased, mixed) as the trainer gets them, on the CPU. */
function images(batch: Batch, dataset: ImageDataset): number[] {
  return tidy(() => Array.from(deviceBatch(batch, dataset, 'cpu').images.toTypedArray() as Float32Array));
}

const root = mkdtempSync(join(tmpdir(), 'masksub-folder-'));
after(() => rmSync(root, { recursive: true, force: true }));

// Class colours: every image of a class is one solid colour, so each output pixel is known.
const COLOURS: Record<string, [number, number, number]> = { ant: [200, 10, 30], bee: [0, 128, 255], cat: [90, 90, 90] };

async function writeImage(path: string, colour: [number, number, number], width: number, height: number, format: 'png' | 'jpeg'): Promise<void> {
  const image = sharp({ create: { width, height, channels: 3, background: { r: colour[0], g: colour[1], b: colour[2] } } });
  await (format === 'png' ? image.png() : image.jpeg({ quality: 100 })).toFile(path);
}

/** Every file below a directory with its size and modification time. */
function snapshot(directory: string): string[] {
  const out: string[] = [];
  const walk = (path: string): void => {
    for (const entry of readdirSync(path, { withFileTypes: true })) {
      const full = join(path, entry.name);
      if (entry.isDirectory()) walk(full);
      else out.push(`${relative(directory, full)} ${statSync(full).size} ${statSync(full).mtimeMs}`);
    }
  };
  walk(directory);
  return out.sort();
}

const data = join(root, 'data');

before(async () => {
  // train: bee has 3 PNGs, cat 2 PNGs + 1 JPEG in a nested folder, ant 2 PNGs; plus non-image files.
  for (const [name, count] of [['bee', 3], ['cat', 2], ['ant', 2]] as const) {
    mkdirSync(join(data, 'train', name), { recursive: true });
    mkdirSync(join(data, 'val', name), { recursive: true });
    for (let index = 0; index < count; index++) await writeImage(join(data, 'train', name, `${name}${index}.png`), COLOURS[name]!, 40 + 7 * index, 30 + 5 * index, 'png');
  }
  mkdirSync(join(data, 'train', 'cat', 'more'));
  await writeImage(join(data, 'train', 'cat', 'more', 'late.JPG'), COLOURS.cat!, 50, 50, 'jpeg');
  writeFileSync(join(data, 'train', 'bee', 'notes.txt'), 'not an image');
  writeFileSync(join(data, 'train', 'README'), 'a file next to the class folders');
  // val: ant is empty (allowed there), bee and cat one image each.
  await writeImage(join(data, 'val', 'bee', 'b.png'), COLOURS.bee!, 64, 48, 'png');
  await writeImage(join(data, 'val', 'cat', 'c.jpg'), COLOURS.cat!, 48, 64, 'jpeg');
});

describe('image folders', () => {
  test('classes are the sorted folder names; files sorted, nested folders after the files; non-images skipped', () => {
    const list = scanImageFolder(join(data, 'train'));
    assert.deepEqual(list.classes, ['ant', 'bee', 'cat']);
    assert.deepEqual(list.paths.map((path) => relative(join(data, 'train'), path)), [
      'ant/ant0.png', 'ant/ant1.png', 'bee/bee0.png', 'bee/bee1.png', 'bee/bee2.png', 'cat/cat0.png', 'cat/cat1.png', 'cat/more/late.JPG',
    ]);
    assert.deepEqual(Array.from(list.labels), [0, 0, 1, 1, 1, 2, 2, 2]);
    assert.equal(list.skippedFiles, 1); // notes.txt; README is beside the class folders, not in one
  });

  test('the evaluation split is read with the training map; an empty class folder is fine there, an unknown one is not', () => {
    const list = scanImageFolder(join(data, 'val'), { classes: ['ant', 'bee', 'cat'] });
    assert.deepEqual(Array.from(list.labels), [1, 2]);
    assert.throws(() => scanImageFolder(join(data, 'val'), { classes: ['ant', 'bee'] }), /class folder\(s\) cat are not among the 2 training classes/);
  });

  test('an empty training class folder and a missing folder are errors naming them', () => {
    const empty = join(root, 'empty-class');
    mkdirSync(join(empty, 'a'), { recursive: true });
    mkdirSync(join(empty, 'b'));
    writeFileSync(join(empty, 'a', 'x.png'), '');
    assert.throws(() => scanImageFolder(empty, { requireEveryClass: true }), /class folder b holds no image files/);
    assert.throws(() => scanImageFolder(join(root, 'nowhere')), /nowhere does not exist/);
  });

  test('list files: class names or integer labels, a header, comments, relative paths, bad labels named', () => {
    const named = join(root, 'named.csv');
    writeFileSync(named, 'path,label\n# a comment\ntrain/bee/bee0.png,bee\ntrain/ant/ant0.png,ant\ntrain/bee/notes.txt,bee\n');
    const list = readImageList(named, { base: data });
    assert.deepEqual(list.classes, ['ant', 'bee']);
    assert.deepEqual(Array.from(list.labels), [1, 0]);
    assert.equal(list.paths[0], join(data, 'train/bee/bee0.png'));
    assert.equal(list.skippedFiles, 1);
    const numbered = join(root, 'numbered.tsv');
    writeFileSync(numbered, `${join(data, 'train/cat/cat0.png')}\t4\n${join(data, 'train/ant/ant0.png')}\t0\n`);
    const integers = readImageList(numbered);
    assert.equal(integers.classes.length, 5);
    assert.deepEqual(Array.from(integers.labels), [4, 0]);
    assert.throws(() => readImageList(named, { base: data, classes: ['ant'] }), /label 'bee' of train\/bee\/bee0.png is not one of the 1 training classes/);
    const broken = join(root, 'broken.csv');
    writeFileSync(broken, 'just-a-path.png\n');
    assert.throws(() => readImageList(broken), /broken.csv, line 1: expected 'path<TAB>label' or 'path,label'/);
  });

  test('the evaluation split decodes to the resized, center-cropped colours; the training split stays lazy', async () => {
    const before = snapshot(data);
    const train = await loadFolderDataset({ split: 'train', dataDir: data, list: null, size: 16 });
    assert.equal(train.count, 8);
    assert.equal(train.images.length, 0);
    assert.equal(train.files?.paths.length, 8);
    assert.deepEqual(train.classes, ['ant', 'bee', 'cat']);
    const test = await loadFolderDataset({ split: 'test', dataDir: data, list: null, size: 16, classes: train.classes });
    assert.equal(test.count, 2);
    assert.equal(test.files, undefined);
    assert.deepEqual(Array.from(test.labels), [1, 2]);
    // A solid colour stays that colour through any resampling; PNG is lossless, the JPEG nearly.
    const plane = 16 * 16;
    for (let channel = 0; channel < 3; channel++) {
      const bee = test.images.subarray(channel * plane, (channel + 1) * plane);
      assert.ok(bee.every((value) => value === COLOURS.bee![channel]), `bee channel ${channel}`);
      const cat = test.images.subarray(3 * plane + channel * plane, 3 * plane + (channel + 1) * plane);
      assert.ok(cat.every((value) => Math.abs(value - COLOURS.cat![channel]!) <= 2), `cat channel ${channel}`);
    }
    assert.deepEqual(snapshot(data), before, 'the data directory was changed');
  });

  test('loader: normalized colours by hand, the same bytes without a worker and with 1, 2 or 3 worker threads, a batch rebuilt alone equals the iterated one', async () => {
    const train = await loadFolderDataset({ split: 'train', dataDir: data, list: null, size: 12, scale: [0.3, 1] });
    const options = { batchSize: 3, shuffle: true, seed: 5, augment: { cropPadding: 0, hflip: true, randomErasing: 0 } };
    const collect = async (useWorker: boolean, epoch: number, workers = 1): Promise<{ images: number[]; labels: number[] }[]> => {
      const loader = new BatchLoader(train, { ...options, useWorker, prefetch: 2, workers });
      const batches: { images: number[]; labels: number[] }[] = [];
      try {
        for await (const batch of loader.epochBatches(epoch)) batches.push({ images: images(batch, train), labels: Array.from(batch.labels) });
      } finally {
        await loader.close();
      }
      return batches;
    };
    const inThread = await collect(false, 1);
    assert.equal(inThread.length, 3);
    assert.deepEqual(inThread.map((batch) => batch.labels.length), [3, 3, 2]);
    const plane = 12 * 12;
    const mean = [0.485, 0.456, 0.406];
    const std = [0.229, 0.224, 0.225];
    for (const batch of inThread) {
      batch.labels.forEach((label, position) => {
        const colour = COLOURS[['ant', 'bee', 'cat'][label]!]!;
        for (let channel = 0; channel < 3; channel++) {
          const expected = (colour[channel]! / 255 - mean[channel]!) / std[channel]!;
          const start = (position * 3 + channel) * plane;
          const values = batch.images.slice(start, start + plane);
          // The JPEG's colour may be a level off; one level is 1 / (255 * 0.225) = 0.0174.
          assert.ok(values.every((value) => Math.abs(value - expected) < 0.04), `label ${label} channel ${channel}: ${values[0]} vs ${expected}`);
        }
      });
    }
    assert.deepEqual(await collect(true, 1), inThread, 'the worker thread gave other batches');
    assert.deepEqual(await collect(true, 1, 2), inThread, 'two worker threads gave other batches');
    assert.deepEqual(await collect(true, 1, 3), inThread, 'three worker threads (one batch each) gave other batches');
    // An epoch abandoned after one batch, then the whole epoch again, with two workers.
    const two = new BatchLoader(train, { ...options, useWorker: true, prefetch: 2, workers: 2 });
    try {
      for await (const _batch of two.epochBatches(1)) break;
      const again: number[][] = [];
      for await (const batch of two.epochBatches(1)) again.push(images(batch, train));
      assert.deepEqual(again, inThread.map((batch) => batch.images), 'an abandoned epoch disturbed the next one');
    } finally {
      await two.close();
    }
    const epochTwo = await collect(true, 2);
    assert.notDeepEqual(epochTwo.map((batch) => batch.labels), inThread.map((batch) => batch.labels), 'epoch 2 has the order of epoch 1');
    const loader = new BatchLoader(train, { ...options, useWorker: false });
    const alone = await loader.batchAtAsync(2, 1);
    assert.deepEqual(images(alone, train), epochTwo[1]!.images);
    assert.throws(() => loader.batchAt(2, 1), /cannot decode image files synchronously/);
  });

  test('loader: crops differ between samples and epochs but depend only on (seed, epoch, sample)', async () => {
    // One gradient image per class, so that crops show in the pixels.
    const gradient = join(root, 'gradient');
    for (const name of ['a', 'b']) {
      mkdirSync(join(gradient, 'train', name), { recursive: true });
      const pixels = Buffer.alloc(60 * 80 * 3);
      for (let index = 0; index < pixels.length; index++) pixels[index] = (index * 7) % 251;
      await sharp(pixels, { raw: { width: 80, height: 60, channels: 3 } }).png().toFile(join(gradient, 'train', name, 'g.png'));
    }
    const train = await loadFolderDataset({ split: 'train', dataDir: gradient, list: null, size: 16 });
    const loader = (batchSize: number): BatchLoader => new BatchLoader(train, { batchSize, seed: 1, augment: { cropPadding: 0, hflip: true, randomErasing: 0 } });
    const wholeEpoch = await loader(2).batchAtAsync(0, 0);
    const oneByOne = [await loader(1).batchAtAsync(0, 0), await loader(1).batchAtAsync(0, 1)];
    // The same sample gets the same crop whichever batch it lands in.
    assert.deepEqual(images(wholeEpoch, train), [...images(oneByOne[0]!, train), ...images(oneByOne[1]!, train)]);
    const sampleSize = 3 * 16 * 16;
    assert.notDeepEqual(Array.from(images(wholeEpoch, train).slice(0, sampleSize)), Array.from(images(wholeEpoch, train).slice(sampleSize)));
    const nextEpoch = await loader(2).batchAtAsync(1, 0);
    assert.notDeepEqual(images(nextEpoch, train), images(wholeEpoch, train));

    // 3-Augment and color jitter come after the crop and flip, from the sample's own stream: they
    // change the pixels, the crop stays, and the result is a function of (seed, epoch, sample).
    const augmented = await loadFolderDataset({ split: 'train', dataDir: gradient, list: null, size: 16, threeAugment: true, colorJitter: 0.3 });
    const augmentedLoader = (batchSize: number): BatchLoader => new BatchLoader(augmented, { batchSize, seed: 1, augment: { cropPadding: 0, hflip: true, randomErasing: 0 } });
    const withAugment = await augmentedLoader(2).batchAtAsync(0, 0);
    assert.notDeepEqual(images(withAugment, train), images(wholeEpoch, train));
    const alone = [await augmentedLoader(1).batchAtAsync(0, 0), await augmentedLoader(1).batchAtAsync(0, 1)];
    assert.deepEqual(images(withAugment, train), [...images(alone[0]!, train), ...images(alone[1]!, train)]);
    // RandAugment the same way (m9 with p 1 and 3 ops, so that some op surely changes the pixels).
    const randAugmented = await loadFolderDataset({ split: 'train', dataDir: gradient, list: null, size: 16, randAugment: 'rand-m9-n3-p1-mstd0.5-inc1' });
    assert.deepEqual(randAugmented.files!.fill, [124, 116, 104]);
    const randLoader = (batchSize: number): BatchLoader => new BatchLoader(randAugmented, { batchSize, seed: 1, augment: { cropPadding: 0, hflip: true, randomErasing: 0 } });
    const withRand = await randLoader(2).batchAtAsync(0, 0);
    assert.notDeepEqual(images(withRand, train), images(wholeEpoch, train));
    const randAlone = [await randLoader(1).batchAtAsync(0, 0), await randLoader(1).batchAtAsync(0, 1)];
    assert.deepEqual(images(withRand, train), [...images(randAlone[0]!, train), ...images(randAlone[1]!, train)]);
  });

  test('repeated augmentation on files: the copies of an image get their own crops, copy 0 the crop it gets without repeats, the same bytes with 2 worker threads', async () => {
    const folder = join(root, 'repeated');
    for (const name of ['a', 'b']) {
      mkdirSync(join(folder, 'train', name), { recursive: true });
      for (let index = 0; index < 3; index++) {
        const pixels = Buffer.alloc(60 * 80 * 3);
        for (let byte = 0; byte < pixels.length; byte++) pixels[byte] = (byte * (7 + index) + name.charCodeAt(0)) % 251;
        await sharp(pixels, { raw: { width: 80, height: 60, channels: 3 } }).png().toFile(join(folder, 'train', name, `${index}.png`));
      }
    }
    const train = await loadFolderDataset({ split: 'train', dataDir: folder, list: null, size: 16, threeAugment: true, colorJitter: 0.3 });
    const augment = { cropPadding: 0, hflip: true, randomErasing: 0.25 };
    const sampleSize = 3 * 16 * 16;
    // Whole epoch in one batch, file order: position p is copy p % 3 of sample p / 3 (6 entries: samples 0 and 1).
    const plain = await new BatchLoader(train, { batchSize: 6, seed: 2, augment }).batchAtAsync(0, 0);
    const repeated = await new BatchLoader(train, { batchSize: 6, seed: 2, augment, repeats: 3 }).batchAtAsync(0, 0);
    const image = (batch: Batch, position: number): number[] => images(batch, train).slice(position * sampleSize, (position + 1) * sampleSize);
    assert.deepEqual(Array.from(repeated.labels), [0, 0, 0, 0, 0, 0]);
    for (const sample of [0, 1]) {
      assert.deepEqual(image(repeated, 3 * sample), image(plain, sample), `copy 0 of sample ${sample} differs from its crop without repeats`);
      const copies = [0, 1, 2].map((copy) => image(repeated, 3 * sample + copy));
      assert.notDeepEqual(copies[0], copies[1]);
      assert.notDeepEqual(copies[0], copies[2]);
      assert.notDeepEqual(copies[1], copies[2]);
    }
    const options = { batchSize: 2, shuffle: true, seed: 4, augment, repeats: 3 };
    const inThread: number[][] = [];
    for await (const batch of new BatchLoader(train, options).epochBatches(1)) inThread.push(images(batch, train));
    assert.equal(inThread.length, 3);
    const workers = new BatchLoader(train, { ...options, useWorker: true, workers: 2 });
    const fromWorkers: number[][] = [];
    try {
      for await (const batch of workers.epochBatches(1)) fromWorkers.push(images(batch, train));
    } finally {
      await workers.close();
    }
    assert.deepEqual(fromWorkers, inThread);
    assert.deepEqual(images(await new BatchLoader(train, options).batchAtAsync(1, 2), train), inThread[2]);
  });

  test('a corrupt JPEG is an error naming the file, or is counted and skipped with skipBadImages', async () => {
    const corrupt = join(root, 'corrupt');
    mkdirSync(join(corrupt, 'train', 'x'), { recursive: true });
    mkdirSync(join(corrupt, 'train', 'y'), { recursive: true });
    await writeImage(join(corrupt, 'train', 'x', 'good.png'), [1, 2, 3], 20, 20, 'png');
    await writeImage(join(corrupt, 'train', 'y', 'good.png'), [4, 5, 6], 20, 20, 'png');
    const whole = join(root, 'whole.jpg');
    await writeImage(whole, [7, 8, 9], 64, 64, 'jpeg');
    const bytes = (await import('node:fs')).readFileSync(whole);
    writeFileSync(join(corrupt, 'train', 'y', 'broken.jpg'), bytes.subarray(0, Math.floor(bytes.length / 2)));
    const options = { batchSize: 4, augment: { cropPadding: 0, hflip: false, randomErasing: 0 } };
    const strict = await loadFolderDataset({ split: 'train', dataDir: corrupt, list: null, size: 8 });
    for (const useWorker of [false, true]) {
      const loader = new BatchLoader(strict, { ...options, useWorker });
      await assert.rejects(async () => {
        for await (const _batch of loader.epochBatches(0)) { /* consume */ }
      }, new RegExp(`image ${join(corrupt, 'train', 'y', 'broken.jpg').replace(/[.]/g, '\\.')}: cannot be decoded .*--skip-bad-images`));
      await loader.close();
    }
    const lenient = await loadFolderDataset({ split: 'train', dataDir: corrupt, list: null, size: 8, skipBadImages: true });
    const loader = new BatchLoader(lenient, { ...options, useWorker: true });
    const sizes: number[] = [];
    for await (const batch of loader.epochBatches(0)) sizes.push(batch.size);
    await loader.close();
    assert.deepEqual(sizes, [2]);
    assert.deepEqual(loader.takeBadImages(), [join(corrupt, 'train', 'y', 'broken.jpg')]);
    assert.deepEqual(loader.takeBadImages(), []);
    // The evaluation split: same rule at decode time.
    await assert.rejects(loadFolderDataset({ split: 'test', dataDir: join(corrupt), list: null, size: 8 }), /val does not exist/);
  });
});

describe('training on an image folder', () => {
  const quiet = (): void => undefined;
  const flags = {
    dataset: 'folder', dataDir: data, model: 'resnet_micro', imageSize: 16, epochs: 10, batchSize: 4, lr: 0.05, optimizer: 'sgd',
    warmupEpochs: 0, probeSize: 4, threads: 1, cropScale: 0.5, labelSmoothing: 0,
  };

  test('settings: folder needs a data directory or lists; folder-only settings are refused elsewhere; a ViT needs its own size', () => {
    assert.throws(() => buildConfig({ flags: { dataset: 'folder' } }), /dataset folder needs --data-dir DIR/);
    assert.throws(() => buildConfig({ flags: { dataset: 'folder', trainList: 'a.csv' } }), /needs --val-list FILE/);
    assert.throws(() => buildConfig({ flags: { dataset: 'synthetic', imageSize: 32 } }), /image-size applies only to --dataset folder/);
    assert.throws(() => buildConfig({ flags: { dataset: 'folder', dataDir: data, model: 'vit_micro', imageSize: 32 } }), /takes 28x28 images but image-size is 32/);
    assert.throws(() => buildConfig({ flags: { dataset: 'folder', dataDir: data, cropPadding: 4 } }), /crop-padding 4 does not apply to folder data/);
    assert.throws(() => buildConfig({ flags: { dataset: 'synthetic', threeAugment: true } }), /three-augment applies only to --dataset folder/);
    assert.throws(() => buildConfig({ flags: { dataset: 'synthetic', colorJitter: 0.3 } }), /color-jitter applies only to --dataset folder/);
    assert.equal(buildConfig({ preset: 'deit3-vit-s', flags: { dataset: 'folder', dataDir: data, imageSize: 224 } }).threeAugment, true);
    assert.equal(buildConfig({ preset: 'rsb-a2-resnet50', flags: { dataset: 'folder', dataDir: data, imageSize: 224 } }).randAugment, 'rand-m7-mstd0.5-inc1');
    assert.throws(() => buildConfig({ flags: { dataset: 'folder', dataDir: data, randAugment: 'rand-m9-foo' } }), /rand-augment.*rand-m9-foo/s);
    assert.throws(() => buildConfig({ flags: { dataset: 'folder', dataDir: data, randAugment: 'rand-m9', colorJitter: 0.4 } }), /rand-augment excludes color-jitter/);
    assert.throws(() => buildConfig({ flags: { dataset: 'synthetic', randAugment: 'rand-m9' } }), /rand-augment applies only to --dataset folder/);
  });

  test('presets say the papers\' values; a ViT trains at a multiple of its patch; eval-image-size (CNN only) sizes the evaluation split; opt-eps', async () => {
    const folder = { dataset: 'folder', dataDir: data };
    const pick = (config: Record<string, unknown>, keys: string[]): Record<string, unknown> => Object.fromEntries(keys.map((key) => [key, config[key]]));
    const keys = ['model', 'imageSize', 'evalImageSize', 'optimizer', 'optEps', 'lr', 'weightDecay', 'batchSize', 'epochs', 'dropPath', 'dropPathSchedule', 'repeatedAug', 'threeAugment', 'colorJitter', 'randAugment', 'cropPct', 'loss', 'bceTargetThreshold', 'mixup', 'cutmix'];
    // MaskSub paper Table B.1 + Table B.2 (400 epochs); LAMB eps from DeiT-III's main.py.
    assert.deepEqual(pick(buildConfig({ preset: 'deit3-vit-s', flags: folder }), keys), {
      model: 'vit_small_patch16_224', imageSize: null, evalImageSize: null, optimizer: 'lamb', optEps: 1e-8, lr: 4e-3, weightDecay: 0.03, batchSize: 2048, epochs: 400,
      dropPath: 0, dropPathSchedule: 'uniform', repeatedAug: 3, threeAugment: true, colorJitter: 0.3, randAugment: null, cropPct: 1, loss: 'bce', bceTargetThreshold: 0, mixup: 0.8, cutmix: 1,
    });
    assert.deepEqual(pick(buildConfig({ preset: 'deit3-vit-b', flags: folder }), keys), {
      model: 'vit_base_patch16_224', imageSize: 192, evalImageSize: null, optimizer: 'lamb', optEps: 1e-8, lr: 3e-3, weightDecay: 0.03, batchSize: 2048, epochs: 400,
      dropPath: 0.1, dropPathSchedule: 'uniform', repeatedAug: 3, threeAugment: true, colorJitter: 0.3, randAugment: null, cropPct: 1, loss: 'bce', bceTargetThreshold: 0, mixup: 0.8, cutmix: 1,
    });
    assert.deepEqual(pick(buildConfig({ preset: 'deit3-vit-b-ft', flags: folder }), keys), {
      model: 'vit_base_patch16_224', imageSize: 224, evalImageSize: null, optimizer: 'adamw', optEps: null, lr: 1e-5, weightDecay: 0.1, batchSize: 512, epochs: 20,
      dropPath: 0.2, dropPathSchedule: 'uniform', repeatedAug: 1, threeAugment: false, colorJitter: 0, randAugment: 'rand-m9-mstd0.5-inc1', cropPct: 1, loss: 'ce', bceTargetThreshold: null, mixup: 0.8, cutmix: 1,
    });
    assert.deepEqual(pick(buildConfig({ preset: 'rsb-a2-resnet50', flags: folder }), keys), {
      model: 'resnet50', imageSize: null, evalImageSize: null, optimizer: 'lamb', optEps: null, lr: 5e-3, weightDecay: 0.01, batchSize: 2048, epochs: 300,
      dropPath: 0.05, dropPathSchedule: 'linear', repeatedAug: 3, threeAugment: false, colorJitter: 0, randAugment: 'rand-m7-mstd0.5-inc1', cropPct: 0.95, loss: 'bce', bceTargetThreshold: 0.2, mixup: 0.1, cutmix: 1,
    });
    assert.deepEqual(pick(buildConfig({ preset: 'rsb-a3-resnet50', flags: folder }), keys), {
      model: 'resnet50', imageSize: 160, evalImageSize: 224, optimizer: 'lamb', optEps: null, lr: 8e-3, weightDecay: 0.02, batchSize: 2048, epochs: 100,
      dropPath: 0, dropPathSchedule: 'linear', repeatedAug: 1, threeAugment: false, colorJitter: 0, randAugment: 'rand-m6-mstd0.5-inc1', cropPct: 0.95, loss: 'bce', bceTargetThreshold: 0.2, mixup: 0.1, cutmix: 1,
    });
    // The 192-px ViT-B: a 12x12 grid, its position embedding sized for it (ViT-S here, the same rule, a smaller model).
    const small = createModel('vit_small_patch16_224', { imageSize: 192, numClasses: 3 }) as VisionTransformer;
    assert.deepEqual(small.posEmbed.shape, [1, 145, 384]);
    small.dispose();
    assert.throws(() => buildConfig({ flags: { ...folder, model: 'vit_small_patch16_224', imageSize: 200 } }), /takes 224x224 images but image-size is 200 nor a multiple of its 16-px patch/);
    assert.throws(() => buildConfig({ flags: { ...folder, model: 'swin_micro_patch2_window7_28', imageSize: 32 } }), /takes 28x28 images but image-size is 32/);
    assert.throws(() => buildConfig({ flags: { ...folder, model: 'vit_micro', evalImageSize: 35 } }), /eval-image-size 35 differs from the training size 28, but vit_micro \(ViT\) is built for one image size; train, then fine-tune .*--init/);
    assert.throws(() => buildConfig({ flags: { dataset: 'synthetic', evalImageSize: 32 } }), /eval-image-size applies only to --dataset folder/);
    assert.throws(() => buildConfig({ flags: { optimizer: 'sgd', optEps: 1e-8 } }), /opt-eps 1e-8 applies only to adamw and lamb/);
    // A CNN trains on 16-px crops and is evaluated on 24-px center crops.
    const config = buildConfig({ flags: { ...flags, evalImageSize: 24 } });
    const [trainSplit, testSplit] = [await loadSplit(config, 'train', null, null), await loadSplit(config, 'test', null, null)];
    assert.deepEqual([trainSplit.height, testSplit.height, testSplit.width], [16, 24, 24]);
  });

  test('a run records the class map, learns the colours, and a resumed run ends with the same weights', async () => {
    const before = snapshot(data);
    const straight = join(root, 'run-straight');
    const result = await train(buildConfig({ flags }), { out: straight, log: quiet });
    const stored = JSON.parse((await import('node:fs')).readFileSync(join(straight, 'config.json'), 'utf8')) as { classes: string[] };
    assert.deepEqual(stored.classes, ['ant', 'bee', 'cat']);
    // Two validation images of two colours, which 20 SGD steps teach a small ResNet to tell apart.
    assert.equal(result.history.length, 10);
    assert.equal(result.history[9]!.test_acc1, 100, `test top-1 by epoch: ${result.history.map((row) => row.test_acc1).join(', ')}`);
    const resumed = join(root, 'run-resumed');
    await train(buildConfig({ flags }), { out: resumed, log: quiet, stopAfterEpochs: 4 });
    await train(buildConfig({ flags }), { out: resumed, resume: true, log: quiet });
    const a = loadSafetensors(join(straight, 'model.safetensors')).tensors;
    const b = loadSafetensors(join(resumed, 'model.safetensors')).tensors;
    for (const [name, tensor] of a) {
      assert.deepEqual(tensor.toArray(), b.get(name)!.toArray(), `${name} differs after resume`);
    }
    for (const tensor of [...a.values(), ...b.values()]) tensor.dispose();
    assert.deepEqual(snapshot(data), before, 'training wrote into the data directory');
  });

  test('the two-run DeiT-III recipe on a small ViT: 14 px with repeated augmentation 3, uniform drop-path and LAMB eps 1e-8 (resumed to the same weights), then --init at 28 px', async () => {
    const first = { ...flags, model: 'vit_micro', imageSize: 14, epochs: 3, optimizer: 'lamb', lr: 2e-3, optEps: 1e-8, repeatedAug: 3, dropPath: 0.1, dropPathSchedule: 'uniform' };
    const straight = join(root, 'deit3-straight');
    await train(buildConfig({ flags: first }), { out: straight, log: quiet });
    const stored = JSON.parse((await import('node:fs')).readFileSync(join(straight, 'config.json'), 'utf8')) as Record<string, unknown>;
    assert.deepEqual([stored.repeated_aug, stored.opt_eps, stored.drop_path_schedule, stored.image_size], [3, 1e-8, 'uniform', 14]);
    const resumed = join(root, 'deit3-resumed');
    await train(buildConfig({ flags: first }), { out: resumed, log: quiet, stopAfterEpochs: 1 });
    await train(buildConfig({ flags: first }), { out: resumed, resume: true, log: quiet });
    const a = loadSafetensors(join(straight, 'model.safetensors')).tensors;
    const b = loadSafetensors(join(resumed, 'model.safetensors')).tensors;
    assert.deepEqual(a.get('pos_embed')!.shape, [1, 5, 64]);
    for (const [name, tensor] of a) assert.deepEqual(tensor.toArray(), b.get(name)!.toArray(), `${name} differs after resume`);
    for (const tensor of [...a.values(), ...b.values()]) tensor.dispose();
    // opt-eps reached LAMB: its constants are stored with the optimizer state.
    const checkpoint = loadCheckpoint(join(straight, CHECKPOINT_FILE));
    assert.equal(checkpoint.optimizer.scalars.kind, 'lamb');
    assert.equal(checkpoint.optimizer.scalars.hyperparameters.eps, 1e-8);
    for (const tensor of [...checkpoint.model.values(), ...checkpoint.optimizer.tensors.values(), checkpoint.rngState]) tensor.dispose();
    // The second run: the 2x2-patch position embedding resampled to the 4x4 grid of 28 px.
    const lines: string[] = [];
    const second = join(root, 'deit3-finetune');
    await train(buildConfig({ flags: { ...flags, model: 'vit_micro', imageSize: 28, epochs: 1, optimizer: 'adamw', lr: 1e-5, init: join(straight, 'model.safetensors') } }), { out: second, log: (line) => lines.push(line) });
    const tuned = loadSafetensors(join(second, 'model.safetensors')).tensors;
    assert.deepEqual(tuned.get('pos_embed')!.shape, [1, 17, 64]);
    for (const tensor of tuned.values()) tensor.dispose();
    assert.ok(lines.some((line) => /pos_embed/.test(line) && /resampl/i.test(line)), `no resampling logged:\n${lines.join('\n')}`);
  });
});

describe('export-images', () => {
  test('a data set written as PNG folders reads back with the same pixels and labels (eval transform at the same size is the identity)', async () => {
    const original = loadDataset('synthetic', { split: 'test', limit: 30 });
    const folder = join(root, 'exported');
    assert.equal(await exportSplit(original, join(folder, 'val')), 30);
    checkExportDirectory(join(root, 'not-there-yet'));
    assert.throws(() => checkExportDirectory(folder), /is not empty/);
    const list = scanImageFolder(join(folder, 'val'));
    assert.deepEqual(list.classes, ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    const read = await loadFolderDataset({ split: 'test', dataDir: folder, list: null, size: 28, cropPercent: 1, interpolation: 'bilinear', classes: list.classes });
    assert.equal(read.count, 30);
    const plane = 28 * 28;
    list.paths.forEach((path, position) => {
      const index = Number(/(\d+)\.png$/.exec(path)![1]);
      assert.equal(read.labels[position], original.labels[index]);
      const expected = original.images.subarray(index * plane, (index + 1) * plane);
      // Grey PNGs decode to three equal channels.
      for (let channel = 0; channel < 3; channel++) {
        assert.deepEqual(read.images.subarray((position * 3 + channel) * plane, (position * 3 + channel + 1) * plane), expected, `${path} channel ${channel}`);
      }
    });
  });

  test('the CLI writes train/ and val/ and refuses a directory that is not empty', () => {
    const out = join(root, 'cli-export');
    const run = (): string => execFileSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'export-images', '--dataset', 'synthetic', '--out', out, '--limit-train', '20', '--limit-test', '10'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    assert.match(run(), /wrote 20 train images of synthetic to .*train\nwrote 10 test images of synthetic to .*val/);
    assert.equal(scanImageFolder(join(out, 'train')).paths.length, 20);
    assert.equal(scanImageFolder(join(out, 'val')).paths.length, 10);
    assert.throws(run, (error: { status: number; stderr: string }) => error.status === 1 && /is not empty; pick a new directory/.test(error.stderr));
  });
});
