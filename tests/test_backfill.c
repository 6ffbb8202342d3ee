/* Tests for backfill: freeze time lists (DST, month ends, leap years, profile boundaries),
 * exactly-once recording, dispatch order with out-of-order arrivals, give-up, stats, the
 * state file (round trip, restarts, corrupt and foreign files, meter list changes) and the
 * memory bound for 100,000 meters. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backfill.h"

/* --- helpers ----------------------------------------------------------------------------- */

static int64_t utc_of(int y, int mo, int d, int h, int mi, int s) {
  return hes_tz_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s;
}

static hes_tz_t *zone(const char *name) {
  char err[256];
  hes_tz_t *tz = hes_tz_load(name, err, sizeof(err));
  if (tz == NULL)
    printf("# %s: %s\n", name, err);
  assert_non_null(tz);
  return tz;
}

static hes_meters_t *meters_n(unsigned n, unsigned first) {
  hes_meters_t *m = hes_meters_new();
  char name[32];
  assert_non_null(m);
  for (unsigned i = 0; i < n; i++) {
    snprintf(name, sizeof(name), "2024%08u", first + i);
    assert_int_equal(hes_meters_add(m, name), HES_METERS_OK);
  }
  assert_int_equal(hes_meters_seal(m), HES_METERS_OK);
  return m;
}

static hes_meters_t *meters_list(const char *const *names, size_t n) {
  hes_meters_t *m = hes_meters_new();
  assert_non_null(m);
  for (size_t i = 0; i < n; i++)
    assert_int_equal(hes_meters_add(m, names[i]), HES_METERS_OK);
  assert_int_equal(hes_meters_seal(m), HES_METERS_OK);
  return m;
}

static char tmpdir[256];

static int setup_dir(void **state) {
  (void)state;
  snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_backfill.XXXXXX");
  assert_non_null(mkdtemp(tmpdir));
  return 0;
}

static int teardown_dir(void **state) {
  (void)state;
  char cmd[512];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
  return system(cmd) == 0 ? 0 : -1;
}

static void path_of(char *buf, size_t len, const char *name) {
  snprintf(buf, len, "%s/%s", tmpdir, name);
}

static bool exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  char *buf = calloc(1, 1 << 20);
  assert_non_null(f);
  assert_non_null(buf);
  size_t n = fread(buf, 1, (1 << 20) - 1, f);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

static void spit(const char *path, const char *text, size_t len) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(text, 1, len, f), len);
  assert_int_equal(fclose(f), 0);
}

static hes_backfill_config_t cfg_of(hes_backfill_kind_t kind, const hes_meters_t *m,
                                    const hes_tz_t *tz, unsigned periods, const char *path) {
  hes_backfill_config_t c = {
      .server = "hes1",
      .kind = kind,
      .meters = m,
      .tz = tz,
      .periods = periods,
      .state_path = path,
  };
  return c;
}

static hes_backfill_t *new_ok(const hes_backfill_config_t *c, hes_backfill_state_t want) {
  char err[512];
  hes_backfill_t *b = hes_backfill_new(c, err, sizeof(err));
  if (b == NULL)
    printf("# new: %s\n", err);
  assert_non_null(b);
  if (hes_backfill_state(b) != want)
    printf("# state %s: %s\n", hes_backfill_state_string(hes_backfill_state(b)), err);
  assert_int_equal(hes_backfill_state(b), want);
  if (want == HES_BACKFILL_STATE_OK || want == HES_BACKFILL_STATE_NONE)
    assert_string_equal(err, "");
  return b;
}

static hes_backfill_record_t rec(hes_backfill_t *b, uint32_t m, int64_t t, double v) {
  hes_backfill_value_t vals[2] = {{5069, v}, {5099, v / 1000}};
  return hes_backfill_record(b, m, t, vals, 2);
}

/* --- freeze times ------------------------------------------------------------------------ */

static void check_periods(hes_backfill_kind_t kind, const hes_tz_t *tz, int64_t now,
                          const int64_t *want, unsigned n) {
  int64_t got[64];
  assert_true(n <= 64);
  assert_int_equal(hes_backfill_periods(kind, tz, now, n, got), n);
  for (unsigned i = 0; i < n; i++) {
    if (got[i] != want[i])
      printf("# period %u: got %lld want %lld\n", i, (long long)got[i], (long long)want[i]);
    assert_int_equal(got[i], want[i]);
    assert_int_equal(hes_backfill_floor(kind, tz, got[i]), got[i]);
  }
  assert_int_equal(got[n - 1], hes_backfill_floor(kind, tz, now));
}

static void test_periods_daily(void **state) {
  (void)state;
  hes_tz_t *sh = zone("Asia/Shanghai");
  hes_tz_t *be = zone("Europe/Berlin");
  hes_tz_t *hv = zone("America/Havana");
  hes_tz_t *ap = zone("Pacific/Apia");

  /* Shanghai, 2024-07-10 10:00 local: 07-04 .. 07-10 00:00 +08 */
  int64_t sh7[7];
  for (int i = 0; i < 7; i++)
    sh7[i] = utc_of(2024, 7, 3 + i, 16, 0, 0);
  check_periods(HES_BACKFILL_DAILY, sh, utc_of(2024, 7, 10, 2, 0, 0), sh7, 7);
  /* now exactly at midnight includes it; a second before does not */
  check_periods(HES_BACKFILL_DAILY, sh, utc_of(2024, 7, 9, 16, 0, 0), sh7, 7);
  int64_t sh_prev[1] = {utc_of(2024, 7, 8, 16, 0, 0)};
  check_periods(HES_BACKFILL_DAILY, sh, utc_of(2024, 7, 9, 15, 59, 59), sh_prev, 1);
  /* the seed's example timestamp 1720540800000 is Shanghai's 2024-07-10 00:00 */
  assert_int_equal(hes_backfill_floor(HES_BACKFILL_DAILY, sh, 1720540800 + 5), 1720540800);

  /* Berlin, spring forward on 2024-03-31: a 23-hour day */
  int64_t be_spring[4] = {utc_of(2024, 3, 29, 23, 0, 0), utc_of(2024, 3, 30, 23, 0, 0),
                          utc_of(2024, 3, 31, 22, 0, 0), utc_of(2024, 4, 1, 22, 0, 0)};
  check_periods(HES_BACKFILL_DAILY, be, utc_of(2024, 4, 2, 10, 0, 0), be_spring, 4);
  assert_int_equal(be_spring[2] - be_spring[1], 82800);
  /* fall back on 2024-10-27: a 25-hour day */
  int64_t be_fall[3] = {utc_of(2024, 10, 25, 22, 0, 0), utc_of(2024, 10, 26, 22, 0, 0),
                        utc_of(2024, 10, 27, 23, 0, 0)};
  check_periods(HES_BACKFILL_DAILY, be, utc_of(2024, 10, 28, 5, 0, 0), be_fall, 3);
  assert_int_equal(be_fall[2] - be_fall[1], 90000);

  /* Havana skips midnight on 2024-03-10: that day begins at 01:00 CDT = 05:00 UTC */
  int64_t hv3[3] = {utc_of(2024, 3, 9, 5, 0, 0), utc_of(2024, 3, 10, 5, 0, 0),
                    utc_of(2024, 3, 11, 4, 0, 0)};
  check_periods(HES_BACKFILL_DAILY, hv, utc_of(2024, 3, 11, 12, 0, 0), hv3, 3);
  /* an instant between 00:00 CST-not-reached and the transition belongs to the day before */
  assert_int_equal(hes_backfill_floor(HES_BACKFILL_DAILY, hv, utc_of(2024, 3, 10, 4, 59, 59)),
                   utc_of(2024, 3, 9, 5, 0, 0));

  /* Samoa skipped 2011-12-30 entirely: 12-29 (UTC-10) is followed by 12-31 (UTC+14) */
  int64_t ap3[3] = {utc_of(2011, 12, 28, 10, 0, 0), utc_of(2011, 12, 29, 10, 0, 0),
                    utc_of(2011, 12, 30, 10, 0, 0)};
  check_periods(HES_BACKFILL_DAILY, ap, utc_of(2011, 12, 31, 0, 0, 0), ap3, 3);

  /* leap years: 2024-02-29 exists, 2023-02-29 and 2100-02-29 do not */
  int64_t leap[3] = {utc_of(2024, 2, 27, 16, 0, 0), utc_of(2024, 2, 28, 16, 0, 0),
                     utc_of(2024, 2, 29, 16, 0, 0)};
  check_periods(HES_BACKFILL_DAILY, sh, utc_of(2024, 3, 1, 0, 0, 0), leap, 3);
  int64_t noleap[2] = {utc_of(2023, 2, 27, 16, 0, 0), utc_of(2023, 2, 28, 16, 0, 0)};
  check_periods(HES_BACKFILL_DAILY, sh, utc_of(2023, 3, 1, 0, 0, 0), noleap, 2);
  int64_t y2100[2] = {utc_of(2100, 2, 27, 16, 0, 0), utc_of(2100, 2, 28, 16, 0, 0)};
  check_periods(HES_BACKFILL_DAILY, sh, utc_of(2100, 3, 1, 0, 0, 0), y2100, 2);

  /* bad arguments */
  int64_t out[2];
  assert_int_equal(hes_backfill_periods(HES_BACKFILL_DAILY, sh, 0, 0, out), 0);
  assert_int_equal(hes_backfill_periods((hes_backfill_kind_t)4, sh, 0, 1, out), 0);
  assert_int_equal(
      hes_backfill_periods(HES_BACKFILL_DAILY, sh, 0, HES_BACKFILL_PERIODS_MAX + 1, out), 0);
  assert_int_equal(hes_backfill_periods(HES_BACKFILL_DAILY, sh, 0, 1, NULL), 0);
  /* extreme instants: no overflow (UBSan), some answer */
  (void)hes_backfill_floor(HES_BACKFILL_DAILY, be, INT64_MAX);
  (void)hes_backfill_floor(HES_BACKFILL_MONTHLY, be, INT64_MIN);
  (void)hes_backfill_floor(HES_BACKFILL_PROFILE, be, INT64_MIN);

  hes_tz_free(sh);
  hes_tz_free(be);
  hes_tz_free(hv);
  hes_tz_free(ap);
}

static void test_periods_monthly(void **state) {
  (void)state;
  hes_tz_t *sh = zone("Asia/Shanghai");
  hes_tz_t *ny = zone("America/New_York");

  int64_t m3[3] = {utc_of(2023, 12, 31, 16, 0, 0), utc_of(2024, 1, 31, 16, 0, 0),
                   utc_of(2024, 2, 29, 16, 0, 0)};
  check_periods(HES_BACKFILL_MONTHLY, sh, utc_of(2024, 3, 15, 0, 0, 0), m3, 3);
  /* the last second of March is still March */
  check_periods(HES_BACKFILL_MONTHLY, sh, utc_of(2024, 3, 31, 15, 59, 59), m3, 3);
  /* across a year end */
  int64_t y3[3] = {utc_of(2023, 10, 31, 16, 0, 0), utc_of(2023, 11, 30, 16, 0, 0),
                   utc_of(2023, 12, 31, 16, 0, 0)};
  check_periods(HES_BACKFILL_MONTHLY, sh, utc_of(2024, 1, 4, 16, 0, 0), y3, 3);
  /* New York: the 1st of each month in EST or EDT */
  int64_t ny4[4] = {utc_of(2024, 2, 1, 5, 0, 0), utc_of(2024, 3, 1, 5, 0, 0),
                    utc_of(2024, 4, 1, 4, 0, 0), utc_of(2024, 5, 1, 4, 0, 0)};
  check_periods(HES_BACKFILL_MONTHLY, ny, utc_of(2024, 5, 20, 0, 0, 0), ny4, 4);
  /* 13 months back crosses a leap day's month */
  int64_t got[13];
  assert_int_equal(
      hes_backfill_periods(HES_BACKFILL_MONTHLY, sh, utc_of(2025, 1, 10, 0, 0, 0), 13, got), 13);
  assert_int_equal(got[0], utc_of(2023, 12, 31, 16, 0, 0));
  assert_int_equal(got[2] - got[1], 29 * 86400); /* February 2024 */
  assert_int_equal(got[12], utc_of(2024, 12, 31, 16, 0, 0));
  hes_tz_free(sh);
  hes_tz_free(ny);
}

static void test_periods_profile(void **state) {
  (void)state;
  hes_tz_t *utc = zone("UTC");
  hes_tz_t *be = zone("Europe/Berlin");
  hes_tz_t *np = zone("Asia/Kathmandu"); /* +05:45 */
  hes_tz_t *odd = hes_tz_posix("<+0520>-5:20", NULL, 0);
  assert_non_null(odd);

  int64_t x = utc_of(2024, 7, 10, 12, 0, 0);
  int64_t p4[4] = {x - 2700, x - 1800, x - 900, x};
  check_periods(HES_BACKFILL_PROFILE, utc, x + 899, p4, 4);
  check_periods(HES_BACKFILL_PROFILE, utc, x, p4, 4);
  check_periods(HES_BACKFILL_PROFILE, np, x + 1, p4, 4);
  /* across Berlin's spring forward the steps stay 15 minutes of real time */
  int64_t t = utc_of(2024, 3, 31, 1, 0, 0);
  int64_t d6[6] = {t - 4500, t - 3600, t - 2700, t - 1800, t - 900, t};
  check_periods(HES_BACKFILL_PROFILE, be, t + 300, d6, 6);
  /* a +05:20 zone: boundaries fall at :00/:15/:30/:45 local, i.e. :10/:25/:40/:55 UTC */
  int64_t o2[2] = {x - 1200, x - 300};
  check_periods(HES_BACKFILL_PROFILE, odd, x + 400, o2, 2);
  /* a day of 96 */
  int64_t day[96];
  assert_int_equal(hes_backfill_periods(HES_BACKFILL_PROFILE, utc, x, 96, day), 96);
  for (int i = 1; i < 96; i++)
    assert_int_equal(day[i] - day[i - 1], 900);
  hes_tz_free(utc);
  hes_tz_free(be);
  hes_tz_free(np);
  hes_tz_free(odd);
}

/* --- the loop --------------------------------------------------------------------------- */

typedef struct {
  hes_tz_t *tz;
  hes_meters_t *m;
  hes_backfill_t *b;
  int64_t now;
  int64_t t[3]; /* the three daily freeze times due, oldest first */
} fx_t;

/* Shanghai, 10 meters, BackfillPeriods 3, at 2024-07-10 10:00 local. */
static void fx_init(fx_t *f, unsigned nmeters, const char *path) {
  memset(f, 0, sizeof(*f));
  f->tz = zone("Asia/Shanghai");
  f->m = meters_n(nmeters, 1);
  hes_backfill_config_t c = cfg_of(HES_BACKFILL_DAILY, f->m, f->tz, 3, path);
  f->b = new_ok(&c, HES_BACKFILL_STATE_NONE);
  f->now = utc_of(2024, 7, 10, 2, 0, 0);
  for (int i = 0; i < 3; i++)
    f->t[i] = utc_of(2024, 7, 7 + i, 16, 0, 0);
  hes_backfill_advance(f->b, f->now);
}

static void fx_free(fx_t *f) {
  hes_backfill_free(f->b);
  hes_meters_free(f->m);
  hes_tz_free(f->tz);
}

static void test_exactly_once(void **state) {
  (void)state;
  fx_t f;
  const hes_backfill_entry_t *e;
  hes_backfill_stats_t s;

  fx_init(&f, 10, NULL);
  assert_int_equal(rec(f.b, 3, f.t[2], 7340740.0), HES_BACKFILL_NEW);
  assert_int_equal(rec(f.b, 3, f.t[2], 7340740.0), HES_BACKFILL_DUPLICATE); /* pending */
  assert_int_equal(hes_backfill_take(f.b, 0, &e), 1);
  assert_int_equal(e[0].meter, 3);
  assert_int_equal(e[0].freeze_time, f.t[2]);
  assert_int_equal(e[0].n, 2);
  assert_int_equal(e[0].values[0].cgcode, 5069);
  assert_true(e[0].values[0].value == 7340740.0);
  assert_int_equal(e[0].values[1].cgcode, 5099);
  assert_true(e[0].values[1].value == 7340.74);
  assert_int_equal(rec(f.b, 3, f.t[2], 1.0), HES_BACKFILL_DUPLICATE); /* dispatched */
  assert_int_equal(hes_backfill_take(f.b, 0, &e), 0);
  assert_null(e);
  /* a record with no channel values is still a period */
  assert_int_equal(hes_backfill_record(f.b, 4, f.t[2], NULL, 0), HES_BACKFILL_NEW);
  /* invalid input */
  hes_backfill_value_t many[HES_BACKFILL_VALUES_MAX + 1] = {{0, 0}};
  assert_int_equal(hes_backfill_record(f.b, 10, f.t[2], many, 1), HES_BACKFILL_EINVAL);
  assert_int_equal(hes_backfill_record(f.b, UINT32_MAX, f.t[2], many, 1), HES_BACKFILL_EINVAL);
  assert_int_equal(hes_backfill_record(f.b, 1, f.t[2], many, HES_BACKFILL_VALUES_MAX + 1),
                   HES_BACKFILL_EINVAL);
  assert_int_equal(hes_backfill_record(f.b, 1, f.t[2], NULL, 1), HES_BACKFILL_EINVAL);
  assert_int_equal(hes_backfill_record(NULL, 1, f.t[2], many, 1), HES_BACKFILL_EINVAL);
  /* not a freeze time being chased: off the grid, too old, in the future */
  assert_int_equal(rec(f.b, 1, f.t[2] + 1, 1), HES_BACKFILL_NOT_DUE);
  assert_int_equal(rec(f.b, 1, f.t[0] - 86400, 1), HES_BACKFILL_NOT_DUE);
  assert_int_equal(rec(f.b, 1, f.t[2] + 86400, 1), HES_BACKFILL_NOT_DUE);
  hes_backfill_stats(f.b, &s);
  assert_int_equal(s.expected, 30);
  assert_int_equal(s.collected, 1);
  assert_int_equal(s.pending, 1);
  assert_int_equal(s.missing, 28);
  assert_int_equal(s.duplicates, 2);
  assert_int_equal(s.not_due, 3);
  assert_int_equal(s.dispatched, 1);
  assert_int_equal(s.freeze_times, 3);
  assert_string_equal(hes_backfill_record_string(HES_BACKFILL_DUPLICATE), "duplicate");
  fx_free(&f);
}

static void test_dispatch_order(void **state) {
  (void)state;
  fx_t f;
  const hes_backfill_entry_t *e;
  hes_backfill_stats_t s;

  fx_init(&f, 10, NULL);
  /* meter 0: the newest first, dispatched; the older one then arrives: dropped, counted */
  assert_int_equal(rec(f.b, 0, f.t[2], 3), HES_BACKFILL_NEW);
  assert_int_equal(hes_backfill_take(f.b, 0, &e), 1);
  assert_int_equal(e[0].freeze_time, f.t[2]);
  assert_int_equal(rec(f.b, 0, f.t[0], 1), HES_BACKFILL_LATE);
  assert_int_equal(rec(f.b, 0, f.t[0], 1), HES_BACKFILL_DUPLICATE);
  assert_int_equal(hes_backfill_take(f.b, 0, &e), 0);
  hes_backfill_stats(f.b, &s);
  assert_int_equal(s.dropped_late, 1);
  assert_int_equal(s.collected, 2); /* the late one counts as collected: never asked again */
  assert_int_equal(hes_backfill_missing_count(f.b, f.t[0]), 9);

  /* meter 1: out of order but before any dispatch: all go out, oldest first, one a round;
   * meter 2 at the same time, one period per meter per round */
  assert_int_equal(rec(f.b, 1, f.t[1], 12), HES_BACKFILL_NEW);
  assert_int_equal(rec(f.b, 1, f.t[2], 13), HES_BACKFILL_NEW);
  assert_int_equal(rec(f.b, 1, f.t[0], 11), HES_BACKFILL_NEW);
  assert_int_equal(rec(f.b, 2, f.t[2], 23), HES_BACKFILL_NEW);
  assert_int_equal(rec(f.b, 2, f.t[0], 21), HES_BACKFILL_NEW);
  assert_int_equal(hes_backfill_take(f.b, 0, &e), 2);
  assert_int_equal(e[0].meter, 1);
  assert_int_equal(e[0].freeze_time, f.t[0]);
  assert_true(e[0].values[0].value == 11);
  assert_int_equal(e[1].meter, 2);
  assert_int_equal(e[1].freeze_time, f.t[0]);
  assert_int_equal(hes_backfill_take(f.b, 0, &e), 2);
  assert_int_equal(e[0].meter, 1);
  assert_int_equal(e[0].freeze_time, f.t[1]);
  assert_int_equal(e[1].meter, 2);
  assert_int_equal(e[1].freeze_time, f.t[2]);
  /* meter 2's t[1] arrives after t[2] was dispatched: too late */
  assert_int_equal(rec(f.b, 2, f.t[1], 22), HES_BACKFILL_LATE);
  assert_int_equal(hes_backfill_take(f.b, 0, &e), 1);
  assert_int_equal(e[0].meter, 1);
  assert_int_equal(e[0].freeze_time, f.t[2]);
  assert_true(e[0].values[0].value == 13);
  assert_int_equal(hes_backfill_take(f.b, 0, &e), 0);

  /* meter 3: an older one arriving while the newer is queued goes first */
  assert_int_equal(rec(f.b, 3, f.t[2], 33), HES_BACKFILL_NEW);
  assert_int_equal(rec(f.b, 3, f.t[1], 32), HES_BACKFILL_NEW);
  assert_int_equal(hes_backfill_take(f.b, 0, &e), 1);
  assert_int_equal(e[0].freeze_time, f.t[1]);
  assert_int_equal(hes_backfill_take(f.b, 0, &e), 1);
  assert_int_equal(e[0].freeze_time, f.t[2]);
  hes_backfill_stats(f.b, &s);
  assert_int_equal(s.dropped_late, 2);
  assert_int_equal(s.dispatched, 8);
  assert_int_equal(s.pending, 0);
  assert_int_equal(s.collected, 10);
  fx_free(&f);
}

/* A round of many meters: every take hands each meter its oldest queued period only. */
static void test_dispatch_rounds(void **state) {
  (void)state;
  fx_t f;
  const hes_backfill_entry_t *e;

  fx_init(&f, 200, NULL);
  for (uint32_t m = 0; m < 200; m++) {
    for (int k = 2; k >= 0; k--) /* newest first, as a history page might list them */
      assert_int_equal(rec(f.b, m, f.t[k], m * 10 + k), HES_BACKFILL_NEW);
  }
  for (int round = 0; round < 3; round++) {
    assert_int_equal(hes_backfill_take(f.b, 0, &e), 200);
    for (uint32_t m = 0; m < 200; m++) {
      assert_int_equal(e[m].meter, m);
      assert_int_equal(e[m].freeze_time, f.t[round]);
      assert_true(e[m].values[0].value == m * 10 + round);
    }
  }
  assert_int_equal(hes_backfill_take(f.b, 0, &e), 0);
  assert_int_equal(hes_backfill_missing_count(f.b, HES_BACKFILL_ANY), 0);
  int64_t due[4];
  assert_int_equal(hes_backfill_due(f.b, due, 4), 0);
  fx_free(&f);
}

/* The billing thread takes after each freeze time of a round, milliseconds apart when the
 * history answers fast: a meter whose three periods all came from history got them handed
 * out back to back, and collectd's write threads then raced on them (csv lost the first row
 * of a new file: e2e_frozen's "not every meter has 3 daily values"). Takes within take_gap
 * of the last hand-out hand out nothing; an empty take does not restart the gap. */
static void test_take_gap(void **state) {
  (void)state;
  hes_tz_t *tz = zone("Asia/Shanghai");
  hes_meters_t *m = meters_n(10, 1);
  hes_backfill_config_t c = cfg_of(HES_BACKFILL_DAILY, m, tz, 3, NULL);
  c.hold_gaps = true; /* as the plugin */
  c.take_gap = 0.5;
  hes_backfill_t *b = new_ok(&c, HES_BACKFILL_STATE_NONE);
  int64_t t[3];
  const hes_backfill_entry_t *e;
  hes_backfill_stats_t st;

  hes_backfill_advance(b, utc_of(2024, 7, 10, 2, 0, 0));
  assert_int_equal(hes_backfill_due(b, t, 3), 3);
  /* the round's first freeze time, then its take; the second, then its take 4 ms later */
  assert_int_equal(rec(b, 0, t[0], 1), HES_BACKFILL_NEW);
  assert_int_equal(hes_backfill_take(b, 100.0, &e), 1);
  assert_int_equal(e[0].freeze_time, t[0]);
  assert_int_equal(rec(b, 0, t[1], 2), HES_BACKFILL_NEW);
  assert_int_equal(rec(b, 0, t[2], 3), HES_BACKFILL_NEW);
  assert_int_equal(hes_backfill_take(b, 100.004, &e), 0);
  assert_null(e);
  assert_int_equal(hes_backfill_take(b, 100.499, &e), 0);
  hes_backfill_stats(b, &st);
  assert_int_equal(st.pending, 2); /* kept, not lost */
  assert_int_equal(st.dispatched, 1);
  /* half an Interval later: the next period, one per meter as always */
  assert_int_equal(hes_backfill_take(b, 100.5, &e), 1);
  assert_int_equal(e[0].freeze_time, t[1]);
  assert_int_equal(hes_backfill_take(b, 101.0, &e), 1);
  assert_int_equal(e[0].freeze_time, t[2]);
  /* nothing queued: an empty take at 101.6 does not move the gap's start */
  assert_int_equal(hes_backfill_take(b, 101.6, &e), 0);
  assert_int_equal(rec(b, 1, t[0], 4), HES_BACKFILL_NEW);
  assert_int_equal(hes_backfill_take(b, 101.7, &e), 1);
  assert_int_equal(e[0].meter, 1);
  hes_backfill_stats(b, &st);
  assert_int_equal(st.pending, 0);
  assert_int_equal(st.dispatched, 4);
  hes_backfill_free(b);

  /* take_gap 0: every call may hand out, whatever now says (the tests above) */
  c.take_gap = 0;
  b = new_ok(&c, HES_BACKFILL_STATE_NONE);
  hes_backfill_advance(b, utc_of(2024, 7, 10, 2, 0, 0));
  assert_int_equal(rec(b, 0, t[0], 1), HES_BACKFILL_NEW);
  assert_int_equal(rec(b, 0, t[1], 2), HES_BACKFILL_NEW);
  assert_int_equal(hes_backfill_take(b, 5.0, &e), 1);
  assert_int_equal(hes_backfill_take(b, 5.0, &e), 1);
  assert_int_equal(e[0].freeze_time, t[1]);
  hes_backfill_free(b);
  hes_meters_free(m);
  hes_tz_free(tz);
}

/* More periods due than a round may ask for (the billing loop asks 64 per round): one meter
 * of two answers every period, the other never does, so all 200 stay due until given up.
 * Oldest first would ask the same 64 oldest every round and never the newest, the one a
 * utility bills next. Every round must ask the newest, and every period must be asked within
 * a bounded number of rounds, so the old silent ones starve nobody and are not starved. */
static void test_due_no_starvation(void **state) {
  (void)state;
  hes_tz_t *tz = zone("UTC");
  hes_meters_t *m = meters_n(2, 1);
  hes_backfill_config_t c = cfg_of(HES_BACKFILL_DAILY, m, tz, 200, NULL);
  hes_backfill_t *b = new_ok(&c, HES_BACKFILL_STATE_NONE);
  int64_t now = utc_of(2024, 7, 10, 2, 0, 0);
  int64_t all[200];
  int64_t due[64];
  unsigned asked[200] = {0};
  const hes_backfill_entry_t *e;

  hes_backfill_advance(b, now);
  assert_int_equal(hes_backfill_due(b, all, 200), 200);
  for (size_t i = 0; i < 200; i++)
    assert_int_equal(rec(b, 0, all[i], 1), HES_BACKFILL_NEW);
  while (hes_backfill_take(b, 0, &e) > 0)
    ;
  /* (200 - 32) older periods, 32 of them per round: 6 rounds reach every one */
  for (int round = 0; round < 6; round++) {
    size_t n = hes_backfill_due(b, due, 64);
    assert_int_equal(n, 64);
    for (size_t k = 0; k < n; k++) {
      if (k > 0)
        assert_true(due[k] > due[k - 1]); /* still oldest first */
      size_t i = 0;
      while (i < 200 && all[i] != due[k])
        i++;
      assert_true(i < 200);
      asked[i]++;
    }
    assert_int_equal(due[n - 1], all[199]); /* the newest, every round */
  }
  for (size_t i = 0; i < 200; i++) {
    if (asked[i] == 0)
      printf("# period %zu of 200 never asked\n", i);
    assert_true(asked[i] > 0);
  }
  /* the newest 32 every round; the older ones once or twice in six rounds */
  for (size_t i = 168; i < 200; i++)
    assert_int_equal(asked[i], 6);
  for (size_t i = 0; i < 168; i++)
    assert_true(asked[i] >= 1 && asked[i] <= 2);
  /* the rotation still covers everything when some periods complete in between */
  for (size_t i = 0; i < 100; i++)
    assert_int_equal(rec(b, 1, all[i], 1), HES_BACKFILL_NEW);
  assert_int_equal(hes_backfill_due(b, due, 64), 64);
  assert_true(due[0] >= all[100]);
  /* a round of one still alternates instead of sticking to one period */
  int64_t one[1];
  int64_t first;
  assert_int_equal(hes_backfill_due(b, one, 1), 1);
  first = one[0];
  assert_int_equal(hes_backfill_due(b, one, 1), 1);
  assert_true(one[0] != first);
  hes_backfill_free(b);
  hes_meters_free(m);
  hes_tz_free(tz);
}

static void test_due_and_missing(void **state) {
  (void)state;
  fx_t f;
  int64_t due[8];
  uint32_t got[200];
  size_t n = 0;

  fx_init(&f, 130, NULL); /* three words of bitmap */
  assert_int_equal(hes_backfill_due(f.b, due, 8), 3);
  assert_int_equal(due[0], f.t[0]);
  assert_int_equal(due[1], f.t[1]);
  assert_int_equal(due[2], f.t[2]);
  assert_int_equal(hes_backfill_due(f.b, due, 2), 2);
  assert_int_equal(hes_backfill_missing_count(f.b, f.t[1]), 130);
  /* t[0] complete; t[1] all but 0, 63, 64, 129; t[2] only 5 missing */
  for (uint32_t m = 0; m < 130; m++) {
    assert_int_equal(rec(f.b, m, f.t[0], 1), HES_BACKFILL_NEW);
    if (m != 0 && m != 63 && m != 64 && m != 129)
      assert_int_equal(rec(f.b, m, f.t[1], 1), HES_BACKFILL_NEW);
    if (m != 5)
      assert_int_equal(rec(f.b, m, f.t[2], 1), HES_BACKFILL_NEW);
  }
  assert_int_equal(hes_backfill_due(f.b, due, 8), 2);
  assert_int_equal(due[0], f.t[1]);
  assert_int_equal(due[1], f.t[2]);
  for (uint32_t m = hes_backfill_next_missing(f.b, f.t[1], 0); m != HES_METER_NONE;
       m = hes_backfill_next_missing(f.b, f.t[1], m + 1))
    got[n++] = m;
  assert_int_equal(n, 4);
  assert_int_equal(got[0], 0);
  assert_int_equal(got[1], 63);
  assert_int_equal(got[2], 64);
  assert_int_equal(got[3], 129);
  assert_int_equal(hes_backfill_missing_count(f.b, f.t[1]), 4);
  assert_int_equal(hes_backfill_missing_count(f.b, f.t[0]), 0);
  assert_int_equal(hes_backfill_next_missing(f.b, f.t[0], 0), HES_METER_NONE);
  /* any: the union */
  n = 0;
  for (uint32_t m = hes_backfill_next_missing(f.b, HES_BACKFILL_ANY, 0); m != HES_METER_NONE;
       m = hes_backfill_next_missing(f.b, HES_BACKFILL_ANY, m + 1))
    got[n++] = m;
  assert_int_equal(n, 5);
  assert_int_equal(got[1], 5);
  assert_int_equal(hes_backfill_missing_count(f.b, HES_BACKFILL_ANY), 5);
  /* out of range and unknown times */
  assert_int_equal(hes_backfill_next_missing(f.b, f.t[1], 130), HES_METER_NONE);
  assert_int_equal(hes_backfill_next_missing(f.b, f.t[1], UINT32_MAX), HES_METER_NONE);
  assert_int_equal(hes_backfill_next_missing(f.b, f.t[1] + 1, 0), HES_METER_NONE);
  assert_int_equal(hes_backfill_missing_count(f.b, f.t[1] + 1), 0);

  hes_backfill_stats_t s;
  hes_backfill_stats(f.b, &s);
  assert_int_equal(s.expected, 390);
  assert_int_equal(s.pending, 390 - 5);
  assert_int_equal(s.missing, 5);
  assert_int_equal(s.collected, 0);
  fx_free(&f);
}

static void test_give_up(void **state) {
  (void)state;
  fx_t f;
  const hes_backfill_entry_t *e;
  hes_backfill_stats_t s;
  int64_t due[8];

  fx_init(&f, 10, NULL); /* give_up default: 4 days */
  /* t[0]: meters 0 and 1 dispatched, meter 2 queued */
  assert_int_equal(rec(f.b, 0, f.t[0], 1), HES_BACKFILL_NEW);
  assert_int_equal(rec(f.b, 1, f.t[0], 1), HES_BACKFILL_NEW);
  assert_int_equal(hes_backfill_take(f.b, 0, &e), 2);
  assert_int_equal(rec(f.b, 2, f.t[0], 1), HES_BACKFILL_NEW);

  /* a day later: t[0] left the window but is still chased (3d10h old) */
  hes_backfill_advance(f.b, f.now + 86400);
  assert_int_equal(hes_backfill_due(f.b, due, 8), 4);
  assert_int_equal(due[0], f.t[0]);
  assert_int_equal(due[3], f.t[2] + 86400);
  hes_backfill_stats(f.b, &s);
  assert_int_equal(s.freeze_times, 4);
  assert_int_equal(s.expected, 40);
  assert_int_equal(s.given_up, 0);

  /* two days later: t[0] is 4d10h old: given up, its 7 missing meters counted */
  hes_backfill_advance(f.b, f.now + 2 * 86400);
  hes_backfill_stats(f.b, &s);
  assert_int_equal(s.given_up, 7);
  assert_int_equal(s.freeze_times, 4); /* t[1], t[2] and two new ones */
  assert_int_equal(s.expected, 40);
  assert_int_equal(s.pending, 0); /* the queued one no longer counts ... */
  assert_int_equal(hes_backfill_due(f.b, due, 8), 4);
  assert_int_equal(due[0], f.t[1]);
  assert_int_equal(rec(f.b, 3, f.t[0], 1), HES_BACKFILL_NOT_DUE);
  assert_int_equal(hes_backfill_next_missing(f.b, f.t[0], 0), HES_METER_NONE);
  /* ... but is still handed out */
  assert_int_equal(hes_backfill_take(f.b, 0, &e), 1);
  assert_int_equal(e[0].meter, 2);
  assert_int_equal(e[0].freeze_time, f.t[0]);
  /* advancing again gives up nothing twice */
  hes_backfill_advance(f.b, f.now + 2 * 86400 + 60);
  hes_backfill_stats(f.b, &s);
  assert_int_equal(s.given_up, 7);
  fx_free(&f);

  /* GiveUpAfter shorter than the window: the oldest window times are never chased */
  hes_tz_t *tz = zone("Asia/Shanghai");
  hes_meters_t *m = meters_n(4, 1);
  hes_backfill_config_t c = cfg_of(HES_BACKFILL_DAILY, m, tz, 3, NULL);
  c.give_up = 36 * 3600;
  hes_backfill_t *b = new_ok(&c, HES_BACKFILL_STATE_NONE);
  hes_backfill_advance(b, utc_of(2024, 7, 10, 2, 0, 0));
  assert_int_equal(hes_backfill_due(b, due, 8), 2);
  assert_int_equal(due[0], utc_of(2024, 7, 8, 16, 0, 0));
  hes_backfill_stats(b, &s);
  assert_int_equal(s.given_up, 0);
  hes_backfill_free(b);
  hes_meters_free(m);
  hes_tz_free(tz);
}

/* hold_gaps (what the plugin uses): a newer period waits for the older ones of its meter, so
 * every period goes out in order and none is dropped as late; a given-up one stops holding. */
static void test_hold_gaps(void **state) {
  (void)state;
  hes_tz_t *tz = zone("Asia/Shanghai");
  hes_meters_t *m = meters_n(10, 1);
  hes_backfill_config_t c = cfg_of(HES_BACKFILL_DAILY, m, tz, 3, NULL);
  c.hold_gaps = true;
  c.give_up = 3 * 86400 + 3600;
  hes_backfill_t *b = new_ok(&c, HES_BACKFILL_STATE_NONE);
  const hes_backfill_entry_t *e;
  hes_backfill_stats_t s;
  int64_t t[3];
  for (int i = 0; i < 3; i++)
    t[i] = utc_of(2024, 7, 7 + i, 16, 0, 0);
  hes_backfill_advance(b, t[2] + 3600);

  /* meter 0: newest first, then the oldest, then the middle one */
  assert_int_equal(rec(b, 0, t[2], 3), HES_BACKFILL_NEW);
  assert_int_equal(hes_backfill_take(b, 0, &e), 0); /* t[0] and t[1] still chased */
  assert_int_equal(rec(b, 0, t[0], 1), HES_BACKFILL_NEW);
  assert_int_equal(hes_backfill_take(b, 0, &e), 1);
  assert_int_equal(e[0].freeze_time, t[0]);
  assert_int_equal(hes_backfill_take(b, 0, &e), 0); /* t[1] still chased */
  assert_int_equal(rec(b, 0, t[1], 2), HES_BACKFILL_NEW);
  assert_int_equal(hes_backfill_take(b, 0, &e), 1);
  assert_int_equal(e[0].freeze_time, t[1]);
  assert_int_equal(hes_backfill_take(b, 0, &e), 1);
  assert_int_equal(e[0].freeze_time, t[2]);
  assert_true(e[0].values[0].value == 3);

  /* meter 1: t[1] and t[2] arrive, t[0] never does: held until t[0] is given up */
  assert_int_equal(rec(b, 1, t[2], 3), HES_BACKFILL_NEW);
  assert_int_equal(rec(b, 1, t[1], 2), HES_BACKFILL_NEW);
  assert_int_equal(hes_backfill_take(b, 0, &e), 0);
  hes_backfill_advance(b, t[0] + c.give_up + 1);
  assert_int_equal(hes_backfill_take(b, 0, &e), 1);
  assert_int_equal(e[0].meter, 1);
  assert_int_equal(e[0].freeze_time, t[1]);
  assert_int_equal(hes_backfill_take(b, 0, &e), 1);
  assert_int_equal(e[0].freeze_time, t[2]);
  hes_backfill_stats(b, &s);
  assert_int_equal(s.dropped_late, 0);
  assert_int_equal(s.dispatched, 5);
  assert_int_equal(s.given_up, 9); /* t[0] of meters 1..9 */
  hes_backfill_free(b);
  hes_meters_free(m);
  hes_tz_free(tz);
}

static void test_full(void **state) {
  (void)state;
  hes_tz_t *tz = zone("Asia/Shanghai");
  hes_meters_t *m = meters_n(10, 1);
  hes_backfill_config_t c = cfg_of(HES_BACKFILL_DAILY, m, tz, 3, NULL);
  const hes_backfill_entry_t *e;
  hes_backfill_stats_t s;
  c.pending_max = 3;
  hes_backfill_t *b = new_ok(&c, HES_BACKFILL_STATE_NONE);
  int64_t t = utc_of(2024, 7, 9, 16, 0, 0);

  hes_backfill_advance(b, t + 3600);
  assert_int_equal(hes_backfill_room(b), 3);
  for (uint32_t i = 0; i < 3; i++)
    assert_int_equal(rec(b, i, t, 1), HES_BACKFILL_NEW);
  assert_int_equal(hes_backfill_room(b), 0);
  assert_int_equal(rec(b, 3, t, 1), HES_BACKFILL_FULL);
  assert_int_equal(hes_backfill_missing_count(b, t), 7); /* still missing: asked again */
  assert_int_equal(hes_backfill_take(b, 0, &e), 3);
  assert_int_equal(hes_backfill_room(b), 3);
  assert_int_equal(rec(b, 3, t, 1), HES_BACKFILL_NEW);
  hes_backfill_stats(b, &s);
  assert_int_equal(s.full, 1);
  hes_backfill_free(b);
  hes_meters_free(m);
  hes_tz_free(tz);
}

static void test_config_errors(void **state) {
  (void)state;
  hes_tz_t *tz = zone("Asia/Shanghai");
  hes_meters_t *m = meters_n(3, 1);
  char err[256];
  hes_backfill_config_t c;

  assert_null(hes_backfill_new(NULL, err, sizeof(err)));
  c = cfg_of(HES_BACKFILL_DAILY, m, tz, 0, NULL);
  assert_null(hes_backfill_new(&c, err, sizeof(err)));
  assert_non_null(strstr(err, "BackfillPeriods 0"));
  c = cfg_of(HES_BACKFILL_DAILY, m, tz, HES_BACKFILL_PERIODS_MAX + 1, NULL);
  assert_null(hes_backfill_new(&c, err, sizeof(err)));
  c = cfg_of(HES_BACKFILL_DAILY, m, tz, 7, NULL);
  c.give_up = -1;
  assert_null(hes_backfill_new(&c, err, sizeof(err)));
  assert_non_null(strstr(err, "GiveUpAfter -1"));
  c.give_up = INT64_MAX;
  assert_null(hes_backfill_new(&c, err, sizeof(err)));
  c = cfg_of(HES_BACKFILL_PROFILE, m, tz, 7, NULL);
  c.give_up = 86400 * 365; /* 35,000 profile slots */
  assert_null(hes_backfill_new(&c, err, sizeof(err)));
  c = cfg_of(HES_BACKFILL_DAILY, m, tz, 7, NULL);
  c.server = "a\nb";
  assert_null(hes_backfill_new(&c, err, sizeof(err)));
  c.server = "";
  assert_null(hes_backfill_new(&c, err, sizeof(err)));
  c.server = NULL;
  assert_null(hes_backfill_new(&c, err, sizeof(err)));
  c = cfg_of((hes_backfill_kind_t)0, m, tz, 7, NULL);
  assert_null(hes_backfill_new(&c, err, sizeof(err)));
  c = cfg_of(HES_BACKFILL_DAILY, NULL, tz, 7, NULL);
  assert_null(hes_backfill_new(&c, err, sizeof(err)));
  c = cfg_of(HES_BACKFILL_DAILY, m, NULL, 7, NULL);
  assert_null(hes_backfill_new(&c, err, sizeof(err)));
  c = cfg_of(HES_BACKFILL_DAILY, m, tz, 7, NULL);
  c.take_gap = -1;
  assert_null(hes_backfill_new(&c, err, sizeof(err)));
  assert_non_null(strstr(err, "take_gap"));
  c.take_gap = NAN;
  assert_null(hes_backfill_new(&c, err, sizeof(err)));
  c.take_gap = INFINITY;
  assert_null(hes_backfill_new(&c, err, sizeof(err)));
  /* NULL handles are harmless */
  hes_backfill_free(NULL);
  hes_backfill_advance(NULL, 0);
  assert_int_equal(hes_backfill_take(NULL, 0, NULL), 0);
  assert_int_equal(hes_backfill_save(NULL), EINVAL);
  hes_meters_free(m);
  hes_tz_free(tz);
}

/* --- the state file ---------------------------------------------------------------------- */

static void test_state_round_trip(void **state) {
  (void)state;
  char path[300];
  fx_t f;
  const hes_backfill_entry_t *e;
  hes_backfill_stats_t s;
  char want[1024];

  path_of(path, sizeof(path), "rt.state");
  fx_init(&f, 10, path);
  assert_int_equal(hes_backfill_save(f.b), 0); /* the new window: dirty */
  /* meter 0: t[0], t[1] dispatched; meter 9: t[2] dispatched; meter 5: t[0] queued only */
  assert_int_equal(rec(f.b, 0, f.t[0], 1), HES_BACKFILL_NEW);
  assert_int_equal(rec(f.b, 0, f.t[1], 1), HES_BACKFILL_NEW);
  assert_int_equal(rec(f.b, 9, f.t[2], 1), HES_BACKFILL_NEW);
  assert_int_equal(hes_backfill_take(f.b, 0, &e), 2);
  assert_int_equal(hes_backfill_take(f.b, 0, &e), 1);
  assert_int_equal(rec(f.b, 5, f.t[0], 1), HES_BACKFILL_NEW);
  assert_int_equal(hes_backfill_save(f.b), 0);
  char *text = slurp(path);
  snprintf(want, sizeof(want),
           "collectd-hes backfill state v1\nserver hes1\ncgcode 1\nmeters 10 %s\n"
           "times %lld %lld %lld\n202400000001 3\n202400000010 4\nend 2\n",
           "", (long long)f.t[0], (long long)f.t[1], (long long)f.t[2]);
  /* the hash is opaque: compare around it */
  char *h = strstr(text, "meters 10 ");
  assert_non_null(h);
  assert_int_equal(strspn(h + 10, "0123456789abcdef"), 16);
  memmove(h + 10, h + 26, strlen(h + 26) + 1);
  assert_string_equal(text, want);
  free(text);
  assert_int_equal(hes_backfill_save(f.b), 0); /* nothing changed: no write */
  fx_free(&f);

  /* restart: what was dispatched is not asked for or dispatched again; what was only queued
   * is asked for again (never skipped) */
  fx_t g;
  memset(&g, 0, sizeof(g));
  g.tz = zone("Asia/Shanghai");
  g.m = meters_n(10, 1);
  hes_backfill_config_t c = cfg_of(HES_BACKFILL_DAILY, g.m, g.tz, 3, path);
  g.b = new_ok(&c, HES_BACKFILL_STATE_OK);
  hes_backfill_advance(g.b, utc_of(2024, 7, 10, 2, 0, 0));
  hes_backfill_stats(g.b, &s);
  assert_int_equal(s.expected, 30);
  assert_int_equal(s.collected, 3);
  assert_int_equal(s.pending, 0);
  assert_int_equal(s.missing, 27);
  assert_int_equal(hes_backfill_next_missing(g.b, f.t[0], 0), 1);
  assert_int_equal(hes_backfill_next_missing(g.b, f.t[0], 2), 2);
  assert_int_equal(hes_backfill_next_missing(g.b, f.t[0], 5), 5);
  assert_int_equal(rec(g.b, 0, f.t[0], 1), HES_BACKFILL_DUPLICATE);
  assert_int_equal(rec(g.b, 0, f.t[1], 1), HES_BACKFILL_DUPLICATE);
  assert_int_equal(rec(g.b, 9, f.t[2], 1), HES_BACKFILL_DUPLICATE);
  assert_int_equal(rec(g.b, 5, f.t[0], 1), HES_BACKFILL_NEW);
  /* the order survives the restart: meter 9 had t[2] out, so t[0] is late */
  assert_int_equal(rec(g.b, 9, f.t[0], 1), HES_BACKFILL_LATE);
  assert_int_equal(rec(g.b, 0, f.t[2], 1), HES_BACKFILL_NEW);
  assert_int_equal(hes_backfill_take(g.b, 0, &e), 2);
  assert_int_equal(e[0].meter, 0);
  assert_int_equal(e[0].freeze_time, f.t[2]);
  assert_int_equal(e[1].meter, 5);
  /* a crash after take but before save: those come back (dispatched twice, never lost) */
  hes_backfill_free(g.b);
  g.b = new_ok(&c, HES_BACKFILL_STATE_OK);
  hes_backfill_advance(g.b, utc_of(2024, 7, 10, 2, 0, 0));
  assert_int_equal(rec(g.b, 5, f.t[0], 1), HES_BACKFILL_NEW);
  assert_int_equal(rec(g.b, 9, f.t[0], 1), HES_BACKFILL_LATE);
  assert_int_equal(hes_backfill_save(g.b), 0);
  hes_backfill_free(g.b);
  g.b = new_ok(&c, HES_BACKFILL_STATE_OK);
  hes_backfill_advance(g.b, utc_of(2024, 7, 10, 2, 0, 0));
  assert_int_equal(rec(g.b, 9, f.t[0], 1), HES_BACKFILL_DUPLICATE); /* the late one persisted */
  assert_int_equal(rec(g.b, 5, f.t[0], 1), HES_BACKFILL_NEW);       /* queued, not dispatched */

  /* days later the state slides: given-up times leave the file */
  hes_backfill_advance(g.b, utc_of(2024, 7, 13, 2, 0, 0));
  assert_int_equal(hes_backfill_save(g.b), 0);
  text = slurp(path);
  snprintf(want, sizeof(want), "times %lld %lld %lld %lld\n", (long long)f.t[2],
           (long long)f.t[2] + 86400, (long long)f.t[2] + 2 * 86400, (long long)f.t[2] + 3 * 86400);
  assert_non_null(strstr(text, want));
  free(text);
  fx_free(&g);
  assert_int_equal(unlink(path), 0);
}

/* Writes a state file for server hes1, daily, meters 1..3 of meters_n, t = the fixture's. */
static void write_valid(const char *path, const int64_t *t, const char *extra_meter_lines,
                        const char *end) {
  char text[2048];
  int n = snprintf(text, sizeof(text),
                   "collectd-hes backfill state v1\nserver hes1\ncgcode 1\n"
                   "meters 10 0123456789abcdef\ntimes %lld %lld %lld\n"
                   "202400000001 7\n%s%s",
                   (long long)t[0], (long long)t[1], (long long)t[2], extra_meter_lines, end);
  spit(path, text, (size_t)n);
}

static void expect_set_aside(const char *path, const char *suffix, hes_backfill_state_t want,
                             const char *why) {
  hes_tz_t *tz = zone("Asia/Shanghai");
  hes_meters_t *m = meters_n(10, 1);
  hes_backfill_config_t c = cfg_of(HES_BACKFILL_DAILY, m, tz, 3, path);
  char err[512];
  char aside[400];
  hes_backfill_stats_t s;
  hes_backfill_t *b = hes_backfill_new(&c, err, sizeof(err));

  assert_non_null(b);
  if (hes_backfill_state(b) != want || strstr(err, why) == NULL)
    printf("# %s: %s\n", hes_backfill_state_string(hes_backfill_state(b)), err);
  assert_int_equal(hes_backfill_state(b), want);
  assert_non_null(strstr(err, why));
  snprintf(aside, sizeof(aside), "%s%s", path, suffix);
  assert_non_null(strstr(err, aside));
  assert_true(exists(aside));
  assert_false(exists(path));
  /* nothing trusted: everything missing */
  hes_backfill_advance(b, utc_of(2024, 7, 10, 2, 0, 0));
  hes_backfill_stats(b, &s);
  assert_int_equal(s.collected, 0);
  assert_int_equal(s.missing, 30);
  /* and a fresh file is written at the first save */
  assert_int_equal(hes_backfill_save(b), 0);
  assert_true(exists(path));
  hes_backfill_free(b);
  assert_int_equal(unlink(aside), 0);
  assert_int_equal(unlink(path), 0);
  hes_meters_free(m);
  hes_tz_free(tz);
}

static void test_state_corrupt(void **state) {
  (void)state;
  char path[300];
  int64_t t[3];
  for (int i = 0; i < 3; i++)
    t[i] = utc_of(2024, 7, 7 + i, 16, 0, 0);
  path_of(path, sizeof(path), "c.state");

  /* the valid base loads (the hash differs: a changed list as far as it knows) */
  write_valid(path, t, "", "end 1\n");
  {
    hes_tz_t *tz = zone("Asia/Shanghai");
    hes_meters_t *m = meters_n(10, 1);
    hes_backfill_config_t c = cfg_of(HES_BACKFILL_DAILY, m, tz, 3, path);
    hes_backfill_t *b = new_ok(&c, HES_BACKFILL_STATE_CHANGED);
    hes_backfill_advance(b, utc_of(2024, 7, 10, 2, 0, 0));
    assert_int_equal(rec(b, 0, t[2], 1), HES_BACKFILL_DUPLICATE);
    hes_backfill_free(b);
    hes_meters_free(m);
    hes_tz_free(tz);
  }

  static const struct {
    const char *lines;
    const char *end;
    const char *why;
  } bad[] = {
      {"", "end 2\n", "end line counts"},
      {"", "end 1", "no end line"}, /* no final newline */
      {"", "", "no end line"},
      {"", "end 1\nmore\n", "data after the end line"},
      {"202400000002 8\n", "end 2\n", "mask beyond the times"},
      {"202400000002 17\n", "end 2\n", "malformed"},
      {"202400000002 G\n", "end 2\n", "malformed"},
      {"202400000002 F\n", "end 2\n", "malformed"},
      {"202400000002\n", "end 2\n", "malformed"},
      {"2024 00000002 1\n", "end 2\n", "malformed"},
      {"20240000000,2 1\n", "end 2\n", "bad meter number"},
      {"202400000001 1\n", "end 2\n", "listed twice"},
      {"", "end -1\n", "end line counts"},
      {"", "end 01\n", "end line counts"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    write_valid(path, t, bad[i].lines, bad[i].end);
    expect_set_aside(path, ".corrupt", HES_BACKFILL_STATE_CORRUPT, bad[i].why);
  }
  /* header damage */
  static const char *heads[] = {
      "collectd-hes backfill state v2\nserver hes1\n",
      "",
      "collectd-hes backfill state v1\nserver hes1\ncgcode x\n",
      "collectd-hes backfill state v1\nserver hes1\ncgcode 1\nmeters 10 0123\n",
      "collectd-hes backfill state v1\nserver hes1\ncgcode 1\nmeters 10 0123456789abcdef\n"
      "times 1720368000 1720368000\nend 0\n",
      "collectd-hes backfill state v1\nserver hes1\ncgcode 1\nmeters 10 0123456789abcdef\n"
      "times 1720368000  1720454400\nend 0\n",
      "collectd-hes backfill state v1\nserver hes1\ncgcode 1\nmeters 10 0123456789abcdef\n"
      "times 99999999999999999999\nend 0\n",
      "collectd-hes backfill state v1\nserver hes1\ncgcode 1\nmeters 10 0123456789abcdef\n"
      "times x\nend 0\n",
      "collectd-hes backfill state v1\0\nserver hes1\n",
  };
  for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
    size_t len = i == 8 ? 44 : strlen(heads[i]);
    spit(path, heads[i], len);
    expect_set_aside(path, ".corrupt", HES_BACKFILL_STATE_CORRUPT, "corrupt");
  }

  /* every strict prefix of a real file is corrupt (or, empty, corrupt too) */
  {
    char full[4096];
    fx_t f;
    const hes_backfill_entry_t *e;
    fx_init(&f, 10, path);
    for (uint32_t m = 0; m < 10; m += 3)
      assert_int_equal(rec(f.b, m, f.t[m % 3], 1), HES_BACKFILL_NEW);
    assert_int_equal(hes_backfill_take(f.b, 0, &e), 4);
    assert_int_equal(hes_backfill_save(f.b), 0);
    fx_free(&f);
    char *text = slurp(path);
    size_t len = strlen(text);
    assert_true(len < sizeof(full));
    memcpy(full, text, len);
    free(text);
    for (size_t n = 0; n < len; n++) {
      spit(path, full, n);
      expect_set_aside(path, ".corrupt", HES_BACKFILL_STATE_CORRUPT, "corrupt");
    }
    /* and random damage never crashes and is never trusted beyond what it says */
    uint64_t x = 88172645463325252u;
    for (int i = 0; i < 300; i++) {
      char copy[4096];
      memcpy(copy, full, len);
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      copy[x % len] = (char)(x >> 32);
      spit(path, copy, len);
      hes_tz_t *tz = zone("Asia/Shanghai");
      hes_meters_t *m = meters_n(10, 1);
      hes_backfill_config_t c = cfg_of(HES_BACKFILL_DAILY, m, tz, 3, path);
      char err[512];
      hes_backfill_t *b = hes_backfill_new(&c, err, sizeof(err));
      assert_non_null(b);
      hes_backfill_free(b);
      hes_meters_free(m);
      hes_tz_free(tz);
      char aside[400];
      snprintf(aside, sizeof(aside), "%s.corrupt", path);
      unlink(aside);
      snprintf(aside, sizeof(aside), "%s.foreign", path);
      unlink(aside);
      unlink(path);
    }
  }
}

static void test_state_foreign(void **state) {
  (void)state;
  char path[300];
  char text[1024];
  int64_t t[3];
  int n;
  for (int i = 0; i < 3; i++)
    t[i] = utc_of(2024, 7, 7 + i, 16, 0, 0);
  path_of(path, sizeof(path), "f.state");

  n = snprintf(text, sizeof(text),
               "collectd-hes backfill state v1\nserver hes2\ncgcode 1\nmeters 10 0123456789abcdef\n"
               "times %lld\n202400000001 1\nend 1\n",
               (long long)t[0]);
  spit(path, text, (size_t)n);
  expect_set_aside(path, ".foreign", HES_BACKFILL_STATE_FOREIGN, "server \"hes2\"");
  n = snprintf(text, sizeof(text),
               "collectd-hes backfill state v1\nserver hes1\ncgcode 2\nmeters 10 0123456789abcdef\n"
               "times %lld\n202400000001 1\nend 1\n",
               (long long)t[0]);
  spit(path, text, (size_t)n);
  expect_set_aside(path, ".foreign", HES_BACKFILL_STATE_FOREIGN, "cgcode 2");
  /* none of its meters is configured */
  n = snprintf(text, sizeof(text),
               "collectd-hes backfill state v1\nserver hes1\ncgcode 1\nmeters 2 0123456789abcdef\n"
               "times %lld\n999900000001 1\n999900000002 1\nend 2\n",
               (long long)t[0]);
  spit(path, text, (size_t)n);
  expect_set_aside(path, ".foreign", HES_BACKFILL_STATE_FOREIGN, "none of its 2 meters");
  /* freeze times of another zone (TimeZone changed from Europe/Berlin) */
  n = snprintf(text, sizeof(text),
               "collectd-hes backfill state v1\nserver hes1\ncgcode 1\nmeters 10 0123456789abcdef\n"
               "times %lld\n202400000001 1\nend 1\n",
               (long long)utc_of(2024, 7, 7, 22, 0, 0));
  spit(path, text, (size_t)n);
  expect_set_aside(path, ".foreign", HES_BACKFILL_STATE_FOREIGN, "TimeZone changed");
}

static void test_state_meter_list_change(void **state) {
  (void)state;
  char path[300];
  char err[512];
  const hes_backfill_entry_t *e;
  static const char *before[] = {"A1", "B2", "C3", "D4"};
  static const char *after[] = {"E5", "D4", "B2"}; /* A1, C3 removed, E5 new, reordered */
  hes_tz_t *tz = zone("Asia/Shanghai");
  int64_t now = utc_of(2024, 7, 10, 2, 0, 0);
  int64_t t = utc_of(2024, 7, 9, 16, 0, 0);
  hes_backfill_stats_t s;

  path_of(path, sizeof(path), "m.state");
  hes_meters_t *m1 = meters_list(before, 4);
  hes_backfill_config_t c = cfg_of(HES_BACKFILL_DAILY, m1, tz, 2, path);
  hes_backfill_t *b = new_ok(&c, HES_BACKFILL_STATE_NONE);
  hes_backfill_advance(b, now);
  for (uint32_t i = 0; i < 4; i++) {
    if (i != 3) /* D4 stays missing */
      assert_int_equal(rec(b, i, t, i), HES_BACKFILL_NEW);
  }
  assert_int_equal(hes_backfill_take(b, 0, &e), 3);
  assert_int_equal(hes_backfill_save(b), 0);
  hes_backfill_free(b);
  /* the same list again: OK */
  b = new_ok(&c, HES_BACKFILL_STATE_OK);
  hes_backfill_free(b);

  hes_meters_t *m2 = meters_list(after, 3);
  c.meters = m2;
  b = hes_backfill_new(&c, err, sizeof(err));
  assert_non_null(b);
  assert_int_equal(hes_backfill_state(b), HES_BACKFILL_STATE_CHANGED);
  assert_non_null(
      strstr(err, "1 meters kept, 2 no longer configured dropped, 2 new")); /* B2 kept */
  hes_backfill_advance(b, now);
  assert_int_equal(rec(b, 2, t, 1), HES_BACKFILL_DUPLICATE); /* B2: dispatched before */
  assert_int_equal(hes_backfill_next_missing(b, t, 0), 0);   /* E5 */
  assert_int_equal(hes_backfill_next_missing(b, t, 1), 1);   /* D4 */
  assert_int_equal(hes_backfill_next_missing(b, t, 2), HES_METER_NONE);
  hes_backfill_stats(b, &s);
  assert_int_equal(s.expected, 6);
  assert_int_equal(s.collected, 1);
  assert_int_equal(s.missing, 5);
  /* saved under the new list, it loads as OK */
  assert_int_equal(rec(b, 0, t, 1), HES_BACKFILL_NEW);
  assert_int_equal(hes_backfill_take(b, 0, &e), 1);
  assert_int_equal(hes_backfill_save(b), 0);
  hes_backfill_free(b);
  b = new_ok(&c, HES_BACKFILL_STATE_OK);
  hes_backfill_advance(b, now);
  assert_int_equal(hes_backfill_missing_count(b, t), 1);
  hes_backfill_free(b);
  assert_int_equal(unlink(path), 0);
  hes_meters_free(m1);
  hes_meters_free(m2);
  hes_tz_free(tz);
}

static void test_state_unwritable(void **state) {
  (void)state;
  fx_t f;
  char path[300];
  path_of(path, sizeof(path), "no/such/dir/x.state");
  fx_init(&f, 3, path);
  assert_int_equal(hes_backfill_save(f.b), ENOENT);
  assert_int_equal(hes_backfill_save(f.b), ENOENT); /* still dirty: tried again */
  fx_free(&f);
  /* a directory where the file should be: set aside as corrupt is impossible, reported */
  path_of(path, sizeof(path), "adir");
  assert_int_equal(mkdir(path, 0700), 0);
  hes_tz_t *tz = zone("UTC");
  hes_meters_t *m = meters_n(3, 1);
  hes_backfill_config_t c = cfg_of(HES_BACKFILL_DAILY, m, tz, 3, path);
  char err[512];
  hes_backfill_t *b = hes_backfill_new(&c, err, sizeof(err));
  assert_non_null(b);
  assert_int_equal(hes_backfill_state(b), HES_BACKFILL_STATE_CORRUPT);
  hes_backfill_free(b);
  hes_meters_free(m);
  hes_tz_free(tz);
}

static void test_memory_100k(void **state) {
  (void)state;
  char path[300];
  hes_tz_t *tz = zone("Asia/Shanghai");
  hes_meters_t *m = meters_n(100000, 1);
  path_of(path, sizeof(path), "big.state");
  hes_backfill_config_t c = cfg_of(HES_BACKFILL_DAILY, m, tz, 7, path);
  hes_backfill_t *b = new_ok(&c, HES_BACKFILL_STATE_NONE);
  int64_t now = utc_of(2024, 7, 10, 2, 0, 0);
  int64_t due[16];
  const hes_backfill_entry_t *e;
  hes_backfill_stats_t s;

  hes_backfill_advance(b, now);
  assert_int_equal(hes_backfill_due(b, due, 16), 7);
  size_t mem = hes_backfill_memory(b);
  printf("# 100k meters x 7 days: %zu bytes without queued values\n", mem);
  assert_true(mem < 400 * 1024);
  /* a day's worth through the queue, saved and loaded back */
  for (uint32_t i = 0; i < 100000; i++)
    assert_int_equal(rec(b, i, due[6], i), HES_BACKFILL_NEW);
  assert_int_equal(hes_backfill_take(b, 0, &e), 100000);
  assert_true(hes_backfill_memory(b) > 100000 * HES_BACKFILL_ENTRY_SIZE);
  assert_int_equal(hes_backfill_take(b, 0, &e), 0); /* the backlog's buffers are given back */
  assert_true(hes_backfill_memory(b) < 400 * 1024);
  assert_int_equal(hes_backfill_save(b), 0);
  hes_backfill_free(b);
  b = new_ok(&c, HES_BACKFILL_STATE_OK);
  hes_backfill_advance(b, now);
  hes_backfill_stats(b, &s);
  assert_int_equal(s.expected, 700000);
  assert_int_equal(s.collected, 100000);
  assert_int_equal(s.missing, 600000);
  assert_int_equal(hes_backfill_next_missing(b, due[6], 0), HES_METER_NONE);
  assert_int_equal(hes_backfill_missing_count(b, HES_BACKFILL_ANY), 100000);
  hes_backfill_free(b);
  unlink(path);
  hes_meters_free(m);
  hes_tz_free(tz);
}

/* record() on an "MQTT thread" while the "read thread" advances, takes and saves: every
 * period comes out exactly once, in order per meter. */
typedef struct {
  hes_backfill_t *b;
  const int64_t *t;
  uint32_t nmeters;
} conc_t;

static void *conc_recorder(void *arg) {
  conc_t *c = arg;
  for (int k = 2; k >= 0; k--) { /* newest first: order is the taker's job */
    for (uint32_t m = 0; m < c->nmeters; m++) {
      hes_backfill_value_t v = {5069, (double)k};
      hes_backfill_record_t r;
      while ((r = hes_backfill_record(c->b, m, c->t[k], &v, 1)) == HES_BACKFILL_FULL)
        sched_yield(); /* the queue is bounded: wait for the taker */
      if (r != HES_BACKFILL_NEW && r != HES_BACKFILL_LATE)
        return (void *)1;
    }
  }
  return NULL;
}

static void test_concurrent(void **state) {
  (void)state;
  fx_t f;
  char path[300];
  const hes_backfill_entry_t *e;
  pthread_t th;
  conc_t c;
  static int64_t last[2000];
  uint64_t out = 0;
  uint64_t late;
  hes_backfill_stats_t s;

  path_of(path, sizeof(path), "conc.state");
  fx_init(&f, 2000, path);
  c = (conc_t){f.b, f.t, 2000};
  for (uint32_t m = 0; m < 2000; m++)
    last[m] = INT64_MIN;
  assert_int_equal(pthread_create(&th, NULL, conc_recorder, &c), 0);
  for (int round = 0; round < 100000; round++) {
    size_t n = hes_backfill_take(f.b, 0, &e);
    for (size_t i = 0; i < n; i++) {
      assert_true(e[i].freeze_time > last[e[i].meter]);
      last[e[i].meter] = e[i].freeze_time;
    }
    out += n;
    hes_backfill_advance(f.b, f.now);
    if (round % 50 == 0)
      assert_int_equal(hes_backfill_save(f.b), 0);
    hes_backfill_stats(f.b, &s);
    if (s.missing == 0 && s.pending == 0)
      break;
  }
  void *rc;
  assert_int_equal(pthread_join(th, &rc), 0);
  assert_null(rc);
  hes_backfill_stats(f.b, &s);
  late = s.dropped_late;
  assert_int_equal(out + late, 6000);
  assert_int_equal(s.dispatched, out);
  assert_int_equal(s.collected, 6000);
  fx_free(&f);
  unlink(path);
}

/* save() on one thread while another records and takes, which sets the dirty flag: save
 * must decide from the flag under the lock (a read after unlocking was a data race, which
 * ThreadSanitizer reports for this test), and every save succeeds; the last one holds
 * everything dispatched. The recorder waits for two saves after each take, so that saves
 * with nothing to write (the path of the race) run between its writes. */
typedef struct {
  hes_backfill_t *b;
  atomic_bool stop;
  atomic_uint saves;
  atomic_int failed;
} saver_t;

static void *conc_saver(void *arg) {
  saver_t *sv = arg;
  while (!atomic_load(&sv->stop)) {
    if (hes_backfill_save(sv->b) != 0)
      atomic_fetch_add(&sv->failed, 1);
    atomic_fetch_add(&sv->saves, 1);
  }
  return NULL;
}

static void test_save_concurrent(void **state) {
  (void)state;
  fx_t f;
  char path[300];
  const hes_backfill_entry_t *e;
  pthread_t th;
  saver_t sv;
  size_t out = 0;

  path_of(path, sizeof(path), "conc-save.state");
  unlink(path);
  fx_init(&f, 40, path);
  sv.b = f.b;
  atomic_init(&sv.stop, false);
  atomic_init(&sv.saves, 0);
  atomic_init(&sv.failed, 0);
  assert_int_equal(pthread_create(&th, NULL, conc_saver, &sv), 0);
  for (int k = 0; k < 3; k++) {
    for (uint32_t m = 0; m < 40; m++) {
      unsigned seen;
      assert_int_equal(rec(f.b, m, f.t[k], 1), HES_BACKFILL_NEW);
      out += hes_backfill_take(f.b, 0, &e);
      seen = atomic_load(&sv.saves);
      while (atomic_load(&sv.saves) < seen + 2)
        sched_yield();
    }
  }
  atomic_store(&sv.stop, true);
  assert_int_equal(pthread_join(th, NULL), 0);
  assert_int_equal(atomic_load(&sv.failed), 0);
  assert_int_equal(out, 120);
  assert_int_equal(hes_backfill_save(f.b), 0);
  hes_backfill_free(f.b);
  /* reloaded: every meter x period is done, nothing is due */
  hes_backfill_config_t c = cfg_of(HES_BACKFILL_DAILY, f.m, f.tz, 3, path);
  f.b = new_ok(&c, HES_BACKFILL_STATE_OK);
  hes_backfill_advance(f.b, f.now);
  int64_t due[4];
  assert_int_equal(hes_backfill_due(f.b, due, 4), 0);
  fx_free(&f);
  unlink(path);
}

/* A new meter list: a meter in both keeps its periods (dispatched, queued) under its new
 * index, a joiner is missing in every freeze time tracked, a leaver's periods and queued
 * values go; records by number follow the new list. */
static void test_set_meters(void **state) {
  (void)state;
  fx_t f;
  const hes_backfill_entry_t *e;
  hes_backfill_stats_t s;

  fx_init(&f, 3, NULL); /* 202400000001..3 */
  assert_int_equal(rec(f.b, 0, f.t[1], 1.0), HES_BACKFILL_NEW);
  assert_int_equal(hes_backfill_take(f.b, 0, &e), 1);           /* 1 dispatched at t1 */
  assert_int_equal(rec(f.b, 0, f.t[2], 2.0), HES_BACKFILL_NEW); /* 1 queued at t2 */
  assert_int_equal(rec(f.b, 2, f.t[2], 3.0), HES_BACKFILL_NEW); /* 3 queued at t2 */
  /* 3 leaves, 4 joins, 1 moves to index 1 */
  const char *names[] = {"202400000004", "202400000001", "202400000002"};
  hes_meters_t *next = meters_list(names, 3);
  assert_int_equal(hes_backfill_set_meters(f.b, next), 0);
  hes_meters_free(f.m);
  f.m = next;
  hes_backfill_stats(f.b, &s);
  assert_int_equal(s.expected, 9);
  assert_int_equal(s.collected, 1);
  assert_int_equal(s.pending, 1);
  assert_int_equal(s.missing, 7);
  assert_int_equal(hes_backfill_take(f.b, 0, &e), 1);
  assert_int_equal(e[0].meter, 1);
  assert_int_equal(e[0].freeze_time, f.t[2]);
  assert_true(e[0].values[0].value == 2.0);
  /* the joiner is missing everywhere, the leaver is not a meter any more */
  assert_int_equal(hes_backfill_next_missing(f.b, f.t[0], 0), 0);
  hes_backfill_value_t v = {5069, 4.0};
  assert_int_equal(hes_backfill_record_dev(f.b, "202400000004", 12, f.t[1], &v, 1),
                   HES_BACKFILL_NEW);
  assert_int_equal(hes_backfill_record_dev(f.b, "202400000003", 12, f.t[2], &v, 1),
                   HES_BACKFILL_EINVAL);
  assert_int_equal(hes_backfill_record_dev(f.b, "202400000001", 12, f.t[1], &v, 1),
                   HES_BACKFILL_DUPLICATE); /* dispatched before the change */
  assert_int_equal(hes_backfill_set_meters(f.b, NULL), EINVAL);
  /* every meter leaves: nothing expected, nothing queued, nothing due */
  hes_meters_t *none = meters_list(names, 0);
  assert_int_equal(hes_backfill_set_meters(f.b, none), 0);
  hes_meters_free(f.m);
  f.m = none;
  hes_backfill_stats(f.b, &s);
  assert_int_equal(s.expected, 0);
  assert_int_equal(s.pending, 0);
  int64_t due[4];
  assert_int_equal(hes_backfill_due(f.b, due, 4), 0);
  assert_int_equal(hes_backfill_take(f.b, 0, &e), 0);
  fx_free(&f);
}

/* A DCU-only server's first start: the list is empty until the first archive refresh. The
 * books accept it (nothing due, nothing expected, a state file that says so), and the
 * meters the refresh brings are joiners, missing in each of the BackfillPeriods freeze
 * times, as at a first start; the queue bound follows the list. */
static void test_empty_start(void **state) {
  (void)state;
  hes_tz_t *tz = zone("Asia/Shanghai");
  hes_meters_t *empty = meters_list(NULL, 0);
  char path[512];
  const hes_backfill_entry_t *e;
  hes_backfill_stats_t st;
  int64_t due[4];
  int64_t now = utc_of(2024, 7, 10, 2, 0, 0);
  int64_t t[3];

  for (int i = 0; i < 3; i++)
    t[i] = utc_of(2024, 7, 7 + i, 16, 0, 0);
  path_of(path, sizeof(path), "empty.state");
  unlink(path);
  hes_backfill_config_t c = cfg_of(HES_BACKFILL_DAILY, empty, tz, 3, path);
  hes_backfill_t *b = new_ok(&c, HES_BACKFILL_STATE_NONE);
  hes_backfill_advance(b, now);
  hes_backfill_stats(b, &st);
  assert_int_equal(st.freeze_times, 3);
  assert_int_equal(st.expected, 0);
  assert_int_equal(st.missing, 0);
  assert_int_equal(hes_backfill_due(b, due, 4), 0);
  assert_int_equal(hes_backfill_next_missing(b, HES_BACKFILL_ANY, 0), HES_METER_NONE);
  assert_int_equal(hes_backfill_next_missing(b, t[0], 0), HES_METER_NONE);
  assert_int_equal(hes_backfill_missing_count(b, HES_BACKFILL_ANY), 0);
  assert_int_equal(hes_backfill_missing_count(b, t[0]), 0);
  assert_int_equal(rec(b, 0, t[0], 1.0), HES_BACKFILL_EINVAL);
  hes_backfill_value_t v = {5069, 1.0};
  assert_int_equal(hes_backfill_record_dev(b, "202400000001", 12, t[0], &v, 1),
                   HES_BACKFILL_EINVAL);
  assert_int_equal(hes_backfill_take(b, 0, &e), 0);
  assert_int_equal(hes_backfill_room(b), 1024);
  assert_int_equal(hes_backfill_save(b), 0);
  /* a restart before the refresh reads its own state back */
  hes_backfill_free(b);
  b = new_ok(&c, HES_BACKFILL_STATE_OK);
  hes_backfill_advance(b, now);

  /* the first refresh: three meters join */
  hes_meters_t *m = meters_n(3, 1);
  assert_int_equal(hes_backfill_set_meters(b, m), 0);
  hes_backfill_stats(b, &st);
  assert_int_equal(st.expected, 9);
  assert_int_equal(st.missing, 9);
  assert_int_equal(hes_backfill_due(b, due, 4), 3);
  for (int i = 0; i < 3; i++)
    assert_int_equal(due[i], t[i]);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(hes_backfill_missing_count(b, t[i]), 3);
    assert_int_equal(hes_backfill_next_missing(b, t[i], 0), 0);
    assert_int_equal(hes_backfill_next_missing(b, t[i], 2), 2);
    assert_int_equal(hes_backfill_next_missing(b, t[i], 3), HES_METER_NONE);
  }
  assert_int_equal(hes_backfill_room(b), 2 * 3 + 1024);
  /* billing works from then on */
  assert_int_equal(hes_backfill_record_dev(b, "202400000002", 12, t[0], &v, 1), HES_BACKFILL_NEW);
  assert_int_equal(hes_backfill_take(b, 0, &e), 1);
  assert_int_equal(e[0].meter, 1);
  assert_int_equal(e[0].freeze_time, t[0]);
  assert_int_equal(hes_backfill_missing_count(b, t[0]), 2);
  assert_int_equal(hes_backfill_save(b), 0);
  hes_backfill_free(b);
  /* ... and the next start, with the list kept, reads that back */
  c.meters = m;
  b = new_ok(&c, HES_BACKFILL_STATE_OK);
  hes_backfill_advance(b, now);
  assert_int_equal(hes_backfill_missing_count(b, t[0]), 2);
  assert_int_equal(hes_backfill_missing_count(b, HES_BACKFILL_ANY), 3);
  hes_backfill_free(b);
  unlink(path);
  hes_meters_free(m);
  hes_meters_free(empty);
  hes_tz_free(tz);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_periods_daily),     cmocka_unit_test(test_periods_monthly),
      cmocka_unit_test(test_periods_profile),   cmocka_unit_test(test_exactly_once),
      cmocka_unit_test(test_dispatch_order),    cmocka_unit_test(test_dispatch_rounds),
      cmocka_unit_test(test_take_gap),          cmocka_unit_test(test_due_and_missing),
      cmocka_unit_test(test_due_no_starvation), cmocka_unit_test(test_save_concurrent),
      cmocka_unit_test(test_give_up),           cmocka_unit_test(test_full),
      cmocka_unit_test(test_hold_gaps),         cmocka_unit_test(test_config_errors),
      cmocka_unit_test(test_state_round_trip),  cmocka_unit_test(test_state_corrupt),
      cmocka_unit_test(test_state_foreign),     cmocka_unit_test(test_state_meter_list_change),
      cmocka_unit_test(test_state_unwritable),  cmocka_unit_test(test_memory_100k),
      cmocka_unit_test(test_concurrent),        cmocka_unit_test(test_set_meters),
      cmocka_unit_test(test_empty_start),
  };
  return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
