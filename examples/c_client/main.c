/*
 * examples/c_client/main.c: using a model Lamina compiled, from plain C, with only its header.
 *
 *   lamina compile examples/digits_mlp.lam -o build/libdigits_mlp.so   (also writes libdigits_mlp.h)
 *   cc -std=c11 -Wall -Wextra main.c -I build -L build -ldigits_mlp -Wl,-rpath,build -o c_client
 *   ./c_client                 parameters from a fixed pattern
 *   ./c_client weights.bin     parameters read from a file (see README.md)
 *
 * It runs the model on a batch of three images, then on a batch of one with the same library (the
 * batch size is a symbolic dimension, given at each call), prints the class probabilities, and shows
 * how a bad call is reported. Every line starting with "probs" has one row of the output.
 */
#include <stdio.h>
#include <stdlib.h>

#include "libdigits_mlp.h"

/* Sizes from the header's comment: x is f32[batch, 64], probs is f32[batch, 10]. The header has
   index macros but no size macros, so a program restates the static dimensions it relies on and
   checks them against the library below. */
enum { FEATURES = 64, CLASSES = 10, MAX_BATCH = 3 };

/* The model has two inputs (x, label) and one output (probs); forward needs only x. */
enum { INPUT_COUNT = 2, OUTPUT_COUNT = 1 };

/* Element i of parameter p in the fixed pattern: small multiples of 1/64, exact in float, so any
   other program (the test in Tests/LaminaTests/ClientTests.swift) computes the same values. */
static float pattern_weight(int64_t p, int64_t i) {
  return (float)((i * 7 + p * 3) % 23 - 11) / 64.0f;
}

/* Pixel j of image `row`: a fixed pattern of values in [0, 1], like the digits data set's. */
static float pattern_pixel(int64_t row, int64_t j) {
  return (float)((row * FEATURES + j) * 5 % 17) / 16.0f;
}

/* Sets every parameter from the pattern with lamina_set_param, which checks the size. */
static int set_pattern_weights(lamina_context* ctx) {
  for (int64_t p = 0; p < lamina_param_count(); p++) {
    const int64_t bytes = lamina_param_bytes(p);
    const int64_t count = bytes / (int64_t)sizeof(float); /* every parameter of this model is f32 */
    float* values = malloc((size_t)bytes);
    if (!values) return LAMINA_ERROR_MEMORY;
    for (int64_t i = 0; i < count; i++) values[i] = pattern_weight(p, i);
    const int status = lamina_set_param(ctx, p, values, bytes);
    free(values);
    if (status != LAMINA_OK) return status;
  }
  return LAMINA_OK;
}

/* Reads every parameter from `path`: each one's raw little-endian bytes (lamina_param_bytes of
   them), in the header's parameter order, nothing else. lamina_param_data gives the storage of a
   parameter inside the context, so the file is read straight into it. */
static int load_weights(lamina_context* ctx, const char* path) {
  FILE* file = fopen(path, "rb");
  if (!file) {
    perror(path);
    return 0;
  }
  int ok = 1;
  for (int64_t p = 0; ok && p < lamina_param_count(); p++) {
    const size_t bytes = (size_t)lamina_param_bytes(p);
    if (fread(lamina_param_data(ctx, p), 1, bytes, file) != bytes) {
      fprintf(stderr, "%s: too short for parameter %lld (%zu bytes)\n", path, (long long)p, bytes);
      ok = 0;
    }
  }
  if (ok && fgetc(file) != EOF) {
    fprintf(stderr, "%s: longer than the model's parameters\n", path);
    ok = 0;
  }
  fclose(file);
  return ok;
}

/* Runs forward on `batch` images, starting at image `first` of the pattern, and prints each row. */
static int classify(lamina_context* ctx, int64_t first, int64_t batch) {
  float x[MAX_BATCH * FEATURES];
  float probs[MAX_BATCH * CLASSES];
  for (int64_t row = 0; row < batch; row++) {
    for (int64_t j = 0; j < FEATURES; j++) x[row * FEATURES + j] = pattern_pixel(first + row, j);
  }

  /* One value per symbolic dimension, in the header's order: here only batch. */
  const int64_t dims[1] = {batch};
  /* One pointer per input, indexed by the header's macros; label is for lamina_evaluate only. */
  const void* inputs[INPUT_COUNT] = {NULL};
  inputs[DIGITSMLP_INPUT_X] = x;
  void* outputs[OUTPUT_COUNT] = {NULL};
  outputs[DIGITSMLP_OUTPUT_PROBS] = probs;

  const int status = lamina_forward(ctx, dims, inputs, outputs);
  if (status != LAMINA_OK) {
    fprintf(stderr, "lamina_forward failed (code %d): %s\n", status, lamina_last_error(ctx));
    return status;
  }
  printf("forward with batch %lld: images %lld to %lld\n", (long long)batch, (long long)first,
         (long long)(first + batch - 1));
  for (int64_t row = 0; row < batch; row++) {
    const float* p = probs + row * CLASSES;
    double sum = 0;
    int best = 0;
    printf("probs image %lld:", (long long)(first + row));
    for (int k = 0; k < CLASSES; k++) {
      printf(" %.9g", p[k]); /* %.9g prints a float exactly enough to read it back bit for bit */
      sum += p[k];
      if (p[k] > p[best]) best = k;
    }
    printf(" | sum %.6f class %d\n", sum, best);
  }
  return LAMINA_OK;
}

int main(int argc, char** argv) {
  if (argc > 2) {
    fprintf(stderr, "usage: %s [weights.bin]\n", argv[0]);
    return 2;
  }
  /* The header and the library must come from the same Lamina. */
  if (lamina_abi_version() != LAMINA_ABI_VERSION) {
    fprintf(stderr, "the library speaks ABI %d, this program was built for %d\n", lamina_abi_version(),
            LAMINA_ABI_VERSION);
    return 1;
  }
  if (lamina_param_bytes(DIGITSMLP_PARAM_B2) != CLASSES * (int64_t)sizeof(float) ||
      lamina_param_bytes(DIGITSMLP_PARAM_W1) % (FEATURES * (int64_t)sizeof(float)) != 0) {
    fprintf(stderr, "the library is not the digits model this program expects\n");
    return 1;
  }

  /* 0 threads: one per core (or LAMINA_NUM_THREADS). The context starts with zero parameters. */
  lamina_context* ctx = lamina_create(0);
  if (!ctx) {
    fprintf(stderr, "lamina_create: out of memory\n");
    return 1;
  }
  int exit_code = 1;
  if (argc == 2) {
    if (!load_weights(ctx, argv[1])) goto done;
    printf("weights: %s\n", argv[1]);
  } else {
    const int status = set_pattern_weights(ctx);
    if (status != LAMINA_OK) {
      fprintf(stderr, "lamina_set_param failed (code %d): %s\n", status, lamina_last_error(ctx));
      goto done;
    }
    printf("weights: fixed pattern\n");
  }

  /* The same context serves any batch size; its scratch memory grows when a call needs more. */
  if (classify(ctx, 0, 3) != LAMINA_OK) goto done;
  if (classify(ctx, 3, 1) != LAMINA_OK) goto done;

  /* A bad call fails with a code and leaves a message on the context; the context stays usable. */
  {
    float probs[CLASSES];
    const int64_t dims[1] = {1};
    const void* inputs[INPUT_COUNT] = {NULL}; /* x is missing */
    void* outputs[OUTPUT_COUNT] = {probs};
    const int status = lamina_forward(ctx, dims, inputs, outputs);
    if (status != LAMINA_ERROR_ARGUMENT) {
      fprintf(stderr, "a NULL input gave code %d, not LAMINA_ERROR_ARGUMENT\n", status);
      goto done;
    }
    printf("expected error: code %d (LAMINA_ERROR_ARGUMENT): %s\n", status, lamina_last_error(ctx));
  }
  exit_code = 0;

done:
  lamina_destroy(ctx);
  return exit_code;
}
