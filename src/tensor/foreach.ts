// Multi-tensor ops (libtorch's _foreach_*, native/foreach.cc): one addon call updates a whole list
// of tensors, the way torch.optim's foreach implementations step. `scalar` arguments are one
// number for every tensor or one per tensor. In place unless they return new tensors.
import { native } from './native.js';
import { Tensor } from './tensor.js';

const handles = (tensors: readonly Tensor[]): Tensor['handle'][] => tensors.map((tensor) => tensor.handle);

/** self[i] *= scalar (or scalar[i]). */
export function foreachMul_(self: readonly Tensor[], scalar: number | readonly number[]): void {
  if (self.length) native.foreachMul_(handles(self), scalar);
}

/** self[i] /= scalar (or scalar[i]). */
export function foreachDiv_(self: readonly Tensor[], scalar: number | readonly number[]): void {
  if (self.length) native.foreachDiv_(handles(self), scalar);
}

/** self[i] += alpha * other[i] for tensors; self[i] += other (or other[i]) for numbers. */
export function foreachAdd_(self: readonly Tensor[], other: readonly Tensor[] | number | readonly number[], alpha?: number): void {
  if (!self.length) return;
  const isTensors = Array.isArray(other) && other.length > 0 && other[0] instanceof Tensor;
  native.foreachAdd_(handles(self), isTensors ? handles(other as readonly Tensor[]) : (other as number | readonly number[]), alpha);
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
