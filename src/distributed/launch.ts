// `masksub train --nproc N`: starts N worker processes of this machine as torchrun
// --standalone --nproc-per-node N would, each the same command with RANK, WORLD_SIZE, LOCAL_RANK,
// LOCAL_WORLD_SIZE, MASTER_ADDR=127.0.0.1 and a free MASTER_PORT in its environment, and watches
// them: when one fails, the others are stopped (SIGTERM, then SIGKILL after a grace period) and
// the launcher exits with the first failure's code, naming the rank. SIGINT / SIGTERM sent to the
// launcher are passed to every worker, which stop after their current step. The workers run in
// their own process group, so a terminal's Ctrl-C reaches them once, through the launcher, and
// each holds an IPC channel to it: when the launcher dies, even by SIGKILL, the channel closes
// and the workers stop (WORKER_ENV marks them; the CLI listens).
import { type ChildProcess, spawn } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { createServer } from 'node:net';
import { createInterface } from 'node:readline';

/** Set in each worker's environment; the CLI then stops the worker when the launcher goes away. */
export const WORKER_ENV = 'MASKSUB_LAUNCHED_WORKER';

export interface LaunchOptions {
  /** Worker processes to start (>= 2). */
  nproc: number;
  /** The worker's command line after the Node binary: script and arguments (without --nproc). */
  args: readonly string[];
  /** Node's own flags for the workers (e.g. --import tsx when running from source). */
  execArgv?: readonly string[];
  env?: NodeJS.ProcessEnv;
  /** Where the launcher's own lines go. */
  log?: (line: string) => void;
  /** Seconds between SIGTERM and SIGKILL for the workers left when one failed. */
  graceSeconds?: number;
}

/** A free TCP port on the loopback interface for rank 0's store (torchrun --standalone does the same). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address !== null ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

function describeExit(code: number | null, signal: NodeJS.Signals | null): string {
  return signal !== null ? `was killed by ${signal}` : `exited with code ${code}`;
}

/**
 * Runs the job to its end and returns the exit code for the launcher: 0 when every worker
 * succeeded, else the first failed worker's code (128 + signal number for a killed one).
 */
export async function launchLocal(options: LaunchOptions): Promise<number> {
  const { nproc } = options;
  if (!Number.isInteger(nproc) || nproc < 2) throw new RangeError(`--nproc must be an integer >= 2, got ${nproc}`);
  const log = options.log ?? ((line: string) => process.stderr.write(line + '\n'));
  const port = await freePort();
  const baseEnv = options.env ?? process.env;
  // Each worker gets its share of the cores unless the user chose (torchrun sets OMP_NUM_THREADS=1).
  const threads = String(Math.max(1, Math.floor(availableParallelism() / nproc)));
  const workers: ChildProcess[] = [];
  const exits: Promise<{ rank: number; code: number | null; signal: NodeJS.Signals | null }>[] = [];
  for (let rank = 0; rank < nproc; rank++) {
    const env: NodeJS.ProcessEnv = {
      ...baseEnv,
      RANK: String(rank), WORLD_SIZE: String(nproc), LOCAL_RANK: String(rank), LOCAL_WORLD_SIZE: String(nproc),
      MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port),
      MASKSUB_THREADS: baseEnv.MASKSUB_THREADS ?? threads,
      [WORKER_ENV]: '1',
    };
    const child = spawn(process.execPath, [...(options.execArgv ?? process.execArgv), ...options.args], {
      env, detached: true, stdio: ['ignore', rank === 0 ? 'inherit' : 'pipe', rank === 0 ? 'inherit' : 'pipe', 'ipc'],
    });
    // The channel only tells the worker that the launcher is alive; it must not keep us running.
    child.channel?.unref();
    // Rank 0 speaks for the job; the others' lines (errors, mostly) carry their rank.
    for (const stream of [child.stdout, child.stderr]) {
      if (stream) createInterface({ input: stream }).on('line', (line) => log(`[rank ${rank}] ${line}`));
    }
    workers.push(child);
    exits.push(new Promise((resolve) => {
      child.on('error', (error) => {
        log(`masksub: rank ${rank} could not start: ${error.message}`);
        resolve({ rank, code: 1, signal: null });
      });
      child.on('exit', (code, signal) => resolve({ rank, code, signal }));
    }));
  }
  const alive = new Set(workers);
  workers.forEach((child) => child.on('exit', () => alive.delete(child)));
  const forward = (signal: NodeJS.Signals): void => {
    for (const child of alive) child.kill(signal);
  };
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  let firstFailure: { rank: number; code: number | null; signal: NodeJS.Signals | null } | null = null;
  let killTimer: NodeJS.Timeout | null = null;
  try {
    const pending = new Map(exits.map((exit, rank) => [rank, exit]));
    while (pending.size > 0) {
      const result = await Promise.race(pending.values());
      pending.delete(result.rank);
      if ((result.code !== 0 || result.signal !== null) && firstFailure === null) {
        firstFailure = result;
        if (alive.size > 0) {
          log(`masksub: rank ${result.rank} ${describeExit(result.code, result.signal)}; stopping the other ${alive.size} rank(s)`);
          for (const child of alive) child.kill('SIGTERM');
          killTimer = setTimeout(() => {
            for (const child of alive) child.kill('SIGKILL');
          }, (options.graceSeconds ?? 30) * 1000);
        }
      }
    }
  } finally {
    if (killTimer) clearTimeout(killTimer);
    process.off('SIGINT', forward);
    process.off('SIGTERM', forward);
  }
  if (firstFailure === null) return 0;
  if (firstFailure.signal !== null) {
    const numbers: Partial<Record<NodeJS.Signals, number>> = { SIGINT: 2, SIGKILL: 9, SIGTERM: 15, SIGSEGV: 11, SIGABRT: 6 };
    return 128 + (numbers[firstFailure.signal] ?? 1);
  }
  return firstFailure.code ?? 1;
}
