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
import { Beit } from './beit.js';
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
 * BEiT's offsets for resizing a relative position bias table (timm's resize_rel_pos_bias_table,
 * from BEiT's fine-tuning code): the `source` sides' offsets -n..n placed at 0, +-1, +-(1 + q),
 * +-(1 + q + q^2), ..., with q found by bisection so that the outermost one reaches `target`'s
 * n', which keeps the near offsets (the ones attention depends on most) at unit spacing.
 */
function geometricOffsets(source: number, target: number): number[] {
  const half = Math.floor(source / 2);
  let [left, right] = [1.01, 1.5];
  let q = 0;
  while (right - left > 1e-6) {
    q = (left + right) / 2;
    const reach = (1 - q ** half) / (1 - q);
    if (reach > Math.floor(target / 2)) right = q;
    else left = q;
  }
  const distances: number[] = [];
  let current = 1;
  for (let i = 0; i < half; i++) {
    distances.push(current);
    current += q ** (i + 1);
  }
  return [...distances.map((distance) => -distance).reverse(), 0, ...distances];
}

/** Linear interpolation of sorted `points` / `values` at x, clamped to the end values (timm's RegularGridInterpolator per axis). */
function bracket(points: number[], x: number): { low: number; high: number; weightLow: number; weightHigh: number } {
  let high = points.findIndex((point) => point >= x);
  if (high < 0) high = points.length - 1;
  const low = Math.max(high - 1, 0);
  let distanceLow = Math.max(x - points[low], 0);
  let distanceHigh = Math.max(points[high] - x, 0);
  if (distanceLow === 0 && distanceHigh === 0) [distanceLow, distanceHigh] = [1, 1];
  const total = distanceLow + distanceHigh;
  return { low, high, weightLow: distanceHigh / total, weightHigh: distanceLow / total };
}

/**
 * timm's resize_rel_pos_bias_table (its default path without scipy): a BEiT table
 * [(2s-1)^2 + 3, heads] for an s x s grid resized to a `grid` x `grid` one: per head, the
 * (2s-1) x (2s-1) offsets, placed at BEiT's geometric positions (geometricOffsets), are
 * interpolated bilinearly at the integer offsets of the new grid; the three class-token rows
 * are kept. Computed in float64, returned in the input's dtype.
 */
export function resizeRelativePositionBiasTable(table: Tensor, grid: number): Tensor {
  return tidy(() => {
    const [rows, heads] = table.shape;
    const source = Math.sqrt(rows - 3);
    if (!(Number.isInteger(source) && source % 2 === 1)) throw new Error(`relative position bias table: ${rows} rows is not (2s-1)^2 + 3 for a grid side s`);
    const target = 2 * grid - 1;
    if (source === target) return table.clone();
    const offsets = geometricOffsets(source, target);
    const half = Math.floor(target / 2);
    const values = Array.from(table.double().toTypedArray() as Float64Array);
    const out = new Float64Array((target * target + 3) * heads);
    for (let y = 0; y < target; y++) {
      const vertical = bracket(offsets, y - half);
      for (let x = 0; x < target; x++) {
        const horizontal = bracket(offsets, x - half);
        for (let head = 0; head < heads; head++) {
          const at = (row: number, column: number): number => values[(row * source + column) * heads + head];
          out[(y * target + x) * heads + head] =
            vertical.weightLow * (horizontal.weightLow * at(vertical.low, horizontal.low) + horizontal.weightHigh * at(vertical.low, horizontal.high))
            + vertical.weightHigh * (horizontal.weightLow * at(vertical.high, horizontal.low) + horizontal.weightHigh * at(vertical.high, horizontal.high));
        }
      }
    }
    for (let extra = 0; extra < 3; extra++) {
      for (let head = 0; head < heads; head++) out[(target * target + extra) * heads + head] = values[(source * source + extra) * heads + head];
    }
    return tensor(out, { dtype: 'float64', shape: [target * target + 3, heads] }).to({ dtype: table.dtype, device: table.device as 'cpu' });
  });
}

/**
 * timm's adapt_input_conv: a first-layer weight [O, 3, k, k] for another input channel count:
 * 1 channel sums the three filters (a grey image x gives what RGB (x, x, x) gave); other counts
 * repeat the filters and scale by 3 / channels. Beyond timm (which refuses it), a 1-channel weight
 * (a Fashion-MNIST run's) adapts to N channels by the same rule: the filter repeated and scaled by
 * 1 / N, so that an image of N equal channels x gives what the 1-channel model gave for x.
 */
export function adaptInputConv(weight: Tensor, channels: number): Tensor {
  return tidy(() => {
    const have = weight.size(1);
    if (have === channels) return weight.clone();
    if (have !== 3 && have !== 1) throw new Error(`adaptInputConv: only a 3- or 1-channel weight adapts to ${channels} channels, this one has ${have}`);
    const float = weight.double();
    if (channels === 1) return float.sum(1, true).to({ dtype: weight.dtype });
    const repeats = Math.ceil(channels / have);
    return float.repeat(1, repeats, 1, 1).slice(1, 0, channels).mul(have / channels).to({ dtype: weight.dtype });
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

interface FitActions {
  put(key: string, value: Tensor): void;
  reinit(keys: string[], why: string): void;
  ignore(key: string): void;
  notes: string[];
}

/**
 * BEiT's checkpoint variants: old checkpoints store the (derived) relative_position_index; BEiT
 * v2 pretraining checkpoints have one shared table (rel_pos_bias.*) that BEiT's fine-tuning
 * copies into every block, and the pretraining heads (lm_head, cls_pt_layers) that fine-tuning
 * does not use; an absolute pos_embed on another grid is resampled as ViT's; a block's table
 * for another grid is resized with timm's resize_rel_pos_bias_table (see resizeRelativePositionBiasTable).
 */
function fitBeit(model: Beit, source: Map<string, Tensor>, own: Map<string, Tensor>, actions: FitActions): void {
  const { put, ignore, notes } = actions;
  const derived = [...source.keys()].filter((key) => key.endsWith('relative_position_index'));
  for (const key of derived) ignore(key);
  if (derived.length) notes.push(`${derived.length} relative_position_index buffer(s) in the checkpoint not used: the model computes them from its grid (as timm's checkpoint_filter_fn)`);
  const pretrainingHeads = [...source.keys()].filter((key) => key.startsWith('lm_head.') || key.startsWith('cls_pt_layers.'));
  for (const key of pretrainingHeads) ignore(key);
  if (pretrainingHeads.length) notes.push(`${pretrainingHeads.length} tensor(s) of BEiT's pretraining heads (lm_head, cls_pt_layers) not used, as BEiT's fine-tuning`);
  const shared = source.get('rel_pos_bias.relative_position_bias_table');
  if (shared && !source.has('blocks.0.attn.relative_position_bias_table')) {
    model.blocks.items.forEach((_, index) => source.set(`blocks.${index}.attn.relative_position_bias_table`, shared));
    ignore('rel_pos_bias.relative_position_bias_table');
    notes.push('rel_pos_bias.relative_position_bias_table (one table shared by all blocks, BEiT pretraining) copied into every block, as BEiT\'s fine-tuning does');
  }
  const grid = model.gridSize;
  const posEmbed = source.get('pos_embed');
  if (model.posEmbed && posEmbed && posEmbed.ndim === 3 && posEmbed.size(0) === 1 && posEmbed.size(2) === model.config.width && isSquare(posEmbed.size(1) - 1)) {
    const side = Math.sqrt(posEmbed.size(1) - 1);
    if (side !== grid) {
      put('pos_embed', resamplePosEmbed(posEmbed, [side, side], [grid, grid], 1, true));
      notes.push(`pos_embed: resampled from a ${side}x${side} to a ${grid}x${grid} grid (bicubic, antialias, as timm's resample_abs_pos_embed)`);
    }
  }
  let resized = 0;
  let from = 0;
  for (const [key, value] of source) {
    if (!key.endsWith('.relative_position_bias_table')) continue;
    const target = own.get(key);
    if (!target || value.ndim !== 2 || value.size(1) !== target.size(1) || value.size(0) === target.size(0)) continue;
    const side = Math.sqrt(value.size(0) - 3);
    if (!(Number.isInteger(side) && side % 2 === 1)) continue;
    put(key, resizeRelativePositionBiasTable(value, grid));
    resized += 1;
    from = (side + 1) / 2;
  }
  if (resized) notes.push(`${resized} relative_position_bias_table(s): resized from a ${from}x${from} to a ${grid}x${grid} grid (timm's resize_rel_pos_bias_table without scipy: linear on BEiT's geometric offsets)`);
}

/**
 * The checkpoint's tensors fitted to the model: returns the state dict to load (owning its
 * tensors; the caller disposes them) and the report. Throws PretrainedError naming every key at
 * fault when strict.
 */
export function fitCheckpoint(model: Classifier, checkpoint: Map<string, Tensor>, options: InitOptions = {}): { state: Map<string, Tensor>; report: InitReport } {
  const clip = model instanceof VisionTransformer ? convertOpenaiClip(checkpoint) : null;
  try {
    return fitNamedCheckpoint(model, clip?.tensors ?? checkpoint, options, clip?.notes ?? [], clip?.ignored ?? []);
  } finally {
    // fitNamedCheckpoint copies what it keeps, so the converted tensors can go.
    for (const value of clip?.created ?? []) value.dispose();
  }
}

/** timm's _convert_openai_clip renames, in order (the first match of each pair is replaced). */
const OPENAI_CLIP_RENAMES: [string, string][] = [
  ['conv1', 'patch_embed.proj'], ['positional_embedding', 'pos_embed'], ['transformer.resblocks.', 'blocks.'],
  ['ln_pre', 'norm_pre'], ['ln_post', 'norm'], ['ln_', 'norm'], ['in_proj_', 'qkv.'], ['out_proj', 'proj'],
  ['mlp.c_fc', 'mlp.fc1'], ['mlp.c_proj', 'mlp.fc2'],
];

/**
 * An OpenAI CLIP state dict (visual.class_embedding, visual.conv1, visual.transformer.resblocks,
 * visual.proj, and the text tower) converted to timm's ViT names as timm's checkpoint_filter_fn
 * does (_convert_openai_clip): the image tower renamed, proj transposed into head.weight with a
 * zero head.bias, the text tower not used. null when the checkpoint is not one.
 */
function convertOpenaiClip(checkpoint: Map<string, Tensor>): { tensors: Map<string, Tensor>; created: Tensor[]; notes: string[]; ignored: string[] } | null {
  const prefix = ['visual.', 'module.visual.'].find((candidate) => checkpoint.has(`${candidate}class_embedding`));
  if (prefix === undefined) return null;
  const tensors = new Map<string, Tensor>();
  const created: Tensor[] = [];
  const ignored: string[] = [];
  const own = (value: Tensor): Tensor => {
    created.push(value);
    return value;
  };
  for (const [key, value] of checkpoint) {
    if (!key.startsWith(prefix)) {
      ignored.push(key);
      continue;
    }
    let name = key.slice(prefix.length);
    for (const [from, to] of OPENAI_CLIP_RENAMES) name = name.replace(from, to);
    if (name === 'proj') {
      const weight = own(tidy(() => value.transpose(0, 1).contiguous()));
      tensors.set('head.weight', weight);
      tensors.set('head.bias', own(zeros([weight.size(0)], { dtype: value.dtype })));
    } else if (name === 'class_embedding') {
      tensors.set('cls_token', own(value.reshape(1, 1, -1)));
    } else if (name === 'pos_embed') {
      tensors.set('pos_embed', own(value.unsqueeze(0)));
    } else {
      tensors.set(name, value);
    }
  }
  const notes = [`an OpenAI CLIP state dict (${prefix}*): the image tower renamed to timm's names as timm's _convert_openai_clip (proj becomes head.weight with a zero bias)${ignored.length ? `; ${ignored.length} tensor(s) of the text tower not used` : ''}`];
  return { tensors, created, notes, ignored };
}

function fitNamedCheckpoint(model: Classifier, checkpoint: Map<string, Tensor>, options: InitOptions, firstNotes: string[], firstIgnored: string[]): { state: Map<string, Tensor>; report: InitReport } {
  const strict = options.strict ?? true;
  const antialias = options.antialias ?? true;
  const own = model.stateDict();
  const notes: string[] = [...firstNotes];
  const reinitialised = new Set<string>();
  const ignored = new Set<string>(firstIgnored);
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
    const have = weight.size(1);
    if (weight.size(0) !== target.size(0) || weight.size(2) !== kernelHeight || weight.size(3) !== kernelWidth || (have !== 3 && have !== 1)) return;
    put(key, adaptInputConv(weight, channels));
    notes.push(have === 1
      ? `${key}: adapted from 1 to ${channels} input channels (the filter repeated, scaled by 1/${channels}: equal channels give the 1-channel model's output; timm's adapt_input_conv rule, which timm itself applies only to 3-channel weights)`
      : `${key}: adapted from 3 to ${channels} input channel(s) (${channels === 1 ? 'RGB filters summed' : `filters repeated, scaled by 3/${channels}`}, as timm's adapt_input_conv)`);
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
  } else if (model instanceof Beit) {
    fitBeit(model, source, own, { put, reinit, ignore: (key) => { if (source.delete(key)) ignored.add(key); }, notes });
    fitInputConv('patch_embed.proj.weight');
    if (!source.has('fc_norm.weight') && source.has('norm.weight') && own.has('fc_norm.weight')) {
      // A BEiT pretraining checkpoint: its final norm is before pooling; BEiT's fine-tuning (mean pooling) starts fc_norm fresh.
      for (const key of ['norm.weight', 'norm.bias']) if (source.delete(key)) ignored.add(key);
      reinit(['fc_norm.weight', 'fc_norm.bias'], 'fc_norm after mean pooling starts fresh and the checkpoint\'s norm (before pooling) is not used, as BEiT fine-tunes a pretraining checkpoint');
    }
    if (!source.has('mask_token')) reinit(['mask_token'], 'the checkpoint has no mask token (a fine-tuned checkpoint; MaskSub learns one from trunc_normal(.02))');
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
    if ((model instanceof VisionTransformer || model instanceof Beit) && unexpected.includes('fc_norm.weight')) hints.push('the checkpoint has fc_norm (mean pooling, MAE / BEiT fine-tuned): use --global-pool avg');
    if (model instanceof Beit && unexpected.includes('norm.weight') && missing.includes('fc_norm.weight')) hints.push('the checkpoint pools the class token after norm: use --global-pool token');
    if (model instanceof Beit && !own.has('pos_embed') && unexpected.includes('pos_embed')) hints.push('the checkpoint has an absolute position embedding (BEiT v1 with use_abs_pos_emb), this BEiT config has none');
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
 * pos_embed, mask_token, and CLIP's norm_pre as FT-CLIP) are layer 0, block i is layer i + 1, the rest (final norms, head) the
 * last layer, count = blocks + 1. A ResNet is treated the same over its blocks in order (timm's
 * group_matcher: stem conv1/bn1 layer 0, layer1.0, layer1.1, ..., layer4.N, then fc).
 */
export function layerAssignment(model: Classifier): { count: number; layerOf: (name: string) => number } {
  if (model instanceof VisionTransformer) {
    const count = model.blocks.length + 1;
    return {
      count,
      layerOf: (name) => {
        // CLIP's norm_pre is part of the embedding (FT-CLIP's get_num_layer_for_vit: ln_pre is layer 0).
        if (['cls_token', 'pos_embed', 'mask_token'].includes(name) || name.startsWith('patch_embed.') || name.startsWith('norm_pre.')) return 0;
        const block = /^blocks\.(\d+)\./.exec(name);
        return block ? Number(block[1]) + 1 : count;
      },
    };
  }
  if (model instanceof Beit) {
    // BEiT's get_layer_id_for_vit, as for ViT (the bias tables belong to their block).
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
