// The device machine's first check: the addon sees CUDA, a matmul + backward on the GPU agrees with
// the CPU, a large matmul runs at GPU speed, and a loader batch finished on the GPU (deviceBatch:
// pinned uint8 copy with non_blocking, normalize, erase, mix) equals the CPU's bytes with a flat
// live-tensor count. Prints one JSON line; exits 1 if a check fails.
// Usage: node --import tsx bench/gpu/cuda-check.ts
import { buildInfo, cudaAvailable, cudaDeviceCount, liveTensors, synchronize } from '../../src/tensor/native.js';
import { manualSeed, noGrad, randn, type Tensor, tensor, tidy } from '../../src/tensor/tensor.js';
import { loadDataset } from '../../src/data/datasets.js';
import { BatchLoader } from '../../src/data/loader.js';
import { deviceBatch } from '../../src/train/device-batch.js';

const report: Record<string, unknown> = { build: buildInfo(), cudaAvailable: cudaAvailable(), cudaDevices: cudaDeviceCount() };
const failures: string[] = [];
if (!report.cudaAvailable) failures.push('cudaAvailable() is false: the addon was built without CUDA or sees no GPU');

function maxAbs(tensor: Tensor): number {
  return tidy(() => tensor.abs().max().item());
}

if (report.cudaAvailable) {
  manualSeed(0);
  tidy(() => {
    const x = randn([256, 512]);
    const w = randn([512, 384]).mul(0.05).requiresGrad_(true);
    const lossCpu = x.matmul(w).tanh().square().mean();
    lossCpu.backward();
    const gradCpu = w.grad as Tensor;
    const xg = x.to({ device: 'cuda' });
    const wg = noGrad(() => w.detach().to({ device: 'cuda' })).requiresGrad_(true);
    const lossGpu = xg.matmul(wg).tanh().square().mean();
    lossGpu.backward();
    const gradGpu = (wg.grad as Tensor).to({ device: 'cpu' });
    const lossDiff = Math.abs(lossCpu.item() - lossGpu.item());
    const gradDiff = maxAbs(gradCpu.sub(gradGpu)) / Math.max(1e-12, maxAbs(gradCpu));
    report.matmulBackward = { device: wg.device, loss: lossCpu.item(), lossAbsDiff: lossDiff, gradRelMaxDiff: gradDiff };
    // float32 matmul on the GPU (TF32 off by default for matmul): agreement to ~1e-5; 2e-3 allows TF32.
    if (!(gradDiff < 2e-3 && lossDiff < 1e-3)) failures.push(`GPU and CPU disagree: loss diff ${lossDiff}, grad relative diff ${gradDiff}`);
  });
  tidy(() => {
    const n = 8192;
    const a = randn([n, n], { device: 'cuda' });
    const b = randn([n, n], { device: 'cuda' });
    a.matmul(b).dispose();
    synchronize();
    const repeats = 10;
    const t0 = performance.now();
    for (let index = 0; index < repeats; index++) a.matmul(b).dispose();
    synchronize();
    const seconds = (performance.now() - t0) / 1000;
    report.matmulTflops = Number(((2 * n ** 3 * repeats) / seconds / 1e12).toFixed(2));
  });
}
if (report.cudaAvailable) {
  // Normalizing is float64 multiply-add, erasing fill is drawn on the CPU and mixing is float32
  // mul + add in separate kernels: the GPU's bytes should be the CPU's exactly.
  const dataset = loadDataset('synthetic', { split: 'train', limit: 64 });
  const loader = new BatchLoader(dataset, {
    batchSize: 32, shuffle: true, seed: 3, augment: { cropPadding: 2, hflip: true, randomErasing: 0.5 },
    mixup: { mixupAlpha: 0.8, cutmixAlpha: 1.0, labelSmoothing: 0.1, numClasses: dataset.numClasses },
  });
  const batches = [...loader.batchesSync(0)];
  const bytes = (device: string, index: number): Buffer => tidy(() => deviceBatch(batches[index]!, dataset, device).images.toBytes());
  const equal = batches.map((_, index) => bytes('cpu', index).equals(bytes('cuda', index)));
  const pinned = tidy(() => tensor(new Uint8Array(8)).pinMemory().isPinned());
  const before = liveTensors();
  for (let round = 0; round < 5; round++) tidy(() => void deviceBatch(batches[round % batches.length]!, dataset, 'cuda'));
  synchronize();
  report.deviceBatch = { batchesEqualToCpu: equal, pinned, liveTensorsBefore: before, liveTensorsAfter: liveTensors() };
  if (!equal.every(Boolean)) failures.push(`deviceBatch on CUDA differs from the CPU's bytes: ${JSON.stringify(equal)}`);
  if (!pinned) failures.push('pinMemory() gave a tensor that is not pinned');
  if (liveTensors() !== before) failures.push(`deviceBatch on CUDA left tensors alive: ${before} -> ${liveTensors()}`);
}
report.ok = failures.length === 0;
report.failures = failures;
process.stdout.write(JSON.stringify(report) + '\n');
process.exitCode = failures.length ? 1 : 0;
