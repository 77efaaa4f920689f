// Tokenized text classification data in memory, and the loader that batches it for the trainer.
// A split is encoded once (fixed length, [CLS] a [SEP] b [SEP], padded); a batch is one packed
// int32 array [B, 3, L] (ids, token types, attention mask) that the trainer turns into the int64
// tensor BertTextClassifier reads. The loader draws its epoch order and its data-parallel shards
// exactly as the image loader does (batch.ts: epochOrder, epochBatchIndex), so a resumed or
// sharded text run sees the same batches as an uninterrupted single process.
import { epochBatchIndex, epochOrder, recipeBatchCount } from '../batch.js';
import type { DataShard } from '../batch.js';
import type { TextTokenizer } from './tokenizer.js';

/** The text data sets: Debian's package descriptions (debian-packages.ts) and GLUE-style tables (table.ts). */
export const TEXT_DATASET_NAMES = ['debian-packages', 'text'] as const;
export type TextDatasetName = (typeof TEXT_DATASET_NAMES)[number];

export function isTextDatasetName(name: string): name is TextDatasetName {
  return (TEXT_DATASET_NAMES as readonly string[]).includes(name);
}

export interface TextDataset {
  kind: 'text';
  name: string;
  split: string;
  /** Where the texts came from (a file, or apt's lists). */
  source: string;
  count: number;
  /** Tokens per example, with [CLS], [SEP]s and padding. */
  maxLength: number;
  /** count * maxLength each, row-major. */
  ids: Int32Array;
  typeIds: Int32Array;
  attentionMask: Int32Array;
  labels: Int32Array;
  numClasses: number;
  /** Label names in index order. */
  classes: string[];
  /** Examples longer than maxLength, cut (truncation keeps [CLS] and the [SEP]s). */
  truncated: number;
}

/** One raw example before tokenization. */
export interface TextExample {
  text: string;
  pair: string | null;
  label: number;
}

/** Encodes examples with the tokenizer at a fixed length (in chunks, so a large corpus does not queue every text at once). */
export async function encodeTextDataset(examples: readonly TextExample[], tokenizer: TextTokenizer, info: { name: string; split: string; source: string; maxLength: number; classes: string[] }): Promise<TextDataset> {
  const { maxLength } = info;
  const count = examples.length;
  const ids = new Int32Array(count * maxLength);
  const typeIds = new Int32Array(count * maxLength);
  const attentionMask = new Int32Array(count * maxLength);
  const chunk = 2048;
  let truncated = 0;
  for (let start = 0; start < count; start += chunk) {
    const part = examples.slice(start, start + chunk);
    const encoded = await tokenizer.encodeBatch(part.map((example) => (example.pair === null ? example.text : [example.text, example.pair] as const)), { maxLength });
    ids.set(encoded.ids, start * maxLength);
    typeIds.set(encoded.typeIds, start * maxLength);
    attentionMask.set(encoded.attentionMask, start * maxLength);
    // A row whose last position is a real token may have been cut (or fits exactly; counted too).
    for (let row = 0; row < part.length; row++) if (encoded.attentionMask[(row + 1) * maxLength - 1] === 1) truncated++;
  }
  return {
    kind: 'text', name: info.name, split: info.split, source: info.source, count, maxLength, ids, typeIds, attentionMask,
    labels: Int32Array.from(examples, (example) => example.label), numClasses: info.classes.length, classes: info.classes, truncated,
  };
}

/** The examples at `indices`, in that order (probe sets, evaluation shards). */
export function subsetTextDataset(dataset: TextDataset, indices: Int32Array): TextDataset {
  const length = dataset.maxLength;
  const take = (array: Int32Array): Int32Array => {
    const out = new Int32Array(indices.length * length);
    indices.forEach((index, row) => out.set(array.subarray(index * length, (index + 1) * length), row * length));
    return out;
  };
  return {
    ...dataset, count: indices.length, ids: take(dataset.ids), typeIds: take(dataset.typeIds), attentionMask: take(dataset.attentionMask),
    labels: Int32Array.from(indices, (index) => dataset.labels[index]),
  };
}

/** A batch of texts: tokens packed [size, 3, maxLength] (ids, token types, attention mask). */
export interface TextBatch {
  tokens: Int32Array;
  labels: Int32Array;
  size: number;
  /** Batch index within the epoch (of this shard). */
  index: number;
}

export interface TextLoaderOptions {
  batchSize: number;
  shuffle?: boolean;
  dropLast?: boolean;
  seed?: number;
  shard?: DataShard;
}

/** Batches of a TextDataset, in the image loader's order; built in the calling thread (a copy of ints, no decoding). */
export class TextBatchLoader {
  readonly batchCount: number;
  private readonly recipe: { batchSize: number; shuffle: boolean; dropLast: boolean; seed: number; shard: DataShard | null };

  constructor(private readonly dataset: TextDataset, options: TextLoaderOptions) {
    if (!Number.isInteger(options.batchSize) || options.batchSize < 1) throw new Error(`text loader(${dataset.name}/${dataset.split}): batchSize must be a positive integer, got ${options.batchSize}`);
    this.recipe = { batchSize: options.batchSize, shuffle: options.shuffle ?? false, dropLast: options.dropLast ?? false, seed: options.seed ?? 0, shard: options.shard ?? null };
    this.batchCount = recipeBatchCount(dataset.count, this.recipe);
  }

  /** Batch `index` of an epoch, from that epoch's order. */
  batchAt(epoch: number, index: number, order = epochOrder(this.dataset.count, this.recipe.shuffle, this.recipe.seed, epoch)): TextBatch {
    const { batchSize } = this.recipe;
    const start = epochBatchIndex(this.recipe, index) * batchSize;
    const end = Math.min(start + batchSize, this.dataset.count);
    const size = end - start;
    const length = this.dataset.maxLength;
    const tokens = new Int32Array(size * 3 * length);
    const labels = new Int32Array(size);
    for (let row = 0; row < size; row++) {
      const sample = order[start + row];
      const from = sample * length;
      const to = row * 3 * length;
      tokens.set(this.dataset.ids.subarray(from, from + length), to);
      tokens.set(this.dataset.typeIds.subarray(from, from + length), to + length);
      tokens.set(this.dataset.attentionMask.subarray(from, from + length), to + 2 * length);
      labels[row] = this.dataset.labels[sample];
    }
    return { tokens, labels, size, index };
  }

  *batchesSync(epoch = 0): Generator<TextBatch> {
    const order = epochOrder(this.dataset.count, this.recipe.shuffle, this.recipe.seed, epoch);
    for (let index = 0; index < this.batchCount; index++) yield this.batchAt(epoch, index, order);
  }

  async *epochBatches(epoch = 0): AsyncGenerator<TextBatch> {
    yield* this.batchesSync(epoch);
  }

  /** Text has no undecodable files; the trainer asks every loader. */
  takeBadImages(): string[] {
    return [];
  }

  async close(): Promise<void> {}
}
