// The layers the models are built from, with PyTorch/timm parameter names and default inits.
import { bernoulli, empty, ones, type Tensor, tidy, zeros } from '../tensor/tensor.js';
import { currentBatchShard, sampleNoise } from './sample-noise.js';
import * as F from './functional.js';
import { constant_, kaimingUniform_, uniform_, fanInOut, normal_ } from './init.js';
import { Layer, Parameter } from './module.js';

function ownParameter(shape: number[], init: (tensor: Tensor) => void): Parameter {
  return tidy(() => {
    const data = empty(shape);
    init(data);
    return new Parameter(data);
  });
}

export class Linear extends Layer {
  readonly weight: Parameter;
  readonly bias: Parameter | null;
  constructor(readonly inFeatures: number, readonly outFeatures: number, bias = true) {
    super();
    // PyTorch's default: kaiming_uniform(a=sqrt(5)) => U(-1/sqrt(in), 1/sqrt(in)) for both.
    const bound = 1 / Math.sqrt(inFeatures);
    this.weight = this.registerParameter('weight', ownParameter([outFeatures, inFeatures], (t) => kaimingUniform_(t, { a: Math.sqrt(5) })));
    this.bias = bias ? this.registerParameter('bias', ownParameter([outFeatures], (t) => uniform_(t, -bound, bound))) : this.registerParameter('bias', null);
  }
  forward(input: Tensor): Tensor {
    return F.linear(input, this.weight, this.bias);
  }
}

export interface Conv2dOptions { stride?: number; padding?: number; dilation?: number; groups?: number; bias?: boolean }

export class Conv2d extends Layer {
  readonly weight: Parameter;
  readonly bias: Parameter | null;
  readonly stride: number;
  readonly padding: number;
  readonly dilation: number;
  readonly groups: number;
  constructor(readonly inChannels: number, readonly outChannels: number, readonly kernelSize: number, options: Conv2dOptions = {}) {
    super();
    this.stride = options.stride ?? 1;
    this.padding = options.padding ?? 0;
    this.dilation = options.dilation ?? 1;
    this.groups = options.groups ?? 1;
    if (inChannels % this.groups || outChannels % this.groups) {
      throw new Error(`Conv2d: channels ${inChannels} -> ${outChannels} are not divisible by groups ${this.groups}`);
    }
    const shape = [outChannels, inChannels / this.groups, kernelSize, kernelSize];
    this.weight = this.registerParameter('weight', ownParameter(shape, (t) => kaimingUniform_(t, { a: Math.sqrt(5) })));
    if (options.bias ?? true) {
      const bound = 1 / Math.sqrt((inChannels / this.groups) * kernelSize * kernelSize);
      this.bias = this.registerParameter('bias', ownParameter([outChannels], (t) => uniform_(t, -bound, bound)));
    } else {
      this.bias = this.registerParameter('bias', null);
    }
  }
  forward(input: Tensor): Tensor {
    return F.conv2d(input, this.weight, this.bias, { stride: this.stride, padding: this.padding, dilation: this.dilation, groups: this.groups });
  }
}

export class LayerNorm extends Layer {
  readonly weight: Parameter;
  readonly bias: Parameter;
  constructor(readonly normalizedShape: number, readonly eps = 1e-5) {
    super();
    this.weight = this.registerParameter('weight', ownParameter([normalizedShape], (t) => constant_(t, 1)));
    this.bias = this.registerParameter('bias', ownParameter([normalizedShape], (t) => constant_(t, 0)));
  }
  forward(input: Tensor): Tensor {
    return F.layerNorm(input, [this.normalizedShape], this.weight, this.bias, this.eps);
  }
}

export class BatchNorm2d extends Layer {
  readonly weight: Parameter;
  readonly bias: Parameter;
  readonly runningMean: Tensor;
  readonly runningVar: Tensor;
  readonly numBatchesTracked: Tensor;
  /**
   * Training forwards normalise with the statistics of every rank's batch together
   * (SyncBatchNorm, F.syncBatchNorm; set by `train --sync-bn` in a data-parallel job). Off by
   * default, as PyTorch's BatchNorm2d; evaluation always uses the running statistics.
   */
  sync = false;
  constructor(readonly numFeatures: number, readonly eps = 1e-5, readonly momentum = 0.1) {
    super();
    this.weight = this.registerParameter('weight', ownParameter([numFeatures], (t) => constant_(t, 1)));
    this.bias = this.registerParameter('bias', ownParameter([numFeatures], (t) => constant_(t, 0)));
    this.runningMean = this.registerBuffer('running_mean', zeros([numFeatures]));
    this.runningVar = this.registerBuffer('running_var', ones([numFeatures]));
    this.numBatchesTracked = this.registerBuffer('num_batches_tracked', zeros([], { dtype: 'int64' }));
  }
  forward(input: Tensor): Tensor {
    if (this.training) this.numBatchesTracked.add_(1);
    if (this.training && this.sync) {
      return F.syncBatchNorm(input, { weight: this.weight, bias: this.bias, runningMean: this.runningMean, runningVar: this.runningVar, momentum: this.momentum, eps: this.eps });
    }
    return F.batchNorm(input, {
      weight: this.weight, bias: this.bias, runningMean: this.runningMean, runningVar: this.runningVar,
      training: this.training, momentum: this.momentum, eps: this.eps,
    });
  }
}

export class Embedding extends Layer {
  readonly weight: Parameter;
  constructor(readonly numEmbeddings: number, readonly embeddingDim: number) {
    super();
    this.weight = this.registerParameter('weight', ownParameter([numEmbeddings, embeddingDim], (t) => normal_(t, 0, 1)));
  }
  forward(indices: Tensor): Tensor {
    return F.embedding(this.weight, indices);
  }
}

/**
 * Dropout; `p` may be changed between forwards (the DropSub sub-model raises it). A `fixedRate`
 * dropout is never changed by a method: the official DropSub varies only the dropouts after the
 * attention projection and in the MLP, not those on attention probabilities, embeddings or a head.
 */
export class Dropout extends Layer {
  readonly fixedRate: boolean;
  constructor(public p = 0.5, options: { fixedRate?: boolean } = {}) {
    super();
    if (!(p >= 0 && p < 1)) throw new RangeError(`Dropout: p must be in [0, 1), got ${p}`);
    this.fixedRate = options.fixedRate ?? false;
  }
  forward(input: Tensor): Tensor {
    if (!this.training || this.p === 0) return input;
    return F.dropout(input, this.p, true);
  }
}

/** Stochastic depth per sample (timm's DropPath); `p` may be changed between forwards (PathSub). */
export class DropPath extends Layer {
  constructor(public p = 0) {
    super();
    if (!(p >= 0 && p < 1)) throw new RangeError(`DropPath: p must be in [0, 1), got ${p}`);
  }
  forward(input: Tensor): Tensor {
    if (!this.training || this.p === 0) return input;
    return tidy(() => {
      const keepProbability = 1 - this.p;
      const shape = [input.size(0), ...new Array<number>(input.ndim - 1).fill(1)];
      const dtype = input.dtype === 'float64' ? 'float64' : 'float32';
      // In a data-parallel shard the keep decisions are the global batch's (sample-noise.ts).
      const mask = currentBatchShard() !== null
        ? sampleNoise(shape, input.device).lt(keepProbability).to({ dtype })
        : bernoulli(empty(shape, { dtype, device: input.device as 'cpu' }), keepProbability);
      return input.mul(mask.div(keepProbability));
    });
  }
}

/** Multi-head self-attention with one fused qkv projection (timm's Attention). */
export class Attention extends Layer {
  readonly qkv: Linear;
  readonly proj: Linear;
  readonly attnDrop: Dropout;
  readonly projDrop: Dropout;
  readonly headDim: number;
  readonly scale: number;
  constructor(readonly dim: number, readonly numHeads = 8, qkvBias = false, attnDrop = 0, projDrop = 0) {
    super();
    if (dim % numHeads) throw new Error(`Attention: dim ${dim} is not divisible by ${numHeads} heads`);
    this.headDim = dim / numHeads;
    this.scale = this.headDim ** -0.5;
    this.qkv = this.registerModule('qkv', new Linear(dim, dim * 3, qkvBias));
    this.attnDrop = this.registerModule('attn_drop', new Dropout(attnDrop, { fixedRate: true }));
    this.proj = this.registerModule('proj', new Linear(dim, dim));
    this.projDrop = this.registerModule('proj_drop', new Dropout(projDrop));
  }
  forward(input: Tensor): Tensor {
    return tidy(() => {
      const [batch, tokens, channels] = input.shape;
      const qkv = this.qkv.forward(input).reshape(batch, tokens, 3, this.numHeads, this.headDim).permute(2, 0, 3, 1, 4);
      const [q, k, v] = qkv.unbind(0);
      const attention = this.attnDrop.forward(q.mul(this.scale).matmul(k.transpose(-2, -1)).softmax(-1));
      const mixed = attention.matmul(v).transpose(1, 2).reshape(batch, tokens, channels);
      return this.projDrop.forward(this.proj.forward(mixed));
    });
  }
}

/**
 * Two-layer MLP with GELU (timm's Mlp: fc1, act, drop1, fc2, drop2). `activation` 'quick_gelu'
 * is OpenAI CLIP's x * sigmoid(1.702 x) (timm's act_layer='quick_gelu'), which its weights were trained with.
 */
export class Mlp extends Layer {
  readonly fc1: Linear;
  readonly fc2: Linear;
  readonly drop1: Dropout;
  readonly drop2: Dropout;
  constructor(inFeatures: number, hiddenFeatures: number, outFeatures = inFeatures, drop = 0, readonly activation: 'gelu' | 'quick_gelu' = 'gelu') {
    super();
    if (activation !== 'gelu' && activation !== 'quick_gelu') throw new Error(`Mlp: activation must be 'gelu' or 'quick_gelu', got '${String(activation)}'`);
    this.fc1 = this.registerModule('fc1', new Linear(inFeatures, hiddenFeatures));
    this.drop1 = this.registerModule('drop1', new Dropout(drop));
    this.fc2 = this.registerModule('fc2', new Linear(hiddenFeatures, outFeatures));
    this.drop2 = this.registerModule('drop2', new Dropout(drop));
  }
  forward(input: Tensor): Tensor {
    return tidy(() => {
      const hidden = this.fc1.forward(input);
      const activated = this.activation === 'quick_gelu' ? hidden.mul(hidden.mul(1.702).sigmoid()) : hidden.gelu();
      return this.drop2.forward(this.fc2.forward(this.drop1.forward(activated)));
    });
  }
}

export { fanInOut };
