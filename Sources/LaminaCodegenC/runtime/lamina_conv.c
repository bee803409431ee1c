/* lamina_conv.c — the 2-D convolutions of lamina_conv.h (its comment describes them), for one instruction set
 * (-DLAMINA_ISA=avx512, ...) and one element type (-DLAMINA_CONV_F64 for double, else float).
 *
 * A runtime unit like lamina_gemm.c: compiled once per set, type and flags and cached, not with every model.c, so a
 * model's own C compiles in a fraction of the time. Only the four entry points are external (hidden in the library);
 * everything else is static. The tuning macros below can be set with --cflags, which reach every unit.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lamina_conv.h"
#include "lamina_math.h" /* lamina_max_pool_stride2_f32, for the pools the direct kernels write */

#ifndef LAMINA_ISA
#error "lamina_conv.c is compiled for one instruction set: -DLAMINA_ISA=..."
#endif

/* Elements of columns one chunk of images may take (16 MiB of floats). */
#ifndef LAMINA_CONV_COLUMN_BUDGET
#define LAMINA_CONV_COLUMN_BUDGET ((int64_t)1 << 22)
#endif
/* The direct kernel: vector width, output channels per block, and the convolutions it takes. */
#ifndef LAMINA_CONV_VBYTES
#define LAMINA_CONV_VBYTES LAMINA_VECTOR_BYTES /* lamina_model.h */
#endif
#ifndef LAMINA_CONV_DIRECT_BLOCK
#define LAMINA_CONV_DIRECT_BLOCK 4 /* the weight gradient's four named sums */
#endif
#define LAMINA_CONV_DIRECT_ROWS_MAX 8 /* output channels the forward kernel keeps in registers at once */
#ifndef LAMINA_CONV_DIRECT_MAX_CHANNELS
#define LAMINA_CONV_DIRECT_MAX_CHANNELS 8
#endif
#ifndef LAMINA_CONV_DIRECT_MAX_TAPS
#define LAMINA_CONV_DIRECT_MAX_TAPS 64
#endif
/* The channel kernel: positions per register tile and the taps it takes; the work (multiply-adds) from which the
   direct kernels use the threads. LAMINA_CONV_CHANNEL_KERNEL=0 vetoes it (the GEMM then runs); LAMINA_CONV_FORCE_CHANNEL_KERNEL=1
   runs it for every forward convolution it takes, whatever the schedule chose (both for tests). */
#ifndef LAMINA_CONV_CHANNEL_TILE
#define LAMINA_CONV_CHANNEL_TILE 8
#endif
#ifndef LAMINA_CONV_CHANNEL_KERNEL
#define LAMINA_CONV_CHANNEL_KERNEL 1
#endif
/* The channel kernel's positions per tile for a plane of P output positions: LAMINA_CONV_CHANNEL_TILE, or one fewer
   when that computes at least 5% fewer positions (a partial tile costs a full one). A 7x7 map is then 7 tiles of 7
   rather than 7 tiles of 8 with one position in the last: ResNet-50's 512 -> 512 3x3 at stride 2 to 7x7 (Zen 4)
   1334 -> 1196 us on two cores, 2538 -> 2171 us on one. A pooled band keeps the full tile (its planes are large). */
static inline int64_t lamina_conv_channel_tile(int64_t P, int pooled) {
  const int64_t R = LAMINA_CONV_CHANNEL_TILE;
  if (pooled || R < 2) return R;
  const int64_t full = (P + R - 1) / R * R, shorter = (P + R - 2) / (R - 1) * (R - 1);
  return shorter * 20 < full * 19 ? R - 1 : R;
}
#ifndef LAMINA_CONV_DEPTHWISE_KERNEL
#define LAMINA_CONV_DEPTHWISE_KERNEL 1 /* 0: the schedule's depthwise choice falls back to the other kernels */
#endif
#ifndef LAMINA_CONV_DEPTHWISE_PARALLEL_WORK
/* The depthwise kernel's threshold: its multiply-adds run at 5-30 GFLOP/s (per-channel copies and epilogues), so
   2^15 of them are already about 5 us on one core (ShuffleNet's 7x7 layers, 240k, took ~50 us on the caller). */
#define LAMINA_CONV_DEPTHWISE_PARALLEL_WORK ((int64_t)1 << 15)
#endif
#ifndef LAMINA_CONV_GROUPS_TOGETHER
#define LAMINA_CONV_GROUPS_TOGETHER 1 /* 0: one pool run per group (each GEMM split over the threads) */
#endif
/* 0: the channel kernel always splits the threads by positions (bands of tiles), never by output channels. */
#ifndef LAMINA_CONV_CHANNEL_SPLIT
#define LAMINA_CONV_CHANNEL_SPLIT 1
#endif
#ifndef LAMINA_CONV_FORCE_CHANNEL_KERNEL
#define LAMINA_CONV_FORCE_CHANNEL_KERNEL 0
#endif
#ifndef LAMINA_CONV_CHANNEL_MAX_TAPS
#define LAMINA_CONV_CHANNEL_MAX_TAPS 4608 /* ConvolutionSchedule.directChannelsMaxTaps */
#endif
/* Bytes of packed weights and offset tables the channel kernel keeps on the stack rather than allocating per call. */
#ifndef LAMINA_CONV_CHANNEL_STACK_BYTES
#define LAMINA_CONV_CHANNEL_STACK_BYTES 16384
#endif
#ifndef LAMINA_CONV_DIRECT_PARALLEL_WORK
#define LAMINA_CONV_DIRECT_PARALLEL_WORK ((int64_t)1 << 18) /* both direct kernels; about 5 us on one core */
#endif
/* A weight gradient with fewer elements per group than this splits the images over the threads. */
#ifndef LAMINA_CONV_SPLIT_IMAGES_BELOW
#define LAMINA_CONV_SPLIT_IMAGES_BELOW ((int64_t)1 << 15)
#endif
/* Elements of im2col / col2im work below which a pass runs on the calling thread. */
#ifndef LAMINA_CONV_PARALLEL_WORK
#define LAMINA_CONV_PARALLEL_WORK ((int64_t)1 << 15)
#endif

/* A store of the first n lanes of a vector (n below its length): masked where the instruction set has it. */
#if LAMINA_CONV_VBYTES == 64 && defined(__AVX512F__)
#include <immintrin.h>
#define LAMINA_CONV_STORE_FIRST_f32(p, v, n) _mm512_mask_storeu_ps((p), (__mmask16)((1u << (n)) - 1u), (__m512)(v));
#define LAMINA_CONV_STORE_FIRST_f64(p, v, n) _mm512_mask_storeu_pd((p), (__mmask8)((1u << (n)) - 1u), (__m512d)(v));
#elif LAMINA_CONV_VBYTES == 32 && defined(__AVX2__)
#include <immintrin.h>
#define LAMINA_CONV_STORE_FIRST_f32(p, v, n) \
  _mm256_maskstore_ps((p), _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)), (__m256)(v));
#define LAMINA_CONV_STORE_FIRST_f64(p, v, n) \
  _mm256_maskstore_pd((p), _mm256_cmpgt_epi64(_mm256_set1_epi64x((n)), _mm256_setr_epi64x(0, 1, 2, 3)), (__m256d)(v));
#else
#define LAMINA_CONV_STORE_FIRST_f32(p, v, n) for (int64_t l_ = 0; l_ < (n); l_++) (p)[l_] = (v)[l_];
#define LAMINA_CONV_STORE_FIRST_f64(p, v, n) for (int64_t l_ = 0; l_ < (n); l_++) (p)[l_] = (v)[l_];
#endif

/* The channel kernel's full tile (8 positions x 16 channels of f32 with AVX-512) to its 16 channel planes: a
   transpose in registers (in-lane unpacks and shuffles, then one two-source permute per row) and 16 stores of 8
   floats, instead of 128 scalar stores; a tile of 7 positions (its 8th row a copy) stores 7 of each 8 under a
   mask. Other tiles and types store element by element. */
#if LAMINA_CONV_VBYTES == 64 && defined(__AVX512F__) && defined(__AVX512DQ__) && LAMINA_CONV_CHANNEL_TILE == 8
#define LAMINA_CONV_HAS_TILE_TRANSPOSE_f32 1
static inline __attribute__((always_inline)) void lamina_conv_store_tile_f32(float* out, int64_t P, const __m512* rows,
                                                                             int positions) {
  const __m512 t0 = _mm512_unpacklo_ps(rows[0], rows[1]), t1 = _mm512_unpackhi_ps(rows[0], rows[1]);
  const __m512 t2 = _mm512_unpacklo_ps(rows[2], rows[3]), t3 = _mm512_unpackhi_ps(rows[2], rows[3]);
  const __m512 t4 = _mm512_unpacklo_ps(rows[4], rows[5]), t5 = _mm512_unpackhi_ps(rows[4], rows[5]);
  const __m512 t6 = _mm512_unpacklo_ps(rows[6], rows[7]), t7 = _mm512_unpackhi_ps(rows[6], rows[7]);
  /* In each 128-bit lane (4 channels): u0..u3 hold positions 0-3 of channel 0..3 of the lane, u4..u7 positions 4-7. */
  const __m512 u0 = _mm512_shuffle_ps(t0, t2, 0x44), u1 = _mm512_shuffle_ps(t0, t2, 0xEE);
  const __m512 u2 = _mm512_shuffle_ps(t1, t3, 0x44), u3 = _mm512_shuffle_ps(t1, t3, 0xEE);
  const __m512 u4 = _mm512_shuffle_ps(t4, t6, 0x44), u5 = _mm512_shuffle_ps(t4, t6, 0xEE);
  const __m512 u6 = _mm512_shuffle_ps(t5, t7, 0x44), u7 = _mm512_shuffle_ps(t5, t7, 0xEE);
  /* Rows of channels c (low 256 bits) and c + 8 (high): lanes 0 and 2 of the pair for c < 4, lanes 1 and 3 above. */
  const __m512i even = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
  const __m512i odd = _mm512_setr_epi32(4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
  const __m512 low[4] = {u0, u1, u2, u3}, high[4] = {u4, u5, u6, u7};
  for (int c = 0; c < 4; c++) {
    const __m512 first = _mm512_permutex2var_ps(low[c], even, high[c]);
    const __m512 second = _mm512_permutex2var_ps(low[c], odd, high[c]);
    if (positions == 8) {
      _mm256_storeu_ps(out + c * P, _mm512_castps512_ps256(first));
      _mm256_storeu_ps(out + (c + 8) * P, _mm512_extractf32x8_ps(first, 1));
      _mm256_storeu_ps(out + (c + 4) * P, _mm512_castps512_ps256(second));
      _mm256_storeu_ps(out + (c + 12) * P, _mm512_extractf32x8_ps(second, 1));
    } else {
      const __mmask8 lanes = (__mmask8)((1u << positions) - 1);
      _mm256_mask_storeu_ps(out + c * P, lanes, _mm512_castps512_ps256(first));
      _mm256_mask_storeu_ps(out + (c + 8) * P, lanes, _mm512_extractf32x8_ps(first, 1));
      _mm256_mask_storeu_ps(out + (c + 4) * P, lanes, _mm512_castps512_ps256(second));
      _mm256_mask_storeu_ps(out + (c + 12) * P, lanes, _mm512_extractf32x8_ps(second, 1));
    }
  }
}
#define LAMINA_CONV_STORE_TILE_f32(out, P, sums, positions) \
  lamina_conv_store_tile_f32((out), (P), (const __m512*)(sums), (positions));
#else
#define LAMINA_CONV_HAS_TILE_TRANSPOSE_f32 0
#define LAMINA_CONV_STORE_TILE_f32(out, P, sums, positions) ;
#endif
#define LAMINA_CONV_HAS_TILE_TRANSPOSE_f64 0
#define LAMINA_CONV_STORE_TILE_f64(out, P, sums, positions) ;

/* The channel kernel's pool of a block without NaNs: one VMAXPS per element, where max_pool2d's rule (a later element
   replaces the maximum when larger or NaN) takes two compares, their union and a blend; VMAXPS returns its second
   operand when either is a NaN, so it would lose them. Whether a block has a NaN the kernel finds as it stores its
   tiles: a sum of each tile's sums (added on the pipes the multiply-adds leave free) is NaN when one of them is (an
   infinity or an overflow can make it NaN too: that block only takes the rule). AVX-512 f32; elsewhere the rule. */
#if LAMINA_CONV_VBYTES == 64 && defined(__AVX512F__)
#define LAMINA_CONV_HAS_FAST_MAX_f32 1
#define LAMINA_CONV_FAST_MAX_f32(m, e) ((lamina_conv_vector_f32)_mm512_max_ps((__m512)(m), _mm512_loadu_ps(e)))
#define LAMINA_CONV_ANY_NAN_f32(s) (_mm512_cmp_ps_mask((__m512)(s), (__m512)(s), _CMP_UNORD_Q) != 0)
#else
#define LAMINA_CONV_HAS_FAST_MAX_f32 0
#define LAMINA_CONV_FAST_MAX_f32(m, e) ((void)(e), (m))
#define LAMINA_CONV_ANY_NAN_f32(s) ((void)(s), 1)
#endif
#define LAMINA_CONV_HAS_FAST_MAX_f64 0
#define LAMINA_CONV_FAST_MAX_f64(m, e) ((void)(e), (m))
#define LAMINA_CONV_ANY_NAN_f64(s) ((void)(s), 1)

/* Integer vectors as wide as the kernels' vectors, for the channel kernel's rectifier (lamina_conv_rectify_*). */
typedef int32_t lamina_conv_bits_f32 __attribute__((vector_size(LAMINA_CONV_VBYTES)));
typedef int64_t lamina_conv_bits_f64 __attribute__((vector_size(LAMINA_CONV_VBYTES)));

/* An input row split into its two stride phases for the depthwise kernel: even_to[q] = from[2 q] for q < evens,
   odd_to[q] = from[2 q + 1] for q < odds. With AVX-512 f32, 16 of each from two loads and two two-source permutes
   (element by element, with a loop per phase, ShuffleNet's stride-2 depthwise layers spent most of their time
   here); the last block's loads and stores are masked, so nothing past the row's used elements is touched. */
#if defined(__AVX512F__)
#define LAMINA_CONV_SPLIT_PHASES_f32(even_to, evens, odd_to, odds, from) \
  lamina_conv_split_phases_f32((even_to), (evens), (odd_to), (odds), (from));
static inline void lamina_conv_split_phases_f32(float* even_to, int64_t evens, float* odd_to, int64_t odds,
                                                const float* from) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  for (int64_t q = 0; q < evens || q < odds; q += 16) {
    const int64_t e = evens - q < 0 ? 0 : evens - q > 16 ? 16 : evens - q;
    const int64_t o = odds - q < 0 ? 0 : odds - q > 16 ? 16 : odds - q;
    /* Elements of the row from 2q on that this block reads. */
    const int64_t used = 2 * e - 1 > 2 * o ? 2 * e - 1 : 2 * o;
    __m512 low, high;
    if (used == 32) {
      low = _mm512_loadu_ps(from + 2 * q);
      high = _mm512_loadu_ps(from + 2 * q + 16);
    } else {
      low = _mm512_maskz_loadu_ps((__mmask16)(used >= 16 ? 0xFFFF : (1u << used) - 1), from + 2 * q);
      high = _mm512_maskz_loadu_ps((__mmask16)(used > 16 ? (1u << (used - 16)) - 1 : 0), from + 2 * q + 16);
    }
    _mm512_mask_storeu_ps(even_to + q, (__mmask16)((1u << e) - 1), _mm512_permutex2var_ps(low, even, high));
    _mm512_mask_storeu_ps(odd_to + q, (__mmask16)((1u << o) - 1), _mm512_permutex2var_ps(low, odd, high));
  }
}
#else
#define LAMINA_CONV_SPLIT_PHASES_f32(even_to, evens, odd_to, odds, from)   \
  {                                                                         \
    for (int64_t q_ = 0; q_ < (evens); q_++) (even_to)[q_] = (from)[2 * q_]; \
    for (int64_t q_ = 0; q_ < (odds); q_++) (odd_to)[q_] = (from)[2 * q_ + 1]; \
  }
#endif
#define LAMINA_CONV_SPLIT_PHASES_f64(even_to, evens, odd_to, odds, from)   \
  {                                                                         \
    for (int64_t q_ = 0; q_ < (evens); q_++) (even_to)[q_] = (from)[2 * q_]; \
    for (int64_t q_ = 0; q_ < (odds); q_++) (odd_to)[q_] = (from)[2 * q_ + 1]; \
  }

/* The channel kernel's weights of one vector of output channels, `lanes` rows of K taps, packed to [K][VL] (lanes
   past `lanes` zero): the weights are run-time data, so this runs on every call. With AVX-512 f32, blocks of 16
   channels x 16 taps are transposed in registers (four rounds of 16 unpacks or shuffles), the last block's fewer
   taps loaded under a mask; with AVX2 f32, blocks of 8 x 8 (three rounds of 8); elsewhere element by element. */
#if LAMINA_CONV_VBYTES == 64 && defined(__AVX512F__)
#define LAMINA_CONV_HAS_PACK_TRANSPOSE_f32 1
static inline void lamina_conv_pack_channels_f32(const float* source, int64_t K, int64_t lanes, float* packed) {
  for (int64_t k0 = 0; k0 < K; k0 += 16) {
    const int64_t n = K - k0 < 16 ? K - k0 : 16;
    const __mmask16 taps = (__mmask16)((1u << n) - 1u);
    __m512 r[16], t[16];
    #pragma GCC unroll 16
    for (int o = 0; o < 16; o++) r[o] = o < lanes ? _mm512_maskz_loadu_ps(taps, source + o * K + k0) : _mm512_setzero_ps();
    /* Per 128-bit lane (4 taps): t[2i], t[2i + 1] interleave rows 2i and 2i + 1. */
    #pragma GCC unroll 16
    for (int i = 0; i < 16; i += 2) {
      t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
      t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    /* r[4q + j]: rows 4q..4q + 3 of tap j of each lane. */
    #pragma GCC unroll 16
    for (int q = 0; q < 4; q++) {
      r[4 * q] = _mm512_shuffle_ps(t[4 * q], t[4 * q + 2], 0x44);
      r[4 * q + 1] = _mm512_shuffle_ps(t[4 * q], t[4 * q + 2], 0xEE);
      r[4 * q + 2] = _mm512_shuffle_ps(t[4 * q + 1], t[4 * q + 3], 0x44);
      r[4 * q + 3] = _mm512_shuffle_ps(t[4 * q + 1], t[4 * q + 3], 0xEE);
    }
    /* Lanes of rows 0-7 (t[j], t[4 + j]) and of rows 8-15 (t[8 + j], t[12 + j]), then whole taps: tap 4L + j of
       lane L is (t[j] or t[4 + j]) combined with (t[8 + j] or t[12 + j]). */
    #pragma GCC unroll 16
    for (int j = 0; j < 4; j++) {
      t[j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88);
      t[4 + j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xDD);
      t[8 + j] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88);
      t[12 + j] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xDD);
    }
    #pragma GCC unroll 16
    for (int j = 0; j < 4; j++) {
      r[j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88);
      r[8 + j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0xDD);
      r[4 + j] = _mm512_shuffle_f32x4(t[4 + j], t[12 + j], 0x88);
      r[12 + j] = _mm512_shuffle_f32x4(t[4 + j], t[12 + j], 0xDD);
    }
    #pragma GCC unroll 16
    for (int c = 0; c < 16; c++)
      if (c < n) _mm512_storeu_ps(packed + (k0 + c) * 16, r[c]);
  }
}
#define LAMINA_CONV_PACK_CHANNELS_f32(source, K, lanes, packed) lamina_conv_pack_channels_f32((source), (K), (lanes), (packed));
#elif LAMINA_CONV_VBYTES == 32 && defined(__AVX2__)
#define LAMINA_CONV_HAS_PACK_TRANSPOSE_f32 1
static inline void lamina_conv_pack_channels_f32(const float* source, int64_t K, int64_t lanes, float* packed) {
  const __m256i index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int64_t k0 = 0; k0 < K; k0 += 8) {
    const int64_t n = K - k0 < 8 ? K - k0 : 8;
    const __m256i taps = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), index);
    __m256 r[8], t[8];
    #pragma GCC unroll 16
    for (int o = 0; o < 8; o++) r[o] = o < lanes ? _mm256_maskload_ps(source + o * K + k0, taps) : _mm256_setzero_ps();
    #pragma GCC unroll 16
    for (int i = 0; i < 8; i += 2) {
      t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
      t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    /* r[4h + j]: rows 4h..4h + 3 of tap j of each 128-bit lane. */
    #pragma GCC unroll 16
    for (int h = 0; h < 2; h++) {
      r[4 * h] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0x44);
      r[4 * h + 1] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0xEE);
      r[4 * h + 2] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0x44);
      r[4 * h + 3] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0xEE);
    }
    #pragma GCC unroll 16
    for (int j = 0; j < 4; j++) {
      t[j] = _mm256_permute2f128_ps(r[j], r[4 + j], 0x20);
      t[4 + j] = _mm256_permute2f128_ps(r[j], r[4 + j], 0x31);
    }
    #pragma GCC unroll 16
    for (int c = 0; c < 8; c++)
      if (c < n) _mm256_storeu_ps(packed + (k0 + c) * 8, t[c]);
  }
}
#define LAMINA_CONV_PACK_CHANNELS_f32(source, K, lanes, packed) lamina_conv_pack_channels_f32((source), (K), (lanes), (packed));
#else
#define LAMINA_CONV_HAS_PACK_TRANSPOSE_f32 0
#define LAMINA_CONV_PACK_CHANNELS_f32(source, K, lanes, packed) ;
#endif
#define LAMINA_CONV_HAS_PACK_TRANSPOSE_f64 0
#define LAMINA_CONV_PACK_CHANNELS_f64(source, K, lanes, packed) ;

/* A 2x2 max pool at stride 2 of two rows of f32 with AVX-512: 16 columns of each row per step, the vertical maximum,
   the maximum of each pair of lanes (an in-lane swap), and the even lanes gathered into 8 results; masked loads and
   stores for a short last step. NaN wins, as in max_pool2d (vmaxps alone would return the second operand). */
#if LAMINA_CONV_VBYTES == 64 && defined(__AVX512F__) && defined(__AVX512VL__)
#define LAMINA_CONV_HAS_POOL2_f32 1
static inline __m512 lamina_conv_max_nan_f32(__m512 x, __m512 y) {
  return _mm512_mask_mov_ps(_mm512_max_ps(x, y), _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), x);
}
static inline void lamina_conv_pool2_row_f32(const float* a, const float* b, float* out, int64_t count) {
  const __m512i evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 0, 2, 4, 6, 8, 10, 12, 14);
  for (int64_t j0 = 0; j0 < count; j0 += 8) {
    const int64_t n = count - j0 < 8 ? count - j0 : 8;
    const __mmask16 columns = (__mmask16)((1u << (2 * n)) - 1u);
    const __m512 v = lamina_conv_max_nan_f32(_mm512_maskz_loadu_ps(columns, a + 2 * j0), _mm512_maskz_loadu_ps(columns, b + 2 * j0));
    const __m512 pairs = lamina_conv_max_nan_f32(v, _mm512_permute_ps(v, 0xB1));
    _mm256_mask_storeu_ps(out + j0, (__mmask8)((1u << n) - 1u), _mm512_castps512_ps256(_mm512_permutexvar_ps(evens, pairs)));
  }
}
#define LAMINA_CONV_POOL2_ROW_f32(a, b, out, count) lamina_conv_pool2_row_f32((a), (b), (out), (count));
#else
#define LAMINA_CONV_HAS_POOL2_f32 0
#define LAMINA_CONV_POOL2_ROW_f32(a, b, out, count) ;
#endif
#define LAMINA_CONV_HAS_POOL2_f64 0
#define LAMINA_CONV_POOL2_ROW_f64(a, b, out, count) ;

static inline int64_t lamina_conv_min(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t lamina_conv_max(int64_t a, int64_t b) { return a > b ? a : b; }

/* The first output index o with o * stride + offset >= 0, and the first with o * stride + offset >=
   limit (clamped to [0, count]): the outputs reading inside the input along one axis. */
static inline int64_t lamina_conv_first_inside(int64_t offset, int64_t stride, int64_t limit, int64_t count) {
  /* smallest o >= 0 with o * stride + offset >= limit */
  const int64_t need = limit - offset;
  const int64_t o = need <= 0 ? 0 : (need + stride - 1) / stride;
  return lamina_conv_min(o, count);
}

/* Images per chunk: as many as fit the column budget, at least one. */
static inline int64_t lamina_conv_chunk(const lamina_conv2d_geometry* g) {
  const int64_t per_image = g->in_channels / g->groups * g->kernel_height * g->kernel_width * g->out_height * g->out_width;
  const int64_t chunk = per_image > 0 ? LAMINA_CONV_COLUMN_BUDGET / per_image : g->batch;
  return lamina_conv_max(1, lamina_conv_min(chunk, g->batch));
}

/* Tasks for a pass over `rows` rows of `work` elements in all: one on the caller when small. */
static inline int64_t lamina_conv_tasks(lamina_pool* pool, int64_t rows, int64_t work) {
  if (!pool || work < LAMINA_CONV_PARALLEL_WORK) return 1;
  return lamina_conv_min(rows, (int64_t)lamina_pool_threads(pool) * 4);
}

/* Splits rows [0, rows) evenly over `tasks`: the range of task t. */
static inline void lamina_conv_task_range(int64_t rows, int64_t tasks, int64_t task, int64_t* begin, int64_t* end) {
  *begin = rows * task / tasks;
  *end = rows * (task + 1) / tasks;
}

/* Calls `epilogue` on positions [first, first + count) of plane `plane` (an (image, channel) pair)
   of an NCHW result, seen as the matrix [planes * height, width]: a partial first row, whole rows in
   one call, a partial last row. */
static inline void lamina_conv_plane_epilogue(const lamina_gemm_epilogue* epilogue, void* y, int64_t height, int64_t width,
                                              int64_t plane, int64_t first, int64_t count) {
  if (epilogue->planes) {
    epilogue->apply(epilogue->arg, y, height * width, plane, first, 1, count);
    return;
  }
  int64_t position = first;
  const int64_t end = first + count;
  const int64_t row_base = plane * height;
  if (position % width != 0 && position < end) {
    const int64_t row = position / width, column = position % width;
    const int64_t n = lamina_conv_min(width - column, end - position);
    epilogue->apply(epilogue->arg, y, width, row_base + row, column, 1, n);
    position += n;
  }
  const int64_t whole = (end - position) / width;
  if (whole > 0) {
    epilogue->apply(epilogue->arg, y, width, row_base + position / width, 0, whole, width);
    position += whole * width;
  }
  if (position < end) epilogue->apply(epilogue->arg, y, width, row_base + position / width, 0, 1, end - position);
}

/* One row of the columns (c, i, j) for the packers: its input channel, the input row and column of output (0, 0)'s
   tap, and the output columns [first, end) whose tap lies inside the input (the others read padding). */
typedef struct lamina_conv_tap {
  int64_t channel, top, left, first, end;
} lamina_conv_tap;
static inline lamina_conv_tap lamina_conv_tap_of(const lamina_conv2d_geometry* g, int64_t tap) {
  const int64_t kh = g->kernel_height, kw = g->kernel_width, i = tap / kw % kh, j = tap % kw;
  lamina_conv_tap t = {tap / (kh * kw), i * g->dilation_height - g->pad_top, j * g->dilation_width - g->pad_left, 0, 0};
  t.first = lamina_conv_first_inside(t.left, g->stride_width, 0, g->out_width);
  t.end = lamina_conv_max(t.first, lamina_conv_first_inside(t.left, g->stride_width, g->in_width, g->out_width));
  return t;
}

/* The packers' walk over output positions: the next output row (of the next image after the last row). */
static inline void lamina_conv_next_row(int64_t* ow, int64_t* oh, int64_t* image, int64_t out_height) {
  *ow = 0;
  if (++*oh == out_height) {
    *oh = 0;
    ++*image;
  }
}

/* Positions of a packed block's column line (lamina_conv_pack_short_rows_*): the GEMM's NC of float (4 KiB). */
#ifndef LAMINA_CONV_LINE
#define LAMINA_CONV_LINE 1024
#endif

#include "lamina_winograd.h" /* Winograd F(m x m, 3 x 3) */

#define LAMINA_CONV_DEFINE(T, S, GEMM, PACKER_GEMM, PACK_A, PACKED_A_GEMM)                                                                                    \
                                                                                                                            \
  /* The max pool of g's windows over `rows` rows of one result plane (row r at block + r * width), pooled rows          \
     [0, pooled_rows) to out (rows PW apart). A later element replaces the maximum when larger or NaN, as max_pool2d. */   \
  static inline void lamina_conv_max_pool_rows_##S(const lamina_conv2d_geometry* g, const T* block, int64_t width,       \
                                                   int64_t pooled_rows, T* out) {                                        \
    const int64_t PW = lamina_conv_pooled_width(g), kh = g->pool_height, kw = g->pool_width;                              \
    const int64_t sh = g->pool_stride_height, sw = g->pool_stride_width;                                                  \
    if (LAMINA_CONV_HAS_POOL2_##S && kh == 2 && kw == 2 && sh == 2 && sw == 2) {                                          \
      for (int64_t i = 0; i < pooled_rows; i++)                                                                           \
        LAMINA_CONV_POOL2_ROW_##S(block + 2 * i * width, block + (2 * i + 1) * width, out + i * PW, PW)                   \
      return;                                                                                                             \
    }                                                                                                                     \
    if (kh == 2 && kw == 2 && sh == 2 && sw == 2 && PW >= 8) {                                                            \
      /* Blocks of 8 columns, the last overlapping the one before (stores only): one vector each, no remainder loop. */  \
      for (int64_t i = 0; i < pooled_rows; i++) {                                                                         \
        const T* a = block + 2 * i * width;                                                                               \
        const T* b = a + width;                                                                                           \
        T* o = out + i * PW;                                                                                              \
        for (int64_t j0 = 0; j0 < PW; j0 += 8) {                                                                          \
          const int64_t start = j0 + 8 <= PW ? j0 : PW - 8;                                                               \
          _Pragma("omp simd") for (int64_t j = start; j < start + 8; j++) {                                               \
            T v = a[2 * j];                                                                                               \
            v = (a[2 * j + 1] > v || a[2 * j + 1] != a[2 * j + 1]) ? a[2 * j + 1] : v;                                    \
            v = (b[2 * j] > v || b[2 * j] != b[2 * j]) ? b[2 * j] : v;                                                    \
            v = (b[2 * j + 1] > v || b[2 * j + 1] != b[2 * j + 1]) ? b[2 * j + 1] : v;                                    \
            o[j] = v;                                                                                                     \
          }                                                                                                               \
        }                                                                                                                 \
      }                                                                                                                   \
      return;                                                                                                             \
    }                                                                                                                     \
    if (kh == 2 && kw == 2 && sh == 2 && sw == 2) {                                                                       \
      for (int64_t i = 0; i < pooled_rows; i++) {                                                                         \
        const T* a = block + 2 * i * width;                                                                               \
        const T* b = a + width;                                                                                           \
        for (int64_t j = 0; j < PW; j++) {                                                                                \
          T v = a[2 * j];                                                                                                 \
          v = (a[2 * j + 1] > v || a[2 * j + 1] != a[2 * j + 1]) ? a[2 * j + 1] : v;                                      \
          v = (b[2 * j] > v || b[2 * j] != b[2 * j]) ? b[2 * j] : v;                                                      \
          v = (b[2 * j + 1] > v || b[2 * j + 1] != b[2 * j + 1]) ? b[2 * j + 1] : v;                                      \
          out[i * PW + j] = v;                                                                                            \
        }                                                                                                                 \
      }                                                                                                                   \
      return;                                                                                                             \
    }                                                                                                                     \
    if (width <= LAMINA_CONV_LINE) {                                                                                      \
      /* Any other window: the window rows' maximum per column into a line (contiguous vectors), then each window's     \
         over its columns of the line (at stride 2 with 2 or 3 columns, the permutes of lamina_math.h under AVX-512).    \
         SqueezeNet's 3x3 stride-2 pool of its first layer, window by window, cost more than the convolution. */         \
      enum { VB = LAMINA_CONV_VBYTES / sizeof(T) };                                                                       \
      _Alignas(64) T line[LAMINA_CONV_LINE];                                                                              \
      for (int64_t i = 0; i < pooled_rows; i++) {                                                                         \
        const T* top = block + i * sh * width;                                                                            \
        const T* second = kh > 1 ? top + width : top;                                                                     \
        const T* third = kh > 2 ? top + 2 * width : second;                                                               \
        T* o = out + i * PW;                                                                                              \
        if (sizeof(T) == 4 && sw == 2 && (kw == 2 || kw == 3) && kh <= 3 &&                                               \
            lamina_max_pool_rows_stride2_f32((const float*)top, (const float*)second, (const float*)third, (int)kh,       \
                                             width, (int)kw, (float*)o, PW))                                              \
          continue;                                                                                                       \
        /* Up to three rows in one pass, in blocks of one vector, the last overlapping the one before (stores only). */   \
        if (width >= VB && kh <= 3) {                                                                                     \
          for (int64_t c0 = 0; c0 < width; c0 += VB) {                                                                    \
            const int64_t start = c0 + VB <= width ? c0 : width - VB;                                                     \
            _Pragma("omp simd") for (int64_t c = start; c < start + VB; c++) {                                            \
              T v = top[c];                                                                                               \
              v = (second[c] > v || second[c] != second[c]) ? second[c] : v;                                              \
              v = (third[c] > v || third[c] != third[c]) ? third[c] : v;                                                  \
              line[c] = v;                                                                                                \
            }                                                                                                             \
          }                                                                                                               \
        } else {                                                                                                          \
          memcpy(line, top, (size_t)width * sizeof(T));                                                                   \
          for (int64_t a = 1; a < kh; a++) {                                                                              \
            const T* row = top + a * width;                                                                               \
            _Pragma("omp simd") for (int64_t c = 0; c < width; c++) line[c] = (row[c] > line[c] || row[c] != row[c]) ? row[c] : line[c]; \
          }                                                                                                               \
        }                                                                                                                 \
        if (sizeof(T) == 4 && sw == 2 && (kw == 2 || kw == 3) &&                                                          \
            lamina_max_pool_stride2_f32((const float*)line, width, (int)kw, (float*)o, PW))                               \
          continue;                                                                                                       \
        _Pragma("omp simd") for (int64_t j = 0; j < PW; j++) o[j] = line[j * sw];                                         \
        for (int64_t b = 1; b < kw; b++)                                                                                  \
          _Pragma("omp simd") for (int64_t j = 0; j < PW; j++) {                                                          \
            const T e = line[j * sw + b];                                                                                 \
            o[j] = (e > o[j] || e != e) ? e : o[j];                                                                       \
          }                                                                                                               \
      }                                                                                                                   \
      return;                                                                                                             \
    }                                                                                                                     \
    for (int64_t i = 0; i < pooled_rows; i++)                                                                             \
      for (int64_t j = 0; j < PW; j++) {                                                                                  \
        const T* window = block + i * sh * width + j * sw;                                                                \
        T v = window[0];                                                                                                  \
        for (int64_t a = 0; a < kh; a++)                                                                                  \
          for (int64_t b = 0; b < kw; b++) {                                                                              \
            const T e = window[a * width + b];                                                                            \
            v = (e > v || e != e) ? e : v;                                                                                \
          }                                                                                                               \
        out[i * PW + j] = v;                                                                                              \
      }                                                                                                                   \
  }                                                                                                                       \
                                                                                                                          \
  /* The epilogue on pooled rows [pooled_first, pooled_end) of y's `channels` planes from `first_plane`. */               \
  static inline void lamina_conv_pooled_epilogue_##S(const lamina_conv2d_geometry* g, int64_t channels,                  \
                                                     int64_t first_plane, int64_t pooled_first, int64_t pooled_end,      \
                                                     T* y, const lamina_gemm_epilogue* epilogue) {                       \
    const int64_t PH = lamina_conv_pooled_height(g), PW = lamina_conv_pooled_width(g);                                    \
    if (!epilogue) return;                                                                                                \
    /* Whole planes are one run of rows: one call. */                                                                     \
    if (epilogue->planes)                                                                                                 \
      epilogue->apply(epilogue->arg, y, PH * PW, first_plane, pooled_first * PW, channels, (pooled_end - pooled_first) * PW); \
    else if (pooled_first == 0 && pooled_end == PH)                                                                       \
      epilogue->apply(epilogue->arg, y, PW, first_plane * PH, 0, channels * PH, PW);                                      \
    else                                                                                                                  \
      for (int64_t c = 0; c < channels; c++)                                                                              \
        lamina_conv_plane_epilogue(epilogue, y, PH, PW, first_plane + c, pooled_first * PW, (pooled_end - pooled_first) * PW); \
  }                                                                                                                       \
                                                                                                                          \
  /* Pools `channels` planes of a block holding rows [first_row, ...) of one (image, group)'s result (planes           \
     block_plane apart) into pooled rows [pooled_first, pooled_end) of y's planes from `first_plane`, then runs the      \
     epilogue on them. */                                                                                                 \
  static inline void lamina_conv_pool_block_##S(const lamina_conv2d_geometry* g, const T* block, int64_t block_plane,     \
                                                int64_t channels, int64_t first_plane, int64_t pooled_first,             \
                                                int64_t pooled_end, T* y, const lamina_gemm_epilogue* epilogue) {        \
    const int64_t PH = lamina_conv_pooled_height(g), PW = lamina_conv_pooled_width(g);                                    \
    for (int64_t c = 0; c < channels; c++)                                                                                \
      lamina_conv_max_pool_rows_##S(g, block + c * block_plane, g->out_width, pooled_end - pooled_first,                 \
                                    y + (first_plane + c) * PH * PW + pooled_first * PW);                                 \
    lamina_conv_pooled_epilogue_##S(g, channels, first_plane, pooled_first, pooled_end, y, epilogue);                     \
  }                                                                                                                       \
                                                                                                                          \
  /* im2col: columns[(c, i, j), column0 + position] for channels [c0, c1) of one image's group (x: its first channel). */ \
  static inline void lamina_conv_im2col_##S(const lamina_conv2d_geometry* g, const T* x, int64_t c0, int64_t c1, T* columns,     \
                                     int64_t ld, int64_t column0) {                                                        \
    const int64_t H = g->in_height, W = g->in_width, OH = g->out_height, OW = g->out_width;                               \
    const int64_t kh = g->kernel_height, kw = g->kernel_width, sh = g->stride_height, sw = g->stride_width;              \
    for (int64_t c = c0; c < c1; c++) {                                                                                    \
      const T* plane = x + c * H * W;                                                                                      \
      for (int64_t i = 0; i < kh; i++) {                                                                                   \
        const int64_t top = i * g->dilation_height - g->pad_top;                                                           \
        for (int64_t j = 0; j < kw; j++) {                                                                                 \
          const int64_t left = j * g->dilation_width - g->pad_left;                                                        \
          T* row = columns + ((c * kh + i) * kw + j) * ld + column0;                                                       \
          /* Output columns [ow0, ow1) read inside the input; the others read padding. */                                  \
          const int64_t ow0 = lamina_conv_first_inside(left, sw, 0, OW);                                                   \
          const int64_t ow1 = lamina_conv_max(ow0, lamina_conv_first_inside(left, sw, W, OW));                             \
          for (int64_t oh = 0; oh < OH; oh++) {                                                                            \
            T* out = row + oh * OW;                                                                                        \
            const int64_t ih = oh * sh + top;                                                                              \
            if (ih < 0 || ih >= H) {                                                                                       \
              memset(out, 0, (size_t)OW * sizeof(T));                                                                      \
              continue;                                                                                                    \
            }                                                                                                              \
            const T* in = plane + ih * W; /* input column ow * sw + left */                                                \
            for (int64_t ow = 0; ow < ow0; ow++) out[ow] = 0;                                                              \
            if (sw == 1) {                                                                                                 \
              const T* shifted = in + left; /* a short row: a loop, not a call to memcpy */                               \
              _Pragma("omp simd") for (int64_t ow = ow0; ow < ow1; ow++) out[ow] = shifted[ow];                            \
            } else {                                                                                                       \
              for (int64_t ow = ow0; ow < ow1; ow++) out[ow] = in[ow * sw + left];                                         \
            }                                                                                                              \
            for (int64_t ow = ow1; ow < OW; ow++) out[ow] = 0;                                                             \
          }                                                                                                                \
        }                                                                                                                  \
      }                                                                                                                    \
    }                                                                                                                      \
  }                                                                                                                        \
                                                                                                                            \
  /* col2im: adds columns[(c, i, j), column0 + position] back into one image's group (dx: its first channel), for         \
     channels [c0, c1), after clearing them. */                                                                           \
  static inline void lamina_conv_col2im_##S(const lamina_conv2d_geometry* g, const T* columns, int64_t ld, int64_t column0,       \
                                     int64_t c0, int64_t c1, T* dx) {                                                      \
    const int64_t H = g->in_height, W = g->in_width, OH = g->out_height, OW = g->out_width;                               \
    const int64_t kh = g->kernel_height, kw = g->kernel_width, sh = g->stride_height, sw = g->stride_width;              \
    for (int64_t c = c0; c < c1; c++) {                                                                                    \
      T* plane = dx + c * H * W;                                                                                           \
      memset(plane, 0, (size_t)(H * W) * sizeof(T));                                                                       \
      for (int64_t i = 0; i < kh; i++) {                                                                                   \
        const int64_t top = i * g->dilation_height - g->pad_top;                                                           \
        for (int64_t j = 0; j < kw; j++) {                                                                                 \
          const int64_t left = j * g->dilation_width - g->pad_left;                                                        \
          const T* row = columns + ((c * kh + i) * kw + j) * ld + column0;                                                 \
          const int64_t ow0 = lamina_conv_first_inside(left, sw, 0, OW);                                                   \
          const int64_t ow1 = lamina_conv_max(ow0, lamina_conv_first_inside(left, sw, W, OW));                             \
          for (int64_t oh = 0; oh < OH; oh++) {                                                                            \
            const int64_t ih = oh * sh + top;                                                                              \
            if (ih < 0 || ih >= H) continue;                                                                               \
            const T* in = row + oh * OW;                                                                                   \
            T* out = plane + ih * W; /* input column ow * sw + left */                                                     \
            if (sw == 1) {                                                                                                 \
              T* shifted = out + left;                                                                                     \
              _Pragma("omp simd") for (int64_t ow = ow0; ow < ow1; ow++) shifted[ow] += in[ow];                            \
            } else {                                                                                                       \
              for (int64_t ow = ow0; ow < ow1; ow++) out[ow * sw + left] += in[ow];                                        \
            }                                                                                                              \
          }                                                                                                                \
        }                                                                                                                  \
      }                                                                                                                    \
    }                                                                                                                      \
  }                                                                                                                        \
                                                                                                                            \
  /* The columns of one group of a chunk of images (im2col), packed by the GEMM's B packer straight from the input         \
     into its panels (lamina_gemm_b_packer): column j of the chunk is image j / P, output position j % P; row              \
     (c, i, j) of the K rows is the input channel c of the group and the kernel tap (i, j). No column matrix is            \
     stored: one pass over the input per block instead of im2col's write of K x P and the GEMM's read back. */             \
  typedef struct lamina_conv_columns_##S {                                                                                 \
    const lamina_conv2d_geometry* g;                                                                                       \
    const T* x; /* the chunk's first image, at the group's first channel */                                                \
  } lamina_conv_columns_##S;                                                                                               \
                                                                                                                           \
  /* out[0, length) of a tap's row: zeros before lo and from hi, in[(o + u) * sw] between (in: the input row at the   \
     tap's column offset). */                                                                                             \
  static inline void lamina_conv_gather_##S(T* out, const T* in, int64_t o, int64_t lo, int64_t hi, int64_t length,     \
                                            int64_t sw) {                                                                \
    for (int64_t u = 0; u < lo; u++) out[u] = 0;                                                                           \
    if (sw == 1) {                                                                                                         \
      const T* from = in + o;                                                                                              \
      _Pragma("omp simd") for (int64_t u = lo; u < hi; u++) out[u] = from[u];                                              \
    } else if (sw == 2) {                                                                                                  \
      /* Every other element: the phase split's vector gather (the scalar loop took a quarter of ResNet-50's stride-2     \
         3x3 layers). */                                                                                                   \
      if (hi > lo) LAMINA_CONV_SPLIT_PHASES_##S(out + lo, hi - lo, out, 0, in + (o + lo) * 2)                              \
    } else {                                                                                                               \
      for (int64_t u = lo; u < hi; u++) out[u] = in[(o + u) * sw];                                                         \
    }                                                                                                                      \
    for (int64_t u = hi; u < length; u++) out[u] = 0;                                                                      \
  }                                                                                                                        \
                                                                                                                           \
  /* The packer for output rows shorter than a panel row (a 28x28 or smaller map: its runs are mostly split between     \
     panels): each tap's row of the block is gathered run by run into a line, then copied into the panels a panel      \
     row at a time. */                                                                                                    \
  static inline void lamina_conv_pack_short_rows_##S(const lamina_conv_columns_##S* columns, int64_t p0, int64_t kc,     \
                                                     int64_t j0, int64_t nc, int64_t nr, T* packed) {                    \
    const lamina_conv2d_geometry* g = columns->g;                                                                          \
    const int64_t H = g->in_height, W = g->in_width, OH = g->out_height, OW = g->out_width, P = OH * OW;                   \
    const int64_t sh = g->stride_height, sw = g->stride_width;                                                             \
    const int64_t image_size = g->in_channels * H * W, panel_size = nr * kc;                                               \
    _Alignas(64) T line[LAMINA_CONV_LINE];                                                                                 \
    for (int64_t p = 0; p < kc; p++) {                                                                                     \
      const lamina_conv_tap t = lamina_conv_tap_of(g, p0 + p);                                                             \
      int64_t image = j0 / P, oh = j0 % P / OW, ow = j0 % OW;                                                              \
      for (int64_t n = 0; n < nc;) {                                                                                       \
        const int64_t run = lamina_conv_min(OW - ow, nc - n);                                                              \
        const int64_t ih = oh * sh + t.top;                                                                                \
        const int inside = ih >= 0 && ih < H;                                                                              \
        const T* in = columns->x + image * image_size + (t.channel * H + (inside ? ih : 0)) * W + t.left;                  \
        const int64_t lo = inside ? lamina_conv_min(run, lamina_conv_max(0, t.first - ow)) : run;                          \
        const int64_t hi = inside ? lamina_conv_max(lo, lamina_conv_min(run, t.end - ow)) : run;                           \
        lamina_conv_gather_##S(line + n, in, ow, lo, hi, run, sw);                                                         \
        n += run;                                                                                                          \
        lamina_conv_next_row(&ow, &oh, &image, OH);                                                                        \
      }                                                                                                                    \
      T* panel = packed + p * nr;                                                                                          \
      int64_t q = 0;                                                                                                       \
      for (; q + nr <= nc; q += nr, panel += panel_size) memcpy(panel, line + q, (size_t)nr * sizeof(T));                  \
      if (q < nc) {                                                                                                        \
        memcpy(panel, line + q, (size_t)(nc - q) * sizeof(T));                                                             \
        for (int64_t r = nc - q; r < nr; r++) panel[r] = 0;                                                                \
      }                                                                                                                    \
    }                                                                                                                      \
  }                                                                                                                        \
                                                                                                                           \
  static inline void lamina_conv_pack_columns_##S(const void* argument, int64_t p0, int64_t kc, int64_t j0, int64_t nc,    \
                                                  int64_t nr, void* packed) {                                              \
    enum { VL = LAMINA_CONV_VBYTES / sizeof(T) };                                                                          \
    const lamina_conv_columns_##S* columns = (const lamina_conv_columns_##S*)argument;                                     \
    const lamina_conv2d_geometry* g = columns->g;                                                                          \
    const int64_t H = g->in_height, W = g->in_width, OH = g->out_height, OW = g->out_width, P = OH * OW;                   \
    const int64_t sh = g->stride_height, sw = g->stride_width;                                                             \
    const int64_t image_size = g->in_channels * H * W, panel_size = nr * kc;                                               \
    /* A whole panel row copied as two vectors when the GEMM's panels are two of this file's vectors wide. */              \
    const int two_vectors = nr == 2 * VL;                                                                                  \
    if (OW < nr && nc <= LAMINA_CONV_LINE) {                                                                               \
      lamina_conv_pack_short_rows_##S(columns, p0, kc, j0, nc, nr, (T*)packed);                                            \
      return;                                                                                                              \
    }                                                                                                                      \
    for (int64_t p = 0; p < kc; p++) {                                                                                     \
      const lamina_conv_tap t = lamina_conv_tap_of(g, p0 + p);                                                             \
      const int64_t c = t.channel, top = t.top, left = t.left, ow0 = t.first, ow1 = t.end;                                 \
      /* The column being written: panel base + r (row p of each panel). */                                                \
      T* panel = (T*)packed + p * nr;                                                                                      \
      int64_t r = 0;                                                                                                       \
      int64_t image = j0 / P, oh = j0 % P / OW, ow = j0 % OW;                                                              \
      for (int64_t n = 0; n < nc;) {                                                                                       \
        /* One output row's run of positions, in pieces that stay inside one panel. */                                     \
        const int64_t run = lamina_conv_min(OW - ow, nc - n);                                                              \
        const int64_t ih = oh * sh + top;                                                                                  \
        const int inside = ih >= 0 && ih < H;                                                                              \
        const T* in = columns->x + image * image_size + (c * H + (inside ? ih : 0)) * W + left; /* in[ow * sw] */          \
        for (int64_t o = ow; o < ow + run;) {                                                                              \
          const int64_t length = lamina_conv_min(ow + run - o, nr - r);                                                    \
          T* out = panel + r;                                                                                              \
          if (inside && sw == 1 && two_vectors && length == nr && o >= ow0 && o + length <= ow1) {                         \
            /* The common piece: a whole panel row inside the input. */                                                    \
            memcpy(out, in + o, VL * sizeof(T));                                                                      \
            memcpy(out + VL, in + o + VL, VL * sizeof(T));                                                            \
          } else {                                                                                                         \
            const int64_t lo = inside ? lamina_conv_min(length, lamina_conv_max(0, ow0 - o)) : length;                     \
            const int64_t hi = inside ? lamina_conv_max(lo, lamina_conv_min(length, ow1 - o)) : length;                    \
            lamina_conv_gather_##S(out, in, o, lo, hi, length, sw);                                                        \
          }                                                                                                                \
          o += length;                                                                                                     \
          r += length;                                                                                                     \
          if (r == nr) {                                                                                                   \
            r = 0;                                                                                                         \
            panel += panel_size;                                                                                           \
          }                                                                                                                \
        }                                                                                                                  \
        n += run;                                                                                                          \
        lamina_conv_next_row(&ow, &oh, &image, OH);                                                                        \
      }                                                                                                                    \
      /* The last panel's columns past nc. */                                                                              \
      if (r > 0)                                                                                                           \
        for (; r < nr; r++) panel[r] = 0;                                                                                  \
    }                                                                                                                      \
  }                                                                                                                        \
  /* The work of one chunk of images and one group, shared with the pool's tasks. */                                       \
  typedef struct lamina_conv_job_##S {                                                                                     \
    const lamina_conv2d_geometry* g;                                                                                       \
    int64_t first_image, images, group;                                                                                    \
    const T* x;           /* im2col source, or col2im destination (as T*) */                                               \
    T* dx;                                                                                                                 \
    T* columns;           /* [K, images * P] */                                                                            \
    const T* product;     /* [rows, images * P]: a GEMM result to scatter */                                               \
    T* y;                 /* NCHW destination of the scatter */                                                            \
    const T* bias;                                                                                                         \
    int64_t bias_count;   /* channels of the bias, or 1 for one value for all */                                           \
    const lamina_gemm_epilogue* epilogue;                                                                                  \
    int64_t tasks;                                                                                                         \
  } lamina_conv_job_##S;                                                                                                   \
                                                                                                                            \
  /* Task: im2col of rows (image, channel) of the chunk. */                                                                \
  static inline void lamina_conv_im2col_task_##S(void* argument, int64_t task, int thread) {                                     \
    (void)thread;                                                                                                          \
    const lamina_conv_job_##S* job = (const lamina_conv_job_##S*)argument;                                                 \
    const lamina_conv2d_geometry* g = job->g;                                                                              \
    const int64_t cg = g->in_channels / g->groups, P = g->out_height * g->out_width;                                      \
    int64_t begin, end;                                                                                                    \
    lamina_conv_task_range(job->images * cg, job->tasks, task, &begin, &end);                                              \
    for (int64_t r = begin; r < end; r++) {                                                                                \
      const int64_t image = r / cg, c = r % cg;                                                                            \
      const T* x = job->x + ((job->first_image + image) * g->in_channels + job->group * cg) * g->in_height * g->in_width; \
      lamina_conv_im2col_##S(g, x, c, c + 1, job->columns, job->images * P, image * P);                                    \
    }                                                                                                                      \
  }                                                                                                                        \
                                                                                                                            \
  /* Task: col2im of rows (image, channel) of the chunk, then bias and epilogue on the finished planes. */                 \
  static inline void lamina_conv_col2im_task_##S(void* argument, int64_t task, int thread) {                                     \
    (void)thread;                                                                                                          \
    const lamina_conv_job_##S* job = (const lamina_conv_job_##S*)argument;                                                 \
    const lamina_conv2d_geometry* g = job->g;                                                                              \
    const int64_t cg = g->in_channels / g->groups, P = g->out_height * g->out_width, HW = g->in_height * g->in_width;     \
    int64_t begin, end;                                                                                                    \
    lamina_conv_task_range(job->images * cg, job->tasks, task, &begin, &end);                                              \
    for (int64_t r = begin; r < end; r++) {                                                                                \
      const int64_t image = r / cg, c = r % cg;                                                                            \
      const int64_t channel = job->group * cg + c, plane = (job->first_image + image) * g->in_channels + channel;          \
      T* dx = job->dx + (plane - c) * HW;                                                                                  \
      lamina_conv_col2im_##S(g, job->columns, job->images * P, image * P, c, c + 1, dx);                                   \
      T* out = job->dx + plane * HW;                                                                                       \
      if (job->bias) {                                                                                                     \
        const T b = job->bias[job->bias_count == 1 ? 0 : channel];                                                         \
        if (b != (T)0) {                                                                                                   \
          _Pragma("omp simd") for (int64_t p = 0; p < HW; p++) out[p] += b;                                                \
        }                                                                                                                  \
      }                                                                                                                    \
      if (job->epilogue) lamina_conv_plane_epilogue(job->epilogue, job->dx, g->in_height, g->in_width, plane, 0, HW);      \
    }                                                                                                                      \
  }                                                                                                                        \
                                                                                                                            \
  /* Task: copies rows (image, channel) of a GEMM result [rows, images * P] into the NCHW result y (rows: the group's  \
     out channels), adding the bias and running the epilogue on each finished plane. */                                    \
  static inline void lamina_conv_scatter_task_##S(void* argument, int64_t task, int thread) {                                    \
    (void)thread;                                                                                                          \
    const lamina_conv_job_##S* job = (const lamina_conv_job_##S*)argument;                                                 \
    const lamina_conv2d_geometry* g = job->g;                                                                              \
    const int64_t og = g->out_channels / g->groups, P = g->out_height * g->out_width;                                     \
    int64_t begin, end;                                                                                                    \
    lamina_conv_task_range(job->images * og, job->tasks, task, &begin, &end);                                              \
    for (int64_t r = begin; r < end; r++) {                                                                                \
      const int64_t image = r / og, o = r % og;                                                                            \
      const int64_t channel = job->group * og + o, plane = (job->first_image + image) * g->out_channels + channel;        \
      const T* in = job->product + o * job->images * P + image * P;                                                        \
      T* out = job->y + plane * P;                                                                                         \
      const T b = job->bias ? job->bias[job->bias_count == 1 ? 0 : channel] : (T)0;                                        \
      _Pragma("omp simd") for (int64_t p = 0; p < P; p++) out[p] = in[p] + b;                                              \
      if (job->epilogue) lamina_conv_plane_epilogue(job->epilogue, job->y, g->out_height, g->out_width, plane, 0, P);     \
    }                                                                                                                      \
  }                                                                                                                        \
                                                                                                                            \
  /* Task: gathers rows (image, channel) of the NCHW tensor y (the group's out channels) into [rows, images * P]. */       \
  static inline void lamina_conv_gather_task_##S(void* argument, int64_t task, int thread) {                                     \
    (void)thread;                                                                                                          \
    const lamina_conv_job_##S* job = (const lamina_conv_job_##S*)argument;                                                 \
    const lamina_conv2d_geometry* g = job->g;                                                                              \
    const int64_t og = g->out_channels / g->groups, P = g->out_height * g->out_width;                                     \
    int64_t begin, end;                                                                                                    \
    lamina_conv_task_range(job->images * og, job->tasks, task, &begin, &end);                                              \
    for (int64_t r = begin; r < end; r++) {                                                                                \
      const int64_t image = r / og, o = r % og;                                                                            \
      const int64_t plane = (job->first_image + image) * g->out_channels + job->group * og + o;                            \
      memcpy(job->columns + o * job->images * P + image * P, job->x + plane * P, (size_t)P * sizeof(T));                  \
    }                                                                                                                      \
  }                                                                                                                        \
                                                                                                                            \
  /* Runs `body` over `rows` rows of `work` elements: on the pool when large enough. */                                    \
  static inline void lamina_conv_run_##S(lamina_pool* pool, lamina_conv_job_##S* job, int64_t rows, int64_t work,                \
                                  void (*body)(void*, int64_t, int)) {                                                     \
    job->tasks = lamina_conv_tasks(pool, rows, work);                                                                      \
    if (job->tasks == 1)                                                                                                   \
      body(job, 0, 0);                                                                                                     \
    else                                                                                                                   \
      lamina_pool_run(pool, job->tasks, body, job);                                                                        \
  }                                                                                                                        \
                                                                                                                            \
  /* The epilogue of a GEMM writing one image's group of an NCHW result directly: adds the bias to each finished block  \
     and hands it on to the fused epilogue (if any) in its row view. */                                                   \
  typedef struct lamina_conv_block_epilogue_##S {                                                                          \
    const lamina_conv2d_geometry* g;                                                                                       \
    int64_t channels, height, width; /* of the result */                                                                   \
    int64_t first_plane;             /* the plane (image, channel) of the GEMM's row 0 */                                  \
    int64_t first_channel;           /* the channel of the GEMM's row 0 */                                                 \
    T* y;                                                                                                                  \
    const T* bias;                                                                                                         \
    int64_t bias_count;                                                                                                    \
    const lamina_gemm_epilogue* epilogue;                                                                                  \
  } lamina_conv_block_epilogue_##S;                                                                                        \
                                                                                                                            \
  static inline void lamina_conv_block_epilogue_apply_##S(void* argument, void* c, int64_t ldc, int64_t row0, int64_t col0,      \
                                                   int64_t rows, int64_t cols) {                                            \
    const lamina_conv_block_epilogue_##S* e = (const lamina_conv_block_epilogue_##S*)argument;                             \
    /* Planes: the block is one rectangle of y's planes, one call after the bias (it was up to three per channel: the     \
       block's partial first image row, its whole rows, its partial last row). */                                         \
    const int planes = e->epilogue && e->epilogue->planes;                                                                 \
    for (int64_t r = row0; r < row0 + rows; r++) {                                                                         \
      if (e->bias) {                                                                                                       \
        const T b = e->bias[e->bias_count == 1 ? 0 : e->first_channel + r];                                                \
        T* out = (T*)c + r * ldc + col0;                                                                                   \
        if (b != (T)0) {                                                                                                   \
          _Pragma("omp simd") for (int64_t p = 0; p < cols; p++) out[p] += b;                                              \
        }                                                                                                                  \
      }                                                                                                                    \
      if (e->epilogue && !planes)                                                                                          \
        lamina_conv_plane_epilogue(e->epilogue, e->y, e->height, e->width, e->first_plane + r, col0, cols);               \
    }                                                                                                                      \
    if (planes)                                                                                                            \
      e->epilogue->apply(e->epilogue->arg, e->y, e->height * e->width, e->first_plane + row0, col0, rows, cols);           \
  }                                                                                                                        \
                                                                                                                            \
  /* Direct convolution, for few output channels per group at stride 1 along the width (LeNet's first layer:             \
     the GEMM would have 6 rows, and packing its columns would cost more than multiplying them). Per (image,             \
     group) task: the group's input is copied once into a zero-padded buffer, then each output row is computed a         \
     vector of columns at a time for up to LAMINA_CONV_DIRECT_ROWS_MAX output channels, the sums staying in registers    \
     over every (channel, kernel row, kernel column). */                                                                 \
  typedef T lamina_conv_vector_##S __attribute__((vector_size(LAMINA_CONV_VBYTES)));                                     \
                                                                                                                         \
  static inline lamina_conv_vector_##S lamina_conv_loadu_##S(const T* p) {                                               \
    lamina_conv_vector_##S v;                                                                                            \
    memcpy(&v, p, sizeof v);                                                                                             \
    return v;                                                                                                            \
  }                                                                                                                      \
                                                                                                                         \
  /* Copies a short row (an image row into a padded buffer): a loop, not a call to memcpy per row. */                   \
  static inline void lamina_conv_copy_row_##S(T* restrict to, const T* restrict from, int64_t count) {                   \
    _Pragma("omp simd") for (int64_t i = 0; i < count; i++) to[i] = from[i];                                             \
  }                                                                                                                      \
                                                                                                                         \
  /* Rows [row_first, row_end) of each of cg channel planes (HP x WP) of a zero-padded copy of the input (H x W planes at\
     source, placed at pad_top, pad_left): a band of a direct kernel fills only the rows its windows read, not the       \
     whole plane (a 224x224 image's first layer split in 4 bands copied it 4 times). */                                  \
  static inline void lamina_conv_pad_rows_##S(T* buffer, const T* source, int64_t cg, int64_t H, int64_t W, int64_t HP,  \
                                              int64_t WP, int64_t pad_top, int64_t pad_left, int64_t row_first,          \
                                              int64_t row_end) {                                                         \
    for (int64_t c = 0; c < cg; c++)                                                                                     \
      for (int64_t r = row_first; r < row_end; r++) {                                                                    \
        T* to = buffer + (c * HP + r) * WP;                                                                              \
        const int64_t input_row = r - pad_top;                                                                           \
        if (input_row < 0 || input_row >= H) {                                                                           \
          memset(to, 0, (size_t)WP * sizeof(T));                                                                         \
          continue;                                                                                                      \
        }                                                                                                                \
        memset(to, 0, (size_t)pad_left * sizeof(T));                                                                     \
        lamina_conv_copy_row_##S(to + pad_left, source + (c * H + input_row) * W, W);                                    \
        memset(to + pad_left + W, 0, (size_t)(WP - pad_left - W) * sizeof(T));                                           \
      }                                                                                                                  \
  }                                                                                                                      \
                                                                                                                         \
  /* Stores the first n lanes of v at p (all of them when n >= the vector's length): one masked store where the        \
     target has one, not a memcpy of variable size (which compilers expand into a ladder of branches). */               \
  static inline void lamina_conv_store_first_##S(T* p, lamina_conv_vector_##S v, int64_t n) {                            \
    if (n >= (int64_t)(LAMINA_CONV_VBYTES / sizeof(T))) {                                                                \
      memcpy(p, &v, sizeof v);                                                                                           \
      return;                                                                                                            \
    }                                                                                                                    \
    LAMINA_CONV_STORE_FIRST_##S(p, v, n)                                                                                 \
  }                                                                                                                      \
                                                                                                                         \
  typedef struct lamina_conv_direct_job_##S {                                                                            \
    const lamina_conv2d_geometry* g;                                                                                     \
    const T* x;                                                                                                          \
    const T* w;                                                                                                          \
    const T* bias;                                                                                                       \
    int64_t bias_count;                                                                                                  \
    T* y;                                                                                                                \
    const lamina_gemm_epilogue* epilogue;                                                                                \
    lamina_pool* pool; /* its threads' scratch memory holds the padded input */                                          \
    int64_t padded_height, padded_width;                                                                                 \
    int wide; /* rows of more than one vector: two vectors at a time */                                                  \
    int64_t bands; /* of output rows, per (image, group) */                                                              \
    int failed;                                                                                                          \
  } lamina_conv_direct_job_##S;                                                                                          \
                                                                                                                         \
  /* Output channels [0, N) of one (image, group) (weights: the first one's, K apart) from its padded input, into `out`  \
     (planes P apart, starting at row out_row0), U vectors of columns of one output row at a time; N and U are constants in each call, so the N * U sums stay in registers     \
     and each loaded input vector serves N channels. */                                                                  \
  static inline __attribute__((always_inline)) void lamina_conv_direct_rows_##S(                                         \
      const lamina_conv2d_geometry* g, const T* padded, int64_t HP, int64_t WP, const T* weights, int64_t K,             \
      const T* biases, T* out, int64_t P, int64_t out_row0, int64_t first_row, int64_t end_row, const int N, const int U) { \
    enum { VL = LAMINA_CONV_VBYTES / sizeof(T) };                                                                        \
    const int64_t cg = g->in_channels / g->groups, kh = g->kernel_height, kw = g->kernel_width;                          \
    const int64_t dh = g->dilation_height, dw = g->dilation_width, OH = g->out_height, OW = g->out_width;                \
    (void)OH;                                                                                                            \
    for (int64_t oh = first_row; oh < end_row; oh++) {                                                                   \
      for (int64_t ow0 = 0; ow0 < OW; ow0 += U * VL) {                                                                   \
        lamina_conv_vector_##S sums[LAMINA_CONV_DIRECT_ROWS_MAX][2];                                                     \
        _Pragma("GCC unroll 8") for (int b = 0; b < N; b++)                                                              \
          _Pragma("GCC unroll 2") for (int u = 0; u < U; u++) sums[b][u] = biases[b] - (lamina_conv_vector_##S){0};      \
        for (int64_t c = 0; c < cg; c++) {                                                                               \
          for (int64_t i = 0; i < kh; i++) {                                                                             \
            const T* row = padded + (c * HP + oh * g->stride_height + i * dh) * WP + ow0;                                \
            const T* tap = weights + (c * kh + i) * kw;                                                                  \
            for (int64_t j = 0; j < kw; j++) {                                                                           \
              lamina_conv_vector_##S v[2];                                                                               \
              _Pragma("GCC unroll 2") for (int u = 0; u < U; u++) v[u] = lamina_conv_loadu_##S(row + j * dw + u * VL);   \
              _Pragma("GCC unroll 8") for (int b = 0; b < N; b++) {                                                      \
                const T weight = tap[b * K + j];                                                                         \
                _Pragma("GCC unroll 2") for (int u = 0; u < U; u++) sums[b][u] += weight * v[u];                         \
              }                                                                                                          \
            }                                                                                                            \
          }                                                                                                              \
        }                                                                                                                \
        _Pragma("GCC unroll 2") for (int u = 0; u < U; u++) {                                                            \
          const int64_t n = lamina_conv_min(VL, OW - ow0 - u * VL);                                                      \
          if (n <= 0) break;                                                                                             \
          _Pragma("GCC unroll 8") for (int b = 0; b < N; b++)                                                            \
            lamina_conv_store_first_##S(out + b * P + (oh - out_row0) * OW + ow0 + u * VL, sums[b][u], n);              \
        }                                                                                                                \
      }                                                                                                                  \
    }                                                                                                                    \
  }                                                                                                                      \
                                                                                                                         \
  static inline void lamina_conv_direct_task_##S(void* argument, int64_t task, int thread) {                             \
    lamina_conv_direct_job_##S* job = (lamina_conv_direct_job_##S*)argument;                                             \
    const lamina_conv2d_geometry* g = job->g;                                                                            \
    const int64_t G = g->groups, cg = g->in_channels / G, og = g->out_channels / G;                                      \
    const int64_t kh = g->kernel_height, kw = g->kernel_width;                                                           \
    const int64_t H = g->in_height, W = g->in_width, OH = g->out_height, OW = g->out_width, P = OH * OW;                 \
    const int64_t HP = job->padded_height, WP = job->padded_width, K = cg * kh * kw;                                     \
    const int64_t band = task % job->bands, group = task / job->bands % G, image = task / job->bands / G;                \
    int64_t written_first, written_end, first_row, end_row;                                                              \
    lamina_conv_band_rows(g, band, job->bands, &written_first, &written_end, &first_row, &end_row);                      \
    (void)OH;                                                                                                            \
    /* The padded input in the thread's scratch memory, then, with a pool, the band's rows of the result until they are  \
       pooled (the heap without a pool or when they do not fit). */                                                     \
    const int pooled = g->pool_height > 0;                                                                               \
    const size_t padded_bytes = (size_t)(cg * HP * WP) * sizeof(T), block_offset = (padded_bytes + 63) / 64 * 64;        \
    const int64_t block_plane = (end_row - first_row) * OW;                                                              \
    const size_t needed = block_offset + (pooled ? (size_t)(og * block_plane) * sizeof(T) : 0);                          \
    size_t scratch_bytes = 0;                                                                                            \
    unsigned char* scratch = job->pool ? (unsigned char*)lamina_pool_scratch(job->pool, thread, &scratch_bytes) : NULL;  \
    const int allocated = !scratch || scratch_bytes < needed;                                                            \
    if (allocated) scratch = (unsigned char*)malloc(needed);                                                             \
    if (!scratch) {                                                                                                      \
      job->failed = 1; /* read after the pool run returns */                                                             \
      return;                                                                                                            \
    }                                                                                                                    \
    T* padded = (T*)scratch;                                                                                             \
    T* block = (T*)(scratch + block_offset);                                                                             \
    lamina_conv_pad_rows_##S(padded, job->x + (image * g->in_channels + group * cg) * H * W, cg, H, W, HP, WP,           \
                             g->pad_top, g->pad_left, first_row * g->stride_height,                                      \
                             lamina_conv_min(HP, (end_row - 1) * g->stride_height + (kh - 1) * g->dilation_height + 1)); \
    const int wide = job->wide;                                                                                          \
    T biases[LAMINA_CONV_DIRECT_ROWS_MAX];                                                                               \
    for (int64_t o0 = 0; o0 < og; o0 += LAMINA_CONV_DIRECT_ROWS_MAX) {                                                   \
      const int64_t count = lamina_conv_min(LAMINA_CONV_DIRECT_ROWS_MAX, og - o0);                                       \
      const T* weights = job->w + (group * og + o0) * K;                                                                 \
      for (int64_t b = 0; b < count; b++)                                                                                \
        biases[b] = job->bias ? job->bias[job->bias_count == 1 ? 0 : group * og + o0 + b] : (T)0;                        \
      T* out = pooled ? block + o0 * block_plane : job->y + (image * g->out_channels + group * og + o0) * P;             \
      const int64_t out_plane = pooled ? block_plane : P, out_row0 = pooled ? first_row : 0;                             \
      /* One specialization per block size: the sums stay in registers. */                                               \
      /* Two vectors of a row at once (input loads shared by twice the sums) when the row has them and the sums fit      \
         the registers (12 of 16 with AVX2). */                                                                          \
      if (wide && count <= 6) {                                                                                          \
        switch (count) {                                                                                                 \
          case 1: lamina_conv_direct_rows_##S(g, padded, HP, WP, weights, K, biases, out, out_plane, out_row0, first_row, end_row, 1, 2); break;               \
          case 2: lamina_conv_direct_rows_##S(g, padded, HP, WP, weights, K, biases, out, out_plane, out_row0, first_row, end_row, 2, 2); break;               \
          case 3: lamina_conv_direct_rows_##S(g, padded, HP, WP, weights, K, biases, out, out_plane, out_row0, first_row, end_row, 3, 2); break;               \
          case 4: lamina_conv_direct_rows_##S(g, padded, HP, WP, weights, K, biases, out, out_plane, out_row0, first_row, end_row, 4, 2); break;               \
          case 5: lamina_conv_direct_rows_##S(g, padded, HP, WP, weights, K, biases, out, out_plane, out_row0, first_row, end_row, 5, 2); break;               \
          default: lamina_conv_direct_rows_##S(g, padded, HP, WP, weights, K, biases, out, out_plane, out_row0, first_row, end_row, 6, 2); break;              \
        }                                                                                                                \
      } else {                                                                                                           \
        switch (count) {                                                                                                 \
          case 1: lamina_conv_direct_rows_##S(g, padded, HP, WP, weights, K, biases, out, out_plane, out_row0, first_row, end_row, 1, 1); break;               \
          case 2: lamina_conv_direct_rows_##S(g, padded, HP, WP, weights, K, biases, out, out_plane, out_row0, first_row, end_row, 2, 1); break;               \
          case 3: lamina_conv_direct_rows_##S(g, padded, HP, WP, weights, K, biases, out, out_plane, out_row0, first_row, end_row, 3, 1); break;               \
          case 4: lamina_conv_direct_rows_##S(g, padded, HP, WP, weights, K, biases, out, out_plane, out_row0, first_row, end_row, 4, 1); break;               \
          case 5: lamina_conv_direct_rows_##S(g, padded, HP, WP, weights, K, biases, out, out_plane, out_row0, first_row, end_row, 5, 1); break;               \
          case 6: lamina_conv_direct_rows_##S(g, padded, HP, WP, weights, K, biases, out, out_plane, out_row0, first_row, end_row, 6, 1); break;               \
          case 7: lamina_conv_direct_rows_##S(g, padded, HP, WP, weights, K, biases, out, out_plane, out_row0, first_row, end_row, 7, 1); break;               \
          default: lamina_conv_direct_rows_##S(g, padded, HP, WP, weights, K, biases, out, out_plane, out_row0, first_row, end_row, 8, 1); break;              \
        }                                                                                                                \
      }                                                                                                                  \
      if (job->epilogue && !pooled)                                                                                      \
        for (int64_t b = 0; b < count; b++)                                                                              \
          lamina_conv_plane_epilogue(job->epilogue, job->y, OH, OW, image * g->out_channels + group * og + o0 + b,       \
                                     first_row * OW, (end_row - first_row) * OW);                                        \
    }                                                                                                                    \
    if (pooled)                                                                                                          \
      lamina_conv_pool_block_##S(g, block, block_plane, og, image * g->out_channels + group * og, written_first,          \
                                 written_end, job->y, job->epilogue);                                                    \
    if (allocated) free(scratch);                                                                                        \
  }                                                                                                                      \
                                                                                                                         \
  /* Direct convolution vectorized over output channels, for few input channels and more output channels than the          \
     width kernel takes (LeNet's second layer: 6 -> 16 channels, 5x5 on 14x14). A tile of LAMINA_CONV_CHANNEL_TILE         \
     output positions (consecutive in the plane, across rows) keeps one vector of output channels per position in          \
     registers over every (channel, kernel row, kernel column): per tap, one vector of packed weights and a broadcast      \
     input value per position. The input is read in place (copied into a zero-padded buffer only when the windows          \
     reach the padding); tap and position offsets come from tables, so stride, dilation and padding cost nothing           \
     in the loop. Tasks: (image, group, band of positions). */                                                             \
  typedef struct lamina_conv_channels_job_##S {                                                                            \
    const lamina_conv2d_geometry* g;                                                                                       \
    const T* x;                                                                                                            \
    const T* weights;         /* [groups][vectors][K][VL] (lamina_conv_channels_pack_weights_*) */                       \
    const T* biases;          /* [groups][vectors][VL]; zero past og */                                                    \
    const int64_t* taps;      /* [K] offsets of the taps in one group's (padded) input */                                  \
    const int64_t* positions; /* [P] offsets of the output positions' windows */                                           \
    T* y;                                                                                                                  \
    const lamina_gemm_epilogue* epilogue;                                                                                  \
    lamina_pool* pool;                                                                                                     \
    int64_t padded_height, padded_width; /* of the input buffer, when `padded` */                                          \
    int64_t vectors, bands;                                                                                                \
    int64_t vector_parts; /* the output channels' vector pairs split this many ways (bands 1) */                         \
    int64_t tile;         /* positions per tile: LAMINA_CONV_CHANNEL_TILE or one fewer (lamina_conv_channel_tile) */     \
    int padded;                                                                                                            \
    int failed;                                                                                                            \
  } lamina_conv_channels_job_##S;                                                                                          \
                                                                                                                         \
  /* A tile's sums, position-major (R positions x `channels` lanes), to the channel planes of the NCHW result. */        \
  static inline __attribute__((always_inline)) void lamina_conv_channels_store_##S(T* out, int64_t plane, int64_t channels, \
                                                                                  int64_t count, const int R,            \
                                                                                  lamina_conv_vector_##S* sums) {        \
    enum { VL = LAMINA_CONV_VBYTES / sizeof(T) };                                                                        \
    if (LAMINA_CONV_HAS_TILE_TRANSPOSE_##S && LAMINA_CONV_CHANNEL_TILE == 8 && channels == VL && count == R) {           \
      if (R == 7) sums[7] = sums[6]; /* the transpose takes 8 rows; the 8th column is not stored */                      \
      LAMINA_CONV_STORE_TILE_##S(out, plane, sums, R)                                                                    \
    } else                                                                                                               \
      for (int64_t l = 0; l < channels; l++)                                                                             \
        for (int64_t r = 0; r < count; r++) out[l * plane + r] = sums[r][l];                                             \
  }                                                                                                                      \
                                                                                                                         \
  /* A relu epilogue (lamina_gemm_epilogue.relu_only) on a vector of sums: 0 >= x ? 0 : x as the model's relu computes  \
     it (NaN stays NaN, -0 becomes +0), by an ordered compare and a mask, as the GEMM does in its registers. */          \
  static inline __attribute__((always_inline)) lamina_conv_vector_##S lamina_conv_rectify_##S(lamina_conv_vector_##S v) { \
    const lamina_conv_bits_##S nonpositive = v <= (lamina_conv_vector_##S){0};                                          \
    return (lamina_conv_vector_##S)((lamina_conv_bits_##S)v & ~nonpositive);                                             \
  }                                                                                                                      \
                                                                                                                         \
  /* One tile of R positions (q: each position's window in the input) for `vectors` (1 or 2, a constant where it is    \
     inlined) consecutive vectors of output channels: weights [K][VL] per vector, the second K * VL after the first;     \
     biases one vector per vector. Two at once: each broadcast input value feeds two multiply-adds, and 2R sums cover    \
     the FMA latency on cores with two 512-bit FMA pipes. left: the output channels from the first vector's on (the      \
     last vector may be partial). R: the tile's positions (LAMINA_CONV_CHANNEL_TILE, or one fewer:                        \
     lamina_conv_channel_tile), a constant where inlined. stride 0: the tile goes to NCHW planes `plane` apart; else      \
     position-major, a position's channels contiguous, positions `stride` apart, and the result says whether a sum may   \
     be NaN (LAMINA_CONV_HAS_FAST_MAX). relu: the sums are rectified before they are stored. */                          \
  static inline __attribute__((always_inline)) int lamina_conv_channels_vectors_##S(                                     \
      const int vectors, const int R, int64_t K, const T* const* q, const int64_t* taps, const T* weights,               \
      const T* biases, T* out, int64_t plane, int64_t left, int64_t count, int64_t stride, int relu) {                   \
    enum { VL = LAMINA_CONV_VBYTES / sizeof(T) };                                                                        \
    lamina_conv_vector_##S sums[2][LAMINA_CONV_CHANNEL_TILE];                                                            \
    _Pragma("GCC unroll 2") for (int u = 0; u < vectors; u++) {                                                         \
      const lamina_conv_vector_##S bias = lamina_conv_loadu_##S(biases + u * VL);                                       \
      _Pragma("GCC unroll 16") for (int r = 0; r < R; r++) sums[u][r] = bias;                                           \
    }                                                                                                                   \
    for (int64_t k = 0; k < K; k++) {                                                                                   \
      lamina_conv_vector_##S w[2];                                                                                      \
      _Pragma("GCC unroll 2") for (int u = 0; u < vectors; u++) w[u] = lamina_conv_loadu_##S(weights + u * K * VL + k * VL);\
      const int64_t t = taps[k];                                                                                        \
      _Pragma("GCC unroll 16") for (int r = 0; r < R; r++) {                                                            \
        const T value = q[r][t];                                                                                        \
        _Pragma("GCC unroll 2") for (int u = 0; u < vectors; u++) sums[u][r] += value * w[u];                           \
      }                                                                                                                 \
    }                                                                                                                   \
    if (relu)                                                                                                           \
      _Pragma("GCC unroll 2") for (int u = 0; u < vectors; u++)                                                         \
        _Pragma("GCC unroll 16") for (int r = 0; r < R; r++) sums[u][r] = lamina_conv_rectify_##S(sums[u][r]);          \
    if (stride > 0) {                                                                                                   \
      for (int64_t r = 0; r < count; r++)                                                                               \
        _Pragma("GCC unroll 2") for (int u = 0; u < vectors; u++) memcpy(out + r * stride + u * VL, &sums[u][r], sizeof sums[u][r]); \
      if (!LAMINA_CONV_HAS_FAST_MAX_##S) return 1;                                                                      \
      lamina_conv_vector_##S total = sums[0][0];                                                                        \
      _Pragma("GCC unroll 2") for (int u = 0; u < vectors; u++)                                                         \
        _Pragma("GCC unroll 16") for (int r = u == 0; r < R; r++) total += sums[u][r];                                  \
      return LAMINA_CONV_ANY_NAN_##S(total);                                                                            \
    }                                                                                                                   \
    _Pragma("GCC unroll 2") for (int u = 0; u < vectors; u++) {                                                         \
      /* The transposed store takes LAMINA_CONV_CHANNEL_TILE rows; those past R are not stored. */                      \
      _Pragma("GCC unroll 16") for (int r = R; r < LAMINA_CONV_CHANNEL_TILE; r++) sums[u][r] = sums[u][R - 1];          \
      lamina_conv_channels_store_##S(out + u * VL * plane, plane, lamina_conv_min(VL, left - u * VL), count, R, sums[u]); \
    }                                                                                                                   \
    return 0;                                                                                                           \
  }                                                                                                                     \
                                                                                                                         \
  /* One tile of R positions (a constant where inlined) for one or two vectors of output channels (lamina_conv_channels_ \
     vectors with the vector count a constant). */                                                                       \
  static inline __attribute__((always_inline)) int lamina_conv_channels_tile_##S(                                        \
      int vectors, const int R, int64_t K, const T* const* q, const int64_t* taps, const T* weights, const T* biases,    \
      T* out, int64_t plane, int64_t left, int64_t count, int64_t stride, int relu) {                                    \
    if (vectors == 2)                                                                                                    \
      return lamina_conv_channels_vectors_##S(2, R, K, q, taps, weights, biases, out, plane, left, count, stride, relu); \
    return lamina_conv_channels_vectors_##S(1, R, K, q, taps, weights, biases, out, plane, left, count, stride, relu);   \
  }                                                                                                                      \
                                                                                                                         \
  /* The maximum of v and the vector at e, e replacing v where larger or NaN (as lamina_conv_max_pool_rows). */           \
  static inline __attribute__((always_inline)) lamina_conv_vector_##S lamina_conv_max_later_##S(lamina_conv_vector_##S v, \
                                                                                                const T* e) {            \
    enum { VL = LAMINA_CONV_VBYTES / sizeof(T) };                                                                        \
    T best[VL];                                                                                                          \
    memcpy(best, &v, sizeof v);                                                                                          \
    _Pragma("omp simd") for (int l = 0; l < VL; l++) best[l] = (e[l] > best[l] || e[l] != e[l]) ? e[l] : best[l];      \
    return lamina_conv_loadu_##S(best);                                                                                  \
  }                                                                                                                      \
                                                                                                                         \
  /* One pooled row's tile of R windows (positions `count` of them, a partial tile repeating its last window, which is  \
     not stored) for one vector of channels: kh x kw window taps, constants where inlined for 3x3 and 2x2, so the loops  \
     unroll into R independent chains of maxima. exact: the block may hold a NaN (max_pool2d's rule), else LAMINA_CONV_FAST_MAX. */   \
  static inline __attribute__((always_inline)) void lamina_conv_channels_pool_tile_##S(                                  \
      const int kh, const int kw, const T* first_window, int64_t window_step, int64_t row_step, int64_t stride,          \
      int64_t count, int exact, lamina_conv_vector_##S* m) {                                                             \
    enum { R = LAMINA_CONV_CHANNEL_TILE };                                                                               \
    const T* window[R];                                                                                                  \
    _Pragma("GCC unroll 16") for (int r = 0; r < R; r++) {                                                               \
      window[r] = first_window + lamina_conv_min(r, count - 1) * window_step;                                            \
      m[r] = lamina_conv_loadu_##S(window[r]);                                                                           \
    }                                                                                                                    \
    if (LAMINA_CONV_HAS_FAST_MAX_##S && !exact) {                                                                        \
      _Pragma("GCC unroll 8") for (int a = 0; a < kh; a++)                                                               \
        _Pragma("GCC unroll 8") for (int b = 0; b < kw; b++) {                                                           \
          if (a == 0 && b == 0) continue;                                                                                \
          const int64_t offset = a * row_step + b * stride;                                                              \
          _Pragma("GCC unroll 16") for (int r = 0; r < R; r++) m[r] = LAMINA_CONV_FAST_MAX_##S(m[r], window[r] + offset); \
        }                                                                                                                \
      return;                                                                                                            \
    }                                                                                                                    \
    _Pragma("GCC unroll 8") for (int a = 0; a < kh; a++)                                                                 \
      _Pragma("GCC unroll 8") for (int b = 0; b < kw; b++) {                                                             \
        if (a == 0 && b == 0) continue;                                                                                  \
        const int64_t offset = a * row_step + b * stride;                                                                \
        _Pragma("GCC unroll 16") for (int r = 0; r < R; r++) m[r] = lamina_conv_max_later_##S(m[r], window[r] + offset); \
      }                                                                                                                  \
  }                                                                                                                      \
                                                                                                                         \
  /* The channel kernel's fused max pool: a block of rows [first_row, ...) of one (image, group)'s result, position-major \
     (position p's channels at block + p * stride), pooled into rows [pooled_first, pooled_end) of y's `channels` planes  \
     from `first_plane`, then the epilogue on them. Position-major, a window's maximum is a maximum of whole vectors of  \
     channels (no permutes across a row's columns, as the planar pool needs at stride 2), and the kernel stores its      \
     tiles untransposed; only the pooled result, a quarter as large at stride 2, is transposed to planes. exact: the     \
     block may hold a NaN (lamina_conv_channels_pool_tile). SqueezeNet's first layer with its pool (Zen 4, the 4 x 6     \
     tiles included): 636 -> 542 us on one core, 329 -> 279 on two; its planar pool alone had taken 120 us a core. */   \
  static inline void lamina_conv_channels_pool_##S(const lamina_conv2d_geometry* g, const T* block, int64_t stride,     \
                                                   int64_t first_row, int64_t channels, int64_t first_plane,             \
                                                   int64_t pooled_first, int64_t pooled_end, int exact, T* y,            \
                                                   const lamina_gemm_epilogue* epilogue) {                               \
    enum { VL = LAMINA_CONV_VBYTES / sizeof(T), R = LAMINA_CONV_CHANNEL_TILE };                                          \
    const int64_t PH = lamina_conv_pooled_height(g), PW = lamina_conv_pooled_width(g), OW = g->out_width;                \
    const int64_t kh = g->pool_height, kw = g->pool_width, sh = g->pool_stride_height, sw = g->pool_stride_width;       \
    for (int64_t i = pooled_first; i < pooled_end; i++) {                                                                \
      const T* top = block + (i * sh - first_row) * OW * stride;                                                         \
      for (int64_t c0 = 0; c0 < channels; c0 += VL) {                                                                    \
        for (int64_t j0 = 0; j0 < PW; j0 += R) {                                                                         \
          const int64_t count = lamina_conv_min(R, PW - j0);                                                             \
          const T* first_window = top + j0 * sw * stride + c0;                                                           \
          lamina_conv_vector_##S m[R];                                                                                   \
          if (kh == 3 && kw == 3)                                                                                        \
            lamina_conv_channels_pool_tile_##S(3, 3, first_window, sw * stride, OW * stride, stride, count, exact, m);   \
          else if (kh == 2 && kw == 2)                                                                                   \
            lamina_conv_channels_pool_tile_##S(2, 2, first_window, sw * stride, OW * stride, stride, count, exact, m);   \
          else /* any other window: the same loops, not unrolled */                                                      \
            lamina_conv_channels_pool_tile_##S((int)kh, (int)kw, first_window, sw * stride, OW * stride, stride, count,  \
                                               exact, m);                                                                \
          T* out = y + (first_plane + c0) * PH * PW + i * PW + j0;                                                       \
          const int64_t lanes = lamina_conv_min(VL, channels - c0);                                                      \
          if (count == R - 1)                                                                                            \
            lamina_conv_channels_store_##S(out, PH * PW, lanes, count, R - 1, m);                                        \
          else                                                                                                           \
            lamina_conv_channels_store_##S(out, PH * PW, lanes, count, R, m);                                            \
        }                                                                                                                \
      }                                                                                                                  \
    }                                                                                                                    \
    lamina_conv_pooled_epilogue_##S(g, channels, first_plane, pooled_first, pooled_end, y, epilogue);                    \
  }                                                                                                                      \
                                                                                                                         \
  /* The tiles of positions [first, end) of one or two vectors of output channels (`vectors`; weights and biases: the   \
     first's): tile p0's results at out + (p0 - first) * step, to NCHW planes `plane` apart (stride 0: step 1) or        \
     position-major (step = stride: a position's channels contiguous). With a stride, the result says whether a sum may  \
     be NaN (lamina_conv_channels_vectors). Not inlined, so that the loops over the taps keep their operands (the eight  \
     window pointers, the taps, the weights) in registers: inlined in the task, its own values pushed some of them out   \
     and the 3 -> 64 3x3 kernel ran 4% slower. relu: lamina_conv_channels_vectors'. */                                   \
  static __attribute__((noinline)) int lamina_conv_channels_tiles_##S(const lamina_conv_channels_job_##S* job,          \
                                                                       const T* source, int vectors, const T* weights,   \
                                                                       const T* biases, int64_t left, T* out,            \
                                                                       int64_t plane, int64_t stride, int relu,          \
                                                                       int64_t first, int64_t end) {                     \
    const lamina_conv2d_geometry* g = job->g;                                                                            \
    const int64_t K = g->in_channels / g->groups * g->kernel_height * g->kernel_width, R = job->tile;                    \
    const int64_t step = stride > 0 ? stride : 1;                                                                        \
    int nan = 0;                                                                                                         \
    for (int64_t p0 = first; p0 < end; p0 += R) {                                                                        \
      const int64_t count = lamina_conv_min(R, end - p0);                                                                \
      /* A partial tile repeats its last position (computed, not stored). */                                             \
      const T* q[LAMINA_CONV_CHANNEL_TILE];                                                                              \
      _Pragma("GCC unroll 16") for (int r = 0; r < LAMINA_CONV_CHANNEL_TILE; r++)                                        \
        q[r] = source + job->positions[p0 + lamina_conv_min(r, count - 1)];                                              \
      T* tile_out = out + (p0 - first) * step;                                                                           \
      if (R == LAMINA_CONV_CHANNEL_TILE)                                                                                 \
        nan |= lamina_conv_channels_tile_##S(vectors, LAMINA_CONV_CHANNEL_TILE, K, q, job->taps, weights, biases,        \
                                             tile_out, plane, left, count, stride, relu);                                \
      else                                                                                                               \
        nan |= lamina_conv_channels_tile_##S(vectors, LAMINA_CONV_CHANNEL_TILE - 1, K, q, job->taps, weights, biases,    \
                                             tile_out, plane, left, count, stride, relu);                                \
    }                                                                                                                    \
    return nan;                                                                                                          \
  }                                                                                                                      \
                                                                                                                         \
  static inline void lamina_conv_channels_task_##S(void* argument, int64_t task, int thread) {                             \
    lamina_conv_channels_job_##S* job = (lamina_conv_channels_job_##S*)argument;                                         \
    const lamina_conv2d_geometry* g = job->g;                                                                            \
    enum { VL = LAMINA_CONV_VBYTES / sizeof(T) };                                                                        \
    const int64_t R = job->tile;                                                                                         \
    const int64_t G = g->groups, cg = g->in_channels / G, og = g->out_channels / G;                                        \
    const int64_t P = g->out_height * g->out_width, V = job->vectors;                                                     \
    const int64_t band = task % job->bands, part = task / job->bands % job->vector_parts;                                 \
    const int64_t group = task / job->bands / job->vector_parts % G, image = task / job->bands / job->vector_parts / G;   \
    /* The part's vectors of output channels: whole pairs, the last vector alone when V is odd. */                        \
    const int64_t pairs = (V + 1) / 2;                                                                                     \
    const int64_t v_first = lamina_conv_min(V, 2 * (pairs * part / job->vector_parts));                                   \
    const int64_t v_end = lamina_conv_min(V, 2 * (pairs * (part + 1) / job->vector_parts));                               \
    /* Tiles of R positions, split evenly over the bands; with a pool, bands of pooled rows and the rows they read. */   \
    const int pooled = g->pool_height > 0;                                                                                 \
    const int64_t tiles = (P + R - 1) / R;                                                                                 \
    int64_t first = tiles * band / job->bands * R, end = lamina_conv_min(P, tiles * (band + 1) / job->bands * R);          \
    int64_t written_first = 0, written_end = 0;                                                                            \
    if (pooled) {                                                                                                          \
      lamina_conv_band_rows(g, band, job->bands, &written_first, &written_end, &first, &end);                              \
      first *= g->out_width;                                                                                               \
      end *= g->out_width;                                                                                                 \
    }                                                                                                                      \
    const T* source = job->x + (image * g->in_channels + group * cg) * g->in_height * g->in_width;                         \
    /* The thread's scratch memory holds the padded input (when the windows reach the padding), then, with a pool, the    \
       band's rows of the result until they are pooled (the heap without a pool or when they do not fit). */              \
    const int64_t HP = job->padded_height, WP = job->padded_width;                                                         \
    const size_t padded_bytes = job->padded ? (size_t)(cg * HP * WP) * sizeof(T) : 0;                                      \
    const size_t block_offset = (padded_bytes + 63) / 64 * 64;                                                             \
    const int64_t block_plane = end - first;                                                                               \
    const int64_t block_stride = V * VL; /* with a pool, the block is position-major: a position's channels together */  \
    const size_t needed = block_offset + (pooled ? (size_t)(block_stride * block_plane) * sizeof(T) : 0);                  \
    unsigned char* scratch = NULL;                                                                                         \
    int allocated = 0;                                                                                                     \
    if (needed > 0) {                                                                                                      \
      size_t scratch_bytes = 0;                                                                                            \
      scratch = job->pool ? (unsigned char*)lamina_pool_scratch(job->pool, thread, &scratch_bytes) : NULL;                 \
      if (!scratch || scratch_bytes < needed) {                                                                            \
        scratch = (unsigned char*)malloc(needed);                                                                          \
        allocated = 1;                                                                                                     \
        if (!scratch) {                                                                                                    \
          job->failed = 1; /* read after the pool run returns */                                                           \
          return;                                                                                                          \
        }                                                                                                                  \
      }                                                                                                                    \
    }                                                                                                                      \
    T* block = scratch ? (T*)(scratch + block_offset) : NULL;                                                              \
    if (job->padded) {                                                                                                     \
      const int64_t H = g->in_height, W = g->in_width;                                                                     \
      T* buffer = (T*)scratch;                                                                                           \
      /* The rows of the band's positions' windows (the positions run across rows). */                                   \
      if (end > first)                                                                                                   \
        lamina_conv_pad_rows_##S(buffer, source, cg, H, W, HP, WP, g->pad_top, g->pad_left,                              \
                                 first / g->out_width * g->stride_height,                                                \
                                 lamina_conv_min(HP, (end - 1) / g->out_width * g->stride_height +                       \
                                                         (g->kernel_height - 1) * g->dilation_height + 1));              \
      source = buffer;                                                                                                   \
    }                                                                                                                      \
    /* Vectors of output channels outside the tiles: a pair's weights (K x 2 vectors: 295 KB at 256 -> 256 3x3) stay in   \
       L2 over the band's tiles, where tiles outside streamed all the weights (2.4 MB, from L3) for every tile. With a     \
       pool the block is position-major, and `nan` says whether it may hold a NaN (lamina_conv_channels_pool). */         \
    const int64_t K = cg * g->kernel_height * g->kernel_width;                                                             \
    /* A relu-only epilogue is applied in the registers (without a pool: with one, it runs on the pooled rows). */      \
    const int relu = !pooled && job->epilogue && job->epilogue->relu_only;                                                \
    int nan = 0;                                                                                                           \
    for (int64_t v = v_first; v < v_end;) {                                                                                \
      const int vectors = v + 1 < v_end ? 2 : 1;                                                                           \
      const T* weights = job->weights + (group * V + v) * K * VL;                                                          \
      const T* biases = job->biases + (group * V + v) * VL;                                                                \
      if (pooled)                                                                                                          \
        nan |= lamina_conv_channels_tiles_##S(job, source, vectors, weights, biases, og - v * VL, block + v * VL, 0,       \
                                              block_stride, 0, first, end);                                                \
      else                                                                                                                 \
        lamina_conv_channels_tiles_##S(job, source, vectors, weights, biases, og - v * VL,                                 \
                                       job->y + (image * g->out_channels + group * og + v * VL) * P + first, P, 0, relu,   \
                                       first, end);                                                                        \
      v += vectors;                                                                                                        \
    }                                                                                                                      \
    if (pooled)                                                                                                            \
      lamina_conv_channels_pool_##S(g, block, block_stride, first / g->out_width, og, image * g->out_channels + group * og, \
                                    written_first, written_end, nan, job->y, job->epilogue);                               \
    if (allocated) free(scratch);                                                                                          \
    if (job->epilogue && !pooled && !relu)                                                                                 \
      for (int64_t o = v_first * VL; o < lamina_conv_min(og, v_end * VL); o++)                                             \
        lamina_conv_plane_epilogue(job->epilogue, job->y, g->out_height, g->out_width, image * g->out_channels + group * og + o, \
                                   first, end - first);                                                                    \
  }                                                                                                                        \
                                                                                                                         \
  /* Whether the channel kernel computes this convolution (the schedule's choice; its macros veto or force it for tests). */ \
  static inline int lamina_conv_channels_fits_##S(const lamina_conv2d_geometry* g) {                                       \
    return LAMINA_CONV_CHANNEL_KERNEL && g->out_channels / g->groups > 0 &&                                                \
           g->in_channels / g->groups * g->kernel_height * g->kernel_width <= LAMINA_CONV_CHANNEL_MAX_TAPS;                \
  }                                                                                                                        \
                                                                                                                         \
  /* Elements of the channel kernel's packed weights: per group and vector of output channels, [K][VL]. */              \
  static inline int64_t lamina_conv_channels_weights_elements_##S(const lamina_conv2d_geometry* g) {                     \
    enum { VL = LAMINA_CONV_VBYTES / sizeof(T) };                                                                        \
    const int64_t og = g->out_channels / g->groups;                                                                      \
    return g->groups * ((og + VL - 1) / VL) * (g->in_channels / g->groups) * g->kernel_height * g->kernel_width * VL;    \
  }                                                                                                                      \
                                                                                                                         \
  /* The weights transposed per vector of output channels, [K][VL] (lanes past og zero). */                             \
  static inline void lamina_conv_channels_pack_weights_##S(const lamina_conv2d_geometry* g, const T* w, T* packed) {     \
    enum { VL = LAMINA_CONV_VBYTES / sizeof(T) };                                                                        \
    const int64_t G = g->groups, og = g->out_channels / G, V = (og + VL - 1) / VL;                                      \
    const int64_t K = g->in_channels / G * g->kernel_height * g->kernel_width;                                           \
    for (int64_t group = 0; group < G; group++)                                                                          \
      for (int64_t v = 0; v < V; v++) {                                                                                  \
        const int64_t lanes = lamina_conv_min(VL, og - v * VL);                                                          \
        const T* source = w + (group * og + v * VL) * K;                                                                 \
        T* packed_vector = packed + (group * V + v) * K * VL;                                                            \
        if (LAMINA_CONV_HAS_PACK_TRANSPOSE_##S)                                                                          \
          LAMINA_CONV_PACK_CHANNELS_##S(source, K, lanes, packed_vector)                                                 \
        else                                                                                                             \
          for (int64_t k = 0; k < K; k++)                                                                                \
            for (int64_t l = 0; l < VL; l++) packed_vector[k * VL + l] = l < lanes ? source[l * K + k] : (T)0;           \
      }                                                                                                                  \
  }                                                                                                                      \
                                                                                                                         \
  /* kept: w already packed by lamina_conv_channels_pack_weights_* (a parameter's, kept between calls), or NULL. */     \
  static inline int lamina_conv2d_channels_##S(lamina_pool* pool, const lamina_conv2d_geometry* g, const T* x, const T* w, \
                                               const T* kept, const T* bias, int64_t bias_count, T* y,                   \
                                               const lamina_gemm_epilogue* epilogue) {                                   \
    enum { VL = LAMINA_CONV_VBYTES / sizeof(T) };                                                                        \
    const int64_t G = g->groups, cg = g->in_channels / G, og = g->out_channels / G;                                        \
    const int64_t kh = g->kernel_height, kw = g->kernel_width, K = cg * kh * kw;                                           \
    const int64_t OH = g->out_height, OW = g->out_width, P = OH * OW, V = (og + VL - 1) / VL;                              \
    if (g->batch == 0 || P == 0) return 0;                                                                                 \
    /* The rows and columns the windows read; a buffer with the padding when they reach outside the input. */              \
    const int64_t reach_height = (OH - 1) * g->stride_height + (kh - 1) * g->dilation_height + 1;                          \
    const int64_t reach_width = (OW - 1) * g->stride_width + (kw - 1) * g->dilation_width + 1;                             \
    const int padded = g->pad_top > 0 || g->pad_left > 0 || reach_height > g->in_height || reach_width > g->in_width;      \
    const int64_t HP = padded ? lamina_conv_max(reach_height, g->pad_top + g->in_height) : g->in_height;                   \
    const int64_t WP = padded ? lamina_conv_max(reach_width, g->pad_left + g->in_width) : g->in_width;                     \
    const int64_t weight_count = kept ? 0 : lamina_conv_channels_weights_elements_##S(g);                                  \
    const int64_t packed_count = weight_count + G * V * VL;                                                                \
    /* The packed weights (unless kept), biases and tables on the stack when they fit (LeNet's second layer: 11 KiB),  \
       else the heap; 64-byte aligned either way, so that no vector of weights straddles two cache lines. */              \
    const size_t packed_bytes = ((size_t)packed_count * sizeof(T) + (size_t)(K + P) * sizeof(int64_t) + 63) / 64 * 64;    \
    _Alignas(64) unsigned char local[LAMINA_CONV_CHANNEL_STACK_BYTES];                                                     \
    T* packed = packed_bytes <= sizeof local ? (T*)local : (T*)aligned_alloc(64, packed_bytes);                             \
    if (!packed) return LAMINA_ERROR_MEMORY;                                                                               \
    int64_t* taps = (int64_t*)(packed + packed_count);                                                                     \
    int64_t* positions = taps + K;                                                                                         \
    if (!kept) lamina_conv_channels_pack_weights_##S(g, w, packed);                                                       \
    T* biases = packed + weight_count;                                                                                     \
    for (int64_t group = 0; group < G; group++)                                                                            \
      for (int64_t v = 0; v < V; v++) {                                                                                    \
        const int64_t lanes = lamina_conv_min(VL, og - v * VL);                                                            \
        for (int64_t l = 0; l < VL; l++)                                                                                   \
          biases[(group * V + v) * VL + l] = bias && l < lanes ? bias[bias_count == 1 ? 0 : group * og + v * VL + l] : (T)0; \
      }                                                                                                                    \
    for (int64_t c = 0; c < cg; c++)                                                                                       \
      for (int64_t i = 0; i < kh; i++)                                                                                     \
        for (int64_t j = 0; j < kw; j++)                                                                                   \
          taps[(c * kh + i) * kw + j] = (c * HP + i * g->dilation_height) * WP + j * g->dilation_width;                    \
    for (int64_t oh = 0; oh < OH; oh++)                                                                                    \
      for (int64_t ow = 0; ow < OW; ow++) positions[oh * OW + ow] = oh * g->stride_height * WP + ow * g->stride_width;     \
    /* Bands of positions only when there are too few (image, group) tasks for the threads. */                             \
    const int threads = pool ? lamina_pool_threads(pool) : 1;                                                              \
    const int64_t work = g->batch * G * V * VL * P * K;                                                                    \
    const int parallel = threads > 1 && work >= LAMINA_CONV_DIRECT_PARALLEL_WORK;                                         \
    const int64_t R = lamina_conv_channel_tile(P, g->pool_height > 0);                                                   \
    const int64_t tiles = (P + R - 1) / R;                                                                               \
    const int64_t band_units = g->pool_height > 0 ? lamina_conv_pooled_height(g) : tiles; /* pooled rows, or tiles */    \
    /* The output channels' vector pairs split over the threads instead, each thread all the tiles, when that leaves   \
       the busiest thread less work: a 7x7 result is 7 tiles (4 for one thread, 3 for the other), so 256 -> 256 at     \
       stride 2 splits its 8 pairs 4 + 4 (Inception v2's 14 -> 7 layers 10-12% faster); 96 -> 96 at 28 -> 14 (25 tiles, \
       3 pairs) does not (2 + 1 pairs of 25 tiles would be 17% slower than 13 + 12 tiles of 3 pairs). */               \
    const int64_t pairs = (V + 1) / 2;                                                                                     \
    const int by_channels = LAMINA_CONV_CHANNEL_SPLIT && parallel && g->batch * G == 1 && g->pool_height <= 0 &&          \
                            pairs >= threads &&                                                                            \
                            tiles * ((pairs + threads - 1) / threads) < (tiles + threads - 1) / threads * pairs;           \
    const int64_t vector_parts = by_channels ? threads : 1;                                                                \
    const int64_t bands = by_channels ? 1                                                                                  \
                                    : lamina_conv_pooled_bands(g, parallel && g->batch * G < 2 * threads                  \
                                                                      ? lamina_conv_min(band_units, 2 * threads) : 1,      \
                                                               og, sizeof(T));                                             \
    lamina_conv_channels_job_##S job = {g, x, kept ? kept : packed, biases, taps, positions, y, epilogue, pool, HP, WP, V, \
                                        bands, vector_parts, R, padded, 0};                                              \
    const int64_t tasks = g->batch * G * bands * vector_parts;                                                             \
    if (!parallel || tasks == 1)                                                                                           \
      for (int64_t t = 0; t < tasks; t++) lamina_conv_channels_task_##S(&job, t, 0);                                       \
    else                                                                                                                   \
      lamina_pool_run(pool, tasks, lamina_conv_channels_task_##S, &job);                                                   \
    if (packed != (T*)local) free(packed);                                                                                 \
    return job.failed ? LAMINA_ERROR_MEMORY : 0;                                                                           \
  }                                                                                                                        \
  /* Whether the direct kernel computes this convolution. */                                                             \
  static inline int lamina_conv_direct_fits_##S(const lamina_conv2d_geometry* g) {                                       \
    const int64_t og = g->out_channels / g->groups;                                                                      \
    const int64_t K = g->in_channels / g->groups * g->kernel_height * g->kernel_width;                                   \
    return g->stride_width == 1 && og <= LAMINA_CONV_DIRECT_MAX_CHANNELS && K <= LAMINA_CONV_DIRECT_MAX_TAPS;            \
  }                                                                                                                      \
                                                                                                                         \
  static inline int lamina_conv2d_direct_##S(lamina_pool* pool, const lamina_conv2d_geometry* g, const T* x, const T* w, \
                                             const T* bias, int64_t bias_count, T* y,                                    \
                                             const lamina_gemm_epilogue* epilogue) {                                     \
    enum { VL = LAMINA_CONV_VBYTES / sizeof(T) };                                                                        \
    const int64_t OW = g->out_width;                                                                                     \
    /* Rows and columns the windows read, the last vector of a row included (its extra columns are discarded). */        \
    const int64_t padded_height =                                                                                        \
        lamina_conv_max((g->out_height - 1) * g->stride_height + (g->kernel_height - 1) * g->dilation_height + 1,        \
                        g->pad_top + g->in_height);                                                                      \
    const int wide = OW > VL;                                                                                            \
    const int64_t pass_columns = wide ? 2 * VL : VL; /* the columns one pass computes */                                  \
    const int64_t padded_width = lamina_conv_max((OW + pass_columns - 1) / pass_columns * pass_columns +                    \
                                                     (g->kernel_width - 1) * g->dilation_width,                          \
                                                 g->pad_left + g->in_width);                                             \
    /* Bands of output rows only when there are too few (image, group) tasks for the threads. */                         \
    const int threads = pool ? lamina_pool_threads(pool) : 1;                                                            \
    const int64_t work = g->batch * g->out_channels * g->out_height * OW *                                               \
                         (g->in_channels / g->groups * g->kernel_height * g->kernel_width);                              \
    const int parallel = threads > 1 && work >= LAMINA_CONV_DIRECT_PARALLEL_WORK;                                        \
    const int64_t bands = lamina_conv_pooled_bands(                                                                      \
        g, parallel && g->batch * g->groups < 2 * threads ? lamina_conv_min(lamina_conv_pooled_height(g), 2 * threads) : 1, \
        g->out_channels / g->groups, sizeof(T));                                                                         \
    lamina_conv_direct_job_##S job = {g, x, w, bias, bias_count, y, epilogue, pool, padded_height, padded_width, wide, bands, 0}; \
    const int64_t tasks = g->batch * g->groups * bands;                                                                  \
    if (!parallel || tasks == 1)                                                                                         \
      for (int64_t t = 0; t < tasks; t++) lamina_conv_direct_task_##S(&job, t, 0);                                       \
    else                                                                                                                 \
      lamina_pool_run(pool, tasks, lamina_conv_direct_task_##S, &job);                                                   \
    return job.failed ? LAMINA_ERROR_MEMORY : 0;                                                                         \
  }                                                                                                                      \
                                                                                                                         \
  /* Depthwise convolution (one input channel per group: groups == in_channels, MobileNet's and ShuffleNet's 3x3         \
     layers), vectorized along the output columns for any stride and dilation. Per (image, group) the input plane is     \
     copied once into a zero-padded buffer whose rows are split into stride_width phases (padded column c at phase       \
     c % stride, index c / stride), so tap j of output column ow is element ow + j * dilation / stride of phase          \
     j * dilation % stride: every tap of a vector of outputs is one contiguous load, at stride 2 as at stride 1. The     \
     group's output channels (usually one) are computed from the buffer a row at a time, the taps unrolled for 3x3       \
     with the weights in registers; the fused epilogue (or the max pool written instead of the result) runs on each      \
     finished (image, group) block while it is in cache. Tasks: runs of (image, group) pairs, over the threads when      \
     the work is large enough. */                                                                                        \
  typedef struct lamina_conv_depthwise_job_##S {                                                                         \
    const lamina_conv2d_geometry* g;                                                                                     \
    const T* x;                                                                                                          \
    const T* w;                                                                                                          \
    const T* bias;                                                                                                       \
    int64_t bias_count;                                                                                                  \
    T* y;                                                                                                                \
    const lamina_gemm_epilogue* epilogue;                                                                                \
    lamina_pool* pool; /* its threads' scratch memory holds the padded plane (and the block to pool) */                  \
    int64_t padded_height, phase_width; /* rows of the padded plane; elements of one phase of a padded row */            \
    int64_t units, tasks;               /* (image, group) pairs, and the tasks they are split over */                    \
    int failed;                                                                                                          \
  } lamina_conv_depthwise_job_##S;                                                                                       \
                                                                                                                         \
  /* Output rows [first_row, end_row) of one channel from its phased padded plane (rows `row_width` apart), into out     \
     (the channel's plane, rows OW apart, starting at row out_row0). KH and KW: the kernel's size when it is a           \
     compile-time constant of the caller (the taps unrolled, the weights in registers, four output rows at a time so     \
     that four chains of multiply-adds overlap), 0 for runtime loops. */                                                 \
  static inline __attribute__((always_inline)) void lamina_conv_depthwise_rows_##S(                                      \
      const lamina_conv2d_geometry* g, const T* padded, int64_t row_width, int64_t phase_width, const int64_t* offsets,  \
      const T* weights, T bias, T* out, int64_t out_row0, int64_t first_row, int64_t end_row, const int KH, const int KW) { \
    enum { VL = LAMINA_CONV_VBYTES / sizeof(T), RB = 4 };                                                                \
    const int64_t s = g->stride_width, dh = g->dilation_height, dw = g->dilation_width, OW = g->out_width;               \
    const int64_t step = g->stride_height * row_width;                                                                   \
    if (!KH || !KW) {                                                                                                    \
      const int64_t kh = g->kernel_height, kw = g->kernel_width;                                                         \
      for (int64_t oh = first_row; oh < end_row; oh++) {                                                                 \
        const T* top = padded + oh * step;                                                                               \
        for (int64_t ow0 = 0; ow0 < OW; ow0 += VL) {                                                                     \
          lamina_conv_vector_##S sum = bias - (lamina_conv_vector_##S){0};                                               \
          for (int64_t i = 0; i < kh; i++) {                                                                             \
            const T* row = top + i * dh * row_width + ow0;                                                               \
            for (int64_t j = 0; j < kw; j++)                                                                             \
              sum += weights[i * kw + j] * lamina_conv_loadu_##S(row + (j * dw) % s * phase_width + (j * dw) / s);       \
          }                                                                                                              \
          lamina_conv_store_first_##S(out + (oh - out_row0) * OW + ow0, sum, OW - ow0);                                  \
        }                                                                                                                \
      }                                                                                                                  \
      return;                                                                                                            \
    }                                                                                                                    \
    /* The weights as vectors, once per channel (offsets: each tap's in the phased padded plane). */                     \
    lamina_conv_vector_##S taps[KH * KW];                                                                                \
    _Pragma("GCC unroll 49") for (int t = 0; t < KH * KW; t++) taps[t] = weights[t] - (lamina_conv_vector_##S){0};       \
    int64_t oh = first_row;                                                                                              \
    for (; oh + RB <= end_row; oh += RB) {                                                                               \
      const T* top = padded + oh * step;                                                                                 \
      for (int64_t ow0 = 0; ow0 < OW; ow0 += VL) {                                                                       \
        lamina_conv_vector_##S sums[RB];                                                                                 \
        _Pragma("GCC unroll 4") for (int r = 0; r < RB; r++) sums[r] = bias - (lamina_conv_vector_##S){0};               \
        _Pragma("GCC unroll 49") for (int t = 0; t < KH * KW; t++)                                                       \
          _Pragma("GCC unroll 4") for (int r = 0; r < RB; r++)                                                           \
            sums[r] += taps[t] * lamina_conv_loadu_##S(top + r * step + offsets[t] + ow0);                               \
        _Pragma("GCC unroll 4") for (int r = 0; r < RB; r++)                                                             \
          lamina_conv_store_first_##S(out + (oh + r - out_row0) * OW + ow0, sums[r], OW - ow0);                          \
      }                                                                                                                  \
    }                                                                                                                    \
    /* The last rows: one at a time, a chain per kernel row. */                                                          \
    for (; oh < end_row; oh++) {                                                                                         \
      const T* top = padded + oh * step;                                                                                 \
      for (int64_t ow0 = 0; ow0 < OW; ow0 += VL) {                                                                       \
        lamina_conv_vector_##S sums[KH];                                                                                 \
        _Pragma("GCC unroll 7") for (int i = 0; i < KH; i++) sums[i] = (lamina_conv_vector_##S){0};                      \
        _Pragma("GCC unroll 49") for (int t = 0; t < KH * KW; t++)                                                       \
          sums[t / KW] += taps[t] * lamina_conv_loadu_##S(top + offsets[t] + ow0);                                       \
        lamina_conv_vector_##S sum = bias - (lamina_conv_vector_##S){0};                                                 \
        _Pragma("GCC unroll 7") for (int i = 0; i < KH; i++) sum += sums[i];                                             \
        lamina_conv_store_first_##S(out + (oh - out_row0) * OW + ow0, sum, OW - ow0);                                    \
      }                                                                                                                  \
    }                                                                                                                    \
  }                                                                                                                      \
                                                                                                                         \
  /* The 3x3 kernel of one channel at unit width dilation and stride 1 or 2: taps j = 1 and 2 of a kernel row are c1     \
     and c2 elements after tap 0 in the phased padded plane (1 and 2 at stride 1: constant displacements of one load     \
     address, where the general path kept nine offsets and ran out of registers; QW and 1 at stride 2). A kernel row is  \
     `row_step` after the one above, an output row `step` after the one above. */                                        \
  typedef struct lamina_conv_dw3_taps_##S {                                                                              \
    lamina_conv_vector_##S w[9], start;                                                                                  \
  } lamina_conv_dw3_taps_##S;                                                                                            \
                                                                                                                         \
  /* One vector of outputs whose window's top left is at a: a chain of multiply-adds per kernel row. */                  \
  static inline __attribute__((always_inline)) lamina_conv_vector_##S lamina_conv_dw3_vector_##S(                        \
      const lamina_conv_dw3_taps_##S* k, const T* a, int64_t row_step, const int64_t c1, const int64_t c2) {             \
    const T* a1 = a + row_step;                                                                                          \
    const T* a2 = a1 + row_step;                                                                                         \
    lamina_conv_vector_##S top = k->start + k->w[0] * lamina_conv_loadu_##S(a);                                          \
    lamina_conv_vector_##S middle = k->w[3] * lamina_conv_loadu_##S(a1);                                                 \
    lamina_conv_vector_##S bottom = k->w[6] * lamina_conv_loadu_##S(a2);                                                 \
    top += k->w[1] * lamina_conv_loadu_##S(a + c1);                                                                      \
    middle += k->w[4] * lamina_conv_loadu_##S(a1 + c1);                                                                  \
    bottom += k->w[7] * lamina_conv_loadu_##S(a2 + c1);                                                                  \
    top += k->w[2] * lamina_conv_loadu_##S(a + c2);                                                                      \
    middle += k->w[5] * lamina_conv_loadu_##S(a1 + c2);                                                                  \
    bottom += k->w[8] * lamina_conv_loadu_##S(a2 + c2);                                                                  \
    return top + middle + bottom;                                                                                        \
  }                                                                                                                      \
                                                                                                                         \
  /* Four output rows at a time, so twelve chains overlap. */                                                            \
  static inline __attribute__((always_inline)) void lamina_conv_depthwise_3x3_##S(                                       \
      const T* padded, int64_t step, int64_t row_step, const int64_t c1, const int64_t c2, const T* weights, T bias,     \
      T* out, int64_t OH, int64_t OW) {                                                                                  \
    enum { VL = LAMINA_CONV_VBYTES / sizeof(T), RB = 4 };                                                                \
    lamina_conv_dw3_taps_##S k;                                                                                          \
    for (int t = 0; t < 9; t++) k.w[t] = weights[t] - (lamina_conv_vector_##S){0};                                       \
    k.start = bias - (lamina_conv_vector_##S){0};                                                                        \
    int64_t oh = 0;                                                                                                      \
    for (; oh + RB <= OH; oh += RB) {                                                                                    \
      const T* rows = padded + oh * step;                                                                                \
      for (int64_t ow0 = 0; ow0 < OW; ow0 += VL) {                                                                       \
        lamina_conv_vector_##S sums[RB];                                                                                 \
        _Pragma("GCC unroll 4") for (int r = 0; r < RB; r++)                                                             \
          sums[r] = lamina_conv_dw3_vector_##S(&k, rows + r * step + ow0, row_step, c1, c2);                             \
        _Pragma("GCC unroll 4") for (int r = 0; r < RB; r++)                                                             \
          lamina_conv_store_first_##S(out + (oh + r) * OW + ow0, sums[r], OW - ow0);                                     \
      }                                                                                                                  \
    }                                                                                                                    \
    for (; oh < OH; oh++)                                                                                                \
      for (int64_t ow0 = 0; ow0 < OW; ow0 += VL)                                                                         \
        lamina_conv_store_first_##S(out + oh * OW + ow0,                                                                 \
                                    lamina_conv_dw3_vector_##S(&k, padded + oh * step + ow0, row_step, c1, c2), OW - ow0); \
  }                                                                                                                      \
                                                                                                                         \
  static inline void lamina_conv_depthwise_task_##S(void* argument, int64_t task, int thread) {                          \
    lamina_conv_depthwise_job_##S* job = (lamina_conv_depthwise_job_##S*)argument;                                       \
    const lamina_conv2d_geometry* g = job->g;                                                                            \
    const int64_t G = g->groups, og = g->out_channels / G, kh = g->kernel_height, kw = g->kernel_width;                  \
    const int64_t H = g->in_height, W = g->in_width, OH = g->out_height, OW = g->out_width, P = OH * OW;                 \
    const int64_t s = g->stride_width, HP = job->padded_height, QW = job->phase_width, RW = s * QW;                      \
    const int pooled = g->pool_height > 0;                                                                               \
    const size_t padded_bytes = (size_t)(HP * RW) * sizeof(T), block_offset = (padded_bytes + 63) / 64 * 64;             \
    const size_t needed = block_offset + (pooled ? (size_t)(og * P) * sizeof(T) : 0);                                    \
    size_t scratch_bytes = 0;                                                                                            \
    unsigned char* scratch = job->pool ? (unsigned char*)lamina_pool_scratch(job->pool, thread, &scratch_bytes) : NULL;  \
    const int allocated = !scratch || scratch_bytes < needed;                                                            \
    if (allocated) scratch = (unsigned char*)malloc(needed);                                                             \
    if (!scratch) {                                                                                                      \
      job->failed = 1; /* read after the pool run returns */                                                             \
      return;                                                                                                            \
    }                                                                                                                    \
    T* padded = (T*)scratch;                                                                                             \
    T* block = (T*)(scratch + block_offset);                                                                             \
    int64_t first, end;                                                                                                  \
    lamina_conv_task_range(job->units, job->tasks, task, &first, &end);                                                  \
    /* Each tap's offset in the phased padded plane (for the unrolled 3x3 taps). */                                      \
    int64_t offsets[9];                                                                                                  \
    for (int64_t t = 0; t < 9 && t < kh * kw; t++)                                                                       \
      offsets[t] = t / kw * g->dilation_height * RW + (t % kw * g->dilation_width) % s * QW + (t % kw * g->dilation_width) / s; \
    /* Zeroed once for the task's units (one call: per row and phase cost more on small planes); the copies below       \
       overwrite the same positions for every unit. */                                                                  \
    memset(padded, 0, padded_bytes);                                                                                    \
    for (int64_t unit = first; unit < end; unit++) {                                                                     \
      const int64_t image = unit / G, group = unit % G;                                                                  \
      const T* plane = job->x + (image * g->in_channels + group) * H * W;                                                \
      /* The input rows copied into the padded plane: for a stride s > 1 each row split into s phases, phase p holding  \
         padded columns q * s + p, input column q * s + p - pad_left. Every unit writes the same positions, so the      \
         rest (the padding) stays as zeroed once before the loop. The phases are read straight from the input rows: a   \
         padded copy written just before would stall the loads that split it (store forwarding fails across the         \
         vectors). */                                                                                                   \
      if (s == 1) {                                                                                                      \
        for (int64_t r = 0; r < H; r++)                                                                                  \
          lamina_conv_copy_row_##S(padded + (g->pad_top + r) * RW + g->pad_left, plane + r * W, W);                      \
      } else if (s == 2) {                                                                                              \
        /* Input column t lands in phase (t + pad_left) % 2 at (t + pad_left) / 2: the even columns in one phase from   \
           pad_left / 2 on, the odd ones in the other from (pad_left + 1) / 2, each cut at the phase's width. */        \
        const int64_t pl = g->pad_left, even_first = pl / 2, odd_first = (pl + 1) / 2;                                  \
        const int64_t evens = lamina_conv_max(0, lamina_conv_min((W + 1) / 2, QW - even_first));                        \
        const int64_t odds = lamina_conv_max(0, lamina_conv_min(W / 2, QW - odd_first));                                \
        for (int64_t r = 0; r < H; r++) {                                                                               \
          T* row = padded + (g->pad_top + r) * RW;                                                                      \
          LAMINA_CONV_SPLIT_PHASES_##S(row + (pl % 2) * QW + even_first, evens, row + ((pl + 1) % 2) * QW + odd_first,  \
                                       odds, plane + r * W)                                                             \
        }                                                                                                               \
      } else {                                                                                                          \
        for (int64_t p = 0; p < s; p++) {                                                                               \
          const int64_t shift = p - g->pad_left;                                                                        \
          const int64_t inside = lamina_conv_min(QW, shift >= 0 ? 0 : (-shift + s - 1) / s);                            \
          const int64_t outside = lamina_conv_max(inside, lamina_conv_min(QW, (W - shift + s - 1) / s));                \
          for (int64_t r = 0; r < H; r++) {                                                                             \
            T* phase = padded + (g->pad_top + r) * RW + p * QW;                                                         \
            const T* from = plane + r * W;                                                                              \
            for (int64_t q = inside; q < outside; q++) phase[q] = from[q * s + shift];                                  \
          }                                                                                                             \
        }                                                                                                               \
      }                                                                                                                 \
      for (int64_t o = 0; o < og; o++) {                                                                                 \
        const int64_t channel = group * og + o;                                                                          \
        const T* weights = job->w + channel * kh * kw;                                                                   \
        const T b = job->bias ? job->bias[job->bias_count == 1 ? 0 : channel] : (T)0;                                    \
        T* out = pooled ? block + o * P : job->y + (image * g->out_channels + channel) * P;                              \
        if (kh == 3 && kw == 3 && g->dilation_width == 1 && s == 1)                                                      \
          lamina_conv_depthwise_3x3_##S(padded, g->stride_height * RW, g->dilation_height * RW, 1, 2, weights, b, out, OH, OW); \
        else if (kh == 3 && kw == 3 && g->dilation_width == 1 && s == 2)                                                 \
          lamina_conv_depthwise_3x3_##S(padded, g->stride_height * RW, g->dilation_height * RW, QW, 1, weights, b, out, OH, OW); \
        else if (kh == 3 && kw == 3)                                                                                     \
          lamina_conv_depthwise_rows_##S(g, padded, RW, QW, offsets, weights, b, out, 0, 0, OH, 3, 3);                   \
        else                                                                                                             \
          lamina_conv_depthwise_rows_##S(g, padded, RW, QW, offsets, weights, b, out, 0, 0, OH, 0, 0);                   \
      }                                                                                                                  \
      const int64_t first_plane = image * g->out_channels + group * og;                                                  \
      if (pooled)                                                                                                        \
        lamina_conv_pool_block_##S(g, block, P, og, first_plane, 0, lamina_conv_pooled_height(g), job->y, job->epilogue); \
    }                                                                                                                    \
    /* The epilogue once over the task's planes (contiguous in y: units are (image, group) in order), still in           \
       cache: one call per channel cost ShuffleNet's depthwise layers about a tenth of their time. */                    \
    if (!pooled && job->epilogue && end > first) {                                                                       \
      if (job->epilogue->planes)                                                                                         \
        job->epilogue->apply(job->epilogue->arg, job->y, OH * OW, first * og, 0, (end - first) * og, OH * OW);           \
      else                                                                                                               \
        job->epilogue->apply(job->epilogue->arg, job->y, OW, first * og * OH, 0, (end - first) * og * OH, OW);           \
    }                                                                                                                    \
    if (allocated) free(scratch);                                                                                        \
  }                                                                                                                      \
                                                                                                                         \
  /* Whether the depthwise kernel computes this convolution: one input channel per group (the schedule's choice;         \
     LAMINA_CONV_DEPTHWISE_KERNEL=0 vetoes it). */                                                                       \
  static inline int lamina_conv_depthwise_fits_##S(const lamina_conv2d_geometry* g) {                                    \
    return LAMINA_CONV_DEPTHWISE_KERNEL && g->groups > 0 && g->in_channels == g->groups && g->out_channels >= g->groups; \
  }                                                                                                                      \
                                                                                                                         \
  static inline int lamina_conv2d_depthwise_##S(lamina_pool* pool, const lamina_conv2d_geometry* g, const T* x, const T* w, \
                                                const T* bias, int64_t bias_count, T* y, const lamina_gemm_epilogue* epilogue) { \
    enum { VL = LAMINA_CONV_VBYTES / sizeof(T) };                                                                        \
    const int64_t OW = g->out_width, s = g->stride_width;                                                                \
    if (g->batch == 0 || g->out_height == 0 || OW == 0) return 0;                                                        \
    /* Rows the windows read; columns the last vector of a row reads (its extra lanes are not stored), split into        \
       `s` phases of phase_width elements. */                                                                            \
    const int64_t padded_height =                                                                                        \
        lamina_conv_max((g->out_height - 1) * g->stride_height + (g->kernel_height - 1) * g->dilation_height + 1,        \
                        g->pad_top + g->in_height);                                                                      \
    const int64_t reach = (OW + VL - 1) / VL * VL + (g->kernel_width - 1) * g->dilation_width / s;                       \
    const int64_t phase_width = lamina_conv_max(reach, (g->pad_left + g->in_width + s - 1) / s);                         \
    const int threads = pool ? lamina_pool_threads(pool) : 1;                                                            \
    const int64_t units = g->batch * g->groups;                                                                          \
    const int64_t work = g->batch * g->out_channels * g->out_height * OW * g->kernel_height * g->kernel_width;           \
    const int parallel = threads > 1 && work >= LAMINA_CONV_DEPTHWISE_PARALLEL_WORK;                                     \
    const int64_t tasks = parallel ? lamina_conv_min(units, 8 * (int64_t)threads) : 1;                                   \
    lamina_conv_depthwise_job_##S job = {g, x, w, bias, bias_count, y, epilogue, pool, padded_height, phase_width,       \
                                         units, tasks, 0};                                                               \
    if (tasks == 1)                                                                                                      \
      lamina_conv_depthwise_task_##S(&job, 0, 0);                                                                        \
    else                                                                                                                 \
      lamina_pool_run(pool, tasks, lamina_conv_depthwise_task_##S, &job);                                                \
    return job.failed ? LAMINA_ERROR_MEMORY : 0;                                                                         \
  }                                                                                                                      \
                                                                                                                         \
  /* The pool of a whole result computed apart (im2col and the GEMM), planes [first, end) of task t. */                   \
  typedef struct lamina_conv_pool_job_##S {                                                                              \
    const lamina_conv2d_geometry* g;                                                                                     \
    const T* whole;                                                                                                      \
    T* y;                                                                                                                \
    const lamina_gemm_epilogue* epilogue;                                                                                \
    int64_t planes, tasks;                                                                                               \
  } lamina_conv_pool_job_##S;                                                                                            \
                                                                                                                         \
  static inline void lamina_conv_pool_task_##S(void* argument, int64_t task, int thread) {                               \
    (void)thread;                                                                                                        \
    const lamina_conv_pool_job_##S* job = (const lamina_conv_pool_job_##S*)argument;                                     \
    const int64_t P = job->g->out_height * job->g->out_width, PH = lamina_conv_pooled_height(job->g);                   \
    int64_t first, end;                                                                                                  \
    lamina_conv_task_range(job->planes, job->tasks, task, &first, &end);                                                 \
    for (int64_t plane = first; plane < end; plane++)                                                                    \
      lamina_conv_pool_block_##S(job->g, job->whole + plane * P, P, 1, plane, 0, PH, job->y, job->epilogue);             \
  }                                                                                                                      \
                                                                                                                         \
  /* Whether the forward convolution takes the channel kernel (as lamina_conv2d_forward_with_* decides). */              \
  static inline int lamina_conv_takes_channel_kernel_##S(const lamina_conv2d_geometry* g) {                              \
    return lamina_conv_channels_fits_##S(g) &&                                                                           \
           (LAMINA_CONV_FORCE_CHANNEL_KERNEL || g->algorithm == LAMINA_CONV_ALGORITHM_DIRECT_CHANNELS);                  \
  }                                                                                                                      \
                                                                                                                         \
  /* Whether the forward convolution takes im2col and the GEMM (not a direct kernel). */                                 \
  static inline int lamina_conv_forward_uses_gemm_##S(const lamina_conv2d_geometry* g) {                                 \
    if (lamina_conv_takes_channel_kernel_##S(g)) return 0;                                                               \
    if (g->algorithm == LAMINA_CONV_ALGORITHM_DEPTHWISE) return 0; /* depthwise, or a direct kernel when vetoed */         \
    if ((g->algorithm == LAMINA_CONV_ALGORITHM_AUTO || g->algorithm == LAMINA_CONV_ALGORITHM_DIRECT_WIDTH) &&            \
        lamina_conv_direct_fits_##S(g))                                                                                  \
      return 0;                                                                                                          \
    return 1;                                                                                                            \
  }                                                                                                                      \
                                                                                                                         \
  /* Elements of one group's packed weights (the GEMM's A: out_channels / groups rows of K). */                          \
  static inline int64_t lamina_conv_packed_group_elements_##S(const lamina_conv2d_geometry* g) {                         \
    const int64_t og = g->out_channels / g->groups;                                                                      \
    const int64_t K = g->in_channels / g->groups * g->kernel_height * g->kernel_width;                                   \
    return (LAMINA_GEMM_PACKED_A_ELEMENTS(og, K) + 15) / 16 * 16; /* each group's panels 64-byte aligned */              \
  }                                                                                                                      \
                                                                                                                         \
  static inline int lamina_conv2d_forward_with_##S(lamina_pool* pool, const lamina_conv2d_geometry* g, const T* x,       \
                                                   const T* w, const T* packed_w, const T* bias, int64_t bias_count,     \
                                                   T* y, const lamina_gemm_epilogue* epilogue);                          \
                                                                                                                         \
  /* The groups of one image in one pool run (grouped convolutions on im2col and the GEMM, ShuffleNet's 1x1 layers       \
     in 4 groups): tasks over (group, band of output columns), each a GEMM on its own thread, instead of one pool        \
     run per group, each split over the threads and each ending in a wait for the slowest thread. Bands are whole        \
     GEMM panels (two vectors of columns), so a split adds no padded columns. */                                         \
  typedef struct lamina_conv_groups_job_##S {                                                                            \
    const lamina_conv2d_geometry* g;                                                                                     \
    int64_t image;                                                                                                       \
    const T* x;                                                                                                          \
    const T* w;                                                                                                          \
    const T* packed_w; /* lamina_conv_packed_group_elements_* per group, or NULL */                                      \
    const T* bias;                                                                                                       \
    int64_t bias_count;                                                                                                  \
    T* y;                                                                                                                \
    const lamina_gemm_epilogue* epilogue;                                                                                \
    int pointwise;                                                                                                       \
    int64_t bands, panels; /* column bands per group; panels of 2 * VL columns in a group's P columns */                 \
  } lamina_conv_groups_job_##S;                                                                                          \
                                                                                                                         \
  /* The B packer and the epilogue of a band: the group's own, shifted by the band's first column. */                    \
  typedef struct lamina_conv_band_packer_##S {                                                                           \
    const lamina_gemm_b_packer* whole;                                                                                   \
    int64_t column0;                                                                                                     \
  } lamina_conv_band_packer_##S;                                                                                         \
                                                                                                                         \
  static inline void lamina_conv_band_pack_##S(const void* argument, int64_t p0, int64_t kc, int64_t j0, int64_t nc,     \
                                               int64_t nr, void* packed) {                                               \
    const lamina_conv_band_packer_##S* band = (const lamina_conv_band_packer_##S*)argument;                              \
    band->whole->pack(band->whole->arg, p0, kc, band->column0 + j0, nc, nr, packed);                                     \
  }                                                                                                                      \
                                                                                                                         \
  typedef struct lamina_conv_band_epilogue_##S {                                                                         \
    const lamina_gemm_epilogue* whole;                                                                                   \
    int64_t column0;                                                                                                     \
  } lamina_conv_band_epilogue_##S;                                                                                       \
                                                                                                                         \
  static inline void lamina_conv_band_epilogue_apply_##S(void* argument, void* c, int64_t ldc, int64_t row0, int64_t col0, \
                                                         int64_t rows, int64_t cols) {                                   \
    const lamina_conv_band_epilogue_##S* band = (const lamina_conv_band_epilogue_##S*)argument;                          \
    band->whole->apply(band->whole->arg, (T*)c - band->column0, ldc, row0, band->column0 + col0, rows, cols);            \
  }                                                                                                                      \
                                                                                                                         \
  static inline void lamina_conv_groups_task_##S(void* argument, int64_t task, int thread) {                             \
    (void)thread;                                                                                                        \
    enum { VL = LAMINA_CONV_VBYTES / sizeof(T) };                                                                        \
    const lamina_conv_groups_job_##S* job = (const lamina_conv_groups_job_##S*)argument;                                 \
    const lamina_conv2d_geometry* g = job->g;                                                                            \
    const int64_t G = g->groups, cg = g->in_channels / G, og = g->out_channels / G;                                      \
    const int64_t K = cg * g->kernel_height * g->kernel_width, P = g->out_height * g->out_width;                         \
    const int64_t group = task / job->bands, band = task % job->bands;                                                   \
    const int64_t column0 = lamina_conv_min(P, job->panels * band / job->bands * 2 * VL);                                \
    const int64_t column1 = lamina_conv_min(P, job->panels * (band + 1) / job->bands * 2 * VL);                          \
    if (column1 <= column0) return;                                                                                      \
    const T* first = job->x + (job->image * g->in_channels + group * cg) * g->in_height * g->in_width;                   \
    const lamina_conv_columns_##S source = {g, first};                                                                   \
    const lamina_gemm_b_packer whole_packer = {lamina_conv_pack_columns_##S, &source};                                   \
    const lamina_conv_band_packer_##S band_source = {&whole_packer, column0};                                            \
    const lamina_gemm_b_packer packer = {lamina_conv_band_pack_##S, &band_source};                                       \
    /* A bias per channel is the GEMM's row bias (added in its registers); a single value stays a pass. A fused       \
       epilogue that is only a relu is the GEMM's too (after the bias: only without a pass of it). */                   \
    const T* row_bias = job->bias && job->bias_count > 1 ? job->bias + group * og : NULL;                               \
    const T* pass_bias = row_bias ? NULL : job->bias;                                                                    \
    const int relu = !pass_bias && job->epilogue && job->epilogue->relu_only;                                            \
    lamina_conv_block_epilogue_##S block = {g, g->out_channels, g->out_height, g->out_width,                             \
                                            job->image * g->out_channels + group * og, group * og, job->y, pass_bias,    \
                                            job->bias_count, relu ? NULL : job->epilogue};                               \
    const lamina_gemm_epilogue block_epilogue = {lamina_conv_block_epilogue_apply_##S, &block, 0, NULL, 0};              \
    const lamina_conv_band_epilogue_##S band_finish = {&block_epilogue, column0};                                        \
    const int block_work = block.bias || block.epilogue;                                                                 \
    const lamina_gemm_epilogue finish = {block_work ? lamina_conv_band_epilogue_apply_##S : NULL, (void*)&band_finish, 0, \
                                         row_bias, relu};                                                                \
    const lamina_gemm_epilogue* epilogue = (block_work || row_bias || relu) ? &finish : NULL;                            \
    T* out = job->y + (job->image * g->out_channels + group * og) * P + column0;                                         \
    const int64_t n = column1 - column0;                                                                                 \
    if (job->packed_w)                                                                                                   \
      PACKED_A_GEMM(NULL, og, n, K, job->packed_w + group * lamina_conv_packed_group_elements_##S(g), 0,                 \
                    job->pointwise ? first + column0 : NULL, P, job->pointwise ? NULL : &packer, (T)0, out, P, epilogue); \
    else if (job->pointwise)                                                                                             \
      GEMM(NULL, 0, 0, og, n, K, (T)1, job->w + group * og * K, K, first + column0, P, (T)0, out, P, epilogue);          \
    else                                                                                                                 \
      PACKER_GEMM(NULL, 0, og, n, K, (T)1, job->w + group * og * K, K, &packer, (T)0, out, P, epilogue);                 \
  }                                                                                                                      \
                                                                                                                         \
  /* Whether the groups of an image run together: more than one group, a pool of several threads and enough work. */     \
  static inline int lamina_conv_groups_together_##S(lamina_pool* pool, const lamina_conv2d_geometry* g) {                \
    const int64_t K = g->in_channels / g->groups * g->kernel_height * g->kernel_width;                                   \
    return LAMINA_CONV_GROUPS_TOGETHER && g->groups > 1 && pool && lamina_pool_threads(pool) > 1 &&                      \
           g->out_channels * g->out_height * g->out_width * K >= LAMINA_CONV_DIRECT_PARALLEL_WORK;                       \
  }                                                                                                                      \
                                                                                                                         \
  static inline void lamina_conv2d_groups_##S(lamina_pool* pool, const lamina_conv2d_geometry* g, int64_t image,         \
                                              const T* x, const T* w, const T* packed_w, const T* bias,                  \
                                              int64_t bias_count, T* y, const lamina_gemm_epilogue* epilogue,            \
                                              int pointwise) {                                                           \
    enum { VL = LAMINA_CONV_VBYTES / sizeof(T) };                                                                        \
    const int64_t G = g->groups, P = g->out_height * g->out_width, threads = lamina_pool_threads(pool);                  \
    const int64_t panels = (P + 2 * VL - 1) / (2 * VL);                                                                  \
    /* At least two tasks per thread in all, so that groups that do not divide among the threads still balance. */       \
    const int64_t bands = lamina_conv_max(1, lamina_conv_min(panels, (2 * threads + G - 1) / G));                        \
    lamina_conv_groups_job_##S job = {g, image, x, w, packed_w, bias, bias_count, y, epilogue, pointwise, bands, panels}; \
    lamina_pool_run(pool, G * bands, lamina_conv_groups_task_##S, &job);                                                 \
  }                                                                                                                      \
                                                                                                                         \
  /* y = conv2d(x, w) + bias, then the epilogue; with a pool in g, y is the pooled result and the epilogue runs on it.   \
     bias: bias_count values (one per out channel, or 1), or NULL. */                                                    \
  int lamina_conv2d_forward_##S(lamina_pool* pool, const lamina_conv2d_geometry* g, const T* x, const T* w, \
                                       const T* bias, int64_t bias_count, T* y, const lamina_gemm_epilogue* epilogue) {  \
    return lamina_conv2d_forward_with_##S(pool, g, x, w, NULL, bias, bias_count, y, epilogue);                           \
  }                                                                                                                      \
                                                                                                                         \
  /* The Winograd tile m (2 or 4) this forward convolution runs with, or 0 (another kernel). A fused pool aside: im2col \
     and Winograd compute the whole result and pool it afterwards, so the pooled geometry runs the kernel that its     \
     unpooled copy does. */                                                                                             \
  static inline int lamina_conv_winograd_tile_##S(const lamina_conv2d_geometry* g) {                                    \
    if (!LAMINA_WINOGRAD_FORCE && g->algorithm != LAMINA_CONV_ALGORITHM_WINOGRAD_2 &&                                   \
        g->algorithm != LAMINA_CONV_ALGORITHM_WINOGRAD_4)                                                               \
      return 0;                                                                                                         \
    if (!lamina_conv_forward_uses_gemm_##S(g)) return 0;                                                                \
    lamina_conv2d_geometry whole = *g;                                                                                  \
    whole.pool_height = whole.pool_width = whole.pool_stride_height = whole.pool_stride_width = 0;                      \
    if (!lamina_winograd_fits(&whole)) return 0;                                                                        \
    return LAMINA_WINOGRAD_FORCE ? LAMINA_WINOGRAD_FORCE : g->algorithm == LAMINA_CONV_ALGORITHM_WINOGRAD_2 ? 2 : 4;   \
  }                                                                                                                     \
                                                                                                                        \
  /* Elements of what lamina_conv2d_forward_derived_* keeps of w (m: lamina_conv_winograd_tile_*): the packed Winograd  \
     transform, the channel kernel's transpose, or the GEMM's packing; 0 for another direct kernel, which reads w.     \
     The same size finds the slot's buffer for lamina_conv2d_derive_* and for the kernel. */                          \
  static inline int64_t lamina_conv_derived_elements_##S(const lamina_conv2d_geometry* g, int m) {                     \
    if (m) return lamina_winograd_packed_size_##S(g, m);                                                                \
    if (lamina_conv_takes_channel_kernel_##S(g)) return lamina_conv_channels_weights_elements_##S(g);                  \
    if (!lamina_conv_forward_uses_gemm_##S(g)) return 0;                                                                \
    return g->groups * lamina_conv_packed_group_elements_##S(g);                                                        \
  }                                                                                                                     \
                                                                                                                        \
  /* Fills slot `slot` with what lamina_conv2d_forward_derived_* keeps of w when it is stale. Without w (NULL: weights  \
     that lived only until they were packed), a stale slot is an error, never a read of NULL. */                       \
  int lamina_conv2d_derive_##S(lamina_context* ctx, int64_t slot, const lamina_conv2d_geometry* g, const T* w) {      \
    if (slot < 0) return LAMINA_ERROR_ARGUMENT;                                                                         \
    const int m = lamina_conv_winograd_tile_##S(g);                                                                     \
    const int64_t elements = lamina_conv_derived_elements_##S(g, m);                                                    \
    if (elements == 0) return 0;                                                                                        \
    int stale = 1;                                                                                                      \
    T* derived = (T*)lamina_derived(ctx, slot, elements * (int64_t)sizeof(T), &stale);                                  \
    if (!derived) return LAMINA_ERROR_MEMORY;                                                                           \
    if (!stale) return 0;                                                                                               \
    int status = 0;                                                                                                     \
    if (!w) {                                                                                                           \
      status = LAMINA_ERROR_ARGUMENT;                                                                                   \
    } else if (m) {                                                                                                     \
      status = lamina_winograd_fill_weights_##S(ctx->pool, g, w, derived, m);                                           \
    } else if (lamina_conv_takes_channel_kernel_##S(g)) {                                                               \
      /* Transposed to vectors of output channels: 2.4 MB for 256 -> 256 3x3, which per call (into fresh memory, on    \
         one thread before the others start) cost ResNet-50's stride-2 layer 110 us. */                                 \
      lamina_conv_channels_pack_weights_##S(g, w, derived);                                                             \
    } else {                                                                                                            \
      const int64_t G = g->groups, og = g->out_channels / G;                                                            \
      const int64_t K = g->in_channels / G * g->kernel_height * g->kernel_width;                                        \
      const int64_t stride = lamina_conv_packed_group_elements_##S(g);                                                  \
      for (int64_t group = 0; group < G; group++) PACK_A(0, og, K, w + group * og * K, K, derived + group * stride);    \
    }                                                                                                                   \
    if (status != 0) ctx->derived[slot].version = 0; /* not filled: stale at the next call */                          \
    return status;                                                                                                      \
  }                                                                                                                     \
                                                                                                                        \
  /* The same with w a parameter whose GEMM packing (im2col), packed Winograd transform or channel kernel's transpose  \
     is kept in the context's derived slot `slot` (lamina_derived, filled by lamina_conv2d_derive_*): derived again     \
     only when a parameter may have changed since the last call, on this thread (the transform on the pool) before the \
     kernel's tasks. slot < 0 (a training step, whose weights change every step) or another direct kernel: derived per \
     call; a training step's Winograd layer with more weights per output position than a per-call transform pays for  \
     (LAMINA_WINOGRAD_PER_CALL_WEIGHTS_PER_POSITION, which the schedule waives when the transform is kept) takes im2col \
     and the GEMM instead. w may be NULL when the slot is current (weights that lived only until they were packed). */ \
  int lamina_conv2d_forward_derived_##S(lamina_context* ctx, int64_t slot, const lamina_conv2d_geometry* g, \
                                                      const T* x, const T* w, const T* bias, int64_t bias_count, T* y,   \
                                                      const lamina_gemm_epilogue* epilogue) {                            \
    const int m = lamina_conv_winograd_tile_##S(g);                                                                     \
    if (slot < 0) {                                                                                                     \
      if (m && !LAMINA_WINOGRAD_FORCE && !lamina_winograd_pays_per_call(g)) {                                           \
        lamina_conv2d_geometry gemm = *g;                                                                               \
        gemm.algorithm = LAMINA_CONV_ALGORITHM_IM2COL_GEMM;                                                             \
        return lamina_conv2d_forward_with_##S(ctx->pool, &gemm, x, w, NULL, bias, bias_count, y, epilogue);             \
      }                                                                                                                 \
      return lamina_conv2d_forward_with_##S(ctx->pool, g, x, w, NULL, bias, bias_count, y, epilogue);                   \
    }                                                                                                                   \
    const int status = lamina_conv2d_derive_##S(ctx, slot, g, w);                                                       \
    if (status != 0) return status;                                                                                     \
    const int64_t elements = lamina_conv_derived_elements_##S(g, m);                                                    \
    if (elements == 0) return lamina_conv2d_forward_with_##S(ctx->pool, g, x, w, NULL, bias, bias_count, y, epilogue);   \
    int stale = 1; /* current now: this only finds the buffer */                                                       \
    const T* derived = (const T*)lamina_derived(ctx, slot, elements * (int64_t)sizeof(T), &stale);                      \
    if (!m && lamina_conv_takes_channel_kernel_##S(g))                                                                  \
      return lamina_conv2d_channels_##S(ctx->pool, g, x, w, derived, bias, bias_count, y, epilogue);                    \
    return lamina_conv2d_forward_with_##S(ctx->pool, g, x, w, derived, bias, bias_count, y, epilogue);                  \
  }                                                                                                                     \
                                                                                                                        \
  /* The forward with w's GEMM packing given (packed_w: lamina_conv_packed_group_elements_* per group; for Winograd,   \
     lamina_winograd_packed_size_*) or not (NULL). */ \
  static inline int lamina_conv2d_forward_with_##S(lamina_pool* pool, const lamina_conv2d_geometry* g, const T* x,       \
                                                   const T* w, const T* packed_w, const T* bias, int64_t bias_count,     \
                                                   T* y, const lamina_gemm_epilogue* epilogue) {                         \
    const int64_t G = g->groups, cg = g->in_channels / G, og = g->out_channels / G;                                      \
    const int64_t K = cg * g->kernel_height * g->kernel_width, P = g->out_height * g->out_width;                          \
    const int64_t HW = g->in_height * g->in_width;                                                                         \
    /* A 1x1 kernel at stride 1 without padding reads the input as its own columns. */                                     \
    const int pointwise = g->kernel_height == 1 && g->kernel_width == 1 && g->stride_height == 1 &&                       \
                          g->stride_width == 1 && g->pad_top == 0 && g->pad_left == 0 && HW == P;                          \
    if (lamina_conv_takes_channel_kernel_##S(g))                                                                           \
      return lamina_conv2d_channels_##S(pool, g, x, w, NULL, bias, bias_count, y, epilogue);                               \
    if (g->algorithm == LAMINA_CONV_ALGORITHM_DEPTHWISE && lamina_conv_depthwise_fits_##S(g))                              \
      return lamina_conv2d_depthwise_##S(pool, g, x, w, bias, bias_count, y, epilogue);                                    \
    if (g->algorithm == LAMINA_CONV_ALGORITHM_DEPTHWISE) {                                                                 \
      /* Vetoed (LAMINA_CONV_DEPTHWISE_KERNEL=0): the direct kernel the schedule chose before the depthwise one. */         \
      lamina_conv2d_geometry direct = *g;                                                                                  \
      direct.algorithm = lamina_conv_direct_fits_##S(g) ? LAMINA_CONV_ALGORITHM_DIRECT_WIDTH                               \
                                                        : LAMINA_CONV_ALGORITHM_DIRECT_CHANNELS;                           \
      return lamina_conv2d_forward_with_##S(pool, &direct, x, w, packed_w, bias, bias_count, y, epilogue);                 \
    }                                                                                                                      \
    if ((g->algorithm == LAMINA_CONV_ALGORITHM_AUTO || g->algorithm == LAMINA_CONV_ALGORITHM_DIRECT_WIDTH) &&               \
        lamina_conv_direct_fits_##S(g))                                                                                    \
      return lamina_conv2d_direct_##S(pool, g, x, w, bias, bias_count, y, epilogue);                                       \
    if (g->pool_height > 0) {                                                                                              \
      /* The direct kernels pool each (image, group) block as they finish it; im2col and the GEMM write the whole        \
         result (into a buffer here), pooled afterwards plane by plane over the threads. */                                \
      lamina_conv2d_geometry whole = *g;                                                                                   \
      whole.pool_height = whole.pool_width = whole.pool_stride_height = whole.pool_stride_width = 0;                       \
      T* result = (T*)malloc((size_t)(g->batch * g->out_channels * P) * sizeof(T));                                       \
      if (!result) return LAMINA_ERROR_MEMORY;                                                                             \
      const int status = lamina_conv2d_forward_with_##S(pool, &whole, x, w, packed_w, bias, bias_count, result, NULL);   \
      if (status == 0) {                                                                                                   \
        const int64_t planes = g->batch * g->out_channels;                                                                 \
        lamina_conv_pool_job_##S job = {g, result, y, epilogue, planes, lamina_conv_tasks(pool, planes, planes * P)};      \
        if (job.tasks <= 1)                                                                                                \
          lamina_conv_pool_task_##S(&job, 0, 0);                                                                           \
        else                                                                                                               \
          lamina_pool_run(pool, job.tasks, lamina_conv_pool_task_##S, &job);                                               \
      }                                                                                                                    \
      free(result);                                                                                                        \
      return status;                                                                                                       \
    }                                                                                                                      \
    /* Winograd; packed_w, when given, is its packed weight transform (lamina_conv2d_forward_derived_*). */               \
    if (lamina_winograd_fits(g) && lamina_conv_winograd_tile_##S(g))                                                       \
      return lamina_conv2d_winograd_##S(pool, g, x, w, packed_w, bias, bias_count, y, epilogue,                            \
                                        lamina_conv_winograd_tile_##S(g));                                                 \
    const int64_t chunk = lamina_conv_chunk(g);                                                                            \
    T* product = NULL;                                                                                                     \
    if (chunk > 1) {                                                                                                       \
      product = (T*)malloc((size_t)(og * chunk * P) * sizeof(T));                                                          \
      if (!product) return LAMINA_ERROR_MEMORY;                                                                            \
    }                                                                                                                      \
    for (int64_t n0 = 0; n0 < g->batch; n0 += chunk) {                                                                     \
      const int64_t images = lamina_conv_min(chunk, g->batch - n0);                                                        \
      if (chunk == 1 && lamina_conv_groups_together_##S(pool, g)) {                                                        \
        lamina_conv2d_groups_##S(pool, g, n0, x, w, packed_w, bias, bias_count, y, epilogue, pointwise);                   \
        continue;                                                                                                          \
      }                                                                                                                    \
      for (int64_t group = 0; group < G; group++) {                                                                        \
        lamina_conv_job_##S job = {g, n0, images, group, x, NULL, NULL, product, y, bias, bias_count, epilogue, 1};        \
        /* The columns: the input itself for one image of a pointwise convolution, else packed from it. */                 \
        const T* first = x + (n0 * g->in_channels + group * cg) * HW;                                                      \
        const lamina_conv_columns_##S source = {g, first};                                                                 \
        const lamina_gemm_b_packer packer = {lamina_conv_pack_columns_##S, &source};                                       \
        const T* w_group = w ? w + group * og * K : NULL; /* NULL: packed_group only */                                 \
        const T* packed_group = packed_w ? packed_w + group * lamina_conv_packed_group_elements_##S(g) : NULL;           \
        if (chunk == 1) {                                                                                                  \
          /* One image: the GEMM writes its NCHW planes directly, bias and epilogue on each finished block. */             \
          /* A bias per channel is the GEMM's row bias (added in its registers); a single value stays a pass. A fused \
             epilogue that is only a relu is the GEMM's too (after the bias: only without a pass of it). */             \
          const T* row_bias = bias && bias_count > 1 ? bias + group * og : NULL;                                          \
          const T* pass_bias = row_bias ? NULL : bias;                                                                   \
          const int relu = !pass_bias && epilogue && epilogue->relu_only;                                                \
          lamina_conv_block_epilogue_##S block = {g, g->out_channels, g->out_height, g->out_width,                         \
                                                  n0 * g->out_channels + group * og, group * og, y,                        \
                                                  pass_bias, bias_count, relu ? NULL : epilogue};                          \
          const int block_work = block.bias || block.epilogue;                                                           \
          const lamina_gemm_epilogue block_epilogue = {block_work ? lamina_conv_block_epilogue_apply_##S : NULL, &block, 0, \
                                                       row_bias, relu};                                                  \
          T* out = y + (n0 * g->out_channels + group * og) * P;                                                            \
          const lamina_gemm_epilogue* finish = (block_work || row_bias || relu) ? &block_epilogue : NULL;                \
          if (packed_group)                                                                                              \
            PACKED_A_GEMM(pool, og, P, K, packed_group, 0, first, P, pointwise ? NULL : &packer, (T)0, out, P, finish);  \
          else if (pointwise)                                                                                            \
            GEMM(pool, 0, 0, og, P, K, (T)1, w_group, K, first, P, (T)0, out, P, finish);                                \
          else                                                                                                           \
            PACKER_GEMM(pool, 0, og, P, K, (T)1, w_group, K, &packer, (T)0, out, P, finish);                             \
        } else {                                                                                                         \
          if (packed_group)                                                                                              \
            PACKED_A_GEMM(pool, og, images * P, K, packed_group, 0, NULL, 0, &packer, (T)0, product, images * P, NULL);  \
          else                                                                                                           \
            PACKER_GEMM(pool, 0, og, images * P, K, (T)1, w_group, K, &packer, (T)0, product, images * P, NULL);         \
          lamina_conv_run_##S(pool, &job, images * og, images * og * P, lamina_conv_scatter_task_##S);                     \
        }                                                                                                                  \
      }                                                                                                                    \
    }                                                                                                                      \
    free(product);                                                                                                         \
    return 0;                                                                                                              \
  }                                                                                                                        \
  /* dx = the input gradient of y = conv2d(x, w) for dy (conv_transpose2d(dy, w)), + bias, then the epilogue. */          \
  int lamina_conv2d_backward_input_##S(lamina_pool* pool, const lamina_conv2d_geometry* g, const T* dy,            \
                                              const T* w, const T* bias, int64_t bias_count, T* dx,                       \
                                              const lamina_gemm_epilogue* epilogue) {                                     \
    const int64_t G = g->groups, cg = g->in_channels / G, og = g->out_channels / G;                                        \
    const int64_t K = cg * g->kernel_height * g->kernel_width, P = g->out_height * g->out_width;                          \
    const int64_t HW = g->in_height * g->in_width;                                                                         \
    const int64_t chunk = lamina_conv_chunk(g);                                                                            \
    T* columns = (T*)malloc((size_t)(K * chunk * P) * sizeof(T));                                                          \
    T* gathered = chunk > 1 ? (T*)malloc((size_t)(og * chunk * P) * sizeof(T)) : NULL;                                     \
    if (!columns || (chunk > 1 && !gathered)) {                                                                            \
      free(columns);                                                                                                       \
      free(gathered);                                                                                                      \
      return LAMINA_ERROR_MEMORY;                                                                                          \
    }                                                                                                                      \
    for (int64_t n0 = 0; n0 < g->batch; n0 += chunk) {                                                                     \
      const int64_t images = lamina_conv_min(chunk, g->batch - n0);                                                        \
      for (int64_t group = 0; group < G; group++) {                                                                        \
        lamina_conv_job_##S job = {g, n0, images, group, dy, dx, gathered, NULL, NULL, bias, bias_count, epilogue, 1};     \
        const T* dy_matrix = dy + (n0 * g->out_channels + group * og) * P;                                                 \
        if (chunk > 1) {                                                                                                   \
          lamina_conv_run_##S(pool, &job, images * og, images * og * P, lamina_conv_gather_task_##S);                      \
          dy_matrix = gathered;                                                                                            \
        }                                                                                                                  \
        /* columns [K, images * P] = w[group]^T @ dy[chunk, group] */                                                      \
        GEMM(pool, 1, 0, K, images * P, og, (T)1, w + group * og * K, K, dy_matrix, images * P, (T)0, columns,            \
             images * P, NULL);                                                                                            \
        job.columns = columns;                                                                                             \
        lamina_conv_run_##S(pool, &job, images * cg, images * K * P + images * cg * HW, lamina_conv_col2im_task_##S);     \
      }                                                                                                                    \
    }                                                                                                                      \
    free(columns);                                                                                                         \
    free(gathered);                                                                                                        \
    return 0;                                                                                                              \
  }                                                                                                                        \
                                                                                                                            \
  /* dw (+)= the weight gradient of y = conv2d(x, w) for dy over images [first, end): Σ dy @ columns(x)^T, chunk         \
     by chunk of at most `chunk` images (columns: K * chunk * P elements, gathered: og * chunk * P when chunk > 1).      \
     accumulate: add to dw instead of overwriting it with the first chunk. */                                            \
  static inline void lamina_conv_weight_range_##S(lamina_pool* pool, const lamina_conv2d_geometry* g, const T* x,        \
                                                  const T* dy, int64_t first, int64_t end, int64_t chunk, T* columns,    \
                                                  T* gathered, int accumulate, T* dw) {                                  \
    const int64_t G = g->groups, cg = g->in_channels / G, og = g->out_channels / G;                                      \
    const int64_t K = cg * g->kernel_height * g->kernel_width, P = g->out_height * g->out_width;                         \
    for (int64_t n0 = first; n0 < end; n0 += chunk) {                                                                    \
      const int64_t images = lamina_conv_min(chunk, end - n0);                                                           \
      for (int64_t group = 0; group < G; group++) {                                                                      \
        lamina_conv_job_##S job = {g, n0, images, group, x, NULL, columns, NULL, NULL, NULL, 0, NULL, 1};                \
        lamina_conv_run_##S(pool, &job, images * cg, images * K * P, lamina_conv_im2col_task_##S);                       \
        const T* dy_matrix = dy + (n0 * g->out_channels + group * og) * P;                                               \
        if (images > 1) {                                                                                                \
          lamina_conv_job_##S gather = {g, n0, images, group, dy, NULL, gathered, NULL, NULL, NULL, 0, NULL, 1};         \
          lamina_conv_run_##S(pool, &gather, images * og, images * og * P, lamina_conv_gather_task_##S);                 \
          dy_matrix = gathered;                                                                                          \
        }                                                                                                                \
        /* dw[group] [og, K] (+)= dy[chunk, group] [og, images * P] @ columns^T */                                       \
        GEMM(pool, 0, 1, og, K, images * P, (T)1, dy_matrix, images * P, columns, images * P,                            \
             (accumulate || n0 > first) ? (T)1 : (T)0, dw + group * og * K, K, NULL);                                    \
      }                                                                                                                  \
    }                                                                                                                    \
  }                                                                                                                      \
                                                                                                                         \
  /* The images of a weight gradient split over tasks, each summing its share into its own partial dw. */                \
  typedef struct lamina_conv_weight_job_##S {                                                                            \
    const lamina_conv2d_geometry* g;                                                                                     \
    const T* x;                                                                                                          \
    const T* dy;                                                                                                         \
    T* partials; /* tasks x [out_channels, K] */                                                                         \
    int64_t tasks, chunk;                                                                                                \
    int failed;                                                                                                          \
  } lamina_conv_weight_job_##S;                                                                                          \
                                                                                                                         \
  static inline void lamina_conv_weight_task_##S(void* argument, int64_t task, int thread) {                             \
    (void)thread;                                                                                                        \
    lamina_conv_weight_job_##S* job = (lamina_conv_weight_job_##S*)argument;                                             \
    const lamina_conv2d_geometry* g = job->g;                                                                            \
    const int64_t og = g->out_channels / g->groups;                                                                      \
    const int64_t K = g->in_channels / g->groups * g->kernel_height * g->kernel_width, P = g->out_height * g->out_width; \
    int64_t first, end;                                                                                                  \
    lamina_conv_task_range(g->batch, job->tasks, task, &first, &end);                                                    \
    T* partial = job->partials + task * g->out_channels * K;                                                             \
    if (first == end) {                                                                                                  \
      memset(partial, 0, (size_t)(g->out_channels * K) * sizeof(T));                                                     \
      return;                                                                                                            \
    }                                                                                                                    \
    const int64_t chunk = lamina_conv_min(job->chunk, end - first);                                                      \
    T* columns = (T*)malloc((size_t)(K * chunk * P) * sizeof(T));                                                        \
    T* gathered = chunk > 1 ? (T*)malloc((size_t)(og * chunk * P) * sizeof(T)) : NULL;                                   \
    if (!columns || (chunk > 1 && !gathered)) {                                                                          \
      job->failed = 1; /* read after the pool run returns */                                                             \
    } else {                                                                                                             \
      lamina_conv_weight_range_##S(NULL, g, job->x, job->dy, first, end, chunk, columns, gathered, 0, partial);          \
    }                                                                                                                    \
    free(columns);                                                                                                       \
    free(gathered);                                                                                                      \
  }                                                                                                                      \
                                                                                                                         \
  /* The direct weight gradient (where the direct forward kernel runs): per image and group, copies of x                 \
     zero-padded and of dy with each row padded to whole vectors; then for LAMINA_CONV_DIRECT_BLOCK output               \
     channels and one kernel tap (c, i, j) at a time, four vector sums of dy[o] * (x shifted by the tap) over the        \
     rows, added into the task's partial dw. The tasks split the images. */                                              \
  typedef struct lamina_conv_direct_weight_job_##S {                                                                     \
    const lamina_conv2d_geometry* g;                                                                                     \
    const T* x;                                                                                                          \
    const T* dy;                                                                                                         \
    T* partials; /* tasks x [out_channels, K] */                                                                         \
    int64_t tasks, padded_height, padded_width, dy_width;                                                                \
    int failed;                                                                                                          \
  } lamina_conv_direct_weight_job_##S;                                                                                   \
                                                                                                                         \
  static inline T lamina_conv_sum_##S(lamina_conv_vector_##S v) {                                                        \
    T total = 0;                                                                                                         \
    for (size_t l = 0; l < sizeof v / sizeof(T); l++) total += v[l];                                                     \
    return total;                                                                                                        \
  }                                                                                                                      \
                                                                                                                         \
  static inline void lamina_conv_direct_weight_task_##S(void* argument, int64_t task, int thread) {                      \
    (void)thread;                                                                                                        \
    lamina_conv_direct_weight_job_##S* job = (lamina_conv_direct_weight_job_##S*)argument;                               \
    const lamina_conv2d_geometry* g = job->g;                                                                            \
    enum { VL = LAMINA_CONV_VBYTES / sizeof(T) };                                                                        \
    const int64_t G = g->groups, cg = g->in_channels / G, og = g->out_channels / G;                                      \
    const int64_t kh = g->kernel_height, kw = g->kernel_width, dh = g->dilation_height, dw = g->dilation_width;          \
    const int64_t H = g->in_height, W = g->in_width, OH = g->out_height, OW = g->out_width;                              \
    const int64_t HP = job->padded_height, WP = job->padded_width, DW = job->dy_width, K = cg * kh * kw;                 \
    T* partial = job->partials + task * g->out_channels * K;                                                             \
    memset(partial, 0, (size_t)(g->out_channels * K) * sizeof(T));                                                       \
    int64_t first, end;                                                                                                  \
    lamina_conv_task_range(g->batch, job->tasks, task, &first, &end);                                                    \
    if (first == end) return;                                                                                            \
    T* padded = (T*)malloc((size_t)(cg * HP * WP + og * OH * DW) * sizeof(T));                                           \
    if (!padded) {                                                                                                       \
      job->failed = 1; /* read after the pool run returns */                                                             \
      return;                                                                                                            \
    }                                                                                                                    \
    T* gradient = padded + cg * HP * WP;                                                                                 \
    for (int64_t image = first; image < end; image++) {                                                                  \
      for (int64_t group = 0; group < G; group++) {                                                                      \
        memset(padded, 0, (size_t)(cg * HP * WP + og * OH * DW) * sizeof(T));                                            \
        for (int64_t c = 0; c < cg; c++) {                                                                               \
          const T* plane = job->x + ((image * g->in_channels + group * cg + c) * H) * W;                                 \
          for (int64_t r = 0; r < H; r++)                                                                                \
            lamina_conv_copy_row_##S(padded + (c * HP + r + g->pad_top) * WP + g->pad_left, plane + r * W, W);           \
        }                                                                                                                \
        for (int64_t o = 0; o < og; o++)                                                                                 \
          for (int64_t r = 0; r < OH; r++)                                                                               \
            memcpy(gradient + (o * OH + r) * DW, job->dy + ((image * g->out_channels + group * og + o) * OH + r) * OW,   \
                   (size_t)OW * sizeof(T));                                                                              \
        for (int64_t o0 = 0; o0 < og; o0 += 4) {                                                                         \
          const int64_t count = lamina_conv_min(4, og - o0);                                                             \
          /* A partial block repeats its last channel (computed, not stored). */                                         \
          const T* d0 = gradient + (o0 + lamina_conv_min(0, count - 1)) * OH * DW;                                       \
          const T* d1 = gradient + (o0 + lamina_conv_min(1, count - 1)) * OH * DW;                                       \
          const T* d2 = gradient + (o0 + lamina_conv_min(2, count - 1)) * OH * DW;                                       \
          const T* d3 = gradient + (o0 + lamina_conv_min(3, count - 1)) * OH * DW;                                       \
          for (int64_t c = 0; c < cg; c++) {                                                                             \
            for (int64_t i = 0; i < kh; i++) {                                                                           \
              for (int64_t j = 0; j < kw; j++) {                                                                         \
                lamina_conv_vector_##S s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};                                           \
                for (int64_t oh = 0; oh < OH; oh++) {                                                                    \
                  const T* row = padded + (c * HP + oh * g->stride_height + i * dh) * WP + j * dw;                       \
                  const int64_t at = oh * DW;                                                                            \
                  for (int64_t ow0 = 0; ow0 < DW; ow0 += VL) {                                                           \
                    const lamina_conv_vector_##S v = lamina_conv_loadu_##S(row + ow0);                                   \
                    s0 += lamina_conv_loadu_##S(d0 + at + ow0) * v;                                                      \
                    s1 += lamina_conv_loadu_##S(d1 + at + ow0) * v;                                                      \
                    s2 += lamina_conv_loadu_##S(d2 + at + ow0) * v;                                                      \
                    s3 += lamina_conv_loadu_##S(d3 + at + ow0) * v;                                                      \
                  }                                                                                                      \
                }                                                                                                        \
                const int64_t tap = (c * kh + i) * kw + j;                                                               \
                const lamina_conv_vector_##S sums[4] = {s0, s1, s2, s3};                                                 \
                for (int64_t b = 0; b < count; b++) partial[(group * og + o0 + b) * K + tap] += lamina_conv_sum_##S(sums[b]); \
              }                                                                                                          \
            }                                                                                                            \
          }                                                                                                              \
        }                                                                                                                \
      }                                                                                                                  \
    }                                                                                                                    \
    free(padded);                                                                                                        \
  }                                                                                                                      \
                                                                                                                         \
  static inline int lamina_conv2d_direct_weight_##S(lamina_pool* pool, const lamina_conv2d_geometry* g, const T* x,      \
                                                    const T* dy, T* dw) {                                                \
    enum { VL = LAMINA_CONV_VBYTES / sizeof(T) };                                                                        \
    const int64_t K = g->in_channels / g->groups * g->kernel_height * g->kernel_width, size = g->out_channels * K;       \
    const int64_t dy_width = (g->out_width + VL - 1) / VL * VL;                                                          \
    const int64_t padded_height =                                                                                        \
        lamina_conv_max((g->out_height - 1) * g->stride_height + (g->kernel_height - 1) * g->dilation_height + 1,        \
                        g->pad_top + g->in_height);                                                                      \
    const int64_t padded_width =                                                                                         \
        lamina_conv_max(dy_width + (g->kernel_width - 1) * g->dilation_width, g->pad_left + g->in_width);                \
    const int threads = pool ? lamina_pool_threads(pool) : 1;                                                            \
    const int64_t work = g->batch * size * g->out_height * g->out_width;                                                 \
    const int64_t tasks = work < LAMINA_CONV_PARALLEL_WORK * 8 ? 1 : lamina_conv_max(1, lamina_conv_min(g->batch, threads)); \
    T* partials = tasks > 1 ? (T*)malloc((size_t)(tasks * size) * sizeof(T)) : dw;                                       \
    if (!partials) return LAMINA_ERROR_MEMORY;                                                                           \
    lamina_conv_direct_weight_job_##S job = {g, x, dy, partials, tasks, padded_height, padded_width, dy_width, 0};       \
    if (tasks == 1)                                                                                                      \
      lamina_conv_direct_weight_task_##S(&job, 0, 0);                                                                    \
    else                                                                                                                 \
      lamina_pool_run(pool, tasks, lamina_conv_direct_weight_task_##S, &job);                                            \
    if (tasks > 1) {                                                                                                     \
      if (!job.failed)                                                                                                   \
        for (int64_t e = 0; e < size; e++) {                                                                             \
          T total = 0;                                                                                                   \
          for (int64_t t = 0; t < tasks; t++) total += partials[t * size + e];                                           \
          dw[e] = total;                                                                                                 \
        }                                                                                                                \
      free(partials);                                                                                                    \
    }                                                                                                                    \
    return job.failed ? LAMINA_ERROR_MEMORY : 0;                                                                         \
  }                                                                                                                      \
                                                                                                                         \
  /* dw = the weight gradient of y = conv2d(x, w) for dy: Σ over images of dy @ columns(x)^T. A small dw (few            \
     channels) is one GEMM tile whatever the batch, so then the images are split over the threads instead, each          \
     with its own GEMMs on one thread and a partial dw, summed at the end. */                                            \
  int lamina_conv2d_backward_weight_##S(lamina_pool* pool, const lamina_conv2d_geometry* g, const T* x,    \
                                                      const T* dy, T* dw) {                                              \
    const int64_t og = g->out_channels / g->groups;                                                                      \
    const int64_t K = g->in_channels / g->groups * g->kernel_height * g->kernel_width, P = g->out_height * g->out_width; \
    const int64_t size = g->out_channels * K;                                                                            \
    const int threads = pool ? lamina_pool_threads(pool) : 1;                                                            \
    if (g->batch == 0) {                                                                                                 \
      memset(dw, 0, (size_t)size * sizeof(T));                                                                           \
      return 0;                                                                                                          \
    }                                                                                                                    \
    if (lamina_conv_direct_fits_##S(g)) return lamina_conv2d_direct_weight_##S(pool, g, x, dy, dw);                       \
    if (threads > 1 && g->batch >= 2 && og * K < LAMINA_CONV_SPLIT_IMAGES_BELOW &&                                       \
        g->batch * K * P * og >= LAMINA_CONV_PARALLEL_WORK * 16) {                                                       \
      const int64_t tasks = lamina_conv_min(g->batch, threads);                                                          \
      T* partials = (T*)malloc((size_t)(tasks * size) * sizeof(T));                                                      \
      if (!partials) return LAMINA_ERROR_MEMORY;                                                                         \
      lamina_conv_weight_job_##S job = {g, x, dy, partials, tasks, lamina_conv_max(1, lamina_conv_chunk(g) / tasks), 0}; \
      lamina_pool_run(pool, tasks, lamina_conv_weight_task_##S, &job);                                                   \
      if (!job.failed) {                                                                                                 \
        for (int64_t i = 0; i < size; i++) {                                                                             \
          T total = 0;                                                                                                   \
          for (int64_t t = 0; t < tasks; t++) total += partials[t * size + i];                                           \
          dw[i] = total;                                                                                                 \
        }                                                                                                                \
      }                                                                                                                  \
      free(partials);                                                                                                    \
      return job.failed ? LAMINA_ERROR_MEMORY : 0;                                                                       \
    }                                                                                                                    \
    const int64_t chunk = lamina_conv_chunk(g);                                                                          \
    T* columns = (T*)malloc((size_t)(K * chunk * P) * sizeof(T));                                                        \
    T* gathered = chunk > 1 ? (T*)malloc((size_t)(og * chunk * P) * sizeof(T)) : NULL;                                   \
    if (!columns || (chunk > 1 && !gathered)) {                                                                          \
      free(columns);                                                                                                     \
      free(gathered);                                                                                                    \
      return LAMINA_ERROR_MEMORY;                                                                                        \
    }                                                                                                                    \
    lamina_conv_weight_range_##S(pool, g, x, dy, 0, g->batch, chunk, columns, gathered, 0, dw);                          \
    free(columns);                                                                                                       \
    free(gathered);                                                                                                      \
    return 0;                                                                                                            \
  }


#ifdef LAMINA_CONV_F64
LAMINA_WINOGRAD_DEFINE(double, f64, lamina_dgemm_pack_b, lamina_dgemm_packed_b, lamina_dgemm_packed_b_columns)
LAMINA_CONV_DEFINE(double, f64, lamina_dgemm, lamina_dgemm_packer_b, lamina_dgemm_pack_a, lamina_dgemm_packed_a)
#else
LAMINA_WINOGRAD_DEFINE(float, f32, lamina_sgemm_pack_b, lamina_sgemm_packed_b, lamina_sgemm_packed_b_columns)
LAMINA_CONV_DEFINE(float, f32, lamina_sgemm, lamina_sgemm_packer_b, lamina_sgemm_pack_a, lamina_sgemm_packed_a)
#endif
