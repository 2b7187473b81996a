#!/usr/bin/env bash
# `make bench-web`: our page and transformers.js on the same seeded ViT-B/32 weights (DIR, from
# tools/reference/export_onnx.py, and DIR/ours.q8.bundle converted from DIR/hf), the same images
# and the same headless Chromium, one after the other: per-image medians and our/their ratio, at
# one thread and at each side's default thread count.
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
# This machine's speed drifts by tens of percent from minute to minute: ROUNDS rounds, each
# running the three one after the other, and the ratio taken within each round.
rounds=${ROUNDS:-3}
declare -a ours t1 tdef
for ((i = 1; i <= rounds; i++)); do
  echo "== round $i: ours (q8 bundle, CPU in wasm)" >&2
  ours[i]=$(node tests/e2e/bench.mjs --model models/bench-b32.q8.bundle --images "$images" --runs "$runs" --backends cpu | tee /dev/stderr | line)
  echo "== round $i: transformers.js q8, 1 thread" >&2
  t1[i]=$(node tools/web/tjs-bench/run.mjs --model-dir "$dir/tjs" --images "$images" --runs "$runs" --threads 1 | tee /dev/stderr | line)
  echo "== round $i: transformers.js q8, default threads" >&2
  tdef[i]=$(node tools/web/tjs-bench/run.mjs --model-dir "$dir/tjs" --images "$images" --runs "$runs" --threads default | tee /dev/stderr | line)
done

# Columns (bench.mjs): backend ready_s warmup_ms image_total_ms image_tower_ms n scoring_rss_peak_mb
col() { awk -v c="$1" '{ print $c }'; }
echo
echo "per round, image tower medians (ms): ours | transformers.js 1 thread | default threads | ours/theirs"
for ((i = 1; i <= rounds; i++)); do
  o=$(col 5 <<<"${ours[i]}"); a=$(col 5 <<<"${t1[i]}"); b=$(col 5 <<<"${tdef[i]}")
  echo "round $i: $o | $a | $b | $(awk -v o="$o" -v a="$a" -v b="$b" 'BEGIN { printf "%.2f, %.2f", o / a, o / b }')"
done
summary() { # name, array name: the medians of ready, warm-up, per image, tower and memory
  local -n rows=$2
  local c r medians=()
  for c in 2 3 4 5 7; do medians+=("$(for r in "${rows[@]}"; do col "$c" <<<"$r"; done | median)"); done
  printf "%-36s %7s %10s %13s %15s %12s\n" "$1" "${medians[@]}"
}
echo
echo "medians over $rounds rounds"
echo "scorer                               ready_s  warmup_ms  per_image_ms  image_tower_ms  rss_peak_mb"
summary "deltaenergy q8, 1 thread" ours
summary "transformers.js q8, 1 thread" t1
summary "transformers.js q8, default threads" tdef
ratios() { local -n theirs=$1; for ((i = 1; i <= rounds; i++)); do awk -v o="$(col 5 <<<"${ours[i]}")" -v t="$(col 5 <<<"${theirs[i]}")" 'BEGIN { print o / t }'; done | median; }
printf "ours/theirs, image tower (median of the rounds' ratios): %.2f at 1 thread, %.2f at default threads\n" "$(ratios t1)" "$(ratios tdef)"
echo "(below 1 we are faster; rss_peak_mb: all of Chromium's processes while the images are scored;"
echo " our CPU path has one thread; onnxruntime-web's default is min(4, ceil(cores / 2)) threads)"
