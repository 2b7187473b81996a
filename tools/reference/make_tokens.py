#!/usr/bin/env python3
"""Reference token ids for `tests/integration/tokenizer.rs`, from Hugging Face's CLIPTokenizerFast.

Writes tests/fixtures/tokenizer/cases.json: a list of {"text": ..., "ids": [...]}, ids with
<|startoftext|>/<|endoftext|> and truncation to 77 (`truncation=True, max_length=77`).

    DELTAENERGY_DATA=../shared/data python tools/reference/make_tokens.py

Needs `transformers` (with `tokenizers`). The data directory defaults to ../shared/data next to
the repository; only its clip-tokenizer/ files and the label lists are read.
"""

import csv
import json
import os
import random
import sys
from pathlib import Path

from transformers import CLIPTokenizerFast

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("DELTAENERGY_DATA", REPO.parent / "shared" / "data"))
OUT = REPO / "tests" / "fixtures" / "tokenizer" / "cases.json"
MAX_LEN = 77

CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

# A selection of CLIP's ImageNet prompt templates (Radford et al. 2021, notebook "Prompt
# Engineering for ImageNet").
TEMPLATES = [
    "a photo of a {}.",
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a black and white photo of the {}.",
    "a pixelated photo of the {}.",
    "itap of a {}.",
    "a blurry photo of the {}.",
    "a origami {}.",
    "the {} in a video game.",
    "a toy {}.",
    "a photo of a {}, a type of pet.",
    "A PHOTO OF A {}!",
    "  a photo of a {}  ",
]

HAND_WRITTEN = [
    # empty and whitespace
    "", " ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2009", "\u0085", "\u200b",
    "\u180e", "\u2028", "\u2029", "\u202f", "\u205f", "\u1680", "\ufeff", "\x0b\x0c",
    " leading", "trailing ", "  multiple   spaces  here  ", "tab\tseparated\twords",
    "new\nline\nseparated", "mixed \t\n\r\u00a0\u3000 whitespace", "a\u00a0b", "a\u3000b",
    "a\u2009b", "a\u0085b", "a\u200bb", "a\u180eb", "a\u2060b", "a\u00adb", "a\ufeffb",
    "a\u200cb\u200dc", "a\u2028b\u2029c", "a\u1680b\u202fc\u205fd",
    # control characters
    "\x00", "a\x00b", "\x01\x02\x03", "a\x1cb\x1dc\x1ed\x1fe", "\x7f", "a\x7fb", "\x80\x9f",
    "bell\x07 escape\x1b[0m",
    # special tokens, literally, in various cases and positions
    "<|startoftext|>", "<|endoftext|>", "<|STARTOFTEXT|>", "<|ENDOFTEXT|>", "<|EndOfText|>",
    "<|StartOfText|>", "a photo<|endoftext|>of a cat", "a photo <|endoftext|> of a cat",
    "<|startoftext|>a photo of a cat<|endoftext|>", "<|endoftext|><|endoftext|>",
    "<|startoftext|><|startoftext|>", "x<|startoftext|>y", "x<|STARTOFTEXT|>y",
    "x<|endoftext|>y", "x<|ENDOFTEXT|>y", "!!<|endoftext|>!!", "!!<|ENDOFTEXT|>!!",
    "<|endoftext|", "<|endoftext", "|endoftext|>", "<| endoftext |>", "<|end of text|>",
    "<|endoftext|>>", "<<|endoftext|>", "<|startoftext|>>", "<<|startoftext|>",
    "<|endoftext|>\u0301", "\u0301<|endoftext|>", "e<|endoftext|>\u0301",
    "<|\u0130|>", "<|startoftext|>" * 3, "<|endoftext|>" * 100,
    "<|startoftext|> " * 40, "caf\u00e9<|endoftext|>caf\u00e9",
    # punctuation
    "!", "!!!", "?!?!", "...", "\u2026", "--", "\u2014", "a--b", "a...b", "(parenthesised)",
    "[bracketed]", "{braced}", "<angled>", "\"double quoted\"", "\u201ccurly quotes\u201d",
    "\u00abguillemets\u00bb", "#hashtag @mention", "$100 + 50% = ?", "a/b\\c|d", "~`^*_=+",
    "!@#$%^&*()_+-=[]{};':\",./<>?", "\u00bfqu\u00e9?", "\u00a1hola!",
    # apostrophes and contractions
    "it's", "don't", "won't", "I'm", "you're", "we've", "they'll", "he'd", "IT'S", "DON'T",
    "'quoted'", "rock'n'roll", "O'Neill", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d",
    "''s", "'''", "it''s", "the dog's bone", "the dogs' bones", "it\u2019s", "'90s",
    "let's go", "ma'am", "y'all'd've",
    # numbers
    "0", "7", "42", "3.14", "1,000,000", "2026-11-26", "12:34:56", "1e10", "-5", "+5",
    "0x1F", "\u00bd", "\u2153", "\u00b2", "\u2460", "\u0663", "\u096a", "\uff11\uff12",
    "\u2167", "\u3007", "100%", "#1", "v1.2.3", "4th", "1st 2nd 3rd", "10x", "3d",
    # accents and normalization
    "caf\u00e9", "cafe\u0301", "na\u00efve", "nai\u0308ve", "Z\u00fcrich", "Zu\u0308rich",
    "e\u0301", "E\u0301", "\u00c5ngstr\u00f6m", "A\u030angstro\u0308m", "\u212b",
    "\u1e69", "s\u0323\u0307", "s\u0307\u0323", "q\u0307\u0323", "\u0301", "a\u0301\u0301",
    "\u00f1and\u00fa", "cr\u00e8me br\u00fbl\u00e9e", "Cr\u00c8ME BR\u00dbL\u00c9E",
    "\u01c5", "\u01c4", "\u0149", "\u1e9e",
    # marks and composites newer than Unicode 9.0, which tokenizers' NFC tables do not know
    "a\u07fd\u0323\u0301", "a\u0898\u0301", "a\u1dfa\u0323", "a\u0d3b\u0323",
    "\U00011935\U00011930", "\U00011938", "\U00016121", "\U0001611e\U0001611e",
    # German, Turkish, Greek
    "Stra\u00dfe", "STRASSE", "\u00df", "\u1e9e", "\u0130stanbul", "\u0131\u015f\u0131k",
    "I\u0307", "\u0130", "\u0131", "\u039f\u0394\u039f\u03a3", "\u03bf\u03b4\u03bf\u03c2",
    "\u039f\u0394\u039f\u03a3 \u039f\u0394\u039f\u03a3", "\u03a3\u03a3", "\u1f08\u0345",
    "\u0391\u03b8\u03ae\u03bd\u03b1", "\u03a3\u03af\u03c3\u03c5\u03c6\u03bf\u03c2",
    # other scripts
    "\u732b", "\u4e00\u53ea\u732b\u7684\u7167\u7247", "\u732b cat", "\u306d\u3053",
    "\u30cd\u30b3", "\u30cd\u30b3\u3068\u72ac", "\uff8e\uff9e", "\u304c", "\u304b\u3099",
    "\uace0\uc591\uc774", "\u1100\u1161\u11a8", "\u3131\u314f",
    "\u0642\u0637\u0629", "\u0627\u0644\u0642\u0637\u0629 \u0627\u0644\u0633\u0648\u062f\u0627\u0621",
    "\u0628\u0650\u0633\u0652\u0645\u0650", "\u05d7\u05ea\u05d5\u05dc",
    "\u092c\u093f\u0932\u094d\u0932\u0940", "\u0915\u094d\u0937\u093f",
    "\u0928\u092e\u0938\u094d\u0924\u0947", "\u0e41\u0e21\u0e27", "\u0c2a\u0c3f\u0c32\u0c4d\u0c32\u0c3f",
    "\u043a\u043e\u0448\u043a\u0430", "\u041a\u041e\u0428\u041a\u0410", "\u10d9\u10d0\u10e2\u10d0",
    "\u0563\u0561\u057f\u0578\u0582", "\u1203\u1308\u122d", "\u13a0\u13a1", "\u16a0\u16a2",
    # emoji
    "\U0001f408", "\U0001f408\u200d\u2b1b", "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466",
    "\U0001f44d\U0001f3fd", "\U0001f44b\U0001f3ff", "\U0001f1e9\U0001f1ea", "\U0001f1fa\U0001f1f8\U0001f1ef\U0001f1f5",
    "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f", "\u2764\ufe0f", "\u2764",
    "\u263a\ufe0e", "1\ufe0f\u20e3", "#\ufe0f\u20e3", "cat\U0001f408dog\U0001f415",
    "a photo of a cat \U0001f431\U0001f431\U0001f431", "\U0001f9d1\u200d\U0001f680", "\U0001faf6\U0001f3fb",
    # compatibility characters (NFC keeps them)
    "\ufb01", "\ufb01sh", "\ufb00\ufb02", "\uff21\uff22\uff23", "\uff41\uff42\uff43", "\u2163",
    "\u00b5", "\u03bc", "\u2126", "\u212a", "\u33a1", "\u2122", "\u00aa\u00ba", "\U0001d400\U0001d41a",
    "\u24b6\u24d0", "\u1d2c",
    # HTML entities, URLs, file names, code
    "&amp;", "Tom &amp; Jerry", "&lt;b&gt;bold&lt;/b&gt;", "&#39;", "&quot;hi&quot;", "&nbsp;",
    "<b>bold</b>", "<br/>", "</w>", "a</w>b", "https://example.com/path?q=cat&lang=en#top",
    "http://www.cs.toronto.edu/~kriz/cifar.html", "user@example.com",
    "my_file_name.jpg", "IMG_0042.JPEG", "n02123045_tabby.JPEG", "snake_case_identifier",
    "CamelCaseIdentifier", "__init__.py", "C:\\Users\\me\\Pictures\\cat.png",
    "/home/user/.config/file.txt", "fn main() { println!(\"hi\"); }", "x = y ** 2 // 3",
    "a_b-c.d/e\\f", "#version: 0.2", "\u0120hello", "\u0100\u0101\u0143",
]


def long_cases():
    words = "the quick brown fox jumps over the lazy dog while a photo of a cat sits".split()
    rng = random.Random(77)
    cases = [
        " ".join(rng.choice(words) for _ in range(60))[:300],  # ~300 chars of words
        "a" * 300,
        "ab" * 150,
        "x" * 299 + "!",
        "!" * 300,
        "1" * 300,
        "\u732b" * 300,
        "\U0001f408" * 100,
        "e\u0301" * 150,
        "supercalifragilisticexpialidocious" * 9,
        "antidisestablishmentarianism" * 10,
        ("a photo of a cat. " * 20).strip(),  # > 77 tokens: truncated
        "cat " * 76,
        "cat " * 75,
        "cat " * 74,
        ", ".join(CIFAR10) * 3,
        "".join(chr(0x41 + (i * 7) % 58) for i in range(300)),
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(300)),
        "word" + "'s" * 100,
        "<|endoftext|>" + "a " * 100,
        "a " * 100 + "<|endoftext|>",
    ]
    return cases


def random_cases(n, seed=20261126):
    """Seeded random strings mixing ASCII, Latin-1, any Unicode plane and emoji."""
    rng = random.Random(seed)
    ascii_ = [chr(c) for c in range(0x20, 0x7F)] + [" ", " ", "\t", "\n", "'"]
    latin1 = [chr(c) for c in range(0xA0, 0x100)]
    emoji = (
        [chr(c) for c in range(0x1F300, 0x1F650)]
        + [chr(c) for c in range(0x1F900, 0x1FA00)]
        + ["\u200d", "\ufe0f", "\u2764", "\u2600"]
        + [chr(c) for c in range(0x1F3FB, 0x1F400)]
        + [chr(c) for c in range(0x1F1E6, 0x1F200)]
    )
    marks = [chr(c) for c in range(0x300, 0x370)] + ["\u0323", "\u0301", "\u093f", "\u094d"]

    def any_plane():
        while True:
            plane = rng.choice([0, 0, 0, 1, 1, 2, 3, 14, 15])
            cp = plane * 0x10000 + rng.randrange(0x10000)
            if not 0xD800 <= cp <= 0xDFFF:
                return chr(cp)

    pools = [
        lambda: rng.choice(ascii_),
        lambda: rng.choice(latin1),
        any_plane,
        lambda: rng.choice(emoji),
        lambda: rng.choice(marks),
    ]
    out = []
    for i in range(n):
        weights = [rng.random() for _ in pools]
        length = rng.randint(1, 12) if i % 10 else rng.randint(20, 120)
        s = "".join(rng.choices(pools, weights)[0]() for _ in range(length))
        if i % 25 == 0:
            pos = rng.randrange(len(s) + 1)
            s = s[:pos] + rng.choice(["<|endoftext|>", "<|startoftext|>", "<|ENDOFTEXT|>"]) + s[pos:]
        out.append(s)
    return out


def read_labels(path):
    with open(path, newline="", encoding="utf-8") as f:
        return [row["label"] for row in csv.DictReader(f)]


def main():
    tok = CLIPTokenizerFast.from_pretrained(str(DATA / "clip-tokenizer"))
    imagenet = read_labels(DATA / "imagenet-samples" / "labels.csv")
    gallery = read_labels(DATA / "gallery" / "labels.csv")

    texts = []
    texts += CIFAR10
    texts += [t.format(c) for t in TEMPLATES for c in CIFAR10]
    texts += imagenet
    texts += [f"a photo of a {label}." for label in imagenet]
    texts += gallery
    texts += [f"a photo of a {label}." for label in gallery]
    texts += HAND_WRITTEN
    texts += long_cases()
    texts += random_cases(300)

    seen = set()
    cases = []
    for text in texts:
        if text in seen:
            continue
        seen.add(text)
        ids = tok(text, truncation=True, max_length=MAX_LEN)["input_ids"]
        cases.append({"text": text, "ids": ids})

    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT, "w", encoding="ascii") as f:
        f.write("[\n")
        f.write(",\n".join(json.dumps(c, ensure_ascii=True, separators=(",", ":")) for c in cases))
        f.write("\n]\n")
    print(f"{len(cases)} cases -> {OUT} ({OUT.stat().st_size} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
