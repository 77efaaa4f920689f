// Property tests (fast-check) of the file readers: random bytes and damaged valid IDX / CIFAR files
// (raw and gzip) must give either a correct read or an Error naming the file, never a crash, a
// wrong-sized result or a hang. Sizes are bounded so the whole file runs in a few seconds.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';

import { CIFAR_LAYOUTS, CIFAR_PIXELS, parseCifarRecords, type CifarVariant } from '../src/data/cifar.js';
import { combineIdx, parseIdx, parseIdxMaybeGzip, type IdxArray } from '../src/data/idx.js';
import { balancedPrefixIndices } from '../src/data/datasets.js';
import { idxFile } from './helpers/idx.js';

const SOURCE = '/data/prop-file';


/** Runs a reader; an Error must name the file; a success must satisfy `check`. */
function readsOrExplains<T>(read: () => T, check: (value: T) => void): void {
  let value: T;
  try {
    value = read();
  } catch (error) {
    if (!(error instanceof Error)) throw error;
    assert.ok(error.message.includes(SOURCE), `error does not name the file: ${error.message}`);
    return;
  }
  check(value);
}

function checkIdx(array: IdxArray, kind: 'images' | 'labels'): void {
  assert.equal(array.dims.length, kind === 'images' ? 3 : 1);
  assert.equal(array.data.length, array.dims.reduce((product, size) => product * size, 1));
}

const mutation = fc.oneof(
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), value: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant('header' as const), at: fc.nat({ max: 3 }), value: fc.oneof(fc.nat({ max: 40 }), fc.constant(0xffffffff), fc.nat()) }),
  fc.record({ kind: fc.constant('append' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
);
type Mutation = typeof mutation extends fc.Arbitrary<infer M> ? M : never;

/** Applies mutations; 'header' rewrites one big-endian uint32 of the first 16 bytes. */
function mutate(bytes: Uint8Array, mutations: Mutation[]): Uint8Array {
  let file = Uint8Array.from(bytes);
  for (const change of mutations) {
    if (change.kind === 'truncate') {
      file = file.slice(0, change.at % (file.length + 1));
    } else if (change.kind === 'flip') {
      if (file.length > 0) file[change.at % file.length] ^= change.value;
    } else if (change.kind === 'header') {
      const offset = change.at * 4;
      if (offset + 4 <= file.length) new DataView(file.buffer).setUint32(offset, change.value >>> 0, false);
    } else {
      const longer = new Uint8Array(file.length + change.bytes.length);
      longer.set(file);
      longer.set(change.bytes, file.length);
      file = longer;
    }
  }
  return file;
}

const smallImages = fc
  .record({ count: fc.integer({ min: 0, max: 4 }), rows: fc.integer({ min: 1, max: 6 }), columns: fc.integer({ min: 1, max: 6 }) })
  .chain(({ count, rows, columns }) =>
    fc.uint8Array({ minLength: count * rows * columns, maxLength: count * rows * columns }).map((data) => idxFile(0x803, [count, rows, columns], data)),
  );
const smallLabels = fc.uint8Array({ maxLength: 12 }).map((data) => idxFile(0x801, [data.length], data));

describe('IDX reader properties', () => {
  test('random bytes: a correct read or an Error naming the file', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.constantFrom('images' as const, 'labels' as const), (bytes, kind) => {
        readsOrExplains(() => parseIdxMaybeGzip(bytes, kind, 'prop', SOURCE), (array) => checkIdx(array, kind));
      }),
      { numRuns: 600 },
    );
    // Random bytes behind a valid magic number exercise the dimension checks.
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), (rest) => {
        const bytes = new Uint8Array(4 + rest.length);
        bytes.set([0, 0, 8, 3]);
        bytes.set(rest, 4);
        readsOrExplains(() => parseIdx(bytes, 'images', 'prop', SOURCE), (array) => checkIdx(array, 'images'));
      }),
      { numRuns: 400 },
    );
  });

  test('mutated valid files (raw and gzip): a correct read or an Error naming the file', () => {
    fc.assert(
      fc.property(
        fc.oneof(smallImages.map((file) => ({ file, kind: 'images' as const })), smallLabels.map((file) => ({ file, kind: 'labels' as const }))),
        fc.boolean(),
        fc.array(mutation, { minLength: 1, maxLength: 3 }),
        fc.boolean(),
        ({ file, kind }, compressed, mutations, mutateCompressed) => {
          // Either damage the IDX bytes and then compress them, or damage the compressed stream.
          const bytes = compressed
            ? mutateCompressed
              ? mutate(gzipSync(file), mutations)
              : gzipSync(mutate(file, mutations))
            : mutate(file, mutations);
          readsOrExplains(
            () => parseIdxMaybeGzip(bytes, kind, 'prop', SOURCE),
            (array) => {
              checkIdx(array, kind);
              // A read that succeeds on undamaged content must return exactly the original data.
              if (!compressed || !mutateCompressed) {
                const plain = compressed ? mutate(file, mutations) : bytes;
                assert.deepEqual(array.data, plain.subarray(4 + 4 * array.dims.length));
              }
            },
          );
        },
      ),
      { numRuns: 400 },
    );
  });

  test('image/label pairing: counts and label ranges are enforced', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 5 }), fc.integer({ min: 0, max: 5 }), fc.uint8Array({ maxLength: 5 }), (imageCount, labelCount, labelBytes) => {
        const images = { dims: [imageCount, 2, 2], data: new Uint8Array(imageCount * 4) };
        const labelData = Uint8Array.from({ length: labelCount }, (_, index) => labelBytes[index] ?? index % 10);
        const labels = { dims: [labelCount], data: labelData };
        readsOrExplains(
          () => combineIdx(images, labels, 10, 'prop', SOURCE, SOURCE),
          (split) => {
            assert.equal(imageCount, labelCount);
            assert.ok([...split.labels].every((label) => label >= 0 && label < 10));
            assert.deepEqual([...split.labels], [...labelData]);
          },
        );
        if (imageCount !== labelCount || labelData.some((label) => label >= 10)) {
          assert.throws(() => combineIdx(images, labels, 10, 'prop', SOURCE, SOURCE), /prop-file/);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('CIFAR reader properties', () => {
  const variant = fc.constantFrom<CifarVariant>('cifar10', 'cifar100');

  test('random and mutated files: a correct read or an Error naming the file', () => {
    fc.assert(
      fc.property(variant, fc.integer({ min: 0, max: 3 }), fc.array(mutation, { maxLength: 3 }), fc.nat(), (name, records, mutations, labelSeed) => {
        const layout = CIFAR_LAYOUTS[name];
        const file = new Uint8Array(records * layout.recordBytes);
        for (let record = 0; record < records; record++) {
          layout.labelRanges.forEach((range, labelByte) => {
            file[record * layout.recordBytes + labelByte] = (labelSeed + record * 7 + labelByte) % range;
          });
          for (let pixel = 0; pixel < 16; pixel++) file[record * layout.recordBytes + layout.labelBytes + pixel * 100] = pixel * 13;
        }
        const bytes = mutate(file, mutations);
        readsOrExplains(
          () => parseCifarRecords(bytes, name, SOURCE),
          (parsed) => {
            assert.equal(bytes.length % layout.recordBytes, 0);
            assert.equal(parsed.count, bytes.length / layout.recordBytes);
            assert.equal(parsed.images.length, parsed.count * CIFAR_PIXELS);
            for (let record = 0; record < parsed.count; record++) {
              assert.equal(parsed.labels[record], bytes[record * layout.recordBytes + layout.labelIndex]);
              assert.ok(parsed.labels[record]! < layout.numClasses);
            }
          },
        );
      }),
      { numRuns: 300 },
    );
    fc.assert(
      fc.property(variant, fc.uint8Array({ maxLength: 64 }), (name, bytes) => {
        readsOrExplains(() => parseCifarRecords(bytes, name, SOURCE), (parsed) => assert.equal(parsed.count, 0));
      }),
      { numRuns: 300 },
    );
  });
});

describe('limit properties', () => {
  test('the balanced prefix has the requested size, is sorted and balanced', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 60 }), fc.integer({ min: 1, max: 70 }), (labelList, limit) => {
        const labels = Int32Array.from(labelList);
        const chosen = balancedPrefixIndices(labels, 5, limit);
        assert.equal(chosen.length, Math.min(limit, labels.length));
        for (let index = 1; index < chosen.length; index++) assert.ok(chosen[index]! > chosen[index - 1]!);
        // Any class with fewer picks than another must have run out of samples.
        const available = new Array<number>(5).fill(0);
        const picked = new Array<number>(5).fill(0);
        for (const label of labels) available[label]!++;
        for (const index of chosen) picked[labels[index]!]!++;
        const most = Math.max(...picked);
        for (let label = 0; label < 5; label++) assert.ok(picked[label]! >= most - 1 || picked[label] === available[label]);
      }),
      { numRuns: 300 },
    );
  });
});
