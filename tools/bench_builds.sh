#!/usr/bin/env bash
# Two builds of `lamina` on the reference workloads W1, W2 and W6, in one run, alternating.
#
#   tools/bench_builds.sh BASELINE_LAMINA CANDIDATE_LAMINA [ROUNDS] [SECONDS]
#
# For example, the commit before a change against this checkout:
#   git worktree add /tmp/base HEAD~5 && (cd /tmp/base && swift build -c release --product lamina)
#   swift build -c release --product lamina
#   tools/bench_builds.sh /tmp/base/.build/release/lamina .build/release/lamina 5
#
# Each round runs every workload once with each build (the order alternates between rounds), each
# run `lamina bench --json` timing at least SECONDS (default 1) after its warm-up, in a cache folder
# of its own per build. Prints, per workload and build, the median, min and max of the rounds'
# medians, and the candidate's speed as baseline median / candidate median (> 1: faster). The builds'
# default C compiler flags apply: a build that changed the default target is measured with it.
set -euo pipefail
cd "$(dirname "$0")/.."
baseline="$1"
candidate="$2"
rounds="${3:-5}"
seconds="${4:-1}"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# name|file|flags
workloads=(
  "W1 train step, batch 128|examples/bench/mlp_784.lam|--train --batch 128"
  "W2 forward, batch 1|examples/bench/mlp_784.lam|--batch 1"
  "W2 forward, batch 256|examples/bench/mlp_784.lam|--batch 256"
  "W6 forward, [4096, 1024]|examples/bench/w6_layer_norm_gelu.lam|--batch 4096"
)

run() { # BUILD_INDEX LAMINA FILE FLAGS... -> median seconds
  local index="$1" lamina="$2" file="$3"
  shift 3
  "$lamina" bench "$file" "$@" --seconds "$seconds" --runs 30 --no-interpreter --json \
    --cache-dir "$scratch/cache$index" | python3 -c '
import json, sys
r = json.load(sys.stdin)
row = r.get("train step") or r.get("compiled")
print(row["median_seconds"])'
}

for round in $(seq 1 "$rounds"); do
  for index in "${!workloads[@]}"; do
    IFS='|' read -r name file flags <<<"${workloads[$index]}"
    # shellcheck disable=SC2086
    if [ $((round % 2)) -eq 1 ]; then
      echo "$index base $(run 0 "$baseline" "$file" $flags)" >>"$scratch/results"
      echo "$index new $(run 1 "$candidate" "$file" $flags)" >>"$scratch/results"
    else
      echo "$index new $(run 1 "$candidate" "$file" $flags)" >>"$scratch/results"
      echo "$index base $(run 0 "$baseline" "$file" $flags)" >>"$scratch/results"
    fi
  done
done

names=$(printf '%s\n' "${workloads[@]}" | cut -d'|' -f1)
python3 - "$scratch/results" "$rounds" <<PY
import statistics, sys
names = """$names""".splitlines()
rows = {}
for line in open(sys.argv[1]):
    index, build, seconds = line.split()
    rows.setdefault((int(index), build), []).append(float(seconds))
fmt = lambda s: "%.1f us" % (s * 1e6) if s < 1e-3 else "%.3f ms" % (s * 1e3)
print("| workload | baseline median (min-max) | candidate median (min-max) | candidate speed |")
print("|---|---|---|---|")
for index, name in enumerate(names):
    base, new = rows[(index, "base")], rows[(index, "new")]
    span = lambda v: "%s (%s-%s)" % (fmt(statistics.median(v)), fmt(min(v)), fmt(max(v)))
    print("| %s | %s | %s | %.2fx |" % (name, span(base), span(new), statistics.median(base) / statistics.median(new)))
print("%s rounds; each figure is the median of one \`lamina bench\` run" % sys.argv[2])
PY
