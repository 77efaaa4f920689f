"""The PyTorch side of `npm run bench`: the same models and training step as the TypeScript
side, written plainly in PyTorch (what a PyTorch user would write), run as one child process per
configuration so that its peak resident memory is its own.

Usage: python3 bench/torch_bench.py '<json config>'   (run.ts builds the config)
Prints one JSON object on the last line of stdout.

Models follow timm (and this project's src/models): ViT with a patch-embedding conv, class token,
position embedding, pre-norm blocks with a fused qkv attention and a GELU MLP, LayerNorm eps 1e-6,
MAE-style token dropping (noise, argsort, gather) for the MaskSub sub forward; ResNet with basic
blocks and a 3x3 stride-1 stem, MaskSub patch zeroing of the input. The step is the official
MaskSub code's: backward of the main term, then the sub forward and its backward, one AdamW step.
"""
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


# ---------------------------------------------------------------- models
class PatchEmbed(nn.Module):
    def __init__(self, patch, in_chans, width):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, width, patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim, heads, qkv_bias=True):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(x)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio, qkv_bias):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, round(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def random_masking(x, ratio):
    """MAE's random_masking: keep int(L*(1-r)) random tokens per sample (shuffled order)."""
    b, n, d = x.shape
    keep = int(n * (1 - ratio))
    noise = torch.rand(b, n, device=x.device)
    ids_keep = torch.argsort(noise, dim=1)[:, :keep]
    return torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, d))


class VisionTransformer(nn.Module):
    def __init__(self, image_size, patch, in_chans, num_classes, width, depth, heads, mlp_ratio=4.0, qkv_bias=True):
        super().__init__()
        self.patch_embed = PatchEmbed(patch, in_chans, width)
        num_patches = (image_size // patch) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.randn(1, num_patches + 1, width) * 0.02)
        self.blocks = nn.ModuleList([Block(width, heads, mlp_ratio, qkv_bias) for _ in range(depth)])
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.head = nn.Linear(width, num_classes)
        nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def no_weight_decay(self):
        return {'pos_embed', 'cls_token'}

    def forward(self, x, mask_ratio=0.0):
        x = self.patch_embed(x) + self.pos_embed[:, 1:, :]
        if mask_ratio > 0:
            x = random_masking(x, mask_ratio)
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(x.shape[0], -1, -1)
        x = torch.cat((cls, x), dim=1)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, 0])


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act2 = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        shortcut = x
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.bn2(self.conv2(x))
        if self.downsample is not None:
            shortcut = self.downsample(shortcut)
        return self.act2(x + shortcut)


def random_patch_zero(images, ratio, patch):
    """Zero int(n*r) random patches of patch x patch pixels per sample (the masked set)."""
    b, _, h, w = images.shape
    rows, cols = h // patch, w // patch
    n = rows * cols
    masked = int(n * ratio)
    noise = torch.rand(b, n, device=images.device)
    rank = noise.argsort(1).argsort(1)
    keep = (rank >= masked).to(images.dtype)
    keep = keep.view(b, 1, rows, 1, cols, 1).expand(b, 1, rows, patch, cols, patch).reshape(b, 1, h, w)
    return images * keep


class ResNet(nn.Module):
    def __init__(self, layers, widths, in_chans, num_classes, mask_patch):
        super().__init__()
        self.mask_patch = mask_patch
        self.conv1 = nn.Conv2d(in_chans, widths[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.act1 = nn.ReLU(inplace=True)
        inplanes = widths[0]
        stages = []
        for index, (count, planes) in enumerate(zip(layers, widths)):
            blocks = []
            for i in range(count):
                stride = 2 if i == 0 and index > 0 else 1
                blocks.append(BasicBlock(inplanes, planes, stride))
                inplanes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(inplanes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
        for m in self.modules():
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def no_weight_decay(self):
        return set()

    def forward(self, x, mask_ratio=0.0):
        if mask_ratio > 0:
            x = random_patch_zero(x, mask_ratio, self.mask_patch)
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class TinyMlp(nn.Module):
    """The per-call overhead probe: three Linear layers of width `width` with GELU."""

    def __init__(self, features, width, num_classes):
        super().__init__()
        self.fc1 = nn.Linear(features, width)
        self.fc2 = nn.Linear(width, width)
        self.fc3 = nn.Linear(width, num_classes)

    def no_weight_decay(self):
        return set()

    def forward(self, x, mask_ratio=0.0):
        x = x.flatten(1)
        return self.fc3(F.gelu(self.fc2(F.gelu(self.fc1(x)))))


def build_model(spec):
    family = spec['family']
    if family == 'vit':
        return VisionTransformer(spec['imageSize'], spec['patchSize'], spec['inChannels'], spec['numClasses'],
                                 spec['width'], spec['depth'], spec['heads'], spec.get('mlpRatio', 4), spec.get('qkvBias', True))
    if family == 'resnet':
        if spec.get('block', 'basic') != 'basic' or spec.get('stem', 'small') != 'small':
            raise SystemExit('torch_bench.py: only basic-block ResNets with the small stem are written here')
        return ResNet(spec['layers'], spec['widths'], spec['inChannels'], spec['numClasses'], spec['maskPatchSize'])
    if family == 'mlp':
        return TinyMlp(spec['inChannels'] * spec['imageSize'] ** 2, spec['width'], spec['numClasses'])
    raise SystemExit(f'torch_bench.py: unknown model family {family}')


def param_groups(model, weight_decay):
    """timm's param_groups_weight_decay (the same split as src/optim/groups.ts)."""
    skip = model.no_weight_decay()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or name.endswith('.bias') or name in skip:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{'params': no_decay, 'weight_decay': 0.0}, {'params': decay, 'weight_decay': weight_decay}]


# ---------------------------------------------------------------- measurement helpers
def peak_rss_kib():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1])
    return None


def current_rss_kib():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return None


def blas_libraries():
    found = set()
    try:
        with open('/proc/self/maps') as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6:
                    path = parts[5]
                    base = os.path.basename(path).lower()
                    if any(key in base for key in ('blas', 'lapack', 'mkl')):
                        found.add(path)
    except OSError:
        pass
    return sorted(found)


def gpu_used_mib():
    """This process's GPU memory as nvidia-smi reports it (CUDA context + caching allocator)."""
    import subprocess
    try:
        out = subprocess.run(['nvidia-smi', '--query-compute-apps=pid,used_memory', '--format=csv,noheader,nounits'],
                             capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(',')]
        if len(parts) == 2 and parts[0] == str(os.getpid()):
            try:
                return float(parts[1])
            except ValueError:
                return None
    return None


def adamw_foreach(optimizer):
    """Whether AdamW runs its multi-tensor (foreach) path: None means the version's default."""
    chosen = optimizer.defaults.get('foreach')
    if chosen is not None:
        return bool(chosen)
    import importlib
    default = getattr(importlib.import_module('torch.optim.optimizer'), '_default_to_fused_or_foreach', None)
    if default is None:
        return False  # torch 1.x: single-tensor unless asked
    params = [p for group in optimizer.param_groups for p in group['params']]
    try:
        return bool(default(params, differentiable=False, use_fused=False)[1])
    except TypeError:
        return None


def median(values):
    s = sorted(values)
    n = len(s)
    if n == 0:
        return None
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


class CountCalls(torch.overrides.TorchFunctionMode):
    """Counts calls from Python into torch (functions and Tensor methods), the host->engine
    crossings that correspond to the TypeScript side's native calls."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


# ---------------------------------------------------------------- the step
def make_step(model, optimizer, images, labels, method, ratio, sub_weight, smoothing, sync):
    """The official MaskSub step (main backward first, then the sub branch), or the baseline."""

    def step():
        optimizer.zero_grad(set_to_none=True)
        logits = model(images)
        loss = F.cross_entropy(logits, labels, label_smoothing=smoothing)
        if method == 'masksub':
            (loss * (1 - sub_weight)).backward()
            teacher = logits.detach().softmax(-1)
            sub_logits = model(images, mask_ratio=ratio)
            sub = F.cross_entropy(sub_logits, teacher)
            (sub * sub_weight).backward()
            optimizer.step()
            value = loss.item() * (1 - sub_weight) + sub.item() * sub_weight
        else:
            loss.backward()
            optimizer.step()
            value = loss.item()
        sync()
        return value

    return step


def run_opcall(config):
    """Cost of one tiny op call: x.add(y) on 1-element tensors, the result freed each time."""
    torch.set_num_threads(int(config['threads']))
    x = torch.ones(1)
    y = torch.ones(1)
    iterations = int(config['iterations'])

    def loop(n):
        t0 = time.perf_counter()
        for _ in range(n):
            x.add(y)
        return time.perf_counter() - t0

    loop(min(2000, iterations))
    samples = [loop(iterations) * 1e6 / iterations for _ in range(5)]
    print(json.dumps({'microsecondsPerCall': median(samples), 'iterations': iterations}))


def main():
    config = json.loads(sys.argv[1])
    if config.get('kind') == 'opcall':
        run_opcall(config)
        return
    started = time.perf_counter()
    torch.set_num_threads(int(config['threads']))
    torch.manual_seed(int(config.get('seed', 0)))
    device = torch.device(config.get('device', 'cpu'))
    if device.type == 'cuda':
        sync = torch.cuda.synchronize
    else:
        def sync():
            return None
    rss_after_import = current_rss_kib()
    spec = config['model']
    model = build_model(spec).to(device)
    model.train()
    batch = int(config['batchSize'])
    images = torch.randn(batch, spec['inChannels'], spec['imageSize'], spec['imageSize'], device=device)
    labels = torch.randint(0, spec['numClasses'], (batch,), device=device)
    optimizer = torch.optim.AdamW(param_groups(model, config.get('weightDecay', 0.05)), lr=config.get('lr', 1e-3))
    step = make_step(model, optimizer, images, labels, config['method'], float(config.get('ratio', 0.5)),
                     float(config.get('subWeight', 0.5)), float(config.get('labelSmoothing', 0.1)), sync)

    deadline = config.get('maxSeconds')
    for _ in range(int(config['warmup'])):
        step()
    times = []
    timed_start = time.perf_counter()
    losses = []
    for _ in range(int(config['steps'])):
        t0 = time.perf_counter()
        losses.append(step())
        times.append(time.perf_counter() - t0)
        if deadline is not None and time.perf_counter() - timed_start > deadline and len(times) >= 3:
            break

    calls = None
    if config.get('countCalls'):
        counter = CountCalls()
        with counter:
            step()
        calls = counter.count

    result = {
        'impl': 'pytorch',
        'stepSeconds': times,
        'medianStepSeconds': median(times),
        'finalLoss': losses[-1] if losses else None,
        'callsPerStep': calls,
        'peakRssKiB': peak_rss_kib(),
        'rssAfterImportKiB': rss_after_import,
        'numParameters': sum(p.numel() for p in model.parameters()),
        'threads': torch.get_num_threads(),
        'blas': blas_libraries(),
        'torchVersion': torch.__version__,
        'cuda': torch.version.cuda,
        'adamwForeach': adamw_foreach(optimizer),
        'ompWaitPolicy': os.environ.get('OMP_WAIT_POLICY'),
        'pid': os.getpid(),
        'wallSeconds': time.perf_counter() - started,
    }
    if device.type == 'cuda':
        result['gpuPeakAllocatedMiB'] = torch.cuda.max_memory_allocated() / 2 ** 20
        result['gpuUsedMiB'] = gpu_used_mib()
        result['gpuName'] = torch.cuda.get_device_name(device)
    print(json.dumps(result))


if __name__ == '__main__':
    main()
