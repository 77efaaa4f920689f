// Reads a comparison directory (DIR/runs/<method>[-r<ratio>]-s<seed>/, each in the run format of
// src/run/format.ts), groups the runs by (dataset, model, method, ratio) and computes the
// statistics the report shows. writeResults() stores them as DIR/results.json.
//
// results.json schema ("masksub-results/1"), all accuracies in percent (0..100):
//   schema, generated_at (ISO time), directory (absolute path)
//   setting: what was run, for titles: datasets, models, epochs, seeds, machines, limit_train,
//            presets
//            (each the sorted distinct values over all runs)
//   groups[]: one per (dataset, model, method, ratio), baseline first, then by method and ratio
//     key, label, dataset, model, method, ratio, is_baseline
//     runs: run names in the group; seeds: seeds of finished runs; unfinished_seeds
//     n: number of finished runs (the only runs that enter the statistics)
//     final_test_acc1 / best_test_acc1: { per_seed: [{seed, value}], mean, std }
//         final = test_acc1 of the last epoch in metrics.jsonl, best = max test_acc1 over epochs;
//         std is the sample std (n - 1), null for n < 2
//     vs_baseline: null for the baseline itself or when no baseline exists, else
//         { baseline_key, difference (final mean - baseline final mean), t, df, p, reason }
//         from Welch's t-test on per-seed final accuracies; p null with a reason when undefined
//     mean_step_time_s: mean over finished runs of done.json mean_step_time_s
//     cost_vs_baseline: mean_step_time_s / baseline's mean_step_time_s
//     total_wall_s: sum over finished runs of done.json wall_s
//   runs[]: name, method, ratio, seed, dataset, model, finished, epochs_done, epochs_planned,
//     final_test_acc1, best_test_acc1, best_epoch, mean_step_time_s, wall_s, config (config.json)
//   verdicts[]: { chart, combination, agreement (agrees | disagrees | undecided), text }: each
//     chart's paper claim tested on these runs (src/report/verdicts.ts; Welch p < 0.05)
//   notes[]: human-readable notes (unfinished runs, mismatches, skipped directories)
// CLIP runs (metrics.jsonl rows with test_image_to_text_r1, ...) are kind "clip": their test_acc1
// is zero-shot top-1, and their groups carry `retrieval`: for each recall@k metric the same
// statistics as accuracy (per-seed final values, mean, std, Welch's test against the baseline).
// Classifier runs are kind "classification" with retrieval null.
// Numbers are rounded to 12 significant digits: this strips float noise but loses nothing a
// statistic over a few seeds could depend on.

import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { CONFIG_FILE, DONE_FILE, METRICS_FILE, type ResolvedConfigCore, type RunSummary } from '../run/format.js';
import { type Method, METHODS } from '../masksub/methods.js';
import { mean, sampleStd, welchTTest } from './stats.js';
import { computeVerdicts, type Verdict } from './verdicts.js';

export const RESULTS_SCHEMA = 'masksub-results/1';

/** Methods in the order the report lists them (the method table's); unknown methods follow alphabetically. */
export const METHOD_ORDER: readonly Method[] = METHODS;

/** The retrieval metrics of a CLIP run's metrics.jsonl rows (percent), in report order. */
export const RETRIEVAL_METRICS = [
  'test_image_to_text_r1', 'test_image_to_text_r5', 'test_image_to_text_r10',
  'test_text_to_image_r1', 'test_text_to_image_r5', 'test_text_to_image_r10',
] as const;
export type RetrievalMetric = (typeof RETRIEVAL_METRICS)[number];

/** Short column names of the retrieval metrics. */
export const RETRIEVAL_LABELS: Readonly<Record<RetrievalMetric, string>> = {
  test_image_to_text_r1: 'image→text R@1', test_image_to_text_r5: 'image→text R@5', test_image_to_text_r10: 'image→text R@10',
  test_text_to_image_r1: 'text→image R@1', test_text_to_image_r5: 'text→image R@5', test_text_to_image_r10: 'text→image R@10',
};

/** What a run trains: a classifier (test_acc1 is top-1 accuracy) or a CLIP (test_acc1 is zero-shot top-1, plus retrieval). */
export type RunKind = 'classification' | 'clip';

/** config.json as read: the core keys validated, everything else kept as written. */
export type RunConfig = ResolvedConfigCore & Record<string, unknown>;

/**
 * One epoch as read from metrics.jsonl. Losses and norms may be null: the trainer writes null for
 * a non-finite value, and the report must survive it rather than plot NaN.
 */
export interface EpochRecord {
  epoch: number;
  test_acc1: number;
  test_acc5: number | null;
  test_loss: number | null;
  train_loss: number | null;
  train_loss_main: number | null;
  train_loss_sub: number | null;
  probe_loss_standard: number | null;
  probe_loss_masked: number | null;
  grad_norm_main: number | null;
  grad_norm_sub: number | null;
  step_time_s: number | null;
  wall_s: number | null;
  /** CLIP runs: recall@k (percent); null or absent for a classifier's rows. */
  retrieval?: Partial<Record<RetrievalMetric, number>> | null;
}

export interface RunRecord {
  /** Directory name under DIR/runs. */
  name: string;
  directory: string;
  method: string;
  ratio: number;
  seed: number;
  dataset: string;
  model: string;
  machine: string;
  kind: RunKind;
  finished: boolean;
  epochs_done: number;
  epochs_planned: number;
  final_test_acc1: number | null;
  best_test_acc1: number | null;
  best_epoch: number | null;
  /** CLIP runs: the last epoch's recall@k; null for classifiers. */
  final_retrieval: Partial<Record<RetrievalMetric, number>> | null;
  mean_step_time_s: number | null;
  wall_s: number | null;
  config: RunConfig;
  summary: RunSummary | null;
  epochs: EpochRecord[];
}

export interface SeedValue {
  seed: number;
  value: number;
}

export interface AccuracyStats {
  per_seed: SeedValue[];
  mean: number | null;
  std: number | null;
}

export interface BaselineComparison {
  baseline_key: string;
  difference: number | null;
  t: number | null;
  df: number | null;
  p: number | null;
  reason: string | null;
}

/** One retrieval metric of a CLIP group: the statistics of final accuracy, for recall@k. */
export interface RetrievalStats {
  final: AccuracyStats;
  vs_baseline: BaselineComparison | null;
}

export interface GroupResult {
  key: string;
  label: string;
  dataset: string;
  model: string;
  kind: RunKind;
  method: string;
  ratio: number;
  is_baseline: boolean;
  runs: string[];
  seeds: number[];
  unfinished_seeds: number[];
  n: number;
  final_test_acc1: AccuracyStats;
  best_test_acc1: AccuracyStats;
  vs_baseline: BaselineComparison | null;
  /** CLIP groups: each recall@k metric with the statistics of final accuracy; null for classifiers. */
  retrieval: Record<RetrievalMetric, RetrievalStats> | null;
  mean_step_time_s: number | null;
  cost_vs_baseline: number | null;
  total_wall_s: number | null;
}

export interface SettingSummary {
  datasets: string[];
  models: string[];
  epochs: number[];
  seeds: number[];
  machines: string[];
  limit_train: (number | null)[];
  /** config.json "preset" (null for runs configured without one). */
  presets: (string | null)[];
}

export interface Comparison {
  schema: typeof RESULTS_SCHEMA;
  generated_at: string;
  directory: string;
  setting: SettingSummary;
  groups: GroupResult[];
  runs: RunRecord[];
  /** Each chart's paper claim tested on these runs (verdicts.ts). */
  verdicts: Verdict[];
  notes: string[];
}

/** results.json: the Comparison without the per-epoch rows (they stay in each metrics.jsonl). */
export interface ResultsFile extends Omit<Comparison, 'runs'> {
  runs: Omit<RunRecord, 'epochs' | 'directory' | 'summary'>[];
}

/** What a run directory's name says; config.json overrides it. */
export interface RunDirectoryName {
  method: string;
  ratio: number | null;
  seed: number;
}

const RUN_DIRECTORY_PATTERN = /^([a-z][a-z0-9_]*)(?:-r(\d+(?:\.\d+)?|\.\d+))?-s(\d+)$/;

/** Parses `<method>-s<seed>` and `<method>-r<ratio>-s<seed>`; null for anything else. */
export function parseRunDirectoryName(name: string): RunDirectoryName | null {
  const match = RUN_DIRECTORY_PATTERN.exec(name);
  if (match === null) return null;
  const [, method, ratioText, seedText] = match;
  if (method === undefined || seedText === undefined) return null;
  return { method, ratio: ratioText === undefined ? null : Number(ratioText), seed: Number(seedText) };
}

type JsonObject = Record<string, unknown>;

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function readJsonFile(path: string): JsonObject {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new Error(`${path}: cannot read (${(error as Error).message})`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new Error(`${path}: malformed JSON (${(error as Error).message})`);
  }
  if (!isObject(parsed)) throw new Error(`${path}: expected a JSON object`);
  return parsed;
}

function requireString(object: JsonObject, key: string, where: string): string {
  const value = object[key];
  if (typeof value !== 'string') throw new Error(`${where}: "${key}" must be a string`);
  return value;
}

function requireNumber(object: JsonObject, key: string, where: string): number {
  const value = object[key];
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new Error(`${where}: "${key}" must be a finite number`);
  return value;
}

/** A metric that may be absent or null (non-finite values are written as null). */
function optionalNumber(object: JsonObject, key: string, where: string): number | null {
  const value = object[key];
  if (value === undefined || value === null) return null;
  if (typeof value !== 'number') throw new Error(`${where}: "${key}" must be a number or null`);
  return Number.isFinite(value) ? value : null;
}

function readConfig(path: string): RunConfig {
  const config = readJsonFile(path);
  for (const key of ['dataset', 'model', 'method'] as const) requireString(config, key, path);
  for (const key of ['ratio', 'seed', 'epochs'] as const) requireNumber(config, key, path);
  // The remaining core keys are informative only; fill them in so a slightly older trainer's
  // config.json still produces a report instead of failing on a missing "machine".
  if (typeof config['machine'] !== 'string') config['machine'] = 'unknown machine';
  if (config['limit_train'] === undefined) config['limit_train'] = null;
  return config as RunConfig;
}

function readSummary(path: string): RunSummary {
  const summary = readJsonFile(path);
  for (const key of ['epochs', 'final_test_acc1', 'best_test_acc1', 'best_epoch', 'wall_s', 'mean_step_time_s'] as const) {
    requireNumber(summary, key, path);
  }
  return summary as unknown as RunSummary;
}

interface MetricsReadResult {
  epochs: EpochRecord[];
  notes: string[];
}

/**
 * Reads metrics.jsonl. A malformed line is an error naming file and line, except a last line
 * without its newline in an unfinished run: the trainer may be writing it right now.
 */
export function readMetrics(path: string, finished: boolean): MetricsReadResult {
  const notes: string[] = [];
  if (!existsSync(path)) return { epochs: [], notes };
  const text = readFileSync(path, 'utf8');
  const lines = text.split('\n');
  const byEpoch = new Map<number, EpochRecord>();
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index]?.trim() ?? '';
    if (line === '') continue;
    const where = `${path}:${index + 1}`;
    const isUnterminatedLastLine = index === lines.length - 1;
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch (error) {
      if (isUnterminatedLastLine && !finished) {
        notes.push(`${where}: ignored an incomplete last line (run still writing?)`);
        continue;
      }
      throw new Error(`${where}: malformed JSON line (${(error as Error).message})`);
    }
    if (!isObject(parsed)) throw new Error(`${where}: expected a JSON object per line`);
    const epoch = requireNumber(parsed, 'epoch', where);
    if (!Number.isInteger(epoch) || epoch < 1) throw new Error(`${where}: "epoch" must be a positive integer`);
    const record: EpochRecord = {
      epoch,
      test_acc1: requireNumber(parsed, 'test_acc1', where),
      test_acc5: optionalNumber(parsed, 'test_acc5', where),
      test_loss: optionalNumber(parsed, 'test_loss', where),
      train_loss: optionalNumber(parsed, 'train_loss', where),
      train_loss_main: optionalNumber(parsed, 'train_loss_main', where),
      train_loss_sub: optionalNumber(parsed, 'train_loss_sub', where),
      probe_loss_standard: optionalNumber(parsed, 'probe_loss_standard', where),
      probe_loss_masked: optionalNumber(parsed, 'probe_loss_masked', where),
      grad_norm_main: optionalNumber(parsed, 'grad_norm_main', where),
      grad_norm_sub: optionalNumber(parsed, 'grad_norm_sub', where),
      step_time_s: optionalNumber(parsed, 'step_time_s', where),
      wall_s: optionalNumber(parsed, 'wall_s', where),
      retrieval: null,
    };
    const retrieval: Partial<Record<RetrievalMetric, number>> = {};
    for (const metric of RETRIEVAL_METRICS) {
      const value = optionalNumber(parsed, metric, where);
      if (value !== null) retrieval[metric] = value;
    }
    if (Object.keys(retrieval).length > 0) record.retrieval = retrieval;
    if (byEpoch.has(epoch)) {
      // A resume re-runs the epoch that was interrupted; the later line is the one that counts.
      notes.push(`${where}: epoch ${epoch} appears again; the later line is used`);
    }
    byEpoch.set(epoch, record);
  }
  const epochs = [...byEpoch.values()].sort((left, right) => left.epoch - right.epoch);
  return { epochs, notes };
}

function readRun(directory: string, name: string, notes: string[]): RunRecord | null {
  const configPath = join(directory, CONFIG_FILE);
  if (!existsSync(configPath)) {
    notes.push(`runs/${name}: no config.json yet (not started?); skipped`);
    return null;
  }
  const config = readConfig(configPath);
  const donePath = join(directory, DONE_FILE);
  const summary = existsSync(donePath) ? readSummary(donePath) : null;
  const finished = summary !== null;
  const metrics = readMetrics(join(directory, METRICS_FILE), finished);
  notes.push(...metrics.notes);
  const { epochs } = metrics;

  const parsedName = parseRunDirectoryName(name);
  if (parsedName === null) {
    notes.push(`runs/${name}: directory name is not <method>[-r<ratio>]-s<seed>; using config.json`);
  } else if (
    parsedName.method !== config.method ||
    parsedName.seed !== config.seed ||
    (parsedName.ratio !== null && parsedName.ratio !== config.ratio)
  ) {
    notes.push(`runs/${name}: directory name disagrees with config.json; config.json is used`);
  }

  const last = epochs.at(-1);
  let best: EpochRecord | undefined;
  for (const record of epochs) if (best === undefined || record.test_acc1 > best.test_acc1) best = record;
  const finalAccuracy = last?.test_acc1 ?? summary?.final_test_acc1 ?? null;
  const bestAccuracy = best?.test_acc1 ?? summary?.best_test_acc1 ?? null;
  if (summary !== null && last !== undefined) {
    // metrics.jsonl is the source of truth (it is what the curves show); done.json must agree.
    if (Math.abs(summary.final_test_acc1 - last.test_acc1) > 1e-6 || Math.abs(summary.best_test_acc1 - (best?.test_acc1 ?? NaN)) > 1e-6) {
      notes.push(`runs/${name}: done.json accuracies differ from metrics.jsonl; metrics.jsonl is used`);
    }
    if (summary.epochs !== last.epoch) notes.push(`runs/${name}: done.json says ${summary.epochs} epochs, metrics.jsonl ends at epoch ${last.epoch}`);
  }
  if (finished && epochs.length === 0) notes.push(`runs/${name}: finished but metrics.jsonl is empty or missing; done.json values are used`);

  const stepTimes = epochs.flatMap((record) => (record.step_time_s === null ? [] : [record.step_time_s]));
  const kind: RunKind = epochs.some((record) => record.retrieval != null) ? 'clip' : 'classification';
  return {
    name,
    directory,
    method: config.method,
    ratio: config.ratio,
    seed: config.seed,
    dataset: config.dataset,
    model: config.model,
    machine: config.machine,
    kind,
    finished,
    epochs_done: last?.epoch ?? 0,
    epochs_planned: config.epochs,
    final_test_acc1: finalAccuracy,
    best_test_acc1: bestAccuracy,
    best_epoch: best?.epoch ?? summary?.best_epoch ?? null,
    final_retrieval: kind === 'clip' ? last?.retrieval ?? null : null,
    // done.json covers every step of the run (including resumed parts); the per-epoch means are
    // the fallback for an unfinished run.
    mean_step_time_s: summary?.mean_step_time_s ?? mean(stepTimes),
    wall_s: summary?.wall_s ?? last?.wall_s ?? null,
    config,
    summary,
    epochs,
  };
}

function methodRank(method: string): number {
  const rank = METHOD_ORDER.indexOf(method as Method);
  return rank === -1 ? METHOD_ORDER.length : rank;
}

/** Orders baseline first, then the methods in METHOD_ORDER, then by ratio. */
export function compareGroupOrder(
  left: { dataset: string; model: string; method: string; ratio: number },
  right: { dataset: string; model: string; method: string; ratio: number },
): number {
  return (
    left.dataset.localeCompare(right.dataset) ||
    left.model.localeCompare(right.model) ||
    methodRank(left.method) - methodRank(right.method) ||
    left.method.localeCompare(right.method) ||
    left.ratio - right.ratio
  );
}

function distinctSorted<T extends string | number | null>(values: readonly T[]): T[] {
  return [...new Set(values)].sort((left, right) => {
    if (left === right) return 0;
    if (left === null) return 1;
    if (right === null) return -1;
    return typeof left === 'number' && typeof right === 'number' ? left - right : String(left).localeCompare(String(right));
  });
}

function accuracyStats(runs: readonly RunRecord[], pick: (run: RunRecord) => number | null): AccuracyStats {
  const perSeed: SeedValue[] = [];
  for (const run of runs) {
    const value = pick(run);
    if (value !== null) perSeed.push({ seed: run.seed, value });
  }
  const values = perSeed.map((entry) => entry.value);
  return { per_seed: perSeed, mean: mean(values), std: sampleStd(values) };
}

function sumOrNull(values: readonly (number | null)[]): number | null {
  const present = values.filter((value): value is number => value !== null);
  return present.length === 0 ? null : present.reduce((total, value) => total + value, 0);
}

/** Reads DIR/runs/* and computes every statistic of the report. Throws on malformed files. */
export function collectComparison(directory: string): Comparison {
  const root = resolve(directory);
  const runsDirectory = join(root, 'runs');
  if (!existsSync(runsDirectory) || !statSync(runsDirectory).isDirectory()) {
    throw new Error(`${runsDirectory}: no runs directory (expected ${root}/runs/<method>-s<seed>/)`);
  }
  const notes: string[] = [];
  const runs: RunRecord[] = [];
  const names = readdirSync(runsDirectory, { withFileTypes: true })
    .filter((entry) => entry.isDirectory())
    .map((entry) => entry.name)
    .sort();
  for (const name of names) {
    const run = readRun(join(runsDirectory, name), name, notes);
    if (run !== null) runs.push(run);
  }
  runs.sort((left, right) => compareGroupOrder(left, right) || left.seed - right.seed || left.name.localeCompare(right.name));

  const combinations = distinctSorted(runs.map((run) => `${run.dataset}/${run.model}`));
  const groupsByKey = new Map<string, RunRecord[]>();
  for (const run of runs) {
    const key = `${run.dataset}/${run.model}/${run.method}/r${run.ratio}`;
    const members = groupsByKey.get(key) ?? [];
    members.push(run);
    groupsByKey.set(key, members);
  }

  const groups: GroupResult[] = [];
  for (const [key, members] of groupsByKey) {
    const first = members[0];
    if (first === undefined) continue;
    const finished = members.filter((run) => run.finished);
    const isBaseline = first.method === 'baseline';
    const methodLabel = isBaseline && first.ratio === 0 ? 'baseline' : `${first.method} r=${first.ratio}`;
    const label = combinations.length > 1 ? `${first.dataset}/${first.model} ${methodLabel}` : methodLabel;
    const epochCounts = distinctSorted(members.map((run) => run.epochs_planned));
    if (epochCounts.length > 1) notes.push(`${label}: seeds were run for different epoch counts (${epochCounts.join(', ')})`);
    groups.push({
      key,
      label,
      dataset: first.dataset,
      model: first.model,
      kind: members.some((run) => run.kind === 'clip') ? 'clip' : 'classification',
      method: first.method,
      ratio: first.ratio,
      is_baseline: isBaseline,
      runs: members.map((run) => run.name),
      seeds: finished.map((run) => run.seed),
      unfinished_seeds: members.filter((run) => !run.finished).map((run) => run.seed),
      n: finished.length,
      final_test_acc1: accuracyStats(finished, (run) => run.final_test_acc1),
      best_test_acc1: accuracyStats(finished, (run) => run.best_test_acc1),
      vs_baseline: null,
      retrieval: members.some((run) => run.kind === 'clip')
        ? Object.fromEntries(RETRIEVAL_METRICS.map((metric) => [metric, { final: accuracyStats(finished, (run) => run.final_retrieval?.[metric] ?? null), vs_baseline: null }])) as Record<RetrievalMetric, RetrievalStats>
        : null,
      mean_step_time_s: mean(finished.flatMap((run) => (run.mean_step_time_s === null ? [] : [run.mean_step_time_s]))),
      cost_vs_baseline: null,
      total_wall_s: sumOrNull(finished.map((run) => run.wall_s)),
    });
  }
  groups.sort(compareGroupOrder);

  for (const group of groups) {
    if (group.is_baseline) continue;
    const baselines = groups.filter((candidate) => candidate.is_baseline && candidate.dataset === group.dataset && candidate.model === group.model);
    // Prefer the ratio-0 baseline; a baseline logged with another ratio is still the baseline.
    const baseline = baselines.find((candidate) => candidate.ratio === 0) ?? baselines[0];
    if (baseline === undefined) continue;
    const test = welchTTest(
      group.final_test_acc1.per_seed.map((entry) => entry.value),
      baseline.final_test_acc1.per_seed.map((entry) => entry.value),
    );
    group.vs_baseline = { baseline_key: baseline.key, ...test };
    if (group.retrieval !== null && baseline.retrieval !== null) {
      for (const metric of RETRIEVAL_METRICS) {
        const values = (stats: RetrievalStats): number[] => stats.final.per_seed.map((entry) => entry.value);
        group.retrieval[metric].vs_baseline = { baseline_key: baseline.key, ...welchTTest(values(group.retrieval[metric]), values(baseline.retrieval[metric])) };
      }
    }
    if (group.mean_step_time_s !== null && baseline.mean_step_time_s !== null && baseline.mean_step_time_s > 0) {
      group.cost_vs_baseline = group.mean_step_time_s / baseline.mean_step_time_s;
    }
  }
  for (const group of groups) if (group.is_baseline && group.mean_step_time_s !== null) group.cost_vs_baseline = 1;

  for (const run of runs) {
    if (!run.finished) notes.push(`runs/${run.name}: unfinished (${run.epochs_done}/${run.epochs_planned} epochs); excluded from the statistics, its epochs are drawn`);
  }
  if (runs.length > 0 && !groups.some((group) => group.is_baseline)) notes.push('no baseline runs: differences, p-values and costs are not available');
  const machines = distinctSorted(runs.map((run) => run.machine));
  if (machines.length > 1) notes.push(`runs come from ${machines.length} different machines; step-time costs compare across machines`);
  if (runs.length === 0) notes.push('no runs found');

  return {
    schema: RESULTS_SCHEMA,
    generated_at: new Date().toISOString(),
    directory: root,
    setting: {
      datasets: distinctSorted(runs.map((run) => run.dataset)),
      models: distinctSorted(runs.map((run) => run.model)),
      epochs: distinctSorted(runs.map((run) => run.epochs_planned)),
      seeds: distinctSorted(runs.map((run) => run.seed)),
      machines,
      limit_train: distinctSorted(runs.map((run) => (typeof run.config.limit_train === 'number' ? run.config.limit_train : null))),
      presets: distinctSorted(runs.map((run) => (typeof run.config['preset'] === 'string' ? run.config['preset'] : null))),
    },
    groups,
    runs,
    verdicts: computeVerdicts({ groups, runs }),
    notes,
  };
}

/** What test_acc1 is in this comparison: zero-shot top-1 when every group is CLIP, top-1 when none is. */
export function accuracyName(comparison: Pick<Comparison, 'groups'>): string {
  const clip = comparison.groups.filter((group) => group.kind === 'clip').length;
  if (clip === 0) return 'top-1';
  return clip === comparison.groups.length ? 'zero-shot top-1' : 'top-1 (zero-shot for CLIP)';
}

/** Rounds to 12 significant digits: removes float noise (0.30000000000000004), keeps the value. */
export function roundForJson(value: number): number {
  if (!Number.isFinite(value) || Number.isInteger(value)) return value;
  return Number(value.toPrecision(12));
}

/** The results.json view of a comparison: per-epoch rows and file paths left out. */
export function toResultsFile(comparison: Comparison): ResultsFile {
  return {
    ...comparison,
    runs: comparison.runs.map(({ epochs: _epochs, directory: _directory, summary: _summary, ...rest }) => rest),
  };
}

/** Serialises results with rounded numbers (see roundForJson). */
export function stringifyResults(results: ResultsFile): string {
  return `${JSON.stringify(results, (_key, value: unknown) => (typeof value === 'number' ? roundForJson(value) : value), 2)}\n`;
}

/** Collects DIR and writes DIR/results.json; returns the comparison it wrote. */
export function writeResults(directory: string, comparison: Comparison = collectComparison(directory)): Comparison {
  writeFileSync(join(resolve(directory), 'results.json'), stringifyResults(toResultsFile(comparison)));
  return comparison;
}
