// The scorer's worker (a module worker): every model step runs here, off the page's thread.
// `index.js` starts it and speaks to it; nothing else should.
//
// Protocol. Requests are {id, op, ...}; each gets exactly one final answer, {id, kind: 'ok',
// value} or {id, kind: 'error', error: {name, message}}, and any number of {id, kind:
// 'progress', event} before it (events are the package's ProgressEvent union). Once at start
// the worker posts {kind: 'boot', ok, version} or {kind: 'boot', ok: false, error}.
// Requests that use the model run one at a time, in order; `judge` (pure arithmetic) and
// `cachedModels` do not wait for them.
//
// ops: load {source: {kind: 'url', href, allowedOrigins} | {kind: 'bytes', bytes}, device, precision: 'auto' | 'f32' | 'f16',
//            threads: 'auto' | number (the CPU pool's size; the first load's value stays)}
//      classify {image: {kind: 'encoded', bytes, type} | {kind: 'rgba', width, height, rgba}
//                | {kind: 'bitmap', bitmap}, topK}
//      setClasses {classes, templates}   setThreshold {value}   calibrate {scores, tpr}
//      judge {scores}
//      import {source: {kind: 'files', files: {config, weights, tokenizer, tokenizerKind}}
//                      | {kind: 'hub', base, repo, revision}, allowedOrigins, quant, classes,
//              cache} → the bundle's bytes (the model in use is not touched); kept in the
//             cache of converted models by the commit it came from: a Hub import asks the Hub
//             which commit the revision is, and finds an unchanged one there (with the Hub out
//             of reach, the newest copy of that revision)
//      cachedModels {}   cachedModel {modelId} → bytes or null   deleteCachedModel {modelId}
//      cancelImport {} (does not wait in line): stops the import in progress
//      cancelClasses {} (does not wait in line): stops computing text features (setClasses
//             then fails, and the classes in use stay)

import { ScorerError, describe, isGpuFailure } from './errors.js';
import { checkUrl, fetchBundle, forgetBundle, keepBundle } from './bundles.js';
import { convert as convertCheckpoint, fromFiles, fromHub } from './checkpoint.js';
import { isCommit, revisionInfo } from './hub.js';
import { deleteModel, findModel, findSavedHubModel, findText, keepModel, keepText, listModels, modelId } from './models.js';

/** @typedef {import('./types.js').ProgressEvent} ProgressEvent */

// Decoding in the browser (for image types the wasm decoder does not read) stops here.
const MAX_BROWSER_DECODE_PIXELS = 40_000_000;
const WASM_FORMATS = /^image\/(jpeg|jpg|pjpeg|png|apng|webp|gif|bmp|x-ms-bmp)$/i;

// wasm-bindgen's panic hook logs the panic with console.error just before the trap: keep the
// last one, so that a crash reaches the page with its reason rather than "unreachable".
let lastPanic = { text: '', at: 0 };
const consoleError = console.error.bind(console);
console.error = (...args) => {
  lastPanic = { text: args.map((a) => (a instanceof Error ? a.message : String(a))).join(' '), at: Date.now() };
  consoleError(...args);
};
const explain = (e) => describe(e, Date.now() - lastPanic.at < 10_000 ? lastPanic.text : '');

/** @type {any} the wasm-bindgen module: WebGPU and the CPU on this worker's thread */
let wasm = null;
/**
 * The threaded CPU build (`threads/`) with its pool started, once the CPU is first needed; null
 * where it cannot run (one thread asked for or given, no cross-origin isolation, or the build
 * is missing or failed to start, which a `note` event says).
 * @type {Promise<any> | null}
 */
let threaded = null;
/** The model, and what a reload on the CPU needs to restore. */
const current = { scorer: null, bytes: null, threads: 'auto', classes: null, templates: null, threshold: undefined, calibration: null };

const post = (message, transfer = []) => self.postMessage(message, transfer);

const booted = (async () => {
  try {
    wasm = await import('./deltaenergy.js');
    await wasm.default();
    post({ kind: 'boot', ok: true, version: wasm.version() });
  } catch (e) {
    const message = `could not start the scorer: loading deltaenergy.js and its .wasm failed (${explain(e).message})`;
    post({ kind: 'boot', ok: false, error: { name: 'IoError', message } });
  }
})();

let queue = Promise.resolve();
function serially(task) {
  const run = queue.then(task);
  queue = run.catch(() => {});
  return run;
}

self.onmessage = (event) => {
  const msg = event.data ?? {};
  const { id } = msg;
  /** @param {ProgressEvent} e */
  const progress = (e) => post({ id, kind: 'progress', event: e });
  const task = async () => {
    await booted;
    if (!wasm) throw new ScorerError('the scorer did not start', 'IoError');
    switch (msg.op) {
      case 'load':
        return load(msg, progress);
      case 'classify':
        return classify(msg, progress);
      case 'classifyMany':
        return classifyMany(msg, progress);
      case 'setClasses':
        return onGpuFailureUseCpu(progress, (s) => setClasses(s, msg.classes, msg.templates ?? null, progress));
      case 'setThreshold':
        requireScorer().setThreshold(msg.value ?? undefined);
        current.threshold = msg.value ?? null;
        current.calibration = null;
        return requireScorer().info();
      case 'calibrate': {
        const info = requireScorer().calibrate(msg.scores, msg.tpr ?? 0.95);
        current.calibration = { scores: msg.scores, tpr: msg.tpr ?? 0.95 };
        current.threshold = undefined;
        return info;
      }
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
  (msg.op === 'judge' || msg.op === 'cachedModels' ? booted.then(task) : serially(task)).then(
    // A bundle made here goes to the page without a copy.
    (value) => post({ id, kind: 'ok', value }, value instanceof Uint8Array ? [value.buffer] : []),
    (e) => post({ id, kind: 'error', error: explain(e) }),
  );
};

function requireScorer() {
  if (!current.scorer) throw new ScorerError('no model is loaded yet', 'InputError');
  return current.scorer;
}

/**
 * The pool's size for the `threads` option. onnxruntime-web's rule for "auto": half the logical
 * cores, at most 4. Threads share memory, which browsers allow only to cross-origin isolated
 * pages: elsewhere one.
 */
function poolSize(threads) {
  if (!self.crossOriginIsolated || typeof SharedArrayBuffer !== 'function') return 1;
  if (threads === 'auto' || threads == null) return Math.min(4, Math.ceil((navigator.hardwareConcurrency || 1) / 2));
  const n = Math.floor(Number(threads));
  if (!(n >= 1)) throw new ScorerError(`threads must be "auto" or a positive number, got ${JSON.stringify(threads)}`, 'InputError');
  return Math.min(n, 64);
}

/** Loads the threaded build and starts its pool of `n` workers (src/web/pool.rs). */
async function startPool(n) {
  const moduleUrl = new URL('./threads/deltaenergy.js', import.meta.url).href;
  const threads = await import(moduleUrl);
  await threads.default();
  const init = { moduleUrl, module: threads.poolModule(), memory: threads.poolMemory() };
  await Promise.all(
    Array.from({ length: n }, () => new Promise((resolve, reject) => {
      const worker = new Worker(new URL('./pool-worker.js', import.meta.url), { type: 'module', name: 'deltaenergy-cpu' });
      poolWorkers.push(worker);
      worker.onmessage = ({ data }) => (data.ok ? resolve(undefined) : reject(new Error(data.message)));
      worker.onerror = (e) => {
        e.preventDefault();
        reject(new Error(e.message || 'pool-worker.js could not be loaded'));
      };
      worker.postMessage(init);
    })),
  );
  threads.startPool(n);
  return threads;
}
/** The pool's workers, kept referenced: a worker on shared memory may otherwise be collected. */
const poolWorkers = [];

/** The threaded build, started on first use with the first `threads` asked for (see `threaded`). */
function threadedBuild(threads, progress) {
  const n = poolSize(threads);
  threaded ??= n < 2
    ? Promise.resolve(null)
    : startPool(n).catch((e) => {
      for (const w of poolWorkers.splice(0)) w.terminate();
      progress({ status: 'note', message: `The CPU runs on one thread: its thread pool did not start (${explain(e).message}).` });
      return null;
    });
  return threaded;
}

/**
 * Builds and warms up a scorer; frees it again if the warm-up fails. The CPU runs in the
 * threaded build when there is one; "auto" asks this build for WebGPU first, as it would itself.
 */
async function start(bytes, device, progress, threads, precision = 'auto') {
  let build = wasm;
  let reason = null;
  if (device === 'cpu') {
    build = (await threadedBuild(threads, progress)) ?? wasm;
  } else if (device === 'auto') {
    const noGpu = await wasm.probeWebgpu();
    const cpu = noGpu && (await threadedBuild(threads, progress));
    if (cpu) [build, reason] = [cpu, noGpu];
  }
  progress({ status: 'load' });
  const t0 = performance.now();
  const scorer = await build.Scorer.load(bytes, build === wasm ? device : 'cpu', precision);
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

function adopt(scorer, bytes) {
  if (current.scorer && current.scorer !== scorer) current.scorer.free();
  current.scorer = scorer;
  // Only a scorer on WebGPU may need the bytes again, to move to the CPU.
  current.bytes = scorer.device === 'webgpu' ? bytes : null;
}

/** A DeviceReason for a move to the CPU after WebGPU failed. */
function fellBack(what, e) {
  return { code: 'webgpu-failed', message: `WebGPU failed while ${what}, so the model now runs on the CPU.`, detail: explain(e).message };
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
  current.threads = threads;
  let started;
  let reason = null;
  try {
    started = await start(bytes, device, progress, threads, msg.precision ?? 'auto');
  } catch (e) {
    if (fetched?.cached) await forgetBundle(fetched.href);
    // WebGPU came up but could not run the model: the CPU before giving up.
    if (device === 'cpu' || !isGpuFailure(explain(e))) throw e;
    reason = fellBack('loading the model', e);
    started = await start(bytes, 'cpu', progress, threads);
  }
  adopt(started.scorer, bytes);
  current.classes = null;
  current.templates = null;
  current.threshold = undefined;
  current.calibration = null;
  if (fetched) await keepBundle(fetched, progress);
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

/** Runs `fn(scorer)`; if WebGPU fails underneath, reloads the model on the CPU and retries once. */
async function onGpuFailureUseCpu(progress, fn) {
  const scorer = requireScorer();
  try {
    return await fn(scorer);
  } catch (e) {
    const d = explain(e);
    if (scorer.device !== 'webgpu' || !current.bytes || !isGpuFailure(d)) throw e;
    const reason = fellBack('running the model', e);
    const { scorer: cpu } = await start(current.bytes, 'cpu', progress, current.threads);
    if (current.classes) await setClasses(cpu, current.classes, current.templates, progress);
    if (current.threshold !== undefined) cpu.setThreshold(current.threshold ?? undefined);
    if (current.calibration) cpu.calibrate(current.calibration.scores, current.calibration.tpr);
    adopt(cpu, null);
    progress({ status: 'fallback', device: 'cpu', reason, info: cpu.info() });
    return fn(cpu);
  }
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
  current.classes = classes;
  current.templates = templates;
  return info;
}

/** RGBA pixels of a bitmap, through an OffscreenCanvas. */
function bitmapPixels(bitmap) {
  const { width, height } = bitmap;
  if (width * height > MAX_BROWSER_DECODE_PIXELS) {
    throw new ScorerError(`the image is too large (${width}×${height} pixels)`, 'InputError');
  }
  const ctx = new OffscreenCanvas(width, height).getContext('2d');
  ctx.drawImage(bitmap, 0, 0);
  return { width, height, rgba: new Uint8Array(ctx.getImageData(0, 0, width, height).data.buffer) };
}

/**
 * Whether the browser's decoder may read an image the wasm decoder refused with `error`: an
 * image type the wasm one does not read (AVIF, …), not one it read and found too large.
 * @param {{name: string, message: string}} error
 * @param {string} type
 */
function browserMayDecode(error, type) {
  return error.name === 'InputError' && /^image\//i.test(type) && !WASM_FORMATS.test(type) && !/too large/i.test(error.message)
    && typeof createImageBitmap === 'function' && typeof OffscreenCanvas === 'function';
}

async function classify(msg, progress) {
  const topK = Math.max(1, Math.floor(Number(msg.topK) || 5));
  const image = msg.image ?? {};
  const withDevice = (s, r, decodedBy) => ({ ...r, decodedBy, device: s.device });
  return onGpuFailureUseCpu(progress, async (s) => {
    if (image.kind === 'rgba') {
      return withDevice(s, await s.classifyRgba(image.width, image.height, new Uint8Array(image.rgba), topK), 'browser');
    }
    if (image.kind === 'bitmap') {
      const { width, height, rgba } = bitmapPixels(image.bitmap);
      return withDevice(s, await s.classifyRgba(width, height, rgba, topK), 'browser');
    }
    if (image.kind !== 'encoded' || !(image.bytes instanceof ArrayBuffer)) {
      throw new ScorerError('classify: no image given', 'InputError');
    }
    const bytes = new Uint8Array(image.bytes);
    try {
      return withDevice(s, await s.classifyImage(bytes, topK), 'wasm');
    } catch (e) {
      // A type the wasm decoder does not read (AVIF, …): let the browser decode it.
      const type = String(image.type ?? '');
      if (!browserMayDecode(explain(e), type)) throw e;
      let bitmap;
      try {
        bitmap = await createImageBitmap(new Blob([bytes], { type }));
      } catch {
        throw e; // the wasm decoder's message is the clearer one
      }
      try {
        const { width, height, rgba } = bitmapPixels(bitmap);
        return withDevice(s, await s.classifyRgba(width, height, rgba, topK), 'browser');
      } finally {
        bitmap.close();
      }
    }
  });
}

/**
 * Several images: the encoded ones `batchSize` at a time through one forward pass each
 * (`classifyImages`), then, one at a time through `classify`'s own path, pixels the browser
 * holds and images the wasm decoder could not read (the browser may). One entry per image: a
 * result, or `{error}` for an image that failed alone.
 */
async function classifyMany(msg, progress) {
  const topK = Math.max(1, Math.floor(Number(msg.topK) || 5));
  const batch = Math.max(1, Math.min(64, Math.floor(Number(msg.batchSize) || 8)));
  /** @type {any[]} */
  const images = Array.isArray(msg.images) ? msg.images : [];
  const encodedAt = [];
  images.forEach((im, i) => {
    if (im?.kind === 'encoded' && im.bytes instanceof ArrayBuffer) encodedAt.push(i);
  });
  const batched = await onGpuFailureUseCpu(progress, async (s) =>
    encodedAt.length === 0
      ? []
      : (await s.classifyImages(encodedAt.map((i) => new Uint8Array(images[i].bytes)), topK, batch)).map(
          (/** @type {any} */ r) => (r.error ? r : { ...r, decodedBy: 'wasm', device: s.device }),
        ),
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
      out[i] = await classify({ image: images[i], topK }, progress);
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
    const { bundle } = await convertCheckpoint(wasm, ckpt, msg, progress, keep);
    return bundle;
  } finally {
    if (importing === controller) importing = null;
  }
}
