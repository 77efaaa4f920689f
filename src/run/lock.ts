// An exclusive lock on a directory, so two processes never train into (or replace) the same run:
// a lock file holding the holder's pid, host and process start time, created with link(2) (atomic,
// fails if the file exists). A lock whose process is gone (killed, crashed) is stale and is taken
// over; a pid reused by another process is told apart by its start time.
import { existsSync, linkSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { processAlive, temporaryPath } from '../io/atomic.js';
import { RunError } from './errors.js';

export interface LockHolder {
  pid: number;
  host: string;
  /** The process's start time in clock ticks since boot (/proc/PID/stat field 22); null off Linux. */
  startTime: number | null;
  started: string;
  purpose: string;
}

/** A process's start time (Linux), which with the pid identifies it; null where unknown. */
function processStartTime(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 2 (the command) may hold spaces and parentheses; the fields after its last ')' are plain.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const value = Number(fields[19]);
    return Number.isFinite(value) ? value : null;
  } catch {
    return null;
  }
}

function holderAlive(holder: LockHolder): boolean {
  if (holder.host !== hostname()) return true; // cannot check another machine's processes: assume it runs
  if (!processAlive(holder.pid)) return false;
  const startTime = processStartTime(holder.pid);
  return holder.startTime === null || startTime === null || startTime === holder.startTime;
}

function readHolder(path: string): LockHolder | null {
  try {
    const parsed = JSON.parse(readFileSync(path, 'utf8')) as Partial<LockHolder>;
    if (typeof parsed.pid !== 'number' || typeof parsed.host !== 'string') return null;
    return { pid: parsed.pid, host: parsed.host, startTime: parsed.startTime ?? null, started: String(parsed.started ?? '?'), purpose: String(parsed.purpose ?? '?') };
  } catch {
    return null;
  }
}

function describeHolder(holder: LockHolder): string {
  return `process ${holder.pid} on ${holder.host} (${holder.purpose}, since ${holder.started})`;
}

function writeError(directory: string, error: NodeJS.ErrnoException): RunError {
  const code = error.code;
  const reason = code === 'EROFS' ? 'it is on a read-only file system' : code === 'EACCES' || code === 'EPERM' ? 'permission denied'
    : code === 'ENOSPC' ? 'the disk is full' : code === 'ENOENT' ? 'it does not exist' : error.message;
  return new RunError(`cannot write in ${directory}: ${reason}`);
}

export class DirectoryLock {
  private released = false;

  private constructor(readonly path: string, readonly holder: LockHolder) {}

  /**
   * Takes the lock file `name` in `directory` (which must exist) or throws a RunError naming the
   * process that holds it. Creating the file is also the check that the directory is writable.
   */
  static acquire(directory: string, purpose: string, name: string): DirectoryLock {
    const path = join(directory, name);
    const holder: LockHolder = {
      pid: process.pid, host: hostname(), startTime: processStartTime(process.pid), started: new Date().toISOString(), purpose,
    };
    // The lock's content is written to a private file first and then linked into place, so a reader
    // never sees a half-written lock.
    const draft = temporaryPath(path);
    try {
      writeFileSync(draft, JSON.stringify(holder) + '\n');
    } catch (error) {
      throw writeError(directory, error as NodeJS.ErrnoException);
    }
    try {
      for (let attempt = 0; attempt < 5; attempt++) {
        try {
          linkSync(draft, path);
          return new DirectoryLock(path, holder);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw writeError(directory, error as NodeJS.ErrnoException);
        }
        const current = readHolder(path);
        if (current && holderAlive(current)) {
          throw new RunError(`${directory} is in use by ${describeHolder(current)}; wait for it to finish or stop it` +
            (current.host === hostname() ? '' : ` (if that process is gone, remove ${path})`));
        }
        // Stale (its process is gone) or unreadable: move it aside under a name of our own, so that of
        // two processes taking over the same stale lock only one removes it.
        const aside = `${path}.stale.${process.pid}`;
        try {
          renameSync(path, aside);
        } catch {
          continue; // someone else moved it first: try again
        }
        const moved = readHolder(aside);
        if (moved && holderAlive(moved)) {
          // Between our read and our rename another process took the lock: give it back.
          try {
            linkSync(aside, path);
          } catch {
            // a third process holds it now; the live holder's verify() will notice the loss
          }
          rmSync(aside, { force: true });
          continue;
        }
        rmSync(aside, { force: true });
      }
      throw new RunError(`cannot lock ${directory}: ${path} keeps changing (several processes starting at once?)`);
    } finally {
      rmSync(draft, { force: true });
    }
  }

  /** Throws if the lock file no longer names this process (it was removed or taken over). */
  verify(): void {
    const current = readHolder(this.path);
    if (!current || current.pid !== this.holder.pid || current.host !== this.holder.host || current.started !== this.holder.started) {
      throw new RunError(`lost the lock ${this.path}${current ? ` to ${describeHolder(current)}` : ' (the file was removed)'}; stopping so that two processes do not write the same run`);
    }
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    const current = readHolder(this.path);
    if (current && current.pid === this.holder.pid && current.host === this.holder.host && current.started === this.holder.started && existsSync(this.path)) {
      rmSync(this.path, { force: true });
    }
  }
}
