// Opens a generated report.html in headless Chromium (Debian's /usr/bin/chromium via
// playwright-core) and measures what a reader sees. Shared by test/report-browser.test.ts
// (synthetic runs) and test/compare.test.ts (a real comparison).

import { existsSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

import { chromium, type Browser, type Page } from 'playwright-core';

export const CHROMIUM = process.env['MASKSUB_CHROMIUM'] ?? '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Why the browser tests cannot run here, or null when Chromium is available. */
export function chromiumMissing(): string | null {
  return existsSync(CHROMIUM) ? null : `${CHROMIUM} not found (install Debian's chromium package, or set MASKSUB_CHROMIUM)`;
}

/** Launches Chromium, runs `use`, and always closes the browser. */
export async function withBrowser<T>(use: (browser: Browser) => Promise<T>): Promise<T> {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  try {
    return await use(browser);
  } finally {
    await browser.close();
  }
}

export interface OpenedReport {
  page: Page;
  reportUrl: string;
  /** console.error messages and uncaught page errors. */
  consoleErrors: string[];
  failedRequests: string[];
  /** Requests for anything but the report itself and data: URLs (the report must be offline). */
  otherRequests: string[];
}

/** Opens report.html in a new page, recording console errors and every request it makes. */
export async function openReport(browser: Browser, htmlPath: string, viewport = { width: 1200, height: 900 }): Promise<OpenedReport> {
  const page = await browser.newPage({ viewport });
  const reportUrl = pathToFileURL(htmlPath).href;
  const opened: OpenedReport = { page, reportUrl, consoleErrors: [], failedRequests: [], otherRequests: [] };
  page.on('console', (message) => {
    if (message.type() === 'error') opened.consoleErrors.push(message.text());
  });
  page.on('pageerror', (error) => opened.consoleErrors.push(error.message));
  page.on('requestfailed', (request) => opened.failedRequests.push(`${request.url()}: ${request.failure()?.errorText ?? 'failed'}`));
  page.on('request', (request) => {
    if (request.url() !== reportUrl && !request.url().startsWith('data:')) opened.otherRequests.push(request.url());
  });
  const response = await page.goto(reportUrl, { waitUntil: 'load' });
  if (response !== null && !response.ok()) throw new Error(`${reportUrl}: HTTP ${response.status()}`);
  return opened;
}

export interface ChartGeometry {
  id: string;
  width: number;
  height: number;
  /** Shapes inside vega's data-mark groups (class role-mark). */
  marks: number;
  /**
   * Data-mark shapes a reader can see: painted (fill or stroke), not transparent and with a
   * non-empty box. A line through a single point is a path that draws nothing.
   */
  visibleMarks: number;
  paths: number;
  /** Every <text> of the chart, in document order (titles, axis labels, legend entries). */
  texts: string[];
}

/** Size, mark count and texts of every <figure class="chart"> on the page, in page order. */
export async function chartGeometry(page: Page): Promise<ChartGeometry[]> {
  return page.$$eval('figure.chart', (figures) =>
    figures.map((figure) => {
      const svg = figure.querySelector('svg');
      const box = svg?.getBoundingClientRect();
      return {
        id: figure.id,
        width: box?.width ?? 0,
        height: box?.height ?? 0,
        // vega tags each data mark group "role-mark"; count the drawn shapes inside them.
        marks: svg?.querySelectorAll('.role-mark path, .role-mark line, .role-mark rect, .role-mark circle').length ?? 0,
        visibleMarks: svg
          ? [...svg.querySelectorAll<SVGGraphicsElement>('.role-mark path, .role-mark line, .role-mark rect, .role-mark circle')].filter((shape) => {
            const box = shape.getBBox();
            const style = getComputedStyle(shape);
            const filled = style.fill !== 'none' && style.fill !== 'transparent' && Number(style.fillOpacity) > 0;
            const stroked = style.stroke !== 'none' && Number(style.strokeOpacity) > 0 && Number.parseFloat(style.strokeWidth) > 0;
            return (filled || stroked) && Number(style.opacity) > 0 && (box.width > 0 || box.height > 0);
          }).length
          : 0,
        paths: svg?.querySelectorAll('path, rect').length ?? 0,
        texts: svg ? [...svg.querySelectorAll('text')].map((text) => text.textContent ?? '') : [],
      };
    }),
  );
}
