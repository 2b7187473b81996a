// The CLIP checkpoints the page offers in one click (hub-models.json: each with the bytes its
// import reads and the size of the bundle it makes), above the free repository field.

import { el, $, bytesText } from './dom.js';
import { importFromHub } from './import.js';

const about = (n, approx) => `${approx ? '~' : ''}${bytesText(n)}`;

/** Fills the list; a page without the catalog keeps the free field alone. */
export async function initHubList() {
  let models;
  try {
    const response = await fetch(new URL('../hub-models.json', import.meta.url));
    models = (await response.json()).models;
  } catch {
    return;
  }
  $('hub-models').replaceChildren(...models.map((m) => el('li', {},
    el('button', {
      type: 'button',
      class: 'hub-pick',
      title: `Import ${m.repo} from the Hugging Face Hub`,
      dataset: { testid: 'hub-pick', repo: m.repo },
      onclick: () => importFromHub(m.repo, 'main'),
    },
    el('span', { class: 'hub-name' }, el('strong', { text: m.name }), ` · ${m.by}`),
    el('span', { class: 'hub-size', text: `${about(m.download, m.approx)} → ${about(m.bundle, m.approx)}` }),
    el('span', { class: 'hub-what', text: m.what }),
    el('code', { class: 'hub-repo', text: m.repo })),
  )));
}
