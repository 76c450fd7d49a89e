"""Makes a small image folder (the ImageFolder layout) for `autoqnn --dataset folder:DIR` (docs/data.md).

Usage: /usr/bin/python3 examples/image_folder.py OUT_DIR [--per-class N] [--test-per-class M] [--source DIR]

Writes OUT_DIR/train/<class>/<i>.png and OUT_DIR/test/<class>/<i>.png: 28x28 gray PNGs, the first N
(default 200) and M (default 50) images of each class of Fashion-MNIST (the Debian package
dataset-fashion-mnist, /usr/share/datasets/fashion-mnist). Only the Python standard library is used.
"""
import argparse
import gzip
import os
import struct
import zlib

CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]


def read_idx(path):
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    magic, n = struct.unpack(">II", data[:8])
    if magic == 0x803:
        rows, cols = struct.unpack(">II", data[8:16])
        return [data[16 + i * rows * cols:16 + (i + 1) * rows * cols] for i in range(n)], rows, cols
    return list(data[8:8 + n]), 0, 0


def png(pixels, w, h):
    """An 8-bit gray PNG."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + pixels[y * w:(y + 1) * w] for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def write_split(out, split, images, labels, per_class, rows, cols):
    count = [0] * len(CLASSES)
    for img, lab in zip(images, labels):
        if count[lab] >= per_class:
            continue
        d = os.path.join(out, split, CLASSES[lab])
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "%05d.png" % count[lab]), "wb") as f:
            f.write(png(img, cols, rows))
        count[lab] += 1
        if min(count) >= per_class:
            break
    return sum(count)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--per-class", type=int, default=200)
    ap.add_argument("--test-per-class", type=int, default=50)
    ap.add_argument("--source", default="/usr/share/datasets/fashion-mnist")
    a = ap.parse_args()
    for split, prefix, n in (("train", "train", a.per_class), ("test", "t10k", a.test_per_class)):
        images, rows, cols = read_idx(os.path.join(a.source, prefix + "-images-idx3-ubyte.gz"))
        labels, _, _ = read_idx(os.path.join(a.source, prefix + "-labels-idx1-ubyte.gz"))
        print("%s: %d images" % (split, write_split(a.out, split, images, labels, n, rows, cols)))
    print(a.out)


if __name__ == "__main__":
    main()
