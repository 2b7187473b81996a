// Which of the two wasm builds this worker runs a model on (ARCHITECTURE.md, "The browser"): the
// main one (WebGPU, and the CPU on this thread) or the threaded CPU one (`pool.js`). Each is
// loaded when first needed, and where the CPU runs threaded the main one is not loaded at all:
// a module once instantiated stays for the worker's life, its compiled code and its memory with
// it. Only the worker uses this.

import { ScorerError } from './errors.js';
import { startedThreadedBuild, threadedBuild } from './pool.js';

/** @type {Promise<any> | null} the main build, once first asked for */
let main = null;

/** The main build (WebGPU, and the CPU on this thread), loaded on first use. */
export function mainBuild() {
  main ??= (async () => {
    const m = await import('./deltaenergy.js');
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
 * @param {(message: string) => void} note
 * @returns {Promise<{build: any, device: string, reason: any}>}
 */
export async function pickBuild(device, threads, note) {
  if (device === 'cpu') {
    const threaded = await threadedBuild(threads, note);
    return { build: threaded ?? (await mainBuild()), device, reason: null };
  }
  if (device === 'auto') {
    const missing = await missingAdapter();
    const noGpu = missing ?? (await (await mainBuild()).probeWebgpu());
    const threaded = noGpu ? await threadedBuild(threads, note) : null;
    if (threaded) {
      return { build: threaded, device: 'cpu', reason: typeof noGpu === 'string' ? threaded.noWebgpu(noGpu) : noGpu };
    }
  }
  return { build: await mainBuild(), device, reason: null };
}
