// The device machine's first check: the addon sees CUDA, a matmul + backward on the GPU agrees with
// the CPU, and a large matmul runs at GPU speed. Prints one JSON line; exits 1 if a check fails.
// Usage: node --import tsx bench/gpu/cuda-check.ts
import { buildInfo, cudaAvailable, cudaDeviceCount, synchronize } from '../../src/tensor/native.js';
import { manualSeed, noGrad, randn, type Tensor, tidy } from '../../src/tensor/tensor.js';

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
report.ok = failures.length === 0;
report.failures = failures;
process.stdout.write(JSON.stringify(report) + '\n');
process.exitCode = failures.length ? 1 : 0;
