"""Writes the page's class presets (www/presets/*.json) from their published sources.

ImageNet-1k: the class names and the 80 prompt templates OpenAI's CLIP uses for zero-shot
ImageNet (its notebook "Prompt_Engineering_for_ImageNet"), as open_clip ships them in
`open_clip/zero_shot_metadata.py` (MIT). The wheel is fetched from PyPI with pip; nothing is
imported from it but that one file, read as text and evaluated without open_clip's package.
CIFAR-10: its ten class names (Krizhevsky 2009), with the same templates.

    python3 tools/reference/make_presets.py        (needs pip and PyPI; no other package)
"""

import glob
import json
import os
import subprocess
import sys
import tempfile
import zipfile

VERSION = "3.3.0"
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "www", "presets")


def metadata():
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", f"open_clip_torch=={VERSION}", "--no-deps", "-q", "-d", tmp],
            check=True,
        )
        wheel = zipfile.ZipFile(glob.glob(os.path.join(tmp, "*.whl"))[0])
        source = wheel.read("open_clip/zero_shot_metadata.py").decode()
    namespace = {}
    exec(compile(source, "zero_shot_metadata.py", "exec"), namespace)
    classes = list(namespace["IMAGENET_CLASSNAMES"])
    templates = [t("{}") for t in namespace["OPENAI_IMAGENET_TEMPLATES"]]
    assert len(classes) == 1000 and len(templates) == 80, (len(classes), len(templates))
    assert all(t.count("{}") == 1 for t in templates)
    return classes, templates


def main():
    classes, templates = metadata()
    source = f"OpenAI CLIP's zero-shot ImageNet names and templates, from open_clip_torch {VERSION} (MIT), zero_shot_metadata.py"
    presets = {
        "imagenet-1k": {"name": "ImageNet-1k (CLIP's names)", "classes": classes},
        "cifar-10": {
            "name": "CIFAR-10",
            "classes": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
        },
    }
    os.makedirs(OUT, exist_ok=True)
    for key, p in presets.items():
        p.update({"templates": templates, "template": "a photo of a {}.", "source": source})
        with open(os.path.join(OUT, f"{key}.json"), "w") as f:
            json.dump(p, f, ensure_ascii=False, indent=0)
            f.write("\n")
        print(f"wrote www/presets/{key}.json: {len(p['classes'])} classes, {len(templates)} templates")


if __name__ == "__main__":
    main()
