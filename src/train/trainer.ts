// The training loop: data -> method step (main + sub branch) -> clip -> optimizer -> EMA, with
// per-epoch evaluation, the paper's Eq. 1 / Eq. 2 probe losses, metrics, atomic checkpoints and
// exact resume. `train()` reads top to bottom in one sitting (nanoGPT's loop, timm's
// train_one_epoch / validate split); the run directory's files belong to src/run.
// Data parallel (a `world` from torchrun's environment or `train --nproc`): every rank runs this
// same loop on its shard of each global batch; gradients are averaged over ranks before the
// optimizer step (c10d Gloo, src/distributed), rank 0 alone touches the run directory, and the
// per-sample noise (masks, drop-path) is the global batch's, so W ranks train the same model as
// one process with the same global batch (test/distributed.test.ts).
// Text (--dataset debian-packages / text, a bert_* model) runs the same loop: a text batch is one
// packed int64 tensor [B, 3, L] (ids, token types, attention mask) that BertTextClassifier masks
// itself, so the step, evaluation, probes, checkpoints and resume are the images' code; the run's
// tokenizer is saved as tokenizer.json next to its config, and resume and eval read it.
// CLIP (a clip_* model) runs the same loop too: the images' loader over image-caption pairs, the
// CLIP step and evaluation of ./clip.ts (zero-shot top-1 is the run's test_acc1), the captions'
// tokenizer saved as a text run's.
import { countBatches } from '../data/batch.js';
import { BatchLoader } from '../data/loader.js';
import { type ImageDataset, loadDataset, subsetDataset } from '../data/datasets.js';
import { loadTextSplits } from '../data/text/load.js';
import { isTextDatasetName, subsetTextDataset, TextBatchLoader, type TextDataset } from '../data/text/text-dataset.js';
import type { TextTokenizer } from '../data/text/tokenizer.js';
import { decodeForEvaluation, loadFolderDataset } from '../data/folder-dataset.js';
import { loadEmojiDataset } from '../data/emoji.js';
import { deriveSeed, Random } from '../data/random.js';
import type { Classifier } from '../models/classifier.js';
import { createModel, describeModel } from '../models/factory.js';
import { ResNet } from '../models/resnet.js';
import { type InitOptions, layerAssignment, loadPretrained, PretrainedError } from '../models/pretrained.js';
import { hasSubModel, methodStep, type StepConfig } from '../masksub/method.js';
import { AdamW, applyLr, clipGradNorm, FreezeError, freezeParameters, GradScaler, Lamb, ModelEma, type Optimizer, paramGroupsWithLayerDecay, paramGroupsWithWeightDecay, SGD, WarmupCosineSchedule } from '../optim/index.js';
import { BEST_FILE, CHECKPOINT_FILE, disposeCheckpoint, type EpochMetrics, loadCheckpoint, MODEL_FILE, RunDirectory, RunError, type RunMode, type RunSummary, saveCheckpoint, type TrainingState } from '../run/index.js';
import { saveSafetensors } from '../tensor/safetensors.js';
import { cudaAvailable, cudaDeviceCount, setNumThreads } from '../tensor/native.js';
import { Generator, getRngState, keep, manualSeed, noGrad, setRngState, type Tensor, tensor, tidy } from '../tensor/tensor.js';
import { DistributedError, ProcessGroup, rankDevice, resolveBackend, type World } from '../distributed/index.js';
import { withBatchShard } from '../nn/sample-noise.js';
import { BatchNorm2d } from '../nn/layers.js';
import { DEFAULTS, fromStoredConfig, kebab, type ResolvedTrainConfig, resolveConfig, toStoredConfig, type TrainConfig } from './config.js';
import { deviceBatch } from './device-batch.js';
import { type EvalData, type Evaluation, type EvaluationSums, evaluate, evaluateSums, finishEvaluation, isTextData, textBatchTensors } from './evaluate.js';
import { Progress } from './progress.js';
import { buildClip, type ClipData, clipProbeLoss, clipTrainStep, type EncodedCaptions, evaluateClip, loadClipData, pairDataset, RECALL_KS, captionTensors, trainingCaptions } from './clip.js';
import { Clip, isClipModel } from '../models/clip.js';

export { evaluate } from './evaluate.js';

/** A training problem the user can act on (bad data, a diverged loss, a damaged run). */
export class TrainingError extends RunError {}

/** Faults injected by the fault-injection tests (test/faults.test.ts); never set in normal use. */
export interface FaultHooks {
  /** Multiply the input of this global step (0-based) by NaN, once per process. */
  nanAtStep?: number;
  /** Runs between writing the checkpoint's temporary file and renaming it (a kill lands mid-write). */
  beforeCheckpointRename?: () => void;
}

export interface TrainOptions {
  out: string;
  resume?: boolean;
  overwrite?: boolean;
  /** Where progress lines go (default: stderr). */
  log?: (line: string) => void;
  /** Stop after this many epochs of this call (tests of resume); the run stays unfinished. */
  stopAfterEpochs?: number;
  /** Aborting it (SIGINT/SIGTERM in the CLI) stops training after the current step. */
  signal?: AbortSignal;
  faults?: FaultHooks;
  /**
   * This process's place in a data-parallel job (distributed/world.ts; the CLI reads it from
   * torchrun's environment). Null or absent: a single process.
   */
  world?: World | null;
}

export interface TrainResult {
  summary: RunSummary | null;
  history: EpochMetrics[];
  out: string;
  /** Epochs trained by this call (0 for a run that was already finished). */
  epochsTrained: number;
  /** Optimizer steps taken by this call. */
  stepsTaken: number;
  /** True when options.signal stopped the run; it resumes from its last finished epoch. */
  interrupted: boolean;
}

/** The run's stored config.json, validated again (the user may have edited it, e.g. a lower lr). */
export function readRunConfig(out: string): ResolvedTrainConfig {
  const run = new RunDirectory(out);
  const stored = run.readStoredConfig();
  try {
    const { machine: _machine, preset, ...settings } = fromStoredConfig(stored);
    return resolveConfig(settings as TrainConfig, preset ?? null);
  } catch (error) {
    throw new RunError(`${run.file('config.json')}: cannot read the run's config: ${(error as Error).message}`);
  }
}

/** The file in a run directory that holds a text run's tokenizer. */
export const TOKENIZER_FILE = 'tokenizer.json';

/**
 * Both splits of a text data set with the tokenizer: the config's file, else the run's saved
 * tokenizer.json (`saved`, for resume and eval), else one trained on the training texts.
 */
export async function loadTextData(config: TrainConfig, saved: string | null): Promise<{ train: TextDataset; test: TextDataset; tokenizer: TextTokenizer; tokenizerSource: string }> {
  if (!isTextDatasetName(config.dataset)) throw new TrainingError(`${config.dataset} is not a text data set`);
  try {
    return await loadTextSplits({
      dataset: config.dataset, dataDir: config.dataDir, textColumns: config.textColumns, labelColumn: config.labelColumn, maxLength: config.maxLength,
      tokenizer: config.tokenizer, saved, vocabSize: config.vocabSize, classes: config.classes, limitTrain: config.limitTrain, limitTest: config.limitTest,
    });
  } catch (error) {
    throw new TrainingError((error as Error).message);
  }
}

/**
 * One split of the configured image data set; for folders, `classes` (the training map, or the run's
 * record) fixes the labels. Evaluation splits come decoded, a folder's training split as files.
 */
export async function loadSplit(config: TrainConfig, split: 'train' | 'test', limit: number | null, classes: string[] | null): Promise<ImageDataset> {
  if (isTextDatasetName(config.dataset)) throw new TrainingError(`${config.dataset} is text; its splits load together with their tokenizer (loadTextData)`);
  // The run's normalization constants (config.ts resolves them: the data set's own unless mean / std were given).
  const normalization = { ...(config.mean && { mean: [...config.mean] }), ...(config.std && { std: [...config.std] }) };
  const dataset = config.dataset === 'emoji'
    ? { ...(await loadEmojiDataset({ split, size: config.imageSize ?? undefined, limit: limit ?? undefined }).catch((error: Error) => { throw new TrainingError(error.message); })), ...normalization }
    : config.dataset !== 'folder'
    ? { ...loadDataset(config.dataset, { dataDir: config.dataDir ?? undefined, split, limit: limit ?? undefined }), ...normalization }
    : await loadFolderDataset({
      ...normalization,
      split, dataDir: config.dataDir, list: split === 'train' ? config.trainList : config.valList, classes, limit: limit ?? undefined,
      // The evaluation split at eval-image-size when set (a CNN only; config.ts checks).
      size: (split === 'test' ? config.evalImageSize : null) ?? config.imageSize ?? describeModel(config.model).imageSize, scale: [config.cropScale, 1], interpolation: config.interpolation,
      cropPercent: config.cropPct, skipBadImages: config.skipBadImages, jpegDctScaling: config.jpegDctScaling, threeAugment: config.threeAugment, colorJitter: config.colorJitter, randAugment: config.randAugment,
    }).catch((error: Error) => { throw new TrainingError(error.message); });
  if (dataset.count === 0) throw new TrainingError(`${config.dataset} ${split} split (${dataset.source}) holds no images`);
  return dataset;
}

/**
 * This process's part in the run: rank `rank` of `size` processes (size 1: alone, no group). The
 * leader, rank 0, alone reads the run's state first, writes the run directory and logs.
 */
interface Team {
  rank: number;
  size: number;
  group: ProcessGroup | null;
  /** This rank's device when it is not the config's: `cuda` in a job is the GPU numbered LOCAL_RANK (distributed/world.ts). */
  device?: string;
}

const ALONE: Team = { rank: 0, size: 1, group: null };

/** Contiguous shard `rank` of `count` items (evaluation sets; training uses the loader's shards). */
function shardIndices(count: number, team: Team): Int32Array {
  const start = Math.floor((count * team.rank) / team.size);
  const end = Math.floor((count * (team.rank + 1)) / team.size);
  return Int32Array.from({ length: end - start }, (_, index) => start + index);
}

/** Everything that is read or checked before the run directory is touched. */
interface Plan {
  train: EvalData;
  test: EvalData;
  /** This rank's part of the test set (all of it for a single process). */
  testShard: EvalData;
  probe: EvalData;
  /** Text and CLIP runs: the tokenizer (saved in the run directory by a fresh run); null for images. */
  tokenizer: TextTokenizer | null;
  /** CLIP runs: the captions, prompts and the probe images' captions; null otherwise. */
  clip: (ClipData & { probeCaptions: EncodedCaptions }) | null;
  dropLast: boolean;
  /** Samples of each global batch that this rank holds (batch size / processes). */
  localBatch: number;
  microPerEpoch: number;
  schedule: WarmupCosineSchedule;
}

/**
 * Loads the data and checks the schedule and the device. A wrong --data-dir, a damaged file, too
 * few steps for the warmup or a missing GPU must not leave a run directory behind (which a
 * corrected command would then refuse) nor remove the run that --overwrite would replace.
 */
async function planTraining(config: ResolvedTrainConfig, log: (line: string) => void, team: Team, savedTokenizer: string | null): Promise<Plan> {
  if (config.device !== 'cpu') {
    const index = Number(/^cuda:(\d+)$/.exec(config.device)?.[1] ?? 0);
    if (!cudaAvailable()) throw new TrainingError(`device ${config.device}: this build of masksub has no CUDA (or no GPU is visible); use --device cpu`);
    if (index >= cudaDeviceCount()) throw new TrainingError(`device ${config.device}: only ${cudaDeviceCount()} GPU(s) visible`);
  }
  let train: EvalData;
  let test: EvalData;
  let tokenizer: TextTokenizer | null = null;
  if (isTextDatasetName(config.dataset)) {
    const text = await loadTextData(config, savedTokenizer);
    ({ train, test, tokenizer } = text);
    // The image augmentations that are on by default; any other image setting changed is refused by the config.
    const ignored = (['cropPadding', 'hflip'] as const).map((name) => `${kebab(name)} ${DEFAULTS[name]}`).join(', ');
    log(`${config.dataset}: ${train.count} training / ${test.count} test texts, ${train.numClasses} classes; tokenizer ${text.tokenizerSource === 'trained' ? 'trained on the training texts' : text.tokenizerSource} (${tokenizer.vocabSize} tokens); ` +
      `max-length ${config.maxLength} (${train.truncated} training texts fill or exceed it); ignored for text: ${ignored} (image augmentations)`);
  } else {
    train = await loadSplit(config, 'train', config.limitTrain, config.classes);
    test = await loadSplit(config, 'test', config.limitTest, train.classes ?? null);
  }
  let clipData: ClipData | null = null;
  if (isClipModel(config.model)) {
    if (team.size > 1) throw new TrainingError(`${config.model}: data-parallel CLIP is not supported (each rank's contrastive loss would see only its shard's negatives); train it in one process`);
    try {
      clipData = await loadClipData(config, train as ImageDataset, test as ImageDataset, savedTokenizer);
    } catch (error) {
      throw new TrainingError((error as Error).message);
    }
    tokenizer = clipData.tokenizer;
    // The loader reports each image's index, which picks its caption.
    train = pairDataset(train as ImageDataset);
    log(`${config.dataset}: ${train.count} training / ${test.count} test image-caption pairs, captions from ${clipData.source.kind === 'emoji' ? 'emoji names and keywords' : 'class-name templates'}; ` +
      `zero-shot over ${clipData.source.classNames.length} classes; tokenizer ${clipData.tokenizerSource === 'trained' ? 'trained on the training captions' : clipData.tokenizerSource} (${tokenizer.vocabSize} tokens), ` +
      `context ${clipData.contextLength} (${clipData.truncated} test captions fill it); ignored for CLIP: label-smoothing ${config.labelSmoothing}`);
  }
  const skipped = (test as { badImages?: string[] }).badImages ?? [];
  if (skipped.length > 0) log(`skipped ${skipped.length} evaluation image(s) that cannot be decoded: ${skipped.slice(0, 5).join(', ')}${skipped.length > 5 ? ', ...' : ''}`);

  if (team.size > 1 && config.batchSize % team.size !== 0) {
    throw new TrainingError(`batch-size ${config.batchSize} is the global batch of the job's ${team.size} processes and must divide evenly among them; use a multiple of ${team.size}`);
  }
  if (team.size > 1 && train.count < config.batchSize) {
    throw new TrainingError(`${train.count} training images do not fill one global batch of ${config.batchSize}; lower batch-size`);
  }
  // Every rank must take the same number of steps, so a job drops the last partial batch.
  const dropLast = team.size > 1 || train.count >= config.batchSize * 2;
  const microPerEpoch = countBatches(train.count, config.batchSize, dropLast);
  if (config.accumulation > microPerEpoch) {
    throw new TrainingError(`accumulation ${config.accumulation} needs that many batches per optimizer step, but an epoch has only ${microPerEpoch} ` +
      `(${train.count} training images, batch size ${config.batchSize}); lower accumulation or batch-size`);
  }
  const stepsPerEpoch = Math.floor(microPerEpoch / config.accumulation);
  const warmupSteps = Math.round(config.warmupEpochs * stepsPerEpoch);
  const totalSteps = config.epochs * stepsPerEpoch;
  if (!(totalSteps > warmupSteps)) {
    throw new TrainingError(`warmup-epochs ${config.warmupEpochs} leaves no steps after the warmup: ${config.epochs} epoch(s) of ${stepsPerEpoch} step(s) ` +
      `(${train.count} training images, batch size ${config.batchSize}) make ${totalSteps} steps and the warmup takes ${warmupSteps}; use fewer warmup-epochs or more epochs`);
  }
  const schedule = new WarmupCosineSchedule({ baseLr: config.lr, minLr: config.minLr, warmupStartLr: config.warmupLr, warmupSteps, totalSteps });
  // A fixed probe subset of the training images for the paper's Eq. 1 / Eq. 2 losses.
  const order = Int32Array.from({ length: train.count }, (_, index) => index);
  new Random(deriveSeed(config.seed, 777)).shuffle(order);
  // Image files are decoded for the probe once, with the evaluation transform.
  const probeIndices = order.slice(0, Math.min(config.probeSize, train.count));
  const probe = isTextData(train) ? subsetTextDataset(train, probeIndices) : await decodeForEvaluation(subsetDataset(train, probeIndices));
  if (config.init !== null || config.freeze !== null) checkInitAndFreeze(config, { train, tokenizer });
  const testShard = team.size === 1 ? test : isTextData(test) ? subsetTextDataset(test, shardIndices(test.count, team)) : subsetDataset(test, shardIndices(test.count, team));
  // The probe pairs keep their first epoch's captions, so every epoch measures the same pairs.
  const clip = clipData === null ? null : { ...clipData, probeCaptions: await trainingCaptions(clipData, (probe as ImageDataset).labels, 0) };
  return { train, test, testShard, probe, tokenizer, clip, dropLast, localBatch: config.batchSize / team.size, microPerEpoch, schedule };
}

/** The run's model for its data and recipe (before --init and before moving to the device). */
export function buildModel(config: ResolvedTrainConfig, { train, tokenizer }: Pick<Plan, 'train' | 'tokenizer'>): Classifier {
  if (isTextData(train)) {
    if (tokenizer === null) throw new TrainingError('a text model needs the run\'s tokenizer');
    const { pad, cls, sep, mask } = tokenizer.specialIds;
    return createModel(config.model, {
      numClasses: train.numClasses, dropPathRate: config.dropPath, dropRate: config.dropout,
      text: { vocabSize: tokenizer.vocabSize, maxLength: config.maxLength, specialIds: { pad, cls, sep, mask } },
    });
  }
  return createModel(config.model, {
    imageSize: train.height, inChannels: train.channels, numClasses: train.numClasses, dropPathRate: config.dropPath, dropPathSchedule: config.dropPathSchedule,
    dropRate: config.dropout, layerScale: config.layerScale, maskPatchSize: config.maskPatchSize ?? undefined,
    globalPool: config.globalPool ?? undefined, maskMode: config.maskMode,
  });
}

function initOptions(config: ResolvedTrainConfig, log?: (line: string) => void): InitOptions {
  return { strict: config.initStrict, antialias: config.initAntialias, resetHead: config.initResetHead, log };
}

/**
 * --init and --freeze are fitted once before the run directory is touched, so that a checkpoint
 * or a freeze list that does not fit leaves nothing behind. The model built for it draws from the
 * global generator, whose state is put back, so the run's own initialisation is the same with or
 * without this check.
 */
function checkInitAndFreeze(config: ResolvedTrainConfig, data: Pick<Plan, 'train' | 'tokenizer'>): void {
  const state = getRngState();
  const model = buildModel(config, data);
  try {
    if (config.init !== null) loadPretrained(model, config.init, initOptions(config));
    if (config.freeze !== null) freezeParameters(model, config.freeze);
  } catch (error) {
    if (error instanceof PretrainedError || error instanceof FreezeError) throw new TrainingError(error.message);
    throw error;
  } finally {
    model.dispose();
    setRngState(state);
  }
}

function buildOptimizer(model: Classifier | Clip, config: ResolvedTrainConfig): Optimizer {
  // A CLIP has no layer decay (config.ts refuses it); its noWeightDecay names logit_scale, as open_clip.
  const groups = config.layerDecay === null || model instanceof Clip
    ? paramGroupsWithWeightDecay(model, config.weightDecay, model.noWeightDecay())
    : paramGroupsWithLayerDecay(model, config.weightDecay, config.layerDecay, layerAssignment(model), model.noWeightDecay());
  switch (config.optimizer) {
    case 'lamb': return new Lamb(groups, { lr: config.lr, weightDecay: config.weightDecay, eps: config.optEps ?? undefined });
    case 'sgd': return new SGD(groups, { lr: config.lr, momentum: config.momentum, nesterov: config.nesterov, weightDecay: config.weightDecay });
    default: return new AdamW(groups, { lr: config.lr, weightDecay: config.weightDecay, eps: config.optEps ?? undefined });
  }
}

/** The objects one run trains with. */
interface Session {
  config: ResolvedTrainConfig;
  plan: Plan;
  team: Team;
  model: Classifier | Clip;
  optimizer: Optimizer;
  ema: ModelEma | null;
  loader: BatchLoader | TextBatchLoader;
  step: StepConfig;
  /** Draws the per-sample noise (masks, drop-path) of every global batch, the same on every rank (nn/sample-noise.ts). */
  sampleGenerator: Generator;
  /** float16 loss scaling (amp fp16); null otherwise. */
  scaler: GradScaler | null;
}

/** w1 of the sub-model methods for the run's loss form (see the lossForm setting). */
export function mainLossWeight(config: Pick<TrainConfig, 'lossForm' | 'optimizer' | 'subWeight'>): number {
  const additive = config.lossForm === 'additive' || (config.lossForm === 'auto' && config.optimizer === 'sgd');
  return additive ? 1 : 1 - config.subWeight;
}

function buildSession(config: ResolvedTrainConfig, plan: Plan, team: Team, log?: (line: string) => void): Session {
  const { train } = plan;
  const model = plan.clip !== null ? buildClip(config, train as ImageDataset, plan.clip) : buildModel(config, plan);
  // A resumed run loads the init too: its checkpoint then overwrites it (or, when no epoch had
  // finished, the run starts over from the same init).
  if (config.init !== null && !(model instanceof Clip)) loadPretrained(model, config.init, initOptions(config, log));
  if (config.device !== 'cpu') model.to({ device: config.device as 'cuda' });
  // Before the optimizer is built, which leaves frozen parameters out (a resumed run builds it
  // the same way, so its stored optimizer state fits).
  if (config.freeze !== null) {
    const frozen = freezeParameters(model, config.freeze);
    const sizes = new Map(model.namedParameters().map(([name, parameter]) => [name, parameter.numel]));
    const count = frozen.reduce((total, name) => total + sizes.get(name)!, 0);
    log?.(`freeze: ${frozen.length} parameter tensors (${count} values) stay as initialised, outside the optimizer: ${frozen.join(', ')}`);
  }
  // Before the optimizer and the EMA exist, so that their buffers (zerosLike, clone) take the
  // weights' layout; a resumed checkpoint is copied into these tensors and keeps it too.
  if (config.channelsLast && model instanceof ResNet) model.setMemoryFormat('channels_last');
  const loader = isTextData(train) ? new TextBatchLoader(train, {
    batchSize: plan.localBatch, shuffle: true, dropLast: plan.dropLast, seed: config.seed, shard: team.size > 1 ? { rank: team.rank, world: team.size } : undefined,
  }) : new BatchLoader(train, {
    batchSize: plan.localBatch, shuffle: true, dropLast: plan.dropLast, seed: config.seed,
    shard: team.size > 1 ? { rank: team.rank, world: team.size } : undefined, repeats: config.repeatedAug,
    augment: { cropPadding: train.files ? 0 : config.cropPadding, hflip: config.hflip, randomErasing: config.randomErasing },
    mixup: config.mixup > 0 || config.cutmix > 0
      ? { mixupAlpha: config.mixup, cutmixAlpha: config.cutmix, switchProb: config.mixupSwitchProb, prob: config.mixupProb, labelSmoothing: config.labelSmoothing, numClasses: train.numClasses }
      : undefined,
    // Enough batches ahead for every worker thread to have one in hand.
    prefetch: Math.max(3, 2 * config.dataWorkers), useWorker: config.workers, workers: config.dataWorkers,
  });
  return {
    config, plan, team, model, loader,
    sampleGenerator: new Generator(deriveSeed(config.seed, 8128)),
    scaler: config.amp === 'fp16' ? new GradScaler() : null,
    optimizer: buildOptimizer(model, config),
    ema: config.ema ? new ModelEma(model, { decay: config.emaDecay }) : null,
    step: {
      method: config.method, ratio: config.ratio, subWeight: config.subWeight, mainWeight: mainLossWeight(config), lossScale: config.accumulation, subUpdatesRunningStats: config.subBnUpdate, subTarget: config.subTarget,
      amp: config.amp === 'none' ? null : config.amp === 'bf16' ? 'bfloat16' : 'float16',
      criterion: { kind: config.loss, labelSmoothing: config.labelSmoothing, bceTargetThreshold: config.bceTargetThreshold },
    },
  };
}

function initialState(session: Session): TrainingState {
  return {
    version: 1, epoch: 0, globalStep: 0, wallSeconds: 0, bestAcc1: -1, bestEpoch: 0, skippedSteps: 0, history: [],
    optimizer: tidy(() => session.optimizer.stateDict().scalars), emaUpdates: session.ema ? 0 : null,
    gradScaler: session.scaler?.stateDict() ?? null,
  };
}

/**
 * Restores model, optimizer, EMA and RNG from the run's checkpoint (none yet: the first epoch did
 * not finish, start over). Everything is checked before anything is changed or written.
 */
function restore(session: Session, run: RunDirectory, log: (line: string) => void): TrainingState {
  const path = run.file(CHECKPOINT_FILE);
  if (!run.hasFile(CHECKPOINT_FILE)) return initialState(session);
  const parts = loadCheckpoint(path);
  const { config, model, optimizer, ema } = session;
  try {
    const state = parts.state;
    if (state.epoch > config.epochs) throw new Error(`it is at epoch ${state.epoch}, past the run's ${config.epochs} epochs`);
    if ((ema === null) !== (parts.ema === null) || (ema === null) !== (state.emaUpdates === null)) {
      throw new Error(`it was written ${parts.ema ? 'with' : 'without'} EMA weights but the run's config has ema ${config.ema}`);
    }
    model.loadStateDict(parts.model);
    optimizer.loadStateDict(parts.optimizer);
    if (ema && parts.ema) ema.loadStateDict({ tensors: parts.ema, updates: state.emaUpdates ?? 0 });
    if (session.scaler && state.gradScaler) session.scaler.loadStateDict(state.gradScaler);
    setRngState(new Uint8Array(parts.rngState.toBytes()));
    if (parts.sampleRngState) {
      session.sampleGenerator.setState(new Uint8Array(parts.sampleRngState.toBytes()));
    } else {
      log(`${path} predates the stored mask generator: masks from here on differ from an uninterrupted run's`);
    }
    if (session.team.rank !== 0) return state;
    // A kill between the checkpoint's rename and the metrics' leaves metrics.jsonl an epoch behind;
    // the checkpoint is the record, the metrics files are derived from it.
    let metricsBehind = true;
    try {
      metricsBehind = run.readHistory().length !== state.history.length;
    } catch {
      // unreadable metrics are rewritten from the checkpoint as well
    }
    if (metricsBehind) run.writeMetrics(state.history);
    log(`resumed ${run.path} after epoch ${state.epoch} (step ${state.globalStep})`);
    return state;
  } catch (error) {
    throw new TrainingError(`cannot resume from ${path}: ${(error as Error).message}`);
  } finally {
    disposeCheckpoint(parts);
  }
}

/** Averages the gradients over the job's ranks (in flat 25 MiB buckets; process-group.ts). */
function averageGradients(parameters: readonly Tensor[], group: ProcessGroup, step: number): void {
  const grads = parameters.map((parameter) => parameter.grad).filter((grad): grad is Tensor => grad !== null);
  try {
    group.allReduce(grads, 'avg', `the gradient all-reduce of step ${step}`);
  } finally {
    for (const grad of grads) grad.dispose();
  }
}

function reduceSums(local: EvaluationSums, group: ProcessGroup, what: string): EvaluationSums {
  const [loss, correct1, correct5, count] = group.allReduceNumbers([local.loss, local.correct1, local.correct5, local.count], 'sum', what);
  return { loss: loss!, correct1: correct1!, correct5: correct5!, count: count! };
}

interface EpochSums { loss: number; main: number; sub: number; normMain: number; normSub: number; steps: number; micro: number; images: number; stepSeconds: number }

/**
 * One pass over the training data (timm's train_one_epoch). Returns null when options.signal
 * stopped it; the epoch is then discarded and the run resumes from the previous checkpoint.
 */
async function trainOneEpoch(session: Session, state: TrainingState, epoch: number, progress: Progress, options: TrainOptions, faults: { nanAtStep: number }): Promise<EpochSums | null> {
  const { config, plan, team, model, optimizer, ema, loader } = session;
  model.train();
  const sums: EpochSums = { loss: 0, main: 0, sub: 0, normMain: 0, normSub: 0, steps: 0, micro: 0, images: 0, stepSeconds: 0 };
  const epochStart = performance.now();
  progress.start(epoch, config.epochs, plan.microPerEpoch);
  const shard = { generator: session.sampleGenerator, rank: team.rank, world: team.size };
  let microIndex = 0;
  for await (const batch of loader.epochBatches(epoch - 1)) {
    // Alone, a stop request ends the epoch before the next step; in a job the ranks agree on it
    // after the step (below), so that all stop at the same one.
    if (team.group === null && options.signal?.aborted) return null;
    const stepStart = performance.now();
    applyLr(optimizer, plan.schedule.lr(state.globalStep));
    // A skipped step must leave no trace, but its forward pass already folded the bad batch into
    // BatchNorm's running statistics; keep a copy to put back.
    const savedBuffers = config.skipNonFinite ? noGrad(() => model.buffers().map((buffer) => keep(buffer.clone()))) : [];
    // A CLIP batch's captions: drawn for (seed, epoch, image index), tokenized (cached) before the step.
    const captions = plan.clip !== null ? await trainingCaptions(plan.clip, batch.labels, epoch - 1) : null;
    const result = tidy(() => {
      let { images, labels, soft } = 'tokens' in batch
        ? { ...textBatchTensors(batch.tokens, batch.labels, plan.train as TextDataset, config.device), soft: null }
        : deviceBatch(batch, plan.train as ImageDataset, config.device);
      if (state.globalStep === faults.nanAtStep) {
        images = images.mul(Number.NaN);
        faults.nanAtStep = -1;
      }
      if (model instanceof Clip) return withBatchShard(shard, () => clipTrainStep(model, images, captionTensors(captions!, config.device), config));
      const step = session.scaler ? { ...session.step, gradScale: session.scaler.scale } : session.step;
      return withBatchShard(shard, () => methodStep(model, images, soft ?? labels, step));
    });
    microIndex++;
    // Under float16 loss scaling, overflowing gradients of a finite loss are routine: the scaler
    // skips that optimizer step and lowers the scale (below), it is not a failed step.
    const gradientsFinite = Number.isFinite(result.gradNormMain) && (result.gradNormSub === null || Number.isFinite(result.gradNormSub));
    let finite = result.finite && (gradientsFinite || session.scaler !== null);
    let images = batch.size;
    if (team.group !== null) {
      // One small all-reduce per micro-batch: the ranks' mean metrics, whether any rank's step
      // was not finite (then every rank skips it or stops) and whether any was asked to stop.
      const [loss, main, sub, normMain, normSub, bad, stop, count] = team.group.allReduceNumbers([
        finite ? result.loss : 0, finite ? result.lossMain : 0, finite ? result.lossSub ?? 0 : 0, finite ? result.gradNormMain : 0, finite ? result.gradNormSub ?? 0 : 0,
        finite ? 0 : 1, options.signal?.aborted ? 1 : 0, batch.size,
      ], 'sum', `the metrics of step ${state.globalStep + 1}`);
      if (stop! > 0) return null;
      finite = bad === 0;
      const mean = (value: number): number => value / team.size;
      Object.assign(result, { loss: finite ? mean(loss!) : Number.NaN, lossMain: mean(main!), lossSub: result.lossSub === null ? null : mean(sub!), gradNormMain: mean(normMain!), gradNormSub: result.gradNormSub === null ? null : mean(normSub!) });
      images = count!;
    }
    if (!finite && config.skipNonFinite) noGrad(() => model.buffers().forEach((buffer, index) => buffer.copy_(savedBuffers[index])));
    for (const saved of savedBuffers) saved.dispose();
    if (!finite) {
      optimizer.zeroGrad();
      if (!config.skipNonFinite) {
        throw new TrainingError(`non-finite loss (${result.loss}) at epoch ${epoch}, step ${microIndex} of ${plan.microPerEpoch} (global step ${state.globalStep + 1}); training stopped. ` +
          (state.epoch > 0 ? `The last good checkpoint (epoch ${state.epoch}) in ${options.out} was kept` : `No epoch had finished, so ${options.out} holds no checkpoint yet`) +
          `; to continue, lower lr (or set skip_non_finite: true to skip such steps) in ${options.out}/config.json and run train --out ${options.out} --resume`);
      }
      state.skippedSteps++;
      continue;
    }
    sums.loss += result.loss; sums.main += result.lossMain; sums.sub += result.lossSub ?? 0;
    // A float16 step whose scaled gradients overflowed has no norm to report (rare: the scaler
    // backs off at once); it adds nothing to the epoch's mean norms.
    if (Number.isFinite(result.gradNormMain)) sums.normMain += result.gradNormMain;
    if (Number.isFinite(result.gradNormSub ?? 0)) sums.normSub += result.gradNormSub ?? 0;
    sums.micro++;
    sums.images += images;
    if (microIndex % config.accumulation === 0) {
      // DDP's all-reduce, after the whole accumulation group (its no_sync): the mean gradient of
      // the global batch, the same on every rank, so every rank's optimizer takes the same step.
      if (team.group !== null) averageGradients(model.parameters(), team.group, state.globalStep + 1);
      // Every rank holds the same averaged gradients, so every rank's scaler decides alike.
      const scaled = session.scaler === null || session.scaler.unscale(model.parameters());
      if (scaled) {
        if (config.clipGrad !== null) clipGradNorm(model.parameters(), config.clipGrad);
        optimizer.step();
        // open_clip clamps the temperature after every step.
        if (model instanceof Clip) model.clampLogitScale();
      }
      session.scaler?.update(scaled);
      optimizer.zeroGrad();
      if (scaled) ema?.update(model);
      state.globalStep++;
      sums.steps++;
    }
    sums.stepSeconds += (performance.now() - stepStart) / 1000;
    progress.update(microIndex, result.loss, sums.images / ((performance.now() - epochStart) / 1000));
  }
  // Micro-batches after the last whole accumulation group do not make a step (planTraining counts
  // steps the same way), so their gradients are dropped.
  optimizer.zeroGrad();
  return sums;
}

/** Test accuracy, the Eq. 1 / Eq. 2 probe losses and EMA accuracy after an epoch (timm's validate). */
function validate(session: Session, state: TrainingState, epoch: number, sums: EpochSums, trainSeconds: number, wallSeconds: number): EpochMetrics {
  const { config, plan, team, model, ema } = session;
  if (model instanceof Clip) return validateClip(session, model, state, epoch, sums, trainSeconds, wallSeconds);
  const batchSize = Math.max(config.batchSize, 256);
  if (team.group !== null) {
    // Each rank's BatchNorm statistics saw only its shard (unless --sync-bn). As timm's training
    // scripts do after every epoch (--dist-bn reduce, the default of the RSB recipe), the ranks'
    // running statistics are averaged, in the model and in its EMA, so every rank evaluates and
    // rank 0 saves the same buffers. Parameters are equal on every rank already. With --sync-bn the
    // statistics are equal already (up to float summation order) and the average changes nothing.
    const names = new Set(model.namedBuffers().map(([name]) => name));
    const buffers = [...model.namedBuffers(), ...(ema ? [...ema.tensors].filter(([name]) => names.has(name)) : [])].map(([, buffer]) => buffer);
    const floating = buffers.filter((buffer) => buffer.dtype.startsWith('float') || buffer.dtype === 'bfloat16');
    team.group.allReduce(floating, 'avg', `the averaging of epoch ${epoch}'s running statistics`);
    team.group.broadcast(buffers.filter((buffer) => !floating.includes(buffer)), 0, `the broadcast of epoch ${epoch}'s buffer counters`);
  }
  // The test set is split among the ranks and their sums are added; the small probe set is
  // evaluated whole on every rank (the same model, the same fixed masks: the same numbers).
  const testEvaluation = (): Evaluation => {
    const local = evaluateSums(model, plan.testShard, batchSize, config.device);
    return finishEvaluation(team.group === null ? local : reduceSums(local, team.group, `the test evaluation of epoch ${epoch}`));
  };
  const evaluation = testEvaluation();
  // The probes measure the training criterion (Eq. 1 / Eq. 2 are training losses); their masks come
  // from a fixed generator, the same every epoch and on every device, apart from training's stream.
  const probeStandard = evaluate(model, plan.probe, 256, config.device, {}, session.step.criterion);
  const probeMasked = evaluate(model, plan.probe, 256, config.device, { maskRatio: config.probeMaskRatio, generator: new Generator(deriveSeed(config.seed, 4242)) }, session.step.criterion);
  let emaAcc1: number | null = null;
  if (ema) {
    ema.swap(model);
    try {
      emaAcc1 = testEvaluation().acc1;
    } finally {
      ema.swap(model);
    }
  }
  const micro = Math.max(1, sums.micro);
  const sub = hasSubModel(config.method);
  const row: EpochMetrics = {
    epoch, lr: plan.schedule.lr(Math.max(0, state.globalStep - 1)),
    train_loss: sums.loss / micro, train_loss_main: sums.main / micro, train_loss_sub: sub ? sums.sub / micro : null,
    probe_loss_standard: probeStandard.loss, probe_loss_masked: probeMasked.loss,
    grad_norm_main: sums.normMain / micro, grad_norm_sub: sub ? sums.normSub / micro : null,
    test_loss: evaluation.loss, test_acc1: evaluation.acc1, test_acc5: evaluation.acc5,
    step_time_s: sums.stepSeconds / Math.max(1, sums.steps), images_per_s: sums.images / trainSeconds,
    wall_s: wallSeconds,
  };
  if (ema) row.ema_test_acc1 = emaAcc1;
  if (config.skipNonFinite) row.skipped_steps = state.skippedSteps;
  if (session.scaler) row.grad_scale = session.scaler.scale;
  return row;
}

/**
 * A CLIP run's epoch row: test_acc1 / test_acc5 are zero-shot top-1 / top-5 on the test images
 * from the class-name prompts, test_loss the contrastive loss on test batches, the probes the
 * contrastive loss on the fixed probe pairs with whole and masked images; and retrieval recall@k.
 */
function validateClip(session: Session, model: Clip, state: TrainingState, epoch: number, sums: EpochSums, trainSeconds: number, wallSeconds: number): EpochMetrics {
  const { config, plan } = session;
  const clip = plan.clip!;
  const evaluation = evaluateClip(model, plan.test as ImageDataset, clip, config.batchSize, config.device);
  const probe = plan.probe as ImageDataset;
  const probeStandard = clipProbeLoss(model, probe, clip.probeCaptions, config.device);
  const probeMasked = clipProbeLoss(model, probe, clip.probeCaptions, config.device, { maskRatio: config.probeMaskRatio, generator: new Generator(deriveSeed(config.seed, 4242)) });
  const micro = Math.max(1, sums.micro);
  const sub = hasSubModel(config.method);
  const row: EpochMetrics = {
    epoch, lr: plan.schedule.lr(Math.max(0, state.globalStep - 1)),
    train_loss: sums.loss / micro, train_loss_main: sums.main / micro, train_loss_sub: sub ? sums.sub / micro : null,
    probe_loss_standard: probeStandard, probe_loss_masked: probeMasked,
    grad_norm_main: sums.normMain / micro, grad_norm_sub: sub ? sums.normSub / micro : null,
    test_loss: evaluation.loss, test_acc1: evaluation.acc1, test_acc5: evaluation.acc5,
    step_time_s: sums.stepSeconds / Math.max(1, sums.steps), images_per_s: sums.images / trainSeconds,
    wall_s: wallSeconds,
  };
  for (const k of RECALL_KS) row[`test_image_to_text_r${k}` as 'test_image_to_text_r1'] = evaluation.imageToText[k]!;
  for (const k of RECALL_KS) row[`test_text_to_image_r${k}` as 'test_text_to_image_r1'] = evaluation.textToImage[k]!;
  row.recall_pairs = evaluation.recallPairs;
  row.logit_scale = evaluation.logitScale;
  if (config.skipNonFinite) row.skipped_steps = state.skippedSteps;
  return row;
}

/** Weights first, then the checkpoint that points past them, then the metrics derived from it. */
function saveEpoch(session: Session, run: RunDirectory, state: TrainingState, improved: boolean, faults: FaultHooks): void {
  const { model, optimizer, ema } = session;
  const weights = { format: 'pt', epoch: String(state.epoch) };
  saveSafetensors(run.file(MODEL_FILE), model.stateDict(), weights);
  if (improved) saveSafetensors(run.file(BEST_FILE), model.stateDict(), weights);
  tidy(() => {
    saveCheckpoint(run.file(CHECKPOINT_FILE), {
      model: model.stateDict(), optimizer: optimizer.stateDict(), ema: ema ? new Map(ema.tensors) : null, rngState: tensor(getRngState()),
      sampleRngState: tensor(session.sampleGenerator.getState()), state,
    }, { beforeRename: faults.beforeCheckpointRename });
  });
  run.writeMetrics(state.history);
}

/** Trains one run to the end (or to stopAfterEpochs, or until aborted), resuming from its checkpoint when asked. */
export async function train(requested: ResolvedTrainConfig, options: TrainOptions): Promise<TrainResult> {
  const world = options.world ?? null;
  if (world === null) return trainAs(ALONE, requested, options);
  let group: ProcessGroup;
  const device = rankDevice(requested.device, world);
  const gpu = /^cuda:(\d+)$/.exec(device)?.[1];
  if (device !== requested.device && gpu !== undefined && cudaAvailable() && Number(gpu) >= cudaDeviceCount()) {
    // Said before the group forms: NCCL would only fail at the first collective, in its own words.
    throw new TrainingError(`rank ${world.rank}: --device cuda means the GPU numbered LOCAL_RANK=${world.localRank}, but only ${cudaDeviceCount()} GPU(s) are visible; ` +
      'start at most that many processes per machine, or give each rank its own GPU (CUDA_VISIBLE_DEVICES, --device cuda:N)');
  }
  try {
    const { backend, note } = resolveBackend(requested.distBackend, device);
    if (note !== null && world.rank === 0) (options.log ?? ((line: string) => process.stderr.write(line + '\n')))(note);
    group = ProcessGroup.init(world, { timeoutSeconds: requested.distTimeout, backend, device });
  } catch (error) {
    throw new TrainingError((error as Error).message);
  }
  try {
    // Only rank 0 speaks; the others' errors still reach their stderr through the CLI.
    const quiet = world.rank === 0 ? options : { ...options, log: () => {} };
    return await trainAs({ rank: world.rank, size: world.size, group, device: device === requested.device ? undefined : device }, requested, quiet);
  } catch (error) {
    if (!(error instanceof DistributedError)) throw error;
    throw new TrainingError(`${error.message}. The last checkpoint that rank 0 finished writing in ${options.out} is intact; continue with: masksub train --out ${options.out} --resume (with the same number of processes or any other)`);
  } finally {
    group.destroy();
  }
}

/** What rank 0 found in the run directory, sent to the other ranks. */
interface Decision {
  mode: RunMode;
  config: Record<string, unknown>;
  finished: { summary: RunSummary | null; history: EpochMetrics[] } | null;
  /** Rank 0 could not start (its own error is in its log); the others stop too. */
  error?: string;
}

/** The settings of a job that must be the same on every rank (threads may differ by machine). */
function differingSettings(mine: Record<string, unknown>, leader: Record<string, unknown>): string[] {
  const keys = new Set([...Object.keys(mine), ...Object.keys(leader)]);
  return [...keys].filter((key) => key !== 'threads' && key !== 'machine' && JSON.stringify(mine[key]) !== JSON.stringify(leader[key]));
}

async function trainAs(team: Team, requested: ResolvedTrainConfig, options: TrainOptions): Promise<TrainResult> {
  const log = options.log ?? ((line: string) => process.stderr.write(line + '\n'));
  const run = new RunDirectory(options.out);
  const leader = team.rank === 0;

  // Rank 0 reads the run directory and decides; the others take its mode and settings.
  let decision: Decision;
  let leaderConfig: ResolvedTrainConfig | null = null;
  if (leader) {
    try {
      const mode: RunMode = run.plan(options);
      const config = leaderConfig = mode === 'resume' ? readRunConfig(run.path) : requested;
      const finished = mode === 'resume' && run.isFinished() ? { summary: run.readSummary(), history: run.readHistory() } : null;
      decision = { mode, config: toStoredConfig(config) as unknown as Record<string, unknown>, finished };
    } catch (error) {
      team.group?.broadcastJson<Decision>({ mode: 'fresh', config: {}, finished: null, error: (error as Error).message }, 0, 'the start');
      throw error;
    }
    team.group?.broadcastJson(decision, 0, 'the start');
  } else {
    decision = team.group!.broadcastJson<Decision>(undefined, 0, 'the start');
    if (decision.error !== undefined) throw new TrainingError(`rank 0 could not start the run: ${decision.error}`);
  }
  const config = leaderConfig ?? adoptLeaderConfig(decision, requested);
  if (decision.finished) {
    log(`${run.path}: already finished`);
    return { ...decision.finished, out: run.path, epochsTrained: 0, stepsTaken: 0, interrupted: false };
  }
  const plan = await planTraining(config, log, team, decision.mode === 'resume' ? run.file(TOKENIZER_FILE) : null);

  const lock = leader ? run.lock(`train --out ${run.path}`) : null;
  let session: Session | null = null;
  try {
    if (leader) {
      // Again, now that no other process can change the directory (one may have finished it meanwhile).
      run.plan(options);
      if (decision.mode === 'resume' && run.isFinished()) {
        if (team.group !== null) throw new TrainingError(`${run.path} was finished by another process meanwhile`);
        log(`${run.path}: already finished`);
        return { summary: run.readSummary(), history: run.readHistory(), out: run.path, epochsTrained: 0, stepsTaken: 0, interrupted: false };
      }
      run.prepare(decision.mode);
      // A folder's class map is part of the run: a resume or eval reads the folders with it.
      if (decision.mode === 'fresh') run.writeStoredConfig(toStoredConfig(plan.train.classes ? { ...config, classes: plan.train.classes } : config));
      // A text run's tokenizer is part of it too (a trained vocabulary exists nowhere else).
      if (decision.mode === 'fresh' && plan.tokenizer !== null) await plan.tokenizer.save(run.file(TOKENIZER_FILE));
    }
    setNumThreads(config.threads);
    manualSeed(config.seed);
    session = buildSession(team.device === undefined ? config : { ...config, device: team.device }, plan, team, log);
    let state = decision.mode === 'resume' ? restore(session, run, log) : initialState(session);
    if (team.group !== null && config.syncBn) {
      // SyncBatchNorm (torch.nn.SyncBatchNorm.convert_sync_batchnorm): every BatchNorm's training
      // forwards all-reduce their batch statistics. The sub-model forward of MaskSub then also
      // normalises with global statistics; whether it may move the running statistics stays
      // --sub-bn-update's choice (methodStep restores them otherwise).
      for (const module of session.model.modules()) if (module instanceof BatchNorm2d) module.sync = true;
    }
    if (team.group !== null) {
      // Every rank starts from rank 0's weights (the same seed gives the same ones; an --init file
      // that differs between machines would not) and checks that it resumed where rank 0 did.
      const [epoch] = team.group.allReduceNumbers([state.epoch], 'max', 'the start');
      if (epoch !== state.epoch) {
        throw new TrainingError(`rank ${team.rank} resumed after epoch ${state.epoch} but another rank after epoch ${epoch}: ` +
          `every rank reads ${run.file(CHECKPOINT_FILE)}, so a job across machines needs the run directory on a shared filesystem`);
      }
      team.group.broadcast([...session.model.parameters(), ...session.model.buffers()], 0, 'the broadcast of the initial weights');
    }

    const faults = { nanAtStep: options.faults?.nanAtStep ?? -1 };
    const started = performance.now();
    const wallBase = state.wallSeconds;
    const stepsBefore = state.globalStep;
    const progress = new Progress(log, process.stderr, isTextDatasetName(config.dataset) ? 'texts' : 'img');
    let epochsTrained = 0;
    let interrupted = false;
    while (state.epoch < config.epochs && !(options.stopAfterEpochs !== undefined && epochsTrained >= options.stopAfterEpochs)) {
      const epoch = state.epoch + 1;
      // Element-wise dropout draws from each rank's own stream: rank 0 continues the single
      // process's (stored in the checkpoint), the others restart theirs from (seed, epoch, rank)
      // each epoch, so a resume at an epoch boundary repeats them exactly.
      if (team.rank > 0) manualSeed(deriveSeed(config.seed, 6007, epoch, team.rank));
      const epochStart = performance.now();
      const sums = await trainOneEpoch(session, state, epoch, progress, options, faults);
      const badImages = session.loader.takeBadImages();
      if (badImages.length > 0) log(`epoch ${epoch}: skipped ${badImages.length} training image(s) that cannot be decoded: ${badImages.slice(0, 5).join(', ')}${badImages.length > 5 ? ', ...' : ''}`);
      if (!sums) {
        interrupted = true;
        break;
      }
      const row = validate(session, state, epoch, sums, (performance.now() - epochStart) / 1000, wallBase + (performance.now() - started) / 1000);
      const improved = row.test_acc1 > state.bestAcc1;
      state = {
        ...state, epoch, wallSeconds: row.wall_s, history: [...state.history, row],
        bestAcc1: improved ? row.test_acc1 : state.bestAcc1, bestEpoch: improved ? epoch : state.bestEpoch,
        optimizer: tidy(() => session!.optimizer.stateDict().scalars), emaUpdates: session.ema ? session.ema.updates : null,
        gradScaler: session.scaler?.stateDict() ?? null,
      };
      if (lock) {
        lock.verify();
        saveEpoch(session, run, state, improved, options.faults ?? {});
      }
      progress.finish(row);
      epochsTrained++;
      const stop = team.group === null ? options.signal?.aborted === true : team.group.allReduceNumbers([options.signal?.aborted ? 1 : 0], 'max', `the end of epoch ${epoch}`)[0]! > 0;
      if (stop) {
        interrupted = state.epoch < config.epochs;
        break;
      }
    }

    const stepsTaken = state.globalStep - stepsBefore;
    if (state.epoch < config.epochs) return { summary: null, history: state.history, out: run.path, epochsTrained, stepsTaken, interrupted };
    const summary: RunSummary = {
      finished: true, epochs: state.epoch, final_test_acc1: state.history[state.history.length - 1].test_acc1,
      best_test_acc1: state.bestAcc1, best_epoch: state.bestEpoch, wall_s: state.wallSeconds,
      mean_step_time_s: state.history.reduce((total, row) => total + row.step_time_s, 0) / state.history.length,
    };
    if (leader) run.writeSummary(summary);
    // No rank reports success before rank 0 has written the summary.
    team.group?.barrier('the end of the run');
    return { summary, history: state.history, out: run.path, epochsTrained, stepsTaken, interrupted: false };
  } finally {
    if (session) {
      await session.loader.close();
      session.model.dispose();
      session.optimizer.dispose();
      session.ema?.dispose();
    }
    lock?.release();
  }
}

/**
 * A non-zero rank's configuration: rank 0's (a resumed run's stored settings, or the command's),
 * with its own thread count. A fresh job whose ranks were given different settings is refused.
 */
function adoptLeaderConfig(decision: Decision, requested: ResolvedTrainConfig): ResolvedTrainConfig {
  const { machine: _machine, preset, ...settings } = fromStoredConfig(decision.config);
  const config = { ...resolveConfig(settings as TrainConfig, preset ?? null), threads: requested.threads };
  if (decision.mode === 'fresh') {
    const differing = differingSettings(toStoredConfig(requested) as unknown as Record<string, unknown>, decision.config);
    if (differing.length > 0) {
      throw new TrainingError(`this rank was started with other settings than rank 0 (${differing.slice(0, 5).join(', ')}${differing.length > 5 ? ', ...' : ''}); start every rank with the same command`);
    }
  }
  return config;
}

/** metrics.jsonl of a run directory (one row per finished epoch). */
export function readHistory(out: string): EpochMetrics[] {
  return new RunDirectory(out).readHistory();
}
