#!/usr/bin/env bash
# Builds tools/gemm/gemm_bench.c (which includes the runtime's lamina_pool.c and lamina_gemm.c) with gcc
# and clang, runs the correctness tests (optimised, and under AddressSanitizer + UBSan), then the
# benchmarks, and numpy's matmul (OpenBLAS) at 1024 as a same-run baseline when numpy is there.
#
#   tools/gemm/run.sh [all|test|bench]     (REPS=21 repetitions per benchmark; OUT=build directory)
set -euo pipefail
cd "$(dirname "$0")"
what=${1:-all}
OUT=${OUT:-/tmp/lamina-gemm}
REPS=${REPS:-21}
mkdir -p "$OUT"

GCC=${GCC:-gcc}
CLANG=${CLANG:-$(command -v clang || echo /opt/swift/usr/bin/clang)}
FLAGS=(-std=c11 -O3 -march=native -Wall -Wextra -Werror)
SAN=(-std=c11 -O1 -g -march=native -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)

# The double GEMM, a unit of its own as the runtime compiles it, added to every build of gemm_bench.c.
DOUBLE_GEMM=(-I ../../Sources/LaminaCodegenC/runtime -DLAMINA_GEMM_T=double -DLAMINA_GEMM_SUFFIX=f64_native
  ../../Sources/LaminaCodegenC/runtime/lamina_gemm.c)

compilers=()
for cc in "$GCC" "$CLANG"; do
  if command -v "$cc" > /dev/null 2>&1; then compilers+=("$cc"); else echo "note: $cc not found, skipped"; fi
done

name() { basename "$1"; }

# As a generated model uses them: the two runtime files alone, one translation unit, strict C11, -fPIC.
cat ../../Sources/LaminaCodegenC/runtime/lamina_pool.c ../../Sources/LaminaCodegenC/runtime/lamina_gemm.c > "$OUT/runtime.c"
for cc in "${compilers[@]}"; do
  "$cc" "${FLAGS[@]}" -Wpedantic -fPIC -shared -I ../../Sources/LaminaCodegenC/runtime \
    -DLAMINA_GEMM_T=float -DLAMINA_GEMM_SUFFIX=f32_native -o "$OUT/runtime_$(name "$cc").so" "$OUT/runtime.c" -lm -lpthread
done

for cc in "${compilers[@]}"; do
  echo "== building with $cc"
  "$cc" "${FLAGS[@]}" -o "$OUT/gemm_bench_$(name "$cc")" gemm_bench.c "${DOUBLE_GEMM[@]}" -lm -lpthread
  # The inner loop of the micro-kernel must be FMAs on full-width vector registers.
  fmas=$(objdump -d --no-show-raw-insn "$OUT/gemm_bench_$(name "$cc")" | grep -cE 'vfmadd...ps +%[yz]mm' || true)
  echo "   vfmadd...ps on ymm/zmm registers in the binary: $fmas"
  [ "$fmas" -gt 0 ] || { echo "no vector FMAs: the kernels were not compiled as intended" >&2; exit 1; }
done

if [ "$what" = all ] || [ "$what" = test ]; then
  for cc in "${compilers[@]}"; do
    echo "== correctness, $cc -O3"
    "$OUT/gemm_bench_$(name "$cc")" test
    echo "== correctness, $cc -fsanitize=address,undefined"
    # (ld.gold warns about every ASan symbol when clang links with it: keep only real messages.)
    "$cc" "${SAN[@]}" -o "$OUT/gemm_bench_$(name "$cc")_san" gemm_bench.c "${DOUBLE_GEMM[@]}" -lm -lpthread 2> "$OUT/san.log" ||
      { cat "$OUT/san.log" >&2; exit 1; }
    grep -v 'Cannot export local symbol' "$OUT/san.log" >&2 || true
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 "$OUT/gemm_bench_$(name "$cc")_san" test quick
  done
  # The pool under ThreadSanitizer (gcc: the Swift toolchain's clang cannot link its TSan runtime here).
  if "$GCC" -std=c11 -O1 -g -march=native -fsanitize=thread -o "$OUT/gemm_bench_tsan" gemm_bench.c "${DOUBLE_GEMM[@]}" -lm -lpthread \
      2> /dev/null; then
    echo "== correctness, $GCC -fsanitize=thread"
    TSAN_OPTIONS=halt_on_error=1 "$OUT/gemm_bench_tsan" test quick
  fi
fi

if [ "$what" = all ] || [ "$what" = bench ]; then
  for cc in "${compilers[@]}"; do
    echo "== benchmark, $cc"
    "$OUT/gemm_bench_$(name "$cc")" bench "$REPS"
  done
  if python3 -c 'import numpy' > /dev/null 2>&1; then
    echo "== numpy matmul (OpenBLAS) baseline"
    for t in 1 2; do
      env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=$t python3 - "$REPS" "$t" <<'PY'
import sys, time
import numpy as np
reps, threads = int(sys.argv[1]), int(sys.argv[2])
for n in (512, 1024):
    a = np.random.rand(n, n).astype(np.float32)
    b = np.random.rand(n, n).astype(np.float32)
    for _ in range(3):
        a @ b
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        ts.append(time.perf_counter() - t0)
    ts.sort()
    f = 2.0 * n ** 3 * 1e-9
    print(f"numpy {n}^3, {threads}T: median {f / ts[len(ts) // 2]:.1f} GFLOP/s (min {f / ts[-1]:.1f}, max {f / ts[0]:.1f})")
PY
    done
  fi
fi
