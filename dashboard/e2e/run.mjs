// End-to-end scenarios: a real Chromium (playwright-core, no bundled browser) against a
// running Apex server with workers, at APEX_URL (default http://127.0.0.1:8080).
//
//   APEX_URL        server to test; it serves the built dashboard at /
//   E2E_OUTPUT      screenshot folder (default dashboard/e2e-output/)
//   CHROMIUM_PATH   browser binary (default /usr/bin/chromium)
//   APEX_API_TOKEN  the server's token, when it has one
//   E2E_SKIP_BIG=1  skip the 5,000-task scenario
//
// Prints one line per scenario and a final "N passed, N failed, N skipped"; exits
// non-zero when any scenario failed.

import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const BASE = (process.env.APEX_URL ?? 'http://127.0.0.1:8080').replace(/\/$/, '');
const OUT = path.resolve(process.env.E2E_OUTPUT ?? path.join(here, '..', 'e2e-output'));
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const TOKEN = process.env.APEX_API_TOKEN ?? '';
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

const unique = `${Date.now().toString(36)}`;
const shared = {};

const diamond = {
  name: `e2e-diamond-${unique}`,
  queue: 'default',
  tasks: [
    { id: 'plan', handler: 'echo', input: { topic: 'tides' } },
    { id: 'left', handler: 'sleep', input: { seconds: 0.5 }, depends_on: ['plan'] },
    { id: 'right', handler: 'sleep', input: { seconds: 0.8 }, depends_on: ['plan'] },
    { id: 'report', handler: 'echo', input: { verdict: `diamond-done-${unique}` }, depends_on: ['left', 'right'] },
  ],
};

const longSleeps = {
  name: `e2e-cancel-${unique}`,
  tasks: [
    { id: 'nap-1', handler: 'sleep', input: { seconds: 300 } },
    { id: 'nap-2', handler: 'sleep', input: { seconds: 300 } },
    { id: 'after', handler: 'echo', input: {}, depends_on: ['nap-1', 'nap-2'] },
  ],
};

const cycle = {
  name: `e2e-cycle-${unique}`,
  tasks: [
    { id: 'a', handler: 'echo', depends_on: ['b'] },
    { id: 'b', handler: 'echo', depends_on: ['a'] },
  ],
};

// The server caps a task's dependencies (1,000), so the fan-in is five collectors.
const BIG_FAN_OUT = 5_000;
const COLLECTORS = 5;
const bigRun = {
  name: `e2e-big-${unique}`,
  tasks: [
    { id: 'plan', handler: 'noop' },
    ...Array.from({ length: BIG_FAN_OUT }, (_, i) => ({ id: `item-${i}`, handler: 'noop', depends_on: ['plan'] })),
    ...Array.from({ length: COLLECTORS }, (_, c) => ({
      id: `collect-${c}`,
      handler: 'noop',
      depends_on: Array.from({ length: BIG_FAN_OUT / COLLECTORS }, (_, i) => `item-${c * (BIG_FAN_OUT / COLLECTORS) + i}`),
    })),
  ],
};

const byTestId = (id) => `[data-testid="${id}"]`;

async function waitForState(page, testId, state, timeout) {
  await page.waitForSelector(`${byTestId(testId)}[data-state="${state}"]`, { timeout });
}

async function submitThroughPage(page, spec) {
  await page.goto(`${BASE}/submit`);
  await page.fill(byTestId('submit-json'), JSON.stringify(spec, null, 2));
  await page.click(byTestId('submit-button'));
}

/** Big specs go through the file picker, as a user would bring them. */
async function uploadThroughPage(page, spec) {
  await page.goto(`${BASE}/submit`);
  await page.setInputFiles(byTestId('submit-file'), {
    name: `${spec.name}.json`,
    mimeType: 'application/json',
    buffer: Buffer.from(JSON.stringify(spec)),
  });
  await page.waitForFunction(
    (name) => document.querySelector('[data-testid="submit-json"]')?.value.includes(name),
    spec.name,
  );
  await page.click(byTestId('submit-button'));
}

async function openSubmittedRun(page) {
  // Either the run page opens or the submit page shows why not; fail fast on the latter.
  const opened = page.waitForURL(/\/runs\/[^/]+$/, { timeout: 30_000 }).then(() => null);
  const refused = page.waitForSelector(byTestId('submit-errors'), { timeout: 30_000 }).then((el) => el.textContent());
  const problem = await Promise.race([opened, refused.catch(() => new Promise(() => {}))]);
  if (problem) throw new Error(`submission refused: ${problem}`);
  const runId = decodeURIComponent(new URL(page.url()).pathname.split('/').pop());
  await page.waitForSelector(byTestId('run-state'), { timeout: 30_000 });
  return runId;
}

async function submitAndOpenRun(page, spec) {
  await submitThroughPage(page, spec);
  return openSubmittedRun(page);
}

const scenarios = [
  {
    name: 'diamond: submit through the page and watch every node succeed without a reload',
    async run(page) {
      const runId = await submitAndOpenRun(page, diamond);
      // A full reload would wipe this marker; live updates must arrive over the socket.
      await page.evaluate(() => {
        window.__apexNoReload = true;
      });
      for (const task of diamond.tasks) await waitForState(page, `task-node-${task.id}`, 'succeeded', 60_000);
      await waitForState(page, 'run-state', 'succeeded', 30_000);
      const kept = await page.evaluate(() => window.__apexNoReload === true);
      if (!kept) throw new Error('the page reloaded while the run progressed');
      const progress = await page.textContent(byTestId('run-progress'));
      if (progress?.trim() !== '4/4') throw new Error(`run progress shows ${progress}, expected 4/4`);
      shared.diamondRunId = runId;
    },
  },
  {
    name: 'task panel: open a task and see its output, input and upstream outputs',
    async run(page) {
      if (!shared.diamondRunId) throw new Error('needs the diamond run of the previous scenario');
      await page.goto(`${BASE}/runs/${encodeURIComponent(shared.diamondRunId)}`);
      await waitForState(page, 'task-node-report', 'succeeded', 30_000);
      await page.click(byTestId('task-node-report'));
      await page.waitForSelector(`${byTestId('task-panel')}[data-task="report"]`);
      await page.waitForFunction(
        (expected) => document.querySelector('[data-testid="task-output"]')?.textContent?.includes(expected),
        `diamond-done-${unique}`,
        { timeout: 15_000 },
      );
      await page.waitForSelector(byTestId('task-upstream'));
      const upstream = await page.textContent(byTestId('task-upstream'));
      if (!upstream?.includes('seconds')) throw new Error(`upstream outputs of report not shown: ${upstream}`);
    },
  },
  {
    name: 'cancel: a run of long sleeps is cancelled from the run page',
    async run(page) {
      await submitAndOpenRun(page, longSleeps);
      await waitForState(page, 'task-node-nap-1', 'running', 60_000);
      await page.click(byTestId('cancel-run'));
      await waitForState(page, 'run-state', 'cancelled', 30_000);
      await waitForState(page, 'task-node-nap-1', 'cancelled', 30_000);
      const after = await page.getAttribute(byTestId('task-node-after'), 'data-state');
      if (after === 'succeeded' || after === 'running') throw new Error(`downstream task is ${after} after cancel`);
    },
  },
  {
    name: 'invalid DAG: a cycle is rejected and the error is shown next to the input',
    async run(page) {
      await submitThroughPage(page, cycle);
      await page.waitForSelector(byTestId('submit-errors'), { timeout: 15_000 });
      const text = (await page.textContent(byTestId('submit-errors'))) ?? '';
      if (!/cycle/i.test(text)) throw new Error(`error does not mention the cycle: ${text}`);
      const details = await page.$$(byTestId('submit-error-detail'));
      if (details.length === 0) throw new Error('no details entries shown');
      if (!page.url().endsWith('/submit')) throw new Error(`navigated away to ${page.url()}`);
    },
  },
  {
    name: 'overview pages: runs list, workers, queues and agents show live data',
    async run(page, shot) {
      await page.goto(`${BASE}/runs`);
      if (shared.diamondRunId) {
        await page.waitForSelector(`${byTestId(`run-row-${shared.diamondRunId}`)}[data-state="succeeded"]`, { timeout: 15_000 });
      }
      await page.fill(byTestId('runs-filter-name'), `e2e-cancel-${unique}`);
      await page.waitForSelector(`tbody tr[data-state="cancelled"]`, { timeout: 15_000 });
      await page.fill(byTestId('runs-filter-name'), '');
      await shot('runs');
      await page.click(byTestId('nav-workers'));
      await page.waitForSelector('[data-testid^="worker-row-"]', { timeout: 15_000 });
      await shot('workers');
      await page.click(byTestId('nav-queues'));
      await page.waitForSelector(byTestId('queue-chart-default'), { timeout: 15_000 });
      // The registry may be empty: either the table or the how-to-register text will do.
      await page.click(byTestId('nav-agents'));
      await page.waitForSelector(`${byTestId('agents-table')}, ${byTestId('agents-empty')}`, { timeout: 15_000 });
    },
  },
  {
    name: `big run: ${BIG_FAN_OUT} siblings collapse into one group node and the run finishes`,
    skip: process.env.E2E_SKIP_BIG === '1',
    async run(page) {
      await uploadThroughPage(page, bigRun);
      await openSubmittedRun(page);
      const group = `${byTestId('group-node-item-0')}[data-count="${BIG_FAN_OUT}"]`;
      await page.waitForSelector(group, { timeout: 30_000 });
      const drawn = Number(await page.getAttribute(byTestId('dag'), 'data-nodes'));
      const expected = 2 + COLLECTORS;
      if (drawn !== expected) throw new Error(`expected ${expected} drawn nodes (plan, group, collectors), got ${drawn}`);
      await waitForState(page, 'run-state', 'succeeded', 180_000);
      await page.click(byTestId('group-node-item-0'));
      await page.waitForSelector(byTestId('group-panel'));
    },
  },
  {
    name: 'token: a 401 prompts for the token, which is then used',
    skip: !TOKEN,
    fresh: true,
    async run(page) {
      await page.goto(`${BASE}/runs`);
      await page.waitForSelector(byTestId('token-prompt'), { timeout: 15_000 });
      await page.fill(byTestId('token-input'), TOKEN);
      await page.click(byTestId('token-save'));
      await page.waitForSelector(byTestId('runs-table'));
      await page.waitForSelector(byTestId('token-prompt'), { state: 'detached' });
    },
  },
];

function slug(text) {
  return text
    .split(':')[0]
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '');
}

async function main() {
  mkdirSync(OUT, { recursive: true });
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  try {
    for (const [index, scenario] of scenarios.entries()) {
      const label = `${String(index + 1).padStart(2, '0')}-${slug(scenario.name)}`;
      if (scenario.skip) {
        skipped += 1;
        console.log(`skip - ${scenario.name}`);
        continue;
      }
      const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
      if (TOKEN && !scenario.fresh) {
        await context.addInitScript((token) => localStorage.setItem('apex.token', token), TOKEN);
      }
      const page = await context.newPage();
      page.setDefaultTimeout(20_000);
      const pageErrors = [];
      page.on('pageerror', (error) => pageErrors.push(error.message));
      const shot = (name) => page.screenshot({ path: path.join(OUT, `${label}-${name}.png`) });
      const started = Date.now();
      try {
        await scenario.run(page, shot);
        if (pageErrors.length) throw new Error(`page errors: ${pageErrors.join(' | ')}`);
        passed += 1;
        console.log(`ok - ${scenario.name} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
      } catch (error) {
        failed += 1;
        // Playwright's call logs can echo a whole DAG: keep the first lines.
        const message = String(error?.message ?? error).split('\n').slice(0, 6).join('\n    ').slice(0, 800);
        console.log(`FAIL - ${scenario.name}\n    ${message}`);
      } finally {
        await page.screenshot({ path: path.join(OUT, `${label}.png`) }).catch(() => {});
        await context.close();
      }
    }
  } finally {
    await browser.close();
  }
  console.log(`screenshots in ${OUT}`);
  console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
  process.exitCode = failed > 0 ? 1 : 0;
}

main().catch((error) => {
  console.error(error);
  console.log('0 passed, 1 failed');
  process.exitCode = 1;
});
