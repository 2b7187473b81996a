// Bundles by URL, in the worker: downloaded with progress, kept in Cache Storage under a
// versioned name and revalidated against the server's validators (ETag, Last-Modified, length),
// used from the cache when offline. A bundle is cached only after it loaded, so a damaged
// download is never kept. Its bytes are freed as soon as the model holds its weights
// (`releaseBundle`).

import { ScorerError, describe } from './errors.js';

const CACHE_NAME = 'deltaenergy-bundles-v1';

/** @typedef {import('./types.js').ProgressEvent} ProgressEvent */

/**
 * Refuses a URL the scorer may not fetch: only http(s), and only the page's own origin or one of
 * `allowed` (the Hub's hosts, when the user asks for a Hub import).
 * @param {string} href absolute URL
 * @param {string} pageOrigin
 * @param {string[]} allowed extra origins
 * @returns {URL}
 */
export function checkUrl(href, pageOrigin, allowed = []) {
  let url;
  try {
    url = new URL(href);
  } catch {
    throw new ScorerError(`"${href}" is not a valid URL`, 'InputError');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ScorerError(`cannot load ${url.href}: only http and https URLs`, 'InputError');
  }
  if (url.origin !== pageOrigin && !allowed.includes(url.origin)) {
    throw new ScorerError(`only models from this site (${pageOrigin}) can be loaded; ${url.origin} is another origin`, 'InputError');
  }
  return url;
}

/** A Cache Storage cache, or null where there is none (an opaque origin, a private window). */
export async function openCache(name = CACHE_NAME) {
  try {
    return self.caches ? await self.caches.open(name) : null;
  } catch {
    return null;
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

/**
 * Reads a response body into one buffer of our own, with progress reports at most every 100 ms.
 * Each chunk is copied in as it comes, into a buffer sized by `total` when it is right: the chunks
 * are garbage at once rather than all held to the end, and the result is never a buffer the
 * browser made (one it made, like `arrayBuffer()`'s, is freed only by a full collection, even once
 * `releaseBundle` detached it).
 * @param {Response} response
 * @param {number} total the expected length, 0 when unknown
 * @param {boolean} cached reported with the progress
 * @param {(p: ProgressEvent) => void} onProgress
 */
async function readBody(response, total, cached, onProgress) {
  if (!response.body) return new Uint8Array(0);
  const reader = /** @type {ReadableStream<Uint8Array>} */ (response.body).getReader();
  let bytes = new Uint8Array(total);
  let loaded = 0;
  let last = 0;
  onProgress({ status: 'download', loaded: 0, total, cached });
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (loaded + value.length > bytes.length) {
      const grown = new Uint8Array(Math.max(loaded + value.length, 2 * bytes.length));
      grown.set(bytes.subarray(0, loaded));
      bytes = grown;
    }
    bytes.set(value, loaded);
    loaded += value.length;
    const now = performance.now();
    if (now - last > 100) {
      last = now;
      onProgress({ status: 'download', loaded, total, cached });
    }
  }
  onProgress({ status: 'download', loaded, total: total || loaded, cached });
  return loaded === bytes.length ? bytes : bytes.slice(0, loaded);
}

/**
 * @typedef {object} Fetched
 * @property {Uint8Array} bytes
 * @property {string} href
 * @property {boolean} cached whether it came from Cache Storage
 * @property {Record<string, string> | null} validators what to store beside a fresh download
 */

/**
 * The bundle at `url`: from Cache Storage when still fresh, else downloaded.
 * @param {URL} url checked with `checkUrl`
 * @param {(p: ProgressEvent) => void} onProgress
 * @returns {Promise<Fetched>}
 */
export async function fetchBundle(url, onProgress) {
  const href = url.href;
  const cache = await openCache();
  const hit = cache ? await cache.match(href).catch(() => undefined) : undefined;
  if (cache && hit) {
    onProgress({ status: 'check' });
    if (await cachedIsFresh(href, hit)) {
      const bytes = await readBody(hit, Number(hit.headers.get('x-bundle-length')) || 0, true, onProgress);
      return { bytes, href, cached: true, validators: null };
    }
    await cache.delete(href).catch(() => {});
  }
  let response;
  try {
    response = await fetch(href, { cache: 'no-cache' });
  } catch (e) {
    throw new ScorerError(`could not download ${href}: ${describe(e).message}`, 'IoError');
  }
  if (!response.ok) {
    const text = response.statusText ? ` ${response.statusText}` : '';
    throw new ScorerError(`could not download ${href}: HTTP ${response.status}${text}`, 'IoError');
  }
  const total = Number(response.headers.get('content-length')) || 0;
  const validators = {
    'x-bundle-etag': response.headers.get('etag') ?? '',
    'x-bundle-last-modified': response.headers.get('last-modified') ?? '',
  };
  const bytes = await readBody(response, total, false, onProgress);
  validators['x-bundle-length'] = String(bytes.length);
  return { bytes, href, cached: false, validators };
}

/**
 * Keeps a bundle that loaded fine; says so through `onProgress` when it cannot.
 * @param {Fetched} fetched
 * @param {(p: ProgressEvent) => void} onProgress
 */
export async function keepBundle(fetched, onProgress) {
  if (fetched.cached || !fetched.validators) return;
  const cache = await openCache();
  if (!cache) return;
  try {
    const headers = { 'content-type': 'application/octet-stream', ...fetched.validators };
    await cache.put(fetched.href, new Response(slices(fetched.bytes), { headers }));
  } catch (e) {
    onProgress({ status: 'note', message: `The model could not be cached for next time (${describe(e).message}).` });
  }
}

/**
 * `bytes` as a stream of 4 MiB copies. A `Response` made from the bytes themselves holds a copy
 * of them, which, like any large buffer, stays resident until a full collection (the whole bundle
 * again while the page scores); views of the bytes instead let the browser wrap the buffer, which
 * it then held as long. Copies this small are freed by the collections that allocations start.
 * @param {Uint8Array} bytes
 */
function slices(bytes, size = 4 << 20) {
  let at = 0;
  return new ReadableStream({
    pull(controller) {
      if (at >= bytes.length) return controller.close();
      controller.enqueue(bytes.slice(at, at + size));
      at += size;
    },
  });
}

/** Drops a cached bundle that failed to load. @param {string} href */
export async function forgetBundle(href) {
  const cache = await openCache();
  if (cache) await cache.delete(href).catch(() => {});
}

/**
 * Frees a bundle's bytes now, once nothing will read them again. V8 frees a large buffer only in a
 * full collection, which a worker that spends its time in wasm may not run for minutes: a dead
 * bundle (162 MB for ViT-B/32 q8) stayed resident while the page scored. Detaching the buffer
 * (`ArrayBuffer.prototype.transfer`, Chrome 114, Firefox 122, Safari 17.4) frees it at once;
 * where there is no `transfer` it waits for the collector as before.
 * @param {Uint8Array | undefined} bytes a view on a buffer this worker owns alone
 */
export function releaseBundle(bytes) {
  const buffer = /** @type {any} */ (bytes?.buffer);
  if (buffer && !buffer.detached && typeof buffer.transfer === 'function') buffer.transfer(0);
}
