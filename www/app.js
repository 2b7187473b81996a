// The page: the first client of the package in pkg/ (createScorer), which runs the model in a
// worker. This file only starts the parts; each lives in its own module under ui/.

import { $ } from './ui/dom.js';
import { setStatus, showError } from './ui/status.js';
import { initModelPanel, loadModel, setActivationsRequest, setDeviceRequest, setPrecisionRequest, setThreadsRequest } from './ui/model-panel.js';
import { initClassEditor } from './ui/classes.js';
import { initThresholdControls } from './ui/threshold.js';
import { initResults, updateControls } from './ui/results.js';
import { initBatch } from './ui/batch.js';
import { initInputs } from './ui/inputs.js';
import { initImport, importFromHub } from './ui/import.js';
import { initHubList } from './ui/hub-list.js';
import { initPresets } from './ui/presets.js';
import { initCalibration } from './ui/calibrate.js';
import { refreshSavedModels } from './ui/saved-models.js';
import { initTuning } from './ui/tune.js';

const DEFAULT_MODEL = 'models/default.bundle';

window.addEventListener('unhandledrejection', (event) => {
  showError(`Unexpected error: ${event.reason?.message ?? String(event.reason)}`);
});

const params = new URLSearchParams(location.search);
setDeviceRequest(params.get('backend'));
setThreadsRequest(params.get('threads'));
setPrecisionRequest(params.get('precision'));
setActivationsRequest(params.get('activations'));
const model = params.get('model') || DEFAULT_MODEL;
$('bundle-url').value = model;
initModelPanel();
initClassEditor();
initThresholdControls();
initResults();
initBatch();
initInputs();
initImport(params);
initHubList();
initPresets();
initCalibration();
initTuning();
updateControls();
setStatus('Starting the scorer…');
// `?hf=ORG/NAME` (with `&hub=URL` for a mirror) imports from the Hub once the page is ready.
loadModel(model).then((ok) => {
  refreshSavedModels();
  const hf = params.get('hf');
  if (ok && hf) {
    $('hub-repo').value = hf;
    importFromHub(hf, params.get('revision') || 'main');
  }
});
