#!/usr/bin/env bash
# Builds channel_bench.c against the runtime's sources as a model's library compiles them (AVX-512 when the CPU
# has it, else AVX2), checks the kernel and times it: SqueezeNet's first layer with its pool and without, on one
# thread and two, then with NaNs in the input (the pool's exact path). Extra arguments go to the build (for A/B:
# -DLAMINA_CONV_CHANNEL_SPLIT=0). OUT: build directory.
#
#   tools/channel_kernel/run.sh [-DFLAG ...]
set -euo pipefail
cd "$(dirname "$0")"
RUNTIME=../../Sources/LaminaCodegenC/runtime
OUT=${OUT:-/tmp/lamina-channel-kernel}
mkdir -p "$OUT"
CC=${CC:-cc}
if grep -q avx512f /proc/cpuinfo 2>/dev/null; then
  ISA=(-march=x86-64-v4 -mprefer-vector-width=512 -DLAMINA_ISA=avx512 '-DLAMINA_ISA_NAME="x86-64-v4"')
  SUFFIX=f32_avx512
else
  ISA=(-march=x86-64-v3 -DLAMINA_ISA=avx2 '-DLAMINA_ISA_NAME="x86-64-v3"')
  SUFFIX=f32_avx2
fi
COMMON=(-std=gnu11 -O2 -fno-math-errno -fno-trapping-math -fopenmp-simd -I "$RUNTIME")
"$CC" "${COMMON[@]}" "${ISA[@]}" -DLAMINA_GEMM_T=float -DLAMINA_GEMM_SUFFIX=$SUFFIX -c "$RUNTIME/lamina_gemm.c" -o "$OUT/gemm.o"
"$CC" "${COMMON[@]}" -march=x86-64-v3 -c "$RUNTIME/lamina_pool.c" -o "$OUT/pool.o"
"$CC" "${COMMON[@]}" -c "$RUNTIME/lamina_cpu.c" -o "$OUT/cpu.o"
"$CC" "${COMMON[@]}" "${ISA[@]}" "$@" channel_bench.c "$OUT/gemm.o" "$OUT/pool.o" "$OUT/cpu.o" -o "$OUT/channel_bench" -lm -lpthread
for threads in 1 2; do
  "$OUT/channel_bench" 3 224 224 64 3 2 3 2 $threads
  "$OUT/channel_bench" 3 224 224 64 3 2 0 0 $threads
done
"$OUT/channel_bench" 3 224 224 64 3 2 3 2 2 50 40
