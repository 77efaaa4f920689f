// Text classification end to end: GLUE-style tables as they come (SST-2, MRPC, QNLI layouts, CoLA
// without a header, CSV quoting, errors naming file and line), the text settings' checks, the
// packed text batch through BertTextClassifier's own token masking, a bert_tiny MaskSub run on
// Debian's package descriptions that learns, and a text run resumed bit-identically (its saved
// tokenizer and label map reused), and text under `--nproc 2` and `--amp bf16`.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { labelClasses, readTable } from '../src/data/text/table.js';
import { learnWordPieces } from '../src/data/text/wordpiece.js';
import { TextTokenizer } from '../src/data/text/tokenizer.js';
import { readDebianPackages } from '../src/data/text/debian-packages.js';
import { BertTextClassifier, createModel, fitCheckpoint, layerAssignment } from '../src/models/index.js';
import { Generator, noGrad, tensor, tidy } from '../src/tensor/tensor.js';
import { liveTensors } from '../src/tensor/native.js';
import { buildConfig, buildSettings, ConfigError } from '../src/train/config.js';
import { compare } from '../src/experiment/compare.js';
import { train } from '../src/train/trainer.js';
import { describe, runCli, weightDifference } from './helpers/faults.js';

const root = mkdtempSync(join(tmpdir(), 'masksub-text-train-'));
after(() => rmSync(root, { recursive: true, force: true }));
const quiet = (): void => undefined;

function write(directory: string, files: Record<string, string>): string {
  mkdirSync(directory, { recursive: true });
  for (const [name, content] of Object.entries(files)) writeFileSync(join(directory, name), content);
  return directory;
}

test('GLUE tables as they come: SST-2, MRPC (quotes are text in TSV), QNLI, CoLA by column numbers, CSV quoting; sorted labels', () => {
  const dir = join(root, 'tables');
  write(dir, {
    'sst2.tsv': 'sentence\tlabel\nit \'s a charming journey \t1\nunflinchingly bleak\t0\n',
    'mrpc.tsv': 'Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t702876\t702977\t"Amrozi accused his brother , whom he called " the witness "\tReferring to him as only " the witness "\n0\t2108705\t2108831\tYucaipa owned Dominick \'s\tYucaipa bought Dominick \'s\n',
    'qnli.tsv': 'index\tquestion\tsentence\tlabel\n0\tWhen did it start?\tIt started in 1990.\tentailment\n1\tWho?\tNobody knows why.\tnot_entailment\n',
    'cola.tsv': 'gj04\t1\t\tOur friends won\'t buy this analysis.\ngj04\t0\t*\tOne more pseudo generalization.\n',
    'quoted.csv': 'text,label\n"a, b and ""c""",pos\n"two\nlines",neg\n',
  });
  assert.deepEqual(readTable(join(dir, 'sst2.tsv'), { text: null, label: null }).map((row) => [row.text, row.pair, row.label, row.line]), [
    ['it \'s a charming journey ', null, '1', 2], ['unflinchingly bleak', null, '0', 3],
  ]);
  const mrpc = readTable(join(dir, 'mrpc.tsv'), { text: null, label: null });
  assert.deepEqual(mrpc[0], { text: '"Amrozi accused his brother , whom he called " the witness "', pair: 'Referring to him as only " the witness "', label: '1', line: 2 });
  const qnli = readTable(join(dir, 'qnli.tsv'), { text: null, label: null });
  assert.deepEqual([qnli[1].text, qnli[1].pair, qnli[1].label], ['Who?', 'Nobody knows why.', 'not_entailment']);
  assert.deepEqual(labelClasses(qnli), ['entailment', 'not_entailment']);
  const cola = readTable(join(dir, 'cola.tsv'), { text: ['3'], label: '1' });
  assert.deepEqual(cola.map((row) => [row.text, row.label, row.line]), [['Our friends won\'t buy this analysis.', '1', 1], ['One more pseudo generalization.', '0', 2]]);
  assert.deepEqual(readTable(join(dir, 'quoted.csv'), { text: ['text'], label: 'label' }).map((row) => [row.text, row.label, row.line]), [['a, b and "c"', 'pos', 2], ['two\nlines', 'neg', 3]]);
  assert.deepEqual(labelClasses([{ label: '10' }, { label: '9' }, { label: '2' }].map((row) => ({ ...row, text: 'x', pair: null, line: 1 }))), ['2', '9', '10'], 'numeric labels sort as numbers');
});

test('GLUE tables: malformed rows and unknown columns are errors naming the file and line', () => {
  const dir = join(root, 'bad');
  write(dir, {
    'short.tsv': 'sentence\tlabel\ngood row\t1\nno label here\n',
    'header.tsv': 'words\tclass\nx\t1\n',
    'open.csv': 'text,label\n"never closed,1\n',
  });
  assert.throws(() => readTable(join(dir, 'short.tsv'), { text: null, label: null }), (error: Error) => error.message.startsWith(`${join(dir, 'short.tsv')}:3: malformed row: 1 field(s), the columns used need 2`));
  assert.throws(() => readTable(join(dir, 'header.tsv'), { text: ['words'], label: 'label' }), /header\.tsv:1: the header \(words, class\) has no column 'label'/);
  assert.throws(() => readTable(join(dir, 'header.tsv'), { text: null, label: 'class' }), /header\.tsv:1: no known text column/);
  assert.throws(() => readTable(join(dir, 'open.csv'), { text: null, label: null }), /open\.csv:2: a quoted field is not closed/);
  assert.throws(() => readTable(join(dir, 'header.tsv'), { text: ['0'], label: 'class' }), /both by number and by name/);
});

test('WordPiece learning is deterministic: merges by frequency, ties by text (hand computation), the same vocabulary every time', () => {
  // 'ab' x3, 'aab' x2: pieces a ##b (3), a ##a ##b (2). (a, ##b) occurs 3 times -> 'ab'. Then
  // (a, ##a) and (##a, ##b) both occur twice: the tie goes to the merged text '##ab' < 'aa'
  // ('#' sorts before 'a'), and a + ##ab -> 'aab'.
  assert.deepEqual(learnWordPieces(new Map([['ab', 3], ['aab', 2]]), 100), ['a', '##a', '##b', 'ab', '##ab', 'aab']);
  assert.deepEqual(learnWordPieces(new Map([['ab', 3], ['aab', 2]]), 4), ['a', '##a', '##b', 'ab'], 'a limit stops the merges');
  const texts = Array.from({ length: 200 }, (_, index) => `package ${['tools', 'library', 'module', 'bindings'][index % 4]} for ${['python', 'perl', 'rust', 'haskell', 'golang'][index % 5]} number ${index}`);
  const vocabulary = (): string => JSON.stringify(Object.entries(JSON.parse(readFileSync(join(root, 'tok.json'), 'utf8')).model.vocab as Record<string, number>).sort());
  const first = TextTokenizer.train(texts, { vocabSize: 80 });
  return first.save(join(root, 'tok.json')).then(async () => {
    const expected = vocabulary();
    for (let trial = 0; trial < 3; trial++) {
      await TextTokenizer.train([...texts].reverse(), { vocabSize: 80 }).save(join(root, 'tok.json'));
      assert.equal(vocabulary(), expected, 'the same vocabulary, whatever the order of the texts');
    }
  });
});

test('text settings: bert models with text data only, image settings refused, MaskSub\'s default ratio 0.15 on text', () => {
  const text = { dataset: 'debian-packages', model: 'bert_tiny', method: 'masksub' };
  assert.equal(buildConfig({ flags: text }).ratio, 0.15, 'BERT\'s 15% of the tokens');
  assert.equal(buildConfig({ flags: { ...text, method: 'dropsub' } }).ratio, 0.2, 'DropSub keeps its own default');
  assert.equal(buildConfig({ flags: { dataset: 'fashion-mnist', model: 'vit_micro', method: 'masksub' } }).ratio, 0.5);
  assert.throws(() => buildConfig({ flags: { ...text, mixup: 0.8 } }), /mixup applies only to images; debian-packages is text/);
  assert.throws(() => buildConfig({ flags: { ...text, randomErasing: 0.25 } }), /random-erasing applies only to images/);
  assert.throws(() => buildConfig({ flags: { ...text, model: 'vit_micro' } }), /dataset debian-packages is text; model vit_micro takes images: use a text model \(bert_tiny/);
  assert.throws(() => buildConfig({ flags: { dataset: 'fashion-mnist', model: 'bert_tiny' } }), /model bert_tiny is a text model/);
  assert.throws(() => buildConfig({ flags: { dataset: 'fashion-mnist', model: 'vit_micro', maxLength: 64 } }), /max-length applies only to the text data sets/);
  assert.throws(() => buildConfig({ flags: { ...text, dataset: 'text' } }), /dataset text needs --data-dir DIR/);
  assert.throws(() => buildConfig({ flags: { ...text, dataDir: '/tmp' } }), /debian-packages reads this machine's APT lists/);
  assert.throws(() => buildConfig({ flags: { ...text, textColumns: 'a,b,c' } }), ConfigError);
});

test('BertTextClassifier: the packed batch [B, 3, L] equals ids + types + mask given apart; masking replaces text tokens only', () => {
  const specialIds = { pad: 0, cls: 2, sep: 3, mask: 4 };
  const model = createModel('bert_tiny', { numClasses: 3, text: { vocabSize: 50, maxLength: 8, specialIds } }) as BertTextClassifier;
  model.eval();
  const before = liveTensors();
  noGrad(() => tidy(() => {
    const ids = [[2, 10, 11, 12, 3, 0, 0, 0], [2, 20, 3, 21, 22, 3, 0, 0]];
    const types = [[0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 1, 1, 1, 0, 0]];
    const mask = ids.map((row) => row.map((id) => (id === 0 ? 0 : 1)));
    const packed = tensor(ids.flatMap((row, index) => [...row, ...types[index], ...mask[index]]), { shape: [2, 3, 8] }).long();
    const apart = model.bert.forwardAll(tensor(ids.flat(), { shape: [2, 8] }).long(), { tokenTypeIds: tensor(types.flat(), { shape: [2, 8] }).long(), attentionMask: tensor(mask.flat(), { shape: [2, 8] }).long() }).pooled;
    const expected = model.classifier.forward(apart);
    assert.ok(model.forward(packed).sub(expected).abs().max().item() < 1e-6, 'packed forward = HF-style forward with types and mask');
    // Masking: a 0.5 ratio masks int(m/2)-rounded-up of each row's m text tokens, never [CLS]/[SEP]/[PAD].
    const seen: number[][] = [];
    const spy = model.bert.forwardAll.bind(model.bert);
    model.bert.forwardAll = (x, inputs) => {
      seen.push(x.toArray() as unknown as number[]);
      return spy(x, inputs);
    };
    model.forward(packed, { maskRatio: 0.5, generator: new Generator(3) });
    const masked = (seen[0] as unknown as number[][]);
    masked.forEach((row, r) => {
      const original = ids[r];
      row.forEach((id, position) => {
        if ([0, 2, 3].includes(original[position])) assert.equal(id, original[position], 'specials and padding are never masked');
        else assert.ok(id === original[position] || id === 4);
      });
      const textTokens = original.filter((id) => ![0, 2, 3].includes(id)).length;
      assert.equal(row.filter((id) => id === 4).length, textTokens - Math.trunc(textTokens * 0.5), `row ${r}: m - int(m(1 - r)) masked`);
    });
  }));
  assert.equal(liveTensors(), before, 'no live tensors left');
  model.dispose();
});

test('--init on a text model: HF names load, a classifier of another label count (or none, a BertModel checkpoint) is re-initialised; layer decay groups', () => {
  const text = { vocabSize: 40, maxLength: 8, specialIds: { pad: 0, cls: 2, sep: 3, mask: 4 } };
  const source = createModel('bert_tiny', { numClasses: 2, text }) as BertTextClassifier;
  const target = createModel('bert_tiny', { numClasses: 3, text }) as BertTextClassifier;
  const checkpoint = new Map(source.stateDict());
  const { state, report } = fitCheckpoint(target, checkpoint);
  assert.deepEqual(report.reinitialised.sort(), ['classifier.bias', 'classifier.weight']);
  assert.ok(state.has('bert.encoder.layer.1.output.LayerNorm.weight') && tidy(() => state.get('bert.embeddings.word_embeddings.weight')!.sub(checkpoint.get('bert.embeddings.word_embeddings.weight')!).abs().max().item()) === 0);
  for (const value of state.values()) value.dispose();
  const backbone = new Map([...checkpoint].filter(([key]) => !key.startsWith('classifier.')));
  const fitted = fitCheckpoint(source, backbone);
  assert.ok(fitted.report.notes.some((note) => note.includes('has no classifier')), fitted.report.notes.join('; '));
  for (const value of fitted.state.values()) value.dispose();
  const layers = layerAssignment(target);
  assert.deepEqual(['bert.embeddings.word_embeddings.weight', 'bert.encoder.layer.0.attention.self.query.weight', 'bert.encoder.layer.1.output.dense.bias', 'bert.pooler.dense.weight', 'classifier.weight'].map(layers.layerOf), [0, 1, 2, 3, 3]);
  source.dispose();
  target.dispose();
});

/** A generated GLUE-style pair task: label 'same' when both sentences name the same animal. */
function generatedPairTask(directory: string, count: number, seed: number): string {
  const animals = ['cat', 'dog', 'horse', 'sheep', 'goat', 'duck'];
  const verbs = ['sees', 'likes', 'follows', 'feeds'];
  let state = seed;
  const next = (n: number): number => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return Math.floor(state / 65536) % n; // the high bits: an LCG's low bits cycle
  };
  const rows = (n: number): string => Array.from({ length: n }, () => {
    const a = animals[next(animals.length)];
    const b = next(2) === 0 ? a : animals[next(animals.length)];
    return `the ${a} ${verbs[next(verbs.length)]} a farmer\ta ${b} ${verbs[next(verbs.length)]} the child\t${a === b ? 'same' : 'different'}`;
  }).join('\n');
  return write(directory, { 'train.tsv': `sentence1\tsentence2\tlabel\n${rows(count)}\n`, 'dev.tsv': `sentence1\tsentence2\tlabel\n${rows(64)}\n` });
}

test('a text run (generated sentence pairs, --dataset text) stopped after epoch 1 and resumed ends bit-identical to an uninterrupted one, with its tokenizer and labels', async () => {
  const dataDir = generatedPairTask(join(root, 'pairs'), 128, 7);
  const flags = {
    dataset: 'text', dataDir, model: 'bert_tiny', method: 'masksub', epochs: 2, batchSize: 16, maxLength: 16, vocabSize: 64,
    lr: 1e-3, warmupEpochs: 0, probeSize: 32, threads: 2, dropout: 0.1, dropPath: 0.1,
  };
  const straight = join(root, 'straight');
  const resumed = join(root, 'resumed');
  const before = liveTensors();
  const whole = await train(buildConfig({ flags }), { out: straight, log: quiet });
  await train(buildConfig({ flags }), { out: resumed, log: quiet, stopAfterEpochs: 1 });
  const second = await train(buildConfig({ flags }), { out: resumed, resume: true, log: quiet });
  assert.equal(liveTensors(), before, 'training leaves no live tensors behind');
  assert.equal(second.epochsTrained, 1);
  assert.ok(readFileSync(join(straight, 'model.safetensors')).equals(readFileSync(join(resumed, 'model.safetensors'))), 'the same weights, byte for byte');
  assert.deepEqual(second.history.map((row) => row.test_acc1), whole.history.map((row) => row.test_acc1));
  assert.deepEqual(second.history.map((row) => row.probe_loss_masked), whole.history.map((row) => row.probe_loss_masked), 'the Eq. 2 probe masks tokens with its fixed generator');
  const stored = JSON.parse(readFileSync(join(straight, 'config.json'), 'utf8')) as { classes: string[]; ratio: number };
  assert.deepEqual(stored.classes, ['different', 'same'], 'labels sorted and recorded');
  assert.equal(stored.ratio, 0.15);
  const vocabulary = JSON.parse(readFileSync(join(straight, 'tokenizer.json'), 'utf8')) as { model: { vocab: Record<string, number> } };
  // 57 pieces on this small corpus: every character and word it has, under the 64 asked for.
  const size = Object.keys(vocabulary.model.vocab).length;
  assert.ok(size > 20 && size <= 64, `the trained vocabulary (${size} tokens) is kept with the run`);
  const row = whole.history[1];
  assert.ok(row.train_loss_sub !== null && row.grad_norm_sub !== null && row.grad_norm_sub > 0, "the sub-model branch ran");
});

test('compare and the report on text runs: baseline, MaskSub and DropSub rows with accuracy, the Eq. 1 / Eq. 2 probes with token masking, charts', async () => {
  const dataDir = generatedPairTask(join(root, 'compare-pairs'), 96, 11);
  const base = buildSettings({ flags: { dataset: 'text', dataDir, model: 'bert_tiny', epochs: 2, batchSize: 16, maxLength: 16, vocabSize: 64, warmupEpochs: 0, probeSize: 32, threads: 2, dropout: 0.1 } });
  const files = await compare(base, { out: join(root, 'compare'), methods: ['baseline', 'masksub', 'dropsub'], seeds: [0], ratios: null, log: quiet });
  assert.ok(files !== null);
  const { comparison } = files;
  assert.deepEqual(comparison.groups.map((group) => [group.method, group.ratio]), [['baseline', 0], ['masksub', 0.15], ['dropsub', 0.2]]);
  for (const group of comparison.groups) assert.ok(group.final_test_acc1.mean !== null && group.final_test_acc1.mean >= 0 && group.final_test_acc1.mean <= 100);
  for (const run of comparison.runs) assert.ok(run.epochs.every((row) => row.probe_loss_masked !== null && row.probe_loss_standard !== null), `${run.name}: both probe losses`);
  const markdown = readFileSync(files.markdown, 'utf8');
  assert.match(markdown, /text · bert_tiny · 2 epochs · 1 seed \(0\)/);
  assert.ok(files.charts.some((chart) => chart.includes('accuracy')), `charts: ${files.charts.join(', ')}`);
  // Run again: the finished runs (which recorded their labels in classes) are reused, not refused.
  const lines: string[] = [];
  assert.ok(await compare(base, { out: join(root, 'compare'), methods: ['baseline', 'masksub', 'dropsub'], seeds: [0], ratios: null, log: (line) => lines.push(line) }));
  assert.equal(lines.filter((line) => line.includes('finished earlier, reused')).length, 3, lines.join('\n'));
});

test('bert_tiny MaskSub on Debian package descriptions learns: top-1 well above the largest class\'s share', async (t) => {
  try {
    readDebianPackages();
  } catch (error) {
    t.skip(`the corpus is absent (no APT lists on this machine): ${(error as Error).message}`);
    return;
  }
  // 1,024 descriptions, 2 epochs of 32 steps (batch 32, 32 tokens): about 20 s on 2 idle cores.
  const flags = {
    dataset: 'debian-packages', model: 'bert_tiny', method: 'masksub', epochs: 2, batchSize: 32, maxLength: 32, vocabSize: 2000,
    limitTrain: 1024, limitTest: 500, lr: 2e-3, warmupEpochs: 0, probeSize: 64, threads: 2, labelSmoothing: 0,
  };
  const result = await train(buildConfig({ flags }), { out: join(root, 'debian'), log: quiet });
  const stored = JSON.parse(readFileSync(join(root, 'debian', 'config.json'), 'utf8')) as { classes: string[] };
  assert.equal(stored.classes.length, 10);
  const last = result.history[result.history.length - 1];
  t.diagnostic(`debian-packages bert_tiny masksub: top-1 ${result.history.map((row) => row.test_acc1.toFixed(1)).join(' -> ')}%`);
  // The largest of the 10 sections (libs) is 17% of their packages: always answering it scores that.
  assert.ok(last.test_acc1 > 35, `test top-1 ${last.test_acc1}% after 64 steps (the largest class is 17%, uniform chance 10%)`);
  assert.ok(last.train_loss < result.history[0].train_loss, 'the training loss falls');
});

test('text with train --nproc 2 (Gloo) gives one process\'s MaskSub run; --amp bf16 stays close to float32', async (t) => {
  const dataDir = generatedPairTask(join(root, 'pairs-dp'), 128, 11);
  // No dropout: element-wise dropout keeps each rank's own stream, as torch's DDP (src/nn/sample-noise.ts);
  // the token masks and drop-path are drawn for the global batch.
  const args = (out: string): string[] => ['train', '--dataset', 'text', '--data-dir', dataDir, '--model', 'bert_tiny', '--method', 'masksub', '--epochs', '2',
    '--batch-size', '16', '--max-length', '16', '--vocab-size', '64', '--lr', '1e-3', '--warmup-epochs', '0', '--probe-size', '32', '--threads', '1',
    '--dropout', '0', '--drop-path', '0.1', '--out', out];
  const [alone, job, bf16] = ['alone', 'job', 'bf16'].map((name) => join(root, `text-${name}`));
  const [single, pair] = await Promise.all([runCli(args(alone)), runCli([...args(job), '--nproc', '2'])]);
  assert.equal(single.code, 0, describe(single));
  assert.equal(pair.code, 0, describe(pair));
  const { max: worst } = weightDifference(join(alone, 'model.safetensors'), join(job, 'model.safetensors'));
  // Measured 2026-12-02: the same train and test losses to 1e-7; a different mask or shard moves weights by ~1e-2.
  t.diagnostic(`largest weight difference, 1 vs 2 processes: ${worst.toExponential(2)}`);
  assert.ok(worst < 2e-5, `weights differ by ${worst}`);
  const rows = (out: string): Record<string, number>[] => readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((line) => JSON.parse(line));
  for (const key of ['train_loss_main', 'train_loss_sub', 'test_loss']) assert.ok(Math.abs(rows(alone)[1]![key]! - rows(job)[1]![key]!) < 1e-4, key);
  const half = await runCli([...args(bf16), '--amp', 'bf16']);
  assert.equal(half.code, 0, describe(half));
  // bf16 matmuls (8-bit mantissa) over 16 steps: the losses stay within 1e-2 of float32's (measured
  // 3e-6 to 3e-5 on this near-chance task), and differ from them at all (autocast was on).
  const differences = ['train_loss_main', 'train_loss_sub', 'test_loss'].map((key) => {
    const difference = Math.abs(rows(alone)[1]![key]! - rows(bf16)[1]![key]!);
    t.diagnostic(`bf16 - float32 ${key}: ${difference.toExponential(2)}`);
    assert.ok(difference < 1e-2, `${key} differs by ${difference}`);
    return difference;
  });
  assert.ok(differences.some((difference) => difference > 0), 'bf16 gave float32\'s losses exactly: autocast did not reach the text model');
});
