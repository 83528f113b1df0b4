// The web pages in a real Chromium, against running task-api servers on one backend: an open
// one (TASK_API_URL, a fresh database whose BACKUP_DIR holds a late backup) and one with token
// files (TOKEN_URL, API_TOKEN, METRICS_TOKEN). Accessibility (axe-core, WCAG 2 A and AA), no
// Content-Security-Policy violation; create, edit, move (buttons and dragging), search, filter,
// page and delete; 412 and 422 in place and between two browsers; one task per double submit;
// the keyboard; a phone-sized screen; login and logout; the late backup; the core actions again
// with JavaScript off. With SCREENSHOT_DIR set, first writes the README's screenshots there.
// Run by ci/browser-stage.sh, which starts the servers (once per backend, named by BACKEND).
import { mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const BASE = process.env.TASK_API_URL;
const TOKEN_URL = process.env.TOKEN_URL;
const API_TOKEN = process.env.API_TOKEN;
const METRICS_TOKEN = process.env.METRICS_TOKEN;
const BACKEND = process.env.BACKEND;
const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const unset = ['TASK_API_URL', 'TOKEN_URL', 'API_TOKEN', 'METRICS_TOKEN', 'BACKEND'].filter((name) => !process.env[name]);
if (unset.length > 0) {
  console.error(`${unset.join(', ')} not set: run ci/browser-stage.sh, which starts the servers`);
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

async function createTask(title, fields = {}) {
  const reply = await api('POST', '/tasks', { title, ...fields });
  check(reply.status === 201, `create ${title}: ${reply.status}`);
  return reply.body.data;
}

// A word no other test uses, so that a search finds only this test's tasks.
function uniqueWord() {
  return 'w' + Math.random().toString(36).slice(2, 10);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Versions are millisecond timestamps: a write in the same millisecond as the page load would
// not make the page stale.
const nextMillisecond = () => sleep(5);

const pathOf = (page) => new URL(page.url()).pathname;

// The titles of the tasks the list shows, in order.
async function listedTitles(page) {
  return page.locator('ul.tasks li.task a.title').allTextContents();
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

// An answer with this status is the point of the test: the browser's console line about it is
// not a problem.
function expectStatusInConsole(page, status) {
  page.problems = page.problems.filter((p) => !p.includes(String(status)));
}

// Clicks a submit button and waits for the answer to the post it sends.
async function submit(page, button) {
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST'),
    button.click(),
  ]);
  return response;
}

// The README's pictures, from a fresh database with a few tasks as a team would have them.
if (SCREENSHOT_DIR) {
  test('screenshots of the task list, the board, the status page and its backups', async (browser) => {
    const tasks = [
      ['Renew the TLS certificate for api.example.com', 'in-progress', 'Expires on the 14th; the staging one too.'],
      ['Write the quarterly backup drill report', 'pending', 'Restore time, rows compared, what went wrong.'],
      ['Rotate the metrics scraper token', 'completed', ''],
      ['Review the pagination cursor change', 'in-progress', 'Check the SQLite and PostgreSQL plans.'],
      ['Plan the PostgreSQL 16 upgrade', 'pending', 'Dump and restore on a copy first.'],
      ['Update the on-call runbook', 'completed', 'New alert names and the status page.'],
    ];
    for (const [title, status, description] of tasks) {
      await createTask(title, { status, description });
    }
    mkdirSync(SCREENSHOT_DIR, { recursive: true });
    const { context, page } = await openPage(browser, { viewport: { width: 1200, height: 800 } });
    for (const [path, file] of [['/', 'board.png'], ['/?view=board', 'board-columns.png'], ['/status', 'status.png']]) {
      await page.goto(BASE + path);
      await page.screenshot({ path: join(SCREENSHOT_DIR, file) });
    }
    // The backups sit below the first screen of /status: their own picture shows the late one.
    await page.locator('section[aria-labelledby="backups"]').screenshot({ path: join(SCREENSHOT_DIR, 'status-backups.png') });
    noProblems(page, 'screenshots');
    await context.close();
  });
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

test('a task is edited through its form: title, description and status', async (browser) => {
  const word = uniqueWord();
  const task = await createTask(`Edit me ${word}`, { description: 'first words' });
  const { context, page } = await openPage(browser);
  await page.goto(`${BASE}/?q=${word}`);
  await page.getByRole('link', { name: `Edit me ${word}` }).click();
  await page.getByRole('heading', { name: `Task ${task.id}` }).waitFor();
  await page.getByLabel('Title').fill(`Edited ${word}`);
  await page.getByLabel('Description').fill('second words');
  await page.getByLabel('Status').selectOption('completed');
  await Promise.all([page.waitForURL((u) => u.pathname === '/'), page.getByRole('button', { name: 'Save' }).click()]);
  const card = page.locator(`#task-${task.id}`);
  await card.locator('a.title', { hasText: `Edited ${word}` }).waitFor();
  check(await card.locator('.badge').textContent() === 'Completed', 'the card does not show the new status');
  const saved = (await api('GET', `/tasks/${task.id}`)).body.data;
  check(saved.title === `Edited ${word}` && saved.description === 'second words' && saved.status === 'completed',
    `saved as ${JSON.stringify(saved)}`);
  noProblems(page, 'edit');
  await context.close();
});

test('the search box finds tasks by a word of their title', async (browser) => {
  const word = uniqueWord();
  await createTask(`Invoice ${word} March`);
  await createTask(`Invoice ${word} April`);
  await createTask(`Unrelated ${uniqueWord()}`);
  const { context, page } = await openPage(browser);
  await page.goto(BASE + '/');
  await page.getByLabel('Search').fill(word);
  await Promise.all([page.waitForURL((u) => u.searchParams.get('q') === word), page.getByRole('button', { name: 'Show' }).click()]);
  const titles = await listedTitles(page);
  check(titles.length === 2 && titles.every((t) => t.includes(word)), `found ${JSON.stringify(titles)}`);
  check((await page.locator('p.total').textContent()).trim() === '2 tasks', 'the total does not say 2 tasks');
  check(await page.getByLabel('Search').inputValue() === word, 'the search box lost the word');
  noProblems(page, 'search');
  await context.close();
});

test('the status filter shows only the tasks in that status', async (browser) => {
  const word = uniqueWord();
  await createTask(`Waiting ${word}`, { status: 'pending' });
  await createTask(`Done ${word}`, { status: 'completed' });
  const { context, page } = await openPage(browser);
  await page.goto(`${BASE}/?q=${word}`);
  check((await listedTitles(page)).length === 2, 'the search alone does not show both');
  await page.locator('#status').selectOption('completed');
  await Promise.all([page.waitForURL((u) => u.searchParams.get('status') === 'completed'), page.getByRole('button', { name: 'Show' }).click()]);
  const titles = await listedTitles(page);
  check(titles.length === 1 && titles[0] === `Done ${word}`, `filtered to ${JSON.stringify(titles)}`);
  check(await page.locator('#status').inputValue() === 'completed', 'the filter is not kept in the form');
  // The board view keeps the filter: one column.
  await page.goto(`${BASE}/?q=${word}&status=completed&view=board`);
  const columns = await page.locator('.column').evaluateAll((els) => els.map((e) => e.dataset.status));
  check(columns.length === 1 && columns[0] === 'completed', `board columns ${JSON.stringify(columns)}`);
  noProblems(page, 'filter');
  await context.close();
});

test('the list pages through its cursor: next pages, then back to the first', async (browser) => {
  const word = uniqueWord();
  for (let i = 1; i <= 7; i += 1) {
    await createTask(`Page ${word} ${i}`);
  }
  const { context, page } = await openPage(browser);
  await page.goto(`${BASE}/?q=${word}&sort=title&order=asc&limit=3`);
  const expect = async (numbers, what) => {
    const titles = await listedTitles(page);
    const wanted = numbers.map((n) => `Page ${word} ${n}`);
    check(JSON.stringify(titles) === JSON.stringify(wanted), `${what}: ${JSON.stringify(titles)}`);
  };
  await expect([1, 2, 3], 'first page');
  check((await page.locator('p.total').textContent()).trim() === '7 tasks', 'the total is not 7 tasks');
  check(await page.getByRole('link', { name: 'First page' }).count() === 0, 'a first-page link on the first page');
  await page.getByRole('link', { name: 'Next page' }).click();
  await expect([4, 5, 6], 'second page');
  await page.getByRole('link', { name: 'Next page' }).click();
  await expect([7], 'third page');
  check(await page.getByRole('link', { name: 'Next page' }).count() === 0, 'a next-page link on the last page');
  await page.getByRole('link', { name: 'First page' }).click();
  await expect([1, 2, 3], 'back to the first page');
  noProblems(page, 'paging');
  await context.close();
});

test('a task is deleted after the confirmation', async (browser) => {
  const word = uniqueWord();
  const task = await createTask(`Delete me ${word}`);
  const { context, page } = await openPage(browser);
  await page.goto(`${BASE}/?q=${word}`);
  // The script asks first; the confirmation page asks again.
  let asked = '';
  page.once('dialog', (dialog) => {
    asked = dialog.message();
    dialog.accept();
  });
  await page.locator(`#task-${task.id}`).getByRole('link', { name: 'Delete', exact: true }).click();
  await page.getByRole('heading', { name: 'Delete this task?' }).waitFor();
  check(asked.includes('Delete'), `the script asked: ${asked}`);
  await axeCheck(page, 'delete confirmation');
  await Promise.all([page.waitForURL((u) => u.pathname === '/'), page.getByRole('button', { name: 'Delete' }).click()]);
  check(await page.locator(`#task-${task.id}`).count() === 0, 'the card is still listed');
  check((await api('GET', `/tasks/${task.id}`)).status === 404, 'not deleted');
  noProblems(page, 'delete');
  await context.close();
});

test('two browsers edit one task: the later save answers 412, shows what changed, offers a reload, overwrites nothing', async (browser) => {
  const word = uniqueWord();
  const task = await createTask(`Shared ${word}`, { description: 'as created' });
  await nextMillisecond();
  const first = await openPage(browser);
  const second = await openPage(browser);
  for (const { page } of [first, second]) {
    await page.goto(`${BASE}/board/tasks/${task.id}`);
  }
  await first.page.getByLabel('Title').fill(`Renamed first ${word}`);
  await Promise.all([first.page.waitForURL((u) => u.pathname === '/'), first.page.getByRole('button', { name: 'Save' }).click()]);

  const page = second.page;
  await page.getByLabel('Description').fill('typed second');
  const response = await submit(page, page.getByRole('button', { name: 'Save' }));
  check(response.status() === 412, `the stale save answered ${response.status()}`);
  const notice = page.locator('.notice.conflict');
  await notice.getByText('changed by someone else').waitFor();
  const titleRow = (await notice.locator('tr', { hasText: 'Title' }).textContent()) || '';
  check(titleRow.includes(`Renamed first ${word}`) && titleRow.includes(`Shared ${word}`),
    `the notice does not show the title change: ${titleRow}`);
  check(await page.getByLabel('Description').inputValue() === 'typed second', 'the typed text is lost');
  await axeCheck(page, '412 edit page');
  const saved = (await api('GET', `/tasks/${task.id}`)).body.data;
  check(saved.title === `Renamed first ${word}` && saved.description === 'as created',
    `the first change was overwritten: ${JSON.stringify(saved)}`);

  await page.getByRole('link', { name: 'reload the task' }).click();
  await page.waitForURL((u) => u.pathname === `/board/tasks/${task.id}`);
  check(await page.getByLabel('Title').inputValue() === `Renamed first ${word}`, 'the reload does not show the saved title');
  check(await page.getByLabel('Description').inputValue() === 'as created', 'the reload does not show the saved description');
  expectStatusInConsole(page, 412);
  noProblems(page, 'second browser');
  noProblems(first.page, 'first browser');
  await first.context.close();
  await second.context.close();
});

async function logIn(page, token) {
  await page.getByLabel('Access token').fill(token);
  return submit(page, page.getByRole('button', { name: 'Log in' }));
}

test('with token files: the board asks for a login, a wrong token is refused in words, the right one logs in, logout ends the session', async (browser) => {
  const { context, page } = await openPage(browser);
  await page.goto(TOKEN_URL + '/');
  check(pathOf(page) === '/login', `the board without a session went to ${page.url()}`);
  await axeCheck(page, '/login');

  const refused = await logIn(page, 'not-a-token-of-this-service');
  check(refused.status() === 401, `a wrong token answered ${refused.status()}`);
  await page.getByRole('alert').getByText('This token is not accepted').waitFor();
  check((await context.cookies(TOKEN_URL)).length === 0, 'a wrong token got a cookie');
  await axeCheck(page, '/login after a wrong token');
  expectStatusInConsole(page, 401);

  await logIn(page, API_TOKEN);
  await page.waitForURL((u) => u.pathname === '/');
  await page.getByRole('heading', { name: 'Tasks' }).waitFor();
  const session = (await context.cookies(TOKEN_URL)).find((c) => c.name === 'task_api_session');
  check(session, 'no session cookie after the login');
  check(session.httpOnly, 'the session cookie is not HttpOnly');
  check(session.sameSite === 'Strict', `the session cookie is SameSite=${session.sameSite}`);
  check(!(await page.evaluate(() => document.cookie)).includes('task_api_session'), 'scripts can read the session cookie');

  // The session's forms carry its CSRF token: a create goes through.
  const title = `Made in a session ${uniqueWord()}`;
  await page.getByLabel('Title').fill(title);
  await page.getByRole('button', { name: 'Create task' }).click();
  await page.locator('li.task', { hasText: title }).waitFor();
  await axeCheck(page, 'the board in a session');

  // An API token opens the board only.
  await page.goto(TOKEN_URL + '/status');
  check(pathOf(page) === '/login', `/status with an API token session went to ${page.url()}`);

  await page.goto(TOKEN_URL + '/');
  await Promise.all([page.waitForURL((u) => u.pathname === '/login'), page.getByRole('button', { name: 'Log out' }).click()]);
  check(!(await context.cookies(TOKEN_URL)).some((c) => c.name === 'task_api_session'), 'the cookie outlived the logout');
  await page.goto(TOKEN_URL + '/');
  check(pathOf(page) === '/login', 'the board is still open after the logout');

  // The old cookie value is worthless now, wherever it is presented.
  const copy = await browser.newContext();
  await copy.addCookies([{ name: session.name, value: session.value, url: TOKEN_URL }]);
  const copied = await copy.newPage();
  await copied.goto(TOKEN_URL + '/');
  check(pathOf(copied) === '/login', 'the cookie from before the logout still opens the board');
  await copy.close();
  noProblems(page, 'login');
  await context.close();
});

test('with token files: the status page needs a metrics token', async (browser) => {
  const { context, page } = await openPage(browser);
  await page.goto(TOKEN_URL + '/status');
  check(pathOf(page) === '/login', `/status without a session went to ${page.url()}`);
  await logIn(page, METRICS_TOKEN);
  await page.waitForURL((u) => u.pathname === '/status');
  await page.getByRole('heading', { name: 'Service status' }).waitFor();
  await axeCheck(page, '/status in a session');
  // A metrics token opens the status page only.
  await page.goto(TOKEN_URL + '/');
  check(pathOf(page) === '/login', `the board with a metrics token session went to ${page.url()}`);
  noProblems(page, 'metrics login');
  await context.close();
});

test('the status page shows a backup three days old as late, in words and marked', async (browser) => {
  const { context, page } = await openPage(browser);
  const response = await page.goto(BASE + '/status');
  check(response.status() === 200, `/status: ${response.status()}`);
  // The stage's server for this backend, not another one.
  const backend = await page.locator('section[aria-labelledby="db"] dd').first().textContent();
  check(backend === BACKEND, `the page says backend ${backend}, the stage ran ${BACKEND}`);
  const backups = page.locator('section[aria-labelledby="backups"]');
  check(/taskmanager_backup_\d{8}_\d{6}\.jsonl\.zst/.test(await backups.textContent()), 'the backup is not listed');
  const age = backups.locator('dd.late[data-late="true"]');
  check(await age.count() === 1, 'no late marker on the age');
  const words = await age.textContent();
  check(/^3 days old — late: a backup is expected every 1 day$/.test(words.trim()), `the age reads: ${words}`);
  await axeCheck(page, '/status with a late backup');
  noProblems(page, 'late backup');
  await context.close();
});

test('without JavaScript, create, a stale edit (412), the edit saved again on purpose and delete work through the forms', async (browser) => {
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
  // Having seen the change, the person saves again on purpose: now it is written.
  const resent = await submit(page, page.getByRole('button', { name: 'Save' }));
  check(resent.status() === 303, `the deliberate save answered ${resent.status()}`);
  await page.waitForURL((u) => u.pathname === '/');
  check((await api('GET', `/tasks/${id}`)).body.data.description === 'mine', 'the deliberate save did not write');
  await page.goto(`${BASE}/board/tasks/${id}`);
  await page.getByRole('link', { name: 'Delete this task' }).click();
  await page.getByRole('button', { name: 'Delete' }).click();
  await page.getByRole('heading', { name: 'Tasks' }).waitFor();
  check((await api('GET', `/tasks/${id}`)).status === 404, 'not deleted');
  await context.close();
});

test('without JavaScript, a create sent again after its answer was lost makes one task', async (browser) => {
  const { context, page } = await openPage(browser, { javaScriptEnabled: false });
  const title = `Sent twice ${uniqueWord()}`;
  // The first post reaches the server, but its answer is replaced by 204, which leaves the
  // page as it was: the filled form, as when a connection drops, and the person sends again.
  let firstLocation = null;
  await page.route('**/board/tasks', async (route) => {
    if (route.request().method() !== 'POST' || firstLocation !== null) {
      await route.continue();
      return;
    }
    const answer = await route.fetch({ maxRedirects: 0 });
    firstLocation = answer.headers().location || `(status ${answer.status()})`;
    await route.fulfill({ status: 204 });
  });
  await page.goto(BASE + '/');
  await page.getByLabel('Title').fill(title);
  await page.getByRole('button', { name: 'Create task' }).click();
  for (let i = 0; i < 100 && firstLocation === null; i += 1) {
    await sleep(50);
  }
  check(firstLocation !== null && firstLocation.startsWith('/#task-'), `the first post answered ${firstLocation}`);
  check(await page.getByLabel('Title').inputValue() === title, 'the page did not stay on the filled form');
  check(await countTitled(title) === 1, 'the first post made no task');
  const again = await submit(page, page.getByRole('button', { name: 'Create task' }));
  check(again.status() === 303 && again.headers().location === firstLocation,
    `sent again: ${again.status()} to ${again.headers().location}, the first went to ${firstLocation}`);
  await page.locator('li.task', { hasText: title }).first().waitFor();
  check(await countTitled(title) === 1, 'the form sent twice made two tasks');
  await context.close();
});

test('without JavaScript, moving, search, the status filter and paging work through forms and links', async (browser) => {
  const word = uniqueWord();
  const moved = await createTask(`Move ${word} 1`);
  for (let i = 2; i <= 4; i += 1) {
    await createTask(`Move ${word} ${i}`);
  }
  const { context, page } = await openPage(browser, { javaScriptEnabled: false });
  await page.goto(BASE + '/');
  await page.getByLabel('Search').fill(word);
  await page.getByRole('button', { name: 'Show' }).click();
  await page.waitForURL((u) => u.searchParams.get('q') === word);
  check((await listedTitles(page)).length === 4, 'the search does not find the four tasks');
  const card = page.locator(`#task-${moved.id}`);
  await card.getByRole('button', { name: 'Move to Completed' }).click();
  await page.waitForURL((u) => u.hash === `#task-${moved.id}`);
  check((await api('GET', `/tasks/${moved.id}`)).body.data.status === 'completed', 'not moved');
  await page.goto(`${BASE}/?q=${word}`);
  await page.locator('#status').selectOption('completed');
  await page.getByRole('button', { name: 'Show' }).click();
  await page.waitForURL((u) => u.searchParams.get('status') === 'completed');
  const completed = await listedTitles(page);
  check(completed.length === 1 && completed[0] === `Move ${word} 1`, `filtered to ${JSON.stringify(completed)}`);
  await page.goto(`${BASE}/?q=${word}&sort=title&order=asc&limit=3`);
  await page.getByRole('link', { name: 'Next page' }).click();
  const last = await listedTitles(page);
  check(last.length === 1 && last[0] === `Move ${word} 4`, `the second page holds ${JSON.stringify(last)}`);
  await context.close();
});

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  // Root has no user namespace sandbox here; the pages are our own.
  args: process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : [],
});
try {
  for (const { name, body } of tests) {
    const started = Date.now();
    try {
      await body(browser);
      console.log(`ok   [${BACKEND}] ${name} (${Date.now() - started} ms)`);
    } catch (error) {
      failures += 1;
      console.log(`FAIL [${BACKEND}] ${name}\n    ${error.message.split('\n').join('\n    ')}`);
    }
  }
} finally {
  await browser.close();
}
console.log(`[${BACKEND}] ${tests.length - failures} passed, ${failures} failed`);
process.exit(failures === 0 ? 0 : 1);
