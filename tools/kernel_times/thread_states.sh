#!/bin/bash
# Separates "the machine got slower" from "our two threads got slower together" on a VM whose two vCPUs
# move between states (BENCHMARKS.md, sessions 23-25). Run it in a tools/kernel_times harness directory
# (make.py's README above), after `cc -O2 -pthread tools/core_latency/core_latency.c -o /tmp/core_latency`.
#
#   bash thread_states.sh ROUNDS INPUT_PER_SAMPLE OUTPUT_PER_SAMPLE [RUNS]
#   bash /path/to/thread_states.sh 20 150528 1000      # SqueezeNet
#
# Each round prints the core-to-core latency (ns) before and after, then the forward's minimum (us) of:
#   cpu0, cpu1   one thread alone, pinned to vCPU 0, then to vCPU 1;
#   both         two one-thread processes at once, one pinned to each vCPU (neither shares data);
#   2T           one process with two threads.
# If `both` stays at `cpu0`/`cpu1` while `2T` loses its speed-up, the slowdown comes from the two threads'
# interaction (data made by one and read by the other, synchronisation), not from a neighbour on the host.
set -euo pipefail
rounds=${1:?rounds}
input=${2:?input elements per sample}
output=${3:?output elements per sample}
runs=${4:-40}
latency=${CORE_LATENCY:-/tmp/core_latency}
[ -x ./harness ] || { echo "no ./harness here: build it with tools/kernel_times/make.py first" >&2; exit 1; }
[ -x "$latency" ] || { echo "no $latency: cc -O2 -pthread tools/core_latency/core_latency.c -o $latency" >&2; exit 1; }
command -v taskset > /dev/null || { echo "taskset (util-linux) is needed to pin the processes" >&2; exit 1; }
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

forward_min() { grep '^forward' | awk '{print $3}'; }

printf '%-14s %9s %9s %9s %9s %9s\n' "latency ns" cpu0 cpu1 "both(0)" "both(1)" 2T
for _ in $(seq 1 "$rounds"); do
  before=$("$latency" | tail -1)
  alone0=$(taskset -c 0 ./harness 1 1 "$runs" "$input" "$output" 2> /dev/null | forward_min)
  alone1=$(taskset -c 1 ./harness 1 1 "$runs" "$input" "$output" 2> /dev/null | forward_min)
  taskset -c 0 ./harness 1 1 "$runs" "$input" "$output" 2> /dev/null | forward_min > "$scratch/0" &
  taskset -c 1 ./harness 1 1 "$runs" "$input" "$output" 2> /dev/null | forward_min > "$scratch/1"
  wait
  two=$(./harness 1 2 $((runs * 3 / 2)) "$input" "$output" 2> /dev/null | forward_min)
  after=$("$latency" | tail -1)
  printf '%-14s %9s %9s %9s %9s %9s\n' "$before / $after" "$alone0" "$alone1" "$(cat "$scratch/0")" \
    "$(cat "$scratch/1")" "$two"
done
