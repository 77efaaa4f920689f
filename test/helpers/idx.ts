// IDX files (MNIST's format) built in memory for reader tests.

/** An IDX file: big-endian magic, one uint32 per dimension, then the data bytes. */
export function idxFile(magic: number, dims: number[], data: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + 4 * dims.length + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, magic, false);
  dims.forEach((size, axis) => view.setUint32(4 + 4 * axis, size, false));
  out.set(data, 4 + 4 * dims.length);
  return out;
}
