// Text encoder step time, ours / PyTorch: a BERT sequence classifier (bert_mini by default, batch
// 32, 128 tokens, 10 labels, dropout 0.1) trained by one step of the baseline and of MaskSub
// (token masking at 0.15), AdamW after each. Both sides start from the same weights (ours
// initialised, written as safetensors, loaded by PyTorch) and step on the same token batch (rows
// of 8 to 128 real tokens, padded). Each measurement is its own process; the rounds alternate the
// four (method, implementation) processes in a seeded random order (bench/plan.ts), and the
// ratios are paired within a round, as `npm run bench` does for the image models.
// Usage: node --import tsx bench/text.ts [--rounds 5] [--seconds 6] [--threads 2] [--model bert_mini]
//   [--batch-size 32] [--max-length 128] [--out FILE.json]
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gitState } from './machine.js';
import { pairedRatios, roundOrder } from './plan.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SPECIAL = { pad: 0, cls: 2, sep: 3, mask: 4 };
const VOCAB = 8000;
const LABELS = 10;

interface Job {
  method: 'baseline' | 'masksub';
  ratio: number;
  threads: number;
  weights: string;
  batch: string;
  model: string;
  maxLength: number;
  warmup: number;
  seconds: number;
  minSteps: number;
}

interface Measured { impl: string; method: string; steps: number; median_s: number }

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** The masksub side of one measurement (a child process). */
async function runOurs(job: Job): Promise<Measured> {
  const { setNumThreads } = await import('../src/tensor/native.js');
  const { loadSafetensors } = await import('../src/tensor/safetensors.js');
  const { createModel } = await import('../src/models/factory.js');
  const { methodStep } = await import('../src/masksub/method.js');
  const { AdamW, paramGroupsWithWeightDecay } = await import('../src/optim/index.js');
  const { manualSeed, tidy } = await import('../src/tensor/tensor.js');
  setNumThreads(job.threads);
  manualSeed(0);
  const model = createModel(job.model, { numClasses: LABELS, dropRate: 0.1, text: { vocabSize: VOCAB, maxLength: job.maxLength, specialIds: SPECIAL } });
  const weights = loadSafetensors(job.weights).tensors;
  model.loadStateDict(weights);
  const batch = loadSafetensors(job.batch).tensors;
  const inputs = batch.get('tokens')!;
  const labels = batch.get('labels')!;
  const optimizer = new AdamW(paramGroupsWithWeightDecay(model, 0.05, model.noWeightDecay()), { lr: 1e-4, weightDecay: 0.05 });
  model.train();
  const config = { method: job.method, ratio: job.ratio, subWeight: 0.5, criterion: { kind: 'ce' as const, labelSmoothing: 0.1, bceTargetThreshold: null } };
  const step = (): void => {
    tidy(() => methodStep(model, inputs, labels, config));
    optimizer.step();
    optimizer.zeroGrad();
  };
  for (let index = 0; index < job.warmup; index++) step();
  const times: number[] = [];
  const started = performance.now();
  while (times.length < job.minSteps || performance.now() - started < job.seconds * 1000) {
    const begin = performance.now();
    step();
    times.push((performance.now() - begin) / 1000);
  }
  return { impl: 'ours', method: job.method, steps: times.length, median_s: median(times) };
}

function flag(name: string, fallback: string): string {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 && process.argv[index + 1] !== undefined ? process.argv[index + 1] : fallback;
}

async function main(): Promise<void> {
  if (process.argv[2] === '--child') {
    process.stdout.write(`${JSON.stringify(await runOurs(JSON.parse(process.argv[3]) as Job))}\n`);
    return;
  }
  const rounds = Number(flag('rounds', '5'));
  const seconds = Number(flag('seconds', '6'));
  const threads = Number(flag('threads', '2'));
  const modelName = flag('model', 'bert_mini');
  const batchSize = Number(flag('batch-size', '32'));
  const maxLength = Number(flag('max-length', '128'));
  const out = flag('out', '');
  const python = process.env.MASKSUB_PYTHON ?? '/usr/bin/python3';

  const { manualSeed, keep, tensor } = await import('../src/tensor/tensor.js');
  const { saveSafetensors } = await import('../src/tensor/safetensors.js');
  const { createModel, describeBertModel } = await import('../src/models/index.js');
  const { Random } = await import('../src/data/random.js');
  const directory = mkdtempSync(join(tmpdir(), 'masksub-text-bench-'));
  try {
    manualSeed(0);
    const model = createModel(modelName, { numClasses: LABELS, dropRate: 0.1, text: { vocabSize: VOCAB, maxLength, specialIds: SPECIAL } });
    const weights = join(directory, 'weights.safetensors');
    saveSafetensors(weights, model.stateDict());
    model.dispose();
    // Rows of 8..maxLength real tokens: [CLS] words [SEP], then [PAD]; labels uniform.
    const random = new Random(1);
    const tokens: number[] = [];
    const labels: number[] = [];
    for (let row = 0; row < batchSize; row++) {
      const length = 8 + Math.floor(random.next() * (maxLength - 7));
      const ids = Array.from({ length: maxLength }, (_, position) => (position === 0 ? SPECIAL.cls : position === length - 1 ? SPECIAL.sep : position < length ? 5 + Math.floor(random.next() * (VOCAB - 5)) : SPECIAL.pad));
      tokens.push(...ids, ...new Array<number>(maxLength).fill(0), ...ids.map((id) => (id === SPECIAL.pad ? 0 : 1)));
      labels.push(Math.floor(random.next() * LABELS));
    }
    const batch = join(directory, 'batch.safetensors');
    saveSafetensors(batch, { tokens: keep(tensor(tokens, { shape: [batchSize, 3, maxLength], dtype: 'int64' })), labels: keep(tensor(labels, { dtype: 'int64' })) });

    const shape = describeBertModel(modelName).shape;
    const pythonConfig = { hidden: shape.hiddenSize, heads: shape.numAttentionHeads, layers: shape.numHiddenLayers, intermediate: shape.intermediateSize, vocab: VOCAB, positions: Math.max(512, maxLength), pad: SPECIAL.pad, dropout: 0.1, labels: LABELS };
    const methods = ['baseline', 'masksub'] as const;
    const blocks = methods.map((method) => ({ id: method, contenders: [{ id: 'ours' }, { id: 'pytorch' }] }));
    const results: Record<string, Record<string, (Measured | null)[]>> = { baseline: { ours: [], pytorch: [] }, masksub: { ours: [], pytorch: [] } };
    const load = { before: loadavg() };
    for (let round = 0; round < rounds; round++) {
      for (const { block, contender } of roundOrder(blocks, 7, round)) {
        const job: Job = { method: block.id as Job['method'], ratio: 0.15, threads, weights, batch, model: modelName, maxLength, warmup: 2, seconds, minSteps: 5 };
        const child = contender.id === 'ours'
          ? spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', JSON.stringify(job)], { cwd: root, encoding: 'utf8' })
          : spawnSync(python, [join(root, 'bench', 'torch_text_bench.py'), JSON.stringify({ ...job, config: pythonConfig, special: SPECIAL })], { cwd: root, encoding: 'utf8' });
        const line = child.stdout.trim().split('\n').pop() ?? '';
        let measured: Measured | null = null;
        try {
          measured = JSON.parse(line) as Measured;
        } catch {
          process.stderr.write(`round ${round} ${block.id}/${contender.id} failed: ${child.stderr.slice(-2000)}\n`);
        }
        results[block.id][contender.id][round] = measured;
        process.stderr.write(`round ${round + 1}/${rounds} ${block.id} ${contender.id}: ${measured ? `${(measured.median_s * 1000).toFixed(1)} ms/step (${measured.steps} steps)` : 'failed'}; load ${loadavg()[0].toFixed(2)}\n`);
      }
    }
    const after = loadavg();
    const summary: Record<string, unknown> = {};
    const value = (entry: Measured): number => entry.median_s;
    for (const method of methods) {
      const { ours, pytorch } = results[method];
      const ratio = pairedRatios(ours, pytorch, value).samples;
      summary[method] = {
        ours_ms: median(ours.filter((entry): entry is Measured => entry !== null).map(value)) * 1000,
        pytorch_ms: median(pytorch.filter((entry): entry is Measured => entry !== null).map(value)) * 1000,
        ours_over_pytorch: { median: median(ratio), min: Math.min(...ratio), max: Math.max(...ratio), rounds: ratio.length },
      };
    }
    for (const impl of ['ours', 'pytorch']) {
      const cost = pairedRatios(results.masksub[impl], results.baseline[impl], value).samples;
      summary[`masksub_cost_${impl}`] = { median: median(cost), min: Math.min(...cost), max: Math.max(...cost) };
    }
    const report = {
      date: new Date().toISOString(), git: gitState(root), model: modelName, batchSize, maxLength, threads, rounds, seconds, vocab: VOCAB, labels: LABELS, dropout: 0.1, ratio: 0.15,
      loadavg: { before: load.before, after }, summary, results,
    };
    if (out) writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
    process.stdout.write(`${JSON.stringify({ summary, loadavg: report.loadavg, git: report.git.commit }, null, 2)}\n`);
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
}

await main();
