// Importing a Hugging Face checkpoint the user picked: converted into a bundle in the scorer's
// worker (pkg: importCheckpoint), then loaded like any bundle, and offered as a download.

import { $ } from './dom.js';
import { session } from './session.js';
import { setStatus, showError, showProgress, hideProgress } from './status.js';
import { loadModel } from './model-panel.js';

let downloadUrl = null;

async function importFiles(files) {
  if (!session.scorer) {
    showError('The scorer is not running yet; wait for the first model to load.');
    return;
  }
  const quant = $('import-quant').value;
  const classes = session.model?.info.classes ?? [];
  setStatus(`Converting the checkpoint to ${quant} on this device…`);
  try {
    const t0 = performance.now();
    const bytes = await session.scorer.importCheckpoint([...files], { quant, classes, onProgress: showProgress });
    const seconds = ((performance.now() - t0) / 1000).toFixed(1);
    $('import-box').dataset.convertedSeconds = seconds; // for tests/e2e/import-bench.mjs
    const bundle = new File([bytes], `imported-${quant}.bundle`, { type: 'application/octet-stream' });
    if (downloadUrl) URL.revokeObjectURL(downloadUrl);
    downloadUrl = URL.createObjectURL(bundle);
    const link = $('import-download');
    link.href = downloadUrl;
    link.download = bundle.name;
    link.hidden = false;
    setStatus(`Converted in ${seconds} s; loading it…`);
    await loadModel(bundle);
  } catch (e) {
    showError(`Could not import the checkpoint: ${e.message}`);
    setStatus(session.model ? 'The previous model is still in use.' : 'No model loaded.');
  } finally {
    hideProgress();
  }
}

export function initImport() {
  $('import-input').addEventListener('change', (event) => {
    const files = [...event.target.files];
    event.target.value = '';
    if (files.length) importFiles(files);
  });
}
