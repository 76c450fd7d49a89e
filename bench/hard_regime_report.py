#!/usr/bin/env python3
"""Tables, target checks and plots of bench/hard_regime.sh (issue 18).

Reads results/hard_regime.csv (weights only) and, next to it, results/hard_regime_wa.csv (weights +
activations under BOPs budgets, `hard_regime.sh --wa`). Writes the tables between the `hard-regime` and
`hard-regime-wa` markers of docs/results.md and, when gnuplot is installed, results/hard_regime_<model>.png
and results/hard_regime_wa_<model>.png (top-1 against BOPs).
The uniform envelope at B bits/weight is the straight line between the best 1-bit and the best 2-bit
uniform policy of the same model (nominal bits, means over seeds).
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
doc = "docs/results.md"
misses = []


def stats(rs, size_key):
    t = [float(r["top1"]) * 100 for r in rs]
    return {"mean": statistics.mean(t), "std": statistics.stdev(t) if len(t) > 1 else 0.0, "n": len(t),
            "bits": statistics.mean(float(r["avg_bits"]) for r in rs),
            "size": statistics.mean(float(r[size_key]) for r in rs),
            "search_s": statistics.mean(float(r["search_s"]) for r in rs)}


def grouped(rows):
    g = {}
    for r in rows:
        g.setdefault((r["model"], r["method"], r["config"]), []).append(r)
    return g


def failed_runs(csv_path):
    """(model, method, config) -> [seeds] of the searches that exited non-zero (hard_regime.sh's *_failed.csv)."""
    f = csv_path[:-4] + "_failed.csv"
    out = {}
    if os.path.exists(f):
        for r in csv.DictReader(open(f)):
            out.setdefault((r["model"], r["method"], r["config"]), []).append(r["seed"])
    return out


def failed_lines(failed, done, columns):
    """Table rows for failed searches: a note on a row that has other seeds, or a row of its own."""
    extra = []
    for (mo, m, cfg), seeds in sorted(failed.items()):
        note = f"search failed (seed {', '.join(seeds)})"
        misses.append(f"{mo} {m} @ {cfg}: {note}")
        if (mo, m, cfg) not in done:
            extra.append(f"| {mo} | {m} | {cfg} | " + " | ".join(["–"] * (columns - 4)) + f" | {note} |")
    return extra


def nominal_bits(spec):
    m = re.search(r":(\d+)", spec)
    return 2 if spec == "twn" else int(m.group(1)) if m else None


def replace_block(name, table):
    s = open(doc).read()
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    if begin not in s:
        return
    s = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: begin + "\n" + table + "\n" + end, s, flags=re.S)
    open(doc + ".tmp", "w").write(s)
    os.replace(doc + ".tmp", doc)


def std_check(st, target):
    """The issue's "seed std of every method <= 0.3 points", appended to a row's target cell."""
    if st["n"] > 1 and st["std"] > 0.3:
        return target + ("; " if target else "") + f"std {st['std']:.2f} > 0.3"
    return target


def fmt_delta(v):
    return "–" if v is None else f"{v:+.2f}"


# ---------------------------------------------------------------- weights only, weight budgets
rows = list(csv.DictReader(open(path)))
groups = grouped(rows)
models = sorted({r["model"] for r in rows}, key=lambda m: (m != "lenet5", m))
lines = ["| model | method | budget | avg bits | weight KiB | top-1 % (mean ± std) | seeds | search s | envelope % | "
         "vs envelope | vs best 2-bit | best uniform ≤ its size | target |",
         "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
best_by_model = {}
for model in models:
    uniform = {cfg: stats(rs, "weight_bytes") for (mo, m, cfg), rs in groups.items() if mo == model and m == "uniform"}
    best = {}
    for spec, s in uniform.items():
        b = nominal_bits(spec)
        if b in (1, 2) and (b not in best or s["mean"] > best[b][1]["mean"]):
            best[b] = (spec, s)
    best_by_model[model] = best

    def envelope(bits):
        if 1 not in best or 2 not in best:
            return None
        a1, a2 = best[1][1]["mean"], best[2][1]["mean"]
        return a1 + (a2 - a1) * (bits - 1.0)

    for spec, s in sorted(uniform.items(), key=lambda kv: kv[1]["bits"]):
        lines.append(f"| {model} | uniform | {spec} | {s['bits']:.3f} | {s['size'] / 1024:.2f} | "
                     f"{s['mean']:.2f} ± {s['std']:.2f} | {s['n']} | – | – | – | – | – | – |")
    two = best.get(2)
    for (mo, m, cfg), rs in sorted(groups.items(), key=lambda kv: (kv[0][2], kv[0][1])):
        if mo != model or m == "uniform":
            continue
        s = stats(rs, "weight_bytes")
        b = float(cfg.replace("bits", ""))
        env = envelope(b)
        within = [(u["mean"], spec) for spec, u in uniform.items() if u["size"] <= s["size"]]
        bu = max(within) if within else None
        d_env = s["mean"] - env if env is not None else None
        d_two = s["mean"] - two[1]["mean"] if two else None
        target = ""
        if b == 1.5 and env is not None and two:
            ok = d_env >= 1.5 and d_two >= 0
            target = "met" if ok else f"missed (needs env + 1.5 = {env + 1.5:.2f} and ≥ {two[1]['mean']:.2f})"
        elif b == 1.25 and env is not None:
            target = "met" if d_env >= 2.0 else f"missed (needs env + 2.0 = {env + 2.0:.2f})"
        if bu and s["mean"] < bu[0]:
            target += ("; " if target else "") + f"below uniform {bu[1]} ({bu[0]:.2f})"
        target = std_check(s, target)
        if "missed" in target or "below" in target or "std" in target:
            misses.append(f"{model} {m} @ {cfg}: {target}")
        lines.append(f"| {model} | {m} | {cfg} | {s['bits']:.3f} | {s['size'] / 1024:.2f} | {s['mean']:.2f} ± {s['std']:.2f} | "
                     f"{s['n']} | {s['search_s']:.0f} | {'–' if env is None else f'{env:.2f}'} | {fmt_delta(d_env)} | "
                     f"{fmt_delta(d_two)} | {'–' if not bu else f'{bu[1]} {bu[0]:.2f}'} | {target or '–'} |")
lines += failed_lines(failed_runs(path), groups, 13)
table = "\n".join(lines)
print(table)
replace_block("hard-regime", table)

# ---------------------------------------------------------------- W+A under BOPs budgets
wa_path = os.path.join(os.path.dirname(path) or ".", "hard_regime_wa.csv")
if os.path.exists(wa_path):
    wg = grouped(list(csv.DictReader(open(wa_path))))
    wl = ["| model | method | budget | avg weight bits | MBOPs | top-1 % (mean ± std) | seeds | search s | "
          "best uniform at these BOPs | vs it | target |",
          "|---|---|---|---:|---:|---:|---:|---:|---|---:|---|"]
    best_u = {}
    for (mo, m, cfg), rs in wg.items():
        if m != "uniform":
            continue
        k = cfg.split(":", 1)[0]
        st = stats(rs, "bops")
        if (mo, k) not in best_u or st["mean"] > best_u[(mo, k)][1]["mean"]:
            best_u[(mo, k)] = (cfg, st)

    def order(kv):
        mo, m, cfg = kv[0]
        return (mo != "lenet5", mo, -int(re.search(r"W(\d+)", cfg).group(1)), m != "uniform", m, cfg)

    for (mo, m, cfg), rs in sorted(wg.items(), key=order):
        st = stats(rs, "bops")
        k = cfg.split(":", 1)[0]
        if m == "uniform":
            wl.append(f"| {mo} | uniform | {cfg} | {st['bits']:.3f} | {st['size'] / 1e6:.3f} | "
                      f"{st['mean']:.2f} ± {st['std']:.2f} | {st['n']} | – | – | – | – |")
            continue
        bu = best_u.get((mo, k))
        d = st["mean"] - bu[1]["mean"] if bu else None
        need = {"W3A3": 1.0, "W2A2": 2.0}.get(k)
        target = "–"
        if bu and need is not None:
            target = "met" if d >= need else f"missed (needs {bu[1]['mean'] + need:.2f})"
        elif bu and d < 0:
            target = f"below uniform {bu[0]}"
        target = std_check(st, "" if target == "–" else target) or "–"
        if "missed" in target or "below" in target or "std" in target:
            misses.append(f"{mo} {m} @ {cfg}: {target}")
        wl.append(f"| {mo} | {m} | {cfg} | {st['bits']:.3f} | {st['size'] / 1e6:.3f} | {st['mean']:.2f} ± {st['std']:.2f} | "
                  f"{st['n']} | {st['search_s']:.0f} | {bu[0] + ' ' + format(bu[1]['mean'], '.2f') if bu else '–'} | "
                  f"{fmt_delta(d)} | {target} |")
    wl += failed_lines(failed_runs(wa_path), wg, 11)
    wtable = "\n".join(wl)
    print("\n" + wtable)
    replace_block("hard-regime-wa", wtable)

print("\n".join(["", "misses:"] + misses))


def plot(out, title, xlabel, series, lines=(), logx=False):
    """One PNG: a point series per method (name -> ["x y", ...]) and optional line series (name, points)."""
    stem = re.sub(r"[^A-Za-z0-9]+", "_", os.path.basename(out).rsplit(".", 1)[0])
    plots = []
    for kind, items in (("points pt 7 ps 1.2", sorted(series.items())), ("lines dt 2", list(lines))):
        for name, pts in items:
            dat = f"runs/hard/plot_{stem}_{re.sub(r'[^A-Za-z0-9]+', '_', name)}.dat"
            open(dat, "w").write("\n".join(pts) + "\n")
            plots.append(f'"{dat}" with {kind} title "{name}"')
    gp = "\n".join(["set terminal pngcairo size 900,600 noenhanced", f'set output "{out}"', "set grid",
                    "set logscale x 2" if logx else "", f'set xlabel "{xlabel}"', 'set ylabel "test top-1 (%)"',
                    f'set title "{title}"', "set key bottom right", "plot " + ", ".join(plots), ""])
    subprocess.run(["gnuplot"], input=gp.encode(), check=False)


if shutil.which("gnuplot"):
    os.makedirs("runs/hard", exist_ok=True)
    for model in models:
        series = {}
        for r in rows:
            if r["model"] == model:
                series.setdefault(r["method"], []).append(f"{float(r['avg_bits'])} {float(r['top1']) * 100}")
        best = best_by_model[model]
        env = []
        if 1 in best and 2 in best:
            env = [("uniform envelope", [f"{best[b][1]['bits']} {best[b][1]['mean']}" for b in (1, 2)])]
        plot(f"results/hard_regime_{model}.png",
             f"{model} / Fashion-MNIST, 1-2 bits/weight (quick recipe: 12k images, 1-epoch search + finetune)",
             "average weight bits", series, env)
    # W+A: accuracy against BOPs, one point per run
    if os.path.exists(wa_path):
        wrows = list(csv.DictReader(open(wa_path)))
        for model in sorted({r["model"] for r in wrows}):
            series = {}
            for r in wrows:
                if r["model"] == model:
                    name = r["method"] if r["method"] != "uniform" else "uniform " + r["config"].split(":", 1)[1]
                    series.setdefault(name, []).append(f"{float(r['bops']) / 1e6} {float(r['top1']) * 100}")
            plot(f"results/hard_regime_wa_{model}.png",
                 f"{model} / Fashion-MNIST, weights + activations under BOPs budgets (quick recipe)",
                 "MBOPs per image (log scale)", series, logx=True)
