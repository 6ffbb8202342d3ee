/* backfill: the bookkeeping of the 4.1 loop (history, re-read, repeat) for one server and
 * one frozen item: freeze times, who is missing, exactly-once recording, dispatch order and
 * the state file. See backfill.h for the contract.
 *
 * A freeze time being tracked is a slot with two bitmaps over the meter indices: `have`
 * (received: queued or collected) and `done` (collected: dispatched, or dropped as late).
 * The slots are few (BackfillPeriods plus those not yet given up) and sorted by time; a
 * meter's last dispatched period is its newest slot with a done bit, so no per-meter array
 * is needed. Queued values live in one flat array, sorted by (meter, time) when taken.
 *
 * Locks: `lock` guards everything; `save_lock` serialises state file writes so that an older
 * snapshot never overwrites a newer one. save() formats under both, writes under save_lock
 * only. */
#include "config.h"
#include "errbuf.h"

#include "backfill.h"
#include "statefile.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STATE_HEADER  "collectd-hes backfill state v1"
#define NOMINAL_DAY   INT64_C(86400)
#define BF_KEEP_ALLOC 4096 /* queue entries kept allocated when the queue runs empty */

typedef struct {
  int64_t t;
  bool given_up;
  uint32_t n_have;
  uint32_t n_done;
  uint64_t *have;
  uint64_t *done;
} bf_slot_t;

struct hes_backfill {
  pthread_mutex_t lock;
  pthread_mutex_t save_lock;
  char *server;
  hes_backfill_kind_t kind;
  const hes_meters_t *meters;
  const hes_tz_t *tz;
  uint32_t nmeters;
  size_t words; /* uint64_t words per bitmap */
  unsigned periods;
  int64_t give_up;
  char *state_path;
  size_t pending_max;
  bool pending_auto; /* pending_max follows the list's size (cfg->pending_max was 0) */
  bool hold_gaps;
  double take_gap;
  double last_take; /* take()'s now when it last handed something out; -INFINITY: never */
  size_t slots_cap;
  uint64_t meters_hash;
  hes_backfill_state_t state;

  bf_slot_t *slots; /* ascending t */
  size_t nslots;

  hes_backfill_entry_t *pending;
  size_t npending;
  size_t pending_alloc;
  hes_backfill_entry_t *taken; /* take()'s result */
  size_t taken_alloc;

  bool dirty;
  int64_t due_cursor;            /* the last older freeze time due() handed out (see there) */
  hes_backfill_stats_t counters; /* only the counter fields are used */
};

/* --- freeze times ---------------------------------------------------------------------------- */

static int64_t bf__mod(int64_t a, int64_t m) {
  int64_t r = a % m;
  return r < 0 ? r + m : r;
}

/* The start of local day (y, m, d) (d may be out of range: normalized). */
static int64_t bf__midnight(const hes_tz_t *tz, int64_t y, int m, int d) {
  hes_tz_civil_t c = {y, m, d, 0, 0, 0};
  int64_t u = 0;

  (void)hes_tz_local_to_utc(tz, &c, &u); /* fields are in range: cannot fail */
  return u;
}

int64_t hes_backfill_floor(hes_backfill_kind_t kind, const hes_tz_t *tz, int64_t t) {
  hes_tz_civil_t c;
  int64_t u;

  /* Keep the calendar far from overflow; freeze times are never near these bounds. */
  if (t > (INT64_C(1) << 50))
    t = INT64_C(1) << 50;
  if (t < -(INT64_C(1) << 50))
    t = -(INT64_C(1) << 50);
  if (kind == HES_BACKFILL_PROFILE)
    return t - bf__mod(t + hes_tz_offset(tz, t), HES_BACKFILL_PROFILE_STEP);
  hes_tz_to_local(tz, t, &c);
  for (int k = 0; k < 3; k++) {
    u = kind == HES_BACKFILL_MONTHLY ? bf__midnight(tz, c.year, c.mon - k, 1)
                                     : bf__midnight(tz, c.year, c.mon, c.day - k);
    if (u <= t)
      return u;
  }
  return u; /* not reached: a day or month starts before any instant in it */
}

/* The freeze time before f (f on the grid). */
static int64_t bf__prev(hes_backfill_kind_t kind, const hes_tz_t *tz, int64_t f) {
  hes_tz_civil_t c;

  if (kind == HES_BACKFILL_PROFILE)
    return hes_backfill_floor(kind, tz, f - 1);
  hes_tz_to_local(tz, f, &c);
  /* A day that did not exist maps onto the next one's start: step further back. */
  for (int k = 1; k < 5; k++) {
    int64_t u = kind == HES_BACKFILL_MONTHLY ? bf__midnight(tz, c.year, c.mon - k, 1)
                                             : bf__midnight(tz, c.year, c.mon, c.day - k);
    if (u < f)
      return u;
  }
  return hes_backfill_floor(kind, tz, f - 1);
}

static bool bf__kind_ok(hes_backfill_kind_t kind) {
  return kind == HES_BACKFILL_DAILY || kind == HES_BACKFILL_MONTHLY || kind == HES_BACKFILL_PROFILE;
}

size_t hes_backfill_periods(hes_backfill_kind_t kind, const hes_tz_t *tz, int64_t now, unsigned n,
                            int64_t *out) {
  int64_t f;

  if (!bf__kind_ok(kind) || n == 0 || n > HES_BACKFILL_PERIODS_MAX || out == NULL)
    return 0;
  f = hes_backfill_floor(kind, tz, now);
  for (unsigned i = 0; i < n; i++) {
    out[n - 1 - i] = f;
    f = bf__prev(kind, tz, f);
  }
  return n;
}

static int64_t bf__nominal(hes_backfill_kind_t kind) {
  switch (kind) {
  case HES_BACKFILL_DAILY:
    return NOMINAL_DAY;
  case HES_BACKFILL_MONTHLY:
    return 31 * NOMINAL_DAY;
  default:
    return HES_BACKFILL_PROFILE_STEP;
  }
}

/* The shortest a period can be (DST days, February), to bound the slots GiveUpAfter keeps. */
static int64_t bf__shortest(hes_backfill_kind_t kind) {
  switch (kind) {
  case HES_BACKFILL_DAILY:
    return 22 * 3600;
  case HES_BACKFILL_MONTHLY:
    return 27 * NOMINAL_DAY;
  default:
    return HES_BACKFILL_PROFILE_STEP - 3600 > 0 ? HES_BACKFILL_PROFILE_STEP - 3600 : 1;
  }
}

/* --- slots ----------------------------------------------------------------------------------- */

static bool bf__bit(const uint64_t *map, uint32_t i) {
  return (map[i / 64] >> (i % 64)) & 1u;
}

static void bf__set(uint64_t *map, uint32_t i) {
  map[i / 64] |= UINT64_C(1) << (i % 64);
}

/* A zeroed bitmap of words words. An empty meter list has none, but calloc(0) may return
 * NULL, which would read as no memory: one word is allocated at least. */
static uint64_t *bf__bitmap(size_t words) {
  return calloc(words > 0 ? words : 1, sizeof(uint64_t));
}

/* The default queue bound for n meters: two periods a meter, plus room for a small list. */
static size_t bf__pending_auto(size_t n) {
  return 2 * n + 1024;
}

static void bf__slot_free(bf_slot_t *s) {
  free(s->have);
  free(s->done);
}

/* Index of the slot of time t, or nslots. Caller holds the lock. */
static size_t bf__find(const hes_backfill_t *b, int64_t t) {
  size_t lo = 0;
  size_t hi = b->nslots;

  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (b->slots[mid].t < t)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < b->nslots && b->slots[lo].t == t ? lo : b->nslots;
}

/* Inserts an empty slot for t (not present). Returns its index, or nslots on no memory or
 * when the slot cap is reached. */
static size_t bf__insert(hes_backfill_t *b, int64_t t) {
  bf_slot_t s = {.t = t};
  size_t pos = 0;

  if (b->nslots >= b->slots_cap)
    return b->nslots;
  s.have = bf__bitmap(b->words);
  s.done = bf__bitmap(b->words);
  if (s.have == NULL || s.done == NULL) {
    bf__slot_free(&s);
    return b->nslots;
  }
  while (pos < b->nslots && b->slots[pos].t < t)
    pos++;
  memmove(&b->slots[pos + 1], &b->slots[pos], (b->nslots - pos) * sizeof(*b->slots));
  b->slots[pos] = s;
  b->nslots++;
  return pos;
}

static void bf__remove(hes_backfill_t *b, size_t i) {
  bf__slot_free(&b->slots[i]);
  memmove(&b->slots[i], &b->slots[i + 1], (b->nslots - i - 1) * sizeof(*b->slots));
  b->nslots--;
}

/* The newest freeze time dispatched for meter m, or INT64_MIN. Caller holds the lock. */
static int64_t bf__last_done(const hes_backfill_t *b, uint32_t m) {
  for (size_t i = b->nslots; i-- > 0;) {
    if (bf__bit(b->slots[i].done, m))
      return b->slots[i].t;
  }
  return INT64_MIN;
}

/* --- new / free / state file ---------------------------------------------------------------------
 */

static uint64_t bf__meters_hash(const hes_meters_t *m, uint32_t n) {
  uint64_t h = UINT64_C(0xcbf29ce484222325);

  for (uint32_t i = 0; i < n; i++) {
    for (const unsigned char *s = (const unsigned char *)hes_meters_at(m, i); *s != '\0'; s++) {
      h ^= *s;
      h *= UINT64_C(0x100000001b3);
    }
    h ^= '\n';
    h *= UINT64_C(0x100000001b3);
  }
  return h;
}

void hes_backfill_free(hes_backfill_t *b) {
  if (b == NULL)
    return;
  for (size_t i = 0; i < b->nslots; i++)
    bf__slot_free(&b->slots[i]);
  free(b->slots);
  free(b->pending);
  free(b->taken);
  free(b->server);
  free(b->state_path);
  pthread_mutex_destroy(&b->lock);
  pthread_mutex_destroy(&b->save_lock);
  free(b);
}

/* A strict decimal int64 of the whole word [s, end). */
static bool bf__int64(const char *s, const char *end, int64_t *out) {
  bool neg = false;
  uint64_t v = 0;

  if (s < end && *s == '-') {
    neg = true;
    s++;
  }
  if (s == end || end - s > 18)
    return false;
  if (*s == '0' && end - s > 1)
    return false;
  for (; s < end; s++) {
    if (*s < '0' || *s > '9')
      return false;
    v = v * 10 + (uint64_t)(*s - '0');
  }
  *out = neg ? -(int64_t)v : (int64_t)v;
  return true;
}

/* The next line (without '\n'), NUL-terminated in place; NULL at the end, for a last line
 * without '\n' or for a line holding a NUL byte. */
static char *bf__line(hes_statefile_lines_t *r) {
  char *line;

  return hes_statefile_line(r, &line) == 1 ? line : NULL;
}

typedef enum { LOAD_OK, LOAD_CORRUPT, LOAD_FOREIGN, LOAD_NOMEM } bf_load_t;

/* Parses the state file's body (what follows the header line, up to end) into b's slots.
 * Caller frees b's slots on failure. why gets the reason. */
static bf_load_t bf__parse(hes_backfill_t *b, char *body, char *end, int64_t *times,
                           bool *same_list, size_t *mapped, size_t *dropped, char *why,
                           size_t whylen) {
  hes_statefile_lines_t r;
  char *line;
  char *s;
  char *e;
  int64_t v;
  int64_t count;
  uint64_t hash;
  size_t ntimes = 0;
  size_t nlines = 0;
  size_t hexlen;
  size_t skip;
  uint64_t *seen;

  if (memchr(body, '\0', (size_t)(end - body)) != NULL) {
    snprintf(why, whylen, "a NUL byte");
    return LOAD_CORRUPT;
  }
  hes_statefile_lines_init(&r, body, end);
  line = bf__line(&r);
  if (line == NULL || strncmp(line, "server ", 7) != 0) {
    snprintf(why, whylen, "no server line");
    return LOAD_CORRUPT;
  }
  if (strcmp(line + 7, b->server) != 0) {
    snprintf(why, whylen, "it belongs to server \"%.64s\"", line + 7);
    return LOAD_FOREIGN;
  }
  line = bf__line(&r);
  if (line == NULL || strncmp(line, "cgcode ", 7) != 0 ||
      !bf__int64(line + 7, line + strlen(line), &v)) {
    snprintf(why, whylen, "no cgcode line");
    return LOAD_CORRUPT;
  }
  if (v != (int64_t)b->kind) {
    snprintf(why, whylen, "it belongs to item cgcode %" PRId64, v);
    return LOAD_FOREIGN;
  }
  line = bf__line(&r);
  if (line == NULL || strncmp(line, "meters ", 7) != 0 || (s = strchr(line + 7, ' ')) == NULL ||
      !bf__int64(line + 7, s, &count) || count < 0 || strlen(s + 1) != 16 ||
      strspn(s + 1, "0123456789abcdef") != 16) {
    snprintf(why, whylen, "bad meters line");
    return LOAD_CORRUPT;
  }
  hash = strtoull(s + 1, NULL, 16);
  *same_list = hash == b->meters_hash && count == (int64_t)b->nmeters;
  line = bf__line(&r);
  if (line == NULL || strncmp(line, "times", 5) != 0 || (line[5] != ' ' && line[5] != '\0')) {
    snprintf(why, whylen, "bad times line");
    return LOAD_CORRUPT;
  }
  for (s = line + 5; *s == ' '; s = e) {
    s++;
    e = s;
    while (*e != ' ' && *e != '\0')
      e++;
    if (ntimes >= HES_BACKFILL_SLOTS_MAX || !bf__int64(s, e, &v) ||
        (ntimes > 0 && v <= times[ntimes - 1])) {
      snprintf(why, whylen, "bad times line");
      return LOAD_CORRUPT;
    }
    if (hes_backfill_floor(b->kind, b->tz, v) != v) {
      snprintf(why, whylen,
               "freeze time %" PRId64 " is not one of this item in zone %s "
               "(TimeZone changed?)",
               v, hes_tz_name(b->tz));
      return LOAD_FOREIGN;
    }
    times[ntimes++] = v;
  }
  if (*s != '\0') {
    snprintf(why, whylen, "bad times line");
    return LOAD_CORRUPT;
  }
  /* GiveUpAfter may have been shortened since: the oldest times beyond what this
   * configuration keeps would be given up at once, so they are not loaded. */
  skip = ntimes > b->slots_cap ? ntimes - b->slots_cap : 0;
  for (size_t i = skip; i < ntimes; i++) {
    if (bf__insert(b, times[i]) == b->nslots)
      return LOAD_NOMEM;
  }
  hexlen = (ntimes + 3) / 4;
  seen = bf__bitmap(b->words);
  if (seen == NULL)
    return LOAD_NOMEM;
  for (;;) {
    uint32_t m;
    char *sp;

    line = bf__line(&r);
    if (line == NULL) {
      snprintf(why, whylen, "no end line");
      free(seen);
      return LOAD_CORRUPT;
    }
    if (strncmp(line, "end ", 4) == 0)
      break;
    sp = strchr(line, ' ');
    if (sp == NULL || strlen(sp + 1) != hexlen || strspn(sp + 1, "0123456789abcdef") != hexlen) {
      snprintf(why, whylen, "line %zu is malformed", nlines + 6);
      free(seen);
      return LOAD_CORRUPT;
    }
    *sp = '\0';
    if (!hes_meter_is_valid(line)) {
      snprintf(why, whylen, "line %zu: bad meter number", nlines + 6);
      free(seen);
      return LOAD_CORRUPT;
    }
    nlines++;
    /* unused bits of the last nibble must be zero */
    if (ntimes % 4 != 0) {
      char c = sp[hexlen];
      int nib = c <= '9' ? c - '0' : c - 'a' + 10;
      if (nib >> (ntimes % 4) != 0) {
        snprintf(why, whylen, "line %zu: mask beyond the times", nlines + 5);
        free(seen);
        return LOAD_CORRUPT;
      }
    }
    m = hes_meters_find(b->meters, line, strlen(line));
    if (m == HES_METER_NONE) {
      (*dropped)++;
      continue;
    }
    if (bf__bit(seen, m)) {
      snprintf(why, whylen, "meter %s listed twice", line);
      free(seen);
      return LOAD_CORRUPT;
    }
    bf__set(seen, m);
    (*mapped)++;
    for (size_t i = 0; i < ntimes; i++) {
      char c = sp[1 + i / 4];
      int nib = c <= '9' ? c - '0' : c - 'a' + 10;
      if (i >= skip && ((nib >> (i % 4)) & 1)) {
        bf_slot_t *sl = &b->slots[i - skip];
        bf__set(sl->have, m);
        bf__set(sl->done, m);
        sl->n_have++;
        sl->n_done++;
      }
    }
  }
  free(seen);
  if (!bf__int64(line + 4, line + strlen(line), &v) || v != (int64_t)nlines) {
    snprintf(why, whylen, "the end line counts %s meter lines, the file has %zu", line + 4, nlines);
    return LOAD_CORRUPT;
  }
  if (r.p != r.end) {
    snprintf(why, whylen, "data after the end line");
    return LOAD_CORRUPT;
  }
  if (nlines > 0 && *mapped == 0) {
    snprintf(why, whylen, "none of its %zu meters is configured", nlines);
    return LOAD_FOREIGN;
  }
  return LOAD_OK;
}

static void bf__clear_slots(hes_backfill_t *b) {
  for (size_t i = 0; i < b->nslots; i++)
    bf__slot_free(&b->slots[i]);
  b->nslots = 0;
}

/* Loads the state file; sets b->state and err. Returns false only on no memory. */
static bool bf__load(hes_backfill_t *b, char *err, size_t errlen) {
  /* The largest file a legitimate state can make, with room for removed meters. */
  size_t max = (size_t)1 << 20;
  char *text = NULL;
  size_t len = 0;
  bool same = false;
  size_t mapped = 0;
  size_t dropped = 0;
  char *body = NULL;
  char why[200] = "";
  char aside[PATH_MAX + 64];
  bf_load_t rc = LOAD_CORRUPT;

  max += ((size_t)b->nmeters * 2 + 1024) * (HES_METER_MAX_LEN + 4 + (b->slots_cap + 3) / 4);
  max += (size_t)b->slots_cap * 21;
  b->state = HES_BACKFILL_STATE_NONE;
  if (b->state_path == NULL)
    return true;
  switch (hes_statefile_read(b->state_path, STATE_HEADER, "backfill state file", max, &text, &len,
                             &body, why, sizeof(why))) {
  case HES_STATEFILE_NONE:
    return true;
  case HES_STATEFILE_NOMEM:
    return false;
  case HES_STATEFILE_BAD:
    rc = LOAD_CORRUPT;
    break;
  case HES_STATEFILE_OK: {
    int64_t *times = malloc(HES_BACKFILL_SLOTS_MAX * sizeof(*times));
    rc = times == NULL
             ? LOAD_NOMEM
             : bf__parse(b, body, text + len, times, &same, &mapped, &dropped, why, sizeof(why));
    free(times);
    break;
  }
  }
  free(text);
  if (rc == LOAD_NOMEM)
    return false;
  if (rc == LOAD_OK) {
    b->state = same ? HES_BACKFILL_STATE_OK : HES_BACKFILL_STATE_CHANGED;
    if (!same)
      hes_errbuf_printf(
          err, errlen,
          "backfill state %s: the meter list changed since: %zu meters kept, %zu no longer "
          "configured dropped, %zu new",
          b->state_path, mapped, dropped, (size_t)b->nmeters - mapped);
    return true;
  }
  bf__clear_slots(b);
  b->state = rc == LOAD_FOREIGN ? HES_BACKFILL_STATE_FOREIGN : HES_BACKFILL_STATE_CORRUPT;
  hes_statefile_set_aside(b->state_path, rc == LOAD_FOREIGN ? ".foreign" : ".corrupt", aside,
                          sizeof(aside));
  hes_errbuf_printf(err, errlen, "backfill state %s is %s (%s): %s; starting without it",
                    b->state_path, rc == LOAD_FOREIGN ? "foreign" : "corrupt", why, aside);
  b->dirty = true; /* write a fresh one, so the set-aside file is not looked at again */
  return true;
}

int64_t hes_backfill_give_up_max(hes_backfill_kind_t kind, unsigned periods) {
  return ((int64_t)HES_BACKFILL_SLOTS_MAX - (int64_t)periods - 2) * bf__shortest(kind);
}

hes_backfill_t *hes_backfill_new(const hes_backfill_config_t *cfg, char *err, size_t errlen) {
  hes_backfill_t *b;
  size_t nmeters;
  int64_t shortest;

  hes_errbuf_printf(err, errlen, "%s", "");
  if (cfg == NULL || cfg->server == NULL || cfg->server[0] == '\0' ||
      strpbrk(cfg->server, "\r\n") != NULL) {
    hes_errbuf_printf(err, errlen, "backfill: a server name without line breaks is required");
    return NULL;
  }
  if (!bf__kind_ok(cfg->kind) || cfg->meters == NULL || cfg->tz == NULL) {
    hes_errbuf_printf(err, errlen, "backfill: bad item, meters or time zone");
    return NULL;
  }
  /* An empty list is valid: a server whose meters come only from DCU archives has none until
   * the first archive refresh; hes_backfill_set_meters then hands the joiners their periods. */
  nmeters = hes_meters_count(cfg->meters);
  if (nmeters >= UINT32_MAX) {
    hes_errbuf_printf(err, errlen, "backfill: too many meters");
    return NULL;
  }
  if (!(cfg->take_gap >= 0) || !isfinite(cfg->take_gap)) { /* also NaN */
    hes_errbuf_printf(err, errlen, "backfill: take_gap %g is not a number of seconds >= 0",
                      cfg->take_gap);
    return NULL;
  }
  if (cfg->periods == 0 || cfg->periods > HES_BACKFILL_PERIODS_MAX) {
    hes_errbuf_printf(err, errlen, "BackfillPeriods %u is out of range (1..%d)", cfg->periods,
                      HES_BACKFILL_PERIODS_MAX);
    return NULL;
  }
  shortest = bf__shortest(cfg->kind);
  if (cfg->give_up < 0 ||
      cfg->give_up / shortest + cfg->periods + 2 > (int64_t)HES_BACKFILL_SLOTS_MAX) {
    hes_errbuf_printf(err, errlen,
                      "GiveUpAfter %" PRId64 " is out of range (0..%" PRId64 " for this item)",
                      cfg->give_up, hes_backfill_give_up_max(cfg->kind, cfg->periods));
    return NULL;
  }
  b = calloc(1, sizeof(*b));
  if (b == NULL) {
    hes_errbuf_printf(err, errlen, "backfill: out of memory");
    return NULL;
  }
  pthread_mutex_init(&b->lock, NULL);
  pthread_mutex_init(&b->save_lock, NULL);
  b->due_cursor = INT64_MIN;
  b->kind = cfg->kind;
  b->meters = cfg->meters;
  b->tz = cfg->tz;
  b->nmeters = (uint32_t)nmeters;
  b->words = (nmeters + 63) / 64;
  b->periods = cfg->periods;
  b->give_up =
      cfg->give_up > 0 ? cfg->give_up : (int64_t)(cfg->periods + 1) * bf__nominal(cfg->kind);
  b->pending_auto = cfg->pending_max == 0;
  b->pending_max = b->pending_auto ? bf__pending_auto(nmeters) : cfg->pending_max;
  b->hold_gaps = cfg->hold_gaps;
  b->take_gap = cfg->take_gap;
  b->last_take = -INFINITY;
  b->slots_cap = (size_t)(b->give_up / shortest) + cfg->periods + 2;
  if (b->slots_cap > HES_BACKFILL_SLOTS_MAX)
    b->slots_cap = HES_BACKFILL_SLOTS_MAX;
  b->meters_hash = bf__meters_hash(cfg->meters, b->nmeters);
  b->server = strdup(cfg->server);
  b->state_path = cfg->state_path != NULL ? strdup(cfg->state_path) : NULL;
  b->slots = calloc(b->slots_cap + 1, sizeof(*b->slots));
  if (b->server == NULL || (cfg->state_path != NULL && b->state_path == NULL) || b->slots == NULL ||
      !bf__load(b, err, errlen)) {
    hes_backfill_free(b);
    hes_errbuf_printf(err, errlen, "backfill: out of memory");
    return NULL;
  }
  return b;
}

hes_backfill_state_t hes_backfill_state(const hes_backfill_t *b) {
  return b != NULL ? b->state : HES_BACKFILL_STATE_NONE;
}

const char *hes_backfill_state_string(hes_backfill_state_t s) {
  switch (s) {
  case HES_BACKFILL_STATE_NONE:
    return "none";
  case HES_BACKFILL_STATE_OK:
    return "ok";
  case HES_BACKFILL_STATE_CHANGED:
    return "meter list changed";
  case HES_BACKFILL_STATE_CORRUPT:
    return "corrupt";
  case HES_BACKFILL_STATE_FOREIGN:
    return "foreign";
  }
  return "unknown";
}

/* --- the round ------------------------------------------------------------------------------ */

void hes_backfill_advance(hes_backfill_t *b, int64_t now) {
  int64_t *window;
  size_t n;

  if (b == NULL)
    return;
  window = malloc(b->periods * sizeof(*window));
  if (window == NULL)
    return; /* the next round tries again */
  n = hes_backfill_periods(b->kind, b->tz, now, b->periods, window);
  pthread_mutex_lock(&b->lock);
  /* Give up first, so that the cap leaves room for the new ones. */
  for (size_t i = 0; i < b->nslots;) {
    bf_slot_t *s = &b->slots[i];
    if (!s->given_up && now - s->t > b->give_up) {
      s->given_up = true;
      b->counters.given_up += b->nmeters - s->n_have;
      b->dirty = true;
    }
    if (s->given_up && s->n_have == s->n_done) {
      bf__remove(b, i);
      continue;
    }
    i++;
  }
  for (size_t i = 0; i < n; i++) {
    if (now - window[i] > b->give_up || bf__find(b, window[i]) != b->nslots)
      continue;
    while (b->nslots >= b->slots_cap) { /* only with odd calendars: drop the oldest */
      if (!b->slots[0].given_up)
        b->counters.given_up += b->nmeters - b->slots[0].n_have;
      bf__remove(b, 0);
    }
    if (bf__insert(b, window[i]) != b->nslots)
      b->dirty = true;
  }
  pthread_mutex_unlock(&b->lock);
  free(window);
}

/* When more freeze times are due than a round may ask for, which ones? Oldest first (as
 * before) let max old periods whose meters never answer take every round until they are given
 * up, so that a newer period was never asked at all: the newest bill went missing behind the
 * oldest silent ones. Newest first alone would do the same to the old ones, which are given
 * up unasked. So the round is split: half of it goes to the newest due periods (the ones a
 * utility bills next, asked every round), the other half rotates over the older ones from
 * where the previous round stopped, so every due period is asked at least once in every
 * ceil(older / half) rounds, however many stay silent. The result stays oldest first: the
 * loop reads in that order, and take() dispatches a meter's periods in that order anyway. */
size_t hes_backfill_due(hes_backfill_t *b, int64_t *times, size_t max) {
  size_t n = 0;
  size_t ndue = 0;

  if (b == NULL || times == NULL)
    return 0;
  pthread_mutex_lock(&b->lock);
  for (size_t i = 0; i < b->nslots; i++)
    ndue += !b->slots[i].given_up && b->slots[i].n_have < b->nmeters;
  if (ndue <= max) {
    for (size_t i = 0; i < b->nslots; i++) {
      if (!b->slots[i].given_up && b->slots[i].n_have < b->nmeters)
        times[n++] = b->slots[i].t;
    }
  } else {
    size_t newest = max / 2;
    size_t older = ndue - newest; /* > max - newest >= 1 */
    size_t rot = max - newest;
    size_t start = 0; /* the first older one after the cursor, counted among the older ones */
    size_t k = 0;

    for (size_t i = 0; i < b->nslots && k < older; i++) {
      if (b->slots[i].given_up || b->slots[i].n_have >= b->nmeters)
        continue;
      if (b->slots[i].t <= b->due_cursor)
        start = k + 1;
      k++;
    }
    if (start >= older)
      start = 0;
    k = 0;
    for (size_t i = 0; i < b->nslots; i++) {
      if (b->slots[i].given_up || b->slots[i].n_have >= b->nmeters)
        continue;
      /* among the older ones, the rot that follow the cursor (wrapping); then the newest */
      if (k >= older || (k + older - start) % older < rot)
        times[n++] = b->slots[i].t;
      if (k < older && (k + older - start) % older == rot - 1)
        b->due_cursor = b->slots[i].t;
      k++;
    }
  }
  pthread_mutex_unlock(&b->lock);
  return n;
}

/* The word w of "missing at t" (or at any due slot); caller holds the lock. */
static uint64_t bf__missing_word(const hes_backfill_t *b, size_t slot, size_t w) {
  uint64_t miss = 0;

  if (slot != b->nslots) {
    miss = ~b->slots[slot].have[w];
  } else {
    for (size_t i = 0; i < b->nslots; i++) {
      if (!b->slots[i].given_up)
        miss |= ~b->slots[i].have[w];
    }
  }
  if (w + 1 == b->words && b->nmeters % 64 != 0)
    miss &= (UINT64_C(1) << (b->nmeters % 64)) - 1;
  return miss;
}

/* The slot of freeze_time, nslots for HES_BACKFILL_ANY, or SIZE_MAX when not due. */
static size_t bf__due_slot(const hes_backfill_t *b, int64_t freeze_time) {
  size_t i;

  if (freeze_time == HES_BACKFILL_ANY)
    return b->nslots;
  i = bf__find(b, freeze_time);
  return i == b->nslots || b->slots[i].given_up ? SIZE_MAX : i;
}

uint32_t hes_backfill_next_missing(hes_backfill_t *b, int64_t freeze_time, uint32_t from) {
  uint32_t found = HES_METER_NONE;
  size_t slot;

  if (b == NULL)
    return HES_METER_NONE;
  pthread_mutex_lock(&b->lock);
  slot = bf__due_slot(b, freeze_time);
  if (slot != SIZE_MAX && from < b->nmeters) {
    size_t w = from / 64;
    uint64_t miss = bf__missing_word(b, slot, w) & (~UINT64_C(0) << (from % 64));
    for (;;) {
      if (miss != 0) {
        found = (uint32_t)(w * 64 + (size_t)__builtin_ctzll(miss));
        break;
      }
      if (++w >= b->words)
        break;
      miss = bf__missing_word(b, slot, w);
    }
  }
  pthread_mutex_unlock(&b->lock);
  return found;
}

size_t hes_backfill_missing_count(hes_backfill_t *b, int64_t freeze_time) {
  size_t n = 0;
  size_t slot;

  if (b == NULL)
    return 0;
  pthread_mutex_lock(&b->lock);
  slot = bf__due_slot(b, freeze_time);
  if (slot != SIZE_MAX && slot != b->nslots) {
    n = b->nmeters - b->slots[slot].n_have;
  } else if (slot == b->nslots) {
    for (size_t w = 0; w < b->words; w++)
      n += (size_t)__builtin_popcountll(bf__missing_word(b, slot, w));
  }
  pthread_mutex_unlock(&b->lock);
  return n;
}

size_t hes_backfill_room(hes_backfill_t *b) {
  size_t n;

  if (b == NULL)
    return 0;
  pthread_mutex_lock(&b->lock);
  n = b->pending_max > b->npending ? b->pending_max - b->npending : 0;
  pthread_mutex_unlock(&b->lock);
  return n;
}

/* hes_backfill_record with b->lock held; meter < b->nmeters. */
static hes_backfill_record_t bf__record(hes_backfill_t *b, uint32_t meter, int64_t freeze_time,
                                        const hes_backfill_value_t *values, size_t n) {
  hes_backfill_record_t rc;
  hes_backfill_entry_t *e;
  bf_slot_t *s;
  size_t i;

  i = bf__due_slot(b, freeze_time);
  if (i == SIZE_MAX || i == b->nslots) {
    b->counters.not_due++;
    rc = HES_BACKFILL_NOT_DUE;
    goto out;
  }
  s = &b->slots[i];
  if (bf__bit(s->have, meter)) {
    b->counters.duplicates++;
    rc = HES_BACKFILL_DUPLICATE;
    goto out;
  }
  if (freeze_time < bf__last_done(b, meter)) {
    bf__set(s->have, meter);
    bf__set(s->done, meter);
    s->n_have++;
    s->n_done++;
    b->counters.dropped_late++;
    b->dirty = true;
    rc = HES_BACKFILL_LATE;
    goto out;
  }
  if (b->npending >= b->pending_max) {
    b->counters.full++;
    rc = HES_BACKFILL_FULL;
    goto out;
  }
  if (b->npending == b->pending_alloc) {
    size_t want = b->pending_alloc ? b->pending_alloc * 2 : 256;
    hes_backfill_entry_t *p;
    if (want > b->pending_max)
      want = b->pending_max;
    p = realloc(b->pending, want * sizeof(*p));
    if (p == NULL) {
      b->counters.full++;
      rc = HES_BACKFILL_FULL;
      goto out;
    }
    b->pending = p;
    b->pending_alloc = want;
  }
  e = &b->pending[b->npending++];
  memset(e, 0, sizeof(*e));
  e->freeze_time = freeze_time;
  e->meter = meter;
  e->n = (uint32_t)n;
  if (n > 0)
    memcpy(e->values, values, n * sizeof(*values));
  bf__set(s->have, meter);
  s->n_have++;
  rc = HES_BACKFILL_NEW;
out:
  return rc;
}

hes_backfill_record_t hes_backfill_record(hes_backfill_t *b, uint32_t meter, int64_t freeze_time,
                                          const hes_backfill_value_t *values, size_t n) {
  if (b == NULL || n > HES_BACKFILL_VALUES_MAX || (values == NULL && n > 0))
    return HES_BACKFILL_EINVAL;
  pthread_mutex_lock(&b->lock);
  hes_backfill_record_t rc =
      meter < b->nmeters ? bf__record(b, meter, freeze_time, values, n) : HES_BACKFILL_EINVAL;
  pthread_mutex_unlock(&b->lock);
  return rc;
}

/* True when meter has not yet been received at a due freeze time older than t. */
static bool bf__gap_before(const hes_backfill_t *b, uint32_t meter, int64_t t) {
  for (size_t i = 0; i < b->nslots && b->slots[i].t < t; i++)
    if (!b->slots[i].given_up && !bf__bit(b->slots[i].have, meter))
      return true;
  return false;
}

static int bf__entry_cmp(const void *pa, const void *pb) {
  const hes_backfill_entry_t *a = pa;
  const hes_backfill_entry_t *c = pb;

  if (a->meter != c->meter)
    return a->meter < c->meter ? -1 : 1;
  if (a->freeze_time != c->freeze_time)
    return a->freeze_time < c->freeze_time ? -1 : 1;
  return 0;
}

size_t hes_backfill_take(hes_backfill_t *b, double now, const hes_backfill_entry_t **out) {
  size_t n = 0;
  size_t keep = 0;
  uint32_t prev_meter = HES_METER_NONE;

  if (b == NULL || out == NULL)
    return 0;
  *out = NULL;
  pthread_mutex_lock(&b->lock);
  /* Too soon after the last hand-out: a meter's next period would follow its previous one
   * into collectd's write queue back to back (see backfill.h). */
  if (now - b->last_take < b->take_gap)
    goto done;
  /* A backlog grows the queue and the result to its size; give that back once it is gone
   * (the previous result is no longer the caller's). */
  if (b->taken_alloc > BF_KEEP_ALLOC && b->taken_alloc > 2 * b->npending) {
    free(b->taken);
    b->taken = NULL;
    b->taken_alloc = 0;
  }
  if (b->npending == 0) {
    if (b->pending_alloc > BF_KEEP_ALLOC) {
      free(b->pending);
      b->pending = NULL;
      b->pending_alloc = 0;
    }
    goto done;
  }
  qsort(b->pending, b->npending, sizeof(*b->pending), bf__entry_cmp);
  if (b->taken_alloc < b->npending) {
    /* at most one per meter: never more than the meters or the queue */
    size_t want = b->npending < b->nmeters ? b->npending : b->nmeters;
    hes_backfill_entry_t *t =
        want > b->taken_alloc ? realloc(b->taken, want * sizeof(*t)) : b->taken;
    if (t == NULL)
      goto done; /* nothing marked: the next round tries again */
    b->taken = t;
    if (want > b->taken_alloc)
      b->taken_alloc = want;
  }
  for (size_t i = 0; i < b->npending; i++) {
    hes_backfill_entry_t e = b->pending[i];
    size_t slot;
    if (i > 0 && e.meter == prev_meter) {
      b->pending[keep++] = e; /* a later period of the same meter: next round */
      continue;
    }
    prev_meter = e.meter;
    if (b->hold_gaps && bf__gap_before(b, e.meter, e.freeze_time)) {
      /* An older period of this meter is still being chased: dispatching this one now would
       * make the older one "too old" for collectd when it comes. Hold it until the older
       * one arrives or is given up. */
      b->pending[keep++] = e;
      continue;
    }
    /* A queued period keeps its slot, except when advance() had to drop slots over the
     * cap: then there is nothing to mark, but the values are still good. */
    slot = bf__find(b, e.freeze_time);
    if (slot != b->nslots) {
      bf__set(b->slots[slot].done, e.meter);
      b->slots[slot].n_done++;
    }
    b->taken[n++] = e;
  }
  b->npending = keep;
  b->counters.dispatched += n;
  b->dirty = true;
  if (n > 0)
    b->last_take = now;
  /* given-up slots whose last queued period went out are no longer needed */
  for (size_t i = 0; i < b->nslots;) {
    if (b->slots[i].given_up && b->slots[i].n_have == b->slots[i].n_done) {
      bf__remove(b, i);
      continue;
    }
    i++;
  }
done:
  *out = n > 0 ? b->taken : NULL;
  pthread_mutex_unlock(&b->lock);
  return n;
}

void hes_backfill_stats(hes_backfill_t *b, hes_backfill_stats_t *out) {
  if (out == NULL)
    return;
  memset(out, 0, sizeof(*out));
  if (b == NULL)
    return;
  pthread_mutex_lock(&b->lock);
  *out = b->counters;
  out->expected = out->collected = out->pending = out->missing = 0;
  out->freeze_times = 0;
  for (size_t i = 0; i < b->nslots; i++) {
    const bf_slot_t *s = &b->slots[i];
    if (s->given_up)
      continue;
    out->freeze_times++;
    out->expected += b->nmeters;
    out->collected += s->n_done;
    out->pending += s->n_have - s->n_done;
  }
  out->missing = out->expected - out->collected - out->pending;
  pthread_mutex_unlock(&b->lock);
}

size_t hes_backfill_memory(hes_backfill_t *b) {
  size_t n;

  if (b == NULL)
    return 0;
  pthread_mutex_lock(&b->lock);
  n = sizeof(*b) + (b->slots_cap + 1) * sizeof(*b->slots) +
      b->nslots * 2 * b->words * sizeof(uint64_t) +
      (b->pending_alloc + b->taken_alloc) * sizeof(hes_backfill_entry_t);
  pthread_mutex_unlock(&b->lock);
  return n;
}

/* --- save
 * ----------------------------------------------------------------------------------------- */

/* The state file text; caller holds the lock. Only slots still chased are written. */
static char *bf__text(const hes_backfill_t *b, size_t *len) {
  size_t nt = 0;
  size_t hexlen;
  size_t cap;
  size_t n;
  size_t lines = 0;
  char *buf;
  size_t *idx = malloc((b->nslots + 1) * sizeof(*idx));
  static const char hex[] = "0123456789abcdef";

  if (idx == NULL)
    return NULL;
  for (size_t i = 0; i < b->nslots; i++) {
    if (!b->slots[i].given_up)
      idx[nt++] = i;
  }
  hexlen = (nt + 3) / 4;
  cap = sizeof(STATE_HEADER) + strlen(b->server) + 128 + nt * 21 +
        (size_t)b->nmeters * (HES_METER_MAX_LEN + 3 + hexlen) + 32;
  buf = malloc(cap);
  if (buf == NULL) {
    free(idx);
    return NULL;
  }
  n = (size_t)snprintf(buf, cap,
                       "%s\nserver %s\ncgcode %d\nmeters %" PRIu32 " %016" PRIx64 "\ntimes",
                       STATE_HEADER, b->server, (int)b->kind, b->nmeters, b->meters_hash);
  for (size_t k = 0; k < nt; k++)
    n += (size_t)snprintf(buf + n, cap - n, " %" PRId64, b->slots[idx[k]].t);
  buf[n++] = '\n';
  for (uint32_t m = 0; m < b->nmeters; m++) {
    bool any = false;
    const char *name;
    size_t nl;
    for (size_t k = 0; k < nt && !any; k++)
      any = bf__bit(b->slots[idx[k]].done, m);
    if (!any)
      continue;
    name = hes_meters_at(b->meters, m);
    nl = strlen(name);
    memcpy(buf + n, name, nl);
    n += nl;
    buf[n++] = ' ';
    for (size_t h = 0; h < hexlen; h++) {
      int nib = 0;
      for (size_t k = h * 4; k < h * 4 + 4 && k < nt; k++)
        nib |= bf__bit(b->slots[idx[k]].done, m) << (k - h * 4);
      buf[n++] = hex[nib];
    }
    buf[n++] = '\n';
    lines++;
  }
  n += (size_t)snprintf(buf + n, cap - n, "end %zu\n", lines);
  free(idx);
  *len = n;
  return buf;
}

int hes_backfill_save(hes_backfill_t *b) {
  bool dirty;
  char *text = NULL;
  size_t len = 0;
  int rc;

  if (b == NULL)
    return EINVAL;
  if (b->state_path == NULL)
    return 0;
  pthread_mutex_lock(&b->save_lock);
  pthread_mutex_lock(&b->lock);
  if (b->dirty) {
    text = bf__text(b, &len);
    if (text != NULL)
      b->dirty = false;
  }
  /* Decided under the lock: once it is released, the read thread may set dirty again, and
   * reading it then would be a data race (and could report ENOMEM for a save that had
   * nothing to do). */
  dirty = b->dirty;
  pthread_mutex_unlock(&b->lock);
  if (text == NULL) {
    pthread_mutex_unlock(&b->save_lock);
    return dirty ? ENOMEM : 0;
  }
  rc = hes_statefile_write(b->state_path, text, len);
  free(text);
  if (rc != 0) {
    pthread_mutex_lock(&b->lock);
    b->dirty = true;
    pthread_mutex_unlock(&b->lock);
  }
  pthread_mutex_unlock(&b->save_lock);
  return rc;
}

const char *hes_backfill_record_string(hes_backfill_record_t r) {
  switch (r) {
  case HES_BACKFILL_NEW:
    return "new";
  case HES_BACKFILL_DUPLICATE:
    return "duplicate";
  case HES_BACKFILL_LATE:
    return "late (a newer period was already dispatched)";
  case HES_BACKFILL_NOT_DUE:
    return "not a freeze time being collected";
  case HES_BACKFILL_FULL:
    return "queue full";
  case HES_BACKFILL_EINVAL:
    return "invalid argument";
  }
  return "unknown";
}

hes_backfill_record_t hes_backfill_record_dev(hes_backfill_t *b, const char *dev, size_t len,
                                              int64_t freeze_time,
                                              const hes_backfill_value_t *values, size_t n) {
  if (b == NULL || dev == NULL || n > HES_BACKFILL_VALUES_MAX || (values == NULL && n > 0))
    return HES_BACKFILL_EINVAL;
  /* The lookup and the record under one lock: hes_backfill_set_meters may run on another
   * thread. */
  pthread_mutex_lock(&b->lock);
  uint32_t m = hes_meters_find(b->meters, dev, len);
  hes_backfill_record_t rc =
      m < b->nmeters ? bf__record(b, m, freeze_time, values, n) : HES_BACKFILL_EINVAL;
  pthread_mutex_unlock(&b->lock);
  return rc;
}

int hes_backfill_set_meters(hes_backfill_t *b, const hes_meters_t *meters) {
  size_t count = meters != NULL ? hes_meters_count(meters) : 0;
  if (b == NULL || meters == NULL || count >= UINT32_MAX)
    return EINVAL;
  size_t words = (count + 63) / 64;
  /* new index -> old index, or NONE; an empty list (all left) has no entries */
  uint32_t *map = malloc((count ? count : 1) * sizeof(*map));
  if (map == NULL)
    return ENOMEM;
  pthread_mutex_lock(&b->lock);
  /* every slot's new have and done bitmaps, allocated before anything changes */
  uint64_t **maps = calloc(b->nslots ? b->nslots * 2 : 1, sizeof(*maps));
  uint32_t *back = malloc((b->nmeters ? b->nmeters : 1) * sizeof(*back)); /* old -> new */
  bool ok = maps != NULL && back != NULL;
  for (size_t k = 0; ok && k < b->nslots * 2; k++)
    ok = (maps[k] = bf__bitmap(words)) != NULL;
  if (!ok) {
    pthread_mutex_unlock(&b->lock);
    for (size_t k = 0; maps != NULL && k < b->nslots * 2; k++)
      free(maps[k]);
    free(maps);
    free(back);
    free(map);
    return ENOMEM; /* nothing changed */
  }
  for (uint32_t o = 0; o < b->nmeters; o++)
    back[o] = HES_METER_NONE;
  for (uint32_t i = 0; i < count; i++) {
    const char *m = hes_meters_at(meters, i);
    uint32_t old = hes_meters_find(b->meters, m, strlen(m));
    map[i] = old < b->nmeters ? old : HES_METER_NONE;
    if (map[i] != HES_METER_NONE)
      back[map[i]] = i;
  }
  /* A meter in both lists keeps its periods; a joiner is missing in every period tracked; a
   * leaver's periods and queued values are dropped. */
  for (size_t k = 0; k < b->nslots; k++) {
    bf_slot_t *s = &b->slots[k];
    uint64_t *have = maps[2 * k], *done = maps[2 * k + 1];
    s->n_have = s->n_done = 0;
    for (uint32_t i = 0; i < count; i++) {
      if (map[i] == HES_METER_NONE)
        continue;
      if (bf__bit(s->have, map[i])) {
        bf__set(have, i);
        s->n_have++;
      }
      if (bf__bit(s->done, map[i])) {
        bf__set(done, i);
        s->n_done++;
      }
    }
    free(s->have);
    free(s->done);
    s->have = have;
    s->done = done;
  }
  size_t kept = 0;
  for (size_t e = 0; e < b->npending; e++) {
    uint32_t to = back[b->pending[e].meter];
    if (to == HES_METER_NONE)
      continue;
    b->pending[kept] = b->pending[e];
    b->pending[kept++].meter = to;
  }
  b->npending = kept;
  b->meters = meters;
  b->nmeters = (uint32_t)count;
  b->words = words;
  b->meters_hash = bf__meters_hash(meters, b->nmeters);
  if (b->pending_auto)
    b->pending_max = bf__pending_auto(count);
  b->dirty = true;
  pthread_mutex_unlock(&b->lock);
  free(maps);
  free(back);
  free(map);
  return 0;
}
