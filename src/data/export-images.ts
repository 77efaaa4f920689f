// Writes an in-memory dataset (Fashion-MNIST, MNIST, CIFAR, synthetic, emoji) out as an image folder of
// PNG files, DIR/train/<class>/<index>.png and DIR/val/<class>/<index>.png, so that the folder
// path can be tried, and compared with the array path, on data that is already on the machine.
// Class folders are named NN-name, so that their sorted order is the original label order.

import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import type { ImageDataset } from './datasets.js';

const CLASS_NAMES: Record<string, readonly string[]> = {
  'fashion-mnist': ['t-shirt', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker', 'bag', 'ankle-boot'],
  cifar10: ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'],
};

/** Folder names of a dataset's classes, zero-padded so that sorting keeps the label order. */
export function classFolderNames(dataset: Pick<ImageDataset, 'name' | 'numClasses' | 'classes'>): string[] {
  const digits = String(dataset.numClasses - 1).length;
  // A data set that names its classes (emoji: 'Smileys & Emotion' -> smileys-emotion) gets them as file-name-safe words.
  const names = CLASS_NAMES[dataset.name] ?? dataset.classes?.map((name) => name.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, ''));
  return Array.from({ length: dataset.numClasses }, (_, label) => {
    const number = String(label).padStart(digits, '0');
    return names ? `${number}-${names[label]}` : number;
  });
}

/** Refuses to write into a directory that holds anything: an export never mixes with other files. */
export function checkExportDirectory(directory: string): void {
  if (existsSync(directory) && readdirSync(directory).length > 0) {
    throw new Error(`export-images: ${directory} is not empty; pick a new directory (nothing is overwritten)`);
  }
}

/** Writes one split as PNG files below `directory`/<class>/; returns the number of files written. */
export async function exportSplit(dataset: ImageDataset, directory: string): Promise<number> {
  if (dataset.files !== undefined) throw new Error('export-images: the dataset is already image files');
  const folders = classFolderNames(dataset);
  for (const folder of folders) mkdirSync(join(directory, folder), { recursive: true });
  const { channels, height, width } = dataset;
  const plane = height * width;
  const digits = String(dataset.count - 1).length;
  let next = 0;
  const work = async (): Promise<void> => {
    while (next < dataset.count) {
      const index = next++;
      // Channel-first to the interleaved layout encoders take.
      const pixels = Buffer.alloc(plane * channels);
      const start = index * plane * channels;
      for (let pixel = 0; pixel < plane; pixel++) {
        for (let channel = 0; channel < channels; channel++) pixels[pixel * channels + channel] = dataset.images[start + channel * plane + pixel]!;
      }
      const path = join(directory, folders[dataset.labels[index]!]!, `${String(index).padStart(digits, '0')}.png`);
      await sharp(pixels, { raw: { width, height, channels: channels as 1 | 3 } }).png().toFile(path);
    }
  };
  await Promise.all(Array.from({ length: Math.min(8, dataset.count) }, work));
  return dataset.count;
}
