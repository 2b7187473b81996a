// One card per image: pending, failed, or its verdict (label, top classes, ΔE against the
// threshold, the OOD badge, the energy-change view).

import { $, el, fmt, pct, ms, SCORE_LABEL } from './dom.js';
import { energyView } from './energy-view.js';
import { gaugeScale, thresholdScore } from './threshold.js';

/** A card for an image waiting to be scored. */
export function pendingCard(r) {
  const status = el('p', { class: 'card-status muted', text: 'Waiting…' });
  const thumb = el('img', { class: 'thumb', src: r.url, alt: '', decoding: 'async', loading: 'lazy' });
  thumb.addEventListener('error', () => thumb.classList.add('broken'), { once: true });
  const title = el('h3', { class: 'card-title', id: `card-${r.seq}-title`, text: r.name, title: r.name });
  const body = el('div', { class: 'card-body' }, title, status);
  const root = el('article', { class: 'card pending', dataset: { testid: 'pending', image: r.name }, 'aria-labelledby': title.id },
    el('div', { class: 'thumb-box' }, thumb), body);
  $('results').prepend(root);
  return { root, body, status, thumb, failed: false };
}

export function failCard(r, message) {
  const c = r.card;
  c.failed = true;
  c.root.classList.remove('pending');
  c.root.classList.add('failed');
  c.root.dataset.testid = 'result-error';
  c.status.className = 'card-status error-text';
  c.status.textContent = `Not scored: ${message}`;
}

/** Fills a card with its result; `open` opens the energy-change view (the first result's). */
export function resultCard(r, open) {
  const { result } = r;
  const c = r.card;
  c.root.classList.remove('pending');
  Object.assign(c.root.dataset, { testid: 'result', totalMs: String(result.timings.totalMs), imageMs: String(result.timings.imageMs) });
  c.status.remove();
  c.thumb.alt = `${r.name}, classified as ${result.label}`;

  const label = el('span', { class: 'label', dataset: { testid: 'label' }, text: result.label });
  c.badge = el('span', { class: 'badge', dataset: { testid: 'ood' } });
  const prediction = el('p', { class: 'prediction' }, label, ' ', c.badge);
  // Three decimals say all a reader needs; the exact value stays in data-value (for tests, CSV).
  const de = result.scores.deltaEnergy;
  const value = el('span', { class: 'de-value mono', title: String(de), dataset: { testid: 'delta-energy', value: String(de) }, text: fmt(de) });
  c.vs = el('span', { class: 'vs muted' });
  c.gauge = el('div', { class: 'gauge', 'aria-hidden': 'true' });
  const score = el('div', { class: 'de' }, el('p', {}, el('abbr', { title: 'ΔEnergy' }, 'ΔE'), ' = ', value, ' ', c.vs), c.gauge);

  const top = el('ol', { class: 'top5', 'aria-label': `Top ${result.top.length} classes` });
  for (const t of result.top) {
    const fill = el('span', { class: 'fill' });
    fill.style.width = `${Math.max(0, Math.min(1, t.probability)) * 100}%`;
    top.append(el('li', {},
      el('span', { class: 'top-name', title: t.label, text: t.label }),
      el('span', { class: 'bar', 'aria-hidden': 'true' }, fill),
      el('span', { class: 'top-p mono', text: pct(t.probability) })));
  }
  const details = el('details', { class: 'energy' }, el('summary', { text: 'Energy change: how ΔEnergy decided' }), energyView(result, r.classes));
  details.open = open;
  const s = result.scores;
  const more = el('p', { class: 'meta muted small' },
    `energy ${fmt(s.energy)} · MCM ${fmt(s.mcm)} · MaxLogit ${fmt(s.maxLogit)} · ${result.device}, ${ms(result.timings.totalMs)}` +
      (result.decodedBy === 'browser' ? ' · decoded by the browser' : ''));
  c.body.append(prediction, score);
  c.root.append(top, details, more);
}

/** Shows the record's verdict (`r.ood`) against the threshold in force. */
export function applyFlag(r, threshold = r.result.threshold?.value ?? null) {
  const c = r.card;
  const ood = r.ood;
  r.threshold = ood === null ? null : threshold;
  c.badge.textContent = ood === null ? 'no threshold yet' : ood ? 'ood · out-of-distribution' : 'in-distribution';
  c.badge.className = `badge ${ood === null ? 'unknown' : ood ? 'bad' : 'good'}`;
  c.root.classList.toggle('is-ood', ood === true);
  const score = thresholdScore();
  const name = score === 'deltaEnergy' ? 'threshold' : `${SCORE_LABEL[score]} threshold`;
  c.vs.textContent = threshold === null || ood === null ? '' : `${ood ? '<' : '≥'} ${name} ${fmt(threshold)}`;
  if (r.rowOod) {
    r.rowOod.textContent = ood === null ? '—' : ood ? 'ood' : 'in-distribution';
    r.rowOod.className = ood ? 'bad-text' : 'good-text';
  }
  drawGauge(r);
}

/** A small scale with the threshold and this image's ΔE. */
function drawGauge(r) {
  const c = r.card;
  c.gauge.replaceChildren();
  const scale = gaugeScale();
  if (!scale || thresholdScore() !== 'deltaEnergy') return;
  const x = r.result.scores.deltaEnergy;
  const min = Math.min(scale.min, x);
  const max = Math.max(scale.max, x);
  const pos = (v) => `${((v - min) / (max - min || 1)) * 100}%`;
  const ood = el('span', { class: 'gauge-ood' });
  ood.style.width = pos(scale.value);
  const mark = el('span', { class: `gauge-mark ${r.ood ? 'bad' : 'good'}` });
  mark.style.left = pos(x);
  const tick = el('span', { class: 'gauge-th' });
  tick.style.left = pos(scale.value);
  c.gauge.append(ood, tick, mark);
}

export function markCardStale(r) {
  const c = r.card;
  if (c.root.classList.contains('stale')) return;
  c.root.classList.add('stale');
  c.root.append(el('p', { class: 'stale-note muted small', text: 'Scored with an earlier model or class list; its flag is not updated.' }));
}
