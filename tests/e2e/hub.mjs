// A stand-in for the Hugging Face Hub on two local origins, for the import tests (no machine
// here reaches the real Hub). It answers as the real one does, from public evidence about it
// (collected in shared/docs/HUB.md; the sources are cited beside each behaviour), never from what
// the page expects:
//
// - The API (`/api/models/{repo}/…`):
//   - `revision/{rev}` (and no revision: main) → {_id, id, sha, private, gated, siblings:
//     [{rfilename}], …}: huggingface_hub `hf_api.py` `model_info` (the revision quoted with
//     `quote(revision, safe="")`) and `ModelInfo`; a recorded answer in its cassette
//     `InferenceApiTest.test_simple_inference.yaml`. A gated repo's info still answers 200,
//     with `gated: "manual"` (anonymous probe notes, HUB.md §Errors).
//   - `discussions?p=N` → {discussions (50 a page), count, start, numClosedDiscussions (page 0
//     only)}, each {num, author: {name, …}, repo, title, status, createdAt, isPullRequest, …}:
//     huggingface_hub `get_repo_discussions` and a recorded answer (its Rust port's test
//     `test_real_discussions_list_response`).
//   - `commits/{rev}` → [{id, title, message, authors: [{user, avatar}], date}], newest first:
//     huggingface_hub `list_repo_commits` ("sorted by date (last commit first)"); huggingface.js
//     `list-commits.ts`. A conversion pull request's ref lists its commit, then main's head
//     (transformers `safetensors_conversion.previous_pr` compares `commits[1]` to main's head).
// - Files (`/{repo}/resolve/{rev}/{file}`, the revision one path segment, `refs%2Fpr%2F15`):
//   - small files answer 307 to `/api/resolve-cache/models/{repo}/{commit}/{file}?…` on the same
//     origin, a relative Location (transformers request logs; swift-transformers PR #209);
//   - LFS files (`*.bin`, `*.safetensors`, … by the Hub's default .gitattributes) answer 302 to a
//     signed URL on a storage origin that expires (cas-bridge.xethub.hf.co `X-Amz-Expires=3600`,
//     huggingface/datasets #7685), with `X-Repo-Commit`, `X-Linked-Size` and `X-Linked-ETag`
//     (the SHA-256) on this first hop only (curl dumps; julien-c in asteroid-team/asteroid #377).
// - Errors, with `X-Error-Code` and `X-Error-Message` (huggingface_hub `_http.py`
//   `hf_raise_for_status`; curl dumps): a missing repo answers an anonymous caller 401 with no
//   code ("Invalid username or password.", as for a private one); a gated repo's files 401
//   `GatedRepo`; a missing revision 404 `RevisionNotFound`; a missing file 404 `EntryNotFound`,
//   body "Entry not found".
// - CORS: the API and resolve answers allow the request's Origin (`Vary: Origin`) and expose
//   only the headers listed below (curl dumps of 2025-26); the storage origin answers `*` and
//   exposes `Accept-Ranges, Content-Range, Content-Type, Content-Disposition, ETag, X-Cache`
//   (huggingface/datasets #7931), so the first hop's headers never reach a page. Its ETag is a
//   Xet hash, not the SHA-256 (curl dumps). How either answers a CORS preflight is not on record:
//   the stand-in answers them, and the tests check that the page never needs one.
//
// Not known and so not imitated: the body of an expired signed URL (other refusals of the
// storage are 403s, which is what this answers), rate limits (3,000 resolver calls per 5 minutes
// per IP for anonymous callers: hub-docs `rate-limits.md`).
//
// startHub({repos, signedUses}) → {url, cdnUrl, requests, moveMain(repo), setDown(bool), close()}.
// `signedUses` (default unlimited) is how many requests a signed URL serves before it answers
// 403, as one does once its hour is over.
// repos: {'org/name': {files: {name: path}, gated?, pulls?: [{num, files, author?, title?,
// status?, stale?}]}}: `files` is main; a pull request adds its files to main's (`stale`: its
// parent is an older commit than main's head). A repo named `test/drop` drops the connection
// halfway through every range its storage serves.
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import { open, readFile, stat } from 'node:fs/promises';

const API_EXPOSE = 'X-Repo-Commit,X-Request-Id,X-Error-Code,X-Error-Message,X-Total-Count,ETag,Link,Accept-Ranges,Content-Range,X-Xet-Access-Token,X-Xet-Token-Expiration,X-Xet-Refresh-Route,X-Xet-Cas-Url,X-Xet-Hash';
const RESOLVE_EXPOSE = 'X-Repo-Commit,X-Request-Id,X-Error-Code,X-Error-Message,X-Total-Count,ETag,Link,Accept-Ranges,Content-Range,X-Linked-Size,X-Linked-ETag,X-Xet-Hash';
const STORAGE_CORS = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Allow-Headers': 'Content-Range, Content-Type, Content-Disposition, ETag',
  'Access-Control-Expose-Headers': 'Accept-Ranges, Content-Range, Content-Type, Content-Disposition, ETag, X-Cache',
};
// The Hub's default .gitattributes sends these to LFS (HUB.md, "Which files are LFS").
const LFS = /\.(7z|arrow|bin|bz2|ckpt|ftz|gz|h5|joblib|mlmodel|model|msgpack|npy|npz|onnx|ot|parquet|pb|pickle|pkl|pt|pth|rar|safetensors|tar|tflite|tgz|wasm|xz|zip|zst)$/;
const BOT = 'SFconvertbot';
const TITLE = 'Adding `safetensors` variant of this model';

const sha1 = (...parts) => createHash('sha1').update(parts.join('\0')).digest('hex');

// Hashes computed once a file.
const hashes = new Map();
function hashOf(file, algo) {
  const key = `${algo} ${file}`;
  if (!hashes.has(key)) hashes.set(key, readFile(file).then((b) => createHash(algo).update(b).digest('hex')));
  return hashes.get(key);
}

function listen(handler) {
  const server = createServer(handler);
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

export async function startHub({ repos, signedUses = Infinity }) {
  const requests = [];
  let down = false;
  const signatures = []; // uses left of each signed URL given, by its number
  const mainMoves = new Map();
  const note = (origin, req) => requests.push({
    origin,
    method: req.method,
    url: req.url,
    range: req.headers.range ?? null,
    from: req.headers.origin ?? null,
    bodyBytes: Number(req.headers['content-length'] ?? 0),
    preflight: req.method === 'OPTIONS',
  });

  /** A repo's revisions: main, and each pull request's ref, with their commits and files. */
  function revisions(repo) {
    const spec = repos[repo];
    const main = { name: 'main', commit: sha1(repo, 'main', mainMoves.get(repo) ?? 0), files: spec.files };
    const older = sha1(repo, 'an older main');
    const out = [main];
    for (const pr of spec.pulls ?? []) {
      out.push({
        name: `refs/pr/${pr.num}`,
        commit: sha1(repo, 'pr', pr.num),
        parent: pr.stale ? older : main.commit,
        files: { ...spec.files, ...pr.files },
        pr,
      });
    }
    return out;
  }
  const revisionOf = (repo, rev) => revisions(repo).find((r) => r.name === rev || r.commit === rev);

  const cdn = await listen(async (req, res) => {
    note('cdn', req);
    if (down) return req.socket.destroy();
    if (req.method === 'OPTIONS') return res.writeHead(204, { ...STORAGE_CORS, 'Access-Control-Allow-Methods': 'GET, HEAD' }).end();
    const url = new URL(req.url, 'http://cdn');
    const [, repoKey, commit, file] = /^\/xet-bridge-us\/([^/]+)\/([0-9a-f]{40})\/(.+)$/.exec(url.pathname) ?? [];
    const repo = decodeURIComponent(repoKey ?? '');
    const full = repos[repo] && revisionOf(repo, commit)?.files[decodeURIComponent(file ?? '')];
    const signature = Number(url.searchParams.get('X-Amz-Signature')?.split('-')[0]);
    if (!full || !(signatures[signature] > 0)) {
      // An unknown object or an old signature: S3's refusal (huggingface_hub #4430).
      return res.writeHead(403, { ...STORAGE_CORS, 'Content-Type': 'application/xml' }).end('<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>');
    }
    signatures[signature] -= 1;
    const size = (await stat(full)).size;
    // The storage's ETag names the content (a Xet hash), not its SHA-256.
    const headers = { ...STORAGE_CORS, ETag: `"${(await hashOf(full, 'sha512')).slice(0, 64)}"`, 'Accept-Ranges': 'bytes', 'Content-Type': 'application/octet-stream', 'Cache-Control': 'public, max-age=31536000', 'X-Cache': 'Miss from cloudfront' };
    const m = /^bytes=(\d+)-(\d+)?$/.exec(req.headers.range ?? '');
    if (!m) return res.writeHead(200, { ...headers, 'Content-Length': size }).end(await readFile(full));
    const start = Number(m[1]);
    if (start >= size) return res.writeHead(416, { ...headers, 'Content-Range': `bytes */${size}` }).end();
    const end = Math.min(m[2] === undefined ? size - 1 : Number(m[2]), size - 1);
    // Only the range is read, as a storage host would.
    const part = Buffer.alloc(end + 1 - start);
    const fh = await open(full, 'r');
    await fh.read(part, 0, part.length, start).finally(() => fh.close());
    res.writeHead(206, { ...headers, 'Content-Range': `bytes ${start}-${end}/${size}`, 'Content-Length': part.length });
    if (repo === 'test/drop' && part.length > 64) {
      res.write(part.subarray(0, part.length >> 1));
      res.socket.destroy(); // the connection drops mid-transfer
      return;
    }
    res.end(part);
  });
  const cdnUrl = `http://127.0.0.1:${cdn.address().port}`;

  const hub = await listen(async (req, res) => {
    note('hub', req);
    if (down) return req.socket.destroy();
    const url = new URL(req.url, 'http://hub');
    const resolve = /^\/[^/]+\/[^/]+\/resolve\//.test(url.pathname);
    const cors = {
      'Access-Control-Allow-Origin': req.headers.origin ?? 'https://huggingface.co',
      Vary: 'Origin',
      'Access-Control-Max-Age': '86400',
      'Access-Control-Expose-Headers': resolve ? RESOLVE_EXPOSE : API_EXPOSE,
    };
    if (req.method === 'OPTIONS') {
      return res.writeHead(204, { ...cors, 'Access-Control-Allow-Headers': req.headers['access-control-request-headers'] ?? '' }).end();
    }
    const json = (status, body, extra = {}) => res.writeHead(status, { ...cors, 'Content-Type': 'application/json; charset=utf-8', ...extra }).end(JSON.stringify(body));
    const refuse = (status, code, message, extra = {}) => {
      const headers = { ...cors, 'Content-Type': 'text/plain; charset=utf-8', 'X-Error-Message': message, ...extra };
      if (code) headers['X-Error-Code'] = code;
      res.writeHead(status, headers).end(message);
    };
    const noRepo = () => json(401, { error: 'Invalid username or password.' }, { 'X-Error-Message': 'Invalid username or password.' });

    // The API.
    let m = /^\/api\/models\/([^/]+\/[^/]+)(?:\/(revision|discussions|commits)(?:\/(.+))?)?$/.exec(url.pathname);
    if (m) {
      const repo = decodeURIComponent(m[1]);
      if (!repos[repo]) return noRepo();
      const [, , what, rest] = m;
      if (what === 'discussions') {
        const all = (repos[repo].pulls ?? []).map((pr) => ({
          num: pr.num,
          author: { name: pr.author ?? BOT, type: 'user' },
          repo: { name: repo, type: 'model' },
          title: pr.title ?? TITLE,
          status: pr.status ?? 'open',
          createdAt: '2023-03-15T00:00:00.000Z',
          isPullRequest: true,
          numComments: 1,
          pinned: false,
        })).reverse(); // newest first, as the Hub's pages list them
        const p = Number(url.searchParams.get('p') ?? 0);
        const page = all.slice(p * 50, p * 50 + 50);
        return json(200, { discussions: page, count: all.length, start: p * 50, ...(p === 0 ? { numClosedDiscussions: 0 } : {}) });
      }
      const rev = what ? decodeURIComponent(rest ?? '') : 'main';
      const r = revisionOf(repo, rev);
      // The code and status are on record (anonymous probe notes); the message text is not.
      if (!r) return refuse(404, 'RevisionNotFound', `Invalid rev id: ${rev}`);
      if (what === 'commits') {
        const commit = (id, title) => ({ id, title, message: '', authors: [{ user: r.pr ? BOT : 'system', avatar: '' }], date: '2023-03-15T00:00:00.000Z' });
        const chain = r.pr ? [commit(r.commit, TITLE), commit(r.parent, 'main')] : [commit(r.commit, 'main')];
        return json(200, chain, { 'X-Total-Count': String(chain.length) });
      }
      return json(200, {
        _id: sha1(repo).slice(0, 24),
        id: repo,
        modelId: repo,
        sha: r.commit,
        private: false,
        gated: repos[repo].gated ? 'manual' : false,
        disabled: false,
        siblings: Object.keys(r.files).sort().map((rfilename) => ({ rfilename })),
      });
    }

    // What a 307 points to: small files at a commit.
    m = /^\/api\/resolve-cache\/models\/([^/]+\/[^/]+)\/([0-9a-f]{40})\/(.+)$/.exec(url.pathname);
    if (m) {
      const [, repo, commit, file] = m.map(decodeURIComponent);
      const full = repos[repo] && revisionOf(repo, commit)?.files[file];
      if (!full) return refuse(404, 'EntryNotFound', 'Entry not found');
      const body = await readFile(full);
      return res.writeHead(200, { ...cors, 'Content-Length': body.length, ETag: `"${await hashOf(full, 'sha1')}"`, 'X-Repo-Commit': commit }).end(body);
    }

    // Files.
    m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    if (!m) return refuse(404, null, 'Not Found');
    const [, repo, rev, file] = m.map(decodeURIComponent);
    if (!repos[repo]) return noRepo();
    if (repos[repo].gated) {
      return refuse(401, 'GatedRepo', `Access to model ${repo} is restricted. You must have access to it and be authenticated to access it. Please log in.`, { 'WWW-Authenticate': 'Bearer realm="Authentication required", charset="UTF-8"' });
    }
    const r = revisionOf(repo, rev);
    if (!r) return refuse(404, 'RevisionNotFound', `Invalid rev id: ${rev}`);
    const full = r.files[file];
    if (!full) return refuse(404, 'EntryNotFound', 'Entry not found', { 'X-Repo-Commit': r.commit });
    const hop = { ...cors, 'Content-Type': 'text/plain; charset=utf-8', 'X-Repo-Commit': r.commit };
    if (!LFS.test(file)) {
      const location = `/api/resolve-cache/models/${repo}/${r.commit}/${file}?${encodeURIComponent(url.pathname)}=&etag=%22${await hashOf(full, 'sha1')}%22`;
      return res.writeHead(307, { ...hop, Location: location }).end(`Temporary Redirect. Redirecting to ${location}`);
    }
    const size = (await stat(full)).size;
    signatures.push(signedUses);
    const n = signatures.length - 1;
    const signed = `${cdnUrl}/xet-bridge-us/${encodeURIComponent(repo)}/${r.commit}/${encodeURIComponent(file)}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=3600&X-Amz-Signature=${n}-${sha1(repo, file, n)}`;
    res.writeHead(302, { ...hop, Location: signed, 'X-Linked-Size': String(size), 'X-Linked-ETag': `"${await hashOf(full, 'sha256')}"` }).end(`Found. Redirecting to ${signed}`);
  });
  const url = `http://127.0.0.1:${hub.address().port}`;
  return {
    url,
    cdnUrl,
    requests,
    signedUses,
    /** A new commit on main (its files unchanged): what a README edit does. */
    moveMain: (repo) => mainMoves.set(repo, (mainMoves.get(repo) ?? 0) + 1),
    /** Both origins drop every connection (the network is down) until set back. */
    setDown: (value) => {
      down = value;
    },
    close: () => Promise.all([hub, cdn].map((s) => new Promise((r) => (s.closeAllConnections?.(), s.close(() => r()))))),
  };
}
