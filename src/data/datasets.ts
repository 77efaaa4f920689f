// Dataset registry: loads Fashion-MNIST, MNIST, CIFAR-10, CIFAR-100 or a generated synthetic set
// into one in-memory shape (uint8 channel-first pixels + int32 labels + normalization constants).
// Image folders ('folder', read by folder-dataset.ts) share the shape, but a training split
// holds the list of files (`files`) instead of pixels: its images are decoded in the loader.
// Emoji ('emoji', emoji.ts) are drawn from Debian's emoji font when loaded, asynchronously.
//
// `limit` keeps a class-balanced prefix, deterministically and without a seed: the samples of each
// class are taken in file order, round-robin over the classes (the first sample of class 0, of
// class 1, ..., then the second of each class, ...) until `limit` samples are chosen; classes that
// run out are skipped. The chosen samples keep their file order. So `limit` = 1000 on a 10-class
// set gives the first 100 images of every class.

import type { RandAugmentConfig } from './randaugment.js';
import { loadCifarSplit, type CifarVariant } from './cifar.js';
import { loadIdxSplit } from './idx.js';
import { deriveSeed, Random } from './random.js';

export type DatasetName = 'fashion-mnist' | 'mnist' | 'cifar10' | 'cifar100' | 'synthetic' | 'folder' | 'emoji';
export type DatasetSplit = 'train' | 'test';

export const DATASET_NAMES: readonly DatasetName[] = ['fashion-mnist', 'mnist', 'cifar10', 'cifar100', 'synthetic', 'folder', 'emoji'];

/**
 * Image files decoded when a batch is built (see folder-dataset.ts): the train transform is
 * RandomResizedCrop to `size` then the loader's flip, erasing and mixup.
 */
export interface FileSource {
  /** Absolute paths; labels are the dataset's `labels`. */
  paths: string[];
  /** Class names in label order. */
  classes: string[];
  /** Output side in pixels. */
  size: number;
  /** RandomResizedCrop's area range (fraction of the image) and aspect-ratio range. */
  scale: [number, number];
  ratio: [number, number];
  interpolation: 'bilinear' | 'bicubic';
  /** The eval transform's crop_pct (resize the shorter side to floor(size / cropPercent)). */
  cropPercent: number;
  /** Count and skip an image that cannot be decoded, instead of stopping with an error naming it. */
  skipBadImages: boolean;
  /**
   * Decode a JPEG at 1/2, 1/4 or 1/8 size when its crop box is at least twice the output on both
   * sides (native image module only; changes the bytes slightly, see file-batch.ts). Default false.
   */
  jpegDctScaling?: boolean;
  /** DeiT-III's 3-Augment after the crop and flip (color.ts). */
  threeAugment: boolean;
  /** ColorJitter strength after that (0: none). */
  colorJitter: number;
  /** timm's RandAugment after the crop and flip (randaugment.ts), or null. */
  randAugment: RandAugmentConfig | null;
  /** Pixel value that geometric augmentations fill with: round(255 * mean) per channel, as timm. */
  fill: number[];
}

export interface ImageDataset {
  name: string;
  split: string;
  images: Uint8Array; // count * channels * height * width, uint8 pixels, channel-first
  labels: Int32Array;
  count: number;
  channels: number;
  height: number;
  width: number;
  numClasses: number;
  mean: number[]; // per channel, in [0, 1] pixel units
  std: number[];
  source: string; // the path (or generator description) the data came from
  /** Set for image files decoded in the loader; `images` is then empty. */
  files?: FileSource;
  /** Class names in label order, where the data names its classes (folders, lists). */
  classes?: string[];
}

export interface LoadDatasetOptions {
  dataDir?: string;
  split: DatasetSplit;
  /** Keep a class-balanced prefix of this many samples (see the module comment). */
  limit?: number;
}

export interface DatasetInfo {
  channels: number;
  height: number;
  width: number;
  numClasses: number;
  mean: number[];
  std: number[];
  defaultDataDir: string | null;
  /** Class names in label order, for a data set whose classes are fixed and named (emoji's groups). */
  classes?: readonly string[];
}

export const DEFAULT_FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';
export const DEFAULT_MNIST_DIR = '/usr/share/datasets/mnist';

/** Static facts about each dataset (shapes, class count, normalization constants). */
export const DATASET_INFO: Record<DatasetName, DatasetInfo> = {
  // Image folders: size and classes come from the settings and the folder; ImageNet's mean and std,
  // as timm and torchvision use for any photo data set.
  folder: {
    channels: 3, height: 224, width: 224, numClasses: 0,
    mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], defaultDataDir: null,
  },
  'fashion-mnist': {
    channels: 1, height: 28, width: 28, numClasses: 10,
    mean: [0.286], std: [0.353], defaultDataDir: DEFAULT_FASHION_MNIST_DIR,
  },
  mnist: {
    channels: 1, height: 28, width: 28, numClasses: 10,
    mean: [0.1307], std: [0.3081], defaultDataDir: DEFAULT_MNIST_DIR,
  },
  cifar10: {
    channels: 3, height: 32, width: 32, numClasses: 10,
    mean: [0.4914, 0.4822, 0.4465], std: [0.247, 0.2435, 0.2616], defaultDataDir: null,
  },
  cifar100: {
    channels: 3, height: 32, width: 32, numClasses: 100,
    mean: [0.5071, 0.4865, 0.4409], std: [0.2673, 0.2564, 0.2762], defaultDataDir: null,
  },
  // Drawn at --image-size (default 32). Mean and std measured on the training split at 32 px
  // (0.8231 0.7781 0.7397 / 0.2749 0.2855 0.3305: white dominates).
  emoji: {
    channels: 3, height: 32, width: 32, numClasses: 9,
    mean: [0.823, 0.778, 0.740], std: [0.275, 0.286, 0.331], defaultDataDir: null,
    // The groups of emoji-test.txt (Unicode 15.0) but Component, in file order.
    classes: ['Smileys & Emotion', 'People & Body', 'Animals & Nature', 'Food & Drink', 'Travel & Places', 'Activities', 'Objects', 'Symbols', 'Flags'],
  },
  // Measured on the generated training split (0.24995 and 0.32755), rounded like the others.
  synthetic: {
    channels: 1, height: 28, width: 28, numClasses: 10,
    mean: [0.25], std: [0.3276], defaultDataDir: null,
  },
};

/** Sizes of the generated synthetic splits. */
export const SYNTHETIC_COUNTS: Record<DatasetSplit, number> = { train: 10000, test: 2000 };
const SYNTHETIC_SEED = 20240501;

/** What to tell the user when the data directory of an IDX dataset is missing. */
export function missingDataHint(name: 'fashion-mnist' | 'mnist', usedDefaultDirectory: boolean): string {
  if (name === 'fashion-mnist') {
    return usedDefaultDirectory
      ? 'install it with `apt-get install dataset-fashion-mnist`, or pass --data-dir pointing to the four Fashion-MNIST IDX files'
      : 'pass --data-dir pointing to the four Fashion-MNIST IDX files (the Debian package dataset-fashion-mnist installs them in /usr/share/datasets/fashion-mnist)';
  }
  return 'pass --data-dir pointing to a directory with the four MNIST IDX files (train-images-idx3-ubyte[.gz], ' +
    'train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz])';
}

/** Whether a string names a dataset of the registry. */
export function isDatasetName(name: string): name is DatasetName {
  return (DATASET_NAMES as readonly string[]).includes(name);
}

/** Loads one split of a dataset. Every failure is an Error naming the dataset and the problem. */
export function loadDataset(name: DatasetName, options: LoadDatasetOptions): ImageDataset {
  if (!isDatasetName(name)) {
    throw new Error(`dataset: unknown dataset '${String(name)}'; known: ${DATASET_NAMES.join(', ')}`);
  }
  if (options.split !== 'train' && options.split !== 'test') {
    throw new Error(`${name}: unknown split '${String(options.split)}'; expected 'train' or 'test'`);
  }
  if (options.limit !== undefined && (!Number.isInteger(options.limit) || options.limit < 1)) {
    throw new Error(`${name}: limit must be a positive integer, got ${String(options.limit)}`);
  }
  const info = DATASET_INFO[name];
  const base = {
    name,
    split: options.split,
    channels: info.channels,
    height: info.height,
    width: info.width,
    numClasses: info.numClasses,
    mean: [...info.mean],
    std: [...info.std],
  };
  switch (name) {
    case 'folder':
      throw new Error('folder: image folders are read asynchronously; use loadFolderDataset (src/data/folder-dataset.ts)');
    case 'emoji':
      throw new Error('emoji: emoji are drawn asynchronously; use loadEmojiDataset (src/data/emoji.ts)');
    case 'fashion-mnist':
    case 'mnist': {
      const directory = options.dataDir ?? info.defaultDataDir!;
      const hint = missingDataHint(name, options.dataDir === undefined);
      const split = loadIdxSplit(directory, options.split, {
        label: name,
        numClasses: info.numClasses,
        missingHint: hint,
        expectedSize: { height: info.height, width: info.width },
      });
      return applyLimit(
        { ...base, images: split.images, labels: split.labels, count: split.count, source: split.imagesPath },
        options.limit,
      );
    }
    case 'cifar10':
    case 'cifar100': {
      if (options.dataDir === undefined) {
        const archive = name === 'cifar10' ? 'CIFAR-10 binary version (cifar-10-batches-bin)' : 'CIFAR-100 binary version (cifar-100-binary)';
        throw new Error(`${name}: no data directory; pass --data-dir pointing to the extracted ${archive}`);
      }
      const split = loadCifarSplit(name as CifarVariant, options.dataDir, options.split);
      return applyLimit(
        { ...base, images: split.images, labels: split.labels, count: split.count, source: split.directory },
        options.limit,
      );
    }
    case 'synthetic': {
      const total = SYNTHETIC_COUNTS[options.split];
      // Labels cycle 0..9 in file order, so the class-balanced prefix is exactly the first `limit`
      // samples and only those need generating.
      const count = Math.min(total, options.limit ?? total);
      const { images, labels } = generateSynthetic(options.split, count);
      return {
        ...base,
        images,
        labels,
        count,
        source: `synthetic(seed=${SYNTHETIC_SEED}, split=${options.split}, ${total} samples)`,
      };
    }
  }
}

/** Indices of the class-balanced prefix described in the module comment. */
export function balancedPrefixIndices(labels: Int32Array, numClasses: number, limit: number): Int32Array {
  if (limit >= labels.length) return Int32Array.from({ length: labels.length }, (_, index) => index);
  const perClass: number[][] = Array.from({ length: numClasses }, () => []);
  for (let index = 0; index < labels.length; index++) perClass[labels[index]!]!.push(index);
  const chosen: number[] = [];
  for (let round = 0; chosen.length < limit; round++) {
    for (let label = 0; label < numClasses && chosen.length < limit; label++) {
      const members = perClass[label]!;
      if (round < members.length) chosen.push(members[round]!);
    }
  }
  chosen.sort((a, b) => a - b);
  return Int32Array.from(chosen);
}

/** Returns a dataset restricted to `limit` samples (see the module comment); no-op without a limit. */
export function applyLimit(dataset: ImageDataset, limit: number | undefined): ImageDataset {
  if (limit === undefined || limit >= dataset.count) return dataset;
  const indices = balancedPrefixIndices(dataset.labels, dataset.numClasses, limit);
  return subsetDataset(dataset, indices);
}

/** A new dataset holding the given samples (copied) in the given order. */
export function subsetDataset(dataset: ImageDataset, indices: Int32Array): ImageDataset {
  if (dataset.files !== undefined) {
    const files = dataset.files;
    const paths = Array.from(indices, (index) => {
      if (!(index >= 0 && index < dataset.count)) throw new Error(`${dataset.name}: subset index ${index} is out of range 0..${dataset.count - 1}`);
      return files.paths[index]!;
    });
    return { ...dataset, labels: Int32Array.from(indices, (index) => dataset.labels[index]!), count: indices.length, files: { ...files, paths } };
  }
  const sampleSize = dataset.channels * dataset.height * dataset.width;
  const images = new Uint8Array(indices.length * sampleSize);
  const labels = new Int32Array(indices.length);
  for (let position = 0; position < indices.length; position++) {
    const index = indices[position]!;
    if (!(index >= 0 && index < dataset.count)) {
      throw new Error(`${dataset.name}: subset index ${index} is out of range 0..${dataset.count - 1}`);
    }
    images.set(dataset.images.subarray(index * sampleSize, (index + 1) * sampleSize), position * sampleSize);
    labels[position] = dataset.labels[index]!;
  }
  return { ...dataset, images, labels, count: indices.length };
}

/**
 * Intensity in [0, 1] of class `label`'s pattern at (x, y), coordinates relative to the (shifted)
 * image centre. Ten visually distinct shapes and textures confined to a 21x21 window, so a small
 * network learns them in an epoch while the random shift, contrast and noise keep it from being
 * trivial.
 */
function syntheticPattern(label: number, x: number, y: number): number {
  const inside = Math.abs(x) <= 10 && Math.abs(y) <= 10;
  if (!inside) return 0;
  const radius = Math.sqrt(x * x + y * y);
  const mod = (value: number, divisor: number): number => ((value % divisor) + divisor) % divisor;
  switch (label) {
    case 0: return mod(y, 6) < 3 ? 1 : 0; // horizontal stripes
    case 1: return mod(x, 6) < 3 ? 1 : 0; // vertical stripes
    case 2: return mod(x + y, 8) < 4 ? 1 : 0; // diagonal stripes
    case 3: return mod(x - y, 8) < 4 ? 1 : 0; // anti-diagonal stripes
    case 4: return radius <= 7 ? 1 : 0; // disc
    case 5: return radius >= 6 && radius <= 9 ? 1 : 0; // ring
    case 6: return Math.max(Math.abs(x), Math.abs(y)) >= 7 && Math.max(Math.abs(x), Math.abs(y)) <= 9 ? 1 : 0; // square outline
    case 7: return Math.abs(x) <= 1 || Math.abs(y) <= 1 ? 1 : 0; // plus
    case 8: return Math.abs(Math.abs(x) - Math.abs(y)) <= 1 ? 1 : 0; // X
    default: return mod(Math.floor(x / 4) + Math.floor(y / 4), 2) === 0 ? 1 : 0; // checkerboard
  }
}

/** Pattern tables of every class on a 42x42 canvas centred at (21, 21), built once on first use. */
let patternTables: Float32Array[] | null = null;
const CANVAS = 42;

function syntheticTables(): Float32Array[] {
  if (patternTables === null) {
    patternTables = Array.from({ length: 10 }, (_, label) => {
      const table = new Float32Array(CANVAS * CANVAS);
      for (let row = 0; row < CANVAS; row++) {
        for (let column = 0; column < CANVAS; column++) table[row * CANVAS + column] = syntheticPattern(label, column - 21, row - 21);
      }
      return table;
    });
  }
  return patternTables;
}

/** Generates the first `count` samples of a synthetic split; sample i depends only on (split, i). */
export function generateSynthetic(split: DatasetSplit, count: number): { images: Uint8Array; labels: Int32Array } {
  const size = 28;
  const images = new Uint8Array(count * size * size);
  const labels = new Int32Array(count);
  const splitId = split === 'train' ? 0 : 1;
  const tables = syntheticTables();
  for (let index = 0; index < count; index++) {
    const label = index % 10;
    labels[index] = label;
    const random = new Random(deriveSeed(SYNTHETIC_SEED, splitId, index));
    const shiftX = random.int(7) - 3;
    const shiftY = random.int(7) - 3;
    const contrast = random.uniform(0.55, 1);
    const background = random.uniform(0, 0.12);
    const table = tables[label]!;
    const start = index * size * size;
    for (let row = 0; row < size; row++) {
      // Pixel (row, column) shows the pattern at (column - 14 - shiftX, row - 14 - shiftY).
      const tableRow = (row - 14 - shiftY + 21) * CANVAS - 14 - shiftX + 21;
      for (let column = 0; column < size; column++) {
        // Triangular noise (sum of two uniforms, std 0.1) is much cheaper than Gaussian noise and
        // serves the same purpose here.
        const noise = (random.next() + random.next() - 1) * 0.245;
        const value = (background + contrast * table[tableRow + column]! + noise) * 255;
        images[start + row * size + column] = value <= 0 ? 0 : value >= 255 ? 255 : Math.round(value);
      }
    }
  }
  return { images, labels };
}
