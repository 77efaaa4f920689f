// The emoji data set (src/data/emoji.ts): the emoji-test.txt and CLDR readers on generated files,
// the seedless split, and the images drawn from Debian's font (pixel colours of emoji whose look
// is fixed: a yellow face, Japan's flag), the limit, the CLI's --dataset emoji and export-images.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EMOJI_GROUPS, isTestEmoji, loadEmojiDataset, readEmojiList, renderEmoji } from '../src/data/emoji.js';
import { classFolderNames } from '../src/data/export-images.js';
import { resolveConfig, DEFAULTS } from '../src/train/config.js';

const EMOJI_TEST = `# emoji-test.txt (a generated excerpt)
# group: Smileys & Emotion
# subgroup: face-smiling
1F600                                                  ; fully-qualified     # 😀 E1.0 grinning face
263A FE0F                                              ; fully-qualified     # ☺️ E0.6 smiling face
263A                                                   ; unqualified         # ☺ E0.6 smiling face

# group: People & Body
# subgroup: hand-fingers-open
1F44B                                                  ; fully-qualified     # 👋 E0.6 waving hand
1F44B 1F3FD                                            ; fully-qualified     # 👋🏽 E1.0 waving hand: medium skin tone

# group: Component
# subgroup: skin-tone
1F3FB                                                  ; component           # 🏻 E1.0 light skin tone
`;
const ANNOTATIONS = `<ldml><annotations>
<annotation cp="😀">face | grin | grinning face</annotation>
<annotation cp="😀" type="tts">grinning face</annotation>
<annotation cp="☺">face | outlined | relaxed | smile | smiling face</annotation>
<annotation cp="👋">hand | wave | waving &amp; hi</annotation>
</annotations></ldml>`;

function fixture(text = EMOJI_TEST): { dir: string; testFile: string; annotationFiles: string[] } {
  const dir = mkdtempSync(join(tmpdir(), 'masksub-emoji-'));
  writeFileSync(join(dir, 'emoji-test.txt'), text);
  writeFileSync(join(dir, 'en.xml'), ANNOTATIONS);
  return { dir, testFile: join(dir, 'emoji-test.txt'), annotationFiles: [join(dir, 'en.xml'), join(dir, 'absent.xml')] };
}

test('readEmojiList: fully-qualified emoji with group, subgroup, CLDR keywords and the skin-tone-free base', () => {
  const { dir, ...files } = fixture();
  try {
    const entries = readEmojiList(files);
    assert.deepEqual(entries.map((entry) => entry.name), ['grinning face', 'smiling face', 'waving hand', 'waving hand: medium skin tone']);
    assert.deepEqual(entries[0], { sequence: '😀', name: 'grinning face', group: 'Smileys & Emotion', subgroup: 'face-smiling', keywords: ['face', 'grin'], base: '😀' });
    // CLDR writes ☺ without its variation selector; the name is not repeated among the keywords.
    assert.equal(entries[1]!.sequence, '\u263A\uFE0F');
    assert.deepEqual(entries[1]!.keywords, ['face', 'outlined', 'relaxed', 'smile']);
    assert.deepEqual(entries[2]!.keywords, ['hand', 'wave', 'waving & hi']);
    // No annotation for the skin-tone variant (the derived file is absent here): no keywords, the base's sequence.
    assert.deepEqual(entries[3]!.keywords, []);
    assert.equal(entries[3]!.base, '👋');
    assert.equal(isTestEmoji(entries[2]!), isTestEmoji(entries[3]!));
  } finally {
    rmSync(dir, { recursive: true });
  }
});

test('readEmojiList: a file it cannot read is an error naming the line or the package', () => {
  const broken = fixture(EMOJI_TEST.replace('# group: People & Body', '# group: Emoji Of The Future'));
  const garbled = fixture(`${EMOJI_TEST}1F600 fully-qualified grinning\n`);
  try {
    assert.throws(() => readEmojiList(broken), /line 10 has group 'Emoji Of The Future', not one of the 9 known/);
    assert.throws(() => readEmojiList(garbled), /line 16 is not an emoji-test\.txt line: 1F600 fully-qualified grinning/);
    assert.throws(() => readEmojiList({ testFile: join(broken.dir, 'nope.txt') }), /nope\.txt \(the list of emoji\) does not exist; install it with `apt-get install unicode-data`/);
  } finally {
    rmSync(broken.dir, { recursive: true });
    rmSync(garbled.dir, { recursive: true });
  }
});

test('the packaged list: 3,655 emoji in 9 groups, a fifth held out, skin-tone variants never split apart', () => {
  const entries = readEmojiList();
  assert.equal(entries.length, 3655);
  assert.deepEqual([...new Set(entries.map((entry) => entry.group))], [...EMOJI_GROUPS]);
  const test = entries.filter((entry) => isTestEmoji(entry));
  assert.equal(test.length, 683);
  const splitOfBase = new Map<string, boolean>();
  for (const entry of entries) {
    const held = isTestEmoji(entry);
    assert.equal(splitOfBase.get(entry.base) ?? held, held, entry.name);
    splitOfBase.set(entry.base, held);
  }
  const bases = [...splitOfBase.values()];
  const share = bases.filter(Boolean).length / bases.length;
  assert.ok(share > 0.17 && share < 0.23, `share of bases held out ${share}`);
  // Keywords come from CLDR for nearly every emoji (annotations + annotationsDerived).
  assert.ok(entries.filter((entry) => entry.keywords.length > 0).length / entries.length > 0.95);
});

test('renderEmoji: the font draws a yellow face and the flag of Japan on white, channel-first', async () => {
  const size = 32;
  const plane = size * size;
  const pixel = (image: Uint8Array, x: number, y: number): number[] => [0, 1, 2].map((channel) => image[channel * plane + y * size + x]!);
  const face = new Uint8Array(3 * plane);
  await renderEmoji({ sequence: '😀', name: 'grinning face' }, size, face, 0);
  assert.deepEqual(pixel(face, 0, 0), [255, 255, 255]);
  const [r, g, b] = pixel(face, 8, 16); // the left cheek
  assert.ok(r! > 200 && g! > 150 && b! < 90, `cheek ${[r, g, b]}`);
  const flag = new Uint8Array(3 * plane);
  await renderEmoji({ sequence: '🇯🇵', name: 'flag: Japan' }, size, flag, 0);
  const [cr, cg, cb] = pixel(flag, 16, 16); // the red disc at the centre
  assert.ok(cr! > 150 && cg! < 60 && cb! < 80, `centre ${[cr, cg, cb]}`);
  await assert.rejects(renderEmoji({ sequence: 'ABCDEF', name: 'six letters' }, size, flag, 0), /'six letters' is not one glyph of Noto Color Emoji/);
});

test('loadEmojiDataset: the test split at 16 px, a class-balanced limit whose entries follow it, bad sizes refused', async () => {
  const all = await loadEmojiDataset({ split: 'test', size: 16 });
  assert.equal(all.count, 683);
  assert.equal(all.images.length, 683 * 3 * 16 * 16);
  assert.deepEqual(all.classes, [...EMOJI_GROUPS]);
  assert.ok(all.entries.every((entry, index) => EMOJI_GROUPS[all.labels[index]!] === entry.group && isTestEmoji(entry)));
  const limited = await loadEmojiDataset({ split: 'test', size: 16, limit: 90 });
  assert.equal(limited.count, 90);
  assert.deepEqual([...new Set(limited.labels)].length, 9);
  for (let index = 0; index < limited.count; index++) {
    const original = all.entries.findIndex((entry) => entry.sequence === limited.entries[index]!.sequence);
    assert.ok(original >= 0);
    assert.deepEqual(limited.images.subarray(index * 768, (index + 1) * 768), all.images.subarray(original * 768, (original + 1) * 768));
  }
  await assert.rejects(loadEmojiDataset({ split: 'test', size: 7 }), /image size must be an integer from 8 to 512, got 7/);
  await assert.rejects(loadEmojiDataset({ split: 'test', fontFile: '/nonexistent.ttf' }), /install it with `apt-get install fonts-noto-color-emoji`/);
});

test('--dataset emoji: image-size is its own setting (a ViT is built for the size its patches tile), and export-images names the groups', () => {
  const config = resolveConfig({ ...DEFAULTS, dataset: 'emoji', model: 'vit_micro', imageSize: 28 });
  assert.equal(config.imageSize, 28);
  assert.throws(() => resolveConfig({ ...DEFAULTS, dataset: 'emoji', model: 'vit_micro' }), /takes 28x28 images but image-size is 32 nor a multiple of its 7-px patch; set image-size or pick a 32-px model/);
  assert.throws(() => resolveConfig({ ...DEFAULTS, dataset: 'fashion-mnist', imageSize: 28 }), /image-size applies only to --dataset folder and emoji; fashion-mnist has its own files and size/);
  // A run records the data set's classes in its config.json; reading it back (resume, eval) takes them, another list is refused.
  assert.deepEqual(resolveConfig({ ...DEFAULTS, dataset: 'emoji', model: 'vit_micro', imageSize: 28, classes: [...EMOJI_GROUPS] }).classes, [...EMOJI_GROUPS]);
  assert.throws(() => resolveConfig({ ...DEFAULTS, dataset: 'emoji', model: 'vit_micro', imageSize: 28, classes: ['Flags', 'Symbols'] }), /classes of emoji are fixed: Smileys & Emotion, .*, Flags \(in this order\); leave classes out/);
  assert.deepEqual(classFolderNames({ name: 'emoji', numClasses: 9, classes: [...EMOJI_GROUPS] }), [
    '0-smileys-emotion', '1-people-body', '2-animals-nature', '3-food-drink', '4-travel-places', '5-activities', '6-objects', '7-symbols', '8-flags',
  ]);
});
