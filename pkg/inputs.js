// Turns whatever the caller passes as an image or a model into a message the worker can take,
// with the buffers to transfer (never copied twice).

import { ScorerError } from './errors.js';

/** @typedef {import('./types.js').ImageInput} ImageInput */
/** @typedef {import('./types.js').ModelSource} ModelSource */

/** The largest encoded image accepted (a larger file is refused before it is read). */
export const MAX_IMAGE_BYTES = 64 * 1024 * 1024;

const baseUrl = () => (typeof document !== 'undefined' ? document.baseURI : self.location.href);

/** A copy of exactly the bytes a view covers, as a transferable ArrayBuffer. */
function ownBuffer(bytes) {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer
    ? bytes.buffer.slice(0)
    : bytes.slice().buffer;
}

/** @param {Blob} blob */
async function encoded(blob) {
  if (blob.size > MAX_IMAGE_BYTES) {
    throw new ScorerError(`the file is too large (${(blob.size / 1e6).toFixed(1)} MB; at most ${MAX_IMAGE_BYTES / 1e6} MB)`, 'InputError');
  }
  const bytes = await blob.arrayBuffer();
  return { message: { kind: 'encoded', bytes, type: blob.type }, transfer: [bytes] };
}

/**
 * @param {ImageInput} image
 * @returns {Promise<{message: object, transfer: Transferable[]}>}
 */
export async function imageMessage(image) {
  if (typeof Blob !== 'undefined' && image instanceof Blob) return encoded(image);
  if (image instanceof ArrayBuffer || ArrayBuffer.isView(image)) {
    const view = image instanceof ArrayBuffer ? new Uint8Array(image) : new Uint8Array(image.buffer, image.byteOffset, image.byteLength);
    const bytes = ownBuffer(view);
    return { message: { kind: 'encoded', bytes, type: '' }, transfer: [bytes] };
  }
  if (typeof ImageData !== 'undefined' && image instanceof ImageData) {
    const rgba = ownBuffer(new Uint8Array(image.data.buffer, image.data.byteOffset, image.data.byteLength));
    return { message: { kind: 'rgba', width: image.width, height: image.height, rgba }, transfer: [rgba] };
  }
  if (typeof image === 'string' || image instanceof URL) {
    let response;
    try {
      response = await fetch(new URL(String(image), baseUrl()));
    } catch (e) {
      throw new ScorerError(`could not fetch the image ${String(image)}: ${e instanceof Error ? e.message : e}`, 'IoError');
    }
    if (!response.ok) throw new ScorerError(`could not fetch the image ${String(image)}: HTTP ${response.status}`, 'IoError');
    return encoded(await response.blob());
  }
  if (typeof createImageBitmap === 'function' && image && typeof image === 'object') {
    // ImageBitmap, <img>, <canvas>, OffscreenCanvas, VideoFrame: pixels the browser has.
    let bitmap;
    try {
      bitmap = image instanceof ImageBitmap ? image : await createImageBitmap(/** @type {ImageBitmapSource} */ (image));
    } catch (e) {
      throw new ScorerError(`could not read the image's pixels: ${e instanceof Error ? e.message : e}`, 'InputError');
    }
    return { message: { kind: 'bitmap', bitmap }, transfer: [bitmap] };
  }
  throw new ScorerError('not an image: pass a Blob, File, ImageData, ImageBitmap, canvas, <img>, URL or bytes', 'InputError');
}

/**
 * A model source as the worker takes it, plus something to read it from again if the worker
 * must be restarted (a Blob holds bytes without a second copy in JavaScript's heap).
 * @param {ModelSource} model
 * @param {string[]} allowedOrigins
 * @returns {{source: () => Promise<{message: object, transfer: Transferable[]}>, label: string}}
 */
export function modelSource(model, allowedOrigins) {
  if (typeof model === 'string' || model instanceof URL) {
    const href = new URL(String(model), baseUrl()).href;
    return { label: String(model), source: async () => ({ message: { kind: 'url', href, allowedOrigins }, transfer: [] }) };
  }
  let blob;
  if (typeof Blob !== 'undefined' && model instanceof Blob) blob = model;
  else if (model instanceof ArrayBuffer || ArrayBuffer.isView(model)) blob = new Blob([/** @type {BlobPart} */ (model)]);
  else throw new ScorerError('no model: pass a URL, a File, a Blob or the bundle\'s bytes', 'InputError');
  const label = typeof File !== 'undefined' && blob instanceof File ? blob.name : 'bundle bytes';
  return {
    label,
    source: async () => {
      const bytes = await blob.arrayBuffer();
      return { message: { kind: 'bytes', bytes }, transfer: [bytes] };
    },
  };
}

/**
 * The files of a Hugging Face checkpoint, picked by name from a list (a folder's files, a
 * multiple file input) or given by role.
 * @param {import('./types.js').CheckpointFiles | Iterable<File>} files
 * @returns {import('./types.js').CheckpointFiles & {tokenizerKind: 'merges.txt' | 'tokenizer.json'}}
 */
export function checkpointFiles(files) {
  /** @type {Partial<import('./types.js').CheckpointFiles>} */
  let picked;
  if (files && typeof files === 'object' && 'weights' in files) {
    picked = { ...files };
  } else {
    const byName = new Map([...(/** @type {Iterable<File>} */ (files ?? []))].map((f) => [f.name, f]));
    picked = {
      config: byName.get('config.json'),
      // transformers' order of preference when a folder holds both.
      weights: byName.get('model.safetensors') ?? byName.get('pytorch_model.bin'),
      tokenizer: byName.get('tokenizer.json') ?? byName.get('merges.txt'),
    };
    if (picked.tokenizer) picked.tokenizerKind = /** @type {File} */ (picked.tokenizer).name === 'merges.txt' ? 'merges.txt' : 'tokenizer.json';
  }
  const missing = [
    !picked.config && 'config.json',
    !picked.weights && 'model.safetensors or pytorch_model.bin',
    !picked.tokenizer && 'tokenizer.json or merges.txt',
  ].filter(Boolean);
  if (missing.length) {
    throw new ScorerError(`a CLIP checkpoint needs ${missing.join(', ')} (missing from the files given)`, 'InputError');
  }
  const kind = picked.tokenizerKind ?? (picked.tokenizer instanceof File && picked.tokenizer.name === 'merges.txt' ? 'merges.txt' : 'tokenizer.json');
  return /** @type {any} */ ({ ...picked, tokenizerKind: kind });
}
