// BatchLoader: turns an ImageDataset into augmented uint8 batches that carry their erasing boxes and
// mix decision (batch.ts), epoch by epoch, reproducibly, optionally prepared ahead in worker
// threads; deviceBatch (src/train/device-batch.ts) normalizes, erases and mixes them on the device.
//
// Determinism: the order of epoch e and the content of each of its batches depend only on (seed, e)
// and the batch index (see batch.ts), so any epoch can be regenerated bit-exactly after a resume,
// and the worker and in-thread paths give identical bytes.
// Image-file datasets (folder-dataset.ts) are decoded and cropped here too, batch by batch
// (file-batch.ts), asynchronously on sharp's thread pool; their batches have no synchronous form.
// Prefetch: the training step spends its time blocked in synchronous native code, which starves an
// in-thread producer; a worker thread really runs in parallel and keeps up to `prefetch` batches
// ready. Batches cross the thread boundary by transferring their ArrayBuffers (no copy), the pixel
// data is shared with the worker once through a SharedArrayBuffer.

import { Worker } from 'node:worker_threads';
import { validateAugmentOptions, type AugmentOptions } from './augment.js';
import { buildBatch, type DataShard, epochOrder, recipeBatchCount, type Batch, type BatchRecipe, type LoaderData } from './batch.js';
import { buildFileBatch } from './file-batch.js';
import type { ImageDataset } from './datasets.js';
import type { FromWorker, ToWorker, WorkerInit } from './loader-worker.js';
import { validateMixupOptions, type MixupOptions } from './mixup.js';

export type { Batch } from './batch.js';

export interface LoaderOptions {
  batchSize: number;
  shuffle?: boolean; // default false
  dropLast?: boolean; // default false
  seed?: number; // default 0
  epoch?: number; // the epoch iterated by default; default 0
  augment?: AugmentOptions; // default: no augmentation
  mixup?: MixupOptions; // when set, batches carry soft targets
  prefetch?: number; // batches prepared ahead by the worker; default 2, at least 1 with a worker
  useWorker?: boolean; // default false
  /** Worker threads with useWorker; each builds every workers-th batch. Default 1. */
  workers?: number;
  /**
   * A data-parallel rank's part of the data: batchSize is then the local batch (global / world),
   * and batch k is the epoch's local batch k * world + rank (batch.ts). Default: all of it.
   */
  shard?: DataShard;
  /**
   * Repeated augmentation (DeiT's RASampler): each sample of the shuffled order N times in a row,
   * each copy augmented differently, the epoch cut to the data set's length (batch.ts). Default 1 (off).
   */
  repeats?: number;
}

export const NO_AUGMENTATION: AugmentOptions = { cropPadding: 0, hflip: false, randomErasing: 0 };

/** Pixel copies in shared memory, one per dataset pixel array, reused by every loader. */
const sharedPixels = new WeakMap<Uint8Array, Uint8Array>();

function sharedCopy(pixels: Uint8Array): Uint8Array {
  if (pixels.buffer instanceof SharedArrayBuffer) return pixels;
  let shared = sharedPixels.get(pixels);
  if (shared === undefined) {
    shared = new Uint8Array(new SharedArrayBuffer(pixels.byteLength));
    shared.set(pixels);
    sharedPixels.set(pixels, shared);
  }
  return shared;
}

/**
 * How to start the worker: its module lives next to this one, with this module's extension. From
 * compiled JavaScript the file is started directly. From TypeScript source (tsx) the worker thread
 * needs the tsx loader too; `--import tsx` in the worker's execArgv is not honoured for the worker's
 * entry module on Node 20, so a tiny bootstrap registers tsx's hooks and then imports the worker.
 */
function workerStart(): { entry: string | URL; eval: boolean } {
  const here = import.meta.url;
  const extension = /\.(m?ts|m?js|cjs|cts)$/.exec(here)?.[0] ?? '.js';
  const url = new URL(`./loader-worker${extension}`, here);
  if (!extension.includes('ts')) return { entry: url, eval: false };
  let tsxApi = 'tsx/esm/api';
  try {
    // An absolute URL keeps working whatever the working directory is.
    tsxApi = import.meta.resolve('tsx/esm/api');
  } catch {
    // Fall back to resolution from the worker's working directory.
  }
  const bootstrap =
    `import(${JSON.stringify(tsxApi)}).then((api) => { api.register(); return import(${JSON.stringify(url.href)}); })` +
    `.catch((error) => { setImmediate(() => { throw error; }); });`;
  return { entry: bootstrap, eval: true };
}

interface Waiter {
  resolve: (batch: Batch) => void;
  reject: (error: Error) => void;
}

/** Main-thread side of the prefetch worker. */
class WorkerPipe {
  private readonly worker: Worker;
  private run = 0;
  private readonly ready = new Map<number, Batch>();
  private waiter: { index: number; handlers: Waiter } | null = null;
  private failure: Error | null = null;
  private closed = false;

  constructor(init: WorkerInit, label: string) {
    const start = workerStart();
    this.worker = new Worker(start.entry, { eval: start.eval, workerData: init, execArgv: [] });
    // The worker must not keep the process alive by itself; it is ref'ed only while a batch is awaited.
    this.worker.unref();
    this.worker.on('message', (message: FromWorker) => this.onMessage(message));
    this.worker.on('error', (error: Error) => this.fail(new Error(`${label}: loader worker failed: ${error.message}`)));
    this.worker.on('exit', (code: number) => {
      if (!this.closed) this.fail(new Error(`${label}: loader worker exited unexpectedly with code ${code}`));
    });
  }

  private onMessage(message: FromWorker): void {
    if (message.run !== this.run) return; // a batch of an abandoned epoch
    if (message.type === 'error') {
      this.fail(new Error(message.message));
      return;
    }
    const { type: _type, run: _run, ...batch } = message;
    if (this.waiter !== null && this.waiter.index === batch.index) {
      const { handlers } = this.waiter;
      this.waiter = null;
      this.worker.unref();
      handlers.resolve(batch);
    } else {
      this.ready.set(batch.index, batch);
    }
  }

  private fail(error: Error): void {
    if (this.failure === null) this.failure = error;
    if (this.waiter !== null) {
      const { handlers } = this.waiter;
      this.waiter = null;
      this.worker.unref();
      handlers.reject(error);
    }
  }

  private post(message: ToWorker): void {
    this.worker.postMessage(message);
  }

  start(epoch: number, credit: number): number {
    this.run++;
    this.ready.clear();
    this.post({ type: 'start', run: this.run, epoch, credit });
    return this.run;
  }

  credit(run: number, count: number): void {
    if (run === this.run && count > 0) this.post({ type: 'credit', run, count });
  }

  stop(run: number): void {
    if (run === this.run && !this.closed) this.post({ type: 'stop', run });
  }

  receive(index: number): Promise<Batch> {
    if (this.failure !== null) return Promise.reject(this.failure);
    if (this.closed) return Promise.reject(new Error('loader: the loader was closed'));
    const batch = this.ready.get(index);
    if (batch !== undefined) {
      this.ready.delete(index);
      return Promise.resolve(batch);
    }
    return new Promise<Batch>((resolve, reject) => {
      this.waiter = { index, handlers: { resolve, reject } };
      this.worker.ref();
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.fail(new Error('loader: the loader was closed'));
    await this.worker.terminate();
  }
}

/** Iterates a dataset in batches; see the module comment for determinism and prefetching. */
export class BatchLoader implements AsyncIterable<Batch> {
  readonly batchSize: number;
  readonly prefetch: number;
  readonly useWorker: boolean;
  readonly workers: number;
  /** Batches per epoch. */
  readonly batchCount: number;
  private readonly data: LoaderData;
  private readonly recipe: BatchRecipe;
  private readonly label: string;
  private currentEpoch: number;
  private pipes: WorkerPipe[] | null = null;
  private iterating = false;
  private badImages: string[] = [];

  constructor(dataset: ImageDataset, options: LoaderOptions) {
    this.label = `loader(${dataset.name}/${dataset.split})`;
    const fail = (problem: string): never => {
      throw new Error(`${this.label}: ${problem}`);
    };
    if (!Number.isInteger(options.batchSize) || options.batchSize < 1) {
      fail(`batchSize must be a positive integer, got ${String(options.batchSize)}`);
    }
    const seed = options.seed ?? 0;
    if (!Number.isFinite(seed)) fail(`seed must be a finite number, got ${String(seed)}`);
    const epoch = options.epoch ?? 0;
    if (!Number.isInteger(epoch) || epoch < 0) fail(`epoch must be a non-negative integer, got ${String(epoch)}`);
    const prefetch = options.prefetch ?? 2;
    if (!Number.isInteger(prefetch) || prefetch < 0) fail(`prefetch must be a non-negative integer, got ${String(prefetch)}`);
    const augment = options.augment ?? NO_AUGMENTATION;
    validateAugmentOptions(augment, this.label);
    if (options.mixup !== undefined) {
      validateMixupOptions(options.mixup, this.label);
      if (options.mixup.numClasses !== dataset.numClasses) {
        fail(`mixup numClasses ${options.mixup.numClasses} differs from the dataset's ${dataset.numClasses} classes`);
      }
    }
    const sampleSize = dataset.channels * dataset.height * dataset.width;
    if (dataset.files !== undefined) {
      if (dataset.files.paths.length !== dataset.count || dataset.labels.length !== dataset.count) {
        fail(`dataset lists ${dataset.files.paths.length} files and ${dataset.labels.length} labels for count ${dataset.count}`);
      }
      if (augment.cropPadding > 0) fail('crop padding does not apply to image files (RandomResizedCrop crops them); set cropPadding 0');
    } else if (dataset.images.length !== dataset.count * sampleSize || dataset.labels.length !== dataset.count) {
      fail(
        `dataset arrays do not match count ${dataset.count}: ${dataset.images.length} pixels ` +
          `(expected ${dataset.count * sampleSize}), ${dataset.labels.length} labels`,
      );
    }
    if (dataset.mean.length !== dataset.channels || dataset.std.length !== dataset.channels) {
      fail(`mean/std need ${dataset.channels} values, got ${dataset.mean.length}/${dataset.std.length}`);
    }
    this.batchSize = options.batchSize;
    this.useWorker = options.useWorker ?? false;
    const workers = options.workers ?? 1;
    if (!Number.isInteger(workers) || workers < 1 || workers > 256) fail(`workers must be an integer in [1, 256], got ${String(workers)}`);
    this.workers = workers;
    this.prefetch = this.useWorker ? Math.max(1, prefetch) : prefetch;
    const shard = options.shard ?? null;
    if (shard !== null && !(Number.isInteger(shard.world) && shard.world >= 1 && Number.isInteger(shard.rank) && shard.rank >= 0 && shard.rank < shard.world)) {
      fail(`shard rank ${String(shard.rank)} of world ${String(shard.world)} is not a rank in [0, world)`);
    }
    const repeats = options.repeats ?? 1;
    if (!Number.isInteger(repeats) || repeats < 1) fail(`repeats must be a positive integer, got ${String(repeats)}`);
    this.currentEpoch = epoch;
    this.recipe = {
      batchSize: options.batchSize,
      shuffle: options.shuffle ?? false,
      dropLast: options.dropLast ?? false,
      seed,
      augment: { ...augment },
      mixup: options.mixup === undefined ? null : { ...options.mixup },
      shard: shard === null ? null : { rank: shard.rank, world: shard.world },
      repeats,
    };
    this.data = {
      images: dataset.images,
      labels: dataset.labels,
      count: dataset.count,
      channels: dataset.channels,
      height: dataset.height,
      width: dataset.width,
      numClasses: dataset.numClasses,
      mean: [...dataset.mean],
      std: [...dataset.std],
      files: dataset.files,
    };
    this.batchCount = recipeBatchCount(dataset.count, this.recipe);
  }

  /** The epoch that plain iteration (`for await (const batch of loader)`) goes through. */
  get epoch(): number {
    return this.currentEpoch;
  }

  setEpoch(epoch: number): void {
    if (!Number.isInteger(epoch) || epoch < 0) {
      throw new Error(`${this.label}: epoch must be a non-negative integer, got ${String(epoch)}`);
    }
    this.currentEpoch = epoch;
  }

  /** The sample indices of an epoch in the order they are batched. */
  order(epoch = this.currentEpoch): Int32Array {
    return epochOrder(this.data.count, this.recipe.shuffle, this.recipe.seed, epoch, this.recipe.repeats);
  }

  /** Builds one batch in the calling thread (for checks and for resuming mid-epoch). */
  batchAt(epoch: number, batchIndex: number, order = this.order(epoch)): Batch {
    this.checkBatchIndex(batchIndex);
    this.refuseFiles('batchAt');
    return buildBatch(this.data, this.recipe, order, epoch, batchIndex);
  }

  /** Builds one batch in the calling thread; the one form that image-file datasets have too. */
  async batchAtAsync(epoch: number, batchIndex: number, order = this.order(epoch)): Promise<Batch> {
    this.checkBatchIndex(batchIndex);
    if (this.data.files === undefined) return buildBatch(this.data, this.recipe, order, epoch, batchIndex);
    return buildFileBatch(this.data, this.data.files, this.recipe, order, epoch, batchIndex);
  }

  private checkBatchIndex(batchIndex: number): void {
    if (!Number.isInteger(batchIndex) || batchIndex < 0 || batchIndex >= this.batchCount) {
      throw new Error(`${this.label}: batch index ${String(batchIndex)} is out of range 0..${this.batchCount - 1}`);
    }
  }

  private refuseFiles(what: string): void {
    if (this.data.files !== undefined) throw new Error(`${this.label}: ${what} cannot decode image files synchronously; use epochBatches or batchAtAsync`);
  }

  /**
   * Image files left out since the last call, because they could not be decoded (only with
   * skipBadImages; otherwise the first one stops the epoch with an error naming it).
   */
  takeBadImages(): string[] {
    const taken = this.badImages;
    this.badImages = [];
    return taken;
  }

  /** All batches of an epoch, built in the calling thread on demand (no worker, no prefetch). */
  *batchesSync(epoch = this.currentEpoch): Generator<Batch> {
    this.refuseFiles('batchesSync');
    const order = this.order(epoch);
    for (let index = 0; index < this.batchCount; index++) yield buildBatch(this.data, this.recipe, order, epoch, index);
  }

  /** All batches of an epoch; with `useWorker` they are prepared ahead in the worker thread. */
  async *epochBatches(epoch = this.currentEpoch): AsyncGenerator<Batch> {
    if (!Number.isInteger(epoch) || epoch < 0) {
      throw new Error(`${this.label}: epoch must be a non-negative integer, got ${String(epoch)}`);
    }
    if (!this.useWorker) {
      if (this.data.files === undefined) {
        yield* this.batchesSync(epoch);
        return;
      }
      const order = this.order(epoch);
      for (let index = 0; index < this.batchCount; index++) {
        const batch = await this.batchAtAsync(epoch, index, order);
        if (batch.badImages?.length) this.badImages.push(...batch.badImages);
        yield batch;
      }
      return;
    }
    if (this.iterating) {
      throw new Error(`${this.label}: an epoch is already being iterated; finish or break out of it first`);
    }
    this.iterating = true;
    const pipes = this.ensurePipes();
    // Batch i belongs to worker i mod N; the first `prefetch` batches are credited to their owners,
    // then each batch handed to the consumer credits the batch `prefetch` places further on.
    const owner = (index: number): WorkerPipe => pipes[index % pipes.length]!;
    const window = Math.min(this.prefetch, this.batchCount);
    const runs = pipes.map((pipe, worker) => pipe.start(epoch, worker < window ? Math.floor((window - 1 - worker) / pipes.length) + 1 : 0));
    const runOf = (index: number): number => runs[index % pipes.length]!;
    let finished = false;
    try {
      for (let index = 0; index < this.batchCount; index++) {
        const batch = await owner(index).receive(index);
        if (batch.badImages?.length) this.badImages.push(...batch.badImages);
        // The consumer now holds this batch; let the worker refill the ahead-of-time window.
        const ahead = index + this.prefetch;
        if (ahead < this.batchCount) owner(ahead).credit(runOf(ahead), 1);
        yield batch;
      }
      finished = true;
    } finally {
      if (!finished) pipes.forEach((pipe, worker) => pipe.stop(runs[worker]!));
      this.iterating = false;
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<Batch> {
    return this.epochBatches(this.currentEpoch);
  }

  private ensurePipes(): WorkerPipe[] {
    if (this.pipes === null) {
      const data: LoaderData = { ...this.data, images: sharedCopy(this.data.images) };
      this.pipes = Array.from({ length: this.workers }, (_, worker) => new WorkerPipe({ data, recipe: this.recipe, first: worker, stride: this.workers }, this.label));
    }
    return this.pipes;
  }

  /** Stops the worker thread, if one was started. The loader can still be used in-thread. */
  async close(): Promise<void> {
    const pipes = this.pipes;
    this.pipes = null;
    if (pipes !== null) await Promise.all(pipes.map((pipe) => pipe.close()));
  }
}

export interface ThroughputResult {
  imagesPerSecond: number;
  images: number;
  batches: number;
  seconds: number;
}

/**
 * Measures how fast a loader configuration produces batches (images per second) over up to
 * `maxBatches` batches of one epoch. The clock starts when the first batch arrives, so worker
 * start-up is not counted. With `busyMillisecondsPerBatch` the main thread is blocked synchronously
 * after each batch, like a training step, which shows how much of the data work the worker hides.
 */
export async function measureLoaderThroughput(
  dataset: ImageDataset,
  options: LoaderOptions,
  measure: { maxBatches?: number; busyMillisecondsPerBatch?: number } = {},
): Promise<ThroughputResult> {
  const loader = new BatchLoader(dataset, options);
  const maxBatches = Math.min(measure.maxBatches ?? loader.batchCount, loader.batchCount);
  const busy = measure.busyMillisecondsPerBatch ?? 0;
  let images = 0;
  let batches = 0;
  let started = 0;
  let finished = 0;
  try {
    if (maxBatches > 1) {
      for await (const batch of loader.epochBatches()) {
        batches++;
        if (batches === 1) {
          started = performance.now();
        } else {
          images += batch.size;
        }
        if (busy > 0) {
          const until = performance.now() + busy;
          while (performance.now() < until) {
            // Deliberately blocking, standing in for a synchronous native training step.
          }
        }
        if (batches >= maxBatches) break;
      }
      finished = performance.now();
    }
  } finally {
    await loader.close();
  }
  const seconds = (finished - started) / 1000;
  // The first batch only starts the clock, so it is not counted.
  const counted = Math.max(0, batches - 1);
  return { imagesPerSecond: seconds > 0 ? images / seconds : 0, images, batches: counted, seconds };
}
