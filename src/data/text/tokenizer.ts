// BERT tokenization for the text models through Hugging Face's `tokenizers` (its Rust library,
// Node bindings): load a tokenizer.json or a BERT vocab.txt (WordPiece, lowercase), or train a
// WordPiece vocabulary on the user's texts (wordpiece.ts: deterministic, unlike the bindings'
// trainer); encode sentences and pairs as [CLS] a [SEP] b [SEP] with token types, truncated and padded to a fixed length, with the attention mask. Results are
// plain number arrays (src/data imports no tensors); the trainer turns them into int64 batches.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as Tokenizers from 'tokenizers';
import { learnWordPieces } from './wordpiece.js';

// The package is CommonJS with a native addon; createRequire loads it from this ES module.
const tokenizers = createRequire(import.meta.url)('tokenizers') as typeof Tokenizers;

/** BERT's special tokens, by role. */
export const SPECIAL_TOKENS = { pad: '[PAD]', unk: '[UNK]', cls: '[CLS]', sep: '[SEP]', mask: '[MASK]' } as const;
export type SpecialRole = keyof typeof SPECIAL_TOKENS;
/** The size a trained vocabulary grows to when none is asked for (HF WordPieceTrainer's default). */
const DEFAULT_LEARNED_SIZE = 30000;
/** The order a trained vocabulary starts with: [PAD] is id 0, as in BERT's vocab.txt and the BERT models' default padTokenId. */
const SPECIAL_ORDER: readonly SpecialRole[] = ['pad', 'unk', 'cls', 'sep', 'mask'];

/** One encoded sentence or pair, all arrays of the same length. */
export interface EncodedText {
  ids: number[];
  /** 0 for [CLS] a [SEP], 1 for b [SEP] (and 0 on padding, as BERT's). */
  typeIds: number[];
  /** 1 on tokens, 0 on padding. */
  attentionMask: number[];
  /** 1 on [CLS], [SEP] and [PAD], 0 on text tokens. */
  specialTokensMask: number[];
  tokens: string[];
}

/** A batch of encodings as row-major flat arrays [count, maxLength], ready for int64 tensors. */
export interface EncodedBatch {
  count: number;
  maxLength: number;
  ids: number[];
  typeIds: number[];
  attentionMask: number[];
}

export interface EncodeOptions {
  /** Total length with [CLS] and [SEP]s: longer inputs are truncated (pairs: the longer side first), shorter ones padded. */
  maxLength: number;
}

export interface TrainTokenizerOptions {
  /**
   * Vocabulary size with the 5 special tokens: the special tokens, the texts' characters and the
   * first merges learned (every merge's parts come before it), so any word of those characters
   * still splits into pieces. Default 30,000 (HF's WordPieceTrainer), or fewer when the texts run
   * out of pairs to merge.
   */
  vocabSize?: number;
  /** Lowercase and strip accents (BERT uncased). Default true. */
  lowercase?: boolean;
}

/** A BERT WordPiece tokenizer with the special ids the models and the masking need. */
export class TextTokenizer {
  /** The id of each special token. */
  readonly specialIds: Readonly<Record<SpecialRole, number>>;
  /** Encodings run one at a time: truncation and padding are the native tokenizer's settings, set per call. */
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(private readonly tokenizer: Tokenizers.Tokenizer) {
    const ids: Partial<Record<SpecialRole, number>> = {};
    for (const role of SPECIAL_ORDER) {
      const id = tokenizer.tokenToId(SPECIAL_TOKENS[role]);
      if (id === null || id === undefined) throw new Error(`tokenizer: the vocabulary has no ${SPECIAL_TOKENS[role]} token; a BERT tokenizer needs ${SPECIAL_ORDER.map((name) => SPECIAL_TOKENS[name]).join(', ')}`);
      ids[role] = id;
    }
    this.specialIds = ids as Record<SpecialRole, number>;
    // Every tokenizer we hand out builds BERT inputs, whatever post-processor a tokenizer.json had.
    tokenizer.setPostProcessor(tokenizers.bertProcessing([SPECIAL_TOKENS.sep, this.specialIds.sep], [SPECIAL_TOKENS.cls, this.specialIds.cls]));
  }

  /** A tokenizer.json saved by Hugging Face tokenizers (ours from train(), or a BERT checkpoint's). */
  static fromTokenizerJson(path: string): TextTokenizer {
    return new TextTokenizer(tokenizers.Tokenizer.fromString(readFileSync(path, 'utf8')));
  }

  /** A BERT vocab.txt (one WordPiece token a line, the line number is the id) with BERT's normalizer. */
  static fromVocab(path: string, options: { lowercase?: boolean } = {}): TextTokenizer {
    const vocabulary: Record<string, number> = {};
    readFileSync(path, 'utf8').split('\n').forEach((line, index) => {
      const token = line.replace(/\r$/, '');
      // The file's last newline ends the last token; it starts no empty one.
      if (token !== '' && !(token in vocabulary)) vocabulary[token] = index;
    });
    return TextTokenizer.fromVocabulary(vocabulary, options.lowercase ?? true);
  }

  /**
   * Learns a WordPiece vocabulary from texts (the user has none); save() writes it as tokenizer.json.
   * Deterministic (wordpiece.ts): the same texts always give the same vocabulary.
   */
  static train(texts: Iterable<string>, options: TrainTokenizerOptions = {}): TextTokenizer {
    const lowercase = options.lowercase ?? true;
    // BERT's normalizer and pre-tokenizer split the texts into the words that merges are learned on.
    const normalizer = tokenizers.bertNormalizer({ lowercase, stripAccents: lowercase, cleanText: true, handleChineseChars: true });
    const preTokenizer = tokenizers.bertPreTokenizer();
    const wordCounts = new Map<string, number>();
    for (const text of texts) {
      for (const [word] of preTokenizer.preTokenizeString(normalizer.normalizeString(text))) wordCounts.set(word, (wordCounts.get(word) ?? 0) + 1);
    }
    const specials = SPECIAL_ORDER.map((role) => SPECIAL_TOKENS[role] as string);
    // The alphabet (each character, alone and as a ##continuation) is what lets every word split;
    // a smaller vocabulary stops the merges earlier.
    const alphabet = learnWordPieces(wordCounts, 0).filter((token) => !isSpecial(token));
    const size = options.vocabSize ?? DEFAULT_LEARNED_SIZE;
    if (!(Number.isInteger(size) && size >= specials.length + alphabet.length)) {
      throw new RangeError(`tokenizer: vocabSize must be an integer of at least ${specials.length + alphabet.length} (the special tokens and the texts' characters), got ${size}`);
    }
    const learned = learnWordPieces(wordCounts, size - specials.length).filter((token) => !isSpecial(token));
    const vocabulary: Record<string, number> = {};
    // The specials come first: [PAD] = 0, as in BERT's vocab.txt.
    [...specials, ...learned].forEach((token, index) => { vocabulary[token] = index; });
    return TextTokenizer.fromVocabulary(vocabulary, lowercase);
  }

  private static fromVocabulary(vocabulary: Record<string, number>, lowercase: boolean): TextTokenizer {
    if (!(SPECIAL_TOKENS.unk in vocabulary)) throw new Error(`tokenizer: the vocabulary has no ${SPECIAL_TOKENS.unk} token`);
    const tokenizer = new tokenizers.Tokenizer(tokenizers.WordPiece.init(vocabulary, { unkToken: SPECIAL_TOKENS.unk }));
    setBertPipeline(tokenizer, lowercase);
    // Registered as special: never split or lowercased, and dropped by decode(skipSpecialTokens).
    tokenizer.addSpecialTokens(SPECIAL_ORDER.map((role) => SPECIAL_TOKENS[role]).filter((token) => token in vocabulary));
    return new TextTokenizer(tokenizer);
  }

  /** Vocabulary size with the special tokens: the BERT model's vocabSize. */
  get vocabSize(): number {
    return this.tokenizer.getVocabSize(true);
  }

  tokenToId(token: string): number | null {
    return this.tokenizer.tokenToId(token) ?? null;
  }

  idToToken(id: number): string | null {
    return this.tokenizer.idToToken(id) ?? null;
  }

  /** The special ids a masking step must never mask: [PAD], [CLS], [SEP]. */
  get keepIds(): number[] {
    return [this.specialIds.pad, this.specialIds.cls, this.specialIds.sep];
  }

  /** Writes tokenizer.json (without the per-call truncation and padding). */
  async save(path: string): Promise<void> {
    await this.exclusive(async () => {
      this.tokenizer.disableTruncation();
      this.tokenizer.disablePadding();
      this.tokenizer.save(path, true);
    });
  }

  /** [CLS] text [SEP] or [CLS] text [SEP] pair [SEP], truncated and padded to maxLength. */
  async encode(text: string, pair: string | null, options: EncodeOptions): Promise<EncodedText> {
    const [encoded] = await this.encodeMany([pair === null ? text : [text, pair]], options);
    return encoded;
  }

  /** Many sentences (strings) or pairs ([a, b]) as one padded batch of flat arrays. */
  async encodeBatch(inputs: readonly (string | readonly [string, string])[], options: EncodeOptions): Promise<EncodedBatch> {
    const encodings = await this.encodeMany(inputs, options);
    return {
      count: encodings.length,
      maxLength: options.maxLength,
      ids: encodings.flatMap((encoding) => encoding.ids),
      typeIds: encodings.flatMap((encoding) => encoding.typeIds),
      attentionMask: encodings.flatMap((encoding) => encoding.attentionMask),
    };
  }

  /** Text of ids; skipSpecial drops [CLS], [SEP], [PAD] (and [MASK], [UNK]). */
  async decode(ids: readonly number[], skipSpecial = true): Promise<string> {
    return this.tokenizer.decode([...ids], skipSpecial);
  }

  private async encodeMany(inputs: readonly (string | readonly [string, string])[], options: EncodeOptions): Promise<EncodedText[]> {
    const { maxLength } = options;
    const smallest = inputs.some((input) => typeof input !== 'string') ? 3 : 2;
    if (!(Number.isInteger(maxLength) && maxLength >= smallest)) {
      throw new RangeError(`tokenizer: maxLength must be an integer of at least ${smallest} (room for [CLS] and the [SEP]s), got ${maxLength}`);
    }
    if (!inputs.length) return [];
    return this.exclusive(async () => {
      this.tokenizer.setTruncation(maxLength);
      this.tokenizer.setPadding({ maxLength, padId: this.specialIds.pad, padToken: SPECIAL_TOKENS.pad, padTypeId: 0 });
      // One encode per input: the bindings' encodeBatch takes no pairs. They run on libuv's pool.
      const encodings = await Promise.all(inputs.map((input) => (typeof input === 'string' ? this.tokenizer.encode(input) : this.tokenizer.encode(input[0], input[1]))));
      return encodings.map((encoding) => ({
        ids: encoding.getIds(),
        typeIds: encoding.getTypeIds(),
        attentionMask: encoding.getAttentionMask(),
        specialTokensMask: encoding.getSpecialTokensMask(),
        tokens: encoding.getTokens(),
      }));
    });
  }

  /** Runs fn after every earlier call has finished, so no encoding sees another call's settings. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }
}

function isSpecial(token: string): boolean {
  return SPECIAL_ORDER.some((role) => SPECIAL_TOKENS[role] === token);
}

/** BERT's normalizer (clean text, CJK spacing, optional lowercase and accent stripping), pre-tokenizer and WordPiece decoder. */
function setBertPipeline(tokenizer: Tokenizers.Tokenizer, lowercase: boolean): void {
  tokenizer.setNormalizer(tokenizers.bertNormalizer({ lowercase, stripAccents: lowercase, cleanText: true, handleChineseChars: true }));
  tokenizer.setPreTokenizer(tokenizers.bertPreTokenizer());
  tokenizer.setDecoder(tokenizers.wordPieceDecoder('##', true));
}
