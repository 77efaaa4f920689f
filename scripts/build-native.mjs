// Builds the native addon (native/*.cc) against the libtorch that torch-config.mjs finds, and the
// image module (native/image/, libjpeg-turbo) for the data loader when libjpeg's headers are there.
// Runs as the package's install script, so `npm ci` gives a working addon or one clear error.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { APT_HINT, findTorch } from './torch-config.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
let torch;
try {
  torch = findTorch();
} catch (error) {
  console.error(`masksub: ${error.message}`);
  process.exit(1);
}
if (!torch) {
  console.error(`masksub: libtorch was not found (no $LIBTORCH, no torch in python3, no system libtorch).\nInstall it with:\n  ${APT_HINT}`);
  process.exit(1);
}
console.log(`masksub: building the native addon against ${torch.source} (C++11 ABI ${torch.abi}, CUDA ${torch.cuda ? 'yes' : 'no'}, distributed (gloo) ${torch.distributed ? 'yes' : 'no: apt-get install -y libgloo-dev'})`);

const require = createRequire(import.meta.url);
let gyp;
try {
  gyp = require.resolve('node-gyp/bin/node-gyp.js');
} catch {
  console.error('masksub: node-gyp is missing; run `npm ci` first');
  process.exit(1);
}
const args = [gyp, 'rebuild', '-j', 'max'];
// Build against the installed Node headers when present, so no header download is needed.
if (!process.env.npm_config_nodedir && existsSync('/usr/include/node/node.h')) args.push('--nodedir=/usr');
const result = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
if (result.status !== 0) process.exit(result.status ?? 1);

// The image module is optional: without it the loader decodes with sharp (the same bytes, slower),
// so its absence is said here and never fails the install.
const image = join(root, 'build', 'Release', 'masksub_image.node');
if (!existsSync(image)) {
  console.log('masksub: libjpeg-turbo\'s headers were not found, so the native image module was not built; the data loader decodes JPEGs with sharp (slower, the same bytes). For the faster path: apt-get install -y libjpeg62-turbo-dev && npm run build');
} else {
  const check = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(image)})`], { encoding: 'utf8' });
  if (check.status !== 0) console.log(`masksub: the native image module does not load (${check.stderr.trim().split('\n')[0]}); the data loader will decode with sharp`);
  else console.log('masksub: built the native image module (libjpeg-turbo) for the data loader');
}

// A shared library may link with undefined symbols, so a function listed in native/ops.def
// without an OP body would only fail when the addon is loaded; catch it here, naming it.
const addon = join(root, 'build', 'Release', 'masksub_native.node');
const symbols = spawnSync('nm', ['-C', '--undefined-only', addon], { encoding: 'utf8' });
if (symbols.status === 0) {
  const missing = symbols.stdout.split('\n')
    .map((line) => /\bmasksub::(\w+)\(/.exec(line)?.[1])
    .filter((name) => name !== undefined);
  if (missing.length > 0) {
    console.error(`masksub: native/ops.def lists functions without an OP body: ${[...new Set(missing)].join(', ')}`);
    process.exit(1);
  }
}
process.exit(0);
