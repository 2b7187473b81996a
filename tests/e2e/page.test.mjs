// The page in Debian's headless Chromium (never a downloaded browser), on node:test: with
// WebGPU on SwiftShader (--enable-unsafe-webgpu), on the CPU with two threads, and on the CPU
// from a server without cross-origin isolation (one thread); each against the CLI's numbers.
//
//   node --test tests/e2e/page.test.mjs [--test-name-pattern=CPU]
//
// Environment (the Makefile's test-e2e sets them): E2E_ID_IMAGE and E2E_OOD_IMAGE (images to
// score), E2E_EXPECTED (JSON from the CLI: {"<file>": {"label", "delta_energy"}}),
// E2E_DAMAGED_BUNDLE (default: a copy of the default bundle with a flipped byte), E2E_MODEL (a
// bundle URL for ?model=), E2E_THREADS (default 2), E2E_READY_TIMEOUT_MS,
// E2E_STEP_TIMEOUT_MS, CHROMIUM (default /usr/bin/chromium), E2E_ROOT (default www/).

import { after, before, test } from 'node:test';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { launchChromium } from './browser.mjs';
import { csp, mimeType, startServer } from './server.mjs';
import { startSite } from './lib/site.mjs';
import { READY_TIMEOUT, SHOTS, STEP_TIMEOUT, THREADS, TOLERANCE, WWW, assert, cardLocator, check, clearMessage, damagedBundle, endRun, env, errorSeq, fail, loadExpected, newError, readCard, scoreFiles, scoresLikeCli, skip, solidPng, within } from './lib/harness.mjs';

let site;
let expected;
before(async () => {
  site = await startSite();
  expected = await loadExpected();
});
after(() => site?.close());

test('the server sends the security headers', async () => {
  const r = await fetch(site.server.url);
  assert(r.headers.get('content-security-policy') === csp(site.connect), 'CSP');
  assert(/connect-src 'self' https:\/\/huggingface\.co /.test(csp()), 'the CSP allows the Hub');
  assert(r.headers.get('cross-origin-opener-policy') === 'same-origin', 'COOP');
  assert(r.headers.get('cross-origin-embedder-policy') === 'require-corp', 'COEP');
  assert(/^text\/html/.test(r.headers.get('content-type')), 'HTML type');
  const js = await fetch(new URL('pkg/worker.js', site.server.url));
  assert(/^text\/javascript/.test(js.headers.get('content-type')), 'JS type');
  const up = await fetch(new URL('/%2e%2e/Makefile', site.server.url));
  assert(up.status === 404, `traversal: ${up.status}`);
});

test('the page on WebGPU (SwiftShader)', (t) => within(t, () => runBackend('webgpu', site.server, expected)));
test('the page on the CPU, two threads', (t) => within(t, () => runBackend('cpu', site.server, expected)));
test('the page without cross-origin isolation (CPU, one thread)', (t) => within(t, () => runUnisolated(expected)));
test('the page with u7 activations on the CPU (relaxed SIMD), one thread and two', (t) => within(t, () => runU7()));

async function runBackend(which, server, expected) {
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
      const want = which === 'cpu' ? new RegExp(`^burn flex on ${threads}, .*int8 matmul \\(simd128, i16 activations\\)`) : /^burn wgpu \(WGSL kernels, untuned\) on (a software adapter|the GPU), burn's quantized matmul/;
      assert(want.test(engine), `engine line: "${engine}"`);
      assert(await page.evaluate(() => self.crossOriginIsolated), 'the page is not cross-origin isolated');
      return engine;
    });

    // A module once instantiated stays for the worker's life: the CPU on threads must not have
    // loaded the WebGPU build on the way (pkg/builds.js).
    if (which === 'cpu') {
      await check('one .wasm: the threaded CPU build, not the WebGPU one', async () => {
        const wasm = requests.map((r) => new URL(r.url).pathname).filter((p) => p.endsWith('.wasm'));
        assert(wasm.some((p) => p.endsWith('/pkg/threads/deltaenergy_bg.wasm')), `.wasm requested: ${wasm.join(', ')}`);
        assert(!wasm.some((p) => p.endsWith('/pkg/deltaenergy_bg.wasm')), `.wasm requested: ${wasm.join(', ')}`);
        return wasm.join(', ');
      });
    }

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

    if (which === 'cpu') await extraChecks(page, shot, requests);
  } catch (e) {
    fail(`${which} run`, e.message.split('\n')[0]);
    await shot('crash', { fullPage: true });
  } finally {
    await endRun(context, userDataDir, consoleLines);
  }
}


/**
 * The page from a server without COOP/COEP, as many static hosts serve it: no shared memory, so
 * the CPU runs the one-thread build whatever `?threads=` asks, the engine line says why, and the
 * scores still equal the CLI's.
 */
/**
 * `?activations=u7`: the relaxed-SIMD build (Chromium validates relaxed SIMD), its engine line,
 * and the CLI's u7 scores (E2E_EXPECTED_U7: `deltaenergy score --json --activations u7`). The
 * scheme rounds each row to 128 levels, so the few values whose rounding the page's and the CLI's
 * summation orders decide differently move ΔE by more than in the i16 scheme: `TOLERANCE_U7`.
 */
async function runU7() {
  const TOLERANCE_U7 = 1e-2;
  const expectedU7 = env.E2E_EXPECTED_U7 ? JSON.parse(await readFile(env.E2E_EXPECTED_U7, 'utf8')) : null;
  for (const threads of [1, Math.max(2, THREADS)]) {
    const { context, userDataDir } = await launchChromium('cpu');
    const consoleLines = [];
    const wasm = [];
    context.on('request', (req) => req.url().endsWith('.wasm') && wasm.push(new URL(req.url()).pathname));
    try {
      const page = context.pages()[0] ?? (await context.newPage());
      page.on('worker', (w) => w.on('console', (m) => consoleLines.push(`worker ${m.type()}: ${m.text()}`)));
      const params = new URLSearchParams({ backend: 'cpu', threads: String(threads), activations: 'u7' });
      if (env.E2E_MODEL) params.set('model', env.E2E_MODEL);
      await page.goto(`${site.server.url}?${params}`);
      const ready = await check(`u7, ${threads} thread(s): the model loads on the relaxed-SIMD build`, async () => {
        await page.locator('[data-testid=ready], [data-testid=error]').first().waitFor({ timeout: READY_TIMEOUT });
        // Read only where it is: a locator's textContent waits for its element.
        if (!(await page.locator('[data-testid=ready]').count())) {
          throw new Error(`error before ready: ${await page.locator('[data-testid=error]').textContent()}`);
        }
        const dir = threads > 1 ? 'threads-relaxed' : 'relaxed';
        assert(wasm.length === 1 && wasm[0].endsWith(`/pkg/${dir}/deltaenergy_bg.wasm`), `.wasm requested: ${wasm.join(', ')}`);
        return wasm[0];
      });
      if (!ready) continue;
      await check(`u7, ${threads} thread(s): the engine line says the scheme and the kernel`, async () => {
        const engine = (await page.locator('[data-testid=engine]').textContent()).trim();
        assert(/int8 matmul \(simd128, relaxed, u7 activations\)$/.test(engine), `engine line: "${engine}"`);
        return engine;
      });
      const name = path.basename(env.E2E_ID_IMAGE ?? '');
      const want = expectedU7?.[name];
      if (want) await check(`u7, ${threads} thread(s): scores like the CLI's u7`, () => scoresLikeCli(page, name, want, TOLERANCE_U7));
      else skip(`u7, ${threads} thread(s): scores like the CLI's u7`, 'E2E_ID_IMAGE or E2E_EXPECTED_U7 not set');
    } catch (e) {
      fail(`u7 run, ${threads} thread(s)`, e.message.split('\n')[0]);
    } finally {
      await endRun(context, userDataDir, consoleLines);
    }
  }
}

async function runUnisolated(expected) {
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
      // Read only where it is: a locator's textContent waits for its element.
      if (!(await page.locator('[data-testid=ready]').count())) {
        throw new Error(`error before ready: ${await page.locator('[data-testid=error]').textContent()}`);
      }
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
    // The message only where it fails: a locator's textContent waits for its element.
    if (!(await page.locator('[data-testid=ready]').count())) {
      throw new Error(`no ready: ${await page.locator('[data-testid=error]').textContent()}`);
    }
    const gets = requests.slice(n).filter((r) => new URL(r.url).pathname.endsWith('.bundle') && r.method === 'GET');
    assert(gets.length === 0, `downloaded again: ${gets.map((r) => r.url).join(', ')}`);
    const status = (await page.locator('#status').textContent()).trim();
    return status;
  });
}

// ---------------------------------------------------------------- main

