// `compare`: trains every method with every seed (and ratio) into DIR/runs/<name>/, skipping
// finished runs and resuming unfinished ones, so an interrupted comparison continues where it
// stopped; then writes results.json, report.md and report.html from the run directories alone.
// It sits above both train and report (src/experiment). One compare at a time per DIR (a lock).
// With jobs > 1 the runs train in child processes, `jobs` at a time, each with its share of the
// threads: small models use two threads poorly (bench/results/ddp-*.json: 2 processes x 1 thread
// trained 1.09-1.4x as many images per second as 1 process x 2 threads), so seeds in parallel
// finish a comparison sooner. What a run computes does not depend on the job count.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { WORKER_ENV } from '../distributed/launch.js';
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
  /**
   * Runs trained at a time (default 1, in this process). Above 1 each run is a child process
   * (`masksub train`, the script in `cli`) with floor(threads / jobs) threads.
   */
  jobs?: number;
  /** With jobs > 1: the CLI script and Node flags that start `masksub train` (default: this process's). */
  cli?: { script: string; execArgv: readonly string[] };
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
  const jobs = options.jobs ?? 1;
  if (!Number.isInteger(jobs) || jobs < 1) throw new ConfigError(`--jobs must be an integer >= 1, got ${jobs}`);
  const lock = DirectoryLock.acquire(options.out, `compare --out ${options.out}`, COMPARE_LOCK_FILE);
  try {
    // Every stored run is checked against the plan before anything trains, so that a mismatch
    // stops the comparison before hours of work rather than after.
    const pending: { run: PlannedRun; index: number; resume: boolean; directory: string }[] = [];
    runs.forEach((run, position) => {
      const index = position + 1;
      const directory = new RunDirectory(join(options.out, 'runs', run.name));
      const started = directory.hasRun();
      if (started) {
        const differences = configDifferences(readRunConfig(directory.path), run.config);
        if (differences.length) {
          throw new ConfigError(`${directory.path} was trained with other settings (${differences.join(', ')}); ` +
            'use another --out for a different comparison, or delete that run directory to retrain it');
        }
      }
      if (directory.isFinished()) log(`[${index}/${runs.length}] ${run.name}: finished earlier, reused`);
      else pending.push({ run, index, resume: started, directory: directory.path });
    });
    const announce = (entry: (typeof pending)[number]): void =>
      log(`[${entry.index}/${runs.length}] ${entry.run.name}: ${entry.resume ? 'resuming' : 'training'} (${entry.run.config.method}, ratio ${entry.run.config.ratio}, seed ${entry.run.config.seed})`);
    if (jobs === 1) {
      for (const entry of pending) {
        announce(entry);
        const { run } = entry;
        const result = await train(run.config, { out: entry.directory, resume: entry.resume, log: (line) => log(`  ${run.name}: ${line}`), signal: options.signal });
        if (result.interrupted || options.signal?.aborted) return null;
      }
    } else if (!(await trainInChildren(pending, { ...options, jobs, log, announce }))) {
      return null;
    }
    const files = await renderReport(options.out);
    log(`wrote ${files.results}, ${files.markdown}, ${files.html}`);
    return files;
  } finally {
    lock.release();
  }
}

interface ChildJob { run: PlannedRun; resume: boolean; directory: string }

/** What a child `masksub train` reads as --config: the planned run's settings, threads shared out. */
function childSettings(config: ResolvedTrainConfig, jobs: number): Record<string, unknown> {
  const { machine: _machine, ...settings } = config;
  return { ...settings, threads: Math.max(1, Math.floor(config.threads / jobs)) };
}

/**
 * Trains the pending runs `jobs` at a time in child processes. Returns false when options.signal
 * stopped them (each child stops after its step and keeps a checkpoint to resume from); throws
 * when a run fails, after stopping the others the same way.
 */
async function trainInChildren<T extends ChildJob>(
  pending: readonly T[],
  options: CompareOptions & { jobs: number; log: (line: string) => void; announce: (entry: T) => void },
): Promise<boolean> {
  const { jobs, log } = options;
  const cli = options.cli ?? { script: process.argv[1] ?? '', execArgv: process.execArgv };
  const plans = join(options.out, '.jobs');
  mkdirSync(plans, { recursive: true });
  const running = new Map<ChildProcess, T>();
  let failure: Error | null = null;
  const stopAll = (): void => {
    for (const child of running.keys()) child.kill('SIGTERM');
  };
  const onAbort = (): void => stopAll();
  options.signal?.addEventListener('abort', onAbort);
  const start = (entry: T): Promise<void> => {
    options.announce(entry);
    const plan = resolve(plans, `${entry.run.name}.json`);
    writeFileSync(plan, `${JSON.stringify(childSettings(entry.run.config, jobs), null, 2)}\n`);
    const args = entry.resume ? ['train', '--out', entry.directory, '--resume'] : ['train', '--out', entry.directory, '--config', plan];
    // Own process group (a terminal's Ctrl-C reaches the children once, through us) and an IPC
    // channel: when compare dies, even by SIGKILL, the channel closes and the child stops (cli).
    const child = spawn(process.execPath, [...cli.execArgv, cli.script, ...args], {
      detached: true, stdio: ['ignore', 'pipe', 'pipe', 'ipc'], env: { ...process.env, [WORKER_ENV]: '1' },
    });
    child.channel?.unref();
    running.set(child, entry);
    const tail: string[] = [];
    for (const stream of [child.stdout, child.stderr]) {
      if (stream) {
        createInterface({ input: stream }).on('line', (line) => {
          tail.push(line);
          if (tail.length > 20) tail.shift();
          log(`  ${entry.run.name}: ${line}`);
        });
      }
    }
    return new Promise((done) => {
      const finish = (why: string | null): void => {
        running.delete(child);
        if (why === null) rmSync(plan, { force: true });
        else if (failure === null && !options.signal?.aborted) {
          failure = new RunError(`run ${entry.run.name} ${why}; the other runs were stopped and keep their checkpoints (run compare again to continue). Its last lines:\n${tail.join('\n')}`);
          stopAll();
        }
        done();
      };
      child.on('error', (error) => finish(`could not start: ${error.message}`));
      child.on('exit', (code, signal) => finish(code === 0 ? null : signal !== null ? `was killed by ${signal}` : `exited with code ${code}`));
    });
  };
  try {
    const queue = [...pending];
    const slots: Promise<void>[] = [];
    for (let slot = 0; slot < jobs; slot++) {
      slots.push((async () => {
        for (let entry = queue.shift(); entry !== undefined; entry = queue.shift()) {
          if (failure !== null || options.signal?.aborted) return;
          await start(entry);
        }
      })());
    }
    await Promise.all(slots);
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
  }
  if (failure !== null) throw failure;
  if (options.signal?.aborted) return false;
  rmSync(plans, { recursive: true, force: true });
  return true;
}
