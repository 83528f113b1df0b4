// task-api pages, enhanced. Everything works without this file (plain forms); with it:
// - forms cannot be sent twice by a double click;
// - where the JSON API is open to the page (no API tokens), moves and creates go through it
//   with If-Match and Idempotency-Key, and a 412, 422 or 503 is shown next to what caused it
//   without leaving the page or losing what was typed;
// - tasks move on the board by dragging them onto a column (or with their buttons);
// - delete links ask first.
'use strict';

const NAMES = { pending: 'Pending', 'in-progress': 'In progress', completed: 'Completed' };
const jsonApi = document.querySelector('[data-json-api="open"]') !== null;

// Writes `text` in the message area of `container`, created on first use.
function say(container, text, reload) {
  let area = container.querySelector(':scope > .live');
  if (!area && !text) {
    return;
  }
  if (!area) {
    area = document.createElement('p');
    area.className = 'live error';
    area.setAttribute('role', 'alert');
    container.prepend(area);
  }
  area.textContent = text;
  if (reload) {
    const link = document.createElement('a');
    link.href = window.location.pathname + window.location.search;
    link.textContent = ' Reload to see it as it is now.';
    area.append(link);
  }
}

async function errorText(response) {
  if (response.status === 412) {
    return 'This task was changed by someone else since the page was loaded; nothing was changed.';
  }
  if (response.status === 503) {
    return 'The database cannot be reached right now; nothing was saved. Try again in a moment.';
  }
  try {
    const body = await response.json();
    return body.error.message;
  } catch {
    return 'The request failed (' + response.status + ').';
  }
}

// Shows a task's new state in its card: status, version, move buttons, column.
function showMoved(card, task, etag) {
  card.dataset.status = task.status;
  card.dataset.etag = etag;
  const badge = card.querySelector('.badge');
  badge.className = 'badge ' + task.status;
  badge.textContent = NAMES[task.status];
  const form = card.querySelector('form.move');
  form.querySelector('input[name="version"]').value = String(Date.parse(task.updated_at));
  for (const button of form.querySelectorAll('button')) {
    button.remove();
  }
  for (const status of Object.keys(NAMES)) {
    if (status !== task.status) {
      const button = document.createElement('button');
      button.type = 'submit';
      button.name = 'status';
      button.value = status;
      button.textContent = 'Move to ' + NAMES[status];
      form.append(button);
    }
  }
  const column = document.querySelector('.column[data-status="' + task.status + '"] ul.tasks');
  if (column && card.closest('.column')) {
    column.prepend(card);
  }
  delete form.dataset.sent;
}

async function moveOverApi(form, status) {
  const card = form.closest('li.task');
  const response = await fetch('/tasks/' + card.dataset.id, {
    method: 'PATCH',
    headers: { 'Content-Type': 'application/json', 'If-Match': card.dataset.etag },
    body: JSON.stringify({ status }),
  });
  if (response.ok) {
    const body = await response.json();
    showMoved(card, body.data, response.headers.get('ETag'));
    say(card, '');
    return;
  }
  delete form.dataset.sent;
  say(card, await errorText(response), response.status === 412);
}

function showFieldErrors(form, details) {
  for (const old of form.querySelectorAll('.field-error.live-field')) {
    old.remove();
  }
  for (const input of form.querySelectorAll('[aria-invalid]')) {
    input.removeAttribute('aria-invalid');
  }
  for (const [field, message] of Object.entries(details || {})) {
    const input = form.querySelector('[name="' + field + '"]');
    if (input) {
      const note = document.createElement('p');
      note.className = 'field-error live-field';
      note.id = input.id + '-live-error';
      note.textContent = message;
      input.setAttribute('aria-invalid', 'true');
      input.setAttribute('aria-describedby', note.id);
      input.after(note);
    }
  }
}

async function createOverApi(form) {
  const data = new FormData(form);
  const response = await fetch('/tasks', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'Idempotency-Key': data.get('key') },
    body: JSON.stringify({
      title: data.get('title'),
      description: data.get('description'),
      status: data.get('status'),
    }),
  });
  if (response.status === 201) {
    const body = await response.json();
    // A query of its own makes this a new page load, scrolled to the new task.
    window.location.assign('/?created=' + body.data.id + '#task-' + body.data.id);
    return;
  }
  delete form.dataset.sent;
  let details = {};
  if (response.status === 422) {
    try {
      details = (await response.clone().json()).error.details;
    } catch {
      details = {};
    }
  }
  showFieldErrors(form, details);
  say(form, await errorText(response));
}

document.addEventListener('submit', (event) => {
  const form = event.target;
  if (form.dataset.sent === 'yes') {
    event.preventDefault();
    return;
  }
  form.dataset.sent = 'yes';
  // A page shown again from the history cache gets its forms back.
  window.addEventListener('pageshow', () => { delete form.dataset.sent; }, { once: true });
  if (!jsonApi) {
    return;
  }
  const fallback = (error) => {
    // The API could not be reached from here: the plain form still can be sent.
    console.warn('falling back to the form', error);
    form.submit();
  };
  if (form.matches('form.move') && event.submitter) {
    event.preventDefault();
    const status = event.submitter.value;
    moveOverApi(form, status).catch((error) => {
      // form.submit() sends no button: the chosen status goes as a field instead.
      const field = document.createElement('input');
      field.type = 'hidden';
      field.name = 'status';
      field.value = status;
      form.append(field);
      fallback(error);
    });
  } else if (form.matches('form.task-form[action="/board/tasks"]')) {
    event.preventDefault();
    createOverApi(form).catch(fallback);
  }
});

function moveBy(card, status) {
  const form = card.querySelector('form.move');
  const button = form && form.querySelector('button[value="' + status + '"]');
  if (button) {
    form.requestSubmit(button);
  }
}

for (const card of document.querySelectorAll('.columns li.task')) {
  card.draggable = true;
  card.addEventListener('dragstart', (event) => {
    event.dataTransfer.setData('text/plain', card.id);
  });
}

for (const column of document.querySelectorAll('.columns .column')) {
  column.addEventListener('dragover', (event) => {
    event.preventDefault();
    column.classList.add('drop');
  });
  column.addEventListener('dragleave', () => column.classList.remove('drop'));
  column.addEventListener('drop', (event) => {
    event.preventDefault();
    column.classList.remove('drop');
    const card = document.getElementById(event.dataTransfer.getData('text/plain'));
    if (card && card.dataset.status !== column.dataset.status) {
      moveBy(card, column.dataset.status);
    }
  });
}

for (const link of document.querySelectorAll('a.delete')) {
  link.addEventListener('click', (event) => {
    if (!window.confirm('Delete this task?')) {
      event.preventDefault();
    }
  });
}
