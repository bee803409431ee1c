/* lamina_conv.h — 2-D convolution (NCHW) for generated model code, on the runtime's packed GEMM.
 *
 * The interface model.c includes: the geometry, the algorithms and the four entry points. Their code is in
 * lamina_conv.c (with lamina_winograd.h), a runtime unit compiled once per instruction set and element type
 * and cached with the GEMM, so a model's own C compiles in a fraction of the time; it calls lamina_sgemm /
 * lamina_dgemm of its own instruction set.
 *
 * One geometry describes a convolution y = conv2d(x, w): x [batch, in_channels, in_height, in_width],
 * w [out_channels, in_channels / groups, kernel_height, kernel_width], y [batch, out_channels,
 * out_height, out_width]. Per image and group, with K = in_channels / groups * kh * kw and P the
 * output positions, the convolution is one matrix product (im2col):
 *
 *     y[n, group] [out/groups, P] = w[group] [out/groups, K] @ columns [K, P]
 *     columns[(c, i, j), (oh, ow)] = x[n, group, c, oh * sh - pad_top + i * dh, ow * sw - pad_left + j * dw]
 *                                    (0 outside the input: padding)
 *
 * and its two gradients are the products around the same columns:
 *
 *     backward input  (= conv_transpose2d): dx = col2im(w[group]^T @ dy[n, group]), col2im adding each
 *                                           column element back where im2col took it from
 *     backward weight: dw[group] = Σ_n dy[n, group] @ columns(x[n])^T
 *
 * The forward convolution runs one of these kernels (or Winograd, lamina_winograd.h), as the generated code's
 * kernel schedule says (geometry.algorithm; ConvolutionSchedule in Swift chooses from the sizes):
 *   LAMINA_CONV_ALGORITHM_IM2COL_GEMM      the columns above and the packed GEMM (many input channels);
 *   LAMINA_CONV_ALGORITHM_DIRECT_WIDTH     direct, vectors along an output row, up to 8 output channels
 *                                          in registers (few output channels: LeNet's 1 -> 6);
 *   LAMINA_CONV_ALGORITHM_DIRECT_CHANNELS  direct, vectors across the output channels, a tile of output
 *                                          positions in registers (few input channels: LeNet's 6 -> 16);
 *   LAMINA_CONV_ALGORITHM_DEPTHWISE        direct, one input channel per group (groups == in_channels), vectors
 *                                          along an output row at any stride (its padded rows split in phases).
 * The direct kernels run on the calling thread below LAMINA_CONV_DIRECT_PARALLEL_WORK multiply-adds, and
 * split one image into bands when the images are fewer than the threads.
 *
 * The forward GEMM never stores the columns: its B packer (lamina_gemm_b_packer) reads each block of
 * them straight from the input into the GEMM's panels (lamina_conv_pack_columns_*), so there is no
 * [K, P] matrix to allocate, write and read back (115 MB for VGG-19's second layer; 1-thread CPU time
 * of VGG-19 578 -> 406 ms, ResNet-50 118 -> 112 ms). The gradients still go through stored columns.
 *
 * Small images are handled a chunk of images at a time: their columns side by side ([K, images * P]),
 * so the GEMM is large enough to split over the threads and there is one GEMM per chunk, not per
 * image. The results then go through a buffer [out/groups, images * P] that is scattered into NCHW.
 *
 * Epilogues: the forward functions take a lamina_gemm_epilogue that sees the result as the matrix
 * [batch * channels * height, width] (the fused kernel's row view of an NCHW tensor: its rows are the
 * leading axes and its columns the last one), or, when its `planes` field is set, as the matrix
 * [batch * channels, height * width] (each row a plane: a block of channels is one call). It is called
 * exactly once per element, after the element's final value (bias included) is stored, possibly
 * concurrently for different blocks.
 *
 * Every function returns 0, or LAMINA_ERROR_MEMORY when its scratch buffers cannot be allocated.
 */
#ifndef LAMINA_CONV_H
#define LAMINA_CONV_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lamina_model.h" /* the context, for weights packed once per parameter version (lamina_derived) */
#include "lamina_runtime.h"

typedef struct lamina_conv2d_geometry {
  int64_t batch;
  int64_t in_channels, in_height, in_width;    /* conv2d's operand x (conv_transpose2d's result) */
  int64_t out_channels, out_height, out_width; /* conv2d's result (conv_transpose2d's operand) */
  int64_t kernel_height, kernel_width;
  int64_t stride_height, stride_width;
  int64_t pad_top, pad_left; /* bottom and right padding only show in out_height and out_width */
  int64_t dilation_height, dilation_width;
  int64_t groups;
  int64_t algorithm; /* LAMINA_CONV_ALGORITHM_*: the kernel schedule's choice (0: chosen here by size) */
  /* A max pool of the result written instead of it (0: none): windows pool_height x pool_width at the pool strides,
     no padding; the forward's y is then the pooled [batch, out_channels, PH, PW] and the epilogue sees that. */
  int64_t pool_height, pool_width, pool_stride_height, pool_stride_width;
} lamina_conv2d_geometry;

/* The pooled result's rows and columns (the result's own without a pool). */
static inline int64_t lamina_conv_pooled_height(const lamina_conv2d_geometry* g) {
  return g->pool_height > 0 ? (g->out_height - g->pool_height) / g->pool_stride_height + 1 : g->out_height;
}
static inline int64_t lamina_conv_pooled_width(const lamina_conv2d_geometry* g) {
  return g->pool_height > 0 ? (g->out_width - g->pool_width) / g->pool_stride_width + 1 : g->out_width;
}

/* Bytes of a band of one (image, group)'s result that a direct kernel writing a max pool holds in a thread's scratch
   memory (2 MiB, beside the padded input): ConvolutionSchedule.pooledBlockBytes. */
#define LAMINA_CONV_POOLED_BLOCK_BYTES (1 << 20)

/* The bands of a direct kernel's (image, group): at least `bands` (for the threads), and with a pool enough that each
   band's `channels` planes of result rows fit LAMINA_CONV_POOLED_BLOCK_BYTES (SqueezeNet's first layer: 3.2 MB in 4
   bands), at most one per pooled row. */
static inline int64_t lamina_conv_pooled_bands(const lamina_conv2d_geometry* g, int64_t bands, int64_t channels,
                                               int64_t element_bytes) {
  if (g->pool_height <= 0) return bands;
  const int64_t bytes = channels * g->out_height * g->out_width * element_bytes;
  const int64_t needed = (bytes + LAMINA_CONV_POOLED_BLOCK_BYTES - 1) / LAMINA_CONV_POOLED_BLOCK_BYTES;
  const int64_t rows = lamina_conv_pooled_height(g);
  const int64_t wanted = needed > bands ? needed : bands;
  return wanted < rows ? wanted : rows > 0 ? rows : 1;
}

/* Band `band` of `bands` of one (image, group)'s rows: the rows of the written result (pooled, with a pool) it
   writes, [*written_first, *written_end), and the rows of the convolution's result it computes, [*first, *end). */
static inline void lamina_conv_band_rows(const lamina_conv2d_geometry* g, int64_t band, int64_t bands, int64_t* written_first,
                                         int64_t* written_end, int64_t* first, int64_t* end) {
  const int64_t rows = lamina_conv_pooled_height(g);
  *written_first = rows * band / bands;
  *written_end = rows * (band + 1) / bands;
  if (g->pool_height <= 0) {
    *first = *written_first;
    *end = *written_end;
    return;
  }
  *first = *written_first * g->pool_stride_height;
  *end = *written_end > *written_first ? (*written_end - 1) * g->pool_stride_height + g->pool_height : *first;
}

/* The forward kernels, as the generated code's kernel schedule names them (ConvolutionSchedule). */
#define LAMINA_CONV_ALGORITHM_AUTO 0           /* the width kernel when it fits, else im2col + GEMM */
#define LAMINA_CONV_ALGORITHM_IM2COL_GEMM 1    /* columns and the packed GEMM */
#define LAMINA_CONV_ALGORITHM_DIRECT_WIDTH 2   /* direct, vectorized over output columns */
#define LAMINA_CONV_ALGORITHM_DIRECT_CHANNELS 3 /* direct, vectorized over output channels */
#define LAMINA_CONV_ALGORITHM_WINOGRAD_2 4      /* Winograd F(2x2, 3x3) (lamina_winograd.h) */
#define LAMINA_CONV_ALGORITHM_WINOGRAD_4 5      /* Winograd F(4x4, 3x3) */
#define LAMINA_CONV_ALGORITHM_DEPTHWISE 6       /* one input channel per group, vectorized over output columns */

/* The entry points of one element type, named for the instruction set of the unit that includes this header
   (lamina_conv.c defines them, once per set). */
#define LAMINA_CONV_DECLARE(T, S)                                                                                        \
  /* y = conv2d(x, w) + bias, then the epilogue; with a pool in g, y is the pooled result and the epilogue runs on it.   \
     bias: bias_count values (one per out channel, or 1), or NULL. */                                                    \
  LAMINA_HIDDEN int lamina_conv2d_forward_##S(lamina_pool* pool, const lamina_conv2d_geometry* g, const T* x,            \
                                              const T* w, const T* bias, int64_t bias_count, T* y,                       \
                                              const lamina_gemm_epilogue* epilogue);                                     \
  /* The same with w a parameter whose GEMM packing is kept in the context's derived slot `slot` (lamina_derived):       \
     packed again only when a parameter may have changed since the last call. slot < 0: packed per call. */              \
  LAMINA_HIDDEN int lamina_conv2d_forward_derived_##S(lamina_context* ctx, int64_t slot, const lamina_conv2d_geometry* g, \
                                                      const T* x, const T* w, const T* bias, int64_t bias_count, T* y,   \
                                                      const lamina_gemm_epilogue* epilogue);                             \
  /* Fills slot's derived data (what lamina_conv2d_forward_derived_* keeps) from w when it is stale, and nothing     \
     else: for weights that exist only until they are packed (lamina_conv2d_forward_derived_* then gets w == NULL and  \
     finds the slot current). 0, or an error code (LAMINA_ERROR_ARGUMENT for a stale slot without weights). */          \
  LAMINA_HIDDEN int lamina_conv2d_derive_##S(lamina_context* ctx, int64_t slot, const lamina_conv2d_geometry* g,         \
                                             const T* w);                                                                \
  /* dx = conv_transpose2d(dy, w) + bias, then the epilogue: conv2d's input gradient, and conv_transpose2d. */          \
  LAMINA_HIDDEN int lamina_conv2d_backward_input_##S(lamina_pool* pool, const lamina_conv2d_geometry* g, const T* dy,    \
                                                     const T* w, const T* bias, int64_t bias_count, T* dx,               \
                                                     const lamina_gemm_epilogue* epilogue);                              \
  /* dw = the gradient of conv2d's weight. */                                                                            \
  LAMINA_HIDDEN int lamina_conv2d_backward_weight_##S(lamina_pool* pool, const lamina_conv2d_geometry* g, const T* x,    \
                                                      const T* dy, T* dw);

#ifdef LAMINA_ISA
#define lamina_conv2d_forward_f32 LAMINA_RUNTIME_NAME(lamina_conv2d_forward_f32_, LAMINA_ISA)
#define lamina_conv2d_forward_f64 LAMINA_RUNTIME_NAME(lamina_conv2d_forward_f64_, LAMINA_ISA)
#define lamina_conv2d_forward_derived_f32 LAMINA_RUNTIME_NAME(lamina_conv2d_forward_derived_f32_, LAMINA_ISA)
#define lamina_conv2d_forward_derived_f64 LAMINA_RUNTIME_NAME(lamina_conv2d_forward_derived_f64_, LAMINA_ISA)
#define lamina_conv2d_derive_f32 LAMINA_RUNTIME_NAME(lamina_conv2d_derive_f32_, LAMINA_ISA)
#define lamina_conv2d_derive_f64 LAMINA_RUNTIME_NAME(lamina_conv2d_derive_f64_, LAMINA_ISA)
#define lamina_conv2d_backward_input_f32 LAMINA_RUNTIME_NAME(lamina_conv2d_backward_input_f32_, LAMINA_ISA)
#define lamina_conv2d_backward_input_f64 LAMINA_RUNTIME_NAME(lamina_conv2d_backward_input_f64_, LAMINA_ISA)
#define lamina_conv2d_backward_weight_f32 LAMINA_RUNTIME_NAME(lamina_conv2d_backward_weight_f32_, LAMINA_ISA)
#define lamina_conv2d_backward_weight_f64 LAMINA_RUNTIME_NAME(lamina_conv2d_backward_weight_f64_, LAMINA_ISA)
LAMINA_CONV_DECLARE(float, f32)
LAMINA_CONV_DECLARE(double, f64)
#endif

#endif
