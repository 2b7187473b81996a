// transformers.js (onnxruntime-web, wasm backend) in headless Chromium on the same random-weight
// CLIP as our bundle: prints a line in tests/e2e/bench.mjs's format, labelled transformers.js-wasm.
//
//   node tools/web/tjs-bench/run.mjs --model-dir target/tjs/b32/tjs --images a.jpg,b.jpg
//        [--runs 3] [--dtype q8|fp32] [--threads 1|N|default] [--timeout-ms N] [--verbose]
//
// --model-dir is what tools/reference/export_onnx.py wrote as OUT/tjs. --threads 1 (the default)
// matches our single-threaded wasm CPU backend; `default` leaves onnxruntime-web's own choice.
// Needs `npm ci` here (transformers.js) and in tests/e2e (playwright-core, for browser.mjs).
//
// The page is served by tests/e2e/server.mjs with the project's CSP and COOP/COEP (so threads
// are possible) from a staging folder, target/tjs/site: the server serves one root and refuses
// symlinks out of it, so the page, transformers.js's dist files and the model are hard-linked
// (copied across file systems) into it.
import { copyFile, link, mkdir, readdir, readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium, sampleRss } from '../../../tests/e2e/browser.mjs';
import { startServer } from '../../../tests/e2e/server.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../../..');
const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const modelDir = arg('model-dir');
const images = arg('images', '').split(',').filter(Boolean);
const runs = Number(arg('runs', '3'));
const dtype = arg('dtype', 'q8');
const threads = arg('threads', '1');
const timeout = Number(arg('timeout-ms', String(30 * 60_000)));
const verbose = process.argv.includes('--verbose');
const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
if (!modelDir || images.length === 0) {
  console.error('usage: node run.mjs --model-dir DIR --images a.jpg[,b.jpg] [--runs 3] [--dtype q8|fp32] [--threads 1|N|default]');
  process.exit(2);
}

async function linkOrCopy(from, to) {
  if ((await stat(from)).isDirectory()) {
    await mkdir(to, { recursive: true });
    for (const name of await readdir(from)) await linkOrCopy(path.join(from, name), path.join(to, name));
    return;
  }
  await link(from, to).catch(() => copyFile(from, to));
}

// Stage the site: page + the browser bundle (onnxruntime-web inside) + its .wasm + the model.
const site = path.join(repo, 'target/tjs/site');
const tjs = path.join(here, 'node_modules/@huggingface/transformers');
await rm(site, { recursive: true, force: true });
await mkdir(path.join(site, 'dist'), { recursive: true });
for (const f of ['index.html', 'bench.js']) await copyFile(path.join(here, f), path.join(site, f));
// transformers.js 4 bundles onnxruntime-web's JavaScript but loads its .wasm (and the .mjs that
// starts it) from wasmPaths; which variant it picks (asyncify, jsep, …) varies by release, so
// every one onnxruntime-web ships is staged.
await linkOrCopy(path.join(tjs, 'dist/transformers.js'), path.join(site, 'dist/transformers.js'));
const ortDist = path.join(here, 'node_modules/onnxruntime-web/dist');
for (const f of await readdir(ortDist)) {
  if (/^ort-wasm-simd-threaded.*\.(wasm|mjs)$/.test(f)) await linkOrCopy(path.join(ortDist, f), path.join(site, 'dist', f));
}
await linkOrCopy(path.resolve(modelDir), path.join(site, 'models/clip'));

const version = async (dir) => JSON.parse(await readFile(path.join(dir, 'package.json'), 'utf8')).version;
const ortVersion = await version(path.join(here, 'node_modules/onnxruntime-web'));
const server = await startServer({ root: site, port: 0 });
const query = new URLSearchParams({ model: 'clip', dtype, threads });
console.log(`model ${modelDir} (${dtype}); ${images.length} images × ${runs} runs; medians`);
const { context, userDataDir } = await launchChromium('cpu'); // wasm needs no WebGPU adapter
try {
  const page = context.pages()[0] ?? (await context.newPage());
  if (verbose) {
    page.on('console', (m) => console.log(`[page] ${m.type()}: ${m.text()}`));
    page.on('response', (r) => r.status() >= 400 && console.log(`[page] ${r.status()} ${r.url()}`));
  }
  const visit = sampleRss(); // over the visit: download, load, scoring, as tests/e2e/bench.mjs
  const t0 = Date.now();
  await page.goto(`${server.url}?${query}`);
  await page.locator('body[data-state=ready], body[data-state=error]').waitFor({ timeout, state: 'attached' });
  const data = await page.evaluate(() => ({ ...document.body.dataset }));
  if (data.state !== 'ready') throw new Error(`page: ${data.error}`);
  const readyS = (Date.now() - t0) / 1000;
  // onnxruntime-web runs extra threads as (module) workers: none at all means one thread.
  const workers = page.workers().length;
  const totals = [];
  const towers = [];
  let label;
  const rss = sampleRss(); // Chromium's resident memory while scoring, as tests/e2e/bench.mjs
  for (let r = 0; r < runs; r++) {
    for (const file of images) {
      const b64 = (await readFile(file)).toString('base64');
      const t = await page.evaluate((b) => window.tjsBench.classify(b), b64);
      totals.push(t.totalMs);
      towers.push(t.imageMs);
      label = t.label;
      // To check against `deltaenergy score --json` on our bundle (same weights, same prompts).
      if (verbose && r === 0) console.log(`${path.basename(file)}: ${t.label}, similarities ${t.sims.map((x) => x.toFixed(4)).join(' ')}`);
    }
  }
  console.log(
    `transformers.js ${await version(tjs)}, onnxruntime-web ${ortVersion}; numThreads requested ${threads}, ` +
      `used ${data.numThreads} (${workers} workers, crossOriginIsolated ${data.isolated}, ${data.cores} cores); ` +
      `load ${Number(data.loadMs).toFixed(0)} ms; text features for the classes ${Number(data.textMs).toFixed(0)} ms (not in ready); ` +
      `last label ${label}`,
  );
  const rssPeak = await rss.stop();
  const visitPeak = await visit.stop();
  console.log('backend  ready_s  warmup_ms  image_total_ms  image_tower_ms  n  scoring_rss_peak_mb  visit_rss_peak_mb');
  console.log(
    `${'transformers.js-wasm'.padEnd(8)} ${readyS.toFixed(1).padStart(7)} ${Number(data.warmupMs).toFixed(0).padStart(10)} ` +
      `${median(totals).toFixed(0).padStart(15)} ${median(towers).toFixed(0).padStart(15)} ${String(totals.length).padStart(3)} ` +
      `${String(Math.round(rssPeak / 1e6)).padStart(8)} ${String(Math.round(visitPeak / 1e6)).padStart(8)}`,
  );
  if (verbose) console.log(`per image total_ms ${totals.map((x) => x.toFixed(1)).join(' ')}; tower_ms ${towers.map((x) => x.toFixed(1)).join(' ')}`);
} finally {
  await context.close();
  await rm(userDataDir, { recursive: true, force: true });
  await server.close();
}
process.exit(0);
