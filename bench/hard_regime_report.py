#!/usr/bin/env python3
"""Table, target check and plot of bench/hard_regime.sh (issue 18).

Reads results/hard_regime.csv; writes the table between the hard-regime markers of docs/results.md and,
when gnuplot is installed, results/hard_regime_lenet5.png. The uniform envelope at B bits/weight is the
straight line between the best 1-bit and the best 2-bit uniform policy (nominal bits, means over seeds).
Usage: bench/hard_regime_report.py [CSV]
"""
import csv
import os
import re
import shutil
import statistics
import subprocess
import sys

path = sys.argv[1] if len(sys.argv) > 1 else "results/hard_regime.csv"
rows = list(csv.DictReader(open(path)))
groups = {}
for r in rows:
    groups.setdefault((r["method"], r["config"]), []).append(r)


def stats(rs):
    t = [float(r["top1"]) * 100 for r in rs]
    return (statistics.mean(t), statistics.stdev(t) if len(t) > 1 else 0.0, len(t),
            statistics.mean(float(r["avg_bits"]) for r in rs), statistics.mean(float(r["weight_bytes"]) for r in rs),
            statistics.mean(float(r["search_s"]) for r in rs))


uniform = {cfg: stats(rs) for (m, cfg), rs in groups.items() if m == "uniform"}
def nominal_bits(spec):
    m = re.search(r":(\d+)", spec)
    return 2 if spec == "twn" else int(m.group(1)) if m else None

best = {}
for spec, s in uniform.items():
    b = nominal_bits(spec)
    if b in (1, 2) and (b not in best or s[0] > best[b][1][0]):
        best[b] = (spec, s)


def envelope(bits):
    if 1 not in best or 2 not in best:
        return None
    a1, a2 = best[1][1][0], best[2][1][0]
    return a1 + (a2 - a1) * (bits - 1.0)


def best_uniform_within(nbytes):
    c = [(s[0], spec) for spec, s in uniform.items() if s[4] <= nbytes]
    return max(c) if c else None


lines = ["| method | budget | avg bits | weight KiB | top-1 % (mean ± std) | seeds | search s | envelope % | vs envelope | "
         "vs best 2-bit | best uniform ≤ its size | target |",
         "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
for spec, s in sorted(uniform.items(), key=lambda kv: kv[1][3]):
    lines.append(f"| uniform | {spec} | {s[3]:.3f} | {s[4] / 1024:.2f} | {s[0]:.2f} ± {s[1]:.2f} | {s[2]} | – | – | – | – | – | – |")
two = best.get(2)
misses = []
for (m, cfg), rs in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    if m == "uniform":
        continue
    s = stats(rs)
    b = float(cfg.replace("bits", ""))
    env = envelope(b)
    bu = best_uniform_within(s[4])
    d_env = s[0] - env if env is not None else None
    d_two = s[0] - two[1][0] if two else None
    target = ""
    if b == 1.5 and env is not None:
        ok = d_env >= 1.5 and d_two >= 0
        target = "met" if ok else f"missed (needs env + 1.5 = {env + 1.5:.2f} and ≥ {two[1][0]:.2f})"
    elif b == 1.25 and env is not None:
        ok = d_env >= 2.0
        target = "met" if ok else f"missed (needs env + 2.0 = {env + 2.0:.2f})"
    if bu and s[0] < bu[0]:
        target += ("; " if target else "") + f"below uniform {bu[1]} ({bu[0]:.2f})"
    if "missed" in target or "below" in target:
        misses.append(f"{m} @ {cfg}: {target}")
    f = lambda v: "–" if v is None else f"{v:+.2f}"
    lines.append(f"| {m} | {cfg} | {s[3]:.3f} | {s[4] / 1024:.2f} | {s[0]:.2f} ± {s[1]:.2f} | {s[2]} | {s[5]:.0f} | "
                 f"{'–' if env is None else f'{env:.2f}'} | {f(d_env)} | {f(d_two)} | "
                 f"{'–' if not bu else f'{bu[1]} {bu[0]:.2f}'} | {target or '–'} |")
table = "\n".join(lines)
print(table)
print("\n".join(["", "misses:"] + misses))

doc = "docs/results.md"
s = open(doc).read()
block = "<!-- hard-regime:begin -->\n" + table + "\n<!-- hard-regime:end -->"
if "<!-- hard-regime:begin -->" in s:
    s = re.sub(r"<!-- hard-regime:begin -->.*?<!-- hard-regime:end -->", lambda _: block, s, flags=re.S)
    open(doc + ".tmp", "w").write(s)
    os.replace(doc + ".tmp", doc)

if shutil.which("gnuplot"):
    os.makedirs("runs/hard", exist_ok=True)
    series = {}
    for r in rows:
        series.setdefault(r["method"], []).append(f"{float(r['avg_bits'])} {float(r['top1']) * 100}")
    plots = []
    for m, pts in series.items():
        dat = f"runs/hard/plot_{m.replace('+', '_')}.dat"
        open(dat, "w").write("\n".join(pts) + "\n")
        plots.append(f'"{dat}" with points pt 7 ps 1.3 title "{m}"')
    if 1 in best and 2 in best:
        open("runs/hard/plot_envelope.dat", "w").write(
            f"{best[1][1][3]} {best[1][1][0]}\n{best[2][1][3]} {best[2][1][0]}\n")
        plots.append('"runs/hard/plot_envelope.dat" with lines dt 2 title "uniform envelope"')
    gp = f"""set terminal pngcairo size 900,600 noenhanced
set output "results/hard_regime_lenet5.png"
set grid
set xlabel "average weight bits"
set ylabel "test top-1 (%)"
set title "LeNet-5 / Fashion-MNIST, 1-2 bits/weight (quick recipe: 12k images, 1-epoch search + finetune)"
set key bottom right
plot {', '.join(plots)}
"""
    subprocess.run(["gnuplot"], input=gp.encode(), check=False)
