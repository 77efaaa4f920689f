// Tests of the report half of `masksub compare`: the statistics against hand-computed, textbook
// and independently integrated values (and numpy where available), and collect/write/render on
// a synthetic comparison directory whose numbers the test recomputes itself from the run files.

import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { integratedPValue } from './helpers/compare.js';
import { skipWithout } from './helpers/skip.js';
import { axisLabels, type MarkGroup, markGroups, type PlottedMark } from './helpers/svg-chart.js';

import {
  collectComparison,
  defaultSyntheticRuns,
  mean,
  parseRunDirectoryName,
  renderReport,
  sampleStd,
  twoSidedPValue,
  welchTTest,
  writeResults,
  writeSyntheticComparison,
  type ResultsFile,
} from '../src/report/index.js';

const temporaryDirectories: string[] = [];
function temporaryDirectory(label: string): string {
  const directory = mkdtempSync(join(tmpdir(), `masksub-report-${label}-`));
  temporaryDirectories.push(directory);
  return directory;
}
after(() => {
  for (const directory of temporaryDirectories) rmSync(directory, { recursive: true, force: true });
});

function assertClose(actual: number | null | undefined, expected: number, tolerance: number, message?: string): void {
  assert.ok(typeof actual === 'number', `${message ?? 'value'}: expected a number, got ${String(actual)}`);
  const scale = Math.max(1, Math.abs(expected));
  assert.ok(Math.abs(actual - expected) <= tolerance * scale, `${message ?? 'value'}: ${actual} != ${expected} (tolerance ${tolerance})`);
}

// ---- independent reference implementations (deliberately not the ones under test) ----

function referenceMean(values: number[]): number {
  return values.reduce((total, value) => total + value, 0) / values.length;
}

function referenceStd(values: number[]): number {
  const average = referenceMean(values);
  return Math.sqrt(values.reduce((total, value) => total + (value - average) ** 2, 0) / (values.length - 1));
}


function referenceWelch(a: number[], b: number[]): { t: number; df: number; p: number } {
  const shareA = referenceStd(a) ** 2 / a.length;
  const shareB = referenceStd(b) ** 2 / b.length;
  const t = (referenceMean(a) - referenceMean(b)) / Math.sqrt(shareA + shareB);
  const df = (shareA + shareB) ** 2 / (shareA ** 2 / (a.length - 1) + shareB ** 2 / (b.length - 1));
  return { t, df, p: integratedPValue(t, df) };
}

function pythonWithNumpy(): boolean {
  try {
    execFileSync('/usr/bin/python3', ['-c', 'import numpy'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe('stats', () => {
  test('mean and sample std on hand-computed values', () => {
    assert.equal(mean([1, 2, 3, 4]), 2.5);
    // sum of squared deviations from 5 is 32, so the n-1 variance is 32/7.
    assertClose(sampleStd([2, 4, 4, 4, 5, 5, 7, 9]), Math.sqrt(32 / 7), 1e-14);
    assert.equal(sampleStd([3, 3, 3]), 0);
    assert.equal(mean([]), null);
    assert.equal(sampleStd([]), null);
    assert.equal(sampleStd([85.2]), null, 'one seed has no spread');
    assert.equal(mean([1, Number.NaN]), null);
    assert.equal(sampleStd([1, Number.POSITIVE_INFINITY]), null);
  });

  test('two-sided p-values match textbook t tables and closed forms', () => {
    // 97.5% quantiles from standard t tables: each gives p = 0.05.
    for (const [t, df] of [[12.706, 1], [4.303, 2], [2.571, 5], [2.228, 10], [2.086, 20], [2.042, 30]] as const) {
      assertClose(twoSidedPValue(t, df), 0.05, 2e-4, `t=${t}, df=${df}`);
    }
    // df = 1 is the Cauchy distribution: p = 1 - 2 atan(|t|) / π. df = 2: p = 1 - |t| / sqrt(2 + t²).
    for (const t of [0.3, 1, 2.5, 10]) {
      assertClose(twoSidedPValue(t, 1), 1 - (2 * Math.atan(t)) / Math.PI, 1e-12, `cauchy t=${t}`);
      assertClose(twoSidedPValue(-t, 2), 1 - t / Math.sqrt(2 + t * t), 1e-12, `df=2 t=${t}`);
    }
    assert.equal(twoSidedPValue(0, 7), 1);
  });

  test('Welch t-test on hand-computed examples', () => {
    // a = [1,3], b = [6,8]: means 2 and 7, variances 2 and 2, se = sqrt(2/2 + 2/2) = sqrt(2),
    // t = -5/sqrt(2), df = (1+1)^2 / (1/1 + 1/1) = 2, and p = 1 - |t|/sqrt(2+t²) = 1 - sqrt(12.5/14.5).
    const small = welchTTest([1, 3], [6, 8]);
    assert.equal(small.difference, -5);
    assertClose(small.t, -5 / Math.SQRT2, 1e-14);
    assertClose(small.df, 2, 1e-14);
    assertClose(small.p, 1 - Math.sqrt(12.5 / 14.5), 1e-12);
    assert.equal(small.reason, null);

    // a = [1,2,3], b = [4,5,6]: t = -3/sqrt(2/3), df = (2/3)^2 / (2 * (1/3)^2 / 2) = 4.
    const equal = welchTTest([1, 2, 3], [4, 5, 6]);
    assertClose(equal.t, -3 / Math.sqrt(2 / 3), 1e-14);
    assertClose(equal.df, 4, 1e-14);
    assertClose(equal.p, integratedPValue(-3 / Math.sqrt(2 / 3), 4), 1e-8);

    // One side without spread: df falls back to the other side's n - 1.
    const oneConstant = welchTTest([1, 1, 1], [2, 3, 4]);
    assertClose(oneConstant.df, 2, 1e-14);
    assertClose(oneConstant.t, -2 / Math.sqrt(1 / 3), 1e-14);

    // Unequal variances and sizes give a non-integer df; check against the integrated density.
    const a = [86.1, 85.7, 86.4, 85.9];
    const b = [84.2, 85.9, 83.1];
    const reference = referenceWelch(a, b);
    const result = welchTTest(a, b);
    assertClose(result.t, reference.t, 1e-12);
    assertClose(result.df, reference.df, 1e-12);
    assert.ok(!Number.isInteger(reference.df));
    assertClose(result.p, reference.p, 1e-7);
  });

  test('Welch t-test returns null p with a reason when it is undefined', () => {
    const constant = welchTTest([85, 85, 85], [84, 84, 84]);
    assert.equal(constant.p, null);
    assert.equal(constant.t, null);
    assert.equal(constant.difference, 1);
    assert.match(constant.reason ?? '', /zero variance/);
    const single = welchTTest([85], [84, 84.5]);
    assert.equal(single.p, null);
    assert.match(single.reason ?? '', /n < 2/);
    const empty = welchTTest([], [84, 84.5]);
    assert.equal(empty.difference, null);
    assert.equal(empty.p, null);
  });

  test('agrees with numpy (mean, ddof=1 std, Welch t, df) and a numpy-integrated p', (t) => {
    if (skipWithout(t, existsSync('/usr/bin/python3') && pythonWithNumpy() ? null : '/usr/bin/python3 with numpy not available')) return;
    const samples: [number[], number[]][] = [
      [[86.12, 85.71, 86.43], [84.98, 85.33, 85.07]],
      [[91.2, 90.1, 92.7, 90.8, 91.9], [89.9, 90.0]],
      [[70.05, 71.3], [69.2, 72.8, 70.1, 69.9]],
    ];
    // scipy may be missing, so p comes from integrating the t density with numpy (x = tan θ).
    const script = `
import json, sys, numpy as np
out = []
for a, b in json.load(sys.stdin):
    a, b = np.array(a), np.array(b)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    t = (a.mean() - b.mean()) / np.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    f = lambda th: (1 + np.tan(th) ** 2 / df) ** (-(df + 1) / 2) / np.cos(th) ** 2
    end = np.pi / 2 - 1e-12
    def simpson(lo, hi, n=400000):
        x = np.linspace(lo, hi, n + 1); y = f(x); h = (hi - lo) / n
        return h / 3 * (y[0] + y[-1] + 4 * y[1:-1:2].sum() + 2 * y[2:-1:2].sum())
    p = simpson(np.arctan(abs(t)), end) / simpson(0.0, end)
    out.append(dict(mean_a=a.mean(), std_a=a.std(ddof=1), mean_b=b.mean(), std_b=b.std(ddof=1), t=t, df=df, p=p))
print(json.dumps(out))
`;
    const output = execFileSync('/usr/bin/python3', ['-c', script], { input: JSON.stringify(samples), encoding: 'utf8' });
    const expected = JSON.parse(output) as { mean_a: number; std_a: number; mean_b: number; std_b: number; t: number; df: number; p: number }[];
    samples.forEach(([a, b], index) => {
      const reference = expected[index];
      assert.ok(reference !== undefined);
      assertClose(mean(a), reference.mean_a, 1e-12);
      assertClose(sampleStd(a), reference.std_a, 1e-12);
      assertClose(mean(b), reference.mean_b, 1e-12);
      assertClose(sampleStd(b), reference.std_b, 1e-12);
      const result = welchTTest(a, b);
      assertClose(result.t, reference.t, 1e-10, `t of sample ${index}`);
      assertClose(result.df, reference.df, 1e-10, `df of sample ${index}`);
      assertClose(result.p, reference.p, 1e-6, `p of sample ${index}`);
    });
  });
});

describe('run directory names', () => {
  test('parses <method>-s<seed> and <method>-r<ratio>-s<seed>', () => {
    assert.deepEqual(parseRunDirectoryName('baseline-s0'), { method: 'baseline', ratio: null, seed: 0 });
    assert.deepEqual(parseRunDirectoryName('masksub-r0.25-s12'), { method: 'masksub', ratio: 0.25, seed: 12 });
    assert.deepEqual(parseRunDirectoryName('pathsub-r1-s3'), { method: 'pathsub', ratio: 1, seed: 3 });
    assert.equal(parseRunDirectoryName('masksub'), null);
    assert.equal(parseRunDirectoryName('masksub-rX-s1'), null);
    assert.equal(parseRunDirectoryName('notes.txt'), null);
  });
});

// ---- the synthetic comparison, read back independently ----

interface IndependentRun {
  name: string;
  method: string;
  ratio: number;
  seed: number;
  finished: boolean;
  finalAccuracy: number;
  bestAccuracy: number;
  stepTime: number | null;
  wall: number | null;
}

/** Reads the fixture's run files with plain JSON.parse, independent of collect.ts. */
function readRunsIndependently(directory: string): IndependentRun[] {
  return readdirSync(join(directory, 'runs')).map((name) => {
    const runDirectory = join(directory, 'runs', name);
    const config = JSON.parse(readFileSync(join(runDirectory, 'config.json'), 'utf8')) as { method: string; ratio: number; seed: number };
    const rows = readFileSync(join(runDirectory, 'metrics.jsonl'), 'utf8')
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map((line) => JSON.parse(line) as { test_acc1: number });
    const donePath = join(runDirectory, 'done.json');
    const done = existsSync(donePath) ? (JSON.parse(readFileSync(donePath, 'utf8')) as { mean_step_time_s: number; wall_s: number }) : null;
    const accuracies = rows.map((row) => row.test_acc1);
    return {
      name,
      method: config.method,
      ratio: config.ratio,
      seed: config.seed,
      finished: done !== null,
      finalAccuracy: accuracies[accuracies.length - 1] ?? Number.NaN,
      bestAccuracy: Math.max(...accuracies),
      stepTime: done?.mean_step_time_s ?? null,
      wall: done?.wall_s ?? null,
    };
  });
}

function formatCell(values: number[]): string {
  return `${referenceMean(values).toFixed(2)} ± ${referenceStd(values).toFixed(2)}`;
}

describe('collect, results.json and the report on a synthetic comparison', () => {
  const directory = temporaryDirectory('full');
  writeSyntheticComparison(directory, { epochs: 6, runs: defaultSyntheticRuns() });

  test('results.json statistics equal an independent recomputation from the run files', async () => {
    const files = await renderReport(directory);
    assert.equal(files.results, join(directory, 'results.json'));
    const results = JSON.parse(readFileSync(files.results, 'utf8')) as ResultsFile;
    assert.equal(results.schema, 'masksub-results/1');
    assert.deepEqual(results.setting.epochs, [6]);
    assert.deepEqual(results.setting.seeds, [0, 1, 2]);
    assert.deepEqual(
      results.groups.map((group) => group.label),
      ['baseline', 'masking r=0.5', 'masksub r=0.25', 'masksub r=0.5', 'masksub r=0.75'],
    );

    const runs = readRunsIndependently(directory);
    const finishedOf = (method: string, ratio: number): IndependentRun[] =>
      runs.filter((run) => run.method === method && run.ratio === ratio && run.finished).sort((left, right) => left.seed - right.seed);
    const baselineRuns = finishedOf('baseline', 0);
    const baselineFinals = baselineRuns.map((run) => run.finalAccuracy);
    const baselineStep = referenceMean(baselineRuns.map((run) => run.stepTime ?? Number.NaN));

    for (const group of results.groups) {
      const members = finishedOf(group.method, group.ratio);
      const finals = members.map((run) => run.finalAccuracy);
      const bests = members.map((run) => run.bestAccuracy);
      assert.deepEqual(group.seeds, members.map((run) => run.seed), `${group.label} seeds`);
      assert.equal(group.n, members.length);
      assert.deepEqual(group.final_test_acc1.per_seed.map((entry) => entry.seed), group.seeds);
      group.final_test_acc1.per_seed.forEach((entry, index) => assertClose(entry.value, finals[index] ?? Number.NaN, 1e-10, `${group.label} final seed ${entry.seed}`));
      assertClose(group.final_test_acc1.mean, referenceMean(finals), 1e-10, `${group.label} final mean`);
      assertClose(group.final_test_acc1.std, referenceStd(finals), 1e-9, `${group.label} final std`);
      assertClose(group.best_test_acc1.mean, referenceMean(bests), 1e-10, `${group.label} best mean`);
      assertClose(group.best_test_acc1.std, referenceStd(bests), 1e-9, `${group.label} best std`);
      assertClose(group.total_wall_s, members.reduce((total, run) => total + (run.wall ?? 0), 0), 1e-10, `${group.label} wall`);
      const groupStep = referenceMean(members.map((run) => run.stepTime ?? Number.NaN));
      assertClose(group.mean_step_time_s, groupStep, 1e-10, `${group.label} step time`);
      assertClose(group.cost_vs_baseline, groupStep / baselineStep, 1e-10, `${group.label} cost`);
      if (group.is_baseline) {
        assert.equal(group.vs_baseline, null);
        continue;
      }
      const reference = referenceWelch(finals, baselineFinals);
      assert.ok(group.vs_baseline !== null);
      assertClose(group.vs_baseline.difference, referenceMean(finals) - referenceMean(baselineFinals), 1e-10, `${group.label} difference`);
      assertClose(group.vs_baseline.t, reference.t, 1e-9, `${group.label} t`);
      assertClose(group.vs_baseline.df, reference.df, 1e-9, `${group.label} df`);
      assertClose(group.vs_baseline.p, reference.p, 1e-6, `${group.label} p`);
    }

    // The unfinished seed is shown but kept out of the statistics.
    const masksub = results.groups.find((group) => group.label === 'masksub r=0.5');
    assert.ok(masksub !== undefined);
    assert.deepEqual(masksub.seeds, [0, 1]);
    assert.deepEqual(masksub.unfinished_seeds, [2]);
    assert.ok(results.notes.some((note) => note.includes('masksub-s2') && note.includes('unfinished (3/6 epochs)')));
    const unfinishedRun = results.runs.find((run) => run.name === 'masksub-s2');
    assert.equal(unfinishedRun?.finished, false);
    assert.equal(unfinishedRun?.epochs_done, 3);
    // The sweep's directory names carry the ratio; config.json agrees, so no mismatch note.
    assert.ok(results.runs.some((run) => run.name === 'masksub-r0.25-s1' && run.ratio === 0.25));
    assert.ok(!results.notes.some((note) => note.includes('disagrees')));
  });

  test('report.md has one table row per group with the recomputed numbers', () => {
    const markdown = readFileSync(join(directory, 'report.md'), 'utf8');
    const runs = readRunsIndependently(directory);
    const finals = (method: string, ratio: number): number[] =>
      runs.filter((run) => run.method === method && run.ratio === ratio && run.finished).map((run) => run.finalAccuracy);
    assert.ok(markdown.includes(`| baseline | 0 | 3 | ${formatCell(finals('baseline', 0))} |`), markdown);
    assert.ok(markdown.includes(`| masking | 0.5 | 3 | ${formatCell(finals('masking', 0.5))} |`));
    assert.ok(markdown.includes(`| masksub | 0.5 | 2 (+1 unfinished) | ${formatCell(finals('masksub', 0.5))} |`));
    assert.ok(markdown.includes(`| masksub | 0.25 | 2 | ${formatCell(finals('masksub', 0.25))} |`));
    assert.match(markdown, /\| masksub \| 0\.75 \| 2 \| [\d.]+ ± [\d.]+ \| [\d.]+ ± [\d.]+ \| [+−][\d.]+ \(p = [\d.<e-]+\) \| ×[\d.]+ \|/);
    assert.match(markdown, /fashion-mnist · vit-tiny-p4 · 6 epochs · 3 seeds \(0, 1, 2\) · 8,000 training images/);
    assert.match(markdown, /synthetic fixture \(not a real run\)/);
    assert.match(markdown, /runs\/masksub-s2: unfinished/);
    for (const id of ['accuracy-curves', 'train-losses', 'grad-norms', 'accuracy-vs-ratio', 'final-accuracy']) {
      assert.ok(markdown.includes(`(charts/${id}.svg)`), `report.md links charts/${id}.svg`);
      assert.ok(existsSync(join(directory, 'charts', `${id}.svg`)), `charts/${id}.svg written`);
    }
  });

  test('report.html is self-contained with one inline <svg> per chart', () => {
    const html = readFileSync(join(directory, 'report.html'), 'utf8');
    const charts = readdirSync(join(directory, 'charts')).filter((name) => name.endsWith('.svg'));
    assert.equal(charts.length, 5);
    assert.equal((html.match(/<svg\b/g) ?? []).length, charts.length, 'one <svg per chart');
    assert.equal((html.match(/<figure\b/g) ?? []).length, charts.length);
    assert.ok(!/<script\b/i.test(html), 'no script at all');
    assert.ok(!/https?:\/\//i.test(html), 'no http(s) URL anywhere');
    assert.ok(!/\s(?:src|srcset)=/i.test(html), 'no src attributes');
    assert.ok(!/<link\b/i.test(html), 'no linked stylesheets');
    assert.ok(!/@import|url\((?!#)/i.test(html), 'CSS loads nothing');
    // Inlined SVGs must not share element ids (vega reuses clip1, clip2, ... in every chart).
    const ids = [...html.matchAll(/\sid="([^"]+)"/g)].map((match) => match[1]);
    assert.equal(new Set(ids).size, ids.length, 'element ids are unique');
    assert.match(html, /<title>MaskSub comparison/);
    assert.match(html, /synthetic fixture \(not a real run\)/);
    for (const label of ['Paper Fig. 2', 'paper Fig. 3', 'Eq. 1', 'Eq. 2']) assert.ok(html.toLowerCase().includes(label.toLowerCase()), label);
  });

  test('each chart title states dataset, model, epochs, seeds and machine', () => {
    for (const name of readdirSync(join(directory, 'charts'))) {
      const svg = readFileSync(join(directory, 'charts', name), 'utf8');
      assert.match(svg, /^<svg[^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/, `${name} is a standalone SVG`);
      assert.ok(svg.includes('fashion-mnist · vit-tiny-p4 · 6 epochs · 3 seeds (0, 1, 2)'), `${name} subtitle names the setting`);
      assert.ok(svg.includes('machine: synthetic fixture (not a real run)'), `${name} subtitle names the machine`);
    }
  });

  test('writeResults alone writes the same statistics', () => {
    const comparison = writeResults(directory);
    const results = JSON.parse(readFileSync(join(directory, 'results.json'), 'utf8')) as ResultsFile;
    assert.equal(results.groups.length, comparison.groups.length);
    assert.ok(!('epochs' in (results.runs[0] ?? {})), 'per-epoch rows stay in metrics.jsonl');
    assert.equal(typeof results.runs[0]?.config.machine, 'string');
  });

  test('each chart plots the numbers of results.json and the run files: right fields, axis consistent with the points', () => {
    const results = JSON.parse(readFileSync(join(directory, 'results.json'), 'utf8')) as ResultsFile;
    const chart = (id: string): MarkGroup[] => markGroups(readFileSync(join(directory, 'charts', `${id}.svg`), 'utf8'));
    const group = (label: string): ResultsFile['groups'][number] => {
      const found = results.groups.find((entry) => entry.label === label);
      assert.ok(found !== undefined, `a plotted series '${label}' is a group of results.json`);
      return found;
    };
    // Per-epoch rows of each run, read with plain JSON.parse (not collect.ts).
    const rowsOf = (run: string): Record<string, number | null>[] => readFileSync(join(directory, 'runs', run, 'metrics.jsonl'), 'utf8')
      .split('\n').filter((line) => line.trim() !== '').map((line) => JSON.parse(line) as Record<string, number | null>);
    /** Per series and epoch: [mean, min, max] of a field over the group's runs that logged it. */
    const perEpoch = (field: string, labels: string[] = results.groups.map((entry) => entry.label)): Map<string, [number, number, number]> => {
      const table = new Map<string, [number, number, number]>();
      for (const label of labels) {
        const byEpoch = new Map<number, number[]>();
        for (const run of group(label).runs) {
          for (const row of rowsOf(run)) {
            const value = row[field];
            if (typeof value === 'number') byEpoch.set(row.epoch as number, [...(byEpoch.get(row.epoch as number) ?? []), value]);
          }
        }
        for (const [epoch, values] of byEpoch) table.set(`${label}|${epoch}`, [referenceMean(values), Math.min(...values), Math.max(...values)]);
      }
      return table;
    };
    const close = (actual: string | undefined, expected: number, what: string): void => {
      assert.ok(actual !== undefined, `${what}: the mark carries the value`);
      // vega prints 12 significant digits, results.json rounds to 12 too
      assertClose(Number(actual), expected, 1e-9, what);
    };
    /** The points' pixel y is one linear map of their values, and the y axis is labelled with the same map. */
    const assertAxis = (id: string, marks: PlottedMark[], valueOf: (mark: PlottedMark) => number, axisIndex: number): void => {
      const sorted = [...marks].sort((left, right) => valueOf(left) - valueOf(right));
      const low = sorted[0];
      const high = sorted[sorted.length - 1];
      assert.ok(low !== undefined && high !== undefined && valueOf(high) > valueOf(low), `${id}: points with different values`);
      const slope = (high.y - low.y) / (valueOf(high) - valueOf(low));
      assert.ok(slope < 0, `${id}: larger values are drawn higher`);
      for (const mark of marks) assertClose(mark.y, low.y + slope * (valueOf(mark) - valueOf(low)), 1e-6, `${id}: pixel y of ${JSON.stringify(mark.fields)}`);
      const labels = axisLabels(readFileSync(join(directory, 'charts', `${id}.svg`), 'utf8'))[axisIndex] ?? [];
      const first = labels[0];
      const last = labels[labels.length - 1];
      assert.ok(first !== undefined && last !== undefined && labels.length >= 3, `${id}: a y axis with labels`);
      const labelValue = (text: string): number => Number(text.replace(/,/g, ''));
      // Label positions follow the same map, up to vega's few-pixel text baseline offset.
      assertClose((last.y - first.y) / (labelValue(last.text) - labelValue(first.text)), slope, 1e-9, `${id}: axis scale`);
      for (const label of labels) {
        const offset = label.y - (low.y + slope * (labelValue(label.text) - valueOf(low)));
        assert.ok(Math.abs(offset) <= 4, `${id}: label ${label.text} sits ${offset.toFixed(2)} px from where the points put that value`);
      }
      const values = labels.map((label) => labelValue(label.text));
      assert.ok(Math.min(...values) <= valueOf(low) && Math.max(...values) >= valueOf(high), `${id}: the axis (${values[0]}..${values[values.length - 1]}) spans the plotted values`);
    };

    // accuracy-curves: the line's points are the mean test_acc1 over seeds, the band its min and max.
    const accuracy = perEpoch('test_acc1');
    const curves = chart('accuracy-curves');
    const points = curves.find((entry) => entry.kind === 'symbol')?.marks ?? [];
    assert.equal(points.length, accuracy.size, 'one point per series and epoch');
    for (const point of points) {
      const key = `${point.fields.method}|${point.fields.epoch}`;
      const expected = accuracy.get(key);
      assert.ok(expected !== undefined, `accuracy-curves: point ${key} has data`);
      close(point.fields.mean, expected[0], `accuracy-curves ${key} mean test_acc1`);
    }
    for (const band of curves.filter((entry) => entry.kind === 'area').flatMap((entry) => entry.marks)) {
      const expected = accuracy.get(`${band.fields.series}|${band.fields.epoch}`);
      assert.ok(expected !== undefined);
      close(band.fields['test top-1 (%)'], expected[1], `accuracy-curves band ${band.fields.series} min`);
      close(band.fields.max, expected[2], `accuracy-curves band ${band.fields.series} max`);
    }
    // At the last epoch only finished runs remain: the curve ends at results.json's final top-1.
    for (const entry of results.groups) {
      const lastEpoch = Math.max(...points.filter((point) => point.fields.method === entry.label).map((point) => Number(point.fields.epoch)));
      const last = points.find((point) => point.fields.method === entry.label && Number(point.fields.epoch) === lastEpoch);
      assert.ok(entry.final_test_acc1.mean !== null);
      close(last?.fields.mean, entry.final_test_acc1.mean, `accuracy-curves ${entry.label} last point vs results.json final_test_acc1`);
    }
    assertAxis('accuracy-curves', points, (point) => Number(point.fields.mean), 1);

    // final-accuracy: bars at the group means, whiskers at mean ± std, dots at the seeds' values.
    const finals = chart('final-accuracy');
    const bars = finals.find((entry) => entry.kind === 'rect')?.marks ?? [];
    assert.deepEqual(bars.map((bar) => bar.fields.series), results.groups.map((entry) => entry.label));
    for (const bar of bars) {
      const final = group(bar.fields.series ?? '').final_test_acc1;
      close(bar.fields['final test top-1 (%)'], final.mean ?? Number.NaN, `final-accuracy bar ${bar.fields.series}`);
    }
    for (const whisker of finals.find((entry) => entry.kind === 'rule')?.marks ?? []) {
      const final = group(whisker.fields.series ?? '').final_test_acc1;
      close(whisker.fields.low, (final.mean ?? Number.NaN) - (final.std ?? 0), `final-accuracy whisker ${whisker.fields.series} low`);
      close(whisker.fields.high, (final.mean ?? Number.NaN) + (final.std ?? 0), `final-accuracy whisker ${whisker.fields.series} high`);
    }
    const dots = finals.find((entry) => entry.kind === 'symbol')?.marks ?? [];
    const seedValues = results.groups.flatMap((entry) => entry.final_test_acc1.per_seed.map((seed) => `${entry.label}|${seed.value}`)).sort();
    assert.deepEqual(dots.map((dot) => `${dot.fields.series}|${Number(dot.fields.value)}`).sort(), seedValues, 'one dot per finished seed, at its value');
    assertAxis('final-accuracy', dots, (dot) => Number(dot.fields.value), 1);

    // accuracy-vs-ratio: one point per method and ratio at the final mean; the baseline's rule.
    const versus = chart('accuracy-vs-ratio');
    const ratioPoints = versus.find((entry) => entry.kind === 'symbol')?.marks ?? [];
    const swept = results.groups.filter((entry) => !entry.is_baseline);
    assert.equal(ratioPoints.length, swept.length);
    for (const point of ratioPoints) {
      const ratio = Number(point.fields['ratio r (share masked / drop probability)']);
      const entry = swept.find((candidate) => candidate.method === point.fields.method && candidate.ratio === ratio);
      assert.ok(entry !== undefined, `accuracy-vs-ratio: ${point.fields.method} at r=${ratio} is a group`);
      close(point.fields.mean, entry.final_test_acc1.mean ?? Number.NaN, `accuracy-vs-ratio ${entry.label}`);
    }
    const baselineRule = versus.filter((entry) => entry.kind === 'rule').flatMap((entry) => entry.marks).find((mark) => Object.keys(mark.fields).length === 1);
    close(baselineRule?.fields.mean, group('baseline').final_test_acc1.mean ?? Number.NaN, 'accuracy-vs-ratio baseline rule');
    assertAxis('accuracy-vs-ratio', ratioPoints, (point) => Number(point.fields.mean), 1);

    // train-losses: the two panels plot the probe losses of Eq. 1 and Eq. 2, in that order.
    const panels = chart('train-losses').filter((entry) => entry.kind === 'symbol');
    assert.equal(panels.length, 2);
    for (const [panel, field] of [[panels[0], 'probe_loss_standard'], [panels[1], 'probe_loss_masked']] as const) {
      const expected = perEpoch(field);
      assert.equal(panel?.marks.length, expected.size, `train-losses ${field}: one point per series and epoch`);
      for (const point of panel?.marks ?? []) close(point.fields.loss, expected.get(`${point.fields.method}|${point.fields.epoch}`)?.[0] ?? Number.NaN, `train-losses ${field} ${point.fields.method} epoch ${point.fields.epoch}`);
    }

    // grad-norms: the main and the sub term of every method with a sub-model.
    const withSub = results.groups.filter((entry) => entry.method === 'masksub').map((entry) => entry.label);
    // The points carry no term field: each one must take up one expected (series, epoch, norm) of either term.
    const expectedNorms = [...perEpoch('grad_norm_main', withSub), ...perEpoch('grad_norm_sub', withSub)].map(([key, [value]]) => ({ key, value }));
    const plottedNorms = chart('grad-norms').find((entry) => entry.kind === 'symbol')?.marks ?? [];
    assert.equal(plottedNorms.length, expectedNorms.length, 'grad-norms: one point per series, epoch and term');
    for (const point of plottedNorms) {
      const key = `${point.fields.method}|${point.fields.epoch}`;
      const value = Number(point.fields['gradient norm']);
      const index = expectedNorms.findIndex((entry) => entry.key === key && Math.abs(entry.value - value) <= 1e-9 * Math.max(1, Math.abs(value)));
      assert.ok(index >= 0, `grad-norms: point ${key} at ${value} is the mean norm of one of the terms`);
      expectedNorms.splice(index, 1);
    }
  });
});

describe('malformed and partial data', () => {
  test('a malformed metrics line names the file and line number', () => {
    const directory = temporaryDirectory('malformed');
    writeSyntheticComparison(directory, { epochs: 4, runs: [{ method: 'baseline', ratio: 0, seed: 0 }] });
    const metrics = join(directory, 'runs', 'baseline-s0', 'metrics.jsonl');
    const lines = readFileSync(metrics, 'utf8').split('\n');
    lines[2] = '{"epoch": 3, "test_acc1": 71.2,';
    writeFileSync(metrics, lines.join('\n'));
    assert.throws(() => collectComparison(directory), (error: Error) => {
      assert.ok(error.message.includes(`${metrics}:3`), error.message);
      assert.match(error.message, /malformed JSON/);
      return true;
    });
  });

  test('a line without test_acc1 names the file, line and key', () => {
    const directory = temporaryDirectory('missing-key');
    writeSyntheticComparison(directory, { epochs: 2, runs: [{ method: 'baseline', ratio: 0, seed: 0 }] });
    const metrics = join(directory, 'runs', 'baseline-s0', 'metrics.jsonl');
    appendFileSync(metrics, '{"epoch": 3}\n');
    assert.throws(() => collectComparison(directory), new RegExp(`${metrics.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:3: "test_acc1"`));
  });

  test('an unfinished run being written (truncated last line) is tolerated with a note', () => {
    const directory = temporaryDirectory('truncated');
    writeSyntheticComparison(directory, {
      epochs: 4,
      runs: [
        { method: 'baseline', ratio: 0, seed: 0 },
        { method: 'masksub', ratio: 0.5, seed: 0, epochsDone: 2 },
      ],
    });
    appendFileSync(join(directory, 'runs', 'masksub-s0', 'metrics.jsonl'), '{"epoch": 3, "test_');
    const comparison = collectComparison(directory);
    const run = comparison.runs.find((entry) => entry.name === 'masksub-s0');
    assert.equal(run?.epochs_done, 2);
    assert.ok(comparison.notes.some((note) => note.includes('incomplete last line')));
  });

  test('one method, one seed, no sub-model: the report still renders', async () => {
    const directory = temporaryDirectory('partial');
    writeSyntheticComparison(directory, { epochs: 3, runs: [{ method: 'baseline', ratio: 0, seed: 7 }], limit_train: null, preset: 'quick' });
    const files = await renderReport(directory);
    const group = files.comparison.groups[0];
    assert.equal(files.comparison.groups.length, 1);
    assert.equal(group?.final_test_acc1.std, null);
    assert.deepEqual(files.omitted.map((entry) => entry.id).sort(), ['accuracy-vs-ratio', 'grad-norms']);
    const html = readFileSync(files.html, 'utf8');
    assert.equal((html.match(/<svg\b/g) ?? []).length, files.charts.length);
    assert.match(html, /full training set · preset quick/);
    assert.match(readFileSync(files.markdown, 'utf8'), /grad-norms: not drawn/);
  });

  test('null grad_norm_sub, no finished runs, no baseline: no crash, p explained', async () => {
    const directory = temporaryDirectory('nulls');
    writeSyntheticComparison(directory, {
      epochs: 4,
      runs: [
        { method: 'masksub', ratio: 0.5, seed: 0 },
        { method: 'masksub', ratio: 0.5, seed: 1, epochsDone: 1 },
        { method: 'masking', ratio: 0.5, seed: 0, epochsDone: 2 },
      ],
    });
    // Sub-model runs whose norms were non-finite: the trainer writes null.
    for (const name of ['masksub-s0', 'masksub-s1']) {
      const metrics = join(directory, 'runs', name, 'metrics.jsonl');
      const rows = readFileSync(metrics, 'utf8').trim().split('\n').map((line) => ({ ...(JSON.parse(line) as object), grad_norm_sub: null, probe_loss_masked: null }));
      writeFileSync(metrics, rows.map((row) => `${JSON.stringify(row)}\n`).join(''));
    }
    const files = await renderReport(directory);
    assert.ok(files.comparison.notes.some((note) => note.includes('no baseline')));
    const masking = files.comparison.groups.find((group) => group.method === 'masking');
    assert.equal(masking?.n, 0);
    assert.equal(masking?.final_test_acc1.mean, null);
    assert.ok(files.omitted.some((entry) => entry.id === 'grad-norms'));
    const markdown = readFileSync(files.markdown, 'utf8');
    assert.match(markdown, /\| masking \| 0\.5 \| 0 \(\+1 unfinished\) \| – \|/);

    // With a one-seed baseline the difference is shown and the missing p-value is explained.
    writeSyntheticComparison(directory, { epochs: 4, runs: [{ method: 'baseline', ratio: 0, seed: 0 }] });
    const withBaseline = await renderReport(directory);
    const masksub = withBaseline.comparison.groups.find((group) => group.method === 'masksub');
    assert.equal(masksub?.vs_baseline?.p, null);
    assert.match(masksub?.vs_baseline?.reason ?? '', /n < 2/);
    assert.match(readFileSync(withBaseline.markdown, 'utf8'), /p n\/a: n < 2/);
  });

  test('config.json is authoritative over the directory name', () => {
    const directory = temporaryDirectory('names');
    writeSyntheticComparison(directory, { epochs: 2, runs: [{ method: 'masksub', ratio: 0.3, seed: 4, directoryName: 'masksub-r0.25-s4' }] });
    const comparison = collectComparison(directory);
    assert.equal(comparison.runs[0]?.ratio, 0.3);
    assert.ok(comparison.notes.some((note) => note.includes('masksub-r0.25-s4') && note.includes('disagrees')));
  });

  test('a directory without runs/ is a clear error', () => {
    const directory = temporaryDirectory('empty');
    assert.throws(() => collectComparison(directory), /no runs directory/);
  });
});
