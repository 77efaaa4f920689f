// ResNet in channels_last memory format (ResNet.setMemoryFormat, `train --channels-last`): the
// layout ops, logits and gradients against float64 next to the default layout's, the layout kept
// through the forward and into the gradients and optimizer moments, state dicts and checkpoints
// written in the standard layout and loaded back exactly, a channels-last run resumed exactly.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { createModel } from '../src/models/factory.js';
import { ResNet } from '../src/models/resnet.js';
import * as F from '../src/nn/functional.js';
import { AdamW } from '../src/optim/index.js';
import { liveTensors, native, setNumThreads } from '../src/tensor/native.js';
import { loadSafetensors, saveSafetensors } from '../src/tensor/safetensors.js';
import { Generator, manualSeed, randint, randn, type Tensor, tidy } from '../src/tensor/tensor.js';
import { buildConfig, ConfigError } from '../src/train/config.js';
import { train } from '../src/train/trainer.js';

const root = mkdtempSync(join(tmpdir(), 'masksub-channels-last-'));
after(() => rmSync(root, { recursive: true, force: true }));
setNumThreads(1);

/** The two block kinds and stems: resnet_micro (basic, 3x3 stem) and a small bottleneck ResNet with the 7x7 + max-pool stem. */
const MODELS = {
  basic: { build: () => createModel('resnet_micro', { numClasses: 10, inChannels: 1 }) as ResNet, input: [16, 1, 28, 28] },
  bottleneck: {
    build: () => new ResNet({ block: 'bottleneck', layers: [1, 1, 1, 1], widths: [8, 8, 16, 16], stem: 'imagenet', imageSize: 32, inChannels: 3, numClasses: 10, dropPathRate: 0, dropRate: 0, maskPatchSize: 8 }),
    input: [16, 3, 32, 32],
  },
};

function seeded(build: () => ResNet): ResNet {
  manualSeed(0);
  return build();
}

/**
 * A 4-D tensor whose channels_last strides differ from row-major ones: with one channel or a 1x1
 * kernel the two layouts coincide, and libtorch reports either.
 */
function layoutVisible(tensor: Tensor): boolean {
  return tensor.ndim === 4 && tensor.shape[1]! > 1 && tensor.shape[2]! * tensor.shape[3]! > 1;
}

function relativeError(value: Tensor, reference: Tensor): number {
  return tidy(() => value.double().sub(reference.double()).abs().max().item() / reference.double().abs().max().item());
}

test('the layout ops: contiguous(channels_last) keeps shape and values, changes the strides; a wrong format or rank is refused by name', () => {
  tidy(() => {
    const x = randn([2, 3, 4, 5]);
    const nhwc = x.contiguous('channels_last');
    assert.deepEqual(nhwc.shape, [2, 3, 4, 5]);
    assert.equal(x.memoryFormat(), 'contiguous');
    assert.equal(nhwc.memoryFormat(), 'channels_last');
    assert.equal(nhwc.isContiguous(), false, 'NHWC strides are not row-major');
    assert.ok(Buffer.compare(nhwc.toBytes(), x.toBytes()) === 0, 'the same values; toBytes writes them in the standard row-major order');
    assert.equal(nhwc.contiguous('contiguous').memoryFormat(), 'contiguous');
    assert.throws(() => randn([2, 3]).contiguous('channels_last'), /channels_last needs a 4-D tensor \(N, C, H, W\), got shape \[2, 3\]/);
    assert.throws(() => native.contiguousAs(x.handle, 'nhwc' as 'channels_last'), /memory format must be 'contiguous' or 'channels_last', got 'nhwc'/);
  });
  const model = seeded(MODELS.basic.build);
  assert.throws(() => model.setMemoryFormat('nhwc' as 'channels_last'), /memory format must be 'contiguous' or 'channels_last', got 'nhwc'/);
  model.dispose();
});

test('logits and gradients in channels_last match float64 as closely as the default layout does (basic and bottleneck ResNets, cross-entropy, training mode)', () => {
  for (const [name, { build, input }] of Object.entries(MODELS)) {
    const standard = seeded(build);
    const nhwc = seeded(build).setMemoryFormat('channels_last');
    const wide = seeded(build).to({ dtype: 'float64' });
    tidy(() => {
      manualSeed(1);
      const images = randn(input);
      const labels = randint(0, 10, [input[0]!]);
      const logits = [standard, nhwc, wide].map((model, index) => {
        const out = model.forward(index === 2 ? images.double() : images).float();
        F.crossEntropy(out, labels).backward();
        return out;
      });
      // Measured (1 thread): contiguous 3.0e-7 / 1.2e-6, channels_last 7.5e-7 / 2.2e-6 (basic / bottleneck).
      assert.ok(relativeError(logits[0]!, logits[2]!) < 1e-5, `${name}: default-layout logits`);
      assert.ok(relativeError(logits[1]!, logits[2]!) < 1e-5, `${name}: channels_last logits ${relativeError(logits[1]!, logits[2]!)}`);
      const nhwcParameters = new Map(nhwc.namedParameters());
      const wideParameters = new Map(wide.namedParameters());
      let worst = 0;
      for (const [key, parameter] of standard.namedParameters()) {
        const reference = wideParameters.get(key)!.grad!;
        if (tidy(() => reference.abs().max().item()) === 0) continue;
        assert.ok(relativeError(parameter.grad!, reference) < 5e-5, `${name} ${key}: default-layout gradient`);
        worst = Math.max(worst, relativeError(nhwcParameters.get(key)!.grad!, reference));
      }
      // Measured: worst parameter 4.9e-6 (basic), 3.6e-6 (bottleneck); the default layout 2.8e-6, 2.9e-6.
      assert.ok(worst < 5e-5, `${name}: channels_last gradients, worst relative error ${worst}`);
    });
    for (const model of [standard, nhwc, wide]) model.dispose();
  }
});

test('masked forwards (MaskSub\'s sub-model input) give the same logits in both layouts for the same generator', () => {
  const { build, input } = MODELS.bottleneck;
  const standard = seeded(build);
  const nhwc = seeded(build).setMemoryFormat('channels_last');
  tidy(() => {
    manualSeed(2);
    const images = randn(input);
    const a = standard.forward(images, { maskRatio: 0.5, generator: new Generator(7) });
    const b = nhwc.forward(images, { maskRatio: 0.5, generator: new Generator(7) });
    // The same patches are zeroed (the mask is drawn before the layout changes), so only rounding differs.
    assert.ok(relativeError(b, a) < 1e-5, `masked logits differ by ${relativeError(b, a)}`);
  });
  standard.dispose();
  nhwc.dispose();
});

test('ResNet-50: channels_last logits match, and its gradients carry the larger float32 error of libtorch 1.13\'s CPU NHWC BatchNorm backward (bounded, measured)', () => {
  const build = (): ResNet => createModel('resnet50', { numClasses: 10, imageSize: 64, inChannels: 3 }) as ResNet;
  const standard = seeded(build);
  const nhwc = seeded(build).setMemoryFormat('channels_last');
  const wide = seeded(build).to({ dtype: 'float64' });
  tidy(() => {
    manualSeed(1);
    const images = randn([8, 3, 64, 64]);
    const labels = randint(0, 10, [8]);
    const logits = [standard, nhwc, wide].map((model, index) => {
      const out = model.forward(index === 2 ? images.double() : images).float();
      F.crossEntropy(out, labels).backward();
      return out;
    });
    assert.ok(relativeError(logits[1]!, logits[2]!) < 1e-5);
    const nhwcParameters = new Map(nhwc.namedParameters());
    const wideParameters = new Map(wide.namedParameters());
    let worstStandard = 0;
    let worstNhwc = 0;
    for (const [key, parameter] of standard.namedParameters()) {
      const reference = wideParameters.get(key)!.grad!;
      if (tidy(() => reference.abs().max().item()) === 0) continue;
      worstStandard = Math.max(worstStandard, relativeError(parameter.grad!, reference));
      worstNhwc = Math.max(worstNhwc, relativeError(nhwcParameters.get(key)!.grad!, reference));
    }
    // Measured: 3.0e-6 (default) and 9.3e-4 (channels_last, the stem's conv weight). The NHWC
    // BatchNorm backward sums each channel's dy and dy*(x-mean) in float32 with more error than
    // the NCHW kernel (alone, with dy of mean 100: 7.9e-4 vs 1.8e-5), and cross-entropy's
    // gradient cancels; float64 in either layout agrees to 6e-15.
    assert.ok(worstStandard < 2e-5, `default layout ${worstStandard}`);
    assert.ok(worstNhwc < 3e-3, `channels_last ${worstNhwc}`);
    // BatchNorm alone, training mode, x ~ N(5, 1), dy ~ N(100, 1): input gradient against float64.
    manualSeed(4);
    const x = randn([8, 64, 32, 32]).add(5);
    const weight = randn([64]);
    const dy = randn([8, 64, 32, 32]).add(100);
    const inputGradient = (input: Tensor, w: Tensor, grad: Tensor): Tensor => {
      const leaf = input.detach().requiresGrad_(true);
      F.batchNorm(leaf, { weight: w, bias: w.mul(0.5), training: true }).backward(grad);
      return leaf.grad!;
    };
    const exact = inputGradient(x.double(), weight.double(), dy.double());
    const bnStandard = relativeError(inputGradient(x, weight, dy), exact);
    const bnNhwc = relativeError(inputGradient(x.contiguous('channels_last'), weight, dy.contiguous('channels_last')), exact);
    // Measured: 1.8e-5 (NCHW kernel) and 7.9e-4 (NHWC kernel).
    assert.ok(bnStandard < 1e-4, `BatchNorm NCHW ${bnStandard}`);
    assert.ok(bnNhwc < 3e-3, `BatchNorm NHWC ${bnNhwc}`);
  });
  for (const model of [standard, nhwc, wide]) model.dispose();
});

test('the layout is kept: conv weights, every block\'s output and the conv weight gradients are channels_last', () => {
  const { build, input } = MODELS.bottleneck;
  const model = seeded(build).setMemoryFormat('channels_last');
  assert.equal(model.memoryFormat, 'channels_last');
  tidy(() => {
    for (const [key, parameter] of model.namedParameters()) {
      if (layoutVisible(parameter)) assert.equal(parameter.memoryFormat(), 'channels_last', key);
    }
    manualSeed(3);
    const images = randn(input);
    let x = F.maxPool2d(model.bn1.forward(model.conv1.forward(images.contiguous('channels_last'))).relu(), 3, 2, 1);
    assert.equal(x.memoryFormat(), 'channels_last', 'stem output');
    for (const [stage, blocks] of model.stages.entries()) {
      for (const block of blocks) {
        x = block.forward(x);
        // The last stage is 1x1 spatially at 32 px, where both layouts coincide.
        if (layoutVisible(x)) assert.equal(x.memoryFormat(), 'channels_last', `layer${stage + 1} output`);
      }
    }
    F.crossEntropy(model.forward(images), randint(0, 10, [input[0]!])).backward();
    for (const [key, parameter] of model.namedParameters()) {
      if (layoutVisible(parameter)) assert.equal(parameter.grad!.memoryFormat(), 'channels_last', `${key}.grad`);
    }
  });
  model.setMemoryFormat('contiguous');
  assert.equal(model.memoryFormat, 'contiguous');
  for (const parameter of model.parameters()) assert.ok(parameter.isContiguous());
  model.dispose();
});

test('state dicts are written in the standard layout (byte-identical files) and load back exactly into either layout; AdamW moments take the weights\' layout', () => {
  const { build, input } = MODELS.basic;
  const standard = seeded(build);
  const nhwc = seeded(build).setMemoryFormat('channels_last');
  const standardFile = join(root, 'standard.safetensors');
  const nhwcFile = join(root, 'nhwc.safetensors');
  saveSafetensors(standardFile, standard.stateDict());
  saveSafetensors(nhwcFile, nhwc.stateDict());
  assert.ok(readFileSync(standardFile).equals(readFileSync(nhwcFile)), 'the same weights give the same file in either layout');

  // Train the channels_last model a few AdamW steps, then load its state into fresh models of both layouts.
  const optimizer = new AdamW(nhwc.parameters(), { lr: 1e-2 });
  for (let step = 0; step < 3; step++) {
    tidy(() => {
      manualSeed(10 + step);
      optimizer.zeroGrad();
      F.crossEntropy(nhwc.forward(randn(input)), randint(0, 10, [input[0]!])).backward();
      optimizer.step();
    });
  }
  tidy(() => {
    const state = optimizer.stateDict();
    const conv = [...state.tensors].filter(([, buffer]) => layoutVisible(buffer));
    assert.ok(conv.length > 0);
    for (const [key, buffer] of conv) assert.equal(buffer.memoryFormat(), 'channels_last', `optimizer ${key}`);
  });
  const trained = join(root, 'trained.safetensors');
  saveSafetensors(trained, nhwc.stateDict());
  for (const format of ['contiguous', 'channels_last'] as const) {
    const fresh = seeded(build).setMemoryFormat(format);
    const loaded = loadSafetensors(trained).tensors;
    fresh.loadStateDict(loaded);
    const own = new Map(nhwc.stateDict());
    for (const [key, tensor] of fresh.stateDict()) {
      assert.ok(Buffer.compare(tensor.toBytes(), own.get(key)!.toBytes()) === 0, `${format}: ${key} loads back exactly`);
      if (layoutVisible(tensor)) assert.equal(tensor.memoryFormat(), format, `${format}: ${key} keeps the model's layout`);
    }
    for (const tensor of loaded.values()) tensor.dispose();
    fresh.dispose();
  }
  optimizer.dispose();
  standard.dispose();
  nhwc.dispose();
});

test('train --channels-last: a ResNet run equals the default-layout run to float rounding, resumes exactly, and leaves no live tensors', async () => {
  const flags = {
    dataset: 'fashion-mnist', model: 'resnet_micro', method: 'masksub', epochs: 2, limitTrain: 256, limitTest: 128, probeSize: 32,
    batchSize: 64, lr: 3e-3, warmupEpochs: 0, threads: 1, channelsLast: true,
  };
  const quiet = (): void => undefined;
  const before = liveTensors();
  const straight = await train(buildConfig({ flags }), { out: join(root, 'straight'), log: quiet });
  assert.equal(liveTensors(), before, 'no live tensors left behind');
  const standard = await train(buildConfig({ flags: { ...flags, channelsLast: false } }), { out: join(root, 'standard'), log: quiet });
  // 8 MaskSub steps: the loss curves agree to rounding (masking's equal-valued patches may route
  // max-pool gradients differently, so not bit for bit).
  for (const [index, row] of straight.history.entries()) {
    const other = standard.history[index]!;
    assert.ok(Math.abs(row.train_loss - other.train_loss) < 1e-3 * Math.abs(other.train_loss), `epoch ${row.epoch} train loss ${row.train_loss} vs ${other.train_loss}`);
  }
  const resumed = join(root, 'resumed');
  await train(buildConfig({ flags }), { out: resumed, log: quiet, stopAfterEpochs: 1 });
  const lines: string[] = [];
  await train(buildConfig({ flags }), { out: resumed, resume: true, log: (line) => lines.push(line) });
  assert.ok(lines.some((line) => /^resumed \S+ after epoch 1/.test(line)), lines.join(' | '));
  const a = loadSafetensors(join(root, 'straight', 'model.safetensors')).tensors;
  const b = loadSafetensors(join(resumed, 'model.safetensors')).tensors;
  for (const [key, tensor] of a) {
    assert.ok(Buffer.compare(tensor.toBytes(), b.get(key)!.toBytes()) === 0, `${key} differs after a channels-last resume`);
  }
  for (const tensor of [...a.values(), ...b.values()]) tensor.dispose();
});

test('channels-last is refused for a ViT, and dist-backend nccl on the CPU, by name', () => {
  assert.throws(() => buildConfig({ flags: { dataset: 'fashion-mnist', model: 'vit_micro', channelsLast: true } }), (error: Error) =>
    error instanceof ConfigError && /channels-last applies only to ResNet models/.test(error.message));
  assert.throws(() => buildConfig({ flags: { dataset: 'fashion-mnist', model: 'resnet_micro', distBackend: 'nccl' } }), (error: Error) =>
    error instanceof ConfigError && /dist-backend nccl needs --device cuda/.test(error.message));
  assert.doesNotThrow(() => buildConfig({ flags: { dataset: 'fashion-mnist', model: 'resnet_micro', channelsLast: true, distBackend: 'gloo' } }));
});
