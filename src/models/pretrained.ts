// Starting from pretrained weights (--init FILE.safetensors): a timm-named state dict is fitted to
// one of our models the way timm's checkpoint_filter_fn and MAE's fine-tuning code fit theirs,
// then loaded. The variants real checkpoints use are recognised and said in the log: position
// embeddings on another grid (bicubic resampling, as timm's resample_abs_pos_embed), DeiT-III's
// position embedding without a class-token slot, MAE's fc_norm with mean pooling, a patch or stem
// conv trained on another channel count (timm's adapt_input_conv), a head that is absent or has
// another class count (re-initialised). Anything else that does not fit is listed, every key in
// one error, unless strict is off. Also the layer assignment of layer-wise lr decay (BEiT / MAE).
import { cat, noGrad, type Tensor, tensor, tidy, zeros } from '../tensor/tensor.js';
import { loadSafetensors } from '../tensor/safetensors.js';
import type { Classifier } from './classifier.js';
import { BertTextClassifier } from './bert.js';
import { ResNet } from './resnet.js';
import { PatchMerging, SwinTransformer } from './swin.js';
import { VisionTransformer } from './vit.js';

/** A checkpoint that does not fit the model (the message lists every key at fault). */
export class PretrainedError extends Error {}

// ---------------------------------------------------------------------------------------------
// Bicubic resampling as PyTorch's F.interpolate(mode='bicubic', align_corners=False)

/** Keys' cubic convolution kernel (PyTorch's cubic_convolution1/2). */
function cubic(x: number, a: number): number {
  const t = Math.abs(x);
  if (t <= 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
  if (t < 2) return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a;
  return 0;
}

/**
 * The [outSize x inSize] matrix of 1-D bicubic interpolation, row-major. Interpolation is linear
 * in its input, so resampling a grid is two of these matrices applied along its two axes.
 * Without antialias: PyTorch's upsample_bicubic2d (source x = (i + 0.5) * in/out - 0.5, taps
 * floor(x) - 1 .. floor(x) + 2 clamped to the edge, a = -0.75). With antialias: PyTorch's
 * _upsample_bicubic2d_aa (Pillow's filter, a = -0.5, widened by in/out when shrinking, weights
 * normalised to sum 1), which timm's resample_abs_pos_embed uses by default since timm 0.9.
 */
export function bicubicMatrix(inSize: number, outSize: number, antialias: boolean): Float64Array {
  const matrix = new Float64Array(outSize * inSize);
  const scale = inSize / outSize;
  for (let i = 0; i < outSize; i++) {
    const row = i * inSize;
    if (!antialias) {
      const source = (i + 0.5) * scale - 0.5;
      const base = Math.floor(source);
      const t = source - base;
      const weights = [cubic(t + 1, -0.75), cubic(t, -0.75), cubic(1 - t, -0.75), cubic(2 - t, -0.75)];
      for (let k = 0; k < 4; k++) {
        const index = Math.min(Math.max(base - 1 + k, 0), inSize - 1);
        matrix[row + index] += weights[k];
      }
      continue;
    }
    const support = scale >= 1 ? 2 * scale : 2;
    const inverse = scale >= 1 ? 1 / scale : 1;
    const center = scale * (i + 0.5);
    const first = Math.max(Math.trunc(center - support + 0.5), 0);
    const last = Math.min(Math.trunc(center + support + 0.5), inSize);
    let total = 0;
    for (let j = first; j < last; j++) {
      const weight = cubic((j - center + 0.5) * inverse, -0.5);
      matrix[row + j] = weight;
      total += weight;
    }
    if (total !== 0) for (let j = first; j < last; j++) matrix[row + j] /= total;
  }
  return matrix;
}

/**
 * timm's resample_abs_pos_embed: the grid part of a [1, prefix + h*w, D] position embedding
 * resized to [1, prefix + H*W, D] (bicubic, align_corners=False), the prefix rows (class token)
 * unchanged. Computed in float64 and returned in the input's dtype.
 */
export function resamplePosEmbed(posEmbed: Tensor, from: [number, number], to: [number, number], prefix: number, antialias = true): Tensor {
  return tidy(() => {
    const [oldRows, oldColumns] = from;
    const [rows, columns] = to;
    const width = posEmbed.size(2);
    if (posEmbed.size(1) !== prefix + oldRows * oldColumns) {
      throw new Error(`resamplePosEmbed: ${posEmbed.size(1)} rows are not ${prefix} prefix + ${oldRows}x${oldColumns}`);
    }
    const vertical = bicubicMatrix(oldRows, rows, antialias);
    const horizontal = bicubicMatrix(oldColumns, columns, antialias);
    // out[(r, c)] = sum over (a, b) of vertical[r, a] * horizontal[c, b] * grid[(a, b)]
    const kron = new Float64Array(rows * columns * oldRows * oldColumns);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < columns; c++) {
        const row = (r * columns + c) * oldRows * oldColumns;
        for (let a = 0; a < oldRows; a++) {
          const v = vertical[r * oldRows + a];
          if (v === 0) continue;
          for (let b = 0; b < oldColumns; b++) kron[row + a * oldColumns + b] = v * horizontal[c * oldColumns + b];
        }
      }
    }
    const weights = tensor(kron, { dtype: 'float64', shape: [rows * columns, oldRows * oldColumns] }).to({ device: posEmbed.device as 'cpu' });
    const grid = posEmbed.select(0, 0).slice(0, prefix).double();
    const resampled = weights.matmul(grid).to({ dtype: posEmbed.dtype }).unsqueeze(0);
    return prefix ? cat([posEmbed.slice(1, 0, prefix), resampled], 1) : resampled;
  });
}

/**
 * timm's adapt_input_conv: a first-layer weight [O, 3, k, k] for another input channel count:
 * 1 channel sums the three filters (a grey image x gives what RGB (x, x, x) gave); other counts
 * repeat the filters and scale by 3 / channels.
 */
export function adaptInputConv(weight: Tensor, channels: number): Tensor {
  return tidy(() => {
    const have = weight.size(1);
    if (have === channels) return weight.clone();
    if (have !== 3) throw new Error(`adaptInputConv: only a 3-channel weight adapts to ${channels} channels, this one has ${have}`);
    const float = weight.double();
    if (channels === 1) return float.sum(1, true).to({ dtype: weight.dtype });
    const repeats = Math.ceil(channels / 3);
    return float.repeat(1, repeats, 1, 1).slice(1, 0, channels).mul(3 / channels).to({ dtype: weight.dtype });
  });
}

// ---------------------------------------------------------------------------------------------
// Fitting a checkpoint to a model

export interface InitOptions {
  /** Unknown, missing or wrong-shape keys are an error (true) or left at the model's init and logged (false). */
  strict?: boolean;
  /** Position-embedding resampling with antialias (timm >= 0.9's default) or without (MAE, timm < 0.9). */
  antialias?: boolean;
  /**
   * Re-initialise the classifier (ViT head, ResNet fc) even when the class count matches: for a
   * new label set with as many classes, the pretrained head is a wrong prior.
   */
  resetHead?: boolean;
  /** Where the notes go (which variants were recognised, what was re-initialised). */
  log?: (line: string) => void;
}

export interface InitReport {
  /** Keys loaded from the checkpoint (after adaptation). */
  loaded: string[];
  /** The model's keys that keep their fresh initialisation. */
  reinitialised: string[];
  /** Checkpoint keys that were not used. */
  ignored: string[];
  /** One line per recognised variant or adaptation. */
  notes: string[];
}

const isSquare = (count: number): boolean => count > 0 && Number.isInteger(Math.sqrt(count));
const shapeText = (value: Tensor | readonly number[]): string => `[${(Array.isArray(value) ? value : (value as Tensor).shape).join(', ')}]`;
const sameShape = (left: readonly number[], right: readonly number[]): boolean => left.length === right.length && left.every((size, i) => size === right[i]);

/**
 * The checkpoint's tensors fitted to the model: returns the state dict to load (owning its
 * tensors; the caller disposes them) and the report. Throws PretrainedError naming every key at
 * fault when strict.
 */
export function fitCheckpoint(model: Classifier, checkpoint: Map<string, Tensor>, options: InitOptions = {}): { state: Map<string, Tensor>; report: InitReport } {
  const strict = options.strict ?? true;
  const antialias = options.antialias ?? true;
  const own = model.stateDict();
  const notes: string[] = [];
  const reinitialised = new Set<string>();
  const ignored = new Set<string>();
  const state = new Map<string, Tensor>();
  let source = new Map(checkpoint);

  // DataParallel / DDP checkpoints prefix every name with 'module.'.
  if (source.size && [...source.keys()].every((key) => key.startsWith('module.'))) {
    source = new Map([...source].map(([key, value]) => [key.slice('module.'.length), value]));
    notes.push("names prefixed 'module.' (a DataParallel/DDP checkpoint): prefix removed");
  }
  const put = (key: string, value: Tensor): void => {
    state.set(key, value);
    source.delete(key);
  };
  const reinit = (keys: string[], why: string): void => {
    const present = keys.filter((key) => own.has(key));
    if (!present.length) return;
    for (const key of present) {
      reinitialised.add(key);
      const stale = source.get(key);
      if (stale) {
        source.delete(key);
        ignored.add(key);
      }
    }
    notes.push(`${present.join(', ')} re-initialised: ${why}`);
  };
  const classes = model.info.numClasses;
  const headKeys = (prefix: string): [string, string] => [`${prefix}.weight`, `${prefix}.bias`];

  const fitHead = (prefix: string): void => {
    const [weightKey, biasKey] = headKeys(prefix);
    const weight = source.get(weightKey);
    if (options.resetHead) {
      reinit([weightKey, biasKey], 'asked for (a new label set)');
    } else if (!weight) {
      reinit([weightKey, biasKey], `the checkpoint has no ${prefix} (a backbone without classifier)`);
    } else if (weight.ndim === 2 && weight.size(0) !== classes && weight.size(1) === own.get(weightKey)?.size(1)) {
      reinit([weightKey, biasKey], `the checkpoint's ${prefix} has ${weight.size(0)} classes, this data set ${classes}`);
    }
  };

  const fitInputConv = (key: string): void => {
    const weight = source.get(key);
    const target = own.get(key);
    if (!weight || !target || weight.ndim !== 4 || sameShape(weight.shape, target.shape)) return;
    const [, channels, kernelHeight, kernelWidth] = target.shape;
    if (weight.size(0) !== target.size(0) || weight.size(2) !== kernelHeight || weight.size(3) !== kernelWidth || weight.size(1) !== 3) return;
    put(key, adaptInputConv(weight, channels));
    notes.push(`${key}: adapted from 3 to ${channels} input channel(s) (${channels === 1 ? 'RGB filters summed' : `filters repeated, scaled by 3/${channels}`}, as timm's adapt_input_conv)`);
  };

  if (model instanceof VisionTransformer) {
    const width = model.config.width;
    const grid = Math.sqrt(model.numPatches);
    const posEmbed = source.get('pos_embed');
    if (posEmbed && posEmbed.ndim === 3 && posEmbed.size(0) === 1 && posEmbed.size(2) === width) {
      const rows = posEmbed.size(1);
      const prefix = isSquare(rows - 1) ? 1 : isSquare(rows) ? 0 : -1;
      if (prefix >= 0) {
        const side = Math.sqrt(rows - prefix);
        let fitted = side === grid ? posEmbed.clone() : resamplePosEmbed(posEmbed, [side, side], [grid, grid], prefix, antialias);
        if (side !== grid) notes.push(`pos_embed: resampled from a ${side}x${side} to a ${grid}x${grid} grid (bicubic${antialias ? ', antialias' : ''}, as timm's resample_abs_pos_embed)`);
        if (prefix === 0) {
          // DeiT-III (timm's no_embed_class): the class token gets no position embedding; a zero
          // row for its slot computes the same function.
          const withSlot = tidy(() => cat([zeros([1, 1, width], { dtype: fitted.dtype }), fitted], 1));
          fitted.dispose();
          fitted = withSlot;
          notes.push('pos_embed: no class-token slot (DeiT-III, no_embed_class): the class token\'s position embedding starts at 0, which computes the same function');
        }
        put('pos_embed', fitted);
      }
    }
    fitInputConv('patch_embed.proj.weight');
    const hasFcNorm = own.has('fc_norm.weight');
    if (hasFcNorm && !source.has('fc_norm.weight') && source.has('norm.weight')) {
      // MAE's main_finetune: a pretraining checkpoint's final norm is dropped; fc_norm starts fresh.
      for (const key of ['norm.weight', 'norm.bias']) if (source.delete(key)) ignored.add(key);
      reinit(['fc_norm.weight', 'fc_norm.bias'], 'fc_norm after mean pooling starts fresh and the checkpoint\'s norm (before pooling) is not used, as MAE fine-tunes a pretraining checkpoint');
    }
    if (own.has('mask_token') && !source.has('mask_token')) reinit(['mask_token'], 'the checkpoint has no mask token (mask-mode token learns one)');
    if (!own.has('mask_token') && source.has('mask_token')) {
      source.delete('mask_token');
      ignored.add('mask_token');
      notes.push('mask_token of the checkpoint (BEiT / SimMIM pretraining) not used: mask-mode drop has none');
    }
    fitHead('head');
  } else if (model instanceof BertTextClassifier) {
    // HF BertForSequenceClassification's names; a BertModel checkpoint has no classifier.
    fitHead('classifier');
  } else if (model instanceof ResNet) {
    fitInputConv('conv1.weight');
    fitHead('fc');
    // PyTorch's BatchNorm loads old checkpoints without num_batches_tracked (it keeps its own).
    const counters = [...own.keys()].filter((key) => key.endsWith('.num_batches_tracked') && !source.has(key));
    if (counters.length) {
      for (const key of counters) reinitialised.add(key);
      notes.push(`${counters.length} BatchNorm num_batches_tracked counter(s) absent (an older checkpoint): kept at 0, as PyTorch does`);
    }
  }

  // Whatever is left loads by name, or is at fault.
  const missing: string[] = [];
  const wrongShape: string[] = [];
  for (const [key, target] of own) {
    if (state.has(key) || reinitialised.has(key)) continue;
    const value = source.get(key);
    if (!value) {
      missing.push(key);
      continue;
    }
    if (!sameShape(value.shape, target.shape)) {
      wrongShape.push(`${key} (checkpoint ${shapeText(value)}, model ${shapeText(target)})`);
      continue;
    }
    put(key, value.clone());
  }
  const unexpected = [...source.keys()].filter((key) => !own.has(key));
  if (strict && (missing.length || unexpected.length || wrongShape.length)) {
    for (const value of state.values()) value.dispose();
    const parts = [
      missing.length ? `missing from the checkpoint (${missing.length}): ${missing.join(', ')}` : '',
      unexpected.length ? `not in the model (${unexpected.length}): ${unexpected.join(', ')}` : '',
      wrongShape.length ? `wrong shape (${wrongShape.length}): ${wrongShape.join(', ')}` : '',
    ].filter(Boolean);
    const hints: string[] = [];
    if (model instanceof VisionTransformer && unexpected.includes('fc_norm.weight')) hints.push('the checkpoint has fc_norm (mean pooling, MAE fine-tuned): use --global-pool avg');
    if (![...own.keys()].some((key) => checkpoint.has(key))) hints.push(`no name in common: the checkpoint is of another model family or uses other names than timm's`);
    throw new PretrainedError(`does not fit ${model.info.family} model: ${parts.join('; ')}${hints.length ? `; ${hints.join('; ')}` : ''}; --init-strict false loads what fits and keeps the model's own initialisation for the rest`);
  }
  for (const key of missing) reinitialised.add(key);
  for (const text of wrongShape) reinitialised.add(text.split(' ')[0]);
  for (const key of [...unexpected, ...wrongShape.map((text) => text.split(' ')[0])]) ignored.add(key);
  if (missing.length) notes.push(`not strict: missing from the checkpoint, keeping the model's initialisation: ${missing.join(', ')}`);
  if (wrongShape.length) notes.push(`not strict: wrong shape, keeping the model's initialisation: ${wrongShape.join(', ')}`);
  if (unexpected.length) notes.push(`not strict: not in the model, not used: ${unexpected.join(', ')}`);
  return { state, report: { loaded: [...state.keys()], reinitialised: [...reinitialised], ignored: [...ignored], notes } };
}

/** Loads FILE.safetensors into the model through fitCheckpoint; errors name the file. */
export function loadPretrained(model: Classifier, path: string, options: InitOptions = {}): InitReport {
  let checkpoint: Map<string, Tensor>;
  try {
    checkpoint = loadSafetensors(path).tensors;
  } catch (error) {
    throw new PretrainedError(`--init ${path}: ${(error as Error).message.replace(/^safetensors: [^:]*: /, '')}`);
  }
  try {
    const { state, report } = (() => {
      try {
        return fitCheckpoint(model, checkpoint, options);
      } catch (error) {
        if (error instanceof PretrainedError) throw new PretrainedError(`--init ${path}: ${error.message}`);
        throw error;
      }
    })();
    try {
      noGrad(() => model.loadStateDict(state, { strict: false }));
    } finally {
      for (const value of state.values()) value.dispose();
    }
    const log = options.log;
    if (log) {
      log(`init: ${report.loaded.length} tensors from ${path}`);
      for (const note of report.notes) log(`init: ${note}`);
    }
    return report;
  } finally {
    for (const value of checkpoint.values()) value.dispose();
  }
}

// ---------------------------------------------------------------------------------------------
// Layers for layer-wise learning-rate decay

/**
 * BEiT / MAE's layer ids (get_layer_id_for_vit): the embeddings (patch_embed, cls_token,
 * pos_embed, mask_token) are layer 0, block i is layer i + 1, the rest (final norms, head) the
 * last layer, count = blocks + 1. A ResNet is treated the same over its blocks in order (timm's
 * group_matcher: stem conv1/bn1 layer 0, layer1.0, layer1.1, ..., layer4.N, then fc).
 */
export function layerAssignment(model: Classifier): { count: number; layerOf: (name: string) => number } {
  if (model instanceof VisionTransformer) {
    const count = model.blocks.length + 1;
    return {
      count,
      layerOf: (name) => {
        if (['cls_token', 'pos_embed', 'mask_token'].includes(name) || name.startsWith('patch_embed.')) return 0;
        const block = /^blocks\.(\d+)\./.exec(name);
        return block ? Number(block[1]) + 1 : count;
      },
    };
  }
  if (model instanceof BertTextClassifier) {
    // HF's layer-wise decay for BERT: embeddings layer 0, encoder layer i is i + 1, pooler and classifier last.
    const count = model.bert.encoder.layer.length + 1;
    return {
      count,
      layerOf: (name) => {
        if (name.startsWith('bert.embeddings.')) return 0;
        const layer = /^bert\.encoder\.layer\.(\d+)\./.exec(name);
        return layer ? Number(layer[1]) + 1 : count;
      },
    };
  }
  if (model instanceof ResNet) {
    const order = new Map<string, number>();
    model.stages.forEach((stage, stageIndex) => {
      for (let index = 0; index < stage.length; index++) order.set(`layer${stageIndex + 1}.${index}`, order.size + 1);
    });
    const count = order.size + 1;
    return {
      count,
      layerOf: (name) => {
        if (name.startsWith('conv1.') || name.startsWith('bn1.')) return 0;
        const block = /^(layer\d+\.\d+)\./.exec(name);
        return block ? order.get(block[1]) ?? count : count;
      },
    };
  }
  if (model instanceof SwinTransformer) {
    // timm's fine-grained Swin groups: the stem, then each stage's patch merging and each of its
    // blocks in order, then the final norm and head.
    const order = new Map<string, number>();
    model.layers.items.forEach((stage, stageIndex) => {
      if (stage.downsample instanceof PatchMerging) order.set(`layers.${stageIndex}.downsample`, order.size + 1);
      for (let index = 0; index < stage.blocks.layers.length; index++) order.set(`layers.${stageIndex}.blocks.${index}`, order.size + 1);
    });
    const count = order.size + 1;
    return {
      count,
      layerOf: (name) => {
        if (name === 'mask_token' || name.startsWith('patch_embed.')) return 0;
        const part = /^(layers\.\d+\.(?:downsample|blocks\.\d+))\./.exec(name);
        return part ? order.get(part[1]) ?? count : count;
      },
    };
  }
  throw new Error(`layer-wise lr decay: no layer assignment for the ${model.info.family} family`);
}
