#!/usr/bin/env node
// The `masksub` command: train | eval | compare | report | models | presets | info.
// Every bad value is reported (exit code 2) before any work starts; the options and help texts
// come from the command table (help.ts) and the configuration schema (train/config.ts).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { type DatasetName, loadDataset } from '../data/datasets.js';
import { checkExportDirectory, exportSplit } from '../data/export-images.js';
import { loadEmojiDataset } from '../data/emoji.js';
import { isTextDatasetName } from '../data/text/text-dataset.js';
import { compare } from '../experiment/compare.js';
import { describeModel, modelNames } from '../models/factory.js';
import type { Module } from '../nn/module.js';
import { renderReport } from '../report/index.js';
import { BEST_FILE, MODEL_FILE, RunError } from '../run/index.js';
import { blasLibraries, buildInfo, getNumThreads, setNumThreads } from '../tensor/native.js';
import { loadSafetensors } from '../tensor/safetensors.js';
import {
  buildConfig, buildSettings, closestName, ConfigError, configKey, describeValues, parseSettingText, PRESETS,
  type ResolvedTrainConfig, settingDocs, suggestSetting, type SettingName, type TrainConfig,
} from '../train/config.js';
import { buildModel, evaluate, type FaultHooks, loadSplit, loadTextData, readRunConfig, TOKENIZER_FILE, train, TrainingError } from '../train/trainer.js';
import { type EvalData, isTextData } from '../train/evaluate.js';
import type { Classifier } from '../models/classifier.js';
import { clipModelNames, describeClipModel, isClipModel } from '../models/clip.js';
import { buildClip, type ClipData, evaluateClip, loadClipData, RECALL_KS } from '../train/clip.js';
import { launchLocal, type World, WORKER_ENV, worldFromEnvironment } from '../distributed/index.js';
import { type CommandName, COMMANDS, type CommandSpec, commandHelp, isCommand, overviewHelp } from './help.js';

// ---------------------------------------------------------------------------------------------
// Output that never stops a run

// A reader that goes away (`masksub train ... | head -1`) makes the next write fail with EPIPE,
// which Node raises as an 'error' event that would end the process mid-training. Output is only
// progress: once a stream has failed, further lines to it are dropped and the work goes on.
const broken = new Set<NodeJS.WriteStream>();
for (const stream of [process.stdout, process.stderr]) stream.on('error', () => { broken.add(stream); });

function write(stream: NodeJS.WriteStream, line: string): void {
  if (broken.has(stream) || stream.destroyed) return;
  try {
    stream.write(`${line}\n`);
  } catch {
    broken.add(stream);
  }
}

const say = (line: string): void => write(process.stdout, line);
const complain = (line: string): void => write(process.stderr, line);

// ---------------------------------------------------------------------------------------------
// Arguments

type Flags = Record<string, string | boolean>;

/** The settings a command takes as flags: all but those it sets itself. */
function commandSettings(spec: CommandSpec): SettingName[] {
  if (spec.settings === null) return [];
  const sets: Partial<Record<SettingName, string>> = spec.settings.sets;
  return settingDocs().map((setting) => setting.name).filter((name) => sets[name] === undefined);
}

/** How a flag name is taken by a command: its own option, a setting, or neither. */
function lookup(spec: CommandSpec, name: string): { kind: 'option' | 'setting'; switch: boolean } | null {
  const option = spec.options.find((candidate) => candidate.flag === name);
  if (option) return { kind: 'option', switch: option.placeholder === null };
  const setting = spec.settings === null ? undefined : configKey(name);
  if (setting !== undefined) return { kind: 'setting', switch: settingDocs().find((doc) => doc.name === setting)?.placeholder === null };
  return null;
}

function unknownOption(command: CommandName, spec: CommandSpec, name: string): ConfigError {
  const own = closestName(name, spec.options.map((option) => option.flag));
  const sets: Partial<Record<SettingName, string>> = spec.settings?.sets ?? {};
  const setting = spec.settings === null ? undefined : suggestSetting(name);
  const near = own ?? (setting !== undefined && sets[configKey(setting) as SettingName] === undefined ? setting : undefined);
  return new ConfigError(`unknown option --${name}${near ? `; did you mean --${near}?` : ''} (see masksub ${command} --help)`);
}

/**
 * The command's flags and positional arguments. Switches (true/false settings and options such as
 * --resume) take no value, or true/false after them or after '='; --no-X sets a switch X false.
 */
export function parseArguments(command: CommandName, argv: readonly string[]): { positional: string[]; flags: Flags } {
  const spec: CommandSpec = COMMANDS[command];
  const positional: string[] = [];
  const flags: Flags = {};
  for (let index = 0; index < argv.length; index++) {
    const argument = argv[index];
    if (!argument.startsWith('--') || argument === '--') {
      if (positional.length >= spec.positional.length) {
        const previous = argv[index - 1];
        const previousName = previous?.startsWith('--') && !previous.includes('=') ? previous.slice(2) : null;
        if (previousName !== null && lookup(spec, previousName)?.switch) {
          throw new ConfigError(`--${previousName} is a true/false switch: write --${previousName}, --no-${previousName} or --${previousName}=false (got '${argument}' after it)`);
        }
        throw new ConfigError(`${command}: unexpected argument '${argument}' (see masksub ${command} --help)`);
      }
      positional.push(argument);
      continue;
    }
    const [name, inline] = argument.slice(2).split(/=(.*)/s, 2);
    const found = lookup(spec, name);
    if (found === null && name.startsWith('no-')) {
      const target = lookup(spec, name.slice(3));
      if (target === null) throw unknownOption(command, spec, name);
      if (!target.switch) {
        const values = target.kind === 'setting' ? ` (${describeValues(configKey(name.slice(3)) as SettingName)})` : '';
        throw new ConfigError(`--${name}: --no-X is only for true/false settings; --${name.slice(3)} takes a value${values}`);
      }
      if (inline !== undefined) throw new ConfigError(`--${name} takes no value`);
      flags[name.slice(3)] = false;
      continue;
    }
    if (found === null) throw unknownOption(command, spec, name);
    if (inline !== undefined) {
      flags[name] = inline;
    } else if (found.switch) {
      const next = argv[index + 1];
      if (next === 'true' || next === 'false') {
        flags[name] = next;
        index++;
      } else {
        flags[name] = true;
      }
    } else {
      const value = argv[index + 1];
      if (value === undefined || value.startsWith('--')) throw new ConfigError(`--${name} needs a value`);
      flags[name] = value;
      index++;
    }
  }
  return { positional, flags };
}

function take(flags: Flags, name: string): string | undefined {
  const value = flags[name];
  delete flags[name];
  if (value === undefined) return undefined;
  if (typeof value === 'boolean') throw new ConfigError(`--${name} needs a value`);
  return value;
}

function takeSwitch(flags: Flags, name: string): boolean {
  const value = flags[name];
  delete flags[name];
  if (value === undefined || value === false || value === 'false') return false;
  if (value === true || value === 'true') return true;
  throw new ConfigError(`--${name} must be true or false, got ${JSON.stringify(value)}`);
}

/** A comma-separated list of one setting's values (--seeds, --ratios, --methods), each checked by the schema; no nulls. */
function parseList<Name extends SettingName>(name: Name, text: string, flag: string): NonNullable<TrainConfig[Name]>[] {
  const items = text.split(',').map((item) => item.trim());
  if (items.every((item) => item === '')) throw new ConfigError(`${flag} needs at least one value`);
  if (items.some((item) => item === '')) throw new ConfigError(`${flag}: an empty item in '${text}'`);
  const values = items.map((item) => parseSettingText(name, item, flag, false));
  // A repeated value would plan the same run directory twice.
  if (new Set(values).size !== values.length) throw new ConfigError(`${flag} lists a value twice`);
  return values as NonNullable<TrainConfig[Name]>[];
}

// ---------------------------------------------------------------------------------------------
// Commands

/**
 * SIGINT / SIGTERM stop training after the current step (the last finished epoch's checkpoint is
 * what a resume continues from); a second signal ends the process at once.
 */
function interruptionSignal(): { signal: AbortSignal; received: () => NodeJS.Signals | null; dispose: () => void } {
  const controller = new AbortController();
  let received: NodeJS.Signals | null = null;
  const stopFor = (name: NodeJS.Signals, why: string): void => {
    if (received) process.exit(name === 'SIGINT' ? 130 : 143);
    received = name;
    complain(`\nmasksub: ${why}; stopping after the current step (send SIGINT or SIGTERM to stop at once)`);
    controller.abort();
  };
  // (Node passes a signal listener the name and the number.)
  const handler = (name: NodeJS.Signals): void => stopFor(name, `${name} received`);
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  // A worker of `train --nproc` or a run of `compare --jobs` stops as on SIGTERM when its launcher goes away.
  const orphaned = (): void => stopFor('SIGTERM', 'the launcher (train --nproc or compare --jobs) is gone');
  if (process.env[WORKER_ENV] === '1') {
    if (!process.connected) {
      orphaned();
    } else {
      process.channel?.unref();
      process.on('disconnect', orphaned);
    }
  }
  return {
    signal: controller.signal,
    received: () => received,
    dispose: () => {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
      process.off('disconnect', orphaned);
    },
  };
}

function signalExitCode(signal: NodeJS.Signals | null): number {
  return signal === 'SIGTERM' ? 143 : 130;
}

/** Test-only fault injection (test/faults.test.ts); the library itself never reads the environment for it. */
function faultHooksFromEnvironment(): FaultHooks {
  // In a data-parallel job, MASKSUB_INJECT_NAN_RANK limits the NaN to that rank.
  const nanRank = process.env.MASKSUB_INJECT_NAN_RANK;
  const nan = nanRank === undefined || nanRank === (process.env.RANK ?? '0') ? process.env.MASKSUB_INJECT_NAN_AT_STEP : undefined;
  const slowMs = Number(process.env.MASKSUB_TEST_SLOW_CHECKPOINT_MS ?? 0);
  return {
    nanAtStep: nan ? Number(nan) : undefined,
    beforeCheckpointRename: slowMs > 0 ? () => { Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, slowMs); } : undefined,
  };
}

/** argv without `--name VALUE` / `--name=VALUE`. */
function withoutOption(argv: readonly string[], name: string): string[] {
  const kept: string[] = [];
  for (let index = 0; index < argv.length; index++) {
    if (argv[index] === `--${name}`) {
      index++;
      continue;
    }
    if (argv[index]!.startsWith(`--${name}=`)) continue;
    kept.push(argv[index]!);
  }
  return kept;
}

async function commandTrain(flags: Flags): Promise<number> {
  const out = take(flags, 'out');
  if (!out) throw new ConfigError('train needs --out RUN_DIR');
  const resume = takeSwitch(flags, 'resume');
  const overwrite = takeSwitch(flags, 'overwrite');
  if (resume && overwrite) throw new ConfigError('--resume and --overwrite exclude each other');
  const nprocText = take(flags, 'nproc');
  const nproc = nprocText === undefined ? 1 : /^\d+$/.test(nprocText) ? Number(nprocText) : Number.NaN;
  if (!(nproc >= 1 && nproc <= 1024)) throw new ConfigError(`--nproc must be an integer in [1, 1024], got '${nprocText}'`);
  let world: World | null;
  try {
    world = worldFromEnvironment();
  } catch (error) {
    throw new ConfigError(`the launcher's environment: ${(error as Error).message}`);
  }
  if (nproc > 1 && world !== null) throw new ConfigError(`--nproc starts its own ${nproc} workers, but this process is already rank ${world.rank} of a job of ${world.size} (torchrun or srun); leave --nproc out`);
  const preset = take(flags, 'preset') ?? null;
  const file = take(flags, 'config') ?? null;
  if (resume && (preset || file || Object.keys(flags).length)) {
    // A resumed run continues with the settings it started with, so that it ends as it would have.
    throw new ConfigError(`--resume continues ${out} with its saved settings and takes no other settings (got ${[preset ? '--preset' : '', file ? '--config' : '', ...Object.keys(flags).map((name) => `--${name}`)].filter(Boolean).join(', ')}); to change them, edit ${out}/config.json`);
  }
  const config = resume ? buildConfig({}) : buildConfig({ preset, file, flags });
  if (nproc > 1) {
    // Every bad setting was reported above, once; the workers run this same command without --nproc.
    return launchLocal({ nproc, args: [process.argv[1]!, ...withoutOption(process.argv.slice(2), 'nproc')], log: complain });
  }
  // In a data-parallel job rank 0 speaks for all; the others print only their errors.
  const tell = world === null || world.rank === 0 ? say : () => {};
  const stop = interruptionSignal();
  let result;
  try {
    result = await train(config, { out, resume, overwrite, log: tell, signal: stop.signal, faults: faultHooksFromEnvironment(), world });
  } finally {
    stop.dispose();
  }
  if (result.interrupted) {
    tell(`stopped by ${stop.received() ?? 'a signal'} after epoch ${result.history.length}; continue with: masksub train --out ${out} --resume`);
    return signalExitCode(stop.received());
  }
  if (result.summary) {
    tell(`finished: final top-1 ${result.summary.final_test_acc1.toFixed(2)}%, best ${result.summary.best_test_acc1.toFixed(2)}% (epoch ${result.summary.best_epoch}); run in ${out}`);
  }
  return 0;
}

async function commandEval(flags: Flags): Promise<number> {
  const runDirectory = take(flags, 'checkpoint');
  if (!runDirectory) throw new ConfigError('eval needs --checkpoint RUN_DIR');
  const best = takeSwitch(flags, 'best');
  const datasetText = take(flags, 'dataset');
  const dataDirText = take(flags, 'data-dir');
  const batchSizeText = take(flags, 'batch-size');
  // The same schema as training's settings checks these values.
  const dataset = datasetText === undefined ? undefined : parseSettingText('dataset', datasetText);
  const dataDir = dataDirText === undefined ? undefined : parseSettingText('dataDir', dataDirText);
  const batchSize = batchSizeText === undefined ? 256 : parseSettingText('batchSize', batchSizeText);
  const config = readRunConfig(runDirectory);
  const weights = join(runDirectory, best ? BEST_FILE : MODEL_FILE);
  if (!existsSync(weights)) throw new TrainingError(`${weights}: not found (the run has not finished an epoch yet)`);
  setNumThreads(config.threads);
  const evalConfig = { ...config, dataset: dataset ?? config.dataset, dataDir: dataDir ?? config.dataDir };
  // A CLIP's contrastive test loss grows with the batch: by default it is taken at the run's batch size, as in its metrics.
  if (isClipModel(config.model)) return evalClip(runDirectory, weights, evalConfig, batchSizeText === undefined ? config.batchSize : batchSize);
  // A text run is evaluated with its own tokenizer (tokenizer.json in the run) and label map.
  let data: EvalData;
  let model: Classifier;
  if (isTextDatasetName(evalConfig.dataset)) {
    const text = await loadTextData(evalConfig, join(runDirectory, TOKENIZER_FILE));
    data = text.test;
    model = buildModel(config, text);
  } else {
    data = await loadSplit(evalConfig, 'test', config.limitTest, config.classes);
    // The run's own model (global pool, mask mode, LayerScale, ...): a --global-pool avg run has
    // fc_norm and no norm, which a model built from the name alone would not load.
    model = buildModel(config, { train: data, tokenizer: null });
  }
  loadRunWeights(model, weights, config);
  const result = evaluate(model, data, batchSize, config.device);
  say(JSON.stringify({ checkpoint: weights, dataset: data.name, [isTextData(data) ? 'texts' : 'images']: data.count, test_loss: result.loss, test_acc1: result.acc1, test_acc5: result.acc5 }));
  model.dispose();
  return 0;
}

/** A run's saved weights into the model built from its config, then onto the run's device. */
function loadRunWeights(model: Module, weights: string, config: ResolvedTrainConfig): void {
  const { tensors } = loadSafetensors(weights);
  try {
    model.loadStateDict(tensors);
  } catch (error) {
    throw new TrainingError(`${weights} does not fit model ${config.model}: ${(error as Error).message}`);
  } finally {
    for (const tensor of tensors.values()) tensor.dispose();
  }
  if (config.device !== 'cpu') model.to({ device: config.device as 'cuda' });
}

/** eval of a CLIP run: zero-shot top-1 / top-5, the contrastive test loss and recall@k, with the run's tokenizer. */
async function evalClip(runDirectory: string, weights: string, config: ResolvedTrainConfig, batchSize: number): Promise<number> {
  const train = await loadSplit(config, 'train', config.limitTrain, config.classes);
  const test = await loadSplit(config, 'test', config.limitTest, train.classes ?? null);
  const saved = join(runDirectory, TOKENIZER_FILE);
  if (!existsSync(saved)) throw new TrainingError(`${saved}: not found; a CLIP run keeps its captions' tokenizer there`);
  let data: ClipData;
  try {
    data = await loadClipData({ ...config, tokenizer: null }, train, test, saved);
  } catch (error) {
    throw new TrainingError((error as Error).message);
  }
  const model = buildClip(config, train, data);
  try {
    loadRunWeights(model, weights, config);
    const result = evaluateClip(model, test, data, batchSize, config.device);
    const recall = Object.fromEntries([
      ...RECALL_KS.map((k) => [`test_image_to_text_r${k}`, result.imageToText[k]]),
      ...RECALL_KS.map((k) => [`test_text_to_image_r${k}`, result.textToImage[k]]),
    ]);
    say(JSON.stringify({
      checkpoint: weights, dataset: test.name, pairs: test.count, test_loss: result.loss, zero_shot_top1: result.acc1, zero_shot_top5: result.acc5,
      ...recall, recall_pairs: result.recallPairs, logit_scale: result.logitScale,
    }));
    return 0;
  } finally {
    model.dispose();
  }
}

async function commandExportImages(flags: Flags): Promise<number> {
  const out = take(flags, 'out');
  if (!out) throw new ConfigError('export-images needs --out DIR');
  const datasetText = take(flags, 'dataset');
  if (!datasetText) throw new ConfigError('export-images needs --dataset NAME');
  const dataset = parseSettingText('dataset', datasetText);
  if (dataset === 'folder') throw new ConfigError('export-images writes a data set of arrays as a folder; --dataset folder is one already');
  if (isTextDatasetName(dataset)) throw new ConfigError(`export-images writes image data sets; ${dataset} is text`);
  const dataDirText = take(flags, 'data-dir');
  const dataDir = dataDirText === undefined ? undefined : parseSettingText('dataDir', dataDirText) ?? undefined;
  const limitText = { train: take(flags, 'limit-train'), test: take(flags, 'limit-test') };
  const limits = {
    train: limitText.train === undefined ? undefined : parseSettingText('limitTrain', limitText.train, '--limit-train') ?? undefined,
    test: limitText.test === undefined ? undefined : parseSettingText('limitTest', limitText.test, '--limit-test') ?? undefined,
  };
  checkExportDirectory(out);
  // Both splits are read before anything is written, so a bad --data-dir leaves no directory behind.
  const imageDataset: DatasetName = dataset;
  const splits = await Promise.all((['train', 'test'] as const).map((split) => imageDataset === 'emoji'
    ? loadEmojiDataset({ split, limit: limits[split] })
    : loadDataset(imageDataset, { dataDir, split, limit: limits[split] })));
  for (const data of splits) {
    const folder = join(out, data.split === 'train' ? 'train' : 'val');
    const count = await exportSplit(data, folder);
    say(`wrote ${count} ${data.split} images of ${data.name} to ${folder}`);
  }
  return 0;
}

async function commandCompare(flags: Flags): Promise<number> {
  const out = take(flags, 'out');
  if (!out) throw new ConfigError('compare needs --out DIR');
  const methods = parseList('method', take(flags, 'methods') ?? 'baseline,masking,masksub', '--methods');
  const seeds = parseList('seed', take(flags, 'seeds') ?? '0,1', '--seeds');
  const ratiosText = take(flags, 'ratios');
  const ratioText = take(flags, 'ratio');
  if (ratioText !== undefined && ratiosText !== undefined) throw new ConfigError('--ratio and --ratios exclude each other');
  // One explicit ratio applies to every method but the baseline, as a one-point sweep; the
  // schema checks each value and resolveConfig each (method, ratio) pair when the runs are planned.
  const ratios = ratiosText !== undefined ? parseList('ratio', ratiosText, '--ratios')
    : ratioText !== undefined ? parseList('ratio', ratioText, '--ratio') : null;
  const jobsText = take(flags, 'jobs');
  const jobs = jobsText === undefined ? 1 : Number(jobsText);
  if (!/^[1-9][0-9]*$/.test(jobsText ?? '1') || !Number.isSafeInteger(jobs)) throw new ConfigError(`--jobs must be an integer >= 1, got '${jobsText}'`);
  const preset = take(flags, 'preset') ?? null;
  const file = take(flags, 'config') ?? null;
  const base = buildSettings({ preset, file, flags, forbid: COMMANDS.compare.settings.sets });
  const started = performance.now();
  const stop = interruptionSignal();
  let files;
  try {
    files = await compare(base, { out, methods, seeds, ratios, jobs, log: say, signal: stop.signal });
  } finally {
    stop.dispose();
  }
  if (!files) {
    say(`stopped by ${stop.received() ?? 'a signal'}; run the same command again to continue the comparison`);
    return signalExitCode(stop.received());
  }
  say(`compare finished in ${((performance.now() - started) / 1000).toFixed(0)} s; report: ${files.html}`);
  return 0;
}

async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined) {
    say(overviewHelp());
    return 2;
  }
  if (command === '--help' || command === '-h' || command === 'help') {
    const topic = rest[0];
    if (topic !== undefined && !isCommand(topic)) throw unknownCommand(topic);
    say(topic === undefined ? overviewHelp() : commandHelp(topic));
    return 0;
  }
  if (!isCommand(command)) throw unknownCommand(command);
  const { positional, flags } = parseArguments(command, rest);
  if (takeSwitch(flags, 'help')) {
    say(commandHelp(command));
    return 0;
  }
  switch (command) {
    case 'train': return commandTrain(flags);
    case 'eval': return commandEval(flags);
    case 'compare': return commandCompare(flags);
    case 'export-images': return commandExportImages(flags);
    case 'report': {
      const directory = positional[0];
      if (!directory) throw new ConfigError('report needs a comparison directory: masksub report DIR');
      const files = await renderReport(directory);
      say(`wrote ${files.results}, ${files.markdown}, ${files.html}`);
      return 0;
    }
    case 'models': {
      // One column as wide as the longest name (vit_base_patch16_clip_quickgelu_224 is 35).
      const width = Math.max(...[...modelNames(), ...clipModelNames()].map((name) => name.length));
      for (const name of modelNames()) say(`${name.padEnd(width)}  ${describeModel(name).description}`);
      for (const name of clipModelNames()) say(`${name.padEnd(width)}  ${describeClipModel(name).description}`);
      return 0;
    }
    case 'presets':
      for (const [name, preset] of Object.entries(PRESETS)) say(`${name.padEnd(18)} ${preset.description}`);
      return 0;
    case 'info':
      say(JSON.stringify({ ...buildInfo(), threads: getNumThreads(), blas: blasLibraries() }, null, 2));
      return 0;
  }
}

function unknownCommand(name: string): ConfigError {
  const near = closestName(name, Object.keys(COMMANDS));
  return new ConfigError(`unknown command '${name}'${near ? `; did you mean '${near}'?` : ''} (commands: ${Object.keys(COMMANDS).join(', ')}; see masksub --help)`);
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (error: unknown) => {
    const message = error instanceof Error ? error.message : String(error);
    const userError = error instanceof ConfigError || error instanceof RunError;
    complain(`masksub: ${message}`);
    if (!userError && process.env.MASKSUB_DEBUG && error instanceof Error) complain(error.stack ?? '');
    process.exitCode = error instanceof ConfigError ? 2 : 1;
  },
);
