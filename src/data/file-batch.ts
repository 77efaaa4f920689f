// Builds a training batch of an image-file dataset: decode each file, RandomResizedCrop to the
// output size, flip, into uint8 pixels; the erasing boxes and the mix decision are drawn as for
// in-memory data (batch.ts), and normalizing, erasing and mixing happen on the training device.
//
// Decoding: a JPEG goes through the native image module when it loaded (native-image.ts): only
// the crop box's rows and columns (plus a 16-px margin, so the bytes are the full decode's) are
// decoded by libjpeg-turbo, and the box is resampled in C++ (transforms.ts' bytes). Everything
// else (PNG, WebP, CMYK JPEGs, a JPEG libjpeg rejects, no native module) is decoded by sharp and
// resampled in JavaScript. Both paths give the same bytes: sharp's JPEG decoder is libjpeg-turbo's
// (mozjpeg) with the same IDCT and upsampling (test/native-image.test.ts).
// RandAugment, 3-Augment and color jitter run in C++ with the module too, in one call that writes
// the batch layout (their draws stay in JavaScript; the same bytes, test/randaugment-native.test.ts
// and test/color-native.test.ts).
//
// Random streams: the crop and flip (and 3-Augment and color jitter, when set) of sample s in
// epoch e come from deriveSeed(seed, e, 2, s),
// a stream of its own, so they do not depend on which thread or in which order the images are
// decoded, nor on the batch the sample lands in; erasing uses the sample's stream
// deriveSeed(seed, e, 1, s) and mixup the batch's deriveSeed(seed, e, 3, b), as batch.ts does. A
// batch is therefore a function of (seed, epoch, batch index), and a resumed run, another worker
// count or another number of data-parallel ranks gives the same bytes.

import { readFile } from 'node:fs/promises';
import { drawErasingBox, type ErasedBox } from './augment.js';
import { type Batch, type BatchRecipe, epochBatchIndex, erasingSeed, finishRecipe, type LoaderData, positionSeed, sampleRandom } from './batch.js';
import { BadImageError, decodeImage } from './decode.js';
import type { FileSource } from './datasets.js';
import { deriveSeed, Random } from './random.js';
import { applyThreeAugment, colorJitter, colorJitterParameters, drawThreeAugment } from './color.js';
import { applyRandAugmentSteps, randAugmentSteps } from './randaugment.js';
import { isJpeg, nativeAugment, nativeImage, nativeResampleBox, REGION_MARGIN } from './native-image.js';
import { type Box, type RawImage, randomResizedCropBox, type ResampleOutput, resizedCrop, toChannelFirst } from './transforms.js';

/** A batch of decoded files, with the files that could not be decoded and were left out. */
export interface FileBatch extends Batch {
  badImages: string[];
}

/**
 * With --jpeg-dct-scaling: the largest libjpeg scale 1/2, 1/4 or 1/8 at which the box still
 * covers the output on both sides (none: 1), and the box mapped into the image at that scale
 * (libjpeg's size ceil(side / d); edges rounded to the nearest scaled pixel, so they move by at
 * most half a scaled pixel). The pixels differ from the full-size decode + antialiased resize:
 * the reduced IDCT averages 8 x 8 blocks where PIL's filter weighs a sliding window. Measured on
 * a generated 1000 x 750 JPEG (q90, 4:2:0), 100 boxes where it applies, bilinear to 224: mean
 * difference 1.0 level, 6.3 % of bytes more than 2 apart, at most 29; 36 % less time per image
 * (21.6 vs 33.9 ms, load 13). Never applies to 500 x 375 images at 224 (no box is 448 tall).
 */
export function dctScaledBox(box: Box, height: number, width: number, size: number): { denominator: number; scaled: Box } {
  let denominator = 1;
  while (denominator < 8 && box.height >= 2 * denominator * size && box.width >= 2 * denominator * size) denominator *= 2;
  if (denominator === 1) return { denominator, scaled: box };
  const scaledHeight = Math.ceil(height / denominator);
  const scaledWidth = Math.ceil(width / denominator);
  const top = Math.min(Math.round(box.top / denominator), scaledHeight - 1);
  const left = Math.min(Math.round(box.left / denominator), scaledWidth - 1);
  const bottom = Math.max(top + 1, Math.min(scaledHeight, Math.round((box.top + box.height) / denominator)));
  const right = Math.max(left + 1, Math.min(scaledWidth, Math.round((box.left + box.width) / denominator)));
  return { denominator, scaled: { top, left, height: bottom - top, width: right - left } };
}

/**
 * Decodes the file and draws its RandomResizedCrop box (the first draws of `random`, from the
 * image's size, as before the native path): returns the decoded pixels (with the native path only
 * a region around the box) and the box in their coordinates.
 */
async function decodeWithBox(path: string, files: FileSource, random: Random): Promise<{ image: RawImage; box: Box }> {
  const crop = { scale: files.scale, ratio: files.ratio };
  if (nativeImage !== null) {
    let bytes: Uint8Array;
    try {
      bytes = await readFile(path);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      throw new BadImageError(path, code === 'ENOENT' ? 'file not found' : `cannot be read (${(error as Error).message})`);
    }
    if (isJpeg(bytes)) {
      let header: { height: number; width: number; channels: number } | null = null;
      try {
        header = nativeImage.jpegInfo(bytes);
      } catch {
        // A header libjpeg rejects: sharp below decides, and names the file if it fails too.
      }
      if (header !== null && header.channels !== 0) {
        const box = randomResizedCropBox(header.height, header.width, random, crop);
        const { denominator, scaled } = files.jpegDctScaling === true ? dctScaledBox(box, header.height, header.width, files.size) : { denominator: 1, scaled: box };
        try {
          const region = nativeImage.decodeJpegRegion(bytes, scaled.top, scaled.left, scaled.height, scaled.width, denominator, REGION_MARGIN, true);
          return { image: region, box: { top: scaled.top - region.top, left: scaled.left - region.left, height: scaled.height, width: scaled.width } };
        } catch {
          // libjpeg treats every warning as an error here (a truncated file is only a warning to
          // it); sharp (failOn 'error') accepts what it accepted before and rejects the rest with
          // the file named, so a file is good or bad as it was without the native path. sharp
          // does not apply EXIF orientation, so its size is the header's and the box stands.
          return { image: await decodeImage(path), box };
        }
      }
    }
  }
  const image = await decodeImage(path);
  return { image, box: randomResizedCropBox(image.height, image.width, random, crop) };
}

/** resizedCrop, through the native module when it loaded (the same bytes, test/native-image.test.ts). */
function cropResize(image: RawImage, box: Box, files: FileSource, output: ResampleOutput): RawImage {
  if (nativeImage !== null) return nativeResampleBox(nativeImage, image, box, files.size, files.size, files.interpolation, undefined, output);
  return resizedCrop(image, box, files.size, files.interpolation, output);
}

/** Decodes and crops one training sample into `target` (channel-first uint8 at `offset`). */
export async function trainSample(files: FileSource, sample: number, seed: number, epoch: number, hflip: boolean, target: Uint8Array, offset: number): Promise<void> {
  const random = new Random(deriveSeed(seed, epoch, 2, sample));
  const { image, box } = await decodeWithBox(files.paths[sample]!, files, random);
  // The flip is drawn after the box, as before it was fused into the resampling, so the streams
  // (and a resumed run's bytes) are unchanged.
  const flip = hflip && random.next() < 0.5;
  const augmenting = files.randAugment !== null || files.threeAugment || files.colorJitter > 0;
  if (!augmenting) {
    // Crop, resize, flip and the batch layout in one pass straight into the batch.
    cropResize(image, box, files, { flip, channelFirst: { target, offset } });
    return;
  }
  let augmented = cropResize(image, box, files, { flip });
  // All draws first, from the sample's stream in the same order on both paths (RandAugment's
  // steps, 3-Augment's choice and sigma, the jitter's order and factors); timm's fill for
  // RandAugment's geometric ops is the data set's mean in pixels.
  const options = { fill: files.fill };
  const steps = files.randAugment ? randAugmentSteps(files.randAugment, random, options) : [];
  const three = files.threeAugment ? drawThreeAugment(random, augmented.height, augmented.width) : null;
  const jitter = files.colorJitter > 0 ? colorJitterParameters(files.colorJitter, random) : null;
  if (nativeImage !== null) {
    // One native call applies them all with the JavaScript ops' bytes and writes the batch layout.
    nativeAugment(nativeImage, augmented, { randAugment: steps, threeAugment: three, colorJitter: jitter }, options, { target, offset });
    return;
  }
  if (files.randAugment) augmented = applyRandAugmentSteps(augmented, steps, options);
  if (three !== null) augmented = applyThreeAugment(augmented, three);
  if (jitter !== null) augmented = colorJitter(augmented, jitter);
  toChannelFirst(augmented, target, offset);
}

/** Batch `batchIndex` of `epoch` given that epoch's sample order (see the module comment). */
export async function buildFileBatch(data: LoaderData, files: FileSource, recipe: BatchRecipe, order: Int32Array, epoch: number, batchIndex: number): Promise<FileBatch> {
  const epochBatch = epochBatchIndex(recipe, batchIndex);
  const start = epochBatch * recipe.batchSize;
  const wanted = Math.min(recipe.batchSize, order.length - start);
  const { channels, height, width } = data;
  const sampleSize = channels * height * width;
  const pixels = new Uint8Array(wanted * sampleSize);
  const ok = new Uint8Array(wanted);
  const badImages: string[] = [];
  await Promise.all(Array.from({ length: wanted }, async (_, position) => {
    const sample = order[start + position]!;
    try {
      await trainSample(files, sample, positionSeed(recipe, start + position), epoch, recipe.augment.hflip, pixels, position * sampleSize);
      ok[position] = 1;
    } catch (error) {
      if (!(error instanceof BadImageError)) throw new Error(`image ${files.paths[sample]}: ${(error as Error).message}`);
      if (!files.skipBadImages) throw new Error(`${error.message}; pass --skip-bad-images to count and skip such files`);
      badImages.push(error.path);
    }
  }));
  const size = wanted - badImages.length;
  if (size === 0) throw new Error(`batch ${batchIndex} of epoch ${epoch}: none of its ${wanted} images could be decoded (first: ${badImages.sort()[0]})`);
  // Bad images leave holes: the good samples move up, in order.
  const kept = size === wanted ? pixels : new Uint8Array(size * sampleSize);
  const labels = new Int32Array(size);
  const boxes: (ErasedBox | null)[] = [];
  const seeds: number[] = [];
  let position = 0;
  for (let index = 0; index < wanted; index++) {
    if (!ok[index]) continue;
    const sample = order[start + index]!;
    labels[position] = data.labels[sample]!;
    if (kept !== pixels) kept.set(pixels.subarray(index * sampleSize, (index + 1) * sampleSize), position * sampleSize);
    // The flip was applied with the crop above; erasing's box remains (no crop padding for files).
    const seed = positionSeed(recipe, start + index);
    boxes.push(recipe.augment.randomErasing > 0 ? drawErasingBox(height, width, sampleRandom(seed, epoch, sample), { probability: recipe.augment.randomErasing }) : null);
    seeds.push(erasingSeed(seed, epoch, sample));
    position++;
  }
  return { pixels: kept, labels, size, index: batchIndex, badImages: badImages.sort(), ...finishRecipe(recipe, data, epoch, epochBatch, labels, boxes, seeds) };
}
