// The transformers.js side of the comparison, run by run.mjs in headless Chromium.
//
// Query: ?model=NAME (a folder under models/) &dtype=q8|fp32 &threads=1|N|default
// On load it mirrors what our page does before it reports "ready": load the image processor,
// tokenizer, vision and text models, then warm up with one image-tower run on zeros (our
// Scorer.warmUp does the same). It then sets <body data-state="ready"> with the figures as data
// attributes, or data-state="error" with the message. Per-image timing: window.tjsBench.classify.
//
// Everything is same-origin (run.mjs stages the bundle, the .wasm and the model): no CDN, no
// remote models, no Cache API (each run starts cold, like our bench's fresh profile).
import {
  AutoProcessor, AutoTokenizer, CLIPTextModelWithProjection, CLIPVisionModelWithProjection,
  RawImage, Tensor, env,
} from './dist/transformers.js';

const CIFAR10 = 'airplane,automobile,bird,cat,deer,dog,frog,horse,ship,truck';
const q = new URLSearchParams(location.search);
const model = q.get('model') ?? 'clip';
const dtype = q.get('dtype') ?? 'q8'; // transformers.js's own default on wasm; our bundle is q8 too
const threads = q.get('threads') ?? '1';
const classes = (q.get('classes') ?? CIFAR10).split(',');
const body = document.body;

function fail(message) {
  if (body.dataset.state === 'error') return;
  body.dataset.state = 'error';
  body.dataset.error = message;
  document.getElementById('state').textContent = `error: ${message}`;
}
// A CSP violation would otherwise only show up as a vague failure later on.
document.addEventListener('securitypolicyviolation', (e) => fail(`CSP blocked ${e.blockedURI} (${e.violatedDirective})`));
addEventListener('error', (e) => fail(String(e.message)));
addEventListener('unhandledrejection', (e) => fail(String(e.reason?.message ?? e.reason)));

env.allowRemoteModels = false;
env.allowLocalModels = true; // off by default in browsers
// A path, not a URL: transformers.js 4 only looks a local file up when the path has no scheme.
env.localModelPath = new URL('models/', location.href).pathname;
env.useBrowserCache = false;
const ort = env.backends.onnx.wasm;
ort.wasmPaths = new URL('dist/', location.href).href; // else it fetches the .wasm from jsDelivr
ort.proxy = false; // inference on this thread (run.mjs awaits it through page.evaluate)
// onnxruntime-web's default is min(4, ceil(cores / 2)) when cross-origin isolated, else 1.
if (threads !== 'default') ort.numThreads = Number(threads);

const norm = (v) => {
  let s = 0;
  for (const x of v) s += x * x;
  s = Math.sqrt(s) || 1;
  return Float32Array.from(v, (x) => x / s);
};
const rows = (t) => Array.from({ length: t.dims[0] }, (_, i) => norm(t.data.subarray(i * t.dims[1], (i + 1) * t.dims[1])));

let state;

async function load() {
  const opts = { device: 'wasm', dtype };
  const t0 = performance.now();
  const [processor, tokenizer, vision, text] = await Promise.all([
    AutoProcessor.from_pretrained(model),
    AutoTokenizer.from_pretrained(model),
    CLIPVisionModelWithProjection.from_pretrained(model, opts),
    CLIPTextModelWithProjection.from_pretrained(model, opts),
  ]);
  const loadMs = performance.now() - t0;

  const size = vision.config.vision_config?.image_size ?? vision.config.image_size;
  const zeros = new Tensor('float32', new Float32Array(3 * size * size), [1, 3, size, size]);
  const t1 = performance.now();
  await vision({ pixel_values: zeros });
  const warmupMs = performance.now() - t1;

  // Our bundles carry precomputed class features; these are timed apart from "ready".
  const t2 = performance.now();
  const ids = tokenizer(classes.map((c) => `a photo of a ${c}.`), {
    padding: 'max_length', max_length: 77, truncation: true, // CLIP's fixed context, as ours
  });
  const { text_embeds } = await text({ input_ids: ids.input_ids });
  const textMs = performance.now() - t2;

  state = { processor, vision, textFeatures: rows(text_embeds) };
  Object.assign(body.dataset, {
    loadMs: loadMs.toFixed(1), warmupMs: warmupMs.toFixed(1), textMs: textMs.toFixed(1),
    numThreads: String(ort.numThreads), // what onnxruntime-web settled on once initialised
    isolated: String(globalThis.crossOriginIsolated), cores: String(navigator.hardwareConcurrency),
    imageSize: String(size),
  });
  body.dataset.state = 'ready';
  document.getElementById('state').textContent = 'ready';
}

/** Decode + preprocess + image tower + cosine scores for one encoded image (base64). */
async function classify(base64) {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  const t0 = performance.now();
  const image = await RawImage.fromBlob(new Blob([bytes]));
  const inputs = await state.processor(image);
  const t1 = performance.now();
  const { image_embeds } = await state.vision(inputs);
  const t2 = performance.now();
  const f = rows(image_embeds)[0];
  const sims = state.textFeatures.map((t) => t.reduce((s, x, i) => s + x * f[i], 0));
  const best = sims.indexOf(Math.max(...sims));
  const t3 = performance.now();
  return { totalMs: t3 - t0, imageMs: t2 - t1, decodeMs: t1 - t0, label: classes[best], sims };
}

window.tjsBench = { classify };
load().catch((e) => fail(String(e?.message ?? e)));
