// AdamW with PyTorch's semantics (torch.optim.AdamW, single-tensor path): decoupled weight
// decay, bias-corrected moments, eps added after the square root of the corrected second moment.
import type { Tensor } from '../tensor/tensor.js';
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
}

export class AdamW extends Optimizer {
  readonly kind = 'adamw';

  protected override stateBufferNames(): readonly string[] {
    return ['exp_avg', 'exp_avg_sq'];
  }
  readonly betas: readonly [number, number];
  readonly eps: number;

  constructor(params: Iterable<Tensor> | readonly ParamGroupSpec[], options: AdamWOptions = {}) {
    super(params, { lr: options.lr ?? 1e-3, weightDecay: options.weightDecay ?? 1e-2 });
    this.betas = options.betas ?? [0.9, 0.999];
    this.eps = options.eps ?? 1e-8;
    checkBetas(this.betas);
    checkNonNegative('eps', this.eps);
  }

  protected hyperparameters(): Record<string, number> {
    return { beta1: this.betas[0], beta2: this.betas[1], eps: this.eps };
  }

  protected update(): void {
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
