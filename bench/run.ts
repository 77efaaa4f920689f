// `npm run bench`: how fast is this next to PyTorch, measured in one run on one machine.
//
// Every configuration runs in its own child process (bench/child.ts for ours, bench/torch_bench.py
// for PyTorch), so each peak resident memory is its own; ours and PyTorch run back to back, their
// order flipped every round, and ratios are taken within a round, then the median over rounds. The
// machine may be shared and noisy: read the ratios, not the absolute times.
//
// Output: one JSON object per line on stdout, one per figure (schema in bench/README.md); progress
// on stderr; everything, with machine info and the raw child results, in bench/results/<name>.json.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, release, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  lastJsonLine, median, type Implementation, type Job, type LoaderJob, type LoaderResult, type ModelSpec,
  type OpCallJob, type OpCallResult, type StepJob, type StepMethod, type StepResult,
} from './common.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');
const USAGE = `usage: npm run bench -- [options]

  --quick              few steps, one round: a smoke test of every section (~2-3 min on 2 cores)
  --steps N            timed steps per process for the ViT and ResNet step sections
  --warmup N           untimed steps before them
  --rounds N           repetitions of every configuration (ours and PyTorch back to back;
                       default 3, cut by the time budget)
  --device cpu|cuda    where the models run (default cpu)
  --threads N          intra-op threads for both (default $MASKSUB_THREADS or the number of cores)
  --only LIST          sections to run, comma-separated: vit,resnet,overhead,data (default all)
  --resnet NAME        the ResNet: resnet_tiny (default on cpu) or resnet18_small (default on cuda)
  --batch-size N       training batch (default 128)
  --python PATH        python with torch (default $MASKSUB_PYTHON, /usr/bin/python3, python3)
  --name NAME          results file name (default <device>[-quick]-<date>)
  --out DIR            results directory (default bench/results)
  --budget-minutes M   start no further round once the next would end after M minutes
                       (default 10 for a full run without --rounds; 0 = no limit)
  --env KEY=VALUE      set an environment variable in both children (repeatable), e.g. to
                       compare allocator settings: --env MALLOC_TRIM_THRESHOLD_=0
`;

// ---------------------------------------------------------------- arguments
interface Options {
  quick: boolean;
  steps: number | null;
  warmup: number | null;
  rounds: number | null;
  device: string;
  threads: number;
  only: Set<string>;
  resnet: string | null;
  batchSize: number;
  python: string | null;
  name: string | null;
  out: string;
  budgetMinutes: number | null;
  env: Record<string, string>;
}

function parseArguments(argv: string[]): Options {
  const options: Options = {
    quick: false, steps: null, warmup: null, rounds: null, device: 'cpu', threads: defaultThreads(),
    only: new Set(['vit', 'resnet', 'overhead', 'data']), resnet: null, batchSize: 128, python: null, name: null,
    out: join(here, 'results'), budgetMinutes: null, env: {},
  };
  const integer = (flag: string, value: string | undefined, minimum: number): number => {
    const number = Number(value);
    if (!Number.isInteger(number) || number < minimum) fail(`${flag} needs an integer >= ${minimum}, got ${String(value)}`);
    return number;
  };
  for (let index = 0; index < argv.length; index++) {
    const argument = argv[index];
    const [flag, inline] = argument.includes('=') ? [argument.slice(0, argument.indexOf('=')), argument.slice(argument.indexOf('=') + 1)] : [argument, undefined];
    const value = (): string => {
      if (inline !== undefined) return inline;
      const next = argv[++index];
      if (next === undefined) fail(`${flag} needs a value`);
      return next;
    };
    switch (flag) {
      case '--quick': options.quick = true; break;
      case '--steps': options.steps = integer(flag, value(), 1); break;
      case '--warmup': options.warmup = integer(flag, value(), 0); break;
      case '--rounds': options.rounds = integer(flag, value(), 1); break;
      case '--threads': options.threads = integer(flag, value(), 1); break;
      case '--batch-size': options.batchSize = integer(flag, value(), 1); break;
      case '--device': {
        options.device = value();
        if (!/^(cpu|cuda(:\d+)?)$/.test(options.device)) fail(`--device must be cpu or cuda, got ${options.device}`);
        break;
      }
      case '--only': {
        const sections = value().split(',').map((part) => part.trim()).filter(Boolean);
        for (const section of sections) if (!['vit', 'resnet', 'overhead', 'data'].includes(section)) fail(`--only: unknown section '${section}' (vit, resnet, overhead, data)`);
        options.only = new Set(sections);
        break;
      }
      case '--resnet': {
        options.resnet = value();
        if (!['resnet_tiny', 'resnet_micro', 'resnet18_small'].includes(options.resnet)) fail('--resnet must be resnet_tiny, resnet_micro or resnet18_small');
        break;
      }
      case '--python': options.python = value(); break;
      case '--name': {
        options.name = value();
        if (!/^[\w.-]+$/.test(options.name)) fail(`--name may hold letters, digits, '.', '_' and '-' only, got ${options.name}`);
        break;
      }
      case '--out': options.out = resolve(value()); break;
      case '--budget-minutes': {
        const minutes = Number(value());
        if (!(minutes >= 0)) fail(`--budget-minutes needs a number >= 0`);
        options.budgetMinutes = minutes;
        break;
      }
      case '--env': {
        const pair = value();
        const match = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(pair);
        if (!match) fail(`--env needs KEY=VALUE, got ${pair}`);
        options.env[match[1]] = match[2];
        break;
      }
      case '--help': case '-h': process.stdout.write(USAGE); process.exit(0); break;
      default: fail(`unknown option ${argument}\n${USAGE}`);
    }
  }
  return options;
}

function fail(message: string): never {
  process.stderr.write(`bench: ${message}\n`);
  process.exit(2);
}

function defaultThreads(): number {
  const fromEnvironment = Number(process.env.MASKSUB_THREADS);
  return Number.isInteger(fromEnvironment) && fromEnvironment > 0 ? fromEnvironment : availableParallelism();
}

const options = parseArguments(process.argv.slice(2));
const cuda = options.device !== 'cpu';

/**
 * Steps and warm-up of each section, and rounds. One CPU round takes about 4 minutes on 2 busy
 * cores (ViT ~75% of it), so a full run does 2-3 rounds within the 10-minute budget.
 */
const rounds = options.rounds ?? (options.quick ? 1 : 3);
const budgetMinutes = options.budgetMinutes ?? (options.quick || options.rounds !== null ? 0 : 10);
const plan = {
  rounds,
  budgetMinutes,
  vit: { warmup: options.warmup ?? (options.quick ? 1 : cuda ? 5 : 2), steps: options.steps ?? (options.quick ? 2 : cuda ? 30 : 4) },
  resnet: { warmup: options.warmup ?? (options.quick ? 1 : cuda ? 5 : 2), steps: options.steps ?? (options.quick ? 2 : cuda ? 30 : 6) },
  overhead: { warmup: options.quick ? 5 : 20, steps: options.quick ? 30 : 200, opCalls: options.quick ? 5000 : 50000 },
  data: { maxBatches: options.quick ? 30 : 200 },
};
const RATIOS = [0.25, 0.5, 0.75];
/** Paper Table A.7 (ViT) and MASKSUB.md (ResNet: the whole image again, x2). */
const PAPER_COST: Record<string, Record<string, number>> = { vit: { '0.25': 1.75, '0.5': 1.5, '0.75': 1.25 }, resnet: { '0.25': 2, '0.5': 2, '0.75': 2 } };
const TARGETS = { stepRatio: 1.05, vitMasksubCost: 1.5, peakRssRatio: 1.2, pipelineRatio: 5 };

// ---------------------------------------------------------------- machine and tools
// Ours uses PASSIVE unless the user set OMP_WAIT_POLICY (src/tensor/native.ts); PyTorch gets the same.
const ompWaitPolicy = process.env.OMP_WAIT_POLICY ?? 'PASSIVE';
const childEnvironment: NodeJS.ProcessEnv = { ...process.env, OMP_WAIT_POLICY: ompWaitPolicy, MASKSUB_THREADS: String(options.threads), ...options.env };

function findPython(): string {
  const candidates = options.python ? [options.python] : process.env.MASKSUB_PYTHON ? [process.env.MASKSUB_PYTHON] : ['/usr/bin/python3', 'python3'];
  const probe = cuda ? 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)' : 'import torch';
  for (const candidate of candidates) {
    const result = spawnSync(candidate, ['-c', probe], { stdio: 'ignore', timeout: 120000 });
    if (result.status === 0) return candidate;
  }
  fail(`no python with torch${cuda ? ' (and CUDA)' : ''} among ${candidates.join(', ')}; pass --python`);
}

function cpuModel(): string {
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((entry) => entry.startsWith('model name'));
    if (line) return line.split(':')[1].trim();
  } catch {
    // not Linux
  }
  return cpus()[0]?.model ?? 'unknown';
}

function gitCommit(): string | null {
  // Read-only: rev-parse touches neither the index nor the work tree.
  const result = spawnSync('git', ['rev-parse', 'HEAD'], { cwd: root, encoding: 'utf8' });
  return result.status === 0 ? result.stdout.trim() : null;
}

function gpuName(): string | null {
  const result = spawnSync('nvidia-smi', ['--query-gpu=name,memory.total,driver_version', '--format=csv,noheader'], { encoding: 'utf8' });
  return result.status === 0 ? result.stdout.trim().split('\n').join('; ') : null;
}

// ---------------------------------------------------------------- model shapes, from our registry
// The PyTorch script builds the same shapes; they are read from the models ours builds, so the two
// cannot drift apart.
async function modelSpec(name: string, overrides: { imageSize?: number; width?: number } = {}): Promise<ModelSpec> {
  if (name === 'mlp_tiny') return { name, family: 'mlp', imageSize: 28, inChannels: 1, numClasses: 10, width: overrides.width ?? 16 };
  const { createModel } = await import('../src/models/factory.js');
  const model = createModel(name, { inChannels: 1, numClasses: 10, imageSize: overrides.imageSize ?? 28 });
  try {
    const config = (model as unknown as { config: Record<string, unknown> }).config;
    if (model.info.family === 'vit') {
      if (config.layerScale !== null) throw new Error(`${name}: LayerScale is not written in torch_bench.py`);
      return {
        name, family: 'vit', imageSize: config.imageSize as number, inChannels: 1, numClasses: 10, patchSize: config.patchSize as number,
        width: config.width as number, depth: config.depth as number, heads: config.heads as number, mlpRatio: config.mlpRatio as number, qkvBias: config.qkvBias as boolean,
      };
    }
    return {
      name, family: 'resnet', imageSize: config.imageSize as number, inChannels: 1, numClasses: 10, block: config.block as string, stem: config.stem as string,
      layers: config.layers as number[], widths: config.widths as number[], maskPatchSize: config.maskPatchSize as number,
    };
  } finally {
    model.dispose();
  }
}

// ---------------------------------------------------------------- running children
const python = findPython();
const raw: Record<string, unknown>[] = [];
const lines: Record<string, unknown>[] = [];

function emit(line: Record<string, unknown>): void {
  const full = { bench: 'masksub', device: options.device, ...line };
  lines.push(full);
  process.stdout.write(JSON.stringify(full) + '\n');
}

function progress(message: string): void {
  process.stderr.write(`[bench ${((performance.now() - benchStart) / 1000).toFixed(0).padStart(4)}s] ${message}\n`);
}

function runChild(impl: 'ours' | 'pytorch', job: Job, label: string): unknown {
  const command = impl === 'pytorch' ? python : process.execPath;
  const args = impl === 'pytorch'
    ? [join(here, 'torch_bench.py'), JSON.stringify(job)]
    : [...process.execArgv, join(here, 'child.ts'), JSON.stringify(job)];
  const started = performance.now();
  const result = spawnSync(command, args, {
    cwd: root, env: childEnvironment, encoding: 'utf8', maxBuffer: 64 << 20, timeout: 15 * 60 * 1000,
  });
  const seconds = (performance.now() - started) / 1000;
  if (result.status !== 0 || result.error) {
    const why = result.error ? result.error.message : `exit ${result.status ?? result.signal}`;
    const tail = `${result.stderr ?? ''}`.trim().split('\n').slice(-15).join('\n');
    progress(`${label}: FAILED (${why})\n${tail}`);
    raw.push({ label, impl, job, error: why, stderr: tail });
    emit({ metric: 'error', section: 'run', label, impl, value: null, unit: null, error: why, detail: tail });
    return null;
  }
  try {
    const parsed = lastJsonLine(result.stdout) as Record<string, unknown>;
    raw.push({ label, impl, job, processSeconds: seconds, result: parsed });
    return parsed;
  } catch (error) {
    progress(`${label}: no result (${(error as Error).message})`);
    emit({ metric: 'error', section: 'run', label, impl, value: null, unit: null, error: (error as Error).message });
    return null;
  }
}

function stepJob(impl: Implementation, model: ModelSpec, method: StepMethod, ratio: number, section: { warmup: number; steps: number }, extra: Partial<StepJob> = {}): StepJob {
  return {
    kind: 'step', impl, model, method, ratio: method === 'masksub' ? ratio : 0, subWeight: 0.5, labelSmoothing: 0.1, lr: 1e-3, weightDecay: 0.05,
    batchSize: options.batchSize, warmup: section.warmup, steps: section.steps, maxSeconds: options.quick ? 30 : 120,
    threads: options.threads, device: options.device, seed: 0, countCalls: false, feed: 'fixed', ...extra,
  };
}

// ---------------------------------------------------------------- bookkeeping of step results
interface StepKey { section: string; model: string; impl: Implementation; method: StepMethod; ratio: number; feed?: string }
const keyString = (key: StepKey): string => `${key.section}|${key.model}|${key.impl}|${key.method}|${key.method === 'masksub' ? key.ratio : 0}|${key.feed ?? 'fixed'}`;
/** Per configuration: the per-round results (index = round; null where a child failed). */
const stepResults = new Map<string, (StepResult | null)[]>();

function record(key: StepKey, round: number, result: StepResult | null): void {
  const list = stepResults.get(keyString(key)) ?? [];
  list[round] = result;
  stepResults.set(keyString(key), list);
}

function results(key: StepKey): (StepResult | null)[] {
  return stepResults.get(keyString(key)) ?? [];
}

/** Median over rounds of a per-round figure (rounds where either side is missing are skipped). */
function perRound(a: StepKey, b: StepKey | null, figure: (x: StepResult, y: StepResult | null) => number | null): { value: number | null; samples: number[] } {
  const left = results(a);
  const right = b ? results(b) : [];
  const samples: number[] = [];
  for (let round = 0; round < left.length; round++) {
    const x = left[round];
    const y = b ? right[round] : null;
    if (!x || (b && !y)) continue;
    const value = figure(x, y ?? null);
    if (value !== null && Number.isFinite(value)) samples.push(value);
  }
  return { value: median(samples), samples };
}

const round3 = (value: number | null): number | null => (value === null ? null : Number(value.toPrecision(4)));
const mib = (kib: number | null | undefined): number | null => (kib === null || kib === undefined ? null : kib / 1024);

// ---------------------------------------------------------------- sections
const benchStart = performance.now();
const loadStart = loadavg();
const firstSeen: { ours?: StepResult; pytorch?: StepResult } = {};

const STEP_CONFIGS: { method: StepMethod; ratio: number }[] = [{ method: 'baseline', ratio: 0 }, ...RATIOS.map((ratio) => ({ method: 'masksub' as const, ratio }))];

function stepRound(section: 'vit' | 'resnet', spec: ModelSpec, settings: { warmup: number; steps: number }, round: number): void {
  for (const { method, ratio } of STEP_CONFIGS) {
    // ours and PyTorch back to back, the order flipped every round; the plainly written TS step
    // (no gradient-norm bookkeeping) for the two headline configurations.
    const impls: Implementation[] = round % 2 === 0 ? ['ours', 'pytorch'] : ['pytorch', 'ours'];
    if (method === 'baseline' || ratio === 0.5) impls.push('ours_plain');
    for (const impl of impls) {
      const label = `${section} round ${round + 1}/${rounds} ${impl} ${method}${method === 'masksub' ? ` r=${ratio}` : ''}`;
      const result = runChild(impl === 'pytorch' ? 'pytorch' : 'ours', stepJob(impl, spec, method, ratio, settings), label) as StepResult | null;
      record({ section, model: spec.name, impl, method, ratio }, round, result);
      if (result) {
        if (impl === 'ours') firstSeen.ours ??= result;
        if (impl === 'pytorch') firstSeen.pytorch ??= result;
        progress(`${label}: ${result.medianStepSeconds?.toFixed(4)} s/step, peak RSS ${mib(result.peakRssKiB)?.toFixed(0)} MiB`);
      }
    }
  }
  if (section === 'vit') {
    // The trainer's feed: batches from BatchLoader's worker thread, next to libtorch's threads.
    const label = `${section} round ${round + 1}/${rounds} ours baseline fed by the loader worker`;
    const result = runChild('ours', stepJob('ours', spec, 'baseline', 0, settings, { feed: 'worker' }), label) as StepResult | null;
    record({ section, model: spec.name, impl: 'ours', method: 'baseline', ratio: 0, feed: 'worker' }, round, result);
    if (result) progress(`${label}: ${result.medianStepSeconds?.toFixed(4)} s/step`);
  }
}

function reportSteps(section: string, spec: ModelSpec): void {
  const configs = STEP_CONFIGS;
  const model = spec.name;
  const key = (impl: Implementation, method: StepMethod, ratio: number, feed?: string): StepKey => ({ section, model, impl, method, ratio, feed });
  for (const { method, ratio } of configs) {
    for (const impl of ['ours', 'ours_plain', 'pytorch'] as Implementation[]) {
      const list = results(key(impl, method, ratio)).filter((x): x is StepResult => x !== null);
      if (!list.length) continue;
      const samples = list.map((x) => x.medianStepSeconds).filter((x): x is number => x !== null);
      const value = median(samples);
      emit({ metric: 'step_time_s', section, model, impl, method, ratio: method === 'masksub' ? ratio : null, value: round3(value), unit: 's', samples: samples.map(round3), batchSize: options.batchSize, stepsPerProcess: list[0].stepSeconds.length });
      const peaks = list.map((x) => mib(x.peakRssKiB)).filter((x): x is number => x !== null);
      emit({ metric: 'peak_rss_mib', section, model, impl, method, ratio: method === 'masksub' ? ratio : null, value: round3(median(peaks)), unit: 'MiB', samples: peaks.map(round3) });
      // The training's own memory: peak minus the process right after loading libtorch / torch.
      const above = list.map((x) => (x.peakRssKiB !== null && x.rssAfterImportKiB !== null ? (x.peakRssKiB - x.rssAfterImportKiB) / 1024 : NaN)).filter(Number.isFinite);
      emit({ metric: 'peak_rss_above_start_mib', section, model, impl, method, ratio: method === 'masksub' ? ratio : null, value: round3(median(above)), unit: 'MiB', samples: above.map(round3), note: 'peak RSS - RSS after importing the engine' });
      if (cuda) {
        const used = list.map((x) => x.gpuUsedMiB ?? null).filter((x): x is number => x !== null);
        emit({ metric: 'gpu_used_mib', section, model, impl, method, ratio: method === 'masksub' ? ratio : null, value: round3(median(used)), unit: 'MiB', samples: used, note: 'nvidia-smi used_memory of the process at the end (CUDA context + caching allocator)' });
      }
    }
    for (const impl of ['ours', 'ours_plain'] as Implementation[]) {
      const ratioFigure = perRound(key(impl, method, ratio), key('pytorch', method, ratio), (x, y) => (x.medianStepSeconds ?? NaN) / (y?.medianStepSeconds ?? NaN));
      if (ratioFigure.value !== null) {
        const target = impl === 'ours' && !cuda ? { op: '<=', value: TARGETS.stepRatio } : undefined;
        emit({
          metric: 'step_time_ratio', section, model, impl, versus: 'pytorch', method, ratio: method === 'masksub' ? ratio : null, value: round3(ratioFigure.value), unit: 'ratio',
          samples: ratioFigure.samples.map(round3), ...(target ? { target, met: ratioFigure.value <= target.value } : {}),
        });
      }
      const rssFigure = perRound(key(impl, method, ratio), key('pytorch', method, ratio), (x, y) => (x.peakRssKiB ?? NaN) / (y?.peakRssKiB ?? NaN));
      if (rssFigure.value !== null && impl === 'ours') {
        emit({
          metric: 'peak_rss_ratio', section, model, impl, versus: 'pytorch', method, ratio: method === 'masksub' ? ratio : null, value: round3(rssFigure.value), unit: 'ratio',
          samples: rssFigure.samples.map(round3), target: { op: '<=', value: TARGETS.peakRssRatio }, met: rssFigure.value <= TARGETS.peakRssRatio,
        });
      }
    }
  }
  // MaskSub's cost: masksub step / baseline step, per implementation, ratio by ratio.
  for (const impl of ['ours', 'ours_plain', 'pytorch'] as Implementation[]) {
    for (const ratio of RATIOS) {
      const cost = perRound(key(impl, 'masksub', ratio), key(impl, 'baseline', 0), (x, y) => (x.medianStepSeconds ?? NaN) / (y?.medianStepSeconds ?? NaN));
      if (cost.value === null) continue;
      const family = spec.family === 'vit' ? 'vit' : 'resnet';
      const target = family === 'vit' && ratio === 0.5 && impl === 'ours' ? { op: '<=', value: TARGETS.vitMasksubCost } : undefined;
      emit({
        metric: 'masksub_cost', section, model, impl, ratio, value: round3(cost.value), unit: 'x baseline step', samples: cost.samples.map(round3),
        paper: PAPER_COST[family][String(ratio)], ...(target ? { target, met: cost.value <= target.value } : {}),
      });
    }
  }
  // Training consumption (for the data section) and the loader worker's effect on a real step.
  for (const { method, ratio } of configs.filter((c) => c.method === 'baseline' || c.ratio === 0.5)) {
    const step = median(results(key('ours', method, ratio)).map((x) => x?.medianStepSeconds ?? NaN));
    if (step !== null) consumption.push({ model, method, ratio: method === 'masksub' ? ratio : null, imagesPerSecond: options.batchSize / step });
  }
  const fed = perRound(key('ours', 'baseline', 0, 'worker'), key('ours', 'baseline', 0), (x, y) => (x.medianStepSeconds ?? NaN) / (y?.medianStepSeconds ?? NaN));
  if (fed.value !== null) {
    const times = results(key('ours', 'baseline', 0, 'worker')).map((x) => x?.medianStepSeconds ?? NaN);
    const dataset = results(key('ours', 'baseline', 0, 'worker')).find((x) => x?.dataset)?.dataset ?? null;
    emit({ metric: 'step_time_s', section, model, impl: 'ours', method: 'baseline', ratio: null, feed: 'loader worker', dataset, value: round3(median(times)), unit: 's', samples: times.map(round3) });
    emit({ metric: 'loader_worker_step_slowdown', section, model, impl: 'ours', method: 'baseline', value: round3(fed.value), unit: 'ratio', samples: fed.samples.map(round3), note: 'step fed by BatchLoader (worker thread, crop+flip) / step on a fixed batch' });
  }
}

const consumption: { model: string; method: string; ratio: number | null; imagesPerSecond: number }[] = [];

const OVERHEAD_BATCH = 2;

function overheadRound(specs: ModelSpec[], round: number): void {
  const settings = { warmup: plan.overhead.warmup, steps: plan.overhead.steps };
  const batch = OVERHEAD_BATCH;
  for (const spec of specs) {
    const impls: Implementation[] = round % 2 === 0 ? ['ours', 'pytorch', 'ours_plain'] : ['pytorch', 'ours', 'ours_plain'];
    for (const impl of impls) {
      const label = `overhead round ${round + 1}/${rounds} ${impl} ${spec.name} batch ${batch}`;
      const job = { ...stepJob(impl, spec, 'baseline', 0, settings), batchSize: batch, countCalls: true, maxSeconds: 60 };
      const result = runChild(impl === 'pytorch' ? 'pytorch' : 'ours', job, label) as StepResult | null;
      record({ section: 'overhead', model: spec.name, impl, method: 'baseline', ratio: 0 }, round, result);
      if (result && impl === 'ours') firstSeen.ours ??= result;
      if (result && impl === 'pytorch') firstSeen.pytorch ??= result;
      if (result) progress(`${label}: ${((result.medianStepSeconds ?? NaN) * 1000).toFixed(3)} ms/step, ${result.callsPerStep} calls/step`);
    }
  }
  for (const impl of (round % 2 === 0 ? ['ours', 'pytorch'] : ['pytorch', 'ours']) as ('ours' | 'pytorch')[]) {
    const job: OpCallJob = { kind: 'opcall', impl, iterations: plan.overhead.opCalls, threads: options.threads };
    const result = runChild(impl, job, `overhead round ${round + 1} ${impl} op call`) as OpCallResult | null;
    opCalls[impl].push(result?.microsecondsPerCall ?? NaN);
    if (result) progress(`overhead ${impl} x.add(y) on 1-element tensors: ${result.microsecondsPerCall.toFixed(2)} us/call`);
  }
}

function reportOverhead(specs: ModelSpec[]): void {
  const batch = OVERHEAD_BATCH;
  for (const spec of specs) {
    const key = (impl: Implementation): StepKey => ({ section: 'overhead', model: spec.name, impl, method: 'baseline', ratio: 0 });
    for (const impl of ['ours', 'ours_plain', 'pytorch'] as Implementation[]) {
      const list = results(key(impl)).filter((x): x is StepResult => x !== null);
      if (!list.length) continue;
      const samples = list.map((x) => (x.medianStepSeconds ?? NaN) * 1000);
      const calls = median(list.map((x) => x.callsPerStep ?? NaN));
      const stepMs = median(samples);
      emit({ metric: 'overhead_step_ms', section: 'overhead', model: spec.name, impl, batchSize: batch, value: round3(stepMs), unit: 'ms', samples: samples.map(round3) });
      emit({ metric: 'calls_per_step', section: 'overhead', model: spec.name, impl, value: calls, unit: 'calls', note: impl === 'pytorch' ? 'torch functions and Tensor methods called from Python (TorchFunctionMode)' : 'calls into the native addon (every Tensor method, functional and metadata query)' });
      if (calls && stepMs !== null) emit({ metric: 'step_us_per_call', section: 'overhead', model: spec.name, impl, value: round3((stepMs * 1000) / calls), unit: 'us', note: 'step time / calls per step' });
    }
    for (const impl of ['ours', 'ours_plain'] as Implementation[]) {
      const ratio = perRound(key(impl), key('pytorch'), (x, y) => (x.medianStepSeconds ?? NaN) / (y?.medianStepSeconds ?? NaN));
      const extra = perRound(key(impl), key('pytorch'), (x, y) => ((x.medianStepSeconds ?? NaN) - (y?.medianStepSeconds ?? NaN)) * 1000);
      if (ratio.value !== null) emit({ metric: 'overhead_step_ratio', section: 'overhead', model: spec.name, impl, versus: 'pytorch', value: round3(ratio.value), unit: 'ratio', samples: ratio.samples.map(round3) });
      if (extra.value !== null) emit({ metric: 'overhead_extra_ms_per_step', section: 'overhead', model: spec.name, impl, versus: 'pytorch', value: round3(extra.value), unit: 'ms', samples: extra.samples.map(round3) });
    }
  }
  const ours = median(opCalls.ours);
  const torch = median(opCalls.pytorch);
  emit({ metric: 'op_call_us', section: 'overhead', impl: 'ours', op: 'x.add(y), 1-element tensors, result freed', value: round3(ours), unit: 'us', samples: opCalls.ours.map(round3) });
  emit({ metric: 'op_call_us', section: 'overhead', impl: 'pytorch', op: 'x.add(y), 1-element tensors, result freed', value: round3(torch), unit: 'us', samples: opCalls.pytorch.map(round3) });
  if (ours !== null && torch !== null) emit({ metric: 'op_call_ratio', section: 'overhead', impl: 'ours', versus: 'pytorch', value: round3(ours / torch), unit: 'ratio' });
}
const opCalls = { ours: [] as number[], pytorch: [] as number[] };

const throughput: Record<string, number[]> = { worker: [], inline: [] };
let loaderDataset = '';

function dataRound(round: number): void {
  for (const useWorker of [true, false]) {
    const job: LoaderJob = { kind: 'loader', batchSize: options.batchSize, maxBatches: plan.data.maxBatches, useWorker, threads: options.threads };
    const result = runChild('ours', job, `data round ${round + 1} ${useWorker ? 'worker' : 'in-thread'}`) as LoaderResult | null;
    if (!result) continue;
    loaderDataset = result.dataset;
    throughput[useWorker ? 'worker' : 'inline'].push(result.imagesPerSecond);
    progress(`data ${useWorker ? 'worker' : 'in-thread'}: ${result.imagesPerSecond.toFixed(0)} images/s over ${result.batches} batches (${result.dataset})`);
  }
}

function reportData(): void {
  const dataset = loaderDataset;
  const pipeline: Record<string, number | null> = {};
  for (const [mode, samples] of Object.entries(throughput)) {
    pipeline[mode] = median(samples);
    emit({ metric: 'loader_images_per_s', section: 'data', worker: mode === 'worker', dataset, augment: 'crop(pad 2) + hflip, normalize, batch', batchSize: options.batchSize, value: round3(pipeline[mode]), unit: 'images/s', samples: samples.map(round3) });
  }
  for (const consumer of consumption) {
    emit({ metric: 'train_images_per_s', section: 'data', model: consumer.model, impl: 'ours', method: consumer.method, ratio: consumer.ratio, value: round3(consumer.imagesPerSecond), unit: 'images/s', note: 'batch / median ours step time (from the step sections)' });
    for (const mode of ['worker', 'inline']) {
      const supply = pipeline[mode];
      if (supply === null) continue;
      const ratio = supply / consumer.imagesPerSecond;
      emit({
        metric: 'pipeline_ratio', section: 'data', model: consumer.model, method: consumer.method, ratio: consumer.ratio, worker: mode === 'worker', value: round3(ratio), unit: 'loader images/s / training images/s',
        ...(mode === 'worker' ? { target: { op: '>=', value: TARGETS.pipelineRatio }, met: ratio >= TARGETS.pipelineRatio } : {}),
      });
    }
  }
  if (!consumption.length) progress('data: no step section ran, so no training consumption to compare with (run with vit or resnet)');
}

// ---------------------------------------------------------------- main
const resnetName = options.resnet ?? (cuda ? 'resnet18_small' : 'resnet_tiny');
progress(`device ${options.device}, ${options.threads} threads, OMP_WAIT_POLICY=${ompWaitPolicy}, python ${python}; sections ${[...options.only].join(',')}` +
  `; ${rounds} round(s)${budgetMinutes ? ` within ${budgetMinutes} min` : ''}; vit ${JSON.stringify(plan.vit)}, resnet ${resnetName} ${JSON.stringify(plan.resnet)}`);
const vitSpec = options.only.has('vit') ? await modelSpec('vit_fmnist') : null;
const resnetSpec = options.only.has('resnet') ? await modelSpec(resnetName, { imageSize: 28 }) : null;
const overheadSpecs = options.only.has('overhead') ? [await modelSpec('mlp_tiny', { width: 16 }), await modelSpec('vit_micro')] : [];
// Round by round over all sections, so that a time budget cuts whole rounds and every section
// keeps the same number of rounds.
let roundsCompleted = 0;
for (let round = 0; round < rounds; round++) {
  const roundStart = performance.now();
  if (vitSpec) stepRound('vit', vitSpec, plan.vit, round);
  if (resnetSpec) stepRound('resnet', resnetSpec, plan.resnet, round);
  if (overheadSpecs.length) overheadRound(overheadSpecs, round);
  if (options.only.has('data')) dataRound(round);
  roundsCompleted++;
  const elapsed = (performance.now() - benchStart) / 1000;
  const roundSeconds = (performance.now() - roundStart) / 1000;
  if (budgetMinutes > 0 && round + 1 < rounds && elapsed + roundSeconds > budgetMinutes * 60) {
    progress(`round ${round + 1} took ${roundSeconds.toFixed(0)} s; another would end after the ${budgetMinutes}-minute budget, so stopping here (--rounds / --budget-minutes to change)`);
    break;
  }
}
if (vitSpec) reportSteps('vit', vitSpec);
if (resnetSpec) reportSteps('resnet', resnetSpec);
if (overheadSpecs.length) reportOverhead(overheadSpecs);
if (options.only.has('data')) reportData();
// The runtimes' own memory: the process right after loading libtorch (Node + tsx + addon) or torch (Python).
for (const impl of ['ours', 'pytorch'] as const) {
  const starts = [...stepResults.values()].flat().filter((x): x is StepResult => x !== null && x !== undefined && x.impl === impl)
    .map((x) => mib(x.rssAfterImportKiB)).filter((x): x is number => x !== null);
  if (starts.length) emit({ metric: 'rss_after_import_mib', section: 'memory', impl, value: round3(median(starts)), unit: 'MiB', processes: starts.length });
}

const { blasLibraries, buildInfo } = await import('../src/tensor/native.js');
const info = buildInfo();
const machine = {
  date: new Date().toISOString(),
  cpu: cpuModel(),
  cores: availableParallelism(),
  threads: options.threads,
  ompWaitPolicy,
  memoryGiB: Number((totalmem() / 2 ** 30).toFixed(1)),
  kernel: release(),
  node: process.version,
  ours: {
    torchVersion: info.torchVersion, cxx11Abi: info.cxx11Abi, cuda: info.cuda,
    // The child processes' mapped BLAS (the process that computes); the orchestrator's as a fallback.
    blas: firstSeen.ours?.blas ?? blasLibraries(), threadsInChild: firstSeen.ours?.threads ?? null,
    runtime: `node ${process.execArgv.join(' ')} (TypeScript via tsx)`,
  },
  pytorch: {
    python, torchVersion: firstSeen.pytorch?.torchVersion ?? null, blas: firstSeen.pytorch?.blas ?? null,
    threadsInChild: firstSeen.pytorch?.threads ?? null, cuda: firstSeen.pytorch?.cuda ?? null, adamwForeach: firstSeen.pytorch?.adamwForeach ?? null,
  },
  gpu: cuda ? gpuName() : null,
  loadAverage: { start: loadStart.map((x) => Number(x.toFixed(2))), end: loadavg().map((x) => Number(x.toFixed(2))) },
  gitCommit: gitCommit(),
  resnet: resnetName,
  plan,
  roundsCompleted,
  childEnvironment: { OMP_WAIT_POLICY: ompWaitPolicy, MASKSUB_THREADS: String(options.threads), ...options.env },
};
emit({ metric: 'machine', section: 'machine', value: null, unit: null, ...machine });
const wall = (performance.now() - benchStart) / 1000;
emit({ metric: 'bench_wall_s', section: 'run', value: round3(wall), unit: 's' });

const targetLines = lines.filter((line) => 'target' in line);
emit({ metric: 'targets_missed', section: 'run', value: targetLines.filter((line) => line.met === false).length, unit: 'count', of: targetLines.length,
  missed: targetLines.filter((line) => line.met === false).map((line) => `${line.metric} ${line.model ?? ''} ${line.impl ?? ''} ${line.method ?? ''}${line.ratio !== null && line.ratio !== undefined ? ` r=${line.ratio}` : ''}`.replace(/ +/g, ' ').trim()) });
const targets = lines.filter((line) => 'target' in line).map((line) => ({ metric: line.metric, section: line.section, model: line.model, impl: line.impl, method: line.method, ratio: line.ratio, worker: line.worker, value: line.value, target: line.target, met: line.met }));
const stamp = machine.date.replace(/[:]/g, '-').replace(/\..*$/, '');
const name = options.name ?? `${options.device.replace(':', '')}${options.quick ? '-quick' : ''}-${stamp}`;
mkdirSync(options.out, { recursive: true });
const path = join(options.out, `${name}.json`);
const document = { name, args: process.argv.slice(2), machine, targets, figures: lines, raw };
writeFileSync(`${path}.tmp`, JSON.stringify(document, null, 1) + '\n');
renameSync(`${path}.tmp`, path);
progress(`wrote ${path} (${lines.length} figures; ${targets.filter((t) => t.met === false).length} of ${targets.length} targets missed)`);
if (!existsSync(path)) process.exitCode = 1;
