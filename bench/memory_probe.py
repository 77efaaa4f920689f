"""The PyTorch side of bench/memory-probe.ts: resident memory at the end of each fmnist-vit
baseline training step (batch 128) and where it is at the end (smaps).
Usage: OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/memory_probe.py [steps]"""
import collections
import os
import re
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'reference'))
import torch_models as reference  # noqa: E402


def kib(field):
    for line in open('/proc/self/status'):
        if line.startswith(field + ':'):
            return int(line.split()[1])
    return 0


steps = int(sys.argv[1]) if len(sys.argv) > 1 else 8
torch.set_num_threads(int(os.environ.get('MASKSUB_THREADS', 2)))
torch.manual_seed(0)
# vit_fmnist's shape (src/models/registry.ts), built by the project's PyTorch reference
model = reference.build_model(dict(family='vit', imageSize=28, patchSize=4, inChannels=1, numClasses=10, width=192, depth=6, heads=3))
optimizer = torch.optim.AdamW(reference.param_groups(model, 0.05), lr=1e-3)
images = torch.randn(128, 1, 28, 28)
labels = torch.randint(0, 10, (128,))
for step in range(steps):
    started = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(model(images), labels, label_smoothing=0.1).backward()
    optimizer.step()
    print(f'step {step}: {time.perf_counter() - started:.3f} s, rss {kib("VmRSS") // 1024} MiB, peak {kib("VmHWM") // 1024} MiB')
totals = collections.Counter()
region = ''
for line in open('/proc/self/smaps'):
    header = re.match(r'^[0-9a-f]+-[0-9a-f]+\s+\S+\s+\S+\s+\S+\s+\S+\s*(.*)$', line)
    if header:
        region = 'files' if header.group(1).startswith('/') else (header.group(1) or '[anon]')
        continue
    rss = re.match(r'^Rss:\s+(\d+) kB', line)
    if rss:
        totals[region] += int(rss.group(1))
for name, size in totals.most_common(3):
    print(f'resident in {name}: {size // 1024} MiB')
