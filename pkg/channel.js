// One worker and the requests in flight to it (the protocol in `protocol.js`): start it, wait
// for its boot, send a request and match its replies, fail what is pending when it dies.
// `index.js` owns one at a time and makes a new one after a crash.

import { ScorerError } from './errors.js';

/** @typedef {import('./types.js').ProgressEvent} ProgressEvent */

export class WorkerChannel {
  /** @type {Worker | null} */ #worker = null;
  /** @type {Promise<void>} */ #booted = Promise.resolve();
  /** @type {Map<number, {resolve: Function, reject: Function, onProgress?: Function}>} */ #pending = new Map();
  #nextId = 1;

  /**
   * Starts the worker at `url`; every progress event goes to `onEvent` as well as to the
   * request it belongs to.
   * @param {string | URL} url
   * @param {(event: ProgressEvent) => void} onEvent
   */
  constructor(url, onEvent) {
    /** @type {{resolve: (v?: void) => void, reject: (e: Error) => void}} */
    const booted = { resolve: () => {}, reject: () => {} };
    this.#booted = new Promise((resolve, reject) => {
      Object.assign(booted, { resolve, reject });
    });
    this.#booted.catch(() => {}); // reported by the first request
    let worker;
    try {
      worker = new Worker(url, { type: 'module' });
    } catch (e) {
      booted.reject(new ScorerError(`could not start the scorer's worker: ${e instanceof Error ? e.message : e}`, 'IoError'));
      return;
    }
    this.#worker = worker;
    worker.addEventListener('message', (event) => {
      /** @type {import('./protocol.js').Reply} */
      const m = event.data ?? {};
      if (m.kind === 'boot') {
        booted.resolve();
        return;
      }
      const p = this.#pending.get(m.id);
      if (m.kind === 'progress') {
        onEvent(m.event);
        p?.onProgress?.(m.event);
      } else if (p && (m.kind === 'ok' || m.kind === 'error')) {
        this.#pending.delete(m.id);
        if (m.kind === 'ok') p.resolve(m.value);
        else p.reject(new ScorerError(m.error.message, m.error.name));
      }
    });
    worker.addEventListener('error', (event) => {
      // The worker's script could not run at all (missing file, syntax error, blocked by CSP).
      event.preventDefault();
      const e = new ScorerError(`the scorer's worker failed: ${event.message || 'worker.js could not be loaded'}`, 'IoError');
      booted.reject(e);
      this.fail(e);
    });
  }

  get running() {
    return this.#worker !== null;
  }

  /**
   * A request; resolves to its `ok` value, rejects with its error.
   * @param {import('./protocol.js').Op} op
   * @param {object} payload
   * @param {Transferable[]} [transfer]
   * @param {(event: ProgressEvent) => void} [onProgress]
   */
  async send(op, payload, transfer = [], onProgress = undefined) {
    await this.#booted;
    const worker = this.#worker;
    if (!worker) throw new ScorerError('the scorer is not running', 'DisposedError');
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, onProgress });
      worker.postMessage({ id, op, ...payload }, transfer);
    });
  }

  /** Fails every request in flight with `error`. */
  fail(error) {
    for (const [id, p] of this.#pending) {
      this.#pending.delete(id);
      p.reject(error);
    }
  }

  /** Stops the worker, failing what is in flight with `error`. */
  close(error) {
    this.fail(error);
    this.#worker?.terminate();
    this.#worker = null;
  }
}
