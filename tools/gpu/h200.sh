#!/usr/bin/env bash
# The first GPU figures (issue 15), on the device machine: tools/gpu/prepare.sh made .gpu and .gl
# here; `run` carries them. For ViT-B/32 and ViT-B/16 it writes seeded random weights as a Hugging
# Face checkpoint (PyTorch), times PyTorch CUDA fp32 and fp16 on them, converts them to a q8
# bundle, and times our native wgpu (Vulkan) image tower at f32 and f16 on the f32 and the q8
# weights, without and with burn's fusion: batches 1, 8 and 64, first run apart, medians of the
# warm runs after it.
# Everything goes to $OUT/gpu.log. DEVICE=local rehearses it here (lavapipe, CPU PyTorch, one
# small batch).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-target/gpu}"
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu.log") 2>&1
if [ "${DEVICE:-h200}" = local ]; then
  py=tools/reference/.venv/bin/python torch_device=cpu dtypes=fp32 batches=${BATCHES:-1} iters=${ITERS:-2}
  bins=target/release/deltaenergy
else
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
  icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  [ -f "$icd" ] && export VK_DRIVER_FILES=$icd
  nvidia-smi -L
  py=python3 torch_device=cuda dtypes=fp32,fp16 batches=${BATCHES:-1,8,64} iters=${ITERS:-20}
  bins=""
  for b in deltaenergy deltaenergy-fusion; do
    [ -f ".gpu/$b.gz" ] || continue
    gunzip -c ".gpu/$b.gz" > "/tmp/$b" && chmod +x "/tmp/$b" && bins="${bins:+$bins }/tmp/$b"
  done
fi
[ -n "$bins" ] || { echo "no binary: run tools/gpu/prepare.sh first" >&2; exit 1; }
bin=${bins%% *}  # converts the checkpoint; every binary in $bins is timed
tok=.gpu/clip-tokenizer
[ -d "$tok" ] || tok="${DELTAENERGY_DATA:-../shared/data}/clip-tokenizer"
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
# How fast the demo model's recipe trains there (burn's autodiff on wgpu), to plan a training
# run on the GPU (issue 14): seconds a step at batch 128 and 512.
probe=.gpu/cifar10-probe
[ -d "$probe" ] || probe="${DELTAENERGY_DATA:-../shared/data}/cifar10/train"
for batch in 128 512; do
  echo "== training probe: demo config, batch $batch, ${PROBE_STEPS:-30} steps on wgpu"
  "$bin" train --backend wgpu --config tools/train/cifar-clip.json --data "$probe" --per-class 300 \
    --text-to-image 0.5 --outliers 16 --batch $batch --max-steps "${PROBE_STEPS:-30}" \
    --tokenizer "$tok" --out "$work/probe-$batch" 2>&1 | grep -v '^decoding\|XDG'
done
rm -rf "$work"
