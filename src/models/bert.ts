// BERT encoder and sequence classifier with Hugging Face's BertModel / BertForSequenceClassification
// parameter names (post-LN blocks, erf GELU, additive padding mask), so a state dict converted
// from an HF checkpoint loads as is. bertModelNames / createBert build the plain modules for the
// library; the same names are registered in the model registry (registry.ts) as BertTextClassifier,
// the Classifier the trainer, eval and compare run (`--model bert_mini`).
//
// For masksub.step the plain module's forward takes one tensor of ids and the step masks the ids
// from outside (masking.ts, with keepIds for [PAD]/[CLS]/[SEP]); the attention mask is read from
// the ids ([PAD] = padding) when none is given, so the masked copy pads alike. BertTextClassifier
// takes the trainer's packed text batch [B, 3, L] (ids, token types, attention mask) and masks its
// own ids (Maskable 'mask-tokens', the same randomIdMask), so the probe's fixed generator and the
// data-parallel shard's noise reach the mask as they reach a ViT's.
import { arange, type Device, type DType, type Generator, noGrad, onesLike, type Tensor, tidy, zeros } from '../tensor/tensor.js';
import { Dropout, DropPath, LayerNorm, Linear, Module, ModuleList, Parameter, sampleNoise } from '../nn/index.js';
import * as F from '../nn/functional.js';
import { constant_, normal_ } from '../nn/init.js';
import { checkRatio, Classifier, type ClassifierInfo, type ForwardOptions, type MaskingKind } from './classifier.js';
import { type ModelOverrides, registerModel } from './registry.js';

export interface BertConfig {
  vocabSize: number;
  hiddenSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  intermediateSize: number;
  /** Dropout after the embeddings, the attention output projection and the feed-forward output (HF hidden_dropout_prob). */
  hiddenDropoutProb: number;
  /** Dropout on the attention probabilities (HF attention_probs_dropout_prob). */
  attentionProbsDropoutProb: number;
  maxPositionEmbeddings: number;
  typeVocabSize: number;
  layerNormEps: number;
  /**
   * The [PAD] id: its embedding row starts at zero and gets no gradient (HF's padding_idx), and a
   * forward without an attention mask treats positions holding it as padding. null: no padding id
   * (a forward without a mask attends to every position, as HF's default).
   */
  padTokenId: number | null;
  numLabels: number;
  /** Dropout before the classifier; null takes hiddenDropoutProb (HF classifier_dropout). */
  classifierDropout: number | null;
  /**
   * Drop-path (stochastic depth) on both residual branches of every layer, before the post-LN
   * residual add. Not in HF's BERT (default 0: identity, no parameters, the same state dict): it is
   * what PathSub's sub-model raises, as on a ViT.
   */
  dropPathRate?: number;
}

/** What a BERT forward takes besides the ids, all [B, L] like them. */
export interface BertInputs {
  /** 1 (or true) on real tokens, 0 on padding; absent: read from the ids (see BertConfig.padTokenId). */
  attentionMask?: Tensor;
  /** Segment ids, 0 for sentence a, 1 for sentence b; absent: all 0. */
  tokenTypeIds?: Tensor;
}

/** The most negative finite value of each floating dtype (torch.finfo(dtype).min, what HF adds on masked keys). */
const MOST_NEGATIVE: Partial<Record<DType, number>> = {
  float32: -3.4028234663852886e38,
  float64: -1.7976931348623157e308,
  float16: -65504,
  bfloat16: -3.3895313892515355e38,
};

/** An embedding table with HF's padding_idx: that row is not updated by gradients. */
export class PaddedEmbedding extends Module {
  readonly weight: Parameter;
  constructor(count: number, width: number, readonly paddingIndex: number | null) {
    super();
    this.weight = this.registerParameter('weight', tidy(() => new Parameter(zeros([count, width]))));
  }
  forward(indices: Tensor): Tensor {
    return F.embedding(this.weight, indices, this.paddingIndex ?? undefined);
  }
}

export class BertEmbeddings extends Module {
  readonly wordEmbeddings: PaddedEmbedding;
  readonly positionEmbeddings: PaddedEmbedding;
  readonly tokenTypeEmbeddings: PaddedEmbedding;
  readonly layerNorm: LayerNorm;
  readonly dropout: Dropout;
  constructor(config: BertConfig) {
    super();
    this.wordEmbeddings = this.registerModule('word_embeddings', new PaddedEmbedding(config.vocabSize, config.hiddenSize, config.padTokenId));
    this.positionEmbeddings = this.registerModule('position_embeddings', new PaddedEmbedding(config.maxPositionEmbeddings, config.hiddenSize, null));
    this.tokenTypeEmbeddings = this.registerModule('token_type_embeddings', new PaddedEmbedding(config.typeVocabSize, config.hiddenSize, null));
    this.layerNorm = this.registerModule('LayerNorm', new LayerNorm(config.hiddenSize, config.layerNormEps));
    // Fixed: DropSub varies the dropouts inside the blocks only (as on a ViT), not the embeddings'.
    this.dropout = this.registerModule('dropout', new Dropout(config.hiddenDropoutProb, { fixedRate: true }));
  }
  forward(ids: Tensor, tokenTypeIds: Tensor): Tensor {
    return tidy(() => {
      const positions = arange(ids.size(1), undefined, 1, { dtype: 'int64', device: ids.device as Device });
      const summed = this.wordEmbeddings.forward(ids)
        .add(this.tokenTypeEmbeddings.forward(tokenTypeIds))
        .add(this.positionEmbeddings.forward(positions).unsqueeze(0));
      return this.dropout.forward(this.layerNorm.forward(summed));
    });
  }
}

export class BertSelfAttention extends Module {
  readonly query: Linear;
  readonly key: Linear;
  readonly value: Linear;
  readonly dropout: Dropout;
  readonly headDim: number;
  constructor(readonly config: BertConfig) {
    super();
    this.headDim = config.hiddenSize / config.numAttentionHeads;
    this.query = this.registerModule('query', new Linear(config.hiddenSize, config.hiddenSize));
    this.key = this.registerModule('key', new Linear(config.hiddenSize, config.hiddenSize));
    this.value = this.registerModule('value', new Linear(config.hiddenSize, config.hiddenSize));
    // Fixed, as timm's attn_drop: the official DropSub leaves dropout on attention probabilities alone.
    this.dropout = this.registerModule('dropout', new Dropout(config.attentionProbsDropoutProb, { fixedRate: true }));
  }
  /** hidden [B, L, H]; additiveMask [B, 1, 1, L]: 0 on real keys, the dtype's most negative value on padding. */
  forward(hidden: Tensor, additiveMask: Tensor): Tensor {
    return tidy(() => {
      const [batch, length, width] = hidden.shape;
      const heads = (projection: Linear): Tensor =>
        projection.forward(hidden).reshape(batch, length, this.config.numAttentionHeads, this.headDim).transpose(1, 2);
      const scores = heads(this.query).matmul(heads(this.key).transpose(-1, -2)).div(Math.sqrt(this.headDim)).add(additiveMask);
      const probabilities = this.dropout.forward(scores.softmax(-1));
      return probabilities.matmul(heads(this.value)).transpose(1, 2).reshape(batch, length, width);
    });
  }
}

/** A dense layer, dropout and the residual's post-LN (HF's BertSelfOutput and BertOutput). */
export class BertResidualOutput extends Module {
  readonly dense: Linear;
  readonly layerNorm: LayerNorm;
  readonly dropout: Dropout;
  readonly dropPath: DropPath;
  constructor(inFeatures: number, config: BertConfig) {
    super();
    this.dense = this.registerModule('dense', new Linear(inFeatures, config.hiddenSize));
    this.layerNorm = this.registerModule('LayerNorm', new LayerNorm(config.hiddenSize, config.layerNormEps));
    // Not fixed: these are the dropouts after the attention projection and the MLP that DropSub raises.
    this.dropout = this.registerModule('dropout', new Dropout(config.hiddenDropoutProb));
    this.dropPath = this.registerModule('drop_path', new DropPath(config.dropPathRate ?? 0));
  }
  forward(hidden: Tensor, residual: Tensor): Tensor {
    return tidy(() => this.layerNorm.forward(this.dropPath.forward(this.dropout.forward(this.dense.forward(hidden))).add(residual)));
  }
}

export class BertAttention extends Module {
  readonly self: BertSelfAttention;
  readonly output: BertResidualOutput;
  constructor(config: BertConfig) {
    super();
    this.self = this.registerModule('self', new BertSelfAttention(config));
    this.output = this.registerModule('output', new BertResidualOutput(config.hiddenSize, config));
  }
  forward(hidden: Tensor, additiveMask: Tensor): Tensor {
    return tidy(() => this.output.forward(this.self.forward(hidden, additiveMask), hidden));
  }
}

export class BertIntermediate extends Module {
  readonly dense: Linear;
  constructor(config: BertConfig) {
    super();
    this.dense = this.registerModule('dense', new Linear(config.hiddenSize, config.intermediateSize));
  }
  forward(hidden: Tensor): Tensor {
    // HF's 'gelu' is the exact (erf) GELU.
    return tidy(() => this.dense.forward(hidden).gelu('none'));
  }
}

export class BertLayer extends Module {
  readonly attention: BertAttention;
  readonly intermediate: BertIntermediate;
  readonly output: BertResidualOutput;
  constructor(config: BertConfig) {
    super();
    this.attention = this.registerModule('attention', new BertAttention(config));
    this.intermediate = this.registerModule('intermediate', new BertIntermediate(config));
    this.output = this.registerModule('output', new BertResidualOutput(config.intermediateSize, config));
  }
  forward(hidden: Tensor, additiveMask: Tensor): Tensor {
    return tidy(() => {
      const attended = this.attention.forward(hidden, additiveMask);
      return this.output.forward(this.intermediate.forward(attended), attended);
    });
  }
}

export class BertEncoder extends Module {
  readonly layer: ModuleList<BertLayer>;
  constructor(config: BertConfig) {
    super();
    this.layer = this.registerModule('layer', new ModuleList(Array.from({ length: config.numHiddenLayers }, () => new BertLayer(config))));
  }
  forward(hidden: Tensor, additiveMask: Tensor): Tensor {
    return tidy(() => {
      let x = hidden;
      for (const layer of this.layer) x = layer.forward(x, additiveMask);
      return x;
    });
  }
}

export class BertPooler extends Module {
  readonly dense: Linear;
  constructor(config: BertConfig) {
    super();
    this.dense = this.registerModule('dense', new Linear(config.hiddenSize, config.hiddenSize));
  }
  /** tanh(dense(the first token's hidden state)): the [CLS] summary the classifier reads. */
  forward(hidden: Tensor): Tensor {
    return tidy(() => this.dense.forward(hidden.select(1, 0)).tanh());
  }
}

/** What BertModel returns: every token's last hidden state and the pooled [CLS]. */
export interface BertOutput {
  lastHiddenState: Tensor;
  pooled: Tensor;
}

function checkConfig(config: BertConfig): void {
  if (config.hiddenSize % config.numAttentionHeads) {
    throw new Error(`BERT: hidden size ${config.hiddenSize} is not divisible by ${config.numAttentionHeads} attention heads`);
  }
  for (const [name, rate] of [['hiddenDropoutProb', config.hiddenDropoutProb], ['attentionProbsDropoutProb', config.attentionProbsDropoutProb], ['classifierDropout', config.classifierDropout ?? 0]] as const) {
    if (!(rate >= 0 && rate < 1)) throw new RangeError(`BERT: ${name} must be in [0, 1), got ${rate}`);
  }
  if (!((config.dropPathRate ?? 0) >= 0 && (config.dropPathRate ?? 0) < 1)) throw new RangeError(`BERT: dropPathRate must be in [0, 1), got ${config.dropPathRate}`);
  if (config.padTokenId !== null && !(Number.isInteger(config.padTokenId) && config.padTokenId >= 0 && config.padTokenId < config.vocabSize)) {
    throw new RangeError(`BERT: padTokenId must be an id in [0, ${config.vocabSize}) or null, got ${config.padTokenId}`);
  }
}

/** HF's BertPreTrainedModel._init_weights: N(0, 0.02) for dense and embedding weights, zero biases and [PAD] row, unit LayerNorms (their own init). */
function initBertWeights(root: Module): void {
  noGrad(() => tidy(() => {
    for (const module of root.modules()) {
      if (module instanceof Linear) {
        normal_(module.weight, 0, 0.02);
        if (module.bias) constant_(module.bias, 0);
      } else if (module instanceof PaddedEmbedding) {
        normal_(module.weight, 0, 0.02);
        if (module.paddingIndex !== null) module.weight.select(0, module.paddingIndex).zero_();
      }
    }
  }));
}

/** HF's BertModel (embeddings, encoder, pooler). */
export class BertModel extends Module {
  readonly embeddings: BertEmbeddings;
  readonly encoder: BertEncoder;
  readonly pooler: BertPooler;
  constructor(readonly config: BertConfig) {
    super();
    checkConfig(config);
    this.embeddings = this.registerModule('embeddings', new BertEmbeddings(config));
    this.encoder = this.registerModule('encoder', new BertEncoder(config));
    this.pooler = this.registerModule('pooler', new BertPooler(config));
    initBertWeights(this);
  }

  /** The attention mask a forward uses: the given one, else ids != [PAD], else all real. */
  attentionMaskOf(ids: Tensor, inputs: BertInputs = {}): Tensor {
    return tidy(() => {
      if (inputs.attentionMask) return inputs.attentionMask.ne(0);
      if (this.config.padTokenId !== null) return ids.ne(this.config.padTokenId);
      return onesLike(ids).ne(0);
    });
  }

  /** ids [B, L] (int64) -> last hidden states [B, L, H] and pooled [CLS] [B, H]. */
  forwardAll(ids: Tensor, inputs: BertInputs = {}): BertOutput {
    const shape = ids.shape;
    if (shape.length !== 2 || !['int64', 'int32'].includes(ids.dtype)) {
      throw new Error(`BERT expects token ids [B, L] (int64), got [${shape.join(', ')}] (${ids.dtype})`);
    }
    if (shape[1] > this.config.maxPositionEmbeddings) {
      throw new Error(`BERT: ${shape[1]} tokens exceed the ${this.config.maxPositionEmbeddings} position embeddings`);
    }
    for (const [name, value] of [['attentionMask', inputs.attentionMask], ['tokenTypeIds', inputs.tokenTypeIds]] as const) {
      if (value && (value.ndim !== 2 || value.size(0) !== shape[0] || value.size(1) !== shape[1])) {
        throw new Error(`BERT: ${name} must be [${shape.join(', ')}] like the ids, got [${value.shape.join(', ')}]`);
      }
    }
    return tidy(() => {
      const types = inputs.tokenTypeIds ?? zeros(shape, { dtype: 'int64', device: ids.device as Device });
      const embedded = this.embeddings.forward(ids, types);
      const lowest = MOST_NEGATIVE[embedded.dtype];
      if (lowest === undefined) throw new Error(`BERT: hidden states of dtype ${embedded.dtype} are not floating point`);
      // HF's extended attention mask: (1 - mask) * finfo.min, broadcast over heads and queries.
      const additive = this.attentionMaskOf(ids, inputs).logicalNot().to({ dtype: embedded.dtype }).mul(lowest).reshape(shape[0], 1, 1, shape[1]);
      const lastHiddenState = this.encoder.forward(embedded, additive);
      return { lastHiddenState, pooled: this.pooler.forward(lastHiddenState) };
    });
  }
}

/** HF's BertForSequenceClassification: BertModel, dropout on the pooled [CLS], a linear classifier. */
export class BertForSequenceClassification extends Module {
  readonly bert: BertModel;
  readonly dropout: Dropout;
  readonly classifier: Linear;
  constructor(readonly config: BertConfig) {
    super();
    this.bert = this.registerModule('bert', new BertModel(config));
    // Fixed: the head's dropout is not one DropSub raises (as a ViT's head has none).
    this.dropout = this.registerModule('dropout', new Dropout(config.classifierDropout ?? config.hiddenDropoutProb, { fixedRate: true }));
    this.classifier = this.registerModule('classifier', new Linear(config.hiddenSize, config.numLabels));
    initBertWeights(this.classifier);
  }

  /** Parameter names kept out of weight decay besides 1-D ones (biases and LayerNorms are 1-D already). */
  noWeightDecay(): string[] {
    return [];
  }

  /** ids [B, L] (int64) -> logits [B, numLabels]. One tensor of ids suffices: padding is read from [PAD]. */
  forward(ids: Tensor, inputs: BertInputs = {}): Tensor {
    return tidy(() => this.classifier.forward(this.dropout.forward(this.bert.forwardAll(ids, inputs).pooled)));
  }
}

// ---- named configs: the compact BERTs of Turc et al. 2019 (Google's BERT-Tiny ... BERT-Base) ----

/** The shape of a named BERT; everything else comes from {@link BertOverrides} and BERT's defaults. */
export type BertShape = Pick<BertConfig, 'hiddenSize' | 'numHiddenLayers' | 'numAttentionHeads' | 'intermediateSize'>;

/** What a caller sets of a named BERT for its tokenizer, labels and recipe. */
export interface BertOverrides {
  /** The tokenizer's vocabulary size. Default 30522 (bert-base-uncased). */
  vocabSize?: number;
  numLabels?: number;
  maxPositionEmbeddings?: number;
  hiddenDropoutProb?: number;
  attentionProbsDropoutProb?: number;
  classifierDropout?: number | null;
  /** Default 0 ([PAD] in BERT's vocab.txt and in our trained tokenizers). */
  padTokenId?: number | null;
  /** Default 0 (none, as HF's BERT). */
  dropPathRate?: number;
}

export interface BertModelInfo {
  description: string;
  shape: BertShape;
}

const BERT_MODELS = new Map<string, BertModelInfo>();

function registerBert(name: string, description: string, shape: BertShape): void {
  if (BERT_MODELS.has(name)) throw new Error(`BERT model '${name}' is registered twice`);
  BERT_MODELS.set(name, { description, shape });
}

registerBert('bert_tiny', 'BERT-Tiny: 2 layers, 128 hidden, 2 heads, 512 intermediate', { numHiddenLayers: 2, hiddenSize: 128, numAttentionHeads: 2, intermediateSize: 512 });
registerBert('bert_mini', 'BERT-Mini: 4 layers, 256 hidden, 4 heads, 1024 intermediate', { numHiddenLayers: 4, hiddenSize: 256, numAttentionHeads: 4, intermediateSize: 1024 });
registerBert('bert_small', 'BERT-Small: 4 layers, 512 hidden, 8 heads, 2048 intermediate', { numHiddenLayers: 4, hiddenSize: 512, numAttentionHeads: 8, intermediateSize: 2048 });
registerBert('bert_medium', 'BERT-Medium: 8 layers, 512 hidden, 8 heads, 2048 intermediate', { numHiddenLayers: 8, hiddenSize: 512, numAttentionHeads: 8, intermediateSize: 2048 });
registerBert('bert_base', 'BERT-Base: 12 layers, 768 hidden, 12 heads, 3072 intermediate', { numHiddenLayers: 12, hiddenSize: 768, numAttentionHeads: 12, intermediateSize: 3072 });

export function bertModelNames(): string[] {
  return [...BERT_MODELS.keys()];
}

export function describeBertModel(name: string): BertModelInfo {
  const info = BERT_MODELS.get(name);
  if (!info) throw new Error(`unknown BERT model '${name}'; known: ${bertModelNames().join(', ')}`);
  return { description: info.description, shape: { ...info.shape } };
}

/** The full config of a named BERT with the overrides applied (HF BertConfig's defaults elsewhere). */
export function bertConfig(name: string, overrides: BertOverrides = {}): BertConfig {
  const { shape } = describeBertModel(name);
  return {
    ...shape,
    vocabSize: overrides.vocabSize ?? 30522,
    hiddenDropoutProb: overrides.hiddenDropoutProb ?? 0.1,
    attentionProbsDropoutProb: overrides.attentionProbsDropoutProb ?? 0.1,
    maxPositionEmbeddings: overrides.maxPositionEmbeddings ?? 512,
    typeVocabSize: 2,
    layerNormEps: 1e-12,
    padTokenId: overrides.padTokenId === undefined ? 0 : overrides.padTokenId,
    numLabels: overrides.numLabels ?? 2,
    classifierDropout: overrides.classifierDropout ?? null,
    dropPathRate: overrides.dropPathRate ?? 0,
  };
}

/** A named BERT sequence classifier (bert_tiny, bert_mini, ...). */
export function createBert(name: string, overrides: BertOverrides = {}): BertForSequenceClassification {
  return new BertForSequenceClassification(bertConfig(name, overrides));
}

// ---- token masking (the models layer's, as randomPatchZero is resnet.ts's; masking.ts re-exports it) ----

/**
 * Replaces m - int(m * (1 - r)) of the m = L - keepFirst positions of each sample's token ids [B, L]
 * (the one masking rule: keep int(m(1-r)), mask the rest), chosen uniformly
 * among positions keepFirst..L-1, by maskTokenId. The shape is unchanged. With keepIds, positions
 * holding those ids are never masked and m is counted per sample without them.
 */
export function randomIdMask(ids: Tensor, ratio: number, maskTokenId: number, options: { keepFirst?: number; keepIds?: readonly number[]; generator?: Generator } = {}): Tensor {
  if (options.keepIds?.length) return randomIdMaskKeeping(ids, ratio, maskTokenId, options.keepIds, options);
  return tidy(() => {
    const [batch, length] = ids.shape;
    const keepFirst = options.keepFirst ?? 0;
    const candidates = length - keepFirst;
    const masked = candidates - Math.trunc(candidates * (1 - ratio));
    const noise = sampleNoise([batch, candidates], ids.device, options.generator);
    // the rank of each position in a random order; the first `masked` ranks are masked
    let mask = noise.argsort(1).argsort(1).lt(masked);
    if (keepFirst > 0) mask = mask.pad([keepFirst, 0], 'constant', 0);
    return ids.maskedFill(mask, maskTokenId);
  });
}

/**
 * randomIdMask with ids that are never masked: per sample, the m positions at or after keepFirst
 * that hold none of keepIds are the candidates, and m - int(m * (1 - r)) of them, chosen
 * uniformly, are replaced by maskTokenId (the same rule as without keepIds, on a per-sample m, so
 * a short padded sentence loses the share of its own tokens that a long one does).
 */
function randomIdMaskKeeping(ids: Tensor, ratio: number, maskTokenId: number, keepIds: readonly number[], options: { keepFirst?: number; generator?: Generator }): Tensor {
  return tidy(() => {
    const [batch, length] = ids.shape;
    const keepFirst = options.keepFirst ?? 0;
    let candidate = arange(length, undefined, 1, { device: ids.device as Device }).ge(keepFirst).unsqueeze(0).expand(batch, length);
    for (const id of keepIds) candidate = candidate.logicalAnd(ids.ne(id));
    // float64, as JavaScript computes m * (1 - r) in the rule without keepIds (m >= 0: floor = trunc)
    const count = candidate.sum(1, false, 'float64');
    const masked = count.sub(count.mul(1 - ratio).floor());
    // Noise in [0, 1) on candidates and 2 elsewhere: the candidates take the first m ranks of the order.
    const noise = sampleNoise([batch, length], ids.device, options.generator).maskedFill(candidate.logicalNot(), 2);
    const mask = noise.argsort(1).argsort(1).lt(masked.unsqueeze(1)).logicalAnd(candidate);
    return ids.maskedFill(mask, maskTokenId);
  });
}

// ---- the trainer's text classifier ----

/** The special ids a text classifier needs: [PAD], [CLS], [SEP] are never masked, [MASK] replaces masked tokens. */
export interface TextSpecialIds {
  pad: number;
  cls: number;
  sep: number;
  mask: number;
}

/** What a registered text model needs from its tokenizer and data (ModelOverrides.text). */
export interface TextModelOverrides {
  vocabSize: number;
  /** The longest input (max-length): the position table is max(512, this). */
  maxLength: number;
  specialIds: TextSpecialIds;
}

/**
 * The trainer's packed text batch: one int64 tensor [B, 3, L] holding the token ids, the token
 * types and the attention mask, so a text batch goes through the same one-input step, evaluation
 * and data-parallel code as an image batch. [B, L] alone is ids (types 0, mask from [PAD]).
 */
export function unpackTextBatch(inputs: Tensor): { ids: Tensor; inputs: BertInputs } {
  if (inputs.ndim === 2) return { ids: inputs, inputs: {} };
  if (inputs.ndim !== 3 || inputs.size(1) !== 3) {
    throw new Error(`a text classifier takes token ids [B, L] or a packed text batch [B, 3, L] (ids, token types, attention mask), got [${inputs.shape.join(', ')}] (${inputs.dtype})`);
  }
  return { ids: inputs.select(1, 0), inputs: { tokenTypeIds: inputs.select(1, 1), attentionMask: inputs.select(1, 2) } };
}

/**
 * BertForSequenceClassification (the same module names, so HF-named weights load and --init
 * works) as a Classifier: forward(packed text batch, options) applies the MaskSub options itself:
 * maskRatio replaces that share of each sample's text tokens by [MASK] (never [PAD], [CLS], [SEP]),
 * dropoutRate sets the blocks' hidden dropouts (DropSub), dropPathIncrease raises the blocks'
 * drop-path (PathSub).
 */
export class BertTextClassifier extends Classifier {
  readonly masking: MaskingKind = 'mask-tokens';
  readonly info: ClassifierInfo;
  readonly bert: BertModel;
  readonly dropout: Dropout;
  readonly classifier: Linear;
  readonly keepIds: readonly number[];
  constructor(readonly config: BertConfig, readonly specialIds: TextSpecialIds) {
    super();
    this.bert = this.registerModule('bert', new BertModel(config));
    this.dropout = this.registerModule('dropout', new Dropout(config.classifierDropout ?? config.hiddenDropoutProb, { fixedRate: true }));
    this.classifier = this.registerModule('classifier', new Linear(config.hiddenSize, config.numLabels));
    initBertWeights(this.classifier);
    for (const [role, id] of Object.entries(specialIds)) {
      if (!(Number.isInteger(id) && id >= 0 && id < config.vocabSize)) throw new RangeError(`BERT: the ${role} token id must be in [0, ${config.vocabSize}), got ${id}`);
    }
    this.keepIds = [specialIds.pad, specialIds.cls, specialIds.sep];
    this.info = { family: 'bert', imageSize: 0, inChannels: 0, numClasses: config.numLabels };
  }

  forward(inputs: Tensor, options: ForwardOptions = {}): Tensor {
    checkRatio('maskRatio', options.maskRatio);
    const { ids, inputs: extra } = unpackTextBatch(inputs);
    return this.withRates(options, () => tidy(() => {
      const seen = options.maskRatio ? randomIdMask(ids, options.maskRatio, this.specialIds.mask, { keepIds: this.keepIds, generator: options.generator }) : ids;
      return this.classifier.forward(this.dropout.forward(this.bert.forwardAll(seen, extra).pooled));
    }));
  }
}

/**
 * Every named BERT in the model registry. HF's recipe dropouts (0.1) are the --dropout setting
 * here (its default 0 keeps a run deterministic; the text preset sets 0.1): it sets the hidden,
 * attention and classifier dropouts, --drop-path the blocks' drop-path.
 */
for (const name of bertModelNames()) {
  const { description, shape } = describeBertModel(name);
  registerModel(name, {
    family: 'bert', imageSize: 0, description: `${description} (text: token ids, --dataset debian-packages or text)`,
    build: (overrides: ModelOverrides) => {
      const text = overrides.text;
      if (!text) throw new Error(`model ${name} is a text model: it needs the tokenizer's vocabulary size and special ids (ModelOverrides.text)`);
      const dropout = overrides.dropRate ?? 0;
      return new BertTextClassifier({
        ...shape, vocabSize: text.vocabSize, hiddenDropoutProb: dropout, attentionProbsDropoutProb: dropout, classifierDropout: null,
        maxPositionEmbeddings: Math.max(512, text.maxLength), typeVocabSize: 2, layerNormEps: 1e-12, padTokenId: text.specialIds.pad,
        numLabels: overrides.numClasses ?? 2, dropPathRate: overrides.dropPathRate ?? 0,
      }, text.specialIds);
    },
  });
}
