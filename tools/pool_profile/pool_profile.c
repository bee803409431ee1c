/* pool_profile — how a model's forward splits its work over the pool's threads, in CPU time.
 *
 * On a shared machine the wall clock of a 2-thread call mostly measures the neighbours; CPU time does
 * not: each thread's CPU time inside task bodies (the pool's tasks: GEMM tiles, bands of a direct
 * convolution, chunks of an elementwise loop), the caller's CPU time spinning for the other threads'
 * tasks, and the caller's CPU time outside every parallel run (serial kernels and the serial parts of
 * kernels: packing before a run, an epilogue run on the caller after it). With 1 thread everything is
 * "outside runs"; with 2, a quiet machine's wall time is about max(caller, worker) in tasks + outside.
 *
 *   lamina compile model.lam -o /tmp/m.so --emit-c /tmp/m       (any target)
 *   cd /tmp/m && sed -i 's/-c lamina_pool.c/-DLAMINA_POOL_PROFILE -c lamina_pool.c/' build.sh && sh build.sh
 *   cc -O2 tools/pool_profile/pool_profile.c -o pool_profile -ldl
 *   ./pool_profile /tmp/m/libmodel.so THREADS RUNS INPUT_ELEMENTS [BATCH]
 *
 * The model's first input is one f32 tensor of INPUT_ELEMENTS elements (the others NULL), its symbolic
 * dimensions all BATCH (default 1); parameters get small random values. Prints per forward call: the
 * wall time, the caller's CPU time split as above, the worker threads' CPU time in tasks, the tasks each
 * thread ran and the runs (split over threads, or inline on the caller). */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int64_t clock_ns(clockid_t kind) {
  struct timespec t;
  clock_gettime(kind, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void* symbol(void* library, const char* name) {
  void* found = dlsym(library, name);
  if (!found) {
    fprintf(stderr, "no %s in the library (for lamina_pool_profile: build lamina_pool.c with -DLAMINA_POOL_PROFILE)\n",
            name);
    exit(1);
  }
  return found;
}

int main(int argc, char** argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: pool_profile LIBRARY.so THREADS RUNS INPUT_ELEMENTS [BATCH]\n");
    return 2;
  }
  void* library = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!library) {
    fprintf(stderr, "%s\n", dlerror());
    return 1;
  }
  const int threads = atoi(argv[2]), runs = atoi(argv[3]);
  const int64_t elements = atoll(argv[4]), batch = argc > 5 ? atoll(argv[5]) : 1;
  void* (*create)(int) = (void* (*)(int))symbol(library, "lamina_create");
  int (*forward)(void*, const int64_t*, const void* const*, void* const*) =
      (int (*)(void*, const int64_t*, const void* const*, void* const*))symbol(library, "lamina_forward");
  void (*profile)(int64_t*) = (void (*)(int64_t*))symbol(library, "lamina_pool_profile");
  int64_t (*param_count)(void) = (int64_t (*)(void))symbol(library, "lamina_param_count");
  int64_t (*param_bytes)(int64_t) = (int64_t (*)(int64_t))symbol(library, "lamina_param_bytes");
  void* (*param_data)(void*, int64_t) = (void* (*)(void*, int64_t))symbol(library, "lamina_param_data");
  void* context = create(threads);
  if (!context) {
    fprintf(stderr, "no context (out of memory, or the CPU lacks the library's instruction set)\n");
    return 1;
  }
  srand(1);
  for (int64_t p = 0; p < param_count(); p++) {
    float* data = (float*)param_data(context, p);
    for (int64_t i = 0; i < param_bytes(p) / 4; i++) data[i] = (rand() / (float)RAND_MAX - 0.5f) * 0.1f;
  }
  float* x = malloc(sizeof(float) * elements);
  float* y = malloc(64 << 20); /* outputs up to 16M floats */
  for (int64_t i = 0; i < elements; i++) x[i] = rand() / (float)RAND_MAX - 0.5f;
  const void* inputs[16] = {x};
  void* outputs[1] = {y};
  int64_t dims[16];
  for (int i = 0; i < 16; i++) dims[i] = batch;
  int64_t counters[19];
  for (int warm = 0; warm < 2; warm++)
    if (forward(context, dims, inputs, outputs) != 0) {
      fprintf(stderr, "the forward call failed\n");
      return 1;
    }
  profile(counters); /* cleared */
  const int64_t cpu0 = clock_ns(CLOCK_THREAD_CPUTIME_ID), wall0 = clock_ns(CLOCK_MONOTONIC);
  for (int r = 0; r < runs; r++) forward(context, dims, inputs, outputs);
  const double cpu = (double)(clock_ns(CLOCK_THREAD_CPUTIME_ID) - cpu0), wall = (double)(clock_ns(CLOCK_MONOTONIC) - wall0);
  profile(counters);
  double workers = 0, worker_tasks = 0;
  for (int i = 1; i < 8; i++) workers += (double)counters[i], worker_tasks += (double)counters[8 + i];
  const double ms = 1e6 * runs;
  printf("threads %d, per forward: wall %.2f ms; caller CPU %.2f ms = in tasks %.2f + waiting %.2f + outside runs %.2f; "
         "workers in tasks %.2f ms; tasks: caller %.1f, workers %.1f; runs: %.1f split, %.1f inline\n",
         threads, wall / ms, cpu / ms, counters[0] / ms, counters[16] / ms, (cpu - counters[0] - counters[16]) / ms,
         workers / ms, counters[8] / (double)runs, worker_tasks / runs, counters[17] / (double)runs,
         counters[18] / (double)runs);
  return 0;
}
