// torch.nn for this package.
export * from './module.js';
export * from './layers.js';
export * from './sample-noise.js';
export * as functional from './functional.js';
export * as init from './init.js';
