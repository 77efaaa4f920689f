// Fine-tuning with our trainer from a script instead of the CLI: train() is the `masksub train`
// command as a function (the same settings, checked the same way; run directory, checkpoints,
// resume). A short baseline run stands in for pretraining; a MaskSub run then starts from its
// model.safetensors (the `init` setting, as `--init`) with layer-wise lr decay; last, the
// fine-tuned weights load into the same registered model in your own code and score what the
// trainer measured. Data: the generated 'synthetic' set (28x28, 10 classes): nothing to download.
// Run: node --conditions=masksub-source --import tsx examples/fine-tune.ts
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildConfig, evaluate, loadDataset, loadSafetensors, models, train } from 'masksub';

const images = Number(process.env.EXAMPLE_IMAGES ?? 1024);
const directory = mkdtempSync(join(tmpdir(), 'masksub-example-'));
const common = {
  dataset: 'synthetic', model: 'vit_micro', limitTrain: images, limitTest: 256, batchSize: 64,
  warmupEpochs: 0, probeSize: 64, workers: false,
};
const log = (line: string): void => console.log(`  trainer: ${line}`);

// 1. "Pretraining": one baseline epoch.
const pretrain = await train(buildConfig({ flags: { ...common, method: 'baseline', epochs: 1, lr: 3e-3 } }), { out: join(directory, 'pretrain'), log });
const pretrained = pretrain.history[0].test_acc1;

// 2. Fine-tuning with MaskSub from those weights, a lower lr and layer-wise decay.
const fineTune = await train(buildConfig({
  flags: { ...common, method: 'masksub', epochs: 1, lr: 1e-3, init: join(pretrain.out, 'model.safetensors'), layerDecay: 0.75 },
}), { out: join(directory, 'fine-tune'), log });
const fineTuned = fineTune.history[0].test_acc1;
console.log(`test top-1: pretrained ${pretrained.toFixed(1)}%, fine-tuned with MaskSub ${fineTuned.toFixed(1)}%`);

// 3. The fine-tuned weights in your own code: the same model, the same test images, the same score.
const testSet = loadDataset('synthetic', { split: 'test', limit: 256 });
const model = models.createModel('vit_micro', { inChannels: testSet.channels, numClasses: testSet.numClasses });
model.loadStateDict(loadSafetensors(join(fineTune.out, 'model.safetensors')).tensors);
const reloaded = evaluate(model, testSet, 128, 'cpu').acc1;
console.log(`reloaded from ${fineTune.out}: test top-1 ${reloaded.toFixed(1)}%`);
console.log(JSON.stringify({ pretrained, fineTuned, reloaded }));
