// The MaskSub method and its variants.
export * from './method.js';
