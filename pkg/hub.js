// The Hugging Face Hub as an import reads it: which commit a revision is, which weight file to
// read (as transformers chooses it), what a failed request means, and a weights file read by
// byte ranges. How the Hub answers, with sources: docs/HUB.md, and tests/e2e/hub.mjs (the
// stand-in the browser tests run against).

import { ScorerError, describe } from './errors.js';

/** The title of the pull requests the Hub's conversion bot opens (transformers' `pr_title`). */
export const CONVERSION_TITLE = 'Adding `safetensors` variant of this model';
/** The bot's account: a pull request by anyone else is not trusted to hold main's weights. */
export const CONVERSION_BOT = 'SFconvertbot';
/** Discussions come 50 a page; a repo with more open ones than this is not searched further. */
const MAX_DISCUSSION_PAGES = 10;

const COMMIT = /^[0-9a-f]{40}$/;

/**
 * A Hub file's URL: {base}/{repo}/resolve/{revision}/{file}. The revision is one path segment
 * (`refs/pr/15` travels as `refs%2Fpr%2F15`, as huggingface_hub and transformers.js send it).
 */
export function hubUrl(base, repo, revision, file) {
  return `${trim(base)}/${repoPath(repo)}/resolve/${encodeURIComponent(revision)}/${file}`;
}

/** An API URL: {base}/api/models/{repo}/{rest}. */
function apiUrl(base, repo, rest) {
  return `${trim(base)}/api/models/${repoPath(repo)}/${rest}`;
}

const trim = (base) => String(base).replace(/\/+$/, '');
const repoPath = (repo) => repo.split('/').map(encodeURIComponent).join('/');

/** Whether `revision` is a full commit id (nothing to look up: what it names never changes). */
export const isCommit = (revision) => COMMIT.test(revision);

/**
 * @typedef {object} Where what a request was for, for the error messages
 * @property {string} repo
 * @property {string} [revision]
 * @property {string} [file]
 */

/**
 * What a failed Hub answer means, for people, from the `X-Error-Code` the Hub sends (exposed to
 * pages). A missing repository answers 401 with no code to a visitor who is not logged in, the
 * same as a private one: the message says both.
 * @param {Response} response
 * @param {Where} where
 */
export function hubError(response, { repo, revision, file }) {
  const s = response.status;
  const code = response.headers.get('x-error-code') ?? '';
  const at = revision ? ` at revision "${revision}"` : '';
  let why;
  /** @type {import('./errors.js').ErrorName} */
  let name = 'InputError';
  if (code === 'GatedRepo') {
    why = `${repo} is gated: accept its conditions on huggingface.co, then download its files there and import them from this device`;
  } else if (code === 'RevisionNotFound') {
    why = `${repo} has no revision "${revision}" (a branch, tag or commit)`;
  } else if (code === 'EntryNotFound') {
    why = `${repo} has no ${file ?? 'such file'}${at}`;
  } else if (code === 'RepoNotFound' || s === 401) {
    why = `no public repository ${repo} was found (check the name; a private one cannot be read from this page)`;
  } else if (code === 'DisabledRepo' || s === 403) {
    why = `the Hub refused access to ${repo} (HTTP ${s})`;
  } else if (s === 404) {
    why = `${repo} has no ${file ?? 'such file'}${at}`;
  } else if (s === 429) {
    why = 'the Hub asks to wait: too many requests from this network in the last minutes (try again later)';
    name = 'IoError';
  } else {
    why = `the Hub answered HTTP ${s}${response.statusText ? ` ${response.statusText}` : ''}`;
    name = 'IoError';
  }
  return new ScorerError(why, name);
}

/**
 * One request to the Hub (or the storage it redirects to); a failed answer becomes a
 * `ScorerError` that says what it means.
 * @param {string} url
 * @param {Where} where
 * @param {RequestInit} init
 * @param {AbortSignal} [signal]
 */
export async function hubFetch(url, where, init = {}, signal = undefined) {
  let response;
  try {
    response = await fetch(url, { ...init, signal, cache: 'no-store' });
  } catch (e) {
    if (signal?.aborted) throw new ScorerError('the import was cancelled', 'InputError');
    throw new ScorerError(`could not reach the Hub (${describe(e).message}): is the network down, or the Hub's address wrong?`, 'IoError');
  }
  if (!response.ok) {
    await response.body?.cancel();
    throw hubError(response, where);
  }
  return response;
}

async function json(url, where, signal) {
  const response = await hubFetch(url, where, {}, signal);
  try {
    return await response.json();
  } catch {
    throw new ScorerError(`the Hub's answer for ${where.repo} is not JSON (${url})`, 'IoError');
  }
}

/**
 * The commit a revision points to and the files it holds:
 * `GET /api/models/{repo}/revision/{revision}` (huggingface_hub's `model_info`).
 * @returns {Promise<{commit: string, files: string[]}>}
 */
export async function revisionInfo(base, repo, revision, signal) {
  const info = await json(apiUrl(base, repo, `revision/${encodeURIComponent(revision)}`), { repo, revision }, signal);
  const commit = String(info?.sha ?? '');
  if (!COMMIT.test(commit) || !Array.isArray(info?.siblings)) {
    throw new ScorerError(`the Hub's description of ${repo}@${revision} has no commit or file list`, 'IoError');
  }
  return { commit, files: info.siblings.map((/** @type {any} */ s) => String(s?.rfilename ?? '')) };
}

/**
 * The conversion bot's pull request that adds `model.safetensors` to main's weights, as
 * transformers finds it (`safetensors_conversion.previous_pr`): an open pull request titled
 * CONVERSION_TITLE whose parent commit is main's head, here also opened by CONVERSION_BOT.
 * @returns {Promise<{num: number, commit: string} | null>} its number and head commit
 */
export async function conversionPullRequest(base, repo, mainCommit, signal) {
  for (let page = 0; page < MAX_DISCUSSION_PAGES; page++) {
    const list = await json(apiUrl(base, repo, `discussions?p=${page}`), { repo }, signal);
    const discussions = Array.isArray(list?.discussions) ? list.discussions : [];
    for (const d of discussions) {
      const candidate = d?.isPullRequest === true && d.status === 'open' && d.title === CONVERSION_TITLE
        && d.author?.name === CONVERSION_BOT && Number.isInteger(d.num);
      if (!candidate) continue;
      const ref = `refs/pr/${d.num}`;
      const commits = await json(apiUrl(base, repo, `commits/${encodeURIComponent(ref)}`), { repo, revision: ref }, signal);
      if (Array.isArray(commits) && commits[1]?.id === mainCommit && COMMIT.test(String(commits[0]?.id))) {
        return { num: d.num, commit: commits[0].id };
      }
    }
    const start = Number(list?.start ?? 0);
    if (discussions.length === 0 || start + discussions.length >= Number(list?.count ?? 0)) return null;
  }
  return null;
}

/**
 * @typedef {object} WeightsChoice
 * @property {'model.safetensors' | 'pytorch_model.bin'} file
 * @property {string} revision the revision it is read at, for people (`main`, `refs/pr/66`)
 * @property {string} commit the commit it is read at
 * @property {string} why one sentence on the choice, for the progress line
 */

/**
 * The weights to read, as transformers chooses them: `model.safetensors` at the revision;
 * else, on main, the conversion bot's safetensors of main's weights; else `pytorch_model.bin`.
 * @param {{commit: string, files: string[]}} info the revision's (from `revisionInfo`)
 * @returns {Promise<WeightsChoice>}
 */
export async function chooseWeights(base, repo, revision, info, signal) {
  const has = (f) => info.files.includes(f);
  if (has('model.safetensors')) {
    return { file: 'model.safetensors', revision, commit: info.commit, why: '' };
  }
  if (revision === 'main') {
    const pr = await conversionPullRequest(base, repo, info.commit, signal);
    if (pr) {
      const why = `main has no model.safetensors; reading the Hub's conversion of main's weights (pull request #${pr.num})`;
      return { file: 'model.safetensors', revision: `refs/pr/${pr.num}`, commit: pr.commit, why };
    }
  }
  if (has('pytorch_model.bin')) {
    return { file: 'pytorch_model.bin', revision, commit: info.commit, why: '' };
  }
  const sharded = ['model.safetensors.index.json', 'pytorch_model.bin.index.json'].find(has);
  if (sharded) {
    throw new ScorerError(`${repo}'s weights are split into shards (${sharded}), which this page cannot read yet`, 'InputError');
  }
  const onnx = info.files.some((f) => f.endsWith('.onnx'));
  throw new ScorerError(
    `${repo} has neither model.safetensors nor pytorch_model.bin at ${revision}` +
      (onnx ? ' (only ONNX files, the format of transformers.js: choose the repository they were exported from)' : ': is it a transformers CLIP repository?'),
    'InputError',
  );
}

/**
 * A file read by HTTP Range requests. The first answers through the Hub's redirect to its
 * storage; later ones go straight to the storage URL that redirect gave (one request a range
 * instead of two), and go through the Hub again only when that URL fails (its signature
 * expires after about an hour).
 * @param {string} url the file's resolve URL
 * @param {Where} where
 * @param {AbortSignal} [signal]
 * @param {number} [first] bytes to read first (kept, so reading them again costs nothing)
 * @returns {Promise<{size: number, range: (start: number, end: number) => Promise<Uint8Array>}>}
 */
export async function rangeReader(url, where, signal, first = 1024) {
  let direct = null;
  const get = async (from, start, end) => {
    const response = await hubFetch(from, where, { headers: { Range: `bytes=${start}-${end - 1}` } }, signal);
    // 206 before reading a byte: a server that ignores Range would send the whole file.
    if (response.status !== 206) {
      await response.body?.cancel();
      throw new ScorerError(`${where.file} was sent whole instead of the bytes asked for (the server ignores Range requests); download the files and import them instead`, 'IoError');
    }
    const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(response.headers.get('content-range') ?? '');
    // A range past the end is cut at the end (RFC 9110, 14.1.2): the first read of a small file.
    const total = Number(m?.[3]);
    const want = Math.min(end, total) - start;
    if (!m || Number(m[1]) !== start || Number(m[2]) !== start + want - 1) {
      await response.body?.cancel();
      throw new ScorerError(`${where.file}: the Hub answered other bytes than those asked for (Content-Range ${response.headers.get('content-range')})`, 'IoError');
    }
    const bytes = new Uint8Array(await response.arrayBuffer());
    if (bytes.length !== want) {
      throw new ScorerError(`${where.file}: got ${bytes.length} bytes of ${want} (the connection dropped?)`, 'IoError');
    }
    if (response.url && response.url !== from) direct = response.url;
    return { bytes, total };
  };
  const read = async (start, end) => {
    if (end <= start) return new Uint8Array(0);
    if (direct) {
      try {
        return (await get(direct, start, end)).bytes;
      } catch (e) {
        if (signal?.aborted) throw e;
        direct = null; // expired or refused: through the Hub again
      }
    }
    return (await get(url, start, end)).bytes;
  };
  // The first bytes, which also say the file's size.
  const probe = await get(url, 0, first);
  if (!(probe.total > 0)) throw new ScorerError(`${where.file}: the Hub did not say how large it is`, 'IoError');
  const head = probe.bytes;
  return {
    size: probe.total,
    range: (start, end) => (end <= head.length ? Promise.resolve(head.slice(start, end)) : read(start, end)),
  };
}
