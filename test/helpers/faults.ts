// Helpers of the fault-injection tests (test/faults.test.ts): run the real CLI in a child
// process, kill it at chosen moments, snapshot run directories, and build damaged input files
// (IDX, gzip, CIFAR, safetensors) from good ones; and the weight-file comparison of the runs that
// must reproduce each other (data-parallel against one process).
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { loadSafetensors } from '../../src/tensor/safetensors.js';

/** The repository root: the CLI runs from source there, as `node --import tsx src/cli/main.ts`. */
export const REPO = fileURLToPath(new URL('../..', import.meta.url));

/** The tiny training setting of every CLI run here (about 2-5 s on one thread). */
export const TINY = [
  '--dataset', 'fashion-mnist', '--model', 'vit_micro', '--limit-train', '512', '--limit-test', '256',
  '--batch-size', '64', '--probe-size', '64', '--epochs', '3', '--threads', '1',
] as const;

export interface CliResult {
  pid: number | undefined;
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

export interface CliProcess {
  child: ChildProcess;
  done: Promise<CliResult>;
}

/** Children still running, so a failed test does not leave a training process behind. */
const running = new Set<ChildProcess>();

/** SIGKILLs the children this module started that are still running (by their own handles). */
export function stopStragglers(): void {
  for (const child of running) child.kill('SIGKILL');
}

/** Starts `masksub ARGS` from source; `env` is added to (and may unset, with undefined) the parent's. */
export function startCli(args: readonly string[], env: Record<string, string | undefined> = {}): CliProcess {
  const started = performance.now();
  const childEnv: NodeJS.ProcessEnv = { ...process.env };
  // The parent may run under a test runner that sets these; the child is a plain CLI run.
  delete childEnv.NODE_TEST_CONTEXT;
  delete childEnv.MASKSUB_INJECT_NAN_AT_STEP;
  delete childEnv.MASKSUB_TEST_SLOW_CHECKPOINT_MS;
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined) delete childEnv[name];
    else childEnv[name] = value;
  }
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
    cwd: REPO, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk; });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
  const done = new Promise<CliResult>((resolve, reject) => {
    child.on('error', (error) => {
      running.delete(child);
      reject(error);
    });
    child.on('close', (code, signal) => {
      running.delete(child);
      resolve({ pid: child.pid, code, signal, stdout, stderr, ms: performance.now() - started });
    });
  });
  return { child, done };
}

export function runCli(args: readonly string[], env: Record<string, string | undefined> = {}): Promise<CliResult> {
  return startCli(args, env).done;
}

/** One line for assertion messages: what the child did. */
export function describe(result: CliResult): string {
  return `exit ${result.code}, signal ${result.signal}, ${(result.ms / 1000).toFixed(1)} s\nstdout: ${result.stdout.trim()}\nstderr: ${result.stderr.trim()}`;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `predicate` every `everyMs` until it holds; rejects after `timeoutMs` or when `stop` resolves first. */
export async function waitFor(predicate: () => boolean, what: string, options: { timeoutMs?: number; everyMs?: number; stop?: Promise<unknown> } = {}): Promise<void> {
  const { timeoutMs = 60_000, everyMs = 5 } = options;
  let stopped = false;
  void options.stop?.then(() => { stopped = true; });
  const deadline = performance.now() + timeoutMs;
  while (!predicate()) {
    if (stopped) throw new Error(`gave up waiting for ${what}: the process ended first`);
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** A small seeded PRNG (mulberry32) for reproducible kill times. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Every plain file of a directory (not recursive) with its bytes. */
export function snapshot(directory: string): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  for (const name of readdirSync(directory).sort()) {
    const path = join(directory, name);
    if (statSync(path).isFile()) files.set(name, readFileSync(path));
  }
  return files;
}

/** Names of the files that differ between two snapshots (added, removed or changed). */
export function changedFiles(before: Map<string, Buffer>, after: Map<string, Buffer>): string[] {
  const names = new Set([...before.keys(), ...after.keys()]);
  return [...names].filter((name) => {
    const a = before.get(name);
    const b = after.get(name);
    return a === undefined || b === undefined || !a.equals(b);
  }).sort();
}

/** Temp files of an atomic write in progress (or left by a killed writer): .NAME.PID.tmp */
export function tempFiles(directory: string): string[] {
  return existsSync(directory) ? readdirSync(directory).filter((name) => /^\..+\.\d+\.tmp$/.test(name)) : [];
}

export function metricsLines(directory: string): string[] {
  const path = join(directory, 'metrics.jsonl');
  return existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter((line) => line.trim()) : [];
}

// ---- IDX, gzip and CIFAR files ----

/** An IDX file of unsigned bytes: magic 0x000008NN (NN = rank), the dimensions, then the data. */
export function idxBytes(dims: number[], data: Uint8Array, magic = 0x00000800 | dims.length): Buffer {
  const header = Buffer.alloc(4 + 4 * dims.length);
  header.writeUInt32BE(magic >>> 0, 0);
  dims.forEach((size, axis) => header.writeUInt32BE(size, 4 + 4 * axis));
  return Buffer.concat([header, data]);
}

/**
 * A small but valid Fashion-MNIST-shaped IDX directory: `count` 28x28 images per split with labels
 * cycling 0..9, written raw (not gzip).
 */
export function writeFakeIdx(directory: string, count = 40): void {
  mkdirSync(directory, { recursive: true });
  for (const prefix of ['train', 't10k']) {
    const pixels = new Uint8Array(count * 28 * 28);
    for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 7 + (prefix === 'train' ? 0 : 3)) & 0xff;
    const labels = Uint8Array.from({ length: count }, (_, index) => index % 10);
    writeFileSync(join(directory, `${prefix}-images-idx3-ubyte`), idxBytes([count, 28, 28], pixels));
    writeFileSync(join(directory, `${prefix}-labels-idx1-ubyte`), idxBytes([count], labels));
  }
}

/** A CIFAR-10 binary file of `records` 3073-byte records (label byte, 3072 pixels). */
export function cifar10Bytes(records: number): Buffer {
  const bytes = Buffer.alloc(records * 3073);
  for (let record = 0; record < records; record++) bytes[record * 3073] = record % 10;
  return bytes;
}

// ---- safetensors ----

/** Splits a safetensors file into its JSON header (parsed) and its data buffer. */
export function splitSafetensors(bytes: Buffer): { header: Record<string, unknown>; data: Buffer } {
  const size = Number(bytes.readBigUInt64LE(0));
  return { header: JSON.parse(bytes.subarray(8, 8 + size).toString('utf8')) as Record<string, unknown>, data: bytes.subarray(8 + size) };
}

/** Joins a header (text or object) and a data buffer into a safetensors file, padding the header to 8 bytes. */
export function joinSafetensors(header: Record<string, unknown> | string, data: Buffer): Buffer {
  let text = typeof header === 'string' ? header : JSON.stringify(header);
  while (Buffer.byteLength(text) % 8) text += ' ';
  const size = Buffer.alloc(8);
  size.writeBigUInt64LE(BigInt(Buffer.byteLength(text)), 0);
  return Buffer.concat([size, Buffer.from(text), data]);
}

/** The header entry of the tensor whose data ends last (the one at the end of the file). */
export function lastTensor(header: Record<string, unknown>): { name: string; entry: { dtype: string; shape: number[]; data_offsets: [number, number] } } {
  let best: { name: string; entry: { dtype: string; shape: number[]; data_offsets: [number, number] } } | null = null;
  for (const [name, value] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const entry = value as { dtype: string; shape: number[]; data_offsets: [number, number] };
    if (!best || entry.data_offsets[1] > best.entry.data_offsets[1]) best = { name, entry };
  }
  if (!best) throw new Error('no tensors in the header');
  return best;
}

/** Largest absolute difference between two weight files, tensor by tensor. */
export function weightDifference(a: string, b: string): { max: number; worst: string } {
  const left = loadSafetensors(a).tensors;
  const right = loadSafetensors(b).tensors;
  assert.deepEqual([...left.keys()].sort(), [...right.keys()].sort());
  let max = 0;
  let worst = '';
  for (const [name, tensor] of left) {
    const x = tensor.toTypedArray() as Float32Array;
    const y = right.get(name)!.toTypedArray() as Float32Array;
    for (let index = 0; index < x.length; index++) {
      const difference = Math.abs(x[index]! - y[index]!);
      if (difference > max) {
        max = difference;
        worst = name;
      }
    }
  }
  for (const tensor of [...left.values(), ...right.values()]) tensor.dispose();
  return { max, worst };
}
