// Calibrating the threshold on the user's own pictures of the classes, for a model that has
// none (an imported one) or one calibrated for other classes: the scorer sets the value that
// keeps 95% of them, as `deltaenergy tune` does on its held-out images, and the page draws their
// scores with the threshold on them. The pictures are scored here and not added to the results.

import { $, el, svg, fmt, SCORE_LABEL } from './dom.js';
import { session } from './session.js';
import { setStatus, showError } from './status.js';
import { setCalibrated } from './threshold.js';

const TPR = 0.95;
const BINS = 20;

/** The histogram of `values` with a line at `threshold`, as an SVG with a text equivalent. */
function histogram(values, threshold, score) {
  const W = 320;
  const H = 120;
  const pad = { l: 6, r: 6, t: 14, b: 22 };
  let lo = Math.min(...values, threshold);
  let hi = Math.max(...values, threshold);
  if (hi - lo < 1e-9) [lo, hi] = [lo - 0.5, hi + 0.5];
  const width = (hi - lo) / BINS;
  const counts = new Array(BINS).fill(0);
  for (const v of values) counts[Math.min(BINS - 1, Math.floor((v - lo) / width))] += 1;
  const top = Math.max(...counts);
  const x = (v) => pad.l + ((v - lo) / (hi - lo)) * (W - pad.l - pad.r);
  const y = (c) => H - pad.b - (c / top) * (H - pad.t - pad.b);
  const below = values.filter((v) => v < threshold).length;
  const label = `${values.length} pictures' ${SCORE_LABEL[score]}; the threshold ${fmt(threshold)} flags ${below} of them`;
  return svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'histogram', role: 'img', 'aria-label': label, 'data-testid': 'calibration-histogram', 'data-n': values.length, 'data-threshold': threshold, 'data-below': below },
    counts.map((c, i) => c && svg('rect', { class: 'hist-bar', x: x(lo + i * width) + 0.5, y: y(c), width: Math.max(1, x(lo + width) - x(lo) - 1), height: H - pad.b - y(c) }, svg('title', { text: `${c} between ${fmt(lo + i * width)} and ${fmt(lo + (i + 1) * width)}` }))),
    svg('line', { class: 'axis', x1: pad.l, x2: W - pad.r, y1: H - pad.b, y2: H - pad.b }),
    svg('line', { class: 'cut', x1: x(threshold), x2: x(threshold), y1: pad.t - 4, y2: H - pad.b }),
    svg('text', { x: pad.l, y: H - 6, class: 'tick', text: fmt(lo, 2) }),
    svg('text', { x: W - pad.r, y: H - 6, class: 'tick end', text: fmt(hi, 2) }),
    // The threshold's label at the top, on the side of the line with more room.
    svg('text', { x: x(threshold) + (x(threshold) < W / 2 ? 4 : -4), y: pad.t + 2, class: `tick cut-label${x(threshold) < W / 2 ? '' : ' end'}`, text: `threshold ${fmt(threshold, 2)}` }));
}

async function calibrateOn(files) {
  if (!session.model) return;
  const context = session.context;
  const results = [];
  const failed = [];
  $('calibrate-input').disabled = true;
  try {
    for (const [i, file] of files.entries()) {
      setStatus(`Calibrating: scoring your picture ${i + 1} of ${files.length}…`);
      try {
        results.push(await session.scorer.classify(file));
      } catch (e) {
        failed.push(`${file.name} (${e.message})`);
      }
    }
    if (session.context !== context) throw new Error('the model or the classes changed meanwhile; choose the pictures again');
    if (!results.length) throw new Error(`none of the pictures could be scored: ${failed.join('; ')}`);
    const info = await session.scorer.calibrate(results, { tpr: TPR });
    const t = info.threshold;
    await setCalibrated(t);
    const box = $('calibration');
    box.replaceChildren(
      histogram(results.map((r) => r.scores[t.score]), t.value, t.score),
      el('p', { class: 'muted small', text: `${t.calibration.charAt(0).toUpperCase()}${t.calibration.slice(1)}: ${SCORE_LABEL[t.score]} below ${fmt(t.value)} is OOD. Move the slider to trade missed outliers against false alarms.` }),
    );
    box.hidden = false;
    if (failed.length) showError(`Calibrated on ${results.length} pictures; ${failed.length} could not be scored: ${failed.join('; ')}`);
    setStatus(`Threshold calibrated on ${results.length} of your pictures (keeps ${Math.round(TPR * 100)}%).`);
  } catch (e) {
    showError(`Could not calibrate: ${e.message}`);
    setStatus('The threshold was not changed.');
  } finally {
    $('calibrate-input').disabled = false;
  }
}

/** After a model loads: open the calibration when it has no threshold of its own. */
export function resetCalibration(info) {
  $('calibration').hidden = true;
  $('calibration').replaceChildren();
  $('calibrate-box').open = !info.bundleThreshold;
}

export function initCalibration() {
  $('calibrate-input').addEventListener('change', (event) => {
    const files = [...event.target.files];
    event.target.value = '';
    if (files.length) calibrateOn(files);
  });
}
