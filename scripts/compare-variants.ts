// Puts several comparison directories side by side when their runs differ by a setting that
// `compare` cannot vary within one directory (e.g. masksub with and without --sub-bn-update):
// for each labelled group of one directory, the final top-1 over seeds, Welch's t-test against the
// reference group (the first one given), and the paper's Eq. 1 / Eq. 2 probe losses and the clean
// training loss at the last epoch, as a Markdown table.
// Usage: node --import tsx scripts/compare-variants.ts LABEL=DIR:METHOD [LABEL=DIR:METHOD ...]
//   e.g. "baseline=runs/default:baseline" "MaskSub=runs/default:masksub" "official BN=runs/bn:masksub"
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { collectComparison } from '../src/report/collect.js';
import { mean, sampleStd, welchTTest } from '../src/report/stats.js';

interface Variant { label: string; finals: number[]; lastRows: Record<string, number>[] }

function variant(spec: string): Variant {
  const match = /^([^=]+)=(.+):([a-z]+)$/.exec(spec);
  if (!match) throw new Error(`'${spec}' is not LABEL=DIR:METHOD`);
  const [, label, directory, method] = match as unknown as [string, string, string, string];
  const comparison = collectComparison(directory);
  const group = comparison.groups.find((candidate) => candidate.method === method);
  if (!group) throw new Error(`${directory}: no ${method} runs (has ${comparison.groups.map((candidate) => candidate.method).join(', ')})`);
  const finished = comparison.runs.filter((run) => run.method === method && run.finished);
  const lastRows = finished.map((run) => {
    const lines = readFileSync(join(directory, 'runs', run.name, 'metrics.jsonl'), 'utf8').trim().split('\n');
    return JSON.parse(lines[lines.length - 1]!) as Record<string, number>;
  });
  return { label, finals: group.final_test_acc1.per_seed.map((entry) => entry.value), lastRows };
}

const specs = process.argv.slice(2);
if (specs.length < 1) throw new Error('usage: compare-variants.ts LABEL=DIR:METHOD [...] (the first is the reference)');
const variants = specs.map(variant);
const reference = variants[0]!;
const format = (value: number | null, digits = 2): string => (value === null || !Number.isFinite(value) ? '–' : value.toFixed(digits));
const average = (rows: Record<string, number>[], key: string): number | null => mean(rows.map((row) => row[key]!).filter(Number.isFinite));
const lines = [
  `| variant | seeds | final top-1 (%) | Δ vs ${reference.label} | Welch p | clean train loss L1 | Eq. 1 probe (clean) | Eq. 2 probe (masked) |`,
  '|---|---:|---:|---:|---:|---:|---:|---:|',
];
for (const item of variants) {
  const difference = (mean(item.finals) ?? Number.NaN) - (mean(reference.finals) ?? Number.NaN);
  const test = item === reference ? null : welchTTest(item.finals, reference.finals);
  lines.push(`| ${item.label} | ${item.finals.length} | ${format(mean(item.finals))} ± ${format(sampleStd(item.finals))} | ${item === reference ? '–' : (difference >= 0 ? '+' : '') + format(difference)} | ${test?.p === null || test === null ? '–' : format(test.p, 3)} | ${format(average(item.lastRows, 'train_loss_main'), 3)} | ${format(average(item.lastRows, 'probe_loss_standard'), 3)} | ${format(average(item.lastRows, 'probe_loss_masked'), 3)} |`);
}
process.stdout.write(lines.join('\n') + '\n');
