/* Tests for clock: the two clocks agree with the system's, and hes_clock_after gives a
 * normalized absolute time on the clock asked for. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <time.h>

#include "clock.h"

static double ts_s(struct timespec ts) {
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_clocks(void **state) {
  struct timespec ts;
  double a;
  double b;

  (void)state;
  a = hes_clock_mono();
  b = hes_clock_mono();
  assert_true(b >= a);
  clock_gettime(CLOCK_MONOTONIC, &ts);
  assert_true(fabs(ts_s(ts) - b) < 60);
  a = hes_clock_wall();
  assert_true(fabs(a - (double)time(NULL)) < 60);
  assert_true(a > 1.5e9); /* Unix seconds, not milliseconds or a monotonic count */
}

static void test_after(void **state) {
  static const double waits[] = {0, 0.2, 0.999999999, 1.5, 3600.75, -1, NAN};
  static const clockid_t clocks[] = {CLOCK_MONOTONIC, CLOCK_REALTIME};

  (void)state;
  for (size_t c = 0; c < 2; c++) {
    for (size_t i = 0; i < sizeof(waits) / sizeof(waits[0]); i++) {
      double base = clocks[c] == CLOCK_MONOTONIC ? hes_clock_mono() : hes_clock_wall();
      struct timespec ts = hes_clock_after(clocks[c], waits[i]);
      double want = base + (waits[i] > 0 ? waits[i] : 0);
      assert_true(ts.tv_nsec >= 0 && ts.tv_nsec < 1000000000L);
      assert_true(ts_s(ts) >= want - 1e-6);
      assert_true(ts_s(ts) < want + 60);
    }
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_clocks),
      cmocka_unit_test(test_after),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
