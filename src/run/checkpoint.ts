// Checkpoints: the whole training state in one safetensors file (model, optimizer moments, EMA,
// RNG state as tensors; epoch, schedule position, metric history as JSON metadata), written
// atomically so a crash at any moment leaves the previous checkpoint intact. Loading checks the
// whole state before anything is used, so a damaged or hand-edited checkpoint is an error that
// names the file and the problem, never a resume that silently differs.
import { existsSync } from 'node:fs';
import type { AtomicWriteOptions } from '../io/atomic.js';
import { loadSafetensors, saveSafetensors } from '../tensor/safetensors.js';
import type { Tensor } from '../tensor/tensor.js';
import { RunError } from './errors.js';
import type { EpochMetrics } from './format.js';

const STATE_KEY = 'masksub_state';

/** The JSON half of an optimizer's state dict (optim's OptimizerScalars, which this layer sits below). */
export interface OptimizerRecord {
  kind: string;
  groups: { lr: number; weightDecay: number; lrScale: number; size: number }[];
  steps: Record<string, number>;
  hyperparameters: Record<string, number | boolean | null>;
}

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
  optimizer: OptimizerRecord;
  emaUpdates: number | null;
  /** float16 loss scaling's state (optim's GradScalerState); absent or null without it. */
  gradScaler?: { scale: number; goodSteps: number } | null;
}

export interface CheckpointParts {
  model: Map<string, Tensor>;
  optimizer: { tensors: Map<string, Tensor>; scalars: OptimizerRecord };
  ema: Map<string, Tensor> | null;
  rngState: Tensor;
  /**
   * The state of the generator of per-sample noise (masks, drop-path; nn/sample-noise.ts), which
   * every rank of a data-parallel run shares. Null in checkpoints written before it existed.
   */
  sampleRngState: Tensor | null;
  state: TrainingState;
}

export function saveCheckpoint(path: string, parts: CheckpointParts, options?: AtomicWriteOptions): void {
  const tensors = new Map<string, Tensor>();
  for (const [name, tensor] of parts.model) tensors.set(`model.${name}`, tensor);
  for (const [name, tensor] of parts.optimizer.tensors) tensors.set(`optimizer.${name}`, tensor);
  if (parts.ema) for (const [name, tensor] of parts.ema) tensors.set(`ema.${name}`, tensor);
  tensors.set('rng.cpu', parts.rngState);
  if (parts.sampleRngState) tensors.set('rng.samples', parts.sampleRngState);
  saveSafetensors(path, tensors, { [STATE_KEY]: JSON.stringify(parts.state), format: 'masksub-checkpoint' }, options);
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
const isCount = (value: unknown): boolean => Number.isInteger(value) && (value as number) >= 0;
const isFiniteNumber = (value: unknown): value is number => typeof value === 'number' && Number.isFinite(value);

/** Every problem of a stored training state (empty when it is whole and consistent). */
export function trainingStateProblems(value: unknown): string[] {
  if (!isRecord(value)) return ['the training state is not a JSON object'];
  const problems: string[] = [];
  if (value.version !== 1) problems.push(`unsupported version ${JSON.stringify(value.version)}`);
  if (!isCount(value.epoch)) problems.push(`epoch ${JSON.stringify(value.epoch)} is not a count`);
  if (!isCount(value.globalStep)) problems.push(`globalStep ${JSON.stringify(value.globalStep)} is not a count`);
  if (!isCount(value.skippedSteps)) problems.push(`skippedSteps ${JSON.stringify(value.skippedSteps)} is not a count`);
  if (!isFiniteNumber(value.wallSeconds) || value.wallSeconds < 0) problems.push(`wallSeconds ${JSON.stringify(value.wallSeconds)} is not a duration`);
  if (!isFiniteNumber(value.bestAcc1) || value.bestAcc1 < -1 || value.bestAcc1 > 100) problems.push(`bestAcc1 ${JSON.stringify(value.bestAcc1)} is not an accuracy`);
  if (!isCount(value.bestEpoch) || (isCount(value.epoch) && (value.bestEpoch as number) > (value.epoch as number))) problems.push(`bestEpoch ${JSON.stringify(value.bestEpoch)} is not a finished epoch`);
  if (value.emaUpdates !== null && !isCount(value.emaUpdates)) problems.push(`emaUpdates ${JSON.stringify(value.emaUpdates)} is not a count or null`);
  const scaler = value.gradScaler;
  if (scaler !== undefined && scaler !== null && !(isRecord(scaler) && isFiniteNumber(scaler.scale) && scaler.scale > 0 && isCount(scaler.goodSteps))) {
    problems.push(`gradScaler ${JSON.stringify(scaler)} is not {scale > 0, goodSteps}`);
  }
  if (!Array.isArray(value.history)) {
    problems.push('history is not a list');
  } else {
    if (isCount(value.epoch) && value.history.length !== value.epoch) {
      problems.push(`history holds ${value.history.length} epoch(s) but the state says ${value.epoch} finished`);
    }
    value.history.forEach((row: unknown, index) => {
      if (!isRecord(row) || row.epoch !== index + 1 || !isFiniteNumber(row.test_acc1) || !isFiniteNumber(row.wall_s) || !isFiniteNumber(row.step_time_s)) {
        problems.push(`history row ${index + 1} is not epoch ${index + 1}'s metrics`);
      }
    });
  }
  const optimizer = value.optimizer;
  if (!isRecord(optimizer) || typeof optimizer.kind !== 'string' || !Array.isArray(optimizer.groups) || !isRecord(optimizer.steps) || !isRecord(optimizer.hyperparameters)) {
    problems.push('optimizer state is missing or not {kind, groups, steps, hyperparameters}');
  } else {
    optimizer.groups.forEach((group: unknown, index) => {
      if (!isRecord(group) || !isFiniteNumber(group.lr) || !isFiniteNumber(group.weightDecay) || !isFiniteNumber(group.lrScale) || !isCount(group.size)) {
        problems.push(`optimizer group ${index} is not {lr, weightDecay, lrScale, size}`);
      }
    });
    for (const [key, step] of Object.entries(optimizer.steps)) if (!isCount(step)) problems.push(`optimizer step count of parameter ${key} is not a count`);
  }
  return problems;
}

/** Reads a checkpoint; the caller owns (and must dispose) every returned tensor. */
export function loadCheckpoint(path: string): CheckpointParts {
  if (!existsSync(path)) throw new RunError(`checkpoint ${path}: file not found`);
  // Errors of the file format already name the file (safetensors: PATH: problem).
  const { tensors, metadata } = loadSafetensors(path);
  const fail = (problem: string): never => {
    for (const tensor of tensors.values()) tensor.dispose();
    throw new RunError(`checkpoint ${path}: ${problem}`);
  };
  const text = metadata[STATE_KEY];
  if (!text) fail(`no '${STATE_KEY}' metadata: not a masksub checkpoint (a plain weights file can be loaded with loadSafetensors)`);
  let state: unknown;
  try {
    state = JSON.parse(text as string);
  } catch {
    return fail('its training state metadata is not valid JSON');
  }
  const problems = trainingStateProblems(state);
  if (problems.length) fail(`damaged training state: ${problems.join('; ')}`);
  const model = new Map<string, Tensor>();
  const optimizer = new Map<string, Tensor>();
  let ema: Map<string, Tensor> | null = null;
  let rngState: Tensor | null = null;
  let sampleRngState: Tensor | null = null;
  const unknown: string[] = [];
  for (const [name, tensor] of tensors) {
    if (name.startsWith('model.')) model.set(name.slice(6), tensor);
    else if (name.startsWith('optimizer.')) optimizer.set(name.slice(10), tensor);
    else if (name.startsWith('ema.')) (ema ??= new Map()).set(name.slice(4), tensor);
    else if (name === 'rng.cpu') rngState = tensor;
    else if (name === 'rng.samples') sampleRngState = tensor;
    else unknown.push(name);
  }
  if (unknown.length) return fail(`unexpected tensors ${unknown.slice(0, 5).join(', ')}${unknown.length > 5 ? ', ...' : ''}`);
  if (!rngState) return fail('no RNG state (rng.cpu)');
  if ((rngState as Tensor).dtype !== 'uint8' || (rngState as Tensor).ndim !== 1) return fail('the RNG state rng.cpu is not a 1-D uint8 tensor');
  if (sampleRngState && ((sampleRngState as Tensor).dtype !== 'uint8' || (sampleRngState as Tensor).ndim !== 1)) return fail('the RNG state rng.samples is not a 1-D uint8 tensor');
  if (!model.size) return fail('no model weights (model.*)');
  const valid = state as TrainingState;
  return { model, optimizer: { tensors: optimizer, scalars: valid.optimizer }, ema, rngState: rngState as Tensor, sampleRngState, state: valid };
}

export function disposeCheckpoint(parts: CheckpointParts): void {
  for (const tensor of [...parts.model.values(), ...parts.optimizer.tensors.values(), ...(parts.ema?.values() ?? []), parts.rngState]) tensor.dispose();
  parts.sampleRngState?.dispose();
}
