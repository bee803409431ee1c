/* lamina_model.h — what every generated model shares with the runtime: the context, the model's
 * description, the table of entry points, and the helpers of the entry points.
 *
 * A model library is
 *   model.c               generated: the model's data, kernels and entry points (lamina_run_*), ending
 *                         with one lamina_entry_points table; compiled once per instruction set the
 *                         target supports (-DLAMINA_ISA=avx512 defines lamina_entry_points_avx512)
 *   lamina_model_setup.c  the exported C interface (lamina_create, lamina_forward, parameters, ...),
 *                         the same for every model: it picks, when a context is created, the widest
 *                         table this CPU runs, and refuses to create one when the CPU runs none
 *   the runtime           lamina_pool.c, lamina_gemm.c, lamina_cpu.c (lamina_runtime.h)
 * LAMINA_ERROR_* and the exported functions are in lamina_interface.h. */
#ifndef LAMINA_MODEL_H
#define LAMINA_MODEL_H

#include <stdint.h>

#include "lamina_interface.h"
#include "lamina_runtime.h"

/* Functions shared between the objects of one library and no one else. */
#define LAMINA_HIDDEN __attribute__((visibility("hidden")))

/* Kernels run once per node; inlining them all into the entry points would make C compile time grow
   with model depth (gcc spends seconds on one huge function) and gain nothing. */
#define LAMINA_KERNEL __attribute__((noinline))

/* The widest vector this compilation uses, in bytes: the pooling kernels size their column blocks by it
   (16 floats under AVX-512, 8 otherwise), and lamina_conv.c its direct kernels' vectors. */
#if defined(__AVX512F__)
#define LAMINA_VECTOR_BYTES 64
#elif defined(__AVX__)
#define LAMINA_VECTOR_BYTES 32
#else
#define LAMINA_VECTOR_BYTES 16
#endif

/* Entry points run once per call and are argument checks, arena arithmetic and kernel calls: gcc
   compiles them at -O1 (model.c compiles in 10% less time; the kernels they call do not change).
   Not at -O0, where the user asked for unoptimized code. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__OPTIMIZE__)
#define LAMINA_ENTRY_POINT __attribute__((optimize("O1")))
#else
#define LAMINA_ENTRY_POINT
#endif

/* The model: its signature and where its parameters and optimizer state live in ctx->params. */
typedef struct lamina_model_description {
  const char* signature; /* JSON: inputs, outputs, losses, parameters, symbols, steps */
  int64_t param_count, state_count;
  int64_t params_bytes; /* parameters then state, each 64-byte aligned */
  const int64_t* param_offsets;
  const int64_t* param_sizes;
  const int64_t* state_offsets;
  const int64_t* state_sizes;
  void (*initialize_state)(unsigned char* params); /* state's first values, after zeroing */
} lamina_model_description;

/* The entry points of model.c compiled for one instruction set. */
typedef struct lamina_entry_points {
  const char* instruction_set; /* "x86-64-v4", "x86-64-v3", "native", "generic" */
  const lamina_model_description* model;
  int (*forward)(lamina_context* ctx, const int64_t* dims, const void* const* inputs, void* const* outputs);
  int (*evaluate)(lamina_context* ctx, const int64_t* dims, const void* const* inputs, void* const* outputs,
                  void* const* losses);
  int (*train_step)(lamina_context* ctx, int64_t step, const int64_t* dims, const void* const* inputs, void* loss);
  /* forward and evaluate in training mode (batch statistics); NULL when no op depends on the mode. */
  int (*forward_training)(lamina_context* ctx, const int64_t* dims, const void* const* inputs, void* const* outputs);
  int (*evaluate_training)(lamina_context* ctx, const int64_t* dims, const void* const* inputs,
                           void* const* outputs, void* const* losses);
} lamina_entry_points;

/* model.c compiled with -DLAMINA_ISA=x defines lamina_entry_points_x. */
#ifdef LAMINA_ISA
#define LAMINA_ENTRY_POINTS LAMINA_RUNTIME_NAME(lamina_entry_points_, LAMINA_ISA)
#endif

/* A buffer of data derived from the parameters (lamina_derived). */
typedef struct lamina_derived_buffer {
  void* data;
  int64_t bytes;
  uint64_t version; /* the parameter version it was last handed out at */
} lamina_derived_buffer;

struct lamina_context {
  const lamina_entry_points* entry; /* the instruction set chosen for this CPU */
  const lamina_model_description* model;
  lamina_pool* pool;
  unsigned char* params; /* parameters then optimizer state, 64-byte aligned */
  unsigned char* arena;  /* intermediates of one call */
  int64_t arena_bytes;
  /* The parameter version: starts at 1, moves on every possible write of a parameter (lamina_set_param,
     lamina_param_data, lamina_train_step, lamina_params_changed). Derived buffers compare against it. */
  uint64_t params_version;
  lamina_derived_buffer* derived; /* by slot, grown on first use */
  int64_t derived_count;
  char error[512];
};

/* Data a kernel derives from parameters and keeps between calls (a convolution's weights packed for the GEMM, or
   their Winograd transform packed for its products),
   in a buffer of its own per slot; slots are numbered by the code generator, one per kernel call site that
   derives something (the generated entry points pass the slot; a training step passes -1: its weights change
   every step, so it derives per call). Returns the slot's buffer of at least `bytes` bytes (64-byte aligned;
   reallocated when `bytes` grows) and sets *stale to 1 when its content may not match the current parameters
   (first use, a new size, or the parameter version moved since the slot was last handed out): the caller must
   then fill it before reading it, and the buffer counts as current from this call on. NULL when out of memory
   (*stale is then 1). Call it on the calling thread, before the kernel's parallel region: a context runs one
   call at a time, so no lock is needed. Memory: one buffer per slot for the context's life (a copy of the packed
   weights), freed by lamina_destroy. */
LAMINA_HIDDEN void* lamina_derived(lamina_context* ctx, int64_t slot, int64_t bytes, int* stale);

/* Marks a slot's buffer as not current, so the next lamina_derived reports it stale: for a caller whose
   filling failed part way. */
LAMINA_HIDDEN void lamina_derived_forget(lamina_context* ctx, int64_t slot);

/* Records an error message on the context and returns its code. */
LAMINA_HIDDEN int lamina_fail(lamina_context* ctx, int code, const char* format, ...)
    __attribute__((format(printf, 3, 4)));

/* Reserves an aligned slot of count elements in the arena layout; 0 on absurd sizes. */
LAMINA_HIDDEN int lamina_reserve(int64_t* total, int64_t* offset, __int128 count, int64_t element_bytes);

/* Places a buffer of a memory plan: start and end rounded up to 64 bytes; 0 on absurd sizes. */
LAMINA_HIDDEN int lamina_place(int64_t* total, int64_t* offset, __int128 start, __int128 bytes);

/* Grows the arena to at least `bytes`; it is kept between calls, so steady state allocates nothing. */
LAMINA_HIDDEN int lamina_ensure_arena(lamina_context* ctx, int64_t bytes);

/* How many tasks a parallel loop of `work` elements is split into: none to share below
   LAMINA_PARALLEL_WORK (which model.c defines), one per thread for moderate loops, four per thread
   for large ones, so that a thread slowed down by a neighbour (or woken late) simply takes fewer. */
#ifdef LAMINA_PARALLEL_WORK
static inline int64_t lamina_task_count(const lamina_context* ctx, __int128 work) {
  const int64_t threads = lamina_pool_threads(ctx->pool);
  if (threads == 1 || work < LAMINA_PARALLEL_WORK) return 1;
  return work >= (__int128)LAMINA_PARALLEL_WORK * 4 * threads ? 4 * threads : threads;
}
#endif

#endif
