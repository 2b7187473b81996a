#!/usr/bin/env python3
"""The references for `deltaenergy bench`: PyTorch and ONNX Runtime timing the CLIP towers with
the same batches, the same 77-token texts, and medians of timed runs after one warm-up.

    --hf DIR     a Hugging Face CLIP (config.json + model.safetensors): PyTorch runs these
                 weights (else seeded random weights for --config)
    --onnx DIR   export_onnx.py's OUT/tjs/onnx: ONNX Runtime (CPU) runs vision_model.onnx
                 (fp32) and vision_model_quantized.onnx (q8, dynamic int8) on the same weights
    --device cuda --dtypes fp32,fp16   PyTorch on the GPU (tools/gpu/h200.sh), each dtype
                 timed with the GPU synchronised, so queued work is counted
    --save DIR   write the (random) weights as a Hugging Face checkpoint first, for
                 `deltaenergy convert` and `bench` to run the same weights

Run: tools/reference/run.sh bench_ref.py [--config PATH | --hf DIR] [--onnx DIR] [--iters 5]
     [--batches 1,8]   (--onnx needs requirements-onnx.txt in the same venv)
"""
import argparse
import copy
import os
import statistics
import time
from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPModel

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("DELTAENERGY_DATA", ROOT.parent / "shared" / "data"))


def timed(fn, iters, sync=lambda: None):
    fn()
    sync()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times), min(times)


def row(backend, tower, b, med, mn):
    print(f"{backend:<12} {tower:<6} {b:>5} {med:>12.1f} {mn:>12.1f} {med / b:>12.1f}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(DATA / "clip-tokenizer" / "config.json"))
    ap.add_argument("--hf", help="a Hugging Face CLIP directory (its weights, not random ones)")
    ap.add_argument("--onnx", help="export_onnx.py's OUT/tjs/onnx, for ONNX Runtime")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--text-len", type=int, default=77)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--dtypes", default="fp32", help="fp32,fp16 (fp16 on cuda only)")
    ap.add_argument("--towers", default="image,text")
    ap.add_argument("--save", help="write the weights as a Hugging Face checkpoint here first")
    args = ap.parse_args()
    if args.hf:
        model = CLIPModel.from_pretrained(args.hf).eval()
        config, source = model.config, args.hf
    else:
        torch.manual_seed(0)
        config = CLIPConfig.from_json_file(args.config)
        model, source = CLIPModel(config).eval(), f"{args.config} (random weights)"
    if args.save:
        model.save_pretrained(args.save, safe_serialization=True)
    v = config.vision_config
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    towers = args.towers.split(",")
    models = {}
    for dtype in args.dtypes.split(","):
        # .to() converts a module in place: each dtype gets its own copy.
        models[dtype] = copy.deepcopy(model).to(dev, dtype={"fp32": torch.float32, "fp16": torch.float16}[dtype])
    gpu = f", {torch.cuda.get_device_name()}" if dev.type == "cuda" else ""
    sessions = {}
    versions = ""
    if args.onnx:
        import onnxruntime as ort

        # Defaults, as an application would run it: intra-op threads = physical cores.
        for tower, prefix in [("image", "vision"), ("text", "text")]:
            for dtype, name in [("fp32", f"{prefix}_model.onnx"), ("q8", f"{prefix}_model_quantized.onnx")]:
                path = Path(args.onnx) / name
                if tower in towers and path.exists():
                    sessions[tower, dtype] = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        versions = f", onnxruntime {ort.__version__}"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads{gpu}{versions}; {source}; "
          f"{args.iters} timed runs, medians in ms")
    print(f"{'backend':<12} {'tower':<6} {'batch':>5} {'median_ms':>12} {'min_ms':>12} {'ms/item':>12}")
    with torch.inference_mode():
        for b in map(int, args.batches.split(",")):
            pixels = torch.randn(b, v.num_channels, v.image_size, v.image_size)
            ids = torch.randint(256, 49000, (b, args.text_len))
            ids[:, 0], ids[:, -1] = 49406, 49407
            for dtype, m in models.items():
                name = "torch" if (dev.type, dtype) == ("cpu", "fp32") else f"torch-{args.device}-{dtype}"
                px = pixels.to(dev, dtype=m.dtype)
                if "image" in towers:
                    image = timed(lambda: m.visual_projection(m.vision_model(pixel_values=px).pooler_output), args.iters, sync)
                    row(name, "image", b, *image)
                if "text" in towers:
                    tid = ids.to(dev)
                    text = timed(lambda: m.text_projection(m.text_model(input_ids=tid).pooler_output), args.iters, sync)
                    row(name, "text", b, *text)
            feeds = {"image": (["image_embeds"], {"pixel_values": pixels.numpy()}),
                     "text": (["text_embeds"], {"input_ids": ids.numpy()})}
            for (tower, dtype), session in sessions.items():
                outputs, feed = feeds[tower]
                row(f"ort-{dtype}", tower, b, *timed(lambda: session.run(outputs, feed), args.iters))


if __name__ == "__main__":
    main()
