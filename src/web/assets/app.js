// task-api pages, enhanced: everything works without this file; with it, forms cannot be sent
// twice by a double click, and tasks move on the board by dragging onto a column (the drop
// sends the same move form a button would).
'use strict';

document.addEventListener('submit', (event) => {
  const form = event.target;
  if (form.dataset.sent === 'yes') {
    event.preventDefault();
    return;
  }
  form.dataset.sent = 'yes';
  // A page shown again from the history cache gets its forms back.
  window.addEventListener('pageshow', () => { delete form.dataset.sent; }, { once: true });
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

// Delete links ask here first, then go to the confirmation page's form.
for (const link of document.querySelectorAll('a.delete')) {
  link.addEventListener('click', (event) => {
    if (!window.confirm('Delete this task?')) {
      event.preventDefault();
    }
  });
}
