// Loads the native addon (build/Release/masksub_native.node) and sets libtorch's thread count.
// Everything else in the package reaches libtorch only through `native`.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** An opaque handle to a libtorch tensor owned by the addon. */
export type NativeHandle = { readonly __nativeTensor: unique symbol };
/** An opaque handle to a libtorch random generator. */
export type NativeGenerator = { readonly __nativeGenerator: unique symbol };

type NativeArgument =
  | NativeHandle | NativeGenerator | number | string | boolean | null | undefined
  | readonly number[] | readonly NativeHandle[] | ArrayBufferView | ArrayBuffer;

// The binding is regular (libtorch op names, libtorch argument order), so one call signature
// covers it; the typed surface users see is the Tensor class.
export type NativeFunction = (...args: NativeArgument[]) => unknown;
export type NativeBinding = Record<string, NativeFunction>;

const here = dirname(fileURLToPath(import.meta.url));
const addonPath = join(here, '..', '..', 'build', 'Release', 'masksub_native.node');

// libgomp reads its settings when libtorch is loaded, so they are set before the addon loads.
// Passive waiting: measured here, a busy 2-core machine (a data worker thread or another process
// next to libtorch's 2 OpenMP threads) made a small ViT's forward+backward 10-25x slower with
// the default spin-waiting (550 ms vs 20 ms); a user's own OMP_WAIT_POLICY wins.
process.env.OMP_WAIT_POLICY ??= 'PASSIVE';

function load(): NativeBinding {
  const require = createRequire(import.meta.url);
  try {
    return require(addonPath) as NativeBinding;
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(
      `masksub: cannot load the native addon at ${addonPath}: ${reason}\n` +
        'Build it with `npm ci` (needs: apt-get install -y libtorch-dev libopenblas0-openmp).',
    );
  }
}

export const native: NativeBinding = load();

function defaultThreads(): number {
  const fromEnvironment = Number(process.env.MASKSUB_THREADS);
  if (Number.isInteger(fromEnvironment) && fromEnvironment > 0) return fromEnvironment;
  return availableParallelism();
}

// libtorch may start with 1 intra-op thread; we set it explicitly (ARCHITECTURE.md, trap 2).
native.setNumThreads(defaultThreads());

export function setNumThreads(threads: number): void {
  if (!Number.isInteger(threads) || threads < 1) throw new RangeError(`threads must be a positive integer, got ${threads}`);
  native.setNumThreads(threads);
}

export function getNumThreads(): number {
  return native.getNumThreads() as number;
}

export interface BuildInfo {
  torchVersion: string;
  cxx11Abi: boolean;
  cuda: boolean;
  parallelInfo: string;
}

export function buildInfo(): BuildInfo {
  return native.buildInfo() as BuildInfo;
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
  return native.cudaAvailable() as boolean;
}

export function cudaDeviceCount(): number {
  return native.cudaDeviceCount() as number;
}

/** Waits for queued GPU work (for timing); a no-op on CPU. */
export function synchronize(): void {
  native.synchronize();
}

/** Number of tensor handles not yet disposed or collected. */
export function liveTensors(): number {
  return native.liveTensors() as number;
}
