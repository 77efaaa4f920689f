// Seeded pseudo-random numbers for the data pipeline: shuffling, augmentation and mixup.
//
// The generator is xoshiro128** (Blackman & Vigna), 128 bits of state held as four uint32 words,
// seeded through the murmur3 finalizer so that nearby seeds (0, 1, 2, ...) give unrelated streams.
// It is implemented with 32-bit integer arithmetic only, so it produces the same numbers on every
// platform and every run, and its state is four plain JSON numbers (exact resume after a restart).

/** Anything indexable and writable with a length: plain arrays and every typed array. */
export interface WritableArrayLike<T> {
  readonly length: number;
  [index: number]: T;
}

const TWO_POW_32 = 4294967296;
const INVERSE_TWO_POW_32 = 1 / TWO_POW_32;

/** murmur3's 32-bit finalizer: a bijective avalanche mix of one word. */
function mix32(value: number): number {
  let hash = value >>> 0;
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35);
  hash ^= hash >>> 16;
  return hash >>> 0;
}

const floatView = new Float64Array(1);
const floatWords = new Uint32Array(floatView.buffer);

/**
 * Splits a number into two 32-bit words without losing information: safe integers (negative ones
 * too) by value, anything else (fractions, huge values) by its IEEE-754 bits, so that every distinct
 * seed value gives a distinct pair.
 */
function numberWords(value: number): [number, number] {
  if (!Number.isFinite(value)) {
    throw new Error(`random: seed part ${String(value)} is not a finite number`);
  }
  if (Number.isSafeInteger(value)) {
    const low = value % TWO_POW_32;
    const high = Math.floor(value / TWO_POW_32);
    return [low >>> 0, high >>> 0];
  }
  floatView[0] = value;
  // The 0x7ff8 tag keeps these apart from the words of small integers.
  return [floatWords[0]! >>> 0, (floatWords[1]! ^ 0x7ff80000) >>> 0];
}

/**
 * A seed for an independent stream derived from a base seed and any number of parts, for example
 * `deriveSeed(seed, epoch)` for the shuffle order of one epoch or `deriveSeed(seed, epoch, 1, batch)`
 * for the augmentation of one batch. Returns an unsigned 32-bit integer.
 */
export function deriveSeed(seed: number, ...parts: number[]): number {
  const [seedLow, seedHigh] = numberWords(seed);
  let hash = mix32(seedLow ^ 0x9e3779b9);
  hash = mix32(hash ^ mix32(seedHigh + 0x7f4a7c15));
  for (const part of parts) {
    const [low, high] = numberWords(part);
    // Chaining through the running hash makes the result depend on the order: (1, 2) != (2, 1).
    hash = mix32(Math.imul(hash, 0x01000193) ^ mix32(low + 0x632be5ab));
    hash = mix32(hash ^ mix32(high + 0x85157af5));
  }
  return hash >>> 0;
}

/** A small, fast, deterministic generator (xoshiro128**). */
export class Random {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed = 0) {
    const [low, high] = numberWords(seed);
    const base = mix32(low ^ mix32(high + 0x6a09e667));
    this.s0 = mix32(base + 0x9e3779b9);
    this.s1 = mix32(base + 0x3c6ef372);
    this.s2 = mix32(base + 0xdaa66d2b);
    this.s3 = mix32(base + 0x78dde6e4);
    // The all-zero state is the one fixed point of xoshiro; the mix above practically never gives
    // it, but guarding costs nothing.
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  /** Restores a generator from `state()`; continues the exact same sequence. */
  static fromState(state: readonly number[]): Random {
    if (!Array.isArray(state) || state.length !== 4) {
      throw new Error(`random: state must be an array of 4 unsigned 32-bit integers, got ${JSON.stringify(state)}`);
    }
    for (const word of state) {
      if (!Number.isInteger(word) || word < 0 || word >= TWO_POW_32) {
        throw new Error(`random: state word ${String(word)} is not an unsigned 32-bit integer`);
      }
    }
    if (state.every((word) => word === 0)) {
      throw new Error('random: state [0,0,0,0] is invalid (xoshiro never leaves the zero state)');
    }
    const generator = new Random(0);
    generator.s0 = state[0]!;
    generator.s1 = state[1]!;
    generator.s2 = state[2]!;
    generator.s3 = state[3]!;
    return generator;
  }

  /** The full generator state as four unsigned 32-bit integers (JSON-serializable). */
  state(): number[] {
    return [this.s0 >>> 0, this.s1 >>> 0, this.s2 >>> 0, this.s3 >>> 0];
  }

  /** Next raw unsigned 32-bit output. */
  nextUint32(): number {
    // Names follow the reference implementation (s0..s3 state words, t the shifted s1).
    const s1 = this.s1;
    const product = Math.imul(s1, 5);
    const result = Math.imul((product << 7) | (product >>> 25), 9) >>> 0;
    const t = s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = (this.s3 << 11) | (this.s3 >>> 21);
    return result;
  }

  /** Uniform in [0, 1) with 32 bits of resolution. */
  next(): number {
    return this.nextUint32() * INVERSE_TWO_POW_32;
  }

  /** Uniform in [low, high). */
  uniform(low: number, high: number): number {
    return low + (high - low) * this.next();
  }

  /** Unbiased uniform integer in [0, n), for 1 <= n <= 2^32. */
  int(n: number): number {
    if (!Number.isInteger(n) || n < 1 || n > TWO_POW_32) {
      throw new Error(`random: int(n) needs an integer n in [1, 2^32], got ${String(n)}`);
    }
    if (n === 1) return 0;
    // Rejection of the top partial block removes the modulo bias; at most half the draws are rejected.
    const limit = TWO_POW_32 - (TWO_POW_32 % n);
    for (;;) {
      const value = this.nextUint32();
      if (value < limit) return value % n;
    }
  }

  /**
   * Standard normal sample (Box-Muller). Uses two uniforms per call and keeps no cached spare, so
   * the state stays exactly the four words returned by `state()`.
   */
  normal(): number {
    const u1 = 1 - this.next(); // in (0, 1], so the log is finite
    const u2 = this.next();
    return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  }

  /** In-place Fisher-Yates shuffle; returns the same array. */
  shuffle<A extends WritableArrayLike<unknown>>(array: A): A {
    for (let position = array.length - 1; position > 0; position--) {
      const other = this.int(position + 1);
      const held = array[position];
      array[position] = array[other];
      array[other] = held;
    }
    return array;
  }
}

/**
 * Gamma(shape, 1) sample by Marsaglia & Tsang; shapes below 1 use the boost
 * Gamma(a) = Gamma(a + 1) * U^(1/a). The one-letter names (d, c, x, v, u) are the paper's.
 */
export function sampleGamma(random: Random, shape: number): number {
  if (!(shape > 0) || !Number.isFinite(shape)) {
    throw new Error(`random: gamma shape must be a positive finite number, got ${String(shape)}`);
  }
  if (shape < 1) {
    const boosted = sampleGamma(random, shape + 1);
    const u = 1 - random.next();
    return boosted * Math.pow(u, 1 / shape);
  }
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    let x: number;
    let v: number;
    do {
      x = random.normal();
      v = 1 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const u = 1 - random.next();
    if (u < 1 - 0.0331 * x * x * x * x) return d * v;
    if (Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v;
  }
}

/** Beta(a, b) sample in [0, 1] via two gamma samples. */
export function sampleBeta(random: Random, a: number, b: number): number {
  const x = sampleGamma(random, a);
  const y = sampleGamma(random, b);
  const sum = x + y;
  // Tiny shapes can underflow both gammas to 0; the distribution then sits at the two ends.
  if (sum === 0) return random.next() < a / (a + b) ? 1 : 0;
  return x / sum;
}
