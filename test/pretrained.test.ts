// Fine-tuning from pretrained weights (src/models/pretrained.ts, issue 11): timm-layout
// checkpoints written by PyTorch (reference/torch_models.py) load into our ViT and ResNet and give
// the logits PyTorch computes after the same adaptation done its own way (F.interpolate bicubic for
// the position embedding, timm's adapt_input_conv, a DeiT-III forward without a class-token
// position); the bicubic matrices against F.interpolate with and without antialias; the strict
// error lists every key at fault; layer-wise lr decay scales against a hand computation; the
// avg-pool + fc_norm head and mask-token masking against the reference on the same noise.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { getNumThreads, manualSeed, noGrad, rand, randn, setNumThreads, type Tensor, tidy } from '../src/index.js';
import { fitCheckpoint, layerAssignment, loadPretrained, PretrainedError, resamplePosEmbed, ResNet, VisionTransformer, type VitConfig } from '../src/models/index.js';
import { AdamW, applyLr, paramGroupsWithLayerDecay } from '../src/optim/index.js';
import { disposeCheckpoint, loadCheckpoint } from '../src/run/index.js';
import { saveSafetensors } from '../src/tensor/safetensors.js';
import { buildConfig, buildSettings } from '../src/train/config.js';
import { train } from '../src/train/trainer.js';
import { relativeError, runTorch } from './helpers/torch.js';

// One thread on both sides: equal computations then round equally.
const threads = getNumThreads();
setNumThreads(1);
after(() => setNumThreads(threads));
const directory = mkdtempSync(join(tmpdir(), 'masksub-pretrained-'));
after(() => rmSync(directory, { recursive: true, force: true }));

/** Observed: up to ~2e-7 relative (float64 resampling here, float32 in PyTorch). */
const TOLERANCE = 2e-6;

function vit(overrides: Partial<VitConfig> = {}): VisionTransformer {
  return new VisionTransformer({
    imageSize: 28, patchSize: 4, inChannels: 1, numClasses: 10, width: 32, depth: 2, heads: 2, mlpRatio: 4, qkvBias: true,
    layerScale: null, dropPathRate: 0, dropPathSchedule: 'linear', dropRate: 0, ...overrides,
  });
}
const spec = (model: VisionTransformer | ResNet): Record<string, unknown> => ({ family: model.info.family, ...model.config });

test('bicubic position-embedding resampling equals F.interpolate (align_corners=False) with and without antialias, up and down', () => {
  tidy(() => {
    manualSeed(1);
    const cases: [number, number][] = [[4, 7], [7, 4], [14, 5], [8, 7], [3, 9]];
    const inputs: Record<string, Tensor> = {};
    cases.forEach(([from], index) => { inputs[`p${index}`] = randn([1, 1 + from * from, 6]); });
    const result = runTorch(`
import torch_models as ref
cases = json.loads(${JSON.stringify(JSON.stringify(cases))})
for i, (a, b) in enumerate(cases):
    for aa in (False, True):
        out['%d_%d' % (i, aa)] = ref.resample_abs_pos_embed(inp['p%d' % i], (b, b), 1, antialias=aa)
`, inputs);
    cases.forEach(([from, to], index) => {
      for (const antialias of [false, true]) {
        const ours = resamplePosEmbed(inputs[`p${index}`], [from, from], [to, to], 1, antialias);
        assert.deepEqual(ours.shape, [1, 1 + to * to, 6]);
        const error = relativeError(ours, result[`${index}_${antialias ? 1 : 0}`]);
        assert.ok(error < TOLERANCE, `${from}->${to} antialias ${antialias}: relative error ${error}`);
      }
    });
  });
});

test('PyTorch-written timm checkpoints (another grid, 3 channels, DeiT-III pos_embed, MAE fc_norm, ResNet) give PyTorch\'s logits in our models', (t) => {
  tidy(() => {
    manualSeed(2);
    const images = randn([3, 1, 28, 28]);
    const standard = vit();
    const deit3 = vit({ layerScale: 0.1 });
    const mae = vit({ globalPool: 'avg' });
    const resnet = new ResNet({ block: 'basic', layers: [1, 1, 1, 1], widths: [8, 16, 32, 64], stem: 'small', imageSize: 28, inChannels: 1, numClasses: 10, dropPathRate: 0, dropRate: 0, maskPatchSize: 4 });
    // The checkpoints' own models: 32-px RGB (an 8x8 grid) for the ViT, RGB for the ResNet.
    const sources = {
      standard: { ...spec(standard), imageSize: 32, inChannels: 3 },
      deit3: { ...spec(deit3), inChannels: 3 },
      mae: { ...spec(mae), imageSize: 32, inChannels: 3 },
      resnet: { ...spec(resnet), inChannels: 3 },
    };
    const targets = { standard: spec(standard), deit3: spec(deit3), mae: spec(mae), resnet: spec(resnet) };
    const result = runTorch(`
import torch_models as ref
sources = json.loads(${JSON.stringify(JSON.stringify(sources))})
targets = json.loads(${JSON.stringify(JSON.stringify(targets))})
torch.manual_seed(4)
x = inp['x']
with torch.no_grad():
    for name, cfg in sources.items():
        m = ref.build_model(cfg)
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
        if name == 'resnet':
            for b in m.buffers():
                if b.is_floating_point():
                    b.add_(0.1 * torch.rand_like(b))
        state = dict(m.state_dict())
        if name == 'deit3':
            # timm's no_embed_class: pos_embed covers the patches only, the class token gets none
            state['pos_embed'] = state['pos_embed'][:, 1:].clone()
        ref.save_safetensors(${JSON.stringify(directory)} + '/' + name + '.safetensors', state)
        # PyTorch's own adaptation, then the target model's logits
        target = ref.build_model(targets[name]).eval()
        adapted = dict(state)
        if name in ('standard', 'mae'):
            adapted['pos_embed'] = ref.resample_abs_pos_embed(state['pos_embed'], (7, 7), 1, antialias=True)
        key = 'conv1.weight' if name == 'resnet' else 'patch_embed.proj.weight'
        adapted[key] = ref.adapt_input_conv(1, state[key])
        if name == 'deit3':
            adapted['pos_embed'] = state['pos_embed']
            target.pos_embed = torch.nn.Parameter(torch.zeros(1, 49, target.embed_dim))
            target.load_state_dict(adapted, strict=True)
            h = target.patch_embed(x) + target.pos_embed
            h = torch.cat([target.cls_token.expand(h.shape[0], -1, -1), h], dim=1)
            for block in target.blocks:
                h = block(h)
            out[name] = target.head(target.norm(h)[:, 0])
        else:
            target.load_state_dict(adapted, strict=True)
            out[name] = target(x)
`, { x: images });
    const models: Record<string, VisionTransformer | ResNet> = { standard, deit3, mae, resnet };
    for (const [name, model] of Object.entries(models)) {
      const notes: string[] = [];
      const report = loadPretrained(model, join(directory, `${name}.safetensors`), { log: (line) => notes.push(line) });
      model.eval();
      const logits = noGrad(() => model.forward(images));
      const error = relativeError(logits, result[name]);
      t.diagnostic(`${name}: relative difference ${error.toExponential(2)}; ${notes.join(' | ')}`);
      assert.ok(error < TOLERANCE, `${name}: logits differ from PyTorch's by ${error}`);
      assert.ok(logits.std().item() > 1e-3, `${name}: logits are not constant`);
      assert.deepEqual(report.reinitialised, [], `${name}: nothing re-initialised`);
      const text = notes.join('\n');
      assert.match(text, name === 'resnet' ? /conv1\.weight: adapted from 3 to 1/ : /patch_embed\.proj\.weight: adapted from 3 to 1/);
      if (name === 'standard' || name === 'mae') assert.match(text, /resampled from a 8x8 to a 7x7 grid/);
      if (name === 'deit3') assert.match(text, /no class-token slot/);
      model.dispose();
    }
  });
});

test('head absent or of another class count, and an MAE pretraining checkpoint (norm, no fc_norm), are re-initialised and said in the log', () => {
  tidy(() => {
    manualSeed(3);
    const source = vit({ numClasses: 1000 });
    const path = join(directory, 'pretrain.safetensors');
    const state = new Map(source.stateDict());
    saveSafetensors(path, state);
    const model = vit({ globalPool: 'avg', maskMode: 'token' });
    const headBefore = model.head.weight.clone();
    const notes: string[] = [];
    const report = loadPretrained(model, path, { log: (line) => notes.push(line) });
    const text = notes.join('\n');
    assert.match(text, /head\.weight, head\.bias re-initialised: the checkpoint's head has 1000 classes, this data set 10/);
    assert.match(text, /fc_norm\.weight, fc_norm\.bias re-initialised/);
    assert.match(text, /mask_token re-initialised/);
    assert.deepEqual([...report.reinitialised].sort(), ['fc_norm.bias', 'fc_norm.weight', 'head.bias', 'head.weight', 'mask_token']);
    assert.deepEqual([...report.ignored].sort(), ['head.bias', 'head.weight', 'norm.bias', 'norm.weight']);
    assert.equal(relativeError(model.head.weight, headBefore), 0, 'the head keeps its fresh init');
    assert.equal(relativeError(model.blocks.at(1).mlp.fc2.weight, source.blocks.at(1).mlp.fc2.weight), 0, 'blocks loaded');
    assert.equal(model.fcNorm.stateDict().get('weight')!.sum().item(), 32, 'fc_norm starts at LayerNorm\'s init');

    // Without a head at all (a backbone checkpoint).
    state.delete('head.weight');
    state.delete('head.bias');
    saveSafetensors(path, state);
    const plain = vit();
    const lines: string[] = [];
    loadPretrained(plain, path, { log: (line) => lines.push(line) });
    assert.match(lines.join('\n'), /head\.weight, head\.bias re-initialised: the checkpoint has no head/);
    // Same class count, new label set: the head is re-initialised when asked.
    const resnet = new ResNet({ block: 'basic', layers: [1, 1, 1, 1], widths: [8, 16, 32, 64], stem: 'small', imageSize: 28, inChannels: 1, numClasses: 10, dropPathRate: 0, dropRate: 0, maskPatchSize: 4 });
    const fresh = new ResNet({ ...resnet.config });
    const fcBefore = fresh.fc.weight.clone();
    const reset = fitCheckpoint(fresh, resnet.stateDict(), { resetHead: true });
    assert.deepEqual([...reset.report.reinitialised].sort(), ['fc.bias', 'fc.weight']);
    assert.ok(!reset.state.has('fc.weight') && reset.state.has('layer4.0.conv2.weight'));
    for (const value of reset.state.values()) value.dispose();
    assert.equal(relativeError(fresh.fc.weight, fcBefore), 0);
    resnet.dispose(); fresh.dispose();
    for (const m of [source, model, plain]) m.dispose();
  });
});

test('a checkpoint that does not fit: every missing, unexpected and wrong-shape key in one error; strict false loads the rest', () => {
  tidy(() => {
    manualSeed(4);
    const source = vit();
    const state = new Map(source.stateDict());
    state.delete('blocks.0.attn.qkv.weight');
    state.delete('blocks.1.norm2.bias');
    state.set('dist_token', randn([1, 1, 32]));
    state.set('blocks.1.mlp.fc1.weight', randn([100, 32]));
    const path = join(directory, 'bad.safetensors');
    saveSafetensors(path, state);
    const model = vit();
    assert.throws(() => loadPretrained(model, path), (error: Error) => {
      assert.ok(error instanceof PretrainedError);
      for (const part of ['missing from the checkpoint (2): blocks.0.attn.qkv.weight, blocks.1.norm2.bias', 'not in the model (1): dist_token',
        'wrong shape (1): blocks.1.mlp.fc1.weight (checkpoint [100, 32], model [128, 32])', '--init-strict false', path]) {
        assert.ok(error.message.includes(part), `error names ${part}: ${error.message}`);
      }
      return true;
    });
    const before = model.blocks.at(0).attn.qkv.weight.clone();
    const report = loadPretrained(model, path, { strict: false });
    assert.deepEqual([...report.reinitialised].sort(), ['blocks.0.attn.qkv.weight', 'blocks.1.mlp.fc1.weight', 'blocks.1.norm2.bias']);
    assert.equal(relativeError(model.blocks.at(0).attn.qkv.weight, before), 0, 'a missing key keeps the init');
    assert.equal(relativeError(model.blocks.at(0).mlp.fc1.weight, source.blocks.at(0).mlp.fc1.weight), 0, 'the rest loads');
    assert.throws(() => loadPretrained(model, join(directory, 'absent.safetensors')), /--init .*absent\.safetensors: file not found/);
    // A checkpoint with fc_norm into a class-token model: the error says which flag fits it.
    const avg = vit({ globalPool: 'avg' });
    assert.throws(() => fitCheckpoint(vit(), avg.stateDict()), /use --global-pool avg/);
    source.dispose(); model.dispose(); avg.dispose();
  });
});

test('layer-wise lr decay: per-parameter scales equal decay ** (layers - layer) by hand (BEiT/MAE groups), applyLr scales the schedule', () => {
  tidy(() => {
    const model = vit({ depth: 3 });
    const decay = 0.65;
    const groups = paramGroupsWithLayerDecay(model, 0.05, decay, layerAssignment(model), model.noWeightDecay());
    const scaleOf = new Map<string, { lrScale: number; weightDecay: number }>();
    for (const group of groups) group.names!.forEach((name) => scaleOf.set(name, { lrScale: group.lrScale!, weightDecay: group.weightDecay! }));
    // depth 3: layers 0 (embeddings) .. 4 (norm, head); by hand 0.65^4 = 0.17850625, 0.65^3 = 0.274625, 0.65^2 = 0.4225
    const expected: Record<string, number> = {
      cls_token: 0.17850625, pos_embed: 0.17850625, 'patch_embed.proj.weight': 0.17850625, 'patch_embed.proj.bias': 0.17850625,
      'blocks.0.attn.qkv.weight': 0.274625, 'blocks.0.norm1.weight': 0.274625, 'blocks.1.mlp.fc2.bias': 0.4225,
      'blocks.2.attn.proj.weight': 0.65, 'norm.weight': 1, 'head.weight': 1, 'head.bias': 1,
    };
    for (const [name, scale] of Object.entries(expected)) {
      assert.ok(Math.abs(scaleOf.get(name)!.lrScale - scale) < 1e-15, `${name}: lrScale ${scaleOf.get(name)?.lrScale}, by hand ${scale}`);
    }
    assert.equal(scaleOf.size, model.parameters().length, 'every parameter in one group');
    assert.equal(scaleOf.get('blocks.0.attn.qkv.weight')!.weightDecay, 0.05);
    assert.equal(scaleOf.get('blocks.0.attn.qkv.bias')!.weightDecay, 0);
    assert.equal(scaleOf.get('pos_embed')!.weightDecay, 0);
    const optimizer = new AdamW(groups, { lr: 1e-3, weightDecay: 0.05 });
    applyLr(optimizer, 2e-3);
    const index = groups.findIndex((group) => group.names!.includes('blocks.0.attn.qkv.weight'));
    assert.ok(Math.abs(optimizer.paramGroups[index].lr - 2e-3 * 0.274625) < 1e-18);
    // ResNet: stem 0, blocks 1..4, fc 5
    const resnet = new ResNet({ block: 'basic', layers: [1, 1, 1, 1], widths: [8, 16, 32, 64], stem: 'small', imageSize: 28, inChannels: 1, numClasses: 10, dropPathRate: 0, dropRate: 0, maskPatchSize: 4 });
    const layers = layerAssignment(resnet);
    assert.equal(layers.count, 5);
    assert.deepEqual(['conv1.weight', 'bn1.bias', 'layer1.0.conv1.weight', 'layer3.0.downsample.1.weight', 'layer4.0.bn2.weight', 'fc.weight'].map(layers.layerOf), [0, 0, 1, 3, 4, 5]);
    assert.throws(() => paramGroupsWithLayerDecay(model, 0.05, 0, layers), /layer decay must be in \(0, 1\]/);
    optimizer.dispose(); model.dispose(); resnet.dispose();
  });
});

test('global pool avg with fc_norm, and mask-mode token (mask token before the position embedding), equal the reference on the same weights and noise', () => {
  tidy(() => {
    manualSeed(6);
    const images = randn([3, 1, 28, 28]);
    const cases: Record<string, VisionTransformer> = {
      avg: vit({ globalPool: 'avg' }),
      avgNoFcNorm: vit({ globalPool: 'avg', fcNorm: false }),
      token: vit({ maskMode: 'token' }),
    };
    const inputs: Record<string, Tensor> = { x: images };
    const ours: Record<string, Tensor> = {};
    for (const [name, model] of Object.entries(cases)) {
      noGrad(() => { for (const p of model.parameters()) p.add_(randn(p.shape).mul(0.05)); });
      model.eval();
      for (const [key, value] of model.stateDict()) inputs[`${name}:${key}`] = value;
      ours[name] = noGrad(() => model.forward(images));
      manualSeed(77);
      inputs[`${name}:noise`] = rand([3, model.numPatches]);
      manualSeed(77);
      ours[`${name}_masked`] = noGrad(() => model.forward(images, { maskRatio: 0.5 }));
    }
    assert.ok(cases.token.stateDict().has('mask_token') && cases.avg.stateDict().has('fc_norm.weight') && !cases.avg.stateDict().has('norm.weight'));
    assert.ok(cases.avgNoFcNorm.stateDict().has('norm.weight') && !cases.avgNoFcNorm.stateDict().has('fc_norm.weight'));
    const specs = Object.fromEntries(Object.entries(cases).map(([name, model]) => [name, spec(model)]));
    const result = runTorch(`
import torch_models as ref
for name, cfg in json.loads(${JSON.stringify(JSON.stringify(specs))}).items():
    m = ref.build_model(cfg).eval()
    weights = {k[len(name) + 1:]: v for k, v in inp.items() if k.startswith(name + ':') and not k.endswith(':noise')}
    ref.check_keys(m, weights, name)
    m.load_state_dict(weights, strict=True)
    with torch.no_grad():
        out[name] = m(inp['x'])
        out[name + '_masked'] = m(inp['x'], ratio=0.5, noise=inp[name + ':noise'])
`, inputs);
    for (const name of Object.keys(ours)) {
      const error = relativeError(ours[name], result[name]);
      assert.ok(error < 1e-6, `${name}: relative error ${error}`);
    }
    // token mode keeps the sequence: masking changes the logits, but not the way dropping does
    assert.ok(relativeError(ours.token_masked, ours.token) > 1e-3, 'masking changes the logits');
    // and the mask token gets a gradient from a masked forward only
    const model = cases.token;
    model.train();
    model.zeroGrad();
    model.forward(images).sum().backward();
    assert.equal(model.maskToken!.grad, null, 'no gradient without masking');
    model.forward(images, { maskRatio: 0.5 }).sum().backward();
    assert.ok(model.maskToken!.grad!.abs().sum().item() > 0, 'the mask token learns from masked forwards');
    for (const m of Object.values(cases)) m.dispose();
  });
});

// The training run's side: --init, --layer-decay, --global-pool and --mask-mode through the config
// schema and the trainer; a checkpoint that does not fit is refused before the run directory exists.
test('train --init: a Fashion-MNIST run\'s model.safetensors starts a run on the synthetic set (layer decay 0.65, mask-mode token); bad inits leave no run directory', async () => {
  const quiet = (): void => undefined;
  const base = { model: 'vit_micro', limitTrain: 256, limitTest: 256, batchSize: 32, lr: 2e-3, warmupEpochs: 0, probeSize: 32, threads: 1, epochs: 1 };
  const pretrain = join(directory, 'pretrain-run');
  await train(buildConfig({ flags: { ...base, dataset: 'fashion-mnist' } }), { out: pretrain, log: quiet });
  const weights = join(pretrain, 'model.safetensors');

  const lines: string[] = [];
  const flags = { ...base, dataset: 'synthetic', init: weights, 'layer-decay': '0.65', 'mask-mode': 'token', method: 'masksub' };
  const config = buildConfig({ flags });
  assert.equal(config.layerDecay, 0.65);
  const finetune = join(directory, 'finetune-run');
  const result = await train(config, { out: finetune, log: (line) => lines.push(line) });
  const text = lines.join('\n');
  assert.match(text, /init: \d+ tensors from .*model\.safetensors/);
  assert.match(text, /mask_token re-initialised/);
  assert.ok(Number.isFinite(result.history[0].test_acc1));
  const parts = loadCheckpoint(join(finetune, 'checkpoint.safetensors'));
  try {
    // vit_micro: 2 blocks, so the scales are 0.65^3, 0.65^2, 0.65 and 1, each with and without weight decay
    const scales = [...new Set(parts.state.optimizer.groups.map((group) => group.lrScale.toFixed(12)))].sort();
    assert.deepEqual(scales, [0.65 ** 3, 0.65 ** 2, 0.65, 1].map((value) => value.toFixed(12)).sort());
  } finally {
    disposeCheckpoint(parts);
  }

  // A ResNet's weights into a ViT run, and a file that is not there: refused, no directory made.
  const resnetRun = join(directory, 'resnet-run');
  await train(buildConfig({ flags: { ...base, dataset: 'fashion-mnist', model: 'resnet_micro', limitTrain: 64, limitTest: 32 } }), { out: resnetRun, log: quiet });
  for (const [file, message] of [[join(resnetRun, 'model.safetensors'), /does not fit vit model: missing from the checkpoint \(30\): cls_token, pos_embed, .*not in the model \(74\): .*conv1\.weight.*no name in common/],
    [join(directory, 'nothing.safetensors'), /file not found/]] as const) {
    const out = join(directory, 'refused');
    await assert.rejects(train(buildConfig({ flags: { ...base, dataset: 'synthetic', init: file } }), { out, log: quiet }), message);
    assert.equal(existsSync(out), false, 'no run directory left behind');
  }
  // Not strict: the same ResNet weights are logged as unused and the run trains from its own init.
  assert.equal(buildConfig({ flags: { init: weights, 'init-strict': 'false' } }).initStrict, false);
  assert.throws(() => buildConfig({ flags: { 'init-strict': 'false' } }), /init-strict applies only with init/);
  assert.throws(() => buildConfig({ flags: { model: 'resnet_micro', 'global-pool': 'avg' } }), /global-pool applies only to ViT and BEiT models/);
  assert.throws(() => buildConfig({ flags: { model: 'resnet_micro', 'mask-mode': 'token' } }), /mask-mode applies only to ViT models/);
  assert.throws(() => buildConfig({ flags: { 'layer-decay': '0' } }), /layer-decay must be/);
  // The MAE fine-tuning preset carries the recipe's layer decay and mean pooling.
  const mae = buildSettings({ preset: 'mae-vit-b-ft' });
  assert.deepEqual([mae.layerDecay, mae.globalPool, mae.lr, mae.batchSize, mae.dropPath], [0.65, 'avg', 2e-3, 1024, 0.1]);
});

test('a 1-channel patch embedding (a Fashion-MNIST run\'s) adapts to RGB: the filter repeated and scaled by 1/3, so a grey image as three equal channels gives the 1-channel model\'s logits', () => {
  tidy(() => {
    manualSeed(11);
    const grey = vit({ inChannels: 1 });
    const path = join(directory, 'grey.safetensors');
    saveSafetensors(path, grey.stateDict());
    const rgb = vit({ inChannels: 3 });
    const notes: string[] = [];
    loadPretrained(rgb, path, { log: (line) => notes.push(line) });
    assert.match(notes.join('\n'), /patch_embed\.proj\.weight: adapted from 1 to 3 input channels \(the filter repeated, scaled by 1\/3/);
    const filter = grey.stateDict().get('patch_embed.proj.weight')!;
    const adapted = rgb.stateDict().get('patch_embed.proj.weight')!;
    for (let channel = 0; channel < 3; channel++) {
      assert.ok(relativeError(adapted.slice(1, channel, channel + 1), filter.div(3)) < 1e-7, `channel ${channel}: the grey filter / 3`);
    }
    const images = randn([2, 1, 28, 28]);
    const expected = noGrad(() => grey.eval().forward(images));
    const logits = noGrad(() => rgb.eval().forward(images.repeat(1, 3, 1, 1)));
    assert.ok(relativeError(logits, expected) < TOLERANCE, `logits within ${relativeError(logits, expected)}`);
    assert.ok(expected.std().item() > 1e-3, 'logits are not constant');
    grey.dispose(); rgb.dispose();
  });
});
