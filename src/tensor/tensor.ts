// The Tensor class over a libtorch tensor, its factories, autograd switches and memory scopes.
// Method names follow PyTorch in camelCase; arguments keep libtorch's order.
import { native, type NativeGenerator, type NativeHandle } from './native.js';

export type DType = 'float32' | 'float64' | 'bfloat16' | 'float16' | 'int64' | 'int32' | 'int16' | 'int8' | 'uint8' | 'bool';
export type Device = 'cpu' | 'cuda' | `cuda:${number}`;
export type Reduction = 'mean' | 'sum' | 'none';
/** How a 4-D tensor's elements lie in memory: NCHW row-major, or NHWC strides (same logical shape). */
export type MemoryFormat = 'contiguous' | 'channels_last';
export type NestedArray = number | boolean | NestedArray[];
export type TypedArray = Float32Array | Float64Array | Int32Array | Int16Array | Int8Array | Uint8Array | BigInt64Array;

export interface CreateOptions {
  dtype?: DType;
  device?: Device;
  requiresGrad?: boolean;
}

// ---- memory scopes ----
const scopes: Set<Tensor>[] = [];

function track(tensor: Tensor): void {
  const scope = scopes[scopes.length - 1];
  if (scope) scope.add(tensor);
}

// Handles made while a scope is open carry no GC finalizer (native/core.cc: the finalizer was the
// larger part of a handle's cost): the scope disposes them. One that escapes every scope (keep(),
// a top-level tidy's result) is handed to this registry, which disposes it once its Tensor is
// garbage collected, as the finalizer would have.
const escaped = new FinalizationRegistry<NativeHandle>((handle) => native.dispose(handle));

function escape(tensor: Tensor): void {
  escaped.register(tensor, tensor.handle);
}

function openScope(scope: Set<Tensor>): void {
  scopes.push(scope);
  if (scopes.length === 1) native.setHandleFinalizers(false);
}

function closeScope(): void {
  scopes.pop();
  if (scopes.length === 0) native.setHandleFinalizers(true);
}

function collectTensors(value: unknown, into: Set<Tensor>, seen: Set<unknown>): void {
  if (value instanceof Tensor) {
    into.add(value);
    return;
  }
  if (value === null || typeof value !== 'object' || seen.has(value)) return;
  seen.add(value);
  if (Array.isArray(value)) {
    for (const item of value) collectTensors(item, into, seen);
  } else if (value instanceof Map) {
    for (const item of value.values()) collectTensors(item, into, seen);
  } else if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const item of Object.values(value)) collectTensors(item, into, seen);
  }
}

/**
 * Runs fn and disposes every tensor created inside it, except tensors in its result
 * (also inside arrays, Maps and plain objects) and tensors passed to keep(). Survivors
 * belong to the enclosing scope, as in TensorFlow.js.
 */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Tensor>();
  openScope(scope);
  let result: T;
  try {
    result = fn();
  } catch (error) {
    // Nothing is returned, so nothing made inside survives (TF.js's tidy does the same).
    closeScope();
    for (const tensor of scope) tensor.dispose();
    throw error;
  }
  closeScope();
  if (result instanceof Promise) {
    throw new Error('tidy() takes a synchronous function; tensors of an async function cannot be scoped');
  }
  const survivors = new Set<Tensor>();
  collectTensors(result, survivors, new Set());
  const parent = scopes[scopes.length - 1];
  for (const tensor of scope) {
    if (!survivors.has(tensor)) tensor.dispose();
    else if (parent) parent.add(tensor);
    else escape(tensor);
  }
  return result;
}

/** Takes tensors out of every tidy scope so they outlive it; returns its argument. */
export function keep<T extends Tensor>(tensor: T): T {
  let scoped = false;
  for (const scope of scopes) scoped = scope.delete(tensor) || scoped;
  if (scoped) escape(tensor);
  return tensor;
}

/** Runs fn with gradient recording off (torch.no_grad). */
export function noGrad<T>(fn: () => T): T {
  const previous = native.setGradEnabled(false);
  try {
    return fn();
  } finally {
    native.setGradEnabled(previous);
  }
}

export function isGradEnabled(): boolean {
  return native.isGradEnabled();
}

// ---- random numbers ----
/** Seeds the global generators (CPU and, where present, CUDA), as torch.manual_seed. */
export function manualSeed(seed: number): void {
  native.manualSeed(seed);
}

/** An explicit CPU random generator, independent of the global one. */
export class Generator {
  readonly handle: NativeGenerator;
  constructor(seed = 0) {
    this.handle = native.newGenerator(seed);
  }
  manualSeed(seed: number): this {
    native.generatorSeed(seed, this.handle);
    return this;
  }
  /** The generator's full state as bytes (to save in checkpoints). */
  getState(): Uint8Array {
    return tidy(() => new Uint8Array(wrap(native.getRngState(this.handle)).toBytes()));
  }
  setState(state: Uint8Array): void {
    tidy(() => native.setRngState(fromBytes(state, 'uint8', [state.length]).handle, this.handle));
  }
}

export function getRngState(): Uint8Array {
  return tidy(() => new Uint8Array(wrap(native.getRngState()).toBytes()));
}

export function setRngState(state: Uint8Array): void {
  tidy(() => native.setRngState(fromBytes(state, 'uint8', [state.length]).handle));
}

function wrap(handle: NativeHandle): Tensor {
  return new Tensor(handle);
}

function wrapList(handles: readonly NativeHandle[]): Tensor[] {
  return handles.map((handle) => new Tensor(handle));
}

export type Operand = Tensor | number;
function operand(value: Operand): NativeHandle | number {
  return value instanceof Tensor ? value.handle : value;
}

export class Tensor {
  readonly handle: NativeHandle;

  constructor(handle: NativeHandle) {
    this.handle = handle;
    track(this);
  }

  // ---- metadata ----
  get shape(): number[] { return native.shape(this.handle); }
  get dtype(): DType { return native.dtype(this.handle); }
  get device(): string { return native.device(this.handle); }
  get ndim(): number { return native.dim(this.handle); }
  get numel(): number { return native.numel(this.handle); }
  get isDisposed(): boolean { return !native.isAlive(this.handle); }
  size(dim: number): number {
    const shape = this.shape;
    const index = dim < 0 ? shape.length + dim : dim;
    if (index < 0 || index >= shape.length) throw new RangeError(`size(${dim}): tensor has ${shape.length} dimensions`);
    return shape[index];
  }
  isContiguous(): boolean { return native.isContiguous(this.handle); }

  /** Frees the native tensor now; later use throws. Safe to call twice. */
  dispose(): void { native.dispose(this.handle); }

  // ---- data out ----
  item(): number {
    const value = native.item(this.handle);
    return typeof value === 'boolean' ? Number(value) : value;
  }
  /** Raw bytes of the contiguous CPU copy (native byte order). */
  toBytes(): Buffer { return native.toBytes(this.handle); }
  /** A flat typed array copy; float16/bfloat16 come back as float32, bool as uint8. */
  toTypedArray(): TypedArray {
    const dtype = this.dtype;
    if (dtype === 'float16' || dtype === 'bfloat16') return tidy(() => this.to({ dtype: 'float32' }).toTypedArray());
    const bytes = this.toBytes();
    const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    switch (dtype) {
      case 'float32': return new Float32Array(buffer);
      case 'float64': return new Float64Array(buffer);
      case 'int64': return new BigInt64Array(buffer);
      case 'int32': return new Int32Array(buffer);
      case 'int16': return new Int16Array(buffer);
      case 'int8': return new Int8Array(buffer);
      default: return new Uint8Array(buffer);
    }
  }
  /** Nested JS arrays of numbers (torch's tolist()); a 0-d tensor gives a number. */
  toArray(): NestedArray {
    const flat = Array.from(this.toTypedArray() as ArrayLike<number | bigint>, Number);
    const shape = this.shape;
    if (shape.length === 0) return flat[0];
    const build = (offset: number, dim: number): NestedArray[] => {
      const size = shape[dim];
      if (dim === shape.length - 1) return flat.slice(offset, offset + size);
      const stride = shape.slice(dim + 1).reduce((a, b) => a * b, 1);
      const out: NestedArray[] = [];
      for (let i = 0; i < size; i++) out.push(build(offset + i * stride, dim + 1));
      return out;
    };
    return build(0, 0);
  }
  toString(): string {
    return `Tensor(shape=[${this.shape.join(', ')}], dtype=${this.dtype}, device=${this.device})`;
  }

  // ---- conversion ----
  to(target: Device | DType | { dtype?: DType; device?: Device; nonBlocking?: boolean }): Tensor {
    const options = typeof target === 'string'
      ? (target === 'cpu' || target.startsWith('cuda') ? { device: target as Device } : { dtype: target as DType })
      : target;
    return wrap(native.to(this.handle, options.dtype, options.device, options.nonBlocking ?? false, false));
  }
  float(): Tensor { return this.to({ dtype: 'float32' }); }
  double(): Tensor { return this.to({ dtype: 'float64' }); }
  long(): Tensor { return this.to({ dtype: 'int64' }); }
  /** A row-major copy (or this data when it already is one); with 'channels_last', NHWC strides (4-D only), as tensor.contiguous(memory_format=...). */
  contiguous(memoryFormat?: MemoryFormat): Tensor {
    return wrap(memoryFormat === undefined ? native.contiguous(this.handle) : native.contiguousAs(this.handle, memoryFormat));
  }
  /** The layout libtorch reads from the strides (Tensor::suggest_memory_format): channels_last for NHWC strides. */
  memoryFormat(): MemoryFormat | 'channels_last_3d' { return native.suggestMemoryFormat(this.handle); }
  clone(): Tensor { return wrap(native.clone(this.handle)); }
  detach(): Tensor { return wrap(native.detach(this.handle)); }
  /** A second handle to the same tensor (shares data and autograd identity). */
  alias(): Tensor { return wrap(native.alias(this.handle)); }
  /** A copy in pinned (page-locked) host memory, so that `.to({ device: 'cuda', nonBlocking: true })` is asynchronous; needs CUDA. */
  pinMemory(): Tensor { return wrap(native.pinMemory(this.handle)); }
  isPinned(): boolean { return native.isPinned(this.handle); }

  // ---- autograd ----
  get requiresGrad(): boolean { return native.requiresGrad(this.handle); }
  set requiresGrad(value: boolean) { native.setRequiresGrad(this.handle, value); }
  requiresGrad_(value = true): this { native.setRequiresGrad(this.handle, value); return this; }
  get isLeaf(): boolean { return native.isLeaf(this.handle); }
  /** The accumulated gradient (a new handle to it), or null. */
  get grad(): Tensor | null {
    const handle = native.grad(this.handle);
    return handle === null ? null : wrap(handle);
  }
  set grad(value: Tensor | null) { native.setGrad(this.handle, value?.handle ?? null); }
  /** Drops the gradient (PyTorch's zero_grad(set_to_none=True)). */
  zeroGrad(): void { native.setGrad(this.handle, null); }
  retainGrad(): void { native.retainGrad(this.handle); }
  /** Backpropagates; gradients accumulate into .grad of leaves across calls. */
  backward(gradient?: Tensor, retainGraph?: boolean): void {
    native.backward(this.handle, gradient?.handle ?? null, retainGraph ?? null);
  }

  // ---- arithmetic (other may be a tensor or a number) ----
  add(other: Operand, alpha?: number): Tensor { return wrap(native.add(this.handle, operand(other), alpha)); }
  sub(other: Operand, alpha?: number): Tensor { return wrap(native.sub(this.handle, operand(other), alpha)); }
  mul(other: Operand): Tensor { return wrap(native.mul(this.handle, operand(other))); }
  div(other: Operand): Tensor { return wrap(native.div(this.handle, operand(other))); }
  pow(exponent: Operand): Tensor { return wrap(native.pow(this.handle, operand(exponent))); }
  remainder(other: Operand): Tensor { return wrap(native.remainder(this.handle, operand(other))); }
  /** value - this */
  rsub(value: number): Tensor { return wrap(native.rsub(this.handle, value)); }
  maximum(other: Tensor): Tensor { return wrap(native.maximum(this.handle, other.handle)); }
  minimum(other: Tensor): Tensor { return wrap(native.minimum(this.handle, other.handle)); }
  neg(): Tensor { return wrap(native.neg(this.handle)); }
  exp(): Tensor { return wrap(native.exp(this.handle)); }
  log(): Tensor { return wrap(native.log(this.handle)); }
  log1p(): Tensor { return wrap(native.log1p(this.handle)); }
  expm1(): Tensor { return wrap(native.expm1(this.handle)); }
  sqrt(): Tensor { return wrap(native.sqrt(this.handle)); }
  rsqrt(): Tensor { return wrap(native.rsqrt(this.handle)); }
  abs(): Tensor { return wrap(native.abs(this.handle)); }
  sign(): Tensor { return wrap(native.sign(this.handle)); }
  sin(): Tensor { return wrap(native.sin(this.handle)); }
  cos(): Tensor { return wrap(native.cos(this.handle)); }
  erf(): Tensor { return wrap(native.erf(this.handle)); }
  erfinv(): Tensor { return wrap(native.erfinv(this.handle)); }
  reciprocal(): Tensor { return wrap(native.reciprocal(this.handle)); }
  square(): Tensor { return wrap(native.square(this.handle)); }
  floor(): Tensor { return wrap(native.floor(this.handle)); }
  ceil(): Tensor { return wrap(native.ceil(this.handle)); }
  round(): Tensor { return wrap(native.round(this.handle)); }
  clamp(min?: number | null, max?: number | null): Tensor { return wrap(native.clamp(this.handle, min ?? null, max ?? null)); }
  lerp(end: Tensor, weight: number): Tensor { return wrap(native.lerp(this.handle, end.handle, weight)); }

  // ---- comparisons and logic ----
  eq(other: Operand): Tensor { return wrap(native.eq(this.handle, operand(other))); }
  ne(other: Operand): Tensor { return wrap(native.ne(this.handle, operand(other))); }
  lt(other: Operand): Tensor { return wrap(native.lt(this.handle, operand(other))); }
  le(other: Operand): Tensor { return wrap(native.le(this.handle, operand(other))); }
  gt(other: Operand): Tensor { return wrap(native.gt(this.handle, operand(other))); }
  ge(other: Operand): Tensor { return wrap(native.ge(this.handle, operand(other))); }
  logicalNot(): Tensor { return wrap(native.logicalNot(this.handle)); }
  logicalAnd(other: Tensor): Tensor { return wrap(native.logicalAnd(this.handle, other.handle)); }
  logicalOr(other: Tensor): Tensor { return wrap(native.logicalOr(this.handle, other.handle)); }
  isfinite(): Tensor { return wrap(native.isfinite(this.handle)); }
  isnan(): Tensor { return wrap(native.isnan(this.handle)); }

  // ---- activations ----
  relu(): Tensor { return wrap(native.relu(this.handle)); }
  gelu(approximate: 'none' | 'tanh' = 'none'): Tensor { return wrap(native.gelu(this.handle, approximate)); }
  silu(): Tensor { return wrap(native.silu(this.handle)); }
  sigmoid(): Tensor { return wrap(native.sigmoid(this.handle)); }
  tanh(): Tensor { return wrap(native.tanh(this.handle)); }
  softplus(beta = 1, threshold = 20): Tensor { return wrap(native.softplus(this.handle, beta, threshold)); }
  leakyRelu(slope = 0.01): Tensor { return wrap(native.leakyRelu(this.handle, slope)); }
  softmax(dim: number, dtype?: DType): Tensor { return wrap(native.softmax(this.handle, dim, dtype)); }
  logSoftmax(dim: number, dtype?: DType): Tensor { return wrap(native.logSoftmax(this.handle, dim, dtype)); }

  // ---- in place (for optimizers and initialisers; use under noGrad on parameters) ----
  add_(other: Operand, alpha?: number): this { native.add_(this.handle, operand(other), alpha); return this; }
  sub_(other: Operand, alpha?: number): this { native.sub_(this.handle, operand(other), alpha); return this; }
  mul_(other: Operand): this { native.mul_(this.handle, operand(other)); return this; }
  div_(other: Operand): this { native.div_(this.handle, operand(other)); return this; }
  addcmul_(tensor1: Tensor, tensor2: Tensor, value = 1): this { native.addcmul_(this.handle, tensor1.handle, tensor2.handle, value); return this; }
  addcdiv_(tensor1: Tensor, tensor2: Tensor, value = 1): this { native.addcdiv_(this.handle, tensor1.handle, tensor2.handle, value); return this; }
  lerp_(end: Tensor, weight: Operand): this { native.lerp_(this.handle, end.handle, operand(weight)); return this; }
  copy_(source: Tensor): this { native.copy_(this.handle, source.handle); return this; }
  zero_(): this { native.zero_(this.handle); return this; }
  fill_(value: number): this { native.fill_(this.handle, value); return this; }
  clamp_(min?: number | null, max?: number | null): this { native.clamp_(this.handle, min ?? null, max ?? null); return this; }
  sqrt_(): this { native.sqrt_(this.handle); return this; }
  erfinv_(): this { native.erfinv_(this.handle); return this; }
  normal_(mean = 0, std = 1, generator?: Generator): this { native.normal_(this.handle, mean, std, generator?.handle); return this; }
  uniform_(low = 0, high = 1, generator?: Generator): this { native.uniform_(this.handle, low, high, generator?.handle); return this; }
  maskedFill_(mask: Tensor, value: number): this { native.maskedFill_(this.handle, mask.handle, value); return this; }

  // ---- linear algebra ----
  matmul(other: Tensor): Tensor { return wrap(native.matmul(this.handle, other.handle)); }
  mm(other: Tensor): Tensor { return wrap(native.mm(this.handle, other.handle)); }
  bmm(other: Tensor): Tensor { return wrap(native.bmm(this.handle, other.handle)); }

  // ---- shape ----
  view(...shape: number[]): Tensor { return wrap(native.view(this.handle, shape)); }
  reshape(...shape: number[]): Tensor { return wrap(native.reshape(this.handle, shape)); }
  permute(...dims: number[]): Tensor { return wrap(native.permute(this.handle, dims)); }
  transpose(dim0: number, dim1: number): Tensor { return wrap(native.transpose(this.handle, dim0, dim1)); }
  /** Transpose of a 2-D tensor. */
  t(): Tensor { return this.transpose(0, 1); }
  flatten(startDim = 0, endDim = -1): Tensor { return wrap(native.flatten(this.handle, startDim, endDim)); }
  squeeze(dim?: number): Tensor { return wrap(native.squeeze(this.handle, dim ?? null)); }
  unsqueeze(dim: number): Tensor { return wrap(native.unsqueeze(this.handle, dim)); }
  expand(...shape: number[]): Tensor { return wrap(native.expand(this.handle, shape)); }
  repeat(...repeats: number[]): Tensor { return wrap(native.repeat(this.handle, repeats)); }
  split(sizeOrSizes: number | number[], dim = 0): Tensor[] { return wrapList(native.split(this.handle, sizeOrSizes, dim)); }
  chunk(chunks: number, dim = 0): Tensor[] { return wrapList(native.chunk(this.handle, chunks, dim)); }
  unbind(dim = 0): Tensor[] { return wrapList(native.unbind(this.handle, dim)); }
  narrow(dim: number, start: number, length: number): Tensor { return wrap(native.narrow(this.handle, dim, start, length)); }
  select(dim: number, index: number): Tensor { return wrap(native.select(this.handle, dim, index)); }
  /** Python's x[..., start:end:step] along one dimension (null = open end). */
  slice(dim: number, start: number | null = null, end: number | null = null, step = 1): Tensor {
    return wrap(native.slice(this.handle, dim, start, end, step));
  }
  indexSelect(dim: number, index: Tensor): Tensor { return wrap(native.indexSelect(this.handle, dim, index.handle)); }
  gather(dim: number, index: Tensor): Tensor { return wrap(native.gather(this.handle, dim, index.handle)); }
  scatter(dim: number, index: Tensor, source: Operand): Tensor { return wrap(native.scatter(this.handle, dim, index.handle, operand(source))); }
  scatterAdd(dim: number, index: Tensor, source: Tensor): Tensor { return wrap(native.scatterAdd(this.handle, dim, index.handle, source.handle)); }
  maskedFill(mask: Tensor, value: Operand): Tensor { return wrap(native.maskedFill(this.handle, mask.handle, operand(value))); }
  maskedSelect(mask: Tensor): Tensor { return wrap(native.maskedSelect(this.handle, mask.handle)); }
  flip(...dims: number[]): Tensor { return wrap(native.flip(this.handle, dims)); }
  roll(shifts: number | number[], dims: number | number[]): Tensor { return wrap(native.roll(this.handle, [shifts].flat(), [dims].flat())); }
  /** torch.nn.functional.pad: pads = [left, right, top, bottom, ...] from the last dim. */
  pad(pads: number[], mode: 'constant' | 'reflect' | 'replicate' | 'circular' = 'constant', value?: number): Tensor {
    return wrap(native.pad(this.handle, pads, mode, mode === 'constant' ? (value ?? 0) : null));
  }
  oneHot(numClasses: number): Tensor { return wrap(native.oneHot(this.handle, numClasses)); }
  tril(diagonal = 0): Tensor { return wrap(native.tril(this.handle, diagonal)); }
  triu(diagonal = 0): Tensor { return wrap(native.triu(this.handle, diagonal)); }

  // ---- reductions (dim omitted = all elements) ----
  sum(dim?: number | number[] | null, keepdim = false, dtype?: DType): Tensor {
    return wrap(native.sum(this.handle, dim === undefined || dim === null ? null : [dim].flat(), keepdim, dtype));
  }
  mean(dim?: number | number[] | null, keepdim = false, dtype?: DType): Tensor {
    return wrap(native.mean(this.handle, dim === undefined || dim === null ? null : [dim].flat(), keepdim, dtype));
  }
  prod(): Tensor { return wrap(native.prod(this.handle)); }
  var(dim?: number | number[] | null, unbiased = true, keepdim = false): Tensor {
    return wrap(native.var(this.handle, dim === undefined || dim === null ? null : [dim].flat(), unbiased, keepdim));
  }
  std(dim?: number | number[] | null, unbiased = true, keepdim = false): Tensor {
    return wrap(native.std(this.handle, dim === undefined || dim === null ? null : [dim].flat(), unbiased, keepdim));
  }
  norm(p = 2, dim?: number | number[] | null, keepdim = false): Tensor {
    return wrap(native.norm(this.handle, p, dim === undefined || dim === null ? null : [dim].flat(), keepdim));
  }
  logsumexp(dim: number | number[], keepdim = false): Tensor { return wrap(native.logsumexp(this.handle, [dim].flat(), keepdim)); }
  cumsum(dim: number): Tensor { return wrap(native.cumsum(this.handle, dim)); }
  all(): Tensor { return wrap(native.all(this.handle)); }
  any(): Tensor { return wrap(native.any(this.handle)); }
  amax(dim: number | number[], keepdim = false): Tensor { return wrap(native.amax(this.handle, [dim].flat(), keepdim)); }
  amin(dim: number | number[], keepdim = false): Tensor { return wrap(native.amin(this.handle, [dim].flat(), keepdim)); }
  /** max over all elements. */
  max(): Tensor;
  /** [values, indices] along dim. */
  max(dim: number, keepdim?: boolean): [Tensor, Tensor];
  max(dim?: number, keepdim = false): Tensor | [Tensor, Tensor] {
    if (dim === undefined) return wrap(native.max(this.handle));
    return wrapList(native.max(this.handle, dim, keepdim)) as [Tensor, Tensor];
  }
  min(): Tensor;
  min(dim: number, keepdim?: boolean): [Tensor, Tensor];
  min(dim?: number, keepdim = false): Tensor | [Tensor, Tensor] {
    if (dim === undefined) return wrap(native.min(this.handle));
    return wrapList(native.min(this.handle, dim, keepdim)) as [Tensor, Tensor];
  }
  argmax(dim?: number, keepdim = false): Tensor { return wrap(native.argmax(this.handle, dim ?? null, keepdim)); }
  argmin(dim?: number, keepdim = false): Tensor { return wrap(native.argmin(this.handle, dim ?? null, keepdim)); }
  argsort(dim = -1, descending = false): Tensor { return wrap(native.argsort(this.handle, dim, descending)); }
  sort(dim = -1, descending = false): [Tensor, Tensor] { return wrapList(native.sort(this.handle, dim, descending)) as [Tensor, Tensor]; }
  topk(k: number, dim = -1, largest = true, sorted = true): [Tensor, Tensor] {
    return wrapList(native.topk(this.handle, k, dim, largest, sorted)) as [Tensor, Tensor];
  }
}

// ---- creation ----
function inferShape(data: NestedArray): number[] {
  const shape: number[] = [];
  let level: NestedArray = data;
  while (Array.isArray(level)) {
    shape.push(level.length);
    if (level.length === 0) break;
    level = level[0];
  }
  return shape;
}

function flatten(data: NestedArray, shape: number[], dim: number, out: number[]): void {
  if (dim === shape.length) {
    if (Array.isArray(data)) throw new TypeError('tensor(): ragged nested array (more nesting than the first element)');
    out.push(typeof data === 'boolean' ? Number(data) : data);
    return;
  }
  if (!Array.isArray(data) || data.length !== shape[dim]) {
    throw new TypeError(`tensor(): ragged nested array: expected length ${shape[dim]} at depth ${dim}`);
  }
  for (const item of data) flatten(item, shape, dim + 1, out);
}

const typedArrayDtype = (data: TypedArray): DType => {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Float64Array) return 'float64';
  if (data instanceof BigInt64Array) return 'int64';
  if (data instanceof Int32Array) return 'int32';
  if (data instanceof Int16Array) return 'int16';
  if (data instanceof Int8Array) return 'int8';
  return 'uint8';
};

function arrayFor(values: number[], dtype: DType): TypedArray {
  switch (dtype) {
    case 'float64': return Float64Array.from(values);
    case 'int64': return BigInt64Array.from(values, (v) => BigInt(Math.trunc(v)));
    case 'int32': return Int32Array.from(values);
    case 'int16': return Int16Array.from(values);
    case 'int8': return Int8Array.from(values);
    case 'uint8': return Uint8Array.from(values);
    case 'bool': return Uint8Array.from(values, (v) => (v ? 1 : 0));
    default: return Float32Array.from(values);
  }
}

function finish(tensor: Tensor, options: CreateOptions): Tensor {
  let result = tensor;
  if (options.device && options.device !== 'cpu') {
    result = tensor.to({ device: options.device });
    tensor.dispose();
  }
  if (options.requiresGrad) result.requiresGrad_(true);
  return result;
}

/** Tensor from raw bytes in native byte order (safetensors, datasets). */
export function fromBytes(bytes: ArrayBufferView | ArrayBuffer, dtype: DType, shape: number[]): Tensor {
  return wrap(native.fromBytes(bytes, dtype, shape));
}

/**
 * A tensor from a number, nested arrays or a typed array (then `shape` defaults to 1-D).
 * Without a dtype: typed arrays keep theirs; booleans give bool; numbers give float32 (JS
 * cannot tell 1 from 1.0, so unlike torch.tensor, integer lists need { dtype: 'int64' }).
 */
export function tensor(data: NestedArray | TypedArray, options: CreateOptions & { shape?: number[] } = {}): Tensor {
  if (ArrayBuffer.isView(data)) {
    const own = typedArrayDtype(data);
    const shape = options.shape ?? [data.length];
    let result = fromBytes(data, own, shape);
    if (options.dtype && options.dtype !== own) {
      const converted = result.to({ dtype: options.dtype });
      result.dispose();
      result = converted;
    }
    return finish(result, options);
  }
  const shape = options.shape ?? inferShape(data);
  const values: number[] = [];
  flatten(data, inferShape(data), 0, values);
  const allBoolean = (function check(value: NestedArray): boolean {
    return Array.isArray(value) ? value.every(check) : typeof value === 'boolean';
  })(data);
  const dtype = options.dtype ?? (values.length > 0 && allBoolean ? 'bool' : 'float32');
  const storageDtype: DType = dtype === 'float16' || dtype === 'bfloat16' ? 'float32' : dtype;
  let result = fromBytes(arrayFor(values, storageDtype), storageDtype, shape);
  if (storageDtype !== dtype) {
    const converted = result.to({ dtype });
    result.dispose();
    result = converted;
  }
  return finish(result, options);
}

export function zeros(shape: number[], options: CreateOptions = {}): Tensor {
  return finishGrad(wrap(native.zeros(shape, options.dtype, options.device)), options);
}
export function ones(shape: number[], options: CreateOptions = {}): Tensor {
  return finishGrad(wrap(native.ones(shape, options.dtype, options.device)), options);
}
export function empty(shape: number[], options: CreateOptions = {}): Tensor {
  return finishGrad(wrap(native.empty(shape, options.dtype, options.device)), options);
}
export function full(shape: number[], value: number, options: CreateOptions = {}): Tensor {
  return finishGrad(wrap(native.full(shape, value, options.dtype, options.device)), options);
}
export function arange(start: number, end?: number, step = 1, options: CreateOptions = {}): Tensor {
  const [from, to] = end === undefined ? [0, start] : [start, end];
  const dtype = options.dtype ?? ([from, to, step].every(Number.isInteger) ? 'int64' : 'float32');
  return finishGrad(wrap(native.arange(from, to, step, dtype, options.device)), options);
}
export function linspace(start: number, end: number, steps: number, options: CreateOptions = {}): Tensor {
  return finishGrad(wrap(native.linspace(start, end, steps, options.dtype, options.device)), options);
}
export function eye(rows: number, columns = rows, options: CreateOptions = {}): Tensor {
  return finishGrad(wrap(native.eye(rows, columns, options.dtype, options.device)), options);
}
export function rand(shape: number[], options: CreateOptions & { generator?: Generator } = {}): Tensor {
  return finishGrad(wrap(native.rand(shape, options.dtype, options.device, options.generator?.handle)), options);
}
export function randn(shape: number[], options: CreateOptions & { generator?: Generator } = {}): Tensor {
  return finishGrad(wrap(native.randn(shape, options.dtype, options.device, options.generator?.handle)), options);
}
/** Integers uniform in [low, high). */
export function randint(low: number, high: number, shape: number[], options: CreateOptions & { generator?: Generator } = {}): Tensor {
  return wrap(native.randint(low, high, shape, options.dtype ?? 'int64', options.device, options.generator?.handle));
}
export function randperm(n: number, options: CreateOptions & { generator?: Generator } = {}): Tensor {
  return wrap(native.randperm(n, options.dtype ?? 'int64', options.device, options.generator?.handle));
}
/** Bernoulli draws: with p, each element of the result is 1 with probability p (shape of input);
 * without p, input holds the probabilities. */
export function bernoulli(input: Tensor, p?: number, generator?: Generator): Tensor {
  return wrap(native.bernoulli(input.handle, p ?? null, generator?.handle));
}
export function zerosLike(input: Tensor): Tensor { return wrap(native.zerosLike(input.handle)); }
export function onesLike(input: Tensor): Tensor { return wrap(native.onesLike(input.handle)); }
export function fullLike(input: Tensor, value: number): Tensor { return wrap(native.fullLike(input.handle, value)); }
export function randLike(input: Tensor): Tensor { return wrap(native.randLike(input.handle)); }
export function randnLike(input: Tensor): Tensor { return wrap(native.randnLike(input.handle)); }

function finishGrad(result: Tensor, options: CreateOptions): Tensor {
  if (options.requiresGrad) result.requiresGrad_(true);
  return result;
}

// ---- functions over several tensors ----
export function cat(tensors: Tensor[], dim = 0): Tensor { return wrap(native.cat(tensors.map((t) => t.handle), dim)); }
export function stack(tensors: Tensor[], dim = 0): Tensor { return wrap(native.stack(tensors.map((t) => t.handle), dim)); }
export function where(condition: Tensor, input: Tensor, other: Tensor): Tensor {
  return wrap(native.where(condition.handle, input.handle, other.handle));
}

export { wrap as wrapHandle };
