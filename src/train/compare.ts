// `compare`: trains every method with every seed (and ratio) into DIR/runs/<name>/, skipping
// finished runs and resuming unfinished ones, so an interrupted comparison continues where it
// stopped; then writes results.json, report.md and report.html from the run directories alone.
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { isMethod, type Method } from '../masksub/method.js';
import { renderReport, type ReportFiles } from '../report/index.js';
import { ConfigError, type ResolvedTrainConfig, resolveConfig } from './config.js';
import { train } from './trainer.js';

export interface CompareOptions {
  out: string;
  methods: Method[];
  seeds: number[];
  /** Regularizer strengths to sweep; null = each method's default ratio. */
  ratios: number[] | null;
  log?: (line: string) => void;
}

export interface PlannedRun { name: string; config: ResolvedTrainConfig }

export function parseMethods(text: string): Method[] {
  const methods = text.split(',').map((name) => name.trim()).filter(Boolean);
  if (!methods.length) throw new ConfigError('--methods needs at least one method');
  for (const method of methods) if (!isMethod(method)) throw new ConfigError(`--methods: unknown method '${method}'`);
  if (new Set(methods).size !== methods.length) throw new ConfigError('--methods lists a method twice');
  return methods as Method[];
}

export function parseNumberList(flag: string, text: string, check: (value: number) => boolean, requirement: string): number[] {
  const values = text.split(',').map((item) => item.trim()).filter(Boolean).map(Number);
  if (!values.length) throw new ConfigError(`${flag} needs at least one value`);
  for (const value of values) if (!check(value)) throw new ConfigError(`${flag}: ${value} is not ${requirement}`);
  return values;
}

/** The runs of a comparison, in the order they are trained (seed-major, so early stops still pair). */
export function planRuns(base: ResolvedTrainConfig, options: CompareOptions): PlannedRun[] {
  const runs: PlannedRun[] = [];
  for (const seed of options.seeds) {
    for (const method of options.methods) {
      const sweep = options.ratios && method !== 'baseline' ? options.ratios : [null];
      for (const ratio of sweep) {
        const name = ratio === null ? `${method}-s${seed}` : `${method}-r${ratio}-s${seed}`;
        const config = resolveConfig({ ...base, method, seed, ratio: ratio ?? (method === base.method ? base.ratio : null) }, base.preset);
        runs.push({ name, config });
      }
    }
  }
  return runs;
}

export async function compare(base: ResolvedTrainConfig, options: CompareOptions): Promise<ReportFiles> {
  const log = options.log ?? ((line: string) => process.stderr.write(line + '\n'));
  const runs = planRuns(base, options);
  mkdirSync(join(options.out, 'runs'), { recursive: true });
  let index = 0;
  for (const run of runs) {
    index++;
    const directory = join(options.out, 'runs', run.name);
    const finished = existsSync(join(directory, 'done.json'));
    const started = existsSync(join(directory, 'config.json'));
    if (finished) {
      log(`[${index}/${runs.length}] ${run.name}: finished earlier, reused`);
      continue;
    }
    log(`[${index}/${runs.length}] ${run.name}: ${started ? 'resuming' : 'training'} (${run.config.method}, ratio ${run.config.ratio}, seed ${run.config.seed})`);
    await train(run.config, { out: directory, resume: started, log: (line) => log(`  ${run.name}: ${line}`) });
  }
  const files = await renderReport(options.out);
  log(`wrote ${files.results}, ${files.markdown}, ${files.html}`);
  return files;
}
