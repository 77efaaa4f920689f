// Batch Mixup / CutMix with timm's semantics (timm.data.mixup.Mixup, mode 'batch').
//
// One lambda per batch. With probability `prob` mixing happens; when both alphas are positive,
// CutMix is chosen with probability `switchProb`, else the one enabled method is used. Lambda is
// drawn from Beta(alpha, alpha). Sample i is mixed with sample B-1-i (the flipped batch). Mixup
// blends whole images: x = lam * x + (1 - lam) * flip(x). CutMix pastes a box from the flipped
// batch (rand_bbox: cut side = side * sqrt(1 - lam), centre uniform over the image, clipped) and
// corrects lam to 1 - box area / image area. Targets are
// lam * smooth(onehot(y)) + (1 - lam) * smooth(onehot(flip(y))), smoothing off = ls/K, on = 1 - ls + off.
//
// The loader draws the decision (drawMix: lambda, CutMix or not, the box) and the soft targets for
// each batch; the pixels are mixed on the training device after normalization (mixDevice in
// src/train/device-batch.ts). mixBatch / applyMix do the same on Float32Arrays in JavaScript, with
// the same float32 roundings as the tensor ops (and timm's), and serve as its reference.

import { Random, sampleBeta } from './random.js';

export interface MixupOptions {
  mixupAlpha: number;
  cutmixAlpha: number;
  /** Probability of CutMix instead of Mixup when both are enabled (timm default 0.5). */
  switchProb?: number;
  /** Probability of mixing a batch at all (timm default 1.0). */
  prob?: number;
  labelSmoothing: number;
  numClasses: number;
  /** Correct lam by the clipped box area (timm default true). */
  correctLam?: boolean;
}

/** The CutMix box: rows top..bottom-1, columns left..right-1 (may be empty after clipping). */
export interface CutmixBox {
  top: number;
  bottom: number;
  left: number;
  right: number;
}

/** What mixing a batch does, drawn before its pixels are touched. */
export interface MixDecision {
  /** The weight of the original sample in the mix (1 when nothing was mixed; CutMix: corrected by the box's area). */
  lambda: number;
  /** CutMix (paste `box` from the flipped batch) rather than Mixup (blend with it); false when lambda is 1. */
  useCutmix: boolean;
  box: CutmixBox | null;
}

export interface MixupResult extends MixDecision {
  /** [batch * numClasses] soft targets; every row sums to 1. */
  softTargets: Float32Array;
}

/** Checks mixup options; the error names the bad field. */
export function validateMixupOptions(options: MixupOptions, label = 'mixup'): void {
  const check = (ok: boolean, field: string, requirement: string, value: unknown): void => {
    if (!ok) throw new Error(`${label}: ${field} must be ${requirement}, got ${String(value)}`);
  };
  check(options.mixupAlpha >= 0 && Number.isFinite(options.mixupAlpha), 'mixupAlpha', 'a finite number >= 0', options.mixupAlpha);
  check(options.cutmixAlpha >= 0 && Number.isFinite(options.cutmixAlpha), 'cutmixAlpha', 'a finite number >= 0', options.cutmixAlpha);
  const switchProb = options.switchProb ?? 0.5;
  check(switchProb >= 0 && switchProb <= 1, 'switchProb', 'a probability in [0, 1]', switchProb);
  const prob = options.prob ?? 1;
  check(prob >= 0 && prob <= 1, 'prob', 'a probability in [0, 1]', prob);
  check(options.labelSmoothing >= 0 && options.labelSmoothing < 1, 'labelSmoothing', 'in [0, 1)', options.labelSmoothing);
  check(Number.isInteger(options.numClasses) && options.numClasses >= 1, 'numClasses', 'a positive integer', options.numClasses);
}

/**
 * timm's rand_bbox: cut size int(side * sqrt(1 - lam)), centre uniform in [0, side), box
 * centre +- cut // 2 clipped to the image. Draws the row centre, then the column centre.
 */
export function randomBox(height: number, width: number, lambda: number, random: Random): CutmixBox {
  const ratio = Math.sqrt(1 - lambda);
  const cutHeight = Math.trunc(height * ratio);
  const cutWidth = Math.trunc(width * ratio);
  const centreRow = random.int(height);
  const centreColumn = random.int(width);
  const clip = (value: number, limit: number): number => Math.min(Math.max(value, 0), limit);
  const halfHeight = Math.floor(cutHeight / 2);
  const halfWidth = Math.floor(cutWidth / 2);
  return {
    top: clip(centreRow - halfHeight, height),
    bottom: clip(centreRow + halfHeight, height),
    left: clip(centreColumn - halfWidth, width),
    right: clip(centreColumn + halfWidth, width),
  };
}

/**
 * Soft targets lam * smooth(onehot(labels)) + (1 - lam) * smooth(onehot(flip(labels))).
 * With lam = 1 this is plain label smoothing. Labels must be in [0, numClasses).
 */
export function mixTargets(labels: Int32Array, numClasses: number, smoothing: number, lambda = 1): Float32Array {
  const batch = labels.length;
  const off = smoothing / numClasses;
  const on = 1 - smoothing + off;
  const targets = new Float32Array(batch * numClasses);
  for (let sample = 0; sample < batch; sample++) {
    const own = labels[sample]!;
    const partner = labels[batch - 1 - sample]!;
    if (!(own >= 0 && own < numClasses) || !(partner >= 0 && partner < numClasses)) {
      const bad = own >= 0 && own < numClasses ? partner : own;
      throw new Error(`mixup: label ${bad} is out of range 0..${numClasses - 1}`);
    }
    const row = sample * numClasses;
    // Each entry is the same weighted sum timm computes: lam * y1 + (1 - lam) * y2, in doubles.
    for (let k = 0; k < numClasses; k++) {
      const first = k === own ? on : off;
      const second = k === partner ? on : off;
      targets[row + k] = first * lambda + second * (1 - lambda);
    }
  }
  return targets;
}

/**
 * timm's batch-mode decision: with probability `prob` a batch is mixed; CutMix or Mixup (by
 * `switchProb` when both are on), lambda ~ Beta(alpha, alpha), and for CutMix the box, with lambda
 * corrected to 1 - box area / image area. `random` drives every draw, in timm's order.
 */
export function drawMix(height: number, width: number, options: MixupOptions, random: Random): MixDecision {
  const switchProb = options.switchProb ?? 0.5;
  const prob = options.prob ?? 1;
  const correctLam = options.correctLam ?? true;
  let lambda = 1;
  let useCutmix = false;
  const enabled = options.mixupAlpha > 0 || options.cutmixAlpha > 0;
  if (enabled && random.next() < prob) {
    if (options.mixupAlpha > 0 && options.cutmixAlpha > 0) {
      useCutmix = random.next() < switchProb;
      const alpha = useCutmix ? options.cutmixAlpha : options.mixupAlpha;
      lambda = sampleBeta(random, alpha, alpha);
    } else if (options.mixupAlpha > 0) {
      lambda = sampleBeta(random, options.mixupAlpha, options.mixupAlpha);
    } else {
      useCutmix = true;
      lambda = sampleBeta(random, options.cutmixAlpha, options.cutmixAlpha);
    }
  }
  if (lambda === 1) return { lambda, useCutmix: false, box: null };
  if (!useCutmix) return { lambda, useCutmix, box: null };
  const box = randomBox(height, width, lambda, random);
  if (correctLam) {
    const boxArea = (box.bottom - box.top) * (box.right - box.left);
    lambda = 1 - boxArea / (height * width);
  }
  return { lambda, useCutmix, box };
}

/** Applies a decision to a batch of channel-first float images in place (the JavaScript twin of the device's mixing). */
export function applyMix(images: Float32Array, batch: number, channels: number, height: number, width: number, decision: MixDecision): void {
  const sampleSize = channels * height * width;
  if (images.length !== batch * sampleSize) {
    throw new Error(
      `mixup: images hold ${images.length} values, expected ${batch} x ${channels}x${height}x${width} = ${batch * sampleSize}`,
    );
  }
  if (decision.lambda === 1) return;
  if (decision.useCutmix) {
    if (decision.box !== null) pasteFlippedBox(images, batch, channels, height, width, decision.box);
  } else {
    blendWithFlipped(images, batch, sampleSize, decision.lambda);
  }
}

/**
 * Mixes a batch of channel-first images in place (timm batch mode) and returns the soft targets.
 * `random` drives every decision, so the same generator state gives the same batch.
 */
export function mixBatch(
  images: Float32Array,
  labels: Int32Array,
  channels: number,
  height: number,
  width: number,
  options: MixupOptions,
  random: Random,
): MixupResult {
  const batch = labels.length;
  const sampleSize = channels * height * width;
  if (images.length !== batch * sampleSize) {
    throw new Error(
      `mixup: images hold ${images.length} values, expected ${batch} x ${channels}x${height}x${width} = ${batch * sampleSize}`,
    );
  }
  const decision = drawMix(height, width, options, random);
  applyMix(images, batch, channels, height, width, decision);
  return { ...decision, softTargets: mixTargets(labels, options.numClasses, options.labelSmoothing, decision.lambda) };
}

/** x[i] = lam * x[i] + (1 - lam) * x[B-1-i] for all i, computed from the unmixed values. */
function blendWithFlipped(images: Float32Array, batch: number, sampleSize: number, lambda: number): void {
  // The tensor ops (timm's x.mul_(lam).add_(x.flip(0).mul_(1 - lam))) take the two weights as
  // float32 scalars; so do we, so that both give the same bytes.
  const weight = Math.fround(lambda);
  const complement = Math.fround(1 - lambda);
  // Pairs (i, B-1-i) are updated together so no sample is read after it was overwritten.
  for (let first = 0; first < Math.ceil(batch / 2); first++) {
    const second = batch - 1 - first;
    const firstStart = first * sampleSize;
    const secondStart = second * sampleSize;
    for (let offset = 0; offset < sampleSize; offset++) {
      const firstValue = images[firstStart + offset]!;
      const secondValue = images[secondStart + offset]!;
      // Rounding each product to float32 follows the two float32 tensor ops timm uses (mul_, add_).
      images[firstStart + offset] = Math.fround(Math.fround(firstValue * weight) + Math.fround(secondValue * complement));
      if (second !== first) {
        images[secondStart + offset] = Math.fround(Math.fround(secondValue * weight) + Math.fround(firstValue * complement));
      }
    }
  }
}

/** x[i][:, box] = x[B-1-i][:, box] for all i (swaps the box between the two samples of each pair). */
function pasteFlippedBox(
  images: Float32Array,
  batch: number,
  channels: number,
  height: number,
  width: number,
  box: CutmixBox,
): void {
  const plane = height * width;
  const sampleSize = channels * plane;
  for (let first = 0; first < Math.floor(batch / 2); first++) {
    const second = batch - 1 - first;
    for (let channel = 0; channel < channels; channel++) {
      for (let row = box.top; row < box.bottom; row++) {
        const rowStart = channel * plane + row * width;
        for (let column = box.left; column < box.right; column++) {
          const firstIndex = first * sampleSize + rowStart + column;
          const secondIndex = second * sampleSize + rowStart + column;
          const held = images[firstIndex]!;
          images[firstIndex] = images[secondIndex]!;
          images[secondIndex] = held;
        }
      }
    }
  }
}

/** Convenience: a generator-owning mixer for callers that do not manage their own streams. */
export class Mixup {
  private readonly random: Random;

  constructor(
    readonly options: MixupOptions,
    seed = 0,
  ) {
    validateMixupOptions(options);
    this.random = new Random(seed);
  }

  apply(images: Float32Array, labels: Int32Array, channels: number, height: number, width: number): MixupResult {
    return mixBatch(images, labels, channels, height, width, this.options, this.random);
  }
}
