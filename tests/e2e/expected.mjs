// Turns `deltaenergy score --json` lines (stdin) into the E2E_EXPECTED map: file name → {label, delta_energy, ood}.
import path from 'node:path';

let input = '';
for await (const chunk of process.stdin) input += chunk;
const expected = {};
for (const line of input.split('\n').filter(Boolean)) {
  const r = JSON.parse(line);
  expected[path.basename(r.image)] = { label: r.label, delta_energy: r.delta_energy, ood: r.ood };
}
if (Object.keys(expected).length === 0) {
  console.error('expected.mjs: no scores on stdin');
  process.exit(1);
}
console.log(JSON.stringify(expected, null, 2));
