// Data-parallel training through c10d's Gloo process group (src/distributed), run for real in
// child processes on this machine:
// - the collectives of two ranks against hand-computed values (mixed dtypes, a non-contiguous
//   view, several buckets), and no tensor left behind;
// - `train --nproc 2` with batch B against one process with batch B, for the baseline and for
//   MaskSub (masks and drop-path drawn for the global batch): the same weights and metrics after
//   two epochs, up to float summation order (tolerances below, with what was measured);
// - SyncBatchNorm: two ranks with half a batch each against one process with the whole batch
//   (outputs, input / weight / bias gradients, running statistics, evaluation), and a MaskSub
//   ResNet run with `--nproc 2 --sync-bn` against one process;
// - a rank killed mid-run under torchrun's environment: the survivor exits with an error naming
//   itself within seconds, the checkpoint is the last good one and a one-process --resume finishes;
// - the launcher: a non-finite step on one rank stops every rank with the training error; a killed
//   worker stops the others and names its rank; a killed launcher takes its workers with it.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { type Batch, BatchLoader } from '../src/data/loader.js';
import { loadDataset } from '../src/data/datasets.js';
import { deviceBatch } from '../src/train/device-batch.js';
import { freePort, worldFromEnvironment, WorldError } from '../src/distributed/index.js';
import { DropPath, sampleNoise, withBatchShard } from '../src/nn/index.js';
import { Generator, ones, type Tensor, tidy } from '../src/tensor/tensor.js';
import { disposeCheckpoint, loadCheckpoint } from '../src/run/checkpoint.js';
import { loadSafetensors } from '../src/tensor/safetensors.js';
import { describe, metricsLines, REPO, runCli, sleep, startCli, stopStragglers, waitFor, weightDifference } from './helpers/faults.js';
import { SYNC_BN, syncBnCase, type SyncBnResult } from './helpers/sync-bn-child.js';

const root = mkdtempSync(join(tmpdir(), 'masksub-distributed-'));
after(() => {
  stopStragglers();
  rmSync(root, { recursive: true, force: true });
});

/** Small enough for seconds per run; crop padding and flips stay on (they are per-sample, so rank-invariant). */
const SMALL = [
  '--dataset', 'fashion-mnist', '--model', 'vit_micro', '--limit-train', '256', '--limit-test', '200',
  '--batch-size', '64', '--probe-size', '64', '--threads', '1', '--drop-path', '0.1',
] as const;

test('worldFromEnvironment reads torchrun\'s and SLURM\'s variables and names what is wrong', () => {
  assert.equal(worldFromEnvironment({}), null);
  assert.equal(worldFromEnvironment({ WORLD_SIZE: '1', RANK: '0' }), null);
  assert.deepEqual(worldFromEnvironment({ WORLD_SIZE: '4', RANK: '3', LOCAL_RANK: '1', LOCAL_WORLD_SIZE: '2', MASTER_ADDR: 'node0', MASTER_PORT: '29500' }),
    { rank: 3, size: 4, localRank: 1, localSize: 2, masterAddr: 'node0', masterPort: 29500 });
  assert.deepEqual(worldFromEnvironment({ SLURM_NTASKS: '2', SLURM_PROCID: '1', SLURM_LOCALID: '0', MASTER_ADDR: 'n1', MASTER_PORT: '1234' }),
    { rank: 1, size: 2, localRank: 0, localSize: 2, masterAddr: 'n1', masterPort: 1234 });
  const fails = (env: NodeJS.ProcessEnv, message: RegExp): void => assert.throws(() => worldFromEnvironment(env), (error: Error) => error instanceof WorldError && message.test(error.message));
  fails({ WORLD_SIZE: '2', MASTER_ADDR: 'a', MASTER_PORT: '1' }, /RANK is not/);
  fails({ WORLD_SIZE: '2', RANK: '2', MASTER_ADDR: 'a', MASTER_PORT: '1' }, /RANK=2 is not below the world size 2/);
  fails({ WORLD_SIZE: 'two', RANK: '0' }, /WORLD_SIZE='two' is not an integer/);
  fails({ WORLD_SIZE: '2', RANK: '0', MASTER_PORT: '1' }, /needs MASTER_ADDR/);
  fails({ WORLD_SIZE: '2', RANK: '0', MASTER_ADDR: 'a' }, /needs MASTER_PORT/);
  fails({ WORLD_SIZE: '2', RANK: '0', MASTER_ADDR: 'a', MASTER_PORT: '70000' }, /not a TCP port/);
});

test('loader shards: the ranks\' batches side by side are the single process\'s batches, augmentation included', async () => {
  const dataset = loadDataset('fashion-mnist', { split: 'train', limit: 100 });
  const augment = { cropPadding: 2, hflip: true, randomErasing: 0.5 };
  const whole = new BatchLoader(dataset, { batchSize: 12, shuffle: true, dropLast: true, seed: 5, augment });
  const shards = [0, 1, 2].map((rank) => new BatchLoader(dataset, { batchSize: 4, shuffle: true, dropLast: true, seed: 5, augment, shard: { rank, world: 3 }, useWorker: rank === 1 }));
  try {
    assert.equal(whole.batchCount, 8);
    for (const shard of shards) assert.equal(shard.batchCount, 8);
    for (const epoch of [0, 3]) {
      const expected = [...whole.batchesSync(epoch)];
      const parts: Batch[][] = [];
      for (const shard of shards) {
        const batches: Batch[] = [];
        for await (const batch of shard.epochBatches(epoch)) batches.push(batch);
        parts.push(batches);
      }
      // The finished values (normalized, erased on the device) too: each sample's erasing fill is
      // drawn from its own seed, so it does not depend on the rank that holds it.
      const finished = (batch: Batch): number[] => tidy(() => Array.from(deviceBatch(batch, dataset, 'cpu').images.toTypedArray() as Float32Array));
      expected.forEach((batch, index) => {
        const images = parts.flatMap((batches) => finished(batches[index]!));
        const labels = Int32Array.from(parts.flatMap((batches) => Array.from(batches[index]!.labels)));
        assert.deepEqual(labels, batch.labels, `epoch ${epoch} batch ${index} labels`);
        assert.deepEqual(images, finished(batch), `epoch ${epoch} batch ${index} pixels`);
      });
    }
  } finally {
    await Promise.all(shards.map((shard) => shard.close()));
  }
  assert.throws(() => new BatchLoader(dataset, { batchSize: 4, shard: { rank: 3, world: 3 } }), /shard rank 3 of world 3/);
});

test('per-sample noise in a batch shard: the ranks\' rows are the global batch\'s, for masks and drop-path', () => {
  const draw = (rank: number, world: number, shape: number[]): number[] => tidy(() => {
    const generator = new Generator(42);
    return withBatchShard({ generator, rank, world }, () => [sampleNoise(shape, 'cpu'), sampleNoise(shape, 'cpu')].flatMap((noise) => Array.from(noise.toTypedArray() as Float32Array)));
  });
  const global = draw(0, 1, [6, 5]);
  const [first, second] = [draw(0, 2, [3, 5]), draw(1, 2, [3, 5])];
  // Two draws per rank: rows 0-2 then 3-5 of each global draw.
  assert.deepEqual([...first!.slice(0, 15), ...second!.slice(0, 15)], global.slice(0, 30));
  assert.deepEqual([...first!.slice(15), ...second!.slice(15)], global.slice(30));
  // Drop-path inside a shard keeps whole samples, at rate p, scaled by 1/(1-p).
  tidy(() => {
    const layer = new DropPath(0.25);
    const input = ones([4000, 3]);
    const output = withBatchShard({ generator: new Generator(1), rank: 1, world: 2 }, () => layer.forward(input));
    const values = output.toTypedArray() as Float32Array;
    let kept = 0;
    for (let row = 0; row < 4000; row++) {
      const value = values[row * 3]!;
      assert.ok(value === 0 || Math.abs(value - 1 / 0.75) < 1e-6, `row ${row}: ${value}`);
      assert.equal(values[row * 3 + 1], value);
      if (value !== 0) kept++;
    }
    assert.ok(Math.abs(kept / 4000 - 0.75) < 0.03, `kept ${kept / 4000}`);
  });
  assert.throws(() => withBatchShard({ generator: new Generator(1), rank: 2, world: 2 }, () => 0), /rank 2 of world 2/);
});

interface ChildResult { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

function runRank(rank: number, size: number, port: number, env: Record<string, string> = {}): Promise<ChildResult> {
  return runScript('test/helpers/dist-child.ts', rank, size, port, env);
}

function runScript(script: string, rank: number, size: number, port: number, env: Record<string, string> = {}): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', script], {
      cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, RANK: String(rank), WORLD_SIZE: String(size), MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), MASKSUB_THREADS: '1', ...env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk; });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

test('collectives of two Gloo ranks equal the hand-computed results and leave no tensor behind', async () => {
  const port = await freePort();
  const results = await Promise.all([0, 1].map((rank) => runRank(rank, 2, port, { MASKSUB_TEST_BAD_ROOT: '1' })));
  const outputs = results.map((result) => {
    assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
    return JSON.parse(result.stdout.trim().split('\n').pop()!) as Record<string, unknown>;
  });
  for (const output of outputs) {
    // rank 0 and 1 summed: a = (10r + i), b = (r + 0.5, -r), c = (r + i) transposed, d = (r, 7r).
    assert.deepEqual(output.sum, [[10, 12, 14, 16, 18, 20], [2, -1], [1, 5, 9, 3, 7, 11], [1, 7]]);
    assert.deepEqual(output.avg, [0.5, 1]);
    assert.deepEqual(output.max, [1, 0]);
    assert.deepEqual(output.broadcast, [[1, 2], [101]]);
    assert.deepEqual(output.json, { text: 'from rank 0', values: [1, 2, 3] });
    assert.deepEqual(output.numbers, [1, 2, 0.5]);
    assert.equal(output.leaked, 0);
    assert.match(output.error as string, /root 5 is not a rank of this job \(0\.\.1\)/);
  }
});

test('a rank that exits right after joining makes the other\'s next collective fail with a clear error, not a hang', async () => {
  const port = await freePort();
  const started = performance.now();
  const [zero, one] = await Promise.all([0, 1].map((rank) => runRank(rank, 2, port, { MASKSUB_TEST_DIE_AFTER_JOIN: '1', MASKSUB_TEST_TIMEOUT: '60' })));
  assert.equal(one!.code, 3);
  assert.equal(zero!.signal, null, zero!.stderr);
  assert.notEqual(zero!.code, 0);
  assert.match(zero!.stderr, /rank 0 of 2: all-reduce failed: .*Another rank probably stopped/s);
  assert.ok(performance.now() - started < 45_000, 'the survivor waited for the timeout instead of seeing the closed connection');
});

for (const method of ['baseline', 'masksub'] as const) {
  test(`train --nproc 2 gives the same ${method} run as one process with the same global batch`, async (t) => {
    const args = (out: string): string[] => ['train', ...SMALL, '--epochs', '2', '--method', method, '--out', out];
    const alone = join(root, `alone-${method}`);
    const job = join(root, `job-${method}`);
    const [single, pair] = await Promise.all([runCli(args(alone)), runCli([...args(job), '--nproc', '2'])]);
    assert.equal(single.code, 0, describe(single));
    assert.equal(pair.code, 0, describe(pair));
    // Only rank 0 logs; the other rank's lines would carry its rank.
    assert.doesNotMatch(pair.stderr + pair.stdout, /\[rank 1\]/);
    // Measured: the largest weight difference is ~1e-7 to 1e-6 (the mean of two half-batch means
    // against one mean, then 8 AdamW steps); a different shard or mask would give ~1e-2.
    const difference = weightDifference(join(alone, 'model.safetensors'), join(job, 'model.safetensors'));
    t.diagnostic(`largest weight difference ${difference.max.toExponential(2)} (${difference.worst})`);
    assert.ok(difference.max < 2e-5, `weights differ by ${difference.max} (${difference.worst})`);
    const rows = (out: string): Record<string, number>[] => readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((line) => JSON.parse(line));
    const [a, b] = [rows(alone), rows(job)];
    assert.equal(a.length, 2);
    assert.equal(b.length, 2);
    for (let epoch = 0; epoch < 2; epoch++) {
      for (const key of ['train_loss', 'train_loss_main', 'test_loss', 'probe_loss_standard', 'probe_loss_masked']) {
        assert.ok(Math.abs(a[epoch]![key]! - b[epoch]![key]!) < 1e-4, `epoch ${epoch + 1} ${key}: ${a[epoch]![key]} alone, ${b[epoch]![key]} in the job`);
      }
      // Top-1 counts agree up to one test image whose two best logits are within float noise.
      assert.ok(Math.abs(a[epoch]!.test_acc1! - b[epoch]!.test_acc1!) <= 0.5, `epoch ${epoch + 1} top-1: ${a[epoch]!.test_acc1} vs ${b[epoch]!.test_acc1}`);
    }
    if (method === 'masksub') assert.ok(Math.abs(a[1]!.train_loss_sub! - b[1]!.train_loss_sub!) < 1e-4);
  });
}

test('a ResNet job: BatchNorm statistics averaged over the ranks after each epoch, close to one process\'s', async (t) => {
  const args = (out: string): string[] => ['train', '--dataset', 'fashion-mnist', '--model', 'resnet_micro', '--limit-train', '256', '--limit-test', '200',
    '--batch-size', '64', '--probe-size', '64', '--threads', '1', '--epochs', '1', '--warmup-epochs', '0', '--out', out];
  const [alone, job] = [join(root, 'resnet-alone'), join(root, 'resnet-job')];
  const [single, pair] = await Promise.all([runCli(args(alone)), runCli([...args(job), '--nproc', '2'])]);
  assert.equal(single.code, 0, describe(single));
  assert.equal(pair.code, 0, describe(pair));
  const [a, b] = [loadSafetensors(join(alone, 'model.safetensors')).tensors, loadSafetensors(join(job, 'model.safetensors')).tensors];
  const mean = (name: string, tensors: Map<string, Tensor>): Float32Array => tensors.get(name)!.toTypedArray() as Float32Array;
  // Each rank's statistics saw half of each batch; the mean of the first BatchNorm's input is
  // linear in the data, so the ranks' average is the single process's up to the slightly different
  // weights (measured 3.7e-5 against values up to 8.1e-3: 0.5%).
  const ours = mean('bn1.running_mean', b);
  const theirs = mean('bn1.running_mean', a);
  const scale = Math.max(...Array.from(theirs, Math.abs));
  t.diagnostic(`bn1.running_mean: largest difference ${Math.max(...Array.from(ours, (value, index) => Math.abs(value - theirs[index]!))).toExponential(2)} (largest value ${scale.toExponential(2)})`);
  ours.forEach((value, index) => assert.ok(Math.abs(value - theirs[index]!) < 0.02 * scale, `bn1.running_mean[${index}]: ${value} vs ${theirs[index]}`));
  for (const tensor of [...a.values(), ...b.values()]) tensor.dispose();
});

test('train --nproc 2 --sync-bn (ResNet, MaskSub): the same weights and running statistics as one process with the same global batch', async (t) => {
  const args = (out: string): string[] => ['train', '--dataset', 'fashion-mnist', '--model', 'resnet_micro', '--method', 'masksub', '--limit-train', '256', '--limit-test', '200',
    '--batch-size', '64', '--probe-size', '64', '--threads', '1', '--epochs', '1', '--warmup-epochs', '0', '--out', out];
  const [alone, job] = [join(root, 'syncbn-alone'), join(root, 'syncbn-job')];
  const [single, pair] = await Promise.all([runCli(args(alone)), runCli([...args(job), '--nproc', '2', '--sync-bn'])]);
  assert.equal(single.code, 0, describe(single));
  assert.equal(pair.code, 0, describe(pair));
  const [a, b] = [loadSafetensors(join(alone, 'model.safetensors')).tensors, loadSafetensors(join(job, 'model.safetensors')).tensors];
  let worst = 0;
  let worstName = '';
  for (const [name, theirs] of a) {
    if (!theirs.dtype.startsWith('float')) continue;
    const x = Array.from(b.get(name)!.toTypedArray() as Float32Array);
    const y = Array.from(theirs.toTypedArray() as Float32Array);
    const scale = Math.max(...y.map(Math.abs), 1e-12);
    const error = Math.max(...x.map((value, index) => Math.abs(value - y[index]!))) / scale;
    if (error > worst) [worst, worstName] = [error, name];
  }
  t.diagnostic(`largest difference relative to the tensor's largest value: ${worst.toExponential(2)} (${worstName})`);
  // 4 steps of float32 arithmetic in another order (the sync statistics from float64 sums, the
  // gradients summed over two ranks): measured 9.3e-6 (layer4.0.bn1.bias); without --sync-bn,
  // bn1.running_mean alone differs by 4.6e-3 of its largest value (the test above).
  assert.ok(worst < 1e-4, `${worstName}: ${worst}`);
  for (const tensor of [...a.values(), ...b.values()]) tensor.dispose();
});

test('SyncBatchNorm: 2 Gloo ranks x batch B/2 give one process\'s batch-B outputs, gradients and running statistics', async (t) => {
  const port = await freePort();
  const share = SYNC_BN.batch / 2;
  const results = await Promise.all([0, 1].map((rank) => runScript('test/helpers/sync-bn-child.ts', rank, 2, port)));
  const ranks = results.map((result) => {
    assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
    return JSON.parse(result.stdout.trim().split('\n').pop()!) as SyncBnResult;
  });
  const whole = syncBnCase(0, SYNC_BN.batch, false);
  // Plain BatchNorm2d on one rank's half alone, to show the check can tell the difference.
  const unsynced = syncBnCase(0, share, false);
  let worst = 0;
  const close = (ours: number[], theirs: number[], what: string): void => {
    assert.equal(ours.length, theirs.length, what);
    const scale = Math.max(...theirs.map(Math.abs));
    const error = Math.max(...ours.map((value, index) => Math.abs(value - theirs[index]!))) / scale;
    worst = Math.max(worst, error);
    // float32 arithmetic in another order (statistics from float64 sums of the two halves against
    // libtorch's float32 batch_norm): measured worst 4e-7 of each quantity's largest magnitude.
    assert.ok(error < 1e-5, `${what}: relative error ${error.toExponential(2)}`);
  };
  for (let step = 0; step < SYNC_BN.steps; step++) {
    close([...ranks[0]!.outputs[step]!, ...ranks[1]!.outputs[step]!], whole.outputs[step]!, `step ${step} output`);
    close([...ranks[0]!.inputGrads[step]!, ...ranks[1]!.inputGrads[step]!], whole.inputGrads[step]!, `step ${step} input gradient`);
  }
  // Weight and bias gradients: each rank's part; the data-parallel all-reduce (sum here) adds them.
  close(ranks[0]!.weightGrad.map((value, index) => value + ranks[1]!.weightGrad[index]!), whole.weightGrad, 'weight gradient');
  close(ranks[0]!.biasGrad.map((value, index) => value + ranks[1]!.biasGrad[index]!), whole.biasGrad, 'bias gradient');
  for (const rank of ranks) {
    close(rank.runningMean, whole.runningMean, 'running mean');
    close(rank.runningVar, whole.runningVar, 'running variance');
  }
  // Evaluation normalises with the (global) running statistics, without communication.
  close([...ranks[0]!.evalOutput, ...ranks[1]!.evalOutput], whole.evalOutput, 'eval output');
  t.diagnostic(`SyncBatchNorm worst relative error ${worst.toExponential(2)}`);
  const differs = Math.max(...unsynced.outputs[0]!.map((value, index) => Math.abs(value - whole.outputs[0]![index]!)));
  assert.ok(differs > 1e-2, `half a batch alone normalises differently (${differs})`);
  // Without a process group the layer refuses, naming what is missing.
  assert.throws(() => syncBnCase(0, share, true), /no process group: call distInit first/);
});

test('a rank killed mid-run under torchrun\'s environment: the other stops at once, the checkpoint stays, a 1-process --resume finishes', async () => {
  const out = join(root, 'killed');
  const port = await freePort();
  const args = ['train', ...SMALL, '--epochs', '6', '--method', 'masksub', '--out', out, '--dist-timeout', '120'];
  const env = (rank: number): Record<string, string> => ({ RANK: String(rank), WORLD_SIZE: '2', LOCAL_RANK: String(rank), LOCAL_WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), MASKSUB_THREADS: '1' });
  const zero = startCli(args, env(0));
  const one = startCli(args, env(1));
  await waitFor(() => metricsLines(out).length >= 1, 'the first epoch', { timeoutMs: 120_000, stop: zero.done });
  await sleep(300);
  process.kill(one.child.pid!, 'SIGKILL');
  const killedAt = performance.now();
  const survivor = await zero.done;
  assert.equal(survivor.signal, null, describe(survivor));
  assert.equal(survivor.code, 1, describe(survivor));
  assert.ok(performance.now() - killedAt < 30_000, `the survivor took ${(performance.now() - killedAt) / 1000} s to stop`);
  assert.match(survivor.stderr, /rank 0 of 2: .* failed: .*Another rank probably stopped.*checkpoint.*intact.*--resume/s);
  const parts = loadCheckpoint(join(out, 'checkpoint.safetensors'));
  const finished = parts.state.epoch;
  disposeCheckpoint(parts);
  assert.ok(finished >= 1 && finished < 6, `checkpoint at epoch ${finished}`);
  assert.equal(metricsLines(out).length, finished);
  assert.ok(!existsSync(join(out, 'run.lock')), 'the survivor left its lock behind');
  const resumed = await runCli(['train', '--out', out, '--resume'], { MASKSUB_THREADS: '1' });
  assert.equal(resumed.code, 0, describe(resumed));
  assert.equal(metricsLines(out).length, 6);
});

test('train --nproc: one rank\'s non-finite step stops every rank with the training error', async () => {
  const out = join(root, 'nan');
  const result = await runCli(['train', ...SMALL, '--epochs', '2', '--out', out, '--nproc', '2'], { MASKSUB_INJECT_NAN_AT_STEP: '2', MASKSUB_INJECT_NAN_RANK: '1' });
  assert.equal(result.signal, null, describe(result));
  assert.equal(result.code, 1, describe(result));
  // Rank 1 alone got the NaN; both stop at the same step with the same message.
  assert.match(result.stderr, /^masksub: non-finite loss \(NaN\) at epoch 1, step 3 of 4 \(global step 3\)/m);
  assert.match(result.stderr, /^\[rank 1\] masksub: non-finite loss \(NaN\) at epoch 1, step 3 of 4 \(global step 3\)/m);
  assert.ok(!existsSync(join(out, 'checkpoint.safetensors')));
});

/** The worker processes of a launcher (its children), by rank. */
function workersOf(launcher: number): Map<number, number> {
  const found = new Map<number, number>();
  const children = readFileSync(`/proc/${launcher}/task/${launcher}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  for (const pid of children) {
    const rank = /(?:^|\0)RANK=(\d+)\0/.exec(readFileSync(`/proc/${pid}/environ`, 'utf8'))?.[1];
    if (rank !== undefined) found.set(Number(rank), pid);
  }
  return found;
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return existsSync(`/proc/${pid}`) && !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
};

test('train --nproc: a killed worker stops the others and the launcher names its rank; a killed launcher takes its workers along', async () => {
  const out = join(root, 'launcher');
  const launcher = startCli(['train', ...SMALL, '--epochs', '20', '--out', out, '--nproc', '2']);
  let workers = new Map<number, number>();
  await waitFor(() => (workers = workersOf(launcher.child.pid!)).size === 2, 'two workers', { timeoutMs: 30_000, stop: launcher.done });
  await waitFor(() => metricsLines(out).length >= 1, 'the first epoch', { timeoutMs: 120_000, stop: launcher.done });
  process.kill(workers.get(1)!, 'SIGKILL');
  const result = await launcher.done;
  assert.equal(result.code, 137, describe(result));
  assert.match(result.stderr, /rank 1 was killed by SIGKILL; stopping the other 1 rank/);
  await waitFor(() => !alive(workers.get(0)!), 'rank 0 to end', { timeoutMs: 30_000 });

  const second = startCli(['train', '--out', out, '--resume', '--nproc', '2']);
  await waitFor(() => (workers = workersOf(second.child.pid!)).size === 2, 'two workers', { timeoutMs: 30_000, stop: second.done });
  process.kill(second.child.pid!, 'SIGKILL');
  await waitFor(() => [...workers.values()].every((pid) => !alive(pid)), 'the orphaned workers to stop', { timeoutMs: 60_000 });
});
