// Loads the native addon (build/Release/masksub_native.node) and sets libtorch's thread count.
// Everything else in the package reaches libtorch only through `native`, whose type (one method
// per addon function, generated from native/ops.def) makes a misspelt function or a wrong
// argument a compile error.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type NativeBinding, nativeFunctionNames } from './native-binding.js';

export type { NativeBinding } from './native-binding.js';

/** An opaque handle to a libtorch tensor owned by the addon (type-tagged on the C++ side). */
export type NativeHandle = { readonly __nativeTensor: unique symbol };
/** An opaque handle to a libtorch random generator (type-tagged on the C++ side). */
export type NativeGenerator = { readonly __nativeGenerator: unique symbol };

const here = dirname(fileURLToPath(import.meta.url));
// MASKSUB_ADDON points at another build of the addon (scripts/asan-check.sh loads one built with
// AddressSanitizer); everyone else gets the one `npm ci` built.
const addonPath = process.env.MASKSUB_ADDON
  ? resolve(process.env.MASKSUB_ADDON)
  : join(here, '..', '..', 'build', 'Release', 'masksub_native.node');

// libgomp reads its settings when libtorch is loaded, so they are set before the addon loads.
// Passive waiting: with one busy process on the same 2 cores, a vit_micro step (batch 32) took
// 53.0 ms with ACTIVE (spinning) OpenMP threads and 22.2 ms with PASSIVE (x2.24; PyTorch with
// libgomp's default: 57.2 vs 26.8 ms); on idle cores PASSIVE costs 28% (20.8 vs 15.7 ms).
// bench/results/cpu-waitfeed.json (npm run bench -- --only waitpolicy). Training shares the
// cores with the loader's worker threads, so PASSIVE is the default; a user's own
// OMP_WAIT_POLICY wins.
process.env.OMP_WAIT_POLICY ??= 'PASSIVE';

function load(): NativeBinding {
  const require = createRequire(import.meta.url);
  let addon: Record<string, unknown>;
  try {
    addon = require(addonPath) as Record<string, unknown>;
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(
      `masksub: cannot load the native addon at ${addonPath}: ${reason}\n` +
        'Build it with `npm ci` (needs: apt-get install -y libtorch-dev libopenblas0-openmp).',
    );
  }
  // An addon built from older sources than these lacks functions: say so now, not as
  // "native.x is not a function" in the middle of a run.
  const missing = nativeFunctionNames.filter((name) => typeof addon[name] !== 'function');
  if (missing.length > 0) {
    throw new Error(
      `masksub: the native addon at ${addonPath} is older than the sources (it lacks ${missing.slice(0, 5).join(', ')}` +
        `${missing.length > 5 ? ` and ${missing.length - 5} more` : ''}); rebuild it with \`npm run build\``,
    );
  }
  return addon as unknown as NativeBinding;
}

export const native: NativeBinding = load();

/**
 * CPUs allowed by a cgroup v2 `cpu.max` file ("<quota> <period>", or "max <period>" for no
 * limit), rounded up; null when there is no limit or the text is not that format.
 */
export function cpuQuotaCores(cpuMax: string): number | null {
  const match = /^(\d+|max)\s+(\d+)\s*$/.exec(cpuMax.trim());
  if (!match || match[1] === 'max') return null;
  const quota = Number(match[1]);
  const period = Number(match[2]);
  if (!(quota > 0 && period > 0)) return null;
  return Math.max(1, Math.ceil(quota / period));
}

// The tightest cgroup v2 CPU quota on this process's cgroup path (each level can set one).
function cgroupCores(): number | null {
  let path = '/';
  try {
    const line = readFileSync('/proc/self/cgroup', 'utf8').split('\n').find((entry) => entry.startsWith('0::'));
    if (line) path = line.slice(3).trim() || '/';
  } catch {
    // no /proc: look at the root only
  }
  let tightest: number | null = null;
  for (let directory = path; ; directory = dirname(directory)) {
    try {
      const cores = cpuQuotaCores(readFileSync(join('/sys/fs/cgroup', directory, 'cpu.max'), 'utf8'));
      if (cores !== null && (tightest === null || cores < tightest)) tightest = cores;
    } catch {
      // this level has no cpu.max (or no cgroup v2 at all)
    }
    if (directory === '/' || directory === '.') break;
  }
  return tightest;
}

/** The cores this process may use: availableParallelism() (CPU affinity), capped by a cgroup CPU quota. */
export function usableCores(): number {
  const quota = cgroupCores();
  return quota === null ? availableParallelism() : Math.min(availableParallelism(), quota);
}

const warnedThreadCounts = new Set<number>();

// More threads than cores only slows libtorch down, and each one is a process-table slot: under a
// container's process limit a large count used to hang libtorch's pool creation.
function capThreads(threads: number, source: string): number {
  const cores = usableCores();
  if (threads <= cores) return threads;
  if (!warnedThreadCounts.has(threads)) {
    warnedThreadCounts.add(threads);
    process.stderr.write(`masksub: ${source} asks for ${threads} threads, but this process can use ${cores} cores; using ${cores}\n`);
  }
  return cores;
}

function defaultThreads(): number {
  const setting = process.env.MASKSUB_THREADS;
  if (setting !== undefined && setting !== '') {
    const threads = Number(setting);
    if (Number.isInteger(threads) && threads > 0) return capThreads(threads, 'MASKSUB_THREADS');
    process.stderr.write(`masksub: MASKSUB_THREADS='${setting}' is not a positive integer; ignored\n`);
  }
  return usableCores();
}

// libtorch may start with 1 intra-op thread; we set it explicitly (ARCHITECTURE.md, trap 2).
// Loading the package must not fail over this: if the threads cannot be started (a process
// limit), libtorch keeps its current count and the reason goes to stderr.
{
  const threads = defaultThreads();
  try {
    native.setNumThreads(threads);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    process.stderr.write(`masksub: ${reason}; continuing with ${native.getNumThreads()} thread(s)\n`);
  }
}

/**
 * Sets libtorch's thread count, capped at the usable cores (with a warning on stderr). Throws
 * when the system cannot start that many threads (a process limit), instead of hanging.
 */
export function setNumThreads(threads: number): void {
  if (!Number.isInteger(threads) || threads < 1) throw new RangeError(`threads must be a positive integer, got ${threads}`);
  native.setNumThreads(capThreads(threads, 'the thread setting'));
}

export function getNumThreads(): number {
  return native.getNumThreads();
}

export interface BuildInfo {
  torchVersion: string;
  cxx11Abi: boolean;
  cuda: boolean;
  parallelInfo: string;
}

export function buildInfo(): BuildInfo {
  return native.buildInfo();
}

/** Which BLAS libraries this process has mapped (the reference BLAS is ~30x slower). */
export function blasLibraries(): string[] {
  try {
    const maps = readFileSync('/proc/self/maps', 'utf8');
    const found = new Set<string>();
    for (const line of maps.split('\n')) {
      const path = line.split(/\s+/)[5];
      if (path && /(blas|lapack|mkl)/i.test(path)) found.add(path);
    }
    return [...found].sort();
  } catch {
    return [];
  }
}

export function cudaAvailable(): boolean {
  return native.cudaAvailable();
}

export function cudaDeviceCount(): number {
  return native.cudaDeviceCount();
}

/** Waits for queued GPU work (for timing); a no-op on CPU. */
export function synchronize(): void {
  native.synchronize();
}

/** Number of tensor handles not yet disposed or collected. */
export function liveTensors(): number {
  return native.liveTensors();
}
