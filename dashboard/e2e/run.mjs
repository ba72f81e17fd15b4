// End-to-end scenarios: a real Chromium (playwright-core, no bundled browser) against a
// running Apex server with workers, at APEX_URL (default http://127.0.0.1:8080).
//
//   APEX_URL          server to test; it serves the built dashboard at /
//   E2E_OUTPUT        screenshot folder (default dashboard/e2e-output/)
//   CHROMIUM_PATH     browser binary (default /usr/bin/chromium)
//   APEX_API_TOKEN    the server's token, when it has one; also runs the token-prompt scenario
//   APEX_UP_URL       the address `apex up --demo` printed (with ?token=); runs the apex up scenario
//   APEX_UP_DEMO_RUN  the demo run's name it looks for (default: the name in examples/chain.json)
//   E2E_SKIP_BIG=1    skip the big-run scenarios (5,000-task graph, task table, big run live and spawn)
//   E2E_TABLE_TASKS   tasks in the task-table scenario's flat run (default 20,000; the server caps runs at 100,000;
//                     benches/dashboard.sh runs it at 100,000)
//   E2E_MEASURE_MS    longest that scenario counts frames while its run executes (default 600,000)
//   E2E_PROFILE       a file for a Chromium CPU profile (.cpuprofile) of the task-table scenario's load and frame count
//   E2E_FAKE_LLM      the provider name under which the server and workers know a slow-streaming
//                     fake LLM (apex_worker.testing.fake_providers --chunk-delay-s); runs the
//                     streamed-answer scenario
//
// Prints one line per scenario and a final "N passed, N failed, N skipped"; exits
// non-zero when any scenario failed. A Content-Security-Policy violation fails a scenario
// like a page error does. The task-table scenario prints what it measured and writes it
// to E2E_OUTPUT/task-table.json.

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const BASE = (process.env.APEX_URL ?? 'http://127.0.0.1:8080').replace(/\/$/, '');
const OUT = path.resolve(process.env.E2E_OUTPUT ?? path.join(here, '..', 'e2e-output'));
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const TOKEN = process.env.APEX_API_TOKEN ?? '';
const UP_URL = process.env.APEX_UP_URL ?? '';
const UP_DEMO_RUN =
  process.env.APEX_UP_DEMO_RUN ?? JSON.parse(readFileSync(path.join(here, '..', '..', 'examples', 'chain.json'), 'utf8')).name;
const SKIP_BIG = process.env.E2E_SKIP_BIG === '1';
const TABLE_TASKS = Number(process.env.E2E_TABLE_TASKS ?? 20_000);
/** Longest the task-table scenario counts frames while its run executes. */
const MEASURE_MAX_MS = Number(process.env.E2E_MEASURE_MS ?? 600_000);
const FAKE_LLM = process.env.E2E_FAKE_LLM ?? '';
const PROFILE = process.env.E2E_PROFILE ?? '';
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

/**
 * A flat run: no dependencies, so every task is ready at once. Ids sort in submission
 * order. The last one waits for an approval the scenario gives once it watches that row:
 * a live change on screen, whenever the rest finished.
 */
const tableRun = {
  name: `e2e-table-${unique}`,
  // Retries: on a starved machine a worker can miss its lease renewal, and a lost
  // attempt is a failure; this scenario is about the page, not about that.
  tasks: Array.from({ length: TABLE_TASKS }, (_, i) => ({ id: `t-${String(i).padStart(6, '0')}`, handler: 'noop', retries: 3 })),
};
tableRun.tasks.at(-1).handler = 'approval';
tableRun.tasks.at(-1).input = { prompt: 'last row' };
delete tableRun.tasks.at(-1).retries;

/**
 * A big run (past the 2,000 tasks a page follows in full) for the parts its stream does not
 * follow: 2,400 two-second sleeps under one root (one graph group), and five approvals that
 * keep it running; w-5 waits on w-0, so approving w-0 swaps one waiting task for another
 * and the waiting count stays 5: only a fresh read shows the swap.
 */
const LIVE_SLEEPS = 2_400;
const bigLiveRun = {
  name: `e2e-biglive-${unique}`,
  tasks: [
    { id: 'root', handler: 'noop' },
    ...Array.from({ length: LIVE_SLEEPS }, (_, i) => ({
      id: `s-${String(i).padStart(4, '0')}`,
      handler: 'sleep',
      input: { seconds: 2 },
      depends_on: ['root'],
      retries: 3,
    })),
    ...Array.from({ length: 5 }, (_, i) => ({ id: `w-${i}`, handler: 'approval', input: { prompt: `gate ${i}` } })),
    { id: 'w-5', handler: 'approval', input: { prompt: 'after w-0' }, depends_on: ['w-0'] },
  ],
};

/** A big run in which an agent task spawns children once approved, after the page has loaded. */
const bigSpawnRun = {
  name: `e2e-bigspawn-${unique}`,
  agents: { splitter: { provider: FAKE_LLM || 'openai', model: 'fake-split' } },
  tasks: [
    ...Array.from({ length: 2_100 }, (_, i) => ({ id: `n-${String(i).padStart(4, '0')}`, handler: 'noop', retries: 3 })),
    { id: 'gate', handler: 'approval', input: { prompt: 'spawn now' } },
    { id: 'fan', handler: 'agent', agent: 'splitter', depends_on: ['gate'], input: { prompt: 'alpha\nbeta\ngamma', fan_out: { max: 5 } } },
  ],
};

// Many short words: the fake provider streams one word per chunk and cuts the message at
// 200 characters, so this makes the longest answer it gives, in about 70 chunks.
const STREAM_PROMPT = Array.from({ length: 66 }, (_, i) => `w${i % 10}`).join(' ').slice(0, 200);
const STREAM_MODEL = 'fake-stream';
const streamedAnswer = {
  name: `e2e-stream-${unique}`,
  agents: { explainer: { provider: FAKE_LLM || 'openai', model: STREAM_MODEL } },
  tasks: [{ id: 'answer', handler: 'agent', agent: 'explainer', input: { prompt: STREAM_PROMPT } }],
};
const STREAM_TEXT = `${STREAM_MODEL} heard: ${STREAM_PROMPT}`;

const byTestId = (id) => `[data-testid="${id}"]`;

/** The REST API from Node, for work the browser need not do (submitting 100,000 tasks). */
async function callApi(method, apiPath, body) {
  const headers = { Accept: 'application/json' };
  if (TOKEN) headers.Authorization = `Bearer ${TOKEN}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(`${BASE}${apiPath}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!response.ok) throw new Error(`${method} ${apiPath}: ${response.status} ${(await response.text()).slice(0, 300)}`);
  return response.json();
}

/**
 * Frames while the run executes, from now until `doneAt` of its tasks are done or its
 * state is final (at most `maxMs`):
 * the table is scrolled up for half a second, back down for half a second, then left
 * still for a second, over and over, as a person watching it would. Frames per second,
 * the longest frame, frames over 50 ms, and the run's done count at both ends.
 */
function measureFrames(page, selector, doneAt, maxMs) {
  return page.evaluate(
    ({ selector, doneAt, maxMs }) =>
      new Promise((resolve) => {
        const done = () => Number(document.querySelector('[data-testid="run-progress"]')?.textContent?.split('/')[0] ?? 0);
        const finished = () => ['succeeded', 'failed', 'cancelled'].includes(document.querySelector('[data-testid="run-state"]')?.getAttribute('data-state'));
        const doneAtStart = done();
        let frames = 0;
        let worst = 0;
        let long = 0;
        let last = performance.now();
        const start = last;
        const tick = (now) => {
          frames += 1;
          const took = now - last;
          worst = Math.max(worst, took);
          if (took > 50) long += 1;
          last = now;
          const phase = (now - start) % 2_000;
          // Looked up each frame: the table may be drawn anew once all tasks are in.
          const box = document.querySelector(selector);
          if (box && phase < 500) box.scrollTop -= 24;
          else if (box && phase < 1_000) box.scrollTop += 24;
          if (now - start < maxMs && !finished() && done() < doneAt) requestAnimationFrame(tick);
          else resolve({ fps: (frames * 1000) / (now - start), worstFrameMs: worst, longFrames: long, ms: now - start, doneAtStart, doneAtEnd: done() });
        };
        requestAnimationFrame(tick);
      }),
    { selector, doneAt, maxMs },
  );
}

async function waitForState(page, testId, state, timeout) {
  await page.waitForSelector(`${byTestId(testId)}[data-state="${state}"]`, { timeout });
}

/**
 * Waits until the task panel shows streamed text longer than `longerThan` characters while
 * task `taskId` is still running, and returns that text. The panel's placeholder ("waiting
 * for the model…") does not count as text. Fails if the task stops running first.
 */
async function answerWhileRunning(page, taskId, longerThan, timeout) {
  const handle = await page.waitForFunction(
    ({ taskId, longerThan }) => {
      const node = document.querySelector(`[data-testid="task-node-${taskId}"]`);
      const state = node?.getAttribute('data-state');
      if (['succeeded', 'failed', 'cancelled', 'skipped'].includes(state)) return { ended: state };
      if (state !== 'running') return false;
      const box = document.querySelector(`[data-testid="task-panel"][data-task="${taskId}"] [data-testid="task-answer"]`);
      if (!box || box.querySelector('.muted')) return false;
      const text = box.textContent ?? '';
      return text.length > longerThan ? { text } : false;
    },
    { taskId, longerThan },
    { timeout, polling: 'raf' },
  );
  const seen = await handle.jsonValue();
  if (seen.ended) throw new Error(`task ${taskId} became ${seen.ended} before its answer showed past ${longerThan} characters`);
  return seen.text;
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
    name: 'approval: a waiting task stands out and is approved from its panel',
    async run(page) {
      const spec = {
        name: `e2e-approval-${unique}`,
        tasks: [
          { id: 'plan', handler: 'echo', input: { draft: `draft-${unique}` } },
          { id: 'review', handler: 'approval', depends_on: ['plan'], input: { prompt: `Publish ${unique}?` } },
          { id: 'write', handler: 'echo', depends_on: ['review'] },
        ],
      };
      const { id } = await callApi('POST', '/api/v1/runs', spec);
      await page.goto(`${BASE}/runs/${encodeURIComponent(id)}`);
      await waitForState(page, 'task-node-review', 'waiting', 60_000);
      await page.click(byTestId('task-node-review'));
      await page.waitForSelector(`${byTestId('task-panel')}[data-task="review"]`);
      const prompt = await page.textContent(byTestId('approval-prompt'));
      if (!prompt?.includes(`Publish ${unique}?`)) throw new Error(`approval prompt not shown: ${prompt}`);
      await page.waitForFunction(
        (expected) => document.querySelector('[data-testid="task-upstream"]')?.textContent?.includes(expected),
        `draft-${unique}`,
        { timeout: 15_000 },
      );
      await page.fill(byTestId('decision-comment'), 'ship it');
      await page.click(byTestId('approve-task'));
      await waitForState(page, 'task-node-review', 'succeeded', 30_000);
      await waitForState(page, 'run-state', 'succeeded', 60_000);
      const review = await callApi('GET', `/api/v1/runs/${encodeURIComponent(id)}/tasks/review`);
      if (review.output?.comment !== 'ship it') throw new Error(`approval output: ${JSON.stringify(review.output)}`);
    },
  },
  {
    name: 'rerun: re-run from a node with an edited input opens the new run, the rest reused',
    async run(page) {
      const spec = {
        name: `e2e-rerun-${unique}`,
        tasks: [
          { id: 'plan', handler: 'echo', input: { topic: `tides-${unique}` } },
          { id: 'write', handler: 'echo', depends_on: ['plan'], input: { verdict: 'first' } },
        ],
      };
      const { id } = await callApi('POST', '/api/v1/runs', spec);
      await page.goto(`${BASE}/runs/${encodeURIComponent(id)}`);
      await waitForState(page, 'run-state', 'succeeded', 60_000);
      await page.click(byTestId('task-node-write'));
      await page.waitForSelector(`${byTestId('task-panel')}[data-task="write"]`);
      await page.click(byTestId('rerun-open'));
      await page.fill(byTestId('rerun-input'), JSON.stringify({ verdict: `second-${unique}` }));
      await page.click(byTestId('rerun-start'));
      await page.waitForURL((url) => url.pathname.startsWith('/runs/') && !url.pathname.endsWith(encodeURIComponent(id)), {
        timeout: 30_000,
      });
      const newId = decodeURIComponent(new URL(page.url()).pathname.split('/').pop());
      await waitForState(page, 'run-state', 'succeeded', 60_000);
      const link = await page.textContent(byTestId('run-rerun-of'));
      if (!link?.includes('from write')) throw new Error(`the new run does not show its origin: ${link}`);
      const run = await callApi('GET', `/api/v1/runs/${encodeURIComponent(newId)}`);
      const task = (t) => run.tasks.find((x) => x.id === t);
      if (run.rerun_of?.run !== id) throw new Error(`rerun_of: ${JSON.stringify(run.rerun_of)}`);
      if (task('plan').reused_from !== id || task('plan').attempt !== 0) throw new Error(`plan not reused: ${JSON.stringify(task('plan'))}`);
      if (task('write').input?.verdict !== `second-${unique}`) throw new Error(`write input: ${JSON.stringify(task('write').input)}`);
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
    name: "streamed answer: an agent task's answer grows in its panel, survives a reload, and ends as the output",
    skip: !FAKE_LLM,
    async run(page, shot) {
      const created = await callApi('POST', '/api/v1/runs', streamedAnswer);
      await page.goto(`${BASE}/runs/${encodeURIComponent(created.id)}`);
      const openPanel = async () => {
        await page.click(byTestId('task-node-answer'));
        await page.waitForSelector(`${byTestId('task-panel')}[data-task="answer"]`);
      };
      await openPanel();
      // Every length must be a beginning of the final text: the deltas arrive in order.
      const checkPrefix = (text, when) => {
        if (!STREAM_TEXT.startsWith(text)) throw new Error(`${when}, the answer shown is not a beginning of the final text: ${JSON.stringify(text)}`);
      };
      const first = await answerWhileRunning(page, 'answer', 0, 90_000);
      checkPrefix(first, 'first');
      const second = await answerWhileRunning(page, 'answer', first.length, 30_000);
      checkPrefix(second, 'growing');
      if (second.length >= STREAM_TEXT.length) throw new Error('the whole answer came at once');
      await shot('growing');

      // A reload mid-answer: the page joins late and must show the text so far at once
      // (the socket's `answer` event), not only the words streamed after it joined.
      const beforeReload = await answerWhileRunning(page, 'answer', second.length - 1, 30_000);
      await page.reload();
      await page.waitForSelector(byTestId('task-node-answer'), { timeout: 30_000 });
      await openPanel();
      const rejoined = await answerWhileRunning(page, 'answer', 0, 30_000);
      checkPrefix(rejoined, 'after the reload');
      if (rejoined.length < beforeReload.length) {
        throw new Error(`after the reload the answer shows ${rejoined.length} characters, fewer than the ${beforeReload.length} before it`);
      }
      const regrown = await answerWhileRunning(page, 'answer', rejoined.length, 30_000);
      checkPrefix(regrown, 'growing after the reload');
      await shot('rejoined');

      await waitForState(page, 'task-node-answer', 'succeeded', 120_000);
      await page.waitForFunction(
        (expected) => document.querySelector('[data-testid="task-output"]')?.textContent?.includes(expected),
        STREAM_TEXT,
        { timeout: 15_000 },
      );
      await waitForState(page, 'run-state', 'succeeded', 30_000);
      return `answer seen at ${first.length}, ${second.length}, then ${rejoined.length} and ${regrown.length} characters after a reload, of ${STREAM_TEXT.length}`;
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
    skip: SKIP_BIG,
    async run(page) {
      await uploadThroughPage(page, bigRun);
      await openSubmittedRun(page);
      // Past 2,000 tasks the page opens on the table; the graph is one click away.
      await page.waitForSelector(byTestId('task-table'), { timeout: 30_000 });
      await page.click(byTestId('view-graph'));
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
    name: `task table: a flat run of ${TABLE_TASKS} tasks opens as a table that stays live, with numbers`,
    skip: SKIP_BIG,
    async run(page, shot) {
      // When the first row appears, counted from navigation start like performance.now().
      await page.addInitScript(() => {
        const seen = () => {
          if (window.__firstRowMs === undefined && document.querySelector('[data-testid^="task-row-"]')) window.__firstRowMs = performance.now();
          if (window.__headerMs === undefined && document.querySelector('[data-testid="run-state"]')) window.__headerMs = performance.now();
          if (window.__allRowsMs === undefined && document.querySelector('[data-testid="task-table-shown"]')) window.__allRowsMs = performance.now();
        };
        new MutationObserver(seen).observe(document, { childList: true, subtree: true });
      });
      // E2E_PROFILE=file: a CPU profile of the page from navigation to the end of the frame count.
      const profiler = PROFILE ? await page.context().newCDPSession(page) : null;
      if (profiler) {
        await profiler.send('Profiler.enable');
        await profiler.send('Profiler.setSamplingInterval', { interval: 500 });
      }
      const submitStarted = Date.now();
      const created = await callApi('POST', '/api/v1/runs', tableRun);
      const submitMs = Date.now() - submitStarted;
      if (profiler) await profiler.send('Profiler.start');
      await page.goto(`${BASE}/runs/${encodeURIComponent(created.id)}`);
      const table = byTestId('task-table');
      const body = byTestId('task-table-body');
      await page.waitForSelector(`${table} [data-testid^="task-row-"]`, { timeout: 120_000 });

      // Frames from the first rows until every task but the last (which waits) is done,
      // through the rest of the load, scrolling the table meanwhile.
      const measureStartMs = Date.now() - submitStarted;
      const frames = await measureFrames(page, body, TABLE_TASKS - 1, MEASURE_MAX_MS);
      if (profiler) writeFileSync(PROFILE, JSON.stringify((await profiler.send('Profiler.stop')).profile));
      await page.waitForSelector(`${table}[data-total="${TABLE_TASKS}"] [data-testid^="task-row-"]`, { timeout: 600_000 });
      await page.waitForSelector(byTestId('task-table-shown'), { timeout: 60_000 });
      const { headerMs, firstRowMs, allRowsMs } = await page.evaluate(() => ({
        headerMs: window.__headerMs,
        firstRowMs: window.__firstRowMs,
        allRowsMs: window.__allRowsMs,
      }));
      // The figures first, so that a later failure still leaves them.
      const measured = {
        tasks: TABLE_TASKS,
        submitMs,
        headerMs: Math.round(headerMs),
        firstRowsMs: Math.round(firstRowMs),
        allRowsMs: Math.round(allRowsMs),
        fps: Math.round(frames.fps * 10) / 10,
        worstFrameMs: Math.round(frames.worstFrameMs),
        longFrames: frames.longFrames,
        measuredMs: Math.round(frames.ms),
        measureStartMs,
        tasksDoneWhileMeasuring: frames.doneAtEnd - frames.doneAtStart,
      };
      writeFileSync(path.join(OUT, 'task-table.json'), `${JSON.stringify(measured, null, 2)}\n`);
      await shot('loaded');

      // The last row waits on screen; approved, it turns succeeded there, live.
      const lastId = tableRun.tasks.at(-1).id;
      await page.$eval(body, (el) => {
        el.scrollTop = el.scrollHeight;
      });
      await page.waitForSelector(`${byTestId(`task-row-${lastId}`)}[data-state="waiting"]`, { timeout: 120_000 });
      if ((await page.getAttribute(byTestId('run-state'), 'data-state')) !== 'running') throw new Error('the run ended with a task waiting');
      // The stream follows the rows once they held still; then the decision.
      await page.waitForTimeout(1_000);
      await callApi('POST', `/api/v1/runs/${encodeURIComponent(created.id)}/tasks/${lastId}/approve`, { comment: 'e2e' });
      await page.waitForSelector(`${byTestId(`task-row-${lastId}`)}[data-state="succeeded"]`, { timeout: 60_000 });

      await page.waitForSelector(['succeeded', 'failed', 'cancelled'].map((s) => `${byTestId('run-state')}[data-state="${s}"]`).join(', '), {
        timeout: 600_000,
      });
      const ended = await page.getAttribute(byTestId('run-state'), 'data-state');
      if (ended !== 'succeeded') throw new Error(`the run ended ${ended}`);
      const runMs = Date.now() - submitStarted;
      const rows = async () => Number(await page.getAttribute(table, 'data-rows'));
      // Counts are exact, and rows that were off screen all along are up to date once in view.
      await page.waitForSelector(`${byTestId('task-filter-succeeded')}[data-count="${TABLE_TASKS}"]`, { timeout: 30_000 });
      if ((await rows()) !== TABLE_TASKS) throw new Error(`table shows ${await rows()} rows, expected ${TABLE_TASKS}`);
      const done = await page.textContent(byTestId('run-progress'));
      if (done !== `${TABLE_TASKS}/${TABLE_TASKS}`) throw new Error(`the header says ${done} done`);
      const middle = tableRun.tasks[Math.floor(TABLE_TASKS / 2)].id;
      await page.$eval(
        body,
        (el, at) => {
          el.scrollTop = at;
        },
        Math.floor(TABLE_TASKS / 2) * 32,
      );
      await page.waitForSelector(`${byTestId(`task-row-${middle}`)}[data-state="succeeded"]`, { timeout: 30_000 });
      await page.$eval(body, (el) => {
        el.scrollTop = 0;
      });
      await page.waitForSelector(`${byTestId(`task-row-${tableRun.tasks[0].id}`)}[data-state="succeeded"]`, { timeout: 30_000 });
      const rendered = await page.$$(`${table} [data-testid^="task-row-"]`);
      if (rendered.length === 0 || rendered.length > 200) throw new Error(`${rendered.length} rows in the DOM: not windowed`);
      // Rows that come back into view are read afresh once they hold still (a settle delay,
      // then one REST page): the first row may already be current from the stream, so wait
      // for every rendered row, within a bound that a row never refreshed would exceed.
      const rowsSelector = `${table} [data-testid^="task-row-"]`;
      await page
        .waitForFunction(
          (sel) => [...document.querySelectorAll(sel)].every((el) => el.getAttribute('data-state') === 'succeeded'),
          rowsSelector,
          { timeout: 15_000 },
        )
        .catch(() => {});
      const stale = await page.$$eval(rowsSelector, (els) =>
        els.filter((el) => el.getAttribute('data-state') !== 'succeeded').map((el) => el.getAttribute('data-testid')),
      );
      if (stale.length > 0) throw new Error(`rows on screen still show an old state: ${stale.slice(0, 5).join(', ')}`);
      await page.click(byTestId('task-filter-failed'));
      // A big run's state filter asks the server, which may be slow under load.
      await page.waitForSelector(`${table}[data-rows="0"]`, { timeout: 120_000 });
      // Past 2,000 tasks the rows off screen are not followed: the filter must have asked the server.
      if (TABLE_TASKS > 2_000) await page.waitForSelector(`${table}[data-filter="server"]`, { timeout: 120_000 });
      await page.click(byTestId('task-filter-succeeded'));
      await page.waitForSelector(`${table}[data-rows="${TABLE_TASKS}"]`, { timeout: 120_000 });
      await page.click(byTestId('task-filter-all'));
      await page.fill(byTestId('task-filter-text'), 't-000042');
      await page.waitForSelector(`${table}[data-rows="1"]`);
      await page.click(byTestId('task-row-t-000042'));
      await page.waitForSelector(`${byTestId('task-panel')}[data-task="t-000042"]`);
      await shot('done');

      const report = { ...measured, runMs };
      writeFileSync(path.join(OUT, 'task-table.json'), `${JSON.stringify(report, null, 2)}\n`);
      return (
        `${TABLE_TASKS} tasks: submitted in ${submitMs} ms; header after ${report.headerMs} ms, first rows after ` +
        `${report.firstRowsMs} ms, all ${TABLE_TASKS} after ${report.allRowsMs} ms (from navigation); ${report.fps} fps, worst frame ${report.worstFrameMs} ms, ` +
        `${report.longFrames} frames over 50 ms, over ${(report.measuredMs / 1000).toFixed(1)} s in which ` +
        `${report.tasksDoneWhileMeasuring} tasks finished; run done ${(runMs / 1000).toFixed(1)} s after submission`
      );
    },
  },
  {
    name: 'big run live: a state filter shows a task that entered the state while the count stayed the same, and graph groups move',
    skip: SKIP_BIG,
    async run(page) {
      const created = await callApi('POST', '/api/v1/runs', bigLiveRun);
      const runPath = `/api/v1/runs/${encodeURIComponent(created.id)}`;
      try {
        await page.goto(`${BASE}/runs/${encodeURIComponent(created.id)}`);
        const table = byTestId('task-table');
        await page.waitForSelector(`${table}[data-total="${bigLiveRun.tasks.length}"]`, { timeout: 120_000 });
        // Every approval waits before the filter is chosen, so the count it starts from is 5.
        await page.waitForSelector(`${byTestId('task-filter-waiting')}[data-count="5"]`, { timeout: 60_000 });
        await page.click(byTestId('task-filter-waiting'));
        await page.waitForSelector(`${table}[data-filter="server"][data-rows="5"] ${byTestId('task-row-w-0')}`, { timeout: 60_000 });
        // w-0 leaves `waiting`, w-5 enters it: the count says 5 throughout.
        await callApi('POST', `${runPath}/tasks/w-0/approve`, { comment: 'e2e' });
        await page.waitForSelector(`${table} ${byTestId('task-row-w-5')}[data-state="waiting"]`, { timeout: 20_000 });
        await page.waitForSelector(`${table} ${byTestId('task-row-w-0')}`, { state: 'detached', timeout: 20_000 });
        if ((await page.getAttribute(byTestId('run-state'), 'data-state')) !== 'running') throw new Error('the run ended early');

        // The graph: the sleeps are one group, whose members the stream does not follow.
        await page.click(byTestId('view-graph'));
        const group = byTestId('group-node-s-0000');
        await page.waitForSelector(`${group}[data-count="${LIVE_SLEEPS}"]`, { timeout: 30_000 });
        // The line under the title: "12 running · 2388 queued".
        const counts = `${group} .node-sub`;
        const succeeded = () =>
          page.$eval(counts, (el) => Number(/(\d+) succeeded/.exec(el.textContent ?? '')?.[1] ?? 0)).catch(() => 0);
        const first = await succeeded();
        if (first >= LIVE_SLEEPS) throw new Error('every sleep had finished before the graph was shown: the run is too short to show a live group');
        await page.waitForFunction(
          ({ sel, want }) => new RegExp(`(^| )${want} succeeded`).test(document.querySelector(sel)?.textContent ?? ''),
          { sel: counts, want: LIVE_SLEEPS },
          { timeout: 180_000 },
        );
        if ((await page.getAttribute(byTestId('run-state'), 'data-state')) !== 'running') throw new Error('the run ended before its group was current');
        return `group went from ${first} to ${LIVE_SLEEPS} succeeded while shown`;
      } finally {
        await callApi('POST', `${runPath}/cancel`).catch(() => {});
      }
    },
  },
  {
    name: 'big run spawn: tasks spawned during a big run appear in its table',
    skip: SKIP_BIG || !FAKE_LLM,
    async run(page) {
      const created = await callApi('POST', '/api/v1/runs', bigSpawnRun);
      const runPath = `/api/v1/runs/${encodeURIComponent(created.id)}`;
      const table = byTestId('task-table');
      const before = bigSpawnRun.tasks.length;
      await page.goto(`${BASE}/runs/${encodeURIComponent(created.id)}`);
      await page.waitForSelector(`${table}[data-total="${before}"]`, { timeout: 120_000 });
      await page.waitForSelector(`${byTestId('task-filter-waiting')}[data-count="1"]`, { timeout: 60_000 });
      // Loaded and live: now `fan` runs and spawns its children, off screen.
      await callApi('POST', `${runPath}/tasks/gate/approve`, { comment: 'e2e' });
      await page.waitForSelector(`${table}[data-total="${before + 3}"]`, { timeout: 60_000 });
      await page.fill(byTestId('task-filter-text'), 'fan.');
      await page.waitForSelector(`${table}[data-rows="3"] ${byTestId('task-row-fan.0')}`, { timeout: 20_000 });
      await waitForState(page, 'run-state', 'succeeded', 120_000);
    },
  },
  {
    name: 'apex up: the printed address opens the dashboard signed in, and the token leaves the address bar',
    skip: !UP_URL,
    fresh: true,
    async run(page) {
      const printed = new URL(UP_URL);
      const token = printed.searchParams.get('token');
      if (!token) throw new Error(`APEX_UP_URL carries no ?token=: ${UP_URL}`);
      // Records whether the prompt ever showed, even for a frame.
      await page.addInitScript(() => {
        new MutationObserver(() => {
          if (document.querySelector('[data-testid="token-prompt"]')) window.__promptSeen = true;
        }).observe(document, { childList: true, subtree: true });
      });
      const demoShown = async () => {
        const seen = await page.waitForFunction(
          (name) =>
            (window.__promptSeen && 'prompt') ||
            ([...document.querySelectorAll('[data-testid^="run-row-"]')].some((row) => row.textContent?.includes(name)) && 'run'),
          UP_DEMO_RUN,
          { timeout: 30_000 },
        );
        if ((await seen.jsonValue()) === 'prompt' || (await page.evaluate(() => window.__promptSeen === true))) {
          throw new Error('the token prompt showed');
        }
        if (page.url().includes('token=')) throw new Error(`the address still holds the token: ${page.url()}`);
      };
      await page.goto(UP_URL);
      await demoShown();
      const stored = await page.evaluate(() => localStorage.getItem('apex.token'));
      if (stored !== token.trim()) throw new Error('the token was not stored as apex.token');
      await page.reload();
      await demoShown();
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
      // E2E_ONLY=approval runs only the scenarios whose name starts with it (while iterating).
      if (process.env.E2E_ONLY && !scenario.name.startsWith(process.env.E2E_ONLY)) continue;
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
      // Chromium reports what a Content-Security-Policy blocked on the console.
      page.on('console', (message) => {
        if (message.type() === 'error' && /Content Security Policy/i.test(message.text())) pageErrors.push(message.text());
      });
      const shot = (name) => page.screenshot({ path: path.join(OUT, `${label}-${name}.png`) });
      const started = Date.now();
      try {
        const report = await scenario.run(page, shot);
        if (pageErrors.length) throw new Error(`page errors: ${pageErrors.join(' | ')}`);
        passed += 1;
        console.log(`ok - ${scenario.name} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
        if (report) console.log(`    ${report}`);
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
