// What bench/run.ts (the orchestrator) and bench/child.ts (one measured configuration in its own
// process) share: the configuration a child gets, the result it prints, and small helpers.
// Deliberately free of imports from src/, so the orchestrator's own memory and start-up do not
// depend on the package.
import { readFileSync } from 'node:fs';

/** The model a child builds: a registry name for ours plus the plain shape PyTorch needs. */
export interface ModelSpec {
  /** Registry name (src/models/registry.ts) or 'mlp_tiny' (defined in child.ts and torch_bench.py). */
  name: string;
  family: 'vit' | 'resnet' | 'mlp';
  imageSize: number;
  inChannels: number;
  numClasses: number;
  // ViT
  patchSize?: number;
  width?: number;
  depth?: number;
  heads?: number;
  mlpRatio?: number;
  qkvBias?: boolean;
  // ResNet
  block?: string;
  stem?: string;
  layers?: number[];
  widths?: number[];
  maskPatchSize?: number;
}

export type Implementation = 'ours' | 'ours_plain' | 'pytorch';
export type StepMethod = 'baseline' | 'masksub';

/** One training-step configuration, as a child process receives it (JSON in argv). */
export interface StepJob {
  kind: 'step';
  impl: Implementation;
  model: ModelSpec;
  method: StepMethod;
  ratio: number;
  subWeight: number;
  labelSmoothing: number;
  lr: number;
  weightDecay: number;
  batchSize: number;
  warmup: number;
  steps: number;
  /** Stop timing after this many seconds (at least 3 steps are kept), a guard for slow machines. */
  maxSeconds: number | null;
  threads: number;
  device: string;
  seed: number;
  /** Count host->engine calls in one extra, untimed step. */
  countCalls: boolean;
  /** 'fixed': one random batch reused (the default); 'worker': batches from BatchLoader with its worker thread. */
  feed: 'fixed' | 'worker';
}

/** The data pipeline's throughput (ours only). */
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
  impl: 'ours' | 'pytorch';
  iterations: number;
  threads: number;
}

export type Job = StepJob | LoaderJob | OpCallJob;

export interface StepResult {
  impl: Implementation;
  stepSeconds: number[];
  medianStepSeconds: number | null;
  finalLoss: number | null;
  callsPerStep: number | null;
  peakRssKiB: number | null;
  rssAfterImportKiB: number | null;
  numParameters: number;
  threads: number;
  blas: string[];
  torchVersion: string;
  ompWaitPolicy: string | null;
  wallSeconds: number;
  gpuUsedMiB?: number | null;
  gpuPeakAllocatedMiB?: number | null;
  gpuName?: string;
  adamwForeach?: boolean | null;
  cuda?: string | boolean | null;
  dataset?: string;
}

export interface LoaderResult {
  imagesPerSecond: number;
  images: number;
  batches: number;
  seconds: number;
  dataset: string;
  peakRssKiB: number | null;
}

export interface OpCallResult {
  microsecondsPerCall: number;
  iterations: number;
}

export function median(values: readonly number[]): number | null {
  const sorted = values.filter((value) => Number.isFinite(value)).sort((a, b) => a - b);
  if (!sorted.length) return null;
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
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
