"""The one PyTorch reference of this project: the models, method step, optimizers and schedule
of src/ written plainly in PyTorch (Debian's python3-torch, no timm), shared by the tests
(test/helpers/torch.ts puts this directory on sys.path) and the benchmark (bench/torch_bench.py).

Stable API (other files import these names; add, do not rename):
  build_model(spec) -> nn.Module     spec = {'family': 'vit'|'resnet'|'mlp', ...} with the keys of our
                                     TypeScript configs (VitConfig / ResNetConfig: imageSize, patchSize,
                                     inChannels, numClasses, width, depth, heads, mlpRatio, qkvBias,
                                     layerScale, dropPathRate, dropPathSchedule, dropRate, block, layers,
                                     widths, stem, maskPatchSize); missing optional keys take our defaults.
                                     Weights get timm's init (init_weights); state_dict keys are timm's.
  model(x, ratio=0.0, noise=None, generator=None)
                                     ratio > 0 masks the input as our forward's maskRatio does: ViT keeps
                                     int(L*(1-r)) patch tokens (MAE random_masking: argsort of noise
                                     [B, L], first kept, shuffled order); ResNet zeroes n - int(n*(1-r)) patches
                                     of maskPatchSize pixels (the ones with the smallest noise). noise:
                                     the [B, L] uniform numbers to rank (torch.rand from generator if None).
  num_mask_tokens(model, image_size) the L of the noise a masked forward of `model` needs
  rates(model, dropout=None, drop_path=None)
                                     context manager: every Dropout / DropPath at that rate (our forward
                                     options dropoutRate / dropPathRate), restored afterwards
  init_weights(model)                timm's init, applied by build_model
  param_groups(model, weight_decay)  timm's param_groups_weight_decay: [no-decay group, decay group]
  Lamb(params, lr, betas, eps, weight_decay, max_grad_norm, ...)
                                     timm's Lamb (global gradient-norm clip, trust ratio)
  make_optimizer(name, groups, lr, weight_decay=..., momentum=0.9, nesterov=False, ...)
                                     'adamw' | 'lamb' | 'sgd', with the defaults of src/optim
  warmup_cosine_lr(step, base_lr, total_steps, warmup_steps=0, min_lr=0.0, warmup_start_lr=0.0)
  set_lr(optimizer, lr)
  label_loss(logits, targets, label_smoothing)   L1: CE with smoothing (int labels) or soft targets
  sub_loss(sub_logits, main_logits)  L2 = CE(sub, softmax(main).detach())
  method_step(model, images, targets, method='masksub', ratio=0.5, sub_weight=0.5,
              label_smoothing=0.1, noise=None, generator=None) -> {'loss', 'loss_main', 'loss_sub'}
                                     the official MaskSub step (backward of the main term before the
                                     sub forward); adds to .grad, the optimizer step is the caller's
  load_safetensors(path) / save_safetensors(path, tensors) / check_keys(model, weights, where)
  resample_abs_pos_embed(posemb, new_size, num_prefix_tokens=1, antialias=True)
                                     timm's position-embedding resampling (F.interpolate bicubic)
  adapt_input_conv(in_chans, weight) timm's first-conv channel adaptation (3 -> 1 sums the filters)
  layer_id(model, name) / param_groups_layer_decay(model, weight_decay, layer_decay)
                                     MAE/BEiT layer-wise lr decay groups (lr_scale per group)
  Beit(cfg, mask_token=True) / load_beit(cfg, weights, mask_token=True)
                                     timm's Beit (q/v biases, a relative position bias table per block,
                                     LayerScale gamma_1/gamma_2, mean pooling + fc_norm) from our
                                     BeitConfig keys; forward(x, ratio, noise) masks with mask_token
  beit_relative_position_index(grid) / resize_rel_pos_bias_table(table, grid)
                                     timm's index (3 class-token rows) and its scipy-free table resize
  Swin(cfg) / load_swin(cfg, weights) timm's SwinTransformer (shifted windows with the attention mask,
                                     patch merging, head.fc) from our SwinConfig keys; masks as Beit
  window_relative_position_index(size)  timm's window index (coordinate differences)
  parameter_gradients(model)         {name: .grad, zeros where none}
  ViT specs also take globalPool ('token'|'avg'), fcNorm (None: avg), maskMode ('drop'|'token':
  a learned mask_token replaces the masked patches before the position embedding is added).
  METHODS, has_sub_model(method), regularizer(method, ratio)

What a cross-check against this module shows: PyTorch and our addon run the same libtorch
kernels, so agreement to float32 rounding checks that our TypeScript passes the right arguments
and composes the ops as timm and the official MaskSub code do (names, shapes, order, masking,
loss weights, optimizer arithmetic). It is not an independent check of the kernels themselves:
that is what the finite-difference and hand-computed tests are for.
"""
import contextlib
import json
import math
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    'VisionTransformer', 'ResNet', 'TinyMlp', 'DropPath', 'build_model', 'num_mask_tokens', 'rates', 'init_weights',
    'param_groups', 'Lamb', 'make_optimizer', 'warmup_cosine_lr', 'set_lr', 'label_loss', 'sub_loss', 'method_step',
    'load_safetensors', 'save_safetensors', 'check_keys', 'METHODS', 'has_sub_model', 'regularizer',
    'resample_abs_pos_embed', 'adapt_input_conv', 'layer_id', 'param_groups_layer_decay',
    'Beit', 'load_beit', 'beit_relative_position_index', 'resize_rel_pos_bias_table',
    'Swin', 'load_swin', 'window_relative_position_index', 'parameter_gradients',
]


def _round_half_up(value):
    """JavaScript's Math.round (Python's round() rounds halves to even)."""
    return int(math.floor(value + 0.5))


def _masked_count(total, ratio):
    """total - int(total * (1 - ratio)): MAE's and the official code's rule (keep int(L(1-r)), mask the
    rest), the same for ViT tokens and CNN patches, as our code computes it (Math.trunc of the same
    double product)."""
    return total - int(total * (1 - ratio))


# ---------------------------------------------------------------- regularizers
def drop_path(x, p, training):
    """timm's drop_path: zero whole samples with probability p, scale the kept ones by 1/(1-p)."""
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask.div(keep)


class DropPath(nn.Module):
    def __init__(self, p=0.0):
        super().__init__()
        self.p = p

    def forward(self, x):
        return drop_path(x, self.p, self.training)


MAX_DROP_PATH = 0.95


def fixed_rate(dropout):
    """A dropout no method changes (attention probabilities, embeddings, a head): the official DropSub
    varies only the attention projection's and the MLP's dropouts."""
    dropout.fixed_rate = True
    return dropout


@contextlib.contextmanager
def rates(model, dropout=None, drop_path=None, drop_path_increase=None):
    """Inside the block: every Dropout without a fixed rate at `dropout`, every DropPath at `drop_path`
    or at its own rate + `drop_path_increase` (at most MAX_DROP_PATH); None: unchanged."""
    saved = []
    for module in model.modules():
        if isinstance(module, nn.Dropout) and dropout is not None and not getattr(module, 'fixed_rate', False):
            saved.append((module, module.p))
            module.p = dropout
        elif isinstance(module, DropPath) and (drop_path is not None or drop_path_increase is not None):
            saved.append((module, module.p))
            module.p = drop_path if drop_path is not None else min(MAX_DROP_PATH, module.p + drop_path_increase)
    try:
        yield model
    finally:
        for module, p in saved:
            module.p = p


# ---------------------------------------------------------------- ViT (timm's VisionTransformer, class token)
class Attention(nn.Module):
    def __init__(self, dim, heads, qkv_bias, proj_drop=0.0):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = fixed_rate(nn.Dropout(0.0))
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x):
        b, n, c = x.shape
        # timm's layout: the qkv output is [q | k | v], each with its heads contiguous
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        attention = self.attn_drop(((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1))
        return self.proj_drop(self.proj((attention @ v).transpose(1, 2).reshape(b, n, c)))


class Mlp(nn.Module):
    def __init__(self, dim, hidden, drop=0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x):
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class LayerScale(nn.Module):
    def __init__(self, dim, init):
        super().__init__()
        self.gamma = nn.Parameter(init * torch.ones(dim))

    def forward(self, x):
        return x * self.gamma


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio, qkv_bias, layer_scale, drop_path_rate, drop_rate):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, qkv_bias, drop_rate)
        self.ls1 = LayerScale(dim, layer_scale) if layer_scale is not None else nn.Identity()
        self.drop_path1 = DropPath(drop_path_rate)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, _round_half_up(dim * mlp_ratio), drop_rate)
        self.ls2 = LayerScale(dim, layer_scale) if layer_scale is not None else nn.Identity()
        self.drop_path2 = DropPath(drop_path_rate)

    def forward(self, x):
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x))))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


class PatchEmbed(nn.Module):
    def __init__(self, patch, in_chans, dim):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    def __init__(self, img_size, patch_size, in_chans, num_classes, embed_dim, depth, num_heads, mlp_ratio=4.0,
                 qkv_bias=True, init_values=None, drop_path_rate=0.0, drop_path_schedule='linear', drop_rate=0.0,
                 global_pool='token', fc_norm=None, mask_mode='drop'):
        super().__init__()
        self.global_pool = global_pool
        self.mask_mode = mask_mode
        if img_size % patch_size:
            raise ValueError(f'image size {img_size} is not a multiple of patch size {patch_size}')
        self.embed_dim = embed_dim
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.num_patches = (img_size // patch_size) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches + 1, embed_dim))
        self.pos_drop = fixed_rate(nn.Dropout(drop_rate))
        if drop_path_schedule == 'uniform':
            path_rates = [drop_path_rate] * depth
        else:
            path_rates = [x.item() for x in torch.linspace(0, drop_path_rate, depth, dtype=torch.float64)]
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads, mlp_ratio, qkv_bias, init_values, rate, drop_rate)
                                     for rate in path_rates])
        # timm: with fc_norm (default: global_pool == 'avg') the final norm moves after the pooling
        use_fc_norm = global_pool == 'avg' if fc_norm is None else fc_norm
        self.norm = nn.Identity() if use_fc_norm else nn.LayerNorm(embed_dim, eps=1e-6)
        self.fc_norm = nn.LayerNorm(embed_dim, eps=1e-6) if use_fc_norm else nn.Identity()
        # BEiT / SimMIM: a learned embedding replaces masked patches (mask_mode 'token')
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if mask_mode == 'token' else None
        self.head = nn.Linear(embed_dim, num_classes)
        init_weights(self)

    def no_weight_decay(self):
        return {'pos_embed', 'cls_token', 'mask_token'}

    def forward(self, x, ratio=0.0, noise=None, generator=None):
        x = self.patch_embed(x)
        if ratio > 0 and self.mask_token is not None:
            # the positions drop mode would drop (all but the first int(L*(1-r)) of argsort(noise))
            # get the mask token, before the position embedding is added
            b, n, d = x.shape
            if noise is None:
                noise = torch.rand(b, n, device=x.device, generator=generator)
            ids_keep = torch.argsort(noise, dim=1)[:, :int(n * (1 - ratio))]
            masked = torch.ones(b, n, dtype=torch.bool, device=x.device).scatter(1, ids_keep, False)
            x = torch.where(masked.unsqueeze(-1), self.mask_token.to(x.dtype).expand(b, n, d), x)
        # position embeddings first, then MAE's random_masking of the patch tokens only
        x = x + self.pos_embed[:, 1:]
        if ratio > 0 and self.mask_token is None:
            b, n, d = x.shape
            if noise is None:
                noise = torch.rand(b, n, device=x.device, generator=generator)
            keep = int(n * (1 - ratio))  # Math.trunc(L * (1 - r)), as src/models/vit.ts
            ids_keep = torch.argsort(noise, dim=1)[:, :keep]
            x = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, d))
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = self.pos_drop(torch.cat([cls, x], dim=1))
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        x = x[:, 1:].mean(dim=1) if self.global_pool == 'avg' else x[:, 0]
        return self.head(self.fc_norm(x))


# ---------------------------------------------------------------- ResNet (timm / torchvision names)
class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride, drop_path_rate):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.drop_block = nn.Dropout(0.0)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
        self.drop_path = DropPath(drop_path_rate)

    def zero_init_last(self):
        nn.init.zeros_(self.bn2.weight)

    def forward(self, x):
        y = self.drop_block(F.relu(self.bn1(self.conv1(x))))
        y = self.drop_path(self.bn2(self.conv2(y)))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride, drop_path_rate):
        super().__init__()
        out = planes * 4
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.drop_block = nn.Dropout(0.0)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.downsample = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride, bias=False), nn.BatchNorm2d(out))
        self.drop_path = DropPath(drop_path_rate)

    def zero_init_last(self):
        nn.init.zeros_(self.bn3.weight)

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.drop_block(F.relu(self.bn2(self.conv2(y))))
        y = self.drop_path(self.bn3(self.conv3(y)))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    def __init__(self, block, layers, widths, stem, in_chans, num_classes, mask_patch=4, drop_path_rate=0.0, drop_rate=0.0):
        super().__init__()
        Block = BasicBlock if block == 'basic' else Bottleneck
        self.mask_patch = mask_patch
        self.imagenet_stem = stem == 'imagenet'
        inplanes = 64 if self.imagenet_stem else widths[0]
        if self.imagenet_stem:
            self.conv1 = nn.Conv2d(in_chans, inplanes, 7, 2, 3, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_chans, inplanes, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(inplanes)
        total, index = sum(layers), 0
        for stage, (count, planes) in enumerate(zip(layers, widths)):
            blocks = []
            for i in range(count):
                # timm: the drop-path rate grows linearly over all blocks
                rate = drop_path_rate * index / (total - 1) if total > 1 else drop_path_rate
                blocks.append(Block(inplanes, planes, 2 if (i == 0 and stage > 0) else 1, rate))
                inplanes = planes * Block.expansion
                index += 1
            setattr(self, 'layer%d' % (stage + 1), nn.Sequential(*blocks))
        self.head_drop = fixed_rate(nn.Dropout(drop_rate))
        self.fc = nn.Linear(inplanes, num_classes)
        init_weights(self)

    def no_weight_decay(self):
        return set()

    def forward(self, x, ratio=0.0, noise=None, generator=None):
        if ratio > 0:
            b, _, h, w = x.shape
            p = self.mask_patch
            if h % p or w % p:
                raise ValueError(f'image {h}x{w} is not a multiple of the mask patch size {p}')
            rows, cols = h // p, w // p
            if noise is None:
                noise = torch.rand(b, rows * cols, device=x.device, generator=generator)
            # zero the n - int(n*(1-r)) patches with the smallest noise (the masked set)
            ids = torch.argsort(noise, dim=1)[:, :_masked_count(rows * cols, ratio)]
            keep = torch.ones(b, rows * cols, dtype=x.dtype, device=x.device).scatter(1, ids, 0.0).reshape(b, 1, rows, cols)
            x = x * keep.repeat_interleave(p, 2).repeat_interleave(p, 3)
        x = F.relu(self.bn1(self.conv1(x)))
        if self.imagenet_stem:
            x = F.max_pool2d(x, 3, 2, 1)
        for stage in range(4):
            x = getattr(self, 'layer%d' % (stage + 1))(x)
        return self.fc(self.head_drop(x.mean((2, 3))))


# ---------------------------------------------------------------- the tiny MLP (benchmark's per-call probe)
class TinyMlp(nn.Module):
    """Three Linear layers of width `width` with GELU (bench/child.ts's TinyMlp)."""

    def __init__(self, features, width, num_classes):
        super().__init__()
        self.fc1 = nn.Linear(features, width)
        self.fc2 = nn.Linear(width, width)
        self.fc3 = nn.Linear(width, num_classes)

    def no_weight_decay(self):
        return set()

    def forward(self, x, ratio=0.0, noise=None, generator=None):
        if ratio > 0:
            raise ValueError('TinyMlp has no masking')
        return self.fc3(F.gelu(self.fc2(F.gelu(self.fc1(x.flatten(1))))))


# ---------------------------------------------------------------- construction and init
def init_weights(model):
    """timm's init: for ViT trunc_normal(.02) Linear weights and pos_embed, zero Linear biases,
    normal(1e-6) cls_token, PyTorch's default for the patch conv; for ResNet kaiming_normal
    (fan_out, relu) convs, zero-init of each block's last BN scale, PyTorch's default for fc."""
    if isinstance(model, VisionTransformer):
        nn.init.trunc_normal_(model.pos_embed, std=0.02)
        nn.init.normal_(model.cls_token, std=1e-6)
        if model.mask_token is not None:
            nn.init.trunc_normal_(model.mask_token, std=0.02)
        for module in model.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
    elif isinstance(model, ResNet):
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode='fan_out', nonlinearity='relu')
        for module in model.modules():
            if isinstance(module, (BasicBlock, Bottleneck)):
                module.zero_init_last()
    return model


def build_model(spec):
    """A model from a spec with our TypeScript config keys ({'family': ..., **model.config})."""
    family = spec['family']
    if family == 'vit':
        return VisionTransformer(spec['imageSize'], spec['patchSize'], spec['inChannels'], spec['numClasses'], spec['width'],
                                 spec['depth'], spec['heads'], spec.get('mlpRatio', 4.0), spec.get('qkvBias', True),
                                 spec.get('layerScale'), spec.get('dropPathRate', 0.0), spec.get('dropPathSchedule', 'linear'),
                                 spec.get('dropRate', 0.0), spec.get('globalPool', 'token'), spec.get('fcNorm'),
                                 spec.get('maskMode', 'drop'))
    if family == 'resnet':
        return ResNet(spec.get('block', 'basic'), spec['layers'], spec['widths'], spec.get('stem', 'small'), spec['inChannels'],
                      spec['numClasses'], spec.get('maskPatchSize', 4), spec.get('dropPathRate', 0.0), spec.get('dropRate', 0.0))
    if family == 'mlp':
        return TinyMlp(spec['inChannels'] * spec['imageSize'] ** 2, spec['width'], spec['numClasses'])
    raise ValueError(f'unknown model family {family!r} (vit, resnet, mlp)')


def num_mask_tokens(model, image_size):
    """How many noise values per sample a masked forward of `model` ranks."""
    if isinstance(model, VisionTransformer):
        return model.num_patches
    if isinstance(model, ResNet):
        return (image_size // model.mask_patch) ** 2
    raise ValueError(f'{type(model).__name__} has no masking')


# ---------------------------------------------------------------- fine-tuning from pretrained weights
def resample_abs_pos_embed(posemb, new_size, num_prefix_tokens=1, antialias=True):
    """timm's resample_abs_pos_embed: the patch part of a [1, P + h*w, D] position embedding
    resized to new_size = (H, W) by F.interpolate(mode='bicubic', align_corners=False) in float32,
    the P prefix (class token) rows kept. timm's checkpoint_filter_fn uses antialias=True; MAE's
    interpolate_pos_embed and timm before 0.9 use no antialiasing."""
    prefix, grid = posemb[:, :num_prefix_tokens], posemb[:, num_prefix_tokens:]
    side = int(math.sqrt(grid.shape[1]))
    dim = grid.shape[-1]
    grid = grid.float().reshape(1, side, side, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=tuple(new_size), mode='bicubic', align_corners=False, antialias=antialias)
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, dim).to(posemb.dtype)
    return torch.cat([prefix, grid], dim=1) if num_prefix_tokens else grid


def adapt_input_conv(in_chans, weight):
    """timm's adapt_input_conv for a first conv trained on 3 channels: 1 channel sums the RGB
    filters; other counts repeat them and scale by 3 / in_chans."""
    dtype = weight.dtype
    weight = weight.float()
    out_chans, chans = weight.shape[:2]
    if in_chans == 1:
        weight = weight.sum(dim=1, keepdim=True)
    elif in_chans != 3:
        repeat = int(math.ceil(in_chans / 3))
        weight = weight.repeat(1, repeat, 1, 1)[:, :in_chans] * (3 / float(in_chans))
    return weight.to(dtype)


def layer_id(model, name):
    """BEiT/MAE's get_layer_id_for_vit (embeddings 0, block i -> i + 1, the rest last), and for the
    ResNet the same over its blocks in order (stem 0, each block of layer1..4 -> 1, 2, ..., fc last).
    Returns (layer, number of layers = blocks + 1)."""
    if isinstance(model, VisionTransformer):
        count = len(model.blocks) + 1
        if name in ('cls_token', 'pos_embed', 'mask_token') or name.startswith('patch_embed'):
            return 0, count
        if name.startswith('blocks.'):
            return int(name.split('.')[1]) + 1, count
        return count, count
    blocks = [(stage, index) for stage in range(1, 5) for index in range(len(getattr(model, 'layer%d' % stage)))]
    count = len(blocks) + 1
    parts = name.split('.')
    if parts[0] in ('conv1', 'bn1'):
        return 0, count
    if parts[0].startswith('layer'):
        return blocks.index((int(parts[0][5:]), int(parts[1]))) + 1, count
    return count, count


def param_groups_layer_decay(model, weight_decay, layer_decay):
    """MAE's param_groups_lrd: weight decay as param_groups, and lr_scale = layer_decay ** (count - layer)."""
    skip = set(model.no_weight_decay()) | {'pos_embed', 'cls_token', 'mask_token'}
    groups = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim <= 1 or name.endswith('.bias') or name in skip or name.split('.')[-1] in skip
        layer, count = layer_id(model, name)
        key = (layer, no_decay)
        if key not in groups:
            groups[key] = {'params': [], 'names': [], 'weight_decay': 0.0 if no_decay else weight_decay,
                           'lr_scale': layer_decay ** (count - layer)}
        groups[key]['params'].append(p)
        groups[key]['names'].append(name)
    return list(groups.values())


# ---------------------------------------------------------------- optimizers and schedule
def param_groups(model, weight_decay):
    """timm's param_groups_weight_decay: no decay for 1-D tensors, .bias names and the model's
    no_weight_decay() names (plus pos_embed / cls_token / mask_token, as src/optim/groups.ts)."""
    skip = set(model.no_weight_decay()) | {'pos_embed', 'cls_token', 'mask_token'}
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        last = name.split('.')[-1]
        if p.ndim <= 1 or name.endswith('.bias') or name in skip or last in skip:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{'params': no_decay, 'weight_decay': 0.0}, {'params': decay, 'weight_decay': weight_decay}]


class Lamb(torch.optim.Optimizer):
    """timm's Lamb (timm/optim/lamb.py): the gradients of all parameters are first scaled down
    together to a global norm of at most max_grad_norm, then the Adam direction plus decoupled
    weight decay is rescaled per parameter by the trust ratio ||p|| / ||update||. Unlike timm,
    p.grad is left as it was (the clipped gradient is a copy), as src/optim/lamb.ts does."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01, max_grad_norm=1.0,
                 bias_correction=True, grad_averaging=True, trust_clip=False, always_adapt=False):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, max_grad_norm=max_grad_norm,
                        bias_correction=bias_correction, grad_averaging=grad_averaging, trust_clip=trust_clip,
                        always_adapt=always_adapt)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grads = [p.grad for group in self.param_groups for p in group['params'] if p.grad is not None]
        if not grads:
            return loss
        one = torch.ones((), device=grads[0].device)
        max_norm = self.defaults['max_grad_norm']
        clip = one
        if max_norm is not None:
            global_norm = torch.stack([g.pow(2).sum() for g in grads]).sum().sqrt()
            clip = torch.where(global_norm > max_norm, global_norm / max_norm, one)
        for group in self.param_groups:
            beta1, beta2 = group['betas']
            first_weight = 1 - beta1 if group['grad_averaging'] else 1.0
            for p in group['params']:
                if p.grad is None:
                    continue
                grad = p.grad / clip
                state = self.state[p]
                if not state:
                    state['step'] = 0
                    state['exp_avg'] = torch.zeros_like(p)
                    state['exp_avg_sq'] = torch.zeros_like(p)
                state['step'] += 1
                step = state['step']
                bias1 = 1 - beta1 ** step if group['bias_correction'] else 1.0
                bias2 = 1 - beta2 ** step if group['bias_correction'] else 1.0
                exp_avg, exp_avg_sq = state['exp_avg'], state['exp_avg_sq']
                exp_avg.mul_(beta1).add_(grad, alpha=first_weight)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denominator = (exp_avg_sq.sqrt() / math.sqrt(bias2)).add_(group['eps'])
                update = (exp_avg / bias1).div_(denominator)
                if group['weight_decay'] != 0:
                    update.add_(p, alpha=group['weight_decay'])
                if group['weight_decay'] != 0 or group['always_adapt']:
                    w_norm, u_norm = p.norm(2.0), update.norm(2.0)
                    trust = torch.where(w_norm > 0, torch.where(u_norm > 0, w_norm / u_norm, one), one)
                    if group['trust_clip']:
                        trust = torch.minimum(trust, one)
                    update.mul_(trust)
                p.add_(update, alpha=-group['lr'])
        return loss


def make_optimizer(name, groups, lr, weight_decay=None, momentum=0.9, nesterov=False, betas=(0.9, 0.999), eps=None,
                   max_grad_norm=1.0):
    """The optimizers of src/optim with their defaults (AdamW eps 1e-8 and weight decay 0.01;
    LAMB eps 1e-6, weight decay 0.01, global clip 1.0; SGD weight decay 0). Group weight decays win."""
    if name == 'adamw':
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=1e-8 if eps is None else eps,
                                 weight_decay=0.01 if weight_decay is None else weight_decay)
    if name == 'lamb':
        return Lamb(groups, lr=lr, betas=betas, eps=1e-6 if eps is None else eps,
                    weight_decay=0.01 if weight_decay is None else weight_decay, max_grad_norm=max_grad_norm)
    if name == 'sgd':
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov,
                               weight_decay=0.0 if weight_decay is None else weight_decay)
    raise ValueError(f'unknown optimizer {name!r} (adamw, lamb, sgd)')


def warmup_cosine_lr(step, base_lr, total_steps, warmup_steps=0, min_lr=0.0, warmup_start_lr=0.0):
    """timm's CosineLRScheduler with a warmup prefix, per update (src/optim/schedule.ts):
    linear from warmup_start_lr over W steps (never reaching base_lr), then a half cosine from
    base_lr at step W to min_lr at step T, held afterwards."""
    if step < warmup_steps:
        return warmup_start_lr + step * (base_lr - warmup_start_lr) / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * progress))


def set_lr(optimizer, lr):
    for group in optimizer.param_groups:
        group['lr'] = lr


# ---------------------------------------------------------------- the method
METHODS = ('baseline', 'masking', 'dropout', 'droppath', 'masksub', 'dropsub', 'pathsub')


def has_sub_model(method):
    return method in ('masksub', 'dropsub', 'pathsub')


def regularizer(method, ratio):
    """Forward keyword arguments / rates of a method's regularizer at strength `ratio`."""
    if method in ('masking', 'masksub'):
        return {'ratio': ratio}
    if method in ('dropout', 'dropsub'):
        return {'dropout': ratio}
    if method in ('droppath', 'pathsub'):
        return {'drop_path_increase': ratio}
    if method == 'baseline':
        return {}
    raise ValueError(f'unknown method {method!r}')


def _forward(model, images, options, noise, generator):
    dropout, path, increase = options.get('dropout'), options.get('drop_path'), options.get('drop_path_increase')
    with rates(model, dropout=dropout, drop_path=path, drop_path_increase=increase):
        return model(images, ratio=options.get('ratio', 0.0), noise=noise, generator=generator)


def label_loss(logits, targets, label_smoothing=0.1):
    """L1: CE against int labels with label smoothing, or against soft (mixup) targets as given."""
    if targets.ndim == 1:
        return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)
    return F.cross_entropy(logits, targets)


def sub_loss(sub_logits, main_logits):
    """L2: CE of the sub-model against the main model's detached softmax (temperature 1)."""
    return F.cross_entropy(sub_logits, main_logits.detach().softmax(-1))


def method_step(model, images, targets, method='masksub', ratio=0.5, sub_weight=0.5, label_smoothing=0.1, noise=None,
                generator=None, sub_updates_running_stats=False):
    """The official MaskSub step: main forward, (1-w)*L1 backward, then the sub forward with the
    regularizer and w*L2 backward, so one graph is alive at a time. Gradients are added to .grad;
    zero_grad and optimizer.step are the caller's. `noise` feeds the masking of the branch that
    masks (the sub-model for masksub, the only model for masking). `sub_updates_running_stats`:
    whether the sub forward may move BatchNorm running statistics (the official code: yes)."""
    sub = has_sub_model(method)
    main_options = {} if sub else regularizer(method, ratio)
    main_weight = 1.0 - sub_weight if sub else 1.0
    logits = _forward(model, images, main_options, None if sub else noise, generator)
    loss_main = label_loss(logits, targets, label_smoothing)
    (loss_main * main_weight).backward()
    loss_sub = None
    if sub:
        teacher = logits.detach()
        # masksub's default (issue 19): the sub forward normalizes with its own batch statistics but
        # does not move the running averages; True is the official code (sub forward in train mode).
        saved = None if sub_updates_running_stats else [buffer.clone() for buffer in model.buffers()]
        sub_logits = _forward(model, images, regularizer(method, ratio), noise, generator)
        loss_sub = sub_loss(sub_logits, teacher)
        (loss_sub * sub_weight).backward()
        if saved is not None:  # after the backward, which may still read the buffers
            with torch.no_grad():
                for buffer, copy in zip(model.buffers(), saved):
                    buffer.copy_(copy)
    # the values are read once, at the end: on a GPU each .item() waits for the device
    main_value = loss_main.item()
    sub_value = None if loss_sub is None else loss_sub.item()
    total = main_value if sub_value is None else main_weight * main_value + sub_weight * sub_value
    return {'loss': total, 'loss_main': main_value, 'loss_sub': sub_value}


# ---------------------------------------------------------------- relative position bias (BEiT, Swin)
def window_relative_position_index(size):
    """timm's relative position index of a size x size window, [size^2, size^2]: the coordinate
    differences of every pair of positions, shifted to be >= 0 and flattened row-major into the
    (2 * size - 1)^2 entries of the bias table."""
    coords = torch.stack(torch.meshgrid(torch.arange(size), torch.arange(size), indexing='ij')).flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
    relative[:, :, 0] += size - 1
    relative[:, :, 1] += size - 1
    relative[:, :, 0] *= 2 * size - 1
    return relative.sum(-1)


def beit_relative_position_index(grid):
    """BEiT's index, [grid^2 + 1, grid^2 + 1]: the window index for the patches and three extra
    table rows for class token -> patch, patch -> class token and class token -> itself."""
    entries = (2 * grid - 1) ** 2 + 3
    index = torch.zeros((grid * grid + 1,) * 2, dtype=torch.long)
    index[1:, 1:] = window_relative_position_index(grid)
    index[0, 0:] = entries - 3
    index[0:, 0] = entries - 2
    index[0, 0] = entries - 1
    return index


def _relative_bias(table, index, tokens):
    """[heads, tokens, tokens] bias gathered from a [entries, heads] table."""
    return table[index.view(-1)].view(tokens, tokens, -1).permute(2, 0, 1).contiguous()


def resize_rel_pos_bias_table(table, grid):
    """timm's resize_rel_pos_bias_table for a BEiT table ([(2g-1)^2 + 3, heads], three class-token
    rows last) on its default scipy-free path: bilinear interpolation (RegularGridInterpolator) over
    BEiT's geometric offsets of the source grid, evaluated at the integer offsets of `grid`, in
    float64; the class-token rows are kept."""
    target = 2 * grid - 1
    source = int((table.shape[0] - 3) ** 0.5)
    extra, table = table[-3:], table[:-3]

    def geometric_offsets(source, target):
        # the ratio q whose geometric series of source // 2 terms reaches target // 2 (bisection)
        left, right = 1.01, 1.5
        while right - left > 1e-6:
            q = (left + right) / 2.0
            if (1.0 - q ** (source // 2)) / (1.0 - q) > target // 2:
                right = q
            else:
                left = q
        offsets, current = [], 1
        for i in range(source // 2):
            offsets.append(current)
            current += q ** (i + 1)
        return [-offset for offset in reversed(offsets)] + [0] + offsets

    points = torch.tensor(geometric_offsets(source, target), dtype=torch.float64)
    half = target // 2
    wanted = torch.arange(-half, half + 0.1, 1.0, dtype=torch.float64)

    def bracket(points, x):
        high = torch.bucketize(x, points)
        high[high >= points.shape[0]] = points.shape[0] - 1
        low = (high - 1).clamp(0, points.shape[0] - 1)
        to_low, to_high = (x - points[low]).clamp(min=0), (points[high] - x).clamp(min=0)
        both = (to_low == 0) & (to_high == 0)
        to_low[both] = 1.0
        to_high[both] = 1.0
        return low, high, to_low, to_high

    low, high, to_low, to_high = bracket(points, wanted)
    span = to_low + to_high
    heads = []
    for head in range(table.shape[1]):
        z = table[:, head].double().view(source, source)
        top = (z[low][:, low] * to_high[None, :] + z[low][:, high] * to_low[None, :]) / span[None, :]
        bottom = (z[high][:, low] * to_high[None, :] + z[high][:, high] * to_low[None, :]) / span[None, :]
        heads.append(((top * to_high[:, None] + bottom * to_low[:, None]) / span[:, None]).reshape(-1, 1))
    return torch.cat([torch.cat(heads, 1).to(table.dtype), extra], 0)


def parameter_gradients(model):
    """{name: .grad} of every parameter (zeros where autograd gave none), for comparisons."""
    return {name: p.grad if p.grad is not None else torch.zeros_like(p) for name, p in model.named_parameters()}


def _masked_positions(noise, ratio):
    """[B, L] 1.0 where MAE's rule masks for this noise (all but the int(L*(1-r)) lowest ranks)."""
    keep = int(noise.shape[1] * (1 - ratio))
    return (noise.argsort(1).argsort(1) >= keep).to(noise.dtype)


# ---------------------------------------------------------------- BEiT (timm's Beit names, non-fused attention)
class BeitAttention(nn.Module):
    def __init__(self, dim, heads, grid):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        # BEiT: a query and a value bias, no key bias
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * grid - 1) ** 2 + 3, heads))
        self.register_buffer('relative_position_index', beit_relative_position_index(grid), persistent=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        bias = torch.cat((self.q_bias, torch.zeros_like(self.q_bias), self.v_bias))
        q, k, v = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        attention = (q * self.scale) @ k.transpose(-2, -1)
        attention = attention + _relative_bias(self.relative_position_bias_table, self.relative_position_index, n).unsqueeze(0)
        return self.proj((attention.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c))


class BeitBlock(nn.Module):
    def __init__(self, dim, heads, grid, init_values):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = BeitAttention(dim, heads, grid)
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


class Beit(nn.Module):
    """timm's Beit from our BeitConfig keys (width, imageSize, patchSize, inChannels, heads, depth,
    layerScale, numClasses, absolutePosition, globalPool). Parameters start at zero: load weights.
    forward(x, ratio, noise): BEiT's masked forward x * (1 - w) + mask_token * w on the positions
    MAE's rule masks for `noise`."""

    def __init__(self, cfg, mask_token=True):
        super().__init__()
        dim, grid = cfg['width'], cfg['imageSize'] // cfg['patchSize']
        self.patch_embed = PatchEmbed(cfg['patchSize'], cfg['inChannels'], dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, dim)) if cfg.get('absolutePosition') else None
        if mask_token:
            self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.ModuleList([BeitBlock(dim, cfg['heads'], grid, cfg['layerScale']) for _ in range(cfg['depth'])])
        self.avg = cfg.get('globalPool', 'avg') == 'avg'
        if self.avg:
            self.fc_norm = nn.LayerNorm(dim, eps=1e-6)
        else:
            self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, cfg['numClasses'])

    def forward(self, x, ratio=0.0, noise=None):
        x = self.patch_embed(x)
        b, n, c = x.shape
        if ratio:
            w = _masked_positions(noise, ratio).unsqueeze(-1).to(x.dtype)
            x = x * (1 - w) + self.mask_token.expand(b, n, -1) * w
        x = torch.cat((self.cls_token.expand(b, -1, -1), x), dim=1)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(self.fc_norm(x[:, 1:].mean(1)) if self.avg else self.norm(x)[:, 0])


def load_beit(cfg, weights, mask_token=True):
    """A Beit holding exactly `weights` (every key, shape and dtype checked first)."""
    model = Beit(cfg, mask_token)
    check_keys(model, weights, 'beit')
    model.load_state_dict(weights, strict=True)
    return model


# ---------------------------------------------------------------- Swin (timm's SwinTransformer names, NHWC stages)
def window_partition(x, size):
    b, h, w, c = x.shape
    x = x.view(b, h // size, size, w // size, size, c)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, size, size, c)


def window_reverse(windows, size, h, w):
    c = windows.shape[-1]
    x = windows.view(-1, h // size, w // size, size, size, c)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, h, w, c)


class WindowAttention(nn.Module):
    def __init__(self, dim, heads, size):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * size - 1) ** 2, heads))
        self.register_buffer('relative_position_index', window_relative_position_index(size), persistent=False)
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, mask):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        attention = (q * self.scale) @ k.transpose(-2, -1)
        attention = attention + _relative_bias(self.relative_position_bias_table, self.relative_position_index, n).unsqueeze(0)
        if mask is not None:
            windows = mask.shape[0]
            attention = (attention.view(-1, windows, self.heads, n, n) + mask.unsqueeze(1).unsqueeze(0)).view(-1, self.heads, n, n)
        return self.proj((attention.softmax(-1) @ v).transpose(1, 2).reshape(b, n, -1))


class SwinBlock(nn.Module):
    def __init__(self, dim, resolution, heads, window, shift):
        super().__init__()
        # timm clamps the window to the feature map and then does not shift
        self.window = resolution if resolution <= window else window
        self.shift = 0 if resolution <= window else shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, self.window)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * 4))
        mask = None
        if self.shift:
            # timm's construction: region labels by slice assignment on a padded image
            padded = math.ceil(resolution / self.window) * self.window
            image = torch.zeros(1, padded, padded, 1)
            label = 0
            for rows in ((0, -self.window), (-self.window, -self.shift), (-self.shift, None)):
                for columns in ((0, -self.window), (-self.window, -self.shift), (-self.shift, None)):
                    image[:, rows[0]:rows[1], columns[0]:columns[1], :] = label
                    label += 1
            labels = window_partition(image, self.window).view(-1, self.window * self.window)
            mask = labels.unsqueeze(1) - labels.unsqueeze(2)
            mask = mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)
        self.register_buffer('attn_mask', mask, persistent=False)

    def _attention(self, x):
        b, h, w, c = x.shape
        if self.shift:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
        pad_h, pad_w = (self.window - h % self.window) % self.window, (self.window - w % self.window) % self.window
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        _, padded_h, padded_w, _ = x.shape
        windows = self.attn(window_partition(x, self.window).view(-1, self.window * self.window, c), self.attn_mask)
        x = window_reverse(windows.view(-1, self.window, self.window, c), self.window, padded_h, padded_w)[:, :h, :w, :].contiguous()
        if self.shift:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(1, 2))
        return x

    def forward(self, x):
        b, h, w, c = x.shape
        x = x + self._attention(self.norm1(x))
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


class SwinStage(nn.Module):
    def __init__(self, dim, out_dim, resolution, depth, heads, window, downsample):
        super().__init__()
        # timm's current layout: PatchMerging at the start of every stage after the first
        self.downsample = PatchMerging(dim) if downsample else nn.Identity()
        self.blocks = nn.Sequential(*[SwinBlock(out_dim, resolution, heads, window, 0 if i % 2 == 0 else window // 2) for i in range(depth)])

    def forward(self, x):
        return self.blocks(self.downsample(x))


class SwinPatchEmbed(PatchEmbed):
    """The ViT patch embedding with a LayerNorm, returning an NHWC feature map."""

    def __init__(self, patch, in_chans, dim):
        super().__init__(patch, in_chans, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class SwinHead(nn.Module):
    def __init__(self, dim, classes):
        super().__init__()
        self.fc = nn.Linear(dim, classes)

    def forward(self, x):
        return self.fc(x.mean((1, 2)))


class Swin(nn.Module):
    """timm's SwinTransformer from our SwinConfig keys (embedDim, depths, heads, patchSize,
    inChannels, imageSize, windowSize, numClasses). Parameters start at zero: load weights.
    forward(x, ratio, noise): SimMIM's x * (1 - w) + mask_token * w on the positions MAE's rule
    masks for `noise`."""

    def __init__(self, cfg):
        super().__init__()
        embed, depths, heads = cfg['embedDim'], cfg['depths'], cfg['heads']
        self.patch_embed = SwinPatchEmbed(cfg['patchSize'], cfg['inChannels'], embed)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed))
        resolution = cfg['imageSize'] // cfg['patchSize']
        stages = []
        for i in range(len(depths)):
            if i > 0:
                resolution = (resolution + 1) // 2
            stages.append(SwinStage(embed * 2 ** max(i - 1, 0), embed * 2 ** i, resolution, depths[i], heads[i], cfg['windowSize'], i > 0))
        self.layers = nn.Sequential(*stages)
        self.norm = nn.LayerNorm(embed * 2 ** (len(depths) - 1))
        self.head = SwinHead(embed * 2 ** (len(depths) - 1), cfg['numClasses'])

    def forward(self, x, ratio=0.0, noise=None):
        x = self.patch_embed(x)
        if ratio:
            b, h, w, c = x.shape
            masked = _masked_positions(noise, ratio).view(b, h, w, 1).to(x.dtype)
            x = x * (1 - masked) + self.mask_token.view(1, 1, 1, c) * masked
        return self.head(self.norm(self.layers(x)))


def load_swin(cfg, weights):
    """A Swin holding exactly `weights` (every key, shape and dtype checked first)."""
    model = Swin(cfg)
    check_keys(model, weights, 'swin')
    model.load_state_dict(weights, strict=True)
    return model


# ---------------------------------------------------------------- safetensors and state dicts
_ST_DTYPES = {'F64': torch.float64, 'F32': torch.float32, 'F16': torch.float16, 'BF16': torch.bfloat16, 'I64': torch.int64,
              'I32': torch.int32, 'I16': torch.int16, 'I8': torch.int8, 'U8': torch.uint8, 'BOOL': torch.bool}
_ST_NAMES = {dtype: name for name, dtype in _ST_DTYPES.items()}


def load_safetensors(path):
    """A .safetensors file read with struct + json + torch.frombuffer (no safetensors package)."""
    with open(path, 'rb') as file:
        data = file.read()
    (length,) = struct.unpack('<Q', data[:8])
    header = json.loads(data[8:8 + length].decode('utf-8'))
    base = 8 + length
    tensors = {}
    for name, info in header.items():
        if name == '__metadata__':
            continue
        begin, end = info['data_offsets']
        dtype = _ST_DTYPES[info['dtype']]
        flat = torch.frombuffer(bytearray(data[base + begin:base + end]), dtype=dtype) if end > begin else torch.empty(0, dtype=dtype)
        tensors[name] = flat.reshape(info['shape']).clone()
    return tensors


def save_safetensors(path, tensors):
    """Writes {name: tensor} as a .safetensors file (little-endian, keys sorted)."""
    header, chunks, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b''
        header[name] = {'dtype': _ST_NAMES[t.dtype], 'shape': list(t.shape), 'data_offsets': [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    encoded = json.dumps(header, separators=(',', ':')).encode('utf-8')
    encoded += b' ' * (-len(encoded) % 8)
    with open(path, 'wb') as file:
        file.write(struct.pack('<Q', len(encoded)) + encoded + b''.join(chunks))


def check_keys(model, weights, where):
    """Raises SystemExit naming every key, shape or dtype where `weights` differs from model.state_dict()."""
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
