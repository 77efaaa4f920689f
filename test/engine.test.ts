// Engine tests: tensors, autograd, RNG, memory scopes and errors of the libtorch binding.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  arange, bernoulli, cat, eye, full, Generator, getRngState, keep, linspace, liveTensors, manualSeed, noGrad, ones,
  rand, randint, randn, randperm, setRngState, stack, type Tensor, tensor, tidy, where, zeros,
} from '../src/index.js';
import * as nn from '../src/nn/index.js';
import * as F from '../src/nn/functional.js';

const long = (data: number[] | number[][]): Tensor => tensor(data, { dtype: 'int64' });
const close = (a: number, b: number, tolerance = 1e-6): boolean => Math.abs(a - b) <= tolerance * Math.max(1, Math.abs(b));

test('creation, dtypes and data out', () => {
  tidy(() => {
    const a = tensor([[1, 2, 3], [4, 5, 6]]);
    assert.deepEqual(a.shape, [2, 3]);
    assert.equal(a.dtype, 'float32');
    assert.equal(tensor([1, 2], { dtype: 'int64' }).dtype, 'int64');
    assert.deepEqual(a.toArray(), [[1, 2, 3], [4, 5, 6]]);
    const b = tensor([0.5, 1.5]);
    assert.equal(b.dtype, 'float32');
    assert.equal(tensor([true, false]).dtype, 'bool');
    const typed = tensor(new Float64Array([1, 2, 3, 4]), { shape: [2, 2] });
    assert.equal(typed.dtype, 'float64');
    assert.deepEqual(typed.toArray(), [[1, 2], [3, 4]]);
    for (const dtype of ['float32', 'float64', 'bfloat16', 'float16', 'int64', 'int32', 'uint8', 'bool'] as const) {
      const t = tensor([1, 0, 2], { dtype });
      assert.equal(t.dtype, dtype);
      assert.deepEqual(t.toArray(), dtype === 'bool' ? [1, 0, 1] : [1, 0, 2]);
    }
    assert.deepEqual(zeros([2]).toArray(), [0, 0]);
    assert.deepEqual(ones([2], { dtype: 'int32' }).toArray(), [1, 1]);
    assert.deepEqual(full([2], 7).toArray(), [7, 7]);
    assert.deepEqual(arange(4).toArray(), [0, 1, 2, 3]);
    assert.deepEqual(arange(1, 2, 0.25).toArray(), [1, 1.25, 1.5, 1.75]);
    assert.deepEqual(linspace(0, 1, 5).toArray(), [0, 0.25, 0.5, 0.75, 1]);
    assert.deepEqual(eye(2).toArray(), [[1, 0], [0, 1]]);
    const permutation = randperm(10).toArray() as number[];
    assert.deepEqual([...permutation].sort((x, y) => x - y), [...Array(10).keys()]);
    const ints = randint(3, 7, [1000]).toArray() as number[];
    assert.ok(ints.every((v) => v >= 3 && v < 7) && new Set(ints).size === 4);
    const draws = bernoulli(zeros([10000]), 0.3).mean().item();
    assert.ok(Math.abs(draws - 0.3) < 0.03, `bernoulli mean ${draws}`);
    const normal = randn([20000]);
    assert.ok(Math.abs(normal.mean().item()) < 0.03 && Math.abs(normal.std().item() - 1) < 0.03);
    const uniform = rand([20000]);
    assert.ok(uniform.min().item() >= 0 && uniform.max().item() < 1);
  });
});

test('shape ops and math with broadcasting', () => {
  tidy(() => {
    const x = arange(24, undefined, 1, { dtype: 'float32' }).reshape(2, 3, 4);
    assert.deepEqual(x.permute(2, 0, 1).shape, [4, 2, 3]);
    assert.deepEqual(x.transpose(0, 2).shape, [4, 3, 2]);
    assert.deepEqual(x.flatten(1).shape, [2, 12]);
    assert.deepEqual(x.unsqueeze(0).squeeze(0).shape, [2, 3, 4]);
    assert.deepEqual(tensor([[1], [2]]).expand(2, 3).toArray(), [[1, 1, 1], [2, 2, 2]]);
    assert.deepEqual(tensor([1, 2]).repeat(2).toArray(), [1, 2, 1, 2]);
    assert.deepEqual(cat([tensor([1]), tensor([2, 3])]).toArray(), [1, 2, 3]);
    assert.deepEqual(stack([tensor([1, 2]), tensor([3, 4])], 1).toArray(), [[1, 3], [2, 4]]);
    assert.deepEqual(arange(5).split(2).map((t) => t.toArray()), [[0, 1], [2, 3], [4]]);
    assert.deepEqual(arange(6).chunk(3).map((t) => t.toArray()), [[0, 1], [2, 3], [4, 5]]);
    assert.deepEqual(arange(6).narrow(0, 2, 3).toArray(), [2, 3, 4]);
    assert.deepEqual(arange(10).slice(0, 1, 8, 3).toArray(), [1, 4, 7]);
    assert.deepEqual(tensor([10, 20, 30]).indexSelect(0, long([2, 0])).toArray(), [30, 10]);
    assert.deepEqual(tensor([[1, 2], [3, 4]]).gather(1, long([[1], [0]])).toArray(), [[2], [3]]);
    assert.deepEqual(zeros([2, 3]).scatter(1, long([[2], [0]]), 5).toArray(), [[0, 0, 5], [5, 0, 0]]);
    assert.deepEqual(tensor([1, 2, 3]).maskedFill(tensor([true, false, true]), 0).toArray(), [0, 2, 0]);
    assert.deepEqual(where(tensor([true, false]), tensor([1, 2]), tensor([3, 4])).toArray(), [1, 4]);
    assert.deepEqual(tensor([1, 2, 3]).flip(0).toArray(), [3, 2, 1]);
    assert.deepEqual(tensor([1, 2, 3]).roll(1, 0).toArray(), [3, 1, 2]);
    assert.deepEqual(tensor([[1, 2]]).pad([1, 1], 'constant', 9).toArray(), [[9, 1, 2, 9]]);
    assert.deepEqual(tensor([[1], [2]]).add(tensor([10, 20])).toArray(), [[11, 21], [12, 22]]);
    assert.deepEqual(tensor([1, 2]).mul(3).toArray(), [3, 6]);
    assert.deepEqual(tensor([1.0, 4.0]).sqrt().toArray(), [1, 2]);
    assert.deepEqual(tensor([4, 1, 3]).argsort().toArray(), [1, 2, 0]);
    const [values, indices] = tensor([4, 1, 3]).topk(2);
    assert.deepEqual([values.toArray(), indices.toArray()], [[4, 3], [0, 2]]);
    const m = tensor([[1.0, 2.0], [3.0, 4.0]]);
    assert.deepEqual(m.matmul(m).toArray(), [[7, 10], [15, 22]]);
    assert.equal(m.sum().item(), 10);
    assert.deepEqual(m.mean(0).toArray(), [2, 3]);
    assert.ok(close(m.var().item(), 5 / 3));
    assert.ok(close(m.norm().item(), Math.sqrt(30)));
    const [maxValues, maxIndices] = m.max(1);
    assert.deepEqual([maxValues.toArray(), maxIndices.toArray()], [[2, 4], [1, 1]]);
    assert.deepEqual(m.gt(2).toArray(), [[0, 0], [1, 1]]);
    assert.deepEqual(m.clamp(2, 3).toArray(), [[2, 2], [3, 3]]);
    assert.ok(close(tensor([0.0]).exp().item(), 1));
  });
});

test('in-place updates used by optimizers', () => {
  tidy(() => {
    const p = tensor([1.0, 2.0]);
    p.add_(tensor([1.0, 1.0]), 2);
    assert.deepEqual(p.toArray(), [3, 4]);
    p.mul_(0.5).addcmul_(tensor([2.0, 2.0]), tensor([3.0, 1.0]), 0.5);
    assert.deepEqual(p.toArray(), [4.5, 3]);
    p.addcdiv_(tensor([1.0, 1.0]), tensor([2.0, 4.0]), -1);
    assert.deepEqual(p.toArray(), [4, 2.75]);
    p.lerp_(tensor([0.0, 0.0]), 0.5);
    assert.deepEqual(p.toArray(), [2, 1.375]);
    p.copy_(tensor([7.0, 8.0]));
    p.zero_();
    assert.deepEqual(p.toArray(), [0, 0]);
  });
});

test('autograd: backward, accumulation across two backward calls, noGrad, detach', () => {
  tidy(() => {
    const w = tensor([1.0, 2.0, 3.0], { requiresGrad: true });
    w.mul(w).sum().backward();
    assert.deepEqual(w.grad?.toArray(), [2, 4, 6]);
    w.mul(3).sum().backward(); // accumulates, as MaskSub's two backward calls need
    assert.deepEqual(w.grad?.toArray(), [5, 7, 9]);
    w.zeroGrad();
    assert.equal(w.grad, null);
    const y = w.mul(2);
    y.backward(tensor([1.0, 0.0, -1.0]));
    // (a fresh read of the getter: TypeScript narrowed w.grad to null above)
    const gradient = (): Tensor | null => w.grad;
    assert.deepEqual(gradient()?.toArray(), [2, 0, -2]);
    const z = noGrad(() => w.mul(2));
    assert.equal(z.requiresGrad, false);
    assert.equal(w.mul(2).detach().requiresGrad, false);
    // stop gradient: d/dw of (w * detach(w)) is detach(w)
    w.zeroGrad();
    w.mul(w.detach()).sum().backward();
    assert.deepEqual(gradient()?.toArray(), [1, 2, 3]);
  });
});

test('random numbers: global seed, explicit generators, saved states', () => {
  tidy(() => {
    manualSeed(7);
    const a = randn([5]).toArray();
    manualSeed(7);
    assert.deepEqual(randn([5]).toArray(), a);
    const state = getRngState();
    const b = rand([4]).toArray();
    setRngState(state);
    assert.deepEqual(rand([4]).toArray(), b);
    const g1 = new Generator(3);
    const g2 = new Generator(3);
    manualSeed(99);
    const first = randn([6], { generator: g1 }).toArray();
    randn([100]); // global draws do not disturb explicit generators
    assert.deepEqual(randn([6], { generator: g2 }).toArray(), first);
    const saved = g1.getState();
    const next = randperm(8, { generator: g1 }).toArray();
    g1.setState(saved);
    assert.deepEqual(randperm(8, { generator: g1 }).toArray(), next);
    assert.notDeepEqual(randn([6], { generator: new Generator(4) }).toArray(), first);
  });
});

test('errors become JS errors naming the op and shapes; the process survives', () => {
  const a = randn([2, 3]);
  const b = randn([4, 5]);
  assert.throws(() => a.matmul(b), /matmul\(tensor\[2, 3\] float32, tensor\[4, 5\] float32\): .*shapes cannot be multiplied/);
  assert.throws(() => a.add(randn([7])), /add\(tensor\[2, 3\].*tensor\[7\].*\)/);
  assert.throws(() => a.select(0, 5), /select\(tensor\[2, 3\] float32, 0, 5\): .*index 5 out of range/);
  assert.throws(() => a.to({ device: 'cuda' }), /cuda/i);
  assert.throws(() => a.to({ device: 'tpu' as 'cpu' }), /unknown device 'tpu'/);
  assert.throws(() => tensor([1, 2]).view(3), /view\(.*shape '\[3\]' is invalid/);
  assert.throws(() => tensor([[1, 2], [3]]), /ragged/);
  assert.throws(() => F.crossEntropy(randn([2, 3]), long([0, 5])), /crossEntropy\(.*out of bounds|Target 5 is out of bounds/);
  assert.throws(() => randn([2]).item(), /item\(\) needs a tensor with one element/);
  a.dispose();
  a.dispose();
  assert.throws(() => a.sum(), /sum: argument 0 is a tensor that was already disposed/);
  assert.equal(a.isDisposed, true);
  assert.equal(randn([1]).numel, 1); // still alive
  b.dispose();
});

test('tidy frees everything made inside except results and kept tensors', () => {
  const before = liveTensors();
  let kept: Tensor | undefined;
  const result = tidy(() => {
    const x = randn([3, 3]);
    x.matmul(x).relu();
    kept = keep(ones([2]));
    const inner = tidy(() => ({ value: x.sum(), list: [x.mean()] }));
    return { total: inner.value.add(1), list: inner.list };
  });
  assert.equal(liveTensors(), before + 3);
  result.total.dispose();
  result.list[0].dispose();
  kept?.dispose();
  assert.equal(liveTensors(), before);

  // A scope that throws frees what it made (its kept tensors survive) and rethrows.
  let survivor: Tensor | undefined;
  assert.throws(() => tidy(() => {
    randn([4]);
    tidy(() => randn([2]).matmul(randn([3])));
  }), /matmul/);
  assert.throws(() => tidy(() => {
    survivor = keep(ones([1]));
    throw new Error('boom');
  }), /boom/);
  assert.equal(liveTensors(), before + 1);
  survivor?.dispose();
  assert.equal(liveTensors(), before);
});

test('300 training steps of a small MLP: live tensors flat, RSS bounded', () => {
  manualSeed(0);
  const model = new nn.Sequential(new nn.Linear(32, 64), new nn.Dropout(0.1), new nn.Linear(64, 10));
  const x = randn([64, 32]);
  const y = randint(0, 10, [64]);
  const counts: number[] = [];
  const rss: number[] = [];
  let firstLoss = 0;
  let lastLoss = 0;
  for (let step = 0; step < 300; step++) {
    tidy(() => {
      model.zeroGrad();
      const loss = F.crossEntropy(model.forward(x), y);
      loss.backward();
      noGrad(() => {
        for (const p of model.parameters()) {
          const g = p.grad;
          if (g) p.sub_(g, 0.05);
        }
      });
      if (step === 0) firstLoss = loss.item();
      lastLoss = loss.item();
    });
    counts.push(liveTensors());
    if (step % 50 === 0) rss.push(process.memoryUsage().rss);
  }
  assert.ok(lastLoss < firstLoss, `loss fell: ${firstLoss} -> ${lastLoss}`);
  assert.equal(Math.max(...counts.slice(1)), Math.min(...counts.slice(1)), 'live tensor count is flat');
  const growth = rss[rss.length - 1] - rss[1];
  assert.ok(growth < 64 * 1024 * 1024, `RSS grew by ${(growth / 1048576).toFixed(1)} MiB`);
  model.dispose();
  x.dispose();
  y.dispose();
});

test('module: parameters, names, state dicts strict and non-strict, train/eval', () => {
  const model = new nn.Sequential(new nn.Conv2d(3, 4, 3, { padding: 1 }), new nn.BatchNorm2d(4), new nn.Linear(4, 2));
  const names = [...model.stateDict().keys()];
  assert.deepEqual(names, ['0.weight', '0.bias', '1.weight', '1.bias', '2.weight', '2.bias', '1.running_mean', '1.running_var', '1.num_batches_tracked']);
  assert.equal(model.parameters().length, 6);
  model.eval();
  assert.ok(model.modules().every((m) => !m.training));
  const other = new nn.Sequential(new nn.Conv2d(3, 4, 3, { padding: 1 }), new nn.BatchNorm2d(4), new nn.Linear(4, 2));
  other.loadStateDict(model.stateDict());
  tidy(() => assert.equal(other.parameters()[0].sub(model.parameters()[0]).abs().max().item(), 0));
  const partial = new Map(model.stateDict());
  partial.delete('2.bias');
  tidy(() => partial.set('extra', zeros([1])));
  assert.throws(() => other.loadStateDict(partial), /missing keys: 2\.bias; unexpected keys: extra/);
  assert.deepEqual(other.loadStateDict(partial, { strict: false }), { missingKeys: ['2.bias'], unexpectedKeys: ['extra'] });
  const wrong = new nn.Sequential(new nn.Conv2d(3, 8, 3), new nn.BatchNorm2d(8), new nn.Linear(8, 2));
  assert.throws(() => wrong.loadStateDict(model.stateDict()), /0\.weight: shape \[4, 3, 3, 3\] in the state dict, \[8, 3, 3, 3\] in the model/);
});
