// The worker's store of what took long to make: bundles converted from checkpoints, and class
// text features (the text tower over many classes and templates). Both live in Cache Storage
// under synthetic URLs of the page's own origin (never fetched), so a second visit needs no
// network and no conversion. A bundle is stored only whole, after its conversion finished; text
// features are stored under the bundle's checksum, and go when that bundle is deleted.

import { openCache } from './bundles.js';
import { describe } from './errors.js';

const CACHE_NAME = 'deltaenergy-models-v1';
const PREFIX = '/.deltaenergy-cache/';
const META = 'x-deltaenergy-meta';
// Text features are kept when the text tower ran for at least this many prompts; fewer take
// less time to compute than to look up.
const TEXT_MIN_PROMPTS = 200;
const STORE_SLICE = 4 << 20;

/** @typedef {import('./types.js').CachedModel} CachedModel */

/** Without Cache Storage nothing is kept. */
const open = () => openCache(CACHE_NAME);

const url = (kind, id) => new URL(`${PREFIX}${kind}/${encodeURIComponent(id)}`, self.location.origin).href;

const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');

/**
 * The cache's key for a converted checkpoint: the Hub's base URL, repository and the commit the
 * revision pointed to (so a moved branch imports again, and an unchanged one is found with one
 * request), or the checkpoint's hash for files; and the precision.
 */
export function modelId(source, quant, checkpointSha256 = '') {
  return source.kind === 'hub'
    ? `hub ${source.base} ${source.repo}@${source.commit} ${quant}`
    : `files ${checkpointSha256} ${quant}`;
}

/** The cache's key for a tuned bundle: its checksum (the 32 bytes of its header's). */
export const tunedModelId = (sha256) => `tuned ${hex(sha256)}`;

/** @returns {Promise<{bytes: Uint8Array, meta: CachedModel} | null>} */
export async function findModel(id) {
  const cache = await open();
  const hit = cache && (await cache.match(url('models', id)).catch(() => undefined));
  if (!hit) return null;
  return { bytes: new Uint8Array(await hit.arrayBuffer()), meta: JSON.parse(decodeURIComponent(hit.headers.get(META) ?? '{}')) };
}

/**
 * A finished bundle, read in slices (`convert` hands one over before the bundle is whole in
 * JavaScript memory).
 * @typedef {object} BundleReader
 * @property {number} length
 * @property {Uint8Array} sha256 the 32 bytes of its checksum (header bytes 16..48, see
 *   src/bundle/mod.rs)
 * @property {(start: number, end: number) => Uint8Array<ArrayBuffer>} read a copy of bytes start..end
 * @property {string} checkpointSha256
 */

/**
 * Keeps a converted bundle; a failure to keep it (quota) is told through `note`, not thrown.
 * @param {string} id from `modelId`
 * @param {BundleReader} bundle
 * @param {Omit<CachedModel, 'id' | 'bytes' | 'sha256' | 'saved' | 'checkpointSha256'>} meta
 * @param {(message: string) => void} note
 */
export async function keepModel(id, bundle, meta, note) {
  const cache = await open();
  if (!cache) return;
  /** @type {CachedModel} */
  const full = { ...meta, id, bytes: bundle.length, sha256: hex(bundle.sha256), checkpointSha256: bundle.checkpointSha256, saved: Date.now() };
  try {
    const headers = { 'content-type': 'application/octet-stream', [META]: encodeURIComponent(JSON.stringify(full)) };
    // Streamed in slices: a whole-buffer body would be copied at once into the storage
    // process, another bundle's worth of memory at the import's peak.
    let at = 0;
    const body = new ReadableStream({
      type: 'bytes',
      pull(controller) {
        const end = Math.min(at + STORE_SLICE, bundle.length);
        controller.enqueue(bundle.read(at, end));
        at = end;
        if (at >= bundle.length) controller.close();
      },
    });
    await cache.put(url('models', id), new Response(body, { headers }));
  } catch (e) {
    note(`The converted model could not be kept for next time (${describe(e).message}).`);
  }
}

/**
 * The newest model kept from this revision of a Hub repository at this precision (what an
 * import falls back to when the Hub cannot say which commit the revision is now).
 * @param {{base: string, repo: string, revision: string}} where
 * @returns {Promise<{bytes: Uint8Array, meta: CachedModel} | null>}
 */
export async function findSavedHubModel({ base, repo, revision }, quant) {
  const newest = (await listModels()).find((m) => m.base === base && m.repo === repo && m.revision === revision && m.quant === quant);
  return newest ? findModel(newest.id) : null;
}

/** Every kept model, newest first. @returns {Promise<CachedModel[]>} */
export async function listModels() {
  const cache = await open();
  if (!cache) return [];
  const out = [];
  for (const request of await cache.keys()) {
    if (!new URL(request.url).pathname.startsWith(`${PREFIX}models/`)) continue;
    const hit = await cache.match(request);
    const meta = hit?.headers.get(META);
    if (meta) out.push(JSON.parse(decodeURIComponent(meta)));
  }
  return out.sort((a, b) => b.saved - a.saved);
}

/** Deletes a kept model and the text features made for it; resolves to whether it was there. */
export async function deleteModel(id) {
  const cache = await open();
  if (!cache) return false;
  const hit = await cache.match(url('models', id));
  if (!hit) return false;
  const { sha256 } = JSON.parse(decodeURIComponent(hit.headers.get(META) ?? '{}'));
  await cache.delete(url('models', id));
  if (sha256) {
    const texts = `${PREFIX}text/${encodeURIComponent(`${sha256} `)}`;
    for (const request of await cache.keys()) {
      if (new URL(request.url).pathname.startsWith(texts)) await cache.delete(request);
    }
  }
  return true;
}

async function textId(bundleSha, classes, templates) {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(JSON.stringify([classes, templates ?? null])));
  return `${bundleSha} ${hex(new Uint8Array(digest))}`;
}

/** Text features kept for these classes and templates of this bundle, or null. */
export async function findText(bundleSha, classes, templates) {
  const cache = await open();
  if (!cache || !self.crypto?.subtle) return null;
  const hit = await cache.match(url('text', await textId(bundleSha, classes, templates))).catch(() => undefined);
  return hit ? new Float32Array(await hit.arrayBuffer()) : null;
}

/** Keeps text features that took a while to make (see TEXT_MIN_PROMPTS). */
export async function keepText(bundleSha, classes, templates, prompts, features) {
  if (prompts < TEXT_MIN_PROMPTS) return;
  const cache = await open();
  if (!cache || !self.crypto?.subtle) return;
  const body = new Uint8Array(features.buffer, features.byteOffset, features.byteLength);
  await cache.put(url('text', await textId(bundleSha, classes, templates)), new Response(/** @type {BodyInit} */ (/** @type {unknown} */ (body)))).catch(() => {});
}
