/* Philox-4x32-10 (Salmon, Moraes, Dror and Shaw, "Parallel random numbers: as easy as 1, 2, 3",
 * SC 2011; Random123's philox4x32): a counter-based random number generator. Each 128-bit counter
 * under a 64-bit key gives four independent 32-bit words, so the random number of any element is
 * computed from its position alone, in any order, on any thread.
 *
 * The reference interpreter has the same function in Swift (LaminaSupport/Philox.swift), and
 * dropout's masks agree bit for bit between the two; both are tested against Random123's published
 * known-answer vectors. */
#ifndef LAMINA_PHILOX_H
#define LAMINA_PHILOX_H

#include <stdint.h>

/* Four words of output (or of counter). */
typedef struct {
  uint32_t word[4];
} lamina_philox_block;

/* The block of counter (c0, c1, c2, c3) under key (k0, k1), after 10 rounds. */
static inline lamina_philox_block lamina_philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2,
                                                       uint32_t c3, uint32_t k0, uint32_t k1) {
  for (int round = 0; round < 10; round++) {
    if (round > 0) {
      /* The key follows a Weyl sequence: the golden ratio and sqrt(3) - 1, in 32 bits. */
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    const uint64_t product0 = (uint64_t)0xD2511F53u * c0;
    const uint64_t product1 = (uint64_t)0xCD9E8D57u * c2;
    const uint32_t next0 = (uint32_t)(product1 >> 32) ^ c1 ^ k0;
    const uint32_t next2 = (uint32_t)(product0 >> 32) ^ c3 ^ k1;
    c1 = (uint32_t)product1;
    c3 = (uint32_t)product0;
    c0 = next0;
    c2 = next2;
  }
  lamina_philox_block result = {{c0, c1, c2, c3}};
  return result;
}

/* Dropout's random words for elements 4 * block .. 4 * block + 3 of the dropout node with stream id
 * `stream`, in the training step counted `step`, under `seed`: the counter is (block, stream,
 * step mod 2^32, step / 2^32), the key (seed mod 2^32, seed / 2^32). An element is kept when its
 * word is at least the node's threshold, rate * 2^32 rounded down. */
static inline lamina_philox_block lamina_dropout_block(uint64_t seed, uint64_t step,
                                                       uint32_t stream, uint32_t block) {
  return lamina_philox4x32_10(block, stream, (uint32_t)step, (uint32_t)(step >> 32),
                              (uint32_t)seed, (uint32_t)(seed >> 32));
}

/* The random words of elements 4 * block .. 4 * block + 3 of a random_normal or random_uniform node
 * with stream id `stream` (from 2^31, above dropout's), under the generator's seed and step: the
 * same counter layout as dropout's. */
static inline lamina_philox_block lamina_sample_block(uint64_t seed, uint64_t step, uint32_t stream,
                                                      uint32_t block) {
  return lamina_philox4x32_10(block, stream, (uint32_t)step, (uint32_t)(step >> 32),
                              (uint32_t)seed, (uint32_t)(seed >> 32));
}

/* Elements past this count would reuse counters (an element's block index is 32 bits). */
#define LAMINA_DROPOUT_ELEMENT_LIMIT ((int64_t)1 << 34)

#endif
