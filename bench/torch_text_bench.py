"""The PyTorch side of bench/text.ts: one timed text-classifier configuration per process.

HF's BertForSequenceClassification written out with torch.nn (HF's module structure and names,
as test/bert-torch.test.ts's reference; no transformers package on the machine), the weights the
masksub side initialised (a safetensors file), the same token batch, and the MaskSub step as the
official code runs it: the main loss (CE, label smoothing 0.1) backpropagated, then the sub
forward on the ids with 15% of each row's text tokens replaced by [MASK] (never [PAD], [CLS],
[SEP]) and its soft-target CE against the main model's detached softmax, then AdamW.

Usage: /usr/bin/python3 bench/torch_text_bench.py '<json job>'; prints one JSON line.
"""
import json
import math
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'reference'))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torch_models as reference  # noqa: E402


class SelfAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.heads = c['heads']
        self.dim = c['hidden'] // self.heads
        self.query = nn.Linear(c['hidden'], c['hidden'])
        self.key = nn.Linear(c['hidden'], c['hidden'])
        self.value = nn.Linear(c['hidden'], c['hidden'])
        self.dropout = nn.Dropout(c['dropout'])

    def split(self, x):
        b, l, _ = x.shape
        return x.view(b, l, self.heads, self.dim).permute(0, 2, 1, 3)

    def forward(self, h, mask):
        q, k, v = self.split(self.query(h)), self.split(self.key(h)), self.split(self.value(h))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.dim) + mask
        return torch.matmul(self.dropout(scores.softmax(-1)), v).permute(0, 2, 1, 3).reshape(h.shape)


class ResidualOutput(nn.Module):
    def __init__(self, c, inner):
        super().__init__()
        self.dense = nn.Linear(inner, c['hidden'])
        self.LayerNorm = nn.LayerNorm(c['hidden'], eps=1e-12)
        self.dropout = nn.Dropout(c['dropout'])

    def forward(self, h, residual):
        return self.LayerNorm(self.dropout(self.dense(h)) + residual)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self = SelfAttention(c)
        self.output = ResidualOutput(c, c['hidden'])

    def forward(self, h, mask):
        return self.output(self.self(h, mask), h)


class Intermediate(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c['hidden'], c['intermediate'])

    def forward(self, h):
        return F.gelu(self.dense(h))


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.attention = Attention(c)
        self.intermediate = Intermediate(c)
        self.output = ResidualOutput(c, c['intermediate'])

    def forward(self, h, mask):
        a = self.attention(h, mask)
        return self.output(self.intermediate(a), a)


class Encoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layer = nn.ModuleList([Layer(c) for _ in range(c['layers'])])

    def forward(self, h, mask):
        for layer in self.layer:
            h = layer(h, mask)
        return h


class Embeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.word_embeddings = nn.Embedding(c['vocab'], c['hidden'], padding_idx=c['pad'])
        self.position_embeddings = nn.Embedding(c['positions'], c['hidden'])
        self.token_type_embeddings = nn.Embedding(2, c['hidden'])
        self.LayerNorm = nn.LayerNorm(c['hidden'], eps=1e-12)
        self.dropout = nn.Dropout(c['dropout'])

    def forward(self, ids, types):
        positions = torch.arange(ids.shape[1]).unsqueeze(0)
        return self.dropout(self.LayerNorm(self.word_embeddings(ids) + self.token_type_embeddings(types) + self.position_embeddings(positions)))


class Pooler(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c['hidden'], c['hidden'])

    def forward(self, h):
        return torch.tanh(self.dense(h[:, 0]))


class BertModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embeddings = Embeddings(c)
        self.encoder = Encoder(c)
        self.pooler = Pooler(c)

    def forward(self, ids, types, attention):
        h = self.embeddings(ids, types)
        mask = (1.0 - attention[:, None, None, :].to(h.dtype)) * torch.finfo(h.dtype).min
        return self.pooler(self.encoder(h, mask))


class BertForSequenceClassification(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.bert = BertModel(c)
        self.dropout = nn.Dropout(c['dropout'])
        self.classifier = nn.Linear(c['hidden'], c['labels'])

    def forward(self, ids, types, attention):
        return self.classifier(self.dropout(self.bert(ids, types, attention)))

    def no_weight_decay(self):
        return []


def mask_ids(ids, ratio, mask_id, keep_ids):
    """The masksub rule: per row, m - int(m * (1 - ratio)) of its m text tokens become [MASK]."""
    candidate = torch.ones_like(ids, dtype=torch.bool)
    for keep in keep_ids:
        candidate &= ids != keep
    count = candidate.sum(1, dtype=torch.float64)
    masked = count - torch.floor(count * (1 - ratio))
    noise = torch.rand(ids.shape).masked_fill(~candidate, 2)
    chosen = noise.argsort(1).argsort(1) < masked.unsqueeze(1)
    return ids.masked_fill(chosen & candidate, mask_id)


def main():
    job = json.loads(sys.argv[1])
    torch.set_num_threads(job['threads'])
    torch.manual_seed(0)
    c = job['config']
    model = BertForSequenceClassification(c)
    weights = reference.load_safetensors(job['weights'])
    model.load_state_dict(weights)
    batch = reference.load_safetensors(job['batch'])
    tokens, labels = batch['tokens'].long(), batch['labels'].long()
    ids, types, attention = tokens[:, 0], tokens[:, 1], tokens[:, 2]
    groups = reference.param_groups(model, 0.05)
    optimizer = torch.optim.AdamW(groups, lr=1e-4)
    model.train()
    special = job['special']

    def step():
        optimizer.zero_grad(set_to_none=True)
        logits = model(ids, types, attention)
        loss = F.cross_entropy(logits, labels, label_smoothing=0.1)
        weight = 0.5 if job['method'] == 'masksub' else 1.0
        (loss * weight).backward()
        if job['method'] == 'masksub':
            masked = mask_ids(ids, job['ratio'], special['mask'], [special['pad'], special['cls'], special['sep']])
            sub = model(masked, types, attention)
            sub_loss = F.cross_entropy(sub, logits.detach().softmax(-1))
            (sub_loss * 0.5).backward()
        optimizer.step()

    for _ in range(job['warmup']):
        step()
    times = []
    started = time.perf_counter()
    while len(times) < job['minSteps'] or time.perf_counter() - started < job['seconds']:
        begin = time.perf_counter()
        step()
        times.append(time.perf_counter() - begin)
    print(json.dumps({'impl': 'pytorch', 'method': job['method'], 'steps': len(times), 'median_s': statistics.median(times), 'threads': torch.get_num_threads(), 'torch': torch.__version__}))


if __name__ == '__main__':
    main()
