#!/usr/bin/env bash
# Builds what the page needs and nothing else (no native build): the scorer compiled to
# WebAssembly, wasm-bindgen's ES module and types in pkg/, the threaded CPU build in
# pkg/threads/, both again with relaxed SIMD in pkg/relaxed/ and pkg/threads-relaxed/, and the
# static site in www/. `make web` runs it; every step prints its time.
# THREADS=0 skips the threaded build (the page then runs the CPU on one thread everywhere).
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

# burn's kernel fusion is on in the browser: on SwiftShader it made no figure worse and the text
# tower faster (docs/PERFORMANCE.md, "On the GPU"); natively it slowed lavapipe's text tower, so it stays off.
$timed "wasm build (profile wasm: size-optimised, fat LTO, fusion)" \
  cargo build --profile wasm --lib --target wasm32-unknown-unknown --features fusion

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
bindgen=(wasm-bindgen --target web --remove-name-section --remove-producers-section)
$timed "wasm-bindgen (pkg/)" "${bindgen[@]}" --out-dir pkg "$wasm"

# Each build again with relaxed SIMD, for the u7 scheme's kernel (src/clip/qmatmul/simd128.rs):
# the package loads these for `activations: 'u7'` where the browser validates relaxed SIMD
# (pkg/builds.js). Only this crate's features differ, so every dependency built above is reused.
rm -rf pkg/relaxed pkg/threads-relaxed
$timed "wasm build, relaxed SIMD" \
  cargo build --profile wasm --lib --target wasm32-unknown-unknown --features fusion,relaxed-simd
$timed "wasm-bindgen (pkg/relaxed/)" "${bindgen[@]}" --out-dir pkg/relaxed "$wasm"

# The threaded CPU build: burn-flex and the int8 kernel on a pool of workers sharing one memory
# (src/web/pool.rs), which the package uses for the CPU on cross-origin isolated pages. Shared
# memory needs std rebuilt with atomics, which only nightly does (-Z build-std); the toolchain is
# pinned so that every machine builds the same module. wasm-ld must be told to share, import and
# bound the memory and to export the TLS symbols that wasm-bindgen's thread start-up calls.
rm -rf pkg/threads
if [ "${THREADS:-1}" != 0 ]; then
  nightly=nightly-2026-05-20
  if ! rustup run "$nightly" rustc --version >/dev/null 2>&1; then
    $timed "rust $nightly (for the threaded build)" \
      rustup toolchain install "$nightly" --profile minimal --component rust-src
  fi
  rustup component list --toolchain "$nightly" --installed | grep -q '^rust-src' ||
    rustup component add rust-src --toolchain "$nightly"
  flags='"-Ctarget-feature=+atomics,+simd128", "-Clink-arg=--shared-memory", "-Clink-arg=--import-memory", "-Clink-arg=--max-memory=4294967296", "-Clink-arg=--export=__wasm_init_tls", "-Clink-arg=--export=__tls_size", "-Clink-arg=--export=__tls_align", "-Clink-arg=--export=__tls_base"'
  $timed "wasm build, threaded CPU (nightly, build-std, atomics)" \
    cargo "+$nightly" build --profile wasm --lib --target wasm32-unknown-unknown \
      --target-dir target/threads --no-default-features --features threads \
      -Z build-std=panic_abort,std --config "target.wasm32-unknown-unknown.rustflags=[$flags]"
  $timed "wasm-bindgen (pkg/threads/)" "${bindgen[@]}" --out-dir pkg/threads \
    target/threads/wasm32-unknown-unknown/wasm/deltaenergy.wasm
  $timed "wasm build, threaded CPU, relaxed SIMD" \
    cargo "+$nightly" build --profile wasm --lib --target wasm32-unknown-unknown \
      --target-dir target/threads --no-default-features --features threads,relaxed-simd \
      -Z build-std=panic_abort,std --config "target.wasm32-unknown-unknown.rustflags=[$flags]"
  $timed "wasm-bindgen (pkg/threads-relaxed/)" "${bindgen[@]}" --out-dir pkg/threads-relaxed \
    target/threads/wasm32-unknown-unknown/wasm/deltaenergy.wasm
fi

# The page is the package's first client: it imports pkg/index.js like any other app.
rm -rf www/pkg && mkdir -p www/pkg && cp pkg/*.js pkg/deltaenergy*.d.ts pkg/deltaenergy_bg.wasm www/pkg/
for d in relaxed threads threads-relaxed; do [ -d "pkg/$d" ] && cp -r "pkg/$d" www/pkg/; done
# The page's default model; replace www/models/default.bundle to serve another one.
cp www/models/cifar-clip.q8.bundle www/models/default.bundle
for w in pkg/deltaenergy_bg.wasm pkg/relaxed/deltaenergy_bg.wasm pkg/threads/deltaenergy_bg.wasm \
  pkg/threads-relaxed/deltaenergy_bg.wasm; do
  [ -f "$w" ] && echo "$w: $(stat -c %s "$w") bytes raw, $(gzip -9 -c "$w" | wc -c) gzip -9"
done
true
