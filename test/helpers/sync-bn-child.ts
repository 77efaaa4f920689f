// One rank of the SyncBatchNorm check in test/distributed.test.ts. Every rank builds the same
// global batch (seeded), takes its contiguous share of the rows, runs two training forwards and
// backwards of a BatchNorm2d with sync on (loss: sum(output * g) with a fixed global g, so the
// ranks' losses add up to the single process's loss), then one eval forward, and prints its
// outputs, input gradients, weight / bias gradients and running statistics as one JSON line.
// syncBnCase() is also what the test feeds one process with the whole batch.
import { ProcessGroup, worldFromEnvironment } from '../../src/distributed/index.js';
import { BatchNorm2d } from '../../src/nn/index.js';
import { Generator, noGrad, randn, type Tensor, tidy } from '../../src/tensor/tensor.js';

export const SYNC_BN = { batch: 8, channels: 3, height: 5, width: 4, steps: 2 } as const;

export interface SyncBnResult {
  outputs: number[][];
  inputGrads: number[][];
  weightGrad: number[];
  biasGrad: number[];
  runningMean: number[];
  runningVar: number[];
  evalOutput: number[];
}

const values = (t: Tensor): number[] => Array.from(t.toTypedArray() as Float32Array);

/** Runs the case on rows [start, start + count) of each step's global batch. */
export function syncBnCase(start: number, count: number, sync: boolean): SyncBnResult {
  return tidy(() => {
    const { batch, channels, height, width, steps } = SYNC_BN;
    const generator = new Generator(21);
    const layer = new BatchNorm2d(channels);
    // Non-trivial affine parameters, and channels with their own offsets and scales.
    noGrad(() => {
      layer.weight.copy_(randn([channels], { generator }).add(1));
      layer.bias.copy_(randn([channels], { generator }));
    });
    layer.sync = sync;
    const offsets = randn([1, channels, 1, 1], { generator }).mul(3);
    const scales = randn([1, channels, 1, 1], { generator }).abs().add(0.5);
    const result: SyncBnResult = { outputs: [], inputGrads: [], weightGrad: [], biasGrad: [], runningMean: [], runningVar: [], evalOutput: [] };
    for (let step = 0; step < steps; step++) {
      const input = randn([batch, channels, height, width], { generator }).mul(scales).add(offsets).narrow(0, start, count).contiguous();
      const upstream = randn([batch, channels, height, width], { generator }).narrow(0, start, count);
      input.requiresGrad = true;
      layer.weight.zeroGrad();
      layer.bias.zeroGrad();
      const output = layer.forward(input);
      output.mul(upstream).sum().backward();
      result.outputs.push(values(output));
      result.inputGrads.push(values(input.grad as Tensor));
    }
    // The last step's parameter gradients.
    result.weightGrad = values(layer.weight.grad as Tensor);
    result.biasGrad = values(layer.bias.grad as Tensor);
    result.runningMean = values(layer.runningMean);
    result.runningVar = values(layer.runningVar);
    layer.eval();
    const probe = randn([batch, channels, height, width], { generator }).narrow(0, start, count);
    result.evalOutput = values(noGrad(() => layer.forward(probe)));
    layer.dispose();
    return result;
  });
}

if (process.argv[1]?.endsWith('sync-bn-child.ts')) {
  const world = worldFromEnvironment();
  if (world === null) throw new Error('sync-bn-child: WORLD_SIZE is not set');
  const group = ProcessGroup.init(world, { timeoutSeconds: 30 });
  const share = SYNC_BN.batch / world.size;
  process.stdout.write(JSON.stringify(syncBnCase(world.rank * share, share, true)) + '\n');
  group.destroy();
}
