// What crosses from the wasm scorer to JavaScript is written twice: as Rust structs serde turns
// into objects (src/web/dto.rs and the structs it embeds), and as the JSDoc typedefs the
// package's users read (pkg/types.js, emitted as .d.ts). This holds the two to the same field
// names, read from the sources (no browser needed): a field renamed on one side fails here.
//
//   node --test tests/e2e/types.test.mjs

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { here } from './lib/harness.mjs';

const repo = path.resolve(here, '../..');
const read = (f) => readFile(path.join(repo, f), 'utf8');
const camel = (s) => s.replace(/_([a-z0-9])/g, (_, c) => c.toUpperCase());

/** A serde struct's field names as JavaScript sees them (`rename_all = "camelCase"` honoured). */
function rustFields(source, name) {
  const m = new RegExp(`((?:#\\[[^\\]]*\\]\\s*)*)pub(?:\\(super\\))? struct ${name}\\b[^{]*\\{([^}]*)\\}`).exec(source);
  assert.ok(m, `struct ${name} not found`);
  const renamed = /rename_all\s*=\s*"camelCase"/.test(m[1]);
  const fields = [];
  let flattened = false;
  for (const line of m[2].split('\n')) {
    if (/#\[serde\(flatten\)\]/.test(line)) flattened = true;
    const f = /^\s*pub(?:\(super\))?\s+([a-z_0-9]+)\s*:/.exec(line);
    if (!f) continue;
    if (flattened) {
      flattened = false;
      fields.push({ flatten: f[1] });
    } else {
      fields.push(renamed ? camel(f[1]) : f[1]);
    }
  }
  return fields;
}

/** A JSDoc typedef's property names. */
function jsProperties(source, name) {
  const start = source.indexOf(`@typedef {object} ${name}\n`);
  assert.ok(start >= 0, `typedef ${name} not found`);
  const block = source.slice(start, source.indexOf('*/', start));
  return [...block.matchAll(/@property \{.*?\} \[?([A-Za-z0-9]+)\]?/g)].map((m) => m[1]);
}

const same = (a, b, what) => assert.deepEqual([...a].sort(), [...b].sort(), what);

test('the objects the scorer sends have the fields pkg/types.js declares', async () => {
  const [dto, device, classify, format, types] = await Promise.all(
    ['src/web/dto.rs', 'src/device.rs', 'src/ood/classify.rs', 'src/bundle/format.rs', 'pkg/types.js'].map(read),
  );
  const webDevice = await read('src/web/device.rs');
  same(rustFields(dto, 'Info'), jsProperties(types, 'ModelInfo'), 'ModelInfo');
  same(rustFields(dto, 'JsThreshold'), jsProperties(types, 'Threshold'), 'Threshold');
  same(rustFields(dto, 'JsScoreSettings'), jsProperties(types, 'ScoreSettings'), 'ScoreSettings');
  same(rustFields(dto, 'JsScores'), jsProperties(types, 'Scores'), 'Scores (what judge and calibrate take)');
  same(rustFields(device, 'Adapter'), jsProperties(types, 'Adapter'), 'Adapter');
  same(rustFields(format, 'Provenance'), jsProperties(types, 'Provenance'), 'Provenance');
  same(rustFields(webDevice, 'DeviceReason'), jsProperties(types, 'DeviceReason'), 'DeviceReason');
  // A result: the classification flattened in, its threshold and timings, and what the worker
  // adds (which decoder read the image, where it ran).
  const output = rustFields(dto, 'Output').flatMap((f) => (typeof f === 'string' ? [f] : rustFields(classify, 'Classification')));
  same([...output, 'decodedBy', 'device'], jsProperties(types, 'ClassifyResult'), 'ClassifyResult');
  const timings = /@property \{\{([^}]*)\}\} timings/.exec(types)[1].split(',').map((p) => p.split(':')[0].trim());
  same(rustFields(dto, 'Timings'), timings, 'ClassifyResult.timings');
  // Tuning: the options the scorer reads and the package's own (kept in the worker, or
  // JavaScript objects), the report it sends and the tuned bundle the package adds.
  same([...rustFields(dto, 'JsTuneOptions'), 'keep', 'ood', 'onProgress', 'signal'], jsProperties(types, 'TuneOptions'), 'TuneOptions');
  same([...rustFields(dto, 'JsTuneReport'), 'bundle'], jsProperties(types, 'TuneReport'), 'TuneReport');
  same(rustFields(dto, 'JsHeld'), jsProperties(types, 'HeldOut'), 'HeldOut');
});
