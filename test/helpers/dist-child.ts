// One rank of the collectives check in test/distributed.test.ts: joins the job described by its
// environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), runs each collective on values that
// depend on its rank, and prints what it got as one JSON line. MASKSUB_TEST_DIE_AFTER_JOIN=1 makes
// rank 1 exit right after joining (the others' next collective must then fail with a clear error).
import { ProcessGroup, worldFromEnvironment } from '../../src/distributed/index.js';
import { liveTensors } from '../../src/tensor/native.js';
import { tensor, tidy } from '../../src/tensor/tensor.js';

const world = worldFromEnvironment();
if (world === null) throw new Error('dist-child: WORLD_SIZE is not set');
const group = ProcessGroup.init(world, { timeoutSeconds: Number(process.env.MASKSUB_TEST_TIMEOUT ?? 30) });
if (process.env.MASKSUB_TEST_DIE_AFTER_JOIN === '1' && world.rank === 1) process.exit(3);
const rank = world.rank;
const before = liveTensors();
const result = tidy(() => {
  // Mixed dtypes and a non-contiguous view: several buckets, a flattened copy and its copy-back.
  const a = tensor(Float32Array.from({ length: 6 }, (_, index) => rank * 10 + index), { shape: [2, 3] });
  const b = tensor(Float64Array.of(rank + 0.5, -rank));
  const c = tensor(Float32Array.from({ length: 6 }, (_, index) => rank + index), { shape: [3, 2] }).transpose(0, 1);
  const d = tensor(Int32Array.of(rank, 7 * rank));
  group.allReduce([a, b, c, d], 'sum');
  const avg = tensor(Float32Array.of(rank, 2 * rank));
  group.allReduce([avg], 'avg');
  const max = tensor(Float32Array.of(rank, -rank));
  group.allReduce([max], 'max');
  const broadcast = [tensor(Float32Array.of(rank, rank + 1)), tensor(Int32Array.of(100 + rank))];
  group.broadcast(broadcast, 1);
  const json = group.broadcastJson(rank === 0 ? { text: 'from rank 0', values: [1, 2, 3] } : undefined, 0);
  const numbers = group.allReduceNumbers([rank, 1, 0.25], 'sum');
  group.barrier();
  return {
    sum: [a, b, c, d].map((item) => Array.from(item.toTypedArray() as ArrayLike<number>)),
    avg: Array.from(avg.toTypedArray() as Float32Array),
    max: Array.from(max.toTypedArray() as Float32Array),
    broadcast: broadcast.map((item) => Array.from(item.toTypedArray() as ArrayLike<number>)),
    json, numbers,
  };
});
let error = '';
if (process.env.MASKSUB_TEST_BAD_ROOT === '1') {
  try {
    tidy(() => group.broadcast([tensor(Float32Array.of(1))], 5));
  } catch (caught) {
    error = (caught as Error).message;
  }
}
process.stdout.write(JSON.stringify({ rank, ...result, leaked: liveTensors() - before, error }) + '\n');
group.destroy();
