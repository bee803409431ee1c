/* bench_pair — two builds of one model, timed against each other in one process, call by call.
 *
 * For "at least as fast as the commit before" on a shared, noisy machine: both libraries (say one
 * built by the previous commit's lamina, one by this one) run the same inputs, alternately (which
 * goes first alternates too), each timed call after an untimed one of the same library, with the
 * other library's threads asleep. Reports each one's median, min and max, and the median of the
 * per-round ratios A / B with its quartiles (above 1: B is faster).
 *
 *   cc -O2 tools/bench_pair/bench_pair.c -o bench_pair -ldl
 *   bench_pair A.so B.so forward|train ROWS COLUMNS CLASSES ROUNDS [THREADS [cpu]]
 *
 * The model's inputs must be one f32 matrix [ROWS, COLUMNS] (the one symbolic dimension is ROWS)
 * and, for train, an i32 label per row below CLASSES. Parameters get the same small random values in
 * both. THREADS (default 2) is each context's pool; "cpu" times the calling thread's CPU time instead
 * of the wall clock (with THREADS 1, a measure of the work that a loaded machine barely disturbs). */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef void* (*create_function)(int);
typedef void (*idle_function)(void*);
typedef int (*forward_function)(void*, const int64_t*, const void* const*, void* const*);
typedef int (*train_function)(void*, int64_t, const int64_t*, const void* const*, void*);
typedef int64_t (*count_function)(void);
typedef int64_t (*bytes_function)(int64_t);
typedef void* (*data_function)(void*, int64_t);
typedef const char* (*name_function)(void*);

static clockid_t clock_kind = CLOCK_MONOTONIC;

static double now_ms(void) {
  struct timespec t;
  clock_gettime(clock_kind, &t);
  return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

static int compare_doubles(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

static void* symbol(void* library, const char* name) {
  void* found = dlsym(library, name);
  if (!found) {
    fprintf(stderr, "no %s in the library\n", name);
    exit(1);
  }
  return found;
}

int main(int argc, char** argv) {
  if (argc < 8) {
    fprintf(stderr, "usage: bench_pair A.so B.so forward|train ROWS COLUMNS CLASSES ROUNDS [THREADS [cpu]]\n");
    return 2;
  }
  const int train = strcmp(argv[3], "train") == 0;
  const int64_t rows = atoll(argv[4]), columns = atoll(argv[5]), classes = atoll(argv[6]);
  const int rounds = atoi(argv[7]);
  const int threads = argc > 8 ? atoi(argv[8]) : 2;
  if (argc > 9 && strcmp(argv[9], "cpu") == 0) clock_kind = CLOCK_THREAD_CPUTIME_ID;

  void* context[2];
  forward_function forward[2];
  train_function train_step[2];
  idle_function idle[2];
  for (int l = 0; l < 2; l++) {
    void* library = dlopen(argv[1 + l], RTLD_NOW | RTLD_LOCAL);
    if (!library) {
      fprintf(stderr, "%s\n", dlerror());
      return 1;
    }
    context[l] = ((create_function)symbol(library, "lamina_create"))(threads);
    if (!context[l]) {
      fprintf(stderr, "%s: no context (out of memory, or the CPU lacks its instruction set)\n", argv[1 + l]);
      return 1;
    }
    forward[l] = (forward_function)symbol(library, "lamina_forward");
    train_step[l] = train ? (train_function)symbol(library, "lamina_train_step") : NULL;
    idle[l] = (idle_function)symbol(library, "lamina_idle");
    name_function instruction_set = (name_function)dlsym(library, "lamina_instruction_set");
    printf("%s: instruction set %s\n", argv[1 + l],
           instruction_set ? instruction_set(context[l]) : "(a library from before --target: -march=native)");
    srand(1);
    const int64_t count = ((count_function)symbol(library, "lamina_param_count"))();
    for (int64_t p = 0; p < count; p++) {
      float* data = ((data_function)symbol(library, "lamina_param_data"))(context[l], p);
      const int64_t floats = ((bytes_function)symbol(library, "lamina_param_bytes"))(p) / 4;
      for (int64_t i = 0; i < floats; i++) data[i] = (rand() / (float)RAND_MAX - 0.5f) * 0.1f;
    }
  }

  float* x = malloc(sizeof(float) * rows * columns);
  float* y = malloc(sizeof(float) * rows * columns);
  int32_t* label = malloc(sizeof(int32_t) * rows);
  for (int64_t i = 0; i < rows * columns; i++) x[i] = (rand() / (float)RAND_MAX - 0.5f) * 4;
  for (int64_t i = 0; i < rows; i++) label[i] = (int32_t)(i % (classes > 0 ? classes : 1));
  const void* inputs[2] = {x, label};
  void* outputs[1] = {y};
  float loss;
  const int64_t dims[1] = {rows};

  double* times[2] = {malloc(sizeof(double) * rounds), malloc(sizeof(double) * rounds)};
  double* ratios = malloc(sizeof(double) * rounds);
  for (int round = -5; round < rounds; round++) {
    for (int k = 0; k < 2; k++) {
      const int l = (round + k) & 1;
      idle[1 - l](context[1 - l]);
      int status = 0;
      for (int timed = 0; timed < 2; timed++) {
        const double start = now_ms();
        status |= train ? train_step[l](context[l], 0, dims, inputs, &loss)
                        : forward[l](context[l], dims, inputs, outputs);
        if (timed && round >= 0) times[l][round] = now_ms() - start;
      }
      if (status) {
        fprintf(stderr, "%s: the call failed\n", argv[1 + l]);
        return 1;
      }
    }
    if (round >= 0) ratios[round] = times[0][round] / times[1][round];
  }
  for (int l = 0; l < 2; l++) {
    qsort(times[l], rounds, sizeof(double), compare_doubles);
    printf("%s: median %.3f ms, min %.3f, max %.3f\n", argv[1 + l], times[l][rounds / 2], times[l][0],
           times[l][rounds - 1]);
  }
  qsort(ratios, rounds, sizeof(double), compare_doubles);
  printf("A / B per round: median %.3f (quartiles %.3f-%.3f) over %d rounds\n", ratios[rounds / 2],
         ratios[rounds / 4], ratios[3 * rounds / 4], rounds);
  return 0;
}
