// Class presets (www/presets/*.json: CLIP's cleaned ImageNet-1k names, CIFAR-10's) and the
// choice of prompts: the model's own, one template, or CLIP's ensemble of 80 templates. Presets
// are files of this site, fetched when picked.

import { $ } from './dom.js';
import { setStatus, showError } from './status.js';
import { emit } from './events.js';

const ONE_TEMPLATE = 'a photo of a {}.';
const files = new Map();

async function preset(name) {
  if (!files.has(name)) {
    const r = await fetch(`presets/${name}.json`);
    if (!r.ok) throw new Error(`presets/${name}.json: HTTP ${r.status}`);
    files.set(name, await r.json());
  }
  return files.get(name);
}

/** The templates the prompt choice asks for, or null for the model's own prompt. */
export async function chosenTemplates() {
  const mode = $('class-templates').value;
  if (mode === 'one') return [ONE_TEMPLATE];
  if (mode === 'ensemble') return (await preset('cifar-10')).templates; // the same 80 in both files
  return null;
}

export function initPresets() {
  $('class-preset').addEventListener('change', async (event) => {
    const name = event.target.value;
    if (!name) return;
    try {
      const p = await preset(name);
      await emit('preset-classes', p.classes);
      setStatus(`${p.name}: ${p.classes.length} classes in the editor; press “Apply classes” to use them.`);
    } catch (e) {
      showError(`Could not read the preset: ${e.message}`);
    }
  });
}
