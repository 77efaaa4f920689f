// Gradient norms over many parameters and PyTorch's clip_grad_norm_ (grads scaled in place).
import { type Device, noGrad, stack, type Tensor, tidy } from '../tensor/tensor.js';
import { foreachMul_, foreachNorm } from '../tensor/foreach.js';

function gradientsOf(parameters: Iterable<Tensor>): Tensor[] {
  const grads: Tensor[] = [];
  for (const parameter of parameters) {
    const grad = parameter.grad;
    if (grad) grads.push(grad);
  }
  return grads;
}

/** The norm of all gradients as one vector, as a 0-d tensor on the first gradient's device. */
function totalNorm(grads: Tensor[], normType: number): Tensor {
  const device = grads[0].device as Device;
  const onDevice = (value: Tensor): Tensor => (value.device === device ? value : value.to({ device }));
  if (normType === Infinity) return stack(grads.map((grad) => onDevice(grad.abs().max()))).max();
  // One multi-tensor call for the per-gradient norms (the same kernel as grad.norm) when they share a device.
  const norms = grads.every((grad) => grad.device === device) ? foreachNorm(grads, normType) : grads.map((grad) => onDevice(grad.norm(normType)));
  return stack(norms).norm(normType);
}

function checkNormType(normType: number): void {
  if (!(normType > 0)) throw new RangeError(`normType must be > 0 (Infinity for the max norm), got ${normType}`);
}

/** The norm of all gradients taken together (0 when no parameter has one). */
export function gradNorm(parameters: Iterable<Tensor>, normType = 2): number {
  checkNormType(normType);
  return tidy(() => noGrad(() => {
    const grads = gradientsOf(parameters);
    return grads.length === 0 ? 0 : totalNorm(grads, normType).item();
  }));
}

/**
 * torch.nn.utils.clip_grad_norm_: when the total norm exceeds maxNorm, multiplies every gradient
 * in place by maxNorm / (total + 1e-6). Returns the total norm before clipping.
 */
export function clipGradNorm(parameters: Iterable<Tensor>, maxNorm: number, normType = 2): number {
  checkNormType(normType);
  if (!(maxNorm >= 0)) throw new RangeError(`maxNorm must be >= 0, got ${maxNorm}`);
  return tidy(() => noGrad(() => {
    const grads = gradientsOf(parameters);
    if (grads.length === 0) return 0;
    const total = totalNorm(grads, normType);
    // Computed in the gradients' precision exactly as PyTorch does (maxNorm / t is reciprocal(t) * maxNorm).
    const coefficient = total.add(1e-6).reciprocal().mul(maxNorm).clamp(null, 1);
    // One read of both numbers; a coefficient of exactly 1 would leave the gradients unchanged,
    // so they are only touched when clipping (or a NaN norm, which PyTorch propagates) applies.
    const [norm, factor] = Array.from(stack([total.to({ dtype: 'float64' }), coefficient.to({ dtype: 'float64' })]).toTypedArray() as Float64Array);
    if (!(factor >= 1)) {
      // The float32 coefficient as a number is exact, so this equals grad.mul_(coefficient).
      if (Number.isNaN(factor)) for (const grad of grads) grad.mul_(coefficient.device === grad.device ? coefficient : coefficient.to({ device: grad.device as Device }));
      else foreachMul_(grads, factor);
    }
    return norm;
  }));
}
