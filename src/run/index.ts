// The run layer: one training run's directory and files (see format.ts for the layout).
export * from './checkpoint.js';
export * from './directory.js';
export * from './errors.js';
export * from './format.js';
export { DirectoryLock, type LockHolder } from './lock.js';
