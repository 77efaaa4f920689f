// BERT (src/models/bert.ts) against a PyTorch BERT written out in this test's Python with Hugging
// Face's BertModel / BertForSequenceClassification structure and names (transformers is not
// installed here): the state dict keys match, and on the same weights and a padded batch the
// hidden states, logits and every parameter gradient agree. Then the MaskSub step on bert_tiny with
// padded batches: finite losses, the sub-model's ids masked only on text tokens ([PAD], [CLS],
// [SEP] never), and a flat live tensor count; and the masking rule with keepIds by itself.
//
// PyTorch runs the same libtorch kernels as our addon, so this checks names, shapes, the padding
// mask and the composition of ops (post-LN order, erf GELU, pooler, head), not the kernels.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { getNumThreads, liveTensors, manualSeed, noGrad, randn, setNumThreads, type Tensor, tensor, tidy } from '../src/index.js';
import * as F from '../src/nn/functional.js';
import { BertForSequenceClassification, bertConfig, bertModelNames, createBert } from '../src/models/index.js';
import { inputMasker, randomIdMask, step } from '../src/masksub/index.js';
import { Generator } from '../src/tensor/tensor.js';
import { relativeError, runTorch } from './helpers/torch.js';

// One thread here as in runTorch's PyTorch: reductions then split the same way on both sides.
const threads = getNumThreads();
setNumThreads(1);
after(() => setNumThreads(threads));

const flat = (t: Tensor): number[] => Array.from(t.toTypedArray() as ArrayLike<number | bigint>, Number);

// Special ids of the small test vocabulary (as our trained tokenizers order them).
const PAD = 0;
const CLS = 2;
const SEP = 3;
const MASK = 4;
const VOCAB = 40;

/** A padded batch: [CLS] tokens [SEP] (row 0 a pair with token types), then [PAD]s; lengths 12, 7, 4. */
function paddedBatch(): { ids: Tensor; types: Tensor; attention: Tensor; rows: number[][] } {
  const rows = [
    [CLS, 11, 12, 13, 14, SEP, 21, 22, 23, 24, 25, SEP],
    [CLS, 7, 8, 9, 10, 30, SEP, PAD, PAD, PAD, PAD, PAD],
    [CLS, 5, 39, SEP, PAD, PAD, PAD, PAD, PAD, PAD, PAD, PAD],
  ];
  const types = [
    [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1],
    new Array<number>(12).fill(0),
    new Array<number>(12).fill(0),
  ];
  const attention = rows.map((row) => row.map((id) => (id === PAD ? 0 : 1)));
  return {
    ids: tensor(rows.flat(), { dtype: 'int64', shape: [3, 12] }),
    types: tensor(types.flat(), { dtype: 'int64', shape: [3, 12] }),
    attention: tensor(attention.flat(), { dtype: 'int64', shape: [3, 12] }),
    rows,
  };
}

// HF's BERT modules, written out (our own code, HF's structure and names).
const BERT_PY = `
import torch.nn as nn
class SelfAttention(nn.Module):
    def __init__(s, c):
        super().__init__()
        s.heads = c['numAttentionHeads']; s.dim = c['hiddenSize'] // s.heads
        s.query = nn.Linear(c['hiddenSize'], c['hiddenSize']); s.key = nn.Linear(c['hiddenSize'], c['hiddenSize']); s.value = nn.Linear(c['hiddenSize'], c['hiddenSize'])
        s.dropout = nn.Dropout(c['attentionProbsDropoutProb'])
    def split(s, x):
        b, l, _ = x.shape
        return x.view(b, l, s.heads, s.dim).permute(0, 2, 1, 3)
    def forward(s, h, mask):
        q, k, v = s.split(s.query(h)), s.split(s.key(h)), s.split(s.value(h))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(s.dim) + mask
        ctx = torch.matmul(s.dropout(scores.softmax(-1)), v).permute(0, 2, 1, 3).contiguous()
        return ctx.view(h.shape)
class ResidualOutput(nn.Module):
    def __init__(s, c, inner):
        super().__init__()
        s.dense = nn.Linear(inner, c['hiddenSize']); s.LayerNorm = nn.LayerNorm(c['hiddenSize'], eps=c['layerNormEps']); s.dropout = nn.Dropout(c['hiddenDropoutProb'])
    def forward(s, h, residual):
        return s.LayerNorm(s.dropout(s.dense(h)) + residual)
class Attention(nn.Module):
    def __init__(s, c):
        super().__init__()
        s.self = SelfAttention(c); s.output = ResidualOutput(c, c['hiddenSize'])
    def forward(s, h, mask):
        return s.output(s.self(h, mask), h)
class Intermediate(nn.Module):
    def __init__(s, c):
        super().__init__()
        s.dense = nn.Linear(c['hiddenSize'], c['intermediateSize'])
    def forward(s, h):
        return F.gelu(s.dense(h))
class Layer(nn.Module):
    def __init__(s, c):
        super().__init__()
        s.attention = Attention(c); s.intermediate = Intermediate(c); s.output = ResidualOutput(c, c['intermediateSize'])
    def forward(s, h, mask):
        a = s.attention(h, mask)
        return s.output(s.intermediate(a), a)
class Encoder(nn.Module):
    def __init__(s, c):
        super().__init__()
        s.layer = nn.ModuleList([Layer(c) for _ in range(c['numHiddenLayers'])])
    def forward(s, h, mask):
        for layer in s.layer: h = layer(h, mask)
        return h
class Embeddings(nn.Module):
    def __init__(s, c):
        super().__init__()
        s.word_embeddings = nn.Embedding(c['vocabSize'], c['hiddenSize'], padding_idx=c['padTokenId'])
        s.position_embeddings = nn.Embedding(c['maxPositionEmbeddings'], c['hiddenSize'])
        s.token_type_embeddings = nn.Embedding(c['typeVocabSize'], c['hiddenSize'])
        s.LayerNorm = nn.LayerNorm(c['hiddenSize'], eps=c['layerNormEps']); s.dropout = nn.Dropout(c['hiddenDropoutProb'])
    def forward(s, ids, types):
        positions = torch.arange(ids.shape[1]).unsqueeze(0)
        return s.dropout(s.LayerNorm(s.word_embeddings(ids) + s.token_type_embeddings(types) + s.position_embeddings(positions)))
class Pooler(nn.Module):
    def __init__(s, c):
        super().__init__()
        s.dense = nn.Linear(c['hiddenSize'], c['hiddenSize'])
    def forward(s, h):
        return torch.tanh(s.dense(h[:, 0]))
class BertModel(nn.Module):
    def __init__(s, c):
        super().__init__()
        s.embeddings = Embeddings(c); s.encoder = Encoder(c); s.pooler = Pooler(c)
    def forward(s, ids, types, attention):
        h = s.embeddings(ids, types)
        mask = (1.0 - attention[:, None, None, :].to(h.dtype)) * torch.finfo(h.dtype).min
        h = s.encoder(h, mask)
        return h, s.pooler(h)
class BertForSequenceClassification(nn.Module):
    def __init__(s, c):
        super().__init__()
        s.bert = BertModel(c)
        s.dropout = nn.Dropout(c['classifierDropout'] if c['classifierDropout'] is not None else c['hiddenDropoutProb'])
        s.classifier = nn.Linear(c['hiddenSize'], c['numLabels'])
    def forward(s, ids, types, attention):
        h, pooled = s.bert(ids, types, attention)
        return h, s.classifier(s.dropout(pooled))
`;

test('BERT: registry names, and state dict keys, hidden states, logits and gradients agree with a PyTorch BERT on a padded batch', () => {
  assert.deepEqual(bertModelNames().slice(0, 2), ['bert_tiny', 'bert_mini']);
  const tiny = bertConfig('bert_tiny');
  assert.deepEqual([tiny.numHiddenLayers, tiny.hiddenSize, tiny.numAttentionHeads, tiny.intermediateSize], [2, 128, 2, 512]);
  tidy(() => {
    manualSeed(7);
    const config = bertConfig('bert_tiny', { vocabSize: VOCAB, maxPositionEmbeddings: 16, numLabels: 3, padTokenId: PAD });
    const model = new BertForSequenceClassification(config);
    // Non-trivial LayerNorms and biases (they start at 1 and 0).
    noGrad(() => { for (const parameter of model.parameters()) parameter.add_(randn(parameter.shape).mul(0.05)); });
    model.eval();
    const { ids, types, attention } = paddedBatch();
    const labels = tensor([2, 0, 1], { dtype: 'int64' });

    const named = model.namedParameters();
    const { lastHiddenState } = model.bert.forwardAll(ids, { attentionMask: attention, tokenTypeIds: types });
    const logits = model.forward(ids, { attentionMask: attention, tokenTypeIds: types });
    // The mask read from the ids ([PAD] = padding) is the given one.
    assert.deepEqual(flat(model.forward(ids, { tokenTypeIds: types })), flat(logits), 'attention mask read from [PAD] ids = the given one');
    F.crossEntropy(logits, labels).backward();

    const inputs: Record<string, Tensor> = { ids, types, attention, labels };
    for (const [name, parameter] of named) inputs[`p.${name}`] = parameter;
    const torchOut = runTorch(`${BERT_PY}
c = json.loads(${JSON.stringify(JSON.stringify(config))})
model = BertForSequenceClassification(c)
sd = model.state_dict()
names = sorted(k[2:] for k in inp if k.startswith('p.'))
assert names == sorted(sd.keys()), (names, sorted(sd.keys()))
model.load_state_dict({k[2:]: v for k, v in inp.items() if k.startswith('p.')})
model.eval()
h, logits = model(inp['ids'], inp['types'], inp['attention'])
F.cross_entropy(logits, inp['labels']).backward()
out['hidden'] = h
out['logits'] = logits
for name, p in model.named_parameters():
    out['g.' + name] = p.grad
`, inputs);

    const hiddenError = relativeError(lastHiddenState, torchOut.hidden);
    const logitError = relativeError(logits, torchOut.logits);
    let gradientError = 0;
    for (const [name, parameter] of named) {
      assert.ok(parameter.grad, `${name} has a gradient`);
      assert.ok(torchOut[`g.${name}`], `PyTorch has a gradient for ${name}`);
      gradientError = Math.max(gradientError, relativeError(parameter.grad, torchOut[`g.${name}`]));
    }
    console.log(`BERT vs PyTorch: hidden ${hiddenError.toExponential(2)}, logits ${logitError.toExponential(2)}, gradients (worst parameter) ${gradientError.toExponential(2)}`);
    assert.ok(hiddenError < 1e-5, `hidden states within 1e-5 relative (${hiddenError})`);
    assert.ok(logitError < 1e-5, `logits within 1e-5 relative (${logitError})`);
    assert.ok(gradientError < 1e-4, `gradients within 1e-4 relative (${gradientError})`);
    // HF's padding_idx: the [PAD] embedding row gets no gradient.
    const padGradient = flat(model.bert.embeddings.wordEmbeddings.weight.grad!.select(0, PAD));
    assert.ok(padGradient.every((value) => value === 0), '[PAD] embedding row has a zero gradient');
    model.dispose();
  });
});

test('BERT: a padded sentence gets the logits of the same sentence unpadded', () => {
  tidy(() => {
    manualSeed(3);
    const model = createBert('bert_tiny', { vocabSize: VOCAB, maxPositionEmbeddings: 16, numLabels: 2 }).eval();
    const { ids, rows } = paddedBatch();
    const padded = model.forward(ids);
    const short = model.forward(tensor(rows[2].slice(0, 4), { dtype: 'int64', shape: [1, 4] }));
    const error = relativeError(padded.slice(0, 2, 3), short);
    assert.ok(error < 1e-5, `padding changes nothing (${error})`);
    model.dispose();
  });
});

test('randomIdMask with keepIds: kept ids never masked, m - int(m(1 - r)) of each row\'s m candidates masked', () => {
  tidy(() => {
    const { ids, rows } = paddedBatch();
    for (const ratio of [0.15, 0.5, 0.9]) {
      for (const keepFirst of [0, 2]) {
        const masked = randomIdMask(ids, ratio, MASK, { keepIds: [PAD, CLS, SEP], keepFirst, generator: new Generator(5) });
        const out = flat(masked);
        rows.forEach((row, r) => {
          const candidates = row.filter((id, position) => position >= keepFirst && ![PAD, CLS, SEP].includes(id)).length;
          let count = 0;
          row.forEach((id, position) => {
            const value = out[r * row.length + position];
            if (value === MASK) count++;
            if ([PAD, CLS, SEP].includes(id) || position < keepFirst) assert.equal(value, id, `kept at row ${r} position ${position}`);
            else assert.ok(value === id || value === MASK);
          });
          assert.equal(count, candidates - Math.trunc(candidates * (1 - ratio)), `ratio ${ratio} keepFirst ${keepFirst} row ${r}`);
        });
      }
    }
    // A fixed generator gives a fixed mask; without keepIds the rule is unchanged.
    assert.deepEqual(flat(randomIdMask(ids, 0.5, MASK, { keepIds: [PAD], generator: new Generator(9) })), flat(randomIdMask(ids, 0.5, MASK, { keepIds: [PAD], generator: new Generator(9) })));
    assert.throws(() => inputMasker(ids, { maskTokenId: MASK, keepIds: [0.5] }), /keepIds must be integer token ids/);
  });
});

test('MaskSub step on bert_tiny with padded batches: finite losses, [PAD]/[CLS]/[SEP] never masked, live tensors flat', () => {
  manualSeed(11);
  const model = createBert('bert_tiny', { vocabSize: VOCAB, maxPositionEmbeddings: 16, numLabels: 3 });
  model.train();
  const { ids, rows } = paddedBatch();
  const labels = tensor([2, 0, 1], { dtype: 'int64' });
  const seen: number[][] = [];
  const forward = model.forward.bind(model);
  model.forward = (input, inputs) => {
    seen.push(flat(input));
    return forward(input, inputs);
  };
  const options = { method: 'masksub' as const, ratio: 0.15, maskTokenId: MASK, keepIds: [PAD, CLS, SEP] };
  const first = step(model, ids, labels, options);
  assert.ok(first.finite && Number.isFinite(first.loss) && first.lossSub !== null && Number.isFinite(first.lossSub), `finite losses ${JSON.stringify(first)}`);
  assert.equal(seen.length, 2, 'a main and a sub forward');
  assert.deepEqual(seen[0], rows.flat(), 'the main model sees the ids as they are');
  const maskedIds = seen[1];
  let maskedCount = 0;
  rows.forEach((row, r) => {
    const candidates = row.filter((id) => ![PAD, CLS, SEP].includes(id)).length;
    let count = 0;
    row.forEach((id, position) => {
      const value = maskedIds[r * row.length + position];
      if ([PAD, CLS, SEP].includes(id)) assert.equal(value, id, `special id ${id} at row ${r} position ${position} kept`);
      if (value !== id) { assert.equal(value, MASK); count++; }
    });
    assert.equal(count, candidates - Math.trunc(candidates * 0.85), `row ${r}: the ratio of its own tokens`);
    maskedCount += count;
  });
  assert.ok(maskedCount > 0, 'something was masked');

  const before = liveTensors();
  for (let index = 0; index < 5; index++) {
    model.zeroGrad();
    const result = step(model, ids, labels, options);
    assert.ok(result.finite, `step ${index} finite`);
  }
  assert.equal(liveTensors(), before, 'live tensors flat over 5 steps');
  model.dispose();
});
