/* lamina_math.h — math functions generated kernels call inline, so loops using them vectorize
 * (libm's are calls the vectorizer cannot see through). Included by every model.c. */
#ifndef LAMINA_MATH_H
#define LAMINA_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Bounds the inline math clamps to. gcc threads a clamp to a literal bound: on the clamped path
   the rest of the function folds to a constant, so it computes the polynomial anyway and picks
   between the paths with compares and blends (tanhf: 0.44 ns per element instead of 0.32, on
   AVX2). A bound read from a variable it cannot fold keeps the clamp one min and one max.
   clang does not thread these and is faster with the literal, so it gets constants. Weak, because a
   library links model.c once per instruction set and each defines them. */
#if defined(__GNUC__) && !defined(__clang__)
#define LAMINA_BOUND(type, name, value) __attribute__((weak, visibility("hidden"))) type name = value;
#else
#define LAMINA_BOUND(type, name, value) static const type name = value;
#endif
LAMINA_BOUND(float, lamina_tanhf_limit, 7.90531110763549805f)
LAMINA_BOUND(float, lamina_expf_highest, 88.8f)
LAMINA_BOUND(float, lamina_expf_lowest, -104.0f)
LAMINA_BOUND(double, lamina_exp_highest, 709.8)
LAMINA_BOUND(double, lamina_exp_lowest, -745.2)

/* tanh for float as an odd rational function, x * P(x^2) / Q(x^2), with x clamped to where tanh
   rounds to +-1: the [13/6] approximation Eigen uses for its fast tanh (relative error below 4e-7
   over all floats, checked against tanh in double). Branch-free, so loops calling it vectorize;
   the clamp is two selects a compiler turns into one min and one max, and NaN stays NaN (both
   comparisons fail). */
static inline float lamina_tanhf(float x) {
  const float limit = lamina_tanhf_limit;
  x = x > limit ? limit : x;
  x = x < -limit ? -limit : x;
  const float x2 = x * x;
  float p = -2.76076847742355e-16f;
  p = p * x2 + 2.00018790482477e-13f;
  p = p * x2 + -8.60467152213735e-11f;
  p = p * x2 + 5.12229709037114e-08f;
  p = p * x2 + 1.48572235717979e-05f;
  p = p * x2 + 6.37261928875436e-04f;
  p = p * x2 + 4.89352455891786e-03f;
  p = p * x;
  float q = 1.19825839466702e-06f;
  q = q * x2 + 1.18534705686654e-04f;
  q = q * x2 + 2.26843463243900e-03f;
  q = q * x2 + 4.89352518554385e-03f;
  return p / q;
}

/* e^x for float, vectorizable (libm's expf is a call the vectorizer cannot see through):
   e^x = 2^n e^r with n = rint(x / ln 2) and r = x - n ln 2 (ln 2 split in two for exactness),
   e^r by Cephes' degree-7 polynomial, 2^n built in the exponent bits in two halves so that
   results below FLT_MIN come out as denormals and above FLT_MAX as infinity. Relative error
   below 1e-7 against exp in double; NaN stays NaN. */
static inline float lamina_expf(float x) {
  const float clamped =
    x > lamina_expf_highest ? lamina_expf_highest : (x < lamina_expf_lowest ? lamina_expf_lowest : x);
  const float n = rintf(clamped * 1.44269504088896341f);
  float r = clamped - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t half = (int32_t)n / 2;
  const int32_t high = (half + 127) << 23, low = ((int32_t)n - half + 127) << 23;
  float scale_high, scale_low;
  memcpy(&scale_high, &high, sizeof scale_high);
  memcpy(&scale_low, &low, sizeof scale_low);
  const float y = p * scale_high * scale_low;
  return x != x ? x : y;
}

/* e^x for double, vectorizable, the same way: n = x / ln 2 rounded (n + 1.5 * 2^52 has n in its
   low mantissa bits, so no double-to-integer conversion AVX2 lacks), r = x - n ln 2 in two
   parts, e^r = 1 + 2r P(r²) / (Q(r²) - r P(r²)) with Cephes' Padé coefficients, 2^n in two
   halves. Relative error below 3.2e-16 for normal results (libm's: 1.1e-16); NaN stays NaN. */
static inline double lamina_exp(double x) {
  const double clamped =
    x > lamina_exp_highest ? lamina_exp_highest : (x < lamina_exp_lowest ? lamina_exp_lowest : x);
  const double shifter = 6755399441055744.0;
  const double n = rint(clamped * 1.4426950408889634074);
  const double shifted = n + shifter; /* not (x + shifter) - shifter: -ffast-math folds that */
  int64_t whole, shifter_bits;
  memcpy(&whole, &shifted, sizeof whole);
  memcpy(&shifter_bits, &shifter, sizeof shifter_bits);
  whole -= shifter_bits;
  double r = clamped - n * 6.93145751953125e-1;
  r = r - n * 1.42860682030941723212e-6;
  const double r2 = r * r;
  const double p = r * ((1.26177193074810590878e-4 * r2 + 3.02994407707441961300e-2) * r2 + 9.99999999999999999910e-1);
  const double q = ((3.00198505138664455042e-6 * r2 + 2.52448340349684104192e-3) * r2 + 2.27265548208155028766e-1) * r2 + 2.00000000000000000009e0;
  const double e = 1.0 + 2.0 * p / (q - p);
  const int64_t half = whole >> 1;
  const int64_t high = (half + 1023) << 52, low = (whole - half + 1023) << 52;
  double scale_high, scale_low;
  memcpy(&scale_high, &high, sizeof scale_high);
  memcpy(&scale_low, &low, sizeof scale_low);
  const double y = e * scale_high * scale_low;
  return x != x ? x : y;
}

/* The standard normal CDF Φ(x) for float, from erfc(|x|/√2) by the Chebyshev fit of Numerical
   Recipes' erfcc (fractional error below 1.2e-7) and the inline exp: vectorizes, and stays
   accurate in the negative tail, where ½(1 + erf(x/√2)) cancels. Exact gelu is x Φ(x). */
static inline float lamina_normal_cdff(float x) {
  const float z = fabsf(x) * 0.70710678118654752f;
  const float t = 1.0f / (1.0f + 0.5f * z);
  float p = 0.17087277f;
  p = p * t + -0.82215223f;
  p = p * t + 1.48851587f;
  p = p * t + -1.13520398f;
  p = p * t + 0.27886807f;
  p = p * t + -0.18628806f;
  p = p * t + 0.09678418f;
  p = p * t + 0.37409196f;
  p = p * t + 1.00002368f;
  p = p * t + -1.26551223f;
  const float erfc = t * lamina_expf(p - z * z);
  return x >= 0 ? 1.0f - 0.5f * erfc : 0.5f * erfc;
}

/* The logistic sigmoid, 1 / (1 + e^-x) for x >= 0 and e^x / (1 + e^x) below (neither overflows),
   with the one exponential and the one division both branches need: a vectorized loop
   evaluates both sides of the select, and a division costs as much as the exponential. */
static inline double lamina_sigmoid(double x) {
  const double e = lamina_exp(-fabs(x));
  const double inverse = 1.0 / (1.0 + e);
  return x >= 0 ? inverse : e * inverse;
}
static inline float lamina_sigmoidf(float x) {
  const float e = lamina_expf(-fabsf(x));
  const float inverse = 1.0f / (1.0f + e);
  return x >= 0 ? inverse : e * inverse;
}

/* Max pooling along a row at stride 2, windows of 2 or 3 columns (no dilation): y[t] = the maximum of
   m[2t .. 2t + kernel) for t < count, m holding `length` values (the window rows' maximum per input column);
   a later element replaces the maximum when larger or NaN, in the order the generated loops compare. Returns 1
   when it ran (AVX-512, float), 0 when the caller's loop must. 16 windows take two masked loads (each vector of m
   is loaded once) and three permutes; the vectorized loop read every other element with gathers and shuffles
   (SqueezeNet's 3x3 stride-2 pools: 97 -> 71 us on one core). */
#if defined(__AVX512F__)
#include <immintrin.h>
static inline __m512 lamina_max_later_ps(__m512 v, __m512 x) {
  const __mmask16 replace = _mm512_cmp_ps_mask(x, v, _CMP_GT_OQ) | _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
  return _mm512_mask_mov_ps(v, replace, x);
}
/* m[offset ..< offset + 16], zeros past m's `length` values; nothing past them is read, and no pointer past
   them is formed (an offset beyond the array would be undefined even under a mask of zeros). */
static inline __m512 lamina_load_first_ps(const float* m, int64_t offset, int64_t length) {
  const int64_t n = length - offset;
  if (n <= 0) return _mm512_setzero_ps();
  return _mm512_maskz_loadu_ps(n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u), m + offset);
}
/* The maximum per column of up to three rows (first, then second, then third), 16 columns from `offset`. */
static inline __m512 lamina_rows_max_ps(const float* first, const float* second, const float* third, int rows,
                                        int64_t offset, int64_t length) {
  __m512 v = lamina_load_first_ps(first, offset, length);
  if (rows > 1) v = lamina_max_later_ps(v, lamina_load_first_ps(second, offset, length));
  if (rows > 2) v = lamina_max_later_ps(v, lamina_load_first_ps(third, offset, length));
  return v;
}
/* lamina_max_pool_stride2_f32 over the maximum of 1-3 rows of `length` values, each 16 columns' maximum taken
   once, in registers, and the windows formed from it there: a convolution's fused pool used to store the rows'
   maximum to a line and read it back two columns further on, which stalls on store forwarding (SqueezeNet's
   first layer's pool, one core: 96-101 -> 79-87 us). */
static inline int lamina_max_pool_rows_stride2_f32(const float* first, const float* second, const float* third,
                                                   int rows, int64_t length, int kernel, float* y, int64_t count) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  const __m512i third_column = _mm512_setr_epi32(2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 30);
  __m512 low = lamina_rows_max_ps(first, second, third, rows, 0, length);
  for (int64_t t = 0; t < count; t += 16) {
    const int64_t c = 2 * t;
    const __m512 high = lamina_rows_max_ps(first, second, third, rows, c + 16, length);
    const __m512 next = lamina_rows_max_ps(first, second, third, rows, c + 32, length);
    __m512 v = _mm512_permutex2var_ps(low, even, high);
    v = lamina_max_later_ps(v, _mm512_permutex2var_ps(low, odd, high));
    if (kernel == 3) {
      /* Columns c + 2, c + 4, ..., c + 32: the last is next's first. */
      __m512 shifted = _mm512_permutex2var_ps(low, third_column, high);
      shifted = _mm512_mask_broadcastss_ps(shifted, (__mmask16)0x8000, _mm512_castps512_ps128(next));
      v = lamina_max_later_ps(v, shifted);
    }
    const int64_t n = count - t;
    _mm512_mask_storeu_ps(y + t, n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u), v);
    low = next;
  }
  return 1;
}
static inline int lamina_max_pool_stride2_f32(const float* m, int64_t length, int kernel, float* y, int64_t count) {
  return lamina_max_pool_rows_stride2_f32(m, m, m, 1, length, kernel, y, count);
}
#else
static inline int lamina_max_pool_stride2_f32(const float* m, int64_t length, int kernel, float* y, int64_t count) {
  (void)m, (void)length, (void)kernel, (void)y, (void)count;
  return 0;
}
static inline int lamina_max_pool_rows_stride2_f32(const float* first, const float* second, const float* third,
                                                   int rows, int64_t length, int kernel, float* y, int64_t count) {
  (void)first, (void)second, (void)third, (void)rows, (void)length, (void)kernel, (void)y, (void)count;
  return 0;
}
#endif

#endif
