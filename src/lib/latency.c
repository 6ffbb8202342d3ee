/* latency: the log-linear histogram behind the latency self-metrics (see latency.h). */
#include "latency.h"

#include <math.h>
#include <string.h>

#define SUB      (1u << HES_LATENCY_SUB_BITS)
#define US_LIMIT ((UINT64_C(1) << HES_LATENCY_MAX_BITS) - 1)

_Static_assert(HES_LATENCY_BUCKETS == (HES_LATENCY_MAX_BITS - HES_LATENCY_SUB_BITS + 1) * SUB,
               "one group of SUB buckets per power of two from 2^SUB_BITS, plus the exact ones");

static uint64_t to_us(double seconds) {
  if (!(seconds > 0)) /* NaN too */
    return 0;
  if (seconds >= (double)US_LIMIT / 1e6)
    return US_LIMIT;
  return (uint64_t)llround(seconds * 1e6);
}

/* Values below 2*SUB have a bucket each; above, the value's top SUB_BITS+1 bits pick it. */
static unsigned bucket_of(uint64_t us) {
  if (us < 2 * SUB)
    return (unsigned)us;
  unsigned msb = 63u - (unsigned)__builtin_clzll(us);
  unsigned shift = msb - HES_LATENCY_SUB_BITS;
  return (shift + 1) * SUB + (unsigned)(us >> shift) - SUB;
}

/* The middle of the bucket's range of whole microseconds. */
static double bucket_mid_us(unsigned idx) {
  if (idx < 2 * SUB)
    return (double)idx;
  unsigned shift = idx / SUB - 1;
  uint64_t low = (uint64_t)(SUB + idx % SUB) << shift;
  uint64_t width = UINT64_C(1) << shift;
  return (double)low + (double)(width - 1) / 2.0;
}

void hes_latency_init(hes_latency_t *h) {
  for (size_t i = 0; i < HES_LATENCY_BUCKETS; i++)
    atomic_init(&h->bucket[i], 0);
  atomic_init(&h->sum_us, 0);
  atomic_init(&h->max_us, 0);
}

void hes_latency_record_n(hes_latency_t *h, double seconds, uint64_t n) {
  if (h == NULL || n == 0)
    return;
  uint64_t us = to_us(seconds);
  atomic_fetch_add_explicit(&h->bucket[bucket_of(us)], n, memory_order_relaxed);
  atomic_fetch_add_explicit(&h->sum_us, us * n, memory_order_relaxed);
  uint_fast64_t cur = atomic_load_explicit(&h->max_us, memory_order_relaxed);
  while (us > cur && !atomic_compare_exchange_weak_explicit(
                         &h->max_us, &cur, us, memory_order_relaxed, memory_order_relaxed))
    ;
}

/* The smallest bucket whose cumulative count reaches rank (1-based). */
static double quantile_us(const uint64_t *counts, uint64_t rank) {
  uint64_t seen = 0;
  for (unsigned i = 0; i < HES_LATENCY_BUCKETS; i++) {
    seen += counts[i];
    if (seen >= rank)
      return bucket_mid_us(i);
  }
  return 0;
}

static uint64_t rank_of(double q, uint64_t count) {
  uint64_t r = (uint64_t)ceil(q * (double)count);
  return r < 1 ? 1 : r;
}

void hes_latency_take(hes_latency_t *h, hes_latency_summary_t *out) {
  memset(out, 0, sizeof(*out));
  if (h == NULL)
    return;
  uint64_t counts[HES_LATENCY_BUCKETS];
  uint64_t count = 0;
  for (unsigned i = 0; i < HES_LATENCY_BUCKETS; i++) {
    counts[i] = atomic_exchange_explicit(&h->bucket[i], 0, memory_order_relaxed);
    count += counts[i];
  }
  uint64_t sum = atomic_exchange_explicit(&h->sum_us, 0, memory_order_relaxed);
  uint64_t max = atomic_exchange_explicit(&h->max_us, 0, memory_order_relaxed);
  if (count == 0)
    return;
  /* A bucket's middle can lie above the largest value in it. */
  double p50 = quantile_us(counts, rank_of(0.50, count));
  double p95 = quantile_us(counts, rank_of(0.95, count));
  out->count = count;
  out->mean = (double)sum / (double)count / 1e6;
  out->max = (double)max / 1e6;
  out->p50 = fmin(p50, (double)max) / 1e6;
  out->p95 = fmin(p95, (double)max) / 1e6;
}
