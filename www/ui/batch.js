// The batch table (one row per scored image) and its CSV export. The CSV's columns use the
// command line's names (`deltaenergy score --json`), so the two can be compared.

import { $, el, fmt } from './dom.js';
import { setStatus } from './status.js';
import { scoredRecords } from './records.js';

export function addRow(r) {
  const s = r.result.scores;
  r.rowOod = el('td');
  const num = (v) => el('td', { class: 'num mono', title: String(v), text: fmt(v, 4) });
  r.row = el('tr', { dataset: { testid: 'row', image: r.name } },
    el('td', { class: 'file', title: r.name, text: r.name }),
    el('td', { text: r.result.label }),
    num(s.deltaEnergy), num(s.energy), num(s.mcm), num(s.maxLogit),
    r.rowOod);
  $('batch-body').prepend(r.row);
}

export function markRowStale(r) {
  r.row?.classList.add('stale');
}

export function clearRows() {
  $('batch-body').replaceChildren();
}

function csvCell(v) {
  let s = v === null || v === undefined ? '' : String(v);
  if (typeof v === 'string' && /^[=+\-@\t\r]/.test(s)) s = `'${s}`; // no formulas in spreadsheets
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function exportCsv() {
  const head = ['file', 'label', 'delta_energy', 'energy', 'mcm', 'max_logit', 'threshold', 'ood', 'backend', 'model_sha256'];
  const lines = [head.join(',')];
  for (const r of scoredRecords()) {
    const s = r.result.scores;
    lines.push([
      csvCell(r.name), csvCell(r.result.label), s.deltaEnergy, s.energy, s.mcm, s.maxLogit,
      r.threshold ?? '', r.ood ?? '', csvCell(r.result.device), csvCell(r.sha),
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

export function initBatch() {
  $('export-csv').addEventListener('click', exportCsv);
}
