// `compare`: trains every method with every seed (and ratio) into DIR/runs/<name>/, skipping
// finished runs and resuming unfinished ones, so an interrupted comparison continues where it
// stopped; then writes results.json, report.md and report.html from the run directories alone.
// It sits above both train and report (src/experiment). One compare at a time per DIR (a lock).
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { describeMethod, type Method } from '../masksub/methods.js';
import { renderReport, type ReportFiles } from '../report/index.js';
import { DirectoryLock, RunDirectory, RunError } from '../run/index.js';
import { ConfigError, type ResolvedTrainConfig, resolveConfig, type TrainSettings } from '../train/config.js';
import { readRunConfig, train } from '../train/trainer.js';

/** The lock file of a comparison directory (each run directory below has its own). */
export const COMPARE_LOCK_FILE = 'compare.lock';

// Settings that may differ between a stored run and the plan without changing what it measures.
const INCIDENTAL = new Set(['machine', 'threads', 'workers', 'preset', 'dataDir', 'device']);

/** Names the settings in which a run directory's stored config differs from the planned one. */
export function configDifferences(stored: ResolvedTrainConfig, planned: ResolvedTrainConfig): string[] {
  const differences: string[] = [];
  for (const [key, value] of Object.entries(planned)) {
    if (INCIDENTAL.has(key)) continue;
    // A run records the class map its data gave (folders, text); a plan that leaves it to the data matches any.
    if (key === 'classes' && value === null) continue;
    const old = (stored as unknown as Record<string, unknown>)[key];
    if (JSON.stringify(old) !== JSON.stringify(value)) differences.push(`${key} ${JSON.stringify(old)} -> ${JSON.stringify(value)}`);
  }
  return differences;
}

export interface CompareOptions {
  out: string;
  methods: Method[];
  seeds: number[];
  /** Regularizer strengths to sweep; null = each method's default ratio. */
  ratios: number[] | null;
  log?: (line: string) => void;
  /** Aborting it (SIGINT/SIGTERM) stops after the current step; the comparison resumes when run again. */
  signal?: AbortSignal;
}

export interface PlannedRun { name: string; config: ResolvedTrainConfig }

/** The runs of a comparison, in the order they are trained (seed-major, so early stops still pair). */
export function planRuns(base: TrainSettings, options: CompareOptions): PlannedRun[] {
  const runs: PlannedRun[] = [];
  for (const seed of options.seeds) {
    for (const method of options.methods) {
      // A ratio sweep applies to the methods that have a regularizer to set the strength of.
      const sweep = options.ratios && describeMethod(method).regularizer !== null ? options.ratios : [null];
      for (const ratio of sweep) {
        const name = ratio === null ? `${method}-s${seed}` : `${method}-r${ratio}-s${seed}`;
        // base holds no method, seed or ratio of its own (the CLI refuses them): a null ratio is the method's default.
        const { preset, ...settings } = base;
        const config = resolveConfig({ ...settings, method, seed, ratio }, preset);
        runs.push({ name, config });
      }
    }
  }
  return runs;
}

/** Trains what is missing and writes the report; null when options.signal stopped it first. */
export async function compare(base: TrainSettings, options: CompareOptions): Promise<ReportFiles | null> {
  const log = options.log ?? ((line: string) => process.stderr.write(line + '\n'));
  const runs = planRuns(base, options);
  try {
    mkdirSync(join(options.out, 'runs'), { recursive: true });
  } catch (error) {
    throw new RunError(`cannot create ${join(options.out, 'runs')}: ${(error as Error).message}`);
  }
  const lock = DirectoryLock.acquire(options.out, `compare --out ${options.out}`, COMPARE_LOCK_FILE);
  try {
    let index = 0;
    for (const run of runs) {
      index++;
      const directory = new RunDirectory(join(options.out, 'runs', run.name));
      const started = directory.hasRun();
      if (started) {
        const differences = configDifferences(readRunConfig(directory.path), run.config);
        if (differences.length) {
          throw new ConfigError(`${directory.path} was trained with other settings (${differences.join(', ')}); ` +
            'use another --out for a different comparison, or delete that run directory to retrain it');
        }
      }
      if (directory.isFinished()) {
        log(`[${index}/${runs.length}] ${run.name}: finished earlier, reused`);
        continue;
      }
      log(`[${index}/${runs.length}] ${run.name}: ${started ? 'resuming' : 'training'} (${run.config.method}, ratio ${run.config.ratio}, seed ${run.config.seed})`);
      const result = await train(run.config, { out: directory.path, resume: started, log: (line) => log(`  ${run.name}: ${line}`), signal: options.signal });
      if (result.interrupted || options.signal?.aborted) return null;
    }
    const files = await renderReport(options.out);
    log(`wrote ${files.results}, ${files.markdown}, ${files.html}`);
    return files;
  } finally {
    lock.release();
  }
}
