"""The PyTorch side of `npm run bench`: one measured configuration per process (so that its peak
resident memory is its own), on the project's one PyTorch reference, reference/torch_models.py
(the same models, MaskSub step and weight-decay groups the tests check our code against).

Usage: python3 bench/torch_bench.py '<json job>'   (bench/run.ts builds the job)
Prints one JSON object on the last line of stdout.

What is here is only the measurement: the timing loop, resident memory, call counting, and the
facts about this process (threads, BLAS and malloc libraries mapped, CPU time). The step is
reference.method_step (the official MaskSub step: backward of the main term, then the sub
forward and its backward) between zero_grad(set_to_none=True) and AdamW's step.
"""
import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'reference'))

import torch  # noqa: E402
import torch_models as reference  # noqa: E402


# ---------------------------------------------------------------- facts about this process
def proc_status_kib(field):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    return None


def mapped_libraries(keys):
    """The mapped shared libraries whose file name contains one of `keys`."""
    found = []
    try:
        with open('/proc/self/maps') as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6:
                    base = os.path.basename(parts[5]).lower()
                    if any(key in base for key in keys) and parts[5] not in found:
                        found.append(parts[5])
    except OSError:
        pass
    return sorted(found)


def process_facts():
    """What every result carries (bench/common.ts ProcessFacts), read at the end."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    allocators = [path for path in mapped_libraries(('jemalloc', 'tcmalloc')) if '.so' in path]
    return {
        'cpuSeconds': usage.ru_utime + usage.ru_stime,
        'malloc': allocators[0] if allocators else 'glibc',
        'peakRssKiB': proc_status_kib('VmHWM'),
        'ompWaitPolicy': os.environ.get('OMP_WAIT_POLICY'),
    }


def gpu_used_mib():
    """This process's GPU memory as nvidia-smi reports it (CUDA context + caching allocator)."""
    import subprocess
    try:
        out = subprocess.run(['nvidia-smi', '--query-compute-apps=pid,used_memory', '--format=csv,noheader,nounits'],
                             capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(',')]
        if len(parts) == 2 and parts[0] == str(os.getpid()):
            try:
                return float(parts[1])
            except ValueError:
                return None
    return None


def adamw_foreach(optimizer):
    """Whether AdamW runs its multi-tensor (foreach) path: None means the version's default."""
    chosen = optimizer.defaults.get('foreach')
    if chosen is not None:
        return bool(chosen)
    import importlib
    default = getattr(importlib.import_module('torch.optim.optimizer'), '_default_to_fused_or_foreach', None)
    if default is None:
        return False  # torch 1.x: single-tensor unless asked
    params = [p for group in optimizer.param_groups for p in group['params']]
    try:
        return bool(default(params, differentiable=False, use_fused=False)[1])
    except TypeError:
        return None


def median(values):
    s = sorted(values)
    n = len(s)
    if n == 0:
        return None
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


class CountCalls(torch.overrides.TorchFunctionMode):
    """Counts calls from Python into torch (functions and Tensor methods), the host->engine
    crossings that correspond to the TypeScript side's native calls."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


# ---------------------------------------------------------------- jobs
def run_opcall(job):
    """Cost of one tiny op call: x.add(y) on 1-element tensors, the result freed each time."""
    torch.set_num_threads(int(job['threads']))
    x = torch.ones(1)
    y = torch.ones(1)
    iterations = int(job['iterations'])

    def loop(n):
        t0 = time.perf_counter()
        for _ in range(n):
            x.add(y)
        return time.perf_counter() - t0

    loop(min(2000, iterations))
    samples = [loop(iterations) * 1e6 / iterations for _ in range(5)]
    return {'microsecondsPerCall': median(samples), 'iterations': iterations}


def build(spec):
    """The model from our registry's config (bench/common.ts ModelSpec.config)."""
    return reference.build_model({'family': spec['family'], **spec['config']})


def run_step(job):
    started = time.perf_counter()
    torch.set_num_threads(int(job['threads']))
    torch.manual_seed(int(job.get('seed', 0)))
    device = torch.device(job.get('device', 'cpu'))
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    rss_after_import = proc_status_kib('VmRSS')
    spec = job['model']
    model = build(spec).to(device)
    model.train()
    batch = int(job['batchSize'])
    images = torch.randn(batch, spec['inChannels'], spec['imageSize'], spec['imageSize'], device=device)
    labels = torch.randint(0, spec['numClasses'], (batch,), device=device)
    weight_decay = float(job.get('weightDecay', 0.05))
    optimizer = torch.optim.AdamW(reference.param_groups(model, weight_decay), lr=float(job.get('lr', 1e-3)), weight_decay=weight_decay)
    method = job['method']
    ratio = float(job.get('ratio', 0.5))
    sub_weight = float(job.get('subWeight', 0.5))
    smoothing = float(job.get('labelSmoothing', 0.1))

    def step():
        optimizer.zero_grad(set_to_none=True)
        result = reference.method_step(model, images, labels, method=method, ratio=ratio, sub_weight=sub_weight,
                                       label_smoothing=smoothing)
        optimizer.step()
        sync()
        return result['loss']

    for _ in range(int(job['warmup'])):
        step()
    # Timed by duration (at least job['seconds'] and job['minSteps'] steps), as bench/child.ts.
    seconds, min_steps, max_steps = float(job['seconds']), int(job['minSteps']), job.get('maxSteps')
    times, losses = [], []
    timed_start = time.perf_counter()
    while max_steps is None or len(times) < int(max_steps):
        t0 = time.perf_counter()
        losses.append(step())
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - timed_start >= seconds and len(times) >= min_steps:
            break

    calls = None
    if job.get('countCalls'):
        counter = CountCalls()
        with counter:
            step()
        calls = counter.count

    result = {
        'impl': job['impl'],
        'stepSeconds': times,
        'medianStepSeconds': median(times),
        'finalLoss': losses[-1] if losses else None,
        'callsPerStep': calls,
        'rssAfterImportKiB': rss_after_import,
        'numParameters': sum(p.numel() for p in model.parameters()),
        'threads': torch.get_num_threads(),
        'blas': mapped_libraries(('blas', 'lapack', 'mkl')),
        'torchVersion': torch.__version__,
        'cuda': torch.version.cuda,
        'adamwForeach': adamw_foreach(optimizer),
        'pid': os.getpid(),
        'wallSeconds': time.perf_counter() - started,
    }
    if device.type == 'cuda':
        result['gpuPeakAllocatedMiB'] = torch.cuda.max_memory_allocated() / 2 ** 20
        result['gpuUsedMiB'] = gpu_used_mib()
        result['gpuName'] = torch.cuda.get_device_name(device)
    return result


def main():
    job = json.loads(sys.argv[1])
    kind = job.get('kind')
    if kind == 'opcall':
        result = run_opcall(job)
    elif kind == 'step':
        result = run_step(job)
    else:
        raise SystemExit(f'torch_bench.py: unknown job kind {kind!r} (step, opcall)')
    result.update(process_facts())
    print(json.dumps(result))


if __name__ == '__main__':
    main()
