// The report's verdicts (src/report/verdicts.ts): each chart's paper claim tested on hand-made
// groups whose Welch statistics were computed independently with scipy.stats.ttest_ind
// (equal_var=False); the expected p-values below are scipy's, rounded as the text prints them.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import type { EpochRecord, GroupResult, RunRecord } from '../src/report/collect.js';
import { computeVerdicts, type Verdict } from '../src/report/verdicts.js';

interface EpochValues {
  eq1?: number;
  eq2?: number;
  main?: number;
  sub?: number | null;
}

function group(method: string, ratio: number, finals: number[], epochs: EpochValues[] = []): { group: GroupResult; runs: RunRecord[] } {
  const names = finals.map((_, seed) => `${method}-r${ratio}-s${seed}`);
  const runs = finals.map((final, seed): RunRecord => {
    const records: EpochRecord[] = epochs.map((values, index) => ({
      epoch: index + 1,
      test_acc1: final,
      test_acc5: null,
      test_loss: null,
      train_loss: null,
      train_loss_main: null,
      train_loss_sub: null,
      // Per-seed spread in the probe losses, so that their Welch test has a variance.
      probe_loss_standard: values.eq1 === undefined ? null : values.eq1 + 0.01 * seed,
      probe_loss_masked: values.eq2 === undefined ? null : values.eq2 + 0.01 * seed,
      grad_norm_main: values.main ?? null,
      grad_norm_sub: values.sub ?? null,
      step_time_s: null,
      wall_s: null,
    }));
    return { name: names[seed] ?? '', finished: true, seed, method, ratio, epochs: records } as unknown as RunRecord;
  });
  const perSeed = finals.map((value, seed) => ({ seed, value }));
  const result = {
    key: `fashion-mnist/vit/${method}/r${ratio}`,
    label: method,
    dataset: 'fashion-mnist',
    model: 'vit',
    method,
    ratio,
    is_baseline: method === 'baseline',
    runs: names,
    seeds: finals.map((_, seed) => seed),
    unfinished_seeds: [],
    n: finals.length,
    final_test_acc1: { per_seed: perSeed, mean: finals.reduce((a, b) => a + b, 0) / finals.length, std: null },
  } as unknown as GroupResult;
  return { group: result, runs };
}

function verdictsOf(...parts: { group: GroupResult; runs: RunRecord[] }[]): Map<string, Verdict> {
  const verdicts = computeVerdicts({ groups: parts.map((part) => part.group), runs: parts.flatMap((part) => part.runs) });
  return new Map(verdicts.map((verdict) => [verdict.chart, verdict]));
}

describe('report verdicts against the paper', () => {
  test('MaskSub significantly above baseline and masking: agrees, with scipy\'s p-values in the text', () => {
    const verdicts = verdictsOf(group('baseline', 0, [70, 71, 72]), group('masking', 0.5, [66, 67, 65]), group('masksub', 0.5, [74, 75, 76]));
    const accuracy = verdicts.get('accuracy-curves');
    assert.ok(accuracy !== undefined);
    assert.equal(accuracy.agreement, 'agrees');
    // scipy: masksub vs baseline t = 4.899, df = 4, p = 0.00805; vs masking +9 (t = 11.02, df = 4, p < 0.001).
    assert.match(accuracy.text, /75\.00 %, \+4\.00 points against the baseline \(p = 0\.008\)/);
    assert.match(accuracy.text, /\+9\.00 against plain masking at the same ratio \(p < 0\.001\)/);
  });

  test('a higher mean that is not significant is undecided; a significantly lower one disagrees', () => {
    // scipy: [72, 74, 70] vs [70, 71, 72]: t = 0.775, df = 2.94, p = 0.496.
    const undecided = verdictsOf(group('baseline', 0, [70, 71, 72]), group('masksub', 0.5, [72, 74, 70])).get('accuracy-curves');
    assert.equal(undecided?.agreement, 'undecided');
    assert.match(undecided?.text ?? '', /\+1\.00 points against the baseline \(p = 0\.496\)/);
    // scipy: [66, 67, 65] vs [70, 71, 72]: t = -6.12, df = 4, p = 0.0036.
    const worse = verdictsOf(group('baseline', 0, [70, 71, 72]), group('masksub', 0.5, [66, 67, 65])).get('accuracy-curves');
    assert.equal(worse?.agreement, 'disagrees');
    assert.match(worse?.text ?? '', /−5\.00 points against the baseline \(p = 0\.004\)/);
  });

  test('Fig. 2: lower Eq. 1 and Eq. 2 agree; a significantly higher Eq. 1 disagrees', () => {
    const baseline = group('baseline', 0, [70, 71, 72], [{ eq1: 0.9, eq2: 1.0 }, { eq1: 0.5, eq2: 0.8 }]);
    const lower = verdictsOf(baseline, group('masksub', 0.5, [74, 75, 76], [{ eq1: 0.9, eq2: 1.0 }, { eq1: 0.4, eq2: 0.6 }])).get('train-losses');
    assert.equal(lower?.agreement, 'agrees');
    // Last epoch per seed: masksub Eq. 1 = 0.40, 0.41, 0.42 vs 0.50, 0.51, 0.52: scipy p = 0.000255.
    assert.match(lower?.text ?? '', /Eq\. 1 0\.410 vs the baseline's 0\.510 \(p < 0\.001\); Eq\. 2 0\.610 vs the baseline's 0\.810/);
    const higher = verdictsOf(baseline, group('masksub', 0.5, [74, 75, 76], [{ eq1: 0.9, eq2: 1.0 }, { eq1: 0.6, eq2: 0.6 }])).get('train-losses');
    assert.equal(higher?.agreement, 'disagrees');
  });

  test('Fig. 3: a sub-gradient that starts small and grows agrees; a flat one above the main term disagrees', () => {
    const baseline = group('baseline', 0, [70, 71, 72]);
    const growing = verdictsOf(baseline, group('masksub', 0.5, [74, 75, 76], [{ main: 1, sub: 0.1 }, { main: 0.5, sub: 0.4 }, { main: 0.5, sub: 0.3 }])).get('grad-norms');
    assert.equal(growing?.agreement, 'agrees');
    // Ratios 0.1, 0.8, 0.6: peak in epoch 2.
    assert.match(growing?.text ?? '', /0\.10x the main term's in epoch 1, 0\.80x at its peak \(epoch 2\) and 0\.60x in the last epoch/);
    const flat = verdictsOf(baseline, group('masksub', 0.5, [74, 75, 76], [{ main: 1, sub: 1.2 }, { main: 1, sub: 1.2 }])).get('grad-norms');
    assert.equal(flat?.agreement, 'disagrees');
  });

  test('ratio sweep and DropSub / PathSub: verdicts only where the groups exist', () => {
    const only = verdictsOf(group('baseline', 0, [70, 71, 72]), group('masksub', 0.5, [74, 75, 76]));
    assert.equal(only.has('accuracy-vs-ratio'), false);
    assert.equal(only.has('final-accuracy'), false);
    const full = verdictsOf(
      group('baseline', 0, [70, 71, 72]),
      group('masksub', 0.25, [73, 74, 75]),
      group('masksub', 0.5, [74, 75, 76]),
      group('masking', 0.25, [69, 70, 71]),
      group('masking', 0.5, [66, 67, 65]),
      group('dropsub', 0.2, [72, 73, 74]),
    );
    assert.equal(full.get('accuracy-vs-ratio')?.agreement, 'agrees');
    assert.match(full.get('accuracy-vs-ratio')?.text ?? '', /falls as r grows, as in the paper/);
    // MaskSub - DropSub = +2 with identical spreads: t = 2.449, df = 4, p = 0.0705 (scipy): undecided.
    const methods = full.get('final-accuracy');
    assert.equal(methods?.agreement, 'undecided');
    assert.match(methods?.text ?? '', /masksub − dropsub \+2\.00 \(p = 0\.070\)/);
  });
});
