#!/usr/bin/env bash
# Uniform-policy baselines on LeNet-5 / Fashion-MNIST: for every weight scheme at 2/3/4/8 bits (where the
# scheme has that bitwidth; binary at its only width, 1) run
#   policy uniform -> convert -> eval -> finetune (EPOCHS) -> eval -> export --verify
# and write a markdown table (accuracy vs weight bytes) into docs/results.md between the markers
#   <!-- uniform-table:begin --> ... <!-- uniform-table:end -->   (the rest of the file is kept).
#
# Environment (all optional):
#   AUTOQNN   binary                    (default: build/autoqnn)
#   FP        FP32 checkpoint           (default: runs/lenet5_fp32.pt; trained with `autoqnn train` if absent)
#   OUT_DIR   work directory            (default: runs/uniform)
#   EPOCHS    finetuning epochs         (default: 2)
#   SPECS     weight specs to run       (default: every scheme x 2 3 4 8 + binary:1, esb:2:k=0)
#   ACT       activation spec           (default: fp32; the table is about weight storage)
#   ARGS      extra flags for every data-reading verb, e.g. "--train-limit 6000 --threads 2"
#   RESULTS   markdown file to update   (default: docs/results.md)
# Results accumulate in $OUT_DIR/results.jsonl; a spec already there is not run again (delete the line
# or the file to redo it), so an interrupted run continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${AUTOQNN:-build/autoqnn}
FP=${FP:-runs/lenet5_fp32.pt}
OUT_DIR=${OUT_DIR:-runs/uniform}
EPOCHS=${EPOCHS:-2}
ACT=${ACT:-fp32}
ARGS=${ARGS:-}
RESULTS=${RESULTS:-docs/results.md}
SCHEMES="binary twn fixed uniform zoomq resq vecq mul2q clipq pot esb apot afp sat"
if [ -z "${SPECS:-}" ]; then
  SPECS="binary:1 esb:2:k=0"  # binary has only 1 bit; esb's default k=1 needs >= 3 bits
  for s in $SCHEMES; do for b in 2 3 4 8; do SPECS="$SPECS $s:$b"; done; done
fi

[ -x "$BIN" ] || { echo "uniform_table: $BIN not built (scripts/build.sh)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "uniform_table: python3 is needed to read the JSON results" >&2; exit 1; }
mkdir -p "$OUT_DIR"
if [ ! -f "$FP" ]; then
  echo "uniform_table: $FP missing: training it (8 epochs)" >&2
  mkdir -p "$(dirname "$FP")"
  # shellcheck disable=SC2086
  "$BIN" train --model lenet5 --epochs 8 --out "$FP" $ARGS
fi
JSONL="$OUT_DIR/results.jsonl"
touch "$JSONL"

jget() { python3 -c 'import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print(d[sys.argv[1]])' "$1"; }

# FP32 reference
if ! grep -q '"spec": "fp32"' "$JSONL"; then
  # shellcheck disable=SC2086
  e=$("$BIN" eval --model lenet5 --checkpoint "$FP" --json $ARGS 2>/dev/null)
  # FP32 weight bytes as the policies count them: the quantizable layers' weights (no biases / BN)
  "$BIN" policy uniform --model lenet5 --weight fp32 --out "$OUT_DIR/fp32.json" 2>/dev/null
  fpb=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["totals"]["weight_bytes"])' "$OUT_DIR/fp32.json")
  echo "{\"spec\": \"fp32\", \"top1_conv\": $(echo "$e" | jget top1), \"top1_ft\": null, \"weight_bytes\": $fpb, \"avg_bits\": 32.0, \"verify\": \"-\", \"n\": $(echo "$e" | jget n), \"checkpoint\": \"$FP\"}" >>"$JSONL"
fi

# One spec: policy -> convert -> eval -> finetune -> eval -> export --verify; appends one JSON line.
run_spec() {
  local spec=$1 tag P t0 ec ef x verify
  tag=${spec//:/_}
  tag=${tag//=/}
  P="$OUT_DIR/$tag.json"
  if ! "$BIN" policy uniform --model lenet5 --weight "$spec" --act "$ACT" --out "$P" 2>"$OUT_DIR/$tag.err"; then
    echo "uniform_table: skip $spec: $(tail -n 1 "$OUT_DIR/$tag.err")" >&2
    return 0
  fi
  echo "uniform_table: $spec" >&2
  t0=$(date +%s)
  # shellcheck disable=SC2086
  "$BIN" convert --model lenet5 --checkpoint "$FP" --policy "$P" --out "$OUT_DIR/$tag.conv.pt" $ARGS \
    2>>"$OUT_DIR/$tag.log" >/dev/null || return 1
  # shellcheck disable=SC2086
  ec=$("$BIN" eval --model lenet5 --checkpoint "$OUT_DIR/$tag.conv.pt" --json $ARGS 2>>"$OUT_DIR/$tag.log") || return 1
  # shellcheck disable=SC2086
  "$BIN" finetune --model lenet5 --checkpoint "$OUT_DIR/$tag.conv.pt" --epochs "$EPOCHS" --out "$OUT_DIR/$tag.ft.pt" \
    $ARGS 2>>"$OUT_DIR/$tag.log" || return 1
  # shellcheck disable=SC2086
  ef=$("$BIN" eval --model lenet5 --checkpoint "$OUT_DIR/$tag.ft.pt" --json $ARGS 2>>"$OUT_DIR/$tag.log") || return 1
  verify=FAIL
  if x=$("$BIN" export --model lenet5 --checkpoint "$OUT_DIR/$tag.ft.pt" --out "$OUT_DIR/$tag.safetensors" --verify \
      --json 2>>"$OUT_DIR/$tag.log"); then
    if [ "$(echo "$x" | jget weight_bytes)" = "$(echo "$ef" | jget weight_bytes)" ]; then verify=ok; fi
  fi
  echo "{\"spec\": \"$spec\", \"top1_conv\": $(echo "$ec" | jget top1), \"top1_ft\": $(echo "$ef" | jget top1), \"weight_bytes\": $(echo "$ef" | jget weight_bytes), \"avg_bits\": $(echo "$ef" | jget avg_weight_bits), \"verify\": \"$verify\", \"n\": $(echo "$ef" | jget n), \"seconds\": $(( $(date +%s) - t0 ))}" >>"$JSONL"
}

failed=""
for spec in $SPECS; do
  if grep -q "\"spec\": \"$spec\"" "$JSONL"; then continue; fi
  if ! run_spec "$spec"; then
    echo "uniform_table: $spec FAILED (see $OUT_DIR/${spec//:/_}.log)" >&2
    failed="$failed $spec"
  fi
done

# ---- the markdown table
python3 - "$JSONL" "$RESULTS" "$EPOCHS" "$ACT" "$ARGS" <<'PY'
import json, os, sys
jsonl, results, epochs, act, args = sys.argv[1:6]
rows = [json.loads(l) for l in open(jsonl) if l.strip()]
fp = next((r for r in rows if r["spec"] == "fp32"), None)
order = "binary twn fixed uniform zoomq resq vecq mul2q clipq pot esb apot afp".split()
def key(r):
    s, _, rest = r["spec"].partition(":")
    b = rest.split(":")[0]
    return (order.index(s) if s in order else 99, int(b) if b.isdigit() else 0, r["spec"])
q = sorted((r for r in rows if r["spec"] != "fp32"), key=key)
n = fp.get("n") if fp else None
src = f" (FP32 checkpoint `{fp['checkpoint']}`)" if fp and fp.get("checkpoint") else ""
lines = ["<!-- uniform-table:begin -->",
         f"LeNet-5 on Fashion-MNIST, top-1 on {'the first ' + str(n) if n else 'the'} test images{src}; "
         f"every layer's weight quantized with one spec, "
         f"activations `{act}`; converted = calibrated only, finetuned = {epochs} epochs of QAT "
         f"(`scripts/uniform_table.sh`{', ARGS=`' + args + '`' if args else ''}). Weight bytes = bit-packed codes + "
         f"scales/tables, exactly the bytes `autoqnn export` writes (verify column: export --verify passed and its "
         f"byte count equals the policy's).", "",
         "| weight spec | avg bits | weight bytes | vs FP32 | converted top-1 | finetuned top-1 | gain | export verify |",
         "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
if fp:
    lines.append(f"| fp32 | 32.00 | {fp['weight_bytes']} | 1.0x | {100*fp['top1_conv']:.2f} % | - | - | - |")
for r in q:
    ratio = fp["weight_bytes"] / r["weight_bytes"] if fp else float("nan")
    gain = 100 * (r["top1_ft"] - r["top1_conv"])
    lines.append(f"| {r['spec']} | {r['avg_bits']:.2f} | {r['weight_bytes']} | {ratio:.1f}x | "
                 f"{100*r['top1_conv']:.2f} % | {100*r['top1_ft']:.2f} % | {gain:+.2f} | {r['verify']} |")
lines.append("<!-- uniform-table:end -->")
block = "\n".join(lines) + "\n"
text = open(results).read() if os.path.exists(results) else "# Results\n\n## Uniform weight quantization baselines (LeNet-5, Fashion-MNIST)\n\n"
b, e = "<!-- uniform-table:begin -->", "<!-- uniform-table:end -->"
if b in text and e in text:
    text = text[:text.index(b)] + block + text[text.index(e) + len(e) + 1:]
else:
    text = text.rstrip("\n") + "\n\n" + block
tmp = results + ".tmp"
open(tmp, "w").write(text)
os.replace(tmp, results)
print(f"uniform_table: {len(q)} policies -> {results}", file=sys.stderr)
PY
[ -z "$failed" ] || { echo "uniform_table: failed:$failed" >&2; exit 1; }
