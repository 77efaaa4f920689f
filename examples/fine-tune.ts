// Our trainer from a script instead of the CLI, then fine-tuning its weights with MaskSub in your
// own loop: train() is the `masksub train` command as a function (same settings, run directory,
// checkpoints, resume); the run's model.safetensors loads into the same registered model, which
// masksub.step fine-tunes like any other Module (our ViT drops tokens itself: it is Maskable).
// Data: the generated 'synthetic' set (28x28, 10 classes), so nothing needs downloading.
// Run: node --conditions=masksub-source --import tsx examples/fine-tune.ts
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildConfig, evaluate, loadDataset, loadSafetensors, manualSeed, masksub, models, optim, tensor, tidy, train } from 'masksub';

const images = Number(process.env.EXAMPLE_IMAGES ?? 1024);
const out = join(mkdtempSync(join(tmpdir(), 'masksub-example-')), 'pretrain');

// 1. The trainer, from a script: one baseline epoch; settings as the CLI's flags, checked the same way.
const config = buildConfig({
  flags: {
    dataset: 'synthetic', model: 'vit_micro', method: 'baseline', epochs: 1, limitTrain: images, limitTest: 256,
    batchSize: 64, lr: 3e-3, warmupEpochs: 0, probeSize: 64, workers: false,
  },
});
const run = await train(config, { out, log: (line) => console.log(`  trainer: ${line}`) });
console.log(`trained ${run.stepsTaken} steps into ${run.out}: test top-1 ${run.history[0].test_acc1.toFixed(1)}%`);

// 2. Fine-tune those weights with MaskSub in your own loop.
const data = loadDataset('synthetic', { split: 'train', limit: images });
const testSet = loadDataset('synthetic', { split: 'test', limit: 256 });
const model = models.createModel('vit_micro', { inChannels: data.channels, numClasses: data.numClasses });
model.loadStateDict(loadSafetensors(join(out, 'model.safetensors')).tensors);
const before = evaluate(model, testSet, 128, 'cpu').acc1;
const optimizer = new optim.AdamW(model.parameters(), { lr: 1e-3, weightDecay: 0.05 });
const pixels = data.channels * data.height * data.width;
manualSeed(1);
for (let start = 0; start + 64 <= data.count; start += 64) {
  tidy(() => {
    // uint8 pixels normalized with the data set's mean and std, as the trainer does
    const x = tensor(Float32Array.from(data.images.subarray(start * pixels, (start + 64) * pixels), (value) => (value / 255 - data.mean[0]) / data.std[0]),
      { shape: [64, data.channels, data.height, data.width] });
    const y = tensor(data.labels.subarray(start, start + 64)).long();
    masksub.step(model, x, y, { method: 'masksub', ratio: 0.5 });
    optimizer.step();
    optimizer.zeroGrad();
  });
}
const after = evaluate(model, testSet, 128, 'cpu').acc1;
console.log(`fine-tuned with MaskSub: test top-1 ${before.toFixed(1)}% -> ${after.toFixed(1)}%`);
console.log(JSON.stringify({ pretrained: run.history[0].test_acc1, before, after }));
