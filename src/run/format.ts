// The on-disk format of one training run directory: what the trainer writes and what `compare`
// and `report` read. Everything a report shows must be recoverable from these files alone.
//
// RUN_DIR/
//   config.json              the resolved settings (snake_case keys), written before the first step
//   metrics.jsonl            one EpochMetrics JSON object per line, one line per finished epoch
//   summary.csv              the same rows as metrics.jsonl, as CSV with a header line
//   checkpoint.safetensors   the whole training state of the last finished epoch (run/checkpoint.ts)
//   model.safetensors        the weights of the last finished epoch (timm names)
//   best.safetensors         the weights of the epoch with the best test_acc1
//   done.json                RunSummary, written once the last epoch finished (its presence = finished)
//   run.lock                 held while a process trains in the directory (run/lock.ts)
//   .NAME.PID.tmp            a file being written atomically (io/atomic.ts); stale ones are removed

export const CONFIG_FILE = 'config.json';
export const METRICS_FILE = 'metrics.jsonl';
export const SUMMARY_CSV = 'summary.csv';
export const DONE_FILE = 'done.json';
export const CHECKPOINT_FILE = 'checkpoint.safetensors';
export const MODEL_FILE = 'model.safetensors';
export const BEST_FILE = 'best.safetensors';
export const LOCK_FILE = 'run.lock';

/** The run's own files: the only ones --overwrite removes. */
export const RUN_FILES: readonly string[] = [CONFIG_FILE, METRICS_FILE, SUMMARY_CSV, DONE_FILE, CHECKPOINT_FILE, MODEL_FILE, BEST_FILE];

export interface EpochMetrics {
  epoch: number;                 // 1-based
  lr: number;                    // learning rate at the end of the epoch
  train_loss: number;            // the loss that was optimised (w1*L1 + w2*L2 for sub-model methods)
  train_loss_main: number;       // L1, the main (label) loss
  train_loss_sub: number | null; // L2, the sub-model loss; null without a sub-model
  probe_loss_standard: number;   // paper Eq. 1: CE of the unmasked model on a fixed train probe set
  probe_loss_masked: number;     // paper Eq. 2: CE of the model on the masked probe set
  grad_norm_main: number;        // mean over steps of ||grad of w1*L1||
  grad_norm_sub: number | null;  // mean over steps of ||grad of w2*L2||; null without a sub-model
  test_loss: number;
  test_acc1: number;             // percent, 0..100
  test_acc5: number;             // percent, 0..100
  step_time_s: number;           // mean seconds per optimizer step
  images_per_s: number;          // training images per second
  wall_s: number;                // seconds since the run started (cumulative over resumes)
  ema_test_acc1?: number | null; // present when EMA is enabled
  skipped_steps?: number;        // non-finite steps skipped (opt-in)
  grad_scale?: number;           // float16 loss scale at the end of the epoch (amp fp16)
  // CLIP runs (clip_* models): test_acc1 / test_acc5 are zero-shot top-1 / top-5 from class-name
  // prompts, test_loss the contrastive loss on test batches, and these the retrieval recall@k
  // (percent) among the first recall_pairs test image-caption pairs, and exp(logit_scale).
  test_image_to_text_r1?: number;
  test_image_to_text_r5?: number;
  test_image_to_text_r10?: number;
  test_text_to_image_r1?: number;
  test_text_to_image_r5?: number;
  test_text_to_image_r10?: number;
  recall_pairs?: number;
  logit_scale?: number;
}

export interface RunSummary {
  finished: true;
  epochs: number;
  final_test_acc1: number;
  best_test_acc1: number;
  best_epoch: number;
  wall_s: number;
  mean_step_time_s: number;
}

// config.json holds at least these keys (and every other resolved training setting). The method is
// a plain string here: this layer sits below src/masksub, which owns the list of methods.
export interface ResolvedConfigCore {
  dataset: string;
  model: string;
  method: string;
  ratio: number;          // the regularizer strength of the method (0 for baseline)
  sub_weight: number;     // w2; w1 = 1 - w2
  epochs: number;
  batch_size: number;
  lr: number;
  seed: number;
  device: string;
  limit_train: number | null;
  threads: number;
  machine: string;        // e.g. "2-core x86_64 CPU, Node v20, libtorch 1.13"
}
