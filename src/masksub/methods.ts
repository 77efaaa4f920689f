// The table of training methods: every method is one entry here, and everything else (the
// configuration schema, the CLI help, the training step, the report's order, colors and synthetic
// fixtures) reads this table. Adding a method is one entry; the mapped types below make the
// compiler point at every other table keyed by method (report colors, synthetic shapes) that
// lacks it. No tensor code here, so the report and the docs can import it without libtorch.
import type { ForwardOptions } from '../models/classifier.js';

/** A regularizer a method applies to a forward pass, at a strength r in (0, 1). */
export interface RegularizerDescriptor {
  /** What r means for this regularizer, in the words of help texts. */
  strength: string;
  description: string;
  /** The model's forward options that apply the regularizer at strength r. */
  forwardOptions(strength: number): ForwardOptions;
}

export const REGULARIZERS = {
  mask: {
    strength: 'mask ratio',
    description: 'MAE-style token dropping for ViT, patch zeroing for CNNs',
    forwardOptions: (strength: number): ForwardOptions => ({ maskRatio: strength }),
  },
  dropout: {
    strength: 'dropout rate',
    description: 'dropout after the attention projection and in the MLP of every block (the official DropSub sites)',
    forwardOptions: (strength: number): ForwardOptions => ({ dropoutRate: strength }),
  },
  dropPath: {
    strength: 'drop-path increase',
    description: 'stochastic depth (drop-path): each block\'s own rate raised by r',
    forwardOptions: (strength: number): ForwardOptions => ({ dropPathIncrease: strength }),
  },
} as const satisfies Record<string, RegularizerDescriptor>;

export type Regularizer = keyof typeof REGULARIZERS;

/** A method's default strength (for drop-path methods an increase over each block's own rate). */
export type DefaultStrength = number;

export interface MethodDescriptor {
  /** Trains a sub-model on regularized input next to the main model (the paper's *Sub rows). */
  readonly subModel: boolean;
  /** The regularizer the method applies (to the sub-model, or always to the single model). */
  readonly regularizer: Regularizer | null;
  readonly defaultStrength: DefaultStrength;
  /** One line for help texts and the README. */
  readonly description: string;
  /** For a sub-model method, the single-model method with the same regularizer always on. */
  readonly singleModel: string | null;
}

// Paper defaults: masking 0.5, dropout 0.2, drop-path main rate + 0.1 (../shared/MASKSUB.md):
// the drop-path methods' strength is that increase, applied per block.
// The order here is the order of help texts and reports: baseline, single models, sub-models.
export const METHOD_TABLE = {
  baseline: {
    subModel: false, regularizer: null, defaultStrength: 0, singleModel: null,
    description: 'the main model only, with the normal recipe',
  },
  masking: {
    subModel: false, regularizer: 'mask', defaultStrength: 0.5, singleModel: null,
    description: 'one model, its input always masked (the paper\'s single-model row)',
  },
  dropout: {
    subModel: false, regularizer: 'dropout', defaultStrength: 0.2, singleModel: null,
    description: 'one model with dropout always on',
  },
  droppath: {
    subModel: false, regularizer: 'dropPath', defaultStrength: 0.1, singleModel: null,
    description: 'one model with a higher drop-path rate always on',
  },
  masksub: {
    subModel: true, regularizer: 'mask', defaultStrength: 0.5, singleModel: 'masking',
    description: 'MaskSub: main model + a sub-model on masked input that matches the main model\'s prediction',
  },
  dropsub: {
    subModel: true, regularizer: 'dropout', defaultStrength: 0.2, singleModel: 'dropout',
    description: 'DropSub: main model + a sub-model with dropout',
  },
  pathsub: {
    subModel: true, regularizer: 'dropPath', defaultStrength: 0.1, singleModel: 'droppath',
    description: 'PathSub: main model + a sub-model with a higher drop-path rate',
  },
} as const satisfies Record<string, MethodDescriptor>;

export type Method = keyof typeof METHOD_TABLE;

/** The methods in table order (typed as a non-empty tuple, as enum schemas want; the table is not empty). */
export const METHODS = Object.keys(METHOD_TABLE) as unknown as readonly [Method, ...Method[]];

// Compile-time check of the table: a single-model counterpart names a method of the table.
type Counterparts = (typeof METHOD_TABLE)[Method]['singleModel'];
const counterpartsAreMethods: Counterparts extends Method | null ? true : never = true;
void counterpartsAreMethods;

export function isMethod(name: string): name is Method {
  return Object.hasOwn(METHOD_TABLE, name);
}

export function describeMethod(method: Method): MethodDescriptor {
  return METHOD_TABLE[method];
}

export function hasSubModel(method: Method): boolean {
  return METHOD_TABLE[method].subModel;
}

/** The regularizer strength a method uses when none is given; 0 for a method without one. */
export function defaultRatio(method: Method): number {
  return METHOD_TABLE[method].defaultStrength;
}

/** The default strength in the words of help texts: "0.5", "drop-path + 0.1", "-". */
export function describeDefaultRatio(method: Method): string {
  const descriptor = METHOD_TABLE[method];
  if (descriptor.regularizer === null) return '-';
  return descriptor.regularizer === 'dropPath' ? `+${descriptor.defaultStrength} per block` : String(descriptor.defaultStrength);
}

/** The forward options that apply the method's regularizer at strength r ({} for none). */
export function regularizer(method: Method, ratio: number): ForwardOptions {
  const kind: Regularizer | null = METHOD_TABLE[method].regularizer;
  return kind === null ? {} : REGULARIZERS[kind].forwardOptions(ratio);
}
