/* lamina_winograd.h — Winograd convolution F(m x m, 3 x 3) for 3x3, stride-1, dilation-1, ungrouped layers.
 *
 * Included by lamina_conv.c (before its kernels, which call lamina_conv2d_winograd_* when the kernel schedule
 * says LAMINA_CONV_ALGORITHM_WINOGRAD_2 or _4; ConvolutionSchedule in Swift chooses it from the sizes).
 *
 * The result is computed in tiles of m x m output positions (m = 2 or 4), each read from an alpha x alpha
 * patch of the input (alpha = m + 2): with the transforms B (input), G (weights) and A (output) of Lavin and
 * Gray, "Fast Algorithms for Convolutional Neural Networks" (2016), points 0, 1, -1 (and 2, -2 for m = 4),
 *
 *     y tile [m x m] = A^T [ (G w G^T) ⊙ (B^T d B) ] A        per (output channel, input channel) summed over
 *                                                             the input channels,
 *
 * and the sum over the input channels of each of the alpha² element-wise products is a matrix product:
 *
 *     U[xi] [K x C]  = (G w[k, c] G^T)[xi]           the weight transform, packed transposed ([C x K]) as the
 *                                                    GEMMs' right operand
 *     V[xi] [C x T]  = (B^T d[c, t] B)[xi]           the input transform of a block of T tiles
 *     M[xi] [T x K]  = V[xi]^T @ U[xi]^T             alpha² independent GEMMs (lamina_sgemm_packed_b: the weights
 *                                                    are packed once per call, not once per block and GEMM)
 *     y[k, t]        = A^T M[., t, k] A + bias[k]    the output transform, written into y's NCHW planes
 *
 * alpha² / m² multiplies per output (2.25 for m = 2 and 4 for m = 4) where the direct product does 9. Rounding:
 * F(4x4) adds the products of larger transform coefficients (up to 8 in A, 5 in B, 1/24 in G) than F(2x2)
 * (1, 1, 1/2), so its fp32 error is larger (about 20x the GEMM's; BENCHMARKS.md, "session 11: Winograd").
 *
 * Blocks: whole rows of tiles (over all images), as many as fit LAMINA_WINOGRAD_BLOCK_ELEMENTS elements of V and
 * M, so a block writes whole output rows and the epilogue runs on them when the block is done. Each block is
 * three passes on the pool: the input transform split over input channels (LAMINA_WINOGRAD_LANES tiles at once,
 * one per vector lane), the alpha² GEMMs split over xi (each on one thread), the output transform (bias, then
 * the fused epilogue on the finished rows, or a relu-only epilogue in its registers before the store) over vectors
 * of LAMINA_WINOGRAD_LANES output channels. V's and M's alpha² matrices are an odd number of cache lines apart
 * (lamina_winograd_matrix_stride), so the transforms' alpha² accesses at once spread over the L1's sets.
 * With at least as many rows of tiles as threads (LAMINA_WINOGRAD_SPATIAL), each pool task instead takes its own
 * block of rows through the three passes, with V and M of its thread's own: the threads split the planes by rows,
 * so each reads the input rows and writes the output rows of its part and no pass waits for another thread's.
 * When the two threads' cores share no cache (a VM's vCPUs on two dies), passes split by channels and xi moved
 * the whole V and M between them, and SqueezeNet took as long on 2 threads as on 1.
 * With too few tiles for that but a small input transform (LAMINA_WINOGRAD_CHANNEL_SPLIT), the threads split the
 * output channels instead, in runs of LAMINA_GEMM_COLUMN_ALIGN: each transforms the whole input into a V of its own,
 * multiplies it by its channels' columns of U (lamina_gemm_packed_b_columns_*) into its own M and writes its
 * channels' planes, so nothing one thread wrote in the call is read by another.
 *
 * The weights' transform and packing (lamina_winograd_transform_weights_*, a function of w alone) is kept in the
 * context's derived buffer of the layer (lamina_conv2d_forward_derived_* in lamina_conv.c: filled again when a
 * parameter may have changed) and handed in as `prepacked`; without one (a training step, weights that are not a
 * parameter) it runs at every call. The buffers (packed weights unless handed in, then U sharing its space with V
 * and M) are one allocation per call. A max pool fused into the convolution is not handled here:
 * lamina_conv2d_forward computes the whole result into a buffer and pools it afterwards.
 *
 * Every function returns 0, or LAMINA_ERROR_MEMORY when its buffers cannot be allocated.
 */
#ifndef LAMINA_WINOGRAD_H
#define LAMINA_WINOGRAD_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lamina_runtime.h"


/* For tests: 2 or 4 runs every forward convolution that Winograd takes with F(m x m, 3 x 3), whatever the
   schedule chose (0: the schedule decides). */
#ifndef LAMINA_WINOGRAD_FORCE
#define LAMINA_WINOGRAD_FORCE 0
#endif
/* 0 vetoes Winograd (the schedule's Winograd layers then run im2col and the GEMM): A/B measurements without a
   recompiled compiler. */
#ifndef LAMINA_WINOGRAD_KERNEL
#define LAMINA_WINOGRAD_KERNEL 1
#endif
/* Elements of V and M one block of tile rows may take (at least one row of tiles a block). */
#ifndef LAMINA_WINOGRAD_BLOCK_ELEMENTS
#define LAMINA_WINOGRAD_BLOCK_ELEMENTS ((int64_t)1 << 20)
#endif
/* 1: with more rows of tiles than threads, each task takes a block of tile rows through all three passes on its
   own thread (its own V and M), so a thread reads the input rows and writes the output rows of its part of the
   planes and no pass waits for another thread; 0: every block's passes split over the threads (input channels,
   then xi, then output channels), as for fewer rows than threads. */
#ifndef LAMINA_WINOGRAD_SPATIAL
#define LAMINA_WINOGRAD_SPATIAL 1
#endif
/* Tiles per thread from which the split by rows is taken: with fewer, each thread's products have too few rows for
   the GEMM's micro-kernel (SqueezeNet's 13x13 layers, 8 tiles a thread, ran 7-10% slower that way on one die;
   its 55x55 layers, 98 tiles a thread, 3% faster, and 1.4-1.8x faster with the threads on two dies). */
#ifndef LAMINA_WINOGRAD_SPATIAL_MIN_TILES
#define LAMINA_WINOGRAD_SPATIAL_MIN_TILES 64
#endif
/* 1: a layer with too few tiles to split by rows (LAMINA_WINOGRAD_SPATIAL_MIN_TILES) splits its output channels over
   the threads, each taking its channels through the three passes alone (every thread transforms the whole input:
   duplicated work, but small beside the products, K / threads multiply-adds per transformed element); 0: the passes
   split over the threads in turn (input channels, then xi, then output channels), which hands V and M from thread
   to thread three times a call. */
#ifndef LAMINA_WINOGRAD_CHANNEL_SPLIT
#define LAMINA_WINOGRAD_CHANNEL_SPLIT 1
#endif
/* Elements of a block's V (every thread's own whole input transform) up to which the output channels split. Past it,
   transforming the whole input on every thread costs more than handing V and M over saves: ResNet-50's 128 -> 128
   3x3 at 28x28 (V: 225K elements) ran 20% slower on two threads sharing a cache, and no faster on two dies, while
   SqueezeNet's 13x13 and 27x27 layers (V: 28K to 56K) gained 30-35% on two dies. */
#ifndef LAMINA_WINOGRAD_CHANNEL_SPLIT_MAX_V
#define LAMINA_WINOGRAD_CHANNEL_SPLIT_MAX_V ((int64_t)1 << 16)
#endif
/* Tiles transformed together, one per vector lane. */
#define LAMINA_WINOGRAD_LANES 16
/* Multiply-adds of the GEMMs of a block below which its passes run on the calling thread. */
#ifndef LAMINA_WINOGRAD_PARALLEL_WORK
#define LAMINA_WINOGRAD_PARALLEL_WORK ((int64_t)1 << 18)
#endif

/* The transforms, row-major: B^T [alpha x alpha], G [alpha x 3], A^T [m x alpha]. */
static const double lamina_winograd_bt2[4 * 4] = {1, 0, -1, 0, 0, 1, 1, 0, 0, -1, 1, 0, 0, 1, 0, -1};
static const double lamina_winograd_g2[4 * 3] = {1, 0, 0, 0.5, 0.5, 0.5, 0.5, -0.5, 0.5, 0, 0, 1};
static const double lamina_winograd_at2[2 * 4] = {1, 1, 1, 0, 0, 1, -1, -1};
static const double lamina_winograd_bt4[6 * 6] = {
    4, 0, -5, 0, 1, 0,  /**/ 0, -4, -4, 1, 1, 0, /**/ 0, 4, -4, -1, 1, 0,
    0, -2, -1, 2, 1, 0, /**/ 0, 2, -1, -2, 1, 0, /**/ 0, 4, 0, -5, 0, 1,
};
static const double lamina_winograd_g4[6 * 3] = {
    1.0 / 4,  0,         0,        /**/ -1.0 / 6, -1.0 / 6, -1.0 / 6, /**/ -1.0 / 6, 1.0 / 6, -1.0 / 6,
    1.0 / 24, 1.0 / 12, 1.0 / 6, /**/ 1.0 / 24, -1.0 / 12, 1.0 / 6, /**/ 0,        0,        1,
};
static const double lamina_winograd_at4[4 * 6] = {
    1, 1, 1, 1, 1, 0, /**/ 0, 1, -1, 2, -2, 0, /**/ 0, 1, 1, 4, 4, 0, /**/ 0, 1, -1, 8, -8, 1,
};

/* Whether Winograd computes this forward convolution (3x3, stride 1, dilation 1, one group, no pool). */
static inline int lamina_winograd_fits(const lamina_conv2d_geometry* g) {
  return LAMINA_WINOGRAD_KERNEL && g->kernel_height == 3 && g->kernel_width == 3 && g->stride_height == 1 && g->stride_width == 1 &&
         g->dilation_height == 1 && g->dilation_width == 1 && g->groups == 1 && g->pool_height <= 0 &&
         g->out_height > 0 && g->out_width > 0;
}

/* Weight elements (C in x C out) per output position up to which transforming the weights in the call itself pays
   (ConvolutionSchedule.winogradWeightsPerPosition): a layer whose transform is not kept (a training step's
   forward, slot < 0) and has more takes im2col and the GEMM (lamina_conv2d_forward_derived_*). */
#ifndef LAMINA_WINOGRAD_PER_CALL_WEIGHTS_PER_POSITION
#define LAMINA_WINOGRAD_PER_CALL_WEIGHTS_PER_POSITION 256
#endif

/* Whether a per-call weight transform pays for this convolution (its positions: all images of the call). */
static inline int lamina_winograd_pays_per_call(const lamina_conv2d_geometry* g) {
  const int64_t positions = g->batch * g->out_height * g->out_width;
  return positions * LAMINA_WINOGRAD_PER_CALL_WEIGHTS_PER_POSITION >= g->in_channels * g->out_channels;
}

/* The integers as wide as each element type, for the relu's mask. */
#define LAMINA_WINOGRAD_BITS_f32 int32_t
#define LAMINA_WINOGRAD_BITS_f64 int64_t

/* Elements from one of V's or M's alpha² matrices to the next, for `elements` in each: whole cache lines, and an odd
   number of them. The output transform reads one vector from each of the alpha² matrices of M in turn, and the input
   transform writes one to each of V's; with matrices a multiple of 4 KiB apart (K a multiple of 64, ldt of 16: every
   M here) all alpha² lines fell in one set of the L1 cache, which holds 8. */
static inline int64_t lamina_winograd_matrix_stride(int64_t elements, int64_t element_size) {
  const int64_t line = 64 / element_size;
  int64_t stride = (elements + line - 1) / line * line;
  if ((stride / line) % 2 == 0) stride += line;
  return stride;
}

#define LAMINA_WINOGRAD_DEFINE(T, S, PACK_B, PACKED_GEMM, PACKED_COLUMNS_GEMM)                                          \
                                                                                                                        \
  /* LAMINA_WINOGRAD_LANES values, one per tile or channel, as the transforms compute them. */                          \
  typedef T lamina_winograd_vector_##S __attribute__((vector_size(LAMINA_WINOGRAD_LANES * sizeof(T))));                 \
  typedef LAMINA_WINOGRAD_BITS_##S lamina_winograd_bits_##S                                                             \
      __attribute__((vector_size(LAMINA_WINOGRAD_LANES * sizeof(T))));                                                  \
                                                                                                                        \
  /* U[xi][k][c] = (G w[k, c] G^T)[xi] for output channels [k0, k1), LAMINA_WINOGRAD_LANES input channels at once. */  \
  static inline __attribute__((always_inline)) void lamina_winograd_weights_range_##S(                                  \
      const T* w, int64_t K, int64_t C, int64_t k0, int64_t k1, T* U, const int m, const double* gm) {                  \
    enum { L = LAMINA_WINOGRAD_LANES };                                                                                 \
    const int A = m + 2;                                                                                                \
    T f[9][L], left[18][L]; /* the filters, then G f */                                                                 \
    memset(f, 0, sizeof f);                                                                                             \
    for (int64_t k = k0; k < k1; k++)                                                                                   \
      for (int64_t c0 = 0; c0 < C; c0 += L) {                                                                           \
        const int64_t n = lamina_conv_min(L, C - c0);                                                                   \
        const T* filters = w + (k * C + c0) * 9;                                                                        \
        for (int64_t l = 0; l < n; l++)                                                                                 \
          _Pragma("GCC unroll 9") for (int e = 0; e < 9; e++) f[e][l] = filters[l * 9 + e];                             \
        _Pragma("GCC unroll 6") for (int r = 0; r < A; r++)                                                             \
          _Pragma("GCC unroll 3") for (int j = 0; j < 3; j++) {                                                         \
            const T g0 = (T)gm[r * 3], g1 = (T)gm[r * 3 + 1], g2 = (T)gm[r * 3 + 2];                                    \
            _Pragma("omp simd") for (int l = 0; l < L; l++)                                                             \
              left[r * 3 + j][l] = g0 * f[j][l] + g1 * f[3 + j][l] + g2 * f[6 + j][l];                                  \
          }                                                                                                             \
        _Pragma("GCC unroll 6") for (int r = 0; r < A; r++)                                                             \
          _Pragma("GCC unroll 6") for (int s = 0; s < A; s++) {                                                         \
            const T g0 = (T)gm[s * 3], g1 = (T)gm[s * 3 + 1], g2 = (T)gm[s * 3 + 2];                                    \
            T sum[L];                                                                                                   \
            _Pragma("omp simd") for (int l = 0; l < L; l++)                                                             \
              sum[l] = left[r * 3][l] * g0 + left[r * 3 + 1][l] * g1 + left[r * 3 + 2][l] * g2;                         \
            T* to = U + ((int64_t)(r * A + s) * K + k) * C + c0;                                                        \
            if (n == L)                                                                                                 \
              memcpy(to, sum, sizeof sum);                                                                              \
            else                                                                                                        \
              for (int64_t l = 0; l < n; l++) to[l] = sum[l];                                                           \
          }                                                                                                             \
      }                                                                                                                 \
  }                                                                                                                     \
                                                                                                                        \
  /* One 1-D input transform of F(4x4, 3x3), B^T d for six vectors of d (lamina_winograd_bt4's rows), with the    \
     shared sums written out: 14 additions and multiply-adds instead of the 22 of the matrix's nonzero entries. */    \
  static inline __attribute__((always_inline)) void lamina_winograd_bt4_##S(                                            \
      lamina_winograd_vector_##S out[6], const lamina_winograd_vector_##S d0, const lamina_winograd_vector_##S d1,     \
      const lamina_winograd_vector_##S d2, const lamina_winograd_vector_##S d3, const lamina_winograd_vector_##S d4,   \
      const lamina_winograd_vector_##S d5) {                                                                            \
    const lamina_winograd_vector_##S a = d1 + d2, b = d3 + d4, e = d1 - d2, f = d4 - d3, h = d3 - d1, q = d4 - d2;      \
    out[0] = (T)4 * d0 - (T)5 * d2 + d4;                                                                                \
    out[1] = b - (T)4 * a;                                                                                              \
    out[2] = (T)4 * e + f;                                                                                              \
    out[3] = (T)2 * h + q;                                                                                              \
    out[4] = q - (T)2 * h;                                                                                              \
    out[5] = (T)4 * d1 - (T)5 * d3 + d5;                                                                                \
  }                                                                                                                     \
                                                                                                                        \
  /* V[xi][c][t] = (B^T d B)[xi] for input channels [c_begin, c_end) and the block's tiles: rows of tiles             \
     [row0, row0 + rows) of all images (TH rows of TW tiles an image); V's rows are ldt apart, its matrices v_stride. \
     LAMINA_WINOGRAD_LANES tiles at once, one per lane: where each tile starts is found once for all the channels. */ \
  static inline __attribute__((always_inline)) void lamina_winograd_input_##S(                                          \
      const lamina_conv2d_geometry* g, const T* x, int64_t c_begin, int64_t c_end, int64_t row0, int64_t rows,          \
      int64_t TH, int64_t TW, T* V, int64_t ldt, int64_t v_stride, const int m, const double* bt) {                     \
    enum { L = LAMINA_WINOGRAD_LANES };                                                                                 \
    const int A = m + 2;                                                                                                \
    const int64_t C = g->in_channels, H = g->in_height, W = g->in_width, tiles = rows * TW;                             \
    T d[36][L], rowsum[36][L];                                                                                          \
    int64_t start[L], top[L], left[L];                                                                                  \
    int inside[L];                                                                                                      \
    memset(d, 0, sizeof d);                                                                                             \
    for (int64_t t0 = 0; t0 < tiles; t0 += L) {                                                                         \
      const int64_t n = lamina_conv_min(L, tiles - t0);                                                                 \
      for (int64_t l = 0; l < n; l++) {                                                                                 \
        const int64_t t = t0 + l, tile_row = row0 + t / TW, tw = t % TW;                                                \
        const int64_t image = tile_row / TH, th = tile_row % TH;                                                        \
        top[l] = th * m - g->pad_top;                                                                                   \
        left[l] = tw * m - g->pad_left;                                                                                 \
        start[l] = image * C * H * W + top[l] * W + left[l];                                                            \
        inside[l] = top[l] >= 0 && top[l] + A <= H && left[l] >= 0 && left[l] + A <= W;                                 \
      }                                                                                                                 \
      for (int64_t c = c_begin; c < c_end; c++) {                                                                       \
        const T* channel = x + c * H * W;                                                                               \
        for (int64_t l = 0; l < n; l++) {                                                                               \
          if (inside[l]) {                                                                                              \
            const T* corner = channel + start[l];                                                                       \
            _Pragma("GCC unroll 6") for (int i = 0; i < A; i++)                                                         \
              _Pragma("GCC unroll 6") for (int j = 0; j < A; j++) d[i * A + j][l] = corner[i * W + j];                  \
          } else {                                                                                                      \
            const T* plane = channel + (start[l] - top[l] * W - left[l]);                                               \
            for (int i = 0; i < A; i++)                                                                                 \
              for (int j = 0; j < A; j++) {                                                                             \
                const int64_t r = top[l] + i, q = left[l] + j;                                                          \
                d[i * A + j][l] = (r >= 0 && r < H && q >= 0 && q < W) ? plane[r * W + q] : (T)0;                       \
              }                                                                                                         \
          }                                                                                                             \
        }                                                                                                               \
        T* to = V + c * ldt + t0;                                                                                       \
        if (m == 4) {                                                                                                   \
          /* B^T d down the columns, then (B^T d) B along the rows, with the shared sums. */                            \
          lamina_winograd_vector_##S dv[36], column[6];                                                                 \
          memcpy(dv, d, sizeof dv);                                                                                     \
          _Pragma("GCC unroll 6") for (int j = 0; j < 6; j++) {                                                         \
            lamina_winograd_bt4_##S(column, dv[j], dv[6 + j], dv[12 + j], dv[18 + j], dv[24 + j], dv[30 + j]);          \
            _Pragma("GCC unroll 6") for (int r = 0; r < 6; r++) dv[r * 6 + j] = column[r];                              \
          }                                                                                                             \
          _Pragma("GCC unroll 6") for (int r = 0; r < 6; r++) {                                                         \
            lamina_winograd_bt4_##S(column, dv[r * 6], dv[r * 6 + 1], dv[r * 6 + 2], dv[r * 6 + 3], dv[r * 6 + 4],     \
                                    dv[r * 6 + 5]);                                                                     \
            _Pragma("GCC unroll 6") for (int s = 0; s < 6; s++)                                                         \
              memcpy(to + (int64_t)(r * 6 + s) * v_stride, &column[s], sizeof column[s]);                               \
          }                                                                                                             \
          continue;                                                                                                     \
        }                                                                                                               \
        /* B^T d: rows. */                                                                                              \
        _Pragma("GCC unroll 6") for (int r = 0; r < A; r++)                                                             \
          _Pragma("GCC unroll 6") for (int j = 0; j < A; j++) {                                                         \
            T sum[L] = {0};                                                                                             \
            _Pragma("GCC unroll 6") for (int i = 0; i < A; i++) {                                                       \
              const T coefficient = (T)bt[r * A + i];                                                                   \
              if (coefficient != 0) {                                                                                   \
                _Pragma("omp simd") for (int l = 0; l < L; l++) sum[l] += coefficient * d[i * A + j][l];                \
              }                                                                                                         \
            }                                                                                                           \
            memcpy(rowsum[r * A + j], sum, sizeof sum);                                                                 \
          }                                                                                                             \
        /* (B^T d) B: columns, stored lane by lane into V. */                                                           \
        _Pragma("GCC unroll 6") for (int r = 0; r < A; r++)                                                             \
          _Pragma("GCC unroll 6") for (int s = 0; s < A; s++) {                                                         \
            T sum[L] = {0};                                                                                             \
            _Pragma("GCC unroll 6") for (int j = 0; j < A; j++) {                                                       \
              const T coefficient = (T)bt[s * A + j];                                                                   \
              if (coefficient != 0) {                                                                                   \
                _Pragma("omp simd") for (int l = 0; l < L; l++) sum[l] += coefficient * rowsum[r * A + j][l];           \
              }                                                                                                         \
            }                                                                                                           \
            memcpy(to + (int64_t)(r * A + s) * v_stride, sum, sizeof sum);                                              \
          }                                                                                                             \
      }                                                                                                                 \
    }                                                                                                                   \
  }                                                                                                                     \
                                                                                                                        \
  /* Stores L channels' 4 x 4 tiles: out[r * 4 + s][l] goes to at_tile[l * P + r * OW + s]. Each output row r is a    \
     4-way interleave of four vectors (two rounds of shuffles, as a 4 x 4 transpose in each group of four lanes), so a \
     channel's row leaves as one 4-element store instead of four scalar ones. */                                      \
  static inline __attribute__((always_inline)) void lamina_winograd_store_tiles4_##S(                                   \
      T out[16][LAMINA_WINOGRAD_LANES], T* at_tile, int64_t P, int64_t OW) {                                            \
    typedef T vector __attribute__((vector_size(LAMINA_WINOGRAD_LANES * sizeof(T))));                                   \
    _Static_assert(LAMINA_WINOGRAD_LANES == 16, "the shuffles below are written for 16 lanes");                         \
    _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) {                                                               \
      vector a, b, c, d;                                                                                                \
      memcpy(&a, out[r * 4], sizeof a);                                                                                 \
      memcpy(&b, out[r * 4 + 1], sizeof b);                                                                             \
      memcpy(&c, out[r * 4 + 2], sizeof c);                                                                             \
      memcpy(&d, out[r * 4 + 3], sizeof d);                                                                             \
      /* ab_low: a0 b0 a1 b1 | a4 b4 a5 b5 | ...; ab_high: a2 b2 a3 b3 | a6 b6 a7 b7 | ... */                            \
      const vector ab_low = __builtin_shufflevector(a, b, 0, 16, 1, 17, 4, 20, 5, 21, 8, 24, 9, 25, 12, 28, 13, 29);    \
      const vector ab_high = __builtin_shufflevector(a, b, 2, 18, 3, 19, 6, 22, 7, 23, 10, 26, 11, 27, 14, 30, 15, 31); \
      const vector cd_low = __builtin_shufflevector(c, d, 0, 16, 1, 17, 4, 20, 5, 21, 8, 24, 9, 25, 12, 28, 13, 29);    \
      const vector cd_high = __builtin_shufflevector(c, d, 2, 18, 3, 19, 6, 22, 7, 23, 10, 26, 11, 27, 14, 30, 15, 31); \
      /* rows[j]: channel 4 q + j's row (a, b, c, d) in group q. */                                                     \
      T rows[4][LAMINA_WINOGRAD_LANES];                                                                                 \
      const vector row0 =                                                                                               \
          __builtin_shufflevector(ab_low, cd_low, 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29);            \
      const vector row1 =                                                                                               \
          __builtin_shufflevector(ab_low, cd_low, 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31);          \
      const vector row2 =                                                                                               \
          __builtin_shufflevector(ab_high, cd_high, 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29);          \
      const vector row3 =                                                                                               \
          __builtin_shufflevector(ab_high, cd_high, 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31);        \
      memcpy(rows[0], &row0, sizeof row0);                                                                              \
      memcpy(rows[1], &row1, sizeof row1);                                                                              \
      memcpy(rows[2], &row2, sizeof row2);                                                                              \
      memcpy(rows[3], &row3, sizeof row3);                                                                              \
      _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++)                                                               \
        _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++)                                                             \
          memcpy(at_tile + (4 * q + j) * P + r * OW, &rows[j][4 * q], 4 * sizeof(T));                                   \
    }                                                                                                                   \
  }                                                                                                                     \
                                                                                                                        \
  /* One 1-D output transform of F(4x4, 3x3), start + A^T p for six vectors p (lamina_winograd_at4's rows), with   \
     the shared sums written out. */                                                                                    \
  static inline __attribute__((always_inline)) void lamina_winograd_at4_##S(                                            \
      lamina_winograd_vector_##S out[4], const lamina_winograd_vector_##S start, const lamina_winograd_vector_##S p0,  \
      const lamina_winograd_vector_##S p1, const lamina_winograd_vector_##S p2, const lamina_winograd_vector_##S p3,   \
      const lamina_winograd_vector_##S p4, const lamina_winograd_vector_##S p5) {                                       \
    const lamina_winograd_vector_##S a = p1 + p2, b = p1 - p2, c = p3 + p4, e = p3 - p4;                                \
    out[0] = start + p0 + a + c;                                                                                        \
    out[1] = start + b + (T)2 * e;                                                                                      \
    out[2] = start + a + (T)4 * c;                                                                                      \
    out[3] = start + b + (T)8 * e + p5;                                                                                 \
  }                                                                                                                     \
                                                                                                                        \
  /* y tiles = A^T M[., t, k] A + bias for output channels [k0, k1) and the block's tiles (M[xi] [tiles x K], rows  \
     K apart, matrices m_stride apart), LAMINA_WINOGRAD_LANES channels at once; then the epilogue on the rows of the  \
     result the block finished. */                                                                                  \
  static inline __attribute__((always_inline)) void lamina_winograd_output_##S(                                         \
      const lamina_conv2d_geometry* g, const T* M, int64_t k0, int64_t k1, int64_t row0, int64_t rows, int64_t TH,      \
      int64_t TW, int64_t m_stride, const T* bias, int64_t bias_count, T* y, const lamina_gemm_epilogue* epilogue,     \
      const int m, const double* at) {                                                                                  \
    enum { L = LAMINA_WINOGRAD_LANES };                                                                                 \
    const int A = m + 2;                                                                                                \
    const int64_t K = g->out_channels, OH = g->out_height, OW = g->out_width, P = OH * OW, tiles = rows * TW;           \
    T rowsum[24][L], out[16][L], biases[L];                                                                             \
    /* A relu-only epilogue (lamina_gemm_epilogue.relu_only) is applied to the sums before they are stored, instead of  \
       a second pass over the written rows. */                                                                           \
    const int relu = epilogue && epilogue->relu_only;                                                                   \
    for (int64_t c0 = k0; c0 < k1; c0 += L) {                                                                           \
      const int64_t n = lamina_conv_min(L, k1 - c0);                                                                    \
      for (int64_t l = 0; l < L; l++) biases[l] = bias && l < n ? bias[bias_count == 1 ? 0 : c0 + l] : (T)0;           \
      for (int64_t t = 0; t < tiles; t++) {                                                                             \
        if (m == 4) {                                                                                                   \
          /* A^T M down the columns, then (A^T M) A + bias along the rows, with the shared sums (a vector of channels   \
             read past K stays inside M: its last matrix has L spare elements). */                                      \
          lamina_winograd_vector_##S mv[24], column[4], start, zero = {0};                                              \
          memcpy(&start, biases, sizeof start);                                                                         \
          const T* products = M + t * K + c0;                                                                           \
          _Pragma("GCC unroll 6") for (int j = 0; j < 6; j++) {                                                         \
            lamina_winograd_vector_##S p[6];                                                                            \
            _Pragma("GCC unroll 6") for (int i = 0; i < 6; i++)                                                         \
              memcpy(&p[i], products + (int64_t)(i * 6 + j) * m_stride, sizeof p[i]);                                   \
            lamina_winograd_at4_##S(column, zero, p[0], p[1], p[2], p[3], p[4], p[5]);                                  \
            _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) mv[r * 6 + j] = column[r];                              \
          }                                                                                                             \
          _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) {                                                         \
            lamina_winograd_at4_##S(column, start, mv[r * 6], mv[r * 6 + 1], mv[r * 6 + 2], mv[r * 6 + 3],              \
                                    mv[r * 6 + 4], mv[r * 6 + 5]);                                                      \
            _Pragma("GCC unroll 4") for (int s = 0; s < 4; s++) {                                                       \
              /* As the model's relu computes it: NaN stays NaN, -0 becomes +0. */                                      \
              if (relu) column[s] = (lamina_winograd_vector_##S)((lamina_winograd_bits_##S)column[s] &                  \
                                                                 ~(lamina_winograd_bits_##S)(column[s] <= zero));       \
              memcpy(out[r * 4 + s], &column[s], sizeof column[s]);                                                     \
            }                                                                                                           \
          }                                                                                                             \
        } else {                                                                                                        \
        /* A^T M: rows (a vector of channels read past K stays inside M: its last matrix has L spare elements). */      \
        _Pragma("GCC unroll 4") for (int r = 0; r < m; r++)                                                             \
          _Pragma("GCC unroll 6") for (int j = 0; j < A; j++) {                                                         \
            T sum[L] = {0};                                                                                             \
            _Pragma("GCC unroll 6") for (int i = 0; i < A; i++) {                                                       \
              const T coefficient = (T)at[r * A + i];                                                                   \
              if (coefficient != 0) {                                                                                   \
                const T* product = M + (int64_t)(i * A + j) * m_stride + t * K + c0;                                    \
                _Pragma("omp simd") for (int l = 0; l < L; l++) sum[l] += coefficient * product[l];                     \
              }                                                                                                         \
            }                                                                                                           \
            memcpy(rowsum[r * A + j], sum, sizeof sum);                                                                 \
          }                                                                                                             \
        /* (A^T M) A + bias: columns. */                                                                                \
        _Pragma("GCC unroll 4") for (int r = 0; r < m; r++)                                                             \
          _Pragma("GCC unroll 4") for (int s = 0; s < m; s++) {                                                         \
            T sum[L];                                                                                                   \
            memcpy(sum, biases, sizeof sum);                                                                            \
            _Pragma("GCC unroll 6") for (int j = 0; j < A; j++) {                                                       \
              const T coefficient = (T)at[s * A + j];                                                                   \
              if (coefficient != 0) {                                                                                   \
                _Pragma("omp simd") for (int l = 0; l < L; l++) sum[l] += coefficient * rowsum[r * A + j][l];           \
              }                                                                                                         \
            }                                                                                                           \
            /* As the model's relu computes it: NaN stays NaN, -0 becomes +0. */                                        \
            if (relu) {                                                                                                 \
              _Pragma("omp simd") for (int l = 0; l < L; l++) sum[l] = (T)0 >= sum[l] ? (T)0 : sum[l];                  \
            }                                                                                                           \
            memcpy(out[r * m + s], sum, sizeof sum);                                                                    \
          }                                                                                                             \
        }                                                                                                               \
        const int64_t tile_row = row0 + t / TW, tw = t % TW;                                                            \
        const int64_t image = tile_row / TH, th = tile_row % TH;                                                        \
        const int64_t top = th * m, left = tw * m;                                                                      \
        const int64_t height = lamina_conv_min(m, OH - top), width = lamina_conv_min(m, OW - left);                     \
        T* at_tile = y + (image * K + c0) * P + top * OW + left;                                                        \
        if (m == 4 && n == L && height == 4 && width == 4) {                                                            \
          lamina_winograd_store_tiles4_##S(out, at_tile, P, OW);                                                        \
          continue;                                                                                                     \
        }                                                                                                               \
        for (int64_t l = 0; l < n; l++) {                                                                               \
          T* plane = at_tile + l * P;                                                                                   \
          if (height == m && width == m) {                                                                              \
            _Pragma("GCC unroll 4") for (int r = 0; r < m; r++)                                                         \
              _Pragma("GCC unroll 4") for (int s = 0; s < m; s++) plane[r * OW + s] = out[r * m + s][l];                \
          } else {                                                                                                      \
            for (int64_t r = 0; r < height; r++)                                                                        \
              for (int64_t s = 0; s < width; s++) plane[r * OW + s] = out[r * m + s][l];                                \
          }                                                                                                             \
        }                                                                                                               \
      }                                                                                                                 \
    }                                                                                                                   \
    if (!epilogue || relu) return;                                                                                      \
    /* The block's finished output rows, image by image. */                                                             \
    for (int64_t tile_row = row0; tile_row < row0 + rows;) {                                                            \
      const int64_t image = tile_row / TH, th0 = tile_row % TH;                                                         \
      const int64_t th1 = lamina_conv_min(TH, th0 + (row0 + rows - tile_row));                                          \
      const int64_t first = th0 * m, end = lamina_conv_min(OH, th1 * m);                                                \
      if (epilogue->planes)                                                                                             \
        epilogue->apply(epilogue->arg, y, OH * OW, image * K + k0, first * OW, k1 - k0, (end - first) * OW);           \
      else                                                                                                              \
        for (int64_t k = k0; k < k1; k++)                                                                               \
          lamina_conv_plane_epilogue(epilogue, y, OH, OW, image * K + k, first * OW, (end - first) * OW);               \
      tile_row += th1 - th0;                                                                                            \
    }                                                                                                                   \
  }                                                                                                                     \
                                                                                                                        \
  typedef struct lamina_winograd_job_##S {                                                                              \
    const lamina_conv2d_geometry* g;                                                                                    \
    const T* x;                                                                                                         \
    const T* w;                                                                                                         \
    const T* bias;                                                                                                      \
    int64_t bias_count;                                                                                                 \
    T* y;                                                                                                               \
    const lamina_gemm_epilogue* epilogue;                                                                               \
    T *U, *V, *M;                                                                                                       \
    T* packed; /* U[xi] packed as the GEMMs' right operand (U[xi]^T [C x K]), `packed_elements` apart */               \
    int64_t packed_elements;                                                                                            \
    int m;                                                                                                              \
    int pass; /* 0: weights, 4: their packing, 1: input, 2: products, 3: output, 5: 1-3 on a block of rows, */          \
              /* 6: 1-3 for a range of output channels, every block */                                                  \
    int64_t tasks, TH, TW, row0, rows, ldt;                                                                             \
    lamina_pool* gemm_pool; /* the products' pool: NULL when they run one per task */                                   \
    int64_t all_rows, work_stride, v_size; /* pass 5: rows of tiles in all, and each thread's V then M */               \
    T* const* own; /* passes 5-6: each thread's V then M (lamina_pool_thread_buffer), or NULL: V, work_stride apart */  \
    lamina_pool* pool;   /* pass 6: the pool whose threads' scratch memory the products pack into */                    \
    int64_t block_rows; /* pass 6: rows of tiles per block */                                                           \
    int64_t v_stride, m_stride; /* elements from one of V's (M's) alpha² matrices to the next */                        \
  } lamina_winograd_job_##S;                                                                                            \
                                                                                                                        \
  static void lamina_winograd_task_##S(void* argument, int64_t task, int thread) {                                      \
    (void)thread;                                                                                                       \
    const lamina_winograd_job_##S* job = (const lamina_winograd_job_##S*)argument;                                      \
    const lamina_conv2d_geometry* g = job->g;                                                                           \
    const int64_t C = g->in_channels, K = g->out_channels, A = job->m + 2;                                              \
    int64_t begin, end;                                                                                                 \
    switch (job->pass) {                                                                                                \
    case 0:                                                                                                             \
      lamina_conv_task_range(K, job->tasks, task, &begin, &end);                                                        \
      if (job->m == 2)                                                                                                  \
        lamina_winograd_weights_range_##S(job->w, K, C, begin, end, job->U, 2, lamina_winograd_g2);                     \
      else                                                                                                              \
        lamina_winograd_weights_range_##S(job->w, K, C, begin, end, job->U, 4, lamina_winograd_g4);                     \
      break;                                                                                                            \
    case 1:                                                                                                             \
      lamina_conv_task_range(C, job->tasks, task, &begin, &end);                                                        \
      if (job->m == 2)                                                                                                  \
        lamina_winograd_input_##S(g, job->x, begin, end, job->row0, job->rows, job->TH, job->TW, job->V, job->ldt,      \
                                  job->v_stride, 2, lamina_winograd_bt2);                                               \
      else                                                                                                              \
        lamina_winograd_input_##S(g, job->x, begin, end, job->row0, job->rows, job->TH, job->TW, job->V, job->ldt,      \
                                  job->v_stride, 4, lamina_winograd_bt4);                                               \
      break;                                                                                                            \
    case 2:                                                                                                             \
      lamina_conv_task_range(A * A, job->tasks, task, &begin, &end);                                                    \
      for (int64_t xi = begin; xi < end; xi++)                                                                          \
        PACKED_GEMM(job->gemm_pool, 1, job->rows * job->TW, K, C, (T)1, job->V + xi * job->v_stride, job->ldt,         \
                    job->packed + xi * job->packed_elements, (T)0, job->M + xi * job->m_stride, K, NULL);               \
      break;                                                                                                            \
    case 4:                                                                                                             \
      lamina_conv_task_range(A * A, job->tasks, task, &begin, &end);                                                    \
      for (int64_t xi = begin; xi < end; xi++)                                                                          \
        PACK_B(1, C, K, job->U + xi * K * C, C, job->packed + xi * job->packed_elements);                               \
      break;                                                                                                            \
    case 5: {                                                                                                           \
      /* A block of tile rows through the three passes on this thread, with this thread's V and M. */                   \
      lamina_conv_task_range(job->all_rows, job->tasks, task, &begin, &end);                                            \
      if (begin >= end) break;                                                                                          \
      lamina_winograd_job_##S local = *job;                                                                             \
      local.V = job->own ? job->own[thread] : job->V + (int64_t)thread * job->work_stride;                              \
      local.M = local.V + job->v_size;                                                                                  \
      local.row0 = begin;                                                                                               \
      local.rows = end - begin;                                                                                         \
      local.tasks = 1;                                                                                                  \
      local.gemm_pool = NULL;                                                                                           \
      for (int pass = 1; pass <= 3; pass++) {                                                                           \
        local.pass = pass;                                                                                              \
        lamina_winograd_task_##S(&local, 0, thread);                                                                    \
      }                                                                                                                 \
      break;                                                                                                            \
    }                                                                                                                   \
    case 6: {                                                                                                           \
      /* Whole LAMINA_GEMM_COLUMN_ALIGN output channels through the three passes on this thread, block by block:        \
         V of every input channel (each thread transforms the whole input) and M's columns of its channels, both        \
         its own, so no pass waits for another thread's or reads what another wrote. */                                 \
      const int64_t units = (K + LAMINA_GEMM_COLUMN_ALIGN - 1) / LAMINA_GEMM_COLUMN_ALIGN;                              \
      lamina_conv_task_range(units, job->tasks, task, &begin, &end);                                                    \
      const int64_t k0 = begin * LAMINA_GEMM_COLUMN_ALIGN, k1 = lamina_conv_min(K, end * LAMINA_GEMM_COLUMN_ALIGN);     \
      if (k0 >= k1) break;                                                                                              \
      lamina_winograd_job_##S local = *job;                                                                             \
      local.V = job->own ? job->own[thread] : job->V + (int64_t)thread * job->work_stride;                              \
      local.M = local.V + job->v_size;                                                                                  \
      for (int64_t row0 = 0; row0 < job->all_rows; row0 += job->block_rows) {                                           \
        local.row0 = row0;                                                                                              \
        local.rows = lamina_conv_min(job->block_rows, job->all_rows - row0);                                            \
        local.tasks = 1;                                                                                                \
        local.pass = 1;                                                                                                 \
        lamina_winograd_task_##S(&local, 0, thread);                                                                    \
        /* With the pool's scratch memory (pass 6 runs only on a pool) the products allocate nothing: they cannot       \
           fail. */                                                                                                     \
        for (int64_t xi = 0; xi < A * A; xi++)                                                                          \
          (void)PACKED_COLUMNS_GEMM(job->pool, thread, 1, local.rows * job->TW, K, C, k0, k1,                           \
                                    local.V + xi * job->v_stride, job->ldt, job->packed + xi * job->packed_elements,    \
                                    local.M + xi * job->m_stride, K);                                                   \
        if (job->m == 2)                                                                                                \
          lamina_winograd_output_##S(g, local.M, k0, k1, local.row0, local.rows, job->TH, job->TW, job->m_stride,       \
                                     job->bias, \
                                     job->bias_count, job->y, job->epilogue, 2, lamina_winograd_at2);                   \
        else                                                                                                            \
          lamina_winograd_output_##S(g, local.M, k0, k1, local.row0, local.rows, job->TH, job->TW, job->m_stride,       \
                                     job->bias, \
                                     job->bias_count, job->y, job->epilogue, 4, lamina_winograd_at4);                   \
      }                                                                                                                 \
      break;                                                                                                            \
    }                                                                                                                   \
    default: {                                                                                                          \
      /* Whole vectors of channels per task. */                                                                         \
      const int64_t vectors = (K + LAMINA_WINOGRAD_LANES - 1) / LAMINA_WINOGRAD_LANES;                                  \
      lamina_conv_task_range(vectors, job->tasks, task, &begin, &end);                                                  \
      begin *= LAMINA_WINOGRAD_LANES;                                                                                   \
      end = lamina_conv_min(K, end * LAMINA_WINOGRAD_LANES);                                                            \
      if (begin >= end) break;                                                                                          \
      if (job->m == 2)                                                                                                  \
        lamina_winograd_output_##S(g, job->M, begin, end, job->row0, job->rows, job->TH, job->TW, job->m_stride,         \
                                   job->bias,  \
                                   job->bias_count, job->y, job->epilogue, 2, lamina_winograd_at2);                     \
      else                                                                                                              \
        lamina_winograd_output_##S(g, job->M, begin, end, job->row0, job->rows, job->TH, job->TW, job->m_stride,         \
                                   job->bias,  \
                                   job->bias_count, job->y, job->epilogue, 4, lamina_winograd_at4);                     \
      break;                                                                                                            \
    }                                                                                                                   \
    }                                                                                                                   \
  }                                                                                                                     \
                                                                                                                        \
  /* Runs one pass of the job over `rows` units (channels or xi): on the pool's threads when `parallel`. */             \
  static inline void lamina_winograd_run_##S(lamina_pool* pool, lamina_winograd_job_##S* job, int pass, int64_t rows,   \
                                             int parallel) {                                                            \
    job->pass = pass;                                                                                                   \
    job->tasks = parallel ? lamina_conv_min(rows, (int64_t)lamina_pool_threads(pool)) : 1;                              \
    if (job->tasks <= 1) {                                                                                              \
      job->tasks = 1;                                                                                                   \
      lamina_winograd_task_##S(job, 0, 0);                                                                              \
    } else {                                                                                                            \
      lamina_pool_run(pool, job->tasks, lamina_winograd_task_##S, job);                                                 \
    }                                                                                                                   \
  }                                                                                                                     \
                                                                                                                        \
  /* packed = the weight transform of w [K, C, 3, 3] for F(m x m, 3 x 3) (m = 2 or 4), as the products' right      \
     operands: alpha² matrices U[xi]^T [C x K] packed by lamina_gemm_pack_b (LAMINA_WINOGRAD_PACKED_ELEMENTS each),  \
     through U (alpha² * K * C elements of scratch). A function of w alone: what a derived buffer would hold. */     \
  static inline void lamina_winograd_transform_weights_##S(lamina_pool* pool, const lamina_conv2d_geometry* g,          \
                                                           const T* w, T* U, T* packed, int m) {                        \
    lamina_winograd_job_##S job = {0};                                                                                  \
    job.g = g;                                                                                                          \
    job.w = w;                                                                                                          \
    job.U = U;                                                                                                          \
    job.m = m;                                                                                                          \
    job.packed = packed;                                                                                                \
    job.packed_elements = LAMINA_GEMM_PACKED_B_ELEMENTS(g->out_channels, g->in_channels, sizeof(T));                   \
    const int parallel = pool && g->out_channels * g->in_channels * 36 * 6 >= LAMINA_WINOGRAD_PARALLEL_WORK;            \
    lamina_winograd_run_##S(pool, &job, 0, g->out_channels, parallel);                                                  \
    lamina_winograd_run_##S(pool, &job, 4, (m + 2) * (m + 2), parallel);                                                \
  }                                                                                                                     \
                                                                                                                        \
  /* Elements of the whole packed weight transform for F(m x m, 3 x 3): alpha² matrices of                       \
     LAMINA_GEMM_PACKED_B_ELEMENTS, rounded up to a vector. What a derived buffer holds (lamina_conv.c). */         \
  static inline int64_t lamina_winograd_packed_size_##S(const lamina_conv2d_geometry* g, int m) {                      \
    const int64_t A = m + 2, L = LAMINA_WINOGRAD_LANES;                                                                 \
    return (A * A * LAMINA_GEMM_PACKED_B_ELEMENTS(g->out_channels, g->in_channels, sizeof(T)) + L - 1) / L * L;        \
  }                                                                                                                     \
                                                                                                                        \
  /* packed (lamina_winograd_packed_size_* elements) = the packed weight transform of w, through a scratch U of its    \
     own (alpha² * K * C elements, freed here). */                                                                      \
  static inline int lamina_winograd_fill_weights_##S(lamina_pool* pool, const lamina_conv2d_geometry* g, const T* w,   \
                                                     T* packed, int m) {                                                \
    const int64_t A = m + 2, L = LAMINA_WINOGRAD_LANES;                                                                 \
    const int64_t u_size = (A * A * g->out_channels * g->in_channels + L - 1) / L * L;                                  \
    T* U = (T*)aligned_alloc(64, (size_t)lamina_conv_max(u_size, L) * sizeof(T));                                     \
    if (!U) return LAMINA_ERROR_MEMORY;                                                                                 \
    lamina_winograd_transform_weights_##S(pool, g, w, U, packed, m);                                                    \
    free(U);                                                                                                            \
    return 0;                                                                                                           \
  }                                                                                                                     \
                                                                                                                        \
  /* y = conv2d(x, w) + bias with F(m x m, 3 x 3) (m = 2 or 4), then the epilogue; g: lamina_winograd_fits.           \
     prepacked: w's packed transform (lamina_winograd_fill_weights_*, kept in a derived buffer between calls), or     \
     NULL to transform and pack w in this call. */                                                                     \
  static inline int lamina_conv2d_winograd_##S(lamina_pool* pool, const lamina_conv2d_geometry* g, const T* x,         \
                                               const T* w, const T* prepacked, const T* bias, int64_t bias_count,       \
                                               T* y, const lamina_gemm_epilogue* epilogue, int m) {                     \
    enum { L = LAMINA_WINOGRAD_LANES };                                                                                 \
    const int64_t A = m + 2, C = g->in_channels, K = g->out_channels;                                                   \
    const int64_t TH = (g->out_height + m - 1) / m, TW = (g->out_width + m - 1) / m;                                    \
    const int64_t all_rows = g->batch * TH;                                                                             \
    if (all_rows == 0 || K == 0) return 0;                                                                              \
    const int64_t row_elements = A * A * (C + K) * TW;                                                                  \
    const int64_t block_rows =                                                                                          \
        lamina_conv_max(1, lamina_conv_min(all_rows, LAMINA_WINOGRAD_BLOCK_ELEMENTS / lamina_conv_max(1, row_elements))); \
    const int threads = pool ? lamina_pool_threads(pool) : 1;                                                           \
    /* Split by rows (pass 5): enough rows and tiles for every thread. Tasks are a multiple of the threads (even        \
       shares) of at most block_rows rows each, and each thread has V and M of its own. */                              \
    const int spatial = LAMINA_WINOGRAD_SPATIAL && threads > 1 && all_rows >= threads &&                                \
                        all_rows * TW >= LAMINA_WINOGRAD_SPATIAL_MIN_TILES * threads &&                                 \
                        A * A * K * C * all_rows * TW >= LAMINA_WINOGRAD_PARALLEL_WORK;                                 \
    /* Else split by output channels (pass 6): each thread transforms the whole input for its runs of                   \
       LAMINA_GEMM_COLUMN_ALIGN channels (at least one a thread), while that V stays small. */                          \
    const int64_t channel_units = (K + LAMINA_GEMM_COLUMN_ALIGN - 1) / LAMINA_GEMM_COLUMN_ALIGN;                        \
    const int by_channels = LAMINA_WINOGRAD_CHANNEL_SPLIT && !spatial && threads > 1 && channel_units >= threads &&     \
                            A * A * C * lamina_conv_min(all_rows, block_rows) * TW <=                                   \
                                LAMINA_WINOGRAD_CHANNEL_SPLIT_MAX_V &&                                                  \
                            A * A * K * C * all_rows * TW >= LAMINA_WINOGRAD_PARALLEL_WORK;                             \
    int64_t tasks = threads;                                                                                            \
    while (spatial && tasks < all_rows && (all_rows + tasks - 1) / tasks > block_rows) tasks += threads;                \
    tasks = lamina_conv_min(tasks, all_rows);                                                                           \
    const int64_t ldt = ((spatial ? (all_rows + tasks - 1) / tasks : block_rows) * TW + L - 1) / L * L;                 \
    const int64_t packed_elements = LAMINA_GEMM_PACKED_B_ELEMENTS(K, C, sizeof(T));                                     \
    /* One allocation: the packed weights (unless given), then U, which is dead once packed, in the place of V          \
       [alpha² x C x ldt] and M [alpha² x ldt x K] (+ a vector past it), one pair per thread when split by rows        \
       or by output channels. */                                                                                        \
    const int64_t p_size = prepacked ? 0 : lamina_winograd_packed_size_##S(g, m);                                       \
    const int64_t u_size = prepacked ? 0 : A * A * K * C;                                                               \
    const int64_t v_stride = lamina_winograd_matrix_stride(C * ldt, sizeof(T));                                         \
    const int64_t m_stride = lamina_winograd_matrix_stride(ldt * K, sizeof(T));                                         \
    const int64_t v_size = (A * A * v_stride + L - 1) / L * L, m_size = A * A * m_stride + L;                           \
    /* With a pool, each thread's V and M are a buffer of its own kept between calls (lamina_pool_thread_buffer);       \
       else (out of memory) they take their place in this call's allocation. */                                         \
    T* own[LAMINA_POOL_MAX_THREADS];                                                                                    \
    int owned = (spatial || by_channels) && threads <= LAMINA_POOL_MAX_THREADS;                                         \
    for (int t = 0; owned && t < threads; t++)                                                                          \
      owned = (own[t] = (T*)lamina_pool_thread_buffer(pool, t, (size_t)(v_size + m_size) * sizeof(T))) != NULL;         \
    const int64_t work_size =                                                                                           \
        lamina_conv_max(u_size, owned ? 0 : (spatial || by_channels ? threads : 1) * (v_size + m_size));                \
    T* buffer = (T*)aligned_alloc(64, (size_t)((p_size + work_size + 2 * L) / L * L) * sizeof(T));                      \
    if (!buffer) return LAMINA_ERROR_MEMORY;                                                                            \
    T* packed = prepacked ? (T*)prepacked : buffer;                                                                     \
    T* U = buffer + p_size;                                                                                             \
    T* V = U;                                                                                                           \
    T* M = V + v_size;                                                                                                  \
    if (!prepacked) lamina_winograd_transform_weights_##S(pool, g, w, U, packed, m);                                    \
    lamina_winograd_job_##S job = {g, x, w, bias, bias_count, y, epilogue, U, V, M, packed, packed_elements,            \
                                   m, 0, 1, TH, TW, 0, 0, ldt, NULL, all_rows, v_size + m_size, v_size,                 \
                                   owned ? own : NULL, pool, block_rows, v_stride, m_stride};                           \
    if (spatial) {                                                                                                      \
      job.pass = 5;                                                                                                     \
      job.tasks = tasks;                                                                                                \
      lamina_pool_run(pool, tasks, lamina_winograd_task_##S, &job);                                                     \
    } else if (by_channels) {                                                                                           \
      job.pass = 6;                                                                                                     \
      job.tasks = threads;                                                                                              \
      lamina_pool_run(pool, threads, lamina_winograd_task_##S, &job);                                                   \
    } else {                                                                                                            \
      for (int64_t row0 = 0; row0 < all_rows; row0 += block_rows) {                                                     \
        job.row0 = row0;                                                                                                \
        job.rows = lamina_conv_min(block_rows, all_rows - row0);                                                        \
        const int64_t work = A * A * K * C * job.rows * TW;                                                             \
        const int parallel = threads > 1 && work >= LAMINA_WINOGRAD_PARALLEL_WORK;                                      \
        lamina_winograd_run_##S(pool, &job, 1, C, parallel);                                                            \
        /* The products: one GEMM per task on the threads; alone, each GEMM with the pool's scratch. */                 \
        job.gemm_pool = parallel ? NULL : pool;                                                                         \
        lamina_winograd_run_##S(pool, &job, 2, A * A, parallel);                                                        \
        lamina_winograd_run_##S(pool, &job, 3, (K + L - 1) / L, parallel);                                              \
      }                                                                                                                 \
    }                                                                                                                   \
    free(buffer);                                                                                                       \
    return 0;                                                                                                           \
  }


/* lamina_conv.c instantiates LAMINA_WINOGRAD_DEFINE for its element type. */

#endif
