// torch.nn.functional for this package: layers and losses as plain functions over tensors.
import { native } from '../tensor/native.js';
import { type Reduction, Tensor, wrapHandle as wrap } from '../tensor/tensor.js';

export type Pair = number | [number, number];
const pair = (value: Pair): number[] => (typeof value === 'number' ? [value, value] : value);

export function linear(input: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  return wrap(native.linear(input.handle, weight.handle, bias?.handle ?? null));
}

export interface Conv2dOptions { stride?: Pair; padding?: Pair; dilation?: Pair; groups?: number }
export function conv2d(input: Tensor, weight: Tensor, bias: Tensor | null = null, options: Conv2dOptions = {}): Tensor {
  return wrap(native.conv2d(input.handle, weight.handle, bias?.handle ?? null,
    pair(options.stride ?? 1), pair(options.padding ?? 0), pair(options.dilation ?? 1), options.groups ?? 1));
}

export function maxPool2d(input: Tensor, kernelSize: Pair, stride?: Pair, padding: Pair = 0, dilation: Pair = 1, ceilMode = false): Tensor {
  return wrap(native.maxPool2d(input.handle, pair(kernelSize), pair(stride ?? kernelSize), pair(padding), pair(dilation), ceilMode));
}

export function avgPool2d(input: Tensor, kernelSize: Pair, stride?: Pair, padding: Pair = 0, ceilMode = false, countIncludePad = true): Tensor {
  return wrap(native.avgPool2d(input.handle, pair(kernelSize), pair(stride ?? kernelSize), pair(padding), ceilMode, countIncludePad));
}

export function adaptiveAvgPool2d(input: Tensor, outputSize: Pair): Tensor {
  return wrap(native.adaptiveAvgPool2d(input.handle, pair(outputSize)));
}

export function adaptiveMaxPool2d(input: Tensor, outputSize: Pair): Tensor {
  return wrap(native.adaptiveMaxPool2d(input.handle, pair(outputSize)));
}

export function layerNorm(input: Tensor, normalizedShape: number[], weight?: Tensor | null, bias?: Tensor | null, eps = 1e-5): Tensor {
  return wrap(native.layerNorm(input.handle, normalizedShape, weight?.handle ?? null, bias?.handle ?? null, eps));
}

export interface BatchNormOptions {
  weight?: Tensor | null;
  bias?: Tensor | null;
  runningMean?: Tensor | null;
  runningVar?: Tensor | null;
  training: boolean;
  momentum?: number;
  eps?: number;
}
/** Batch norm; in training mode running statistics are updated in place (PyTorch semantics). */
export function batchNorm(input: Tensor, options: BatchNormOptions): Tensor {
  return wrap(native.batchNorm(input.handle, options.weight?.handle ?? null, options.bias?.handle ?? null,
    options.runningMean?.handle ?? null, options.runningVar?.handle ?? null, options.training,
    options.momentum ?? 0.1, options.eps ?? 1e-5));
}

export interface SyncBatchNormOptions {
  weight: Tensor;
  bias: Tensor;
  runningMean?: Tensor | null;
  runningVar?: Tensor | null;
  momentum?: number;
  eps?: number;
}

/**
 * Training-mode batch norm over the batches of every rank of the data-parallel job together
 * (torch.nn.SyncBatchNorm; native/distributed.cc): the statistics are all-reduced in the forward,
 * the two gradient reductions in the backward, and the running statistics take the global values.
 * Needs the process group (ProcessGroup.init); every rank must call it in the same order.
 */
export function syncBatchNorm(input: Tensor, options: SyncBatchNormOptions): Tensor {
  return wrap(native.syncBatchNorm(input.handle, options.weight.handle, options.bias.handle,
    options.runningMean?.handle ?? null, options.runningVar?.handle ?? null, options.momentum ?? 0.1, options.eps ?? 1e-5));
}

export function dropout(input: Tensor, p: number, training = true): Tensor {
  if (!(p >= 0 && p <= 1)) throw new RangeError(`dropout probability must be in [0, 1], got ${p}`);
  return wrap(native.dropout(input.handle, p, training));
}

export function embedding(weight: Tensor, indices: Tensor, paddingIndex?: number): Tensor {
  return wrap(native.embedding(weight.handle, indices.handle, paddingIndex ?? null));
}

export interface CrossEntropyOptions {
  weight?: Tensor | null;
  reduction?: Reduction;
  ignoreIndex?: number;
  labelSmoothing?: number;
}
/** Cross entropy on logits [N, C]; target holds class indices [N] (int64) or probabilities [N, C]. */
export function crossEntropy(logits: Tensor, target: Tensor, options: CrossEntropyOptions = {}): Tensor {
  return wrap(native.crossEntropy(logits.handle, target.handle, options.weight?.handle ?? null,
    options.reduction ?? 'mean', options.ignoreIndex ?? -100, options.labelSmoothing ?? 0));
}

export interface BceOptions { weight?: Tensor | null; posWeight?: Tensor | null; reduction?: Reduction }
export function binaryCrossEntropyWithLogits(logits: Tensor, target: Tensor, options: BceOptions = {}): Tensor {
  return wrap(native.binaryCrossEntropyWithLogits(logits.handle, target.handle, options.weight?.handle ?? null,
    options.posWeight?.handle ?? null, options.reduction ?? 'mean'));
}

export function mseLoss(input: Tensor, target: Tensor, reduction: Reduction = 'mean'): Tensor {
  return wrap(native.mseLoss(input.handle, target.handle, reduction));
}

export function nllLoss(logProbabilities: Tensor, target: Tensor, reduction: Reduction = 'mean'): Tensor {
  return wrap(native.nllLoss(logProbabilities.handle, target.handle, null, reduction, -100));
}

/** KL(target || input) with input given as log-probabilities (torch.nn.functional.kl_div). */
export function klDiv(logInput: Tensor, target: Tensor, reduction: Reduction = 'mean', logTarget = false): Tensor {
  return wrap(native.klDiv(logInput.handle, target.handle, reduction, logTarget));
}
