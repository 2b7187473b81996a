"""The demo recipe's training step in PyTorch, to put `deltaenergy train`'s speed beside it.

transformers' CLIPModel of tools/train/cifar-clip.json, AdamW, `--steps` steps at batch 128 on
random pixels against 120 captions of 32 tokens (the demo recipe's 12 templates x 10 classes at
its context length), both halves of CLIP's loss. It measures the arithmetic, not the data
pipeline. Time the two as whole processes in turn, e.g. with /usr/bin/time -v:
  target/release/deltaenergy train --config tools/train/cifar-clip.json \
    --data $DATA/cifar10/train --per-class 500 --text-to-image 0.5 --max-steps 40 --replicas 2 --out /tmp/speed
  tools/reference/.venv/bin/python tools/reference/train_speed_ref.py --steps 40
"""
import argparse
import json

import torch
from transformers import CLIPConfig, CLIPModel

p = argparse.ArgumentParser()
p.add_argument("--config", default="tools/train/cifar-clip.json")
p.add_argument("--steps", type=int, default=40)
p.add_argument("--threads", type=int, default=2)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
cfg = json.load(open(a.config))
model = CLIPModel(CLIPConfig(text_config=cfg["text_config"], vision_config=cfg["vision_config"],
                             projection_dim=cfg["projection_dim"]))
opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
ids = torch.randint(0, cfg["text_config"]["vocab_size"] - 1, (120, cfg["text_config"]["max_position_embeddings"]))
size = cfg["vision_config"]["image_size"]
for _ in range(a.steps):
    x = torch.randn(128, 3, size, size)
    out = model(input_ids=ids, pixel_values=x)
    target = torch.randint(0, 120, (128,))
    loss = (torch.nn.functional.cross_entropy(out.logits_per_image, target)
            + torch.nn.functional.cross_entropy(out.logits_per_text[:, :32].T, torch.arange(32))) / 2
    opt.zero_grad()
    loss.backward()
    opt.step()
