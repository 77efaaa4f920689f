// The configuration schema and the method table: strict reading of flag text, ranges and
// cross-field checks, did-you-mean, a stored config.json validated like flags, MASKSUB_THREADS as
// the threads default, compare's plan without a filled-in-then-undone ratio, and help texts
// derived from the schema.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { planRuns } from '../src/experiment/compare.js';
import { defaultRatio, describeMethod, hasSubModel, METHOD_TABLE, METHODS, regularizer } from '../src/masksub/methods.js';
import {
  buildConfig, buildSettings, PRESETS, closestName, ConfigError, DEFAULTS, describeValues, fromStoredConfig, resolveConfig,
  SETTINGS, settingDocs, toStoredConfig, type TrainConfig,
} from '../src/train/config.js';
import { errorMessage } from './helpers/errors.js';

const root = mkdtempSync(join(tmpdir(), 'masksub-config-'));
after(() => rmSync(root, { recursive: true, force: true }));

/** The message of the ConfigError that building a config from these flags throws. */
function rejection(flags: Record<string, unknown>): string {
  return errorMessage(() => {
    try {
      buildConfig({ flags });
    } catch (error) {
      assert.ok(error instanceof ConfigError, `a ConfigError, got ${String(error)}`);
      throw error;
    }
  });
}

function yaml(name: string, text: string): string {
  const path = join(root, name);
  writeFileSync(path, text);
  return path;
}

test('flag text is read strictly: decimal numbers only, true/false, null for nullable settings', () => {
  assert.equal(rejection({ epochs: '0x2' }), '--epochs must be an integer ≥ 1, got "0x2"');
  assert.equal(rejection({ epochs: '2.5' }), '--epochs must be an integer ≥ 1, got 2.5');
  assert.equal(rejection({ lr: 'abc' }), '--lr must be a number > 0, got "abc"');
  assert.equal(rejection({ lr: '' }), '--lr must be a number > 0, got ""');
  assert.equal(rejection({ lr: 'Infinity' }), '--lr must be a number > 0, got "Infinity"');
  assert.equal(rejection({ epochs: '3 ' }), '--epochs must be an integer ≥ 1, got "3 "');
  assert.equal(rejection({ hflip: 'yes' }), '--hflip must be true or false, got "yes"');
  assert.equal(rejection({ epochs: 'null' }), '--epochs must be an integer ≥ 1, got "null"');
  assert.equal(rejection({ seed: '-1' }), '--seed must be an integer in [0, 2147483647], got -1');
  const config = buildConfig({ flags: { epochs: '4', 'limit-train': '1e3', lr: '.5', hflip: 'false', 'clip-grad': 'none', 'limit-test': 'null', 'min-lr': '-0' } });
  assert.equal(config.epochs, 4);
  assert.equal(config.limitTrain, 1000);
  assert.equal(config.lr, 0.5);
  assert.equal(config.hflip, false);
  assert.equal(config.clipGrad, null);
  assert.equal(config.limitTest, null);
});

test('ranges: one range for ratios [0, 1), above 0 for a method with a regularizer, 0 or unset for baseline', () => {
  assert.equal(rejection({ method: 'masksub', ratio: '1' }), '--ratio must be a number in [0, 1), or null, got 1');
  assert.equal(rejection({ method: 'masksub', ratio: '0' }), 'ratio 0 turns off the mask ratio of method masksub; use a ratio in (0, 1), or leave it out for the method\'s default 0.5');
  assert.equal(rejection({ method: 'dropout', ratio: '0' }), 'ratio 0 turns off the dropout rate of method dropout; use a ratio in (0, 1), or leave it out for the method\'s default 0.2');
  assert.equal(rejection({ method: 'baseline', ratio: '0.3' }), 'ratio 0.3 given, but method baseline applies no regularizer; leave ratio out (or pick a method such as masksub)');
  assert.equal(buildConfig({ flags: { method: 'baseline', ratio: '0' } }).ratio, 0);
  assert.equal(buildConfig({ flags: { method: 'masksub', ratio: '0.75' } }).ratio, 0.75);
  assert.equal(buildConfig({ flags: { method: 'masksub' } }).ratio, 0.5);
  // pathsub's ratio is the increase over each block's own drop-path rate, whatever that rate is
  assert.equal(buildConfig({ flags: { method: 'pathsub', 'drop-path': '0.2' } }).ratio, 0.1);
  assert.equal(rejection({ 'probe-mask-ratio': '1' }), '--probe-mask-ratio must be a number in [0, 1), got 1');
  assert.equal(rejection({ 'drop-path': '1' }), '--drop-path must be a number in [0, 1), got 1');
});

test('settings that involve each other are checked together', () => {
  assert.equal(rejection({ epochs: '2', 'warmup-epochs': '2' }), 'warmup-epochs 2 leaves no epoch after the warmup (epochs 2); use fewer warmup-epochs (0 is fine) or more epochs');
  assert.equal(rejection({ lr: '0.001', 'min-lr': '0.01' }), 'min-lr 0.01 is above lr 0.001; min-lr must be in [0, lr]');
  assert.match(rejection({ model: 'vit_base_patch16_224' }), /^model vit_base_patch16_224 takes 224x224 images but fashion-mnist has 28x28; pick a 28-px model \([^)]*\bvit_micro\b/);
  // A patch size for zeroing means nothing to a ViT (it drops its own patch tokens): refused, not ignored.
  assert.equal(rejection({ model: 'vit_micro', 'mask-patch-size': '7' }),
    'mask-patch-size applies only to CNN models (masking zeroes square patches there); vit_micro is a ViT, which masks its own patch tokens: leave mask-patch-size out');
  assert.equal(buildConfig({ flags: { model: 'resnet_micro', 'mask-patch-size': '7' } }).maskPatchSize, 7);
  assert.equal(rejection({ model: 'resnet_micro', 'mask-patch-size': '5' }), 'mask-patch-size 5 does not divide the 28-px images of fashion-mnist');
  assert.equal(rejection({ model: 'resnet_micro', 'layer-scale': '0.1' }), 'layer-scale applies only to ViT and BEiT models; resnet_micro has none: leave layer-scale out');
});

test('unknown settings and choices get a did-you-mean, from flags, YAML and config.json alike', () => {
  assert.equal(rejection({ 'lerning-rate': '0.1' }), 'unknown option --lerning-rate; did you mean --lr? (see masksub train --help)');
  assert.equal(rejection({ epoch: '3' }), 'unknown option --epoch; did you mean --epochs? (see masksub train --help)');
  assert.equal(rejection({ batchsize: '3' }), 'unknown option --batchsize; did you mean --batch-size? (see masksub train --help)');
  assert.equal(rejection({ optimizer: 'adamW' }), '--optimizer must be one of adamw, lamb, sgd, got "adamW"; did you mean \'adamw\'?');
  assert.match(rejection({ zzzz: '1' }), /^unknown option --zzzz \(see masksub train --help\)$/);
  const file = yaml('typo.yaml', 'lr: 0.001\nlerning-rate: 0.1\n');
  assert.equal(errorMessage(() => buildConfig({ file })), `config file ${file}: unknown setting 'lerning-rate'; did you mean 'lr'?`);
  const far = yaml('far.yaml', 'qqqqqq: 1\n');
  assert.match(errorMessage(() => buildConfig({ file: far })), new RegExp(`^config file ${far}: unknown setting 'qqqqqq'; known settings: dataset, data-dir, [a-z, -]*limit-train, `));
  assert.equal(errorMessage(() => buildSettings({ preset: 'quik' })), 'unknown preset \'quik\'; did you mean \'quick\'? presets: fmnist-vit, fmnist-resnet, quick, debian-bert-quick, emoji-clip-quick, deit3-vit-b, deit3-vit-b-ft, deit3-vit-s, rsb-a2-resnet50, rsb-a3-resnet50, mae-vit-b-ft, beitv2-vit-b-ft, ftclip-vit-b-ft');
  assert.equal(closestName('trian', ['train', 'eval', 'compare']), 'train');
  assert.equal(closestName('xy', ['lr', 'seed']), undefined, 'a short word suggests only one edit away');
});

test('YAML values keep their YAML types: quoted "false" is text and rejected, not truthy', () => {
  const quoted = yaml('quoted.yaml', 'ema: "false"\n');
  assert.equal(errorMessage(() => buildConfig({ file: quoted })), `config file ${quoted}: ema must be true or false, got "false"`);
  const typed = yaml('typed.yaml', 'ema: false\nepochs: 3\nlimit-train: null\nbatch_size: 32\n');
  const config = buildConfig({ file: typed });
  assert.deepEqual([config.ema, config.epochs, config.limitTrain, config.batchSize], [false, 3, null, 32]);
  const negative = yaml('negative.yaml', 'lr: -0.001\n');
  assert.equal(errorMessage(() => buildConfig({ file: negative })), `config file ${negative}: lr must be a number > 0, got -0.001`);
  // Flags win over the file, the file over its preset.
  const withPreset = yaml('with-preset.yaml', 'preset: quick\nepochs: 5\n');
  const merged = buildConfig({ file: withPreset, flags: { epochs: '6' } });
  assert.deepEqual([merged.preset, merged.model, merged.epochs], ['quick', 'vit_micro', 6]);
});

// A config.json as the trainer wrote it before the schema existed (snake_case, machine, preset).
const STORED = {
  dataset: 'fashion-mnist', data_dir: null, limit_train: 512, limit_test: 256, workers: true, model: 'vit_micro',
  drop_path: 0, dropout: 0, layer_scale: null, mask_patch_size: null, method: 'masksub', ratio: 0.5, sub_weight: 0.5,
  probe_size: 64, probe_mask_ratio: 0.5, epochs: 2, batch_size: 64, accumulation: 1, optimizer: 'adamw', lr: 0.001,
  min_lr: 0.00001, warmup_epochs: 0, warmup_lr: 0.000001, weight_decay: 0.05, momentum: 0.9, nesterov: false, loss: 'ce',
  label_smoothing: 0.1, bce_target_threshold: null, clip_grad: null, ema: false, ema_decay: 0.9998, skip_non_finite: false,
  crop_padding: 2, hflip: true, random_erasing: 0, mixup: 0, cutmix: 0, mixup_switch_prob: 0.5, mixup_prob: 1, seed: 0,
  device: 'cpu', threads: 1, machine: '1 thread(s) of 2-core Intel(R) Xeon(R) Processor, Node v20.20.2', preset: null,
};

test('a stored config.json loads through the same schema; edits are validated, never cast', () => {
  const loaded = fromStoredConfig(STORED, 'run/config.json');
  assert.equal(loaded.machine, STORED.machine, 'the machine a run started on is kept');
  // Settings added since (they take their defaults) are left out of this comparison.
  const written = toStoredConfig(loaded);
  assert.deepEqual(Object.fromEntries(Object.keys(STORED).map((key) => [key, written[key]])), STORED, 'an old config.json reads back to exactly what it holds');
  const fresh = buildConfig({ flags: { method: 'dropsub', epochs: '3', 'limit-train': '100' } });
  assert.deepEqual(fromStoredConfig(JSON.parse(JSON.stringify(toStoredConfig(fresh))) as unknown), fresh, 'write then read is the identity');
  assert.equal(errorMessage(() => fromStoredConfig({ ...STORED, ema: 'false' }, 'run/config.json')), 'run/config.json: ema must be true or false, got "false"');
  assert.equal(errorMessage(() => fromStoredConfig({ ...STORED, lerning_rate: 0.1 }, 'run/config.json')), 'run/config.json: unknown setting \'lerning_rate\'; did you mean \'lr\'?');
  assert.equal(errorMessage(() => fromStoredConfig({ ...STORED, epochs: '3' }, 'run/config.json')), 'run/config.json: epochs must be an integer ≥ 1, got "3"');
  assert.equal(errorMessage(() => fromStoredConfig({ ...STORED, ratio: 0 }, 'run/config.json')),
    'run/config.json: ratio 0 turns off the mask ratio of method masksub; use a ratio in (0, 1), or leave it out for the method\'s default 0.5');
  assert.equal(errorMessage(() => fromStoredConfig({ ...STORED, machine: 3 }, 'run/config.json')), 'run/config.json: machine must be a text, got 3');
  assert.equal(errorMessage(() => fromStoredConfig([1, 2], 'run/config.json')), 'run/config.json: must be a JSON object of setting: value, got an array');
  // A setting added after a run started is missing from its file: it takes the default.
  const { probe_size: _dropped, ...older } = STORED;
  assert.equal(fromStoredConfig(older).probeSize, DEFAULTS.probeSize);
});

test('MASKSUB_THREADS is the default of threads; a flag wins; a bad value is named', () => {
  const saved = process.env.MASKSUB_THREADS;
  try {
    delete process.env.MASKSUB_THREADS;
    assert.equal(buildConfig({}).threads, availableParallelism());
    process.env.MASKSUB_THREADS = '3';
    assert.equal(buildConfig({}).threads, 3);
    assert.equal(DEFAULTS.threads, 3, 'DEFAULTS reads the variable when used, not when imported');
    assert.equal(buildConfig({ flags: { threads: '1' } }).threads, 1);
    process.env.MASKSUB_THREADS = 'many';
    assert.equal(errorMessage(() => buildConfig({})), 'MASKSUB_THREADS must be an integer in [1, 1024], got \'many\'');
  } finally {
    if (saved === undefined) delete process.env.MASKSUB_THREADS;
    else process.env.MASKSUB_THREADS = saved;
  }
});

test('compare plans each run from unresolved settings: a method without a given ratio gets its own default', () => {
  const base = buildSettings({ flags: { 'drop-path': '0.05', epochs: '2', 'warmup-epochs': '0' } });
  assert.equal(base.ratio, null, 'nothing filled in before planning');
  const plan = planRuns(base, { out: root, methods: ['baseline', 'masksub', 'pathsub', 'dropout'], seeds: [0, 1], ratios: null });
  assert.deepEqual(plan.map((run) => [run.name, run.config.method, run.config.ratio, run.config.seed]), [
    ['baseline-s0', 'baseline', 0, 0], ['masksub-s0', 'masksub', 0.5, 0], ['pathsub-s0', 'pathsub', 0.1, 0], ['dropout-s0', 'dropout', 0.2, 0],
    ['baseline-s1', 'baseline', 0, 1], ['masksub-s1', 'masksub', 0.5, 1], ['pathsub-s1', 'pathsub', 0.1, 1], ['dropout-s1', 'dropout', 0.2, 1],
  ]);
  const sweep = planRuns(base, { out: root, methods: ['baseline', 'masking'], seeds: [3], ratios: [0.25, 0.75] });
  assert.deepEqual(sweep.map((run) => [run.name, run.config.ratio]), [['baseline-s3', 0], ['masking-r0.25-s3', 0.25], ['masking-r0.75-s3', 0.75]]);
  const forbid = { seed: 'compare trains one run per seed of --seeds' };
  assert.equal(errorMessage(() => buildSettings({ flags: { seed: '3' }, forbid })), '--seed: compare trains one run per seed of --seeds');
  const file = yaml('compare-seed.yaml', 'seed: 3\n');
  assert.equal(errorMessage(() => buildSettings({ file, forbid })), `config file ${file}: seed: compare trains one run per seed of --seeds`);
});

test('the method table: paper defaults, regularizers, sub-models and counterparts', () => {
  assert.deepEqual([...METHODS], ['baseline', 'masking', 'dropout', 'droppath', 'masksub', 'dropsub', 'pathsub']);
  // the drop-path methods' strength is the paper's +0.1 over each block's own rate
  assert.deepEqual(METHODS.map((method) => defaultRatio(method)), [0, 0.5, 0.2, 0.1, 0.5, 0.2, 0.1]);
  assert.deepEqual(METHODS.map(hasSubModel), [false, false, false, false, true, true, true]);
  assert.deepEqual(regularizer('masksub', 0.3), { maskRatio: 0.3 });
  assert.deepEqual(regularizer('dropsub', 0.3), { dropoutRate: 0.3 });
  assert.deepEqual(regularizer('droppath', 0.3), { dropPathIncrease: 0.3 });
  assert.deepEqual(regularizer('baseline', 0.3), {});
  for (const method of METHODS) {
    const descriptor = describeMethod(method);
    if (descriptor.singleModel === null) continue;
    // A sub-model method's counterpart is the single model with the same regularizer always on.
    const counterpart = METHOD_TABLE[descriptor.singleModel as keyof typeof METHOD_TABLE];
    assert.equal(counterpart.subModel, false, `${method}'s counterpart`);
    assert.equal(counterpart.regularizer, descriptor.regularizer, `${method}'s counterpart`);
    assert.equal(defaultRatio(descriptor.singleModel as typeof method), defaultRatio(method));
  }
  assert.ok(METHODS.filter(hasSubModel).every((method) => describeMethod(method).singleModel !== null), 'every sub-model method names its single model');
});

test('help texts come from the schema: every setting, its values and a default that passes the schema', () => {
  const docs = settingDocs();
  assert.deepEqual(docs.map((doc) => doc.name).sort(), Object.keys(SETTINGS).sort());
  assert.equal(describeValues('epochs'), 'an integer ≥ 1');
  assert.equal(describeValues('ratio'), 'a number in [0, 1), or null');
  assert.equal(describeValues('lr'), 'a number > 0');
  assert.equal(describeValues('optimizer'), 'one of adamw, lamb, sgd');
  assert.equal(describeValues('device'), 'cpu, cuda or cuda:N');
  assert.equal(docs.find((doc) => doc.name === 'threads')?.defaultText, 'MASKSUB_THREADS, else all cores');
  // resolveConfig checks every field: the defaults themselves are a valid configuration.
  const defaults: TrainConfig = { ...DEFAULTS };
  assert.equal(resolveConfig(defaults).epochs, DEFAULTS.epochs);
});

test('the BEiT v2 and FT-CLIP fine-tuning presets carry Table B.1\'s ViT-B recipes, cite it, and resolve for 224-px folder data with --init and MaskSub', () => {
  const pick = (config: TrainConfig, names: (keyof TrainConfig)[]): Record<string, unknown> => Object.fromEntries(names.map((name) => [name, config[name]]));
  const flags = { dataset: 'folder', dataDir: root, init: join(root, 'pretrained.safetensors'), method: 'masksub' };
  const fields: (keyof TrainConfig)[] = ['model', 'optimizer', 'lr', 'weightDecay', 'layerDecay', 'batchSize', 'epochs', 'warmupEpochs', 'dropPath', 'labelSmoothing', 'mixup', 'cutmix', 'randAugment', 'randomErasing', 'ema', 'globalPool', 'cropPct', 'loss'];
  const beit = buildConfig({ preset: 'beitv2-vit-b-ft', flags });
  assert.deepEqual(pick(beit, fields), {
    model: 'beitv2_base_patch16_224', optimizer: 'adamw', lr: 5e-4, weightDecay: 0.05, layerDecay: 0.6, batchSize: 1024, epochs: 100, warmupEpochs: 20,
    dropPath: 0.2, labelSmoothing: 0.1, mixup: 0.8, cutmix: 1.0, randAugment: 'rand-m9-mstd0.5-inc1', randomErasing: 0.25, ema: false, globalPool: 'avg', cropPct: 0.875, loss: 'ce',
  });
  const clip = buildConfig({ preset: 'ftclip-vit-b-ft', flags });
  assert.deepEqual(pick(clip, [...fields, 'emaDecay']), {
    model: 'vit_base_patch16_clip_quickgelu_224', optimizer: 'adamw', lr: 6e-4, weightDecay: 0.05, layerDecay: 0.6, batchSize: 2048, epochs: 50, warmupEpochs: 10,
    dropPath: 0, labelSmoothing: 0.1, mixup: 0, cutmix: 0, randAugment: 'rand-m9-mstd0.5-inc1', randomErasing: 0.25, ema: true, globalPool: 'avg', cropPct: 1.0, loss: 'ce', emaDecay: 0.9998,
  });
  for (const [config, name] of [[beit, 'beitv2-vit-b-ft'], [clip, 'ftclip-vit-b-ft']] as const) {
    assert.equal(config.preset, name);
    assert.equal(config.ratio, 0.5, 'MaskSub at the paper\'s 50%');
    assert.match(PRESETS[name].description, /paper Table B\.1, (BEiT v2|FT-CLIP) column/);
  }
  // Other-sized data cannot take the 224-px models, named as such.
  assert.throws(() => buildConfig({ preset: 'beitv2-vit-b-ft', flags: { ...flags, imageSize: 32 } }), /model beitv2_base_patch16_224 takes 224x224 images but image-size is 32/);
  // A ViT takes any multiple of its patch on folder data (its position embedding is built for it), BEiT only its own grid.
  assert.throws(() => buildConfig({ preset: 'ftclip-vit-b-ft', flags: { ...flags, imageSize: 40 } }), /model vit_base_patch16_clip_quickgelu_224 takes 224x224 images but image-size is 40 nor a multiple of its 16-px patch/);
  assert.equal(buildConfig({ preset: 'ftclip-vit-b-ft', flags: { ...flags, imageSize: 32 } }).imageSize, 32);
});

