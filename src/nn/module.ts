// Module and Parameter, as in PyTorch: a tree of modules owning named parameters and buffers,
// train/eval mode, state dicts with PyTorch/timm names, and moving between devices.
import { native } from '../tensor/native.js';
import { type Device, type DType, keep, noGrad, Tensor } from '../tensor/tensor.js';

/** A tensor that a module owns and an optimizer updates. Lives outside every tidy scope. */
export class Parameter extends Tensor {
  constructor(data: Tensor, requiresGrad = true) {
    // A detached alias of `data`: the caller may dispose its own handle afterwards.
    super(native.detach(data.handle));
    keep(this);
    this.requiresGrad_(requiresGrad);
  }
}

export interface LoadResult {
  missingKeys: string[];
  unexpectedKeys: string[];
}

export type StateDict = Map<string, Tensor>;

export abstract class Module {
  training = true;
  private readonly parameterSlots = new Map<string, Parameter | null>();
  private readonly bufferSlots = new Map<string, { tensor: Tensor | null; persistent: boolean }>();
  private readonly childSlots = new Map<string, Module>();

  protected registerParameter(name: string, parameter: Parameter | null): Parameter {
    this.parameterSlots.set(name, parameter);
    return parameter as Parameter;
  }

  /** Buffers are state that is saved but not trained (running statistics). */
  protected registerBuffer(name: string, tensor: Tensor | null, persistent = true): Tensor {
    if (tensor) keep(tensor);
    this.bufferSlots.set(name, { tensor, persistent });
    return tensor as Tensor;
  }

  protected registerModule<M extends Module>(name: string, module: M): M {
    this.childSlots.set(name, module);
    return module;
  }

  /** Replaces a buffer's tensor (BatchNorm's counters); the old one is disposed. */
  protected setBuffer(name: string, tensor: Tensor): void {
    const slot = this.bufferSlots.get(name);
    if (!slot) throw new Error(`no buffer named ${name}`);
    keep(tensor);
    if (slot.tensor && slot.tensor !== tensor) slot.tensor.dispose();
    slot.tensor = tensor;
  }

  *namedChildren(): Generator<[string, Module]> {
    yield* this.childSlots.entries();
  }

  children(): Module[] {
    return [...this.childSlots.values()];
  }

  *namedModules(prefix = ''): Generator<[string, Module]> {
    yield [prefix, this];
    for (const [name, child] of this.childSlots) {
      yield* child.namedModules(prefix ? `${prefix}.${name}` : name);
    }
  }

  modules(): Module[] {
    return [...this.namedModules()].map(([, module]) => module);
  }

  namedParameters(prefix = ''): [string, Parameter][] {
    const out: [string, Parameter][] = [];
    const seen = new Set<Parameter>();
    for (const [path, module] of this.namedModules(prefix)) {
      for (const [name, parameter] of module.parameterSlots) {
        if (!parameter || seen.has(parameter)) continue;
        seen.add(parameter);
        out.push([path ? `${path}.${name}` : name, parameter]);
      }
    }
    return out;
  }

  parameters(): Parameter[] {
    return this.namedParameters().map(([, parameter]) => parameter);
  }

  namedBuffers(prefix = '', persistentOnly = false): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [path, module] of this.namedModules(prefix)) {
      for (const [name, slot] of module.bufferSlots) {
        if (!slot.tensor || (persistentOnly && !slot.persistent)) continue;
        out.push([path ? `${path}.${name}` : name, slot.tensor]);
      }
    }
    return out;
  }

  buffers(): Tensor[] {
    return this.namedBuffers().map(([, buffer]) => buffer);
  }

  train(mode = true): this {
    for (const module of this.modules()) module.training = mode;
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /** Parameters then persistent buffers, by PyTorch name. The tensors are the module's own. */
  stateDict(): StateDict {
    return new Map<string, Tensor>([...this.namedParameters(), ...this.namedBuffers('', true)]);
  }

  /**
   * Copies values in by name. strict (default) throws on missing or unexpected keys; either
   * mode throws on a shape mismatch, naming the key and both shapes, before changing anything.
   */
  loadStateDict(state: StateDict | Record<string, Tensor>, options: { strict?: boolean } = {}): LoadResult {
    const strict = options.strict ?? true;
    const incoming = state instanceof Map ? state : new Map(Object.entries(state));
    const own = this.stateDict();
    const missingKeys = [...own.keys()].filter((key) => !incoming.has(key));
    const unexpectedKeys = [...incoming.keys()].filter((key) => !own.has(key));
    const problems: string[] = [];
    // Long key lists are cut: the first few name the problem, a count says how big it is.
    const list = (keys: string[]): string => (keys.length > 8 ? `${keys.slice(0, 8).join(', ')} and ${keys.length - 8} more` : keys.join(', '));
    if (strict && missingKeys.length) problems.push(`missing keys: ${list(missingKeys)}`);
    if (strict && unexpectedKeys.length) problems.push(`unexpected keys: ${list(unexpectedKeys)}`);
    for (const [key, target] of own) {
      const source = incoming.get(key);
      if (!source) continue;
      const want = target.shape;
      const have = source.shape;
      if (want.length !== have.length || want.some((size, i) => size !== have[i])) {
        problems.push(`${key}: shape [${have.join(', ')}] in the state dict, [${want.join(', ')}] in the model`);
      }
    }
    if (problems.length) {
      const shown = problems.length > 10 ? [...problems.slice(0, 10), `${problems.length - 10} more shape mismatches`] : problems;
      throw new Error(`loadStateDict: ${shown.join('; ')}`);
    }
    noGrad(() => {
      for (const [key, target] of own) {
        const source = incoming.get(key);
        if (source) target.copy_(source);
      }
    });
    return { missingKeys, unexpectedKeys };
  }

  /** Moves (and optionally casts floating point) parameters and buffers in place, as module.to(). */
  to(target: { device?: Device; dtype?: DType }): this {
    noGrad(() => {
      for (const tensor of [...this.parameters(), ...this.buffers()]) {
        const isFloat = tensor.dtype.startsWith('float') || tensor.dtype === 'bfloat16';
        const moved = tensor.to({ device: target.device, dtype: isFloat ? target.dtype : undefined });
        native.setData(tensor.handle, moved.handle);
        moved.dispose();
      }
    });
    return this;
  }

  zeroGrad(): void {
    for (const parameter of this.parameters()) parameter.zeroGrad();
  }

  numParameters(): number {
    return this.parameters().reduce((total, parameter) => total + parameter.numel, 0);
  }

  /** Frees every parameter and buffer. The module is unusable afterwards. */
  dispose(): void {
    for (const tensor of [...this.parameters(), ...this.buffers()]) tensor.dispose();
  }
}

/** Modules held in order, named 0, 1, 2, ... (timm's blocks.0.attn...). */
export class ModuleList<M extends Module = Module> extends Module {
  readonly items: M[];
  constructor(items: M[] = []) {
    super();
    this.items = [];
    for (const item of items) this.append(item);
  }
  append(item: M): this {
    this.registerModule(String(this.items.length), item);
    this.items.push(item);
    return this;
  }
  get length(): number {
    return this.items.length;
  }
  at(index: number): M {
    return this.items[index];
  }
  [Symbol.iterator](): Iterator<M> {
    return this.items[Symbol.iterator]();
  }
}

/** A module with a single-input forward. */
export abstract class Layer extends Module {
  abstract forward(input: Tensor): Tensor;
}

export class Sequential extends Layer {
  readonly layers: Layer[];
  constructor(...layers: Layer[]) {
    super();
    this.layers = layers;
    layers.forEach((layer, index) => this.registerModule(String(index), layer));
  }
  forward(input: Tensor): Tensor {
    let x = input;
    for (const layer of this.layers) x = layer.forward(x);
    return x;
  }
}

export class Identity extends Layer {
  forward(input: Tensor): Tensor {
    return input;
  }
}
