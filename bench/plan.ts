// The benchmark's design, as pure functions the tests can check: the seeded random order of each
// round (blocks of one configuration, each block's implementations back to back in a random
// order, so that a slow drift of the machine's load does not favour whichever side runs first),
// and ratios paired within a round.
import { deriveSeed, Random } from '../src/data/random.js';

export interface Orderable<C extends { id: string }> {
  id: string;
  contenders: readonly C[];
}

/**
 * The run order of one round: the blocks shuffled, and within each block its contenders
 * shuffled, all from `deriveSeed(seed, round)` (the same seed and round give the same order).
 */
export function roundOrder<C extends { id: string }, B extends Orderable<C>>(blocks: readonly B[], seed: number, round: number): { block: B; contender: C }[] {
  const random = new Random(deriveSeed(seed, round));
  const order: { block: B; contender: C }[] = [];
  for (const block of random.shuffle([...blocks])) {
    for (const contender of random.shuffle([...block.contenders])) order.push({ block, contender });
  }
  return order;
}

/**
 * value(left[r]) / value(right[r]) for every round r where both exist and both values are finite
 * and the denominator is not zero; `rounds` says which rounds the samples came from.
 */
export function pairedRatios<T>(
  left: readonly (T | null | undefined)[],
  right: readonly (T | null | undefined)[],
  value: (entry: T) => number | null | undefined,
): { samples: number[]; rounds: number[] } {
  const samples: number[] = [];
  const rounds: number[] = [];
  for (let round = 0; round < Math.max(left.length, right.length); round++) {
    const a = left[round];
    const b = right[round];
    if (a === null || a === undefined || b === null || b === undefined) continue;
    const numerator = value(a);
    const denominator = value(b);
    if (numerator === null || numerator === undefined || denominator === null || denominator === undefined || denominator === 0) continue;
    const ratio = numerator / denominator;
    if (!Number.isFinite(ratio)) continue;
    samples.push(ratio);
    rounds.push(round);
  }
  return { samples, rounds };
}
