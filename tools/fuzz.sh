#!/usr/bin/env bash
# Builds one of Lamina's libFuzzer targets and runs it for a given time.
#
#   tools/fuzz.sh model|tensors SECONDS [more libFuzzer options...]
#
# model: model source text (.lam or IR) through parse, lowering, the pass pipelines and C generation
# (tools/fuzz/Sources/FuzzModelSource). tensors: bytes through the .npy and .safetensors readers and a
# round trip through the writers (tools/fuzz/Sources/FuzzTensorFiles).
#
# The seed corpus is read from the repository each run (examples, ir-specs/tests, the bad-model
# corpus; tools/fuzz/seeds for tensor files); the growing corpus lives in tools/fuzz/corpus/TARGET and
# whatever crashes, hangs (more than 10 s of CPU for one input) or runs out of memory is kept in
# tools/fuzz/crashes/TARGET. Replay one input with:
#   tools/fuzz/.build/release/FuzzModelSource tools/fuzz/crashes/model/crash-...
# Runs at the lowest priority (nice 19), so other builds on the machine are not starved.
set -euo pipefail

if [[ $# -lt 2 ]] || ! [[ "$2" =~ ^[0-9]+$ ]]; then
  echo "usage: tools/fuzz.sh model|tensors SECONDS [libFuzzer options...]" >&2
  exit 2
fi
target=$1
seconds=$2
shift 2
root=$(cd "$(dirname "$0")/.." && pwd)
fuzz="$root/tools/fuzz"

case "$target" in
  model)
    product=FuzzModelSource
    seeds=("$root/examples" "$root/examples/bench" "$root/ir-specs/tests" \
      "$root/Tests/LaminaTests/BadModels" "$root/Tests/LaminaTests/Fixtures")
    extra=(-dict="$fuzz/model.dict")
    ;;
  tensors)
    product=FuzzTensorFiles
    seeds=("$fuzz/seeds/tensors")
    extra=()
    ;;
  *)
    echo "fuzz.sh: unknown target '$target' (model or tensors)" >&2
    exit 2
    ;;
esac

# Release: many more executions per second than a debug build. The flags apply to every Swift module
# built, so the main package's code is instrumented too (coverage for the fuzzer, ASan).
(cd "$fuzz" && nice -n 19 swift build -c release --product "$product" \
  -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library)
binary="$fuzz/.build/release/$product"

# libFuzzer reads every folder given, and adds what it finds to the first one. Only files the target
# reads are seeds (the example folders also hold data and clients).
seedDirectory="$fuzz/.build/seeds/$target"
rm -rf "$seedDirectory"
mkdir -p "$seedDirectory" "$fuzz/corpus/$target" "$fuzz/crashes/$target"
for directory in "${seeds[@]}"; do
  for file in "$directory"/*.lam "$directory"/*.ir "$directory"/*.npy "$directory"/*.safetensors; do
    # Prefixed with the folder: two folders hold a matmul_shapes.lam.
    if [[ -f "$file" ]]; then cp "$file" "$seedDirectory/$(basename "$directory")_$(basename "$file")"; fi
  done
done

# No leak checks (libFuzzer's per input, ASan's at exit): LeakSanitizer reports the Swift runtime's
# lazily made globals and metadata caches, kept for the process's life, as leaks.
export ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
# libFuzzer's own handler reports a trap or an abort and keeps the input; the Swift runtime's
# backtracer, which would take the signal first, reads memory ASan reports as a stack underflow.
export SWIFT_BACKTRACE=enable=no
crashes="$fuzz/crashes/$target"
started="$fuzz/.build/fuzz-started-$target"
log="$fuzz/.build/fuzz-$target.log"
touch "$started"
# libFuzzer stops at the first crash, hang or out-of-memory input (kept in $crashes); fuzzing then
# starts again for the time left, so one run reports everything it finds. A hang is an input that
# uses more than 10 s of CPU time (tools/fuzz/Sources/FuzzEntry/entry.c; LAMINA_FUZZ_CPU_SECONDS):
# libFuzzer's -timeout is wall time, which at nice 19 on a busy machine reports the load (an input
# needing 2 s of CPU took 28 s), so it is only the backstop for an input that waits without
# computing. Every input kept is replayed below, alone and at normal priority.
deadline=$((SECONDS + seconds))
executions=0
rounds=0
while ((SECONDS < deadline - 5)); do
  rounds=$((rounds + 1))
  nice -n 19 "$binary" "$fuzz/corpus/$target" "$seedDirectory" -max_total_time=$((deadline - SECONDS)) \
    -timeout=300 -rss_limit_mb=4096 -detect_leaks=0 -print_final_stats=1 \
    -artifact_prefix="$crashes/" "${extra[@]}" "$@" 2>&1 | tee "$log" || true
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  executions=$((executions + ${runs:-0}))
done

found=0
while IFS= read -r -d '' file; do
  found=$((found + 1))
  begin=$(date +%s%N)
  if "$binary" -timeout=300 -rss_limit_mb=4096 "$file" >/dev/null 2>&1; then outcome="runs clean"; else outcome="FAILS"; fi
  echo "replay $(basename "$file"): $outcome in $((($(date +%s%N) - begin) / 1000000)) ms"
done < <(find "$crashes" -type f -newer "$started" -print0)
echo "fuzz.sh: $target: $executions executions in $seconds s ($rounds libFuzzer runs); $found input(s) kept in $crashes"
[[ $found -eq 0 ]]
