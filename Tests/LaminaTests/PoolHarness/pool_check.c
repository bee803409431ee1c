/* pool_check — the thread pool's contract, run as a child process by ThreadPoolTests: every task of a
 * run executes exactly once, whatever the thread count (1 to 5) and the task count (0, 1, fewer tasks
 * than threads, uneven splits, and loops longer than one job's 16-bit ranges, which run as several
 * jobs), with runs back to back, after a hush, and with tasks of uneven length so threads steal from
 * each other's ranges. Prints a line per thread count and exits 1 at the first task run twice or never.
 * Also each thread's kept buffer (lamina_pool_thread_buffer): one per thread, 64-byte aligned, the same
 * one while it is big enough, written and read back only by the tasks that run on its thread.
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

/* The buffers of one run's threads; each task fills its thread's with its own index and reads it back. */
typedef struct {
  int64_t* buffers[8];
  int64_t elements;
  atomic_int failures;
} buffer_job;

static void buffer_body(void* arg, int64_t task, int thread) {
  buffer_job* job = (buffer_job*)arg;
  int64_t* own = job->buffers[thread];
  for (int64_t i = 0; i < job->elements; i++) own[i] = task * 1000003 + i;
  for (int64_t i = 0; i < job->elements; i++)
    if (own[i] != task * 1000003 + i) atomic_fetch_add(&job->failures, 1);
}

/* 0 when the thread buffers keep their contract on this pool, else prints what broke and returns 1. */
static int check_thread_buffers(lamina_pool* pool, int threads) {
  if (lamina_pool_thread_buffer(pool, threads, 64) || lamina_pool_thread_buffer(pool, -1, 64) ||
      lamina_pool_thread_buffer(NULL, 0, 64) || lamina_pool_thread_buffer(pool, 0, LAMINA_POOL_THREAD_BUFFER_MAX + 1)) {
    printf("threads %d: a thread buffer for a thread out of range, no pool or too many bytes\n", threads);
    return 1;
  }
  const int64_t sizes[] = {1, 100, 5000, 300, 70000, 64, 70000};
  for (int round = 0; round < 7; round++) {
    buffer_job job = {{0}, sizes[round], 0};
    for (int t = 0; t < threads; t++) {
      void* before = lamina_pool_thread_buffer(pool, t, 1);
      job.buffers[t] = (int64_t*)lamina_pool_thread_buffer(pool, t, (size_t)job.elements * sizeof(int64_t));
      if (!job.buffers[t] || (uintptr_t)job.buffers[t] % 64 != 0) {
        printf("threads %d: thread %d's buffer of %lld elements is missing or not 64-byte aligned\n", threads, t,
               (long long)job.elements);
        return 1;
      }
      if (round > 0 && sizes[round] <= sizes[round - 1] && job.buffers[t] != before) {
        printf("threads %d: thread %d's buffer moved without growing\n", threads, t);
        return 1;
      }
      for (int u = 0; u < t; u++)
        if (job.buffers[u] == job.buffers[t]) {
          printf("threads %d: threads %d and %d share a buffer\n", threads, u, t);
          return 1;
        }
    }
    lamina_pool_run(pool, 40, buffer_body, &job);
    if (atomic_load(&job.failures)) {
      printf("threads %d: a thread's buffer changed under one of its tasks\n", threads);
      return 1;
    }
  }
  return 0;
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
    if (check_thread_buffers(pool, threads)) return 1;
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
