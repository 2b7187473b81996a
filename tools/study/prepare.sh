#!/usr/bin/env bash
# Arranges ../shared/data for `deltaenergy eval` as symlinks (nothing is copied):
#   $OUT/covariate/<cifar class>/  ImageNet photos of the CIFAR-10 classes (covariate shift)
#   $OUT/imagenet-ood/             ImageNet photos of the other classes (near OOD)
# DTD, MNIST and cifar10/test are used in place.
# Usage: tools/study/prepare.sh [OUT]   (default target/study; data from $DELTAENERGY_DATA)
set -euo pipefail
data="$(cd "${DELTAENERGY_DATA:-../shared/data}" && pwd)"
out="${1:-target/study}"
rm -rf "$out/covariate" "$out/imagenet-ood"
mkdir -p "$out/covariate" "$out/imagenet-ood"
tail -n +2 "$data/imagenet-samples/labels.csv" | while IFS=, read -r file _synset _label cls; do
  cls="${cls%$'\r'}"
  if [ -n "$cls" ]; then
    mkdir -p "$out/covariate/$cls"
    ln -s "$data/imagenet-samples/$file" "$out/covariate/$cls/$file"
  else
    ln -s "$data/imagenet-samples/$file" "$out/imagenet-ood/$file"
  fi
done
echo "covariate: $(find "$out/covariate" -type l | wc -l) images; imagenet-ood: $(find "$out/imagenet-ood" -type l | wc -l)" >&2
