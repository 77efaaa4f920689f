// Automatic mixed precision, torch.autocast's region as a scope: inside `autocast`, libtorch runs
// matmuls and convolutions in bfloat16 (or float16 on CUDA) and keeps softmax, norms and losses in
// float32 (its own op lists; native/autocast.cc). Weights stay float32 (the master copy the
// optimizer updates); gradients come back in float32.
import { native } from './native.js';

export type AutocastDtype = 'bfloat16' | 'float16';

/** The device type of a device string ('cuda:1' -> 'cuda'). */
function deviceType(device: string): 'cpu' | 'cuda' {
  if (device === 'cpu') return 'cpu';
  if (device === 'cuda' || device.startsWith('cuda:')) return 'cuda';
  throw new RangeError(`autocast: device must be cpu or cuda[:N], got '${device}'`);
}

/** Runs fn with autocast on for `device` in `dtype` (torch.autocast(device, dtype)); nests. */
export function autocast<T>(options: { device: string; dtype: AutocastDtype }, fn: () => T): T {
  const device = deviceType(options.device);
  const [enabled, dtype] = native.autocastEnter(device, options.dtype);
  try {
    return fn();
  } finally {
    native.autocastExit(device, enabled, dtype);
  }
}

/** Whether autocast is on for the device on this thread. */
export function isAutocastEnabled(device = 'cpu'): boolean {
  return native.autocastEnabled(deviceType(device));
}
