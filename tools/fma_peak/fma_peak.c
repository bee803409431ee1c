/* fma_peak.c — the machine's FP32 FMA peak, for stating convolution and GEMM speed as a fraction of it.
 *
 * The same measure as tools/gemm/gemm_bench.c's (12 independent accumulator vectors, so the loop is
 * bound by FMA throughput, not latency; the best of the repeats is the machine's capability, slower
 * ones are other tenants), standalone: threads are plain pthreads, vectors the widest the compiler
 * targets (-march=native: 64 bytes with AVX-512, 32 with AVX2).
 *   cc -std=c11 -O2 -march=native -o fma_peak fma_peak.c -lpthread && ./fma_peak [threads] [reps]
 * prints: FP32 FMA peak, T threads: median M GFLOP/s (min m, max X; the max is used as peak)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#if defined(__AVX512F__)
#define VECTOR_BYTES 64
#else
#define VECTOR_BYTES 32
#endif
typedef float vfloat __attribute__((vector_size(VECTOR_BYTES)));
#define ACCUMULATORS 12
#define ITERATIONS (5 * 1000 * 1000)

static double now_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=fast")
#endif
static void* fma_loop(void* argument) {
  float* out = (float*)argument;
  vfloat acc[ACCUMULATORS];
  vfloat x = 1e-7f - (vfloat){0}, y = 0.999999f - (vfloat){0};
  for (int i = 0; i < ACCUMULATORS; i++) acc[i] = (float)i - (vfloat){0};
  for (int64_t it = 0; it < ITERATIONS; it++) {
#if defined(__clang__)
#pragma clang fp contract(fast)
#pragma unroll
#else
#pragma GCC unroll 12
#endif
    for (int i = 0; i < ACCUMULATORS; i++) acc[i] = acc[i] * y + x;
  }
  float s = 0;
  for (int i = 0; i < ACCUMULATORS; i++) s += acc[i][0];
  *out = s;
  return NULL;
}

static int compare(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

int main(int argc, char** argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 2;
  int reps = argc > 2 ? atoi(argv[2]) : 11;
  if (threads < 1 || threads > 64 || reps < 1) {
    fprintf(stderr, "usage: %s [threads 1-64] [reps]\n", argv[0]);
    return 2;
  }
  pthread_t ids[64];
  float sinks[64];
  double* times = malloc(sizeof(double) * (size_t)reps);
  fma_loop(&sinks[0]); /* warm-up: clocks up, pages in */
  for (int r = 0; r < reps; r++) {
    double t0 = now_seconds();
    for (int t = 0; t < threads; t++) pthread_create(&ids[t], NULL, fma_loop, &sinks[t]);
    for (int t = 0; t < threads; t++) pthread_join(ids[t], NULL);
    times[r] = now_seconds() - t0;
  }
  qsort(times, (size_t)reps, sizeof(double), compare);
  double flops = 2.0 * ACCUMULATORS * (VECTOR_BYTES / 4) * (double)ITERATIONS * threads;
  printf("FP32 FMA peak, %d thread%s: median %.1f GFLOP/s (min %.1f, max %.1f; the max is used as peak), "
         "%d-byte vectors\n", threads, threads > 1 ? "s" : "", flops / times[reps / 2] * 1e-9,
         flops / times[reps - 1] * 1e-9, flops / times[0] * 1e-9, VECTOR_BYTES);
  float total = 0;
  for (int t = 0; t < threads; t++) total += sinks[t];
  free(times);
  return total == 12345.0f; /* keeps the loops live */
}
