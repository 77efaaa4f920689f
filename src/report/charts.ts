// The report's charts: Vega-Lite specs built from a Comparison, compiled with vega-lite and
// rendered to static SVG strings in Node (vega's headless View), so the report needs no script
// or network access to show them. One fixed color per method keeps every chart readable together.

import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

import type { Method } from '../masksub/methods.js';
import { accuracyName, type Comparison, type GroupResult, type SettingSummary } from './collect.js';
import { mean } from './stats.js';

export type ChartId = 'accuracy-curves' | 'train-losses' | 'grad-norms' | 'accuracy-vs-ratio' | 'final-accuracy';

/** Every chart the report can contain, in report order; a chart is left out when its data is missing. */
export const CHART_IDS: readonly ChartId[] = ['accuracy-curves', 'train-losses', 'grad-norms', 'accuracy-vs-ratio', 'final-accuracy'];

export interface Chart {
  id: ChartId;
  title: string;
  /** What the chart shows. */
  shows: string;
  /** What the paper found for the same plot, so the reader knows what to look for. */
  paper: string;
  /** shows + paper, as one caption. */
  caption: string;
  spec: TopLevelSpec;
  /** Standalone SVG document (with xmlns), as written to charts/<id>.svg. */
  svg: string;
}

export interface ChartSet {
  charts: Chart[];
  /** Why a chart was left out, e.g. no method with a sub-model. */
  omitted: { id: ChartId; reason: string }[];
}

const FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif';

/**
 * Base color per method, used by every chart (colorblind-friendly hues, baseline neutral gray).
 * Keyed by the method table's names, so a new method does not compile until it has a color.
 */
const METHOD_COLORS: Readonly<Record<string, string>> = {
  baseline: '#555555',
  masking: '#e1812c',
  dropout: '#8c613c',
  droppath: '#9372b2',
  masksub: '#2f6eba',
  dropsub: '#3a923a',
  pathsub: '#c03d3e',
} satisfies Record<Method, string>;
const SPARE_COLORS = ['#1aa3b5', '#b5b02a', '#d17ab8', '#7f7f7f'];

function hexToRgb(hex: string): [number, number, number] {
  const value = Number.parseInt(hex.slice(1), 16);
  return [(value >> 16) & 255, (value >> 8) & 255, value & 255];
}

/** Mixes toward white (amount < 0) or black (amount > 0): shades of one hue for one method's ratios. */
function shade(hex: string, amount: number): string {
  const target = amount < 0 ? 255 : 0;
  const weight = Math.min(1, Math.abs(amount));
  const channels = hexToRgb(hex).map((channel) => Math.round(channel + (target - channel) * weight));
  return `#${channels.map((channel) => channel.toString(16).padStart(2, '0')).join('')}`;
}

export function methodColor(method: string, comparison: Comparison): string {
  const known = METHOD_COLORS[method];
  if (known !== undefined) return known;
  const unknownMethods = [...new Set(comparison.groups.map((group) => group.method))].filter((name) => METHOD_COLORS[name] === undefined).sort();
  return SPARE_COLORS[unknownMethods.indexOf(method) % SPARE_COLORS.length] ?? '#7f7f7f';
}

/**
 * One color per group label: the method's hue, lighter for smaller and darker for larger ratios
 * (and for later dataset/model combinations when a comparison spans several).
 */
export function seriesColors(comparison: Comparison): Map<string, string> {
  const colors = new Map<string, string>();
  const byMethod = new Map<string, GroupResult[]>();
  for (const group of comparison.groups) byMethod.set(group.method, [...(byMethod.get(group.method) ?? []), group]);
  for (const [method, groups] of byMethod) {
    const base = methodColor(method, comparison);
    // comparison.groups is already ordered by dataset, model and ratio, so position = shade order.
    groups.forEach((group, index) => {
      const position = groups.length < 2 ? 0.5 : index / (groups.length - 1);
      colors.set(group.label, groups.length < 2 ? base : shade(base, -0.45 + 0.75 * position));
    });
  }
  return colors;
}

function formatCount(value: number): string {
  return value.toLocaleString('en-US');
}

function formatList(values: readonly (string | number)[]): string {
  return values.join(', ');
}

/** The text data sets (data/text/text-dataset.ts's TEXT_DATASET_NAMES; the report imports no data code): their runs count texts, not images. */
const TEXT_DATASETS = ['debian-packages', 'text'];

/** Two lines saying what was run, for chart subtitles and the report header. */
export function describeSetting(setting: SettingSummary): { headline: string; machine: string } {
  const parts: string[] = [];
  parts.push(setting.datasets.length > 0 ? formatList(setting.datasets) : 'no dataset');
  parts.push(setting.models.length > 0 ? formatList(setting.models) : 'no model');
  const [firstEpochs] = setting.epochs;
  if (setting.epochs.length === 1 && firstEpochs !== undefined) parts.push(`${firstEpochs} epoch${firstEpochs === 1 ? '' : 's'}`);
  else if (setting.epochs.length > 1) parts.push(`${setting.epochs[0]}–${setting.epochs.at(-1)} epochs (varies by run)`);
  if (setting.seeds.length > 0) parts.push(`${setting.seeds.length} seed${setting.seeds.length === 1 ? '' : 's'} (${formatList(setting.seeds)})`);
  const examples = setting.datasets.length > 0 && setting.datasets.every((name) => TEXT_DATASETS.includes(name)) ? 'texts' : 'images';
  const limits = setting.limit_train.map((limit) => (limit === null ? 'full training set' : `${formatCount(limit)} training ${examples}`));
  if (limits.length > 0) parts.push(limits.join(' / '));
  const presets = setting.presets.filter((preset): preset is string => preset !== null);
  if (presets.length > 0) parts.push(`preset ${presets.join(' / ')}${setting.presets.includes(null) ? ' / none' : ''}`);
  const machine = setting.machines.length === 0 ? 'machine: unknown' : `${setting.machines.length > 1 ? 'machines' : 'machine'}: ${setting.machines.join('; ')}`;
  return { headline: parts.join(' · '), machine };
}

function chartTitle(text: string, comparison: Comparison, extra?: string): TopLevelSpec['title'] {
  const { headline, machine } = describeSetting(comparison.setting);
  return { text, subtitle: extra === undefined ? [headline, machine] : [headline, machine, extra] };
}

const CONFIG: TopLevelSpec['config'] = {
  font: FONT,
  background: 'white',
  padding: 12,
  view: { stroke: null },
  title: { anchor: 'start', fontSize: 15, fontWeight: 600, color: '#1d1d1f', subtitleFontSize: 11.5, subtitleColor: '#5f6368', subtitlePadding: 5, offset: 14 },
  axis: {
    labelColor: '#3c4043',
    titleColor: '#3c4043',
    titleFontWeight: 'normal',
    titleFontSize: 12,
    labelFontSize: 11,
    gridColor: '#ececec',
    domainColor: '#9aa0a6',
    tickColor: '#9aa0a6',
  },
  legend: { titleFontWeight: 'normal', titleColor: '#3c4043', labelColor: '#3c4043', labelFontSize: 11, symbolStrokeWidth: 2.5, labelLimit: 320 },
  header: { labelFontSize: 12, labelColor: '#3c4043', labelFontWeight: 600 },
};

interface ColorScale {
  domain: string[];
  range: string[];
}

function colorScale(comparison: Comparison, labels: readonly string[]): ColorScale {
  const colors = seriesColors(comparison);
  const order = comparison.groups.map((group) => group.label).filter((label) => labels.includes(label));
  return { domain: order, range: order.map((label) => colors.get(label) ?? '#7f7f7f') };
}

type EpochField = 'test_acc1' | 'probe_loss_standard' | 'probe_loss_masked' | 'grad_norm_main' | 'grad_norm_sub';

interface EpochAggregate {
  series: string;
  epoch: number;
  mean: number;
  min: number;
  max: number;
  seeds: number;
}

/**
 * Mean, min and max of one metric over the runs of each group, per epoch. Unfinished runs
 * contribute the epochs they completed; null values (non-finite, or no sub-model) are skipped.
 */
export function epochAggregates(comparison: Comparison, field: EpochField): EpochAggregate[] {
  const rows: EpochAggregate[] = [];
  for (const group of comparison.groups) {
    const members = comparison.runs.filter((run) => group.runs.includes(run.name));
    const valuesByEpoch = new Map<number, number[]>();
    for (const run of members) {
      for (const record of run.epochs) {
        const value = record[field];
        if (value === null) continue;
        valuesByEpoch.set(record.epoch, [...(valuesByEpoch.get(record.epoch) ?? []), value]);
      }
    }
    for (const [epoch, values] of [...valuesByEpoch].sort((left, right) => left[0] - right[0])) {
      rows.push({ series: group.label, epoch, mean: mean(values) ?? Number.NaN, min: Math.min(...values), max: Math.max(...values), seeds: values.length });
    }
  }
  return rows;
}

const EPOCH_AXIS = { title: 'epoch', tickMinStep: 1, format: 'd' } as const;
/** Line-shaped legend symbols, since every series in these charts is a line. */
const LINE_LEGEND = { symbolType: 'stroke', symbolStrokeWidth: 2.5, symbolSize: 220 } as const;

function accuracyCurves(comparison: Comparison): TopLevelSpec | string {
  const rows = epochAggregates(comparison, 'test_acc1');
  if (rows.length === 0) return 'no epochs logged yet';
  const scale = colorScale(comparison, rows.map((row) => row.series));
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: chartTitle(`Test ${accuracyName(comparison)} accuracy per epoch`, comparison, 'line: mean over seeds · band: min–max over seeds'),
    width: 640,
    height: 320,
    config: CONFIG,
    data: { values: rows },
    encoding: {
      x: { field: 'epoch', type: 'quantitative', axis: EPOCH_AXIS, scale: { nice: false } },
    },
    layer: [
      {
        mark: { type: 'area', fillOpacity: 0.18 },
        encoding: {
          y: { field: 'min', type: 'quantitative', scale: { zero: false }, title: `test ${accuracyName(comparison)} (%)` },
          y2: { field: 'max' },
          color: { field: 'series', type: 'nominal', scale, sort: scale.domain },
        },
      },
      {
        mark: { type: 'line', strokeWidth: 2, point: { filled: true, size: 26 } },
        encoding: {
          y: { field: 'mean', type: 'quantitative' },
          color: { field: 'series', type: 'nominal', title: 'method', scale, sort: scale.domain, legend: LINE_LEGEND },
        },
      },
    ],
  };
}

const LOSS_PANELS = ['Eq. 1 — standard train loss (unmasked)', 'Eq. 2 — masked train loss'] as const;

function trainLosses(comparison: Comparison): TopLevelSpec | string {
  const standard = epochAggregates(comparison, 'probe_loss_standard').map((row) => ({ ...row, panel: LOSS_PANELS[0] }));
  const masked = epochAggregates(comparison, 'probe_loss_masked').map((row) => ({ ...row, panel: LOSS_PANELS[1] }));
  const rows = [...standard, ...masked];
  if (rows.length === 0) return 'no probe losses logged';
  const scale = colorScale(comparison, rows.map((row) => row.series));
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: chartTitle('Train losses on the probe set (paper Fig. 2)', comparison, 'cross-entropy on a fixed training probe set · mean over seeds'),
    config: CONFIG,
    data: { values: rows },
    facet: { column: { field: 'panel', type: 'nominal', title: null, sort: [...LOSS_PANELS] } },
    spec: {
      width: 300,
      height: 250,
      mark: { type: 'line', strokeWidth: 2, point: { filled: true, size: 22 } },
      encoding: {
        x: { field: 'epoch', type: 'quantitative', axis: EPOCH_AXIS, scale: { nice: false } },
        y: { field: 'mean', type: 'quantitative', scale: { zero: false }, title: 'loss' },
        color: { field: 'series', type: 'nominal', title: 'method', scale, sort: scale.domain, legend: LINE_LEGEND },
      },
    },
    resolve: { scale: { y: 'independent' } },
  };
}

function gradNorms(comparison: Comparison): TopLevelSpec | string {
  const withSub = new Set(epochAggregates(comparison, 'grad_norm_sub').map((row) => row.series));
  if (withSub.size === 0) return 'no method with a sub-model logged grad_norm_sub';
  const rows = [
    ...epochAggregates(comparison, 'grad_norm_main').filter((row) => withSub.has(row.series)).map((row) => ({ ...row, term: 'main: w1·L1' })),
    ...epochAggregates(comparison, 'grad_norm_sub').map((row) => ({ ...row, term: 'sub: w2·L2' })),
  ];
  const scale = colorScale(comparison, rows.map((row) => row.series));
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: chartTitle('Gradient norms of the main and sub-model losses (paper Fig. 3)', comparison, 'mean per-step ‖gradient‖ in each epoch · mean over seeds'),
    width: 640,
    height: 300,
    config: CONFIG,
    data: { values: rows },
    encoding: {
      x: { field: 'epoch', type: 'quantitative', axis: EPOCH_AXIS, scale: { nice: false } },
      y: { field: 'mean', type: 'quantitative', title: 'gradient norm' },
    },
    layer: [
      {
        // No point symbols on the line: with them vega-lite draws the dash legend as invisible filled strokes.
        mark: { type: 'line', strokeWidth: 2 },
        encoding: {
          color: { field: 'series', type: 'nominal', title: 'method', scale, sort: scale.domain, legend: LINE_LEGEND },
          strokeDash: {
            field: 'term',
            type: 'nominal',
            title: 'gradient of',
            // Without a color of its own the dash legend would draw invisible strokes.
            legend: { ...LINE_LEGEND, symbolStrokeColor: '#3c4043', symbolSize: 320 },
            scale: { domain: ['main: w1·L1', 'sub: w2·L2'], range: [[1, 0], [6, 4]] },
          },
        },
      },
      {
        // Points in a layer of their own (same legend, merged): a one-epoch line is a single point and draws nothing.
        mark: { type: 'circle', size: 22, opacity: 1 },
        encoding: { color: { field: 'series', type: 'nominal', title: 'method', scale, sort: scale.domain, legend: LINE_LEGEND } },
      },
    ],
  };
}

interface RatioPoint {
  /** Legend entry: the method, prefixed with dataset/model when a comparison has several. */
  method: string;
  /** The method name itself, for its color. */
  base_method: string;
  ratio: number;
  mean: number;
  low: number;
  high: number;
  seeds: number;
}

function accuracyVersusRatio(comparison: Comparison): TopLevelSpec | string {
  const points: RatioPoint[] = [];
  for (const group of comparison.groups) {
    const { mean: average, std } = group.final_test_acc1;
    if (group.is_baseline || average === null) continue;
    const method = comparison.setting.datasets.length * comparison.setting.models.length > 1 ? `${group.dataset}/${group.model} ${group.method}` : group.method;
    points.push({ method, base_method: group.method, ratio: group.ratio, mean: average, low: average - (std ?? 0), high: average + (std ?? 0), seeds: group.n });
  }
  const ratiosPerMethod = new Map<string, Set<number>>();
  for (const point of points) ratiosPerMethod.set(point.method, (ratiosPerMethod.get(point.method) ?? new Set()).add(point.ratio));
  if (![...ratiosPerMethod.values()].some((ratios) => ratios.size > 1)) return 'every method was run at a single ratio';

  const methods = [...ratiosPerMethod.keys()];
  const scale = {
    domain: methods,
    range: methods.map((method) => methodColor(points.find((point) => point.method === method)?.base_method ?? method, comparison)),
  };
  const baselineMeans = comparison.groups.filter((group) => group.is_baseline && group.final_test_acc1.mean !== null).map((group) => ({ mean: group.final_test_acc1.mean, label: group.label }));
  const xAxis = { field: 'ratio', type: 'quantitative', title: 'ratio r (share masked / drop probability)', scale: { zero: true, domainMax: 1 } } as const;
  const baselineLayers: NonNullable<Extract<TopLevelSpec, { layer: unknown }>['layer']> = baselineMeans.length === 0 ? [] : [
    {
      data: { values: baselineMeans },
      mark: { type: 'rule', strokeDash: [5, 4], color: METHOD_COLORS['baseline'], strokeWidth: 1.5 },
      encoding: { y: { field: 'mean', type: 'quantitative' } },
    },
    {
      data: { values: baselineMeans },
      mark: { type: 'text', align: 'right', baseline: 'bottom', dy: -3, color: METHOD_COLORS['baseline'], fontSize: 11 },
      encoding: { y: { field: 'mean', type: 'quantitative' }, x: { datum: 1 }, text: { field: 'label', type: 'nominal' } },
    },
  ];
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: chartTitle(`Final ${accuracyName(comparison)} accuracy against the ratio r`, comparison, 'point: mean over finished seeds · whisker: ± sample std · dashed: baseline mean'),
    width: 560,
    height: 300,
    config: CONFIG,
    layer: [
      {
        data: { values: points },
        mark: { type: 'rule', strokeWidth: 1.5 },
        encoding: {
          x: xAxis,
          y: { field: 'low', type: 'quantitative', scale: { zero: false }, title: `final test ${accuracyName(comparison)} (%)` },
          y2: { field: 'high' },
          color: { field: 'method', type: 'nominal', title: 'method', scale },
        },
      },
      {
        data: { values: points },
        mark: { type: 'line', strokeWidth: 2, point: { filled: true, size: 50 } },
        encoding: {
          x: xAxis,
          y: { field: 'mean', type: 'quantitative' },
          color: { field: 'method', type: 'nominal', title: 'method', scale },
        },
      },
      ...baselineLayers,
    ],
  };
}

function finalAccuracy(comparison: Comparison): TopLevelSpec | string {
  const groups = comparison.groups.filter((group) => group.final_test_acc1.mean !== null);
  if (groups.length === 0) return 'no finished runs yet';
  const bars = groups.map((group) => {
    const average = group.final_test_acc1.mean ?? 0;
    const std = group.final_test_acc1.std;
    return {
      series: group.label,
      mean: average,
      low: average - (std ?? 0),
      high: average + (std ?? 0),
      text: std === null ? `${average.toFixed(2)} (n=${group.n})` : `${average.toFixed(2)} ± ${std.toFixed(2)}`,
    };
  });
  const seeds = groups.flatMap((group) => group.final_test_acc1.per_seed.map((entry) => ({ series: group.label, value: entry.value, seed: entry.seed })));
  // Seed-to-seed differences are a fraction of a point, so a zero-based axis would hide them; the
  // axis starts just below the lowest value instead and the subtitle says so.
  const lowest = Math.min(...bars.map((bar) => bar.low), ...seeds.map((seed) => seed.value));
  const highest = Math.max(...bars.map((bar) => bar.high), ...seeds.map((seed) => seed.value));
  const span = Math.max(highest - lowest, 0.5);
  const axisStart = Math.max(0, Math.floor(lowest - span * 0.6));
  const axisEnd = Math.min(100, Math.ceil(highest + span * 0.35));
  const scale = colorScale(comparison, bars.map((bar) => bar.series));
  // Labels break at spaces ("masksub" / "r=0.5") so that several ratios of one method fit side by side.
  const xEncoding = {
    field: 'series',
    type: 'nominal',
    title: null,
    sort: scale.domain,
    scale: { type: 'band', paddingInner: 0.38, paddingOuter: 0.25 },
    axis: { labelAngle: 0, labelFontSize: 11.5, labelExpr: "split(replace(datum.label, '/', '/ '), ' ')", labelLineHeight: 14 },
  } as const;
  const yScale = { domain: [axisStart, axisEnd], zero: false, nice: false, clamp: true };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: chartTitle(`Final test ${accuracyName(comparison)} accuracy per method`, comparison, `bar: mean over finished seeds · whisker: ± sample std · dots: seeds · axis starts at ${axisStart}%`),
    width: Math.max(320, 100 * bars.length),
    height: 300,
    config: CONFIG,
    layer: [
      {
        data: { values: bars },
        mark: { type: 'bar', opacity: 0.88, cornerRadiusTopLeft: 2, cornerRadiusTopRight: 2 },
        encoding: {
          x: xEncoding,
          y: { field: 'mean', type: 'quantitative', scale: yScale, title: `final test ${accuracyName(comparison)} (%)` },
          y2: { datum: axisStart },
          color: { field: 'series', type: 'nominal', scale, legend: null },
        },
      },
      {
        data: { values: bars },
        mark: { type: 'rule', color: '#202124', strokeWidth: 1.5 },
        encoding: { x: xEncoding, y: { field: 'low', type: 'quantitative', scale: yScale }, y2: { field: 'high' } },
      },
      {
        data: { values: seeds },
        mark: { type: 'circle', color: '#202124', stroke: 'white', strokeWidth: 1, opacity: 0.9, size: 34 },
        encoding: { x: xEncoding, y: { field: 'value', type: 'quantitative', scale: yScale } },
      },
      {
        data: { values: bars },
        mark: { type: 'text', baseline: 'bottom', dy: -5, fontSize: 11, color: '#202124' },
        encoding: { x: xEncoding, y: { field: 'high', type: 'quantitative', scale: yScale }, text: { field: 'text', type: 'nominal' } },
      },
    ],
  };
}

interface ChartText {
  title: string;
  shows: string;
  paper: string;
  build: (comparison: Comparison) => TopLevelSpec | string;
}

const CHART_TEXT: Readonly<Record<ChartId, ChartText>> = {
  'accuracy-curves': {
    title: 'Test top-1 accuracy per epoch',
    shows:
      'Top-1 accuracy on the test set after every epoch; the line is the mean over seeds, the band spans the lowest and highest seed. ' +
      'Unfinished runs contribute the epochs they completed.',
    paper: 'MaskSub ends above both the baseline and plain masking (ViT-B, 100 epochs, r = 0.5: 79.4 vs 77.4 and 73.8).',
    build: accuracyCurves,
  },
  'train-losses': {
    title: 'Train losses (paper Fig. 2)',
    shows:
      'Eq. 1 (left) is the cross-entropy of the unmasked model on a fixed probe set of training examples; Eq. 2 (right) is the same with the input masked (image patches; for text, tokens replaced by [MASK]). ' +
      'Both are logged for every method, whatever loss it trains on.',
    paper: 'MaskSub lowers both losses: it fits the clean training data better than the baseline and becomes robust to masking at the same time.',
    build: trainLosses,
  },
  'grad-norms': {
    title: 'Gradient norms (paper Fig. 3)',
    shows:
      'Mean per-step norm of the gradient of the main term w1·L1 (solid) and of the sub-model term w2·L2 (dashed), for methods that train a sub-model. ' +
      'The norms include the loss weights.',
    paper:
      'The sub-loss gradient starts small, because the main model’s early predictions are soft targets, and grows as the main model improves ' +
      '(“automatic difficulty control”); the main gradient behaves as in standard training.',
    build: gradNorms,
  },
  'accuracy-vs-ratio': {
    title: 'Accuracy against the ratio',
    shows: 'Final top-1 (mean ± sample std over finished seeds) for each ratio r that was run; the dashed line is the baseline mean.',
    paper:
      'Plain masking loses accuracy as r grows (Table A.5, ViT-B: 76.3 / 73.8 / 67.3 at r = 0.25 / 0.5 / 0.75 vs 77.4), ' +
      'while MaskSub gains at every ratio (79.0 / 79.4 / 79.2).',
    build: accuracyVersusRatio,
  },
  'final-accuracy': {
    title: 'Final accuracy per method',
    shows:
      'Bar: mean final top-1 over finished seeds; whisker: ± one sample standard deviation; dots: individual seeds. ' +
      'The axis does not start at 0, so read differences against the whiskers.',
    paper: 'MaskSub > PathSub ≈ DropSub > baseline (Table 13), with MaskSub also the cheapest of the three.',
    build: finalAccuracy,
  },
};

/**
 * Advance widths of printable ASCII (space to tilde) in a Helvetica-like sans-serif, in 1/1000 em.
 * Without a canvas vega guesses 0.8 em per character, which is far too wide for proportional
 * fonts: legends then get truncated ("fashion-mnist/vit…") and take space from the plot.
 */
const SANS_WIDTHS = [
  278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, // space to /
  556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, // 0 to ?
  1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778, // @ to O
  667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556, // P to _
  333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556, // ` to o
  556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584, // p to ~
];

interface TextItem {
  fontSize?: number | string;
  fontWeight?: number | string;
}

/**
 * Estimated rendered width of `text`. Errs wide (browsers fall back to DejaVu Sans, which is
 * wider than Helvetica) so that labels never overlap in the page.
 */
export function estimateTextWidth(item: TextItem, text: string): number {
  const fontSize = item.fontSize === undefined ? 11 : Number(item.fontSize);
  const bold = item.fontWeight === 'bold' || Number(item.fontWeight) >= 600;
  let units = 0;
  for (const character of String(text)) {
    const code = character.codePointAt(0) ?? 0;
    units += code >= 32 && code <= 126 ? (SANS_WIDTHS[code - 32] ?? 600) : 620;
  }
  return (units / 1000) * fontSize * (bold ? 1.16 : 1.1);
}

interface TextMetrics {
  width: (item: TextItem, text: string) => number;
}

/** vega exports its (mutable) text measurement, but its typings do not declare it. */
function vegaTextMetrics(): TextMetrics | null {
  const candidate: unknown = (vega as unknown as { textMetrics?: unknown }).textMetrics;
  if (typeof candidate === 'object' && candidate !== null && typeof (candidate as TextMetrics).width === 'function') return candidate as TextMetrics;
  return null;
}

/** Renders a Vega-Lite spec to a standalone SVG document in Node (no canvas, no browser). */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const compiled = compile(spec).spec;
  const metrics = vegaTextMetrics();
  const previousWidth = metrics?.width;
  if (metrics !== null) metrics.width = estimateTextWidth;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
    // Put vega's own measurement back: other vega users in this process expect it.
    if (metrics !== null && previousWidth !== undefined) metrics.width = previousWidth;
  }
}

/**
 * Makes the ids inside one SVG unique (vega names clip paths clip1, clip2, ... in every chart),
 * so several SVGs inlined in one HTML page do not clip with each other's definitions.
 */
export function namespaceSvgIds(svg: string, prefix: string): string {
  const ids = new Set<string>();
  for (const match of svg.matchAll(/\sid="([^"]+)"/g)) if (match[1] !== undefined) ids.add(match[1]);
  let result = svg;
  for (const id of ids) {
    const escaped = id.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    result = result
      .replace(new RegExp(`(\\sid=")${escaped}"`, 'g'), `$1${prefix}-${id}"`)
      .replace(new RegExp(`url\\(#${escaped}\\)`, 'g'), `url(#${prefix}-${id})`)
      .replace(new RegExp(`(href=")#${escaped}"`, 'g'), `$1#${prefix}-${id}"`);
  }
  return result;
}

/** Builds and renders every chart that the comparison has data for. */
export async function buildCharts(comparison: Comparison): Promise<ChartSet> {
  const charts: Chart[] = [];
  const omitted: ChartSet['omitted'] = [];
  for (const id of CHART_IDS) {
    const { title, shows, paper, build } = CHART_TEXT[id];
    const spec = build(comparison);
    if (typeof spec === 'string') {
      omitted.push({ id, reason: spec });
      continue;
    }
    const caption = `${shows} Paper: ${paper}`;
    charts.push({ id, title, shows, paper, caption, spec, svg: namespaceSvgIds(await renderSvg(spec), `chart-${id}`) });
  }
  return { charts, omitted };
}
