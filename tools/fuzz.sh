#!/usr/bin/env bash
# Builds one of Lamina's libFuzzer targets and runs it for a given time.
#
#   tools/fuzz.sh model|tensors SECONDS [more libFuzzer options...]
#
# model:   model source text (.lam or IR) through parse, lowering, the pass pipelines and C generation
# tools/fuzz/Sources/FuzzModelSource). tensors: bytes through the .npy and .safetensors readers and a
# round trip through the writers (tools/fuzz/Sources/FuzzTensorFiles).
#
# The seed corpus is read from the repository each run (examples, ir-specs/tests, the bad-model
# corpus; tools/fuzz/seeds for tensor files); the growing corpus lives in tools/fuzz/corpus/TARGET and
# whatever crashes, hangs (-timeout=10 s per input) or runs out of memory is kept in
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
crashes="$fuzz/crashes/$target"
started="$fuzz/.build/fuzz-started-$target"
touch "$started"
# Fork mode (one child at a time): a crash, a timeout or an out-of-memory input is kept in $crashes and
# fuzzing goes on, so one run reports everything it finds. The timeout is wall time, and at nice 19 on
# a busy machine a child can wait for the CPU longer than that: timeouts are replayed below.
status=0
nice -n 19 "$binary" "$fuzz/corpus/$target" "$seedDirectory" -fork=1 -ignore_crashes=1 \
  -ignore_timeouts=1 -ignore_ooms=1 -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 \
  -detect_leaks=0 -artifact_prefix="$crashes/" "${extra[@]}" "$@" || status=$?

# Each input this run kept, alone and at normal priority: a timeout that finishes well within the
# limit here was the machine's load, not a hang.
found=0
while IFS= read -r -d '' file; do
  found=$((found + 1))
  begin=$(date +%s%N)
  if "$binary" -timeout=10 -rss_limit_mb=4096 "$file" >/dev/null 2>&1; then outcome="runs clean"; else outcome="FAILS"; fi
  echo "replay $(basename "$file"): $outcome in $((($(date +%s%N) - begin) / 1000000)) ms"
done < <(find "$crashes" -type f -newer "$started" -print0)
echo "fuzz.sh: $target ran for $seconds s; $found input(s) kept in $crashes (libFuzzer status $status)"
[[ $found -eq 0 ]]
