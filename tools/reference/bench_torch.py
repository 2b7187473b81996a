#!/usr/bin/env python3
"""PyTorch timings of the CLIP towers, the anchor for `deltaenergy bench` (same config, random
weights, same batches, same 77-token texts, medians of timed runs after one warm-up).

Run: tools/reference/run.sh bench_torch.py [--config PATH] [--iters 5] [--batches 1,8]
"""
import argparse
import os
import statistics
import time
from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPModel

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("DELTAENERGY_DATA", ROOT.parent / "shared" / "data"))


def timed(fn, iters):
    fn()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times), min(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(DATA / "clip-tokenizer" / "config.json"))
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--text-len", type=int, default=77)
    args = ap.parse_args()
    torch.manual_seed(0)
    config = CLIPConfig.from_json_file(args.config)
    model = CLIPModel(config).eval()
    v = config.vision_config
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; config {args.config}; "
          f"{args.iters} timed runs, medians in ms")
    print(f"{'backend':<8} {'tower':<6} {'batch':>5} {'median_ms':>12} {'min_ms':>12} {'ms/item':>12}")
    with torch.inference_mode():
        for b in map(int, args.batches.split(",")):
            pixels = torch.randn(b, v.num_channels, v.image_size, v.image_size)
            ids = torch.randint(256, 49000, (b, args.text_len))
            ids[:, 0], ids[:, -1] = 49406, 49407
            image = timed(lambda: model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output), args.iters)
            text = timed(lambda: model.text_projection(model.text_model(input_ids=ids).pooler_output), args.iters)
            for tower, (med, mn) in [("image", image), ("text", text)]:
                print(f"{'torch':<8} {tower:<6} {b:>5} {med:>12.1f} {mn:>12.1f} {med / b:>12.1f}")


if __name__ == "__main__":
    main()
