// Named model configs (timm-style names) and the factory that builds them for a dataset.
import { Classifier } from './classifier.js';
import { defaultMaskPatchSize, ResNet, type ResNetConfig } from './resnet.js';
import { type VitConfig, VisionTransformer } from './vit.js';

export interface ModelOverrides {
  imageSize?: number;
  inChannels?: number;
  numClasses?: number;
  dropPathRate?: number;
  dropRate?: number;
  layerScale?: number | null;
  maskPatchSize?: number;
}

type VitShape = Pick<VitConfig, 'patchSize' | 'width' | 'depth' | 'heads'> & Partial<VitConfig>;
type ResNetShape = Pick<ResNetConfig, 'block' | 'layers' | 'widths' | 'stem'>;

interface Entry { family: 'vit' | 'resnet'; imageSize: number; description: string; shape: VitShape | ResNetShape }

const entries: Record<string, Entry> = {
  // Small-image models that train on a 2-core CPU (28x28 Fashion-MNIST/MNIST, 32x32 CIFAR).
  vit_micro: { family: 'vit', imageSize: 28, description: 'ViT 64-dim x 2 blocks, patch 7 (tests)', shape: { patchSize: 7, width: 64, depth: 2, heads: 2 } },
  vit_mini_patch4_28: { family: 'vit', imageSize: 28, description: 'ViT 64-dim x 4 blocks, 2 heads, patch 4 (default compare on CPU)', shape: { patchSize: 4, width: 64, depth: 4, heads: 2 } },
  vit_tiny_patch4_28: { family: 'vit', imageSize: 28, description: 'ViT 96-dim x 4 blocks, 3 heads, patch 4 (quick CPU)', shape: { patchSize: 4, width: 96, depth: 4, heads: 3 } },
  vit_fmnist: { family: 'vit', imageSize: 28, description: 'ViT 192-dim x 6 blocks, 3 heads, patch 4 (fmnist-vit preset)', shape: { patchSize: 4, width: 192, depth: 6, heads: 3 } },
  vit_small_patch4_32: { family: 'vit', imageSize: 32, description: 'ViT 192-dim x 6 blocks, 3 heads, patch 4 (CIFAR)', shape: { patchSize: 4, width: 192, depth: 6, heads: 3 } },
  resnet_micro: { family: 'resnet', imageSize: 28, description: 'ResNet basic [1,1,1,1] widths 8-64, small stem (tests)', shape: { block: 'basic', layers: [1, 1, 1, 1], widths: [8, 16, 32, 64], stem: 'small' } },
  resnet_tiny: { family: 'resnet', imageSize: 28, description: 'ResNet basic [1,1,1,1] widths 16-128, small stem (quick CPU)', shape: { block: 'basic', layers: [1, 1, 1, 1], widths: [16, 32, 64, 128], stem: 'small' } },
  resnet18_small: { family: 'resnet', imageSize: 32, description: 'ResNet-18 shape with a 3x3 stride-1 stem (28/32 px)', shape: { block: 'basic', layers: [2, 2, 2, 2], widths: [64, 128, 256, 512], stem: 'small' } },
  // The standard ImageNet models (224 px).
  vit_tiny_patch16_224: { family: 'vit', imageSize: 224, description: 'ViT-Ti/16', shape: { patchSize: 16, width: 192, depth: 12, heads: 3 } },
  vit_small_patch16_224: { family: 'vit', imageSize: 224, description: 'ViT-S/16', shape: { patchSize: 16, width: 384, depth: 12, heads: 6 } },
  vit_base_patch16_224: { family: 'vit', imageSize: 224, description: 'ViT-B/16', shape: { patchSize: 16, width: 768, depth: 12, heads: 12 } },
  resnet18: { family: 'resnet', imageSize: 224, description: 'ResNet-18', shape: { block: 'basic', layers: [2, 2, 2, 2], widths: [64, 128, 256, 512], stem: 'imagenet' } },
  resnet34: { family: 'resnet', imageSize: 224, description: 'ResNet-34', shape: { block: 'basic', layers: [3, 4, 6, 3], widths: [64, 128, 256, 512], stem: 'imagenet' } },
  resnet50: { family: 'resnet', imageSize: 224, description: 'ResNet-50', shape: { block: 'bottleneck', layers: [3, 4, 6, 3], widths: [64, 128, 256, 512], stem: 'imagenet' } },
};

export function modelNames(): string[] {
  return Object.keys(entries);
}

export function describeModel(name: string): { family: 'vit' | 'resnet'; imageSize: number; description: string } {
  const entry = entries[name];
  if (!entry) throw new Error(`unknown model '${name}'; known models: ${modelNames().join(', ')}`);
  return { family: entry.family, imageSize: entry.imageSize, description: entry.description };
}

export function createModel(name: string, overrides: ModelOverrides = {}): Classifier {
  const entry = entries[name];
  if (!entry) throw new Error(`unknown model '${name}'; known models: ${modelNames().join(', ')}`);
  const imageSize = overrides.imageSize ?? entry.imageSize;
  const common = { imageSize, inChannels: overrides.inChannels ?? 3, numClasses: overrides.numClasses ?? 1000, dropPathRate: overrides.dropPathRate ?? 0, dropRate: overrides.dropRate ?? 0 };
  if (entry.family === 'vit') {
    const shape = entry.shape as VitShape;
    return new VisionTransformer({ mlpRatio: 4, qkvBias: true, dropPathSchedule: 'linear', ...shape, ...common, layerScale: overrides.layerScale ?? shape.layerScale ?? null });
  }
  const shape = entry.shape as ResNetShape;
  return new ResNet({ ...shape, ...common, maskPatchSize: overrides.maskPatchSize ?? defaultMaskPatchSize(imageSize) });
}
