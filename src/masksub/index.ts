// The MaskSub method and its variants: the step for any model (api.ts), masking from outside
// (masking.ts), and the two-branch step with its losses (method.ts).
export * from './method.js';
export * from './methods.js';
export * from './api.js';
export * from './masking.js';
