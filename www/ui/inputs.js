// Images in: picked, dropped anywhere on the page, pasted, or a sample clicked. A dropped
// .bundle file loads as the model instead.

import { $, el } from './dom.js';
import { showError } from './status.js';
import { enqueueImage } from './results.js';
import { loadModel } from './model-panel.js';

let pastes = 0;

function addFiles(files) {
  for (const file of files) {
    if (/\.bundle$/i.test(file.name)) loadModel(file);
    else enqueueImage(file, file.name || 'image');
  }
}

function initDrop() {
  const zone = $('dropzone');
  let depth = 0;
  const hasFiles = (event) => [...(event.dataTransfer?.types ?? [])].includes('Files');
  document.addEventListener('dragenter', (event) => {
    if (!hasFiles(event)) return;
    depth += 1;
    zone.classList.add('dragging');
  });
  document.addEventListener('dragleave', () => {
    depth = Math.max(0, depth - 1);
    if (depth === 0) zone.classList.remove('dragging');
  });
  document.addEventListener('dragover', (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault(); // allow dropping anywhere on the page
    event.dataTransfer.dropEffect = 'copy';
  });
  document.addEventListener('drop', (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault(); // never navigate to the dropped file
    depth = 0;
    zone.classList.remove('dragging');
    addFiles([...event.dataTransfer.files]);
  });
}

/** The samples listed in samples/index.json, as buttons; the gallery stays hidden without them. */
async function loadSamples() {
  let list;
  try {
    const response = await fetch('samples/index.json', { cache: 'no-cache' });
    if (!response.ok) return;
    list = await response.json();
  } catch {
    return;
  }
  if (!Array.isArray(list)) return;
  const ul = $('samples');
  for (const item of list) {
    const file = typeof item?.file === 'string' ? item.file : '';
    if (!/^[\w][\w .()+-]*\.[A-Za-z0-9]+$/.test(file)) continue; // plain names inside samples/
    const label = typeof item.label === 'string' && item.label ? item.label : file;
    const src = `samples/${encodeURIComponent(file)}`;
    const button = el('button', { type: 'button', class: 'sample', title: `Score ${file}`, 'aria-label': `Score the sample ${label} (${file})` },
      el('img', { src, alt: '', loading: 'lazy', decoding: 'async' }),
      el('span', { class: 'sample-label', text: label }));
    button.addEventListener('click', async () => {
      try {
        const response = await fetch(src);
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        enqueueImage(await response.blob(), file);
      } catch (e) {
        showError(`Could not fetch the sample ${file}: ${e.message}`);
      }
    });
    ul.append(el('li', {}, button));
  }
  $('samples-box').hidden = ul.children.length === 0;
}

export function initInputs() {
  $('image-input').addEventListener('change', (event) => {
    const files = [...event.target.files];
    event.target.value = ''; // the same file can be picked again
    addFiles(files);
  });
  initDrop();
  document.addEventListener('paste', (event) => {
    const files = [...(event.clipboardData?.files ?? [])];
    if (files.length === 0) return; // text pastes go where they were meant to
    event.preventDefault();
    for (const f of files) {
      pastes += 1;
      const ext = (f.type.split('/')[1] || 'png').replace(/[^a-z0-9]/gi, '');
      enqueueImage(f, `pasted-${pastes}.${ext}`);
    }
  });
  loadSamples();
}
