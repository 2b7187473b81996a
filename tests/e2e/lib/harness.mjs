// What the browser tests share: where things are, their timeouts, the checks as node:test
// subtests of the test running now (with the detail each returns shown beside it), and the
// helpers that read the page (cards, errors, the cache) and compare it with the CLI.

import nodeAssert from 'node:assert/strict';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';

export const here = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const WWW = path.resolve(process.env.E2E_ROOT ?? path.join(here, '../../www'));
export const SHOTS = path.join(here, 'screenshots');
export const env = process.env;
// SwiftShader is slow: a model's first load on it takes minutes.
export const READY_TIMEOUT = Number(env.E2E_READY_TIMEOUT_MS ?? 600_000);
export const STEP_TIMEOUT = Number(env.E2E_STEP_TIMEOUT_MS ?? 300_000);
export const TOLERANCE = 1e-3;
export const THREADS = Number(env.E2E_THREADS ?? 2);

/** The node:test context whose subtests `check` and `skip` add (see `within`). */
let context = null;
let failedHere = 0;

/** Runs `fn` with `t`'s subtests as the checks' home; resolves to what `fn` resolves to. */
export async function within(t, fn) {
  const before = context;
  context = t;
  try {
    return await fn();
  } finally {
    context = before;
  }
}

/**
 * One check, a subtest of the test running now: its detail (a string `fn` resolves to) is
 * printed beside it. Resolves to whether it passed, for checks later ones depend on.
 */
export async function check(name, fn) {
  let ok = false;
  await context.test(name, async (t) => {
    try {
      const detail = await fn();
      if (typeof detail === 'string' && detail) t.diagnostic(detail);
      ok = true;
    } catch (e) {
      failedHere += 1;
      throw e;
    }
  });
  return ok;
}

/** A check that cannot run here, counted as skipped with the reason. */
export function skip(name, why) {
  return context.test(name, { skip: why }, () => {});
}

/** A failure outside any check (a run that could not go on). */
export function fail(name, detail) {
  failedHere += 1;
  return context.test(name, () => {
    throw new Error(detail);
  });
}

/** Whether a check has failed in this process (to print the console of a failed run). */
export const anyFailed = () => failedHere > 0;

export function assert(cond, message) {
  nodeAssert.ok(cond, message);
}

/** A solid-colour RGB PNG, written with node:zlib. */
export function solidPng(width, height, [r, g, b]) {
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

export async function loadExpected() {
  if (!env.E2E_EXPECTED) return null;
  const raw = JSON.parse(await readFile(env.E2E_EXPECTED, 'utf8'));
  const out = new Map();
  for (const [k, v] of Object.entries(raw)) out.set(path.basename(k), v);
  return out;
}

export async function damagedBundle(baseUrl) {
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

export const attr = (v) => JSON.stringify(String(v));

export function cardLocator(page, name) {
  return page.locator(`[data-image=${attr(name)}]:is([data-testid=result], [data-testid=result-error])`).first();
}

export async function errorSeq(page) {
  return page.evaluate(() => Number(document.querySelector('[data-testid=error]')?.dataset.seq ?? 0));
}

/** Waits for an error message newer than `since`; returns its text. */
export async function newError(page, since, timeout = STEP_TIMEOUT) {
  await page.waitForFunction(
    (s) => Number(document.querySelector('[data-testid=error]')?.dataset.seq ?? 0) > s,
    since,
    { timeout },
  );
  return (await page.locator('[data-testid=error]').textContent()).trim();
}

export async function scoreFiles(page, files) {
  await page.locator('[data-testid=image-input]').setInputFiles(files);
}

export async function readCard(page, name, timeout = STEP_TIMEOUT) {
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
export function editSafetensors(buffer, edit) {
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
export async function storedEntries(page) {
  return page.evaluate(async () => {
    const cache = await caches.open('deltaenergy-models-v1');
    const paths = (await cache.keys()).map((r) => new URL(r.url).pathname);
    return { models: paths.filter((p) => p.includes('/models/')), text: paths.filter((p) => p.includes('/text/')) };
  });
}

/** Waits until the ready chip names another bundle than `before`, or an error newer than `since`. */
export async function readyChange(page, before, since) {
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
export async function scoresLikeCli(page, name, want, tolerance = TOLERANCE) {
  await scoreFiles(page, { name, mimeType: 'image/jpeg', buffer: await readFile(env.E2E_ID_IMAGE) });
  const r = await readCard(page, name);
  assert(!r.error, r.error);
  assert(r.label === want.label, `label "${r.label}", the CLI says "${want.label}"`);
  const diff = Math.abs(r.de - want.delta_energy);
  assert(diff <= tolerance, `ΔE ${r.de}, the CLI says ${want.delta_energy} (tolerance ${tolerance})`);
  return `${r.label}, ΔE ${r.de} (CLI ${want.delta_energy}, |diff| ${diff.toExponential(2)})`;
}

export function clearMessage(text) {
  return text && text.length >= 12 && !/undefined|\[object|null$/i.test(text);
}


/** Applies the class editor's text with a choice of prompts; resolves once applied. */
export async function applyClassesWith(page, templates) {
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

/** After a browser run: its console's last lines if anything failed, then the browser and its profile. */
export async function endRun(context, userDataDir, consoleLines) {
  if (anyFailed() && consoleLines.length) {
    console.log('  console (last 15):');
    for (const l of consoleLines.slice(-15)) console.log(`    ${l.slice(0, 300)}`);
  }
  await context.close().catch(() => {});
  await rm(userDataDir, { recursive: true, force: true }).catch(() => {});
}
