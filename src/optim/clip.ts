// Gradient norms over many parameters and PyTorch's clip_grad_norm_ (grads scaled in place). Both
// are one addon call (native/foreach.cc clipGradNorm_): the per-gradient norms, the norm of norms,
// the clip factor and the in-place scaling run in C++, with the kernels and order PyTorch uses.
import { foreachClipNorm_ } from '../tensor/foreach.js';
import { type Tensor, tidy } from '../tensor/tensor.js';

function gradientsOf(parameters: Iterable<Tensor>): Tensor[] {
  const grads: Tensor[] = [];
  for (const parameter of parameters) {
    const grad = parameter.grad;
    if (grad) grads.push(grad);
  }
  return grads;
}

function checkNormType(normType: number): void {
  if (!(normType > 0)) throw new RangeError(`normType must be > 0 (Infinity for the max norm), got ${normType}`);
}

/** The norm of all gradients taken together (0 when no parameter has one). */
export function gradNorm(parameters: Iterable<Tensor>, normType = 2): number {
  checkNormType(normType);
  // tidy frees the .grad handles read here.
  return tidy(() => foreachClipNorm_(gradientsOf(parameters), normType, null));
}

/**
 * torch.nn.utils.clip_grad_norm_: when the total norm exceeds maxNorm, multiplies every gradient
 * in place by maxNorm / (total + 1e-6). Returns the total norm before clipping.
 */
export function clipGradNorm(parameters: Iterable<Tensor>, maxNorm: number, normType = 2): number {
  checkNormType(normType);
  if (!(maxNorm >= 0)) throw new RangeError(`maxNorm must be >= 0, got ${maxNorm}`);
  return tidy(() => foreachClipNorm_(gradientsOf(parameters), normType, maxNorm));
}

