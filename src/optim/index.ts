// Optimizers, gradient clipping, learning-rate schedules and weight averaging for training.
export * from './optimizer.js';
export * from './adamw.js';
export * from './sgd.js';
export * from './lamb.js';
export * from './clip.js';
export * from './groups.js';
export * from './schedule.js';
export * from './ema.js';
export * from './grad-scaler.js';
