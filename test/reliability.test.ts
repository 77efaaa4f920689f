// Reliability (issue 16): a full disk never truncates a checkpoint, one run directory has one
// writer, SIGINT stops at a safe point and the run resumes bit-identically, and empty data, damaged
// checkpoints, a missing GPU, a read-only directory and a cut metrics line are clear errors that
// change nothing the user had. The real CLI runs in child processes (test/helpers/faults.ts).
// The tmpfs cases need root (mount); CI runs as root, so there a failed mount fails the test.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test, type TestContext } from 'node:test';
import { FileWriteError, writeFileAtomic } from '../src/io/atomic.js';
import { disposeCheckpoint, loadCheckpoint } from '../src/run/checkpoint.js';
import { loadSafetensors, saveSafetensors } from '../src/tensor/safetensors.js';
import type { Tensor } from '../src/tensor/tensor.js';
import {
  changedFiles, cifar10Bytes, type CliResult, describe, idxBytes, runCli, snapshot, startCli, stopStragglers, tempFiles, TINY, waitFor, writeFakeIdx,
} from './helpers/faults.js';
import { skipWithout } from './helpers/skip.js';

const root = mkdtempSync(join(tmpdir(), 'masksub-reliability-'));
const mounts: string[] = [];
after(() => {
  stopStragglers();
  for (const mount of mounts.reverse()) spawnSync('umount', ['-l', mount]);
  rmSync(root, { recursive: true, force: true });
});

const train = (out: string, ...extra: string[]): string[] => ['train', ...TINY, '--out', out, ...extra];

function assertCleanError(result: CliResult, message: RegExp, what: string, code = 1): void {
  assert.equal(result.signal, null, `${what}: ended by a signal\n${describe(result)}`);
  assert.equal(result.code, code, `${what}: exit code\n${describe(result)}`);
  assert.match(result.stderr, message, `${what}: message\n${describe(result)}`);
  assert.doesNotMatch(result.stderr, /\n\s+at |Segmentation|Aborted|terminate called/, `${what}: no stack trace\n${describe(result)}`);
}

/** Mounts a tmpfs of `size` at a new directory, or skips the test (fails it under CI) without root. */
function tmpfs(t: TestContext, name: string, size: string): string | null {
  const directory = join(root, name);
  mkdirSync(directory, { recursive: true });
  const result = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', directory], { encoding: 'utf8' });
  if (result.status !== 0) {
    // CI runs as root and must run this case: skipWithout fails it there.
    skipWithout(t, `cannot mount a tmpfs (needs root): ${(result.stderr || result.error?.message || '').trim()}`);
    return null;
  }
  mounts.push(directory);
  return directory;
}

/** One finished tiny run, made once and copied by the cases that need a run to damage. */
let finishedRun: Promise<string> | undefined;
function finished(): Promise<string> {
  finishedRun ??= (async () => {
    const out = join(root, 'finished');
    const result = await runCli(train(out, '--seed', '1'));
    assert.equal(result.code, 0, describe(result));
    return out;
  })();
  return finishedRun;
}

test('writeFileAtomic: short writes are completed, a write that makes no progress is "disk full" and leaves the old file', () => {
  const path = join(root, 'atomic.bin');
  writeFileSync(path, 'old contents');
  const data = Buffer.from('x'.repeat(10_000));
  // A writer that takes at most 777 bytes a call: the whole file still arrives.
  writeFileAtomic(path, data, { write: (fd, buffer, offset, length) => writeSync(fd, buffer, offset, Math.min(length, 777)) });
  assert.ok(readFileSync(path).equals(data));
  assert.deepEqual(tempFiles(root), []);
  // A full disk: 4096 bytes go through, then every write returns 0.
  let budget = 4096;
  const full = (fd: number, buffer: Uint8Array, offset: number, length: number): number => {
    const count = Math.min(length, budget);
    budget -= count;
    return count === 0 ? 0 : writeSync(fd, buffer, offset, count);
  };
  assert.throws(() => writeFileAtomic(path, Buffer.from('y'.repeat(10_000)), { write: full }), (error: unknown) => {
    assert.ok(error instanceof FileWriteError);
    assert.match(error.message, new RegExp(`cannot write ${path.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: disk full`));
    return true;
  });
  assert.ok(readFileSync(path).equals(data), 'the previous file is unchanged');
  assert.deepEqual(tempFiles(root), [], 'the temporary file is removed');
  // ENOSPC thrown by the write itself (what Node does when nothing could be written).
  const throwing = (): number => { throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }); };
  assert.throws(() => writeFileAtomic(path, 'z', { write: throwing }), /disk full/);
  assert.ok(readFileSync(path).equals(data));
});

test('a full disk (2.3 MB tmpfs) stops training with "disk full"; every file left is whole and the last checkpoint resumes', async (t) => {
  const disk = tmpfs(t, 'small-disk', '2300k');
  if (!disk) return;
  const out = join(disk, 'run');
  const result = await runCli(train(out, '--epochs', '4'));
  assertCleanError(result, /disk full/, 'training on a full disk');
  assert.ok(!existsSync(join(out, 'done.json')), 'a run that could not write its files is not finished');
  assert.deepEqual(tempFiles(out), [], 'no temporary file is left');
  for (const name of readdirSync(out).filter((entry) => entry.endsWith('.safetensors'))) {
    const { tensors } = loadSafetensors(join(out, name)); // a cut file would not load
    for (const tensor of tensors.values()) tensor.dispose();
  }
  const parts = loadCheckpoint(join(out, 'checkpoint.safetensors'));
  const epoch = parts.state.epoch;
  disposeCheckpoint(parts);
  assert.ok(epoch >= 1, 'at least the first epoch was saved');
  const lines = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n');
  assert.equal(lines.length, epoch, 'metrics agree with the checkpoint');
  // With room again, the run continues from its last checkpoint and finishes.
  const roomy = join(root, 'roomy-run');
  cpSync(out, roomy, { recursive: true });
  const resumed = await runCli(['train', '--out', roomy, '--resume']);
  assert.equal(resumed.code, 0, describe(resumed));
  assert.match(resumed.stdout, new RegExp(`resumed \\S+ after epoch ${epoch}`));
  assert.ok(existsSync(join(roomy, 'done.json')));
});

test('one writer per run directory: a second train (even with --overwrite) or compare is refused while the first runs; a dead holder\'s lock is taken over', async () => {
  const out = join(root, 'locked');
  // 6 epochs with a 3 s pause in each checkpoint write: the first run holds the lock for 20+ s.
  const first = startCli(train(out, '--epochs', '6'), { MASKSUB_TEST_SLOW_CHECKPOINT_MS: '3000' });
  await waitFor(() => existsSync(join(out, 'run.lock')), 'the first run to take its lock', { stop: first.done });
  const holder = JSON.parse(readFileSync(join(out, 'run.lock'), 'utf8')) as { pid: number };
  assert.equal(holder.pid, first.child.pid);
  await waitFor(() => existsSync(join(out, 'config.json')), 'the first run to write its config', { stop: first.done });
  const [second, resume] = await Promise.all([runCli(train(out, '--overwrite')), runCli(['train', '--out', out, '--resume'])]);
  assertCleanError(second, new RegExp(`is in use by process ${first.child.pid} on \\S+ \\(train --out`), 'a second train into the same directory');
  assertCleanError(resume, /is in use by process/, 'a resume of a run that is training');
  const done = await first.done;
  assert.equal(done.code, 0, describe(done));
  assert.ok(existsSync(join(out, 'done.json')));
  assert.ok(!existsSync(join(out, 'run.lock')), 'the lock is released at the end');

  // A lock left by a process that is gone (SIGKILL) does not block: a pid that no longer runs.
  const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  const stale = join(root, 'stale-lock');
  cpSync(out, stale, { recursive: true });
  rmSync(join(stale, 'done.json'));
  writeFileSync(join(stale, 'run.lock'), JSON.stringify({ pid: Number(gone.stdout), host: hostname(), startTime: 1, started: 'then', purpose: 'train' }));
  const taken = await runCli(['train', '--out', stale, '--resume']);
  assert.equal(taken.code, 0, describe(taken));
  assert.ok(!existsSync(join(stale, 'run.lock')));

  // compare: one process per comparison directory.
  const comparison = join(root, 'compare-locked');
  const compareArgs = ['compare', ...TINY, '--methods', 'baseline', '--seeds', '0', '--out', comparison];
  const running = startCli(compareArgs, { MASKSUB_TEST_SLOW_CHECKPOINT_MS: '1500' });
  await waitFor(() => existsSync(join(comparison, 'compare.lock')), 'compare to take its lock', { stop: running.done });
  const twice = await runCli(compareArgs);
  assertCleanError(twice, /compare-locked is in use by process \d+ .*compare --out/, 'a second compare into the same directory');
  assert.equal((await running.done).code, 0);
});

test('SIGINT stops at a safe point, says how to resume, and the resumed run equals an uninterrupted one', async () => {
  const reference = join(root, 'sigint-reference');
  const alone = await runCli(train(reference, '--seed', '5', '--epochs', '5'));
  assert.equal(alone.code, 0, describe(alone));
  const out = join(root, 'sigint');
  const running = startCli(train(out, '--seed', '5', '--epochs', '5'));
  await waitFor(() => existsSync(join(out, 'checkpoint.safetensors')), 'the first checkpoint', { stop: running.done });
  running.child.kill('SIGINT');
  const stopped = await running.done;
  assert.equal(stopped.signal, null, describe(stopped));
  if (stopped.code === 0) return; // the run finished before the signal arrived: nothing to check
  assert.equal(stopped.code, 130, describe(stopped));
  assert.match(stopped.stdout, new RegExp(`continue with: masksub train --out ${out.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} --resume`));
  assert.ok(!existsSync(join(out, 'run.lock')), 'the lock is released');
  const resumed = await runCli(['train', '--out', out, '--resume']);
  assert.equal(resumed.code, 0, describe(resumed));
  // The weights and every tensor of the training state are bit-identical (the checkpoint's JSON
  // metadata holds wall times, which differ).
  assert.ok(readFileSync(join(out, 'model.safetensors')).equals(readFileSync(join(reference, 'model.safetensors'))), 'model.safetensors equals the uninterrupted run\'s');
  const [mine, theirs] = [loadCheckpoint(join(out, 'checkpoint.safetensors')), loadCheckpoint(join(reference, 'checkpoint.safetensors'))];
  for (const [name, tensor] of [...mine.model, ...mine.optimizer.tensors]) {
    const other = mine.model.has(name) ? theirs.model.get(name) : theirs.optimizer.tensors.get(name);
    assert.ok(other && Buffer.from(tensor.toBytes()).equals(Buffer.from(other.toBytes())), `checkpoint tensor ${name} equals the uninterrupted run's`);
  }
  disposeCheckpoint(mine);
  disposeCheckpoint(theirs);
});

test('empty data: a 0-image training or test split and a 0-byte CIFAR file are errors naming the file; nothing is created', async (t) => {
  const emptyTrain = join(root, 'idx-empty-train');
  writeFakeIdx(emptyTrain);
  writeFileSync(join(emptyTrain, 'train-images-idx3-ubyte'), idxBytes([0, 28, 28], new Uint8Array(0)));
  writeFileSync(join(emptyTrain, 'train-labels-idx1-ubyte'), idxBytes([0], new Uint8Array(0)));
  const emptyTest = join(root, 'idx-empty-test');
  writeFakeIdx(emptyTest);
  writeFileSync(join(emptyTest, 't10k-images-idx3-ubyte'), idxBytes([0, 28, 28], new Uint8Array(0)));
  writeFileSync(join(emptyTest, 't10k-labels-idx1-ubyte'), idxBytes([0], new Uint8Array(0)));
  const cifar = join(root, 'cifar-empty');
  mkdirSync(cifar);
  for (const name of ['data_batch_1.bin', 'data_batch_2.bin', 'data_batch_3.bin', 'data_batch_4.bin', 'data_batch_5.bin', 'test_batch.bin']) writeFileSync(join(cifar, name), cifar10Bytes(10));
  writeFileSync(join(cifar, 'data_batch_2.bin'), '');
  const fmnist = (dataDir: string, out: string): string[] => ['train', '--dataset', 'fashion-mnist', '--model', 'vit_micro', '--epochs', '1', '--warmup-epochs', '0', '--batch-size', '16', '--threads', '1', '--data-dir', dataDir, '--out', out];
  const cases: { name: string; args: string[]; out: string; message: RegExp }[] = [
    { name: '0 training images', args: fmnist(emptyTrain, join(root, 'out-empty-train')), out: join(root, 'out-empty-train'), message: /idx-empty-train\/train-images-idx3-ubyte: the file holds no images/ },
    { name: '0 test images', args: fmnist(emptyTest, join(root, 'out-empty-test')), out: join(root, 'out-empty-test'), message: /idx-empty-test\/t10k-images-idx3-ubyte: the file holds no images/ },
    { name: '0-byte CIFAR file', out: join(root, 'out-empty-cifar'), message: /cifar10: \S+cifar-empty\/data_batch_2\.bin: file is empty/,
      args: ['train', '--dataset', 'cifar10', '--model', 'resnet_micro', '--epochs', '1', '--warmup-epochs', '0', '--threads', '1', '--data-dir', cifar, '--out', join(root, 'out-empty-cifar')] },
  ];
  for (const item of cases) {
    const result = await runCli(item.args);
    t.diagnostic(`${item.name}: ${result.stderr.trim()}`);
    assertCleanError(result, item.message, item.name);
    assert.ok(!existsSync(item.out), `${item.name}: no run directory is left`);
  }
});

test('damaged checkpoints are refused before anything is written: missing optimizer tensors, an epoch past the history, a non-numeric best accuracy', async () => {
  const source = await finished();
  const good = readFileSync(join(source, 'checkpoint.safetensors'));
  /** An unfinished copy of the finished run whose checkpoint `edit` changes. */
  const damaged = (name: string, edit: (tensors: Map<string, Tensor>, state: Record<string, unknown>) => void): string => {
    const directory = join(root, `damaged-${name}`);
    cpSync(source, directory, { recursive: true });
    rmSync(join(directory, 'done.json'));
    const path = join(directory, 'checkpoint.safetensors');
    writeFileSync(path, good);
    const { tensors, metadata } = loadSafetensors(path);
    const state = JSON.parse(metadata.masksub_state) as Record<string, unknown>;
    edit(tensors, state);
    saveSafetensors(path, tensors, { ...metadata, masksub_state: JSON.stringify(state) });
    for (const tensor of tensors.values()) tensor.dispose();
    return directory;
  };
  const cases = [
    { name: 'missing optimizer moments', message: /cannot resume from \S+checkpoint\.safetensors: loadStateDict: missing 0\.exp_avg/,
      directory: damaged('optimizer', (tensors) => { for (const key of [...tensors.keys()]) if (key.startsWith('optimizer.0.')) { tensors.get(key)!.dispose(); tensors.delete(key); } }) },
    { name: 'epoch past the history', message: /checkpoint \S+: damaged training state: history holds 3 epoch\(s\) but the state says 7 finished/,
      directory: damaged('epoch', (_tensors, state) => { state.epoch = 7; }) },
    { name: 'non-numeric bestAcc1', message: /checkpoint \S+: damaged training state: bestAcc1 "x" is not an accuracy/,
      directory: damaged('best', (_tensors, state) => { state.bestAcc1 = 'x'; }) },
  ];
  for (const item of cases) {
    const before = snapshot(item.directory);
    const result = await runCli(['train', '--out', item.directory, '--resume']);
    assertCleanError(result, item.message, item.name);
    assert.deepEqual(changedFiles(before, snapshot(item.directory)), [], `${item.name}: the run directory is unchanged`);
  }
});

test('settings that cannot work are refused before the directory is touched: accumulation past an epoch, a missing GPU (also with --overwrite)', async () => {
  const accumulation = join(root, 'accumulation');
  const result = await runCli(['train', ...TINY, '--limit-train', '128', '--batch-size', '32', '--accumulation', '8', '--out', accumulation]);
  assertCleanError(result, /accumulation 8 needs that many batches per optimizer step, but an epoch has only 4/, 'accumulation larger than an epoch');
  assert.ok(!existsSync(accumulation));

  const source = await finished();
  const kept = join(root, 'kept-finished');
  cpSync(source, kept, { recursive: true });
  const before = snapshot(kept);
  const gpu = await runCli(train(kept, '--overwrite', '--device', 'cuda'));
  assertCleanError(gpu, /device cuda: this build of masksub has no CUDA/, '--device cuda on a CPU machine');
  assert.deepEqual(changedFiles(before, snapshot(kept)), [], 'the finished run --overwrite would have replaced is intact');
  const fresh = join(root, 'fresh-gpu');
  assertCleanError(await runCli(train(fresh, '--device', 'cuda')), /no CUDA/, '--device cuda, fresh directory');
  assert.ok(!existsSync(fresh), 'no config.json-only directory blocks the corrected command');
});

test('a read-only output directory is an error before any epoch is trained (fresh and resume)', async (t) => {
  const disk = tmpfs(t, 'read-only', '8m');
  if (!disk) return;
  const source = await finished();
  const run = join(disk, 'run');
  cpSync(source, run, { recursive: true });
  rmSync(join(run, 'done.json'));
  execFileSync('mount', ['-o', 'remount,ro', disk]);
  const fresh = await runCli(train(join(disk, 'new')));
  assertCleanError(fresh, /cannot create run directory \S+\/new: read-only file system/, 'a fresh run on a read-only mount');
  const resumed = await runCli(['train', '--out', run, '--resume']);
  assertCleanError(resumed, /cannot write in \S+\/run: it is on a read-only file system/, 'a resume on a read-only mount');
  assert.doesNotMatch(resumed.stdout, /epoch \d+\/\d+/, 'no epoch was trained first');
});

test('a cut line in a finished run\'s metrics.jsonl is an error naming the file and line', async () => {
  const source = await finished();
  const directory = join(root, 'cut-metrics');
  cpSync(source, directory, { recursive: true });
  const lines = readFileSync(join(directory, 'metrics.jsonl'), 'utf8').trim().split('\n');
  writeFileSync(join(directory, 'metrics.jsonl'), `${lines[0]}\n${lines[1].slice(0, 40)}\n${lines[2]}\n`);
  const result = await runCli(['train', '--out', directory, '--resume']);
  assertCleanError(result, /cut-metrics\/metrics\.jsonl:2: malformed metrics line/, 'cut metrics line');
});
