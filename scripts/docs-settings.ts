// Regenerates the README's settings and methods tables from the configuration schema and the
// method table (`npm run docs:settings`); with --check it only says whether they are current
// (test/cli.test.ts makes the same check in npm test).
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { updateReadme } from '../src/cli/help.js';

const path = fileURLToPath(new URL('../README.md', import.meta.url));
const current = readFileSync(path, 'utf8');
const updated = updateReadme(current);
if (process.argv.includes('--check')) {
  if (updated !== current) {
    console.error(`${path}: the generated tables are out of date; run npm run docs:settings`);
    process.exitCode = 1;
  } else {
    console.log(`${path}: the generated tables are current`);
  }
} else if (updated !== current) {
  writeFileSync(path, updated);
  console.log(`${path}: tables regenerated`);
} else {
  console.log(`${path}: tables already current`);
}
