// The Swin Transformer (src/models/swin.ts) against a plain PyTorch Swin (reference/torch_models.py) with
// timm's SwinTransformer names and layout (Debian's python3-torch has no timm): on the same
// weights, the state dict keys equal the PyTorch module's, and eval logits and the parameter
// gradients of a cross-entropy loss agree, for the micro config whose first stage has a
// shifted-window block; the mask-token path agrees given the same noise. Also: a MaskSub step on
// the micro Swin has a finite loss, and repeated steps leave the live tensor count flat.
//
// As in models-torch.test.ts, PyTorch runs the same libtorch kernels as our addon, so this shows
// that names, shapes, window partition, cyclic shift, attention mask, relative position bias and
// patch merging compose as timm's, not that the kernels are right. The Python attention mask is
// built as timm builds it (slice assignment on an image of region labels), ours from band labels,
// so the two constructions are independent.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { getNumThreads, manualSeed, randint, randn, setNumThreads, type Tensor, tidy } from '../src/index.js';
import * as F from '../src/nn/functional.js';
import { AdamW, paramGroupsWithWeightDecay } from '../src/optim/index.js';
import { createModel, describeModel, modelNames, SwinTransformer, swinStageResolutions } from '../src/models/index.js';
import { type Criterion } from '../src/masksub/method.js';
import { layerAssignment } from '../src/models/pretrained.js';
import { buildConfig, ConfigError } from '../src/train/config.js';
import { runTorch } from './helpers/torch.js';
import { checkAgainstTorch, maskSubStepsStayFlat, perturbParameters } from './helpers/model-checks.js';

// One thread here as in runTorch's PyTorch: reductions then split the same way on both sides.
const threads = getNumThreads();
setNumThreads(1);
after(() => setNumThreads(threads));

const MICRO = 'swin_micro_patch2_window7_28';
const CE: Criterion = { kind: 'ce', labelSmoothing: 0, bceTargetThreshold: null };

// The PyTorch Swin is reference/torch_models.py's: timm's current layout (PatchMerging at the
// start of stages after the first, NHWC feature maps, head.fc), its non-fused attention path, its
// window clamping.
const SWIN_PY = `
from torch_models import load_swin as load
`;

function microModel(): SwinTransformer {
  const model = createModel(MICRO, { inChannels: 1, numClasses: 10 }) as SwinTransformer;
  perturbParameters(model);
  return model;
}

test('registry: the Swin configs are listed, the micro one has a shifted-window block, tiny has timm\'s parameter count', () => {
  tidy(() => {
    for (const name of [MICRO, 'swin_tiny_patch4_window7_224', 'swin_small_patch4_window7_224']) {
      assert.ok(modelNames().includes(name), `${name} is registered`);
      assert.equal(describeModel(name).family, 'swin');
    }
    const model = createModel(MICRO, { inChannels: 1, numClasses: 10, dropPathRate: 0.3 }) as SwinTransformer;
    assert.deepEqual(swinStageResolutions(model.config), [14, 7]);
    const blocks = model.layers.items.map((stage) => stage.blocks.layers) as unknown as { window: number; shift: number; attnMask: Tensor | null; dropPath1: { p: number } }[][];
    assert.deepEqual(blocks.map((stage) => stage.map((block) => [block.window, block.shift])), [[[7, 0], [7, 3]], [[7, 0], [7, 0]]]);
    // The shifted block's mask: the top-left window holds one region (all 0), the bottom-right one four.
    const mask = blocks[0][1].attnMask as Tensor;
    assert.deepEqual(mask.shape, [4, 49, 49]);
    assert.equal(mask.select(0, 0).abs().max().item(), 0);
    assert.equal(mask.select(0, 3).eq(0).sum().item(), 3 * 3 * 3 * 3 + 3 * 4 * 3 * 4 * 2 + 4 * 4 * 4 * 4);
    // timm's linear drop-path schedule over all four blocks.
    const rates = blocks.flat().map((block) => block.dropPath1.p);
    rates.forEach((rate, index) => assert.ok(Math.abs(rate - (0.3 * index) / 3) < 1e-12, `drop path ${index}: ${rate}`));
    // timm's no_weight_decay and the mask token.
    const [noDecay] = paramGroupsWithWeightDecay(model, 0.05, model.noWeightDecay());
    assert.ok(noDecay.names!.includes('mask_token'));
    assert.ok(noDecay.names!.includes('layers.1.blocks.1.attn.relative_position_bias_table'));
    assert.ok(!model.stateDict().has('layers.0.blocks.0.attn.relative_position_index'), 'the index is not persistent');
    model.dispose();
    const tiny = createModel('swin_tiny_patch4_window7_224');
    // timm's swin_tiny_patch4_window7_224 has 28,288,354 parameters; ours adds the 96 of mask_token.
    assert.equal(tiny.numParameters(), 28_288_354 + 96);
    tiny.dispose();
  });
});

test(`${MICRO}: state dict = the PyTorch Swin's, logits and CE gradients agree (shifted windows included), and so does the mask-token path`, (t) => {
  tidy(() => {
    manualSeed(11);
    const model = microModel();
    model.eval();
    const images = randn([3, 1, 28, 28]);
    const labels = randint(0, 10, [3], { dtype: 'int64' });
    const ratio = 0.5;
    const { logits, masked, gradients, maskedGradients } = checkAgainstTorch(t, model, SWIN_PY, images, labels, model.gridSize ** 2, ratio);
    // Not vacuous: the logits vary, the shifted block's and the mask token's gradients are not zero,
    // the mask changes the logits, and the mask token gets no gradient from an unmasked forward.
    assert.ok((gradients.get('layers.0.blocks.1.attn.relative_position_bias_table') as Tensor).abs().max().item() > 1e-6);
    assert.equal((gradients.get('mask_token') as Tensor).abs().max().item(), 0);
    assert.ok((maskedGradients.get('mask_token') as Tensor).abs().max().item() > 1e-6);
    assert.ok(masked.sub(logits).abs().max().item() > 1e-3, 'masking changes the logits');
    model.dispose();
  });
});

test(`${MICRO}: MaskSub steps have finite losses and leave the live tensor count flat`, (t) => {
  manualSeed(3);
  const model = createModel(MICRO, { inChannels: 1, numClasses: 10, dropPathRate: 0.1 }) as SwinTransformer;
  model.train();
  const optimizer = new AdamW(paramGroupsWithWeightDecay(model, 0.05, model.noWeightDecay()), { lr: 1e-3, weightDecay: 0.05 });
  maskSubStepsStayFlat(t, model, optimizer);
  optimizer.dispose();
  model.dispose();
});

test('Swin in the trainer\'s settings: its own image size is required, masking flags for other families are refused naming Swin, layer-wise decay groups follow timm', () => {
  assert.throws(() => buildConfig({ flags: { model: 'swin_tiny_patch4_window7_224' } }), (error: Error) => error instanceof ConfigError && /takes 224x224 images but fashion-mnist has 28x28/.test(error.message));
  assert.equal(buildConfig({ flags: { model: 'swin_micro_patch2_window7_28', method: 'masksub' } }).model, 'swin_micro_patch2_window7_28');
  assert.throws(() => buildConfig({ flags: { model: 'swin_micro_patch2_window7_28', maskMode: 'token' } }), /always masks with its mask token/);
  assert.throws(() => buildConfig({ flags: { model: 'swin_micro_patch2_window7_28', maskPatchSize: 7 } }), /is a Swin, which replaces masked patches by its mask token/);
  const model = createModel('swin_micro_patch2_window7_28', { inChannels: 1, numClasses: 10, imageSize: 28 });
  const { count, layerOf } = layerAssignment(model);
  // stem 0; stage 0: blocks 1-2; stage 1: patch merging 3, blocks 4-5; norm and head 6.
  assert.equal(count, 6);
  assert.equal(layerOf('patch_embed.proj.weight'), 0);
  assert.equal(layerOf('mask_token'), 0);
  assert.equal(layerOf('layers.0.blocks.1.attn.qkv.weight'), 2);
  assert.equal(layerOf('layers.1.downsample.reduction.weight'), 3);
  assert.equal(layerOf('layers.1.blocks.1.mlp.fc2.bias'), 5);
  assert.equal(layerOf('norm.weight'), 6);
  assert.equal(layerOf('head.fc.weight'), 6);
  for (const [name] of model.namedParameters()) assert.ok(layerOf(name) >= 0 && layerOf(name) <= count, name);
  model.dispose();
});
