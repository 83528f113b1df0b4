// The web pages in a real Chromium, against a running task-api (TASK_API_URL, a fresh
// database): accessibility (axe-core, WCAG 2 A and AA), no Content-Security-Policy violation,
// the script's moves and creates (If-Match, Idempotency-Key, 412 and 422 in place), dragging
// on the board, the keyboard, a phone-sized screen, and the same core actions with JavaScript
// off. Run by ci/browser-stage.sh, which starts the server.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const BASE = process.env.TASK_API_URL;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
if (!BASE) {
  console.error('TASK_API_URL is not set: run ci/browser-stage.sh');
  process.exit(2);
}
const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

let failures = 0;
const tests = [];
function test(name, body) {
  tests.push({ name, body });
}
function check(condition, message) {
  if (!condition) {
    throw new Error(message);
  }
}

async function api(method, path, body, headers = {}) {
  const response = await fetch(BASE + path, {
    method,
    headers: body ? { 'Content-Type': 'application/json', ...headers } : headers,
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: text ? JSON.parse(text) : null };
}

async function createTask(title) {
  const reply = await api('POST', '/tasks', { title });
  check(reply.status === 201, `create ${title}: ${reply.status}`);
  return reply.body.data;
}

async function countTitled(title) {
  const reply = await api('GET', '/tasks?limit=1000&q=' + encodeURIComponent(title));
  return reply.body.data.filter((t) => t.title === title).length;
}

// A page that records every CSP violation and every page error.
async function openPage(browser, options = {}) {
  const context = await browser.newContext(options);
  const page = await context.newPage();
  page.problems = [];
  page.on('pageerror', (error) => page.problems.push('page error: ' + error.message));
  page.on('console', (message) => {
    if (message.type() === 'error') {
      page.problems.push('console: ' + message.text());
    }
  });
  // Init scripts are injected by the browser itself, not subject to the page's CSP.
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (event) => {
      console.error('CSP violation: ' + event.violatedDirective + ' ' + event.blockedURI);
    });
  });
  return { context, page };
}

async function axeCheck(page, what) {
  await page.evaluate(AXE);
  const result = await page.evaluate(() =>
    window.axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } }));
  const found = result.violations.map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
  check(found.length === 0, `${what}: accessibility violations:\n    ${found.join('\n    ')}`);
}

function noProblems(page, what) {
  check(page.problems.length === 0, `${what}: ${page.problems.join('; ')}`);
}

test('every page passes axe-core (WCAG 2.1 A/AA) with no CSP violation or script error', async (browser) => {
  const task = await createTask('Accessible task');
  const { context, page } = await openPage(browser);
  for (const path of ['/', '/?view=board', '/status', `/board/tasks/${task.id}`, `/board/tasks/${task.id}/delete`]) {
    const response = await page.goto(BASE + path);
    check(response.status() === 200, `${path}: ${response.status()}`);
    await axeCheck(page, path);
    noProblems(page, path);
  }
  await context.close();
});

test('a move goes through the API in place; a stale one shows the 412 beside the task', async (browser) => {
  const task = await createTask('Move me');
  const { context, page } = await openPage(browser);
  await page.goto(BASE + '/');
  await page.evaluate(() => { window.notReloaded = true; });
  const card = page.locator(`#task-${task.id}`);
  await card.getByRole('button', { name: 'Move to In progress' }).click();
  await card.locator('.badge', { hasText: 'In progress' }).waitFor();
  check(await page.evaluate(() => window.notReloaded === true), 'the page was reloaded');
  check((await api('GET', `/tasks/${task.id}`)).body.data.status === 'in-progress', 'not moved');

  // Someone else changes it: the next move must not overwrite.
  await new Promise((resolve) => setTimeout(resolve, 5));
  await api('PATCH', `/tasks/${task.id}`, { title: 'Changed elsewhere' });
  await card.getByRole('button', { name: 'Move to Completed' }).click();
  await card.locator('.live', { hasText: 'changed by someone else' }).waitFor();
  // The 412 itself is expected; only script errors count.
  page.problems = page.problems.filter((p) => !p.includes('412'));
  const saved = (await api('GET', `/tasks/${task.id}`)).body.data;
  check(saved.status === 'in-progress' && saved.title === 'Changed elsewhere', 'a stale move wrote');
  check(await card.getByRole('link', { name: /Reload/ }).count() === 1, 'no reload link');
  noProblems(page, 'move');
  await context.close();
});

test('a create refused with 422 shows the message at the field and keeps the typed text', async (browser) => {
  const { context, page } = await openPage(browser);
  await page.goto(BASE + '/');
  await page.getByLabel('Description').fill('keep every word');
  await page.getByRole('button', { name: 'Create task' }).click();
  await page.locator('#new-title[aria-invalid="true"]').waitFor();
  const described = await page.locator('#new-title').getAttribute('aria-describedby');
  check((await page.locator('#' + described).textContent()).includes('title'), 'no title message');
  check(await page.getByLabel('Description').inputValue() === 'keep every word', 'the typed text is lost');
  // The error responses are expected here; only script errors count.
  page.problems = page.problems.filter((p) => !p.includes('422'));
  noProblems(page, '422');
  await context.close();
});

test('a double click on Create makes one task', async (browser) => {
  const { context, page } = await openPage(browser);
  await page.goto(BASE + '/');
  await page.getByLabel('Title').fill('Clicked twice');
  await page.getByRole('button', { name: 'Create task' }).dblclick();
  await page.locator('li.task', { hasText: 'Clicked twice' }).first().waitFor();
  await page.waitForLoadState('load');
  check(await countTitled('Clicked twice') === 1, 'a double click made two tasks');
  await context.close();
});

test('a task is created and opened with the keyboard alone', async (browser) => {
  const { context, page } = await openPage(browser);
  await page.goto(BASE + '/');
  let focused = '';
  for (let i = 0; i < 60 && focused !== 'new-title'; i += 1) {
    await page.keyboard.press('Tab');
    focused = await page.evaluate(() => document.activeElement && document.activeElement.id);
  }
  check(focused === 'new-title', 'Tab never reaches the title field');
  await page.keyboard.type('Typed on the keyboard');
  await page.keyboard.press('Enter');
  const link = page.getByRole('link', { name: 'Typed on the keyboard' });
  await link.waitFor();
  await link.focus();
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: /^Task \d+$/ }).waitFor();
  noProblems(page, 'keyboard');
  await context.close();
});

test('a task dragged onto another column of the board moves there', async (browser) => {
  const task = await createTask('Drag me');
  const { context, page } = await openPage(browser);
  await page.goto(BASE + '/?view=board');
  // Picked up by its top corner, where the title is (not a button), and carried in steps as a
  // hand would (a single jump does not always start a drag).
  const from = await page.locator(`#task-${task.id}`).boundingBox();
  const to = await page.locator('.column[data-status="completed"]').boundingBox();
  await page.mouse.move(from.x + 8, from.y + 8);
  await page.mouse.down();
  await page.mouse.move(to.x + to.width / 2, to.y + 20, { steps: 10 });
  await page.mouse.up();
  await page.locator(`.column[data-status="completed"] #task-${task.id}`).waitFor();
  check((await api('GET', `/tasks/${task.id}`)).body.data.status === 'completed', 'the drop did not move it');
  noProblems(page, 'drag');
  await context.close();
});

test('on a phone-sized screen nothing scrolls sideways', async (browser) => {
  await createTask('A rather long title that must wrap on a narrow screen without scrolling');
  const { context, page } = await openPage(browser, { viewport: { width: 360, height: 740 }, isMobile: true });
  for (const path of ['/', '/?view=board', '/status']) {
    await page.goto(BASE + path);
    const [scroll, width] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
    check(scroll <= width, `${path}: ${scroll}px wide in a ${width}px screen`);
  }
  await context.close();
});

test('without JavaScript, create, a stale edit (412) and delete work through the forms', async (browser) => {
  const { context, page } = await openPage(browser, { javaScriptEnabled: false });
  await page.goto(BASE + '/');
  await page.getByLabel('Title').fill('No script');
  await page.getByRole('button', { name: 'Create task' }).click();
  const link = page.getByRole('link', { name: 'No script' });
  await link.waitFor();
  await link.click();
  const id = Number(page.url().split('/').pop());
  await new Promise((resolve) => setTimeout(resolve, 5));
  await api('PATCH', `/tasks/${id}`, { description: 'from elsewhere' });
  await page.getByLabel('Description').fill('mine');
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST'),
    page.getByRole('button', { name: 'Save' }).click(),
  ]);
  check(response.status() === 412, `a stale edit answered ${response.status()}`);
  await page.getByText('changed by someone else').waitFor();
  check((await api('GET', `/tasks/${id}`)).body.data.description === 'from elsewhere', 'a stale edit wrote');
  await page.getByRole('link', { name: 'Delete this task' }).click();
  await page.getByRole('button', { name: 'Delete' }).click();
  await page.getByRole('heading', { name: 'Tasks' }).waitFor();
  check((await api('GET', `/tasks/${id}`)).status === 404, 'not deleted');
  await context.close();
});

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  // Root has no user namespace sandbox here; the pages are our own.
  args: process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : [],
});
try {
  for (const { name, body } of tests) {
    try {
      await body(browser);
      console.log(`ok   ${name}`);
    } catch (error) {
      failures += 1;
      console.log(`FAIL ${name}\n    ${error.message.split('\n').join('\n    ')}`);
    }
  }
} finally {
  await browser.close();
}
console.log(`${tests.length - failures} passed, ${failures} failed`);
process.exit(failures === 0 ? 0 : 1);
