// masksub.step: one MaskSub (or DropSub, PathSub, baseline...) training step for any Module whose
// forward takes a tensor, in the user's own loop. It runs the same two-branch step as our trainer
// (methodStep in method.ts): a model that applies the forward options itself (our Classifiers)
// goes straight in; any other Module is wrapped in a forward that applies them from outside:
// the mask through the model's Maskable forward or on the input (masking.ts), dropout and
// drop-path rates on the model's nn.Dropout / nn.DropPath modules. Everything a step needs is
// checked before the first forward, so a step that is refused leaves the gradients untouched.
import type { Tensor } from '../tensor/tensor.js';
import { Dropout, DropPath, Module } from '../nn/index.js';
import { checkRatio, Classifier, type ForwardOptions, isMaskable, withForwardRates } from '../models/classifier.js';
import { type Criterion, methodStep, type StepConfig, type StepResult } from './method.js';
import { defaultRatio, describeMethod, hasSubModel, isMethod, type Method, METHODS } from './methods.js';
import { type InputMaskingOptions, inputMasker } from './masking.js';

/** A model masksub.step can train: any Module with a forward over one tensor. */
export type ForwardModule = Module & { forward(inputs: Tensor): Tensor };

export interface StepOptions extends InputMaskingOptions, Pick<StepConfig, 'subTarget' | 'subUpdatesRunningStats'> {
  /** The method: 'masksub' (the paper), 'dropsub', 'pathsub', a single-model regularizer or 'baseline'. */
  method: Method;
  /** The regularizer's strength in [0, 1): mask ratio, dropout rate, or drop-path increase. Default: the method's (masksub 0.5). */
  ratio?: number;
  /** w2, the sub-model loss weight; the main loss gets 1 - w2 unless mainWeight is given. Default 0.5 (the paper's). */
  subWeight?: number;
  /** w1, the main loss weight of the sub-model methods (default 1 - subWeight); 1 for SGD-style full-strength main steps. */
  mainWeight?: number;
  /** The loss: cross-entropy (default) or BCE, with label smoothing / target threshold. */
  criterion?: Partial<Criterion>;
  /** Divides both losses (gradient accumulation over this many micro-batches). Default 1. */
  lossScale?: number;
}

/** Cross-entropy on the labels, no smoothing: what `criterion` fills in. */
export const DEFAULT_CRITERION: Criterion = { kind: 'ce', labelSmoothing: 0, bceTargetThreshold: null };

/**
 * One training step of a method on a batch: the main forward and loss against `targets`
 * (integer labels [B] or soft targets [B, K]), and for a sub-model method the regularized
 * sub forward and its loss against the main model's detached prediction, both backpropagated.
 * Gradients are added to what `.grad` holds (accumulation works); the optimizer step is yours.
 * Returns the losses and the gradient norm of each term (paper Fig. 3).
 *
 * Masking: a model that implements {@link Maskable} masks itself (forward gets `maskRatio`);
 * otherwise the step masks the input: image patches zeroed, or token ids replaced by
 * `maskTokenId`. DropSub sets the rate of the model's `nn.Dropout` modules (all but those made
 * with `fixedRate`), PathSub raises each `nn.DropPath`'s own rate by `ratio` (at most 0.95), for
 * the regularized forward only.
 *
 * @example
 * ```ts
 * const result = masksub.step(model, images, labels, { method: 'masksub', ratio: 0.5 });
 * optimizer.step();
 * optimizer.zeroGrad();
 * ```
 */
export function step(model: ForwardModule, inputs: Tensor, targets: Tensor, options: StepOptions): StepResult {
  const { method } = options;
  if (!isMethod(method)) throw new Error(`masksub.step: unknown method ${JSON.stringify(method)}; one of ${METHODS.join(', ')}`);
  if (!(model instanceof Module) || typeof model.forward !== 'function') {
    throw new TypeError('masksub.step: model must be an nn.Module with a forward(inputs) method');
  }
  const name = model.constructor.name || 'the model';
  const ratio = options.ratio ?? defaultRatio(method);
  checkRatio(`masksub.step: ratio of method "${method}"`, ratio);
  const subWeight = options.subWeight ?? 0.5;
  if (!(subWeight >= 0 && subWeight <= 1)) throw new RangeError(`masksub.step: subWeight must be in [0, 1], got ${subWeight}`);
  if (options.mainWeight !== undefined && !(options.mainWeight >= 0 && Number.isFinite(options.mainWeight))) throw new RangeError(`masksub.step: mainWeight must be a finite number >= 0, got ${options.mainWeight}`);
  const lossScale = options.lossScale ?? 1;
  if (!(lossScale > 0 && Number.isFinite(lossScale))) throw new RangeError(`masksub.step: lossScale must be a positive number, got ${lossScale}`);
  const criterion: Criterion = { ...DEFAULT_CRITERION, ...options.criterion };
  if (!model.parameters().length) throw new Error(`masksub.step: ${name} has no parameters (register them with registerParameter or registerModule)`);
  if (inputs.ndim === 0 || targets.ndim === 0 || inputs.size(0) !== targets.size(0)) {
    throw new Error(`masksub.step: inputs [${inputs.shape.join(', ')}] and targets [${targets.shape.join(', ')}] must have the same batch size (first dimension)`);
  }
  checkRegularizerModules(model, method, name);
  const config: StepConfig = {
    method, ratio, subWeight, mainWeight: options.mainWeight, criterion, lossScale, subTarget: options.subTarget, subUpdatesRunningStats: options.subUpdatesRunningStats,
  };
  if (model instanceof Classifier) return methodStep(model, inputs, targets, config);
  return methodStep(new OptionsFromOutside(model, inputs, options, method, name), inputs, targets, config);
}

/** A dropout or drop-path method needs modules that carry the rate; without them it would silently be the baseline. */
function checkRegularizerModules(model: Module, method: Method, name: string): void {
  const regularizer = describeMethod(method).regularizer;
  if (regularizer !== 'dropout' && regularizer !== 'dropPath') return;
  const carriers = model.modules().filter((module) => (regularizer === 'dropout' ? module instanceof Dropout && !module.fixedRate : module instanceof DropPath));
  if (carriers.length) return;
  const which = hasSubModel(method) ? 'for the sub forward' : 'for every forward';
  const [what, layer] = regularizer === 'dropout'
    ? ['sets the rate of the model\'s nn.Dropout modules (those not made with fixedRate)', 'nn.Dropout']
    : ['raises the rate of the model\'s nn.DropPath modules', 'nn.DropPath'];
  throw new Error(
    `masksub.step: method "${method}" ${what} ${which}, but ${name} has none. ` +
    `Add ${layer} layers (registered with registerModule) where the model should drop.`,
  );
}

/**
 * The user's model with a forward that takes the step's options: dropout / drop-path rates on
 * its modules, the mask through its own Maskable forward or on the input. Registers the model
 * as its only child, so parameters() and buffers() are the model's own, in the same order.
 */
class OptionsFromOutside extends Module {
  private readonly mask: ((ratio: number, generator?: ForwardOptions['generator']) => Tensor) | null;
  private readonly generator: ForwardOptions['generator'];
  constructor(private readonly model: ForwardModule, inputs: Tensor, masking: InputMaskingOptions, method: Method, name: string) {
    super();
    this.registerModule('model', model);
    this.training = model.training;
    const masks = describeMethod(method).regularizer === 'mask';
    // Checked now, before the main forward: a refused step must not leave half its gradients behind.
    this.mask = masks && !isMaskable(model) ? inputMasker(inputs, masking, name) : null;
    this.generator = masking.generator;
  }

  forward(inputs: Tensor, options: ForwardOptions = {}): Tensor {
    const generator = options.generator ?? this.generator;
    return withForwardRates(this.model, options, () => {
      if (!options.maskRatio) return this.model.forward(inputs);
      if (isMaskable(this.model)) return this.model.forward(inputs, { ...options, generator });
      if (!this.mask) throw new Error('masksub.step: a mask was asked for, but none was planned'); // unreachable: planned for every masking method
      // the masked copy is freed by the step's tidy scope around this forward
      return this.model.forward(this.mask(options.maskRatio, generator));
    });
  }
}

// What a user needs to write a Maskable model of their own, from the same place as step().
export { type ForwardOptions, isMaskable, type Maskable, type MaskingKind } from '../models/classifier.js';
export { randomTokenKeep } from '../models/vit.js';
export { randomPatchZero } from '../models/resnet.js';
