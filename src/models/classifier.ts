// The contract every image classifier here meets: one forward whose options carry the
// sub-model regularizers (token/patch masking, dropout and drop-path rates), so the MaskSub
// step, not the model, decides how each branch runs.
import type { Generator, Tensor } from '../tensor/tensor.js';
import { Dropout, DropPath, Linear, Module, sampleNoise } from '../nn/index.js';
import { constant_, truncNormal_ } from '../nn/init.js';

export interface ForwardOptions {
  /** Fraction of the input to mask (ViT: tokens dropped; CNN: patches zeroed). 0 = none. */
  maskRatio?: number;
  /** Dropout probability of every dropout without a fixed rate, for this forward only (DropSub / the dropout method). */
  dropoutRate?: number;
  /** Drop-path rate of every block for this forward only. */
  dropPathRate?: number;
  /**
   * Raises each block's own drop-path rate by this much for this forward only, at most to
   * {@link MAX_DROP_PATH} (PathSub / the drop-path method: the paper's main rate + 0.1, per block,
   * so timm's linear schedule over depth is kept). dropPathRate wins when both are given.
   */
  dropPathIncrease?: number;
  /** Generator for the masks (fixed probe sets); the global one otherwise. */
  generator?: Generator;
}

/**
 * How a model's forward applies {@link ForwardOptions.maskRatio}:
 * - `'drop-tokens'`: the sub-model sees fewer tokens (MAE-style random keep; our ViT),
 * - `'mask-tokens'`: masked positions are replaced by a [MASK] token or embedding,
 * - `'zero-patches'`: random square patches of the input are set to 0 (our ResNet).
 */
export type MaskingKind = 'drop-tokens' | 'mask-tokens' | 'zero-patches';

export const MASKING_KINDS: readonly MaskingKind[] = ['drop-tokens', 'mask-tokens', 'zero-patches'];

/**
 * A model that masks its own input for the MaskSub step, which can be better than masking from
 * outside (a transformer that drops tokens also runs faster on them). Implement it on your own
 * model: declare how you mask in `masking`, and honour `maskRatio` (and `generator`, so a fixed
 * generator gives a fixed mask) in forward. `masksub.step` then passes the mask ratio to your
 * forward instead of masking the input itself. Dropout and drop-path rates need nothing from the
 * model: the step sets them on its `nn.Dropout` / `nn.DropPath` modules for the sub forward.
 */
export interface Maskable {
  readonly masking: MaskingKind;
  forward(inputs: Tensor, options?: ForwardOptions): Tensor;
}

/** Whether a model declares the {@link Maskable} interface (a known `masking` kind and a forward). */
export function isMaskable(model: object): model is Maskable {
  const candidate = model as { masking?: unknown; forward?: unknown };
  return typeof candidate.forward === 'function' && MASKING_KINDS.includes(candidate.masking as MaskingKind);
}

/**
 * What the two-branch step needs of a model: a Module whose forward applies the
 * {@link ForwardOptions} itself (every Classifier; masksub.step wraps any other Module in one).
 */
export type StepModel = Module & { forward(inputs: Tensor, options?: ForwardOptions): Tensor };

/** The highest drop-path rate a dropPathIncrease reaches: some paths always survive. */
export const MAX_DROP_PATH = 0.95;

/**
 * Runs fn with every Dropout / DropPath in the module tree set to the given rates, then restores
 * the previous rates even if fn throws, so a sub forward's rates never leak into the main forward.
 */
export function withForwardRates<T>(model: Module, options: ForwardOptions, fn: () => T): T {
  const saved: [Dropout | DropPath, number][] = [];
  try {
    for (const module of model.modules()) {
      if (module instanceof Dropout && options.dropoutRate !== undefined && !module.fixedRate) {
        saved.push([module, module.p]);
        module.p = options.dropoutRate;
      } else if (module instanceof DropPath && (options.dropPathRate !== undefined || options.dropPathIncrease !== undefined)) {
        saved.push([module, module.p]);
        module.p = options.dropPathRate ?? Math.min(MAX_DROP_PATH, module.p + (options.dropPathIncrease as number));
      }
    }
    return fn();
  } finally {
    for (const [module, rate] of saved) module.p = rate;
  }
}

export interface ClassifierInfo {
  family: 'vit' | 'resnet' | 'swin' | 'beit' | 'bert';
  imageSize: number;
  inChannels: number;
  numClasses: number;
}

export abstract class Classifier extends Module {
  abstract readonly info: ClassifierInfo;
  abstract forward(images: Tensor, options?: ForwardOptions): Tensor;

  /** Parameter names excluded from weight decay besides 1-D parameters (timm's no_weight_decay). */
  noWeightDecay(): string[] {
    return [];
  }

  /** Runs fn with the options' dropout / drop-path rates set (see {@link withForwardRates}). */
  protected withRates<T>(options: ForwardOptions, fn: () => T): T {
    return withForwardRates(this, options, fn);
  }
}

/**
 * Uniform noise of `shape` on `device` that chooses what a mask masks: nn's sampleNoise (a fixed
 * generator's draw for probe sets; this rank's rows of the global batch's noise in a data-parallel
 * run; the device's global generator otherwise).
 */
export function maskNoise(shape: number[], device: string, generator?: Generator): Tensor {
  return sampleNoise(shape, device, generator);
}

export function checkRatio(name: string, value: number | undefined): void {
  if (value !== undefined && !(value >= 0 && value < 1)) {
    throw new RangeError(`${name} must be in [0, 1), got ${value}`);
  }
}

/** timm's init_weights_vit_timm for the transformers: every Linear's weight trunc_normal(std), its bias 0. */
export function initLinearsTimm(model: Module, std = 0.02): void {
  for (const module of model.modules()) {
    if (module instanceof Linear) {
      truncNormal_(module.weight, std);
      if (module.bias) constant_(module.bias, 0);
    }
  }
}
