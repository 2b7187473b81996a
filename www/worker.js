// The model worker (a module worker). ALL model work happens here, so the page stays responsive:
// loading the wasm, downloading and caching bundles, loading them, warming up, classifying.
//
// Protocol. The page sends {id, op, ...}; every request gets exactly one final answer:
//   {id, kind: 'ok', value}  or  {id, kind: 'error', error: {name, message, fatal}}
// and, while it runs, any number of {id, kind: 'progress', phase, loaded?, total?, text?}.
// Unsolicited messages: {kind: 'boot', ok, version?, error?} once at start, and
// {kind: 'backend', backend, backendReason, reason, info} when the worker falls back to the CPU.
// Requests run one at a time, in order (the scorer is never used by two calls at once).
//
// ops: load {source: {kind: 'url', url} | {kind: 'bytes', buffer, name}, backend}
//      classify {name, type, buffer, topK}
//      setClasses {classes}
//      setThreshold {value}

const CACHE_NAME = 'deltaenergy-bundles-v1';
const MAX_BROWSER_DECODE_PIXELS = 40_000_000;

let wasm = null;
let bootError = null;

// wasm-bindgen's panic hook writes the panic message with console.error just before the trap;
// keep the last one so a crash reaches the page with its reason, not just "unreachable".
let lastConsoleError = { text: '', at: 0 };
const consoleError = console.error.bind(console);
console.error = (...args) => {
  lastConsoleError = { text: args.map((a) => (a instanceof Error ? a.message : String(a))).join(' '), at: Date.now() };
  consoleError(...args);
};

const state = {
  scorer: null,
  backend: null,
  backendReason: '',
  requested: 'auto',
  bytes: null, // the current bundle's bytes, kept while on WebGPU for a CPU fallback
  classes: null, // classes set by the user (re-applied after a fallback)
  threshold: null, // threshold set by the user (re-applied after a fallback)
};

function post(message, transfer) {
  self.postMessage(message, transfer ?? []);
}

function progress(id, data) {
  post({ id, kind: 'progress', ...data });
}

/** Turns whatever was thrown into {name, message, fatal}. */
function describe(e) {
  let name = 'Error';
  let message;
  if (e instanceof Error) {
    name = e.name || 'Error';
    message = e.message;
  } else if (typeof e === 'string') {
    message = e;
  } else if (e && typeof e === 'object' && 'message' in e) {
    message = String(e.message);
  } else {
    message = String(e);
  }
  if (!message) message = name;
  // A trap in the wasm (a Rust panic): the module may be in a broken state now.
  const fatal = e instanceof WebAssembly.RuntimeError;
  if (fatal) {
    const recent = Date.now() - lastConsoleError.at < 10_000 ? lastConsoleError.text : '';
    const panic = recent.split(/\n\s*Stack:/)[0].replace(/\s+/g, ' ').trim();
    if (panic) message = `${panic} (${message})`;
  }
  return { name, message, fatal };
}

/** Plain, cloneable data (Maps become objects, typed arrays become arrays). */
function plain(v) {
  if (v instanceof Map) {
    const o = {};
    for (const [k, x] of v) o[k] = plain(x);
    return o;
  }
  if (Array.isArray(v)) return v.map(plain);
  if (ArrayBuffer.isView(v)) return Array.from(v);
  if (typeof v === 'bigint') return Number(v);
  if (v && typeof v === 'object') {
    const o = {};
    for (const k of Object.keys(v)) o[k] = plain(v[k]);
    return o;
  }
  return v;
}

const booted = (async () => {
  try {
    wasm = await import('./pkg/deltaenergy.js');
    await wasm.default();
    let version = null;
    try {
      version = typeof wasm.version === 'function' ? wasm.version() : null;
    } catch {
      /* optional */
    }
    post({ kind: 'boot', ok: true, version });
  } catch (e) {
    wasm = null;
    bootError =
      `Could not start the scorer: loading pkg/deltaenergy.js and its .wasm failed ` +
      `(${describe(e).message}). Build it with "make web".`;
    post({ kind: 'boot', ok: false, error: { name: 'BootError', message: bootError, fatal: false } });
  }
})();

// One request at a time, in arrival order.
let chain = Promise.resolve();
function enqueue(task) {
  const run = chain.then(task);
  chain = run.catch(() => {});
  return run;
}

self.onmessage = (event) => {
  const msg = event.data ?? {};
  const { id, op } = msg;
  enqueue(async () => {
    await booted;
    if (!wasm) throw new Error(bootError);
    switch (op) {
      case 'load':
        return opLoad(id, msg);
      case 'classify':
        return opClassify(id, msg);
      case 'setClasses':
        return opSetClasses(id, msg);
      case 'setThreshold':
        return opSetThreshold(msg);
      default:
        throw new Error(`unknown request "${op}"`);
    }
  }).then(
    (value) => post({ id, kind: 'ok', value }),
    (e) => post({ id, kind: 'error', error: describe(e) }),
  );
};

// ---------------------------------------------------------------- bundles: download and cache

async function openCache() {
  try {
    return self.caches ? await self.caches.open(CACHE_NAME) : null;
  } catch {
    return null; // no Cache Storage (e.g. an opaque origin): just download
  }
}

/** Whether the cached copy still matches the server's file (offline: yes). */
async function cachedIsFresh(href, cached) {
  let head;
  try {
    head = await fetch(href, { method: 'HEAD', cache: 'no-store' });
  } catch {
    return true; // offline or server gone: the cached copy is what we have
  }
  if (!head.ok) return false;
  const etag = head.headers.get('etag');
  const modified = head.headers.get('last-modified');
  const length = head.headers.get('content-length');
  const cachedEtag = cached.headers.get('x-bundle-etag');
  const cachedModified = cached.headers.get('x-bundle-last-modified');
  const cachedLength = cached.headers.get('x-bundle-length');
  if (etag && cachedEtag) return etag === cachedEtag;
  if (length && cachedLength && length !== cachedLength) return false;
  if (modified && cachedModified) return modified === cachedModified;
  return Boolean(length && cachedLength);
}

/** Bytes of the bundle at `url`, from Cache Storage when fresh, else downloaded with progress. */
async function fetchBundle(id, url) {
  const abs = new URL(url, self.location.href);
  if (abs.origin !== self.location.origin) {
    throw new Error(`only same-origin bundle URLs can be loaded (${abs.origin} is not ${self.location.origin})`);
  }
  if (abs.protocol !== 'http:' && abs.protocol !== 'https:') throw new Error(`cannot load ${abs.href}`);
  const href = abs.href;
  const cache = await openCache();
  if (cache) {
    const hit = await cache.match(href).catch(() => undefined);
    if (hit) {
      progress(id, { phase: 'check', text: 'Checking the cached model' });
      if (await cachedIsFresh(href, hit)) {
        const bytes = new Uint8Array(await hit.arrayBuffer());
        progress(id, { phase: 'download', loaded: bytes.length, total: bytes.length, cached: true });
        return { bytes, href, cached: true, validators: null };
      }
      await cache.delete(href).catch(() => {});
    }
  }
  let response;
  try {
    response = await fetch(href, { cache: 'no-cache' });
  } catch (e) {
    throw new Error(`could not download ${url}: ${describe(e).message}`);
  }
  if (!response.ok) {
    throw new Error(`could not download ${url}: HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ''}`);
  }
  const total = Number(response.headers.get('content-length')) || 0;
  const validators = {
    'x-bundle-etag': response.headers.get('etag') ?? '',
    'x-bundle-last-modified': response.headers.get('last-modified') ?? '',
  };
  let bytes;
  if (!response.body) {
    bytes = new Uint8Array(await response.arrayBuffer());
  } else {
    const reader = response.body.getReader();
    const chunks = [];
    let loaded = 0;
    let buffer = total > 0 ? new Uint8Array(total) : null;
    let lastReport = 0;
    progress(id, { phase: 'download', loaded: 0, total });
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (buffer && loaded + value.length <= buffer.length) {
        buffer.set(value, loaded);
      } else {
        if (buffer) {
          chunks.push(buffer.subarray(0, loaded)); // more than announced: fall back to chunks
          buffer = null;
        }
        chunks.push(value);
      }
      loaded += value.length;
      const now = performance.now();
      if (now - lastReport > 100) {
        lastReport = now;
        progress(id, { phase: 'download', loaded, total });
      }
    }
    if (buffer) {
      bytes = loaded === buffer.length ? buffer : buffer.subarray(0, loaded);
    } else {
      bytes = new Uint8Array(loaded);
      let at = 0;
      for (const c of chunks) {
        bytes.set(c, at);
        at += c.length;
      }
    }
    progress(id, { phase: 'download', loaded, total: total || loaded });
  }
  validators['x-bundle-length'] = String(bytes.length);
  return { bytes, href, cached: false, validators };
}

/** Stores a bundle that loaded fine (a damaged one is never cached). */
async function cacheBundle(id, fetched) {
  if (fetched.cached || !fetched.validators) return;
  const cache = await openCache();
  if (!cache) return;
  try {
    const headers = { 'content-type': 'application/octet-stream', ...fetched.validators };
    await cache.put(fetched.href, new Response(fetched.bytes, { headers }));
  } catch (e) {
    progress(id, { phase: 'note', text: `The model could not be cached for next time (${describe(e).message}).` });
  }
}

async function forgetCached(href) {
  const cache = await openCache();
  if (cache) await cache.delete(href).catch(() => {});
}

// ---------------------------------------------------------------- scorer

function requireScorer() {
  if (!state.scorer) throw new Error('no model is loaded yet');
  return state.scorer;
}

function isGpuError(e) {
  if (state.backend !== 'webgpu') return false;
  const { name, message } = describe(e);
  if (name === 'DeviceError') return true;
  return /device[\s_-]*(was\s+|is\s+)?lost|lost[\s_-]*device|\bgpu\b|webgpu|wgpu|adapter|out of memory|outofmemory|validation error/i.test(
    message,
  );
}

/** Loads + warms up a scorer; frees it again if the warm-up fails. */
async function loadScorer(id, bytes, backend) {
  progress(id, { phase: 'load', text: 'Loading the model' });
  const t0 = performance.now();
  const scorer = await wasm.Scorer.load(bytes, backend);
  const loadMs = performance.now() - t0;
  try {
    progress(id, { phase: 'warmup', text: `Warming up (${scorer.backend})` });
    const warmUpMs = await scorer.warmUp();
    return { scorer, loadMs, warmUpMs };
  } catch (e) {
    try {
      scorer.free();
    } catch {
      /* already gone */
    }
    throw e;
  }
}

function adopt(loaded, bytes) {
  const { scorer } = loaded;
  if (state.scorer && state.scorer !== scorer) {
    try {
      state.scorer.free();
    } catch {
      /* already gone */
    }
  }
  state.scorer = scorer;
  state.backend = scorer.backend;
  state.backendReason = scorer.backendReason;
  // Only a WebGPU scorer may need the bytes again (to fall back to the CPU).
  state.bytes = scorer.backend === 'webgpu' ? bytes : null;
}

function summary(extra = {}) {
  return {
    backend: state.backend,
    backendReason: state.backendReason,
    info: plain(state.scorer.info()),
    ...extra,
  };
}

async function opLoad(id, msg) {
  const backend = msg.backend ?? 'auto';
  const source = msg.source ?? {};
  let fetched = null;
  let bytes;
  if (source.kind === 'url') {
    fetched = await fetchBundle(id, String(source.url ?? ''));
    bytes = fetched.bytes;
  } else if (source.kind === 'bytes' && source.buffer instanceof ArrayBuffer) {
    bytes = new Uint8Array(source.buffer);
  } else {
    throw new Error('load: no bundle given');
  }
  let loaded;
  let fellBack = null;
  try {
    loaded = await loadScorer(id, bytes, backend);
  } catch (e) {
    if (fetched?.cached) await forgetCached(fetched.href);
    // WebGPU came up but could not run the model: try the CPU before giving up.
    const failure = describe(e);
    const gpuFailure = failure.name === 'DeviceError' || /gpu|adapter|device|shader/i.test(failure.message);
    if (backend !== 'cpu' && !failure.fatal && gpuFailure) {
      fellBack = `WebGPU failed while loading (${describe(e).message}); using the CPU`;
      loaded = await loadScorer(id, bytes, 'cpu');
    } else {
      throw e;
    }
  }
  adopt(loaded, bytes);
  if (fellBack) state.backendReason = `${fellBack}. ${state.backendReason}`;
  state.requested = backend;
  state.classes = null;
  state.threshold = null;
  if (fetched) await cacheBundle(id, fetched);
  return summary({
    loadMs: loaded.loadMs,
    warmUpMs: loaded.warmUpMs,
    cached: Boolean(fetched?.cached),
    fallback: fellBack,
  });
}

/** Runs `fn(scorer)`; if WebGPU fails underneath, reloads the same bytes on the CPU and retries once. */
async function withGpuFallback(id, fn) {
  const scorer = requireScorer();
  try {
    return await fn(scorer);
  } catch (e) {
    if (describe(e).fatal || !isGpuError(e) || !state.bytes) throw e;
    const reason = `WebGPU failed (${describe(e).message}); the model was reloaded on the CPU`;
    progress(id, { phase: 'fallback', text: reason });
    const loaded = await loadScorer(id, state.bytes, 'cpu');
    if (state.classes) await loaded.scorer.setClasses(state.classes);
    if (state.threshold !== null) loaded.scorer.setThreshold(state.threshold);
    adopt(loaded, null);
    state.backendReason = `${reason}. ${state.backendReason}`;
    post({ kind: 'backend', backend: state.backend, backendReason: state.backendReason, reason, info: plain(loaded.scorer.info()) });
    return fn(state.scorer);
  }
}

const WASM_FORMATS = /^image\/(jpeg|jpg|pjpeg|png|apng|webp|gif|bmp|x-ms-bmp)$/i;

/** For image types the wasm decoder does not read (AVIF, ...): decode with the browser, send RGBA. */
async function classifyWithBrowserDecoder(scorer, bytes, type, topK) {
  const bitmap = await createImageBitmap(new Blob([bytes], { type }));
  try {
    const { width, height } = bitmap;
    if (width * height > MAX_BROWSER_DECODE_PIXELS) {
      throw new Error(`image too large (${width}×${height} pixels)`);
    }
    const canvas = new OffscreenCanvas(width, height);
    const ctx = canvas.getContext('2d');
    ctx.drawImage(bitmap, 0, 0);
    const rgba = new Uint8Array(ctx.getImageData(0, 0, width, height).data.buffer);
    const result = plain(await scorer.classifyRgba(width, height, rgba, topK));
    result.decodedBy = 'browser';
    return result;
  } finally {
    bitmap.close();
  }
}

async function opClassify(id, msg) {
  if (!(msg.buffer instanceof ArrayBuffer)) throw new Error('classify: no image bytes');
  const bytes = new Uint8Array(msg.buffer);
  const topK = Math.max(1, Math.floor(Number(msg.topK) || 5));
  const type = String(msg.type ?? '');
  return withGpuFallback(id, async (scorer) => {
    try {
      return plain(await scorer.classifyImage(bytes, topK));
    } catch (e) {
      const d = describe(e);
      const browserMayDecode =
        !d.fatal && !isGpuError(e) && /^image\//i.test(type) && !WASM_FORMATS.test(type) && !/too large|dimension/i.test(d.message);
      if (!browserMayDecode || typeof createImageBitmap !== 'function' || typeof OffscreenCanvas !== 'function') throw e;
      try {
        return await classifyWithBrowserDecoder(scorer, bytes, type, topK);
      } catch {
        throw e; // the original message is the clearer one
      }
    }
  });
}

async function opSetClasses(id, msg) {
  const classes = Array.isArray(msg.classes) ? msg.classes.map(String) : [];
  if (classes.length === 0) throw new Error('the class list is empty: enter at least one class name');
  progress(id, { phase: 'classes', text: `Computing text features for ${classes.length} classes` });
  return withGpuFallback(id, async (scorer) => {
    const t0 = performance.now();
    await scorer.setClasses(classes);
    state.classes = classes;
    return summary({ ms: performance.now() - t0 });
  });
}

function opSetThreshold(msg) {
  const value = Number(msg.value);
  if (!Number.isFinite(value)) throw new Error('the threshold must be a number');
  requireScorer().setThreshold(value);
  state.threshold = value;
  return { value };
}
