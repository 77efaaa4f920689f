// Helpers of test/compare.test.ts: the real CLI in a child process, a tiny training setting, the
// run files read back, and reference statistics written independently of src/report/stats.ts.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import studentTCdf from '@stdlib/stats-base-dists-t-cdf';

export const REPOSITORY = fileURLToPath(new URL('../..', import.meta.url));

/**
 * The smallest real setting: 4 steps of 64 images per epoch, 200 test images, one thread.
 * warmup-epochs 0: with the default warmup of 1 epoch, `--epochs 1` fails in the LR schedule
 * ("totalSteps (4) must exceed warmupSteps (4)") although the config validation accepted it.
 */
export function tinyFlags(epochs = 1): string[] {
  return [
    '--dataset', 'fashion-mnist', '--model', 'vit_micro', '--limit-train', '256', '--limit-test', '200',
    '--batch-size', '64', '--probe-size', '64', '--epochs', String(epochs), '--threads', '1', '--warmup-epochs', '0',
  ];
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  seconds: number;
}

export interface RunningCli {
  child: ChildProcess;
  /** Settles when the process has exited (also after a kill). */
  done: Promise<CliResult>;
}

/** Starts `masksub <args>` from source (node --import tsx src/cli/main.ts) in a child process. */
export function startCli(args: readonly string[]): RunningCli {
  const started = performance.now();
  const child = spawn(process.execPath, ['--import', 'tsx', join(REPOSITORY, 'src/cli/main.ts'), ...args], {
    cwd: REPOSITORY,
    env: { ...process.env, MASKSUB_DEBUG: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk; });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
  const done = new Promise<CliResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr, seconds: (performance.now() - started) / 1000 }));
  });
  return { child, done };
}

export function runCli(args: readonly string[]): Promise<CliResult> {
  return startCli(args).done;
}

/** Everything a CLI run printed, for assertion messages. */
export function output(result: CliResult): string {
  return `exit ${result.code} signal ${result.signal}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`;
}

export function sleep(milliseconds: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, milliseconds));
}

/** Polls `condition` every `interval` ms; false when `exited` settles or `timeout` passes first. */
export async function waitFor(condition: () => boolean, exited: Promise<unknown>, timeout = 60_000, interval = 5): Promise<boolean> {
  let over = false;
  void exited.then(() => { over = true; });
  const deadline = performance.now() + timeout;
  while (performance.now() < deadline) {
    if (condition()) return true;
    if (over) return condition();
    await sleep(interval);
  }
  return false;
}

/** Deterministic PRNG (mulberry32) for the kill times, so a failure can be replayed. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let value = state;
    value = Math.imul(value ^ (value >>> 15), value | 1);
    value ^= value + Math.imul(value ^ (value >>> 7), value | 61);
    return ((value ^ (value >>> 14)) >>> 0) / 4294967296;
  };
}

export function readJson<T = Record<string, unknown>>(path: string): T {
  return JSON.parse(readFileSync(path, 'utf8')) as T;
}

export interface MetricsLine {
  epoch: number;
  test_acc1: number;
  train_loss: number;
  step_time_s: number;
  wall_s: number;
  [key: string]: unknown;
}

export function readMetricsLines(runDirectory: string): MetricsLine[] {
  const path = join(runDirectory, 'metrics.jsonl');
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8').split('\n').filter((line) => line.trim() !== '').map((line) => JSON.parse(line) as MetricsLine);
}

export interface DoneFile {
  finished: boolean;
  epochs: number;
  final_test_acc1: number;
  best_test_acc1: number;
  best_epoch: number;
  wall_s: number;
  mean_step_time_s: number;
}

/** Bytes and mtime of each file, to prove a reused run was not touched. */
export function fingerprint(directory: string, names: readonly string[]): Record<string, { mtimeMs: number; bytes: string }> {
  const prints: Record<string, { mtimeMs: number; bytes: string }> = {};
  for (const name of names) {
    const path = join(directory, name);
    prints[name] = { mtimeMs: statSync(path).mtimeMs, bytes: readFileSync(path).toString('base64') };
  }
  return prints;
}

// ---- reference statistics (deliberately not src/report/stats.ts) ----

export function referenceMean(values: readonly number[]): number {
  return values.reduce((total, value) => total + value, 0) / values.length;
}

export function referenceStd(values: readonly number[]): number {
  const average = referenceMean(values);
  return Math.sqrt(values.reduce((total, value) => total + (value - average) ** 2, 0) / (values.length - 1));
}

/**
 * Two-sided p-value of Student's t by numerical integration of the unnormalised density,
 * p = ∫_{|t|}^∞ f / ∫_0^∞ f, with x = tan θ mapping the infinite tail onto a finite interval
 * (composite Simpson). No special functions, so it checks the library's incomplete beta.
 */
export function integratedPValue(t: number, degreesOfFreedom: number): number {
  const integrand = (theta: number): number => {
    const x = Math.tan(theta);
    const cosine = Math.cos(theta);
    return (1 + (x * x) / degreesOfFreedom) ** (-(degreesOfFreedom + 1) / 2) / (cosine * cosine);
  };
  const simpson = (from: number, to: number, panels: number): number => {
    const width = (to - from) / panels;
    let total = integrand(from) + integrand(to);
    for (let index = 1; index < panels; index++) total += integrand(from + index * width) * (index % 2 === 1 ? 4 : 2);
    return (total * width) / 3;
  };
  const end = Math.PI / 2 - 1e-12;
  return simpson(Math.atan(Math.abs(t)), end, 200_000) / simpson(0, end, 200_000);
}

/** The same p-value from @stdlib's Student t CDF (a second, library-based reference). */
export function libraryPValue(t: number, degreesOfFreedom: number): number {
  return 2 * studentTCdf(-Math.abs(t), degreesOfFreedom);
}

export type ReferenceWelch = { t: number; df: number; p: number } | { zeroVariance: true };

/** Welch's t, Welch–Satterthwaite df and the integrated two-sided p of mean(a) - mean(b). */
export function referenceWelch(a: readonly number[], b: readonly number[]): ReferenceWelch {
  const shareA = referenceStd(a) ** 2 / a.length;
  const shareB = referenceStd(b) ** 2 / b.length;
  if (shareA + shareB === 0) return { zeroVariance: true };
  const t = (referenceMean(a) - referenceMean(b)) / Math.sqrt(shareA + shareB);
  const df = (shareA + shareB) ** 2 / (shareA ** 2 / (a.length - 1) + shareB ** 2 / (b.length - 1));
  return { t, df, p: integratedPValue(t, df) };
}

/** |actual - expected| <= tolerance * max(1, |expected|), with a message naming both. */
export function close(actual: unknown, expected: number, tolerance = 1e-9): { ok: boolean; message: string } {
  const ok = typeof actual === 'number' && Math.abs(actual - expected) <= tolerance * Math.max(1, Math.abs(expected));
  return { ok, message: `${String(actual)} != ${expected} (relative tolerance ${tolerance})` };
}
