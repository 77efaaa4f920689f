// An exponential moving average of a model's weights (timm's ModelEmaV2, with ModelEmaV3's
// optional decay warmup), kept as copies of the state dict tensors on the model's devices.
import type { Module } from '../nn/module.js';
import { type Device, keep, noGrad, type Tensor, tidy } from '../tensor/tensor.js';

export interface ModelEmaOptions {
  /** Default 0.9999. */
  decay?: number;
  /** Ramp the decay up from 0 over the first updates (timm ModelEmaV3's use_warmup). Default false. */
  warmup?: boolean;
  /** Default 1. */
  warmupGamma?: number;
  /** Default 2/3. */
  warmupPower?: number;
  /** Lower bound of the warmed-up decay. Default 0. */
  minDecay?: number;
}

export interface ModelEmaStateDict {
  /** The averaged tensors by the model's state dict names (loadable into the model itself). */
  tensors: Map<string, Tensor>;
  updates: number;
}

const isFloating = (tensor: Tensor): boolean => tensor.dtype.startsWith('float') || tensor.dtype === 'bfloat16';
const sameShape = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((size, i) => size === b[i]);

export class ModelEma {
  readonly decay: number;
  readonly warmup: boolean;
  readonly warmupGamma: number;
  readonly warmupPower: number;
  readonly minDecay: number;
  /** How many updates have been applied (the default step for the decay warmup). */
  updates = 0;
  private readonly averages = new Map<string, Tensor>();

  constructor(model: Module, options: ModelEmaOptions = {}) {
    this.decay = options.decay ?? 0.9999;
    this.warmup = options.warmup ?? false;
    this.warmupGamma = options.warmupGamma ?? 1;
    this.warmupPower = options.warmupPower ?? 2 / 3;
    this.minDecay = options.minDecay ?? 0;
    if (!(this.decay >= 0 && this.decay <= 1)) throw new RangeError(`ModelEma: decay must be in [0, 1], got ${this.decay}`);
    if (!(this.warmupGamma > 0)) throw new RangeError(`ModelEma: warmupGamma must be > 0, got ${this.warmupGamma}`);
    noGrad(() => {
      for (const [name, tensor] of model.stateDict()) this.averages.set(name, keep(tensor.detach().clone()));
    });
  }

  /** The averaged tensors, owned by this object (read them, do not dispose them). */
  get tensors(): ReadonlyMap<string, Tensor> {
    return this.averages;
  }

  /**
   * The decay used at update number `step` (0-based). Without warmup it is `decay`; with warmup
   * it is max(minDecay, min(decay, 1 - (1 + step / warmupGamma)^-warmupPower)), so the first
   * update copies the model and the average forgets its random start quickly.
   */
  decayAt(step: number): number {
    if (!this.warmup) return this.decay;
    const warmed = 1 - (1 + Math.max(0, step) / this.warmupGamma) ** -this.warmupPower;
    return Math.max(this.minDecay, Math.min(this.decay, warmed));
  }

  /** ema = decay * ema + (1 - decay) * model for floating tensors; integer buffers are copied. */
  update(model: Module, step = this.updates): void {
    const decay = this.decayAt(step);
    tidy(() => noGrad(() => {
      for (const [name, average, current] of this.pairs(model)) {
        const source = average.device === current.device ? current : current.to({ device: average.device as Device });
        if (isFloating(average)) average.mul_(decay).add_(source, 1 - decay);
        else average.copy_(source);
      }
    }));
    this.updates++;
  }

  /** Loads the averaged weights into `model` (to evaluate or export the EMA model). */
  copyTo(model: Module): void {
    tidy(() => noGrad(() => {
      for (const [, average, current] of this.pairs(model)) current.copy_(average);
    }));
  }

  /** Exchanges the model's weights with the averages; call again to swap back after evaluation. */
  swap(model: Module): void {
    tidy(() => noGrad(() => {
      for (const [, average, current] of this.pairs(model)) {
        const saved = current.clone();
        current.copy_(average);
        average.copy_(saved);
      }
    }));
  }

  /** Clones of the averages (owned by the caller) and the update count. */
  stateDict(): ModelEmaStateDict {
    const tensors = new Map<string, Tensor>();
    noGrad(() => {
      for (const [name, average] of this.averages) tensors.set(name, average.clone());
    });
    return { tensors, updates: this.updates };
  }

  /** Copies values in by name; every name must match, with the same shapes. */
  loadStateDict(state: ModelEmaStateDict): void {
    const problems: string[] = [];
    for (const name of this.averages.keys()) if (!state.tensors.has(name)) problems.push(`missing key ${name}`);
    for (const [name, source] of state.tensors) {
      const target = this.averages.get(name);
      if (!target) problems.push(`unexpected key ${name}`);
      else if (!sameShape(source.shape, target.shape)) {
        problems.push(`${name}: shape [${source.shape.join(', ')}] in the state dict, [${target.shape.join(', ')}] here`);
      }
    }
    if (problems.length) throw new Error(`ModelEma.loadStateDict: ${problems.join('; ')}`);
    noGrad(() => {
      for (const [name, average] of this.averages) average.copy_(state.tensors.get(name) as Tensor);
    });
    this.updates = state.updates;
  }

  dispose(): void {
    for (const average of this.averages.values()) average.dispose();
    this.averages.clear();
  }

  /** [name, average, model tensor] for every entry, checking the model still has the same tensors. */
  private pairs(model: Module): [string, Tensor, Tensor][] {
    const current = model.stateDict();
    const out: [string, Tensor, Tensor][] = [];
    for (const [name, average] of this.averages) {
      const tensor = current.get(name);
      if (!tensor) throw new Error(`ModelEma: the model has no ${name}`);
      if (!sameShape(tensor.shape, average.shape)) {
        throw new Error(`ModelEma: ${name} has shape [${tensor.shape.join(', ')}] in the model, [${average.shape.join(', ')}] in the average`);
      }
      out.push([name, average, tensor]);
    }
    return out;
  }
}
