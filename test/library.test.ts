// The library API for your own model and loop (masksub.step, Maskable, masking from outside):
// a plain Module wrapped around our models gives bit-for-bit the step of our built-in path on the
// same weights and seed; masking from outside masks exactly the requested fraction; the sub loss
// of token masking equals a hand computation on the same mask; refused steps name what to do and
// leave the gradients untouched.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Generator, keep, manualSeed, ones, randint, randn, type Tensor, tensor, tidy } from '../src/index.js';
import { createModel, type ForwardOptions, type Maskable, ResNet, VisionTransformer } from '../src/models/index.js';
import { type Criterion, labelLoss, maskInputs, methodStep, randomIdMask, step, type StepResult, subLoss } from '../src/masksub/index.js';
import { Dropout, Embedding, Linear, Module, Parameter } from '../src/nn/index.js';
import type { Method } from '../src/masksub/methods.js';

const bits = (t: Tensor): number[] => Array.from(t.toTypedArray() as ArrayLike<number>);

/** A user's module around one of our models: forward(x) only, no options, not a Classifier. */
class Plain extends Module {
  constructor(readonly inner: Module & { forward(x: Tensor): Tensor }) {
    super();
    this.registerModule('inner', inner);
  }
  forward(x: Tensor): Tensor {
    return this.inner.forward(x);
  }
}

/** A user's module that masks by itself through the Maskable interface (here: our ViT's token dropping). */
class OwnMasking extends Module implements Maskable {
  readonly masking = 'drop-tokens' as const;
  constructor(readonly inner: VisionTransformer) {
    super();
    this.registerModule('inner', inner);
  }
  forward(x: Tensor, options: ForwardOptions = {}): Tensor {
    return this.inner.forward(x, { maskRatio: options.maskRatio, generator: options.generator });
  }
}

function gradientsOf(model: Module): number[][] {
  return model.parameters().map((parameter) => {
    const grad = parameter.grad;
    assert.ok(grad, 'every parameter has a gradient');
    const values = bits(grad);
    grad.dispose();
    return values;
  });
}

function sameStep(a: StepResult, b: StepResult, what: string): void {
  assert.deepEqual(b, a, `${what}: losses and gradient norms`);
}

const CE: Criterion = { kind: 'ce', labelSmoothing: 0.1, bceTargetThreshold: null };

test('a plain Module around ResNet: masksub.step equals methodStep bit for bit (input patch masking, dropout, drop-path)', () => {
  const cases: [Method, number][] = [['masksub', 0.5], ['masking', 0.25], ['dropsub', 0.2], ['pathsub', 0.3], ['baseline', 0]];
  for (const [method, ratio] of cases) {
    tidy(() => {
      const build = (): ResNet => {
        manualSeed(7);
        return createModel('resnet_micro', { inChannels: 1, numClasses: 10, dropPathRate: 0.1 }) as ResNet;
      };
      const builtIn = build();
      const custom = new Plain(build());
      manualSeed(8);
      const images = randn([6, 1, 28, 28]);
      const labels = randint(0, 10, [6]);
      manualSeed(9);
      const expected = methodStep(builtIn, images, labels, { method, ratio, subWeight: 0.5, criterion: CE });
      manualSeed(9);
      const actual = step(custom, images, labels, {
        method, ratio, subWeight: 0.5, criterion: CE, patchSize: (custom.inner as ResNet).config.maskPatchSize,
      });
      sameStep(expected, actual, method);
      assert.ok(expected.finite && (expected.lossSub !== null) === (method.endsWith('sub')));
      assert.deepEqual(gradientsOf(custom), gradientsOf(builtIn), `${method}: gradients`);
      // BatchNorm running statistics move the same way on both paths
      assert.deepEqual(custom.buffers().map(bits), builtIn.buffers().map(bits), `${method}: buffers`);
      // the sub forward's rates did not stick
      for (const module of custom.modules()) if (module instanceof Dropout) assert.equal(module.p, 0);
    });
  }
});

test('a Maskable Module around ViT (token dropping through the interface) equals methodStep; a Classifier goes straight in', () => {
  for (const method of ['masksub', 'pathsub'] as const) {
    tidy(() => {
      const build = (): VisionTransformer => {
        manualSeed(3);
        return createModel('vit_micro', { inChannels: 1, numClasses: 5, dropPathRate: 0.1 }) as VisionTransformer;
      };
      const builtIn = build();
      const own = new OwnMasking(build());
      const direct = build();
      manualSeed(4);
      const images = randn([4, 1, 28, 28]);
      const labels = randint(0, 5, [4]);
      const config = { method, ratio: 0.5, subWeight: 0.4, criterion: CE };
      const results = [
        () => methodStep(builtIn, images, labels, config),
        () => step(own, images, labels, config),
        () => step(direct, images, labels, config),
      ].map((run) => {
        manualSeed(5);
        return run();
      });
      sameStep(results[0], results[1], `${method}, Maskable module`);
      sameStep(results[0], results[2], `${method}, ViT itself`);
      const expected = gradientsOf(builtIn);
      assert.deepEqual(gradientsOf(own), expected);
      assert.deepEqual(gradientsOf(direct), expected);
    });
  }
});

test('masking from outside masks exactly n - int(n * (1 - r)) patches or tokens per sample, and nothing else', () => {
  tidy(() => {
    for (const ratio of [0, 0.1, 0.25, 0.5, 0.75, 0.99]) {
      // 4 samples of 2 x 12 x 8 images, patch 4: 3 x 2 = 6 patches each
      const masked = maskInputs(ones([4, 2, 12, 8]), ratio, { patchSize: 4 });
      assert.deepEqual(masked.shape, [4, 2, 12, 8]);
      const patchSums = masked.view(4, 2, 3, 4, 2, 4).sum([1, 3, 5]).toArray() as number[][][];
      for (const sample of patchSums) {
        const flat = sample.flat();
        // each patch is either all zero (both channels) or untouched (2 * 16 ones)
        assert.ok(flat.every((value) => value === 0 || value === 32), `whole patches only: ${flat}`);
        assert.equal(flat.filter((value) => value === 0).length, 6 - Math.trunc(6 * (1 - ratio)), `ratio ${ratio}`);
      }
      // token ids: 3 samples of 10 ids, [CLS] at 0 kept, [MASK] = 99
      const ids = randint(1, 50, [3, 10]);
      const maskedIds = maskInputs(ids, ratio, { maskTokenId: 99, keepFirst: 1 });
      const before = ids.toArray() as number[][];
      (maskedIds.toArray() as number[][]).forEach((row, b) => {
        assert.equal(row[0], before[b][0], '[CLS] kept');
        assert.equal(row.filter((id) => id === 99).length, 9 - Math.trunc(9 * (1 - ratio)), `token ratio ${ratio}`);
        row.forEach((id, i) => assert.ok(id === 99 || id === before[b][i]));
      });
    }
    // a fixed generator gives a fixed mask, whatever the global one does
    const ids = randint(1, 50, [2, 16]);
    const first = randomIdMask(ids, 0.5, 0, { generator: new Generator(1) });
    manualSeed(123);
    assert.deepEqual(randomIdMask(ids, 0.5, 0, { generator: new Generator(1) }).toArray(), first.toArray());
  });
});

/** A tiny text classifier: mean of token embeddings, then a linear head. Not Maskable. */
class BagOfTokens extends Module {
  readonly embed: Embedding;
  readonly head: Linear;
  seen: Tensor[] = [];
  constructor() {
    super();
    this.embed = this.registerModule('embed', new Embedding(100, 8));
    this.head = this.registerModule('head', new Linear(8, 3));
  }
  forward(ids: Tensor): Tensor {
    this.seen.push(keep(ids.clone())); // kept past the step's tidy scope, for the test to read
    return this.head.forward(this.embed.forward(ids).mean(1));
  }
}

test('token masking in the step: the sub forward sees exactly the masked ids, and L2 equals a hand computation on them', () => {
  tidy(() => {
    manualSeed(1);
    const model = new BagOfTokens();
    const ids = randint(1, 99, [5, 12]);
    const labels = randint(0, 3, [5]);
    const result = step(model, ids, labels, { method: 'masksub', ratio: 0.5, maskTokenId: 0, generator: new Generator(42) });
    assert.equal(model.seen.length, 2, 'one main and one sub forward');
    assert.deepEqual(model.seen[0].toArray(), ids.toArray(), 'the main forward sees the clean ids');
    const expectedMask = randomIdMask(ids, 0.5, 0, { generator: new Generator(42) });
    assert.deepEqual(model.seen[1].toArray(), expectedMask.toArray(), 'the sub forward sees the masked ids');
    for (const row of model.seen[1].toArray() as number[][]) assert.equal(row.filter((id) => id === 0).length, 6);
    const main = model.head.forward(model.embed.forward(ids).mean(1));
    const sub = model.head.forward(model.embed.forward(expectedMask).mean(1));
    const defaults: Criterion = { kind: 'ce', labelSmoothing: 0, bceTargetThreshold: null };
    assert.equal(result.lossMain, labelLoss(main, labels, defaults).item());
    assert.ok(Math.abs((result.lossSub as number) - subLoss(sub, main, 'ce').item()) < 1e-6);
    assert.ok(Math.abs(result.loss - (0.5 * result.lossMain + 0.5 * (result.lossSub as number))) < 1e-12);
    for (const seen of model.seen) seen.dispose();
  });
});

test('refused steps name what to implement and leave the gradients untouched', () => {
  tidy(() => {
    manualSeed(2);
    class Features extends Module {
      readonly linear = this.registerModule('linear', new Linear(6, 3));
      forward(x: Tensor): Tensor {
        return this.linear.forward(x);
      }
    }
    const model = new Features();
    const x = randn([4, 6]);
    const y = tensor([0, 1, 2, 0], { dtype: 'int64' });
    const untouched = (): void => assert.ok(model.parameters().every((parameter) => parameter.grad === null), 'no gradient written');
    assert.throws(() => step(model, x, y, { method: 'masksub' }), /Implement Maskable on Features: a 'masking' property .*forward\(inputs, \{ maskRatio, generator \}\)/);
    untouched();
    assert.throws(() => step(model, x, y, { method: 'dropsub' }), /"dropsub" sets the rate of the model's nn\.Dropout modules .* Features has none/);
    assert.throws(() => step(model, x, y, { method: 'pathsub' }), /"pathsub" raises the rate of the model's nn\.DropPath modules for the sub forward/);
    // dropouts made with fixedRate (attention probabilities, embeddings) are not DropSub's: as good as none
    class FixedDropout extends Features {
      readonly attentionDrop = this.registerModule('attention_drop', new Dropout(0.1, { fixedRate: true }));
    }
    assert.throws(() => step(new FixedDropout(), x, y, { method: 'dropsub' }), /\(those not made with fixedRate\) for the sub forward, but FixedDropout has none/);
    assert.throws(() => step(new BagOfTokens(), randint(1, 9, [4, 5]), y, { method: 'masksub' }), /give maskTokenId/);
    assert.throws(() => step(model, randn([4, 1, 6, 9]), y, { method: 'masking' }), /not square, so give patchSize/);
    assert.throws(() => step(model, randn([4, 1, 8, 8]), y, { method: 'masking', patchSize: 3 }), /patchSize 3 must be a positive integer that divides/);
    assert.throws(() => step(model, x, y, { method: 'masksub' as Method, ratio: 1 }), /ratio of method "masksub" must be in \[0, 1\), got 1/);
    assert.throws(() => step(model, x, y, { method: 'mask-sub' as Method }), /unknown method "mask-sub"; one of baseline, masking/);
    assert.throws(() => step(model, x, y.slice(0, 0, 3), { method: 'baseline' }), /same batch size/);
    untouched();
    // the baseline needs nothing from the model, and a Maskable model needs no maskable input
    const result = step(model, x, y, { method: 'baseline' });
    assert.equal(result.lossSub, null);
    assert.ok(Number.isFinite(result.gradNormMain));
    const weight = new Parameter(randn([6, 3]));
    class Masks extends Module implements Maskable {
      readonly masking = 'mask-tokens' as const;
      constructor() {
        super();
        this.registerParameter('weight', weight);
      }
      forward(inputs: Tensor, options: ForwardOptions = {}): Tensor {
        const keep = 1 - (options.maskRatio ?? 0);
        return inputs.mul(keep).matmul(weight);
      }
    }
    const masks = step(new Masks(), x, y, { method: 'masksub', ratio: 0.5 });
    // its own masking scales the input by 0.5: L2 is CE(0.5 x W, softmax(x W))
    const teacher = x.matmul(weight);
    assert.ok(Math.abs((masks.lossSub as number) - subLoss(x.mul(0.5).matmul(weight), teacher, 'ce').item()) < 1e-6);
    // subTarget 'labels' (the paper's ablation without the KD loss) passes through: L2 is CE against the labels
    const onLabels = step(new Masks(), x, y, { method: 'masksub', ratio: 0.5, subTarget: 'labels' });
    const plainCe: Criterion = { kind: 'ce', labelSmoothing: 0, bceTargetThreshold: null };
    assert.ok(Math.abs((onLabels.lossSub as number) - labelLoss(x.mul(0.5).matmul(weight), y, plainCe).item()) < 1e-6);
  });
});
