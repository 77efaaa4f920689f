// The masksub package: tensors and autograd on libtorch, nn layers, models, the MaskSub method,
// optimizers, data, data-parallel training and comparison reports.
export * from './tensor/tensor.js';
export * from './tensor/foreach.js';
export * from './tensor/autocast.js';
export { type BuildInfo, type NativeGenerator, type NativeHandle, blasLibraries, buildInfo, cudaAvailable, cudaDeviceCount, getNumThreads, liveTensors, setNumThreads, synchronize } from './tensor/native.js';
export * as nn from './nn/index.js';
export * as F from './nn/functional.js';
export * as optim from './optim/index.js';
export * as models from './models/index.js';
export * as masksub from './masksub/index.js';
export * as distributed from './distributed/index.js';
export { loadSafetensors, saveSafetensors, encodeTensors, decodeTensors } from './tensor/safetensors.js';
export { train, evaluate, type FaultHooks, type TrainOptions, type TrainResult } from './train/trainer.js';
export type { EpochMetrics, ResolvedConfigCore, RunSummary } from './run/format.js';
export type { EvalData, Evaluation } from './train/evaluate.js';
export { compare, type CompareOptions } from './experiment/compare.js';
export {
  buildConfig, PRESETS, DEFAULTS, SETTINGS, type ConfigSources, type Preset, type SettingName, type TrainConfig, type TrainSettings, type ResolvedTrainConfig,
} from './train/config.js';
export { parseRandAugment, randAugment, type RandAugmentConfig, type RandAugmentOptions, type ResampleMode } from './data/randaugment.js';
export type { RawImage } from './data/transforms.js';
export { Random, type WritableArrayLike } from './data/random.js';
export { loadDataset, type DatasetName, type DatasetSplit, type FileSource, type ImageDataset, type LoadDatasetOptions } from './data/datasets.js';
export { encodeTextDataset, isTextDatasetName, subsetTextDataset, TEXT_DATASET_NAMES, TextBatchLoader, type TextBatch, type TextDataset, type TextDatasetName, type TextExample, type TextLoaderOptions } from './data/text/text-dataset.js';
export type { DataShard } from './data/batch.js';
export { loadTextSplits, DEBIAN_SECTIONS, DEBIAN_SPLIT_SEED, DEBIAN_TEST_FRACTION, type TextSplits, type TextSplitsOptions } from './data/text/load.js';
export { findTable, labelClasses, labelIndices, readTable, TableError, type TableColumns, type TableRow } from './data/text/table.js';
export { TextTokenizer, SPECIAL_TOKENS, type EncodedBatch, type EncodedText, type EncodeOptions, type SpecialRole, type TrainTokenizerOptions } from './data/text/tokenizer.js';
export { learnWordPieces } from './data/text/wordpiece.js';
export { readDebianPackages, parsePackages, splitBySection, type LabelledText, type PackageRecord, type ReadPackagesOptions, type SplitOptions, type TextClassificationSplit } from './data/text/debian-packages.js';
export { CLASS_NAMES, CLASS_TEMPLATES, EMOJI_PROMPTS, captionSource, emojiCaption, emojiKeywords, fillTemplate, templatedCaption, type CaptionedImages, type CaptionSource, type EmojiText } from './data/captions.js';
export { buildClip, encodeCaptions, evaluateClip, loadClipData, RECALL_KS, RECALL_PAIRS, type ClipData, type ClipEvaluation, type EncodedCaptions } from './train/clip.js';
export { renderReport } from './report/index.js';
export type { ReportFiles } from './report/render.js';
export type { AccuracyStats, BaselineComparison, Comparison, EpochRecord, GroupResult, RetrievalMetric, RetrievalStats, RunConfig, RunKind, RunRecord, SeedValue, SettingSummary } from './report/collect.js';
export { RETRIEVAL_METRICS } from './report/collect.js';
export type { ChartId } from './report/charts.js';
export type { Agreement, Verdict } from './report/verdicts.js';
export type { AtomicWriteOptions, WriteFunction } from './io/atomic.js';
