#!/usr/bin/env bash
# Prepares the first GPU measurement (issue 15) here, so the device machine only runs it:
#   .gpu/deltaenergy.gz   the release binary, stripped and gzipped (the device carries 64 MiB),
#   .gpu/deltaenergy-fusion.gz  the same with burn's kernel fusion (`--features fusion`)
#   .gpu/clip-tokenizer/  the real ViT-B/32 and B/16 configs and the tokenizer `convert` needs
#   .gpu/cifar10-probe/   300 training images a class, for timing `train --backend wgpu`
#   .gl/*.deb             the Vulkan and GL loaders the device machine lacks
# Both folders are git-ignored through .git/info/exclude. Then, with the device lent:
#   run(command="bash tools/gpu/h200.sh", carry=[".gl", ".gpu"], timeout_s=540)
# `DEVICE=local bash tools/gpu/h200.sh` rehearses the same script here (lavapipe, CPU PyTorch).
set -euo pipefail
cd "$(dirname "$0")/../.."
data="${DELTAENERGY_DATA:-../shared/data}"
for d in /.gpu/ /.gl/; do grep -qxF "$d" .git/info/exclude || echo "$d" >> .git/info/exclude; done
mkdir -p .gpu/clip-tokenizer
# The fusion build first: both share target/, and the plain one is what the tests then find.
cargo build --release --features fusion
strip -o .gpu/deltaenergy-fusion target/release/deltaenergy
cargo build --release
strip -o .gpu/deltaenergy target/release/deltaenergy
gzip -9f .gpu/deltaenergy .gpu/deltaenergy-fusion
cp "$data"/clip-tokenizer/{config.json,config-b16.json,vocab.json,merges.txt} .gpu/clip-tokenizer/
rm -rf .gpu/cifar10-probe
for d in "$data"/cifar10/train/*/; do
  c=$(basename "$d")
  mkdir -p ".gpu/cifar10-probe/$c"
  files=("$d"*)  # sorted by the glob
  cp -t ".gpu/cifar10-probe/$c" "${files[@]:0:300}"
done
if ! ls .gl/*.deb >/dev/null 2>&1; then
  # The device README's recipe: amd64 packages, unpacked there at the start of each run.
  mkdir -p .gl /tmp/amd64/partial
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  apt-get $o update -qq
  (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi
du -ch .gpu .gl | tail -1
