/* core_latency — the round trip of a cache line between two threads, in nanoseconds.
 *
 * Two threads pass a counter back and forth through one cache line (each waits, spinning, for the
 * other's increment): a warm-up, then 5 repeats of ROUNDS round trips, and the median repeat's mean
 * is printed. It tells which
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
enum { REPEATS = 5, WARM_UP = 20000 };

/* Returns every exchange of the whole run: the warm-up (both vCPUs awake and the line hot: a vCPU idle
   for a while is halted, and waking it takes microseconds) and then the timed repeats. */
static void* partner(void* unused) {
  (void)unused;
  const long total = WARM_UP + REPEATS * rounds;
  for (long i = 0; i < total; i++) {
    while (atomic_load_explicit(&ball, memory_order_acquire) != 2 * i + 1) {
    }
    atomic_store_explicit(&ball, 2 * i + 2, memory_order_release);
  }
  return NULL;
}

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

/* Serves exchanges [first, first + count) and returns their mean round trip. */
static double serve(long first, long count) {
  const double begin = now_ns();
  for (long i = first; i < first + count; i++) {
    atomic_store_explicit(&ball, 2 * i + 1, memory_order_release);
    while (atomic_load_explicit(&ball, memory_order_acquire) != 2 * i + 2) {
    }
  }
  return (now_ns() - begin) / (double)count;
}

static int compare(const void* a, const void* b) {
  const double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

int main(int argc, char** argv) {
  if (argc > 1) rounds = atol(argv[1]);
  if (rounds < 1) rounds = 1;
  atomic_store(&ball, 0);
  pthread_t thread;
  if (pthread_create(&thread, NULL, partner, NULL) != 0) return 1;
  serve(0, WARM_UP);
  double samples[REPEATS];
  for (int i = 0; i < REPEATS; i++) samples[i] = serve(WARM_UP + i * rounds, rounds);
  pthread_join(thread, NULL);
  qsort(samples, REPEATS, sizeof samples[0], compare);
  printf("%.0f\n", samples[REPEATS / 2]);
  return 0;
}
