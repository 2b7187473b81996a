#!/usr/bin/env bash
# The page's CPU scorer under V8's profiler (tests/e2e/profile-web.mjs), with function names:
# the built module (make web) is run through wasm-bindgen again keeping its name section, put in
# www/pkg for the run, and the shipped one put back after.
#
#   tools/profile/profile-web.sh DIR [IMAGES]   (DIR as for make bench-web: DIR/ours.q8.bundle)
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:?usage: profile-web.sh DIR [IMAGES]}
data=${DELTAENERGY_DATA:-../shared/data}
images=${2:-$data/cifar10/test/cat/0000.jpg,$data/gallery/n02123045_tabby.JPEG,$data/dtd/banded/banded_0002.jpg}
wasm=target/wasm32-unknown-unknown/wasm/deltaenergy.wasm
[ -f "$wasm" ] && [ -f www/pkg/deltaenergy_bg.wasm ] || { echo "run make web first" >&2; exit 1; }
named=$(mktemp -d)
wasm-bindgen --target web --out-dir "$named" "$wasm"
# The glue must be the shipped one's: only the module's name section may differ.
cmp -s "$named/deltaenergy.js" www/pkg/deltaenergy.js || { echo "www/pkg is not from $wasm: run make web" >&2; exit 1; }
cp www/pkg/deltaenergy_bg.wasm "$named/shipped.wasm"
trap 'cp "$named/shipped.wasm" www/pkg/deltaenergy_bg.wasm; rm -rf "$named"' EXIT
cp "$named/deltaenergy_bg.wasm" www/pkg/deltaenergy_bg.wasm
ln -f "$dir/ours.q8.bundle" www/models/bench-b32.q8.bundle
node tests/e2e/profile-web.mjs --model models/bench-b32.q8.bundle --images "$images" --runs "${RUNS:-2}" --threads 1
