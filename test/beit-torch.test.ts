// BEiT v2 (src/models/beit.ts) against a plain PyTorch BEiT (reference/torch_models.py) with timm's Beit names
// and layout (Debian's python3-torch has no timm): on the same weights the state dict keys equal
// the PyTorch module's, and eval logits and the parameter gradients of a cross-entropy loss agree,
// also for the mask-token path given the same noise (BEiT v2's layout, and one with an absolute
// position embedding, class-token pooling and no LayerScale); the relative position index equals timm's
// construction; timm-format checkpoints written by PyTorch (safetensors) load through --init with
// PyTorch's logits: a fine-tuned one as is, one for another grid (the bias tables resized by
// timm's resize_rel_pos_bias_table, written in torch in reference/torch_models.py), and a BEiT v2 pretraining one
// (one shared bias table, lm_head, norm before pooling, no head), and one with an absolute
// position embedding on another grid (resampled as timm's resample_abs_pos_embed). Also: MaskSub steps keep the
// live tensor count flat, layer-wise decay groups follow BEiT's get_layer_id_for_vit, and the
// trainer's settings accept BEiT where they should, and a short trainer run fine-tunes a BEiT
// run's weights through --init.
//
// As in swin-torch.test.ts, PyTorch runs the same libtorch kernels as our addon, so this shows
// that names, shapes, the bias index, q/v biases, LayerScale, pooling and masking compose as
// timm's, not that the kernels are right. The Python index is built as timm builds it (coordinate
// differences), ours from integer division, so the two constructions are independent.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { getNumThreads, manualSeed, noGrad, randint, randn, setNumThreads, type Tensor, tidy } from '../src/index.js';
import * as F from '../src/nn/functional.js';
import { AdamW, paramGroupsWithLayerDecay, paramGroupsWithWeightDecay } from '../src/optim/index.js';
import { Beit, beitRelativePositionIndex, createModel, describeModel, layerAssignment, loadPretrained, modelNames, PretrainedError, resizeRelativePositionBiasTable } from '../src/models/index.js';
import { Dropout } from '../src/nn/index.js';
import { saveSafetensors } from '../src/tensor/safetensors.js';
import { type Criterion, methodStep } from '../src/masksub/method.js';
import { disposeCheckpoint, loadCheckpoint } from '../src/run/index.js';
import { buildConfig, ConfigError } from '../src/train/config.js';
import { train } from '../src/train/trainer.js';
import { relativeError, runTorch } from './helpers/torch.js';
import { checkAgainstTorch, maskSubStepsStayFlat, perturbParameters } from './helpers/model-checks.js';

// One thread here as in runTorch's PyTorch: reductions then split the same way on both sides.
const threads = getNumThreads();
setNumThreads(1);
after(() => setNumThreads(threads));
const directory = mkdtempSync(join(tmpdir(), 'masksub-beit-'));
after(() => rmSync(directory, { recursive: true, force: true }));

const MICRO = 'beitv2_micro_patch4_28';
const CE: Criterion = { kind: 'ce', labelSmoothing: 0, bceTargetThreshold: null };

// The PyTorch BEiT (timm's Beit without the fused attention path) and timm's
// resize_rel_pos_bias_table (its default, scipy-free path) are reference/torch_models.py's; the
// checks below use them under these names.
const BEIT_PY = `
from torch_models import Beit, beit_relative_position_index as rel_index, load_beit as load, resize_rel_pos_bias_table as resize_table
`;

function microModel(overrides: { imageSize?: number } = {}): Beit {
  const model = createModel(MICRO, { inChannels: 1, numClasses: 10, ...overrides }) as Beit;
  perturbParameters(model);
  return model;
}

test('registry: the BEiT configs are listed; the relative position index equals timm\'s; beitv2_base has the PyTorch BEiT\'s parameters plus the mask token', () => {
  tidy(() => {
    for (const name of [MICRO, 'beitv2_base_patch16_224']) {
      assert.ok(modelNames().includes(name), `${name} is registered`);
      assert.equal(describeModel(name).family, 'beit');
    }
    const base = createModel('beitv2_base_patch16_224') as Beit;
    const keys = [...base.stateDict().keys()];
    assert.ok(keys.includes('blocks.11.attn.q_bias') && keys.includes('blocks.11.attn.v_bias') && !keys.includes('blocks.0.attn.k_bias'));
    assert.ok(keys.includes('blocks.0.gamma_1') && keys.includes('fc_norm.weight') && !keys.includes('norm.weight') && !keys.includes('pos_embed'));
    assert.ok(!keys.includes('blocks.0.attn.relative_position_index'), 'the index is not persistent');
    const result = runTorch(`${BEIT_PY}
for g in (3, 7, 14):
    out['index%d' % g] = rel_index(g)
m = Beit({'width': 768, 'imageSize': 224, 'patchSize': 16, 'inChannels': 3, 'heads': 12, 'depth': 12, 'layerScale': 1e-5, 'numClasses': 1000}, mask_token=False)
out['count'] = sum(p.numel() for p in m.parameters())
`, {});
    for (const grid of [3, 7, 14]) assert.deepEqual(beitRelativePositionIndex(grid).toArray(), result[`index${grid}`].toArray(), `index for a ${grid}x${grid} grid`);
    // 86,530,984 is timm's beitv2_base_patch16_224 (its summary); ours adds the 768 of mask_token.
    assert.equal(result.count.item(), 86_530_984);
    assert.equal(base.numParameters(), 86_530_984 + 768);
    // BEiT's init: LayerScale at 1e-5, zero bias tables and q/v biases, the head scaled by 0.001, fix_init_weight.
    assert.equal(base.blocks.items[3].gamma1!.max().item(), base.blocks.items[3].gamma1!.min().item());
    assert.ok(Math.abs(base.blocks.items[3].gamma1!.max().item() - 1e-5) < 1e-12);
    assert.equal(base.blocks.items[0].attn.relativePositionBiasTable.abs().max().item(), 0);
    assert.ok(base.head.weight.std().item() < 0.02 * 0.001 * 1.2);
    const ratio = base.blocks.items[0].attn.proj.weight.std().item() / base.blocks.items[7].attn.proj.weight.std().item();
    assert.ok(Math.abs(ratio - Math.sqrt(16 / 2)) < 0.05, `fix_init_weight: block 1 / block 8 std ratio ${ratio}, sqrt(8) expected`);
    base.dispose();
  });
});

for (const variant of ['beitv2', 'absolute position, class token, no LayerScale'] as const) test(`${MICRO} (${variant}): state dict = the PyTorch BEiT's, logits and CE gradients agree, and so does the mask-token path`, (t) => {
  tidy(() => {
    manualSeed(11);
    let model = microModel();
    if (variant !== 'beitv2') {
      model.dispose();
      model = new Beit({ ...model.config, absolutePosition: true, globalPool: 'token', layerScale: null });
      noGrad(() => tidy(() => {
        for (const parameter of model.parameters()) parameter.add_(randn(parameter.shape).mul(0.05));
      }));
    }
    model.eval();
    const images = randn([3, 1, 28, 28]);
    const labels = randint(0, 10, [3], { dtype: 'int64' });
    const ratio = 0.5;
    const { logits, masked, gradients, maskedGradients } = checkAgainstTorch(t, model, BEIT_PY, images, labels, model.gridSize ** 2, ratio);
    // Not vacuous: the bias table, q/v biases and LayerScale get gradients, the mask token only from a masked forward.
    for (const name of ['blocks.1.attn.relative_position_bias_table', 'blocks.0.attn.q_bias', 'blocks.0.attn.v_bias', variant === 'beitv2' ? 'blocks.1.gamma_2' : 'pos_embed']) {
      assert.ok((gradients.get(name) as Tensor).abs().max().item() > 1e-6, `${name} has a gradient`);
    }
    assert.equal((gradients.get('mask_token') as Tensor).abs().max().item(), 0);
    assert.ok((maskedGradients.get('mask_token') as Tensor).abs().max().item() > 1e-6);
    assert.ok(masked.sub(logits).abs().max().item() > 1e-3, 'masking changes the logits');
    model.dispose();
  });
});

test('PyTorch-written timm BEiT checkpoints load through --init with PyTorch\'s logits: fine-tuned, another grid (bias tables resized), BEiT v2 pretraining (shared table), absolute position embedding on another grid', (t) => {
  tidy(() => {
    manualSeed(5);
    const images = randn([3, 1, 28, 28]);
    const target = microModel();
    // The checkpoints' model: RGB; 'grid' at 36 px (a 9x9 grid: its tables have 17x17 offsets, ours 13x13).
    const cfg = { ...target.config, inChannels: 3 };
    const result = runTorch(`${BEIT_PY}
import torch_models as ref
cfg = json.loads(${JSON.stringify(JSON.stringify(cfg))})
target_cfg = json.loads(${JSON.stringify(JSON.stringify(target.config))})
torch.manual_seed(4)
x = inp['x']
with torch.no_grad():
    for name, size in (('finetuned', 28), ('grid', 36), ('pretraining', 28), ('absolute', 36)):
        m = Beit(dict(cfg, imageSize=size, absolutePosition=(name == 'absolute')), mask_token=(name == 'pretraining'))
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
        state = dict(m.state_dict())
        if name == 'pretraining':
            # BEiT v2 pretraining: one shared table, the final norm before pooling, lm_head, no classifier
            shared = state['blocks.0.attn.relative_position_bias_table']
            for k in [k for k in state if k.endswith('relative_position_bias_table')]:
                del state[k]
            state['rel_pos_bias.relative_position_bias_table'] = shared
            state['norm.weight'], state['norm.bias'] = state.pop('fc_norm.weight'), state.pop('fc_norm.bias')
            state['lm_head.weight'], state['lm_head.bias'] = state.pop('head.weight'), state.pop('head.bias')
        ref.save_safetensors(${JSON.stringify(directory)} + '/' + name + '.safetensors', state)
        adapted = dict(state)
        adapted['patch_embed.proj.weight'] = ref.adapt_input_conv(1, state['patch_embed.proj.weight'])
        if name in ('grid', 'absolute'):
            for k in [k for k in state if k.endswith('relative_position_bias_table')]:
                adapted[k] = resize_table(state[k], 7)
        if name == 'absolute':
            adapted['pos_embed'] = ref.resample_abs_pos_embed(state['pos_embed'], (7, 7), 1, antialias=True)
        if name == 'pretraining':
            # BEiT's fine-tuning: the shared table in every block; fc_norm and head are then the target's own
            for i in range(cfg['depth']):
                adapted['blocks.%d.attn.relative_position_bias_table' % i] = shared
            for k in ('rel_pos_bias.relative_position_bias_table', 'norm.weight', 'norm.bias', 'lm_head.weight', 'lm_head.bias'):
                del adapted[k]
            for k in ('fc_norm.weight', 'fc_norm.bias', 'head.weight', 'head.bias'):
                adapted[k] = inp['fresh:' + k]
        if name == 'grid':
            out['resized'] = adapted['blocks.0.attn.relative_position_bias_table']
        out[name] = load(dict(target_cfg, absolutePosition=(name == 'absolute')), adapted, mask_token=(name == 'pretraining')).eval()(x)
`, { x: images, ...Object.fromEntries(['fc_norm.weight', 'fc_norm.bias', 'head.weight', 'head.bias', 'mask_token'].map((key) => [`fresh:${key}`, target.stateDict().get(key) as Tensor])) });
    for (const name of ['finetuned', 'grid', 'pretraining', 'absolute']) {
      let model = microModel();
      if (name === 'absolute') {
        model.dispose();
        model = new Beit({ ...target.config, absolutePosition: true });
      }
      // The pretraining checkpoint leaves fc_norm, head and mask_token at the model's init: the target's, given to PyTorch.
      noGrad(() => model.loadStateDict(new Map([...target.stateDict()].filter(([key]) => ['fc_norm.weight', 'fc_norm.bias', 'head.weight', 'head.bias', 'mask_token'].includes(key))), { strict: false }));
      const notes: string[] = [];
      const report = loadPretrained(model, join(directory, `${name}.safetensors`), { log: (line) => notes.push(line) });
      model.eval();
      const logits = noGrad(() => model.forward(images));
      const error = relativeError(logits, result[name]);
      t.diagnostic(`${name}: relative difference ${error.toExponential(2)}; ${notes.join(' | ')}`);
      assert.ok(error < 2e-6, `${name}: logits differ from PyTorch's by ${error}`);
      assert.ok(logits.std().item() > 1e-3, `${name}: logits are not constant`);
      const text = notes.join('\n');
      assert.match(text, /patch_embed\.proj\.weight: adapted from 3 to 1/);
      if (name === 'finetuned') assert.deepEqual(report.reinitialised, ['mask_token']);
      if (name === 'absolute') assert.match(text, /pos_embed: resampled from a 9x9 to a 7x7 grid.*\n.*2 relative_position_bias_table\(s\): resized from a 9x9 to a 7x7 grid/);
      if (name === 'grid') {
        assert.match(text, /2 relative_position_bias_table\(s\): resized from a 9x9 to a 7x7 grid/);
        const resized = model.blocks.items[0].attn.relativePositionBiasTable;
        assert.deepEqual(resized.shape, [13 * 13 + 3, 2]);
        assert.ok(relativeError(resized, result.resized) < 1e-6, 'the resized table equals timm\'s');
      }
      if (name === 'pretraining') {
        assert.match(text, /shared by all blocks.*copied into every block/);
        assert.match(text, /pretraining heads \(lm_head, cls_pt_layers\) not used/);
        assert.deepEqual(report.reinitialised.sort(), ['fc_norm.bias', 'fc_norm.weight', 'head.bias', 'head.weight']);
      }
      model.dispose();
    }
    target.dispose();
  });
});

test('relative position bias tables resized up and down equal timm\'s resize_rel_pos_bias_table (scipy-free path); the class-token rows are kept', () => {
  tidy(() => {
    manualSeed(9);
    const cases: [number, number][] = [[3, 7], [9, 7], [7, 14], [14, 7], [7, 7]];
    const tables = cases.map(([from]) => randn([(2 * from - 1) ** 2 + 3, 3]));
    const result = runTorch(`${BEIT_PY}
cases = json.loads(${JSON.stringify(JSON.stringify(cases))})
for i, (a, b) in enumerate(cases):
    out['r%d' % i] = resize_table(inp['t%d' % i], b) if a != b else inp['t%d' % i]
`, Object.fromEntries(tables.map((table, index) => [`t${index}`, table])));
    cases.forEach(([from, to], index) => {
      const resized = resizeRelativePositionBiasTable(tables[index], to);
      assert.deepEqual(resized.shape, [(2 * to - 1) ** 2 + 3, 3], `${from} -> ${to}`);
      const error = relativeError(resized, result[`r${index}`]);
      assert.ok(error < 1e-6, `${from} -> ${to}: relative error ${error}`);
      assert.equal(resized.slice(0, -3).sub(tables[index].slice(0, -3)).abs().max().item(), 0, `${from} -> ${to}: class-token rows kept`);
    });
    assert.throws(() => resizeRelativePositionBiasTable(randn([50, 2]), 7), /50 rows is not \(2s-1\)\^2 \+ 3/);
  });
});

test('a BEiT checkpoint that does not fit is one clear error naming every key: a ViT checkpoint, a table that is no grid\'s', () => {
  tidy(() => {
    const vit = createModel('vit_mini_patch4_28', { inChannels: 1, numClasses: 10 });
    const vitFile = join(directory, 'vit.safetensors');
    saveSafetensors(vitFile, vit.stateDict());
    vit.dispose();
    const model = microModel();
    assert.throws(() => loadPretrained(model, vitFile), (error: Error) => error instanceof PretrainedError
      && /missing from the checkpoint \(\d+\): .*blocks\.0\.attn\.q_bias/.test(error.message)
      && /not in the model \(\d+\): .*blocks\.0\.attn\.qkv\.bias.*pos_embed/.test(error.message)
      && /absolute position embedding/.test(error.message));
    const state = model.stateDict();
    const odd = new Map(state);
    odd.set('blocks.1.attn.relative_position_bias_table', randn([50, 2]));
    const oddFile = join(directory, 'odd.safetensors');
    saveSafetensors(oddFile, odd);
    assert.throws(() => loadPretrained(model, oddFile), /wrong shape \(1\): blocks\.1\.attn\.relative_position_bias_table \(checkpoint \[50, 2\], model \[172, 2\]\)/);
    model.dispose();
  });
});

test(`${MICRO}: MaskSub steps have finite losses and leave the live tensor count flat; layer decay groups are BEiT's`, (t) => {
  manualSeed(3);
  const model = createModel(MICRO, { inChannels: 1, numClasses: 10, dropPathRate: 0.1 }) as Beit;
  model.train();
  const optimizer = new AdamW(paramGroupsWithLayerDecay(model, 0.05, 0.6, layerAssignment(model), model.noWeightDecay()), { lr: 1e-3, weightDecay: 0.05 });
  maskSubStepsStayFlat(t, model, optimizer);
  const { count, layerOf } = layerAssignment(model);
  assert.equal(count, 3);
  assert.deepEqual(['cls_token', 'mask_token', 'patch_embed.proj.weight', 'blocks.0.attn.relative_position_bias_table', 'blocks.1.gamma_2', 'fc_norm.weight', 'head.bias'].map(layerOf), [0, 0, 0, 1, 2, 3, 3]);
  // timm's no_weight_decay: every bias table, the tokens; LayerScale and q/v biases are 1-D.
  const [noDecay] = paramGroupsWithWeightDecay(model, 0.05, model.noWeightDecay());
  for (const name of ['blocks.1.attn.relative_position_bias_table', 'mask_token', 'cls_token', 'blocks.0.attn.q_bias', 'blocks.0.gamma_1']) assert.ok(noDecay.names!.includes(name), name);
  // DropSub's sites: the attention projection's and the MLP's dropouts only (3 per block), as for ViT.
  const sites = model.modules().filter((module) => module instanceof Dropout && !module.fixedRate);
  assert.equal(sites.length, 3 * model.blocks.length);
  for (const block of model.blocks) for (const site of [block.attn.projDrop, block.mlp.drop1, block.mlp.drop2]) assert.ok(sites.includes(site));
  // DropSub and PathSub run on those sites (and the per-block drop paths), and leave the main rates as they were.
  const images = randn([8, 1, 28, 28]);
  const labels = randint(0, 10, [8], { dtype: 'int64' });
  for (const method of ['dropsub', 'pathsub'] as const) {
    tidy(() => {
      const result = methodStep(model, images, labels, { method, ratio: 0.5, subWeight: 0.5, criterion: CE });
      assert.ok(result.finite && result.lossSub !== null && Number.isFinite(result.lossSub), `${method}: sub loss ${result.lossSub}`);
    });
    assert.deepEqual(sites.map((site) => (site as Dropout).p), new Array<number>(sites.length).fill(0), `${method}: the dropout rates are restored`);
    assert.deepEqual(model.blocks.items.map((block) => block.dropPath1.p), [0, 0.1], `${method}: timm's linear drop-path rates are restored`);
  }
  images.dispose();
  labels.dispose();
  optimizer.dispose();
  model.dispose();
});

test('BEiT in the trainer\'s settings: its own image size, mean pooling unless --global-pool token, mask-mode and mask-patch-size refused naming BEiT', () => {
  assert.throws(() => buildConfig({ flags: { model: 'beitv2_base_patch16_224' } }), (error: Error) => error instanceof ConfigError && /takes 224x224 images but fashion-mnist has 28x28/.test(error.message));
  // The resolved config records the model's own pool (BEiT: mean; a ViT: the class token).
  assert.equal(buildConfig({ flags: { model: MICRO, method: 'masksub' } }).globalPool, 'avg');
  assert.equal(buildConfig({ flags: { model: 'vit_micro' } }).globalPool, 'token');
  assert.equal(buildConfig({ flags: { model: 'resnet_micro' } }).globalPool, null);
  assert.equal(buildConfig({ flags: { model: MICRO, globalPool: 'token' } }).globalPool, 'token');
  assert.throws(() => buildConfig({ flags: { model: MICRO, maskMode: 'token' } }), /always masks with its mask token/);
  assert.throws(() => buildConfig({ flags: { model: MICRO, maskPatchSize: 7 } }), /is a BEiT, which replaces masked patches by its mask token/);
  assert.throws(() => buildConfig({ flags: { model: 'resnet18_small', globalPool: 'avg' } }), /global-pool applies only to ViT and BEiT models/);
  const pooled = createModel(MICRO, { inChannels: 1, numClasses: 10 }) as Beit;
  assert.equal(pooled.config.globalPool, 'avg');
  assert.ok(pooled.stateDict().has('fc_norm.weight'));
  pooled.dispose();
});

test('train: a Fashion-MNIST BEiT run\'s model.safetensors starts a MaskSub run on the synthetic set through --init, with BEiT\'s layer-decay groups', async () => {
  const quiet = (): void => undefined;
  const base = { model: MICRO, limitTrain: 128, limitTest: 128, batchSize: 32, lr: 2e-3, warmupEpochs: 0, probeSize: 32, threads: 1, epochs: 1 };
  const pretrain = join(directory, 'pretrain-run');
  await train(buildConfig({ flags: { ...base, dataset: 'fashion-mnist' } }), { out: pretrain, log: quiet });
  const lines: string[] = [];
  const config = buildConfig({ flags: { ...base, dataset: 'synthetic', init: join(pretrain, 'model.safetensors'), 'layer-decay': '0.6', method: 'masksub', 'drop-path': '0.1' } });
  const finetune = join(directory, 'finetune-run');
  const result = await train(config, { out: finetune, log: (line) => lines.push(line) });
  assert.match(lines.join('\n'), /init: \d+ tensors from .*model\.safetensors/);
  assert.ok(Number.isFinite(result.history[0].test_acc1) && Number.isFinite(result.history[0].train_loss as number));
  const parts = loadCheckpoint(join(finetune, 'checkpoint.safetensors'));
  try {
    // 2 blocks: scales 0.6^3 (embeddings), 0.6^2, 0.6 (blocks) and 1 (fc_norm, head).
    const scales = [...new Set(parts.state.optimizer.groups.map((group) => group.lrScale.toFixed(12)))].sort();
    assert.deepEqual(scales, [0.6 ** 3, 0.6 ** 2, 0.6, 1].map((value) => value.toFixed(12)).sort());
  } finally {
    disposeCheckpoint(parts);
  }
});

