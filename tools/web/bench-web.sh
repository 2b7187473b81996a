#!/usr/bin/env bash
# `make bench-web`: our page and transformers.js on the same seeded ViT-B/32 weights (DIR, from
# tools/reference/export_onnx.py, and DIR/ours.q8.bundle converted from DIR/hf), the same images
# and the same headless Chromium, one after the other: per-image medians and our/their ratio, at
# one thread, at each side's default thread count and at two threads (SETTINGS to change). Ours
# runs twice a round: i16 activations (the default) and u7 (the relaxed-SIMD build).
#
#   tools/web/bench-web.sh DIR [IMAGES]     (IMAGES: comma-separated; default three from $DATA)
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:?usage: bench-web.sh DIR [IMAGES]}
data=${DELTAENERGY_DATA:-../shared/data}
images=${2:-$data/cifar10/test/cat/0000.jpg,$data/gallery/n02123045_tabby.JPEG,$data/dtd/banded/banded_0002.jpg}
runs=${RUNS:-3}

[ -d tests/e2e/node_modules ] || (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
[ -d tools/web/tjs-bench/node_modules ] || (cd tools/web/tjs-bench && npm ci --no-audit --no-fund --loglevel=error)
# The reference server serves www/ and refuses symlinks out of it: a hard link.
ln -f "$dir/ours.q8.bundle" www/models/bench-b32.q8.bundle

line() { grep -E '^(cpu|webgpu|transformers.js-wasm) ' | tail -1; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# Thread settings, each run on both sides: "default" is each side's own choice (ours, like
# onnxruntime-web: min(4, ceil(cores / 2)), on a cross-origin isolated page as the reference
# server serves it); a number asks both for that many.
settings=(${SETTINGS:-1 default 2})
# This machine's speed drifts by tens of percent from minute to minute: ROUNDS rounds, each
# running every setting of both sides one after the other, and each ratio taken within a round.
rounds=${ROUNDS:-3}
declare -A ours ours7 theirs
# Each run's lines go to stderr as they come, through `tee >(cat >&2)`: `tee /dev/stderr` would
# reopen a log file that stderr points at, and truncate it.
for ((i = 1; i <= rounds; i++)); do
  for t in "${settings[@]}"; do
    echo "== round $i, threads $t: ours (q8 bundle, CPU in wasm)" >&2
    ours[$t,$i]=$(node tests/e2e/bench.mjs --model models/bench-b32.q8.bundle --images "$images" --runs "$runs" \
      --backends cpu --threads "${t/default/auto}" | tee >(cat >&2) | line)
    echo "== round $i, threads $t: ours, u7 activations" >&2
    ours7[$t,$i]=$(node tests/e2e/bench.mjs --model models/bench-b32.q8.bundle --images "$images" --runs "$runs" \
      --backends cpu --threads "${t/default/auto}" --activations u7 | tee >(cat >&2) | line)
    echo "== round $i, threads $t: transformers.js q8" >&2
    theirs[$t,$i]=$(node tools/web/tjs-bench/run.mjs --model-dir "$dir/tjs" --images "$images" --runs "$runs" \
      --threads "$t" | tee >(cat >&2) | line)
  done
done

# Columns (bench.mjs): backend ready_s warmup_ms image_total_ms image_tower_ms n scoring_rss_peak_mb
# visit_rss_peak_mb
col() { awk -v c="$1" '{ print $c }'; }
# ours/theirs in round $2 at setting $1, for our array $3 (ours, ours7)
tower_ratio() {
  local -n mine=${3:-ours}
  awk -v o="$(col 5 <<<"${mine[$1,$2]}")" -v t="$(col 5 <<<"${theirs[$1,$2]}")" 'BEGIN { print o / t }'
}
echo
echo "per round, image tower medians (ms), ours i16 | ours u7 | transformers.js | i16/theirs | u7/theirs"
for ((i = 1; i <= rounds; i++)); do
  for t in "${settings[@]}"; do
    printf "round %d, threads %-7s: %6s | %6s | %6s | %.2f | %.2f\n" "$i" "$t" "$(col 5 <<<"${ours[$t,$i]}")" \
      "$(col 5 <<<"${ours7[$t,$i]}")" "$(col 5 <<<"${theirs[$t,$i]}")" "$(tower_ratio "$t" "$i")" \
      "$(tower_ratio "$t" "$i" ours7)"
  done
done
summary() { # name, array name, setting: the medians of ready, warm-up, per image, tower and memory
  local -n rows=$2
  local c i medians=()
  for c in 2 3 4 5 7 8; do medians+=("$(for ((i = 1; i <= rounds; i++)); do col "$c" <<<"${rows[$3,$i]}"; done | median)"); done
  printf "%-40s %7s %10s %13s %15s %15s %13s\n" "$1" "${medians[@]}"
}
echo
echo "medians over $rounds rounds"
echo "scorer                                   ready_s  warmup_ms  per_image_ms  image_tower_ms  scoring_peak_mb  visit_peak_mb"
for t in "${settings[@]}"; do
  summary "deltaenergy q8, threads $t" ours "$t"
  summary "deltaenergy q8 u7, threads $t" ours7 "$t"
  summary "transformers.js q8, threads $t" theirs "$t"
done
echo
for t in "${settings[@]}"; do
  printf "ours/theirs, image tower, threads %s (median of the rounds' ratios): i16 %.2f, u7 %.2f\n" "$t" \
    "$(for ((i = 1; i <= rounds; i++)); do tower_ratio "$t" "$i"; done | median)" \
    "$(for ((i = 1; i <= rounds; i++)); do tower_ratio "$t" "$i" ours7; done | median)"
done
echo "(below 1 we are faster; peak_mb: all of Chromium's processes while the images are scored, and over"
echo " the whole visit: download, load and scoring;"
echo " 'default' is min(4, ceil(cores / 2)) threads on both sides, $(( ($(nproc) + 1) / 2 > 4 ? 4 : ($(nproc) + 1) / 2 )) here)"
