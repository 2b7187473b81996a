// A tiny static file server for www/ (Node 20, no dependencies).
//
//   node tests/e2e/server.mjs [--port 8080] [--root www] [--host 127.0.0.1] [--log] [--connect ORIGIN]...
//                             [--no-isolation]
//
// It serves files under the root only (no directory listings, no dot-files, no path traversal,
// no symlinks out of the root), answers GET and HEAD, and sends the headers the page is built
// for: a strict Content-Security-Policy, COOP/COEP (cross-origin isolation, which the CPU's
// threads need; `--no-isolation` leaves them out, as many static hosts do), exact MIME types.
// The browser tests (lib/site.mjs) import `startServer` from here.

import { createServer } from 'node:http';
import { createReadStream } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** The Hugging Face Hub's hosts: the page talks to them only when the user asks for a Hub
 * import (its API and file URLs, then the storage hosts large files redirect to). */
export const HUB_HOSTS = ['https://huggingface.co', 'https://*.huggingface.co', 'https://*.hf.co'];

/** The Content-Security-Policy, with `extraConnect` origins allowed besides the Hub's (tests). */
export function csp(extraConnect = []) {
  return (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; " +
    `img-src 'self' blob: data:; connect-src ${['\'self\'', ...HUB_HOSTS, ...extraConnect].join(' ')}; worker-src 'self'`
  );
}

export const CSP = csp();

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.bundle': 'application/octet-stream',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.bmp': 'image/bmp',
  '.avif': 'image/avif',
  '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
  '.md': 'text/plain; charset=utf-8',
  '.csv': 'text/csv; charset=utf-8',
  '.ts': 'text/plain; charset=utf-8', // wasm-bindgen's .d.ts files: readable, never executed
};

export function mimeType(file) {
  return MIME[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
}

function baseHeaders(policy = CSP, isolated = true) {
  return {
    'Content-Security-Policy': policy,
    ...(isolated && { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' }),
    'X-Content-Type-Options': 'nosniff',
  };
}

function send(res, status, text, extra = {}) {
  const body = Buffer.from(`${text}\n`);
  res.writeHead(status, {
    ...baseHeaders(res.policy, res.isolated),
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': body.length,
    ...extra,
  });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

/** Maps a URL path to a file inside `root`, or null when it must not be served. */
async function resolveFile(root, urlPath) {
  let decoded;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    return { status: 400 };
  }
  if (decoded.includes('\0') || decoded.includes('\\')) return { status: 400 };
  const segments = decoded.split('/').filter((s) => s !== '');
  // No dot-files or dot-directories, and so no `..` either.
  if (segments.some((s) => s.startsWith('.'))) return { status: 404 };
  let file = path.join(root, ...segments);
  if (file !== root && !file.startsWith(root + path.sep)) return { status: 404 };
  let info;
  try {
    info = await stat(file);
  } catch {
    return { status: 404 };
  }
  if (info.isDirectory()) {
    if (!decoded.endsWith('/')) return { redirect: `${urlPath}/` };
    file = path.join(file, 'index.html');
    try {
      info = await stat(file);
    } catch {
      return { status: 404 }; // never a listing
    }
  }
  if (!info.isFile()) return { status: 404 };
  // Symlinks must not lead out of the root.
  const real = await realpath(file).catch(() => null);
  if (!real || (real !== root && !real.startsWith(root + path.sep))) return { status: 404 };
  return { file: real, info };
}

/**
 * Starts the server. Resolves to { server, url, port, close() } once it listens.
 * `port` 0 picks a free port.
 */
export async function startServer({ root, port = 8080, host = '127.0.0.1', log = false, connect = [], isolated = true } = {}) {
  const realRoot = await realpath(path.resolve(root));
  const policy = csp(connect);
  const server = createServer(async (req, res) => {
    res.policy = policy;
    res.isolated = isolated;
    const started = Date.now();
    res.on('finish', () => {
      if (log) console.log(`${req.method} ${req.url} ${res.statusCode} ${Date.now() - started}ms`);
    });
    try {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        send(res, 405, 'method not allowed', { Allow: 'GET, HEAD' });
        return;
      }
      let pathname;
      try {
        pathname = new URL(req.url, 'http://localhost').pathname;
      } catch {
        send(res, 400, 'bad request');
        return;
      }
      const found = await resolveFile(realRoot, pathname);
      if (found.redirect) {
        send(res, 301, 'moved', { Location: found.redirect });
        return;
      }
      if (!found.file) {
        send(res, found.status, found.status === 400 ? 'bad request' : 'not found');
        return;
      }
      const { file, info } = found;
      const etag = `W/"${info.size.toString(16)}-${Math.floor(info.mtimeMs).toString(16)}"`;
      const headers = {
        ...baseHeaders(policy, isolated),
        'Content-Type': mimeType(file),
        'Content-Length': info.size,
        'Last-Modified': info.mtime.toUTCString(),
        ETag: etag,
        'Cache-Control': 'no-cache',
      };
      if (req.headers['if-none-match'] === etag) {
        delete headers['Content-Length'];
        res.writeHead(304, headers);
        res.end();
        return;
      }
      res.writeHead(200, headers);
      if (req.method === 'HEAD') {
        res.end();
        return;
      }
      const stream = createReadStream(file);
      stream.on('error', () => res.destroy());
      stream.pipe(res);
    } catch (e) {
      if (!res.headersSent) send(res, 500, 'internal error');
      else res.destroy();
      if (log) console.error(e);
    }
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const actual = server.address().port;
  return {
    server,
    port: actual,
    url: `http://${host}:${actual}/`,
    close: () => new Promise((resolve) => {
      server.closeAllConnections?.();
      server.close(() => resolve());
    }),
  };
}

function parseArgs(argv) {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const opts = { port: Number(process.env.PORT ?? 8080), root: path.resolve(here, '../../www'), host: '127.0.0.1', log: false, connect: [], isolated: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--port') opts.port = Number(value());
    else if (a === '--root') opts.root = path.resolve(value());
    else if (a === '--host') opts.host = value();
    else if (a === '--log') opts.log = true;
    else if (a === '--connect') opts.connect.push(value()); // a Hub mirror the page may fetch from
    else if (a === '--no-isolation') opts.isolated = false; // no COOP/COEP: the CPU on one thread
    else if (a === '--help' || a === '-h') {
      console.log('usage: node tests/e2e/server.mjs [--port 8080] [--root www] [--host 127.0.0.1] [--log] [--connect ORIGIN]... [--no-isolation]');
      process.exit(0);
    } else throw new Error(`unknown argument: ${a}`);
  }
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) throw new Error(`bad port: ${opts.port}`);
  return opts;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  try {
    const opts = parseArgs(process.argv.slice(2));
    const { url } = await startServer(opts);
    console.log(`serving ${opts.root} at ${url} (Ctrl-C to stop)`);
  } catch (e) {
    if (e.code === 'EADDRINUSE') {
      console.error(`error: port ${e.port} is already in use (another server, or an earlier "make demo" still running); ` +
        `stop it, or pick another port: PORT=9000 make demo`);
    } else if (e.code === 'EACCES') {
      console.error(`error: not allowed to listen on port ${e.port} (ports below 1024 need root); try PORT=8080 make demo`);
    } else {
      console.error(`error: ${e.message}`);
    }
    process.exit(1);
  }
}
