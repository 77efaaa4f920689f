// The training methods compared in the paper: baseline, single-model regularization
// (masking, dropout, drop-path) and the sub-model variants (MaskSub, DropSub, PathSub), and
// the two-branch training step of MaskSub (../shared/MASKSUB.md, paper Algorithm 1).
import { type DType, keep, noGrad, type Tensor, tidy } from '../tensor/tensor.js';
import * as F from '../nn/functional.js';
import type { ForwardOptions, StepModel } from '../models/classifier.js';
import { type AutocastDtype, autocast } from '../tensor/autocast.js';
import { foreachClipNorm_ } from '../tensor/foreach.js';
import type { Module, Parameter } from '../nn/module.js';
import { hasSubModel, type Method, regularizer } from './methods.js';

// The methods themselves (names, sub-model or not, default strengths, regularizers) are one
// table in methods.ts; re-exported here for the step's existing importers.
export { defaultRatio, hasSubModel, isMethod, type Method, METHODS, regularizer } from './methods.js';

export type LossKind = 'ce' | 'bce';

export interface Criterion {
  kind: LossKind;
  /** CE label smoothing, applied to integer labels (soft mixup targets carry their own). */
  labelSmoothing: number;
  /** BCE with DeiT-III target binarization: label targets > threshold become 1 (null: off). */
  bceTargetThreshold: number | null;
}

/** The main loss L1 against the labels: integer [B] or soft (mixup/cutmix) [B, K] targets. */
export function labelLoss(logits: Tensor, targets: Tensor, criterion: Criterion): Tensor {
  return tidy(() => {
    if (criterion.kind === 'ce') {
      if (targets.ndim === 1) return F.crossEntropy(logits, targets, { labelSmoothing: criterion.labelSmoothing });
      return F.crossEntropy(logits, targets);
    }
    const classes = logits.size(1);
    let dense = targets.ndim === 1 ? smoothOneHot(targets, classes, criterion.labelSmoothing, logits.dtype) : targets;
    if (criterion.bceTargetThreshold !== null) dense = dense.gt(criterion.bceTargetThreshold).to({ dtype: logits.dtype });
    return F.binaryCrossEntropyWithLogits(logits, dense);
  });
}

function smoothOneHot(labels: Tensor, classes: number, smoothing: number, dtype: DType): Tensor {
  const off = smoothing / classes;
  // in the logits' dtype: a float32 target would pull float64 logits down to float32 precision
  return labels.oneHot(classes).to({ dtype }).mul(1 - smoothing).add(off);
}

/**
 * The sub-model loss L2: the same criterion against the main model's detached prediction
 * (softmax for CE, sigmoid for BCE, temperature 1, never thresholded).
 */
export function subLoss(subLogits: Tensor, mainLogits: Tensor, kind: LossKind): Tensor {
  return tidy(() => {
    const teacher = mainLogits.detach();
    if (kind === 'ce') return F.crossEntropy(subLogits, teacher.softmax(-1));
    return F.binaryCrossEntropyWithLogits(subLogits, teacher.sigmoid());
  });
}

export interface StepConfig {
  method: Method;
  ratio: number;
  /** w2; the main loss weight is w1 = 1 - w2 (paper: 1/2 each), unless mainWeight says otherwise. */
  subWeight: number;
  /**
   * w1, the main loss weight of the sub-model methods; default 1 - subWeight (the paper's
   * average). 1 keeps the main objective at full strength (the trainer's --loss-form additive):
   * with SGD, whose step scales with the loss, the average halves the main objective's step.
   */
  mainWeight?: number;
  criterion: Criterion;
  /** Divides both losses (gradient accumulation over this many micro-batches). */
  lossScale?: number;
  /**
   * Mixed precision of the forward passes (torch.autocast on the inputs' device); the logits are
   * cast to float32, so both losses and the MaskSub target are computed in float32. Default off.
   */
  amp?: AutocastDtype | null;
  /**
   * Multiplies both losses before their backward (float16 loss scaling, optim's GradScaler); the
   * gradients then hold scaled values for the caller to unscale. Reported losses and gradient
   * norms are unscaled. Default 1.
   */
  gradScale?: number;
  /**
   * Whether the sub forward may update running statistics (BatchNorm's running mean/variance and
   * any other buffer a forward changes). Default false: the sub forward normalizes with its own
   * batch statistics, but evaluation's statistics come from clean inputs only. true is the
   * official code's behaviour (resnet_rsb/train.py runs the sub forward in train mode), kept for
   * comparison: there the masked batches, half of all forwards, shift the statistics evaluation uses.
   */
  subUpdatesRunningStats?: boolean;
  /**
   * What the sub-model learns: 'teacher' (default), the main model's detached prediction, as the
   * paper's method; 'labels', the labels with the main criterion, the paper's "without KD loss"
   * ablation (Table A.6).
   */
  subTarget?: 'teacher' | 'labels';
}

export interface StepResult {
  /** w1*L1 + w2*L2 (or L1 alone), before any accumulation scaling. */
  loss: number;
  lossMain: number;
  lossSub: number | null;
  gradNormMain: number;
  gradNormSub: number | null;
  finite: boolean;
}

/** A handle to each parameter's .grad (null where it has none); the caller disposes them. */
export function gradients(parameters: Parameter[]): (Tensor | null)[] {
  return parameters.map((parameter) => parameter.grad);
}

/** The norm of all gradients taken together (one branch's gradient norm, paper Fig. 3). */
export function gradientNorm(grads: (Tensor | null)[]): number {
  // One vector norm per gradient (in float32 for reduced-precision ones), then the norm of norms
  // in float64: one addon call (native/foreach.cc clipGradNorm_ without a limit).
  return foreachClipNorm_(grads.filter((g): g is Tensor => g !== null), 2, null, true);
}

/**
 * Sets each parameter's .grad to the sum of its entries in `lists` (gradients kept apart per
 * branch, and what .grad held before), or none when every entry is null. The lists stay the
 * caller's to dispose.
 */
export function setSummedGradients(parameters: Parameter[], lists: readonly (readonly (Tensor | null)[])[]): void {
  noGrad(() => {
    parameters.forEach((parameter, index) => {
      const parts = lists.map((list) => list[index] ?? null).filter((g): g is Tensor => g !== null);
      if (!parts.length) {
        parameter.zeroGrad();
        return;
      }
      const total = parts.length === 1 ? parts[0]! : tidy(() => parts.reduce((a, b) => a.add(b)));
      parameter.grad = total;
      if (parts.length > 1) total.dispose(); // .grad holds its own reference
    });
  });
}

/**
 * Copies of every buffer of the model (running statistics), put back by restore(). A model
 * without buffers (ViT, LayerNorm only) costs nothing. Measured on resnet_tiny (36 buffers),
 * batch 128, 2-core CPU under load (scratch timing, median of 200 vs 15 repeats): 0.11 ms for copy
 * and restore against 624 ms for the MaskSub step (< 0.1%).
 */
function freezeBuffers(model: Module): { restore(): void } {
  const buffers = model.buffers();
  if (!buffers.length) return { restore: () => undefined };
  const saved = noGrad(() => buffers.map((buffer) => keep(buffer.clone())));
  return {
    restore: () => {
      noGrad(() => buffers.forEach((buffer, index) => buffer.copy_(saved[index])));
      for (const copy of saved) copy.dispose();
    },
  };
}

/**
 * One forward/backward of a method on a batch; gradients are added to what .grad holds
 * (so accumulation works), the optimizer step is the caller's. As the official code, the main
 * branch is backpropagated before the sub forward runs, so one graph is alive at a time.
 * The two terms' gradients are kept apart long enough to measure each norm (paper Fig. 3).
 */
export function methodStep(model: StepModel, images: Tensor, targets: Tensor, config: StepConfig): StepResult {
  const { method, ratio, subWeight, criterion } = config;
  const scale = (config.gradScale ?? 1) / (config.lossScale ?? 1);
  const amp = config.amp ?? null;
  const forward = (options: ForwardOptions): Tensor => amp === null
    ? model.forward(images, options)
    : autocast({ device: images.device, dtype: amp }, () => model.forward(images, options)).to({ dtype: 'float32' });
  const parameters = model.parameters();
  const previous = gradients(parameters);
  for (const parameter of parameters) parameter.zeroGrad();
  const single = hasSubModel(method) ? {} : regularizer(method, ratio);
  const mainWeight = hasSubModel(method) ? config.mainWeight ?? 1 - subWeight : 1;

  const main = tidy(() => {
    const logits = forward(single);
    const loss = labelLoss(logits, targets, criterion);
    loss.mul(mainWeight * scale).backward();
    return { value: loss.item(), teacher: logits.detach() };
  });
  const lossMain = main.value;
  const mainGrads = gradients(parameters);
  const gradNormMain = gradientNorm(mainGrads) / scale;

  let lossSub: number | null = null;
  let gradNormSub: number | null = null;
  let subGrads: (Tensor | null)[] = [];
  if (hasSubModel(method)) {
    for (const parameter of parameters) parameter.zeroGrad();
    const frozen = config.subUpdatesRunningStats ? null : freezeBuffers(model);
    try {
      lossSub = tidy(() => {
        const logits = forward(regularizer(method, ratio));
        const loss = config.subTarget === 'labels' ? labelLoss(logits, targets, criterion) : subLoss(logits, main.teacher, criterion.kind);
        loss.mul(subWeight * scale).backward();
        return loss.item();
      });
    } finally {
      frozen?.restore();
    }
    subGrads = gradients(parameters);
    gradNormSub = gradientNorm(subGrads) / scale;
  }
  main.teacher.dispose();

  // With a single branch and nothing accumulated before, .grad already holds the result.
  const onlyMain = !hasSubModel(method) && previous.every((g) => g === null);
  if (!onlyMain) setSummedGradients(parameters, [previous, mainGrads, subGrads]);
  for (const list of [previous, mainGrads, subGrads]) for (const g of list) g?.dispose();

  const loss = hasSubModel(method) ? mainWeight * lossMain + subWeight * (lossSub as number) : lossMain;
  return { loss, lossMain, lossSub, gradNormMain, gradNormSub, finite: Number.isFinite(loss) };
}
