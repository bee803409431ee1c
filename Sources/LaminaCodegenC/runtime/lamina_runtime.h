/* lamina_runtime.h — the interface of the Lamina C runtime: thread pool, GEMM, CPU features.
 *
 * The runtime is a set of translation units, each compiled once per compiler, flags and instruction
 * set into a cached object that every model library links (with hidden visibility, so libraries never
 * export it):
 *   lamina_pool.c   the thread pool
 *   lamina_gemm.c   the GEMM, compiled once per (element type, instruction set):
 *                     cc -c -DLAMINA_GEMM_T=float -DLAMINA_GEMM_SUFFIX=f32_avx512 -march=x86-64-v4 lamina_gemm.c
 *                   defines lamina_gemm_f32_avx512
 *   lamina_cpu.c    which instruction sets this CPU runs, compiled for the baseline x86-64 (or the
 *                   compiler's default elsewhere) so that it runs on any CPU
 * Generated model code includes this header; their definitions and documentation are in those files. */
#ifndef LAMINA_RUNTIME_H
#define LAMINA_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

/* ---- Thread pool (lamina_pool.c) ---- */

/* Scratch memory per thread; lamina_gemm.c checks at compile time that its largest blocking fits. */
#ifndef LAMINA_POOL_SCRATCH_BYTES
#define LAMINA_POOL_SCRATCH_BYTES ((size_t)2 << 20)
#endif

/* Threads a pool has at most (more are cut to this). */
#define LAMINA_POOL_MAX_THREADS 256

typedef struct lamina_pool lamina_pool;
/* threads <= 0: LAMINA_NUM_THREADS, else one per online core. NULL when out of memory. */
lamina_pool* lamina_pool_create(int threads);
void lamina_pool_destroy(lamina_pool* pool);
/* Threads of the pool, the caller included (1 for a NULL pool). */
int lamina_pool_threads(const lamina_pool* pool);
/* Idle workers go to sleep now instead of spinning for the next run (which wakes them). */
void lamina_pool_hush(lamina_pool* pool);
/* Runs body(arg, task, thread) for every task in [0, tasks) on the pool's threads and returns when all are done. */
void lamina_pool_run(lamina_pool* pool, int64_t tasks, void (*body)(void* arg, int64_t task, int thread), void* arg);
/* The 64-byte aligned scratch memory of one of the pool's threads (bytes, if not NULL, receives its size). */
void* lamina_pool_scratch(lamina_pool* pool, int thread, size_t* bytes);
/* A 64-byte aligned buffer of at least `bytes` for the tasks that run on thread `thread`, kept between runs (its
   contents are lost when it grows); NULL without a pool, out of memory or above LAMINA_POOL_THREAD_BUFFER_MAX.
   The pool's caller asks for it before a run. Why not a per-call allocation: there, the lines one thread used were
   the other thread's in the last layer of another size, and where two cores share no cache each such line crosses
   between them (BENCHMARKS.md, session 25). */
void* lamina_pool_thread_buffer(lamina_pool* pool, int thread, size_t bytes);
#ifndef LAMINA_POOL_THREAD_BUFFER_MAX
#define LAMINA_POOL_THREAD_BUFFER_MAX ((size_t)64 << 20)
#endif

/* ---- GEMM (lamina_gemm.c) ---- */

/* Called once per finished block of C, after its last k-block, while the block is still in cache
 * (bias, activation, residual: operator fusion). `c` and `ldc` are those of the whole C matrix: the
 * block is c[(row0 + i) * ldc + col0 + j] for 0 <= i < rows, 0 <= j < cols (c is float* or double*). */
typedef struct lamina_gemm_epilogue {
  void (*apply)(void* arg, void* c, int64_t ldc, int64_t row0, int64_t col0, int64_t rows, int64_t cols);
  void* arg;
  /* Convolutions only (lamina_conv.h): nonzero when the epilogue sees the NCHW result as planes,
     [batch * channels, height * width], instead of rows of its last axis. The GEMM ignores it. */
  int planes;
  /* Optional: one value per row of C (of the GEMM's element type), added to the row's elements as part of
     their final value, before apply (which may then be NULL): the micro-kernels start their last sums
     from it instead of a pass over C. */
  const void* row_bias;
  /* Nonzero when apply is exactly a relu in place (x = 0 >= x ? 0 : x, after the row bias): the GEMM then
     rectifies the final values in its registers as it stores them and does not call apply; so does the
     convolutions' channel kernel. Other producers (the other direct kernels) call apply as usual. */
  int relu_only;
} lamina_gemm_epilogue;

/* C[M,N] = alpha * op(A) @ op(B) + beta * C, row-major with leading dimensions; op(X) = X or X^T.
 * One function per element type and instruction set: f32 / f64, and
 *   avx512   x86-64-v4 (AVX-512F/BW/CD/DQ/VL), 64-byte vectors
 *   avx2     x86-64-v3 (AVX2, FMA), 32-byte vectors
 *   native   whatever -march=native enables on the machine that compiled it
 *   generic  no instruction set beyond the compiler's default (16-byte vectors: SSE2, NEON) */
#define LAMINA_GEMM_DECLARE(T, suffix)                                                                           \
  void lamina_gemm_##suffix(lamina_pool* pool, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, T alpha, \
                            const T* a, int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc,           \
                            const lamina_gemm_epilogue* epilogue)
/* The same product with op(B) packed beforehand by lamina_gemm_pack_b_* of the same suffix into
 * `packed` (LAMINA_GEMM_PACKED_B_ELEMENTS(n, k, sizeof(T)) elements, 64-byte aligned): for a matrix
 * that many products share (a loop's invariant weight), packed once instead of in every call. */
#define LAMINA_GEMM_PACKED_B_DECLARE(T, suffix)                                                                  \
  void lamina_gemm_pack_b_##suffix(int trans_b, int64_t k, int64_t n, const T* b, int64_t ldb, T* packed);        \
  void lamina_gemm_packed_b_##suffix(lamina_pool* pool, int trans_a, int64_t m, int64_t n, int64_t k, T alpha,    \
                                     const T* a, int64_t lda, const T* packed, T beta, T* c, int64_t ldc,         \
                                     const lamina_gemm_epilogue* epilogue);                                       \
  int lamina_gemm_packed_b_columns_##suffix(lamina_pool* pool, int thread, int trans_a, int64_t m, int64_t n,    \
                                            int64_t k, int64_t j0, int64_t j1, const T* a, int64_t lda,          \
                                            const T* packed, T* c, int64_t ldc)
/* Columns [j0, j1) of that product with alpha 1 and beta 0 (j0 a multiple of LAMINA_GEMM_COLUMN_ALIGN, a panel
 * boundary on every instruction set; C's other columns untouched), on the calling thread: a task of `pool` running
 * on its thread `thread` (op(A) is packed in that thread's scratch memory; pool NULL: memory from the heap). Returns
 * 0, or LAMINA_ERROR_MEMORY when that memory cannot be allocated (only without a pool). A kernel that splits a
 * product's columns over its own tasks (Winograd by output channels) calls it per task. */
#define LAMINA_GEMM_COLUMN_ALIGN 32
/* A right operand that the caller packs itself, block by block, because it is computed rather than stored: a
 * convolution's im2col columns, read straight from the input image into the GEMM's panels (never written out as
 * a [K, P] matrix). pack(arg, p0, kc, j0, nc, nr, packed) writes op(B)[p0 .. p0 + kc, j0 .. j0 + nc] as
 * ceil(nc / nr) panels of nr columns: element (p, j) of panel q at packed[q * nr * kc + p * nr + j], the
 * columns past nc zero (T* behind the void*). It may run on several threads at once, for different blocks. */
typedef struct lamina_gemm_b_packer {
  void (*pack)(const void* arg, int64_t p0, int64_t kc, int64_t j0, int64_t nc, int64_t nr, void* packed);
  const void* arg;
} lamina_gemm_b_packer;
#define LAMINA_GEMM_PACKER_B_DECLARE(T, suffix)                                                                  \
  void lamina_gemm_packer_b_##suffix(lamina_pool* pool, int trans_a, int64_t m, int64_t n, int64_t k, T alpha,   \
                                     const T* a, int64_t lda, const lamina_gemm_b_packer* b, T beta, T* c,       \
                                     int64_t ldc, const lamina_gemm_epilogue* epilogue)
/* A left operand packed once for many products (a convolution's weights at inference, refilled when a parameter
 * changes: lamina_derived in lamina_model.h): lamina_gemm_pack_a_* writes op(A) [m x k] (alpha 1) into `packed`
 * (LAMINA_GEMM_PACKED_A_ELEMENTS(m, k) elements, 64-byte aligned) in the layout the GEMM's tiles read, and
 * lamina_gemm_packed_a_* computes C = op(A) @ op(B) + beta * C from it, op(B) stored (b, ldb, trans_b) or
 * packed by the caller (b_packer non-NULL, b unused). The same suffix must pack and multiply. */
#define LAMINA_GEMM_PACKED_A_DECLARE(T, suffix)                                                                  \
  void lamina_gemm_pack_a_##suffix(int trans_a, int64_t m, int64_t k, const T* a, int64_t lda, T* packed);        \
  void lamina_gemm_packed_a_##suffix(lamina_pool* pool, int64_t m, int64_t n, int64_t k, const T* packed_a,       \
                                     int trans_b, const T* b, int64_t ldb, const lamina_gemm_b_packer* b_packer,  \
                                     T beta, T* c, int64_t ldc, const lamina_gemm_epilogue* epilogue)
/* Elements of a packed op(A) [m x k]: m rounded up to the tallest panel (12 rows), enough for every instruction
 * set (panels of 12 or 8 rows with AVX-512, 6 or 4 otherwise). */
#define LAMINA_GEMM_PACKED_A_ELEMENTS(m, k) (((m) + 11) * (k))
/* Elements of a packed op(B) [k x n]: k rows of n rounded up to the widest micro-panel (2 vectors of
 * 64 bytes), enough for every instruction set. */
#define LAMINA_GEMM_PACKED_B_ELEMENTS(n, k, element_bytes) \
  ((k) * (((n) + 128 / (element_bytes) - 1) / (128 / (element_bytes)) * (128 / (element_bytes))))
LAMINA_GEMM_DECLARE(float, f32_avx512);
LAMINA_GEMM_DECLARE(double, f64_avx512);
LAMINA_GEMM_DECLARE(float, f32_avx2);
LAMINA_GEMM_DECLARE(double, f64_avx2);
LAMINA_GEMM_DECLARE(float, f32_native);
LAMINA_GEMM_DECLARE(double, f64_native);
LAMINA_GEMM_DECLARE(float, f32_generic);
LAMINA_GEMM_DECLARE(double, f64_generic);
LAMINA_GEMM_PACKED_B_DECLARE(float, f32_avx512);
LAMINA_GEMM_PACKED_B_DECLARE(double, f64_avx512);
LAMINA_GEMM_PACKED_B_DECLARE(float, f32_avx2);
LAMINA_GEMM_PACKED_B_DECLARE(double, f64_avx2);
LAMINA_GEMM_PACKED_B_DECLARE(float, f32_native);
LAMINA_GEMM_PACKED_B_DECLARE(double, f64_native);
LAMINA_GEMM_PACKED_B_DECLARE(float, f32_generic);
LAMINA_GEMM_PACKED_B_DECLARE(double, f64_generic);
LAMINA_GEMM_PACKER_B_DECLARE(float, f32_avx512);
LAMINA_GEMM_PACKER_B_DECLARE(double, f64_avx512);
LAMINA_GEMM_PACKER_B_DECLARE(float, f32_avx2);
LAMINA_GEMM_PACKER_B_DECLARE(double, f64_avx2);
LAMINA_GEMM_PACKER_B_DECLARE(float, f32_native);
LAMINA_GEMM_PACKER_B_DECLARE(double, f64_native);
LAMINA_GEMM_PACKER_B_DECLARE(float, f32_generic);
LAMINA_GEMM_PACKER_B_DECLARE(double, f64_generic);
LAMINA_GEMM_PACKED_A_DECLARE(float, f32_avx512);
LAMINA_GEMM_PACKED_A_DECLARE(double, f64_avx512);
LAMINA_GEMM_PACKED_A_DECLARE(float, f32_avx2);
LAMINA_GEMM_PACKED_A_DECLARE(double, f64_avx2);
LAMINA_GEMM_PACKED_A_DECLARE(float, f32_native);
LAMINA_GEMM_PACKED_A_DECLARE(double, f64_native);
LAMINA_GEMM_PACKED_A_DECLARE(float, f32_generic);
LAMINA_GEMM_PACKED_A_DECLARE(double, f64_generic);
#undef LAMINA_GEMM_DECLARE
#undef LAMINA_GEMM_PACKED_A_DECLARE
#undef LAMINA_GEMM_PACKED_B_DECLARE
#undef LAMINA_GEMM_PACKER_B_DECLARE

/* Model code is compiled once per instruction set it supports (-DLAMINA_ISA=avx512, ...) and calls
   lamina_sgemm / lamina_dgemm, which are the GEMM of that same instruction set. */
#define LAMINA_RUNTIME_PASTE(a, b) a##b
#define LAMINA_RUNTIME_NAME(a, b) LAMINA_RUNTIME_PASTE(a, b) /* a and b expanded, then pasted */
#ifdef LAMINA_ISA
#define lamina_sgemm LAMINA_RUNTIME_NAME(lamina_gemm_f32_, LAMINA_ISA)
#define lamina_dgemm LAMINA_RUNTIME_NAME(lamina_gemm_f64_, LAMINA_ISA)
#define lamina_sgemm_pack_b LAMINA_RUNTIME_NAME(lamina_gemm_pack_b_f32_, LAMINA_ISA)
#define lamina_dgemm_pack_b LAMINA_RUNTIME_NAME(lamina_gemm_pack_b_f64_, LAMINA_ISA)
#define lamina_sgemm_packed_b LAMINA_RUNTIME_NAME(lamina_gemm_packed_b_f32_, LAMINA_ISA)
#define lamina_dgemm_packed_b LAMINA_RUNTIME_NAME(lamina_gemm_packed_b_f64_, LAMINA_ISA)
#define lamina_sgemm_packed_b_columns LAMINA_RUNTIME_NAME(lamina_gemm_packed_b_columns_f32_, LAMINA_ISA)
#define lamina_dgemm_packed_b_columns LAMINA_RUNTIME_NAME(lamina_gemm_packed_b_columns_f64_, LAMINA_ISA)
#define lamina_sgemm_packer_b LAMINA_RUNTIME_NAME(lamina_gemm_packer_b_f32_, LAMINA_ISA)
#define lamina_dgemm_packer_b LAMINA_RUNTIME_NAME(lamina_gemm_packer_b_f64_, LAMINA_ISA)
#define lamina_sgemm_pack_a LAMINA_RUNTIME_NAME(lamina_gemm_pack_a_f32_, LAMINA_ISA)
#define lamina_dgemm_pack_a LAMINA_RUNTIME_NAME(lamina_gemm_pack_a_f64_, LAMINA_ISA)
#define lamina_sgemm_packed_a LAMINA_RUNTIME_NAME(lamina_gemm_packed_a_f32_, LAMINA_ISA)
#define lamina_dgemm_packed_a LAMINA_RUNTIME_NAME(lamina_gemm_packed_a_f64_, LAMINA_ISA)
#endif

/* ---- CPU features (lamina_cpu.c) ---- */

/* The features of `required` (names separated by spaces: "avx2 fma avx512f ...", or the levels
   "x86-64-v3" and "x86-64-v4") that this CPU lacks, separated by spaces, written into `missing`
   (at most `size` bytes, NUL-terminated); returns how many are missing. Features named in the
   environment variable LAMINA_CPU_DISABLE (comma- or space-separated: LAMINA_CPU_DISABLE=avx512f)
   count as missing, so tests can run the code a CPU without them would run; so do those given to
   lamina_cpu_disable_on_thread, for the calling thread only. */
int lamina_cpu_missing(const char* required, char* missing, size_t size);
/* Makes the calling thread's lamina_cpu_missing count `features` (as LAMINA_CPU_DISABLE lists them)
   as missing too, until the next call; NULL or "" clears it. */
void lamina_cpu_disable_on_thread(const char* features);

#endif
