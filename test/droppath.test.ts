// DropPath (stochastic depth), checked by its statistics on many samples: whole samples are
// dropped, at a rate that matches p within a binomial confidence bound, the kept ones are scaled
// by exactly 1/(1-p), so the expectation equals the input, and the gradient carries the same
// mask. Also: the per-block rates of ViT, Swin and ResNet follow timm's linear rule or DeiT-III's
// uniform one (the drop-path-schedule setting), PathSub's increase adds to each block's rate on top
// of either, and a forward's dropPathRate applies to every block for that forward only.
//
// Bounds are 6 standard errors (seeded, so deterministic): keeping paths with probability p
// instead of 1-p, or leaving out the 1/(1-p) rescale, fails them by tens of standard errors.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { manualSeed, noGrad, rand, type Tensor, tidy } from '../src/index.js';
import { DropPath } from '../src/nn/index.js';
import { createModel, type ResNet, type SwinTransformer, type VisionTransformer, withForwardRates } from '../src/models/index.js';

const Z = 6;
const SAMPLES = 20_000;

interface PerSample { factors: number[]; mixed: number }

/** Per sample, output / input (a single factor when the whole sample was kept or dropped). */
function perSampleFactors(input: Tensor, output: Tensor): PerSample {
  const x = input.toTypedArray() as Float32Array;
  const y = output.toTypedArray() as Float32Array;
  const size = x.length / input.size(0);
  const factors: number[] = [];
  let mixed = 0;
  for (let sample = 0; sample < input.size(0); sample++) {
    const first = y[sample * size] / x[sample * size];
    for (let i = 1; i < size; i++) {
      if (Math.abs(y[sample * size + i] / x[sample * size + i] - first) > 1e-6 * Math.max(1, Math.abs(first))) {
        mixed++;
        break;
      }
    }
    factors.push(first);
  }
  return { factors, mixed };
}

for (const p of [0.1, 0.3, 0.7]) {
  test(`DropPath(p=${p}) drops whole samples at rate p, scales kept samples by 1/(1-p), keeps the expectation`, (t) => {
    tidy(() => {
      manualSeed(Math.round(p * 1000));
      const layer = new DropPath(p);
      layer.train();
      // Inputs away from 0, so every element's factor output/input is defined.
      const input = rand([SAMPLES, 3, 2, 2]).add(0.5).requiresGrad_(true);
      const output = layer.forward(input);
      const { factors, mixed } = perSampleFactors(input, output);
      assert.equal(mixed, 0, 'every sample is kept or dropped as a whole');

      const keepScale = 1 / (1 - p);
      const dropped = factors.filter((factor) => factor === 0).length;
      const kept = factors.filter((factor) => Math.abs(factor - keepScale) <= 1e-6 * keepScale).length;
      assert.equal(dropped + kept, SAMPLES, `every factor is 0 or 1/(1-p) = ${keepScale}; others: ${factors.filter((f) => f !== 0 && Math.abs(f - keepScale) > 1e-6 * keepScale).slice(0, 5).join(', ')}`);

      // The number dropped is Binomial(n, p).
      const expected = SAMPLES * p;
      const spread = Math.sqrt(SAMPLES * p * (1 - p));
      assert.ok(Math.abs(dropped - expected) <= Z * spread, `${dropped} of ${SAMPLES} dropped, expected ${expected} ± ${(Z * spread).toFixed(0)}`);

      // E[factor] = (1-p) * 1/(1-p) = 1: the expectation of the output is the input.
      const meanFactor = factors.reduce((a, b) => a + b, 0) / SAMPLES;
      const factorSpread = Math.sqrt(p / (1 - p) / SAMPLES);
      assert.ok(Math.abs(meanFactor - 1) <= Z * factorSpread, `mean of output/input ${meanFactor}, expected 1 ± ${(Z * factorSpread).toFixed(4)}`);

      // The backward pass applies the same per-sample mask and scale.
      output.sum().backward();
      const gradient = input.grad as Tensor;
      const expectedGradient = noGrad(() => output.div(input));
      assert.ok(noGrad(() => gradient.sub(expectedGradient).abs().max().item()) <= 1e-6 * keepScale, 'd(output)/d(input) is the mask / (1-p)');
      t.diagnostic(`p=${p}: dropped ${dropped}/${SAMPLES} (expected ${expected} ± ${(Z * spread).toFixed(0)}), kept scaled by ${keepScale.toFixed(4)}, mean factor ${meanFactor.toFixed(4)}`);
    });
  });
}

test('DropPath is the identity in eval mode and at p = 0, and rejects p outside [0, 1)', () => {
  tidy(() => {
    const input = rand([64, 5]);
    const evalLayer = new DropPath(0.5);
    evalLayer.eval();
    assert.equal(noGrad(() => evalLayer.forward(input).sub(input).abs().max().item()), 0);
    const zero = new DropPath(0);
    zero.train();
    assert.equal(noGrad(() => zero.forward(input).sub(input).abs().max().item()), 0);
    for (const bad of [-0.1, 1, 1.5, Number.NaN]) assert.throws(() => new DropPath(bad), /DropPath: p must be in \[0, 1\)/);
  });
});

/** The DropPath rate of every block, in order. */
function pathRates(model: VisionTransformer | ResNet | SwinTransformer): number[] {
  return model.modules().filter((module): module is DropPath => module instanceof DropPath).map((module) => module.p);
}

test('per-block drop-path rates follow timm (linear in depth) and a forward\'s dropPathRate applies to this forward only', () => {
  tidy(() => {
    const vit = createModel('vit_mini_patch4_28', { inChannels: 1, numClasses: 10, dropPathRate: 0.3 }) as VisionTransformer;
    // timm: torch.linspace(0, rate, depth), the same rate for both residual branches of a block
    const vitRates = pathRates(vit);
    [0, 0, 0.1, 0.1, 0.2, 0.2, 0.3, 0.3].forEach((rate, index) => assert.ok(Math.abs(vitRates[index] - rate) < 1e-12, `ViT DropPath ${index}: ${vitRates[index]} vs ${rate}`));
    assert.equal(vitRates.length, 8);

    const resnet = createModel('resnet18_small', { inChannels: 1, numClasses: 10, dropPathRate: 0.14, imageSize: 28 }) as ResNet;
    // timm's ResNet: rate * block_index / (blocks - 1) over all 8 blocks
    const resnetRates = pathRates(resnet);
    assert.deepEqual(resnetRates.map((rate) => Number(rate.toFixed(12))), [0, 0.02, 0.04, 0.06, 0.08, 0.1, 0.12, 0.14]);

    // A sub-model forward at drop-path 0.5 (PathSub): every block drops, then the rates come back.
    manualSeed(3);
    vit.train();
    const images = rand([256, 1, 28, 28]);
    const plain = noGrad(() => vit.forward(images, { dropPathRate: 0 }));
    const again = noGrad(() => vit.forward(images, { dropPathRate: 0 }));
    assert.equal(noGrad(() => plain.sub(again).abs().max().item()), 0, 'dropPathRate 0 turns drop-path off: deterministic');
    const dropped = noGrad(() => vit.forward(images, { dropPathRate: 0.5 }));
    const changed = noGrad(() => dropped.sub(plain).abs().amax([1]).gt(1e-6).float().mean().item());
    // Each of the 8 paths a sample passes is dropped with probability 0.5: almost every sample changes.
    assert.ok(changed > 0.95, `share of samples changed by drop-path 0.5: ${changed}`);
    assert.deepEqual(pathRates(vit), vitRates, 'the model\'s own rates are restored after the forward');
    vit.dispose();
    resnet.dispose();
  });
});

test('drop-path schedules: linear (timm) and uniform (DeiT-III) per block for ViT, Swin and ResNet; PathSub adds its +0.1 to every block of either', () => {
  tidy(() => {
    const close = (actual: number[], expected: number[], what: string): void => {
      assert.equal(actual.length, expected.length, `${what}: ${actual.length} DropPath modules, expected ${expected.length}`);
      actual.forEach((rate, index) => assert.ok(Math.abs(rate - expected[index]!) < 1e-12, `${what} DropPath ${index}: ${rate} vs ${expected[index]}`));
    };
    // Two DropPaths per transformer block (attention and MLP branches), one per ResNet block.
    const twice = (rates: number[]): number[] => rates.flatMap((rate) => [rate, rate]);
    const models = {
      vit: (schedule: 'linear' | 'uniform') => createModel('vit_mini_patch4_28', { inChannels: 1, numClasses: 10, dropPathRate: 0.3, dropPathSchedule: schedule }),
      swin: (schedule: 'linear' | 'uniform') => createModel('swin_micro_patch2_window7_28', { inChannels: 1, numClasses: 10, dropPathRate: 0.3, dropPathSchedule: schedule }),
      resnet: (schedule: 'linear' | 'uniform') => createModel('resnet18_small', { inChannels: 1, numClasses: 10, dropPathRate: 0.14, imageSize: 28, dropPathSchedule: schedule }),
    };
    const expected = {
      // torch.linspace(0, 0.3, 4): ViT's 4 blocks; Swin's depths [2, 2] over all 4 blocks (stagewise).
      vit: { linear: twice([0, 0.1, 0.2, 0.3]), uniform: twice([0.3, 0.3, 0.3, 0.3]) },
      swin: { linear: twice([0, 0.1, 0.2, 0.3]), uniform: twice([0.3, 0.3, 0.3, 0.3]) },
      // timm's ResNet: 0.14 * block / 7 over the 8 blocks.
      resnet: { linear: [0, 0.02, 0.04, 0.06, 0.08, 0.1, 0.12, 0.14], uniform: new Array<number>(8).fill(0.14) },
    };
    for (const family of ['vit', 'swin', 'resnet'] as const) {
      for (const schedule of ['linear', 'uniform'] as const) {
        const model = models[family](schedule) as VisionTransformer | ResNet | SwinTransformer;
        const rates = expected[family][schedule];
        close(pathRates(model), rates, `${family} ${schedule}`);
        // PathSub's sub forward raises each block's own rate by its ratio (0.1), then restores them.
        close(withForwardRates(model, { dropPathIncrease: 0.1 }, () => pathRates(model)), rates.map((rate) => rate + 0.1), `${family} ${schedule} + PathSub 0.1`);
        close(pathRates(model), rates, `${family} ${schedule} after the sub forward`);
        model.dispose();
      }
    }
    // The default is timm's linear schedule.
    close(pathRates(createModel('vit_mini_patch4_28', { inChannels: 1, numClasses: 10, dropPathRate: 0.3 }) as VisionTransformer), expected.vit.linear, 'vit default');
  });
});
