#!/usr/bin/env bash
# Where the CPU's time goes in one `deltaenergy bench` case, by operation: `perf record` on the
# command, its self time grouped by symbol into the model's operations (the table in
# docs/PERFORMANCE.md). Loading's scheduler and allocator time cannot be told from the forward's
# by symbol, so sampling starts once loading is over: a first run with one iteration gives the
# time to that point, and the recorded run waits half as long again (DELAY_MS sets it, 0
# samples everything). What loading is still sampled is shown as its own line.
#
#   tools/profile/perf-ops.sh BUNDLE TOWER BATCH [extra bench flags, e.g. --activations i8]
#   ITERS=150 tools/profile/perf-ops.sh BUNDLE TOWER BATCH
set -euo pipefail
bundle=${1:?usage: perf-ops.sh BUNDLE TOWER BATCH [flags]}; tower=${2:?}; batch=${3:?}; shift 3
bin=${BIN:-target/release/deltaenergy}
data=$(mktemp)
trap 'rm -f "$data"' EXIT
bench=("$bin" bench --model "$bundle" --backends cpu --towers "$tower" --batches "$batch")
if [[ -z ${DELAY_MS:-} ]]; then
  # From the start to the end of loading and the warm-up: the whole run's time less the timed
  # forward's.
  start=$(date +%s%N)
  median=$("${bench[@]}" --iters 1 --json "$@" | sed -n 's/.*"median_ms":\([0-9.]*\).*/\1/p' | head -1)
  median=${median:-0}
  DELAY_MS=$(( (($(date +%s%N) - start) / 1000000 - ${median%.*}) * 3 / 2 ))
  echo "(sampling from ${DELAY_MS} ms on, after loading)" >&2
fi
perf record -q -F 999 -D "$DELAY_MS" -o "$data" "${bench[@]}" --iters "${ITERS:-60}" "$@" | grep '^cpu' >&2
perf report -i "$data" --no-children --sort symbol --stdio 2>/dev/null | awk '
  /^ +[0-9.]+%/ {
    pct = $1; sub(/%/, "", pct); kern = ($2 == "[k]"); sym = $0; sub(/^ +[0-9.]+% +\[[^]]*\] +/, "", sym)
    op = "other"
    if (sym ~ /Out::finish|quick_gelu/) op = "epilogues (QuickGELU, residual add)"
    else if (sym ~ /qmatmul::float|gemm|microkernel/) op = "f32 matmul"
    else if (sym ~ /qmatmul::(avx2|avx512|simd128|portable)|qmatmul::.*run/) op = "int8 matmul kernel"
    else if (sym ~ /qmatmul::(matmul|quantize|dequantize)/) op = "int8: activation quantization"
    else if (sym ~ /expf|exp/) op = "exp (softmax, sigmoid)"
    else if (sym ~ /attention/) op = "attention (besides exp and gemm)"
    else if (sym ~ /layer_norm|layernorm|reduce|sum_dim|mean/) op = "LayerNorm and reductions"
    else if (sym ~ /unary|binary|scalar_op|macerator/) op = "elementwise (flex: add, mul, GELU)"
    # The forward takes no page faults once the model is loaded (`perf stat -e page-faults` on
    # the q8 image tower counts the same 144,820 for 10 and 110 iterations) and reads no file:
    # those are loading.
    else if (kern && sym ~ /clear_page|page_fault|anonymous_page|mm_fault|_pages|memcg|lru|copy_to_iter|filemap/) op = "loading the model (not the forward)"
    else if (sym ~ /memmove|memcpy|copy|contiguous|permute|transpose|gather|cat/) op = "copies (reshape, transpose, cat)"
    else if (sym ~ /memset|malloc|free|alloc|page|clear_page|mmap/) op = "allocation, zeroing"
    else if (sym ~ /sha2|loader|bundle|from_iter|WeightSource|quantized|Packed::(new|pack)|Grid::new/) op = "loading the model (not the forward)"
    else if (kern || sym ~ /rayon|futex|sched_yield/) op = "threads (rayon wake-ups, kernel)"
    t[op] += pct
    if (op == "other" && pct >= 0.3) others = others sprintf("%.1f%% %s; ", pct, substr(sym, 1, 60))
  }
  END {
    load = t["loading the model (not the forward)"]
    for (op in t) if (op !~ /^loading/) printf "%6.1f%%  %s\n", 100 * t[op] / (100 - load), op
    printf "(shares of the forward passes; loading was %.1f%% of all samples)\n", load > "/dev/stderr"
    if (others != "") printf "other: %s\n", others > "/dev/stderr"
  }' | sort -rn
