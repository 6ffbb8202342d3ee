/* Tests for latency: the histogram's mean, max and quantiles against exact figures computed
 * from the same samples (nearest rank), its bounds and edge values, record_n, the reset that
 * take does, and records from several threads at once. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdlib.h>

#include "latency.h"
#include "rng.h"

/* --- helpers ----------------------------------------------------------------------------- */

static double uniform(void) {
  return (double)(rng() >> 11) / 9007199254740992.0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* The exact nearest-rank quantile of sorted[0..n), each sample rounded to the microsecond
 * as the histogram keeps it. */
static double exact_quantile(const double *sorted, size_t n, double q) {
  size_t rank = (size_t)ceil(q * (double)n);
  if (rank < 1)
    rank = 1;
  return round(sorted[rank - 1] * 1e6) / 1e6;
}

/* The documented bound: within 1/64 of the exact value, plus the half microsecond of
 * rounding. */
static void assert_close(double got, double exact) {
  double bound = exact / 64.0 + 0.5e-6;
  if (fabs(got - exact) > bound)
    fail_msg("got %.9g s, exact %.9g s, bound %.3g s", got, exact, bound);
}

/* cmocka's assert_float_equal compares floats; these figures need doubles. */
#define assert_near(a, b, eps) assert_near_((a), (b), (eps), #a)
static void assert_near_(double a, double b, double eps, const char *what) {
  if (!(fabs(a - b) <= eps))
    fail_msg("%s: %.12g, expected %.12g within %.3g", what, a, b, eps);
}

static hes_latency_t *new_latency(void) {
  hes_latency_t *h = malloc(sizeof(*h));
  assert_non_null(h);
  hes_latency_init(h);
  return h;
}

/* Records samples[0..n) and checks the take against exact figures. */
static void check_against_exact(double *samples, size_t n) {
  hes_latency_t *h = new_latency();
  double sum = 0, max = 0;
  for (size_t i = 0; i < n; i++) {
    hes_latency_record(h, samples[i]);
    double us = round(samples[i] * 1e6) / 1e6;
    sum += us;
    max = us > max ? us : max;
  }
  hes_latency_summary_t s;
  hes_latency_take(h, &s);
  qsort(samples, n, sizeof(*samples), cmp_double);
  assert_int_equal(s.count, n);
  assert_near(s.mean, sum / (double)n, 1e-6);
  assert_near(s.max, max, 1e-9);
  assert_close(s.p50, exact_quantile(samples, n, 0.50));
  assert_close(s.p95, exact_quantile(samples, n, 0.95));
  assert_true(s.p50 <= s.p95 && s.p95 <= s.max);
  free(h);
}

/* --- tests ------------------------------------------------------------------------------- */

static void test_empty(void **state) {
  (void)state;
  hes_latency_t *h = new_latency();
  hes_latency_summary_t s = {.count = 7, .mean = 1, .max = 1, .p50 = 1, .p95 = 1};
  hes_latency_take(h, &s);
  assert_int_equal(s.count, 0);
  assert_true(s.mean == 0 && s.max == 0 && s.p50 == 0 && s.p95 == 0);
  hes_latency_take(NULL, &s);
  assert_int_equal(s.count, 0);
  hes_latency_record(NULL, 1.0); /* nothing, no crash */
  free(h);
}

static void test_one_sample(void **state) {
  (void)state;
  hes_latency_t *h = new_latency();
  hes_latency_record(h, 0.0123);
  hes_latency_summary_t s;
  hes_latency_take(h, &s);
  assert_int_equal(s.count, 1);
  assert_near(s.mean, 0.0123, 1e-9);
  assert_near(s.max, 0.0123, 1e-9);
  /* A single sample: the quantiles cannot exceed the max, which is exact. */
  assert_true(s.p50 <= s.max && s.p95 <= s.max);
  assert_close(s.p50, 0.0123);
  assert_close(s.p95, 0.0123);
  free(h);
}

/* Below 64 us every microsecond has its bucket: quantiles are exact. */
static void test_small_exact(void **state) {
  (void)state;
  hes_latency_t *h = new_latency();
  for (int us = 1; us <= 20; us++)
    hes_latency_record(h, us * 1e-6);
  hes_latency_summary_t s;
  hes_latency_take(h, &s);
  assert_int_equal(s.count, 20);
  assert_near(s.p50, 10e-6, 1e-12);
  assert_near(s.p95, 19e-6, 1e-12);
  assert_near(s.max, 20e-6, 1e-12);
  assert_near(s.mean, 10.5e-6, 1e-12);
  free(h);
}

/* Push latencies of a round: mostly around a second, a tail of tens of seconds. */
static void test_accuracy_long_tail(void **state) {
  (void)state;
  enum { N = 100000 };
  double *v = malloc(N * sizeof(*v));
  assert_non_null(v);
  for (int round = 0; round < 5; round++) {
    for (size_t i = 0; i < N; i++) {
      double u = uniform();
      v[i] = u < 0.9 ? 0.2 + 1.5 * uniform() : 2.0 + 60.0 * uniform() * uniform();
    }
    check_against_exact(v, N);
  }
  free(v);
}

/* Log-uniform from 1 us to 100 s: every bucket group, each quantile checked. */
static void test_accuracy_log_uniform(void **state) {
  (void)state;
  enum { N = 20000 };
  double *v = malloc(N * sizeof(*v));
  assert_non_null(v);
  for (int round = 0; round < 20; round++) {
    for (size_t i = 0; i < N; i++)
      v[i] = 1e-6 * pow(10.0, 8.0 * uniform());
    check_against_exact(v, N);
  }
  /* Few samples: nearest rank, not interpolation. */
  for (size_t n = 1; n <= 40; n++) {
    for (size_t i = 0; i < n; i++)
      v[i] = 1e-3 * pow(10.0, 4.0 * uniform());
    check_against_exact(v, n);
  }
  free(v);
}

static void test_record_n(void **state) {
  (void)state;
  hes_latency_t *a = new_latency(), *b = new_latency();
  hes_latency_record_n(a, 0.5, 1000);
  hes_latency_record_n(a, 2.0, 0); /* nothing */
  hes_latency_record_n(a, 3.0, 100);
  for (int i = 0; i < 1000; i++)
    hes_latency_record(b, 0.5);
  for (int i = 0; i < 100; i++)
    hes_latency_record(b, 3.0);
  hes_latency_summary_t sa, sb;
  hes_latency_take(a, &sa);
  hes_latency_take(b, &sb);
  assert_int_equal(sa.count, 1100);
  assert_true(sa.count == sb.count && sa.mean == sb.mean && sa.max == sb.max && sa.p50 == sb.p50 &&
              sa.p95 == sb.p95);
  assert_near(sa.max, 3.0, 1e-9);
  assert_close(sa.p50, 0.5);
  assert_close(sa.p95, 3.0);
  free(a);
  free(b);
}

static void test_take_resets(void **state) {
  (void)state;
  hes_latency_t *h = new_latency();
  hes_latency_record(h, 9.0);
  hes_latency_summary_t s;
  hes_latency_take(h, &s);
  assert_int_equal(s.count, 1);
  hes_latency_take(h, &s);
  assert_int_equal(s.count, 0);
  assert_true(s.max == 0);
  /* The max of a new round is that round's, not the old 9 s. */
  hes_latency_record(h, 0.001);
  hes_latency_take(h, &s);
  assert_near(s.max, 0.001, 1e-9);
  free(h);
}

static void test_edges(void **state) {
  (void)state;
  hes_latency_t *h = new_latency();
  hes_latency_record(h, -1.0);
  hes_latency_record(h, NAN);
  hes_latency_record(h, 0.0);
  hes_latency_summary_t s;
  hes_latency_take(h, &s);
  assert_int_equal(s.count, 3);
  assert_true(s.mean == 0 && s.max == 0 && s.p95 == 0);

  /* Beyond the range: counted, at the limit. */
  double limit = (double)((UINT64_C(1) << HES_LATENCY_MAX_BITS) - 1) / 1e6;
  hes_latency_record(h, 1e12);
  hes_latency_record(h, INFINITY);
  hes_latency_take(h, &s);
  assert_int_equal(s.count, 2);
  assert_near(s.max, limit, 1e-6);
  assert_true(s.p95 <= s.max);
  assert_close(s.p95, limit);
  free(h);
}

typedef struct {
  hes_latency_t *h;
  int id;
} worker_t;

enum { THREADS = 4, PER_THREAD = 200000 };

static void *worker(void *arg) {
  worker_t *w = arg;
  for (int i = 0; i < PER_THREAD; i++)
    hes_latency_record(w->h, (double)(w->id * PER_THREAD + i) * 1e-6);
  return NULL;
}

/* Lock-free records from several threads: none lost, the max is the largest of all. */
static void test_threads(void **state) {
  (void)state;
  hes_latency_t *h = new_latency();
  pthread_t t[THREADS];
  worker_t w[THREADS];
  for (int i = 0; i < THREADS; i++) {
    w[i] = (worker_t){.h = h, .id = i};
    assert_int_equal(pthread_create(&t[i], NULL, worker, &w[i]), 0);
  }
  for (int i = 0; i < THREADS; i++)
    pthread_join(t[i], NULL);
  hes_latency_summary_t s;
  hes_latency_take(h, &s);
  uint64_t n = (uint64_t)THREADS * PER_THREAD;
  assert_int_equal(s.count, n);
  assert_near(s.max, (double)(n - 1) * 1e-6, 1e-9);
  assert_near(s.mean, (double)(n - 1) / 2.0 * 1e-6, 1e-9);
  assert_close(s.p50, (double)(n / 2 - 1) * 1e-6);
  free(h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_empty),
      cmocka_unit_test(test_one_sample),
      cmocka_unit_test(test_small_exact),
      cmocka_unit_test(test_accuracy_long_tail),
      cmocka_unit_test(test_accuracy_log_uniform),
      cmocka_unit_test(test_record_n),
      cmocka_unit_test(test_take_resets),
      cmocka_unit_test(test_edges),
      cmocka_unit_test(test_threads),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
