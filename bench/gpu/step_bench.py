"""The PyTorch side of bench/gpu/step-bench.ts: one training step configuration per process, on
reference/torch_models.py (the project's one PyTorch reference, the models our tests check ours
against), built from our registry's config so both sides train the same shape.

Usage: python3 bench/gpu/step_bench.py '<json job>'   (step-bench.ts builds the job)
Prints one JSON object on the last line of stdout.

One step = zero_grad(set_to_none=True) + reference.method_step (the official MaskSub step: main
forward, (1-w)*L1 backward, sub forward, w*L2 backward; the baseline has only the first part) +
AdamW.step() (torch's default implementation for the device: multi-tensor on CUDA), then a device
synchronisation. Mixed precision is torch's recipe: the forwards and backwards under
torch.autocast(device, bfloat16); channels_last is model.to(memory_format=torch.channels_last)
and an input batch in that format (PyTorch's guide for CNNs).
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'reference'))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

import torch  # noqa: E402
import torch_models as reference  # noqa: E402
from torch_bench import gpu_used_mib, median  # noqa: E402  (npm run bench's PyTorch side: the same nvidia-smi reading and median)


def main():
    job = json.loads(sys.argv[1])
    started = time.perf_counter()
    torch.manual_seed(int(job['seed']))
    if job.get('threads'):
        torch.set_num_threads(int(job['threads']))
    device = torch.device(job['device'])
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    spec = job['model']
    memory_format = torch.channels_last if job['channelsLast'] else torch.contiguous_format
    model = reference.build_model({'family': spec['family'], **spec['config']}).to(device)
    if job['channelsLast']:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    batch = int(job['batchSize'])
    images = torch.randn(batch, spec['inChannels'], spec['imageSize'], spec['imageSize'], device=device)
    images = images.contiguous(memory_format=memory_format)
    labels = torch.randint(0, spec['numClasses'], (batch,), device=device)
    weight_decay = float(job['weightDecay'])
    optimizer = torch.optim.AdamW(reference.param_groups(model, weight_decay), lr=float(job['lr']), weight_decay=weight_decay)
    amp = job['amp']

    def step():
        optimizer.zero_grad(set_to_none=True)
        if amp == 'bf16':
            with torch.autocast(device.type, dtype=torch.bfloat16):
                result = reference.method_step(model, images, labels, method=job['method'], ratio=float(job['ratio']),
                                               sub_weight=float(job['subWeight']), label_smoothing=float(job['labelSmoothing']))
        else:
            result = reference.method_step(model, images, labels, method=job['method'], ratio=float(job['ratio']),
                                           sub_weight=float(job['subWeight']), label_smoothing=float(job['labelSmoothing']))
        optimizer.step()
        sync()
        return result['loss']

    for _ in range(int(job['warmup'])):
        step()
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    times, loss = [], None
    timed_start = time.perf_counter()
    while len(times) < int(job['maxSteps']):
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - timed_start >= float(job['seconds']) and len(times) >= int(job['minSteps']):
            break
    result = {
        'impl': 'pytorch', 'stepSeconds': times, 'medianStepSeconds': median(times), 'finalLoss': loss,
        'numParameters': sum(p.numel() for p in model.parameters()), 'torchVersion': torch.__version__,
        'cuda': torch.version.cuda, 'wallSeconds': time.perf_counter() - started,
    }
    if device.type == 'cuda':
        result['gpuPeakAllocatedMiB'] = torch.cuda.max_memory_allocated(device) / 2 ** 20
        result['gpuUsedMiB'] = gpu_used_mib()
        result['gpuName'] = torch.cuda.get_device_name(device)
    print(json.dumps(result))


if __name__ == '__main__':
    main()
