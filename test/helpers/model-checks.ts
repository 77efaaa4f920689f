// Checks every image-model family's tests run the same way (Swin, BEiT, the CLIP tower): a model
// moved away from its init's constants, its weights handed to a PyTorch reference, logits and
// cross-entropy gradients compared plain and masked on the same masking noise, and a few MaskSub
// steps that must leave the live tensor count flat.
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';

import { Generator, noGrad, rand, randint, randn, type Tensor, tidy, zerosLike } from '../../src/index.js';
import * as F from '../../src/nn/functional.js';
import type { Classifier } from '../../src/models/classifier.js';
import { type Criterion, methodStep } from '../../src/masksub/method.js';
import type { Optimizer } from '../../src/optim/index.js';
import { liveTensors } from '../../src/tensor/native.js';
import { relativeError, runTorch } from './torch.js';

const CE: Criterion = { kind: 'ce', labelSmoothing: 0, bceTargetThreshold: null };

/** Moves every parameter away from its init's constants (unit norms, zero biases), so every parameter matters. */
export function perturbParameters(model: Classifier, scale = 0.05): void {
  noGrad(() => tidy(() => {
    for (const parameter of model.parameters()) parameter.add_(randn(parameter.shape).mul(scale));
  }));
}

/** The state dict as runTorch inputs named `w:<key>`. */
export function weightInputs(model: Classifier): Record<string, Tensor> {
  const inputs: Record<string, Tensor> = {};
  for (const [key, value] of model.stateDict()) inputs[`w:${key}`] = value;
  return inputs;
}

/** Runs a CE loss backward and returns each parameter's gradient by name (copied, so zeroGrad cannot touch it). */
export function gradientsOf(model: Classifier, logits: Tensor, labels: Tensor): Map<string, Tensor> {
  model.zeroGrad();
  F.crossEntropy(logits, labels).backward();
  // A parameter the forward did not use (a mask token without masking) has no gradient: 0, as in the Python.
  return new Map(model.namedParameters().map(([name, parameter]) => [name, parameter.grad ? parameter.grad.clone() : zerosLike(parameter)]));
}

/**
 * max |a - b| / max |b|: relative to the gradient's own scale (relativeError floors the scale at 1,
 * which would let small gradients pass on absolute error); 0 when both are 0.
 */
export function scaledError(actual: Tensor, expected: Tensor): number {
  return tidy(() => {
    const scale = expected.abs().max().item();
    const difference = actual.sub(expected).abs().max().item();
    return scale === 0 ? difference : difference / scale;
  });
}

export interface TorchComparison {
  logits: Tensor;
  masked: Tensor;
  gradients: Map<string, Tensor>;
  maskedGradients: Map<string, Tensor>;
}

/**
 * Our logits and CE gradients, plain and masked (ratio, noise from Generator(23) over `tokens`
 * patches), against the PyTorch model that `python` defines as `load(cfg, weights)` with a forward
 * `m(x, ratio=, noise=)`. Asserts logits within 1e-5 and gradients within 1e-4 of the reference.
 */
export function checkAgainstTorch(t: TestContext, model: Classifier & { config: object }, python: string, images: Tensor, labels: Tensor, tokens: number, ratio = 0.5): TorchComparison {
  const noise = rand([images.shape[0] ?? 0, tokens], { generator: new Generator(23) });
  const logits = model.forward(images);
  const gradients = gradientsOf(model, logits, labels);
  const masked = model.forward(images, { maskRatio: ratio, generator: new Generator(23) });
  const maskedGradients = gradientsOf(model, masked, labels);

  const result = runTorch(`${python}
from torch_models import parameter_gradients
cfg = json.loads(${JSON.stringify(JSON.stringify(model.config))})
m = load(cfg, {k[2:]: v for k, v in inp.items() if k.startswith('w:')}).eval()
logits = m(inp['x'])
out['logits'] = logits
F.cross_entropy(logits, inp['y']).backward()
out.update({'g:' + name: grad for name, grad in parameter_gradients(m).items()})
m.zero_grad(set_to_none=True)
masked = m(inp['x'], ratio=${ratio}, noise=inp['noise'])
out['masked'] = masked
F.cross_entropy(masked, inp['y']).backward()
out.update({'mg:' + name: grad for name, grad in parameter_gradients(m).items()})
`, { x: images, y: labels, noise, ...weightInputs(model) });

  const logitError = relativeError(logits, result['logits'] as Tensor);
  const maskedError = relativeError(masked, result['masked'] as Tensor);
  let gradientError = 0;
  let maskedGradientError = 0;
  let worst = '';
  for (const [name, gradient] of gradients) {
    const error = scaledError(gradient, result[`g:${name}`] as Tensor);
    if (error > gradientError) [gradientError, worst] = [error, name];
    maskedGradientError = Math.max(maskedGradientError, scaledError(maskedGradients.get(name) as Tensor, result[`mg:${name}`] as Tensor));
  }
  t.diagnostic(`relative errors: logits ${logitError.toExponential(2)}, gradients ${gradientError.toExponential(2)} (worst ${worst}); `
    + `masked logits ${maskedError.toExponential(2)}, masked gradients ${maskedGradientError.toExponential(2)}`);
  assert.ok(logitError < 1e-5, `logits: ${logitError}`);
  assert.ok(gradientError < 1e-4, `gradients: ${gradientError} at ${worst}`);
  assert.ok(maskedError < 1e-5, `masked logits: ${maskedError}`);
  assert.ok(maskedGradientError < 1e-4, `masked gradients: ${maskedGradientError}`);
  assert.ok(logits.std().item() > 1e-3, 'logits are not constant');
  return { logits, masked, gradients, maskedGradients };
}

/**
 * Five MaskSub steps (ratio 0.5, CE) on one batch: finite main and sub losses, and after the
 * first steps (which create the optimizer state and gradients) a flat live tensor count.
 */
export function maskSubStepsStayFlat(t: TestContext, model: Classifier, optimizer: Optimizer): void {
  // A batch of 8 one-channel 28-px images with 10 classes: the micro configs every caller tests.
  const images = randn([8, 1, 28, 28]);
  const labels = randint(0, 10, [8], { dtype: 'int64' });
  const counts: number[] = [];
  const losses: string[] = [];
  for (let step = 0; step < 5; step++) {
    tidy(() => {
      optimizer.zeroGrad();
      const result = methodStep(model, images, labels, { method: 'masksub', ratio: 0.5, subWeight: 0.5, criterion: CE });
      assert.ok(result.finite && Number.isFinite(result.loss), `step ${step}: loss ${result.loss}`);
      assert.ok(result.lossSub !== null && Number.isFinite(result.lossSub), `step ${step}: sub loss ${result.lossSub}`);
      losses.push(`${result.lossMain.toFixed(3)}/${(result.lossSub as number).toFixed(3)}`);
      optimizer.step();
    });
    counts.push(liveTensors());
  }
  images.dispose();
  labels.dispose();
  t.diagnostic(`main/sub losses ${losses.join(' ')}; live tensors after each step ${counts.join(' ')}`);
  assert.deepEqual(counts.slice(2), new Array<number>(3).fill(counts[1]), `live tensors: ${counts.join(' ')}`);
}
