/* lamina_interface.h — the C interface of every library Lamina compiles.
 *
 * The generated header of a model (lamina compile -o libmodel.so writes libmodel.h) holds this text
 * after the model's own constants; lamina_model_setup.c implements it. */
#ifndef LAMINA_INTERFACE_H
#define LAMINA_INTERFACE_H

#include <stdint.h>

#define LAMINA_ABI_VERSION 3

/* Return codes of the functions below. */
#define LAMINA_OK 0
#define LAMINA_ERROR_ARGUMENT 1 /* a NULL pointer, a dimension < 1, a wrong index or size */
#define LAMINA_ERROR_MEMORY 2   /* the arena could not grow */
#define LAMINA_ERROR_INDEX 3    /* data out of range: a label outside the classes, a slice past the end */

/* The largest value a symbolic dimension may take. */
#define LAMINA_MAX_DIM ((int64_t)1 << 31)

typedef struct lamina_context lamina_context;

/* The interface version this library was generated for (LAMINA_ABI_VERSION). */
int lamina_abi_version(void);
/* The model's inputs, outputs, losses, parameters and symbols, as JSON. */
const char* lamina_model_signature(void);
/* The target the library was compiled for ("portable", "x86-64-v4", ...) and the CPU features it
   needs at least, separated by spaces ("" for none). */
const char* lamina_target(void);
const char* lamina_required_cpu_features(void);
/* The features the library needs that this CPU lacks, separated by spaces; "" when it runs here.
   LAMINA_CPU_DISABLE=avx512f (say) makes a feature count as missing. */
const char* lamina_missing_cpu_features(void);
/* Makes the features listed (comma- or space-separated, as in LAMINA_CPU_DISABLE) count as missing
   for the calling thread's lamina_missing_cpu_features and lamina_create, until the next call; NULL
   or "" clears the list. For tests of the code a CPU without them runs, without changing the
   environment of the whole process. */
void lamina_disable_cpu_features(const char* features);
/* A context holds the parameters, the arena and the thread pool. threads <= 0: one per core
   (or LAMINA_NUM_THREADS). Returns NULL when out of memory, or when this CPU lacks an instruction
   set the library needs (lamina_missing_cpu_features says which): the library never runs code the
   CPU cannot execute. One thread at a time per context. */
lamina_context* lamina_create(int threads);
void lamina_destroy(lamina_context* ctx);
/* The instruction set the context's kernels use: "x86-64-v4" or "x86-64-v3" for a portable library
   (the widest this CPU runs), "native" or "generic". */
const char* lamina_instruction_set(const lamina_context* ctx);
/* After a call, the pool's threads spin for a while, ready for the next one; this sends them to
   sleep now, for when another model (or other work) runs next. Nothing else changes. */
void lamina_idle(lamina_context* ctx);
/* The message of the last error on this context, or "" after success. */
const char* lamina_last_error(const lamina_context* ctx);
/* Bytes of the arena for intermediates: what the largest call so far needed (kept between calls). */
int64_t lamina_arena_bytes(const lamina_context* ctx);

/* Parameters, in the signature's order; each is a dense row-major array of its dtype. */
int64_t lamina_param_count(void);
int64_t lamina_param_bytes(int64_t index);
/* Direct access to a parameter's storage (NULL for a bad index). The pointer is writable, so this counts as
   a write: data derived from the parameters and kept between calls (a convolution's weights packed for the
   GEMM at inference) is derived again at the next call. A caller who keeps the pointer and writes through it
   after a later call must call lamina_params_changed before the next one, or that call may compute with the
   old derived data. lamina_set_param and lamina_train_step count as writes too; lamina_get_param does not. */
void* lamina_param_data(lamina_context* ctx, int64_t index);
/* Says that parameters (or state) were written through a pointer lamina_param_data (or lamina_state_data) gave
   out earlier. */
void lamina_params_changed(lamina_context* ctx);
int lamina_set_param(lamina_context* ctx, int64_t index, const void* data, int64_t bytes);
int lamina_get_param(lamina_context* ctx, int64_t index, void* data, int64_t bytes);

/* dims: the value of each symbolic dimension, in the signature's order (NULL if there are none).
   inputs: one pointer per input in order; inputs not marked "forward" may be NULL for forward.
   outputs / losses: one caller-allocated buffer per output / loss, of the size its shape gives.
   Buffers must not overlap. */
int lamina_forward(lamina_context* ctx, const int64_t* dims, const void* const* inputs, void* const* outputs);
int lamina_evaluate(lamina_context* ctx, const int64_t* dims, const void* const* inputs, void* const* outputs, void* const* losses);

/* lamina_forward and lamina_evaluate in training mode: batch norm normalizes with the batch's
   statistics (as a training step does) but nothing is written back; for `lamina run --mode training`. */
int lamina_forward_training(lamina_context* ctx, const int64_t* dims, const void* const* inputs, void* const* outputs);
int lamina_evaluate_training(lamina_context* ctx, const int64_t* dims, const void* const* inputs, void* const* outputs,
                             void* const* losses);

/* State, in the signature's "states" order: optimizer state (momentum, moment estimates, step
   counters) and model state ("model_state": true; batch norm's running statistics), which no optimizer
   owns and which is saved with the parameters. Each starts at its initializer after lamina_create
   (zeros, ones, constant); training steps update it; read and write it here by index (the header's
   _STATE_ macros). The pointer is writable, so lamina_state_data counts as a write, as lamina_param_data
   does (data kept between calls is derived again at the next call; a caller who writes through a kept
   pointer after a later call must call lamina_params_changed). */
int64_t lamina_state_count(void);
int64_t lamina_state_bytes(int64_t index);
void* lamina_state_data(lamina_context* ctx, int64_t index);

/* One training step: forward, backward and the optimizer's update of the parameters and state, in one
   call. step indexes the signature's "steps"; loss receives the step's loss before the update. */
int lamina_train_step(lamina_context* ctx, int64_t step, const int64_t* dims, const void* const* inputs, void* loss);

#endif
