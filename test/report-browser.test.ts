// Opens the generated report.html in headless Chromium (Debian's /usr/bin/chromium via
// playwright-core) to check what a reader sees: every chart rendered with real size and marks, no
// console errors, no network requests. Leaves a full-page screenshot for a human to look at.

import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { chromium } from 'playwright-core';

import { defaultSyntheticRuns, renderReport, writeSyntheticComparison } from '../src/report/index.js';

const CHROMIUM = process.env['MASKSUB_CHROMIUM'] ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

interface ChartGeometry {
  id: string;
  width: number;
  height: number;
  marks: number;
  paths: number;
}

test('report.html renders every chart in headless Chromium, offline and without errors', { timeout: 60_000 }, async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.skip(`${CHROMIUM} not found (install Debian's chromium package, or set MASKSUB_CHROMIUM)`);
    return;
  }
  // Kept after the test on purpose: the screenshot is for a person to look at.
  const directory = mkdtempSync(join(tmpdir(), 'masksub-report-browser-'));
  writeSyntheticComparison(directory, { epochs: 10, runs: defaultSyntheticRuns() });
  const files = await renderReport(directory);
  assert.equal(files.charts.length, 5, 'the fixture has data for every chart');

  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    const reportUrl = pathToFileURL(files.html).href;
    const consoleErrors: string[] = [];
    const failedRequests: string[] = [];
    const otherRequests: string[] = [];
    page.on('console', (message) => {
      if (message.type() === 'error') consoleErrors.push(message.text());
    });
    page.on('pageerror', (error) => consoleErrors.push(error.message));
    page.on('requestfailed', (request) => failedRequests.push(`${request.url()}: ${request.failure()?.errorText ?? 'failed'}`));
    page.on('request', (request) => {
      if (request.url() !== reportUrl && !request.url().startsWith('data:')) otherRequests.push(request.url());
    });

    const response = await page.goto(reportUrl, { waitUntil: 'load' });
    assert.ok(response === null || response.ok(), 'report.html loads');

    const geometry = await page.$$eval('figure.chart', (figures) =>
      figures.map((figure) => {
        const svg = figure.querySelector('svg');
        const box = svg?.getBoundingClientRect();
        return {
          id: figure.id,
          width: box?.width ?? 0,
          height: box?.height ?? 0,
          // vega tags each data mark group "role-mark"; count the drawn shapes inside them.
          marks: svg?.querySelectorAll('.role-mark path, .role-mark line, .role-mark rect, .role-mark circle').length ?? 0,
          paths: svg?.querySelectorAll('path, rect').length ?? 0,
        };
      }),
    );
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
  } finally {
    await browser.close();
  }
});
