/* tz: reads TZif files and POSIX TZ strings so that the plugin can work in the HES's time
 * zone without setenv("TZ") (see tz.h for why).
 *
 * The file is untrusted in the sense that a broken or hostile file must not crash us: every
 * count is bounded before it sizes anything, every index is checked, offsets are kept to the
 * range RFC 8536 allows, and instants are clamped before calendar arithmetic so that no
 * int64_t overflows on any input. */
#include "config.h"
#include "errbuf.h"

#include "tz.h"
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TZ_TIMES_MAX  100000 /* transitions; real files have < 2,000 */
#define TZ_TYPES_MAX  256
#define TZ_CHARS_MAX  4096
#define TZ_FOOTER_MAX 256
#define TZ_OFF_MIN    (-89999) /* RFC 8536: utoff within (-25 h, 26 h) */
#define TZ_OFF_MAX    93599
/* Beyond this many seconds from the epoch (about 9 billion years) rules are evaluated at the
 * bound: it keeps day * 86400 and friends far from INT64_MAX. */
#define TZ_CLAMP (INT64_C(1) << 58)
#define DAY      INT64_C(86400)

typedef enum { RULE_JULIAN1 = 1, RULE_JULIAN0, RULE_MONTH } tz_rule_kind_t;

typedef struct {
  tz_rule_kind_t kind;
  int a, b, c;  /* Jn: a=n; n: a=n; Mm.w.d: a=m, b=w, c=d */
  int32_t time; /* seconds after local midnight; may be negative or beyond 24 h (v3) */
} tz_rule_t;

typedef struct {
  int32_t std_off; /* seconds east of UTC */
  int32_t dst_off;
  bool has_dst;
  tz_rule_t start, end;
} tz_posix_t;

struct hes_tz {
  char *name;
  size_t ntimes;
  int64_t *times; /* strictly ascending */
  uint8_t *idx;   /* type of each transition */
  size_t ntypes;
  int32_t offs[TZ_TYPES_MAX];
  bool has_posix;
  tz_posix_t posix;
};

/* --- calendar ---------------------------------------------------------------------------- */

static int64_t tz__floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static bool tz__leap(int64_t y) {
  return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int tz__month_days(int64_t y, int m) {
  static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && tz__leap(y) ? 29 : days[m - 1];
}

/* H. Hinnant's days_from_civil: exact for every year that fits. mon 1..12, day any. */
int64_t hes_tz_days_from_civil(int64_t year, int mon, int day) {
  int64_t y = year - (mon <= 2);
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t mp = mon > 2 ? mon - 3 : mon + 9;
  int64_t doy = (153 * mp + 2) / 5;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468 + (day - 1);
}

void hes_tz_civil_from_days(int64_t days, int64_t *year, int *mon, int *day) {
  int64_t z = days + 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  int m = (int)(mp < 10 ? mp + 3 : mp - 9);

  *day = (int)(doy - (153 * mp + 2) / 5 + 1);
  *mon = m;
  *year = yoe + era * 400 + (m <= 2);
}

/* --- POSIX TZ strings ---------------------------------------------------------------------- */

/* A zone abbreviation: 3+ letters, or <...> with letters, digits, '+' and '-'. */
static const char *tz__posix_name(const char *s) {
  const char *start;

  if (*s == '<') {
    start = ++s;
    while ((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
           *s == '+' || *s == '-')
      s++;
    if (*s != '>' || s - start < 3)
      return NULL;
    return s + 1;
  }
  start = s;
  while ((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z'))
    s++;
  return s - start >= 3 ? s : NULL;
}

static const char *tz__posix_num(const char *s, int min, int max, int *out) {
  int v = 0;
  int digits = 0;

  while (*s >= '0' && *s <= '9') {
    if (++digits > 3)
      return NULL;
    v = v * 10 + (*s - '0');
    s++;
  }
  if (digits == 0 || v < min || v > max)
    return NULL;
  *out = v;
  return s;
}

/* [+-]hh[:mm[:ss]], hours up to max_hours; seconds into *out (sign applied). */
static const char *tz__posix_hms(const char *s, int max_hours, int32_t *out) {
  int sign = 1;
  int h;
  int m = 0;
  int sec = 0;

  if (*s == '+' || *s == '-')
    sign = *s++ == '-' ? -1 : 1;
  s = tz__posix_num(s, 0, max_hours, &h);
  if (s == NULL)
    return NULL;
  if (*s == ':') {
    s = tz__posix_num(s + 1, 0, 59, &m);
    if (s == NULL)
      return NULL;
    if (*s == ':') {
      s = tz__posix_num(s + 1, 0, 59, &sec);
      if (s == NULL)
        return NULL;
    }
  }
  *out = sign * (h * 3600 + m * 60 + sec);
  return s;
}

static const char *tz__posix_rule(const char *s, tz_rule_t *r) {
  if (*s == 'J') {
    r->kind = RULE_JULIAN1;
    s = tz__posix_num(s + 1, 1, 365, &r->a);
  } else if (*s == 'M') {
    r->kind = RULE_MONTH;
    s = tz__posix_num(s + 1, 1, 12, &r->a);
    if (s == NULL || *s != '.')
      return NULL;
    s = tz__posix_num(s + 1, 1, 5, &r->b);
    if (s == NULL || *s != '.')
      return NULL;
    s = tz__posix_num(s + 1, 0, 6, &r->c);
  } else {
    r->kind = RULE_JULIAN0;
    s = tz__posix_num(s, 0, 365, &r->a);
  }
  if (s == NULL)
    return NULL;
  r->time = 7200;
  if (*s == '/')
    s = tz__posix_hms(s + 1, 167, &r->time); /* RFC 8536 3.3.1: -167..167 hours */
  return s;
}

static bool tz__posix_parse(const char *s, tz_posix_t *p) {
  int32_t off;

  memset(p, 0, sizeof(*p));
  s = tz__posix_name(s);
  if (s == NULL)
    return false;
  s = tz__posix_hms(s, 24, &off);
  if (s == NULL)
    return false;
  p->std_off = -off; /* POSIX counts west of Greenwich as positive */
  if (*s == '\0')
    return true;
  s = tz__posix_name(s);
  if (s == NULL)
    return false;
  p->has_dst = true;
  p->dst_off = p->std_off + 3600;
  if (*s != ',' && *s != '\0') {
    s = tz__posix_hms(s, 24, &off);
    if (s == NULL)
      return false;
    p->dst_off = -off;
  }
  if (*s == '\0') {
    p->start = (tz_rule_t){RULE_MONTH, 3, 2, 0, 7200};
    p->end = (tz_rule_t){RULE_MONTH, 11, 1, 0, 7200};
    return true;
  }
  if (*s != ',')
    return false;
  s = tz__posix_rule(s + 1, &p->start);
  if (s == NULL || *s != ',')
    return false;
  s = tz__posix_rule(s + 1, &p->end);
  return s != NULL && *s == '\0';
}

/* The instant (UTC) a rule fires in year y, given the offset in effect before it. */
static int64_t tz__rule_utc(const tz_rule_t *r, int64_t y, int32_t off_before) {
  int64_t day;

  switch (r->kind) {
  case RULE_JULIAN1: /* 1..365, February 29 never counted */
    day = hes_tz_days_from_civil(y, 1, 1) + r->a - 1 + (tz__leap(y) && r->a >= 60 ? 1 : 0);
    break;
  case RULE_JULIAN0:
    day = hes_tz_days_from_civil(y, 1, 1) + r->a;
    break;
  default: {
    int64_t first = hes_tz_days_from_civil(y, r->a, 1);
    int wday_first = (int)((first % 7 + 7 + 4) % 7); /* 1970-01-01 was a Thursday */
    int d = (r->c - wday_first + 7) % 7 + (r->b - 1) * 7;
    while (d >= tz__month_days(y, r->a))
      d -= 7;
    day = first + d;
    break;
  }
  }
  return day * DAY + r->time - off_before;
}

static int32_t tz__posix_offset(const tz_posix_t *p, int64_t t) {
  int64_t y;
  int64_t best = INT64_MIN;
  bool dst = false;
  int mon;
  int mday;

  if (!p->has_dst)
    return p->std_off;
  if (t > TZ_CLAMP)
    t = TZ_CLAMP;
  if (t < -TZ_CLAMP)
    t = -TZ_CLAMP;
  hes_tz_civil_from_days(tz__floor_div(t, DAY), &y, &mon, &mday);
  /* The latest rule event at or before t, over the neighbouring years too, so that rules
   * whose transitions cross a year boundary (southern zones, v3 hours beyond 24) work. */
  for (int64_t yy = y - 1; yy <= y + 1; yy++) {
    int64_t s = tz__rule_utc(&p->start, yy, p->std_off);
    int64_t e = tz__rule_utc(&p->end, yy, p->dst_off);

    if (e <= t && e > best) {
      best = e;
      dst = false;
    }
    if (s <= t && s >= best) { /* a tie: DST all year ("0/0,J365/25") */
      best = s;
      dst = true;
    }
  }
  return dst ? p->dst_off : p->std_off;
}

/* --- TZif ------------------------------------------------------------------------------------ */

typedef struct {
  uint32_t isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt;
} tz_counts_t;

static uint32_t tz__be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t tz__be64(const uint8_t *p) {
  uint64_t v = (uint64_t)tz__be32(p) << 32 | tz__be32(p + 4);
  return (int64_t)v; /* two's complement on every platform collectd runs on */
}

static bool tz__header(const uint8_t *p, size_t len, char *version, tz_counts_t *c) {
  if (len < 44 || memcmp(p, "TZif", 4) != 0)
    return false;
  *version = (char)p[4];
  c->isutcnt = tz__be32(p + 20);
  c->isstdcnt = tz__be32(p + 24);
  c->leapcnt = tz__be32(p + 28);
  c->timecnt = tz__be32(p + 32);
  c->typecnt = tz__be32(p + 36);
  c->charcnt = tz__be32(p + 40);
  return true;
}

static size_t tz__block_size(const tz_counts_t *c, size_t timesize) {
  return (size_t)c->timecnt * timesize + c->timecnt + (size_t)c->typecnt * 6 + c->charcnt +
         (size_t)c->leapcnt * (timesize + 4) + c->isstdcnt + c->isutcnt;
}

static bool tz__counts_ok(const tz_counts_t *c, char *err, size_t errlen) {
  if (c->typecnt == 0 || c->typecnt > TZ_TYPES_MAX || c->timecnt > TZ_TIMES_MAX ||
      c->charcnt > TZ_CHARS_MAX || (c->isstdcnt != 0 && c->isstdcnt != c->typecnt) ||
      (c->isutcnt != 0 && c->isutcnt != c->typecnt)) {
    hes_errbuf_printf(err, errlen, "malformed TZif header");
    return false;
  }
  if (c->leapcnt != 0) {
    hes_errbuf_printf(err, errlen, "leap-second zones (\"right/...\") are not supported");
    return false;
  }
  return true;
}

static hes_tz_t *tz__new(const char *name) {
  hes_tz_t *tz = calloc(1, sizeof(*tz));

  if (tz == NULL)
    return NULL;
  tz->name = strdup(name != NULL ? name : "");
  if (tz->name == NULL) {
    free(tz);
    return NULL;
  }
  return tz;
}

void hes_tz_free(hes_tz_t *tz) {
  if (tz == NULL)
    return;
  free(tz->times);
  free(tz->idx);
  free(tz->name);
  free(tz);
}

/* Reads one data block of timesize (4 or 8) byte times into tz. */
static bool tz__block(hes_tz_t *tz, const uint8_t *p, const tz_counts_t *c, size_t timesize,
                      char *err, size_t errlen) {
  const uint8_t *idx = p + (size_t)c->timecnt * timesize;
  const uint8_t *types = idx + c->timecnt;

  tz->ntimes = c->timecnt;
  tz->ntypes = c->typecnt;
  if (c->timecnt > 0) {
    tz->times = malloc(c->timecnt * sizeof(*tz->times));
    tz->idx = malloc(c->timecnt);
    if (tz->times == NULL || tz->idx == NULL) {
      hes_errbuf_printf(err, errlen, "out of memory");
      return false;
    }
  }
  for (uint32_t i = 0; i < c->timecnt; i++) {
    const uint8_t *tp = p + (size_t)i * timesize;
    tz->times[i] = timesize == 8 ? tz__be64(tp) : (int32_t)tz__be32(tp);
    if (i > 0 && tz->times[i] <= tz->times[i - 1]) {
      hes_errbuf_printf(err, errlen, "TZif transition times are not ascending");
      return false;
    }
    tz->idx[i] = idx[i];
    if (idx[i] >= c->typecnt) {
      hes_errbuf_printf(err, errlen, "TZif transition names a type that does not exist");
      return false;
    }
  }
  for (uint32_t i = 0; i < c->typecnt; i++) {
    int32_t off = (int32_t)tz__be32(types + (size_t)i * 6);
    if (off < TZ_OFF_MIN || off > TZ_OFF_MAX || types[i * 6 + 4] > 1 ||
        (c->charcnt > 0 && types[i * 6 + 5] >= c->charcnt)) {
      hes_errbuf_printf(err, errlen, "TZif local time type %u is malformed", (unsigned)i);
      return false;
    }
    tz->offs[i] = off;
  }
  return true;
}

hes_tz_t *hes_tz_parse(const void *buf, size_t len, const char *name, char *err, size_t errlen) {
  const uint8_t *p = buf;
  tz_counts_t c;
  char version;
  size_t size;
  hes_tz_t *tz;

  hes_errbuf_printf(err, errlen, "%s", "");
  if (p == NULL || !tz__header(p, len, &version, &c)) {
    hes_errbuf_printf(err, errlen, "not a TZif file");
    return NULL;
  }
  if (!tz__counts_ok(&c, err, errlen))
    return NULL;
  size = tz__block_size(&c, 4);
  if (len - 44 < size) {
    hes_errbuf_printf(err, errlen, "truncated TZif file");
    return NULL;
  }
  tz = tz__new(name);
  if (tz == NULL) {
    hes_errbuf_printf(err, errlen, "out of memory");
    return NULL;
  }
  if (version == '\0') {
    if (!tz__block(tz, p + 44, &c, 4, err, errlen))
      goto fail;
    return tz;
  }

  /* Version 2+: skip the 32-bit data, read the 64-bit data and the footer. */
  p += 44 + size;
  len -= 44 + size;
  if (!tz__header(p, len, &version, &c)) {
    hes_errbuf_printf(err, errlen, "truncated TZif file (no version 2 header)");
    goto fail;
  }
  if (!tz__counts_ok(&c, err, errlen))
    goto fail;
  size = tz__block_size(&c, 8);
  if (len - 44 < size) {
    hes_errbuf_printf(err, errlen, "truncated TZif file");
    goto fail;
  }
  if (!tz__block(tz, p + 44, &c, 8, err, errlen))
    goto fail;
  p += 44 + size;
  len -= 44 + size;
  {
    char footer[TZ_FOOTER_MAX + 1];
    const uint8_t *nl;

    if (len < 2 || p[0] != '\n') {
      hes_errbuf_printf(err, errlen, "truncated TZif file (no footer)");
      goto fail;
    }
    nl = memchr(p + 1, '\n', len - 1 < TZ_FOOTER_MAX + 1 ? len - 1 : TZ_FOOTER_MAX + 1);
    if (nl == NULL) {
      hes_errbuf_printf(err, errlen, "TZif footer is unterminated or too long");
      goto fail;
    }
    memcpy(footer, p + 1, (size_t)(nl - p - 1));
    footer[nl - p - 1] = '\0';
    if (memchr(footer, '\0', (size_t)(nl - p - 1)) != NULL) {
      hes_errbuf_printf(err, errlen, "TZif footer holds a NUL byte");
      goto fail;
    }
    if (footer[0] != '\0') {
      if (!tz__posix_parse(footer, &tz->posix)) {
        hes_errbuf_printf(err, errlen, "TZif footer \"%s\" is not a TZ string this parser knows",
                          footer);
        goto fail;
      }
      tz->has_posix = true;
    }
  }
  return tz;

fail:
  hes_tz_free(tz);
  return NULL;
}

hes_tz_t *hes_tz_posix(const char *tzstring, char *err, size_t errlen) {
  hes_tz_t *tz;
  tz_posix_t p;

  hes_errbuf_printf(err, errlen, "%s", "");
  if (tzstring == NULL || strlen(tzstring) > TZ_FOOTER_MAX || !tz__posix_parse(tzstring, &p)) {
    hes_errbuf_printf(err, errlen, "\"%s\" is not a POSIX TZ string",
                      tzstring != NULL ? tzstring : "");
    return NULL;
  }
  tz = tz__new(tzstring);
  if (tz == NULL) {
    hes_errbuf_printf(err, errlen, "out of memory");
    return NULL;
  }
  tz->ntypes = 1;
  tz->offs[0] = p.std_off;
  tz->has_posix = true;
  tz->posix = p;
  return tz;
}

static bool tz__name_ok(const char *name) {
  size_t len = strlen(name);

  if (len == 0 || len > HES_TZ_NAME_MAX)
    return false;
  for (const char *s = name; *s != '\0'; s++) {
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
          strchr("/_+-.:,<>", *s) != NULL))
      return false;
  }
  /* A ".." component anywhere; a bare ".." inside a longer word is harmless but pointless. */
  return strstr(name, "..") == NULL;
}

hes_tz_t *hes_tz_load(const char *name, char *err, size_t errlen) {
  char path[sizeof(HES_TZ_DIR) + HES_TZ_NAME_MAX + 2];
  char link[sizeof(HES_TZ_DIR) + HES_TZ_NAME_MAX + 2];
  const char *label;
  uint8_t *buf = NULL;
  size_t len = 0;
  hes_tz_t *tz;
  bool host;
  int rc;

  hes_errbuf_printf(err, errlen, "%s", "");
  if (name != NULL && name[0] == ':')
    name++;
  host = name == NULL || name[0] == '\0';
  if (host) {
    ssize_t n = readlink(HES_TZ_LOCALTIME, link, sizeof(link) - 1);
    /* For log lines: the zone /etc/localtime links to, when it is one of HES_TZ_DIR's. */
    label = "localtime";
    if (n > 0 && (size_t)n > sizeof(HES_TZ_DIR)) {
      link[n] = '\0';
      if (strncmp(link, HES_TZ_DIR "/", sizeof(HES_TZ_DIR)) == 0)
        label = link + sizeof(HES_TZ_DIR);
    }
    snprintf(path, sizeof(path), "%s", HES_TZ_LOCALTIME);
  } else {
    label = name;
    if (!tz__name_ok(name)) {
      hes_errbuf_printf(err, errlen, "time zone \"%.64s\": not a zone name", name);
      return NULL;
    }
    if (name[0] == '/') {
      if (strncmp(name, HES_TZ_DIR "/", sizeof(HES_TZ_DIR)) != 0) {
        hes_errbuf_printf(err, errlen, "time zone \"%s\": an absolute path must be under %s", name,
                          HES_TZ_DIR);
        return NULL;
      }
      snprintf(path, sizeof(path), "%s", name);
    } else {
      snprintf(path, sizeof(path), "%s/%s", HES_TZ_DIR, name);
    }
  }
  char *text = NULL;
  rc = hes_file_read(path, HES_TZ_FILE_MAX, &text, &len);
  buf = (uint8_t *)text;
  if ((rc == ENOENT || rc == ENOTDIR) && !host && name[0] != '/') {
    tz = hes_tz_posix(name, NULL, 0);
    if (tz != NULL)
      return tz;
  }
  if (rc == ENOENT && host) {
    tz = hes_tz_posix("UTC0", err, errlen);
    if (tz != NULL) {
      free(tz->name);
      tz->name = strdup("UTC");
      if (tz->name == NULL) {
        hes_tz_free(tz);
        tz = NULL;
      }
    }
    return tz;
  }
  if (rc != 0) {
    hes_errbuf_printf(err, errlen, "time zone \"%s\": %s: %s", label, path,
                      rc == ENOENT ? "no such zone" : strerror(rc));
    return NULL;
  }
  tz = hes_tz_parse(buf, len, label, err, errlen);
  free(buf);
  if (tz == NULL && err != NULL && errlen > 0) {
    char why[160];
    snprintf(why, sizeof(why), "%s", err);
    hes_errbuf_printf(err, errlen, "time zone \"%s\": %s: %s", label, path, why);
  }
  return tz;
}

const char *hes_tz_name(const hes_tz_t *tz) {
  return tz != NULL ? tz->name : "";
}

int64_t hes_tz_offset(const hes_tz_t *tz, int64_t utc) {
  size_t lo;
  size_t hi;

  if (tz == NULL)
    return 0;
  if (tz->ntimes == 0)
    return tz->has_posix ? tz__posix_offset(&tz->posix, utc) : tz->offs[0];
  if (utc < tz->times[0])
    return tz->offs[0]; /* RFC 8536: type 0 before the first transition */
  if (utc >= tz->times[tz->ntimes - 1] && tz->has_posix)
    return tz__posix_offset(&tz->posix, utc);
  lo = 0; /* times[lo] <= utc < times[hi] */
  hi = tz->ntimes;
  while (hi - lo > 1) {
    size_t mid = lo + (hi - lo) / 2;
    if (tz->times[mid] <= utc)
      lo = mid;
    else
      hi = mid;
  }
  return tz->offs[tz->idx[lo]];
}

void hes_tz_to_local(const hes_tz_t *tz, int64_t utc, hes_tz_civil_t *out) {
  int64_t l;
  int64_t days;
  int64_t secs;

  if (utc > TZ_CLAMP)
    utc = TZ_CLAMP;
  if (utc < -TZ_CLAMP)
    utc = -TZ_CLAMP;
  l = utc + hes_tz_offset(tz, utc);
  days = tz__floor_div(l, DAY);
  secs = l - days * DAY;
  hes_tz_civil_from_days(days, &out->year, &out->mon, &out->day);
  out->hour = (int)(secs / 3600);
  out->min = (int)(secs / 60 % 60);
  out->sec = (int)(secs % 60);
}

/* The local clock reading of instant u. */
static int64_t tz__local(const hes_tz_t *tz, int64_t u) {
  return u + hes_tz_offset(tz, u);
}

bool hes_tz_local_to_utc(const hes_tz_t *tz, const hes_tz_civil_t *local, int64_t *utc) {
  const int64_t field_max = 100000000;
  int64_t y;
  int64_t m0;
  int64_t t0;
  int64_t cand[4];
  int64_t best = INT64_MAX;
  int64_t lo;
  int64_t hi;
  size_t n = 0;

  if (local == NULL || utc == NULL || local->year < -1000000 || local->year > 1000000 ||
      local->mon < -field_max || local->mon > field_max || local->day < -field_max ||
      local->day > field_max || local->hour < -field_max || local->hour > field_max ||
      local->min < -field_max || local->min > field_max || local->sec < -field_max ||
      local->sec > field_max)
    return false;
  m0 = local->mon - 1;
  y = local->year + tz__floor_div(m0, 12);
  m0 -= tz__floor_div(m0, 12) * 12;
  t0 = hes_tz_days_from_civil(y, (int)m0 + 1, 1) * DAY + (int64_t)(local->day - 1) * DAY +
       (int64_t)local->hour * 3600 + (int64_t)local->min * 60 + local->sec;

  /* The offsets that can apply: those in effect a day and more around t0, and those at the
   * instants these give. A valid instant u has u + offset(u) == t0. */
  cand[n++] = hes_tz_offset(tz, t0 - 2 * DAY);
  cand[n++] = hes_tz_offset(tz, t0 + 2 * DAY);
  cand[n++] = hes_tz_offset(tz, t0 - cand[0]);
  cand[n++] = hes_tz_offset(tz, t0 - cand[1]);
  lo = INT64_MAX;
  hi = INT64_MIN;
  for (size_t i = 0; i < n; i++) {
    int64_t u = t0 - cand[i];
    if (tz__local(tz, u) == t0 && u < best)
      best = u;
    if (u < lo)
      lo = u;
    if (u > hi)
      hi = u;
  }
  if (best != INT64_MAX) {
    *utc = best;
    return true;
  }
  /* A gap: the first instant whose local reading is past t0 is the transition. */
  if (!(tz__local(tz, lo) < t0 && tz__local(tz, hi) > t0))
    return false; /* not reachable with offsets that change once within two days */
  while (hi - lo > 1) {
    int64_t mid = lo + (hi - lo) / 2;
    if (tz__local(tz, mid) > t0)
      hi = mid;
    else
      lo = mid;
  }
  *utc = hi;
  return true;
}

bool hes_tz_format(const hes_tz_t *tz, int64_t utc, char *buf, size_t len) {
  hes_tz_civil_t c;

  if (buf == NULL)
    return false;
  if (len > 0)
    buf[0] = '\0';
  if (len < HES_TZ_FORMAT_SIZE)
    return false;
  hes_tz_to_local(tz, utc, &c);
  if (c.year < 0 || c.year > 9999)
    return false;
  snprintf(buf, len, "%04d-%02d-%02d %02d:%02d:%02d", (int)c.year, c.mon, c.day, c.hour, c.min,
           c.sec);
  return true;
}
