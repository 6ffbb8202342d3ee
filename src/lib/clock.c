/* clock: see clock.h. */
#include "config.h"

#include "clock.h"

#include <math.h>

static double clock__read(clockid_t clock) {
  struct timespec ts;

  clock_gettime(clock, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double hes_clock_mono(void) {
  return clock__read(CLOCK_MONOTONIC);
}

double hes_clock_wall(void) {
  return clock__read(CLOCK_REALTIME);
}

struct timespec hes_clock_after(clockid_t clock, double seconds) {
  struct timespec ts;
  double whole;

  clock_gettime(clock, &ts);
  if (!(seconds > 0)) /* also NaN */
    return ts;
  whole = floor(seconds);
  ts.tv_sec += (time_t)whole;
  ts.tv_nsec += (long)((seconds - whole) * 1e9);
  while (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  return ts;
}

int hes_clock_cond_init(pthread_cond_t *cond) {
  pthread_condattr_t ca;
  int rc = pthread_condattr_init(&ca);
  if (rc != 0)
    return rc;
  rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  if (rc == 0)
    rc = pthread_cond_init(cond, &ca);
  pthread_condattr_destroy(&ca);
  return rc;
}
