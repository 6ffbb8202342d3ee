/* latency: a fixed-size histogram of durations, for the plugin's "how the HES is doing"
 * self-metrics (HTTP request time, push latency). Recording is O(1), allocation-free and
 * lock-free (relaxed atomics), so any thread may record while another takes the round's
 * figures; no sample list is kept, so memory does not grow with the traffic.
 *
 * Buckets are log-linear (as in HdrHistogram): durations are kept in whole microseconds,
 * exact below 64 us, and above that in 32 sub-buckets per power of two. A quantile is
 * reported as its bucket's midpoint, so it is within 1/64 (1.6%) of the exact nearest-rank
 * quantile, plus the half microsecond of rounding. Durations from 0 to 2^40 us (12.7 days);
 * longer ones count as 2^40 - 1 us, negative ones and NaN as 0. */
#ifndef HES_LATENCY_H
#define HES_LATENCY_H

#include <stdatomic.h>
#include <stdint.h>

#define HES_LATENCY_SUB_BITS 5 /* 32 sub-buckets per power of two */
#define HES_LATENCY_MAX_BITS 40
#define HES_LATENCY_BUCKETS                                                                        \
  ((HES_LATENCY_MAX_BITS - HES_LATENCY_SUB_BITS + 1) * (1u << HES_LATENCY_SUB_BITS))

/* The fields are the module's: embed the struct, call hes_latency_init once, then only the
 * functions below. 9 KiB. */
typedef struct {
  atomic_uint_fast64_t bucket[HES_LATENCY_BUCKETS];
  atomic_uint_fast64_t sum_us;
  atomic_uint_fast64_t max_us;
} hes_latency_t;

/* One round's figures, in seconds; all 0 when count is 0. */
typedef struct {
  uint64_t count;
  double mean;
  double max; /* exact, to the microsecond */
  double p50; /* nearest-rank quantiles, within 1/64 */
  double p95;
} hes_latency_summary_t;

void hes_latency_init(hes_latency_t *h);

/* Records n durations of `seconds` each (a push answers many meters at once). h NULL or n 0:
 * nothing. Thread-safe, lock-free. */
void hes_latency_record_n(hes_latency_t *h, double seconds, uint64_t n);

static inline void hes_latency_record(hes_latency_t *h, double seconds) {
  hes_latency_record_n(h, seconds, 1);
}

/* Fills *out with what was recorded since the last take (or init), and starts over.
 * Thread-safe against recorders; a record racing with a take may have its count in one
 * round and its sum in the next. Not for two takers at once. */
void hes_latency_take(hes_latency_t *h, hes_latency_summary_t *out);

#endif
