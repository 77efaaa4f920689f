// Renders a benchmark result (bench/results/<name>.json) as the Markdown tables the README quotes:
// step times per implementation, the headline ratio against the strongest PyTorch configuration,
// engine parity, memory, MaskSub's cost, per-call overhead, batch assembly and OpenMP waiting.
// Every number is "median [first quartile - third quartile]" over rounds.
// Usage: node --import tsx bench/summary.ts bench/results/<name>.json   (run.ts calls it at the end)
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

type Figure = Record<string, unknown>;
export interface ResultDocument {
  name: string;
  machine: Record<string, unknown>;
  figures: Figure[];
}

const number = (value: unknown): number | null => (typeof value === 'number' && Number.isFinite(value) ? value : null);

/** `digits` significant digits, or a whole number once the digits run out (2630, not 2.63e+3). */
function formatNumber(x: number, digits: number): string {
  return Math.abs(x) >= 10 ** (digits - 1) ? String(Math.round(x)) : x.toPrecision(digits);
}

/** A value with its interquartile range, e.g. "1.03 [0.98-1.07]"; "busy" marks samples from a busy machine. */
function cell(line: Figure | undefined, digits = 3, scale = 1): string {
  const value = number(line?.value);
  if (!line || value === null) return '-';
  const format = (x: number): string => formatNumber(x * scale, digits);
  const iqr = Array.isArray(line.iqr) && line.iqr.length === 2 && number(line.iqr[0]) !== null ? ` [${format(line.iqr[0] as number)}-${format(line.iqr[1] as number)}]` : '';
  const busy = number(line.busySamples) ? ` (${line.busySamples} busy)` : '';
  return `${format(value)}${iqr}${busy}`;
}

function find(figures: Figure[], fields: Figure): Figure | undefined {
  return figures.find((line) => Object.entries(fields).every(([key, value]) => line[key] === value));
}

function table(header: string[], rows: string[][]): string {
  return [`| ${header.join(' | ')} |`, `|${header.map((_, index) => (index ? ' ---: ' : ' --- ')).join('|')}|`, ...rows.map((row) => `| ${row.join(' | ')} |`)].join('\n');
}

export function summaryMarkdown(document: ResultDocument): string {
  const { figures, machine } = document;
  const plan = (machine.plan ?? {}) as Record<string, unknown>;
  const load = (machine.load ?? {}) as Record<string, unknown>;
  const ours = (machine.ours ?? {}) as Record<string, unknown>;
  const pytorch = (machine.pytorch ?? {}) as Record<string, unknown>;
  const vit = (plan.vit ?? {}) as Record<string, unknown>;
  const out: string[] = [];
  out.push(`## Benchmark ${document.name}`, '');
  out.push(`${machine.date}, commit ${String(machine.gitCommit).slice(0, 12)}${machine.gitDirty ? ' (work tree differed from it: see gitDirtyFiles)' : ''}; ${machine.cpu}, ` +
    `CPUs ${machine.cpuSet} (taskset), ${machine.threads} threads, OMP_WAIT_POLICY=${machine.ompWaitPolicy}; ours: libtorch ${ours.torchVersion}, ` +
    `PyTorch ${pytorch.torchVersion}; BLAS ${JSON.stringify(ours.blas)} / ${JSON.stringify(pytorch.blas)}. ${plan.rounds} rounds in a seeded random order ` +
    `(seed ${plan.seed}), >= ${vit.seconds} s of timed steps per step process. Load average ${JSON.stringify(load.averageAtStart)} at the start; ` +
    `others used ${load.othersBusyCoresDuringMedian} cores (median; max ${load.othersBusyCoresDuringMax}) during the processes; ` +
    `${load.busyProcesses} of ${load.processes} processes flagged busy (> ${load.busyThresholdCores} cores).`, '');
  out.push('Cells: median [first quartile-third quartile] over rounds; "(n busy)": rounds whose processes ran next to others\' load.', '');

  const stepLines = figures.filter((line) => line.metric === 'step_time_s' && (line.section === 'vit' || line.section === 'resnet'));
  const impls = [...new Set(stepLines.map((line) => String(line.impl)))];
  const rows = [...new Map(stepLines.map((line) => [`${line.model}|${line.method}|${line.ratio}`, line])).values()];
  const rowName = (line: Figure): string => `${line.model}, ${line.method}${line.ratio !== null && line.ratio !== undefined ? ` r=${line.ratio}` : ''}`;
  const rowKey = (line: Figure): Figure => ({ model: line.model, method: line.method, ratio: line.ratio });
  if (rows.length) {
    out.push('### Seconds per training step', '');
    out.push(table(['model, method', ...impls, 'ours / strongest PyTorch', 'ours_nocache / pytorch (glibc)'], rows.map((row) => {
      const headline = find(figures, { metric: 'step_time_ratio', ...rowKey(row), impl: 'ours', headline: true });
      const parity = find(figures, { metric: 'step_time_ratio', ...rowKey(row), impl: 'ours_nocache', versus: 'pytorch' });
      return [rowName(row), ...impls.map((impl) => cell(find(figures, { metric: 'step_time_s', ...rowKey(row), impl }))),
        headline ? `${cell(headline)} vs ${headline.versus}` : '-', cell(parity)];
    })), '');
    out.push('### Peak resident memory (MiB)', '');
    // Memory against every PyTorch column: the fastest one need not be the leanest.
    const pytorchImpls = impls.filter((impl) => impl.startsWith('pytorch'));
    out.push(table(['model, method', ...impls, ...pytorchImpls.map((impl) => `ours / ${impl}`)], rows.map((row) => [
      rowName(row), ...impls.map((impl) => cell(find(figures, { metric: 'peak_rss_mib', ...rowKey(row), impl }))),
      ...pytorchImpls.map((impl) => cell(find(figures, { metric: 'peak_rss_ratio', ...rowKey(row), impl: 'ours', versus: impl }))),
    ])), '');
  }
  const costs = figures.filter((line) => line.metric === 'masksub_cost');
  if (costs.length) {
    out.push('### MaskSub cost (masksub step / baseline step, same implementation, same round)', '');
    out.push(table(['model, ratio', ...impls, 'paper'], [...new Map(costs.map((line) => [`${line.model}|${line.ratio}`, line])).values()].map((row) => [
      `${row.model}, r=${row.ratio}`, ...impls.map((impl) => cell(find(figures, { metric: 'masksub_cost', model: row.model, ratio: row.ratio, impl }))), String(row.paper ?? '-'),
    ])), '');
  }
  const overhead = figures.filter((line) => line.metric === 'step_time_s' && line.section === 'overhead');
  if (overhead.length) {
    const overheadImpls = [...new Set(overhead.map((line) => String(line.impl)))];
    out.push(`### Per-call overhead (batch ${String(((plan.overhead ?? {}) as Record<string, unknown>).batchSize ?? 2)}: ms per step, calls per step)`, '');
    out.push(table(['model', ...overheadImpls], [...new Set(overhead.map((line) => String(line.model)))].map((model) => [model, ...overheadImpls.map((impl) => {
      const calls = find(figures, { metric: 'calls_per_step', model, impl });
      return `${cell(find(figures, { metric: 'step_time_s', section: 'overhead', model, impl }), 3, 1000)}${calls ? `, ${calls.value} calls` : ''}`;
    })])), '');
    const opCalls = figures.filter((line) => line.metric === 'op_call_us');
    if (opCalls.length) out.push(`One tiny op call (x.add(y), 1-element tensors), µs: ${opCalls.map((line) => `${line.impl} ${cell(line)}`).join('; ')}.`, '');
  }
  const assembly = figures.filter((line) => line.metric === 'batch_assembly_images_per_s');
  if (assembly.length) {
    const pipeline = figures.filter((line) => line.metric === 'pipeline_ratio' && line.worker === true).map((line) => number(line.value)).filter((x): x is number => x !== null);
    out.push(`### Batch assembly from memory`, '');
    out.push(`${assembly.map((line) => `${line.worker ? 'worker thread' : 'in-thread'} ${cell(line)} images/s`).join('; ')} (${assembly[0].dataset}; ` +
      `decoded in-memory images: shuffle, gather, normalize, crop + flip, Float32Array batches; no file read or decode, no tensors)` +
      (pipeline.length ? `; ${formatNumber(Math.min(...pipeline), 3)}x to ${formatNumber(Math.max(...pipeline), 3)}x what ours' training steps consume.` : '.'), '');
  }
  const waiting = figures.filter((line) => line.metric === 'waitpolicy_step_ms');
  if (waiting.length) {
    out.push(`### OpenMP waiting policy (${waiting[0].model}, batch ${waiting[0].batchSize}; "busy": one spinning process on the same CPUs)`, '');
    out.push(table(['implementation, OMP_WAIT_POLICY, neighbour', 'ms per step'], waiting.map((line) => [String(line.contender), cell(line)])), '');
    const ratios = figures.filter((line) => line.metric === 'waitpolicy_ratio');
    if (ratios.length) out.push(ratios.map((line) => `${line.contender} / ${line.versus}: ${cell(line)}`).join('; ') + '.', '');
  }
  const feed = find(figures, { metric: 'loader_worker_step_slowdown' });
  if (feed) out.push(`ViT step fed by the loader worker / on a fixed batch: ${cell(feed)}.`, '');
  const errors = figures.filter((line) => line.metric === 'error');
  if (errors.length) out.push(`**${errors.length} process(es) failed**: ${errors.map((line) => `${line.block} ${line.contender}: ${line.error}`).join('; ')}`, '');
  return out.join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const path = process.argv[2];
  if (!path) {
    process.stderr.write('usage: node --import tsx bench/summary.ts bench/results/<name>.json\n');
    process.exit(2);
  }
  process.stdout.write(summaryMarkdown(JSON.parse(readFileSync(path, 'utf8')) as ResultDocument) + '\n');
}
