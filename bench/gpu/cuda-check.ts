// The device machine's first check: the addon sees CUDA, a matmul + backward on the GPU agrees with
// the CPU, a large matmul runs at GPU speed, a loader batch finished on the GPU (deviceBatch:
// pinned uint8 copy with non_blocking, normalize, erase, mix) equals the CPU's bytes with a flat
// live-tensor count; a channels_last ResNet on the GPU gives the default layout's logits and
// gradients (cuDNN's NHWC kernels) and keeps its layout; and, where the build has NCCL, a
// one-process NCCL group all-reduces and broadcasts CUDA tensors (the path `--dist-backend auto`
// takes on a GPU). Prints one JSON line; exits 1 if a check fails.
// Usage: node --import tsx bench/gpu/cuda-check.ts
import { buildInfo, cudaAvailable, cudaDeviceCount, liveTensors, synchronize } from '../../src/tensor/native.js';
import { manualSeed, noGrad, randint, randn, type Tensor, tensor, tidy } from '../../src/tensor/tensor.js';
import { loadDataset } from '../../src/data/datasets.js';
import { BatchLoader } from '../../src/data/loader.js';
import { deviceBatch } from '../../src/train/device-batch.js';
import { ResNet } from '../../src/models/resnet.js';
import * as F from '../../src/nn/functional.js';
import { availableBackends, freePort, ProcessGroup } from '../../src/distributed/index.js';

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

if (report.cudaAvailable) {
  // channels_last on cuDNN: a small bottleneck ResNet (7x7 stem, max pool, 1x1 and 3x3 convs), the
  // same weights in both layouts, float32 (TF32 off for convolutions would need a flag we do not
  // set: libtorch's default allows TF32 in cuDNN convolutions, so the tolerance allows it).
  const build = (): ResNet => {
    manualSeed(0);
    return new ResNet({ block: 'bottleneck', layers: [1, 1, 1, 1], widths: [16, 16, 32, 32], stem: 'imagenet', imageSize: 64, inChannels: 3, numClasses: 10, dropPathRate: 0, dropRate: 0, maskPatchSize: 16 });
  };
  const standard = build().to({ device: 'cuda' });
  const nhwc = build().to({ device: 'cuda' }).setMemoryFormat('channels_last');
  tidy(() => {
    manualSeed(1);
    const images = randn([16, 3, 64, 64], { device: 'cuda' });
    const labels = randint(0, 10, [16], { device: 'cuda' });
    const logits = [standard, nhwc].map((model) => {
      const out = model.forward(images);
      F.crossEntropy(out, labels).backward();
      return out;
    });
    const logitDiff = maxAbs(logits[0]!.sub(logits[1]!)) / Math.max(1e-12, maxAbs(logits[0]!));
    const other = new Map(nhwc.namedParameters());
    let gradDiff = 0;
    for (const [key, parameter] of standard.namedParameters()) {
      const scale = maxAbs(parameter.grad!);
      if (scale > 0) gradDiff = Math.max(gradDiff, maxAbs(parameter.grad!.sub(other.get(key)!.grad!)) / scale);
    }
    const layout = nhwc.conv1.weight.memoryFormat();
    const gradLayout = nhwc.conv1.weight.grad!.memoryFormat();
    report.channelsLast = { logitRelMaxDiff: logitDiff, gradRelMaxDiff: gradDiff, weightLayout: layout, gradLayout };
    if (!(logitDiff < 2e-3 && gradDiff < 2e-2) || layout !== 'channels_last' || gradLayout !== 'channels_last') {
      failures.push(`channels_last on CUDA: logits ${logitDiff}, gradients ${gradDiff}, layouts ${layout}/${gradLayout}`);
    }
  });
  standard.dispose();
  nhwc.dispose();
}

if (report.cudaAvailable) {
  report.distBackends = availableBackends();
  if (availableBackends().includes('nccl')) {
    try {
      const port = await freePort();
      const group = ProcessGroup.init({ rank: 0, size: 1, localRank: 0, localSize: 1, masterAddr: '127.0.0.1', masterPort: port }, { timeoutSeconds: 60, backend: 'nccl', device: 'cuda:0' });
      try {
        const sums = group.allReduceNumbers([1.5, -2, 3], 'sum');
        const json = group.broadcastJson({ check: 'nccl' });
        const value = tidy(() => {
          const buffer = tensor(Float32Array.of(4, 5)).to({ device: 'cuda:0' });
          group.allReduce([buffer], 'avg');
          return Array.from(buffer.toTypedArray() as Float32Array);
        });
        group.barrier();
        report.nccl = { sums, json, avg: value };
        if (sums.join() !== '1.5,-2,3' || json.check !== 'nccl' || value.join() !== '4,5') failures.push(`NCCL world size 1 gave ${JSON.stringify(report.nccl)}`);
      } finally {
        group.destroy();
      }
    } catch (error) {
      failures.push(`NCCL: ${(error as Error).message}`);
    }
  } else {
    report.nccl = 'not built (see build.log: ProcessGroupNCCL.hpp or nccl.h not found)';
  }
}

report.ok = failures.length === 0;
report.failures = failures;
process.stdout.write(JSON.stringify(report) + '\n');
process.exitCode = failures.length ? 1 : 0;
