// `node --import tsx bench/decode.ts [--images N] [--size S]`: images per second on one core for
// the folder pipeline's per-image work, ours (sharp decode + our RandomResizedCrop + flip,
// file-batch.ts' trainSample) next to
// torchvision 0.14 (PIL decode + RandomResizedCrop + RandomHorizontalFlip + PILToTensor) on the
// same generated folder of ImageNet-sized JPEGs (500 x 375, quality 90). Both sides run in one
// thread: sharp's pool and libvips get one thread (UV_THREADPOOL_SIZE=1, sharp.concurrency(1)),
// PIL decodes in the calling thread, and torch gets one thread. The two sides alternate round by
// round (`--rounds`, each over all images); the medians of the rates and of the per-round ratios
// are reported. Prints one JSON line per measurement.
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

if (process.env.UV_THREADPOOL_SIZE !== '1') {
  // The pool size is read when it is first used, so it must be set before this process starts.
  execFileSync(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit', env: { ...process.env, UV_THREADPOOL_SIZE: '1' } });
  process.exit(0);
}

const { default: sharp } = await import('sharp');
const { decodeImage } = await import('../src/data/decode.js');
const { Random } = await import('../src/data/random.js');
const { trainSample } = await import('../src/data/file-batch.js');

function option(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 ? Number(process.argv[index + 1]) : fallback;
}
const count = option('images', 200);
const size = option('size', 224);
const rounds = option('rounds', 5);
sharp.concurrency(1);

const directory = mkdtempSync(join(tmpdir(), 'masksub-decode-bench-'));
try {
  mkdirSync(join(directory, 'train', 'a'), { recursive: true });
  const paths: string[] = [];
  const random = new Random(1);
  for (let index = 0; index < count; index++) {
    const [width, height] = [500, 375];
    const pixels = Buffer.alloc(width * height * 3);
    const phase = random.next() * 10;
    for (let row = 0; row < height; row++) {
      for (let column = 0; column < width; column++) {
        for (let channel = 0; channel < 3; channel++) {
          const value = 128 + 90 * Math.sin(row / (20 + channel * 7) + phase) * Math.cos(column / 31) + (random.next() - 0.5) * 40;
          pixels[(row * width + column) * 3 + channel] = Math.max(0, Math.min(255, value));
        }
      }
    }
    const path = join(directory, 'train', 'a', `${String(index).padStart(4, '0')}.jpg`);
    await sharp(pixels, { raw: { width, height, channels: 3 } }).jpeg({ quality: 90 }).toFile(path);
    paths.push(path);
  }

  // The training transform as the loader runs it: decode, crop box, resampling, flip.
  const files = { paths, classes: ['a'], size, scale: [0.08, 1] as [number, number], ratio: [3 / 4, 4 / 3] as [number, number], interpolation: 'bilinear' as const, cropPercent: 0.875, skipBadImages: false };
  const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
  const ourRound = async (stage: 'decode' | 'train'): Promise<number> => {
    const target = new Uint8Array(3 * size * size);
    const begin = performance.now();
    for (let index = 0; index < paths.length; index++) {
      if (stage === 'decode') await decodeImage(paths[index]!);
      else await trainSample(files, index, 0, 0, true, target, 0);
    }
    return count / ((performance.now() - begin) / 1000);
  };
  // torchvision in one long-lived process that runs a round when asked, so that the two sides
  // alternate round by round and share whatever else the machine is doing.
  const python = `
import json, sys, time, glob, torch
from PIL import Image
from torchvision import transforms as T
torch.set_num_threads(1)
paths = sorted(glob.glob(${JSON.stringify(join(directory, 'train', 'a', '*.jpg'))}))
train = T.Compose([T.RandomResizedCrop(${size}, interpolation=T.InterpolationMode.BILINEAR), T.RandomHorizontalFlip(), T.PILToTensor()])
print('ready', flush=True)
for line in sys.stdin:
    stage = line.strip()
    start = time.perf_counter()
    for p in paths:
        image = Image.open(p).convert('RGB')
        if stage == 'train': train(image)
    print(len(paths) / (time.perf_counter() - start), flush=True)
`;
  const child = spawn('/usr/bin/python3', ['-c', python], { env: { ...process.env, OMP_NUM_THREADS: '1' }, stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const nextLine = async (): Promise<string> => {
    const { value, done } = await lines.next();
    if (done) throw new Error('the torchvision process ended early');
    return value as string;
  };
  if ((await nextLine()) !== 'ready') throw new Error('the torchvision process did not start');
  const theirRound = async (stage: 'decode' | 'train'): Promise<number> => {
    child.stdin!.write(`${stage}\n`);
    return Number(await nextLine());
  };
  for (const stage of ['decode', 'train'] as const) {
    await ourRound(stage); // warm-up of both sides
    await theirRound(stage);
    const ours: number[] = [];
    const theirs: number[] = [];
    for (let round = 0; round < rounds; round++) {
      ours.push(await ourRound(stage));
      theirs.push(await theirRound(stage));
    }
    console.log(JSON.stringify({
      metric: `${stage === 'decode' ? 'decode' : `decode + RandomResizedCrop ${size} + flip`} (500x375 JPEG, 1 core)`,
      ours_images_per_s: Number(median(ours).toFixed(1)), torchvision_images_per_s: Number(median(theirs).toFixed(1)),
      ratio_median: Number(median(ours.map((value, round) => value / theirs[round]!)).toFixed(2)), images: count, rounds,
    }));
  }
  child.stdin!.end();
} finally {
  rmSync(directory, { recursive: true, force: true });
}
