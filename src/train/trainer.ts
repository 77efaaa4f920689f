// The training loop: data -> method step (main + sub branch) -> clip -> optimizer -> EMA, with
// per-epoch evaluation, the paper's Eq. 1 / Eq. 2 probe losses, metrics files, atomic
// checkpoints and exact resume. Short enough to read in one sitting; no hidden globals.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { countBatches } from '../data/batch.js';
import { BatchLoader, NO_AUGMENTATION } from '../data/loader.js';
import { type ImageDataset, loadDataset, subsetDataset } from '../data/datasets.js';
import { deriveSeed, Random } from '../data/random.js';
import type { Classifier, ForwardOptions } from '../models/classifier.js';
import { createModel } from '../models/registry.js';
import { hasSubModel, methodStep, type StepConfig } from '../masksub/method.js';
import * as F from '../nn/functional.js';
import { AdamW, applyLr, clipGradNorm, Lamb, ModelEma, type Optimizer, paramGroupsWithWeightDecay, SGD, WarmupCosineSchedule } from '../optim/index.js';
import { writeFileAtomic } from '../tensor/safetensors.js';
import { saveSafetensors } from '../tensor/safetensors.js';
import { setNumThreads } from '../tensor/native.js';
import { Generator, getRngState, keep, manualSeed, noGrad, setRngState, type Tensor, tensor, tidy } from '../tensor/tensor.js';
import { BEST_FILE, CHECKPOINT_FILE, disposeCheckpoint, loadCheckpoint, MODEL_FILE, saveCheckpoint, type TrainingState } from './checkpoint.js';
import { fromStoredConfig, type ResolvedTrainConfig, resolveConfig, toStoredConfig, type TrainConfig } from './config.js';
import { Progress } from './progress.js';
import type { EpochMetrics, RunSummary } from './run-format.js';

export class TrainingError extends Error {}

export interface TrainOptions {
  out: string;
  resume?: boolean;
  overwrite?: boolean;
  /** Where progress lines go (default: stderr). */
  log?: (line: string) => void;
  /** Stop after this many epochs of this call (tests of resume); the run stays unfinished. */
  stopAfterEpochs?: number;
}

export interface TrainResult { summary: RunSummary | null; history: EpochMetrics[]; out: string }

const CONFIG_FILE = 'config.json';
const METRICS_FILE = 'metrics.jsonl';
const SUMMARY_CSV = 'summary.csv';
const DONE_FILE = 'done.json';

export function readRunConfig(out: string): ResolvedTrainConfig {
  const path = join(out, CONFIG_FILE);
  try {
    const stored = fromStoredConfig(JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>);
    // The file may have been edited (e.g. a lower lr after a non-finite loss): validate it again.
    const { machine: _machine, preset, ...settings } = stored;
    return resolveConfig(settings as TrainConfig, preset ?? null);
  } catch (error) {
    throw new TrainingError(`${path}: cannot read the run's config: ${(error as Error).message}`);
  }
}

/** The run's own files, the only ones --overwrite removes. */
const RUN_FILES = [CONFIG_FILE, METRICS_FILE, SUMMARY_CSV, DONE_FILE, CHECKPOINT_FILE, MODEL_FILE, BEST_FILE];

/** writeFileAtomic's temporary file of a run file (.NAME.PID.tmp) and the writer's process id. */
function atomicTemporaryPid(entry: string): number | null {
  const match = /^\.(.+)\.(\d+)\.tmp$/.exec(entry);
  return match && RUN_FILES.includes(match[1]) ? Number(match[2]) : null;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Temporary files left by a writer that was killed between writing and renaming (a SIGKILL during
 * a checkpoint write leaves a whole checkpoint-sized one). They are never read; the ones whose
 * writer is gone are removed so that repeated interruptions do not fill the disk.
 */
function staleTemporaries(out: string): string[] {
  if (!existsSync(out)) return [];
  return readdirSync(out).filter((entry) => {
    const pid = atomicTemporaryPid(entry);
    return pid !== null && pid !== process.pid && !processAlive(pid);
  });
}

/** Decides what to do with an existing run directory; never deletes a run silently, touches nothing. */
function checkRunDirectory(out: string, options: TrainOptions): 'fresh' | 'resume' {
  const hasRun = existsSync(join(out, CONFIG_FILE));
  if (options.resume) {
    if (!hasRun) throw new TrainingError(`--resume: ${out} holds no run to resume (no ${CONFIG_FILE})`);
    return 'resume';
  }
  const stale = new Set(staleTemporaries(out));
  if (hasRun || (existsSync(out) && readdirSync(out).some((entry) => !stale.has(entry)))) {
    if (!options.overwrite) {
      const finished = existsSync(join(out, DONE_FILE));
      throw new TrainingError(`${out} already holds ${hasRun ? (finished ? 'a finished run' : 'an unfinished run') : 'files'}; pass --resume to continue it or --overwrite to replace it`);
    }
  }
  return 'fresh';
}

/** Makes the run directory: removes a replaced run's files (--overwrite was checked) and stale temporaries. */
function prepareRunDirectory(out: string, mode: 'fresh' | 'resume'): void {
  for (const entry of staleTemporaries(out)) rmSync(join(out, entry), { force: true });
  if (mode === 'fresh') {
    for (const name of RUN_FILES) rmSync(join(out, name), { force: true });
    mkdirSync(out, { recursive: true });
  }
}

function buildOptimizer(model: Classifier, config: ResolvedTrainConfig): Optimizer {
  const groups = paramGroupsWithWeightDecay(model, config.weightDecay, model.noWeightDecay());
  switch (config.optimizer) {
    case 'lamb': return new Lamb(groups, { lr: config.lr, weightDecay: config.weightDecay });
    case 'sgd': return new SGD(groups, { lr: config.lr, momentum: config.momentum, nesterov: config.nesterov, weightDecay: config.weightDecay });
    default: return new AdamW(groups, { lr: config.lr, weightDecay: config.weightDecay });
  }
}

interface Evaluation { loss: number; acc1: number; acc5: number }

/** Loss, top-1 and top-5 of the model (eval mode, no masking unless options say so). */
export function evaluate(model: Classifier, dataset: ImageDataset, batchSize: number, device: string, options: ForwardOptions = {}): Evaluation {
  const loader = new BatchLoader(dataset, { batchSize, augment: NO_AUGMENTATION });
  const wasTraining = model.training;
  model.eval();
  let loss = 0;
  let correct1 = 0;
  let correct5 = 0;
  try {
    noGrad(() => {
      for (const batch of loader.batchesSync(0)) {
        tidy(() => {
          const { images, labels } = batchTensors(batch.images, batch.labels, null, dataset, device);
          const logits = model.forward(images, options);
          loss += F.crossEntropy(logits, labels, { reduction: 'sum' }).item();
          const k = Math.min(5, logits.size(1));
          const top = logits.topk(k, 1)[1];
          const hits = top.eq(labels.unsqueeze(1));
          correct1 += hits.slice(1, 0, 1).sum().item();
          correct5 += hits.sum().item();
        });
      }
    });
  } finally {
    model.train(wasTraining);
  }
  return { loss: loss / dataset.count, acc1: (100 * correct1) / dataset.count, acc5: (100 * correct5) / dataset.count };
}

function batchTensors(images: Float32Array, labels: Int32Array, soft: Float32Array | null, dataset: ImageDataset, device: string): { images: Tensor; labels: Tensor; soft: Tensor | null } {
  const size = labels.length;
  const shape = [size, dataset.channels, dataset.height, dataset.width];
  let x = tensor(images, { shape });
  let y = tensor(labels).long();
  let s = soft ? tensor(soft, { shape: [size, dataset.numClasses] }) : null;
  if (device !== 'cpu') {
    x = x.to({ device: device as 'cuda' });
    y = y.to({ device: device as 'cuda' });
    s = s ? s.to({ device: device as 'cuda' }) : null;
  }
  return { images: x, labels: y, soft: s };
}

function csvLine(values: unknown[]): string {
  return values.map((value) => (value === null || value === undefined ? '' : String(value))).join(',');
}

function writeMetrics(out: string, history: EpochMetrics[]): void {
  writeFileAtomic(join(out, METRICS_FILE), history.map((row) => JSON.stringify(row)).join('\n') + (history.length ? '\n' : ''));
  const columns = history.length ? Object.keys(history[0]) : [];
  const rows = history.map((row) => csvLine(columns.map((column) => (row as unknown as Record<string, unknown>)[column])));
  writeFileAtomic(join(out, SUMMARY_CSV), [columns.join(','), ...rows].join('\n') + '\n');
}

/** Trains one run to the end (or to stopAfterEpochs), resuming from its checkpoint when asked. */
export async function train(requested: ResolvedTrainConfig, options: TrainOptions): Promise<TrainResult> {
  const log = options.log ?? ((line: string) => process.stderr.write(line + '\n'));
  const out = options.out;
  const mode = checkRunDirectory(out, options);
  const config = mode === 'resume' ? readRunConfig(out) : requested;
  if (mode === 'resume' && existsSync(join(out, DONE_FILE))) {
    log(`${out}: already finished`);
    const history = readHistory(out);
    return { summary: JSON.parse(readFileSync(join(out, DONE_FILE), 'utf8')) as RunSummary, history, out };
  }

  // The data is read before the run directory is made or changed: a wrong --data-dir or a damaged
  // file must not leave behind a run directory (which a corrected command would then refuse) nor
  // remove the run that --overwrite would replace.
  const train = loadDataset(config.dataset, { dataDir: config.dataDir ?? undefined, split: 'train', limit: config.limitTrain ?? undefined });
  const test = loadDataset(config.dataset, { dataDir: config.dataDir ?? undefined, split: 'test', limit: config.limitTest ?? undefined });
  // The learning-rate schedule is checked before the run directory is touched too: too few steps
  // for the warmup (tiny data, one epoch) is a setting to change, not a half-made run.
  const dropLast = train.count >= config.batchSize * 2;
  const microPerEpoch = countBatches(train.count, config.batchSize, dropLast);
  const stepsPerEpoch = Math.max(1, Math.floor(microPerEpoch / config.accumulation));
  const warmupSteps = Math.round(config.warmupEpochs * stepsPerEpoch);
  const totalSteps = config.epochs * stepsPerEpoch;
  if (!(totalSteps > warmupSteps)) {
    throw new TrainingError(`warmup-epochs ${config.warmupEpochs} leaves no steps after the warmup: ${config.epochs} epoch(s) of ${stepsPerEpoch} step(s) ` +
      `(${train.count} training images, batch size ${config.batchSize}) make ${totalSteps} steps and the warmup takes ${warmupSteps}; use fewer warmup-epochs or more epochs`);
  }
  const schedule = new WarmupCosineSchedule({ baseLr: config.lr, minLr: config.minLr, warmupStartLr: config.warmupLr, warmupSteps, totalSteps });
  prepareRunDirectory(out, mode);
  if (mode === 'fresh') writeFileAtomic(join(out, CONFIG_FILE), JSON.stringify(toStoredConfig(config), null, 2) + '\n');

  setNumThreads(config.threads);
  manualSeed(config.seed);
  // A fixed probe subset of the training images for the paper's Eq. 1 / Eq. 2 losses.
  const order = Int32Array.from({ length: train.count }, (_, index) => index);
  new Random(deriveSeed(config.seed, 777)).shuffle(order);
  const probe = subsetDataset(train, order.slice(0, Math.min(config.probeSize, train.count)));

  const model = createModel(config.model, {
    imageSize: train.height, inChannels: train.channels, numClasses: train.numClasses, dropPathRate: config.dropPath,
    dropRate: config.dropout, layerScale: config.layerScale, maskPatchSize: config.maskPatchSize ?? undefined,
  });
  if (config.device !== 'cpu') model.to({ device: config.device as 'cuda' });
  const optimizer = buildOptimizer(model, config);
  const loader = new BatchLoader(train, {
    batchSize: config.batchSize, shuffle: true, dropLast, seed: config.seed,
    augment: { cropPadding: config.cropPadding, hflip: config.hflip, randomErasing: config.randomErasing },
    mixup: config.mixup > 0 || config.cutmix > 0
      ? { mixupAlpha: config.mixup, cutmixAlpha: config.cutmix, switchProb: config.mixupSwitchProb, prob: config.mixupProb, labelSmoothing: config.labelSmoothing, numClasses: train.numClasses }
      : undefined,
    prefetch: 3, useWorker: config.workers,
  });
  const ema = config.ema ? new ModelEma(model, { decay: config.emaDecay }) : null;
  const stepConfig: StepConfig = {
    method: config.method, ratio: config.ratio, subWeight: config.subWeight, lossScale: config.accumulation,
    criterion: { kind: config.loss, labelSmoothing: config.labelSmoothing, bceTargetThreshold: config.bceTargetThreshold },
  };

  let state: TrainingState = {
    version: 1, epoch: 0, globalStep: 0, wallSeconds: 0, bestAcc1: -1, bestEpoch: 0, skippedSteps: 0, history: [],
    optimizer: tidy(() => optimizer.stateDict().scalars), emaUpdates: ema ? 0 : null,
  };
  const checkpointPath = join(out, CHECKPOINT_FILE);
  if (mode === 'resume' && existsSync(checkpointPath)) {
    const parts = loadCheckpoint(checkpointPath);
    try {
      model.loadStateDict(parts.model);
      optimizer.loadStateDict(parts.optimizer);
      if (ema && parts.ema) ema.loadStateDict({ tensors: parts.ema, updates: parts.state.emaUpdates ?? 0 });
      setRngState(new Uint8Array(parts.rngState.toBytes()));
      state = parts.state;
    } catch (error) {
      throw new TrainingError(`cannot resume from ${checkpointPath}: ${(error as Error).message}`);
    } finally {
      disposeCheckpoint(parts);
    }
    // A kill between the checkpoint's rename and the metrics' leaves metrics.jsonl an epoch behind;
    // the checkpoint is the record, the metrics files are derived from it.
    let metricsBehind = true;
    try {
      metricsBehind = readHistory(out).length !== state.history.length;
    } catch {
      // unreadable metrics are rewritten from the checkpoint as well
    }
    if (metricsBehind) writeMetrics(out, state.history);
    log(`resumed ${out} after epoch ${state.epoch} (step ${state.globalStep})`);
  }

  // Test hooks (fault-injection tests): multiply the input of global step k (0-based) by NaN, once
  // per process (a skipped step does not advance the step counter); sleep between writing the
  // checkpoint's temporary file and renaming it, so a test can kill the process mid-write.
  let injectNanStep = process.env.MASKSUB_INJECT_NAN_AT_STEP ? Number(process.env.MASKSUB_INJECT_NAN_AT_STEP) : -1;
  const slowCheckpointMs = Number(process.env.MASKSUB_TEST_SLOW_CHECKPOINT_MS ?? 0);
  const checkpointWrite = slowCheckpointMs > 0
    ? { beforeRename: () => { Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, slowCheckpointMs); } }
    : undefined;
  const started = performance.now();
  const wallBase = state.wallSeconds;
  const progress = new Progress(log);
  let epochsThisCall = 0;
  try {
    while (state.epoch < config.epochs) {
      if (options.stopAfterEpochs !== undefined && epochsThisCall >= options.stopAfterEpochs) break;
      const epoch = state.epoch + 1;
      model.train();
      let sums = { loss: 0, main: 0, sub: 0, normMain: 0, normSub: 0, steps: 0, micro: 0, images: 0, stepSeconds: 0 };
      const epochStart = performance.now();
      progress.start(epoch, config.epochs, microPerEpoch);
      let microIndex = 0;
      for await (const batch of loader.epochBatches(epoch - 1)) {
        const stepStart = performance.now();
        const lr = schedule.lr(state.globalStep);
        applyLr(optimizer, lr);
        // A skipped step must leave no trace, but its forward pass already folded the bad batch into
        // BatchNorm's running statistics; keep a copy to put back.
        const savedBuffers = config.skipNonFinite ? noGrad(() => model.buffers().map((buffer) => keep(buffer.clone()))) : [];
        const result = tidy(() => {
          let { images, labels, soft } = batchTensors(batch.images, batch.labels, batch.softTargets, train, config.device);
          if (state.globalStep === injectNanStep) {
            images = images.mul(Number.NaN);
            injectNanStep = -1;
          }
          return methodStep(model, images, soft ?? labels, stepConfig);
        });
        microIndex++;
        const finite = result.finite && Number.isFinite(result.gradNormMain) && (result.gradNormSub === null || Number.isFinite(result.gradNormSub));
        if (!finite && config.skipNonFinite) noGrad(() => model.buffers().forEach((buffer, index) => buffer.copy_(savedBuffers[index])));
        for (const saved of savedBuffers) saved.dispose();
        if (!finite) {
          optimizer.zeroGrad();
          if (!config.skipNonFinite) {
            throw new TrainingError(`non-finite loss (${result.loss}) at epoch ${epoch}, step ${microIndex} of ${microPerEpoch} (global step ${state.globalStep + 1}); training stopped. ` +
              (state.epoch > 0 ? `The last good checkpoint (epoch ${state.epoch}) in ${out} was kept` : `No epoch had finished, so ${out} holds no checkpoint yet`) +
              `; to continue, lower lr (or set skip_non_finite: true to skip such steps) ` +
              `in ${join(out, CONFIG_FILE)} and run train --out ${out} --resume`);
          }
          state.skippedSteps++;
          continue;
        }
        sums.loss += result.loss; sums.main += result.lossMain; sums.sub += result.lossSub ?? 0;
        sums.normMain += result.gradNormMain; sums.normSub += result.gradNormSub ?? 0; sums.micro++;
        sums.images += batch.size;
        if (microIndex % config.accumulation === 0) {
          if (config.clipGrad !== null) clipGradNorm(model.parameters(), config.clipGrad);
          optimizer.step();
          optimizer.zeroGrad();
          ema?.update(model);
          state.globalStep++;
          sums.steps++;
        }
        sums.stepSeconds += (performance.now() - stepStart) / 1000;
        progress.update(microIndex, result.loss, sums.images / ((performance.now() - epochStart) / 1000));
      }
      optimizer.zeroGrad();
      const trainSeconds = (performance.now() - epochStart) / 1000;
      const evaluation = evaluate(model, test, Math.max(config.batchSize, 256), config.device);
      const probeGenerator = new Generator(deriveSeed(config.seed, 4242));
      const probeStandard = evaluate(model, probe, 256, config.device);
      const probeMasked = evaluate(model, probe, 256, config.device, { maskRatio: config.probeMaskRatio, generator: probeGenerator });
      let emaAcc1: number | null = null;
      if (ema) {
        ema.swap(model);
        try {
          emaAcc1 = evaluate(model, test, Math.max(config.batchSize, 256), config.device).acc1;
        } finally {
          ema.swap(model);
        }
      }
      const micro = Math.max(1, sums.micro);
      const sub = hasSubModel(config.method);
      const row: EpochMetrics = {
        epoch, lr: schedule.lr(Math.max(0, state.globalStep - 1)),
        train_loss: sums.loss / micro, train_loss_main: sums.main / micro, train_loss_sub: sub ? sums.sub / micro : null,
        probe_loss_standard: probeStandard.loss, probe_loss_masked: probeMasked.loss,
        grad_norm_main: sums.normMain / micro, grad_norm_sub: sub ? sums.normSub / micro : null,
        test_loss: evaluation.loss, test_acc1: evaluation.acc1, test_acc5: evaluation.acc5,
        step_time_s: sums.stepSeconds / Math.max(1, sums.steps), images_per_s: sums.images / trainSeconds,
        wall_s: wallBase + (performance.now() - started) / 1000,
      };
      if (ema) row.ema_test_acc1 = emaAcc1;
      if (config.skipNonFinite) row.skipped_steps = state.skippedSteps;
      const improved = evaluation.acc1 > state.bestAcc1;
      state = {
        ...state, epoch, wallSeconds: row.wall_s, history: [...state.history, row],
        bestAcc1: improved ? evaluation.acc1 : state.bestAcc1, bestEpoch: improved ? epoch : state.bestEpoch,
        optimizer: tidy(() => optimizer.stateDict().scalars), emaUpdates: ema ? ema.updates : null,
      };
      // Weights first, then the checkpoint that points past them, then the metrics derived from it.
      saveSafetensors(join(out, MODEL_FILE), model.stateDict(), { format: 'pt', epoch: String(epoch) });
      if (improved) saveSafetensors(join(out, BEST_FILE), model.stateDict(), { format: 'pt', epoch: String(epoch) });
      tidy(() => {
        const optimizerState = optimizer.stateDict();
        const rng = getRngState();
        saveCheckpoint(checkpointPath, {
          model: model.stateDict(), optimizer: optimizerState, ema: ema ? new Map(ema.tensors) : null,
          rngState: tensor(rng), state,
        }, checkpointWrite);
      });
      writeMetrics(out, state.history);
      progress.finish(row);
      epochsThisCall++;
    }
  } finally {
    await loader.close();
    model.dispose();
    optimizer.dispose();
    ema?.dispose();
  }

  if (state.epoch < config.epochs) return { summary: null, history: state.history, out };
  const summary: RunSummary = {
    finished: true, epochs: state.epoch, final_test_acc1: state.history[state.history.length - 1].test_acc1,
    best_test_acc1: state.bestAcc1, best_epoch: state.bestEpoch, wall_s: state.wallSeconds,
    mean_step_time_s: state.history.reduce((total, row) => total + row.step_time_s, 0) / state.history.length,
  };
  writeFileAtomic(join(out, DONE_FILE), JSON.stringify(summary, null, 2) + '\n');
  return { summary, history: state.history, out };
}

export function readHistory(out: string): EpochMetrics[] {
  const path = join(out, METRICS_FILE);
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8').split('\n').filter((line) => line.trim()).map((line) => JSON.parse(line) as EpochMetrics);
}
