// LAMB with timm's semantics (timm/optim/lamb.py): the gradients of all parameters are first
// scaled down together to a global norm of at most maxGradNorm, then an Adam direction plus
// decoupled weight decay is rescaled per parameter by the trust ratio ||p|| / ||update||.
import { onesLike, stack, type Tensor, where } from '../tensor/tensor.js';
import { checkBetas, checkNonNegative, Optimizer, type ParamGroupSpec } from './optimizer.js';

export interface LambOptions {
  /** Default 1e-3. */
  lr?: number;
  /** Default [0.9, 0.999]. */
  betas?: readonly [number, number];
  /** Default 1e-6. */
  eps?: number;
  /** Default 0.01. */
  weightDecay?: number;
  /** Global gradient norm limit applied inside the step; null turns it off. Default 1.0. */
  maxGradNorm?: number | null;
  /** Divide the moments by 1 - beta^step. Default true. */
  biasCorrection?: boolean;
  /** Scale the gradient by 1 - beta1 in the first moment. Default true. */
  gradAveraging?: boolean;
  /** Cap the trust ratio at 1. Default false. */
  trustClip?: boolean;
  /** Use the trust ratio also in groups without weight decay. Default false. */
  alwaysAdapt?: boolean;
}

export class Lamb extends Optimizer {
  readonly kind = 'lamb';

  protected override stateBufferNames(): readonly string[] {
    return ['exp_avg', 'exp_avg_sq'];
  }
  readonly betas: readonly [number, number];
  readonly eps: number;
  readonly maxGradNorm: number | null;
  readonly biasCorrection: boolean;
  readonly gradAveraging: boolean;
  readonly trustClip: boolean;
  readonly alwaysAdapt: boolean;

  constructor(params: Iterable<Tensor> | readonly ParamGroupSpec[], options: LambOptions = {}) {
    super(params, { lr: options.lr ?? 1e-3, weightDecay: options.weightDecay ?? 1e-2 });
    this.betas = options.betas ?? [0.9, 0.999];
    this.eps = options.eps ?? 1e-6;
    this.maxGradNorm = options.maxGradNorm === undefined ? 1.0 : options.maxGradNorm;
    this.biasCorrection = options.biasCorrection ?? true;
    this.gradAveraging = options.gradAveraging ?? true;
    this.trustClip = options.trustClip ?? false;
    this.alwaysAdapt = options.alwaysAdapt ?? false;
    checkBetas(this.betas);
    checkNonNegative('eps', this.eps);
    if (this.maxGradNorm !== null && !(this.maxGradNorm > 0)) throw new RangeError(`maxGradNorm must be > 0 or null, got ${this.maxGradNorm}`);
  }

  protected hyperparameters(): Record<string, number | boolean | null> {
    return {
      beta1: this.betas[0], beta2: this.betas[1], eps: this.eps, maxGradNorm: this.maxGradNorm,
      biasCorrection: this.biasCorrection, gradAveraging: this.gradAveraging, trustClip: this.trustClip, alwaysAdapt: this.alwaysAdapt,
    };
  }

  protected update(): void {
    const slots = [...this.gradients()];
    if (slots.length === 0) return;
    // The clip factor stays a tensor so a GPU step never waits for the norm to reach the host.
    let clipDivisor: Tensor | null = null;
    if (this.maxGradNorm !== null) {
      const globalNorm = stack(slots.map(({ grad }) => grad.pow(2).sum())).sum().sqrt();
      clipDivisor = where(globalNorm.gt(this.maxGradNorm), globalNorm.div(this.maxGradNorm), onesLike(globalNorm));
    }
    const [beta1, beta2] = this.betas;
    const firstMomentWeight = this.gradAveraging ? 1 - beta1 : 1;
    for (const { param, grad: rawGrad, group, state } of slots) {
      // timm divides p.grad in place; dividing a copy leaves the caller's gradients as they were.
      const grad = clipDivisor ? rawGrad.div(clipDivisor) : rawGrad;
      const step = ++state.step;
      const biasCorrection1 = this.biasCorrection ? 1 - beta1 ** step : 1;
      const biasCorrection2 = this.biasCorrection ? 1 - beta2 ** step : 1;
      const expAvg = this.zerosBuffer(state, 'exp_avg', param);
      const expAvgSq = this.zerosBuffer(state, 'exp_avg_sq', param);
      expAvg.mul_(beta1).add_(grad, firstMomentWeight);
      expAvgSq.mul_(beta2).addcmul_(grad, grad, 1 - beta2);
      const denominator = expAvgSq.sqrt().div_(Math.sqrt(biasCorrection2)).add_(this.eps);
      const update = expAvg.div(biasCorrection1).div_(denominator);
      if (group.weightDecay !== 0) update.add_(param, group.weightDecay);
      if (group.weightDecay !== 0 || this.alwaysAdapt) {
        const weightNorm = param.norm(2);
        const updateNorm = update.norm(2);
        const one = onesLike(weightNorm);
        // A zero norm on either side (fresh zero-initialised weights, a zero update) means no rescaling.
        let trustRatio = where(weightNorm.gt(0), where(updateNorm.gt(0), weightNorm.div(updateNorm), one), one);
        if (this.trustClip) trustRatio = trustRatio.minimum(one);
        update.mul_(trustRatio);
      }
      param.add_(update, -group.lr);
    }
  }
}
