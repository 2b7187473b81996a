// Debian's Chromium (never a downloaded browser), headless, with a fresh profile: with WebGPU on
// its SwiftShader adapter (`webgpu`) or without any adapter (`cpu`).
import { mkdtemp } from 'node:fs/promises';
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
