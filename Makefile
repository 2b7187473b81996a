# One command each: `make demo` (build, then run the demo), `make test` (everything CI runs).
SHELL := bash
DATA ?= $(abspath ../shared/data)
export DELTAENERGY_DATA ?= $(DATA)
BIN := target/release/deltaenergy
FIXTURE := tests/fixtures/models/tiny-quickgelu-p8

.PHONY: all build test test-native test-wasm demo bench quant-report fuzz fixtures fmt clippy clean

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

# Bundle sizes and accuracy at every precision for the full-size configs (seeded random
# weights), against the f32 bundle on a few hundred real images. Writes to $(REPORT).
REPORT ?= /tmp/deltaenergy-report
CLASSES := airplane,automobile,bird,cat,deer,dog,frog,horse,ship,truck
quant-report: build
	mkdir -p $(REPORT)
	for cfg in config config-b16; do for q in f32 f16 q8 q4; do \
	  $(BIN) convert --random $(DATA)/clip-tokenizer/$$cfg.json --tokenizer $(DATA)/clip-tokenizer \
	    --quant $$q --classes $(CLASSES) --out $(REPORT)/$$cfg-$$q.bundle | head -1; done; done
	for q in f16 q8 q4; do echo "== ViT-B/32 $$q against f32"; \
	  $(BIN) compare --base $(REPORT)/config-f32.bundle --model $(REPORT)/config-$$q.bundle --classes $(CLASSES) \
	    --per-dir 60 $(DATA)/cifar10/test $(DATA)/imagenet-samples $(DATA)/dtd $(DATA)/mnist-test $(DATA)/gallery; done

# Fuzz the bundle reader (cargo install cargo-fuzz; stable Rust with RUSTC_BOOTSTRAP). FUZZ_SECONDS.
FUZZ_SECONDS ?= 600
fuzz: build
	fuzz/seed.sh
	cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -O --sanitizer none bundle_reader corpus/bundle_reader -- \
	  -max_total_time=$(FUZZ_SECONDS) -max_len=600000

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
