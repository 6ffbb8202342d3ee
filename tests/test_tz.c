/* Tests for tz: offsets, local times and time strings of IANA zones and POSIX TZ strings,
 * compared with glibc's localtime_r (setenv("TZ") is fine in a single-threaded test), the
 * DST edge cases of local_to_utc, zone name checks, and broken TZif data. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tz.h"
#include "rng.h"

/* --- helpers ----------------------------------------------------------------------------- */

static void set_tz(const char *tz) {
  assert_int_equal(setenv("TZ", tz, 1), 0);
  tzset();
}

/* glibc's view of instant t in the zone set by set_tz. */
static void glibc_local(int64_t t, long *off, struct tm *tm) {
  time_t tt = (time_t)t;
  assert_non_null(localtime_r(&tt, tm));
  *off = tm->tm_gmtoff;
}

static long glibc_offset(int64_t t) {
  long off;
  struct tm tm;
  glibc_local(t, &off, &tm);
  return off;
}

/* Compares offset, civil fields and the time string with glibc at instant t; returns the
 * number of mismatches (printed) so a test can report them all at once. */
static int compare_at(const hes_tz_t *tz, const char *label, int64_t t) {
  long off;
  struct tm tm;
  hes_tz_civil_t c;
  char want[64];
  char got[HES_TZ_FORMAT_SIZE];

  glibc_local(t, &off, &tm);
  hes_tz_to_local(tz, t, &c);
  strftime(want, sizeof(want), "%Y-%m-%d %H:%M:%S", &tm);
  if (hes_tz_offset(tz, t) != off || c.year != tm.tm_year + 1900 || c.mon != tm.tm_mon + 1 ||
      c.day != tm.tm_mday || c.hour != tm.tm_hour || c.min != tm.tm_min || c.sec != tm.tm_sec) {
    printf("# %s at %lld: offset %lld, glibc %ld\n", label, (long long)t,
           (long long)hes_tz_offset(tz, t), off);
    return 1;
  }
  if (tm.tm_year + 1900 >= 0 && tm.tm_year + 1900 <= 9999) {
    if (!hes_tz_format(tz, t, got, sizeof(got)) || strcmp(got, want) != 0) {
      printf("# %s at %lld: format \"%s\", glibc \"%s\"\n", label, (long long)t, got, want);
      return 1;
    }
  }
  return 0;
}

/* Many instants between lo and hi, plus every second around each offset change glibc shows
 * at `step` resolution. */
static int compare_range(const hes_tz_t *tz, const char *label, int64_t lo, int64_t hi, int samples,
                         int64_t step) {
  int bad = 0;
  long prev_off = 0;

  for (int i = 0; i < samples && bad < 5; i++)
    bad += compare_at(tz, label, lo + (int64_t)(rng() % (uint64_t)(hi - lo)));
  for (int64_t t = lo; t < hi && bad < 5; t += step) {
    long off;
    struct tm tm;
    glibc_local(t, &off, &tm);
    if (t != lo && off != prev_off) {
      /* a transition within the last day: find it, check around it */
      int64_t a = t - step;
      int64_t b = t;
      while (b - a > 1) {
        int64_t m = a + (b - a) / 2;
        long o;
        glibc_local(m, &o, &tm);
        if (o == prev_off)
          a = m;
        else
          b = m;
      }
      for (int64_t u = b - 2; u <= b + 1; u++)
        bad += compare_at(tz, label, u);
    }
    prev_off = off;
  }
  return bad;
}

static int64_t utc_of(int y, int mo, int d, int h, int mi, int s) {
  return hes_tz_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s;
}

static hes_tz_t *load_ok(const char *name) {
  char err[256];
  hes_tz_t *tz = hes_tz_load(name, err, sizeof(err));
  if (tz == NULL)
    printf("# load %s: %s\n", name, err);
  assert_non_null(tz);
  assert_string_equal(err, "");
  return tz;
}

static uint8_t *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  uint8_t *buf = malloc(HES_TZ_FILE_MAX);
  assert_non_null(f);
  assert_non_null(buf);
  *len = fread(buf, 1, HES_TZ_FILE_MAX, f);
  fclose(f);
  return buf;
}

/* --- tests ------------------------------------------------------------------------------- */

static void test_calendar(void **state) {
  (void)state;
  int64_t y;
  int m, d;

  assert_int_equal(hes_tz_days_from_civil(1970, 1, 1), 0);
  assert_int_equal(hes_tz_days_from_civil(2024, 2, 29), 19782);
  assert_int_equal(hes_tz_days_from_civil(2000, 3, 1), 11017);
  assert_int_equal(hes_tz_days_from_civil(1969, 12, 31), -1);
  assert_int_equal(hes_tz_days_from_civil(2024, 3, 0), 19782); /* day 0: Feb 29 */
  for (int64_t days = -800000; days < 800000; days += 13) {
    hes_tz_civil_from_days(days, &y, &m, &d);
    assert_int_equal(hes_tz_days_from_civil(y, m, d), days);
    assert_true(m >= 1 && m <= 12 && d >= 1 && d <= 31);
  }
  hes_tz_civil_from_days(19782, &y, &m, &d);
  assert_int_equal(y, 2024);
  assert_int_equal(m, 2);
  assert_int_equal(d, 29);
}

static void test_known_offsets(void **state) {
  (void)state;
  hes_tz_t *sh = load_ok("Asia/Shanghai");
  hes_tz_t *be = load_ok("Europe/Berlin");
  hes_tz_t *ny = load_ok("America/New_York");
  hes_tz_t *utc = load_ok("UTC");

  assert_string_equal(hes_tz_name(sh), "Asia/Shanghai");
  assert_int_equal(hes_tz_offset(sh, 1720540800), 28800);
  assert_int_equal(hes_tz_offset(sh, utc_of(2124, 1, 1, 0, 0, 0)), 28800);
  /* Berlin: CET -> CEST at 2024-03-31 01:00 UTC, back at 2024-10-27 01:00 UTC */
  assert_int_equal(hes_tz_offset(be, utc_of(2024, 3, 31, 0, 59, 59)), 3600);
  assert_int_equal(hes_tz_offset(be, utc_of(2024, 3, 31, 1, 0, 0)), 7200);
  assert_int_equal(hes_tz_offset(be, utc_of(2024, 10, 27, 0, 59, 59)), 7200);
  assert_int_equal(hes_tz_offset(be, utc_of(2024, 10, 27, 1, 0, 0)), 3600);
  /* far beyond the file's transitions: the footer */
  assert_int_equal(hes_tz_offset(be, utc_of(2090, 3, 26, 0, 59, 59)), 3600);
  assert_int_equal(hes_tz_offset(be, utc_of(2090, 3, 26, 1, 0, 0)), 7200);
  /* New York: 2024-03-10 07:00 UTC and 2024-11-03 06:00 UTC */
  assert_int_equal(hes_tz_offset(ny, utc_of(2024, 3, 10, 6, 59, 59)), -18000);
  assert_int_equal(hes_tz_offset(ny, utc_of(2024, 3, 10, 7, 0, 0)), -14400);
  assert_int_equal(hes_tz_offset(ny, utc_of(2024, 11, 3, 5, 59, 59)), -14400);
  assert_int_equal(hes_tz_offset(ny, utc_of(2024, 11, 3, 6, 0, 0)), -18000);
  assert_int_equal(hes_tz_offset(utc, 1720540800), 0);
  assert_int_equal(hes_tz_offset(NULL, 1720540800), 0);

  char buf[HES_TZ_FORMAT_SIZE];
  assert_true(hes_tz_format(sh, 1720540800, buf, sizeof(buf)));
  assert_string_equal(buf, "2024-07-10 00:00:00");
  assert_true(hes_tz_format(be, utc_of(2024, 10, 27, 0, 30, 0), buf, sizeof(buf)));
  assert_string_equal(buf, "2024-10-27 02:30:00");
  assert_true(hes_tz_format(be, utc_of(2024, 10, 27, 1, 30, 0), buf, sizeof(buf)));
  assert_string_equal(buf, "2024-10-27 02:30:00");
  assert_false(hes_tz_format(sh, 1720540800, buf, sizeof(buf) - 1));
  assert_false(hes_tz_format(sh, utc_of(10000, 1, 1, 0, 0, 0), buf, sizeof(buf)));
  assert_string_equal(buf, "");
  assert_false(hes_tz_format(sh, utc_of(-1, 12, 31, 0, 0, 0), buf, sizeof(buf)));
  assert_false(hes_tz_format(sh, 0, NULL, 20));

  hes_tz_free(sh);
  hes_tz_free(be);
  hes_tz_free(ny);
  hes_tz_free(utc);
}

static void test_against_glibc(void **state) {
  (void)state;
  static const char *zones[] = {
      "Asia/Shanghai",    "Europe/Berlin",    "America/New_York",  "UTC",
      "Australia/Sydney", "America/Havana",   "Asia/Kolkata",      "Asia/Kathmandu",
      "Pacific/Chatham",  "America/Santiago", "Africa/Casablanca", "Europe/Dublin",
      "Asia/Jerusalem",   "America/Nuuk",     "Pacific/Apia",      "Australia/Lord_Howe",
      "America/St_Johns", "Europe/London"};
  int bad = 0;

  for (size_t i = 0; i < sizeof(zones) / sizeof(zones[0]); i++) {
    hes_tz_t *tz = load_ok(zones[i]);
    set_tz(zones[i]);
    bad += compare_range(tz, zones[i], utc_of(1900, 1, 1, 0, 0, 0), utc_of(2150, 1, 1, 0, 0, 0),
                         3000, 86400);
    bad += compare_at(tz, zones[i], INT32_MIN);
    bad += compare_at(tz, zones[i], (int64_t)INT32_MAX + 1);
    hes_tz_free(tz);
  }
  assert_int_equal(bad, 0);
}

/* Every zone file of the system, at a few hundred instants each. */
static int walk_zones(const char *dir, const char *rel, int *zones, int *bad) {
  DIR *d = opendir(dir);
  struct dirent *e;

  assert_non_null(d);
  while ((e = readdir(d)) != NULL && *bad < 5) {
    char path[1024];
    char name[512];
    struct stat st;

    if (e->d_name[0] == '.' || strcmp(e->d_name, "right") == 0 || strcmp(e->d_name, "posix") == 0 ||
        strcmp(e->d_name, "posixrules") == 0 || strcmp(e->d_name, "localtime") == 0)
      continue;
    snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
    snprintf(name, sizeof(name), "%s%s%s", rel, rel[0] ? "/" : "", e->d_name);
    if (stat(path, &st) != 0)
      continue;
    if (S_ISDIR(st.st_mode)) {
      walk_zones(path, name, zones, bad);
      continue;
    }
    {
      FILE *f = fopen(path, "rb");
      char magic[4] = {0};
      size_t n = f != NULL ? fread(magic, 1, 4, f) : 0;
      if (f != NULL)
        fclose(f);
      if (n != 4 || memcmp(magic, "TZif", 4) != 0)
        continue; /* zone.tab, tzdata.zi, ... */
    }
    hes_tz_t *tz = load_ok(name);
    set_tz(name);
    *bad += compare_range(tz, name, utc_of(1960, 1, 1, 0, 0, 0), utc_of(2060, 1, 1, 0, 0, 0), 200,
                          5 * 86400);
    (*zones)++;
    hes_tz_free(tz);
  }
  closedir(d);
  return *bad;
}

static void test_all_system_zones(void **state) {
  (void)state;
  int zones = 0;
  int bad = 0;

  walk_zones(HES_TZ_DIR, "", &zones, &bad);
  assert_int_equal(bad, 0);
  printf("# %d zones compared with glibc\n", zones);
  assert_true(zones > 300);
}

static void test_posix_strings(void **state) {
  (void)state;
  static const char *strings[] = {
      "CST-8",
      "CET-1CEST,M3.5.0,M10.5.0/3",
      "EST5EDT,M3.2.0,M11.1.0",
      "XST5XDT,M3.2.0,M11.1.0", /* no such file: a pure TZ string for glibc too */
      "<+0330>-3:30",
      "<-03>3",
      "AEST-10AEDT,M10.1.0,M4.1.0/3",    /* southern hemisphere */
      "IST-2IDT,M3.4.4/26,M10.5.0",      /* v3: hours beyond 24 */
      "<-02>2<-01>,M3.5.0/-1,M10.5.0/0", /* v3: a negative hour */
      "NZST-12NZDT,M9.5.0,M4.1.0/3",
      "CET-1CEST-3,J60/2,J300/3", /* explicit DST offset, Julian days */
      "WET0WEST,59,299",          /* zero-based days */
      "<+1245>-12:45<+1345>,M9.5.0/2:45,M4.1.0/3:45",
      "EST+5EDT+4:00:00,M3.2.0/2:00:00,M11.1.0/2:00:00",
  };
  int bad = 0;
  char err[256];

  for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
    hes_tz_t *tz = hes_tz_posix(strings[i], err, sizeof(err));
    if (tz == NULL)
      printf("# %s: %s\n", strings[i], err);
    assert_non_null(tz);
    set_tz(strings[i]);
    bad += compare_range(tz, strings[i], utc_of(1980, 1, 1, 0, 0, 0), utc_of(2080, 1, 1, 0, 0, 0),
                         2000, 86400);
    hes_tz_free(tz);
    /* and through hes_tz_load, as a TimeZone value */
    tz = hes_tz_load(strings[i], err, sizeof(err));
    assert_non_null(tz);
    assert_int_equal(hes_tz_offset(tz, 1720540800), glibc_offset(1720540800));
    hes_tz_free(tz);
  }
  assert_int_equal(bad, 0);

  hes_tz_t *tz = hes_tz_posix("CST-8", err, sizeof(err));
  assert_int_equal(hes_tz_offset(tz, 0), 28800);
  assert_int_equal(hes_tz_offset(tz, INT64_MAX), 28800);
  hes_tz_free(tz);
  tz = hes_tz_posix("XST5XDT", err, sizeof(err)); /* no rules: the US ones */
  assert_non_null(tz);
  assert_int_equal(hes_tz_offset(tz, utc_of(2024, 3, 10, 6, 59, 59)), -18000);
  assert_int_equal(hes_tz_offset(tz, utc_of(2024, 3, 10, 7, 0, 0)), -14400);
  assert_int_equal(hes_tz_offset(tz, utc_of(2024, 11, 3, 5, 59, 59)), -14400);
  assert_int_equal(hes_tz_offset(tz, utc_of(2024, 11, 3, 6, 0, 0)), -18000);
  hes_tz_free(tz);
  tz = hes_tz_posix("CET-1CEST,M3.5.0,M10.5.0/3", err, sizeof(err));
  assert_int_equal(hes_tz_offset(tz, utc_of(2024, 3, 31, 0, 59, 59)), 3600);
  assert_int_equal(hes_tz_offset(tz, utc_of(2024, 3, 31, 1, 0, 0)), 7200);
  assert_int_equal(hes_tz_offset(tz, utc_of(2024, 10, 27, 0, 59, 59)), 7200);
  assert_int_equal(hes_tz_offset(tz, utc_of(2024, 10, 27, 1, 0, 0)), 3600);
  /* extreme instants must not overflow (UBSan) and give a sane offset */
  assert_true(hes_tz_offset(tz, INT64_MAX) == 3600 || hes_tz_offset(tz, INT64_MAX) == 7200);
  assert_true(hes_tz_offset(tz, INT64_MIN) == 3600 || hes_tz_offset(tz, INT64_MIN) == 7200);
  hes_tz_civil_t c;
  hes_tz_to_local(tz, INT64_MIN, &c);
  hes_tz_to_local(tz, INT64_MAX, &c);
  hes_tz_free(tz);
}

static void test_posix_bad(void **state) {
  (void)state;
  static const char *bad[] = {
      "",
      "CET",
      "AB-1",
      "CET-25",
      "CET-1CEST,M3.5.0",
      "CET-1CEST,M13.5.0,M10.5.0",
      "CET-1CEST,M3.6.0,M10.5.0",
      "CET-1CEST,M3.5.7,M10.5.0",
      "CET-1CEST,M3.5.0,M10.5.0/168",
      "CET-1CEST,J0,J300",
      "CET-1CEST,366,300",
      "CET-1CEST,M3.5.0,M10.5.0x",
      "CET-1:60",
      "CET-1CEST,M3.5.0,M10.5.0/3:00:60",
      "<+03-3",
      "<ab>-3",
      "CET-0001",
      "CET-1 CEST",
  };
  char err[128];

  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    hes_tz_t *tz = hes_tz_posix(bad[i], err, sizeof(err));
    if (tz != NULL)
      printf("# accepted \"%s\"\n", bad[i]);
    assert_null(tz);
    assert_non_null(strstr(err, "not a POSIX TZ string"));
  }
  assert_null(hes_tz_posix(NULL, err, sizeof(err)));
}

static void test_names(void **state) {
  (void)state;
  char err[256];
  hes_tz_t *tz;

  static const char *rejected[] = {"../etc/passwd",
                                   "Asia/../../../etc/passwd",
                                   "/etc/passwd",
                                   "/usr/share/zoneinfo/../../../etc/passwd",
                                   "Asia/Shang hai",
                                   "Europe/Berlin\n",
                                   "Asia/Shangai",
                                   "Nowhere",
                                   "Asia"};
  for (size_t i = 0; i < sizeof(rejected) / sizeof(rejected[0]); i++) {
    tz = hes_tz_load(rejected[i], err, sizeof(err));
    if (tz != NULL)
      printf("# accepted \"%s\"\n", rejected[i]);
    assert_null(tz);
    assert_true(strlen(err) > 10);
  }
  tz = hes_tz_load("Asia/Shangai", err, sizeof(err));
  assert_non_null(strstr(err, "no such zone"));
  tz = hes_tz_load("/etc/passwd", err, sizeof(err));
  assert_non_null(strstr(err, "must be under"));

  char longname[HES_TZ_NAME_MAX + 2];
  memset(longname, 'A', sizeof(longname) - 1);
  longname[sizeof(longname) - 1] = '\0';
  assert_null(hes_tz_load(longname, err, sizeof(err)));

  tz = load_ok("/usr/share/zoneinfo/Asia/Shanghai");
  assert_int_equal(hes_tz_offset(tz, 1720540800), 28800);
  hes_tz_free(tz);
  tz = load_ok(":Europe/Berlin");
  assert_int_equal(hes_tz_offset(tz, utc_of(2024, 7, 1, 0, 0, 0)), 7200);
  hes_tz_free(tz);

  /* the host's zone: /etc/localtime, compared with glibc's own idea of it */
  tz = load_ok(NULL);
  {
    char link[512];
    ssize_t n = readlink(HES_TZ_LOCALTIME, link, sizeof(link) - 1);
    if (n > 0 && strncmp(link, HES_TZ_DIR "/", strlen(HES_TZ_DIR) + 1) == 0) {
      link[n] = '\0';
      assert_string_equal(hes_tz_name(tz), link + strlen(HES_TZ_DIR) + 1);
    } else {
      assert_string_equal(hes_tz_name(tz), "localtime");
    }
  }
  unsetenv("TZ");
  tzset();
  int bad = compare_range(tz, "localtime", utc_of(2000, 1, 1, 0, 0, 0), utc_of(2040, 1, 1, 0, 0, 0),
                          500, 86400);
  assert_int_equal(bad, 0);
  hes_tz_free(tz);
  tz = load_ok("");
  hes_tz_free(tz);

  struct stat st;
  if (stat(HES_TZ_DIR "/right/UTC", &st) == 0) {
    tz = hes_tz_load("right/UTC", err, sizeof(err));
    assert_null(tz);
    assert_non_null(strstr(err, "leap-second"));
  }
  tz = hes_tz_load("Europe/Berlin", NULL, 0); /* no err buffer: fine */
  assert_non_null(tz);
  hes_tz_free(tz);
}

/* A hand-built TZif file: version, 64-bit transitions and types, footer. */
typedef struct {
  uint8_t b[4096];
  size_t n;
} buf_t;

static void put(buf_t *b, const void *p, size_t n) {
  assert_true(b->n + n <= sizeof(b->b));
  memcpy(b->b + b->n, p, n);
  b->n += n;
}

static void put32(buf_t *b, uint32_t v) {
  uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
  put(b, x, 4);
}

static void put64(buf_t *b, int64_t v) {
  put32(b, (uint32_t)((uint64_t)v >> 32));
  put32(b, (uint32_t)v);
}

static void header(buf_t *b, char version, uint32_t timecnt, uint32_t typecnt, uint32_t leapcnt) {
  uint8_t zero[15] = {0};
  put(b, "TZif", 4);
  put(b, &version, 1);
  put(b, zero, 15);
  put32(b, 0);       /* isutcnt */
  put32(b, 0);       /* isstdcnt */
  put32(b, leapcnt); /* leapcnt */
  put32(b, timecnt);
  put32(b, typecnt);
  put32(b, 4); /* charcnt */
}

/* A zone: +1 h until t1, +2 h from t1, with the given quirks. */
static void build(buf_t *b, char version, int64_t t0, int64_t t1, uint8_t idx1, int32_t off1,
                  const char *footer) {
  int64_t times[2] = {t0, t1};
  uint8_t types[12] = {0};
  int32_t offs[2] = {3600, off1};

  memset(b, 0, sizeof(*b));
  for (int i = 0; i < 2; i++) {
    types[i * 6 + 0] = (uint8_t)((uint32_t)offs[i] >> 24);
    types[i * 6 + 1] = (uint8_t)((uint32_t)offs[i] >> 16);
    types[i * 6 + 2] = (uint8_t)((uint32_t)offs[i] >> 8);
    types[i * 6 + 3] = (uint8_t)offs[i];
    types[i * 6 + 4] = (uint8_t)i;
  }
  header(b, version, 2, 2, 0);
  put32(b, (uint32_t)t0);
  put32(b, (uint32_t)t1);
  uint8_t idx[2] = {0, idx1};
  put(b, idx, 2);
  put(b, types, 12);
  put(b, "AB\0\0", 4);
  if (version == '\0')
    return;
  header(b, version, 2, 2, 0);
  put64(b, times[0]);
  put64(b, times[1]);
  put(b, idx, 2);
  put(b, types, 12);
  put(b, "AB\0\0", 4);
  put(b, "\n", 1);
  put(b, footer, strlen(footer));
  put(b, "\n", 1);
}

static void test_tzif_built(void **state) {
  (void)state;
  buf_t b;
  char err[256];
  hes_tz_t *tz;

  build(&b, '2', 1000, 2000, 1, 7200, "");
  tz = hes_tz_parse(b.b, b.n, "built", err, sizeof(err));
  assert_non_null(tz);
  assert_int_equal(hes_tz_offset(tz, 0), 3600); /* type 0 before the first transition */
  assert_int_equal(hes_tz_offset(tz, 1999), 3600);
  assert_int_equal(hes_tz_offset(tz, 2000), 7200);
  assert_int_equal(hes_tz_offset(tz, INT64_MAX), 7200); /* no footer: the last type */
  hes_tz_free(tz);

  build(&b, '3', 1000, 2000, 1, 7200, "CST-8");
  tz = hes_tz_parse(b.b, b.n, "built", err, sizeof(err));
  assert_non_null(tz);
  assert_int_equal(hes_tz_offset(tz, 1999), 3600);
  assert_int_equal(hes_tz_offset(tz, 2000), 28800); /* the footer from the last transition */
  hes_tz_free(tz);

  build(&b, '\0', 1000, 2000, 1, 7200, "");
  tz = hes_tz_parse(b.b, b.n, "v1", err, sizeof(err));
  assert_non_null(tz);
  assert_int_equal(hes_tz_offset(tz, 2000), 7200);
  hes_tz_free(tz);

  /* broken ones */
  struct {
    char version;
    int64_t t0, t1;
    uint8_t idx1;
    int32_t off1;
    const char *footer;
    const char *why;
  } cases[] = {
      {'2', 2000, 1000, 1, 7200, "", "not ascending"},
      {'2', 1000, 1000, 1, 7200, "", "not ascending"},
      {'2', 1000, 2000, 2, 7200, "", "type that does not exist"},
      {'2', 1000, 2000, 1, 93600, "", "local time type 1"},
      {'2', 1000, 2000, 1, -90000, "", "local time type 1"},
      {'2', 1000, 2000, 1, INT32_MIN, "", "local time type 1"},
      {'2', 1000, 2000, 1, 7200, "CET-1CEST,M3.5.0", "footer"},
      {'2', 1000, 2000, 1, 7200, "X", "footer"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    build(&b, cases[i].version, cases[i].t0, cases[i].t1, cases[i].idx1, cases[i].off1,
          cases[i].footer);
    tz = hes_tz_parse(b.b, b.n, "bad", err, sizeof(err));
    assert_null(tz);
    if (strstr(err, cases[i].why) == NULL)
      printf("# case %zu: %s\n", i, err);
    assert_non_null(strstr(err, cases[i].why));
  }

  /* a footer without its final newline, and one with a NUL in it */
  build(&b, '2', 1000, 2000, 1, 7200, "CST-8");
  assert_null(hes_tz_parse(b.b, b.n - 1, "bad", err, sizeof(err)));
  b.b[b.n - 3] = '\0';
  assert_null(hes_tz_parse(b.b, b.n, "bad", err, sizeof(err)));
  assert_non_null(strstr(err, "NUL"));

  /* huge counts */
  memset(&b, 0, sizeof(b));
  header(&b, '2', 0xFFFFFFFFu, 1, 0);
  assert_null(hes_tz_parse(b.b, b.n, "bad", err, sizeof(err)));
  assert_non_null(strstr(err, "malformed TZif header"));
  memset(&b, 0, sizeof(b));
  header(&b, '2', 0, 0, 0);
  assert_null(hes_tz_parse(b.b, b.n, "bad", err, sizeof(err)));
  memset(&b, 0, sizeof(b));
  header(&b, '2', 0, 1, 1);
  assert_null(hes_tz_parse(b.b, b.n, "bad", err, sizeof(err)));
  assert_non_null(strstr(err, "leap-second"));
  assert_null(hes_tz_parse("TZif", 4, "bad", err, sizeof(err)));
  assert_null(hes_tz_parse(NULL, 0, "bad", err, sizeof(err)));
  assert_null(hes_tz_parse("not a tzif file at all, but long enough to hold a header.", 58, "bad",
                           err, sizeof(err)));
  assert_non_null(strstr(err, "not a TZif file"));
}

/* Every prefix of a real file is rejected; random byte flips never crash (run under ASan). */
static void test_tzif_truncated_and_flipped(void **state) {
  (void)state;
  size_t len;
  uint8_t *buf = slurp(HES_TZ_DIR "/Europe/Berlin", &len);
  char err[256];
  hes_tz_t *tz;

  tz = hes_tz_parse(buf, len, "full", err, sizeof(err));
  assert_non_null(tz);
  hes_tz_free(tz);
  for (size_t n = 0; n < len; n++) {
    uint8_t *copy = malloc(n + 1); /* exact size, so ASan sees any overread */
    assert_non_null(copy);
    memcpy(copy, buf, n);
    tz = hes_tz_parse(n ? copy : NULL, n, "prefix", err, sizeof(err));
    if (tz != NULL)
      printf("# prefix %zu of %zu accepted\n", n, len);
    assert_null(tz);
    free(copy);
  }
  for (int i = 0; i < 3000; i++) {
    uint8_t *copy = malloc(len);
    assert_non_null(copy);
    memcpy(copy, buf, len);
    for (int k = 0; k < 1 + i % 4; k++)
      copy[rng() % len] ^= (uint8_t)(1u << (rng() % 8));
    tz = hes_tz_parse(copy, len, "flipped", err, sizeof(err));
    if (tz != NULL) {
      hes_tz_civil_t c;
      int64_t u;
      for (int k = 0; k < 50; k++) {
        int64_t t = (int64_t)rng();
        int64_t off = hes_tz_offset(tz, t);
        assert_true(off >= -89999 && off <= 93599);
        hes_tz_to_local(tz, t, &c);
      }
      c = (hes_tz_civil_t){2024, 3, 31, 2, 30, 0};
      (void)hes_tz_local_to_utc(tz, &c, &u);
      hes_tz_free(tz);
    }
    free(copy);
  }
  free(buf);
}

static void test_local_to_utc(void **state) {
  (void)state;
  hes_tz_t *be = load_ok("Europe/Berlin");
  hes_tz_t *sh = load_ok("Asia/Shanghai");
  hes_tz_t *hv = load_ok("America/Havana");
  hes_tz_t *ny = load_ok("America/New_York");
  hes_tz_civil_t c;
  int64_t u;

  c = (hes_tz_civil_t){2024, 7, 10, 0, 0, 0};
  assert_true(hes_tz_local_to_utc(sh, &c, &u));
  assert_int_equal(u, 1720540800);
  /* Berlin gap: 02:30 on 2024-03-31 does not exist -> the transition, 01:00 UTC */
  c = (hes_tz_civil_t){2024, 3, 31, 2, 30, 0};
  assert_true(hes_tz_local_to_utc(be, &c, &u));
  assert_int_equal(u, utc_of(2024, 3, 31, 1, 0, 0));
  c = (hes_tz_civil_t){2024, 3, 31, 2, 0, 0};
  assert_true(hes_tz_local_to_utc(be, &c, &u));
  assert_int_equal(u, utc_of(2024, 3, 31, 1, 0, 0));
  c = (hes_tz_civil_t){2024, 3, 31, 3, 0, 0};
  assert_true(hes_tz_local_to_utc(be, &c, &u));
  assert_int_equal(u, utc_of(2024, 3, 31, 1, 0, 0));
  c = (hes_tz_civil_t){2024, 3, 31, 1, 59, 59};
  assert_true(hes_tz_local_to_utc(be, &c, &u));
  assert_int_equal(u, utc_of(2024, 3, 31, 0, 59, 59));
  /* Berlin overlap: 02:30 on 2024-10-27 happens twice -> the earlier, 00:30 UTC */
  c = (hes_tz_civil_t){2024, 10, 27, 2, 30, 0};
  assert_true(hes_tz_local_to_utc(be, &c, &u));
  assert_int_equal(u, utc_of(2024, 10, 27, 0, 30, 0));
  c = (hes_tz_civil_t){2024, 10, 27, 3, 0, 0};
  assert_true(hes_tz_local_to_utc(be, &c, &u));
  assert_int_equal(u, utc_of(2024, 10, 27, 2, 0, 0));
  /* midnights */
  c = (hes_tz_civil_t){2024, 10, 27, 0, 0, 0};
  assert_true(hes_tz_local_to_utc(be, &c, &u));
  assert_int_equal(u, utc_of(2024, 10, 26, 22, 0, 0));
  c = (hes_tz_civil_t){2024, 10, 28, 0, 0, 0};
  assert_true(hes_tz_local_to_utc(be, &c, &u));
  assert_int_equal(u, utc_of(2024, 10, 27, 23, 0, 0));
  /* Havana skips midnight: 2024-03-10 00:00 CST -> 01:00 CDT, at 05:00 UTC */
  c = (hes_tz_civil_t){2024, 3, 10, 0, 0, 0};
  assert_true(hes_tz_local_to_utc(hv, &c, &u));
  assert_int_equal(u, utc_of(2024, 3, 10, 5, 0, 0));
  /* and repeats the hour after midnight on 2024-11-03 (01:00 CDT -> 00:00 CST) */
  c = (hes_tz_civil_t){2024, 11, 3, 0, 0, 0};
  assert_true(hes_tz_local_to_utc(hv, &c, &u));
  assert_int_equal(u, utc_of(2024, 11, 3, 4, 0, 0));
  /* New York */
  c = (hes_tz_civil_t){2024, 3, 10, 2, 30, 0};
  assert_true(hes_tz_local_to_utc(ny, &c, &u));
  assert_int_equal(u, utc_of(2024, 3, 10, 7, 0, 0));
  c = (hes_tz_civil_t){2024, 11, 3, 1, 30, 0};
  assert_true(hes_tz_local_to_utc(ny, &c, &u));
  assert_int_equal(u, utc_of(2024, 11, 3, 5, 30, 0));

  /* normalization: day 0, month 13, negative hours */
  c = (hes_tz_civil_t){2024, 3, 0, 0, 0, 0};
  assert_true(hes_tz_local_to_utc(sh, &c, &u));
  assert_int_equal(u, utc_of(2024, 2, 28, 16, 0, 0));
  c = (hes_tz_civil_t){2023, 13, 1, 0, 0, 0};
  assert_true(hes_tz_local_to_utc(sh, &c, &u));
  assert_int_equal(u, utc_of(2023, 12, 31, 16, 0, 0));
  c = (hes_tz_civil_t){2024, -1, 1, -24, 0, 0}; /* 2023-11-01 minus a day */
  assert_true(hes_tz_local_to_utc(sh, &c, &u));
  assert_int_equal(u, utc_of(2023, 10, 30, 16, 0, 0));
  c = (hes_tz_civil_t){2024, 1, 1, 0, 0, 0};
  c.year = 2000000;
  assert_false(hes_tz_local_to_utc(sh, &c, &u));
  c = (hes_tz_civil_t){2024, 1, 1, 0, 0, 0};
  c.sec = 200000000;
  assert_false(hes_tz_local_to_utc(sh, &c, &u));
  assert_false(hes_tz_local_to_utc(sh, NULL, &u));

  /* round trip over a decade in every test zone: local_to_utc(to_local(t)) is t, or the
   * earlier instant with the same local reading */
  hes_tz_t *zones[] = {be, sh, hv, ny};
  for (size_t z = 0; z < 4; z++) {
    for (int i = 0; i < 20000; i++) {
      int64_t t = utc_of(2015, 1, 1, 0, 0, 0) + (int64_t)(rng() % (10 * 366 * 86400u));
      hes_tz_civil_t l;
      hes_tz_civil_t l2;
      hes_tz_to_local(zones[z], t, &l);
      assert_true(hes_tz_local_to_utc(zones[z], &l, &u));
      if (u != t) {
        assert_true(u < t);
        assert_true(t - u <= 3600);
        hes_tz_to_local(zones[z], u, &l2);
        assert_memory_equal(&l, &l2, sizeof(l));
      }
    }
  }
  hes_tz_free(be);
  hes_tz_free(sh);
  hes_tz_free(hv);
  hes_tz_free(ny);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_calendar),
      cmocka_unit_test(test_known_offsets),
      cmocka_unit_test(test_against_glibc),
      cmocka_unit_test(test_all_system_zones),
      cmocka_unit_test(test_posix_strings),
      cmocka_unit_test(test_posix_bad),
      cmocka_unit_test(test_names),
      cmocka_unit_test(test_tzif_built),
      cmocka_unit_test(test_tzif_truncated_and_flipped),
      cmocka_unit_test(test_local_to_utc),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
