// BEiT v2 (src/models/beit.ts) against a plain PyTorch BEiT written below with timm's Beit names
// and layout (Debian's python3-torch has no timm): on the same weights the state dict keys equal
// the PyTorch module's, and eval logits and the parameter gradients of a cross-entropy loss agree,
// also for the mask-token path given the same noise (BEiT v2's layout, and one with an absolute
// position embedding, class-token pooling and no LayerScale); the relative position index equals timm's
// construction; timm-format checkpoints written by PyTorch (safetensors) load through --init with
// PyTorch's logits: a fine-tuned one as is, one for another grid (the bias tables resized by
// timm's resize_rel_pos_bias_table, written out below in torch), and a BEiT v2 pretraining one
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

// The PyTorch BEiT: timm's Beit without the fused attention path, and timm's
// resize_rel_pos_bias_table (its default, scipy-free path) written with torch ops.
const BEIT_PY = `
import torch.nn as nn

def rel_index(g):
    n = (2 * g - 1) ** 2 + 3
    coords = torch.stack(torch.meshgrid(torch.arange(g), torch.arange(g), indexing='ij')).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += g - 1
    rel[:, :, 1] += g - 1
    rel[:, :, 0] *= 2 * g - 1
    idx = torch.zeros((g * g + 1,) * 2, dtype=torch.long)
    idx[1:, 1:] = rel.sum(-1)
    idx[0, 0:] = n - 3
    idx[0:, 0] = n - 2
    idx[0, 0] = n - 1
    return idx

class Attention(nn.Module):
    def __init__(self, dim, heads, g):
        super().__init__()
        self.heads, self.g = heads, g
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * g - 1) ** 2 + 3, heads))
        self.register_buffer('relative_position_index', rel_index(g), persistent=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        bias = torch.cat((self.q_bias, torch.zeros_like(self.q_bias), self.v_bias))
        q, k, v = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        rpb = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        attn = attn + rpb.permute(2, 0, 1).contiguous().unsqueeze(0)
        x = (attn.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(x)

class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))

class Block(nn.Module):
    def __init__(self, dim, heads, g, init_values):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, g)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * 4))
        self.gamma_1 = nn.Parameter(init_values * torch.ones(dim)) if init_values else None
        self.gamma_2 = nn.Parameter(init_values * torch.ones(dim)) if init_values else None

    def forward(self, x):
        if self.gamma_1 is None:
            x = x + self.attn(self.norm1(x))
            return x + self.mlp(self.norm2(x))
        x = x + self.gamma_1 * self.attn(self.norm1(x))
        return x + self.gamma_2 * self.mlp(self.norm2(x))

class PatchEmbed(nn.Module):
    def __init__(self, patch, in_chans, dim):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)

class Beit(nn.Module):
    def __init__(self, cfg, mask_token=True):
        super().__init__()
        d, g = cfg['width'], cfg['imageSize'] // cfg['patchSize']
        self.patch_embed = PatchEmbed(cfg['patchSize'], cfg['inChannels'], d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, g * g + 1, d)) if cfg.get('absolutePosition') else None
        if mask_token:
            self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self.blocks = nn.ModuleList([Block(d, cfg['heads'], g, cfg['layerScale']) for _ in range(cfg['depth'])])
        self.avg = cfg.get('globalPool', 'avg') == 'avg'
        if self.avg:
            self.fc_norm = nn.LayerNorm(d, eps=1e-6)
        else:
            self.norm = nn.LayerNorm(d, eps=1e-6)
        self.head = nn.Linear(d, cfg['numClasses'])

    def forward(self, x, ratio=0.0, noise=None):
        x = self.patch_embed(x)
        b, n, c = x.shape
        if ratio:
            # BEiT's masked forward: x * (1 - w) + mask_token * w, on the positions MAE's rule masks for this noise
            keep = int(n * (1 - ratio))
            w = (noise.argsort(1).argsort(1) >= keep).unsqueeze(-1).to(x.dtype)
            x = x * (1 - w) + self.mask_token.expand(b, n, -1) * w
        x = torch.cat((self.cls_token.expand(b, -1, -1), x), dim=1)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.fc_norm(x[:, 1:].mean(1)) if self.avg else self.norm(x)[:, 0])

def load(cfg, weights, mask_token=True):
    m = Beit(cfg, mask_token)
    own = set(m.state_dict().keys())
    assert own == set(weights.keys()), ('keys differ', sorted(own ^ set(weights.keys())))
    m.load_state_dict(weights, strict=True)
    return m

def grads(m, prefix):
    for name, p in m.named_parameters():
        out[prefix + name] = p.grad if p.grad is not None else torch.zeros_like(p)

def resize_table(table, grid):
    # timm's resize_rel_pos_bias_table without scipy: RegularGridInterpolator (linear) on BEiT's geometric offsets
    dst = 2 * grid - 1
    src = int((table.shape[0] - 3) ** 0.5)
    extra, table = table[-3:], table[:-3]
    def calc(src, dst):
        left, right = 1.01, 1.5
        while right - left > 1e-6:
            q = (left + right) / 2.0
            gp = (1.0 - q ** (src // 2)) / (1.0 - q)
            if gp > dst // 2:
                right = q
            else:
                left = q
        dis, cur = [], 1
        for i in range(src // 2):
            dis.append(cur)
            cur += q ** (i + 1)
        return [-d for d in reversed(dis)] + [0] + dis
    ys = torch.tensor(calc(src, dst), dtype=torch.float64)
    t = dst // 2
    d = torch.arange(-t, t + 0.1, 1.0, dtype=torch.float64)
    def bracket(p, x):
        hi = torch.bucketize(x, p)
        hi[hi >= p.shape[0]] = p.shape[0] - 1
        lo = (hi - 1).clamp(0, p.shape[0] - 1)
        dl, dh = (x - p[lo]).clamp(min=0), (p[hi] - x).clamp(min=0)
        both = (dl == 0) & (dh == 0)
        dl[both] = 1.0
        dh[both] = 1.0
        return lo, hi, dl, dh
    ylo, yhi, ydl, ydh = bracket(ys, d)
    heads = []
    for h in range(table.shape[1]):
        z = table[:, h].double().view(src, src)
        top = (z[ylo][:, ylo] * ydh[None, :] + z[ylo][:, yhi] * ydl[None, :]) / (ydl + ydh)[None, :]
        bottom = (z[yhi][:, ylo] * ydh[None, :] + z[yhi][:, yhi] * ydl[None, :]) / (ydl + ydh)[None, :]
        heads.append(((top * ydh[:, None] + bottom * ydl[:, None]) / (ydl + ydh)[:, None]).reshape(-1, 1))
    return torch.cat([torch.cat(heads, 1).to(table.dtype), extra], 0)
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
  const images = randn([8, 1, 28, 28]);
  const labels = randint(0, 10, [8], { dtype: 'int64' });
  maskSubStepsStayFlat(t, model, optimizer, images, labels);
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
  for (const method of ['dropsub', 'pathsub'] as const) {
    tidy(() => {
      const result = methodStep(model, images, labels, { method, ratio: 0.5, subWeight: 0.5, criterion: CE });
      assert.ok(result.finite && result.lossSub !== null && Number.isFinite(result.lossSub), `${method}: sub loss ${result.lossSub}`);
    });
    assert.deepEqual(sites.map((site) => (site as Dropout).p), new Array<number>(sites.length).fill(0), `${method}: the dropout rates are restored`);
    assert.deepEqual(model.blocks.items.map((block) => block.dropPath1.p), [0, 0.1], `${method}: timm's linear drop-path rates are restored`);
  }
  optimizer.dispose();
  images.dispose();
  labels.dispose();
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

