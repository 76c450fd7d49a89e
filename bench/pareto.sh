#!/usr/bin/env bash
# Accuracy per byte on Fashion-MNIST (issue 7): FP32 baseline, uniform weight baselines (every listed scheme
# at 2/3/4 bits), and QSS / QPL / QSS+QPL searches at the weight budgets of uniform 2-, 3- and 4-bit, every
# policy finetuned with the same recipe, test top-1 for several seeds. Activations stay fp32 throughout
# (the stated activation setting). Writes results/pareto.csv, results/pareto_<model>.png (gnuplot) and
# refreshes the table between the pareto markers in docs/results.md.
#
# The 1-2 bits/weight regime with the quick recipe (budget fill, --method ilp): bench/hard_regime.sh.
#
# Usage: bench/pareto.sh [--quick] [--models "lenet5 resnet20"] [--seeds "1 2 3"]
#   --quick: LeNet-5 only, 1 seed, 3 uniform schemes, 12k training images, 1-epoch search and finetune
#            (about 30 minutes on 2 idle cores); the full mode runs for hours on CPU, minutes on a GPU.
# Env: BIN (autoqnn binary; default: build with scripts/build.sh), DEVICE (cpu|cuda), THREADS, SCHEMES,
#      ARCH_LR (QSS, 0.05), BIT_LR (QPL, 0.1), QPL_SCHEME (vecq:4), OUT (runs/pareto); full mode only:
#      TRAIN_LIMIT (0 = all), SEARCH_EPOCHS (6), WARMUP (1), FT_EPOCHS (5) to scale a CPU run down.
# Rows of models not in this run are kept in results/pareto.csv (and the table), so the models can be run
# separately; results/pareto_runs.tsv records each model's last run (mode, settings, machine, wall time).
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK=0; MODELS=""; SEEDS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --models) MODELS=$2; shift ;;
    --seeds) SEEDS=$2; shift ;;
    *) echo "pareto.sh: unknown argument '$1' (use --quick, --models, --seeds)" >&2; exit 2 ;;
  esac
  shift
done
if [ -z "${BIN:-}" ]; then
  bash scripts/install-deps.sh gnuplot-nox >&2
  bash scripts/build.sh >&2
  BIN=build/autoqnn
else
  command -v gnuplot >/dev/null || bash scripts/install-deps.sh gnuplot-nox >&2 || true
fi
DEVICE=${DEVICE:-cpu}
T0=$(date +%s)
if [ "$QUICK" = 1 ]; then
  MODELS=${MODELS:-lenet5}; SEEDS=${SEEDS:-1}
  SCHEMES=${SCHEMES:-"fixed twn vecq"}
  LIMIT=12000; SEARCH_EPOCHS=1; WARMUP=0; FT_EPOCHS=1
else
  MODELS=${MODELS:-"lenet5 resnet20"}; SEEDS=${SEEDS:-"1 2 3"}
  SCHEMES=${SCHEMES:-"fixed uniform twn vecq mul2q esb apot"}
  LIMIT=${TRAIN_LIMIT:-0}; SEARCH_EPOCHS=${SEARCH_EPOCHS:-6}; WARMUP=${WARMUP:-1}; FT_EPOCHS=${FT_EPOCHS:-5}
fi
OUT=${OUT:-runs/pareto}
ARCH_LR=${ARCH_LR:-0.05}; BIT_LR=${BIT_LR:-0.1}; QPL_SCHEME=${QPL_SCHEME:-vecq:4}
mkdir -p "$OUT" results
CSV=results/pareto.csv
TMPCSV="$CSV.tmp.$$"
echo "model,method,config,seed,weight_bytes,weight_kib,avg_bits,top1" > "$TMPCSV"
common=(--dataset fashion-mnist --train-limit "$LIMIT" --device "$DEVICE")
[ -n "${THREADS:-}" ] && common+=(--threads "$THREADS")
jget() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

spec_for() {  # scheme bits -> spec ("" when the scheme has no such bitwidth)
  local s=$1 b=$2
  case "$s" in
    twn) [ "$b" = 2 ] && echo twn || echo "" ;;
    esb) [ "$b" -ge 3 ] && echo "esb:$b" || echo "esb:2:k=0" ;;
    apot) [ "$b" -ge 3 ] && echo "apot:$b" || echo "" ;;
    *) echo "$s:$b" ;;
  esac
}

finetune_eval() {  # model name policy seed method config
  local model=$1 name=$2 pol=$3 seed=$4 method=$5 config=$6
  "$BIN" finetune --model "$model" "${common[@]}" --seed "$seed" --checkpoint "runs/${model}_fp32.pt" \
    --policy "$pol" --epochs "$FT_EPOCHS" --out "$OUT/$name.pt" >&2
  local top1 bytes bits
  top1=$("$BIN" eval --model "$model" --checkpoint "$OUT/$name.pt" --device "$DEVICE" --json | \
         python3 -c 'import json,sys; print(json.load(sys.stdin)["top1"])')
  bytes=$(jget "$pol" "d['totals']['weight_bytes']")
  bits=$(jget "$pol" "round(d['totals']['avg_weight_bits'], 4)")
  echo "$model,$method,$config,$seed,$bytes,$(python3 -c "print(round($bytes/1024, 3))"),$bits,$top1" | tee -a "$TMPCSV" >&2
}

for model in $MODELS; do
  FP=runs/${model}_fp32.pt
  if [ ! -f "$FP" ]; then
    echo "pareto: training the FP32 $model baseline (scripts/train_baselines.sh recipe)" >&2
    if [ "$model" = lenet5 ]; then
      "$BIN" train --model lenet5 "${common[@]}" --epochs $([ "$QUICK" = 1 ] && echo 3 || echo 10) --lr 0.05 --seed 1 --out "$FP" >&2
    else
      "$BIN" train --model "$model" "${common[@]}" --epochs 30 --lr 0.1 --crop-padding 2 --hflip --seed 1 --out "$FP" >&2
    fi
  fi
  fp_top1=$("$BIN" eval --model "$model" --checkpoint "$FP" --device "$DEVICE" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["top1"])')
  "$BIN" policy uniform --model "$model" --weight fp32 --out "$OUT/${model}_fp32.json" >&2
  fpb=$(jget "$OUT/${model}_fp32.json" "d['totals']['weight_bytes']")
  echo "$model,fp32,fp32,1,$fpb,$(python3 -c "print(round($fpb/1024, 3))"),32,$fp_top1" | tee -a "$TMPCSV" >&2
  for b in 2 3 4; do
    for s in $SCHEMES; do
      spec=$(spec_for "$s" "$b"); [ -z "$spec" ] && continue
      pol="$OUT/${model}_u_${spec//[:=]/_}.json"
      "$BIN" policy uniform --model "$model" --weight "$spec" --out "$pol" >&2
      for seed in $SEEDS; do finetune_eval "$model" "${model}_u_${spec//[:=]/_}_s$seed" "$pol" "$seed" uniform "$spec"; done
    done
    # the budget: uniform fixed-point at b bits (codes + one scale per tensor)
    "$BIN" policy uniform --model "$model" --weight "fixed:$b" --out "$OUT/${model}_budget$b.json" >&2
    kib=$(jget "$OUT/${model}_budget$b.json" "d['totals']['weight_bytes'] / 1024")
    for seed in $SEEDS; do
      for method in qss qpl qss+qpl; do
        # QSS stages: --arch-lr; QPL: one scheme with a wide bit range (vecq: 1..8), bits start at the budget's
        extra=(--arch-lr "$ARCH_LR")
        [ "$method" = qpl ] && extra=(--qpl-scheme "$QPL_SCHEME" --init-bits "$b" --bit-lr "$BIT_LR")
        [ "$method" = qss+qpl ] && extra+=(--bit-lr "$BIT_LR")
        name="${model}_${method/+/_}_b${b}_s$seed"
        "$BIN" search --model "$model" "${common[@]}" --seed "$seed" --checkpoint "$FP" --method "$method" "${extra[@]}" \
          --space configs/search_space/lowbit.json --budget-kib "$kib" --epochs "$SEARCH_EPOCHS" --warmup "$WARMUP" \
          --out "$OUT/$name.json" --log "$OUT/$name.csv" >&2
        finetune_eval "$model" "$name" "$OUT/$name.json" "$seed" "$method" "uniform${b}-budget"
      done
    done
  done
done
WALL=$(( $(date +%s) - T0 ))
# keep other models' rows from earlier runs (this run replaces only its own models' rows)
if [ -f "$CSV" ]; then
  awk -F, -v M=" $MODELS " 'NR>1 && index(M, " "$1" ")==0' "$CSV" >> "$TMPCSV"
fi
mv "$TMPCSV" "$CSV"
RUNS=results/pareto_runs.tsv
[ -f "$RUNS" ] || printf 'model\tmode\tseeds\tschemes\ttrain_limit\tsearch_epochs\twarmup\tft_epochs\tdevice\tmachine\twall_s\tdate\n' > "$RUNS"
for model in $MODELS; do
  awk -F'\t' -v M="$model" 'NR==1 || $1!=M' "$RUNS" > "$RUNS.tmp.$$"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$model" "$([ "$QUICK" = 1 ] && echo quick || echo full)" \
    "$SEEDS" "$SCHEMES" "$LIMIT" "$SEARCH_EPOCHS" "$WARMUP" "$FT_EPOCHS" "$DEVICE" "$(hostname) ($(nproc) cores)" "$WALL" \
    "$(date -u +%Y-%m-%d)" >> "$RUNS.tmp.$$"
  mv "$RUNS.tmp.$$" "$RUNS"
done
echo "pareto: wrote $CSV in $WALL s" >&2

# plots: top-1 vs weight KiB, one series per method (best seed mean per config)
if command -v gnuplot >/dev/null; then
  for model in $MODELS; do
    for m in uniform qss qpl qss+qpl; do
      awk -F, -v M="$model" -v K="$m" 'NR>1 && $1==M && $2==K {print $6, $8*100}' "$CSV" > "$OUT/plot_${model}_${m/+/_}.dat"
    done
    # frame: from 1 point under the worst searched policy (uniform outliers such as fixed:2 fall below it)
    ymin=${YMIN:-$(awk -F, -v M="$model" 'NR>1 && $1==M && $2!="uniform" && $2!="fp32" {v=$8*100; if (m=="" || v<m) m=v} END {printf "%.1f", (m==""?80:m-1)}' "$CSV")}
    fp=$(awk -F, -v M="$model" 'NR>1 && $1==M && $2=="fp32" {printf "%.2f", $8*100}' "$CSV")
    gnuplot <<GP || echo "pareto: gnuplot failed" >&2
set terminal pngcairo size 900,600 noenhanced
set output "results/pareto_${model}.png"
set logscale x
set offsets 0, 0, 0.5, 0.5
set grid
set yrange [${ymin}:*]
set xlabel "weight KiB (codes + scales/tables)"
set ylabel "test top-1 (%)"
set title "${model} / Fashion-MNIST: accuracy per byte (FP32 ${fp} %)"
set key bottom right
plot "$OUT/plot_${model}_uniform.dat" with points pt 7 title "uniform", \
     "$OUT/plot_${model}_qss.dat" with points pt 5 title "QSS", \
     "$OUT/plot_${model}_qpl.dat" with points pt 9 title "QPL", \
     "$OUT/plot_${model}_qss_qpl.dat" with points pt 11 title "QSS+QPL", \
     ${fp:-100} with lines dt 2 title "FP32"
GP
  done
fi

# table (mean ± std over seeds) into docs/results.md between the markers
python3 - "$CSV" <<'PY'
import csv, statistics, sys, platform, os, re, subprocess
path = sys.argv[1]
rows = list(csv.DictReader(open(path)))
groups = {}
for r in rows:
    groups.setdefault((r["model"], r["method"], r["config"]), []).append(r)
lines = ["| model | method | config | weight KiB | avg bits | top-1 % (mean ± std) | seeds |", "|---|---|---|---:|---:|---:|---:|"]
for (m, meth, cfg), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], float(kv[1][0]["weight_kib"]))):
    t = [float(r["top1"]) * 100 for r in rs]
    kib = statistics.mean(float(r["weight_kib"]) for r in rs)
    bits = statistics.mean(float(r["avg_bits"]) for r in rs)
    sd = statistics.stdev(t) if len(t) > 1 else 0.0
    lines.append(f"| {m} | {meth} | {cfg} | {kib:.2f} | {bits:.2f} | {statistics.mean(t):.2f} ± {sd:.2f} | {len(t)} |")
runs = list(csv.DictReader(open("results/pareto_runs.tsv"), delimiter="\t")) if os.path.exists("results/pareto_runs.tsv") else []
head = "Generated by `bench/pareto.sh`; CSV `results/pareto.csv`, plots `results/pareto_<model>.png`. Runs:\n\n"
for r in runs:
    w = int(r["wall_s"])
    head += (f"- {r['model']}: {r['mode']} mode on {r['machine']}, device {r['device']}, {r['date']}; seeds {r['seeds']}; "
             f"uniform schemes {r['schemes']}; train limit {r['train_limit'] or 0} (0 = all 60000); search {r['search_epochs']} "
             f"epochs + {r['warmup']} warm-up; finetune {r['ft_epochs']} epochs; wall time {w // 60} min {w % 60} s.\n")
block = "<!-- pareto:begin -->\n" + head + "\n\n" + "\n".join(lines) + "\n<!-- pareto:end -->"
doc = "docs/results.md"
s = open(doc).read() if os.path.exists(doc) else "# Results\n"
if "<!-- pareto:begin -->" in s:
    s = re.sub(r"<!-- pareto:begin -->.*?<!-- pareto:end -->", lambda _: block, s, flags=re.S)
else:
    s += "\n## Accuracy per byte (bench/pareto.sh)\n\n" + block + "\n"
tmp = doc + ".tmp"
open(tmp, "w").write(s)
os.replace(tmp, doc)
print("\n".join(lines))
PY
