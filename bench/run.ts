// `npm run bench`: how fast, and how much memory, next to PyTorch, measured like for like in one
// run on one machine.
//
// Every measured configuration runs in its own child process (bench/child.ts for ours,
// bench/torch_bench.py for PyTorch), pinned to the same CPUs, so each peak resident memory is its
// own. A round runs every configuration once, in a seeded random order (blocks of one model and
// method, each block's implementations back to back in random order); ratios are taken within a
// round, and a figure is the median and interquartile range over rounds. Before each child the
// load on those CPUs is sampled (and a busy machine waited out, within a bound); during it, the CPU
// time that others used is measured from /proc/stat, so that a noisy process is flagged, not hidden.
//
// Output: one JSON object per line on stdout, one per figure (schema in bench/README.md); progress
// on stderr; everything (provenance, order, per-process load, raw child results) in
// bench/results/<name>.json, and the tables in bench/results/<name>.md.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, release, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  IMPLEMENTATIONS, isPytorch, lastJsonLine, median, summarize, type Implementation, type Job, type LoaderJob, type LoaderResult,
  type ModelSpec, type OpCallJob, type OpCallResult, type StepJob, type StepMethod, type StepResult,
} from './common.js';
import {
  allocatorLibrary, allowedCpus, clockTicksPerSecond, coresBusy, cpuModel, engineEnvironment, gitState, parseCpuList,
  processCpuSeconds, readCpuTimes, sampleBusyCores, sleepSeconds,
} from './machine.js';
import { pairedRatios, roundOrder } from './plan.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');
const SECTIONS = ['vit', 'resnet', 'overhead', 'data', 'feed', 'waitpolicy'] as const;
type Section = (typeof SECTIONS)[number];
const DEFAULT_SECTIONS: Section[] = ['vit', 'resnet', 'overhead', 'data'];

const USAGE = `usage: npm run bench -- [options]

  --quick              smoke test of the harness: 2 rounds, about a second of steps per process
  --rounds N           rounds (default 5 on cpu, 3 on cuda, 2 with --quick)
  --seconds S          timed seconds of steps per process, ViT and ResNet sections (default 20;
                       10 on cuda; 1 with --quick)
  --min-steps N        at least this many timed steps per process (default 5; 2 with --quick)
  --warmup N           untimed steps before them (default ViT 2, ResNet 5; 1 with --quick)
  --impls LIST         implementations of the baseline rows (default on cpu:
                       ours,ours_nocache,pytorch,pytorch_jemalloc; on cuda: ours,pytorch); also
                       ours_plain, pytorch_tcmalloc
  --masksub-impls LIST implementations of the masksub rows (default: --impls without ours_nocache)
  --ratios LIST        MaskSub mask ratios (default 0.5)
  --only LIST          sections: vit,resnet,overhead,data,feed,waitpolicy (default vit,resnet,overhead,data)
  --seed N             seed of the run order (default 1)
  --cpus LIST          CPUs every child is pinned to with taskset (default: all this process may use)
  --no-pin             do not pin (where taskset is missing); the busy-machine figures still cover --cpus
  --threads N          intra-op threads for both (default $MASKSUB_THREADS or the number of CPUs pinned)
  --busy-cores X       others' load (cores busy on those CPUs) that counts as a busy machine (default 0.25)
  --max-wait S         wait up to S seconds for a busy machine before each process (default 30; 0 with --quick)
  --max-wait-total S   stop waiting once S seconds were spent waiting in all (default 300)
  --device cpu|cuda    where the models run (default cpu)
  --resnet NAME        resnet_tiny (default on cpu), resnet_micro or resnet18_small (default on cuda)
  --batch-size N       training batch (default 128)
  --python PATH        python with torch (default $MASKSUB_PYTHON, /usr/bin/python3, python3)
  --name NAME          results file name (default <device>[-quick]-<date>)
  --out DIR            results directory (default bench/results)
  --env KEY=VALUE      set an environment variable in every child (repeatable)
`;

// ---------------------------------------------------------------- arguments
interface Options {
  quick: boolean;
  rounds: number | null;
  seconds: number | null;
  minSteps: number | null;
  warmup: number | null;
  impls: Implementation[] | null;
  masksubImpls: Implementation[] | null;
  ratios: number[];
  only: Set<Section>;
  seed: number;
  cpus: number[] | null;
  pin: boolean;
  threads: number | null;
  busyCores: number;
  maxWait: number | null;
  maxWaitTotal: number;
  device: string;
  resnet: string | null;
  batchSize: number;
  python: string | null;
  name: string | null;
  out: string;
  env: Record<string, string>;
}

function fail(message: string): never {
  process.stderr.write(`bench: ${message}\n`);
  process.exit(2);
}

function parseArguments(argv: string[]): Options {
  const options: Options = {
    quick: false, rounds: null, seconds: null, minSteps: null, warmup: null, impls: null, masksubImpls: null, ratios: [0.5],
    only: new Set(DEFAULT_SECTIONS), seed: 1, cpus: null, pin: true, threads: null, busyCores: 0.25, maxWait: null, maxWaitTotal: 300,
    device: 'cpu', resnet: null, batchSize: 128, python: null, name: null, out: join(here, 'results'), env: {},
  };
  const integer = (flag: string, value: string, minimum: number): number => {
    const number = Number(value);
    if (!Number.isInteger(number) || number < minimum) fail(`${flag} needs an integer >= ${minimum}, got '${value}'`);
    return number;
  };
  const positive = (flag: string, value: string, minimum = 0): number => {
    const number = Number(value);
    if (!Number.isFinite(number) || number < minimum) fail(`${flag} needs a number >= ${minimum}, got '${value}'`);
    return number;
  };
  const implList = (flag: string, value: string): Implementation[] => {
    const list = value.split(',').map((part) => part.trim()).filter(Boolean);
    for (const impl of list) if (!IMPLEMENTATIONS.includes(impl as Implementation)) fail(`${flag}: unknown implementation '${impl}' (${IMPLEMENTATIONS.join(', ')})`);
    if (!list.length) fail(`${flag} needs at least one implementation`);
    return list as Implementation[];
  };
  for (let index = 0; index < argv.length; index++) {
    const argument = argv[index];
    const equals = argument.indexOf('=');
    const flag = argument.startsWith('--') && equals > 0 ? argument.slice(0, equals) : argument;
    const inline = argument.startsWith('--') && equals > 0 ? argument.slice(equals + 1) : undefined;
    const value = (): string => {
      if (inline !== undefined) return inline;
      const next = argv[++index];
      if (next === undefined) fail(`${flag} needs a value`);
      return next;
    };
    switch (flag) {
      case '--quick': options.quick = true; break;
      case '--rounds': options.rounds = integer(flag, value(), 1); break;
      case '--seconds': options.seconds = positive(flag, value()); break;
      case '--min-steps': options.minSteps = integer(flag, value(), 1); break;
      case '--warmup': options.warmup = integer(flag, value(), 0); break;
      case '--impls': options.impls = implList(flag, value()); break;
      case '--masksub-impls': options.masksubImpls = implList(flag, value()); break;
      case '--ratios': {
        const text = value();
        options.ratios = text.split(',').map((part) => Number(part.trim()));
        if (!options.ratios.length || options.ratios.some((ratio) => !(ratio > 0 && ratio < 1))) fail(`--ratios needs mask ratios in (0, 1), got '${text}'`);
        break;
      }
      case '--only': {
        const sections = value().split(',').map((part) => part.trim()).filter(Boolean);
        for (const section of sections) if (!SECTIONS.includes(section as Section)) fail(`--only: unknown section '${section}' (${SECTIONS.join(', ')})`);
        if (!sections.length) fail('--only needs at least one section');
        options.only = new Set(sections as Section[]);
        break;
      }
      case '--seed': options.seed = integer(flag, value(), 0); break;
      case '--cpus': {
        const text = value();
        try {
          options.cpus = parseCpuList(text);
        } catch (error) {
          fail(`--cpus: ${(error as Error).message}`);
        }
        break;
      }
      case '--no-pin': options.pin = false; break;
      case '--threads': options.threads = integer(flag, value(), 1); break;
      case '--busy-cores': options.busyCores = positive(flag, value()); break;
      case '--max-wait': options.maxWait = positive(flag, value()); break;
      case '--max-wait-total': options.maxWaitTotal = positive(flag, value()); break;
      case '--device': {
        options.device = value();
        if (!/^(cpu|cuda(:\d+)?)$/.test(options.device)) fail(`--device must be cpu or cuda, got '${options.device}'`);
        break;
      }
      case '--resnet': {
        options.resnet = value();
        if (!['resnet_tiny', 'resnet_micro', 'resnet18_small'].includes(options.resnet)) fail('--resnet must be resnet_tiny, resnet_micro or resnet18_small');
        break;
      }
      case '--batch-size': options.batchSize = integer(flag, value(), 1); break;
      case '--python': options.python = value(); break;
      case '--name': {
        options.name = value();
        if (!/^[\w.-]+$/.test(options.name)) fail(`--name may hold letters, digits, '.', '_' and '-' only, got '${options.name}'`);
        break;
      }
      case '--out': options.out = resolve(value()); break;
      case '--env': {
        const pair = value();
        const match = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(pair);
        if (!match) fail(`--env needs KEY=VALUE, got '${pair}'`);
        options.env[match[1]] = match[2];
        break;
      }
      case '--help': case '-h': process.stdout.write(USAGE); process.exit(0); break;
      default: fail(`unknown option '${argument}'\n${USAGE}`);
    }
  }
  return options;
}

const options = parseArguments(process.argv.slice(2));
const cuda = options.device !== 'cpu';
const quick = options.quick;

// ---------------------------------------------------------------- CPUs, threads, allocators
const cpuSet = options.cpus ?? allowedCpus() ?? Array.from({ length: availableParallelism() }, (_, cpu) => cpu);
const cpuList = cpuSet.join(',');
const threads = options.threads ?? (Number.isInteger(Number(process.env.MASKSUB_THREADS)) && Number(process.env.MASKSUB_THREADS) > 0 ? Number(process.env.MASKSUB_THREADS) : cpuSet.length);
if (options.pin && spawnSync('taskset', ['-c', cpuList, 'true']).status !== 0) {
  fail(`cannot pin to CPUs ${cpuList} with taskset (util-linux): is taskset installed, and may this process use those CPUs? (--no-pin runs without)`);
}
/** A command line, pinned to the benchmark's CPUs unless --no-pin. */
const pinned = (command: string, args: string[]): [string, string[]] => (options.pin ? ['taskset', ['-c', cpuList, command, ...args]] : [command, args]);
const ticksPerSecond = clockTicksPerSecond();

const impls = options.impls ?? (cuda ? ['ours', 'pytorch'] : ['ours', 'ours_nocache', 'pytorch', 'pytorch_jemalloc']);
const masksubImpls = options.masksubImpls ?? impls.filter((impl) => impl !== 'ours_nocache');
const preload: Partial<Record<Implementation, string>> = {};
for (const impl of new Set([...impls, ...masksubImpls])) {
  if (impl !== 'pytorch_jemalloc' && impl !== 'pytorch_tcmalloc') continue;
  const name = impl === 'pytorch_jemalloc' ? 'jemalloc' : 'tcmalloc';
  const library = allocatorLibrary(name);
  if (!library) fail(`${impl} needs ${name}: apt-get install ${name === 'jemalloc' ? 'libjemalloc2' : 'libtcmalloc-minimal4'} (scripts/setup.sh installs libjemalloc2), or leave ${impl} out of --impls`);
  preload[impl] = library;
}

/** How each implementation's process is set up: the step it runs and the allocator under it. */
function implementationEnvironment(impl: Implementation): Record<string, string | null> {
  switch (impl) {
    // '1' rather than unset, so that a MASKSUB_CACHING_ALLOCATOR=0 in the caller's shell cannot turn `ours` into `ours_nocache`.
    case 'ours': case 'ours_plain': return { MASKSUB_CACHING_ALLOCATOR: '1', LD_PRELOAD: null };
    case 'ours_nocache': return { MASKSUB_CACHING_ALLOCATOR: '0', LD_PRELOAD: null };
    case 'pytorch': return { LD_PRELOAD: null };
    case 'pytorch_jemalloc': case 'pytorch_tcmalloc': return { LD_PRELOAD: preload[impl] ?? null };
  }
}

function allocatorOf(impl: Implementation): string {
  switch (impl) {
    case 'ours': case 'ours_plain': return 'masksub caching allocator (native/allocator.cc) over glibc malloc';
    case 'ours_nocache': return 'glibc malloc (MASKSUB_CACHING_ALLOCATOR=0)';
    case 'pytorch': return 'glibc malloc';
    case 'pytorch_jemalloc': case 'pytorch_tcmalloc': return `${preload[impl]} (LD_PRELOAD)`;
  }
}

// Ours uses PASSIVE unless the user set OMP_WAIT_POLICY (src/tensor/native.ts); PyTorch gets the same.
const ompWaitPolicy = process.env.OMP_WAIT_POLICY ?? 'PASSIVE';
const baseEnvironment: Record<string, string> = {
  OMP_WAIT_POLICY: ompWaitPolicy, OMP_NUM_THREADS: String(threads), MASKSUB_THREADS: String(threads), ...options.env,
};

function childEnvironment(overrides: Record<string, string | null>): NodeJS.ProcessEnv {
  const environment: NodeJS.ProcessEnv = { ...process.env, ...baseEnvironment };
  for (const [key, value] of Object.entries(overrides)) {
    if (value === null) delete environment[key];
    else environment[key] = value;
  }
  return environment;
}

function findPython(): string {
  const candidates = options.python ? [options.python] : process.env.MASKSUB_PYTHON ? [process.env.MASKSUB_PYTHON] : ['/usr/bin/python3', 'python3'];
  const probe = cuda ? 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)' : 'import torch';
  for (const candidate of candidates) {
    const result = spawnSync(candidate, ['-c', probe], { stdio: 'ignore', timeout: 120000 });
    if (result.status === 0) return candidate;
  }
  fail(`no python with torch${cuda ? ' (and CUDA)' : ''} among ${candidates.join(', ')}; pass --python`);
}
const python = findPython();

// ---------------------------------------------------------------- the plan
const rounds = options.rounds ?? (quick ? 2 : cuda ? 3 : 5);
const stepSeconds = options.seconds ?? (quick ? 1 : cuda ? 10 : 20);
const minSteps = options.minSteps ?? (quick ? 2 : 5);
const plan = {
  rounds, seed: options.seed, sections: [...options.only], impls, masksubImpls, ratios: options.ratios,
  vit: { warmup: options.warmup ?? (quick ? 1 : cuda ? 5 : 2), seconds: stepSeconds, minSteps },
  resnet: { warmup: options.warmup ?? (quick ? 1 : 5), seconds: stepSeconds, minSteps },
  // The per-call overhead: thousands of tiny steps in a second or two are many samples already.
  overhead: { warmup: quick ? 5 : 20, seconds: quick ? 0.3 : 1, minSteps: quick ? 10 : 50, batchSize: 2, opCalls: quick ? 5000 : 50000 },
  data: { maxBatches: quick ? 30 : 1000 },
  waitpolicy: { model: 'vit_micro', batchSize: 32, warmup: quick ? 1 : 2, seconds: quick ? 0.5 : 3, minSteps: 3 },
  busy: {
    thresholdCores: options.busyCores, sampleSeconds: quick ? 0.2 : 0.5,
    maxWaitSeconds: options.maxWait ?? (quick ? 0 : 30), maxWaitTotalSeconds: options.maxWaitTotal,
  },
};
/** Paper Table A.7 (ViT) and MASKSUB.md (ResNet: the whole image again, x2). */
const PAPER_COST: Record<string, Record<string, number>> = { vit: { '0.25': 1.75, '0.5': 1.5, '0.75': 1.25 }, resnet: { '0.25': 2, '0.5': 2, '0.75': 2 } };
const TARGETS = { stepRatio: 1.05, vitMasksubCost: 1.5, peakRssRatio: 1.2, pipelineRatio: 5 };

/** One contender in a block: an implementation, its environment, and whether a busy process runs next to it. */
interface Contender {
  id: string;
  impl: Implementation;
  env: Record<string, string | null>;
  competitor: boolean;
  job: Job;
}

interface Block {
  id: string;
  section: Section;
  model: string | null;
  method: StepMethod | null;
  ratio: number | null;
  contenders: Contender[];
}

// The PyTorch side builds its models from our registry's configs, so the two cannot drift apart.
async function modelSpec(name: string, imageSize = 28): Promise<ModelSpec> {
  if (name === 'mlp_tiny') return { name, family: 'mlp', imageSize, inChannels: 1, numClasses: 10, config: { width: 16, imageSize, inChannels: 1, numClasses: 10 } };
  const { createModel } = await import('../src/models/index.js');
  const model = createModel(name, { inChannels: 1, numClasses: 10, imageSize });
  try {
    const config = { ...(model as unknown as { config: Record<string, unknown> }).config };
    return { name, family: model.info.family === 'vit' ? 'vit' : 'resnet', imageSize, inChannels: 1, numClasses: 10, config };
  } finally {
    model.dispose();
  }
}

function stepJob(impl: Implementation, model: ModelSpec, method: StepMethod, ratio: number, settings: { warmup: number; seconds: number; minSteps: number }, extra: Partial<StepJob> = {}): StepJob {
  return {
    kind: 'step', impl, step: impl === 'ours_plain' ? 'plain' : 'trainer', model, method, ratio: method === 'masksub' ? ratio : 0, subWeight: 0.5,
    labelSmoothing: 0.1, lr: 1e-3, weightDecay: 0.05, batchSize: options.batchSize, warmup: settings.warmup, seconds: settings.seconds,
    minSteps: settings.minSteps, maxSteps: null, threads, device: options.device, seed: 0, countCalls: false, feed: 'fixed', ...extra,
  };
}

const stepContender = (impl: Implementation, job: StepJob): Contender => ({ id: impl, impl, env: implementationEnvironment(impl), competitor: false, job });

const resnetName = options.resnet ?? (cuda ? 'resnet18_small' : 'resnet_tiny');
const blocks: Block[] = [];
for (const section of ['vit', 'resnet'] as const) {
  if (!options.only.has(section)) continue;
  const spec = await modelSpec(section === 'vit' ? 'vit_fmnist' : resnetName);
  const settings = plan[section];
  for (const { method, ratio } of [{ method: 'baseline' as const, ratio: 0 }, ...options.ratios.map((r) => ({ method: 'masksub' as const, ratio: r }))]) {
    const list = method === 'baseline' ? impls : masksubImpls;
    blocks.push({
      id: `${section} ${method}${method === 'masksub' ? ` r=${ratio}` : ''}`, section, model: spec.name, method, ratio: method === 'masksub' ? ratio : null,
      contenders: list.map((impl) => stepContender(impl, stepJob(impl, spec, method, ratio, settings))),
    });
  }
}
if (options.only.has('overhead')) {
  const settings = plan.overhead;
  const overheadImpls: Implementation[] = ['ours', 'ours_plain', ...impls.filter(isPytorch)];
  for (const name of ['mlp_tiny', 'vit_micro']) {
    const spec = await modelSpec(name);
    blocks.push({
      id: `overhead ${name}`, section: 'overhead', model: name, method: 'baseline', ratio: null,
      contenders: overheadImpls.map((impl) => stepContender(impl, stepJob(impl, spec, 'baseline', 0, settings, { batchSize: settings.batchSize, countCalls: true }))),
    });
  }
  blocks.push({
    id: 'overhead op call', section: 'overhead', model: null, method: null, ratio: null,
    contenders: ['ours' as const, ...impls.filter(isPytorch)].map((impl) => {
      const job: OpCallJob = { kind: 'opcall', impl, iterations: settings.opCalls, threads };
      return { id: impl, impl, env: implementationEnvironment(impl), competitor: false, job };
    }),
  });
}
if (options.only.has('data')) {
  blocks.push({
    id: 'data batch assembly', section: 'data', model: null, method: null, ratio: null,
    contenders: [true, false].map((useWorker) => {
      const job: LoaderJob = { kind: 'loader', batchSize: options.batchSize, maxBatches: plan.data.maxBatches, useWorker, threads };
      return { id: useWorker ? 'worker' : 'in-thread', impl: 'ours' as const, env: implementationEnvironment('ours'), competitor: false, job };
    }),
  });
}
if (options.only.has('feed')) {
  // The trainer's feed: batches from BatchLoader's worker thread next to libtorch's threads, against a fixed batch.
  const spec = await modelSpec('vit_fmnist');
  blocks.push({
    id: 'feed vit baseline', section: 'feed', model: spec.name, method: 'baseline', ratio: null,
    contenders: (['fixed', 'worker'] as const).map((feed) => ({
      id: feed === 'worker' ? 'ours fed by the loader worker' : 'ours on a fixed batch', impl: 'ours' as const, env: implementationEnvironment('ours'),
      competitor: false, job: stepJob('ours', spec, 'baseline', 0, plan.vit, { feed }),
    })),
  });
}
if (options.only.has('waitpolicy')) {
  // OpenMP's waiting policy with one busy process next to the step's threads on the same CPUs.
  // 'default' leaves OMP_WAIT_POLICY unset (libgomp spins for a while, then sleeps); ours always
  // has it set (src/tensor/native.ts makes unset PASSIVE), so its comparison is ACTIVE vs PASSIVE.
  const settings = plan.waitpolicy;
  const spec = await modelSpec(settings.model);
  const variants: { impl: Implementation; policy: string | null; competitor: boolean }[] = [
    { impl: 'ours', policy: 'PASSIVE', competitor: false }, { impl: 'ours', policy: 'ACTIVE', competitor: false },
    { impl: 'ours', policy: 'PASSIVE', competitor: true }, { impl: 'ours', policy: 'ACTIVE', competitor: true },
    { impl: 'pytorch', policy: 'PASSIVE', competitor: true }, { impl: 'pytorch', policy: null, competitor: true }, { impl: 'pytorch', policy: 'ACTIVE', competitor: true },
  ];
  blocks.push({
    id: `waitpolicy ${settings.model}`, section: 'waitpolicy', model: settings.model, method: 'baseline', ratio: null,
    contenders: variants.map(({ impl, policy, competitor }) => ({
      id: `${impl} ${policy ?? 'default'} ${competitor ? 'busy' : 'idle'}`, impl, competitor,
      env: { ...implementationEnvironment(impl), OMP_WAIT_POLICY: policy },
      job: stepJob(impl, spec, 'baseline', 0, settings, { batchSize: settings.batchSize }),
    })),
  });
}

// ---------------------------------------------------------------- running children
interface ProcessRecord {
  round: number;
  position: number;
  block: string;
  contender: string;
  impl: Implementation;
  label: string;
  env: Record<string, string | null>;
  competitor: boolean;
  /** 1-minute load average just before the child started (our own previous child is part of it). */
  loadAverage1: number;
  /** Cores' worth of busy time on the pinned CPUs in a short sample just before the child (ours idle). */
  busyCoresBefore: number | null;
  waitedSeconds: number;
  /** Cores' worth of busy time on the pinned CPUs during the child that was not the child's (nor the competitor's). */
  othersCoresDuring: number | null;
  stealCoresDuring: number | null;
  competitorCores: number | null;
  busy: boolean;
  processSeconds: number;
  job: Job;
  result: StepResult | LoaderResult | OpCallResult | null;
  error?: string;
  stderr?: string;
}

const records: ProcessRecord[] = [];
const lines: Record<string, unknown>[] = [];
const benchStart = performance.now();
const loadAtStart = loadavg();
let totalWaited = 0;

function emit(line: Record<string, unknown>): void {
  const full = { bench: 'masksub', device: options.device, ...line };
  lines.push(full);
  process.stdout.write(JSON.stringify(full) + '\n');
}

function progress(message: string): void {
  process.stderr.write(`[bench ${((performance.now() - benchStart) / 1000).toFixed(0).padStart(5)}s] ${message}\n`);
}

/** Samples the pinned CPUs; while others keep them busy, waits (bounded per process and in all). */
function waitForQuiet(): { busyCoresBefore: number | null; waitedSeconds: number } {
  const { thresholdCores, sampleSeconds, maxWaitSeconds, maxWaitTotalSeconds } = plan.busy;
  let busyCoresBefore = sampleBusyCores(cpuSet, sampleSeconds, ticksPerSecond);
  let waitedSeconds = 0;
  while (busyCoresBefore !== null && busyCoresBefore > thresholdCores && waitedSeconds < maxWaitSeconds && totalWaited < maxWaitTotalSeconds) {
    sleepSeconds(2);
    busyCoresBefore = sampleBusyCores(cpuSet, 1, ticksPerSecond);
    waitedSeconds += 3;
    totalWaited += 3;
  }
  return { busyCoresBefore, waitedSeconds };
}

/** One spinning thread in its own process, pinned to the same CPUs: the busy neighbour of the waitpolicy section. */
function startCompetitor(): ChildProcess {
  return spawn(...pinned(process.execPath, ['-e', 'for (;;) {}']), { stdio: 'ignore' });
}

function runProcess(round: number, position: number, block: Block, contender: Contender): ProcessRecord {
  const label = `round ${round + 1}/${rounds} #${position + 1} ${block.id}: ${contender.id}`;
  const loadAverage1 = loadavg()[0];
  const { busyCoresBefore, waitedSeconds } = waitForQuiet();
  const command = isPytorch(contender.impl) ? python : process.execPath;
  const args = isPytorch(contender.impl)
    ? [join(here, 'torch_bench.py'), JSON.stringify(contender.job)]
    : [...process.execArgv, join(here, 'child.ts'), JSON.stringify(contender.job)];
  const competitor = contender.competitor ? startCompetitor() : null;
  if (competitor) sleepSeconds(0.2);
  const competitorCpuBefore = competitor?.pid ? processCpuSeconds(competitor.pid, ticksPerSecond) : null;
  const cpuBefore = readCpuTimes(cpuSet);
  const started = performance.now();
  const result = spawnSync(...pinned(command, args), {
    cwd: root, env: childEnvironment(contender.env), encoding: 'utf8', maxBuffer: 64 << 20, timeout: 20 * 60 * 1000,
  });
  const processSeconds = (performance.now() - started) / 1000;
  const cpuAfter = readCpuTimes(cpuSet);
  const competitorCpuAfter = competitor?.pid ? processCpuSeconds(competitor.pid, ticksPerSecond) : null;
  if (competitor) competitor.kill('SIGKILL');
  const competitorCores = competitorCpuBefore !== null && competitorCpuAfter !== null ? (competitorCpuAfter - competitorCpuBefore) / processSeconds : null;

  const record: ProcessRecord = {
    round, position, block: block.id, contender: contender.id, impl: contender.impl, label, env: contender.env, competitor: contender.competitor,
    loadAverage1: Number(loadAverage1.toFixed(2)), busyCoresBefore: round3(busyCoresBefore), waitedSeconds, othersCoresDuring: null,
    stealCoresDuring: null, competitorCores: round3(competitorCores), busy: false, processSeconds: round3(processSeconds) ?? processSeconds,
    job: contender.job, result: null,
  };
  if (result.status !== 0 || result.error) {
    record.error = result.error ? result.error.message : `exit ${result.status ?? result.signal}`;
    record.stderr = `${result.stderr ?? ''}`.trim().split('\n').slice(-15).join('\n');
    progress(`${label}: FAILED (${record.error})\n${record.stderr}`);
    emit({ metric: 'error', section: block.section, block: block.id, impl: contender.impl, contender: contender.id, round, value: null, unit: null, error: record.error, detail: record.stderr });
    return record;
  }
  try {
    record.result = lastJsonLine(result.stdout) as StepResult | LoaderResult | OpCallResult;
  } catch (error) {
    record.error = (error as Error).message;
    progress(`${label}: no result (${record.error})`);
    emit({ metric: 'error', section: block.section, block: block.id, impl: contender.impl, contender: contender.id, round, value: null, unit: null, error: record.error });
    return record;
  }
  if (cpuBefore && cpuAfter) {
    const machine = coresBusy(cpuBefore, cpuAfter, processSeconds, ticksPerSecond);
    const own = record.result.cpuSeconds / processSeconds + (competitorCores ?? 0);
    record.othersCoresDuring = round3(Math.max(0, machine.busy - own));
    record.stealCoresDuring = round3(machine.steal);
  }
  const threshold = plan.busy.thresholdCores;
  record.busy = (record.busyCoresBefore ?? 0) > threshold || (record.othersCoresDuring ?? 0) > threshold || (record.stealCoresDuring ?? 0) > threshold;
  // LD_PRELOAD can fail quietly (a wrong path only warns): check that the intended malloc is the one mapped.
  const wanted = contender.env.LD_PRELOAD;
  if (wanted && !record.result.malloc.includes(wanted.split('/').pop()?.split('.so')[0] ?? wanted)) {
    record.error = `expected ${wanted} to be mapped (LD_PRELOAD), found ${record.result.malloc}`;
    emit({ metric: 'error', section: block.section, block: block.id, impl: contender.impl, contender: contender.id, round, value: null, unit: null, error: record.error });
    record.result = null;
    return record;
  }
  progress(`${label}: ${describe(record.result)}; ${record.result.cpuSeconds.toFixed(1)} cpu-s in ${processSeconds.toFixed(1)} s` +
    `; others ${record.othersCoresDuring?.toFixed(2)} cores${record.busy ? ' BUSY' : ''}${waitedSeconds ? `, waited ${waitedSeconds} s` : ''}`);
  return record;
}

function describe(result: StepResult | LoaderResult | OpCallResult): string {
  if ('medianStepSeconds' in result) {
    const step = result.medianStepSeconds ?? NaN;
    return `${step < 0.1 ? `${(step * 1000).toFixed(2)} ms` : `${step.toFixed(4)} s`}/step x ${result.stepSeconds.length}, peak RSS ${((result.peakRssKiB ?? NaN) / 1024).toFixed(0)} MiB` +
      (result.callsPerStep ? `, ${result.callsPerStep} calls/step` : '');
  }
  if ('imagesPerSecond' in result) return `${result.imagesPerSecond.toFixed(0)} images/s over ${result.batches} batches`;
  return `${result.microsecondsPerCall.toFixed(2)} us/call`;
}

function round3(value: number | null): number | null {
  return value === null || !Number.isFinite(value) ? null : Number(value.toPrecision(4));
}

// ---------------------------------------------------------------- main loop
const processesPerRound = blocks.reduce((total, block) => total + block.contenders.length, 0);
const estimateSeconds = rounds * blocks.reduce((total, block) => total + block.contenders.reduce((sum, contender) => {
  const job = contender.job;
  const seconds = job.kind === 'step' ? job.seconds + job.warmup * (block.section === 'vit' || block.section === 'feed' ? 1.3 : block.section === 'resnet' ? 0.15 : 0.02) : job.kind === 'opcall' ? 1.5 : 1;
  return sum + seconds + 2 + plan.busy.sampleSeconds;
}, 0), 0);
const initialBusy = sampleBusyCores(cpuSet, 1, ticksPerSecond);
progress(`device ${options.device}, CPUs ${cpuList}, ${threads} threads, OMP_WAIT_POLICY=${ompWaitPolicy}, python ${python}`);
progress(`${rounds} round(s) x ${processesPerRound} processes (${blocks.map((block) => `${block.id}: ${block.contenders.map((c) => c.id).join('/')}`).join('; ')})`);
progress(`about ${(estimateSeconds / 60).toFixed(0)} min if the machine is idle; load average ${loadAtStart.map((x) => x.toFixed(2)).join(' ')}, others busy ${initialBusy?.toFixed(2)} cores now` +
  `${initialBusy !== null && initialBusy > plan.busy.thresholdCores ? ' (BUSY: results will be flagged; quiet the machine for a full run)' : ''}`);
const order: string[][] = [];
for (let round = 0; round < rounds; round++) {
  const sequence = roundOrder<Contender, Block>(blocks, options.seed, round);
  order.push(sequence.map(({ block, contender }) => `${block.id}: ${contender.id}`));
  sequence.forEach(({ block, contender }, position) => records.push(runProcess(round, position, block, contender)));
}

// ---------------------------------------------------------------- figures
/** Per round, the result of one contender in one block (undefined where it failed). */
function perRound<T extends StepResult | LoaderResult | OpCallResult>(blockId: string, contenderId: string): (ProcessRecord & { result: T } | undefined)[] {
  const list: (ProcessRecord & { result: T } | undefined)[] = new Array(rounds).fill(undefined);
  for (const record of records) {
    if (record.block === blockId && record.contender === contenderId && record.result) list[record.round] = record as ProcessRecord & { result: T };
  }
  return list;
}

type StepRecord = ProcessRecord & { result: StepResult };
const stepTime = (record: StepRecord): number | null => record.result.medianStepSeconds;
const peakRss = (record: StepRecord): number | null => record.result.peakRssKiB;
const present = <T>(list: (T | undefined)[]): T[] => list.filter((x): x is T => x !== undefined);

/** The common fields of a figure from per-round samples: median, IQR, the samples, and how many came from busy processes. */
function figure(samples: number[], flagged: number, digits = round3): Record<string, unknown> {
  const summary = summarize(samples);
  return {
    value: digits(summary.median), iqr: summary.iqr ? summary.iqr.map((x) => digits(x)) : null, rounds: summary.n,
    samples: samples.map((x) => digits(x)), busySamples: flagged,
  };
}

function busyCount(left: (ProcessRecord | undefined)[], right: (ProcessRecord | undefined)[] = [], roundsUsed?: number[]): number {
  const used = roundsUsed ?? Array.from({ length: rounds }, (_, round) => round);
  return used.filter((round) => left[round]?.busy || right[round]?.busy).length;
}

const consumption: { model: string; method: string; ratio: number | null; imagesPerSecond: number }[] = [];

function reportStepBlock(block: Block): void {
  const base = { section: block.section, model: block.model, method: block.method, ratio: block.ratio };
  const byContender = new Map(block.contenders.map((contender) => [contender.id, perRound<StepResult>(block.id, contender.id)]));
  for (const contender of block.contenders) {
    const list = byContender.get(contender.id) ?? [];
    const done = present(list);
    if (!done.length) continue;
    const times = done.map((record) => stepTime(record) ?? NaN);
    emit({
      metric: 'step_time_s', ...base, impl: contender.impl, allocator: allocatorOf(contender.impl), unit: 's', ...figure(times, done.filter((r) => r.busy).length),
      stepsPerProcess: median(done.map((record) => record.result.stepSeconds.length)),
      timedSecondsPerProcess: round3(median(done.map((record) => record.result.stepSeconds.reduce((a, b) => a + b, 0)))),
    });
    const peaks = done.map((record) => (record.result.peakRssKiB ?? NaN) / 1024);
    emit({ metric: 'peak_rss_mib', ...base, impl: contender.impl, unit: 'MiB', ...figure(peaks, 0) });
    const above = done.map((record) => (record.result.peakRssKiB !== null && record.result.rssAfterImportKiB !== null ? (record.result.peakRssKiB - record.result.rssAfterImportKiB) / 1024 : NaN));
    emit({ metric: 'peak_rss_above_start_mib', ...base, impl: contender.impl, unit: 'MiB', ...figure(above, 0), note: 'peak RSS - RSS after importing the engine' });
    if (cuda) {
      const used = done.map((record) => record.result.gpuUsedMiB ?? NaN);
      emit({ metric: 'gpu_used_mib', ...base, impl: contender.impl, unit: 'MiB', ...figure(used, 0), note: 'nvidia-smi used_memory of the process at the end (CUDA context + caching allocator)' });
    }
  }
  // The strongest PyTorch configuration: the lowest median step time; the headline ratio is against it.
  const pytorchContenders = block.contenders.filter((contender) => isPytorch(contender.impl));
  let strongest: Contender | null = null;
  let strongestTime = Infinity;
  for (const contender of pytorchContenders) {
    const time = median(present(byContender.get(contender.id) ?? []).map((record) => stepTime(record) ?? NaN));
    if (time !== null && time < strongestTime) {
      strongest = contender;
      strongestTime = time;
    }
  }
  for (const ours of block.contenders.filter((contender) => !isPytorch(contender.impl))) {
    for (const theirs of pytorchContenders) {
      const left = byContender.get(ours.id) ?? [];
      const right = byContender.get(theirs.id) ?? [];
      const headline = ours.impl === 'ours' && theirs === strongest;
      const time = pairedRatios(left, right, stepTime);
      if (time.samples.length) {
        const target = headline && !cuda && block.section !== 'overhead' ? { target: { op: '<=', value: TARGETS.stepRatio } } : {};
        const value = median(time.samples);
        emit({
          metric: block.section === 'overhead' ? 'overhead_step_ratio' : 'step_time_ratio', ...base, impl: ours.impl, versus: theirs.impl, headline, unit: 'ratio',
          ...figure(time.samples, busyCount(left, right, time.rounds)), ...target, ...('target' in target && value !== null ? { met: value <= TARGETS.stepRatio } : {}),
        });
      }
      if (block.section === 'overhead') {
        // The same paired rounds as the ratio: the extra host time per step, in milliseconds.
        const differences = time.rounds.map((round) => ((stepTime(left[round] as StepRecord) ?? NaN) - (stepTime(right[round] as StepRecord) ?? NaN)) * 1000);
        emit({ metric: 'overhead_extra_ms_per_step', ...base, impl: ours.impl, versus: theirs.impl, unit: 'ms', ...figure(differences, busyCount(left, right, time.rounds)) });
        continue;
      }
      const memory = pairedRatios(left, right, peakRss);
      if (memory.samples.length && ours.impl !== 'ours_plain') {
        const value = median(memory.samples);
        emit({
          metric: 'peak_rss_ratio', ...base, impl: ours.impl, versus: theirs.impl, headline, unit: 'ratio', ...figure(memory.samples, 0),
          ...(headline && value !== null ? { target: { op: '<=', value: TARGETS.peakRssRatio }, met: value <= TARGETS.peakRssRatio } : {}),
        });
      }
    }
  }
  if (block.section === 'overhead') {
    for (const contender of block.contenders) {
      const done = present(byContender.get(contender.id) ?? []);
      const calls = median(done.map((record) => record.result.callsPerStep ?? NaN));
      const step = median(done.map((record) => stepTime(record) ?? NaN));
      if (calls === null) continue;
      emit({
        metric: 'calls_per_step', ...base, impl: contender.impl, value: calls, unit: 'calls',
        note: isPytorch(contender.impl) ? 'torch functions and Tensor methods called from Python (TorchFunctionMode)' : 'calls into the native addon (every Tensor method, functional and metadata query)',
      });
      if (step !== null) emit({ metric: 'step_us_per_call', ...base, impl: contender.impl, value: round3((step * 1e6) / calls), unit: 'us', note: 'step time / calls per step' });
    }
  }
  if (block.method === 'baseline' && (block.section === 'vit' || block.section === 'resnet')) {
    const step = median(present(byContender.get('ours') ?? []).map((record) => stepTime(record) ?? NaN));
    if (step !== null && block.model) consumption.push({ model: block.model, method: 'baseline', ratio: null, imagesPerSecond: options.batchSize / step });
  }
  if (block.method === 'masksub' && block.model) {
    const step = median(present(byContender.get('ours') ?? []).map((record) => stepTime(record) ?? NaN));
    if (step !== null) consumption.push({ model: block.model, method: 'masksub', ratio: block.ratio, imagesPerSecond: options.batchSize / step });
  }
}

/** MaskSub's cost: masksub step / baseline step of the same implementation in the same round. */
function reportMasksubCost(section: 'vit' | 'resnet'): void {
  const baseline = blocks.find((block) => block.section === section && block.method === 'baseline');
  if (!baseline) return;
  for (const block of blocks.filter((candidate) => candidate.section === section && candidate.method === 'masksub')) {
    for (const contender of block.contenders) {
      if (!baseline.contenders.some((other) => other.id === contender.id)) continue;
      const left = perRound<StepResult>(block.id, contender.id);
      const right = perRound<StepResult>(baseline.id, contender.id);
      const cost = pairedRatios(left, right, stepTime);
      if (!cost.samples.length) continue;
      const value = median(cost.samples);
      const target = section === 'vit' && block.ratio === 0.5 && contender.impl === 'ours' && value !== null ? { target: { op: '<=', value: TARGETS.vitMasksubCost }, met: value <= TARGETS.vitMasksubCost } : {};
      emit({
        metric: 'masksub_cost', section, model: block.model, impl: contender.impl, ratio: block.ratio, unit: 'x baseline step',
        ...figure(cost.samples, busyCount(left, right, cost.rounds)), paper: PAPER_COST[section][String(block.ratio)], ...target,
      });
    }
  }
}

function reportOpCalls(block: Block): void {
  const byContender = new Map(block.contenders.map((contender) => [contender.id, perRound<OpCallResult>(block.id, contender.id)]));
  const microseconds = (record: ProcessRecord & { result: OpCallResult }): number => record.result.microsecondsPerCall;
  for (const contender of block.contenders) {
    const done = present(byContender.get(contender.id) ?? []);
    if (done.length) emit({ metric: 'op_call_us', section: 'overhead', impl: contender.impl, op: 'x.add(y), 1-element tensors, result freed', unit: 'us', ...figure(done.map(microseconds), done.filter((r) => r.busy).length) });
  }
  const ours = byContender.get('ours') ?? [];
  for (const contender of block.contenders.filter((candidate) => isPytorch(candidate.impl))) {
    const theirs = byContender.get(contender.id) ?? [];
    const ratio = pairedRatios(ours, theirs, microseconds);
    if (ratio.samples.length) emit({ metric: 'op_call_ratio', section: 'overhead', impl: 'ours', versus: contender.impl, unit: 'ratio', ...figure(ratio.samples, busyCount(ours, theirs, ratio.rounds)) });
  }
}

const assembly: Record<string, number | null> = {};
function reportData(block: Block): void {
  let dataset = '';
  for (const contender of block.contenders) {
    const done = present(perRound<LoaderResult>(block.id, contender.id));
    if (!done.length) continue;
    dataset = done[0].result.dataset;
    const samples = done.map((record) => record.result.imagesPerSecond);
    assembly[contender.id] = median(samples);
    emit({
      metric: 'batch_assembly_images_per_s', section: 'data', worker: contender.id === 'worker', dataset, augment: 'crop(pad 2) + hflip, normalize, batch',
      batchSize: options.batchSize, unit: 'images/s', ...figure(samples, done.filter((r) => r.busy).length),
      note: 'from the decoded in-memory dataset: shuffle, gather, normalize to float32, crop + flip into Float32Array batches; no file read or decode, no tensor creation',
    });
  }
  for (const consumer of consumption) {
    emit({ metric: 'train_images_per_s', section: 'data', model: consumer.model, impl: 'ours', method: consumer.method, ratio: consumer.ratio, value: round3(consumer.imagesPerSecond), unit: 'images/s', note: 'batch / median ours step time (from the step sections)' });
    for (const [mode, supply] of Object.entries(assembly)) {
      if (supply === null) continue;
      const ratio = supply / consumer.imagesPerSecond;
      emit({
        metric: 'pipeline_ratio', section: 'data', model: consumer.model, method: consumer.method, ratio: consumer.ratio, worker: mode === 'worker', value: round3(ratio),
        unit: 'batch assembly images/s / training images/s', ...(mode === 'worker' ? { target: { op: '>=', value: TARGETS.pipelineRatio }, met: ratio >= TARGETS.pipelineRatio } : {}),
      });
    }
  }
  if (!consumption.length) progress('data: no step section ran, so no training consumption to compare with (add vit or resnet)');
}

function reportContenderRatio(block: Block, metric: string, numerator: string, denominator: string, extra: Record<string, unknown>): void {
  const left = perRound<StepResult>(block.id, numerator);
  const right = perRound<StepResult>(block.id, denominator);
  const ratio = pairedRatios(left, right, stepTime);
  if (ratio.samples.length) emit({ metric, section: block.section, model: block.model, contender: numerator, versus: denominator, unit: 'ratio', ...figure(ratio.samples, busyCount(left, right, ratio.rounds)), ...extra });
}

function reportFeed(block: Block): void {
  for (const contender of block.contenders) {
    const done = present(perRound<StepResult>(block.id, contender.id));
    if (done.length) emit({ metric: 'step_time_s', section: 'feed', model: block.model, impl: 'ours', method: 'baseline', contender: contender.id, dataset: done.find((r) => r.result.dataset)?.result.dataset ?? null, unit: 's', ...figure(done.map((r) => stepTime(r) ?? NaN), done.filter((r) => r.busy).length) });
  }
  reportContenderRatio(block, 'loader_worker_step_slowdown', 'ours fed by the loader worker', 'ours on a fixed batch', { note: 'step fed by BatchLoader (worker thread: crop + flip) / step on a fixed batch' });
}

function reportWaitPolicy(block: Block): void {
  for (const contender of block.contenders) {
    const done = present(perRound<StepResult>(block.id, contender.id));
    if (!done.length) continue;
    emit({
      metric: 'waitpolicy_step_ms', section: 'waitpolicy', model: block.model, impl: contender.impl, contender: contender.id, batchSize: plan.waitpolicy.batchSize,
      ompWaitPolicy: contender.env.OMP_WAIT_POLICY ?? 'unset (libgomp default)', competitor: contender.competitor, unit: 'ms',
      ...figure(done.map((r) => (stepTime(r) ?? NaN) * 1000), 0), competitorCores: round3(median(done.map((r) => r.competitorCores ?? NaN))),
    });
  }
  const note = { note: 'same CPUs; "busy": one spinning process pinned next to the step' };
  reportContenderRatio(block, 'waitpolicy_ratio', 'ours ACTIVE busy', 'ours PASSIVE busy', note);
  reportContenderRatio(block, 'waitpolicy_ratio', 'ours ACTIVE idle', 'ours PASSIVE idle', note);
  reportContenderRatio(block, 'waitpolicy_ratio', 'ours PASSIVE busy', 'ours PASSIVE idle', note);
  reportContenderRatio(block, 'waitpolicy_ratio', 'pytorch default busy', 'pytorch PASSIVE busy', note);
  reportContenderRatio(block, 'waitpolicy_ratio', 'pytorch ACTIVE busy', 'pytorch PASSIVE busy', note);
}

for (const block of blocks) {
  if (block.section === 'vit' || block.section === 'resnet' || (block.section === 'overhead' && block.model)) reportStepBlock(block);
}
reportMasksubCost('vit');
reportMasksubCost('resnet');
for (const block of blocks) {
  if (block.section === 'overhead' && !block.model) reportOpCalls(block);
  if (block.section === 'data') reportData(block);
  if (block.section === 'feed') reportFeed(block);
  if (block.section === 'waitpolicy') reportWaitPolicy(block);
}
// The runtimes' own memory: the process right after loading libtorch (Node + tsx + addon) or torch (Python).
for (const runtime of ['ours', 'pytorch'] as const) {
  const starts = records.filter((record) => record.result && 'rssAfterImportKiB' in record.result && isPytorch(record.impl) === (runtime === 'pytorch'))
    .map((record) => ((record.result as StepResult).rssAfterImportKiB ?? NaN) / 1024);
  if (starts.length) emit({ metric: 'rss_after_import_mib', section: 'memory', impl: runtime, unit: 'MiB', ...figure(starts, 0) });
}

// ---------------------------------------------------------------- provenance
const { blasLibraries, buildInfo } = await import('../src/tensor/native.js');
const info = buildInfo();
const firstResult = (pytorch: boolean): StepResult | undefined =>
  records.find((record) => record.result && 'medianStepSeconds' in record.result && isPytorch(record.impl) === pytorch)?.result as StepResult | undefined;
const oursFirst = firstResult(false);
const pytorchFirst = firstResult(true);
const git = gitState(root);
const busyProcesses = records.filter((record) => record.busy).length;
const othersDuring = records.map((record) => record.othersCoresDuring ?? NaN);
const machine = {
  date: new Date().toISOString(),
  gitCommit: git.commit,
  gitDirty: git.dirty,
  gitDirtyFiles: git.dirtyFiles,
  cpu: cpuModel(),
  cores: availableParallelism(),
  cpuSet: cpuList,
  pinning: options.pin ? `taskset -c ${cpuList} (every child)` : 'none (--no-pin)',
  threads,
  ompWaitPolicy,
  memoryGiB: Number((totalmem() / 2 ** 30).toFixed(1)),
  kernel: release(),
  node: process.version,
  childEnvironment: engineEnvironment(childEnvironment({})),
  implementations: Object.fromEntries([...new Set([...impls, ...masksubImpls, 'ours', 'ours_plain'] as Implementation[])].map((impl) => [impl, {
    allocator: allocatorOf(impl), environment: implementationEnvironment(impl), step: impl === 'ours_plain' ? 'plain TypeScript' : isPytorch(impl) ? 'reference/torch_models.py method_step' : 'methodStep (trainer)',
    mallocMapped: [...new Set(records.filter((record) => record.impl === impl && record.result).map((record) => record.result?.malloc))],
  }])),
  ours: {
    torchVersion: info.torchVersion, cxx11Abi: info.cxx11Abi, cuda: info.cuda,
    // The children's mapped BLAS (the processes that compute); the orchestrator's as a fallback.
    blas: oursFirst?.blas ?? blasLibraries(), threadsInChild: oursFirst?.threads ?? null, runtime: `node ${process.execArgv.join(' ')} (TypeScript via tsx)`,
  },
  pytorch: {
    python, torchVersion: pytorchFirst?.torchVersion ?? null, blas: pytorchFirst?.blas ?? null, threadsInChild: pytorchFirst?.threads ?? null,
    cuda: pytorchFirst?.cuda ?? null, adamwForeach: pytorchFirst?.adamwForeach ?? null, model: 'reference/torch_models.py',
  },
  gpu: cuda ? (spawnSync('nvidia-smi', ['--query-gpu=name,memory.total,driver_version', '--format=csv,noheader'], { encoding: 'utf8' }).stdout ?? '').trim() || null : null,
  load: {
    averageAtStart: loadAtStart.map((x) => Number(x.toFixed(2))), averageAtEnd: loadavg().map((x) => Number(x.toFixed(2))),
    othersBusyCoresAtStart: round3(initialBusy), othersBusyCoresDuringMedian: round3(median(othersDuring)), othersBusyCoresDuringMax: round3(Math.max(0, ...othersDuring.filter(Number.isFinite))),
    busyThresholdCores: plan.busy.thresholdCores, busyProcesses, processes: records.length, secondsWaited: totalWaited,
    note: 'loadAverage1 per process is in raw; it includes our own previous child. othersCoresDuring = busy time on the pinned CPUs minus the child\'s own CPU time, per second',
  },
  resnet: resnetName,
  plan,
  order,
};
emit({ metric: 'machine', section: 'machine', value: null, unit: null, ...machine });
const wall = (performance.now() - benchStart) / 1000;
emit({ metric: 'bench_wall_s', section: 'run', value: round3(wall), unit: 's' });
const targetLines = lines.filter((line) => 'target' in line);
const missed = targetLines.filter((line) => line.met === false);
emit({
  metric: 'targets_missed', section: 'run', value: missed.length, unit: 'count', of: targetLines.length,
  missed: missed.map((line) => `${line.metric} ${line.model ?? ''} ${line.impl ?? ''}${line.versus ? ` vs ${line.versus}` : ''} ${line.method ?? ''}${line.ratio !== null && line.ratio !== undefined ? ` r=${line.ratio}` : ''}`.replace(/ +/g, ' ').trim()),
});
if (busyProcesses) progress(`${busyProcesses} of ${records.length} processes ran while others kept the CPUs busy (> ${plan.busy.thresholdCores} cores): see busySamples and raw[].busy`);

// ---------------------------------------------------------------- files
const stamp = machine.date.replace(/[:]/g, '-').replace(/\..*$/, '');
const name = options.name ?? `${options.device.replace(':', '')}${quick ? '-quick' : ''}-${stamp}`;
mkdirSync(options.out, { recursive: true });
const path = join(options.out, `${name}.json`);
const targets = targetLines.map((line) => ({ metric: line.metric, section: line.section, model: line.model, impl: line.impl, versus: line.versus, method: line.method, ratio: line.ratio, worker: line.worker, value: line.value, iqr: line.iqr, target: line.target, met: line.met }));
const document = { name, args: process.argv.slice(2), machine, targets, figures: lines, raw: records };
writeFileSync(`${path}.tmp`, JSON.stringify(document, null, 1) + '\n');
renameSync(`${path}.tmp`, path);
const { summaryMarkdown } = await import('./summary.js');
const markdown = summaryMarkdown(document);
writeFileSync(join(options.out, `${name}.md`), markdown);
process.stderr.write(`\n${markdown}\n`);
progress(`wrote ${path} and ${name}.md (${lines.length} figures; ${missed.length} of ${targetLines.length} targets missed; ${busyProcesses} busy processes)`);
