// The prefetch worker of BatchLoader: builds batches in a worker thread while the main thread is
// busy in synchronous native compute, and hands them over by transferring their ArrayBuffers.
//
// Protocol (see loader.ts): the main thread sends 'start' (epoch, run id, initial credit), 'credit'
// (may build n more batches) and 'stop'. With several workers, each builds every stride-th batch
// (WorkerInit's first and stride) and counts credit in its own batches. The worker answers 'batch' or 'error', tagged with the run
// id so that batches of an abandoned epoch are recognised and dropped.

import { parentPort, workerData } from 'node:worker_threads';
import { buildBatch, epochOrder, recipeBatchCount, type Batch, type BatchRecipe, type LoaderData } from './batch.js';
import { buildFileBatch } from './file-batch.js';

export interface WorkerInit {
  data: LoaderData;
  recipe: BatchRecipe;
  /** This worker builds batches first, first + stride, first + 2 * stride, ... of each epoch. */
  first: number;
  stride: number;
}

export type ToWorker =
  | { type: 'start'; run: number; epoch: number; credit: number }
  | { type: 'credit'; run: number; count: number }
  | { type: 'stop'; run: number };

export type FromWorker =
  | ({ type: 'batch'; run: number } & Batch)
  | { type: 'error'; run: number; message: string };

function main(): void {
  const port = parentPort;
  if (port === null) throw new Error('loader-worker: must be started as a worker thread by BatchLoader');
  const { data, recipe, first, stride } = workerData as WorkerInit;
  const total = recipeBatchCount(data.count, recipe);

  let run = -1;
  let epoch = 0;
  let order: Int32Array = new Int32Array(0);
  let next = 0;
  let credit = 0;
  let scheduled = false;

  // One batch per macrotask, so that 'stop' and a new 'start' are seen between batches. Image
  // files are decoded asynchronously (sharp's thread pool); `scheduled` stays set meanwhile, so
  // batches are still built one after another and in order.
  const produce = async (): Promise<void> => {
    if (credit <= 0 || next >= total) {
      scheduled = false;
      return;
    }
    const index = next;
    next += stride;
    credit--;
    const batchRun = run;
    try {
      const batch: Batch = data.files === undefined
        ? buildBatch(data, recipe, order, epoch, index)
        : await buildFileBatch(data, data.files, recipe, order, epoch, index);
      scheduled = false;
      const message: FromWorker = { type: 'batch', run: batchRun, ...batch };
      const transfer: ArrayBuffer[] = [batch.pixels.buffer as ArrayBuffer, batch.labels.buffer as ArrayBuffer];
      if (batch.softTargets !== null) transfer.push(batch.softTargets.buffer as ArrayBuffer);
      port.postMessage(message, transfer);
    } catch (error) {
      scheduled = false;
      const message: FromWorker = { type: 'error', run: batchRun, message: error instanceof Error ? error.message : String(error) };
      port.postMessage(message);
      if (batchRun === run) credit = 0;
      schedule();
      return;
    }
    schedule();
  };
  const schedule = (): void => {
    if (!scheduled && credit > 0 && next < total) {
      scheduled = true;
      setImmediate(() => void produce());
    }
  };

  port.on('message', (message: ToWorker) => {
    if (message.type === 'start') {
      run = message.run;
      epoch = message.epoch;
      order = epochOrder(data.count, recipe.shuffle, recipe.seed, epoch, recipe.repeats);
      next = first;
      credit = message.credit;
      schedule();
    } else if (message.type === 'credit') {
      if (message.run !== run) return;
      credit += message.count;
      schedule();
    } else if (message.type === 'stop') {
      if (message.run === run) credit = 0;
    }
  });
}

main();
