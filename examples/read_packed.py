#!/usr/bin/env python3
"""Decodes an `autoqnn export` packed safetensors file with numpy only (the layout of docs/policy.md,
"Packed export"), as a reader in another language would.

    python3 examples/read_packed.py model.safetensors            # per-layer summary
    python3 examples/read_packed.py model.safetensors --out DIR  # DIR/<layer>.f32: dequantized weights (raw float32)
    python3 examples/read_packed.py model.safetensors --compare DIR
        # DIR/<layer>.f32 (raw float32, e.g. written by the tests from the model): exit 1 unless bit-identical
"""
import json
import os
import struct
import sys

import numpy as np

DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
          "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        tensors[name] = np.frombuffer(data[b:end], dtype=DTYPES[e["dtype"]]).reshape(e["shape"])
    return meta, tensors


def unpack_bits(packed, count, bits):
    """Code i occupies stream bits [i*bits, (i+1)*bits), LSB first; stream bit j = bit j%8 of byte j//8."""
    stream = np.unpackbits(packed, bitorder="little")[: count * bits].reshape(count, bits).astype(np.int64)
    return (stream << np.arange(bits, dtype=np.int64)).sum(axis=1)


def dequantize(codes, part, t, prefix):
    """w = T[code] * scale + offset in float32, T = table (row of the element's channel) or k + grid_base."""
    axis = part["axis"]
    shape = part["shape"]

    def along(v):  # [] or [C] -> broadcastable along `axis`
        v = np.asarray(v, dtype=np.float32)
        if v.ndim == 0:
            return v
        s = [1] * len(shape)
        s[axis] = v.shape[0]
        return v.reshape(s)

    if part["table"]:
        table = t[prefix + "table"]
        if table.ndim == 1:
            levels = table[codes]
        else:  # one row per channel along `axis`
            rows = np.arange(shape[axis]).reshape([-1 if d == axis else 1 for d in range(len(shape))])
            levels = table[np.broadcast_to(rows, codes.shape), codes]
    else:
        levels = (codes + part["grid_base"]).astype(np.float32)
    w = levels.astype(np.float32) * along(t[prefix + "scale"])
    if part["offset"]:
        w = w + along(t[prefix + "offset"])
    return w.astype(np.float32)


def decode(path):
    meta, t = read_safetensors(path)
    if meta.get("format") != "autoqnn-packed":
        sys.exit(f"{path}: not an autoqnn packed export")
    layers = json.loads(meta["layers"])
    out = {}
    for name, lm in layers.items():
        if lm["spec"] == "fp32":
            out[name] = t[name + ".weight"]
            continue
        parts = lm.get("parts", [lm])
        pieces = []
        for i, part in enumerate(parts):
            prefix = name + (".weight." if len(parts) == 1 else f".weight.ch{i}.")
            shape = part["shape"]
            codes = unpack_bits(t[prefix + "codes"], int(np.prod(shape)), part["code_bits"]).reshape(shape)
            pieces.append(dequantize(codes, part, t, prefix))
        w = np.concatenate(pieces, axis=0)
        corr = lm.get("correction", "none")
        cs = [-1] + [1] * (w.ndim - 1)
        if corr == "mean+var":
            w = w * t[name + ".weight.corr_scale"].reshape(cs)
        if corr in ("mean", "mean+var"):
            w = w + t[name + ".weight.corr_shift"].reshape(cs)
        out[name] = w.astype(np.float32)
    return meta, out


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    meta, weights = decode(sys.argv[1])
    specs = {name: lm["spec"] for name, lm in json.loads(meta["layers"]).items()}
    for name, w in weights.items():
        print(f"{name:20s} {specs.get(name, '?'):24s} {str(list(w.shape)):18s} {len(np.unique(w)):5d} distinct values")
    if len(sys.argv) == 4 and sys.argv[2] == "--out":
        os.makedirs(sys.argv[3], exist_ok=True)
        for name, w in weights.items():
            w.tofile(os.path.join(sys.argv[3], name + ".f32"))
    if len(sys.argv) == 4 and sys.argv[2] == "--compare":
        bad = 0
        for name, w in weights.items():
            ref = np.fromfile(os.path.join(sys.argv[3], name + ".f32"), dtype=np.float32)
            same = ref.size == w.size and np.array_equal(ref, w.reshape(-1))  # +0 == -0, as export --verify
            print(f"{name}: {'bit-identical' if same else 'DIFFERS'}")
            bad += not same
        print(f"{len(weights) - bad} passed, {bad} failed")
        sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
