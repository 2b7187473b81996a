// The page's class presets and prompt choices (CIFAR-10, ImageNet-1k; one template or CLIP's
// 80), in headless Chromium on the CPU, against the CLI. `node --test tests/e2e/presets.test.mjs`
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { testOnCpuPage } from './lib/site.mjs';
import { STEP_TIMEOUT, applyClassesWith, assert, check, env, scoresLikeCli, skip } from './lib/harness.mjs';

testOnCpuPage('class presets and prompt ensembles', {}, (page) => presetChecks(page));

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

