// bench/gpu/step-bench.ts, the GPU step benchmark issue 15 runs (ours / PyTorch eager per step for
// the fmnist ViT, ViT-S/16 bf16 and ResNet-50 bf16 channels_last): its CPU dry run end to end on
// the smallest case (both sides run, rounds alternate, the result file holds the pairing), and the
// summary's arithmetic on hand-made records.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { GPU_CASES, type StepResult, summarize } from '../bench/gpu/step-bench.js';

const root = mkdtempSync(join(tmpdir(), 'masksub-gpu-step-bench-'));
after(() => rmSync(root, { recursive: true, force: true }));

test('the GPU cases are issue 15\'s: fmnist ViT fp32, ViT-S/16 224 bf16 b256, ResNet-50 224 bf16 channels_last b256', () => {
  assert.deepEqual(GPU_CASES.map((item) => [item.model, item.imageSize, item.batchSize, item.amp, item.channelsLast]), [
    ['vit_fmnist', 28, 128, 'none', false], ['vit_small_patch16_224', 224, 256, 'bf16', false], ['resnet50', 224, 256, 'bf16', true],
  ]);
});

test('summarize pairs ours and PyTorch within each round and MaskSub with the baseline of the same side', () => {
  const result = (impl: 'ours' | 'pytorch', seconds: number, gpu: number): StepResult => ({ impl, stepSeconds: [seconds], medianStepSeconds: seconds, finalLoss: 1, numParameters: 1, gpuUsedMiB: gpu });
  const records = [
    { round: 0, case: 'c', method: 'baseline' as const, result: result('ours', 0.010, 900) },
    { round: 0, case: 'c', method: 'baseline' as const, result: result('pytorch', 0.020, 1000) },
    { round: 0, case: 'c', method: 'masksub' as const, result: result('ours', 0.015, 900) },
    { round: 0, case: 'c', method: 'masksub' as const, result: result('pytorch', 0.040, 1000) },
    { round: 1, case: 'c', method: 'baseline' as const, result: result('ours', 0.030, 900) },
    { round: 1, case: 'c', method: 'baseline' as const, result: result('pytorch', 0.040, 1200) },
    { round: 1, case: 'c', method: 'masksub' as const, result: { impl: 'ours' as const, error: 'exit 1' } },
    { round: 1, case: 'c', method: 'masksub' as const, result: result('pytorch', 0.050, 1000) },
  ];
  const [baseline, masksub] = summarize(records, ['c']);
  // Rounds: 0.5 and 0.75 -> median 0.625; memory 0.9 and 0.75 -> 0.825.
  assert.equal(baseline!.ratio, 0.625);
  assert.ok(Math.abs(baseline!.memoryRatio! - 0.825) < 1e-12);
  assert.equal(baseline!.oursMs, 20);
  // The failed round-1 MaskSub process drops that round's pairs only.
  assert.equal(masksub!.ratio, 0.375);
  assert.equal(masksub!.masksubCostOurs, 1.5);
  // PyTorch per round: 0.040 / 0.020 = 2 and 0.050 / 0.040 = 1.25 -> 1.625.
  assert.equal(masksub!.masksubCostPytorch, 1.625);
});

test('the CPU dry run measures both sides in alternating order and writes the paired result', { timeout: 300_000 }, () => {
  const run = spawnSync(process.execPath, ['--import', 'tsx', 'bench/gpu/step-bench.ts', '--device', 'cpu', '--tiny', '--cases', 'vit_micro', '--rounds', '2', '--out', root], {
    encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' },
  });
  assert.equal(run.status, 0, run.stderr);
  const order = run.stderr.split('\n').filter((line) => / round \d /.test(line)).map((line) => / round (\d) \S+ \S+ \S+ (\w+) (\w+):/.exec(line)!.slice(1).join(' '));
  assert.deepEqual(order, ['1 baseline ours', '1 baseline pytorch', '1 masksub ours', '1 masksub pytorch', '2 baseline pytorch', '2 baseline ours', '2 masksub pytorch', '2 masksub ours']);
  const file = readdirSync(root).find((name) => name.startsWith('gpu-steps-cpu-'));
  assert.ok(file, 'a result file');
  const saved = JSON.parse(readFileSync(join(root, file), 'utf8')) as { rows: { method: string; ratio: number; oursMs: number; pytorchMs: number }[]; records: { result: { finalLoss?: number } }[] };
  assert.equal(saved.records.length, 8);
  for (const record of saved.records) assert.ok(Number.isFinite(record.result.finalLoss), JSON.stringify(record.result).slice(0, 300));
  assert.deepEqual(saved.rows.map((row) => row.method), ['baseline', 'masksub']);
  for (const row of saved.rows) assert.ok(row.ratio > 0 && row.oursMs > 0 && row.pytorchMs > 0, JSON.stringify(row));
  assert.match(run.stdout, /\| vit_micro fp32 b4 \| masksub \|/);
});
