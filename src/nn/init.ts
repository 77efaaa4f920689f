// Weight initialisers (torch.nn.init and timm's trunc_normal_), in place under no_grad.
import { type Generator, noGrad, type Tensor } from '../tensor/tensor.js';

function fans(tensor: Tensor): { fanIn: number; fanOut: number } {
  const shape = tensor.shape;
  if (shape.length < 2) throw new Error(`fan in/out needs at least 2 dimensions, got [${shape.join(', ')}]`);
  const receptive = shape.slice(2).reduce((a, b) => a * b, 1);
  return { fanIn: shape[1] * receptive, fanOut: shape[0] * receptive };
}

const normalCdf = (x: number): number => (1 + erf(x / Math.SQRT2)) / 2;

// Abramowitz-Stegun 7.1.26 is too coarse for the bounds here; use a series/continued fraction.
function erf(x: number): number {
  const sign = Math.sign(x);
  const z = Math.abs(x);
  if (z < 3) {
    let term = z;
    let sum = z;
    for (let n = 1; n < 100; n++) {
      term *= (-z * z) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17) break;
    }
    return (sign * 2 * sum) / Math.sqrt(Math.PI);
  }
  // Continued fraction for erfc at large z.
  let fraction = 0;
  for (let n = 60; n >= 1; n--) fraction = n / 2 / (z + fraction);
  const erfc = Math.exp(-z * z) / Math.sqrt(Math.PI) / (z + fraction);
  return sign * (1 - erfc);
}

/** timm's trunc_normal_: normal(mean, std) truncated to the absolute interval [a, b]. */
export function truncNormal_(tensor: Tensor, std = 1, mean = 0, a = -2, b = 2, generator?: Generator): Tensor {
  const low = normalCdf((a - mean) / std);
  const high = normalCdf((b - mean) / std);
  noGrad(() => {
    tensor.uniform_(2 * low - 1, 2 * high - 1, generator);
    tensor.erfinv_();
    tensor.mul_(std * Math.SQRT2);
    tensor.add_(mean);
    tensor.clamp_(a, b);
  });
  return tensor;
}

export function normal_(tensor: Tensor, mean = 0, std = 1, generator?: Generator): Tensor {
  noGrad(() => tensor.normal_(mean, std, generator));
  return tensor;
}

export function uniform_(tensor: Tensor, low = 0, high = 1, generator?: Generator): Tensor {
  noGrad(() => tensor.uniform_(low, high, generator));
  return tensor;
}

export function constant_(tensor: Tensor, value: number): Tensor {
  noGrad(() => tensor.fill_(value));
  return tensor;
}

export const zeros_ = (tensor: Tensor): Tensor => constant_(tensor, 0);
export const ones_ = (tensor: Tensor): Tensor => constant_(tensor, 1);

export type Nonlinearity = 'relu' | 'leaky_relu' | 'linear' | 'tanh' | 'sigmoid';
function gain(nonlinearity: Nonlinearity, slope: number): number {
  switch (nonlinearity) {
    case 'relu': return Math.SQRT2;
    case 'leaky_relu': return Math.sqrt(2 / (1 + slope * slope));
    case 'tanh': return 5 / 3;
    default: return 1;
  }
}

export interface KaimingOptions { a?: number; mode?: 'fan_in' | 'fan_out'; nonlinearity?: Nonlinearity; generator?: Generator }

export function kaimingNormal_(tensor: Tensor, options: KaimingOptions = {}): Tensor {
  const { fanIn, fanOut } = fans(tensor);
  const fan = options.mode === 'fan_out' ? fanOut : fanIn;
  const std = gain(options.nonlinearity ?? 'leaky_relu', options.a ?? 0) / Math.sqrt(fan);
  return normal_(tensor, 0, std, options.generator);
}

export function kaimingUniform_(tensor: Tensor, options: KaimingOptions = {}): Tensor {
  const { fanIn, fanOut } = fans(tensor);
  const fan = options.mode === 'fan_out' ? fanOut : fanIn;
  const bound = (gain(options.nonlinearity ?? 'leaky_relu', options.a ?? 0) * Math.sqrt(3)) / Math.sqrt(fan);
  return uniform_(tensor, -bound, bound, options.generator);
}

export function xavierUniform_(tensor: Tensor, gainValue = 1, generator?: Generator): Tensor {
  const { fanIn, fanOut } = fans(tensor);
  const bound = gainValue * Math.sqrt(6 / (fanIn + fanOut));
  return uniform_(tensor, -bound, bound, generator);
}

export function xavierNormal_(tensor: Tensor, gainValue = 1, generator?: Generator): Tensor {
  const { fanIn, fanOut } = fans(tensor);
  return normal_(tensor, 0, gainValue * Math.sqrt(2 / (fanIn + fanOut)), generator);
}

export { fans as fanInOut };
