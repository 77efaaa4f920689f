// CLIP image towers in our ViT (preNorm, act 'quick_gelu', normEps 1e-5; registered as timm's
// vit_base_patch16_clip_224 and vit_base_patch16_clip_quickgelu_224) against OpenAI's own layout
// written below in PyTorch (conv1 without bias, class_embedding, positional_embedding, ln_pre,
// transformer.resblocks with nn.MultiheadAttention and QuickGELU, ln_post, proj): its state dict
// is converted to timm's names the way timm's _convert_openai_clip does (the README's recipe),
// saved by PyTorch as safetensors, and loaded through --init; eval logits and the gradients of a
// cross-entropy loss (mapped back through the same conversion) agree. Being OpenAI's module
// structure (nn.MultiheadAttention, not a fused qkv Linear), the reference is independent of our
// layout; the kernels are the same libtorch ones, so this checks names, order and composition.
// OpenAI's state dict saved as it is (visual.*, with text-tower keys) is converted by --init itself.
// Also: the registered configs have timm's parameter counts and layout, norm_pre is layer 0 of
// layer-wise decay (FT-CLIP), and MaskSub steps keep the live tensor count flat.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { getNumThreads, manualSeed, noGrad, randint, randn, setNumThreads, tidy } from '../src/index.js';
import * as F from '../src/nn/functional.js';
import { AdamW, paramGroupsWithLayerDecay } from '../src/optim/index.js';
import { createModel, layerAssignment, loadPretrained, VisionTransformer, type VitConfig } from '../src/models/index.js';
import { type Criterion } from '../src/masksub/method.js';
import { liveTensors } from '../src/tensor/native.js';
import { relativeError, runTorch } from './helpers/torch.js';
import { maskSubStepsStayFlat } from './helpers/model-checks.js';

const threads = getNumThreads();
setNumThreads(1);
after(() => setNumThreads(threads));
const directory = mkdtempSync(join(tmpdir(), 'masksub-clip-vit-'));
after(() => rmSync(directory, { recursive: true, force: true }));

const CE: Criterion = { kind: 'ce', labelSmoothing: 0, bceTargetThreshold: null };

function clipVit(act: 'gelu' | 'quick_gelu', overrides: Partial<VitConfig> = {}): VisionTransformer {
  return new VisionTransformer({
    imageSize: 28, patchSize: 4, inChannels: 3, numClasses: 32, width: 64, depth: 2, heads: 2, mlpRatio: 4, qkvBias: true,
    layerScale: null, dropPathRate: 0, dropPathSchedule: 'linear', dropRate: 0, preNorm: true, act, normEps: 1e-5, ...overrides,
  });
}

// OpenAI's VisionTransformer (clip/model.py layout), and timm's _convert_openai_clip written out.
const OPENAI_PY = `
import torch.nn as nn
from collections import OrderedDict

class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)

class ResidualAttentionBlock(nn.Module):
    def __init__(self, d, heads, quick):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads)
        self.ln_1 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(OrderedDict([('c_fc', nn.Linear(d, d * 4)), ('gelu', QuickGELU() if quick else nn.GELU()), ('c_proj', nn.Linear(d * 4, d))]))
        self.ln_2 = nn.LayerNorm(d)

    def forward(self, x):
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))

class Transformer(nn.Module):
    def __init__(self, d, layers, heads, quick):
        super().__init__()
        self.resblocks = nn.Sequential(*[ResidualAttentionBlock(d, heads, quick) for _ in range(layers)])

class VisualTransformer(nn.Module):
    def __init__(self, size, patch, d, layers, heads, out, quick):
        super().__init__()
        self.conv1 = nn.Conv2d(3, d, patch, stride=patch, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(d) * d ** -0.5)
        self.positional_embedding = nn.Parameter(torch.randn((size // patch) ** 2 + 1, d) * d ** -0.5)
        self.ln_pre = nn.LayerNorm(d)
        self.transformer = Transformer(d, layers, heads, quick)
        self.ln_post = nn.LayerNorm(d)
        self.proj = nn.Parameter(torch.randn(d, out) * d ** -0.5)

    def forward(self, x):
        x = self.conv1(x).flatten(2).permute(0, 2, 1)
        cls = self.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding
        x = self.ln_pre(x).permute(1, 0, 2)
        x = self.transformer.resblocks(x).permute(1, 0, 2)
        return self.ln_post(x[:, 0, :]) @ self.proj

def convert_openai_clip(state, prefix='visual.'):
    swaps = [('conv1', 'patch_embed.proj'), ('positional_embedding', 'pos_embed'), ('transformer.resblocks.', 'blocks.'),
             ('ln_pre', 'norm_pre'), ('ln_post', 'norm'), ('ln_', 'norm'), ('in_proj_', 'qkv.'), ('out_proj', 'proj'),
             ('mlp.c_fc', 'mlp.fc1'), ('mlp.c_proj', 'mlp.fc2')]
    out_dict = {}
    for k, v in state.items():
        if not k.startswith(prefix):
            continue
        k = k[len(prefix):]
        for a, b in swaps:
            k = k.replace(a, b)
        if k == 'proj':
            k, v = 'head.weight', v.transpose(0, 1)
            out_dict['head.bias'] = torch.zeros(v.shape[0])
        elif k == 'class_embedding':
            v = v.reshape(1, 1, -1)
            k = 'cls_token'
        elif k == 'pos_embed':
            v = v.unsqueeze(0)
        out_dict[k] = v.contiguous()
    return out_dict
`;

test('CLIP towers: the registered configs have timm\'s layout and parameter counts; norm_pre is layer 0 of layer decay', () => {
  tidy(() => {
    for (const name of ['vit_base_patch16_clip_224', 'vit_base_patch16_clip_quickgelu_224']) {
      const model = createModel(name) as VisionTransformer;
      const keys = [...model.stateDict().keys()];
      assert.ok(keys.includes('norm_pre.weight') && keys.includes('norm.weight') && !keys.includes('patch_embed.proj.bias'), name);
      assert.equal(model.blocks.items[0].mlp.activation, name.includes('quickgelu') ? 'quick_gelu' : 'gelu');
      assert.equal(model.blocks.items[0].norm1.eps, 1e-5);
      // timm's vit_base_patch16_clip_224 with a 1000-class head: ViT-B/16's 86,567,656 less the
      // patch-embedding bias (768) plus norm_pre (2 x 768).
      assert.equal(model.numParameters(), 86_567_656 - 768 + 2 * 768);
      const { count, layerOf } = layerAssignment(model);
      assert.deepEqual(['norm_pre.weight', 'patch_embed.proj.weight', 'blocks.0.mlp.fc1.weight', 'norm.bias', 'head.weight'].map(layerOf), [0, 0, 1, count, count]);
      model.dispose();
    }
    const plain = createModel('vit_base_patch16_224');
    assert.equal(plain.numParameters(), 86_567_656);
    assert.ok(!plain.stateDict().has('norm_pre.weight'));
    plain.dispose();
  });
});

test('an OpenAI-layout CLIP tower converted to timm names by PyTorch loads through --init: logits and CE gradients equal OpenAI\'s model, QuickGELU and GELU; OpenAI\'s own state dict converts on loading', (t) => {
  tidy(() => {
    manualSeed(7);
    const images = randn([3, 3, 28, 28]);
    const labels = randint(0, 32, [3], { dtype: 'int64' });
    const result = runTorch(`${OPENAI_PY}
import torch_models as ref
torch.manual_seed(3)
x, y = inp['x'], inp['y']
for act in ('quick_gelu', 'gelu'):
    m = VisualTransformer(28, 4, 64, 2, 2, 32, act == 'quick_gelu')
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    state = convert_openai_clip({'visual.' + k: v for k, v in m.state_dict().items()})
    ref.save_safetensors(${JSON.stringify(directory)} + '/' + act + '.safetensors', state)
    # The OpenAI state dict itself, with (a stand-in for) its text tower: --init converts it.
    raw = {'visual.' + k: v.contiguous() for k, v in m.state_dict().items()}
    raw.update({'token_embedding.weight': torch.randn(10, 8), 'text_projection': torch.randn(8, 32), 'ln_final.weight': torch.ones(8)})
    ref.save_safetensors(${JSON.stringify(directory)} + '/' + act + '-openai.safetensors', raw)
    logits = m(x)
    out[act + ':logits'] = logits
    F.cross_entropy(logits, y).backward()
    grads = convert_openai_clip({'visual.' + k: p.grad for k, p in m.named_parameters()})
    for k, v in grads.items():
        out[act + ':g:' + k] = v
`, { x: images, y: labels });
    for (const act of ['quick_gelu', 'gelu'] as const) {
      const model = clipVit(act);
      const notes: string[] = [];
      const report = loadPretrained(model, join(directory, `${act}.safetensors`), { log: (line) => notes.push(line) });
      assert.deepEqual(report.reinitialised, [], `${act}: every key loads`);
      model.eval();
      const logits = model.forward(images);
      model.zeroGrad();
      F.crossEntropy(logits, labels).backward();
      const logitError = relativeError(logits, result[`${act}:logits`]);
      let gradientError = 0;
      let worst = '';
      for (const [name, parameter] of model.namedParameters()) {
        // head.bias is a constant 0 in the conversion (OpenAI's proj has no bias): no reference gradient.
        if (name === 'head.bias') continue;
        const expected = result[`${act}:g:${name}`];
        assert.ok(expected, `${act}: a PyTorch gradient for ${name}`);
        const error = tidy(() => parameter.grad!.sub(expected).abs().max().item() / Math.max(expected.abs().max().item(), 1e-12));
        if (error > gradientError) [gradientError, worst] = [error, name];
      }
      t.diagnostic(`${act}: logits ${logitError.toExponential(2)}, gradients ${gradientError.toExponential(2)} (worst ${worst}); ${notes.join(' | ')}`);
      assert.ok(logitError < 1e-5, `${act}: logits differ by ${logitError}`);
      assert.ok(gradientError < 1e-4, `${act}: gradients differ by ${gradientError} at ${worst}`);
      assert.ok(logits.std().item() > 1e-3, 'logits are not constant');
      model.dispose();
    }
    // The OpenAI state dict as it is: converted by --init as timm's checkpoint_filter_fn does, the text tower left out.
    for (const act of ['quick_gelu', 'gelu'] as const) {
      const model = clipVit(act);
      const notes: string[] = [];
      const live = liveTensors();
      const report = loadPretrained(model, join(directory, `${act}-openai.safetensors`), { log: (line) => notes.push(line) });
      assert.equal(liveTensors(), live, 'the converted tensors are freed');
      model.eval();
      const error = relativeError(noGrad(() => model.forward(images)), result[`${act}:logits`]);
      t.diagnostic(`${act}, OpenAI names: logits ${error.toExponential(2)}; ${notes.join(' | ')}`);
      assert.ok(error < 1e-5, `${act} from OpenAI names: logits differ by ${error}`);
      assert.deepEqual(report.reinitialised, []);
      assert.deepEqual(report.ignored.sort(), ['ln_final.weight', 'text_projection', 'token_embedding.weight']);
      assert.match(notes.join('\n'), /an OpenAI CLIP state dict \(visual\.\*\).*3 tensor\(s\) of the text tower not used/);
      model.dispose();
    }
    // The activation matters: the GELU checkpoint in a QuickGELU tower gives other logits.
    const wrong = clipVit('quick_gelu');
    loadPretrained(wrong, join(directory, 'gelu.safetensors'));
    wrong.eval();
    const logits = noGrad(() => wrong.forward(images));
    assert.ok(relativeError(logits, result['gelu:logits']) > 1e-3, 'QuickGELU and GELU differ');
    wrong.dispose();
  });
});

test('CLIP tower: MaskSub steps (token dropping before norm_pre) have finite losses and leave the live tensor count flat', (t) => {
  manualSeed(3);
  const model = clipVit('quick_gelu', { inChannels: 1, numClasses: 10, dropPathRate: 0.1 });
  model.train();
  const optimizer = new AdamW(paramGroupsWithLayerDecay(model, 0.05, 0.6, layerAssignment(model), model.noWeightDecay()), { lr: 1e-3, weightDecay: 0.05 });
  maskSubStepsStayFlat(t, model, optimizer);
  optimizer.dispose();
  model.dispose();
});
