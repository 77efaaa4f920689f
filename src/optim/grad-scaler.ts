// Loss scaling for float16 training (torch.cuda.amp.GradScaler): float16 gradients of small
// values underflow to zero, so the loss is multiplied by a large scale before backward, the
// gradients are divided by it before the optimizer step, and a step whose gradients overflowed
// (inf / NaN) is skipped while the scale is halved; after `growthInterval` good steps in a row the
// scale doubles. bfloat16 has float32's range and needs none of this.
import { noGrad, stack, type Tensor, tidy } from '../tensor/tensor.js';
import { foreachMul_, foreachNorm } from '../tensor/foreach.js';

export interface GradScalerOptions {
  /** Default 2^16, as PyTorch. */
  initScale?: number;
  /** Default 2. */
  growthFactor?: number;
  /** Default 0.5. */
  backoffFactor?: number;
  /** Good steps in a row before the scale grows; default 2000. */
  growthInterval?: number;
}

/** What a checkpoint keeps of a scaler. */
export interface GradScalerState {
  scale: number;
  goodSteps: number;
}

export class GradScaler {
  scale: number;
  goodSteps = 0;
  readonly growthFactor: number;
  readonly backoffFactor: number;
  readonly growthInterval: number;

  constructor(options: GradScalerOptions = {}) {
    this.scale = options.initScale ?? 2 ** 16;
    this.growthFactor = options.growthFactor ?? 2;
    this.backoffFactor = options.backoffFactor ?? 0.5;
    this.growthInterval = options.growthInterval ?? 2000;
    if (!(this.scale > 0 && Number.isFinite(this.scale))) throw new RangeError(`initScale must be a positive number, got ${this.scale}`);
    if (!(this.growthFactor > 1)) throw new RangeError(`growthFactor must be > 1, got ${this.growthFactor}`);
    if (!(this.backoffFactor > 0 && this.backoffFactor < 1)) throw new RangeError(`backoffFactor must be in (0, 1), got ${this.backoffFactor}`);
    if (!(Number.isInteger(this.growthInterval) && this.growthInterval >= 1)) throw new RangeError(`growthInterval must be a positive integer, got ${this.growthInterval}`);
  }

  /**
   * Divides every gradient by the scale in place (GradScaler.unscale_) and says whether all are
   * finite. False means: skip this optimizer step (the caller drops the gradients); update() then
   * lowers the scale.
   */
  unscale(parameters: Iterable<Tensor>): boolean {
    return tidy(() => noGrad(() => {
      const grads: Tensor[] = [];
      for (const parameter of parameters) {
        const grad = parameter.grad;
        if (grad) grads.push(grad);
      }
      if (grads.length === 0) return true;
      foreachMul_(grads, 1 / this.scale);
      // One read for all: the norm of the per-gradient norms is finite exactly when every value is.
      return Number.isFinite(stack(foreachNorm(grads)).norm(2).item());
    }));
  }

  /** After each optimizer step (taken or skipped): the scale's growth and backoff. */
  update(finite: boolean): void {
    if (!finite) {
      this.scale *= this.backoffFactor;
      this.goodSteps = 0;
      return;
    }
    this.goodSteps++;
    if (this.goodSteps >= this.growthInterval) {
      this.scale *= this.growthFactor;
      this.goodSteps = 0;
    }
  }

  stateDict(): GradScalerState {
    return { scale: this.scale, goodSteps: this.goodSteps };
  }

  loadStateDict(state: GradScalerState): void {
    if (!(state.scale > 0 && Number.isFinite(state.scale)) || !(Number.isInteger(state.goodSteps) && state.goodSteps >= 0)) {
      throw new Error(`GradScaler state ${JSON.stringify(state)} is not {scale > 0, goodSteps >= 0}`);
    }
    this.scale = state.scale;
    this.goodSteps = state.goodSteps;
  }
}
