// Errors as the scorer reports them: one class, told apart by `name`, shared by the worker and
// the page side so that every decision about a failure (fall back to the CPU? restart the
// worker?) is made in one place.

/**
 * What kind of failure it was, as the wasm scorer names it (`deltaenergy::Error::kind`) plus the
 * kinds of the JavaScript side.
 * - `InputError`: an image, a class list or a setting; fix it and retry.
 * - `ModelError`: the model file is damaged or not a bundle.
 * - `DeviceError`: the GPU or backend failed; the CPU may work.
 * - `IoError`: a download or a file read failed.
 * - `CrashError`: the wasm module trapped (a bug); the scorer restarts its worker.
 * - `DisposedError`: the scorer was disposed.
 * - `AbortError`: the caller stopped it (`tune`'s `signal`); nothing changed.
 * @typedef {'InputError' | 'ModelError' | 'DeviceError' | 'IoError' | 'CrashError' | 'DisposedError' | 'AbortError' | 'Error'} ErrorName
 */

/** An error from the scorer. `name` says what kind of failure it was. */
export class ScorerError extends Error {
  /**
   * @param {string} message
   * @param {ErrorName} [name]
   */
  constructor(message, name = 'Error') {
    super(message);
    /** @type {ErrorName} */
    this.name = name;
  }
}

/** @param {unknown} e @returns {string} */
function messageOf(e) {
  if (e instanceof Error) return e.message;
  if (typeof e === 'string') return e;
  if (e && typeof e === 'object' && 'message' in e) return String(e.message);
  return String(e);
}

/**
 * Plain, cloneable facts about whatever was thrown: what crosses from the worker to the page.
 * A trap in the wasm (a Rust panic) is a `CrashError` carrying the panic message, which
 * wasm-bindgen's panic hook logs just before the trap (`lastPanic`).
 * @param {unknown} e
 * @param {string} [lastPanic]
 * @returns {{name: ErrorName, message: string}}
 */
export function describe(e, lastPanic = '') {
  if (typeof WebAssembly !== 'undefined' && e instanceof WebAssembly.RuntimeError) {
    const panic = lastPanic.split(/\n\s*Stack:/)[0].replace(/\s+/g, ' ').trim();
    return { name: 'CrashError', message: panic ? `${panic} (${e.message})` : `the scorer crashed (${e.message})` };
  }
  const name = /** @type {ErrorName} */ (e instanceof Error && e.name ? e.name : 'Error');
  return { name, message: messageOf(e) || name };
}

// What a GPU failure looks like when it arrives without a kind (from wgpu, the browser, or a
// message relayed through JavaScript): device loss, validation errors, out of memory.
const GPU_FAILURE = /device[\s_-]*(was\s+|is\s+)?lost|lost[\s_-]*device|\bgpu\b|webgpu|wgpu|adapter|shader|out of memory|outofmemory|validation error/i;

/**
 * Whether a failure on WebGPU is the GPU's, so that the CPU is worth a try.
 * @param {{name: string, message: string}} d what `describe` returned
 */
export function isGpuFailure(d) {
  if (d.name === 'DeviceError') return true;
  if (d.name === 'InputError' || d.name === 'ModelError' || d.name === 'CrashError') return false;
  return GPU_FAILURE.test(d.message);
}
