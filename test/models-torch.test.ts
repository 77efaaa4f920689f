// Whole models against plain PyTorch re-implementations of timm's VisionTransformer and ResNet
// (Debian's python3-torch; no timm there, so the modules are written out below with timm's
// names): parameter/buffer names and shapes equal the PyTorch module's state_dict keys exactly,
// eval-mode logits agree on the same weights and input, the MAE token dropping and the patch
// zeroing agree with PyTorch given the same noise, and weights round-trip through a
// .safetensors file that Python reads with struct + json + torch.frombuffer.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { manualSeed, noGrad, rand, randn, type Tensor, tensor, tidy } from '../src/index.js';
import * as F from '../src/nn/functional.js';
import { AdamW, paramGroupsWithWeightDecay } from '../src/optim/index.js';
import { type Classifier, createModel, ResNet, VisionTransformer } from '../src/models/index.js';
import { BatchNorm2d } from '../src/nn/index.js';
import { saveSafetensors } from '../src/tensor/safetensors.js';
import { relativeError, runTorch } from './helpers/torch.js';

const TOLERANCE = 1e-5;
const directory = mkdtempSync(join(tmpdir(), 'masksub-models-torch-'));
after(() => rmSync(directory, { recursive: true, force: true }));

const MODELS_PY = String.raw`
import struct
import torch.nn as nn

# ---- timm VisionTransformer (class token, global_pool='token', no fc_norm), written out ----
class Attention(nn.Module):
    def __init__(self, dim, heads, qkv_bias):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
    def forward(self, x):
        B, N, C = x.shape
        h, d = self.heads, C // self.heads
        q, k, v = self.qkv(x).split(C, dim=-1)          # timm layout: [q | k | v], heads contiguous
        q, k, v = (t.reshape(B, N, h, d) for t in (q, k, v))
        a = torch.einsum('bnhd,bmhd->bhnm', q, k) / math.sqrt(d)
        y = torch.einsum('bhnm,bmhd->bnhd', a.softmax(-1), v).reshape(B, N, C)
        return self.proj(y)

class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))

class LayerScale(nn.Module):
    def __init__(self, dim, init):
        super().__init__()
        self.gamma = nn.Parameter(init * torch.ones(dim))
    def forward(self, x):
        return x * self.gamma

class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio, qkv_bias, ls):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, qkv_bias)
        self.ls1 = LayerScale(dim, ls) if ls is not None else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, ls) if ls is not None else nn.Identity()
    def forward(self, x):
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))

class PatchEmbed(nn.Module):
    def __init__(self, patch, chans, dim):
        super().__init__()
        self.proj = nn.Conv2d(chans, dim, patch, stride=patch)
    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)

class VisionTransformer(nn.Module):
    def __init__(self, img_size, patch_size, in_chans, num_classes, embed_dim, depth, num_heads, mlp_ratio=4.0, qkv_bias=True, init_values=None):
        super().__init__()
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.num_patches = (img_size // patch_size) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches + 1, embed_dim))
        self.blocks = nn.Sequential(*[Block(embed_dim, num_heads, mlp_ratio, qkv_bias, init_values) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Linear(embed_dim, num_classes)
    def forward(self, x, noise=None, ratio=0.0):
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        if noise is not None:                           # MAE random_masking on the patch tokens
            keep = int(self.num_patches * (1 - ratio))
            ids = torch.argsort(noise, dim=1)[:, :keep]
            patches = torch.gather(x[:, 1:], 1, ids.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
            x = torch.cat([x[:, :1], patches], dim=1)
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])

# ---- timm / torchvision ResNet, written out ----
class BasicBlock(nn.Module):
    expansion = 1
    def __init__(self, inplanes, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))

class Bottleneck(nn.Module):
    expansion = 4
    def __init__(self, inplanes, planes, stride):
        super().__init__()
        out = planes * 4
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.downsample = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride, bias=False), nn.BatchNorm2d(out))
    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))

class ResNet(nn.Module):
    def __init__(self, block, layers, widths, stem, in_chans, num_classes):
        super().__init__()
        Block = BasicBlock if block == 'basic' else Bottleneck
        if stem == 'imagenet':
            inplanes = 64
            self.conv1 = nn.Conv2d(in_chans, 64, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        else:
            inplanes = widths[0]
            self.conv1 = nn.Conv2d(in_chans, inplanes, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(inplanes)
        for i, (count, planes) in enumerate(zip(layers, widths)):
            blocks = []
            for j in range(count):
                blocks.append(Block(inplanes, planes, 2 if (j == 0 and i > 0) else 1))
                inplanes = planes * Block.expansion
            setattr(self, 'layer%d' % (i + 1), nn.Sequential(*blocks))
        self.fc = nn.Linear(inplanes, num_classes)
    def forward(self, x, noise=None, ratio=0.0, patch=None):
        if noise is not None:                           # zero int(n*r) random patches per sample
            B, _, H, W = x.shape
            rows, cols = H // patch, W // patch
            masked = int(rows * cols * ratio)
            ids = torch.argsort(noise, dim=1)[:, :masked]
            keep = torch.ones(B, rows * cols).scatter(1, ids, 0.0).reshape(B, 1, rows, cols)
            x = x * keep.repeat_interleave(patch, 2).repeat_interleave(patch, 3)
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        for i in range(4):
            x = getattr(self, 'layer%d' % (i + 1))(x)
        return self.fc(x.mean((2, 3)))

def build(cfg):
    if cfg['family'] == 'vit':
        return VisionTransformer(cfg['imageSize'], cfg['patchSize'], cfg['inChannels'], cfg['numClasses'], cfg['width'],
                                 cfg['depth'], cfg['heads'], cfg['mlpRatio'], cfg['qkvBias'], cfg['layerScale'])
    return ResNet(cfg['block'], cfg['layers'], cfg['widths'], cfg['stem'], cfg['inChannels'], cfg['numClasses'])

_ST = {'F64': torch.float64, 'F32': torch.float32, 'F16': torch.float16, 'BF16': torch.bfloat16, 'I64': torch.int64,
       'I32': torch.int32, 'I16': torch.int16, 'I8': torch.int8, 'U8': torch.uint8, 'BOOL': torch.bool}
def load_safetensors(path):
    data = open(path, 'rb').read()
    (n,) = struct.unpack('<Q', data[:8])
    header = json.loads(data[8:8 + n].decode('utf-8'))
    base = 8 + n
    tensors = {}
    for name, info in header.items():
        if name == '__metadata__':
            continue
        begin, end = info['data_offsets']
        dtype = _ST[info['dtype']]
        flat = torch.frombuffer(bytearray(data[base + begin:base + end]), dtype=dtype) if end > begin else torch.empty(0, dtype=dtype)
        tensors[name] = flat.reshape(info['shape']).clone()
    return tensors

def check_keys(model, weights, where):
    want = model.state_dict()
    missing = sorted(set(want) - set(weights))
    extra = sorted(set(weights) - set(want))
    shapes = ['%s: ours %s, torch %s' % (k, list(weights[k].shape), list(want[k].shape))
              for k in want if k in weights and weights[k].shape != want[k].shape]
    dtypes = ['%s: ours %s, torch %s' % (k, weights[k].dtype, want[k].dtype)
              for k in want if k in weights and weights[k].dtype != want[k].dtype]
    if missing or extra or shapes or dtypes:
        raise SystemExit('%s: state dict differs from the PyTorch module: missing %s, unexpected %s, shapes %s, dtypes %s'
                         % (where, missing, extra, shapes, dtypes))
    return len(want)
`;

interface ModelCase {
  model: Classifier;
  /** JSON config for build() in Python. */
  config: Record<string, unknown>;
  images: Tensor;
  /** Pass weights as JSON inputs too (small models), or only through the safetensors file. */
  viaJson: boolean;
}

/** Non-trivial weights: BN statistics and scales away from 0/1 (timm zero-inits the last BN), perturbed ViT weights. */
function randomizeWeights(model: Classifier): void {
  noGrad(() => tidy(() => {
    if (model instanceof VisionTransformer) {
      for (const p of model.parameters()) p.add_(randn(p.shape).mul(0.05));
    }
    for (const m of model.modules()) {
      if (!(m instanceof BatchNorm2d)) continue;
      const n = m.numFeatures;
      m.weight.copy_(rand([n]).add(0.5));
      m.bias.copy_(randn([n]).mul(0.1));
      m.runningMean.copy_(randn([n]).mul(0.1));
      m.runningVar.copy_(rand([n]).add(0.5));
    }
  }));
}

function vitConfig(model: VisionTransformer): Record<string, unknown> {
  return { family: 'vit', ...model.config };
}
function resnetConfig(model: ResNet): Record<string, unknown> {
  return { family: 'resnet', ...model.config };
}

function compare(name: string, build: () => ModelCase, maskRatio: number | null): void {
  test(`${name}: state dict names = PyTorch module's, eval logits${maskRatio ? ', masked logits' : ''} and safetensors round trip agree`, (t) => {
    tidy(() => {
      manualSeed(31);
      const { model, config, images, viaJson } = build();
      randomizeWeights(model);
      model.eval();
      const state = model.stateDict();
      const path = join(directory, `${name}.safetensors`);
      saveSafetensors(path, state);

      const inputs: Record<string, Tensor> = { x: images };
      if (viaJson) for (const [key, value] of state) inputs[`w:${key}`] = value;
      const logits = noGrad(() => model.forward(images));
      let masked: Tensor | null = null;
      let patch = 0;
      if (maskRatio) {
        const tokens = model instanceof VisionTransformer ? model.numPatches : (images.size(2) / (model as ResNet).config.maskPatchSize) ** 2;
        patch = model instanceof ResNet ? model.config.maskPatchSize : 0;
        manualSeed(77);
        inputs.noise = rand([images.size(0), tokens]);
        manualSeed(77);
        masked = noGrad(() => model.forward(images, { maskRatio }));
      }

      const script = `${MODELS_PY}
cfg = json.loads(${JSON.stringify(JSON.stringify(config))})
torch.manual_seed(0)
with torch.no_grad():
    from_file = load_safetensors(${JSON.stringify(path)})
    m2 = build(cfg).eval()
    out['keys'] = float(check_keys(m2, from_file, 'safetensors'))
    m2.load_state_dict(from_file, strict=True)
    out['logits_st'] = m2(inp['x'])
    if ${viaJson ? 'True' : 'False'}:
        ours = {k[2:]: v for k, v in inp.items() if k.startswith('w:')}
        m = build(cfg).eval()
        check_keys(m, ours, 'json')
        m.load_state_dict(ours, strict=True)
        out['st_vs_json'] = max(float((from_file[k].double() - ours[k].double()).abs().max()) if ours[k].numel() else 0.0 for k in ours)
        out['logits'] = m(inp['x'])
    if 'noise' in inp:
        out['masked'] = m2(inp['x'], noise=inp['noise'], ratio=${maskRatio ?? 0}${patch ? `, patch=${patch}` : ''})
`;
      const result = runTorch(script, inputs);
      assert.equal(result.keys.item(), state.size, `${name}: same number of state dict entries`);
      const errors: Record<string, number> = { safetensors: relativeError(logits, result.logits_st) };
      if (viaJson) {
        assert.equal(result.st_vs_json.item(), 0, `${name}: the safetensors file holds exactly our weights`);
        errors.json = relativeError(logits, result.logits);
      }
      if (masked) errors.masked = relativeError(masked, result.masked);
      for (const [what, error] of Object.entries(errors)) {
        assert.ok(error < TOLERANCE, `${name} ${what}: relative error ${error}`);
      }
      // the comparison is not vacuous: logits vary across samples and classes
      assert.ok(logits.std().item() > 1e-3, `${name}: logits are not constant`);
      t.diagnostic(`${name}: ${Object.entries(errors).map(([k, v]) => `${k} ${v.toExponential(2)}`).join(', ')}`);
      model.dispose();
    });
  });
}

compare('vit_micro', () => {
  const model = createModel('vit_micro', { inChannels: 1, numClasses: 10 }) as VisionTransformer;
  return { model, config: vitConfig(model), images: randn([3, 1, 28, 28]), viaJson: true };
}, 0.5);

compare('vit_layerscale', () => {
  const model = createModel('vit_micro', { inChannels: 3, numClasses: 7, layerScale: 0.1 }) as VisionTransformer;
  assert.ok(model.stateDict().has('blocks.0.ls1.gamma'));
  return { model, config: vitConfig(model), images: randn([2, 3, 28, 28]), viaJson: true };
}, 0.75);

compare('resnet_micro', () => {
  const model = createModel('resnet_micro', { inChannels: 3, numClasses: 10 }) as ResNet;
  return { model, config: resnetConfig(model), images: randn([2, 3, 28, 28]), viaJson: true };
}, 0.25);

compare('resnet_bottleneck_imagenet_stem', () => {
  const model = new ResNet({
    block: 'bottleneck', layers: [2, 1, 1, 1], widths: [8, 16, 32, 64], stem: 'imagenet', imageSize: 64,
    inChannels: 3, numClasses: 5, dropPathRate: 0, dropRate: 0, maskPatchSize: 8,
  });
  return { model, config: resnetConfig(model), images: randn([2, 3, 64, 64]), viaJson: true };
}, 0.5);

compare('resnet50', () => {
  const model = createModel('resnet50', { numClasses: 1000 }) as ResNet;
  return { model, config: resnetConfig(model), images: randn([1, 3, 64, 64]), viaJson: false };
}, null);

// Training dynamics, not only single forwards: the same full-batch AdamW steps from the same
// weights must follow PyTorch's loss curve (model + loss + backward + optimizer end to end).
test('vit_micro trained 25 full-batch AdamW steps follows PyTorch\'s loss curve and ends at the same weights', () => {
  tidy(() => {
    manualSeed(5);
    const model = createModel('vit_micro', { inChannels: 1, numClasses: 10 }) as VisionTransformer;
    const images = randn([48, 1, 28, 28]);
    const labels = tensor(Array.from({ length: 48 }, (_, i) => (i * 7) % 10), { dtype: 'int64' });
    const path = join(directory, 'trajectory.safetensors');
    saveSafetensors(path, model.stateDict());
    const optimizer = new AdamW(paramGroupsWithWeightDecay(model, 0.05, model.noWeightDecay()), { lr: 2e-3, weightDecay: 0.05 });
    const steps = 25;
    const losses: number[] = [];
    for (let step = 0; step < steps; step++) {
      tidy(() => {
        optimizer.zeroGrad();
        const loss = F.crossEntropy(model.forward(images), labels, { labelSmoothing: 0.1 });
        loss.backward();
        optimizer.step();
        losses.push(loss.item());
      });
    }
    const script = `${MODELS_PY}
cfg = json.loads(${JSON.stringify(JSON.stringify(vitConfig(model)))})
m = build(cfg)
m.load_state_dict(load_safetensors(${JSON.stringify(path)}), strict=True)
decay, no_decay = [], []
for name, p in m.named_parameters():
    (no_decay if p.ndim <= 1 or name in ('pos_embed', 'cls_token') else decay).append(p)
opt = torch.optim.AdamW([{'params': no_decay, 'weight_decay': 0.0}, {'params': decay, 'weight_decay': 0.05}], lr=2e-3)
losses = []
for step in range(${steps}):
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(m(inp['x']), inp['y'], label_smoothing=0.1)
    loss.backward()
    opt.step()
    losses.append(loss.item())
out['losses'] = torch.tensor(losses, dtype=torch.float64)
out['head'] = m.head.weight
`;
    const result = runTorch(script, { x: images, y: labels });
    const reference = result.losses.toArray() as number[];
    const worst = Math.max(...losses.map((value, i) => Math.abs(value - reference[i]) / Math.abs(reference[i])));
    assert.ok(worst < 1e-4, `loss curves differ by ${worst} (ours ${losses.map((v) => v.toFixed(4)).join(' ')}; PyTorch ${reference.map((v) => v.toFixed(4)).join(' ')})`);
    assert.ok(losses[steps - 1] < losses[0] - 0.3, `the model learns: ${losses[0]} -> ${losses[steps - 1]}`);
    assert.ok(relativeError(model.head.weight, result.head) < 1e-3, 'same head weights after training');
    optimizer.dispose();
    model.dispose();
  });
});
