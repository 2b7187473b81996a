#!/usr/bin/env bash
# Prepares the GPU runs (issues 14 and 15) here, so that the device machine only runs them:
#   .gpu/deltaenergy.xz            the release binary, stripped and xz'd (the device carries 64 MiB)
#   .gpu/deltaenergy-fusion.xz     the same with burn's kernel fusion (`--features fusion`)
#   .gpu/deltaenergy-autotune.xz   with fusion and burn's autotune (`--features fusion,autotune`)
#   .gpu/clip-tokenizer/           the real ViT-B/32 and B/16 configs and the tokenizer
#   .gpu/cifar10-train.pack        the 48,000 training images of the demo model (tools/gpu/jpegpack.py)
#   .gl/*.deb                      the Vulkan and GL loaders the device machine lacks
# Both folders are git-ignored through .git/info/exclude. Then, with the device lent:
#   run(command="bash tools/gpu/h200.sh", carry=[".gl", ".gpu"], timeout_s=540)   # benchmarks
#   run(command="bash tools/gpu/train.sh", carry=[".gl", ".gpu"], timeout_s=600)  # the demo model
# `DEVICE=local bash tools/gpu/{h200,train}.sh` rehearse them here (lavapipe or the CPU).
set -euo pipefail
cd "$(dirname "$0")/../.."
data="${DELTAENERGY_DATA:-../shared/data}"
for d in /.gpu/ /.gl/; do grep -qxF "$d" .git/info/exclude || echo "$d" >> .git/info/exclude; done
rm -rf .gpu/cifar10-probe .gpu/*.gz
mkdir -p .gpu/clip-tokenizer
# The plain build last: all share target/, and it is the one the tests then find.
for variant in autotune:fusion,autotune fusion:fusion plain:; do
  name=${variant%%:*} features=${variant#*:}
  cargo build --release ${features:+--features $features}
  out=.gpu/deltaenergy${features:+-$name}
  strip -o "$out" target/release/deltaenergy
  xz -9f -T2 "$out"
done
cp "$data"/clip-tokenizer/{config.json,config-b16.json,vocab.json,merges.txt} .gpu/clip-tokenizer/
python3 tools/gpu/jpegpack.py pack "$data/cifar10/train" .gpu/cifar10-train.pack --skip 200
if ! ls .gl/*.deb >/dev/null 2>&1; then
  # The device README's recipe: amd64 packages, unpacked there at the start of each run.
  mkdir -p .gl /tmp/amd64/partial
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  apt-get $o update -qq
  (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi
du -ch .gpu .gl | tail -1
