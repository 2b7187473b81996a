#!/usr/bin/env python3
"""A ViT-B/32 with seeded random weights, written by transformers/torch in both of the Hub's
weight files: DIR/safetensors/model.safetensors and DIR/bin/pytorch_model.bin (torch.save of the
state dict, with the int64 position_ids buffers openai/clip-vit-base-patch32's 2021 file
carries), each beside the real config and tokenizer. For timing the two imports against each
other (docs/PERFORMANCE.md); never used by CI.

Run: tools/reference/run.sh make_b32_checkpoints.py --out DIR
"""
import argparse
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import CLIPConfig, CLIPModel

from make_torch_bins import as_2021_state_dict

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("DELTAENERGY_DATA", ROOT.parent / "shared" / "data"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    tokenizer = DATA / "clip-tokenizer"
    model = CLIPModel(CLIPConfig.from_pretrained(str(tokenizer))).eval()
    state = model.state_dict()
    for kind in ["safetensors", "bin"]:
        out = args.out / kind
        out.mkdir(parents=True, exist_ok=True)
        for f in ["config.json", "merges.txt", "vocab.json", "tokenizer.json"]:
            shutil.copy(tokenizer / f, out / f)
    save_file({k: v.contiguous() for k, v in state.items()}, str(args.out / "safetensors" / "model.safetensors"),
              metadata={"format": "pt"})
    torch.save(as_2021_state_dict(state), str(args.out / "bin" / "pytorch_model.bin"))
    for kind, name in [("safetensors", "model.safetensors"), ("bin", "pytorch_model.bin")]:
        print(f"{args.out / kind / name}: {(args.out / kind / name).stat().st_size} bytes")


if __name__ == "__main__":
    main()
