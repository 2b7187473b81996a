// Importing from the Hugging Face Hub, against the stand-in that answers as the Hub does
// (hub.mjs), in headless Chromium on the CPU. `node --test tests/e2e/hub.test.mjs` (needs
// E2E_IMPORT, which make test-e2e writes).
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { testOnCpuPage } from './lib/site.mjs';
import { READY_TIMEOUT, STEP_TIMEOUT, applyClassesWith, assert, check, clearMessage, env, errorSeq, newError, scoresLikeCli, skip, storedEntries } from './lib/harness.mjs';

testOnCpuPage('importing from the Hub', { hub: env.E2E_IMPORT ? hubRepos(env.E2E_IMPORT) : null }, (page, site) =>
  hubChecks(page, site.server, site.hub));

/**
 * The stand-in Hub's repositories, from the checkpoints `make test-e2e` writes: shaped like the
 * real ones the import meets (HUB.md): safetensors on main; openai/clip-vit-base-patch32's
 * pytorch_model.bin on main with the conversion bot's pull requests (15 made against an older
 * main, 66 against main's head, 70 by someone else: only 66 holds these weights); only
 * pytorch_model.bin; gated; no weights at all. Signed storage URLs serve 40 requests each.
 */
function hubRepos(dir) {
  const at = (folder, ...files) => Object.fromEntries(files.map((f) => [f, path.join(dir, folder, f)]));
  const tiny = at('checkpoint', 'config.json', 'model.safetensors', 'merges.txt');
  const bin = at('checkpoint-bin', 'config.json', 'pytorch_model.bin', 'merges.txt');
  const junk = { 'model.safetensors': path.join(dir, 'not-these-weights.safetensors') };
  return {
    signedUses: 40,
    repos: {
      'test/tiny-clip': { files: tiny },
      'test/drop': { files: tiny },
      'test/clip-bin': { files: bin },
      'openai/clip-vit-base-patch32': {
        files: bin,
        pulls: [
          { num: 15, stale: true, files: junk },
          { num: 66, files: { 'model.safetensors': tiny['model.safetensors'] } },
          { num: 70, author: 'someone-else', files: junk },
        ],
      },
      'test/gated': { files: tiny, gated: true },
      'test/no-weights': { files: at('checkpoint', 'config.json', 'merges.txt') },
      'test/vit-b32': { files: at('checkpoint-b32-bin', 'config.json', 'pytorch_model.bin', 'merges.txt') },
    },
  };
}


/**
 * Hub imports against the local stand-in (hub.mjs), which answers as the real Hub does: a repo
 * with model.safetensors on main (`?hf=` starts it), one shaped like openai/clip-vit-base-patch32
 * (pytorch_model.bin on main, the bot's safetensors in a pull request; clicked in the page's
 * list), one with only pytorch_model.bin (typed), and a ViT-B/32-sized pytorch_model.bin. Each
 * scores like the CLI on the same weights; the weights are read only by ranges, mostly straight
 * from the storage URL; the cache follows the commit, and works offline; every Hub refusal is a
 * clear error that leaves the model in use.
 */
async function hubChecks(page, server, hub) {
  const dir = env.E2E_IMPORT;
  if (!dir || !hub) {
    skip('import from the Hub', 'E2E_IMPORT not set');
    return;
  }
  const want = JSON.parse(await readFile(path.join(dir, 'expected.json'), 'utf8'))['cat.jpg'];
  const readySha = () => page.locator('[data-testid=ready]').getAttribute('data-sha256').catch(() => null);
  const commitOf = async (repo, rev = 'main') => (await (await fetch(`${hub.url}/api/models/${repo}/revision/${encodeURIComponent(rev)}`)).json()).sha;
  const box = page.locator('#import-box');
  /** Waits until `n` imports have ended in this page; the last must have loaded its model. */
  const importDone = async (n) => {
    await page.waitForFunction((k) => Number(document.querySelector('#import-box')?.dataset.imports ?? 0) >= k, n, { timeout: STEP_TIMEOUT });
    if ((await box.getAttribute('data-import-ok')) !== 'true') {
      throw new Error((await page.locator('[data-testid=error]').textContent().catch(() => 'no error shown')).trim());
    }
    return readySha();
  };
  /** Opens the page with `?hf=repo` against the stand-in; the import it starts is the first. */
  const visit = async (repo) => {
    await page.goto(`${server.url}?hf=${repo}&hub=${encodeURIComponent(hub.url)}`);
    await page.locator('[data-testid=ready]').waitFor({ timeout: READY_TIMEOUT });
    return importDone(1);
  };
  /** Starts an import with `start` in the open page and waits for it. */
  const imports = async (start) => {
    const n = Number((await box.getAttribute('data-imports')) ?? 0);
    await start();
    return importDone(n + 1);
  };
  const note = () => page.locator('[data-testid=import-note]').textContent().then((t) => t.trim());
  const typed = (repo, revision = 'main') => async () => {
    await page.locator('[data-testid=hub-repo]').fill(repo);
    await page.locator('#hub-revision').fill(revision);
    await page.locator('[data-testid=hub-load]').click();
  };
  const weightRequests = (file) => hub.requests.filter((r) => r.url.includes(`/${file}`) && r.method === 'GET');
  hub.requests.length = 0;
  let imported = false;
  await check('?hf=ORG/NAME&hub=URL imports model.safetensors from main and scores like the CLI', async () => {
    await visit('test/tiny-clip');
    const said = await note();
    assert(/Read model\.safetensors .* at main, commit/.test(said), `the page says: ${said}`);
    imported = true;
    return `${said} ${await scoresLikeCli(page, 'hub-cat.jpg', want)}`;
  });
  await check('the page asked only GETs the Hub answers without a preflight, the weights only by ranges, mostly from the storage URL', async () => {
    const seen = hub.requests;
    assert(seen.length > 0, 'no request reached the Hub');
    const bad = seen.filter((r) => r.method !== 'GET' || r.bodyBytes > 0);
    assert(bad.length === 0, `unexpected (the Hub's answer to a preflight is not on record): ${bad.map((r) => `${r.method} ${r.url}`).join(', ')}`);
    const weights = seen.filter((r) => r.url.includes('model.safetensors'));
    assert(weights.every((r) => r.range), `model.safetensors fetched whole: ${weights.filter((r) => !r.range).map((r) => r.url).join(', ')}`);
    const commit = await commitOf('test/tiny-clip');
    const resolves = seen.filter((r) => r.origin === 'hub' && r.url.includes('/resolve/'));
    assert(resolves.every((r) => r.url.includes(`/resolve/${commit}/`)), `files not read at main's commit: ${resolves.map((r) => r.url).join(', ')}`);
    const direct = weights.filter((r) => r.origin === 'cdn').length;
    const through = weights.filter((r) => r.origin === 'hub').length;
    // A signed URL serves `signedUses` requests; the page goes through the Hub again only then.
    assert(through <= 1 + Math.ceil(direct / hub.signedUses) + 1, `${through} resolves for ${direct} storage reads`);
    return `${seen.length} requests: ${through} weight resolves, ${direct} ranges from the storage`;
  });
  if (!imported) return;
  const importedSha = await readySha();
  const commit = await commitOf('test/tiny-clip');
  const saved = page.locator('[data-testid=saved-model][data-name="test/tiny-clip@main"]');
  await check('the converted model is listed as saved in this browser, with the commit it came from', async () => {
    await saved.first().waitFor({ timeout: STEP_TIMEOUT });
    const title = await saved.first().locator('.saved-name').getAttribute('title');
    assert(title.includes(`Hub commit ${commit}`), `the record's title: ${title}`);
    return (await saved.first().innerText()).replace(/\s+/g, ' ').trim();
  });
  await check('text features of many prompts are kept with the model (CLIP\'s 80 templates)', async () => {
    await applyClassesWith(page, 'ensemble');
    const { text } = await storedEntries(page);
    const mine = text.filter((p) => decodeURIComponent(p).includes(importedSha));
    assert(mine.length === 1, `${mine.length} text entries for the imported model ${importedSha}: ${text.map(decodeURIComponent).join(', ')}; status: ${await page.locator('#status').textContent()}`);
    assert(/mean of 80/.test(await page.locator('#status').textContent()), 'the status does not say 80 templates');
    await page.locator('#class-templates').selectOption('model');
    return `${text.length} text entries in all`;
  });
  const revisit = async () => {
    hub.requests.length = 0;
    return visit('test/tiny-clip');
  };
  await check('a second visit asks the Hub only which commit main is, and loads the saved model', async () => {
    const sha = await revisit();
    assert(sha === importedSha, 'not the imported model');
    const urls = hub.requests.map((r) => r.url);
    assert(urls.length === 1 && urls[0].includes('/api/models/test/tiny-clip/revision/main'), `requests: ${urls.join(', ')}`);
    return note();
  });
  await check('with the Hub out of reach, the saved copy of main loads, and the page says so', async () => {
    hub.setDown(true);
    try {
      const sha = await revisit();
      assert(sha === importedSha, 'not the imported model');
      const said = await note();
      assert(/could not be reached/.test(said) && said.includes(commit.slice(0, 7)), `the page says: ${said}`);
      return said;
    } finally {
      hub.setDown(false);
    }
  });
  await check('once main moves to a new commit, the next visit imports it again', async () => {
    hub.moveMain('test/tiny-clip');
    await revisit();
    assert((await note()).includes((await commitOf('test/tiny-clip')).slice(0, 7)), `the page says: ${await note()}`);
    const read = hub.requests.filter((r) => r.url.includes('model.safetensors')).length;
    assert(read > 0, `the weights were not read again: ${hub.requests.map((r) => r.url).join(', ')}`);
    await saved.nth(1).waitFor({ timeout: STEP_TIMEOUT });
    return `${read} weight requests; ${await saved.count()} saved copies of test/tiny-clip@main`;
  });
  await check('deleting the saved models removes them and their text features', async () => {
    while (await saved.count()) {
      const n = await saved.count();
      await saved.first().locator('[data-testid=saved-delete]').click();
      await page.waitForFunction((k) => document.querySelectorAll('[data-testid=saved-model][data-name="test/tiny-clip@main"]').length < k, n, { timeout: STEP_TIMEOUT });
    }
    const { models, text } = await storedEntries(page);
    assert(!models.some((p) => decodeURIComponent(p).includes('test/tiny-clip')), `still kept: ${models.join(', ')}`);
    assert(!text.some((p) => decodeURIComponent(p).includes(importedSha)), 'its text features are still kept');
    return `${models.length} models and ${text.length} text entries left`;
  });
  await check('one click on openai/clip-vit-base-patch32 in the list reads the bot\'s safetensors of main (its pull request), as transformers does', async () => {
    hub.requests.length = 0;
    const repo = 'openai/clip-vit-base-patch32';
    await imports(() => page.locator(`[data-testid=hub-pick][data-repo="${repo}"]`).click());
    const said = await note();
    assert(/Read model\.safetensors .* at refs\/pr\/66/.test(said) && /pull request #66/.test(said), `the page says: ${said}`);
    const pr = await commitOf(repo, 'refs/pr/66');
    const urls = hub.requests.map((r) => decodeURIComponent(r.url));
    assert(urls.some((u) => u.includes('/discussions?p=0')), 'the pull requests were not listed');
    assert(weightRequests('model.safetensors').every((r) => r.origin === 'cdn' || r.url.includes(`/resolve/${pr}/`)), `not read at refs/pr/66: ${urls.join(', ')}`);
    assert(weightRequests('pytorch_model.bin').length === 0, 'pytorch_model.bin was read');
    return `${said} ${await scoresLikeCli(page, 'pr-cat.jpg', want)}; ${urls.length} requests`;
  });
  await check('a repository with only pytorch_model.bin (typed in) reads it by ranges and scores like the CLI', async () => {
    hub.requests.length = 0;
    await imports(typed('test/clip-bin'));
    const bin = weightRequests('pytorch_model.bin');
    assert(bin.length > 0 && bin.every((r) => r.range), 'pytorch_model.bin not read by ranges');
    const said = await note();
    assert(/Read pytorch_model\.bin/.test(said), `the page says: ${said}`);
    return `${said} ${await scoresLikeCli(page, 'bin-cat.jpg', want)}`;
  });
  for (const [repo, revision, pattern, what] of [
    ['test/missing', 'main', /no public repository test\/missing/, 'a repository that does not exist (401, no error code)'],
    ['test/gated', 'main', /test\/gated is gated/, 'a gated repository (401 GatedRepo)'],
    ['test/tiny-clip', 'v9', /has no revision "v9"/, 'a revision that does not exist (404 RevisionNotFound)'],
    ['test/no-weights', 'main', /neither model\.safetensors nor pytorch_model\.bin/, 'a repository without weights'],
    ['test/drop', 'main', /dropped|could not reach|bytes of/, 'a connection dropped mid-download'],
  ]) {
    await check(`${what} is a clear error; the model in use stays`, async () => {
      const since = await errorSeq(page);
      const sha = await readySha();
      await typed(repo, revision)();
      const text = await newError(page, since);
      assert(pattern.test(text) && clearMessage(text), `message: ${text}`);
      assert((await readySha()) === sha, 'the model changed');
      return text.slice(0, 150);
    });
  }
  await check('a wrong Hub address is a clear error; the default model stays', async () => {
    await page.goto(`${server.url}?hf=test/tiny-clip&hub=${encodeURIComponent('http://127.0.0.1:9')}`);
    await page.locator('[data-testid=ready]').waitFor({ timeout: READY_TIMEOUT });
    const sha = await readySha();
    const text = await newError(page, 0);
    assert(/could not reach the Hub/.test(text) && clearMessage(text), `message: ${text}`);
    assert((await readySha()) === sha, 'the model changed');
    return text.slice(0, 150);
  });
  await check('a ViT-B/32-shaped pytorch_model.bin (one layer a tower) from the Hub scores like the CLI on its safetensors', async () => {
    const want = JSON.parse(await readFile(path.join(dir, 'expected-b32.json'), 'utf8'))['cat.jpg'];
    await visit('test/vit-b32');
    const line = await scoresLikeCli(page, 'b32-cat.jpg', want);
    const size = (await readFile(path.join(dir, 'checkpoint-b32-bin', 'pytorch_model.bin'))).length;
    return `${(size / 1e6).toFixed(0)} MB f32 in ${await page.locator('#import-box').getAttribute('data-converted-seconds')} s; ${line}`;
  });
  await page.goto(server.url);
  await page.locator('[data-testid=ready]').waitFor({ timeout: READY_TIMEOUT });
}

