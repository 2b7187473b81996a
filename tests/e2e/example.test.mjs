// The package as another app uses it: unpacks the tarball `npm pack` made into
// examples/basic/node_modules, serves that plain static page with the demo model, and checks in
// headless Chromium (CPU) that it loads the model and labels an image like the CLI does.
//
//   E2E_PACKAGE=target/package/deltaenergy-0.1.0.tgz [E2E_ID_IMAGE=…] [E2E_EXPECTED=…] \
//     node --test tests/e2e/example.test.mjs

import { test } from 'node:test';
import { execFileSync } from 'node:child_process';
import { copyFile, mkdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { launchChromium } from './browser.mjs';
import { startServer } from './server.mjs';
import { assert, check, env, here, within } from './lib/harness.mjs';

const repo = path.resolve(here, '../..');
const app = path.join(repo, 'examples/basic');
const tarball = env.E2E_PACKAGE;
const image = env.E2E_ID_IMAGE ?? path.join(repo, 'www/samples/cat.jpg');
const expectedFile = env.E2E_EXPECTED;

test('the packed package in examples/basic', { skip: tarball ? false : 'E2E_PACKAGE not set (make package makes the tarball)' }, (t) => within(t, run));

async function run() {
  await check('the tarball holds the module, the worker, the wasm and the types', async () => {
    const listing = execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' }).split('\n');
    for (const f of ['index.js', 'worker.js', 'deltaenergy.js', 'deltaenergy_bg.wasm', 'types/index.d.ts', 'README.md', 'package.json']) {
      assert(listing.includes(`package/${f}`), `package/${f} is missing`);
    }
    return `${listing.filter(Boolean).length} files`;
  });

  await rm(path.join(app, 'node_modules'), { recursive: true, force: true });
  execFileSync('npm', ['install', '--no-save', '--no-audit', '--no-fund', '--loglevel=error', path.resolve(tarball)], { cwd: app, stdio: 'inherit' });
  await mkdir(path.join(app, 'models'), { recursive: true });
  await copyFile(path.join(repo, 'www/models/cifar-clip.q8.bundle'), path.join(app, 'models/cifar-clip.q8.bundle'));

  const server = await startServer({ root: app, port: 0 });
  const { context, userDataDir } = await launchChromium('cpu');
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(server.url);
    await check('the app loads the demo model', async () => {
      await page.waitForFunction(() => !document.getElementById('image').disabled || /Could not/.test(document.getElementById('status').textContent), null, { timeout: 120_000 });
      const status = (await page.locator('#status').textContent()).trim();
      assert(/^Ready on cpu/.test(status), status);
      return status;
    });
    await check(`the app labels ${path.basename(image)}`, async () => {
      await page.locator('#image').setInputFiles(image);
      const out = page.locator('[data-testid=result][data-label]');
      await out.waitFor({ timeout: 120_000 });
      const label = await out.getAttribute('data-label');
      const de = Number(await out.getAttribute('data-delta-energy'));
      if (expectedFile) {
        const want = JSON.parse(await readFile(expectedFile, 'utf8'))[path.basename(image)];
        assert(label === want.label, `label ${label}, the CLI says ${want.label}`);
        assert(Math.abs(de - want.delta_energy) <= 1e-3, `ΔE ${de}, the CLI says ${want.delta_energy}`);
        assert(String(want.ood) === (await out.getAttribute('data-ood')), `ood differs from the CLI's ${want.ood}`);
      }
      return (await out.textContent()).trim();
    });
    await check('no uncaught errors', async () => assert(errors.length === 0, errors.join(' | ')));
  } finally {
    await context.close().catch(() => {});
    await rm(userDataDir, { recursive: true, force: true }).catch(() => {});
    await server.close();
  }
}
