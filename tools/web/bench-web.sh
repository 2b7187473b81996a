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
echo "== ours (q8 bundle, CPU in wasm)"
ours=$(node tests/e2e/bench.mjs --model models/bench-b32.q8.bundle --images "$images" --runs "$runs" --backends cpu | tee /dev/stderr | line)
declare -A theirs
for threads in 1 default; do
  echo "== transformers.js q8, threads $threads"
  theirs[$threads]=$(node tools/web/tjs-bench/run.mjs --model-dir "$dir/tjs" --images "$images" --runs "$runs" --threads "$threads" | tee /dev/stderr | line)
done

# Columns (bench.mjs): backend ready_s warmup_ms image_total_ms image_tower_ms n scoring_rss_peak_mb
echo
echo "scorer                               ready_s  warmup_ms  per_image_ms  image_tower_ms  rss_peak_mb  ours/theirs (tower)"
show() { awk -v name="$1" -v ref="${3:-}" '{ r = ref ? sprintf("%.2f", ref / $5) : "-"; printf "%-36s %7s %10s %13s %15s %12s  %s\n", name, $2, $3, $4, $5, $7, r }' <<<"$2"; }
ours_tower=$(awk '{print $5}' <<<"$ours")
show "deltaenergy q8, 1 thread" "$ours"
show "transformers.js q8, 1 thread" "${theirs[1]}" "$ours_tower"
show "transformers.js q8, default threads" "${theirs[default]}" "$ours_tower"
echo "(ours/theirs: our image-tower median over theirs; below 1 we are faster. rss_peak_mb: all of"
echo " Chromium's processes while the images are scored. Our CPU path has one thread.)"
