// BERT encoder and sequence classifier with Hugging Face's BertModel / BertForSequenceClassification
// parameter names (post-LN blocks, erf GELU, additive padding mask), so a state dict converted
// from an HF checkpoint loads as is. Text models take token ids, not images, so they keep their own
// small registry here (bertModelNames / createBert) instead of the image registry that the
// trainer and the CLI read (registry.ts): an image-only config there must not offer them yet.
//
// For MaskSub the model is a plain Module whose forward takes one tensor of ids: masksub.step
// masks the ids from outside (masking.ts, with keepIds for [PAD]/[CLS]/[SEP]), and the attention
// mask is read from the ids ([PAD] = padding) when none is given, so the masked copy pads alike.
import { arange, type Device, type DType, noGrad, onesLike, type Tensor, tidy, zeros } from '../tensor/tensor.js';
import { Dropout, LayerNorm, Linear, Module, ModuleList, Parameter } from '../nn/index.js';
import * as F from '../nn/functional.js';
import { constant_, normal_ } from '../nn/init.js';

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
  constructor(inFeatures: number, config: BertConfig) {
    super();
    this.dense = this.registerModule('dense', new Linear(inFeatures, config.hiddenSize));
    this.layerNorm = this.registerModule('LayerNorm', new LayerNorm(config.hiddenSize, config.layerNormEps));
    // Not fixed: these are the dropouts after the attention projection and the MLP that DropSub raises.
    this.dropout = this.registerModule('dropout', new Dropout(config.hiddenDropoutProb));
  }
  forward(hidden: Tensor, residual: Tensor): Tensor {
    return tidy(() => this.layerNorm.forward(this.dropout.forward(this.dense.forward(hidden)).add(residual)));
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
  };
}

/** A named BERT sequence classifier (bert_tiny, bert_mini, ...). */
export function createBert(name: string, overrides: BertOverrides = {}): BertForSequenceClassification {
  return new BertForSequenceClassification(bertConfig(name, overrides));
}
