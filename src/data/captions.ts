// Captions for CLIP training on the project's image data (no tensors here): what text each image
// is paired with, epoch by epoch, and the class-name prompts of zero-shot classification.
//
// Two sources. (1) Class templates, the fallback for any labelled image data set: an image of
// class c is paired with one of a few templates holding c's name ("a photo of a sneaker."),
// chosen per (seed, epoch, index), so every epoch varies the wording but never the content; the
// test split is paired with the first template, fixed. Every image of a class then shares its
// caption, so retrieval there measures class matching, not instance matching. (2) Emoji, real
// image-text pairs: each emoji's rendering with its CLDR name and keywords (captionForEmoji).
import { deriveSeed, Random } from './random.js';

/** The wordings of the class-template captions; the first is the test split's and the first prompt. */
export const CLASS_TEMPLATES: readonly string[] = ['a photo of a {}.', 'a picture of a {}.', 'an image of the {}.', 'a {}.'];

/** The zero-shot prompts of the emoji groups (their captions never name the group: see README). */
export const EMOJI_PROMPTS: readonly string[] = ['an emoji of {}.', '{}'];

/**
 * Class names of the built-in data sets, in label order, as torchvision names them (lowercased);
 * a folder's names are its class folders.
 */
export const CLASS_NAMES: Readonly<Record<string, readonly string[]>> = {
  'fashion-mnist': ['t-shirt/top', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker', 'bag', 'ankle boot'],
  mnist: ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine'],
  cifar10: ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'],
};

// A stream of deriveSeed of its own, apart from the loader's order and augmentation streams.
const CAPTION_STREAM = 5501;

/** A class template with the name in place of {}. */
export function fillTemplate(template: string, name: string): string {
  return template.replaceAll('{}', name);
}

/**
 * The training caption of sample `index` at `epoch` (0-based) from the class templates: the
 * template is drawn from (seed, epoch, index) alone, so a resumed or sharded run pairs alike.
 */
export function templatedCaption(name: string, seed: number, epoch: number, index: number, templates: readonly string[] = CLASS_TEMPLATES): string {
  const choice = new Random(deriveSeed(seed, CAPTION_STREAM, epoch, index)).int(templates.length);
  return fillTemplate(templates[choice]!, name);
}

/** What a caption of an emoji reads: its CLDR name and keywords (EmojiEntry's fields). */
export interface EmojiText {
  name: string;
  keywords: readonly string[];
}

/**
 * The keywords worth writing after the name: in CLDR order, without duplicates (case-blind) and
 * without the name itself, which CLDR often lists as a keyword too ("grinning face").
 */
export function emojiKeywords(entry: EmojiText): string[] {
  const seen = new Set([entry.name.toLowerCase()]);
  const kept: string[] = [];
  for (const keyword of entry.keywords) {
    const key = keyword.trim().toLowerCase();
    if (key === '' || seen.has(key)) continue;
    seen.add(key);
    kept.push(keyword.trim());
  }
  return kept;
}

/**
 * An emoji's caption: "name: keyword, keyword, ..." (the name alone when no keyword is left).
 * The name comes first and whole (it is CLDR's unique short name, the nearest thing to an
 * alt-text); the keywords are CLDR's search words. Training (epoch >= 0) keeps each keyword with
 * probability 1/2 in a shuffled order drawn from (seed, epoch, index): augmentation of the text,
 * as CLIP's many alt-texts of one concept, that never changes what is depicted. The test split
 * (epoch null) keeps every keyword in CLDR's order, fixed.
 */
export function emojiCaption(entry: EmojiText, seed: number, epoch: number | null, index: number): string {
  let keywords = emojiKeywords(entry);
  if (epoch !== null && keywords.length > 0) {
    const random = new Random(deriveSeed(seed, CAPTION_STREAM, epoch, index));
    keywords = keywords.filter(() => random.next() < 0.5);
    for (let i = keywords.length - 1; i > 0; i--) {
      const j = random.int(i + 1);
      [keywords[i], keywords[j]] = [keywords[j]!, keywords[i]!];
    }
  }
  return keywords.length === 0 ? entry.name : `${entry.name}: ${keywords.join(', ')}`;
}

/** The captions of one image data set's two splits and its zero-shot task. */
export interface CaptionSource {
  /** 'class templates' or 'emoji names and keywords', for log lines and the README. */
  kind: 'class-templates' | 'emoji';
  /** The zero-shot classes, in label order (the images' labels index them). */
  classNames: readonly string[];
  /** The zero-shot prompt templates; a class's prompts are averaged (open_clip's build_zero_shot_classifier). */
  prompts: readonly string[];
  /** The caption of training image `index` at `epoch` (0-based). */
  trainCaption(index: number, epoch: number): string;
  /** The fixed caption of test image `index` (retrieval pairs it with its image). */
  testCaption(index: number): string;
  /** The texts a tokenizer is trained on when the run has none: every training caption's words. */
  tokenizerTexts(): string[];
}

/** The split's images as captions need them: labels, and the emoji entries where the data has them. */
export interface CaptionedImages {
  name: string;
  count: number;
  labels: Int32Array;
  numClasses: number;
  classes?: string[];
  entries?: readonly EmojiText[];
}

/**
 * The captions of a data set: emoji data (which carries its entries) by name and keywords, any
 * other labelled data by its class names in templates. A data set without known class names
 * (synthetic, cifar100) has none to caption with: an error says so.
 */
export function captionSource(train: CaptionedImages, test: CaptionedImages, seed: number): CaptionSource {
  if (train.entries !== undefined || test.entries !== undefined) {
    const trainEntries = train.entries;
    const testEntries = test.entries;
    if (trainEntries === undefined || testEntries === undefined || trainEntries.length !== train.count || testEntries.length !== test.count) {
      throw new Error(`${train.name}: every image needs its emoji entry (${trainEntries?.length ?? 0} entries for ${train.count} training images, ${testEntries?.length ?? 0} for ${test.count} test images)`);
    }
    const classNames = train.classes ?? [];
    if (classNames.length !== train.numClasses) throw new Error(`${train.name}: ${classNames.length} group names for ${train.numClasses} classes`);
    return {
      kind: 'emoji', classNames, prompts: EMOJI_PROMPTS,
      trainCaption: (index, epoch) => emojiCaption(trainEntries[index]!, seed, epoch, index),
      testCaption: (index) => emojiCaption(testEntries[index]!, seed, null, index),
      tokenizerTexts: () => trainEntries.map((entry, index) => emojiCaption(entry, seed, null, index)),
    };
  }
  const classNames = train.classes ?? CLASS_NAMES[train.name];
  if (classNames === undefined) {
    throw new Error(`${train.name} has no class names to write captions with; CLIP trains on emoji, ${Object.keys(CLASS_NAMES).join(', ')} or a folder (its class folders' names)`);
  }
  if (classNames.length !== train.numClasses) throw new Error(`${train.name}: ${classNames.length} class names for ${train.numClasses} classes`);
  const readable = classNames.map((name) => name.replace(/_+/g, ' ').trim());
  return {
    kind: 'class-templates', classNames: readable, prompts: CLASS_TEMPLATES,
    trainCaption: (index, epoch) => templatedCaption(readable[train.labels[index]!]!, seed, epoch, index),
    testCaption: (index) => fillTemplate(CLASS_TEMPLATES[0]!, readable[test.labels[index]!]!),
    tokenizerTexts: () => readable.flatMap((name) => CLASS_TEMPLATES.map((template) => fillTemplate(template, name))),
  };
}
