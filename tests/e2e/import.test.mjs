// Importing a Hugging Face checkpoint from the user's files, in headless Chromium on the CPU:
// the page converts it and scores like the CLI; damaged files are clear errors.
// `node --test tests/e2e/import.test.mjs` (needs E2E_IMPORT, which make test-e2e writes).
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { testOnCpuPage } from './lib/site.mjs';
import { STEP_TIMEOUT, WWW, applyClassesWith, assert, check, clearMessage, editSafetensors, env, errorSeq, newError, readCard, readyChange, scoreFiles, scoresLikeCli, skip, storedEntries } from './lib/harness.mjs';

testOnCpuPage('importing a checkpoint from files', {}, (page) => importChecks(page));

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

