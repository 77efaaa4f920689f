// One measured configuration of this project, in its own process (so its peak resident memory is
// its own): a training step (methodStep + AdamW, as the trainer runs it, or the same step written
// plainly), the in-memory batch assembly's throughput, or the cost of one tiny op call.
// Usage: node --import tsx bench/child.ts '<json job>'; prints one JSON line (see common.ts).
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { Classifier, ClassifierInfo, ForwardOptions } from '../src/models/classifier.js';
import type { Tensor } from '../src/tensor/tensor.js';
import type { Batch } from '../src/data/batch.js';
import {
  mappedMalloc, median, procStatusKiB, type Job, type LoaderJob, type LoaderResult, type OpCallJob, type OpCallResult, type ProcessFacts,
  type StepJob, type StepResult,
} from './common.js';

// Type imports are erased; the package is imported dynamically so that the memory of a bare
// Node + tsx process is read before libtorch loads, then again after.
const rssBeforeImport = procStatusKiB('VmRSS');
const { native, blasLibraries, buildInfo, getNumThreads, setNumThreads, synchronize } = await import('../src/tensor/native.js');
const { manualSeed, ones, randint, randn, tensor, tidy } = await import('../src/tensor/tensor.js');
const rssAfterImport = procStatusKiB('VmRSS');

/** What every result carries about this process (read at the end, so CPU time and peak memory are final). */
function processFacts(): ProcessFacts {
  const usage = process.cpuUsage();
  return {
    cpuSeconds: (usage.user + usage.system) / 1e6,
    malloc: mappedMalloc(),
    peakRssKiB: procStatusKiB('VmHWM'),
    ompWaitPolicy: process.env.OMP_WAIT_POLICY ?? null,
  };
}

/** The device's memory this process holds, as nvidia-smi reports it (context + caching allocator). */
function gpuUsedMiB(): number | null {
  try {
    const out = execFileSync('nvidia-smi', ['--query-compute-apps=pid,used_memory', '--format=csv,noheader,nounits'], { encoding: 'utf8', timeout: 20000 });
    for (const line of out.split('\n')) {
      const [pid, used] = line.split(',').map((part) => part.trim());
      if (pid === String(process.pid)) return Number(used);
    }
  } catch {
    // no nvidia-smi
  }
  return null;
}

/** Counts calls into the addon: every Tensor method and functional reaches libtorch through `native`. */
function countNativeCalls<T>(fn: () => T): { result: T; calls: number } {
  const binding = native as unknown as Record<string, (...args: unknown[]) => unknown>;
  const originals = new Map<string, (...args: unknown[]) => unknown>();
  let calls = 0;
  for (const [name, value] of Object.entries(binding)) {
    if (typeof value !== 'function') continue;
    originals.set(name, value);
    binding[name] = (...args: unknown[]) => {
      calls++;
      return value(...args);
    };
  }
  try {
    return { result: fn(), calls };
  } finally {
    for (const [name, value] of originals) binding[name] = value;
  }
}

async function buildModel(job: StepJob): Promise<Classifier> {
  const { createModel } = await import('../src/models/index.js');
  if (job.model.family === 'mlp') {
    const { Classifier: Base } = await import('../src/models/classifier.js');
    const { Linear } = await import('../src/nn/layers.js');
    const spec = job.model;
    const features = spec.inChannels * spec.imageSize * spec.imageSize;
    const width = Number(spec.config.width ?? 16);
    // The per-call overhead probe: three Linear layers with GELU (reference/torch_models.py's TinyMlp).
    class TinyMlp extends Base {
      readonly info: ClassifierInfo = { family: 'vit', imageSize: spec.imageSize, inChannels: spec.inChannels, numClasses: spec.numClasses };
      readonly fc1 = this.registerModule('fc1', new Linear(features, width));
      readonly fc2 = this.registerModule('fc2', new Linear(width, width));
      readonly fc3 = this.registerModule('fc3', new Linear(width, spec.numClasses));
      forward(images: Tensor, _options: ForwardOptions = {}): Tensor {
        return tidy(() => this.fc3.forward(this.fc2.forward(this.fc1.forward(images.flatten(1)).gelu()).gelu()));
      }
    }
    return new TinyMlp();
  }
  return createModel(job.model.name, { imageSize: job.model.imageSize, inChannels: job.model.inChannels, numClasses: job.model.numClasses });
}

async function runStep(job: StepJob): Promise<StepResult> {
  const started = performance.now();
  setNumThreads(job.threads);
  const { methodStep } = await import('../src/masksub/method.js');
  const { AdamW, paramGroupsWithWeightDecay } = await import('../src/optim/index.js');
  const F = await import('../src/nn/functional.js');
  manualSeed(job.seed);
  const device = job.device as 'cpu' | 'cuda';
  const model = await buildModel(job);
  if (device !== 'cpu') model.to({ device });
  model.train();
  const optimizer = new AdamW(paramGroupsWithWeightDecay(model, job.weightDecay, model.noWeightDecay()), { lr: job.lr, weightDecay: job.weightDecay });
  const { model: spec, batchSize } = job;
  const fixedImages = tidy(() => randn([batchSize, spec.inChannels, spec.imageSize, spec.imageSize], { device }));
  const fixedLabels = tidy(() => randint(0, spec.numClasses, [batchSize], { device }));
  const stepConfig = {
    method: job.method, ratio: job.ratio, subWeight: job.subWeight,
    criterion: { kind: 'ce' as const, labelSmoothing: job.labelSmoothing, bceTargetThreshold: null },
  };

  // The trainer's step: methodStep (zeroes, forwards, backwards, sums the branches' gradients and
  // measures their norms), then the optimizer step and zero_grad.
  const methodTrainStep = (images: Tensor, labels: Tensor): number => tidy(() => {
    const result = methodStep(model, images, labels, stepConfig);
    optimizer.step();
    optimizer.zeroGrad();
    synchronize();
    return result.loss;
  });
  // The same step written plainly: the official MaskSub step, as reference/torch_models.py's method_step.
  const plainTrainStep = (images: Tensor, labels: Tensor): number => tidy(() => {
    optimizer.zeroGrad();
    const logits = model.forward(images);
    const loss = F.crossEntropy(logits, labels, { labelSmoothing: job.labelSmoothing });
    let value: number;
    if (job.method === 'masksub') {
      loss.mul(1 - job.subWeight).backward();
      const teacher = logits.detach().softmax(-1);
      const subLogits = model.forward(images, { maskRatio: job.ratio });
      const sub = F.crossEntropy(subLogits, teacher);
      sub.mul(job.subWeight).backward();
      optimizer.step();
      value = loss.item() * (1 - job.subWeight) + sub.item() * job.subWeight;
    } else {
      loss.backward();
      optimizer.step();
      value = loss.item();
    }
    synchronize();
    return value;
  });
  const trainStep = job.step === 'plain' ? plainTrainStep : methodTrainStep;

  // Batches: one fixed random batch, or the real loader with its worker (as the trainer feeds it).
  let nextBatch: () => Promise<{ images: Tensor; labels: Tensor }>;
  let closeFeed = async (): Promise<void> => {};
  let datasetName: string | undefined;
  if (job.feed === 'worker') {
    const { BatchLoader } = await import('../src/data/loader.js');
    const { deviceBatch } = await import('../src/train/device-batch.js');
    const dataset = await loadTrainingImages();
    datasetName = `${dataset.name} (${dataset.count} images)`;
    const loader = new BatchLoader(dataset, {
      batchSize, shuffle: true, dropLast: true, seed: job.seed,
      augment: { cropPadding: 2, hflip: true, randomErasing: 0 }, prefetch: 3, useWorker: true,
    });
    let epoch = 0;
    let iterator = loader.epochBatches(epoch)[Symbol.asyncIterator]();
    nextBatch = async () => {
      let next = await iterator.next();
      if (next.done) {
        iterator = loader.epochBatches(++epoch)[Symbol.asyncIterator]();
        next = await iterator.next();
      }
      // As the trainer does: uint8 pixels to the device, normalized (and erased, mixed) there.
      return tidy(() => {
        const { images, labels } = deviceBatch(next.value as Batch, dataset, device);
        return { images, labels };
      });
    };
    closeFeed = () => loader.close();
  } else {
    nextBatch = () => Promise.resolve({ images: fixedImages, labels: fixedLabels });
  }
  const timedStep = async (): Promise<{ seconds: number; loss: number }> => {
    const t0 = performance.now();
    const { images, labels } = await nextBatch();
    const loss = trainStep(images, labels);
    if (images !== fixedImages) {
      images.dispose();
      labels.dispose();
    }
    return { seconds: (performance.now() - t0) / 1000, loss };
  };

  for (let index = 0; index < job.warmup; index++) await timedStep();
  const times: number[] = [];
  let finalLoss: number | null = null;
  const timedStart = performance.now();
  // Timed by duration, not by count: every process gets at least job.seconds of steps, whatever
  // one step costs, so that a slow step does not leave only a handful of samples.
  while (job.maxSteps === null || times.length < job.maxSteps) {
    const { seconds, loss } = await timedStep();
    times.push(seconds);
    finalLoss = loss;
    if ((performance.now() - timedStart) / 1000 >= job.seconds && times.length >= job.minSteps) break;
  }
  let callsPerStep: number | null = null;
  if (job.countCalls) callsPerStep = countNativeCalls(() => trainStep(fixedImages, fixedLabels)).calls;
  await closeFeed();

  const result: StepResult = {
    impl: job.impl,
    stepSeconds: times,
    medianStepSeconds: median(times),
    finalLoss,
    callsPerStep,
    rssAfterImportKiB: rssAfterImport,
    numParameters: model.numParameters(),
    threads: getNumThreads(),
    blas: blasLibraries(),
    torchVersion: buildInfo().torchVersion,
    cuda: buildInfo().cuda,
    cachingAllocator: process.env.MASKSUB_CACHING_ALLOCATOR !== '0',
    wallSeconds: (performance.now() - started) / 1000,
    ...processFacts(),
  };
  if (datasetName) result.dataset = datasetName;
  if (device !== 'cpu') result.gpuUsedMiB = gpuUsedMiB();
  return result;
}

/** Fashion-MNIST's training split where installed; the generated synthetic set (same 28x28x1 shape) elsewhere. */
async function loadTrainingImages() {
  const { loadDataset, DEFAULT_FASHION_MNIST_DIR } = await import('../src/data/datasets.js');
  const directory = process.env.MASKSUB_BENCH_DATA_DIR ?? DEFAULT_FASHION_MNIST_DIR;
  if (existsSync(directory)) return loadDataset('fashion-mnist', { split: 'train', dataDir: directory });
  return loadDataset('synthetic', { split: 'train' });
}

async function runLoader(job: LoaderJob): Promise<LoaderResult> {
  const { measureLoaderThroughput } = await import('../src/data/loader.js');
  const dataset = await loadTrainingImages();
  // The trainer's recipe: shuffled, crop with padding 2 + horizontal flip, prefetch 3. The dataset is
  // already decoded in memory (loadTrainingImages above, untimed): what is timed is gathering the
  // shuffled samples, normalizing them to float32, augmenting and packing batches (Float32Array);
  // no file read or decode, and no tensor is made.
  const result = await measureLoaderThroughput(dataset, {
    batchSize: job.batchSize, shuffle: true, dropLast: true, seed: 0,
    augment: { cropPadding: 2, hflip: true, randomErasing: 0 }, prefetch: 3, useWorker: job.useWorker,
  }, { maxBatches: job.maxBatches });
  return { ...result, dataset: `${dataset.name} (${dataset.count} images)`, ...processFacts() };
}

function runOpCall(job: OpCallJob): OpCallResult {
  setNumThreads(job.threads);
  const x = ones([1]);
  const y = ones([1]);
  const loop = (iterations: number): number => {
    const t0 = performance.now();
    for (let index = 0; index < iterations; index++) x.add(y).dispose();
    return performance.now() - t0;
  };
  loop(Math.min(2000, job.iterations));
  const samples: number[] = [];
  for (let repeat = 0; repeat < 5; repeat++) samples.push((loop(job.iterations) * 1000) / job.iterations);
  return { microsecondsPerCall: median(samples) as number, iterations: job.iterations, ...processFacts() };
}

const job = JSON.parse(process.argv[2] ?? '{}') as Job;
let output: unknown;
switch (job.kind) {
  case 'step': output = { ...(await runStep(job)), rssBeforeImportKiB: rssBeforeImport }; break;
  case 'loader': output = await runLoader(job); break;
  case 'opcall': output = runOpCall(job); break;
  default: throw new Error(`child.ts: unknown job ${JSON.stringify(job)}`);
}
process.stdout.write(JSON.stringify(output) + '\n');
// The loader's worker is unref'ed and closed; nothing else should keep the process alive.
