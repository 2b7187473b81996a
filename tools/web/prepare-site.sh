#!/usr/bin/env bash
# Fills www/ with what the page serves besides its code: the default model (the committed demo
# model; the small random-weight fixture if it is missing) and a few sample images copied from
# the shared data. The demo model flags the blotchy texture and the 7 as OOD and misses the
# other textures and the 3, as it misses more than half of such images (README, "The demo
# model"): the page shows both. Usage: prepare-site.sh BIN DATA
set -euo pipefail
bin="$1"; data="$2"
mkdir -p www/models www/samples
if [ -f www/models/cifar-clip.q8.bundle ]; then
  cp www/models/cifar-clip.q8.bundle www/models/default.bundle
else
  "$bin" convert --hf tests/fixtures/models/tiny-quickgelu-p8 --tokenizer "$data/clip-tokenizer" --quant f32 \
    --classes "airplane,automobile,bird,cat,deer,dog,frog,horse,ship,truck" --out www/models/default.bundle
fi
samples=(
  "cifar10/test/cat/0000.jpg:cat.jpg:a cat (CIFAR-10)"
  "cifar10/test/airplane/0000.jpg:airplane.jpg:an airplane (CIFAR-10)"
  "cifar10/test/ship/0000.jpg:ship.jpg:a ship (CIFAR-10)"
  "gallery/n02123045_tabby.JPEG:tabby.jpg:a tabby cat (photo)"
  "dtd/banded/banded_0002.jpg:banded.jpg:a banded texture (not a class)"
  "dtd/bubbly/bubbly_0038.jpg:bubbly.jpg:a bubbly texture (not a class)"
  "dtd/blotchy/blotchy_0003.jpg:blotchy.jpg:a blotchy texture (not a class)"
  "mnist-test/7/60000.png:digit-7.png:a handwritten 7 (not a class)"
)
json="["
for s in "${samples[@]}"; do
  IFS=: read -r src name label <<<"$s"
  [ -f "$data/$src" ] || continue
  cp "$data/$src" "www/samples/$name"
  json+="{\"file\": \"$name\", \"label\": \"$label\"},"
done
digits=("$data"/mnist-test/3/*.png)
cp "${digits[0]}" www/samples/digit.png
json+="{\"file\": \"digit.png\", \"label\": \"a handwritten 3 (not a class)\"}]"
echo "$json" > www/samples/index.json
