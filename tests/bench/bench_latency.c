/* bench_latency: what recording a duration costs (the latency self-metrics sit on the push
 * path), in ns per record: one thread; two threads on the same histogram (the MQTT thread
 * and the read thread of a server); and a take (once per round).
 *
 *   make tests/bench/bench_latency && tests/bench/bench_latency [records per thread]
 *
 * The durations are drawn before the clock starts, so the figure is the record alone. */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "latency.h"

#define SAMPLES 4096 /* a power of two */

static double samples[SAMPLES];
static hes_latency_t hist;
static long per_thread = 50000000;

static double mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *recorder(void *arg) {
  size_t off = (size_t)arg;
  for (long i = 0; i < per_thread; i++)
    hes_latency_record(&hist, samples[(off + (size_t)i) & (SAMPLES - 1)]);
  return NULL;
}

static double run(int threads) {
  pthread_t t[8];
  double t0 = mono();
  for (int i = 0; i < threads; i++)
    if (pthread_create(&t[i], NULL, recorder, (void *)(size_t)(i * 997)) != 0) {
      fprintf(stderr, "bench_latency: pthread_create failed\n");
      exit(1);
    }
  for (int i = 0; i < threads; i++)
    pthread_join(t[i], NULL);
  return mono() - t0;
}

int main(int argc, char **argv) {
  if (argc > 1)
    per_thread = atol(argv[1]);
  if (per_thread <= 0) {
    fprintf(stderr, "usage: bench_latency [records per thread]\n");
    return 2;
  }
  hes_latency_init(&hist);
  uint64_t x = 88172645463325252u;
  for (size_t i = 0; i < SAMPLES; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    samples[i] = 0.05 + (double)(x % 5000000) / 1e6; /* 50 ms .. 5 s */
  }
  hes_latency_summary_t s;

  double one = run(1);
  hes_latency_take(&hist, &s);
  printf("1 thread:  %ld records in %.3f s: %.2f ns/record (p50 %.3f s, p95 %.3f s)\n", per_thread,
         one, one * 1e9 / (double)per_thread, s.p50, s.p95);

  double two = run(2);
  hes_latency_take(&hist, &s);
  printf("2 threads, one histogram: %ld records each in %.3f s: %.2f ns/record per thread\n",
         per_thread, two, two * 1e9 / (double)per_thread);

  enum { TAKES = 20000 };
  double t0 = mono();
  for (int i = 0; i < TAKES; i++) {
    hes_latency_record(&hist, samples[i & (SAMPLES - 1)]);
    hes_latency_take(&hist, &s);
  }
  printf("take (once per round): %.2f us\n", (mono() - t0) * 1e6 / TAKES);
  return s.count == 1 ? 0 : 1;
}
