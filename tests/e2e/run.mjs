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
import { copyFile, mkdir, readFile, readdir, rm } from 'node:fs/promises';
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

    // Recovery, with the state the package owns: a trap restarts the worker (the request fails),
    // a GPU failure moves the model to the CPU (the request is tried again there); either way
    // the model comes back with its classes and threshold. Faults are injected by a worker that
    // wraps the package's own (faulty-worker.js).
    await check(which === 'webgpu'
      ? 'a GPU failure while running moves the model to the CPU with its classes and threshold, and the request succeeds there'
      : 'a crash restarts the worker with the model, its classes and threshold; the request that crashed fails', async () => {
      const r = await page.evaluate(async (fault) => {
        const { createScorer } = await import('./pkg/index.js');
        const events = [];
        const scorer = await createScorer({
          model: 'models/default.bundle',
          device: fault.name === 'DeviceError' ? 'webgpu' : 'cpu',
          workerUrl: new URL('pkg/faulty-worker.js', location.href),
          onProgress: (e) => events.push(e.status),
        });
        try {
          await scorer.setClasses(['cat', 'dog', 'ship']);
          await scorer.setThreshold(0.25);
          const before = scorer.device;
          const channel = new BroadcastChannel('deltaenergy-faults');
          await new Promise((resolve) => {
            channel.onmessage = ({ data }) => data === 'armed' && resolve(undefined);
            channel.postMessage(fault);
          });
          const cat = await (await fetch('samples/cat.jpg')).blob();
          let first;
          try {
            first = (await scorer.classify(cat)).label;
          } catch (e) {
            first = `${e.name}: ${e.message}`;
          }
          const after = await scorer.classify(cat);
          return { before, first, events, label: after.label, classes: scorer.info.classes, threshold: scorer.info.threshold?.value, device: scorer.device, reason: scorer.deviceReason?.code };
        } finally {
          scorer.dispose();
        }
      }, which === 'webgpu' ? { op: 'classify', name: 'DeviceError', message: 'the device was lost (injected)' } : { op: 'classify', name: 'CrashError', message: 'unreachable (injected)' });
      assert(JSON.stringify(r.classes) === '["cat","dog","ship"]', `classes after recovery: ${JSON.stringify(r.classes)}`);
      assert(r.threshold === 0.25, `threshold after recovery: ${r.threshold}`);
      assert(['cat', 'dog', 'ship'].includes(r.label), `label after recovery: ${r.label}`);
      if (which === 'webgpu') {
        assert(r.before === 'webgpu' && r.device === 'cpu' && r.reason === 'webgpu-failed', `device ${r.before} → ${r.device} (${r.reason})`);
        assert(['cat', 'dog', 'ship'].includes(r.first) && r.events.includes('fallback'), `the request: ${r.first}; events ${r.events.join(' ')}`);
      } else {
        assert(r.first.startsWith('CrashError') && r.events.includes('restart'), `the request: ${r.first}; events ${r.events.join(' ')}`);
      }
      return `${r.before} → ${r.device}; first request: ${r.first}; then ${r.label}; events ${[...new Set(r.events)].join(' ')}`;
    });

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
 * Hub imports against the local stand-in (hub.mjs), which answers as the real Hub does: a repo
 * with model.safetensors on main (`?hf=` starts it), one shaped like openai/clip-vit-base-patch32
 * (pytorch_model.bin on main, the bot's safetensors in a pull request; clicked in the page's
 * list), one with only pytorch_model.bin (typed), and a ViT-B/32-sized pytorch_model.bin. Each
 * scores like the CLI on the same weights; the weights are read only by ranges, mostly straight
 * from the storage URL; the cache follows the commit, and works offline; every Hub refusal is a
 * clear error that leaves the model in use.
 */
async function hubChecks(page, server, hub) {
  const dir = env.E2E_IMPORT;
  if (!dir || !hub) {
    skip('import from the Hub', 'E2E_IMPORT not set');
    return;
  }
  const want = JSON.parse(await readFile(path.join(dir, 'expected.json'), 'utf8'))['cat.jpg'];
  const readySha = () => page.locator('[data-testid=ready]').getAttribute('data-sha256').catch(() => null);
  const commitOf = async (repo, rev = 'main') => (await (await fetch(`${hub.url}/api/models/${repo}/revision/${encodeURIComponent(rev)}`)).json()).sha;
  const box = page.locator('#import-box');
  /** Waits until `n` imports have ended in this page; the last must have loaded its model. */
  const importDone = async (n) => {
    await page.waitForFunction((k) => Number(document.querySelector('#import-box')?.dataset.imports ?? 0) >= k, n, { timeout: STEP_TIMEOUT });
    if ((await box.getAttribute('data-import-ok')) !== 'true') {
      throw new Error((await page.locator('[data-testid=error]').textContent().catch(() => 'no error shown')).trim());
    }
    return readySha();
  };
  /** Opens the page with `?hf=repo` against the stand-in; the import it starts is the first. */
  const visit = async (repo) => {
    await page.goto(`${server.url}?hf=${repo}&hub=${encodeURIComponent(hub.url)}`);
    await page.locator('[data-testid=ready]').waitFor({ timeout: READY_TIMEOUT });
    return importDone(1);
  };
  /** Starts an import with `start` in the open page and waits for it. */
  const imports = async (start) => {
    const n = Number((await box.getAttribute('data-imports')) ?? 0);
    await start();
    return importDone(n + 1);
  };
  const note = () => page.locator('[data-testid=import-note]').textContent().then((t) => t.trim());
  const typed = (repo, revision = 'main') => async () => {
    await page.locator('[data-testid=hub-repo]').fill(repo);
    await page.locator('#hub-revision').fill(revision);
    await page.locator('[data-testid=hub-load]').click();
  };
  const weightRequests = (file) => hub.requests.filter((r) => r.url.includes(`/${file}`) && r.method === 'GET');
  hub.requests.length = 0;
  let imported = false;
  await check('?hf=ORG/NAME&hub=URL imports model.safetensors from main and scores like the CLI', async () => {
    await visit('test/tiny-clip');
    const said = await note();
    assert(/Read model\.safetensors .* at main, commit/.test(said), `the page says: ${said}`);
    imported = true;
    return `${said} ${await scoresLikeCli(page, 'hub-cat.jpg', want)}`;
  });
  await check('the page asked only GETs the Hub answers without a preflight, the weights only by ranges, mostly from the storage URL', async () => {
    const seen = hub.requests;
    assert(seen.length > 0, 'no request reached the Hub');
    const bad = seen.filter((r) => r.method !== 'GET' || r.bodyBytes > 0);
    assert(bad.length === 0, `unexpected (the Hub's answer to a preflight is not on record): ${bad.map((r) => `${r.method} ${r.url}`).join(', ')}`);
    const weights = seen.filter((r) => r.url.includes('model.safetensors'));
    assert(weights.every((r) => r.range), `model.safetensors fetched whole: ${weights.filter((r) => !r.range).map((r) => r.url).join(', ')}`);
    const commit = await commitOf('test/tiny-clip');
    const resolves = seen.filter((r) => r.origin === 'hub' && r.url.includes('/resolve/'));
    assert(resolves.every((r) => r.url.includes(`/resolve/${commit}/`)), `files not read at main's commit: ${resolves.map((r) => r.url).join(', ')}`);
    const direct = weights.filter((r) => r.origin === 'cdn').length;
    const through = weights.filter((r) => r.origin === 'hub').length;
    // A signed URL serves `signedUses` requests; the page goes through the Hub again only then.
    assert(through <= 1 + Math.ceil(direct / hub.signedUses) + 1, `${through} resolves for ${direct} storage reads`);
    return `${seen.length} requests: ${through} weight resolves, ${direct} ranges from the storage`;
  });
  if (!imported) return;
  const importedSha = await readySha();
  const commit = await commitOf('test/tiny-clip');
  const saved = page.locator('[data-testid=saved-model][data-name="test/tiny-clip@main"]');
  await check('the converted model is listed as saved in this browser, with the commit it came from', async () => {
    await saved.first().waitFor({ timeout: STEP_TIMEOUT });
    const title = await saved.first().locator('.saved-name').getAttribute('title');
    assert(title.includes(`Hub commit ${commit}`), `the record's title: ${title}`);
    return (await saved.first().innerText()).replace(/\s+/g, ' ').trim();
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
  const revisit = async () => {
    hub.requests.length = 0;
    return visit('test/tiny-clip');
  };
  await check('a second visit asks the Hub only which commit main is, and loads the saved model', async () => {
    const sha = await revisit();
    assert(sha === importedSha, 'not the imported model');
    const urls = hub.requests.map((r) => r.url);
    assert(urls.length === 1 && urls[0].includes('/api/models/test/tiny-clip/revision/main'), `requests: ${urls.join(', ')}`);
    return note();
  });
  await check('with the Hub out of reach, the saved copy of main loads, and the page says so', async () => {
    hub.setDown(true);
    try {
      const sha = await revisit();
      assert(sha === importedSha, 'not the imported model');
      const said = await note();
      assert(/could not be reached/.test(said) && said.includes(commit.slice(0, 7)), `the page says: ${said}`);
      return said;
    } finally {
      hub.setDown(false);
    }
  });
  await check('once main moves to a new commit, the next visit imports it again', async () => {
    hub.moveMain('test/tiny-clip');
    await revisit();
    assert((await note()).includes((await commitOf('test/tiny-clip')).slice(0, 7)), `the page says: ${await note()}`);
    const read = hub.requests.filter((r) => r.url.includes('model.safetensors')).length;
    assert(read > 0, `the weights were not read again: ${hub.requests.map((r) => r.url).join(', ')}`);
    await saved.nth(1).waitFor({ timeout: STEP_TIMEOUT });
    return `${read} weight requests; ${await saved.count()} saved copies of test/tiny-clip@main`;
  });
  await check('deleting the saved models removes them and their text features', async () => {
    while (await saved.count()) {
      const n = await saved.count();
      await saved.first().locator('[data-testid=saved-delete]').click();
      await page.waitForFunction((k) => document.querySelectorAll('[data-testid=saved-model][data-name="test/tiny-clip@main"]').length < k, n, { timeout: STEP_TIMEOUT });
    }
    const { models, text } = await storedEntries(page);
    assert(!models.some((p) => decodeURIComponent(p).includes('test/tiny-clip')), `still kept: ${models.join(', ')}`);
    assert(!text.some((p) => decodeURIComponent(p).includes(importedSha)), 'its text features are still kept');
    return `${models.length} models and ${text.length} text entries left`;
  });
  await check('one click on openai/clip-vit-base-patch32 in the list reads the bot\'s safetensors of main (its pull request), as transformers does', async () => {
    hub.requests.length = 0;
    const repo = 'openai/clip-vit-base-patch32';
    await imports(() => page.locator(`[data-testid=hub-pick][data-repo="${repo}"]`).click());
    const said = await note();
    assert(/Read model\.safetensors .* at refs\/pr\/66/.test(said) && /pull request #66/.test(said), `the page says: ${said}`);
    const pr = await commitOf(repo, 'refs/pr/66');
    const urls = hub.requests.map((r) => decodeURIComponent(r.url));
    assert(urls.some((u) => u.includes('/discussions?p=0')), 'the pull requests were not listed');
    assert(weightRequests('model.safetensors').every((r) => r.origin === 'cdn' || r.url.includes(`/resolve/${pr}/`)), `not read at refs/pr/66: ${urls.join(', ')}`);
    assert(weightRequests('pytorch_model.bin').length === 0, 'pytorch_model.bin was read');
    return `${said} ${await scoresLikeCli(page, 'pr-cat.jpg', want)}; ${urls.length} requests`;
  });
  await check('a repository with only pytorch_model.bin (typed in) reads it by ranges and scores like the CLI', async () => {
    hub.requests.length = 0;
    await imports(typed('test/clip-bin'));
    const bin = weightRequests('pytorch_model.bin');
    assert(bin.length > 0 && bin.every((r) => r.range), 'pytorch_model.bin not read by ranges');
    const said = await note();
    assert(/Read pytorch_model\.bin/.test(said), `the page says: ${said}`);
    return `${said} ${await scoresLikeCli(page, 'bin-cat.jpg', want)}`;
  });
  for (const [repo, revision, pattern, what] of [
    ['test/missing', 'main', /no public repository test\/missing/, 'a repository that does not exist (401, no error code)'],
    ['test/gated', 'main', /test\/gated is gated/, 'a gated repository (401 GatedRepo)'],
    ['test/tiny-clip', 'v9', /has no revision "v9"/, 'a revision that does not exist (404 RevisionNotFound)'],
    ['test/no-weights', 'main', /neither model\.safetensors nor pytorch_model\.bin/, 'a repository without weights'],
    ['test/drop', 'main', /dropped|could not reach|bytes of/, 'a connection dropped mid-download'],
  ]) {
    await check(`${what} is a clear error; the model in use stays`, async () => {
      const since = await errorSeq(page);
      const sha = await readySha();
      await typed(repo, revision)();
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
  await check('a ViT-B/32-shaped pytorch_model.bin (one layer a tower) from the Hub scores like the CLI on its safetensors', async () => {
    const want = JSON.parse(await readFile(path.join(dir, 'expected-b32.json'), 'utf8'))['cat.jpg'];
    await visit('test/vit-b32');
    const line = await scoresLikeCli(page, 'b32-cat.jpg', want);
    const size = (await readFile(path.join(dir, 'checkpoint-b32-bin', 'pytorch_model.bin'))).length;
    return `${(size / 1e6).toFixed(0)} MB f32 in ${await page.locator('#import-box').getAttribute('data-converted-seconds')} s; ${line}`;
  });
  await page.goto(server.url);
  await page.locator('[data-testid=ready]').waitFor({ timeout: READY_TIMEOUT });
}

/** Cheap checks done once (on the CPU run): keyboard reachability, the phone layout, the cache. */
async function extraChecks(page, shot, requests) {
  await check('keyboard reaches every control (with "Other ways to load a model" open)', async () => {
    await page.locator('#more-box').evaluate((d) => (d.open = true));
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
    for (const want of ['image-input', 'threshold', 'classes', 'apply-classes', 'hub-pick', 'hub-repo', 'bundle-input', 'bundle-url', 'export-csv']) {
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

/**
 * The stand-in Hub's repositories, from the checkpoints `make test-e2e` writes: shaped like the
 * real ones the import meets (HUB.md): safetensors on main; openai/clip-vit-base-patch32's
 * pytorch_model.bin on main with the conversion bot's pull requests (15 made against an older
 * main, 66 against main's head, 70 by someone else: only 66 holds these weights); only
 * pytorch_model.bin; gated; no weights at all. Signed storage URLs serve 40 requests each.
 */
function hubRepos(dir) {
  const at = (folder, ...files) => Object.fromEntries(files.map((f) => [f, path.join(dir, folder, f)]));
  const tiny = at('checkpoint', 'config.json', 'model.safetensors', 'merges.txt');
  const bin = at('checkpoint-bin', 'config.json', 'pytorch_model.bin', 'merges.txt');
  const junk = { 'model.safetensors': path.join(dir, 'not-these-weights.safetensors') };
  return {
    signedUses: 40,
    repos: {
      'test/tiny-clip': { files: tiny },
      'test/drop': { files: tiny },
      'test/clip-bin': { files: bin },
      'openai/clip-vit-base-patch32': {
        files: bin,
        pulls: [
          { num: 15, stale: true, files: junk },
          { num: 66, files: { 'model.safetensors': tiny['model.safetensors'] } },
          { num: 70, author: 'someone-else', files: junk },
        ],
      },
      'test/gated': { files: tiny, gated: true },
      'test/no-weights': { files: at('checkpoint', 'config.json', 'merges.txt') },
      'test/vit-b32': { files: at('checkpoint-b32-bin', 'config.json', 'pytorch_model.bin', 'merges.txt') },
    },
  };
}

async function main() {
  await mkdir(SHOTS, { recursive: true });
  // The worker with faults injected on request, beside the package's own (see faulty-worker.js).
  await copyFile(path.join(here, 'faulty-worker.js'), path.join(WWW, 'pkg', 'faulty-worker.js'));
  // A stand-in Hub on two more origins, which the page's CSP allows (as it allows the real Hub's).
  const hub = env.E2E_IMPORT ? await startHub(hubRepos(env.E2E_IMPORT)) : null;
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
