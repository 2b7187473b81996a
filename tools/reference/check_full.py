#!/usr/bin/env python3
"""By-hand check (not CI) of the full-size CLIP against transformers: builds the real ViT-B/32
(or --config) with seeded random weights in the Hugging Face layout, runs transformers on real
images and texts, runs `deltaenergy embed` on the same files, and prints the agreement.

Images are re-encoded to PNG first so both sides decode identical pixels: this measures the
model, not the JPEG decoders (tests/integration/preprocess.rs measures those).

Run: cargo build --release && tools/reference/run.sh check_full.py [--config PATH] [--out DIR]
"""
import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPTokenizerFast

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("DELTAENERGY_DATA", ROOT.parent / "shared" / "data"))
IMAGES = ["gallery/n02123045_tabby.JPEG", "imagenet-samples/n01440764_tench.jpg",
          "cifar10/test/cat/0000.jpg", "dtd/banded/banded_0002.jpg"]
TEXTS = ["a photo of a cat.", "a photo of a tench, a kind of fish.", "banded texture", "café 東京 🐶"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(DATA / "clip-tokenizer" / "config.json"))
    ap.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "deltaenergy-full-random"))
    ap.add_argument("--backend", default="cpu")
    args = ap.parse_args()
    out = Path(args.out)
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig.from_json_file(args.config)).eval()
    model.save_pretrained(out, safe_serialization=True)
    size = model.config.vision_config.image_size
    processor = CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    tokenizer = CLIPTokenizerFast.from_pretrained(str(DATA / "clip-tokenizer"))

    pngs = []
    for rel in IMAGES:
        png = out / (Path(rel).stem + ".png")
        Image.open(DATA / rel).convert("RGB").save(png)
        pngs.append(png)
    mnist = sorted((DATA / "mnist-test" / "3").glob("*.png"))[0]
    pngs.append(mnist)

    want = []
    with torch.inference_mode():
        for png in pngs:
            px = processor(images=Image.open(png), return_tensors="pt")["pixel_values"]
            want.append(model.visual_projection(model.vision_model(pixel_values=px).pooler_output)[0].numpy())
        for t in TEXTS:
            ids = torch.tensor([tokenizer(t, truncation=True, max_length=77)["input_ids"]])
            want.append(model.text_projection(model.text_model(input_ids=ids).pooler_output)[0].numpy())

    cmd = [str(ROOT / "target" / "release" / "deltaenergy"), "embed", "--json", "--model", str(out),
           "--backend", args.backend, "--tokenizer", str(DATA / "clip-tokenizer")]
    for p in pngs:
        cmd += ["--image", str(p)]
    for t in TEXTS:
        cmd += ["--text", t]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    got = [np.array(json.loads(l)["embedding"]) for l in res.stdout.splitlines()]
    names = [p.name for p in pngs] + TEXTS
    worst_cos, worst_abs = 1.0, 0.0
    for name, g, w in zip(names, got, want):
        w = w.astype(np.float64)
        gn, wn = g / np.linalg.norm(g), w / np.linalg.norm(w)
        cos, mx = float(gn @ wn), float(np.abs(gn - wn).max())
        worst_cos, worst_abs = min(worst_cos, cos), max(worst_abs, mx)
        print(f"{name:40s} cosine {cos:.9f}  max abs {mx:.2e}")
    print(f"worst: cosine {worst_cos:.9f}, max abs {worst_abs:.2e} ({args.backend}, {len(names)} inputs)")


if __name__ == "__main__":
    main()
