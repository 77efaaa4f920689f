// Child process for test/binding.test.ts (and scripts/asan-check.sh): the native misuse cases
// run here, so that a crash or a deadlock in the addon fails the test instead of taking the test
// runner down or blocking it. Prints one JSON object on stdout.
//   node --import tsx test/helpers/binding-child.ts misuse | generator-loop [count] | threads | handles
import { native, type NativeHandle, getNumThreads, liveTensors, setNumThreads, usableCores } from '../../src/tensor/native.js';
import { Generator, keep, randn, tensor, tidy, wrapHandle } from '../../src/tensor/tensor.js';

/** What an action threw: its class and message, or null when it did not throw. */
function outcome(action: () => unknown): { name: string; message: string } | null {
  try {
    action();
    return null;
  } catch (error) {
    return error instanceof Error ? { name: error.constructor.name, message: error.message } : { name: typeof error, message: String(error) };
  }
}

// Calls the addon with arguments its declared types forbid: exactly what the type tags are for.
const untyped = native as unknown as Record<string, (...args: unknown[]) => unknown>;

function misuse(): Record<string, unknown> {
  const generator = new Generator(1);
  const values = tensor([1, 2, 3]);
  const asTensor = generator.handle as unknown as NativeHandle;
  const cases = {
    disposeGenerator: outcome(() => wrapHandle(asTensor).dispose()),
    isAliveGenerator: outcome(() => native.isAlive(asTensor)),
    tensorAsGenerator: outcome(() => untyped.randn([2], null, null, values.handle)),
    tensorAsGeneratorInPlace: outcome(() => untyped.normal_(values.handle, 0, 1, values.handle)),
    generatorAsOperand: outcome(() => native.add(values.handle, asTensor)),
    generatorInList: outcome(() => native.cat([values.handle, asTensor], 0)),
    generatorAsRngState: outcome(() => untyped.setRngState(generator.handle)),
    numberAsGenerator: outcome(() => untyped.randn([2], null, null, 5)),
    objectAsTensor: outcome(() => untyped.neg({})),
    missingTensor: outcome(() => untyped.neg()),
    disposeNumber: outcome(() => untyped.dispose(3)),
    // An op that fails inside libtorch while a generator is among its arguments: the error
    // message describes every argument, which used to read the generator as a tensor.
    failingOpWithGenerator: outcome(() => randn([-1], { generator })),
    disposeTwice: outcome(() => {
      const scratch = tensor([1]);
      scratch.dispose();
      scratch.dispose();
    }),
    disposedTensor: outcome(() => {
      const scratch = tensor([1]);
      scratch.dispose();
      scratch.neg();
    }),
  };
  // Both handles still work after all that.
  const stillWorks = tidy(() => ({ values: values.add(1).toArray(), draw: randn([2], { generator }).shape }));
  return { cases, stillWorks };
}

// randn([-1]) with a fresh generator each time: the case that aborted or segfaulted within
// ~8,000 calls, at once with --expose-gc after collecting generators.
function generatorLoop(count: number): Record<string, unknown> {
  const collect = (globalThis as { gc?: () => void }).gc;
  let clean = 0;
  let other = '';
  for (let i = 0; i < count; i++) {
    const result = outcome(() => randn([-1], { generator: new Generator(i) }));
    if (result && result.name === 'Error' && result.message.includes('<generator>') && /negative dimension/.test(result.message)) clean++;
    else other ||= JSON.stringify(result);
    if (collect && i % 1000 === 999) collect();
  }
  return { count, clean, other, collected: collect !== undefined };
}

function threads(): Record<string, unknown> {
  const afterLoad = getNumThreads();
  const capped = outcome(() => setNumThreads(1000));
  const afterCap = getNumThreads();
  // The raw binding has no cap: this is the call that hung in libtorch's pool creation.
  const raw = outcome(() => native.setNumThreads(60));
  const afterRaw = getNumThreads();
  const product = tidy(() => randn([64, 64]).matmul(randn([64, 64])).shape);
  return { usableCores: usableCores(), afterLoad, capped, afterCap, raw, afterRaw, product };
}

// Handles made inside tidy carry no GC finalizer (native/core.cc): a stale handle must still be
// refused after its slot is reused, and tensors that escape a scope (keep, a top-level tidy's
// result) or never entered one must still be freed once unreachable. Needs --expose-gc.
async function handles(): Promise<Record<string, unknown>> {
  const collect = (globalThis as { gc?: () => void }).gc;
  if (!collect) throw new Error('handles needs --expose-gc');
  const settle = async (): Promise<void> => {
    // FinalizationRegistry callbacks and N-API finalizers run after a collection, as tasks.
    for (let round = 0; round < 5; round++) {
      collect();
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };
  const base = liveTensors();
  // A disposed handle whose slot a new tensor took over: refused, and the new tensor untouched.
  const stale = tidy(() => {
    const first = tensor([1, 2]);
    const handle = first.handle;
    first.dispose();
    const second = tensor([5, 6]);
    return { error: outcome(() => native.neg(handle)), alive: native.isAlive(handle), second: Array.from(second.toTypedArray() as Float32Array) };
  });
  // Escapes: kept out of a tidy, a top-level tidy's result, and no scope at all; then dropped.
  (() => {
    tidy(() => keep(randn([1000])));
    tidy(() => randn([1000]));
    randn([1000]);
  })();
  const afterDrop = liveTensors() - base;
  await settle();
  const afterCollect = liveTensors() - base;
  // 20,000 tidy scopes of 10 tensors each: the count stays flat.
  for (let i = 0; i < 20000; i++) tidy(() => { for (let j = 0; j < 10; j++) tensor([j]); });
  const afterLoop = liveTensors() - base;
  return { stale, afterDrop, afterCollect, afterLoop };
}

const mode = process.argv[2];
let report: Record<string, unknown>;
if (mode === 'misuse') report = misuse();
else if (mode === 'generator-loop') report = generatorLoop(Number(process.argv[3] ?? 20000));
else if (mode === 'threads') report = threads();
else if (mode === 'handles') report = await handles();
else throw new Error(`unknown mode '${mode}' (misuse, generator-loop, threads, handles)`);
process.stdout.write(JSON.stringify(report) + '\n');
