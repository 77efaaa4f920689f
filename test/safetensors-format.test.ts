// Tests of the safetensors byte format: round trips for every dtype, layout and alignment, files
// written by Python (struct + json + torch) read by us and ours read by Python with
// torch.frombuffer, every validation error, and fast-check properties on random and damaged bytes.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import fc from 'fast-check';
import { errorMessage } from './helpers/errors.js';

import {
  decodeSafetensors,
  DTYPE_NAME_TO_SAFE,
  encodeSafetensors,
  SAFE_DTYPE_SIZES,
  SAFE_DTYPE_TO_NAME,
  SAFE_DTYPES,
  type SafeDtype,
  type SafeTensorEntry,
} from '../src/tensor/safetensors-format.js';

const PYTHON = '/usr/bin/python3'; // the system Python has torch; `python3` on PATH may not
const temporaryRoot = mkdtempSync(join(tmpdir(), 'masksub-safetensors-test-'));
after(() => rmSync(temporaryRoot, { recursive: true, force: true }));

function bytesOf(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength).slice();
}

function halfToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 31) return fraction === 0 ? sign * Infinity : NaN;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

function bfloat16ToNumber(bits: number): number {
  const view = new DataView(new ArrayBuffer(4));
  view.setUint32(0, bits << 16, false);
  return view.getFloat32(0, false);
}

/** Element values of raw little-endian data as JS numbers (bool as 0/1). */
function valuesOf(entry: SafeTensorEntry): number[] {
  const data = entry.data.slice(); // aligned copy
  const view = new DataView(data.buffer);
  const size = SAFE_DTYPE_SIZES[entry.dtype];
  const out: number[] = [];
  for (let offset = 0; offset < data.length; offset += size) {
    switch (entry.dtype) {
      case 'F64': out.push(view.getFloat64(offset, true)); break;
      case 'F32': out.push(view.getFloat32(offset, true)); break;
      case 'F16': out.push(halfToNumber(view.getUint16(offset, true))); break;
      case 'BF16': out.push(bfloat16ToNumber(view.getUint16(offset, true))); break;
      case 'I64': out.push(Number(view.getBigInt64(offset, true))); break;
      case 'I32': out.push(view.getInt32(offset, true)); break;
      case 'I16': out.push(view.getInt16(offset, true)); break;
      case 'I8': out.push(view.getInt8(offset)); break;
      case 'U8': out.push(view.getUint8(offset)); break;
      case 'BOOL': out.push(view.getUint8(offset)); break;
    }
  }
  return out;
}

/** One tensor per dtype with values that exercise sign, range and special encodings. */
function sampleEntries(): Map<string, SafeTensorEntry> {
  const u16 = (values: number[]): Uint8Array => bytesOf(Uint16Array.from(values));
  return new Map<string, SafeTensorEntry>([
    ['weight.f32', { dtype: 'F32', shape: [2, 3], data: bytesOf(Float32Array.from([1.5, -2.25, 3e-8, 1e30, -0, 0.1])) }],
    ['weight.f64', { dtype: 'F64', shape: [3], data: bytesOf(Float64Array.from([Math.PI, -1e-300, 123456789.125])) }],
    // 1, -2, 65504 (largest half), 2^-24 (smallest subnormal), 0.33325
    ['half', { dtype: 'F16', shape: [5], data: u16([0x3c00, 0xc000, 0x7bff, 0x0001, 0x3555]) }],
    // 1, -3.140625, 3.3895e38, 2^-133 (subnormal)
    ['brain', { dtype: 'BF16', shape: [2, 2], data: u16([0x3f80, 0xc049, 0x7f7f, 0x0001]) }],
    ['step', { dtype: 'I64', shape: [], data: bytesOf(BigInt64Array.from([2n ** 40n + 3n])) }],
    ['counts.i64', { dtype: 'I64', shape: [4], data: bytesOf(BigInt64Array.from([0n, -1n, -(2n ** 50n), 7n])) }],
    ['i32', { dtype: 'I32', shape: [1, 3], data: bytesOf(Int32Array.from([-2147483648, 2147483647, 5])) }],
    ['i16', { dtype: 'I16', shape: [3], data: bytesOf(Int16Array.from([-32768, 32767, -2])) }],
    ['i8', { dtype: 'I8', shape: [3], data: bytesOf(Int8Array.from([-128, 127, 0])) }],
    ['u8', { dtype: 'U8', shape: [2, 2], data: Uint8Array.from([0, 255, 17, 128]) }],
    ['mask', { dtype: 'BOOL', shape: [3], data: Uint8Array.from([1, 0, 1]) }],
    ['empty', { dtype: 'F32', shape: [0, 4], data: new Uint8Array(0) }],
  ]);
}

/** Builds a file image from a header object and a data buffer, exactly as given. */
function rawFile(header: unknown, data: Uint8Array = new Uint8Array(0), padTo8 = false): Uint8Array {
  let json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  if (padTo8 && json.length % 8 !== 0) {
    const padded = new Uint8Array(Math.ceil(json.length / 8) * 8).fill(0x20);
    padded.set(json);
    json = padded;
  }
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

describe('safetensors round trip and layout', () => {
  test('every dtype round-trips with shape, bytes and metadata', () => {
    const entries = sampleEntries();
    const encoded = encodeSafetensors(entries, { format: 'pt', note: 'ünïcode ✓' });
    const decoded = decodeSafetensors(encoded, 'memory');
    assert.deepEqual(decoded.metadata, { format: 'pt', note: 'ünïcode ✓' });
    assert.equal(decoded.tensors.size, entries.size);
    for (const [name, entry] of entries) {
      const got = decoded.tensors.get(name);
      assert.ok(got !== undefined, name);
      assert.equal(got.dtype, entry.dtype);
      assert.deepEqual(got.shape, entry.shape);
      assert.deepEqual(got.data, entry.data);
    }
    assert.deepEqual(new Set([...entries.values()].map((entry) => entry.dtype)), new Set(SAFE_DTYPES));
    // Record input gives the same file.
    assert.deepEqual(encodeSafetensors(Object.fromEntries(entries), { format: 'pt', note: 'ünïcode ✓' }), encoded);
  });

  test('header padded to 8 bytes, tensors ordered by dtype size then name, each aligned', () => {
    const encoded = encodeSafetensors(sampleEntries());
    const headerSize = Number(new DataView(encoded.buffer).getBigUint64(0, true));
    assert.equal(headerSize % 8, 0);
    const text = new TextDecoder().decode(encoded.subarray(8, 8 + headerSize));
    assert.match(text, /^\{.*\} *$/);
    assert.ok(!text.includes('__metadata__'));
    const header = JSON.parse(text) as Record<string, { dtype: SafeDtype; data_offsets: [number, number] }>;
    const names = Object.keys(header);
    assert.deepEqual(names, [
      'counts.i64', 'step', 'weight.f64', // size 8
      'empty', 'i32', 'weight.f32', // size 4
      'brain', 'half', 'i16', // size 2
      'i8', 'mask', 'u8', // size 1
    ]);
    let expectedBegin = 0;
    for (const name of names) {
      const { dtype, data_offsets: [begin, end] } = header[name]!;
      assert.equal(begin, expectedBegin);
      assert.equal(begin % SAFE_DTYPE_SIZES[dtype], 0, `${name} aligned`);
      expectedBegin = end;
    }
    assert.equal(8 + headerSize + expectedBegin, encoded.length);
  });

  test('the header text follows the layout order even for integer-like names', () => {
    const one = (value: number): SafeTensorEntry => ({ dtype: 'U8', shape: [1], data: Uint8Array.from([value]) });
    const encoded = encodeSafetensors(new Map([['2', one(2)], ['10', one(10)], ['b', one(11)]]), { '7': 'x' });
    const headerSize = Number(new DataView(encoded.buffer).getBigUint64(0, true));
    const text = new TextDecoder().decode(encoded.subarray(8, 8 + headerSize)).trimEnd();
    assert.equal(
      text,
      '{"__metadata__":{"7":"x"},"10":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},' +
        '"2":{"dtype":"U8","shape":[1],"data_offsets":[1,2]},"b":{"dtype":"U8","shape":[1],"data_offsets":[2,3]}}',
    );
    assert.deepEqual([...encoded.subarray(8 + headerSize)], [10, 2, 11]);
  });

  test('empty file, dtype name maps', () => {
    const encoded = encodeSafetensors(new Map());
    assert.equal(encoded.length, 16); // "{}" padded to 8
    assert.deepEqual(decodeSafetensors(encoded).tensors.size, 0);
    for (const dtype of SAFE_DTYPES) assert.equal(DTYPE_NAME_TO_SAFE[SAFE_DTYPE_TO_NAME[dtype]], dtype);
    assert.equal(SAFE_DTYPE_TO_NAME.BF16, 'bfloat16');
    assert.equal(SAFE_DTYPE_TO_NAME.BOOL, 'bool');
  });

  test('encode rejects bad entries', () => {
    const data = new Uint8Array(8);
    assert.match(errorMessage(() => encodeSafetensors({ x: { dtype: 'F32', shape: [3], data } })), /tensor 'x': data has 8 bytes, shape \[3\] of F32 needs 12/);
    assert.match(errorMessage(() => encodeSafetensors({ x: { dtype: 'Q8' as SafeDtype, shape: [8], data } })), /tensor 'x': unknown dtype "Q8"/);
    assert.match(errorMessage(() => encodeSafetensors({ x: { dtype: 'U8', shape: [-8], data } })), /shape \[-8\] is not a list of non-negative integers/);
    assert.match(errorMessage(() => encodeSafetensors({ __metadata__: { dtype: 'U8', shape: [8], data } })), /reserved/);
    assert.match(errorMessage(() => encodeSafetensors({}, { a: 1 as unknown as string })), /metadata value of 'a' must be a string/);
  });
});

describe('safetensors validation errors', () => {
  const f32 = bytesOf(Float32Array.from([1, 2]));
  const good = { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };

  test('each malformed file gets a precise message', () => {
    const cases: [Uint8Array, RegExp][] = [
      [new Uint8Array(5), /^safetensors: f: file is 5 bytes, shorter than the 8-byte header size field$/],
      [Uint8Array.from([100, 0, 0, 0, 0, 0, 0, 0, 0x7b, 0x7d]), /header size 100 goes past the end of the file \(10 bytes, at most 2 available/],
      [Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7b]), /header size 18446744073709551615 goes past the end/],
      [rawFile(''), /header size is 0/],
      [rawFile(new TextDecoder('latin1').decode(Uint8Array.from([0x7b, 0xc3, 0x28, 0x7d]))), /not valid UTF-8|not valid JSON/],
      [(() => { const file = rawFile('{"a":1}'); file[10] = 0xff; return file; })(), /header \(7 bytes\) is not valid UTF-8/],
      [rawFile('{"a": '), /header is not valid JSON/],
      [rawFile('[1, 2]'), /header does not start with '\{'/],
      [rawFile(' {}'), /header does not start with '\{'/],
      [rawFile('{"a": 5}'), /tensor 'a': entry is not an object/],
      [rawFile({ a: { dtype: 'F8', shape: [2], data_offsets: [0, 2] } }, new Uint8Array(2)), /tensor 'a': unknown dtype "F8"; expected one of F64, F32/],
      [rawFile({ a: { shape: [2], data_offsets: [0, 2] } }, new Uint8Array(2)), /tensor 'a': unknown dtype undefined/],
      [rawFile({ a: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, f32), /tensor 'a': shape \[-2\] is not a list of non-negative integers/],
      [rawFile({ a: { dtype: 'F32', shape: [1.5], data_offsets: [0, 8] } }, f32), /shape \[1\.5\] is not a list/],
      [rawFile({ a: { dtype: 'F32', shape: '2', data_offsets: [0, 8] } }, f32), /shape "2" is not a list/],
      [rawFile({ a: { dtype: 'F32', shape: [2], data_offsets: [0] } }, f32), /data_offsets \[0\] is not a pair/],
      [rawFile({ a: { dtype: 'F32', shape: [2], data_offsets: [8, 0] } }, f32), /data_offsets \[8, 0\] has begin after end/],
      [rawFile({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 16] } }, f32), /data_offsets \[0, 16\] go past the end of the 8-byte data buffer/],
      [rawFile({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, f32), /data_offsets \[0, 8\] span 8 bytes, shape \[3\] of F32 needs 12/],
      [
        rawFile({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, f32),
        /tensor 'b' data_offsets \[4, 8\] overlap tensor 'a'/,
      ],
      [rawFile({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, f32), /hole: bytes 0\.\.4 belong to no tensor \(before 'a'\)/],
      [rawFile(good, new Uint8Array(12)), /data buffer has 12 bytes but the tensors cover only 8/],
      [rawFile({ ...good, __metadata__: ['x'] }, f32), /__metadata__ must be an object of strings, got an array/],
      [rawFile({ ...good, __metadata__: { n: 3 } }, f32), /__metadata__ value of 'n' must be a string, got number/],
      [rawFile({ ...good, __metadata__: null }, f32), /__metadata__ must be an object of strings, got null/],
    ];
    for (const [file, pattern] of cases) {
      const message = errorMessage(() => decodeSafetensors(file, 'f'));
      assert.match(message, /^safetensors: f: /);
      assert.match(message, pattern);
    }
  });

  test('accepted: any order, unpadded or space-padded headers, zero-size tensors, __proto__ names', () => {
    const data = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    // Written as text: in an object literal "__proto__" would set the prototype, not add a key.
    const header =
      '{"z": {"dtype": "U8", "shape": [2], "data_offsets": [8, 10]}, "__metadata__": {"__proto__": "kept", "k": "v"}, ' +
      '"a": {"dtype": "I16", "shape": [2, 2], "data_offsets": [0, 8]}, "nothing": {"dtype": "F64", "shape": [3, 0], "data_offsets": [10, 10]}}';
    for (const padTo8 of [false, true]) {
      const decoded = decodeSafetensors(rawFile(header, data, padTo8));
      assert.deepEqual([...decoded.tensors.keys()], ['z', 'a', 'nothing']);
      assert.deepEqual([...decoded.tensors.get('z')!.data], [9, 10]);
      assert.deepEqual(valuesOf(decoded.tensors.get('a')!), [0x0201, 0x0403, 0x0605, 0x0807]);
      assert.equal(decoded.tensors.get('nothing')!.data.length, 0);
      assert.equal(Object.getPrototypeOf(decoded.metadata), Object.prototype);
      assert.equal(Object.getOwnPropertyDescriptor(decoded.metadata, '__proto__')?.value, 'kept');
    }
    const proto = encodeSafetensors(new Map([['__proto__', { dtype: 'U8' as const, shape: [1], data: Uint8Array.from([42]) }]]));
    assert.deepEqual([...decodeSafetensors(proto).tensors.get('__proto__')!.data], [42]);
  });
});

describe('safetensors interoperability with PyTorch (system /usr/bin/python3)', () => {
  const torchDtypes = `{"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
  "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}`;

  test('a file written by Python (struct + json + tensor bytes) decodes to the same values', () => {
    const path = join(temporaryRoot, 'from-python.safetensors');
    const script = `
import json, struct, sys, torch
torch.manual_seed(0)
tensors = {
    "zz.f32": torch.randn(3, 4),
    "f64": torch.randn(5, dtype=torch.float64),
    "f16": (torch.randn(2, 3) * 100).to(torch.float16),
    "bf16": (torch.randn(7) * 1e5).to(torch.bfloat16),
    "i64": torch.tensor([[0, -1], [2**40 + 3, -(2**50)]], dtype=torch.int64),
    "i32": torch.tensor([-2**31, 2**31 - 1, 12], dtype=torch.int32),
    "i16": torch.tensor([-32768, 32767], dtype=torch.int16),
    "i8": torch.tensor([-128, 127, 3], dtype=torch.int8),
    "u8": torch.arange(250, 256, dtype=torch.uint8).reshape(2, 3),
    "b": torch.tensor([True, False, True, True]),
    "scalar": torch.tensor(2.5, dtype=torch.float32),
    "a.empty": torch.zeros(0, 3),
}
names = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64",
         torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}
header = {"__metadata__": {"format": "pt", "writer": "python"}}
chunks = []
offset = 0
for name in sorted(tensors, reverse=True):  # deliberately not the reference order
    t = tensors[name].contiguous()
    raw = t.view(torch.int16).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes()
    header[name] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
    chunks.append(raw)
    offset += len(raw)
text = json.dumps(header).encode("utf-8")  # not padded: readers must not require alignment
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))
print(json.dumps({name: {"dtype": names[t.dtype], "shape": list(t.shape),
      "values": [float(v) if t.is_floating_point() else int(v) for v in t.flatten().tolist()]} for name, t in tensors.items()}))
`;
    const expected = JSON.parse(execFileSync(PYTHON, ['-c', script, path], { encoding: 'utf8', timeout: 60000 })) as Record<
      string,
      { dtype: SafeDtype; shape: number[]; values: number[] }
    >;
    const decoded = decodeSafetensors(new Uint8Array(readFileSync(path)), path);
    assert.deepEqual(decoded.metadata, { format: 'pt', writer: 'python' });
    assert.deepEqual([...decoded.tensors.keys()].sort(), Object.keys(expected).sort());
    for (const [name, want] of Object.entries(expected)) {
      const got = decoded.tensors.get(name)!;
      assert.equal(got.dtype, want.dtype, name);
      assert.deepEqual(got.shape, want.shape, name);
      assert.deepEqual(valuesOf(got), want.values, name);
    }
    assert.equal(expected['i64']!.values[2], 2 ** 40 + 3);
  });

  test('a file written by us reads back in Python with torch.frombuffer', () => {
    const path = join(temporaryRoot, 'from-typescript.safetensors');
    const entries = sampleEntries();
    writeFileSync(path, encodeSafetensors(entries, { format: 'pt', epoch: '3' }));
    const script = `
import json, struct, sys, torch
dtypes = ${torchDtypes}
with open(sys.argv[1], "rb") as f:
    data = f.read()
(n,) = struct.unpack("<Q", data[:8])
header = json.loads(data[8:8 + n].decode("utf-8"))
metadata = header.pop("__metadata__", {})
start = 8 + n
out = {"header_size": n, "metadata": metadata, "order": list(header), "tensors": {}}
covered = 0
for name, info in sorted(header.items(), key=lambda item: item[1]["data_offsets"][0]):
    begin, end = info["data_offsets"]
    assert begin == covered, (name, begin, covered)
    covered = end
    dtype = dtypes[info["dtype"]]
    raw = bytearray(data[start + begin:start + end])
    t = torch.frombuffer(raw, dtype=dtype) if len(raw) else torch.empty(0, dtype=dtype)
    t = t.reshape(info["shape"])
    values = [float(v) if t.is_floating_point() else int(v) for v in t.flatten().tolist()]
    out["tensors"][name] = {"dtype": info["dtype"], "shape": list(t.shape), "values": values}
assert start + covered == len(data)
print(json.dumps(out))
`;
    const result = JSON.parse(execFileSync(PYTHON, ['-c', script, path], { encoding: 'utf8', timeout: 60000 })) as {
      header_size: number;
      metadata: Record<string, string>;
      order: string[];
      tensors: Record<string, { dtype: SafeDtype; shape: number[]; values: number[] }>;
    };
    assert.equal(result.header_size % 8, 0);
    assert.deepEqual(result.metadata, { format: 'pt', epoch: '3' });
    assert.equal(result.order.length, entries.size);
    for (const [name, entry] of entries) {
      const got = result.tensors[name]!;
      assert.equal(got.dtype, entry.dtype, name);
      assert.deepEqual(got.shape, entry.shape, name);
      // -0 survives float() in Python but JSON prints "-0.0"; compare numerically.
      assert.deepEqual(got.values.map((value) => (Object.is(value, -0) ? 0 : value)), valuesOf(entry).map((value) => (Object.is(value, -0) ? 0 : value)), name);
    }
    assert.deepEqual(result.tensors['half']!.values, [1, -2, 65504, 2 ** -24, halfToNumber(0x3555)]);
    assert.deepEqual(result.tensors['brain']!.values, [1, -3.140625, bfloat16ToNumber(0x7f7f), 2 ** -133]);
    assert.deepEqual(result.tensors['step']!.values, [2 ** 40 + 3]);
  });
});

describe('safetensors properties (fast-check)', () => {
  const dtypeArbitrary = fc.constantFrom(...SAFE_DTYPES);
  const entryArbitrary = fc
    .tuple(dtypeArbitrary, fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 3 }))
    .chain(([dtype, shape]) => {
      const length = shape.reduce((product, size) => product * size, 1) * SAFE_DTYPE_SIZES[dtype];
      return fc.uint8Array({ minLength: length, maxLength: length }).map((data): SafeTensorEntry => ({ dtype, shape, data }));
    });
  const entriesArbitrary = fc.dictionary(fc.string({ minLength: 0, maxLength: 6 }).filter((name) => name !== '__metadata__'), entryArbitrary, {
    maxKeys: 5,
    noNullPrototype: true,
  });
  const metadataArbitrary = fc.option(fc.dictionary(fc.string({ maxLength: 5 }), fc.string({ maxLength: 8 }), { maxKeys: 3, noNullPrototype: true }), { nil: undefined });

  /** Decoding either succeeds with self-consistent output or throws an Error with a message. */
  function decodesOrExplains(bytes: Uint8Array): void {
    try {
      const decoded = decodeSafetensors(bytes, 'prop');
      for (const entry of decoded.tensors.values()) {
        assert.equal(entry.data.length, entry.shape.reduce((product, size) => product * size, 1) * SAFE_DTYPE_SIZES[entry.dtype]);
      }
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith('safetensors: prop: ')) throw error;
    }
  }

  test('encode then decode is the identity', () => {
    fc.assert(
      fc.property(entriesArbitrary, metadataArbitrary, (entries, metadata) => {
        const decoded = decodeSafetensors(encodeSafetensors(entries, metadata));
        assert.deepEqual(decoded.metadata, metadata ?? {});
        assert.equal(decoded.tensors.size, Object.keys(entries).length);
        for (const [name, entry] of Object.entries(entries)) {
          const got = decoded.tensors.get(name)!;
          assert.equal(got.dtype, entry.dtype);
          assert.deepEqual(got.shape, entry.shape);
          assert.deepEqual(got.data, entry.data);
        }
      }),
      { numRuns: 200 },
    );
  });

  test('random bytes never crash the decoder', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), decodesOrExplains), { numRuns: 500 });
    // Random bytes behind a plausible header size.
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 80 }), fc.uint8Array({ maxLength: 80 }), (size, rest) => {
        const file = new Uint8Array(8 + rest.length);
        new DataView(file.buffer).setBigUint64(0, BigInt(size), true);
        file.set(rest, 8);
        decodesOrExplains(file);
      }),
      { numRuns: 500 },
    );
  });

  test('mutated valid files decode correctly or fail with an Error', () => {
    const mutation = fc.oneof(
      fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
      fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), value: fc.integer({ min: 1, max: 255 }) }),
      fc.record({ kind: fc.constant('number' as const), at: fc.nat(), value: fc.oneof(fc.integer({ min: -5, max: 300 }), fc.constant(2 ** 53), fc.constant(1e300)) }),
    );
    fc.assert(
      fc.property(entriesArbitrary, metadataArbitrary, fc.array(mutation, { minLength: 1, maxLength: 3 }), (entries, metadata, mutations) => {
        let file = encodeSafetensors(entries, metadata);
        for (const change of mutations) {
          if (change.kind === 'truncate') {
            file = file.subarray(0, change.at % (file.length + 1));
          } else if (change.kind === 'flip') {
            if (file.length === 0) continue;
            file = Uint8Array.from(file);
            const index = change.at % file.length;
            file[index] = file[index]! ^ change.value;
          } else {
            // Replace one number in the JSON header (a shape size or an offset) by another.
            if (file.length < 8) continue;
            const size = Number(new DataView(file.buffer, file.byteOffset).getBigUint64(0, true));
            if (8 + size > file.length) continue;
            const text = new TextDecoder().decode(file.subarray(8, 8 + size));
            const numbers = [...text.matchAll(/\d+/g)];
            if (numbers.length === 0) continue;
            const target = numbers[change.at % numbers.length]!;
            const edited = text.slice(0, target.index) + String(change.value) + text.slice(target.index! + target[0].length);
            file = rawFile(edited, file.subarray(8 + size));
          }
        }
        decodesOrExplains(file);
      }),
      { numRuns: 400 },
    );
  });
});
