// Reader for the IDX files of MNIST and Fashion-MNIST (raw or gzip-compressed).
//
// IDX layout (big-endian): two zero bytes, a type code (0x08 = unsigned byte), the number of
// dimensions, one uint32 per dimension, then the data. Images are 0x00000803 (N x rows x cols) and
// labels 0x00000801 (N). Every header number is checked against the file before it is used, so a
// damaged or truncated file gives an Error naming the file, never a wrong dataset or a crash.

import { join } from 'node:path';
import { gunzipOrExplain, isDirectory, isFile, isGzip, readMaybeGzip } from './files.js';

export const IDX_IMAGES_MAGIC = 0x00000803;
export const IDX_LABELS_MAGIC = 0x00000801;

/** A parsed IDX array of unsigned bytes. */
export interface IdxArray {
  dims: number[];
  data: Uint8Array;
}

/** Images and labels of one split of an IDX dataset. */
export interface IdxSplit {
  images: Uint8Array; // count * height * width
  labels: Int32Array;
  count: number;
  height: number;
  width: number;
  imagesPath: string;
  labelsPath: string;
}

function hex32(value: number): string {
  return `0x${(value >>> 0).toString(16).padStart(8, '0')}`;
}

/**
 * Parses the bytes of one IDX file (already decompressed). `kind` selects which magic number is
 * required; `label` and `source` go into error messages.
 */
export function parseIdx(bytes: Uint8Array, kind: 'images' | 'labels', label: string, source: string): IdxArray {
  const expectedMagic = kind === 'images' ? IDX_IMAGES_MAGIC : IDX_LABELS_MAGIC;
  if (bytes.length < 4) {
    throw new Error(`${label}: ${source}: file is ${bytes.length} bytes, too short for an IDX header (needs at least 4)`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint32(0, false);
  if (magic !== expectedMagic) {
    throw new Error(
      `${label}: ${source}: wrong IDX magic number ${hex32(magic)}, expected ${hex32(expectedMagic)} for ${kind}`,
    );
  }
  const rank = magic & 0xff;
  const headerBytes = 4 + 4 * rank;
  if (bytes.length < headerBytes) {
    throw new Error(
      `${label}: ${source}: truncated IDX header: ${bytes.length} bytes, expected at least ${headerBytes} for ${rank} dimensions`,
    );
  }
  const dims: number[] = [];
  for (let axis = 0; axis < rank; axis++) dims.push(view.getUint32(4 + 4 * axis, false));
  // Products of up to three uint32 values stay exact enough in doubles to compare with a file size:
  // any product above 2^53 cannot equal the byte count of a file we could have read.
  const expectedData = dims.reduce((product, size) => product * size, 1);
  const actualData = bytes.length - headerBytes;
  if (expectedData !== actualData) {
    const what = actualData < expectedData ? 'truncated' : 'has trailing bytes';
    throw new Error(
      `${label}: ${source}: ${what}: dimensions ${dims.join('x')} need ${headerBytes} + ${expectedData} bytes, ` +
        `the file has ${bytes.length} (${headerBytes} + ${actualData})`,
    );
  }
  return { dims, data: bytes.subarray(headerBytes) };
}

/** Parses IDX bytes that may still be gzip-compressed (detected by the magic number 1f 8b). */
export function parseIdxMaybeGzip(bytes: Uint8Array, kind: 'images' | 'labels', label: string, source: string): IdxArray {
  return parseIdx(isGzip(bytes) ? gunzipOrExplain(label, source, bytes) : bytes, kind, label, source);
}

/** Reads and parses one IDX file (gzip detected by its magic number). */
export function readIdxFile(path: string, kind: 'images' | 'labels', label: string): IdxArray {
  return parseIdx(readMaybeGzip(label, path), kind, label, path);
}

/**
 * Combines an image array and a label array into a split, checking that they agree and that every
 * label is below `numClasses`.
 */
export function combineIdx(
  images: IdxArray,
  labels: IdxArray,
  numClasses: number,
  label: string,
  imagesPath: string,
  labelsPath: string,
  expectedSize?: { height: number; width: number },
): IdxSplit {
  const [count, height, width] = images.dims as [number, number, number];
  if (count === 0) throw new Error(`${label}: ${imagesPath}: the file holds no images (count 0 in its header)`);
  if (height === 0 || width === 0) {
    throw new Error(`${label}: ${imagesPath}: images have an empty size ${height}x${width}`);
  }
  if (expectedSize !== undefined && (height !== expectedSize.height || width !== expectedSize.width)) {
    throw new Error(
      `${label}: ${imagesPath}: images are ${height}x${width}, expected ${expectedSize.height}x${expectedSize.width}`,
    );
  }
  const labelCount = labels.dims[0]!;
  if (labelCount !== count) {
    throw new Error(
      `${label}: ${labelsPath}: ${labelCount} labels but ${imagesPath} has ${count} images; the counts must match`,
    );
  }
  const out = new Int32Array(count);
  for (let index = 0; index < count; index++) {
    const value = labels.data[index]!;
    if (value >= numClasses) {
      throw new Error(`${label}: ${labelsPath}: label ${value} at index ${index} is out of range 0..${numClasses - 1}`);
    }
    out[index] = value;
  }
  return { images: images.data, labels: out, count, height, width, imagesPath, labelsPath };
}

/** The base names of the four IDX files of (Fashion-)MNIST. */
export const IDX_FILE_NAMES = {
  train: { images: 'train-images-idx3-ubyte', labels: 'train-labels-idx1-ubyte' },
  test: { images: 't10k-images-idx3-ubyte', labels: 't10k-labels-idx1-ubyte' },
} as const;

/** Finds `name` or `name.gz` in a directory; the error lists both names that were tried. */
export function findIdxFile(directory: string, baseName: string, label: string): string {
  for (const candidate of [join(directory, baseName), join(directory, `${baseName}.gz`)]) {
    if (isFile(candidate)) return candidate;
  }
  throw new Error(`${label}: ${directory}: missing file ${baseName} (looked for ${baseName} and ${baseName}.gz)`);
}

/**
 * Loads one split of an IDX dataset directory. `missingHint` is appended when the directory does
 * not exist (for example how to install the dataset).
 */
export function loadIdxSplit(
  directory: string,
  split: 'train' | 'test',
  options: { label: string; numClasses: number; missingHint: string; expectedSize?: { height: number; width: number } },
): IdxSplit {
  const { label } = options;
  if (!isDirectory(directory)) {
    throw new Error(`${label}: data directory ${directory} does not exist or is not a directory; ${options.missingHint}`);
  }
  const names = IDX_FILE_NAMES[split];
  const imagesPath = findIdxFile(directory, names.images, label);
  const labelsPath = findIdxFile(directory, names.labels, label);
  const images = readIdxFile(imagesPath, 'images', label);
  const labels = readIdxFile(labelsPath, 'labels', label);
  return combineIdx(images, labels, options.numClasses, label, imagesPath, labelsPath, options.expectedSize);
}
