// The documentation runs: docs/guide.md's code is examples/own-model.ts and runs; each example in
// examples/ runs on tiny generated data and learns; the API reference builds without a warning
// (TypeDoc: broken links, types used but not exported); the published package's file list holds
// what an install needs (dist, the addon's sources and build script) and no tests or results.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Runs an example as a user would in this repository: 'masksub' resolved to the sources. */
function runExample(file: string, environment: Record<string, string> = {}): string {
  // the examples write their checkpoints and runs under os.tmpdir(): here a directory removed afterwards
  const scratch = mkdtempSync(join(tmpdir(), 'masksub-example-test-'));
  try {
    const result = spawnSync(process.execPath, ['--conditions=masksub-source', '--import', 'tsx', join(root, 'examples', file)], {
      cwd: root, encoding: 'utf8', timeout: 120_000, env: { ...process.env, MASKSUB_THREADS: '2', TMPDIR: scratch, ...environment },
    });
    assert.equal(result.status, 0, `${file} exited with ${result.status} (signal ${result.signal}):\n${result.stderr}`);
    return result.stdout;
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** The JSON object an example prints on its last line. */
function lastJson(stdout: string): Record<string, number> {
  const lines = stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]) as Record<string, number>;
}

test('the guide\'s code block is examples/own-model.ts, and it trains, checkpoints and restores', () => {
  const guide = readFileSync(join(root, 'docs', 'guide.md'), 'utf8');
  const blocks = [...guide.matchAll(/```ts\n([\s\S]*?)```/g)].map((match) => match[1]);
  assert.equal(blocks.length, 1, 'one TypeScript block in the guide');
  assert.equal(blocks[0], readFileSync(join(root, 'examples', 'own-model.ts'), 'utf8'), 'docs/guide.md shows examples/own-model.ts as it is');
  assert.ok(blocks[0].split('\n').length <= 40, 'the guide stays short');
  const stdout = runExample('own-model.ts');
  const losses = [...stdout.matchAll(/main loss (\S+), sub loss (\S+)/g)].map((match) => [Number(match[1]), Number(match[2])]);
  assert.equal(losses.length, 8, '2 epochs of 4 batches');
  assert.ok(losses.flat().every((loss) => loss > 0 && loss < 10), `finite positive losses: ${losses}`);
  assert.match(stdout, /same logits true/);
});

test('the README\'s TypeScript example runs (its import of \'masksub\' pointed at the sources)', () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const code = /From TypeScript[^\n]*\n[\s\S]*?```ts\n([\s\S]*?)```/.exec(readme)?.[1] ?? '';
  assert.ok(code.includes('masksub.step('), 'the README shows masksub.step');
  const directory = mkdtempSync(join(tmpdir(), 'masksub-readme-'));
  try {
    const file = join(directory, 'readme.mts'); // an ES module, as in a package of type module
    writeFileSync(file, code.replaceAll(`from 'masksub'`, `from '${pathToFileURL(join(root, 'src', 'index.ts')).href}'`));
    const result = spawnSync(process.execPath, ['--import', 'tsx', file], { cwd: root, encoding: 'utf8', timeout: 60_000 });
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /^L1 \d+\.\d{3}, L2 \d+\.\d{3}\n$/);
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
});

test('examples/custom-cnn.ts (input masking from outside, DropSub) learns its task', () => {
  const accuracy = lastJson(runExample('custom-cnn.ts', { EXAMPLE_STEPS: '40' }));
  // 4 classes: chance is 25%
  assert.ok(accuracy.masksub > 0.9 && accuracy.dropsub > 0.9, JSON.stringify(accuracy));
});

test('examples/custom-transformer.ts (token dropping through Maskable, PathSub) learns its task', () => {
  const accuracy = lastJson(runExample('custom-transformer.ts', { EXAMPLE_STEPS: '50' }));
  // the majority class is about 55%
  assert.ok(accuracy.masksub > 0.8 && accuracy.pathsub > 0.8, JSON.stringify(accuracy));
});

test('examples/fine-tune.ts: the trainer from a script pretrains, fine-tunes with MaskSub from those weights, and the reloaded weights score the same', () => {
  const stdout = runExample('fine-tune.ts', { EXAMPLE_IMAGES: '512' });
  assert.match(stdout, /init: \d+ tensors from .*pretrain\/model\.safetensors/, 'the fine-tune run starts from the pretraining run\'s weights');
  assert.match(stdout, /\(main [\d.]+ sub [\d.]+\)/, 'the fine-tune run trains with a sub-model');
  const result = lastJson(stdout);
  // the reloaded model scores what the trainer measured on the same test images
  assert.equal(result.reloaded, result.fineTuned);
  assert.ok(result.pretrained > 10, `pretraining beats chance: ${result.pretrained}%`);
});

test('the API reference builds with no warning (TypeDoc: links resolve, every type used is exported)', () => {
  // typedoc.json sets treatWarningsAsErrors; --emit none checks without writing docs/api
  const result = spawnSync(process.execPath, [join(root, 'node_modules', 'typedoc', 'bin', 'typedoc'), '--emit', 'none'], {
    cwd: root, encoding: 'utf8', timeout: 120_000,
  });
  assert.equal(result.status, 0, `typedoc:\n${result.stdout}\n${result.stderr}`);
});

test('npm pack holds what an install needs and no tests, benchmarks or results', () => {
  const result = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8', timeout: 60_000 });
  assert.equal(result.status, 0, result.stderr);
  const files = (JSON.parse(result.stdout) as { files: { path: string }[] }[])[0].files.map((file) => file.path);
  for (const needed of ['package.json', 'README.md', 'CHANGELOG.md', 'binding.gyp', 'native/ops.def', 'native/core.cc', 'scripts/build-native.mjs', 'scripts/torch-config.mjs', 'src/index.ts']) {
    assert.ok(files.includes(needed), `the package holds ${needed}`);
  }
  // dist/ is built by `prepare` (npm ci, npm pack); check it when this tree has it
  if (existsSync(join(root, 'dist', 'index.js'))) assert.ok(files.includes('dist/index.js') && files.includes('dist/index.d.ts'));
  const unwanted = files.filter((path) => /^(test|bench|reference|runs|build|node_modules|docs\/api|\.ci)\//.test(path) || /\.test\.|results/.test(path));
  assert.deepEqual(unwanted, [], 'nothing of tests, benchmarks, results or local builds');
  const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  assert.equal(manifest.scripts.install, 'node scripts/build-native.mjs', 'the addon is built at install');
});
