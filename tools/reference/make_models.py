#!/usr/bin/env python3
"""Reference fixtures for the CLIP model: small random CLIPs in the Hugging Face layout and what
transformers computes with them.

Writes tests/fixtures/models/<name>/{config.json, model.safetensors, reference.json}. The Rust
tests compare our burn implementation against reference.json with no Python at test time.

Two configs that differ in activation (quick_gelu / gelu), patch size, image size, depth, width,
head count, EOT convention (eos_token_id 2 = legacy argmax) and storage dtype (f32 / f16). The
text towers keep the real 49,408-token vocabulary so the real tokenizer's ids work; they are
narrow to keep the fixtures small.

Run: tools/reference/run.sh make_models.py   (or any python with torch, transformers, pillow)
"""
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPTokenizerFast

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("DELTAENERGY_DATA", ROOT.parent / "shared" / "data"))
OUT = ROOT / "tests" / "fixtures" / "models"

CONFIGS = {
    "tiny-quickgelu-p8": dict(
        dtype=torch.float32,
        text=dict(hidden_size=8, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                  hidden_act="quick_gelu", eos_token_id=2),
        vision=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                    image_size=32, patch_size=8, hidden_act="quick_gelu"),
        projection_dim=16,
    ),
    "tiny-gelu-p16": dict(
        dtype=torch.float16,
        text=dict(hidden_size=16, intermediate_size=40, num_hidden_layers=3, num_attention_heads=4,
                  hidden_act="gelu", eos_token_id=49407),
        vision=dict(hidden_size=48, intermediate_size=96, num_hidden_layers=3, num_attention_heads=3,
                    image_size=48, patch_size=16, hidden_act="gelu"),
        projection_dim=24,
    ),
}

# Real images: PNG sources decode identically everywhere, so the end-to-end CLI test can use them.
IMAGES = [
    "mnist-test/3/00018.png" if (DATA / "mnist-test/3/00018.png").exists() else None,
    "cifar10/test/cat/0000.jpg" if (DATA / "cifar10/test/cat/0000.jpg").exists() else None,
    "imagenet-samples/n01440764_tench.jpg",
    "dtd/banded/banded_0002.jpg" if (DATA / "dtd/banded/banded_0002.jpg").exists() else None,
]

TEXTS = [
    "a photo of a cat.",
    "a blurry photo of the truck.",
    "An airplane, flying high above the clouds!",
    "it's a dog's life",
    "café naïve 東京 🐶",
    "",
    " ".join(["photograph"] * 90),  # truncated to 77 tokens, EOT kept last
]


def first_file(folder, suffix):
    files = sorted(p for p in (DATA / folder).rglob(f"*{suffix}"))
    return str(files[0].relative_to(DATA))


def image_list():
    picks = [p for p in IMAGES if p]
    if not any(p.startswith("mnist") for p in picks):
        picks.insert(0, first_file("mnist-test", ".png"))
    if not any(p.startswith("cifar10") for p in picks):
        picks.insert(1, first_file("cifar10/test", ".jpg"))
    if not any(p.startswith("dtd") for p in picks):
        picks.append(first_file("dtd", ".jpg"))
    picks.append(first_file("mnist-test/7", ".png"))
    return picks


def perturb_(model, gen):
    """transformers initialises LayerNorms to identity and some biases to zero; a test with
    those values cannot tell weight from bias, so give every parameter a random value."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "logit_scale":
                p.fill_(2.3)
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith("bias") or "class_embedding" in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif "position_embedding" in name or "token_embedding" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
            else:
                fan_in = p[0].numel() if p.dim() > 1 else p.numel()
                p.copy_(torch.randn(p.shape, generator=gen) / fan_in ** 0.5)


def build(name, spec, tokenizer):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(sum(map(ord, name)))
    config = CLIPConfig(text_config=dict(vocab_size=49408, max_position_embeddings=77, **spec["text"]),
                        vision_config=spec["vision"], projection_dim=spec["projection_dim"])
    model = CLIPModel(config).eval()
    perturb_(model, gen)
    if spec["dtype"] != torch.float32:
        # Round through the storage dtype so the f32 reference sees exactly the stored weights.
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.to(spec["dtype"]).to(torch.float32))

    out = OUT / name
    out.mkdir(parents=True, exist_ok=True)
    config_dict = config.to_dict()
    for k in ["transformers_version", "_name_or_path"]:
        config_dict.pop(k, None)
    (out / "config.json").write_text(json.dumps(config_dict, indent=2, sort_keys=True) + "\n")
    tensors = {k: v.detach().to(spec["dtype"]).contiguous() for k, v in model.state_dict().items()
               if not k.endswith("position_ids")}
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})

    size = spec["vision"]["image_size"]
    processor = CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    images = []
    with torch.no_grad():
        for rel in image_list():
            pil = Image.open(DATA / rel)
            pixels = processor(images=pil, return_tensors="pt")["pixel_values"]
            pooled = model.vision_model(pixel_values=pixels).pooler_output
            emb = model.visual_projection(pooled)[0]
            images.append({"source": rel, "pixel_values": pixels[0].flatten().tolist(),
                           "embedding": emb.tolist()})
        texts = []
        for text in TEXTS:
            ids = tokenizer(text, truncation=True, max_length=77)["input_ids"]
            # One text at a time: no padding or attention mask, so batching is ours to test.
            pooled = model.text_model(input_ids=torch.tensor([ids])).pooler_output
            emb = model.text_projection(pooled)[0]
            texts.append({"text": text, "ids": ids, "embedding": emb.tolist()})
    reference = {
        "model": name,
        "torch": torch.__version__,
        "image_size": size,
        "logit_scale": float(model.logit_scale.item()),
        "images": images,
        "texts": texts,
    }
    (out / "reference.json").write_text(json.dumps(reference) + "\n")
    print(f"{name}: {len(images)} images, {len(texts)} texts -> {out}")


def main():
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    tokenizer = CLIPTokenizerFast.from_pretrained(str(DATA / "clip-tokenizer"))
    names = sys.argv[1:] or list(CONFIGS)
    for name in names:
        build(name, CONFIGS[name], tokenizer)


if __name__ == "__main__":
    main()
