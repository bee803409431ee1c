/* lamina_runtime.h — what generated model code uses from the C runtime (lamina_pool.c, lamina_gemm.c).
 *
 * The runtime is compiled once per compiler and flags into an object that every model library links
 * (with hidden visibility, so libraries never export it); the model's own translation unit only needs
 * these declarations. Their definitions and documentation are in the two runtime files. */

typedef struct lamina_pool lamina_pool;
/* threads <= 0: LAMINA_NUM_THREADS, else one per online core. NULL when out of memory. */
lamina_pool* lamina_pool_create(int threads);
void lamina_pool_destroy(lamina_pool* pool);
int lamina_pool_threads(const lamina_pool* pool);
/* Idle workers go to sleep now instead of spinning for the next run (which wakes them). */
void lamina_pool_hush(lamina_pool* pool);
/* Runs body(arg, task, thread) for every task in [0, tasks) on the pool's threads and returns when all are done. */
void lamina_pool_run(lamina_pool* pool, int64_t tasks, void (*body)(void* arg, int64_t task, int thread), void* arg);

/* Called once per finished block of C (bias, activation, residual: operator fusion). */
typedef struct lamina_gemm_epilogue {
  void (*apply)(void* arg, void* c, int64_t ldc, int64_t row0, int64_t col0, int64_t rows, int64_t cols);
  void* arg;
} lamina_gemm_epilogue;

/* C[M,N] = alpha * op(A) @ op(B) + beta * C, row-major with leading dimensions; op(X) = X or X^T. */
void lamina_sgemm(lamina_pool* pool, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                  const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc,
                  const lamina_gemm_epilogue* epilogue);
void lamina_dgemm(lamina_pool* pool, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, double alpha,
                  const double* a, int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc,
                  const lamina_gemm_epilogue* epilogue);
