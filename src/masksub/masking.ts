// Masking that needs nothing from the model: the MaskSub sub-model's input masked from outside,
// for a model that does not mask by itself (see Maskable in models/classifier.ts). The kind of
// input decides how: floating-point images [B, C, H, W] get random square patches zeroed (as our
// ResNet does, the same function), integer token ids [B, L] get random positions replaced by a
// [MASK] id (BERT's masking without the 80/10/10 split: the sub-model only needs a masked view).
import type { Generator, Tensor } from '../tensor/tensor.js';
import { defaultMaskPatchSize, randomPatchZero } from '../models/resnet.js';
import { randomIdMask } from '../models/bert.js';

// The token rule lives with the BERT models, which mask their own ids (as the patch rule with the ResNet).
export { randomIdMask } from '../models/bert.js';

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
