// Masking that needs nothing from the model: the MaskSub sub-model's input masked from outside,
// for a model that does not mask by itself (see Maskable in models/classifier.ts). The kind of
// input decides how: floating-point images [B, C, H, W] get random square patches zeroed (as our
// ResNet does, the same function), integer token ids [B, L] get random positions replaced by a
// [MASK] id (BERT's masking without the 80/10/10 split: the sub-model only needs a masked view).
import type { Generator, Tensor } from '../tensor/tensor.js';
import { arange, type Device, tidy } from '../tensor/tensor.js';
import { sampleNoise } from '../nn/index.js';
import { defaultMaskPatchSize, randomPatchZero } from '../models/resnet.js';

/** What the step can mask from outside: images [B, C, H, W] (floating point) or token ids [B, L] (integer). */
export type InputKind = 'images' | 'tokens';

export interface InputMaskingOptions {
  /**
   * Side in pixels of the square patches zeroed in image inputs; it must divide the height and
   * the width. Default (square images): the divisor of the side nearest side/7, as 32 px is to 224 px.
   */
  patchSize?: number;
  /** The id written over masked positions of token inputs (your vocabulary's [MASK]); required for token inputs. */
  maskTokenId?: number;
  /** Leading positions of token inputs that are never masked (1 keeps a [CLS] token at position 0). Default 0. */
  keepFirst?: number;
  /**
   * Token ids that are never masked wherever they stand (your vocabulary's [PAD], [CLS], [SEP]):
   * padded batches then keep their padding, which a model that reads its attention mask from the
   * ids ([PAD] = padding) needs, and the ratio counts each sample's real tokens only. Default none.
   */
  keepIds?: readonly number[];
  /** Generator for the masks (a fixed generator gives a fixed mask); the global one otherwise. */
  generator?: Generator;
}

const FLOATING = new Set(['float32', 'float64', 'float16', 'bfloat16']);
const INTEGER = new Set(['int64', 'int32', 'int16', 'int8', 'uint8']);

/** The kind of an input for masking, or null when the step cannot mask it from outside. */
export function inputKind(inputs: Tensor): InputKind | null {
  if (inputs.ndim === 4 && FLOATING.has(inputs.dtype)) return 'images';
  if (inputs.ndim === 2 && INTEGER.has(inputs.dtype)) return 'tokens';
  return null;
}

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

/**
 * Checks that inputs can be masked from outside with these options and returns the function
 * that masks them at a ratio; throws, naming what is missing, before any forward has run.
 * `modelName` appears in the message that tells the user to implement Maskable instead.
 */
export function inputMasker(inputs: Tensor, options: InputMaskingOptions, modelName = 'the model'): (ratio: number, generator?: Generator) => Tensor {
  const kind = inputKind(inputs);
  const shape = `[${inputs.shape.join(', ')}] (${inputs.dtype})`;
  if (kind === 'images') {
    const [, , height, width] = inputs.shape;
    const patchSize = options.patchSize ?? (height === width ? defaultMaskPatchSize(height) : undefined);
    if (patchSize === undefined) {
      throw new Error(`masking images ${shape}: they are not square, so give patchSize (a side in pixels that divides ${height} and ${width})`);
    }
    if (!Number.isInteger(patchSize) || patchSize < 1 || height % patchSize || width % patchSize) {
      throw new Error(`masking images ${shape}: patchSize ${patchSize} must be a positive integer that divides the height ${height} and the width ${width}`);
    }
    return (ratio, generator) => randomPatchZero(inputs, ratio, patchSize, generator ?? options.generator);
  }
  if (kind === 'tokens') {
    const { maskTokenId } = options;
    if (maskTokenId === undefined || !Number.isInteger(maskTokenId)) {
      throw new Error(`masking token ids ${shape}: give maskTokenId, the integer id of your vocabulary's [MASK] token (got ${maskTokenId})`);
    }
    const keepFirst = options.keepFirst ?? 0;
    if (!Number.isInteger(keepFirst) || keepFirst < 0 || keepFirst > inputs.size(1)) {
      throw new Error(`masking token ids ${shape}: keepFirst must be an integer in [0, ${inputs.size(1)}], got ${keepFirst}`);
    }
    const keepIds = options.keepIds ?? [];
    if (!keepIds.every((id) => Number.isInteger(id))) {
      throw new Error(`masking token ids ${shape}: keepIds must be integer token ids, got [${keepIds.join(', ')}]`);
    }
    return (ratio, generator) => randomIdMask(inputs, ratio, maskTokenId, { keepFirst, keepIds, generator: generator ?? options.generator });
  }
  throw new Error(
    `cannot mask inputs ${shape} from outside: only images [B, C, H, W] (floating point) and token ids [B, L] (integer) can be. ` +
    `Implement Maskable on ${modelName}: a 'masking' property ('drop-tokens', 'mask-tokens' or 'zero-patches') and ` +
    `forward(inputs, { maskRatio, generator }) that masks that fraction itself.`,
  );
}

/** Masks inputs from outside at a ratio (see {@link inputMasker} for the rules and errors). */
export function maskInputs(inputs: Tensor, ratio: number, options: InputMaskingOptions = {}): Tensor {
  if (!(ratio >= 0 && ratio < 1)) throw new RangeError(`mask ratio must be in [0, 1), got ${ratio}`);
  return inputMasker(inputs, options)(ratio);
}
