// The package's types, as JSDoc: `tsc --checkJs` checks the code against them and emits them as
// `types/*.d.ts` (make package). One casing throughout: camelCase keys, and score names spelled
// as the keys of `Scores`.

/**
 * Where to run: `auto` tries WebGPU and falls back to the CPU.
 * @typedef {'auto' | 'webgpu' | 'cpu'} DeviceRequest
 */

/**
 * The image tower's precision on WebGPU: `auto` runs f16 on real GPUs that offer `shader-f16`
 * (f32 accumulation in the matmuls, LayerNorm in f32; image features match f32 to a cosine of
 * 0.9999 or better) and f32 elsewhere; `f16` fails with an InputError where the adapter has
 * no `shader-f16` or the model runs on the CPU. The CPU always runs f32.
 * @typedef {'auto' | 'f32' | 'f16'} PrecisionRequest
 */

/**
 * How the CPU path quantizes activations for q8 and q4 weights: `i16` keeps the f32 model's
 * numbers to about 1e-5; `u7` quantizes each row to 128 levels over its range and puts the
 * weights' block scales on a grid, which is faster (in browsers with WebAssembly's relaxed SIMD,
 * the package then loads its relaxed-SIMD build) and coarser: on ViT-B/32 its image features
 * keep a cosine of 0.9995 or better with f32's (docs/PERFORMANCE.md). WebGPU ignores it.
 * @typedef {'i16' | 'u7'} ActivationsRequest
 */

/**
 * Where the model runs: WebGPU, or the CPU (burn's `flex` backend in WebAssembly).
 * @typedef {'webgpu' | 'cpu'} Device
 */

/**
 * Why the model runs where it runs.
 * - `requested`: the caller asked for this device.
 * - `webgpu`: a WebGPU adapter was granted.
 * - `no-webgpu`: the browser offers no WebGPU adapter, so the CPU runs it.
 * - `webgpu-failed`: WebGPU failed while loading or running, so the CPU took over.
 * @typedef {object} DeviceReason
 * @property {'requested' | 'webgpu' | 'no-webgpu' | 'webgpu-failed'} code
 * @property {string} message a sentence for people
 * @property {string} detail the raw text behind it (an adapter's name, a driver's error), or ""
 */

/**
 * The names of the four scores; every score is "higher = more in-distribution".
 * @typedef {'deltaEnergy' | 'energy' | 'mcm' | 'maxLogit'} ScoreName
 */

/**
 * One image's scores: ΔEnergy = LSE(s/τ) − LSE(s′/τ) with the top `c` similarities cropped,
 * energy = LSE(s/τ) (the negative energy), MCM = max softmax(s/τ_MCM), MaxLogit = max s/τ.
 * @typedef {object} Scores
 * @property {number} deltaEnergy
 * @property {number} energy
 * @property {number} mcm
 * @property {number} maxLogit
 */

/**
 * The settings the scores are computed with.
 * @typedef {object} ScoreSettings
 * @property {number} tau the temperature on cosine similarities
 * @property {number} c how many of the top similarities ΔEnergy crops
 * @property {number} cropValue what they are cropped to
 * @property {number} mcmTau the temperature of MCM's softmax
 */

/**
 * The OOD threshold in force: an image whose `score` is below `value` is flagged OOD.
 * @typedef {object} Threshold
 * @property {ScoreName} score
 * @property {number} value
 * @property {number | null} tpr the share of in-distribution images it keeps, when calibrated
 * @property {string} calibration how it was set, for people
 */

/**
 * Where a model came from.
 * @typedef {object} Provenance
 * @property {string} source what it was converted or trained from
 * @property {string} converter the `deltaenergy` version that wrote the bundle
 * @property {number} created seconds since the Unix epoch, 0 when unknown
 */

/**
 * What a loaded model is.
 * @typedef {object} ModelInfo
 * @property {string[]} classes the class names in use
 * @property {string[]} bundleClasses the class names the bundle ships
 * @property {string} template the bundle's prompt template ("a photo of a {}.")
 * @property {string[]} templates the templates given with the classes (several: CLIP's prompt
 *   ensemble); empty when the bundle's own prompt is in use
 * @property {boolean} hasContext whether the prompt is learned context vectors
 * @property {Threshold | null} threshold the threshold in force (the bundle's, or one set since)
 * @property {Threshold | null} bundleThreshold the bundle's own threshold
 * @property {ScoreSettings} scoreSettings
 * @property {'f32' | 'f16' | 'q8' | 'q4'} quant the precision of the linear weights
 * @property {number} imageSize the side of the square the image is resized to
 * @property {Provenance} provenance
 * @property {number} bytes the bundle's size
 * @property {string} sha256 the bundle's checksum (hex)
 * @property {string} engine what computes the products ("burn flex on one thread, q8 weights
 *   one byte each, int8 matmul (simd128)")
 * @property {'f32' | 'f16'} precision the image tower's activations: f16 on WebGPU adapters that
 *   offer `shader-f16` (see `PrecisionRequest`), else f32; the text tower is always f32
 * @property {Adapter | null} adapter the WebGPU adapter, null on the CPU
 * @property {string} version the version of deltaenergy that loaded it
 */

/**
 * The WebGPU adapter as far as the model's choices go.
 * @typedef {object} Adapter
 * @property {string} name what the browser tells of it (often empty: browsers withhold it)
 * @property {boolean} software a CPU implementation of WebGPU (SwiftShader and the like)
 * @property {boolean} f16 whether it runs f16 shaders (`shader-f16`)
 */

/**
 * A class and its softmax(s/τ) probability.
 * @typedef {object} RankedClass
 * @property {string} label
 * @property {number} probability
 */

/**
 * One image's verdict.
 * @typedef {object} ClassifyResult
 * @property {string} label the best-matching class
 * @property {number} labelIndex its index in `ModelInfo.classes`
 * @property {RankedClass[]} top the best `topK` classes
 * @property {Scores} scores
 * @property {Threshold | null} threshold the threshold it was judged against
 * @property {boolean | null} ood whether it is flagged out-of-distribution (null: no threshold)
 * @property {number[]} similarities the cosine similarity with each class
 * @property {number[]} cropped the similarities after ΔEnergy's crop
 * @property {number} energyBefore LSE(s/τ)
 * @property {number} energyAfter LSE(s′/τ)
 * @property {number} tau
 * @property {number} c
 * @property {{decodeMs: number, imageMs: number, scoreMs: number, totalMs: number, batch: number}} timings
 *   milliseconds; `batch` is how many images shared the image tower's forward pass (1 for
 *   `classify`), whose time each of them reports as its share
 * @property {'wasm' | 'browser'} decodedBy which decoder read the image
 * @property {Device} device where it ran
 */

/**
 * Progress and state changes, told apart by `status`:
 * - `check`: revalidating a cached model with the server;
 * - `download`: bytes of the model so far (`cached` when read from Cache Storage);
 * - `load`: verifying the bundle and building the model;
 * - `warmup`: running the model once so the first real image is fast;
 * - `classes`: computing the text features of new classes, `done` of `total` prompts (0 of 0
 *   before it knows), or taking them from the cache (`cached`);
 * - `source`: a Hub import reads `file` (`bytes` long) at `revision` (`commit`); `why` says
 *   why, when it is not the revision asked for (main's conversion pull request), else "";
 * - `import`: converting a checkpoint, `loaded` of `total` bytes read, tensor `tensor` of
 *   `tensors` (0 while its table of contents is read); `format` is the weights file's kind
 *   (`model.safetensors` or `pytorch_model.bin`) once its first bytes are read, else "";
 * - `cached`: the checkpoint was converted before: its bundle (`name`, `bytes` long) comes from
 *   the cache, with no request;
 * - `ready`: the model is ready on `device`;
 * - `fallback`: WebGPU failed, the model now runs on the CPU (`reason` says why);
 * - `restart`: the scorer crashed and restarts its worker (`message` says why);
 * - `tune`: prompt tuning's progress: image features of the pictures (`features`), the steps
 *   (`train`, with the step's `loss`), the validation outliers (`outliers`), the judgement
 *   (`assess`); `done` of `total`;
 * - `note`: something worth telling that changes nothing.
 * @typedef {{status: 'check'}
 *   | {status: 'download', loaded: number, total: number, cached: boolean}
 *   | {status: 'load'}
 *   | {status: 'warmup', device: Device}
 *   | {status: 'classes', done: number, total: number, cached: boolean}
 *   | {status: 'source', file: string, revision: string, commit: string, bytes: number, why: string}
 *   | {status: 'import', loaded: number, total: number, tensor: number, tensors: number, format: string}
 *   | {status: 'cached', name: string, bytes: number}
 *   | {status: 'ready', device: Device, reason: DeviceReason, info: ModelInfo, loadMs: number, warmUpMs: number, cached: boolean}
 *   | {status: 'fallback', device: Device, reason: DeviceReason, info: ModelInfo}
 *   | {status: 'restart', message: string}
 *   | {status: 'tune', stage: 'features' | 'train' | 'outliers' | 'assess', done: number, total: number, loss: number | null}
 *   | {status: 'note', message: string}} ProgressEvent
 */

/**
 * A model: a URL (same origin as the page unless listed in `allowedOrigins`), or the bundle's
 * bytes (a `File` the user picked, a `Blob`, an `ArrayBuffer`, a `Uint8Array`).
 * @typedef {string | URL | Blob | ArrayBuffer | Uint8Array} ModelSource
 */

/**
 * An image: an encoded file (`Blob`, `File`, bytes: JPEG, PNG, WebP, GIF or BMP in the wasm
 * decoder, other types the browser decodes), decoded pixels (`ImageData`, `ImageBitmap`, a
 * canvas, an `<img>`), or a URL to fetch.
 * @typedef {Blob | ArrayBuffer | Uint8Array | ImageBitmapSource | URL | string} ImageInput
 */

/**
 * A Hugging Face CLIP checkpoint's files.
 * @typedef {object} CheckpointFiles
 * @property {Blob} config `config.json`
 * @property {Blob} weights `model.safetensors` or `pytorch_model.bin` (f32, f16 or bf16)
 * @property {Blob} tokenizer `tokenizer.json` or `merges.txt`
 * @property {'merges.txt' | 'tokenizer.json'} [tokenizerKind] which of the two `tokenizer` is
 *   (default: by its file name, else tokenizer.json)
 */

/**
 * Options of `importCheckpoint` and `importFromHub`.
 * @typedef {object} ImportOptions
 * @property {'f32' | 'f16' | 'q8' | 'q4'} [quant] the bundle's precision (default q8)
 * @property {string[]} [classes] the classes the bundle ships
 * @property {boolean} [cache] keep the converted bundle, and take a Hub import from the cache
 *   when it was converted before (default true)
 * @property {(event: ProgressEvent) => void} [onProgress]
 */

/**
 * A converted model kept in the browser's Cache Storage.
 * @typedef {object} CachedModel
 * @property {string} id the key to load or delete it by
 * @property {string} name `repo@revision`, or the weights file's (folder's) name
 * @property {string} source where it came from (`hub: …` or `files: …`)
 * @property {'f32' | 'f16' | 'q8' | 'q4'} quant
 * @property {number} bytes the bundle's size
 * @property {string} sha256 the bundle's checksum
 * @property {string} checkpointSha256 SHA-256 of the checkpoint bytes the conversion read
 * @property {string} [base] a Hub import's Hub (its base URL)
 * @property {string} [repo] a Hub import's repository
 * @property {string} [revision] the revision it was asked for (`main`, a tag, a commit)
 * @property {string} [commit] the commit that revision pointed to, which it was read at
 * @property {string} [file] the weights file it was converted from
 * @property {number} saved when it was kept (milliseconds since the Unix epoch)
 * @property {{base: string, shots: number, lambda: number, epochs: number, seed: number, classes: string[], date: number}} [tuned]
 *   a tuned model's provenance: the model it was tuned from (its provenance or checksum) and how
 */

/**
 * A picture to tune on and its class.
 * @typedef {object} TuneExample
 * @property {Blob | ArrayBuffer | Uint8Array | URL | string} image an encoded picture (as
 *   `classify` takes it; decoded pixels are not taken)
 * @property {string} label its class name
 */

/**
 * `tune`'s options: the command line's flags in camelCase, with its defaults.
 * @typedef {object} TuneOptions
 * @property {string[]} [classes] the classes to tune, in order; each needs pictures (default:
 *   the labels, in name order, as the command line takes class folders)
 * @property {number} [shots] pictures per class to tune on (16)
 * @property {number} [calibration] pictures per class after them to judge and calibrate on; 0
 *   keeps the model's threshold and score settings (100)
 * @property {number} [epochs] (50)
 * @property {number} [lambda] weight of ΔEnergy in the loss; 0 is CoOp (1)
 * @property {number} [nCtx] context vectors (4)
 * @property {string} [init] words whose embeddings start the context, one token per vector;
 *   "" for random ("a photo of a")
 * @property {number} [lr] SGD's learning rate (0.002)
 * @property {number} [batch] (32)
 * @property {number} [seed] (0)
 * @property {number} [tau] the loss's temperature (the model's own)
 * @property {'positive' | 'negative' | string} [mask] (`positive`)
 * @property {boolean} [maskByLabel] (false)
 * @property {number} [validationOutliers] generated outliers to choose ΔEnergy's c and τ on;
 *   0 keeps the model's (1000)
 * @property {string[]} [validationKinds] their families (gratings, polygons)
 * @property {number[]} [selectC] (1, 2, 3, 5)
 * @property {number[]} [selectTau] (the model's τ, half and twice it)
 * @property {boolean} [apply] put the tuned model in use (true)
 * @property {boolean} [keep] keep it among the saved models (true)
 * @property {TuneExample['image'][]} [ood] pictures of no class, scored before and after for
 *   `report.before.oodDeltaEnergy` and `report.after.oodDeltaEnergy` (none)
 * @property {(event: ProgressEvent) => void} [onProgress]
 * @property {AbortSignal} [signal] stops the tuning between steps (an `AbortError`)
 */

/**
 * Pictures tuning did not see, judged with one prompt and score settings.
 * @typedef {object} HeldOut
 * @property {number | null} accuracy top-1 on the held-out pictures (null: none held out)
 * @property {number[]} deltaEnergy each held-out picture's ΔEnergy
 * @property {number[]} oodDeltaEnergy each `ood` picture's
 * @property {number | null} auroc ΔEnergy's AUROC, held-out pictures against `ood` ones
 */

/**
 * What tuning did: the command line's `tune` report in camelCase, plus the held-out pictures'
 * ΔEnergy and the tuned bundle.
 * @typedef {object} TuneReport
 * @property {number} seconds the steps' time
 * @property {number} bytes the tuned bundle's size
 * @property {number[]} loss mean loss of each epoch
 * @property {number} crossEntropy the last epoch's
 * @property {number} deltaEnergy the last epoch's mean ΔE of the tuning pictures
 * @property {number} tau the loss's temperature
 * @property {number} shotsAccuracy top-1 on the tuning pictures, after
 * @property {HeldOut} before on the held-out pictures with the model's own prompt and settings
 * @property {HeldOut} after the same with the tuned context and the tuned bundle's settings
 * @property {number | null} threshold the tuned bundle's ΔEnergy threshold (keeps 95% of the
 *   held-out pictures)
 * @property {number} calibrationImages
 * @property {{c: number, tau: number}} score the tuned bundle's ΔEnergy settings
 * @property {Array<{c: number, tau: number, auroc: number, fpr95: number}> | null} selection
 * @property {string[]} classes the tuned classes, in order
 * @property {number} steps
 * @property {string} provenance the tuned bundle's
 * @property {object} options every setting, defaults filled in
 * @property {Uint8Array} bundle the tuned bundle (load it, keep it, or offer it for download)
 */

/**
 * @typedef {object} CreateScorerOptions
 * @property {ModelSource} model the bundle to load
 * @property {DeviceRequest} [device] default `auto`
 * @property {PrecisionRequest} [precision] the image tower's precision on WebGPU (default `auto`)
 * @property {ActivationsRequest} [activations] the CPU's int8 scheme (default `i16`). Which
 *   build it loads is fixed by the first load.
 * @property {(event: ProgressEvent) => void} [onProgress] progress and state changes
 * @property {string[]} [allowedOrigins] origins besides the page's own that models may be
 *   fetched from (none by default)
 * @property {string | URL} [workerUrl] where `worker.js` is served, if not beside this module
 * @property {'auto' | number} [threads] threads for the CPU path (default `auto`: half the
 *   logical cores, at most 4, as onnxruntime-web). More than one needs a cross-origin isolated
 *   page (COOP `same-origin` and COEP `require-corp`) and the threaded build in `threads/`;
 *   elsewhere the CPU runs on one thread, and `info.engine` says so. Fixed by the first load.
 */

export {};
