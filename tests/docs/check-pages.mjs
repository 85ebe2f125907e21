// Opens the service's API docs pages, /docs/ (Swagger UI) and /redoc (ReDoc),
// in headless Chromium with no network beyond loopback, and checks that each
// renders the API's operation list with no console error, no uncaught
// exception and no failed request. Run by tests/docs/check-pages.sh, which
// starts the server; see there.
//
// Usage: node tests/docs/check-pages.mjs BASE_URL SCREENSHOT_DIR
//   DOCS_CHROMIUM     the browser (default /usr/bin/chromium, Debian's)
//   DOCS_TIMEOUT_MS   how long a page may take to render (default 30000)
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const [base, shots] = process.argv.slice(2);
if (!base || !shots) {
  console.error('usage: check-pages.mjs BASE_URL SCREENSHOT_DIR');
  process.exit(2);
}
const executablePath = process.env.DOCS_CHROMIUM || '/usr/bin/chromium';
const timeout = Number(process.env.DOCS_TIMEOUT_MS || 30000);
const MIN_OPERATIONS = 10;
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);

// The operations the document declares: each page must show them all.
let spec;
try {
  const res = await fetch(new URL('/openapi.json', base));
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  spec = await res.json();
} catch (err) {
  console.error(`check-pages: cannot read ${new URL('/openapi.json', base)}: ${err.message}`);
  process.exit(1);
}
const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace'];
const operations = Object.entries(spec.paths).flatMap(([path, item]) =>
  METHODS.filter((m) => item[m]).map((m) => ({ method: m, path, operationId: item[m].operationId, summary: item[m].summary ?? '' })));
const paths = [...new Set(operations.map((o) => o.path))];

// Each page: where it is, and a function run in the page that reports what
// it shows ({ok, found, missing}); polled until ok or the timeout.
const pages = [
  {
    name: '/docs/ (Swagger UI)',
    path: '/docs/',
    screenshot: 'docs.png',
    fullPage: true,
    probe: ({ paths, min }) => {
      // Swagger UI puts zero-width spaces into paths so that they wrap.
      const shown = [...document.querySelectorAll('.opblock .opblock-summary-path')]
        .map((e) => (e.getAttribute('data-path') || e.textContent).replace(/\u200b/g, '').trim());
      const missing = paths.filter((p) => !shown.includes(p));
      if (shown.length < min) missing.unshift(`at least ${min} operations (.opblock)`);
      if (!shown.includes('/api/allocations/history')) missing.unshift('/api/allocations/history');
      return { ok: missing.length === 0, found: `${shown.length} operations`, missing: [...new Set(missing)] };
    },
  },
  {
    name: '/redoc (ReDoc)',
    path: '/redoc',
    screenshot: 'redoc.png',
    fullPage: false,
    probe: ({ paths, operationIds, summaries, min }) => {
      // ReDoc renders one section per operation (data-section-id
      // "tag/T/operation/ID" or "operation/ID"), with the path in its
      // endpoint box, and lists the summaries in its side menu. Only what
      // ReDoc rendered counts: the page's own script holds the document.
      const root = document.querySelector('.redoc-wrap');
      if (!root) return { ok: false, found: 'a blank page: ReDoc never rendered (no .redoc-wrap)', missing: ['everything'] };
      const text = root.textContent;
      const ids = new Set([...root.querySelectorAll('[data-section-id*="operation/"]')]
        .map((e) => e.getAttribute('data-section-id').replace(/^.*operation\//, '')));
      const menu = root.querySelectorAll('.menu-content li[data-item-id*="operation/"]').length;
      const missing = [
        ...paths.filter((p) => !text.includes(p)),
        ...operationIds.filter((id) => !ids.has(id)).map((id) => `operation ${id}`),
        ...summaries.filter((s) => !text.includes(s)).map((s) => `summary "${s}"`),
      ];
      if (ids.size < min) missing.unshift(`at least ${min} operation sections`);
      if (menu < min) missing.unshift(`at least ${min} operations in the side menu`);
      return { ok: missing.length === 0, found: `${ids.size} operation sections, ${menu} in the side menu`, missing };
    },
    // For the screenshot: open the menu's first tag, as a reader would, so
    // that the menu lists its operations (ReDoc keeps only the tag in view
    // open, so opening them all would not last).
    beforeScreenshot: async (page) => {
      await page.locator('.menu-content li[data-item-id^="tag/"]:not([data-item-id*="operation/"]) > label')
        .first().click({ timeout: 2000 }).catch(() => {});
      await page.waitForTimeout(1000);
    },
  },
];

const browser = await chromium.launch({
  executablePath,
  args: [
    '--no-sandbox',
    // A second guard behind the routing below: names other than loopback do
    // not resolve, so nothing the page misses can reach the network.
    '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1',
  ],
});

let passed = 0, failed = 0;
try {
  for (const docsPage of pages) {
    const problems = await checkPage(docsPage);
    if (problems.length === 0) {
      passed++;
      console.log(`ok   ${docsPage.name}`);
    } else {
      failed++;
      console.log(`FAIL ${docsPage.name}:`);
      for (const p of problems) console.log(`  - ${p}`);
    }
  }
} finally {
  await browser.close();
}
console.log(`docs pages: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);

async function checkPage({ name, path, screenshot, fullPage, probe, beforeScreenshot }) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 1000 }, serviceWorkers: 'block' });
  const page = await context.newPage();
  const blocked = [], consoleErrors = [], pageErrors = [], failedRequests = [];

  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if ((url.protocol === 'http:' || url.protocol === 'https:') && LOOPBACK.has(url.hostname)) return route.continue();
    if (url.protocol === 'data:' || url.protocol === 'blob:') return route.continue();
    blocked.push(route.request().url());
    return route.abort('blockedbyclient');
  });
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const where = msg.location()?.url;
    consoleErrors.push(`${msg.text()}${where ? ` (at ${where})` : ''}`);
  });
  page.on('pageerror', (err) => pageErrors.push(String(err.message || err).split('\n')[0]));
  page.on('requestfailed', (req) => {
    if (blocked.includes(req.url())) return; // reported as blocked
    failedRequests.push(`${req.url()} (${req.failure()?.errorText ?? 'failed'})`);
  });
  page.on('response', (res) => {
    if (res.status() >= 400) failedRequests.push(`${res.url()} (HTTP ${res.status()})`);
  });

  const problems = [];
  let rendered = null;
  try {
    await page.goto(new URL(path, base).href, { waitUntil: 'load', timeout });
    const args = {
      paths,
      operationIds: operations.map((o) => o.operationId).filter(Boolean),
      summaries: operations.map((o) => o.summary.split('\n')[0]).filter(Boolean),
      min: MIN_OPERATIONS,
    };
    const deadline = Date.now() + timeout;
    for (;;) {
      // A page that is still navigating throws; try again until the deadline.
      rendered = await page.evaluate(probe, args).catch((err) => rendered ??
        { ok: false, found: `nothing (${String(err.message || err).split('\n')[0]})`, missing: ['everything'] });
      if (rendered.ok || Date.now() > deadline) break;
      await page.waitForTimeout(250);
    }
    // Let late requests and errors show up before judging.
    await page.waitForLoadState('networkidle', { timeout: 5000 }).catch(() => {});
    await page.waitForTimeout(500);
  } catch (err) {
    problems.push(`could not load the page: ${String(err.message || err).split('\n')[0]}`);
  }

  if (rendered && !rendered.ok) {
    const m = rendered.missing;
    const list = m.length > 4 ? `${m.slice(0, 3).join(', ')} and ${m.length - 3} more` : m.join(', ');
    problems.push(`no operation list after ${timeout / 1000} s: found ${rendered.found}; missing ${list}`);
  }
  for (const u of [...new Set(blocked)]) problems.push(`blocked a request off loopback (the page needs the network): ${u}`);
  for (const e of pageErrors) problems.push(`uncaught exception: ${e}`);
  for (const e of consoleErrors) problems.push(`console error: ${e}`);
  for (const r of [...new Set(failedRequests)]) problems.push(`failed request: ${r}`);

  try {
    mkdirSync(shots, { recursive: true });
    if (rendered?.ok && beforeScreenshot) await beforeScreenshot(page);
    const file = join(shots, screenshot);
    await page.screenshot({ path: file, fullPage });
    console.log(`     ${name}: screenshot ${file}${rendered ? ` (${rendered.found})` : ''}`);
  } catch (err) {
    problems.push(`could not take a screenshot: ${String(err.message || err).split('\n')[0]}`);
  }
  await context.close();
  return problems;
}
