// The engine panel: which device runs the model and why, the status line, the progress bar,
// the "ready" chip; and the error box under the header.

import { $, el, bytesText } from './dom.js';

export function setStatus(text) {
  $('status').textContent = text;
}

let errorSeq = 0;

/** Shows one error at a time (the newest); the tests wait on its data-seq. */
export function showError(message) {
  const box = $('errors');
  let node = box.querySelector('[data-testid=error]');
  if (!node) {
    // The icon and the × are drawn by CSS, so the element's text is just the message.
    const close = el('button', { type: 'button', class: 'dismiss', 'aria-label': 'Dismiss the error message', title: 'Dismiss' });
    node = el('div', { class: 'error', role: 'alert', dataset: { testid: 'error' } },
      el('span', { class: 'error-icon', 'aria-hidden': 'true' }), el('span', { class: 'error-text' }), close);
    close.addEventListener('click', () => node.remove());
    box.append(node);
  }
  errorSeq += 1;
  node.dataset.seq = String(errorSeq);
  node.querySelector('.error-text').textContent = message;
}

/** Time left at the rate since `t0`, for people ("", or ", about 40 s left"). */
export function timeLeft(done, total, t0) {
  const s = (performance.now() - t0) / 1000;
  if (!(done > 0) || !(total > done) || s < 1) return '';
  const left = (s / done) * (total - done);
  return left >= 1 ? `, about ${left >= 90 ? `${Math.round(left / 60)} min` : `${Math.round(left)} s`} left` : '';
}

/**
 * Shows a progress event of the scorer (see pkg/types.js, ProgressEvent); `t0`, when given, is
 * when the work began, for the time left.
 */
export function showProgress(p, t0 = undefined) {
  const box = $('progress-box');
  const bar = $('progress');
  const text = $('progress-text');
  if (p.status === 'note' || p.status === 'restart') {
    setStatus(p.message);
    return;
  }
  box.hidden = false;
  if (p.status === 'source') {
    setStatus(`Reading ${p.file} (${bytesText(p.bytes)}) from ${p.revision}, commit ${p.commit.slice(0, 7)}${p.why ? `: ${p.why}` : ''}.`);
    return;
  }
  if (p.status === 'import') {
    bar.max = p.total;
    bar.value = p.loaded;
    text.textContent = (p.tensor === 0
      ? `Reading the table of contents${p.format ? ` of ${p.format}` : ''}`
      : `Converting${p.format ? ` ${p.format}` : ''}: tensor ${p.tensor} of ${p.tensors}, ${bytesText(p.loaded)} of ${bytesText(p.total)} read`) +
      (t0 === undefined ? '' : timeLeft(p.loaded, p.total, t0));
    return;
  }
  if (p.status === 'classes' && p.total > 0) {
    bar.max = p.total;
    bar.value = p.done;
    text.textContent = p.cached
      ? 'Text features from the cache'
      : `Text features: ${p.done} of ${p.total} prompts${t0 === undefined ? '' : timeLeft(p.done, p.total, t0)}`;
    return;
  }
  if (p.status === 'download' && p.total > 0) {
    bar.max = p.total;
    bar.value = p.loaded;
    text.textContent = p.cached
      ? `From the cache: ${bytesText(p.total)}`
      : `Downloading ${bytesText(p.loaded)} of ${bytesText(p.total)} (${Math.floor((p.loaded / p.total) * 100)}%)`;
    return;
  }
  bar.removeAttribute('value'); // indeterminate
  text.textContent = {
    check: 'Checking the cached model',
    download: `Downloading ${bytesText(p.loaded ?? 0)}`,
    load: 'Verifying the bundle and building the model',
    warmup: `Warming up on ${p.device === 'webgpu' ? 'WebGPU' : 'the CPU'}`,
    classes: 'Computing the text features of the classes',
    fallback: 'WebGPU failed: moving the model to the CPU',
    cached: `Converted before: ${bytesText(p.bytes)} from the cache, no download`,
  }[p.status] ?? '';
}

export function hideProgress() {
  $('progress-box').hidden = true;
}

/** The "ready" chip, carrying the model's checksum and warm-up time for the tests. */
export function setReady(model) {
  const slot = $('ready-slot');
  slot.replaceChildren();
  if (!model) return;
  slot.append(el('span', {
    class: 'chip ok',
    dataset: { testid: 'ready', sha256: model.info.sha256, warmupMs: String(model.warmUpMs ?? '') },
    text: 'ready',
  }));
}

/**
 * The device line: "webgpu"/"cpu", a sentence saying why, and the raw text behind it (an
 * adapter's name, a driver's error) in a disclosure.
 * @param {import('../pkg/types.js').Device | null} device
 * @param {import('../pkg/types.js').DeviceReason | null} reason
 * @param {string} [engine] what computes the products (ModelInfo.engine)
 */
export function setDevice(device, reason, engine = '') {
  $('backend').textContent = device ?? '';
  $('backend-none').hidden = Boolean(device);
  $('engine').textContent = engine;
  const box = $('backend-reason');
  box.replaceChildren();
  if (!reason) return;
  box.append(reason.message);
  if (reason.detail) {
    box.append(' ', el('details', { class: 'inline-details' }, el('summary', { text: 'details' }), el('code', { class: 'raw', text: reason.detail })));
  }
}
