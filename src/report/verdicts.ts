// The report's answer to "does this run agree with the paper?", one per chart: each chart states
// the paper's claim (charts.ts); here the same claim is tested on the comparison's own numbers and
// written as a sentence with the numbers, so that a reader does not have to judge the plot by eye.
//
// The rule is the same for every claim that compares methods: a difference counts only when its
// two-sided Welch p over seeds is below 0.05. A difference in the paper's direction that is not
// significant is "undecided", never "agrees"; "disagrees" needs a significant difference against
// the paper. Claims about the shape of a curve (Fig. 3) are descriptive and say so.

import type { ChartId } from './charts.js';
import type { Comparison, EpochRecord, GroupResult, RunRecord } from './collect.js';
import { mean, welchTTest } from './stats.js';

/** How a comparison's numbers relate to the paper's claim for one chart. */
export type Agreement = 'agrees' | 'disagrees' | 'undecided';

export interface Verdict {
  chart: ChartId;
  /** dataset/model the verdict is about (a comparison may hold several). */
  combination: string;
  agreement: Agreement;
  /** One or two sentences with the numbers behind the agreement. */
  text: string;
}

/** Significance level of every method-versus-method test in the verdicts. */
export const SIGNIFICANCE = 0.05;

/** The paper's default mask ratio: the MaskSub group a verdict prefers when several ratios ran. */
const PAPER_RATIO = 0.5;

type Runs = Pick<Comparison, 'runs'>;

type EpochMetric = 'probe_loss_standard' | 'probe_loss_masked' | 'grad_norm_main' | 'grad_norm_sub';

interface Test {
  difference: number;
  p: number | null;
}

function points(value: number): string {
  return `${value >= 0 ? '+' : '−'}${Math.abs(value).toFixed(2)}`;
}

function pText(p: number | null): string {
  // Welch's p needs two seeds per side; the table says why in its own cell.
  if (p === null) return 'no p-value';
  return p < 0.001 ? 'p < 0.001' : `p = ${p.toFixed(3)}`;
}

/** Direction of a test against the paper's expectation (expected > 0 when `higher`). */
function judge(test: Test, higher: boolean): Agreement {
  const inDirection = higher ? test.difference > 0 : test.difference < 0;
  if (test.p === null || test.p >= SIGNIFICANCE) return 'undecided';
  return inDirection ? 'agrees' : 'disagrees';
}

/** All tests agree -> agrees; any significant contradiction -> disagrees; else undecided. */
function combine(agreements: readonly Agreement[]): Agreement {
  if (agreements.includes('disagrees')) return 'disagrees';
  if (agreements.length > 0 && agreements.every((agreement) => agreement === 'agrees')) return 'agrees';
  return 'undecided';
}

function finalValues(group: GroupResult): number[] {
  return group.final_test_acc1.per_seed.map((entry) => entry.value);
}

function testGroups(a: GroupResult, b: GroupResult): Test | null {
  const result = welchTTest(finalValues(a), finalValues(b));
  return result.difference === null ? null : { difference: result.difference, p: result.p };
}

function finishedRuns(comparison: Runs, group: GroupResult): RunRecord[] {
  return comparison.runs.filter((run) => run.finished && group.runs.includes(run.name));
}

/** Per-seed value of a metric in the last epoch each finished run logged it. */
function lastEpochValues(comparison: Runs, group: GroupResult, field: EpochMetric): number[] {
  const values: number[] = [];
  for (const run of finishedRuns(comparison, group)) {
    const last = [...run.epochs].reverse().find((record: EpochRecord) => record[field] !== null);
    const value = last?.[field];
    if (typeof value === 'number') values.push(value);
  }
  return values;
}

/** Mean over finished seeds of a metric, per epoch (epochs where no seed logged it are left out). */
function epochMeans(comparison: Runs, group: GroupResult, field: EpochMetric): Map<number, number> {
  const byEpoch = new Map<number, number[]>();
  for (const run of finishedRuns(comparison, group)) {
    for (const record of run.epochs) {
      const value = record[field];
      if (value !== null) byEpoch.set(record.epoch, [...(byEpoch.get(record.epoch) ?? []), value]);
    }
  }
  return new Map([...byEpoch].sort((left, right) => left[0] - right[0]).map(([epoch, values]) => [epoch, mean(values) ?? Number.NaN]));
}

function meanText(group: GroupResult): string {
  const value = group.final_test_acc1.mean;
  return value === null ? '–' : `${value.toFixed(2)} %`;
}

/** The group of `method` to judge: the paper's ratio when it ran, else the smallest ratio. */
function pick(groups: readonly GroupResult[], method: string, ratio?: number): GroupResult | undefined {
  const candidates = groups.filter((group) => group.method === method && group.n > 0).sort((left, right) => left.ratio - right.ratio);
  if (ratio !== undefined) return candidates.find((group) => group.ratio === ratio);
  return candidates.find((group) => group.ratio === PAPER_RATIO) ?? candidates[0];
}

function accuracyVerdict(groups: readonly GroupResult[], baseline: GroupResult): Omit<Verdict, 'combination'> | null {
  const masksub = pick(groups, 'masksub');
  if (masksub === undefined) return null;
  const parts: string[] = [];
  const agreements: Agreement[] = [];
  const versusBaseline = testGroups(masksub, baseline);
  if (versusBaseline === null) return null;
  parts.push(`MaskSub (r = ${masksub.ratio}) ends at ${meanText(masksub)}, ${points(versusBaseline.difference)} points against the baseline (${pText(versusBaseline.p)})`);
  agreements.push(judge(versusBaseline, true));
  const masking = pick(groups, 'masking', masksub.ratio);
  const versusMasking = masking === undefined ? null : testGroups(masksub, masking);
  if (versusMasking !== null) {
    parts.push(`${points(versusMasking.difference)} against plain masking at the same ratio (${pText(versusMasking.p)})`);
    agreements.push(judge(versusMasking, true));
  }
  return { chart: 'accuracy-curves', agreement: combine(agreements), text: `${parts.join(' and ')}.` };
}

function lossVerdict(comparison: Runs, groups: readonly GroupResult[], baseline: GroupResult): Omit<Verdict, 'combination'> | null {
  const masksub = pick(groups, 'masksub');
  if (masksub === undefined) return null;
  const parts: string[] = [];
  const agreements: Agreement[] = [];
  for (const [field, name] of [['probe_loss_standard', 'Eq. 1'], ['probe_loss_masked', 'Eq. 2']] as const) {
    const ours = lastEpochValues(comparison, masksub, field);
    const theirs = lastEpochValues(comparison, baseline, field);
    const result = welchTTest(ours, theirs);
    const oursMean = mean(ours);
    const theirsMean = mean(theirs);
    if (result.difference === null || oursMean === null || theirsMean === null) continue;
    parts.push(`${name} ${oursMean.toFixed(3)} vs the baseline's ${theirsMean.toFixed(3)} (${pText(result.p)})`);
    agreements.push(judge({ difference: result.difference, p: result.p }, false));
  }
  if (parts.length === 0) return null;
  return { chart: 'train-losses', agreement: combine(agreements), text: `In the last epoch, MaskSub (r = ${masksub.ratio}) has ${parts.join('; ')}.` };
}

function gradientVerdict(comparison: Runs, groups: readonly GroupResult[]): Omit<Verdict, 'combination'> | null {
  const masksub = pick(groups, 'masksub');
  if (masksub === undefined) return null;
  const sub = epochMeans(comparison, masksub, 'grad_norm_sub');
  const main = epochMeans(comparison, masksub, 'grad_norm_main');
  const ratios = [...sub].flatMap(([epoch, value]) => {
    const mainValue = main.get(epoch);
    return mainValue === undefined || !(mainValue > 0) || !Number.isFinite(value) ? [] : [{ epoch, ratio: value / mainValue }];
  });
  const first = ratios[0];
  const last = ratios[ratios.length - 1];
  if (first === undefined || last === undefined || ratios.length < 2) return null;
  const peak = ratios.reduce((best, entry) => (entry.ratio > best.ratio ? entry : best), first);
  const startsSmall = first.ratio < 1;
  const grows = peak.ratio > first.ratio && last.ratio > first.ratio;
  const text =
    `MaskSub's sub-model gradient norm is ${first.ratio.toFixed(2)}x the main term's in epoch ${first.epoch}, ` +
    `${peak.ratio.toFixed(2)}x at its peak (epoch ${peak.epoch}) and ${last.ratio.toFixed(2)}x in the last epoch ` +
    `(${startsSmall ? 'starts smaller' : 'does not start smaller'} than the main term, ${grows ? 'and grows relative to it' : 'and does not grow relative to it'}; ` +
    'a description of the mean curves, no test).';
  return { chart: 'grad-norms', agreement: startsSmall && grows ? 'agrees' : 'disagrees', text };
}

function ratioVerdict(groups: readonly GroupResult[], baseline: GroupResult): Omit<Verdict, 'combination'> | null {
  const masksubRatios = groups.filter((group) => group.method === 'masksub' && group.n > 0).sort((left, right) => left.ratio - right.ratio);
  if (masksubRatios.length < 2) return null;
  const agreements: Agreement[] = [];
  const parts: string[] = [];
  for (const group of masksubRatios) {
    const test = testGroups(group, baseline);
    if (test === null) continue;
    parts.push(`r = ${group.ratio}: ${points(test.difference)} (${pText(test.p)})`);
    agreements.push(judge(test, true));
  }
  let text = `MaskSub against the baseline, ${parts.join(', ')}.`;
  const maskingRatios = groups.filter((group) => group.method === 'masking' && group.n > 0 && group.final_test_acc1.mean !== null).sort((left, right) => left.ratio - right.ratio);
  if (maskingRatios.length >= 2) {
    const means = maskingRatios.map((group) => group.final_test_acc1.mean ?? Number.NaN);
    const falling = means.every((value, index) => index === 0 || value < (means[index - 1] ?? Number.NaN));
    text += ` Plain masking: ${maskingRatios.map((group) => `${meanText(group)} at r = ${group.ratio}`).join(', ')} (${falling ? 'falls as r grows, as in the paper' : 'does not fall steadily as r grows'}).`;
    if (!falling) agreements.push('undecided');
  }
  return { chart: 'accuracy-vs-ratio', agreement: combine(agreements), text };
}

function methodsVerdict(groups: readonly GroupResult[], baseline: GroupResult): Omit<Verdict, 'combination'> | null {
  const present = ['masksub', 'pathsub', 'dropsub'].map((method) => pick(groups, method)).filter((group): group is GroupResult => group !== undefined);
  const masksub = present.find((group) => group.method === 'masksub');
  if (masksub === undefined || present.length < 2) return null;
  const agreements: Agreement[] = [];
  const parts: string[] = [];
  for (const group of present) {
    const test = testGroups(group, baseline);
    if (test === null) continue;
    parts.push(`${group.method} ${points(test.difference)} (${pText(test.p)})`);
    agreements.push(judge(test, true));
  }
  for (const other of present) {
    if (other === masksub) continue;
    const test = testGroups(masksub, other);
    if (test === null) continue;
    parts.push(`masksub − ${other.method} ${points(test.difference)} (${pText(test.p)})`);
    agreements.push(judge(test, true));
  }
  return { chart: 'final-accuracy', agreement: combine(agreements), text: `Against the baseline: ${parts.join(', ')}.` };
}

/** Verdicts for every chart whose claim this comparison has the groups to test. */
export function computeVerdicts(comparison: Pick<Comparison, 'groups' | 'runs'>): Verdict[] {
  const verdicts: Verdict[] = [];
  const combinations = [...new Set(comparison.groups.map((group) => `${group.dataset}/${group.model}`))];
  for (const combination of combinations) {
    const groups = comparison.groups.filter((group) => `${group.dataset}/${group.model}` === combination);
    const baseline = groups.find((group) => group.is_baseline && group.ratio === 0 && group.n > 0) ?? groups.find((group) => group.is_baseline && group.n > 0);
    const found = [
      baseline === undefined ? null : accuracyVerdict(groups, baseline),
      baseline === undefined ? null : lossVerdict(comparison, groups, baseline),
      gradientVerdict(comparison, groups),
      baseline === undefined ? null : ratioVerdict(groups, baseline),
      baseline === undefined ? null : methodsVerdict(groups, baseline),
    ];
    for (const verdict of found) if (verdict !== null) verdicts.push({ ...verdict, combination });
  }
  return verdicts;
}

/** "agrees with the paper" / ..., for captions. */
export function agreementPhrase(agreement: Agreement): string {
  switch (agreement) {
    case 'agrees':
      return 'agrees with the paper';
    case 'disagrees':
      return 'disagrees with the paper';
    case 'undecided':
      return `undecided at p < ${SIGNIFICANCE}`;
  }
}
