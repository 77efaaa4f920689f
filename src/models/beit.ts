// BEiT / BEiT v2 (Bao et al. 2021; Peng et al. 2022) with timm's Beit names and init, so that
// timm checkpoints (beitv2_base_patch16_224.*) load by name: a relative position bias per block
// over the whole patch grid plus the class token (relative_position_bias_table; three extra rows
// for class->patch, patch->class and class->class), q_bias and v_bias without a key bias,
// LayerScale as gamma_1 / gamma_2 on the block, and mean pooling of the patch tokens with fc_norm.
//
// MaskSub masks by replacing the masked patch embeddings with a learned mask_token (BEiT's own
// masked image modelling, and the paper's Sec. 4.2: "masking using mask-token from the pretrained
// weight instead of MAE-style masking"). Dropping tokens is not offered: each attention logit gets
// the bias of its (query, key) pair of grid positions, which the pretrained table learned over the
// full grid only; dropping would need the bias gathered per sample for its kept positions, a
// model BEiT never trained. Registers the BEiT configs.
import { cat, linspace, noGrad, type Tensor, tensor, tidy, where, zeros } from '../tensor/tensor.js';
import * as F from '../nn/functional.js';
import { Conv2d, Dropout, DropPath, Identity, Layer, LayerNorm, Linear, Mlp, Module, ModuleList, Parameter } from '../nn/index.js';
import { constant_, truncNormal_ } from '../nn/init.js';
import { checkRatio, Classifier, type ClassifierInfo, type ForwardOptions, initLinearsTimm, type Maskable } from './classifier.js';
import { type ModelOverrides, registerModel } from './registry.js';
import { randomTokenMask } from './vit.js';

export interface BeitConfig {
  imageSize: number;
  patchSize: number;
  inChannels: number;
  numClasses: number;
  width: number;
  depth: number;
  heads: number;
  mlpRatio: number;
  /** q_bias and v_bias (the key gets none, as in BEiT). */
  qkvBias: boolean;
  /** LayerScale init value (timm's init_values; BEiT v2: 1e-5 at pretraining); null: no gamma_1 / gamma_2. */
  layerScale: number | null;
  /** An absolute position embedding (pos_embed) as well; BEiT v2 has none (relative bias only). */
  absolutePosition: boolean;
  dropPathRate: number;
  /** The dropout after the attention projection and in the MLP (timm's proj_drop_rate): the one DropSub varies. */
  dropRate: number;
  /** 'avg' (timm's default for BEiT): mean of the patch tokens, then fc_norm; 'token': the class token after norm. */
  globalPool: 'avg' | 'token';
}

/**
 * timm's gen_relative_position_index for a grid with a class token: [(area+1), (area+1)] indices
 * into a table of (2h-1)(2w-1) + 3 rows; patch pairs index their offset (row-major, as Swin's),
 * the class token's row, column and diagonal get the last three rows.
 */
export function beitRelativePositionIndex(grid: number): Tensor {
  const area = grid * grid;
  const distances = (2 * grid - 1) ** 2;
  const side = area + 1;
  const values = new Array<number>(side * side);
  for (let query = 0; query < side; query++) {
    for (let key = 0; key < side; key++) {
      let index: number;
      if (query === 0 && key === 0) index = distances + 2;
      else if (query === 0) index = distances;
      else if (key === 0) index = distances + 1;
      else {
        const [q, k] = [query - 1, key - 1];
        const dy = Math.floor(q / grid) - Math.floor(k / grid) + grid - 1;
        const dx = (q % grid) - (k % grid) + grid - 1;
        index = dy * (2 * grid - 1) + dx;
      }
      values[query * side + key] = index;
    }
  }
  return tensor(values, { dtype: 'int64', shape: [side, side] });
}

class PatchEmbed extends Layer {
  readonly proj: Conv2d;
  constructor(patchSize: number, inChannels: number, width: number) {
    super();
    this.proj = this.registerModule('proj', new Conv2d(inChannels, width, patchSize, { stride: patchSize }));
  }
  forward(images: Tensor): Tensor {
    return tidy(() => this.proj.forward(images).flatten(2).transpose(1, 2));
  }
}

/** BEiT's attention: a bias-free qkv projection plus q_bias / v_bias, and the block's relative position bias. */
export class BeitAttention extends Module {
  readonly qkv: Linear;
  readonly qBias: Parameter | null;
  readonly vBias: Parameter | null;
  readonly relativePositionBiasTable: Parameter;
  /** Non-persistent, as timm's: computed from the grid, never in a checkpoint. */
  readonly relativePositionIndex: Tensor;
  readonly attnDrop: Dropout;
  readonly proj: Linear;
  readonly projDrop: Dropout;
  readonly headDim: number;
  readonly scale: number;
  constructor(readonly dim: number, readonly numHeads: number, readonly grid: number, qkvBias: boolean, projDrop: number) {
    super();
    this.headDim = dim / numHeads;
    this.scale = this.headDim ** -0.5;
    this.qkv = this.registerModule('qkv', new Linear(dim, dim * 3, false));
    // timm's Attention.reset_parameters: q_bias, v_bias and the bias table start at 0.
    this.qBias = qkvBias ? this.registerParameter('q_bias', tidy(() => new Parameter(zeros([dim])))) : null;
    this.vBias = qkvBias ? this.registerParameter('v_bias', tidy(() => new Parameter(zeros([dim])))) : null;
    this.relativePositionBiasTable = this.registerParameter('relative_position_bias_table',
      tidy(() => new Parameter(zeros([(2 * grid - 1) ** 2 + 3, numHeads]))));
    this.relativePositionIndex = this.registerBuffer('relative_position_index', beitRelativePositionIndex(grid), false);
    this.attnDrop = this.registerModule('attn_drop', new Dropout(0, { fixedRate: true }));
    this.proj = this.registerModule('proj', new Linear(dim, dim));
    this.projDrop = this.registerModule('proj_drop', new Dropout(projDrop));
  }

  forward(x: Tensor): Tensor {
    return tidy(() => {
      const [batch, tokens, channels] = x.shape;
      const bias = this.qBias && this.vBias ? cat([this.qBias, zeros([this.dim], { dtype: this.qBias.dtype, device: this.qBias.device as 'cpu' }), this.vBias], 0) : null;
      const qkv = F.linear(x, this.qkv.weight, bias).reshape(batch, tokens, 3, this.numHeads, this.headDim).permute(2, 0, 3, 1, 4);
      const [q, k, v] = qkv.unbind(0);
      const positionBias = this.relativePositionBiasTable.indexSelect(0, this.relativePositionIndex.reshape(-1))
        .reshape(tokens, tokens, this.numHeads).permute(2, 0, 1).unsqueeze(0);
      const logits = q.mul(this.scale).matmul(k.transpose(-2, -1)).add(positionBias.to({ dtype: q.dtype }));
      const attention = this.attnDrop.forward(logits.softmax(-1));
      const mixed = attention.matmul(v).transpose(1, 2).reshape(batch, tokens, channels);
      return this.projDrop.forward(this.proj.forward(mixed));
    });
  }
}

/** A pre-norm block with LayerScale parameters on the block itself (gamma_1, gamma_2), as timm's Beit Block. */
export class BeitBlock extends Layer {
  readonly norm1: LayerNorm;
  readonly attn: BeitAttention;
  readonly dropPath1: DropPath;
  readonly norm2: LayerNorm;
  readonly mlp: Mlp;
  readonly dropPath2: DropPath;
  readonly gamma1: Parameter | null;
  readonly gamma2: Parameter | null;
  constructor(config: BeitConfig, grid: number, dropPath: number) {
    super();
    // timm's Beit uses its LayerNorm with eps 1e-6.
    this.norm1 = this.registerModule('norm1', new LayerNorm(config.width, 1e-6));
    this.attn = this.registerModule('attn', new BeitAttention(config.width, config.heads, grid, config.qkvBias, config.dropRate));
    this.dropPath1 = this.registerModule('drop_path1', new DropPath(dropPath));
    this.norm2 = this.registerModule('norm2', new LayerNorm(config.width, 1e-6));
    this.mlp = this.registerModule('mlp', new Mlp(config.width, Math.trunc(config.width * config.mlpRatio), config.width, config.dropRate));
    this.dropPath2 = this.registerModule('drop_path2', new DropPath(dropPath));
    const scale = config.layerScale;
    this.gamma1 = scale === null ? null : this.registerParameter('gamma_1', tidy(() => new Parameter(constant_(zeros([config.width]), scale))));
    this.gamma2 = scale === null ? null : this.registerParameter('gamma_2', tidy(() => new Parameter(constant_(zeros([config.width]), scale))));
  }
  forward(x: Tensor): Tensor {
    return tidy(() => {
      let branch = this.attn.forward(this.norm1.forward(x));
      if (this.gamma1) branch = branch.mul(this.gamma1);
      const y = x.add(this.dropPath1.forward(branch));
      let mlp = this.mlp.forward(this.norm2.forward(y));
      if (this.gamma2) mlp = mlp.mul(this.gamma2);
      return y.add(this.dropPath2.forward(mlp));
    });
  }
}

export class Beit extends Classifier implements Maskable {
  readonly info: ClassifierInfo;
  /** Masked patches keep their place (the bias table is over the full grid), with a learned embedding. */
  readonly masking = 'mask-tokens' as const;
  readonly patchEmbed: PatchEmbed;
  readonly clsToken: Parameter;
  /** The absolute position embedding, or null (BEiT v2: relative position bias only). */
  readonly posEmbed: Parameter | null;
  /** The learned embedding of a masked patch (BEiT pretraining's mask_token), replacing its patch embedding. */
  readonly maskToken: Parameter;
  readonly posDrop: Dropout;
  readonly blocks: ModuleList<BeitBlock>;
  readonly norm: LayerNorm | Identity;
  readonly fcNorm: LayerNorm | Identity;
  readonly headDrop: Dropout;
  readonly head: Linear;
  /** The patch grid's side. */
  readonly gridSize: number;

  constructor(readonly config: BeitConfig) {
    super();
    const { imageSize, patchSize, width, heads } = config;
    if (imageSize % patchSize) throw new Error(`BEiT: image size ${imageSize} is not a multiple of patch size ${patchSize}`);
    if (width % heads) throw new Error(`BEiT: width ${width} is not divisible by ${heads} heads`);
    if (!['avg', 'token'].includes(config.globalPool)) throw new Error(`BEiT: global pool must be 'avg' or 'token', got '${String(config.globalPool)}'`);
    checkRatio('BEiT drop-path rate', config.dropPathRate);
    this.info = { family: 'beit', imageSize, inChannels: config.inChannels, numClasses: config.numClasses };
    this.gridSize = imageSize / patchSize;
    this.patchEmbed = this.registerModule('patch_embed', new PatchEmbed(patchSize, config.inChannels, width));
    this.clsToken = this.registerParameter('cls_token', tidy(() => new Parameter(truncNormal_(zeros([1, 1, width]), 0.02))));
    this.posEmbed = config.absolutePosition
      ? this.registerParameter('pos_embed', tidy(() => new Parameter(truncNormal_(zeros([1, this.gridSize ** 2 + 1, width]), 0.02))))
      : null;
    this.maskToken = this.registerParameter('mask_token', tidy(() => new Parameter(truncNormal_(zeros([1, 1, width]), 0.02))));
    this.posDrop = this.registerModule('pos_drop', new Dropout(0, { fixedRate: true }));
    // timm's calculate_drop_path_rates: linear from 0 over depth.
    const rates = tidy(() => (config.depth > 1 ? (linspace(0, config.dropPathRate, config.depth, { dtype: 'float64' }).toArray() as number[]) : [config.dropPathRate]));
    this.blocks = this.registerModule('blocks', new ModuleList(rates.map((rate) => new BeitBlock(config, this.gridSize, rate))));
    const useFcNorm = config.globalPool === 'avg';
    // Identity modules own no parameters, so the state dict has norm.* or fc_norm.*, as timm's.
    this.norm = this.registerModule('norm', useFcNorm ? new Identity() : new LayerNorm(width, 1e-6));
    this.fcNorm = this.registerModule('fc_norm', useFcNorm ? new LayerNorm(width, 1e-6) : new Identity());
    this.headDrop = this.registerModule('head_drop', new Dropout(0, { fixedRate: true }));
    this.head = this.registerModule('head', new Linear(width, config.numClasses));
    this.initWeights();
  }

  /** timm's Beit.init_weights: every Linear trunc_normal(.02), bias 0; fix_init_weight; the head scaled by 0.001. */
  private initWeights(): void {
    initLinearsTimm(this);
    noGrad(() => {
      this.blocks.items.forEach((block, index) => {
        // BEiT's fix_init_weight: the residual branches' output projections shrink with depth.
        const scale = Math.sqrt(2 * (index + 1));
        block.attn.proj.weight.div_(scale);
        block.mlp.fc2.weight.div_(scale);
      });
      // timm's head_init_scale 0.001.
      this.head.weight.mul_(0.001);
      this.head.bias?.mul_(0.001);
    });
  }

  override noWeightDecay(): string[] {
    // timm's no_weight_decay (pos_embed, cls_token, every relative_position_bias_table) and the mask token.
    return ['pos_embed', 'cls_token', 'mask_token', 'relative_position_bias_table'];
  }

  forward(images: Tensor, options: ForwardOptions = {}): Tensor {
    checkRatio('mask ratio', options.maskRatio);
    const shape = images.shape;
    const { inChannels, imageSize, width } = this.config;
    if (shape.length !== 4 || shape[1] !== inChannels || shape[2] !== imageSize || shape[3] !== imageSize) {
      throw new Error(`BEiT expects images [B, ${inChannels}, ${imageSize}, ${imageSize}], got [${shape.join(', ')}]`);
    }
    return this.withRates(options, () => tidy(() => {
      let tokens = this.patchEmbed.forward(images);
      const [batch, length] = tokens.shape;
      if (options.maskRatio) {
        // The same positions as ViT's and Swin's masking for the same noise: keep int(L*(1-r)) per sample.
        const masked = randomTokenMask(batch, length, options.maskRatio, tokens.device, options.generator);
        tokens = where(masked.unsqueeze(-1), this.maskToken.to({ dtype: tokens.dtype }).expand(batch, length, width), tokens);
      }
      let x = cat([this.clsToken.to({ dtype: tokens.dtype }).expand(batch, 1, width), tokens], 1);
      if (this.posEmbed) x = x.add(this.posEmbed);
      x = this.posDrop.forward(x);
      for (const block of this.blocks) x = block.forward(x);
      x = this.norm.forward(x);
      const pooled = this.config.globalPool === 'avg' ? x.slice(1, 1).mean(1) : x.select(1, 0);
      return this.head.forward(this.headDrop.forward(this.fcNorm.forward(pooled)));
    }));
  }
}

// ---- named configs (timm names where timm has the model) ----

type BeitShape = Pick<BeitConfig, 'patchSize' | 'width' | 'depth' | 'heads' | 'absolutePosition'> & { layerScale: number | null };

function registerBeit(name: string, imageSize: number, description: string, shape: BeitShape): void {
  registerModel(name, {
    family: 'beit', imageSize, description,
    build: (overrides: ModelOverrides) => new Beit({
      mlpRatio: 4, qkvBias: true, ...shape,
      imageSize: overrides.imageSize ?? imageSize, inChannels: overrides.inChannels ?? 3, numClasses: overrides.numClasses ?? 1000,
      dropPathRate: overrides.dropPathRate ?? 0, dropRate: overrides.dropRate ?? 0,
      layerScale: overrides.layerScale === undefined || overrides.layerScale === null ? shape.layerScale : overrides.layerScale,
      globalPool: overrides.globalPool ?? 'avg',
    }),
  });
}

// A small-image model that trains on a 2-core CPU: a 7x7 grid of 4-px patches on 28 px.
registerBeit('beitv2_micro_patch4_28', 28, 'BEiT v2 layout 64-dim x 2 blocks, 2 heads, patch 4, relative position bias, LayerScale (tests, quick CPU)',
  { patchSize: 4, width: 64, depth: 2, heads: 2, absolutePosition: false, layerScale: 0.1 });
// timm's beitv2_base_patch16_224 (init_values 1e-5, no absolute position embedding).
registerBeit('beitv2_base_patch16_224', 224, 'BEiT v2 ViT-B/16 (relative position bias per block, LayerScale, mean pooling + fc_norm)',
  { patchSize: 16, width: 768, depth: 12, heads: 12, absolutePosition: false, layerScale: 1e-5 });
