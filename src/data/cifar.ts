// Readers for the binary versions of CIFAR-10 and CIFAR-100.
//
// CIFAR-10 (cifar-10-batches-bin/): data_batch_1.bin .. data_batch_5.bin and test_batch.bin, each a
// sequence of 3073-byte records: 1 label byte then 3072 pixel bytes (1024 red, 1024 green, 1024
// blue, each 32x32 row-major), so the pixels are already channel-first.
// CIFAR-100 (cifar-100-binary/): train.bin and test.bin, 3074-byte records: coarse label (0..19),
// fine label (0..99), 3072 pixel bytes. We train on the fine label.

import { join } from 'node:path';
import { isDirectory, isFile, readWholeFile } from './files.js';

export type CifarVariant = 'cifar10' | 'cifar100';

export const CIFAR_PIXELS = 3 * 32 * 32;

export interface CifarLayout {
  recordBytes: number;
  labelBytes: number;
  numClasses: number;
  /** Number of classes of each label byte, in record order (CIFAR-100: coarse then fine). */
  labelRanges: number[];
  /** Which label byte is the training label. */
  labelIndex: number;
  /** The directory the archive unpacks to, accepted as a subdirectory of --data-dir. */
  archiveDirectory: string;
  files: { train: string[]; test: string[] };
}

export const CIFAR_LAYOUTS: Record<CifarVariant, CifarLayout> = {
  cifar10: {
    recordBytes: 1 + CIFAR_PIXELS,
    labelBytes: 1,
    numClasses: 10,
    labelRanges: [10],
    labelIndex: 0,
    archiveDirectory: 'cifar-10-batches-bin',
    files: {
      train: ['data_batch_1.bin', 'data_batch_2.bin', 'data_batch_3.bin', 'data_batch_4.bin', 'data_batch_5.bin'],
      test: ['test_batch.bin'],
    },
  },
  cifar100: {
    recordBytes: 2 + CIFAR_PIXELS,
    labelBytes: 2,
    numClasses: 100,
    labelRanges: [20, 100],
    labelIndex: 1,
    archiveDirectory: 'cifar-100-binary',
    files: { train: ['train.bin'], test: ['test.bin'] },
  },
};

export interface CifarRecords {
  images: Uint8Array; // count * 3 * 32 * 32, channel-first
  labels: Int32Array;
  count: number;
}

/** Parses the records of one CIFAR binary file. */
export function parseCifarRecords(bytes: Uint8Array, variant: CifarVariant, source: string): CifarRecords {
  const layout = CIFAR_LAYOUTS[variant];
  if (bytes.length === 0) throw new Error(`${variant}: ${source}: file is empty (0 bytes); it holds no images`);
  if (bytes.length % layout.recordBytes !== 0) {
    const whole = Math.floor(bytes.length / layout.recordBytes);
    throw new Error(
      `${variant}: ${source}: file size ${bytes.length} is not a multiple of the ${layout.recordBytes}-byte record ` +
        `(${whole} whole records and ${bytes.length - whole * layout.recordBytes} extra bytes); the file is truncated or not a CIFAR binary file`,
    );
  }
  const count = bytes.length / layout.recordBytes;
  const images = new Uint8Array(count * CIFAR_PIXELS);
  const labels = new Int32Array(count);
  for (let record = 0; record < count; record++) {
    const start = record * layout.recordBytes;
    for (let labelByte = 0; labelByte < layout.labelBytes; labelByte++) {
      const value = bytes[start + labelByte]!;
      const range = layout.labelRanges[labelByte]!;
      if (value >= range) {
        const which = layout.labelBytes === 1 ? 'label' : labelByte === 0 ? 'coarse label' : 'fine label';
        throw new Error(`${variant}: ${source}: ${which} ${value} of record ${record} is out of range 0..${range - 1}`);
      }
    }
    labels[record] = bytes[start + layout.labelIndex]!;
    images.set(bytes.subarray(start + layout.labelBytes, start + layout.recordBytes), record * CIFAR_PIXELS);
  }
  return { images, labels, count };
}

/**
 * Finds the directory holding the CIFAR files: `dataDir` itself or its archive subdirectory
 * (cifar-10-batches-bin / cifar-100-binary).
 */
export function resolveCifarDirectory(variant: CifarVariant, dataDir: string): string {
  const layout = CIFAR_LAYOUTS[variant];
  if (!isDirectory(dataDir)) {
    throw new Error(`${variant}: data directory ${dataDir} does not exist or is not a directory`);
  }
  const probe = layout.files.test[0]!;
  for (const candidate of [dataDir, join(dataDir, layout.archiveDirectory)]) {
    if (isFile(join(candidate, probe))) return candidate;
  }
  const nested = join(dataDir, layout.archiveDirectory);
  return isDirectory(nested) ? nested : dataDir;
}

/** Loads one split of CIFAR-10/100 from `dataDir` (or its archive subdirectory). */
export function loadCifarSplit(
  variant: CifarVariant,
  dataDir: string,
  split: 'train' | 'test',
): CifarRecords & { sources: string[]; directory: string } {
  const layout = CIFAR_LAYOUTS[variant];
  const directory = resolveCifarDirectory(variant, dataDir);
  const parts: CifarRecords[] = [];
  const sources: string[] = [];
  for (const name of layout.files[split]) {
    const path = join(directory, name);
    if (!isFile(path)) {
      throw new Error(
        `${variant}: ${directory}: missing file ${name} (expected the binary version: ${layout.files[split].join(', ')})`,
      );
    }
    parts.push(parseCifarRecords(readWholeFile(variant, path), variant, path));
    sources.push(path);
  }
  if (parts.length === 1) return { ...parts[0]!, sources, directory };
  const count = parts.reduce((sum, part) => sum + part.count, 0);
  const images = new Uint8Array(count * CIFAR_PIXELS);
  const labels = new Int32Array(count);
  let offset = 0;
  for (const part of parts) {
    images.set(part.images, offset * CIFAR_PIXELS);
    labels.set(part.labels, offset);
    offset += part.count;
  }
  return { images, labels, count, sources, directory };
}
