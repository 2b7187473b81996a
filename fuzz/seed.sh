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
