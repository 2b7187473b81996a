#!/usr/bin/env bash
# Seeds the fuzz corpus with small real bundles (without their preamble, as the target expects).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p fuzz/corpus/bundle_reader
for q in f32 q8 q4; do
  ./target/release/deltaenergy convert --random fuzz/seed-config.json --quant "$q" \
    --tokenizer "${DELTAENERGY_DATA:-../shared/data}/clip-tokenizer" \
    --threshold 1 --out "/tmp/seed-$q.bundle" >/dev/null
  # Drop magic+version (12 bytes), keep header length, drop the 32-byte checksum.
  { dd if="/tmp/seed-$q.bundle" bs=1 skip=12 count=4 status=none; tail -c +49 "/tmp/seed-$q.bundle"; } \
    > "fuzz/corpus/bundle_reader/seed-$q"
done

# The checkpoint reader's seeds: a first byte picks the reader (0 config, 1 tokenizer, 2 weights).
ck=fuzz/corpus/checkpoint_reader
mkdir -p "$ck" /tmp/seed-images/a /tmp/seed-images/b
cp www/samples/cat.jpg /tmp/seed-images/a/ && cp www/samples/ship.jpg /tmp/seed-images/b/
./target/release/deltaenergy train --config fuzz/seed-config.json --data /tmp/seed-images --max-steps 0 \
  --batch 2 --out /tmp/seed-checkpoint >/dev/null 2>&1
{ printf '\x00'; cat fuzz/seed-config.json; } > "$ck/config-seed"
{ printf '\x00'; cat tests/fixtures/models/tiny-gelu-p16/config.json; } > "$ck/config-fixture"
{ printf '\x01'; printf '{"model": {"type": "BPE", "merges": ["i n", ["t", "h"], "a n"]}}'; } > "$ck/tokenizer-json"
{ printf '\x01'; printf '#version: 0.2\ni n\nt h\n'; } > "$ck/merges-txt"
{ printf '\x02'; cat /tmp/seed-checkpoint/model.safetensors; } > "$ck/weights"
# The same weights in torch.save's layout, and torch's own small files (views, legacy, …).
node tests/e2e/torch-bin.mjs /tmp/seed-checkpoint/model.safetensors /tmp/seed-checkpoint/pytorch_model.bin >/dev/null
{ printf '\x02'; cat /tmp/seed-checkpoint/pytorch_model.bin; } > "$ck/weights-bin"
for f in tests/fixtures/torch/*.bin; do
  { printf '\x02'; cat "$f"; } > "$ck/torch-$(basename "$f" .bin)"
done
