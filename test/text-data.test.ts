// The text data layer: the BERT tokenizer on Hugging Face `tokenizers` (a trained WordPiece
// vocabulary, its tokenizer.json round trip, a vocab.txt, special tokens, pairs, truncation and
// padding) and the Debian package-description corpus (parsing a fixture in the Packages format,
// the seeded stratified split, and the real lists of this machine when apt has them).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { SPECIAL_TOKENS, TextTokenizer } from '../src/data/text/tokenizer.js';
import { type PackageRecord, parsePackages, readDebianPackages, splitBySection } from '../src/data/text/debian-packages.js';

const directory = mkdtempSync(join(tmpdir(), 'masksub-text-'));
after(() => rmSync(directory, { recursive: true, force: true }));

const TEXTS = [
  'Python bindings for the numerical library',
  'A puzzle game about falling blocks',
  'Development files for the compression library',
  'Strategy game of ancient warfare',
  'Python module for parsing configuration files',
  'Shared library for image decoding',
].flatMap((text) => [text, text.toUpperCase(), `${text} and more`]);

test('tokenizer: a trained WordPiece vocabulary, specials first, single and pair encodings, truncation, padding, tokenizer.json round trip', async () => {
  const tokenizer = TextTokenizer.train(TEXTS);
  assert.deepEqual(tokenizer.specialIds, { pad: 0, unk: 1, cls: 2, sep: 3, mask: 4 });
  assert.deepEqual(tokenizer.keepIds, [0, 2, 3]);

  const single = await tokenizer.encode('Python game library', null, { maxLength: 8 });
  assert.deepEqual(single.tokens, ['[CLS]', 'python', 'game', 'library', '[SEP]', '[PAD]', '[PAD]', '[PAD]'], 'lowercased words of the training texts are whole tokens');
  assert.deepEqual(single.attentionMask, [1, 1, 1, 1, 1, 0, 0, 0]);
  assert.deepEqual(single.typeIds, [0, 0, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual(single.specialTokensMask, [1, 0, 0, 0, 1, 1, 1, 1]);
  assert.equal(await tokenizer.decode(single.ids), 'python game library', 'decode drops the specials');

  const pair = await tokenizer.encode('python game', 'shared library', { maxLength: 10 });
  assert.deepEqual(pair.tokens, ['[CLS]', 'python', 'game', '[SEP]', 'shared', 'library', '[SEP]', '[PAD]', '[PAD]', '[PAD]']);
  assert.deepEqual(pair.typeIds, [0, 0, 0, 0, 1, 1, 1, 0, 0, 0]);

  // Truncation keeps [CLS] and both [SEP]s, cutting the longer side first (HF's longest_first).
  const cut = await tokenizer.encode('python bindings for the numerical library', 'game', { maxLength: 6 });
  assert.deepEqual(cut.tokens, ['[CLS]', 'python', 'bindings', '[SEP]', 'game', '[SEP]']);

  // Unknown characters become [UNK]; special tokens written in the text stay whole.
  const odd = await tokenizer.encode('qqq [MASK] python', null, { maxLength: 6 });
  assert.deepEqual(odd.tokens, ['[CLS]', SPECIAL_TOKENS.unk, '[MASK]', 'python', '[SEP]', '[PAD]']);

  const batch = await tokenizer.encodeBatch(['python', ['game', 'library']], { maxLength: 5 });
  assert.equal(batch.count, 2);
  assert.deepEqual(batch.ids.slice(0, 5), [2, tokenizer.tokenToId('python'), 3, 0, 0]);
  assert.deepEqual(batch.typeIds, [0, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
  assert.deepEqual(batch.attentionMask, [1, 1, 1, 0, 0, 1, 1, 1, 1, 1]);

  const path = join(directory, 'tokenizer.json');
  await tokenizer.save(path);
  const loaded = TextTokenizer.fromTokenizerJson(path);
  assert.equal(loaded.vocabSize, tokenizer.vocabSize);
  for (const [text, other] of [['Python bindings for the numerical library', null], ['A puzzle game', 'Shared library']] as const) {
    assert.deepEqual((await loaded.encode(text, other, { maxLength: 16 })).ids, (await tokenizer.encode(text, other, { maxLength: 16 })).ids, `round trip: ${text}`);
  }

  // vocabSize keeps the first merges: fewer ids, and words still split into known pieces.
  // 8 merges past the 42 of the alphabet: 'library' (whole at 60) still splits.
  const small = TextTokenizer.train(TEXTS, { vocabSize: 50 });
  assert.equal(small.vocabSize, 50);
  // 5 specials + 15 characters that start a word + 22 that continue one (as ##c), lowercased.
  assert.throws(() => TextTokenizer.train(TEXTS, { vocabSize: 40 }), /vocabSize must be an integer of at least 42 \(the special tokens and the texts' characters\)/);
  const pieces = await small.encode('library', null, { maxLength: 12 });
  assert.ok(pieces.tokens.filter((token) => token !== '[PAD]').length > 3, `'library' splits into pieces (${pieces.tokens.join(' ')})`);
  assert.ok(!pieces.tokens.includes('[UNK]'));
  assert.equal(await small.decode(pieces.ids), 'library');
  await assert.rejects(() => tokenizer.encode('x', 'y', { maxLength: 2 }), /maxLength must be an integer of at least 3/);
});

test('tokenizer: a BERT vocab.txt (WordPiece, lowercase)', async () => {
  const vocabulary = ['[PAD]', '[unused0]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'un', '##aff', '##able', 'the', 'runn', '##ing', ',', 'caf', '##e'];
  const path = join(directory, 'vocab.txt');
  writeFileSync(path, `${vocabulary.join('\n')}\n`);
  const tokenizer = TextTokenizer.fromVocab(path);
  assert.deepEqual(tokenizer.specialIds, { pad: 0, unk: 2, cls: 3, sep: 4, mask: 5 });
  assert.equal(tokenizer.vocabSize, vocabulary.length);
  const encoded = await tokenizer.encode('UNaffable, the running Café xyz', null, { maxLength: 14 });
  assert.deepEqual(encoded.tokens, ['[CLS]', 'un', '##aff', '##able', ',', 'the', 'runn', '##ing', 'caf', '##e', '[UNK]', '[SEP]', '[PAD]', '[PAD]']);
  assert.deepEqual(encoded.ids.slice(0, 4), [3, 6, 7, 8]);
  assert.throws(() => {
    writeFileSync(path, 'a\nb\n[UNK]\n');
    TextTokenizer.fromVocab(path);
  }, /no \[PAD\] token/);
});

const FIXTURE = `Package: python3-demo
Version: 1.0-1
Section: python
Description: Demo module for Python 3
 This package provides a demo
 module for tests.
 .
 A second paragraph.
Homepage: https://example.org/

Package: demo-game
Section: contrib/games
Description: Falling blocks puzzle

Package: python3-demo
Section: python
Description: a later duplicate of the same package

Package: no-section
Description: skipped for having no section

Package: libdemo1
Section: libs
Description: Demo shared library
Multi-Arch: same
`;

test('debian packages: Packages-format parsing (continuations, paragraphs, archive areas, duplicates)', () => {
  const records = parsePackages(FIXTURE);
  assert.deepEqual(records, [
    { name: 'python3-demo', section: 'python', synopsis: 'Demo module for Python 3', description: 'This package provides a demo module for tests.\nA second paragraph.' },
    { name: 'demo-game', section: 'games', synopsis: 'Falling blocks puzzle', description: '' },
    { name: 'libdemo1', section: 'libs', synopsis: 'Demo shared library', description: '' },
  ]);
});

test('debian packages: the K most frequent sections, a seeded stratified split', () => {
  const records: PackageRecord[] = [];
  const sizes = { libs: 30, python: 20, games: 10, rare: 2 };
  for (const [section, count] of Object.entries(sizes)) {
    for (let index = 0; index < count; index++) records.push({ name: `${section}-${index}`, section, synopsis: `${section} package ${index}`, description: '' });
  }
  const split = splitBySection(records, { topSections: 3, seed: 1 });
  assert.deepEqual(split.classes, ['libs', 'python', 'games']);
  assert.equal(split.train.length + split.test.length, 60);
  assert.deepEqual(split.classes.map((_, label) => split.test.filter((item) => item.label === label).length), [6, 4, 2], '20% of each class');
  const names = new Set(split.train.map((item) => item.name));
  assert.ok(split.test.every((item) => !names.has(item.name)), 'train and test are disjoint');
  assert.deepEqual(splitBySection([...records].reverse(), { topSections: 3, seed: 1 }), split, 'the same split whatever the order of the lists');
  assert.notDeepEqual(splitBySection(records, { topSections: 3, seed: 2 }).test, split.test, 'another seed, another split');
  assert.throws(() => splitBySection(records, { topSections: 5, seed: 1 }), /only 4 present/);
});

test('debian packages: this machine\'s APT lists, when present', (t) => {
  let records: PackageRecord[];
  try {
    records = readDebianPackages();
  } catch (error) {
    t.skip(`no APT lists here: ${(error as Error).message}`);
    return;
  }
  const split = splitBySection(records, { topSections: 8, seed: 0 });
  console.log(`debian packages: ${records.length} packages; top 8 sections ${split.classes.join(', ')}; ${split.train.length} train / ${split.test.length} test`);
  assert.ok(records.length > 1000, `${records.length} packages`);
  assert.ok(split.classes.includes('libs') && split.classes.includes('python'), split.classes.join(', '));
  assert.ok(split.train.every((item) => item.text.length > 0 && item.label >= 0 && item.label < 8));
  for (let label = 0; label < 8; label++) assert.ok(split.test.some((item) => item.label === label), `class ${split.classes[label]} is in the test split`);
});
