/* Placeholder GEMM: a plain loop (replaced by the packed, blocked kernel). */
typedef struct lamina_gemm_epilogue {
  void (*apply)(void* arg, void* c, int64_t ldc, int64_t row0, int64_t col0, int64_t rows, int64_t cols);
  void* arg;
} lamina_gemm_epilogue;
static void lamina_sgemm(lamina_pool* pool, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                         const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc,
                         const lamina_gemm_epilogue* epilogue) {
  (void)pool; (void)epilogue;
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++) {
      float sum = 0;
      for (int64_t p = 0; p < k; p++) sum += (trans_a ? a[p * lda + i] : a[i * lda + p]) * (trans_b ? b[j * ldb + p] : b[p * ldb + j]);
      c[i * ldc + j] = alpha * sum + (beta == 0 ? 0 : beta * c[i * ldc + j]);
    }
}
static void lamina_dgemm(lamina_pool* pool, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, double alpha,
                         const double* a, int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc,
                         const lamina_gemm_epilogue* epilogue) {
  (void)pool; (void)epilogue;
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++) {
      double sum = 0;
      for (int64_t p = 0; p < k; p++) sum += (trans_a ? a[p * lda + i] : a[i * lda + p]) * (trans_b ? b[j * ldb + p] : b[p * ldb + j]);
      c[i * ldc + j] = alpha * sum + (beta == 0 ? 0 : beta * c[i * ldc + j]);
    }
}
