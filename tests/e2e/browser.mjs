// Debian's Chromium (never a downloaded browser), headless, with a fresh profile: with WebGPU on
// its SwiftShader adapter (`webgpu`) or without any adapter (`cpu`).
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

export const BASE_ARGS = [
  '--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync',
];

/** Returns {context, userDataDir}; the caller closes the context and removes the directory. */
export async function launchChromium(which, options = {}) {
  const userDataDir = await mkdtemp(path.join(tmpdir(), `deltaenergy-${which}-`));
  const args = [...BASE_ARGS, ...(which === 'webgpu' ? ['--enable-unsafe-webgpu'] : [])];
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args,
    viewport: { width: 1280, height: 900 },
    ...options,
  });
  return { context, userDataDir };
}

/** Resident memory of every Chromium process, in bytes (Linux: read from /proc). */
export async function chromiumRss() {
  const { readdir, readFile } = await import('node:fs/promises');
  let total = 0;
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const status = await readFile(`/proc/${pid}/status`, 'utf8');
      if (!/^Name:\s+(chromium|chrome)/m.test(status)) continue;
      total += Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) * 1024;
    } catch {
      /* gone */
    }
  }
  return total;
}

/** Samples `chromiumRss` every 50 ms until `stop()`, which resolves to the peak in bytes. */
export function sampleRss() {
  let peak = 0;
  let sampling = true;
  const loop = (async () => {
    while (sampling) {
      peak = Math.max(peak, await chromiumRss());
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  return {
    async stop() {
      sampling = false;
      await loop;
      return peak;
    },
  };
}

/**
 * Gives the page one picture through its file input (as `name`) and waits for its result card;
 * resolves to the card's `data-total-ms` and `data-image-ms` (decode to verdict; the image tower).
 */
export async function scorePicture(page, file, name, timeout) {
  const results = page.locator('[data-testid=result]');
  const before = await results.count();
  await page.locator('[data-testid=image-input]').setInputFiles({
    name,
    mimeType: 'application/octet-stream',
    buffer: await readFile(file),
  });
  const card = results.nth(before);
  await card.waitFor({ timeout });
  return {
    totalMs: Number(await card.getAttribute('data-total-ms')),
    imageMs: Number(await card.getAttribute('data-image-ms')),
  };
}
