// The masksub package: tensors and autograd on libtorch, nn layers, models, the MaskSub method,
// optimizers, data, training and comparison reports.
export * from './tensor/tensor.js';
export { blasLibraries, buildInfo, cudaAvailable, cudaDeviceCount, getNumThreads, liveTensors, setNumThreads, synchronize } from './tensor/native.js';
export * as nn from './nn/index.js';
export * as F from './nn/functional.js';
