// Writes the human-facing report of a comparison directory: DIR/report.md (table, notes, links
// to DIR/charts/*.svg) and DIR/report.html, a single self-contained page (inline CSS and SVG, no
// script, no network) that opens offline and can be mailed around as one file.

import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { buildCharts, CHART_IDS, describeSetting, seriesColors, type Chart, type ChartId, type ChartSet } from './charts.js';
import { accuracyName, collectComparison, RETRIEVAL_LABELS, RETRIEVAL_METRICS, type Comparison, type GroupResult, type RetrievalStats, writeResults } from './collect.js';
import { agreementPhrase, type Verdict } from './verdicts.js';

export interface ReportFiles {
  comparison: Comparison;
  results: string;
  markdown: string;
  html: string;
  /** charts/<id>.svg for every chart that had data. */
  charts: string[];
  /** Charts left out for lack of data, with the reason. */
  omitted: ChartSet['omitted'];
}

/** Accuracy cell: "86.12 ± 0.31", or just the mean when there is a single seed. */
function formatAccuracy(average: number | null, std: number | null): string {
  if (average === null) return '–';
  return std === null ? average.toFixed(2) : `${average.toFixed(2)} ± ${std.toFixed(2)}`;
}

export function formatPValue(p: number): string {
  if (p < 1e-4) return '< 0.0001';
  if (p < 0.01) return p.toPrecision(2);
  return p.toFixed(3);
}

function formatSigned(value: number): string {
  return `${value >= 0 ? '+' : '−'}${Math.abs(value).toFixed(2)}`;
}

function formatDifference(group: GroupResult): string {
  if (group.is_baseline) return 'baseline';
  const comparison = group.vs_baseline;
  if (comparison === null) return 'no baseline';
  if (comparison.difference === null) return '–';
  const pText = comparison.p === null ? `p n/a: ${comparison.reason ?? 'undefined'}` : `p = ${formatPValue(comparison.p)}`;
  return `${formatSigned(comparison.difference)} (${pText})`;
}

function formatCost(group: GroupResult): string {
  return group.cost_vs_baseline === null ? '–' : `×${group.cost_vs_baseline.toFixed(2)}`;
}

export function formatDuration(seconds: number | null): string {
  if (seconds === null) return '–';
  // Tiny runs take well under a second; "0 s" would read as "did not run".
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  if (seconds < 60) return `${seconds.toFixed(0)} s`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min`;
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, '0')} min`;
}

function formatSeedCount(group: GroupResult): string {
  const unfinished = group.unfinished_seeds.length;
  return unfinished === 0 ? String(group.n) : `${group.n} (+${unfinished} unfinished)`;
}

interface TableRow {
  group: GroupResult;
  /** dataset/model, only when the comparison spans several (else every row would repeat it). */
  combination: string | null;
  cells: string[];
}

const TABLE_HEADER = ['method', 'ratio', 'seeds', 'final top-1 (%)', 'best top-1 (%)', 'Δ final vs baseline', 'cost', 'wall time'];

/** The table's header, with what top-1 is here (zero-shot for CLIP runs). */
function tableHeader(comparison: Comparison): string[] {
  const name = accuracyName(comparison);
  return TABLE_HEADER.map((cell) => cell.replace('top-1', name));
}

/** A retrieval cell: mean ± std over seeds, and for a method its difference from the baseline with Welch's p. */
function formatRetrieval(group: GroupResult, stats: RetrievalStats): string {
  const cell = formatAccuracy(stats.final.mean, stats.final.std);
  const comparison = stats.vs_baseline;
  if (group.is_baseline || comparison === null || comparison.difference === null) return cell;
  return `${cell} (${formatSigned(comparison.difference)}, ${comparison.p === null ? 'p n/a' : `p = ${formatPValue(comparison.p)}`})`;
}

/** The CLIP groups' retrieval table (header and rows), or null when no group is CLIP. */
function retrievalTable(comparison: Comparison): { header: string[]; rows: { group: GroupResult; cells: string[] }[] } | null {
  const groups = comparison.groups.filter((group) => group.retrieval !== null);
  if (groups.length === 0) return null;
  const several = hasSeveralCombinations(comparison);
  return {
    header: ['method', 'ratio', 'seeds', ...RETRIEVAL_METRICS.map((metric) => `${RETRIEVAL_LABELS[metric]} (%)`)],
    rows: groups.map((group) => ({
      group,
      cells: [several ? `${group.dataset}/${group.model} ${group.method}` : group.method, String(group.ratio), formatSeedCount(group), ...RETRIEVAL_METRICS.map((metric) => formatRetrieval(group, group.retrieval![metric]))],
    })),
  };
}

const RETRIEVAL_NOTE =
  'CLIP retrieval after the last epoch: recall@k = the share of test images whose own caption ranks among the k captions most similar to it (image→text), ' +
  'and of captions whose own image ranks among the k most similar images (text→image), over the first recall_pairs test pairs (metrics.jsonl). ' +
  '± = sample std over seeds; (Δ, p) = difference from the baseline mean in points and two-sided Welch t-test over seeds, as for accuracy.';

function hasSeveralCombinations(comparison: Comparison): boolean {
  return new Set(comparison.groups.map((group) => `${group.dataset}/${group.model}`)).size > 1;
}

function tableRows(comparison: Comparison): TableRow[] {
  const several = hasSeveralCombinations(comparison);
  return comparison.groups.map((group) => ({
    group,
    combination: several ? `${group.dataset}/${group.model}` : null,
    cells: [
      group.method,
      String(group.ratio),
      formatSeedCount(group),
      formatAccuracy(group.final_test_acc1.mean, group.final_test_acc1.std),
      formatAccuracy(group.best_test_acc1.mean, group.best_test_acc1.std),
      formatDifference(group),
      formatCost(group),
      formatDuration(group.total_wall_s),
    ],
  }));
}

function markdownCell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

const METHOD_NOTE =
  'final = test top-1 after the last epoch; best = highest test top-1 over epochs; ± = sample standard deviation over seeds (n − 1). ' +
  'Δ = final mean minus the baseline final mean, in points; p = two-sided Welch t-test over seeds. ' +
  'cost = mean optimizer-step time relative to the baseline. wall time = summed over finished runs. ' +
  'Only finished runs (with done.json) enter the statistics.';

function chartVerdicts(comparison: Comparison, id: ChartId): Verdict[] {
  return comparison.verdicts.filter((verdict) => verdict.chart === id);
}

/** " (dataset/model)" when the comparison spans several combinations, else nothing. */
function verdictScope(comparison: Comparison, verdict: Verdict): string {
  return hasSeveralCombinations(comparison) ? ` (${verdict.combination})` : '';
}

/** The Markdown report; chart images are referenced as charts/<id>.svg next to it. */
export function renderMarkdown(comparison: Comparison, chartSet: ChartSet): string {
  const { headline, machine } = describeSetting(comparison.setting);
  const lines: string[] = [];
  lines.push('# MaskSub comparison', '');
  lines.push(`**What was run:** ${headline}  `, `**${machine.replace(/^(machines?):/, '$1:**')}`, '');
  const finished = comparison.runs.filter((run) => run.finished).length;
  lines.push(`${comparison.runs.length} runs (${finished} finished) in \`${comparison.directory}\`, generated ${comparison.generated_at}.`, '');
  const header = hasSeveralCombinations(comparison) ? ['dataset/model', ...tableHeader(comparison)] : tableHeader(comparison);
  const leftAligned = header.length - TABLE_HEADER.length + 2;
  lines.push(`| ${header.join(' | ')} |`);
  lines.push(`| ${header.map((_, index) => (index < leftAligned ? '---' : '---:')).join(' | ')} |`);
  for (const row of tableRows(comparison)) {
    const cells = row.combination === null ? row.cells : [row.combination, ...row.cells];
    lines.push(`| ${cells.map(markdownCell).join(' | ')} |`);
  }
  lines.push('', METHOD_NOTE, '');
  const retrieval = retrievalTable(comparison);
  if (retrieval !== null) {
    lines.push('## Retrieval (CLIP)', '', `| ${retrieval.header.join(' | ')} |`, `| ${retrieval.header.map((_, index) => (index < 2 ? '---' : '---:')).join(' | ')} |`);
    for (const row of retrieval.rows) lines.push(`| ${row.cells.map(markdownCell).join(' | ')} |`);
    lines.push('', RETRIEVAL_NOTE, '');
  }
  if (comparison.notes.length > 0) {
    lines.push('## Notes', '');
    for (const note of comparison.notes) lines.push(`- ${note}`);
    lines.push('');
  }
  lines.push('## Charts', '');
  for (const chart of chartSet.charts) {
    lines.push(`### ${chart.title}`, '', `![${chart.title}](charts/${chart.id}.svg)`, '', chart.shows, '', `*Paper:* ${chart.paper}`, '');
    for (const verdict of chartVerdicts(comparison, chart.id)) lines.push(`*This run${verdictScope(comparison, verdict)}:* ${verdict.text} **${agreementPhrase(verdict.agreement)}.**`, '');
  }
  for (const omitted of chartSet.omitted) lines.push(`- ${omitted.id}: not drawn (${omitted.reason})`);
  if (chartSet.omitted.length > 0) lines.push('');
  return `${lines.join('\n').trimEnd()}\n`;
}

function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Inline SVG does not need namespace declarations, and dropping them keeps the page free of URLs. */
function inlineSvg(svg: string): string {
  return svg.replace(/^<\?xml[^>]*>\s*/, '').replace(/\s+xmlns(?::xlink)?="[^"]*"/g, '');
}

function differenceClass(group: GroupResult): string {
  const comparison = group.vs_baseline;
  if (comparison === null || comparison.p === null || comparison.difference === null || comparison.p >= 0.05) return '';
  return comparison.difference > 0 ? ' class="better"' : ' class="worse"';
}

const STYLE = `
:root { --ink: #1d1d1f; --muted: #5f6368; --line: #e3e5e8; --panel: #f7f8fa; --accent: #2f6eba; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff;
  font: 15px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1020px; margin: 0 auto; padding: 0 28px 48px; }
header { border-bottom: 1px solid var(--line); padding: 30px 0 18px; margin-bottom: 22px; }
h1 { font-size: 26px; font-weight: 650; margin: 0 0 8px; letter-spacing: -0.01em; }
h2 { font-size: 18px; font-weight: 620; margin: 34px 0 12px; }
h3 { font-size: 15px; font-weight: 620; margin: 0 0 4px; }
.setting { font-size: 16px; margin: 0; }
.machine, .meta { color: var(--muted); margin: 2px 0 0; font-size: 13.5px; }
.callout { background: var(--panel); border-left: 3px solid var(--accent); padding: 10px 14px; margin: 16px 0 0;
  font-size: 13.5px; color: #3c4043; border-radius: 0 4px 4px 0; }
table { border-collapse: collapse; width: 100%; font-size: 14px; font-variant-numeric: tabular-nums; }
th, td { padding: 7px 10px; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
th { font-weight: 600; color: #3c4043; border-bottom: 2px solid #c9ccd1; background: #fff; }
th:first-child, td:first-child { text-align: left; }
tbody tr:nth-child(even) { background: #fafbfc; }
td.method { font-weight: 600; }
td.method .combination { display: block; font-weight: 400; font-size: 12px; color: var(--muted); margin-left: 18px; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 8px; vertical-align: 0; }
td.better { color: #1e7b34; font-weight: 600; }
td.worse { color: #b3261e; font-weight: 600; }
.table-wrap { overflow-x: auto; }
.explain { color: var(--muted); font-size: 13px; margin: 10px 0 0; }
ul.notes { margin: 0; padding-left: 20px; font-size: 13.5px; color: #3c4043; }
ul.notes li { margin: 3px 0; word-break: break-word; }
figure { margin: 0 0 30px; padding: 18px 18px 14px; border: 1px solid var(--line); border-radius: 8px; background: #fff; }
figure svg { display: block; max-width: 100%; height: auto; margin: 0 auto 10px; }
figcaption { font-size: 13.5px; color: #3c4043; max-width: 880px; margin: 0 auto; }
figcaption .paper { color: var(--muted); }
figcaption .verdict { display: block; margin-top: 6px; }
figcaption .verdict.agrees strong:last-child { color: #1e7b34; }
figcaption .verdict.disagrees strong:last-child { color: #b3261e; }
footer { color: var(--muted); font-size: 12.5px; border-top: 1px solid var(--line); margin-top: 30px; padding-top: 12px; }
code { font-size: 12.5px; background: var(--panel); padding: 1px 4px; border-radius: 3px; }
@media print { figure { break-inside: avoid; } main { max-width: none; } }
`;

/** The self-contained HTML report: inline CSS and SVG only; the CSP forbids every fetch. */
export function renderHtml(comparison: Comparison, chartSet: ChartSet): string {
  const { headline, machine } = describeSetting(comparison.setting);
  const colors = seriesColors(comparison);
  const finished = comparison.runs.filter((run) => run.finished).length;
  const unfinished = comparison.runs.length - finished;

  const header = tableHeader(comparison).map((cell) => `<th scope="col">${escapeHtml(cell)}</th>`).join('');
  const retrieval = retrievalTable(comparison);
  const retrievalHtml = retrieval === null ? '' : `<h2>Retrieval (CLIP)</h2>
<div class="table-wrap"><table>
<thead><tr>${retrieval.header.map((cell) => `<th scope="col">${escapeHtml(cell)}</th>`).join('')}</tr></thead>
<tbody>
${retrieval.rows.map(({ group, cells }) => `<tr><td class="method"><span class="swatch" style="background:${colors.get(group.label) ?? '#7f7f7f'}"></span>${escapeHtml(cells[0]!)}</td>${cells.slice(1).map((cell) => `<td>${escapeHtml(cell)}</td>`).join('')}</tr>`).join('\n')}
</tbody>
</table></div>
<p class="explain">${escapeHtml(RETRIEVAL_NOTE)}</p>`;
  const body = tableRows(comparison)
    .map(({ group, combination, cells }) => {
      const [methodCell = '', ...rest] = cells;
      const swatch = `<span class="swatch" style="background:${colors.get(group.label) ?? '#7f7f7f'}"></span>`;
      const others = rest
        .map((cell, index) => {
          const title = index === 4 && group.vs_baseline?.t != null ? ` title="t = ${group.vs_baseline.t.toFixed(3)}, df = ${group.vs_baseline.df?.toFixed(2) ?? '–'}"` : '';
          return `<td${index === 4 ? differenceClass(group) : ''}${title}>${escapeHtml(cell)}</td>`;
        })
        .join('');
      const combinationLine = combination === null ? '' : `<span class="combination">${escapeHtml(combination)}</span>`;
      return `<tr><td class="method">${swatch}${escapeHtml(methodCell)}${combinationLine}</td>${others}</tr>`;
    })
    .join('\n');

  const notes =
    comparison.notes.length === 0
      ? ''
      : `<h2>Notes</h2>\n<ul class="notes">${comparison.notes.map((note) => `<li>${escapeHtml(note)}</li>`).join('')}</ul>`;
  const figures = chartSet.charts
    .map(
      (chart: Chart) =>
        `<figure id="${chart.id}" class="chart">\n${inlineSvg(chart.svg)}\n<figcaption>${escapeHtml(chart.shows)} <span class="paper"><strong>Paper:</strong> ${escapeHtml(chart.paper)}</span>${chartVerdicts(comparison, chart.id)
          .map((verdict) => `<span class="verdict ${verdict.agreement}"><strong>This run${escapeHtml(verdictScope(comparison, verdict))}:</strong> ${escapeHtml(verdict.text)} <strong>${escapeHtml(agreementPhrase(verdict.agreement))}.</strong></span>`)
          .join('')}</figcaption>\n</figure>`,
    )
    .join('\n');
  const omitted =
    chartSet.omitted.length === 0
      ? ''
      : `<ul class="notes">${chartSet.omitted.map((entry) => `<li>${escapeHtml(entry.id)}: not drawn (${escapeHtml(entry.reason)})</li>`).join('')}</ul>`;

  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>MaskSub comparison — ${escapeHtml(headline)}</title>
<style>${STYLE}</style>
</head>
<body>
<main>
<header>
<h1>MaskSub comparison</h1>
<p class="setting">${escapeHtml(headline)}</p>
<p class="machine">${escapeHtml(machine)}</p>
<p class="meta">${comparison.runs.length} runs: ${finished} finished${unfinished > 0 ? `, ${unfinished} unfinished` : ''} · ${escapeHtml(comparison.directory)} · generated ${escapeHtml(comparison.generated_at)}</p>
<p class="callout">These numbers are from the setting above, not the paper’s. The paper trains on ImageNet-1k for 100–400 epochs; a short run on a small dataset can show the direction of an effect but not its size.</p>
</header>
<h2>Results</h2>
<div class="table-wrap"><table>
<thead><tr>${header}</tr></thead>
<tbody>
${body}
</tbody>
</table></div>
<p class="explain">${escapeHtml(METHOD_NOTE)}</p>
${retrievalHtml}
${notes}
<h2>Charts</h2>
${figures}
${omitted}
<footer>Numbers: <code>results.json</code> · charts as SVG: <code>charts/</code> · runs: <code>runs/</code></footer>
</main>
</body>
</html>
`;
}

/**
 * Collects DIR, then writes DIR/results.json, DIR/charts/*.svg, DIR/report.md and DIR/report.html.
 * Works on partial data: missing charts are listed as not drawn instead of failing the report.
 */
export async function renderReport(directory: string): Promise<ReportFiles> {
  const root = resolve(directory);
  const comparison = collectComparison(root);
  writeResults(root, comparison);
  const chartSet = await buildCharts(comparison);
  const chartsDirectory = join(root, 'charts');
  mkdirSync(chartsDirectory, { recursive: true });
  const chartPaths: string[] = [];
  for (const chart of chartSet.charts) {
    const path = join(chartsDirectory, `${chart.id}.svg`);
    writeFileSync(path, chart.svg);
    chartPaths.push(path);
  }
  // A chart drawn by an earlier report but without data now would otherwise look current.
  for (const id of CHART_IDS) {
    const stale = join(chartsDirectory, `${id}.svg`);
    if (!chartSet.charts.some((chart) => chart.id === id) && existsSync(stale)) rmSync(stale);
  }
  const markdown = join(root, 'report.md');
  const html = join(root, 'report.html');
  writeFileSync(markdown, renderMarkdown(comparison, chartSet));
  writeFileSync(html, renderHtml(comparison, chartSet));
  return { comparison, results: join(root, 'results.json'), markdown, html, charts: chartPaths, omitted: chartSet.omitted };
}
