#!/usr/bin/env python3
"""Packs class folders of small JPEGs into one file that the device machine can carry.

The device carries 64 MiB in all. CIFAR-10's 32x32 JPEGs in ../shared/data are ~920 bytes
each, and ~620 of them are the same header (quantisation and Huffman tables, frame and scan
headers) in every file: 48,000 training images are 44 MB as files, ~15 MB as one header and
their scans. Unpacking rebuilds every file byte for byte (checked against a SHA-256 of them all).

  jpegpack.py pack DIR OUT [--skip N]   every class folder of DIR, without its first N files
  jpegpack.py unpack PACK DIR           (sorted order, as `train --hold-out N` leaves them)

Standard library only: it runs wherever python3 does.
"""
import argparse
import hashlib
import json
import os
import struct
import sys

MAGIC = b"jpegpack 1\n"


def split(data, path):
    """The header (through the start-of-scan segment) and the rest of one JPEG."""
    at = data.find(b"\xff\xda")
    if not data.startswith(b"\xff\xd8") or at < 0 or at + 4 > len(data):
        sys.exit(f"error: {path} is not a baseline JPEG")
    end = at + 2 + struct.unpack(">H", data[at + 2 : at + 4])[0]
    return data[:end], data[end:]


def pack(src, out, skip):
    classes = sorted(
        d for d in os.listdir(src) if os.path.isdir(os.path.join(src, d)) and not d.startswith(".")
    )
    if not classes:
        sys.exit(f"error: no class folders in {src}")
    header, index, bodies, digest = None, [], [], hashlib.sha256()
    for c in classes:
        names = sorted(f for f in os.listdir(os.path.join(src, c)) if not f.startswith("."))[skip:]
        lengths = []
        for n in names:
            path = os.path.join(src, c, n)
            with open(path, "rb") as f:
                data = f.read()
            h, body = split(data, path)
            if header is None:
                header = h
            elif h != header:
                sys.exit(f"error: {path} has another header than the first file; cannot pack")
            digest.update(data)
            bodies.append(body)
            lengths.append(len(body))
        index.append({"class": c, "files": names, "lengths": lengths})
    meta = json.dumps({"header": len(header), "classes": index, "sha256": digest.hexdigest()})
    with open(out, "wb") as f:
        f.write(MAGIC + meta.encode() + b"\n" + header)
        for b in bodies:
            f.write(b)
    n = sum(len(c["files"]) for c in index)
    print(f"{out}: {n} images of {len(classes)} classes, {os.path.getsize(out)} bytes")


def unpack(path, dst):
    with open(path, "rb") as f:
        if f.read(len(MAGIC)) != MAGIC:
            sys.exit(f"error: {path} is not a jpegpack file")
        meta = json.loads(f.readline())
        header = f.read(meta["header"])
        digest, n = hashlib.sha256(), 0
        for c in meta["classes"]:
            os.makedirs(os.path.join(dst, c["class"]), exist_ok=True)
            for name, length in zip(c["files"], c["lengths"]):
                data = header + f.read(length)
                digest.update(data)
                with open(os.path.join(dst, c["class"], name), "wb") as out:
                    out.write(data)
                n += 1
    if digest.hexdigest() != meta["sha256"]:
        sys.exit(f"error: {path} unpacked to other bytes than were packed (truncated?)")
    print(f"{dst}: {n} images of {len(meta['classes'])} classes, checked")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("pack")
    a.add_argument("src")
    a.add_argument("out")
    a.add_argument("--skip", type=int, default=0)
    b = sub.add_parser("unpack")
    b.add_argument("pack")
    b.add_argument("dst")
    args = p.parse_args()
    if args.cmd == "pack":
        pack(args.src, args.out, args.skip)
    else:
        unpack(args.pack, args.dst)


if __name__ == "__main__":
    main()
