// The run directory's single owner: which files a run has, reading and writing them (config,
// metrics, summary), deciding whether a directory may be started, resumed or replaced, stale
// temporary files, and the lock. The trainer, compare, eval and report go through here.
import { accessSync, constants, existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parseTemporaryName, staleTemporaries, writeFileAtomic } from '../io/atomic.js';
import { RunError } from './errors.js';
import { CONFIG_FILE, DONE_FILE, type EpochMetrics, LOCK_FILE, METRICS_FILE, RUN_FILES, type RunSummary, SUMMARY_CSV } from './format.js';
import { DirectoryLock } from './lock.js';

/** What a command wants to do with the directory. */
export interface RunIntent {
  resume?: boolean;
  overwrite?: boolean;
}

export type RunMode = 'fresh' | 'resume';

function csvLine(values: unknown[]): string {
  return values.map((value) => (value === null || value === undefined ? '' : String(value))).join(',');
}

/** Why the nearest existing ancestor of `path` cannot be written to (an errno code), or null. */
function nearestParentProblem(path: string): string | null {
  let parent = dirname(resolve(path));
  while (!existsSync(parent) && dirname(parent) !== parent) parent = dirname(parent);
  try {
    accessSync(parent, constants.W_OK);
    return null;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code ?? null;
  }
}

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new RunError(`${path}: ${code === 'ENOENT' ? 'not found' : (error as Error).message}`);
  }
}

export class RunDirectory {
  constructor(readonly path: string) {}

  file(name: string): string {
    return join(this.path, name);
  }

  hasFile(name: string): boolean {
    return existsSync(this.file(name));
  }

  hasRun(): boolean {
    return existsSync(this.file(CONFIG_FILE));
  }

  isFinished(): boolean {
    return existsSync(this.file(DONE_FILE));
  }

  /** Entries other than the lock and stale temporaries (what a new run would be mixed with). */
  private contents(): string[] {
    if (!existsSync(this.path)) return [];
    const stale = new Set(staleTemporaries(this.path));
    return readdirSync(this.path).filter((entry) => entry !== LOCK_FILE && !stale.has(entry) && !parseTemporaryName(entry));
  }

  /**
   * Whether a command may start (fresh) or continue (resume) a run here; never deletes a run
   * silently and touches nothing. Checked again under the lock before anything is written.
   */
  plan(intent: RunIntent): RunMode {
    const hasRun = this.hasRun();
    if (intent.resume) {
      if (!hasRun) throw new RunError(`--resume: ${this.path} holds no run to resume (no ${CONFIG_FILE})`);
      return 'resume';
    }
    if ((hasRun || this.contents().length) && !intent.overwrite) {
      const what = hasRun ? (this.isFinished() ? 'a finished run' : 'an unfinished run') : 'files';
      throw new RunError(`${this.path} already holds ${what}; pass --resume to continue it or --overwrite to replace it`);
    }
    return 'fresh';
  }

  /**
   * Makes the directory if needed and takes its lock (which is also the check that it is
   * writable). `release()` on the result removes the lock and, for a directory this call made
   * that stayed empty, the directory.
   */
  lock(purpose: string): { release(): void; verify(): void } {
    const existed = existsSync(this.path);
    if (!existed) {
      try {
        mkdirSync(this.path, { recursive: true });
      } catch (error) {
        // A recursive mkdir under a read-only mount reports ENOENT; ask the nearest existing parent why.
        const code = (error as NodeJS.ErrnoException).code === 'ENOENT' ? nearestParentProblem(this.path) ?? 'ENOENT' : (error as NodeJS.ErrnoException).code;
        const reason = code === 'EROFS' ? 'read-only file system' : code === 'EACCES' || code === 'EPERM' ? 'permission denied'
          : code === 'ENOTDIR' ? 'a parent is a file' : code === 'ENOSPC' ? 'disk full' : (error as Error).message;
        throw new RunError(`cannot create run directory ${this.path}: ${reason}`);
      }
    }
    let lock: DirectoryLock;
    try {
      lock = DirectoryLock.acquire(this.path, purpose, LOCK_FILE);
    } catch (error) {
      if (!existed) this.removeIfEmpty();
      throw error;
    }
    return {
      verify: () => lock.verify(),
      release: () => {
        lock.release();
        if (!existed) this.removeIfEmpty();
      },
    };
  }

  private removeIfEmpty(): void {
    try {
      rmdirSync(this.path);
    } catch {
      // not empty (the run wrote files) or already gone: keep it
    }
  }

  /** Removes stale temporaries, and for a fresh run the files of a replaced run (--overwrite was checked). */
  prepare(mode: RunMode): void {
    for (const entry of staleTemporaries(this.path)) rmSync(this.file(entry), { force: true });
    if (mode === 'fresh') for (const name of RUN_FILES) rmSync(this.file(name), { force: true });
  }

  /** config.json as stored (snake_case keys); the caller validates it. */
  readStoredConfig(): Record<string, unknown> {
    const path = this.file(CONFIG_FILE);
    let parsed: unknown;
    try {
      parsed = JSON.parse(readText(path));
    } catch (error) {
      const reason = error instanceof RunError ? error.message.slice(path.length + 2) : `not valid JSON (${(error as Error).message})`;
      throw new RunError(`${path}: cannot read the run's config: ${reason}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new RunError(`${path}: cannot read the run's config: it must hold a JSON object of settings`);
    return parsed as Record<string, unknown>;
  }

  writeStoredConfig(stored: Record<string, unknown>): void {
    writeFileAtomic(this.file(CONFIG_FILE), JSON.stringify(stored, null, 2) + '\n');
  }

  /** metrics.jsonl, one row per finished epoch; a malformed line is an error naming file and line. */
  readHistory(): EpochMetrics[] {
    const path = this.file(METRICS_FILE);
    if (!existsSync(path)) return [];
    const rows: EpochMetrics[] = [];
    readText(path).split('\n').forEach((line, index) => {
      if (!line.trim()) return;
      try {
        rows.push(JSON.parse(line) as EpochMetrics);
      } catch (error) {
        throw new RunError(`${path}:${index + 1}: malformed metrics line (${(error as Error).message})`);
      }
    });
    return rows;
  }

  /** metrics.jsonl and summary.csv, both derived from the checkpoint's history. */
  writeMetrics(history: readonly EpochMetrics[]): void {
    writeFileAtomic(this.file(METRICS_FILE), history.map((row) => JSON.stringify(row)).join('\n') + (history.length ? '\n' : ''));
    const columns = history.length ? Object.keys(history[0]) : [];
    const rows = history.map((row) => csvLine(columns.map((column) => (row as unknown as Record<string, unknown>)[column])));
    writeFileAtomic(this.file(SUMMARY_CSV), [columns.join(','), ...rows].join('\n') + '\n');
  }

  readSummary(): RunSummary {
    const path = this.file(DONE_FILE);
    try {
      return JSON.parse(readText(path)) as RunSummary;
    } catch (error) {
      if (error instanceof RunError) throw error;
      throw new RunError(`${path}: not valid JSON (${(error as Error).message})`);
    }
  }

  writeSummary(summary: RunSummary): void {
    writeFileAtomic(this.file(DONE_FILE), JSON.stringify(summary, null, 2) + '\n');
  }
}
