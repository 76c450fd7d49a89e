#!/usr/bin/env bash
# Starts N local ranks of a data-parallel autoqnn run (like torchrun --nproc-per-node N):
#   scripts/launch.sh -n 2 -- build/autoqnn train --model resnet20 --dataset cifar10 --out fp.pt
# Each rank gets RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT.
# Several machines: run on each node with --nnodes, --node-rank and --master-addr (rank 0's node), e.g.
#   node 0: scripts/launch.sh -n 2 --nnodes 2 --node-rank 0 --master-addr 10.0.0.1 --master-port 29500 -- autoqnn ...
#   node 1: scripts/launch.sh -n 2 --nnodes 2 --node-rank 1 --master-addr 10.0.0.1 --master-port 29500 -- autoqnn ...
# The port defaults to a free one (single node only). SIGINT / SIGTERM are forwarded to every rank; when a
# rank fails the others are stopped; the exit status is the first failing rank's (0 when all succeed).
# Rank r's output goes to the terminal, prefixed by nothing (rank 0 logs; others log warnings and errors).
set -u
usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
n=1; nnodes=1; node_rank=0; addr=127.0.0.1; port=""
while [ $# -gt 0 ]; do
  case "$1" in
    -n|--nproc-per-node) n="$2"; shift 2 ;;
    --nnodes) nnodes="$2"; shift 2 ;;
    --node-rank) node_rank="$2"; shift 2 ;;
    --master-addr) addr="$2"; shift 2 ;;
    --master-port) port="$2"; shift 2 ;;
    -h|--help) usage ;;
    --) shift; break ;;
    *) echo "launch.sh: unknown option '$1' (usage: launch.sh -n N [--nnodes M --node-rank R --master-addr A --master-port P] -- command ...)" >&2; exit 2 ;;
  esac
done
[ $# -gt 0 ] || { echo "launch.sh: no command after --" >&2; exit 2; }
for v in "$n" "$nnodes" "$node_rank"; do
  case "$v" in ''|*[!0-9]*) echo "launch.sh: '$v' is not a non-negative integer" >&2; exit 2 ;; esac
done
[ "$n" -ge 1 ] || { echo "launch.sh: -n must be >= 1" >&2; exit 2; }
[ "$node_rank" -lt "$nnodes" ] || { echo "launch.sh: --node-rank $node_rank is not below --nnodes $nnodes" >&2; exit 2; }
if [ -z "$port" ]; then
  [ "$nnodes" -eq 1 ] || { echo "launch.sh: several nodes need an explicit --master-port" >&2; exit 2; }
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
fi
world=$((n * nnodes))
pids=()
stop_all() { for p in "${pids[@]}"; do kill -s "$1" "$p" 2>/dev/null; done; }
# Background jobs of a script ignore SIGINT, so an interrupt is forwarded as SIGTERM.
interrupted=0
trap 'interrupted=130; stop_all TERM' INT
trap 'interrupted=143; stop_all TERM' TERM
for ((i = 0; i < n; i++)); do
  RANK=$((node_rank * n + i)) LOCAL_RANK=$i WORLD_SIZE=$world LOCAL_WORLD_SIZE=$n MASTER_ADDR=$addr MASTER_PORT=$port \
    "$@" &
  pids+=($!)
done
status=0
left=$n
# Wait for the ranks in the order they end; the first failure stops the others.
while [ "$left" -gt 0 ]; do
  wait -n -p done_pid "${pids[@]}" 2>/dev/null
  rc=$?
  [ -n "${done_pid:-}" ] || { [ "$rc" -gt 128 ] && continue; break; }  # a trapped signal interrupted wait
  left=$((left - 1))
  if [ "$rc" -ne 0 ] && [ "$status" -eq 0 ]; then
    status=$rc
    for ((i = 0; i < n; i++)); do [ "${pids[$i]}" = "$done_pid" ] && r=$((node_rank * n + i)); done
    echo "launch.sh: rank ${r:-?} exited with status $rc; stopping the other ranks" >&2
    stop_all TERM
  fi
  unset done_pid
done
wait 2>/dev/null
[ "$interrupted" -ne 0 ] && [ "$status" -eq 0 ] && status=$interrupted
exit "$status"
