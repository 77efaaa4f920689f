// CLIP (Radford et al. 2021) with OpenAI's / open_clip's text tower names and init: token_embedding,
// positional_embedding, transformer.resblocks.N (ln_1, attn.in_proj_weight/in_proj_bias/out_proj,
// ln_2, mlp.c_fc/c_proj; pre-LN, causal attention mask), ln_final, text_projection (the features at
// the EOT token, taken as the position of the highest id as OpenAI's, or at given positions), and a
// learned logit_scale (log(1/0.07) at init). The image tower is our timm-named VisionTransformer
// from the image registry, built with numClasses = the embedding dim, so its head is the linear
// projection into the joint space (as open_clip's timm-backed image towers, whose
// head.proj follows the pooled trunk; here the projection keeps its bias and its name is head).
// Under `visual.` the names are timm's, not OpenAI's (no ln_pre, no class_embedding).
//
// CLIP takes images and token ids, so it keeps its own small registry here (clipModelNames /
// createClip), as bert.ts does, instead of the image registry that the trainer and the CLI read.
import { full, noGrad, type Tensor, tensor, tidy, zeros } from '../tensor/tensor.js';
import { Embedding, LayerNorm, Linear, Module, ModuleList, Parameter } from '../nn/index.js';
import * as F from '../nn/functional.js';
import { constant_, normal_ } from '../nn/init.js';
import { type Classifier, type ForwardOptions, isMaskable } from './classifier.js';
import { createModel, describeModel } from './factory.js';

/** The text tower: open_clip's TextTransformer settings (CLIPTextCfg). */
export interface ClipTextConfig {
  /** Token ids run from 0 to vocabSize - 1; the EOT id is the highest id a caption holds. */
  vocabSize: number;
  /** The most tokens per caption (positional_embedding rows; OpenAI: 77). */
  contextLength: number;
  width: number;
  heads: number;
  layers: number;
  mlpRatio: number;
  /**
   * OpenAI's QuickGELU x * sigmoid(1.702 x) (their released weights use it) instead of the exact
   * GELU open_clip trains new models with. Default false.
   */
  quickGelu: boolean;
}

/** The image tower: a named model of the image registry that masks its own tokens (Maskable). */
export interface ClipVisionConfig {
  /** A name in the image registry (src/models/registry.ts), e.g. 'vit_micro'. */
  model: string;
  imageSize: number;
  inChannels: number;
  dropPathRate: number;
}

export interface ClipConfig {
  /** The joint embedding width both towers project into. */
  embedDim: number;
  vision: ClipVisionConfig;
  text: ClipTextConfig;
  /** logit_scale at init: log(1 / 0.07) in CLIP and open_clip. */
  initLogitScale: number;
}

/** open_clip's clamp of logit_scale (its train loop, after every step): exp(scale) <= 100. */
export const MAX_LOGIT_SCALE = Math.log(100);

/** nn.MultiheadAttention's parameters (in_proj_weight, in_proj_bias, out_proj) with an additive mask. */
export class ClipAttention extends Module {
  readonly inProjWeight: Parameter;
  readonly inProjBias: Parameter;
  readonly outProj: Linear;
  readonly headDim: number;
  constructor(readonly width: number, readonly heads: number) {
    super();
    if (width % heads) throw new Error(`CLIP: text width ${width} is not divisible by ${heads} heads`);
    this.headDim = width / heads;
    // Values are set by initClipText; nn.MultiheadAttention starts its biases at zero.
    this.inProjWeight = this.registerParameter('in_proj_weight', tidy(() => new Parameter(zeros([3 * width, width]))));
    this.inProjBias = this.registerParameter('in_proj_bias', tidy(() => new Parameter(zeros([3 * width]))));
    this.outProj = this.registerModule('out_proj', new Linear(width, width));
  }
  /** x [B, L, W]; mask [L, L] added to the scores (-inf where a query may not look). */
  forward(x: Tensor, mask: Tensor | null): Tensor {
    return tidy(() => {
      const [batch, length, width] = x.shape;
      // q, k, v in in_proj_weight's row order, as nn.MultiheadAttention splits it.
      const qkv = F.linear(x, this.inProjWeight, this.inProjBias).reshape(batch, length, 3, this.heads, this.headDim).permute(2, 0, 3, 1, 4);
      const [q, k, v] = qkv.unbind(0);
      let scores = q.mul(this.headDim ** -0.5).matmul(k.transpose(-2, -1));
      if (mask) scores = scores.add(mask);
      const mixed = scores.softmax(-1).matmul(v).transpose(1, 2).reshape(batch, length, width);
      return this.outProj.forward(mixed);
    });
  }
}

/** open_clip's Mlp of a ResidualAttentionBlock: c_fc, GELU (or QuickGELU), c_proj. */
export class ClipMlp extends Module {
  readonly cFc: Linear;
  readonly cProj: Linear;
  constructor(width: number, hidden: number, readonly quickGelu: boolean) {
    super();
    this.cFc = this.registerModule('c_fc', new Linear(width, hidden));
    this.cProj = this.registerModule('c_proj', new Linear(hidden, width));
  }
  forward(x: Tensor): Tensor {
    return tidy(() => {
      const hidden = this.cFc.forward(x);
      const activated = this.quickGelu ? hidden.mul(hidden.mul(1.702).sigmoid()) : hidden.gelu('none');
      return this.cProj.forward(activated);
    });
  }
}

/** open_clip's ResidualAttentionBlock: pre-LN attention and MLP with residuals (LayerNorm eps 1e-5). */
export class ClipResidualAttentionBlock extends Module {
  readonly ln1: LayerNorm;
  readonly attn: ClipAttention;
  readonly ln2: LayerNorm;
  readonly mlp: ClipMlp;
  constructor(config: ClipTextConfig) {
    super();
    this.ln1 = this.registerModule('ln_1', new LayerNorm(config.width));
    this.attn = this.registerModule('attn', new ClipAttention(config.width, config.heads));
    this.ln2 = this.registerModule('ln_2', new LayerNorm(config.width));
    this.mlp = this.registerModule('mlp', new ClipMlp(config.width, Math.round(config.width * config.mlpRatio), config.quickGelu));
  }
  forward(x: Tensor, mask: Tensor | null): Tensor {
    return tidy(() => {
      const attended = x.add(this.attn.forward(this.ln1.forward(x), mask));
      return attended.add(this.mlp.forward(this.ln2.forward(attended)));
    });
  }
}

/** open_clip's Transformer: the resblocks in order. */
export class ClipTransformer extends Module {
  readonly resblocks: ModuleList<ClipResidualAttentionBlock>;
  constructor(config: ClipTextConfig) {
    super();
    this.resblocks = this.registerModule('resblocks', new ModuleList(Array.from({ length: config.layers }, () => new ClipResidualAttentionBlock(config))));
  }
  forward(x: Tensor, mask: Tensor | null): Tensor {
    return tidy(() => {
      let y = x;
      for (const block of this.resblocks) y = block.forward(y, mask);
      return y;
    });
  }
}

/** What encodeText takes besides the ids. */
export interface TextOptions {
  /**
   * [B] (int64) positions of each caption's EOT token; absent: ids.argmax(-1), the position of the
   * highest id, as OpenAI's (their EOT is the last id of the vocabulary).
   */
  eotIndices?: Tensor;
  /** L2-normalise the embeddings (open_clip's normalize=True). Default false. */
  normalize?: boolean;
}

/** What CLIP.forward returns (open_clip's output_dict): unit embeddings and exp(logit_scale). */
export interface ClipOutput {
  imageFeatures: Tensor;
  textFeatures: Tensor;
  /** exp(min(logit_scale, ln 100)), a 0-dim tensor that carries logit_scale's gradient. */
  logitScale: Tensor;
}

/** F.normalize(x, dim=-1): x / max(||x||, 1e-12). */
export function l2Normalize(x: Tensor): Tensor {
  return tidy(() => x.div(x.norm(2, -1, true).clamp(1e-12)));
}

export class Clip extends Module {
  /** The image tower: an image-registry model whose head projects to embedDim. */
  readonly visual: Classifier;
  readonly tokenEmbedding: Embedding;
  readonly positionalEmbedding: Parameter;
  readonly transformer: ClipTransformer;
  readonly lnFinal: LayerNorm;
  readonly textProjection: Parameter;
  readonly logitScale: Parameter;
  /** The causal mask, context x context: 0 on and below the diagonal, -inf above (non-persistent, as open_clip's attn_mask). */
  readonly attnMask: Tensor;

  constructor(readonly config: ClipConfig) {
    super();
    const { text, vision, embedDim } = config;
    for (const [name, value] of [['vocabSize', text.vocabSize], ['contextLength', text.contextLength], ['width', text.width], ['heads', text.heads], ['layers', text.layers], ['embedDim', embedDim]] as const) {
      if (!(Number.isInteger(value) && value > 0)) throw new RangeError(`CLIP: ${name} must be a positive integer, got ${value}`);
    }
    this.visual = this.registerModule('visual', createModel(vision.model, {
      imageSize: vision.imageSize, inChannels: vision.inChannels, numClasses: embedDim, dropPathRate: vision.dropPathRate,
    }));
    if (!isMaskable(this.visual)) throw new Error(`CLIP: image tower '${vision.model}' does not mask its own input (Maskable), which MaskSub for CLIP needs`);
    this.tokenEmbedding = this.registerModule('token_embedding', new Embedding(text.vocabSize, text.width));
    this.positionalEmbedding = this.registerParameter('positional_embedding', tidy(() => new Parameter(zeros([text.contextLength, text.width]))));
    this.transformer = this.registerModule('transformer', new ClipTransformer(text));
    this.lnFinal = this.registerModule('ln_final', new LayerNorm(text.width));
    this.textProjection = this.registerParameter('text_projection', tidy(() => new Parameter(zeros([text.width, embedDim]))));
    this.logitScale = this.registerParameter('logit_scale', tidy(() => new Parameter(full([], config.initLogitScale))));
    this.attnMask = this.registerBuffer('attn_mask', tidy(() => full([text.contextLength, text.contextLength], -Infinity).triu(1)), false);
    this.initText();
  }

  /** open_clip's TextTransformer.init_parameters (OpenAI's CLIP.initialize_parameters). */
  private initText(): void {
    const { width, layers } = this.config.text;
    const attnStd = width ** -0.5;
    const projStd = width ** -0.5 * (2 * layers) ** -0.5;
    const fcStd = (2 * width) ** -0.5;
    noGrad(() => tidy(() => {
      normal_(this.tokenEmbedding.weight, 0, 0.02);
      normal_(this.positionalEmbedding, 0, 0.01);
      for (const block of this.transformer.resblocks) {
        normal_(block.attn.inProjWeight, 0, attnStd);
        constant_(block.attn.inProjBias, 0);
        normal_(block.attn.outProj.weight, 0, projStd);
        if (block.attn.outProj.bias) constant_(block.attn.outProj.bias, 0);
        // The MLP biases keep nn.Linear's default init, as open_clip leaves them.
        normal_(block.mlp.cFc.weight, 0, fcStd);
        normal_(block.mlp.cProj.weight, 0, projStd);
      }
      normal_(this.textProjection, 0, width ** -0.5);
    }));
  }

  /** open_clip excludes 1-D (and 0-D) parameters, norms, biases and logit_scale from weight decay. */
  noWeightDecay(): string[] {
    return ['logit_scale'];
  }

  /** The image tower's output (embedDim wide); options.maskRatio drops tokens there (the sub-model). */
  encodeImage(images: Tensor, options: ForwardOptions = {}, normalize = false): Tensor {
    return tidy(() => {
      const features = this.visual.forward(images, options);
      return normalize ? l2Normalize(features) : features;
    });
  }

  /** Every position's text features after ln_final, [B, L, width] (the causal mask test reads them). */
  textTokens(ids: Tensor): Tensor {
    const shape = ids.shape;
    if (shape.length !== 2 || !['int64', 'int32'].includes(ids.dtype)) {
      throw new Error(`CLIP expects token ids [B, L] (int64), got [${shape.join(', ')}] (${ids.dtype})`);
    }
    if (shape[1] > this.config.text.contextLength) {
      throw new Error(`CLIP: ${shape[1]} tokens exceed the context length ${this.config.text.contextLength}`);
    }
    return tidy(() => {
      const length = shape[1];
      let x = this.tokenEmbedding.forward(ids).add(this.positionalEmbedding.slice(0, 0, length));
      // A batch shorter than the context uses the top-left corner of the mask, as open_clip.
      const mask = this.attnMask.slice(0, 0, length).slice(1, 0, length).to({ dtype: x.dtype });
      x = this.transformer.forward(x, mask);
      return this.lnFinal.forward(x);
    });
  }

  /** ids [B, L] -> text embeddings [B, embedDim]: the EOT token's features times text_projection. */
  encodeText(ids: Tensor, options: TextOptions = {}): Tensor {
    return tidy(() => {
      const tokens = this.textTokens(ids);
      const [batch, , width] = tokens.shape;
      const eot = options.eotIndices ?? ids.argmax(-1);
      if (eot.ndim !== 1 || eot.size(0) !== batch) throw new Error(`CLIP: eotIndices must be [${batch}], got [${eot.shape.join(', ')}]`);
      const pooled = tokens.gather(1, eot.to({ dtype: 'int64' }).reshape(batch, 1, 1).expand(batch, 1, width)).squeeze(1);
      const features = pooled.matmul(this.textProjection);
      return options.normalize ? l2Normalize(features) : features;
    });
  }

  /** exp(logit_scale), with logit_scale clamped at ln 100 where it is used (open_clip clamps the parameter after each step: {@link clampLogitScale}). */
  scale(): Tensor {
    return tidy(() => this.logitScale.clamp(null, MAX_LOGIT_SCALE).exp());
  }

  /** open_clip's train-loop clamp of the parameter itself, into [0, ln 100]; call it after each optimizer step. */
  clampLogitScale(): void {
    noGrad(() => this.logitScale.clamp_(0, MAX_LOGIT_SCALE));
  }

  /** Both towers, normalised embeddings and the scale (open_clip's CLIP.forward). */
  forward(images: Tensor, ids: Tensor, options: { image?: ForwardOptions; text?: Omit<TextOptions, 'normalize'> } = {}): ClipOutput {
    return tidy(() => ({
      imageFeatures: this.encodeImage(images, options.image ?? {}, true),
      textFeatures: this.encodeText(ids, { ...options.text, normalize: true }),
      logitScale: this.scale(),
    }));
  }
}

/**
 * Token id lists to a [B, contextLength] int64 batch, 0-padded; a list longer than the context is
 * cut and its last kept id replaced by eotId, as open_clip's tokenize does, so every row keeps its
 * EOT (the highest id) for the pooling.
 */
export function packTokenIds(sequences: number[][], contextLength: number, eotId: number): Tensor {
  const rows = sequences.map((sequence) => {
    const row = new Array<number>(contextLength).fill(0);
    const cut = sequence.length > contextLength ? [...sequence.slice(0, contextLength - 1), eotId] : sequence;
    cut.forEach((id, index) => { row[index] = id; });
    return row;
  });
  return tensor(rows.flat(), { dtype: 'int64', shape: [sequences.length, contextLength] });
}

// ---- named configs (small ones for a CPU, and open_clip's ViT-B-16 shape) ----

/** What a caller may change of a named CLIP for its data and tokenizer. */
export interface ClipOverrides {
  vocabSize?: number;
  contextLength?: number;
  imageSize?: number;
  inChannels?: number;
  embedDim?: number;
  quickGelu?: boolean;
  /** The image tower's drop-path rate. Default 0. */
  dropPathRate?: number;
}

export interface ClipModelInfo {
  description: string;
  embedDim: number;
  vision: Pick<ClipVisionConfig, 'model' | 'imageSize'>;
  text: Omit<ClipTextConfig, 'quickGelu'>;
}

const CLIP_MODELS = new Map<string, ClipModelInfo>();

function registerClip(name: string, info: ClipModelInfo): void {
  if (CLIP_MODELS.has(name)) throw new Error(`CLIP model '${name}' is registered twice`);
  // The image tower must be a registered image model (throws with the known names otherwise).
  describeModel(info.vision.model);
  CLIP_MODELS.set(name, info);
}

registerClip('clip_micro', {
  description: 'CLIP for tests: vit_micro image tower at 28 px, text 64 wide x 2 layers, 2 heads, context 16, vocab 1000, embedding 64',
  embedDim: 64,
  vision: { model: 'vit_micro', imageSize: 28 },
  text: { vocabSize: 1000, contextLength: 16, width: 64, heads: 2, layers: 2, mlpRatio: 4 },
});
// Emoji captions ("name: keyword, ...") run longer than class templates: with the WordPiece
// vocabulary trained on them, test captions are 18 tokens at the median and 32 at the 90th
// percentile (66 of 683 longer, cut), so this one reads 32 tokens; an emoji epoch (2,972 pairs)
// takes about 30 s on one loaded core.
registerClip('clip_micro_ctx32', {
  description: 'CLIP on a CPU (emoji-clip-quick): vit_micro image tower at 28 px, text 64 wide x 2 layers, 2 heads, context 32, vocab 8192, embedding 64',
  embedDim: 64,
  vision: { model: 'vit_micro', imageSize: 28 },
  text: { vocabSize: 8192, contextLength: 32, width: 64, heads: 2, layers: 2, mlpRatio: 4 },
});
registerClip('clip_mini_patch4_28', {
  description: 'CLIP on a CPU: vit_mini_patch4_28 image tower, text 128 wide x 4 layers, 2 heads, context 32, vocab 8192, embedding 128',
  embedDim: 128,
  vision: { model: 'vit_mini_patch4_28', imageSize: 28 },
  text: { vocabSize: 8192, contextLength: 32, width: 128, heads: 2, layers: 4, mlpRatio: 4 },
});
registerClip('clip_vit_base_patch16_224', {
  description: "open_clip's ViT-B-16 shape: vit_base_patch16_224 image tower, text 512 wide x 12 layers, 8 heads, context 77, vocab 49408, embedding 512",
  embedDim: 512,
  vision: { model: 'vit_base_patch16_224', imageSize: 224 },
  text: { vocabSize: 49408, contextLength: 77, width: 512, heads: 8, layers: 12, mlpRatio: 4 },
});

export function clipModelNames(): string[] {
  return [...CLIP_MODELS.keys()];
}

/** Whether `name` is a registered CLIP (the trainer and the settings tell CLIP from classifiers by it). */
export function isClipModel(name: string): boolean {
  return CLIP_MODELS.has(name);
}

export function describeClipModel(name: string): ClipModelInfo {
  const info = CLIP_MODELS.get(name);
  if (!info) throw new Error(`unknown CLIP model '${name}'; known: ${clipModelNames().join(', ')}`);
  return { description: info.description, embedDim: info.embedDim, vision: { ...info.vision }, text: { ...info.text } };
}

/** The full config of a named CLIP with the overrides applied. */
export function clipConfig(name: string, overrides: ClipOverrides = {}): ClipConfig {
  const info = describeClipModel(name);
  return {
    embedDim: overrides.embedDim ?? info.embedDim,
    vision: {
      model: info.vision.model,
      imageSize: overrides.imageSize ?? info.vision.imageSize,
      inChannels: overrides.inChannels ?? 3,
      dropPathRate: overrides.dropPathRate ?? 0,
    },
    text: {
      ...info.text,
      vocabSize: overrides.vocabSize ?? info.text.vocabSize,
      contextLength: overrides.contextLength ?? info.text.contextLength,
      quickGelu: overrides.quickGelu ?? false,
    },
    initLogitScale: Math.log(1 / 0.07),
  };
}

/** A named CLIP (clip_micro, ...). */
export function createClip(name: string, overrides: ClipOverrides = {}): Clip {
  return new Clip(clipConfig(name, overrides));
}

