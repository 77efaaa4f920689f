// GLUE-style labelled text tables: DIR/train.tsv and DIR/dev.tsv (or .csv), one example a row,
// one or two text columns (a sentence or a sentence pair) and a label column, with a header row
// or without one. GLUE's own files come as they are: SST-2 (sentence, label), MRPC (Quality,
// #1 ID, #2 ID, #1 String, #2 String), QNLI (index, question, sentence, label), RTE / WNLI
// (index, sentence1, sentence2, label); CoLA, which has no header, by column numbers.
//
// TSV is read as GLUE's own processors read it (csv.reader with quotechar None): a tab separates
// fields and quotes are text ('"' opens many MRPC sentences). CSV follows RFC 4180 (double quotes
// around fields that hold commas, quotes or newlines; "" is a quote).
import { existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';

/** An error in a table the user can fix, naming the file (and the line). */
export class TableError extends Error {}

/** One example: its text (or pair) and its label as written in the file. */
export interface TableRow {
  text: string;
  pair: string | null;
  label: string;
  /** 1-based line of the file where the row starts (for messages). */
  line: number;
}

export interface TableColumns {
  /**
   * The text column, or the two of a pair: header names, or 0-based column numbers for a file
   * without a header. null: GLUE's layouts by header (sentence1 + sentence2, question + sentence,
   * question1 + question2, #1 String + #2 String, sentence).
   */
  text: readonly string[] | null;
  /** The label column's name or 0-based number; null: 'label', else 'Quality' (MRPC), 'is_duplicate' (QQP), 'gold_label' (MNLI). */
  label: string | null;
}

/** The header pairs and single columns GLUE's tasks use, tried in this order when no text columns are given. */
const GLUE_TEXT_COLUMNS: readonly (readonly string[])[] = [
  ['sentence1', 'sentence2'], ['question', 'sentence'], ['question1', 'question2'], ['#1 String', '#2 String'], ['premise', 'hypothesis'], ['sentence'], ['text'],
];
const GLUE_LABEL_COLUMNS = ['label', 'Quality', 'is_duplicate', 'gold_label'];

/** DIR/NAME.tsv or DIR/NAME.csv, whichever exists (both: an error, the choice would be a guess). */
export function findTable(directory: string, name: string): string {
  const candidates = ['tsv', 'csv'].map((extension) => join(directory, `${name}.${extension}`)).filter((path) => existsSync(path));
  if (candidates.length === 0) throw new TableError(`text data: ${join(directory, `${name}.tsv`)} (or .csv) not found; --dataset text reads DIR/train.tsv and DIR/dev.tsv (GLUE's layout)`);
  if (candidates.length > 1) throw new TableError(`text data: both ${candidates.join(' and ')} exist; keep one`);
  return candidates[0];
}

/** The records of a table's text with their 1-based starting lines. */
export function splitRecords(text: string, format: 'tsv' | 'csv', file: string): { fields: string[]; line: number }[] {
  const records: { fields: string[]; line: number }[] = [];
  const body = text.startsWith('\uFEFF') ? text.slice(1) : text;
  if (format === 'tsv') {
    body.split('\n').forEach((raw, index) => {
      const line = raw.replace(/\r$/, '');
      if (line.trim() !== '') records.push({ fields: line.split('\t'), line: index + 1 });
    });
    return records;
  }
  let fields: string[] = [];
  let field = '';
  let quoted = false;
  let line = 1;
  let start = 1;
  let atFieldStart = true;
  for (let index = 0; index < body.length; index++) {
    const char = body[index];
    if (quoted) {
      if (char === '"' && body[index + 1] === '"') {
        field += '"';
        index++;
      } else if (char === '"') {
        quoted = false;
      } else {
        if (char === '\n') line++;
        field += char;
      }
      continue;
    }
    if (char === '"' && atFieldStart) {
      quoted = true;
      atFieldStart = false;
    } else if (char === ',') {
      fields.push(field);
      field = '';
      atFieldStart = true;
    } else if (char === '\n' || char === '\r') {
      if (char === '\r' && body[index + 1] === '\n') index++;
      fields.push(field);
      if (!(fields.length === 1 && fields[0].trim() === '')) records.push({ fields, line: start });
      fields = [];
      field = '';
      atFieldStart = true;
      line++;
      start = line;
    } else {
      field += char;
      atFieldStart = false;
    }
  }
  if (quoted) throw new TableError(`${file}:${start}: a quoted field is not closed before the end of the file`);
  fields.push(field);
  if (!(fields.length === 1 && fields[0].trim() === '')) records.push({ fields, line: start });
  return records;
}

/** A column spec as a number when it is one (a file without a header), else null. */
function columnNumber(spec: string): number | null {
  return /^\d+$/.test(spec) ? Number(spec) : null;
}

/**
 * The examples of one table. Columns named by header names need a header row (its first row);
 * columns given by number read a file without one. A row with too few fields, or an empty text
 * or label, is an error naming the file and line.
 */
export function readTable(path: string, columns: TableColumns): TableRow[] {
  const format = path.toLowerCase().endsWith('.csv') ? 'csv' : 'tsv';
  let content: string;
  try {
    content = readFileSync(path, 'utf8');
  } catch (error) {
    throw new TableError(`text data: cannot read ${path}: ${(error as Error).message}`);
  }
  const records = splitRecords(content, format, path);
  if (records.length === 0) throw new TableError(`${path}: holds no rows`);
  const specs = [...(columns.text ?? []), ...(columns.label === null ? [] : [columns.label])];
  const numbers = specs.map(columnNumber);
  if (numbers.some((number) => number !== null) && numbers.some((number) => number === null)) {
    throw new TableError(`${path}: columns are given both by number and by name (${specs.join(', ')}); use header names, or 0-based numbers for a file without a header`);
  }
  const byNumber = specs.length > 0 && numbers.every((number) => number !== null);
  let textIndices: number[];
  let labelIndex: number;
  let rows = records;
  if (byNumber) {
    if (columns.text === null || columns.label === null) throw new TableError(`${path}: columns by number need both --text-columns and --label-column (a file without a header has no names to find them by)`);
    textIndices = columns.text.map((spec) => Number(spec));
    labelIndex = Number(columns.label);
  } else {
    const header = records[0].fields.map((name) => name.trim());
    rows = records.slice(1);
    const find = (name: string): number => header.indexOf(name);
    const text = columns.text ?? GLUE_TEXT_COLUMNS.find((names) => names.every((name) => find(name) >= 0)) ?? null;
    if (text === null) {
      throw new TableError(`${path}:1: no known text column in the header (${header.join(', ')}); name them with --text-columns (one, or two for a pair), or give 0-based column numbers for a file without a header`);
    }
    const label = columns.label ?? GLUE_LABEL_COLUMNS.find((name) => find(name) >= 0) ?? 'label';
    const missing = [...text, label].filter((name) => find(name) < 0);
    if (missing.length) {
      throw new TableError(`${path}:1: the header (${header.join(', ')}) has no column ${missing.map((name) => `'${name}'`).join(', ')}; ` +
        `check --text-columns / --label-column, or give 0-based column numbers for a file without a header`);
    }
    textIndices = text.map(find);
    labelIndex = find(label);
  }
  if (textIndices.length < 1 || textIndices.length > 2) throw new TableError(`${path}: --text-columns takes one column or two (a pair), got ${textIndices.length}`);
  const needed = Math.max(labelIndex, ...textIndices) + 1;
  const name = basename(path);
  return rows.map(({ fields, line }) => {
    if (fields.length < needed) {
      throw new TableError(`${path}:${line}: malformed row: ${fields.length} field(s), the columns used need ${needed}${format === 'tsv' ? ' (tab-separated)' : ''}`);
    }
    const label = fields[labelIndex].trim();
    if (label === '') throw new TableError(`${path}:${line}: empty label in column ${labelIndex} of ${name}`);
    const texts = textIndices.map((index) => fields[index]);
    if (texts.every((text) => text.trim() === '')) throw new TableError(`${path}:${line}: empty text`);
    return { text: texts[0], pair: texts.length > 1 ? texts[1] : null, label, line };
  });
}

/**
 * Label names in index order: the sorted distinct labels of the training rows (numbers
 * numerically: '10' after '9'), as folders' classes are the sorted folder names.
 */
export function labelClasses(rows: readonly TableRow[]): string[] {
  const distinct = [...new Set(rows.map((row) => row.label))];
  const numeric = distinct.every((label) => /^-?\d+(\.\d+)?$/.test(label));
  return distinct.sort((a, b) => (numeric ? Number(a) - Number(b) : a < b ? -1 : a > b ? 1 : 0));
}

/** Each row's label index in `classes`; a label the classes lack is an error naming the row. */
export function labelIndices(rows: readonly TableRow[], classes: readonly string[], path: string): Int32Array {
  const index = new Map(classes.map((name, position) => [name, position]));
  return Int32Array.from(rows, (row) => {
    const label = index.get(row.label);
    if (label === undefined) throw new TableError(`${path}:${row.line}: label '${row.label}' is not one of the training labels (${classes.join(', ')})`);
    return label;
  });
}
