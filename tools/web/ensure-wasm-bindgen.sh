#!/usr/bin/env bash
# Installs wasm-bindgen-cli at exactly the version Cargo.lock pins (the CLI and the crate must match).
set -euo pipefail
want=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
  echo "installing wasm-bindgen-cli $want (found: ${have:-none})"
  # Not --locked: its lockfile pins a webpki-roots the registry mirror lacks (see STACK.md).
  cargo install wasm-bindgen-cli --version "$want"
fi
