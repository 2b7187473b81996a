# One command each: `make demo` (build the page and serve it) and `make test` (everything CI runs,
# after installing what the tests need). Each step prints the time it took.
SHELL := bash
# The data set (tests/README.md): `make DATA=…` wins, then $DELTAENERGY_DATA, then ../shared/data
# when it exists. Without one, the tests that need it say so and skip; a DATA or
# DELTAENERGY_DATA that is given must exist. (Simply expanded: defined recursively through each
# other the two variables would loop.)
ifdef DATA
export DELTAENERGY_DATA := $(abspath $(DATA))
else ifdef DELTAENERGY_DATA
DATA := $(DELTAENERGY_DATA)
export DELTAENERGY_DATA
else ifneq ($(wildcard ../shared/data),)
export DELTAENERGY_DATA := $(abspath ../shared/data)
DATA := $(DELTAENERGY_DATA)
endif
BIN := target/release/deltaenergy
FIXTURE := tests/fixtures/models/tiny-quickgelu-p8
FIXTURE_F16 := tests/fixtures/models/tiny-gelu-p16
TIMED := tools/timed

.PHONY: all build setup-demo setup-test lint test test-aarch64 test-native test-wasm-kernels test-wasm test-e2e web package demo demo-model demo-bundle study bench bench-web quant-report fuzz fixtures fmt clippy clean

all: build

build:
	$(TIMED) "native release build (the CLI)" cargo build --release

setup-demo:
	@tools/setup.sh demo

setup-test:
	@tools/setup.sh test

# Tests run in release: the flex CPU backend is ~100x slower unoptimised.
test: setup-test lint test-native test-wasm-kernels test-e2e

# Formatting and lints hold the line (warnings are errors).
lint:
	$(TIMED) "cargo fmt --check" cargo fmt --check
	$(TIMED) "cargo clippy (all targets, warnings are errors)" cargo clippy --release --all-targets -- -D warnings
	@rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
	$(TIMED) "cargo clippy (the wasm build, src/web/)" cargo clippy --profile wasm --lib --target wasm32-unknown-unknown --features fusion -- -D warnings
	# The threaded build's code (web/pool.rs) on stable: its atomics and build-std only change codegen.
	$(TIMED) "cargo clippy (the threaded wasm build's code)" cargo clippy --profile wasm --lib --target wasm32-unknown-unknown \
	  --no-default-features --features threads -- -D warnings
	# The NEON kernel (src/clip/qmatmul/neon.rs) compiles only for AArch64; `make test-aarch64` runs it.
	@rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu
	$(TIMED) "cargo clippy (AArch64: the NEON kernel and its tests)" cargo clippy --release --lib --tests \
	  --target aarch64-unknown-linux-gnu -- -D warnings
	# The wasm32 kernels on their own, with and without relaxed SIMD (tools/wasm-kernels).
	cargo fmt --check --manifest-path $(KERNELS)/Cargo.toml
	$(TIMED) "cargo clippy (wasm32 int8 kernels, relaxed SIMD)" env $(KERNELS_ENV) cargo clippy \
	  --manifest-path $(KERNELS)/Cargo.toml --release --target wasm32-unknown-unknown --features relaxed-simd -- -D warnings

# The int8 kernels' tests on AArch64, under qemu (not in `make test`: cross-building the crate
# takes about 6 minutes here). Needs Debian's qemu-user, gcc-aarch64-linux-gnu and
# libc6-dev-arm64-cross.
AARCH64 := CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
  CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
test-aarch64:
	@rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu
	$(TIMED) "qmatmul's tests on AArch64 (qemu)" env $(AARCH64) cargo test --release \
	  --target aarch64-unknown-linux-gnu --no-default-features --lib clip::qmatmul

test-native:
	$(TIMED) "native tests (cargo test --release)" cargo test --release

# The wasm32 int8 kernels against the portable one under node, in a module of their own built
# twice: plain SIMD128 and relaxed SIMD (tools/wasm-kernels).
KERNELS := tools/wasm-kernels
KERNELS_ENV := CARGO_TARGET_DIR=target/wasm-kernels RUSTFLAGS=-Ctarget-feature=+simd128
KERNELS_WASM := target/wasm-kernels/wasm32-unknown-unknown/release/wasm_kernels.wasm
test-wasm-kernels:
	@rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
	env $(KERNELS_ENV) cargo build -q --manifest-path $(KERNELS)/Cargo.toml --release --target wasm32-unknown-unknown
	cp $(KERNELS_WASM) target/wasm-kernels/simd128.wasm
	env $(KERNELS_ENV) cargo build -q --manifest-path $(KERNELS)/Cargo.toml --release --target wasm32-unknown-unknown \
	  --features relaxed-simd
	cp $(KERNELS_WASM) target/wasm-kernels/relaxed.wasm
	$(TIMED) "wasm32 int8 kernels against the portable one (node)" node --experimental-wasm-relaxed-simd \
	  $(KERNELS)/check.mjs target/wasm-kernels/simd128.wasm target/wasm-kernels/relaxed.wasm

# The library must keep compiling for the browser.
test-wasm:
	@rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
	$(TIMED) "wasm build (profile wasm: size-optimised, fat LTO)" cargo build --profile wasm --lib --target wasm32-unknown-unknown

# pkg/: the wasm-bindgen output (ES module + .wasm + TypeScript types), usable by other web apps;
# www/: the static site (any file server can serve it), with pkg/ copied in and the committed
# demo model as its default. Builds no native code (tools/web/build.sh).
web: setup-demo
	@tools/web/build.sh

# pkg/ as an npm package: the JavaScript checked against its JSDoc types, which tsc emits as
# pkg/types/*.d.ts, then `npm pack` (target/package/deltaenergy-VERSION.tgz).
TSC := tools/web/node_modules/.bin/tsc
PACKAGE = target/package/deltaenergy-$(shell node -p "require('./pkg/package.json').version").tgz
package: web
	@test -x $(TSC) || (cd tools/web && npm ci --no-audit --no-fund --loglevel=error)
	rm -rf pkg/types
	$(TIMED) "tsc: check pkg/ and emit its types" bash -c "$(TSC) -p pkg/tsconfig.json && $(TSC) -p pkg/tsconfig.worker.json"
	mkdir -p target/package && cd pkg && npm pack --silent --pack-destination ../target/package

PORT ?= 8080
E2E := tests/e2e
# The settings of the page = CLI tuning test; tests/e2e/tune.test.mjs passes the same ones.
TUNE_E2E := --shots 4 --calibration 4 --epochs 5 --batch 8 --lambda 1 --validation-outliers 16 --seed 3
IMPORT := target/e2e-import
# The page in Debian's headless Chromium, on WebGPU (SwiftShader) and on the CPU, compared with
# the CLI on the same bundle and images; imports from files and from the stand-in Hub; presets;
# then the packed package in a plain app of its own (examples/basic).
test-e2e: build package
	$(BIN) score --json --model www/models/default.bundle www/samples/cat.jpg www/samples/blotchy.jpg \
	  | node $(E2E)/expected.mjs > $(E2E)/expected.json
	$(BIN) score --json --activations u7 --model www/models/default.bundle www/samples/cat.jpg \
	  | node $(E2E)/expected.mjs > $(E2E)/expected-u7.json
	# A Hugging Face checkpoint for the page's import (the random-weight fixture, the demo
	# bundle's tokenizer), and what the CLI makes of it.
	rm -rf $(IMPORT) && mkdir -p $(IMPORT)/checkpoint $(IMPORT)/checkpoint-bin
	node $(E2E)/tokenizer-of.mjs www/models/cifar-clip.q8.bundle $(IMPORT)
	cp $(FIXTURE)/config.json $(FIXTURE)/model.safetensors $(IMPORT)/merges.txt $(IMPORT)/checkpoint/
	# The same weights as torch.save wrote them (tools/reference/make_torch_bins.py), and a file
	# that is not them, for the stand-in Hub's pull requests that must not be read.
	cp $(FIXTURE)/config.json $(FIXTURE)/pytorch_model.bin $(IMPORT)/merges.txt $(IMPORT)/checkpoint-bin/
	echo 'not these weights' > $(IMPORT)/not-these-weights.safetensors
	$(BIN) convert --hf $(FIXTURE) --tokenizer $(IMPORT)/bpe.txt.gz --quant q8 --classes $(CLASSES) --out $(IMPORT)/cli.bundle
	$(BIN) score --json --model $(IMPORT)/cli.bundle www/samples/cat.jpg | node $(E2E)/expected.mjs > $(IMPORT)/expected.json
	# The second config (GELU, patch 16, legacy EOT), stored in f16 by transformers, at f16.
	mkdir -p $(IMPORT)/checkpoint-f16
	cp $(FIXTURE_F16)/config.json $(FIXTURE_F16)/model.safetensors $(IMPORT)/merges.txt $(IMPORT)/checkpoint-f16/
	$(BIN) convert --hf $(FIXTURE_F16) --tokenizer $(IMPORT)/bpe.txt.gz --quant f16 --classes $(CLASSES) --out $(IMPORT)/cli-f16.bundle
	$(BIN) score --json --model $(IMPORT)/cli-f16.bundle www/samples/cat.jpg | node $(E2E)/expected.mjs > $(IMPORT)/expected-f16.json
	# ViT-B/32's shapes (the real config, one layer a tower: 155 MB of f32) with random weights
	# from the CLI's own Hugging Face writer, for the Hub import.
	rm -rf $(IMPORT)/b32-data && mkdir -p $(IMPORT)/b32-data/cat $(IMPORT)/b32-data/ship
	cp www/samples/cat.jpg www/samples/tabby.jpg $(IMPORT)/b32-data/cat/
	cp www/samples/ship.jpg www/samples/airplane.jpg $(IMPORT)/b32-data/ship/
	$(BIN) train --config tests/fixtures/configs/vit-b32-1layer.json --data $(IMPORT)/b32-data --max-steps 0 \
	  --seed 0 --out $(IMPORT)/checkpoint-b32 > /dev/null
	cp $(IMPORT)/merges.txt $(IMPORT)/checkpoint-b32/
	$(BIN) convert --hf $(IMPORT)/checkpoint-b32 --tokenizer $(IMPORT)/bpe.txt.gz --quant q8 --classes $(CLASSES) \
	  --out $(IMPORT)/cli-b32.bundle
	# The same weights as a pytorch_model.bin in torch.save's layout, which the page imports from
	# the stand-in Hub and must score as the CLI scores the safetensors.
	mkdir -p $(IMPORT)/checkpoint-b32-bin
	cp $(IMPORT)/checkpoint-b32/config.json $(IMPORT)/merges.txt $(IMPORT)/checkpoint-b32-bin/
	node $(E2E)/torch-bin.mjs $(IMPORT)/checkpoint-b32/model.safetensors $(IMPORT)/checkpoint-b32-bin/pytorch_model.bin
	$(BIN) score --json --model $(IMPORT)/cli-b32.bundle www/samples/cat.jpg | node $(E2E)/expected.mjs > $(IMPORT)/expected-b32.json
	# The demo model with CLIP's 80 templates (the page's "CLIP's 80 templates" choice).
	$(BIN) score --json --model www/models/default.bundle --templates www/presets/cifar-10.json www/samples/cat.jpg \
	  | node $(E2E)/expected.mjs > $(IMPORT)/expected-ensemble.json
	# Prompt tuning (tune.test.mjs): the CLI tunes the demo model on three classes of cifar10/test
	# (the first 8 pictures of each: 4 shots, 4 to calibrate), which the page must match. Without
	# the data set the test says so and skips.
	rm -rf $(IMPORT)/tune-data
	if [ -d "$(DATA)/cifar10/test" ]; then \
	  for c in airplane cat ship; do \
	    mkdir -p $(IMPORT)/tune-data/$$c; \
	    ls $(DATA)/cifar10/test/$$c | LC_ALL=C sort | head -8 | sed "s|^|$(DATA)/cifar10/test/$$c/|" \
	      | xargs cp -t $(IMPORT)/tune-data/$$c/; \
	  done; \
	  $(BIN) tune --model www/models/default.bundle --train $(IMPORT)/tune-data $(TUNE_E2E) \
	    --out $(IMPORT)/cli-tuned.bundle > $(IMPORT)/cli-tuned.json; \
	  $(BIN) score --json --model $(IMPORT)/cli-tuned.bundle www/samples/cat.jpg www/samples/blotchy.jpg \
	    | node $(E2E)/expected.mjs > $(IMPORT)/expected-tuned.json; \
	fi
	# One file a concern, one at a time (Chromium on two cores); NAME=… runs the tests whose name
	# matches (node:test's --test-name-pattern), e.g. make test-e2e NAME=Hub.
	E2E_ID_IMAGE=www/samples/cat.jpg E2E_OOD_IMAGE=www/samples/blotchy.jpg E2E_IMPORT=$(IMPORT) \
	  E2E_EXPECTED_U7=$(E2E)/expected-u7.json \
	  E2E_EXPECTED=$(E2E)/expected.json E2E_PACKAGE=$(PACKAGE) \
	  $(TIMED) "browser tests (node:test, Chromium: the page on WebGPU and the CPU, imports, the Hub, presets, the package)" \
	  node --test --test-concurrency=1 --test-reporter=spec $(if $(NAME),--test-name-pattern='$(NAME)') $(E2E)/*.test.mjs

# The page's default model is the committed demo model (www/models/cifar-clip.q8.bundle).
demo: web
	@echo "serving the page on http://127.0.0.1:$(PORT) (Ctrl-C stops)"
	node $(E2E)/server.mjs --port $(PORT) --root www

# The demo model from scratch, on the CPU in about an hour on 2 cores (on a good day), seeded (and
# reproducible bit for bit for a given number of replicas, one per core by default):
# 1. train a small CLIP on cifar10/train (both halves of CLIP's loss), holding out the first 200
#    images of each class, from which tune takes its 16 shots and 100 calibration images;
# 2. fine-tune it two epochs with synthetic outliers (outlier exposure, see src/train/outliers.rs);
# 3. from its q8 weights, three more epochs of outlier exposure on 1,700 images a class with the
#    strokes family added (what lets it flag digits);
# 4. from its q8 weights, three epochs on all 48,000 images with styled captions (`--styles`: half
#    the pictures greyed, darkened, brightened, blurred or inverted and captioned so), which teach
#    the text tower to read the words before the class name, the context prompt tuning learns;
# 5. convert stages 1 and 4 to q8 (the first one is the study's "no outliers" baseline) and tune
#    EBM context vectors (METHOD.md's defaults); ΔEnergy's c and τ are chosen, and its threshold
#    calibrated at 95% TPR, on a validation split: 100 held-out images per class and 1,000
#    generated outliers of two families held out of training (no evaluation set).
DEMO_MODEL := www/models/cifar-clip.q8.bundle
DEMO_WORK ?= target/demo-model
DEMO_EPOCHS ?= 22
DEMO_DATA := --data $(DATA)/cifar10/train --eval $(DATA)/cifar10/test --hold-out 200 --text-to-image 0.5
DEMO_TRAIN := $(DEMO_DATA) --seed 0
demo-model: build
	$(BIN) train --config tools/train/cifar-clip.json --epochs $(DEMO_EPOCHS) $(DEMO_TRAIN) --out $(DEMO_WORK)/clip
	$(BIN) train --init $(DEMO_WORK)/clip --epochs 2 --lr 5e-4 --warmup 20 --outliers 16 $(DEMO_TRAIN) \
	  --out $(DEMO_WORK)/clip-oe4
	$(BIN) convert --hf $(DEMO_WORK)/clip-oe4 --tokenizer $(DATA)/clip-tokenizer --quant q8 --classes $(CLASSES) \
	  --out $(DEMO_WORK)/oe4.q8.bundle
	$(BIN) train --init $(DEMO_WORK)/oe4.q8.bundle --epochs 3 --lr 5e-4 --warmup 20 --outliers 16 \
	  --outlier-kinds shuffled,dead-leaves,noise,fractal,strokes $(DEMO_DATA) --per-class 1700 --seed 1 \
	  --out $(DEMO_WORK)/clip-oe
	$(BIN) convert --hf $(DEMO_WORK)/clip-oe --tokenizer $(DATA)/clip-tokenizer --quant q8 --classes $(CLASSES) \
	  --out $(DEMO_WORK)/oe.q8.bundle
	$(BIN) train --init $(DEMO_WORK)/oe.q8.bundle --epochs 3 --lr 1e-3 --warmup 20 --outliers 16 \
	  --outlier-kinds shuffled,dead-leaves,noise,fractal,strokes $(DEMO_DATA) --styles --seed 1 \
	  --out $(DEMO_WORK)/clip-styles
	$(MAKE) demo-bundle DEMO_WORK=$(DEMO_WORK)

# The page's model from the trained stages in $(DEMO_WORK)/clip and clip-styles: make demo-model's,
# or those a GPU run returned (tools/gpu/train.sh): q8 bundles of both, then EBM tuning and the
# validation split's choices.
demo-bundle: build
	$(BIN) convert --hf $(DEMO_WORK)/clip --tokenizer $(DATA)/clip-tokenizer --quant q8 --classes $(CLASSES) \
	  --out $(DEMO_WORK)/no-outliers.q8.bundle
	$(BIN) convert --hf $(DEMO_WORK)/clip-styles --tokenizer $(DATA)/clip-tokenizer --quant q8 --classes $(CLASSES) \
	  --out $(DEMO_WORK)/base.q8.bundle
	$(BIN) tune --model $(DEMO_WORK)/base.q8.bundle --train $(DATA)/cifar10/train --shots 16 --lambda 1 \
	  --seed 0 --out $(DEMO_MODEL)

# The study's tables (docs/study/) (zero-shot vs CoOp vs EBM, four scores, ablations) on the demo model.
# With $(DEMO_WORK)/no-outliers.q8.bundle (left by make demo-model) it also scores the model
# before outlier exposure.
study: build
	tools/study/run.sh $(DEMO_MODEL) $(wildcard $(DEMO_WORK)/no-outliers.q8.bundle)

# The benchmarks' weights: one seeded random ViT-B/32, written by tools/reference/export_onnx.py
# as safetensors (converted to our bundles) and as ONNX fp32 + q8 (ONNX Runtime, transformers.js),
# so every side runs the same network. Needs Python (the reference virtualenv, made on first use).
BENCH := target/bench/b32
BENCH_CLASSES := airplane,automobile,bird,cat,deer,dog,frog,horse,ship,truck
$(BENCH)/hf/model.safetensors:
	$(TIMED) "export the benchmark weights (safetensors + ONNX)" \
	  tools/reference/run.sh export_onnx.py --config $(DATA)/clip-tokenizer/config.json --out $(BENCH) --seed 0
$(BENCH)/ours.%.bundle: $(BENCH)/hf/model.safetensors | build
	$(BIN) convert --hf $(BENCH)/hf --tokenizer $(DATA)/clip-tokenizer --quant $* --classes $(BENCH_CLASSES) --out $@

# The CPU image and text towers natively at batch 1 and 8: ours at f32 and q8 (activations i16,
# i8, then u7), then PyTorch and ONNX Runtime (fp32, q8) on the same weights, in one run; then the
# image tower against ONNX Runtime in rounds, each ratio within a round (tools/profile/
# bench-rounds.sh, ROUNDS=3); then where our q8 image tower's time goes, by operation
# (tools/profile/perf-ops.sh, where perf is).
bench: build $(BENCH)/ours.f32.bundle $(BENCH)/ours.q8.bundle
	$(BIN) bench --model $(BENCH)/ours.f32.bundle --backends cpu
	$(BIN) bench --model $(BENCH)/ours.q8.bundle --backends cpu
	$(BIN) bench --model $(BENCH)/ours.q8.bundle --backends cpu --activations i8
	$(BIN) bench --model $(BENCH)/ours.q8.bundle --backends cpu --activations u7
	tools/reference/run.sh bench_ref.py --hf $(BENCH)/hf --onnx $(BENCH)/tjs/onnx
	tools/profile/bench-rounds.sh $(BENCH)
	@if command -v perf >/dev/null; then for a in i16 i8 u7; do \
	  echo "== where the q8 image tower's time goes, batch 1, activations $$a (perf)"; \
	  tools/profile/perf-ops.sh $(BENCH)/ours.q8.bundle image 1 --activations $$a; done; \
	else echo "perf is not installed: no per-operation breakdown"; fi

# The page's CPU path against transformers.js in headless Chromium (tools/web/bench-web.sh), then
# where the page's time goes at one thread, by function (tools/profile/profile-web.sh).
bench-web: web $(BENCH)/ours.q8.bundle
	tools/web/bench-web.sh $(BENCH)
	tools/profile/profile-web.sh $(BENCH)

# Bundle sizes and accuracy at every precision for the full-size configs (seeded random
# weights), against the f32 bundle on a few hundred real images; q8-a8 and q4-a8 are the int8
# bundles with the CPU's activations in i8 (W8A8), q8-a7 with them in u7. Writes to $(REPORT).
REPORT ?= /tmp/deltaenergy-report
CLASSES := airplane,automobile,bird,cat,deer,dog,frog,horse,ship,truck
quant-report: build
	mkdir -p $(REPORT)
	for cfg in config config-b16; do for q in f32 f16 q8 q4; do \
	  $(BIN) convert --random $(DATA)/clip-tokenizer/$$cfg.json --tokenizer $(DATA)/clip-tokenizer \
	    --quant $$q --classes $(CLASSES) --out $(REPORT)/$$cfg-$$q.bundle | head -1; done; done
	for q in f16 q8 q4 q8-a8 q4-a8 q8-a7; do echo "== ViT-B/32 $$q against f32"; \
	  $(BIN) compare --base $(REPORT)/config-f32.bundle --model $(REPORT)/config-$${q%-a?}.bundle --classes $(CLASSES) \
	    $$(case $$q in *-a8) echo --activations i8;; *-a7) echo --activations u7;; esac) \
	    --per-dir 60 $(DATA)/cifar10/test $(DATA)/imagenet-samples $(DATA)/dtd $(DATA)/mnist-test $(DATA)/gallery; done

# Fuzz what a stranger's file reaches: the bundle reader, and the checkpoint import's readers
# (config.json, tokenizer files, safetensors and pytorch_model.bin read range by range). cargo install cargo-fuzz; stable Rust with
# RUSTC_BOOTSTRAP. FUZZ_RUNS runs per target (libFuzzer prints the count).
FUZZ_RUNS ?= 1000000
fuzz: build
	fuzz/seed.sh
	cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -O --sanitizer none bundle_reader corpus/bundle_reader -- \
	  -runs=$(FUZZ_RUNS) -max_len=600000
	cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -O --sanitizer none checkpoint_reader corpus/checkpoint_reader -- \
	  -runs=$(FUZZ_RUNS) -max_len=300000

# Regenerate the reference fixtures (needs Python; CI never does this).
fixtures:
	tools/reference/run.sh make_models.py
	tools/reference/run.sh make_torch_bins.py
	tools/reference/run.sh make_tokens.py
	tools/reference/run.sh make_pixels.py

fmt:
	cargo fmt

clippy:
	cargo clippy --release --all-targets -- -D warnings

clean:
	cargo clean
