// Which of the two wasm builds this worker runs a model on (ARCHITECTURE.md, "The browser"): the
// main one (WebGPU, and the CPU on this thread) or the threaded CPU one (`pool.js`), each in its
// plain SIMD128 variant or, for u7 activations where the browser validates relaxed SIMD, the
// relaxed one (`relaxed/`, `threads-relaxed/`). Each is loaded when first needed, and where the
// CPU runs threaded the main one is not loaded at all: a module once instantiated stays for the
// worker's life, its compiled code and its memory with it. Only the worker uses this.

import { ScorerError } from './errors.js';
import { startedThreadedBuild, threadedBuild } from './pool.js';

/** @type {Promise<any> | null} the main build, once first asked for */
let main = null;

/**
 * A module that validates only where the browser has WebAssembly's relaxed SIMD: one function
 * doing `i16x8.relaxed_dot_i8x16_i7x16_s`, the u7 kernel's product (`wasm-tools parse` of
 * `(module (func (result v128) v128.const i64x2 0 0 v128.const i64x2 0 0
 * i16x8.relaxed_dot_i8x16_i7x16_s))`).
 */
const RELAXED_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 43, 1, 41, 0, 253, 12, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 253, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 253, 146, 2, 11,
]);

/** @type {boolean | null} whether this worker's builds are the relaxed-SIMD ones: fixed by its first load */
let relaxed = null;

/**
 * Fixes the variant on the first load: relaxed SIMD when it asks for u7 activations and the
 * browser validates the probe. Later loads keep it (a u7 model on the plain variant runs the same
 * numbers through the i16 kernel, slower), so that one module is ever loaded.
 * @param {import('./types.js').ActivationsRequest} activations
 */
function chooseVariant(activations) {
  relaxed ??= activations === 'u7' && WebAssembly.validate(RELAXED_PROBE);
  return relaxed;
}

/** The main build (WebGPU, and the CPU on this thread), loaded on first use. */
export function mainBuild() {
  main ??= (async () => {
    const m = await (relaxed ? import('./relaxed/deltaenergy.js') : import('./deltaenergy.js'));
    await m.default();
    return m;
  })().catch((e) => {
    main = null; // a later request tries again
    const message = e instanceof Error ? e.message : String(e);
    throw new ScorerError(`could not start the scorer: loading deltaenergy.js and its .wasm failed (${message})`, 'IoError');
  });
  return main;
}

/** The threaded build if it runs, else the main one: for work either does alike (imports). */
export async function anyBuild() {
  return (await startedThreadedBuild()) ?? mainBuild();
}

/**
 * What the browser says when it has no WebGPU adapter to offer, or null when it has one (the main
 * build's own probe then decides, as it requests a device too). Asked without any wasm.
 * @returns {Promise<string | null>}
 */
async function missingAdapter() {
  const gpu = /** @type {any} */ (self.navigator)?.gpu;
  if (!gpu) return 'navigator.gpu is undefined: this browser, or this context, has no WebGPU';
  try {
    return (await gpu.requestAdapter()) ? null : 'navigator.gpu.requestAdapter() returned no adapter';
  } catch (e) {
    return `navigator.gpu.requestAdapter() failed: ${e instanceof Error ? e.message : e}`;
  }
}

/**
 * The build to load a model on for `device` ("auto", "webgpu", "cpu"), the device to ask it for,
 * and, when "auto" ends on the threaded CPU build, why (the main build gives its own reason).
 * @param {string} device
 * @param {'auto' | number} threads
 * @param {import('./types.js').ActivationsRequest} activations
 * @param {(message: string) => void} note
 * @returns {Promise<{build: any, device: string, reason: any}>}
 */
export async function pickBuild(device, threads, activations, note) {
  const dir = chooseVariant(activations) ? 'threads-relaxed' : 'threads';
  if (device === 'cpu') {
    const threaded = await threadedBuild(threads, dir, note);
    return { build: threaded ?? (await mainBuild()), device, reason: null };
  }
  if (device === 'auto') {
    const missing = await missingAdapter();
    const noGpu = missing ?? (await (await mainBuild()).probeWebgpu());
    const threaded = noGpu ? await threadedBuild(threads, dir, note) : null;
    if (threaded) {
      return { build: threaded, device: 'cpu', reason: typeof noGpu === 'string' ? threaded.noWebgpu(noGpu) : noGpu };
    }
  }
  return { build: await mainBuild(), device, reason: null };
}
