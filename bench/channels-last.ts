// What channels_last (ResNet.setMemoryFormat, `train --channels-last`) does to a CPU training step:
// one step = forward + cross-entropy + backward + AdamW, inside tidy as the trainer runs it, for
// each ResNet configuration below in the default (NCHW) and the channels_last (NHWC) layout, one
// process per measurement (so neither layout inherits the other's allocator or oneDNN caches),
// rounds in alternating order (default first in even rounds, channels_last first in odd ones), and
// the ratio channels_last / default of the two processes of each round.
//   node --import tsx bench/channels-last.ts [--rounds N] [--seconds S] [--threads T] [--out DIR] [--quick]
//   node --import tsx bench/channels-last.ts --child FORMAT MODEL BATCH SIZE SECONDS THREADS
// Writes DIR/channels-last-<time>.json (default bench/results) (machine, commit, load before each process,
// every process's step times) and prints a table. The GPU measurement is issue 15's
// (bench/gpu/step-bench.ts); this one is the CPU's (oneDNN's NHWC kernels).
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { summarize } from './common.js';
import { cpuModel, gitState } from './machine.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

type Format = 'contiguous' | 'channels_last';
interface Case { model: string; batch: number; size: number }

/** The bench's ResNet (resnet_tiny at 28 px, batch 128: bench/results/cpu-full's row) and ResNet-50 at a CPU-sized input. */
const CASES: Case[] = [
  { model: 'resnet_tiny', batch: 128, size: 28 },
  { model: 'resnet50', batch: 16, size: 64 },
];

async function child(format: Format, model: string, batch: number, size: number, seconds: number, threads: number): Promise<void> {
  const { setNumThreads } = await import('../src/tensor/native.js');
  const { createModel } = await import('../src/models/factory.js');
  const { ResNet } = await import('../src/models/resnet.js');
  const { AdamW } = await import('../src/optim/index.js');
  const F = await import('../src/nn/functional.js');
  const { manualSeed, randint, randn, tidy } = await import('../src/tensor/tensor.js');
  setNumThreads(threads);
  manualSeed(0);
  const network = createModel(model, { imageSize: size, inChannels: 3, numClasses: 10 });
  if (!(network instanceof ResNet)) throw new Error(`${model} is not a ResNet`);
  network.setMemoryFormat(format);
  const optimizer = new AdamW(network.parameters(), { lr: 1e-3 });
  const images = randn([batch, 3, size, size]);
  const labels = randint(0, 10, [batch]);
  const step = (): void => tidy(() => {
    optimizer.zeroGrad();
    F.crossEntropy(network.forward(images), labels).backward();
    optimizer.step();
  });
  for (let warm = 0; warm < 3; warm++) step();
  const times: number[] = [];
  const start = performance.now();
  while (times.length < 5 || performance.now() - start < seconds * 1000) {
    const t0 = performance.now();
    step();
    times.push((performance.now() - t0) / 1000);
  }
  process.stdout.write(JSON.stringify({ format, model, batch, size, threads, steps: times.length, median: summarize(times).median, times }) + '\n');
}

function parent(rounds: number, seconds: number, threads: number, cases: Case[], outDir: string): void {
  const results: Record<string, unknown>[] = [];
  const ratios = new Map<string, number[]>();
  const medians = new Map<string, { contiguous: number[]; channels_last: number[] }>();
  for (let round = 0; round < rounds; round++) {
    for (const item of cases) {
      const key = `${item.model} batch ${item.batch} ${item.size}px`;
      const order: Format[] = round % 2 === 0 ? ['contiguous', 'channels_last'] : ['channels_last', 'contiguous'];
      const got: Partial<Record<Format, number>> = {};
      for (const format of order) {
        const load = loadavg()[0];
        const run = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', format, item.model, String(item.batch), String(item.size), String(seconds), String(threads)], {
          cwd: ROOT, encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: String(threads) },
        });
        if (run.status !== 0) throw new Error(`child ${format} ${key} failed:\n${run.stderr}`);
        const line = JSON.parse(run.stdout.trim().split('\n').pop() as string) as { median: number };
        got[format] = line.median;
        results.push({ round, load1Before: load, ...line });
        const entry = medians.get(key) ?? { contiguous: [], channels_last: [] };
        entry[format].push(line.median);
        medians.set(key, entry);
        process.stderr.write(`round ${round + 1}/${rounds} ${key} ${format}: ${(line.median * 1000).toFixed(1)} ms/step (load ${load.toFixed(1)})\n`);
      }
      ratios.set(key, [...(ratios.get(key) ?? []), (got.channels_last as number) / (got.contiguous as number)]);
    }
  }
  const table = [...ratios.keys()].map((key) => {
    const entry = medians.get(key) as { contiguous: number[]; channels_last: number[] };
    return {
      case: key,
      contiguousMs: (summarize(entry.contiguous).median as number) * 1000,
      channelsLastMs: (summarize(entry.channels_last).median as number) * 1000,
      ratio: summarize(ratios.get(key) as number[]),
      ratiosPerRound: ratios.get(key),
    };
  });
  const stamp = new Date().toISOString().replace(/:/g, '-').replace(/\..*/, '');
  const out = join(outDir, `channels-last-${stamp}.json`);
  mkdirSync(outDir, { recursive: true });
  writeFileSync(out, JSON.stringify({
    created: new Date().toISOString(), git: gitState(ROOT), cpu: cpuModel(), cores: cpus().length, threads, rounds, secondsPerProcess: seconds,
    step: 'forward + cross-entropy + backward + AdamW, float32, inside tidy', table, results,
  }, null, 1) + '\n');
  process.stdout.write('| case | default ms/step | channels_last ms/step | channels_last / default, median [IQR] per round |\n|---|---:|---:|---:|\n');
  for (const row of table) {
    const iqr = row.ratio.iqr ? ` [${row.ratio.iqr[0].toFixed(2)}-${row.ratio.iqr[1].toFixed(2)}]` : '';
    process.stdout.write(`| ${row.case} | ${row.contiguousMs.toFixed(1)} | ${row.channelsLastMs.toFixed(1)} | ${(row.ratio.median as number).toFixed(2)}${iqr} |\n`);
  }
  process.stdout.write(`wrote ${out}\n`);
}

const args = process.argv.slice(2);
const option = (name: string, fallback: number): number => {
  const index = args.indexOf(name);
  return index >= 0 ? Number(args[index + 1]) : fallback;
};
if (args[0] === '--child') {
  const [format, model, batch, size, seconds, threads] = args.slice(1);
  if (format !== 'contiguous' && format !== 'channels_last') throw new Error(`format must be contiguous or channels_last, got ${format}`);
  await child(format, model as string, Number(batch), Number(size), Number(seconds), Number(threads));
} else {
  const quick = args.includes('--quick');
  parent(option('--rounds', quick ? 1 : 5), option('--seconds', quick ? 1 : 8), option('--threads', 1), quick ? [{ model: 'resnet_micro', batch: 8, size: 28 }] : CASES,
    args.includes('--out') ? args[args.indexOf('--out') + 1] as string : join(ROOT, 'bench', 'results'));
}
