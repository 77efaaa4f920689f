// Builds models by name. Importing this module loads every family file, and each family file
// registers its named configs (registry.ts); a new family is one file plus one import line here.
import './bert.js';
import './resnet.js';
import './swin.js';
import './vit.js';
import type { Classifier } from './classifier.js';
import { type ModelInfo, type ModelOverrides, registeredModel, registeredNames } from './registry.js';

export function modelNames(): string[] {
  return registeredNames();
}

export function describeModel(name: string): ModelInfo {
  const { family, imageSize, description } = registeredModel(name);
  return { family, imageSize, description };
}

/** A named model, sized for the data (image size, channels, classes) and the recipe (drop rates). */
export function createModel(name: string, overrides: ModelOverrides = {}): Classifier {
  return registeredModel(name).build(overrides) as Classifier;
}
