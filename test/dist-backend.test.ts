// The process group's backend choice (--dist-backend auto|gloo|nccl, torch.distributed's default:
// NCCL for CUDA, Gloo for the CPU), the errors that name what a build or a device lacks, and the
// rank's device in a job (cuda = the GPU numbered LOCAL_RANK). NCCL itself needs a CUDA build and
// a GPU (bench/gpu/run-on-device.sh runs it); here the CPU build's answers are checked.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { availableBackends, DistributedError, ProcessGroup, rankDevice, resolveBackend } from '../src/distributed/index.js';
import { buildInfo, native } from '../src/tensor/native.js';

const world = { rank: 0, size: 2, localRank: 0, localSize: 2, masterAddr: '127.0.0.1', masterPort: 29400 };

test('this build lists its backends: gloo, and nccl only in a CUDA build', () => {
  const backends = availableBackends();
  assert.ok(backends.includes('gloo'), 'the CPU build has Gloo (libgloo-dev is installed by scripts/setup.sh)');
  assert.equal(backends.includes('nccl'), buildInfo().cuda && backends.includes('nccl'), 'NCCL only where CUDA is');
  if (!buildInfo().cuda) assert.deepEqual(backends, ['gloo']);
});

test('auto is torch.distributed\'s default: gloo on the CPU, nccl on a CUDA device, gloo with a note when the build has no NCCL', () => {
  assert.deepEqual(resolveBackend('auto', 'cpu', ['gloo', 'nccl']), { backend: 'gloo', note: null });
  assert.deepEqual(resolveBackend('auto', 'cuda:0', ['gloo', 'nccl']), { backend: 'nccl', note: null });
  assert.deepEqual(resolveBackend('gloo', 'cuda:1', ['gloo', 'nccl']), { backend: 'gloo', note: null }, 'gloo on a GPU when asked (through host memory)');
  assert.deepEqual(resolveBackend('nccl', 'cuda:1', ['gloo', 'nccl']), { backend: 'nccl', note: null });
  const fallback = resolveBackend('auto', 'cuda:0', ['gloo']);
  assert.equal(fallback.backend, 'gloo');
  assert.match(fallback.note ?? '', /--dist-backend auto on cuda:0 uses gloo: this build of masksub has no NCCL backend/);
});

test('asking for what cannot work is an error that says why', () => {
  assert.throws(() => resolveBackend('nccl', 'cpu', ['gloo', 'nccl']), (error: Error) =>
    error instanceof DistributedError && /--dist-backend nccl needs a CUDA device: NCCL moves CUDA tensors only/.test(error.message));
  assert.throws(() => resolveBackend('nccl', 'cuda:0', ['gloo']), (error: Error) =>
    error instanceof DistributedError && /this build of masksub has no NCCL backend/.test(error.message));
  if (!buildInfo().cuda) {
    // A CPU build names the missing CUDA torch, and the native guard says the same if reached directly.
    assert.match(native.distMissing('nccl'), /the libtorch it was built against has no CUDA \(libtorch_cuda\.so\).*--dist-backend gloo/);
    assert.throws(() => ProcessGroup.init(world, { timeoutSeconds: 1, backend: 'nccl', device: 'cuda:0' }), (error: Error) =>
      error instanceof DistributedError && /no NCCL backend/.test(error.message));
    assert.throws(() => native.distInit(0, 2, '127.0.0.1', 29401, 1000, '', 'nccl'), /no NCCL backend/);
  }
  assert.equal(native.distMissing('gloo'), '', 'nothing missing for a built backend');
  assert.throws(() => native.distMissing('mpi' as 'gloo'), /backend must be 'gloo' or 'nccl', got 'mpi'/);
  assert.throws(() => native.distInit(0, 2, '127.0.0.1', 29402, 1000, '', 'mpi' as 'gloo'), /backend must be 'gloo' or 'nccl', got 'mpi'/);
  assert.throws(() => ProcessGroup.init(world, { timeoutSeconds: 1, backend: 'nccl', device: 'cpu' }), /needs a CUDA device|no NCCL backend/);
});

test('a job\'s rank takes the GPU numbered LOCAL_RANK for --device cuda; an explicit cuda:N and the CPU stay', () => {
  assert.equal(rankDevice('cuda', { localRank: 3 }), 'cuda:3');
  assert.equal(rankDevice('cuda', null), 'cuda', 'a process alone keeps the default GPU');
  assert.equal(rankDevice('cuda:1', { localRank: 3 }), 'cuda:1');
  assert.equal(rankDevice('cpu', { localRank: 3 }), 'cpu');
});

test('a one-process group on the gloo backend reduces and broadcasts (the path --dist-backend auto takes on the CPU)', async () => {
  const { freePort } = await import('../src/distributed/launch.js');
  const port = await freePort();
  const group = ProcessGroup.init({ ...world, size: 1, masterPort: port }, { timeoutSeconds: 10, backend: resolveBackend('auto', 'cpu').backend, device: 'cpu' });
  try {
    assert.equal(group.backend, 'gloo');
    assert.deepEqual(group.allReduceNumbers([1.5, -2], 'sum'), [1.5, -2]);
    assert.deepEqual(group.broadcastJson({ a: [1, 2] }), { a: [1, 2] });
  } finally {
    group.destroy();
  }
});
