// Weight initialisation, checked per parameter by its statistics: every parameter and buffer of a
// ViT and of two ResNets (basic blocks with the small stem, bottlenecks with the ImageNet stem)
// against the distribution timm gives it (a table by timm's names below, written from timm and
// torch.nn.init, not from our code), and against the PyTorch reference's init of the same model
// (reference/torch_models.py, torch.nn.init itself) as a second opinion.
//
// The bounds are 6 standard errors of each statistic for the parameter's element count (seeded,
// so the test is deterministic; at 6 sigma a correct init would fail about once in 10^8 seeds).
// They are tight enough to catch a 10x std or fan_in instead of fan_out (kaiming): the stem and
// the downsampling convs have fan_in != fan_out by 1.4x to 9x. The comparison with PyTorch's
// init is a cross-check of which distribution is used, not an independent one (both sides call
// libtorch's random kernels); the analytic table is the reference.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { keep, manualSeed, type Tensor, tidy } from '../src/index.js';
import { type Classifier, ResNet, type ResNetConfig, VisionTransformer, type VitConfig } from '../src/models/index.js';
import { runTorch } from './helpers/torch.js';

type Expected =
  | { kind: 'constant'; value: number }
  | { kind: 'normal'; std: number }
  | { kind: 'uniform'; bound: number };

interface Statistics { count: number; mean: number; std: number; maxAbs: number; withinOneStd: number; values: Float64Array }

function statistics(data: ArrayLike<number | bigint>): Statistics {
  const values = Float64Array.from(data as ArrayLike<number>, Number);
  const count = values.length;
  let sum = 0;
  for (const value of values) sum += value;
  const mean = sum / count;
  let squares = 0;
  let maxAbs = 0;
  for (const value of values) {
    squares += (value - mean) ** 2;
    maxAbs = Math.max(maxAbs, Math.abs(value));
  }
  const std = count > 1 ? Math.sqrt(squares / (count - 1)) : 0;
  let within = 0;
  for (const value of values) if (Math.abs(value - mean) <= std) within++;
  return { count, mean, std, maxAbs, withinOneStd: within / count, values };
}

const Z = 6;
/** Standard error of a sample std, relative to sigma, for n normal values (uniform values have less). */
const relativeStdError = (count: number): number => Math.SQRT1_2 / Math.sqrt(count - 1);

/** Checks one tensor's values against its expected distribution; returns a one-line summary. */
function checkDistribution(name: string, stats: Statistics, expected: Expected): string {
  if (expected.kind === 'constant') {
    // float32 parameters hold the nearest float32 to the constant
    const constant = Math.fround(expected.value);
    assert.ok(stats.values.every((value) => value === constant), `${name}: every value is ${expected.value} (mean ${stats.mean}, max |x| ${stats.maxAbs})`);
    return `${name} = ${expected.value}`;
  }
  const sigma = expected.kind === 'normal' ? expected.std : expected.bound / Math.sqrt(3);
  const n = stats.count;
  assert.ok(Math.abs(stats.mean) <= (Z * sigma) / Math.sqrt(n), `${name}: mean ${stats.mean} is more than ${Z} standard errors from 0 (sigma ${sigma}, n ${n})`);
  const stdRatio = stats.std / sigma;
  assert.ok(Math.abs(stdRatio - 1) <= Z * relativeStdError(n), `${name}: std ${stats.std} vs expected ${sigma} (ratio ${stdRatio.toFixed(3)}, n ${n}, allowed ±${(Z * relativeStdError(n)).toFixed(3)})`);
  if (expected.kind === 'uniform') {
    assert.ok(stats.maxAbs <= expected.bound, `${name}: |x| up to ${stats.maxAbs}, outside U(-${expected.bound}, ${expected.bound})`);
  } else {
    // timm's trunc_normal_ cuts at the absolute values -2 and 2 (100 sigma at std .02).
    assert.ok(stats.maxAbs <= 2, `${name}: |x| up to ${stats.maxAbs}, outside the truncation at 2`);
  }
  if (n >= 2000) {
    // The shape: 68.3% of normal values lie within one std, 57.7% of uniform ones.
    const share = expected.kind === 'normal' ? 0.6827 : 1 / Math.sqrt(3);
    const bound = Z * Math.sqrt((share * (1 - share)) / n);
    assert.ok(Math.abs(stats.withinOneStd - share) <= bound, `${name}: ${(100 * stats.withinOneStd).toFixed(1)}% of values within one std, ${expected.kind} gives ${(100 * share).toFixed(1)}%`);
  }
  return `${name} ${expected.kind} std ${stats.std.toExponential(3)} (expected ${sigma.toExponential(3)}, n ${n})`;
}

// ---- what timm gives each parameter, by timm's names ----

/** timm's VisionTransformer with init_weights_vit_timm; the patch conv keeps PyTorch's default. */
function vitExpectation(name: string, shape: number[], config: VitConfig): Expected {
  const patchFanIn = config.inChannels * config.patchSize * config.patchSize;
  if (name === 'cls_token') return { kind: 'normal', std: 1e-6 };
  if (name === 'pos_embed') return { kind: 'normal', std: 0.02 };
  // nn.Conv2d's default: kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)), the bias the same bound
  if (name === 'patch_embed.proj.weight' || name === 'patch_embed.proj.bias') return { kind: 'uniform', bound: 1 / Math.sqrt(patchFanIn) };
  if (/(^|\.)(qkv|proj|fc1|fc2|head)\.weight$/.test(name) && shape.length === 2) return { kind: 'normal', std: 0.02 };
  if (/(^|\.)(qkv|proj|fc1|fc2|head)\.bias$/.test(name)) return { kind: 'constant', value: 0 };
  if (/(^|\.)norm\d?\.weight$/.test(name)) return { kind: 'constant', value: 1 };
  if (/(^|\.)norm\d?\.bias$/.test(name)) return { kind: 'constant', value: 0 };
  if (/\.ls\d\.gamma$/.test(name) && config.layerScale !== null) return { kind: 'constant', value: config.layerScale };
  throw new Error(`no expected init for ViT parameter ${name}`);
}

/** timm's ResNet: kaiming_normal(fan_out, relu) convs, zero-init last BN scale per block, default fc. */
function resnetExpectation(name: string, shape: number[], config: ResNetConfig, fcInFeatures: number): Expected {
  const lastNorm = config.block === 'basic' ? 'bn2' : 'bn3';
  if (shape.length === 4) {
    const fanOut = shape[0] * shape[2] * shape[3];
    return { kind: 'normal', std: Math.sqrt(2 / fanOut) };
  }
  if (name === 'fc.weight' || name === 'fc.bias') return { kind: 'uniform', bound: 1 / Math.sqrt(fcInFeatures) };
  if (new RegExp(`^layer\\d\\.\\d+\\.${lastNorm}\\.weight$`).test(name)) return { kind: 'constant', value: 0 };
  if (/(bn\d|downsample\.1)\.weight$/.test(name)) return { kind: 'constant', value: 1 };
  if (/(bn\d|downsample\.1)\.(bias|running_mean)$/.test(name)) return { kind: 'constant', value: 0 };
  if (/(bn\d|downsample\.1)\.running_var$/.test(name)) return { kind: 'constant', value: 1 };
  if (/(bn\d|downsample\.1)\.num_batches_tracked$/.test(name)) return { kind: 'constant', value: 0 };
  throw new Error(`no expected init for ResNet parameter ${name}`);
}

interface InitCase {
  name: string;
  build: () => Classifier;
  expectation: (model: Classifier, name: string, shape: number[]) => Expected;
  spec: (model: Classifier) => Record<string, unknown>;
}

const VIT: VitConfig = {
  imageSize: 28, patchSize: 4, inChannels: 3, numClasses: 100, width: 192, depth: 2, heads: 3, mlpRatio: 4, qkvBias: true,
  layerScale: 0.1, dropPathRate: 0, dropPathSchedule: 'linear', dropRate: 0,
};
const RESNET_BASIC: ResNetConfig = {
  block: 'basic', layers: [1, 1, 1, 1], widths: [16, 32, 64, 128], stem: 'small', imageSize: 28, inChannels: 3, numClasses: 10,
  dropPathRate: 0, dropRate: 0, maskPatchSize: 4,
};
const RESNET_BOTTLENECK: ResNetConfig = {
  block: 'bottleneck', layers: [1, 1, 1, 1], widths: [8, 16, 32, 64], stem: 'imagenet', imageSize: 64, inChannels: 3, numClasses: 10,
  dropPathRate: 0, dropRate: 0, maskPatchSize: 8,
};

const CASES: InitCase[] = [
  {
    name: 'vit (192 wide, LayerScale)',
    build: () => new VisionTransformer(VIT),
    expectation: (_model, name, shape) => vitExpectation(name, shape, VIT),
    spec: () => ({ family: 'vit', ...VIT }),
  },
  ...[RESNET_BASIC, RESNET_BOTTLENECK].map((config): InitCase => ({
    name: `resnet ${config.block}, ${config.stem} stem`,
    build: () => new ResNet(config),
    expectation: (model, name, shape) => resnetExpectation(name, shape, config, (model as ResNet).fc.inFeatures),
    spec: () => ({ family: 'resnet', ...config }),
  })),
];

let pytorchSummaries: Record<string, Tensor> | null = null;
/** [mean, std, count] of every tensor of PyTorch's init of each case's model (one Python process for all). */
function pytorchStatistics(index: number): Record<string, Tensor> {
  if (pytorchSummaries === null) {
    const specs = JSON.stringify(CASES.map((entry) => tidy(() => {
      const model = entry.build();
      const spec = entry.spec(model);
      model.dispose();
      return spec;
    })));
    pytorchSummaries = runTorch(`
import torch_models as ref
for index, spec in enumerate(json.loads(${JSON.stringify(specs)})):
    torch.manual_seed(index)
    m = ref.build_model(spec)
    for name, value in m.state_dict().items():
        v = value.double().reshape(-1)
        std = v.std() if v.numel() > 1 else torch.zeros((), dtype=torch.float64)
        out[f'{index}:{name}'] = torch.stack([v.mean(), std, torch.tensor(float(v.numel()), dtype=torch.float64)])
`, {});
    for (const value of Object.values(pytorchSummaries)) keep(value);
  }
  const prefix = `${index}:`;
  return Object.fromEntries(Object.entries(pytorchSummaries).filter(([key]) => key.startsWith(prefix)).map(([key, value]) => [key.slice(prefix.length), value]));
}

for (const [index, initCase] of CASES.entries()) {
  test(`init of ${initCase.name}: every parameter and buffer has timm's distribution, and PyTorch's`, (t) => {
    tidy(() => {
      manualSeed(20 + index);
      const model = initCase.build();
      const ours = new Map<string, Statistics>();
      const lines: string[] = [];
      for (const [name, value] of model.stateDict()) {
        const stats = statistics(value.toTypedArray() as ArrayLike<number | bigint>);
        ours.set(name, stats);
        lines.push(checkDistribution(name, stats, initCase.expectation(model, name, value.shape)));
      }
      t.diagnostic(lines.filter((line) => line.includes('std')).slice(0, 6).join('; '));

      // PyTorch's init of the same model, summarized per tensor: the same distribution up to sampling.
      const theirs = pytorchStatistics(index);
      assert.deepEqual(Object.keys(theirs).sort(), [...ours.keys()].sort(), 'same tensors');
      for (const [name, stats] of ours) {
        const [mean, std, count] = theirs[name].toArray() as number[];
        assert.equal(count, stats.count, `${name}: element count`);
        if (std === 0 || stats.std === 0) {
          assert.equal(stats.std, std, `${name}: constant on both sides`);
          assert.equal(stats.mean, mean, `${name}: the same constant`);
          continue;
        }
        // Two independent samples of one distribution: their stds differ by sqrt(2) standard errors.
        const allowed = Z * Math.SQRT2 * relativeStdError(count);
        assert.ok(Math.abs(stats.std / std - 1) <= allowed, `${name}: std ${stats.std} vs PyTorch's ${std} (allowed ±${(100 * allowed).toFixed(1)}%)`);
        assert.ok(Math.abs(stats.mean - mean) <= Z * Math.SQRT2 * (std / Math.sqrt(count)), `${name}: mean ${stats.mean} vs PyTorch's ${mean}`);
      }
      model.dispose();
    });
  });
}
