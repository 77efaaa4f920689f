// Finds libtorch for the native addon, in this order: $LIBTORCH; the torch that `python3`
// imports (how a CUDA build happens on a GPU machine); the system's (Debian's libtorch-dev).
// Used by build-native.mjs and, through its CLI, by binding.gyp.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

export const APT_HINT =
  'apt-get update && apt-get install -y libtorch-dev libopenblas0-openmp';

function fromRoot(root, source) {
  const include = [join(root, 'include'), join(root, 'include/torch/csrc/api/include')];
  const lib = join(root, 'lib');
  if (!existsSync(join(include[0], 'ATen/ATen.h')) || !existsSync(join(lib, 'libtorch.so'))) {
    return null;
  }
  return { source, include, lib };
}

function fromPython() {
  const python = process.env.PYTHON3 || 'python3';
  try {
    const out = execFileSync(
      python,
      ['-c', 'import torch, os; print(os.path.dirname(torch.__file__)); print(int(torch._C._GLIBCXX_USE_CXX11_ABI))'],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
    ).trim().split('\n');
    const found = fromRoot(out[0], `python3 torch at ${out[0]}`);
    if (found) found.abi = Number(out[1]);
    return found;
  } catch {
    return null;
  }
}

function fromSystem() {
  const lib = ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib', '/usr/local/lib']
    .find((dir) => existsSync(join(dir, 'libtorch.so')));
  const includeRoot = ['/usr/include', '/usr/local/include'].find((dir) => existsSync(join(dir, 'ATen/ATen.h')));
  if (!lib || !includeRoot) return null;
  return {
    source: `system libtorch (${lib})`,
    include: [includeRoot, join(includeRoot, 'torch/csrc/api/include')],
    lib,
  };
}

// The C++ ABI flag must match the one libtorch was built with, or linking fails on std::string.
function detectAbi(lib) {
  try {
    const symbols = execFileSync('nm', ['-D', '--defined-only', join(lib, 'libc10.so')], {
      encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 64 << 20,
    });
    return symbols.includes('__cxx11') ? 1 : 0;
  } catch {
    return 1;
  }
}

export function findTorch() {
  let found = null;
  if (process.env.LIBTORCH) {
    found = fromRoot(process.env.LIBTORCH, `LIBTORCH=${process.env.LIBTORCH}`);
    if (!found) throw new Error(`LIBTORCH=${process.env.LIBTORCH} has no include/ATen/ATen.h and lib/libtorch.so`);
  }
  found = found || fromPython() || fromSystem();
  if (!found) return null;
  if (found.abi === undefined) found.abi = detectAbi(found.lib);
  const libs = readdirSync(found.lib);
  found.cuda = libs.includes('libtorch_cuda.so');
  // c10d's Gloo process group (native/distributed.cc) needs gloo's headers beside torch's:
  // Debian's libtorch is built with the system gloo, whose headers come with libgloo-dev.
  const glooInclude = [...found.include, '/usr/include', '/usr/local/include']
    .find((dir) => existsSync(join(dir, 'gloo/algorithm.h')));
  found.distributed = glooInclude !== undefined && existsSync(join(found.include[0], 'torch/csrc/distributed/c10d/ProcessGroupGloo.hpp'));
  if (glooInclude !== undefined && !found.include.includes(glooInclude)) found.include.push(glooInclude);
  return found;
}

function gypValue(kind) {
  const torch = findTorch();
  if (!torch) throw new Error(`libtorch not found. Install it with: ${APT_HINT}`);
  switch (kind) {
    case 'include': return torch.include.join(' ');
    case 'defines': return [`_GLIBCXX_USE_CXX11_ABI=${torch.abi}`, ...(torch.cuda ? ['MASKSUB_CUDA=1'] : []), ...(torch.distributed ? ['MASKSUB_DISTRIBUTED=1'] : [])].join(' ');
    case 'libraries': {
      const base = [`-L${torch.lib}`, `-Wl,-rpath,${torch.lib}`];
      const cuda = torch.cuda ? ['-Wl,--no-as-needed', '-ltorch_cuda', '-lc10_cuda', '-Wl,--as-needed'] : [];
      return [...base, ...cuda, '-ltorch', '-ltorch_cpu', '-lc10'].join(' ');
    }
    case 'describe': return `${torch.source}, C++11 ABI ${torch.abi}, CUDA ${torch.cuda ? 'yes' : 'no'}, distributed (gloo) ${torch.distributed ? 'yes' : 'no'}`;
    default: throw new Error(`unknown query ${kind}`);
  }
}

if (process.argv[1] && process.argv[1].endsWith('torch-config.mjs')) {
  process.stdout.write(gypValue(process.argv[2]) + '\n');
}
