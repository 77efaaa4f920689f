// AdamW with PyTorch's semantics (torch.optim.AdamW): decoupled weight decay, bias-corrected
// moments, eps added after the square root of the corrected second moment. Two paths, as
// torch.optim has: `foreach` (default) updates each parameter group with libtorch's multi-tensor
// ops, 8 addon calls per group instead of 8 per parameter; the single-tensor path loops. On the
// CPU both run the same kernels in the same order and agree to the last bit (test/optim.test.ts).
import type { Tensor } from '../tensor/tensor.js';
import { foreachAdd_, foreachAddcdiv_, foreachAddcmul_, foreachDiv_, foreachMul_, foreachSqrt } from '../tensor/foreach.js';
import { checkBetas, checkNonNegative, Optimizer, type ParamGroupSpec } from './optimizer.js';

export interface AdamWOptions {
  /** Default 1e-3. */
  lr?: number;
  /** Default [0.9, 0.999]. */
  betas?: readonly [number, number];
  /** Default 1e-8. */
  eps?: number;
  /** Default 0.01, as PyTorch's AdamW. */
  weightDecay?: number;
  /** Multi-tensor update per parameter group (default true); false loops over parameters. */
  foreach?: boolean;
}

export class AdamW extends Optimizer {
  readonly kind = 'adamw';

  protected override stateBufferNames(): readonly string[] {
    return ['exp_avg', 'exp_avg_sq'];
  }
  readonly betas: readonly [number, number];
  readonly eps: number;
  readonly foreach: boolean;

  constructor(params: Iterable<Tensor> | readonly ParamGroupSpec[], options: AdamWOptions = {}) {
    super(params, { lr: options.lr ?? 1e-3, weightDecay: options.weightDecay ?? 1e-2 });
    this.betas = options.betas ?? [0.9, 0.999];
    this.eps = options.eps ?? 1e-8;
    this.foreach = options.foreach ?? true;
    checkBetas(this.betas);
    checkNonNegative('eps', this.eps);
  }

  protected hyperparameters(): Record<string, number> {
    return { beta1: this.betas[0], beta2: this.betas[1], eps: this.eps };
  }

  protected update(): void {
    if (!this.foreach) {
      this.updateEach();
      return;
    }
    const [beta1, beta2] = this.betas;
    for (const { group, slots } of this.gradientsByGroup()) {
      const params = slots.map((slot) => slot.param);
      const grads = slots.map((slot) => slot.grad);
      const expAvgs = slots.map((slot) => this.zerosBuffer(slot.state, 'exp_avg', slot.param));
      const expAvgSqs = slots.map((slot) => this.zerosBuffer(slot.state, 'exp_avg_sq', slot.param));
      // Parameters of one group may have taken different numbers of steps (one without a gradient
      // in some step), so the bias corrections are per parameter.
      const steps = slots.map((slot) => ++slot.state.step);
      if (group.weightDecay !== 0) foreachMul_(params, 1 - group.lr * group.weightDecay);
      foreachMul_(expAvgs, beta1);
      foreachAdd_(expAvgs, grads, 1 - beta1);
      foreachMul_(expAvgSqs, beta2);
      foreachAddcmul_(expAvgSqs, grads, grads, 1 - beta2);
      const denominators = foreachSqrt(expAvgSqs);
      foreachDiv_(denominators, steps.map((step) => Math.sqrt(1 - beta2 ** step)));
      foreachAdd_(denominators, this.eps);
      foreachAddcdiv_(params, expAvgs, denominators, steps.map((step) => -(group.lr / (1 - beta1 ** step))));
    }
  }

  private updateEach(): void {
    const [beta1, beta2] = this.betas;
    for (const { param, grad, group, state } of this.gradients()) {
      const step = ++state.step;
      const expAvg = this.zerosBuffer(state, 'exp_avg', param);
      const expAvgSq = this.zerosBuffer(state, 'exp_avg_sq', param);
      // Multiplying by exactly 1 changes nothing, so the no-decay groups skip a pass over memory.
      if (group.weightDecay !== 0) param.mul_(1 - group.lr * group.weightDecay);
      expAvg.mul_(beta1).add_(grad, 1 - beta1);
      expAvgSq.mul_(beta2).addcmul_(grad, grad, 1 - beta2);
      const biasCorrection1 = 1 - beta1 ** step;
      const biasCorrection2 = 1 - beta2 ** step;
      // The same operation order as PyTorch, so results agree to the last bit on the same libtorch.
      const denominator = expAvgSq.sqrt().div_(Math.sqrt(biasCorrection2)).add_(this.eps);
      param.addcdiv_(expAvg, denominator, -(group.lr / biasCorrection1));
    }
  }
}
