// Prompt tuning on the visitor's own pictures (`scorer.tune`, the command line's `tune`): the
// pictures by class (a folder of class folders, folders dropped on the panel, or files added to
// a named class), the settings, progress with the loss and the time left, Stop, and what it
// changed on pictures it did not see. The model in use changes only when the visitor chooses the
// tuned one; the tuned bundle is kept among the saved models and can be downloaded.

import { $, el, svg, fmt, pct, ms, bytesText } from './dom.js';
import { session } from './session.js';
import { setStatus, showError, timeLeft } from './status.js';
import { loadModel } from './model-panel.js';
import { refreshSavedModels } from './saved-models.js';

/** Generated outliers ΔEnergy's c and τ are chosen on (the CLI's 1000 take minutes here). */
const VALIDATION_OUTLIERS = 200;
/** Held-out pictures per class at most, after the shots (the CLI's default). */
const CALIBRATION = 100;
const IMAGE = /\.(jpe?g|png|webp|gif|bmp)$/i;

/** The visitor's pictures: class name → files, in the order added. */
const pictures = new Map();
/** The visitor's out-of-distribution pictures (none: the page's textures, digits and photos). */
let oodFiles = [];
/** The tuning in progress: its AbortController. */
let running = null;

function add(label, files) {
  const name = label.trim();
  const images = files.filter((f) => IMAGE.test(f.name) || f.type.startsWith('image/'));
  if (!name || !images.length) return;
  pictures.set(name, [...(pictures.get(name) ?? []), ...images]);
}

function render() {
  const list = $('tune-classes');
  list.replaceChildren(...[...pictures].map(([name, files]) => {
    const remove = el('button', { type: 'button', class: 'link', text: 'remove', 'aria-label': `Remove the pictures of ${name}` });
    remove.addEventListener('click', () => {
      pictures.delete(name);
      render();
    });
    return el('li', { dataset: { class: name, count: String(files.length) } }, el('strong', { text: name }), ` ${files.length} picture${files.length === 1 ? '' : 's'} `, remove);
  }));
  const shots = Number($('tune-shots').value);
  const counts = [...pictures.values()].map((f) => f.length);
  const held = counts.reduce((n, c) => n + Math.max(0, Math.min(CALIBRATION, c - shots)), 0);
  $('tune-summary').textContent = pictures.size
    ? `${pictures.size} classes, ${counts.reduce((a, b) => a + b, 0)} pictures: up to ${shots} a class tune, ${held} are held out to judge the result and set the threshold${held ? '' : ' (add more than the shots to a class to hold some out)'}.`
    : '';
  $('tune-run').disabled = running !== null || !session.model || pictures.size < 2;
  $('tune-clear').disabled = running !== null || pictures.size === 0;
}

/** Folder entries dropped on the panel: each folder's images under its name. */
async function dropped(items) {
  const readAll = (dir) => new Promise((resolve, reject) => {
    const reader = dir.createReader();
    const out = [];
    const next = () => reader.readEntries((batch) => (batch.length ? (out.push(...batch), next()) : resolve(out)), reject);
    next();
  });
  const file = (entry) => new Promise((resolve, reject) => entry.file(resolve, reject));
  const walk = async (entry) => {
    if (!entry.isDirectory) return;
    const children = await readAll(entry);
    const files = await Promise.all(children.filter((c) => c.isFile).map(file));
    add(entry.name, files.sort((a, b) => (a.name < b.name ? -1 : 1)));
    for (const c of children) if (c.isDirectory) await walk(c);
  };
  for (const entry of items.map((i) => i.webkitGetAsEntry?.()).filter(Boolean)) await walk(entry);
}

/** The page's own pictures of no class, from its samples. */
async function samplesOfNoClass() {
  const index = await (await fetch('samples/index.json')).json();
  const out = [];
  for (const s of index.filter((x) => /not a class/.test(x.label))) {
    out.push(new File([await (await fetch(`samples/${s.file}`)).blob()], s.file));
  }
  return out;
}

function progressText(e, t0) {
  switch (e.stage) {
    case 'features': return `Reading your pictures: ${e.done} of ${e.total}`;
    case 'train': return `Step ${e.done} of ${e.total}, loss ${fmt(e.loss, 4)}${timeLeft(e.done, e.total, t0)}`;
    case 'outliers': return `Choosing ΔEnergy's settings: outlier ${e.done} of ${e.total}`;
    default: return 'Judging the result on the pictures held out';
  }
}

async function run() {
  const scorer = session.scorer;
  if (!scorer || running) return;
  const lambda = Number($('tune-method').value);
  const nCtx = Number($('tune-nctx').value);
  const examples = [...pictures].flatMap(([label, files]) => files.map((image) => ({ image, label })));
  const controller = new AbortController();
  running = controller;
  render();
  $('tune-stop').hidden = false;
  $('tune-result').hidden = true;
  const status = $('tune-progress');
  const context = session.context;
  let t0 = performance.now();
  try {
    const ood = oodFiles.length ? oodFiles : await samplesOfNoClass();
    const report = await scorer.tune(examples, {
      shots: Number($('tune-shots').value),
      calibration: CALIBRATION,
      epochs: Number($('tune-epochs').value),
      lambda,
      nCtx,
      // "a photo of a" is four tokens; another length starts from random vectors.
      init: nCtx === 4 ? 'a photo of a' : '',
      seed: Number($('tune-seed').value),
      validationOutliers: VALIDATION_OUTLIERS,
      apply: false,
      ood,
      signal: controller.signal,
      onProgress: (e) => {
        if (e.status !== 'tune') return;
        if (e.stage === 'train' && e.done === 1) t0 = performance.now();
        status.textContent = progressText(e, t0);
      },
    });
    status.textContent = `Tuned in ${report.steps} steps, ${ms(report.seconds * 1000)} (${fmt(report.steps / report.seconds, 1)} steps a second on ${scorer.device === 'webgpu' ? 'WebGPU' : 'the CPU'}).`;
    showResult(report, context, ood.length);
    refreshSavedModels();
  } catch (e) {
    if (e.name === 'AbortError') {
      status.textContent = 'Stopped. The model in use is unchanged.';
    } else {
      status.textContent = 'Tuning failed. The model in use is unchanged.';
      showError(`Could not tune: ${e.message}`);
    }
  } finally {
    running = null;
    $('tune-stop').hidden = true;
    render();
  }
}

/** ΔEnergy of the held-out pictures (bars up) and the out-of-distribution ones (bars down). */
function histogram(title, held, threshold) {
  const W = 300;
  const H = 120;
  const mid = H / 2;
  const values = [...held.deltaEnergy, ...held.oodDeltaEnergy, ...(threshold === null ? [] : [threshold])];
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (!(hi - lo > 1e-9)) [lo, hi] = [lo - 0.5, hi + 0.5];
  const bins = 20;
  const width = (hi - lo) / bins;
  const count = (vs) => {
    const c = new Array(bins).fill(0);
    for (const v of vs) c[Math.min(bins - 1, Math.floor((v - lo) / width))] += 1;
    return c;
  };
  const id = count(held.deltaEnergy);
  const ood = count(held.oodDeltaEnergy);
  const top = Math.max(1, ...id, ...ood);
  const x = (v) => 4 + ((v - lo) / (hi - lo)) * (W - 8);
  const h = (c) => (c / top) * (mid - 14);
  const label = `${title}: ${held.deltaEnergy.length} held-out pictures above the axis, ${held.oodDeltaEnergy.length} out-of-distribution pictures below${held.auroc === null ? '' : `; AUROC ${fmt(held.auroc)}`}`;
  return el('figure', { class: 'tune-hist' },
    svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'histogram', role: 'img', 'aria-label': label },
      id.map((c, i) => c && svg('rect', { class: 'hist-bar', x: x(lo + i * width) + 0.5, y: mid - h(c), width: Math.max(1, x(lo + width) - x(lo) - 1), height: h(c) })),
      ood.map((c, i) => c && svg('rect', { class: 'hist-bar ood', x: x(lo + i * width) + 0.5, y: mid, width: Math.max(1, x(lo + width) - x(lo) - 1), height: h(c) })),
      svg('line', { class: 'axis', x1: 4, x2: W - 4, y1: mid, y2: mid }),
      threshold === null ? null : svg('line', { class: 'cut', x1: x(threshold), x2: x(threshold), y1: 6, y2: H - 6 }),
      svg('text', { x: 4, y: H - 2, class: 'tick', text: fmt(lo, 2) }),
      svg('text', { x: W - 4, y: H - 2, class: 'tick end', text: fmt(hi, 2) })),
    el('figcaption', { class: 'small', text: `${title}${held.auroc === null ? '' : `, AUROC ${fmt(held.auroc)}`}` }));
}

function showResult(report, context, oodCount) {
  const box = $('tune-result');
  const { before, after } = report;
  const worse = (before.accuracy !== null && after.accuracy < before.accuracy) ||
    (before.auroc !== null && after.auroc < before.auroc - 0.01);
  const accuracy = before.accuracy === null
    ? 'No pictures were held out, so nothing judges the result: add more pictures than the shots to each class.'
    : `Held-out accuracy ${pct(before.accuracy)} → ${pct(after.accuracy)} on ${report.calibrationImages} pictures it did not tune on.`;
  const auroc = before.auroc === null ? '' : ` ΔEnergy tells them from ${oodCount} pictures of no class with AUROC ${fmt(before.auroc)} → ${fmt(after.auroc)}.`;
  const oldThreshold = session.model?.info.threshold;
  const use = el('button', { type: 'button', class: 'primary', 'data-testid': 'tune-use', text: 'Use the tuned model' });
  const keep = el('button', { type: 'button', 'data-testid': 'tune-keep', text: 'Keep the model in use' });
  const url = URL.createObjectURL(new Blob([report.bundle]));
  const download = el('a', { class: 'button', href: url, download: 'tuned.bundle', text: `Download (${bytesText(report.bytes)})` });
  use.addEventListener('click', async () => {
    if (session.context !== context) {
      showError('The model or its classes changed since tuning; the tuned model was made from the earlier one. It is kept under “Saved in this browser”.');
    }
    use.disabled = true;
    const ok = await loadModel(new File([report.bundle], 'tuned.bundle'), `tuned (${report.classes.length} classes, λ ${report.options.lambda})`);
    if (ok) {
      box.hidden = true;
      setStatus('The tuned model is in use.');
    }
    use.disabled = false;
  });
  keep.addEventListener('click', () => {
    box.hidden = true;
    setStatus('The model in use is unchanged; the tuned one is kept under “Saved in this browser”.');
  });
  box.replaceChildren(
    el('p', { 'data-testid': 'tune-summary-result', dataset: { before: String(before.accuracy), after: String(after.accuracy), worse: String(worse) }, text: accuracy + auroc }),
    worse ? el('p', { class: 'warning', 'data-testid': 'tune-worse', text: 'Tuning made things worse on the pictures it did not see. Keep the model in use, or try CoOp (λ 0), fewer steps or more pictures.' }) : '',
    el('p', { class: 'muted small', text: `Loss per epoch ${fmt(report.loss[0], 3)} → ${fmt(report.loss[report.loss.length - 1], 3)}. The tuned model flags ΔEnergy below ${report.threshold === null ? 'its old threshold' : fmt(report.threshold)} (keeps 95% of the held-out pictures), with c ${report.score.c}, τ ${fmt(report.score.tau, 4)}.` }),
    el('div', { class: 'tune-hists' },
      histogram('Before', before, oldThreshold?.score === 'deltaEnergy' ? oldThreshold.value : null),
      histogram('After', after, report.threshold)),
    el('p', { class: 'muted small', text: 'ΔEnergy: blue above the axis, your held-out pictures; red below, the pictures of no class; the line, the threshold. Tuning that helps pushes the two apart.' }),
    el('div', { class: 'row' }, use, keep, download),
  );
  box.hidden = false;
}

export function initTuning() {
  $('tune-folder').addEventListener('change', (event) => {
    const byClass = new Map();
    for (const f of [...event.target.files].sort((a, b) => (a.webkitRelativePath < b.webkitRelativePath ? -1 : 1))) {
      const parts = f.webkitRelativePath.split('/');
      const name = parts.length > 2 ? parts[parts.length - 2] : parts[0];
      byClass.set(name, [...(byClass.get(name) ?? []), f]);
    }
    for (const [name, files] of byClass) add(name, files);
    event.target.value = '';
    render();
  });
  $('tune-files').addEventListener('change', (event) => {
    const name = $('tune-class').value;
    if (!name.trim()) showError('Name the class before adding its pictures.');
    else add(name, [...event.target.files]);
    event.target.value = '';
    render();
  });
  $('tune-ood').addEventListener('change', (event) => {
    oodFiles = [...event.target.files];
    $('tune-ood-note').textContent = oodFiles.length ? `${oodFiles.length} of your pictures of no class.` : '';
    event.target.value = '';
  });
  const panel = $('tune-section');
  panel.addEventListener('dragover', (e) => e.preventDefault());
  panel.addEventListener('drop', async (e) => {
    e.preventDefault();
    e.stopPropagation();
    await dropped([...(e.dataTransfer?.items ?? [])]);
    render();
  });
  $('tune-shots').addEventListener('input', render);
  $('tune-clear').addEventListener('click', () => {
    pictures.clear();
    render();
  });
  $('tune-run').addEventListener('click', run);
  $('tune-stop').addEventListener('click', () => running?.abort());
  render();
}
