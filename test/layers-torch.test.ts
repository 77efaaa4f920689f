// Layers and losses against PyTorch (Debian's python3-torch) in float32 on the same inputs and
// weights: outputs, gradients w.r.t. inputs and parameters (loss = sum(out * fixed random r)),
// and BatchNorm's running statistics. All comparisons run in one Python process.
// PyTorch runs the same libtorch kernels as our addon, so these checks verify argument plumbing
// and composition (which op, which arguments, in which order), not the kernels themselves; the
// finite-difference checks (gradcheck.test.ts) are the independent reference for gradients.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { manualSeed, noGrad, rand, randint, randn, type Tensor } from '../src/index.js';
import * as nn from '../src/nn/index.js';
import * as F from '../src/nn/functional.js';
import { relativeError, runTorch } from './helpers/torch.js';

const TOLERANCE = 1e-5;

interface Case {
  /** Tensors the Python script reads as I[name]. */
  inputs: Record<string, Tensor>;
  /** Python body: reads I[...], writes O[...] with the same keys as `ours`. */
  script: string;
  /** Our results, compared key by key with O. */
  ours: Record<string, Tensor>;
}

const cases = new Map<string, Case>();
function define(name: string, build: () => Case): void {
  if (!/^\w+$/.test(name)) throw new Error(`case name ${name}`);
  cases.set(name, build());
}

manualSeed(2024);
/** A float32 constant: randn * scale + shift. */
const data = (shape: number[], scale = 1, shift = 0): Tensor => randn(shape).mul(scale).add(shift);
/** A float32 leaf that requires grad. */
const leaf = (shape: number[], scale = 1, shift = 0): Tensor => data(shape, scale, shift).requiresGrad_(true);
/** loss = sum(out * r) with a fixed random r; backward; returns r (the script needs it). */
function backward(out: Tensor): Tensor {
  const r = randn(out.shape);
  out.mul(r).sum().backward();
  return r;
}
/** A copy of t.grad (a later backward must not change what we compare). */
const grad = (t: Tensor): Tensor => {
  const g = t.grad;
  if (!g) throw new Error('no gradient');
  return g.clone();
};
/** Randomizes a module's parameters in place (LayerNorm/BatchNorm start at 1 and 0). */
function randomize(module: nn.Module, scale = 0.5): void {
  noGrad(() => { for (const p of module.parameters()) p.add_(randn(p.shape).mul(scale)); });
}
/** The parameters of a module by name, as detached copies (script inputs). */
function weights(module: nn.Module, prefix = ''): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const [name, p] of module.namedParameters()) out[prefix + name.replace(/\./g, '_')] = p.detach().clone();
  return out;
}
/** Gradients of a module's parameters by name: d<name>. */
function weightGrads(module: nn.Module): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const [name, p] of module.namedParameters()) out[`d${name.replace(/\./g, '_')}`] = grad(p);
  return out;
}

// ---- layers ----
define('linear', () => {
  const layer = new nn.Linear(6, 5);
  const x = leaf([3, 4, 6]);
  const y = layer.forward(x);
  const r = backward(y);
  return {
    inputs: { x, r, ...weights(layer) },
    script: `
x = leaf(I['x']); w = leaf(I['weight']); b = leaf(I['bias'])
y = F.linear(x, w, b); back(y, I['r'])
O.update(y=y, dx=x.grad, dweight=w.grad, dbias=b.grad)`,
    ours: { y, dx: grad(x), ...weightGrads(layer) },
  };
});

const convCases: [string, number, number, number, nn.Conv2dOptions, number[]][] = [
  ['conv_stride2_pad1_groups2', 4, 6, 3, { stride: 2, padding: 1, groups: 2 }, [2, 4, 7, 7]],
  ['conv_dilation2_pad2', 3, 4, 3, { dilation: 2, padding: 2 }, [2, 3, 6, 6]],
  ['conv_patch_embed', 3, 8, 4, { stride: 4 }, [2, 3, 8, 8]],
  ['conv_depthwise_nobias', 4, 4, 3, { padding: 1, groups: 4, bias: false }, [2, 4, 5, 5]],
];
for (const [name, inChannels, outChannels, kernel, options, shape] of convCases) {
  define(name, () => {
    const layer = new nn.Conv2d(inChannels, outChannels, kernel, options);
    const x = leaf(shape);
    const y = layer.forward(x);
    const r = backward(y);
    const bias = options.bias === false ? 'None' : "leaf(I['bias'])";
    return {
      inputs: { x, r, ...weights(layer) },
      script: `
x = leaf(I['x']); w = leaf(I['weight']); b = ${bias}
y = F.conv2d(x, w, b, stride=${options.stride ?? 1}, padding=${options.padding ?? 0}, dilation=${options.dilation ?? 1}, groups=${options.groups ?? 1})
back(y, I['r'])
O.update(y=y, dx=x.grad, dweight=w.grad)
if b is not None: O['dbias'] = b.grad`,
      ours: { y, dx: grad(x), ...weightGrads(layer) },
    };
  });
}

define('layer_norm', () => {
  const layer = new nn.LayerNorm(8);
  randomize(layer);
  const x = leaf([2, 3, 8], 3, 1);
  const y = layer.forward(x);
  const r = backward(y);
  return {
    inputs: { x, r, ...weights(layer) },
    script: `
x = leaf(I['x']); w = leaf(I['weight']); b = leaf(I['bias'])
y = F.layer_norm(x, (8,), w, b, 1e-5); back(y, I['r'])
O.update(y=y, dx=x.grad, dweight=w.grad, dbias=b.grad)`,
    ours: { y, dx: grad(x), ...weightGrads(layer) },
  };
});

define('batch_norm', () => {
  const layer = new nn.BatchNorm2d(3);
  randomize(layer);
  noGrad(() => {
    layer.runningMean.copy_(data([3]));
    layer.runningVar.copy_(rand([3]).add(0.5));
    layer.numBatchesTracked.fill_(5);
  });
  const start = { rm: layer.runningMean.clone(), rv: layer.runningVar.clone() };
  // Train mode: batch statistics, then a second batch without grad; both update running stats.
  const x1 = leaf([4, 3, 5, 5], 2, 0.5);
  const y1 = layer.forward(x1);
  const r1 = backward(y1);
  const train = { y1, dx1: grad(x1), dweight1: grad(layer.weight), dbias1: grad(layer.bias) };
  const x2 = data([3, 3, 4, 4], 0.7, -1);
  noGrad(() => layer.forward(x2));
  const buffers = { running_mean: layer.runningMean.clone(), running_var: layer.runningVar.clone(), num_batches_tracked: layer.numBatchesTracked.clone() };
  // Eval mode: running statistics; counters must not move.
  layer.eval();
  layer.zeroGrad();
  const x3 = leaf([2, 3, 4, 4], 1.5, 0.2);
  const y3 = layer.forward(x3);
  const r3 = backward(y3);
  const evaluation = { y3, dx3: grad(x3), dweight3: grad(layer.weight), dbias3: grad(layer.bias), num_batches_tracked_eval: layer.numBatchesTracked.clone() };
  return {
    inputs: { ...weights(layer), rm: start.rm, rv: start.rv, x1, r1, x2, x3, r3 },
    script: `
bn = torch.nn.BatchNorm2d(3)
with torch.no_grad():
    bn.weight.copy_(I['weight']); bn.bias.copy_(I['bias'])
    bn.running_mean.copy_(I['rm']); bn.running_var.copy_(I['rv']); bn.num_batches_tracked.fill_(5)
x1 = leaf(I['x1']); y1 = bn(x1); back(y1, I['r1'])
O.update(y1=y1, dx1=x1.grad, dweight1=bn.weight.grad.clone(), dbias1=bn.bias.grad.clone())
with torch.no_grad(): bn(I['x2'])
O.update(running_mean=bn.running_mean.clone(), running_var=bn.running_var.clone(), num_batches_tracked=bn.num_batches_tracked.clone())
bn.eval(); bn.weight.grad = None; bn.bias.grad = None
x3 = leaf(I['x3']); y3 = bn(x3); back(y3, I['r3'])
O.update(y3=y3, dx3=x3.grad, dweight3=bn.weight.grad, dbias3=bn.bias.grad, num_batches_tracked_eval=bn.num_batches_tracked.clone())`,
    ours: { ...train, ...buffers, ...evaluation },
  };
});

const attentionScript = (heads: number, bias: boolean): string => `
x = leaf(I['x']); wqkv = leaf(I['qkv_weight']); wp = leaf(I['proj_weight']); bp = leaf(I['proj_bias'])
bqkv = ${bias ? "leaf(I['qkv_bias'])" : 'None'}
B, N, C = x.shape; H = ${heads}; D = C // H; scale = D ** -0.5
qkv = F.linear(x, wqkv, bqkv).reshape(B, N, 3, H, D).permute(2, 0, 3, 1, 4)
q, k, v = qkv.unbind(0)
attn = (q @ k.transpose(-2, -1) * scale).softmax(dim=-1)
y = F.linear((attn @ v).transpose(1, 2).reshape(B, N, C), wp, bp)
back(y, I['r'])
O.update(y=y, dx=x.grad, dqkv_weight=wqkv.grad, dproj_weight=wp.grad, dproj_bias=bp.grad)
if bqkv is not None: O['dqkv_bias'] = bqkv.grad`;

for (const [name, dim, heads, bias] of [['attention_qkv_bias', 8, 2, true], ['attention', 12, 4, false]] as const) {
  define(name, () => {
    const layer = new nn.Attention(dim, heads, bias);
    const x = leaf([2, 5, dim], 2);
    const y = layer.forward(x);
    const r = backward(y);
    return { inputs: { x, r, ...weights(layer) }, script: attentionScript(heads, bias), ours: { y, dx: grad(x), ...weightGrads(layer) } };
  });
}

define('mlp', () => {
  const layer = new nn.Mlp(8, 16, 6);
  const x = leaf([2, 3, 8], 2);
  const y = layer.forward(x);
  const r = backward(y);
  return {
    inputs: { x, r, ...weights(layer) },
    script: `
x = leaf(I['x']); w1 = leaf(I['fc1_weight']); b1 = leaf(I['fc1_bias']); w2 = leaf(I['fc2_weight']); b2 = leaf(I['fc2_bias'])
y = F.linear(F.gelu(F.linear(x, w1, b1)), w2, b2); back(y, I['r'])
O.update(y=y, dx=x.grad, dfc1_weight=w1.grad, dfc1_bias=b1.grad, dfc2_weight=w2.grad, dfc2_bias=b2.grad)`,
    ours: { y, dx: grad(x), ...weightGrads(layer) },
  };
});

// ---- losses ----
const logitsShape = [6, 5];
const hardTargets = randint(0, 5, [6]);
const softTargets = randn(logitsShape).mul(2).softmax(-1);
const lossCases: [string, (logits: Tensor) => Tensor, string][] = [
  ['ce_hard', (z) => F.crossEntropy(z, hardTargets), "F.cross_entropy(z, I['hard'])"],
  ['ce_hard_sum', (z) => F.crossEntropy(z, hardTargets, { reduction: 'sum' }), "F.cross_entropy(z, I['hard'], reduction='sum')"],
  ['ce_soft', (z) => F.crossEntropy(z, softTargets), "F.cross_entropy(z, I['soft'])"],
  ['ce_smooth_0_1', (z) => F.crossEntropy(z, hardTargets, { labelSmoothing: 0.1 }), "F.cross_entropy(z, I['hard'], label_smoothing=0.1)"],
  ['ce_soft_smooth_0_1', (z) => F.crossEntropy(z, softTargets, { labelSmoothing: 0.1 }), "F.cross_entropy(z, I['soft'], label_smoothing=0.1)"],
];
for (const [name, loss, python] of lossCases) {
  define(name, () => {
    const z = leaf(logitsShape, 2);
    const value = loss(z);
    value.backward();
    return {
      inputs: { z, hard: hardTargets, soft: softTargets },
      script: `
z = leaf(I['z']); loss = ${python}; loss.backward()
O.update(loss=loss, dz=z.grad)`,
      ours: { loss: value, dz: grad(z) },
    };
  });
}

define('ce_hard_none', () => {
  const z = leaf(logitsShape, 2);
  const value = F.crossEntropy(z, hardTargets, { reduction: 'none' });
  const r = backward(value);
  return {
    inputs: { z, r, hard: hardTargets },
    script: `
z = leaf(I['z']); loss = F.cross_entropy(z, I['hard'], reduction='none'); back(loss, I['r'])
O.update(loss=loss, dz=z.grad)`,
    ours: { loss: value, dz: grad(z) },
  };
});

define('bce_with_logits', () => {
  const z = leaf([4, 5], 2);
  const target = rand([4, 5]);
  const value = F.binaryCrossEntropyWithLogits(z, target);
  value.backward();
  return {
    inputs: { z, target },
    script: `
z = leaf(I['z']); loss = F.binary_cross_entropy_with_logits(z, I['target']); loss.backward()
O.update(loss=loss, dz=z.grad)`,
    ours: { loss: value, dz: grad(z) },
  };
});

define('bce_with_logits_pos_weight_sum', () => {
  const z = leaf([4, 5], 2);
  const target = rand([4, 5]).round();
  const posWeight = rand([5]).mul(3).add(0.5);
  const value = F.binaryCrossEntropyWithLogits(z, target, { posWeight, reduction: 'sum' });
  value.backward();
  return {
    inputs: { z, target, posWeight },
    script: `
z = leaf(I['z']); loss = F.binary_cross_entropy_with_logits(z, I['target'], pos_weight=I['posWeight'], reduction='sum'); loss.backward()
O.update(loss=loss, dz=z.grad)`,
    ours: { loss: value, dz: grad(z) },
  };
});

// ---- pooling and activations ----
const unaryCases: [string, number[], (x: Tensor) => Tensor, string][] = [
  ['max_pool_k3_s2_p1', [2, 3, 7, 7], (x) => F.maxPool2d(x, 3, 2, 1), 'F.max_pool2d(x, 3, 2, 1)'],
  ['max_pool_k2', [2, 3, 6, 6], (x) => F.maxPool2d(x, 2), 'F.max_pool2d(x, 2)'],
  ['avg_pool_k3_s2_p1', [2, 3, 7, 7], (x) => F.avgPool2d(x, 3, 2, 1), 'F.avg_pool2d(x, 3, 2, 1)'],
  ['adaptive_avg_pool_7_to_3', [2, 3, 7, 7], (x) => F.adaptiveAvgPool2d(x, 3), 'F.adaptive_avg_pool2d(x, 3)'],
  ['adaptive_avg_pool_global', [2, 3, 5, 4], (x) => F.adaptiveAvgPool2d(x, 1), 'F.adaptive_avg_pool2d(x, 1)'],
  ['gelu_tanh', [4, 6], (x) => x.gelu('tanh'), "F.gelu(x, approximate='tanh')"],
  ['gelu_erf', [4, 6], (x) => x.gelu(), 'F.gelu(x)'],
];
for (const [name, shape, ours, python] of unaryCases) {
  define(name, () => {
    const x = leaf(shape, 2);
    const y = ours(x);
    const r = backward(y);
    return {
      inputs: { x, r },
      script: `
x = leaf(I['x']); y = ${python}; back(y, I['r'])
O.update(y=y, dx=x.grad)`,
      ours: { y, dx: grad(x) },
    };
  });
}

// ---- one Python process for everything ----
const driver = (): string => {
  const lines = [
    'def leaf(t): return t.clone().requires_grad_(True)',
    'def back(y, r): (y * r).sum().backward()',
    'def _run(prefix, fn):',
    "    I = {k[len(prefix) + 1:]: v for k, v in inp.items() if k.startswith(prefix + '.')}",
    '    O = {}',
    '    fn(I, O)',
    "    for k, v in O.items(): out[prefix + '.' + k] = v",
  ];
  for (const [name, c] of cases) {
    lines.push(`def _case_${name}(I, O):`);
    for (const line of c.script.trim().split('\n')) lines.push(`    ${line}`);
    lines.push(`_run('${name}', _case_${name})`);
  }
  return lines.join('\n') + '\n';
};

let theirs: Record<string, Tensor> = {};
before(() => {
  const inputs: Record<string, Tensor> = {};
  for (const [name, c] of cases) {
    for (const [key, value] of Object.entries(c.inputs)) inputs[`${name}.${key}`] = value;
  }
  theirs = runTorch(driver(), inputs);
});

for (const name of cases.keys()) {
  test(`${name} matches PyTorch`, (t) => {
    const c = cases.get(name) as Case;
    const keys = Object.keys(c.ours).sort();
    const returned = Object.keys(theirs).filter((k) => k.startsWith(`${name}.`)).map((k) => k.slice(name.length + 1)).sort();
    assert.deepEqual(returned, keys, 'PyTorch returned the same quantities');
    let worst = 0;
    let worstKey = '';
    for (const key of keys) {
      const ours = c.ours[key];
      const reference = theirs[`${name}.${key}`];
      assert.deepEqual(ours.shape, reference.shape, `${key}: shape`);
      const values = Array.from(reference.toTypedArray() as ArrayLike<number | bigint>, Number);
      assert.ok(values.some((v) => v !== 0), `${key}: the reference is not all zeros`);
      assert.ok(values.every(Number.isFinite), `${key}: the reference is finite`);
      const error = relativeError(ours, reference);
      assert.ok(error < TOLERANCE, `${name}.${key}: relative error ${error.toExponential(3)} >= ${TOLERANCE}`);
      if (error >= worst) { worst = error; worstKey = key; }
    }
    t.diagnostic(`${name}: worst relative error ${worst.toExponential(2)} (${worstKey}) over ${keys.join(', ')}`);
  });
}

test('the comparison sees a small change in one gradient entry', () => {
  const c = cases.get('linear') as Case;
  const perturbed = noGrad(() => {
    const copy = c.ours.dweight.clone();
    copy.view(-1).narrow(0, 3, 1).add_(1e-3);
    return copy;
  });
  assert.ok(relativeError(c.ours.dweight, theirs['linear.dweight']) < TOLERANCE);
  assert.ok(relativeError(perturbed, theirs['linear.dweight']) > 10 * TOLERANCE);
});
