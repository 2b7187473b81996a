// DOM and number helpers. Every text from outside (file names, class names, messages) goes in
// through textContent, never as HTML.

const SVG_NS = 'http://www.w3.org/2000/svg';

/** The element with this id. */
export const $ = (id) => document.getElementById(id);

/** el('p', {class: 'x', dataset: {testid: 'y'}, text: 'hi', onclick: f}, child, ...) */
export function el(tag, props = {}, ...children) {
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

/** svg('rect', {x: 1, text: 'label'}, child, ...) */
export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null) continue;
    if (k === 'text') node.textContent = v;
    else node.setAttribute(k, String(v));
  }
  for (const c of children.flat()) if (c) node.append(c);
  return node;
}

/** A number with a fixed count of decimals (scores: 3, thresholds: 3). */
export const fmt = (x, digits = 3) => (Number.isFinite(x) ? x.toFixed(digits) : String(x));
/** A number with `digits` significant digits and no trailing zeros (τ = 0.0884). */
export const sig = (x, digits = 3) => (Number.isFinite(x) ? String(Number(x.toPrecision(digits))) : '—');
export const pct = (p) => `${(p * 100).toFixed(p >= 0.995 || p < 0.001 ? 2 : 1)}%`;
export const ms = (x) => (x >= 1000 ? `${(x / 1000).toFixed(1)} s` : `${Math.round(x)} ms`);

export function bytesText(n) {
  if (!Number.isFinite(n)) return '?';
  if (n < 1000) return `${n} B`;
  if (n < 1e6) return `${(n / 1e3).toFixed(1)} kB`;
  if (n < 1e9) return `${(n / 1e6).toFixed(n < 1e8 ? 1 : 0)} MB`;
  return `${(n / 1e9).toFixed(2)} GB`;
}

export const shorten = (text, n) => (text.length > n ? `${text.slice(0, n - 1)}…` : text);

/** The score names as people read them. */
export const SCORE_LABEL = { deltaEnergy: 'ΔEnergy', energy: 'Energy', mcm: 'MCM', maxLogit: 'MaxLogit' };
