/* pool_check — the thread pool's contract, run as a child process by ThreadPoolTests: every task of a
 * run executes exactly once, whatever the thread count (1 to 5) and the task count (0, 1, fewer tasks
 * than threads, uneven splits, and loops longer than one job's 16-bit ranges, which run as several
 * jobs), with runs back to back, after a hush, and with tasks of uneven length so threads steal from
 * each other's ranges. Prints a line per thread count and exits 1 at the first task run twice or never.
 * ThreadPoolTests builds it with -fsanitize=thread too where the compiler can. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "lamina_runtime.h"

enum { MOST_TASKS = 5 * 0xffff + 1000 };
static atomic_int runs_of[MOST_TASKS];
static atomic_long tasks_of_thread[8];

/* arg: how long each task spins; tasks of odd index twice as long, so the split needs stealing. */
static void body(void* arg, int64_t task, int thread) {
  atomic_fetch_add(&runs_of[task], 1);
  atomic_fetch_add(&tasks_of_thread[thread], 1);
  const long spins = (long)(intptr_t)arg * (1 + (task & 1));
  volatile long sink = 0;
  for (long i = 0; i < spins; i++) sink += i;
}

int main(void) {
  for (int threads = 1; threads <= 5; threads++) {
    lamina_pool* pool = lamina_pool_create(threads);
    if (!pool) {
      printf("no pool of %d threads\n", threads);
      return 1;
    }
    for (int round = 0; round < 2000; round++) {
      int64_t tasks = round % 7 == 0 ? round % 6 : (round * 7919) % 300 + 1;
      if (round == 5) tasks = (int64_t)threads * 0xffff + 17; /* more than one job */
      if (round == 6) tasks = MOST_TASKS;
      for (int64_t t = 0; t < tasks; t++) atomic_store(&runs_of[t], 0);
      lamina_pool_run(pool, tasks, body, (void*)(intptr_t)(round % 3 ? 0 : 300));
      for (int64_t t = 0; t < tasks; t++) {
        if (atomic_load(&runs_of[t]) != 1) {
          printf("threads %d, round %d (%lld tasks): task %lld ran %d times\n", threads, round, (long long)tasks,
                 (long long)t, atomic_load(&runs_of[t]));
          return 1;
        }
      }
      if (round % 400 == 0) lamina_pool_hush(pool); /* the next run wakes sleeping workers */
    }
    if (lamina_pool_threads(pool) != threads) {
      printf("a pool of %d threads reports %d\n", threads, lamina_pool_threads(pool));
      return 1;
    }
    lamina_pool_destroy(pool);
    printf("threads %d: every task ran once; tasks per thread:", threads);
    for (int t = 0; t < threads; t++) printf(" %ld", atomic_exchange(&tasks_of_thread[t], 0));
    printf("\n");
  }
  return 0;
}
