// ResNet (timm's names: conv1/bn1, layer1..4 with basic or bottleneck blocks, fc), with a 3x3
// stem for small images. MaskSub for CNNs zeroes a random r fraction of fixed square patches
// of the normalized input per sample (the masked set, unlike the official code's defect).
// Optionally in channels_last memory format (NHWC strides), as torch's
// model.to(memory_format=torch.channels_last) plus channels_last inputs. Registers the ResNet configs.
import { native } from '../tensor/native.js';
import { Generator, type MemoryFormat, noGrad, type Tensor, tidy } from '../tensor/tensor.js';
import { BatchNorm2d, Conv2d, Dropout, DropPath, Layer, Linear, ModuleList, Sequential } from '../nn/index.js';
import * as F from '../nn/functional.js';
import { constant_, kaimingNormal_ } from '../nn/init.js';
import { checkRatio, Classifier, type ClassifierInfo, type ForwardOptions, type Maskable, maskNoise } from './classifier.js';
import { type DropPathSchedule, type ModelOverrides, registerModel } from './registry.js';

export interface ResNetConfig {
  block: 'basic' | 'bottleneck';
  layers: [number, number, number, number];
  widths: [number, number, number, number];
  /** 'imagenet': 7x7 stride-2 conv + max pool; 'small': 3x3 stride-1 conv, no pool (28-32 px). */
  stem: 'imagenet' | 'small';
  imageSize: number;
  inChannels: number;
  numClasses: number;
  dropPathRate: number;
  /** 'linear' (timm, the default) or 'uniform' (the same rate in every block). */
  dropPathSchedule?: DropPathSchedule;
  dropRate: number;
  /** Side of the square patches that masking zeroes, in pixels. */
  maskPatchSize: number;
}

class BasicBlock extends Layer {
  static readonly expansion = 1;
  readonly conv1: Conv2d; readonly bn1: BatchNorm2d; readonly conv2: Conv2d; readonly bn2: BatchNorm2d;
  readonly downsample: Sequential | null;
  readonly drop: Dropout;
  readonly dropPath: DropPath;
  constructor(inChannels: number, width: number, stride: number, dropPath: number) {
    super();
    this.conv1 = this.registerModule('conv1', new Conv2d(inChannels, width, 3, { stride, padding: 1, bias: false }));
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(width));
    this.drop = this.registerModule('drop_block', new Dropout(0));
    this.conv2 = this.registerModule('conv2', new Conv2d(width, width, 3, { padding: 1, bias: false }));
    this.bn2 = this.registerModule('bn2', new BatchNorm2d(width));
    this.downsample = stride !== 1 || inChannels !== width ? this.registerModule('downsample', downsample(inChannels, width, stride)) : null;
    this.dropPath = this.registerModule('drop_path', new DropPath(dropPath));
  }
  forward(x: Tensor): Tensor {
    return tidy(() => {
      const h = this.drop.forward(this.bn1.forward(this.conv1.forward(x)).relu());
      const out = this.dropPath.forward(this.bn2.forward(this.conv2.forward(h)));
      const shortcut = this.downsample ? this.downsample.forward(x) : x;
      return out.add(shortcut).relu();
    });
  }
  zeroInitLastNorm(): void { constant_(this.bn2.weight, 0); }
}

class Bottleneck extends Layer {
  static readonly expansion = 4;
  readonly conv1: Conv2d; readonly bn1: BatchNorm2d; readonly conv2: Conv2d; readonly bn2: BatchNorm2d;
  readonly conv3: Conv2d; readonly bn3: BatchNorm2d;
  readonly downsample: Sequential | null;
  readonly drop: Dropout;
  readonly dropPath: DropPath;
  constructor(inChannels: number, width: number, stride: number, dropPath: number) {
    super();
    const out = width * Bottleneck.expansion;
    this.conv1 = this.registerModule('conv1', new Conv2d(inChannels, width, 1, { bias: false }));
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(width));
    this.conv2 = this.registerModule('conv2', new Conv2d(width, width, 3, { stride, padding: 1, bias: false }));
    this.bn2 = this.registerModule('bn2', new BatchNorm2d(width));
    this.drop = this.registerModule('drop_block', new Dropout(0));
    this.conv3 = this.registerModule('conv3', new Conv2d(width, out, 1, { bias: false }));
    this.bn3 = this.registerModule('bn3', new BatchNorm2d(out));
    this.downsample = stride !== 1 || inChannels !== out ? this.registerModule('downsample', downsample(inChannels, out, stride)) : null;
    this.dropPath = this.registerModule('drop_path', new DropPath(dropPath));
  }
  forward(x: Tensor): Tensor {
    return tidy(() => {
      let h = this.bn1.forward(this.conv1.forward(x)).relu();
      h = this.drop.forward(this.bn2.forward(this.conv2.forward(h)).relu());
      const out = this.dropPath.forward(this.bn3.forward(this.conv3.forward(h)));
      const shortcut = this.downsample ? this.downsample.forward(x) : x;
      return out.add(shortcut).relu();
    });
  }
  zeroInitLastNorm(): void { constant_(this.bn3.weight, 0); }
}

function downsample(inChannels: number, outChannels: number, stride: number): Sequential {
  return new Sequential(new Conv2d(inChannels, outChannels, 1, { stride, bias: false }), new BatchNorm2d(outChannels));
}

/**
 * Zeroes n - int(n*(1-r)) of the n = (H/P)*(W/P) patches of each sample (the masking rule of
 * ViT token dropping, MAE and the official code: keep int(n*(1-r)), mask the rest), chosen uniformly per sample;
 * the image shape is unchanged. 0 is the dataset mean after normalization.
 */
export function randomPatchZero(images: Tensor, ratio: number, patchSize: number, generator?: Generator): Tensor {
  return tidy(() => {
    const [batch, , height, width] = images.shape;
    if (height % patchSize || width % patchSize) {
      throw new Error(`patch masking: image ${height}x${width} is not a multiple of the mask patch size ${patchSize}`);
    }
    const rows = height / patchSize;
    const columns = width / patchSize;
    const patches = rows * columns;
    const masked = patches - Math.trunc(patches * (1 - ratio));
    const noise = maskNoise([batch, patches], images.device, generator);
    // rank of each patch in a random order; the first `masked` ranks are zeroed
    const rank = noise.argsort(1).argsort(1);
    const keep = rank.ge(masked).to({ dtype: images.dtype });
    const pixelKeep = keep.view(batch, 1, rows, 1, columns, 1)
      .expand(batch, 1, rows, patchSize, columns, patchSize)
      .reshape(batch, 1, height, width);
    return images.mul(pixelKeep);
  });
}

export class ResNet extends Classifier implements Maskable {
  readonly info: ClassifierInfo;
  /** How forward applies maskRatio (patches of the input zeroed, the shape unchanged). */
  readonly masking = 'zero-patches' as const;
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly stages: ModuleList<Layer>[];
  readonly drop: Dropout;
  readonly fc: Linear;
  private format: MemoryFormat = 'contiguous';

  constructor(readonly config: ResNetConfig) {
    super();
    checkRatio('ResNet drop-path rate', config.dropPathRate);
    this.info = { family: 'resnet', imageSize: config.imageSize, inChannels: config.inChannels, numClasses: config.numClasses };
    const stemWidth = config.stem === 'imagenet' ? 64 : config.widths[0];
    this.conv1 = this.registerModule('conv1', config.stem === 'imagenet'
      ? new Conv2d(config.inChannels, stemWidth, 7, { stride: 2, padding: 3, bias: false })
      : new Conv2d(config.inChannels, stemWidth, 3, { stride: 1, padding: 1, bias: false }));
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(stemWidth));
    const Block = config.block === 'basic' ? BasicBlock : Bottleneck;
    const totalBlocks = config.layers.reduce((a, b) => a + b, 0);
    let index = 0;
    let channels = stemWidth;
    this.stages = config.layers.map((count, stage) => {
      const blocks: Layer[] = [];
      for (let i = 0; i < count; i++) {
        const stride = i === 0 && stage > 0 ? 2 : 1;
        // timm: drop-path rate grows linearly over all blocks; uniform: the same in each
        const rate = config.dropPathSchedule === 'uniform' || totalBlocks === 1 ? config.dropPathRate : (config.dropPathRate * index) / (totalBlocks - 1);
        blocks.push(new Block(channels, config.widths[stage], stride, rate));
        channels = config.widths[stage] * Block.expansion;
        index++;
      }
      return this.registerModule(`layer${stage + 1}`, new ModuleList(blocks));
    });
    this.drop = this.registerModule('head_drop', new Dropout(config.dropRate, { fixedRate: true }));
    this.fc = this.registerModule('fc', new Linear(channels, config.numClasses));
    for (const module of this.modules()) {
      if (module instanceof Conv2d) kaimingNormal_(module.weight, { mode: 'fan_out', nonlinearity: 'relu' });
    }
    for (const stage of this.stages) for (const block of stage) (block as BasicBlock | Bottleneck).zeroInitLastNorm();
  }

  /** The memory format of the convolution weights and of what forward feeds them (see {@link setMemoryFormat}). */
  get memoryFormat(): MemoryFormat {
    return this.format;
  }

  /**
   * 'channels_last' lays every convolution weight out in NHWC strides, in place (the same
   * parameter objects, values and shapes, as torch's module.to(memory_format=torch.channels_last),
   * so an optimizer made before or after keeps working; its moment buffers made after take the
   * same format), and makes forward lay its input out the same way: every convolution,
   * BatchNorm, ReLU, addition and pooling then runs on NHWC tensors, and the gradients come back
   * NHWC. cuDNN's tensor-core convolutions read this layout natively (PyTorch's recommendation
   * for CNNs in mixed precision); oneDNN on the CPU too. Values do not depend on the format
   * beyond float rounding (test/channels-last.test.ts); a state dict or checkpoint is written in
   * the standard row-major layout either way (safetensors has no strides) and loads into either.
   * 'contiguous' turns it back.
   */
  setMemoryFormat(format: MemoryFormat): this {
    if (format !== 'contiguous' && format !== 'channels_last') throw new RangeError(`memory format must be 'contiguous' or 'channels_last', got '${String(format)}'`);
    noGrad(() => {
      for (const parameter of this.parameters()) {
        if (parameter.ndim !== 4) continue;
        const laid = parameter.contiguous(format);
        native.setData(parameter.handle, laid.handle);
        laid.dispose();
      }
    });
    this.format = format;
    return this;
  }

  forward(images: Tensor, options: ForwardOptions = {}): Tensor {
    checkRatio('mask ratio', options.maskRatio);
    const shape = images.shape;
    if (shape.length !== 4 || shape[1] !== this.config.inChannels) {
      throw new Error(`ResNet expects images [B, ${this.config.inChannels}, H, W], got [${shape.join(', ')}]`);
    }
    return this.withRates(options, () => tidy(() => {
      const masked = options.maskRatio ? randomPatchZero(images, options.maskRatio, this.config.maskPatchSize, options.generator) : images;
      // The mask's product follows the first operand's layout, so the layout is set after it.
      const input = this.format === 'channels_last' ? masked.contiguous('channels_last') : masked;
      let x = this.bn1.forward(this.conv1.forward(input)).relu();
      if (this.config.stem === 'imagenet') x = F.maxPool2d(x, 3, 2, 1);
      for (const stage of this.stages) for (const block of stage) x = block.forward(x);
      return this.fc.forward(this.drop.forward(F.adaptiveAvgPool2d(x, 1).flatten(1)));
    }));
  }
}

/** A mask patch side for small images: the divisor of the image size nearest to size/7, as 32 px is to 224 px. */
export function defaultMaskPatchSize(imageSize: number): number {
  let best = 1;
  for (let side = 1; side <= imageSize; side++) {
    if (imageSize % side === 0 && Math.abs(side - imageSize / 7) < Math.abs(best - imageSize / 7)) best = side;
  }
  return best;
}

// ---- named configs (timm names where timm has the model) ----

type ResNetShape = Pick<ResNetConfig, 'block' | 'layers' | 'widths' | 'stem'>;

function registerResNet(name: string, imageSize: number, description: string, shape: ResNetShape): void {
  registerModel(name, {
    family: 'resnet', imageSize, description,
    build: (overrides: ModelOverrides) => {
      const size = overrides.imageSize ?? imageSize;
      return new ResNet({
        ...shape, imageSize: size, inChannels: overrides.inChannels ?? 3, numClasses: overrides.numClasses ?? 1000,
        dropPathRate: overrides.dropPathRate ?? 0, dropPathSchedule: overrides.dropPathSchedule ?? 'linear', dropRate: overrides.dropRate ?? 0, maskPatchSize: overrides.maskPatchSize ?? defaultMaskPatchSize(size),
      });
    },
  });
}

// Small-image models that train on a 2-core CPU (28x28 Fashion-MNIST/MNIST, 32x32 CIFAR).
registerResNet('resnet_micro', 28, 'ResNet basic [1,1,1,1] widths 8-64, small stem (tests)', { block: 'basic', layers: [1, 1, 1, 1], widths: [8, 16, 32, 64], stem: 'small' });
registerResNet('resnet_tiny', 28, 'ResNet basic [1,1,1,1] widths 16-128, small stem (quick CPU)', { block: 'basic', layers: [1, 1, 1, 1], widths: [16, 32, 64, 128], stem: 'small' });
registerResNet('resnet18_small', 32, 'ResNet-18 shape with a 3x3 stride-1 stem (28/32 px)', { block: 'basic', layers: [2, 2, 2, 2], widths: [64, 128, 256, 512], stem: 'small' });
// The standard ImageNet models (224 px).
registerResNet('resnet18', 224, 'ResNet-18', { block: 'basic', layers: [2, 2, 2, 2], widths: [64, 128, 256, 512], stem: 'imagenet' });
registerResNet('resnet34', 224, 'ResNet-34', { block: 'basic', layers: [3, 4, 6, 3], widths: [64, 128, 256, 512], stem: 'imagenet' });
registerResNet('resnet50', 224, 'ResNet-50', { block: 'bottleneck', layers: [3, 4, 6, 3], widths: [64, 128, 256, 512], stem: 'imagenet' });
// timm's / torchvision's resnet101 and resnet152 (44,549,160 and 60,192,808 parameters at 1000 classes, as torchvision's; test/models-torch.test.ts).
registerResNet('resnet101', 224, 'ResNet-101', { block: 'bottleneck', layers: [3, 4, 23, 3], widths: [64, 128, 256, 512], stem: 'imagenet' });
registerResNet('resnet152', 224, 'ResNet-152', { block: 'bottleneck', layers: [3, 8, 36, 3], widths: [64, 128, 256, 512], stem: 'imagenet' });
