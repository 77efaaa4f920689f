// The Swin Transformer (src/models/swin.ts) against a plain PyTorch Swin written below with
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

// The PyTorch Swin: timm's current layout (PatchMerging at the start of stages after the first,
// NHWC feature maps, head.fc), its non-fused attention path, its window clamping.
const SWIN_PY = `
import torch.nn as nn

def window_partition(x, ws):
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, ws, ws, c)

def window_reverse(windows, ws, h, w):
    c = windows.shape[-1]
    x = windows.view(-1, h // ws, w // ws, ws, ws, c)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, h, w, c)

def rel_index(ws):
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing='ij')).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += ws - 1
    rel[:, :, 1] += ws - 1
    rel[:, :, 0] *= 2 * ws - 1
    return rel.sum(-1)

class WindowAttention(nn.Module):
    def __init__(self, dim, heads, ws):
        super().__init__()
        self.heads, self.ws = heads, ws
        self.scale = (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * ws - 1) ** 2, heads))
        self.register_buffer('relative_position_index', rel_index(ws), persistent=False)
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, mask):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        attn = attn + bias.permute(2, 0, 1).contiguous().unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = (attn.view(-1, nw, self.heads, n, n) + mask.unsqueeze(1).unsqueeze(0)).view(-1, self.heads, n, n)
        x = (attn.softmax(-1) @ v).transpose(1, 2).reshape(b, n, -1)
        return self.proj(x)

class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))

class SwinBlock(nn.Module):
    def __init__(self, dim, res, heads, ws, shift):
        super().__init__()
        self.ws = res if res <= ws else ws
        self.shift = 0 if res <= ws else shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, self.ws)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * 4))
        mask = None
        if self.shift:
            hp = math.ceil(res / self.ws) * self.ws
            img = torch.zeros(1, hp, hp, 1)
            cnt = 0
            for h in ((0, -self.ws), (-self.ws, -self.shift), (-self.shift, None)):
                for w in ((0, -self.ws), (-self.ws, -self.shift), (-self.shift, None)):
                    img[:, h[0]:h[1], w[0]:w[1], :] = cnt
                    cnt += 1
            mw = window_partition(img, self.ws).view(-1, self.ws * self.ws)
            mask = mw.unsqueeze(1) - mw.unsqueeze(2)
            mask = mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)
        self.register_buffer('attn_mask', mask, persistent=False)

    def _attn(self, x):
        b, h, w, c = x.shape
        if self.shift:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
        ph, pw = (self.ws - h % self.ws) % self.ws, (self.ws - w % self.ws) % self.ws
        x = F.pad(x, (0, 0, 0, pw, 0, ph))
        _, hp, wp, _ = x.shape
        win = window_partition(x, self.ws).view(-1, self.ws * self.ws, c)
        win = self.attn(win, self.attn_mask)
        x = window_reverse(win.view(-1, self.ws, self.ws, c), self.ws, hp, wp)[:, :h, :w, :].contiguous()
        if self.shift:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(1, 2))
        return x

    def forward(self, x):
        b, h, w, c = x.shape
        x = x + self._attn(self.norm1(x))
        x = x.reshape(b, -1, c)
        x = x + self.mlp(self.norm2(x))
        return x.reshape(b, h, w, c)

class PatchMerging(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x):
        b, h, w, c = x.shape
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        _, h, w, _ = x.shape
        x = x.reshape(b, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 4, 2, 5).flatten(3)
        return self.reduction(self.norm(x))

class Stage(nn.Module):
    def __init__(self, dim, out_dim, res, depth, heads, ws, downsample):
        super().__init__()
        self.downsample = PatchMerging(dim) if downsample else nn.Identity()
        self.blocks = nn.Sequential(*[SwinBlock(out_dim, res, heads, ws, 0 if i % 2 == 0 else ws // 2) for i in range(depth)])

    def forward(self, x):
        return self.blocks(self.downsample(x))

class PatchEmbed(nn.Module):
    def __init__(self, patch, in_chans, dim):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, patch, stride=patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        return self.norm(self.proj(x).permute(0, 2, 3, 1))

class Head(nn.Module):
    def __init__(self, dim, classes):
        super().__init__()
        self.fc = nn.Linear(dim, classes)

    def forward(self, x):
        return self.fc(x.mean((1, 2)))

class Swin(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        e, depths, heads = cfg['embedDim'], cfg['depths'], cfg['heads']
        self.patch_embed = PatchEmbed(cfg['patchSize'], cfg['inChannels'], e)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, e))
        res = cfg['imageSize'] // cfg['patchSize']
        layers = []
        for i in range(len(depths)):
            if i > 0:
                res = (res + 1) // 2
            dim_in, dim_out = e * 2 ** max(i - 1, 0), e * 2 ** i
            layers.append(Stage(dim_in, dim_out, res, depths[i], heads[i], cfg['windowSize'], i > 0))
        self.layers = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(e * 2 ** (len(depths) - 1))
        self.head = Head(e * 2 ** (len(depths) - 1), cfg['numClasses'])

    def forward(self, x, ratio=0.0, noise=None):
        x = self.patch_embed(x)
        if ratio:
            # SimMIM: x * (1 - w) + mask_token * w, on the positions MAE's rule masks for this noise
            b, h, w_, c = x.shape
            keep = int(h * w_ * (1 - ratio))
            masked = (noise.argsort(1).argsort(1) >= keep).view(b, h, w_, 1).to(x.dtype)
            x = x * (1 - masked) + self.mask_token.view(1, 1, 1, c) * masked
        return self.head(self.norm(self.layers(x)))

def load(cfg, weights):
    m = Swin(cfg)
    own = set(m.state_dict().keys())
    assert own == set(weights.keys()), ('keys differ', sorted(own ^ set(weights.keys())))
    m.load_state_dict(weights, strict=True)
    return m

def grads(m, prefix):
    for name, p in m.named_parameters():
        out[prefix + name] = p.grad if p.grad is not None else torch.zeros_like(p)
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
  const images = randn([8, 1, 28, 28]);
  const labels = randint(0, 10, [8], { dtype: 'int64' });
  maskSubStepsStayFlat(t, model, optimizer, images, labels);
  optimizer.dispose();
  images.dispose();
  labels.dispose();
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
