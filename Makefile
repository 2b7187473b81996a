# One command each: `make demo` (build, then run the demo), `make test` (everything CI runs).
SHELL := bash
DATA ?= $(abspath ../shared/data)
export DELTAENERGY_DATA ?= $(DATA)
BIN := target/release/deltaenergy
FIXTURE := tests/fixtures/models/tiny-quickgelu-p8

.PHONY: all build test test-native test-wasm demo bench fixtures fmt clippy clean

all: build

build:
	cargo build --release

# Tests run in release: the flex CPU backend is ~100x slower unoptimised.
test: test-native test-wasm

test-native:
	cargo test --release

# The library must keep compiling for the browser.
test-wasm:
	cargo build --release --lib --target wasm32-unknown-unknown

# Until the trained demo model lands (issue 5), the demo runs the whole pipeline on a small
# random-weight fixture: decode, resize, tokenize, both towers, ΔEnergy. Labels are meaningless.
demo: build
	$(BIN) tokenize "a photo of a cat." "a blurry photo of the truck."
	$(BIN) score --model $(FIXTURE) --tokenizer $(DATA)/clip-tokenizer \
	  --classes "airplane,automobile,bird,cat,deer,dog,frog,horse,ship,truck" \
	  $(DATA)/cifar10/test/cat/0000.jpg $(DATA)/dtd/banded/banded_0002.jpg \
	  $$(ls $(DATA)/mnist-test/3/*.png | head -1)

# Full-size ViT-B/32 (random weights) on every backend, then PyTorch on the same machine in the
# same run (needs Python; the reference virtualenv is created on first use).
bench: build
	$(BIN) bench
	tools/reference/run.sh bench_torch.py

# Regenerate the reference fixtures (needs Python; CI never does this).
fixtures:
	tools/reference/run.sh make_models.py
	tools/reference/run.sh make_tokens.py
	tools/reference/run.sh make_pixels.py

fmt:
	cargo fmt

clippy:
	cargo clippy --release --all-targets

clean:
	cargo clean
