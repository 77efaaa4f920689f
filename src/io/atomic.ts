// Atomic files: a reader sees either the old file or the whole new one, also when the disk fills
// up or the process is killed mid-write. The one place that knows the temporary-file naming
// (.NAME.PID.tmp beside the target), so stale temporaries can be found and removed elsewhere
// without re-encoding it.
import { closeSync, existsSync, fstatSync, fsyncSync, openSync, readdirSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** A write that could not complete; the previous file at `path` (if any) is untouched. */
export class FileWriteError extends Error {
  constructor(readonly path: string, readonly code: string | undefined, message: string) {
    super(message);
    this.name = 'FileWriteError';
  }
}

/** Writes `length` bytes from `buffer[offset..]` at the file position; returns the count written. */
export type WriteFunction = (fd: number, buffer: Uint8Array, offset: number, length: number) => number;

export interface AtomicWriteOptions {
  /** Runs once the temporary file is complete and synced, before the rename (a test hook). */
  beforeRename?: () => void;
  /** Replaces fs.writeSync (tests inject short writes, as a full disk gives them). */
  write?: WriteFunction;
}

const defaultWrite: WriteFunction = (fd, buffer, offset, length) => writeSync(fd, buffer, offset, length);

/** The temporary file writeFileAtomic uses for `path` in this process. */
export function temporaryPath(path: string, pid = process.pid): string {
  return join(dirname(path), `.${basename(path)}.${pid}.tmp`);
}

/** The target name and writer pid of a temporary file name, or null for any other name. */
export function parseTemporaryName(entry: string): { target: string; pid: number } | null {
  const match = /^\.(.+)\.(\d+)\.tmp$/.exec(entry);
  return match ? { target: match[1], pid: Number(match[2]) } : null;
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Temporary files in `directory` whose writer process is gone (a SIGKILL between write and rename
 * leaves a whole checkpoint-sized one), restricted to the targets in `targets` when given.
 */
export function staleTemporaries(directory: string, targets?: readonly string[]): string[] {
  if (!existsSync(directory)) return [];
  return readdirSync(directory).filter((entry) => {
    const parsed = parseTemporaryName(entry);
    if (!parsed || (targets && !targets.includes(parsed.target))) return false;
    return parsed.pid !== process.pid && !processAlive(parsed.pid);
  });
}

function describeFailure(path: string, error: NodeJS.ErrnoException): FileWriteError {
  const code = error.code;
  const what = code === 'ENOSPC' ? 'disk full' : code === 'EDQUOT' ? 'disk quota exceeded' : code === 'EROFS' ? 'read-only file system' : code === 'EACCES' || code === 'EPERM' ? 'permission denied' : error.message;
  return new FileWriteError(path, code, `cannot write ${path}: ${what}; the previous version of the file (if any) is unchanged`);
}

/**
 * Writes bytes to path atomically: every byte into a temporary file beside it (a short write is
 * retried until the count is reached; a write that makes no progress is a full disk), the size
 * checked, fsync, rename over the target, fsync of the directory. Any failure removes the
 * temporary file and leaves the old target as it was.
 */
export function writeFileAtomic(path: string, data: Uint8Array | string, options: AtomicWriteOptions = {}): void {
  const bytes = typeof data === 'string' ? Buffer.from(data) : data;
  const write = options.write ?? defaultWrite;
  const temporary = temporaryPath(path);
  let fd: number;
  try {
    fd = openSync(temporary, 'w');
  } catch (error) {
    throw describeFailure(path, error as NodeJS.ErrnoException);
  }
  try {
    let written = 0;
    while (written < bytes.byteLength) {
      const count = write(fd, bytes, written, bytes.byteLength - written);
      // Node reports ENOSPC as a short (or zero) count once part of a write went through; a write
      // that makes no progress at all is how a full disk shows.
      if (!(count > 0)) throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
      written += count;
    }
    const size = fstatSync(fd).size;
    if (size !== bytes.byteLength) {
      throw Object.assign(new Error(`wrote ${bytes.byteLength} bytes but the file holds ${size}`), { code: 'EIO' });
    }
    fsyncSync(fd);
  } catch (error) {
    closeSync(fd);
    rmSync(temporary, { force: true });
    throw error instanceof FileWriteError ? error : describeFailure(path, error as NodeJS.ErrnoException);
  }
  closeSync(fd);
  try {
    options.beforeRename?.();
    renameSync(temporary, path);
  } catch (error) {
    rmSync(temporary, { force: true });
    throw error instanceof FileWriteError ? error : describeFailure(path, error as NodeJS.ErrnoException);
  }
  syncDirectory(dirname(path));
}

/** Makes a rename durable (the directory entry); not every file system allows it, which is fine. */
function syncDirectory(directory: string): void {
  let fd: number | null = null;
  try {
    fd = openSync(directory, 'r');
    fsyncSync(fd);
  } catch {
    // some file systems refuse fsync on a directory; the rename itself is still atomic
  } finally {
    if (fd !== null) closeSync(fd);
  }
}
