// Finite-difference checks (float64) of the autograd gradients of every differentiable op and
// layer the models use (BEiT's attention and the QuickGELU MLP included): autograd vs central differences, element by element, in every input.
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import {
  cat, Generator, manualSeed, noGrad, rand, randn, randperm, setNumThreads, stack, type Tensor, tensor, tidy,
} from '../src/index.js';
import * as nn from '../src/nn/index.js';
import * as F from '../src/nn/functional.js';
import { BeitAttention } from '../src/models/beit.js';
import { analyticGradients, gradcheck, type GradcheckOptions, numericGradients, project } from './helpers/gradcheck.js';

type Fn = (inputs: Tensor[]) => Tensor;
const f64 = { dtype: 'float64' } as const;
// Thousands of evaluations on tiny tensors: threads only add synchronisation cost.
setNumThreads(1);

const long = (data: number[] | number[][]): Tensor => tensor(data, { dtype: 'int64' });

// ---- inputs: float64 leaves that require grad ----
let generator = new Generator(0);
const seed = (value: number): void => { generator = new Generator(value); };
/** Standard normal leaf. */
const normal = (...shape: number[]): Tensor => randn(shape, { ...f64, generator, requiresGrad: true });
/** Uniform leaf in [low, high). */
const uniform = (low: number, high: number, ...shape: number[]): Tensor => {
  const x = noGrad(() => rand(shape, { ...f64, generator }).mul(high - low).add(low));
  return x.requiresGrad_(true);
};
/** Normal values pushed at least 0.2 away from 0 (relu, abs: no kinks within eps). */
const awayFromZero = (...shape: number[]): Tensor => {
  const x = noGrad(() => { const r = randn(shape, { ...f64, generator }); return r.add(r.sign().mul(0.2)); });
  return x.requiresGrad_(true);
};
/** Distinct values at least 0.09 apart in random order (max pooling: no ties within eps). */
const distinct = (...shape: number[]): Tensor => {
  const n = shape.reduce((a, b) => a * b, 1);
  const x = noGrad(() => randperm(n, { generator }).to(f64).mul(0.1)
    .add(rand([n], { ...f64, generator }).mul(0.01)).sub(n * 0.05).reshape(...shape));
  return x.requiresGrad_(true);
};
/** A constant (no grad). */
const constant = (...shape: number[]): Tensor => randn(shape, { ...f64, generator });
/** Rows of probabilities (no grad unless asked). */
const probabilities = (rows: number, columns: number, requiresGrad = false): Tensor => {
  const p = noGrad(() => rand([rows, columns], { ...f64, generator }).add(0.1).softmax(-1));
  return requiresGrad ? p.requiresGrad_(true) : p;
};

/** gradcheck with names; asserts every element was compared and the gradients were not all zero. */
function check(t: TestContext, name: string, f: Fn, inputs: Tensor[], options: GradcheckOptions = {}): void {
  const names = options.names ?? inputs.map((_, i) => `x${i}`);
  const report = gradcheck(f, inputs, { ...options, names });
  const expected = inputs.filter((x) => x.requiresGrad).reduce((total, x) => total + x.numel, 0);
  assert.equal(report.checked, expected, `${name}: compared every element`);
  assert.ok(report.maxGradient > 1e-3, `${name}: gradients are not all zero (max ${report.maxGradient})`);
  t.diagnostic(`${name}: ${report.checked} elements, max |err| ${report.maxAbsError.toExponential(2)}, worst err/tol ${report.worstRatio.toExponential(2)}`);
}

test('the checker catches a wrong gradient, names the element, and restores the inputs', () => {
  tidy(() => {
    seed(1);
    const x = normal(2, 3);
    const before = Array.from(x.toTypedArray() as Float64Array);
    // d/dx sum(x * stopgrad(x) * w) is x * w for autograd, 2 x * w in truth.
    assert.throws(() => gradcheck((xs) => project(xs[0].mul(xs[0].detach())), [x], { names: ['x'] }),
      (error: Error) => /gradcheck: d\/dx\[\d, \d\] \(flat \d\): autograd .* finite difference/.test(error.message));
    // Right gradients of the same function (no detach) pass, and the inputs are bit-identical after.
    const report = gradcheck((xs) => project(xs[0].mul(xs[0])), [x]);
    assert.equal(report.checked, 6);
    assert.ok(report.worstRatio <= 1 && report.maxAbsError < 1e-8, `max |err| ${report.maxAbsError}`);
    assert.deepEqual(Array.from(x.toTypedArray() as Float64Array), before);
    assert.equal(x.grad, null, 'the checker leaves no .grad behind');
    // Numeric gradients of a known function: d/dx sum(x^3) = 3x^2.
    const [numeric] = numericGradients((xs) => xs[0].pow(3).sum(), [x]);
    before.forEach((v, i) => assert.ok(Math.abs((numeric as Float64Array)[i] - 3 * v * v) < 1e-7));
    // Inputs that do not require grad are constants; float32 inputs are refused.
    const c = constant(2, 3);
    assert.equal(gradcheck((xs) => project(xs[0].mul(xs[1])), [x, c]).checked, 6);
    assert.throws(() => gradcheck((xs) => xs[0].sum(), [randn([2], { requiresGrad: true })]), /float32; finite differences need float64/);
    assert.throws(() => gradcheck((xs) => project(xs[0]).float(), [x]), /must compute in float64/);
    assert.throws(() => gradcheck((xs) => project(xs[0].mul(rand([2, 3], f64))), [x]), /f is not deterministic/);
  });
});

test('add, sub, mul, div, pow with broadcasting and scalars', (t) => {
  tidy(() => {
    seed(2);
    const a = normal(2, 3, 1);
    const b = normal(1, 4);
    const positive = uniform(0.5, 2, 1, 4);
    const base = uniform(0.5, 2, 2, 3, 1);
    const names = ['a', 'b'];
    check(t, 'add', (xs) => project(xs[0].add(xs[1])), [a, b], { names });
    check(t, 'add alpha', (xs) => project(xs[0].add(xs[1], -0.7)), [a, b], { names });
    check(t, 'sub', (xs) => project(xs[0].sub(xs[1])), [a, b], { names });
    check(t, 'mul', (xs) => project(xs[0].mul(xs[1])), [a, b], { names });
    check(t, 'div', (xs) => project(xs[0].div(xs[1])), [a, positive], { names });
    check(t, 'scalar ops', (xs) => project(xs[0].add(1.5).mul(-2).sub(0.25).div(3).rsub(1).neg()), [a]);
    check(t, 'pow scalar', (xs) => project(xs[0].pow(2.5)), [base]);
    check(t, 'pow tensor', (xs) => project(xs[0].pow(xs[1])), [base, b], { names: ['base', 'exponent'] });
    check(t, 'same tensor twice', (xs) => project(xs[0].mul(xs[0]).add(xs[0])), [a]);
  });
});

test('matmul, bmm, mm, linear', (t) => {
  tidy(() => {
    seed(3);
    check(t, 'matmul broadcast [2,3,4]@[4,5]', (xs) => project(xs[0].matmul(xs[1])), [normal(2, 3, 4), normal(4, 5)]);
    check(t, 'matmul batched [2,3,4]@[2,4,2]', (xs) => project(xs[0].matmul(xs[1])), [normal(2, 3, 4), normal(2, 4, 2)]);
    check(t, 'matmul matrix-vector', (xs) => project(xs[0].matmul(xs[1])), [normal(3, 4), normal(4)]);
    check(t, 'bmm', (xs) => project(xs[0].bmm(xs[1])), [normal(2, 3, 4), normal(2, 4, 2)]);
    check(t, 'mm', (xs) => project(xs[0].mm(xs[1])), [normal(3, 4), normal(4, 2)]);
    const names = ['input', 'weight', 'bias'];
    check(t, 'linear with bias', (xs) => project(F.linear(xs[0], xs[1], xs[2])), [normal(2, 3, 4), normal(5, 4), normal(5)], { names });
    check(t, 'linear without bias', (xs) => project(F.linear(xs[0], xs[1])), [normal(3, 4), normal(5, 4)], { names });
  });
});

test('conv2d: plain, stride 2, padding 1, dilation 2, groups 2', (t) => {
  tidy(() => {
    seed(4);
    const names = ['input', 'weight', 'bias'];
    const conv = (options: F.Conv2dOptions): Fn => (xs) => project(F.conv2d(xs[0], xs[1], xs[2], options));
    check(t, 'conv2d plain', conv({}), [normal(2, 2, 4, 4), normal(3, 2, 3, 3), normal(3)], { names });
    check(t, 'conv2d stride 2', conv({ stride: 2 }), [normal(1, 2, 5, 5), normal(3, 2, 3, 3), normal(3)], { names });
    check(t, 'conv2d padding 1', conv({ padding: 1 }), [normal(1, 2, 4, 4), normal(3, 2, 3, 3), normal(3)], { names });
    check(t, 'conv2d dilation 2', conv({ dilation: 2 }), [normal(1, 2, 6, 6), normal(3, 2, 3, 3), normal(3)], { names });
    check(t, 'conv2d groups 2', conv({ groups: 2 }), [normal(1, 4, 4, 4), normal(4, 2, 3, 3), normal(4)], { names });
    check(t, 'conv2d stride [2,1] padding [1,0], no bias', (xs) => project(F.conv2d(xs[0], xs[1], null, { stride: [2, 1], padding: [1, 0] })),
      [normal(1, 2, 5, 4), normal(2, 2, 2, 3)], { names });
    check(t, 'conv2d patch embedding (kernel = stride)', conv({ stride: 2 }), [normal(1, 3, 4, 4), normal(4, 3, 2, 2), normal(4)], { names });
  });
});

test('pooling: maxPool2d, avgPool2d, adaptiveAvgPool2d', (t) => {
  tidy(() => {
    seed(5);
    check(t, 'maxPool2d k2', (xs) => project(F.maxPool2d(xs[0], 2)), [distinct(1, 2, 4, 4)]);
    check(t, 'maxPool2d k3 s2 p1 (overlapping)', (xs) => project(F.maxPool2d(xs[0], 3, 2, 1)), [distinct(2, 2, 5, 5)]);
    check(t, 'avgPool2d k2', (xs) => project(F.avgPool2d(xs[0], 2)), [normal(1, 2, 4, 4)]);
    check(t, 'avgPool2d k3 s2 p1', (xs) => project(F.avgPool2d(xs[0], 3, 2, 1)), [normal(1, 2, 5, 5)]);
    check(t, 'avgPool2d k3 s2 p1 exclude pad', (xs) => project(F.avgPool2d(xs[0], 3, 2, 1, false, false)), [normal(1, 2, 5, 5)]);
    check(t, 'adaptiveAvgPool2d 5x7 -> 2x3', (xs) => project(F.adaptiveAvgPool2d(xs[0], [2, 3])), [normal(1, 2, 5, 7)]);
    check(t, 'adaptiveAvgPool2d global', (xs) => project(F.adaptiveAvgPool2d(xs[0], 1)), [normal(2, 3, 3, 3)]);
  });
});

test('layerNorm and batchNorm (training and eval)', (t) => {
  tidy(() => {
    seed(6);
    const names = ['input', 'weight', 'bias'];
    check(t, 'layerNorm [4]', (xs) => project(F.layerNorm(xs[0], [4], xs[1], xs[2])), [normal(2, 3, 4), normal(4), normal(4)], { names });
    check(t, 'layerNorm [3,4] eps 1e-6', (xs) => project(F.layerNorm(xs[0], [3, 4], xs[1], xs[2], 1e-6)), [normal(2, 3, 4), normal(3, 4), normal(3, 4)], { names });
    check(t, 'layerNorm no affine', (xs) => project(F.layerNorm(xs[0], [5])), [normal(3, 5)]);
    check(t, 'batchNorm training', (xs) => project(F.batchNorm(xs[0], { weight: xs[1], bias: xs[2], training: true })),
      [normal(3, 2, 2, 3), normal(2), normal(2)], { names });
    // Running statistics are updated on every evaluation but do not enter the training output.
    const runningMean = constant(2);
    const runningVar = noGrad(() => rand([2], { ...f64, generator }).add(0.5));
    check(t, 'batchNorm training with running stats', (xs) => project(F.batchNorm(xs[0], { weight: xs[1], bias: xs[2], runningMean, runningVar, training: true, momentum: 0.3 })),
      [normal(4, 2, 2, 2), normal(2), normal(2)], { names });
    check(t, 'batchNorm eval', (xs) => project(F.batchNorm(xs[0], { weight: xs[1], bias: xs[2], runningMean, runningVar, training: false })),
      [normal(2, 2, 2, 2), normal(2), normal(2)], { names });
    check(t, 'batchNorm on [N, C] (BatchNorm1d)', (xs) => project(F.batchNorm(xs[0], { weight: xs[1], bias: xs[2], training: true })),
      [normal(5, 3), normal(3), normal(3)], { names });
    const bn = new nn.BatchNorm2d(3).to(f64);
    noGrad(() => { bn.weight.copy_(randn([3], { ...f64, generator })); bn.bias.copy_(randn([3], { ...f64, generator })); });
    check(t, 'nn.BatchNorm2d train', (xs) => project(bn.forward(xs[0])), [normal(2, 3, 2, 2), bn.weight, bn.bias], { names });
    bn.eval();
    check(t, 'nn.BatchNorm2d eval', (xs) => project(bn.forward(xs[0])), [normal(2, 3, 2, 2), bn.weight, bn.bias], { names });
    bn.dispose();
  });
});

test('activations and elementwise functions', (t) => {
  tidy(() => {
    seed(7);
    const x = normal(3, 4);
    check(t, 'gelu erf', (xs) => project(xs[0].gelu()), [x]);
    check(t, 'gelu tanh', (xs) => project(xs[0].gelu('tanh')), [x]);
    check(t, 'relu (away from 0)', (xs) => project(xs[0].relu()), [awayFromZero(3, 4)]);
    check(t, 'abs (away from 0)', (xs) => project(xs[0].abs()), [awayFromZero(3, 4)]);
    check(t, 'silu', (xs) => project(xs[0].silu()), [x]);
    check(t, 'sigmoid', (xs) => project(xs[0].sigmoid()), [x]);
    check(t, 'tanh', (xs) => project(xs[0].tanh()), [x]);
    check(t, 'exp', (xs) => project(xs[0].exp()), [x]);
    check(t, 'erf', (xs) => project(xs[0].erf()), [x]);
    check(t, 'square', (xs) => project(xs[0].square()), [x]);
    const positive = uniform(0.3, 3, 3, 4);
    check(t, 'log', (xs) => project(xs[0].log()), [positive]);
    check(t, 'sqrt', (xs) => project(xs[0].sqrt()), [positive]);
    check(t, 'rsqrt', (xs) => project(xs[0].rsqrt()), [positive]);
    check(t, 'reciprocal', (xs) => project(xs[0].reciprocal()), [positive]);
    check(t, 'softmax dim -1', (xs) => project(xs[0].softmax(-1)), [normal(2, 3, 4)]);
    check(t, 'softmax dim 1', (xs) => project(xs[0].softmax(1)), [normal(2, 3, 4)]);
    check(t, 'logSoftmax dim -1', (xs) => project(xs[0].logSoftmax(-1)), [normal(2, 3, 4)]);
    check(t, 'logSoftmax dim 0', (xs) => project(xs[0].logSoftmax(0)), [normal(3, 4)]);
    check(t, 'logsumexp', (xs) => project(xs[0].logsumexp(-1)), [normal(3, 4)]);
  });
});

test('reductions: sum, mean, var, std, norm over dims', (t) => {
  tidy(() => {
    seed(8);
    const x = normal(2, 3, 4);
    check(t, 'sum all', (xs) => xs[0].sum().mul(xs[0].sum()), [x]);
    check(t, 'sum dim 1', (xs) => project(xs[0].sum(1)), [x]);
    check(t, 'sum dims [0,2] keepdim', (xs) => project(xs[0].sum([0, 2], true)), [x]);
    check(t, 'mean all', (xs) => xs[0].mean().mul(xs[0].mean()), [x]);
    check(t, 'mean dim -1', (xs) => project(xs[0].mean(-1)), [x]);
    check(t, 'mean dims [0,1] keepdim', (xs) => project(xs[0].mean([0, 1], true)), [x]);
    check(t, 'var all (unbiased)', (xs) => xs[0].var(), [x]);
    check(t, 'var dim 1 (unbiased)', (xs) => project(xs[0].var(1)), [x]);
    check(t, 'var dims [0,2] biased keepdim', (xs) => project(xs[0].var([0, 2], false, true)), [x]);
    check(t, 'std dim -1', (xs) => project(xs[0].std(-1)), [x]);
    check(t, 'norm all', (xs) => xs[0].norm(), [x]);
    check(t, 'norm dim -1', (xs) => project(xs[0].norm(2, -1)), [x]);
    check(t, 'norm p=1 dims [0,2] keepdim', (xs) => project(xs[0].norm(1, [0, 2], true)), [awayFromZero(2, 3, 4)]);
  });
});

test('indexing: gather, indexSelect, narrow, select, slice, unbind, chunk', (t) => {
  tidy(() => {
    seed(9);
    const x = normal(3, 4);
    // Repeated indices: the gradient of a gathered element accumulates.
    check(t, 'gather dim 1', (xs) => project(xs[0].gather(1, long([[0, 0, 3], [1, 2, 1], [3, 3, 3]]))), [x]);
    check(t, 'gather dim 0', (xs) => project(xs[0].gather(0, long([[2, 0, 1, 2], [2, 2, 0, 1]]))), [x]);
    check(t, 'indexSelect dim 0', (xs) => project(xs[0].indexSelect(0, long([2, 0, 2]))), [x]);
    check(t, 'indexSelect dim 1', (xs) => project(xs[0].indexSelect(1, long([3, 1, 1, 0, 3]))), [x]);
    check(t, 'narrow, select, slice', (xs) => project(cat([xs[0].narrow(1, 1, 2), xs[0].select(1, 3).unsqueeze(1), xs[0].slice(1, 0, null, 2)], 1)), [x]);
    check(t, 'unbind and chunk', (xs) => {
      const [r0, r1, r2] = xs[0].unbind(0);
      const [c0, c1] = xs[0].chunk(2, 1);
      return project(r0.mul(r1).add(r2)).add(project(c0.mul(c1)));
    }, [x]);
  });
});

test('cat, stack, reshape, permute, transpose, flatten, expand, pad', (t) => {
  tidy(() => {
    seed(10);
    const a = normal(2, 3);
    const b = normal(2, 1);
    const c = normal(2, 2);
    check(t, 'cat dim 1', (xs) => project(cat([xs[0], xs[1], xs[2]], 1)), [a, b, c], { names: ['a', 'b', 'c'] });
    check(t, 'cat dim 0', (xs) => project(cat([xs[0], xs[1].t()], 0)), [a, normal(3, 1)], { names: ['a', 'b'] });
    check(t, 'stack dim 1', (xs) => project(stack([xs[0], xs[1].mul(2)], 1)), [a, normal(2, 3)], { names: ['a', 'b'] });
    const x = normal(2, 3, 4);
    check(t, 'reshape', (xs) => project(xs[0].reshape(4, 6).mul(xs[0].reshape(4, 6).flip(0))), [x]);
    check(t, 'permute', (xs) => project(xs[0].permute(2, 0, 1).matmul(xs[0].permute(2, 1, 0).sum(-1, true))), [x]);
    check(t, 'transpose', (xs) => project(xs[0].transpose(0, 2).contiguous().view(-1).mul(xs[0].view(-1))), [x]);
    check(t, 'flatten', (xs) => project(xs[0].flatten(1).matmul(xs[0].flatten().reshape(12, 2))).add(project(xs[0].flatten(0, 1).pow(2))), [x]);
    check(t, 'expand, squeeze, unsqueeze', (xs) => project(xs[0].expand(3, 2, 4).mul(xs[0].squeeze(1).unsqueeze(0).transpose(0, 1))), [normal(3, 1, 4)]);
    check(t, 'pad constant 1-d', (xs) => project(xs[0].pad([1, 2], 'constant', 0.5).pow(2)), [x]);
    check(t, 'pad constant 2-d', (xs) => project(xs[0].pad([1, 0, 2, 1]).pow(2)), [x]);
    check(t, 'pad reflect', (xs) => project(xs[0].pad([2, 1], 'reflect').pow(2)), [x]);
    check(t, 'pad replicate', (xs) => project(xs[0].unsqueeze(0).pad([1, 1, 1, 0], 'replicate').pow(2)), [x]);
  });
});

test('losses: crossEntropy (hard, soft, smoothed, weighted, ignored), BCE with logits, KL, MSE', (t) => {
  tidy(() => {
    seed(11);
    const logits = normal(4, 5);
    const hard = long([1, 4, 1, 0]);
    const names = ['logits', 'target'];
    check(t, 'crossEntropy hard mean', (xs) => F.crossEntropy(xs[0], hard), [logits]);
    check(t, 'crossEntropy hard sum', (xs) => F.crossEntropy(xs[0], hard, { reduction: 'sum' }), [logits]);
    check(t, 'crossEntropy hard none', (xs) => project(F.crossEntropy(xs[0], hard, { reduction: 'none' })), [logits]);
    check(t, 'crossEntropy soft targets (grad to logits and targets)', (xs) => F.crossEntropy(xs[0], xs[1]), [logits, probabilities(4, 5, true)], { names });
    check(t, 'crossEntropy label smoothing 0.1', (xs) => F.crossEntropy(xs[0], hard, { labelSmoothing: 0.1 }), [logits]);
    check(t, 'crossEntropy soft targets + smoothing 0.1', (xs) => F.crossEntropy(xs[0], xs[1], { labelSmoothing: 0.1 }), [logits, probabilities(4, 5)]);
    const weight = noGrad(() => rand([5], { ...f64, generator }).add(0.5));
    check(t, 'crossEntropy class weights + smoothing', (xs) => F.crossEntropy(xs[0], hard, { weight, labelSmoothing: 0.2 }), [logits]);
    check(t, 'crossEntropy ignoreIndex', (xs) => F.crossEntropy(xs[0], long([1, -100, 3, 0])), [logits]);
    check(t, 'crossEntropy on [N, C, L]', (xs) => F.crossEntropy(xs[0], long([[0, 2, 1], [2, 2, 0]])), [normal(2, 3, 3)]);
    const targets = noGrad(() => rand([3, 4], { ...f64, generator }));
    check(t, 'BCE with logits mean', (xs) => F.binaryCrossEntropyWithLogits(xs[0], targets), [normal(3, 4)]);
    const bceWeight = noGrad(() => rand([3, 4], { ...f64, generator }).add(0.5));
    const posWeight = tensor([0.5, 1, 2, 3], f64);
    check(t, 'BCE with logits sum, weight, posWeight', (xs) => F.binaryCrossEntropyWithLogits(xs[0], targets, { reduction: 'sum', weight: bceWeight, posWeight }),
      [normal(3, 4)]);
    check(t, 'BCE with logits none (grad to logits and targets)', (xs) => project(F.binaryCrossEntropyWithLogits(xs[0], xs[1], { reduction: 'none' })),
      [normal(3, 4), uniform(0, 1, 3, 4)], { names });
    check(t, 'klDiv sum (distillation)', (xs) => F.klDiv(xs[0].logSoftmax(-1), xs[1].softmax(-1), 'sum'), [normal(3, 4), normal(3, 4)], { names: ['student', 'teacher'] });
    check(t, 'mseLoss', (xs) => F.mseLoss(xs[0], xs[1]), [normal(3, 4), normal(3, 4)], { names: ['input', 'target'] });
  });
});

test('nn.Attention (float64) w.r.t. input, qkv and proj weights', (t) => {
  tidy(() => {
    manualSeed(12);
    seed(12);
    const attention = new nn.Attention(4, 2, true).to(f64);
    // Larger weights than the default init, so that the softmax is far from uniform.
    noGrad(() => attention.qkv.weight.mul_(3));
    const f: Fn = (xs) => project(attention.forward(xs[0]));
    check(t, 'Attention qkvBias', f, [normal(2, 3, 4), attention.qkv.weight, attention.qkv.bias as Tensor, attention.proj.weight, attention.proj.bias as Tensor],
      { names: ['input', 'qkv.weight', 'qkv.bias', 'proj.weight', 'proj.bias'] });
    attention.dispose();
    const plain = new nn.Attention(6, 3).to(f64);
    noGrad(() => plain.qkv.weight.mul_(3));
    check(t, 'Attention no qkv bias', (xs) => project(plain.forward(xs[0])), [normal(1, 4, 6), plain.qkv.weight], { names: ['input', 'qkv.weight'] });
    plain.dispose();
  });
});

test('nn.Mlp (float64) w.r.t. input and all parameters', (t) => {
  tidy(() => {
    manualSeed(13);
    seed(13);
    const mlp = new nn.Mlp(4, 6, 3).to(f64);
    check(t, 'Mlp', (xs) => project(mlp.forward(xs[0])), [normal(2, 4), ...mlp.parameters()],
      { names: ['input', ...mlp.namedParameters().map(([name]) => name)] });
    mlp.dispose();
  });
});

test('BEiT\'s attention (q_bias / v_bias, relative position bias) and the QuickGELU Mlp (float64) w.r.t. input and all parameters', (t) => {
  tidy(() => {
    manualSeed(15);
    seed(15);
    // A 2x2 grid and the class token: 5 tokens, a table of 3 * 3 + 3 rows.
    const attention = new BeitAttention(4, 2, 2, true, 0).to(f64);
    noGrad(() => { for (const p of attention.parameters()) p.add_(randn(p.shape, { ...f64, generator }).mul(0.5)); });
    check(t, 'BeitAttention', (xs) => project(attention.forward(xs[0])), [normal(2, 5, 4), ...attention.parameters()],
      { names: ['input', ...attention.namedParameters().map(([name]) => name)] });
    attention.dispose();
    const mlp = new nn.Mlp(4, 6, 3, 0, 'quick_gelu').to(f64);
    check(t, 'Mlp quick_gelu', (xs) => project(mlp.forward(xs[0])), [normal(2, 4), ...mlp.parameters()],
      { names: ['input', ...mlp.namedParameters().map(([name]) => name)] });
    mlp.dispose();
  });
});

test('nn.Linear, nn.Conv2d, nn.LayerNorm modules (float64)', (t) => {
  tidy(() => {
    manualSeed(14);
    seed(14);
    const modules: [string, nn.Layer, number[]][] = [
      ['Linear', new nn.Linear(3, 4), [2, 3]],
      ['Conv2d', new nn.Conv2d(4, 4, 3, { stride: 2, padding: 1, groups: 2 }), [1, 4, 5, 5]],
      ['LayerNorm', new nn.LayerNorm(4), [2, 3, 4]],
    ];
    for (const [name, module, shape] of modules) {
      module.to(f64);
      noGrad(() => { for (const p of module.parameters()) p.add_(randn(p.shape, { ...f64, generator }).mul(0.5)); });
      check(t, name, (xs) => project(module.forward(xs[0])), [normal(...shape), ...module.parameters()],
        { names: ['input', ...module.namedParameters().map(([n]) => n)] });
      module.dispose();
    }
  });
});

test('gradients of two forward/backward passes accumulate to the sum of both', (t) => {
  tidy(() => {
    seed(15);
    const x = normal(3, 4);
    const w = normal(4, 5);
    const inputs = [x, w];
    const target = long([0, 3, 4]);
    // Two different losses over the same leaves (as MaskSub's main and sub-model losses).
    const f1: Fn = (xs) => F.crossEntropy(xs[0].matmul(xs[1]), target);
    const f2: Fn = (xs) => project(xs[0].gelu().matmul(xs[1].tanh()));
    const g1 = analyticGradients(f1, inputs) as Float64Array[];
    const g2 = analyticGradients(f2, inputs) as Float64Array[];
    const numericSum = numericGradients((xs) => f1(xs).add(f2(xs)), inputs) as Float64Array[];
    const read = (tensor: Tensor): number[] => Array.from(tidy(() => tensor.grad as Tensor).toTypedArray() as Float64Array);
    const compare = (label: string, actual: number[], expected: ArrayLike<number>, tolerance: number): number => {
      assert.equal(actual.length, expected.length);
      let worst = 0;
      for (let i = 0; i < actual.length; i++) worst = Math.max(worst, Math.abs(actual[i] - expected[i]));
      assert.ok(worst <= tolerance, `${label}: max |err| ${worst}`);
      return worst;
    };
    // f1 backward, then f2 backward, no zeroing in between.
    tidy(() => f1(inputs).backward());
    tidy(() => f2(inputs).backward());
    let worst = 0;
    inputs.forEach((leaf, i) => {
      const accumulated = read(leaf);
      const sum = Array.from(g1[i], (v, j) => v + g2[i][j]);
      worst = Math.max(worst, compare(`x${i}: accumulated vs g1 + g2`, accumulated, sum, 1e-12));
      compare(`x${i}: accumulated vs numeric gradient of f1 + f2`, accumulated, numericSum[i], 1e-6);
      // Both passes contribute: the sum is neither pass alone.
      assert.ok(Math.max(...Array.from(g1[i], Math.abs)) > 1e-2 && Math.max(...Array.from(g2[i], Math.abs)) > 1e-2);
      leaf.zeroGrad();
    });
    // The same graph backpropagated twice (retainGraph) doubles the gradient.
    tidy(() => {
      const loss = f2(inputs);
      loss.backward(undefined, true);
      loss.backward();
    });
    inputs.forEach((leaf, i) => {
      compare(`x${i}: two backward calls through one retained graph`, read(leaf), Array.from(g2[i], (v) => 2 * v), 1e-12);
      leaf.zeroGrad();
    });
    t.diagnostic(`accumulation: max |accumulated - (g1 + g2)| ${worst.toExponential(2)}`);
  });
});
