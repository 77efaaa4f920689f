// Opens the generated report.html in headless Chromium (Debian's /usr/bin/chromium via
// playwright-core) to check what a reader sees: every chart rendered with real size and marks, no
// console errors, no network requests. Leaves a full-page screenshot for a human to look at.
// The browser launch and measurements live in test/helpers/browser.ts (shared with compare.test.ts).

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { defaultSyntheticRuns, renderReport, writeSyntheticComparison } from '../src/report/index.js';
import { chartGeometry, chromiumMissing, openReport, withBrowser, type ChartGeometry } from './helpers/browser.js';
import { skipWithout } from './helpers/skip.js';

test('report.html renders every chart in headless Chromium, offline and without errors', { timeout: 60_000 }, async (t) => {
  if (skipWithout(t, chromiumMissing())) return;
  // Kept after the test on purpose: the screenshot is for a person to look at.
  const directory = mkdtempSync(join(tmpdir(), 'masksub-report-browser-'));
  writeSyntheticComparison(directory, { epochs: 10, runs: defaultSyntheticRuns() });
  const files = await renderReport(directory);
  assert.equal(files.charts.length, 5, 'the fixture has data for every chart');

  await withBrowser(async (browser) => {
    const { page, consoleErrors, failedRequests, otherRequests } = await openReport(browser, files.html);

    const geometry = await chartGeometry(page);
    assert.deepEqual(
      geometry.map((chart: ChartGeometry) => chart.id),
      ['accuracy-curves', 'train-losses', 'grad-norms', 'accuracy-vs-ratio', 'final-accuracy'],
    );
    for (const chart of geometry) {
      assert.ok(chart.width > 100 && chart.height > 100, `${chart.id}: rendered size ${chart.width}x${chart.height}`);
      assert.ok(chart.marks > 0, `${chart.id}: has data marks`);
      assert.ok(chart.paths > 0, `${chart.id}: has path/rect elements`);
    }
    const tableRows = await page.$$eval('table tbody tr', (rows) => rows.length);
    assert.equal(tableRows, files.comparison.groups.length);

    const screenshot = join(directory, 'report.png');
    await page.screenshot({ path: screenshot, fullPage: true });
    t.diagnostic(`screenshot: ${screenshot}`);
    console.log(`report screenshot: ${screenshot}`);

    assert.deepEqual(consoleErrors, [], 'no console errors');
    assert.deepEqual(failedRequests, [], 'no failed requests');
    assert.deepEqual(otherRequests, [], 'no requests besides the report itself');
  });
});
