// The safetensors byte format (https://github.com/huggingface/safetensors), independent of tensors:
// encode named byte buffers with dtype and shape into one file image, and decode and validate one.
//
// Layout: 8-byte little-endian uint64 N, N bytes of UTF-8 JSON header, then the byte buffer.
// Header: { name: { dtype, shape, data_offsets: [begin, end] }, "__metadata__"?: { string: string } }
// with offsets relative to the start of the byte buffer. The buffer must be covered exactly: the
// ranges are contiguous, non-overlapping and end at the end of the file (no holes, which also
// defeats polyglot files and most duplicate-key tricks that JSON.parse would silently resolve).
//
// Writing order: like the reference writer, tensors are laid out by decreasing dtype size, then by
// name, and the header is padded with spaces to a multiple of 8 bytes. The byte buffer then starts
// 8-byte aligned and every tensor starts at a multiple of its element size, so a reader can view
// the data as a typed array without copying. The JSON header lists "__metadata__" first, then the
// tensors in that same order. Any valid order is accepted when reading.

export type SafeDtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

/** Our dtype names (those of the Tensor class) for each safetensors dtype. */
export type DtypeName = 'float64' | 'float32' | 'float16' | 'bfloat16' | 'int64' | 'int32' | 'int16' | 'int8' | 'uint8' | 'bool';

export interface SafeTensorEntry {
  dtype: SafeDtype;
  shape: number[];
  data: Uint8Array; // little-endian element bytes, C order
}

export interface DecodedSafetensors {
  /**
   * Tensors in header order (except that JavaScript lists integer-like names such as "3" first);
   * each `data` is a view into the decoded bytes, not a copy.
   */
  tensors: Map<string, SafeTensorEntry>;
  metadata: Record<string, string>;
}

/** Bytes per element of every supported dtype. */
export const SAFE_DTYPE_SIZES: Readonly<Record<SafeDtype, number>> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

export const SAFE_DTYPES: readonly SafeDtype[] = Object.keys(SAFE_DTYPE_SIZES) as SafeDtype[];

export const SAFE_DTYPE_TO_NAME: Readonly<Record<SafeDtype, DtypeName>> = {
  F64: 'float64', F32: 'float32', F16: 'float16', BF16: 'bfloat16',
  I64: 'int64', I32: 'int32', I16: 'int16', I8: 'int8', U8: 'uint8', BOOL: 'bool',
};

export const DTYPE_NAME_TO_SAFE: Readonly<Record<DtypeName, SafeDtype>> = {
  float64: 'F64', float32: 'F32', float16: 'F16', bfloat16: 'BF16',
  int64: 'I64', int32: 'I32', int16: 'I16', int8: 'I8', uint8: 'U8', bool: 'BOOL',
};

export const METADATA_KEY = '__metadata__';

/** Whether a string is one of the supported safetensors dtypes. */
export function isSafeDtype(value: unknown): value is SafeDtype {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(SAFE_DTYPE_SIZES, value);
}

/** Number of elements of a shape; [] (a scalar) has one. */
export function shapeElementCount(shape: readonly number[]): number {
  return shape.reduce((product, size) => product * size, 1);
}

function isValidShape(shape: unknown): shape is number[] {
  return Array.isArray(shape) && shape.every((size) => Number.isSafeInteger(size) && size >= 0);
}

/** Lays out and serializes tensors (see the module comment for the order) with optional metadata. */
export function encodeSafetensors(
  entries: Map<string, SafeTensorEntry> | Record<string, SafeTensorEntry>,
  metadata?: Record<string, string>,
): Uint8Array {
  const list: [string, SafeTensorEntry][] = entries instanceof Map ? [...entries] : Object.entries(entries);
  for (const [name, entry] of list) {
    const fail = (problem: string): never => {
      throw new Error(`safetensors: cannot encode tensor '${name}': ${problem}`);
    };
    if (name === METADATA_KEY) fail(`the name ${METADATA_KEY} is reserved for metadata`);
    if (!isSafeDtype(entry.dtype)) fail(`unknown dtype ${JSON.stringify(entry.dtype)}; expected one of ${SAFE_DTYPES.join(', ')}`);
    if (!isValidShape(entry.shape)) fail(`shape ${JSON.stringify(entry.shape)} is not a list of non-negative integers`);
    if (!(entry.data instanceof Uint8Array)) fail('data must be a Uint8Array');
    const expected = shapeElementCount(entry.shape) * SAFE_DTYPE_SIZES[entry.dtype];
    if (entry.data.byteLength !== expected) {
      fail(`data has ${entry.data.byteLength} bytes, shape [${entry.shape.join(', ')}] of ${entry.dtype} needs ${expected}`);
    }
  }
  if (metadata !== undefined) {
    if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata)) {
      throw new Error('safetensors: metadata must be an object of string values');
    }
    for (const [key, value] of Object.entries(metadata)) {
      if (typeof value !== 'string') {
        throw new Error(`safetensors: metadata value of '${key}' must be a string, got ${typeof value}`);
      }
    }
  }
  list.sort(([firstName, first], [secondName, second]) => {
    const bySize = SAFE_DTYPE_SIZES[second.dtype] - SAFE_DTYPE_SIZES[first.dtype];
    if (bySize !== 0) return bySize;
    return firstName < secondName ? -1 : firstName > secondName ? 1 : 0;
  });

  // The header text is assembled member by member rather than with JSON.stringify of one object:
  // JS objects list integer-like keys ("0", "12") first whatever the insertion order, and assigning
  // a "__proto__" key would change the prototype instead of adding a member.
  const members: string[] = [];
  if (metadata !== undefined) members.push(`${JSON.stringify(METADATA_KEY)}:${JSON.stringify({ ...metadata })}`);
  let offset = 0;
  for (const [name, entry] of list) {
    const end = offset + entry.data.byteLength;
    members.push(`${JSON.stringify(name)}:${JSON.stringify({ dtype: entry.dtype, shape: [...entry.shape], data_offsets: [offset, end] })}`);
    offset = end;
  }
  const json = new TextEncoder().encode(`{${members.join(',')}}`);
  const headerSize = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + headerSize + offset);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(headerSize), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + headerSize);
  let position = 8 + headerSize;
  for (const [, entry] of list) {
    out.set(entry.data, position);
    position += entry.data.byteLength;
  }
  return out;
}

/**
 * Parses and validates a safetensors file image. Every problem is an Error that starts with
 * `safetensors: <source>:` and names the tensor and field at fault.
 */
export function decodeSafetensors(bytes: Uint8Array, source = '<buffer>'): DecodedSafetensors {
  const fail = (problem: string): never => {
    throw new Error(`safetensors: ${source}: ${problem}`);
  };
  if (!(bytes instanceof Uint8Array)) fail('input is not a Uint8Array');
  if (bytes.length < 8) fail(`file is ${bytes.length} bytes, shorter than the 8-byte header size field`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerSizeBig = view.getBigUint64(0, true);
  if (headerSizeBig > BigInt(bytes.length - 8)) {
    fail(`header size ${headerSizeBig} goes past the end of the file (${bytes.length} bytes, at most ${bytes.length - 8} available for the header)`);
  }
  const headerSize = Number(headerSizeBig);
  if (headerSize === 0) fail('header size is 0; the header must be a JSON object');
  let text = '';
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes.subarray(8, 8 + headerSize));
  } catch {
    fail(`header (${headerSize} bytes) is not valid UTF-8`);
  }
  // The format requires the JSON object to start right away (only trailing padding is allowed).
  if (!text.startsWith('{')) fail(`header does not start with '{' (found ${JSON.stringify(text.slice(0, 16))})`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    fail(`header is not valid JSON (${error instanceof Error ? error.message : String(error)})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    fail('header is not a JSON object');
  }
  const header = parsed as Record<string, unknown>;
  const dataStart = 8 + headerSize;
  const dataLength = bytes.length - dataStart;

  const metadata: Record<string, string> = {};
  const tensors = new Map<string, SafeTensorEntry>();
  const ranges: { name: string; begin: number; end: number }[] = [];
  for (const name of Object.keys(header)) {
    const value = header[name];
    if (name === METADATA_KEY) {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) {
        fail(`${METADATA_KEY} must be an object of strings, got ${Array.isArray(value) ? 'an array' : value === null ? 'null' : typeof value}`);
      }
      for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
        if (typeof item !== 'string') fail(`${METADATA_KEY} value of '${key}' must be a string, got ${item === null ? 'null' : typeof item}`);
        // defineProperty, because assigning a "__proto__" key would change the object's prototype.
        Object.defineProperty(metadata, key, { value: item, enumerable: true, writable: true, configurable: true });
      }
      continue;
    }
    const bad = (problem: string): never => fail(`tensor '${name}': ${problem}`);
    if (typeof value !== 'object' || value === null || Array.isArray(value)) bad('entry is not an object');
    const info = value as Record<string, unknown>;
    if (!isSafeDtype(info['dtype'])) {
      bad(`unknown dtype ${JSON.stringify(info['dtype']) ?? 'undefined'}; expected one of ${SAFE_DTYPES.join(', ')}`);
    }
    const dtype = info['dtype'] as SafeDtype;
    if (!isValidShape(info['shape'])) bad(`shape ${JSON.stringify(info['shape']) ?? 'undefined'} is not a list of non-negative integers`);
    const shape = info['shape'] as number[];
    const offsets = info['data_offsets'];
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((item) => Number.isSafeInteger(item) && item >= 0)) {
      bad(`data_offsets ${JSON.stringify(offsets) ?? 'undefined'} is not a pair [begin, end] of non-negative integers`);
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end) bad(`data_offsets [${begin}, ${end}] has begin after end`);
    if (end > dataLength) bad(`data_offsets [${begin}, ${end}] go past the end of the ${dataLength}-byte data buffer`);
    const expected = shapeElementCount(shape) * SAFE_DTYPE_SIZES[dtype];
    if (end - begin !== expected) {
      bad(`data_offsets [${begin}, ${end}] span ${end - begin} bytes, shape [${shape.join(', ')}] of ${dtype} needs ${expected}`);
    }
    ranges.push({ name, begin, end });
    tensors.set(name, { dtype, shape: [...shape], data: bytes.subarray(dataStart + begin, dataStart + end) });
  }

  // The ranges must tile the data buffer: sorted by position, each starts where the previous ended.
  ranges.sort((first, second) => first.begin - second.begin || first.end - second.end);
  let covered = 0;
  for (const range of ranges) {
    if (range.begin < covered) {
      const other = ranges.find((candidate) => candidate !== range && candidate.end > range.begin && candidate.begin <= range.begin);
      fail(`tensor '${range.name}' data_offsets [${range.begin}, ${range.end}] overlap ${other === undefined ? 'another tensor' : `tensor '${other.name}'`}`);
    }
    if (range.begin > covered) fail(`data buffer has a hole: bytes ${covered}..${range.begin} belong to no tensor (before '${range.name}')`);
    covered = range.end;
  }
  if (covered !== dataLength) {
    fail(`data buffer has ${dataLength} bytes but the tensors cover only ${covered} (trailing bytes ${covered}..${dataLength} belong to no tensor)`);
  }
  return { tensors, metadata };
}
