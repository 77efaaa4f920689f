// Train your own model with MaskSub: a custom Module, your own data loop, masksub.step, AdamW,
// and a safetensors checkpoint. docs/guide.md shows this file; test/examples.test.ts runs it.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadSafetensors, manualSeed, masksub, nn, noGrad, optim, randint, randn, saveSafetensors, type Tensor, tidy } from 'masksub';

class SmallCnn extends nn.Module {
  readonly conv = this.registerModule('conv', new nn.Conv2d(1, 16, 3, { padding: 1 }));
  readonly head = this.registerModule('head', new nn.Linear(16, 10));
  forward(images: Tensor): Tensor {
    return tidy(() => this.head.forward(this.conv.forward(images).relu().mean([2, 3])));
  }
}

manualSeed(0);
const model = new SmallCnn();
const optimizer = new optim.AdamW(model.parameters(), { lr: 1e-3 });
const images = randn([64, 1, 28, 28]); // your data: 64 images with labels, in batches of 16
const labels = randint(0, 10, [64]);
for (let epoch = 0; epoch < 2; epoch++) {
  for (let start = 0; start < 64; start += 16) {
    const [x, y] = [images.slice(0, start, start + 16), labels.slice(0, start, start + 16)];
    // main forward on x, sub forward on x with half of its 4x4 patches zeroed, both backpropagated
    const result = masksub.step(model, x, y, { method: 'masksub', ratio: 0.5, patchSize: 4 });
    optimizer.step();
    optimizer.zeroGrad();
    console.log(`epoch ${epoch} batch ${start / 16}: main loss ${result.lossMain.toFixed(4)}, sub loss ${result.lossSub?.toFixed(4)}`);
  }
}
const path = join(mkdtempSync(join(tmpdir(), 'masksub-guide-')), 'model.safetensors');
saveSafetensors(path, model.stateDict());
const restored = new SmallCnn();
restored.loadStateDict(loadSafetensors(path).tensors);
const same = noGrad(() => restored.forward(images).ne(model.forward(images)).sum().item() === 0);
console.log(`restored from ${path}: same logits ${same}`);
