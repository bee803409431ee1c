#!/bin/bash
# A/B of two harness builds on a VM whose two vCPUs move between states (BENCHMARKS.md, sessions 23-25): a
# round runs A then B (the order alternating between rounds) and is kept only when the core-to-core latency
# before, between and after says the wanted state, so that both builds of a round ran in it. Without that
# gate, a state flip between the two runs decides the comparison.
#
#   bash ab_by_state.sh far|near ROUNDS BUILD_A BUILD_B INPUT_PER_SAMPLE OUTPUT_PER_SAMPLE [RUNS]
#   bash /path/to/ab_by_state.sh far 8 harness_old harness_new 150528 1000     # SqueezeNet
#
# Run it in a tools/kernel_times harness directory holding both builds, after
# `cc -O2 -pthread tools/core_latency/core_latency.c -o /tmp/core_latency`. "far" is above 200 ns, "near" below
# 100 ns. Prints each kept round's forward minimum (us) and, per build, the median and range over the rounds; the
# runs' full output (every kernel) stays in ab_by_state.out/.
set -euo pipefail
want=${1:?far or near}
rounds=${2:?rounds}
build_a=${3:?first build}
build_b=${4:?second build}
input=${5:?input elements per sample}
output=${6:?output elements per sample}
runs=${7:-60}
latency=${CORE_LATENCY:-/tmp/core_latency}
case "$want" in far | near) ;; *) echo "the state is far or near, not $want" >&2; exit 2 ;; esac
for build in "$build_a" "$build_b"; do
  [ -x "./$build" ] || { echo "no ./$build here" >&2; exit 1; }
done
[ -x "$latency" ] || { echo "no $latency: cc -O2 -pthread tools/core_latency/core_latency.c -o $latency" >&2; exit 1; }
out=ab_by_state.out
mkdir -p "$out"

in_state() {
  if [ "$want" = far ]; then [ "$1" -gt 200 ]; else [ "$1" -lt 100 ]; fi
}
forward_min() { grep '^forward' "$1" | awk '{print $3}'; }

kept=0
flip=0
tries=0
while [ "$kept" -lt "$rounds" ] && [ "$tries" -lt 2000 ]; do
  tries=$((tries + 1))
  before=$("$latency" | tail -1)
  if ! in_state "$before"; then
    sleep 1
    continue
  fi
  if [ "$flip" = 0 ]; then first=$build_a second=$build_b; else first=$build_b second=$build_a; fi
  "./$first" 1 2 "$runs" "$input" "$output" > "$out/first" 2> /dev/null
  between=$("$latency" | tail -1)
  "./$second" 1 2 "$runs" "$input" "$output" > "$out/second" 2> /dev/null
  after=$("$latency" | tail -1)
  if in_state "$between" && in_state "$after"; then
    kept=$((kept + 1))
    mv "$out/first" "$out/${first}_$kept"
    mv "$out/second" "$out/${second}_$kept"
    echo "round $kept ($first first; latency $before / $between / $after ns):" \
      "$build_a $(forward_min "$out/${build_a}_$kept")  $build_b $(forward_min "$out/${build_b}_$kept")"
    flip=$((1 - flip))
  fi
done
for build in "$build_a" "$build_b"; do
  for i in $(seq 1 "$kept"); do forward_min "$out/${build}_$i"; done | sort -n |
    awk -v build="$build" '{x[NR] = $1} END {
      if (NR) printf "%-20s %d rounds: forward minimum median %.0f us (%.0f-%.0f)\n", build, NR, x[int((NR + 1) / 2)], x[1], x[NR] }'
done
