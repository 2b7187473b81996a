// Where the page's CPU scorer spends its time in Chromium: V8's sampling profiler (DevTools
// protocol) on the scorer's worker while it scores images, self time grouped by operation. Wasm
// functions carry their Rust names only in a module built with its name section
// (tools/profile/profile-web.sh swaps one in); otherwise they show as `$func…`.
//
//   node tests/e2e/profile-web.mjs --model models/bench-b32.q8.bundle --images a.jpg,b.jpg [--runs 3]
//                                  [--threads 1] [--top 25]
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium, scorePicture } from './browser.mjs';
import { startServer } from './server.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const model = arg('model', 'models/default.bundle');
const images = arg('images', '').split(',').filter(Boolean);
const runs = Number(arg('runs', '3'));
const threads = arg('threads', '1');
const top = Number(arg('top', '25'));
const timeout = 30 * 60_000;

/** The operation a function's self time counts for (wasm names are Rust paths). */
function operation(name, url) {
  const rules = [
    // One thread in wasm: the kernel and the activations' quantization are inlined into `matmul`.
    [/qmatmul::/, 'int8 matmul (kernel, activation quantization)'],
    [/gemm/, 'f32 matmul (gemm)'],
    [/exp|softmax|sigmoid/i, 'exp (softmax, sigmoid)'],
    [/attention/, 'attention (flex, besides exp and gemm)'],
    [/layer_norm|reduce|sum_dim|mean/, 'LayerNorm and reductions'],
    [/unary|binary|scalar_op|macerator/, 'elementwise (flex)'],
    [/memcpy|memmove|copy|contiguous|permute|transpose|gather|cat/, 'copies'],
    [/memset|malloc|dlmalloc|alloc|free|realloc/, 'allocation, zeroing'],
    [/decode|resize|preprocess|jpeg|zune|image::/, 'decode and preprocess'],
    [/^\(garbage collector\)$/, 'garbage collector'],
    [/^\((idle|program)\)$/, 'idle, waiting'],
  ];
  for (const [re, op] of rules) if (re.test(name)) return op;
  return url.endsWith('.wasm') || /^\$?func|wasm-function/.test(name) ? 'other wasm' : 'other JavaScript';
}

/** Self time (ms) per function name and per operation, from a CDP `Profiler.Profile`. */
function selfTimes(profile) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const perFn = new Map();
  for (let i = 0; i < profile.samples.length; i++) {
    const node = byId.get(profile.samples[i]);
    const dt = (profile.timeDeltas[i + 1] ?? 0) / 1000;
    const key = `${node.callFrame.functionName || '(anonymous)'}\t${node.callFrame.url}`;
    perFn.set(key, (perFn.get(key) ?? 0) + dt);
  }
  const perOp = new Map();
  for (const [key, ms] of perFn) {
    const [name, url] = key.split('\t');
    const op = operation(name, url);
    perOp.set(op, (perOp.get(op) ?? 0) + ms);
  }
  return { perFn, perOp };
}

const server = await startServer({ root: path.join(here, '../../www'), port: 0 });
const { context, userDataDir } = await launchChromium('cpu');
try {
  const page = context.pages()[0] ?? (await context.newPage());
  // Dedicated workers are the page target's children: attached (not flattened) so that this
  // session can talk to them through Target.sendMessageToTarget.
  const cdp = await context.newCDPSession(page);
  const workers = [];
  const pending = new Map();
  let nextId = 1;
  cdp.on('Target.attachedToTarget', ({ sessionId, targetInfo }) => {
    if (targetInfo.type === 'worker') workers.push({ sessionId, url: targetInfo.url });
  });
  cdp.on('Target.receivedMessageFromTarget', ({ message }) => {
    const m = JSON.parse(message);
    if (m.id && pending.has(m.id)) {
      pending.get(m.id)(m);
      pending.delete(m.id);
    }
  });
  const send = (sessionId, method, params = {}) =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      pending.set(id, (m) => (m.error ? reject(new Error(`${method}: ${m.error.message}`)) : resolve(m.result)));
      cdp.send('Target.sendMessageToTarget', { sessionId, message: JSON.stringify({ id, method, params }) }).catch(reject);
    });
  await cdp.send('Target.setAutoAttach', { autoAttach: true, waitForDebuggerOnStart: false, flatten: false });

  await page.goto(`${server.url}?${new URLSearchParams({ model, backend: 'cpu', threads })}`);
  await page.locator('[data-testid=ready], [data-testid=error]').first().waitFor({ timeout });
  if (!(await page.locator('[data-testid=ready]').count())) {
    throw new Error(await page.locator('[data-testid=error]').textContent());
  }
  const scorer = workers.find((w) => /worker\.js/.test(w.url)) ?? workers[0];
  if (!scorer) throw new Error('no worker attached');
  console.error(`profiling ${scorer.url} (${workers.length} workers attached)`);
  await send(scorer.sessionId, 'Profiler.enable');
  await send(scorer.sessionId, 'Profiler.setSamplingInterval', { interval: 200 });
  await send(scorer.sessionId, 'Profiler.start');
  const towers = [];
  for (let r = 0; r < runs; r++) {
    for (const file of images) {
      towers.push((await scorePicture(page, file, `${r}-${path.basename(file)}`, timeout)).imageMs);
    }
  }
  const { profile } = await send(scorer.sessionId, 'Profiler.stop');
  const { perFn, perOp } = selfTimes(profile);
  const busy = [...perOp].filter(([op]) => op !== 'idle, waiting').reduce((a, [, ms]) => a + ms, 0);
  towers.sort((a, b) => a - b);
  console.log(`${towers.length} images, image tower median ${towers[Math.floor(towers.length / 2)]} ms; worker busy ${busy.toFixed(0)} ms`);
  console.log('share of busy time, by operation');
  for (const [op, ms] of [...perOp].sort((a, b) => b[1] - a[1])) {
    if (op === 'idle, waiting') continue;
    console.log(`${((100 * ms) / busy).toFixed(1).padStart(6)}%  ${op}`);
  }
  console.log(`top ${top} functions (self time)`);
  for (const [key, ms] of [...perFn].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    const [name] = key.split('\t');
    if (/^\((idle|program)\)$/.test(name)) continue;
    console.log(`${((100 * ms) / busy).toFixed(1).padStart(6)}%  ${name.slice(0, 110)}`);
  }
} finally {
  await context.close();
  await rm(userDataDir, { recursive: true, force: true });
  await server.close?.();
}
process.exit(0);
