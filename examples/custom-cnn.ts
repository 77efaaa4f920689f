// A custom CNN trained with MaskSub by masking its input from outside: the model knows nothing of
// masking (a plain forward(images)), and masksub.step zeroes random 4x4 patches of the sub-model's
// images. Its nn.Dropout layer lets the same model train with DropSub. BatchNorm's running
// statistics come from the clean main forward only.
// Task (generated): which quadrant of a noisy 16x16 image holds the bright square?
// Run: node --conditions=masksub-source --import tsx examples/custom-cnn.ts
import { manualSeed, masksub, nn, noGrad, optim, randint, randn, type Tensor, tidy, zeros } from 'masksub';

/** nn has no ReLU module yet; a Layer is one forward over one tensor. */
class ReLU extends nn.Layer {
  forward(input: Tensor): Tensor {
    return input.relu();
  }
}

class Cnn extends nn.Module {
  readonly features = this.registerModule('features', new nn.Sequential(
    new nn.Conv2d(1, 16, 3, { padding: 1, bias: false }), new nn.BatchNorm2d(16), new ReLU(),
    new nn.Conv2d(16, 32, 3, { stride: 2, padding: 1, bias: false }), new nn.BatchNorm2d(32), new ReLU(),
  ));
  readonly drop = this.registerModule('drop', new nn.Dropout(0));
  readonly head = this.registerModule('head', new nn.Linear(32 * 2 * 2, 4));
  forward(images: Tensor): Tensor {
    return tidy(() => {
      // pooled to 2x2, so the head still sees where things are
      const pooled = nn.functional.adaptiveAvgPool2d(this.features.forward(images), 2).flatten(1);
      return this.head.forward(this.drop.forward(pooled));
    });
  }
}

/** Noisy images with a bright 6x6 square in quadrant `label` (0: top left, 1: top right, 2: bottom left, 3: bottom right). */
function batch(size: number): { images: Tensor; labels: Tensor } {
  const labels = randint(0, 4, [size]);
  const images = tidy(() => {
    const canvas = zeros([size, 1, 16, 16]);
    (labels.toArray() as number[]).forEach((label, index) => {
      const top = label < 2 ? 1 : 9;
      const left = label % 2 === 0 ? 1 : 9;
      canvas.select(0, index).slice(1, top, top + 6).slice(2, left, left + 6).fill_(1);
    });
    return canvas.add(randn([size, 1, 16, 16]).mul(0.5));
  });
  return { images, labels };
}

const steps = Number(process.env.EXAMPLE_STEPS ?? 100);
const results: Record<string, number> = {};
for (const method of ['masksub', 'dropsub'] as const) {
  manualSeed(0);
  const model = new Cnn();
  const optimizer = new optim.AdamW(model.parameters(), { lr: 3e-3 });
  for (let step = 0; step < steps; step++) {
    const { images, labels } = batch(32);
    // masksub: a quarter of the 16 patches zeroed in the sub forward; dropsub: dropout 0.2 there
    const result = method === 'masksub'
      ? masksub.step(model, images, labels, { method, ratio: 0.25, patchSize: 4 })
      : masksub.step(model, images, labels, { method, ratio: 0.2 });
    optimizer.step();
    optimizer.zeroGrad();
    images.dispose();
    labels.dispose();
    if (!result.finite) throw new Error(`${method}: the loss is not finite at step ${step}`);
  }
  model.eval();
  const test = batch(256);
  const correct = noGrad(() => tidy(() => model.forward(test.images).argmax(-1).eq(test.labels).sum().item()));
  results[method] = correct / 256;
  console.log(`${method}: test accuracy ${(100 * results[method]).toFixed(1)}% after ${steps} steps`);
}
console.log(JSON.stringify(results));
