// Diagnostic for the peak-memory figure: resident memory (VmRSS, VmHWM) at the end of each
// training step of the fmnist-vit model (baseline step, batch 128) and, at the end, where the
// resident memory is (smaps: [heap] = glibc's main malloc arena, [anon], files). Compare with
// bench/memory_probe.py, the same in PyTorch. `--gc` runs V8's garbage collector after every step
// (needs node --expose-gc), which frees the addon's per-handle bookkeeping at a fixed point.
// Usage: OMP_WAIT_POLICY=PASSIVE node [--expose-gc] --import tsx bench/memory-probe.ts [steps] [--gc]
import { readFileSync } from 'node:fs';
import { procStatusKiB } from './common.js';

const steps = Number(process.argv.find((argument) => /^\d+$/.test(argument)) ?? 8);
const collect = process.argv.includes('--gc');
const { liveTensors, setNumThreads } = await import('../src/tensor/native.js');
const { manualSeed, randint, randn, tidy } = await import('../src/tensor/tensor.js');
const { createModel } = await import('../src/models/factory.js');
const F = await import('../src/nn/functional.js');
const { AdamW, paramGroupsWithWeightDecay } = await import('../src/optim/index.js');

const mib = (kib: number | null): string => `${((kib ?? 0) / 1024).toFixed(0)} MiB`;
setNumThreads(Number(process.env.MASKSUB_THREADS ?? 2));
manualSeed(0);
const model = createModel('vit_fmnist', { inChannels: 1, numClasses: 10 });
const optimizer = new AdamW(paramGroupsWithWeightDecay(model, 0.05, model.noWeightDecay()), { lr: 1e-3, weightDecay: 0.05 });
const images = randn([128, 1, 28, 28]);
const labels = randint(0, 10, [128]);
const gc = (globalThis as { gc?: () => void }).gc;
if (collect && !gc) throw new Error('--gc needs node --expose-gc');
for (let step = 0; step < steps; step++) {
  const started = performance.now();
  tidy(() => {
    optimizer.zeroGrad();
    F.crossEntropy(model.forward(images), labels, { labelSmoothing: 0.1 }).backward();
    optimizer.step();
  });
  if (collect) gc?.();
  process.stdout.write(`step ${step}: ${((performance.now() - started) / 1000).toFixed(3)} s, rss ${mib(procStatusKiB('VmRSS'))}, peak ${mib(procStatusKiB('VmHWM'))}, live tensors ${liveTensors()}\n`);
}
const totals = new Map<string, number>();
let region = '';
for (const line of readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
  const header = /^[0-9a-f]+-[0-9a-f]+\s+\S+\s+\S+\s+\S+\s+\S+\s*(.*)$/.exec(line);
  if (header) {
    region = header[1].startsWith('/') ? 'files' : header[1] || '[anon]';
    continue;
  }
  const rss = /^Rss:\s+(\d+) kB/.exec(line);
  if (rss) totals.set(region, (totals.get(region) ?? 0) + Number(rss[1]));
}
for (const [name, kib] of [...totals].sort((a, b) => b[1] - a[1]).slice(0, 3)) process.stdout.write(`resident in ${name}: ${mib(kib)}\n`);
