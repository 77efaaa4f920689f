// Swin Transformer (Liu et al. 2021) with timm's current SwinTransformer names and init, so timm
// checkpoints load by name: window attention with a relative position bias, shifted windows
// (cyclic shift + the attention mask of the shifted layout), patch merging at the start of every
// stage after the first, per-block drop path, global average pooling. MaskSub masks by replacing
// the masked patch embeddings with a learned mask_token (SimMIM), keeping the sequence length,
// since windows need the full grid. Registers the Swin configs.
import { linspace, type Tensor, tensor, tidy, where, zeros } from '../tensor/tensor.js';
import { Conv2d, Dropout, DropPath, Identity, Layer, LayerNorm, Linear, Mlp, Module, ModuleList, Parameter, Sequential } from '../nn/index.js';
import { constant_, truncNormal_ } from '../nn/init.js';
import { checkRatio, Classifier, type ClassifierInfo, type ForwardOptions, initLinearsTimm, type Maskable } from './classifier.js';
import { type DropPathSchedule, type ModelOverrides, registerModel } from './registry.js';
import { randomTokenMask } from './vit.js';

export interface SwinConfig {
  imageSize: number;
  patchSize: number;
  inChannels: number;
  numClasses: number;
  /** Width of the first stage; stage i has embedDim * 2^i channels. */
  embedDim: number;
  depths: number[];
  heads: number[];
  /** Window side; a stage whose grid is not larger than it uses one window of the whole grid and no shift (timm). */
  windowSize: number;
  mlpRatio: number;
  qkvBias: boolean;
  dropPathRate: number;
  /** 'linear' (timm, the default) or 'uniform' (the same rate in every block). */
  dropPathSchedule?: DropPathSchedule;
  /** The dropout after each attention projection and in each MLP (timm's proj_drop_rate); the one DropSub varies. */
  dropRate: number;
  /** The dropout before the classifier (timm's drop_rate); fixed, no method changes it. Default 0. */
  headDropRate?: number;
}

/**
 * The side of each stage's grid: the patch grid, halved per later stage, rounding up as
 * PatchMerging pads an odd side. timm sizes windows and masks from the floor instead, which is not
 * the grid its blocks then see; the two agree whenever the sides are even (every registered
 * config at its own image size).
 */
export function swinStageResolutions(config: Pick<SwinConfig, 'imageSize' | 'patchSize' | 'depths'>): number[] {
  const sides: number[] = [];
  let side = config.imageSize / config.patchSize;
  for (let stage = 0; stage < config.depths.length; stage++) {
    if (stage > 0) side = Math.ceil(side / 2);
    sides.push(side);
  }
  return sides;
}

/** Index into the bias table of every (query, key) token pair of a window: row-major, as timm's get_relative_position_index. */
function relativePositionIndex(window: number): Tensor {
  const area = window * window;
  const values = new Array<number>(area * area);
  for (let query = 0; query < area; query++) {
    for (let key = 0; key < area; key++) {
      const dy = Math.floor(query / window) - Math.floor(key / window) + window - 1;
      const dx = (query % window) - (key % window) + window - 1;
      values[query * area + key] = dy * (2 * window - 1) + dx;
    }
  }
  return tensor(values, { dtype: 'int64', shape: [area, area] });
}

/**
 * The additive attention mask of the shifted layout, [windows, area, area]: after the cyclic
 * shift, a window at the bottom or right edge holds tokens from opposite sides of the image, which
 * must not attend to each other. Tokens get a region label (3 bands per axis, as timm's slices
 * (0, -window), (-window, -shift), (-shift, end) of the padded grid); pairs with different labels
 * get -100 (timm's value, not -inf, so a row never becomes all -inf).
 */
function shiftedWindowMask(side: number, window: number, shift: number): Tensor {
  const padded = Math.ceil(side / window) * window;
  const band = (position: number): number => (position < padded - window ? 0 : position < padded - shift ? 1 : 2);
  const perSide = padded / window;
  const area = window * window;
  const values: number[] = [];
  for (let windowRow = 0; windowRow < perSide; windowRow++) {
    for (let windowColumn = 0; windowColumn < perSide; windowColumn++) {
      const labels: number[] = [];
      for (let index = 0; index < area; index++) {
        const row = windowRow * window + Math.floor(index / window);
        const column = windowColumn * window + (index % window);
        labels.push(band(row) * 3 + band(column));
      }
      for (let query = 0; query < area; query++) {
        for (let key = 0; key < area; key++) values.push(labels[query] === labels[key] ? 0 : -100);
      }
    }
  }
  return tensor(values, { shape: [perSide * perSide, area, area] });
}

/** [B, H, W, C] -> [B * windows, window * window, C], windows in row-major order (timm's window_partition). */
function partitionWindows(x: Tensor, window: number): Tensor {
  const [batch, height, width, channels] = x.shape;
  return x.reshape(batch, height / window, window, width / window, window, channels)
    .permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, channels);
}

/** The inverse of partitionWindows (timm's window_reverse). */
function reverseWindows(windows: Tensor, window: number, height: number, width: number): Tensor {
  const channels = windows.size(-1);
  return windows.reshape(-1, height / window, width / window, window, window, channels)
    .permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, channels);
}

/** timm's PatchEmbed with a norm and NHWC output: [B, C, H, W] -> [B, H/p, W/p, D]. */
class PatchEmbed extends Layer {
  readonly proj: Conv2d;
  readonly norm: LayerNorm;
  constructor(patchSize: number, inChannels: number, width: number) {
    super();
    this.proj = this.registerModule('proj', new Conv2d(inChannels, width, patchSize, { stride: patchSize }));
    this.norm = this.registerModule('norm', new LayerNorm(width));
  }
  forward(images: Tensor): Tensor {
    return tidy(() => this.norm.forward(this.proj.forward(images).permute(0, 2, 3, 1)));
  }
}

/** Multi-head self-attention inside windows with a learned bias per relative offset and head (W-MSA / SW-MSA). */
class WindowAttention extends Module {
  readonly qkv: Linear;
  readonly proj: Linear;
  readonly attnDrop: Dropout;
  readonly projDrop: Dropout;
  readonly relativePositionBiasTable: Parameter;
  /** Non-persistent, as timm's: computed from the window size, never in a checkpoint. */
  readonly relativePositionIndex: Tensor;
  readonly headDim: number;
  readonly scale: number;
  constructor(readonly dim: number, readonly numHeads: number, readonly window: number, qkvBias: boolean, projDrop: number) {
    super();
    if (dim % numHeads) throw new Error(`Swin: width ${dim} is not divisible by ${numHeads} heads`);
    this.headDim = dim / numHeads;
    this.scale = this.headDim ** -0.5;
    this.relativePositionBiasTable = this.registerParameter('relative_position_bias_table',
      tidy(() => new Parameter(truncNormal_(zeros([(2 * window - 1) ** 2, numHeads]), 0.02))));
    this.relativePositionIndex = this.registerBuffer('relative_position_index', relativePositionIndex(window), false);
    this.qkv = this.registerModule('qkv', new Linear(dim, dim * 3, qkvBias));
    this.attnDrop = this.registerModule('attn_drop', new Dropout(0, { fixedRate: true }));
    this.proj = this.registerModule('proj', new Linear(dim, dim));
    this.projDrop = this.registerModule('proj_drop', new Dropout(projDrop));
  }

  /** windows: [B * nW, N, C]; mask: [nW, N, N] additive (0 / -100) or null. */
  forward(windows: Tensor, mask: Tensor | null): Tensor {
    return tidy(() => {
      const [count, tokens, channels] = windows.shape;
      const qkv = this.qkv.forward(windows).reshape(count, tokens, 3, this.numHeads, this.headDim).permute(2, 0, 3, 1, 4);
      const [q, k, v] = qkv.unbind(0);
      const bias = this.relativePositionBiasTable.indexSelect(0, this.relativePositionIndex.reshape(-1))
        .reshape(tokens, tokens, this.numHeads).permute(2, 0, 1).unsqueeze(0);
      let logits = q.mul(this.scale).matmul(k.transpose(-2, -1)).add(bias);
      if (mask) {
        const perImage = mask.size(0);
        logits = logits.reshape(-1, perImage, this.numHeads, tokens, tokens).add(mask.unsqueeze(1).unsqueeze(0))
          .reshape(-1, this.numHeads, tokens, tokens);
      }
      const attention = this.attnDrop.forward(logits.softmax(-1));
      const mixed = attention.matmul(v).transpose(1, 2).reshape(count, tokens, channels);
      return this.projDrop.forward(this.proj.forward(mixed));
    });
  }
}

/** A Swin block on an NHWC feature map: (shifted) window attention, then an MLP, each pre-norm and residual. */
class SwinBlock extends Layer {
  readonly norm1: LayerNorm;
  readonly attn: WindowAttention;
  readonly dropPath1: DropPath;
  readonly norm2: LayerNorm;
  readonly mlp: Mlp;
  readonly dropPath2: DropPath;
  readonly window: number;
  readonly shift: number;
  /** The shifted-window attention mask (non-persistent buffer, as timm's attn_mask), or null without a shift. */
  readonly attnMask: Tensor | null;
  constructor(dim: number, side: number, heads: number, window: number, shift: number, config: SwinConfig, dropPath: number) {
    super();
    // timm's _calc_window_shift: a grid no larger than the window is one window, and shifting it would change nothing.
    this.window = side <= window ? side : window;
    this.shift = side <= window ? 0 : shift;
    this.norm1 = this.registerModule('norm1', new LayerNorm(dim));
    this.attn = this.registerModule('attn', new WindowAttention(dim, heads, this.window, config.qkvBias, config.dropRate));
    this.dropPath1 = this.registerModule('drop_path1', new DropPath(dropPath));
    this.norm2 = this.registerModule('norm2', new LayerNorm(dim));
    this.mlp = this.registerModule('mlp', new Mlp(dim, Math.trunc(dim * config.mlpRatio), dim, config.dropRate));
    this.dropPath2 = this.registerModule('drop_path2', new DropPath(dropPath));
    this.attnMask = this.shift ? this.registerBuffer('attn_mask', shiftedWindowMask(side, this.window, this.shift), false) : null;
  }

  private windowAttention(x: Tensor): Tensor {
    const [, height, width] = x.shape;
    const { window, shift } = this;
    let shifted = shift ? x.roll([-shift, -shift], [1, 2]) : x;
    // Pad the grid up to whole windows (only when it is larger than, and not a multiple of, the window).
    const padHeight = (window - (height % window)) % window;
    const padWidth = (window - (width % window)) % window;
    if (padHeight || padWidth) shifted = shifted.pad([0, 0, 0, padWidth, 0, padHeight]);
    const paddedHeight = height + padHeight;
    const paddedWidth = width + padWidth;
    const mixed = this.attn.forward(partitionWindows(shifted, window), this.attnMask?.to({ dtype: x.dtype }) ?? null);
    let merged = reverseWindows(mixed, window, paddedHeight, paddedWidth);
    if (padHeight || padWidth) merged = merged.slice(1, 0, height).slice(2, 0, width);
    return shift ? merged.roll([shift, shift], [1, 2]) : merged;
  }

  forward(x: Tensor): Tensor {
    return tidy(() => {
      const y = x.add(this.dropPath1.forward(this.windowAttention(this.norm1.forward(x))));
      return y.add(this.dropPath2.forward(this.mlp.forward(this.norm2.forward(y))));
    });
  }
}

/** Concatenates each 2x2 neighbourhood's features (timm's order) and projects 4C -> 2C: half the side, twice the width. */
export class PatchMerging extends Layer {
  readonly norm: LayerNorm;
  readonly reduction: Linear;
  constructor(dim: number, outDim: number) {
    super();
    this.norm = this.registerModule('norm', new LayerNorm(4 * dim));
    this.reduction = this.registerModule('reduction', new Linear(4 * dim, outDim, false));
  }
  forward(x: Tensor): Tensor {
    return tidy(() => {
      const [batch, height, width, channels] = x.shape;
      const padded = height % 2 || width % 2 ? x.pad([0, 0, 0, width % 2, 0, height % 2]) : x;
      const [evenHeight, evenWidth] = [height + (height % 2), width + (width % 2)];
      const grouped = padded.reshape(batch, evenHeight / 2, 2, evenWidth / 2, 2, channels).permute(0, 1, 3, 4, 2, 5).flatten(3);
      return this.reduction.forward(this.norm.forward(grouped));
    });
  }
}

/** One stage: PatchMerging first (stages after the first; timm's current layout), then the blocks, even ones unshifted. */
export class SwinStage extends Layer {
  readonly downsample: PatchMerging | Identity;
  readonly blocks: Sequential;
  constructor(inDim: number, outDim: number, side: number, depth: number, heads: number, config: SwinConfig, rates: number[], downsample: boolean) {
    super();
    // Identity owns no parameters, so the first stage has no layers.0.downsample.* keys, as timm's.
    this.downsample = this.registerModule('downsample', downsample ? new PatchMerging(inDim, outDim) : new Identity());
    const shift = Math.floor(config.windowSize / 2);
    const blocks = Array.from({ length: depth }, (_, index) =>
      new SwinBlock(outDim, side, heads, config.windowSize, index % 2 ? shift : 0, config, rates[index]));
    this.blocks = this.registerModule('blocks', new Sequential(...blocks));
  }
  forward(x: Tensor): Tensor {
    return tidy(() => this.blocks.forward(this.downsample.forward(x)));
  }
}

/** timm's ClassifierHead for NHWC input: average over the grid, dropout, fc (keys head.fc.*). */
export class ClassifierHead extends Layer {
  readonly drop: Dropout;
  readonly fc: Linear;
  constructor(features: number, numClasses: number, dropRate: number) {
    super();
    this.drop = this.registerModule('drop', new Dropout(dropRate, { fixedRate: true }));
    this.fc = this.registerModule('fc', new Linear(features, numClasses));
  }
  forward(x: Tensor): Tensor {
    return tidy(() => this.fc.forward(this.drop.forward(x.mean([1, 2]))));
  }
}

export class SwinTransformer extends Classifier implements Maskable {
  readonly info: ClassifierInfo;
  /** Masked patches keep their place in the grid, with a learned embedding (SimMIM). */
  readonly masking = 'mask-tokens' as const;
  readonly patchEmbed: PatchEmbed;
  /** The learned embedding of a masked patch, replacing its patch embedding before the stages. */
  readonly maskToken: Parameter;
  readonly layers: ModuleList<SwinStage>;
  readonly norm: LayerNorm;
  readonly head: ClassifierHead;
  /** The patch grid's side. */
  readonly gridSize: number;
  readonly numFeatures: number;

  constructor(readonly config: SwinConfig) {
    super();
    const { imageSize, patchSize, depths, heads, embedDim } = config;
    if (imageSize % patchSize) throw new Error(`Swin: image size ${imageSize} is not a multiple of patch size ${patchSize}`);
    if (depths.length === 0 || depths.length !== heads.length) {
      throw new Error(`Swin: depths [${depths.join(', ')}] and heads [${heads.join(', ')}] must be non-empty and of one length`);
    }
    if (!(Number.isInteger(config.windowSize) && config.windowSize >= 1)) throw new Error(`Swin: window size must be a positive integer, got ${config.windowSize}`);
    checkRatio('Swin drop-path rate', config.dropPathRate);
    const sides = swinStageResolutions(config);
    // A grid of 1x1 cannot be merged further; timm would produce an empty map.
    if (sides.slice(0, -1).some((side) => side < 2)) {
      throw new Error(`Swin: ${imageSize}-px images with patch ${patchSize} give stage grids ${sides.join(', ')}: too small for ${depths.length} stages`);
    }
    this.info = { family: 'swin', imageSize, inChannels: config.inChannels, numClasses: config.numClasses };
    this.gridSize = imageSize / patchSize;
    this.numFeatures = embedDim * 2 ** (depths.length - 1);
    this.patchEmbed = this.registerModule('patch_embed', new PatchEmbed(patchSize, config.inChannels, embedDim));
    // SimMIM's init of its mask token: trunc_normal(.02).
    this.maskToken = this.registerParameter('mask_token', tidy(() => new Parameter(truncNormal_(zeros([1, 1, embedDim]), 0.02))));
    // timm's calculate_drop_path_rates(stagewise=True): linear from 0 over all blocks, split by
    // stage; uniform: the same rate in every block.
    const total = depths.reduce((sum, depth) => sum + depth, 0);
    const rates = config.dropPathSchedule === 'uniform'
      ? new Array<number>(total).fill(config.dropPathRate)
      : tidy(() => (total > 1 ? (linspace(0, config.dropPathRate, total, { dtype: 'float64' }).toArray() as number[]) : [config.dropPathRate]));
    const stages: SwinStage[] = [];
    let start = 0;
    for (let index = 0; index < depths.length; index++) {
      const inDim = embedDim * 2 ** Math.max(index - 1, 0);
      const outDim = embedDim * 2 ** index;
      stages.push(new SwinStage(inDim, outDim, sides[index], depths[index], heads[index], config, rates.slice(start, start + depths[index]), index > 0));
      start += depths[index];
    }
    this.layers = this.registerModule('layers', new ModuleList(stages));
    this.norm = this.registerModule('norm', new LayerNorm(this.numFeatures));
    this.head = this.registerModule('head', new ClassifierHead(this.numFeatures, config.numClasses, config.headDropRate ?? 0));
    initLinearsTimm(this);
  }

  override noWeightDecay(): string[] {
    // timm's no_weight_decay (the bias tables) and the mask token (DEFAULT_NO_WEIGHT_DECAY has it too).
    return ['relative_position_bias_table', 'mask_token'];
  }

  forward(images: Tensor, options: ForwardOptions = {}): Tensor {
    checkRatio('mask ratio', options.maskRatio);
    const shape = images.shape;
    const { inChannels, imageSize } = this.config;
    if (shape.length !== 4 || shape[1] !== inChannels || shape[2] !== imageSize || shape[3] !== imageSize) {
      throw new Error(`Swin expects images [B, ${inChannels}, ${imageSize}, ${imageSize}], got [${shape.join(', ')}]`);
    }
    return this.withRates(options, () => tidy(() => {
      let x = this.patchEmbed.forward(images);
      if (options.maskRatio) {
        // The same positions as ViT's masking for the same noise: keep int(L*(1-r)) per sample.
        const [batch, height, width, channels] = x.shape;
        const masked = randomTokenMask(batch, height * width, options.maskRatio, x.device, options.generator)
          .reshape(batch, height, width, 1);
        x = where(masked, this.maskToken.to({ dtype: x.dtype }).reshape(1, 1, 1, channels).expand(batch, height, width, channels), x);
      }
      for (const stage of this.layers) x = stage.forward(x);
      return this.head.forward(this.norm.forward(x));
    }));
  }
}

// ---- named configs (timm names where timm has the model) ----

type SwinShape = Pick<SwinConfig, 'patchSize' | 'embedDim' | 'depths' | 'heads' | 'windowSize'>;

function registerSwin(name: string, imageSize: number, description: string, shape: SwinShape): void {
  registerModel(name, {
    family: 'swin', imageSize, description,
    build: (overrides: ModelOverrides) => new SwinTransformer({
      mlpRatio: 4, qkvBias: true, ...shape,
      imageSize: overrides.imageSize ?? imageSize, inChannels: overrides.inChannels ?? 3, numClasses: overrides.numClasses ?? 1000,
      dropPathRate: overrides.dropPathRate ?? 0, dropPathSchedule: overrides.dropPathSchedule ?? 'linear', dropRate: overrides.dropRate ?? 0,
    }),
  });
}

// A small-image model that trains on a 2-core CPU: patch 2 on 28 px gives a 14x14 grid of 2x2
// windows of 7 (stage 1, with a shifted block), then one 7x7 window (stage 2).
registerSwin('swin_micro_patch2_window7_28', 28, 'Swin 32-dim, depths [2,2], heads [2,4], patch 2, window 7 (tests, quick CPU)',
  { patchSize: 2, embedDim: 32, depths: [2, 2], heads: [2, 4], windowSize: 7 });
// The standard ImageNet models (224 px).
registerSwin('swin_tiny_patch4_window7_224', 224, 'Swin-T', { patchSize: 4, embedDim: 96, depths: [2, 2, 6, 2], heads: [3, 6, 12, 24], windowSize: 7 });
registerSwin('swin_small_patch4_window7_224', 224, 'Swin-S', { patchSize: 4, embedDim: 96, depths: [2, 2, 18, 2], heads: [3, 6, 12, 24], windowSize: 7 });
