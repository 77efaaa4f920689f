// CLIP runs in the trainer (a clip_* model): image-caption pairs from the image data sets
// (src/data/captions.ts), the captions' tokenizer (the run's tokenizer.json, as text runs), the
// step (masksub/clip.ts: the contrastive loss, and for --method masksub the sub-model on masked
// images matching the main model's similarity softmax), and the per-epoch evaluation: zero-shot
// top-1 / top-5 on the test split from class-name prompts, the contrastive loss on test batches,
// and image->text / text->image recall@1/5/10 on the test pairs.
//
// The loader is the images' BatchLoader unchanged (order, augmentation, shards, workers, exact
// resume): it runs over the training images with each image's index as its label, so a batch
// says which images it holds and their captions are drawn for (seed, epoch, index).
import type { ImageDataset } from '../data/datasets.js';
import { BatchLoader, NO_AUGMENTATION } from '../data/loader.js';
import { type CaptionSource, captionSource } from '../data/captions.js';
import { chooseTokenizer } from '../data/text/load.js';
import type { TextTokenizer } from '../data/text/tokenizer.js';
import { type Clip, createClip, describeClipModel } from '../models/clip.js';
import { clipContrastiveLoss, clipLogits, clipStep, type ClipStepResult, retrievalRecall, zeroShotWeights } from '../masksub/clip.js';
import { cat, type Generator, keep, noGrad, type Tensor, tensor, tidy } from '../tensor/tensor.js';
import type { ResolvedTrainConfig } from './config.js';
import { deviceBatch } from './device-batch.js';

/** Retrieval is ranked among at most this many test pairs (open_clip ranks the whole set; 1,000 keeps the N x N sort small on a CPU). */
export const RECALL_PAIRS = 1000;
/** The k of recall@k, as open_clip's get_clip_metrics. */
export const RECALL_KS: readonly number[] = [1, 5, 10];

/** Captions as the text tower takes them: ids [count, contextLength] row-major, 0-padded, and each row's EOT position. */
export interface EncodedCaptions {
  count: number;
  contextLength: number;
  ids: Int32Array;
  /** The position of each caption's last token ([SEP], the end of text), which the text tower pools. */
  eot: Int32Array;
}

/** Everything a CLIP run reads besides the images. */
export interface ClipData {
  source: CaptionSource;
  tokenizer: TextTokenizer;
  /** The tokenizer file, the run's saved one, or 'trained'. */
  tokenizerSource: string;
  contextLength: number;
  testCaptions: EncodedCaptions;
  /** Every class's prompts, class-major (classes x templates rows). */
  prompts: EncodedCaptions;
  /** Test captions that filled the context (cut, or exactly as long). */
  truncated: number;
  /** Training captions already encoded (the class templates repeat; emoji keyword subsets do too). */
  cache: Map<string, { ids: number[]; eot: number }>;
}

/**
 * Texts through the run's tokenizer: [CLS] text [SEP], cut to contextLength keeping [SEP] last, 0-padded
 * ([PAD] is id 0 in a trained vocabulary); the EOT is the [SEP].
 */
export async function encodeCaptions(tokenizer: TextTokenizer, texts: readonly string[], contextLength: number): Promise<EncodedCaptions> {
  const ids = new Int32Array(texts.length * contextLength);
  const eot = new Int32Array(texts.length);
  const chunk = 2048;
  for (let start = 0; start < texts.length; start += chunk) {
    const encoded = await tokenizer.encodeBatch(texts.slice(start, start + chunk), { maxLength: contextLength });
    ids.set(encoded.ids, start * contextLength);
    for (let row = 0; row < encoded.count; row++) {
      let length = 0;
      for (let position = 0; position < contextLength; position++) length += encoded.attentionMask[row * contextLength + position]!;
      eot[start + row] = length - 1;
    }
  }
  return { count: texts.length, contextLength, ids, eot };
}

/**
 * The captions, tokenizer and prompts of a CLIP run over `train` and `test` (their class labels;
 * emoji data also its entries). `saved`: the run's tokenizer.json for resume and eval.
 */
export async function loadClipData(config: ResolvedTrainConfig, train: ImageDataset, test: ImageDataset, saved: string | null): Promise<ClipData> {
  const source = captionSource(train, test, config.seed);
  const { tokenizer, source: tokenizerSource } = chooseTokenizer({ tokenizer: config.tokenizer, saved, vocabSize: config.vocabSize }, () => source.tokenizerTexts());
  const contextLength = describeClipModel(config.model).text.contextLength;
  const testTexts = Array.from({ length: test.count }, (_, index) => source.testCaption(index));
  const testCaptions = await encodeCaptions(tokenizer, testTexts, contextLength);
  const prompts = await encodeCaptions(tokenizer, source.classNames.flatMap((name) => source.prompts.map((template) => template.replaceAll('{}', name))), contextLength);
  let truncated = 0;
  for (let row = 0; row < testCaptions.count; row++) if (testCaptions.eot[row] === contextLength - 1) truncated++;
  return { source, tokenizer, tokenizerSource, contextLength, testCaptions, prompts, truncated, cache: new Map() };
}

/** The training images with each image's index as its label (the loader then reports which images a batch holds). */
export function pairDataset(train: ImageDataset): ImageDataset {
  return { ...train, labels: Int32Array.from({ length: train.count }, (_, index) => index), numClasses: train.count };
}

/** The captions of training images `indices` at `epoch` (0-based), encoded (through the cache). */
export async function trainingCaptions(data: ClipData, indices: ArrayLike<number>, epoch: number): Promise<EncodedCaptions> {
  const texts = Array.from(indices, (index) => data.source.trainCaption(index, epoch));
  const missing = [...new Set(texts.filter((text) => !data.cache.has(text)))];
  if (missing.length > 0) {
    const encoded = await encodeCaptions(data.tokenizer, missing, data.contextLength);
    missing.forEach((text, row) => data.cache.set(text, { ids: Array.from(encoded.ids.subarray(row * data.contextLength, (row + 1) * data.contextLength)), eot: encoded.eot[row]! }));
  }
  const ids = new Int32Array(texts.length * data.contextLength);
  const eot = new Int32Array(texts.length);
  texts.forEach((text, row) => {
    const entry = data.cache.get(text)!;
    ids.set(entry.ids, row * data.contextLength);
    eot[row] = entry.eot;
  });
  return { count: texts.length, contextLength: data.contextLength, ids, eot };
}

/** Rows [start, end) of encoded captions as int64 tensors on `device`. */
export function captionTensors(captions: EncodedCaptions, device: string, start = 0, end = captions.count): { ids: Tensor; eot: Tensor } {
  const { contextLength } = captions;
  let ids = tensor(captions.ids.subarray(start * contextLength, end * contextLength), { shape: [end - start, contextLength] }).long();
  let eot = tensor(captions.eot.subarray(start, end)).long();
  if (device !== 'cpu') {
    ids = ids.to({ device: device as 'cuda' });
    eot = eot.to({ device: device as 'cuda' });
  }
  return { ids, eot };
}

/** The run's CLIP: the named config with the tokenizer's vocabulary and the data's image size and channels. */
export function buildClip(config: ResolvedTrainConfig, train: ImageDataset, data: ClipData): Clip {
  return createClip(config.model, { vocabSize: data.tokenizer.vocabSize, imageSize: train.height, inChannels: train.channels, dropPathRate: config.dropPath });
}

/** One training micro-batch of CLIP: the contrastive loss, and the masked-image sub-model for masksub. */
export function clipTrainStep(model: Clip, images: Tensor, captions: { ids: Tensor; eot: Tensor }, config: ResolvedTrainConfig): ClipStepResult {
  return clipStep(model, images, captions.ids, {
    method: config.method === 'masksub' ? 'masksub' : 'baseline', maskRatio: config.ratio, subWeight: config.subWeight,
    lossScale: config.accumulation, eotIndices: captions.eot,
  });
}

/** What a CLIP evaluation measures (percentages as the classifiers' accuracy). */
export interface ClipEvaluation {
  /** The contrastive loss on batches of `batchSize` consecutive test pairs. */
  loss: number;
  /** Zero-shot top-1 / top-5 (percent) from the class-name prompts. */
  acc1: number;
  acc5: number;
  /** recall@k (percent) image->text and text->image among the first `recallPairs` test pairs. */
  imageToText: Record<number, number>;
  textToImage: Record<number, number>;
  recallPairs: number;
  /** exp(logit_scale). */
  logitScale: number;
}

/**
 * Zero-shot classification, the test loss and retrieval recall of a CLIP on the test images and
 * their captions (eval mode, no gradients). Batches of `batchSize` make the loss comparable with
 * training's (a contrastive loss grows with the batch).
 */
export function evaluateClip(model: Clip, test: ImageDataset, data: ClipData, batchSize: number, device: string): ClipEvaluation {
  if (test.count === 0) throw new Error(`cannot evaluate on ${test.name} ${test.split}: it holds no images`);
  const wasTraining = model.training;
  model.eval();
  const recallPairs = Math.min(RECALL_PAIRS, test.count);
  const kept: { images: Tensor[]; texts: Tensor[] } = { images: [], texts: [] };
  let lossSum = 0;
  let lossWeight = 0;
  let correct1 = 0;
  let correct5 = 0;
  try {
    return noGrad(() => {
      const classifier = keep(tidy(() => {
        const prompts = captionTensors(data.prompts, device);
        return zeroShotWeights(model.encodeText(prompts.ids, { eotIndices: prompts.eot, normalize: true }), data.source.classNames.length);
      }));
      try {
        let start = 0;
        for (const batch of new BatchLoader(test, { batchSize, augment: NO_AUGMENTATION }).batchesSync(0)) {
          tidy(() => {
            const { images, labels } = deviceBatch(batch, test, device);
            const end = start + batch.size;
            const captions = captionTensors(data.testCaptions, device, start, end);
            const imageFeatures = model.encodeImage(images, {}, true);
            const textFeatures = model.encodeText(captions.ids, { eotIndices: captions.eot, normalize: true });
            // A last batch of one pair has no negatives; its loss is 0 and is left out.
            if (batch.size > 1) {
              lossSum += clipContrastiveLoss(clipLogits(imageFeatures, textFeatures, model.scale())).item() * batch.size;
              lossWeight += batch.size;
            }
            const hits = imageFeatures.matmul(classifier.t()).topk(Math.min(5, classifier.size(0)), 1)[1].eq(labels.unsqueeze(1));
            correct1 += hits.slice(1, 0, 1).sum().item();
            correct5 += hits.sum().item();
            if (start < recallPairs) {
              const take = Math.min(end, recallPairs) - start;
              kept.images.push(keep(imageFeatures.slice(0, 0, take)));
              kept.texts.push(keep(textFeatures.slice(0, 0, take)));
            }
            start = end;
          });
        }
      } finally {
        classifier.dispose();
      }
      const recall = tidy(() => retrievalRecall(cat(kept.images, 0), cat(kept.texts, 0), RECALL_KS));
      const percent = (values: Record<number, number>): Record<number, number> => Object.fromEntries(Object.entries(values).map(([k, value]) => [k, 100 * value]));
      return {
        loss: lossWeight > 0 ? lossSum / lossWeight : 0, acc1: (100 * correct1) / test.count, acc5: (100 * correct5) / test.count,
        imageToText: percent(recall.imageToText), textToImage: percent(recall.textToImage), recallPairs, logitScale: tidy(() => model.scale().item()),
      };
    });
  } finally {
    for (const feature of [...kept.images, ...kept.texts]) feature.dispose();
    model.train(wasTraining);
  }
}

/**
 * The paper's Eq. 1 / Eq. 2 probes for CLIP: the contrastive loss on the fixed probe pairs (one
 * batch of up to 256), with the images whole or masked by `options` (a fixed generator).
 */
export function clipProbeLoss(model: Clip, probe: ImageDataset, captions: EncodedCaptions, device: string, options: { maskRatio?: number; generator?: Generator } = {}): number {
  const wasTraining = model.training;
  model.eval();
  try {
    return noGrad(() => {
      let sum = 0;
      let weight = 0;
      let start = 0;
      for (const batch of new BatchLoader(probe, { batchSize: 256, augment: NO_AUGMENTATION }).batchesSync(0)) {
        tidy(() => {
          const { images } = deviceBatch(batch, probe, device);
          const text = captionTensors(captions, device, start, start + batch.size);
          if (batch.size > 1) {
            const imageFeatures = model.encodeImage(images, options, true);
            const textFeatures = model.encodeText(text.ids, { eotIndices: text.eot, normalize: true });
            sum += clipContrastiveLoss(clipLogits(imageFeatures, textFeatures, model.scale())).item() * batch.size;
            weight += batch.size;
          }
          start += batch.size;
        });
      }
      return weight > 0 ? sum / weight : 0;
    });
  } finally {
    model.train(wasTraining);
  }
}
