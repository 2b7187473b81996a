// Bundles by URL, in the worker: downloaded with progress, kept in Cache Storage under a
// versioned name and revalidated against the server's validators (ETag, Last-Modified, length),
// used from the cache when offline. A bundle is cached only after it loaded, so a damaged
// download is never kept.

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

/** Reads a response body with progress reports at most every 100 ms. */
async function readBody(response, total, onProgress) {
  if (!response.body) return new Uint8Array(await response.arrayBuffer());
  const reader = response.body.getReader();
  const chunks = [];
  let loaded = 0;
  let last = 0;
  onProgress({ status: 'download', loaded: 0, total, cached: false });
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.length;
    const now = performance.now();
    if (now - last > 100) {
      last = now;
      onProgress({ status: 'download', loaded, total, cached: false });
    }
  }
  const bytes = new Uint8Array(loaded);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.length;
  }
  onProgress({ status: 'download', loaded, total: total || loaded, cached: false });
  return bytes;
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
      const bytes = new Uint8Array(await hit.arrayBuffer());
      onProgress({ status: 'download', loaded: bytes.length, total: bytes.length, cached: true });
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
  const bytes = await readBody(response, total, onProgress);
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
    await cache.put(fetched.href, new Response(/** @type {BodyInit} */ (/** @type {unknown} */ (fetched.bytes)), { headers }));
  } catch (e) {
    onProgress({ status: 'note', message: `The model could not be cached for next time (${describe(e).message}).` });
  }
}

/** Drops a cached bundle that failed to load. @param {string} href */
export async function forgetBundle(href) {
  const cache = await openCache();
  if (cache) await cache.delete(href).catch(() => {});
}
