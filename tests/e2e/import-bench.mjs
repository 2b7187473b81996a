// Time and memory of importing a checkpoint in the page (headless Chromium, CPU backend): the
// seconds from picking the files to the converted model being ready, and the peak resident
// memory of Chromium's processes above what they held before the import (sampled every 50 ms
// from /proc; Linux only).
//
//   node tests/e2e/import-bench.mjs DIR [QUANT] [PRESET:PROMPTS]...
// DIR holds config.json, model.safetensors or pytorch_model.bin, and merges.txt (or
// tokenizer.json). Each
// PRESET:PROMPTS (e.g. imagenet-1k:one, cifar-10:ensemble) then applies a class preset of the
// page with that prompt choice and times the text features.
import { access, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromiumRss, launchChromium } from './browser.mjs';
import { startServer } from './server.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const [dir, quant = 'q8', ...applies] = process.argv.slice(2);
const has = (f) => access(path.join(dir, f)).then(() => true, () => false);
const tokenizer = (await has('tokenizer.json')) ? 'tokenizer.json' : 'merges.txt';
const weights = (await has('model.safetensors')) ? 'model.safetensors' : 'pytorch_model.bin';
const files = ['config.json', weights, tokenizer].map((f) => path.join(dir, f));

const server = await startServer({ root: path.join(here, '../../www'), port: 0 });
const { context } = await launchChromium('cpu');
try {
  const page = context.pages()[0] ?? (await context.newPage());
  await page.goto(`${server.url}?backend=cpu`);
  await page.locator('[data-testid=ready]').waitFor({ timeout: 120_000 });
  await new Promise((r) => setTimeout(r, 1000));
  const base = await chromiumRss();
  let peak = base;
  let convertPeak = null; // the peak up to the moment the bundle is made, before it loads
  let convertSeconds = null;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      peak = Math.max(peak, await chromiumRss());
      if (convertPeak === null) {
        const done = await page.locator('#import-box').getAttribute('data-converted-seconds').catch(() => null);
        if (done) {
          convertPeak = peak;
          convertSeconds = Number(done);
        }
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  await page.locator('#more-box summary').click();
  await page.locator('#import-quant').selectOption(quant);
  const t0 = Date.now();
  await page.locator('[data-testid=import-input]').setInputFiles(files);
  await page.waitForFunction(() => document.querySelector('#import-box')?.dataset.imports === '1', null, { timeout: 30 * 60_000 });
  const seconds = (Date.now() - t0) / 1000;
  sampling = false;
  await sampler;
  const error = await errorText(page);
  if (error) throw new Error(error);
  const status = (await page.locator('#status').textContent()).trim();
  const { size } = await stat(files[1]);
  console.log(`import ${path.basename(dir)}/${weights} (${(size / 1e6).toFixed(1)} MB) → ${quant}: ${seconds.toFixed(1)} s to ready`);
  const mb = (x) => `${(x / 1e6).toFixed(0)} MB`;
  console.log(`conversion: ${convertSeconds} s, Chromium RSS peak +${convertPeak === null ? '?' : mb(convertPeak - base)} over ${mb(base)}`);
  console.log(`to ready (conversion + load + warm-up): peak +${mb(peak - base)}`);
  console.log(status);
  for (const apply of applies) {
    const [preset, prompts] = apply.split(':');
    await page.locator('#class-preset').selectOption(preset);
    await page.locator('#class-templates').selectOption(prompts ?? 'model');
    await page.waitForFunction((p) => document.querySelector('#status').textContent.includes('in the editor'), preset);
    const applied = (await page.locator('[data-testid=classes]').getAttribute('data-applied')) ?? '';
    const t1 = Date.now();
    await page.locator('[data-testid=apply-classes]').click();
    await page.waitForFunction(
      (a) => (document.querySelector('[data-testid=classes]').dataset.applied ?? '') !== a || document.querySelector('[data-testid=error]'),
      applied,
      { timeout: 60 * 60_000 },
    );
    const s = (Date.now() - t1) / 1000;
    const error = await errorText(page);
    if (error) throw new Error(error);
    console.log(`${apply}: ${s.toFixed(1)} s — ${(await page.locator('#status').textContent()).trim()}`);
  }
} finally {
  await context.close();
  await server.close();
}

/** The page's error message, or null: a locator's textContent would wait for an element that is not there. */
async function errorText(page) {
  const error = page.locator('[data-testid=error]');
  return (await error.count()) ? error.textContent() : null;
}
