// The MaskSub method and its variants: the step for any model (api.ts), masking from outside
// (masking.ts), the two-branch step with its losses (method.ts), and CLIP's
// contrastive loss, MaskSub step and zero-shot evaluation (clip.ts).
export * from './method.js';
export * from './methods.js';
export * from './api.js';
export * from './masking.js';
export * from './clip.js';
