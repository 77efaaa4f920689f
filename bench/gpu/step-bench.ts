// Our training step next to PyTorch's eager one on a GPU, for issue 15's three models: the small
// fmnist ViT (launch-bound, float32, batch 128), ViT-S/16 at 224 px in bf16 autocast at batch 256,
// and ResNet-50 at 224 px in bf16 channels_last at batch 256, each baseline and MaskSub r=0.5.
// One process per measurement (ours: this file with --child; PyTorch: step_bench.py on
// reference/torch_models.py built from our registry's config), both sides with the same batch,
// seed, AdamW (lr 1e-3, wd 0.05, timm's no-decay group), label smoothing 0.1 and MaskSub settings.
// Rounds: every (case, method) block runs ours and PyTorch back to back, in an order that
// alternates between rounds. Per block it reports ours / PyTorch step time (per-round ratios,
// median), MaskSub / baseline per side, and ours / PyTorch GPU memory (nvidia-smi's used MiB of
// each process after its timed steps: context + cached blocks, the same measure on both sides).
//   node --import tsx bench/gpu/step-bench.ts [--device cuda] [--rounds 2] [--seconds 3] [--out DIR]
//   node --import tsx bench/gpu/step-bench.ts --device cpu --tiny     a CPU dry run at tiny sizes (4 min on a loaded 2-core VM)
// --cases A,B keeps the cases whose id contains A or B (test/gpu-step-bench.test.ts runs vit_micro).
// Sized for a device call: with the defaults, 24 processes of ~3 s of steps plus start-up; it
// prints its elapsed time and stops starting new processes after --budget seconds (default 420).
// Writes DIR/gpu-steps-<time>.json (default bench/results) and prints a Markdown table.
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface StepCase {
  id: string;
  model: string;
  imageSize: number;
  inChannels: number;
  numClasses: number;
  batchSize: number;
  amp: 'none' | 'bf16';
  channelsLast: boolean;
}

/** Issue 15's models at their sizes (GPU). */
export const GPU_CASES: StepCase[] = [
  { id: 'vit_fmnist fp32 b128', model: 'vit_fmnist', imageSize: 28, inChannels: 1, numClasses: 10, batchSize: 128, amp: 'none', channelsLast: false },
  { id: 'vit_small_patch16_224 bf16 b256', model: 'vit_small_patch16_224', imageSize: 224, inChannels: 3, numClasses: 1000, batchSize: 256, amp: 'bf16', channelsLast: false },
  { id: 'resnet50 224 bf16 channels_last b256', model: 'resnet50', imageSize: 224, inChannels: 3, numClasses: 1000, batchSize: 256, amp: 'bf16', channelsLast: true },
];

/** The same code paths at sizes a CPU runs in seconds (the dry run and its test). */
export const TINY_CASES: StepCase[] = [
  { id: 'vit_micro fp32 b4', model: 'vit_micro', imageSize: 28, inChannels: 1, numClasses: 10, batchSize: 4, amp: 'none', channelsLast: false },
  { id: 'vit_small_patch16_224@32 bf16 b2', model: 'vit_small_patch16_224', imageSize: 32, inChannels: 3, numClasses: 10, batchSize: 2, amp: 'bf16', channelsLast: false },
  { id: 'resnet50@32 bf16 channels_last b2', model: 'resnet50', imageSize: 32, inChannels: 3, numClasses: 10, batchSize: 2, amp: 'bf16', channelsLast: true },
];

export type Method = 'baseline' | 'masksub';
export type Impl = 'ours' | 'pytorch';

export interface StepJob {
  impl: Impl;
  device: string;
  method: Method;
  ratio: number;
  subWeight: number;
  labelSmoothing: number;
  lr: number;
  weightDecay: number;
  seed: number;
  warmup: number;
  seconds: number;
  minSteps: number;
  maxSteps: number;
  threads: number | null;
  batchSize: number;
  amp: 'none' | 'bf16';
  channelsLast: boolean;
  model: { name: string; family: string; imageSize: number; inChannels: number; numClasses: number; config: Record<string, unknown> };
}

export interface StepResult {
  impl: Impl;
  stepSeconds: number[];
  medianStepSeconds: number;
  finalLoss: number;
  numParameters: number;
  gpuUsedMiB?: number | null;
  [key: string]: unknown;
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle]! : 0.5 * (sorted[middle - 1]! + sorted[middle]!);
}

/** Our registry's full config of a case's model, which both sides build (PyTorch through reference.build_model). */
async function modelSpec(item: StepCase): Promise<StepJob['model']> {
  const { createModel } = await import('../../src/models/factory.js');
  const model = createModel(item.model, { imageSize: item.imageSize, inChannels: item.inChannels, numClasses: item.numClasses });
  const config = { ...(model as unknown as { config: Record<string, unknown> }).config };
  const family = model.info.family;
  model.dispose();
  return { name: item.model, family, imageSize: item.imageSize, inChannels: item.inChannels, numClasses: item.numClasses, config };
}

/** Ours: the trainer's step (methodStep with --amp, ResNet.setMemoryFormat for --channels-last) + AdamW, synchronised. */
async function child(job: StepJob): Promise<StepResult> {
  const started = performance.now();
  const { buildInfo, setNumThreads, synchronize } = await import('../../src/tensor/native.js');
  const { manualSeed, randint, randn, tidy } = await import('../../src/tensor/tensor.js');
  const { createModel } = await import('../../src/models/factory.js');
  const { ResNet } = await import('../../src/models/resnet.js');
  const { methodStep } = await import('../../src/masksub/method.js');
  const { AdamW, paramGroupsWithWeightDecay } = await import('../../src/optim/index.js');
  if (job.threads !== null) setNumThreads(job.threads);
  manualSeed(job.seed);
  const device = job.device as 'cpu' | 'cuda';
  const spec = job.model;
  const model = createModel(spec.name, { imageSize: spec.imageSize, inChannels: spec.inChannels, numClasses: spec.numClasses });
  if (device !== 'cpu') model.to({ device });
  if (job.channelsLast) {
    if (!(model instanceof ResNet)) throw new Error(`${spec.name}: channels_last is for ResNets`);
    model.setMemoryFormat('channels_last');
  }
  model.train();
  const optimizer = new AdamW(paramGroupsWithWeightDecay(model, job.weightDecay, model.noWeightDecay()), { lr: job.lr, weightDecay: job.weightDecay });
  const images = tidy(() => {
    const batch = randn([job.batchSize, spec.inChannels, spec.imageSize, spec.imageSize], { device });
    return job.channelsLast ? batch.contiguous('channels_last') : batch;
  });
  const labels = tidy(() => randint(0, spec.numClasses, [job.batchSize], { device }));
  const config = {
    method: job.method, ratio: job.ratio, subWeight: job.subWeight, amp: job.amp === 'bf16' ? 'bfloat16' as const : null,
    criterion: { kind: 'ce' as const, labelSmoothing: job.labelSmoothing, bceTargetThreshold: null },
  };
  const step = (): number => tidy(() => {
    const result = methodStep(model, images, labels, config);
    optimizer.step();
    optimizer.zeroGrad();
    synchronize();
    return result.loss;
  });
  for (let index = 0; index < job.warmup; index++) step();
  const times: number[] = [];
  let loss = NaN;
  const timedStart = performance.now();
  while (times.length < job.maxSteps) {
    const t0 = performance.now();
    loss = step();
    times.push((performance.now() - t0) / 1000);
    if ((performance.now() - timedStart) / 1000 >= job.seconds && times.length >= job.minSteps) break;
  }
  const result: StepResult = {
    impl: 'ours', stepSeconds: times, medianStepSeconds: median(times), finalLoss: loss, numParameters: model.numParameters(),
    torchVersion: buildInfo().torchVersion, cuda: buildInfo().cuda, wallSeconds: (performance.now() - started) / 1000,
  };
  if (device !== 'cpu') result.gpuUsedMiB = gpuUsedMiB();
  return result;
}

function gpuUsedMiB(): number | null {
  const run = spawnSync('nvidia-smi', ['--query-compute-apps=pid,used_memory', '--format=csv,noheader,nounits'], { encoding: 'utf8', timeout: 20000 });
  for (const line of (run.stdout ?? '').split('\n')) {
    const [pid, used] = line.split(',').map((part) => part.trim());
    if (pid === String(process.pid)) return Number(used);
  }
  return null;
}

interface Options {
  device: string;
  tiny: boolean;
  rounds: number;
  seconds: number;
  budget: number;
  out: string;
  python: string;
  threads: number | null;
  cases: string[] | null;
}

function parseOptions(args: string[]): Options {
  const value = (name: string): string | undefined => {
    const index = args.indexOf(name);
    return index >= 0 ? args[index + 1] : undefined;
  };
  const tiny = args.includes('--tiny');
  const number = (name: string, fallback: number): number => {
    const text = value(name);
    if (text === undefined) return fallback;
    const parsed = Number(text);
    if (!Number.isFinite(parsed) || parsed <= 0) throw new Error(`${name} must be a positive number, got '${text}'`);
    return parsed;
  };
  const device = value('--device') ?? 'cuda';
  if (!/^(cpu|cuda(:\d+)?)$/.test(device)) throw new Error(`--device must be cpu, cuda or cuda:N, got '${device}'`);
  return {
    device, tiny, rounds: number('--rounds', tiny ? 1 : 2), seconds: number('--seconds', tiny ? 0.2 : 3), budget: number('--budget', 420),
    out: value('--out') ?? join(ROOT, 'bench', 'results'), python: value('--python') ?? process.env.MASKSUB_PYTHON ?? (device === 'cpu' ? '/usr/bin/python3' : 'python3'),
    threads: value('--threads') === undefined ? (device === 'cpu' ? 1 : null) : number('--threads', 1),
    cases: value('--cases')?.split(',').filter(Boolean) ?? null,
  };
}

/** Runs one job in its own process; a failure is returned, not thrown, so one broken side does not lose the others. */
function runJob(job: StepJob, python: string): StepResult | { impl: Impl; error: string } {
  const command = job.impl === 'ours'
    ? [process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', JSON.stringify(job)]] as const
    : [python, [join(ROOT, 'bench', 'gpu', 'step_bench.py'), JSON.stringify(job)]] as const;
  const run = spawnSync(command[0], command[1], { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 << 20, env: { ...process.env, ...(job.threads !== null ? { OMP_NUM_THREADS: String(job.threads) } : {}) } });
  const last = (run.stdout ?? '').trim().split('\n').pop() ?? '';
  if (run.status !== 0 || !last.startsWith('{')) return { impl: job.impl, error: `exit ${run.status}: ${(run.stderr ?? '').trim().split('\n').slice(-6).join(' | ')}` };
  return JSON.parse(last) as StepResult;
}

async function parent(options: Options): Promise<void> {
  const started = performance.now();
  const cases = (options.tiny ? TINY_CASES : GPU_CASES).filter((item) => options.cases === null || options.cases.some((part) => item.id.includes(part)));
  if (cases.length === 0) throw new Error(`--cases ${options.cases?.join(',')} matches none of: ${(options.tiny ? TINY_CASES : GPU_CASES).map((item) => item.id).join('; ')}`);
  const specs = new Map<string, StepJob['model']>();
  for (const item of cases) specs.set(item.id, await modelSpec(item));
  const methods: Method[] = ['baseline', 'masksub'];
  const records: { round: number; case: string; method: Method; result: StepResult | { impl: Impl; error: string } }[] = [];
  let stopped = false;
  for (let round = 0; round < options.rounds && !stopped; round++) {
    for (const item of cases) {
      for (const method of methods) {
        const impls: Impl[] = round % 2 === 0 ? ['ours', 'pytorch'] : ['pytorch', 'ours'];
        for (const impl of impls) {
          const elapsed = (performance.now() - started) / 1000;
          if (elapsed > options.budget) {
            process.stderr.write(`step-bench: ${elapsed.toFixed(0)} s used of the ${options.budget} s budget; no new processes\n`);
            stopped = true;
            break;
          }
          const job: StepJob = {
            impl, device: options.device, method, ratio: 0.5, subWeight: 0.5, labelSmoothing: 0.1, lr: 1e-3, weightDecay: 0.05, seed: 0,
            warmup: options.tiny ? 1 : 3, seconds: options.seconds, minSteps: options.tiny ? 2 : 5, maxSteps: options.tiny ? 3 : 200,
            threads: options.threads, batchSize: item.batchSize, amp: item.amp, channelsLast: item.channelsLast, model: specs.get(item.id)!,
          };
          const result = runJob(job, options.python);
          records.push({ round, case: item.id, method, result });
          const figure = 'error' in result ? `FAILED ${result.error}` : `${(result.medianStepSeconds * 1000).toFixed(2)} ms/step`;
          process.stderr.write(`[${((performance.now() - started) / 1000).toFixed(0)} s] round ${round + 1} ${item.id} ${method} ${impl}: ${figure}\n`);
        }
        if (stopped) break;
      }
      if (stopped) break;
    }
  }
  const rows = summarize(records, cases.map((item) => item.id));
  const stamp = new Date().toISOString().replace(/:/g, '-').replace(/\..*/, '');
  mkdirSync(options.out, { recursive: true });
  const file = join(options.out, `gpu-steps-${options.device.replace(':', '')}-${stamp}.json`);
  writeFileSync(file, JSON.stringify({
    created: new Date().toISOString(), device: options.device, tiny: options.tiny, rounds: options.rounds, secondsPerProcess: options.seconds,
    commit: process.env.MASKSUB_BENCH_COMMIT ?? null, elapsedSeconds: (performance.now() - started) / 1000, stoppedByBudget: stopped, rows, records,
  }, null, 1) + '\n');
  process.stdout.write('| case | method | ours ms/step | PyTorch ms/step | ours / PyTorch (per-round median) | ours / PyTorch GPU MiB |\n|---|---|---:|---:|---:|---:|\n');
  for (const row of rows) {
    const fixed = (value: number | null, digits: number): string => (value === null ? '-' : value.toFixed(digits));
    process.stdout.write(`| ${row.case} | ${row.method} | ${fixed(row.oursMs, 2)} | ${fixed(row.pytorchMs, 2)} | ${fixed(row.ratio, 2)} | ${fixed(row.memoryRatio, 2)} |\n`);
  }
  process.stdout.write(`wrote ${file} (${((performance.now() - started) / 1000).toFixed(0)} s)\n`);
  if (records.some((record) => 'error' in record.result)) process.exitCode = 1;
}

export interface Row {
  case: string;
  method: Method;
  oursMs: number | null;
  pytorchMs: number | null;
  /** Median over rounds of ours / PyTorch in the same round. */
  ratio: number | null;
  /** MaskSub / baseline of the same side, median over rounds (only on the masksub rows). */
  masksubCostOurs: number | null;
  masksubCostPytorch: number | null;
  memoryRatio: number | null;
}

/** Per (case, method): medians, ours / PyTorch paired within rounds, and MaskSub's cost on each side. */
export function summarize(records: { round: number; case: string; method: Method; result: StepResult | { impl: Impl; error: string } }[], caseOrder: string[]): Row[] {
  const ok = (record: (typeof records)[number]): StepResult | null => ('error' in record.result ? null : record.result);
  const find = (round: number, id: string, method: Method, impl: Impl): StepResult | null => {
    const record = records.find((item) => item.round === round && item.case === id && item.method === method && item.result.impl === impl);
    return record ? ok(record) : null;
  };
  const rounds = [...new Set(records.map((record) => record.round))];
  const rows: Row[] = [];
  for (const id of caseOrder) {
    for (const method of ['baseline', 'masksub'] as Method[]) {
      const ours = rounds.map((round) => find(round, id, method, 'ours')).filter((item): item is StepResult => item !== null);
      const torch = rounds.map((round) => find(round, id, method, 'pytorch')).filter((item): item is StepResult => item !== null);
      if (ours.length === 0 && torch.length === 0) continue;
      const paired = (numerator: (round: number) => number | null | undefined, denominator: (round: number) => number | null | undefined): number | null => {
        const ratios = rounds.map((round) => {
          const a = numerator(round);
          const b = denominator(round);
          return a === null || a === undefined || b === null || b === undefined || b === 0 ? null : a / b;
        }).filter((value): value is number => value !== null && Number.isFinite(value));
        return ratios.length ? median(ratios) : null;
      };
      const stepOf = (round: number, m: Method, impl: Impl): number | null => find(round, id, m, impl)?.medianStepSeconds ?? null;
      rows.push({
        case: id, method,
        oursMs: ours.length ? median(ours.map((item) => item.medianStepSeconds)) * 1000 : null,
        pytorchMs: torch.length ? median(torch.map((item) => item.medianStepSeconds)) * 1000 : null,
        ratio: paired((round) => stepOf(round, method, 'ours'), (round) => stepOf(round, method, 'pytorch')),
        masksubCostOurs: method === 'masksub' ? paired((round) => stepOf(round, 'masksub', 'ours'), (round) => stepOf(round, 'baseline', 'ours')) : null,
        masksubCostPytorch: method === 'masksub' ? paired((round) => stepOf(round, 'masksub', 'pytorch'), (round) => stepOf(round, 'baseline', 'pytorch')) : null,
        memoryRatio: paired((round) => find(round, id, method, 'ours')?.gpuUsedMiB, (round) => find(round, id, method, 'pytorch')?.gpuUsedMiB),
      });
    }
  }
  return rows;
}

const args = process.argv.slice(2);
if (args[0] === '--child') {
  process.stdout.write(JSON.stringify(await child(JSON.parse(args[1] ?? '{}') as StepJob)) + '\n');
} else if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await parent(parseOptions(args));
}
