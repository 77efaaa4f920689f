// Multi-tensor ops (libtorch's _foreach_*, native/foreach.cc): one addon call updates a whole list
// of tensors, the way torch.optim's foreach implementations step. `scalar` arguments are one
// number for every tensor or one per tensor. In place unless they return new tensors.
import { native } from './native.js';
import { Tensor } from './tensor.js';

const handles = (tensors: readonly Tensor[]): Tensor['handle'][] => tensors.map((tensor) => tensor.handle);

/** The second operand of a multi-tensor op: one tensor per tensor, one number for all, or one number per tensor. */
export type ForeachOperand = readonly Tensor[] | number | readonly number[];

/** Handles for a tensor list, or the number(s) as they are. */
function other(value: ForeachOperand): readonly Tensor['handle'][] | number | readonly number[] {
  const isTensors = Array.isArray(value) && value.length > 0 && value[0] instanceof Tensor;
  return isTensors ? handles(value as readonly Tensor[]) : (value as number | readonly number[]);
}

/** self[i] *= other[i] (tensors that broadcast to self[i], e.g. 0-d factors), or the number(s). */
export function foreachMul_(self: readonly Tensor[], scalar: ForeachOperand): void {
  if (self.length) native.foreachMul_(handles(self), other(scalar));
}

/** self[i] /= other[i] (tensors that broadcast to self[i]), or the number(s). */
export function foreachDiv_(self: readonly Tensor[], scalar: ForeachOperand): void {
  if (self.length) native.foreachDiv_(handles(self), other(scalar));
}

/** self[i] / other[i] (or the number(s)) as new tensors. */
export function foreachDiv(self: readonly Tensor[], divisor: ForeachOperand): Tensor[] {
  return self.length ? native.foreachDiv(handles(self), other(divisor)).map((handle) => new Tensor(handle)) : [];
}

/** self[i] + alpha * other[i] (or + the number(s)) as new tensors. */
export function foreachAdd(self: readonly Tensor[], addend: ForeachOperand, alpha?: number): Tensor[] {
  return self.length ? native.foreachAdd(handles(self), other(addend), alpha).map((handle) => new Tensor(handle)) : [];
}

/** self[i] += alpha * other[i] for tensors; self[i] += other (or other[i]) for numbers. */
export function foreachAdd_(self: readonly Tensor[], addend: ForeachOperand, alpha?: number): void {
  if (self.length) native.foreachAdd_(handles(self), other(addend), alpha);
}

/** self[i] += value * tensor1[i] * tensor2[i]. */
export function foreachAddcmul_(self: readonly Tensor[], tensor1: readonly Tensor[], tensor2: readonly Tensor[], value: number | readonly number[]): void {
  if (self.length) native.foreachAddcmul_(handles(self), handles(tensor1), handles(tensor2), value);
}

/** self[i] += value * tensor1[i] / tensor2[i]. */
export function foreachAddcdiv_(self: readonly Tensor[], tensor1: readonly Tensor[], tensor2: readonly Tensor[], value: number | readonly number[]): void {
  if (self.length) native.foreachAddcdiv_(handles(self), handles(tensor1), handles(tensor2), value);
}

/** sqrt of each tensor (new tensors). */
export function foreachSqrt(self: readonly Tensor[]): Tensor[] {
  return self.length ? native.foreachSqrt(handles(self)).map((handle) => new Tensor(handle)) : [];
}

/** The `ord`-norm of each tensor (0-d tensors). */
export function foreachNorm(self: readonly Tensor[], ord = 2): Tensor[] {
  return self.length ? native.foreachNorm(handles(self), ord).map((handle) => new Tensor(handle)) : [];
}

/**
 * The total `normType`-norm of `grads` taken as one vector (0 for none); with maxNorm, scales them
 * in place by maxNorm / (total + 1e-6) when that is below 1 (torch.nn.utils.clip_grad_norm_).
 * One addon call. `wide`: per-tensor norms in float32 (reduced-precision tensors widened first),
 * the norm of norms in float64. Returns the norm before scaling.
 */
export function foreachClipNorm_(grads: readonly Tensor[], normType: number, maxNorm: number | null, wide = false): number {
  return grads.length ? native.clipGradNorm_(handles(grads), normType, maxNorm, wide) : 0;
}
