// Builds models by name. Importing this module loads every family file, and each family file
// registers its named configs (registry.ts); a new family is one file plus one import line here.
import './bert.js';
import './resnet.js';
import './swin.js';
import './vit.js';
// After vit.js, whose helpers it imports, so that the registry lists ViT, Swin, then BEiT.
import './beit.js';
import type { Classifier } from './classifier.js';
import { type ModelInfo, type ModelOverrides, registeredModel, registeredNames } from './registry.js';

export function modelNames(): string[] {
  return registeredNames();
}

export function describeModel(name: string): ModelInfo {
  const { family, imageSize, description, patchSize } = registeredModel(name);
  return patchSize === undefined ? { family, imageSize, description } : { family, imageSize, description, patchSize };
}

/** A named model, sized for the data (image size, channels, classes) and the recipe (drop rates). */
export function createModel(name: string, overrides: ModelOverrides = {}): Classifier {
  return registeredModel(name).build(overrides) as Classifier;
}
