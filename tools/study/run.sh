#!/usr/bin/env bash
# The study (docs/study/): zero-shot (hand prompt) vs CoOp vs EBM on the demo model, each scored
# by ΔEnergy, energy, MCM and MaxLogit, then ablations over τ, c, the mask rule and λ.
# Writes JSON reports to target/study/ and the markdown tables of docs/study/tables.md to target/study/tables.md.
# Usage: tools/study/run.sh [BUNDLE [BASELINE]]   (default: the shipped demo model; data:
# $DELTAENERGY_DATA). BASELINE, a bundle of the same model before outlier exposure, is scored
# zero-shot too.
set -euo pipefail
bin=target/release/deltaenergy
model="${1:-www/models/cifar-clip.q8.bundle}"
baseline="${2:-}"
data="${DELTAENERGY_DATA:-../shared/data}"
out=target/study
tools/study/prepare.sh "$out"
ev() {
  local m="$1"; shift
  "$bin" eval --model "$m" --id "$data/cifar10/test" --covariate "$out/covariate" \
    --ood "$data/dtd" --ood "$data/mnist-test" --ood "$out/imagenet-ood" --json "$@"
}
tune() { "$bin" tune --model "$model" --train "$data/cifar10/train" --shots 16 "$@"; }

echo "== zero-shot, CoOp, EBM" >&2
rm -f "$out/no-outliers.json"
if [ -n "$baseline" ]; then
  ev "$baseline" --template "a photo of a {}." --plots "$out/plots/no-outliers" > "$out/no-outliers.json"
fi
ev "$model" --template "a photo of a {}." --plots "$out/plots/zero-shot" > "$out/zero-shot.json"
tune --lambda 0 --out "$out/coop.bundle" > "$out/coop.tune.json"
ev "$out/coop.bundle" > "$out/coop.json"
tune --lambda 1 --out "$out/ebm.bundle" > "$out/ebm.tune.json"
ev "$out/ebm.bundle" --plots "$out/plots/ebm" > "$out/ebm.json"

echo "== τ, c and the crop value (scores only, zero-shot prompt)" >&2
# "own" is the model's own temperature, the bundle's default (1/exp(logit_scale)).
for tau in own 0.01 0.1 1; do for c in 1 2 3; do
  flag=(); [ "$tau" = own ] || flag=(--tau "$tau")
  ev "$model" --template "a photo of a {}." "${flag[@]}" --c "$c" > "$out/zs-tau$tau-c$c.json"
done; done
for v in -1 0.5; do
  ev "$model" --template "a photo of a {}." --c 1 --crop-value "$v" > "$out/zs-v$v.json"
done

echo "== λ" >&2
for l in 0.1 0.3 3 10; do
  tune --lambda "$l" --out "$out/ebm-l$l.bundle" > "$out/ebm-l$l.tune.json"
  ev "$out/ebm-l$l.bundle" > "$out/ebm-l$l.json"
done

echo "== mask rule (λ 1)" >&2
for m in negative top-fraction:0.1; do
  tune --lambda 1 --mask "$m" --out "$out/ebm-$m.bundle" > "$out/ebm-$m.tune.json"
  ev "$out/ebm-$m.bundle" > "$out/ebm-$m.json"
done
tune --lambda 1 --mask-by-label --out "$out/ebm-label.bundle" > "$out/ebm-label.tune.json"
ev "$out/ebm-label.bundle" > "$out/ebm-label.json"

echo "== tuning learning rate" >&2
for l in 0 1; do
  tune --lambda "$l" --lr 0.05 --out "$out/lr0.05-l$l.bundle" > "$out/lr0.05-l$l.tune.json"
  ev "$out/lr0.05-l$l.bundle" > "$out/lr0.05-l$l.json"
done

python3 tools/study/tables.py "$out" > "$out/tables.md"
cat "$out/tables.md"
