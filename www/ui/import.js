// Importing a Hugging Face checkpoint, from files the user picked or from the Hub when asked:
// converted into a bundle in the scorer's worker (pkg: importCheckpoint, importFromHub), then
// loaded like any bundle, and offered as a download. What the import read (which file, at which
// revision and commit) and anything it had to say stays shown under the form.

import { $, bytesText } from './dom.js';
import { session } from './session.js';
import { setStatus, showError, showProgress, hideProgress } from './status.js';
import { loadModel } from './model-panel.js';
import { refreshSavedModels } from './saved-models.js';

let downloadUrl = null;

/** The Hub's base URL: `?hub=URL` (mirrors, tests), else the Hub. */
let hubBase = 'https://huggingface.co';

/** Runs one import (`run` gets the progress callback); the model in use stays if it fails. */
async function runImport(what, run) {
  if (!session.scorer) {
    showError('The scorer is not running yet; wait for the first model to load.');
    return;
  }
  const quant = $('import-quant').value;
  const classes = session.model?.info.classes ?? [];
  setStatus(`Converting ${what} to ${quant} on this device…`);
  $('import-cancel').hidden = false;
  $('hub-load').disabled = true;
  const t0 = performance.now();
  let cached = false;
  let ok = false;
  const notes = [];
  const note = $('import-note');
  const tell = (line) => {
    notes.push(line);
    note.textContent = notes.join(' ');
    note.hidden = false;
  };
  note.hidden = true;
  const onProgress = (p) => {
    if (p.status === 'cached') {
      cached = true;
      tell(`${p.name}: converted on an earlier visit, taken from this browser's storage.`);
    }
    if (p.status === 'source') tell(`Read ${p.file} (${bytesText(p.bytes)}) at ${p.revision}, commit ${p.commit.slice(0, 7)}${p.why ? `: ${p.why}` : ''}.`);
    if (p.status === 'note') tell(p.message);
    showProgress(p, t0);
  };
  try {
    const bytes = await run({ quant, classes, onProgress });
    const seconds = ((performance.now() - t0) / 1000).toFixed(1);
    if (!cached) $('import-box').dataset.convertedSeconds = seconds; // for tests/e2e/import-bench.mjs
    refreshSavedModels();
    const bundle = new File([bytes], `imported-${quant}.bundle`, { type: 'application/octet-stream' });
    if (downloadUrl) URL.revokeObjectURL(downloadUrl);
    downloadUrl = URL.createObjectURL(bundle);
    const link = $('import-download');
    link.href = downloadUrl;
    link.download = bundle.name;
    link.hidden = false;
    setStatus(cached ? `${what} was converted on an earlier visit: loading it from the cache…` : `Converted in ${seconds} s; loading it…`);
    ok = await loadModel(bundle, what);
  } catch (e) {
    showError(`Could not import ${what}: ${e.message}`);
    setStatus(session.model ? 'The previous model is still in use.' : 'No model loaded.');
  } finally {
    // How many imports ended, and whether the last one loaded (what tests wait on).
    const box = $('import-box');
    box.dataset.imports = String(Number(box.dataset.imports ?? 0) + 1);
    box.dataset.importOk = String(ok);
    $('import-cancel').hidden = true;
    $('hub-load').disabled = false;
    hideProgress();
  }
}

const importFiles = (files) => runImport('the checkpoint', (o) => session.scorer.importCheckpoint(files, o));

/** Starts a Hub import of `repo` at `revision`. */
export function importFromHub(repo, revision = 'main') {
  return runImport(repo, (o) => session.scorer.importFromHub({ repo, revision, hub: hubBase }, o));
}

export function initImport(params) {
  if (params.get('hub')) hubBase = params.get('hub');
  $('hub-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const repo = $('hub-repo').value.trim();
    if (repo) importFromHub(repo, $('hub-revision').value.trim() || 'main');
    else showError('Type a repository id such as openai/clip-vit-base-patch32, or pick one from the list.');
  });
  $('import-cancel').addEventListener('click', () => session.scorer?.cancelImport());
  $('import-input').addEventListener('change', (event) => {
    const files = [...event.target.files];
    event.target.value = '';
    if (files.length) importFiles(files);
  });
}
