// Finite-difference gradient checks in float64: autograd gradients of a scalar function against
// central differences, element by element. Inputs that require grad are perturbed in place (under
// noGrad, through a flat view) and restored bit for bit; inputs without requiresGrad are constants.
import { AssertionError } from 'node:assert';
import { arange, noGrad, type Tensor, tidy } from '../../src/tensor/tensor.js';

export interface GradcheckOptions {
  /** Finite-difference step (default 1e-6). */
  eps?: number;
  /** Absolute tolerance (default 1e-6). */
  atol?: number;
  /** Tolerance relative to |numeric gradient| (default 1e-5). */
  rtol?: number;
  /** Names of the inputs, for messages (default input0, input1, ...). */
  names?: string[];
}

export interface GradcheckReport {
  /** Elements compared, over all inputs that require grad. */
  checked: number;
  /** max |analytic - numeric| over all elements. */
  maxAbsError: number;
  /** max |analytic - numeric| / (atol + rtol |numeric|): at most 1 when the check passes. */
  worstRatio: number;
  /** max |numeric| over all elements, to show the gradients were not all zero. */
  maxGradient: number;
}

function floats(t: Tensor): Float64Array {
  return Float64Array.from(t.toTypedArray() as Float64Array);
}

function multiIndex(flat: number, shape: number[]): number[] {
  const index = new Array<number>(shape.length).fill(0);
  for (let d = shape.length - 1; d >= 0; d--) {
    index[d] = flat % shape[d];
    flat = Math.floor(flat / shape[d]);
  }
  return index;
}

function checkInputs(inputs: Tensor[], names: string[]): void {
  if (!inputs.some((x) => x.requiresGrad)) throw new Error('gradcheck: no input requires grad');
  inputs.forEach((x, i) => {
    if (!x.requiresGrad) return;
    if (x.dtype !== 'float64') throw new Error(`gradcheck: ${names[i]} is ${x.dtype}; finite differences need float64`);
    if (!x.isLeaf) throw new Error(`gradcheck: ${names[i]} is not a leaf tensor`);
    if (!x.isContiguous()) throw new Error(`gradcheck: ${names[i]} must be contiguous (it is perturbed through a flat view)`);
  });
}

function evaluate(f: (inputs: Tensor[]) => Tensor, inputs: Tensor[]): number {
  return noGrad(() => tidy(() => {
    const out = f(inputs);
    if (out.numel !== 1) throw new Error(`gradcheck: f must return one element, got shape [${out.shape.join(', ')}]`);
    if (out.dtype !== 'float64') throw new Error(`gradcheck: f returned ${out.dtype}; it must compute in float64`);
    return out.item();
  }));
}

/**
 * Autograd gradients of f at inputs (null for inputs without requiresGrad). Existing .grad is
 * dropped before and after, so the inputs' gradients are left as they were found: none.
 */
export function analyticGradients(f: (inputs: Tensor[]) => Tensor, inputs: Tensor[]): (Float64Array | null)[] {
  for (const x of inputs) if (x.requiresGrad) x.zeroGrad();
  return tidy(() => {
    const out = f(inputs);
    if (out.numel !== 1) throw new Error(`gradcheck: f must return one element, got shape [${out.shape.join(', ')}]`);
    out.backward();
    return inputs.map((x) => {
      if (!x.requiresGrad) return null;
      const grad = x.grad;
      x.zeroGrad();
      // No gradient at all means f does not depend on x: zeros.
      return grad ? floats(grad) : new Float64Array(x.numel);
    });
  });
}

/** Central differences (f(x + h e_j) - f(x - h e_j)) / 2h for every element j of every input that requires grad. */
export function numericGradients(f: (inputs: Tensor[]) => Tensor, inputs: Tensor[], eps = 1e-6): (Float64Array | null)[] {
  return inputs.map((x) => {
    if (!x.requiresGrad) return null;
    const detached = x.detach();
    const original = floats(detached);
    detached.dispose();
    const numeric = new Float64Array(original.length);
    const flat = noGrad(() => x.view(-1));
    try {
      for (let j = 0; j < original.length; j++) {
        const value = original[j];
        const plus = value + eps;
        const minus = value - eps;
        const element = noGrad(() => flat.narrow(0, j, 1));
        try {
          noGrad(() => element.fill_(plus));
          const up = evaluate(f, inputs);
          noGrad(() => element.fill_(minus));
          const down = evaluate(f, inputs);
          noGrad(() => element.fill_(value));
          numeric[j] = (up - down) / (plus - minus);
        } finally {
          element.dispose();
        }
      }
    } finally {
      flat.dispose();
    }
    return numeric;
  });
}

/**
 * Compares autograd to central differences; throws an AssertionError naming the input and the
 * element with the largest error relative to its tolerance when any element fails
 * |analytic - numeric| <= atol + rtol |numeric|.
 */
export function gradcheck(f: (inputs: Tensor[]) => Tensor, inputs: Tensor[], options: GradcheckOptions = {}): GradcheckReport {
  const eps = options.eps ?? 1e-6;
  const atol = options.atol ?? 1e-6;
  const rtol = options.rtol ?? 1e-5;
  const names = inputs.map((_, i) => options.names?.[i] ?? `input${i}`);
  checkInputs(inputs, names);
  // Central differences of a function that changes between calls (fresh random tensors inside f)
  // are meaningless: refuse it with a clear message.
  const first = evaluate(f, inputs);
  const second = evaluate(f, inputs);
  if (!Object.is(first, second)) throw new Error(`gradcheck: f is not deterministic (${first} then ${second})`);
  const analytic = analyticGradients(f, inputs);
  const numeric = numericGradients(f, inputs, eps);
  const report: GradcheckReport = { checked: 0, maxAbsError: 0, worstRatio: 0, maxGradient: 0 };
  let worst: { input: number; element: number; a: number; n: number } | null = null;
  for (let i = 0; i < inputs.length; i++) {
    const a = analytic[i];
    const n = numeric[i];
    if (!a || !n) continue;
    for (let j = 0; j < n.length; j++) {
      const error = Math.abs(a[j] - n[j]);
      const ratio = Number.isNaN(error) ? Infinity : error / (atol + rtol * Math.abs(n[j]));
      report.checked++;
      report.maxAbsError = Math.max(report.maxAbsError, Number.isNaN(error) ? Infinity : error);
      report.maxGradient = Math.max(report.maxGradient, Math.abs(n[j]));
      if (worst === null || ratio > report.worstRatio) {
        report.worstRatio = ratio;
        worst = { input: i, element: j, a: a[j], n: n[j] };
      }
    }
  }
  if (report.worstRatio > 1 && worst !== null) {
    const { input, element, a, n } = worst;
    const where = multiIndex(element, inputs[input].shape);
    throw new AssertionError({
      message: `gradcheck: d/d${names[input]}[${where.join(', ')}] (flat ${element}): autograd ${a}, ` +
        `finite difference ${n}, |error| ${Math.abs(a - n).toExponential(3)} > ${atol} + ${rtol}*|numeric| ` +
        `(${report.checked} elements checked, max |error| ${report.maxAbsError.toExponential(3)})`,
      actual: a,
      expected: n,
      operator: 'gradcheck',
    });
  }
  return report;
}

/**
 * A fixed, non-trivial projection of out to a scalar: sum(out * w) with w[j] = sin(0.731 j + 0.2),
 * so that every output element gets a different weight in the gradient.
 */
export function project(out: Tensor): Tensor {
  return tidy(() => {
    const w = arange(0, out.numel, 1, { dtype: 'float64' }).mul(0.731).add(0.2).sin().reshape(...out.shape);
    return out.mul(w).sum();
  });
}
