// The `masksub` command as a user runs it (a child process from source): help generated from the
// schema lists every setting and method, the README's generated tables are current, bad flags and
// edited config.json files are refused with a clear message before anything is written,
// MASKSUB_THREADS reaches a run, and a closed pipe (`| head -1`) does not stop training.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { updateReadme } from '../src/cli/help.js';
import { METHODS } from '../src/masksub/methods.js';
import { settingDocs } from '../src/train/config.js';
import { describe, metricsLines, REPO, runCli, stopStragglers, TINY } from './helpers/faults.js';

const root = mkdtempSync(join(tmpdir(), 'masksub-cli-'));
after(() => {
  stopStragglers();
  rmSync(root, { recursive: true, force: true });
});

/** Runs the CLI and checks that it failed with exit code `code` and this message on stderr. */
async function refused(args: readonly string[], message: string | RegExp, code = 2): Promise<void> {
  const result = await runCli(args);
  assert.equal(result.code, code, describe(result));
  const stderr = result.stderr.trim();
  if (typeof message === 'string') assert.equal(stderr, `masksub: ${message}`, describe(result));
  else assert.match(stderr, message, describe(result));
  assert.doesNotMatch(stderr, /\n\s+at /, 'no stack trace');
}

test('train --help lists every setting with its default and values, and the methods', async () => {
  const result = await runCli(['train', '--help']);
  assert.equal(result.code, 0, describe(result));
  for (const setting of settingDocs()) {
    const usage = setting.placeholder === null ? `--[no-]${setting.flag}` : `--${setting.flag} ${setting.placeholder}`;
    assert.ok(result.stdout.includes(`  ${usage} `) || result.stdout.includes(`  ${usage}\n`), `train --help lists ${usage}`);
    // Help lines are wrapped, so compare with whitespace collapsed.
    const flat = result.stdout.replace(/\s+/g, ' ');
    assert.ok(flat.includes(`[${setting.values}; default ${setting.defaultText}]`.replace(/\s+/g, ' ')), `${setting.flag}: values and default`);
  }
  for (const method of METHODS) assert.match(result.stdout, new RegExp(`^  ${method} `, 'm'), `train --help lists method ${method}`);
  for (const option of ['--out DIR', '--resume', '--overwrite', '--preset NAME', '--config FILE']) assert.ok(result.stdout.includes(`  ${option} `), option);
});

test('compare --help lists the settings it takes and says which it sets itself; masksub --help the commands', async () => {
  const compare = await runCli(['compare', '--help']);
  assert.equal(compare.code, 0, describe(compare));
  assert.ok(compare.stdout.includes('compare sets --method, --seed, --ratio itself'));
  assert.doesNotMatch(compare.stdout, /^ {2}--method NAME|^ {2}--seed N/m, 'settings compare sets are not listed as its flags');
  for (const option of ['--methods LIST', '--seeds LIST', '--ratios LIST', '--ratio X', '--epochs N', '--lr X']) assert.ok(compare.stdout.includes(`  ${option} `), option);
  const overview = await runCli(['--help']);
  assert.equal(overview.code, 0, describe(overview));
  for (const command of ['train', 'eval', 'compare', 'report', 'models', 'presets', 'info']) assert.match(overview.stdout, new RegExp(`^  ${command} `, 'm'));
  for (const method of METHODS) assert.match(overview.stdout, new RegExp(`^  ${method} `, 'm'));
  const bare = await runCli([]);
  assert.equal(bare.code, 2, 'no command is a usage error');
  assert.equal(bare.stdout, overview.stdout);
});

test('the README\'s settings and methods tables are what the schema generates (npm run docs:settings)', () => {
  const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
  assert.ok(readme === updateReadme(readme), 'README.md tables are out of date: run npm run docs:settings');
});

test('bad flags are refused with their message, before anything is written', async () => {
  const out = join(root, 'never');
  const train = (...flags: string[]): string[] => ['train', ...TINY, '--out', out, ...flags];
  await refused(train('--epochs', '0x2'), '--epochs must be an integer ≥ 1, got "0x2"');
  await refused(train('--no-foo'), 'unknown option --no-foo (see masksub train --help)');
  await refused(train('--no-epochs'), '--no-epochs: --no-X is only for true/false settings; --epochs takes a value (an integer ≥ 1)');
  await refused(train('--lerning-rate', '0.1'), 'unknown option --lerning-rate; did you mean --lr? (see masksub train --help)');
  await refused(train('--mask-patch-size', '7'),
    'mask-patch-size applies only to CNN models (masking zeroes square patches there); vit_micro is a ViT, which masks its own patch tokens: leave mask-patch-size out');
  await refused(['compare', ...TINY, '--out', out, '--seed', '3'], '--seed: compare trains one run per seed of --seeds; use --seeds (e.g. --seeds 3 for one seed)');
  await refused(['compare', ...TINY, '--out', out, '--methods', 'baseline,masksab'],
    '--methods must be one of baseline, masking, dropout, droppath, masksub, dropsub, pathsub, got "masksab"; did you mean \'masksub\'?');
  assert.ok(!existsSync(out), 'nothing was created');
});

/** A finished tiny run, made once (by the pipe test below). */
let finishedRun: string | null = null;

test('output piped into head -1 does not stop training; MASKSUB_THREADS is the threads default', { timeout: 120_000 }, async () => {
  const out = join(root, 'piped');
  // TINY without its --threads, so that the variable decides. Two epochs: head exits after the
  // first epoch's line, so the second epoch's line is written to a closed pipe (EPIPE).
  const args = [...TINY.filter((_, index) => TINY[index] !== '--threads' && TINY[index - 1] !== '--threads'), '--epochs', '2', '--warmup-epochs', '0'];
  const command = `set -o pipefail; ${[process.execPath, '--import', 'tsx', 'src/cli/main.ts', 'train', ...args, '--out', out].map((word) => `'${word}'`).join(' ')} | head -1`;
  const environment: NodeJS.ProcessEnv = { ...process.env, MASKSUB_THREADS: '1' };
  delete environment.NODE_TEST_CONTEXT;
  const child = spawn('bash', ['-c', command], { cwd: REPO, env: environment, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk; });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  const what = `exit ${code}\nstdout: ${stdout}\nstderr: ${stderr}`;
  assert.equal(code, 0, `masksub's own exit status (pipefail): ${what}`);
  assert.doesNotMatch(stderr, /EPIPE/, what);
  assert.match(stdout, /^epoch 1\/2 [^\n]*\n$/, `head printed one line: ${what}`);
  assert.ok(existsSync(join(out, 'done.json')), 'the run finished');
  assert.equal(metricsLines(out).length, 2, 'both epochs were trained');
  const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as { threads: number; machine: string };
  assert.equal(config.threads, 1, 'MASKSUB_THREADS=1 set the run\'s threads');
  assert.match(config.machine, /^1 thread\(s\) of /);
  finishedRun = out;
});

test('an edited config.json is validated by the schema: unknown keys and mistyped values are named', async (t) => {
  if (finishedRun === null) return t.skip('needs the run of the pipe test');
  const edited = (name: string, change: (config: Record<string, unknown>) => void): string => {
    const directory = join(root, name);
    cpSync(finishedRun as string, directory, { recursive: true });
    const path = join(directory, 'config.json');
    const config = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
    change(config);
    writeFileSync(path, JSON.stringify(config, null, 2));
    return directory;
  };
  const typo = edited('typo', (config) => { config.lerning_rate = 0.1; });
  await refused(['eval', '--checkpoint', typo], `${join(typo, 'config.json')}: cannot read the run's config: unknown setting 'lerning_rate'; did you mean 'lr'?`, 1);
  const text = edited('text-false', (config) => { config.ema = 'false'; });
  await refused(['eval', '--checkpoint', text], `${join(text, 'config.json')}: cannot read the run's config: ema must be true or false, got "false"`, 1);
});

test('the README\'s `npx masksub` runs the built command: dist/cli/main.js is executable (npm ci builds it)', () => {
  const bin = join(REPO, 'dist', 'cli', 'main.js');
  assert.ok(existsSync(bin), `${bin} is missing: npm ci (or npm run prepare) builds it`);
  assert.ok((statSync(bin).mode & 0o111) !== 0, `${bin} is not executable, so \`npx masksub\` fails with "Permission denied"`);
  const result = spawnSync('npx', ['--no-install', 'masksub', 'presets'], { cwd: REPO, encoding: 'utf8' });
  assert.equal(result.status, 0, `npx masksub presets: ${result.stderr}`);
  assert.match(result.stdout, /^quick\s/m);
});
