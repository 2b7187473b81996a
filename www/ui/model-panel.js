// Loading models (the default, a URL on this site, a picked or dropped .bundle file) and the
// model panel that describes the loaded one.

import { createScorer } from '../pkg/index.js';
import { $, el, fmt, sig, pct, bytesText, ms, SCORE_LABEL } from './dom.js';
import { session } from './session.js';
import { setStatus, showError, showProgress, hideProgress, setReady, setDevice } from './status.js';
import { fillClassEditor } from './classes.js';
import { initThreshold } from './threshold.js';
import { resetCalibration } from './calibrate.js';
import { markStale, updateControls } from './results.js';
import { on } from './events.js';

/** The device the page asks for (`?backend=` in its URL, else auto). */
let deviceRequest = 'auto';
export function setDeviceRequest(device) {
  if (device === 'cpu' || device === 'webgpu' || device === 'auto') deviceRequest = device;
}

/** The image tower's precision on WebGPU (`?precision=f16|f32` in the page's URL, else auto). */
let precisionRequest = 'auto';
export function setPrecisionRequest(precision) {
  if (precision === 'f16' || precision === 'f32' || precision === 'auto') precisionRequest = precision;
}

/** The CPU's int8 scheme (`?activations=u7` in the page's URL, else i16). */
let activationsRequest = /** @type {import('../pkg/types.js').ActivationsRequest} */ ('i16');
export function setActivationsRequest(activations) {
  if (activations === 'i16' || activations === 'u7') activationsRequest = activations;
}

/** Threads for the CPU path (`?threads=N` in the page's URL, else auto). */
let threadsRequest = /** @type {'auto' | number} */ ('auto');
export function setThreadsRequest(threads) {
  const n = Number(threads);
  if (threads && Number.isInteger(n) && n >= 1) threadsRequest = n;
}

/** The scorer's last `ready` event (device, reason, info, timings). */
let lastReady = null;

/** Keeps the device line and model state in step with the scorer's events. */
function onEvent(event) {
  if (event.status === 'ready') lastReady = event;
  if (event.status === 'fallback') {
    setDevice(event.device, event.reason, event.info?.engine);
    showError(event.reason.message);
    setStatus('Now running on the CPU.');
  } else if (event.status === 'restart') {
    showError(`The scorer crashed and restarted: ${event.message}`);
  }
  if (session.loading || event.status === 'fallback' || event.status === 'restart') showProgress(event);
}

/**
 * Loads a model; the previous one stays in use if this one fails.
 * @param {string | File} source a URL (this site) or a file
 * @param {string} [name] what to call it (default: the URL or the file's name)
 */
export async function loadModel(source, name = undefined) {
  const label = name ?? (typeof source === 'string' ? source : source.name);
  session.loading = true;
  updateControls();
  setStatus(`Loading ${label}…`);
  showProgress({ status: 'load' });
  lastReady = null;
  try {
    if (!session.scorer) {
      session.scorer = await createScorer({ model: source, device: deviceRequest, precision: precisionRequest, threads: threadsRequest, activations: activationsRequest, onProgress: onEvent });
      $('version').textContent = `deltaenergy ${session.scorer.version}.`;
    } else {
      await session.scorer.load(source, { device: deviceRequest, precision: precisionRequest });
    }
    const ready = lastReady;
    session.model = { ...ready, label };
    session.context += 1;
    markStale();
    setDevice(ready.device, ready.reason, ready.info.engine);
    renderModelInfo();
    fillClassEditor(ready.info.classes);
    await initThreshold(ready.info);
    resetCalibration(ready.info);
    setReady(session.model);
    const where = ready.device === 'webgpu' ? 'WebGPU' : 'the CPU';
    const n = ready.info.classes.length;
    setStatus(`Model ready on ${where}: ${n} classes, warm-up ${ms(ready.warmUpMs)}${ready.cached ? ' (from the cache)' : ''}.` +
      (n ? '' : ' This bundle has no classes: enter some under “Classes” and apply them.'));
    return true;
  } catch (e) {
    showError(`Could not load the model ${label}: ${e.message}`);
    setStatus(session.model ? `Could not load ${label}; the previous model is still in use.` : 'No model loaded.');
    return false;
  } finally {
    session.loading = false;
    hideProgress();
    updateControls();
  }
}

/** A date for people, from seconds since the epoch. */
const day = (seconds) => (seconds > 0 ? new Date(seconds * 1000).toISOString().slice(0, 10) : '');

/** A row whose raw technical text sits behind a disclosure. */
function withDetails(text, raw) {
  const dd = el('dd', {}, text);
  if (raw) dd.append(' ', el('details', { class: 'inline-details' }, el('summary', { text: 'details' }), el('span', { class: 'raw', text: raw })));
  return dd;
}

export function renderModelInfo() {
  const { info, label } = session.model;
  const dl = $('model-info');
  dl.replaceChildren();
  const row = (term, dd) => dl.append(el('dt', { text: term }), typeof dd === 'string' ? el('dd', { text: dd }) : dd);
  row('Source', label);
  const own = info.classes.join('\n') === info.bundleClasses.join('\n');
  row('Classes', `${info.classes.length}${own ? '' : ' (yours, not the bundle’s)'}`);
  row('Prompt', info.templates.length > 1
    ? `the mean of ${info.templates.length} templates (CLIP’s prompt ensemble)`
    : info.templates.length === 1
      ? `“${info.templates[0]}”`
      : info.hasContext ? 'learned context vectors + the class name' : `“${info.template}”`);
  row('Weights', `${info.quant}, images resized to ${info.imageSize}×${info.imageSize}, ${bytesText(info.bytes)}`);
  const s = info.scoreSettings;
  row('Scores', `τ = ${sig(s.tau)}, ΔEnergy crops the top ${s.c} to ${sig(s.cropValue)}, MCM τ = ${sig(s.mcmTau)}`);
  const t = info.bundleThreshold;
  row('Threshold', t
    ? withDetails(`${SCORE_LABEL[t.score]} below ${fmt(t.value)} is OOD${t.tpr ? `; keeps ${pct(t.tpr)} of in-distribution images` : ''}`, t.calibration)
    : 'none in the bundle (set from the images you score)');
  const p = info.provenance;
  const made = [p.converter ? `made with ${p.converter}` : '', day(p.created) ? `on ${day(p.created)}` : ''].filter(Boolean).join(' ');
  row('Made', withDetails(made || 'unknown', p.source));
  dl.append(el('dt', { text: 'SHA-256' }), el('dd', { class: 'mono', title: info.sha256, text: `${info.sha256.slice(0, 16)}…` }));
}

export function initModelPanel() {
  on('model-info-changed', renderModelInfo);
  $('bundle-input').addEventListener('change', (event) => {
    const file = event.target.files[0];
    event.target.value = '';
    if (file) loadModel(file);
  });
  $('url-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const url = $('bundle-url').value.trim();
    if (!url) showError('Enter the URL of a .bundle file on this site.');
    else loadModel(url); // the scorer refuses other origins, with a message
  });
}
