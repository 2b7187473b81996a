// deltaenergy in the browser: CLIP classification and ΔEnergy out-of-distribution scores, on
// the user's device, in a Web Worker, on WebGPU with a fallback to the CPU.
//
//   import { createScorer } from 'deltaenergy';
//   const scorer = await createScorer({ model: '/models/cifar-clip.q8.bundle' });
//   const result = await scorer.classify(file);
//   console.log(result.label, result.scores.deltaEnergy, result.ood);
//   scorer.dispose();
//
// `createScorer` owns the worker and the state a model is used with (classes, threshold,
// calibration), which it replays into a fresh model after a crash or a WebGPU → CPU fallback. The wasm-bindgen module underneath (`deltaenergy/wasm`) is the low-level
// `Scorer`, for callers that run their own worker.

import { WorkerChannel } from './channel.js';
import { ScorerError, isGpuFailure } from './errors.js';
import { checkpointFiles, imageMessage, modelSource } from './inputs.js';

export { ScorerError } from './errors.js';

/** @typedef {import('./types.js').CachedModel} CachedModel */
/** @typedef {import('./types.js').CheckpointFiles} CheckpointFiles */
/** @typedef {import('./types.js').ClassifyResult} ClassifyResult */
/** @typedef {import('./errors.js').ErrorName} ErrorName */
/** @typedef {import('./types.js').CreateScorerOptions} CreateScorerOptions */
/** @typedef {import('./types.js').Device} Device */
/** @typedef {import('./types.js').DeviceReason} DeviceReason */
/** @typedef {import('./types.js').DeviceRequest} DeviceRequest */
/** @typedef {import('./types.js').PrecisionRequest} PrecisionRequest */
/** @typedef {import('./types.js').ImageInput} ImageInput */
/** @typedef {import('./types.js').ImportOptions} ImportOptions */
/** @typedef {import('./types.js').ModelInfo} ModelInfo */
/** @typedef {import('./types.js').ModelSource} ModelSource */
/** @typedef {import('./types.js').ProgressEvent} ProgressEvent */
/** @typedef {import('./types.js').ScoreName} ScoreName */
/** @typedef {import('./types.js').Scores} Scores */
/** @typedef {import('./types.js').TuneExample} TuneExample */
/** @typedef {import('./types.js').TuneOptions} TuneOptions */
/** @typedef {import('./types.js').TuneReport} TuneReport */
/** @typedef {import('./protocol.js').Op} Op */
/**
 * A request's payload and what it transfers, or a way to make them again (to retry after the
 * model moved to the CPU, since a transferred buffer is gone).
 * @typedef {{payload: object, transfer?: Transferable[]} | (() => Promise<{payload: object, transfer?: Transferable[]}>)} Message
 */

/** The four scores, each "higher = more in-distribution". @type {readonly ScoreName[]} */
export const SCORE_NAMES = Object.freeze(['deltaEnergy', 'energy', 'mcm', 'maxLogit']);

// A worker that crashes this often within a minute is not restarted again.
const MAX_RESTARTS = 2;
const RESTART_WINDOW_MS = 60_000;

/**
 * Starts a scorer in a worker and loads `options.model` into it.
 * @param {CreateScorerOptions} options
 * @returns {Promise<DeltaEnergyScorer>}
 */
export async function createScorer(options) {
  const scorer = new DeltaEnergyScorer(options);
  try {
    await scorer.load(options.model, { device: options.device, precision: options.precision });
  } catch (e) {
    scorer.dispose();
    throw e;
  }
  return scorer;
}

/** A model in a worker. Make one with `createScorer`. */
export class DeltaEnergyScorer {
  /** @type {WorkerChannel} */ #channel;
  /** @type {CreateScorerOptions} */ #options;
  /** @type {number[]} */ #restarts = [];
  /** @type {string | null} */ #broken = null;
  /** @type {{source: ReturnType<typeof modelSource>, device: DeviceRequest, precision: PrecisionRequest} | null} */ #model = null;
  /** @type {{device: Device, reason: DeviceReason, info: ModelInfo} | null} */ #state = null;
  /** @type {{classes: string[], templates: string[] | null} | null} */ #classes = null;
  /** @type {{scores: Scores[], tpr: number} | null} */ #calibration = null;
  /** @type {number | null | undefined} */ #threshold = undefined;

  /** @param {CreateScorerOptions} options */
  constructor(options) {
    this.#options = { device: 'auto', allowedOrigins: [], ...options };
    this.#start();
  }

  /** Where the model runs now. @returns {Device | null} */
  get device() {
    return this.#state?.device ?? null;
  }

  /** Why it runs there. @returns {DeviceReason | null} */
  get deviceReason() {
    return this.#state?.reason ?? null;
  }

  /** The loaded model. @returns {ModelInfo | null} */
  get info() {
    return this.#state?.info ?? null;
  }

  /** The version of deltaenergy that loaded the model ("" before one is loaded). */
  get version() {
    return this.#state?.info.version ?? '';
  }

  /**
   * Loads another model into this scorer (the previous one stays if this one fails).
   * @param {ModelSource} model
   * @param {{device?: DeviceRequest, precision?: PrecisionRequest}} [options]
   * @returns {Promise<ModelInfo>}
   */
  async load(model, { device = this.#options.device ?? 'auto', precision = this.#options.precision ?? 'auto' } = {}) {
    const source = modelSource(model, this.#options.allowedOrigins ?? []);
    const ready = await this.#call('load', () => this.#loadMessage(source, device, precision));
    this.#model = { source, device, precision };
    this.#classes = null;
    this.#threshold = undefined;
    this.#calibration = null;
    return ready.info;
  }

  /**
   * Classifies an image and scores it.
   * @param {ImageInput} image
   * @param {{topK?: number}} [options] how many classes `top` lists (default 5)
   * @returns {Promise<ClassifyResult>}
   */
  async classify(image, { topK = 5 } = {}) {
    return this.#call('classify', async () => {
      const { message, transfer } = await imageMessage(image);
      return { payload: { image: message, topK }, transfer };
    });
  }

  /**
   * Classifies several images, `batchSize` of them at a time through one forward pass of the
   * image tower (fewer, larger dispatches: faster per image where the device has parallel
   * work to spare; the README gives the figures). Resolves to one entry per image, in order:
   * its result, or the `ScorerError` that image alone met (the others are scored all the
   * same). Every image is read into memory before scoring starts: pass a few dozen at a time.
   * @param {ImageInput[]} images
   * @param {{topK?: number, batchSize?: number}} [options] `topK` as `classify`; `batchSize`
   *   images per forward pass, 1–64 (default 8)
   * @returns {Promise<Array<ClassifyResult | ScorerError>>}
   */
  async classifyMany(images, { topK = 5, batchSize = 8 } = {}) {
    if (!Array.isArray(images)) throw new ScorerError('classifyMany takes an array of images', 'InputError');
    /** @type {Array<ClassifyResult | ScorerError>} */
    const out = new Array(images.length);
    const at = [];
    /** The images' messages (made again for a retry: a transferred buffer is gone). */
    const messages = async () => {
      const list = [];
      /** @type {Transferable[]} */
      const transfer = [];
      at.length = 0;
      for (let i = 0; i < images.length; i++) {
        try {
          const m = await imageMessage(images[i]);
          list.push(m.message);
          transfer.push(...m.transfer);
          at.push(i);
        } catch (e) {
          out[i] = e instanceof ScorerError ? e : new ScorerError(String(e), 'InputError');
        }
      }
      return { payload: { images: list, topK, batchSize }, transfer };
    };
    // Made once up front (it says which images could be read), again only for a retry.
    let prepared = await messages();
    if (at.length > 0) {
      /** @type {Array<ClassifyResult | {error: {name: ErrorName, message: string}}>} */
      const results = await this.#call('classifyMany', async () => {
        const m = prepared ?? (await messages());
        prepared = null;
        return m;
      });
      results.forEach((r, k) => {
        out[at[k]] = 'error' in r ? new ScorerError(r.error.message, r.error.name) : r;
      });
    }
    return out;
  }

  /**
   * Replaces the class list. Names are separated by commas or new lines (in one string or
   * several); blanks and repeats are dropped. Text features are computed in the worker, or
   * taken from the cache when this model met the same classes and templates before.
   * @param {string | string[]} classes
   * @param {{templates?: string[] | null, onProgress?: (event: ProgressEvent) => void}} [options]
   *   `templates` (each with `{}` for the name) replace the model's prompt: one template, or
   *   several averaged as CLIP's prompt ensemble (`presets/*.json` of the page hold CLIP's 80);
   *   none keeps the model's own prompt (its learned context, if any)
   * @returns {Promise<ModelInfo>}
   */
  async setClasses(classes, { templates = null, onProgress } = {}) {
    const list = Array.isArray(classes) ? classes.map(String) : [String(classes)];
    const t = templates && templates.length ? templates.map(String) : null;
    const info = await this.#call('setClasses', { payload: { classes: list, templates: t } }, onProgress);
    this.#classes = { classes: list, templates: t };
    this.#setInfo(info);
    return info;
  }

  /**
   * Sets the OOD threshold on the model's threshold score (ΔEnergy unless the bundle says
   * otherwise); `null` returns to the bundle's own.
   * @param {number | null} value
   * @returns {Promise<ModelInfo>}
   */
  async setThreshold(value) {
    if (value !== null && !Number.isFinite(value)) throw new ScorerError('the threshold must be a finite number', 'InputError');
    const info = await this.#call('setThreshold', { payload: { value } });
    this.#threshold = value;
    this.#calibration = null;
    this.#setInfo(info);
    return info;
  }

  /**
   * Calibrates the threshold on results of in-distribution images (pictures of the classes, as
   * the user's own): the value that keeps `tpr` of them (default 0.95, as `deltaenergy tune`).
   * For models without a calibrated threshold, such as imported ones.
   * @param {Array<Scores | {scores: Scores}>} results at least one
   * @param {{tpr?: number}} [options]
   * @returns {Promise<ModelInfo>} its `threshold` is the new one
   */
  async calibrate(results, { tpr = 0.95 } = {}) {
    const scores = results.map((r) => ('scores' in r ? r.scores : r));
    const info = await this.#call('calibrate', { payload: { scores, tpr } });
    this.#calibration = { scores, tpr };
    this.#threshold = undefined;
    this.#setInfo(info);
    return info;
  }

  /**
   * The verdicts of the threshold in force on scores already computed (to re-flag results
   * after the threshold moved): true = OOD, null = no threshold.
   * @param {Array<Scores | {scores: Scores}>} results
   * @returns {Promise<Array<boolean | null>>}
   */
  async judge(results) {
    const scores = results.map((r) => ('scores' in r ? r.scores : r));
    return this.#call('judge', { payload: { scores } });
  }

  /**
   * Converts a Hugging Face CLIP checkpoint into a bundle in the worker, tensor by tensor, with
   * the converter the command line uses; resolves to the bundle's bytes (load them with
   * `load`, keep them, or offer them as a download). The model in use is not touched.
   * @param {CheckpointFiles | Iterable<File>} files `config.json`, `model.safetensors` (f32, f16
   *   or bf16) and `tokenizer.json` or `merges.txt`, by name when given as a list
   * @param {ImportOptions} [options]
   * @returns {Promise<Uint8Array>}
   */
  async importCheckpoint(files, { quant = 'q8', classes = [], cache = true, onProgress } = {}) {
    const source = { kind: 'files', files: checkpointFiles(files) };
    return this.#call('import', { payload: { source, quant, classes, cache } }, onProgress);
  }

  /**
   * Converts a CLIP checkpoint on the Hugging Face Hub (or a mirror that answers as it does)
   * into a bundle, like `importCheckpoint`. The weights are those transformers would load:
   * `model.safetensors` at the revision; on `main` without one, the Hub's conversion pull
   * request of main's weights; else `pytorch_model.bin` (a `source` progress event says which).
   * `config.json` and the tokenizer are fetched whole, the weights by HTTP Range requests, a
   * tensor at a time. Only this call talks to the Hub, and only to fetch; no image is ever
   * sent. A model converted before from the same commit and precision comes from the cache
   * after one request (which commit the revision is now; none when `revision` is a commit),
   * and when the Hub cannot be reached, the newest copy of that revision kept here does (a
   * `note` says so); a `cached` progress event tells both. `cache: false` neither reads nor
   * keeps it.
   * @param {{repo: string, revision?: string, hub?: string}} where a repository id such as
   *   `openai/clip-vit-base-patch32`, a revision (default `main`) and the Hub's base URL
   *   (default `https://huggingface.co`)
   * @param {ImportOptions} [options]
   * @returns {Promise<Uint8Array>}
   */
  async importFromHub({ repo, revision = 'main', hub = 'https://huggingface.co' }, { quant = 'q8', classes = [], cache = true, onProgress } = {}) {
    const base = new URL(hub, typeof document !== 'undefined' ? document.baseURI : self.location.href).href;
    const source = { kind: 'hub', base, repo, revision };
    return this.#call('import', { payload: { source, quant, classes, cache, allowedOrigins: [new URL(base).origin] } }, onProgress);
  }

  /**
   * Prompt tuning on your own pictures, in the worker, with the command line's `tune`: learns
   * the context vectors (CoOp, or EBM with `lambda` > 0) for the classes the labels name, then
   * judges the result on pictures it did not tune on, chooses ΔEnergy's settings and
   * recalibrates the threshold on them. Per class (the distinct labels, in name order) the first
   * `shots` examples tune and the next `calibration` judge, as `tune` takes them from a class
   * folder. When it resolves the tuned model is in use (unless `apply: false`), and kept among
   * the saved models with its provenance (unless `keep: false`); when it fails or is stopped
   * (`signal`), the model in use is unchanged.
   * @param {TuneExample[]} examples
   * @param {TuneOptions} [options]
   * @returns {Promise<TuneReport>}
   */
  async tune(examples, options = {}) {
    const { onProgress, signal, keep = true, ood = [], ...settings } = options;
    if (!Array.isArray(examples) || examples.length === 0) {
      throw new ScorerError('tune takes a non-empty array of {image, label}', 'InputError');
    }
    const model = this.#model;
    if (!model) throw new ScorerError('no model is loaded yet', 'InputError');
    if (signal?.aborted) throw new ScorerError('tuning was stopped before it started', 'AbortError');
    const make = async () => {
      const images = [];
      const labels = [];
      /** @type {Transferable[]} */
      const transfer = [];
      for (const [i, ex] of examples.entries()) {
        if (!ex || typeof ex !== 'object' || typeof ex.label !== 'string' || !ex.label.trim()) {
          throw new ScorerError(`example ${i + 1} needs a label (a class name)`, 'InputError');
        }
        let m;
        try {
          m = await imageMessage(ex.image);
        } catch (e) {
          const where = `picture ${i + 1} (of \`${ex.label}\`)`;
          if (e instanceof ScorerError) {
            e.message = `${where}: ${e.message}`;
            throw e;
          }
          throw new ScorerError(`${where}: ${e instanceof Error ? e.message : e}`, 'InputError');
        }
        images.push(m.message);
        transfer.push(...m.transfer);
        labels.push(ex.label);
      }
      const outliers = [];
      for (const [i, image] of ood.entries()) {
        const m = await imageMessage(image).catch((e) => {
          throw new ScorerError(`out-of-distribution picture ${i + 1}: ${e instanceof Error ? e.message : e}`, 'InputError');
        });
        outliers.push(m.message);
        transfer.push(...m.transfer);
      }
      const source = await model.source.source();
      return { payload: { images, labels, ood: outliers, options: settings, model: source.message, keep }, transfer: [...transfer, ...source.transfer] };
    };
    const stop = () => {
      this.#send('cancelTune', {}).catch(() => {});
    };
    signal?.addEventListener('abort', stop, { once: true });
    /** @type {{report: Omit<TuneReport, 'bundle'>, info: ModelInfo, bundle: Uint8Array}} */
    let result;
    try {
      result = await this.#call('tune', make, onProgress);
    } finally {
      signal?.removeEventListener('abort', stop);
    }
    if (settings.apply !== false) {
      this.#model = { ...model, source: modelSource(result.bundle, []) };
      this.#classes = null;
      this.#threshold = undefined;
      this.#calibration = null;
      this.#setInfo(result.info);
    }
    return { ...result.report, bundle: result.bundle };
  }

  /** The models converted here before and kept (newest first). @returns {Promise<CachedModel[]>} */
  async cachedModels() {
    return this.#call('cachedModels', { payload: {} });
  }

  /**
   * A kept model's bundle bytes (load them with `load`), or null when it is not kept.
   * @param {string} id `CachedModel.id`
   * @returns {Promise<Uint8Array | null>}
   */
  async cachedModel(id) {
    return this.#call('cachedModel', { payload: { modelId: id } });
  }

  /**
   * Deletes a kept model and the class text features made for it.
   * @param {string} id `CachedModel.id`
   * @returns {Promise<boolean>} whether it was kept
   */
  async deleteCachedModel(id) {
    return this.#call('deleteCachedModel', { payload: { modelId: id } });
  }

  /**
   * Stops a `setClasses` that is computing text features (it then fails, and the classes in
   * use stay). Resolves to whether one was running.
   * @returns {Promise<boolean>}
   */
  async cancelClasses() {
    if (!this.#channel.running) return false;
    return this.#send('cancelClasses', {});
  }

  /** Stops an import in progress (it then fails with "the import was cancelled"). */
  async cancelImport() {
    if (!this.#channel.running) return;
    await this.#send('cancelImport', {});
  }

  /** Stops the worker; every later call fails. Safe to call twice. */
  dispose() {
    this.#broken = 'the scorer was disposed';
    this.#channel.close(new ScorerError(this.#broken, 'DisposedError'));
  }

  // ------------------------------------------------------------------ the worker

  #start() {
    const url = this.#options.workerUrl ?? new URL('./worker.js', import.meta.url);
    this.#channel = new WorkerChannel(url, (event) => {
      this.#observe(event);
      this.#options.onProgress?.(event);
    });
  }

  /** Keeps `device`, `deviceReason` and `info` in step with what the worker reports. */
  #observe(event) {
    if (event.status === 'ready') this.#state = { device: event.device, reason: event.reason, info: event.info };
    else if (event.status === 'fallback' && this.#state) this.#state = { ...this.#state, device: event.device, reason: event.reason };
  }

  #setInfo(info) {
    if (this.#state) this.#state = { ...this.#state, info };
  }

  async #send(op, payload, transfer = [], onProgress = undefined) {
    if (this.#broken) throw new ScorerError(this.#broken, 'DisposedError');
    return this.#channel.send(op, payload, transfer, onProgress);
  }

  /**
   * A request, with the one recovery path: a crash restarts the worker and the request fails; a
   * GPU failure while the model runs on WebGPU moves it to the CPU and the request is tried
   * once more there. Either way the model, its classes, threshold and calibration (this
   * object's state, not the worker's) are replayed into the new one.
   * @param {Op} op
   * @param {Message} message
   * @param {(event: ProgressEvent) => void} [onProgress]
   */
  async #call(op, message, onProgress = undefined) {
    const make = typeof message === 'function' ? message : async () => message;
    const send = async () => {
      const { payload, transfer = [] } = await make();
      return this.#send(op, payload, transfer, onProgress);
    };
    try {
      return await send();
    } catch (e) {
      if (!(e instanceof ScorerError)) throw e;
      if (e.name === 'CrashError') {
        await this.#recover(e, true);
        throw e;
      }
      if (op !== 'load' && this.#state?.device === 'webgpu' && isGpuFailure(e) && this.#model) {
        await this.#recover(e, false);
        if (this.#broken) throw e;
        return send();
      }
      throw e;
    }
  }

  /** The `load` request for a model source. */
  async #loadMessage(source, device, precision) {
    const { message, transfer } = await source.source();
    const { threads = 'auto', activations = 'i16' } = this.#options;
    return { payload: { source: message, device, precision, threads, activations }, transfer };
  }

  /**
   * After a crash (`restart`: a fresh worker) or a GPU failure: the model in use loaded again,
   * on the CPU if it ran on WebGPU, then its classes, threshold and calibration replayed.
   * @param {ScorerError} error
   * @param {boolean} restart
   */
  async #recover(error, restart) {
    if (restart) {
      const now = Date.now();
      this.#restarts = this.#restarts.filter((t) => now - t < RESTART_WINDOW_MS);
      this.#channel.close(new ScorerError(`the scorer restarted after a crash (${error.message})`, 'CrashError'));
      if (!this.#model || this.#restarts.length >= MAX_RESTARTS) {
        this.#broken = `the scorer crashed (${error.message}); reload the page to try again`;
        return;
      }
      this.#restarts.push(now);
    }
    const model = this.#model;
    if (!model) return;
    const device = this.#state?.device === 'webgpu' ? 'cpu' : model.device;
    if (restart) {
      this.#options.onProgress?.({ status: 'restart', message: `the scorer crashed (${error.message}) and restarts${device === 'cpu' ? ' on the CPU' : ''}` });
      this.#start();
    }
    try {
      const { payload, transfer } = await this.#loadMessage(model.source, device, model.precision);
      await this.#send('load', payload, transfer);
      this.#model = { ...model, device };
      if (this.#classes) this.#setInfo(await this.#send('setClasses', this.#classes));
      if (this.#threshold !== undefined) this.#setInfo(await this.#send('setThreshold', { value: this.#threshold }));
      if (this.#calibration) this.#setInfo(await this.#send('calibrate', this.#calibration));
    } catch (e) {
      this.#broken = `the scorer ${restart ? 'crashed and could not restart' : 'could not move to the CPU'} (${e instanceof Error ? e.message : e}); reload the page`;
      return;
    }
    if (!restart && this.#state) {
      /** @type {DeviceReason} */
      const reason = { code: 'webgpu-failed', message: 'WebGPU failed while running the model, so the model now runs on the CPU.', detail: error.message };
      this.#state = { ...this.#state, reason };
      this.#options.onProgress?.({ status: 'fallback', device: 'cpu', reason, info: this.#state.info });
    }
  }
}
