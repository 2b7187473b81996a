// The page: talks to worker.js (which does all model work), renders results, the teaching view,
// the threshold, the class editor and the batch table. No framework, no build step; every text
// from outside (file names, class names, messages) goes in through textContent, never as HTML.

const DEFAULT_MODEL = 'models/default.bundle';
const TOP_K = 5;
const MAX_IMAGE_FILE_BYTES = 64 * 1024 * 1024;
const MAX_IN_FLIGHT = 2; // images handed to the worker at once (the rest wait in the page)
const SVG_NS = 'http://www.w3.org/2000/svg';

// ---------------------------------------------------------------- small DOM helpers

const $ = (id) => document.getElementById(id);

/** el('p', {class: 'x', dataset: {testid: 'y'}, text: 'hi'}, child, ...) */
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) node.append(c);
  return node;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null) continue;
    if (k === 'text') node.textContent = v;
    else node.setAttribute(k, String(v));
  }
  for (const c of children.flat()) if (c) node.append(c);
  return node;
}

const fmt = (x, digits = 3) => (Number.isFinite(x) ? x.toFixed(digits) : String(x));
const pct = (p) => `${(p * 100).toFixed(p >= 0.995 || p < 0.001 ? 2 : 1)}%`;
const ms = (x) => (x >= 1000 ? `${(x / 1000).toFixed(1)} s` : `${Math.round(x)} ms`);
function bytesText(n) {
  if (!Number.isFinite(n)) return '?';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} kB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}
function shorten(text, n) {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}

// ---------------------------------------------------------------- state

const S = {
  worker: null,
  nextId: 1,
  pending: new Map(), // id -> {resolve, reject, onProgress}
  booted: null,
  version: null,
  model: null, // last successful load: {backend, backendReason, info, ...}
  source: null, // what that model was loaded from: {kind: 'url', url} | {kind: 'file', file}
  backendPref: 'auto',
  userClasses: null, // classes applied by the user for the current model
  context: 0, // bumps on every model load and class change; results carry the one they were scored in
  loading: false,
  recovering: false,
  restarts: [],
  threshold: { value: null, mode: 'none', bundle: null }, // mode: bundle | auto | user | none
  results: [], // {seq, name, result, context, backend, sha, card, row, badge, ...}
  seq: 0,
  errorSeq: 0,
  queue: [],
  inFlight: 0,
  pastes: 0,
};

// ---------------------------------------------------------------- status, errors, progress

function setStatus(text) {
  $('status').textContent = text;
}

function showError(message) {
  const box = $('errors');
  let node = box.querySelector('[data-testid=error]');
  if (!node) {
    // The icon and the × are drawn by CSS, so the element's text is just the message.
    const close = el('button', { type: 'button', class: 'dismiss', 'aria-label': 'Dismiss the error message', title: 'Dismiss' });
    node = el('div', { class: 'error', role: 'alert', dataset: { testid: 'error' } }, el('span', { class: 'error-icon', 'aria-hidden': 'true' }), el('span', { class: 'error-text' }), close);
    close.addEventListener('click', () => node.remove());
    box.append(node);
  }
  S.errorSeq += 1;
  node.dataset.seq = String(S.errorSeq);
  node.querySelector('.error-text').textContent = message;
}

function clearError() {
  $('errors').querySelector('[data-testid=error]')?.remove();
}

function showProgress(p) {
  const box = $('progress-box');
  const bar = $('progress');
  const text = $('progress-text');
  box.hidden = false;
  if (p.phase === 'download') {
    if (p.total > 0) {
      bar.max = p.total;
      bar.value = p.loaded;
      text.textContent = p.cached
        ? `From the cache: ${bytesText(p.total)}`
        : `Downloading ${bytesText(p.loaded)} of ${bytesText(p.total)} (${Math.floor((p.loaded / p.total) * 100)}%)`;
    } else {
      bar.removeAttribute('value');
      text.textContent = `Downloading ${bytesText(p.loaded)}`;
    }
  } else if (p.phase === 'note') {
    setStatus(p.text);
  } else {
    bar.removeAttribute('value'); // indeterminate
    text.textContent = p.text ?? '';
  }
}

function hideProgress() {
  $('progress-box').hidden = true;
}

function setReady(on) {
  const slot = $('ready-slot');
  const existing = slot.querySelector('[data-testid=ready]');
  if (on && !existing) {
    slot.append(el('span', { class: 'chip ok', dataset: { testid: 'ready' }, text: 'ready' }));
  } else if (!on && existing) {
    existing.remove();
  }
  const sha = S.model?.info?.sha256;
  const ready = slot.querySelector('[data-testid=ready]');
  if (on && sha) ready.dataset.sha256 = sha;
  // Timings for benchmarks (tests/e2e/bench.mjs); not shown.
  if (on && S.model?.warmUpMs !== undefined) ready.dataset.warmupMs = String(S.model.warmUpMs);
}

function setBackend(backend, reason) {
  $('backend').textContent = backend ?? '';
  $('backend-none').hidden = Boolean(backend);
  $('backend-reason').textContent = reason ?? '';
}

// ---------------------------------------------------------------- the worker

class WorkerError extends Error {
  constructor({ name, message, fatal }) {
    super(message);
    this.name = name || 'Error';
    this.fatal = Boolean(fatal);
  }
}

function startWorker() {
  let bootResolve;
  S.booted = new Promise((resolve) => {
    bootResolve = resolve;
  });
  let worker;
  try {
    worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
  } catch (e) {
    bootResolve({ ok: false, error: { message: `Could not start the worker: ${e.message}` } });
    return;
  }
  S.worker = worker;
  worker.addEventListener('message', (event) => {
    const m = event.data ?? {};
    if (m.kind === 'boot') {
      S.version = m.version;
      bootResolve(m);
      return;
    }
    if (m.kind === 'backend') {
      onBackendFallback(m);
      return;
    }
    const p = S.pending.get(m.id);
    if (!p) return;
    if (m.kind === 'progress') p.onProgress?.(m);
    else if (m.kind === 'ok') {
      S.pending.delete(m.id);
      p.resolve(m.value);
    } else if (m.kind === 'error') {
      S.pending.delete(m.id);
      p.reject(new WorkerError(m.error ?? { message: 'unknown error' }));
    }
  });
  worker.addEventListener('error', (event) => {
    // A worker that cannot even run its script (missing file, syntax error, CSP).
    event.preventDefault?.();
    const message = `The model worker failed: ${event.message || 'worker.js could not be loaded'}`;
    bootResolve({ ok: false, error: { message } });
    failPending(message, true);
  });
  worker.addEventListener('messageerror', () => showError('A message from the model worker could not be read.'));
}

function failPending(message, fatal) {
  for (const [id, p] of S.pending) {
    S.pending.delete(id);
    p.reject(new WorkerError({ message, fatal }));
  }
}

function call(op, payload = {}, { transfer = [], onProgress } = {}) {
  if (!S.worker) return Promise.reject(new Error('the model worker is not running'));
  const id = S.nextId++;
  return new Promise((resolve, reject) => {
    S.pending.set(id, { resolve, reject, onProgress });
    try {
      S.worker.postMessage({ id, op, ...payload }, transfer);
    } catch (e) {
      S.pending.delete(id);
      reject(e);
    }
  });
}

/** A crash inside the wasm leaves it unusable: start a fresh worker and reload the model. */
async function recoverFromCrash(error) {
  const now = Date.now();
  S.restarts = S.restarts.filter((t) => now - t < 60_000);
  const wasWebGpu = S.model?.backend === 'webgpu';
  setReady(false);
  try {
    S.worker?.terminate();
  } catch {
    /* gone */
  }
  S.worker = null;
  failPending(`the model worker was restarted after a crash (${error.message})`, false);
  if (S.restarts.length >= 2 || !S.source) {
    showError(`The scorer crashed: ${error.message}. Reload the page to try again.`);
    setStatus('The scorer crashed; reload the page.');
    setBackend(null, '');
    S.model = null;
    updateControls();
    return;
  }
  S.restarts.push(now);
  S.recovering = true; // queued images wait for the fresh worker
  if (wasWebGpu) S.backendPref = 'cpu';
  const why = wasWebGpu
    ? `WebGPU crashed (${error.message}); restarting on the CPU`
    : `The scorer crashed (${error.message}); restarting it`;
  showError(why);
  try {
    startWorker();
    const boot = await S.booted;
    if (!boot.ok) {
      showError(boot.error.message);
      return;
    }
    const classes = S.userClasses;
    const ok = await loadModel(S.source, { reason: why });
    if (ok && classes) await applyClasses(classes);
  } finally {
    S.recovering = false;
    pump();
  }
}

function onBackendFallback(m) {
  if (S.model) {
    S.model.backend = m.backend;
    S.model.backendReason = m.backendReason;
    S.model.info = m.info;
  }
  S.backendPref = 'cpu'; // WebGPU failed once: a restart stays on the CPU
  setBackend(m.backend, m.backendReason);
  showError(`${m.reason}.`);
  setStatus(`Now running on the ${m.backend === 'cpu' ? 'CPU' : m.backend}.`);
}

// ---------------------------------------------------------------- loading models

function sourceLabel(source) {
  return source.kind === 'file' ? source.file.name : source.url;
}

async function loadModel(source, { reason } = {}) {
  const label = sourceLabel(source);
  S.loading = true;
  updateControls();
  setStatus(reason ? `${reason}: loading ${label}…` : `Loading ${label}…`);
  showProgress({ phase: 'start', text: `Loading ${label}` });
  try {
    let payload;
    let transfer = [];
    if (source.kind === 'file') {
      const buffer = await source.file.arrayBuffer();
      payload = { source: { kind: 'bytes', buffer, name: source.file.name } };
      transfer = [buffer];
    } else {
      const abs = new URL(source.url, document.baseURI);
      if (abs.origin !== location.origin) {
        throw new Error(`only bundles from this site can be loaded (${abs.origin} is another origin)`);
      }
      payload = { source: { kind: 'url', url: abs.href } };
    }
    const value = await call('load', { ...payload, backend: S.backendPref }, { transfer, onProgress: showProgress });
    S.model = value;
    S.source = source;
    S.userClasses = null;
    S.bundleClasses = value.info.classes;
    S.context += 1;
    markStaleResults();
    setBackend(value.backend, value.backendReason);
    renderModelInfo(value);
    fillClassEditor(value.info.classes);
    initThreshold(value.info);
    setReady(true);
    const where = value.backend === 'webgpu' ? 'WebGPU' : 'the CPU';
    setStatus(
      `Model ready on ${where}: ${value.info.classes.length} classes, warm-up ${ms(value.warmUpMs)}` +
        `${value.cached ? ' (from the cache)' : ''}.` +
        (value.info.classes.length ? '' : ' This bundle has no classes: enter some under “Classes” and apply them.'),
    );
    if (value.fallback) showError(`${value.fallback}.`);
    return true;
  } catch (e) {
    const msg = e?.message ?? String(e);
    showError(`Could not load the model ${label}: ${msg}`);
    setStatus(S.model ? `Could not load ${label}; the previous model is still in use.` : `No model loaded.`);
    if (e.fatal) recoverFromCrash(e);
    return false;
  } finally {
    S.loading = false;
    hideProgress();
    updateControls();
  }
}

function renderModelInfo(value) {
  const { info } = value;
  const dl = $('model-info');
  dl.replaceChildren();
  const row = (term, desc) => dl.append(el('dt', { text: term }), el('dd', { text: desc }));
  row('Source', sourceLabel(S.source));
  row('Classes', `${info.classes.length}`);
  row('Prompt', info.hasContext ? `learned context + class name` : info.template);
  row('Weights', `${info.quant}, image ${info.imageSize}×${info.imageSize}`);
  row('Size', bytesText(info.bytes));
  const sc = info.score ?? {};
  row('Score', `τ = ${sc.tau}, c = ${sc.c}, crop to ${sc.crop_value}, MCM τ = ${sc.mcm_tau}`);
  if (info.threshold) {
    const t = info.threshold;
    row('Threshold', `${t.score}${t.score === 'delta_energy' ? '' : ' (not used: the page flags on ΔEnergy)'} ≥ ${fmt(t.value, 4)} keeps ${pct(t.tpr)} of in-distribution images${t.calibration ? ` (${t.calibration})` : ''}`);
  } else {
    row('Threshold', 'none in the bundle (set from the scores seen)');
  }
  const p = info.provenance ?? {};
  const created = Number.isFinite(p.created) && p.created > 0 ? new Date(p.created * 1000).toISOString().slice(0, 10) : '';
  row('Provenance', [p.source, p.converter, created].filter(Boolean).join(' · ') || '—');
  const sha = el('dd', { class: 'mono', title: info.sha256, text: `${String(info.sha256).slice(0, 16)}…` });
  dl.append(el('dt', { text: 'SHA-256' }), sha);
}

// ---------------------------------------------------------------- class editor

function parseClasses(text) {
  const seen = new Set();
  const out = [];
  let dupes = 0;
  for (const raw of text.split(/[\n,]/)) {
    const name = raw.trim();
    if (!name) continue;
    if (seen.has(name)) {
      dupes += 1;
      continue;
    }
    seen.add(name);
    out.push(name);
  }
  return { classes: out, dupes };
}

function fillClassEditor(classes) {
  $('classes').value = classes.join('\n');
}

async function applyClasses(classes) {
  const button = $('apply-classes');
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  setStatus(`Computing text features for ${classes.length} classes…`);
  try {
    const value = await call('setClasses', { classes }, { onProgress: showProgress });
    S.model.info = value.info;
    S.model.backend = value.backend;
    S.userClasses = classes;
    S.context += 1;
    markStaleResults();
    renderModelInfo(S.model);
    fillClassEditor(value.info.classes);
    if (S.threshold.mode === 'user') {
      updateThresholdUi(true);
      reflag();
    } else {
      initThreshold(value.info);
    }
    setStatus(`Classes applied: ${value.info.classes.length} classes (${ms(value.ms)}). New images use them.`);
    $('classes').dataset.applied = String(S.context);
    return true;
  } catch (e) {
    showError(`Could not apply the classes: ${e.message}`);
    setStatus('The classes were not changed.');
    if (e.fatal) recoverFromCrash(e);
    return false;
  } finally {
    hideProgress();
    button.removeAttribute('aria-busy');
    updateControls();
  }
}

$('classes-form').addEventListener('submit', (event) => {
  event.preventDefault();
  if (!S.model) return;
  const { classes, dupes } = parseClasses($('classes').value);
  if (classes.length === 0) {
    showError('The class list is empty: enter at least one class name (separated by commas or new lines). The current classes stay in use.');
    setStatus('The classes were not changed.');
    return;
  }
  if (dupes) setStatus(`Removed ${dupes} duplicate class name${dupes > 1 ? 's' : ''}.`);
  applyClasses(classes);
});

$('reset-classes').addEventListener('click', () => {
  if (!S.bundleClasses) return;
  fillClassEditor(S.bundleClasses);
  $('classes').focus();
  setStatus('The bundle’s classes are in the editor; press “Apply classes” to use them.');
});

// ---------------------------------------------------------------- threshold

function currentScores() {
  return S.results.filter((r) => r.context === S.context && r.result).map((r) => r.result.scores.delta_energy);
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function initThreshold(info) {
  const t = info.threshold;
  // Only a threshold on ΔEnergy drives the badges (a bundle may calibrate another score).
  if (t && Number.isFinite(t.value) && (t.score ?? 'delta_energy') === 'delta_energy') {
    S.threshold = { value: t.value, mode: 'bundle', bundle: t };
  } else {
    const seen = currentScores();
    S.threshold = { value: seen.length ? median(seen) : null, mode: 'auto', bundle: null };
  }
  updateThresholdUi(true);
  reflag();
}

function niceStep(x) {
  if (!(x > 0)) return 0.01;
  const p = 10 ** Math.floor(Math.log10(x));
  const m = x / p;
  return (m < 2 ? 1 : m < 5 ? 2 : 5) * p;
}

function updateThresholdUi(resetRange = false) {
  const slider = $('threshold');
  const number = $('threshold-number');
  const note = $('threshold-note');
  const th = S.threshold;
  if (!S.model || th.value === null) {
    slider.disabled = true;
    number.disabled = true;
    number.value = '';
    note.textContent = S.model
      ? 'This bundle has no calibrated threshold: it will start at the median ΔE of the images you score.'
      : 'Load a model to set the threshold.';
    return;
  }
  const vals = [...currentScores(), th.value];
  let lo = Math.min(...vals);
  let hi = Math.max(...vals);
  const span = Math.max(hi - lo, Math.abs(hi) * 0.2, 0.5);
  lo -= span * 0.25;
  hi += span * 0.25;
  const step = niceStep((hi - lo) / 200);
  let min = Math.floor(lo / step) * step;
  let max = Math.ceil(hi / step) * step;
  if (!resetRange && slider.dataset.ready === '1') {
    // Only ever widen while in use, so the handle does not jump under the finger.
    min = Math.min(min, Number(slider.min));
    max = Math.max(max, Number(slider.max));
  }
  slider.min = String(min);
  slider.max = String(max);
  slider.step = String(step);
  slider.dataset.ready = '1';
  slider.value = String(th.value);
  slider.setAttribute('aria-valuetext', `ΔE ${fmt(th.value, 4)}`);
  slider.disabled = false;
  number.disabled = false;
  if (document.activeElement !== number) number.value = String(Number(th.value.toPrecision(8)));
  const how = {
    bundle:
      `From the bundle${th.bundle?.tpr ? `: keeps ${pct(th.bundle.tpr)} of in-distribution images` : ''}` +
      `${th.bundle?.calibration ? ` (${th.bundle.calibration})` : ''}` +
      `${S.userClasses ? ', calibrated for the bundle’s own classes, not the ones you applied' : ''}.`,
    auto: 'No threshold in the bundle: it follows the median ΔE of the images scored so far until you move it.',
    user: 'Set by you. Images with ΔE below it are flagged OOD.',
  }[th.mode];
  note.textContent = `${how} ΔE below the threshold → OOD.`;
}

let thresholdTimer = 0;
function setThreshold(value, mode = 'user') {
  if (!Number.isFinite(value)) return;
  S.threshold.value = value;
  S.threshold.mode = mode;
  updateThresholdUi();
  reflag();
  clearTimeout(thresholdTimer);
  thresholdTimer = setTimeout(() => {
    call('setThreshold', { value }).catch(() => {}); // the page flags cards itself; this keeps the worker in step
  }, 150);
}

$('threshold').addEventListener('input', (event) => setThreshold(Number(event.target.value)));
$('threshold-number').addEventListener('change', (event) => {
  const v = Number(event.target.value);
  if (Number.isFinite(v) && event.target.value !== '') setThreshold(v);
  else updateThresholdUi();
});

function isOod(result) {
  const v = S.threshold.value;
  if (v === null) return null;
  return result.scores.delta_energy < v;
}

/** Re-flags every card and table row scored with the current model and classes. */
function reflag() {
  for (const r of S.results) {
    if (!r.result || r.context !== S.context) continue;
    applyFlag(r, isOod(r.result), S.threshold.value);
  }
}

function applyFlag(r, ood, threshold) {
  r.ood = ood;
  r.threshold = threshold;
  const badgeText = ood === null ? 'no threshold yet' : ood ? 'ood · out-of-distribution' : 'in-distribution';
  r.badge.textContent = badgeText;
  r.badge.className = `badge ${ood === null ? 'unknown' : ood ? 'bad' : 'good'}`;
  r.card.classList.toggle('is-ood', ood === true);
  r.vs.textContent =
    threshold === null ? '' : `${ood ? '<' : '≥'} threshold ${fmt(threshold, 4)}`;
  r.rowOod.textContent = ood === null ? '—' : ood ? 'ood' : 'in-distribution';
  r.rowOod.className = ood ? 'bad-text' : 'good-text';
  drawGauge(r);
}

// ---------------------------------------------------------------- images in

function addFiles(files) {
  for (const file of files) {
    if (/\.bundle$/i.test(file.name)) {
      loadModel({ kind: 'file', file });
      continue;
    }
    enqueueImage(file, file.name || 'image');
  }
}

function enqueueImage(blob, name) {
  const r = createPendingCard(blob, name);
  if (blob.size > MAX_IMAGE_FILE_BYTES) {
    failCard(r, `the file is too large (${bytesText(blob.size)}; at most ${bytesText(MAX_IMAGE_FILE_BYTES)})`);
    return;
  }
  if (!S.model && !S.loading) {
    failCard(r, 'no model is loaded (load a .bundle first)');
    return;
  }
  S.queue.push({ r, blob });
  pump();
}

function pump() {
  while (!S.recovering && S.inFlight < MAX_IN_FLIGHT && S.queue.length) {
    const job = S.queue.shift();
    S.inFlight += 1;
    scoreJob(job).finally(() => {
      S.inFlight -= 1;
      pump();
    });
  }
}

async function scoreJob({ r, blob }) {
  r.status.textContent = 'Scoring…';
  try {
    const buffer = await blob.arrayBuffer();
    const result = await call('classify', { name: r.name, type: blob.type, buffer, topK: TOP_K }, { transfer: [buffer] });
    renderResult(r, result);
    const ood = r.ood;
    setStatus(
      `${r.name}: ${result.label}, ${ood === null ? '' : ood ? 'OOD, ' : 'in-distribution, '}ΔE ${fmt(result.scores.delta_energy, 3)} (${ms(result.timings.totalMs)}).`,
    );
  } catch (e) {
    failCard(r, e.message ?? String(e));
    if (e.fatal) recoverFromCrash(e);
  }
}

function createPendingCard(blob, name) {
  const seq = ++S.seq;
  const url = URL.createObjectURL(blob);
  const status = el('p', { class: 'card-status muted', text: 'Waiting…' });
  const thumb = el('img', { class: 'thumb', src: url, alt: '', decoding: 'async', loading: 'lazy' });
  thumb.addEventListener('error', () => thumb.classList.add('broken'), { once: true });
  const title = el('h3', { class: 'card-title', id: `card-${seq}-title`, text: name, title: name });
  const body = el('div', { class: 'card-body' }, title, status);
  const card = el('article', { class: 'card pending', dataset: { testid: 'pending', image: name }, 'aria-labelledby': title.id }, el('div', { class: 'thumb-box' }, thumb), body);
  $('results').prepend(card);
  $('results-empty').hidden = true;
  const r = { seq, name, url, card, body, status, title, result: null, context: S.context };
  S.results.push(r);
  updateControls();
  return r;
}

function failCard(r, message) {
  r.card.classList.remove('pending');
  r.card.classList.add('failed');
  r.card.dataset.testid = 'result-error';
  r.status.className = 'card-status error-text';
  r.status.textContent = `Not scored: ${message}`;
  showError(`${r.name}: ${message}`);
  setStatus(`${r.name} was not scored.`);
}

// ---------------------------------------------------------------- result cards

function renderResult(r, result) {
  r.result = result;
  r.context = S.context;
  r.backend = S.model?.backend ?? '';
  r.sha = S.model?.info?.sha256 ?? '';
  r.card.classList.remove('pending');
  r.card.dataset.testid = 'result';
  r.card.dataset.totalMs = String(result.timings?.totalMs ?? '');
  r.card.dataset.imageMs = String(result.timings?.imageMs ?? '');
  r.status.remove();
  r.card.querySelector('img.thumb').alt = `${r.name}, classified as ${result.label}`;

  if (S.threshold.mode === 'auto') {
    const seen = currentScores();
    S.threshold.value = median(seen);
  }

  const label = el('span', { class: 'label', dataset: { testid: 'label' }, text: result.label });
  r.badge = el('span', { class: 'badge', dataset: { testid: 'ood' } });
  const prediction = el('p', { class: 'prediction' }, label, ' ', r.badge);

  const de = el('span', { class: 'de-value mono', dataset: { testid: 'delta-energy' }, text: String(result.scores.delta_energy) });
  r.vs = el('span', { class: 'vs muted' });
  r.gauge = el('div', { class: 'gauge', 'aria-hidden': 'true' });
  const score = el('div', { class: 'de' }, el('p', {}, el('abbr', { title: 'ΔEnergy' }, 'ΔE'), ' = ', de, ' ', r.vs), r.gauge);

  const top = el('ol', { class: 'top5', 'aria-label': `Top ${result.top.length} classes` });
  for (const t of result.top) {
    const fill = el('span', { class: 'fill' });
    fill.style.width = `${Math.max(0, Math.min(1, t.probability)) * 100}%`;
    top.append(
      el('li', {},
        el('span', { class: 'top-name', title: t.label, text: t.label }),
        el('span', { class: 'bar', 'aria-hidden': 'true' }, fill),
        el('span', { class: 'top-p mono', text: pct(t.probability) })),
    );
  }

  const details = el('details', { class: 'energy' }, el('summary', { text: 'Energy change: how ΔEnergy decided' }), energyView(result));
  if (S.results.filter((x) => x.result).length === 1) details.open = true;

  const s = result.scores;
  const t = result.timings ?? {};
  const more = el('p', { class: 'meta muted small' },
    `energy ${fmt(s.energy)} · MCM ${fmt(s.mcm)} · MaxLogit ${fmt(s.max_logit)} · ${r.backend}, ${ms(t.totalMs ?? 0)}` +
      (result.decodedBy === 'browser' ? ' · decoded by the browser' : ''));

  r.body.append(prediction, score);
  r.card.append(top, details, more);
  addRow(r);
  updateThresholdUi();
  if (S.threshold.mode === 'auto') reflag();
  else applyFlag(r, isOod(result), S.threshold.value);
  updateControls();
}

/** A small scale with the threshold and this image's ΔE (redrawn when the threshold moves). */
function drawGauge(r) {
  if (!r.gauge) return;
  const slider = $('threshold');
  const th = S.threshold.value;
  const x = r.result.scores.delta_energy;
  r.gauge.replaceChildren();
  if (th === null || slider.disabled) return;
  const min = Math.min(Number(slider.min), x);
  const max = Math.max(Number(slider.max), x);
  const pos = (v) => `${((v - min) / (max - min || 1)) * 100}%`;
  const ood = el('span', { class: 'gauge-ood' });
  ood.style.width = pos(th);
  const mark = el('span', { class: `gauge-mark ${x < th ? 'bad' : 'good'}` });
  mark.style.left = pos(x);
  const tick = el('span', { class: 'gauge-th' });
  tick.style.left = pos(th);
  r.gauge.append(ood, tick, mark);
}

/**
 * The teaching view: similarities before and after the top-c crop, the share of Σexp(s/τ) the
 * crop removes, and the two energies with ΔE between them. Inline SVG, no libraries.
 */
function energyView(result) {
  const sims = Array.from(result.similarities ?? []);
  const cropped = Array.from(result.cropped ?? []);
  const classes = S.model?.info?.classes ?? [];
  const tau = result.tau;
  const c = result.c;
  const eb = result.energyBefore;
  const ea = result.energyAfter;
  const dE = eb - ea;
  const K = sims.length;
  const order = sims.map((_, i) => i).sort((a, b) => sims[b] - sims[a]);
  const cropSet = new Set(order.slice(0, c));
  cropped.forEach((v, i) => {
    if (v !== sims[i]) cropSet.add(i);
  });
  const shown = order.slice(0, Math.min(K, 6));

  // (1) similarity bars
  const W = 340;
  const labelW = 96;
  const numW = 62;
  const rowH = 25;
  const barX0 = labelW + 4;
  const barW = W - barX0 - numW;
  const values = [0, ...shown.map((i) => sims[i]), ...shown.map((i) => cropped[i] ?? sims[i])];
  const vmin = Math.min(...values);
  const vmax = Math.max(...values);
  const sx = (v) => barX0 + ((v - vmin) / (vmax - vmin || 1)) * barW;
  const top0 = 30;
  const H1 = top0 + shown.length * rowH + (K > shown.length ? 16 : 4);
  const g1 = svg('svg', { viewBox: `0 0 ${W} ${H1}`, class: 'ev-svg', role: 'img', 'aria-label': 'Similarities before and after the crop' });
  g1.append(svg('text', { x: 0, y: 11, class: 'ev-head', text: 'Cosine similarity s per class' }));
  g1.append(svg('rect', { x: 0, y: 18, width: 9, height: 7, class: 'ev-before' }), svg('text', { x: 13, y: 25, class: 'ev-small', text: 'before' }));
  g1.append(svg('rect', { x: 60, y: 18, width: 9, height: 7, class: 'ev-after' }), svg('text', { x: 73, y: 25, class: 'ev-small', text: `after cropping the top ${c} to ${fmtShort(result.cropped?.[order[0]])}` }));
  shown.forEach((i, row) => {
    const y = top0 + row * rowH;
    const name = classes[i] ?? `class ${i}`;
    const cut = cropSet.has(i);
    const after = cropped[i] ?? sims[i];
    g1.append(
      svg('text', { x: 0, y: y + 15, class: `ev-label${cut ? ' ev-cut' : ''}`, text: shorten(name, 14) }, svg('title', { text: name })),
      svg('rect', { x: Math.min(sx(0), sx(sims[i])), y: y + 4, width: Math.max(1, Math.abs(sx(sims[i]) - sx(0))), height: 8, class: 'ev-before' }),
      svg('rect', { x: Math.min(sx(0), sx(after)), y: y + 13, width: Math.max(cut ? 0 : 1, Math.abs(sx(after) - sx(0))), height: 8, class: 'ev-after' }),
      svg('text', { x: W - numW + 4, y: y + 11, class: 'ev-num', text: fmt(sims[i], 3) }),
      svg('text', { x: W - numW + 4, y: y + 22, class: `ev-num ${cut ? 'ev-cut' : 'ev-dim'}`, text: cut ? `→ ${fmt(after, 3)}` : '' }),
    );
  });
  g1.append(svg('line', { x1: sx(0), x2: sx(0), y1: top0 + 2, y2: top0 + shown.length * rowH, class: 'ev-axis' }));
  if (K > shown.length) {
    g1.append(svg('text', { x: 0, y: H1 - 3, class: 'ev-small', text: `… and ${K - shown.length} more classes (all count in the sums below)` }));
  }

  // (2) the share of Σ exp(s/τ) left after the crop = exp(−ΔE)
  const left = Math.exp(-dE);
  const scale = Math.max(1, left);
  const H2 = 62;
  const g2 = svg('svg', { viewBox: `0 0 ${W} ${H2}`, class: 'ev-svg', role: 'img', 'aria-label': `The crop leaves ${pct(left)} of the sum` });
  const fullW = W - labelW - 4;
  const removed = Math.max(0, 1 - left);
  g2.append(svg('text', { x: 0, y: 11, class: 'ev-head', text: 'Σ exp(s/τ): how much the crop removes' }));
  g2.append(svg('text', { x: 0, y: 31, class: 'ev-label', text: 'before' }));
  g2.append(svg('rect', { x: barX0, y: 20, width: (fullW * (1 - removed)) / scale, height: 14, class: 'ev-mass' }));
  g2.append(svg('rect', { x: barX0 + (fullW * (1 - removed)) / scale, y: 20, width: (fullW * removed) / scale, height: 14, class: 'ev-mass-cut' }));
  g2.append(svg('text', { x: 0, y: 53, class: 'ev-label', text: 'after' }));
  g2.append(svg('rect', { x: barX0, y: 42, width: Math.max(1, (fullW * left) / scale), height: 14, class: 'ev-mass' }));
  g2.append(svg('text', { x: Math.min(W - 4, barX0 + Math.max(1, (fullW * left) / scale) + 4), y: 53, class: 'ev-small', 'text-anchor': left > 0.7 ? 'end' : 'start', text: `${pct(left)} left` }));

  // (3) the two energies and ΔE
  const lo = Math.min(eb, ea);
  const hi = Math.max(eb, ea);
  const pad = Math.max((hi - lo) * 0.15, 0.05);
  const ex = (v) => 85 + ((v - (lo - pad)) / (hi + pad - (lo - pad))) * (W - 170); // room for the labels
  const H3 = 60;
  const g3 = svg('svg', { viewBox: `0 0 ${W} ${H3}`, class: 'ev-svg', role: 'img', 'aria-label': `Energy before ${fmt(eb)}, after ${fmt(ea)}, change ${fmt(dE)}` });
  g3.append(svg('text', { x: 0, y: 11, class: 'ev-head', text: 'LSE(s/τ) (negative energy) before and after' }));
  g3.append(svg('line', { x1: 10, x2: W - 10, y1: 36, y2: 36, class: 'ev-axis' }));
  g3.append(svg('line', { x1: ex(ea), x2: ex(eb), y1: 36, y2: 36, class: 'ev-delta' }));
  g3.append(svg('circle', { cx: ex(eb), cy: 36, r: 5, class: 'ev-before' }), svg('circle', { cx: ex(ea), cy: 36, r: 5, class: 'ev-after' }));
  // The left point's label reads leftwards, the right one's rightwards, so they never collide.
  const afterLeft = ex(ea) <= ex(eb);
  g3.append(svg('text', { x: ex(ea) + (afterLeft ? 6 : -6), y: 54, class: 'ev-num', 'text-anchor': afterLeft ? 'end' : 'start', text: `after ${fmt(ea, 2)}` }));
  g3.append(svg('text', { x: ex(eb) + (afterLeft ? -6 : 6), y: 54, class: 'ev-num', 'text-anchor': afterLeft ? 'start' : 'end', text: `before ${fmt(eb, 2)}` }));
  g3.append(svg('text', { x: (ex(ea) + ex(eb)) / 2, y: 29, class: 'ev-delta-text', 'text-anchor': 'middle', text: `ΔE = ${fmt(dE, 3)}` }));

  const top = order[0];
  const topName = classes[top] ?? `class ${top}`;
  const sentence = el('p', { class: 'ev-text small' },
    `Cropping the top ${c === 1 ? 'similarity' : `${c} similarities`} (${topName}: ${fmt(sims[top], 3)}) ` +
      `to ${fmtShort(result.cropped?.[top])} leaves ${pct(left)} of Σ exp(s/τ) with τ = ${tau}: ` +
      `LSE goes from ${fmt(eb, 3)} to ${fmt(ea, 3)}, so ΔE = −log(${fmt(left, 4)}) = ${fmt(dE, 3)}. ` +
      'The more of the sum the top class carries, the larger ΔE: familiar pictures tend to have one dominant class, unfamiliar ones do not.',
  );
  return el('div', { class: 'ev' }, g1, g2, g3, sentence);
}

function fmtShort(v) {
  return Number.isFinite(v) ? String(Number(v.toPrecision(3))) : '—';
}

// ---------------------------------------------------------------- batch table and CSV

function addRow(r) {
  const s = r.result.scores;
  r.rowOod = el('td');
  r.row = el('tr', { dataset: { testid: 'row', image: r.name } },
    el('td', { class: 'file', title: r.name, text: r.name }),
    el('td', { text: r.result.label }),
    el('td', { class: 'num mono', text: fmt(s.delta_energy, 4) }),
    el('td', { class: 'num mono', text: fmt(s.energy, 4) }),
    el('td', { class: 'num mono', text: fmt(s.mcm, 4) }),
    el('td', { class: 'num mono', text: fmt(s.max_logit, 4) }),
    r.rowOod);
  $('batch-body').prepend(r.row);
}

function markStaleResults() {
  for (const r of S.results) {
    if (r.result && r.context !== S.context && !r.card.classList.contains('stale')) {
      r.card.classList.add('stale');
      r.row?.classList.add('stale');
      r.card.append(el('p', { class: 'stale-note muted small', text: 'Scored with an earlier model or class list; its flag is not updated.' }));
    }
  }
}

function csvCell(v) {
  let s = v === null || v === undefined ? '' : String(v);
  if (typeof v === 'string' && /^[=+\-@\t\r]/.test(s)) s = `'${s}`; // no formulas in spreadsheets
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function exportCsv() {
  const head = ['file', 'label', 'delta_energy', 'energy', 'mcm', 'max_logit', 'threshold', 'ood', 'backend', 'model_sha256'];
  const lines = [head.join(',')];
  for (const r of S.results) {
    if (!r.result) continue;
    const s = r.result.scores;
    lines.push([
      csvCell(r.name), csvCell(r.result.label), s.delta_energy, s.energy, s.mcm, s.max_logit,
      r.threshold ?? '', r.ood === null || r.ood === undefined ? '' : r.ood, csvCell(r.backend), csvCell(r.sha),
    ].join(','));
  }
  const blob = new Blob([`${lines.join('\r\n')}\r\n`], { type: 'text/csv;charset=utf-8' });
  const url = URL.createObjectURL(blob);
  const a = el('a', { href: url, download: 'deltaenergy-results.csv', class: 'visually-hidden' });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
  setStatus(`Exported ${lines.length - 1} rows.`);
}

$('export-csv').addEventListener('click', exportCsv);
$('clear-results').addEventListener('click', () => {
  for (const r of S.results) {
    if (r.card.classList.contains('pending')) continue; // still being scored
    URL.revokeObjectURL(r.url);
    r.card.remove();
    r.row?.remove();
  }
  S.results = S.results.filter((r) => r.card.isConnected);
  $('results-empty').hidden = S.results.length > 0;
  if (S.threshold.mode === 'auto') {
    const seen = currentScores();
    S.threshold.value = seen.length ? median(seen) : null;
  }
  updateThresholdUi(true);
  updateControls();
  setStatus('Results cleared.');
});

function updateControls() {
  const have = Boolean(S.model);
  $('classes').disabled = !have;
  $('apply-classes').disabled = !have || $('apply-classes').hasAttribute('aria-busy');
  $('reset-classes').disabled = !have;
  $('load-url').disabled = S.loading;
  $('bundle-input').disabled = S.loading;
  const scored = S.results.some((r) => r.result);
  $('export-csv').disabled = !scored;
  $('clear-results').disabled = S.results.length === 0;
}

// ---------------------------------------------------------------- inputs: pick, drop, paste, samples, URL

$('image-input').addEventListener('change', (event) => {
  const files = [...event.target.files];
  event.target.value = ''; // the same file can be picked again
  addFiles(files);
});

$('bundle-input').addEventListener('change', (event) => {
  const file = event.target.files[0];
  event.target.value = '';
  if (file) loadModel({ kind: 'file', file });
});

$('url-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const url = $('bundle-url').value.trim();
  if (!url) {
    showError('Enter the URL of a .bundle file on this site.');
    return;
  }
  let abs;
  try {
    abs = new URL(url, document.baseURI);
  } catch {
    showError(`“${url}” is not a valid URL.`);
    return;
  }
  if (abs.origin !== location.origin) {
    showError(`Only bundles from this site (${location.origin}) can be loaded; ${abs.origin} is blocked by the page’s security policy.`);
    return;
  }
  loadModel({ kind: 'url', url });
});

const dropzone = $('dropzone');
let dragDepth = 0;
const hasFiles = (event) => [...(event.dataTransfer?.types ?? [])].includes('Files');
document.addEventListener('dragenter', (event) => {
  if (!hasFiles(event)) return;
  dragDepth += 1;
  dropzone.classList.add('dragging');
});
document.addEventListener('dragleave', () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (dragDepth === 0) dropzone.classList.remove('dragging');
});
document.addEventListener('dragover', (event) => {
  if (!hasFiles(event)) return;
  event.preventDefault(); // allow dropping anywhere on the page
  event.dataTransfer.dropEffect = 'copy';
});
document.addEventListener('drop', (event) => {
  if (!hasFiles(event)) return;
  event.preventDefault(); // never navigate to the dropped file
  dragDepth = 0;
  dropzone.classList.remove('dragging');
  addFiles([...event.dataTransfer.files]);
});

document.addEventListener('paste', (event) => {
  const files = [...(event.clipboardData?.files ?? [])];
  if (files.length === 0) return; // text pastes go where they were meant to
  event.preventDefault();
  for (const f of files) {
    S.pastes += 1;
    const ext = (f.type.split('/')[1] || 'png').replace(/[^a-z0-9]/gi, '');
    enqueueImage(f, `pasted-${S.pastes}.${ext}`);
  }
});

async function loadSamples() {
  let list;
  try {
    const response = await fetch('samples/index.json', { cache: 'no-cache' });
    if (!response.ok) return;
    list = await response.json();
  } catch {
    return; // no samples: the gallery stays hidden
  }
  if (!Array.isArray(list)) return;
  const ul = $('samples');
  for (const item of list) {
    const file = typeof item?.file === 'string' ? item.file : '';
    if (!/^[\w][\w .()+-]*\.[A-Za-z0-9]+$/.test(file)) continue; // plain names inside samples/
    const label = typeof item.label === 'string' && item.label ? item.label : file;
    const src = `samples/${encodeURIComponent(file)}`;
    const button = el('button', { type: 'button', class: 'sample', title: `Score ${file}` },
      el('img', { src, alt: '', loading: 'lazy', decoding: 'async' }),
      el('span', { class: 'sample-label', text: label }));
    button.setAttribute('aria-label', `Score the sample ${label} (${file})`);
    button.addEventListener('click', async () => {
      try {
        const response = await fetch(src);
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        const blob = await response.blob();
        enqueueImage(blob, file);
      } catch (e) {
        showError(`Could not fetch the sample ${file}: ${e.message}`);
      }
    });
    ul.append(el('li', {}, button));
  }
  $('samples-box').hidden = ul.children.length === 0;
}

// ---------------------------------------------------------------- start

window.addEventListener('unhandledrejection', (event) => {
  showError(`Unexpected error: ${event.reason?.message ?? String(event.reason)}`);
});

async function main() {
  const params = new URLSearchParams(location.search);
  const backend = params.get('backend');
  if (backend === 'cpu' || backend === 'webgpu' || backend === 'auto') S.backendPref = backend;
  const model = params.get('model') || DEFAULT_MODEL;
  $('bundle-url').value = model;
  updateControls();
  loadSamples();
  startWorker();
  setStatus('Starting the model worker…');
  const boot = await S.booted;
  if (!boot.ok) {
    showError(boot.error?.message ?? 'The model worker could not start.');
    setStatus('The scorer is not available.');
    return;
  }
  if (boot.version) $('version').textContent = `deltaenergy ${boot.version}.`;
  await loadModel({ kind: 'url', url: model });
}

main();
