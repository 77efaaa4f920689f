// SGD with PyTorch's semantics (torch.optim.SGD): coupled L2 weight decay added to the gradient,
// momentum whose first buffer is the gradient itself, optional dampening and Nesterov momentum.
// Two paths as torch.optim has: `foreach` (default) steps each parameter group with libtorch's
// multi-tensor ops (_multi_tensor_sgd's order), the single-tensor path loops; on the CPU they run
// the same kernels in the same order and agree to the last bit (test/optim.test.ts).
import type { Tensor } from '../tensor/tensor.js';
import { keep } from '../tensor/tensor.js';
import { foreachAdd, foreachAdd_, foreachMul_ } from '../tensor/foreach.js';
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
  /** Multi-tensor update per parameter group (default true); false loops over parameters. */
  foreach?: boolean;
}

export class SGD extends Optimizer {
  readonly kind = 'sgd';

  protected override stateBufferNames(): readonly string[] {
    return this.momentum !== 0 ? ['momentum_buffer'] : [];
  }
  readonly momentum: number;
  readonly dampening: number;
  readonly nesterov: boolean;
  readonly foreach: boolean;

  constructor(params: Iterable<Tensor> | readonly ParamGroupSpec[], options: SGDOptions) {
    super(params, { lr: options.lr, weightDecay: options.weightDecay ?? 0 });
    this.momentum = options.momentum ?? 0;
    this.dampening = options.dampening ?? 0;
    this.nesterov = options.nesterov ?? false;
    this.foreach = options.foreach ?? true;
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
    if (!this.foreach) {
      this.updateEach();
      return;
    }
    for (const { group, slots } of this.gradientsByGroup()) {
      for (const slot of slots) slot.state.step++;
      const params = slots.map((slot) => slot.param);
      let directions = slots.map((slot) => slot.grad);
      if (group.weightDecay !== 0) directions = foreachAdd(directions, params, group.weightDecay);
      if (this.momentum !== 0) {
        const buffers = slots.map((slot) => slot.state.buffers.get('momentum_buffer'));
        if (buffers.every((buffer) => buffer !== undefined)) {
          foreachMul_(buffers as Tensor[], this.momentum);
          foreachAdd_(buffers as Tensor[], directions, 1 - this.dampening);
        } else {
          // A parameter's first step (PyTorch's mixed case loops too): its buffer starts at the
          // direction itself, the others take the usual update.
          slots.forEach((slot, i) => {
            const buffer = buffers[i];
            if (buffer) buffer.mul_(this.momentum).add_(directions[i], 1 - this.dampening);
            else {
              buffers[i] = keep(directions[i].clone());
              slot.state.buffers.set('momentum_buffer', buffers[i] as Tensor);
            }
          });
        }
        if (this.nesterov) directions = foreachAdd(directions, buffers as Tensor[], this.momentum);
        else directions = buffers as Tensor[];
      }
      foreachAdd_(params, directions, -group.lr);
    }
  }

  private updateEach(): void {
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
