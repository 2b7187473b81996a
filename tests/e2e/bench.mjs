// Browser figures for the closing notes: time to ready (download + load + warm-up), the warm-up
// itself, per-image latency, and Chromium's peak memory while scoring and over the whole visit,
// for a bundle on WebGPU (SwiftShader here) and on the CPU.
//
//   node tests/e2e/bench.mjs --model models/b32.bundle --images a.jpg,b.jpg [--runs 3] [--backends webgpu,cpu]
//                            [--threads auto|N] [--activations i16|u7]
//
// `--model` is a URL relative to www/; `--threads` is the page's `?threads=` (the CPU's pool;
// the engine line it got is printed). Prints one line per backend; medians over runs × images.
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium, sampleRss, scorePicture } from './browser.mjs';
import { startServer } from './server.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const model = arg('model', 'models/default.bundle');
const images = arg('images', '').split(',').filter(Boolean);
const runs = Number(arg('runs', '3'));
const backends = arg('backends', 'webgpu,cpu').split(',');
const timeout = Number(arg('timeout-ms', String(30 * 60_000)));
const threads = arg('threads', 'auto');
const activations = arg('activations', 'i16');
const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];

const server = await startServer({ root: path.join(here, '../../www'), port: 0 });
console.log(`model ${model}; ${images.length} images × ${runs} runs; medians`);
console.log('backend  ready_s  warmup_ms  image_total_ms  image_tower_ms  n  scoring_rss_peak_mb  visit_rss_peak_mb');
try {
  for (const which of backends) {
    const { context, userDataDir } = await launchChromium(which);
    try {
      const page = context.pages()[0] ?? (await context.newPage());
      // Chromium's resident memory (all its processes) over the visit: download, load, scoring.
      const visit = sampleRss();
      const t0 = Date.now();
      await page.goto(`${server.url}?${new URLSearchParams({ model, backend: 'auto', threads, activations })}`);
      await page.locator('[data-testid=ready], [data-testid=error]').first().waitFor({ timeout });
      const ready = page.locator('[data-testid=ready]');
      if (!(await ready.count())) throw new Error(await page.locator('[data-testid=error]').textContent());
      const readyS = (Date.now() - t0) / 1000;
      const warmup = Number(await ready.getAttribute('data-warmup-ms'));
      const backend = (await page.locator('[data-testid=backend]').textContent()).trim();
      console.error(`engine: ${(await page.locator('[data-testid=engine]').textContent()).trim()}`);
      const totals = [];
      const towers = [];
      // Chromium's resident memory (all its processes) while the page scores the images.
      const rss = sampleRss();
      for (let r = 0; r < runs; r++) {
        for (const file of images) {
          const { totalMs, imageMs } = await scorePicture(page, file, `${r}-${path.basename(file)}`, timeout);
          totals.push(totalMs);
          towers.push(imageMs);
        }
      }
      console.log(
        `${backend.padEnd(8)} ${readyS.toFixed(1).padStart(7)} ${warmup.toFixed(0).padStart(10)} ` +
          `${median(totals).toFixed(0).padStart(15)} ${median(towers).toFixed(0).padStart(15)} ${String(totals.length).padStart(3)} ` +
          `${String(Math.round((await rss.stop()) / 1e6)).padStart(8)} ${String(Math.round((await visit.stop()) / 1e6)).padStart(8)}`,
      );
    } finally {
      await context.close();
      await rm(userDataDir, { recursive: true, force: true });
    }
  }
} finally {
  await server.close?.();
}
process.exit(0);
