/*
 * harness.c: drives a model's generated C, compiled with -fsanitize=address,undefined, for
 * SanitizerHarnessTests. A sanitizer report ends the process with a non-zero status.
 *
 *   harness DIRECTORY
 *
 * reads DIRECTORY/plan.txt, one command per line, file names relative to DIRECTORY:
 *
 *   create THREADS                      lamina_create
 *   set_params FILE                     every parameter, raw bytes in signature order
 *   dims COUNT D...                     the symbolic dimensions of the calls that follow
 *   inputs COUNT FILE|- ...             one file per input (- passes NULL)
 *   forward COUNT (BYTES FILE)...       lamina_forward; each output written to its file
 *   evaluate COUNT (BYTES FILE)... COUNT (BYTES FILE)...   outputs, then losses
 *   train STEP BYTES FILE               lamina_train_step; the loss written to FILE
 *   get_params FILE / get_state FILE    every parameter / state tensor, raw, in signature order
 *   destroy                             lamina_destroy, and every buffer freed
 *
 * Every buffer is malloc'ed with exactly the bytes it holds, so AddressSanitizer's redzones catch a
 * kernel that reads or writes one element past it. A failed call prints lamina_last_error and
 * exits 1.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

/* Leaks are errors too; a report exits with 99 so the test tells it from a failed call. */
const char* __asan_default_options(void) { return "detect_leaks=1:exitcode=99:abort_on_error=0"; }
const char* __ubsan_default_options(void) { return "print_stacktrace=1:halt_on_error=1:exitcode=99"; }

enum { MAX_TENSORS = 64, MAX_DIMS = 16 };

static const char* directory;
static FILE* plan;
static lamina_context* ctx;
static int64_t dims[MAX_DIMS];
static int dim_count;
static void* inputs[MAX_TENSORS];
static int input_count;

static void fail(const char* message) {
  fprintf(stderr, "harness: %s\n", message);
  exit(1);
}

static void check(int status, const char* call) {
  if (status != LAMINA_OK) {
    fprintf(stderr, "harness: %s returned %d: %s\n", call, status, ctx ? lamina_last_error(ctx) : "");
    exit(1);
  }
}

static char* path_of(const char* name) {
  static char path[4096];
  if (snprintf(path, sizeof path, "%s/%s", directory, name) >= (int)sizeof path) fail("path too long");
  return path;
}

static long long read_integer(void) {
  long long value;
  if (fscanf(plan, "%lld", &value) != 1) fail("expected a number in the plan");
  return value;
}

static void read_word(char* word) {
  if (fscanf(plan, "%255s", word) != 1) fail("expected a file name in the plan");
}

static int read_count(void) {
  const long long count = read_integer();
  if (count < 0 || count > MAX_TENSORS) fail("too many tensors");
  return (int)count;
}

/* The whole file in a buffer of exactly its size (at least one byte, so malloc never returns NULL
   for an empty tensor). */
static void* read_file(const char* name, int64_t* size) {
  FILE* file = fopen(path_of(name), "rb");
  if (!file) fail("cannot open an input file");
  fseek(file, 0, SEEK_END);
  *size = ftell(file);
  fseek(file, 0, SEEK_SET);
  void* data = malloc(*size > 0 ? (size_t)*size : 1);
  if (!data || fread(data, 1, (size_t)*size, file) != (size_t)*size) fail("cannot read an input file");
  fclose(file);
  return data;
}

static void write_file(const char* name, const void* data, int64_t size) {
  FILE* file = fopen(path_of(name), "wb");
  if (!file || fwrite(data, 1, (size_t)size, file) != (size_t)size || fclose(file) != 0) {
    fail("cannot write a result file");
  }
}

/* Reads COUNT (BYTES FILE) pairs and allocates one buffer of BYTES for each. */
static int read_results(void** buffers, int64_t* sizes, char names[][256]) {
  const int count = read_count();
  for (int i = 0; i < count; i++) {
    sizes[i] = read_integer();
    read_word(names[i]);
    buffers[i] = malloc(sizes[i] > 0 ? (size_t)sizes[i] : 1);
    if (!buffers[i]) fail("out of memory");
    /* Not zero: a kernel that leaves an element unwritten shows up as a mismatch. */
    memset(buffers[i], 0x7f, sizes[i] > 0 ? (size_t)sizes[i] : 1);
  }
  return count;
}

static void write_results(void** buffers, const int64_t* sizes, char names[][256], int count) {
  for (int i = 0; i < count; i++) {
    write_file(names[i], buffers[i], sizes[i]);
    free(buffers[i]);
  }
}

static void free_inputs(void) {
  for (int i = 0; i < input_count; i++) free(inputs[i]);
  input_count = 0;
}

/* Every parameter or state tensor, concatenated in signature order. */
static void write_all(const char* name, int64_t count, int64_t (*bytes)(int64_t),
                      void* (*data)(lamina_context*, int64_t)) {
  FILE* file = fopen(path_of(name), "wb");
  if (!file) fail("cannot write a result file");
  for (int64_t i = 0; i < count; i++) {
    if (fwrite(data(ctx, i), 1, (size_t)bytes(i), file) != (size_t)bytes(i)) fail("cannot write");
  }
  if (fclose(file) != 0) fail("cannot write a result file");
}

int main(int argc, char** argv) {
  if (argc != 2) fail("usage: harness DIRECTORY");
  directory = argv[1];
  plan = fopen(path_of("plan.txt"), "r");
  if (!plan) fail("cannot open plan.txt");
  if (lamina_abi_version() != LAMINA_ABI_VERSION) fail("ABI version mismatch");
  char command[256];
  while (fscanf(plan, "%255s", command) == 1) {
    if (strcmp(command, "create") == 0) {
      ctx = lamina_create((int)read_integer());
      if (!ctx) fail("lamina_create returned NULL");
    } else if (strcmp(command, "set_params") == 0) {
      char name[256];
      read_word(name);
      int64_t size;
      char* data = read_file(name, &size);
      int64_t offset = 0;
      for (int64_t p = 0; p < lamina_param_count(); p++) {
        const int64_t bytes = lamina_param_bytes(p);
        if (offset + bytes > size) fail("the parameter file is too short");
        /* Through an exact-size copy, so lamina_set_param reading past `bytes` is caught. */
        void* copy = malloc(bytes > 0 ? (size_t)bytes : 1);
        if (!copy) fail("out of memory");
        memcpy(copy, data + offset, (size_t)bytes);
        check(lamina_set_param(ctx, p, copy, bytes), "lamina_set_param");
        free(copy);
        offset += bytes;
      }
      if (offset != size) fail("the parameter file is too long");
      free(data);
    } else if (strcmp(command, "dims") == 0) {
      dim_count = (int)read_integer();
      if (dim_count < 0 || dim_count > MAX_DIMS) fail("too many dimensions");
      for (int i = 0; i < dim_count; i++) dims[i] = read_integer();
    } else if (strcmp(command, "inputs") == 0) {
      free_inputs();
      input_count = read_count();
      for (int i = 0; i < input_count; i++) {
        char name[256];
        read_word(name);
        int64_t size;
        inputs[i] = strcmp(name, "-") == 0 ? NULL : read_file(name, &size);
      }
    } else if (strcmp(command, "forward") == 0) {
      void* outputs[MAX_TENSORS];
      int64_t sizes[MAX_TENSORS];
      char names[MAX_TENSORS][256];
      const int count = read_results(outputs, sizes, names);
      check(lamina_forward(ctx, dim_count ? dims : NULL, (const void* const*)inputs, outputs),
            "lamina_forward");
      write_results(outputs, sizes, names, count);
    } else if (strcmp(command, "evaluate") == 0) {
      void* outputs[MAX_TENSORS];
      int64_t output_sizes[MAX_TENSORS];
      char output_names[MAX_TENSORS][256];
      const int output_count = read_results(outputs, output_sizes, output_names);
      void* losses[MAX_TENSORS];
      int64_t loss_sizes[MAX_TENSORS];
      char loss_names[MAX_TENSORS][256];
      const int loss_count = read_results(losses, loss_sizes, loss_names);
      check(lamina_evaluate(ctx, dim_count ? dims : NULL, (const void* const*)inputs, outputs, losses),
            "lamina_evaluate");
      write_results(outputs, output_sizes, output_names, output_count);
      write_results(losses, loss_sizes, loss_names, loss_count);
    } else if (strcmp(command, "train") == 0) {
      const int64_t step = read_integer();
      void* loss[1];
      int64_t size[1];
      char name[1][256];
      size[0] = read_integer();
      read_word(name[0]);
      loss[0] = malloc((size_t)size[0]);
      if (!loss[0]) fail("out of memory");
      check(lamina_train_step(ctx, step, dim_count ? dims : NULL, (const void* const*)inputs, loss[0]),
            "lamina_train_step");
      write_results(loss, size, name, 1);
    } else if (strcmp(command, "get_params") == 0) {
      char name[256];
      read_word(name);
      write_all(name, lamina_param_count(), lamina_param_bytes, lamina_param_data);
    } else if (strcmp(command, "get_state") == 0) {
      char name[256];
      read_word(name);
      write_all(name, lamina_state_count(), lamina_state_bytes, lamina_state_data);
    } else if (strcmp(command, "destroy") == 0) {
      lamina_destroy(ctx);
      ctx = NULL;
      free_inputs();
    } else {
      fprintf(stderr, "harness: unknown command '%s' in the plan\n", command);
      return 1;
    }
  }
  fclose(plan);
  if (ctx) fail("the plan does not end with destroy");
  printf("harness: done\n");
  return 0;
}
