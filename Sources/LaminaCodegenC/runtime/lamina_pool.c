/* Placeholder thread pool: runs every task on the calling thread (replaced by the real pool). */
typedef struct lamina_pool { int threads; } lamina_pool;
static lamina_pool* lamina_pool_create(int threads) {
  (void)threads;
  lamina_pool* pool = (lamina_pool*)calloc(1, sizeof(lamina_pool));
  if (pool) pool->threads = 1;
  return pool;
}
static void lamina_pool_destroy(lamina_pool* pool) { free(pool); }
