// Optimizer tests: AdamW, SGD and clipGradNorm against torch.optim on identical weights and
// gradients, LAMB against a reference written from timm's algorithm, schedules, EMA, weight
// decay groups, exact resume from state dicts, and no tensor leaks across steps.
// torch.optim runs the same libtorch kernels, so agreement checks that our update rules compose
// the same arithmetic in the same order (plumbing, not the kernels); LAMB's reference is written
// from timm's algorithm in plain tensor ops, and the schedule tests use hand-computed values.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Generator, liveTensors, manualSeed, noGrad, randint, randn, type Tensor, tensor, tidy, zeros, fromBytes } from '../src/index.js';
import * as nn from '../src/nn/index.js';
import * as F from '../src/nn/functional.js';
import {
  AdamW, applyLr, clipGradNorm, gradNorm, Lamb, ModelEma, type Optimizer, type OptimizerStateDict, paramGroupsWithWeightDecay,
  SGD, type SGDOptions, type LambOptions, WarmupCosineSchedule,
} from '../src/optim/index.js';
import { native } from '../src/tensor/native.js';
import { relativeError, runTorch } from './helpers/torch.js';

const SHAPES = [[16, 8], [8], [8, 4], [4]];
const STEPS = 5;
const LRS = [0.05, 0.04, 0.03, 0.02, 0.01];
const GRAD_SCALES = [0.01, 1, 0.02, 2, 0.005];
const WEIGHT_DECAY = 0.05;

/** Initial weights (parameter 2 starts at zero, to reach LAMB's zero-norm branch). */
function initialWeights(): Tensor[] {
  const generator = new Generator(11);
  return SHAPES.map((shape, i) => (i === 2 ? zeros(shape) : randn(shape, { generator })));
}

/** Gradients by step then parameter; null where a parameter gets no gradient that step. */
function gradientSequence(withGaps: boolean): (Tensor | null)[][] {
  const generator = new Generator(12);
  return Array.from({ length: STEPS }, (_, step) => SHAPES.map((shape, i) => {
    const grad = randn(shape, { generator }).mul(GRAD_SCALES[step]);
    return withGaps && step === 2 && i === 3 ? null : grad;
  }));
}

function torchInputs(weights: Tensor[], grads: (Tensor | null)[][]): Record<string, Tensor> {
  const inputs: Record<string, Tensor> = {};
  weights.forEach((weight, i) => { inputs[`p${i}`] = weight; });
  grads.forEach((row, step) => row.forEach((grad, i) => { if (grad) inputs[`g${step}_${i}`] = grad; }));
  return inputs;
}

// Two groups as a training run has them: decayed weights at full lr, undecayed ones at half lr.
const pythonSetup = `
N, S = ${SHAPES.length}, ${STEPS}
LRS = ${JSON.stringify(LRS)}
SCALES = [1.0, 0.5]
params = [inp[f'p{i}'].clone().requires_grad_(True) for i in range(N)]
groups = [{'params': [params[0], params[2]], 'weight_decay': ${WEIGHT_DECAY}}, {'params': [params[1], params[3]], 'weight_decay': 0.0}]
def feed(s):
    for i, p in enumerate(params):
        key = f'g{s}_{i}'
        p.grad = inp[key].clone() if key in inp else None
`;

/** Fresh parameters holding copies (a Parameter shares its argument's storage). */
function makeParams(weights: Tensor[]): nn.Parameter[] {
  return weights.map((weight) => new nn.Parameter(weight.clone()));
}

function groupsOf(params: nn.Parameter[]): { params: nn.Parameter[]; weightDecay: number; lrScale?: number }[] {
  return [
    { params: [params[0], params[2]], weightDecay: WEIGHT_DECAY },
    { params: [params[1], params[3]], weightDecay: 0, lrScale: 0.5 },
  ];
}

function runSteps(optimizer: Optimizer, params: nn.Parameter[], grads: (Tensor | null)[][], steps: number[]): void {
  for (const step of steps) {
    applyLr(optimizer, LRS[step]);
    params.forEach((param, i) => { param.grad = grads[step][i]?.clone() ?? null; });
    optimizer.step();
  }
}

/**
 * max |a - b| / max |b|: stricter than relativeError for moments, whose values are far below 1
 * (exp_avg_sq is ~1e-6 here), so they are judged against their own scale.
 */
function scaledError(actual: Tensor, expected: Tensor): number {
  const a = Array.from(actual.toTypedArray() as Float32Array);
  const b = Array.from(expected.toTypedArray() as Float32Array);
  assert.equal(a.length, b.length);
  const scale = Math.max(...b.map(Math.abs));
  const worst = Math.max(...a.map((value, i) => Math.abs(value - b[i])));
  return scale === 0 ? worst : worst / scale;
}

/** Compares parameters, moment buffers and step counts with the torch outputs; returns the worst error. */
function compareWithTorch(optimizer: Optimizer, params: nn.Parameter[], expected: Record<string, Tensor>, bufferNames: string[]): number {
  let worst = 0;
  const state = optimizer.stateDict();
  const start = initialWeights();
  params.forEach((param, i) => {
    // Guards the comparison itself: an optimizer that did nothing must not pass.
    assert.ok(relativeError(param, start[i]) > 1e-3, `parameter ${i} moved`);
    const error = scaledError(param, expected[`p${i}`]);
    assert.ok(error < 1e-5, `parameter ${i}: relative error ${error}`);
    worst = Math.max(worst, error);
    // State is numbered in the optimizer's group order, not in the order of `params`.
    const index = optimizer.parameters.indexOf(param);
    for (const name of bufferNames) {
      const ours = state.tensors.get(`${index}.${name}`);
      assert.ok(ours, `our state has ${i}.${name}`);
      const bufferError = scaledError(ours, expected[`${name}${i}`]);
      assert.ok(bufferError < 1e-5, `${name} of parameter ${i}: relative error ${bufferError}`);
      worst = Math.max(worst, bufferError);
    }
    if (expected[`step${i}`]) assert.equal(state.scalars.steps[String(index)], expected[`step${i}`].item(), `step count of parameter ${i}`);
  });
  return worst;
}

/** Addon calls made by fn (every Tensor method and functional reaches libtorch through `native`). */
function countCalls(fn: () => void): number {
  const binding = native as unknown as Record<string, (...args: unknown[]) => unknown>;
  const originals = Object.entries(binding).filter(([, value]) => typeof value === 'function');
  let calls = 0;
  for (const [name, value] of originals) binding[name] = (...args: unknown[]) => { calls++; return value(...args); };
  try {
    fn();
  } finally {
    for (const [name, value] of originals) binding[name] = value;
  }
  return calls;
}

function disposeAll(...tensors: (Tensor | null)[]): void {
  for (const t of tensors) t?.dispose();
}

test('AdamW matches torch.optim.AdamW (two groups, lr changing per step, a missing gradient)', (t) => {
  tidy(() => {
    const weights = initialWeights();
    const grads = gradientSequence(true);
    const expected = runTorch(`${pythonSetup}
opt = torch.optim.AdamW(groups, lr=0.1, betas=(0.9, 0.98), eps=1e-8, weight_decay=0.3)
for s in range(S):
    for g, scale in zip(opt.param_groups, SCALES): g['lr'] = LRS[s] * scale
    feed(s)
    opt.step()
for i, p in enumerate(params):
    out[f'p{i}'] = p
    st = opt.state[p]
    out[f'exp_avg{i}'] = st['exp_avg']; out[f'exp_avg_sq{i}'] = st['exp_avg_sq']; out[f'step{i}'] = float(st['step'])
`, torchInputs(weights, grads));
    const params = makeParams(weights);
    const optimizer = new AdamW(groupsOf(params), { lr: 0.1, betas: [0.9, 0.98], eps: 1e-8, weightDecay: 0.3 });
    runSteps(optimizer, params, grads, [0, 1, 2, 3, 4]);
    const worst = compareWithTorch(optimizer, params, expected, ['exp_avg', 'exp_avg_sq']);
    t.diagnostic(`AdamW worst relative error ${worst.toExponential(2)}`);
    optimizer.dispose();
    disposeAll(...params);
  });
});

test('AdamW foreach (multi-tensor, the default) equals the single-tensor path bit for bit, and makes one addon call per op per group', () => {
  tidy(() => {
    const weights = initialWeights();
    const grads = gradientSequence(true);
    const run = (foreach: boolean): { params: nn.Parameter[]; state: OptimizerStateDict; calls: number } => {
      const params = makeParams(weights);
      const optimizer = new AdamW(groupsOf(params), { lr: 0.1, betas: [0.9, 0.98], eps: 1e-8, weightDecay: 0.3, foreach });
      const calls = countCalls(() => runSteps(optimizer, params, grads, [0, 1, 2, 3, 4]));
      const state = optimizer.stateDict();
      optimizer.dispose();
      return { params, state, calls };
    };
    const [single, multi] = [run(false), run(true)];
    single.params.forEach((param, i) => assert.deepEqual(multi.params[i]!.toTypedArray(), param.toTypedArray(), `parameter ${i}`));
    assert.deepEqual(multi.state.scalars, single.state.scalars);
    for (const [key, value] of single.state.tensors) assert.deepEqual(multi.state.tensors.get(key)!.toTypedArray(), value.toTypedArray(), key);
    // 4 parameters in 2 groups: the foreach path's calls do not grow with the parameter count.
    assert.ok(multi.calls < single.calls, `foreach made ${multi.calls} addon calls, the loop ${single.calls}`);
  });
});

/** Runs the same steps through the foreach (multi-tensor) and loop paths of an optimizer; asserts bit equality. */
function compareForeachWithLoop(make: (params: nn.Parameter[], foreach: boolean) => Optimizer, grads: (Tensor | null)[][], label: string): void {
  const weights = initialWeights();
  const run = (foreach: boolean): { params: nn.Parameter[]; state: OptimizerStateDict; calls: number } => {
    const params = makeParams(weights);
    const optimizer = make(params, foreach);
    const calls = countCalls(() => runSteps(optimizer, params, grads, [0, 1, 2, 3, 4]));
    const state = optimizer.stateDict();
    optimizer.dispose();
    return { params, state, calls };
  };
  const [single, multi] = [run(false), run(true)];
  single.params.forEach((param, i) => {
    // Guards the comparison: both paths must have moved the weights.
    assert.ok(relativeError(param, weights[i]) > 1e-4, `${label}: parameter ${i} moved`);
    assert.deepEqual(multi.params[i]!.toTypedArray(), param.toTypedArray(), `${label}: parameter ${i}`);
  });
  assert.deepEqual(multi.state.scalars, single.state.scalars);
  assert.ok(single.state.tensors.size > 0 || label.includes('no momentum'), `${label}: state tensors to compare`);
  for (const [key, value] of single.state.tensors) assert.deepEqual(multi.state.tensors.get(key)!.toTypedArray(), value.toTypedArray(), `${label}: ${key}`);
  assert.ok(multi.calls < single.calls, `${label}: foreach made ${multi.calls} addon calls, the loop ${single.calls}`);
}

test('SGD and LAMB foreach (multi-tensor, the default) equal their single-tensor paths bit for bit over 5 steps', () => {
  tidy(() => {
    const withGaps = gradientSequence(true);
    const sgd: [string, SGDOptions][] = [
      ['momentum + weight decay', { lr: 0.1, momentum: 0.9, weightDecay: 0.01 }],
      ['nesterov', { lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 0.01 }],
      ['dampening', { lr: 0.1, momentum: 0.8, dampening: 0.3 }],
      ['no momentum', { lr: 0.1, weightDecay: 0.02 }],
    ];
    // The gaps (a parameter without a gradient at step 2) make step 3 mix parameters with and
    // without state; a parameter that has no buffer yet takes the per-parameter start.
    for (const [label, options] of sgd) compareForeachWithLoop((params, foreach) => new SGD(groupsOf(params), { ...options, foreach }), withGaps, `SGD ${label}`);
    const lamb: [string, LambOptions][] = [
      ['defaults (clipping at 1)', { lr: 0.1, weightDecay: 0.3 }],
      ['trustClip + alwaysAdapt, no clipping, no bias correction', { lr: 0.05, weightDecay: 0.1, trustClip: true, alwaysAdapt: true, maxGradNorm: null, biasCorrection: false }],
      ['no grad averaging, tight clipping', { lr: 0.1, weightDecay: 0.3, gradAveraging: false, maxGradNorm: 0.05 }],
    ];
    for (const [label, options] of lamb) compareForeachWithLoop((params, foreach) => new Lamb(groupsOf(params), { ...options, foreach }), withGaps, `LAMB ${label}`);
  });
});

test('clipGradNorm and gradNorm are one addon call each', () => {
  tidy(() => {
    const generator = new Generator(6);
    const params = SHAPES.map((shape) => new nn.Parameter(zeros(shape)));
    params.forEach((param) => { param.grad = randn(param.shape, { generator }); });
    // Per parameter, reading .grad makes a handle and tidy disposes it (2 calls); the norms, the
    // clip factor and the scaling are then one call (measured before, in TypeScript: clipGradNorm
    // 41 and gradNorm 25 calls for these 4 parameters, 9 each now).
    assert.equal(countCalls(() => gradNorm(params)), 2 * params.length + 1);
    assert.equal(countCalls(() => clipGradNorm(params, 0.1)), 2 * params.length + 1);
    assert.ok(relativeError(params[0].grad as Tensor, zeros(SHAPES[0])) > 0, 'gradients still nonzero after clipping');
    disposeAll(...params);
  });
});

test('SGD matches torch.optim.SGD: momentum 0.9 with weight decay, with and without Nesterov', (t) => {
  tidy(() => {
    const weights = initialWeights();
    const grads = gradientSequence(true);
    const expected = runTorch(`${pythonSetup}
start = [p.detach().clone() for p in params]
for tag, nesterov in (('plain', False), ('nesterov', True)):
    with torch.no_grad():
        for p, s0 in zip(params, start): p.copy_(s0)
    # Fresh group dicts: torch.optim fills its defaults (nesterov included) into the dicts it gets.
    fresh = [{'params': g['params'], 'weight_decay': g['weight_decay']} for g in groups]
    opt = torch.optim.SGD(fresh, lr=0.1, momentum=0.9, nesterov=nesterov, weight_decay=0.01)
    for s in range(S):
        for g, scale in zip(opt.param_groups, SCALES): g['lr'] = LRS[s] * scale
        feed(s)
        opt.step()
    for i, p in enumerate(params):
        out[f'{tag}_p{i}'] = p.detach().clone()
        out[f'{tag}_momentum_buffer{i}'] = opt.state[p]['momentum_buffer']
`, torchInputs(weights, grads));
    for (const nesterov of [false, true]) {
      const tag = nesterov ? 'nesterov' : 'plain';
      const params = makeParams(weights);
      // Both sides' groups set their own weight decay (0.05 and 0), overriding the default 0.01.
      const optimizer = new SGD(groupsOf(params), { lr: 0.1, momentum: 0.9, nesterov, weightDecay: 0.01 });
      runSteps(optimizer, params, grads, [0, 1, 2, 3, 4]);
      const renamed: Record<string, Tensor> = {};
      for (const [key, value] of Object.entries(expected)) if (key.startsWith(`${tag}_`)) renamed[key.slice(tag.length + 1)] = value;
      const worst = compareWithTorch(optimizer, params, renamed, ['momentum_buffer']);
      t.diagnostic(`SGD (nesterov ${nesterov}) worst relative error ${worst.toExponential(2)}`);
      optimizer.dispose();
      disposeAll(...params);
    }
  });
});

test('LAMB matches a reference implementation of timm\'s Lamb.step', (t) => {
  tidy(() => {
    const weights = initialWeights();
    const grads = gradientSequence(false);
    // Written from the algorithm rather than from our code: a sequential global norm, the
    // bias-corrected moments divided first, a Python-float trust ratio.
    const expected = runTorch(`${pythonSetup}
beta1, beta2, eps, max_norm = 0.9, 0.999, 1e-6, 1.0
state = {}
clip_factors = []
with torch.no_grad():
    for s in range(S):
        feed(s)
        global_sq = torch.zeros(1)
        for g in groups:
            for p in g['params']:
                if p.grad is not None: global_sq += (p.grad * p.grad).sum()
        global_norm = global_sq.sqrt()
        clip = global_norm / max_norm if global_norm.item() > max_norm else torch.ones(1)
        clip_factors.append(clip.item())
        for g, scale in zip(groups, SCALES):
            lr = LRS[s] * scale
            wd = g['weight_decay']
            g['step'] = g.get('step', 0) + 1
            bc1 = 1 - beta1 ** g['step']
            bc2 = 1 - beta2 ** g['step']
            for p in g['params']:
                if p.grad is None: continue
                grad = p.grad / clip
                st = state.setdefault(id(p), {'m': torch.zeros_like(p), 'v': torch.zeros_like(p)})
                st['m'] = beta1 * st['m'] + (1 - beta1) * grad
                st['v'] = beta2 * st['v'] + (1 - beta2) * grad * grad
                m_hat = st['m'] / bc1
                v_hat = st['v'] / bc2
                update = m_hat / (v_hat.sqrt() + eps)
                if wd != 0:
                    update = update + wd * p
                    w_norm = p.norm().item()
                    u_norm = update.norm().item()
                    trust = w_norm / u_norm if w_norm > 0 and u_norm > 0 else 1.0
                    update = update * trust
                p -= lr * update
for i, p in enumerate(params):
    out[f'p{i}'] = p
    out[f'exp_avg{i}'] = state[id(p)]['m']
    out[f'exp_avg_sq{i}'] = state[id(p)]['v']
out['clip_factors'] = torch.tensor(clip_factors, dtype=torch.float64)
`, torchInputs(weights, grads));
    const factors = Array.from(expected.clip_factors.toTypedArray() as Float64Array);
    assert.ok(factors.some((f) => f === 1) && factors.some((f) => f > 1), `both clipped and unclipped steps: ${factors.join(', ')}`);
    const params = makeParams(weights);
    const optimizer = new Lamb(groupsOf(params), { lr: 0.1, weightDecay: 0.3 });
    runSteps(optimizer, params, grads, [0, 1, 2, 3, 4]);
    const worst = compareWithTorch(optimizer, params, expected, ['exp_avg', 'exp_avg_sq']);
    t.diagnostic(`LAMB worst relative error ${worst.toExponential(2)}`);
    // The step leaves the caller's gradients unscaled (timm divides them in place).
    assert.equal(relativeError(params[0].grad as Tensor, grads[4][0] as Tensor), 0);
    optimizer.dispose();
    disposeAll(...params);
  });
});

test('clipGradNorm and gradNorm match torch.nn.utils.clip_grad_norm_', (t) => {
  tidy(() => {
    const generator = new Generator(5);
    const grads = SHAPES.slice(0, 3).map((shape) => randn(shape, { generator }).mul(0.3));
    const cases: [number, number][] = [[1, 2], [0.5, 1], [1, Infinity], [1000, 2]];
    const inputs: Record<string, Tensor> = {};
    grads.forEach((grad, i) => { inputs[`g${i}`] = grad; });
    const expected = runTorch(`
cases = ${JSON.stringify(cases.map(([max, type]) => [max, type === Infinity ? 'inf' : type]))}
for k, (max_norm, norm_type) in enumerate(cases):
    params = [torch.zeros_like(inp[f'g{i}'], requires_grad=True) for i in range(3)]
    for i, p in enumerate(params): p.grad = inp[f'g{i}'].clone()
    total = torch.nn.utils.clip_grad_norm_(params, max_norm, float(norm_type))
    out[f'total{k}'] = total.item()
    for i, p in enumerate(params): out[f'c{k}_{i}'] = p.grad
`, inputs);
    let worst = 0;
    cases.forEach(([maxNorm, normType], k) => {
      const params = grads.map((grad) => new nn.Parameter(zeros(grad.shape)));
      params.forEach((param, i) => { param.grad = grads[i].clone(); });
      const before = gradNorm(params, normType);
      const total = clipGradNorm(params, maxNorm, normType);
      const reference = expected[`total${k}`].item();
      assert.equal(before, total);
      const totalError = Math.abs(total - reference) / reference;
      assert.ok(totalError < 1e-6, `case ${k}: total ${total} vs ${reference}`);
      worst = Math.max(worst, totalError);
      params.forEach((param, i) => {
        const error = scaledError(param.grad as Tensor, expected[`c${k}_${i}`]);
        assert.ok(error < 1e-6, `case ${k} grad ${i}: relative error ${error}`);
        worst = Math.max(worst, error);
      });
      if (maxNorm === 1000) params.forEach((param, i) => assert.equal(relativeError(param.grad as Tensor, grads[i]), 0, 'no clipping leaves grads as they were'));
      disposeAll(...params);
    });
    t.diagnostic(`clipGradNorm worst relative error ${worst.toExponential(2)}`);
    assert.equal(clipGradNorm([new nn.Parameter(zeros([2]))], 1), 0, 'no gradients: norm 0');
  });
});

test('WarmupCosineSchedule follows the closed form; applyLr respects lrScale', () => {
  const schedule = new WarmupCosineSchedule({ baseLr: 1e-3, minLr: 1e-5, warmupSteps: 10, totalSteps: 110, warmupStartLr: 1e-6 });
  // Hand-computed: warmup 1e-6 + step * 0.999e-3 / 10; cosine 1e-5 + 0.495e-3 * (1 + cos(pi * (step - 10) / 100)).
  const table: [number, number][] = [
    [0, 1e-6],
    [5, 0.0005005],
    [10, 1e-3],
    [35, 0.000855017856687341], // cos(pi/4) = 0.7071067811865476
    [60, 0.000505], // cos(pi/2) = 0
    [109, 1.0244252618962e-5], // 1 + cos(0.99 pi) = 0.000493439634268
    [110, 1e-5],
    [500, 1e-5],
  ];
  for (const [step, value] of table) {
    const lr = schedule.lr(step);
    assert.ok(Math.abs(lr - value) <= 1e-12 * Math.max(1, value) + 1e-15, `step ${step}: ${lr} vs ${value}`);
  }
  const noWarmup = new WarmupCosineSchedule({ baseLr: 0.1, totalSteps: 4 });
  assert.deepEqual([0, 1, 2, 3, 4].map((step) => Number(noWarmup.lr(step).toFixed(12))), [0.1, 0.085355339059, 0.05, 0.014644660941, 0]);
  assert.throws(() => new WarmupCosineSchedule({ baseLr: 1, warmupSteps: 5, totalSteps: 5 }), /must exceed warmupSteps/);

  tidy(() => {
    const a = new nn.Parameter(zeros([2]));
    const b = new nn.Parameter(zeros([2]));
    const optimizer = new SGD([{ params: [a] }, { params: [b], lrScale: 0.25 }], { lr: 1 });
    assert.deepEqual(optimizer.paramGroups.map((group) => group.lr), [1, 0.25]);
    applyLr(optimizer, schedule.lr(10));
    assert.deepEqual(optimizer.paramGroups.map((group) => group.lr), [1e-3, 2.5e-4]);
    disposeAll(a, b);
  });
});

test('ModelEma: update by hand, integer buffers copied, warmup, swap, copyTo, state dict', () => {
  const model = new nn.Sequential(new nn.Linear(3, 2), new nn.BatchNorm2d(2));
  const ema = new ModelEma(model, { decay: 0.9 });
  const names = [...model.stateDict().keys()];
  assert.deepEqual([...ema.tensors.keys()], names);
  const state = model.stateDict();
  const weight = state.get('0.weight') as Tensor;
  const counter = state.get('1.num_batches_tracked') as Tensor;
  tidy(() => noGrad(() => {
    weight.copy_(tensor([[1, 2, 3], [4, 5, 6]]));
    (ema.tensors.get('0.weight') as Tensor).copy_(tensor([[0, 0, 0], [10, 10, 10]]));
    counter.fill_(5);
  }));
  ema.update(model);
  tidy(() => {
    // 0.9 * ema + 0.1 * model
    const expected = tensor([[0.1, 0.2, 0.3], [9.4, 9.5, 9.6]]);
    assert.ok(relativeError(ema.tensors.get('0.weight') as Tensor, expected) < 1e-6);
    assert.equal((ema.tensors.get('1.num_batches_tracked') as Tensor).item(), 5);
    assert.equal((ema.tensors.get('1.num_batches_tracked') as Tensor).dtype, 'int64');
  });
  assert.equal(ema.updates, 1);

  // swap twice restores both sides; copyTo puts the averages into the model
  tidy(() => {
    const before = weight.clone();
    const average = (ema.tensors.get('0.weight') as Tensor).clone();
    ema.swap(model);
    assert.equal(relativeError(weight, average), 0);
    assert.equal(relativeError(ema.tensors.get('0.weight') as Tensor, before), 0);
    ema.swap(model);
    assert.equal(relativeError(weight, before), 0);
    const saved = ema.stateDict();
    const other = new ModelEma(model, { decay: 0.9 });
    other.loadStateDict(saved);
    assert.equal(other.updates, 1);
    assert.equal(relativeError(other.tensors.get('0.weight') as Tensor, average), 0);
    other.copyTo(model);
    assert.equal(relativeError(weight, average), 0);
    other.dispose();
  });

  const warm = new ModelEma(model, { decay: 0.999, warmup: true });
  assert.equal(warm.decayAt(0), 0);
  assert.ok(Math.abs(warm.decayAt(1) - (1 - 2 ** (-2 / 3))) < 1e-15); // 0.370039...
  assert.ok(Math.abs(warm.decayAt(9) - (1 - 10 ** (-2 / 3))) < 1e-15); // 0.784556...
  assert.equal(warm.decayAt(1e9), 0.999);
  // the first warmed-up update copies the model
  tidy(() => noGrad(() => (warm.tensors.get('0.weight') as Tensor).fill_(-7)));
  warm.update(model);
  tidy(() => assert.equal(relativeError(warm.tensors.get('0.weight') as Tensor, weight), 0));
  warm.dispose();
  ema.dispose();
  model.dispose();
});

test('weight decay groups: 1-D tensors, biases, norms, pos_embed, cls_token, mask_token and listed names get none', () => {
  class Tiny extends nn.Module {
    constructor() {
      super();
      const own = (name: string, shape: number[]): void => { this.registerParameter(name, tidy(() => new nn.Parameter(zeros(shape)))); };
      own('cls_token', [1, 1, 4]);
      own('pos_embed', [1, 5, 4]);
      own('mask_token', [1, 1, 4]);
      own('rel_table', [3, 3]);
      this.registerModule('norm', new nn.LayerNorm(4));
      this.registerModule('head', new nn.Linear(4, 2));
      const frozen = this.registerModule('frozen', new nn.Linear(4, 4));
      frozen.weight.requiresGrad_(false);
    }
  }
  const model = new Tiny();
  const [noDecay, decay] = paramGroupsWithWeightDecay(model, 0.05, ['rel_table']);
  assert.deepEqual(noDecay.names, ['cls_token', 'pos_embed', 'mask_token', 'rel_table', 'norm.weight', 'norm.bias', 'head.bias', 'frozen.bias']);
  assert.deepEqual(decay.names, ['head.weight']);
  assert.equal(noDecay.weightDecay, 0);
  assert.equal(decay.weightDecay, 0.05);
  const [, decayWithoutList] = paramGroupsWithWeightDecay(model, 0.05);
  assert.deepEqual(decayWithoutList.names, ['rel_table', 'head.weight']);
  const optimizer = new AdamW(paramGroupsWithWeightDecay(model, 0.05));
  assert.deepEqual(optimizer.paramGroups.map((group) => group.weightDecay), [0, 0.05]);
  model.dispose();
});

/** Round trip through bytes and JSON, as a checkpoint file would. */
function throughCheckpoint(state: OptimizerStateDict): OptimizerStateDict {
  const tensors = new Map<string, Tensor>();
  for (const [key, value] of state.tensors) tensors.set(key, fromBytes(value.toBytes(), value.dtype, value.shape));
  return { tensors, scalars: JSON.parse(JSON.stringify(state.scalars)) as OptimizerStateDict['scalars'] };
}

test('state dicts resume exactly: 3 steps + save + 2 steps equals load into a fresh optimizer + the same 2 steps', () => {
  const factories: [string, (params: nn.Parameter[]) => Optimizer][] = [
    ['AdamW', (params) => new AdamW(groupsOf(params), { lr: 0.1 })],
    ['SGD', (params) => new SGD(groupsOf(params), { lr: 0.1, momentum: 0.9, nesterov: true })],
    ['LAMB', (params) => new Lamb(groupsOf(params), { lr: 0.1 })],
  ];
  for (const [name, factory] of factories) {
    tidy(() => {
      const weights = initialWeights();
      const grads = gradientSequence(true);
      const first = makeParams(weights);
      const original = factory(first);
      runSteps(original, first, grads, [0, 1, 2]);
      const saved = throughCheckpoint(original.stateDict());
      const snapshot = first.map((param) => param.clone());
      runSteps(original, first, grads, [3, 4]);

      const second = makeParams(snapshot);
      const resumed = factory(second);
      applyLr(resumed, 123); // loadStateDict must restore the saved learning rates
      resumed.loadStateDict(saved);
      assert.deepEqual(resumed.paramGroups.map((group) => group.lr), saved.scalars.groups.map((group) => group.lr));
      runSteps(resumed, second, grads, [3, 4]);
      first.forEach((param, i) => assert.equal(relativeError(second[i], param), 0, `${name}: parameter ${i} bit-identical`));
      const a = original.stateDict();
      const b = resumed.stateDict();
      assert.deepEqual(b.scalars, a.scalars);
      assert.deepEqual([...b.tensors.keys()], [...a.tensors.keys()]);
      for (const [key, value] of a.tensors) {
        assert.ok(value.toBytes().equals((b.tensors.get(key) as Tensor).toBytes()), `${name}: ${key} bit-identical`);
      }
      assert.throws(() => new SGD(first, { lr: 0.1 }).loadStateDict(saved), /state dict is for|param groups/);
      original.dispose();
      resumed.dispose();
      disposeAll(...first, ...second);
    });
  }
});

test('50 training steps with clipping, schedule, each optimizer and EMA: live tensor count flat', () => {
  manualSeed(0);
  const x = randn([32, 16]);
  const y = randint(0, 4, [32]);
  const schedule = new WarmupCosineSchedule({ baseLr: 0.05, minLr: 1e-4, warmupSteps: 5, totalSteps: 50 });
  const factories: [string, (model: nn.Module) => Optimizer][] = [
    ['AdamW', (model) => new AdamW(paramGroupsWithWeightDecay(model, 0.05))],
    ['SGD', (model) => new SGD(paramGroupsWithWeightDecay(model, 1e-4), { lr: 0.05, momentum: 0.9, nesterov: true })],
    ['LAMB', (model) => new Lamb(paramGroupsWithWeightDecay(model, 0.05))],
  ];
  for (const [name, factory] of factories) {
    const model = new nn.Sequential(new nn.Linear(16, 32), new nn.LayerNorm(32), new nn.Linear(32, 4));
    const optimizer = factory(model);
    const ema = new ModelEma(model, { decay: 0.99, warmup: true });
    const counts: number[] = [];
    let firstLoss = 0;
    let lastLoss = 0;
    for (let step = 0; step < 50; step++) {
      tidy(() => {
        optimizer.zeroGrad();
        const loss = F.crossEntropy(model.forward(x), y);
        loss.backward();
        clipGradNorm(model.parameters(), 1);
        applyLr(optimizer, schedule.lr(step));
        optimizer.step();
        ema.update(model);
        lastLoss = loss.item();
        if (step === 0) firstLoss = lastLoss;
      });
      counts.push(liveTensors());
    }
    assert.ok(lastLoss < firstLoss, `${name}: loss fell ${firstLoss} -> ${lastLoss}`);
    assert.equal(Math.max(...counts), Math.min(...counts), `${name}: live tensor count flat (${Math.min(...counts)}..${Math.max(...counts)})`);
    const live = liveTensors();
    optimizer.dispose();
    ema.dispose();
    model.dispose();
    assert.ok(liveTensors() < live, `${name}: dispose frees the state`);
  }
  x.dispose();
  y.dispose();
});
