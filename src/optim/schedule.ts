// Per-step learning-rate schedules (timm's CosineLRScheduler with a warmup prefix, stepped by
// update rather than by epoch) and applyLr, which hands a scheduled rate to an optimizer.
import type { Optimizer } from './optimizer.js';

export interface LrSchedule {
  /** The learning rate for the update numbered `step` (0-based). */
  lr(step: number): number;
}

export interface WarmupCosineOptions {
  baseLr: number;
  /** Reached at totalSteps and held afterwards. Default 0. */
  minLr?: number;
  /** Default 0 (no warmup). */
  warmupSteps?: number;
  totalSteps: number;
  /** The rate at step 0 of the warmup. Default 0. */
  warmupStartLr?: number;
}

/**
 * Linear warmup then a half cosine, with W = warmupSteps and T = totalSteps:
 *   step < W:      warmupStartLr + step * (baseLr - warmupStartLr) / W
 *   W <= step < T: minLr + 0.5 * (baseLr - minLr) * (1 + cos(pi * (step - W) / (T - W)))
 *   step >= T:     minLr
 * This is timm's CosineLRScheduler(t_initial = T - W, warmup_t = W, warmup_prefix = True,
 * cycle_limit = 1) evaluated per update; the warmup never reaches baseLr itself, the cosine
 * starts there at step W.
 */
export class WarmupCosineSchedule implements LrSchedule {
  readonly baseLr: number;
  readonly minLr: number;
  readonly warmupSteps: number;
  readonly totalSteps: number;
  readonly warmupStartLr: number;

  constructor(options: WarmupCosineOptions) {
    this.baseLr = options.baseLr;
    this.minLr = options.minLr ?? 0;
    this.warmupSteps = options.warmupSteps ?? 0;
    this.totalSteps = options.totalSteps;
    this.warmupStartLr = options.warmupStartLr ?? 0;
    for (const [name, value] of Object.entries({ baseLr: this.baseLr, minLr: this.minLr, warmupStartLr: this.warmupStartLr, warmupSteps: this.warmupSteps })) {
      if (!(value >= 0) || !Number.isFinite(value)) throw new RangeError(`WarmupCosineSchedule: ${name} must be a finite number >= 0, got ${value}`);
    }
    if (!(this.totalSteps > this.warmupSteps) || !Number.isFinite(this.totalSteps)) {
      throw new RangeError(`WarmupCosineSchedule: totalSteps (${this.totalSteps}) must exceed warmupSteps (${this.warmupSteps})`);
    }
  }

  lr(step: number): number {
    if (!(step >= 0)) throw new RangeError(`WarmupCosineSchedule: step must be >= 0, got ${step}`);
    if (step < this.warmupSteps) return this.warmupStartLr + (step * (this.baseLr - this.warmupStartLr)) / this.warmupSteps;
    if (step >= this.totalSteps) return this.minLr;
    const progress = (step - this.warmupSteps) / (this.totalSteps - this.warmupSteps);
    return this.minLr + 0.5 * (this.baseLr - this.minLr) * (1 + Math.cos(Math.PI * progress));
  }
}

/** Sets every group's learning rate to lr times the group's lrScale (1 unless layer-wise decay set it). */
export function applyLr(optimizer: Optimizer, lr: number): void {
  if (!(lr >= 0) || !Number.isFinite(lr)) throw new RangeError(`applyLr: lr must be a finite number >= 0, got ${lr}`);
  for (const group of optimizer.paramGroups) group.lr = lr * group.lrScale;
}
