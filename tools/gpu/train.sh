#!/usr/bin/env bash
# The demo model's two training stages on the device's GPU (issue 14): burn's autodiff on wgpu
# (Vulkan), within a fixed budget of seconds. tools/gpu/prepare.sh made .gpu and .gl here; then
#   run(command="bash tools/gpu/train.sh", carry=[".gl", ".gpu"], timeout_s=600)
# and, back here with the files it returned (clip/ and clip-styles/ under files_at/gpu):
#   make demo-bundle DEMO_WORK=<files_at>/gpu
# which converts both stages to q8 and tunes, calibrates and writes the page's model as
# `make demo-model` does after training on the CPU.
#
# The recipe is the CPU's (tools/train/cifar-clip.json, both halves of CLIP's loss, the same
# 48,000 images, seed 0; outlier exposure with the five families and styled captions, which the
# CPU recipe splits over stages 2 to 4) scaled to a GPU: batches of 512, and random resized crops with colour
# jitter (`--augment crop`) because a ViT trained for many epochs on 48,000 images learns them by
# heart without them. `--time-limit` fits the epochs into the budget (STAGE1, STAGE2 seconds)
# from the step time measured during warm-up; train.json records the epochs it chose, and
# `--epochs` with that number repeats the run.
# DEVICE=local rehearses it here on the CPU (BACKEND=wgpu: lavapipe) with a small budget.
set -uo pipefail
cd "$(dirname "$0")/../.."
source tools/gpu/env.sh
exec > >(tee "$OUT/train.log") 2>&1
if [ "${DEVICE:-h200}" = local ]; then
  backend=${BACKEND:-cpu} STAGE1=${STAGE1:-60} STAGE2=${STAGE2:-30} per_class=${PER_CLASS:-100}
  batch=${BATCH:-64}
else
  backend=wgpu STAGE1=${STAGE1:-330} STAGE2=${STAGE2:-100} per_class=${PER_CLASS:-100000}
  batch=${BATCH:-512}
fi
# BIN=fusion trains with the fused build (it must have been carried; `cargo test --release
# --features fusion --test integration train::wgpu_trains_like_the_cpu` holds it to the CPU's steps).
[ -n "${BIN:-}" ] && bin=$(echo $bins | tr ' ' '\n' | grep -- "-$BIN$" || echo "$bin")
work=$(mktemp -d)
cifar_train "$work/cifar10-train"
common=(--backend "$backend" --data "$work/cifar10-train" --per-class "$per_class" --batch "$batch"
  --text-to-image 0.5 --augment crop --seed 0 --tokenizer "$tok")
echo "== stage 1 ($(basename "$bin"), $backend): at most ${STAGE1}s"
"$bin" train --config tools/train/cifar-clip.json "${common[@]}" --epochs 400 --lr 2e-3 \
  --warmup 300 --time-limit "$STAGE1" --out "$OUT/clip" 2>&1 | grep -v '^decoding\|XDG' || exit 1
echo "== stage 2, outlier exposure and styled captions: at most ${STAGE2}s"
"$bin" train --init "$OUT/clip" "${common[@]}" --epochs 20 --lr 5e-4 --warmup 40 --outliers $((batch / 8)) \
  --outlier-kinds shuffled,dead-leaves,noise,fractal,strokes --styles \
  --time-limit "$STAGE2" --out "$OUT/clip-styles" 2>&1 | grep -v '^decoding\|XDG' || exit 1
rm -rf "$work"
