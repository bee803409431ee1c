#!/usr/bin/env bash
# Fused against unfused on every example, inference and training, and W6 against one copy of x.
#
#   tools/bench_fusion.sh [BATCH] [SECONDS]
#
# Builds the release `lamina`, then runs `lamina bench FILE --compare fused,unfused` (both
# configurations compiled, results checked equal, timed interleaved call by call in one process) and
# prints one markdown row per run: medians with min-max, kernels per call, arena bytes, speedup
# (unfused median / fused median) with the paired 95% interval [low, high] from the same rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
batch="${1:-64}"
seconds="${2:-2}"
swift build -c release --product lamina >/dev/null
lamina=.build/release/lamina

row() { # FILE MODE BATCH
  local file="$1" mode="$2" size="$3"
  local flags=(--compare fused,unfused --batch "$size" --seconds "$seconds" --runs 30 --json)
  [ "$mode" = train ] && flags+=(--train)
  "$lamina" bench "$file" "${flags[@]}" | python3 -c '
import json, sys
r = json.load(sys.stdin)
f, u = r["fused"], r["unfused"]
ms = lambda s: "%.3f" % (s * 1e3)
def kib(b): return "%.0f" % (b / 1024)
copy = [v for k, v in r.items() if k.startswith("copy_")]
split = [v for k, v in r.items() if k.startswith("parallel_copy_")]
bound = " (copy of the largest input %s ms: fused %.2fx; on %d threads %s ms: %.2fx)" % (
    ms(copy[0]["median_seconds"]), f["median_seconds"] / copy[0]["median_seconds"],
    split[0]["threads"], ms(split[0]["median_seconds"]), f["median_seconds"] / split[0]["median_seconds"]) if copy else ""
paired = " [%.3f, %.3f]" % (f["paired_speedup_low"], f["paired_speedup_high"]) if "paired_speedup_low" in f else ""
print("| %s | %s | %d | %s (%s-%s) | %s (%s-%s) | %d / %d | %s / %s | **%.2fx**%s%s |" % (
    sys.argv[1], sys.argv[2], r["batch"],
    ms(f["median_seconds"]), ms(f["min_seconds"]), ms(f["max_seconds"]),
    ms(u["median_seconds"]), ms(u["min_seconds"]), ms(u["max_seconds"]),
    f["kernels"], u["kernels"], kib(f["arena_bytes"]), kib(u["arena_bytes"]),
    u["median_seconds"] / f["median_seconds"], paired, bound))
' "$(basename "$file")" "$mode"
}

echo "| model | call | batch | fused ms median (min-max) | unfused ms median (min-max) | kernels fused / unfused | arena KiB fused / unfused | speedup [paired 95% CI] |"
echo "|---|---|---|---|---|---|---|---|"
for file in ${FILES:-examples/*.lam examples/bench/mlp_784.lam}; do
  row "$file" forward "$batch"
  if grep -q '^ *train ' "$file"; then row "$file" train "$batch"; fi
done
row examples/bench/w6_layer_norm_gelu.lam forward 4096
