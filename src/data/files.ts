// File access shared by the dataset readers: read a whole file (optionally gzip-compressed) and
// turn every operating-system or zlib failure into an Error that names the dataset, the file and
// the problem, instead of a bare ENOENT or "unexpected end of file".

import { readFileSync, statSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';

/** The two leading bytes of every gzip member (RFC 1952). */
export const GZIP_MAGIC_0 = 0x1f;
export const GZIP_MAGIC_1 = 0x8b;

/** Decompressed data larger than this is refused: no dataset we read comes near it. */
export const MAX_DECOMPRESSED_BYTES = 1 << 30;

function describeSystemError(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return 'file not found';
    if (code === 'EISDIR') return 'is a directory, expected a file';
    if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
    return error.message;
  }
  return String(error);
}

/** Whether a path exists and is a directory (false for missing paths and for files). */
export function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** Whether a path exists and is a regular file. */
export function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** Reads a whole file; errors are prefixed with `label: path:`. */
export function readWholeFile(label: string, path: string): Uint8Array {
  try {
    const buffer = readFileSync(path);
    return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  } catch (error) {
    throw new Error(`${label}: ${path}: cannot read: ${describeSystemError(error)}`);
  }
}

/** Whether the bytes start with the gzip magic number 1f 8b. */
export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === GZIP_MAGIC_0 && bytes[1] === GZIP_MAGIC_1;
}

/**
 * Decompresses gzip data. zlib's own messages ("unexpected end of file", "incorrect header check")
 * are kept but put behind the file name and a plain statement of what went wrong.
 */
export function gunzipOrExplain(label: string, source: string, bytes: Uint8Array): Uint8Array {
  try {
    const output = gunzipSync(bytes, { maxOutputLength: MAX_DECOMPRESSED_BYTES });
    return new Uint8Array(output.buffer, output.byteOffset, output.byteLength);
  } catch (error) {
    const detail = error instanceof Error ? error.message : String(error);
    const code = error instanceof Error ? (error as NodeJS.ErrnoException).code : undefined;
    if (code === 'Z_BUF_ERROR' || /unexpected end/i.test(detail)) {
      throw new Error(`${label}: ${source}: truncated gzip data (${detail}); the file is incomplete, download it again`);
    }
    if (code === 'ERR_BUFFER_TOO_LARGE' || /larger than|too large/i.test(detail)) {
      throw new Error(`${label}: ${source}: gzip data decompresses to more than ${MAX_DECOMPRESSED_BYTES} bytes, refusing it`);
    }
    throw new Error(`${label}: ${source}: corrupt gzip data (${detail})`);
  }
}

/** Reads a file and transparently decompresses it when it starts with the gzip magic number. */
export function readMaybeGzip(label: string, path: string): Uint8Array {
  const bytes = readWholeFile(label, path);
  return isGzip(bytes) ? gunzipOrExplain(label, path, bytes) : bytes;
}
