// One thread of the CPU pool of the threaded build (src/web/pool.rs). The scorer's worker
// (`worker.js`, `startPool`) starts one per thread and sends the module, the shared memory and
// the module's URL; this instantiates the module on that memory, says it is ready, then runs one
// rayon thread for the rest of its life (it never answers another message).
//
// A file of its own rather than a `blob:` URL, so a page whose Content-Security-Policy says
// `worker-src 'self'` may start it.

/**
 * @typedef {object} PoolStart
 * @property {string} moduleUrl URL of the threaded build's `deltaenergy.js`.
 * @property {WebAssembly.Module} module The compiled threaded module.
 * @property {WebAssembly.Memory} memory The pool's shared memory.
 */

self.addEventListener(
  'message',
  /** @param {MessageEvent<PoolStart>} event */
  async ({ data }) => {
    let wasm;
    try {
      wasm = await import(data.moduleUrl);
      await wasm.default({ module_or_path: data.module, memory: data.memory });
    } catch (e) {
      self.postMessage({ ok: false, message: e instanceof Error ? e.message : String(e) });
      return;
    }
    self.postMessage({ ok: true });
    wasm.poolThread();
  },
  { once: true },
);
