// Image folders and file lists as datasets. The training split stays a list of files whose
// images the loader decodes and crops per batch (file-batch.ts), so a folder larger than memory
// trains; the evaluation split (and any subset to evaluate on, such as the probe images) is
// decoded once with the eval transform (resize the shorter side to floor(size / crop_pct), center
// crop) into the in-memory uint8 shape every other dataset has.

import { parseRandAugment } from './randaugment.js';
import { availableParallelism } from 'node:os';
import { balancedPrefixIndices, DATASET_INFO, type FileSource, type ImageDataset, subsetDataset } from './datasets.js';
import { BadImageError, decodeImage } from './decode.js';
import { type ImageFileList, readImageList, scanImageFolder, splitDirectory } from './folder.js';
import { evalResizeCenterCrop, toChannelFirst, type Interpolation } from './transforms.js';

export interface FolderDatasetOptions {
  split: 'train' | 'test';
  /** The ImageFolder root (DIR/train, DIR/val); also the base of relative paths in list files. */
  dataDir: string | null;
  /** A `path,label` list instead of the split's folder. */
  list: string | null;
  /** Class names in label order; when given (the training map, a run's record) they fix the labels. */
  classes?: readonly string[] | null;
  size: number;
  scale?: [number, number];
  ratio?: [number, number];
  interpolation?: Interpolation;
  cropPercent?: number;
  skipBadImages?: boolean;
  /** Decode JPEGs at reduced size when the crop box allows (FileSource.jpegDctScaling). */
  jpegDctScaling?: boolean;
  threeAugment?: boolean;
  colorJitter?: number;
  /** timm's RandAugment spec (rand-m9-mstd0.5-inc1), or null. */
  randAugment?: string | null;
  /** Keep a class-balanced prefix of this many images (datasets.ts' rule). */
  limit?: number;
  /**
   * Normalization constants per channel (default ImageNet's, as timm); RandAugment fills with
   * round(255 * mean), as timm's create_transform does with the data config's mean.
   */
  mean?: readonly number[];
  std?: readonly number[];
}

/** The split's files: from the list when given, else from DIR/train or DIR/val. */
export function listSplit(options: FolderDatasetOptions): ImageFileList {
  const classes = options.classes ?? undefined;
  if (options.list !== null) return readImageList(options.list, { base: options.dataDir ?? undefined, classes });
  if (options.dataDir === null) {
    throw new Error(`folder: no data directory; pass --data-dir DIR with DIR/train/<class>/<images> and DIR/val/<class>/<images>${options.split === 'train' ? ', or --train-list FILE' : ', or --val-list FILE'}`);
  }
  const directory = splitDirectory(options.dataDir, options.split);
  return scanImageFolder(directory, { classes, requireEveryClass: options.split === 'train' && !classes });
}

/**
 * One split of an image folder or list. The training split is returned lazy (`files` set); the
 * evaluation split decoded with the eval transform. Errors name the folder, list or file.
 */
export async function loadFolderDataset(options: FolderDatasetOptions): Promise<ImageDataset> {
  if (!(Number.isInteger(options.size) && options.size >= 8 && options.size <= 4096)) {
    throw new Error(`folder: image size must be an integer in [8, 4096], got ${String(options.size)}`);
  }
  const list = listSplit(options);
  const info = DATASET_INFO.folder;
  const mean = [...(options.mean ?? info.mean)];
  const std = [...(options.std ?? info.std)];
  if (mean.length !== 3 || std.length !== 3 || !mean.every((value) => value >= 0 && value <= 1) || !std.every((value) => value > 0 && value <= 1)) {
    throw new Error(`folder: mean and std need 3 values each (RGB), mean in [0, 1] and std in (0, 1]; got mean ${JSON.stringify(mean)}, std ${JSON.stringify(std)}`);
  }
  const files: FileSource = {
    paths: list.paths,
    classes: list.classes,
    size: options.size,
    scale: options.scale ?? [0.08, 1],
    ratio: options.ratio ?? [3 / 4, 4 / 3],
    interpolation: options.interpolation ?? 'bilinear',
    cropPercent: options.cropPercent ?? 0.875,
    skipBadImages: options.skipBadImages ?? false,
    jpegDctScaling: options.jpegDctScaling ?? false,
    threeAugment: options.threeAugment ?? false,
    colorJitter: options.colorJitter ?? 0,
    randAugment: options.randAugment ? parseRandAugment(options.randAugment) : null,
    fill: mean.map((value) => Math.round(255 * value)),
  };
  let dataset: ImageDataset = {
    name: 'folder', split: options.split, images: new Uint8Array(0), labels: list.labels, count: list.paths.length,
    channels: 3, height: options.size, width: options.size, numClasses: list.classes.length,
    mean, std, source: list.source, files, classes: list.classes,
  };
  if (options.limit !== undefined && options.limit < dataset.count) {
    dataset = subsetDataset(dataset, balancedPrefixIndices(dataset.labels, dataset.numClasses, options.limit));
  }
  return options.split === 'train' ? dataset : decodeForEvaluation(dataset);
}

/** What decoding a file list with the eval transform gave: the dataset and the files skipped. */
export interface DecodedDataset extends ImageDataset {
  badImages?: string[];
}

/**
 * Decodes a file-list dataset with the eval transform into memory (a no-op for an in-memory
 * dataset). Bad images stop with an error naming the file, or are left out and listed in
 * `badImages` when the source says skipBadImages.
 */
export async function decodeForEvaluation(dataset: ImageDataset): Promise<DecodedDataset> {
  const files = dataset.files;
  if (files === undefined) return dataset;
  const sampleSize = 3 * files.size * files.size;
  const pixels = new Uint8Array(dataset.count * sampleSize);
  const kept = new Uint8Array(dataset.count);
  const badImages: string[] = [];
  // sharp decodes on libuv's thread pool; a few more decodes in flight than cores keep it busy.
  const inFlight = Math.max(4, availableParallelism() * 2);
  let next = 0;
  const work = async (): Promise<void> => {
    while (next < dataset.count) {
      const index = next++;
      const path = files.paths[index]!;
      try {
        const image = evalResizeCenterCrop(await decodeImage(path), files.size, files.cropPercent, files.interpolation);
        toChannelFirst(image, pixels, index * sampleSize);
        kept[index] = 1;
      } catch (error) {
        if (!(error instanceof BadImageError)) throw new Error(`image ${path}: ${(error as Error).message}`);
        if (!files.skipBadImages) throw new Error(`${error.message}; pass --skip-bad-images to count and skip such files`);
        badImages.push(path);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(inFlight, dataset.count) }, work));
  const count = dataset.count - badImages.length;
  let images = pixels;
  let labels = dataset.labels;
  if (badImages.length > 0) {
    images = new Uint8Array(count * sampleSize);
    labels = new Int32Array(count);
    let position = 0;
    for (let index = 0; index < dataset.count; index++) {
      if (!kept[index]) continue;
      images.set(pixels.subarray(index * sampleSize, (index + 1) * sampleSize), position * sampleSize);
      labels[position++] = dataset.labels[index]!;
    }
    badImages.sort();
  }
  const { files: _files, ...rest } = dataset;
  return { ...rest, images, labels, count, badImages };
}
