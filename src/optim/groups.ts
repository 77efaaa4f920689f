// Splits a model's parameters into a weight-decay group and a no-weight-decay group, following
// timm's param_groups_weight_decay: no decay for 1-D tensors (biases, norm scales), `.bias`
// names, position embeddings and class/mask tokens; frozen parameters (freezeParameters, the
// freeze setting) are in no group.
import type { Module } from '../nn/module.js';
import type { Tensor } from '../tensor/tensor.js';
import type { ParamGroupSpec } from './optimizer.js';

/** A freeze list that does not fit the model (a name that matches nothing, nothing left to train). */
export class FreezeError extends Error {}

/**
 * timm.utils.freeze(model, names) for parameters: each name is a parameter or a module path
 * (patch_embed, blocks.0, cls_token), and every parameter at or under it stops requiring
 * gradients, so autograd computes none for it and the param groups below leave it out: no
 * update, no weight decay, no optimizer state. It stays in the state dict (EMA, checkpoints,
 * model.safetensors). Returns the frozen parameters' names; every name must match something.
 */
export function freezeParameters(model: Module, names: readonly string[]): string[] {
  const parameters = model.namedParameters();
  const frozen = new Set<string>();
  for (const name of names) {
    const matched = parameters.filter(([parameterName]) => parameterName === name || parameterName.startsWith(`${name}.`));
    if (matched.length === 0) {
      const roots = [...new Set(parameters.map(([parameterName]) => parameterName.split('.')[0]!))];
      throw new FreezeError(`freeze: '${name}' names no parameter or module of the model (names are timm's, whole dotted parts: patch_embed, blocks.0); its top-level names are ${roots.join(', ')}`);
    }
    for (const [parameterName] of matched) frozen.add(parameterName);
  }
  if (frozen.size === parameters.length) throw new FreezeError(`freeze: ${names.join(', ')} covers every parameter of the model; nothing would train`);
  for (const [name, parameter] of parameters) if (frozen.has(name)) parameter.requiresGrad_(false);
  return parameters.map(([name]) => name).filter((name) => frozen.has(name));
}

/** Names that never get weight decay, matched as a whole name or as the last dotted parts. */
export const DEFAULT_NO_WEIGHT_DECAY = ['pos_embed', 'cls_token', 'mask_token'] as const;

const matchesName = (name: string, pattern: string): boolean => name === pattern || name.endsWith(`.${pattern}`);

/** Whether timm's rule exempts this parameter from weight decay. */
export function skipsWeightDecay(name: string, parameter: Tensor, noDecayNames: readonly string[] = []): boolean {
  return parameter.ndim <= 1
    || name.endsWith('.bias')
    || [...DEFAULT_NO_WEIGHT_DECAY, ...noDecayNames].some((pattern) => matchesName(name, pattern));
}

/**
 * [no-decay group (weightDecay 0), decay group (weightDecay)], in timm's order, with the
 * parameter names. Parameters that do not require gradients are left out, as in timm.
 */
export function paramGroupsWithWeightDecay(model: Module, weightDecay: number, noDecayNames: readonly string[] = []): ParamGroupSpec[] {
  const decay: { params: Tensor[]; names: string[] } = { params: [], names: [] };
  const noDecay: { params: Tensor[]; names: string[] } = { params: [], names: [] };
  for (const [name, parameter] of model.namedParameters()) {
    if (!parameter.requiresGrad) continue;
    const target = skipsWeightDecay(name, parameter, noDecayNames) ? noDecay : decay;
    target.params.push(parameter);
    target.names.push(name);
  }
  return [
    { params: noDecay.params, names: noDecay.names, weightDecay: 0 },
    { params: decay.params, names: decay.names, weightDecay },
  ];
}

/** Which layer a parameter belongs to for layer-wise lr decay (models/pretrained.ts layerAssignment). */
export interface LayerAssignment {
  /** The last layer's id (BEiT/MAE: blocks + 1); its parameters keep the full learning rate. */
  count: number;
  layerOf(name: string): number;
}

/**
 * BEiT / MAE's param_groups_lrd: timm's weight-decay split, and per layer an lrScale of
 * layerDecay ** (count - layer), so the head learns at the scheduled rate and each layer below at
 * layerDecay times the one above it. One group per (layer, decay or not), in first-seen order.
 * applyLr multiplies the scheduled rate by each group's lrScale.
 */
export function paramGroupsWithLayerDecay(model: Module, weightDecay: number, layerDecay: number, layers: LayerAssignment, noDecayNames: readonly string[] = []): ParamGroupSpec[] {
  if (!(layerDecay > 0 && layerDecay <= 1)) throw new RangeError(`layer decay must be in (0, 1], got ${layerDecay}`);
  const groups = new Map<string, { params: Tensor[]; names: string[]; weightDecay: number; lrScale: number }>();
  for (const [name, parameter] of model.namedParameters()) {
    if (!parameter.requiresGrad) continue;
    const layer = layers.layerOf(name);
    if (!(Number.isInteger(layer) && layer >= 0 && layer <= layers.count)) throw new RangeError(`layer decay: ${name} is assigned layer ${layer}, outside 0..${layers.count}`);
    const skip = skipsWeightDecay(name, parameter, noDecayNames);
    const key = `${layer}:${skip ? 'no_decay' : 'decay'}`;
    let group = groups.get(key);
    if (!group) {
      group = { params: [], names: [], weightDecay: skip ? 0 : weightDecay, lrScale: layerDecay ** (layers.count - layer) };
      groups.set(key, group);
    }
    group.params.push(parameter);
    group.names.push(name);
  }
  return [...groups.values()];
}
