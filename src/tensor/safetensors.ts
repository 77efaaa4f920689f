// safetensors files of tensors: save (atomically, through io/atomic.ts) and load, on top of
// the byte-level format in safetensors-format.ts.
import { readFileSync } from 'node:fs';
import { type AtomicWriteOptions, writeFileAtomic } from '../io/atomic.js';
import { DTYPE_NAME_TO_SAFE, decodeSafetensors, encodeSafetensors, SAFE_DTYPE_TO_NAME, type SafeTensorEntry } from './safetensors-format.js';
import { fromBytes, keep, type Tensor } from './tensor.js';

const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export function encodeTensors(tensors: Map<string, Tensor> | Record<string, Tensor>, metadata?: Record<string, string>): Uint8Array {
  if (!littleEndian) throw new Error('safetensors: big-endian machines are not supported');
  const entries = new Map<string, SafeTensorEntry>();
  const source = tensors instanceof Map ? tensors : new Map(Object.entries(tensors));
  for (const [name, tensor] of source) {
    const bytes = tensor.toBytes();
    entries.set(name, { dtype: DTYPE_NAME_TO_SAFE[tensor.dtype], shape: tensor.shape, data: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) });
  }
  return encodeSafetensors(entries, metadata);
}

/** Tensors decoded from safetensors bytes; every tensor is kept out of tidy scopes (caller owns them). */
export function decodeTensors(bytes: Uint8Array, source = '<buffer>'): { tensors: Map<string, Tensor>; metadata: Record<string, string> } {
  const decoded = decodeSafetensors(bytes, source);
  const tensors = new Map<string, Tensor>();
  try {
    for (const [name, entry] of decoded.tensors) {
      tensors.set(name, keep(fromBytes(entry.data, SAFE_DTYPE_TO_NAME[entry.dtype], entry.shape)));
    }
  } catch (error) {
    for (const tensor of tensors.values()) tensor.dispose();
    throw error;
  }
  return { tensors, metadata: decoded.metadata };
}

export function saveSafetensors(path: string, tensors: Map<string, Tensor> | Record<string, Tensor>, metadata?: Record<string, string>, options?: AtomicWriteOptions): void {
  writeFileAtomic(path, encodeTensors(tensors, metadata), options);
}

export function loadSafetensors(path: string): { tensors: Map<string, Tensor>; metadata: Record<string, string> } {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : (error as Error).message;
    throw new Error(`safetensors: ${path}: ${reason}`);
  }
  return decodeTensors(bytes, path);
}
