// Which batch size pays: the package's `classifyMany` on the same images at several batch
// sizes, in headless Chromium, per backend. Per-image milliseconds (wall time of the whole call
// divided by its images), the median of --runs calls after one unmeasured call.
//
//   node tests/e2e/bench-batch.mjs --model models/default.bundle --images a.jpg,b.jpg [--count 16]
//                                  [--batches 1,2,4,8,16] [--runs 3] [--backends cpu,webgpu] [--threads auto|N]
//
// `--model` is a URL relative to www/; the images are repeated to --count.
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium } from './browser.mjs';
import { startServer } from './server.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const model = arg('model', 'models/default.bundle');
const files = arg('images', '').split(',').filter(Boolean);
const count = Number(arg('count', '16'));
const batches = arg('batches', '1,2,4,8,16').split(',').map(Number);
const runs = Number(arg('runs', '3'));
const backends = arg('backends', 'cpu,webgpu').split(',');
const threads = arg('threads', 'auto');
if (files.length === 0) throw new Error('--images a.jpg,b.jpg');
const images = await Promise.all(files.map(async (f) => [...(await readFile(f))]));

const server = await startServer({ root: path.join(here, '../../www'), port: 0 });
console.log(`model ${model}; ${count} images a call; per-image ms, median of ${runs} calls`);
console.log(`backend  ${batches.map((b) => `batch_${b}`.padStart(9)).join(' ')}`);
try {
  for (const which of backends) {
    const { context, userDataDir } = await launchChromium(which);
    try {
      const page = context.pages()[0] ?? (await context.newPage());
      // The page's origin (cross-origin isolated by the reference server), not the page itself.
      await page.goto(`${server.url}samples/index.json`);
      const row = await page.evaluate(
        async ({ model, images, count, batches, runs, which, threads }) => {
          const { createScorer } = await import('/pkg/index.js');
          const scorer = await createScorer({ model: `/${model}`, device: which, threads: threads === 'auto' ? 'auto' : Number(threads) });
          try {
            const blobs = Array.from({ length: count }, (_, i) => new Blob([new Uint8Array(images[i % images.length])]));
            const out = [];
            for (const batchSize of batches) {
              await scorer.classifyMany(blobs.slice(0, batchSize), { batchSize }); // shaders, buffers
              const times = [];
              for (let r = 0; r < runs; r++) {
                const t0 = performance.now();
                const res = await scorer.classifyMany(blobs, { batchSize });
                times.push((performance.now() - t0) / count);
                const bad = res.find((x) => x instanceof Error);
                if (bad) throw bad;
              }
              out.push(times.sort((a, b) => a - b)[Math.floor(times.length / 2)]);
            }
            return { device: scorer.device, out };
          } finally {
            scorer.dispose();
          }
        },
        { model, images, count, batches, runs, which, threads },
      );
      if (row.device !== which) throw new Error(`asked for ${which}, ran on ${row.device}`);
      console.log(`${which.padEnd(8)} ${row.out.map((v) => v.toFixed(1).padStart(9)).join(' ')}`);
    } finally {
      await context.close();
      await rm(userDataDir, { recursive: true, force: true });
    }
  }
} finally {
  await server.close();
}
process.exit(0);
