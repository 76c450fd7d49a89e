#!/usr/bin/env python3
"""Per-layer weight specs of the searched policies of a bench/pareto.sh run, as a markdown table.

usage: bench/pareto_layers.py OUT_DIR MODEL [SEED]   (e.g. runs/pareto resnet20 1)
One column per searched policy (method x budget), one row per layer: the spec and its bits; the last rows give
the policy's weight KiB and average bits. Reads OUT_DIR/<model>_<method>_b<B>_s<seed>.json.
"""
import json
import os
import sys


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out, model = sys.argv[1], sys.argv[2]
    seed = sys.argv[3] if len(sys.argv) > 3 else "1"
    cols = []
    for b in (2, 3, 4):
        for m, tag in (("qss", "QSS"), ("qpl", "QPL"), ("qss_qpl", "QSS+QPL")):
            p = os.path.join(out, f"{model}_{m}_b{b}_s{seed}.json")
            if os.path.exists(p):
                cols.append((f"{tag} {b}-bit", json.load(open(p))))
    if not cols:
        sys.exit(f"pareto_layers: no {model}_*_s{seed}.json policies in {out}")
    layers = list(cols[0][1]["layers"])
    print("| layer | params | " + " | ".join(c[0] for c in cols) + " |")
    print("|---|---:|" + "---|" * len(cols))
    for name in layers:
        l0 = cols[0][1]["layers"][name]
        print(f"| {name} | {l0['params']} | " + " | ".join(c[1]["layers"][name]["weight"] for c in cols) + " |")
    print("| **weight KiB** | | " + " | ".join(f"{c[1]['totals']['weight_bytes'] / 1024:.1f}" for c in cols) + " |")
    print("| **avg bits** | | " + " | ".join(f"{c[1]['totals']['avg_weight_bits']:.2f}" for c in cols) + " |")


if __name__ == "__main__":
    main()
