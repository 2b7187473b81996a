// Prompt tuning in the page (`scorer.tune`), in headless Chromium on the CPU (two threads) and on
// WebGPU (SwiftShader): the same pictures, seed and settings as the CLI's `tune` give the same
// context vectors, report and scores; bad input is a clear error and leaves the model in use.
//
//   node --test tests/e2e/tune.test.mjs
//
// Needs E2E_IMPORT with tune-data/ (class folders), cli-tuned.bundle, cli-tuned.json and
// expected-tuned.json, which make test-e2e writes from the data set (skipped without it).

import { after, before, test } from 'node:test';
import { readFile, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { launchChromium } from './browser.mjs';
import { openCpuPage, startSite } from './lib/site.mjs';
import { READY_TIMEOUT, SHOTS, STEP_TIMEOUT, THREADS, WWW, assert, check, env, errorSeq, readCard, readyChange, scoreFiles, skip, within } from './lib/harness.mjs';

// The Makefile's TUNE_E2E, in the package's names.
const SETTINGS = { shots: 4, calibration: 4, epochs: 5, batch: 8, lambda: 1, validationOutliers: 16, seed: 3 };
// Measured: the page's context against the CLI's, largest difference over the largest value
// (CPU and WebGPU both well inside; the images' features differ by float rounding only).
const CONTEXT_TOLERANCE = 1e-3;
const TOLERANCE = 1e-3;

const dir = env.E2E_IMPORT ? path.join(env.E2E_IMPORT, 'tune-data') : '';
let site;
let cli = null;
before(async () => {
  site = await startSite();
  if (!dir) return;
  try {
    const classes = (await readdir(dir)).sort();
    const pictures = [];
    for (const label of classes) {
      for (const f of (await readdir(path.join(dir, label))).sort()) {
        pictures.push({ label, bytes: [...(await readFile(path.join(dir, label, f)))] });
      }
    }
    cli = {
      pictures,
      report: JSON.parse(await readFile(path.join(env.E2E_IMPORT, 'cli-tuned.json'), 'utf8')),
      context: contextOf(await readFile(path.join(env.E2E_IMPORT, 'cli-tuned.bundle'))),
      expected: JSON.parse(await readFile(path.join(env.E2E_IMPORT, 'expected-tuned.json'), 'utf8')),
    };
  } catch {
    cli = null; // no data set: the tests say so
  }
});
after(() => site?.close());

/** A bundle's learned context (src/bundle/format.rs: header at 48, data at the next 64). */
function contextOf(bytes) {
  const b = Buffer.from(bytes);
  const headerLen = b.readUInt32LE(12);
  const header = JSON.parse(b.subarray(48, 48 + headerLen).toString('utf8'));
  const start = Math.ceil((48 + headerLen) / 64) * 64 + header.context.data.offset;
  const f = new Float32Array(b.buffer.slice(b.byteOffset + start, b.byteOffset + start + header.context.data.length));
  return { values: [...f], nCtx: header.context.n_ctx, header };
}

test('tuning in the page on the CPU, two threads', (t) => within(t, () => run('cpu')));
test('tuning in the page on WebGPU (SwiftShader)', (t) => within(t, () => run('webgpu')));
test('the page\'s tuning panel: pictures by class, progress, Stop, the result, the tuned model in use', (t) => within(t, () => panel()));

/** The visitor's path through the page: add pictures to named classes, tune, stop, use. */
async function panel() {
  if (!cli) {
    skip('the tuning panel', 'no tune-data (make test-e2e writes it from the data set)');
    return;
  }
  const { page, close } = await openCpuPage(site);
  try {
    const add = async () => {
      for (const label of [...new Set(cli.pictures.map((p) => p.label))]) {
        await page.locator('[data-testid=tune-class]').fill(label);
        const files = cli.pictures.filter((p) => p.label === label).map((p, i) => ({ name: `${label}-${i}.jpg`, mimeType: 'image/jpeg', buffer: Buffer.from(p.bytes) }));
        await page.locator('[data-testid=tune-files]').setInputFiles(files);
      }
    };
    await add();
    await page.locator('[data-testid=tune-shots]').fill('4');
    await page.locator('[data-testid=tune-seed]').fill('3');
    await check('Stop during the steps leaves the model in use', async () => {
      const sha = await page.locator('[data-testid=ready]').getAttribute('data-sha256');
      await page.locator('[data-testid=tune-epochs]').fill('200');
      await page.locator('[data-testid=tune-run]').click();
      await page.waitForFunction(() => /^Step \d+ of/.test(document.querySelector('[data-testid=tune-progress]')?.textContent ?? ''), null, { timeout: STEP_TIMEOUT });
      await page.locator('[data-testid=tune-stop]').click();
      await page.waitForFunction(() => /^Stopped/.test(document.querySelector('[data-testid=tune-progress]')?.textContent ?? ''), null, { timeout: STEP_TIMEOUT });
      assert((await page.locator('[data-testid=ready]').getAttribute('data-sha256')) === sha, 'the model changed');
      return (await page.locator('[data-testid=tune-progress]').textContent()).trim();
    });
    const tuned = await check('tuning shows the loss, the time and what it changed on the pictures held out', async () => {
      await page.locator('[data-testid=tune-epochs]').fill('5');
      const listed = await page.locator('[data-testid=tune-classes] li').evaluateAll((ls) => ls.map((l) => `${l.dataset.class}:${l.dataset.count}`));
      assert(listed.join(' ') === 'airplane:8 cat:8 ship:8', `classes listed: ${listed}`);
      await page.locator('[data-testid=tune-run]').click();
      await page.locator('[data-testid=tune-result]').waitFor({ state: 'visible', timeout: STEP_TIMEOUT });
      const summary = page.locator('[data-testid=tune-summary-result]');
      const text = (await summary.textContent()).trim();
      assert(/Held-out accuracy .* → .* on 12 pictures/.test(text) && /AUROC/.test(text), `summary: ${text}`);
      assert((await page.locator('[data-testid=tune-result] svg.histogram').count()) === 2, 'two histograms');
      await page.locator('#tune-section').screenshot({ path: path.join(SHOTS, 'cpu-tune.png') }).catch(() => {});
      const progress = (await page.locator('[data-testid=tune-progress]').textContent()).trim();
      assert(/Tuned in 5 steps, .* steps a second on the CPU/.test(progress), `progress: ${progress}`);
      return `${text} ${progress}`;
    });
    if (tuned) {
      await check('“Use the tuned model” loads it: its three classes score a cat', async () => {
        const before = await page.locator('[data-testid=ready]').getAttribute('data-sha256');
        const since = await errorSeq(page);
        await page.locator('[data-testid=tune-use]').click();
        await readyChange(page, before, since);
        await scoreFiles(page, { name: 'tuned-cat.jpg', mimeType: 'image/jpeg', buffer: await readFile(path.join(WWW, 'samples', 'cat.jpg')) });
        const r = await readCard(page, 'tuned-cat.jpg');
        assert(!r.error && ['airplane', 'cat', 'ship'].includes(r.label), `scored: ${JSON.stringify(r)}`);
        const saved = await page.locator('[data-testid=saved-models]').textContent();
        assert(/tuned/.test(saved), `saved models: ${saved}`);
        return `${r.label}, ΔE ${r.de}`;
      });
    }
  } finally {
    await close();
  }
}

async function run(which) {
  if (!cli) {
    skip(`tuning on ${which}`, 'no tune-data (make test-e2e writes it from the data set)');
    return;
  }
  const { context, userDataDir } = await launchChromium(which);
  const lines = [];
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    page.on('console', (m) => lines.push(`${m.type()}: ${m.text()}`));
    page.on('worker', (w) => w.on('console', (m) => lines.push(`worker ${m.type()}: ${m.text()}`)));
    // The page's origin (cross-origin isolated by the reference server), not the page itself.
    await page.goto(`${site.server.url}samples/index.json`);
    page.setDefaultTimeout(READY_TIMEOUT);

    if (which === 'cpu') await badInput(page);

    const ok = await check(`the page tunes like the CLI (${which}): context, report, scores`, async () => {
      const r = await page.evaluate(
        async ({ which, pictures, settings, threads }) => {
          const { createScorer } = await import('/pkg/index.js');
          const scorer = await createScorer({ model: '/models/default.bundle', device: which, precision: 'f32', threads });
          try {
            const examples = pictures.map((p) => ({ image: new Blob([new Uint8Array(p.bytes)]), label: p.label }));
            const stages = new Set();
            let steps = 0;
            const report = await scorer.tune(examples, {
              ...settings,
              onProgress: (e) => {
                if (e.status !== 'tune') return;
                stages.add(e.stage);
                if (e.stage === 'train') steps = Math.max(steps, e.done);
              },
            });
            const b = report.bundle;
            const view = new DataView(b.buffer, b.byteOffset);
            const headerLen = view.getUint32(12, true);
            const header = JSON.parse(new TextDecoder().decode(b.subarray(48, 48 + headerLen)));
            const start = Math.ceil((48 + headerLen) / 64) * 64 + header.context.data.offset;
            const context = [...new Float32Array(b.slice(start, start + header.context.data.length).buffer)];
            const scores = {};
            for (const name of ['cat.jpg', 'blotchy.jpg']) {
              const r = await scorer.classify(await (await fetch(`/samples/${name}`)).blob());
              scores[name] = { label: r.label, deltaEnergy: r.scores.deltaEnergy, ood: r.ood };
            }
            const saved = (await scorer.cachedModels()).find((m) => m.tuned);
            const { bundle, ...rest } = report;
            return { report: rest, context, header, scores, stages: [...stages], steps, device: scorer.device, info: scorer.info, saved };
          } finally {
            scorer.dispose();
          }
        },
        { which, pictures: cli.pictures, settings: SETTINGS, threads: THREADS },
      );
      assert(r.device === which, `asked for ${which}, ran on ${r.device}`);
      const want = cli.report;
      // The context.
      const scale = Math.max(...cli.context.values.map(Math.abs));
      const worst = Math.max(...r.context.map((v, i) => Math.abs(v - cli.context.values[i])));
      assert(r.context.length === cli.context.values.length, `context of ${r.context.length} values, CLI ${cli.context.values.length}`);
      assert(worst / scale <= CONTEXT_TOLERANCE, `context differs from the CLI's by ${worst} (scale ${scale})`);
      // The report: the command line's fields in camelCase.
      assert(r.report.loss.length === want.loss.length, `losses ${r.report.loss.length} vs ${want.loss.length}`);
      r.report.loss.forEach((l, i) => assert(Math.abs(l - want.loss[i]) <= TOLERANCE * (1 + Math.abs(want.loss[i])), `epoch ${i + 1} loss ${l} vs CLI ${want.loss[i]}`));
      for (const k of ['before', 'after']) {
        assert(r.report[k].accuracy === want[k].accuracy, `${k} accuracy ${r.report[k].accuracy} vs CLI ${want[k].accuracy}`);
      }
      assert(Math.abs(r.report.threshold - want.threshold) <= TOLERANCE, `threshold ${r.report.threshold} vs CLI ${want.threshold}`);
      assert(r.report.score.c === want.score.c && r.report.score.tau === want.score.tau, `score ${JSON.stringify(r.report.score)} vs CLI ${JSON.stringify(want.score)}`);
      assert(r.report.calibrationImages === want.calibration_images && r.report.bytes === want.bytes, `calibration ${r.report.calibrationImages} / bytes ${r.report.bytes} vs CLI ${want.calibration_images} / ${want.bytes}`);
      // The tuned model in use scores as the CLI's tuned bundle.
      for (const [name, w] of Object.entries(cli.expected)) {
        const got = r.scores[name];
        assert(got.label === w.label, `${name}: ${got.label} vs CLI ${w.label}`);
        assert(Math.abs(got.deltaEnergy - w.delta_energy) <= TOLERANCE, `${name}: ΔE ${got.deltaEnergy} vs CLI ${w.delta_energy}`);
      }
      assert(r.info.hasContext && JSON.stringify(r.info.classes) === JSON.stringify(r.report.classes), `info after tuning: ${JSON.stringify(r.info.classes)}`);
      assert(['features', 'train', 'outliers', 'assess'].every((s) => r.stages.includes(s)) && r.steps === r.report.steps, `progress: ${r.stages} ${r.steps}/${r.report.steps}`);
      assert(r.saved?.tuned?.seed === SETTINGS.seed && /tuned: 4 shots/.test(r.saved.source), `saved: ${JSON.stringify(r.saved)}`);
      return `context within ${(worst / scale).toExponential(1)} of the CLI's; loss ${r.report.loss.map((l) => l.toFixed(4)).join(' ')}; accuracy ${r.report.before.accuracy} → ${r.report.after.accuracy}; ${r.report.steps} steps in ${r.report.seconds.toFixed(1)} s; cat ${r.scores['cat.jpg'].label} ΔE ${r.scores['cat.jpg'].deltaEnergy.toFixed(4)}`;
    });
    if (!ok) console.log(lines.slice(-40).join('\n'));
  } finally {
    await context.close();
    await rm(userDataDir, { recursive: true, force: true });
  }
}

/** Each a clear error, with the model in use unchanged. */
async function badInput(page) {
  const cases = await page.evaluate(
    async ({ pictures, settings, threads }) => {
      const { createScorer } = await import('/pkg/index.js');
      const scorer = await createScorer({
        model: '/models/default.bundle',
        device: 'cpu',
        threads,
        workerUrl: new URL('/pkg/faulty-worker.js', location.href),
      });
      const examples = pictures.map((p) => ({ image: new Blob([new Uint8Array(p.bytes)]), label: p.label }));
      const sha = () => scorer.info.sha256;
      const before = sha();
      const cat = await (await fetch('/samples/cat.jpg')).blob();
      const label = (await scorer.classify(cat)).label;
      const out = {};
      const attempt = async (name, run) => {
        try {
          await run();
          out[name] = { error: null };
        } catch (e) {
          out[name] = { error: `${e.name}: ${e.message}` };
        }
        out[name].unchanged = sha() === before && (await scorer.classify(cat)).label === label;
      };
      try {
        await attempt('one picture', () => scorer.tune([examples[0]], settings));
        await attempt('one class', () => scorer.tune(examples.filter((e) => e.label === 'cat'), settings));
        await attempt('a class without pictures', () => scorer.tune(examples, { ...settings, classes: ['airplane', 'cat', 'dog', 'ship'] }));
        await attempt('an unreadable file', () => {
          const bad = [...examples];
          bad[5] = { image: new Blob([new TextEncoder().encode('not a picture')]), label: bad[5].label };
          return scorer.tune(bad, settings);
        });
        await attempt('an unknown option', () => scorer.tune(examples, { ...settings, shot: 3 }));
        await attempt('Stop in the middle', () => {
          const stop = new AbortController();
          return scorer.tune(examples, {
            ...settings,
            epochs: 50,
            signal: stop.signal,
            onProgress: (e) => e.status === 'tune' && e.stage === 'train' && stop.abort(),
          });
        });
        const channel = new BroadcastChannel('deltaenergy-faults');
        await new Promise((resolve) => {
          channel.onmessage = ({ data }) => data === 'armed' && resolve(undefined);
          channel.postMessage({ op: 'tune', name: 'CrashError', message: 'unreachable (injected)', midRun: true });
        });
        await attempt('a crash of the worker mid-run', () => scorer.tune(examples, settings));
        await attempt('apply: false', () => scorer.tune(examples, { ...settings, epochs: 1, apply: false, keep: false }));
        return out;
      } finally {
        scorer.dispose();
      }
    },
    { pictures: cli.pictures, settings: SETTINGS, threads: THREADS },
  );
  const want = {
    'one picture': /InputError: .*at least two classes/,
    'one class': /InputError: .*at least two classes/,
    'a class without pictures': /InputError: no pictures of `dog`/,
    'an unreadable file': /InputError: picture 6 \(of `airplane`\) could not be read/,
    'an unknown option': /InputError: tune options: unknown field `shot`/,
    'Stop in the middle': /AbortError: tuning was stopped; the model in use is unchanged/,
    'a crash of the worker mid-run': /CrashError: .*unreachable \(injected\)/,
    'apply: false': null,
  };
  for (const [name, pattern] of Object.entries(want)) {
    await check(`tune: ${name} is ${pattern ? 'a clear error' : 'no error'}, and the model in use is unchanged`, async () => {
      const c = cases[name];
      assert(pattern ? pattern.test(c.error ?? '') : c.error === null, `error: ${c.error}`);
      assert(c.unchanged, 'the model in use changed');
      return c.error ?? 'resolved; the model in use is the old one';
    });
  }
}
