// A deterministic WordPiece vocabulary learner: the algorithm of Hugging Face's WordPieceTrainer
// (byte-pair-style merges of the most frequent adjacent pieces, continuation pieces prefixed with
// '##'), with every tie broken by the pieces' text. The `tokenizers` bindings' own trainer is not
// reproducible: it numbers the '##' pieces in hash-map order, which changes per process, and ties
// between equally frequent pairs follow those numbers (measured: 3 of 5 trainings on the same 256
// texts gave other vocabularies), so two runs with the same seed would tokenize differently.
// Here the same words always give the same vocabulary, in the same order.

/** One candidate merge: the pair's pieces and how often it occurs (words weighted by their counts). */
interface PairEntry {
  key: string;
  left: string;
  right: string;
  count: number;
}

/** Max-heap by count, then by the merged text and the left piece (ascending), so ties resolve by text. */
class PairHeap {
  private readonly items: PairEntry[] = [];
  get size(): number {
    return this.items.length;
  }
  private before(a: PairEntry, b: PairEntry): boolean {
    if (a.count !== b.count) return a.count > b.count;
    return a.key < b.key;
  }
  push(entry: PairEntry): void {
    const items = this.items;
    items.push(entry);
    let index = items.length - 1;
    while (index > 0) {
      const parent = (index - 1) >> 1;
      if (!this.before(items[index], items[parent])) break;
      [items[index], items[parent]] = [items[parent], items[index]];
      index = parent;
    }
  }
  pop(): PairEntry | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (items.length > 0 && last !== undefined) {
      items[0] = last;
      let index = 0;
      for (;;) {
        const left = 2 * index + 1;
        const right = left + 1;
        let best = index;
        if (left < items.length && this.before(items[left], items[best])) best = left;
        if (right < items.length && this.before(items[right], items[best])) best = right;
        if (best === index) break;
        [items[index], items[best]] = [items[best], items[index]];
        index = best;
      }
    }
    return top;
  }
}

/** The piece two adjacent pieces merge into: 'ab' from 'a' + '##b', '##ab' from '##a' + '##b'. */
function merged(left: string, right: string, prefix: string): string {
  return left + right.slice(prefix.length);
}

/**
 * The vocabulary learned from word counts (words as the pre-tokenizer splits them): first every
 * character that starts a word, sorted, then every continuation character ('##c'), sorted, then
 * merged pieces in the order they are learned (most frequent pair first; ties by the merged text),
 * until `limit` pieces or no pair is left. Special tokens are the caller's to put in front.
 */
export function learnWordPieces(wordCounts: ReadonlyMap<string, number>, limit: number, prefix = '##'): string[] {
  const words: string[][] = [];
  const counts: number[] = [];
  const starts = new Set<string>();
  const continuations = new Set<string>();
  for (const [word, count] of [...wordCounts.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))) {
    const characters = [...word];
    if (characters.length === 0) continue;
    const pieces = characters.map((character, index) => (index === 0 ? character : prefix + character));
    starts.add(pieces[0]);
    for (const piece of pieces.slice(1)) continuations.add(piece);
    words.push(pieces);
    counts.push(count);
  }
  const vocabulary = [...[...starts].sort(), ...[...continuations].sort()];
  const known = new Set(vocabulary);
  // Pair counts and, for each pair, the words that hold it.
  const pairCounts = new Map<string, number>();
  const pairWords = new Map<string, Set<number>>();
  const pairParts = new Map<string, [string, string]>();
  const keyOf = (left: string, right: string): string => `${left}\u0000${right}`;
  const addPairs = (index: number, sign: 1 | -1, touched: Set<string>): void => {
    const pieces = words[index];
    for (let position = 0; position + 1 < pieces.length; position++) {
      const key = keyOf(pieces[position], pieces[position + 1]);
      pairCounts.set(key, (pairCounts.get(key) ?? 0) + sign * counts[index]);
      if (sign > 0) {
        let holders = pairWords.get(key);
        if (!holders) pairWords.set(key, holders = new Set());
        holders.add(index);
        pairParts.set(key, [pieces[position], pieces[position + 1]]);
      }
      touched.add(key);
    }
  };
  const heap = new PairHeap();
  const pushPair = (key: string): void => {
    const count = pairCounts.get(key) ?? 0;
    const parts = pairParts.get(key);
    if (count > 0 && parts) heap.push({ key: merged(parts[0], parts[1], prefix) + '\u0000' + parts[0], left: parts[0], right: parts[1], count });
  };
  const initial = new Set<string>();
  words.forEach((_, index) => addPairs(index, 1, initial));
  for (const key of initial) pushPair(key);
  while (vocabulary.length < limit && heap.size > 0) {
    const entry = heap.pop()!;
    const key = keyOf(entry.left, entry.right);
    // A stale entry (the pair's count changed since it was pushed) is skipped; the current one is in the heap too.
    if ((pairCounts.get(key) ?? 0) !== entry.count) continue;
    const piece = merged(entry.left, entry.right, prefix);
    if (!known.has(piece)) {
      known.add(piece);
      vocabulary.push(piece);
    }
    const touched = new Set<string>();
    for (const index of [...(pairWords.get(key) ?? [])]) {
      const pieces = words[index];
      addPairs(index, -1, touched);
      const next: string[] = [];
      for (let position = 0; position < pieces.length; position++) {
        if (position + 1 < pieces.length && pieces[position] === entry.left && pieces[position + 1] === entry.right) {
          next.push(piece);
          position++;
        } else {
          next.push(pieces[position]);
        }
      }
      words[index] = next;
      addPairs(index, 1, touched);
    }
    pairCounts.delete(key);
    pairWords.delete(key);
    for (const changed of touched) if (changed !== key) pushPair(changed);
  }
  return vocabulary;
}
