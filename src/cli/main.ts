#!/usr/bin/env node
// The `masksub` command: train | eval | compare | report | models | presets.
// Every bad value is reported (exit code 2) before any work starts.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { loadDataset } from '../data/datasets.js';
import { createModel, describeModel, modelNames } from '../models/factory.js';
import { renderReport } from '../report/index.js';
import { blasLibraries, buildInfo, getNumThreads, setNumThreads } from '../tensor/native.js';
import { loadSafetensors } from '../tensor/safetensors.js';
import { compare, parseMethods, parseNumberList } from '../experiment/compare.js';
import { BEST_FILE, MODEL_FILE, RunError } from '../run/index.js';
import { buildConfig, ConfigError, configKey, PRESETS } from '../train/config.js';
import { evaluate, type FaultHooks, readRunConfig, train, TrainingError } from '../train/trainer.js';

/**
 * SIGINT / SIGTERM stop training after the current step (the last finished epoch's checkpoint is
 * what a resume continues from); a second signal ends the process at once.
 */
function interruptionSignal(): { signal: AbortSignal; received: () => NodeJS.Signals | null; dispose: () => void } {
  const controller = new AbortController();
  let received: NodeJS.Signals | null = null;
  const handler = (name: NodeJS.Signals): void => {
    if (received) process.exit(name === 'SIGINT' ? 130 : 143);
    received = name;
    process.stderr.write(`\nmasksub: ${name} received; stopping after the current step (send it again to stop at once)\n`);
    controller.abort();
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return {
    signal: controller.signal,
    received: () => received,
    dispose: () => {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    },
  };
}

/** Test-only fault injection (test/faults.test.ts); the library itself never reads the environment for it. */
function faultHooksFromEnvironment(): FaultHooks {
  const nan = process.env.MASKSUB_INJECT_NAN_AT_STEP;
  const slowMs = Number(process.env.MASKSUB_TEST_SLOW_CHECKPOINT_MS ?? 0);
  return {
    nanAtStep: nan ? Number(nan) : undefined,
    beforeCheckpointRename: slowMs > 0 ? () => { Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, slowMs); } : undefined,
  };
}

const USAGE = `masksub — MaskSub (masked sub-model) training on libtorch

Usage:
  masksub train   --dataset D --model M --method X [--ratio R] [--epochs N] [--batch-size B] [--lr LR]
                  [--seed S] [--device cpu|cuda] [--limit-train N] [--config FILE] [--preset NAME]
                  --out RUN_DIR [--resume | --overwrite]
  masksub eval    --checkpoint RUN_DIR [--dataset D] [--best]
  masksub compare --methods baseline,masking,masksub --seeds 0,1 [--ratios 0.25,0.5,0.75]
                  [--preset P | train flags] --out DIR
  masksub report  DIR
  masksub models | presets

Methods: baseline, masking, dropout, droppath (single model); masksub, dropsub, pathsub (sub-model).
Every train setting can also come from a YAML file (--config), e.g. "lr: 0.001" or "batch-size: 64".`;

type Flags = Record<string, string | boolean>;

const BOOLEAN_FLAGS = new Set(['resume', 'overwrite', 'best', 'help', 'hflip', 'ema', 'nesterov', 'workers', 'skip-non-finite']);

export function parseArguments(argv: string[]): { command: string | undefined; positional: string[]; flags: Flags } {
  const [command, ...rest] = argv;
  const positional: string[] = [];
  const flags: Flags = {};
  for (let i = 0; i < rest.length; i++) {
    const argument = rest[i];
    if (!argument.startsWith('--')) {
      positional.push(argument);
      continue;
    }
    const [name, inline] = argument.slice(2).split(/=(.*)/s, 2);
    if (name.startsWith('no-') && BOOLEAN_FLAGS.has(name.slice(3))) {
      flags[name.slice(3)] = false;
    } else if (inline !== undefined) {
      flags[name] = inline;
    } else if (BOOLEAN_FLAGS.has(name) && (rest[i + 1] === undefined || rest[i + 1].startsWith('--') || !['true', 'false'].includes(rest[i + 1]))) {
      flags[name] = true;
    } else {
      const value = rest[i + 1];
      if (value === undefined || value.startsWith('--')) throw new ConfigError(`--${name} needs a value`);
      flags[name] = value;
      i++;
    }
  }
  return { command, positional, flags };
}

function take(flags: Flags, name: string): string | undefined {
  const value = flags[name];
  delete flags[name];
  if (value === undefined) return undefined;
  if (typeof value === 'boolean') throw new ConfigError(`--${name} needs a value`);
  return value;
}

function takeBoolean(flags: Flags, name: string): boolean {
  const value = flags[name];
  delete flags[name];
  return value === true || value === 'true';
}

/** The remaining flags must all be training settings. */
function settingFlags(flags: Flags): Record<string, unknown> {
  for (const name of Object.keys(flags)) {
    if (!configKey(name)) throw new ConfigError(`unknown option --${name} (see masksub --help)`);
  }
  return { ...flags };
}

async function commandTrain(flags: Flags): Promise<void> {
  const out = take(flags, 'out');
  if (!out) throw new ConfigError('train needs --out RUN_DIR');
  const resume = takeBoolean(flags, 'resume');
  const overwrite = takeBoolean(flags, 'overwrite');
  if (resume && overwrite) throw new ConfigError('--resume and --overwrite exclude each other');
  const preset = take(flags, 'preset') ?? null;
  const file = take(flags, 'config') ?? null;
  if (resume && (preset || file || Object.keys(flags).length)) {
    // A resumed run continues with the settings it started with, so that it ends as it would have.
    throw new ConfigError(`--resume continues ${out} with its saved settings and takes no other settings (got ${[preset ? '--preset' : '', file ? '--config' : '', ...Object.keys(flags).map((name) => `--${name}`)].filter(Boolean).join(', ')}); to change them, edit ${out}/config.json`);
  }
  const config = resume ? buildConfig({}) : buildConfig({ preset, file, flags: settingFlags(flags) });
  const stop = interruptionSignal();
  let result;
  try {
    result = await train(config, { out, resume, overwrite, log: (line) => console.log(line), signal: stop.signal, faults: faultHooksFromEnvironment() });
  } finally {
    stop.dispose();
  }
  if (result.interrupted) {
    console.log(`stopped by ${stop.received() ?? 'a signal'} after epoch ${result.history.length}; continue with: masksub train --out ${out} --resume`);
    process.exitCode = stop.received() === 'SIGTERM' ? 143 : 130;
    return;
  }
  if (result.summary) {
    console.log(`finished: final top-1 ${result.summary.final_test_acc1.toFixed(2)}%, best ${result.summary.best_test_acc1.toFixed(2)}% (epoch ${result.summary.best_epoch}); run in ${out}`);
  }
}

async function commandEval(flags: Flags): Promise<void> {
  const runDirectory = take(flags, 'checkpoint');
  if (!runDirectory) throw new ConfigError('eval needs --checkpoint RUN_DIR');
  const best = takeBoolean(flags, 'best');
  const datasetFlag = take(flags, 'dataset');
  const dataDir = take(flags, 'data-dir');
  const batchSize = Number(take(flags, 'batch-size') ?? 256);
  if (Object.keys(flags).length) throw new ConfigError(`eval: unknown option --${Object.keys(flags)[0]}`);
  const config = readRunConfig(runDirectory);
  const weights = join(runDirectory, best ? BEST_FILE : MODEL_FILE);
  if (!existsSync(weights)) throw new TrainingError(`${weights}: not found (the run has not finished an epoch yet)`);
  setNumThreads(config.threads);
  const dataset = loadDataset((datasetFlag ?? config.dataset) as typeof config.dataset, { dataDir: dataDir ?? config.dataDir ?? undefined, split: 'test', limit: config.limitTest ?? undefined });
  const model = createModel(config.model, {
    imageSize: dataset.height, inChannels: dataset.channels, numClasses: dataset.numClasses,
    layerScale: config.layerScale, maskPatchSize: config.maskPatchSize ?? undefined,
  });
  const { tensors } = loadSafetensors(weights);
  try {
    model.loadStateDict(tensors);
  } catch (error) {
    throw new TrainingError(`${weights} does not fit model ${config.model}: ${(error as Error).message}`);
  } finally {
    for (const tensor of tensors.values()) tensor.dispose();
  }
  if (config.device !== 'cpu') model.to({ device: config.device as 'cuda' });
  const result = evaluate(model, dataset, batchSize, config.device);
  console.log(JSON.stringify({ checkpoint: weights, dataset: dataset.name, images: dataset.count, test_loss: result.loss, test_acc1: result.acc1, test_acc5: result.acc5 }));
  model.dispose();
}

async function commandCompare(flags: Flags): Promise<void> {
  const out = take(flags, 'out');
  if (!out) throw new ConfigError('compare needs --out DIR');
  const methods = parseMethods(take(flags, 'methods') ?? 'baseline,masking,masksub');
  const seeds = parseNumberList('--seeds', take(flags, 'seeds') ?? '0,1', (value) => Number.isInteger(value) && value >= 0, 'a non-negative integer');
  const ratiosText = take(flags, 'ratios');
  const ratioText = take(flags, 'ratio');
  if (ratioText !== undefined && ratiosText !== undefined) throw new ConfigError('--ratio and --ratios exclude each other');
  // One explicit ratio applies to every method but the baseline, as a one-point sweep.
  const sweep = ratiosText ?? ratioText;
  const ratios = sweep !== undefined ? parseNumberList(ratiosText !== undefined ? '--ratios' : '--ratio', sweep, (value) => value > 0 && value < 1, 'in (0, 1)') : null;
  const preset = take(flags, 'preset') ?? null;
  const file = take(flags, 'config') ?? null;
  const base = buildConfig({ preset, file, flags: settingFlags(flags) });
  const started = performance.now();
  const stop = interruptionSignal();
  let files;
  try {
    files = await compare(base, { out, methods, seeds, ratios, log: (line) => console.log(line), signal: stop.signal });
  } finally {
    stop.dispose();
  }
  if (!files) {
    console.log(`stopped by ${stop.received() ?? 'a signal'}; run the same command again to continue the comparison`);
    process.exitCode = stop.received() === 'SIGTERM' ? 143 : 130;
    return;
  }
  console.log(`compare finished in ${((performance.now() - started) / 1000).toFixed(0)} s; report: ${files.html}`);
}

async function main(argv: string[]): Promise<number> {
  const { command, positional, flags } = parseArguments(argv);
  if (!command || command === '--help' || command === 'help' || flags.help) {
    console.log(USAGE);
    return command ? 0 : 2;
  }
  switch (command) {
    case 'train': await commandTrain(flags); return 0;
    case 'eval': await commandEval(flags); return 0;
    case 'compare': await commandCompare(flags); return 0;
    case 'report': {
      const directory = positional[0];
      if (!directory) throw new ConfigError('report needs a comparison directory: masksub report DIR');
      const files = await renderReport(directory);
      console.log(`wrote ${files.results}, ${files.markdown}, ${files.html}`);
      return 0;
    }
    case 'models':
      for (const name of modelNames()) console.log(`${name.padEnd(24)} ${describeModel(name).description}`);
      return 0;
    case 'presets':
      for (const [name, preset] of Object.entries(PRESETS)) console.log(`${name.padEnd(18)} ${preset.description}`);
      return 0;
    case 'info':
      console.log(JSON.stringify({ ...buildInfo(), threads: getNumThreads(), blas: blasLibraries() }, null, 2));
      return 0;
    default:
      throw new ConfigError(`unknown command '${command}'\n\n${USAGE}`);
  }
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (error: unknown) => {
    const message = error instanceof Error ? error.message : String(error);
    const userError = error instanceof ConfigError || error instanceof RunError;
    console.error(`masksub: ${message}`);
    if (!userError && process.env.MASKSUB_DEBUG && error instanceof Error) console.error(error.stack);
    process.exitCode = error instanceof ConfigError ? 2 : 1;
  },
);
