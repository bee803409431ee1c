/* The channel kernel (lamina_conv2d_channels_f32) on one geometry, apart from any model: checks its result against
   a plain loop (with a few NaNs in the input when asked), then prints the minimum and median of repeated calls.
   Built by run.sh against the runtime's own sources (this file includes lamina_conv.c).

     channel_bench IN_CHANNELS HEIGHT WIDTH OUT_CHANNELS KERNEL STRIDE POOL POOL_STRIDE THREADS [RUNS] [NANS]

   POOL 0: no fused pool. SqueezeNet's first layer: 3 224 224 64 3 2 3 2 2. */
#include "lamina_conv.c"
#include <math.h>
#include <stdio.h>
#include <time.h>

/* The kernel keeps no derived data here (weights are packed per call). */
void* lamina_derived(lamina_context* ctx, int64_t slot, int64_t bytes, int* stale) {
  (void)ctx, (void)slot, (void)bytes, (void)stale;
  return NULL;
}

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec * 1e-3;
}

static int compare_doubles(const void* a, const void* b) {
  const double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char** argv) {
  if (argc < 10) {
    fprintf(stderr, "usage: %s IN_CHANNELS HEIGHT WIDTH OUT_CHANNELS KERNEL STRIDE POOL POOL_STRIDE THREADS [RUNS] [NANS]\n",
            argv[0]);
    return 2;
  }
  const int64_t C = atoll(argv[1]), H = atoll(argv[2]), W = atoll(argv[3]), O = atoll(argv[4]);
  const int64_t k = atoll(argv[5]), s = atoll(argv[6]), pool = atoll(argv[7]), pool_stride = atoll(argv[8]);
  const int threads = atoi(argv[9]), runs = argc > 10 ? atoi(argv[10]) : 50, nans = argc > 11 ? atoi(argv[11]) : 0;
  const int64_t limit = (int64_t)1 << 20; /* per size: with k <= 64, every product stays far below 2^63 */
  if (C < 1 || O < 1 || k < 1 || s < 1 || H < k || W < k || pool < 0 || (pool > 0 && pool_stride < 1) || threads < 1 ||
      runs < 1 || nans < 0 || C > limit || O > limit || H > limit || W > limit || k > 64 || threads > 256) {
    fprintf(stderr, "no result for these sizes\n");
    return 2;
  }
  const int64_t OH = (H - k) / s + 1, OW = (W - k) / s + 1;
  const int64_t PH = pool ? (OH - pool) / pool_stride + 1 : OH, PW = pool ? (OW - pool) / pool_stride + 1 : OW;
  if (pool > OH || pool > OW || PH < 1 || PW < 1) {
    fprintf(stderr, "no result for these sizes\n");
    return 2;
  }
  const lamina_conv2d_geometry g = {1, C, H, W, O, OH, OW, k, k, s, s, 0, 0, 1, 1, 1,
                                    LAMINA_CONV_ALGORITHM_DIRECT_CHANNELS, pool, pool, pool_stride, pool_stride};
  float* x = malloc(sizeof(float) * C * H * W);
  float* w = malloc(sizeof(float) * O * C * k * k);
  float* b = malloc(sizeof(float) * O);
  float* y = malloc(sizeof(float) * O * PH * PW);
  float* reference = malloc(sizeof(float) * O * OH * OW);
  double* times = malloc(sizeof(double) * runs);
  if (!x || !w || !b || !y || !reference || !times) {
    fprintf(stderr, "out of memory for these sizes\n");
    return 1;
  }
  for (int64_t i = 0; i < C * H * W; i++) x[i] = sinf((float)i * 0.37f);
  for (int64_t i = 0; i < nans; i++) x[(i * 7919) % (C * H * W)] = NAN;
  for (int64_t i = 0; i < O * C * k * k; i++) w[i] = cosf((float)i * 0.11f) / (float)(C * k);
  for (int64_t i = 0; i < O; i++) b[i] = 0.01f * (float)i;
  for (int64_t o = 0; o < O; o++)
    for (int64_t i = 0; i < OH; i++)
      for (int64_t j = 0; j < OW; j++) {
        float sum = b[o];
        for (int64_t c = 0; c < C; c++)
          for (int64_t a = 0; a < k; a++)
            for (int64_t d = 0; d < k; d++) sum += w[((o * C + c) * k + a) * k + d] * x[(c * H + i * s + a) * W + j * s + d];
        reference[(o * OH + i) * OW + j] = sum;
      }
  lamina_pool* threads_pool = lamina_pool_create(threads);
  if (lamina_conv2d_channels_f32(threads_pool, &g, x, w, NULL, b, O, y, NULL) != 0) return 1;
  int64_t wrong = 0;
  for (int64_t o = 0; o < O; o++)
    for (int64_t i = 0; i < PH; i++)
      for (int64_t j = 0; j < PW; j++) {
        float expected = reference[(o * OH + i) * OW + j];
        if (pool) { /* a later element replaces the maximum when larger or NaN */
          expected = -INFINITY;
          for (int64_t a = 0; a < pool; a++)
            for (int64_t d = 0; d < pool; d++) {
              const float e = reference[(o * OH + i * pool_stride + a) * OW + j * pool_stride + d];
              if (e > expected || e != e) expected = e;
            }
        }
        const float got = y[(o * PH + i) * PW + j];
        const int same = isnan(expected) ? isnan(got) : fabsf(got - expected) <= 1e-4f * (1 + fabsf(expected));
        if (!same && wrong++ < 5)
          fprintf(stderr, "wrong: channel %ld row %ld column %ld: %g, expected %g\n", (long)o, (long)i, (long)j, got, expected);
      }
  if (wrong) {
    fprintf(stderr, "%ld of %ld results wrong\n", (long)wrong, (long)(O * PH * PW));
    return 1;
  }
  for (int r = 0; r < runs; r++) {
    const double start = now_us();
    lamina_conv2d_channels_f32(threads_pool, &g, x, w, NULL, b, O, y, NULL);
    times[r] = now_us() - start;
  }
  qsort(times, runs, sizeof *times, compare_doubles);
  const double flops = 2.0 * O * OH * OW * C * k * k;
  printf("%ld -> %ld, %ldx%ld at stride %ld, pool %ld/%ld, %d thread(s): min %.1f us (%.1f GFLOP/s), median %.1f us, max %.1f us\n",
         (long)C, (long)O, (long)k, (long)k, (long)s, (long)pool, (long)pool_stride, threads, times[0],
         flops / times[0] * 1e-3, times[runs / 2], times[runs - 1]);
  lamina_pool_destroy(threads_pool);
  free(x), free(w), free(b), free(y), free(reference), free(times);
  return 0;
}
