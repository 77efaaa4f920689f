// Training configuration: one schema (zod) holds every setting's type, range, default,
// nullability and help text. Command-line flags, YAML files and a run's stored config.json are
// all validated by it, `masksub train --help` and the README's settings table are generated from
// it, and the checks that involve several settings (warmup < epochs, model and data image sizes,
// the method's ratio) follow in resolveConfig. Every bad value is named before any work starts.
import { readFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { distance } from 'fastest-levenshtein';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { DATASET_INFO, DATASET_NAMES, type DatasetName } from '../data/datasets.js';
import { isTextDatasetName, TEXT_DATASET_NAMES, type TextDatasetName } from '../data/text/text-dataset.js';
import { parseRandAugment } from '../data/randaugment.js';
import { describeMethod, METHODS, defaultRatio, REGULARIZERS } from '../masksub/methods.js';
import { describeModel, modelNames } from '../models/factory.js';
import { clipModelNames, describeClipModel, isClipModel } from '../models/clip.js';

export class ConfigError extends Error {}

// ---------------------------------------------------------------------------------------------
// The schema

/** Help texts and the README list settings in these groups, in this order. */
export const SETTING_GROUPS = {
  data: 'Data',
  model: 'Model',
  method: 'Method',
  optimization: 'Optimization',
  augmentation: 'Augmentation',
  run: 'Run',
} as const;
export type SettingGroup = keyof typeof SETTING_GROUPS;

/** A default that depends on the environment, read when a configuration is built. */
interface EnvironmentDefault<Value> {
  /** The default in words, for help texts that must read the same on every machine. */
  describe: string;
  value: () => Value;
}

interface SettingDefinition<Schema extends z.ZodType> {
  group: SettingGroup;
  schema: Schema;
  default: z.output<Schema> | EnvironmentDefault<z.output<Schema>>;
  help: string;
  /** The value's name in help texts (N, DIR); derived from the schema's type when absent. */
  placeholder?: string;
  /** The accepted values in words, where a schema's pattern would not read well. */
  values?: string;
  /** Names people may try for this setting; only offered as "did you mean", never accepted. */
  alias?: readonly string[];
}

/** Ties a definition's default to its schema's type. */
function define<Schema extends z.ZodType>(definition: SettingDefinition<Schema>): SettingDefinition<Schema> {
  return definition;
}

// A regularizer strength (mask ratio, dropout and drop-path rates): [0, 1). 1 would remove the
// whole input or every activation (a ViT would keep no token at all), so it is never valid; 0 is
// the "off" value (the baseline's stored ratio, a main model without dropout). A method that
// regularizes must use a ratio above 0; resolveConfig says so, naming the method.
const STRENGTH = z.number().min(0).lt(1);
const PROBABILITY = z.number().min(0).max(1);
const POSITIVE_INTEGER = z.number().int().min(1);

// libtorch starts one intra-op thread unless told (../shared/ARCHITECTURE.md, trap 2): the default
// is MASKSUB_THREADS when set, else every core, so the documented variable reaches every command.
function threadsFromEnvironment(): number {
  const text = process.env.MASKSUB_THREADS;
  if (text === undefined || text.trim() === '') return availableParallelism();
  const threads = /^\s*\d+\s*$/.test(text) ? Number(text) : Number.NaN;
  if (!(threads >= 1 && threads <= 1024)) throw new ConfigError(`MASKSUB_THREADS must be an integer in [1, 1024], got '${text}'`);
  return threads;
}

/** Every training setting. The order is the order of help texts within a group. */
export const SETTINGS = {
  dataset: define({
    group: 'data', schema: z.enum([...DATASET_NAMES, ...TEXT_DATASET_NAMES] as unknown as [DatasetName | TextDatasetName, ...(DatasetName | TextDatasetName)[]]), default: 'fashion-mnist',
    help: 'data set to train and test on; emoji (Debian\'s Noto Color Emoji drawn at image-size, default 32 px, 9 classes by emoji group, no download); debian-packages (the descriptions of this machine\'s Debian packages by section, 10 classes, no download) and text (GLUE-style DIR/train.tsv and DIR/dev.tsv) are text, for the bert_* models', alias: ['data'],
  }),
  dataDir: define({
    group: 'data', schema: z.string().min(1).nullable(), default: null, placeholder: 'DIR',
    help: 'directory holding the data set\'s files (null: the Debian package\'s directory for fashion-mnist and mnist); for folder: DIR/train/<class>/<images> and DIR/val/<class>/<images>; for text: DIR/train.tsv and DIR/dev.tsv (or .csv)',
  }),
  textColumns: define({
    group: 'data', schema: z.array(z.string().min(1)).min(1).max(2).nullable(), default: null, placeholder: 'NAMES', values: 'one or two column names (a sentence pair), or 0-based numbers for a file without a header',
    help: 'text only: the text column(s) of the tables (null: GLUE\'s by header: sentence1,sentence2 / question,sentence / question1,question2 / #1 String,#2 String / sentence)',
  }),
  labelColumn: define({
    group: 'data', schema: z.string().min(1).nullable(), default: null, placeholder: 'NAME',
    help: 'text only: the label column, a name or a 0-based number (null: label, else Quality as MRPC); labels become indices in sorted order, recorded in the run\'s classes',
  }),
  maxLength: define({
    group: 'data', schema: z.number().int().min(3).max(4096), default: 128, alias: ['max-seq-length', 'seq-len'],
    help: 'text only: tokens per example with [CLS] and [SEP]s; longer texts are cut (a pair\'s longer side first), shorter ones padded',
  }),
  tokenizer: define({
    group: 'data', schema: z.string().min(1).nullable(), default: null, placeholder: 'FILE',
    help: 'text and CLIP only: a tokenizer.json or a BERT vocab.txt (null: a WordPiece vocabulary of vocab-size is trained on the training texts, or CLIP\'s training captions); the run keeps it as tokenizer.json, which resume and eval read',
  }),
  vocabSize: define({
    group: 'data', schema: z.number().int().min(16).max(1_000_000), default: 8000,
    help: 'text and CLIP only, without tokenizer: size of the WordPiece vocabulary trained on the training texts or captions (special tokens and every character kept, then the first merges learned)',
  }),
  trainList: define({
    group: 'data', schema: z.string().min(1).nullable(), default: null, placeholder: 'FILE',
    help: 'folder only: the training images as a list, one `path,label` (or path TAB label) per line, instead of DIR/train; relative paths start at data-dir, else at the list\'s folder',
  }),
  valList: define({
    group: 'data', schema: z.string().min(1).nullable(), default: null, placeholder: 'FILE',
    help: 'folder only: the evaluation images as such a list, instead of DIR/val',
  }),
  imageSize: define({
    group: 'data', schema: z.number().int().min(8).max(4096).nullable(), default: null, alias: ['img-size', 'input-size', 'resolution'],
    help: 'folder and emoji only: side in pixels of the square images the model trains on (null: the model\'s input size for a folder, 32 for emoji); a ViT takes any multiple of its patch size (its position embedding is sized for it; DeiT-III trains ViT-B at 192)',
  }),
  evalImageSize: define({
    group: 'data', schema: z.number().int().min(8).max(4096).nullable(), default: null, alias: ['eval-size', 'test-size', 'test-image-size'],
    help: 'folder only, CNN models only: side in pixels of the evaluation images, when it differs from image-size (RSB A3 trains at 160 and tests at 224); a ViT or Swin is built for one size: fine-tune it at the new size with init instead (null: image-size)',
  }),
  skipBadImages: define({
    group: 'data', schema: z.boolean(), default: false,
    help: 'folder only: count, report and skip images that cannot be decoded, instead of stopping with an error naming the file',
  }),
  jpegDctScaling: define({
    group: 'data', schema: z.boolean(), default: false,
    help: 'folder only: decode a JPEG at 1/2, 1/4 or 1/8 size (libjpeg-turbo\'s DCT scaling, with the native image module) when its crop box is at least twice the output on both sides: faster on large photos, but not the full-size decode + antialiased resize bytes (a mean 1.0 level apart, see README)',
  }),
  classes: define({
    group: 'data', schema: z.array(z.string().min(1)).min(1).nullable(), default: null, placeholder: 'NAMES', values: 'a list of class names',
    help: 'folder and text only: class names in label order (null: the sorted training folder names, the sorted labels of a text table, debian-packages\' sections by frequency; a run records them in its config.json, so that a resumed run and eval use the same map)',
  }),
  mean: define({
    group: 'data', schema: z.array(z.number().min(0).max(1)).min(1).max(4).nullable(), default: null, placeholder: 'X,X,X', values: 'one number in [0, 1] per channel (one: the same for every channel)',
    help: 'images only: the per-channel mean that inputs are normalized with, (pixel / 255 - mean) / std, as timm --mean (CLIP towers: OpenAI CLIP\'s 0.48145466,0.4578275,0.40821073); the run records the values used (null: the data set\'s own: ImageNet\'s for folders, the training set\'s for the others); also the pixel value that RandAugment fills with',
    alias: ['normalize-mean', 'img-mean'],
  }),
  std: define({
    group: 'data', schema: z.array(z.number().gt(0).max(1)).min(1).max(4).nullable(), default: null, placeholder: 'X,X,X', values: 'one number in (0, 1] per channel (one: the same for every channel)',
    help: 'images only: the per-channel standard deviation that inputs are normalized with, as timm --std (CLIP towers: 0.26862954,0.26130258,0.27577711; null: the data set\'s own, as mean)',
    alias: ['normalize-std', 'img-std'],
  }),
  limitTrain: define({
    group: 'data', schema: POSITIVE_INTEGER.nullable(), default: null,
    help: 'train on the first N training images only (null: all)',
  }),
  limitTest: define({
    group: 'data', schema: POSITIVE_INTEGER.nullable(), default: null,
    help: 'evaluate on the first N test images only (null: all)',
  }),
  workers: define({
    group: 'data', schema: z.boolean(), default: true,
    help: 'prepare batches in a worker thread',
  }),
  dataWorkers: define({
    group: 'data', schema: z.number().int().min(1).max(64), default: 1, alias: ['num-workers', 'loader-workers'],
    help: 'worker threads that prepare batches (with workers true); each builds every N-th batch and the batches are the same for any N; more help folder data, whose images are decoded and cropped as batches are built',
  }),
  model: define({
    group: 'model', schema: z.enum([...modelNames(), ...clipModelNames()] as [string, ...string[]]), default: 'vit_tiny_patch4_28',
    help: 'model to train (`masksub models` describes each); a clip_* model trains CLIP on an image data set paired with captions (emoji: names and keywords; others: class-name templates) and is evaluated by zero-shot top-1 and retrieval recall@k', alias: ['arch', 'network'],
  }),
  dropPath: define({
    group: 'model', schema: STRENGTH, default: 0, alias: ['drop-path-rate', 'stochastic-depth'],
    help: 'the main model\'s drop-path (stochastic depth) rate',
  }),
  dropPathSchedule: define({
    group: 'model', schema: z.enum(['linear', 'uniform']), default: 'linear', alias: ['drop-path-mode'],
    help: 'how drop-path spreads over the blocks (ViT, Swin, ResNet): linear grows it from 0 in the first block to drop-path in the last (timm), uniform uses drop-path in every block (DeiT-III); PathSub adds its ratio to each block\'s rate on top of either',
  }),
  dropout: define({
    group: 'model', schema: STRENGTH, default: 0, alias: ['drop-rate', 'dropout-rate'],
    help: 'the main model\'s dropout rate',
  }),
  layerScale: define({
    group: 'model', schema: z.number().gt(0).nullable(), default: null,
    help: 'ViT and BEiT only: LayerScale initial value (null: ViT without LayerScale, BEiT with its config\'s value)',
  }),
  maskPatchSize: define({
    group: 'model', schema: POSITIVE_INTEGER.nullable(), default: null,
    help: 'CNN only: side in pixels of the patches that masking zeroes (null: the model\'s default); a ViT masks its own patch tokens',
  }),
  globalPool: define({
    group: 'model', schema: z.enum(['token', 'avg']).nullable(), default: null,
    help: 'ViT and BEiT only: what feeds the head: the class token, or the mean of the patch tokens with timm\'s fc_norm after it (MAE and BEiT fine-tuning); null: the model\'s own (ViT token, BEiT avg, as timm)',
  }),
  init: define({
    group: 'model', schema: z.string().min(1).nullable(), default: null, placeholder: 'FILE', alias: ['pretrained', 'weights', 'finetune', 'initial-checkpoint'],
    help: 'start from the weights in this .safetensors file, timm\'s names (a model.safetensors of a masksub run, or a converted timm/MAE/DeiT-III checkpoint): position embeddings are resampled to the grid (bicubic, as timm), a 3-channel first conv adapts to the data\'s channels, a head that is absent or has another class count is re-initialised (null: train from scratch)',
  }),
  initStrict: define({
    group: 'model', schema: z.boolean(), default: true,
    help: 'with init: every checkpoint key that is missing, unexpected or of the wrong shape is an error (false: load what fits, keep the model\'s own initialisation for the rest, and log them)',
  }),
  initResetHead: define({
    group: 'model', schema: z.boolean(), default: false,
    help: 'with init: re-initialise the classifier head even when the class count matches (a new label set with as many classes); a head of another class count is always re-initialised',
  }),
  initAntialias: define({
    group: 'model', schema: z.boolean(), default: true,
    help: 'with init: resample position embeddings with antialias, as timm >= 0.9 (false: as MAE\'s interpolate_pos_embed and older timm)',
  }),
  method: define({
    group: 'method', schema: z.enum(METHODS), default: 'baseline',
    help: 'training method (see `masksub --help`)',
  }),
  ratio: define({
    group: 'method', schema: STRENGTH.nullable(), default: null,
    help: `the method's regularizer strength: ${Object.values(REGULARIZERS).map((regularizer) => regularizer.strength).join(', ')} (null: the method's default; above 0 for every method but baseline)`,
    alias: ['mask-ratio', 'strength', 'drop-ratio'],
  }),
  maskMode: define({
    group: 'method', schema: z.enum(['drop', 'token']), default: 'drop',
    help: 'ViT only: masking drops the masked patch tokens (MAE; the sub-model runs on fewer tokens), or replaces their embeddings by a learned mask token before the position embedding (BEiT / SimMIM; the sequence length stays)',
  }),
  subWeight: define({
    group: 'method', schema: PROBABILITY, default: 0.5, alias: ['sub-loss-weight', 'w2'],
    help: 'weight w of the sub-model loss: (1 - w) * L1 + w * L2',
  }),
  lossForm: define({
    group: 'method', schema: z.enum(['average', 'additive', 'auto']), default: 'auto', alias: ['loss-weights'],
    help: 'how the two losses combine: average = (1 - w) * L1 + w * L2 (the paper; AdamW and LAMB steps do not change with the loss\'s scale), additive = L1 + w * L2 (the main objective at full strength: with SGD, whose step scales with the loss, the average halves it; measured: 3.2 points lost with SGD, README), auto = additive for SGD, average otherwise',
  }),
  subTarget: define({
    group: 'method', schema: z.enum(['teacher', 'labels']), default: 'teacher',
    help: 'what the sub-model learns: teacher, the main model\'s detached prediction (MaskSub), or labels (the paper\'s "without KD loss" ablation, Table A.6)',
  }),
  subBnUpdate: define({
    group: 'method', schema: z.boolean(), default: false,
    help: 'let the sub-model forward update BatchNorm running statistics, as the official code does (default: only clean main forwards do; issue 19)',
  }),
  probeSize: define({
    group: 'method', schema: z.number().int().min(0), default: 512,
    help: 'training images on which the Eq. 1 / Eq. 2 probe losses are measured each epoch',
  }),
  probeMaskRatio: define({
    group: 'method', schema: STRENGTH, default: 0.5,
    help: 'mask ratio of the Eq. 2 probe (the same for every method, so that methods compare)',
  }),
  epochs: define({
    group: 'optimization', schema: POSITIVE_INTEGER, default: 10, alias: ['epoch', 'num-epochs'],
    help: 'training epochs',
  }),
  batchSize: define({
    group: 'optimization', schema: POSITIVE_INTEGER, default: 128, alias: ['batch', 'bs'],
    help: 'images per micro-batch (an optimizer step sees batch-size x accumulation images)',
  }),
  accumulation: define({
    group: 'optimization', schema: POSITIVE_INTEGER, default: 1, alias: ['grad-accumulation', 'accumulate'],
    help: 'micro-batches per optimizer step (gradient accumulation)',
  }),
  optimizer: define({
    group: 'optimization', schema: z.enum(['adamw', 'lamb', 'sgd']), default: 'adamw', alias: ['opt'],
    help: 'optimizer',
  }),
  lr: define({
    group: 'optimization', schema: z.number().gt(0), default: 1e-3, alias: ['learning-rate', 'rate'],
    help: 'peak learning rate, reached after the warmup and decayed to min-lr by a cosine',
  }),
  minLr: define({
    group: 'optimization', schema: z.number().min(0), default: 1e-5,
    help: 'learning rate at the end of the cosine (at most lr)',
  }),
  warmupEpochs: define({
    group: 'optimization', schema: z.number().min(0), default: 1, alias: ['warmup'],
    help: 'epochs of linear warmup from warmup-lr (fewer than epochs; 0: none)',
  }),
  warmupLr: define({
    group: 'optimization', schema: z.number().min(0), default: 1e-6,
    help: 'learning rate at the start of the warmup (at most lr)',
  }),
  weightDecay: define({
    group: 'optimization', schema: z.number().min(0).max(10), default: 0.05, alias: ['wd'],
    help: 'weight decay (not on 1-D parameters such as biases and norms, nor on a ViT\'s position embedding and class token)',
  }),
  layerDecay: define({
    group: 'optimization', schema: z.number().gt(0).max(1).nullable(), default: null, alias: ['layer-wise-decay', 'lr-decay', 'layer-lr-decay'],
    help: 'layer-wise learning-rate decay for fine-tuning (BEiT / MAE groups): the head learns at lr, each layer below at this factor times the one above (ViT: embeddings, block 1..N, head; ResNet: stem, each block, fc); null: off',
  }),
  freeze: define({
    group: 'optimization', schema: z.array(z.string().min(1)).min(1).nullable(), default: null, placeholder: 'NAMES', values: 'a list of module or parameter names (timm\'s names)',
    help: 'parameters that stay as initialised, as timm.utils.freeze(model, [...]): each name (patch_embed, blocks.0, cls_token) freezes that parameter or every parameter of that module; frozen parameters are left out of the optimizer (no update, no weight decay, no optimizer state) but stay in the EMA, model.safetensors and checkpoints; FT-CLIP freezes patch_embed; BatchNorm running statistics still update (null: train every parameter)',
    alias: ['freeze-patch-embed', 'frozen', 'freeze-layers'],
  }),
  optEps: define({
    group: 'optimization', schema: z.number().gt(0).max(1).nullable(), default: null, alias: ['eps', 'opt-epsilon', 'adam-eps'],
    help: 'epsilon of AdamW and LAMB, added to the root of the second moment (null: the optimizer\'s default, AdamW 1e-8, LAMB 1e-6 as timm\'s Lamb; DeiT-III passes 1e-8 to LAMB); not for SGD',
  }),
  momentum: define({
    group: 'optimization', schema: z.number().min(0).lt(1), default: 0.9,
    help: 'SGD momentum',
  }),
  nesterov: define({
    group: 'optimization', schema: z.boolean(), default: false,
    help: 'SGD with Nesterov momentum',
  }),
  loss: define({
    group: 'optimization', schema: z.enum(['ce', 'bce']), default: 'ce', alias: ['criterion'],
    help: 'label loss: cross-entropy, or binary cross-entropy as in DeiT-III and RSB',
  }),
  labelSmoothing: define({
    group: 'optimization', schema: z.number().min(0).lt(1), default: 0.1, alias: ['smoothing', 'smooth'],
    help: 'label smoothing of the label loss',
  }),
  bceTargetThreshold: define({
    group: 'optimization', schema: z.number().min(0).lt(1).nullable(), default: null,
    help: 'BCE only: label targets above this become 1, as in DeiT-III (null: off)',
  }),
  clipGrad: define({
    group: 'optimization', schema: z.number().gt(0).nullable(), default: null, alias: ['clip', 'grad-clip', 'max-grad-norm'],
    help: 'clip the gradient norm to this (null: no clipping)',
  }),
  ema: define({
    group: 'optimization', schema: z.boolean(), default: false,
    help: 'keep an exponential moving average of the weights and report its test accuracy too',
  }),
  emaDecay: define({
    group: 'optimization', schema: PROBABILITY, default: 0.9998,
    help: 'decay of the weights\' moving average',
  }),
  skipNonFinite: define({
    group: 'optimization', schema: z.boolean(), default: false,
    help: 'skip (and count) steps whose loss or gradient is not finite, instead of stopping',
  }),
  cropPadding: define({
    group: 'augmentation', schema: z.number().int().min(0).max(64), default: 2,
    help: 'random crop after padding each side by this many pixels (0: no crop); not for folder data, which RandomResizedCrop crops',
  }),
  randAugment: define({
    group: 'augmentation', schema: z.string().min(1).nullable(), default: null, placeholder: 'SPEC', alias: ['aa', 'auto-augment', 'randaugment'],
    help: 'folder only: timm\'s RandAugment after the crop and flip, from timm\'s spec (rand-m9-mstd0.5-inc1: magnitude 9 of 10, magnitude noise 0.5, the increasing op set; n2 ops per image by default), Pillow\'s arithmetic, fill = the data set\'s mean',
  }),
  threeAugment: define({
    group: 'augmentation', schema: z.boolean(), default: false, alias: ['3-augment', 'three-aug'],
    help: 'folder only: DeiT-III\'s 3-Augment after the crop and flip: one of grayscale, solarize (128) or Gaussian blur (sigma 0.1-2) per image, chosen uniformly',
  }),
  colorJitter: define({
    group: 'augmentation', schema: z.number().min(0).lt(1), default: 0, alias: ['jitter', 'color-jitter-strength'],
    help: 'folder only: ColorJitter(s, s, s) after the crop, flip and 3-Augment: brightness, contrast and saturation each scaled by a factor in [1 - s, 1 + s], in a random order (DeiT-III: 0.3)',
  }),
  cropScale: define({
    group: 'augmentation', schema: z.number().gt(0).max(1), default: 0.08, alias: ['scale', 'rrc-scale'],
    help: 'folder only: RandomResizedCrop\'s smallest crop, as a fraction of the image\'s area (timm --scale; the largest is 1, the aspect ratio 3/4 to 4/3)',
  }),
  interpolation: define({
    group: 'augmentation', schema: z.enum(['bilinear', 'bicubic']), default: 'bicubic', alias: ['interp'],
    help: 'folder only: resampling of the crops and the evaluation resize (antialiased, as PIL)',
  }),
  cropPct: define({
    group: 'augmentation', schema: z.number().gt(0).max(1), default: 0.875, alias: ['crop-percent', 'test-crop'],
    help: 'folder only: evaluation resizes the shorter side to floor(image-size / crop-pct), then center-crops image-size (timm\'s crop_pct)',
  }),
  repeatedAug: define({
    group: 'augmentation', schema: z.number().int().min(1).max(16), default: 1, alias: ['repeated-augmentation', 'num-repeats', 'aug-repeats'],
    help: 'repeated augmentation (DeiT\'s RASampler): each image of the shuffled order N times in a row, each copy augmented differently, the epoch cut to the data set\'s length, so an epoch sees about 1/N of the images (1: off; DeiT-III and RSB: 3)',
  }),
  hflip: define({
    group: 'augmentation', schema: z.boolean(), default: true, alias: ['flip', 'horizontal-flip'],
    help: 'random horizontal flips',
  }),
  randomErasing: define({
    group: 'augmentation', schema: PROBABILITY, default: 0, alias: ['reprob', 'erasing'],
    help: 'probability of random erasing per image',
  }),
  mixup: define({
    group: 'augmentation', schema: z.number().min(0).max(100), default: 0,
    help: 'mixup alpha (0: off)',
  }),
  cutmix: define({
    group: 'augmentation', schema: z.number().min(0).max(100), default: 0,
    help: 'cutmix alpha (0: off)',
  }),
  mixupSwitchProb: define({
    group: 'augmentation', schema: PROBABILITY, default: 0.5,
    help: 'with both mixup and cutmix on: probability of cutmix for a batch',
  }),
  mixupProb: define({
    group: 'augmentation', schema: PROBABILITY, default: 1,
    help: 'probability that a batch is mixed at all',
  }),
  seed: define({
    group: 'run', schema: z.number().int().min(0).max(2 ** 31 - 1), default: 0,
    help: 'random seed of initialization, data order, augmentation and masks',
  }),
  device: define({
    group: 'run', schema: z.string().regex(/^(cpu|cuda(:\d+)?)$/), default: 'cpu', values: 'cpu, cuda or cuda:N', placeholder: 'DEVICE',
    help: 'where to train',
  }),
  threads: define({
    group: 'run', schema: z.number().int().min(1).max(1024),
    default: { describe: 'MASKSUB_THREADS, else all cores', value: threadsFromEnvironment },
    help: 'libtorch intra-op threads',
  }),
  channelsLast: define({
    group: 'run', schema: z.boolean(), default: false, alias: ['memory-format'],
    help: 'ResNet only: convolution weights and input batches in channels_last memory format (NHWC strides, as PyTorch\'s model.to(memory_format=torch.channels_last)), what cuDNN\'s tensor-core convolutions read fastest; results equal the default format to float rounding, and checkpoints are written in the standard layout. Off by default and in the presets until its GPU speed is measured (README: CPU step 0.83-0.98x)',
  }),
  amp: define({
    group: 'optimization', schema: z.enum(['none', 'bf16', 'fp16']), default: 'none', alias: ['mixed-precision', 'autocast'],
    help: 'mixed precision (torch.autocast) of the forward passes: bf16 (CPU and CUDA) or fp16 (CUDA, with loss scaling); weights, optimizer state, losses and the MaskSub target stay float32',
  }),
  syncBn: define({
    group: 'run', schema: z.boolean(), default: false,
    help: 'in a data-parallel job, BatchNorm layers (ResNet) normalise training batches with the statistics of every rank\'s batch together (torch.nn.SyncBatchNorm: 2 processes x batch B/2 give the outputs and gradients of 1 process with batch B); off, each rank uses its own share and the running statistics are averaged after each epoch',
  }),
  distBackend: define({
    group: 'run', schema: z.enum(['auto', 'gloo', 'nccl']), default: 'auto', alias: ['backend', 'dist-backend-name'],
    help: 'in a data-parallel job, c10d\'s collective engine: nccl (CUDA tensors; needs a build against a CUDA torch with NCCL), gloo (CPU tensors, and CUDA ones through host memory), auto = torch.distributed\'s default, nccl on a CUDA device (gloo when the build has no NCCL) and gloo on the CPU',
  }),
  distTimeout: define({
    group: 'run', schema: z.number().positive().max(7 * 24 * 3600), default: 1800, placeholder: 'SECONDS',
    help: 'in a data-parallel job (train --nproc, torchrun), how long a rank waits for the others in one collective before it stops with an error (torch.distributed\'s default, 30 min); a rank that exits stops the others at once',
  }),
} as const;

export type SettingName = keyof typeof SETTINGS;

/** A training configuration as the user gives it: ratio null stands for the method's default. */
export type TrainConfig = { [Name in SettingName]: z.output<(typeof SETTINGS)[Name]['schema']> };

/** A configuration with the settings of compare's plan and the preset it came from. */
export type TrainSettings = TrainConfig & { preset: string | null };

/** A validated configuration: the ratio filled in, the machine and preset recorded. */
export type ResolvedTrainConfig = TrainConfig & { ratio: number; machine: string; preset: string | null };

const SETTING_NAMES = Object.keys(SETTINGS) as SettingName[];

function definitionOf(name: SettingName): SettingDefinition<z.ZodType> {
  return SETTINGS[name] as SettingDefinition<z.ZodType>;
}

function isEnvironmentDefault(value: unknown): value is EnvironmentDefault<unknown> {
  return typeof value === 'object' && value !== null && 'value' in value;
}

/**
 * Every setting's default. An environment default (threads) is a getter, so that it is read when
 * a configuration is built rather than when this module is imported.
 */
export const DEFAULTS: Readonly<TrainConfig> = (() => {
  const defaults: Record<string, unknown> = {};
  for (const name of SETTING_NAMES) {
    const value = definitionOf(name).default;
    if (isEnvironmentDefault(value)) Object.defineProperty(defaults, name, { get: value.value, enumerable: true });
    else defaults[name] = value;
  }
  return Object.freeze(defaults) as TrainConfig;
})();

// ---------------------------------------------------------------------------------------------
// Presets

export interface Preset { description: string; values: Partial<TrainConfig> }

/** OpenAI CLIP's normalization constants (timm's OPENAI_CLIP_MEAN / OPENAI_CLIP_STD), for fine-tuning CLIP towers. */
export const OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073] as const;
export const OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711] as const;

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
    description: 'The main job, run with --ratio 0.75 (12.5 min for 3 methods x 3 seeds with --jobs 2 on 2 cores, measured; measured there: MaskSub +1.8 points, p = 0.03, plain masking -3.3; README): Fashion-MNIST, 2,048 training images for 60 epochs, so that the baseline fits them and then overfits (its test loss is lowest near epoch 35 and rises after), 2,000 test images; ViT 64-dim x 2 blocks, patch 7; AdamW 2e-3, wd 0.05, batch 64, 1 warmup epoch + cosine, label smoothing 0.1, horizontal flips only (no crop)',
    values: { dataset: 'fashion-mnist', model: 'vit_micro', limitTrain: 2048, limitTest: 2000, epochs: 60, batchSize: 64, lr: 2e-3, weightDecay: 0.05, warmupEpochs: 1, labelSmoothing: 0.1, probeSize: 256, cropPadding: 0, hflip: true },
  },
  'debian-bert-quick': {
    description: 'Quick CPU text comparison: Debian package descriptions (10 sections, no download), 4,096 training texts for 3 epochs, all 7,529 test texts; bert_tiny (2 x 128), 32 tokens (the synopses: median 11, 99th percentile 20), trained 8,000-token WordPiece vocabulary; AdamW 1e-3, wd 0.01, batch 64, half an epoch of warmup + cosine, dropout 0.1 (BERT\'s), label smoothing 0.1',
    values: { dataset: 'debian-packages', model: 'bert_tiny', limitTrain: 4096, maxLength: 32, vocabSize: 8000, epochs: 3, batchSize: 64, lr: 1e-3, weightDecay: 0.01, warmupEpochs: 0.5, dropout: 0.1, labelSmoothing: 0.1, probeSize: 256 },
  },
  'emoji-clip-quick': {
    description: 'Quick CPU CLIP comparison: emoji (2,972 training / 683 test image-caption pairs, Noto Color Emoji at 28 px, captions = CLDR name and a per-epoch subset of its keywords), clip_micro_ctx32 (vit_micro image tower, 2-layer text tower, 32 tokens), WordPiece vocabulary trained on the captions; 8 epochs, AdamW 5e-4 (open_clip\'s default lr), wd 0.1, batch 64, 1 warmup epoch + cosine, crop(2), no flips (a mirrored arrow would contradict its caption); zero-shot over the 9 emoji groups and recall@k on the 683 test pairs each epoch',
    values: { dataset: 'emoji', imageSize: 28, model: 'clip_micro_ctx32', epochs: 8, batchSize: 64, lr: 5e-4, weightDecay: 0.1, warmupEpochs: 1, cropPadding: 2, hflip: false, probeSize: 256 },
  },
  // DeiT-III's 400-epoch recipes: MaskSub paper Table B.1 (shared values) and Table B.2 (per model);
  // LAMB's epsilon 1e-8 and the fine-tune phase's values beyond Table B.2 from DeiT-III's code
  // (facebookresearch/deit main.py: --opt-eps default 1e-8; README_revenge.md: the commands).
  'deit3-vit-b': {
    description: 'DeiT-III ViT-B/16, 400 epochs (MaskSub paper Table B.1, Table B.2 400-epoch column): trains at 192 px (--dataset folder); LAMB 3e-3 (eps 1e-8, DeiT-III\'s main.py), wd 0.03, batch 2048, 5 warmup epochs, BCE (targets > 0 become 1), mixup 0.8, cutmix 1.0, 3-Augment + color jitter 0.3, repeated augmentation 3, grad clip 1.0, drop-path 0.1 uniform over the blocks, LayerScale 1e-4, test crop 1.0. Table B.2\'s 20-epoch 224-px fine-tune is a second run: --preset deit3-vit-b-ft --init RUN/model.safetensors (position embeddings are resampled to 224 px)',
    values: { threeAugment: true, colorJitter: 0.3, model: 'vit_base_patch16_224', imageSize: 192, optimizer: 'lamb', optEps: 1e-8, lr: 3e-3, weightDecay: 0.03, batchSize: 2048, epochs: 400, warmupEpochs: 5, loss: 'bce', bceTargetThreshold: 0, labelSmoothing: 0, mixup: 0.8, cutmix: 1.0, repeatedAug: 3, clipGrad: 1.0, dropPath: 0.1, dropPathSchedule: 'uniform', layerScale: 1e-4, cropPct: 1.0, cropPadding: 0, hflip: true },
  },
  'deit3-vit-b-ft': {
    description: 'DeiT-III ViT-B/16 resolution fine-tune, the second run after deit3-vit-b (MaskSub paper Table B.2: 20 epochs at 224 px, AdamW 1e-5, drop-path 0.2; the rest from DeiT-III\'s README_revenge.md fine-tune command): give --init RUN/model.safetensors of the 192-px run; wd 0.1, batch 512, 5 warmup epochs, cross-entropy with label smoothing 0.1, mixup 0.8, cutmix 1.0, RandAugment rand-m9-mstd0.5-inc1, no repeated augmentation, drop-path 0.2 uniform, LayerScale 1e-4, test crop 1.0',
    values: { randAugment: 'rand-m9-mstd0.5-inc1', model: 'vit_base_patch16_224', imageSize: 224, optimizer: 'adamw', lr: 1e-5, weightDecay: 0.1, batchSize: 512, epochs: 20, warmupEpochs: 5, loss: 'ce', labelSmoothing: 0.1, mixup: 0.8, cutmix: 1.0, repeatedAug: 1, dropPath: 0.2, dropPathSchedule: 'uniform', layerScale: 1e-4, cropPct: 1.0, cropPadding: 0, hflip: true },
  },
  'deit3-vit-s': {
    description: 'DeiT-III ViT-S/16, 400 epochs (MaskSub paper Table B.1, Table B.2 400-epoch column): trains at 224 px, which Table B.2 gives for ViT-S (no fine-tune phase; ViT-B and larger train at 192 or 160 px and fine-tune at 224); LAMB 4e-3 (eps 1e-8, DeiT-III\'s main.py), wd 0.03, batch 2048, 5 warmup epochs, BCE (targets > 0 become 1), mixup 0.8, cutmix 1.0, 3-Augment + color jitter 0.3, repeated augmentation 3, grad clip 1.0, drop-path 0.0 (uniform schedule), LayerScale 1e-4, test crop 1.0',
    values: { threeAugment: true, colorJitter: 0.3, model: 'vit_small_patch16_224', optimizer: 'lamb', optEps: 1e-8, lr: 4e-3, weightDecay: 0.03, batchSize: 2048, epochs: 400, warmupEpochs: 5, loss: 'bce', bceTargetThreshold: 0, labelSmoothing: 0, mixup: 0.8, cutmix: 1.0, repeatedAug: 3, clipGrad: 1.0, dropPath: 0, dropPathSchedule: 'uniform', layerScale: 1e-4, cropPct: 1.0, cropPadding: 0, hflip: true },
  },
  'rsb-a2-resnet50': {
    description: 'ResNet Strikes Back A2 (MaskSub paper Table B.1) for 224 px data: ResNet-50, LAMB 5e-3, wd 0.01, batch 2048, 300 epochs (5 warmup), BCE with target threshold 0.2 (RSB), mixup 0.1, cutmix 1.0, RandAugment rand-m7-mstd0.5-inc1, repeated augmentation 3, drop-path 0.05, test crop 0.95',
    values: { randAugment: 'rand-m7-mstd0.5-inc1', model: 'resnet50', optimizer: 'lamb', lr: 5e-3, weightDecay: 0.01, batchSize: 2048, epochs: 300, warmupEpochs: 5, loss: 'bce', bceTargetThreshold: 0.2, labelSmoothing: 0, mixup: 0.1, cutmix: 1.0, repeatedAug: 3, dropPath: 0.05, cropPct: 0.95, cropPadding: 0, hflip: true },
  },
  'rsb-a3-resnet50': {
    description: 'ResNet Strikes Back A3 (RSB paper, Wightman et al. 2021, Table 1 column A3; mmpretrain\'s resnet50_8xb256-rsb-a3-100e_in1k config agrees): ResNet-50 trained at 160 px and tested at 224 px with crop 0.95 (--dataset folder), LAMB 8e-3, wd 0.02, batch 2048, 100 epochs (5 warmup), BCE with target threshold 0.2, mixup 0.1, cutmix 1.0, RandAugment rand-m6-mstd0.5-inc1; A3 uses neither repeated augmentation nor drop-path (A1 and A2 do; mmpretrain\'s A3 config samples plainly too)',
    values: { randAugment: 'rand-m6-mstd0.5-inc1', model: 'resnet50', imageSize: 160, evalImageSize: 224, optimizer: 'lamb', lr: 8e-3, weightDecay: 0.02, batchSize: 2048, epochs: 100, warmupEpochs: 5, loss: 'bce', bceTargetThreshold: 0.2, labelSmoothing: 0, mixup: 0.1, cutmix: 1.0, repeatedAug: 1, dropPath: 0, cropPct: 0.95, cropPadding: 0, hflip: true },
  },
  'mae-vit-b-ft': {
    description: 'MAE fine-tuning of ViT-B/16 (MAE\'s FINETUNE.md: blr 5e-4 x batch 1024 / 256) for 224 px data with --init from an MAE-pretrained checkpoint: AdamW 2e-3, wd 0.05, layer decay 0.65, batch 1024, 100 epochs (5 warmup), min lr 1e-6, drop-path 0.1, mixup 0.8, cutmix 1.0, RandAugment rand-m9-mstd0.5-inc1, random erasing 0.25, label smoothing 0.1, mean pooling with fc_norm',
    values: { randAugment: 'rand-m9-mstd0.5-inc1', model: 'vit_base_patch16_224', optimizer: 'adamw', lr: 2e-3, minLr: 1e-6, weightDecay: 0.05, layerDecay: 0.65, batchSize: 1024, epochs: 100, warmupEpochs: 5, dropPath: 0.1, mixup: 0.8, cutmix: 1.0, randomErasing: 0.25, labelSmoothing: 0.1, loss: 'ce', globalPool: 'avg', cropPadding: 0, hflip: true },
  },
  'beitv2-vit-b-ft': {
    description: 'BEiT v2 fine-tuning of ViT-B/16 (paper Table B.1, BEiT v2 column, ViT-B; MaskSub masks with the mask token, Sec. 4.2) for 224 px data with --init from a BEiT v2 checkpoint in timm\'s names: beitv2_base_patch16_224, AdamW 5e-4, wd 0.05, layer decay 0.6, batch 1024, 100 epochs (20 warmup), min lr 1e-6 (BEiT\'s default), drop-path 0.2, label smoothing 0.1, mixup 0.8, cutmix 1.0, RandAugment rand-m9-mstd0.5-inc1, random erasing 0.25, mean pooling with fc_norm, test crop 0.875. Table B.1\'s color jitter 0.4 is left out: with RandAugment, the timm version BEiT uses applies none',
    values: { randAugment: 'rand-m9-mstd0.5-inc1', model: 'beitv2_base_patch16_224', optimizer: 'adamw', lr: 5e-4, minLr: 1e-6, weightDecay: 0.05, layerDecay: 0.6, batchSize: 1024, epochs: 100, warmupEpochs: 20, dropPath: 0.2, mixup: 0.8, cutmix: 1.0, randomErasing: 0.25, labelSmoothing: 0.1, loss: 'ce', globalPool: 'avg', cropPct: 0.875, cropPadding: 0, hflip: true },
  },
  'ftclip-vit-b-ft': {
    description: 'FT-CLIP fine-tuning of OpenAI CLIP ViT-B/16 (paper Table B.1, FT-CLIP column, ViT-B; FT-CLIP\'s bash_fine_Openai_CLIP_P16.sh) for 224 px data with --init from the CLIP image tower in timm\'s names: vit_base_patch16_clip_quickgelu_224, AdamW 6e-4, wd 0.05, layer decay 0.6, batch 2048, 50 epochs (10 warmup), min lr 1e-6, no drop-path, no mixup or cutmix, label smoothing 0.1, RandAugment rand-m9-mstd0.5-inc1, random erasing 0.25, EMA 0.9998, mean pooling with a fresh fc_norm (CLIP\'s ln_post is not used), test crop 1.0; as FT-CLIP\'s code, the patch embedding frozen (freeze patch_embed) and inputs normalized with OpenAI CLIP\'s mean/std. Differences from FT-CLIP\'s code: its fc_norm normalises each token before the mean (here after it, as timm); Table B.1\'s color jitter 0.4 is left out as for BEiT v2',
    values: { freeze: ['patch_embed'], mean: [...OPENAI_CLIP_MEAN], std: [...OPENAI_CLIP_STD], randAugment: 'rand-m9-mstd0.5-inc1', model: 'vit_base_patch16_clip_quickgelu_224', optimizer: 'adamw', lr: 6e-4, minLr: 1e-6, weightDecay: 0.05, layerDecay: 0.6, batchSize: 2048, epochs: 50, warmupEpochs: 10, dropPath: 0, mixup: 0, cutmix: 0, randomErasing: 0.25, labelSmoothing: 0.1, loss: 'ce', ema: true, emaDecay: 0.9998, globalPool: 'avg', cropPct: 1.0, cropPadding: 0, hflip: true },
  },
};

// ---------------------------------------------------------------------------------------------
// Names and spellings

/** Flag and YAML key spelling (kebab-case) of each config field. */
export function kebab(key: string): string {
  return key.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`);
}

function snake(key: string): string {
  return kebab(key).replace(/-/g, '_');
}

// camelCase, kebab-case (flags, YAML) and snake_case (config.json) all name a setting.
const KEY_BY_SPELLING = new Map<string, SettingName>();
for (const name of SETTING_NAMES) {
  KEY_BY_SPELLING.set(name, name);
  KEY_BY_SPELLING.set(kebab(name), name);
  KEY_BY_SPELLING.set(snake(name), name);
}

export function configKey(spelling: string): SettingName | undefined {
  return KEY_BY_SPELLING.get(spelling);
}

/**
 * The candidate closest to what was typed, if it is close enough to be a likely typo (by edit
 * distance); spellings compare without case and with '_' read as '-'.
 */
export function closestName(typed: string, candidates: Iterable<string>): string | undefined {
  const normal = (text: string): string => text.toLowerCase().replace(/_/g, '-');
  const wanted = normal(typed);
  let best: { name: string; distance: number } | undefined;
  for (const candidate of candidates) {
    const gap = distance(wanted, normal(candidate));
    if (best === undefined || gap < best.distance) best = { name: candidate, distance: gap };
  }
  // Short words allow one edit (else 'lr' would match any two letters); longer ones a swap of two letters or a third of the word.
  const allowed = wanted.length <= 3 ? 1 : Math.max(2, Math.floor(wanted.length / 3));
  if (best === undefined || best.distance > allowed) return undefined;
  return best.name;
}

/** The setting a misspelt or aliased name most likely means, in kebab-case. */
export function suggestSetting(typed: string): string | undefined {
  const byName = new Map<string, string>();
  for (const name of SETTING_NAMES) {
    byName.set(kebab(name), kebab(name));
    for (const alias of definitionOf(name).alias ?? []) byName.set(alias, kebab(name));
  }
  const closest = closestName(typed, byName.keys());
  return closest === undefined ? undefined : byName.get(closest);
}

// ---------------------------------------------------------------------------------------------
// Values

/** Where values come from; it decides how a setting is named in messages and how text is read. */
export type SettingSource =
  | { kind: 'flags' }
  | { kind: 'file'; name: string }
  | { kind: 'stored'; name: string | null }
  | { kind: 'code' };

type JsonSchema = {
  type?: string; enum?: unknown[]; anyOf?: JsonSchema[]; items?: JsonSchema;
  minimum?: number; maximum?: number; exclusiveMinimum?: number; exclusiveMaximum?: number; minLength?: number;
};

const jsonSchemas = new Map<SettingName, JsonSchema>();

/** The setting's schema as JSON Schema (zod's own conversion): the source of help texts. */
function jsonSchemaOf(name: SettingName): JsonSchema {
  let schema = jsonSchemas.get(name);
  if (schema === undefined) {
    schema = z.toJSONSchema(definitionOf(name).schema) as JsonSchema;
    jsonSchemas.set(name, schema);
  }
  return schema;
}

/** The schema without its null branch, and whether null is allowed. */
function nonNullPart(schema: JsonSchema): { schema: JsonSchema; nullable: boolean } {
  if (!schema.anyOf) return { schema, nullable: false };
  const parts = schema.anyOf.filter((part) => part.type !== 'null');
  return { schema: parts[0] ?? {}, nullable: parts.length < schema.anyOf.length };
}

function describeNumbers(schema: JsonSchema): string {
  const integer = schema.type === 'integer';
  const noun = integer ? 'an integer' : 'a number';
  // zod bounds every integer by the safe-integer range; that is no range a user set.
  const unbounded = (bound: number | undefined): boolean => bound === undefined || Math.abs(bound) >= Number.MAX_SAFE_INTEGER;
  const low = !unbounded(schema.exclusiveMinimum) ? { value: schema.exclusiveMinimum as number, open: true }
    : !unbounded(schema.minimum) ? { value: schema.minimum as number, open: false } : null;
  const high = !unbounded(schema.exclusiveMaximum) ? { value: schema.exclusiveMaximum as number, open: true }
    : !unbounded(schema.maximum) ? { value: schema.maximum as number, open: false } : null;
  if (low && high) return `${noun} in ${low.open ? '(' : '['}${low.value}, ${high.value}${high.open ? ')' : ']'}`;
  if (low) return `${noun} ${low.open ? '>' : '≥'} ${low.value}`;
  if (high) return `${noun} ${high.open ? '<' : '≤'} ${high.value}`;
  return noun;
}

/** The values a setting accepts, in words ("an integer ≥ 1, or null"), from its schema. */
export function describeValues(name: SettingName, allowNull = true): string {
  const { schema, nullable: schemaNullable } = nonNullPart(jsonSchemaOf(name));
  const nullable = schemaNullable && allowNull;
  let text: string;
  const words = definitionOf(name).values;
  if (words !== undefined) text = words;
  else if (schema.enum) text = `one of ${schema.enum.join(', ')}`;
  else if (schema.type === 'boolean') text = 'true or false';
  else if (schema.type === 'integer' || schema.type === 'number') text = describeNumbers(schema);
  else text = schema.minLength ? 'a non-empty text' : 'a text';
  return nullable ? `${text}, or null` : text;
}

// JSON's number grammar: no hex (0x2), no "Infinity", no empty text, no trailing junk.
const NUMBER_TEXT = /^-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$/;

/**
 * A flag's text read as the setting's type, strictly: numbers in decimal notation, booleans as
 * true/false, null/none for a nullable setting. Text that does not read is returned as is, so
 * that the schema rejects it and the message shows what was typed.
 */
function readText(name: SettingName, text: string, allowNull: boolean): unknown {
  const { schema, nullable: schemaNullable } = nonNullPart(jsonSchemaOf(name));
  const nullable = schemaNullable && allowNull;
  if (nullable && (text === 'null' || text === 'none')) return null;
  if (schema.type === 'boolean') return text === 'true' ? true : text === 'false' ? false : text;
  if (schema.type === 'integer' || schema.type === 'number') return NUMBER_TEXT.test(text) ? Number(text) : text;
  // A list setting (mean, freeze, classes) is comma-separated on the command line, each item read as the list's type.
  if (schema.type === 'array') {
    const numbers = schema.items?.type === 'integer' || schema.items?.type === 'number';
    return text.split(',').map((item) => item.trim()).map((item) => (numbers && NUMBER_TEXT.test(item) ? Number(item) : item));
  }
  return text;
}

function show(value: unknown): string {
  return value === undefined ? 'nothing' : JSON.stringify(value);
}

/** How a setting is named in a message from this source: --lr for flags, lr in files. */
function label(name: SettingName, spelling: string, source: SettingSource): string {
  if (source.kind === 'flags') return `--${spelling}`;
  if (source.kind === 'code') return kebab(name);
  return spelling;
}

function where(source: SettingSource): string {
  if (source.kind === 'file') return `config file ${source.name}: `;
  if (source.kind === 'stored' && source.name !== null) return `${source.name}: `;
  return '';
}

/**
 * One value checked by its setting's schema. Text from flags is read strictly first; files carry
 * typed values (YAML, JSON), so "false" there is text, not a boolean, and is rejected.
 */
function parseValue(name: SettingName, spelling: string, value: unknown, source: SettingSource, allowNull = true): unknown {
  const candidate = source.kind === 'flags' && typeof value === 'string' ? readText(name, value, allowNull) : value;
  const result = definitionOf(name).schema.safeParse(candidate);
  if (result.success && (allowNull || result.data !== null)) return result.data;
  const { schema } = nonNullPart(jsonSchemaOf(name));
  const choices = schema.enum?.map(String);
  const near = choices && typeof candidate === 'string' ? closestName(candidate, choices) : undefined;
  throw new ConfigError(`${where(source)}${label(name, spelling, source)} must be ${describeValues(name, allowNull)}, got ${show(candidate)}${near ? `; did you mean '${near}'?` : ''}`);
}

/**
 * A single setting's value from text (a flag, a list item), checked by the schema; `allowNull`
 * false refuses null where a list needs values (--ratios).
 */
export function parseSettingText<Name extends SettingName>(name: Name, text: string, flag = `--${kebab(name)}`, allowNull = true): TrainConfig[Name] {
  return parseValue(name, flag.replace(/^--/, ''), text, { kind: 'flags' }, allowNull) as TrainConfig[Name];
}

function unknownSetting(spelling: string, source: SettingSource): ConfigError {
  const near = suggestSetting(spelling);
  const spell = (name: string): string => (source.kind === 'stored' ? name.replace(/-/g, '_') : name);
  if (source.kind === 'flags') {
    return new ConfigError(`unknown option --${spelling}${near ? `; did you mean --${near}?` : ''} (see masksub train --help)`);
  }
  const known = near ? `did you mean '${spell(near)}'?` : `known settings: ${SETTING_NAMES.map((name) => spell(kebab(name))).join(', ')}`;
  return new ConfigError(`${where(source)}unknown setting '${spelling}'; ${known}`);
}

type Raw = Record<string, unknown>;

/** Raw key/values (flags, YAML) applied onto a configuration; unknown keys are errors. */
function applyRaw(base: TrainConfig, raw: Raw, source: SettingSource): TrainConfig {
  const out: Raw = { ...base };
  for (const [spelling, value] of Object.entries(raw)) {
    const name = configKey(spelling);
    if (name === undefined) throw unknownSetting(spelling, source);
    out[name] = parseValue(name, spelling, value, source);
  }
  return out as TrainConfig;
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

// ---------------------------------------------------------------------------------------------
// Whole configurations

function machineDescription(device: string, threads: number): string {
  const cpu = cpus()[0]?.model?.replace(/\s+/g, ' ').trim() ?? 'CPU';
  const place = device === 'cpu' ? `${threads} thread(s) of ${availableParallelism()}-core ${cpu}` : `${device} GPU`;
  return `${place}, Node ${process.version}`;
}

/** Settings that only the text data sets read. */
const TEXT_SETTINGS = ['textColumns', 'labelColumn', 'maxLength', 'tokenizer', 'vocabSize'] as const;

/**
 * Settings that only images read: with text data a changed one is an error (it would silently do
 * nothing); at its default it is ignored, and the trainer says so in one log line.
 */
export const IMAGE_ONLY_SETTINGS = [
  'trainList', 'valList', 'imageSize', 'skipBadImages', 'mean', 'std', 'maskPatchSize', 'globalPool', 'maskMode', 'layerScale',
  'cropPadding', 'randAugment', 'threeAugment', 'colorJitter', 'cropScale', 'interpolation', 'cropPct', 'hflip', 'randomErasing',
  'mixup', 'cutmix', 'mixupSwitchProb', 'mixupProb', 'channelsLast',
] as const;

/**
 * The masking methods' default ratio: BERT's 15% of the tokens on text (the paper's GLUE setting,
 * MASKSUB.md), the method's own (0.5) on images.
 */
export const TEXT_MASK_RATIO = 0.15;
function methodDefaultRatio(config: Pick<TrainConfig, 'method' | 'dataset'>): number {
  return isTextDatasetName(config.dataset) && describeMethod(config.method).regularizer === 'mask' ? TEXT_MASK_RATIO : defaultRatio(config.method);
}

/** The text data sets' checks: a BERT model, and no image setting changed from its default. */
function checkTextCombinations(config: TrainConfig): void {
  const model = describeModel(config.model);
  if (!isTextDatasetName(config.dataset)) {
    throw new ConfigError(`model ${config.model} is a text model (token ids); ${config.dataset} is images: use --dataset debian-packages or --dataset text, or an image model (${modelNames().filter((name) => describeModel(name).family !== 'bert').slice(0, 4).join(', ')}, ...)`);
  }
  if (model.family !== 'bert') {
    throw new ConfigError(`dataset ${config.dataset} is text; model ${config.model} takes images: use a text model (${modelNames().filter((name) => describeModel(name).family === 'bert').join(', ')})`);
  }
  const changed = IMAGE_ONLY_SETTINGS.find((name) => JSON.stringify(config[name]) !== JSON.stringify(DEFAULTS[name]));
  if (changed !== undefined) throw new ConfigError(`${kebab(changed)} applies only to images; ${config.dataset} is text: leave ${kebab(changed)} out`);
  if (config.dataset === 'text' && config.dataDir === null) throw new ConfigError('dataset text needs --data-dir DIR holding train.tsv and dev.tsv (or .csv), GLUE\'s layout');
  if (config.dataset === 'debian-packages' && (config.dataDir !== null || config.textColumns !== null || config.labelColumn !== null)) {
    throw new ConfigError(`debian-packages reads this machine's APT lists (apt-cache dumpavail); ${config.dataDir !== null ? 'data-dir' : config.textColumns !== null ? 'text-columns' : 'label-column'} applies to --dataset text: leave it out`);
  }
  if (config.initAntialias !== DEFAULTS.initAntialias) throw new ConfigError('init-antialias resamples image position embeddings; a text model has none: leave it out');
  const initOnly = (['initStrict', 'initResetHead'] as const).find((name) => config[name] !== DEFAULTS[name]);
  if (config.init === null && initOnly !== undefined) throw new ConfigError(`${kebab(initOnly)} applies only with init (a pretrained weights file); give init or leave it out`);
}

/** The text settings a CLIP reads: its captions' tokenizer. */
const CLIP_TEXT_SETTINGS: readonly (typeof TEXT_SETTINGS)[number][] = ['tokenizer', 'vocabSize'];

/**
 * Settings of classifier training that a CLIP run does not read (no labels, no head, no pretrained
 * classifier to start from): changed from their defaults they are refused, not silently unused.
 */
export const NOT_FOR_CLIP_SETTINGS = [
  'maxLength', 'textColumns', 'labelColumn', 'init', 'initStrict', 'initAntialias', 'initResetHead', 'layerScale', 'maskPatchSize', 'globalPool', 'maskMode',
  'dropout', 'mixup', 'cutmix', 'mixupSwitchProb', 'mixupProb', 'loss', 'bceTargetThreshold', 'subTarget', 'subBnUpdate', 'lossForm', 'ema', 'emaDecay', 'amp', 'layerDecay', 'freeze',
] as const;

/** The methods CLIP trains with: the contrastive loss alone, or with the masked-image sub-model (paper Sec. 4.6). */
export const CLIP_METHODS: readonly string[] = ['baseline', 'masksub'];

/** A CLIP run's own checks: image data, its two methods, no classifier-only setting changed. */
function checkClipCombinations(config: TrainConfig): void {
  if (isTextDatasetName(config.dataset)) {
    throw new ConfigError(`model ${config.model} is CLIP (images paired with captions); ${config.dataset} is text classification: use an image data set (emoji, fashion-mnist, mnist, cifar10, folder) or a text model (${modelNames().filter((name) => describeModel(name).family === 'bert').join(', ')})`);
  }
  if (!CLIP_METHODS.includes(config.method)) {
    throw new ConfigError(`method ${config.method} is not defined for CLIP; ${config.model} trains with ${CLIP_METHODS.join(' or ')} (the masked-image sub-model of the paper's CLIP recipe)`);
  }
  const changed = NOT_FOR_CLIP_SETTINGS.find((name) => JSON.stringify(config[name]) !== JSON.stringify(DEFAULTS[name]));
  if (changed !== undefined) {
    const why = changed === 'maxLength' ? `the captions are cut at ${config.model}'s context length`
      : changed === 'freeze' ? 'freezing is implemented for classifiers only (CLIP training starts from scratch)' : 'it applies to classifiers (labels, a head), not to CLIP\'s contrastive training';
    throw new ConfigError(`${kebab(changed)} does not apply to ${config.model}: ${why}; leave ${kebab(changed)} out`);
  }
}

/** The checks that involve more than one setting, after each setting passed its own schema. */
function checkCombinations(config: TrainConfig): void {
  if (config.amp === 'fp16' && config.device === 'cpu') {
    throw new ConfigError('amp fp16 needs a CUDA device (--device cuda): CPU autocast supports bf16 only (libtorch 1.13); use --amp bf16 on the CPU');
  }
  if (config.minLr > config.lr) throw new ConfigError(`min-lr ${config.minLr} is above lr ${config.lr}; min-lr must be in [0, lr]`);
  if (config.warmupLr > config.lr) throw new ConfigError(`warmup-lr ${config.warmupLr} is above lr ${config.lr}; warmup-lr must be in [0, lr]`);
  if (config.warmupEpochs > 0 && config.warmupEpochs >= config.epochs) {
    throw new ConfigError(`warmup-epochs ${config.warmupEpochs} leaves no epoch after the warmup (epochs ${config.epochs}); use fewer warmup-epochs (0 is fine) or more epochs`);
  }
  const method = describeMethod(config.method);
  if (method.regularizer === null && config.ratio !== null && config.ratio !== 0) {
    throw new ConfigError(`ratio ${config.ratio} given, but method ${config.method} applies no regularizer; leave ratio out (or pick a method such as masksub)`);
  }
  if (method.regularizer !== null && config.ratio === 0) {
    // A zero strength turns the regularizer off: a sub-model method would train the same input
    // twice, a single-model method would be the baseline under another name.
    throw new ConfigError(`ratio 0 turns off the ${REGULARIZERS[method.regularizer].strength} of method ${config.method}; ` +
      `use a ratio in (0, 1), or leave it out for the method's default ${methodDefaultRatio(config)}`);
  }
  const clip = isClipModel(config.model);
  if (clip) checkClipCombinations(config);
  // A CLIP's images meet the checks of its image tower (sizes, patches, folder settings).
  const model = describeModel(clip ? describeClipModel(config.model).vision.model : config.model);
  if (isTextDatasetName(config.dataset) || model.family === 'bert') {
    checkTextCombinations(config);
    return;
  }
  const textOnly = TEXT_SETTINGS.find((name) => !(clip && CLIP_TEXT_SETTINGS.includes(name)) && JSON.stringify(config[name]) !== JSON.stringify(DEFAULTS[name]));
  if (textOnly !== undefined) {
    const clipToo = (CLIP_TEXT_SETTINGS as readonly string[]).includes(textOnly) ? ' and to CLIP models (clip_*)' : '';
    throw new ConfigError(`${kebab(textOnly)} applies only to the text data sets (debian-packages, text)${clipToo}; ${config.dataset} with ${config.model} is image classification: leave ${kebab(textOnly)} out`);
  }
  const info = DATASET_INFO[config.dataset as DatasetName];
  const folder = config.dataset === 'folder';
  // Emoji are drawn at any size; like folders, a ViT is built for it when its patches tile it.
  const sized = folder || config.dataset === 'emoji';
  if (!folder) {
    // A data set with fixed, named classes (emoji) takes its own list, which its runs record.
    const ownClasses = info.classes !== undefined && JSON.stringify(config.classes) === JSON.stringify(info.classes);
    const folderOnly = (['trainList', 'valList', ...(sized ? [] : ['imageSize'] as const), 'evalImageSize', ...(ownClasses ? [] : ['classes'] as const)] as const).find((name) => config[name] !== null);
    if (folderOnly === 'classes' && info.classes !== undefined) {
      throw new ConfigError(`classes of ${config.dataset} are fixed: ${info.classes.join(', ')} (in this order); leave classes out`);
    }
    if (folderOnly !== undefined) throw new ConfigError(`${kebab(folderOnly)} applies only to --dataset folder${kebab(folderOnly) === 'image-size' ? ' and emoji' : ''}; ${config.dataset} has its own files and size: leave ${kebab(folderOnly)} out`);
    const imageOnly = config.randAugment !== null ? 'rand-augment' : config.threeAugment ? 'three-augment' : config.colorJitter > 0 ? 'color-jitter' : null;
    if (imageOnly !== null) {
      throw new ConfigError(`${imageOnly} applies only to --dataset folder (decoded RGB images); ${config.dataset} is augmented with crop-padding, hflip and random-erasing`);
    }
  } else {
    if (config.dataDir === null && config.trainList === null) {
      throw new ConfigError('dataset folder needs --data-dir DIR (DIR/train/<class>/<images>, DIR/val/<class>/<images>) or --train-list FILE');
    }
    if (config.dataDir === null && config.valList === null) {
      throw new ConfigError('dataset folder needs --val-list FILE for the evaluation images when there is no --data-dir');
    }
    if (config.randAugment !== null) {
      try {
        parseRandAugment(config.randAugment);
      } catch (error) {
        throw new ConfigError((error as Error).message);
      }
    }
    if (config.randAugment !== null && (config.threeAugment || config.colorJitter > 0)) {
      // timm applies color jitter only without an auto-augment policy; DeiT-III's 3-Augment replaces RandAugment.
      throw new ConfigError(`rand-augment excludes ${config.threeAugment ? 'three-augment (DeiT-III uses 3-Augment instead of RandAugment)' : 'color-jitter (timm applies color jitter only without RandAugment)'}; choose one`);
    }
    if (config.cropPadding !== 0 && config.cropPadding !== DEFAULTS.cropPadding) {
      throw new ConfigError(`crop-padding ${config.cropPadding} does not apply to folder data (RandomResizedCrop crops it, see crop-scale); leave crop-padding out`);
    }
  }
  const dataSize = folder ? config.imageSize ?? model.imageSize : sized ? config.imageSize ?? info.height : info.height;
  // A transformer's patch grid, windows and position tables are built for its size; a CNN takes
  // any. A ViT is built for the folder's image-size when its patches tile it (timm's img_size).
  const patchesTile = sized && model.patchSize !== undefined && dataSize % model.patchSize === 0;
  // BEiT's relative position tables are built for its grid: it takes only its own size.
  if (model.imageSize !== dataSize && ((!patchesTile && (model.family === 'vit' || model.family === 'swin')) || model.family === 'beit')) {
    const multiple = model.patchSize === undefined ? '' : ` nor a multiple of its ${model.patchSize}-px patch`;
    if (sized) throw new ConfigError(`model ${config.model} takes ${model.imageSize}x${model.imageSize} images but image-size is ${dataSize}${multiple}; ${folder ? 'leave image-size out' : 'set image-size'} or pick a ${dataSize}-px model (${modelNames().filter((name) => describeModel(name).imageSize === dataSize).join(', ') || 'none registered'})`);
    throw new ConfigError(`model ${config.model} takes ${model.imageSize}x${model.imageSize} images but ${config.dataset} has ${info.height}x${info.width}; pick a ${info.height}-px model (${modelNames().filter((name) => describeModel(name).imageSize === info.height).join(', ')})`);
  }
  if (config.evalImageSize !== null && config.evalImageSize !== dataSize && model.family !== 'resnet') {
    throw new ConfigError(`eval-image-size ${config.evalImageSize} differs from the training size ${dataSize}, but ${config.model} (${model.family === 'swin' ? 'Swin' : 'ViT'}) is built for one image size; ` +
      'train, then fine-tune at the evaluation size with --init RUN/model.safetensors --image-size N (position embeddings are resampled), as DeiT-III does');
  }
  if (config.optEps !== null && config.optimizer === 'sgd') {
    throw new ConfigError(`opt-eps ${config.optEps} applies only to adamw and lamb; sgd has no epsilon: leave opt-eps out`);
  }
  if (config.maskPatchSize !== null && model.family !== 'resnet') {
    // Masking a ViT drops its own patch tokens; a patch size for zeroing would be silently unused.
    const masks = model.family === 'swin' || model.family === 'beit'
      ? `${model.family === 'swin' ? 'Swin' : 'BEiT'}, which replaces masked patches by its mask token`
      : 'ViT, which masks its own patch tokens';
    throw new ConfigError(`mask-patch-size applies only to CNN models (masking zeroes square patches there); ${config.model} is a ${masks}: leave mask-patch-size out`);
  }
  if (config.channelsLast && model.family !== 'resnet') {
    throw new ConfigError(`channels-last applies only to ResNet models (their convolutions read NHWC); ${config.model} is a transformer (${model.family}), whose one patch convolution gains nothing from it: leave channels-last out`);
  }
  if (config.distBackend === 'nccl' && config.device === 'cpu') {
    throw new ConfigError('dist-backend nccl needs --device cuda: NCCL moves CUDA tensors only; use --dist-backend gloo (or auto) on the CPU');
  }
  if (config.maskPatchSize !== null && dataSize % config.maskPatchSize) {
    throw new ConfigError(`mask-patch-size ${config.maskPatchSize} does not divide the ${dataSize}-px images of ${config.dataset}`);
  }
  if (config.globalPool !== null && model.family !== 'vit' && model.family !== 'beit') {
    throw new ConfigError(`global-pool applies only to ViT and BEiT models; ${config.model} (${model.family === 'swin' ? 'Swin' : 'a CNN'}) always averages its last feature map: leave global-pool out`);
  }
  if (config.maskMode !== 'drop' && model.family !== 'vit') {
    const how = model.family === 'swin' || model.family === 'beit' ? 'always masks with its mask token' : 'masks by zeroing patches';
    throw new ConfigError(`mask-mode applies only to ViT models; ${config.model} ${how}: leave mask-mode out`);
  }
  const initOnly = (['initStrict', 'initAntialias', 'initResetHead'] as const).find((name) => config[name] !== DEFAULTS[name]);
  if (config.init === null && initOnly !== undefined) {
    throw new ConfigError(`${kebab(initOnly)} applies only with init (a pretrained weights file); give init or leave it out`);
  }
  if (config.loss === 'bce' && config.labelSmoothing > 0 && config.bceTargetThreshold === 0) {
    // Smoothing gives every class a target above 0, and the threshold then makes every target 1.
    throw new ConfigError(`loss bce with label-smoothing ${config.labelSmoothing} and bce-target-threshold 0 turns every target into 1; use label-smoothing 0 (DeiT-III) or a threshold above label-smoothing / classes (RSB: 0.2)`);
  }
  if (config.layerScale !== null && model.family !== 'vit' && model.family !== 'beit') {
    throw new ConfigError(`layer-scale applies only to ViT and BEiT models; ${config.model} has none: leave layer-scale out`);
  }
}

/**
 * The normalization constants an image run uses, recorded in its config: the given mean / std (one
 * value stands for every channel, as timm's resolve_data_config), else the data set's own.
 */
function resolveNormalization(settings: TrainConfig): Pick<TrainConfig, 'mean' | 'std'> {
  if (isTextDatasetName(settings.dataset)) return { mean: settings.mean, std: settings.std };
  const info = DATASET_INFO[settings.dataset as DatasetName];
  const fit = (name: 'mean' | 'std'): number[] => {
    const values = settings[name] ?? info[name];
    if (values.length === 1) return Array.from({ length: info.channels }, () => values[0]!);
    if (values.length !== info.channels) {
      throw new ConfigError(`${name} has ${values.length} values but ${settings.dataset} images have ${info.channels} channel(s): give ${info.channels} values, or one for every channel`);
    }
    return [...values];
  };
  return { mean: fit('mean'), std: fit('std') };
}

/** Validates every field and fills the derived ones; throws ConfigError naming the first bad value. */
export function resolveConfig(config: TrainConfig, preset: string | null = null): ResolvedTrainConfig {
  const checked: Raw = {};
  for (const name of SETTING_NAMES) checked[name] = parseValue(name, kebab(name), (config as Raw)[name], { kind: 'code' });
  const settings = checked as TrainConfig;
  checkCombinations(settings);
  const ratio = settings.ratio ?? methodDefaultRatio(settings);
  // null is the model's own pool (ViT: class token, BEiT: mean, as timm); the resolved config
  // records which, so that runs stored before null existed ("token") compare equal to new plans.
  const family = isClipModel(settings.model) ? 'clip' : describeModel(settings.model).family;
  const globalPool = settings.globalPool ?? (family === 'vit' ? 'token' : family === 'beit' ? 'avg' : null);
  return { ...settings, ratio, globalPool, ...resolveNormalization(settings), machine: machineDescription(settings.device, settings.threads), preset };
}

export interface ConfigSources {
  preset?: string | null;
  /** A YAML file of settings; it may name a preset too (the --preset flag wins). */
  file?: string | null;
  /** Settings from flags (text, read strictly) or from code (typed values). */
  flags?: Raw;
  /** Settings this command sets itself, each with what to say when a source sets it. */
  forbid?: Partial<Record<SettingName, string>>;
}

function checkForbidden(raw: Raw, forbid: ConfigSources['forbid'], source: SettingSource): void {
  for (const spelling of Object.keys(raw)) {
    const name = configKey(spelling);
    const reason = name === undefined ? undefined : forbid?.[name];
    if (reason !== undefined) throw new ConfigError(`${where(source)}${source.kind === 'flags' ? '--' : ''}${spelling}: ${reason}`);
  }
}

/** Defaults, then a preset, then a YAML file, then flags (later sources win); not yet resolved. */
export function buildSettings(sources: ConfigSources): TrainSettings {
  let config: TrainConfig = { ...DEFAULTS };
  let presetName = sources.preset ?? null;
  let raw: Raw | null = null;
  const fileSource: SettingSource = { kind: 'file', name: sources.file ?? '' };
  if (sources.file) {
    raw = readConfigFile(sources.file);
    const { preset: filePreset, ...rest } = raw;
    if (filePreset !== undefined && filePreset !== null && typeof filePreset !== 'string') {
      throw new ConfigError(`config file ${sources.file}: preset must be a preset name, got ${show(filePreset)}`);
    }
    if (typeof filePreset === 'string' && presetName === null) presetName = filePreset;
    raw = rest;
  }
  if (presetName !== null) {
    const preset = PRESETS[presetName];
    if (!preset) {
      const near = closestName(presetName, Object.keys(PRESETS));
      throw new ConfigError(`unknown preset '${presetName}'; ${near ? `did you mean '${near}'? ` : ''}presets: ${Object.keys(PRESETS).join(', ')}`);
    }
    config = { ...config, ...preset.values };
  }
  if (raw !== null) {
    checkForbidden(raw, sources.forbid, fileSource);
    config = applyRaw(config, raw, fileSource);
  }
  if (sources.flags) {
    checkForbidden(sources.flags, sources.forbid, { kind: 'flags' });
    config = applyRaw(config, sources.flags, { kind: 'flags' });
  }
  return { ...config, preset: presetName };
}

/** Defaults, then a preset, then a YAML file, then flags: later sources win. */
export function buildConfig(sources: ConfigSources): ResolvedTrainConfig {
  const { preset, ...settings } = buildSettings(sources);
  return resolveConfig(settings, preset);
}

/** The run directory's config.json spelling: snake_case keys (as the report reads them). */
export function toStoredConfig(config: ResolvedTrainConfig): Record<string, unknown> {
  return Object.fromEntries(Object.entries(config).map(([key, value]) => [snake(key), value]));
}

/**
 * Settings whose default changed after runs were stored without them: such a run keeps the
 * behaviour it started with when resumed or reported (loss-form: runs before it existed averaged
 * the two losses for every optimizer).
 */
const DEFAULTS_OF_EARLIER_RUNS: Raw = { lossForm: 'average' };

/**
 * A run's stored config.json, validated by the same schema as flags and YAML (the file may have
 * been edited: a misspelt key or "ema": "false" is an error, never ignored or truthy). It holds
 * every setting plus machine and preset; a setting it lacks (one added after the run started)
 * takes its default. `name` (the file's path) prefixes messages when given.
 */
export function fromStoredConfig(stored: unknown, name: string | null = null): ResolvedTrainConfig {
  const source: SettingSource = { kind: 'stored', name };
  if (typeof stored !== 'object' || stored === null || Array.isArray(stored)) {
    throw new ConfigError(`${where(source)}must be a JSON object of setting: value, got ${Array.isArray(stored) ? 'an array' : show(stored)}`);
  }
  const config: Raw = { ...DEFAULTS, ...DEFAULTS_OF_EARLIER_RUNS };
  let machine: string | null = null;
  let preset: string | null = null;
  for (const [spelling, value] of Object.entries(stored as Raw)) {
    if (spelling === 'machine' || spelling === 'preset') {
      if (typeof value !== 'string' && !(spelling === 'preset' && value === null)) {
        throw new ConfigError(`${where(source)}${spelling} must be ${spelling === 'preset' ? 'a preset name or null' : 'a text'}, got ${show(value)}`);
      }
      if (spelling === 'machine') machine = value as string;
      else preset = value as string | null;
      continue;
    }
    const key = configKey(spelling);
    if (key === undefined) throw unknownSetting(spelling, source);
    config[key] = parseValue(key, spelling, value, source);
  }
  let resolved: ResolvedTrainConfig;
  try {
    resolved = resolveConfig(config as TrainConfig, preset);
  } catch (error) {
    if (error instanceof ConfigError) throw new ConfigError(`${where(source)}${error.message}`);
    throw error;
  }
  // The machine a run started on is part of its record; a resumed run keeps it.
  return machine === null ? resolved : { ...resolved, machine };
}

// ---------------------------------------------------------------------------------------------
// Documentation of the settings (help texts, the README table)

export interface SettingDoc {
  name: SettingName;
  /** The flag, without dashes: batch-size. */
  flag: string;
  group: SettingGroup;
  /** The value's name in usage lines; null for a true/false setting (--hflip / --no-hflip). */
  placeholder: string | null;
  values: string;
  /** The default as written in help texts (environment defaults in words). */
  defaultText: string;
  help: string;
}

function placeholderOf(name: SettingName): string | null {
  const definition = definitionOf(name);
  if (definition.placeholder !== undefined) return definition.placeholder;
  const { schema } = nonNullPart(jsonSchemaOf(name));
  if (schema.type === 'boolean') return null;
  if (schema.type === 'integer') return 'N';
  if (schema.type === 'number') return 'X';
  if (schema.enum) return 'NAME';
  return 'TEXT';
}

/** Every setting, grouped as SETTING_GROUPS orders them, for help texts and the README. */
export function settingDocs(): SettingDoc[] {
  const groups = Object.keys(SETTING_GROUPS) as SettingGroup[];
  return SETTING_NAMES
    .map((name): SettingDoc => {
      const definition = definitionOf(name);
      const value = definition.default;
      return {
        name, flag: kebab(name), group: definition.group, placeholder: placeholderOf(name), values: describeValues(name),
        defaultText: isEnvironmentDefault(value) ? value.describe : String(value), help: definition.help,
      };
    })
    .sort((left, right) => groups.indexOf(left.group) - groups.indexOf(right.group));
}
