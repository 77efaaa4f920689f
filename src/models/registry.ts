// The registry of named model configs (timm's register_model): each family file (vit.ts,
// resnet.ts, ...) registers its own names next to its code, so adding a model or a family is one
// file. src/models/index.ts imports every family, which fills the registry; import createModel
// and friends from there.
import type { TextModelOverrides } from './bert.js';

/**
 * How a model spreads its drop-path rate over its residual blocks: 'linear' grows it from 0 in the
 * first block to the rate in the last (timm: torch.linspace(0, rate, blocks)); 'uniform' uses the
 * rate in every block (DeiT-III).
 */
export type DropPathSchedule = 'linear' | 'uniform';

/** What a caller may change of a named config for its data and recipe. */
export interface ModelOverrides {
  imageSize?: number;
  inChannels?: number;
  numClasses?: number;
  dropPathRate?: number;
  /** Default 'linear'. */
  dropPathSchedule?: DropPathSchedule;
  dropRate?: number;
  /** ViT: LayerScale init (null: none); BEiT: its gamma init (null: the config's own). */
  layerScale?: number | null;
  maskPatchSize?: number;
  /** ViT and BEiT: 'token' (class token) or 'avg' (mean of the patch tokens) feeds the head; absent: the model's own (ViT token, BEiT avg). */
  globalPool?: 'token' | 'avg';
  /** ViT only: timm's fc_norm (null: on exactly with globalPool 'avg'). */
  fcNorm?: boolean | null;
  /** ViT only: masking drops tokens ('drop') or replaces them by a learned mask token ('token'). */
  maskMode?: 'drop' | 'token';
  /** Text models only (family 'bert'): the tokenizer's vocabulary and special ids, the longest input. */
  text?: TextModelOverrides;
}

export interface ModelInfo {
  /** The family file that registered it (e.g. 'vit', 'resnet'). */
  family: string;
  /** The image side the config is made for (a ViT's position embedding is sized for it); 0 for text models. */
  imageSize: number;
  /**
   * A ViT's patch side: it can be built for any multiple of it (timm's img_size), its position
   * embedding then sized for that grid. Absent for models bound to imageSize or free of it.
   */
  patchSize?: number;
  description: string;
}

/** The models this registry builds: our Classifier (kept generic so this file imports no family). */
export interface RegisteredModel<Model> extends ModelInfo {
  build(overrides: ModelOverrides): Model;
}

const entries = new Map<string, RegisteredModel<unknown>>();

/** Registers a named config; a name registered twice is a programming error. */
export function registerModel<Model>(name: string, entry: RegisteredModel<Model>): void {
  if (entries.has(name)) throw new Error(`model '${name}' is registered twice`);
  entries.set(name, entry);
}

export function registeredNames(): string[] {
  return [...entries.keys()];
}

export function registeredModel(name: string): RegisteredModel<unknown> {
  const entry = entries.get(name);
  if (!entry) throw new Error(`unknown model '${name}'; known models: ${registeredNames().join(', ')}`);
  return entry;
}
