// Lists the node_modules folders the benchmark needs at run time on a device machine (the addon
// build: node-addon-api, node-gyp; running TypeScript: tsx; the CLI's training run: zod,
// fastest-levenshtein, yaml, sharp with its libvips, tokenizers), with all their dependencies, from
// package-lock.json. Prints one path per line, relative to the repository root; a folder inside an
// already listed one (a nested node_modules) is left out, since tar takes it with its parent.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const roots = process.argv.slice(2).length ? process.argv.slice(2) : ['node-addon-api', 'node-gyp', 'tsx', 'yaml', 'vega', 'vega-lite', '@stdlib/stats-base-dists-t-cdf', 'sharp', 'zod', 'fastest-levenshtein', 'tokenizers'];
const packages = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')).packages;

// Node's lookup: <from>/node_modules/<name>, then each enclosing node_modules, then the top one.
function resolve(from, name) {
  let base = from;
  for (;;) {
    const candidate = `${base ? `${base}/` : ''}node_modules/${name}`;
    if (packages[candidate]) return candidate;
    if (!base) return null;
    const index = base.lastIndexOf('/node_modules/');
    base = index < 0 ? '' : base.slice(0, index);
  }
}

const seen = new Set();
function visit(path) {
  if (!path || seen.has(path) || !existsSync(join(root, path))) return;
  seen.add(path);
  const entry = packages[path];
  const names = Object.keys({ ...(entry.dependencies ?? {}), ...(entry.optionalDependencies ?? {}), ...(entry.peerDependencies ?? {}) });
  for (const name of names) visit(resolve(path, name));
}
for (const name of roots) {
  const path = `node_modules/${name}`;
  if (!packages[path] || !existsSync(join(root, path))) {
    process.stderr.write(`deps.mjs: ${path} is not installed; run npm ci first\n`);
    process.exit(1);
  }
  visit(path);
}
const listed = [...seen].sort();
const top = listed.filter((path) => !listed.some((other) => other !== path && path.startsWith(`${other}/`)));
process.stdout.write(top.join('\n') + '\n');
