// The benchmark's view of the machine: which CPUs the children are pinned to, how busy those CPUs
// are with other people's work before and during each child (from /proc/stat), and the provenance
// a result file records (commit, dirty tree, CPU model, allocator libraries).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { cpus } from 'node:os';

/** Parses a CPU list as taskset and /proc write it ("0-3,6,8-9") into sorted CPU numbers. */
export function parseCpuList(text: string): number[] {
  const found = new Set<number>();
  for (const part of text.trim().split(',')) {
    const match = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!match) throw new Error(`not a CPU list: '${text}' (expected e.g. 0-3,6)`);
    const first = Number(match[1]);
    const last = match[2] === undefined ? first : Number(match[2]);
    if (last < first) throw new Error(`not a CPU list: '${text}' (range ${part} runs backwards)`);
    for (let cpu = first; cpu <= last; cpu++) found.add(cpu);
  }
  return [...found].sort((a, b) => a - b);
}

/** The CPUs this process may run on (its affinity mask), or null where /proc does not say. */
export function allowedCpus(): number[] | null {
  try {
    const line = readFileSync('/proc/self/status', 'utf8').split('\n').find((entry) => entry.startsWith('Cpus_allowed_list:'));
    return line ? parseCpuList(line.split(':')[1]) : null;
  } catch {
    return null;
  }
}

/** Cumulative CPU time of a set of CPUs, in clock ticks, split the way the busy figures need it. */
export interface CpuTimes {
  busy: number;
  idle: number;
  steal: number;
}

/**
 * Sums /proc/stat's per-CPU lines over `cpuSet`: busy = user + nice + system + irq + softirq
 * (guest time is already inside user), idle = idle + iowait, steal = time the hypervisor gave
 * to someone else. The text is a parameter so that the parsing can be tested.
 */
export function parseProcStat(text: string, cpuSet: readonly number[]): CpuTimes {
  const wanted = new Set(cpuSet);
  const total: CpuTimes = { busy: 0, idle: 0, steal: 0 };
  for (const line of text.split('\n')) {
    const match = /^cpu(\d+)\s+(.*)$/.exec(line);
    if (!match || !wanted.has(Number(match[1]))) continue;
    const [user, nice, system, idle, iowait, irq, softirq, steal] = match[2].trim().split(/\s+/).map(Number);
    total.busy += user + nice + system + (irq || 0) + (softirq || 0);
    total.idle += idle + (iowait || 0);
    total.steal += steal || 0;
  }
  return total;
}

export function readCpuTimes(cpuSet: readonly number[]): CpuTimes | null {
  try {
    return parseProcStat(readFileSync('/proc/stat', 'utf8'), cpuSet);
  } catch {
    return null;
  }
}

/** Clock ticks per second of /proc/stat (USER_HZ; 100 on Linux unless `getconf CLK_TCK` says otherwise). */
export function clockTicksPerSecond(): number {
  const result = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const ticks = Number(result.stdout?.trim());
  return result.status === 0 && ticks > 0 ? ticks : 100;
}

/** Cores' worth of busy and stolen time between two readings `seconds` apart. */
export function coresBusy(before: CpuTimes, after: CpuTimes, seconds: number, ticksPerSecond: number): { busy: number; steal: number } {
  const scale = 1 / (ticksPerSecond * Math.max(seconds, 1e-9));
  return { busy: (after.busy - before.busy) * scale, steal: (after.steal - before.steal) * scale };
}

/** Sleeps without spinning (the orchestrator must not add load of its own). */
export function sleepSeconds(seconds: number): void {
  if (seconds > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, seconds * 1000);
}

/** How busy the CPU set is right now: cores' worth of busy time over a short sample while we sleep. */
export function sampleBusyCores(cpuSet: readonly number[], seconds: number, ticksPerSecond: number): number | null {
  const before = readCpuTimes(cpuSet);
  const start = performance.now();
  sleepSeconds(seconds);
  const after = readCpuTimes(cpuSet);
  if (!before || !after) return null;
  return coresBusy(before, after, (performance.now() - start) / 1000, ticksPerSecond).busy;
}

/** user + system CPU seconds of another process (from /proc/PID/stat), or null once it is gone. */
export function processCpuSeconds(pid: number, ticksPerSecond: number): number | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis are fixed.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond;
  } catch {
    return null;
  }
}

export function cpuModel(): string {
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((entry) => entry.startsWith('model name'));
    if (line) return line.split(':')[1].trim();
  } catch {
    // not Linux
  }
  return cpus()[0]?.model ?? 'unknown';
}

/**
 * The commit the benchmark ran from and whether the work tree differed from it. Read-only:
 * `--no-optional-locks` keeps `git status` from refreshing the index, which would take
 * index.lock while other people commit in the same tree.
 */
export function gitState(root: string): { commit: string | null; dirty: boolean | null; dirtyFiles: string[] } {
  const head = spawnSync('git', ['rev-parse', 'HEAD'], { cwd: root, encoding: 'utf8' });
  const status = spawnSync('git', ['--no-optional-locks', 'status', '--porcelain', '--untracked-files=no'], { cwd: root, encoding: 'utf8' });
  // A copy without .git (the GPU payload) names its commit in MASKSUB_BENCH_COMMIT; its dirtiness is unknown.
  const commit = head.status === 0 ? head.stdout.trim() : process.env.MASKSUB_BENCH_COMMIT || null;
  if (head.status !== 0 || status.status !== 0) return { commit, dirty: null, dirtyFiles: [] };
  const files = status.stdout.split('\n').filter(Boolean).map((line) => line.slice(3));
  return { commit, dirty: files.length > 0, dirtyFiles: files.slice(0, 100) };
}

/** Where the LD_PRELOAD allocators live on Debian (libjemalloc2, libtcmalloc-minimal4). */
const ALLOCATOR_LIBRARIES: Record<'jemalloc' | 'tcmalloc', string[]> = {
  jemalloc: ['/usr/lib/x86_64-linux-gnu/libjemalloc.so.2', '/usr/lib/aarch64-linux-gnu/libjemalloc.so.2', '/usr/lib64/libjemalloc.so.2', '/usr/lib/libjemalloc.so.2'],
  tcmalloc: ['/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4', '/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4', '/usr/lib64/libtcmalloc_minimal.so.4'],
};

/** The path of an installed jemalloc / tcmalloc, or null. */
export function allocatorLibrary(name: 'jemalloc' | 'tcmalloc'): string | null {
  return ALLOCATOR_LIBRARIES[name].find((path) => existsSync(path)) ?? null;
}

/** The environment variables that change how the engine runs, as the children see them. */
export function engineEnvironment(environment: NodeJS.ProcessEnv): Record<string, string> {
  const relevant: Record<string, string> = {};
  for (const [key, value] of Object.entries(environment)) {
    if (value !== undefined && /^(OMP_|GOMP_|KMP_|MKL_|OPENBLAS_|MALLOC_|LD_PRELOAD$|MASKSUB_|TORCH_|ATEN_|DNNL_|CUDA_VISIBLE_DEVICES$)/.test(key)) relevant[key] = value;
  }
  return relevant;
}
