// The typed native binding: native/ops.def, the C++ registration and the TypeScript interface
// agree; a misspelt function or a wrong argument fails to type-check; a wrong handle (a generator
// for a tensor, a tensor for a generator, anything else) is a TypeError naming the argument, never
// a crash or a deadlock; and libtorch's thread count is capped at the usable cores, with thread
// creation failure an error instead of a hang. Native misuse runs in child processes
// (test/helpers/binding-child.ts) so that a crash or a hang fails the test rather than the runner.
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { cpuQuotaCores, native, type NativeHandle, usableCores } from '../src/tensor/native.js';
import { nativeFunctionNames } from '../src/tensor/native-binding.js';
import { Generator, tensor, wrapHandle } from '../src/tensor/tensor.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const child = join(root, 'test', 'helpers', 'binding-child.ts');

function describeRun(result: SpawnSyncReturns<string>): string {
  return `exit ${result.status}, signal ${result.signal}${result.error ? `, ${result.error.message}` : ''}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`;
}

/** Runs the child in one mode; a signal (crash, or the timeout's kill after a hang) fails the test. */
function runChild(nodeArguments: string[], childArguments: string[], options: { env?: NodeJS.ProcessEnv; timeout?: number } = {}): { report: Record<string, unknown>; stderr: string } {
  const result = spawnSync(process.execPath, [...nodeArguments, '--import', 'tsx', child, ...childArguments], {
    cwd: root, encoding: 'utf8', env: options.env ?? process.env, timeout: options.timeout ?? 120_000,
  });
  assert.equal(result.signal, null, `child ended by a signal (native crash, or killed after hanging)\n${describeRun(result)}`);
  assert.equal(result.status, 0, describeRun(result));
  assert.doesNotMatch(result.stderr, /terminate called|Segmentation|Aborted|AddressSanitizer/, describeRun(result));
  return { report: JSON.parse(result.stdout.trim().split('\n').pop() ?? '') as Record<string, unknown>, stderr: result.stderr };
}

test('native/ops.def, the generated interface and the loaded addon list the same functions', () => {
  const check = spawnSync(process.execPath, [join(root, 'scripts', 'generate-binding.mjs'), '--check'], { encoding: 'utf8' });
  assert.equal(check.status, 0, `src/tensor/native-binding.ts is stale: ${check.stderr}`);
  // `native` is the addon's exports object itself, whichever build MASKSUB_ADDON points at.
  const addon = native as unknown as Record<string, unknown>;
  assert.deepEqual(Object.keys(addon).sort(), [...nativeFunctionNames].sort());
  for (const name of nativeFunctionNames) assert.equal(typeof addon[name], 'function', name);
  assert.equal(new Set(nativeFunctionNames).size, nativeFunctionNames.length, 'no function listed twice');
});

test('a misspelt function, a wrong argument or a handle of the other kind does not type-check', () => {
  const values = tensor([1, 2]);
  const generator = new Generator(0);
  // Never called: these lines exist for `tsc`, which fails if any of them stops being an error.
  const neverCalled = (): void => {
    // @ts-expect-error a misspelt function name
    native.addd(values.handle, values.handle);
    // @ts-expect-error a string where a tensor or a number goes
    native.add(values.handle, 'one');
    // @ts-expect-error a generator where a tensor goes
    native.neg(generator.handle);
    // @ts-expect-error a tensor where a generator goes
    native.randn([2], 'float32', 'cpu', values.handle);
    // @ts-expect-error a dtype that does not exist
    native.zeros([2], 'float33');
    // @ts-expect-error max along a dim returns two handles, not three
    native.max(values.handle, 0, false)[2];
    // @ts-expect-error wrapHandle takes tensor handles only
    wrapHandle(generator.handle);
  };
  assert.equal(typeof neverCalled, 'function');
  assert.equal('addd' in native, false);
  // The declared result types hold at run time.
  const [maxValues, indices] = native.max(values.handle, 0, false);
  assert.deepEqual([wrapHandle(maxValues).item(), wrapHandle(indices).item()], [2, 1]);
  assert.deepEqual(native.shape(values.handle), [2]);
  assert.equal(native.dtype(values.handle), 'float32');
});

test('a wrong handle is a TypeError naming the argument, never undefined behaviour', () => {
  const { report } = runChild([], ['misuse'], { timeout: 60_000 });
  const cases = report.cases as Record<string, { name: string; message: string } | null>;
  const typeError = (name: string, pattern: RegExp): void => {
    assert.ok(cases[name], `${name} must throw`);
    assert.equal(cases[name]!.name, 'TypeError', `${name}: ${cases[name]!.message}`);
    assert.match(cases[name]!.message, pattern, name);
  };
  typeError('disposeGenerator', /^dispose: argument 0 must be a tensor, got a generator$/);
  typeError('isAliveGenerator', /^isAlive: argument 0 must be a tensor, got a generator$/);
  typeError('tensorAsGenerator', /^randn: argument 3 must be a generator, got a tensor$/);
  typeError('tensorAsGeneratorInPlace', /^normal_: argument 3 must be a generator, got a tensor$/);
  typeError('generatorAsOperand', /^add: argument 1 must be a tensor, got a generator$/);
  typeError('generatorInList', /^cat: argument 0 must hold only tensors, but item 1 is a generator$/);
  typeError('generatorAsRngState', /^setRngState: argument 0 must be a tensor, got a generator$/);
  typeError('numberAsGenerator', /^randn: argument 3 must be a generator, got a number$/);
  typeError('objectAsTensor', /^neg: argument 0 must be a tensor, got an object$/);
  typeError('missingTensor', /^neg: argument 0 must be a tensor, got nothing$/);
  typeError('disposeNumber', /^dispose: argument 0 must be a tensor, got a number$/);
  typeError('disposedTensor', /^neg: argument 0 is a tensor that was already disposed$/);
  assert.equal(cases.disposeTwice, null, 'disposing a tensor twice is allowed');
  assert.equal(cases.failingOpWithGenerator?.name, 'Error');
  assert.match(cases.failingOpWithGenerator!.message, /^randn\(\[-1\], null, null, <generator>\): .*negative dimension/);
  assert.deepEqual(report.stillWorks, { values: [2, 3, 4], draw: [2] });
});

test('20,000 failing ops with a fresh Generator each (and Generators collected) give 20,000 clean errors', () => {
  const { report } = runChild(['--expose-gc'], ['generator-loop', '20000'], { timeout: 120_000 });
  assert.equal(report.collected, true);
  assert.equal(report.clean, 20000, `every call must end in the same clean error; first other outcome: ${report.other}`);
});

test('handles: a stale one is refused after its slot is reused; escaped and unscoped tensors are freed by the GC; tidy loops stay flat', () => {
  const { report } = runChild(['--expose-gc'], ['handles'], { timeout: 120_000 });
  const stale = report.stale as { error: { name: string; message: string } | null; alive: boolean; second: number[] };
  assert.equal(stale.error?.name, 'TypeError');
  assert.match(stale.error!.message, /^neg: argument 0 is a tensor that was already disposed$/);
  assert.equal(stale.alive, false);
  assert.deepEqual(stale.second, [5, 6], 'the tensor now in the slot is untouched');
  assert.equal(report.afterDrop, 3, 'three unreachable tensors alive before a collection');
  assert.equal(report.afterCollect, 0, 'the collection frees all three (FinalizationRegistry for the escaped, the finalizer for the unscoped)');
  assert.equal(report.afterLoop, 0);
});

test('cpu.max quotas give whole cores', () => {
  assert.equal(cpuQuotaCores('max 100000\n'), null);
  assert.equal(cpuQuotaCores('150000 100000\n'), 2);
  assert.equal(cpuQuotaCores('100000 100000'), 1);
  assert.equal(cpuQuotaCores('50000 100000'), 1);
  assert.equal(cpuQuotaCores('400000 100000'), 4);
  assert.equal(cpuQuotaCores('garbage'), null);
  assert.ok(usableCores() >= 1);
});

// Runs the thread case under `ulimit -u`: the process limit that made libtorch hang. Root is not
// bound by RLIMIT_NPROC, so as root the child gets nobody's real uid and loses CAP_SYS_RESOURCE
// and CAP_SYS_ADMIN (bash -p keeps the effective uid, so it still reads the checkout). As another
// user the limit is set above the processes that user already runs.
test('thread counts are capped at the usable cores, and threads that cannot start are an error, not a hang', () => {
  let command: string[];
  const nodeCommand = `exec ${JSON.stringify(process.execPath)} --import tsx ${JSON.stringify(child)} threads`;
  if (process.getuid?.() === 0) {
    command = ['setpriv', '--ruid', '65534', '--bounding-set', '-sys_resource,-sys_admin', 'bash', '-p', '-c', `ulimit -u 100 && ${nodeCommand}`];
  } else {
    const listing = spawnSync('ps', ['-L', '-u', String(process.getuid?.()), '--no-headers'], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(listing.status, 0, `ps failed: ${listing.stderr}`);
    const ownThreads = listing.stdout.split('\n').filter(Boolean).length;
    command = ['bash', '-c', `ulimit -S -u ${ownThreads + 60} && ${nodeCommand}`];
  }
  const result = spawnSync(command[0], command.slice(1), {
    cwd: root, encoding: 'utf8', timeout: 60_000, env: { ...process.env, MASKSUB_THREADS: '60' },
  });
  assert.equal(result.signal, null, `the child hung (killed after 60 s) or crashed\n${describeRun(result)}`);
  assert.equal(result.status, 0, describeRun(result));
  const report = JSON.parse(result.stdout.trim().split('\n').pop() ?? '') as Record<string, unknown>;
  const cores = report.usableCores as number;
  assert.equal(cores, usableCores());
  const raw = report.raw as { name: string; message: string } | null;
  assert.ok(raw, 'setNumThreads(60) under the process limit must throw');
  assert.match(raw.message, /^setNumThreads\(60\): cannot start 118 threads \(only \d+ started; pthread_create: Resource temporarily unavailable\)/);
  assert.match(result.stderr, new RegExp(`asks for 1000 threads, but this process can use ${cores} cores; using ${cores}`));
  // Up to ~30 cores, the capped count fits under the limit (2 x (cores - 1) threads + Node's own).
  if (cores <= 30) {
    assert.match(result.stderr, new RegExp(`MASKSUB_THREADS asks for 60 threads, but this process can use ${cores} cores; using ${cores}`));
    assert.equal(report.afterLoad, cores);
    assert.equal(report.capped, null);
    assert.equal(report.afterCap, cores);
    assert.equal(report.afterRaw, cores, 'a refused thread count leaves the previous one');
  }
  assert.deepEqual(report.product, [64, 64]);
});

test('disposing a generator through a tensor wrapper throws and leaves the generator working', () => {
  const generator = new Generator(3);
  assert.throws(() => wrapHandle(generator.handle as unknown as NativeHandle).dispose(), { name: 'TypeError', message: /got a generator/ });
  assert.equal(generator.getState().length > 0, true, 'the generator is untouched');
});
