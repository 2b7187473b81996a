// pkg/bundles.js's download in Node (no Cache Storage there): a body with or without a
// Content-Length, or one cut short, gives exactly the served bytes or an error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { fetchBundle } from '../../pkg/bundles.js';

const body = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7919) % 251));

/** Serves `body` in 64 KiB writes; `length` is the Content-Length sent (none: chunked). */
async function serve({ length, cutAt }) {
  const server = http.createServer((req, res) => {
    res.writeHead(200, length == null ? {} : { 'Content-Length': length });
    const end = cutAt ?? body.length;
    for (let at = 0; at < end; at += 65536) res.write(body.subarray(at, Math.min(at + 65536, end)));
    if (cutAt == null) res.end();
    else res.destroy();
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { url: new URL(`http://127.0.0.1:${server.address().port}/x.bundle`), close: () => server.close() };
}

for (const [name, options] of [
  ['with its length', { length: body.length }],
  ['without a length', {}],
]) {
  test(`a download ${name} gives the served bytes and ends its progress at the total`, async () => {
    const s = await serve(options);
    try {
      const events = [];
      const got = await fetchBundle(s.url, (e) => events.push(e));
      assert.equal(got.cached, false);
      assert.equal(got.bytes.length, body.length);
      assert.ok(Buffer.from(got.bytes).equals(body));
      assert.equal(got.validators['x-bundle-length'], String(body.length));
      assert.deepEqual(events.at(-1), { status: 'download', loaded: body.length, total: body.length, cached: false });
    } finally {
      s.close();
    }
  });
}

test('a connection dropped mid-body rejects the download', async () => {
  const s = await serve({ length: body.length, cutAt: 131072 });
  try {
    await assert.rejects(fetchBundle(s.url, () => {}));
  } finally {
    s.close();
  }
});
