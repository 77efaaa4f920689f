// A real labelled text corpus that every Debian machine has without a download: the package
// descriptions of its APT lists (`apt-cache dumpavail`, or a Packages file), labelled by Section
// (python, libs, devel, games, ...). Parsed here, kept to the K most frequent sections and split
// into train and test with a seed. The corpus is read from the system each time and never written
// into the repository (its texts are the packages' own, under their licenses).
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Random } from '../random.js';

/** One binary package's record, as far as classification needs it. */
export interface PackageRecord {
  name: string;
  /** The section without its archive area ('contrib/games' -> 'games'). */
  section: string;
  /** The Description field's first line. */
  synopsis: string;
  /** The long description's paragraphs joined by newlines ('' where the lists carry only synopses, as Debian's main Packages files do). */
  description: string;
}

/** A labelled text: label is the index of its section in {@link TextClassificationSplit.classes}. */
export interface LabelledText {
  name: string;
  /** Synopsis, then the long description when there is one. */
  text: string;
  synopsis: string;
  description: string;
  label: number;
}

export interface TextClassificationSplit {
  /** The K sections kept, most frequent first; a label is an index into this. */
  classes: string[];
  train: LabelledText[];
  test: LabelledText[];
}

/**
 * Records of a Packages / dumpavail text: stanzas split by blank lines, fields `Name: value` with
 * continuation lines that start with a space or tab. Records without a Package, Section or
 * Description field are skipped; a package listed again (another suite or version) keeps its first record.
 */
export function parsePackages(text: string): PackageRecord[] {
  const records: PackageRecord[] = [];
  const seen = new Set<string>();
  for (const stanza of text.split(/\r?\n(?:[ \t]*\r?\n)+/)) {
    const fields = parseStanza(stanza);
    const name = fields.get('package');
    const section = fields.get('section');
    const description = fields.get('description');
    if (name === undefined || section === undefined || description === undefined || seen.has(name)) continue;
    seen.add(name);
    const [synopsis, ...long] = description.split('\n');
    records.push({
      name,
      section: section.trim().split('/').pop() ?? section.trim(),
      synopsis: synopsis.trim(),
      description: longDescription(long),
    });
  }
  return records;
}

/** A stanza's fields by lowercase name; a continuation line joins its field's value after a newline. */
function parseStanza(stanza: string): Map<string, string> {
  const fields = new Map<string, string>();
  let current: string | null = null;
  for (const line of stanza.split(/\r?\n/)) {
    if (line === '') continue;
    if ((line.startsWith(' ') || line.startsWith('\t')) && current !== null) {
      fields.set(current, `${fields.get(current) ?? ''}\n${line}`);
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    current = line.slice(0, colon).toLowerCase();
    fields.set(current, line.slice(colon + 1).trim());
  }
  return fields;
}

/**
 * Debian's long-description format (Policy 5.6.13): each line starts with a space; ' .' is an
 * empty line between paragraphs. Lines of a paragraph are joined by spaces, paragraphs by newlines.
 */
function longDescription(lines: string[]): string {
  const paragraphs: string[][] = [[]];
  for (const raw of lines) {
    const line = raw.replace(/^[ \t]/, '');
    if (line.trim() === '.') paragraphs.push([]);
    else if (line.trim() !== '') paragraphs[paragraphs.length - 1].push(line.trim());
  }
  return paragraphs.map((words) => words.join(' ')).filter((paragraph) => paragraph !== '').join('\n');
}

export interface ReadPackagesOptions {
  /** A Packages-format file (uncompressed) to read instead of asking apt. */
  file?: string;
}

/**
 * The package records this machine's APT knows: `apt-cache dumpavail` (it decompresses the lists
 * in /var/lib/apt/lists, lz4 on Debian 12), or the given file. Throws with what to do when there
 * are none: `apt-get update` fills the lists.
 */
export function readDebianPackages(options: ReadPackagesOptions = {}): PackageRecord[] {
  let text: string;
  if (options.file !== undefined) {
    text = readFileSync(options.file, 'utf8');
  } else {
    try {
      text = execFileSync('apt-cache', ['dumpavail'], { encoding: 'utf8', maxBuffer: 1 << 30, stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (error) {
      throw new Error(`debian packages: 'apt-cache dumpavail' failed (${(error as Error).message.split('\n')[0]}); this corpus needs a Debian or Ubuntu machine, or give a Packages file`);
    }
  }
  const records = parsePackages(text);
  if (!records.length) {
    throw new Error(`debian packages: no package records in ${options.file ?? "'apt-cache dumpavail'"}; run 'apt-get update' to fetch the package lists`);
  }
  return records;
}

export interface SplitOptions {
  /** Keep the K most frequent sections (ties: alphabetical). */
  topSections: number;
  /** Share of each section's packages in the test split, in (0, 1). Default 0.2. */
  testFraction?: number;
  seed: number;
}

/**
 * The K most frequent sections as classes and a seeded split that is stratified by section (each
 * class keeps round(n * testFraction) test packages, at least one when it has two or more), so a
 * rare class is in both splits. The same records and options always give the same split.
 */
export function splitBySection(records: readonly PackageRecord[], options: SplitOptions): TextClassificationSplit {
  const { topSections, seed } = options;
  const testFraction = options.testFraction ?? 0.2;
  if (!(Number.isInteger(topSections) && topSections >= 2)) throw new RangeError(`debian packages: topSections must be an integer of at least 2, got ${topSections}`);
  if (!(testFraction > 0 && testFraction < 1)) throw new RangeError(`debian packages: testFraction must be in (0, 1), got ${testFraction}`);
  const bySection = new Map<string, PackageRecord[]>();
  for (const record of records) {
    const list = bySection.get(record.section) ?? [];
    list.push(record);
    bySection.set(record.section, list);
  }
  const classes = [...bySection.entries()]
    .sort((a, b) => b[1].length - a[1].length || (a[0] < b[0] ? -1 : 1))
    .slice(0, topSections)
    .map(([section]) => section);
  if (classes.length < topSections) throw new Error(`debian packages: ${topSections} sections asked for, only ${classes.length} present`);
  const random = new Random(seed);
  const train: LabelledText[] = [];
  const test: LabelledText[] = [];
  classes.forEach((section, label) => {
    // Sorted by name first, so the split depends on the records, not on the lists' order.
    const members = [...(bySection.get(section) ?? [])].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    random.shuffle(members);
    const testCount = members.length < 2 ? 0 : Math.max(1, Math.round(members.length * testFraction));
    members.forEach((record, index) => (index < testCount ? test : train).push(labelled(record, label)));
  });
  // Interleave the classes: a loader that reads in order sees a mixed stream.
  random.shuffle(train);
  random.shuffle(test);
  return { classes, train, test };
}

function labelled(record: PackageRecord, label: number): LabelledText {
  const text = record.description ? `${record.synopsis}\n${record.description}` : record.synopsis;
  return { name: record.name, text, synopsis: record.synopsis, description: record.description, label };
}
