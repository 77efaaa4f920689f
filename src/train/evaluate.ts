// Evaluation (timm's `validate`): loss, top-1 and top-5 of a model on a dataset (images or
// tokenized text), in eval mode and without gradients; and the conversion of a text batch to
// tensors on the training device (image batches: device-batch.ts).
import { BatchLoader, NO_AUGMENTATION } from '../data/loader.js';
import type { ImageDataset } from '../data/datasets.js';
import { TextBatchLoader, type TextDataset } from '../data/text/text-dataset.js';
import type { Classifier, ForwardOptions } from '../models/classifier.js';
import { type Criterion, labelLoss } from '../masksub/method.js';
import * as F from '../nn/functional.js';
import { noGrad, type Tensor, tensor, tidy } from '../tensor/tensor.js';
import { deviceBatch } from './device-batch.js';

export interface Evaluation { loss: number; acc1: number; acc5: number }

/** Sums over the samples evaluated (what ranks of a job add up before dividing). */
export interface EvaluationSums { loss: number; correct1: number; correct5: number; count: number }

/** What a model is evaluated on: images, or tokenized texts (a text model's). */
export type EvalData = ImageDataset | TextDataset;

export function isTextData(data: EvalData): data is TextDataset {
  return (data as TextDataset).kind === 'text';
}

/** A text batch as tensors on `device`: the packed int64 [B, 3, L] (ids, token types, attention mask), labels [B]. */
export function textBatchTensors(tokens: Int32Array, labels: Int32Array, dataset: Pick<TextDataset, 'maxLength'>, device: string): { images: Tensor; labels: Tensor } {
  let x = tensor(tokens, { shape: [labels.length, 3, dataset.maxLength] }).long();
  let y = tensor(labels).long();
  if (device !== 'cpu') {
    x = x.to({ device: device as 'cuda' });
    y = y.to({ device: device as 'cuda' });
  }
  return { images: x, labels: y };
}

/**
 * Loss, top-1 and top-5 (percent) of the model (eval mode, no masking unless options say so). The
 * loss is plain cross-entropy, or `criterion` when given: the paper's Eq. 1 / Eq. 2 probes measure
 * the training criterion (BCE for a BCE recipe, with its label smoothing).
 */
export function evaluate(model: Classifier, dataset: EvalData, batchSize: number, device: string, options: ForwardOptions = {}, criterion?: Criterion): Evaluation {
  if (dataset.count === 0) throw new Error(`cannot evaluate on ${dataset.name} ${dataset.split} (${dataset.source}): it holds no images`);
  return finishEvaluation(evaluateSums(model, dataset, batchSize, device, options, criterion));
}

/** Mean loss and top-1 / top-5 percentages from sums. */
export function finishEvaluation(sums: EvaluationSums): Evaluation {
  return { loss: sums.loss / sums.count, acc1: (100 * sums.correct1) / sums.count, acc5: (100 * sums.correct5) / sums.count };
}

/** The batches of an evaluation in order, each a function that makes its tensors (inside the caller's tidy). */
function* evaluationBatches(dataset: EvalData, batchSize: number, device: string): Generator<() => { images: Tensor; labels: Tensor }> {
  if (isTextData(dataset)) {
    for (const batch of new TextBatchLoader(dataset, { batchSize }).batchesSync(0)) yield () => textBatchTensors(batch.tokens, batch.labels, dataset, device);
    return;
  }
  for (const batch of new BatchLoader(dataset, { batchSize, augment: NO_AUGMENTATION }).batchesSync(0)) yield () => deviceBatch(batch, dataset, device);
}

/** evaluate()'s sums (zeros for an empty dataset, e.g. a rank's empty shard of a tiny test set). */
export function evaluateSums(model: Classifier, dataset: EvalData, batchSize: number, device: string, options: ForwardOptions = {}, criterion?: Criterion): EvaluationSums {
  if (dataset.count === 0) return { loss: 0, correct1: 0, correct5: 0, count: 0 };
  const wasTraining = model.training;
  model.eval();
  let loss = 0;
  let correct1 = 0;
  let correct5 = 0;
  try {
    noGrad(() => {
      for (const batch of evaluationBatches(dataset, batchSize, device)) {
        tidy(() => {
          const { images, labels } = batch();
          const logits = model.forward(images, options);
          loss += criterion ? labelLoss(logits, labels, criterion).item() * labels.size(0) : F.crossEntropy(logits, labels, { reduction: 'sum' }).item();
          const hits = logits.topk(Math.min(5, logits.size(1)), 1)[1].eq(labels.unsqueeze(1));
          correct1 += hits.slice(1, 0, 1).sum().item();
          correct5 += hits.sum().item();
        });
      }
    });
  } finally {
    model.train(wasTraining);
  }
  return { loss, correct1, correct5, count: dataset.count };
}
