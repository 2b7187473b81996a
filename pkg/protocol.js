// The messages between `index.js` and `worker.js`, one union each way, told apart by `op` and
// `kind`. tsc checks both sides against them (make package).

/**
 * An image as it crosses to the worker.
 * @typedef {{kind: 'encoded', bytes: ArrayBuffer, type: string}
 *   | {kind: 'rgba', width: number, height: number, rgba: ArrayBuffer}
 *   | {kind: 'bitmap', bitmap: ImageBitmap}} ImageMessage
 */

/**
 * A model as it crosses to the worker: a URL (checked against the allowed origins there) or bytes.
 * @typedef {{kind: 'url', href: string, allowedOrigins: string[]} | {kind: 'bytes', bytes: ArrayBuffer}} ModelMessage
 */

/**
 * A request. Each gets exactly one final reply (`ok` or `error`) and any number of `progress`
 * replies before it. Requests that use the model run one at a time, in order; `judge`,
 * `cachedModels` and the `cancel…` requests do not wait in line.
 * @typedef {{id: number} & (
 *   {op: 'load', source: ModelMessage, device: import('./types.js').DeviceRequest, precision: import('./types.js').PrecisionRequest, threads: 'auto' | number,
 *      activations: import('./types.js').ActivationsRequest}
 *   | {op: 'classify', image: ImageMessage, topK: number}
 *   | {op: 'classifyMany', images: ImageMessage[], topK: number, batchSize: number}
 *   | {op: 'setClasses', classes: string[], templates: string[] | null}
 *   | {op: 'setThreshold', value: number | null}
 *   | {op: 'calibrate', scores: import('./types.js').Scores[], tpr: number}
 *   | {op: 'judge', scores: import('./types.js').Scores[]}
 *   | {op: 'import', source: {kind: 'files', files: import('./types.js').CheckpointFiles} | {kind: 'hub', base: string, repo: string, revision: string},
 *      allowedOrigins?: string[], quant: string, classes: string[], cache: boolean}
 *   | {op: 'cachedModels'}
 *   | {op: 'cachedModel', modelId: string}
 *   | {op: 'deleteCachedModel', modelId: string}
 *   | {op: 'tune', images: ImageMessage[], labels: string[], ood: ImageMessage[], model: ModelMessage, options: object, keep: boolean}
 *   | {op: 'cancelImport'}
 *   | {op: 'cancelClasses'}
 *   | {op: 'cancelTune'}
 * )} Request
 */

/**
 * A reply, or the worker's one message at start (`boot`).
 * @typedef {{id: number, kind: 'ok', value: any}
 *   | {id: number, kind: 'error', error: {name: import('./errors.js').ErrorName, message: string}}
 *   | {id: number, kind: 'progress', event: import('./types.js').ProgressEvent}
 *   | {kind: 'boot', ok: true}} Reply
 */

/** @typedef {Request['op']} Op */

export {};
