#!/usr/bin/env bash
# Data-parallel throughput: 2 processes x 1 thread against 1 process x 1 thread (same global batch), for
# ResNet-20 training steps and QSS search steps (a weight step + an architecture step each), on loopback.
#   bench/distributed_throughput.sh [build dir]      (default: build)
# Prints one line per run (images/s of the global batch, from the progress line of the last step) and the
# speed-ups; the machine's load average is printed before and after, because other work on the cores
# changes the figures. Data: Fashion-MNIST (28x28) if present, else the synthetic set.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=$(cd "${1:-$here/build}" && pwd)/autoqnn
launch=$here/scripts/launch.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ds=synthetic
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte ] && ds=fashion-mnist
limit=${TRAIN_LIMIT:-4096}
common="--model resnet20 --dataset $ds --train-limit $limit --test-limit 256 --batch-size 128 --threads 1 --seed 1"
rate() { grep -o '100% [0-9/]* .*| *[0-9.]* img/s' "$1" | tail -1 | grep -o '[0-9.]* img/s' | cut -d' ' -f1; }
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "load average before: $load_before; $(nproc) cores; data $ds, $limit train images"

"$bin" train $common --epochs 1 --out "$tmp/fp1.pt" >"$tmp/t1.log" 2>&1
$launch -n 2 -- "$bin" train $common --epochs 1 --out "$tmp/fp2.pt" >"$tmp/t2.log" 2>&1
$launch -n 2 -- "$bin" train $common --epochs 1 --dist-bn local --out "$tmp/fp3.pt" >"$tmp/t3.log" 2>&1
t1=$(rate "$tmp/t1.log"); t2=$(rate "$tmp/t2.log"); t3=$(rate "$tmp/t3.log")
echo "train  resnet20 1 x 1 thread: $t1 img/s"
echo "train  resnet20 2 x 1 thread: $t2 img/s  (x$(python3 -c "print(f'{$t2/$t1:.2f}')"), --dist-bn sync: the default)"
echo "train  resnet20 2 x 1 thread: $t3 img/s  (x$(python3 -c "print(f'{$t3/$t1:.2f}')"), --dist-bn local)"

# Where the missing speed-up of --dist-bn sync goes (each rank of the 2-process run works on half the batch):
#   half   1 process, batch 64 on half the images: the per-rank work alone (small-batch efficiency)
#   pair   2 independent processes of that work at the same time, no communication: the machine's ceiling
#          (two processes sharing memory bandwidth, caches and the hypervisor's 2 vCPUs)
# so 2x1 / 1x1 = (2*half/1x1) * (pair/(2*half)) * (2x1/pair): batch split x contention x communication.
half="--model resnet20 --dataset $ds --train-limit $((limit / 2)) --test-limit 256 --batch-size 64 --threads 1"
"$bin" train $half --seed 1 --epochs 1 --out "$tmp/h1.pt" >"$tmp/h1.log" 2>&1
"$bin" train $half --seed 1 --epochs 1 --out "$tmp/pa.pt" >"$tmp/pa.log" 2>&1 &
"$bin" train $half --epochs 1 --seed 2 --out "$tmp/pb.pt" >"$tmp/pb.log" 2>&1
wait
th=$(rate "$tmp/h1.log"); tp=$(python3 -c "print($(rate "$tmp/pa.log") + $(rate "$tmp/pb.log"))")
split() {  # 1x1 half pair 2x1 -> the three factors
  python3 -c "a,h,p,d=$1,$2,$3,$4; print(f'batch split x{2*h/a:.2f}, contention x{p/(2*h):.2f}, communication x{d/p:.2f}')"
}
echo "train  resnet20 half (batch 64) alone: $th img/s; two at once, no communication: $tp img/s"
echo "train  breakdown: $(split "$t1" "$th" "$tp" "$t2")"

search="search --method qss $common --checkpoint $tmp/fp1.pt --space lowbit --avg-bits 3 --warmup 0 --epochs 1"
search="$search --steps-per-epoch ${SEARCH_STEPS:-16} --val-limit 128"
"$bin" $search --out "$tmp/p1.json" >"$tmp/s1.log" 2>&1
$launch -n 2 -- "$bin" $search --out "$tmp/p2.json" >"$tmp/s2.log" 2>&1
$launch -n 2 -- "$bin" $search --dist-bn local --out "$tmp/p3.json" >"$tmp/s3.log" 2>&1
s1=$(rate "$tmp/s1.log"); s2=$(rate "$tmp/s2.log"); s3=$(rate "$tmp/s3.log")
echo "search resnet20 1 x 1 thread: $s1 img/s (weight + architecture step per 128 images)"
echo "search resnet20 2 x 1 thread: $s2 img/s  (x$(python3 -c "print(f'{$s2/$s1:.2f}')"), --dist-bn sync: the default)"
echo "search resnet20 2 x 1 thread: $s3 img/s  (x$(python3 -c "print(f'{$s3/$s1:.2f}')"), --dist-bn local)"
shalf="search --method qss $half --checkpoint $tmp/fp1.pt --space lowbit --avg-bits 3 --warmup 0 --epochs 1"
shalf="$shalf --steps-per-epoch ${SEARCH_STEPS:-16} --val-limit 64"
"$bin" $shalf --seed 1 --out "$tmp/ph.json" >"$tmp/sh.log" 2>&1
"$bin" $shalf --seed 1 --out "$tmp/pa.json" >"$tmp/sa.log" 2>&1 &
"$bin" $shalf --seed 2 --out "$tmp/pb.json" >"$tmp/sb.log" 2>&1
wait
sh=$(rate "$tmp/sh.log"); sp=$(python3 -c "print($(rate "$tmp/sa.log") + $(rate "$tmp/sb.log"))")
echo "search resnet20 half (batch 64) alone: $sh img/s; two at once, no communication: $sp img/s"
echo "search breakdown: $(split "$s1" "$sh" "$sp" "$s2")"
cmp -s <(python3 -c "import json; print(sorted((k, v['weight'], v['act']) for k, v in json.load(open('$tmp/p1.json'))['layers'].items()))") \
       <(python3 -c "import json; print(sorted((k, v['weight'], v['act']) for k, v in json.load(open('$tmp/p2.json'))['layers'].items()))") \
  && echo "search: the 2-process policy equals the 1-process one" || echo "search: the policies DIFFER"
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
echo "load average after: $load_after"
# one line to compare reruns (target: both >= 1.7 on a quiet 2-core machine)
echo "SUMMARY distributed_throughput: sync: train x$(python3 -c "print(f'{$t2/$t1:.2f}')") search x$(python3 -c "print(f'{$s2/$s1:.2f}')"); local: train x$(python3 -c "print(f'{$t3/$t1:.2f}')") search x$(python3 -c "print(f'{$s3/$s1:.2f}')") (2 procs x 1 thread vs 1 x 1; ResNet-20, batch 128, $ds; load before $load_before, after $load_after; $(nproc) cores)"
