// BatchNorm running statistics under MaskSub (issue 19): by default the masked sub forward
// normalizes with its own batch statistics but leaves the running averages (which evaluation
// uses) to the clean main forward; `subUpdatesRunningStats: true` is the official code's order
// (main forward, then the masked forward, both updating). Gradients do not depend on the choice:
// in train mode BatchNorm normalizes with the batch's statistics either way.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createModel, type ResNet } from '../src/models/index.js';
import { methodStep, type StepConfig } from '../src/masksub/method.js';
import { keep, manualSeed, noGrad, randn, type Tensor, tensor, tidy } from '../src/tensor/tensor.js';

const CRITERION = { kind: 'ce', labelSmoothing: 0.1, bceTargetThreshold: null } as const;

function buffersOf(model: ResNet): Map<string, number[]> {
  return new Map(model.namedBuffers().map(([name, buffer]) => [name, Array.from(buffer.toTypedArray() as ArrayLike<number | bigint>, Number)]));
}

/** Two identical resnet_micro models and a fixed batch. */
function setup(): { models: [ResNet, ResNet]; images: Tensor; labels: Tensor } {
  manualSeed(3);
  const first = createModel('resnet_micro', { inChannels: 1, numClasses: 10, imageSize: 28 }) as ResNet;
  const second = createModel('resnet_micro', { inChannels: 1, numClasses: 10, imageSize: 28 }) as ResNet;
  second.loadStateDict(first.stateDict());
  const images = keep(randn([16, 1, 28, 28]).mul(2).add(0.5));
  const labels = keep(tensor(Int32Array.from({ length: 16 }, (_, index) => index % 10)).long());
  return { models: [first, second], images, labels };
}

function assertSameBuffers(actual: Map<string, number[]>, expected: Map<string, number[]>, what: string): void {
  assert.deepEqual([...actual.keys()], [...expected.keys()]);
  for (const [name, values] of expected) assert.deepEqual(actual.get(name), values, `${what}: ${name}`);
}

test('default: after a MaskSub step the running statistics equal those after the clean main forward alone', () => {
  const { models: [model, reference], images, labels } = setup();
  const config: StepConfig = { method: 'masksub', ratio: 0.5, subWeight: 0.5, criterion: CRITERION };
  model.train();
  tidy(() => methodStep(model, images, labels, config));
  reference.train();
  noGrad(() => tidy(() => reference.forward(images)));
  const after = buffersOf(model);
  assertSameBuffers(after, buffersOf(reference), 'main forward alone');
  // and the statistics did move (the main forward updated them): not a vacuous comparison
  assert.notDeepEqual(after.get('bn1.running_mean'), Array.from({ length: after.get('bn1.running_mean')!.length }, () => 0));
  assert.equal(after.get('bn1.num_batches_tracked')![0], 1);
  for (const item of [model, reference]) item.dispose();
  images.dispose();
  labels.dispose();
});

test('subUpdatesRunningStats: the official order, main forward then the masked forward, both update', () => {
  const { models: [model, reference], images, labels } = setup();
  const config: StepConfig = { method: 'masksub', ratio: 0.5, subWeight: 0.5, criterion: CRITERION, subUpdatesRunningStats: true };
  model.train();
  manualSeed(11);
  tidy(() => methodStep(model, images, labels, config));
  reference.train();
  manualSeed(11); // the same masking noise: the main forward draws none (no dropout, no drop-path)
  noGrad(() => tidy(() => {
    reference.forward(images);
    reference.forward(images, { maskRatio: 0.5 });
  }));
  const after = buffersOf(model);
  assertSameBuffers(after, buffersOf(reference), 'official order');
  assert.equal(after.get('bn1.num_batches_tracked')![0], 2);
  for (const item of [model, reference]) item.dispose();
  images.dispose();
  labels.dispose();
});

test('the gradients of a MaskSub step do not depend on whether the sub forward updates the statistics', () => {
  const { models: [model, other], images, labels } = setup();
  for (const [item, update] of [[model, false], [other, true]] as const) {
    item.train();
    manualSeed(5);
    tidy(() => methodStep(item, images, labels, { method: 'masksub', ratio: 0.5, subWeight: 0.5, criterion: CRITERION, subUpdatesRunningStats: update }));
  }
  const grads = (item: ResNet): number[][] => item.parameters().map((parameter) => Array.from(parameter.grad!.toTypedArray() as Float32Array));
  assert.deepEqual(grads(model), grads(other));
  for (const item of [model, other]) item.dispose();
  images.dispose();
  labels.dispose();
});

test('single-branch methods and ViTs (no running statistics) are unaffected', () => {
  manualSeed(1);
  const vit = createModel('vit_micro', { inChannels: 1, numClasses: 10, imageSize: 28 });
  assert.equal(vit.buffers().length, 0);
  const { models: [model, reference], images, labels } = setup();
  model.train();
  reference.train();
  manualSeed(2);
  tidy(() => methodStep(model, images, labels, { method: 'masking', ratio: 0.5, subWeight: 0.5, criterion: CRITERION }));
  manualSeed(2);
  noGrad(() => tidy(() => reference.forward(images, { maskRatio: 0.5 })));
  assertSameBuffers(buffersOf(model), buffersOf(reference), 'masking (single model) updates as its forward does');
  for (const item of [model, reference, vit]) item.dispose();
  images.dispose();
  labels.dispose();
});
