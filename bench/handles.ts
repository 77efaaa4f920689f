// What a tensor handle costs (the host side of every op): an addon call that makes no handle, a
// handle made and disposed (native.alias + dispose) outside and inside a tidy scope, a tiny op
// (x.add(y) on 1-element tensors) disposed by hand and inside tidy, and 1000 small tensors made
// and freed by one tidy, in microseconds per operation; and one training step of vit_micro at
// batch 2 (forward, cross-entropy, backward, AdamW, all inside tidy as the trainer runs it: a
// step whose cost is the host's, ~800 addon calls), in milliseconds. One thread.
//   node --import tsx bench/handles.ts                 one measurement (JSON line)
//   node --import tsx bench/handles.ts --compare DIR [--rounds N]
// --compare alternates this checkout and another one (DIR: a copy of an older commit with its own
// build/, e.g. `git archive <commit> | tar -x -C DIR` plus the addon built there), one process per
// measurement, rounds in alternating order, and reports each side's medians per figure with the
// load average before each process; writes bench/results/handles-<time>.json.
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { summarize } from './common.js';
import { cpuModel, gitState } from './machine.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

type Figures = Record<string, number>;

async function measure(): Promise<Figures> {
  const { native } = await import('../src/tensor/native.js');
  const { ones, tidy } = await import('../src/tensor/tensor.js');
  native.setNumThreads(1);
  const x = ones([1]);
  const y = ones([1]);
  const N = 20000;
  // Median of 5 timed repeats after one warm-up, in microseconds per operation.
  const time = (body: () => void, operations = N): number => {
    body();
    const samples: number[] = [];
    for (let repeat = 0; repeat < 5; repeat++) {
      const start = performance.now();
      body();
      samples.push(((performance.now() - start) * 1000) / operations);
    }
    return summarize(samples).median as number;
  };
  const figures: Figures = {
    call_without_handle: time(() => { for (let i = 0; i < N; i++) native.dim(x.handle); }),
    handle_outside_tidy: time(() => { for (let i = 0; i < N; i++) native.dispose(native.alias(x.handle)); }),
    handle_in_tidy: time(() => tidy(() => { for (let i = 0; i < N; i++) native.dispose(native.alias(x.handle)); })),
    add_dispose_outside_tidy: time(() => { for (let i = 0; i < N; i++) x.add(y).dispose(); }),
    add_in_tidy: time(() => { for (let i = 0; i < N / 100; i++) tidy(() => { for (let j = 0; j < 100; j++) x.add(y); }); }),
    tidy_of_1000_tensors: time(() => { for (let i = 0; i < N / 1000; i++) tidy(() => { for (let j = 0; j < 1000; j++) ones([1]); }); }),
  };
  x.dispose();
  y.dispose();
  const { createModel } = await import('../src/models/factory.js');
  const { AdamW } = await import('../src/optim/index.js');
  const F = await import('../src/nn/functional.js');
  const { randn, tensor } = await import('../src/tensor/tensor.js');
  const model = createModel('vit_micro', { inChannels: 1, numClasses: 10 });
  const optimizer = new AdamW(model.parameters(), { lr: 1e-3 });
  const images = randn([2, 1, 28, 28]);
  const labels = tensor(Int32Array.of(3, 7), { dtype: 'int64' });
  const STEPS = 40;
  figures.vit_micro_step_batch2_ms = time(() => {
    for (let step = 0; step < STEPS; step++) {
      tidy(() => {
        optimizer.zeroGrad();
        F.crossEntropy(model.forward(images), labels).backward();
        optimizer.step();
      });
    }
  }, STEPS) / 1000;
  return figures;
}

function child(root: string): Figures {
  const result = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'bench', 'handles.ts')], {
    cwd: root, encoding: 'utf8', env: { ...process.env, MASKSUB_THREADS: '1', OMP_NUM_THREADS: '1' },
  });
  if (result.status !== 0) throw new Error(`handles.ts in ${root} failed:\n${result.stderr}`);
  return JSON.parse(result.stdout.trim().split('\n').pop()!) as Figures;
}

function compare(other: string, rounds: number): void {
  const sides = { after: ROOT, before: resolve(other) };
  const records: { round: number; side: string; load1: number; figures: Figures }[] = [];
  for (let round = 0; round < rounds; round++) {
    // Alternating order, so a load trend does not favour one side.
    const order = round % 2 === 0 ? (['before', 'after'] as const) : (['after', 'before'] as const);
    for (const side of order) {
      const load1 = loadavg()[0]!;
      records.push({ round, side, load1, figures: child(sides[side]) });
      process.stderr.write(`round ${round + 1}/${rounds} ${side} (load ${load1.toFixed(1)})\n`);
    }
  }
  const names = Object.keys(records[0]!.figures);
  const summary: Record<string, Record<string, ReturnType<typeof summarize>>> = {};
  for (const side of ['before', 'after']) {
    summary[side] = Object.fromEntries(names.map((name) => [name, summarize(records.filter((r) => r.side === side).map((r) => r.figures[name]!))]));
  }
  const ratio: Record<string, ReturnType<typeof summarize>> = {};
  for (const name of names) {
    const perRound = Array.from({ length: rounds }, (_, round) => {
      const get = (side: string): number => records.find((r) => r.round === round && r.side === side)!.figures[name]!;
      return get('after') / get('before');
    });
    ratio[name] = summarize(perRound);
  }
  const loads = summarize(records.map((r) => r.load1));
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
  const out = join(ROOT, 'bench', 'results', `handles-${stamp}.json`);
  mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true });
  writeFileSync(out, JSON.stringify({
    date: new Date().toISOString(), machine: { cpu: cpuModel(), cores: cpus().length }, after: gitState(ROOT), before: { dir: sides.before, ...gitState(sides.before) },
    rounds, load1: loads, unit: 'microseconds per operation', summary, ratioAfterOverBefore: ratio, records,
  }, null, 2) + '\n');
  const cell = (value: ReturnType<typeof summarize>): string => (value.median === null ? '-' : `${value.median.toFixed(2)} [${value.iqr![0].toFixed(2)}-${value.iqr![1].toFixed(2)}]`);
  console.log('| µs per operation, median [IQR] | before | after | after / before (per round) |');
  console.log('|---|---:|---:|---:|');
  for (const name of names) console.log(`| ${name} | ${cell(summary.before![name]!)} | ${cell(summary.after![name]!)} | ${cell(ratio[name]!)} |`);
  console.log(`load average (1 min) before each process: median ${loads.median?.toFixed(1)} [${loads.iqr?.[0].toFixed(1)}-${loads.iqr?.[1].toFixed(1)}]; ${out}`);
}

const argv = process.argv.slice(2);
const compareIndex = argv.indexOf('--compare');
if (compareIndex >= 0) {
  const roundsIndex = argv.indexOf('--rounds');
  compare(argv[compareIndex + 1]!, roundsIndex >= 0 ? Number(argv[roundsIndex + 1]) : 7);
} else {
  process.stdout.write(JSON.stringify(await measure()) + '\n');
}
