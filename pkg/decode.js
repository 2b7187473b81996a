// Images the wasm decoder does not read (AVIF, …), decoded by the browser in the worker.

import { ScorerError } from './errors.js';

// Decoding in the browser stops here.
const MAX_BROWSER_DECODE_PIXELS = 40_000_000;
const WASM_FORMATS = /^image\/(jpeg|jpg|pjpeg|png|apng|webp|gif|bmp|x-ms-bmp)$/i;

/** RGBA pixels of a bitmap, through an OffscreenCanvas. */
export function bitmapPixels(bitmap) {
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
export function browserMayDecode(error, type) {
  return error.name === 'InputError' && /^image\//i.test(type) && !WASM_FORMATS.test(type) && !/too large/i.test(error.message)
    && typeof createImageBitmap === 'function' && typeof OffscreenCanvas === 'function';
}

/**
 * The pixels of encoded bytes, decoded by the browser; `fallback` is thrown when it cannot
 * (the wasm decoder's message is the clearer one).
 * @param {Uint8Array} bytes
 * @param {string} type
 * @param {unknown} fallback
 */
export async function decodeInBrowser(bytes, type, fallback) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(new Blob([/** @type {BlobPart} */ (bytes)], { type }));
  } catch {
    throw fallback;
  }
  try {
    return bitmapPixels(bitmap);
  } finally {
    bitmap.close();
  }
}
