// What bench/run.ts (the orchestrator) and bench/child.ts (one measured configuration in its own
// process) share: the configuration a child gets, the result it prints, and small helpers
// (medians and quartiles, /proc readers). Deliberately free of imports from src/, so that a child
// can read its memory before the package (and libtorch) is loaded.
import { readFileSync } from 'node:fs';

/** The model a child builds: a registry name for ours plus the config PyTorch builds it from. */
export interface ModelSpec {
  /** Registry name (src/models/registry.ts) or 'mlp_tiny' (defined in child.ts and reference/torch_models.py). */
  name: string;
  family: 'vit' | 'resnet' | 'mlp';
  imageSize: number;
  inChannels: number;
  numClasses: number;
  /**
   * The model's full config as our registry builds it (VitConfig / ResNetConfig keys; for mlp_tiny
   * the width). reference/torch_models.py's build_model takes these keys, so PyTorch gets exactly
   * our shape, not a copy that could drift.
   */
  config: Record<string, unknown>;
}

/**
 * Which code runs a step, and under which allocator:
 * - `ours`: the trainer's step (methodStep + AdamW) with the addon's caching CPU allocator (default);
 * - `ours_nocache`: the same with `MASKSUB_CACHING_ALLOCATOR=0` (glibc malloc, as libtorch has it: engine parity);
 * - `ours_plain`: the step written plainly in TypeScript, line for line as the PyTorch one;
 * - `pytorch`: reference/torch_models.py's model and MaskSub step in Python, glibc malloc;
 * - `pytorch_jemalloc` / `pytorch_tcmalloc`: the same with jemalloc / tcmalloc through LD_PRELOAD
 *   (the allocators PyTorch's CPU performance tuning guide recommends).
 */
export type Implementation = 'ours' | 'ours_nocache' | 'ours_plain' | 'pytorch' | 'pytorch_jemalloc' | 'pytorch_tcmalloc';
export const IMPLEMENTATIONS: readonly Implementation[] = ['ours', 'ours_nocache', 'ours_plain', 'pytorch', 'pytorch_jemalloc', 'pytorch_tcmalloc'];
export type StepMethod = 'baseline' | 'masksub';

export function isPytorch(impl: Implementation): boolean {
  return impl.startsWith('pytorch');
}

/** One training-step configuration, as a child process receives it (JSON in argv). */
export interface StepJob {
  kind: 'step';
  impl: Implementation;
  /** 'trainer': methodStep then optimizer.step() and zeroGrad(); 'plain': the step written plainly. */
  step: 'trainer' | 'plain';
  model: ModelSpec;
  method: StepMethod;
  ratio: number;
  subWeight: number;
  labelSmoothing: number;
  lr: number;
  weightDecay: number;
  batchSize: number;
  /** Untimed steps first (allocator caches, BLAS buffers and page faults settle). */
  warmup: number;
  /** Timed steps run until at least this many seconds of them have passed... */
  seconds: number;
  /** ...and at least this many steps were timed. */
  minSteps: number;
  /** At most this many timed steps (null: no limit). */
  maxSteps: number | null;
  threads: number;
  device: string;
  seed: number;
  /** Count host->engine calls in one extra, untimed step. */
  countCalls: boolean;
  /** 'fixed': one random batch reused (the default); 'worker': batches from BatchLoader with its worker thread. */
  feed: 'fixed' | 'worker';
}

/** In-memory batch assembly (ours only): shuffle, gather, normalize, crop + flip into Float32 batches. */
export interface LoaderJob {
  kind: 'loader';
  batchSize: number;
  maxBatches: number;
  useWorker: boolean;
  threads: number;
}

/** Cost of one tiny op call, host->engine->host (x.add(y) on 1-element tensors). */
export interface OpCallJob {
  kind: 'opcall';
  impl: Implementation;
  iterations: number;
  threads: number;
}

export type Job = StepJob | LoaderJob | OpCallJob;

/** What every child reports about its own process, besides its measurement. */
export interface ProcessFacts {
  /** user + system CPU seconds of the whole process (all threads) when it reports. */
  cpuSeconds: number;
  /** The malloc in use: the first jemalloc / tcmalloc library mapped, else 'glibc'. */
  malloc: string;
  peakRssKiB: number | null;
  ompWaitPolicy: string | null;
}

export interface StepResult extends ProcessFacts {
  impl: Implementation;
  stepSeconds: number[];
  medianStepSeconds: number | null;
  finalLoss: number | null;
  callsPerStep: number | null;
  rssAfterImportKiB: number | null;
  numParameters: number;
  threads: number;
  blas: string[];
  torchVersion: string;
  /** ours: whether the addon's caching CPU allocator is on (MASKSUB_CACHING_ALLOCATOR != '0'). */
  cachingAllocator?: boolean;
  wallSeconds: number;
  gpuUsedMiB?: number | null;
  gpuPeakAllocatedMiB?: number | null;
  gpuName?: string;
  adamwForeach?: boolean | null;
  cuda?: string | boolean | null;
  dataset?: string;
}

export interface LoaderResult extends ProcessFacts {
  imagesPerSecond: number;
  images: number;
  batches: number;
  seconds: number;
  dataset: string;
}

export interface OpCallResult extends ProcessFacts {
  microsecondsPerCall: number;
  iterations: number;
}

const finiteSorted = (values: readonly number[]): number[] => values.filter((value) => Number.isFinite(value)).sort((a, b) => a - b);

export function median(values: readonly number[]): number | null {
  return quantile(values, 0.5);
}

/**
 * The q-quantile of the finite values, interpolated linearly between order statistics (R's type 7,
 * numpy's default): for [1, 2, 3, 4] the quartiles are 1.75 and 3.25. Null when nothing is finite.
 */
export function quantile(values: readonly number[], q: number): number | null {
  const sorted = finiteSorted(values);
  if (!sorted.length) return null;
  const position = (sorted.length - 1) * q;
  const below = Math.floor(position);
  const above = Math.min(below + 1, sorted.length - 1);
  return sorted[below] + (sorted[above] - sorted[below]) * (position - below);
}

/** Median and interquartile range [first quartile, third quartile] of the finite values. */
export function summarize(values: readonly number[]): { median: number | null; iqr: [number, number] | null; n: number } {
  const n = finiteSorted(values).length;
  const q1 = quantile(values, 0.25);
  const q3 = quantile(values, 0.75);
  return { median: median(values), iqr: q1 === null || q3 === null ? null : [q1, q3], n };
}

/** A field of /proc/self/status in KiB (VmHWM: peak resident set, VmRSS: current). */
export function procStatusKiB(field: 'VmHWM' | 'VmRSS'): number | null {
  try {
    const line = readFileSync('/proc/self/status', 'utf8').split('\n').find((entry) => entry.startsWith(`${field}:`));
    return line ? Number(line.split(/\s+/)[1]) : null;
  } catch {
    return null;
  }
}

/** The malloc this process runs on: a jemalloc or tcmalloc mapped into it (LD_PRELOAD), else glibc's. */
export function mappedMalloc(): string {
  try {
    for (const line of readFileSync('/proc/self/maps', 'utf8').split('\n')) {
      const path = line.split(/\s+/)[5];
      if (path && /lib(jemalloc|tcmalloc)[^/]*\.so/.test(path)) return path;
    }
  } catch {
    // not Linux
  }
  return 'glibc';
}

/** The last line of a child's stdout that parses as a JSON object. */
export function lastJsonLine(stdout: string): unknown {
  const lines = stdout.split('\n').map((line) => line.trim()).filter((line) => line.startsWith('{'));
  for (let index = lines.length - 1; index >= 0; index--) {
    try {
      return JSON.parse(lines[index]);
    } catch {
      // a progress line that happens to start with '{'; keep looking
    }
  }
  throw new Error('no JSON result line in the child output');
}
