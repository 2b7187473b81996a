// The models converted on this device before and kept in the browser (pkg: cachedModels): each
// with its size and date, a button to load it (no network) and one to delete it with the class
// text features made for it.

import { $, el, bytesText } from './dom.js';
import { session } from './session.js';
import { setStatus, showError } from './status.js';
import { loadModel } from './model-panel.js';

const when = (ms) => new Date(ms).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });

export async function refreshSavedModels() {
  if (!session.scorer) return;
  let models;
  try {
    models = await session.scorer.cachedModels();
  } catch (e) {
    showError(`Could not list the saved models: ${e.message}`);
    return;
  }
  const list = $('saved-models');
  list.replaceChildren(...models.map((m) => el('li', { class: 'saved-model', dataset: { testid: 'saved-model', id: m.id, name: m.name } },
    el('span', { class: 'saved-name', title: `${m.source}\ncheckpoint SHA-256 ${m.checkpointSha256}${m.commit ? `\nHub commit ${m.commit}` : ''}`, text: m.name }),
    el('span', { class: 'muted small', text: ` ${m.quant}, ${bytesText(m.bytes)}, ${when(m.saved)} ` }),
    el('button', { type: 'button', dataset: { testid: 'saved-load' }, 'aria-label': `Load ${m.name} (${m.quant})`, text: 'Load', onclick: () => loadSaved(m) }),
    el('button', { type: 'button', dataset: { testid: 'saved-delete' }, 'aria-label': `Delete ${m.name} (${m.quant})`, text: 'Delete', onclick: () => deleteSaved(m) }),
  )));
  $('saved-box').hidden = models.length === 0;
  const total = models.reduce((n, m) => n + m.bytes, 0);
  $('saved-total').textContent = models.length ? `${models.length} kept, ${bytesText(total)} in all` : '';
}

async function loadSaved(m) {
  const bytes = await session.scorer.cachedModel(m.id).catch(() => null);
  if (!bytes) {
    showError(`${m.name} is no longer saved in this browser.`);
    await refreshSavedModels();
    return;
  }
  await loadModel(new File([bytes], `${m.name}.${m.quant}.bundle`, { type: 'application/octet-stream' }), `${m.name} (saved)`);
}

async function deleteSaved(m) {
  try {
    await session.scorer.deleteCachedModel(m.id);
    setStatus(`${m.name} (${m.quant}) deleted from this browser.`);
  } catch (e) {
    showError(`Could not delete ${m.name}: ${e.message}`);
  }
  await refreshSavedModels();
}
