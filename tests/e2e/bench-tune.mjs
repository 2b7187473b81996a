// Prompt tuning's speed and memory in the page: `scorer.tune` on a folder of class folders, in
// headless Chromium, per backend. Prints steps a second (the report's steps over its seconds:
// the steps alone, not the image features before them) and Chromium's peak resident memory
// (every Chromium process, sampled every 100 ms while tuning) beside its memory before.
//
//   node tests/e2e/bench-tune.mjs --model models/default.bundle --data DIR [--shots 8]
//                                 [--epochs 2] [--batch 8] [--backends cpu,webgpu] [--threads auto|N]
//
// `--model` is a URL relative to www/ or a file elsewhere (copied into www/models/ for the run).
import { copyFile, readFile, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromiumRss, launchChromium } from './browser.mjs';
import { startServer } from './server.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const www = path.join(here, '../../www');
const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
let model = arg('model', 'models/default.bundle');
const data = arg('data', '');
const shots = Number(arg('shots', '8'));
const epochs = Number(arg('epochs', '2'));
const batch = Number(arg('batch', '8'));
const backends = arg('backends', 'cpu,webgpu').split(',');
const threads = arg('threads', 'auto');
if (!data) throw new Error('--data DIR (a folder of class folders)');
let copied = null;
if (!model.startsWith('models/')) {
  copied = path.join(www, 'models', `bench-tune-${process.pid}.bundle`);
  await copyFile(model, copied);
  model = `models/${path.basename(copied)}`;
}
const pictures = [];
for (const label of (await readdir(data)).sort()) {
  for (const f of (await readdir(path.join(data, label))).sort().slice(0, shots)) {
    pictures.push({ label, bytes: [...(await readFile(path.join(data, label, f)))] });
  }
}

const server = await startServer({ root: www, port: 0 });
console.log(`model ${arg('model', model)}; ${pictures.length} pictures (${shots} a class), batch ${batch}, ${epochs} epochs`);
console.log('backend   steps  seconds  steps/s   MB before   MB peak');
try {
  for (const which of backends) {
    const { context, userDataDir } = await launchChromium(which);
    try {
      const page = context.pages()[0] ?? (await context.newPage());
      page.setDefaultTimeout(3_600_000);
      await page.goto(`${server.url}samples/index.json`);
      await page.evaluate(async ({ model, which, threads }) => {
        const { createScorer } = await import('/pkg/index.js');
        const t = threads === 'auto' ? 'auto' : Number(threads);
        window.scorer = await createScorer({ model: `/${model}`, device: which, threads: t, precision: 'f32' });
      }, { model, which, threads });
      const before = await chromiumRss();
      let peak = before;
      const timer = setInterval(async () => {
        peak = Math.max(peak, await chromiumRss());
      }, 100);
      const r = await page.evaluate(async ({ pictures, shots, epochs, batch }) => {
        const examples = pictures.map((p) => ({ image: new Blob([new Uint8Array(p.bytes)]), label: p.label }));
        const report = await window.scorer.tune(examples, { shots, calibration: 0, epochs, batch, validationOutliers: 0, apply: false, keep: false });
        const device = window.scorer.device;
        window.scorer.dispose();
        return { steps: report.steps, seconds: report.seconds, device };
      }, { pictures, shots, epochs, batch });
      clearInterval(timer);
      if (r.device !== which) throw new Error(`asked for ${which}, ran on ${r.device}`);
      const mb = (b) => (b / 1e6).toFixed(0).padStart(9);
      console.log(`${which.padEnd(8)} ${String(r.steps).padStart(6)} ${r.seconds.toFixed(1).padStart(8)} ${(r.steps / r.seconds).toFixed(2).padStart(8)} ${mb(before)}   ${mb(peak)}`);
    } finally {
      await context.close();
      await rm(userDataDir, { recursive: true, force: true });
    }
  }
} finally {
  await server.close();
  if (copied) await rm(copied, { force: true });
}
process.exit(0);
