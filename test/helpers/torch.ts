// Runs a PyTorch snippet in Debian's python3-torch (/usr/bin/python3) on tensors from this
// process, for cross-checks on the same inputs and weights. Values travel as JSON: float32
// values survive the float64 round trip exactly. The snippet can `import torch_models`: the
// project's one PyTorch reference (reference/torch_models.py) is on its sys.path.
//
// PyTorch runs the same libtorch kernels as our addon, so these cross-checks verify argument
// plumbing and composition (names, shapes, op order, masking, loss weights, optimizer
// arithmetic), not the kernels; finite differences and hand computations are the independent
// references.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type DType, type Tensor, tensor } from '../../src/tensor/tensor.js';

export const PYTHON = process.env.MASKSUB_PYTHON ?? '/usr/bin/python3';
/** The directory of reference/torch_models.py. */
export const REFERENCE_DIRECTORY = fileURLToPath(new URL('../../reference', import.meta.url));

interface Payload { shape: number[]; dtype: DType; data: number[] }

const prelude = `
import json, sys, math, torch
sys.path.insert(0, ${JSON.stringify(REFERENCE_DIRECTORY)})
import torch.nn.functional as F
torch.set_num_threads(1)
_DT = {'float32': torch.float32, 'float64': torch.float64, 'int64': torch.int64, 'int32': torch.int32, 'uint8': torch.uint8, 'bool': torch.bool}
_inputs = json.load(open(sys.argv[1]))
inp = {k: torch.tensor(v['data'], dtype=_DT[v['dtype']]).reshape(v['shape']) for k, v in _inputs.items()}
out = {}
`;
const epilogue = `
def _enc(t):
    t = t.detach().cpu()
    if t.dtype in (torch.float16, torch.bfloat16): t = t.float()
    return {'shape': list(t.shape), 'dtype': str(t.dtype).replace('torch.', ''), 'data': t.reshape(-1).tolist()}
print(json.dumps({k: _enc(v) if torch.is_tensor(v) else v for k, v in out.items()}))
`;

/** Runs `script` with `inp[name]` bound to torch tensors; it fills `out[name]`. */
export function runTorch(script: string, inputs: Record<string, Tensor>): Record<string, Tensor> {
  const directory = mkdtempSync(join(tmpdir(), 'masksub-torch-'));
  try {
    const payload: Record<string, Payload> = {};
    for (const [name, value] of Object.entries(inputs)) {
      const flat = Array.from(value.toTypedArray() as ArrayLike<number | bigint>, Number);
      payload[name] = { shape: value.shape, dtype: value.dtype, data: flat };
    }
    const inputPath = join(directory, 'inputs.json');
    const scriptPath = join(directory, 'script.py');
    writeFileSync(inputPath, JSON.stringify(payload));
    writeFileSync(scriptPath, prelude + script + epilogue);
    let stdout: string;
    try {
      stdout = execFileSync(PYTHON, [scriptPath, inputPath], { encoding: 'utf8', maxBuffer: 256 << 20, stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (error) {
      const stderr = String((error as { stderr?: unknown }).stderr ?? '');
      // These cross-checks never skip: without PyTorch they fail with what to install.
      if (/No module named 'torch'|ENOENT/.test(stderr + String(error))) {
        throw new Error(`${PYTHON} cannot import torch: install Debian's python3-torch (bash scripts/setup.sh does) or point MASKSUB_PYTHON at a python3 with torch`);
      }
      throw new Error(`the PyTorch side failed:\n${stderr.trim() || String(error)}`);
    }
    const result = JSON.parse(stdout) as Record<string, Payload | number>;
    const tensors: Record<string, Tensor> = {};
    for (const [name, value] of Object.entries(result)) {
      if (typeof value === 'number') tensors[name] = tensor([value], { dtype: 'float64' });
      else tensors[name] = tensor(value.data, { dtype: value.dtype, shape: value.shape });
    }
    return tensors;
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
}

/** max |a - b| / max(1, max |b|): the error relative to the scale of the reference. */
export function relativeError(actual: Tensor, expected: Tensor): number {
  const a = Array.from(actual.toTypedArray() as ArrayLike<number>, Number);
  const b = Array.from(expected.toTypedArray() as ArrayLike<number>, Number);
  if (a.length !== b.length) throw new Error(`sizes differ: ${a.length} vs ${b.length}`);
  let scale = 1;
  let worst = 0;
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]));
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst / scale;
}
