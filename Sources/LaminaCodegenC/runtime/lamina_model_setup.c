/* lamina_model_setup.c — the exported C interface of a model library (lamina_interface.h), the same
 * for every model: the model itself is the table(s) of entry points its model.c defines.
 *
 * Compiled once per target, like the rest of the runtime, for the baseline of the architecture (never
 * with the flags of the kernels), because lamina_create must run on any CPU to say which it cannot:
 *   -DLAMINA_TARGET='"portable"'
 *   -DLAMINA_ISA_BASE=avx2   -DLAMINA_REQUIRES_BASE='"x86-64-v3"'   kernels that must run
 *   -DLAMINA_ISA_WIDE=avx512 -DLAMINA_REQUIRES_WIDE='"x86-64-v4"'   optional: used where the CPU has it
 * The required features are names lamina_cpu_missing knows (features, or x86-64 levels). */
#if !defined(_POSIX_C_SOURCE) && !defined(_GNU_SOURCE) && !defined(_DEFAULT_SOURCE)
#define _POSIX_C_SOURCE 200809L /* posix_memalign under strict -std=c11 */
#endif
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lamina_model.h"

#if !defined(LAMINA_TARGET) || !defined(LAMINA_ISA_BASE) || !defined(LAMINA_REQUIRES_BASE)
#error "compile lamina_model_setup.c with -DLAMINA_TARGET, -DLAMINA_ISA_BASE and -DLAMINA_REQUIRES_BASE"
#endif

#define LAMINA_EXPORT __attribute__((visibility("default")))

extern const lamina_entry_points LAMINA_RUNTIME_NAME(lamina_entry_points_, LAMINA_ISA_BASE);
#define LAMINA_BASE (&LAMINA_RUNTIME_NAME(lamina_entry_points_, LAMINA_ISA_BASE))
#ifdef LAMINA_ISA_WIDE
extern const lamina_entry_points LAMINA_RUNTIME_NAME(lamina_entry_points_, LAMINA_ISA_WIDE);
#define LAMINA_WIDE (&LAMINA_RUNTIME_NAME(lamina_entry_points_, LAMINA_ISA_WIDE))
#endif

/* ---- Choosing the kernels for this CPU ---- */

LAMINA_EXPORT const char* lamina_target(void) { return LAMINA_TARGET; }

LAMINA_EXPORT const char* lamina_required_cpu_features(void) { return LAMINA_REQUIRES_BASE; }

LAMINA_EXPORT void lamina_disable_cpu_features(const char* features) { lamina_cpu_disable_on_thread(features); }

LAMINA_EXPORT const char* lamina_missing_cpu_features(void) {
  static _Thread_local char missing[256];
  lamina_cpu_missing(LAMINA_REQUIRES_BASE, missing, sizeof missing);
  return missing;
}

/* The widest kernels this CPU runs, or NULL when it cannot run even the base ones. Asked again for
   every context (CPUID costs microseconds), so LAMINA_CPU_DISABLE set in between is honoured, as is
   lamina_disable_cpu_features. */
static const lamina_entry_points* lamina_choose_entry_points(void) {
#ifdef LAMINA_ISA_WIDE
  if (lamina_cpu_missing(LAMINA_REQUIRES_WIDE, NULL, 0) == 0) return LAMINA_WIDE;
#endif
  if (lamina_cpu_missing(LAMINA_REQUIRES_BASE, NULL, 0) == 0) return LAMINA_BASE;
  return NULL;
}

/* ---- Contexts ---- */

LAMINA_EXPORT int lamina_abi_version(void) { return LAMINA_ABI_VERSION; }

LAMINA_EXPORT const char* lamina_model_signature(void) { return LAMINA_BASE->model->signature; }

LAMINA_EXPORT lamina_context* lamina_create(int threads) {
  const lamina_entry_points* entry = lamina_choose_entry_points();
  if (!entry) return NULL; /* lamina_missing_cpu_features() says why */
  const lamina_model_description* model = entry->model;
  lamina_context* ctx = (lamina_context*)calloc(1, sizeof(lamina_context));
  if (!ctx) return NULL;
  void* params = NULL;
  if (posix_memalign(&params, 64, (size_t)model->params_bytes) != 0) {
    free(ctx);
    return NULL;
  }
  memset(params, 0, (size_t)model->params_bytes);
  model->initialize_state((unsigned char*)params);
  ctx->entry = entry;
  ctx->model = model;
  ctx->params = (unsigned char*)params;
  ctx->params_version = 1;
  ctx->pool = lamina_pool_create(threads);
  if (!ctx->pool) {
    free(ctx->params);
    free(ctx);
    return NULL;
  }
  return ctx;
}

LAMINA_EXPORT void lamina_destroy(lamina_context* ctx) {
  if (!ctx) return;
  lamina_pool_destroy(ctx->pool);
  for (int64_t slot = 0; slot < ctx->derived_count; slot++) free(ctx->derived[slot].data);
  free(ctx->derived);
  free(ctx->arena);
  free(ctx->params);
  free(ctx);
}

LAMINA_EXPORT const char* lamina_instruction_set(const lamina_context* ctx) {
  return ctx ? ctx->entry->instruction_set : "";
}

LAMINA_EXPORT void lamina_idle(lamina_context* ctx) {
  if (ctx) lamina_pool_hush(ctx->pool);
}

LAMINA_EXPORT const char* lamina_last_error(const lamina_context* ctx) { return ctx ? ctx->error : "context is NULL"; }

LAMINA_EXPORT int64_t lamina_arena_bytes(const lamina_context* ctx) { return ctx ? ctx->arena_bytes : 0; }

/* ---- Running ---- */

LAMINA_EXPORT int lamina_forward(lamina_context* ctx, const int64_t* dims, const void* const* inputs,
                                 void* const* outputs) {
  if (!ctx) return LAMINA_ERROR_ARGUMENT;
  return ctx->entry->forward(ctx, dims, inputs, outputs);
}

LAMINA_EXPORT int lamina_evaluate(lamina_context* ctx, const int64_t* dims, const void* const* inputs,
                                  void* const* outputs, void* const* losses) {
  if (!ctx) return LAMINA_ERROR_ARGUMENT;
  return ctx->entry->evaluate(ctx, dims, inputs, outputs, losses);
}

/* Training mode without a step: outputs as a training step computes them (batch statistics), with
   no state written back. A model without mode-dependent ops computes the same in either mode. */
LAMINA_EXPORT int lamina_forward_training(lamina_context* ctx, const int64_t* dims, const void* const* inputs,
                                          void* const* outputs) {
  if (!ctx) return LAMINA_ERROR_ARGUMENT;
  if (!ctx->entry->forward_training) return ctx->entry->forward(ctx, dims, inputs, outputs);
  return ctx->entry->forward_training(ctx, dims, inputs, outputs);
}

LAMINA_EXPORT int lamina_evaluate_training(lamina_context* ctx, const int64_t* dims, const void* const* inputs,
                                           void* const* outputs, void* const* losses) {
  if (!ctx) return LAMINA_ERROR_ARGUMENT;
  if (!ctx->entry->evaluate_training) return ctx->entry->evaluate(ctx, dims, inputs, outputs, losses);
  return ctx->entry->evaluate_training(ctx, dims, inputs, outputs, losses);
}

LAMINA_EXPORT int lamina_train_step(lamina_context* ctx, int64_t step, const int64_t* dims, const void* const* inputs,
                                    void* loss) {
  if (!ctx) return LAMINA_ERROR_ARGUMENT;
  const int status = ctx->entry->train_step(ctx, step, dims, inputs, loss);
  /* The step updated the parameters (or part of them, when it failed). */
  ctx->params_version++;
  return status;
}

/* ---- Parameters and optimizer state ---- */

LAMINA_EXPORT int64_t lamina_param_count(void) { return LAMINA_BASE->model->param_count; }

LAMINA_EXPORT int64_t lamina_state_count(void) { return LAMINA_BASE->model->state_count; }

LAMINA_EXPORT int64_t lamina_param_bytes(int64_t index) {
  const lamina_model_description* model = LAMINA_BASE->model;
  return index >= 0 && index < model->param_count ? model->param_sizes[index] : -1;
}

LAMINA_EXPORT int64_t lamina_state_bytes(int64_t index) {
  const lamina_model_description* model = LAMINA_BASE->model;
  return index >= 0 && index < model->state_count ? model->state_sizes[index] : -1;
}

LAMINA_EXPORT void* lamina_param_data(lamina_context* ctx, int64_t index) {
  if (!ctx || index < 0 || index >= ctx->model->param_count) return NULL;
  /* A writable pointer: whatever is written through it before the next call is seen by that call. */
  ctx->params_version++;
  return ctx->params + ctx->model->param_offsets[index];
}

LAMINA_EXPORT void lamina_params_changed(lamina_context* ctx) {
  if (ctx) ctx->params_version++;
}

LAMINA_EXPORT void* lamina_state_data(lamina_context* ctx, int64_t index) {
  if (!ctx || index < 0 || index >= ctx->model->state_count) return NULL;
  /* Writable, like lamina_param_data: values kept between calls (batch norm's scale from its running
     statistics) are computed again at the next call. */
  ctx->params_version++;
  return ctx->params + ctx->model->state_offsets[index];
}

LAMINA_EXPORT int lamina_set_param(lamina_context* ctx, int64_t index, const void* data, int64_t bytes) {
  if (!ctx) return LAMINA_ERROR_ARGUMENT;
  const lamina_model_description* model = ctx->model;
  if (index < 0 || index >= model->param_count)
    return lamina_fail(ctx, LAMINA_ERROR_ARGUMENT, "no parameter %lld", (long long)index);
  if (!data || bytes != model->param_sizes[index])
    return lamina_fail(ctx, LAMINA_ERROR_ARGUMENT, "parameter %lld takes %lld bytes, got %lld", (long long)index,
                       (long long)model->param_sizes[index], (long long)bytes);
  memcpy(ctx->params + model->param_offsets[index], data, (size_t)bytes);
  ctx->params_version++;
  return LAMINA_OK;
}

LAMINA_EXPORT int lamina_get_param(lamina_context* ctx, int64_t index, void* data, int64_t bytes) {
  if (!ctx) return LAMINA_ERROR_ARGUMENT;
  const lamina_model_description* model = ctx->model;
  if (index < 0 || index >= model->param_count)
    return lamina_fail(ctx, LAMINA_ERROR_ARGUMENT, "no parameter %lld", (long long)index);
  if (!data || bytes != model->param_sizes[index])
    return lamina_fail(ctx, LAMINA_ERROR_ARGUMENT, "parameter %lld has %lld bytes, got a buffer of %lld",
                       (long long)index, (long long)model->param_sizes[index], (long long)bytes);
  memcpy(data, ctx->params + model->param_offsets[index], (size_t)bytes);
  return LAMINA_OK;
}

/* ---- Helpers of the entry points (lamina_model.h) ---- */

int lamina_fail(lamina_context* ctx, int code, const char* format, ...) {
  va_list arguments;
  va_start(arguments, format);
  vsnprintf(ctx->error, sizeof ctx->error, format, arguments);
  va_end(arguments);
  return code;
}

int lamina_reserve(int64_t* total, int64_t* offset, __int128 count, int64_t element_bytes) {
  const __int128 bytes = count * element_bytes;
  const __int128 aligned = (bytes + 63) / 64 * 64;
  if (bytes < 0 || (__int128)*total + aligned > ((__int128)1 << 46)) return 0;
  *offset = *total;
  *total += (int64_t)aligned;
  return 1;
}

int lamina_place(int64_t* total, int64_t* offset, __int128 start, __int128 bytes) {
  const __int128 aligned = (start + 63) / 64 * 64;
  if (start < 0 || bytes < 0 || aligned + bytes > ((__int128)1 << 46)) return 0;
  const __int128 end = (aligned + bytes + 63) / 64 * 64;
  *offset = (int64_t)aligned;
  if (end > *total) *total = (int64_t)end;
  return 1;
}

int lamina_ensure_arena(lamina_context* ctx, int64_t bytes) {
  if (bytes <= ctx->arena_bytes) return LAMINA_OK;
  void* grown = NULL;
  if (posix_memalign(&grown, 64, (size_t)bytes) != 0) {
    return lamina_fail(ctx, LAMINA_ERROR_MEMORY, "cannot allocate %lld bytes for intermediates", (long long)bytes);
  }
  free(ctx->arena);
  ctx->arena = (unsigned char*)grown;
  ctx->arena_bytes = bytes;
  return LAMINA_OK;
}

void* lamina_derived(lamina_context* ctx, int64_t slot, int64_t bytes, int* stale) {
  *stale = 1;
  if (slot < 0 || bytes < 0) return NULL;
  if (slot >= ctx->derived_count) {
    const int64_t count = slot + 1;
    lamina_derived_buffer* grown =
        (lamina_derived_buffer*)realloc(ctx->derived, (size_t)count * sizeof(lamina_derived_buffer));
    if (!grown) return NULL;
    memset(grown + ctx->derived_count, 0, (size_t)(count - ctx->derived_count) * sizeof(lamina_derived_buffer));
    ctx->derived = grown;
    ctx->derived_count = count;
  }
  lamina_derived_buffer* buffer = &ctx->derived[slot];
  if (!buffer->data || buffer->bytes < bytes) {
    void* data = NULL;
    if (posix_memalign(&data, 64, (size_t)(bytes > 0 ? bytes : 64)) != 0) return NULL;
    free(buffer->data);
    buffer->data = data;
    buffer->bytes = bytes;
    buffer->version = 0; /* versions start at 1: never current */
  }
  *stale = buffer->version != ctx->params_version;
  buffer->version = ctx->params_version;
  return buffer->data;
}

void lamina_derived_forget(lamina_context* ctx, int64_t slot) {
  if (slot >= 0 && slot < ctx->derived_count) ctx->derived[slot].version = 0;
}
