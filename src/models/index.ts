// Model families and the registry of named configs.
export * from './classifier.js';
export * from './vit.js';
export * from './resnet.js';
export * from './bert.js';
export * from './swin.js';
export * from './beit.js';
export * from './clip.js';
export { type DropPathSchedule, type ModelInfo, type ModelOverrides, registerModel, type RegisteredModel } from './registry.js';
export * from './factory.js';
export * from './pretrained.js';
