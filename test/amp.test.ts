// Mixed precision: the autocast scope (libtorch's own op lists decide what runs in bfloat16), the
// MaskSub step under bf16 autocast against the float32 step on the same weights and masks (stated
// tolerances, measured values in the diagnostics), float16 loss scaling (GradScaler) against hand
// computation, and `train --amp bf16` end to end. fp16 autocast needs CUDA and is refused on the CPU.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { methodStep } from '../src/masksub/method.js';
import { createModel } from '../src/models/index.js';
import { Parameter } from '../src/nn/index.js';
import { AdamW, GradScaler } from '../src/optim/index.js';
import { autocast, isAutocastEnabled } from '../src/tensor/autocast.js';
import { liveTensors } from '../src/tensor/native.js';
import { Generator, manualSeed, randint, randn, tensor, tidy } from '../src/tensor/tensor.js';
import { buildConfig, ConfigError } from '../src/train/config.js';
import { describe, runCli } from './helpers/faults.js';

const root = mkdtempSync(join(tmpdir(), 'masksub-amp-'));
after(() => rmSync(root, { recursive: true, force: true }));

test('autocast: matmuls in bfloat16 inside, float32 outside, nesting and errors restore the state', () => {
  tidy(() => {
    const a = randn([4, 8]);
    const b = randn([8, 3]);
    assert.equal(isAutocastEnabled('cpu'), false);
    const inside = autocast({ device: 'cpu', dtype: 'bfloat16' }, () => {
      assert.equal(isAutocastEnabled('cpu'), true);
      const product = a.matmul(b);
      // Nested regions restore the outer one's state.
      autocast({ device: 'cpu', dtype: 'bfloat16' }, () => assert.equal(isAutocastEnabled(), true));
      assert.equal(isAutocastEnabled('cpu'), true);
      return { product };
    });
    assert.equal(isAutocastEnabled('cpu'), false);
    // libtorch 1.13's CPU autocast keeps ops off its lists (softmax too) in their input's dtype,
    // which is why methodStep casts the logits to float32 before any loss.
    assert.equal(inside.product.dtype, 'bfloat16');
    assert.equal(a.matmul(b).dtype, 'float32');
    // bfloat16 keeps 8 bits of mantissa: the product agrees to about 1%.
    const exact = a.matmul(b).toTypedArray() as Float32Array;
    const rounded = inside.product.to({ dtype: 'float32' }).toTypedArray() as Float32Array;
    const scale = Math.max(...Array.from(exact, Math.abs));
    exact.forEach((value, index) => assert.ok(Math.abs(value - rounded[index]!) <= 0.02 * scale, `${value} vs ${rounded[index]}`));
    // An error inside leaves autocast off again.
    assert.throws(() => autocast({ device: 'cpu', dtype: 'bfloat16' }, () => { throw new Error('inside'); }), /inside/);
    assert.equal(isAutocastEnabled('cpu'), false);
  });
  assert.throws(() => autocast({ device: 'cpu', dtype: 'float16' }, () => 0), /CPU autocast supports bfloat16 only/);
  assert.throws(() => autocast({ device: 'tpu', dtype: 'bfloat16' }, () => 0), /device must be cpu or cuda/);
});

/** Flattened gradients of the model's parameters. */
function gradients(parameters: Parameter[]): Float32Array {
  return Float32Array.from(parameters.flatMap((parameter) => {
    const grad = parameter.grad;
    const values = grad ? Array.from(grad.toTypedArray() as Float32Array) : new Array<number>(parameter.numel).fill(0);
    grad?.dispose();
    return values;
  }));
}

test('the MaskSub step under bf16 autocast is close to the float32 step (same weights, same masks); gradients stay float32', (t) => {
  tidy(() => {
    manualSeed(3);
    const model = createModel('vit_micro', { inChannels: 1, numClasses: 10, imageSize: 28 });
    const images = randn([16, 1, 28, 28]);
    const labels = randint(0, 10, [16]);
    const base = { method: 'masksub' as const, ratio: 0.5, subWeight: 0.5, criterion: { kind: 'ce' as const, labelSmoothing: 0.1, bceTargetThreshold: null } };
    const run = (amp: 'bfloat16' | null): { loss: number; lossSub: number; grads: Float32Array; dtypes: string[] } => {
      // The same mask noise for both runs: the global generator is reseeded before each.
      manualSeed(11);
      for (const parameter of model.parameters()) parameter.zeroGrad();
      const result = methodStep(model, images, labels, { ...base, amp });
      const dtypes = [...new Set(model.parameters().map((parameter) => tidy(() => parameter.grad!.dtype)))];
      return { loss: result.loss, lossSub: result.lossSub!, grads: gradients(model.parameters()), dtypes };
    };
    const full = run(null);
    const mixed = run('bfloat16');
    assert.deepEqual(mixed.dtypes, ['float32']);
    const lossError = Math.abs(mixed.loss - full.loss) / full.loss;
    let dot = 0;
    let normA = 0;
    let normB = 0;
    full.grads.forEach((value, index) => {
      dot += value * mixed.grads[index]!;
      normA += value * value;
      normB += mixed.grads[index]! ** 2;
    });
    const cosine = dot / Math.sqrt(normA * normB);
    const normRatio = Math.sqrt(normB / normA);
    t.diagnostic(`loss ${full.loss.toFixed(5)} (float32) vs ${mixed.loss.toFixed(5)} (bf16): relative ${lossError.toExponential(2)}; gradient cosine ${cosine.toFixed(5)}, norm ratio ${normRatio.toFixed(4)}`);
    assert.ok(lossError < 0.02, `loss differs by ${lossError}`);
    assert.ok(cosine > 0.99, `gradient cosine ${cosine}`);
    assert.ok(Math.abs(normRatio - 1) < 0.05, `gradient norm ratio ${normRatio}`);
    model.dispose();
  });
});

test('GradScaler: unscale divides the gradients, an overflow skips the step and halves the scale, growth after the interval', () => {
  const before = liveTensors();
  const source = tensor([1, 2, 3]);
  const parameter = new Parameter(source);
  const set = (values: number[]): void => tidy(() => { parameter.grad = tensor(values); });
  const grad = (): number[] => tidy(() => Array.from(parameter.grad!.toTypedArray() as Float32Array));
  const scaler = new GradScaler({ initScale: 1024, growthInterval: 2 });
  set([1024, -2048, 512]);
  assert.equal(scaler.unscale([parameter]), true);
  assert.deepEqual(grad(), [1, -2, 0.5]);
  scaler.update(true);
  assert.deepEqual(scaler.stateDict(), { scale: 1024, goodSteps: 1 });
  scaler.update(true);
  assert.deepEqual(scaler.stateDict(), { scale: 2048, goodSteps: 0 });
  set([1, Number.POSITIVE_INFINITY, 3]);
  assert.equal(scaler.unscale([parameter]), false);
  scaler.update(false);
  assert.deepEqual(scaler.stateDict(), { scale: 1024, goodSteps: 0 });
  set([Number.NaN, 0, 0]);
  assert.equal(scaler.unscale([parameter]), false);
  const copy = new GradScaler();
  copy.loadStateDict({ scale: 8, goodSteps: 1 });
  assert.deepEqual(copy.stateDict(), { scale: 8, goodSteps: 1 });
  assert.throws(() => copy.loadStateDict({ scale: -1, goodSteps: 0 }), /not \{scale > 0/);
  assert.throws(() => new GradScaler({ backoffFactor: 2 }), /backoffFactor/);
  parameter.dispose();
  source.dispose();
  assert.equal(liveTensors(), before);
});

test('loss scaling in the step: a scaled backward then unscale gives the unscaled gradients', () => {
  tidy(() => {
    manualSeed(5);
    const model = createModel('vit_micro', { inChannels: 1, numClasses: 10, imageSize: 28 });
    const images = randn([8, 1, 28, 28], { generator: new Generator(2) });
    const labels = randint(0, 10, [8], { generator: new Generator(3) });
    const config = { method: 'masksub' as const, ratio: 0.5, subWeight: 0.5, criterion: { kind: 'ce' as const, labelSmoothing: 0, bceTargetThreshold: null } };
    manualSeed(7);
    const plain = methodStep(model, images, labels, config);
    const expected = gradients(model.parameters());
    model.zeroGrad();
    manualSeed(7);
    const scaled = methodStep(model, images, labels, { ...config, gradScale: 256 });
    const scaler = new GradScaler({ initScale: 256 });
    assert.equal(scaler.unscale(model.parameters()), true);
    const actual = gradients(model.parameters());
    // Reported losses and norms are the unscaled ones.
    assert.equal(scaled.loss, plain.loss);
    assert.ok(Math.abs(scaled.gradNormMain - plain.gradNormMain) < 1e-5 * plain.gradNormMain);
    const worst = Math.max(...Array.from(expected, (value, index) => Math.abs(value - actual[index]!)));
    const scale = Math.max(...Array.from(expected, Math.abs));
    // 256 is a power of two: scaling and unscaling are exact, up to the sum of the two branches.
    assert.ok(worst <= 1e-6 * scale, `gradients differ by ${worst} (scale ${scale})`);
    model.dispose();
  });
});

test('train --amp bf16 runs a MaskSub epoch on the CPU; --amp fp16 on the CPU is refused before any work', async () => {
  const out = join(root, 'bf16');
  const result = await runCli(['train', '--dataset', 'fashion-mnist', '--model', 'vit_micro', '--limit-train', '256', '--limit-test', '128', '--batch-size', '64',
    '--probe-size', '64', '--epochs', '2', '--threads', '1', '--method', 'masksub', '--amp', 'bf16', '--out', out]);
  assert.equal(result.code, 0, describe(result));
  const rows = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((line) => JSON.parse(line) as Record<string, number>);
  assert.equal(rows.length, 2);
  for (const row of rows) for (const key of ['train_loss', 'train_loss_sub', 'test_loss', 'grad_norm_main']) assert.ok(Number.isFinite(row[key]), `${key} ${row[key]}`);
  assert.ok(rows[1]!.train_loss < rows[0]!.train_loss, 'the loss went down');
  assert.throws(() => buildConfig({ flags: { amp: 'fp16' } }), (error: Error) => error instanceof ConfigError && /amp fp16 needs a CUDA device/.test(error.message));
});

test('40 bf16 MaskSub steps with AdamW and a GradScaler\'s unscale: live tensor count flat', () => {
  manualSeed(6);
  const model = createModel('vit_micro', { inChannels: 1, numClasses: 10, imageSize: 28 });
  const optimizer = new AdamW(model.parameters(), { lr: 1e-3 });
  const scaler = new GradScaler({ initScale: 256 });
  const images = randn([8, 1, 28, 28], { generator: new Generator(2) });
  const labels = randint(0, 10, [8], { generator: new Generator(3) });
  const config = { method: 'masksub' as const, ratio: 0.5, subWeight: 0.5, amp: 'bfloat16' as const, criterion: { kind: 'ce' as const, labelSmoothing: 0.1, bceTargetThreshold: null } };
  const counts: number[] = [];
  for (let step = 0; step < 40; step++) {
    const result = tidy(() => methodStep(model, images, labels, { ...config, gradScale: scaler.scale }));
    assert.ok(Number.isFinite(result.loss));
    const finite = scaler.unscale(model.parameters());
    if (finite) optimizer.step();
    scaler.update(finite);
    optimizer.zeroGrad();
    counts.push(liveTensors());
  }
  assert.equal(counts[39], counts[4], `live tensors ${counts.join(', ')}`);
  for (const item of [model, optimizer, images, labels]) item.dispose();
});
