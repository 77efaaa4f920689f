// The benchmark harness's arithmetic and design (bench/): quartiles, the seeded run order, ratios
// paired within a round, the /proc/stat and CPU-list parsing behind the busy-machine flag, and the
// summary table's cells. Checked against hand computations; the benchmark itself is not run here.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { median, quantile, summarize } from '../bench/common.js';
import { coresBusy, parseCpuList, parseProcStat } from '../bench/machine.js';
import { pairedRatios, roundOrder } from '../bench/plan.js';
import { summaryMarkdown } from '../bench/summary.js';

test('quantiles interpolate between order statistics (type 7) and ignore non-finite values', () => {
  // sorted [1, 2, 3, 4]: positions 0.75, 1.5, 2.25 -> 1.75, 2.5, 3.25
  assert.equal(quantile([4, 1, 3, 2], 0.25), 1.75);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.equal(quantile([4, 1, 3, 2], 0.75), 3.25);
  assert.equal(median([5, NaN, 1, Infinity, 3]), 3);
  assert.equal(median([]), null);
  assert.deepEqual(summarize([7]), { median: 7, iqr: [7, 7], n: 1 });
  // [10, 20, 30, 40, 50]: quartiles at positions 1 and 3
  assert.deepEqual(summarize([50, 10, 40, 20, 30]), { median: 30, iqr: [20, 40], n: 5 });
});

test('CPU lists parse as taskset writes them, and bad ones are named', () => {
  assert.deepEqual(parseCpuList('0-3,6'), [0, 1, 2, 3, 6]);
  assert.deepEqual(parseCpuList(' 5,1-2,2 '), [1, 2, 5]);
  assert.throws(() => parseCpuList('3-1'), /runs backwards/);
  assert.throws(() => parseCpuList('0,a'), /not a CPU list: '0,a'/);
});

test('busy, idle and stolen time are summed over the pinned CPUs only', () => {
  const stat = [
    'cpu  900 0 300 5000 100 0 0 0 0 0',
    //     user nice system idle iowait irq softirq steal guest guest_nice
    'cpu0 100 10 50 1000 20 5 5 7 0 0',
    'cpu1 200 0 100 2000 30 0 10 3 0 0',
    'cpu2 600 0 150 2000 50 0 0 0 0 0',
    'intr 12345',
  ].join('\n');
  assert.deepEqual(parseProcStat(stat, [0, 1]), { busy: 100 + 10 + 50 + 5 + 5 + 200 + 100 + 10, idle: 1000 + 20 + 2000 + 30, steal: 10 });
  assert.deepEqual(parseProcStat(stat, [2]), { busy: 750, idle: 2050, steal: 0 });
  // 300 busy ticks and 50 stolen over 2 s at 100 ticks/s: 1.5 and 0.25 cores
  const busy = coresBusy({ busy: 1000, idle: 0, steal: 10 }, { busy: 1300, idle: 0, steal: 60 }, 2, 100);
  assert.deepEqual(busy, { busy: 1.5, steal: 0.25 });
});

test('each round runs every contender once, blocks kept together, in an order fixed by the seed', () => {
  const blocks = ['vit baseline', 'vit masksub', 'resnet baseline'].map((id) => ({
    id, contenders: ['ours', 'ours_nocache', 'pytorch', 'pytorch_jemalloc'].map((impl) => ({ id: impl })),
  }));
  const labels = (seed: number, round: number): string[] => roundOrder(blocks, seed, round).map(({ block, contender }) => `${block.id}: ${contender.id}`);
  for (let round = 0; round < 5; round++) {
    const order = roundOrder(blocks, 1, round);
    assert.equal(order.length, 12);
    assert.equal(new Set(labels(1, round)).size, 12);
    // a block's four contenders run back to back
    for (let start = 0; start < 12; start += 4) assert.equal(new Set(order.slice(start, start + 4).map((entry) => entry.block.id)).size, 1);
    assert.deepEqual(labels(1, round), labels(1, round));
  }
  const distinct = new Set(Array.from({ length: 5 }, (_, round) => labels(1, round).join('|')));
  assert.ok(distinct.size >= 4, `5 rounds gave only ${distinct.size} distinct orders`);
  assert.notDeepEqual(labels(1, 0), labels(2, 0));
  // who runs first within a block varies over rounds
  const firsts = new Set(Array.from({ length: 5 }, (_, round) => roundOrder(blocks, 1, round).find((entry) => entry.block.id === 'vit baseline')?.contender.id));
  assert.ok(firsts.size >= 2);
});

test('ratios pair rounds and skip rounds where either side is missing or the denominator is zero', () => {
  const ours = [{ t: 2 }, null, { t: 3 }, { t: 4 }, { t: 1 }];
  const theirs = [{ t: 1 }, { t: 5 }, undefined, { t: 0 }, { t: 4 }];
  assert.deepEqual(pairedRatios(ours, theirs, (entry) => entry.t), { samples: [2, 0.25], rounds: [0, 4] });
  assert.deepEqual(pairedRatios([{ t: 1 }], [], (entry) => entry.t), { samples: [], rounds: [] });
});

test('the summary shows median [IQR] per implementation and the headline against the strongest PyTorch', () => {
  const row = { model: 'vit_fmnist', method: 'baseline', ratio: null, section: 'vit' };
  const markdown = summaryMarkdown({
    name: 'unit',
    machine: { date: 'today', gitCommit: 'abcdef0123456789', gitDirty: false, cpu: 'cpu', cpuSet: '0,1', threads: 2, ompWaitPolicy: 'PASSIVE', plan: { rounds: 5, seed: 1, vit: { seconds: 20 } }, load: {} },
    figures: [
      { metric: 'step_time_s', ...row, impl: 'ours', value: 1.02, iqr: [0.98, 1.07], busySamples: 0 },
      { metric: 'step_time_s', ...row, impl: 'pytorch_jemalloc', value: 0.99, iqr: [0.97, 1.01], busySamples: 1 },
      { metric: 'step_time_ratio', ...row, impl: 'ours', versus: 'pytorch_jemalloc', headline: true, value: 1.031, iqr: [1.004, 1.06], busySamples: 0 },
      { metric: 'peak_rss_mib', ...row, impl: 'ours', value: 812.4, iqr: [810, 815] },
    ],
  });
  assert.match(markdown, /\| vit_fmnist, baseline \| 1\.02 \[0\.980-1\.07\] \| 0\.990 \[0\.970-1\.01\] \(1 busy\) \| 1\.03 \[1\.00-1\.06\] vs pytorch_jemalloc \| - \|/);
  // memory: one column per implementation, then ours against each PyTorch column
  assert.match(markdown, /\| model, method \| ours \| pytorch_jemalloc \| ours \/ pytorch_jemalloc \|\n/);
  assert.match(markdown, /\| vit_fmnist, baseline \| 812 \[810-815\] \| - \| - \|/);
  assert.match(markdown, /commit abcdef012345;/);
});
