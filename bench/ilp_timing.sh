#!/usr/bin/env bash
# The ilp time target of issue 18: `search --method ilp` gives the whole 5-budget front (1.01, 1.25, 1.5,
# 2, 3 bits/weight: 1 bit itself is below the smallest policy, binary codes plus their scales; analysis
# included) in <= 1/3 of the wall time of one QSS search of the same model on the same machine.
# Per model, back to back, REPS times alternated: the ilp front with each proxy (PROXIES), then one QSS
# search at 1.5 bits/weight with the hard-regime recipe (1 epoch on the 12k-image split, no warm-up;
# bench/hard_regime.sh), with WA=1 ilp-fisher and QSS in the `wa` space at the BOPs of W3A3, and with
# QSS_DEFAULT=1 one QSS search with `search`'s default epochs. Wall and CPU (user + sys) seconds of each
# process go to results/ilp_timing.csv; on a loaded machine compare the CPU seconds of single-threaded
# runs (THREADS=1), which the load does not inflate.
#
# Usage: bench/ilp_timing.sh
# Env: MODELS ("lenet5 resnet20"), THREADS (1), REPS (2), PROXIES ("fisher hessian"), WA (1), QSS_DEFAULT (0),
#      BIN (build/autoqnn), CSV (results/ilp_timing.csv), FP_lenet5 / FP_resnet20 (runs/hard/MODEL_fp32_12k.pt,
#      the hard-regime FP32 models)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/autoqnn}
CSV=${CSV:-results/ilp_timing.csv}
THREADS=${THREADS:-1}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
mkdir -p results
[ -f "$CSV" ] || echo "model,run,rep,threads,wall_s,cpu_s,date" > "$CSV"
timed() {  # model run rep -- command...
  local model=$1 run=$2 rep=$3; shift 4
  /usr/bin/time -f "%e %U %S" -o "$OUT/t" "$@" > /dev/null 2> "$OUT/log" || { tail -5 "$OUT/log" >&2; exit 1; }
  read -r wall user sys < "$OUT/t"
  echo "$model,$run,$rep,$THREADS,$wall,$(python3 -c "print(round($user + $sys, 2))"),$(date -u +%FT%TZ)" | tee -a "$CSV" >&2
}
for model in ${MODELS:-lenet5 resnet20}; do
  fpvar="FP_$model"; fp=${!fpvar:-runs/hard/${model}_fp32_12k.pt}
  [ -f "$fp" ] || { echo "ilp_timing: no FP32 model $fp (bench/hard_regime.sh trains it)" >&2; exit 2; }
  common=(--model "$model" --dataset fashion-mnist --train-limit 12000 --threads "$THREADS" --seed 1 --checkpoint "$fp")
  lowbit=(--space configs/search_space/lowbit.json)
  for rep in $(seq 1 "${REPS:-2}"); do
    for proxy in ${PROXIES:-fisher hessian}; do
      timed "$model" "ilp-$proxy front (5 budgets)" "$rep" -- "$BIN" search "${common[@]}" "${lowbit[@]}" --method ilp --ilp-proxy "$proxy" \
        --budgets 1.01,1.25,1.5,2,3 --out "$OUT/front.json"
    done
    timed "$model" "qss 1.5 bits (1 epoch, no warm-up)" "$rep" -- "$BIN" search "${common[@]}" "${lowbit[@]}" --method qss --arch-lr 0.05 \
      --avg-bits 1.5 --epochs 1 --warmup 0 --out "$OUT/qss.json"
    if [ "${WA:-1}" = 1 ]; then  # weights + acts: the wa space at the BOPs of W3A3 (hard_regime.sh --wa)
      wa=(--space configs/search_space/wa.json --avg-bits 3 --wa-bits 3,3)
      timed "$model" "ilp-fisher W3A3 (wa space)" "$rep" -- "$BIN" search "${common[@]}" --method ilp --ilp-proxy fisher \
        "${wa[@]}" --out "$OUT/wa_ilp.json"
      timed "$model" "qss W3A3 (wa space, 1 epoch, no warm-up)" "$rep" -- "$BIN" search "${common[@]}" --method qss \
        --arch-lr 0.05 --epochs 1 --warmup 0 "${wa[@]}" --out "$OUT/wa_qss.json"
    fi
    if [ "${QSS_DEFAULT:-0}" = 1 ]; then
      timed "$model" "qss 1.5 bits (default epochs)" "$rep" -- "$BIN" search "${common[@]}" "${lowbit[@]}" --method qss --avg-bits 1.5 \
        --out "$OUT/qss_default.json"
    fi
  done
done
echo "ilp_timing: rows in $CSV" >&2
