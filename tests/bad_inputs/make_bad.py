#!/usr/bin/env python3
"""Writes one bad input of the corpus (tests/bad_inputs/cases.txt): make_bad.py KIND OUT [IN]."""
import json
import os
import struct
import sys
import zipfile
import zlib


def policy(path):
    with open(path) as f:
        return json.load(f)


def first_layer(p):
    return min(p["layers"], key=lambda k: p["layers"][k]["index"])


def png_bytes(w, h, value):
    """An 8-bit gray PNG of w x h pixels, every pixel `value` (the standard library only)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + bytes([value]) * w for _ in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def image_folder(out, variant):
    """A one-tree folder data set OUT/<cat|dog>/*.png of 28 x 28 gray images, spoiled by `variant`."""
    for c in ("cat", "dog"):
        os.makedirs(os.path.join(out, c), exist_ok=True)
        for k in range(4):
            with open(os.path.join(out, c, "%d.png" % k), "wb") as f:
                f.write(png_bytes(28, 28, 40 * k + (100 if c == "dog" else 0)))
    bad = os.path.join(out, "dog", "bad.png")
    if variant == "corrupt":  # the PNG signature, then garbage
        open(bad, "wb").write(b"\x89PNG\r\n\x1a\n" + b"x" * 64)
    elif variant == "notimage":  # a text file named .png
        open(bad, "w").write("this is not an image\n")
    elif variant == "truncated":  # a noisy PNG cut in half: the header reads, the pixels do not
        data = png_bytes(28, 28, 0)
        noisy = b"".join(b"\x00" + bytes((x * 37 + y * 101) % 251 for x in range(28)) for y in range(28))
        data = data[:33] + struct.pack(">I", len(zlib.compress(noisy, 0))) + b"IDAT" + zlib.compress(noisy, 0)
        open(bad, "wb").write(data[:len(data) // 2])
    elif variant == "mixed":  # one image of another size
        open(bad, "wb").write(png_bytes(30, 30, 7))
    elif variant == "empty_class":  # a class folder without images
        os.makedirs(os.path.join(out, "emu"), exist_ok=True)
        open(os.path.join(out, "emu", "README.txt"), "w").write("no images\n")
    elif variant != "good":
        sys.exit("unknown image_folder variant " + variant)


def main():
    kind, out = sys.argv[1], sys.argv[2]
    src = sys.argv[3] if len(sys.argv) > 3 else None
    text = None
    if kind == "long_layer_name":  # a 10 000-character layer name
        p = policy(src)
        k = first_layer(p)
        p["layers"]["L" * 10000] = p["layers"].pop(k)
        text = json.dumps(p)
    elif kind == "long_model_name":  # a 60 000-character model name
        p = policy(src)
        p["model"]["name"] = "M" * 60000
        text = json.dumps(p)
    elif kind == "deep":  # nested 200 000 levels deep
        text = "[" * 200000 + "]" * 200000
    elif kind == "dup_layer":  # a layer listed twice (JSON duplicate key)
        p = policy(src)
        k = first_layer(p)
        body = json.dumps(p["layers"][k])
        rest = json.dumps(p)
        text = rest.replace('"layers": {', '"layers": {"%s": %s, ' % (k, body), 1)
    elif kind == "permuted":  # the indices of the first two layers swapped
        p = policy(src)
        a, b = sorted(p["layers"], key=lambda k: p["layers"][k]["index"])[:2]
        p["layers"][a]["index"], p["layers"][b]["index"] = p["layers"][b]["index"], p["layers"][a]["index"]
        text = json.dumps(p, indent=2)
    elif kind == "overflow":  # a number no double holds
        p = policy(src)
        p["layers"][first_layer(p)]["weight_bits"] = 12345.5
        text = json.dumps(p, indent=2).replace("12345.5", "1e999")
    elif kind in ("weight_axis", "act_axis", "nan_momentum", "nan_r"):
        p = policy(src)
        layer = p["layers"][first_layer(p)]
        if kind == "weight_axis":
            layer["weight"] = "fixed:4:per_channel:axis=9"
        elif kind == "act_axis":
            layer["act"] = "uniform:8:per_channel:axis=7"
        elif kind == "nan_momentum":
            layer["act"] = "uniform:8:momentum=nan"
        else:
            layer["weight"] = "fixed:4:r=nan"
        text = json.dumps(p, indent=2)
    elif kind == "image_folder":  # make_bad.py image_folder DIR VARIANT
        image_folder(out, src)
        return
    elif kind == "flip":  # one byte of the first tensor record of a checkpoint inverted
        data = bytearray(open(src, "rb").read())
        z = zipfile.ZipFile(src)
        info = [i for i in z.infolist() if "/data/" in i.filename and i.file_size >= 16][0]
        n, m = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
        off = info.header_offset + 30 + n + m + info.file_size // 2
        data[off] ^= 0xFF
        open(out, "wb").write(bytes(data))
        return
    elif kind == "pickle_flip":  # one byte of data.pkl inverted (how fuzz_checkpoint crashed LibTorch)
        data = bytearray(open(src, "rb").read())
        info = zipfile.ZipFile(src).getinfo("archive/data.pkl")
        n, m = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
        data[info.header_offset + 30 + n + m + info.file_size // 2] ^= 0xFF
        open(out, "wb").write(bytes(data))
        return
    elif kind == "truncate":  # the first half of a checkpoint (an interrupted copy)
        data = open(src, "rb").read()
        open(out, "wb").write(data[:len(data) // 2])
        return
    else:
        sys.exit("unknown kind " + kind)
    with open(out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
