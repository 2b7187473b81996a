#!/usr/bin/env python3
"""PyTorch checkpoints (`pytorch_model.bin`, written by torch.save) for the reader's tests.

1. Beside each tiny model fixture, `pytorch_model.bin`: the same weights as its
   `model.safetensors`, as transformers 4.x wrote them with `save_pretrained(safe_serialization=
   False)`, which is `torch.save(model.state_dict())`. Until 4.31 the state dict also carried the
   int64 `position_ids` buffers (`torch.arange(n).expand((1, -1))`: stride 0 on the first axis),
   as openai/clip-vit-base-patch32's 2021 file does; they are added back here. transformers 5
   no longer writes `.bin`, so torch.save is called directly on its model's state dict.
2. tests/fixtures/torch/: small files for what a reader must get right or refuse, with the
   values torch itself reads from them (`views.json`):
   - views.bin: f32, f16, bf16 and int64 storages; a transposed view sharing its storage with
     another tensor; a view at a storage offset; a 0-d tensor; an empty one; an nn.Parameter.
   - legacy.bin: the same, in torch's legacy (pre-1.6) format.
   - deflated.bin: views.bin's entries re-zipped compressed (not how torch writes).
   - numpy.bin: a pickle that needs numpy to load (an unknown global for a weights reader).
   - big_endian.bin: views.bin whose `byteorder` record says "big".

Run: tools/reference/run.sh make_torch_bins.py   (or any python with torch, transformers)
"""
import collections
import json
import zipfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from transformers import CLIPModel

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "tests" / "fixtures" / "models"
OUT = ROOT / "tests" / "fixtures" / "torch"


def as_2021_state_dict(state):
    """The state dict as transformers < 4.31 saved it: with the int64 `position_ids` buffers it
    then persisted, each after its position embedding, and still an OrderedDict with its
    `_metadata`, as torch.save pickles it."""
    ordered = collections.OrderedDict()
    ordered._metadata = state._metadata
    for key, value in state.items():
        ordered[key] = value
        if key.endswith("embeddings.position_embedding.weight"):
            ordered[key.replace("position_embedding.weight", "position_ids")] = (
                torch.arange(value.shape[0]).expand((1, -1)))
    return ordered


def model_bin(name):
    folder = MODELS / name
    stored = load_file(str(folder / "model.safetensors"))
    dtype = next(iter(stored.values())).dtype
    model = CLIPModel.from_pretrained(str(folder), dtype=dtype).eval()
    state = model.state_dict()
    for key, value in stored.items():
        assert torch.equal(state[key], value), key
    assert set(state) == set(stored), set(state) ^ set(stored)
    ordered = as_2021_state_dict(state)
    torch.save(ordered, str(folder / "pytorch_model.bin"))
    back = torch.load(str(folder / "pytorch_model.bin"), weights_only=True)
    for key, value in stored.items():
        assert torch.equal(back[key], value), key
    print(f"{name}: pytorch_model.bin, {len(ordered)} tensors, {dtype}")


def views():
    gen = torch.Generator().manual_seed(7)
    base = torch.randn(3, 5, generator=gen)
    line = torch.randn(40, generator=gen)
    weight = torch.nn.Parameter(torch.randn(4, 2, generator=gen))
    state = {
        "f32": base,
        "transposed": base.t(),  # shares f32's storage, strides (1, 5)
        "offset": line[7:19].view(3, 4),  # storage offset 7
        "f16": torch.randn(2, 6, generator=gen).to(torch.float16),
        "bf16": torch.randn(6, 2, generator=gen).to(torch.bfloat16),
        "ids": torch.arange(9).expand((1, -1)),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 4),
        "parameter": weight,
    }
    return state


def describe(state):
    out = {}
    for key, t in state.items():
        t = t.detach()
        out[key] = {
            "dtype": str(t.dtype).removeprefix("torch."),
            "shape": list(t.shape),
            "stride": list(t.stride()),
            "storage_offset": t.storage_offset(),
            "values": [] if t.numel() == 0 else t.to(torch.float64).flatten().tolist(),
        }
    return out


def rezip(src, dst, compression=zipfile.ZIP_STORED, replace=None):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compression=compression) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if replace and info.filename.endswith(replace[0]):
                data = replace[1]
            zout.writestr(info.filename, data, compress_type=compression)


def fixtures():
    OUT.mkdir(parents=True, exist_ok=True)
    state = views()
    torch.save(state, str(OUT / "views.bin"))
    back = torch.load(str(OUT / "views.bin"), weights_only=True)
    assert all(torch.equal(back[k], v.detach()) for k, v in state.items())
    (OUT / "views.json").write_text(json.dumps({"torch": torch.__version__, "tensors": describe(back)}, indent=1) + "\n")
    small = {"w": torch.arange(6, dtype=torch.float32).view(2, 3)}
    torch.save(small, str(OUT / "legacy.bin"), _use_new_zipfile_serialization=False)
    rezip(OUT / "views.bin", OUT / "deflated.bin", zipfile.ZIP_DEFLATED)
    torch.save({"w": small["w"], "table": np.arange(3)}, str(OUT / "numpy.bin"))
    rezip(OUT / "views.bin", OUT / "big_endian.bin", replace=("/byteorder", b"big"))
    print(f"{OUT}: views, legacy, deflated, numpy, big_endian")


def main():
    for name in ["tiny-quickgelu-p8", "tiny-gelu-p16"]:
        model_bin(name)
    fixtures()


if __name__ == "__main__":
    main()
