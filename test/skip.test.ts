// The rule for tests that need an outside tool (test/helpers/skip.ts): run when it is there,
// skip with the reason without it, and fail instead of skipping in CI.
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { skipWithout } from './helpers/skip.js';

test('skipWithout: runs with the tool, skips without it, fails without it when CI=true', () => {
  const saved = process.env.CI;
  // A stand-in context that records the skip, so this test itself is not reported as skipped.
  const skips: (string | undefined)[] = [];
  const context = { skip: (message?: string) => { skips.push(message); } } as unknown as TestContext;
  try {
    process.env.CI = 'true';
    assert.equal(skipWithout(context, null), false, 'a present tool never skips');
    assert.throws(() => skipWithout(context, '/usr/bin/chromium not found'), /\/usr\/bin\/chromium not found; CI=true, so this test must run rather than skip/);
    assert.deepEqual(skips, [], 'in CI nothing is skipped');
    delete process.env.CI;
    assert.equal(skipWithout(context, null), false);
    assert.equal(skipWithout(context, '/usr/bin/chromium not found'), true);
    assert.deepEqual(skips, ['/usr/bin/chromium not found'], 'outside CI the test is skipped with the reason');
  } finally {
    if (saved === undefined) delete process.env.CI;
    else process.env.CI = saved;
  }
});
