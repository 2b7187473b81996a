// Hugging Face checkpoints in the worker, from the user's files or from the Hub, converted into
// a bundle one tensor at a time (src/web/import.rs). Both sources are read the same way: the
// config and tokenizer whole (small), the weights (`model.safetensors` or `pytorch_model.bin`)
// by the byte ranges the converter asks for (`Blob.slice`, or HTTP Range requests), so the
// checkpoint is never whole in memory.

import { ScorerError } from './errors.js';
import { chooseWeights, hubFetch, hubUrl, rangeReader } from './hub.js';

/**
 * @typedef {object} CheckpointReader
 * @property {string} config `config.json`'s text
 * @property {Uint8Array} tokenizer `tokenizer.json` or `merges.txt`
 * @property {'tokenizer.json' | 'merges.txt'} tokenizerKind
 * @property {number} size the weights file's size in bytes
 * @property {(start: number, end: number) => Promise<Uint8Array>} range its bytes start..end
 * @property {string} source where it came from, for the bundle's provenance
 * @property {string} name a short name for people (the weights file's, or repo@revision)
 * @property {string} [file] the weights file's name, when known
 */

/** @returns {Promise<CheckpointReader>} */
export async function fromFiles({ config, weights, tokenizer, tokenizerKind }) {
  if (!(config instanceof Blob) || !(weights instanceof Blob) || !(tokenizer instanceof Blob)) {
    throw new ScorerError('import: config.json, the weights (model.safetensors or pytorch_model.bin) and a tokenizer file are needed', 'InputError');
  }
  const file = weights instanceof File ? weights.name : 'the weights';
  return {
    config: await config.text(),
    tokenizer: new Uint8Array(await tokenizer.arrayBuffer()),
    tokenizerKind,
    size: weights.size,
    range: (start, end) => weights.slice(start, end).arrayBuffer().then((b) => new Uint8Array(b)),
    source: `files: ${file}`,
    file,
    // A folder's name when the user picked one, else the weights file's.
    name: (weights instanceof File && (weights.webkitRelativePath.split('/')[0] || weights.name)) || file,
  };
}

/**
 * A checkpoint on the Hub (or a mirror that answers as it does) at a known commit: the config
 * and tokenizer of that commit, and the weights transformers would read (`chooseWeights`),
 * by Range requests. Says which file it reads through `progress`.
 * @param {{base: string, repo: string, revision: string}} where
 * @param {{commit: string, files: string[]}} info the revision's commit and files
 * @param {AbortSignal} signal
 * @param {(e: import('./types.js').ProgressEvent) => void} progress
 * @returns {Promise<CheckpointReader>}
 */
export async function fromHub({ base, repo, revision }, info, signal, progress) {
  const has = (f) => info.files.includes(f);
  if (!has('config.json')) {
    throw new ScorerError(`${repo} has no config.json at ${revision}: is it a transformers CLIP repository?`, 'InputError');
  }
  /** @type {'tokenizer.json' | 'merges.txt'} */
  const tokenizerKind = has('tokenizer.json') ? 'tokenizer.json' : 'merges.txt';
  if (!has(tokenizerKind)) {
    throw new ScorerError(`${repo} has neither tokenizer.json nor merges.txt at ${revision}`, 'InputError');
  }
  const weights = await chooseWeights(base, repo, revision, info, signal);
  // Every file from the one commit the revision named when it was looked up.
  const small = async (file) => hubFetch(hubUrl(base, repo, info.commit, file), { repo, revision, file }, {}, signal);
  const config = await (await small('config.json')).text();
  const tokenizer = new Uint8Array(await (await small(tokenizerKind)).arrayBuffer());
  const where = { repo, revision: weights.revision, file: weights.file };
  const reader = await rangeReader(hubUrl(base, repo, weights.commit, weights.file), where, signal);
  progress({ status: 'source', file: weights.file, revision: weights.revision, commit: weights.commit, bytes: reader.size, why: weights.why });
  const at = `${repo}@${weights.revision} (${weights.commit.slice(0, 7)})`;
  return {
    config,
    tokenizer,
    tokenizerKind,
    size: reader.size,
    range: reader.range,
    source: `hub: ${at} ${weights.file}`,
    name: `${repo}@${revision}`,
    file: weights.file,
  };
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
  const job = new wasm.Import(ckpt.config, ckpt.size, ckpt.tokenizer, ckpt.tokenizerKind, quant, classes, ckpt.source);
  try {
    // The converter says which bytes it needs next (the table of contents, then each tensor),
    // for either format; this loop only fetches them.
    let loaded = 0;
    let last = 0;
    for (let next = job.next(); next; next = job.next()) {
      const bytes = await ckpt.range(next.start, next.end);
      job.push(bytes);
      loaded += bytes.length;
      const now = performance.now();
      if (now - last > 100 || next.index + 1 === next.count) {
        last = now;
        progress({ status: 'import', loaded, total: ckpt.size, tensor: next.key ? next.index + 1 : 0, tensors: next.count, format: job.format ?? '' });
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
