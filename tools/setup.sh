#!/usr/bin/env bash
# Installs (or checks for) what `make demo` and `make test` need, without prompting, and stops at
# once with the one command that would install a missing piece when it cannot do it itself.
#
#   tools/setup.sh demo   Node.js 20.15+ and the wasm32 target (tools/web/build.sh installs the
#                         pinned wasm-bindgen-cli beside the wasm build)
#   tools/setup.sh test   the same, wasm-bindgen-cli, Chromium and Mesa's lavapipe (Debian
#                         packages), rustfmt and clippy, and the npm packages of the browser
#                         tests and of the package's build; reports whether the data set is there
#
# Every step prints what it did and how long it took. Nothing here downloads a browser or a
# driver from anywhere but Debian's own packages and npm's registry.
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-test}"

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
step_start=0
step() { step_start=$(now_ms); printf '==> %s\n' "$*"; }
done_step() { local t=$(( $(now_ms) - step_start )); printf '    %s (%d.%d s)\n' "$1" $((t / 1000)) $((t % 1000 / 100)); }
stop() { printf '\nerror: %s\n' "$1" >&2; shift; for line in "$@"; do printf '  %s\n' "$line" >&2; done; exit 1; }

# --- Node.js: the reference server and the browser tests (20.15 brought zlib.crc32, which the
# browser tests use to write their PNGs)
step "Node.js 20.15 or newer"
if ! command -v node >/dev/null; then
  stop "Node.js is not installed (the page's server and the browser tests need 20.15 or newer)." \
    "On Debian 13: sudo apt-get install -y nodejs npm   (elsewhere: https://nodejs.org, or nvm install 20)"
fi
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 15) ? 0 : 1)'; then
  stop "Node.js $(node --version) is too old; the page's server and the browser tests need 20.15 or newer." \
    "Install a newer Node.js (https://nodejs.org, or nvm install 20), then run this again."
fi
done_step "node $(node --version)"

# --- Rust: the wasm target and the wasm-bindgen CLI that matches Cargo.lock
step "Rust target wasm32-unknown-unknown"
command -v rustup >/dev/null || stop "rustup is not installed." "curl https://sh.rustup.rs -sSf | sh"
if rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  done_step "already installed"
else
  rustup target add wasm32-unknown-unknown
  done_step "installed"
fi

[ "$what" = demo ] && exit 0
[ "$what" = test ] || stop "unknown mode '$what' (demo or test)"

step "rustfmt and clippy"
if cargo fmt --version >/dev/null 2>&1 && cargo clippy --version >/dev/null 2>&1; then
  done_step "already installed"
else
  rustup component add rustfmt clippy
  done_step "installed"
fi
step "wasm-bindgen-cli (the version Cargo.lock pins)"
tools/web/ensure-wasm-bindgen.sh
done_step "wasm-bindgen $(wasm-bindgen --version | awk '{print $2}')"

# --- Debian packages: Chromium for the page's tests, lavapipe (software Vulkan) for the native
# wgpu tests, which then run the same WGSL kernels the browser runs.
step "Chromium and lavapipe (Debian packages)"
packages=(chromium mesa-vulkan-drivers libvulkan1)
install_cmd="apt-get update && apt-get install -y --no-install-recommends ${packages[*]}"
if command -v dpkg >/dev/null && command -v apt-get >/dev/null; then
  missing=()
  for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    done_step "already installed"
  elif [ "$(id -u)" -eq 0 ]; then
    echo "    installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    done_step "installed ${missing[*]}"
  elif sudo -n true 2>/dev/null; then
    echo "    installing ${missing[*]} with sudo"
    sudo DEBIAN_FRONTEND=noninteractive apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    done_step "installed ${missing[*]}"
  else
    stop "the tests need the Debian packages ${missing[*]}, and installing them needs root." \
      "sudo sh -c '$install_cmd'"
  fi
else
  # Not Debian: look for the two things the packages provide.
  chromium="${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}"
  icds=$(ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json 2>/dev/null || true)
  if [ -z "$chromium" ] || [ -z "$icds" ]; then
    stop "this is not a Debian system, so the test set-up cannot install Chromium and a Vulkan driver itself." \
      "Install Chromium (then CHROMIUM=/path/to/chromium if it is not on PATH) and Mesa's Vulkan drivers" \
      "(lavapipe) with your package manager; on Debian or Ubuntu: sudo sh -c '$install_cmd'"
  fi
  done_step "found $chromium and a Vulkan driver"
fi

# --- npm packages: the browser tests' (playwright-core, which drives the installed Chromium)
# and the package's build tools (TypeScript, which checks pkg/ and emits its types)
for dir in tests/e2e tools/web; do
  step "npm packages of $dir"
  if [ -f "$dir/node_modules/.package-lock.json" ] && [ "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ]; then
    done_step "already installed"
  else
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    done_step "installed"
  fi
done

# --- the data set: tests that need it skip (saying so) when it is absent
step "the data set (DELTAENERGY_DATA, default ../shared/data)"
data="${DELTAENERGY_DATA:-../shared/data}"
if [ -d "$data/clip-tokenizer" ] && [ -d "$data/cifar10" ]; then
  done_step "found $data"
else
  echo "    not found at $data: the tests that read it (the tokenizer files, CIFAR-10, DTD, MNIST,"
  echo "    ImageNet samples) will say so and skip. See tests/README.md for what it holds."
  done_step "missing"
fi
