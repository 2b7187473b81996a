// Holds the wasm32 int8 kernels to the portable one: each module (built by `make test-wasm`, plain
// SIMD128 and relaxed SIMD) runs its `check`, which returns the largest relative difference.
// Node 20 runs relaxed SIMD behind --experimental-wasm-relaxed-simd.
//
//   node --experimental-wasm-relaxed-simd tools/wasm-kernels/check.mjs A.wasm [B.wasm …]
import { readFile } from 'node:fs/promises';

// f32 summation order apart, the kernels compute the same sums (src/clip/qmatmul).
const TOLERANCE = 1e-5;
let failed = false;
for (const file of process.argv.slice(2)) {
  const { instance } = await WebAssembly.instantiate(await readFile(file), {});
  const { check, relaxed } = instance.exports;
  for (const seed of [1, 2, 3]) {
    const worst = check(seed);
    const ok = worst <= TOLERANCE;
    failed ||= !ok;
    console.log(`${ok ? 'ok' : 'FAILED'} ${file} (relaxed SIMD: ${relaxed() ? 'yes' : 'no'}), seed ${seed}: ` +
      `largest difference from the portable kernel ${worst.toExponential(2)} of the largest output (≤ ${TOLERANCE})`);
  }
}
process.exit(failed ? 1 : 0);
