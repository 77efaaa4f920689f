// Model families and the registry of named configs.
export * from './classifier.js';
export * from './vit.js';
export * from './resnet.js';
export * from './registry.js';
