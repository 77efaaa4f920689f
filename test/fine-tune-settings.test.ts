// The two fine-tuning settings FT-CLIP's recipe needs (issue 11): --freeze (timm.utils.freeze by
// names; FT-CLIP freezes CLIP's patch embedding) keeps parameters out of the optimizer, so they
// stay bitwise as initialised, get no weight decay and resume exactly; --mean / --std (timm's; the
// ftclip preset gives OpenAI CLIP's constants) choose the constants that training batches,
// evaluation and the run's record use, checked against (pixel / 255 - mean) / std by hand.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import sharp from 'sharp';
import { subsetDataset } from '../src/data/datasets.js';
import { decodeForEvaluation } from '../src/data/folder-dataset.js';
import { BatchLoader } from '../src/data/loader.js';
import { Random } from '../src/data/random.js';
import { createModel } from '../src/models/index.js';
import { freezeParameters, paramGroupsWithLayerDecay, paramGroupsWithWeightDecay } from '../src/optim/index.js';
import { layerAssignment } from '../src/models/pretrained.js';
import { disposeCheckpoint, loadCheckpoint } from '../src/run/index.js';
import { loadSafetensors, saveSafetensors } from '../src/tensor/safetensors.js';
import { getNumThreads, setNumThreads } from '../src/tensor/native.js';
import { manualSeed, type Tensor } from '../src/tensor/tensor.js';
import { buildConfig, buildSettings, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, toStoredConfig } from '../src/train/config.js';
import { deviceBatch } from '../src/train/device-batch.js';
import { loadSplit, train } from '../src/train/trainer.js';

const threads = getNumThreads();
setNumThreads(1);
after(() => setNumThreads(threads));
const directory = mkdtempSync(join(tmpdir(), 'masksub-fine-tune-'));
after(() => rmSync(directory, { recursive: true, force: true }));
const quiet = (): void => undefined;

const sameBytes = (left: Tensor, right: Tensor): boolean => left.toBytes().equals(right.toBytes());

test('freeze: names are whole dotted parts (timm.utils.freeze); frozen parameters are in no param group and the layer-decay scales of the rest are unchanged (by hand)', () => {
  manualSeed(1);
  const model = createModel('vit_micro', { inChannels: 1, numClasses: 10, imageSize: 28 });
  const all = model.namedParameters().map(([name]) => name);
  assert.throws(() => freezeParameters(model, ['patch']), /'patch' names no parameter or module of the model .*top-level names are .*patch_embed/);
  assert.throws(() => freezeParameters(model, [...new Set(all.map((name) => name.split('.')[0]!))]), /covers every parameter of the model; nothing would train/);
  assert.ok(model.parameters().every((parameter) => parameter.requiresGrad), 'a refused list freezes nothing');

  const frozen = freezeParameters(model, ['patch_embed', 'blocks.0.attn.qkv.bias']);
  assert.deepEqual(frozen, ['patch_embed.proj.weight', 'patch_embed.proj.bias', 'blocks.0.attn.qkv.bias']);
  const trained = all.filter((name) => !frozen.includes(name));
  const plain = paramGroupsWithWeightDecay(model, 0.05, model.noWeightDecay());
  assert.deepEqual(plain.flatMap((group) => group.names!).sort(), [...trained].sort());
  // vit_micro has 2 blocks: layers 0 (embeddings) .. 3 (norm, head); by hand 0.65^3 = 0.274625, 0.65^2 = 0.4225
  const groups = paramGroupsWithLayerDecay(model, 0.05, 0.65, layerAssignment(model), model.noWeightDecay());
  const scaleOf = new Map(groups.flatMap((group) => group.names!.map((name) => [name, { lrScale: group.lrScale!, weightDecay: group.weightDecay! }] as const)));
  assert.deepEqual([...scaleOf.keys()].sort(), [...trained].sort(), 'every parameter but the frozen ones in exactly one group');
  const expected: Record<string, number> = {
    cls_token: 0.274625, pos_embed: 0.274625, 'blocks.0.attn.qkv.weight': 0.4225, 'blocks.0.norm1.weight': 0.4225,
    'blocks.1.mlp.fc2.bias': 0.65, 'norm.weight': 1, 'head.weight': 1, 'head.bias': 1,
  };
  for (const [name, scale] of Object.entries(expected)) assert.ok(Math.abs(scaleOf.get(name)!.lrScale - scale) < 1e-15, `${name}: lrScale ${scaleOf.get(name)?.lrScale}, by hand ${scale}`);
  assert.equal(scaleOf.get('blocks.0.attn.qkv.weight')!.weightDecay, 0.05);
  model.dispose();
});

test('train --freeze patch_embed: the frozen tensors stay bitwise as initialised through AdamW with weight decay 0.5 and MaskSub, every other one moves; EMA and checkpoints keep them; resume is exact', async () => {
  manualSeed(3);
  const source = createModel('vit_micro', { inChannels: 1, numClasses: 10, imageSize: 28 });
  const init = join(directory, 'init.safetensors');
  saveSafetensors(init, source.stateDict());
  source.dispose();
  const flags = {
    dataset: 'synthetic', model: 'vit_micro', 'limit-train': '128', 'limit-test': '64', 'batch-size': '32', lr: '5e-3', 'weight-decay': '0.5', 'warmup-epochs': '0',
    'probe-size': '16', threads: '1', epochs: '2', ema: 'true', 'ema-decay': '0.9', method: 'masksub', init, freeze: 'patch_embed',
  };
  const config = buildConfig({ flags });
  assert.deepEqual(config.freeze, ['patch_embed']);
  const straight = join(directory, 'frozen-straight');
  const lines: string[] = [];
  await train(config, { out: straight, log: (line) => lines.push(line) });
  assert.match(lines.join('\n'), /freeze: 2 parameter tensors \(\d+ values\) stay as initialised, outside the optimizer: patch_embed\.proj\.weight, patch_embed\.proj\.bias/);

  const before = loadSafetensors(init).tensors;
  const afterTraining = loadSafetensors(join(straight, 'model.safetensors')).tensors;
  for (const [name, initial] of before) {
    const trained = afterTraining.get(name)!;
    if (name.startsWith('patch_embed.')) assert.ok(sameBytes(initial, trained), `${name} is frozen: bitwise unchanged`);
    else assert.ok(!sameBytes(initial, trained), `${name} trains: it moved`);
  }
  const parts = loadCheckpoint(join(straight, 'checkpoint.safetensors'));
  try {
    const sizes = parts.state.optimizer.groups.reduce((total, group) => total + group.size, 0);
    assert.equal(sizes, before.size - 2, 'the optimizer holds every parameter but the two frozen ones');
    assert.ok(sameBytes(parts.model.get('patch_embed.proj.weight')!, before.get('patch_embed.proj.weight')!), 'the checkpoint keeps the frozen weights');
    // The EMA averages every state-dict tensor as before; a constant stays within rounding of itself.
    const average = parts.ema!.get('patch_embed.proj.weight')!;
    assert.ok(average.sub(before.get('patch_embed.proj.weight')!).abs().max().item() < 1e-6);
  } finally {
    disposeCheckpoint(parts);
  }

  const resumed = join(directory, 'frozen-resumed');
  await train(config, { out: resumed, log: quiet, stopAfterEpochs: 1 });
  await train(config, { out: resumed, resume: true, log: quiet });
  const again = loadSafetensors(join(resumed, 'model.safetensors')).tensors;
  for (const [name, tensor] of afterTraining) assert.ok(sameBytes(tensor, again.get(name)!), `${name}: resumed run equals the uninterrupted one bitwise`);

  const refused = join(directory, 'frozen-refused');
  await assert.rejects(train(buildConfig({ flags: { ...flags, freeze: 'patch_embed.projection' } }), { out: refused, log: quiet }), /'patch_embed\.projection' names no parameter/);
  assert.equal(existsSync(refused), false, 'a freeze list that does not fit leaves no run directory');
  for (const map of [before, afterTraining, again]) for (const tensor of map.values()) tensor.dispose();
});

test('--mean / --std: resolved per channel and recorded; the ftclip preset carries OpenAI CLIP\'s constants and freezes patch_embed; text data refuses them', () => {
  assert.deepEqual([buildConfig({}).mean, buildConfig({}).std], [[0.286], [0.353]], 'the data set\'s own constants by default');
  const folderFlags = { dataset: 'folder', 'data-dir': directory, model: 'vit_micro', 'image-size': '28' };
  assert.deepEqual(buildConfig({ flags: folderFlags }).mean, [0.485, 0.456, 0.406], 'ImageNet\'s for folders');
  assert.deepEqual(buildConfig({ flags: { ...folderFlags, std: '0.5' } }).std, [0.5, 0.5, 0.5], 'one value for every channel, as timm');
  assert.throws(() => buildConfig({ flags: { mean: '0.1,0.2' } }), /mean has 2 values but fashion-mnist images have 1 channel\(s\): give 1 values, or one for every channel/);
  assert.throws(() => buildConfig({ flags: { std: '0' } }), /--std must be one number in \(0, 1\] per channel/);
  assert.throws(() => buildConfig({ flags: { dataset: 'debian-packages', model: 'bert_tiny', mean: '0.5' } }), /mean applies only to images/);
  assert.throws(() => buildConfig({ flags: { dataset: 'emoji', model: 'clip_micro', freeze: 'visual' } }), /freeze does not apply to clip_micro: freezing is implemented for classifiers only/);
  const stored = toStoredConfig(buildConfig({ flags: { ...folderFlags, mean: OPENAI_CLIP_MEAN.join(','), std: OPENAI_CLIP_STD.join(',') } }));
  assert.deepEqual([stored.mean, stored.std], [[...OPENAI_CLIP_MEAN], [...OPENAI_CLIP_STD]], 'config.json records the values used');
  const clip = buildSettings({ preset: 'ftclip-vit-b-ft' });
  assert.deepEqual([clip.mean, clip.std, clip.freeze], [[0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711], ['patch_embed']]);
});

/** (pixel / 255 - mean[c]) / std[c] of channel-first uint8 images, by hand. */
function normalizedByHand(pixels: Uint8Array, count: number, channels: number, area: number, mean: readonly number[], std: readonly number[]): Float64Array {
  const out = new Float64Array(count * channels * area);
  for (let index = 0; index < out.length; index++) {
    const channel = Math.floor(index / area) % channels;
    out[index] = (pixels[index]! / 255 - mean[channel]!) / std[channel]!;
  }
  return out;
}

function largestDifference(ours: Float32Array, theirs: Float64Array): number {
  assert.equal(ours.length, theirs.length);
  let largest = 0;
  for (let index = 0; index < ours.length; index++) largest = Math.max(largest, Math.abs(ours[index]! - theirs[index]!));
  return largest;
}

test('--mean / --std reach the batches: the loader\'s normalized images equal (pixel / 255 - mean) / std by hand, for an array data set and for a folder with CLIP\'s constants (eval split, probe, RandAugment fill, the run\'s record)', async () => {
  // An array data set, 1 channel: mean 0.5, std 0.25 instead of its own 0.25 / 0.3276.
  const synthetic = buildConfig({ flags: { dataset: 'synthetic', model: 'vit_micro', mean: '0.5', std: '0.25', 'limit-test': '16' } });
  const data = await loadSplit(synthetic, 'test', 16, null);
  assert.deepEqual([data.mean, data.std], [[0.5], [0.25]]);
  const batches = async (dataset: typeof data): Promise<Float32Array> => {
    const loader = new BatchLoader(dataset, { batchSize: dataset.count, shuffle: false, augment: { cropPadding: 0, hflip: false, randomErasing: 0 } });
    for await (const batch of loader.epochBatches(0)) {
      const { images, labels } = deviceBatch(batch, dataset, 'cpu');
      labels.dispose();
      const values = new Float32Array(images.toBytes().buffer.slice(0));
      images.dispose();
      return values;
    }
    throw new Error('no batch');
  };
  const area = data.height * data.width;
  const ours = await batches(data);
  assert.ok(largestDifference(ours, normalizedByHand(data.images, data.count, 1, area, [0.5], [0.25])) < 1e-6);
  assert.ok(largestDifference(ours, normalizedByHand(data.images, data.count, 1, area, [0.25], [0.3276])) > 0.1, 'not the data set\'s own constants');

  // A folder of RGB PNGs (written here), at 28 px, with OpenAI CLIP's constants.
  const folder = join(directory, 'rgb-folder');
  const random = new Random(5);
  for (const split of ['train', 'val']) {
    for (const name of ['a', 'b']) {
      mkdirSync(join(folder, split, name), { recursive: true });
      for (let index = 0; index < 2; index++) {
        const pixels = Buffer.from(Array.from({ length: 28 * 28 * 3 }, () => Math.floor(random.next() * 256)));
        await sharp(pixels, { raw: { width: 28, height: 28, channels: 3 } }).png().toFile(join(folder, split, name, `${index}.png`));
      }
    }
  }
  const clip = buildConfig({ flags: { dataset: 'folder', 'data-dir': folder, model: 'vit_micro', 'image-size': '28', 'crop-pct': '1', mean: OPENAI_CLIP_MEAN.join(','), std: OPENAI_CLIP_STD.join(',') } });
  const test = await loadSplit(clip, 'test', null, null);
  assert.deepEqual([test.mean, test.std], [[...OPENAI_CLIP_MEAN], [...OPENAI_CLIP_STD]]);
  const clipOurs = await batches(test);
  assert.ok(largestDifference(clipOurs, normalizedByHand(test.images, test.count, 3, 28 * 28, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)) < 1e-6);
  assert.ok(largestDifference(clipOurs, normalizedByHand(test.images, test.count, 3, 28 * 28, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])) > 0.1, 'not ImageNet\'s');
  const trainSplit = await loadSplit(clip, 'train', null, null);
  assert.deepEqual(trainSplit.mean, [...OPENAI_CLIP_MEAN]);
  // timm's create_transform fills RandAugment's geometric ops with round(255 * mean) of the data config.
  assert.deepEqual(trainSplit.files!.fill, [123, 117, 104]);
  // The probe images (the training files decoded for evaluation) keep them, and a run records them.
  const probe = await decodeForEvaluation(subsetDataset(trainSplit, Int32Array.from([0, 3])));
  assert.deepEqual([probe.mean, probe.std], [[...OPENAI_CLIP_MEAN], [...OPENAI_CLIP_STD]]);
  const run = join(directory, 'clip-run');
  await train(buildConfig({ flags: { dataset: 'folder', 'data-dir': folder, model: 'vit_micro', 'image-size': '28', mean: OPENAI_CLIP_MEAN.join(','), std: OPENAI_CLIP_STD.join(','), epochs: '1', 'batch-size': '4', 'warmup-epochs': '0', 'probe-size': '4', threads: '1', workers: 'false' } }), { out: run, log: quiet });
  const record = JSON.parse(readFileSync(join(run, 'config.json'), 'utf8')) as { mean: number[]; std: number[] };
  assert.deepEqual([record.mean, record.std], [[...OPENAI_CLIP_MEAN], [...OPENAI_CLIP_STD]]);
});

test('masksub eval builds the run\'s own model: a --global-pool avg run (fc_norm, no norm) evaluates to its last epoch\'s test accuracy', async () => {
  const run = join(directory, 'avg-pool-run');
  const result = await train(buildConfig({ flags: { dataset: 'synthetic', model: 'vit_micro', 'global-pool': 'avg', 'limit-train': '64', 'limit-test': '64', 'batch-size': '32', epochs: '1', 'warmup-epochs': '0', 'probe-size': '8', threads: '1' } }), { out: run, log: quiet });
  const cli = join(import.meta.dirname, '..', 'src', 'cli', 'main.ts');
  const output = execFileSync(process.execPath, ['--import', 'tsx', cli, 'eval', '--checkpoint', run], { encoding: 'utf8', env: { ...process.env, MASKSUB_THREADS: '1' } });
  const printed = JSON.parse(output.trim().split('\n').at(-1)!) as { test_acc1: number; images: number };
  assert.equal(printed.images, 64);
  assert.ok(Math.abs(printed.test_acc1 - result.history.at(-1)!.test_acc1) < 1e-9, `eval ${printed.test_acc1} vs the run's ${result.history.at(-1)!.test_acc1}`);
});
