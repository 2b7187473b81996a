#!/usr/bin/env bash
# Our CPU towers against ONNX Runtime's, in rounds: this machine's speed drifts by tens of
# percent from minute to minute, so each round runs ours (q8 with i16, i8 and u7 activations,
# f32) and ONNX Runtime (q8, fp32) one after the other, each ratio is taken within its round, and
# the table gives the medians of the rounds. `make bench` runs it.
#
#   tools/profile/bench-rounds.sh DIR      (DIR: ours.f32.bundle, ours.q8.bundle, hf/, tjs/onnx/)
#   TOWERS=image ROUNDS=5 tools/profile/bench-rounds.sh DIR
set -euo pipefail
dir=${1:?usage: bench-rounds.sh DIR}
bin=${BIN:-target/release/deltaenergy}
rounds=${ROUNDS:-3}
towers=${TOWERS:-image,text}
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# "NAME TOWER BATCH MEDIAN_MS" lines from a bench's table, our rows renamed to NAME.
ours() {
  local name=$1 bundle=$2; shift 2
  "$bin" bench --model "$bundle" --backends cpu --towers "$towers" --batches 1,8 "$@" |
    awk -v n="$name" '$1 == "cpu" && $5 ~ /^[0-9.]+$/ { print n, $3, $4, $5 }'
}
for ((i = 1; i <= rounds; i++)); do
  echo "== round $i of $rounds" >&2
  {
    ours "ours-q8-i16" "$dir/ours.q8.bundle"
    ours "ours-q8-i8" "$dir/ours.q8.bundle" --activations i8
    ours "ours-q8-u7" "$dir/ours.q8.bundle" --activations u7
    ours "ours-f32" "$dir/ours.f32.bundle"
    tools/reference/run.sh bench_ref.py --hf "$dir/hf" --onnx "$dir/tjs/onnx" --towers "$towers" \
      --batches 1,8 2>/dev/null | awk '$1 ~ /^ort-/ { print $1, $2, $3, $4 }'
  } | sed "s/^/$i /" | tee -a "$out" >&2
done

# Per tower, batch and round: each time, and ours / ORT for the pairs that compare like with like.
awk '
  { t[$1, $2, $3, $4] = $5; rounds[$1] = 1; towers[$3] = 1; batches[$4] = 1 }
  function median(list,   n, v, i, j, x) {
    n = split(list, v, " ")
    for (i = 2; i <= n; i++) { x = v[i]; for (j = i - 1; j >= 1 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
    return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
  }
  END {
    split("ours-q8-i16 ours-q8-i8 ours-q8-u7 ours-f32 ort-q8 ort-fp32", names, " ")
    split("ours-q8-i16/ort-q8 ours-q8-i8/ort-q8 ours-q8-u7/ort-q8 ours-f32/ort-fp32", pairs, " ")
    split("image text", order, " ")
    for (o = 1; o <= 2; o++) {
      tw = order[o]
      if (!(tw in towers)) continue
      printf "%s tower, medians of %d rounds (ms; ratios taken within each round, range in brackets)\n", tw, length(rounds)
      printf "%-6s", "batch"; for (n = 1; n <= 6; n++) printf " %12s", names[n]
      for (p = 1; p <= 4; p++) printf " %26s", pairs[p]; print ""
      for (b = 1; b <= 8; b++) {
        if (!(b in batches)) continue
        printf "%-6s", b
        for (n = 1; n <= 6; n++) { l = ""; for (r in rounds) l = l " " t[r, names[n], tw, b]; printf " %12.1f", median(l) }
        for (p = 1; p <= 4; p++) {
          split(pairs[p], ab, "/"); l = ""; lo = 1e9; hi = 0
          for (r in rounds) { x = t[r, ab[1], tw, b] / t[r, ab[2], tw, b]; l = l " " x; lo = x < lo ? x : lo; hi = x > hi ? x : hi }
          printf " %13.2f [%.2f-%.2f]", median(l), lo, hi
        }
        print ""
      }
    }
  }' "$out"
