/* lamina_gemm.c — matrix multiplication for the Lamina C runtime.
 *
 * One element type and one instruction set per compilation: the runtime compiles this file once per
 * (type, instruction set) it needs, with the instruction set's flags and
 *   -DLAMINA_GEMM_T=float|double  -DLAMINA_GEMM_SUFFIX=f32_avx512 (say)
 * which defines lamina_gemm_f32_avx512 (declared in lamina_runtime.h); everything else is static.
 *
 *   C[M,N] = alpha * op(A) @ op(B) + beta * C      row-major, leading dimensions lda/ldb/ldc,
 *                                                  op(X) = X or X^T (trans_a, trans_b)
 *
 * Algorithm (GotoBLAS / BLIS)
 * ---------------------------
 *   for jc in N by NC:                 B block KC x NC, packed once per (jc, pc), lives in L3
 *     for pc in K by KC:
 *       pack op(B)[pc.., jc..] into NR-column panels (KC x NR each, contiguous)
 *       for ic in M by MC:             A block MC x KC, packed (times alpha), lives in L2
 *         pack op(A)[ic.., pc..] into MR-row panels (KC x MR each, contiguous)
 *         for jr in NC by NR:          one B micro-panel (KC x NR) stays in L1 ...
 *           (first ic block, stored B: pack this B panel here, not with the whole block above;
 *            or none at all: a stored B whose rows spread over the L1's sets is read in place, its
 *            rows ldb apart, and only a last partial panel is packed (lamina_gemm_direct_b))
 *           for ir in MC by MR:        ... while the A micro-panels stream from L2
 *             micro-kernel: C[MR x NR] (+)= A panel @ B panel, accumulated in registers
 *           after the last pc: the epilogue runs on each finished MC x 128 slab of C (8 panels),
 *           while it is still in cache
 *
 * Transposes are handled entirely by the packing, so there is one micro-kernel. Packing pads partial
 * panels with zeros; an edge tile (fewer than MR rows or NR columns left) is computed into a small
 * aligned buffer and only its valid part is merged into C, so nothing outside C is ever read or written.
 * A whole row panel's last 1-4 columns (alone, or past one vector) run as a strip with the vector along
 * the rows instead (AVX-512 float: lamina_gemm_strip), so N = 49 costs 32 + 16 + 1 columns, not 64; 5-12
 * columns past a vector run as a masked vector of 8 (and a strip), 13-15 as a masked vector of 16
 * (lamina_gemm_masked), straight into C.
 * An A packed before the call (a convolution's kept weights, often only in memory: a 7x7 layer's are
 * 4 MiB) is prefetched two panels ahead on its first pass; a tile of few columns (a 7x7 or 14x14 map)
 * instead prefetches its next block of A a share per micro-kernel call over the whole current block.
 *
 * Micro-kernel: MR x NR with NR = 2 vectors, written with GCC/clang vector extensions. Per k step it
 * loads the two B vectors, broadcasts MR values of A and does 2*MR fused multiply-adds into 2*MR
 * accumulator registers. The vector width is chosen at compile time:
 *   AVX-512 (__AVX512F__, 32 zmm registers): float 12 x 32, double 12 x 16 (24 accumulators)
 *   AVX/AVX2 (16 ymm registers):             float  6 x 16, double  6 x 8  (12 accumulators)
 *   otherwise 128-bit vectors (SSE2, NEON):  float  6 x 8,  double  6 x 4
 * 12 accumulators are enough to cover the FMA latency (4 cycles x 2 pipes on Zen 3 / Skylake), and
 * 2 loads + 6 broadcasts per 12 FMAs stay within the load ports. A product with few rows that MR
 * would pad by more than 1/16 (16, 32, 40, 64 rows: a convolution's output channels) uses panels of
 * MR_NARROW = 8 (AVX-512) or 4 rows instead (lamina_gemm_panel_rows), chosen per call. Otherwise an
 * MR panel's last rows run a kernel of one or two thirds of MR (M = 20 with MR = 12 is 12 + 8 rows of
 * work, not 24), straight into C when they are a whole number of thirds.
 *
 * Blocking (bytes are what matter, so double uses half the elements of float for MC and NC):
 *   KC = 384 (256 with AVX-512): a B micro-panel, 384 x 16 floats = 24 KiB, stays in the 32 KiB L1d
 *             while the A micro-panels stream past it. Larger KC means fewer passes over C (each
 *             k-block loads and stores the C tile once); 256..384 measured best here, 384 by a little.
 *             With AVX-512 the panel is 32 floats wide, and 256 x 32 fills the L1: products of few rows
 *             (Winograd's, 16 tiles at 14x14 and 7x7) reuse a B panel little and gain more from K = 256,
 *             512 and 1024 in one, two and four blocks instead of two, three and six (KC 192: ResNet-50's
 *             forward 1.2% slower on a Zen 4, its 14x14 3x3 layers 7-13%).
 *             K is split evenly (784 -> 3 x 264, not 2 x 384 + 16).
 *   MC = 144 floats / 72 doubles: the A block is 216 KiB, well inside a 512 KiB L2 next to the B
 *             micro-panels.
 *   NC = 1024 floats / 512 doubles: the B block is 1.5 MiB, for the L3.
 * All are #ifndef-overridable (-DLAMINA_GEMM_KC=...) for tuning. Per thread, the packed blocks take
 * MC*KC + KC*NC elements (1.7 MiB) of the pool's scratch memory (2 MiB per thread).
 *
 * Threading: the pool runs independent tasks, each a rectangular tile of C that it computes with the
 * loops above using its own thread's scratch memory (lamina_pool_scratch) for the packed blocks, so
 * there is no synchronisation inside a GEMM and no allocation per call. The tile grid (rows x columns)
 * is chosen to minimise the work of the busiest thread, counting the packing that splitting
 * duplicates: splitting M repacks B for each row tile (dearly when a convolution's im2col packer gathers
 * it), splitting N repacks A for each column tile, so tall-skinny MLP shapes (M = 128, N = 512) split N
 * and tall ones split M. The last column tile may be wider than the others (196 = 96 + 100). Big
 * products get up to 4 tiles per thread (tiles of >= 2^25 multiply-adds), so a thread that is
 * descheduled (shared machine) delays only a small piece while the others take the rest. Products under
 * 2^18 multiply-adds run inline.
 *
 * Row vectors (M == 1, a batch-1 dense layer) skip packing: a vectorised GEMV that streams B once, at
 * memory speed. op(B) = B^T (a PyTorch-style [out, in] weight) is a dot product per column; op(B) = B
 * accumulates whole rows of B into a row of sums. Above 2^16 multiply-adds it is split over threads,
 * two chunks per thread: column ranges for op(B) = B^T, and K ranges for op(B) = B (each thread then
 * streams a contiguous band of B; the caller adds the partial rows, kept in its scratch, at the end).
 *
 * BLAS semantics: alpha == 0 or K == 0 only scales C by beta; beta == 0 never reads C (it may hold
 * NaN); the epilogue sees every element of C exactly once, after its final value is stored. An epilogue's
 * row bias (one value per row of C) is part of that final value: the micro-kernels start the last k-block's
 * sums from it, so it costs no pass over C (elsewhere it is added just before the epilogue's apply). An
 * epilogue that is only a relu (relu_only) is applied the same way, to the final values in registers as they
 * are stored, and its apply is not called. Epilogue
 * calls for different blocks may run concurrently on different threads. C must not overlap A or B.
 * The pool may be NULL (one thread, packing memory from the heap); a GEMM must not be called from
 * inside a task running on the same pool.
 *
 * Needs GCC or clang (vector extensions). With GCC the kernels are compiled with -ffp-contract=fast
 * (a pragma below) so a*b+c becomes an FMA even under -std=c11; clang uses __builtin_elementwise_fma.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lamina_interface.h" /* LAMINA_ERROR_MEMORY */
#include "lamina_runtime.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#if !defined(LAMINA_GEMM_T) || !defined(LAMINA_GEMM_SUFFIX)
#error "compile lamina_gemm.c with -DLAMINA_GEMM_T=float|double -DLAMINA_GEMM_SUFFIX=<name>"
#endif

typedef LAMINA_GEMM_T lamina_real;

/* The exported function: lamina_gemm_<LAMINA_GEMM_SUFFIX>. */
#define LAMINA_GEMM_PASTE(a, b) a##b
#define LAMINA_GEMM_NAME(a, b) LAMINA_GEMM_PASTE(a, b)
#define LAMINA_GEMM_FUNCTION LAMINA_GEMM_NAME(lamina_gemm_, LAMINA_GEMM_SUFFIX)
#define LAMINA_GEMM_PACK_B_FUNCTION LAMINA_GEMM_NAME(lamina_gemm_pack_b_, LAMINA_GEMM_SUFFIX)
#define LAMINA_GEMM_PACKED_B_FUNCTION LAMINA_GEMM_NAME(lamina_gemm_packed_b_, LAMINA_GEMM_SUFFIX)
#define LAMINA_GEMM_PACKED_B_COLUMNS_FUNCTION LAMINA_GEMM_NAME(lamina_gemm_packed_b_columns_, LAMINA_GEMM_SUFFIX)
#define LAMINA_GEMM_PACKER_B_FUNCTION LAMINA_GEMM_NAME(lamina_gemm_packer_b_, LAMINA_GEMM_SUFFIX)
#define LAMINA_GEMM_PACK_A_FUNCTION LAMINA_GEMM_NAME(lamina_gemm_pack_a_, LAMINA_GEMM_SUFFIX)
#define LAMINA_GEMM_PACKED_A_FUNCTION LAMINA_GEMM_NAME(lamina_gemm_packed_a_, LAMINA_GEMM_SUFFIX)

/* Bytes per element, known to the preprocessor (sizeof is not): float 4, double 8. */
#define LAMINA_GEMM_BYTES_float 4
#define LAMINA_GEMM_BYTES_double 8
#define LAMINA_GEMM_ELEMENT_BYTES LAMINA_GEMM_NAME(LAMINA_GEMM_BYTES_, LAMINA_GEMM_T)

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=fast")
#endif

/* With gcc the runtime compiles this file at -O2 -fvect-cost-model=dynamic (-O3's vectorizer on -O2's
   other passes), in 0.57 s instead of 0.68 s at -O3 (f32, AVX-512); the loops over the rows (MR) and
   columns (NR) of a tile carry "#pragma GCC unroll" (clang reads it too), so the accumulators stay in
   registers whatever the level. Single-threaded on Zen 4, f32, AVX-512, GFLOP/s (this way / -O3
   without the pragmas, as before): 128x512x784 101 / 102, 784x512x128 (A^T) 110 / 110, 128x784x512
   (B^T) 95 / 73, 512^3 104 / 106. Plain -O2 with the pragmas compiles in 0.36 s but packs B^T at 82
   and left mlp_784's training step 1% slower than before. */

/* ---- Vector width and micro-kernel shape, chosen by the instruction set compiled for ---- */
#if defined(__AVX512F__)
#define LAMINA_GEMM_VBYTES 64
#define MR 12
#define MR_NARROW 8
#elif defined(__AVX__)
#define LAMINA_GEMM_VBYTES 32
#define MR 6
#define MR_NARROW 4
#else
#define LAMINA_GEMM_VBYTES 16
#define MR 6
#define MR_NARROW 4
#endif
/* A product whose rows are a multiple of MR_NARROW but would pad MR's panels by more than 1/16 (a
   convolution's 16, 32, 40 or 64 output channels: 24, 36, 48 and 72 rows of MR = 12) uses panels of
   MR_NARROW rows: 2 * MR_NARROW accumulators (16 with AVX-512) still cover the FMA latency, and no
   multiply-add is spent on padding rows. So does one whose panels split in two halves (two threads) that
   way by more than 1/32: 128 rows are 72 + 56 in panels of 12 but 64 + 64 in panels of 8 (likewise 160,
   224, 320). Two threads on 576 -> 128 at 14x14 (128 x 196 x 576): 65.9 -> 62.8 us, 128 x 49 x 1024
   38.7 -> 35.1 us; one thread within 2%. The rule depends on m alone: packing and multiplying agree. */
static inline int lamina_gemm_panel_rows(int64_t m) {
  const int64_t wide = (m + MR - 1) / MR * MR, narrow = (m + MR_NARROW - 1) / MR_NARROW * MR_NARROW;
  const int64_t wide_halves = (m + 2 * MR - 1) / (2 * MR) * (2 * MR);
  const int64_t narrow_halves = (m + 2 * MR_NARROW - 1) / (2 * MR_NARROW) * (2 * MR_NARROW);
  return (wide - narrow) * 16 > m || (wide_halves - narrow_halves) * 32 > m ? MR_NARROW : MR;
}
/* NR is two vectors. */
#define NR (2 * LAMINA_GEMM_VBYTES / LAMINA_GEMM_ELEMENT_BYTES)
/* An MR panel's last rows run a kernel of 1, 2 or 3 row steps (a third of MR), the smallest that
   covers them, rather than MR rows of which some are zero padding. */
#define LAMINA_GEMM_ROW_STEP (MR / 3)

/* Cache blocking, in elements; see the top of the file. KC keeps a B micro-panel (KC x NR) at 24-32 KiB,
   so with 64-byte vectors (NR = 32 floats) it is smaller; MC and NC are bytes, so double gets half. */
#ifndef LAMINA_GEMM_KC
#if LAMINA_GEMM_VBYTES == 64
#define LAMINA_GEMM_KC 256
#else
#define LAMINA_GEMM_KC 384
#endif
#endif
#ifndef LAMINA_GEMM_MC
#define LAMINA_GEMM_MC (576 / LAMINA_GEMM_ELEMENT_BYTES)
#endif
#ifndef LAMINA_GEMM_NC
#define LAMINA_GEMM_NC (4096 / LAMINA_GEMM_ELEMENT_BYTES)
#endif
#define KC LAMINA_GEMM_KC
#define MC LAMINA_GEMM_MC
#define NC LAMINA_GEMM_NC

/* Below this many multiply-adds a GEMM runs on the calling thread only (dispatch would cost more). */
#ifndef LAMINA_GEMM_PARALLEL_MIN
#define LAMINA_GEMM_PARALLEL_MIN ((int64_t)1 << 18)
#endif
/* Same for the M == 1 path (memory-bound: this is 256 KiB of f32 B, which a batch-1 model called
   repeatedly finds in L2). At 2^15, LeNet-5's 400 -> 120 layer (48,000 multiply-adds) was split over
   the threads, and the whole batch-1 forward took 13.2-16.6 us against 12.6-12.7 us with it on the
   calling thread (lamina bench, 3 alternating rounds, quiet machine). */
#ifndef LAMINA_GEMV_PARALLEL_MIN
#define LAMINA_GEMV_PARALLEL_MIN ((int64_t)1 << 16)
#endif
#ifndef LAMINA_GEMV_TASKS_PER_THREAD
#define LAMINA_GEMV_TASKS_PER_THREAD 2
#endif
/* Products with fewer elements than this that are split over threads run their epilogue on the
   caller after the split, not inside each task. Measured on 2 threads, fused against unfused
   (`lamina bench --compare`): digits' 64 x 128 layer 17.9 us per forward call against 19.4 us inside
   the tasks (18.5 us unfused); deep_mlp's 256 x 256 layers 1.02-1.03x unfused against 1.00x inside
   the tasks; mlp_784's 256 x 512 layers 1.00x against 0.99x on the caller, so the line is between. */
#ifndef LAMINA_GEMM_CALLER_EPILOGUE_BELOW
#define LAMINA_GEMM_CALLER_EPILOGUE_BELOW ((int64_t)1 << 17)
#endif

#ifndef LAMINA_GEMV_MIN_CHUNK
#define LAMINA_GEMV_MIN_CHUNK 64
#endif
/* Aim for tasks of at least this many multiply-adds (~0.7 ms on one core), at most this many per thread. */
#ifndef LAMINA_GEMM_TASK_MACS
#define LAMINA_GEMM_TASK_MACS ((int64_t)1 << 25)
#endif
#ifndef LAMINA_GEMM_MAX_TASKS_PER_THREAD
#define LAMINA_GEMM_MAX_TASKS_PER_THREAD 4
#endif
/* The epilogue gets slabs of MC rows x this many NR-column panels (144 x 128 floats = 72 KiB). */
#ifndef LAMINA_GEMM_EPILOGUE_PANELS
#define LAMINA_GEMM_EPILOGUE_PANELS 8
#endif
/* Panels of a packed-before-the-call A prefetched ahead of the one being multiplied (see lamina_gemm_macro). */
#ifndef LAMINA_GEMM_A_PREFETCH_PANELS
#define LAMINA_GEMM_A_PREFETCH_PANELS 2
#endif
/* A packed-before-the-call A multiplied by at most this many columns per tile has its next block prefetched
   (into L2) a piece at each micro-kernel call of the current one (see lamina_gemm_macro); wider tiles read
   each block often enough that the first pass's misses matter less, and there the early lines only
   crowded out B's panel: 64 -> 256 at 56x56 was 3% slower. */
#ifndef LAMINA_GEMM_SPREAD_PREFETCH_COLUMNS
#define LAMINA_GEMM_SPREAD_PREFETCH_COLUMNS (8 * NR)
#endif
/* A panel's last few columns past a vector (1..4) run with the vector along the rows (lamina_gemm_strip):
   AVX-512, float only (where the masked load is one instruction). */
#if defined(__AVX512F__) && LAMINA_GEMM_ELEMENT_BYTES == 4
#define LAMINA_GEMM_STRIP_COLUMNS 4
#else
#define LAMINA_GEMM_STRIP_COLUMNS 0
#endif
/* A panel's last 5..this many columns past a vector run as a vector of 8 and a strip (lamina_gemm_masked). */
#ifndef LAMINA_GEMM_MASKED_HALF_WIDTH_COLUMNS
#define LAMINA_GEMM_MASKED_HALF_WIDTH_COLUMNS 12
#endif
/* Packing one element costs about this many multiply-adds (for choosing the thread split); a caller's packer
   (a convolution's im2col, gathering taps at a stride) about this many more: splitting M made both threads
   pack all of Inception v2's 96 -> 96 3x3 stride-2 columns, 42 us more than half each (0.5 ns an element). */
#define LAMINA_GEMM_PACK_COST 8
/* Reading an element of B in place costs about this many: an M split has every thread read all of it. */
#ifndef LAMINA_GEMM_READ_COST
#define LAMINA_GEMM_READ_COST 4
#endif
#ifndef LAMINA_GEMM_PACKER_COST
#define LAMINA_GEMM_PACKER_COST 32
#endif

#if defined(__clang__) && defined(__has_builtin)
#if __has_builtin(__builtin_elementwise_fma) && (defined(__FMA__) || defined(__aarch64__))
#define LAMINA_GEMM_FMA(a, b, c) __builtin_elementwise_fma((a), (b), (c))
#endif
#endif
#ifndef LAMINA_GEMM_FMA
#define LAMINA_GEMM_FMA(a, b, c) ((a) * (b) + (c)) /* contracted by GCC's fp-contract=fast */
#endif

typedef lamina_real lamina_vector __attribute__((vector_size(LAMINA_GEMM_VBYTES)));

static inline int64_t lamina_gemm_min(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t lamina_gemm_ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static inline int64_t lamina_gemm_round_up(int64_t a, int64_t b) { return lamina_gemm_ceil_div(a, b) * b; }

/* Block size for splitting `total` into blocks of at most `max` (a multiple of `align`) as evenly as
   possible, so there is no small leftover block (K = 784 with KC = 384 gives 3 x 264, not 2 x 384 + 16). */
static inline int64_t lamina_gemm_even_block(int64_t total, int64_t max, int64_t align) {
  int64_t blocks = lamina_gemm_ceil_div(total, max);
  int64_t size = lamina_gemm_round_up(lamina_gemm_ceil_div(total, blocks), align);
  return size < max ? size : max;
}

/* Thread split of an m x n x k product: a grid of mt x nt tiles, mtile x ntile (multiples of mr / nr) but for
   the last row and column of tiles, which end at m and n (the last column of tiles may be wider than ntile). */
typedef struct lamina_gemm_grid {
  int64_t mt, nt, mtile, ntile;
} lamina_gemm_grid;

/* A panel's last 1..LAMINA_GEMM_STRIP_COLUMNS columns past a vector run as a strip (lamina_gemm_strip), which
   costs about this many columns inside a vector each: one multiply-add per k step for the panel's rows, where
   the vector kernels spend three quarters of one on a column. */
#ifndef LAMINA_GEMM_STRIP_COST
#define LAMINA_GEMM_STRIP_COST 3
#endif
/* The work of `columns` columns of a tile, in columns of a vector kernel: whole half panels (a panel's last
   vector costs the same full or not), and a strip's few columns at their own cost (49 = 48 + 1, not 64). */
static inline int64_t lamina_gemm_column_cost(int64_t columns, int64_t nr) {
  const int64_t extra = columns % (nr / 2);
  if (LAMINA_GEMM_STRIP_COLUMNS > 0 && extra > 0 && extra <= LAMINA_GEMM_STRIP_COLUMNS)
    return columns - extra + LAMINA_GEMM_STRIP_COST * extra;
  /* 5-12 columns run as a vector of 8 and a strip (lamina_gemm_masked), half the cost of 16 on a Zen 4, but
     counted as 16 here: counted at their cost, 32 x 729 x 256 split differently and was 3% slower. */
  return lamina_gemm_round_up(columns, nr / 2);
}
static lamina_gemm_grid lamina_gemm_choose_grid(int threads, int64_t m, int64_t n, int64_t k, int64_t mr,
                                                int64_t nr, int64_t nc, int a_packed, double b_cost) {
  lamina_gemm_grid best = {1, 1, m, n};
  const int64_t macs = m * n * k;
  if (threads <= 1 || macs < LAMINA_GEMM_PARALLEL_MIN) return best;
  /* Tasks per thread: more than one when the product is big enough, so that a thread that gets
     descheduled (a shared or oversubscribed machine) holds up only a small piece of the work. */
  int64_t q = macs / ((int64_t)threads * LAMINA_GEMM_TASK_MACS);
  if (q < 1) q = 1;
  if (q > LAMINA_GEMM_MAX_TASKS_PER_THREAD) q = LAMINA_GEMM_MAX_TASKS_PER_THREAD;
  const int64_t tasks = (int64_t)threads * q;
  double best_cost = -1;
  /* Every factorisation mt x nt of the task count; the cost of a tile is its multiply-adds (padded
     to the micro-kernel: columns to half a panel, which a panel's last vector costs) plus its packing, per
     unit of k (A's only when it is not packed already: then splitting N duplicates nothing; B's at b_cost an
     element, less when it is read in place, 0 when packed already); the busiest thread does
     ceil(tiles/threads).
     Columns are cut two ways: tiles of n / nt rounded up to whole panels (the last one shorter), or
     rounded down (the last one wider, to n): 196 columns are 96 + 100 rather than 128 + 68, which made one
     thread do nearly twice the other's work. */
  for (int64_t mt = 1; mt <= tasks; mt++) {
    if (tasks % mt) continue;
    int64_t nt = tasks / mt;
    int64_t mtile = lamina_gemm_round_up(lamina_gemm_ceil_div(m, mt), mr);
    int64_t real_mt = lamina_gemm_ceil_div(m, mtile);
    for (int widest_last = 0; widest_last <= 1; widest_last++) {
      int64_t ntile, real_nt, widest;
      if (!widest_last) {
        ntile = lamina_gemm_round_up(lamina_gemm_ceil_div(n, nt), nr);
        real_nt = lamina_gemm_ceil_div(n, ntile);
        widest = lamina_gemm_column_cost(lamina_gemm_min(ntile, n), nr);
      } else {
        ntile = lamina_gemm_ceil_div(n, nt) / nr * nr;
        if (nt == 1 || ntile < nr || (nt - 1) * ntile >= n) continue;
        real_nt = nt;
        widest = lamina_gemm_column_cost(n - (nt - 1) * ntile, nr);
      }
      double tile = (double)mtile * widest + b_cost * widest +
                    (a_packed ? 0.0 : LAMINA_GEMM_PACK_COST * (double)mtile * lamina_gemm_ceil_div(widest, nc));
      double cost = tile * (double)lamina_gemm_ceil_div(real_mt * real_nt, threads);
      if (best_cost < 0 || cost < best_cost * 0.999) {
        best_cost = cost;
        best = (lamina_gemm_grid){real_mt, real_nt, mtile, ntile};
      }
    }
  }
  return best;
}

/* ---- The algorithm ---- */

static inline lamina_vector lamina_gemm_loadu(const lamina_real* p) {
  lamina_vector v;
  memcpy(&v, p, sizeof v);
  return v;
}
static inline void lamina_gemm_storeu(lamina_real* p, lamina_vector v) { memcpy(p, &v, sizeof v); }
/* Broadcast (x - 0 is exact for every x, so this folds to a plain broadcast). */
static inline lamina_vector lamina_gemm_splat(lamina_real x) { return x - (lamina_vector){0}; }
/* An epilogue's rectifier (lamina_gemm_epilogue.relu_only): 0 >= x ? 0 : x, as the model's relu computes it (NaN
   stays NaN, -0 becomes +0), on a vector by an ordered compare and a mask, and on one element. */
#if LAMINA_GEMM_ELEMENT_BYTES == 4
typedef int32_t lamina_vector_bits __attribute__((vector_size(LAMINA_GEMM_VBYTES)));
#else
typedef int64_t lamina_vector_bits __attribute__((vector_size(LAMINA_GEMM_VBYTES)));
#endif
static inline lamina_vector lamina_gemm_rectify(lamina_vector v) {
  const lamina_vector_bits nonpositive = v <= (lamina_vector){0};
  return (lamina_vector)((lamina_vector_bits)v & ~nonpositive);
}
static inline lamina_real lamina_gemm_rectify_one(lamina_real x) { return (lamina_real)0 >= x ? (lamina_real)0 : x; }
/* A final value: rectified when asked (relu: a constant where inlined, or one predictable branch). */
static inline lamina_vector lamina_gemm_final(lamina_vector v, int relu) { return relu ? lamina_gemm_rectify(v) : v; }

/* Four elements, for transposing blocks of A while packing it. */
typedef lamina_real lamina_vector4 __attribute__((vector_size(4 * sizeof(lamina_real))));
static inline lamina_vector4 lamina_gemm_load4(const lamina_real* p) {
  lamina_vector4 v;
  memcpy(&v, p, sizeof v);
  return v;
}
static inline void lamina_gemm_store4(lamina_real* p, lamina_vector4 v) { memcpy(p, &v, sizeof v); }
static inline lamina_vector4 lamina_gemm_splat4(lamina_real x) { return x - (lamina_vector4){0}; }

/* The micro-kernel: C[rows x NR] = (A panel @ B panel) + bias + beta * C, beta == 0 not reading C (rows: MR or
   MR_NARROW, a constant where it is inlined). a: KC x rows packed (element (r, p) at a[p * rows + r]); b: KC x NR
   packed, 64-byte aligned. With vectors == 1, only the panel's first vector of columns (a panel's last columns
   when they fit in one: C[rows x NR / 2]). bias: one value per row (`rows` of them), or NULL; the sums start
   from it (the last k-block of a product whose epilogue has a row bias: lamina_gemm_epilogue.row_bias). */
static inline __attribute__((always_inline)) void lamina_gemm_kernel_columns(const int rows, const int vectors,
                                                                          const int stride, const int64_t b_stride,
                                                                          int64_t kc,
                                                                       const lamina_real* restrict a,
                                                                       const lamina_real* restrict b, lamina_real* restrict c,
                                                                       int64_t ldc, lamina_real beta,
                                                                       const lamina_real* restrict bias, int relu) {
  enum { VL = sizeof(lamina_vector) / sizeof(lamina_real) };
  lamina_vector acc[MR][2];
  #pragma GCC unroll 32
  for (int r = 0; r < rows; r++) acc[r][0] = acc[r][1] = bias ? lamina_gemm_splat(bias[r]) : (lamina_vector){0};
  /* Start pulling the C tile into cache now; it is needed only at the end. */
  #pragma GCC unroll 32
  for (int r = 0; r < rows; r++) __builtin_prefetch(c + r * ldc, 1), __builtin_prefetch(c + r * ldc + NR - 1, 1);
  /* The loop is short: unrolling saves the pointer and counter updates. */
  #pragma GCC unroll 4
  for (int64_t p = 0; p < kc; p++, a += stride, b += b_stride) {
    lamina_vector b0 = lamina_gemm_loadu(b), b1 = vectors == 2 ? lamina_gemm_loadu(b + VL) : b0;
    #pragma GCC unroll 32
    for (int r = 0; r < rows; r++) {
      lamina_vector ar = lamina_gemm_splat(a[r]);
      acc[r][0] = LAMINA_GEMM_FMA(ar, b0, acc[r][0]);
      if (vectors == 2) acc[r][1] = LAMINA_GEMM_FMA(ar, b1, acc[r][1]);
    }
  }
  if (beta == (lamina_real)0) {
    #pragma GCC unroll 32
    for (int r = 0; r < rows; r++) {
      lamina_gemm_storeu(c + r * ldc, lamina_gemm_final(acc[r][0], relu));
      if (vectors == 2) lamina_gemm_storeu(c + r * ldc + VL, lamina_gemm_final(acc[r][1], relu));
    }
  } else if (beta == (lamina_real)1) {
    #pragma GCC unroll 32
    for (int r = 0; r < rows; r++) {
      lamina_gemm_storeu(c + r * ldc, lamina_gemm_final(acc[r][0] + lamina_gemm_loadu(c + r * ldc), relu));
      if (vectors == 2)
        lamina_gemm_storeu(c + r * ldc + VL, lamina_gemm_final(acc[r][1] + lamina_gemm_loadu(c + r * ldc + VL), relu));
    }
  } else {
    lamina_vector vb = lamina_gemm_splat(beta);
    #pragma GCC unroll 32
    for (int r = 0; r < rows; r++) {
      lamina_gemm_storeu(c + r * ldc, lamina_gemm_final(LAMINA_GEMM_FMA(vb, lamina_gemm_loadu(c + r * ldc), acc[r][0]), relu));
      if (vectors == 2)
        lamina_gemm_storeu(c + r * ldc + VL,
                           lamina_gemm_final(LAMINA_GEMM_FMA(vb, lamina_gemm_loadu(c + r * ldc + VL), acc[r][1]), relu));
    }
  }
}

/* The micro-kernel for panels of MR and of MR_NARROW rows (rows a constant in each: the sums stay in registers). */
static void lamina_gemm_kernel(int64_t kc, const lamina_real* restrict a, const lamina_real* restrict b,
                               lamina_real* restrict c, int64_t ldc, lamina_real beta, const lamina_real* bias,
                               int relu) {
  lamina_gemm_kernel_columns(MR, 2, MR, NR, kc, a, b, c, ldc, beta, bias, relu);
}
static void lamina_gemm_kernel_narrow(int64_t kc, const lamina_real* restrict a, const lamina_real* restrict b,
                                      lamina_real* restrict c, int64_t ldc, lamina_real beta, const lamina_real* bias,
                                      int relu) {
  lamina_gemm_kernel_columns(MR_NARROW, 2, MR_NARROW, NR, kc, a, b, c, ldc, beta, bias, relu);
}
/* The same with B read where it is stored (rows ldb apart), not from a packed panel. */
static void lamina_gemm_kernel_direct(int64_t kc, const lamina_real* restrict a, const lamina_real* restrict b,
                                      int64_t ldb, lamina_real* restrict c, int64_t ldc, lamina_real beta,
                                      const lamina_real* bias, int relu) {
  lamina_gemm_kernel_columns(MR, 2, MR, ldb, kc, a, b, c, ldc, beta, bias, relu);
}
static void lamina_gemm_kernel_narrow_direct(int64_t kc, const lamina_real* restrict a, const lamina_real* restrict b,
                                             int64_t ldb, lamina_real* restrict c, int64_t ldc, lamina_real beta,
                                             const lamina_real* bias, int relu) {
  lamina_gemm_kernel_columns(MR_NARROW, 2, MR_NARROW, ldb, kc, a, b, c, ldc, beta, bias, relu);
}
/* A whole tile of a panel of `rows` (MR or MR_NARROW) rows, B packed (b_stride NR) or read in place. */
static inline void lamina_gemm_kernel_full(int rows, int64_t kc, const lamina_real* a, const lamina_real* b,
                                           int64_t b_stride, lamina_real* c, int64_t ldc, lamina_real beta,
                                           const lamina_real* bias, int relu) {
  if (b_stride == NR)
    (rows == MR ? lamina_gemm_kernel : lamina_gemm_kernel_narrow)(kc, a, b, c, ldc, beta, bias, relu);
  else
    (rows == MR ? lamina_gemm_kernel_direct : lamina_gemm_kernel_narrow_direct)(kc, a, b, b_stride, c, ldc, beta, bias,
                                                                               relu);
}

/* The last rows of an MR-row panel (rows: 1..MR valid): the smallest of one, two or three row steps
   (thirds of MR) that covers them, so M = 32 with MR = 12 is 12 + 12 + 8 rows of work, not 36, on `vectors`
   (1 or 2) vectors of columns. Returns the rows it computed (the caller merges only the valid ones when it
   wrote aside). */
static inline __attribute__((always_inline)) int64_t lamina_gemm_kernel_steps(
    const int vectors, const int64_t b_stride, int64_t rows, int64_t kc, const lamina_real* restrict a,
    const lamina_real* restrict b, lamina_real* restrict c, int64_t ldc, lamina_real beta, const lamina_real* bias, int relu) {
  if (rows <= LAMINA_GEMM_ROW_STEP) {
    lamina_gemm_kernel_columns(LAMINA_GEMM_ROW_STEP, vectors, MR, b_stride, kc, a, b, c, ldc, beta, bias, relu);
    return LAMINA_GEMM_ROW_STEP;
  }
  if (rows <= 2 * LAMINA_GEMM_ROW_STEP) {
    lamina_gemm_kernel_columns(2 * LAMINA_GEMM_ROW_STEP, vectors, MR, b_stride, kc, a, b, c, ldc, beta, bias, relu);
    return 2 * LAMINA_GEMM_ROW_STEP;
  }
  lamina_gemm_kernel_columns(MR, vectors, MR, b_stride, kc, a, b, c, ldc, beta, bias, relu);
  return MR;
}

static int64_t lamina_gemm_kernel_tail(int64_t rows, int64_t kc, const lamina_real* restrict a,
                                       const lamina_real* restrict b, int64_t b_stride, lamina_real* restrict c,
                                       int64_t ldc, lamina_real beta, const lamina_real* bias, int relu) {
  return lamina_gemm_kernel_steps(2, b_stride, rows, kc, a, b, c, ldc, beta, bias, relu);
}

/* A panel's last columns when they fit in one vector (N = 196 leaves 4 of NR = 32, N = 784 leaves 16): rows x
   NR / 2 of C into c (NR apart, beta 0), half the multiply-adds of a whole tile. panel_rows: the panel's height
   (MR or MR_NARROW); rows: the valid ones, rounded up to the row steps in an MR panel. Returns the rows
   computed. */
static int64_t lamina_gemm_kernel_half(int panel_rows, int64_t rows, int64_t kc, const lamina_real* restrict a,
                                       const lamina_real* restrict b, lamina_real* restrict c, const lamina_real* bias) {
  if (panel_rows != MR) {
    lamina_gemm_kernel_columns(MR_NARROW, 1, MR_NARROW, NR, kc, a, b, c, NR, (lamina_real)0, bias, 0);
    return MR_NARROW;
  }
  return lamina_gemm_kernel_steps(1, NR, rows, kc, a, b, c, NR, (lamina_real)0, bias, 0);
}

/* A panel's last few columns (1..LAMINA_GEMM_STRIP_COLUMNS) with the vector along the panel's rows instead of
   its columns: per k step one masked load of the panel's rows of A (12 or 8 of 16 lanes) and one multiply-add
   per column, four k steps in flight. The kernels above spend a whole vector of columns on them: a 7x7 map's
   N = 49 is a full 32-column tile and one of 32 for 17 columns (77% of the multiply-adds useful), a 14x14
   map's N = 196 ends with 16 columns for 4. AVX-512, float only (where the masked load is one instruction). */
#if LAMINA_GEMM_STRIP_COLUMNS > 0
static inline __attribute__((always_inline)) void lamina_gemm_strip_columns(const int columns, int rows, int64_t kc,
                                                                           const float* restrict a,
                                                                           const float* restrict b, float* restrict c,
                                                                           int64_t ldc, float beta,
                                                                           const float* restrict bias, int relu) {
  const __mmask16 valid = (__mmask16)((1u << rows) - 1u);
  /* The vector runs along the rows, so the rows' bias is one (masked) vector. */
  const __m512 start = bias ? _mm512_maskz_loadu_ps(valid, bias) : _mm512_setzero_ps();
  __m512 acc[LAMINA_GEMM_STRIP_COLUMNS][4];
  #pragma GCC unroll 16
  for (int j = 0; j < columns; j++) acc[j][0] = start, acc[j][1] = acc[j][2] = acc[j][3] = _mm512_setzero_ps();
  int64_t p = 0;
  for (; p + 4 <= kc; p += 4) {
    #pragma GCC unroll 4
    for (int u = 0; u < 4; u++) {
      const __m512 column = _mm512_maskz_loadu_ps(valid, a + (p + u) * rows);
      #pragma GCC unroll 4
      for (int j = 0; j < columns; j++)
        acc[j][u] = _mm512_fmadd_ps(column, _mm512_set1_ps(b[(p + u) * NR + j]), acc[j][u]);
    }
  }
  for (; p < kc; p++) {
    const __m512 column = _mm512_maskz_loadu_ps(valid, a + p * rows);
    #pragma GCC unroll 4
    for (int j = 0; j < columns; j++) acc[j][0] = _mm512_fmadd_ps(column, _mm512_set1_ps(b[p * NR + j]), acc[j][0]);
  }
  _Alignas(64) float sums[LAMINA_GEMM_STRIP_COLUMNS][16];
  #pragma GCC unroll 4
  for (int j = 0; j < columns; j++)
    _mm512_store_ps(sums[j], _mm512_add_ps(_mm512_add_ps(acc[j][0], acc[j][1]), _mm512_add_ps(acc[j][2], acc[j][3])));
  for (int r = 0; r < rows; r++)
    #pragma GCC unroll 4
    for (int j = 0; j < columns; j++) {
      float* to = c + r * ldc + j;
      const float value = beta == 0.0f ? sums[j][r] : sums[j][r] + beta * *to;
      *to = relu ? lamina_gemm_rectify_one(value) : value;
    }
}
/* A whole row panel's last columns past its whole vectors when there are more than a strip's: one vector of
   16 columns, or of 8 (__m256), stored under a mask straight into C (they went to a tile aside, then were
   merged). A 13x13 map's N = 169 leaves 9 of NR = 32. On a Zen 4, which runs a 512-bit multiply-add as two
   256-bit halves, 8 columns cost half of 16, so 9-12 columns run as 8 and a strip of 1-4 (up to
   LAMINA_GEMM_MASKED_HALF_WIDTH_COLUMNS), 13-15 as 16. Zen 4, one thread, 1000 x N x 512 on a packed A (min of
   150-200, us): N = 169 1603 (16 aside and merged) -> 1593 (16 masked) -> 1564 (8 and a strip of 1); 170
   1591 -> 1562, 171 1590 -> 1573, 172 1592 -> 1581 (16 masked against 8 and a strip). Not measured on a CPU
   with 512-bit pipes, where 8 columns cost as much as 16 and the strip is extra. */
/* One width's body: `ops` is the intrinsics' prefix (_mm256, _mm512), `vector` and `mask_type` their types. */
#define LAMINA_GEMM_MASKED_BODY(ops, vector, mask_type)                                                            \
  do {                                                                                                             \
    const mask_type mask = (mask_type)((1u << columns) - 1u);                                                      \
    vector acc[MR];                                                                                                \
    _Pragma("GCC unroll 32") for (int r = 0; r < rows; r++)                                                        \
      acc[r] = bias ? ops##_set1_ps(bias[r]) : ops##_setzero_ps(), __builtin_prefetch(c + r * ldc, 1);             \
    _Pragma("GCC unroll 4") for (int64_t p = 0; p < kc; p++, a += rows, b += NR) {                                 \
      const vector b0 = ops##_loadu_ps(b);                                                                         \
      _Pragma("GCC unroll 32") for (int r = 0; r < rows; r++) acc[r] = ops##_fmadd_ps(ops##_set1_ps(a[r]), b0, acc[r]); \
    }                                                                                                              \
    _Pragma("GCC unroll 32") for (int r = 0; r < rows; r++) {                                                      \
      vector sum = acc[r];                                                                                         \
      if (beta != 0.0f) sum = ops##_fmadd_ps(ops##_set1_ps(beta), ops##_maskz_loadu_ps(mask, c + r * ldc), sum);  \
      if (relu) sum = ops##_maskz_mov_ps((mask_type)~ops##_cmp_ps_mask(sum, ops##_setzero_ps(), _CMP_LE_OQ), sum); \
      ops##_mask_storeu_ps(c + r * ldc, mask, sum);                                                                \
    }                                                                                                              \
  } while (0)
static inline __attribute__((always_inline)) void lamina_gemm_masked_columns(const int rows, const int width,
                                                                            int64_t columns, int64_t kc,
                                                                            const float* restrict a,
                                                                            const float* restrict b,
                                                                            float* restrict c, int64_t ldc,
                                                                            float beta, const float* restrict bias,
                                                                            int relu) {
#if defined(__AVX512VL__)
  if (width == 8) {
    LAMINA_GEMM_MASKED_BODY(_mm256, __m256, __mmask8);
    return;
  }
#endif
  (void)width;
  LAMINA_GEMM_MASKED_BODY(_mm512, __m512, __mmask16);
}
static void lamina_gemm_masked(int rows, int width, int64_t columns, int64_t kc, const float* restrict a,
                               const float* restrict b, float* restrict c, int64_t ldc, float beta, const float* bias,
                               int relu) {
  if (rows == MR) {
    if (width == 8) lamina_gemm_masked_columns(MR, 8, columns, kc, a, b, c, ldc, beta, bias, relu);
    else lamina_gemm_masked_columns(MR, 16, columns, kc, a, b, c, ldc, beta, bias, relu);
  } else {
    if (width == 8) lamina_gemm_masked_columns(MR_NARROW, 8, columns, kc, a, b, c, ldc, beta, bias, relu);
    else lamina_gemm_masked_columns(MR_NARROW, 16, columns, kc, a, b, c, ldc, beta, bias, relu);
  }
}
/* Columns 1..LAMINA_GEMM_STRIP_COLUMNS (a constant in each call, so the sums stay in registers). */
static void lamina_gemm_strip(int64_t columns, int rows, int64_t kc, const float* restrict a, const float* restrict b,
                              float* restrict c, int64_t ldc, float beta, const float* bias, int relu) {
  switch (columns) {
    case 1: lamina_gemm_strip_columns(1, rows, kc, a, b, c, ldc, beta, bias, relu); break;
    case 2: lamina_gemm_strip_columns(2, rows, kc, a, b, c, ldc, beta, bias, relu); break;
    case 3: lamina_gemm_strip_columns(3, rows, kc, a, b, c, ldc, beta, bias, relu); break;
    default: lamina_gemm_strip_columns(4, rows, kc, a, b, c, ldc, beta, bias, relu); break;
  }
}
#endif

/* Packs alpha * op(A)[0..mc, 0..kc] (a points at its first element) into panels of panel_rows rows, panel
   after panel (element (i, p) of panel q at ap[q * panel_rows * kc + p * panel_rows + i]); rows past mc are zero.
   Memory is read along its contiguous direction: row by row of A when op(A) = A (a panel's rows at a time), and one
   row of the stored A^T (a column of op(A) across all panels) at a time when op(A) = A^T. */
static inline __attribute__((always_inline)) void lamina_gemm_pack_a_rows(const int panel_rows, int trans, const lamina_real* restrict a,
                                                                        int64_t lda, int64_t mc, int64_t kc, lamina_real alpha,
                                                                        lamina_real* restrict ap) {
  if (!trans) {
    for (int64_t i = 0; i < mc; i += panel_rows, ap += panel_rows * kc) {
      const int64_t mr = lamina_gemm_min(panel_rows, mc - i);
      const lamina_real* rows = a + i * lda;
      if (mr == panel_rows) {
        /* Four columns of four rows at a time, transposed in registers: a panel's column is one element of
           each of its rows (lda apart), and element by element that was 8% of ResNet-50's time (its 7x7 and
           14x14 layers multiply every weight by only 49 or 196 columns). */
        const lamina_vector4 scale = lamina_gemm_splat4(alpha);
        int64_t p = 0;
        for (; p + 4 <= kc; p += 4) {
          #pragma GCC unroll 8
          for (int r = 0; r + 4 <= panel_rows; r += 4) {
            const lamina_real* row = rows + r * lda + p;
            const lamina_vector4 a0 = lamina_gemm_load4(row), a1 = lamina_gemm_load4(row + lda);
            const lamina_vector4 a2 = lamina_gemm_load4(row + 2 * lda), a3 = lamina_gemm_load4(row + 3 * lda);
            const lamina_vector4 t0 = __builtin_shufflevector(a0, a1, 0, 4, 1, 5);
            const lamina_vector4 t1 = __builtin_shufflevector(a0, a1, 2, 6, 3, 7);
            const lamina_vector4 t2 = __builtin_shufflevector(a2, a3, 0, 4, 1, 5);
            const lamina_vector4 t3 = __builtin_shufflevector(a2, a3, 2, 6, 3, 7);
            lamina_real* out = ap + p * panel_rows + r;
            lamina_gemm_store4(out, scale * __builtin_shufflevector(t0, t2, 0, 1, 4, 5));
            lamina_gemm_store4(out + panel_rows, scale * __builtin_shufflevector(t0, t2, 2, 3, 6, 7));
            lamina_gemm_store4(out + 2 * panel_rows, scale * __builtin_shufflevector(t1, t3, 0, 1, 4, 5));
            lamina_gemm_store4(out + 3 * panel_rows, scale * __builtin_shufflevector(t1, t3, 2, 3, 6, 7));
          }
          /* Rows past the last four (MR = 6 with AVX2). */
          for (int r = panel_rows - panel_rows % 4; r < panel_rows; r++)
            for (int64_t q = p; q < p + 4; q++) ap[q * panel_rows + r] = alpha * rows[r * lda + q];
        }
        for (; p < kc; p++)
          #pragma GCC unroll 32
          for (int r = 0; r < panel_rows; r++) ap[p * panel_rows + r] = alpha * rows[r * lda + p];
      } else {
        for (int64_t p = 0; p < kc; p++)
          for (int r = 0; r < panel_rows; r++) ap[p * panel_rows + r] = r < mr ? alpha * rows[r * lda + p] : (lamina_real)0;
      }
    }
  } else {
    const int64_t full = mc - mc % panel_rows;
    for (int64_t p = 0; p < kc; p++) {
      const lamina_real* src = a + p * lda;
      lamina_real* dst = ap + p * panel_rows;
      for (int64_t i = 0; i < full; i += panel_rows, dst += panel_rows * kc)
        #pragma GCC unroll 32
        for (int r = 0; r < panel_rows; r++) dst[r] = alpha * src[i + r];
      if (full < mc)
        for (int r = 0; r < panel_rows; r++) dst[r] = full + r < mc ? alpha * src[full + r] : (lamina_real)0;
    }
  }
}

/* Panels of `rows` rows: MR or MR_NARROW. */
static void lamina_gemm_pack_a(int rows, int trans, const lamina_real* restrict a, int64_t lda, int64_t mc, int64_t kc,
                               lamina_real alpha, lamina_real* restrict ap) {
  if (rows == MR)
    lamina_gemm_pack_a_rows(MR, trans, a, lda, mc, kc, alpha, ap);
  else
    lamina_gemm_pack_a_rows(MR_NARROW, trans, a, lda, mc, kc, alpha, ap);
}

/* Packs op(B)[0..kc, 0..nc] (b points at its first element) into NR-column panels (element (p, j) of
   panel q at bp[q * NR * kc + p * NR + j]); columns past nc are zero. Read along the contiguous
   direction too: whole rows of B when op(B) = B, NR rows of the stored B^T at a time otherwise. */
static void lamina_gemm_pack_b(int trans, const lamina_real* restrict b, int64_t ldb, int64_t kc, int64_t nc,
                               lamina_real* restrict bp) {
  const int64_t full = nc - nc % NR;
  if (!trans) {
    for (int64_t p = 0; p < kc; p++) {
      const lamina_real* src = b + p * ldb;
      lamina_real* dst = bp + p * NR;
      for (int64_t j = 0; j < full; j += NR, dst += NR * kc) memcpy(dst, src + j, NR * sizeof(lamina_real));
      if (full < nc) {
        /* A copy and a fill, not a select per element: the last 4 columns of N = 196 (read in place
           otherwise) took 4% of a 120 x 196 x 576 product's time on one core. */
        memcpy(dst, src + full, (size_t)(nc - full) * sizeof(lamina_real));
        memset(dst + (nc - full), 0, (size_t)(NR - (nc - full)) * sizeof(lamina_real));
      }
    }
  } else {
    for (int64_t j = 0; j < nc; j += NR, bp += NR * kc) {
      const int64_t nr = lamina_gemm_min(NR, nc - j);
      const lamina_real* src = b + j * ldb;
      if (nr == NR) {
        for (int64_t p = 0; p < kc; p++)
          #pragma GCC unroll 32
          for (int q = 0; q < NR; q++) bp[p * NR + q] = src[q * ldb + p];
      } else {
        for (int64_t p = 0; p < kc; p++)
          for (int q = 0; q < NR; q++) bp[p * NR + q] = q < nr ? src[q * ldb + p] : (lamina_real)0;
      }
    }
  }
}

/* C[0..rows, 0..cols] = edge (+ beta * C): an edge tile computed aside (rows NR apart) merged into C, a vector
   at a time where a whole one fits (a 7x7 convolution's N = 49 leaves 17 columns of every row panel's second
   tile: merged element by element, that was as many scalar loads and stores as a twentieth of the tile's
   multiply-adds). */
static void lamina_gemm_merge(lamina_real* c, int64_t ldc, const lamina_real* edge, int64_t rows, int64_t cols,
                              lamina_real beta, int relu) {
  enum { VL = sizeof(lamina_vector) / sizeof(lamina_real) };
  const lamina_vector vb = lamina_gemm_splat(beta);
  for (int64_t i = 0; i < rows; i++) {
    lamina_real* row = c + i * ldc;
    const lamina_real* from = edge + i * NR;
    int64_t j = 0;
    for (; j + VL <= cols; j += VL) {
      const lamina_vector v = lamina_gemm_loadu(from + j);
      lamina_gemm_storeu(row + j, lamina_gemm_final(beta == (lamina_real)0 ? v : LAMINA_GEMM_FMA(vb, lamina_gemm_loadu(row + j), v),
                                                    relu));
    }
    for (; j < cols; j++) {
      const lamina_real value = beta == (lamina_real)0 ? from[j] : from[j] + beta * row[j];
      row[j] = relu ? lamina_gemm_rectify_one(value) : value;
    }
  }
}

struct lamina_gemm_job;
static void lamina_gemm_pack_b_panel(const struct lamina_gemm_job* g, int64_t pc, int64_t kc, int64_t j0, int64_t nr,
                                     lamina_real* bp);

/* C[ic.., jc..][mc x nc] (+)= packed A block @ packed B block, one micro-kernel call per MR x NR tile
   (c and ldc are the whole C). After the last k-block (epilogue non-NULL) the epilogue runs on each
   finished mc x (LAMINA_GEMM_EPILOGUE_PANELS * NR) slab while it is still in L1/L2. With `pack` non-NULL,
   B is not packed yet: each panel of `pack`'s B block (k-block pc) is packed into pack_into (the thread's
   scratch, which bp points at) just before its kernels run. a_ahead > 0: A was packed before the call and its panels go on
   for a_ahead elements from ap (the tile's rows), which the first pass prefetches ahead. */
static void lamina_gemm_macro(int rows, int64_t mc, int64_t nc, int64_t kc, const lamina_real* ap, const lamina_real* bp,
                              lamina_real* c_all, int64_t ldc, int64_t ic, int64_t jc, lamina_real beta,
                              const lamina_gemm_epilogue* epilogue, const struct lamina_gemm_job* pack,
                              lamina_real* pack_into, int64_t pc, int64_t a_ahead, const lamina_real* direct,
                              int64_t ldb, const lamina_real* next_a, int64_t next_length) {
  /* next_a: the block of A the tile multiplies after this one, prefetched (into L2) a share per micro-kernel call. */
  const int64_t calls = lamina_gemm_ceil_div(nc, NR) * lamina_gemm_ceil_div(mc, rows);
  const int64_t line = 64 / sizeof(lamina_real);
  const int64_t next_step = next_a ? lamina_gemm_ceil_div(lamina_gemm_ceil_div(next_length, line), calls) * line : 0;
  int64_t next_done = 0;
  _Alignas(64) lamina_real edge[MR * NR];
  lamina_real* c = c_all + ic * ldc + jc;
  /* The epilogue's row bias, added by the kernels (this is the last k-block: only it gets the epilogue). */
  const lamina_real* row_bias = epilogue && epilogue->row_bias ? (const lamina_real*)epilogue->row_bias + ic : NULL;
  /* ... and its rectifier, in place of its apply (lamina_gemm_epilogue.relu_only). */
  const int relu = epilogue && epilogue->relu_only;
  int64_t slab = 0; /* first column of the slab the epilogue has not seen yet */
  for (int64_t jr = 0; jr < nc; jr += NR) {
    int64_t nr = lamina_gemm_min(NR, nc - jr);
    /* direct: B's whole panels are read where they are stored (rows ldb apart, k-block first); only a last
       partial panel is packed. */
    const lamina_real* b_panel = direct && nr == NR ? direct + jc + jr : bp + jr * kc;
    const int64_t b_stride = direct && nr == NR ? ldb : NR;
    if (pack && b_stride == NR) lamina_gemm_pack_b_panel(pack, pc, kc, jc + jr, nr, pack_into + jr * kc);
    for (int64_t ir = 0; ir < mc; ir += rows) {
      int64_t mr = lamina_gemm_min(rows, mc - ir);
      lamina_real* ct = c + ir * ldc + jr;
      if (a_ahead > 0 && jr == 0) {
        /* A packed before the call is read here for the first time, likely from memory (a 7x7 layer's
           weights are 4 MiB, each multiplied by only 49 columns): ask for the panel after next now. */
        const int64_t first = (ir + LAMINA_GEMM_A_PREFETCH_PANELS * rows) * kc;
        const int64_t end = lamina_gemm_min(first + rows * kc, a_ahead);
        for (int64_t e = first; e < end; e += 64 / sizeof(lamina_real)) __builtin_prefetch(ap + e, 0, 2);
      }
      if (next_done < next_length) {
        const int64_t end = lamina_gemm_min(next_done + next_step, next_length);
        for (; next_done < end; next_done += line) __builtin_prefetch(next_a + next_done, 0, 2);
      }
      /* The rows' bias, zeros past the valid rows of a partial panel (its kernels compute whole row steps). */
      const lamina_real* bias = NULL;
      lamina_real bias_padded[MR];
      if (row_bias) {
        if (mr == rows) {
          bias = row_bias + ir;
        } else {
          for (int r = 0; r < rows; r++) bias_padded[r] = r < mr ? row_bias[ir + r] : (lamina_real)0;
          bias = bias_padded;
        }
      }
      if (mr == rows && nr == NR) {
        lamina_gemm_kernel_full(rows, kc, ap + ir * kc, b_panel, b_stride, ct, ldc, beta, bias, relu);
      } else if (LAMINA_GEMM_STRIP_COLUMNS > 0 && mr == rows) {
        /* A whole row panel's last columns, all straight into C: a whole vector of them, then what is
           left as a strip (1-4 columns), a masked vector of 8 (5-12: 8 and a strip) or of 16 (13-15). */
#if LAMINA_GEMM_STRIP_COLUMNS > 0
        int64_t done = 0;
        if (nr >= NR / 2) {
          if (rows == MR)
            lamina_gemm_kernel_columns(MR, 1, MR, NR, kc, ap + ir * kc, bp + jr * kc, ct, ldc, beta, bias, relu);
          else
            lamina_gemm_kernel_columns(MR_NARROW, 1, MR_NARROW, NR, kc, ap + ir * kc, bp + jr * kc, ct, ldc, beta, bias,
                                       relu);
          done = NR / 2;
        }
        const int64_t left = nr - done;
        if (left > LAMINA_GEMM_STRIP_COLUMNS) {
          const int width = left <= LAMINA_GEMM_MASKED_HALF_WIDTH_COLUMNS ? 8 : 16;
          const int64_t masked = width == 8 ? lamina_gemm_min(left, 8) : left;
          lamina_gemm_masked(rows, width, masked, kc, ap + ir * kc, bp + jr * kc + done, ct + done, ldc, beta, bias, relu);
          done += masked;
        }
        if (nr > done)
          lamina_gemm_strip(nr - done, rows, kc, ap + ir * kc, bp + jr * kc + done, ct + done, ldc, beta, bias, relu);
#endif
      } else if (nr * 2 <= NR) {
        /* The last columns fit in one vector: half a tile aside, merge the part inside C. */
        lamina_gemm_kernel_half(rows, mr, kc, ap + ir * kc, bp + jr * kc, edge, bias);
        lamina_gemm_merge(ct, ldc, edge, mr, nr, beta, relu);
      } else if (rows == MR && nr == NR && mr % LAMINA_GEMM_ROW_STEP == 0) {
        /* An MR panel's last rows, a whole number of row steps: a shorter kernel, straight into C. */
        lamina_gemm_kernel_tail(mr, kc, ap + ir * kc, b_panel, b_stride, ct, ldc, beta, bias, relu);
      } else if (rows == MR) {
        /* Edge tile: compute the rows it needs aside, merge only the part inside C. */
        lamina_gemm_kernel_tail(mr, kc, ap + ir * kc, b_panel, b_stride, edge, NR, (lamina_real)0, bias, 0);
        lamina_gemm_merge(ct, ldc, edge, mr, nr, beta, relu);
      } else {
        /* Edge tile: compute the full tile aside, merge only the part inside C. */
        lamina_gemm_kernel_full(rows, kc, ap + ir * kc, b_panel, b_stride, edge, NR, (lamina_real)0, bias, 0);
        lamina_gemm_merge(ct, ldc, edge, mr, nr, beta, relu);
      }
    }
    if (epilogue && epilogue->apply && !relu && (jr + nr == nc || jr + NR - slab >= LAMINA_GEMM_EPILOGUE_PANELS * NR)) {
      epilogue->apply(epilogue->arg, c_all, ldc, ic, jc + slab, mc, jr + nr - slab);
      slab = jr + nr;
    }
  }
}

typedef struct lamina_gemm_job {
  int trans_a, trans_b;
  int64_t m, n, k;
  lamina_real alpha, beta;
  const lamina_real* a;
  const lamina_real* b;
  lamina_real* c;
  int64_t lda, ldb, ldc;
  const lamina_gemm_epilogue* epilogue;
  lamina_pool* pool;
  lamina_gemm_grid grid; /* packed path: tiles of C, one per task */
  int64_t kc;            /* packed path: k-block size, the same for all tiles */
  int64_t gemv_chunk;    /* M == 1 path: columns (or rows of B, when split over K) per task */
  lamina_real* partial;            /* M == 1 split over K: one row of partial sums per task */
  int transposed;        /* N == 1 run as M == 1 (C^T = op(B)^T op(A)^T): C is a column */
  const lamina_real* packed_b; /* op(B) packed once by lamina_gemm_pack_b_*: tiles skip packing it */
  int64_t packed_width;        /* its columns rounded up to NR (the size of one k-block's row) */
  const lamina_gemm_b_packer* b_packer; /* op(B) packed by the caller's function, block by block */
  int rows;                             /* packed path: rows per A panel, MR or MR_NARROW */
  const lamina_real* packed_a; /* op(A) packed once by lamina_gemm_pack_a_*: tiles skip packing it */
  int64_t packed_height;       /* its rows rounded up to `rows` (the size of one k-block's column) */
  int direct_b;                /* stored op(B) = B read in place by the kernels (lamina_gemm_direct_b) */
} lamina_gemm_job;

/* Packs stored op(B)[pc.., j0..][kc x nc] into bp (NR-column panels). */
static void lamina_gemm_pack_b_panel(const lamina_gemm_job* g, int64_t pc, int64_t kc, int64_t j0, int64_t nc,
                                     lamina_real* bp) {
  const lamina_real* b = g->trans_b ? g->b + j0 * g->ldb + pc : g->b + pc * g->ldb + j0;
  lamina_gemm_pack_b(g->trans_b, b, g->ldb, kc, nc, bp);
}

#ifndef LAMINA_GEMM_DIRECT_B
#define LAMINA_GEMM_DIRECT_B 1
#endif
static int64_t lamina_gemm_gcd(int64_t a, int64_t b) {
  while (b) {
    const int64_t t = a % b;
    a = b;
    b = t;
  }
  return a;
}
/* Whether the kernels read a stored op(B) = B in place, its rows ldb apart, instead of packed panels. Packing
   costs about as much per element of B as a few rows of A's multiply-adds, so it weighs on products of few
   rows: a 1x1 convolution's input read in place ran 128 -> 16 at 55x55 at 254 GFLOP/s on one Zen 5 core
   against 156 packed, 256 -> 64 at 56x56 at 272 against 230. The catch is the L1: a panel's kc rows must land
   in enough of its 64 sets. Rows a multiple of 64 bytes apart fall into 64 / gcd(lines apart, 64) groups of
   sets (a 512-wide MLP layer's rows: 2 groups, 4 sets, thrashing: 253 -> 221 GFLOP/s), so those need at
   least half the sets; rows not a multiple of a line apart shift through all of them. */
static int lamina_gemm_direct_b(const lamina_gemm_job* g) {
  if (!LAMINA_GEMM_DIRECT_B || g->trans_b || !g->b || g->packed_b || g->b_packer) return 0;
  const int64_t row_bytes = g->ldb * (int64_t)sizeof(lamina_real);
  if (row_bytes % 64 != 0) return 1;
  const int64_t lines_per_panel_row = (int64_t)(NR * sizeof(lamina_real) + 63) / 64;
  return 64 / lamina_gemm_gcd(row_bytes / 64, 64) * lines_per_panel_row >= 32;
}

/* Bytes of the packed A block and of the packed B block in a thread's scratch. */
enum {
  lamina_gemm_a_bytes = (MC) * (KC) * sizeof(lamina_real),
  lamina_gemm_b_bytes = (KC) * (NC) * sizeof(lamina_real)
};

/* The GotoBLAS loops over one tile C[i0..i1, j0..j1] (see the top of the file). */
static void lamina_gemm_tile(const lamina_gemm_job* g, int64_t i0, int64_t i1, int64_t j0, int64_t j1,
                             lamina_real* ap, lamina_real* bp) {
  const int64_t mcb = lamina_gemm_even_block(i1 - i0, MC, g->rows);
  const int64_t ncb = lamina_gemm_even_block(j1 - j0, NC, NR);
  for (int64_t jc = j0; jc < j1; jc += ncb) {
    int64_t nc = lamina_gemm_min(ncb, j1 - jc);
    for (int64_t pc = 0; pc < g->k; pc += g->kc) {
      int64_t kc = lamina_gemm_min(g->kc, g->k - pc);
      const lamina_real* packed = g->packed_b ? g->packed_b + pc * g->packed_width + jc * kc : bp;
      /* Stored B's panels are packed by the first row block, each just before its kernels run on it (still
         in L1 for them); later row blocks read them from L2. Packing the whole block first left every panel
         to be read back from L2, which a product of few rows pays in full: 16 x 3025 x 128 (SqueezeNet's
         squeeze layers) ran at 98 GFLOP/s on one Zen 5 core, 165 this way. The caller's packer packs the
         whole block: it works out each row's source once per call, which would be per panel here. */
      const int pack_lazily = !g->packed_b && !g->b_packer;
      const lamina_real* direct = g->direct_b ? g->b + pc * g->ldb : NULL;
      if (g->b_packer) g->b_packer->pack(g->b_packer->arg, pc, kc, jc, nc, NR, bp);
      lamina_real beta = pc == 0 ? g->beta : (lamina_real)1; /* later k-blocks accumulate */
      int last = pc + kc >= g->k;
      for (int64_t ic = i0; ic < i1; ic += mcb) {
        int64_t mc = lamina_gemm_min(mcb, i1 - ic);
        const lamina_real* panels = ap;
        if (g->packed_a) {
          /* ic is a multiple of the panel height (tile and block sizes are): its panels start here. */
          panels = g->packed_a + pc * g->packed_height + ic * kc;
        } else {
          const lamina_real* a = g->trans_a ? g->a + pc * g->lda + ic : g->a + ic * g->lda + pc;
          lamina_gemm_pack_a(g->rows, g->trans_a, a, g->lda, mc, kc, g->alpha, ap);
        }
        /* A packed before the call comes from memory (a 7x7 layer's weights are 4 MiB, each multiplied by only
           49 columns). Prefetching only on the first column panel bunched the reads (two threads asked for
           20 GB/s each there, then nothing), so a tile of few columns spreads the next block's over this
           one: ResNet-50's 7x7 and 14x14 layers 5-11% faster (Zen 5). Into L2, not L1: the next block is
           110 KiB, and in L1 its lines pushed out the B panel and the current A panel. Zen 4, 512 x 49 x 2048
           (packed A, cold), one core: 1204 us spread into L1, 1106 with no spread, 1057 spread into L2;
           two cores 605 -> 545 us from L1 to L2 (2048 x 49 x 512: 582 -> 520 us). */
        const lamina_real* next_a = NULL;
        int64_t next_length = 0;
        const int spread = g->packed_a && j1 - j0 <= LAMINA_GEMM_SPREAD_PREFETCH_COLUMNS;
        if (spread) {
          if (ic + mcb < i1) {
            next_a = g->packed_a + pc * g->packed_height + (ic + mcb) * kc;
            next_length = lamina_gemm_round_up(lamina_gemm_min(mcb, i1 - ic - mcb), g->rows) * kc;
          } else if (pc + kc < g->k) {
            const int64_t next_kc = lamina_gemm_min(g->kc, g->k - pc - kc);
            next_a = g->packed_a + (pc + kc) * g->packed_height + i0 * next_kc;
            next_length = lamina_gemm_round_up(lamina_gemm_min(mcb, i1 - i0), g->rows) * next_kc;
          }
        }
        const int first_block = ic == i0 && pc == 0;
        lamina_gemm_macro(g->rows, mc, nc, kc, panels, packed, g->c, g->ldc, ic, jc, beta, last ? g->epilogue : NULL,
                          pack_lazily && ic == i0 ? g : NULL, bp, pc,
                          g->packed_a && (first_block || !spread) ? (i1 - ic) * kc : 0, direct, g->ldb,
                          next_a, next_length);
      }
    }
  }
}

static void lamina_gemm_task(void* arg, int64_t task, int thread) {
  const lamina_gemm_job* g = (const lamina_gemm_job*)arg;
  int64_t ti = task / g->grid.nt, tj = task % g->grid.nt;
  int64_t i0 = ti * g->grid.mtile, j0 = tj * g->grid.ntile;
  unsigned char* scratch = (unsigned char*)lamina_pool_scratch(g->pool, thread, NULL);
  lamina_gemm_tile(g, i0, lamina_gemm_min(g->m, i0 + g->grid.mtile), j0,
                   tj == g->grid.nt - 1 ? g->n : j0 + g->grid.ntile, (lamina_real*)scratch,
                        (lamina_real*)(scratch + lamina_gemm_a_bytes));
}

/* M == 1, op(B) = B (rows of B contiguous): acc[0..nb) += sum over p < kc of a[p * inc_a] * b[p * ldb + j].
   Streams B row by row, four rows per pass over the accumulators (nb <= 64 vectors: they stay in L1). */
static void lamina_gemv_rows_block(const lamina_real* a, int64_t inc_a, const lamina_real* b, int64_t ldb, int64_t kc, int64_t nb,
                                   lamina_real* restrict acc) {
  enum { VL = sizeof(lamina_vector) / sizeof(lamina_real) };
  const int64_t nv = nb - nb % VL;
  int64_t p = 0;
  for (; p + 4 <= kc; p += 4) {
    const lamina_real* b0 = b + p * ldb;
    const lamina_real* b1 = b0 + ldb;
    const lamina_real* b2 = b1 + ldb;
    const lamina_real* b3 = b2 + ldb;
    const lamina_real s0 = a[p * inc_a], s1 = a[(p + 1) * inc_a], s2 = a[(p + 2) * inc_a], s3 = a[(p + 3) * inc_a];
    const lamina_vector a0 = lamina_gemm_splat(s0), a1 = lamina_gemm_splat(s1);
    const lamina_vector a2 = lamina_gemm_splat(s2), a3 = lamina_gemm_splat(s3);
    for (int64_t j = 0; j < nv; j += VL) {
      lamina_vector x = lamina_gemm_loadu(acc + j);
      x = LAMINA_GEMM_FMA(a0, lamina_gemm_loadu(b0 + j), x);
      x = LAMINA_GEMM_FMA(a1, lamina_gemm_loadu(b1 + j), x);
      x = LAMINA_GEMM_FMA(a2, lamina_gemm_loadu(b2 + j), x);
      x = LAMINA_GEMM_FMA(a3, lamina_gemm_loadu(b3 + j), x);
      lamina_gemm_storeu(acc + j, x);
    }
    for (int64_t j = nv; j < nb; j++) acc[j] += s0 * b0[j] + s1 * b1[j] + s2 * b2[j] + s3 * b3[j];
  }
  for (; p < kc; p++) {
    const lamina_real* b0 = b + p * ldb;
    const lamina_real s0 = a[p * inc_a];
    const lamina_vector a0 = lamina_gemm_splat(s0);
    for (int64_t j = 0; j < nv; j += VL)
      lamina_gemm_storeu(acc + j, LAMINA_GEMM_FMA(a0, lamina_gemm_loadu(b0 + j), lamina_gemm_loadu(acc + j)));
    for (int64_t j = nv; j < nb; j++) acc[j] += s0 * b0[j];
  }
}

enum { lamina_gemv_nb = 64 * (LAMINA_GEMM_VBYTES / sizeof(lamina_real)) };

/* M == 1, op(B) = B: c[j0..j1] = alpha * a @ B + beta * c, a block of columns at a time. */
static void lamina_gemv_rows(const lamina_gemm_job* g, int64_t j0, int64_t j1) {
  _Alignas(64) lamina_real acc[lamina_gemv_nb];
  const int64_t inc_a = g->trans_a ? g->lda : 1;
  for (int64_t jb = j0; jb < j1; jb += lamina_gemv_nb) {
    const int64_t nb = lamina_gemm_min(lamina_gemv_nb, j1 - jb);
    memset(acc, 0, sizeof acc);
    lamina_gemv_rows_block(g->a, inc_a, g->b + jb, g->ldb, g->k, nb, acc);
    lamina_real* c = g->c + jb;
    for (int64_t j = 0; j < nb; j++) c[j] = g->beta == (lamina_real)0 ? g->alpha * acc[j] : g->alpha * acc[j] + g->beta * c[j];
  }
}

/* M == 1, op(B) = B, split over K: task t sums rows [t * chunk, (t + 1) * chunk) of B into its own slice of
   g->partial. Each task then streams one contiguous band of B (splitting N instead would have every
   thread read a strided piece of every row); the caller adds the slices up. */
static void lamina_gemv_ksplit_task(void* arg, int64_t task, int thread) {
  (void)thread;
  const lamina_gemm_job* g = (const lamina_gemm_job*)arg;
  const int64_t inc_a = g->trans_a ? g->lda : 1;
  const int64_t p0 = task * g->gemv_chunk, kc = lamina_gemm_min(g->k, p0 + g->gemv_chunk) - p0;
  lamina_real* out = g->partial + task * g->n;
  memset(out, 0, (size_t)g->n * sizeof(lamina_real));
  for (int64_t jb = 0; jb < g->n; jb += lamina_gemv_nb)
    lamina_gemv_rows_block(g->a + p0 * inc_a, inc_a, g->b + p0 * g->ldb + jb, g->ldb, kc,
                           lamina_gemm_min(lamina_gemv_nb, g->n - jb), out + jb);
}

/* M == 1, op(B) = B^T (B is N x K, like a PyTorch Linear weight; a contiguous): one dot product per
   column, four columns at a time so each load of `a` serves four rows of B. */
static void lamina_gemv_dots(const lamina_gemm_job* g, int64_t j0, int64_t j1) {
  enum { VL = sizeof(lamina_vector) / sizeof(lamina_real) };
  const int64_t k = g->k, kv = k - k % (2 * VL), ldb = g->ldb;
  const lamina_real* a = g->a;
  for (int64_t j = j0; j < j1; j += 4) {
    const int64_t rows = lamina_gemm_min(4, j1 - j);
    const lamina_real* b[4];
    #pragma GCC unroll 32
    for (int r = 0; r < 4; r++) b[r] = g->b + (j + (r < rows ? r : 0)) * ldb;
    lamina_vector acc[4][2];
    #pragma GCC unroll 32
    for (int r = 0; r < 4; r++) acc[r][0] = acc[r][1] = (lamina_vector){0};
    for (int64_t p = 0; p < kv; p += 2 * VL) {
      lamina_vector x0 = lamina_gemm_loadu(a + p), x1 = lamina_gemm_loadu(a + p + VL);
      #pragma GCC unroll 32
      for (int r = 0; r < 4; r++) {
        acc[r][0] = LAMINA_GEMM_FMA(x0, lamina_gemm_loadu(b[r] + p), acc[r][0]);
        acc[r][1] = LAMINA_GEMM_FMA(x1, lamina_gemm_loadu(b[r] + p + VL), acc[r][1]);
      }
    }
    for (int r = 0; r < rows; r++) {
      lamina_vector v = acc[r][0] + acc[r][1];
      lamina_real s = 0;
      for (int l = 0; l < VL; l++) s += v[l];
      for (int64_t p = kv; p < k; p++) s += a[p] * b[r][p];
      lamina_real* c = g->c + j + r;
      *c = g->beta == (lamina_real)0 ? g->alpha * s : g->alpha * s + g->beta * *c;
    }
  }
}

/* Whether a product split over threads runs its epilogue on the caller after the split (small products:
   LAMINA_GEMM_CALLER_EPILOGUE_BELOW). Not one the kernels apply in their registers (a row bias and a rectifier
   alone): inside the tasks it costs nothing, on the caller a pass over C on one thread (SqueezeNet's 32 -> 128
   1x1 at 27x27, 128 x 729, two threads: 49.6 -> 52.9 us that way). */
static int lamina_gemm_epilogue_on_caller(const lamina_gemm_epilogue* epilogue, const lamina_gemm_grid* grid, int64_t m,
                                          int64_t n) {
  if (!epilogue || grid->mt * grid->nt <= 1 || m * n >= LAMINA_GEMM_CALLER_EPILOGUE_BELOW) return 0;
  return epilogue->apply && !epilogue->relu_only;
}

/* The epilogue on C[row0.., col0..] (rows x cols) where no kernel applied it: the row bias, then the rectifier or
   apply. */
static void lamina_gemm_finish(const lamina_gemm_epilogue* epilogue, lamina_real* c, int64_t ldc, int64_t row0,
                               int64_t col0, int64_t rows, int64_t cols) {
  if (!epilogue) return;
  const lamina_real* bias = (const lamina_real*)epilogue->row_bias;
  const int relu = epilogue->relu_only;
  if (bias || relu)
    for (int64_t i = row0; i < row0 + rows; i++) {
      const lamina_real b = bias ? bias[i] : (lamina_real)0;
      lamina_real* row = c + i * ldc + col0;
      for (int64_t j = 0; j < cols; j++) row[j] = relu ? lamina_gemm_rectify_one(row[j] + b) : row[j] + b;
    }
  if (epilogue->apply && !relu) epilogue->apply(epilogue->arg, c, ldc, row0, col0, rows, cols);
}

/* The epilogue on C[0, j0..j1) of the M == 1 path: a piece of a row, or of a column when transposed. */
static void lamina_gemv_epilogue(const lamina_gemm_job* g, int64_t j0, int64_t j1) {
  if (g->transposed)
    lamina_gemm_finish(g->epilogue, g->c, 1, j0, 0, j1 - j0, 1);
  else
    lamina_gemm_finish(g->epilogue, g->c, g->ldc, 0, j0, 1, j1 - j0);
}

static void lamina_gemv_task(void* arg, int64_t task, int thread) {
  (void)thread;
  const lamina_gemm_job* g = (const lamina_gemm_job*)arg;
  int64_t j0 = task * g->gemv_chunk, j1 = lamina_gemm_min(g->n, j0 + g->gemv_chunk);
  if (g->trans_b)
    lamina_gemv_dots(g, j0, j1);
  else
    lamina_gemv_rows(g, j0, j1);
  lamina_gemv_epilogue(g, j0, j1);
}

void LAMINA_GEMM_FUNCTION(lamina_pool* pool, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, lamina_real alpha,
                          const lamina_real* a, int64_t lda, const lamina_real* b, int64_t ldb, lamina_real beta, lamina_real* c, int64_t ldc,
                      const lamina_gemm_epilogue* epilogue) {
  _Static_assert((MC) % (MR) == 0 && (MC) % (MR_NARROW) == 0 && (NC) % (NR) == 0,
                 "MC and NC must be multiples of MR, MR_NARROW and NR");
  _Static_assert(lamina_gemm_a_bytes + lamina_gemm_b_bytes <= LAMINA_POOL_SCRATCH_BYTES,
                 "GEMM blocks must fit the pool's scratch memory");
  if (m <= 0 || n <= 0) return;
  lamina_gemm_job g = {trans_a, trans_b, m, n, k, alpha, beta, a, b, c, lda, ldb, ldc, epilogue, pool,
                            {1, 1, m, n}, 0, 0, NULL, 0, NULL, 0, NULL, MR, NULL, 0, 0};
  if (k <= 0 || alpha == (lamina_real)0) {
    /* Nothing to multiply: C = beta * C (and never read C when beta == 0). */
    if (beta != (lamina_real)1)
      for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) c[i * ldc + j] = beta == (lamina_real)0 ? (lamina_real)0 : beta * c[i * ldc + j];
    lamina_gemm_finish(epilogue, c, ldc, 0, 0, m, n);
    return;
  }
  if (n == 1 && m > 1 && ldc == 1 && (trans_a || trans_b || ldb == 1)) {
    /* One column (a regression head, its weight gradient): C = op(A) @ b is the transpose of the row
       b^T @ op(A)^T, which the M == 1 path below computes without packing. */
    const lamina_real* column = b;
    const int64_t column_ld = ldb;
    const int new_trans_a = !trans_b, new_trans_b = !trans_a;
    b = a;
    ldb = lda;
    a = column;
    lda = column_ld;
    trans_a = new_trans_a;
    trans_b = new_trans_b;
    n = m;
    m = 1;
    g = (lamina_gemm_job){trans_a, trans_b, m, n, k, alpha, beta, a, b, c, lda, ldb, ldc, epilogue, pool,
                               {1, 1, m, n}, 0, 0, NULL, 1, NULL, 0, NULL, MR, NULL, 0, 0};
  }
  const int threads = lamina_pool_threads(pool);
  if (m == 1 && (!trans_b || !trans_a || lda == 1)) {
    /* A few chunks per thread (not one each): if a thread is descheduled, the others take over its
       share instead of waiting for it. */
    const int parallel = threads > 1 && n * k >= LAMINA_GEMV_PARALLEL_MIN;
    const int64_t want = parallel ? (int64_t)threads * LAMINA_GEMV_TASKS_PER_THREAD : 1;
    size_t scratch_bytes = 0;
    lamina_real* partial = parallel ? (lamina_real*)lamina_pool_scratch(pool, 0, &scratch_bytes) : NULL;
    if (parallel && !trans_b && k >= 64 * want && (size_t)(want * n) * sizeof(lamina_real) <= scratch_bytes) {
      g.gemv_chunk = lamina_gemm_ceil_div(k, want);
      g.partial = partial;
      const int64_t tasks = lamina_gemm_ceil_div(k, g.gemv_chunk);
      lamina_pool_run(pool, tasks, lamina_gemv_ksplit_task, &g);
      for (int64_t j = 0; j < n; j++) {
        lamina_real s = 0;
        for (int64_t t = 0; t < tasks; t++) s += partial[t * n + j];
        c[j] = beta == (lamina_real)0 ? alpha * s : alpha * s + beta * c[j];
      }
      lamina_gemv_epilogue(&g, 0, n);
      return;
    }
    g.gemv_chunk = lamina_gemm_round_up(lamina_gemm_ceil_div(n, want), LAMINA_GEMV_MIN_CHUNK);
    lamina_pool_run(pool, lamina_gemm_ceil_div(n, g.gemv_chunk), lamina_gemv_task, &g);
    return;
  }
  g.kc = lamina_gemm_even_block(k, KC, 4);
  g.rows = lamina_gemm_panel_rows(m);
  g.direct_b = lamina_gemm_direct_b(&g);
  g.grid = lamina_gemm_choose_grid(pool ? threads : 1, m, n, k, g.rows, NR, NC, 0,
                                   g.direct_b ? LAMINA_GEMM_READ_COST : LAMINA_GEMM_PACK_COST);
  if (pool) {
    /* A small product split over threads: its epilogue on the caller once the tasks are done. */
    const int caller_epilogue = lamina_gemm_epilogue_on_caller(epilogue, &g.grid, m, n);
    if (caller_epilogue) g.epilogue = NULL;
    lamina_pool_run(pool, g.grid.mt * g.grid.nt, lamina_gemm_task, &g);
    if (caller_epilogue) lamina_gemm_finish(epilogue, c, ldc, 0, 0, m, n);
  } else {
    /* No pool: one thread, with scratch from the heap. */
    unsigned char* scratch = (unsigned char*)aligned_alloc(64, lamina_gemm_a_bytes + lamina_gemm_b_bytes);
    if (!scratch) abort();
    lamina_gemm_tile(&g, 0, m, 0, n, (lamina_real*)scratch, (lamina_real*)(scratch + lamina_gemm_a_bytes));
    free(scratch);
  }
}

/* ---- A right operand packed once for many products ----
   A loop multiplying by the same matrix every step (a recurrent layer's hidden-to-hidden weight)
   packs it once before the loop: lamina_gemm_pack_b_* writes op(B) [k x n] in the layout the tiles
   read (k-blocks of the width rounded up to NR, NR-column panels inside, the zero padding included),
   and lamina_gemm_packed_b_* multiplies by it without repacking it per call and per thread. For a
   recurrent step (M = batch = 32) packing B was about a fifth of the product's time. The packed
   buffer needs LAMINA_GEMM_PACKED_B_ELEMENTS(n, k, element bytes) elements (lamina_runtime.h), an
   upper bound for every instruction set; the same instruction set must pack and multiply. */
void LAMINA_GEMM_PACK_B_FUNCTION(int trans_b, int64_t k, int64_t n, const lamina_real* b, int64_t ldb,
                                 lamina_real* packed) {
  if (k <= 0 || n <= 0) return;
  const int64_t kc_block = lamina_gemm_even_block(k, KC, 4);
  const int64_t width = lamina_gemm_round_up(n, NR);
  for (int64_t pc = 0; pc < k; pc += kc_block) {
    const int64_t kc = lamina_gemm_min(kc_block, k - pc);
    lamina_gemm_pack_b(trans_b, trans_b ? b + pc : b + pc * ldb, ldb, kc, n, packed + pc * width);
  }
}

/* Runs a job whose B is packed already or packed by the caller's packer: blocks, panel height and the
   tile grid from its sizes, then the tiles over the pool (or on this thread without one). */
static void lamina_gemm_run_packed(lamina_gemm_job* job) {
  lamina_gemm_job g = *job;
  const int64_t m = g.m, n = g.n, k = g.k;
  lamina_pool* pool = g.pool;
  const lamina_gemm_epilogue* epilogue = g.epilogue;
  g.kc = lamina_gemm_even_block(k, KC, 4);
  const int threads = lamina_pool_threads(pool);
  g.rows = lamina_gemm_panel_rows(m);
  g.direct_b = lamina_gemm_direct_b(&g);
  const double b_cost = g.packed_b   ? 0.0
                        : g.direct_b ? LAMINA_GEMM_READ_COST
                        : g.b_packer ? LAMINA_GEMM_PACK_COST + LAMINA_GEMM_PACKER_COST
                                     : LAMINA_GEMM_PACK_COST;
  g.grid = lamina_gemm_choose_grid(pool ? threads : 1, m, n, k, g.rows, NR, NC, g.packed_a != NULL, b_cost);
  if (pool) {
    const int caller_epilogue = lamina_gemm_epilogue_on_caller(epilogue, &g.grid, m, n);
    if (caller_epilogue) g.epilogue = NULL;
    lamina_pool_run(pool, g.grid.mt * g.grid.nt, lamina_gemm_task, &g);
    if (caller_epilogue) lamina_gemm_finish(epilogue, g.c, g.ldc, 0, 0, m, n);
  } else {
    unsigned char* scratch = (unsigned char*)aligned_alloc(64, lamina_gemm_a_bytes + lamina_gemm_b_bytes);
    if (!scratch) abort();
    lamina_gemm_tile(&g, 0, m, 0, n, (lamina_real*)scratch, (lamina_real*)(scratch + lamina_gemm_a_bytes));
    free(scratch);
  }
}

/* The packed-path job of op(A) [m x k] times a B [k x n] packed by lamina_gemm_pack_b_*. */
static lamina_gemm_job lamina_gemm_packed_b_job(lamina_pool* pool, int trans_a, int64_t m, int64_t n, int64_t k,
                                                lamina_real alpha, const lamina_real* a, int64_t lda,
                                                const lamina_real* packed_b, lamina_real beta, lamina_real* c,
                                                int64_t ldc, const lamina_gemm_epilogue* epilogue) {
  const lamina_gemm_job g = {trans_a, 0, m, n, k, alpha, beta, a, NULL, c, lda, 0, ldc, epilogue, pool,
                             {1, 1, m, n}, 0, 0, NULL, 0, packed_b, lamina_gemm_round_up(n, NR), NULL, MR, NULL, 0, 0};
  return g;
}

void LAMINA_GEMM_PACKED_B_FUNCTION(lamina_pool* pool, int trans_a, int64_t m, int64_t n, int64_t k,
                                   lamina_real alpha, const lamina_real* a, int64_t lda,
                                   const lamina_real* packed_b, lamina_real beta, lamina_real* c, int64_t ldc,
                                   const lamina_gemm_epilogue* epilogue) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0 || alpha == (lamina_real)0) {
    /* Nothing to multiply: the general GEMM scales C and never reads B. */
    LAMINA_GEMM_FUNCTION(pool, trans_a, 0, m, n, k, alpha, a, lda, packed_b, n, beta, c, ldc, epilogue);
    return;
  }
  lamina_gemm_job g = lamina_gemm_packed_b_job(pool, trans_a, m, n, k, alpha, a, lda, packed_b, beta, c, ldc, epilogue);
  lamina_gemm_run_packed(&g);
}

/* Columns [j0, j1) of the product above with alpha 1 and beta 0, on the calling thread (lamina_runtime.h). */
int LAMINA_GEMM_PACKED_B_COLUMNS_FUNCTION(lamina_pool* pool, int thread, int trans_a, int64_t m, int64_t n,
                                          int64_t k, int64_t j0, int64_t j1, const lamina_real* a, int64_t lda,
                                          const lamina_real* packed_b, lamina_real* c, int64_t ldc) {
  _Static_assert(LAMINA_GEMM_COLUMN_ALIGN % NR == 0, "a column range's start must be a panel's");
  j1 = lamina_gemm_min(j1, n);
  if (m <= 0 || j0 < 0 || j0 >= j1 || j0 % NR != 0) return 0;
  if (k <= 0) {
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = j0; j < j1; j++) c[i * ldc + j] = 0;
    return 0;
  }
  lamina_gemm_job g = lamina_gemm_packed_b_job(NULL, trans_a, m, n, k, (lamina_real)1, a, lda, packed_b,
                                               (lamina_real)0, c, ldc, NULL);
  g.kc = lamina_gemm_even_block(k, KC, 4);
  g.rows = lamina_gemm_panel_rows(m);
  unsigned char* scratch = pool ? (unsigned char*)lamina_pool_scratch(pool, thread, NULL)
                                : (unsigned char*)aligned_alloc(64, lamina_gemm_a_bytes + lamina_gemm_b_bytes);
  if (!scratch) return LAMINA_ERROR_MEMORY;
  lamina_gemm_tile(&g, 0, m, j0, j1, (lamina_real*)scratch, (lamina_real*)(scratch + lamina_gemm_a_bytes));
  if (!pool) free(scratch);
  return 0;
}

/* ---- A right operand packed by the caller ----
   op(B) is never stored: the caller's packer writes each KC x NC block of it into the panels the tiles
   read (lamina_gemm_b_packer, lamina_runtime.h). A convolution's columns (im2col) go this way straight
   from the input image into the packed panels: no [K, P] column matrix is written and read back, and no
   buffer of it is allocated per call (VGG-19's first layers: 115 MB). Always the packed path (no GEMV:
   its B must be stored). */
void LAMINA_GEMM_PACKER_B_FUNCTION(lamina_pool* pool, int trans_a, int64_t m, int64_t n, int64_t k,
                                   lamina_real alpha, const lamina_real* a, int64_t lda,
                                   const lamina_gemm_b_packer* b_packer, lamina_real beta, lamina_real* c,
                                   int64_t ldc, const lamina_gemm_epilogue* epilogue) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0 || alpha == (lamina_real)0) {
    /* Nothing to multiply: the general GEMM scales C and never reads B. */
    LAMINA_GEMM_FUNCTION(pool, trans_a, 0, m, n, k, alpha, a, lda, NULL, n, beta, c, ldc, epilogue);
    return;
  }
  lamina_gemm_job g = {trans_a, 0, m, n, k, alpha, beta, a, NULL, c, lda, 0, ldc, epilogue, pool,
                       {1, 1, m, n}, 0, 0, NULL, 0, NULL, 0, b_packer, MR, NULL, 0, 0};
  lamina_gemm_run_packed(&g);
}

/* ---- A left operand packed once for many products ----
   A convolution's weights at inference are the same matrix call after call until a parameter changes:
   lamina_gemm_pack_a_* writes op(A) [m x k] in the layout the tiles read, and lamina_gemm_packed_a_*
   multiplies by it without packing it in every call, on every thread and for every column block (a 7x7
   layer's weights are each multiplied by only 49 columns: packing them was about half of its GEMM).
   The layout: for each k-block (lamina_gemm_even_block(k, KC, 4), as the GEMM blocks K), the rows rounded
   up to the panel height (lamina_gemm_panel_rows(m): MR, or MR_NARROW where MR would pad), as panels of
   that many rows, element (i, p) of panel q at q * rows * kc + p * rows + i; rows past m are zero. The
   buffer needs LAMINA_GEMM_PACKED_A_ELEMENTS(m, k) elements (lamina_runtime.h), an upper bound for every
   instruction set; the same instruction set must pack and multiply, for the same (m, k). alpha is 1. */
void LAMINA_GEMM_PACK_A_FUNCTION(int trans_a, int64_t m, int64_t k, const lamina_real* a, int64_t lda,
                                 lamina_real* packed) {
  if (m <= 0 || k <= 0) return;
  const int rows = lamina_gemm_panel_rows(m);
  const int64_t kc_block = lamina_gemm_even_block(k, KC, 4);
  const int64_t height = lamina_gemm_round_up(m, rows);
  for (int64_t pc = 0; pc < k; pc += kc_block) {
    const int64_t kc = lamina_gemm_min(kc_block, k - pc);
    lamina_gemm_pack_a(rows, trans_a, trans_a ? a + pc * lda : a + pc, lda, m, kc, (lamina_real)1,
                       packed + pc * height);
  }
}

/* C = op(A) @ op(B) + beta * C with op(A) packed by lamina_gemm_pack_a_*, and op(B) either stored (b, ldb,
   trans_b) or packed by the caller's packer (b_packer non-NULL; b is then unused). Always the packed path. */
void LAMINA_GEMM_PACKED_A_FUNCTION(lamina_pool* pool, int64_t m, int64_t n, int64_t k, const lamina_real* packed_a,
                                   int trans_b, const lamina_real* b, int64_t ldb,
                                   const lamina_gemm_b_packer* b_packer, lamina_real beta, lamina_real* c,
                                   int64_t ldc, const lamina_gemm_epilogue* epilogue) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    /* Nothing to multiply: the general GEMM scales C and reads neither operand. */
    LAMINA_GEMM_FUNCTION(pool, 0, 0, m, n, k, (lamina_real)1, NULL, k, NULL, n, beta, c, ldc, epilogue);
    return;
  }
  lamina_gemm_job g = {0, trans_b, m, n, k, (lamina_real)1, beta, NULL, b_packer ? NULL : b, c, 0, ldb, ldc,
                       epilogue, pool, {1, 1, m, n}, 0, 0, NULL, 0, NULL, 0, b_packer, MR, packed_a, 0, 0};
  g.packed_height = lamina_gemm_round_up(m, lamina_gemm_panel_rows(m));
  lamina_gemm_run_packed(&g);
}
