/* tz: UTC offsets of an IANA time zone (the HES's TimeZone) without touching the process's
 * TZ: collectd is multi-threaded and other plugins call localtime(), so setenv("TZ") +
 * tzset() would change their clocks under them. This module reads the TZif file itself
 * (RFC 8536 versions 1 to 4, the 64-bit data of version 2+ when present) and evaluates the
 * POSIX TZ footer ("CST-8", "CET-1CEST,M3.5.0,M10.5.0/3", "<+0330>-3:30", ...) for instants
 * after the last transition.
 *
 * A loaded zone is immutable: every function taking a const hes_tz_t * is thread-safe. No
 * function here allocates except hes_tz_load / hes_tz_parse. */
#ifndef HES_TZ_H
#define HES_TZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HES_TZ_DIR       "/usr/share/zoneinfo"
#define HES_TZ_LOCALTIME "/etc/localtime"
#define HES_TZ_FILE_MAX  (1024 * 1024) /* a larger TZif file is rejected */
#define HES_TZ_NAME_MAX  256           /* longest zone name accepted */
/* "YYYY-MM-DD HH:MM:SS" and its NUL: the HES's time string format. */
#define HES_TZ_FORMAT_SIZE 20

typedef struct hes_tz hes_tz_t;

/* Local civil time. hes_tz_local_to_utc normalizes out-of-range fields like mktime does
 * (day 0 is the last day of the previous month, mon 13 is January of the next year), as
 * long as each field is within +-100,000,000 and the year within +-1,000,000. */
typedef struct {
  int64_t year;
  int mon;  /* 1..12 */
  int day;  /* 1..31 */
  int hour; /* 0..23 */
  int min;  /* 0..59 */
  int sec;  /* 0..59 */
} hes_tz_civil_t;

/* Loads a zone. name:
 *   NULL or "": the host's zone, /etc/localtime (the TZ variable is not consulted); when
 *               that file does not exist, UTC (as glibc does);
 *   "Asia/Shanghai": the file under HES_TZ_DIR (a leading ':' is ignored, as in TZ);
 *   "/usr/share/zoneinfo/...": an absolute path, only under HES_TZ_DIR;
 *   "CST-8": a POSIX TZ string, when no zone file of that name exists.
 * A name with a ".." component, characters other than [A-Za-z0-9/_+-.:,<>], or longer than
 * HES_TZ_NAME_MAX is rejected. Returns NULL with a one-line reason in err (if given) when the
 * zone cannot be loaded (no such zone, unreadable, malformed, leap-second "right/" zones). */
hes_tz_t *hes_tz_load(const char *name, char *err, size_t errlen);

/* Parses TZif data from memory (for tests and fuzzing). name is only kept for hes_tz_name. */
hes_tz_t *hes_tz_parse(const void *buf, size_t len, const char *name, char *err, size_t errlen);

/* Parses a POSIX TZ string alone ("CET-1CEST,M3.5.0,M10.5.0/3"). A DST zone without rules
 * gets the US rules (",M3.2.0,M11.1.0"), as glibc does. */
hes_tz_t *hes_tz_posix(const char *tzstring, char *err, size_t errlen);

void hes_tz_free(hes_tz_t *tz);

/* The name it was loaded under, for log lines. The host's zone: the zone /etc/localtime
 * links to ("Etc/UTC"), or "localtime" when it is not a link into HES_TZ_DIR. */
const char *hes_tz_name(const hes_tz_t *tz);

/* Seconds east of UTC in effect at the instant utc (Unix seconds). Any int64_t is accepted
 * (rules are evaluated at a clamped year beyond +-2^58 s). NULL tz: 0. */
int64_t hes_tz_offset(const hes_tz_t *tz, int64_t utc);

/* The local civil time of an instant. */
void hes_tz_to_local(const hes_tz_t *tz, int64_t utc, hes_tz_civil_t *out);

/* The instant of a local civil time (fields normalized, see hes_tz_civil_t). When the local
 * time occurs twice (clocks set back), the earlier instant; when it does not exist (clocks
 * set forward over it), the first instant after the gap, i.e. the transition itself (local
 * midnight skipped by DST -> the instant the day begins). False on out-of-range fields. */
bool hes_tz_local_to_utc(const hes_tz_t *tz, const hes_tz_civil_t *local, int64_t *utc);

/* Writes the local time of utc as "YYYY-MM-DD HH:MM:SS" into buf (at least
 * HES_TZ_FORMAT_SIZE bytes). False (buf "" when len > 0) when len is too small or the year
 * is outside 0..9999. */
bool hes_tz_format(const hes_tz_t *tz, int64_t utc, char *buf, size_t len);

/* Calendar helpers (proleptic Gregorian), shared with the backfill module. */
int64_t hes_tz_days_from_civil(int64_t year, int mon, int day); /* days since 1970-01-01 */
void hes_tz_civil_from_days(int64_t days, int64_t *year, int *mon, int *day);

#endif
