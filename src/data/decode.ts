// Image decoding through sharp (libvips with libjpeg-turbo/mozjpeg, libpng and libwebp; the npm
// package ships the prebuilt library, so nothing is compiled here). Every image becomes 8-bit RGB,
// as PIL's convert('RGB') makes it for torchvision: grey is replicated, alpha is dropped (not
// composited), 16-bit samples are reduced to 8. EXIF orientation is not applied, as PIL's open
// does not apply it either, so the pixels match what a PyTorch pipeline sees.
// sharp runs each decode on libuv's thread pool, so decoding a batch's images concurrently uses
// several cores from one JavaScript thread.

import sharp from 'sharp';
import type { RawImage } from './transforms.js';

/** An image that could not be read or decoded; the message names the file. */
export class BadImageError extends Error {
  constructor(readonly path: string, problem: string) {
    super(`image ${path}: ${problem}`);
  }
}

// libvips' own cache only helps when the same file is decoded repeatedly in one pipeline; a data
// set is read once per epoch, so it would only hold memory.
sharp.cache(false);

/** Decodes one image file to interleaved 8-bit RGB. Throws BadImageError naming the file. */
export async function decodeImage(path: string): Promise<RawImage> {
  try {
    // failOn 'error' rejects a truncated or corrupt file instead of returning a half-grey image.
    const { data, info } = await sharp(path, { failOn: 'error', limitInputPixels: 1 << 28 })
      .toColourspace('srgb')
      .removeAlpha()
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    const pixels = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (info.channels === 3) return { pixels, height: info.height, width: info.width, channels: 3 };
    if (info.channels === 1) {
      const rgb = new Uint8Array(info.height * info.width * 3);
      for (let pixel = 0; pixel < pixels.length; pixel++) rgb[3 * pixel] = rgb[3 * pixel + 1] = rgb[3 * pixel + 2] = pixels[pixel]!;
      return { pixels: rgb, height: info.height, width: info.width, channels: 3 };
    }
    throw new Error(`decoded to ${info.channels} channels, expected 3`);
  } catch (error) {
    const message = (error as Error).message.split('\n')[0] ?? String(error);
    const missing = (error as NodeJS.ErrnoException).code === 'ENOENT' || /missing|no such file/i.test(message);
    throw new BadImageError(path, missing ? 'file not found' : `cannot be decoded (${message})`);
  }
}
