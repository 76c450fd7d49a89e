#!/usr/bin/env python3
"""Checks the issue-7 targets on a bench/pareto.sh CSV (default results/pareto.csv) for one model.

usage: bench/pareto_targets.py [CSV] [MODEL]      (MODEL default resnet20)
Per searched (method, budget): mean ± std over seeds; the best uniform policy at the same budget (every layer at
B bits: the same or larger size, as the search stays under the budget; mean over seeds); the targets: >= that uniform, 2-bit: >= best uniform 2-bit + 1.0 and >= FP32 - 1.5,
3-bit: >= FP32 - 0.5, 4-bit: >= FP32 - 0.2, seed std <= 0.3. Prints a markdown table.
"""
import csv
import statistics
import sys


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "results/pareto.csv"
    model = sys.argv[2] if len(sys.argv) > 2 else "resnet20"
    rows = [r for r in csv.DictReader(open(path)) if r["model"] == model]
    if not rows:
        sys.exit(f"pareto_targets: no {model} rows in {path}")
    groups = {}
    for r in rows:
        groups.setdefault((r["method"], r["config"]), []).append(r)
    stat = {k: (statistics.mean(float(r["top1"]) * 100 for r in v),
                statistics.stdev([float(r["top1"]) * 100 for r in v]) if len(v) > 1 else 0.0,
                statistics.mean(float(r["weight_kib"]) for r in v), float(v[0]["avg_bits"])) for k, v in groups.items()}
    fp = stat[("fp32", "fp32")][0]
    uni = {cfg: s for (m, cfg), s in stat.items() if m == "uniform"}
    print(f"{model}: FP32 {fp:.2f} %\n")
    print("| searched | KiB | top-1 mean ± std | best uniform at B bits (≥ its size) | ≥ it? | accuracy target | met? | std ≤ 0.3? |")
    print("|---|---:|---:|---|---|---|---|---|")
    for (m, cfg), (mean, sd, kib, _) in sorted(stat.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        if m in ("fp32", "uniform"):
            continue
        b = int(cfg.replace("uniform", "").replace("-budget", ""))
        bigger = [(s[0], c) for c, s in uni.items() if s[2] >= kib - 1e-9 and abs(s[3] - b) < 0.05]
        bu = max(bigger) if bigger else None
        ge = "yes" if bu and mean >= bu[0] else ("no" if bu else "-")
        if b == 2:
            u2 = max((s[0], c) for c, s in uni.items() if abs(s[3] - 2) < 0.05)
            tgt = f"≥ {u2[0] + 1.0:.2f} ({u2[1]} + 1.0) and ≥ {fp - 1.5:.2f} (FP32 − 1.5)"
            ok = mean >= u2[0] + 1.0 and mean >= fp - 1.5
        else:
            d = 0.5 if b == 3 else 0.2
            tgt = f"≥ {fp - d:.2f} (FP32 − {d})"
            ok = mean >= fp - d
        bus = f"{bu[1]} {bu[0]:.2f}" if bu else "-"
        print(f"| {m} {b}-bit | {kib:.1f} | {mean:.2f} ± {sd:.2f} | {bus} | {ge} | {tgt} | {'yes' if ok else 'no'} | "
              f"{'yes' if sd <= 0.3 else 'no'} |")


if __name__ == "__main__":
    main()
