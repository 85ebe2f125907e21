// Opens the service's API docs pages, /docs/ (Swagger UI) and /redoc (ReDoc),
// in headless Chromium with no network beyond loopback, and checks that each
// renders the API's operation list with no console error, no uncaught
// exception and no failed request. Then checks Swagger UI's "Authorize"
// dialog on a server with authentication on (AUTH_BASE_URL): a call without
// credentials shows 401, one with the API key (scheme apiKey) 200, and, after
// logging out of that, one with the bearer token (scheme bearerAuth) 200; the
// expected 401 is the only failed request (and console error) let pass. Run
// by tests/docs/check-pages.sh, which starts the servers; see there.
//
// Usage: node tests/docs/check-pages.mjs BASE_URL SCREENSHOT_DIR AUTH_BASE_URL
//   DOCS_API_KEY        an API key AUTH_BASE_URL's server accepts (any role)
//   DOCS_BEARER_TOKEN   a JWT it accepts, of a caller that may list the history
//   DOCS_CHROMIUM       the browser (default /usr/bin/chromium, Debian's)
//   DOCS_TIMEOUT_MS     how long a page may take to render (default 30000)
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const [base, shots, authBase] = process.argv.slice(2);
const { DOCS_API_KEY: apiKey, DOCS_BEARER_TOKEN: bearerToken } = process.env;
if (!base || !shots || !authBase || !apiKey || !bearerToken) {
  console.error('usage: DOCS_API_KEY=... DOCS_BEARER_TOKEN=... check-pages.mjs BASE_URL SCREENSHOT_DIR AUTH_BASE_URL');
  process.exit(2);
}
const executablePath = process.env.DOCS_CHROMIUM || '/usr/bin/chromium';
const timeout = Number(process.env.DOCS_TIMEOUT_MS || 30000);
const MIN_OPERATIONS = 10;
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);
const AUTHORIZE_CHECK = '/docs/ Authorize (apiKey, then bearerAuth)';

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
const report = (name, problems) => {
  if (problems.length === 0) {
    passed++;
    console.log(`ok   ${name}`);
  } else {
    failed++;
    console.log(`FAIL ${name}:`);
    for (const p of problems) console.log(`  - ${p}`);
  }
};
try {
  for (const docsPage of pages) report(docsPage.name, await checkPage(docsPage));
  report(AUTHORIZE_CHECK, await checkAuthorize());
} finally {
  await browser.close();
}
console.log(`docs pages: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);

// A new page in a context of its own, watched: requests off loopback are
// blocked, and each blocked request, console error, uncaught exception and
// failed request is recorded for watchedProblems. A console error or an
// HTTP error response that watched.expected(event) accepts is not: event is
// { kind: 'console', text, url } or { kind: 'response', status, url, method }.
async function watchedPage() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 1000 }, serviceWorkers: 'block' });
  const page = await context.newPage();
  const watched = { context, page, blocked: [], consoleErrors: [], pageErrors: [], failedRequests: [], expected: () => false };
  const { blocked, consoleErrors, pageErrors, failedRequests } = watched;

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
    if (watched.expected({ kind: 'console', text: msg.text(), url: where })) return;
    consoleErrors.push(`${msg.text()}${where ? ` (at ${where})` : ''}`);
  });
  page.on('pageerror', (err) => pageErrors.push(String(err.message || err).split('\n')[0]));
  page.on('requestfailed', (req) => {
    if (blocked.includes(req.url())) return; // reported as blocked
    failedRequests.push(`${req.url()} (${req.failure()?.errorText ?? 'failed'})`);
  });
  page.on('response', (res) => {
    if (res.status() < 400) return;
    if (watched.expected({ kind: 'response', status: res.status(), url: res.url(), method: res.request().method() })) return;
    failedRequests.push(`${res.url()} (HTTP ${res.status()})`);
  });
  return watched;
}

function watchedProblems({ blocked, pageErrors, consoleErrors, failedRequests }) {
  return [
    ...[...new Set(blocked)].map((u) => `blocked a request off loopback (the page needs the network): ${u}`),
    ...pageErrors.map((e) => `uncaught exception: ${e}`),
    ...consoleErrors.map((e) => `console error: ${e}`),
    ...[...new Set(failedRequests)].map((r) => `failed request: ${r}`),
  ];
}

async function checkPage({ name, path, screenshot, fullPage, probe, beforeScreenshot }) {
  const watched = await watchedPage();
  const { context, page } = watched;

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
  problems.push(...watchedProblems(watched));

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

// The Authorize check, on the server with authentication on: what a reader of
// /docs/ does to call the API from there.
async function checkAuthorize() {
  const watched = await watchedPage();
  const { context, page } = watched;
  const problems = [];
  const vehicles = new URL('/api/vehicles', authBase).href;
  let step = 'open /docs/';

  // The one failure expected: GET /api/vehicles without credentials answers
  // 401, and Chromium logs that as a console error. Only in that step, only
  // for that URL; anything else stays a problem.
  let expect401 = false, saw401Logged = false;
  watched.expected = (e) => {
    if (!expect401 || e.url?.split('?')[0] !== vehicles) return false;
    if (e.kind === 'response') return e.status === 401 && e.method === 'GET';
    if (e.kind === 'console' && /^Failed to load resource: the server responded with a status of 401\b/.test(e.text)) {
      saw401Logged = true;
      return true;
    }
    return false;
  };

  // An operation's block, found by method and path.
  const operation = async (method, path) => {
    const op = page.locator(`.opblock.opblock-${method}`)
      .filter({ has: page.locator(`.opblock-summary-path[data-path="${path}"]`) });
    await op.first().waitFor({ timeout });
    const n = await op.count();
    if (n !== 1) throw new Error(`${n} operation blocks for ${method.toUpperCase()} ${path}, expected 1`);
    await op.locator('.opblock-summary').first().click();
    await op.locator('.try-out__btn').click({ timeout });
    await op.locator('.execute').waitFor({ timeout });
    return op;
  };
  // Clicks "Execute" on op and returns what the live response shows, with
  // the request's headers and the error's reason (if any).
  const execute = async (op, method, path) => {
    const clear = op.locator('.btn-clear');
    if (await clear.count()) await clear.click(); // so that what is read is this call's
    await op.locator('.live-responses-table').waitFor({ state: 'detached', timeout });
    const url = new URL(path, authBase).href;
    const [res] = await Promise.all([
      page.waitForResponse((r) => r.request().method() === method.toUpperCase() && r.url().split('?')[0] === url, { timeout }),
      op.locator('.execute').click(),
    ]);
    const cell = op.locator('.live-responses-table .response .response-col_status').first();
    await cell.waitFor({ timeout });
    const shown = (await cell.textContent()).trim();
    const reason = await res.json().then((b) => b?.error?.reason ?? '', () => '');
    return { shown, headers: await res.request().allHeaders(), reason };
  };
  const expectShown = ({ shown, reason }, want) => {
    if (shown !== String(want)) {
      throw new Error(`the live response shows ${shown || 'nothing'}${reason ? ` (${reason})` : ''}, expected ${want}`);
    }
  };
  const expectSent = ({ headers }, { key, bearer }) => {
    const sentKey = headers['x-api-key'], sentAuth = headers['authorization'];
    if (key && sentKey !== apiKey) throw new Error(sentKey ? 'the request carried another x-api-key than the one authorized' : 'the request carried no x-api-key');
    if (!key && sentKey !== undefined) throw new Error('the request carried an x-api-key');
    if (bearer && sentAuth !== `Bearer ${bearerToken}`) throw new Error(sentAuth ? `the request carried another authorization header (${sentAuth.slice(0, 20)}...)` : 'the request carried no authorization header');
    if (!bearer && sentAuth !== undefined) throw new Error('the request carried an authorization header');
  };
  // The Authorize dialog and a scheme's section in it.
  const openDialog = async () => {
    await page.locator('.auth-wrapper .authorize').click({ timeout });
    const modal = page.locator('.modal-ux');
    await modal.waitFor({ timeout });
    return modal;
  };
  const section = async (modal, scheme) => {
    const s = modal.locator('.auth-container')
      .filter({ has: page.locator('h4 code', { hasText: new RegExp(`^${scheme}$`) }) });
    const n = await s.count();
    if (n !== 1) throw new Error(`${n} sections for ${scheme} in the Authorize dialog, expected 1`);
    return s;
  };
  const authorize = async (modal, scheme, value) => {
    const s = await section(modal, scheme);
    await s.locator('input').fill(value, { timeout });
    await s.locator('button.authorize').click({ timeout });
    // Swagger UI swaps the section's "Authorize" for "Logout" once it took the value.
    await s.locator('button', { hasText: 'Logout' }).waitFor({ timeout });
  };
  const logout = async (modal, scheme) => {
    const s = await section(modal, scheme);
    await s.locator('button', { hasText: 'Logout' }).click({ timeout });
    await s.locator('input').waitFor({ timeout });
  };
  const closeDialog = async (modal) => {
    await modal.locator('.btn-done').first().click({ timeout });
    await modal.waitFor({ state: 'detached', timeout });
  };

  try {
    await page.goto(new URL('/docs/', authBase).href, { waitUntil: 'load', timeout });

    step = 'GET /api/vehicles without authorizing';
    const list = await operation('get', '/api/vehicles');
    expect401 = true;
    const anonymous = await execute(list, 'get', '/api/vehicles');
    // Let Chromium's console error for the 401 arrive while it is expected.
    for (let i = 0; i < 20 && !saw401Logged; i++) await page.waitForTimeout(100);
    expect401 = false;
    expectSent(anonymous, {});
    expectShown(anonymous, 401);

    step = 'Authorize with the API key (apiKey)';
    let modal = await openDialog();
    await authorize(modal, 'apiKey', apiKey);
    await closeDialog(modal);

    step = 'GET /api/vehicles with the API key';
    const withKey = await execute(list, 'get', '/api/vehicles');
    expectSent(withKey, { key: true });
    expectShown(withKey, 200);

    step = 'log out of apiKey, Authorize with the bearer token (bearerAuth)';
    modal = await openDialog();
    await logout(modal, 'apiKey');
    await authorize(modal, 'bearerAuth', bearerToken);
    await closeDialog(modal);

    step = 'GET /api/allocations/history with the bearer token';
    const history = await operation('get', '/api/allocations/history');
    const withToken = await execute(history, 'get', '/api/allocations/history');
    expectSent(withToken, { bearer: true });
    expectShown(withToken, 200);

    // Let late requests and errors show up before judging.
    await page.waitForLoadState('networkidle', { timeout: 5000 }).catch(() => {});
    await page.waitForTimeout(500);
  } catch (err) {
    problems.push(`${step}: ${String(err.message || err).split('\n')[0]}`);
  }
  problems.push(...watchedProblems(watched));

  try {
    mkdirSync(shots, { recursive: true });
    const file = join(shots, 'docs-authorize.png');
    await page.screenshot({ path: file, fullPage: true });
    console.log(`     ${AUTHORIZE_CHECK}: screenshot ${file}`);
  } catch (err) {
    problems.push(`could not take a screenshot: ${String(err.message || err).split('\n')[0]}`);
  }
  await context.close();
  return problems;
}
