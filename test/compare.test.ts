// `masksub compare` end to end, through the real CLI in child processes and real (tiny) training:
// the numbers of results.json recomputed from the run files, interruption by SIGKILL at chosen
// and at seeded random moments, a ratio sweep, the report in headless Chromium, and bad input.
// Set MASKSUB_TEST_SEED to replay other random kill times; MASKSUB_KEEP_TEST_DIRS=1 keeps the runs.

import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';

import type { GroupResult, ResultsFile } from '../src/report/index.js';
import { chartGeometry, chromiumMissing, openReport, withBrowser } from './helpers/browser.js';
import { skipWithout } from './helpers/skip.js';
import {
  close,
  fingerprint,
  libraryPValue,
  output,
  readJson,
  readMetricsLines,
  referenceMean,
  referenceStd,
  referenceWelch,
  runCli,
  seededRandom,
  sleep,
  startCli,
  tinyFlags,
  waitFor,
  type DoneFile,
} from './helpers/compare.js';

const root = mkdtempSync(join(tmpdir(), 'masksub-compare-test-'));
// Kept on purpose: the screenshots are for a person to look at.
const screenshots = mkdtempSync(join(tmpdir(), 'masksub-compare-browser-'));
after(() => {
  if (process.env['MASKSUB_KEEP_TEST_DIRS'] === '1') console.log(`compare test directories kept in ${root}`);
  else rmSync(root, { recursive: true, force: true });
});

const seed = Number(process.env['MASKSUB_TEST_SEED'] ?? 20_240_611);
const random = seededRandom(seed);

const RUN_FILES = ['config.json', 'done.json', 'metrics.jsonl', 'summary.csv', 'model.safetensors', 'best.safetensors', 'checkpoint.safetensors'];
const ALL_CHARTS = ['accuracy-curves', 'train-losses', 'grad-norms', 'accuracy-vs-ratio', 'final-accuracy'];

function assertClose(actual: unknown, expected: number, what: string, tolerance = 1e-9): void {
  const check = close(actual, expected, tolerance);
  assert.ok(check.ok, `${what}: ${check.message}`);
}

function svgCount(html: string): number {
  return html.match(/<svg\b/g)?.length ?? 0;
}

function figureIds(html: string): string[] {
  return [...html.matchAll(/<figure id="([^"]+)" class="chart">/g)].map((match) => match[1] ?? '');
}

/** Directories of finished tests, for the browser test (null when that test did not get there). */
let mainComparison: string | null = null;
let sweepComparison: string | null = null;

test('compare trains 2 methods x 2 seeds via the CLI; results.json agrees with the run files', { timeout: 120_000 }, async (t) => {
  const out = join(root, 'main');
  const result = await runCli(['compare', ...tinyFlags(1), '--methods', 'baseline,masksub', '--seeds', '0,1', '--out', out]);
  t.diagnostic(`compare 2 methods x 2 seeds x 1 epoch: ${result.seconds.toFixed(1)} s`);
  assert.equal(result.code, 0, output(result));

  // Seed-major order, one fresh training per run, then the report.
  const names = ['baseline-s0', 'masksub-s0', 'baseline-s1', 'masksub-s1'];
  names.forEach((name, index) => assert.match(result.stdout, new RegExp(`\\[${index + 1}/4\\] ${name}: training \\(`), output(result)));
  assert.match(result.stdout, /compare finished in \d+ s; report: .*report\.html/);
  const runsDirectory = join(out, 'runs');
  assert.deepEqual(readdirSync(runsDirectory).sort(), [...names].sort());
  for (const name of names) {
    for (const file of RUN_FILES) assert.ok(existsSync(join(runsDirectory, name, file)), `${name}/${file} exists`);
    const config = readJson(join(runsDirectory, name, 'config.json'));
    assert.equal(config['method'], name.split('-')[0]);
    assert.equal(config['seed'], Number(name.at(-1)));
    assert.equal(config['ratio'], name.startsWith('masksub') ? 0.5 : 0);
  }

  const results = readJson<ResultsFile>(join(out, 'results.json'));
  assert.equal(results.schema, 'masksub-results/1');
  assert.deepEqual(results.notes, [], 'a clean comparison has no notes');
  assert.deepEqual(results.setting.seeds, [0, 1]);
  assert.deepEqual(results.setting.limit_train, [256]);
  assert.equal(results.runs.length, 4);
  for (const run of results.runs) assert.ok(run.finished && run.epochs_done === 1 && run.epochs_planned === 1, `${run.name} finished its epoch`);
  assert.deepEqual(results.groups.map((group) => group.key), ['fashion-mnist/vit_micro/baseline/r0', 'fashion-mnist/vit_micro/masksub/r0.5']);

  // Everything below is recomputed from metrics.jsonl and done.json, not taken from the report.
  const finals = new Map<string, number[]>();
  const stepTimes = new Map<string, number>();
  for (const group of results.groups) {
    const perSeed: number[] = [];
    const doneStepTimes: number[] = [];
    const walls: number[] = [];
    for (const runSeed of [0, 1]) {
      const directory = join(runsDirectory, `${group.method}-s${runSeed}`);
      const lines = readMetricsLines(directory);
      assert.equal(lines.length, 1, `${directory}: one metrics line per epoch`);
      const last = lines.at(-1);
      assert.ok(last);
      const done = readJson<DoneFile>(join(directory, 'done.json'));
      assert.equal(done.final_test_acc1, last.test_acc1, 'done.json agrees with metrics.jsonl');
      assertClose(done.mean_step_time_s, referenceMean(lines.map((line) => line.step_time_s)), `${directory}: done.json mean step time`);
      perSeed.push(last.test_acc1);
      doneStepTimes.push(done.mean_step_time_s);
      walls.push(done.wall_s);
    }
    const label = group.method;
    assert.deepEqual(group.final_test_acc1.per_seed.map((entry) => entry.seed), [0, 1], `${label}: seeds`);
    group.final_test_acc1.per_seed.forEach((entry, index) => assertClose(entry.value, perSeed[index] ?? Number.NaN, `${label} seed ${entry.seed} final top-1`));
    group.best_test_acc1.per_seed.forEach((entry, index) => assertClose(entry.value, perSeed[index] ?? Number.NaN, `${label} seed ${entry.seed} best top-1 (one epoch)`));
    assertClose(group.final_test_acc1.mean, referenceMean(perSeed), `${label} mean`);
    assertClose(group.final_test_acc1.std, referenceStd(perSeed), `${label} sample std`);
    assert.equal(group.n, 2);
    assert.deepEqual(group.seeds, [0, 1]);
    assert.deepEqual(group.unfinished_seeds, []);
    assertClose(group.mean_step_time_s, referenceMean(doneStepTimes), `${label} mean step time`);
    assertClose(group.total_wall_s, walls.reduce((total, value) => total + value, 0), `${label} total wall time`);
    finals.set(group.method, perSeed);
    stepTimes.set(group.method, referenceMean(doneStepTimes));
  }

  const [baseline, masksub] = results.groups as [GroupResult, GroupResult];
  assert.ok(baseline.is_baseline && baseline.vs_baseline === null);
  assert.equal(baseline.cost_vs_baseline, 1);
  const comparison = masksub.vs_baseline;
  assert.ok(comparison !== null, 'masksub is compared to the baseline');
  assert.equal(comparison.baseline_key, baseline.key);
  const a = finals.get('masksub') ?? [];
  const b = finals.get('baseline') ?? [];
  assertClose(comparison.difference, referenceMean(a) - referenceMean(b), 'difference to baseline');
  const welch = referenceWelch(a, b);
  if ('zeroVariance' in welch) {
    // Both methods gave the same accuracy for both seeds: no t-test is defined.
    assert.equal(comparison.p, null);
    assert.match(comparison.reason ?? '', /zero variance/);
    t.diagnostic('every seed of both methods reached the same accuracy: Welch test undefined (checked)');
  } else {
    assertClose(comparison.t, welch.t, 'Welch t');
    assertClose(comparison.df, welch.df, 'Welch-Satterthwaite df');
    assertClose(comparison.p, welch.p, 'p (integrated t density)', 1e-7);
    assertClose(comparison.p, libraryPValue(welch.t, welch.df), 'p (@stdlib t cdf)', 1e-9);
    assert.equal(comparison.reason, null);
    t.diagnostic(`masksub - baseline = ${comparison.difference?.toFixed(2)} points, t = ${welch.t.toFixed(3)}, df = ${welch.df.toFixed(2)}, p = ${welch.p.toFixed(4)}`);
  }
  assertClose(masksub.cost_vs_baseline, (stepTimes.get('masksub') ?? Number.NaN) / (stepTimes.get('baseline') ?? Number.NaN), 'cost vs baseline');
  t.diagnostic(`masksub step time x${masksub.cost_vs_baseline?.toFixed(2)} of the baseline's`);

  // The report: markdown table rows with the same numbers, one inline SVG per chart in the HTML.
  const markdown = readFileSync(join(out, 'report.md'), 'utf8');
  const html = readFileSync(join(out, 'report.html'), 'utf8');
  for (const group of results.groups) {
    const cell = `${group.final_test_acc1.mean?.toFixed(2)} ± ${group.final_test_acc1.std?.toFixed(2)}`;
    assert.ok(markdown.includes(`| ${group.method} | ${group.ratio} | 2 | ${cell} |`), `report.md row of ${group.method} (${cell})`);
    assert.ok(html.includes(cell), `report.html shows ${cell}`);
    const row = markdown.split('\n').find((line) => line.startsWith(`| ${group.method} |`)) ?? '';
    const wall = /\| ([\d.]+) s \|$/.exec(row);
    assert.ok(wall && Number(wall[1]) > 0 && Math.abs(Number(wall[1]) - (group.total_wall_s ?? Number.NaN)) <= 0.05, `${group.method}: wall time cell of '${row}' vs ${group.total_wall_s} s`);
  }
  const charts = readdirSync(join(out, 'charts')).sort();
  assert.deepEqual(charts, ['accuracy-curves.svg', 'final-accuracy.svg', 'grad-norms.svg', 'train-losses.svg']);
  assert.deepEqual(figureIds(html), ['accuracy-curves', 'train-losses', 'grad-norms', 'final-accuracy']);
  assert.equal(svgCount(html), charts.length, 'one <svg per chart');
  assert.match(html, /accuracy-vs-ratio: not drawn \(every method was run at a single ratio\)/);
  for (const [name, text] of [['report.md', markdown], ['report.html', html]] as const) {
    assert.doesNotMatch(text, /\bNaN\b|\bundefined\b|Infinity/, `${name} has no NaN/undefined`);
  }
  mainComparison = out;
});

test('compare --jobs 2 trains two runs at a time in child processes: the same weights as in one process; a failing run is named', { timeout: 300_000 }, async (t) => {
  const out = join(root, 'jobs');
  const args = ['compare', ...tinyFlags(1), '--methods', 'baseline,masksub', '--seeds', '0,1'];
  const result = await runCli([...args, '--jobs', '2', '--out', out]);
  t.diagnostic(`compare --jobs 2, 4 runs: ${result.seconds.toFixed(1)} s`);
  assert.equal(result.code, 0, output(result));
  // The second run starts before the first ends: two slots.
  const secondStarts = result.stdout.indexOf('[2/4] masksub-s0: training');
  const firstEnds = result.stdout.indexOf('baseline-s0: finished:');
  assert.ok(secondStarts >= 0 && firstEnds > secondStarts, output(result));
  assert.ok(!existsSync(join(out, '.jobs')), 'the plans of finished runs are removed');
  // One thread each (threads 1 / 2 jobs, at least 1), so every run computes what the in-process
  // compare computes: bit-identical weights and curves.
  const reference = mainComparison ?? join(root, 'jobs-reference');
  if (mainComparison === null) assert.equal((await runCli([...args, '--out', reference])).code, 0);
  for (const name of ['baseline-s0', 'masksub-s0', 'baseline-s1', 'masksub-s1']) {
    assert.equal(readJson(join(out, 'runs', name, 'config.json'))['threads'], 1);
    assert.ok(readFileSync(join(out, 'runs', name, 'model.safetensors')).equals(readFileSync(join(reference, 'runs', name, 'model.safetensors'))), `${name}: same weights`);
    assert.deepEqual(readMetricsLines(join(out, 'runs', name)).map((line) => line.train_loss), readMetricsLines(join(reference, 'runs', name)).map((line) => line.train_loss));
  }
  const results = readJson<ResultsFile>(join(out, 'results.json'));
  assert.deepEqual(results.groups.map((group) => [group.method, group.n]), [['baseline', 2], ['masksub', 2]]);

  // A run that fails (a NaN loss injected at step 2, in every child) stops the comparison with
  // an error that names the run and carries its last lines; nothing is reported.
  const failing = join(root, 'jobs-failing');
  process.env['MASKSUB_INJECT_NAN_AT_STEP'] = '2';
  let failed;
  try {
    failed = await runCli([...args, '--jobs', '2', '--out', failing]);
  } finally {
    delete process.env['MASKSUB_INJECT_NAN_AT_STEP'];
  }
  assert.notEqual(failed.code, 0, output(failed));
  assert.match(failed.stderr, /run (baseline|masksub)-s0 exited with code \d+; the other runs were stopped/, output(failed));
  assert.match(failed.stderr, /non-finite|NaN/i, output(failed));
  assert.ok(!existsSync(join(failing, 'results.json')), 'no report of a failed comparison');
  assert.ok(!existsSync(join(failing, 'runs', 'baseline-s1')), 'no run was started after the failure');
});

test('compare killed (SIGKILL) during the second run continues: finished runs reused untouched, the killed one resumed exactly', { timeout: 120_000 }, async (t) => {
  const out = join(root, 'killed');
  const args = ['compare', ...tinyFlags(3), '--methods', 'baseline,masksub', '--seeds', '0', '--out', out];
  const first = join(out, 'runs', 'baseline-s0');
  const second = join(out, 'runs', 'masksub-s0');
  const running = startCli(args);
  // Once the first run is done and the second has finished an epoch, plus a seeded jitter.
  const reached = await waitFor(() => existsSync(join(first, 'done.json')) && existsSync(join(second, 'metrics.jsonl')), running.done);
  const jitter = Math.floor(random() * 150);
  await sleep(jitter);
  running.child.kill('SIGKILL');
  const killed = await running.done;
  assert.ok(reached, `the kill point was never reached:\n${output(killed)}`);
  assert.equal(killed.signal, 'SIGKILL', `compare ended before the kill:\n${output(killed)}`);
  assert.ok(!existsSync(join(second, 'done.json')), 'killed before the second run finished (raise its epochs if this fails)');
  assert.ok(!existsSync(join(out, 'results.json')), 'no report yet');
  const epochsAtKill = readMetricsLines(second).length;
  t.diagnostic(`killed ${jitter} ms after masksub-s0's first epoch, with ${epochsAtKill} of 3 epochs logged (seed ${seed})`);
  const before = fingerprint(first, RUN_FILES);

  const rerun = await runCli(args);
  t.diagnostic(`rerun: ${rerun.seconds.toFixed(1)} s`);
  assert.equal(rerun.code, 0, output(rerun));
  assert.match(rerun.stdout, /\[1\/2\] baseline-s0: finished earlier, reused/);
  assert.match(rerun.stdout, /\[2\/2\] masksub-s0: resuming \(masksub, ratio 0\.5, seed 0\)/);
  const resumedAfter = /masksub-s0: resumed .*masksub-s0 after epoch (\d+) \(step (\d+)\)/.exec(rerun.stdout);
  assert.ok(resumedAfter, `the log says where the run resumed:\n${output(rerun)}`);
  assert.ok(Number(resumedAfter[1]) >= epochsAtKill && Number(resumedAfter[1]) < 3, `resumed after epoch ${resumedAfter[1]}`);
  assert.doesNotMatch(rerun.stdout, /baseline-s0: (training|resuming)/);

  assert.deepEqual(fingerprint(first, RUN_FILES), before, 'the finished run was not touched (bytes and mtimes)');
  assert.ok(existsSync(join(second, 'done.json')));
  const lines = readMetricsLines(second);
  assert.deepEqual(lines.map((line) => line.epoch), [1, 2, 3]);
  for (let index = 1; index < lines.length; index++) {
    assert.ok((lines[index]?.wall_s ?? 0) > (lines[index - 1]?.wall_s ?? 0), 'wall time is cumulative over the resume');
  }
  const results = readJson<ResultsFile>(join(out, 'results.json'));
  assert.deepEqual(results.notes, []);
  assert.deepEqual(results.groups.map((group) => [group.method, group.n]), [['baseline', 1], ['masksub', 1]]);
  assert.equal(results.groups[1]?.final_test_acc1.per_seed[0]?.value, lines.at(-1)?.test_acc1);

  // The resumed run is the run it would have been: same weights and curves as one never killed.
  const straight = join(root, 'killed-straight');
  const reference = await runCli(['train', ...tinyFlags(3), '--method', 'masksub', '--seed', '0', '--out', straight]);
  assert.equal(reference.code, 0, output(reference));
  assert.ok(readFileSync(join(second, 'model.safetensors')).equals(readFileSync(join(straight, 'model.safetensors'))), 'same weights as an uninterrupted run');
  const straightLines = readMetricsLines(straight);
  assert.deepEqual(lines.map((line) => line.test_acc1), straightLines.map((line) => line.test_acc1));
  assert.deepEqual(lines.map((line) => line.train_loss), straightLines.map((line) => line.train_loss));
});

test('compare killed before the first checkpoint, or while config.json was written, still finishes', { timeout: 120_000 }, async (t) => {
  const out = join(root, 'early');
  const args = ['compare', ...tinyFlags(1), '--methods', 'baseline,masksub', '--seeds', '0', '--out', out];
  const first = join(out, 'runs', 'baseline-s0');
  const running = startCli(args);
  const reached = await waitFor(() => existsSync(join(first, 'config.json')), running.done);
  running.child.kill('SIGKILL');
  const killed = await running.done;
  assert.ok(reached && killed.signal === 'SIGKILL', output(killed));
  assert.ok(!existsSync(join(first, 'checkpoint.safetensors')), 'killed before the first checkpoint');
  // A kill inside writeFileAtomic of the next run's config.json leaves only its temporary file.
  const second = join(out, 'runs', 'masksub-s0');
  mkdirSync(second);
  // Its writer's pid is above Linux's pid_max, so it is certainly gone.
  const temporary = join(second, '.config.json.99999999.tmp');
  writeFileSync(temporary, '{\n  "dataset": "fash');

  const rerun = await runCli(args);
  assert.equal(rerun.code, 0, output(rerun));
  assert.match(rerun.stdout, /\[1\/2\] baseline-s0: resuming/);
  assert.match(rerun.stdout, /\[2\/2\] masksub-s0: training/);
  assert.ok(existsSync(join(first, 'done.json')) && existsSync(join(second, 'done.json')));
  assert.ok(!existsSync(temporary), 'the stale temporary file was removed');
  // Same settings as the first test's runs: a restart from scratch gives the same weights.
  if (mainComparison !== null) {
    for (const name of ['baseline-s0', 'masksub-s0']) {
      const expected = readFileSync(join(mainComparison, 'runs', name, 'model.safetensors'));
      assert.ok(readFileSync(join(out, 'runs', name, 'model.safetensors')).equals(expected), `${name}: same weights as in the uninterrupted comparison`);
    }
  } else {
    t.diagnostic('the first test did not finish: weights not compared');
  }
});

test('compare killed at seeded random moments converges to a complete comparison', { timeout: 150_000 }, async (t) => {
  const out = join(root, 'chaos');
  const args = ['compare', ...tinyFlags(2), '--methods', 'baseline,masksub', '--seeds', '0', '--out', out];
  const kills: number[] = [];
  let finished = false;
  for (let attempt = 0; attempt < 4 && !finished; attempt++) {
    const running = startCli(args);
    // Startup takes ~2 s; the whole comparison ~5-8 s on 2 cores: most kills land in training.
    const delay = Math.round(1500 + random() * 4500);
    const ended = await Promise.race([running.done, sleep(delay).then(() => null)]);
    if (ended === null) {
      running.child.kill('SIGKILL');
      const killed = await running.done;
      if (killed.signal === 'SIGKILL') {
        kills.push(delay);
        continue;
      }
      assert.equal(killed.code, 0, output(killed));
    } else {
      assert.equal(ended.code, 0, output(ended));
    }
    finished = true;
  }
  t.diagnostic(`SIGKILL after ${kills.join(', ') || 'no'} ms (seed ${seed})`);
  if (!finished) {
    const last = await runCli(args);
    assert.equal(last.code, 0, output(last));
  }
  for (const name of ['baseline-s0', 'masksub-s0']) {
    const directory = join(out, 'runs', name);
    assert.ok(existsSync(join(directory, 'done.json')), `${name} finished`);
    assert.deepEqual(readMetricsLines(directory).map((line) => line.epoch), [1, 2], `${name}: one line per epoch`);
    assert.deepEqual(readdirSync(directory).filter((entry) => entry.endsWith('.tmp')), [], `${name}: no temporary files left`);
  }
  const results = readJson<ResultsFile>(join(out, 'results.json'));
  assert.deepEqual(results.notes, [], 'no notes (e.g. metrics.jsonl behind done.json)');
  assert.ok(results.runs.every((run) => run.finished));
});

test('a ratio sweep runs each ratio into <method>-r<ratio>-s<seed> and draws accuracy against ratio', { timeout: 120_000 }, async (t) => {
  const out = join(root, 'sweep');
  // The preset supplies what the flags leave open (lr 2e-3 of "quick"); the flags win elsewhere.
  const result = await runCli(['compare', '--preset', 'quick', ...tinyFlags(1), '--methods', 'baseline,masksub', '--ratios', '0.25,0.75', '--seeds', '0', '--out', out]);
  t.diagnostic(`sweep of 3 runs: ${result.seconds.toFixed(1)} s`);
  assert.equal(result.code, 0, output(result));
  const expected: Record<string, number> = { 'baseline-s0': 0, 'masksub-r0.25-s0': 0.25, 'masksub-r0.75-s0': 0.75 };
  assert.deepEqual(readdirSync(join(out, 'runs')).sort(), Object.keys(expected).sort());
  for (const [name, ratio] of Object.entries(expected)) {
    const config = readJson(join(out, 'runs', name, 'config.json'));
    assert.equal(config['ratio'], ratio, `${name}: ratio in config.json`);
    assert.equal(config['method'], name.split('-')[0]);
    assert.equal(config['preset'], 'quick');
    assert.equal(config['lr'], 0.002, 'from the preset');
    assert.equal(config['limit_train'], 256, 'the flag wins over the preset');
    assert.ok(existsSync(join(out, 'runs', name, 'done.json')));
  }
  const results = readJson<ResultsFile>(join(out, 'results.json'));
  assert.deepEqual(results.notes, []);
  assert.deepEqual(results.setting.presets, ['quick']);
  assert.deepEqual(results.groups.map((group) => [group.method, group.ratio, group.n]), [['baseline', 0, 1], ['masksub', 0.25, 1], ['masksub', 0.75, 1]]);
  const baselineAccuracy = readMetricsLines(join(out, 'runs', 'baseline-s0')).at(-1)?.test_acc1 ?? Number.NaN;
  for (const group of results.groups.slice(1)) {
    const accuracy = readMetricsLines(join(out, 'runs', `masksub-r${group.ratio}-s0`)).at(-1)?.test_acc1 ?? Number.NaN;
    assertClose(group.final_test_acc1.mean, accuracy, `masksub r=${group.ratio} final top-1`);
    assert.equal(group.final_test_acc1.std, null, 'one seed: no std');
    assertClose(group.vs_baseline?.difference, accuracy - baselineAccuracy, `masksub r=${group.ratio} difference`);
    assert.equal(group.vs_baseline?.p, null);
    assert.match(group.vs_baseline?.reason ?? '', /n < 2 \(1 vs 1 seeds\)/);
  }
  const html = readFileSync(join(out, 'report.html'), 'utf8');
  assert.ok(existsSync(join(out, 'charts', 'accuracy-vs-ratio.svg')), 'accuracy-vs-ratio chart written');
  assert.deepEqual(figureIds(html), ALL_CHARTS);
  assert.equal(svgCount(html), ALL_CHARTS.length);
  assert.match(readFileSync(join(out, 'report.md'), 'utf8'), /preset quick/);
  sweepComparison = out;
});

test('the real comparisons render in headless Chromium: every chart drawn, no errors', { timeout: 90_000 }, async (t) => {
  if (skipWithout(t, chromiumMissing())) return;
  assert.ok(mainComparison !== null && sweepComparison !== null, 'the comparison tests above finished');
  const cases = [
    { name: 'main', directory: mainComparison, charts: ALL_CHARTS.filter((id) => id !== 'accuracy-vs-ratio'), series: ['baseline', 'masksub r=0.5'] },
    { name: 'sweep', directory: sweepComparison, charts: ALL_CHARTS, series: ['baseline', 'masksub r=0.25', 'masksub r=0.75'] },
  ];
  await withBrowser(async (browser) => {
    for (const { name, directory, charts, series } of cases) {
      const results = readJson<ResultsFile>(join(directory, 'results.json'));
      const { page, consoleErrors, failedRequests, otherRequests } = await openReport(browser, join(directory, 'report.html'));
      const geometry = await chartGeometry(page);
      assert.deepEqual(geometry.map((chart) => chart.id), charts, `${name}: charts`);
      for (const chart of geometry) {
        const where = `${name}/${chart.id}`;
        assert.ok(chart.width > 100 && chart.height > 100, `${where}: rendered size ${chart.width}x${chart.height}`);
        assert.ok(chart.marks > 0 && chart.paths > 0, `${where}: has data marks`);
        // One epoch gives every curve a single point: it must still show as a point, not vanish.
        assert.ok(chart.visibleMarks > 0, `${where}: ${chart.visibleMarks} of ${chart.marks} data marks visible`);
        const texts = chart.texts.join(' | ');
        assert.doesNotMatch(texts, /NaN|undefined|Infinity|null/, `${where}: texts ${texts}`);
        assert.match(texts, /fashion-mnist · vit_micro · 1 epoch · /, `${where}: subtitle says what was run`);
        if (chart.id === 'accuracy-vs-ratio') {
          assert.ok(chart.texts.includes('masksub') && chart.texts.includes('baseline'), `${where}: legend and baseline label (${texts})`);
        } else if (chart.id === 'final-accuracy') {
          // Axis labels break at spaces into lines ("masksub" / "r=0.5"); each bar is labelled with its numbers.
          for (const label of series) assert.ok(chart.texts.includes(label.replace(' ', '')), `${where}: axis label '${label}' (${texts})`);
          for (const group of results.groups) {
            const { mean, std, per_seed: perSeed } = group.final_test_acc1;
            const expected = std === null ? `${mean?.toFixed(2)} (n=${perSeed.length})` : `${mean?.toFixed(2)} ± ${std.toFixed(2)}`;
            assert.ok(chart.texts.includes(expected), `${where}: bar label '${expected}' (${texts})`);
          }
        } else if (chart.id === 'grad-norms') {
          for (const label of series.filter((entry) => entry !== 'baseline')) assert.ok(chart.texts.includes(label), `${where}: legend '${label}' (${texts})`);
          assert.ok(!chart.texts.includes('baseline'), `${where}: the baseline has no sub-model gradient`);
        } else {
          for (const label of series) assert.ok(chart.texts.includes(label), `${where}: legend '${label}' (${texts})`);
        }
      }
      const rows = await page.$$eval('table tbody tr', (elements) => elements.map((row) => (row as HTMLElement).innerText));
      assert.equal(rows.length, results.groups.length, `${name}: one table row per group`);
      const body = await page.evaluate(() => document.body.innerText);
      assert.doesNotMatch(body, /\bNaN\b|\bundefined\b|Infinity/, `${name}: page text`);
      const screenshot = join(screenshots, `compare-${name}.png`);
      await page.screenshot({ path: screenshot, fullPage: true });
      t.diagnostic(`screenshot: ${screenshot}`);
      console.log(`compare report screenshot (${name}): ${screenshot}`);
      assert.deepEqual(consoleErrors, [], `${name}: no console errors`);
      assert.deepEqual(failedRequests, [], `${name}: no failed requests`);
      assert.deepEqual(otherRequests, [], `${name}: no requests besides the report`);
      await page.close();
    }
  });
});

test('bad --methods, --seeds and --ratios exit with code 2 before any run directory exists', { timeout: 60_000 }, async () => {
  const cases: [string[], RegExp][] = [
    [['--methods', 'baseline,magic'], /masksub: --methods must be one of baseline, masking, dropout, droppath, masksub, dropsub, pathsub, got "magic"/],
    [['--seeds', 'a'], /masksub: --seeds must be an integer in \[0, 2147483647\], got "a"/],
    [['--ratios', '1.5'], /masksub: --ratios must be a number in \[0, 1\), got 1\.5/],
    [['--ratios', '0,0.5'], /masksub: ratio 0 turns off the mask ratio of method masksub; use a ratio in \(0, 1\)/],
    [['--seed', '3'], /masksub: --seed: compare trains one run per seed of --seeds/],
    [['--seeds', '0,0'], /masksub: --seeds lists a value twice/],
    [['--jobs', '0'], /masksub: --jobs must be an integer >= 1, got '0'/],
    [['--jobs', '1.5'], /masksub: --jobs must be an integer >= 1, got '1\.5'/],
  ];
  const results = await Promise.all(
    cases.map(async ([flags, message], index) => {
      const out = join(root, `bad-${index}`);
      const result = await runCli(['compare', ...tinyFlags(1), '--methods', 'baseline,masksub', '--seeds', '0', ...flags, '--out', out]);
      return { flags, message, out, result };
    }),
  );
  for (const { flags, message, out, result } of results) {
    assert.equal(result.code, 2, `${flags.join(' ')}: ${output(result)}`);
    assert.match(result.stderr, message, flags.join(' '));
    assert.equal(result.stdout, '', `${flags.join(' ')}: nothing was started`);
    assert.ok(!existsSync(out), `${flags.join(' ')}: no output directory created`);
  }
});

test(
  'a kill after the last checkpoint but before metrics.jsonl is rewritten leaves the metrics complete',
  {
    // Depends on trainer.ts rewriting metrics.jsonl from the checkpoint's history on resume.
    timeout: 60_000,
  },
  async () => {
    const source = join(root, 'killed', 'runs');
    assert.ok(existsSync(join(source, 'masksub-s0', 'done.json')), 'needs the SIGKILL test above');
    const out = join(root, 'late-kill');
    cpSync(source, join(out, 'runs'), { recursive: true });
    // The state a kill leaves between checkpoint.safetensors (epoch 3) and metrics.jsonl (epoch 3).
    const run = join(out, 'runs', 'masksub-s0');
    rmSync(join(run, 'done.json'));
    const lines = readFileSync(join(run, 'metrics.jsonl'), 'utf8').trim().split('\n');
    writeFileSync(join(run, 'metrics.jsonl'), `${lines.slice(0, 2).join('\n')}\n`);
    const result = await runCli(['compare', ...tinyFlags(3), '--methods', 'baseline,masksub', '--seeds', '0', '--out', out]);
    assert.equal(result.code, 0, output(result));
    assert.deepEqual(readMetricsLines(run).map((line) => line.epoch), [1, 2, 3]);
    assert.deepEqual(readJson<ResultsFile>(join(out, 'results.json')).notes, []);
  },
);
