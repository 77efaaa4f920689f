// Vision Transformer (timm's VisionTransformer names and init) with MAE-style token dropping:
// a forward with maskRatio r keeps int(L*(1-r)) random patch tokens per sample after the
// position embedding, so the sub-model really runs on fewer tokens. CLIP's image tower is the same
// model with preNorm (timm's norm_pre), QuickGELU and LayerNorm eps 1e-5. Registers the ViT configs.
import { cat, Generator, linspace, type Tensor, tidy, where, zeros } from '../tensor/tensor.js';
import { Attention, Conv2d, Dropout, DropPath, Identity, Layer, LayerNorm, Linear, Mlp, ModuleList, Parameter } from '../nn/index.js';
import { constant_, normal_, truncNormal_ } from '../nn/init.js';
import { checkRatio, Classifier, type ClassifierInfo, type ForwardOptions, initLinearsTimm, type Maskable, maskNoise } from './classifier.js';
import { type DropPathSchedule, type ModelOverrides, registerModel } from './registry.js';

export interface VitConfig {
  imageSize: number;
  patchSize: number;
  inChannels: number;
  numClasses: number;
  width: number;
  depth: number;
  heads: number;
  mlpRatio: number;
  qkvBias: boolean;
  /** DeiT-III LayerScale init value; null disables LayerScale. */
  layerScale: number | null;
  dropPathRate: number;
  /** 'linear' grows the rate from 0 to dropPathRate over depth (timm); 'uniform' uses it everywhere (DeiT-III). */
  dropPathSchedule: DropPathSchedule;
  dropRate: number;
  /** 'token': the class token's output feeds the head; 'avg': the mean of the patch tokens (MAE fine-tuning). Default 'token'. */
  globalPool?: 'token' | 'avg';
  /**
   * timm's fc_norm: the final LayerNorm after pooling (named fc_norm) instead of before it (norm).
   * null or absent: on exactly when globalPool is 'avg', as timm and MAE.
   */
  fcNorm?: boolean | null;
  /**
   * How maskRatio masks: 'drop' removes the masked patch tokens (MAE, the sequence gets shorter);
   * 'token' replaces their patch embeddings by a learned mask_token before the position
   * embedding is added (BEiT / SimMIM; the sequence length stays). Default 'drop'.
   */
  maskMode?: 'drop' | 'token';
  /**
   * CLIP's image tower (timm's pre_norm, OpenAI's ln_pre): a LayerNorm (norm_pre) after the
   * position embedding, before the blocks, and then no bias in the patch embedding (timm:
   * bias=not pre_norm). Default false.
   */
  preNorm?: boolean;
  /** The MLP's activation: 'gelu', or OpenAI CLIP's 'quick_gelu' (x * sigmoid(1.702 x)). Default 'gelu'. */
  act?: 'gelu' | 'quick_gelu';
  /** Every LayerNorm's eps: timm's ViT 1e-6; its CLIP configs 1e-5 (PyTorch's default, as CLIP). Default 1e-6. */
  normEps?: number;
}

class PatchEmbed extends Layer {
  readonly proj: Conv2d;
  constructor(readonly patchSize: number, inChannels: number, width: number, bias = true) {
    super();
    this.proj = this.registerModule('proj', new Conv2d(inChannels, width, patchSize, { stride: patchSize, bias }));
  }
  forward(images: Tensor): Tensor {
    // [B, C, H, W] -> [B, L, D]
    return tidy(() => this.proj.forward(images).flatten(2).transpose(1, 2));
  }
}

class LayerScale extends Layer {
  readonly gamma: Parameter;
  constructor(width: number, init: number) {
    super();
    this.gamma = this.registerParameter('gamma', tidy(() => new Parameter(constant_(zeros([width]), init))));
  }
  forward(input: Tensor): Tensor {
    return input.mul(this.gamma);
  }
}

class Block extends Layer {
  readonly norm1: LayerNorm;
  readonly attn: Attention;
  readonly ls1: LayerScale | null;
  readonly dropPath1: DropPath;
  readonly norm2: LayerNorm;
  readonly mlp: Mlp;
  readonly ls2: LayerScale | null;
  readonly dropPath2: DropPath;
  constructor(config: VitConfig, dropPath: number) {
    super();
    const eps = config.normEps ?? 1e-6;
    this.norm1 = this.registerModule('norm1', new LayerNorm(config.width, eps));
    this.attn = this.registerModule('attn', new Attention(config.width, config.heads, config.qkvBias, 0, config.dropRate));
    this.ls1 = config.layerScale === null ? null : this.registerModule('ls1', new LayerScale(config.width, config.layerScale));
    this.dropPath1 = this.registerModule('drop_path1', new DropPath(dropPath));
    this.norm2 = this.registerModule('norm2', new LayerNorm(config.width, eps));
    this.mlp = this.registerModule('mlp', new Mlp(config.width, Math.round(config.width * config.mlpRatio), config.width, config.dropRate, config.act ?? 'gelu'));
    this.ls2 = config.layerScale === null ? null : this.registerModule('ls2', new LayerScale(config.width, config.layerScale));
    this.dropPath2 = this.registerModule('drop_path2', new DropPath(dropPath));
  }
  forward(x: Tensor): Tensor {
    return tidy(() => {
      let branch = this.attn.forward(this.norm1.forward(x));
      if (this.ls1) branch = this.ls1.forward(branch);
      const y = x.add(this.dropPath1.forward(branch));
      let mlp = this.mlp.forward(this.norm2.forward(y));
      if (this.ls2) mlp = this.ls2.forward(mlp);
      return y.add(this.dropPath2.forward(mlp));
    });
  }
}

/**
 * MAE's random_masking: per sample, uniform noise over the L tokens, argsort, keep the first
 * int(L*(1-r)) (in shuffled order, as MAE and the official MaskSub code do).
 */
export function randomTokenKeep(tokens: Tensor, ratio: number, generator?: Generator): Tensor {
  return tidy(() => {
    const [batch, length, width] = tokens.shape;
    const keep = Math.trunc(length * (1 - ratio));
    const noise = maskNoise([batch, length], tokens.device, generator);
    const keepIndices = noise.argsort(1).slice(1, 0, keep);
    return tokens.gather(1, keepIndices.unsqueeze(-1).expand(batch, keep, width));
  });
}

/**
 * The tokens a masked forward masks, per sample: the same choice as randomTokenKeep (uniform
 * noise, argsort, the first int(L*(1-r)) kept), as a [B, L] boolean that is true where masked, so
 * that the 'drop' and 'token' mask modes mask the same positions given the same noise.
 */
export function randomTokenMask(batch: number, length: number, ratio: number, device: string, generator?: Generator): Tensor {
  return tidy(() => {
    const keep = Math.trunc(length * (1 - ratio));
    const noise = maskNoise([batch, length], device, generator);
    return noise.argsort(1).argsort(1).ge(keep);
  });
}

export class VisionTransformer extends Classifier implements Maskable {
  readonly info: ClassifierInfo;
  /** How forward applies maskRatio: MAE-style dropping (the sub-model runs on the kept tokens only), or mask tokens (maskMode 'token'). */
  get masking(): 'drop-tokens' | 'mask-tokens' {
    return this.maskMode === 'token' ? 'mask-tokens' : 'drop-tokens';
  }
  readonly patchEmbed: PatchEmbed;
  readonly clsToken: Parameter;
  readonly posEmbed: Parameter;
  readonly posDrop: Dropout;
  /** CLIP's LayerNorm before the blocks (preNorm), else Identity. */
  readonly normPre: LayerNorm | Identity;
  readonly blocks: ModuleList<Block>;
  /** timm: the final LayerNorm before pooling, or Identity when fc_norm takes its place. */
  readonly norm: LayerNorm | Identity;
  /** timm's fc_norm: the final LayerNorm after pooling (MAE fine-tuning), else Identity. */
  readonly fcNorm: LayerNorm | Identity;
  /** The learned embedding of a masked patch (maskMode 'token'); null in 'drop' mode. */
  readonly maskToken: Parameter | null;
  readonly head: Linear;
  readonly numPatches: number;
  readonly globalPool: 'token' | 'avg';
  readonly maskMode: 'drop' | 'token';

  constructor(readonly config: VitConfig) {
    super();
    if (config.imageSize % config.patchSize) {
      throw new Error(`ViT: image size ${config.imageSize} is not a multiple of patch size ${config.patchSize}`);
    }
    if (config.width % config.heads) throw new Error(`ViT: width ${config.width} is not divisible by ${config.heads} heads`);
    checkRatio('ViT drop-path rate', config.dropPathRate);
    this.info = { family: 'vit', imageSize: config.imageSize, inChannels: config.inChannels, numClasses: config.numClasses };
    this.numPatches = (config.imageSize / config.patchSize) ** 2;
    const eps = config.normEps ?? 1e-6;
    if (!(eps > 0)) throw new Error(`ViT: norm eps must be > 0, got ${eps}`);
    this.patchEmbed = this.registerModule('patch_embed', new PatchEmbed(config.patchSize, config.inChannels, config.width, !config.preNorm));
    this.clsToken = this.registerParameter('cls_token', tidy(() => new Parameter(normal_(zeros([1, 1, config.width]), 0, 1e-6))));
    this.posEmbed = this.registerParameter('pos_embed', tidy(() => new Parameter(truncNormal_(zeros([1, this.numPatches + 1, config.width]), 0.02))));
    this.posDrop = this.registerModule('pos_drop', new Dropout(config.dropRate, { fixedRate: true }));
    // Identity owns no parameters, so only a pre-norm model has norm_pre.* keys, as timm's.
    this.normPre = this.registerModule('norm_pre', config.preNorm ? new LayerNorm(config.width, eps) : new Identity());
    const rates = config.dropPathSchedule === 'uniform'
      ? new Array<number>(config.depth).fill(config.dropPathRate)
      : tidy(() => (config.depth > 1 ? (linspace(0, config.dropPathRate, config.depth, { dtype: 'float64' }).toArray() as number[]) : [config.dropPathRate]));
    this.blocks = this.registerModule('blocks', new ModuleList(rates.map((rate) => new Block(config, rate))));
    this.globalPool = config.globalPool ?? 'token';
    this.maskMode = config.maskMode ?? 'drop';
    if (!['token', 'avg'].includes(this.globalPool)) throw new Error(`ViT: global pool must be 'token' or 'avg', got '${String(this.globalPool)}'`);
    if (!['drop', 'token'].includes(this.maskMode)) throw new Error(`ViT: mask mode must be 'drop' or 'token', got '${String(this.maskMode)}'`);
    const useFcNorm = config.fcNorm ?? this.globalPool === 'avg';
    // Identity modules own no parameters, so the state dict has norm.* or fc_norm.*, as timm's.
    this.norm = this.registerModule('norm', useFcNorm ? new Identity() : new LayerNorm(config.width, eps));
    this.fcNorm = this.registerModule('fc_norm', useFcNorm ? new LayerNorm(config.width, eps) : new Identity());
    // BEiT's init of its mask token: trunc_normal(.02).
    this.maskToken = this.maskMode === 'token'
      ? this.registerParameter('mask_token', tidy(() => new Parameter(truncNormal_(zeros([1, 1, config.width]), 0.02))))
      : null;
    this.head = this.registerModule('head', new Linear(config.width, config.numClasses));
    initLinearsTimm(this);
  }

  override noWeightDecay(): string[] {
    return ['pos_embed', 'cls_token', 'mask_token'];
  }

  /** Patch tokens with position embeddings, and the class token, before any dropping. */
  forward(images: Tensor, options: ForwardOptions = {}): Tensor {
    checkRatio('mask ratio', options.maskRatio);
    const shape = images.shape;
    const { inChannels, imageSize } = this.config;
    if (shape.length !== 4 || shape[1] !== inChannels || shape[2] !== imageSize || shape[3] !== imageSize) {
      throw new Error(`ViT expects images [B, ${inChannels}, ${imageSize}, ${imageSize}], got [${shape.join(', ')}]`);
    }
    return this.withRates(options, () => tidy(() => {
      let tokens = this.patchEmbed.forward(images);
      if (options.maskRatio && this.maskToken) {
        const [batch, length] = tokens.shape;
        const masked = randomTokenMask(batch, length, options.maskRatio, tokens.device, options.generator);
        tokens = where(masked.unsqueeze(-1), this.maskToken.to({ dtype: tokens.dtype }).expand(...tokens.shape), tokens);
      }
      tokens = tokens.add(this.posEmbed.slice(1, 1));
      if (options.maskRatio && !this.maskToken) tokens = randomTokenKeep(tokens, options.maskRatio, options.generator);
      const cls = this.clsToken.add(this.posEmbed.slice(1, 0, 1)).expand(tokens.size(0), 1, this.config.width);
      let x = this.normPre.forward(this.posDrop.forward(cat([cls, tokens], 1)));
      for (const block of this.blocks) x = block.forward(x);
      x = this.norm.forward(x);
      // timm's _pool: the class token, or the mean over the patch tokens only.
      const pooled = this.globalPool === 'avg' ? x.slice(1, 1).mean(1) : x.select(1, 0);
      return this.head.forward(this.fcNorm.forward(pooled));
    }));
  }
}

// ---- named configs (timm names where timm has the model) ----

type VitShape = Pick<VitConfig, 'patchSize' | 'width' | 'depth' | 'heads' | 'preNorm' | 'act' | 'normEps'>;

function registerVit(name: string, imageSize: number, description: string, shape: VitShape): void {
  registerModel(name, {
    family: 'vit', imageSize, description, patchSize: shape.patchSize,
    build: (overrides: ModelOverrides) => new VisionTransformer({
      mlpRatio: 4, qkvBias: true, dropPathSchedule: overrides.dropPathSchedule ?? 'linear', ...shape,
      imageSize: overrides.imageSize ?? imageSize, inChannels: overrides.inChannels ?? 3, numClasses: overrides.numClasses ?? 1000,
      dropPathRate: overrides.dropPathRate ?? 0, dropRate: overrides.dropRate ?? 0, layerScale: overrides.layerScale ?? null,
      globalPool: overrides.globalPool ?? 'token', fcNorm: overrides.fcNorm ?? null, maskMode: overrides.maskMode ?? 'drop',
    }),
  });
}

// Small-image models that train on a 2-core CPU (28x28 Fashion-MNIST/MNIST, 32x32 CIFAR).
registerVit('vit_micro', 28, 'ViT 64-dim x 2 blocks, patch 7 (tests; the quick preset)', { patchSize: 7, width: 64, depth: 2, heads: 2 });
registerVit('vit_mini_patch4_28', 28, 'ViT 64-dim x 4 blocks, 2 heads, patch 4 (default compare on CPU)', { patchSize: 4, width: 64, depth: 4, heads: 2 });
registerVit('vit_tiny_patch4_28', 28, 'ViT 96-dim x 4 blocks, 3 heads, patch 4 (quick CPU)', { patchSize: 4, width: 96, depth: 4, heads: 3 });
registerVit('vit_fmnist', 28, 'ViT 192-dim x 6 blocks, 3 heads, patch 4 (fmnist-vit preset)', { patchSize: 4, width: 192, depth: 6, heads: 3 });
registerVit('vit_small_patch4_32', 32, 'ViT 192-dim x 6 blocks, 3 heads, patch 4 (CIFAR)', { patchSize: 4, width: 192, depth: 6, heads: 3 });
// The standard ImageNet models (224 px).
registerVit('vit_tiny_patch16_224', 224, 'ViT-Ti/16', { patchSize: 16, width: 192, depth: 12, heads: 3 });
registerVit('vit_small_patch16_224', 224, 'ViT-S/16', { patchSize: 16, width: 384, depth: 12, heads: 6 });
registerVit('vit_base_patch16_224', 224, 'ViT-B/16', { patchSize: 16, width: 768, depth: 12, heads: 12 });
// CLIP image towers as timm names them (vit_base_patch16_clip_224.openai / .laion2b, ...; FT-CLIP
// fine-tunes them): norm_pre before the blocks, no patch-embedding bias, LayerNorm eps 1e-5; the
// quickgelu variant is the activation OpenAI's weights were trained with.
registerVit('vit_base_patch16_clip_224', 224, 'CLIP ViT-B/16 image tower (timm names: norm_pre, eps 1e-5, GELU; LAION / open_clip weights)',
  { patchSize: 16, width: 768, depth: 12, heads: 12, preNorm: true, normEps: 1e-5 });
registerVit('vit_base_patch16_clip_quickgelu_224', 224, 'CLIP ViT-B/16 image tower with QuickGELU (OpenAI weights, FT-CLIP)',
  { patchSize: 16, width: 768, depth: 12, heads: 12, preNorm: true, normEps: 1e-5, act: 'quick_gelu' });
