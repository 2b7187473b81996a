// The scorer's worker (a module worker): every model step runs here, off the page's thread.
// `index.js` starts it and speaks to it; nothing else should. The messages both ways are typed
// in `protocol.js`. The worker keeps only the loaded model: the classes, threshold and
// calibration in force are `index.js`'s, which replays them into a fresh model after a crash or
// a GPU failure. A GPU failure while loading falls back to the CPU here, since it needs no state.

import { ScorerError, describe, isGpuFailure } from './errors.js';
import { checkUrl, fetchBundle, forgetBundle, keepBundle, releaseBundle } from './bundles.js';
import { convert as convertCheckpoint, fromFiles, fromHub } from './checkpoint.js';
import { browserMayDecode, bitmapPixels, decodeInBrowser } from './decode.js';
import { isCommit, revisionInfo } from './hub.js';
import { deleteModel, findModel, findSavedHubModel, findText, keepModel, keepText, listModels, modelId, tunedModelId } from './models.js';
import { anyBuild, pickBuild } from './builds.js';

/** @typedef {import('./types.js').ProgressEvent} ProgressEvent */
/** @typedef {import('./protocol.js').Request} Request */
/** @typedef {import('./protocol.js').Reply} Reply */

// wasm-bindgen's panic hook logs the panic with console.error just before the trap: keep the
// last one, so that a crash reaches the page with its reason rather than "unreachable".
let lastPanic = { text: '', at: 0 };
const consoleError = console.error.bind(console);
console.error = (...args) => {
  lastPanic = { text: args.map((a) => (a instanceof Error ? a.message : String(a))).join(' '), at: Date.now() };
  consoleError(...args);
};
const explain = (e) => describe(e, Date.now() - lastPanic.at < 10_000 ? lastPanic.text : '');

/** The loaded model (a wasm `Scorer`), the one piece of state the worker owns. */
let current = null;

/** @param {Reply} message @param {Transferable[]} [transfer] */
const post = (message, transfer = []) => self.postMessage(message, transfer);

// The wasm builds load with the first request that needs one (builds.js).
post({ kind: 'boot', ok: true });

let queue = Promise.resolve();
function serially(task) {
  const run = queue.then(task);
  queue = run.catch(() => {});
  return run;
}

self.onmessage = (/** @type {MessageEvent<Request>} */ event) => {
  const msg = event.data;
  const { id } = msg;
  /** @param {ProgressEvent} e */
  const progress = (e) => post({ id, kind: 'progress', event: e });
  const task = async () => {
    switch (msg.op) {
      case 'load':
        return load(msg, progress);
      case 'classify':
        return classify(msg);
      case 'classifyMany':
        return classifyMany(msg);
      case 'setClasses':
        return setClasses(requireScorer(), msg.classes, msg.templates ?? null, progress);
      case 'setThreshold':
        requireScorer().setThreshold(msg.value ?? undefined);
        return requireScorer().info();
      case 'calibrate':
        return requireScorer().calibrate(msg.scores, msg.tpr ?? 0.95);
      case 'cachedModels':
        return listModels();
      case 'cachedModel':
        return (await findModel(String(msg.modelId)))?.bytes ?? null;
      case 'deleteCachedModel':
        return deleteModel(String(msg.modelId));
      case 'judge':
        return requireScorer().judge(msg.scores);
      case 'import':
        return importCheckpoint(msg, progress);
      case 'tune':
        return tune(msg, progress);
      default:
        throw new ScorerError(`unknown request "${msg.op}"`, 'InputError');
    }
  };
  if (msg.op === 'cancelImport') {
    importing?.abort();
    post({ id, kind: 'ok', value: Boolean(importing) });
    return;
  }
  if (msg.op === 'cancelClasses') {
    if (computingClasses) computingClasses.stop = true;
    post({ id, kind: 'ok', value: Boolean(computingClasses) });
    return;
  }
  if (msg.op === 'cancelTune') {
    if (tuning) tuning.stop = true;
    post({ id, kind: 'ok', value: Boolean(tuning) });
    return;
  }
  (msg.op === 'judge' || msg.op === 'cachedModels' ? task() : serially(task)).then(
    // A bundle made here goes to the page without a copy.
    (value) => {
      const bundle = value instanceof Uint8Array ? value : value?.bundle instanceof Uint8Array ? value.bundle : null;
      post({ id, kind: 'ok', value }, bundle ? [bundle.buffer] : []);
    },
    (e) => post({ id, kind: 'error', error: explain(e) }),
  );
};

function requireScorer() {
  if (!current) throw new ScorerError('no model is loaded yet', 'InputError');
  return current;
}

/**
 * Builds and warms up a scorer; frees it again if the warm-up fails. The CPU runs in the
 * threaded build when there is one; "auto" looks for WebGPU first (builds.js).
 * @param {import('./types.js').ActivationsRequest} [activations]
 */
async function start(bytes, device, progress, threads, precision = 'auto', activations = 'i16') {
  const note = (message) => progress({ status: 'note', message });
  const { build, device: on, reason } = await pickBuild(device, threads, activations, note);
  progress({ status: 'load' });
  const t0 = performance.now();
  const scorer = await build.Scorer.load(bytes, on, precision, activations);
  const loadMs = performance.now() - t0;
  try {
    progress({ status: 'warmup', device: scorer.device });
    const warmUpMs = await scorer.warmUp();
    return { scorer, loadMs, warmUpMs, reason: reason ?? scorer.deviceReason };
  } catch (e) {
    scorer.free();
    throw e;
  }
}

async function load(msg, progress) {
  let fetched = null;
  let bytes;
  if (msg.source?.kind === 'url') {
    const url = checkUrl(msg.source.href, self.location.origin, msg.source.allowedOrigins ?? []);
    fetched = await fetchBundle(url, progress);
    bytes = fetched.bytes;
  } else if (msg.source?.kind === 'bytes' && msg.source.bytes instanceof ArrayBuffer) {
    bytes = new Uint8Array(msg.source.bytes);
  } else {
    throw new ScorerError('load: no model given', 'InputError');
  }
  const device = msg.device ?? 'auto';
  const threads = msg.threads ?? 'auto';
  let started;
  let reason = null;
  try {
    try {
      started = await start(bytes, device, progress, threads, msg.precision ?? 'auto', msg.activations ?? 'i16');
    } catch (e) {
      if (fetched?.cached) await forgetBundle(fetched.href);
      // WebGPU came up but could not run the model: the CPU before giving up.
      if (device === 'cpu' || !isGpuFailure(explain(e))) throw e;
      reason = { code: 'webgpu-failed', message: 'WebGPU failed while loading the model, so the model now runs on the CPU.', detail: explain(e).message };
      started = await start(bytes, 'cpu', progress, threads, 'auto', msg.activations ?? 'i16');
    }
    if (current && current !== started.scorer) current.free();
    current = started.scorer;
    if (fetched) await keepBundle(fetched, progress);
  } finally {
    // The model holds its weights; the bundle is read no more.
    releaseBundle(bytes);
  }
  const s = started.scorer;
  const ready = {
    status: 'ready',
    device: s.device,
    reason: reason ?? started.reason,
    info: s.info(),
    loadMs: started.loadMs,
    warmUpMs: started.warmUpMs,
    cached: Boolean(fetched?.cached),
  };
  progress(ready);
  return ready;
}

/** The text-feature job in progress, which `cancelClasses` stops between chunks. */
let computingClasses = null;

/**
 * New classes (and templates): text features from the cache when this bundle met them before,
 * else from the text tower, with progress, kept when they took a while.
 */
async function setClasses(s, classes, templates, progress) {
  progress({ status: 'classes', done: 0, total: 0, cached: false });
  const sha = s.info().sha256;
  const found = await findText(sha, classes, templates).catch(() => null);
  let info = null;
  if (found) {
    try {
      info = s.setTextFeatures(classes, templates, found);
      progress({ status: 'classes', done: info.classes.length, total: info.classes.length, cached: true });
    } catch {
      info = null; // kept for another class list that cleans differently: compute afresh
    }
  }
  if (!info) {
    let last = 0;
    const job = { stop: false };
    computingClasses = job;
    try {
      info = await s.setClasses(classes, templates, (done, total) => {
        const now = performance.now();
        if (now - last > 100 || done === total) {
          last = now;
          progress({ status: 'classes', done, total, cached: false });
        }
        return !job.stop; // false stops the text tower after this chunk
      });
    } finally {
      if (computingClasses === job) computingClasses = null;
    }
    await keepText(sha, classes, templates, info.classes.length * Math.max(1, templates?.length ?? 1), s.textFeatures());
  }
  return info;
}

const withDevice = (r, decodedBy) => ({ ...r, decodedBy, device: requireScorer().device });

async function classify(msg) {
  const s = requireScorer();
  const topK = Math.max(1, Math.floor(Number(msg.topK) || 5));
  const image = msg.image ?? {};
  if (image.kind === 'rgba') {
    return withDevice(await s.classifyRgba(image.width, image.height, new Uint8Array(image.rgba), topK), 'browser');
  }
  if (image.kind === 'bitmap') {
    const { width, height, rgba } = bitmapPixels(image.bitmap);
    return withDevice(await s.classifyRgba(width, height, rgba, topK), 'browser');
  }
  if (image.kind !== 'encoded' || !(image.bytes instanceof ArrayBuffer)) {
    throw new ScorerError('classify: no image given', 'InputError');
  }
  const bytes = new Uint8Array(image.bytes);
  try {
    return withDevice(await s.classifyImage(bytes, topK), 'wasm');
  } catch (e) {
    // A type the wasm decoder does not read (AVIF, …): let the browser decode it.
    const type = String(image.type ?? '');
    if (!browserMayDecode(explain(e), type)) throw e;
    const { width, height, rgba } = await decodeInBrowser(bytes, type, e);
    return withDevice(await s.classifyRgba(width, height, rgba, topK), 'browser');
  }
}

/**
 * Several images: the encoded ones `batchSize` at a time through one forward pass each
 * (`classifyImages`), then, one at a time through `classify`'s own path, pixels the browser
 * holds and images the wasm decoder could not read (the browser may). One entry per image: a
 * result, or `{error}` for an image that failed alone.
 */
async function classifyMany(msg) {
  const s = requireScorer();
  const topK = Math.max(1, Math.floor(Number(msg.topK) || 5));
  const batch = Math.max(1, Math.min(64, Math.floor(Number(msg.batchSize) || 8)));
  /** @type {any[]} */
  const images = Array.isArray(msg.images) ? msg.images : [];
  const encodedAt = [];
  images.forEach((im, i) => {
    if (im?.kind === 'encoded' && im.bytes instanceof ArrayBuffer) encodedAt.push(i);
  });
  const batched = encodedAt.length === 0
    ? []
    : (await s.classifyImages(encodedAt.map((i) => new Uint8Array(images[i].bytes)), topK, batch)).map(
        (/** @type {any} */ r) => (r.error ? r : withDevice(r, 'wasm')),
      );
  /** @type {any[]} */
  const out = new Array(images.length).fill(null);
  encodedAt.forEach((i, k) => {
    out[i] = batched[k];
  });
  for (let i = 0; i < images.length; i++) {
    // Decoded by the wasm already, or refused by it where the browser could not do better.
    if (out[i] && !(out[i].error && browserMayDecode(out[i].error, String(images[i].type ?? '')))) continue;
    try {
      out[i] = await classify({ image: images[i], topK });
    } catch (e) {
      out[i] = { error: explain(e) };
    }
  }
  return out;
}

let importing = null; // the AbortController of the import in progress

async function importCheckpoint(msg, progress) {
  const controller = new AbortController();
  importing = controller;
  const quant = msg.quant ?? 'q8';
  const useCache = msg.cache !== false;
  try {
    let ckpt;
    let source = msg.source ?? {};
    /** The bundle kept from an earlier import of this checkpoint: no more requests. */
    const saved = async (id) => {
      const hit = useCache ? await findModel(id) : null;
      if (hit) progress({ status: 'cached', name: hit.meta.name, bytes: hit.bytes.length });
      return hit?.bytes ?? null;
    };
    if (source.kind === 'hub') {
      const base = checkUrl(source.base, self.location.origin, msg.allowedOrigins ?? []).href;
      const { repo, revision = 'main' } = source;
      if (!/^[\w.-]+\/[\w.-]+$/.test(repo ?? '')) {
        throw new ScorerError(`"${repo}" is not a Hub repository id (like openai/clip-vit-base-patch32)`, 'InputError');
      }
      const where = { base, repo, revision };
      // A commit never changes: found by it, nothing is asked of the Hub.
      const known = isCommit(revision) ? await saved(modelId({ ...where, commit: revision }, quant)) : null;
      if (known) return known;
      let info;
      try {
        info = await revisionInfo(base, repo, revision, controller.signal);
      } catch (e) {
        // The Hub out of reach: the newest copy of this revision kept here, said plainly.
        const kept = e.name === 'IoError' && useCache ? await findSavedHubModel(where, quant) : null;
        if (!kept) throw e;
        progress({ status: 'note', message: `The Hub could not be reached, so the copy of ${repo}@${revision} saved here on ${new Date(kept.meta.saved).toLocaleString()} (commit ${String(kept.meta.commit).slice(0, 7)}) is used.` });
        progress({ status: 'cached', name: kept.meta.name, bytes: kept.bytes.length });
        return kept.bytes;
      }
      source = { kind: 'hub', ...where, commit: info.commit };
      const current = await saved(modelId(source, quant));
      if (current) return current;
      ckpt = await fromHub(where, info, controller.signal, progress);
    } else {
      ckpt = await fromFiles(source.files ?? {});
    }
    const keep = useCache
      ? (b) => {
          const hub = source.kind === 'hub' ? { repo: source.repo, revision: source.revision, commit: source.commit, base: source.base, file: ckpt.file } : {};
          const meta = { name: ckpt.name, source: ckpt.source, quant, ...hub };
          return keepModel(modelId(source, quant, b.checkpointSha256), b, meta, (message) => progress({ status: 'note', message }));
        }
      : null;
    const { bundle } = await convertCheckpoint(await anyBuild(), ckpt, msg, progress, keep);
    return bundle;
  } finally {
    if (importing === controller) importing = null;
  }
}

/** The tuning in progress, which `cancelTune` stops between steps. */
let tuning = null;

/**
 * Prompt tuning on the pictures given (`Scorer.tune`, the command line's `tune`), with the
 * bytes of the model in use, whose weights go into the tuned bundle. The tuned bundle is kept
 * among the saved models with its provenance unless `keep` is false.
 */
async function tune(msg, progress) {
  const s = requireScorer();
  const base = s.info();
  let bytes;
  if (msg.model?.kind === 'url') {
    bytes = (await fetchBundle(checkUrl(msg.model.href, self.location.origin, msg.model.allowedOrigins ?? []), () => {})).bytes;
  } else if (msg.model?.kind === 'bytes' && msg.model.bytes instanceof ArrayBuffer) {
    bytes = new Uint8Array(msg.model.bytes);
  } else {
    throw new ScorerError('tune: the model in use could not be read again', 'InputError');
  }
  const encoded = (list, what) =>
    (list ?? []).map((im, i) => {
      if (im?.kind !== 'encoded' || !(im.bytes instanceof ArrayBuffer)) {
        throw new ScorerError(`${what} ${i + 1}: tune takes encoded pictures (files, blobs, bytes or URLs), not pixels`, 'InputError');
      }
      return new Uint8Array(im.bytes);
    });
  const images = encoded(msg.images, 'picture');
  const ood = encoded(msg.ood, 'out-of-distribution picture');
  const job = { stop: false };
  tuning = job;
  let last = 0;
  let result;
  try {
    result = await s.tune(bytes, images, msg.labels ?? [], ood, msg.options ?? {}, (/** @type {any} */ e) => {
      const now = performance.now();
      if (now - last > 100 || e.done === e.total || e.stage !== 'train') {
        last = now;
        progress({ status: 'tune', ...e });
      }
      return !job.stop; // false stops the tuning after this step
    });
  } catch (e) {
    if (job.stop) throw new ScorerError(explain(e).message, 'AbortError');
    throw e;
  } finally {
    if (tuning === job) tuning = null;
    releaseBundle(bytes);
  }
  if (msg.keep !== false) {
    const { report, bundle } = result;
    const sha256 = bundle.subarray(16, 48);
    const reader = { length: bundle.length, sha256, checkpointSha256: '', read: (a, b) => bundle.slice(a, b) };
    const { shots, lambda, epochs, seed } = report.options;
    const tuned = { base: base.provenance?.source || base.sha256, shots, lambda, epochs, seed, classes: report.classes, date: Date.now() };
    const meta = { name: `tuned: ${report.classes.length} classes, λ ${tuned.lambda}, ${tuned.shots} shots`, source: report.provenance, quant: base.quant, tuned };
    await keepModel(tunedModelId(sha256), reader, meta, (message) => progress({ status: 'note', message }));
  }
  return result;
}
