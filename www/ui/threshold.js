// The OOD threshold: the slider, its number box and the note under it. The scorer holds the
// threshold and gives every verdict; this module only says where the threshold is and why.

import { $, fmt, pct, SCORE_LABEL } from './dom.js';
import { session } from './session.js';
import { emit } from './events.js';
import { currentScores } from './records.js';

/**
 * mode: `bundle` (the bundle's own), `auto` (the median of the scores seen), `calibrated` (on
 * the user's pictures, ui/calibrate.js), `user`, `none`.
 */
const state = { value: null, mode: 'none', score: 'deltaEnergy', calibration: null };

export const thresholdValue = () => state.value;
export const thresholdScore = () => state.score;

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** After a model loads: the bundle's threshold, or one that follows the scores seen. */
export async function initThreshold(info) {
  const t = info.bundleThreshold;
  if (t) {
    Object.assign(state, { value: t.value, mode: 'bundle', score: t.score });
  } else {
    const seen = currentScores('deltaEnergy');
    Object.assign(state, { value: seen.length ? median(seen) : null, mode: 'auto', score: 'deltaEnergy' });
    if (state.value !== null) await session.scorer.setThreshold(state.value);
  }
  render(true);
}

/** After the classes changed: the threshold stays; the note says if it was calibrated for others. */
export async function keepThresholdForClasses() {
  render(true);
  await emit('threshold-changed');
}

/** After a new result: an automatic threshold follows the median; the slider's range grows. */
export async function onNewScores() {
  if (state.mode === 'auto') {
    state.value = median(currentScores(state.score));
    await session.scorer.setThreshold(state.value);
    await emit('threshold-changed');
  }
  render();
}

/** The scorer calibrated a threshold on the user's pictures (it holds it already). */
export async function setCalibrated(t) {
  Object.assign(state, { value: t.value, mode: 'calibrated', score: t.score, calibration: t });
  render(true);
  await emit('threshold-changed');
}

let pending = 0;
/** The user moved the threshold: flag again once the scorer has it. */
async function setByUser(value) {
  if (!Number.isFinite(value)) return;
  Object.assign(state, { value, mode: 'user' });
  render();
  const mine = ++pending;
  await session.scorer.setThreshold(value);
  if (mine === pending) await emit('threshold-changed'); // a later move supersedes this one
}

function niceStep(x) {
  if (!(x > 0)) return 0.01;
  const p = 10 ** Math.floor(Math.log10(x));
  const m = x / p;
  return (m < 2 ? 1 : m < 5 ? 2 : 5) * p;
}

/** The slider's range covers the threshold and every score seen, and only grows while in use. */
function render(resetRange = false) {
  const slider = $('threshold');
  const number = $('threshold-number');
  const note = $('threshold-note');
  $('threshold-label').textContent = `OOD threshold on ${SCORE_LABEL[state.score]}`;
  if (!session.model || state.value === null) {
    slider.disabled = true;
    number.disabled = true;
    number.value = '';
    note.textContent = session.model
      ? 'This model has no calibrated threshold: it will start at the median ΔE of the images you score, or calibrate one on your own pictures below.'
      : 'Load a model to set the threshold.';
    return;
  }
  const vals = [...currentScores(state.score), state.value];
  let lo = Math.min(...vals);
  let hi = Math.max(...vals);
  const span = Math.max(hi - lo, Math.abs(hi) * 0.2, 0.5);
  lo -= span * 0.25;
  hi += span * 0.25;
  const step = niceStep((hi - lo) / 200);
  let min = Math.floor(lo / step) * step;
  let max = Math.ceil(hi / step) * step;
  if (!resetRange && slider.dataset.ready === '1') {
    min = Math.min(min, Number(slider.min));
    max = Math.max(max, Number(slider.max));
  }
  Object.assign(slider, { min: String(min), max: String(max), step: String(step), value: String(state.value), disabled: false });
  slider.dataset.ready = '1';
  slider.setAttribute('aria-valuetext', `${SCORE_LABEL[state.score]} ${fmt(state.value)}`);
  number.disabled = false;
  if (document.activeElement !== number) number.value = String(Number(state.value.toPrecision(6)));
  const t = session.model.info.bundleThreshold;
  const classesChanged = session.model.info.classes.join('\n') !== session.model.info.bundleClasses.join('\n');
  const how = {
    bundle: `From the bundle${t?.tpr ? `: keeps ${pct(t.tpr)} of in-distribution images` : ''}` +
      `${classesChanged ? ', calibrated for the bundle’s own classes, not the ones you applied' : ''}.`,
    auto: 'This model has no calibrated threshold: it follows the median ΔE of the images scored so far until you move it or calibrate it on your own pictures below.',
    calibrated: `Calibrated on your pictures: keeps ${pct(state.calibration?.tpr ?? 0.95)} of them.`,
    user: 'Set by you.',
  }[state.mode] ?? '';
  note.textContent = `${how} ${SCORE_LABEL[state.score]} below the threshold → OOD.`;
}

export function initThresholdControls() {
  $('threshold').addEventListener('input', (event) => setByUser(Number(event.target.value)));
  $('threshold-number').addEventListener('change', (event) => {
    const v = Number(event.target.value);
    if (event.target.value !== '' && Number.isFinite(v)) setByUser(v);
    else render();
  });
}

/** Where a value sits on the slider's scale, 0..1 (for the cards' gauges). */
export function gaugeScale() {
  const slider = $('threshold');
  if (slider.disabled || state.value === null) return null;
  return { min: Number(slider.min), max: Number(slider.max), value: state.value };
}
