// CLIP's losses and MaskSub for CLIP pretraining (paper Sec. 4.6 and B): the symmetric contrastive
// loss over the N x N similarity matrix, and a two-branch step in which the sub-model sees the
// images 50% masked (the ViT drops its own tokens; texts are never masked) and learns to mimic the
// main model's similarity matrix of the same batch: soft-target cross entropy against the main
// logits' detached softmax, image->text and text->image, weighted (1 - w) L1 + w L2 with w = 1/2.
// Also zero-shot classification from class-name prompts and recall@k for image<->text retrieval.
import { arange, type Device, type Generator, keep, noGrad, type Tensor, tidy } from '../tensor/tensor.js';
import * as F from '../nn/functional.js';
import type { Parameter } from '../nn/module.js';
import { type Clip, l2Normalize, packTokenIds } from '../models/clip.js';
import { gradientNorm, gradients, setSummedGradients } from './method.js';

/** The two views of one similarity matrix: rows per image and rows per text (its transpose). */
export interface ClipLogits {
  perImage: Tensor;
  perText: Tensor;
}

/**
 * scale * image @ text^T and its transpose (open_clip's get_logits). The transpose is the same
 * numbers as open_clip's separate text @ image^T product, and the same gradient.
 */
export function clipLogits(imageFeatures: Tensor, textFeatures: Tensor, scale: Tensor): ClipLogits {
  return tidy(() => {
    const perImage = imageFeatures.matmul(textFeatures.t()).mul(scale);
    return { perImage, perText: perImage.t() };
  });
}

/** open_clip's ClipLoss: (CE(per image, arange N) + CE(per text, arange N)) / 2, pair i of the batch matching. */
export function clipContrastiveLoss(logits: ClipLogits): Tensor {
  return tidy(() => {
    const count = logits.perImage.size(0);
    const targets = arange(count, undefined, 1, { dtype: 'int64', device: logits.perImage.device as Device });
    return F.crossEntropy(logits.perImage, targets).add(F.crossEntropy(logits.perText, targets)).div(2);
  });
}

/**
 * The MaskSub target for CLIP: the sub-model's similarity logits against the main model's detached
 * softmax, in both directions: (CE(sub per image, softmax(main per image)) + CE(sub per text,
 * softmax(main per text))) / 2. The main logits are detached here, whatever the caller passes.
 */
export function clipSubLoss(sub: ClipLogits, main: ClipLogits): Tensor {
  return tidy(() => {
    const imageTarget = main.perImage.detach().softmax(-1);
    const textTarget = main.perText.detach().softmax(-1);
    return F.crossEntropy(sub.perImage, imageTarget).add(F.crossEntropy(sub.perText, textTarget)).div(2);
  });
}

export interface ClipStepConfig {
  /** 'masksub' (main + sub branch) or 'baseline' (the contrastive loss alone). */
  method: 'baseline' | 'masksub';
  /** Fraction of the image tokens the sub-model's image tower drops (paper: 0.5). */
  maskRatio: number;
  /** w; the main loss weight is 1 - w (paper: 1/2 each). */
  subWeight: number;
  /** Divides both losses (gradient accumulation over this many micro-batches). Default 1. */
  lossScale?: number;
  /** The masks' random numbers (fixed probe sets, tests); the global generator otherwise. */
  generator?: Generator;
  /**
   * false (default): the sub loss also trains the text tower and logit_scale through the shared
   * text embeddings, as a single open_clip graph with the masked image branch added would (the
   * sub-model is the whole CLIP with masked images; only the target is detached). true: the text
   * embeddings enter the sub similarity detached, so the sub loss trains the image tower and
   * logit_scale only (an ablation).
   */
  detachSubText?: boolean;
  /** [N] (int64) positions of each caption's EOT token (a BERT-style tokenizer's [SEP]); absent: the highest id's, as OpenAI's. */
  eotIndices?: Tensor;
}

export interface ClipStepResult {
  /** (1 - w) L1 + w L2 (or L1 alone), before any accumulation scaling. */
  loss: number;
  lossMain: number;
  lossSub: number | null;
  gradNormMain: number;
  gradNormSub: number | null;
  /** exp(logit_scale) as this step used it. */
  logitScale: number;
  finite: boolean;
}

/**
 * One MaskSub step of CLIP on a batch of N image-caption pairs; gradients are added to what .grad
 * holds, the optimizer step (and clampLogitScale after it) is the caller's.
 *
 * The text tower runs once: its embeddings T are cut from their graph into a leaf T' that both
 * image branches use, so the sub similarity is built from the SAME text embeddings as the main
 * one. Each branch backpropagates into the image tower, logit_scale and T'; T'.grad is then pushed
 * through the text graph (kept after the main branch, freed by the sub's). So the image graphs are
 * alive one at a time, as in methodStep (main backward before the sub forward), the text tower
 * costs one forward per step rather than two, and the gradients are exactly those of one graph
 * holding (1 - w) L1 + w L2. Each branch's gradient is measured before the two are summed.
 */
export function clipStep(model: Clip, images: Tensor, ids: Tensor, config: ClipStepConfig): ClipStepResult {
  const withSub = config.method === 'masksub';
  if (!['baseline', 'masksub'].includes(config.method)) throw new Error(`clipStep: method must be 'baseline' or 'masksub', got '${String(config.method)}'`);
  if (withSub && !(config.maskRatio > 0 && config.maskRatio < 1)) throw new RangeError(`clipStep: mask ratio must be in (0, 1), got ${config.maskRatio}`);
  if (withSub && !(config.subWeight >= 0 && config.subWeight <= 1)) throw new RangeError(`clipStep: sub weight must be in [0, 1], got ${config.subWeight}`);
  if (images.size(0) !== ids.size(0)) throw new Error(`clipStep: ${images.size(0)} images but ${ids.size(0)} captions`);
  const scale = 1 / (config.lossScale ?? 1);
  const subWeight = withSub ? config.subWeight : 0;
  const mainWeight = 1 - subWeight;
  const textThroughSub = withSub && !config.detachSubText;

  const parameters = model.parameters();
  const previous = gradients(parameters);
  for (const parameter of parameters) parameter.zeroGrad();

  // The text graph lives until the last branch that needs it has pushed its gradient through.
  const text = keep(model.encodeText(ids, { normalize: true, eotIndices: config.eotIndices }));
  const textLeaf = keep(text.detach().requiresGrad_(true));
  let mainGrads: (Tensor | null)[] = [];
  let subGrads: (Tensor | null)[] = [];
  let teacher: ClipLogits | null = null;
  try {
    const main = tidy(() => {
      const logitScale = model.scale();
      const logits = clipLogits(model.encodeImage(images, {}, true), textLeaf, logitScale);
      const loss = clipContrastiveLoss(logits);
      loss.mul(mainWeight * scale).backward();
      text.backward(textLeaf.grad as Tensor, textThroughSub);
      return { value: loss.item(), logitScale: logitScale.item(), teacher: { perImage: logits.perImage.detach(), perText: logits.perText.detach() } };
    });
    teacher = main.teacher;
    textLeaf.zeroGrad();
    mainGrads = gradients(parameters);
    const gradNormMain = gradientNorm(mainGrads) / scale;

    let lossSub: number | null = null;
    let gradNormSub: number | null = null;
    if (withSub) {
      for (const parameter of parameters) parameter.zeroGrad();
      const mainTeacher = teacher;
      lossSub = tidy(() => {
        const textFeatures = textThroughSub ? textLeaf : textLeaf.detach();
        const masked = model.encodeImage(images, { maskRatio: config.maskRatio, generator: config.generator }, true);
        const loss = clipSubLoss(clipLogits(masked, textFeatures, model.scale()), mainTeacher);
        loss.mul(subWeight * scale).backward();
        if (textThroughSub) text.backward(textLeaf.grad as Tensor);
        return loss.item();
      });
      subGrads = gradients(parameters);
      gradNormSub = gradientNorm(subGrads) / scale;
    }

    setSummedGradients(parameters, [previous, mainGrads, subGrads]);
    const loss = withSub ? mainWeight * main.value + subWeight * (lossSub as number) : main.value;
    return { loss, lossMain: main.value, lossSub, gradNormMain, gradNormSub, logitScale: main.logitScale, finite: Number.isFinite(loss) };
  } finally {
    for (const list of [previous, mainGrads, subGrads]) for (const g of list) g?.dispose();
    teacher?.perImage.dispose();
    teacher?.perText.dispose();
    textLeaf.dispose();
    text.dispose();
  }
}

// ---- zero-shot classification and retrieval ----

/** OpenAI's simplest prompt; open_clip's templates put the class name into each the same way. */
export const DEFAULT_TEMPLATES: readonly string[] = ['a photo of a {}.'];

/**
 * The zero-shot classifier: per class, the unit text embeddings of its prompts (each template
 * with the class name in place of {}) averaged and renormalised, as open_clip's
 * build_zero_shot_classifier. tokenize maps a prompt to ids ending in the EOT id (the highest id).
 * Returns [classes, embedDim] unit rows.
 */
export function zeroShotClassifier(model: Clip, classNames: readonly string[], tokenize: (text: string) => number[], eotId: number, templates: readonly string[] = DEFAULT_TEMPLATES): Tensor {
  return noGrad(() => tidy(() => {
    const prompts = classNames.flatMap((name) => templates.map((template) => tokenize(template.replaceAll('{}', name))));
    const ids = packTokenIds(prompts, model.config.text.contextLength, eotId).to({ device: model.logitScale.device as Device });
    return zeroShotWeights(model.encodeText(ids, { normalize: true }), classNames.length);
  }));
}

/**
 * The zero-shot classifier from the unit text embeddings of every prompt, [classes x templates,
 * D] class-major: each class's rows averaged and renormalised. Returns [classes, D] unit rows.
 */
export function zeroShotWeights(promptFeatures: Tensor, classes: number): Tensor {
  return tidy(() => {
    const [rows, width] = promptFeatures.shape;
    if (rows % classes !== 0) throw new Error(`zeroShotWeights: ${rows} prompt embeddings do not divide among ${classes} classes`);
    return l2Normalize(promptFeatures.reshape(classes, rows / classes, width).mean(1));
  });
}

/** Zero-shot predictions: the class whose prompt embedding has the highest cosine similarity to each image's. */
export function zeroShotPredict(model: Clip, images: Tensor, classifier: Tensor): Tensor {
  return noGrad(() => tidy(() => model.encodeImage(images, {}, true).matmul(classifier.t()).argmax(-1)));
}

/** Recall@k of paired retrieval both ways (open_clip's get_clip_metrics): image i's caption is text i. */
export interface RetrievalRecall {
  imageToText: Record<number, number>;
  textToImage: Record<number, number>;
}

/**
 * For unit image and text embeddings of N pairs: the fraction of images whose own caption ranks
 * within the k most similar texts, and of captions whose own image ranks within the k most
 * similar images. The rank is the matching candidate's position in argsort(descending), as
 * open_clip's, so a tie is ordered by the sort rather than counted in the pair's favour.
 */
export function retrievalRecall(imageFeatures: Tensor, textFeatures: Tensor, ks: readonly number[] = [1, 5, 10]): RetrievalRecall {
  return noGrad(() => tidy(() => {
    const similarity = imageFeatures.matmul(textFeatures.t());
    const count = similarity.size(0);
    const truth = arange(count, undefined, 1, { dtype: 'int64', device: similarity.device as Device }).reshape(count, 1);
    const recall = (logits: Tensor): Record<number, number> => {
      // The rank of the matching column: its position in the descending order of the row.
      const ranking = logits.argsort(-1, true);
      const rank = ranking.eq(truth).to({ dtype: 'int64' }).argmax(-1);
      const result: Record<number, number> = {};
      for (const k of ks) result[k] = rank.lt(k).to({ dtype: 'float64' }).mean().item();
      return result;
    };
    return { imageToText: recall(similarity), textToImage: recall(similarity.t()) };
  }));
}
