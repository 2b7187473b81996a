#!/usr/bin/env bash
# Builds what the page needs and nothing else (no native build): the scorer compiled to
# WebAssembly, wasm-bindgen's ES module and types in pkg/, and the static site in www/.
# `make web` runs it; every step prints its time.
set -euo pipefail
cd "$(dirname "$0")/../.."
timed=tools/timed
wasm=target/wasm32-unknown-unknown/wasm/deltaenergy.wasm

rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown

# A missing wasm-bindgen CLI is compiled from crates.io beside the wasm build rather than before
# it: the build leaves a core idle while its largest crates compile, and the install fills it.
install_pid=""
want=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$want" ]; then
  mkdir -p target
  log=target/wasm-bindgen-install.log
  echo "==> installing wasm-bindgen-cli $want in the background (log: $log)"
  tools/web/ensure-wasm-bindgen.sh >"$log" 2>&1 &
  install_pid=$!
fi

$timed "wasm build (profile wasm: size-optimised, fat LTO)" \
  cargo build --profile wasm --lib --target wasm32-unknown-unknown

if [ -n "$install_pid" ]; then
  echo "==> waiting for the wasm-bindgen-cli install"
  start=$(date +%s)
  if ! wait "$install_pid"; then
    tail -20 "$log" >&2
    echo "error: installing wasm-bindgen-cli $want failed (log: $log)" >&2
    exit 1
  fi
  echo "<== waited $(( $(date +%s) - start )) s for the wasm-bindgen-cli install"
fi

# The name section only serves debuggers; dropping it saves ~5 MB of the ~20 MB.
$timed "wasm-bindgen (pkg/)" wasm-bindgen --target web --remove-name-section --remove-producers-section \
  --out-dir pkg "$wasm"
# The page is the package's first client: it imports pkg/index.js like any other app.
rm -rf www/pkg && mkdir -p www/pkg && cp pkg/*.js pkg/deltaenergy*.d.ts pkg/deltaenergy_bg.wasm www/pkg/
# The page's default model; replace www/models/default.bundle to serve another one.
cp www/models/cifar-clip.q8.bundle www/models/default.bundle
echo "wasm: $(stat -c %s pkg/deltaenergy_bg.wasm) bytes raw, $(gzip -9 -c pkg/deltaenergy_bg.wasm | wc -c) gzip -9"
