// A stand-in for the Hugging Face Hub on two local origins, for the import tests (the real Hub
// cannot be reached from our machines): `/{org}/{name}/resolve/{revision}/{file}` on the "hub"
// origin, which answers `model.safetensors` with a 302 to a second "cdn" origin, as the Hub
// sends large files to its storage hosts. The cdn serves byte ranges (206, Content-Range, and
// an ETag that is the file's SHA-256, as the Hub's is for LFS files). Both answer CORS
// preflights for Range, as the Hub does.
//
// startHub({repos: {'org/name': DIR}}) → {url, cdnUrl, requests, close()}. A repo named
// `test/drop` drops the connection halfway through every range it serves.
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import { open, readFile, stat } from 'node:fs/promises';
import path from 'node:path';

const CORS = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Allow-Headers': 'Range',
  'Access-Control-Expose-Headers': 'Content-Range, Content-Length, ETag, Accept-Ranges',
  // The page is cross-origin isolated (COEP require-corp): CORS responses are fine, and this
  // makes the intent explicit.
  'Cross-Origin-Resource-Policy': 'cross-origin',
};

// The Hub's ETag of an LFS file is its SHA-256; computed once a file.
const hashes = new Map();
function sha256Of(file) {
  if (!hashes.has(file)) hashes.set(file, readFile(file).then((b) => createHash('sha256').update(b).digest('hex')));
  return hashes.get(file);
}

function listen(handler) {
  const server = createServer(handler);
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

export async function startHub({ repos }) {
  const requests = [];
  const note = (origin, req) => requests.push({ origin, method: req.method, url: req.url, range: req.headers.range ?? null, bodyBytes: Number(req.headers['content-length'] ?? 0) });

  const cdn = await listen(async (req, res) => {
    note('cdn', req);
    if (req.method === 'OPTIONS') return res.writeHead(204, CORS).end();
    const [, repoKey, file] = /^\/blobs\/([^/]+)\/(.+)$/.exec(req.url) ?? [];
    const dir = repos[decodeURIComponent(repoKey ?? '')];
    if (!dir) return res.writeHead(404, CORS).end('not found');
    const full = path.join(dir, file);
    const size = (await stat(full)).size;
    const etag = `"${await sha256Of(full)}"`;
    const m = /^bytes=(\d+)-(\d+)?$/.exec(req.headers.range ?? '');
    if (!m) {
      return res.writeHead(200, { ...CORS, 'Content-Length': size, ETag: etag, 'Accept-Ranges': 'bytes' }).end(await readFile(full));
    }
    const start = Number(m[1]);
    const end = Math.min(m[2] === undefined ? size - 1 : Number(m[2]), size - 1);
    // Only the range is read, as a storage host would.
    const part = Buffer.alloc(end + 1 - start);
    const fh = await open(full, 'r');
    await fh.read(part, 0, part.length, start).finally(() => fh.close());
    res.writeHead(206, { ...CORS, 'Content-Range': `bytes ${start}-${end}/${size}`, 'Content-Length': part.length, ETag: etag, 'Accept-Ranges': 'bytes' });
    if (decodeURIComponent(repoKey) === 'test/drop' && part.length > 64) {
      res.write(part.subarray(0, part.length >> 1));
      res.socket.destroy(); // the connection drops mid-transfer
      return;
    }
    res.end(part);
  });
  const cdnUrl = `http://127.0.0.1:${cdn.address().port}`;

  const hub = await listen(async (req, res) => {
    note('hub', req);
    if (req.method === 'OPTIONS') return res.writeHead(204, CORS).end();
    const m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(req.url);
    const repo = m && decodeURIComponent(m[1]);
    const dir = repo && repos[repo];
    if (!dir) return res.writeHead(404, CORS).end('Repository not found');
    const file = path.join(dir, m[3]);
    const info = await stat(file).catch(() => null);
    if (!info) return res.writeHead(404, CORS).end('Entry not found');
    if (m[3] === 'model.safetensors') {
      return res.writeHead(302, { ...CORS, Location: `${cdnUrl}/blobs/${encodeURIComponent(repo)}/${m[3]}` }).end();
    }
    res.writeHead(200, { ...CORS, 'Content-Length': info.size, ETag: `"${info.size.toString(16)}"` }).end(await readFile(file));
  });
  const url = `http://127.0.0.1:${hub.address().port}`;
  return {
    url,
    cdnUrl,
    requests,
    close: () => Promise.all([hub, cdn].map((s) => new Promise((r) => (s.closeAllConnections?.(), s.close(() => r()))))),
  };
}
