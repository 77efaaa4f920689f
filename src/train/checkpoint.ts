// Checkpoints: the whole training state in one safetensors file (model, optimizer moments, EMA,
// RNG state as tensors; epoch, schedule position, metric history as JSON metadata), written
// atomically so a crash at any moment leaves the previous checkpoint intact.
import { existsSync } from 'node:fs';
import type { OptimizerScalars, OptimizerStateDict } from '../optim/optimizer.js';
import { loadSafetensors, saveSafetensors } from '../tensor/safetensors.js';
import type { Tensor } from '../tensor/tensor.js';
import type { EpochMetrics } from './run-format.js';

export const CHECKPOINT_FILE = 'checkpoint.safetensors';
export const MODEL_FILE = 'model.safetensors';
export const BEST_FILE = 'best.safetensors';
const STATE_KEY = 'masksub_state';

export interface TrainingState {
  version: 1;
  /** Epochs finished. */
  epoch: number;
  /** Optimizer steps taken. */
  globalStep: number;
  wallSeconds: number;
  bestAcc1: number;
  bestEpoch: number;
  skippedSteps: number;
  history: EpochMetrics[];
  optimizer: OptimizerScalars;
  emaUpdates: number | null;
}

export interface CheckpointParts {
  model: Map<string, Tensor>;
  optimizer: OptimizerStateDict;
  ema: Map<string, Tensor> | null;
  rngState: Tensor;
  state: TrainingState;
}

export function saveCheckpoint(path: string, parts: CheckpointParts, options?: { beforeRename?: () => void }): void {
  const tensors = new Map<string, Tensor>();
  for (const [name, tensor] of parts.model) tensors.set(`model.${name}`, tensor);
  for (const [name, tensor] of parts.optimizer.tensors) tensors.set(`optimizer.${name}`, tensor);
  if (parts.ema) for (const [name, tensor] of parts.ema) tensors.set(`ema.${name}`, tensor);
  tensors.set('rng.cpu', parts.rngState);
  saveSafetensors(path, tensors, { [STATE_KEY]: JSON.stringify(parts.state), format: 'masksub-checkpoint' }, options);
}

/** Reads a checkpoint; the caller owns (and must dispose) every returned tensor. */
export function loadCheckpoint(path: string): CheckpointParts {
  if (!existsSync(path)) throw new Error(`checkpoint ${path}: file not found`);
  const { tensors, metadata } = loadSafetensors(path);
  const text = metadata[STATE_KEY];
  const fail = (problem: string): never => {
    for (const tensor of tensors.values()) tensor.dispose();
    throw new Error(`checkpoint ${path}: ${problem}`);
  };
  if (!text) fail(`no '${STATE_KEY}' metadata: not a masksub checkpoint (a plain weights file can be loaded with loadSafetensors)`);
  let state: TrainingState;
  try {
    state = JSON.parse(text as string) as TrainingState;
  } catch {
    return fail('its training state metadata is not valid JSON');
  }
  if (state.version !== 1 || !Number.isInteger(state.epoch) || !Array.isArray(state.history)) fail('unsupported or damaged training state');
  const model = new Map<string, Tensor>();
  const optimizer = new Map<string, Tensor>();
  let ema: Map<string, Tensor> | null = null;
  let rngState: Tensor | null = null;
  for (const [name, tensor] of tensors) {
    if (name.startsWith('model.')) model.set(name.slice(6), tensor);
    else if (name.startsWith('optimizer.')) optimizer.set(name.slice(10), tensor);
    else if (name.startsWith('ema.')) (ema ??= new Map()).set(name.slice(4), tensor);
    else if (name === 'rng.cpu') rngState = tensor;
  }
  if (!rngState) return fail('no RNG state (rng.cpu)');
  return { model, optimizer: { tensors: optimizer, scalars: state.optimizer }, ema, rngState, state };
}

export function disposeCheckpoint(parts: CheckpointParts): void {
  for (const tensor of [...parts.model.values(), ...parts.optimizer.tensors.values(), ...(parts.ema?.values() ?? []), parts.rngState]) tensor.dispose();
}
