// Writes synthetic comparison directories in the run format, for the report's tests and for
// trying the report without training anything. The numbers are made up (a seeded generator with
// plausible shapes); every config says so in its machine string, and so does every chart title.

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { CONFIG_FILE, DONE_FILE, type EpochMetrics, METRICS_FILE, type ResolvedConfigCore, type RunSummary } from '../run/format.js';
import { describeMethod, type Method } from '../masksub/methods.js';

export interface SyntheticRun {
  method: Method;
  ratio: number;
  seed: number;
  /** Epochs written to metrics.jsonl; fewer than the comparison's epochs leaves the run unfinished. */
  epochsDone?: number;
  /** Directory name under runs/; default <method>-s<seed>. */
  directoryName?: string;
}

export interface SyntheticComparisonOptions {
  epochs: number;
  runs: readonly SyntheticRun[];
  dataset?: string;
  model?: string;
  machine?: string;
  limit_train?: number | null;
  steps_per_epoch?: number;
  preset?: string | null;
}

/** mulberry32: a tiny deterministic generator, so a fixture is identical on every machine. */
function createRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let mixed = state;
    mixed = Math.imul(mixed ^ (mixed >>> 15), mixed | 1);
    mixed ^= mixed + Math.imul(mixed ^ (mixed >>> 7), mixed | 61);
    return ((mixed ^ (mixed >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Final-accuracy shift of each method against the baseline, shaped like the paper's Table A.5.
 * Keyed by the method table, so a new method does not compile until it has a shape here.
 */
const ACCURACY_SHIFT: Record<Method, (ratio: number) => number> = {
  baseline: () => 0,
  masking: (ratio) => -4 * ratio * ratio,
  dropout: () => -0.3,
  droppath: () => -0.3,
  masksub: (ratio) => 1.4 - 1.2 * (ratio - 0.5) ** 2,
  dropsub: () => 0.7,
  pathsub: () => 0.7,
};

function stepCost(method: Method, ratio: number): number {
  const { subModel, regularizer } = describeMethod(method);
  if (!subModel) return 1;
  return regularizer === 'mask' ? 1 + (1 - ratio) : 2; // a masked sub forward sees fewer tokens
}

function syntheticEpochs(run: SyntheticRun, options: SyntheticComparisonOptions): EpochMetrics[] {
  let methodHash = 0;
  for (const character of run.method) methodHash = (Math.imul(methodHash, 31) + character.charCodeAt(0)) >>> 0;
  const random = createRandom(run.seed * 7919 + Math.round(run.ratio * 1000) * 31 + methodHash);
  const noise = (scale: number): number => (random() - 0.5) * 2 * scale;
  const hasSub = describeMethod(run.method).subModel;
  const subWeight = hasSub ? 0.5 : 0;
  const finalAccuracy = 86 + ACCURACY_SHIFT[run.method](run.ratio) + noise(0.35);
  const stepsPerEpoch = options.steps_per_epoch ?? 100;
  const stepTime = 0.04 * stepCost(run.method, run.ratio) * (1 + noise(0.03));
  const epochsDone = Math.min(run.epochsDone ?? options.epochs, options.epochs);
  const maskedGap = run.method === 'masking' || hasSub ? 0.35 : 0.9;
  const rows: EpochMetrics[] = [];
  for (let epoch = 1; epoch <= epochsDone; epoch++) {
    const progress = 1 - Math.exp((-5 * epoch) / options.epochs);
    const accuracy = Math.min(100, 45 + (finalAccuracy - 45) * progress + noise(0.5));
    const standardLoss = 1.5 - 1.15 * progress - (run.method === 'masksub' ? 0.06 * progress : 0) + noise(0.01);
    const gradMain = (1 - subWeight) * (1.6 - 0.6 * progress + noise(0.03));
    rows.push({
      epoch,
      lr: 0.001 * 0.5 * (1 + Math.cos((Math.PI * epoch) / options.epochs)),
      train_loss: standardLoss + (hasSub ? 0.2 : 0),
      train_loss_main: standardLoss + 0.05,
      train_loss_sub: hasSub ? 0.1 + 0.5 * progress + noise(0.01) : null,
      probe_loss_standard: standardLoss,
      probe_loss_masked: standardLoss + maskedGap * (1 - 0.3 * progress) + noise(0.01),
      grad_norm_main: gradMain,
      // Fig. 3's shape: the sub gradient starts small and grows while the main model gets sure.
      grad_norm_sub: hasSub ? subWeight * (0.15 + 0.9 * progress + noise(0.02)) : null,
      test_loss: standardLoss + 0.1,
      test_acc1: accuracy,
      test_acc5: Math.min(100, accuracy + 10 * (1 - accuracy / 100) * 8),
      step_time_s: stepTime * (1 + noise(0.02)),
      images_per_s: 128 / stepTime,
      wall_s: epoch * (stepsPerEpoch * stepTime + 3),
    });
  }
  return rows;
}

/** Writes DIR/runs/<name>/{config.json, metrics.jsonl, done.json when finished}. */
export function writeSyntheticComparison(directory: string, options: SyntheticComparisonOptions): void {
  for (const run of options.runs) {
    const runDirectory = join(directory, 'runs', run.directoryName ?? `${run.method}-s${run.seed}`);
    mkdirSync(runDirectory, { recursive: true });
    const config: ResolvedConfigCore & Record<string, unknown> = {
      dataset: options.dataset ?? 'fashion-mnist',
      model: options.model ?? 'vit-tiny-p4',
      method: run.method,
      ratio: run.ratio,
      sub_weight: describeMethod(run.method).subModel ? 0.5 : 0,
      epochs: options.epochs,
      batch_size: 128,
      lr: 0.001,
      seed: run.seed,
      device: 'cpu',
      limit_train: options.limit_train === undefined ? 8000 : options.limit_train,
      threads: 2,
      machine: options.machine ?? 'synthetic fixture (not a real run)',
      optimizer: 'adamw',
      preset: options.preset ?? null,
    };
    writeFileSync(join(runDirectory, CONFIG_FILE), `${JSON.stringify(config, null, 2)}\n`);
    const epochs = syntheticEpochs(run, options);
    writeFileSync(join(runDirectory, METRICS_FILE), epochs.map((row) => `${JSON.stringify(row)}\n`).join(''));
    const last = epochs.at(-1);
    if (last === undefined || epochs.length < options.epochs) continue;
    const best = epochs.reduce((top, row) => (row.test_acc1 > top.test_acc1 ? row : top));
    const summary: RunSummary = {
      finished: true,
      epochs: options.epochs,
      final_test_acc1: last.test_acc1,
      best_test_acc1: best.test_acc1,
      best_epoch: best.epoch,
      wall_s: last.wall_s + 1.5,
      mean_step_time_s: epochs.reduce((total, row) => total + row.step_time_s, 0) / epochs.length,
    };
    writeFileSync(join(runDirectory, DONE_FILE), `${JSON.stringify(summary, null, 2)}\n`);
  }
}

/**
 * The fixture the tests use: baseline, masking and MaskSub at r = 0.5 with three seeds, one
 * unfinished MaskSub seed, and a MaskSub ratio sweep (0.25, 0.75) in the -r<ratio>- naming.
 */
export function defaultSyntheticRuns(): SyntheticRun[] {
  const runs: SyntheticRun[] = [];
  for (const seed of [0, 1, 2]) {
    runs.push({ method: 'baseline', ratio: 0, seed });
    runs.push({ method: 'masking', ratio: 0.5, seed });
  }
  for (const seed of [0, 1]) runs.push({ method: 'masksub', ratio: 0.5, seed });
  runs.push({ method: 'masksub', ratio: 0.5, seed: 2, epochsDone: 3 });
  for (const ratio of [0.25, 0.75]) {
    for (const seed of [0, 1]) runs.push({ method: 'masksub', ratio, seed, directoryName: `masksub-r${ratio}-s${seed}` });
  }
  return runs;
}
