// Browser tests for www/ in Debian's headless Chromium (never a downloaded browser):
// once with WebGPU (SwiftShader, --enable-unsafe-webgpu) and once without (the CPU fallback).
//
//   cd tests/e2e && npm install && node run.mjs
//
// Environment:
//   E2E_ID_IMAGE, E2E_OOD_IMAGE  images to score (paths)
//   E2E_EXPECTED                 JSON from the CLI: {"<file name>": {"label": ..., "delta_energy": ...}}
//   E2E_DAMAGED_BUNDLE           a damaged .bundle (default: a copy of models/default.bundle with a flipped byte)
//   E2E_BACKENDS                 which runs, default "webgpu,cpu,cpu-unisolated": the cpu run asks
//                                for E2E_THREADS (default 2) threads on an isolated page (the
//                                threaded build); cpu-unisolated serves the page without COOP/COEP
//                                (one thread) and scores one image against the CLI
//   E2E_MODEL                    bundle URL for the page (?model=), default the page's own default
//   E2E_READY_TIMEOUT_MS         default 600000 (SwiftShader is slow)
//   E2E_STEP_TIMEOUT_MS          per scored image etc., default 300000
//   CHROMIUM                     default /usr/bin/chromium
//   E2E_ROOT                     the folder to serve, default www/
// Prints "N passed, M failed" last; exits 1 on any failure.

import { createHash } from 'node:crypto';
import { mkdir, readFile, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';
import { launchChromium } from './browser.mjs';
import { startServer, csp, mimeType } from './server.mjs';
import { startHub } from './hub.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const WWW = path.resolve(process.env.E2E_ROOT ?? path.join(here, '../../www'));
const SHOTS = path.join(here, 'screenshots');
const env = process.env;
const READY_TIMEOUT = Number(env.E2E_READY_TIMEOUT_MS ?? 600_000);
const STEP_TIMEOUT = Number(env.E2E_STEP_TIMEOUT_MS ?? 300_000);
const TOLERANCE = 1e-3;
const THREADS = Number(env.E2E_THREADS ?? 2);

// ---------------------------------------------------------------- tiny test harness

let passed = 0;
let failed = 0;
let skipped = 0;
const failures = [];

function ok(name, detail = '') {
  passed += 1;
  console.log(`  ok    ${name}${detail ? ` — ${detail}` : ''}`);
}
function fail(name, detail) {
  failed += 1;
  failures.push(`${name}: ${detail}`);
  console.log(`  FAIL  ${name} — ${detail}`);
}
function skip(name, why) {
  skipped += 1;
  console.log(`  skip  ${name} — ${why}`);
}
async function check(name, fn) {
  try {
    const detail = await fn();
    ok(name, typeof detail === 'string' ? detail : '');
    return true;
  } catch (e) {
    fail(name, e?.message?.split('\n')[0] ?? String(e));
    return false;
  }
}
function assert(cond, message) {
  if (!cond) throw new Error(message);
}

// ---------------------------------------------------------------- inputs

/** A solid-colour RGB PNG, written with node:zlib. */
function solidPng(width, height, [r, g, b]) {
  const crc32 = zlib.crc32;
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(td) >>> 0);
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  const stride = 1 + width * 3;
  const row = Buffer.alloc(stride);
  for (let x = 0; x < width; x++) row.set([r, g, b], 1 + x * 3);
  const deflate = zlib.createDeflate({ level: 9 });
  const parts = [];
  deflate.on('data', (d) => parts.push(d));
  const done = new Promise((resolve, reject) => {
    deflate.on('end', resolve);
    deflate.on('error', reject);
  });
  return (async () => {
    for (let y = 0; y < height; y++) {
      if (!deflate.write(row)) await new Promise((res) => deflate.once('drain', res));
    }
    deflate.end();
    await done;
    return Buffer.concat([
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
      chunk('IHDR', ihdr),
      chunk('IDAT', Buffer.concat(parts)),
      chunk('IEND', Buffer.alloc(0)),
    ]);
  })();
}

async function loadExpected() {
  if (!env.E2E_EXPECTED) return null;
  const raw = JSON.parse(await readFile(env.E2E_EXPECTED, 'utf8'));
  const out = new Map();
  for (const [k, v] of Object.entries(raw)) out.set(path.basename(k), v);
  return out;
}

async function damagedBundle(baseUrl) {
  if (env.E2E_DAMAGED_BUNDLE) {
    return { name: path.basename(env.E2E_DAMAGED_BUNDLE), buffer: await readFile(env.E2E_DAMAGED_BUNDLE) };
  }
  // A copy of the default bundle with one byte flipped behind the checksum.
  const model = env.E2E_MODEL ?? 'models/default.bundle';
  const response = await fetch(new URL(model, baseUrl)).catch(() => null);
  let buffer;
  if (response?.ok) {
    buffer = Buffer.from(await response.arrayBuffer());
    const at = Math.min(buffer.length - 1, Math.max(64, buffer.length >> 1));
    buffer[at] ^= 0xff;
  } else {
    buffer = Buffer.alloc(4096, 7);
    Buffer.from([0x89, 0x44, 0x45, 0x42, 0x0d, 0x0a, 0x1a, 0x0a]).copy(buffer);
  }
  return { name: 'damaged.bundle', buffer };
}

// ---------------------------------------------------------------- page helpers

const attr = (v) => JSON.stringify(String(v));

function cardLocator(page, name) {
  return page.locator(`[data-image=${attr(name)}]:is([data-testid=result], [data-testid=result-error])`).first();
}

async function errorSeq(page) {
  return page.evaluate(() => Number(document.querySelector('[data-testid=error]')?.dataset.seq ?? 0));
}

/** Waits for an error message newer than `since`; returns its text. */
async function newError(page, since, timeout = STEP_TIMEOUT) {
  await page.waitForFunction(
    (s) => Number(document.querySelector('[data-testid=error]')?.dataset.seq ?? 0) > s,
    since,
    { timeout },
  );
  return (await page.locator('[data-testid=error]').textContent()).trim();
}

async function scoreFiles(page, files) {
  await page.locator('[data-testid=image-input]').setInputFiles(files);
}

async function readCard(page, name, timeout = STEP_TIMEOUT) {
  const card = cardLocator(page, name);
  await card.waitFor({ timeout });
  const testid = await card.getAttribute('data-testid');
  if (testid !== 'result') {
    return { error: (await card.textContent()).trim() };
  }
  const label = (await card.locator('[data-testid=label]').textContent()).trim();
  // The card shows ΔE to 3 decimals; the exact value is in data-value.
  const de = Number(await card.locator('[data-testid=delta-energy]').getAttribute('data-value'));
  const shown = (await card.locator('[data-testid=delta-energy]').textContent()).trim();
  const ood = (await card.locator('[data-testid=ood]').textContent()).trim();
  const top = await card.locator('ol li .top-name').allTextContents();
  return { label, de, shown, ood, top };
}

/** A copy of a safetensors file with its header changed by `edit` (the data stays as it is). */
function editSafetensors(buffer, edit) {
  const n = Number(buffer.readBigUInt64LE(0));
  const header = JSON.parse(buffer.subarray(8, 8 + n).toString('utf8'));
  edit(header);
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  return Buffer.concat([len, Buffer.from(json, 'utf8'), buffer.subarray(8 + n)]);
}

/** The Cache Storage entries of the package's store of models (pkg/models.js), by kind. */
async function storedEntries(page) {
  return page.evaluate(async () => {
    const cache = await caches.open('deltaenergy-models-v1');
    const paths = (await cache.keys()).map((r) => new URL(r.url).pathname);
    return { models: paths.filter((p) => p.includes('/models/')), text: paths.filter((p) => p.includes('/text/')) };
  });
}

/** Waits until the ready chip names another bundle than `before`, or an error newer than `since`. */
async function readyChange(page, before, since) {
  await page.waitForFunction(
    ([b, s]) => {
      const sha = document.querySelector('[data-testid=ready]')?.dataset.sha256;
      const e = Number(document.querySelector('[data-testid=error]')?.dataset.seq ?? 0);
      return (sha && sha !== b) || e > s;
    },
    [before, since],
    { timeout: STEP_TIMEOUT },
  );
  const after = await page.locator('[data-testid=ready]').getAttribute('data-sha256').catch(() => null);
  if (!after || after === before) throw new Error((await page.locator('[data-testid=error]').textContent()).trim());
  return after;
}

/**
 * Scores the test image as `name` and holds the card to the CLI's `want` ({label,
 * delta_energy}): the same label, ΔE within TOLERANCE. Resolves to a line for the log.
 */
async function scoresLikeCli(page, name, want) {
  await scoreFiles(page, { name, mimeType: 'image/jpeg', buffer: await readFile(env.E2E_ID_IMAGE) });
  const r = await readCard(page, name);
  assert(!r.error, r.error);
  assert(r.label === want.label, `label "${r.label}", the CLI says "${want.label}"`);
  const diff = Math.abs(r.de - want.delta_energy);
  assert(diff <= TOLERANCE, `ΔE ${r.de}, the CLI says ${want.delta_energy}`);
  return `${r.label}, ΔE ${r.de} (CLI ${want.delta_energy}, |diff| ${diff.toExponential(2)})`;
}

function clearMessage(text) {
  return text && text.length >= 12 && !/undefined|\[object|null$/i.test(text);
}

// ---------------------------------------------------------------- one browser run

async function runBackend(which, server, expected, hub) {
  console.log(`\n== ${which}`);
  const { context, userDataDir } = await launchChromium(which, { acceptDownloads: true });
  const origin = new URL(server.url).origin;
  const requests = [];
  let readyAt = -1;
  const consoleLines = [];
  const pageErrors = [];
  context.on('request', (req) => requests.push({ url: req.url(), method: req.method(), afterReady: readyAt >= 0 }));
  await context.addInitScript(() => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('worker', (w) => w.on('console', (m) => consoleLines.push(`worker ${m.type()}: ${m.text()}`)));
  const shot = (name, opts = {}) => page.screenshot({ path: path.join(SHOTS, `${which}-${name}.png`), ...opts }).catch(() => {});
  const params = new URLSearchParams();
  if (env.E2E_MODEL) params.set('model', env.E2E_MODEL);
  if (which === 'cpu') params.set('threads', String(THREADS));
  const query = params.size ? `?${params}` : '';

  try {
    await page.goto(`${server.url}${query}`);

    // 1. ready (or a clear failure, without waiting the full timeout)
    const started = Date.now();
    const readyOk = await check('model loads and warms up ([data-testid=ready])', async () => {
      await page.locator('[data-testid=ready], [data-testid=error]').first().waitFor({ timeout: READY_TIMEOUT });
      if (!(await page.locator('[data-testid=ready]').count())) {
        // an error came first; give the load a moment in case it was a transient one
        const text = (await page.locator('[data-testid=error]').textContent()).trim();
        throw new Error(`error before ready: ${text}`);
      }
      return `${((Date.now() - started) / 1000).toFixed(1)} s`;
    });
    readyAt = readyOk ? requests.length : -1;
    await shot('ready', { fullPage: true });
    if (!readyOk) {
      console.log(`  status: ${await page.locator('#status').textContent().catch(() => '?')}`);
      return;
    }

    await check('the page speaks to people (rounded numbers, plain sentences, raw text behind a disclosure)', async () => {
      const visible = await page.evaluate(() => ({
        info: document.getElementById('model-info').innerText,
        reason: document.getElementById('backend-reason').innerText,
      }));
      assert(!/\d\.\d{6,}/.test(visible.info), `long numbers in the model panel: ${visible.info}`);
      assert(!/\$DELTAENERGY|target\//.test(visible.info), `build paths in the model panel: ${visible.info}`);
      assert(/^[A-Z][^{}]*\.( details)?$/.test(visible.reason.trim()), `the device reason is not a sentence: ${visible.reason}`);
      return visible.reason.trim();
    });

    await check(`backend is ${which}`, async () => {
      const b = (await page.locator('[data-testid=backend]').textContent()).trim();
      const why = (await page.locator('#backend-reason').textContent()).trim();
      assert(b === which, `backend is "${b}" (${why})`);
      return why;
    });

    // The default bundle is q8: on the CPU its linears run the int8 kernel, with wasm SIMD, on
    // the threaded build's pool (the page is cross-origin isolated).
    await check('the engine line says what computes', async () => {
      const engine = (await page.locator('[data-testid=engine]').textContent()).trim();
      const threads = THREADS > 1 ? `${THREADS} threads` : 'one thread';
      const want = which === 'cpu' ? new RegExp(`^burn flex on ${threads}, .*int8 matmul \\(simd128\\)`) : /^burn wgpu \(WGSL kernels, untuned\) on (a software adapter|the GPU), burn's quantized matmul/;
      assert(want.test(engine), `engine line: "${engine}"`);
      assert(await page.evaluate(() => self.crossOriginIsolated), 'the page is not cross-origin isolated');
      return engine;
    });

    // 2. the two images, compared with the CLI
    const images = [env.E2E_ID_IMAGE, env.E2E_OOD_IMAGE].filter(Boolean);
    const scored = new Map();
    if (images.length === 0) {
      skip('score E2E_ID_IMAGE and E2E_OOD_IMAGE', 'not set');
    } else {
      await scoreFiles(page, images);
      for (const file of images) {
        const name = path.basename(file);
        await check(`score ${name}`, async () => {
          const r = await readCard(page, name);
          assert(!r.error, r.error);
          assert(Number.isFinite(r.de), `ΔE is not a number`);
          assert(r.shown === r.de.toFixed(3), `ΔE shown as "${r.shown}", not to 3 decimals of ${r.de}`);
          assert(/ood|in-distribution/.test(r.ood), `badge text "${r.ood}"`);
          scored.set(name, r);
          const want = expected?.get(name);
          if (!want) return `${r.label}, ΔE ${r.de} (no expected value)`;
          assert(r.label === want.label, `label "${r.label}", the CLI says "${want.label}"`);
          const diff = Math.abs(r.de - want.delta_energy);
          assert(diff <= TOLERANCE, `ΔE ${r.de}, the CLI says ${want.delta_energy} (|diff| ${diff.toExponential(2)})`);
          // With a calibrated threshold the CLI says ood true/false; the badge must agree.
          if (typeof want.ood === 'boolean') {
            const pageOod = /\bood\b/i.test(r.ood) && !/in-distribution/i.test(r.ood);
            assert(pageOod === want.ood, `badge "${r.ood}", the CLI says ood = ${want.ood}`);
          }
          const flag = typeof want.ood === 'boolean' ? `, ${want.ood ? 'OOD' : 'in-distribution'}` : '';
          return `${r.label}${flag}, ΔE ${r.de} (CLI ${want.delta_energy}, |diff| ${diff.toExponential(2)})`;
        });
      }
      if (!expected) skip('compare with the CLI', 'E2E_EXPECTED not set');
      await shot('results', { fullPage: true });
    }

    // The package's batch API: one forward pass for the readable images, the same scores as
    // one at a time, and an unreadable image failing alone.
    if (which === 'cpu') {
      await check('classifyMany scores a batch as classify does; a bad image fails alone', async () => {
        const r = await page.evaluate(async () => {
          const { createScorer } = await import('./pkg/index.js');
          const scorer = await createScorer({ model: 'models/default.bundle', device: 'cpu' });
          try {
            const blob = async (u) => (await fetch(u)).blob();
            const [cat, blotchy] = [await blob('samples/cat.jpg'), await blob('samples/blotchy.jpg')];
            const text = new Blob(['not an image'], { type: 'text/plain' });
            const many = await scorer.classifyMany([cat, text, blotchy]);
            const one = [await scorer.classify(cat), await scorer.classify(blotchy)];
            // Three images two a pass: the last pass holds one.
            const passes = (await scorer.classifyMany([cat, blotchy, cat], { batchSize: 2 })).map((x) => x.timings.batch);
            const de = (x) => (x instanceof Error ? null : x.scores.deltaEnergy);
            return {
              many: many.map(de),
              one: one.map(de),
              batch: many.map((x) => (x instanceof Error ? null : x.timings.batch)),
              error: many[1] instanceof Error ? `${many[1].name}: ${many[1].message}` : null,
              passes,
            };
          } finally {
            scorer.dispose();
          }
        });
        assert(r.error && r.error.startsWith('InputError: '), `the text file gave ${r.error}`);
        assert(r.batch[0] === 2 && r.batch[2] === 2, `batch sizes ${JSON.stringify(r.batch)}`);
        assert(JSON.stringify(r.passes) === '[2,2,1]', `three images two a pass: batch sizes ${JSON.stringify(r.passes)}`);
        for (const [i, k] of [[0, 0], [2, 1]]) {
          const diff = Math.abs(r.many[i] - r.one[k]);
          assert(diff <= 1e-4, `ΔE in the batch ${r.many[i]}, alone ${r.one[k]}`);
        }
        return `ΔE ${r.many[0]} / ${r.many[2]} (alone ${r.one[0]} / ${r.one[1]}); ${r.error}`;
      });
    }

    // The image tower's precision: `auto` keeps f32 on a software adapter; f16 where the adapter
    // offers shader-f16 scores like f32, and is refused with a DeviceError where it does not.
    if (which === 'webgpu') {
      await check('precision: auto is f32 on a software adapter; f16 only with shader-f16', async () => {
        const r = await page.evaluate(async () => {
          const { createScorer } = await import('./pkg/index.js');
          const cat = await (await fetch('samples/cat.jpg')).blob();
          const auto = await createScorer({ model: 'models/default.bundle', device: 'webgpu' });
          const info = auto.info;
          const de32 = (await auto.classify(cat)).scores.deltaEnergy;
          auto.dispose();
          try {
            const f16 = await createScorer({ model: 'models/default.bundle', device: 'webgpu', precision: 'f16' });
            const out = { info, de32, de16: (await f16.classify(cat)).scores.deltaEnergy, f16Info: f16.info };
            f16.dispose();
            return out;
          } catch (e) {
            return { info, de32, error: `${e.name}: ${e.message}` };
          }
        });
        const a = r.info.adapter;
        assert(a && typeof a.software === 'boolean' && typeof a.f16 === 'boolean', `adapter ${JSON.stringify(a)}`);
        if (a.software) assert(r.info.precision === 'f32', `auto on a software adapter chose ${r.info.precision}`);
        if (!a.f16) {
          assert(r.error?.startsWith('InputError: ') && r.error.includes('shader-f16'), `f16 without shader-f16 gave ${r.error}`);
          return `${JSON.stringify(a)}: auto ${r.info.precision}; f16 refused (${r.error})`;
        }
        assert(r.f16Info.precision === 'f16', `asked for f16, got ${r.f16Info.precision}`);
        assert(Math.abs(r.de16 - r.de32) <= 1e-2, `ΔE f16 ${r.de16} vs f32 ${r.de32}`);
        return `${JSON.stringify(a)}: auto ${r.info.precision}; ΔE f16 ${r.de16} vs f32 ${r.de32}`;
      });
    }

    // 3. the threshold slider re-flags cards live
    const first = images.length ? path.basename(images[0]) : null;
    if (first && scored.has(first)) {
      await check('threshold slider re-flags cards', async () => {
        const setTo = (end) =>
          page.evaluate((e) => {
            const s = document.querySelector('[data-testid=threshold]');
            s.value = e === 'max' ? s.max : s.min;
            s.dispatchEvent(new Event('input', { bubbles: true }));
          }, end);
        const badge = cardLocator(page, first).locator('[data-testid=ood]');
        // The verdicts come back from the scorer's worker: wait for them.
        const settle = async (re) => {
          await badge.filter({ hasText: re }).waitFor({ timeout: 10_000 }).catch(() => {});
          return (await badge.textContent()).trim();
        };
        await setTo('max');
        const high = await settle(/\bood\b/);
        await setTo('min');
        const low = await settle(/in-distribution/);
        assert(/\bood\b/.test(high) && !/in-distribution/.test(high), `at the maximum: "${high}"`);
        assert(/in-distribution/.test(low), `at the minimum: "${low}"`);
        return `"${high}" / "${low}"`;
      });
    }

    // 4. a damaged bundle: clear message, the previous model keeps scoring
    const damaged = await damagedBundle(server.url);
    await check('damaged bundle gives a clear error', async () => {
      const since = await errorSeq(page);
      await page.locator('[data-testid=bundle-input]').setInputFiles({ name: damaged.name, mimeType: 'application/octet-stream', buffer: damaged.buffer });
      const text = await newError(page, since);
      assert(clearMessage(text), `unclear message: "${text}"`);
      assert(await page.locator('[data-testid=ready]').count(), 'ready is gone');
      return text.slice(0, 160);
    });
    if (env.E2E_ID_IMAGE) {
      await check('the previous model still scores after the damaged bundle', async () => {
        const buffer = await readFile(env.E2E_ID_IMAGE);
        const name = `after-damaged-${path.basename(env.E2E_ID_IMAGE)}`;
        await scoreFiles(page, { name, mimeType: mimeType(name), buffer });
        const r = await readCard(page, name);
        assert(!r.error, r.error);
        const before = scored.get(path.basename(env.E2E_ID_IMAGE));
        if (before) assert(Math.abs(before.de - r.de) <= 1e-6, `ΔE changed: ${before.de} → ${r.de}`);
        return `${r.label}, ΔE ${r.de}`;
      });
    }

    // 5. a non-image and an 8000×8000 image: a message or a result, never a crash
    await check('a text file gives a clear message', async () => {
      const since = await errorSeq(page);
      await scoreFiles(page, { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('this is not an image\n'.repeat(20)) });
      const r = await readCard(page, 'notes.txt');
      if (!r.error) return `scored anyway: ${r.label}`;
      const text = await newError(page, since);
      assert(clearMessage(text), `unclear message: "${text}"`);
      return text.slice(0, 160);
    });
    await check('an 8000×8000 PNG gives a message or a result', async () => {
      const since = await errorSeq(page);
      const png = await solidPng(8000, 8000, [40, 120, 200]);
      await scoreFiles(page, { name: 'huge-8000.png', mimeType: 'image/png', buffer: png });
      const r = await readCard(page, 'huge-8000.png');
      if (!r.error) return `scored: ${r.label}, ΔE ${r.de}`;
      const text = await newError(page, since);
      assert(clearMessage(text), `unclear message: "${text}"`);
      return text.slice(0, 160);
    });
    await check('the page is still alive', async () => {
      assert(pageErrors.length === 0, `uncaught page errors: ${pageErrors.join(' | ')}`);
      assert(await page.locator('[data-testid=ready]').count(), 'ready is gone');
      const b = (await page.locator('[data-testid=backend]').textContent()).trim();
      assert(b === which, `backend is now "${b}"`);
    });
    await shot('errors', { fullPage: true });

    // 6. the class editor
    const newClasses = ['red square', 'blue circle', 'green triangle'];
    await check('an empty class list gives a message and changes nothing', async () => {
      const since = await errorSeq(page);
      await page.locator('textarea[data-testid=classes]').fill('  ,\n , ');
      await page.locator('[data-testid=apply-classes]').click();
      const text = await newError(page, since, 10_000);
      assert(/class/i.test(text), `message: "${text}"`);
      return text.slice(0, 120);
    });
    if (env.E2E_ID_IMAGE) {
      await check('new classes label new results', async () => {
        const before = await page.locator('textarea[data-testid=classes]').getAttribute('data-applied');
        const since = await errorSeq(page);
        await page.locator('textarea[data-testid=classes]').fill(newClasses.join(', '));
        await page.locator('[data-testid=apply-classes]').click();
        await page.waitForFunction(
          ([b, s]) => {
            const t = document.querySelector('[data-testid=classes]');
            const e = Number(document.querySelector('[data-testid=error]')?.dataset.seq ?? 0);
            return (t.dataset.applied ?? null) !== b || e > s;
          },
          [before, since],
          { timeout: STEP_TIMEOUT },
        );
        const applied = await page.locator('textarea[data-testid=classes]').getAttribute('data-applied');
        if (applied === before) throw new Error(`apply failed: ${(await page.locator('[data-testid=error]').textContent()).trim()}`);
        const buffer = await readFile(env.E2E_ID_IMAGE);
        const name = `after-classes-${path.basename(env.E2E_ID_IMAGE)}`;
        await scoreFiles(page, { name, mimeType: mimeType(name), buffer });
        const r = await readCard(page, name);
        assert(!r.error, r.error);
        assert(newClasses.includes(r.label), `label "${r.label}" is not one of ${newClasses.join(', ')}`);
        for (const t of r.top) assert(newClasses.includes(t), `top label "${t}" is not a new class`);
        return `${r.label}, top: ${r.top.join(', ')}`;
      });
    }

    // 7. CSV export
    await check('CSV export downloads a table', async () => {
      const [download] = await Promise.all([page.waitForEvent('download', { timeout: 30_000 }), page.locator('#export-csv').click()]);
      const file = await download.path();
      const text = await readFile(file, 'utf8');
      const lines = text.trim().split(/\r?\n/);
      assert(lines[0].startsWith('file,label,delta_energy,energy,mcm,max_logit'), `header: ${lines[0]}`);
      const rows = await page.locator('[data-testid=row]').count();
      assert(lines.length - 1 === rows, `${lines.length - 1} CSV rows, ${rows} table rows`);
      return `${rows} rows`;
    });

    // 8. nothing off-origin, no CSP violations
    await check('no off-origin requests', async () => {
      const bad = requests.filter((r) => {
        const u = new URL(r.url);
        return !(u.origin === origin || u.protocol === 'blob:' || u.protocol === 'data:');
      });
      assert(bad.length === 0, `off-origin: ${bad.map((r) => r.url).join(', ')}`);
      const after = requests.filter((r) => r.afterReady).length;
      return `${requests.length} requests, ${after} after ready, all ${origin}`;
    });
    await check('no CSP violations', async () => {
      const v = await page.evaluate(() => window.__csp);
      const logged = consoleLines.filter((l) => /Content Security Policy/i.test(l));
      assert(v.length === 0 && logged.length === 0, [...v, ...logged].join(' | '));
    });

    if (which === 'cpu') await presetChecks(page);
    if (which === 'cpu') await importChecks(page);
    if (which === 'cpu') await extraChecks(page, shot, requests);
    if (which === 'cpu') await hubChecks(page, server, hub);
  } catch (e) {
    fail(`${which} run`, e.message.split('\n')[0]);
    await shot('crash', { fullPage: true });
  } finally {
    await endRun(context, userDataDir, consoleLines);
  }
}

/** After a browser run: its console's last lines if anything failed, then the browser and its profile. */
async function endRun(context, userDataDir, consoleLines) {
  if (failed && consoleLines.length) {
    console.log('  console (last 15):');
    for (const l of consoleLines.slice(-15)) console.log(`    ${l.slice(0, 300)}`);
  }
  await context.close().catch(() => {});
  await rm(userDataDir, { recursive: true, force: true }).catch(() => {});
}

/**
 * The page from a server without COOP/COEP, as many static hosts serve it: no shared memory, so
 * the CPU runs the one-thread build whatever `?threads=` asks, the engine line says why, and the
 * scores still equal the CLI's.
 */
async function runUnisolated(expected) {
  console.log('\n== cpu-unisolated');
  const server = await startServer({ root: WWW, port: 0, isolated: false });
  const { context, userDataDir } = await launchChromium('cpu');
  const consoleLines = [];
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
    page.on('worker', (w) => w.on('console', (m) => consoleLines.push(`worker ${m.type()}: ${m.text()}`)));
    const params = new URLSearchParams({ threads: String(Math.max(2, THREADS)) });
    if (env.E2E_MODEL) params.set('model', env.E2E_MODEL);
    await page.goto(`${server.url}?${params}`);
    const ready = await check('without COOP/COEP: the model loads on the CPU', async () => {
      await page.locator('[data-testid=ready], [data-testid=error]').first().waitFor({ timeout: READY_TIMEOUT });
      const error = await page.locator('[data-testid=error]').textContent().catch(() => '');
      assert(await page.locator('[data-testid=ready]').count(), `error before ready: ${error}`);
      const b = (await page.locator('[data-testid=backend]').textContent()).trim();
      assert(b === 'cpu', `backend is "${b}"`);
      assert(!(await page.evaluate(() => self.crossOriginIsolated)), 'the page is cross-origin isolated');
    });
    if (!ready) return;
    await check('without COOP/COEP: the engine line says one thread, and why', async () => {
      const engine = (await page.locator('[data-testid=engine]').textContent()).trim();
      assert(/^burn flex on one thread \(the page is not cross-origin isolated\), /.test(engine), `engine line: "${engine}"`);
      return engine;
    });
    const want = expected?.get(path.basename(env.E2E_ID_IMAGE ?? ''));
    if (want) await check('without COOP/COEP: scores like the CLI', () => scoresLikeCli(page, path.basename(env.E2E_ID_IMAGE), want));
    else skip('without COOP/COEP: scores like the CLI', 'E2E_ID_IMAGE or E2E_EXPECTED not set');
  } catch (e) {
    fail('cpu-unisolated run', e.message.split('\n')[0]);
  } finally {
    await endRun(context, userDataDir, consoleLines);
    await server.close();
  }
}

/**
 * The import of a Hugging Face checkpoint (E2E_IMPORT: checkpoint/ with config.json,
 * model.safetensors and merges.txt, and expected.json from the CLI on the same checkpoint):
 * the page converts it, loads it and scores like the CLI; a truncated file is a clear error and
 * the imported model keeps working.
 */
async function importChecks(page) {
  const dir = env.E2E_IMPORT;
  if (!dir) {
    skip('import a Hugging Face checkpoint', 'E2E_IMPORT not set');
    return;
  }
  const files = ['config.json', 'model.safetensors', 'merges.txt'].map((f) => path.join(dir, 'checkpoint', f));
  // Playwright takes paths or buffers, not both in one call.
  const asBuffer = async (file) => ({ name: path.basename(file), mimeType: 'application/octet-stream', buffer: await readFile(file) });
  const readySha = () => page.locator('[data-testid=ready]').getAttribute('data-sha256').catch(() => null);
  let imported = false;
  // An import ships the classes in use: back to the bundle's ten, which the CLI's bundle has.
  await page.locator('#reset-classes').click();
  await applyClassesWith(page, 'model');
  await check('a checkpoint picked as files is converted and loaded', async () => {
    const before = await readySha();
    const since = await errorSeq(page);
    await page.locator('[data-testid=import-input]').setInputFiles(files);
    await readyChange(page, before, since);
    imported = true;
    const source = (await page.locator('#model-info').innerText()).split('\n').slice(0, 2).join(' ');
    return `${source}; ${(await page.locator('#status').textContent()).trim()}`;
  });
  if (!imported) return;
  const want = JSON.parse(await readFile(path.join(dir, 'expected.json'), 'utf8'))['cat.jpg'];
  const name = 'imported-cat.jpg';
  await check('the imported model scores like the CLI on the same checkpoint', async () => {
    return scoresLikeCli(page, name, want);
  });
  await check('a truncated model.safetensors is a clear error; the model in use stays', async () => {
    const full = await readFile(files[1]);
    const since = await errorSeq(page);
    const sha = await readySha();
    await page.locator('[data-testid=import-input]').setInputFiles([
      await asBuffer(files[0]),
      { name: 'model.safetensors', mimeType: 'application/octet-stream', buffer: full.subarray(0, full.length - 5000) },
      await asBuffer(files[2]),
    ]);
    const text = await newError(page, since);
    assert(/outside the file|complete/.test(text), `message: ${text}`);
    assert((await readySha()) === sha, 'the model changed');
    const again = 'imported-again-cat.jpg';
    await scoreFiles(page, { name: again, mimeType: 'image/jpeg', buffer: await readFile(env.E2E_ID_IMAGE) });
    const r = await readCard(page, again);
    assert(!r.error && r.label === want.label, r.error ?? r.label);
    return text.slice(0, 140);
  });
  for (const [what, edit, pattern] of [
    ['a tensor of the wrong dtype', (h) => (h['text_model.final_layer_norm.weight'].dtype = 'I32'), /I32/],
    ['a tensor of the wrong shape', (h) => (h['text_model.final_layer_norm.weight'].shape = [1, h['text_model.final_layer_norm.weight'].shape[0]]), /shape/],
  ]) {
    await check(`${what} is a clear error; nothing is kept; the model in use stays`, async () => {
      const since = await errorSeq(page);
      const sha = await readySha();
      const kept = (await storedEntries(page)).models.length;
      await page.locator('[data-testid=import-input]').setInputFiles([
        await asBuffer(files[0]),
        { name: 'model.safetensors', mimeType: 'application/octet-stream', buffer: editSafetensors(await readFile(files[1]), edit) },
        await asBuffer(files[2]),
      ]);
      const text = await newError(page, since);
      assert(pattern.test(text) && clearMessage(text), `message: ${text}`);
      assert((await readySha()) === sha, 'the model changed');
      assert((await storedEntries(page)).models.length === kept, 'a model was kept');
      return text.slice(0, 140);
    });
  }
  await check('calibrating on the user\'s pictures sets a threshold that keeps 95% of them, drawn on their histogram', async () => {
    assert(await page.locator('#calibrate-box').evaluate((d) => d.open), 'the imported model has no threshold, yet calibration is not offered');
    const samples = (await readdir(path.join(WWW, 'samples'))).filter((f) => /\.(jpe?g|png)$/i.test(f)).map((f) => path.join(WWW, 'samples', f));
    await page.locator('[data-testid=calibrate-input]').setInputFiles(samples);
    const hist = page.locator('[data-testid=calibration-histogram]');
    await hist.waitFor({ timeout: STEP_TIMEOUT });
    const n = Number(await hist.getAttribute('data-n'));
    const below = Number(await hist.getAttribute('data-below'));
    const t = Number(await hist.getAttribute('data-threshold'));
    assert(n === samples.length, `${n} of ${samples.length} pictures scored`);
    assert(below <= Math.floor(n * 0.05), `${below} of ${n} flagged, more than 5%`);
    const shown = Number(await page.locator('#threshold-number').inputValue());
    assert(Math.abs(shown - t) <= 1e-5 * Math.max(1, Math.abs(t)), `the threshold box shows ${shown}, not ${t}`);
    const note = await page.locator('#threshold-note').textContent();
    assert(/Calibrated on your pictures/.test(note), `note: ${note}`);
    return `threshold ${t.toFixed(4)}, ${below} of ${n} below; ${note.trim().slice(0, 60)}`;
  });
  const f16 = path.join(dir, 'checkpoint-f16');
  await check('an f16 checkpoint of the second config, imported at f16, scores like the CLI', async () => {
    const before = await readySha();
    const since = await errorSeq(page);
    await page.locator('#import-box').evaluate((d) => (d.open = true));
    await page.locator('#import-quant').selectOption('f16');
    await page.locator('[data-testid=import-input]').setInputFiles(['config.json', 'model.safetensors', 'merges.txt'].map((f) => path.join(f16, f)));
    await readyChange(page, before, since);
    await page.locator('#import-quant').selectOption('q8');
    const wantF16 = JSON.parse(await readFile(path.join(dir, 'expected-f16.json'), 'utf8'))['cat.jpg'];
    const name = 'imported-f16-cat.jpg';
    return scoresLikeCli(page, name, wantF16);
  });
  await check('a missing tokenizer is a clear error', async () => {
    const since = await errorSeq(page);
    await page.locator('[data-testid=import-input]').setInputFiles([files[0], files[1]]);
    const text = await newError(page, since);
    assert(/tokenizer/.test(text) && clearMessage(text), `message: ${text}`);
    return text.slice(0, 140);
  });
  await check('a config that is not CLIP is a clear error', async () => {
    const since = await errorSeq(page);
    await page.locator('[data-testid=import-input]').setInputFiles([
      { name: 'config.json', mimeType: 'application/json', buffer: Buffer.from('{"model_type": "bert", "hidden_size": 768}') },
      await asBuffer(files[1]),
      await asBuffer(files[2]),
    ]);
    const text = await newError(page, since);
    assert(/not CLIP/.test(text) && clearMessage(text), `message: ${text}`);
    return text.slice(0, 140);
  });
}

/** Applies the class editor's text with a choice of prompts; resolves once applied. */
async function applyClassesWith(page, templates) {
  // Never applied in this page yet: no attribute, which counts as "".
  const applied = (await page.locator('textarea[data-testid=classes]').getAttribute('data-applied')) ?? '';
  const since = await errorSeq(page);
  await page.locator('#class-templates').selectOption(templates);
  await page.locator('[data-testid=apply-classes]').click();
  await page.waitForFunction(
    ([a, s]) => (document.querySelector('[data-testid=classes]').dataset.applied ?? '') !== a || Number(document.querySelector('[data-testid=error]')?.dataset.seq ?? 0) > s,
    [applied, since],
    { timeout: STEP_TIMEOUT },
  );
  if ((await errorSeq(page)) > since) throw new Error((await page.locator('[data-testid=error]').textContent()).trim());
}

/**
 * Class presets and prompts on the demo model: CLIP's ensemble of 80 templates scores as the CLI
 * with --templates; the ImageNet-1k preset fills the editor with CLIP's names.
 */
async function presetChecks(page) {
  const dir = env.E2E_IMPORT;
  if (!dir) {
    skip('class presets and the prompt ensemble', 'E2E_IMPORT not set');
    return;
  }
  await check('CIFAR-10 with CLIP\'s 80 templates scores like the CLI with --templates', async () => {
    await page.locator('#class-preset').selectOption('cifar-10');
    await page.waitForFunction(() => document.querySelector('[data-testid=classes]').value.split('\n').length === 10);
    await applyClassesWith(page, 'ensemble');
    const want = JSON.parse(await readFile(path.join(dir, 'expected-ensemble.json'), 'utf8'))['cat.jpg'];
    const name = 'ensemble-cat.jpg';
    const line = await scoresLikeCli(page, name, want);
    const prompt = await page.locator('#model-info').innerText();
    assert(/mean of 80 templates/.test(prompt), 'the model panel does not say so');
    return line;
  });
  await check('the ImageNet-1k preset applies CLIP\'s names (OpenAI\'s two repeats dropped)', async () => {
    await page.locator('#class-preset').selectOption('imagenet-1k');
    await page.waitForFunction(() => document.querySelector('[data-testid=classes]').value.split('\n').length === 1000);
    await applyClassesWith(page, 'one');
    const status = (await page.locator('#status').textContent()).trim();
    assert(/998 classes/.test(status), `status: ${status}`);
    return status;
  });
  await check('Stop ends a long text-feature job between chunks; the classes in use stay', async () => {
    const before = await page.locator('#model-info').innerText();
    await page.locator('#class-templates').selectOption('ensemble');
    await page.locator('[data-testid=apply-classes]').click();
    await page.waitForFunction(() => /Text features: [1-9]/.test(document.querySelector('#progress-text').textContent), null, { timeout: STEP_TIMEOUT });
    const t0 = Date.now();
    await page.locator('[data-testid=stop-classes]').click();
    await page.waitForFunction(() => /Stopped/.test(document.querySelector('#status').textContent), null, { timeout: STEP_TIMEOUT });
    const after = await page.locator('#model-info').innerText();
    assert(after === before, 'the model panel changed');
    return `stopped ${Date.now() - t0} ms after the click`;
  });
  await page.locator('#class-preset').selectOption('');
  await page.locator('#class-templates').selectOption('model');
}

/**
 * A Hub import against the local stand-in (hub.mjs): `?hf=` starts it, the model scores like the
 * CLI, model.safetensors is only ever read by ranges, nothing but GETs reach the Hub; a missing
 * repository and a dropped connection are clear errors that leave the model in use.
 */
async function hubChecks(page, server, hub) {
  const dir = env.E2E_IMPORT;
  if (!dir || !hub) {
    skip('import from the Hub', 'E2E_IMPORT not set');
    return;
  }
  const want = JSON.parse(await readFile(path.join(dir, 'expected.json'), 'utf8'))['cat.jpg'];
  const readySha = () => page.locator('[data-testid=ready]').getAttribute('data-sha256').catch(() => null);
  hub.requests.length = 0;
  let imported = false;
  await check('?hf=ORG/NAME&hub=URL imports from the Hub and scores like the CLI', async () => {
    await page.goto(`${server.url}?hf=test/tiny-clip&hub=${encodeURIComponent(hub.url)}`);
    await page.locator('[data-testid=ready]').waitFor({ timeout: READY_TIMEOUT });
    const first = await readySha();
    await page.waitForFunction(
      (b) => {
        const sha = document.querySelector('[data-testid=ready]')?.dataset.sha256;
        return (sha && sha !== b) || document.querySelector('[data-testid=error]');
      },
      first,
      { timeout: STEP_TIMEOUT },
    );
    if (await page.locator('[data-testid=error]').count()) {
      throw new Error((await page.locator('[data-testid=error]').textContent()).trim());
    }
    imported = true;
    const name = 'hub-cat.jpg';
    return scoresLikeCli(page, name, want);
  });
  await check('the Hub saw only GETs (and preflights), model.safetensors only by byte ranges', async () => {
    const seen = hub.requests;
    assert(seen.length > 0, 'no request reached the Hub');
    const bad = seen.filter((r) => !['GET', 'OPTIONS'].includes(r.method) || r.bodyBytes > 0);
    assert(bad.length === 0, `unexpected: ${bad.map((r) => `${r.method} ${r.url}`).join(', ')}`);
    const whole = seen.filter((r) => r.origin === 'cdn' && r.method === 'GET' && !r.range);
    assert(whole.length === 0, `model.safetensors fetched whole ${whole.length} times`);
    const ranges = seen.filter((r) => r.origin === 'cdn' && r.range).length;
    return `${seen.length} requests, ${ranges} byte ranges from the second origin after the 302`;
  });
  if (!imported) return;
  const importedSha = await readySha();
  const saved = page.locator('[data-testid=saved-model][data-name="test/tiny-clip@main"]');
  await check('the converted model is listed as saved in this browser, with its size', async () => {
    await saved.waitFor({ timeout: STEP_TIMEOUT });
    // The stand-in's ETag is the file's SHA-256, as the Hub's for LFS files; the record keeps it.
    const sha = createHash('sha256').update(await readFile(path.join(dir, 'checkpoint', 'model.safetensors'))).digest('hex');
    const title = await saved.locator('.saved-name').getAttribute('title');
    assert(title.includes(`Hub ETag ${sha}`), `the record's title: ${title}`);
    return (await saved.innerText()).replace(/\s+/g, ' ').trim();
  });
  await check('text features of many prompts are kept with the model (CLIP\'s 80 templates)', async () => {
    await applyClassesWith(page, 'ensemble');
    const { text } = await storedEntries(page);
    const mine = text.filter((p) => decodeURIComponent(p).includes(importedSha));
    assert(mine.length === 1, `${mine.length} text entries for the imported model ${importedSha}: ${text.map(decodeURIComponent).join(', ')}; status: ${await page.locator('#status').textContent()}`);
    assert(/mean of 80/.test(await page.locator('#status').textContent()), 'the status does not say 80 templates');
    await page.locator('#class-templates').selectOption('model');
    return `${text.length} text entries in all`;
  });
  await check('a second visit to ?hf= loads the saved model with no request to the Hub', async () => {
    hub.requests.length = 0;
    await page.goto(`${server.url}?hf=test/tiny-clip&hub=${encodeURIComponent(hub.url)}`);
    await page.locator('[data-testid=ready]').waitFor({ timeout: READY_TIMEOUT });
    await page.waitForFunction((want) => document.querySelector('[data-testid=ready]')?.dataset.sha256 === want || document.querySelector('[data-testid=error]'), importedSha, { timeout: STEP_TIMEOUT });
    assert((await readySha()) === importedSha, `not the imported model: ${await page.locator('[data-testid=error]').textContent().catch(() => '')}`);
    assert(hub.requests.length === 0, `${hub.requests.length} requests reached the Hub: ${hub.requests.map((r) => r.url).join(', ')}`);
    return (await page.locator('#status').textContent()).trim();
  });
  await check('deleting the saved model removes it and its text features', async () => {
    await saved.locator('[data-testid=saved-delete]').click();
    await saved.waitFor({ state: 'detached', timeout: STEP_TIMEOUT });
    const { models, text } = await storedEntries(page);
    assert(!models.some((p) => decodeURIComponent(p).includes('test/tiny-clip')), `still kept: ${models.join(', ')}`);
    assert(!text.some((p) => decodeURIComponent(p).includes(importedSha)), 'its text features are still kept');
    assert((await readySha()) === importedSha, 'the model in use changed');
    return `${models.length} models and ${text.length} text entries left`;
  });
  for (const [repo, pattern, what] of [
    ['test/missing', /no config\.json|name right/, 'a repository that does not exist'],
    ['test/drop', /dropped|could not reach|bytes of/, 'a connection dropped mid-download'],
  ]) {
    await check(`${what} is a clear error; the model in use stays`, async () => {
      const since = await errorSeq(page);
      const sha = await readySha();
      await page.locator('#import-box').evaluate((d) => (d.open = true));
      await page.locator('[data-testid=hub-repo]').fill(repo);
      await page.locator('[data-testid=hub-load]').click();
      const text = await newError(page, since);
      assert(pattern.test(text) && clearMessage(text), `message: ${text}`);
      assert((await readySha()) === sha, 'the model changed');
      return text.slice(0, 150);
    });
  }
  await check('a wrong Hub address is a clear error; the default model stays', async () => {
    await page.goto(`${server.url}?hf=test/tiny-clip&hub=${encodeURIComponent('http://127.0.0.1:9')}`);
    await page.locator('[data-testid=ready]').waitFor({ timeout: READY_TIMEOUT });
    const sha = await readySha();
    const text = await newError(page, 0);
    assert(/could not reach the Hub/.test(text) && clearMessage(text), `message: ${text}`);
    assert((await readySha()) === sha, 'the model changed');
    return text.slice(0, 150);
  });
  const b32 = path.join(dir, 'checkpoint-b32');
  await check('a ViT-B/32-shaped checkpoint (one layer a tower) from the Hub scores like the CLI', async () => {
    const want = JSON.parse(await readFile(path.join(dir, 'expected-b32.json'), 'utf8'))['cat.jpg'];
    const before = await readySha();
    const since = await errorSeq(page);
    await page.goto(`${server.url}?hf=test/vit-b32&hub=${encodeURIComponent(hub.url)}`);
    await page.locator('[data-testid=ready]').waitFor({ timeout: READY_TIMEOUT });
    await readyChange(page, before, since);
    const name = 'b32-cat.jpg';
    const line = await scoresLikeCli(page, name, want);
    const size = (await readFile(path.join(b32, 'model.safetensors'))).length;
    return `${(size / 1e6).toFixed(0)} MB f32 in ${await page.locator('#import-box').getAttribute('data-converted-seconds')} s; ${line}`;
  });
  await page.goto(server.url);
  await page.locator('[data-testid=ready]').waitFor({ timeout: READY_TIMEOUT });
}

/** Cheap checks done once (on the CPU run): keyboard reachability, the phone layout, the cache. */
async function extraChecks(page, shot, requests) {
  await check('keyboard reaches every control', async () => {
    await page.evaluate(() => document.activeElement?.blur());
    await page.locator('body').focus();
    const seen = [];
    for (let i = 0; i < 80; i++) {
      await page.keyboard.press('Tab');
      const d = await page.evaluate(() => {
        const a = document.activeElement;
        return a ? a.dataset.testid || a.id || a.tagName.toLowerCase() : '';
      });
      seen.push(d);
    }
    for (const want of ['image-input', 'threshold', 'classes', 'apply-classes', 'bundle-input', 'bundle-url', 'export-csv']) {
      assert(seen.includes(want), `${want} is not reachable with Tab (order: ${[...new Set(seen)].join(' ')})`);
    }
    const outline = await page.evaluate(() => {
      const b = document.getElementById('apply-classes');
      b.focus();
      return getComputedStyle(b).outlineStyle;
    });
    return `focus order: ${[...new Set(seen)].slice(0, 12).join(' → ')} …; outline ${outline}`;
  });
  await check('phone layout has no horizontal scrolling', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    const wide = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    await shot('phone', { fullPage: true });
    await page.setViewportSize({ width: 1280, height: 900 });
    assert(wide <= 1, `the page is ${wide}px wider than the phone`);
  });
  await check('a reload takes the bundle from Cache Storage', async () => {
    const n = requests.length;
    await page.reload();
    await page.locator('[data-testid=ready], [data-testid=error]').first().waitFor({ timeout: READY_TIMEOUT });
    assert(await page.locator('[data-testid=ready]').count(), `no ready: ${await page.locator('[data-testid=error]').textContent().catch(() => '')}`);
    const gets = requests.slice(n).filter((r) => new URL(r.url).pathname.endsWith('.bundle') && r.method === 'GET');
    assert(gets.length === 0, `downloaded again: ${gets.map((r) => r.url).join(', ')}`);
    const status = (await page.locator('#status').textContent()).trim();
    return status;
  });
}

// ---------------------------------------------------------------- main

async function main() {
  await mkdir(SHOTS, { recursive: true });
  // A stand-in Hub on two more origins, which the page's CSP allows (as it allows the real Hub's).
  const hub = env.E2E_IMPORT
    ? await startHub({
        repos: {
          'test/tiny-clip': path.join(env.E2E_IMPORT, 'checkpoint'),
          'test/drop': path.join(env.E2E_IMPORT, 'checkpoint'),
          'test/vit-b32': path.join(env.E2E_IMPORT, 'checkpoint-b32'),
        },
      })
    : null;
  const connect = hub ? [hub.url, hub.cdnUrl] : [];
  const server = await startServer({ root: WWW, port: Number(env.E2E_PORT ?? 0), connect });
  console.log(`serving ${WWW} at ${server.url}`);
  try {
    await check('server sends the security headers', async () => {
      const r = await fetch(server.url);
      assert(r.headers.get('content-security-policy') === csp(connect), 'CSP');
      assert(/connect-src 'self' https:\/\/huggingface\.co /.test(csp()), 'the CSP allows the Hub');
      assert(r.headers.get('cross-origin-opener-policy') === 'same-origin', 'COOP');
      assert(r.headers.get('cross-origin-embedder-policy') === 'require-corp', 'COEP');
      assert(/^text\/html/.test(r.headers.get('content-type')), 'HTML type');
      const js = await fetch(new URL('pkg/worker.js', server.url));
      assert(/^text\/javascript/.test(js.headers.get('content-type')), 'JS type');
      const up = await fetch(new URL('/%2e%2e/Makefile', server.url));
      assert(up.status === 404, `traversal: ${up.status}`);
    });
    const expected = await loadExpected();
    const backends = (env.E2E_BACKENDS ?? 'webgpu,cpu,cpu-unisolated').split(',').map((s) => s.trim()).filter(Boolean);
    for (const b of backends) {
      if (b === 'cpu-unisolated') await runUnisolated(expected);
      else if (b === 'webgpu' || b === 'cpu') await runBackend(b, server, expected, hub);
      else fail('E2E_BACKENDS', `unknown backend "${b}"`);
    }
  } finally {
    await server.close();
    await hub?.close();
  }
  if (skipped) console.log(`\n(${skipped} skipped)`);
  if (failures.length) {
    console.log('\nFailures:');
    for (const f of failures) console.log(`  - ${f}`);
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  console.error(e);
  console.log(`${passed} passed, ${failed + 1} failed`);
  process.exit(1);
});
