// The threaded CPU build (`threads/`, or `threads-relaxed/`): its module loaded once, and its rayon pool started on
// `pool-worker.js` workers sharing the wasm memory (src/web/pool.rs). Only the worker uses it.

import { ScorerError } from './errors.js';

/** The pool's workers, kept referenced: a worker on shared memory may otherwise be collected. */
const poolWorkers = [];
/**
 * The threaded build with its pool started, once the CPU is first needed; null where it cannot
 * run (one thread asked for or given, no cross-origin isolation, or the pool failed to start).
 * @type {Promise<any> | null}
 */
let threaded = null;

/**
 * The pool's size for the `threads` option. onnxruntime-web's rule for "auto": half the logical
 * cores, at most 4. Threads share memory, which browsers allow only to cross-origin isolated
 * pages: elsewhere one.
 */
function poolSize(threads) {
  if (!self.crossOriginIsolated || typeof SharedArrayBuffer !== 'function') return 1;
  if (threads === 'auto' || threads == null) return Math.min(4, Math.ceil((navigator.hardwareConcurrency || 1) / 2));
  const n = Math.floor(Number(threads));
  if (!(n >= 1)) throw new ScorerError(`threads must be "auto" or a positive number, got ${JSON.stringify(threads)}`, 'InputError');
  return Math.min(n, 64);
}

/** Loads the threaded build from `dir` and starts its pool of `n` workers. */
async function startPool(n, dir) {
  const moduleUrl = new URL(`./${dir}/deltaenergy.js`, import.meta.url).href;
  const threads = await import(moduleUrl);
  await threads.default();
  const init = { moduleUrl, module: threads.poolModule(), memory: threads.poolMemory() };
  await Promise.all(
    Array.from({ length: n }, () => new Promise((resolve, reject) => {
      const worker = new Worker(new URL('./pool-worker.js', import.meta.url), { type: 'module', name: 'deltaenergy-cpu' });
      poolWorkers.push(worker);
      worker.onmessage = ({ data }) => (data.ok ? resolve(undefined) : reject(new Error(data.message)));
      worker.onerror = (e) => {
        e.preventDefault();
        reject(new Error(e.message || 'pool-worker.js could not be loaded'));
      };
      worker.postMessage(init);
    })),
  );
  threads.startPool(n);
  return threads;
}

/**
 * The threaded build, started on first use with the first `threads` asked for, from `dir`
 * (`threads` or `threads-relaxed`; later values are ignored: a pool starts once a worker);
 * `note` says why when it cannot start.
 * @param {'auto' | number} threads
 * @param {'threads' | 'threads-relaxed'} dir
 * @param {(message: string) => void} note
 * @returns {Promise<any | null>}
 */
export function threadedBuild(threads, dir, note) {
  const n = poolSize(threads);
  threaded ??= n < 2
    ? Promise.resolve(null)
    : startPool(n, dir).catch((e) => {
      for (const w of poolWorkers.splice(0)) w.terminate();
      note(`The CPU runs on one thread: its thread pool did not start (${e instanceof Error ? e.message : e}).`);
      return null;
    });
  return threaded;
}

/** The threaded build if it was asked for and started, else null; starts nothing. */
export function startedThreadedBuild() {
  return threaded ?? Promise.resolve(null);
}
