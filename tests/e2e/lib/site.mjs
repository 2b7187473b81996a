// The site the browser tests open: www/ from the reference server, the test worker that injects
// faults beside the package's own, optionally a stand-in Hub on two more origins (which the
// page's CSP then allows, as it allows the real Hub's), and a page of it in Chromium.

import { after, before, test } from 'node:test';
import { copyFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { launchChromium } from '../browser.mjs';
import { startHub } from '../hub.mjs';
import { startServer } from '../server.mjs';
import { READY_TIMEOUT, SHOTS, THREADS, WWW, endRun, env, here, within } from './harness.mjs';

/**
 * @param {{hub?: Parameters<typeof startHub>[0] | null, isolated?: boolean}} [options]
 * @returns {Promise<{server: any, hub: any, connect: string[], close: () => Promise<void>}>}
 */
export async function startSite({ hub: repos = null, isolated = true } = {}) {
  await mkdir(SHOTS, { recursive: true });
  await copyFile(path.join(here, 'faulty-worker.js'), path.join(WWW, 'pkg', 'faulty-worker.js'));
  const hub = repos ? await startHub(repos) : null;
  const connect = hub ? [hub.url, hub.cdnUrl] : [];
  const server = await startServer({ root: WWW, port: Number(env.E2E_PORT ?? 0), connect, isolated });
  return {
    server,
    hub,
    connect,
    close: async () => {
      await server.close();
      await hub?.close();
    },
  };
}

/**
 * The page on the CPU (two threads), its model ready: for the tests of one concern that need
 * no WebGPU. `close()` ends the browser (printing its console if a check failed).
 */
export async function openCpuPage(site) {
  const { context, userDataDir } = await launchChromium('cpu', { acceptDownloads: true });
  const consoleLines = [];
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on('worker', (w) => w.on('console', (m) => consoleLines.push(`worker ${m.type()}: ${m.text()}`)));
  const params = new URLSearchParams({ threads: String(THREADS) });
  if (env.E2E_MODEL) params.set('model', env.E2E_MODEL);
  await page.goto(`${site.server.url}?${params}`);
  await page.locator('[data-testid=ready]').waitFor({ timeout: READY_TIMEOUT });
  return { page, close: () => endRun(context, userDataDir, consoleLines) };
}

/**
 * A test of one concern on a CPU page of its own site (`startSite(options)`): the site and the
 * page open before it and close after; `checks(page, site)` adds its checks.
 * @param {string} name
 * @param {Parameters<typeof startSite>[0]} options
 * @param {(page: any, site: Awaited<ReturnType<typeof startSite>>) => Promise<unknown>} checks
 */
export function testOnCpuPage(name, options, checks) {
  let site;
  let cpu;
  before(async () => {
    site = await startSite(options);
    cpu = await openCpuPage(site);
  });
  after(async () => {
    await cpu?.close();
    await site?.close();
  });
  test(name, (t) => within(t, () => checks(cpu.page, site)));
}
