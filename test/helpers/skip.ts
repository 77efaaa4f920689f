// The one rule for tests that need an outside tool (Chromium, numpy, ...): on a developer's
// machine a missing tool skips the test with the reason; in CI (CI=true, as CI services set it)
// it fails the test, because there the set-up installs every tool and a skip would hide a gap.
import type { TestContext } from 'node:test';

/**
 * Returns false when the tool is there (missing === null). Otherwise skips the test and returns
 * true, or throws when process.env.CI is 'true'. Use: `if (skipWithout(t, chromiumMissing())) return;`
 */
export function skipWithout(t: TestContext, missing: string | null): boolean {
  if (missing === null) return false;
  if (process.env.CI === 'true') {
    throw new Error(`${missing}; CI=true, so this test must run rather than skip (install the tool in the set-up)`);
  }
  t.skip(missing);
  return true;
}
