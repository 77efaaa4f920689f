// Image files on disk as a labelled list: the ImageFolder layout that torchvision and timm read
// (DIR/train/<class>/..., DIR/val/<class>/..., so also ImageNet's train/nXXXXXXXX/ folders) and
// file lists (one `path<TAB or comma>label` per line) for data that is not laid out in folders.
//
// The class index is the position of the class name in the sorted list of names, as in
// torchvision's find_classes, so a folder trained here and in PyTorch gives the same labels. The
// map of the training split is the one that counts: the evaluation split is read with it (a class
// folder there that training does not know is an error), and the trainer records it in the run's
// config so that a resumed run and `eval` use the same map even if folders are added later.
// Only files are read here; nothing in the data directory is ever written.

import { readdirSync, readFileSync, statSync, type Dirent } from 'node:fs';
import { dirname, extname, isAbsolute, join, relative, resolve } from 'node:path';

/** File name endings taken as images (compared lower-case, as torchvision does). */
export const IMAGE_EXTENSIONS: readonly string[] = ['.jpg', '.jpeg', '.png', '.webp'];

/** A labelled list of image files. */
export interface ImageFileList {
  /** Absolute paths, in reading order. */
  paths: string[];
  labels: Int32Array;
  /** Class names in label order (index = label). */
  classes: string[];
  /** Files that were skipped because their name does not end in an image extension. */
  skippedFiles: number;
  /** Where the list came from (a folder or a list file), for messages. */
  source: string;
}

export function isImageFile(name: string): boolean {
  return IMAGE_EXTENSIONS.includes(extname(name).toLowerCase());
}

/** Sorts like Python's sorted() on str for every name without characters outside the BMP. */
function sortedNames(names: string[]): string[] {
  return [...names].sort((left, right) => (left < right ? -1 : left > right ? 1 : 0));
}

function readDirectory(directory: string, what: string): Dirent[] {
  try {
    return readdirSync(directory, { withFileTypes: true });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new Error(`${what} ${directory} does not exist`);
    if (code === 'ENOTDIR') throw new Error(`${what} ${directory} is not a directory`);
    throw new Error(`${what} ${directory} cannot be read: ${(error as Error).message}`);
  }
}

/** Whether an entry is a directory, following symbolic links (torchvision walks with followlinks). */
function isDirectoryEntry(directory: string, entry: Dirent): boolean {
  if (entry.isDirectory()) return true;
  if (!entry.isSymbolicLink()) return false;
  try {
    return statSync(join(directory, entry.name)).isDirectory();
  } catch {
    return false;
  }
}

/** Image files below a class folder, depth first, names sorted at each level (os.walk + sorted). */
function collectImages(directory: string, into: string[], skipped: { count: number }): void {
  const entries = readDirectory(directory, 'class folder');
  const files: string[] = [];
  const folders: string[] = [];
  for (const entry of entries) {
    if (isDirectoryEntry(directory, entry)) folders.push(entry.name);
    else if (isImageFile(entry.name)) files.push(entry.name);
    else skipped.count++;
  }
  for (const name of sortedNames(files)) into.push(join(directory, name));
  for (const name of sortedNames(folders)) collectImages(join(directory, name), into, skipped);
}

/** The split folder of an ImageFolder tree; the evaluation split is 'val', or 'test' when only that exists. */
export function splitDirectory(root: string, split: 'train' | 'test'): string {
  if (split === 'train') return join(root, 'train');
  const validation = join(root, 'val');
  try {
    if (statSync(validation).isDirectory()) return validation;
  } catch {
    // fall through to test/
  }
  try {
    if (statSync(join(root, 'test')).isDirectory()) return join(root, 'test');
  } catch {
    // neither exists: name the usual one in the error
  }
  return validation;
}

/**
 * Reads one split of an ImageFolder tree. `classes` (the training split's map) fixes the labels;
 * without it the sorted folder names are the classes. A training class folder without images is
 * an error (as in torchvision); an evaluation class folder may be empty.
 */
export function scanImageFolder(directory: string, options: { classes?: readonly string[]; requireEveryClass?: boolean } = {}): ImageFileList {
  const root = resolve(directory);
  const entries = readDirectory(root, 'image folder');
  const folderNames = sortedNames(entries.filter((entry) => isDirectoryEntry(root, entry)).map((entry) => entry.name));
  if (folderNames.length === 0) {
    throw new Error(`image folder ${root} holds no class folders; expected ${root}/<class>/<image files>`);
  }
  const classes = options.classes ? [...options.classes] : folderNames;
  const indexOf = new Map(classes.map((name, index) => [name, index]));
  const unknown = folderNames.filter((name) => !indexOf.has(name));
  if (unknown.length > 0) {
    throw new Error(`image folder ${root}: class folder(s) ${unknown.slice(0, 5).join(', ')}${unknown.length > 5 ? ', ...' : ''} are not among the ${classes.length} training classes`);
  }
  const paths: string[] = [];
  const labels: number[] = [];
  const skipped = { count: 0 };
  for (const name of folderNames) {
    const before = paths.length;
    collectImages(join(root, name), paths, skipped);
    if (paths.length === before && options.requireEveryClass) {
      throw new Error(`image folder ${root}: class folder ${name} holds no image files (${IMAGE_EXTENSIONS.join(', ')}); add images or remove the folder`);
    }
    for (let index = before; index < paths.length; index++) labels.push(indexOf.get(name)!);
  }
  return { paths, labels: Int32Array.from(labels), classes, skippedFiles: skipped.count, source: root };
}

/**
 * Reads a list file: one `path<TAB>label` or `path,label` per line (the label after the last
 * separator, so paths may hold commas); blank lines and lines starting with '#' are skipped, and
 * so is a first line whose label is 'label' or 'class' (a header). Relative paths are resolved
 * against `base` (default: the list file's directory). Labels are class names; the classes are
 * their sorted set, unless every label is a non-negative integer, which is then the index itself.
 */
export function readImageList(file: string, options: { base?: string; classes?: readonly string[] } = {}): ImageFileList {
  const listPath = resolve(file);
  let text: string;
  try {
    text = readFileSync(listPath, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new Error(`image list ${listPath} ${code === 'ENOENT' ? 'does not exist' : `cannot be read: ${(error as Error).message}`}`);
  }
  const base = resolve(options.base ?? dirname(listPath));
  const rows: { path: string; label: string }[] = [];
  let skippedFiles = 0;
  const lines = text.split(/\r?\n/);
  for (let lineIndex = 0; lineIndex < lines.length; lineIndex++) {
    const line = lines[lineIndex]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    const separator = line.includes('\t') ? line.lastIndexOf('\t') : line.lastIndexOf(',');
    if (separator <= 0 || separator === line.length - 1) {
      throw new Error(`image list ${listPath}, line ${lineIndex + 1}: expected 'path<TAB>label' or 'path,label', got '${line.slice(0, 80)}'`);
    }
    const path = line.slice(0, separator).trim();
    const label = line.slice(separator + 1).trim();
    if (rows.length === 0 && skippedFiles === 0 && /^(label|class)$/i.test(label)) continue;
    if (!isImageFile(path)) {
      skippedFiles++;
      continue;
    }
    rows.push({ path: isAbsolute(path) ? path : join(base, path), label });
  }
  if (rows.length === 0) throw new Error(`image list ${listPath} names no image files`);
  let classes: string[];
  let labelOf: (label: string) => number | undefined;
  if (options.classes) {
    classes = [...options.classes];
    const indexOf = new Map(classes.map((name, index) => [name, index]));
    labelOf = (label) => indexOf.get(label);
  } else if (rows.every((row) => /^\d+$/.test(row.label))) {
    const largest = Math.max(...rows.map((row) => Number(row.label)));
    classes = Array.from({ length: largest + 1 }, (_, index) => String(index));
    labelOf = (label) => Number(label);
  } else {
    classes = sortedNames([...new Set(rows.map((row) => row.label))]);
    const indexOf = new Map(classes.map((name, index) => [name, index]));
    labelOf = (label) => indexOf.get(label);
  }
  const labels = new Int32Array(rows.length);
  rows.forEach((row, index) => {
    const label = labelOf(row.label);
    if (label === undefined || !(label >= 0 && label < classes.length)) {
      throw new Error(`image list ${listPath}: label '${row.label}' of ${relative(base, row.path)} is not one of the ${classes.length} training classes`);
    }
    labels[index] = label;
  });
  return { paths: rows.map((row) => row.path), labels, classes, skippedFiles, source: listPath };
}
