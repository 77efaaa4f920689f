// Small, dependency-light statistics for comparing training runs across seeds: mean, sample
// standard deviation and Welch's unequal-variance t-test. Every function returns null instead of
// NaN when the statistic is undefined, so callers (and results.json) never carry NaN around.

import studentTCdf from '@stdlib/stats-base-dists-t-cdf';

function allFinite(values: readonly number[]): boolean {
  return values.every((value) => Number.isFinite(value));
}

/** Arithmetic mean; null for an empty sample or one with a non-finite value. */
export function mean(values: readonly number[]): number | null {
  if (values.length === 0 || !allFinite(values)) return null;
  let sum = 0;
  for (const value of values) sum += value;
  return sum / values.length;
}

/**
 * Sample variance with Bessel's correction (divides by n - 1); null when n < 2 or a value is
 * non-finite, because a single seed says nothing about seed-to-seed spread.
 */
export function sampleVariance(values: readonly number[]): number | null {
  const average = mean(values);
  if (average === null || values.length < 2) return null;
  // Two-pass formula: subtracting the mean first avoids the cancellation of sum(x^2) - n*mean^2.
  let sumSquares = 0;
  for (const value of values) sumSquares += (value - average) ** 2;
  return sumSquares / (values.length - 1);
}

/** Sample standard deviation (n - 1 in the denominator); null when n < 2. */
export function sampleStd(values: readonly number[]): number | null {
  const variance = sampleVariance(values);
  return variance === null ? null : Math.sqrt(variance);
}

/** Two-sided p-value of a Student t statistic with `degreesOfFreedom` (may be non-integer). */
export function twoSidedPValue(t: number, degreesOfFreedom: number): number {
  // 2 * F(-|t|) rather than 2 * (1 - F(|t|)): the lower tail keeps its precision for large |t|.
  const p = 2 * studentTCdf(-Math.abs(t), degreesOfFreedom);
  return Math.min(1, Math.max(0, p));
}

export interface WelchResult {
  /** mean(a) - mean(b); null when either sample is empty. */
  difference: number | null;
  /** t statistic; null when it is undefined (see reason). */
  t: number | null;
  /** Welch–Satterthwaite degrees of freedom; null when undefined. */
  df: number | null;
  /** Two-sided p-value; null when undefined. */
  p: number | null;
  /** Why t/df/p are null; null when they were computed. */
  reason: string | null;
}

/**
 * Welch's t-test of mean(a) - mean(b) without assuming equal variances: the right test for a
 * handful of seeds per method, where one method can be much noisier than another.
 */
export function welchTTest(a: readonly number[], b: readonly number[]): WelchResult {
  const meanA = mean(a);
  const meanB = mean(b);
  const difference = meanA !== null && meanB !== null ? meanA - meanB : null;
  const undefinedResult = (reason: string): WelchResult => ({ difference, t: null, df: null, p: null, reason });
  if (!allFinite(a) || !allFinite(b)) return undefinedResult('non-finite value');
  if (a.length < 2 || b.length < 2) {
    return undefinedResult(`n < 2 (${a.length} vs ${b.length} seeds)`);
  }
  const varianceA = sampleVariance(a);
  const varianceB = sampleVariance(b);
  if (varianceA === null || varianceB === null || meanA === null || meanB === null || difference === null) {
    return undefinedResult('variance undefined');
  }
  const shareA = varianceA / a.length;
  const shareB = varianceB / b.length;
  const squaredStandardError = shareA + shareB;
  if (squaredStandardError === 0) {
    // Identical values within both samples: t is 0/0 or x/0, and no p-value is meaningful.
    return undefinedResult('zero variance on both sides');
  }
  const t = difference / Math.sqrt(squaredStandardError);
  // Welch–Satterthwaite; a side with zero variance contributes 0 to the denominator, so df then
  // equals the other side's n - 1, which is the correct limit.
  const df = squaredStandardError ** 2 / (shareA ** 2 / (a.length - 1) + shareB ** 2 / (b.length - 1));
  return { difference, t, df, p: twoSidedPValue(t, df), reason: null };
}
