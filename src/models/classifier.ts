// The contract every image classifier here meets: one forward whose options carry the
// sub-model regularizers (token/patch masking, dropout and drop-path rates), so the MaskSub
// step, not the model, decides how each branch runs.
import type { Generator, Tensor } from '../tensor/tensor.js';
import { Dropout, DropPath, Module } from '../nn/index.js';

export interface ForwardOptions {
  /** Fraction of the input to mask (ViT: tokens dropped; CNN: patches zeroed). 0 = none. */
  maskRatio?: number;
  /** Dropout probability for this forward only (DropSub / the dropout method). */
  dropoutRate?: number;
  /** Drop-path rate of every block for this forward only (PathSub / the drop-path method). */
  dropPathRate?: number;
  /** Generator for the masks (fixed probe sets); the global one otherwise. */
  generator?: Generator;
}

export interface ClassifierInfo {
  family: 'vit' | 'resnet';
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

  /**
   * Runs fn with every Dropout / DropPath set to the given rates, then restores the previous
   * rates even if fn throws, so a sub forward's rates never leak into the main forward.
   */
  protected withRates<T>(options: ForwardOptions, fn: () => T): T {
    const saved: [Dropout | DropPath, number][] = [];
    for (const module of this.modules()) {
      if (module instanceof Dropout && options.dropoutRate !== undefined) {
        saved.push([module, module.p]);
        module.p = options.dropoutRate;
      } else if (module instanceof DropPath && options.dropPathRate !== undefined) {
        saved.push([module, module.p]);
        module.p = options.dropPathRate;
      }
    }
    try {
      return fn();
    } finally {
      for (const [module, rate] of saved) module.p = rate;
    }
  }
}

export function checkRatio(name: string, value: number | undefined): void {
  if (value !== undefined && !(value >= 0 && value < 1)) {
    throw new RangeError(`${name} must be in [0, 1), got ${value}`);
  }
}
