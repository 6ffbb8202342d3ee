/* clock: the two clocks of collectd-hes, in the unit the code uses everywhere (seconds as a
 * double), and the absolute timespec a pthread_cond_timedwait needs.
 *
 * - monotonic: waits, timeouts and reconnect back-off, which a step of the wall clock must
 *   neither stretch nor cut short;
 * - wall: Unix time, which the HES, the state files and collectd's own timestamps speak. */
#ifndef HES_CLOCK_H
#define HES_CLOCK_H

#include <pthread.h>
#include <time.h>

/* CLOCK_MONOTONIC in seconds. */
double hes_clock_mono(void);

/* CLOCK_REALTIME in Unix seconds (what collectd's cdtime() reads). */
double hes_clock_wall(void);

/* The absolute time `seconds` from now on clock (CLOCK_MONOTONIC or CLOCK_REALTIME: the
 * clock the condition variable waits on), normalized. A negative or NaN wait is now. */
struct timespec hes_clock_after(clockid_t clock, double seconds);

/* pthread_cond_init for a condition variable whose timed waits run on CLOCK_MONOTONIC (wait
 * with hes_clock_after(CLOCK_MONOTONIC, ...)). Returns 0 or the error number. */
int hes_clock_cond_init(pthread_cond_t *cond);

#endif
