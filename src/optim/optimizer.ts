// The Optimizer base class shared by AdamW, SGD and LAMB: parameter groups with their own
// learning rate and weight decay, per-parameter state (step count and moment tensors), and
// state dicts that let a checkpoint resume bit-exactly.
import { keep, noGrad, type Tensor, tidy, zerosLike } from '../tensor/tensor.js';

/** A group as the caller describes it; unset fields take the optimizer's defaults. */
export interface ParamGroupSpec {
  params: readonly Tensor[];
  /** Parameter names, parallel to params (for messages and layer-wise schedules). */
  names?: readonly string[];
  lr?: number;
  weightDecay?: number;
  /** Multiplier applyLr() puts on the scheduled learning rate (layer-wise lr decay). */
  lrScale?: number;
}

/** A group as the optimizer holds it. lr and weightDecay may be changed between steps. */
export interface ParamGroup {
  readonly params: readonly Tensor[];
  readonly names?: readonly string[];
  lr: number;
  weightDecay: number;
  lrScale: number;
}

export interface OptimizerDefaults {
  lr: number;
  weightDecay: number;
}

/** What an optimizer remembers about one parameter. */
export interface ParameterState {
  step: number;
  /** Moment tensors by PyTorch's names (exp_avg, exp_avg_sq, momentum_buffer). */
  buffers: Map<string, Tensor>;
}

/** The JSON-safe half of a state dict. */
export interface OptimizerScalars {
  kind: string;
  groups: { lr: number; weightDecay: number; lrScale: number; size: number }[];
  /** Step count by parameter index, for parameters that have state. */
  steps: Record<string, number>;
  hyperparameters: Record<string, number | boolean | null>;
}

/**
 * An optimizer's state: tensors keyed `${parameterIndex}.${bufferName}` (parameters numbered
 * in group order, then order within the group) and the JSON scalars.
 */
export interface OptimizerStateDict {
  tensors: Map<string, Tensor>;
  scalars: OptimizerScalars;
}

/** One parameter with a gradient, as a step visits it. */
export interface GradientSlot {
  param: Tensor;
  grad: Tensor;
  group: ParamGroup;
  state: ParameterState;
}

function isGroupList(params: Iterable<Tensor> | readonly ParamGroupSpec[]): params is readonly ParamGroupSpec[] {
  return Array.isArray(params) && params.length > 0 && params.every((item) => typeof item === 'object' && item !== null && 'params' in item);
}

export function checkNonNegative(name: string, value: number): void {
  if (!(value >= 0) || !Number.isFinite(value)) throw new RangeError(`${name} must be a finite number >= 0, got ${value}`);
}

export function checkBetas(betas: readonly [number, number]): void {
  for (const [index, beta] of betas.entries()) {
    if (!(beta >= 0 && beta < 1)) throw new RangeError(`betas[${index}] must be in [0, 1), got ${beta}`);
  }
}

const sameShape = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((size, i) => size === b[i]);

export abstract class Optimizer {
  readonly paramGroups: ParamGroup[];
  /** Short name stored in state dicts, so a checkpoint is not loaded into another optimizer. */
  abstract readonly kind: string;
  // Keyed by parameter index rather than by tensor so state dicts are stable across processes.
  protected readonly state = new Map<number, ParameterState>();
  private readonly parameterList: Tensor[];

  constructor(params: Iterable<Tensor> | readonly ParamGroupSpec[], defaults: OptimizerDefaults) {
    checkNonNegative('lr', defaults.lr);
    checkNonNegative('weightDecay', defaults.weightDecay);
    const specs: readonly ParamGroupSpec[] = isGroupList(params) ? params : [{ params: [...(params as Iterable<Tensor>)] }];
    this.paramGroups = specs.map((spec, index) => {
      const lrScale = spec.lrScale ?? 1;
      // Before a scheduler runs, a group's learning rate is the default one, scaled.
      const group: ParamGroup = {
        params: [...spec.params],
        lr: spec.lr ?? defaults.lr * lrScale,
        weightDecay: spec.weightDecay ?? defaults.weightDecay,
        lrScale,
      };
      if (spec.names) {
        if (spec.names.length !== spec.params.length) {
          throw new Error(`param group ${index}: ${spec.names.length} names for ${spec.params.length} parameters`);
        }
        Object.assign(group, { names: [...spec.names] });
      }
      checkNonNegative(`param group ${index} lr`, group.lr);
      checkNonNegative(`param group ${index} weightDecay`, group.weightDecay);
      checkNonNegative(`param group ${index} lrScale`, group.lrScale);
      return group;
    });
    this.parameterList = this.paramGroups.flatMap((group) => group.params);
    if (this.parameterList.length === 0) throw new Error('optimizer got an empty parameter list');
    if (new Set(this.parameterList).size !== this.parameterList.length) {
      throw new Error('a parameter appears more than once in the optimizer\'s groups');
    }
  }

  /** Every parameter, numbered as in state dicts. */
  get parameters(): readonly Tensor[] {
    return this.parameterList;
  }

  /** Updates every parameter that has a gradient; temporaries are freed before it returns. */
  step(): void {
    tidy(() => noGrad(() => this.update()));
  }

  /** Drops every gradient (PyTorch's zero_grad(set_to_none=True)). */
  zeroGrad(): void {
    for (const param of this.parameterList) param.zeroGrad();
  }

  /** The moment tensors every parameter with state has (checked when a state dict is loaded). */
  protected stateBufferNames(): readonly string[] {
    return [];
  }

  /** The optimizer-specific constants, stored in state dicts and checked on load. */
  protected abstract hyperparameters(): Record<string, number | boolean | null>;

  /** One step over the parameters; runs inside tidy and noGrad. */
  protected abstract update(): void;

  /** Parameters that have a gradient, with their group and (created on first use) state. */
  protected *gradients(): Generator<GradientSlot> {
    let index = 0;
    for (const group of this.paramGroups) {
      for (const param of group.params) {
        const grad = param.grad;
        if (grad) {
          let state = this.state.get(index);
          if (!state) {
            state = { step: 0, buffers: new Map() };
            this.state.set(index, state);
          }
          yield { param, grad, group, state };
        }
        index++;
      }
    }
  }

  /** gradients(), gathered by parameter group (groups without a gradient left out). */
  protected gradientsByGroup(): { group: ParamGroup; slots: GradientSlot[] }[] {
    const byGroup = new Map<ParamGroup, GradientSlot[]>();
    for (const slot of this.gradients()) {
      const slots = byGroup.get(slot.group);
      if (slots) slots.push(slot);
      else byGroup.set(slot.group, [slot]);
    }
    return [...byGroup].map(([group, slots]) => ({ group, slots }));
  }

  /** A moment tensor of `state`, created as zeros like `param` on first use; it outlives tidy. */
  protected zerosBuffer(state: ParameterState, name: string, param: Tensor): Tensor {
    let buffer = state.buffers.get(name);
    if (!buffer) {
      buffer = keep(zerosLike(param));
      state.buffers.set(name, buffer);
    }
    return buffer;
  }

  /**
   * A copy of the state. The tensors are clones the caller owns (they belong to the enclosing
   * tidy scope, if any), so later steps do not change a checkpoint being written.
   */
  stateDict(): OptimizerStateDict {
    const tensors = new Map<string, Tensor>();
    const steps: Record<string, number> = {};
    for (const index of [...this.state.keys()].sort((a, b) => a - b)) {
      const state = this.state.get(index) as ParameterState;
      steps[String(index)] = state.step;
      for (const name of [...state.buffers.keys()].sort()) {
        tensors.set(`${index}.${name}`, noGrad(() => (state.buffers.get(name) as Tensor).clone()));
      }
    }
    return {
      tensors,
      scalars: {
        kind: this.kind,
        groups: this.paramGroups.map((group) => ({ lr: group.lr, weightDecay: group.weightDecay, lrScale: group.lrScale, size: group.params.length })),
        steps,
        hyperparameters: this.hyperparameters(),
      },
    };
  }

  /**
   * Replaces the state with a copy of `state` (the caller keeps ownership of its tensors) and
   * restores each group's lr, weightDecay and lrScale. Checks everything before changing anything.
   */
  loadStateDict(state: OptimizerStateDict): void {
    const { scalars, tensors } = state;
    const problems: string[] = [];
    if (scalars.kind !== this.kind) problems.push(`state dict is for ${scalars.kind}, this optimizer is ${this.kind}`);
    if (scalars.groups.length !== this.paramGroups.length) {
      problems.push(`${scalars.groups.length} param groups in the state dict, ${this.paramGroups.length} here`);
    } else {
      scalars.groups.forEach((group, index) => {
        const size = this.paramGroups[index].params.length;
        if (group.size !== size) problems.push(`param group ${index} has ${group.size} parameters in the state dict, ${size} here`);
      });
    }
    const own = this.hyperparameters();
    for (const [name, value] of Object.entries(own)) {
      if (scalars.hyperparameters[name] !== value) problems.push(`${name} is ${scalars.hyperparameters[name]} in the state dict, ${value} here`);
    }
    const count = this.parameterList.length;
    const parsed: { index: number; name: string; source: Tensor }[] = [];
    for (const [key, source] of tensors) {
      const match = /^(\d+)\.(\w+)$/.exec(key);
      const index = match ? Number(match[1]) : -1;
      if (!match || index >= count) {
        problems.push(`unexpected key ${key}`);
        continue;
      }
      if (!(String(index) in scalars.steps)) problems.push(`${key} has no step count`);
      const target = this.parameterList[index];
      if (!sameShape(source.shape, target.shape)) {
        problems.push(`${key}: shape [${source.shape.join(', ')}] in the state dict, parameter has [${target.shape.join(', ')}]`);
      }
      parsed.push({ index, name: match[2], source });
    }
    for (const key of Object.keys(scalars.steps)) {
      if (!/^\d+$/.test(key) || Number(key) >= count) problems.push(`step count for unknown parameter ${key}`);
    }
    // A parameter that has taken steps has every moment tensor: one missing would silently restart
    // that moment from zero (a damaged or hand-edited checkpoint).
    const required = this.stateBufferNames();
    for (const key of Object.keys(scalars.steps)) {
      for (const name of required) if (!tensors.has(`${key}.${name}`)) problems.push(`missing ${key}.${name}`);
    }
    if (problems.length) throw new Error(`loadStateDict: ${problems.join('; ')}`);

    this.disposeState();
    for (const [key, step] of Object.entries(scalars.steps)) this.state.set(Number(key), { step, buffers: new Map() });
    noGrad(() => {
      for (const { index, name, source } of parsed) {
        // Copy into a tensor made like the parameter, so state follows the model's device and dtype.
        const buffer = keep(zerosLike(this.parameterList[index]).copy_(source));
        (this.state.get(index) as ParameterState).buffers.set(name, buffer);
      }
    });
    scalars.groups.forEach((saved, index) => {
      const group = this.paramGroups[index];
      group.lr = saved.lr;
      group.weightDecay = saved.weightDecay;
      group.lrScale = saved.lrScale;
    });
  }

  /** Frees the state tensors; the optimizer starts afresh if stepped again. */
  dispose(): void {
    this.disposeState();
  }

  private disposeState(): void {
    for (const state of this.state.values()) {
      for (const buffer of state.buffers.values()) buffer.dispose();
    }
    this.state.clear();
  }
}
