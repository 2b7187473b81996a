#!/usr/bin/env python3
"""Reference pixels for `src/preprocess.rs`, made with Hugging Face's PIL-backed CLIP processor.

Writes, under `tests/fixtures/`:
  images/      small test images in other formats and colour types, derived from one real
               photo of the data dir (the real photos themselves are never committed);
  preprocess/  for every input, the processor's resized + centre-cropped uint8 image
               (do_rescale=False, do_normalize=False) as PNG, at 224 (the shared
               preprocessor_config.json) and at 32 (the small test models' size);
  resize/      Pillow bicubic resizes of procedurally generated images (the same generator is
               re-implemented in tests/integration/preprocess.rs), covering up/down scaling on each axis;
  preprocess/manifest.json  what to compare, with a few float values of the full pipeline.

Usage (from the repository root; `make fixtures` runs it through tools/reference/run.sh):
    DELTAENERGY_DATA=../shared/data python tools/reference/make_pixels.py

Needs transformers >= 5 (CLIPImageProcessorPil: the slow, PIL-based processor; in 5.x plain
CLIPImageProcessor is the torchvision one), Pillow and numpy. Made with transformers 5.24.0,
Pillow 13.0.0 (libjpeg-turbo), numpy 2.4.6. transformers 4.x's CLIPImageProcessor drops alpha
instead of compositing on white, so its outputs for the alpha fixtures would differ.
"""

from __future__ import annotations

import io
import json
import os
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import PIL
from PIL import Image

import transformers

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("DELTAENERGY_DATA", REPO / ".." / "shared" / "data")).resolve()
FIXTURES = REPO / "tests" / "fixtures"
IMAGES = FIXTURES / "images"
OUT = FIXTURES / "preprocess"
RESIZE = FIXTURES / "resize"

# Real inputs, relative to the data dir. Chosen to cover grey PNG, tiny JPEG (upscaled 7x),
# 4:2:0 landscape and portrait, 4:2:2 and 4:4:4 full-size photos, and a texture.
REAL = {
    "mnist_3": "mnist-test/3/60018.png",
    "mnist_7": "mnist-test/7/{first}",
    "cifar_airplane": "cifar10/test/airplane/0000.jpg",
    "cifar_cat": "cifar10/test/cat/0000.jpg",
    "imagenet_tench": "imagenet-samples/n01440764_tench.jpg",
    "imagenet_hammerhead": "imagenet-samples/n01494475_hammerhead.jpg",
    "gallery_beagle": "gallery/n02088364_beagle.JPEG",
    "gallery_goldfish": "gallery/n01443537_goldfish.JPEG",
    "dtd_braided": "dtd/braided/braided_0002.jpg",
}
# The photo the format fixtures are cut from.
DERIVE_FROM = "gallery/n02123045_tabby.JPEG"

# (c, y, x) positions whose normalised values are recorded for two inputs.
SPOTS = [(0, 0, 0), (1, 111, 37), (2, 223, 223), (0, 57, 190), (1, 200, 5), (2, 100, 100)]
SPOT_IMAGES = ["mnist_3", "png_rgba"]


def rel_data(path: str) -> Path:
    if "{first}" in path:
        folder = DATA / Path(path).parent
        path = str(Path(path).parent / sorted(os.listdir(folder))[0])
    return Path(path)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png16(path: Path, arr: np.ndarray) -> None:
    """Pillow cannot write 16-bit RGB PNGs, so this writes one by hand (colour type 0 or 2)."""
    h, w = arr.shape[:2]
    colour_type = 0 if arr.ndim == 2 else 2
    rows = arr.astype(">u2").reshape(h, -1)
    raw = b"".join(b"\x00" + rows[y].tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(raw, 9))
        + png_chunk(b"IEND", b"")
    )


def make_format_images() -> dict[str, tuple[str, bool]]:
    """Derived inputs: name -> (path relative to the repo, exact match expected)."""
    IMAGES.mkdir(parents=True, exist_ok=True)
    photo = Image.open(DATA / DERIVE_FROM).convert("RGB")
    photo.info = {}  # no ICC profile carried into the fixtures
    w, h = photo.size
    base = photo.resize((64, 48), Image.BICUBIC, box=(w * 0.2, h * 0.2, w * 0.8, h * 0.65))
    a = np.asarray(base)
    yy, xx = np.mgrid[0:48, 0:64]
    out: dict[str, tuple[str, bool]] = {}

    def save(name: str, img: Image.Image, ext: str, exact: bool = True, **kw) -> None:
        path = IMAGES / f"{name}.{ext}"
        img.save(path, **kw)
        out[name] = (str(path.relative_to(REPO)), exact)

    # Alpha: a horizontal ramp with a fully transparent block and an opaque block.
    alpha = (xx * 4).clip(0, 255).astype(np.uint8)
    alpha[:12, :16] = 0
    alpha[36:, 48:] = 255
    save("png_rgba", Image.fromarray(np.dstack([a, alpha]), "RGBA"), "png", optimize=True)
    # Palette with a transparent index (tRNS), the common "transparent GIF-like PNG".
    pal = base.quantize(colors=48, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    pal.info["transparency"] = int(np.asarray(pal)[0, 0])
    save("png_palette", pal, "png", optimize=True, transparency=pal.info["transparency"])
    grey = np.asarray(base.convert("L"))
    save("png_grey_alpha", Image.fromarray(np.dstack([grey, alpha]), "LA"), "png", optimize=True)
    # 16-bit RGB: Pillow keeps the high byte. The low byte is noise to prove it is ignored.
    noise = np.random.default_rng(0).integers(0, 256, a.shape)
    write_png16(IMAGES / "png_rgb16.png", a.astype(np.uint32) * 256 + noise)
    out["png_rgb16"] = (str((IMAGES / "png_rgb16.png").relative_to(REPO)), True)
    # 16-bit grey: Pillow opens it as I;16 and *clips* to 255 when converting to RGB, so the
    # values are spread over 0..510 to have both unclipped and clipped pixels.
    write_png16(IMAGES / "png_grey16.png", grey.astype(np.uint32) * 2)
    out["png_grey16"] = (str((IMAGES / "png_grey16.png").relative_to(REPO)), True)
    # Two-frame GIF: the second frame is the mirror image, so using it would show.
    f1 = base.quantize(colors=64, dither=Image.Dither.NONE)
    mirrored = base.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    f2 = mirrored.quantize(colors=64, dither=Image.Dither.NONE)
    save("gif_two_frames", f1, "gif", save_all=True, append_images=[f2], duration=100, loop=0)
    save("bmp_rgb", base, "bmp")
    save("webp_lossless", base, "webp", lossless=True)
    # Lossy WebP too: image-webp's VP8 decoder reproduces libwebp's output exactly.
    save("webp_lossy", base, "webp", quality=80)
    # Odd, non-square, portrait, and a different crop of the photo.
    odd = photo.resize((61, 97), Image.BICUBIC, box=(w * 0.4, h * 0.1, w * 0.7, h * 0.9))
    save("png_odd_61x97", odd, "png", optimize=True)
    save("png_tiny_5x3", base.resize((5, 3), Image.BOX), "png")
    # Decoder paths beyond baseline colour JPEG.
    save("jpeg_grey", base.convert("L"), "jpeg", exact=False, quality=90)
    save("jpeg_progressive", base, "jpeg", exact=False, quality=90, progressive=True)
    save("jpeg_444", base, "jpeg", exact=False, quality=95, subsampling=0)
    return out


def u8_hwc(processor, img: Image.Image, size: int | None) -> np.ndarray:
    kw = {}
    if size is not None:
        kw = {"size": {"shortest_edge": size}, "crop_size": {"height": size, "width": size}}
    out = processor(img, do_rescale=False, do_normalize=False, return_tensors="np", **kw)
    pv = out["pixel_values"]
    assert pv.dtype == np.uint8, pv.dtype
    return np.ascontiguousarray(pv[0].transpose(1, 2, 0))


# --- procedural images for the resize cases; mirrored in tests/integration/preprocess.rs -----------------
M32 = 0xFFFFFFFF


def procedural(w: int, h: int, seed: int, binary: bool) -> np.ndarray:
    """An integer hash of (x, y, channel, seed); `binary` maps it to 0/255, which maximises
    the overshoot of the bicubic lobes and so the effect of intermediate clipping."""
    y, x, c = np.meshgrid(np.arange(h), np.arange(w), np.arange(3), indexing="ij")
    v = (x * 374761393 + y * 668265263 + c * 2246822519 + seed * 3266489917) & M32
    v = ((v ^ (v >> 13)) * 1274126177) & M32
    v = v ^ (v >> 16)
    return np.where(v & 1, 255, 0).astype(np.uint8) if binary else (v & 255).astype(np.uint8)


RESIZE_CASES = [
    # (w, h, out_w, out_h): both pass orders, each axis up/down/unchanged, extreme ratios.
    (40, 30, 17, 11), (30, 40, 11, 17), (9, 9, 31, 4), (9, 9, 4, 3), (12, 20, 25, 8),
    (20, 12, 8, 25), (17, 23, 17, 9), (17, 23, 40, 23), (5, 3, 37, 22), (3, 5, 22, 37),
    (64, 64, 32, 32), (48, 36, 43, 32), (36, 48, 32, 42), (1, 1, 7, 5), (1, 40, 3, 9),
    (40, 1, 9, 3), (60, 45, 1, 1), (33, 21, 32, 20), (21, 33, 22, 31), (50, 49, 13, 12),
    # Either side of Pillow's pass-order switch, 2*(out_w - w) vs (out_h - h): equal (horizontal
    # first), one more (vertical first).
    (30, 20, 25, 10), (30, 21, 25, 10),
]


def main() -> None:
    if not (DATA / "clip-tokenizer" / "preprocessor_config.json").is_file():
        sys.exit(f"{DATA} has no clip-tokenizer/preprocessor_config.json; set DELTAENERGY_DATA")
    if not hasattr(transformers, "CLIPImageProcessorPil"):
        sys.exit("needs transformers >= 5 (CLIPImageProcessorPil)")
    processor = transformers.CLIPImageProcessorPil.from_pretrained(DATA / "clip-tokenizer")
    assert processor.backend == "pil"
    assert processor.crop_size["height"] == 224 and processor.size["shortest_edge"] == 224
    OUT.mkdir(parents=True, exist_ok=True)
    RESIZE.mkdir(parents=True, exist_ok=True)

    inputs: dict[str, tuple[str, Path, bool]] = {}
    for name, rel in REAL.items():
        rel = rel_data(rel)
        exact = rel.suffix.lower() not in (".jpg", ".jpeg")
        inputs[name] = (f"data:{rel.as_posix()}", DATA / rel, exact)
    for name, (rel, exact) in make_format_images().items():
        inputs[name] = (f"repo:{rel}", REPO / rel, exact)

    entries = []
    for name, (source, path, exact) in inputs.items():
        img = Image.open(path)
        entry = {
            "name": name,
            "source": source,
            "format": img.format,
            "pil_mode": img.mode,
            "size": list(img.size),
            "exact": exact,
            "expected": {},
        }
        for size, suffix in [(None, ""), (32, "_32")]:
            arr = u8_hwc(processor, Image.open(path), size)
            out = OUT / f"{name}{suffix}.png"
            Image.fromarray(arr, "RGB").save(out, optimize=True)
            entry["expected"][str(size or 224)] = str(out.relative_to(FIXTURES))
        if name in SPOT_IMAGES:
            pv = processor(Image.open(path), return_tensors="np")["pixel_values"][0]
            assert pv.dtype == np.float32
            entry["spots_224"] = [
                {"c": c, "y": y, "x": x, "value": float(pv[c, y, x])} for c, y, x in SPOTS
            ]
        entries.append(entry)
        print(f"{name:22s} {img.format:5s} {img.mode:5s} {img.size}")

    resize_cases = []
    for i, (w, h, ow, oh) in enumerate(RESIZE_CASES):
        for binary in (False, True):
            seed = 2 * i + int(binary)
            src = Image.fromarray(procedural(w, h, seed, binary), "RGB")
            out = RESIZE / f"case{seed:02d}.png"
            src.resize((ow, oh), Image.BICUBIC).save(out, optimize=True)
            resize_cases.append(
                {"width": w, "height": h, "seed": seed, "binary": binary, "out_width": ow,
                 "out_height": oh, "expected": str(out.relative_to(FIXTURES))}
            )

    manifest = {
        "generator": "tools/reference/make_pixels.py",
        "versions": {
            "transformers": transformers.__version__,
            "pillow": PIL.__version__,
            "numpy": np.__version__,
        },
        "processor": "CLIPImageProcessorPil from clip-tokenizer/preprocessor_config.json; "
        "size 32 = shortest_edge 32, crop 32",
        "sources": "data: relative to DELTAENERGY_DATA, repo: relative to the repository root",
        "images": entries,
        "resize_cases": resize_cases,
    }
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(f.stat().st_size for f in FIXTURES.rglob("*") if f.is_file())
    print(f"fixtures: {total / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
