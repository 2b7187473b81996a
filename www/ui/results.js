// The images scored in this visit: a queue in front of the scorer, one record per image (its
// card, its table row, its verdict), and flagging them again when the threshold moves.

import { $ } from './dom.js';
import { session } from './session.js';
import { setStatus, showError } from './status.js';
import { pendingCard, failCard, resultCard, applyFlag, markCardStale } from './cards.js';
import { addRow, markRowStale, clearRows } from './batch.js';
import { onNewScores, thresholdValue } from './threshold.js';
import { on } from './events.js';
import { records, scoredRecords } from './records.js';

const MAX_IN_FLIGHT = 2; // requests handed to the scorer at once; the rest wait in the page
// Images that wait together go through the image tower together, up to this many a forward
// pass (`classifyMany`; the README's "Batches" gives the figures behind the number).
const BATCH = 8;

const queue = [];
let inFlight = 0;
let seq = 0;

/** Queues an image for scoring; its card appears at once. */
export function enqueueImage(blob, name) {
  seq += 1;
  const r = { seq, name, url: URL.createObjectURL(blob), context: session.context, result: null, ood: null, card: null };
  r.card = pendingCard(r);
  records.push(r);
  $('results-empty').hidden = true;
  updateControls();
  if (!session.model && !session.loading) {
    fail(r, 'no model is loaded (load a .bundle first)');
    return;
  }
  queue.push({ r, blob });
  // After the task that queued this image: the other files of the same drop join its batch.
  setTimeout(pump, 0);
}

function pump() {
  while (inFlight < MAX_IN_FLIGHT && queue.length) {
    const jobs = queue.splice(0, BATCH);
    inFlight += 1;
    (jobs.length === 1 ? score(jobs[0]) : scoreMany(jobs)).finally(() => {
      inFlight -= 1;
      pump();
    });
  }
}

function fail(r, message) {
  failCard(r, message);
  showError(`${r.name}: ${message}`);
  setStatus(`${r.name} was not scored.`);
}

async function score({ r, blob }) {
  r.card.status.textContent = 'Scoring…';
  try {
    await show(r, await session.scorer.classify(blob));
  } catch (e) {
    fail(r, e.message ?? String(e));
  }
  updateControls();
}

async function scoreMany(jobs) {
  for (const { r } of jobs) r.card.status.textContent = `Scoring with ${jobs.length - 1} more…`;
  let results;
  try {
    results = await session.scorer.classifyMany(jobs.map((j) => j.blob), { batchSize: BATCH });
  } catch (e) {
    results = jobs.map(() => e); // the model itself failed: every image of the batch says why
  }
  for (let i = 0; i < jobs.length; i++) {
    const result = results[i];
    if (result instanceof Error) {
      fail(jobs[i].r, result.message);
      continue;
    }
    try {
      await show(jobs[i].r, result);
    } catch (e) {
      fail(jobs[i].r, e.message ?? String(e));
    }
  }
  updateControls();
}

async function show(r, result) {
  Object.assign(r, { result, context: session.context, ood: result.ood, sha: session.model.info.sha256, classes: session.model.info.classes });
  resultCard(r, scoredRecords().length === 1);
  addRow(r);
  applyFlag(r);
  await onNewScores();
  const verdict = r.ood === null ? '' : r.ood ? 'OOD, ' : 'in-distribution, ';
  const batch = result.timings.batch > 1 ? `, ${result.timings.batch} images a pass` : '';
  setStatus(`${r.name}: ${result.label}, ${verdict}ΔE ${result.scores.deltaEnergy.toFixed(3)} (${Math.round(result.timings.totalMs)} ms${batch}).`);
}

/** Asks the scorer for the verdicts of the threshold in force on this context's results. */
export async function reflag() {
  const live = records.filter((r) => r.result && r.context === session.context);
  if (!live.length || !session.scorer) return;
  const verdicts = await session.scorer.judge(live.map((r) => r.result));
  live.forEach((r, i) => {
    r.ood = verdicts[i];
    applyFlag(r, thresholdValue());
  });
}

/** Results of an earlier model or class list keep their verdict and say so. */
export function markStale() {
  for (const r of records) {
    if (r.result && r.context !== session.context) {
      markCardStale(r);
      markRowStale(r);
    }
  }
}

function clearResults() {
  for (const r of records) {
    if (!r.result && !r.card.failed) continue; // still being scored
    URL.revokeObjectURL(r.url);
    r.card.root.remove();
    r.row?.remove();
  }
  const kept = records.filter((r) => r.card.root.isConnected);
  records.splice(0, records.length, ...kept);
  if (!kept.some((r) => r.row)) clearRows();
  $('results-empty').hidden = records.length > 0;
  updateControls();
  setStatus('Results cleared.');
}

export function updateControls() {
  const have = Boolean(session.model);
  $('classes').disabled = !have;
  $('apply-classes').disabled = !have || $('apply-classes').hasAttribute('aria-busy');
  $('reset-classes').disabled = !have;
  $('load-url').disabled = session.loading;
  $('bundle-input').disabled = session.loading;
  $('export-csv').disabled = !records.some((r) => r.result);
  $('clear-results').disabled = records.length === 0;
}

export function initResults() {
  on('threshold-changed', reflag);
  $('clear-results').addEventListener('click', clearResults);
}
