// MaskSub method tests: the two losses against hand computations, the stop gradient and the
// gradient bookkeeping of methodStep, the sub-model regularizers (MAE token dropping, patch
// zeroing, dropout / drop-path rates) and memory over many steps.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  arange, cat, Generator, getRngState, liveTensors, manualSeed, noGrad, ones, rand, randn, stack, type Tensor, tensor, tidy, zeros,
} from '../src/index.js';
import {
  Classifier, type ClassifierInfo, createModel, type ForwardOptions, MAX_DROP_PATH, randomPatchZero, randomTokenKeep, ResNet, VisionTransformer,
} from '../src/models/index.js';
import {
  type Criterion, defaultRatio, hasSubModel, labelLoss, METHODS, methodStep, regularizer, subLoss,
} from '../src/masksub/index.js';
import { BatchNorm2d, Dropout, DropPath, Parameter } from '../src/nn/index.js';

// ---------------------------------------------------------------- plain-JS references
const flat = (t: Tensor): number[] => Array.from(t.toTypedArray() as ArrayLike<number | bigint>, Number);

function logSoftmax(row: number[]): number[] {
  const max = Math.max(...row);
  let sum = 0;
  for (const v of row) sum += Math.exp(v - max);
  const lse = max + Math.log(sum);
  return row.map((v) => v - lse);
}
const softmax = (row: number[]): number[] => logSoftmax(row).map(Math.exp);
const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));
const softplus = (x: number): number => Math.max(x, 0) + Math.log1p(Math.exp(-Math.abs(x)));

/** mean over rows of -sum_k t_k log softmax(x)_k */
function crossEntropyHand(logits: number[][], targets: number[][]): number {
  let total = 0;
  logits.forEach((row, b) => logSoftmax(row).forEach((lp, k) => { total -= targets[b][k] * lp; }));
  return total / logits.length;
}
/** mean over all elements of -[t log s(x) + (1-t) log(1-s(x))] = softplus(x) - t x */
function bceHand(logits: number[][], targets: number[][]): number {
  let total = 0;
  logits.forEach((row, b) => row.forEach((x, k) => { total += softplus(x) - targets[b][k] * x; }));
  return total / (logits.length * logits[0].length);
}
function smoothed(labels: number[], classes: number, smoothing: number): number[][] {
  return labels.map((y) => Array.from({ length: classes }, (_, k) => (k === y ? 1 - smoothing : 0) + smoothing / classes));
}
const columnMean = (rows: number[][]): number[] => rows[0].map((_, k) => rows.reduce((s, r) => s + r[k], 0) / rows.length);
const euclid = (v: number[]): number => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
function maxAbsDiff(a: number[], b: number[]): number {
  assert.equal(a.length, b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}
let worstSeen = 0; // largest relative difference closeTo has accepted since the last reset (for diagnostics)
const closeTo = (actual: number, expected: number, tolerance: number, what: string): void => {
  worstSeen = Math.max(worstSeen, Math.abs(actual - expected) / Math.max(1, Math.abs(expected)));
  assert.ok(Math.abs(actual - expected) <= tolerance * Math.max(1, Math.abs(expected)),
    `${what}: got ${actual}, expected ${expected} (diff ${Math.abs(actual - expected)})`);
};

// Fixed logits, one large value to exercise log-sum-exp; labels; soft mixup targets.
const O1 = [[1.5, -0.3, 2.2, 0.1, -1.7], [0.4, 0.9, -2.5, 25.0, 0.3], [-0.8, 0.05, 0.6, -0.2, 1.9]];
const O2 = [[0.2, 0.7, -1.1, 0.9, 0.4], [-0.6, 1.3, 0.2, 3.1, -2.0], [1.1, -1.4, 0.3, 0.8, -0.5]];
const LABELS = [2, 0, 4];
const SOFT = [[0.7, 0.3, 0, 0, 0], [0, 0, 0.5, 0.5, 0], [0.1, 0.1, 0.1, 0.1, 0.6]];

/** A classifier whose logits are fixed tensors plus a trainable bias: gradients are closed-form. */
class FixedLogits extends Classifier {
  readonly info: ClassifierInfo;
  readonly bias: Parameter;
  readonly drop: Dropout;
  readonly path: DropPath;
  constructor(readonly main: Tensor, readonly sub: Tensor) {
    super();
    this.info = { family: 'vit', imageSize: 1, inChannels: 1, numClasses: main.size(1) };
    this.bias = this.registerParameter('bias', tidy(() => new Parameter(zeros([main.size(1)], { dtype: main.dtype }))));
    this.drop = this.registerModule('drop', new Dropout(0));
    this.path = this.registerModule('path', new DropPath(0));
  }
  forward(_images: Tensor, options: ForwardOptions = {}): Tensor {
    const isSub = Boolean(options.maskRatio || options.dropoutRate || options.dropPathRate);
    return this.withRates(options, () => (isSub ? this.sub : this.main).add(this.bias));
  }
}

const CE: Criterion = { kind: 'ce', labelSmoothing: 0.1, bceTargetThreshold: null };

for (const dtype of ['float64', 'float32'] as const) {
  const tol = dtype === 'float64' ? 1e-12 : 1e-6;
  test(`losses equal hand computations on fixed logits (${dtype})`, (t) => {
    worstSeen = 0;
    tidy(() => {
      const o1 = tensor(O1, { dtype });
      const o2 = tensor(O2, { dtype });
      const y = tensor(LABELS, { dtype: 'int64' });
      const soft = tensor(SOFT, { dtype });
      const teacherSoftmax = O1.map(softmax);
      const teacherSigmoid = O1.map((row) => row.map(sigmoid));

      // CE, label smoothing 0.1 on integer labels
      const l1 = crossEntropyHand(O1, smoothed(LABELS, 5, 0.1));
      const l2 = crossEntropyHand(O2, teacherSoftmax);
      closeTo(labelLoss(o1, y, CE).item(), l1, tol, 'CE L1 (smoothing 0.1)');
      closeTo(subLoss(o2, o1, 'ce').item(), l2, tol, 'CE L2 = CE(o2, softmax(o1))');
      // smoothing must really be applied: the unsmoothed loss differs by far more than tol
      assert.ok(Math.abs(l1 - crossEntropyHand(O1, smoothed(LABELS, 5, 0))) > 0.01);
      // soft (mixup) targets: used as they are, no extra smoothing
      closeTo(labelLoss(o1, soft, CE).item(), crossEntropyHand(O1, SOFT), tol, 'CE L1 (soft targets)');

      // BCE without binarization: smoothed one-hot targets (timm's off = s/K, on = 1 - s + s/K)
      const bce: Criterion = { kind: 'bce', labelSmoothing: 0.1, bceTargetThreshold: null };
      closeTo(labelLoss(o1, y, bce).item(), bceHand(O1, smoothed(LABELS, 5, 0.1)), tol, 'BCE L1 (smoothing)');
      // DeiT-III binarization: targets > threshold become 1, the rest 0
      const bceThreshold: Criterion = { kind: 'bce', labelSmoothing: 0.1, bceTargetThreshold: 0.2 };
      closeTo(labelLoss(o1, y, bceThreshold).item(), bceHand(O1, smoothed(LABELS, 5, 0)), tol, 'BCE L1 (threshold 0.2)');
      const bceZero: Criterion = { kind: 'bce', labelSmoothing: 0, bceTargetThreshold: 0 };
      const binarySoft = SOFT.map((row) => row.map((v) => (v > 0 ? 1 : 0)));
      closeTo(labelLoss(o1, soft, bceZero).item(), bceHand(O1, binarySoft), tol, 'BCE L1 (soft targets, threshold 0)');
      closeTo(labelLoss(o1, soft, { ...bceZero, bceTargetThreshold: null }).item(), bceHand(O1, SOFT), tol, 'BCE L1 (soft targets)');
      // the sub target is sigmoid(o1), never thresholded
      const l2Bce = bceHand(O2, teacherSigmoid);
      closeTo(subLoss(o2, o1, 'bce').item(), l2Bce, tol, 'BCE L2 = BCE(o2, sigmoid(o1))');
      assert.ok(Math.abs(l2Bce - bceHand(O2, teacherSigmoid.map((r) => r.map((v) => (v > 0.2 ? 1 : 0))))) > 0.01);
    });
    t.diagnostic(`worst relative loss difference vs hand: ${worstSeen.toExponential(2)}`);
  });
}

test('methodStep on fixed logits: total loss, stop gradient, gradient norms, accumulation and loss scale', (t) => {
  worstSeen = 0;
  let worstGrad = 0;
  tidy(() => {
    const dtype = 'float64';
    const model = new FixedLogits(tensor(O1, { dtype }), tensor(O2, { dtype }));
    const images = zeros([3, 1, 1, 1], { dtype });
    const p1 = O1.map(softmax);
    const p2 = O2.map(softmax);
    const cases: { criterion: Criterion; targets: Tensor; target: number[][]; lossFn: typeof crossEntropyHand; teacher: number[][]; probs1: number[][]; probs2: number[][]; per: number }[] = [
      { criterion: CE, targets: tensor(LABELS, { dtype: 'int64' }), target: smoothed(LABELS, 5, 0.1), lossFn: crossEntropyHand, teacher: p1, probs1: p1, probs2: p2, per: 3 },
      { criterion: CE, targets: tensor(SOFT, { dtype }), target: SOFT, lossFn: crossEntropyHand, teacher: p1, probs1: p1, probs2: p2, per: 3 },
      {
        criterion: { kind: 'bce', labelSmoothing: 0.1, bceTargetThreshold: 0.2 }, targets: tensor(LABELS, { dtype: 'int64' }),
        target: smoothed(LABELS, 5, 0), lossFn: bceHand, teacher: O1.map((r) => r.map(sigmoid)),
        probs1: O1.map((r) => r.map(sigmoid)), probs2: O2.map((r) => r.map(sigmoid)), per: 15,
      },
      {
        criterion: { kind: 'bce', labelSmoothing: 0, bceTargetThreshold: 0 }, targets: tensor(SOFT, { dtype }),
        target: SOFT.map((row) => row.map((v) => (v > 0 ? 1 : 0))), lossFn: bceHand, teacher: O1.map((r) => r.map(sigmoid)),
        probs1: O1.map((r) => r.map(sigmoid)), probs2: O2.map((r) => r.map(sigmoid)), per: 15,
      },
    ];
    for (const [index, c] of cases.entries()) {
      for (const [w2, lossScale] of [[0.5, 1], [2 / 3, 4]] as const) {
        const w1 = 1 - w2;
        const l1 = c.lossFn(O1, c.target);
        const l2 = c.lossFn(O2, c.teacher);
        // d/dbias of mean loss = sum over rows of (prob - target) / (number of averaged elements)
        const g1 = columnMean(c.probs1.map((r, b) => r.map((p, k) => (w1 * (p - c.target[b][k]) * 3) / c.per)));
        const g2 = columnMean(c.probs2.map((r, b) => r.map((p, k) => (w2 * (p - c.teacher[b][k]) * 3) / c.per)));
        model.zeroGrad();
        const result = methodStep(model, images, c.targets, { method: 'masksub', ratio: 0.5, subWeight: w2, criterion: c.criterion, lossScale });
        const what = `case ${index}, w2=${w2}, lossScale=${lossScale}`;
        closeTo(result.lossMain, l1, 1e-12, `${what}: lossMain`);
        closeTo(result.lossSub as number, l2, 1e-12, `${what}: lossSub`);
        closeTo(result.loss, w1 * l1 + w2 * l2, 1e-12, `${what}: loss = w1 L1 + w2 L2`);
        // norms are reported for the unscaled terms (computed in float32 inside methodStep)
        closeTo(result.gradNormMain, euclid(g1), 1e-6, `${what}: gradNormMain`);
        closeTo(result.gradNormSub as number, euclid(g2), 1e-6, `${what}: gradNormSub`);
        const expected = g1.map((g, k) => (g + g2[k]) / lossScale);
        const gradError = maxAbsDiff(flat(model.bias.grad as Tensor), expected);
        worstGrad = Math.max(worstGrad, gradError);
        assert.ok(gradError < 1e-14, `${what}: summed gradient`);
        // second call without zeroing: the gradients add up
        methodStep(model, images, c.targets, { method: 'masksub', ratio: 0.5, subWeight: w2, criterion: c.criterion, lossScale });
        assert.ok(maxAbsDiff(flat(model.bias.grad as Tensor), expected.map((g) => 2 * g)) < 1e-14, `${what}: accumulation`);
      }
    }
    // Sensitivity: without the stop gradient the bias gradient would differ clearly (CE case).
    const free = tidy(() => {
      const bias = zeros([5], { dtype, requiresGrad: true });
      const o1 = tensor(O1, { dtype }).add(bias);
      const o2 = tensor(O2, { dtype }).add(bias);
      const loss = o2.logSoftmax(-1).mul(o1.softmax(-1)).sum(1).mean().neg();
      loss.backward();
      return flat(bias.grad as Tensor);
    });
    const detached = columnMean(p2.map((r, b) => r.map((p, k) => p - p1[b][k])));
    assert.ok(maxAbsDiff(free, detached) > 1e-3, 'the stop gradient changes the gradient measurably');
  });
  t.diagnostic(`worst relative loss/norm difference ${worstSeen.toExponential(2)}, worst gradient difference ${worstGrad.toExponential(2)}`);
});

test('methodStep masksub on a float64 ViT: gradient = grad(w1 L1) + grad(w2 L2) with a constant teacher', (t) => {
  tidy(() => {
    manualSeed(11);
    const model = createModel('vit_micro', { inChannels: 1, numClasses: 10 }).to({ dtype: 'float64' });
    const parameters = model.parameters();
    const images = randn([4, 1, 28, 28], { dtype: 'float64' });
    const labels = tensor([1, 3, 5, 7], { dtype: 'int64' });
    const w2 = 0.5;
    const gradsOf = (): number[][] => parameters.map((p) => { const g = p.grad; return g ? flat(g) : new Array<number>(p.numel).fill(0); });

    model.zeroGrad();
    manualSeed(2024);
    const result = methodStep(model, images, labels, { method: 'masksub', ratio: 0.5, subWeight: w2, criterion: CE });
    const total = gradsOf();

    // The pieces, separately, in the same RNG order (the main forward draws nothing here).
    model.zeroGrad();
    manualSeed(2024);
    const main = tidy(() => {
      const logits = model.forward(images);
      const loss = labelLoss(logits, labels, CE);
      loss.mul(1 - w2).backward();
      return { loss: loss.item(), teacher: logits.detach() };
    });
    const g1 = gradsOf();
    model.zeroGrad();
    const lossSub = tidy(() => {
      const logits = model.forward(images, { maskRatio: 0.5 });
      const loss = logits.logSoftmax(-1).mul(main.teacher.softmax(-1)).sum(1).mean().neg();
      loss.mul(w2).backward();
      return loss.item();
    });
    const g2 = gradsOf();
    model.zeroGrad();

    closeTo(result.lossMain, main.loss, 1e-12, 'lossMain');
    closeTo(result.lossSub as number, lossSub, 1e-12, 'lossSub (same mask)');
    const flatAll = (gs: number[][]): number[] => gs.flat();
    const g1Flat = flatAll(g1);
    const g2Flat = flatAll(g2);
    const totalFlat = flatAll(total);
    const sum = g1Flat.map((g, i) => g + g2Flat[i]);
    const scale = sum.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    const worst = maxAbsDiff(totalFlat, sum) / scale;
    assert.ok(worst < 1e-12, `total gradient vs pieces: relative ${worst}`);
    closeTo(result.gradNormMain, euclid(g1Flat), 1e-6, 'gradNormMain');
    closeTo(result.gradNormSub as number, euclid(g2Flat), 1e-6, 'gradNormSub');
    assert.ok(euclid(g2Flat) > 1e-6, 'the sub term contributes');

    // Without the stop gradient the result would differ: the test can see it.
    manualSeed(2024);
    tidy(() => {
      const o1 = model.forward(images);
      const o2 = model.forward(images, { maskRatio: 0.5 });
      const loss = labelLoss(o1, labels, CE).mul(1 - w2).add(o2.logSoftmax(-1).mul(o1.softmax(-1)).sum(1).mean().neg().mul(w2));
      loss.backward();
    });
    const leaky = flatAll(gradsOf());
    assert.ok(maxAbsDiff(leaky, sum) / scale > 1e-6, 'a non-detached teacher changes the gradient');

    // Accumulation: twice without zeroing = 2x.
    model.zeroGrad();
    manualSeed(2024);
    methodStep(model, images, labels, { method: 'masksub', ratio: 0.5, subWeight: w2, criterion: CE });
    manualSeed(2024);
    methodStep(model, images, labels, { method: 'masksub', ratio: 0.5, subWeight: w2, criterion: CE });
    const twice = flatAll(gradsOf());
    const accumulation = maxAbsDiff(twice, totalFlat.map((g) => 2 * g)) / scale;
    assert.ok(accumulation < 1e-12, `accumulated gradient vs 2x: relative ${accumulation}`);
    t.diagnostic(`total vs pieces ${worst.toExponential(2)}, accumulation ${accumulation.toExponential(2)} (relative to max |g|)`);
    main.teacher.dispose();
    model.dispose();
  });
});

// ---------------------------------------------------------------- token masking
test('randomTokenKeep keeps int(L(1-r)) distinct tokens per sample, uniformly, differently per sample', () => {
  tidy(() => {
    manualSeed(3);
    for (const length of [16, 49]) {
      for (const r of [0.25, 0.5, 0.75]) {
        const batch = 8;
        const width = 3;
        const tokens = arange(length, undefined, 1, { dtype: 'float32' }).view(1, length, 1).expand(batch, length, width).contiguous();
        const kept = randomTokenKeep(tokens, r);
        const keep = Math.trunc(length * (1 - r));
        assert.deepEqual(kept.shape, [batch, keep, width], `L=${length} r=${r}`);
        const rows = kept.toArray() as number[][][];
        const sets: string[] = [];
        for (const row of rows) {
          const indices = row.map((token) => {
            assert.ok(token.every((v) => v === token[0]), 'a kept token is one whole token');
            return token[0];
          });
          assert.ok(indices.every((i) => Number.isInteger(i) && i >= 0 && i < length));
          assert.equal(new Set(indices).size, keep, 'no token kept twice');
          sets.push([...indices].sort((a, b) => a - b).join(','));
        }
        assert.ok(new Set(sets).size > batch / 2, `L=${length} r=${r}: kept sets differ across samples`);
      }
    }
    // Uniform: every token is kept with probability keep/L.
    const batch = 4000;
    const length = 16;
    const tokens = arange(length, undefined, 1, { dtype: 'float32' }).view(1, length, 1).expand(batch, length, 1).contiguous();
    for (const r of [0.25, 0.75]) {
      const kept = flat(randomTokenKeep(tokens, r));
      const counts = new Array<number>(length).fill(0);
      for (const v of kept) counts[v]++;
      const expected = 1 - r;
      for (const c of counts) assert.ok(Math.abs(c / batch - expected) < 0.04, `r=${r}: frequency ${c / batch} vs ${expected}`);
    }
    // An explicit generator repeats the draw and leaves the global RNG alone.
    const state = getRngState();
    const a = flat(randomTokenKeep(tokens.narrow(0, 0, 16), 0.5, new Generator(9)));
    const b = flat(randomTokenKeep(tokens.narrow(0, 0, 16), 0.5, new Generator(9)));
    assert.deepEqual(a, b);
    assert.deepEqual([...getRngState()], [...state]);
  });
});

test('masked ViT forward = manual forward over the gathered tokens (class token kept, own position embeddings)', (t) => {
  tidy(() => {
    manualSeed(5);
    const model = createModel('vit_micro', { inChannels: 1, numClasses: 10 }) as VisionTransformer;
    noGrad(() => { for (const p of model.parameters()) p.add_(randn(p.shape).mul(0.05)); });
    const batch = 3;
    const width = 64;
    const images = randn([batch, 1, 28, 28]);
    const length = model.numPatches;
    assert.equal(length, 16);
    const seen: number[][] = [];
    const firstTokens: number[][] = [];
    const block = model.blocks.at(0);
    const original = block.forward.bind(block);
    block.forward = (x: Tensor): Tensor => {
      seen.push(x.shape);
      firstTokens.push(flat(x.select(1, 0)));
      return original(x);
    };
    try {
      const cls = noGrad(() => flat(model.clsToken.add(model.posEmbed.narrow(1, 0, 1)).flatten()));
      const full = noGrad(() => model.forward(images));
      for (const r of [0.25, 0.5, 0.75]) {
        const keep = Math.trunc(length * (1 - r));
        seen.length = 0;
        firstTokens.length = 0;
        manualSeed(100);
        const automatic = noGrad(() => model.forward(images, { maskRatio: r }));
        assert.deepEqual(seen, [[batch, 1 + keep, width]], `r=${r}: the blocks run on 1 + ${keep} tokens`);
        for (let b = 0; b < batch; b++) {
          assert.ok(maxAbsDiff(firstTokens[0].slice(b * width, (b + 1) * width), cls) < 1e-7, 'token 0 is the class token + pos_embed[0]');
        }
        // Manual: the same noise, ordered in JS; the lowest-noise tokens keep their own positions.
        manualSeed(100);
        const noise = rand([batch, length]).toArray() as number[][];
        const manual = noGrad(() => {
          const tokens = model.patchEmbed.forward(images).add(model.posEmbed.narrow(1, 1, length));
          const clsToken = model.clsToken.add(model.posEmbed.narrow(1, 0, 1)).view(1, width);
          const sequences = noise.map((row, b) => {
            const order = row.map((v, i) => [v, i]).sort((p, q) => p[0] - q[0]).map(([, i]) => i).slice(0, keep);
            return cat([clsToken, tokens.select(0, b).indexSelect(0, tensor(order, { dtype: 'int64' }))], 0);
          });
          let x = stack(sequences, 0);
          for (const each of model.blocks) x = each.forward(x);
          return model.head.forward(model.norm.forward(x).select(1, 0));
        });
        const diff = maxAbsDiff(flat(automatic), flat(manual));
        assert.ok(diff < 1e-6, `r=${r}: masked forward vs manual: ${diff}`);
        t.diagnostic(`r=${r}: masked ViT forward vs manual ${diff.toExponential(2)}`);
        assert.ok(maxAbsDiff(flat(automatic), flat(full)) > 1e-4, 'masking changes the output');
      }
    } finally {
      delete (block as { forward?: unknown }).forward;
    }
  });
});

// ---------------------------------------------------------------- patch masking
test('randomPatchZero zeroes exactly n - int(n(1-r)) whole patches per sample (the masked set), uniformly', () => {
  tidy(() => {
    manualSeed(4);
    for (const [size, patch] of [[28, 4], [28, 7], [32, 8]]) {
      const side = size / patch;
      const n = side * side;
      for (const r of [0.25, 0.5, 0.75]) {
        const batch = 6;
        const channels = 2;
        const out = randomPatchZero(ones([batch, channels, size, size]), r, patch);
        assert.deepEqual(out.shape, [batch, channels, size, size]);
        const data = flat(out);
        const masked = n - Math.trunc(n * (1 - r));
        const sets: string[] = [];
        for (let b = 0; b < batch; b++) {
          const zeroed: number[] = [];
          for (let pi = 0; pi < side; pi++) {
            for (let pj = 0; pj < side; pj++) {
              const first = data[((b * channels) * size + pi * patch) * size + pj * patch];
              assert.ok(first === 0 || first === 1);
              for (let c = 0; c < channels; c++) {
                for (let y = 0; y < patch; y++) {
                  for (let x = 0; x < patch; x++) {
                    const v = data[((b * channels + c) * size + pi * patch + y) * size + pj * patch + x];
                    assert.equal(v, first, 'whole patches, same over channels');
                  }
                }
              }
              if (first === 0) zeroed.push(pi * side + pj);
            }
          }
          assert.equal(zeroed.length, masked, `${size}px patch ${patch} r=${r}: ${masked} of ${n} patches zeroed`);
          sets.push(zeroed.join(','));
        }
        assert.ok(new Set(sets).size > batch / 2, 'masks differ across samples');
      }
    }
    // Uniform: each patch is zeroed with probability (n - int(n(1-r)))/n.
    const batch = 3000;
    for (const r of [0.25, 0.75]) {
      const data = flat(randomPatchZero(ones([batch, 1, 8, 8]), r, 2));
      const counts = new Array<number>(16).fill(0);
      for (let b = 0; b < batch; b++) {
        for (let p = 0; p < 16; p++) if (data[b * 64 + Math.floor(p / 4) * 16 + (p % 4) * 2] === 0) counts[p]++;
      }
      for (const c of counts) assert.ok(Math.abs(c / batch - r) < 0.04, `r=${r}: frequency ${c / batch}`);
    }
    // Real images: masked pixels become 0, the others are untouched.
    const x = randn([4, 3, 28, 28]);
    const xs = flat(x);
    const ys = flat(randomPatchZero(x, 0.5, 4));
    let zerosCount = 0;
    ys.forEach((v, i) => { if (v === 0) zerosCount++; else assert.equal(v, xs[i]); });
    assert.equal(zerosCount, 4 * 3 * 25 * 16); // 49 patches: int(24.5) = 24 kept, 25 zeroed
    // An explicit generator repeats the mask and leaves the global RNG alone.
    const state = getRngState();
    assert.deepEqual(flat(randomPatchZero(x, 0.5, 4, new Generator(1))), flat(randomPatchZero(x, 0.5, 4, new Generator(1))));
    assert.deepEqual([...getRngState()], [...state]);
    assert.throws(() => randomPatchZero(ones([1, 1, 30, 30]), 0.5, 4), /multiple/);
  });
});

test('masked ResNet forward = forward of the manually masked image', () => {
  tidy(() => {
    manualSeed(8);
    const model = createModel('resnet_micro', { inChannels: 3, numClasses: 10 }) as ResNet;
    model.eval();
    const patch = model.config.maskPatchSize;
    assert.equal(patch, 4);
    const batch = 2;
    const size = 28;
    const side = size / patch;
    const n = side * side;
    const images = randn([batch, 3, size, size]);
    const plain = noGrad(() => model.forward(images));
    for (const r of [0.25, 0.5, 0.75]) {
      manualSeed(50);
      const automatic = noGrad(() => model.forward(images, { maskRatio: r }));
      manualSeed(50);
      const noise = rand([batch, n]).toArray() as number[][];
      const mask = new Float32Array(batch * size * size).fill(1);
      noise.forEach((row, b) => {
        const order = row.map((v, i) => [v, i]).sort((p, q) => p[0] - q[0]).map(([, i]) => i);
        for (const index of order.slice(0, n - Math.trunc(n * (1 - r)))) {
          const pi = Math.floor(index / side);
          const pj = index % side;
          for (let y = 0; y < patch; y++) for (let xx = 0; xx < patch; xx++) mask[(b * size + pi * patch + y) * size + pj * patch + xx] = 0;
        }
      });
      const manual = noGrad(() => model.forward(images.mul(tensor(mask, { shape: [batch, 1, size, size] }))));
      const diff = maxAbsDiff(flat(automatic), flat(manual));
      assert.ok(diff < 1e-5, `r=${r}: ${diff}`);
      assert.ok(maxAbsDiff(flat(automatic), flat(plain)) > 1e-4, 'masking changes the output');
    }
  });
});

// ---------------------------------------------------------------- dropout / drop-path rates
type RateModule = Dropout | DropPath;
function rateModules(model: Classifier): RateModule[] {
  return model.modules().filter((m): m is RateModule => m instanceof Dropout || m instanceof DropPath);
}
function headOf(model: Classifier): { forward: (x: Tensor) => Tensor } {
  return model instanceof VisionTransformer ? model.head : (model as ResNet).fc;
}

test('sub-forward dropout and drop-path rates hold during that forward only, and are restored after a throw', () => {
  tidy(() => {
    manualSeed(9);
    for (const name of ['vit_micro', 'resnet_micro']) {
      const model = createModel(name, { inChannels: 1, numClasses: 10, dropRate: 0.05, dropPathRate: 0.1 });
      const modules = rateModules(model);
      const rates = (): number[] => modules.map((m) => m.p);
      const before = rates();
      assert.ok(modules.some((m) => m instanceof Dropout && m.p > 0) && modules.some((m) => m instanceof DropPath && m.p > 0));
      const images = randn([2, 1, 28, 28]);
      const head = headOf(model);
      const original = head.forward.bind(head);
      const during: number[][] = [];
      let fail = false;
      head.forward = (x: Tensor): Tensor => {
        during.push(rates());
        if (fail) throw new Error('boom');
        return original(x);
      };
      // fixed-rate dropouts (attention probabilities, embeddings, a head) keep their rate; an increase
      // raises each drop-path's own rate (the paper's +0.1 per block)
      const expect = (dropout: number | undefined, path: number | undefined, increase?: number): number[] =>
        modules.map((m, i) => (m instanceof Dropout
          ? (m.fixedRate ? before[i] : dropout ?? before[i])
          : path ?? (increase === undefined ? before[i] : Math.min(MAX_DROP_PATH, before[i] + increase))));
      try {
        model.forward(images, { dropoutRate: 0.3, dropPathRate: 0.4 });
        assert.deepEqual(during.pop(), expect(0.3, 0.4), `${name}: rates during the sub forward`);
        assert.deepEqual(rates(), before, `${name}: restored`);
        model.forward(images, { dropPathRate: 0.4 });
        assert.deepEqual(during.pop(), expect(undefined, 0.4), `${name}: only drop-path changes`);
        model.forward(images, { dropoutRate: 0.3 });
        assert.deepEqual(during.pop(), expect(0.3, undefined), `${name}: only dropout changes`);
        assert.deepEqual(rates(), before);
        fail = true;
        assert.throws(() => model.forward(images, { dropoutRate: 0.3, dropPathRate: 0.4 }), /boom/);
        assert.deepEqual(rates(), before, `${name}: restored after a throw`);
        fail = false;
        // methodStep: the main forward of the sub methods runs at the model's own rates.
        const labels = tensor([1, 2], { dtype: 'int64' });
        for (const method of METHODS) {
          during.length = 0;
          const ratio = method === 'masking' || method === 'masksub' ? 0.5 : 0.35;
          methodStep(model, images, labels, { method, ratio, subWeight: 0.5, criterion: CE });
          const reg = regularizer(method, ratio);
          const regularized = expect(reg.dropoutRate, reg.dropPathRate, reg.dropPathIncrease);
          const wanted = hasSubModel(method) ? [before, regularized] : [regularized];
          assert.deepEqual(during, wanted, `${name} ${method}: rates seen by the main (and sub) forward`);
          assert.deepEqual(rates(), before, `${name} ${method}: restored`);
        }
      } finally {
        delete (head as { forward?: unknown }).forward;
      }
      model.dispose();
    }
  });
});

test('dropsub/pathsub main branch with rates 0 is the deterministic plain forward', () => {
  tidy(() => {
    manualSeed(10);
    for (const name of ['vit_micro', 'resnet_micro']) {
      const model = createModel(name, { inChannels: 1, numClasses: 10 });
      // ResNet zero-initializes each block's last BN scale (timm), which would make drop-path a no-op
      noGrad(() => { for (const m of model.modules()) if (m instanceof BatchNorm2d) m.weight.fill_(1); });
      const images = randn([4, 1, 28, 28]);
      const labels = tensor([0, 4, 8, 9], { dtype: 'int64' });
      const { plain, entropy } = noGrad(() => tidy(() => {
        const logits = model.forward(images);
        return { plain: labelLoss(logits, labels, CE).item(), entropy: subLoss(logits, logits, 'ce').item() };
      }));
      for (const method of ['dropsub', 'pathsub'] as const) {
        for (const seed of [1, 2]) {
          manualSeed(seed);
          const result = methodStep(model, images, labels, { method, ratio: 0.3, subWeight: 0.5, criterion: CE });
          closeTo(result.lossMain, plain, 1e-6, `${name} ${method} seed ${seed}: main loss`);
          assert.ok(Math.abs((result.lossSub as number) - entropy) > 1e-4, `${name} ${method}: the sub forward is regularized`);
        }
      }
      model.dispose();
    }
  });
});

// ---------------------------------------------------------------- every method, memory
test('methodStep for every method on vit_micro and resnet_micro: losses, nulls, recomputation, flat live tensors', () => {
  for (const name of ['vit_micro', 'resnet_micro']) {
    manualSeed(12);
    const model = createModel(name, { inChannels: 1, numClasses: 10, dropPathRate: 0.05 });
    const images = randn([4, 1, 28, 28]);
    const labels = tensor([0, 1, 2, 3], { dtype: 'int64' });
    for (const method of METHODS) {
      const ratio = defaultRatio(method);
      const config = { method, ratio, subWeight: 0.5, criterion: CE };
      const sub = hasSubModel(method);
      model.zeroGrad();
      manualSeed(77);
      const result = methodStep(model, images, labels, config);
      const what = `${name} ${method}`;
      assert.ok(result.finite && Number.isFinite(result.loss) && Number.isFinite(result.lossMain), what);
      assert.equal(result.lossSub === null, !sub, `${what}: lossSub null exactly without a sub-model`);
      assert.equal(result.gradNormSub === null, !sub, `${what}: gradNormSub null exactly without a sub-model`);
      assert.ok(result.gradNormMain > 0 && Number.isFinite(result.gradNormMain), `${what}: gradNormMain`);
      if (sub) assert.ok((result.gradNormSub as number) > 0 && Number.isFinite(result.gradNormSub as number), `${what}: gradNormSub`);
      // The same numbers again from the pieces, in the same RNG order.
      manualSeed(77);
      const [l1, l2] = noGrad(() => tidy(() => {
        const o1 = model.forward(images, sub ? {} : regularizer(method, ratio));
        const main = labelLoss(o1, labels, CE).item();
        return [main, sub ? subLoss(model.forward(images, regularizer(method, ratio)), o1, 'ce').item() : null];
      }));
      closeTo(result.lossMain, l1 as number, 1e-6, `${what}: lossMain`);
      if (sub) closeTo(result.lossSub as number, l2 as number, 1e-6, `${what}: lossSub`);
      closeTo(result.loss, sub ? 0.5 * (l1 as number) + 0.5 * (l2 as number) : (l1 as number), 1e-6, `${what}: loss`);
      assert.ok(model.parameters().every((p) => {
        const g = p.grad;
        const ok = g !== null && g.isfinite().all().item() === 1;
        g?.dispose();
        return ok;
      }), `${what}: every parameter has a finite gradient`);

      const before = liveTensors();
      for (let step = 0; step < 20; step++) {
        model.zeroGrad();
        methodStep(model, images, labels, config);
      }
      assert.equal(liveTensors(), before, `${what}: live tensors flat over 20 steps`);
    }
    model.dispose();
  }
});
