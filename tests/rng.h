/* rng.h: the unit tests' random numbers (xorshift64*), reproducible, so a failure names the
 * same samples every run. One generator per test program. */
#ifndef HES_TEST_RNG_H
#define HES_TEST_RNG_H

#include <stdint.h>

static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static uint64_t rng(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 2685821657736338717u;
}

#endif
