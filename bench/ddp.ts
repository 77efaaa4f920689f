// Data-parallel scaling on this machine, measured through the real trainer (`masksub train`):
// one process with one thread, the same job split over `--nproc 2` processes with one thread
// each (c10d Gloo all-reduce of the gradients every step), and one process with two threads (what
// the same two cores give without data parallelism). Each configuration trains the same run
// (same global batch, same data) for a few epochs; its figure is the training throughput of the
// last epoch (metrics.jsonl's images_per_s: the data, the steps and, in the job, the all-reduces).
// Efficiency = throughput with 2 processes / (2 x throughput with 1 process of 1 thread).
// Rounds run the three configurations in a seeded random order; ratios are taken within a round,
// and the result reports their median and spread (as bench/run.ts does).
// --sync-bn adds a fourth configuration, the 2-process job with SyncBatchNorm (ResNet), and its
// throughput relative to the same job without it, per round.
// Usage: npm run bench:ddp [-- --rounds N --epochs N --limit-train N --model NAME --batch-size N --method NAME --sync-bn]
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { deriveSeed, Random } from '../src/data/random.js';
import { summarize } from './common.js';
import { allowedCpus, cpuModel, gitState, sampleBusyCores } from './machine.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

interface Options { rounds: number; epochs: number; limitTrain: number; model: string; batchSize: number; method: string; seed: number; out: string; syncBn: boolean }

function parseOptions(argv: readonly string[]): Options {
  const options: Options = { rounds: 3, epochs: 2, limitTrain: 1024, model: 'vit_fmnist', batchSize: 64, method: 'baseline', seed: 0, out: join(ROOT, 'bench', 'results'), syncBn: false };
  for (let index = 0; index < argv.length; index++) {
    const flag = argv[index]!;
    if (flag === '--sync-bn') {
      options.syncBn = true;
      continue;
    }
    const value = argv[++index];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    const number = (): number => {
      if (!/^\d+$/.test(value) || Number(value) < 1) throw new Error(`${flag} must be a positive integer, got '${value}'`);
      return Number(value);
    };
    switch (flag) {
      case '--rounds': options.rounds = number(); break;
      case '--epochs': options.epochs = number(); break;
      case '--limit-train': options.limitTrain = number(); break;
      case '--batch-size': options.batchSize = number(); break;
      case '--seed': options.seed = number(); break;
      case '--model': options.model = value; break;
      case '--method': options.method = value; break;
      case '--out': options.out = value; break;
      default: throw new Error(`unknown option ${flag} (--rounds, --epochs, --limit-train, --model, --batch-size, --method, --seed, --out, --sync-bn)`);
    }
  }
  if (options.epochs < 2) throw new Error('--epochs must be at least 2 (the first epoch warms up and is not measured)');
  return options;
}

interface Configuration { id: string; cpus: string; nproc: number; threads: number; syncBn?: boolean }
const BASE_CONFIGURATIONS: readonly Configuration[] = [
  { id: '1 process x 1 thread', cpus: '0', nproc: 1, threads: 1 },
  { id: '2 processes x 1 thread', cpus: '0,1', nproc: 2, threads: 1 },
  { id: '1 process x 2 threads', cpus: '0,1', nproc: 1, threads: 2 },
];
const SYNC_BN_ID = '2 processes x 1 thread, --sync-bn';

interface Sample { round: number; configuration: string; imagesPerSecond: number; stepTimeS: number; seconds: number; busyCoresBefore: number | null; loadAverage1: number }

function measure(configuration: Configuration, options: Options, round: number, scratch: string): Sample {
  const out = join(scratch, `r${round}-${configuration.nproc}x${configuration.threads}${configuration.syncBn ? '-syncbn' : ''}`);
  const busyCoresBefore = sampleBusyCores([0, 1], 0.5, 100);
  const args = [
    '-c', configuration.cpus, process.execPath, '--import', 'tsx', 'src/cli/main.ts', 'train', '--out', out,
    '--dataset', 'fashion-mnist', '--model', options.model, '--method', options.method, '--limit-train', String(options.limitTrain), '--limit-test', '500',
    '--probe-size', '64', '--batch-size', String(options.batchSize), '--epochs', String(options.epochs), '--warmup-epochs', '0', '--seed', '0',
    '--threads', String(configuration.threads), ...(configuration.nproc > 1 ? ['--nproc', String(configuration.nproc)] : []),
    ...(configuration.syncBn ? ['--sync-bn'] : []),
  ];
  const started = performance.now();
  const result = spawnSync('taskset', args, { cwd: ROOT, encoding: 'utf8', env: { ...process.env, MASKSUB_THREADS: String(configuration.threads) } });
  const seconds = (performance.now() - started) / 1000;
  if (result.status !== 0) throw new Error(`${configuration.id}: exit ${result.status}\n${result.stderr}`);
  const rows = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((line) => JSON.parse(line) as { images_per_s: number; step_time_s: number });
  const last = rows[rows.length - 1]!;
  rmSync(out, { recursive: true, force: true });
  return { round, configuration: configuration.id, imagesPerSecond: last.images_per_s, stepTimeS: last.step_time_s, seconds, busyCoresBefore, loadAverage1: loadavg()[0]! };
}

const options = parseOptions(process.argv.slice(2));
const CONFIGURATIONS: readonly Configuration[] = options.syncBn
  ? [...BASE_CONFIGURATIONS, { id: SYNC_BN_ID, cpus: '0,1', nproc: 2, threads: 1, syncBn: true }]
  : BASE_CONFIGURATIONS;
const cpus = allowedCpus();
if (cpus !== null && !(cpus.includes(0) && cpus.includes(1))) throw new Error(`this benchmark pins to CPUs 0 and 1, but this process may only use ${cpus.join(',')}`);
const scratch = mkdtempSync(join(tmpdir(), 'masksub-bench-ddp-'));
const samples: Sample[] = [];
try {
  for (let round = 0; round < options.rounds; round++) {
    for (const configuration of new Random(deriveSeed(options.seed, round)).shuffle([...CONFIGURATIONS])) {
      const sample = measure(configuration, options, round, scratch);
      samples.push(sample);
      process.stderr.write(`[bench:ddp] round ${round + 1}/${options.rounds} ${configuration.id}: ${sample.imagesPerSecond.toFixed(1)} images/s, ${(sample.stepTimeS * 1000).toFixed(0)} ms/step (last epoch); busy before ${sample.busyCoresBefore?.toFixed(2)} cores\n`);
    }
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}

const of = (id: string, round: number): Sample | undefined => samples.find((sample) => sample.configuration === id && sample.round === round);
const perRound = (numerator: string, denominator: string, factor: number): number[] => Array.from({ length: options.rounds }, (_, round) => {
  const a = of(numerator, round);
  const b = of(denominator, round);
  return a && b ? a.imagesPerSecond / (factor * b.imagesPerSecond) : Number.NaN;
}).filter(Number.isFinite);
const figure = (values: number[]): { value: number | null; iqr: [number, number] | null; samples: number[] } => {
  const summary = summarize(values);
  return { value: summary.median, iqr: summary.iqr, samples: values.map((value) => Math.round(value * 1000) / 1000) };
};
const efficiency = figure(perRound('2 processes x 1 thread', '1 process x 1 thread', 2));
const versusThreads = figure(perRound('2 processes x 1 thread', '1 process x 2 threads', 1));
const syncBnCost = options.syncBn ? figure(perRound(SYNC_BN_ID, '2 processes x 1 thread', 1)) : null;
const git = gitState(ROOT);
const document = {
  benchmark: 'ddp-scaling', date: new Date().toISOString(), commit: git.commit, dirty: git.dirty, cpu: cpuModel(), node: process.version,
  settings: { ...options, out: undefined, dataset: 'fashion-mnist', note: 'throughput of the last epoch of masksub train (images_per_s), global batch fixed' },
  figures: {
    efficiency_2_processes: { ...efficiency, unit: 'x ideal', meaning: 'images/s of 2 processes x 1 thread / (2 x images/s of 1 process x 1 thread)' },
    ratio_2_processes_vs_2_threads: { ...versusThreads, unit: 'ratio', meaning: 'images/s of 2 processes x 1 thread / images/s of 1 process x 2 threads' },
    ...(syncBnCost ? { ratio_sync_bn: { ...syncBnCost, unit: 'ratio', meaning: 'images/s of the 2-process job with --sync-bn / without' } } : {}),
  },
  samples,
};
mkdirSync(options.out, { recursive: true });
const stamp = document.date.replace(/[:.]/g, '-').slice(0, 19);
const file = join(options.out, `ddp-${stamp}.json`);
writeFileSync(file, JSON.stringify(document, null, 2) + '\n');
const median = (id: string): string => (summarize(samples.filter((sample) => sample.configuration === id).map((sample) => sample.imagesPerSecond)).median ?? Number.NaN).toFixed(1);
const markdown = [
  `| configuration (${options.model}, ${options.method}, batch ${options.batchSize}, ${options.limitTrain} images) | images/s (median of ${options.rounds}) |`, '|---|---|',
  ...CONFIGURATIONS.map((configuration) => `| ${configuration.id} | ${median(configuration.id)} |`),
  '',
  `Scaling efficiency of 2 processes: ${efficiency.value?.toFixed(2)} (per round ${efficiency.samples.join(', ')}); 2 processes / 2 threads: ${versusThreads.value?.toFixed(2)} (${versusThreads.samples.join(', ')}).`,
  ...(syncBnCost ? [`2 processes with --sync-bn / without: ${syncBnCost.value?.toFixed(2)} (per round ${syncBnCost.samples.join(', ')}).`] : []),
  `Commit ${git.commit?.slice(0, 10)}${git.dirty ? ' (dirty tree)' : ''}, ${cpuModel()}, ${document.date}.`,
].join('\n');
writeFileSync(file.replace(/\.json$/, '.md'), markdown + '\n');
process.stdout.write(markdown + `\n(wrote ${file})\n`);
