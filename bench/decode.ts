// `node --import tsx bench/decode.ts [--images N] [--rounds R] [--worker-rounds R] [--workers 1,2]
// [--batch B] [--epochs E] [--step-batch B] [--no-core] [--stages train,randaug] [--finish cpu|none] [--no-steps] [--out FILE]`: issue 10's throughput measurement of the image-folder training
// pipeline, ours next to torchvision 0.14 (Debian's python3-torchvision) on the same generated
// folder of ImageNet-sized JPEGs (500 x 375, quality 90). Three parts, each printing JSON lines:
//
// 1. One core (`--phase core`, a child with UV_THREADPOOL_SIZE=1 and sharp.concurrency(1); PIL
//    decodes in the calling thread, torch gets one thread): images/s of decode; decode +
//    RandomResizedCrop 224 + flip (ours: file-batch.ts' trainSample); and that + RandAugment (ours:
//    timm's rand-m9-mstd0.5-inc1; torchvision: RandAugment(num_ops=2, magnitude=9), the nearest
//    it has, since timm is not installed from apt; ours runs its ops in C++ when the native image
//    module loaded, the result's `augmenter` says which). The two sides alternate round by round
//    (`--rounds`, each over all images) in two long-lived processes; medians of the rates and of
//    the per-round ratios are reported.
// 2. Workers (`--workers`, `--worker-rounds`): ours is BatchLoader with N worker threads (the `--data-workers N` path:
//    decode, crop, flip, augment into uint8 batches; the main thread finishes each into a
//    normalized float32 tensor with deviceBatch, as the trainer does on a CPU), torchvision is
//    DataLoader(ImageFolder(..., transform), num_workers=N, persistent_workers=True) with the same
//    transform + ToTensor + Normalize. Each side in a fresh process per round, the order of the two
//    alternating; one warm-up epoch, then `--epochs` timed. Both are given N cores' worth of
//    threads (ours: UV_THREADPOOL_SIZE=N for sharp's decodes, sharp.concurrency(1)), and both
//    report the CPU seconds of every thread/process involved, so "per core" is images per CPU
//    second, whatever else the shared machine does.
// 3. Consumption (`--no-steps` skips it): the training step (MaskSub, the trainer's methodStep +
//    AdamW, bench/child.ts) of ViT-S/16 and ResNet-50 at 224 px on this CPU, batch `--step-batch`,
//    all cores; its images/s is compared with what the loader delivered with the most workers.
//
// The machine may be shared: each result carries the 1-minute load average read around it.
// `--out` writes everything as one small JSON file (bench/results/decode-<date>.json).
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Batch } from '../src/data/batch.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const PYTHON = process.env.MASKSUB_PYTHON ?? '/usr/bin/python3';
const RAND_AUGMENT = 'rand-m9-mstd0.5-inc1';
type Stage = 'decode' | 'train' | 'randaug';
const STAGE_NAMES: Record<Stage, string> = {
  decode: 'decode',
  train: 'decode + RandomResizedCrop 224 + flip',
  randaug: `decode + RandomResizedCrop 224 + flip + RandAugment (${RAND_AUGMENT}; torchvision RandAugment(2, 9))`,
};

function option(name: string, fallback: string): string {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 ? process.argv[index + 1]! : fallback;
}
const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const round2 = (value: number): number => Number(value.toFixed(2));
const load1 = (): number => round2(loadavg()[0]!);
const size = Number(option('size', '224'));
const phase = option('phase', 'main');
const directory = option('dir', '');

// The torchvision side of parts 1 and 2, one script: `core` runs rounds when asked on stdin,
// `loader N STAGE EPOCHS BATCH` measures a DataLoader and prints one JSON line.
const PYTHON_SIDE = `
import json, os, sys, time, glob, torch
from PIL import Image
from torchvision import transforms as T, datasets
mode, folder, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
def transform(stage, normalize):
    steps = [T.RandomResizedCrop(size, interpolation=T.InterpolationMode.BILINEAR), T.RandomHorizontalFlip()]
    if stage == 'randaug': steps.append(T.RandAugment(num_ops=2, magnitude=9))
    steps += [T.ToTensor(), T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))] if normalize else [T.PILToTensor()]
    return T.Compose(steps)
if mode == 'core':
    torch.set_num_threads(1)
    paths = sorted(glob.glob(os.path.join(folder, 'train', '*', '*.jpg')))
    transforms = {stage: transform(stage, False) for stage in ('train', 'randaug')}
    print('ready', flush=True)
    for line in sys.stdin:
        stage = line.strip()
        start = time.perf_counter()
        for p in paths:
            image = Image.open(p).convert('RGB')
            if stage != 'decode': transforms[stage](image)
        print(len(paths) / (time.perf_counter() - start), flush=True)
else:
    workers, stage, epochs, batch = int(sys.argv[4]), sys.argv[5], int(sys.argv[6]), int(sys.argv[7])
    torch.set_num_threads(1)
    data = datasets.ImageFolder(os.path.join(folder, 'train'), transform(stage, True))
    loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=True, num_workers=workers, persistent_workers=True)
    tick = os.sysconf('SC_CLK_TCK')
    def worker_cpu(it):
        total = 0
        for w in it._workers:
            fields = open(f'/proc/{w.pid}/stat').read().rsplit(')', 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        return total
    for _ in loader: pass  # warm-up: starts the workers
    it = iter(loader)
    cpu0, own0, start, images = worker_cpu(it), time.process_time(), time.perf_counter(), 0
    for epoch in range(epochs):
        for images_batch, labels in (it if epoch == 0 else iter(loader)): images += images_batch.shape[0]
    seconds = time.perf_counter() - start
    cpu = worker_cpu(it) - cpu0 + time.process_time() - own0
    print(json.dumps({'images_per_s': images / seconds, 'cpu_seconds': cpu, 'images': images}), flush=True)
`;

/** Part 1, in a child whose libuv pool has one thread. */
async function corePhase(): Promise<void> {
  const { default: sharp } = await import('sharp');
  const { decodeImage } = await import('../src/data/decode.js');
  const { trainSample } = await import('../src/data/file-batch.js');
  const { loadFolderDataset } = await import('../src/data/folder-dataset.js');
  const { nativeImage, nativeImageProblem } = await import('../src/data/native-image.js');
  const { readFile } = await import('node:fs/promises');
  sharp.concurrency(1);
  // Decode-only is the whole image by the decoder trainSample uses: the native module's
  // libjpeg-turbo when it loaded, else sharp.
  const decoder = nativeImage === null ? `sharp (native image module: ${nativeImageProblem})` : 'libjpeg-turbo (native image module)';
  // RandAugment's ops: C++ in the same module when it loaded (its draws stay in JavaScript).
  const augmenter = nativeImage === null ? 'JavaScript (src/data/randaugment.ts)' : 'C++ (native image module, native/image/randaugment.h)';
  const decodeWhole = async (path: string): Promise<void> => {
    if (nativeImage === null) {
      await decodeImage(path);
      return;
    }
    const bytes = await readFile(path);
    const { height, width } = nativeImage.jpegInfo(bytes);
    nativeImage.decodeJpegRegion(bytes, 0, 0, height, width, 1, 0, true);
  };
  const rounds = Number(option('rounds', '5'));
  const plain = (await loadFolderDataset({ split: 'train', dataDir: directory, list: null, size })).files!;
  const augmented = (await loadFolderDataset({ split: 'train', dataDir: directory, list: null, size, randAugment: RAND_AUGMENT })).files!;
  const count = plain.paths.length;
  const ourRound = async (stage: Stage): Promise<number> => {
    const target = new Uint8Array(3 * size * size);
    const begin = performance.now();
    for (let index = 0; index < count; index++) {
      if (stage === 'decode') await decodeWhole(plain.paths[index]!);
      else await trainSample(stage === 'train' ? plain : augmented, index, 0, 0, true, target, 0);
    }
    return count / ((performance.now() - begin) / 1000);
  };
  const child = spawn(PYTHON, ['-c', PYTHON_SIDE, 'core', directory, String(size)], { env: { ...process.env, OMP_NUM_THREADS: '1' }, stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const nextLine = async (): Promise<string> => {
    const { value, done } = await lines.next();
    if (done) throw new Error('the torchvision process ended early');
    return value as string;
  };
  if ((await nextLine()) !== 'ready') throw new Error('the torchvision process did not start');
  const theirRound = async (stage: Stage): Promise<number> => {
    child.stdin!.write(`${stage}\n`);
    return Number(await nextLine());
  };
  for (const stage of ['decode', 'train', 'randaug'] as const) {
    await ourRound(stage); // warm-up of both sides
    await theirRound(stage);
    const ours: number[] = [];
    const theirs: number[] = [];
    const loads: number[] = [];
    for (let round = 0; round < rounds; round++) {
      // Which side goes first alternates, so that a change of load does not favour one side.
      const first = round % 2 === 0;
      if (first) ours.push(await ourRound(stage));
      theirs.push(await theirRound(stage));
      if (!first) ours.push(await ourRound(stage));
      loads.push(load1());
    }
    console.log(JSON.stringify({
      part: 'core', stage, metric: `${STAGE_NAMES[stage]} (500x375 JPEG, 1 core)`, decoder, ...(stage === 'randaug' ? { augmenter } : {}),
      ours_images_per_s: round2(median(ours)), torchvision_images_per_s: round2(median(theirs)),
      ratio_median: round2(median(ours.map((value, index) => value / theirs[index]!))),
      ratios: ours.map((value, index) => round2(value / theirs[index]!)), load_average: loads, images: count, rounds,
    }));
  }
  child.stdin!.end();
}

/**
 * Part 2, ours: one process, the loader with N worker threads; each uint8 batch is finished as the
 * trainer does on a CPU (deviceBatch: normalized float32 tensor, on the main thread, one libtorch
 * thread), so that both sides end with the same normalized float32 tensors and both CPU totals
 * include normalizing.
 */
async function loaderPhase(): Promise<void> {
  const { default: sharp } = await import('sharp');
  const { loadFolderDataset } = await import('../src/data/folder-dataset.js');
  const { BatchLoader } = await import('../src/data/loader.js');
  const { deviceBatch } = await import('../src/train/device-batch.js');
  const { setNumThreads } = await import('../src/tensor/native.js');
  const { tidy } = await import('../src/tensor/tensor.js');
  sharp.concurrency(1);
  setNumThreads(1);
  const workers = Number(option('workers', '1'));
  const stage = option('stage', 'train') as Stage;
  const epochs = Number(option('epochs', '2'));
  const batchSize = Number(option('batch', '20'));
  const dataset = await loadFolderDataset({ split: 'train', dataDir: directory, list: null, size, randAugment: stage === 'randaug' ? RAND_AUGMENT : null });
  const loader = new BatchLoader(dataset, {
    batchSize, shuffle: true, seed: 0, augment: { cropPadding: 0, hflip: true, randomErasing: 0 }, useWorker: true, workers, prefetch: 2 * workers,
  });
  // `--finish none` leaves the uint8 batches as they come: the CPU cost of the loader when a GPU
  // does the normalizing (deviceBatch on CUDA).
  const finishing = option('finish', 'cpu') === 'cpu';
  const finish = (batch: Batch): void => {
    if (finishing) tidy(() => void deviceBatch(batch, dataset, 'cpu'));
  };
  for await (const batch of loader.epochBatches(0)) finish(batch); // warm-up: starts and compiles the workers
  const cpu = process.cpuUsage();
  const start = performance.now();
  let images = 0;
  for (let epoch = 1; epoch <= epochs; epoch++) {
    for await (const batch of loader.epochBatches(epoch)) {
      finish(batch);
      images += batch.size;
    }
  }
  const seconds = (performance.now() - start) / 1000;
  const used = process.cpuUsage(cpu);
  await loader.close();
  console.log(JSON.stringify({ images_per_s: images / seconds, cpu_seconds: (used.user + used.system) / 1e6, images }));
}

interface LoaderRun {
  images_per_s: number;
  cpu_seconds: number;
  images: number;
}

function lastJson<T>(text: string, what: string): T {
  const line = text.trim().split('\n').reverse().find((entry) => entry.startsWith('{'));
  if (line === undefined) throw new Error(`${what} printed no result:\n${text.slice(-2000)}`);
  return JSON.parse(line) as T;
}

async function mainPhase(): Promise<void> {
  const count = Number(option('images', '200'));
  const rounds = Number(option('rounds', '5'));
  const workerRounds = Number(option('worker-rounds', '3'));
  const workerCounts = option('workers', '1,2').split(',').map(Number);
  const epochs = Number(option('epochs', '2'));
  const batch = Number(option('batch', '20'));
  const stepBatch = Number(option('step-batch', '8'));
  const finish = option('finish', 'cpu');
  const out = option('out', '');
  const { default: sharp } = await import('sharp');
  const { Random } = await import('../src/data/random.js');
  const { cpuModel, gitState } = await import('./machine.js');
  // Read before anything runs: the code measured is this tree's, whatever is edited meanwhile.
  const git = gitState(root);
  const folder = mkdtempSync(join(tmpdir(), 'masksub-decode-bench-'));
  const results: Record<string, unknown>[] = [];
  const report = (entry: Record<string, unknown>): void => {
    results.push(entry);
    console.log(JSON.stringify(entry));
  };
  try {
    // Two classes, so that both sides read it as an ImageFolder; the pixels are smooth waves plus
    // noise, which JPEG-compresses about as much as a photograph (about 60 kB at quality 90).
    const random = new Random(1);
    for (let index = 0; index < count; index++) {
      const [width, height] = [500, 375];
      const pixels = Buffer.alloc(width * height * 3);
      const phaseShift = random.next() * 10;
      for (let row = 0; row < height; row++) {
        for (let column = 0; column < width; column++) {
          for (let channel = 0; channel < 3; channel++) {
            const value = 128 + 90 * Math.sin(row / (20 + channel * 7) + phaseShift) * Math.cos(column / 31) + (random.next() - 0.5) * 40;
            pixels[(row * width + column) * 3 + channel] = Math.max(0, Math.min(255, value));
          }
        }
      }
      const classDirectory = join(folder, 'train', index % 2 === 0 ? 'a' : 'b');
      mkdirSync(classDirectory, { recursive: true });
      await sharp(pixels, { raw: { width, height, channels: 3 } }).jpeg({ quality: 90 }).toFile(join(classDirectory, `${String(index).padStart(4, '0')}.jpg`));
    }
    const self = [...process.execArgv, fileURLToPath(import.meta.url), '--dir', folder, '--size', String(size)];

    // Part 1: one core (`--no-core` skips it).
    if (!process.argv.includes('--no-core')) {
      const core = spawnSync(process.execPath, [...self, '--phase', 'core', '--rounds', String(rounds)], {
        env: { ...process.env, UV_THREADPOOL_SIZE: '1' }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 24,
      });
      if (core.status !== 0) throw new Error(`the one-core phase failed:\n${core.stdout}`);
      for (const line of core.stdout.trim().split('\n')) report(JSON.parse(line) as Record<string, unknown>);
    }

    // Part 2: workers, each side in a fresh process per round, the order alternating.
    let deliveredMost = 0;
    for (const stage of option('stages', 'train,randaug').split(',') as Stage[]) {
      for (const workers of workerCounts) {
        const ours: LoaderRun[] = [];
        const theirs: typeof ours = [];
        const loads: number[] = [];
        const runOurs = (): void => {
          const run = spawnSync(process.execPath, [...self, '--phase', 'loader', '--workers', String(workers), '--stage', stage, '--epochs', String(epochs), '--batch', String(batch), '--finish', finish], {
            env: { ...process.env, UV_THREADPOOL_SIZE: String(workers) }, encoding: 'utf8', maxBuffer: 1 << 24,
          });
          if (run.status !== 0) throw new Error(`our loader (${workers} workers) failed:\n${run.stderr}`);
          ours.push(lastJson<LoaderRun>(run.stdout, 'our loader'));
        };
        const runTheirs = (): void => {
          const run = spawnSync(PYTHON, ['-c', PYTHON_SIDE, 'loader', folder, String(size), String(workers), stage, String(epochs), String(batch)], {
            env: { ...process.env, OMP_NUM_THREADS: '1' }, encoding: 'utf8', maxBuffer: 1 << 24,
          });
          if (run.status !== 0) throw new Error(`torchvision's DataLoader (${workers} workers) failed:\n${run.stderr}`);
          theirs.push(lastJson<LoaderRun>(run.stdout, 'the DataLoader'));
        };
        for (let round = 0; round < workerRounds; round++) {
          if (round % 2 === 0) { runOurs(); runTheirs(); } else { runTheirs(); runOurs(); }
          loads.push(load1());
        }
        const perCpu = (entry: { images: number; cpu_seconds: number }): number => entry.images / entry.cpu_seconds;
        const oursRate = median(ours.map((entry) => entry.images_per_s));
        if (stage === 'train' && workers === Math.max(...workerCounts)) deliveredMost = oursRate;
        report({
          part: 'workers', stage, workers, metric: `${STAGE_NAMES[stage]}, ${workers} worker(s), batches of ${batch}` + (finish === 'cpu' ? ' finished to normalized float32 tensors (ours: uint8 from the workers, deviceBatch on the main thread)' : ' (ours: uint8, not normalized, as with a GPU doing it; torchvision: normalized float32)'),
          ours_images_per_s: round2(oursRate), torchvision_images_per_s: round2(median(theirs.map((entry) => entry.images_per_s))),
          ratio_median: round2(median(ours.map((entry, index) => entry.images_per_s / theirs[index]!.images_per_s))),
          ours_images_per_cpu_s: round2(median(ours.map(perCpu))), torchvision_images_per_cpu_s: round2(median(theirs.map(perCpu))),
          per_cpu_ratio_median: round2(median(ours.map((entry, index) => perCpu(entry) / perCpu(theirs[index]!)))),
          load_average: loads, images_per_round: ours[0]!.images, rounds: workerRounds,
        });
      }
    }

    // Part 3: what a training step consumes.
    if (!process.argv.includes('--no-steps')) {
      const threads = cpus().length;
      for (const [name, family] of [['vit_small_patch16_224', 'vit'], ['resnet50', 'resnet']] as const) {
        const job = {
          kind: 'step', impl: 'ours', step: 'trainer', model: { name, family, imageSize: 224, inChannels: 3, numClasses: 1000, config: {} },
          method: 'masksub', ratio: 0.5, subWeight: 1, labelSmoothing: 0.1, lr: 1e-3, weightDecay: 0.05, batchSize: stepBatch,
          warmup: 1, seconds: 0, minSteps: 3, maxSteps: 3, threads, device: 'cpu', seed: 0, countCalls: false, feed: 'fixed',
        };
        const loadBefore = load1();
        const run = spawnSync(process.execPath, [...process.execArgv, join(here, 'child.ts'), JSON.stringify(job)], { cwd: root, encoding: 'utf8', maxBuffer: 1 << 24 });
        if (run.status !== 0) throw new Error(`the ${name} step failed:\n${run.stderr.slice(-2000)}`);
        const step = lastJson<{ medianStepSeconds: number }>(run.stdout, `the ${name} step`);
        const consumed = stepBatch / step.medianStepSeconds;
        report({
          part: 'consumption', model: name, method: 'masksub', batch: stepBatch, threads, step_seconds: round2(step.medianStepSeconds),
          step_images_per_s: round2(consumed), loader_images_per_s: round2(deliveredMost), workers: Math.max(...workerCounts),
          delivered_over_consumed: round2(deliveredMost / consumed), load_average: [loadBefore, load1()],
        });
      }
    }
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
  if (out !== '') {
    writeFileSync(out, `${JSON.stringify({
      date: new Date().toISOString(), commit: git.commit, dirty: git.dirty, dirtyFiles: git.dirtyFiles, machine: { cpu: cpuModel(), cores: cpus().length },
      settings: { images: count, image: '500x375 JPEG q90', size, rounds, workerRounds, workers: workerCounts, epochs, batch, stepBatch, finish },
      torchvision: execFileSync(PYTHON, ['-c', 'import torch, torchvision, PIL; print(torch.__version__, torchvision.__version__, PIL.__version__)'], { encoding: 'utf8' }).trim(),
      results,
    }, null, 1)}\n`);
  }
}

if (phase === 'core') await corePhase();
else if (phase === 'loader') await loaderPhase();
else await mainPhase();
