// The text data sets as the trainer and eval load them: the examples of a split (Debian's package
// descriptions by section, or a GLUE-style table), the tokenizer (the user's file, the run's saved
// tokenizer.json, or a WordPiece vocabulary trained on the training texts) and the encoded splits.
import { existsSync } from 'node:fs';
import { readDebianPackages, splitBySection } from './debian-packages.js';
import { findTable, labelClasses, labelIndices, readTable, TableError } from './table.js';
import { encodeTextDataset, type TextDataset, type TextDatasetName, type TextExample } from './text-dataset.js';
import { TextTokenizer } from './tokenizer.js';

/**
 * debian-packages keeps the 10 most frequent sections (on Debian 12's lists: libs, libdevel,
 * python, doc, perl, devel, utils, haskell, net, rust; 2,040 to 6,711 packages each, 60% of all
 * packages): each class has thousands of examples, and the rest are the long tail of sections
 * with a few hundred. 20% of each section is the test split, drawn with a fixed seed (0), not the
 * run's --seed: every seed and method of a comparison is tested on the same packages.
 */
export const DEBIAN_SECTIONS = 10;
export const DEBIAN_TEST_FRACTION = 0.2;
export const DEBIAN_SPLIT_SEED = 0;

export interface TextSplitsOptions {
  dataset: TextDatasetName;
  /** --dataset text: the directory holding train.tsv and dev.tsv (or .csv). */
  dataDir: string | null;
  textColumns: readonly string[] | null;
  labelColumn: string | null;
  maxLength: number;
  /** A tokenizer.json or BERT vocab.txt given by the user. */
  tokenizer: string | null;
  /** The run's own tokenizer.json, used when it exists (resume, eval) and no tokenizer is given. */
  saved: string | null;
  /** Size of the WordPiece vocabulary trained when there is no tokenizer. */
  vocabSize: number;
  /** Label names in index order, recorded by the run (null: from the training split). */
  classes: readonly string[] | null;
  limitTrain: number | null;
  limitTest: number | null;
}

export interface TextSplits {
  train: TextDataset;
  test: TextDataset;
  tokenizer: TextTokenizer;
  /** What the tokenizer is: the given file, the run's saved one, or 'trained'. */
  tokenizerSource: string;
}

interface RawSplits {
  train: TextExample[];
  test: TextExample[];
  classes: string[];
  source: { train: string; test: string };
}

function readDebian(classes: readonly string[] | null): RawSplits {
  const split = splitBySection(readDebianPackages(), { topSections: DEBIAN_SECTIONS, testFraction: DEBIAN_TEST_FRACTION, seed: DEBIAN_SPLIT_SEED });
  let order = split.classes;
  if (classes !== null) {
    // The run's record wins; the lists may have changed since (apt-get update).
    const missing = classes.filter((name) => !split.classes.includes(name));
    if (missing.length || classes.length !== split.classes.length) {
      throw new TableError(`debian packages: the run was trained on the sections ${classes.join(', ')}, but this machine's ${DEBIAN_SECTIONS} most frequent are ${split.classes.join(', ')} (the APT lists changed)`);
    }
    order = [...classes];
  }
  const remap = split.classes.map((name) => order.indexOf(name));
  const examples = (items: typeof split.train): TextExample[] => items.map((item) => ({ text: item.text, pair: null, label: remap[item.label] }));
  return { train: examples(split.train), test: examples(split.test), classes: order, source: { train: "apt-cache dumpavail (train)", test: "apt-cache dumpavail (test)" } };
}

function readTables(options: TextSplitsOptions): RawSplits {
  if (options.dataDir === null) throw new TableError('dataset text needs --data-dir DIR holding train.tsv and dev.tsv (or .csv)');
  const columns = { text: options.textColumns, label: options.labelColumn };
  const trainPath = findTable(options.dataDir, 'train');
  const testPath = findTable(options.dataDir, 'dev');
  const trainRows = readTable(trainPath, columns);
  const testRows = readTable(testPath, columns);
  const classes = options.classes === null ? labelClasses(trainRows) : [...options.classes];
  if (classes.length < 2) throw new TableError(`${trainPath}: only one label (${classes.join(', ')}); classification needs two or more`);
  const examples = (rows: typeof trainRows, path: string): TextExample[] => {
    const labels = labelIndices(rows, classes, path);
    return rows.map((row, index) => ({ text: row.text, pair: row.pair, label: labels[index] }));
  };
  return { train: examples(trainRows, trainPath), test: examples(testRows, testPath), classes, source: { train: trainPath, test: testPath } };
}

/**
 * The tokenizer the options name, the run's saved one, or a WordPiece vocabulary trained on
 * `texts` (the training texts; CLIP's training captions, src/train/clip.ts).
 */
export function chooseTokenizer(options: Pick<TextSplitsOptions, 'tokenizer' | 'saved' | 'vocabSize'>, texts: () => string[]): { tokenizer: TextTokenizer; source: string } {
  const load = (path: string): TextTokenizer => {
    try {
      return path.toLowerCase().endsWith('.json') ? TextTokenizer.fromTokenizerJson(path) : TextTokenizer.fromVocab(path);
    } catch (error) {
      throw new TableError(`tokenizer ${path}: ${(error as Error).message}`);
    }
  };
  if (options.tokenizer !== null) {
    if (!existsSync(options.tokenizer)) throw new TableError(`tokenizer ${options.tokenizer}: not found (give a tokenizer.json or a BERT vocab.txt)`);
    return { tokenizer: load(options.tokenizer), source: options.tokenizer };
  }
  if (options.saved !== null && existsSync(options.saved)) return { tokenizer: load(options.saved), source: options.saved };
  return { tokenizer: TextTokenizer.train(texts(), { vocabSize: options.vocabSize }), source: 'trained' };
}

/** Reads, limits, tokenizes and encodes both splits. Errors name the file, line or setting. */
export async function loadTextSplits(options: TextSplitsOptions): Promise<TextSplits> {
  const raw = options.dataset === 'debian-packages' ? readDebian(options.classes) : readTables(options);
  const train = options.limitTrain === null ? raw.train : raw.train.slice(0, options.limitTrain);
  const test = options.limitTest === null ? raw.test : raw.test.slice(0, options.limitTest);
  if (train.length === 0 || test.length === 0) throw new TableError(`${options.dataset}: the ${train.length === 0 ? 'training' : 'test'} split holds no examples`);
  const { tokenizer, source } = chooseTokenizer(options, () => train.flatMap((example) => (example.pair === null ? [example.text] : [example.text, example.pair])));
  const encode = (examples: TextExample[], split: string, from: string): Promise<TextDataset> =>
    encodeTextDataset(examples, tokenizer, { name: options.dataset, split, source: from, maxLength: options.maxLength, classes: raw.classes });
  return { train: await encode(train, 'train', raw.source.train), test: await encode(test, 'test', raw.source.test), tokenizer, tokenizerSource: source };
}
