/* core_latency — the round trip of a cache line between two threads, in nanoseconds.
 *
 * Two threads pass a counter back and forth through one cache line (each waits, spinning, for the
 * other's increment), ROUNDS times, and the median round trip of 5 repeats is printed. It tells which
 * of two states a 2-vCPU virtual machine is in: on the Zen 4 machine this project is measured on, the
 * two vCPUs sometimes share a die (~50 ns) and sometimes sit on different dies (~330 ns), switching every
 * few seconds. Every framework's 2-thread time moves with it (ShuffleNet 2.7 ms against 4.0-5.4 ms, ONNX
 * Runtime's as much), so benchmarks (tools/bench_onnx.py) probe it around each timed process and
 * compare frameworks only within one state.
 *
 *   cc -O2 -pthread tools/core_latency/core_latency.c -o core_latency && ./core_latency [ROUNDS]
 *
 * The threads are not pinned: the scheduler places them as it places a framework's pool. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static _Alignas(64) atomic_long ball;
static long rounds = 50000;

static void* partner(void* unused) {
  (void)unused;
  for (long i = 0; i < rounds; i++) {
    while (atomic_load_explicit(&ball, memory_order_acquire) != 2 * i + 1) {
    }
    atomic_store_explicit(&ball, 2 * i + 2, memory_order_release);
  }
  return NULL;
}

static double round_trip_ns(void) {
  atomic_store(&ball, 0);
  pthread_t thread;
  if (pthread_create(&thread, NULL, partner, NULL) != 0) return -1;
  struct timespec begin, end;
  clock_gettime(CLOCK_MONOTONIC, &begin);
  for (long i = 0; i < rounds; i++) {
    atomic_store_explicit(&ball, 2 * i + 1, memory_order_release);
    while (atomic_load_explicit(&ball, memory_order_acquire) != 2 * i + 2) {
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &end);
  pthread_join(thread, NULL);
  return ((double)(end.tv_sec - begin.tv_sec) * 1e9 + (double)(end.tv_nsec - begin.tv_nsec)) / (double)rounds;
}

static int compare(const void* a, const void* b) {
  const double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

int main(int argc, char** argv) {
  if (argc > 1) rounds = atol(argv[1]);
  if (rounds < 1) rounds = 1;
  double samples[5];
  for (int i = 0; i < 5; i++) samples[i] = round_trip_ns();
  qsort(samples, 5, sizeof samples[0], compare);
  printf("%.0f\n", samples[2]);
  return 0;
}
