// Hugging Face checkpoints in the worker, from the user's files or from the Hub, converted into
// a bundle one tensor at a time (web.rs, Import). Both sources are read the same way: the
// config and tokenizer whole (small), `model.safetensors` by byte ranges (`Blob.slice`, or HTTP
// Range requests), so the checkpoint is never whole in memory.

import { ScorerError, describe } from './errors.js';

/**
 * @typedef {object} CheckpointReader
 * @property {string} config `config.json`'s text
 * @property {Uint8Array} tokenizer `tokenizer.json` or `merges.txt`
 * @property {'tokenizer.json' | 'merges.txt'} tokenizerKind
 * @property {number} size `model.safetensors`'s size in bytes
 * @property {(start: number, end: number) => Promise<Uint8Array>} range its bytes start..end
 * @property {string} source where it came from, for the bundle's provenance
 * @property {string} name a short name for people (the weights file's, or repo@revision)
 * @property {string} [etag] the Hub's ETag of `model.safetensors` (its SHA-256 for LFS files)
 */

/** @returns {Promise<CheckpointReader>} */
export async function fromFiles({ config, weights, tokenizer, tokenizerKind }) {
  if (!(config instanceof Blob) || !(weights instanceof Blob) || !(tokenizer instanceof Blob)) {
    throw new ScorerError('import: config.json, model.safetensors and a tokenizer file are needed', 'InputError');
  }
  return {
    config: await config.text(),
    tokenizer: new Uint8Array(await tokenizer.arrayBuffer()),
    tokenizerKind,
    size: weights.size,
    range: (start, end) => weights.slice(start, end).arrayBuffer().then((b) => new Uint8Array(b)),
    source: `files: ${weights instanceof File ? weights.name : 'model.safetensors'}`,
    // A folder's name when the user picked one, else the weights file's.
    name: (weights instanceof File && (weights.webkitRelativePath.split('/')[0] || weights.name)) || 'model.safetensors',
  };
}

/** A Hub file's URL: {base}/{repo}/resolve/{revision}/{file}, as the Hub lays them out. */
export function hubUrl(base, repo, revision, file) {
  const b = String(base).replace(/\/+$/, '');
  return `${b}/${repo.split('/').map(encodeURIComponent).join('/')}/resolve/${encodeURIComponent(revision)}/${file}`;
}

/** What a failed Hub request means, for people. */
function hubError(file, repo, response) {
  const s = response.status;
  const why =
    s === 401 || s === 403
      ? 'the repository is gated or private (accept its terms on the Hub, then import the files you download)'
      : s === 404
        ? `${repo} has no ${file} at this revision (is it a CLIP repository, and is the name right?)`
        : `HTTP ${s}${response.statusText ? ` ${response.statusText}` : ''}`;
  return new ScorerError(`could not fetch ${file} from the Hub: ${why}`, s === 404 ? 'InputError' : 'IoError');
}

async function hubFetch(url, file, repo, init, signal) {
  let response;
  try {
    response = await fetch(url, { ...init, signal, cache: 'no-store' });
  } catch (e) {
    if (signal?.aborted) throw new ScorerError('the import was cancelled', 'InputError');
    throw new ScorerError(`could not reach the Hub for ${file} (${describe(e).message}): is the network down, or the Hub's address wrong?`, 'IoError');
  }
  if (!response.ok) throw hubError(file, repo, response);
  return response;
}

/**
 * A checkpoint on the Hub (or a mirror with its URL layout), read by Range requests; redirects
 * (large files live on another host) are followed by the browser.
 * @returns {Promise<CheckpointReader>}
 */
export async function fromHub({ base, repo, revision = 'main' }, signal) {
  if (!/^[\w.-]+\/[\w.-]+$/.test(repo ?? '')) {
    throw new ScorerError(`"${repo}" is not a Hub repository id (like openai/clip-vit-base-patch32)`, 'InputError');
  }
  const url = (file) => hubUrl(base, repo, revision, file);
  const config = await (await hubFetch(url('config.json'), 'config.json', repo, {}, signal)).text();
  let tokenizer;
  /** @type {'tokenizer.json' | 'merges.txt'} */
  let tokenizerKind = 'tokenizer.json';
  try {
    tokenizer = await hubFetch(url('tokenizer.json'), 'tokenizer.json', repo, {}, signal);
  } catch (e) {
    if (e.name !== 'InputError' || signal?.aborted) throw e;
    tokenizer = await hubFetch(url('merges.txt'), 'merges.txt', repo, {}, signal);
    tokenizerKind = 'merges.txt';
  }
  const tokenizerBytes = new Uint8Array(await tokenizer.arrayBuffer());
  const weightsUrl = url('model.safetensors');
  const range = async (start, end) => {
    const r = await hubFetch(weightsUrl, 'model.safetensors', repo, { headers: { Range: `bytes=${start}-${end - 1}` } }, signal);
    const bytes = new Uint8Array(await r.arrayBuffer());
    if (r.status !== 206 && !(start === 0 && bytes.length === end)) {
      throw new ScorerError('the Hub answered a byte range with the whole file (no Range support); import the files instead', 'IoError');
    }
    if (bytes.length !== end - start) {
      throw new ScorerError(`model.safetensors: got ${bytes.length} bytes of ${end - start} (the connection dropped?)`, 'IoError');
    }
    return bytes;
  };
  // The first 8 bytes, and from Content-Range the file's size.
  const first = await hubFetch(weightsUrl, 'model.safetensors', repo, { headers: { Range: 'bytes=0-7' } }, signal);
  const total = Number(/\/(\d+)\s*$/.exec(first.headers.get('content-range') ?? '')?.[1]);
  const etag = (first.headers.get('etag') ?? '').replace(/^W\//, '').replace(/"/g, '');
  await first.arrayBuffer();
  if (!Number.isFinite(total) || total <= 0) {
    throw new ScorerError('the Hub did not say how large model.safetensors is (no Content-Range)', 'IoError');
  }
  return { config, tokenizer: tokenizerBytes, tokenizerKind, size: total, range, source: `hub: ${repo}@${revision}`, name: `${repo}@${revision}`, etag };
}

/**
 * Converts a checkpoint into bundle bytes, and says which checkpoint bytes it read (their
 * SHA-256: the checkpoint's identity in the cache of converted models).
 * @param {any} wasm the wasm-bindgen module
 * @param {CheckpointReader} ckpt
 * @param {{quant?: string, classes?: string[]}} options
 * @param {(e: import('./types.js').ProgressEvent) => void} progress
 * @param {((b: import('./models.js').BundleReader) => Promise<void>) | null} [keep] called with
 *   the finished bundle before it is copied out (the cache of converted models)
 * @returns {Promise<{bundle: Uint8Array, checkpointSha256: string}>}
 */
export async function convert(wasm, ckpt, { quant = 'q8', classes = [] }, progress, keep = null) {
  const prefixLen = wasm.Import.prefixLength(await ckpt.range(0, 8), ckpt.size);
  const job = new wasm.Import(ckpt.config, await ckpt.range(0, prefixLen), ckpt.size, ckpt.tokenizer, ckpt.tokenizerKind, quant, classes, ckpt.source);
  try {
    let loaded = prefixLen;
    let last = 0;
    for (let next = job.next(); next; next = job.next()) {
      const bytes = await ckpt.range(next.start, next.end);
      job.push(bytes);
      loaded += bytes.length;
      const now = performance.now();
      if (now - last > 100 || next.index + 1 === next.count) {
        last = now;
        progress({ status: 'import', loaded, total: ckpt.size, tensor: next.index + 1, tensors: next.count });
      }
    }
    const head = job.finish();
    const length = head.length + job.dataLength();
    const checkpointSha256 = job.checkpointSha256();
    // Kept first, read slice by slice out of the wasm memory, so the page never holds a
    // second whole copy while the cache stores it.
    const read = (start, end) => {
      const a = Math.min(end, head.length);
      if (start >= head.length) return job.dataSlice(start - head.length, end - head.length);
      const part = new Uint8Array(end - start);
      part.set(head.subarray(start, a));
      if (end > head.length) part.set(job.dataSlice(0, end - head.length), a - start);
      return part;
    };
    if (keep) await keep({ length, sha256: head.subarray(16, 48), read, checkpointSha256 });
    // The bundle assembled in one buffer, its data copied once out of the wasm memory.
    const bundle = new Uint8Array(length);
    bundle.set(head);
    job.copyDataInto(bundle, head.length);
    return { bundle, checkpointSha256 };
  } finally {
    job.free();
  }
}
