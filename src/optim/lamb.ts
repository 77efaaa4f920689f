// LAMB with timm's semantics (timm/optim/lamb.py): the gradients of all parameters are first
// scaled down together to a global norm of at most maxGradNorm, then an Adam direction plus
// decoupled weight decay is rescaled per parameter by the trust ratio ||p|| / ||update||.
// Two paths: `foreach` (default) steps each parameter group with libtorch's multi-tensor ops (the
// trust ratios of a group computed together on one stacked vector of norms); the single-tensor
// path loops. On the CPU both run the same kernels and agree to the last bit (test/optim.test.ts):
// element-wise division, comparison and minimum are exact, so one ratio per stacked element equals
// the 0-d computation per parameter.
import { onesLike, stack, type Tensor, where } from '../tensor/tensor.js';
import { foreachAdd_, foreachAddcmul_, foreachDiv, foreachDiv_, foreachMul_, foreachNorm, foreachSqrt } from '../tensor/foreach.js';
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
  /** Multi-tensor update per parameter group (default true); false loops over parameters. */
  foreach?: boolean;
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
  readonly foreach: boolean;

  constructor(params: Iterable<Tensor> | readonly ParamGroupSpec[], options: LambOptions = {}) {
    super(params, { lr: options.lr ?? 1e-3, weightDecay: options.weightDecay ?? 1e-2 });
    this.betas = options.betas ?? [0.9, 0.999];
    this.eps = options.eps ?? 1e-6;
    this.maxGradNorm = options.maxGradNorm === undefined ? 1.0 : options.maxGradNorm;
    this.biasCorrection = options.biasCorrection ?? true;
    this.gradAveraging = options.gradAveraging ?? true;
    this.trustClip = options.trustClip ?? false;
    this.alwaysAdapt = options.alwaysAdapt ?? false;
    this.foreach = options.foreach ?? true;
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

  /** The divisor that brings the global gradient norm down to maxNorm (1 when below), or null. */
  private clipDivisor(grads: readonly Tensor[]): Tensor | null {
    if (this.maxGradNorm === null) return null;
    // The global norm as timm computes it: each gradient's norm, then the norm of those. The
    // factor stays a tensor so a GPU step never waits for the norm to reach the host.
    const globalNorm = stack(foreachNorm(grads)).norm(2);
    return where(globalNorm.gt(this.maxGradNorm), globalNorm.div(this.maxGradNorm), onesLike(globalNorm));
  }

  /** The trust ratios ||p|| / ||update|| (1 where either norm is 0; capped at 1 with trustClip). */
  private trustRatios(weightNorms: Tensor, updateNorms: Tensor): Tensor {
    const one = onesLike(weightNorms);
    // A zero norm on either side (fresh zero-initialised weights, a zero update) means no rescaling.
    const ratio = where(weightNorms.gt(0), where(updateNorms.gt(0), weightNorms.div(updateNorms), one), one);
    return this.trustClip ? ratio.minimum(one) : ratio;
  }

  protected update(): void {
    if (!this.foreach) {
      this.updateEach();
      return;
    }
    const byGroup = this.gradientsByGroup();
    if (byGroup.length === 0) return;
    const clipDivisor = this.clipDivisor(byGroup.flatMap(({ slots }) => slots.map((slot) => slot.grad)));
    const [beta1, beta2] = this.betas;
    const firstMomentWeight = this.gradAveraging ? 1 - beta1 : 1;
    for (const { group, slots } of byGroup) {
      const params = slots.map((slot) => slot.param);
      const rawGrads = slots.map((slot) => slot.grad);
      // timm divides p.grad in place; dividing copies leaves the caller's gradients as they were.
      const grads = clipDivisor ? foreachDiv(rawGrads, rawGrads.map(() => clipDivisor)) : rawGrads;
      const steps = slots.map((slot) => ++slot.state.step);
      const expAvgs = slots.map((slot) => this.zerosBuffer(slot.state, 'exp_avg', slot.param));
      const expAvgSqs = slots.map((slot) => this.zerosBuffer(slot.state, 'exp_avg_sq', slot.param));
      foreachMul_(expAvgs, beta1);
      foreachAdd_(expAvgs, grads, firstMomentWeight);
      foreachMul_(expAvgSqs, beta2);
      foreachAddcmul_(expAvgSqs, grads, grads, 1 - beta2);
      const denominators = foreachSqrt(expAvgSqs);
      foreachDiv_(denominators, steps.map((step) => Math.sqrt(this.biasCorrection ? 1 - beta2 ** step : 1)));
      foreachAdd_(denominators, this.eps);
      const updates = foreachDiv(expAvgs, steps.map((step) => (this.biasCorrection ? 1 - beta1 ** step : 1)));
      foreachDiv_(updates, denominators);
      if (group.weightDecay !== 0) foreachAdd_(updates, params, group.weightDecay);
      if (group.weightDecay !== 0 || this.alwaysAdapt) {
        const ratios = this.trustRatios(stack(foreachNorm(params)), stack(foreachNorm(updates)));
        foreachMul_(updates, ratios.unbind(0));
      }
      foreachAdd_(params, updates, -group.lr);
    }
  }

  private updateEach(): void {
    const slots = [...this.gradients()];
    if (slots.length === 0) return;
    const clipDivisor = this.clipDivisor(slots.map(({ grad }) => grad));
    const [beta1, beta2] = this.betas;
    const firstMomentWeight = this.gradAveraging ? 1 - beta1 : 1;
    for (const { param, grad: rawGrad, group, state } of slots) {
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
      if (group.weightDecay !== 0 || this.alwaysAdapt) update.mul_(this.trustRatios(param.norm(2), update.norm(2)));
      param.add_(update, -group.lr);
    }
  }
}
