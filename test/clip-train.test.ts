// CLIP from the trainer and the CLI (src/train/clip.ts, src/data/captions.ts): caption and prompt
// construction (class templates, emoji names and keywords) against hand-written strings, the
// captions' tokenizer round trip and EOT positions, the CLIP settings' checks both ways, a short
// `train` run on Fashion-MNIST class-template captions whose zero-shot top-1 beats chance by a
// stated margin, a CLIP run stopped and resumed bit-identically (and `masksub eval` on it giving
// its last epoch's numbers), emoji images paired with their own entries' captions, and compare +
// report on CLIP runs (retrieval statistics against a hand computation of mean, std and Welch's t).
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { CLASS_TEMPLATES, captionSource, emojiCaption, emojiKeywords, templatedCaption } from '../src/data/captions.js';
import { TextTokenizer } from '../src/data/text/tokenizer.js';
import { liveTensors } from '../src/tensor/native.js';
import { buildConfig, buildSettings } from '../src/train/config.js';
import { encodeCaptions } from '../src/train/clip.js';
import { train } from '../src/train/trainer.js';
import { compare } from '../src/experiment/compare.js';
import { collectComparison } from '../src/report/collect.js';
import { renderReport } from '../src/report/index.js';
import { EMOJI_GROUPS, loadEmojiDataset } from '../src/data/emoji.js';
import { describe, runCli } from './helpers/faults.js';

const root = mkdtempSync(join(tmpdir(), 'masksub-clip-train-'));
after(() => rmSync(root, { recursive: true, force: true }));
const quiet = (): void => undefined;

test('captions: class templates drawn per (seed, epoch, index), the test split\'s fixed; emoji name first, keywords deduplicated, a seeded subset per epoch', () => {
  // The draw depends on (seed, epoch, index) only, and over many images uses every template.
  assert.equal(templatedCaption('sneaker', 3, 2, 17), templatedCaption('sneaker', 3, 2, 17));
  const drawn = new Set(Array.from({ length: 200 }, (_, index) => templatedCaption('sneaker', 0, 0, index)));
  assert.deepEqual([...drawn].sort(), CLASS_TEMPLATES.map((template) => template.replace('{}', 'sneaker')).sort());
  const epochs = Array.from({ length: 50 }, (_, epoch) => templatedCaption('bag', 0, epoch, 5));
  assert.ok(new Set(epochs).size > 1, 'the wording varies over epochs');

  const labels = Int32Array.from([7, 0, 9]);
  const images = { name: 'fashion-mnist', count: 3, labels, numClasses: 10 };
  const source = captionSource(images, images, 0);
  assert.equal(source.kind, 'class-templates');
  assert.deepEqual([0, 1, 2].map((index) => source.testCaption(index)), ['a photo of a sneaker.', 'a photo of a t-shirt/top.', 'a photo of a ankle boot.']);
  assert.equal(source.tokenizerTexts().length, 10 * CLASS_TEMPLATES.length);
  assert.throws(() => captionSource({ ...images, name: 'synthetic' }, images, 0), /synthetic has no class names to write captions with/);

  const entry = { name: 'grinning face', keywords: ['face', 'grin', 'Grinning Face', 'face', ' smile '] };
  assert.deepEqual(emojiKeywords(entry), ['face', 'grin', 'smile'], 'the name and repeats left out, in CLDR order');
  assert.equal(emojiCaption(entry, 0, null, 4), 'grinning face: face, grin, smile', 'the test caption keeps every keyword');
  assert.equal(emojiCaption({ name: 'keycap: 1', keywords: [] }, 0, 0, 0), 'keycap: 1');
  const subsets = Array.from({ length: 400 }, (_, epoch) => emojiCaption(entry, 1, epoch, 4));
  for (const caption of subsets) {
    assert.ok(caption === 'grinning face' || caption.startsWith('grinning face: '), caption);
    const words = caption === 'grinning face' ? [] : caption.slice('grinning face: '.length).split(', ');
    assert.equal(new Set(words).size, words.length);
    for (const word of words) assert.ok(['face', 'grin', 'smile'].includes(word), word);
  }
  // Each keyword is kept with probability 1/2: about 200 of 400 epochs hold 'grin' (binomial sd 10).
  const withGrin = subsets.filter((caption) => caption.includes('grin,') || caption.endsWith('grin')).length;
  assert.ok(Math.abs(withGrin - 200) < 50, `'grin' kept in ${withGrin} of 400 epochs`);
  assert.equal(emojiCaption(entry, 1, 9, 4), subsets[9], 'the same (seed, epoch, index), the same caption');
});

test('the captions\' tokenizer: trained on the captions, [CLS] caption [SEP] round trips, the EOT position is the [SEP], long captions are cut keeping it', async () => {
  const captions = ['grinning face: face, grin', 'red heart: heart', 'flag: japan', 'a photo of a sneaker.'];
  const tokenizer = TextTokenizer.train(captions, { vocabSize: 200 });
  const encoded = await encodeCaptions(tokenizer, captions, 12);
  for (let row = 0; row < captions.length; row++) {
    const ids = Array.from(encoded.ids.subarray(row * 12, (row + 1) * 12));
    const eot = encoded.eot[row]!;
    assert.equal(ids[0], tokenizer.specialIds.cls);
    assert.equal(ids[eot], tokenizer.specialIds.sep, 'the EOT position holds [SEP]');
    assert.ok(ids.slice(eot + 1).every((id) => id === tokenizer.specialIds.pad), 'padding after it');
    // BERT's decoder writes punctuation as its own word; the words are the caption's.
    const decoded = await tokenizer.decode(ids);
    assert.equal(decoded.replace(/ ([:,.])/g, '$1'), captions[row]);
  }
  const long = await encodeCaptions(tokenizer, ['grinning face: face, grin, face, grin, face, grin'], 6);
  assert.equal(long.eot[0], 5);
  assert.equal(long.ids[5], tokenizer.specialIds.sep, 'cut with [SEP] kept last');
});

test('CLIP settings: refused for classifiers and text, classifier-only settings refused for CLIP, each with a clear message', () => {
  const clip = { dataset: 'fashion-mnist', model: 'clip_micro' };
  assert.equal(buildConfig({ flags: { ...clip, method: 'masksub' } }).ratio, 0.5, 'the paper\'s 50% of the image tokens');
  assert.equal(buildConfig({ flags: { ...clip, vocabSize: 500 } }).vocabSize, 500, 'CLIP reads vocab-size');
  assert.throws(() => buildConfig({ flags: { ...clip, dataset: 'debian-packages' } }), /model clip_micro is CLIP \(images paired with captions\); debian-packages is text classification/);
  assert.throws(() => buildConfig({ flags: { ...clip, method: 'dropsub' } }), /method dropsub is not defined for CLIP; clip_micro trains with baseline or masksub/);
  assert.throws(() => buildConfig({ flags: { ...clip, mixup: 0.8 } }), /mixup does not apply to clip_micro: it applies to classifiers/);
  assert.throws(() => buildConfig({ flags: { ...clip, ema: true } }), /ema does not apply to clip_micro/);
  assert.throws(() => buildConfig({ flags: { ...clip, maxLength: 64 } }), /max-length does not apply to clip_micro: the captions are cut at clip_micro's context length/);
  assert.throws(() => buildConfig({ flags: { ...clip, dataset: 'cifar10' } }), /takes 28x28 images but cifar10 has 32x32/);
  // The reverse: a classifier does not read the captions' tokenizer settings.
  assert.throws(() => buildConfig({ flags: { dataset: 'fashion-mnist', model: 'vit_micro', vocabSize: 500 } }), /vocab-size applies only to the text data sets \(debian-packages, text\) and to CLIP models \(clip_\*\); fashion-mnist with vit_micro is image classification/);
  assert.throws(() => buildConfig({ flags: { dataset: 'fashion-mnist', model: 'vit_micro', tokenizer: 'x.json' } }), /tokenizer applies only to the text data sets .* and to CLIP models/);
  assert.throws(() => buildConfig({ flags: { dataset: 'fashion-mnist', model: 'clip_nano' } }), /--model must be one of .*clip_micro/);
});

test('a short CLIP run on Fashion-MNIST class-template captions learns: zero-shot top-1 well above chance (10%), recall above chance, the run keeps its tokenizer', async () => {
  const flags = {
    dataset: 'fashion-mnist', model: 'clip_micro', method: 'masksub', limitTrain: 2048, limitTest: 500, epochs: 3, batchSize: 64,
    lr: 5e-4, warmupEpochs: 0.5, probeSize: 128, threads: 1,
  };
  const out = join(root, 'learns');
  const before = liveTensors();
  const result = await train(buildConfig({ flags }), { out, log: quiet });
  assert.equal(liveTensors(), before, 'training leaves no live tensors behind');
  const last = result.history.at(-1)!;
  // Measured 40.0% after 3 epochs (2026-12-02); 25% is 2.5 x chance.
  assert.ok(last.test_acc1 > 25, `zero-shot top-1 ${last.test_acc1}% > 25% (chance 10%)`);
  assert.ok(result.history[0]!.train_loss_main > last.train_loss_main, 'the contrastive loss falls');
  // Captions repeat per class here, so a caption's image is one of ~50 equally described images
  // among 500: recall@10 by chance is about 10 / 500 = 2%; measured 9.0% / 10.6%.
  assert.ok(last.test_image_to_text_r10! > 4 && last.test_text_to_image_r10! > 4, `recall@10 ${last.test_image_to_text_r10}% / ${last.test_text_to_image_r10}% > 4%`);
  assert.equal(last.recall_pairs, 500);
  const stored = JSON.parse(readFileSync(join(out, 'tokenizer.json'), 'utf8')) as { model: { vocab: Record<string, number> } };
  assert.ok('sneaker' in stored.model.vocab && 'photo' in stored.model.vocab, 'the vocabulary was learnt from the captions');
});

test('a CLIP run stopped after epoch 1 and resumed ends bit-identical to an uninterrupted one (captions, masks, tokenizer)', async () => {
  const flags = {
    dataset: 'fashion-mnist', model: 'clip_micro', method: 'masksub', limitTrain: 256, limitTest: 100, epochs: 2, batchSize: 32,
    lr: 5e-4, warmupEpochs: 0, probeSize: 64, threads: 1, dropPath: 0.1,
  };
  const straight = join(root, 'straight');
  const resumed = join(root, 'resumed');
  const whole = await train(buildConfig({ flags }), { out: straight, log: quiet });
  await train(buildConfig({ flags }), { out: resumed, log: quiet, stopAfterEpochs: 1 });
  const second = await train(buildConfig({ flags }), { out: resumed, resume: true, log: quiet });
  assert.equal(second.epochsTrained, 1);
  assert.ok(readFileSync(join(straight, 'model.safetensors')).equals(readFileSync(join(resumed, 'model.safetensors'))), 'the same weights, byte for byte');
  const numbers = (row: object): Record<string, unknown> => Object.fromEntries(Object.entries(row).filter(([key]) => !['step_time_s', 'images_per_s', 'wall_s'].includes(key)));
  assert.deepEqual(second.history.map(numbers), whole.history.map(numbers), 'every metric but the timings equal');
  assert.ok(readFileSync(join(straight, 'tokenizer.json')).equals(readFileSync(join(resumed, 'tokenizer.json'))));
  // masksub eval on the run: its tokenizer and weights give the last epoch's numbers again.
  const evaluated = await runCli(['eval', '--checkpoint', straight]);
  assert.equal(evaluated.code, 0, describe(evaluated));
  const printed = JSON.parse(evaluated.stdout.trim().split('\n').at(-1)!) as Record<string, number>;
  const last = whole.history.at(-1)!;
  assert.equal(printed.zero_shot_top1, last.test_acc1);
  assert.equal(printed.test_image_to_text_r5, last.test_image_to_text_r5);
  assert.equal(printed.test_text_to_image_r10, last.test_text_to_image_r10);
  assert.ok(Math.abs(printed.test_loss - last.test_loss) < 1e-6, 'the contrastive loss at the run\'s batch size');
});

test('emoji pairs: each image\'s caption is its own entry\'s name and keywords, zero-shot over the 9 groups with both prompts', async () => {
  const train = await loadEmojiDataset({ split: 'train', size: 16, limit: 40 });
  const test = await loadEmojiDataset({ split: 'test', size: 16, limit: 20 });
  const source = captionSource(train, test, 0);
  assert.equal(source.kind, 'emoji');
  assert.deepEqual(source.classNames, EMOJI_GROUPS);
  assert.equal(source.prompts.length, 2);
  for (let index = 0; index < test.count; index++) assert.equal(source.testCaption(index), emojiCaption(test.entries[index]!, 0, null, index));
  for (let index = 0; index < train.count; index++) {
    const entry = train.entries[index]!;
    const caption = source.trainCaption(index, 3);
    assert.ok(caption === entry.name || caption.startsWith(`${entry.name}: `), caption);
    for (const word of caption === entry.name ? [] : caption.slice(entry.name.length + 2).split(', ')) assert.ok(entry.keywords.includes(word), `${word} is a keyword of ${entry.name}`);
  }
  assert.equal(source.tokenizerTexts().length, train.count);
});

/** A finished CLIP run directory with the given final zero-shot top-1 and recall@1 image->text. */
function fakeClipRun(directory: string, method: string, seed: number, acc1: number, recall1: number): void {
  mkdirSync(directory, { recursive: true });
  const config = { dataset: 'emoji', model: 'clip_micro_ctx32', method, ratio: method === 'baseline' ? 0 : 0.5, seed, epochs: 1, machine: 'test', limit_train: null };
  writeFileSync(join(directory, 'config.json'), JSON.stringify(config));
  const row = {
    epoch: 1, lr: 1e-4, train_loss: 3, train_loss_main: 3, train_loss_sub: null, probe_loss_standard: 3, probe_loss_masked: 3, grad_norm_main: 1, grad_norm_sub: null,
    test_loss: 3, test_acc1: acc1, test_acc5: 50, step_time_s: 0.1, images_per_s: 100, wall_s: 10,
    test_image_to_text_r1: recall1, test_image_to_text_r5: 10, test_image_to_text_r10: 20, test_text_to_image_r1: 2, test_text_to_image_r5: 10, test_text_to_image_r10: 20, recall_pairs: 683, logit_scale: 14,
  };
  writeFileSync(join(directory, 'metrics.jsonl'), JSON.stringify(row) + '\n');
  writeFileSync(join(directory, 'done.json'), JSON.stringify({ finished: true, epochs: 1, final_test_acc1: acc1, best_test_acc1: acc1, best_epoch: 1, wall_s: 10, mean_step_time_s: 0.1 }));
}

test('the report on CLIP runs: kind clip, recall@k with the statistics of accuracy (hand-computed mean, std, Welch t), zero-shot headings and a retrieval table', async () => {
  const dir = join(root, 'report');
  // Baseline recall@1 2, 4, 6 (mean 4, std 2); MaskSub 5, 6, 7 (mean 6, std 1).
  [[2, 20], [4, 21], [6, 22]].forEach(([recall, acc], seed) => fakeClipRun(join(dir, 'runs', `baseline-s${seed}`), 'baseline', seed, acc!, recall!));
  [[5, 24], [6, 25], [7, 26]].forEach(([recall, acc], seed) => fakeClipRun(join(dir, 'runs', `masksub-s${seed}`), 'masksub', seed, acc!, recall!));
  const comparison = collectComparison(dir);
  const [baseline, masksub] = comparison.groups;
  assert.equal(baseline!.kind, 'clip');
  const stats = masksub!.retrieval!.test_image_to_text_r1;
  assert.equal(stats.final.mean, 6);
  assert.equal(stats.final.std, 1);
  assert.equal(baseline!.retrieval!.test_image_to_text_r1.final.std, 2);
  // Welch: t = (6 - 4) / sqrt(1/3 + 4/3) = 2 / sqrt(5/3); df = (5/3)^2 / ((1/3)^2/2 + (4/3)^2/2) = 2.941...
  assert.ok(Math.abs(stats.vs_baseline!.t! - 2 / Math.sqrt(5 / 3)) < 1e-12);
  assert.ok(Math.abs(stats.vs_baseline!.df! - (25 / 9) / ((1 / 9) / 2 + (16 / 9) / 2)) < 1e-12);
  assert.equal(stats.vs_baseline!.difference, 2);
  assert.equal(masksub!.retrieval!.test_text_to_image_r5.vs_baseline!.difference, 0);
  const files = await renderReport(dir);
  const markdown = readFileSync(files.markdown, 'utf8');
  assert.match(markdown, /\| method \| ratio \| seeds \| final zero-shot top-1 \(%\) \| best zero-shot top-1 \(%\)/);
  assert.match(markdown, /## Retrieval \(CLIP\)/);
  assert.match(markdown, /\| masksub \| 0\.5 \| 3 \| 6\.00 ± 1\.00 \(\+2\.00, p = 0\.\d+\) \|/);
  assert.match(readFileSync(files.html, 'utf8'), /Retrieval \(CLIP\)/);
});

test('compare --model clip_micro --methods baseline,masksub trains both and reports zero-shot top-1 and recall@k', async () => {
  const out = join(root, 'compare');
  const settings = buildSettings({
    flags: { dataset: 'fashion-mnist', model: 'clip_micro', limitTrain: 128, limitTest: 64, epochs: 1, batchSize: 32, lr: 5e-4, warmupEpochs: 0, probeSize: 32, threads: 1 },
  });
  const files = await compare(settings, { out, methods: ['baseline', 'masksub'], seeds: [0], ratios: null, log: quiet });
  assert.ok(files !== null);
  const groups = files!.comparison.groups;
  assert.deepEqual(groups.map((group) => [group.method, group.kind, group.n]), [['baseline', 'clip', 1], ['masksub', 'clip', 1]]);
  const metrics = JSON.parse(readFileSync(join(out, 'runs', 'masksub-s0', 'metrics.jsonl'), 'utf8').trim()) as Record<string, number>;
  assert.equal(groups[1]!.retrieval!.test_text_to_image_r10.final.mean, metrics.test_text_to_image_r10);
  assert.equal(groups[1]!.final_test_acc1.mean, metrics.test_acc1);
  assert.match(readFileSync(files!.markdown, 'utf8'), /Retrieval \(CLIP\)/);
});

test('a tokenizer.json without BERT\'s special tokens (a CLIP BPE one) is refused before the run directory is made, naming the file and the token', async () => {
  const file = join(root, 'bpe-tokenizer.json');
  writeFileSync(file, JSON.stringify({
    version: '1.0', truncation: null, padding: null, added_tokens: [], normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null,
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: '</w>', fuse_unk: false, vocab: { 'a</w>': 0, '<|startoftext|>': 1, '<|endoftext|>': 2 }, merges: [] },
  }));
  const out = join(root, 'bpe-run');
  const flags = { dataset: 'fashion-mnist', model: 'clip_micro', tokenizer: file, limitTrain: 64, limitTest: 32, epochs: 1, batchSize: 32, warmupEpochs: 0, threads: 1 };
  await assert.rejects(train(buildConfig({ flags }), { out, log: quiet }), (error: Error) => error.message.includes(`tokenizer ${file}: tokenizer: the vocabulary has no [PAD] token`));
  assert.ok(!existsSync(out), 'no run directory left behind');
});
