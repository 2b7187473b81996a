// The teaching view of one result: similarities before and after the top-c crop, the share of
// Σ exp(s/τ) the crop removes, and the two energies with ΔE between them. Inline SVG, no
// libraries.

import { el, svg, fmt, sig, pct, shorten } from './dom.js';

/**
 * @param {import('../pkg/types.js').ClassifyResult} result
 * @param {string[]} classes the class names the result was scored against
 */
export function energyView(result, classes) {
  const sims = Array.from(result.similarities ?? []);
  const cropped = Array.from(result.cropped ?? []);

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
  g1.append(svg('rect', { x: 60, y: 18, width: 9, height: 7, class: 'ev-after' }), svg('text', { x: 73, y: 25, class: 'ev-small', text: `after cropping the top ${c} to ${sig(result.cropped?.[order[0]])}` }));
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
      `to ${sig(result.cropped?.[top])} leaves ${pct(left)} of Σ exp(s/τ) with τ = ${sig(tau)}: ` +
      `LSE goes from ${fmt(eb, 3)} to ${fmt(ea, 3)}, so ΔE = −log(${fmt(left, 4)}) = ${fmt(dE, 3)}. ` +
      'The more of the sum the top class carries, the larger ΔE: familiar pictures tend to have one dominant class, unfamiliar ones do not.',
  );
  return el('div', { class: 'ev' }, g1, g2, g3, sentence);
}

