#!/usr/bin/env bash
# The first GPU figures (issue 15), on the device machine: tools/gpu/prepare.sh made .gpu and .gl
# here; `run` carries them. For ViT-B/32 and ViT-B/16 it writes seeded random weights as a Hugging
# Face checkpoint (PyTorch), times PyTorch CUDA fp32 and fp16 on them, converts them to a q8
# bundle, and times our native wgpu (Vulkan) image tower at f32 and f16 on the f32 and the q8
# weights, plain, with burn's fusion, and with fusion and autotune: batches 1, 8 and 64, first run
# apart, medians of the warm runs after it. tools/gpu/train.sh trains the demo model there.
# Everything goes to $OUT/gpu.log. DEVICE=local rehearses it here (lavapipe, CPU PyTorch, one
# small batch).
set -uo pipefail
cd "$(dirname "$0")/../.."
source tools/gpu/env.sh
exec > >(tee "$OUT/gpu.log") 2>&1
if [ "${DEVICE:-h200}" = local ]; then
  torch_device=cpu dtypes=fp32 batches=${BATCHES:-1} iters=${ITERS:-2}
else
  torch_device=cuda dtypes=fp32,fp16 batches=${BATCHES:-1,8,64} iters=${ITERS:-20}
  # What the autotuned binary chose for each op and shape, to fix a kernel choice from it
  # (issue 15, item 2). cubecl reads cubecl.toml from the working directory.
  printf '[autotune.logger]\nlevel = "full"\nfile = "%s"\n' "$OUT/autotune.log" > cubecl.toml
  trap 'rm -f cubecl.toml' EXIT
fi
work=$(mktemp -d)
for model in b32:config.json b16:config-b16.json; do
  name=${model%%:*}
  echo "== ViT-${name^^}: PyTorch ($torch_device)"
  PYTHONUNBUFFERED=1 $py tools/reference/bench_ref.py --config "$tok/${model#*:}" --save "$work/$name" \
    --device $torch_device --dtypes $dtypes --towers image --batches $batches --iters $iters
  "$bin" convert --hf "$work/$name" --tokenizer "$tok" --quant q8 --out "$work/$name.q8.bundle" >/dev/null
  for b in $bins; do for weights in "$work/$name" "$work/$name.q8.bundle"; do
    echo "== ViT-${name^^}: ours ($(basename "$b")), wgpu, $(basename "$weights")"
    "$b" bench --model "$weights" --backends wgpu --precisions f32,f16 --towers image \
      --batches $batches --iters $iters
  done; done
done
rm -rf "$work"
