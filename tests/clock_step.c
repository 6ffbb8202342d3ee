/* clock_step.c: an LD_PRELOAD shim for e2e_clockstep.sh. It steps the wall clock back (or
 * forward) by CLOCK_STEP_BY seconds, CLOCK_STEP_AFTER seconds after the process first read a
 * clock, as seen by the threads named CLOCK_STEP_THREAD only: collectd schedules its own reads
 * on the wall clock too (cdtime), and the test is about the plugin's billing thread, not
 * collectd's. clock_gettime(CLOCK_REALTIME*), gettimeofday() and time() are shifted; the
 * monotonic clocks are not. The first shifted read creates the file CLOCK_STEP_MARK, so the
 * test knows the step was seen (a shim that never applied would make the test pass for
 * nothing).
 *
 * A real step also moves the kernel's timer base: a pthread_cond_timedwait on CLOCK_REALTIME
 * then waits X seconds longer. Here the kernel is not told, so such a wait computed from the
 * shifted clock ends at once instead; either way a scheduler on the wall clock misbehaves,
 * and one on the monotonic clock does not notice. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);

static clock_gettime_fn real_clock_gettime(void) {
  static clock_gettime_fn real;
  if (real == NULL) {
    void *p = dlsym(RTLD_NEXT, "clock_gettime");
    memcpy(&real, &p, sizeof(real)); /* ISO C has no object-to-function pointer cast */
  }
  return real;
}

/* The shift for the calling thread now, in seconds (0 before the step or on other threads). */
static long step_now(void) {
  static _Atomic long long start_ns = -1;
  static atomic_bool marked;
  clock_gettime_fn real = real_clock_gettime();
  const char *by = getenv("CLOCK_STEP_BY"), *after = getenv("CLOCK_STEP_AFTER");
  const char *thread = getenv("CLOCK_STEP_THREAD");
  if (real == NULL || by == NULL || after == NULL || thread == NULL)
    return 0;
  struct timespec m;
  if (real(CLOCK_MONOTONIC, &m) != 0)
    return 0;
  long long ns = (long long)m.tv_sec * 1000000000LL + m.tv_nsec, expected = -1;
  atomic_compare_exchange_strong(&start_ns, &expected, ns);
  if (ns - atomic_load(&start_ns) < atol(after) * 1000000000LL)
    return 0;
  char name[32] = "";
  if (pthread_getname_np(pthread_self(), name, sizeof(name)) != 0 || strcmp(name, thread) != 0)
    return 0;
  const char *mark = getenv("CLOCK_STEP_MARK");
  if (mark != NULL && !atomic_exchange(&marked, true)) {
    int fd = open(mark, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0)
      close(fd);
  }
  return atol(by);
}

static int is_realtime(clockid_t c) {
  return c == CLOCK_REALTIME || c == CLOCK_REALTIME_COARSE;
}

int clock_gettime(clockid_t c, struct timespec *ts) {
  clock_gettime_fn real = real_clock_gettime();
  if (real == NULL)
    return -1;
  int r = real(c, ts);
  if (r == 0 && is_realtime(c))
    ts->tv_sec += step_now();
  return r;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz) {
  (void)tz;
  struct timespec ts;
  if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
    return -1;
  tv->tv_sec = ts.tv_sec; /* glibc declares tv nonnull */
  tv->tv_usec = ts.tv_nsec / 1000;
  return 0;
}

time_t time(time_t *t) {
  struct timespec ts;
  if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
    return (time_t)-1;
  if (t != NULL)
    *t = ts.tv_sec;
  return ts.tv_sec;
}
