// The masksub package: tensors and autograd on libtorch, nn layers, models, the MaskSub method,
// optimizers, data, training and comparison reports.
export * from './tensor/tensor.js';
export { blasLibraries, buildInfo, cudaAvailable, cudaDeviceCount, getNumThreads, liveTensors, setNumThreads, synchronize } from './tensor/native.js';
export * as nn from './nn/index.js';
export * as F from './nn/functional.js';
export * as optim from './optim/index.js';
export * as models from './models/index.js';
export * as masksub from './masksub/index.js';
export { loadSafetensors, saveSafetensors, encodeTensors, decodeTensors } from './tensor/safetensors.js';
export { train, evaluate } from './train/trainer.js';
export { compare } from './experiment/compare.js';
export { buildConfig, PRESETS, DEFAULTS, type TrainConfig, type ResolvedTrainConfig } from './train/config.js';
export { loadDataset } from './data/datasets.js';
export { renderReport } from './report/index.js';
