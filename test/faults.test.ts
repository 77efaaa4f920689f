// Faults and bad input, each injected for real: SIGKILL at random moments and in the middle of a
// checkpoint write, a non-finite loss, damaged data and weight files, bad configs, an existing run
// directory, two runs at once. The real CLI runs in child processes; every failure must be a
// clear message and an exit code (never a signal, never a native crash), and no finished work may
// be lost or changed.
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test, type TestContext } from 'node:test';
import { gzipSync } from 'node:zlib';
import { loadDataset } from '../src/data/datasets.js';
import { loadSafetensors } from '../src/tensor/safetensors.js';
import { disposeCheckpoint, loadCheckpoint } from '../src/run/checkpoint.js';
import {
  changedFiles, cifar10Bytes, type CliResult, describe, idxBytes, joinSafetensors, lastTensor, metricsLines, runCli,
  seededRandom, sleep, snapshot, splitSafetensors, startCli, stopStragglers, tempFiles, TINY, waitFor, writeFakeIdx,
} from './helpers/faults.js';

const root = mkdtempSync(join(tmpdir(), 'masksub-faults-'));
after(() => {
  stopStragglers();
  rmSync(root, { recursive: true, force: true });
});

/** Kill times come from this seed (MASKSUB_FAULT_SEED overrides it; the seed is printed). */
const FAULT_SEED = Number(process.env.MASKSUB_FAULT_SEED ?? 20240611);
const random = seededRandom(FAULT_SEED);

const train = (seed: number, out: string, ...extra: string[]): string[] => ['train', ...TINY, '--seed', String(seed), '--out', out, ...extra];

/** Uninterrupted runs, one per seed and extra flags, made on first use and shared by the tests that compare with them. */
const aloneRuns = new Map<string, Promise<string>>();
function aloneRun(seed: number, ...extra: string[]): Promise<string> {
  const key = [seed, ...extra].join(' ');
  let run = aloneRuns.get(key);
  if (!run) {
    run = (async () => {
      const out = join(root, `alone-seed${seed}${extra.map((arg) => arg.replace(/^-+/, '-')).join('')}`);
      const result = await runCli(train(seed, out, ...extra));
      assert.equal(result.code, 0, describe(result));
      return out;
    })();
    aloneRuns.set(key, run);
  }
  return run;
}

/** A small valid Fashion-MNIST-shaped IDX directory (40 images per split). */
let fakeIdx: string | undefined;
function fakeIdxDir(): string {
  if (!fakeIdx) {
    fakeIdx = join(root, 'idx-good');
    writeFakeIdx(fakeIdx);
  }
  return fakeIdx;
}

function assertCleanExit(result: CliResult, code: number, message: RegExp, what: string): void {
  assert.equal(result.signal, null, `${what}: ended by a signal (native crash?)\n${describe(result)}`);
  assert.equal(result.code, code, `${what}: exit code\n${describe(result)}`);
  assert.match(result.stderr, message, `${what}: message\n${describe(result)}`);
  assert.doesNotMatch(result.stderr, /\n\s+at |Segmentation|Aborted|terminate called|c10::Error/, `${what}: no stack trace or native error\n${describe(result)}`);
}

function assertSameFile(a: string, b: string, what: string): void {
  assert.ok(readFileSync(a).equals(readFileSync(b)), `${what}: ${a} and ${b} differ`);
}

/**
 * A run directory after a kill: a loadable checkpoint (if any) that the metrics agree with; returns
 * its epoch. The metrics files are written (atomically) right after the checkpoint, so a kill in
 * the few milliseconds between the two renames leaves metrics.jsonl one epoch behind; `--resume`
 * rewrites them from the checkpoint, which is the record (resumeAndCompare checks the result).
 */
function checkKilledRun(out: string, options: { allowMetricsBehind?: boolean } = {}): number {
  const checkpoint = join(out, 'checkpoint.safetensors');
  if (!existsSync(checkpoint)) return 0;
  const parts = loadCheckpoint(checkpoint);
  try {
    const { epoch } = parts.state;
    const lines = metricsLines(out);
    const behind = options.allowMetricsBehind && lines.length === epoch - 1;
    if (!behind) assert.equal(lines.length, epoch, `metrics.jsonl has ${lines.length} lines, the checkpoint is at epoch ${epoch}`);
    assert.deepEqual(lines.map((line) => JSON.parse(line) as unknown), parts.state.history.slice(0, lines.length), 'metrics.jsonl rows are the checkpoint history');
    const weights = loadSafetensors(join(out, 'model.safetensors'));
    for (const tensor of weights.tensors.values()) tensor.dispose();
    assert.ok(Number(weights.metadata.epoch) >= epoch, 'model.safetensors is at least as new as the checkpoint');
    return epoch;
  } finally {
    disposeCheckpoint(parts);
  }
}

/** Resumes a run and checks it ends exactly like the uninterrupted run of the same seed (and extra flags). */
async function resumeAndCompare(t: TestContext, out: string, epoch: number, seed: number, extra: string[] = []): Promise<void> {
  // A kill can also land after done.json was written, while the process shuts down.
  const finished = existsSync(join(out, 'done.json'));
  const resumed = await runCli(['train', '--out', out, '--resume']);
  t.diagnostic(`resume: exit ${resumed.code} in ${(resumed.ms / 1000).toFixed(1)} s: ${resumed.stdout.split('\n')[0]}`);
  assert.equal(resumed.code, 0, describe(resumed));
  if (finished) assert.match(resumed.stdout, /already finished/);
  else if (epoch > 0) assert.match(resumed.stdout, new RegExp(`resumed .* after epoch ${epoch} \\(step ${epoch * 8}\\)`));
  assert.ok(existsSync(join(out, 'done.json')), 'the resumed run finished');
  const reference = await aloneRun(seed, ...extra);
  assertSameFile(join(out, 'model.safetensors'), join(reference, 'model.safetensors'), 'final weights after kill + resume');
  const rows = (dir: string): unknown[] => metricsLines(dir).map((line) => {
    const { test_acc1, test_loss, train_loss, probe_loss_masked } = JSON.parse(line) as Record<string, number>;
    return { test_acc1, test_loss, train_loss, probe_loss_masked };
  });
  assert.deepEqual(rows(out), rows(reference), 'metrics of the resumed run equal the uninterrupted run');
  assert.deepEqual(tempFiles(out), [], 'no temporary files remain after the resume');
}

/** Kills a training run at a random moment after its first checkpoint, then resumes and compares. */
async function killAtRandomThenResume(t: TestContext, name: string, seed: number, extra: string[] = []): Promise<void> {
  await aloneRun(seed, ...extra);
  const out = join(root, name);
  let maxDelay = 500;
  for (let attempt = 0; ; attempt++) {
    const delay = Math.floor(random() * maxDelay);
    const run = startCli(train(seed, out, ...extra, ...(attempt ? ['--overwrite'] : [])));
    await waitFor(() => existsSync(join(out, 'checkpoint.safetensors')), 'the first checkpoint', { stop: run.done });
    await sleep(delay);
    run.child.kill('SIGKILL');
    const killed = await run.done;
    if (killed.signal !== 'SIGKILL') {
      // The machine was faster than the window: the run finished before the kill. Try a shorter one.
      assert.equal(killed.code, 0, describe(killed));
      assert.ok(attempt < 3, 'the run always finished before the kill');
      maxDelay /= 2;
      continue;
    }
    const epoch = checkKilledRun(out, { allowMetricsBehind: true });
    const metricsBehind = metricsLines(out).length < epoch ? ' (killed between the checkpoint and metrics writes)' : '';
    const phase = existsSync(join(out, 'done.json')) ? 'after done.json (during shutdown)' : `checkpoint at epoch ${epoch}${metricsBehind}`;
    t.diagnostic(`seed ${FAULT_SEED}: killed ${delay} ms after the first checkpoint (attempt ${attempt + 1}): ${phase}, temporaries left: ${tempFiles(out).join(', ') || 'none'}`);
    assert.ok(epoch >= 1, 'the first checkpoint survived');
    await resumeAndCompare(t, out, epoch, seed, extra);
    return;
  }
}

test('SIGKILL at a random moment after the first checkpoint: the last checkpoint loads, --resume ends bit-identical', async (t) => {
  await killAtRandomThenResume(t, 'killed-random', 3);
});

// The sub-model branch draws masking noise from the RNG that the checkpoint carries: a resumed
// MaskSub run must continue the same noise sequence to end bit-identical.
test('MaskSub: SIGKILL at a random moment, --resume ends bit-identical to the uninterrupted MaskSub run', async (t) => {
  await killAtRandomThenResume(t, 'killed-random-masksub', 3, ['--method', 'masksub']);
});

test('SIGKILL in the middle of a checkpoint write: the previous checkpoint stays, the half-written file does not break --resume', async (t) => {
  const out = join(root, 'killed-mid-write');
  // The hook sleeps between writing .checkpoint.safetensors.PID.tmp and renaming it over the old one.
  const run = startCli(train(3, out), { MASKSUB_TEST_SLOW_CHECKPOINT_MS: '1500' });
  const checkpointTemporary = (): string[] => tempFiles(out).filter((name) => name.startsWith('.checkpoint.safetensors.'));
  await waitFor(() => existsSync(join(out, 'checkpoint.safetensors')), 'the first checkpoint', { stop: run.done });
  await waitFor(() => checkpointTemporary().length > 0, 'the second checkpoint write', { stop: run.done });
  run.child.kill('SIGKILL');
  const killed = await run.done;
  assert.equal(killed.signal, 'SIGKILL', describe(killed));
  const [leftover] = checkpointTemporary();
  assert.ok(leftover, 'the kill landed while the checkpoint was being written');
  assert.equal(checkKilledRun(out), 1, 'the epoch-1 checkpoint is intact');
  // Make the leftover what a kill inside write() leaves: a truncated file.
  const leftoverPath = join(out, leftover);
  truncateSync(leftoverPath, Math.floor(readFileSync(leftoverPath).length / 3));
  t.diagnostic(`killed with ${leftover} on disk; model.safetensors is at epoch ${loadSafetensors(join(out, 'model.safetensors')).metadata.epoch} (written before the checkpoint), checkpoint at epoch 1`);
  await resumeAndCompare(t, out, 1, 3);
});

test('a kill between the last checkpoint and its metrics: --resume restores metrics.jsonl and summary.csv from the checkpoint', async () => {
  const reference = await aloneRun(3);
  const out = join(root, 'killed-before-metrics');
  cpSync(reference, out, { recursive: true });
  // The state such a kill leaves: checkpoint at epoch 3, metrics of 2 epochs, no done.json.
  unlinkSync(join(out, 'done.json'));
  writeFileSync(join(out, 'metrics.jsonl'), metricsLines(reference).slice(0, 2).join('\n') + '\n');
  const csv = readFileSync(join(reference, 'summary.csv'), 'utf8').trim().split('\n');
  writeFileSync(join(out, 'summary.csv'), csv.slice(0, 3).join('\n') + '\n');
  const resumed = await runCli(['train', '--out', out, '--resume']);
  assert.equal(resumed.code, 0, describe(resumed));
  assert.match(resumed.stdout, /resumed \S+ after epoch 3 \(step 24\)/);
  for (const name of ['metrics.jsonl', 'summary.csv', 'model.safetensors', 'checkpoint.safetensors']) assertSameFile(join(out, name), join(reference, name), name);
  assert.ok(existsSync(join(out, 'done.json')));
});

test('a non-finite loss stops training with a clear message and keeps the last good checkpoint; --skip-non-finite skips and counts', async (t) => {
  const out = join(root, 'nan');
  const inject = { MASKSUB_INJECT_NAN_AT_STEP: '10' }; // 8 steps per epoch: epoch 2, its 3rd step
  const expected = /masksub: non-finite loss \(NaN\) at epoch 2, step 3 of 8 \(global step 11\); training stopped\. The last good checkpoint \(epoch 1\) in \S+ was kept; to continue, lower lr \(or set skip_non_finite: true to skip such steps\) in \S+config\.json and run train --out \S+ --resume/;
  const first = await runCli(train(3, out), inject);
  assertCleanExit(first, 1, expected, 'NaN at step 10');
  t.diagnostic(`NaN at step 10: exit ${first.code}: ${first.stderr.trim()}`);
  assert.equal(checkKilledRun(out), 1);
  assert.ok(!existsSync(join(out, 'done.json')));
  assert.deepEqual(tempFiles(out), []);

  // The same fault again, after resuming from that checkpoint: nothing in the run may change.
  const before = snapshot(out);
  const again = await runCli(['train', '--out', out, '--resume'], inject);
  assertCleanExit(again, 1, expected, 'NaN at step 10 after --resume');
  assert.deepEqual(changedFiles(before, snapshot(out)), [], 'a failed epoch overwrites nothing');

  // The fault left no trace: resuming without it ends exactly like a run that never saw it.
  await resumeAndCompare(t, out, 1, 3);

  const skipping = join(root, 'nan-skip');
  const skipped = await runCli(train(3, skipping, '--skip-non-finite'), inject);
  assert.equal(skipped.code, 0, describe(skipped));
  const rows = metricsLines(skipping).map((line) => JSON.parse(line) as Record<string, number>);
  assert.deepEqual(rows.map((row) => row.skipped_steps), [0, 1, 1], 'skipped_steps counts the one bad step');
  for (const row of rows) for (const [key, value] of Object.entries(row)) if (value !== null) assert.ok(Number.isFinite(value), `${key} = ${value} in epoch ${row.epoch}`);
  const { tensors } = loadSafetensors(join(skipping, 'model.safetensors'));
  for (const [name, tensor] of tensors) {
    assert.ok((tensor.toTypedArray() as Float32Array).every(Number.isFinite), `${name} is finite`);
    tensor.dispose();
  }
  t.diagnostic(`--skip-non-finite: exit 0, skipped_steps per epoch ${rows.map((row) => row.skipped_steps).join(', ')}, final top-1 ${rows[2].test_acc1}%`);

  // With BatchNorm the skipped step's forward pass already ran on the NaN batch: its running
  // statistics must not keep the NaN (that would silently ruin every later evaluation).
  const resnet = join(root, 'nan-skip-resnet');
  const bn = await runCli(['train', '--dataset', 'fashion-mnist', '--model', 'resnet_micro', '--limit-train', '256', '--limit-test', '128', '--batch-size', '64',
    '--probe-size', '32', '--epochs', '2', '--warmup-epochs', '0', '--threads', '1', '--seed', '3', '--skip-non-finite', '--out', resnet], { MASKSUB_INJECT_NAN_AT_STEP: '2' });
  assert.equal(bn.code, 0, describe(bn));
  const bnRows = metricsLines(resnet).map((line) => JSON.parse(line) as Record<string, number>);
  assert.deepEqual(bnRows.map((row) => row.skipped_steps), [1, 1]);
  for (const row of bnRows) assert.ok(Number.isFinite(row.test_loss) && Number.isFinite(row.probe_loss_standard), `epoch ${row.epoch}: test loss ${row.test_loss}, probe loss ${row.probe_loss_standard}`);
  const bnWeights = loadSafetensors(join(resnet, 'model.safetensors')).tensors;
  for (const [name, tensor] of bnWeights) {
    if (tensor.dtype === 'float32') assert.ok((tensor.toTypedArray() as Float32Array).every(Number.isFinite), `${name} is finite`);
    tensor.dispose();
  }
});

interface BadCase {
  name: string;
  args: string[];
  code: number;
  message: RegExp;
  /** A directory that must stay exactly as it was (the case's run directory). */
  unchanged?: string;
  /** A path that must not exist afterwards (the --out of a train that must not start). */
  absent?: string;
}

/** Runs the cases two at a time (the machine has 2 cores), then checks each. */
async function runCases(t: TestContext, cases: BadCase[]): Promise<void> {
  const before = new Map(cases.filter((item) => item.unchanged).map((item) => [item.name, snapshot(item.unchanged!)]));
  const results: CliResult[] = [];
  let next = 0;
  await Promise.all([0, 1].map(async () => {
    while (next < cases.length) {
      const index = next++;
      results[index] = await runCli(cases[index].args);
    }
  }));
  cases.forEach((item, index) => {
    const result = results[index];
    t.diagnostic(`${item.name}: exit ${result.code}, ${(result.ms / 1000).toFixed(1)} s: ${result.stderr.trim().slice(0, 400)}`);
    assertCleanExit(result, item.code, item.message, item.name);
    if (item.unchanged) assert.deepEqual(changedFiles(before.get(item.name)!, snapshot(item.unchanged)), [], `${item.name}: the run directory was changed`);
    if (item.absent) assert.ok(!existsSync(item.absent), `${item.name}: ${item.absent} was created`);
  });
}

test('bad data files: each a clear error naming the file and the problem, and no run directory is left behind', async (t) => {
  const good = fakeIdxDir();
  const control = loadDataset('fashion-mnist', { dataDir: good, split: 'train' });
  assert.equal(control.count, 40, 'the undamaged fake IDX directory loads');
  const variant = (name: string, change: (directory: string) => void): string => {
    const directory = join(root, `idx-${name}`);
    cpSync(good, directory, { recursive: true });
    change(directory);
    return directory;
  };
  const rawImages = readFileSync(join(good, 'train-images-idx3-ubyte'));
  const gzipped = (directory: string, bytes: Buffer): void => {
    unlinkSync(join(directory, 'train-images-idx3-ubyte'));
    writeFileSync(join(directory, 'train-images-idx3-ubyte.gz'), bytes);
  };
  const gz = gzipSync(rawImages);
  const truncatedGz = variant('gz-truncated', (directory) => gzipped(directory, gz.subarray(0, gz.length >> 1)));
  const corruptGz = variant('gz-corrupt', (directory) => {
    const bytes = Buffer.from(gz);
    for (let i = 20; i < 60; i++) bytes[i] ^= 0x5a;
    gzipped(directory, bytes);
  });
  const wrongMagic = variant('magic', (directory) => {
    const bytes = readFileSync(join(directory, 'train-labels-idx1-ubyte'));
    bytes.writeUInt32BE(0x00000803, 0);
    writeFileSync(join(directory, 'train-labels-idx1-ubyte'), bytes);
  });
  const countMismatch = variant('count', (directory) => writeFileSync(join(directory, 't10k-labels-idx1-ubyte'), idxBytes([39], new Uint8Array(39))));
  const missingFile = variant('missing', (directory) => unlinkSync(join(directory, 't10k-images-idx3-ubyte')));
  const cifar = join(root, 'cifar-short');
  mkdirSync(cifar);
  for (const name of ['data_batch_1.bin', 'data_batch_2.bin', 'data_batch_3.bin', 'data_batch_4.bin', 'data_batch_5.bin', 'test_batch.bin']) writeFileSync(join(cifar, name), cifar10Bytes(10));
  writeFileSync(join(cifar, 'data_batch_3.bin'), cifar10Bytes(10).subarray(0, 10 * 3073 - 100));

  const fmnist = (dataDir: string, out: string): string[] => ['train', '--dataset', 'fashion-mnist', '--model', 'vit_micro', '--epochs', '1', '--warmup-epochs', '0', '--threads', '1', '--data-dir', dataDir, '--out', out];
  const out = (name: string): string => join(root, `bad-data-run-${name}`);
  const cases: BadCase[] = [
    { name: 'missing dataset directory', args: fmnist('/nonexistent', out('nodir')), code: 1, absent: out('nodir'),
      message: /masksub: fashion-mnist: data directory \/nonexistent does not exist or is not a directory; pass --data-dir pointing to the four Fashion-MNIST IDX files/ },
    { name: 'missing IDX file', args: fmnist(missingFile, out('missing')), code: 1, absent: out('missing'),
      message: /fashion-mnist: \S+idx-missing: missing file t10k-images-idx3-ubyte \(looked for t10k-images-idx3-ubyte and t10k-images-idx3-ubyte\.gz\)/ },
    { name: 'truncated gzip', args: fmnist(truncatedGz, out('gzt')), code: 1, absent: out('gzt'),
      message: /fashion-mnist: \S+idx-gz-truncated\/train-images-idx3-ubyte\.gz: truncated gzip data \(unexpected end of file\); the file is incomplete/ },
    { name: 'corrupt gzip', args: fmnist(corruptGz, out('gzc')), code: 1, absent: out('gzc'),
      message: /fashion-mnist: \S+idx-gz-corrupt\/train-images-idx3-ubyte\.gz: corrupt gzip data \(/ },
    { name: 'wrong IDX magic number', args: fmnist(wrongMagic, out('magic')), code: 1, absent: out('magic'),
      message: /fashion-mnist: \S+idx-magic\/train-labels-idx1-ubyte: wrong IDX magic number 0x00000803, expected 0x00000801 for labels/ },
    { name: 'image/label count mismatch', args: fmnist(countMismatch, out('count')), code: 1, absent: out('count'),
      message: /fashion-mnist: \S+idx-count\/t10k-labels-idx1-ubyte: 39 labels but \S+t10k-images-idx3-ubyte has 40 images; the counts must match/ },
    { name: 'CIFAR file of the wrong size', code: 1, absent: out('cifar'),
      args: ['train', '--dataset', 'cifar10', '--model', 'resnet_micro', '--epochs', '1', '--warmup-epochs', '0', '--threads', '1', '--data-dir', cifar, '--out', out('cifar')],
      message: /cifar10: \S+cifar-short\/data_batch_3\.bin: file size 30630 is not a multiple of the 3073-byte record \(9 whole records and 2973 extra bytes\); the file is truncated or not a CIFAR binary file/ },
  ];
  await runCases(t, cases);

  // A corrected command then starts: the failed one left no run directory to refuse it.
  const corrected = await runCli(['train', '--dataset', 'fashion-mnist', '--model', 'vit_micro', '--epochs', '1', '--warmup-epochs', '0', '--batch-size', '16', '--probe-size', '8', '--threads', '1', '--data-dir', good, '--out', out('nodir')]);
  assert.equal(corrected.code, 0, describe(corrected));
});

test('damaged weights, checkpoints and run configs: clear errors naming the file, and the run directory is left as it was', async (t) => {
  const reference = await aloneRun(3);
  const ok = await runCli(['eval', '--checkpoint', reference]);
  assert.equal(ok.code, 0, describe(ok));
  const lastRow = JSON.parse(metricsLines(reference).at(-1)!) as { test_acc1: number };
  assert.equal((JSON.parse(ok.stdout) as { test_acc1: number }).test_acc1, lastRow.test_acc1, 'eval of the undamaged run reproduces its last test accuracy');

  const copy = (name: string, change: (directory: string) => void, unfinished = false): string => {
    const directory = join(root, `damaged-${name}`);
    cpSync(reference, directory, { recursive: true });
    if (unfinished) unlinkSync(join(directory, 'done.json'));
    change(directory);
    return directory;
  };
  const model = readFileSync(join(reference, 'model.safetensors'));
  const checkpoint = readFileSync(join(reference, 'checkpoint.safetensors'));
  const { header, data } = splitSafetensors(model);
  const withModel = (name: string, bytes: Buffer): string => copy(name, (directory) => writeFileSync(join(directory, 'model.safetensors'), bytes));
  const withCheckpoint = (name: string, bytes: Buffer): string => copy(name, (directory) => writeFileSync(join(directory, 'checkpoint.safetensors'), bytes), true);
  const withConfig = (name: string, change: (config: Record<string, unknown>) => void, unfinished = false): string => copy(name, (directory) => {
    const config = JSON.parse(readFileSync(join(directory, 'config.json'), 'utf8')) as Record<string, unknown>;
    change(config);
    writeFileSync(join(directory, 'config.json'), JSON.stringify(config, null, 2));
  }, unfinished);

  const headerPastEnd = Buffer.from(model);
  headerPastEnd.writeBigUInt64LE(BigInt(model.length), 0);
  const headerText = model.subarray(8, 8 + Number(model.readBigUInt64LE(0))).toString('utf8');
  const badJson = Buffer.concat([model.subarray(0, 8), Buffer.from(headerText.replace('{"__metadata__":', '{"__metadata__" ')), data]);
  const outOfRange = structuredClone(header);
  const last = lastTensor(outOfRange);
  last.entry.data_offsets = [last.entry.data_offsets[0], data.length + 4];
  const unknownDtype = structuredClone(header);
  lastTensor(unknownDtype).entry.dtype = 'F17';
  const stateText = splitSafetensors(checkpoint);
  (stateText.header.__metadata__ as Record<string, string>).masksub_state = '{"version":1,"epoch":';

  const weights = (name: string): RegExp => new RegExp(`masksub: safetensors: \\S+damaged-${name}/model\\.safetensors: `);
  const checkpointFile = (name: string): RegExp => new RegExp(`\\S+damaged-${name}/checkpoint\\.safetensors: `);
  const cases: BadCase[] = [];
  const evalCase = (name: string, directory: string, message: RegExp): void => { cases.push({ name: `eval: ${name}`, args: ['eval', '--checkpoint', directory], code: 1, message, unchanged: directory }); };
  const resumeCase = (name: string, directory: string, message: RegExp): void => { cases.push({ name: `resume: ${name}`, args: ['train', '--out', directory, '--resume'], code: 1, message, unchanged: directory }); };

  evalCase('header size past the end', withModel('header-size', headerPastEnd),
    new RegExp(weights('header-size').source + `header size ${model.length} goes past the end of the file \\(${model.length} bytes, at most ${model.length - 8} available for the header\\)`));
  evalCase('truncated file', withModel('truncated', model.subarray(0, model.length >> 1)), new RegExp(weights('truncated').source + "tensor '[^']+': data_offsets \\[\\d+, \\d+\\] go past the end of the \\d+-byte data buffer"));
  evalCase('header not JSON', withModel('json', badJson), new RegExp(weights('json').source + 'header is not valid JSON \\('));
  evalCase('offsets out of range', withModel('offsets', joinSafetensors(outOfRange, data)),
    new RegExp(weights('offsets').source + `tensor '${last.name}': data_offsets \\[\\d+, ${data.length + 4}\\] go past the end of the ${data.length}-byte data buffer`));
  evalCase('unknown dtype', withModel('dtype', joinSafetensors(unknownDtype, data)), new RegExp(weights('dtype').source + `tensor '${lastTensor(header).name}': unknown dtype "F17"; expected one of F64, F32`));
  evalCase('weights of a different model (config.json edited)', withConfig('other-model', (config) => { config.model = 'vit_tiny_patch4_28'; }),
    /masksub: \S+damaged-other-model\/model\.safetensors does not fit model vit_tiny_patch4_28: loadStateDict: missing keys: blocks\.2\.norm1\.weight.*cls_token: shape \[1, 1, 64\] in the state dict, \[1, 1, 96\] in the model/);
  evalCase('config.json not JSON', copy('config-json', (directory) => writeFileSync(join(directory, 'config.json'), '{"model": ')),
    /masksub: \S+damaged-config-json\/config\.json: cannot read the run's config: /);
  resumeCase('truncated checkpoint', withCheckpoint('ckpt-truncated', checkpoint.subarray(0, checkpoint.length - 1000)),
    new RegExp('masksub: safetensors: ' + checkpointFile('ckpt-truncated').source + "tensor '[^']+': data_offsets \\[\\d+, \\d+\\] go past the end of the \\d+-byte data buffer"));
  resumeCase('plain weights file as checkpoint', withCheckpoint('ckpt-weights', model),
    new RegExp('masksub: checkpoint ' + checkpointFile('ckpt-weights').source + "no 'masksub_state' metadata: not a masksub checkpoint"));
  resumeCase('training state not JSON', withCheckpoint('ckpt-state', joinSafetensors(stateText.header, stateText.data)),
    new RegExp('masksub: checkpoint ' + checkpointFile('ckpt-state').source + 'its training state metadata is not valid JSON'));
  resumeCase('checkpoint of a different model', withConfig('ckpt-other-model', (config) => { config.model = 'vit_tiny_patch4_28'; }, true),
    /masksub: cannot resume from \S+damaged-ckpt-other-model\/checkpoint\.safetensors: loadStateDict: missing keys: blocks\.2\.norm1\.weight/);
  await runCases(t, cases);
});

test('bad configuration: unknown keys and out-of-range values are named (exit 2) before anything is written', async (t) => {
  const file = (name: string, text: string): string => {
    const path = join(root, name);
    writeFileSync(path, text);
    return path;
  };
  const out = (name: string): string => join(root, `bad-config-run-${name}`);
  const base = (name: string, ...extra: string[]): string[] => ['train', '--dataset', 'fashion-mnist', '--model', 'vit_micro', '--epochs', '1', '--warmup-epochs', '0', '--out', out(name), ...extra];
  const unknownKeyFile = file('unknown-key.yaml', 'lr: 0.001\nlearning-rate: 0.1\n');
  const cases: BadCase[] = [
    { name: 'YAML with an unknown key', args: base('yaml-key', '--config', unknownKeyFile), code: 2, absent: out('yaml-key'),
      message: new RegExp(`masksub: config file ${unknownKeyFile}: unknown setting 'learning-rate'; did you mean 'lr'\\?`) },
    { name: 'YAML with a negative lr', args: base('yaml-lr', '--config', file('negative-lr.yaml', 'lr: -0.001\n')), code: 2, absent: out('yaml-lr'),
      message: /masksub: config file \S+negative-lr\.yaml: lr must be a number > 0, got -0\.001/ },
    { name: 'YAML with ratio 1', args: base('yaml-ratio', '--config', file('ratio.yaml', 'method: masksub\nratio: 1\n')), code: 2, absent: out('yaml-ratio'),
      message: /masksub: config file \S+ratio\.yaml: ratio must be a number in \[0, 1\), or null, got 1/ },
    { name: 'YAML with batch size 0', args: base('yaml-batch', '--config', file('batch.yaml', 'batch_size: 0\n')), code: 2, absent: out('yaml-batch'),
      message: /masksub: config file \S+batch\.yaml: batch_size must be an integer ≥ 1, got 0/ },
    { name: 'flag: unknown option', args: base('unknown', '--learning-rate', '0.1'), code: 2, absent: out('unknown'), message: /masksub: unknown option --learning-rate; did you mean --lr\? \(see masksub train --help\)/ },
    // Warmup as long as the whole run leaves nothing for the cosine: refused before any work.
    { name: 'warmup as long as the run', args: ['train', '--dataset', 'fashion-mnist', '--model', 'vit_micro', '--epochs', '1', '--warmup-epochs', '1', '--out', out('warmup')], code: 2, absent: out('warmup'),
      message: /masksub: warmup-epochs 1 leaves no epoch after the warmup \(epochs 1\); use fewer warmup-epochs \(0 is fine\) or more epochs/ },
  ];
  await runCases(t, cases);
});

test('an existing run directory is never silently overwritten; --overwrite replaces it', async (t) => {
  const reference = await aloneRun(3);
  const fresh4 = await aloneRun(4);
  const out = join(root, 'existing');
  cpSync(reference, out, { recursive: true });
  const unfinished = join(root, 'existing-unfinished');
  cpSync(reference, unfinished, { recursive: true });
  unlinkSync(join(unfinished, 'done.json'));
  const other = join(root, 'existing-other-files');
  mkdirSync(other);
  writeFileSync(join(other, 'notes.txt'), 'mine\n');
  // A directory that holds only what a killed writer left (.config.json.PID.tmp of a dead process)
  // counts as empty: the command gets as far as reading the (missing) data.
  const leftover = join(root, 'existing-leftover');
  mkdirSync(leftover);
  const dead = await runCli(['models']);
  writeFileSync(join(leftover, `.config.json.${dead.pid}.tmp`), '{"mod');
  await runCases(t, [
    { name: 'train on a finished run', args: train(3, out), code: 1, unchanged: out,
      message: /masksub: \S+existing already holds a finished run; pass --resume to continue it or --overwrite to replace it/ },
    { name: 'train on an unfinished run', args: train(4, unfinished), code: 1, unchanged: unfinished,
      message: /masksub: \S+existing-unfinished already holds an unfinished run; pass --resume to continue it or --overwrite to replace it/ },
    { name: 'train into a directory of other files', args: train(4, other), code: 1, unchanged: other,
      message: /masksub: \S+existing-other-files already holds files; pass --resume to continue it or --overwrite to replace it/ },
    { name: '--resume of a directory without a run', args: ['train', '--out', other, '--resume'], code: 1, unchanged: other,
      message: /masksub: --resume: \S+existing-other-files holds no run to resume \(no config\.json\)/ },
    { name: 'train into a directory holding only a dead writer\'s temporary file', args: train(4, leftover, '--data-dir', join(root, 'nowhere')), code: 1, unchanged: leftover,
      message: /masksub: fashion-mnist: data directory \S+nowhere does not exist/ },
    { name: '--overwrite with a missing data directory', args: train(4, out, '--overwrite', '--data-dir', join(root, 'nowhere')), code: 1, unchanged: out,
      message: /masksub: fashion-mnist: data directory \S+nowhere does not exist/ },
  ]);
  const replaced = await runCli(train(4, out, '--overwrite'));
  assert.equal(replaced.code, 0, describe(replaced));
  assertSameFile(join(out, 'model.safetensors'), join(fresh4, 'model.safetensors'), '--overwrite with seed 4 equals a fresh seed-4 run');
  assertSameFile(join(out, 'best.safetensors'), join(fresh4, 'best.safetensors'), '--overwrite with seed 4 equals a fresh seed-4 run');
  const accuracies = (dir: string): number[] => metricsLines(dir).map((line) => (JSON.parse(line) as { test_acc1: number }).test_acc1);
  assert.deepEqual(accuracies(out), accuracies(fresh4));
  assert.equal((JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as { seed: number }).seed, 4);
  assert.deepEqual(readFileSync(join(other, 'notes.txt'), 'utf8'), 'mine\n');
});

test('two runs training at the same time into different directories do not interfere', async (t) => {
  const [alone3, alone4] = await Promise.all([aloneRun(3), aloneRun(4)]);
  const a = join(root, 'together-a');
  const b = join(root, 'together-b');
  const [first, second] = await Promise.all([runCli(train(3, a)), runCli(train(4, b))]);
  t.diagnostic(`concurrent runs: ${(first.ms / 1000).toFixed(1)} s and ${(second.ms / 1000).toFixed(1)} s`);
  assert.equal(first.code, 0, describe(first));
  assert.equal(second.code, 0, describe(second));
  for (const name of ['model.safetensors', 'best.safetensors']) {
    assertSameFile(join(a, name), join(alone3, name), `concurrent run A (${name})`);
    assertSameFile(join(b, name), join(alone4, name), `concurrent run B (${name})`);
  }
  assert.deepEqual(tempFiles(a), []);
  assert.deepEqual(tempFiles(b), []);
});
