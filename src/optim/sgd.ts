// SGD with PyTorch's semantics (torch.optim.SGD): coupled L2 weight decay added to the gradient,
// momentum whose first buffer is the gradient itself, optional dampening and Nesterov momentum.
import type { Tensor } from '../tensor/tensor.js';
import { keep } from '../tensor/tensor.js';
import { checkNonNegative, Optimizer, type ParamGroupSpec } from './optimizer.js';

export interface SGDOptions {
  lr: number;
  /** Default 0 (plain SGD). */
  momentum?: number;
  /** Default 0. */
  dampening?: number;
  /** Default false. */
  nesterov?: boolean;
  /** Default 0. */
  weightDecay?: number;
}

export class SGD extends Optimizer {
  readonly kind = 'sgd';

  protected override stateBufferNames(): readonly string[] {
    return this.momentum !== 0 ? ['momentum_buffer'] : [];
  }
  readonly momentum: number;
  readonly dampening: number;
  readonly nesterov: boolean;

  constructor(params: Iterable<Tensor> | readonly ParamGroupSpec[], options: SGDOptions) {
    super(params, { lr: options.lr, weightDecay: options.weightDecay ?? 0 });
    this.momentum = options.momentum ?? 0;
    this.dampening = options.dampening ?? 0;
    this.nesterov = options.nesterov ?? false;
    checkNonNegative('momentum', this.momentum);
    checkNonNegative('dampening', this.dampening);
    if (this.nesterov && (this.momentum <= 0 || this.dampening !== 0)) {
      throw new RangeError('Nesterov momentum requires a momentum > 0 and zero dampening');
    }
  }

  protected hyperparameters(): Record<string, number | boolean> {
    return { momentum: this.momentum, dampening: this.dampening, nesterov: this.nesterov };
  }

  protected update(): void {
    for (const { param, grad, group, state } of this.gradients()) {
      state.step++;
      let direction = group.weightDecay !== 0 ? grad.add(param, group.weightDecay) : grad;
      if (this.momentum !== 0) {
        let buffer = state.buffers.get('momentum_buffer');
        if (!buffer) {
          // PyTorch starts the buffer at the first gradient, not at zero (no dampening on step 1).
          buffer = keep(direction.clone());
          state.buffers.set('momentum_buffer', buffer);
        } else {
          buffer.mul_(this.momentum).add_(direction, 1 - this.dampening);
        }
        direction = this.nesterov ? direction.add(buffer, this.momentum) : buffer;
      }
      param.add_(direction, -group.lr);
    }
  }
}
