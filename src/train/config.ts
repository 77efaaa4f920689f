// Training configuration: defaults, presets (the paper's recipes and small CPU ones), merging
// from flags and YAML files, and validation that names every bad value before any work starts.
import { readFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { parse as parseYaml } from 'yaml';
import { DATASET_INFO, isDatasetName, type DatasetName } from '../data/datasets.js';
import { defaultRatio, isMethod, METHODS, type Method } from '../masksub/method.js';
import { describeModel, modelNames } from '../models/factory.js';

export interface TrainConfig {
  dataset: DatasetName;
  dataDir: string | null;
  model: string;
  method: Method;
  /** Regularizer strength; null = the method's default (resolved by resolveConfig). */
  ratio: number | null;
  subWeight: number;
  epochs: number;
  batchSize: number;
  lr: number;
  minLr: number;
  warmupEpochs: number;
  warmupLr: number;
  weightDecay: number;
  optimizer: 'adamw' | 'lamb' | 'sgd';
  momentum: number;
  nesterov: boolean;
  loss: 'ce' | 'bce';
  labelSmoothing: number;
  /** BCE label targets > this become 1 (DeiT-III); null: off. */
  bceTargetThreshold: number | null;
  mixup: number;
  cutmix: number;
  mixupSwitchProb: number;
  mixupProb: number;
  cropPadding: number;
  hflip: boolean;
  randomErasing: number;
  /** The main model's drop-path rate (timm --drop-path). */
  dropPath: number;
  /** The main model's dropout rate. */
  dropout: number;
  layerScale: number | null;
  maskPatchSize: number | null;
  clipGrad: number | null;
  ema: boolean;
  emaDecay: number;
  accumulation: number;
  seed: number;
  device: string;
  limitTrain: number | null;
  limitTest: number | null;
  threads: number;
  /** Training images on which Eq. 1 / Eq. 2 losses are measured each epoch. */
  probeSize: number;
  /** Mask ratio of the Eq. 2 probe; the same for every method so they compare. */
  probeMaskRatio: number;
  /** Prepare batches in a worker thread. */
  workers: boolean;
  /** Skip (and count) steps whose loss or gradient is not finite instead of stopping. */
  skipNonFinite: boolean;
}

export type ResolvedTrainConfig = TrainConfig & { ratio: number; machine: string; preset: string | null };

export const DEFAULTS: TrainConfig = {
  dataset: 'fashion-mnist', dataDir: null, model: 'vit_tiny_patch4_28', method: 'baseline', ratio: null, subWeight: 0.5,
  epochs: 10, batchSize: 128, lr: 1e-3, minLr: 1e-5, warmupEpochs: 1, warmupLr: 1e-6, weightDecay: 0.05,
  optimizer: 'adamw', momentum: 0.9, nesterov: false, loss: 'ce', labelSmoothing: 0.1, bceTargetThreshold: null,
  mixup: 0, cutmix: 0, mixupSwitchProb: 0.5, mixupProb: 1, cropPadding: 2, hflip: true, randomErasing: 0,
  dropPath: 0, dropout: 0, layerScale: null, maskPatchSize: null, clipGrad: null, ema: false, emaDecay: 0.9998,
  accumulation: 1, seed: 0, device: 'cpu', limitTrain: null, limitTest: null, threads: availableParallelism(),
  probeSize: 512, probeMaskRatio: 0.5, workers: true, skipNonFinite: false,
};

export interface Preset { description: string; values: Partial<TrainConfig> }

export const PRESETS: Record<string, Preset> = {
  'fmnist-vit': {
    description: 'Fashion-MNIST, ViT patch 4, 192-dim x 6 blocks, 3 heads; AdamW 1e-3, wd 0.05, batch 256, 20 epochs (2 warmup) + cosine, label smoothing 0.1, crop(2)+flip',
    values: { dataset: 'fashion-mnist', model: 'vit_fmnist', epochs: 20, batchSize: 256, lr: 1e-3, weightDecay: 0.05, warmupEpochs: 2, labelSmoothing: 0.1, cropPadding: 2, hflip: true, optimizer: 'adamw', loss: 'ce' },
  },
  'fmnist-resnet': {
    description: 'Fashion-MNIST, ResNet-18 shape with a 3x3 stem; SGD 0.1 nesterov, wd 5e-4, batch 128, 20 epochs (1 warmup) + cosine, label smoothing 0.1, crop(2)+flip',
    values: { dataset: 'fashion-mnist', model: 'resnet18_small', epochs: 20, batchSize: 128, lr: 0.1, weightDecay: 5e-4, optimizer: 'sgd', nesterov: true, momentum: 0.9, warmupEpochs: 1, labelSmoothing: 0.1, cropPadding: 2, hflip: true },
  },
  quick: {
    description: 'Quick CPU comparison (~20 min for 3 methods x 2 seeds on 2 cores): Fashion-MNIST, 2,048 training images for 30 epochs (so the model fits them and a regularizer has something to do), 2,000 test images; ViT 64-dim x 4 blocks, patch 4; AdamW 2e-3, wd 0.05, batch 64, 1 warmup epoch + cosine, label smoothing 0.1, crop(2)+flip',
    values: { dataset: 'fashion-mnist', model: 'vit_mini_patch4_28', limitTrain: 2048, limitTest: 2000, epochs: 30, batchSize: 64, lr: 2e-3, weightDecay: 0.05, warmupEpochs: 1, labelSmoothing: 0.1, probeSize: 256 },
  },
  'deit3-vit-b': {
    description: 'DeiT-III (paper Table B.1) for 224 px data: ViT-B/16, LAMB 3e-3, wd 0.05, batch 2048, 400 epochs (5 warmup), BCE, mixup 0.8, cutmix 1.0, grad clip 1.0, drop-path 0.2, LayerScale',
    values: { model: 'vit_base_patch16_224', optimizer: 'lamb', lr: 3e-3, weightDecay: 0.05, batchSize: 2048, epochs: 400, warmupEpochs: 5, loss: 'bce', bceTargetThreshold: 0, labelSmoothing: 0, mixup: 0.8, cutmix: 1.0, clipGrad: 1.0, dropPath: 0.2, layerScale: 1e-4, cropPadding: 0, hflip: true },
  },
  'deit3-vit-s': {
    description: 'DeiT-III for 224 px data: ViT-S/16, LAMB 4e-3, wd 0.05, batch 2048, 400 epochs, BCE, mixup 0.8, cutmix 1.0, grad clip 1.0, drop-path 0.05, LayerScale',
    values: { model: 'vit_small_patch16_224', optimizer: 'lamb', lr: 4e-3, weightDecay: 0.05, batchSize: 2048, epochs: 400, warmupEpochs: 5, loss: 'bce', bceTargetThreshold: 0, labelSmoothing: 0, mixup: 0.8, cutmix: 1.0, clipGrad: 1.0, dropPath: 0.05, layerScale: 1e-4, cropPadding: 0, hflip: true },
  },
  'rsb-a2-resnet50': {
    description: 'ResNet Strikes Back A2 (paper Table B.1) for 224 px data: ResNet-50, LAMB 5e-3, wd 0.01, batch 2048, 300 epochs (5 warmup), BCE, mixup 0.1, cutmix 1.0, drop-path 0.05',
    values: { model: 'resnet50', optimizer: 'lamb', lr: 5e-3, weightDecay: 0.01, batchSize: 2048, epochs: 300, warmupEpochs: 5, loss: 'bce', bceTargetThreshold: 0.2, labelSmoothing: 0, mixup: 0.1, cutmix: 1.0, dropPath: 0.05, cropPadding: 0, hflip: true },
  },
};

/** Flag and YAML key spelling (kebab-case) of each config field. */
export function kebab(key: string): string {
  return key.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`);
}

const KEYS = Object.keys(DEFAULTS) as (keyof TrainConfig)[];
const KEY_BY_SPELLING = new Map<string, keyof TrainConfig>();
for (const key of KEYS) {
  KEY_BY_SPELLING.set(key, key);
  KEY_BY_SPELLING.set(kebab(key), key);
  KEY_BY_SPELLING.set(kebab(key).replace(/-/g, '_'), key);
}

export function configKey(spelling: string): keyof TrainConfig | undefined {
  return KEY_BY_SPELLING.get(spelling);
}

export class ConfigError extends Error {}

type Raw = Record<string, unknown>;

function coerce(key: keyof TrainConfig, value: unknown, source: string): unknown {
  const expected = DEFAULTS[key];
  const nullable = ['ratio', 'dataDir', 'bceTargetThreshold', 'layerScale', 'maskPatchSize', 'clipGrad', 'limitTrain', 'limitTest'].includes(key);
  const where = `${source}: ${kebab(key)}`;
  if (value === null || value === 'null' || value === 'none') {
    if (nullable) return null;
    throw new ConfigError(`${where} cannot be null`);
  }
  if (typeof expected === 'boolean') {
    if (typeof value === 'boolean') return value;
    if (value === 'true' || value === '') return true;
    if (value === 'false') return false;
    throw new ConfigError(`${where} must be true or false, got ${JSON.stringify(value)}`);
  }
  const numeric = typeof expected === 'number' || (nullable && !['dataDir'].includes(key));
  if (numeric) {
    const number = typeof value === 'number' ? value : typeof value === 'string' && value.trim() !== '' ? Number(value) : Number.NaN;
    if (!Number.isFinite(number)) throw new ConfigError(`${where} must be a number, got ${JSON.stringify(value)}`);
    return number;
  }
  if (typeof value !== 'string' && typeof value !== 'number') throw new ConfigError(`${where} must be a string, got ${JSON.stringify(value)}`);
  return String(value);
}

/** Applies raw key/values (from flags or YAML) onto a config; unknown keys are errors. */
export function applyRaw(base: TrainConfig, raw: Raw, source: string): TrainConfig {
  const out: TrainConfig = { ...base };
  for (const [spelling, value] of Object.entries(raw)) {
    const key = configKey(spelling);
    if (!key) {
      throw new ConfigError(`${source}: unknown setting '${spelling}'. Known settings: ${KEYS.map(kebab).join(', ')}`);
    }
    (out as unknown as Raw)[key] = coerce(key, value, source);
  }
  return out;
}

export function readConfigFile(path: string): Raw {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`config file ${path}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found' : (error as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = parseYaml(text);
  } catch (error) {
    throw new ConfigError(`config file ${path}: not valid YAML: ${(error as Error).message.split('\n')[0]}`);
  }
  if (parsed === null || parsed === undefined) return {};
  if (typeof parsed !== 'object' || Array.isArray(parsed)) throw new ConfigError(`config file ${path}: must be a mapping of setting: value`);
  return parsed as Raw;
}

function integer(config: TrainConfig, key: keyof TrainConfig, min: number, max = Number.MAX_SAFE_INTEGER): void {
  const value = config[key] as number;
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`${kebab(key)} must be an integer in [${min}, ${max === Number.MAX_SAFE_INTEGER ? '∞' : max}], got ${value}`);
  }
}

function range(config: TrainConfig, key: keyof TrainConfig, min: number, max: number, maxOpen = false): void {
  const value = config[key] as number;
  if (!(value >= min && (maxOpen ? value < max : value <= max))) {
    throw new ConfigError(`${kebab(key)} must be in [${min}, ${max}${maxOpen ? ')' : ']'}, got ${value}`);
  }
}

function machineDescription(device: string, threads: number): string {
  const cpu = cpus()[0]?.model?.replace(/\s+/g, ' ').trim() ?? 'CPU';
  const where = device === 'cpu' ? `${threads} thread(s) of ${availableParallelism()}-core ${cpu}` : `${device} GPU`;
  return `${where}, Node ${process.version}`;
}

/** Validates every field and fills the derived ones; throws ConfigError naming the first bad value. */
export function resolveConfig(config: TrainConfig, preset: string | null = null): ResolvedTrainConfig {
  if (!isDatasetName(config.dataset)) throw new ConfigError(`dataset must be one of ${Object.keys(DATASET_INFO).join(', ')}, got '${config.dataset}'`);
  if (!modelNames().includes(config.model)) throw new ConfigError(`model must be one of ${modelNames().join(', ')}, got '${config.model}'`);
  if (!isMethod(config.method)) throw new ConfigError(`method must be one of ${METHODS.join(', ')}, got '${config.method}'`);
  if (!['adamw', 'lamb', 'sgd'].includes(config.optimizer)) throw new ConfigError(`optimizer must be adamw, lamb or sgd, got '${config.optimizer}'`);
  if (!['ce', 'bce'].includes(config.loss)) throw new ConfigError(`loss must be ce or bce, got '${config.loss}'`);
  integer(config, 'epochs', 1);
  integer(config, 'batchSize', 1);
  integer(config, 'accumulation', 1);
  integer(config, 'seed', 0, 2 ** 31 - 1);
  integer(config, 'threads', 1, 1024);
  integer(config, 'probeSize', 0);
  if (!(config.lr > 0)) throw new ConfigError(`lr must be positive, got ${config.lr}`);
  range(config, 'minLr', 0, config.lr);
  range(config, 'warmupLr', 0, config.lr);
  range(config, 'warmupEpochs', 0, config.epochs);
  if (config.warmupEpochs > 0 && config.warmupEpochs >= config.epochs) {
    throw new ConfigError(`warmup-epochs ${config.warmupEpochs} leaves no epoch after the warmup (epochs ${config.epochs}); use fewer warmup-epochs (0 is fine) or more epochs`);
  }
  range(config, 'weightDecay', 0, 10);
  range(config, 'momentum', 0, 1, true);
  range(config, 'labelSmoothing', 0, 1, true);
  range(config, 'subWeight', 0, 1);
  range(config, 'mixup', 0, 100);
  range(config, 'cutmix', 0, 100);
  range(config, 'mixupSwitchProb', 0, 1);
  range(config, 'mixupProb', 0, 1);
  integer(config, 'cropPadding', 0, 64);
  range(config, 'randomErasing', 0, 1);
  range(config, 'dropPath', 0, 1, true);
  range(config, 'dropout', 0, 1, true);
  range(config, 'probeMaskRatio', 0, 1, true);
  range(config, 'emaDecay', 0, 1);
  if (config.ratio !== null && !(config.ratio >= 0 && config.ratio < 1)) throw new ConfigError(`ratio must be in [0, 1), got ${config.ratio}`);
  if (config.clipGrad !== null && !(config.clipGrad > 0)) throw new ConfigError(`clip-grad must be positive, got ${config.clipGrad}`);
  if (config.limitTrain !== null) integer(config, 'limitTrain', 1);
  if (config.limitTest !== null) integer(config, 'limitTest', 1);
  if (config.maskPatchSize !== null) integer(config, 'maskPatchSize', 1);
  if (config.layerScale !== null && !(config.layerScale > 0)) throw new ConfigError(`layer-scale must be positive, got ${config.layerScale}`);
  if (config.bceTargetThreshold !== null) range(config, 'bceTargetThreshold', 0, 1, true);
  if (!/^(cpu|cuda(:\d+)?)$/.test(config.device)) throw new ConfigError(`device must be cpu, cuda or cuda:N, got '${config.device}'`);
  const info = DATASET_INFO[config.dataset];
  const model = describeModel(config.model);
  if (model.imageSize !== info.height && model.family === 'vit') {
    throw new ConfigError(`model ${config.model} takes ${model.imageSize}x${model.imageSize} images but ${config.dataset} has ${info.height}x${info.width}; pick a ${info.height}-px model (${modelNames().filter((name) => describeModel(name).imageSize === info.height).join(', ')})`);
  }
  if (config.maskPatchSize !== null && info.height % config.maskPatchSize) {
    throw new ConfigError(`mask-patch-size ${config.maskPatchSize} does not divide the ${info.height}-px images of ${config.dataset}`);
  }
  const ratio = config.ratio ?? defaultRatio(config.method, config.dropPath);
  return { ...config, ratio, machine: machineDescription(config.device, config.threads), preset };
}

/** Defaults, then a preset, then a YAML file, then flags: later sources win. */
export function buildConfig(sources: { preset?: string | null; file?: string | null; flags?: Raw }): ResolvedTrainConfig {
  let config: TrainConfig = { ...DEFAULTS };
  const presetName = sources.preset ?? null;
  if (presetName) {
    const preset = PRESETS[presetName];
    if (!preset) throw new ConfigError(`unknown preset '${presetName}'; presets: ${Object.keys(PRESETS).join(', ')}`);
    config = { ...config, ...preset.values };
  }
  if (sources.file) {
    const raw = readConfigFile(sources.file);
    const filePreset = raw.preset;
    delete raw.preset;
    if (typeof filePreset === 'string' && !presetName) return buildConfig({ preset: filePreset, file: null, flags: { ...raw, ...(sources.flags ?? {}) } });
    config = applyRaw(config, raw, `config file ${sources.file}`);
  }
  if (sources.flags) config = applyRaw(config, sources.flags, 'command line');
  return resolveConfig(config, presetName);
}

/** The run directory's config.json spelling: snake_case keys (as the report reads them). */
export function toStoredConfig(config: ResolvedTrainConfig): Record<string, unknown> {
  return Object.fromEntries(Object.entries(config).map(([key, value]) => [kebab(key).replace(/-/g, '_'), value]));
}

export function fromStoredConfig(stored: Record<string, unknown>): ResolvedTrainConfig {
  const config: Record<string, unknown> = {};
  for (const [spelling, value] of Object.entries(stored)) {
    const key = configKey(spelling) ?? spelling.replace(/_([a-z])/g, (_, letter: string) => letter.toUpperCase());
    config[key] = value;
  }
  return config as unknown as ResolvedTrainConfig;
}
