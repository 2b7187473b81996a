#!/usr/bin/env python3
"""One random-weight CLIP, written twice: for our converter and for transformers.js.

    OUT/hf/   config.json + model.safetensors   -> `deltaenergy convert --hf OUT/hf ...`
    OUT/tjs/  the layout transformers.js v3 loads as a local model (like Xenova/clip-vit-*):
              config.json, preprocessor_config.json, tokenizer files,
              onnx/{vision,text}_model.onnx          (dtype 'fp32')
              onnx/{vision,text}_model_quantized.onnx (dtype 'q8', the wasm default)

Both sides get the very same weights (torch.manual_seed(SEED) before CLIPModel(config)), so
tools/web/tjs-bench/run.mjs and tests/e2e/bench.mjs time the same network.

The 8-bit files follow transformers.js's own scripts/quantize.py convention: dynamic
quantization of MatMul/Gather (+ Conv) weights, uint8 weights when the graph has a Conv (the
vision patch embedding: onnxruntime-web has no ConvInteger for int8 weights), int8 otherwise.

Run: tools/reference/run.sh export_onnx.py --config CONFIG.json --out DIR [--seed 0]
     (needs requirements-onnx.txt installed into the same venv)
"""
import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from transformers import CLIPConfig, CLIPModel

ROOT = Path(__file__).resolve().parents[2]
TOKENIZER = ROOT.parent / "shared" / "data" / "clip-tokenizer"
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt"]


class Vision(torch.nn.Module):
    """pixel_values -> (image_embeds, last_hidden_state): the outputs Xenova's vision_model.onnx has."""

    def __init__(self, clip):
        super().__init__()
        self.vision, self.proj = clip.vision_model, clip.visual_projection

    def forward(self, pixel_values):
        out = self.vision(pixel_values=pixel_values)
        return self.proj(out.pooler_output), out.last_hidden_state


class Text(torch.nn.Module):
    """input_ids -> (text_embeds, last_hidden_state). No attention_mask input: CLIP's text tower
    is causal and pools at the end-of-text token, so padding after it changes nothing."""

    def __init__(self, clip):
        super().__init__()
        self.text, self.proj = clip.text_model, clip.text_projection

    def forward(self, input_ids):
        out = self.text(input_ids=input_ids)
        return self.proj(out.pooler_output), out.last_hidden_state


def export(module, args, path, inputs, outputs, dynamic, opset):
    # The dynamo exporter (torch >= 2.9's default). Weights stay inside the .onnx file:
    # transformers.js only looks for external data when the config asks for it.
    torch.onnx.export(
        module.eval(), args, str(path), input_names=inputs, output_names=outputs,
        dynamic_shapes=dynamic, opset_version=opset, dynamo=True, external_data=False,
    )


def quantize(src, dst):
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    ops = {n.op_type for n in onnx.load(str(src), load_external_data=False).graph.node}
    weight = QuantType.QUInt8 if "Conv" in ops else QuantType.QInt8
    quantize_dynamic(
        str(src), str(dst), weight_type=weight, per_channel=False, reduce_range=False,
        extra_options={"EnableSubgraph": True, "MatMulConstBOnly": True},
    )
    return weight.name


def check(path, feed, expected):
    """Runs the .onnx file with onnxruntime (CPU) and compares with torch."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, feed)[0]
    a, b = got.reshape(len(got), -1), expected.reshape(len(expected), -1)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(np.abs(got - expected).max()), float(cos.min())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="a CLIPConfig json (e.g. clip-tokenizer/config.json)")
    ap.add_argument("--out", required=True, help="writes OUT/hf and OUT/tjs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tokenizer", default=str(TOKENIZER), help="folder with tokenizer.json etc.")
    ap.add_argument("--opset", type=int, default=18)  # the lowest the dynamo exporter writes natively
    ap.add_argument("--no-quantize", action="store_true", help="skip the *_quantized.onnx files")
    args = ap.parse_args()

    out = Path(args.out)
    hf, tjs = out / "hf", out / "tjs"
    (tjs / "onnx").mkdir(parents=True, exist_ok=True)
    hf.mkdir(parents=True, exist_ok=True)

    config = CLIPConfig.from_json_file(args.config)
    torch.manual_seed(args.seed)
    clip = CLIPModel(config).float().eval()
    clip.save_pretrained(hf, safe_serialization=True)
    print(f"wrote {hf} (seed {args.seed})", flush=True)

    # Eager attention exports to plain MatMul/Softmax, which every onnxruntime-web version runs;
    # it computes the same thing as SDPA.
    if hasattr(clip, "set_attn_implementation"):
        clip.set_attn_implementation("eager")
    else:
        clip.config._attn_implementation = "eager"

    # transformers.js reads the model's config.json and its processor/tokenizer files.
    shutil.copyfile(hf / "config.json", tjs / "config.json")
    tok = Path(args.tokenizer)
    for name in TOKENIZER_FILES:
        if (tok / name).exists():
            shutil.copyfile(tok / name, tjs / name)  # not copy(): the source files are read-only
    pre = json.loads((tok / "preprocessor_config.json").read_text())
    size = config.vision_config.image_size  # a shrunk test config has a smaller image
    pre["size"] = {"shortest_edge": size}
    pre["crop_size"] = {"height": size, "width": size}
    (tjs / "preprocessor_config.json").write_text(json.dumps(pre, indent=2) + "\n")

    size, ctx = config.vision_config.image_size, config.text_config.max_position_embeddings
    vocab = config.text_config.vocab_size
    batch = torch.export.Dim("batch", min=1, max=1024)
    seq = torch.export.Dim("sequence", min=2, max=ctx)
    # Example inputs with batch 2 (a size-1 dim would be specialised by torch.export).
    pixels = torch.randn(2, 3, size, size)
    ids = torch.randint(1, vocab - 2, (2, ctx))
    ids[:, 0], ids[:, -1] = vocab - 2, vocab - 1  # start / end of text (the highest id: argmax pooling)

    onnx_dir = tjs / "onnx"
    export(Vision(clip), (pixels,), onnx_dir / "vision_model.onnx", ["pixel_values"],
           ["image_embeds", "last_hidden_state"], {"pixel_values": {0: batch}}, args.opset)
    export(Text(clip), (ids,), onnx_dir / "text_model.onnx", ["input_ids"],
           ["text_embeds", "last_hidden_state"], {"input_ids": {0: batch, 1: seq}}, args.opset)
    print(f"wrote {onnx_dir}/{{vision,text}}_model.onnx (opset {args.opset})", flush=True)

    names = ["vision_model", "text_model"]
    if not args.no_quantize:
        for name in names:
            weight = quantize(onnx_dir / f"{name}.onnx", onnx_dir / f"{name}_quantized.onnx")
            print(f"wrote {onnx_dir}/{name}_quantized.onnx ({weight} weights)", flush=True)

    # Same numbers as torch? Batch 3 and a short sequence exercise the dynamic axes.
    with torch.no_grad():
        px = torch.randn(3, 3, size, size)
        short = ids[:, :10].clone()
        short[:, -1] = vocab - 1
        ref = {"vision_model": (Vision(clip)(px)[0].numpy(), {"pixel_values": px.numpy()}),
               "text_model": (Text(clip)(short)[0].numpy(), {"input_ids": short.numpy()})}
    suffixes = [""] if args.no_quantize else ["", "_quantized"]
    for name in names:
        expected, feed = ref[name]
        for suffix in suffixes:
            path = onnx_dir / f"{name}{suffix}.onnx"
            diff, cos = check(path, feed, expected)
            mb = path.stat().st_size / 1e6
            print(f"check {path.name}: {mb:.1f} MB, max |onnx - torch| {diff:.2e}, min cosine {cos:.5f}")
            if not suffix and (cos < 0.9999 or not np.isfinite(diff)):
                sys.exit(f"{path.name} does not match torch")


if __name__ == "__main__":
    main()
