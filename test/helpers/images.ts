// Test images and byte comparisons shared by the tests that check image transforms against
// torchvision and PIL (transforms-torch.test.ts, randaugment.test.ts) or the native image ops
// against their JavaScript twins (randaugment-native.test.ts, color-native.test.ts).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { Random } from '../../src/data/random.js';
import type { RawImage } from '../../src/data/transforms.js';

/** Uniform random bytes: every value and every neighbour difference occurs. */
export function noiseImage(height: number, width: number, channels: number, seed: number): RawImage {
  const random = new Random(seed);
  return { pixels: Uint8Array.from({ length: height * width * channels }, () => random.int(256)), height, width, channels };
}

/**
 * A smooth gradient with seeded noise and a few hard edges (resampling and rounding errors show on
 * all of them); `low`..`high` bounds its values.
 */
export function testImage(height: number, width: number, seed: number, channels = 3, low = 0, high = 255): RawImage {
  const random = new Random(seed);
  const pixels = new Uint8Array(height * width * channels);
  for (let row = 0; row < height; row++) {
    for (let column = 0; column < width; column++) {
      for (let channel = 0; channel < channels; channel++) {
        const smooth = 127 + 100 * Math.sin((row * (channel + 1)) / 9 + column / 13);
        const edge = (Math.floor(row / 17) + Math.floor(column / 23)) % 2 === 0 ? 40 : -40;
        const value = smooth + edge + (random.next() - 0.5) * 60;
        pixels[(row * width + column) * channels + channel] = Math.max(low, Math.min(high, Math.round(value)));
      }
    }
  }
  return { pixels, height, width, channels };
}

/** Largest absolute difference and the share of differing bytes. */
export function compareBytes(ours: Uint8Array, theirs: number[]): { largest: number; differing: number } {
  assert.equal(ours.length, theirs.length, 'output sizes differ');
  let largest = 0;
  let differing = 0;
  for (let index = 0; index < ours.length; index++) {
    const difference = Math.abs(ours[index]! - theirs[index]!);
    if (difference > largest) largest = difference;
    if (difference !== 0) differing++;
  }
  return { largest, differing: differing / ours.length };
}

/**
 * Runs `script` (an ES module run from the repository root that prints one sha256 hex line, e.g.
 * of trainSample's bytes) with the native image module and again with MASKSUB_IMAGE_ADDON=off, and
 * checks that both print the same hash.
 */
export function assertSameBytesWithoutImageModule(script: string): void {
  const run = (setting: string | undefined): string => execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: join(import.meta.dirname, '..', '..'), encoding: 'utf8', env: { ...process.env, MASKSUB_IMAGE_ADDON: setting },
  }).trim();
  const withModule = run(undefined);
  assert.match(withModule, /^[0-9a-f]{64}$/);
  assert.equal(withModule, run('off'));
}
