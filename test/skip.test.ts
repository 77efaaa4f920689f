// The rule for tests that need an outside tool (test/helpers/skip.ts): run when it is there,
// skip with the reason without it, and fail instead of skipping in CI.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { skipWithout } from './helpers/skip.js';

test('skipWithout: runs with the tool, skips without it, fails without it when CI=true', async (t) => {
  const saved = process.env.CI;
  try {
    process.env.CI = 'true';
    assert.equal(skipWithout(t, null), false, 'a present tool never skips');
    assert.throws(() => skipWithout(t, '/usr/bin/chromium not found'), /\/usr\/bin\/chromium not found; CI=true, so this test must run rather than skip/);
    delete process.env.CI;
    let skipped: boolean | null = null;
    await t.test('a test whose tool is missing outside CI (reported as skipped)', (inner) => {
      skipped = skipWithout(inner, 'a tool for this demonstration is missing');
    });
    assert.equal(skipped, true);
  } finally {
    if (saved === undefined) delete process.env.CI;
    else process.env.CI = saved;
  }
});
