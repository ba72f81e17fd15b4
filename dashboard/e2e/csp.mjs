// Checks that the built dashboard works under the server's strict Content-Security-Policy,
// whatever the server under test sends: it serves dist/ itself with exactly that policy,
// passes /api (REST and WebSocket) through to APEX_URL, visits every page in Chromium
// and fails on any CSP violation or page error. A deliberate inline script at the end
// proves violations are seen at all.
//
//   APEX_URL       server with workers, as for run.mjs (default http://127.0.0.1:8080)
//   APEX_API_TOKEN its token, if it has one
//   CHROMIUM_PATH  browser binary (default /usr/bin/chromium)

import { createReadStream, existsSync, statSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const DIST = path.resolve(here, '..', 'dist');
const TARGET = new URL(process.env.APEX_URL ?? 'http://127.0.0.1:8080');
const TOKEN = process.env.APEX_API_TOKEN ?? '';
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** The policy and headers the orchestrator serves the dashboard with (issue #12). */
const SECURITY_HEADERS = {
  'Content-Security-Policy':
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; " +
    "font-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
  'X-Frame-Options': 'DENY',
  'X-Content-Type-Options': 'nosniff',
};

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml', '.png': 'image/png', '.ico': 'image/x-icon' };

function serveFile(req, res) {
  const wanted = path.normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname)).replace(/^(\.\.[/\\])+/, '');
  let file = path.join(DIST, wanted);
  // Like the server: unknown paths are routes of the app.
  if (!file.startsWith(DIST) || !existsSync(file) || statSync(file).isDirectory()) file = path.join(DIST, 'index.html');
  res.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': TYPES[path.extname(file)] ?? 'application/octet-stream' });
  createReadStream(file).pipe(res);
}

/** The server only answers browsers on its own origin: to it, this proxy's pages are. */
function sameOrigin(headers) {
  const out = {};
  if ('host' in headers) out.host = TARGET.host;
  if ('origin' in headers) out.origin = TARGET.origin;
  return out;
}

function proxyApi(req, res) {
  const upstream = http.request(
    { host: TARGET.hostname, port: TARGET.port, method: req.method, path: req.url, headers: { ...req.headers, ...sameOrigin(req.headers) } },
    (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    },
  );
  upstream.on('error', (error) => res.writeHead(502).end(String(error)));
  req.pipe(upstream);
}

/** WebSocket upgrades go through as raw bytes once the request head is replayed. */
function proxyUpgrade(req, socket, head) {
  const upstream = net.connect(Number(TARGET.port), TARGET.hostname, () => {
    const lines = [`${req.method} ${req.url} HTTP/1.1`];
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      const name = req.rawHeaders[i];
      const rewritten = sameOrigin({ [name.toLowerCase()]: req.rawHeaders[i + 1] })[name.toLowerCase()];
      lines.push(`${name}: ${rewritten ?? req.rawHeaders[i + 1]}`);
    }
    upstream.write(`${lines.join('\r\n')}\r\n\r\n`);
    upstream.write(head);
    socket.pipe(upstream).pipe(socket);
  });
  upstream.on('error', () => socket.destroy());
  socket.on('error', () => upstream.destroy());
}

async function main() {
  const server = http.createServer((req, res) => (req.url.startsWith('/api/') ? proxyApi(req, res) : serveFile(req, res)));
  server.on('upgrade', proxyUpgrade);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${server.address().port}`;

  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu'] });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  if (TOKEN) await context.addInitScript((token) => localStorage.setItem('apex.token', token), TOKEN);
  const page = await context.newPage();
  const problems = [];
  page.on('console', (message) => {
    if (message.type() === 'error' && /Content Security Policy/i.test(message.text())) problems.push(`CSP: ${message.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));

  let failed = false;
  const check = async (label, visit) => {
    const before = problems.length;
    try {
      await visit();
    } catch (error) {
      problems.push(`${label}: ${String(error?.message ?? error).split('\n')[0]}`);
    }
    const found = problems.slice(before);
    failed ||= found.length > 0;
    console.log(found.length ? `FAIL - ${label}\n    ${found.join('\n    ')}` : `ok - ${label}`);
  };

  const headers = { Accept: 'application/json', 'Content-Type': 'application/json', ...(TOKEN ? { Authorization: `Bearer ${TOKEN}` } : {}) };
  const submit = async (spec) => {
    const response = await fetch(`${TARGET.origin}/api/v1/runs`, { method: 'POST', headers, body: JSON.stringify(spec) });
    if (!response.ok) throw new Error(`submit: ${response.status} ${await response.text()}`);
    return (await response.json()).id;
  };

  const live = '[data-testid="live-status"][data-status="live"]';
  const pages = {
    '/runs': live,
    '/workers': live,
    '/queues': live,
    '/agents': '[data-testid="agents-table"], [data-testid="agents-empty"]',
    '/submit': '[data-testid="submit-json"]',
  };
  for (const [route, ready] of Object.entries(pages)) {
    await check(`page ${route}`, async () => {
      await page.goto(`${base}${route}`);
      await page.waitForSelector(ready, { timeout: 15_000 });
    });
  }
  await check('run page: graph, live over the WebSocket', async () => {
    const id = await submit({ name: 'csp-graph', tasks: [{ id: 'a', handler: 'echo' }, { id: 'b', handler: 'sleep', input: { seconds: 0.3 }, depends_on: ['a'] }] });
    await page.goto(`${base}/runs/${id}`);
    await page.waitForSelector('[data-testid="task-node-b"][data-state="succeeded"]', { timeout: 30_000 });
    await page.click('[data-testid="task-node-b"]');
    await page.waitForSelector('[data-testid="task-output"]');
  });
  await check('run page: task table', async () => {
    const id = await submit({ name: 'csp-table', tasks: Array.from({ length: 2_500 }, (_, i) => ({ id: `n-${i}`, handler: 'noop' })) });
    await page.goto(`${base}/runs/${id}`);
    await page.waitForSelector('[data-testid="run-state"][data-state="succeeded"]', { timeout: 60_000 });
    await page.click('[data-testid="task-filter-succeeded"]');
    await page.click('[data-testid="view-graph"]');
    await page.waitForSelector('[data-testid^="group-node-"]');
  });
  await check('headers: the policy is in force', async () => {
    const response = await page.goto(`${base}/runs`);
    if (response?.headers()['content-security-policy'] !== SECURITY_HEADERS['Content-Security-Policy']) throw new Error('policy header missing');
  });

  // The detector itself: an inline script must be refused and reported.
  const before = problems.length;
  await page.evaluate(() => {
    const script = document.createElement('script');
    script.textContent = 'window.__inlineRan = true';
    document.body.append(script);
  });
  await page.waitForTimeout(200);
  const seen = problems.length > before && !(await page.evaluate(() => window.__inlineRan === true));
  problems.length = before;
  console.log(seen ? 'ok - an inline script is refused and reported' : 'FAIL - an inline script was not reported: the check sees nothing');
  failed ||= !seen;

  await browser.close();
  server.close();
  process.exitCode = failed ? 1 : 0;
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
