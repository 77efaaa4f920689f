// The emoji data set: real images with real names and keywords that a fresh Debian machine has
// without a download, for image classification (by emoji group) and for CLIP's image-text pairs.
//
// Sources (apt packages, none of them ours; scripts/setup.sh installs them):
//   unicode-data          /usr/share/unicode/emoji/emoji-test.txt: every emoji's code points,
//                         status, group, subgroup and CLDR short name ("grinning face").
//   unicode-cldr-core     /usr/share/unicode/cldr/common/annotations{,Derived}/en.xml: the
//                         keywords of each emoji ("face | grin | grinning face"); optional.
//   fonts-noto-color-emoji  NotoColorEmoji.ttf, the images: each emoji is drawn by sharp (libvips'
//                         text input: Pango + cairo + fontconfig) on white, then resized to the
//                         requested side with libvips' lanczos3 into a square (contain, white
//                         padding). Drawing all 3,655 emoji takes about 7 s on one core (1.8 ms
//                         each, measured 2026-12-02), so nothing is cached and nothing is written.
//
// Which emoji: the fully-qualified lines of emoji-test.txt (3,655 in Unicode 15.0, which the
// packaged font covers: each is drawn as one glyph, checked when drawn) except the group
// "Component" (skin-tone and hair swatches on their own). Classes: the 9 remaining groups in file
// order. Split: emoji that differ only by skin tone share a `base` (the sequence without the
// modifiers U+1F3FB..U+1F3FF) and always fall in the same split, so no test emoji is a recoloured
// training emoji; a base is in the test split when the FNV-1a hash of its code points is 0 mod 5
// (about a fifth; fixed, seedless, the same on every machine).
import { existsSync, readFileSync, statSync } from 'node:fs';
import sharp from 'sharp';
import { balancedPrefixIndices, DATASET_INFO, type ImageDataset, subsetDataset } from './datasets.js';

export const EMOJI_TEST_FILE = '/usr/share/unicode/emoji/emoji-test.txt';
export const EMOJI_FONT_FILE = '/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf';
export const CLDR_ANNOTATION_FILES = [
  '/usr/share/unicode/cldr/common/annotations/en.xml',
  '/usr/share/unicode/cldr/common/annotationsDerived/en.xml',
];
/** The font family fontconfig knows NotoColorEmoji.ttf by. */
const FONT_FAMILY = 'Noto Color Emoji';
/** The side the glyphs are drawn at before resizing (the font's bitmaps are 136 px). */
const DRAW_SIZE = 64;
export const DEFAULT_EMOJI_SIZE = DATASET_INFO.emoji.height;

/**
 * The 9 groups of emoji-test.txt (Unicode 15.0) but Component, in file order: the class names.
 * Reading a file with other groups is an error that names them.
 */
export const EMOJI_GROUPS: readonly string[] = DATASET_INFO.emoji.classes!;

export interface EmojiEntry {
  /** The emoji's characters (fully qualified: with its variation selectors). */
  sequence: string;
  /** CLDR short name, e.g. "waving hand: medium skin tone". */
  name: string;
  group: string;
  subgroup: string;
  /** CLDR keywords (without the name itself), e.g. ["hand", "wave", "waving"]; empty when unknown. */
  keywords: string[];
  /** The sequence without skin-tone modifiers: its skin-tone variants share it (and the split). */
  base: string;
}

export interface EmojiDataset extends ImageDataset {
  /** The emoji of each image, in image order. */
  entries: EmojiEntry[];
}

export interface EmojiListOptions {
  testFile?: string;
  /** CLDR annotation files for keywords; missing files are skipped (keywords are then empty). */
  annotationFiles?: string[];
}

export interface LoadEmojiOptions extends EmojiListOptions {
  split: 'train' | 'test';
  /** Side of the square images in pixels (default 32). */
  size?: number;
  /** A class-balanced prefix as for the other data sets (datasets.ts). */
  limit?: number;
  fontFile?: string;
}

const SKIN_TONES = /[\u{1F3FB}-\u{1F3FF}]/gu;

function missing(path: string, what: string, pkg: string): Error {
  return new Error(`emoji: ${path} (${what}) does not exist; install it with \`apt-get install ${pkg}\``);
}

function decodeXml(text: string): string {
  return text.replace(/&(lt|gt|amp|quot|apos|#x[0-9a-fA-F]+|#\d+);/g, (entity: string, body: string) => {
    if (body[0] === '#') return String.fromCodePoint(body[1] === 'x' ? Number.parseInt(body.slice(2), 16) : Number(body.slice(1)));
    return ({ lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" } as Record<string, string>)[body] ?? entity;
  });
}

/** CLDR keywords by emoji, keyed with variation selectors removed (CLDR writes most without). */
function readKeywords(files: string[]): Map<string, string[]> {
  const keywords = new Map<string, string[]>();
  for (const file of files) {
    if (!existsSync(file)) continue;
    const text = readFileSync(file, 'utf8');
    // <annotation cp="😀">face | grin | grinning face</annotation>; the type="tts" lines are names.
    for (const match of text.matchAll(/<annotation cp="([^"]+)">([^<]*)<\/annotation>/g)) {
      const key = decodeXml(match[1]!).replace(/\uFE0F/g, '');
      if (!keywords.has(key)) keywords.set(key, decodeXml(match[2]!).split('|').map((word) => word.trim()).filter((word) => word.length > 0));
    }
  }
  return keywords;
}

/** The fully-qualified emoji of emoji-test.txt (but Component), with CLDR keywords where known. */
export function readEmojiList(options: EmojiListOptions = {}): EmojiEntry[] {
  const testFile = options.testFile ?? EMOJI_TEST_FILE;
  if (!existsSync(testFile)) throw missing(testFile, 'the list of emoji', 'unicode-data');
  const keywords = readKeywords(options.annotationFiles ?? CLDR_ANNOTATION_FILES);
  const entries: EmojiEntry[] = [];
  let group = '';
  let subgroup = '';
  const lines = readFileSync(testFile, 'utf8').split('\n');
  for (let number = 0; number < lines.length; number++) {
    const line = lines[number]!;
    const heading = /^# (sub)?group: (.+)$/.exec(line);
    if (heading !== null) {
      if (heading[1] === undefined) group = heading[2]!.trim();
      else subgroup = heading[2]!.trim();
      continue;
    }
    if (line.startsWith('#') || line.trim() === '') continue;
    // 1F44B 1F3FD ; fully-qualified # 👋🏽 E1.0 waving hand: medium skin tone
    const entry = /^([0-9A-F ]+);\s*([a-z-]+)\s*#\s*\S+\s+E\d+\.\d+\s+(.+)$/.exec(line);
    if (entry === null) throw new Error(`emoji: ${testFile} line ${number + 1} is not an emoji-test.txt line: ${line.slice(0, 80)}`);
    if (entry[2] !== 'fully-qualified' || group === 'Component') continue;
    if (!EMOJI_GROUPS.includes(group)) {
      throw new Error(`emoji: ${testFile} line ${number + 1} has group '${group}', not one of the ${EMOJI_GROUPS.length} known (${EMOJI_GROUPS.join(', ')})`);
    }
    const sequence = String.fromCodePoint(...entry[1]!.trim().split(/\s+/).map((hex) => Number.parseInt(hex, 16)));
    const name = entry[3]!.trim();
    const words = keywords.get(sequence.replace(/\uFE0F/g, '')) ?? [];
    entries.push({ sequence, name, group, subgroup, keywords: words.filter((word) => word !== name), base: sequence.replace(SKIN_TONES, '') });
  }
  if (entries.length === 0) throw new Error(`emoji: ${testFile} lists no fully-qualified emoji`);
  return entries;
}

/** 32-bit FNV-1a over a string's code points. */
function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (const character of text) {
    hash ^= character.codePointAt(0)!;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash;
}

/** Whether an emoji belongs to the test split (see the file's header). */
export function isTestEmoji(entry: Pick<EmojiEntry, 'base'>): boolean {
  return fnv1a(entry.base) % 5 === 0;
}

function escapeMarkup(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/**
 * One emoji drawn on white and resized to size x size (contain): RGB, channel-first, written into
 * `out` at `offset`. An emoji the font lacks (drawn as several glyphs, so much wider than tall) is an error naming it.
 */
export async function renderEmoji(entry: Pick<EmojiEntry, 'sequence' | 'name'>, size: number, out: Uint8Array, offset: number): Promise<void> {
  const drawn = await sharp({ text: { text: `<span font="${FONT_FAMILY} ${DRAW_SIZE}">${escapeMarkup(entry.sequence)}</span>`, rgba: true, dpi: 72 } })
    .raw()
    .toBuffer({ resolveWithObject: true });
  const { width, height, channels } = drawn.info;
  if (width > 1.5 * height) {
    throw new Error(`emoji: '${entry.name}' is not one glyph of ${FONT_FAMILY} (drawn ${width}x${height}); is fonts-noto-color-emoji older than unicode-data?`);
  }
  const pixels = await sharp(drawn.data, { raw: { width, height, channels } })
    .flatten({ background: '#ffffff' })
    .resize(size, size, { fit: 'contain', background: '#ffffff', kernel: 'lanczos3' })
    .removeAlpha()
    .raw()
    .toBuffer();
  const plane = size * size;
  for (let index = 0; index < plane; index++) {
    out[offset + index] = pixels[index * 3]!;
    out[offset + plane + index] = pixels[index * 3 + 1]!;
    out[offset + 2 * plane + index] = pixels[index * 3 + 2]!;
  }
}

/** One split of the emoji data set, drawn now (about 7 s for all of it on one core). */
export async function loadEmojiDataset(options: LoadEmojiOptions): Promise<EmojiDataset> {
  const size = options.size ?? DEFAULT_EMOJI_SIZE;
  if (!Number.isInteger(size) || size < 8 || size > 512) throw new Error(`emoji: image size must be an integer from 8 to 512, got ${size}`);
  if (options.split !== 'train' && options.split !== 'test') throw new Error(`emoji: unknown split '${String(options.split)}'; expected 'train' or 'test'`);
  const fontFile = options.fontFile ?? EMOJI_FONT_FILE;
  if (!existsSync(fontFile)) throw missing(fontFile, 'the emoji font', 'fonts-noto-color-emoji');
  const test = options.split === 'test';
  const entries = readEmojiList(options).filter((entry) => isTestEmoji(entry) === test);
  const labels = Int32Array.from(entries, (entry) => EMOJI_GROUPS.indexOf(entry.group));
  const sampleSize = 3 * size * size;
  const images = new Uint8Array(entries.length * sampleSize);
  // A few draws in flight keep libvips' threads busy without holding every image at once.
  const inFlight = 4;
  let next = 0;
  await Promise.all(Array.from({ length: inFlight }, async () => {
    while (next < entries.length) {
      const index = next++;
      await renderEmoji(entries[index]!, size, images, index * sampleSize);
    }
  }));
  const font = statSync(fontFile);
  const dataset: EmojiDataset = {
    name: 'emoji', split: options.split, images, labels, count: entries.length, channels: 3, height: size, width: size,
    numClasses: EMOJI_GROUPS.length, mean: [...DATASET_INFO.emoji.mean], std: [...DATASET_INFO.emoji.std], classes: [...EMOJI_GROUPS], entries,
    source: `${options.testFile ?? EMOJI_TEST_FILE} drawn with ${fontFile} (${font.size} bytes) at ${size} px`,
  };
  if (options.limit === undefined || options.limit >= dataset.count) return dataset;
  if (!Number.isInteger(options.limit) || options.limit < 1) throw new Error(`emoji: limit must be a positive integer, got ${options.limit}`);
  // The class-balanced prefix of the other data sets (datasets.ts); the entries follow the same choice.
  const chosen = balancedPrefixIndices(labels, dataset.numClasses, options.limit);
  return { ...subsetDataset(dataset, chosen), entries: Array.from(chosen, (index) => entries[index]!) };
}
