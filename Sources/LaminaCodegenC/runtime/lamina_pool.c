/* lamina_pool.c — the thread pool of the Lamina C runtime.
 *
 * Design
 * ------
 * A fixed set of worker threads, created once, plus the calling thread, which always takes part in a
 * run as thread 0. A run is a parallel loop over [0, tasks), cut into one contiguous home range per
 * thread (thread t's is [ceil(t*tasks/P), ceil((t+1)*tasks/P))). A thread claims the tasks of its own
 * range from the front, one at a time, and when it has none left it steals from the back of the
 * others' ranges. So on a quiet machine thread t runs the same part of every loop: kernels split the
 * same way (a convolution's output rows, an elementwise loop's elements) find their operands in the
 * cache of the core that wrote them. That matters more than it seems: on a virtual machine whose two
 * cores sit on different dies, moving a cache line between them costs ~160 ns (against ~25 ns on one
 * die), and with tasks dealt out first come first served, every layer read half its input from the
 * other core's cache: ShuffleNet's forward took 5.4 ms there, slower than on one thread (4.7 ms).
 * Stealing keeps the dynamic balance: a thread descheduled by a noisy neighbour simply runs fewer
 * tasks, and a worker that wakes up too late runs none (the caller waits only for tasks that were
 * claimed, never for a worker to show up).
 *
 * Dispatch latency is what matters for small models (a batch-1 MLP layer is a few microseconds of
 * work), so:
 *   - a run publishes its job by storing a new generation into every range; idle workers spin on their own for
 *     LAMINA_POOL_SPIN_NS (200 us) before sleeping on a condition variable, so back-to-back runs never
 *     pay for a futex wake-up;
 *   - the caller spins the same way while other threads finish their last tasks, then sleeps too;
 *   - runs with a single task (or a pool of one thread) execute inline on the caller: no atomics, no
 *     locks, no wake-ups;
 *   - nothing is allocated per run.
 * Sleeping and waking use the usual "announce, then re-check under the mutex" protocol on sequentially
 * consistent atomics, so a wake-up is never lost and the mutex is only touched when someone sleeps.
 *
 * Each thread also owns a block of scratch memory (64-byte aligned, LAMINA_POOL_SCRATCH_BYTES, allocated
 * at creation) that kernels use for packing (lamina_gemm.c packs its A and B blocks there).
 *
 * A pool runs one job at a time: lamina_pool_run must not be called concurrently on the same pool, nor
 * from inside a task body. Several pools may coexist in one process; a spinning idle worker holds a
 * core, so when another pool (another model) takes over, lamina_pool_hush sends this one's workers to
 * sleep at once instead of after their spin. The next run clears it.
 */

/* clock_gettime and sysconf are POSIX, which strict -std=c11 hides unless asked for. */
#if !defined(_POSIX_C_SOURCE) && !defined(_GNU_SOURCE) && !defined(_DEFAULT_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lamina_runtime.h"

/* How long an idle thread spins before it sleeps, in nanoseconds. */
#ifndef LAMINA_POOL_SPIN_NS
#define LAMINA_POOL_SPIN_NS 200000
#endif

/* -DLAMINA_POOL_PROFILE (tools/pool_profile): per thread, the CPU time spent inside task bodies and the
   tasks run, and the caller's CPU time spent waiting for other threads' tasks, summed over every pool of
   the process until lamina_pool_profile (exported, for the tool's driver) reads and clears them. How a
   call's work is split over the threads, in CPU time, which a loaded machine disturbs far less than the
   wall clock. Off by default: no cost. */
#ifdef LAMINA_POOL_PROFILE
enum { LAMINA_POOL_PROFILED_THREADS = 8 };
static _Atomic int64_t lamina_pool_task_ns[LAMINA_POOL_PROFILED_THREADS], lamina_pool_task_count[LAMINA_POOL_PROFILED_THREADS];
static _Atomic int64_t lamina_pool_wait_ns, lamina_pool_runs, lamina_pool_inline_runs;
static int64_t lamina_pool_cpu_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}
/* out[0..8): task CPU ns of threads 0..7, out[8..16): their task counts, out[16]: the caller's waiting CPU ns,
   out[17]: runs split over threads, out[18]: runs executed inline on the caller. */
__attribute__((visibility("default"))) void lamina_pool_profile(int64_t* out) {
  for (int i = 0; i < LAMINA_POOL_PROFILED_THREADS; i++) {
    out[i] = atomic_exchange(&lamina_pool_task_ns[i], 0);
    out[LAMINA_POOL_PROFILED_THREADS + i] = atomic_exchange(&lamina_pool_task_count[i], 0);
  }
  out[16] = atomic_exchange(&lamina_pool_wait_ns, 0);
  out[17] = atomic_exchange(&lamina_pool_runs, 0);
  out[18] = atomic_exchange(&lamina_pool_inline_runs, 0);
}
#define LAMINA_POOL_PROFILE_TASK(thread, call)                                                  \
  do {                                                                                         \
    const int64_t profile_begin = lamina_pool_cpu_ns();                                        \
    call;                                                                                      \
    lamina_pool_task_ns[(thread) % LAMINA_POOL_PROFILED_THREADS] += lamina_pool_cpu_ns() - profile_begin; \
    lamina_pool_task_count[(thread) % LAMINA_POOL_PROFILED_THREADS]++;                         \
  } while (0)
#define LAMINA_POOL_PROFILE_COUNT(counter) (counter)++
#define LAMINA_POOL_PROFILE_NOW() lamina_pool_cpu_ns()
#define LAMINA_POOL_PROFILE_WAITED(begin) (lamina_pool_wait_ns += lamina_pool_cpu_ns() - (begin))
#else
#define LAMINA_POOL_PROFILE_TASK(thread, call) call
#define LAMINA_POOL_PROFILE_COUNT(counter) ((void)0)
#define LAMINA_POOL_PROFILE_NOW() 0
#define LAMINA_POOL_PROFILE_WAITED(begin) ((void)(begin))
#endif

/* A thread's home range of the current job: its first task (`base`) and, in one word, the job's
   generation (high 32 bits) and the unclaimed part [base + first, base + end) (bits 0-15: first, 16-31:
   end). A thread claims a task with a compare-and-swap that also checks the job is still the one it
   read, so a worker that wakes up late can never take a task of a later job. Jobs have even
   generations; an odd one means "being set up". A cache line each: the owner claims from it all the
   time, the others only when they steal. */
typedef struct lamina_pool_range {
  _Alignas(64) atomic_uint_fast64_t word;
  atomic_int_fast64_t base;
} lamina_pool_range;

/* Tasks in one thread's range at most (16 bits of the word); longer loops run as several jobs. */
#define LAMINA_POOL_RANGE_MAX 0xffff

typedef struct lamina_pool_worker {
  lamina_pool* pool;
  pthread_t thread;
  int index;
} lamina_pool_worker;

struct lamina_pool {
  int threads;                      /* including the caller */
  lamina_pool_worker* workers;      /* threads - 1 of them */
  unsigned char* scratch;           /* threads * LAMINA_POOL_SCRATCH_BYTES, 64-byte aligned */
  void** thread_buffers;            /* lamina_pool_thread_buffer: one per thread, grown on demand */
  size_t* thread_buffer_bytes;

  /* The current job. Written by the caller between closing the previous generation and publishing the
     new one (see lamina_pool_publish); atomics only because a late worker may read them meanwhile. */
  _Atomic(void (*)(void* arg, int64_t task, int thread)) body;
  _Atomic(void*) arg;
  atomic_int_fast64_t tasks;

  lamina_pool_range* ranges;        /* one per thread, 64-byte aligned */

  _Alignas(64) atomic_int_fast64_t done; /* tasks of the current job finished */
  _Alignas(64) atomic_int sleepers;      /* workers asleep (or about to be) on `wake` */
  atomic_int caller_sleeping;
  atomic_int stop;
  atomic_int hush; /* idle workers sleep now instead of spinning (lamina_pool_hush; cleared by a run) */

  pthread_mutex_t mutex;
  pthread_cond_t wake; /* workers wait here for a new generation */
  pthread_cond_t done_cond; /* the caller waits here for done == tasks */
};

static inline void lamina_pool_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

static inline int64_t lamina_pool_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Spins until `changed` is true or LAMINA_POOL_SPIN_NS pass (the caller re-checks which). The clock
   is read only every 64 pauses. */
#define LAMINA_POOL_SPIN_UNTIL(changed)                                               \
  do {                                                                                \
    int64_t lamina_spin_start_ = -1;                                                  \
    for (int lamina_spin_i_ = 1; !(changed); lamina_spin_i_++) {                      \
      lamina_pool_pause();                                                            \
      if ((lamina_spin_i_ & 63) == 0) {                                               \
        int64_t lamina_spin_now_ = lamina_pool_now_ns();                              \
        if (lamina_spin_start_ < 0) lamina_spin_start_ = lamina_spin_now_;            \
        else if (lamina_spin_now_ - lamina_spin_start_ > LAMINA_POOL_SPIN_NS) break;  \
      }                                                                               \
    }                                                                                 \
  } while (0)

/* Whether generation `gen` is a job a worker that last saw `seen` has not joined yet. */
static inline int lamina_pool_new_job(uint_fast64_t gen, uint_fast64_t seen) { return gen != seen && (gen & 1) == 0; }

/* Claims a task of generation `gen` from `range`: the front one when it is the thread's own, the back
   one when stealing. Returns the task, or -1 when the range has none left (or the job is over). */
static inline int64_t lamina_pool_claim(lamina_pool_range* range, uint_fast64_t gen, int own) {
  uint_fast64_t word = atomic_load_explicit(&range->word, memory_order_acquire);
  for (;;) {
    const uint_fast64_t first = word & 0xffff, end = (word >> 16) & 0xffff;
    if ((word >> 32) != gen || first >= end) return -1;
    /* Read before the claim: if the caller has moved on to a later job since `word` was read, it
       closed this range before writing `base`, so the compare-and-swap below fails. */
    const int64_t base = atomic_load_explicit(&range->base, memory_order_acquire);
    const uint_fast64_t claimed = own ? word + 1 : word - 0x10000;
    if (atomic_compare_exchange_weak_explicit(&range->word, &word, claimed, memory_order_acq_rel,
                                              memory_order_acquire))
      return base + (int64_t)(own ? first : end - 1);
  }
}

/* Takes tasks of generation `gen` until there are none left (or the job is over): its own range first,
   then the others', nearest first. */
static void lamina_pool_drain(lamina_pool* pool, uint_fast64_t gen, int thread) {
  /* Read after the acquire load that showed `gen`. If the caller has moved on since, these may belong
     to a later job, but then (acquire/release: the caller closed the old generation before writing
     them) every range's generation has changed too and no claim below succeeds. */
  const int64_t tasks = atomic_load_explicit(&pool->tasks, memory_order_acquire);
  void (*body)(void*, int64_t, int) = atomic_load_explicit(&pool->body, memory_order_acquire);
  void* arg = atomic_load_explicit(&pool->arg, memory_order_acquire);
  const int threads = pool->threads;
  for (int offset = 0; offset < threads; offset++) {
    lamina_pool_range* range = &pool->ranges[(thread + offset) % threads];
    for (int64_t task; (task = lamina_pool_claim(range, gen, offset == 0)) >= 0;) {
      LAMINA_POOL_PROFILE_TASK(thread, body(arg, task, thread));
      /* The one who finishes the last task wakes the caller if it went to sleep. */
      if (atomic_fetch_add(&pool->done, 1) + 1 == tasks && atomic_load(&pool->caller_sleeping)) {
        pthread_mutex_lock(&pool->mutex);
        pthread_cond_signal(&pool->done_cond);
        pthread_mutex_unlock(&pool->mutex);
      }
    }
  }
}

static void* lamina_pool_worker_main(void* p) {
  lamina_pool_worker* self = (lamina_pool_worker*)p;
  lamina_pool* pool = self->pool;
  atomic_uint_fast64_t* own = &pool->ranges[self->index].word;
  uint_fast64_t seen = atomic_load(own) >> 32;
  for (;;) {
    /* Spin on the generation first: new work usually comes soon after the last. */
    uint_fast64_t gen;
    LAMINA_POOL_SPIN_UNTIL(lamina_pool_new_job(gen = atomic_load_explicit(own, memory_order_acquire) >> 32, seen) ||
                           atomic_load_explicit(&pool->stop, memory_order_acquire) ||
                           atomic_load_explicit(&pool->hush, memory_order_relaxed));
    /* `stop` is checked too: a worker that starts after destroy published its last generation
       would otherwise wait for one more forever. */
    if (!lamina_pool_new_job(gen, seen) && !atomic_load_explicit(&pool->stop, memory_order_acquire)) {
      /* Announce we sleep, then re-check under the mutex: the caller publishes a job before it reads
         `sleepers`, so either it sees us and broadcasts, or we see the new generation. */
      pthread_mutex_lock(&pool->mutex);
      atomic_fetch_add(&pool->sleepers, 1);
      while (!lamina_pool_new_job(gen = atomic_load(own) >> 32, seen) && !atomic_load(&pool->stop))
        pthread_cond_wait(&pool->wake, &pool->mutex);
      atomic_fetch_sub(&pool->sleepers, 1);
      pthread_mutex_unlock(&pool->mutex);
    }
    seen = gen;
    if (atomic_load_explicit(&pool->stop, memory_order_acquire)) break;
    lamina_pool_drain(pool, gen, self->index);
  }
  return NULL;
}

int lamina_pool_threads(const lamina_pool* pool) { return pool ? pool->threads : 1; }

void lamina_pool_hush(lamina_pool* pool) {
  if (pool) atomic_store_explicit(&pool->hush, 1, memory_order_relaxed);
}

void* lamina_pool_scratch(lamina_pool* pool, int thread, size_t* bytes) {
  if (bytes) *bytes = LAMINA_POOL_SCRATCH_BYTES;
  return pool->scratch + (size_t)thread * LAMINA_POOL_SCRATCH_BYTES;
}

void* lamina_pool_thread_buffer(lamina_pool* pool, int thread, size_t bytes) {
  if (!pool || thread < 0 || thread >= pool->threads || bytes > LAMINA_POOL_THREAD_BUFFER_MAX) return NULL;
  if (pool->thread_buffer_bytes[thread] < bytes) {
    const size_t rounded = (bytes + 63) / 64 * 64;
    free(pool->thread_buffers[thread]);
    pool->thread_buffers[thread] = aligned_alloc(64, rounded);
    pool->thread_buffer_bytes[thread] = pool->thread_buffers[thread] ? rounded : 0;
  }
  return pool->thread_buffers[thread];
}

lamina_pool* lamina_pool_create(int threads) {
  if (threads <= 0) {
    const char* env = getenv("LAMINA_NUM_THREADS");
    if (env && *env) threads = atoi(env);
    if (threads <= 0) threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads <= 0) threads = 1;
  }
  if (threads > LAMINA_POOL_MAX_THREADS) threads = LAMINA_POOL_MAX_THREADS;

  lamina_pool* pool = (lamina_pool*)aligned_alloc(64, (sizeof(lamina_pool) + 63) & ~(size_t)63);
  if (!pool) return NULL;
  memset(pool, 0, sizeof *pool);
  pool->threads = threads;
  atomic_init(&pool->body, NULL);
  atomic_init(&pool->arg, NULL);
  atomic_init(&pool->tasks, 0);
  atomic_init(&pool->done, 0);
  atomic_init(&pool->sleepers, 0);
  atomic_init(&pool->caller_sleeping, 0);
  atomic_init(&pool->hush, 0);
  atomic_init(&pool->stop, 0);
  pthread_mutex_init(&pool->mutex, NULL);
  pthread_cond_init(&pool->wake, NULL);
  pthread_cond_init(&pool->done_cond, NULL);

  pool->scratch = (unsigned char*)aligned_alloc(64, (size_t)threads * LAMINA_POOL_SCRATCH_BYTES);
  pool->workers = (lamina_pool_worker*)calloc((size_t)threads, sizeof(lamina_pool_worker));
  pool->ranges = (lamina_pool_range*)aligned_alloc(64, (size_t)threads * sizeof(lamina_pool_range));
  pool->thread_buffers = (void**)calloc((size_t)threads, sizeof(void*));
  pool->thread_buffer_bytes = (size_t*)calloc((size_t)threads, sizeof(size_t));
  if (!pool->scratch || !pool->workers || !pool->ranges || !pool->thread_buffers || !pool->thread_buffer_bytes) {
    free(pool->scratch);
    free(pool->workers);
    free(pool->ranges);
    free(pool->thread_buffers);
    free(pool->thread_buffer_bytes);
    pthread_cond_destroy(&pool->done_cond);
    pthread_cond_destroy(&pool->wake);
    pthread_mutex_destroy(&pool->mutex);
    free(pool);
    return NULL;
  }
  for (int i = 0; i < threads; i++) {
    atomic_init(&pool->ranges[i].word, 0);
    atomic_init(&pool->ranges[i].base, 0);
  }
  for (int i = 1; i < threads; i++) {
    lamina_pool_worker* w = &pool->workers[i - 1];
    w->pool = pool;
    w->index = i;
    if (pthread_create(&w->thread, NULL, lamina_pool_worker_main, w) != 0) {
      pool->threads = i; /* run with the workers we got; destroy joins exactly these */
      break;
    }
  }
  return pool;
}

/* Sets up and publishes a new job (at most LAMINA_POOL_RANGE_MAX tasks per thread) and wakes sleeping
   workers. Every range of the old generation is closed first (odd generation, no task left), so a late
   worker can no longer claim anything while the job fields change; then each range opens with its
   part of the new job. */
static void lamina_pool_publish(lamina_pool* pool, void (*body)(void*, int64_t, int), void* arg, int64_t tasks) {
  atomic_store_explicit(&pool->hush, 0, memory_order_relaxed); /* workers spin again after this job */
  const int threads = pool->threads;
  const uint_fast64_t gen = (atomic_load_explicit(&pool->ranges[0].word, memory_order_relaxed) >> 32) + 1;
  for (int t = 0; t < threads; t++) atomic_store(&pool->ranges[t].word, (gen & 0xffffffffu) << 32);
  atomic_store_explicit(&pool->body, body, memory_order_release);
  atomic_store_explicit(&pool->arg, arg, memory_order_release);
  atomic_store_explicit(&pool->tasks, tasks, memory_order_release);
  atomic_store_explicit(&pool->done, 0, memory_order_relaxed);
  /* Thread t's range starts at ceil(t * tasks / threads): the caller's is never the empty one. */
  for (int t = 0; t < threads; t++) {
    const int64_t base = (t * tasks + threads - 1) / threads, end = ((t + 1) * tasks + threads - 1) / threads;
    atomic_store_explicit(&pool->ranges[t].base, base, memory_order_release);
    /* seq_cst: orders the fields above, and the read of `sleepers` below */
    atomic_store(&pool->ranges[t].word, (((gen + 1) & 0xffffffffu) << 32) | ((uint_fast64_t)(end - base) << 16));
  }
  if (atomic_load(&pool->sleepers) > 0) {
    pthread_mutex_lock(&pool->mutex);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);
  }
}

void lamina_pool_destroy(lamina_pool* pool) {
  if (!pool) return;
  atomic_store(&pool->stop, 1);
  lamina_pool_publish(pool, NULL, NULL, 0);
  pthread_mutex_lock(&pool->mutex); /* a worker between its check and its wait holds the mutex */
  pthread_cond_broadcast(&pool->wake);
  pthread_mutex_unlock(&pool->mutex);
  for (int i = 1; i < pool->threads; i++) pthread_join(pool->workers[i - 1].thread, NULL);
  pthread_cond_destroy(&pool->done_cond);
  pthread_cond_destroy(&pool->wake);
  pthread_mutex_destroy(&pool->mutex);
  free(pool->workers);
  free(pool->ranges);
  free(pool->scratch);
  for (int i = 0; i < pool->threads; i++) free(pool->thread_buffers[i]);
  free(pool->thread_buffers);
  free(pool->thread_buffer_bytes);
  free(pool);
}

/* Tasks offset.. of a loop too long for one job. */
typedef struct lamina_pool_piece {
  void (*body)(void* arg, int64_t task, int thread);
  void* arg;
  int64_t offset;
} lamina_pool_piece;

static void lamina_pool_piece_task(void* arg, int64_t task, int thread) {
  const lamina_pool_piece* piece = (const lamina_pool_piece*)arg;
  piece->body(piece->arg, piece->offset + task, thread);
}

void lamina_pool_run(lamina_pool* pool, int64_t tasks, void (*body)(void* arg, int64_t task, int thread),
                     void* arg) {
  if (tasks <= 0) return;
  if (tasks == 1 || !pool || pool->threads == 1) {
    LAMINA_POOL_PROFILE_COUNT(lamina_pool_inline_runs);
    for (int64_t t = 0; t < tasks; t++) body(arg, t, 0);
    return;
  }
  const int64_t most = (int64_t)pool->threads * LAMINA_POOL_RANGE_MAX;
  if (tasks > most) {
    /* A range's bounds take 16 bits of its word: a loop this long runs as several jobs. */
    lamina_pool_piece piece = {body, arg, 0};
    for (; piece.offset < tasks; piece.offset += most)
      lamina_pool_run(pool, tasks - piece.offset < most ? tasks - piece.offset : most, lamina_pool_piece_task, &piece);
    return;
  }
  lamina_pool_publish(pool, body, arg, tasks);
  const uint_fast64_t gen = atomic_load_explicit(&pool->ranges[0].word, memory_order_relaxed) >> 32;

  lamina_pool_drain(pool, gen, 0);
  LAMINA_POOL_PROFILE_COUNT(lamina_pool_runs);
  const int64_t wait_begin = LAMINA_POOL_PROFILE_NOW();

  /* Wait for tasks other threads still run: spin, then sleep (the mirror image of the workers). */
  LAMINA_POOL_SPIN_UNTIL(atomic_load_explicit(&pool->done, memory_order_acquire) == tasks);
  LAMINA_POOL_PROFILE_WAITED(wait_begin);
  if (atomic_load_explicit(&pool->done, memory_order_acquire) == tasks) return;
  pthread_mutex_lock(&pool->mutex);
  atomic_store(&pool->caller_sleeping, 1);
  while (atomic_load(&pool->done) != tasks) pthread_cond_wait(&pool->done_cond, &pool->mutex);
  atomic_store(&pool->caller_sleeping, 0);
  pthread_mutex_unlock(&pool->mutex);
}
