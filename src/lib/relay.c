/* relay: turns threshold notifications into breaker commands, erring on the side of not
 * acting (see relay.h for the rules).
 *
 * One mutex guards everything a submit decides on: the rules, each meter's last command,
 * the MaxPerMinute window, the queue, the OKAY tracking set and the outstanding commands.
 * A second mutex serialises state file writes, so that a later snapshot is never overwritten
 * by an earlier one, and is never held with the first across I/O.
 *
 * A command passes through three stages: reserved (holdoff and rate charged, a queue slot
 * taken, under the lock), persisted (the state file written, no lock), then queued (visible
 * to hes_relay_next). So the worker never sends a command whose time is not yet on disk. */
#include "config.h"
#include "errbuf.h"

#include "relay.h"
#include "clock.h"
#include "hashtab.h"
#include "statefile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define STATE_HEADER       "collectd-hes relay state v1"
#define STATE_LINE_MAX     128 /* longer lines make a state file corrupt */
#define STATE_INT_DIGITS   12  /* Unix seconds: 12 digits reach the year 33658 */
#define STATE_FRAC_DIGITS  9
#define RATE_WINDOW        60.0
#define OKAY_TRACK_DEFAULT 100000
#define OUTSTANDING_MAX    4096
#define PAIRS_ON_STACK     16
#define CMDS_ON_STACK      4
/* Times are Unix seconds; beyond this (the year 33658) they are refused, which keeps the
 * state file's 12 digits and the millisecond arithmetic in range. */
#define RELAY_TIME_MAX 1e12

enum { LAST_NONE = 0, LAST_OPEN = 1, LAST_CLOSE = 2, LAST_RESET = 3 };

typedef struct {
  char *name;
  char *plugin; /* NULL: any */
  char *type;
  char *type_instance;
  int severity;
  hes_relay_action_t action;
  uint32_t *meters;   /* indices; NULL: the plugin_instance. HES_METER_NONE: left the list */
  char **meter_names; /* the Meter list as written, to map it onto a new list */
  size_t meters_num;
} relay_rule_t;

/* An identifier (host, plugin, plugin_instance, type, type_instance, each ended by a NUL)
 * that carried a value-bearing non-OKAY notification. */
typedef struct relay_seen {
  uint32_t hash;
  size_t len;
  char key[];
} relay_seen_t;

typedef struct {
  hes_relay_cmd_t cmd;
  char plan_id[HES_PLAN_ID_MAX];
} relay_outstanding_t;

/* One (rule, meter) decision of a submit, reported after the lock is released. */
typedef struct {
  const char *rule;
  /* a copy: the meter list may be replaced once the lock is released */
  char meter[HES_METER_MAX_LEN + 8];
  hes_relay_action_t action;
  hes_relay_decision_t decision;
} relay_pair_t;

struct hes_relay {
  /* fixed after new */
  double holdoff;
  int max_per_minute;
  bool dry_run;
  size_t queue_max;
  char *state_path;
  const hes_meters_t *meters;
  uint32_t meters_num;
  size_t okay_max;

  pthread_mutex_t lock; /* everything below, unless said otherwise */
  pthread_cond_t cond;  /* the queue got a command, or stop */
  relay_rule_t *rules;
  size_t rules_num;
  double *last;         /* per meter: time of the last command, NAN: none */
  uint8_t *last_action; /* per meter: LAST_* */
  uint32_t *stamp;      /* per meter: the event generation that last considered it */
  uint32_t gen;
  size_t last_set;  /* meters whose last is not NAN */
  double latest;    /* the newest last (the reference for pruning the state file) */
  uint64_t version; /* bumped whenever last changes */
  double *rate;     /* max_per_minute slots: times of recent commands, -INFINITY: free */
  hes_relay_cmd_t *queue;
  size_t q_head;
  size_t q_len;
  size_t q_reserved;
  bool stopped;
  hes_hashdir_t seen;  /* identifier -> relay_seen_t */
  relay_seen_t **fifo; /* the order of insertion, for eviction */
  size_t fifo_cap;
  size_t fifo_head;
  size_t fifo_len;
  relay_outstanding_t *out;
  size_t out_len;
  size_t out_cap;

  pthread_mutex_t save_lock; /* serialises state file writes; guards the two below */
  uint64_t saved_version;
  int save_errno;
};

static atomic_uint_fast64_t relay_next_id = 1;

static const char *relay__nz(const char *s) {
  return s != NULL ? s : "";
}

static char *relay__strdup_opt(const char *s, bool *fail) {
  char *d;

  if (s == NULL)
    return NULL;
  d = strdup(s);
  if (d == NULL)
    *fail = true;
  return d;
}

/* Copies s into dst (size cap), control characters replaced: notification text ends up in
 * log lines and must not forge new ones. */
static void relay__copy_text(char *dst, size_t cap, const char *s) {
  size_t i;

  s = relay__nz(s);
  for (i = 0; i + 1 < cap && s[i] != '\0'; i++) {
    unsigned char c = (unsigned char)s[i];
    dst[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
  }
  dst[i] = '\0';
}

/* ---- the MaxPerMinute window --------------------------------------------------------- */

/* Commands whose time is within the window. A time after now counts too: if the caller's
 * clock stepped back, the safe side is to still count it. */
static int relay__rate_count(const hes_relay_t *r, double now) {
  int n = 0;

  for (int i = 0; i < r->max_per_minute; i++)
    if (now - r->rate[i] < RATE_WINDOW)
      n++;
  return n;
}

/* Records t over the oldest slot (not necessarily the oldest insertion: times from several
 * threads need not arrive in order). */
static void relay__rate_add(hes_relay_t *r, double t) {
  int oldest = 0;

  if (r->max_per_minute <= 0)
    return;
  for (int i = 1; i < r->max_per_minute; i++)
    if (r->rate[i] < r->rate[oldest])
      oldest = i;
  if (r->rate[oldest] < t)
    r->rate[oldest] = t;
}

/* Sets a meter's last command, keeping the counters current. */
static void relay__charge(hes_relay_t *r, uint32_t i, double t, uint8_t action) {
  if (isnan(r->last[i]))
    r->last_set++;
  r->last[i] = t;
  r->last_action[i] = action;
  if (r->last_set == 1 || t > r->latest)
    r->latest = t;
  r->version++;
}

/* ---- the OKAY tracking set ---------------------------------------------------------- */

/* The identifier as one key; NULL if it does not fit (then it is neither recorded nor found:
 * an OKAY for it is never acted on). */
static char *relay__ident_key(const hes_relay_event_t *ev, size_t *len) {
  const char *f[5] = {relay__nz(ev->host), relay__nz(ev->plugin), relay__nz(ev->plugin_instance),
                      relay__nz(ev->type), relay__nz(ev->type_instance)};
  size_t l[5];
  size_t total = 0;
  char *key;
  char *p;

  for (int i = 0; i < 5; i++) {
    l[i] = strnlen(f[i], 1024);
    if (l[i] >= 1024)
      return NULL;
    total += l[i] + 1;
  }
  key = malloc(total);
  if (key == NULL)
    return NULL;
  p = key;
  for (int i = 0; i < 5; i++) {
    memcpy(p, f[i], l[i]);
    p[l[i]] = '\0';
    p += l[i] + 1;
  }
  *len = total;
  return key;
}

static bool relay__seen_eq(const void *item, const char *key, size_t len) {
  const relay_seen_t *s = item;

  return s->len == len && memcmp(s->key, key, len) == 0;
}

static relay_seen_t *relay__seen_find(const hes_relay_t *r, const char *key, size_t len,
                                      uint32_t h) {
  return hes_hashdir_find(&r->seen, h, relay__seen_eq, key, len);
}

/* Remembers key; beyond okay_max the oldest is forgotten. A failed allocation forgets
 * nothing new: the OKAY that would have needed it is not acted on (the safe side). */
static void relay__seen_add(hes_relay_t *r, const char *key, size_t len, uint32_t h) {
  relay_seen_t *s;

  if (relay__seen_find(r, key, len, h) != NULL)
    return;
  if (r->fifo_len == r->fifo_cap && r->fifo_cap < r->okay_max) {
    size_t cap = r->fifo_cap == 0 ? 64 : r->fifo_cap * 2;
    relay_seen_t **f;
    if (cap > r->okay_max)
      cap = r->okay_max;
    /* Growth only happens before the first eviction, so fifo_head is still 0. */
    f = realloc(r->fifo, cap * sizeof(*f));
    if (f == NULL)
      return;
    r->fifo = f;
    r->fifo_cap = cap;
  }
  s = malloc(sizeof(*s) + len);
  if (s == NULL)
    return;
  s->hash = h;
  s->len = len;
  memcpy(s->key, key, len);
  if (r->fifo_len == r->okay_max) {
    relay_seen_t *old = r->fifo[r->fifo_head];
    hes_hashdir_remove(&r->seen, old, old->hash);
    free(old);
    /* Cannot fail: the directory just gave back the room this one takes. */
    (void)hes_hashdir_add(&r->seen, s, h);
    r->fifo[r->fifo_head] = s;
    r->fifo_head = (r->fifo_head + 1) % r->fifo_cap;
  } else {
    if (hes_hashdir_add(&r->seen, s, h) != 0) {
      free(s);
      return;
    }
    r->fifo[(r->fifo_head + r->fifo_len) % r->fifo_cap] = s;
    r->fifo_len++;
  }
}

/* ---- the state file ---------------------------------------------------------------- */

static const char *relay__last_word(uint8_t a) {
  switch (a) {
  case LAST_OPEN:
    return "open";
  case LAST_CLOSE:
    return "close";
  default:
    return "reset";
  }
}

/* Parses "<digits>[.<digits>]" exactly (no sign, exponent, inf or locale). */
static bool relay__parse_time(const char *s, double *out) {
  double v = 0;
  double scale = 1;
  int n = 0;

  for (; *s >= '0' && *s <= '9'; s++, n++) {
    if (n >= STATE_INT_DIGITS)
      return false;
    v = v * 10 + (*s - '0');
  }
  if (n == 0)
    return false;
  if (*s == '.') {
    s++;
    n = 0;
    for (; *s >= '0' && *s <= '9'; s++, n++) {
      if (n >= STATE_FRAC_DIGITS)
        return false;
      scale /= 10;
      v += (*s - '0') * scale;
    }
    if (n == 0)
      return false;
  }
  if (*s != '\0')
    return false;
  *out = v;
  return true;
}

/* Loads path into r (whose last[] are all NAN). 0: loaded or no file; otherwise the reason
 * is in why and nothing has been kept. */
static int relay__state_load(hes_relay_t *r, const char *path, double now, char *why,
                             size_t whylen) {
  /* A line per meter at most, plus room for meters no longer configured. */
  size_t max = ((size_t)1 << 24) + (size_t)r->meters_num * (STATE_LINE_MAX + 1);
  hes_statefile_lines_t lines;
  size_t lineno = 1;
  char *text = NULL;
  char *body = NULL;
  size_t len = 0;
  int rc;
  int result = 0;

  switch (hes_statefile_read(path, STATE_HEADER, "relay state file", max, &text, &len, &body, why,
                             whylen)) {
  case HES_STATEFILE_NONE:
    return 0;
  case HES_STATEFILE_NOMEM:
    snprintf(why, whylen, "cannot read it: %s", strerror(ENOMEM));
    return -1;
  case HES_STATEFILE_BAD:
    return -1;
  case HES_STATEFILE_OK:
    break;
  }
  hes_statefile_lines_init(&lines, body, text + len);
  while (result == 0) {
    char *meter;
    char *tstr;
    char *act;
    char *save;
    uint32_t i;
    uint8_t a;
    double t;
    char *line;

    lineno++;
    rc = hes_statefile_line(&lines, &line);
    if (rc == 0)
      break;
    if (rc < 0 || strlen(line) > STATE_LINE_MAX) {
      snprintf(why, whylen, "line %zu: too long, truncated or holding a NUL byte", lineno);
      result = -1;
      break;
    }
    /* Exactly three fields separated by single spaces: what the writer writes. */
    if (line[0] == ' ' || strstr(line, "  ") != NULL ||
        (line[0] != '\0' && line[strlen(line) - 1] == ' ')) {
      snprintf(why, whylen, "line %zu: not \"<meter> <time> <action>\"", lineno);
      result = -1;
      break;
    }
    meter = strtok_r(line, " ", &save);
    tstr = strtok_r(NULL, " ", &save);
    act = strtok_r(NULL, " ", &save);
    if (meter == NULL || tstr == NULL || act == NULL || strtok_r(NULL, " ", &save) != NULL) {
      snprintf(why, whylen, "line %zu: not \"<meter> <time> <action>\"", lineno);
      result = -1;
      break;
    }
    if (!hes_meter_is_valid(meter)) {
      snprintf(why, whylen, "line %zu: not a meter number", lineno);
      result = -1;
      break;
    }
    if (!relay__parse_time(tstr, &t)) {
      snprintf(why, whylen, "line %zu: not a time", lineno);
      result = -1;
      break;
    }
    if (t > now) {
      snprintf(why, whylen, "line %zu: a time in the future (%s, now %.0f)", lineno, tstr, now);
      result = -1;
      break;
    }
    if (strcmp(act, "open") == 0)
      a = LAST_OPEN;
    else if (strcmp(act, "close") == 0)
      a = LAST_CLOSE;
    else if (strcmp(act, "reset") == 0)
      a = LAST_RESET;
    else {
      snprintf(why, whylen, "line %zu: not open, close or reset", lineno);
      result = -1;
      break;
    }
    i = hes_meters_find(r->meters, meter, strlen(meter));
    if (i == HES_METER_NONE || i >= r->meters_num)
      continue; /* no longer configured: dropped */
    if (!isnan(r->last[i])) {
      snprintf(why, whylen, "line %zu: meter %s listed twice", lineno, meter);
      result = -1;
      break;
    }
    relay__charge(r, i, t, a);
  }
  free(text);
  if (result != 0) {
    for (uint32_t i = 0; i < r->meters_num; i++) {
      r->last[i] = NAN;
      r->last_action[i] = LAST_NONE;
    }
    r->last_set = 0;
    return result;
  }
  for (uint32_t i = 0; i < r->meters_num; i++)
    if (!isnan(r->last[i]) && now - r->last[i] < RATE_WINDOW)
      relay__rate_add(r, r->last[i]);
  return 0;
}

/* The file text of the current state; caller holds r->lock. Entries older than both Holdoff
 * and the rate window (relative to the newest) no longer matter and are left out. */
static char *relay__state_text(const hes_relay_t *r, size_t *len) {
  /* meter + ' ' + 12 digits '.' 3 digits + ' ' + "close" + '\n', with room to spare */
  size_t cap = sizeof(STATE_HEADER) + 1 + r->last_set * (HES_METER_MAX_LEN + 32);
  double keep = r->holdoff > RATE_WINDOW ? r->holdoff : RATE_WINDOW;
  char *buf = malloc(cap);
  size_t n;

  if (buf == NULL)
    return NULL;
  n = (size_t)snprintf(buf, cap, "%s\n", STATE_HEADER);
  for (uint32_t i = 0; i < r->meters_num; i++) {
    double t = r->last[i];
    long long ms;
    int w;

    if (isnan(t) || r->latest - t >= keep)
      continue;
    /* Rounded down: a time a fraction of a millisecond early is harmless, one in the future
     * would make the file corrupt when it is read back at once. */
    ms = (long long)floor(t * 1000.0); /* 0 <= t < RELAY_TIME_MAX: in range */
    w = snprintf(buf + n, cap - n, "%s %lld.%03lld %s\n", hes_meters_at(r->meters, i), ms / 1000,
                 ms % 1000, relay__last_word(r->last_action[i]));
    if (w < 0 || (size_t)w >= cap - n) {
      free(buf);
      return NULL;
    }
    n += (size_t)w;
  }
  *len = n;
  return buf;
}

int hes_relay_state_save(hes_relay_t *r) {
  uint64_t version;
  char *text;
  size_t len = 0;
  int rc;

  if (r == NULL)
    return EINVAL;
  if (r->state_path == NULL)
    return 0;
  pthread_mutex_lock(&r->save_lock);
  pthread_mutex_lock(&r->lock);
  version = r->version;
  if (version == r->saved_version && r->save_errno == 0) {
    /* Someone else's save already wrote this state. */
    pthread_mutex_unlock(&r->lock);
    pthread_mutex_unlock(&r->save_lock);
    return 0;
  }
  text = relay__state_text(r, &len);
  pthread_mutex_unlock(&r->lock);
  if (text == NULL) {
    rc = ENOMEM;
  } else {
    rc = hes_statefile_write(r->state_path, text, len);
    free(text);
  }
  if (rc == 0)
    r->saved_version = version;
  r->save_errno = rc;
  pthread_mutex_unlock(&r->save_lock);
  return rc;
}

int hes_relay_state_errno(hes_relay_t *r) {
  int rc;

  if (r == NULL)
    return EINVAL;
  pthread_mutex_lock(&r->save_lock);
  rc = r->save_errno;
  pthread_mutex_unlock(&r->save_lock);
  return rc;
}

/* ---- life cycle ------------------------------------------------------------------ */

static void relay__rule_free(relay_rule_t *rule) {
  free(rule->name);
  free(rule->plugin);
  free(rule->type);
  free(rule->type_instance);
  free(rule->meters);
  for (size_t i = 0; rule->meter_names != NULL && i < rule->meters_num; i++)
    free(rule->meter_names[i]);
  free(rule->meter_names);
}

void hes_relay_free(hes_relay_t *r) {
  if (r == NULL)
    return;
  for (size_t i = 0; i < r->rules_num; i++)
    relay__rule_free(&r->rules[i]);
  free(r->rules);
  for (size_t i = 0; i < r->fifo_len; i++)
    free(r->fifo[(r->fifo_head + i) % r->fifo_cap]);
  free(r->fifo);
  hes_hashdir_free(&r->seen);
  free(r->out);
  free(r->queue);
  free(r->rate);
  free(r->stamp);
  free(r->last_action);
  free(r->last);
  free(r->state_path);
  pthread_cond_destroy(&r->cond);
  pthread_mutex_destroy(&r->lock);
  pthread_mutex_destroy(&r->save_lock);
  free(r);
}

static int relay__sync_init(hes_relay_t *r) {
  int rc;

  rc = pthread_mutex_init(&r->lock, NULL);
  if (rc != 0)
    return rc;
  rc = pthread_mutex_init(&r->save_lock, NULL);
  if (rc != 0) {
    pthread_mutex_destroy(&r->lock);
    return rc;
  }
  /* A monotonic clock: a step of the wall clock must not stretch a worker's wait. */
  rc = hes_clock_cond_init(&r->cond);
  if (rc != 0) {
    pthread_mutex_destroy(&r->save_lock);
    pthread_mutex_destroy(&r->lock);
  }
  return rc;
}

/* After a state file was set aside: every meter waits Holdoff from now, and a fresh file says
 * so at once, so that a restart loop cannot get around the wait. */
static void relay__state_reset(hes_relay_t *r, double now) {
  for (uint32_t i = 0; i < r->meters_num; i++)
    relay__charge(r, i, now, LAST_RESET);
}

hes_relay_t *hes_relay_new(const hes_relay_config_t *cfg, double now, char *err, size_t errlen) {
  hes_relay_t *r;
  size_t count;

  hes_errbuf_printf(err, errlen, "%s", "");
  if (cfg == NULL || cfg->meters == NULL) {
    hes_errbuf_printf(err, errlen, "relay: no meters");
    return NULL;
  }
  if (!isfinite(cfg->holdoff) || cfg->holdoff < 0) {
    hes_errbuf_printf(err, errlen, "relay: Holdoff must be a number >= 0, not %g", cfg->holdoff);
    return NULL;
  }
  if (cfg->max_per_minute < 0) {
    hes_errbuf_printf(err, errlen, "relay: MaxPerMinute must be >= 0, not %d", cfg->max_per_minute);
    return NULL;
  }
  if (cfg->queue_max == 0) {
    hes_errbuf_printf(err, errlen, "relay: the queue must hold at least one command");
    return NULL;
  }
  if (!(now >= 0 && now < RELAY_TIME_MAX)) {
    hes_errbuf_printf(err, errlen, "relay: the time is not a Unix time");
    return NULL;
  }
  count = hes_meters_count(cfg->meters);
  if (count > UINT32_MAX - 1) {
    hes_errbuf_printf(err, errlen, "relay: too many meters");
    return NULL;
  }
  r = calloc(1, sizeof(*r));
  if (r == NULL) {
    hes_errbuf_printf(err, errlen, "relay: out of memory");
    return NULL;
  }
  if (relay__sync_init(r) != 0) {
    free(r);
    hes_errbuf_printf(err, errlen, "relay: cannot create a lock");
    return NULL;
  }
  r->holdoff = cfg->holdoff;
  r->max_per_minute = cfg->max_per_minute;
  r->dry_run = cfg->dry_run;
  r->queue_max = cfg->queue_max;
  r->meters = cfg->meters;
  r->meters_num = (uint32_t)count;
  r->okay_max = cfg->okay_track_max != 0 ? cfg->okay_track_max : OKAY_TRACK_DEFAULT;
  r->last = malloc((count ? count : 1) * sizeof(*r->last));
  r->last_action = calloc(count ? count : 1, sizeof(*r->last_action));
  r->stamp = calloc(count ? count : 1, sizeof(*r->stamp));
  r->rate = malloc((size_t)(r->max_per_minute ? r->max_per_minute : 1) * sizeof(*r->rate));
  r->queue = calloc(r->queue_max, sizeof(*r->queue));
  r->state_path = cfg->state_path != NULL ? strdup(cfg->state_path) : NULL;
  if (r->last == NULL || r->last_action == NULL || r->stamp == NULL || r->rate == NULL ||
      r->queue == NULL || (cfg->state_path != NULL && r->state_path == NULL)) {
    hes_relay_free(r);
    hes_errbuf_printf(err, errlen, "relay: out of memory");
    return NULL;
  }
  for (size_t i = 0; i < count; i++)
    r->last[i] = NAN;
  for (int i = 0; i < r->max_per_minute; i++)
    r->rate[i] = -INFINITY;

  if (r->state_path != NULL) {
    char why[160] = "";
    if (relay__state_load(r, r->state_path, now, why, sizeof(why)) != 0) {
      char aside[PATH_MAX + 64];
      int save_rc;

      hes_statefile_set_aside(r->state_path, ".corrupt", aside, sizeof(aside));
      relay__state_reset(r, now);
      save_rc = hes_relay_state_save(r);
      hes_errbuf_printf(
          err, errlen, "relay state file %s: %s; %s; every meter now waits Holdoff (%g s)%s%s",
          r->state_path, why, aside, r->holdoff, save_rc != 0 ? "; cannot write a new one: " : "",
          save_rc != 0 ? strerror(save_rc) : "");
    }
  }
  return r;
}

/* ---- rules ---------------------------------------------------------------------- */

int hes_relay_add_rule(hes_relay_t *r, const hes_relay_rule_t *rule, char *err, size_t errlen) {
  relay_rule_t nr = {0};
  relay_rule_t *grown;
  bool fail = false;

  hes_errbuf_printf(err, errlen, "%s", "");
  if (r == NULL || rule == NULL) {
    hes_errbuf_printf(err, errlen, "relay: no rule");
    return EINVAL;
  }
  if (rule->name == NULL || rule->name[0] == '\0' ||
      strlen(rule->name) >= sizeof(((hes_relay_cmd_t *)0)->rule)) {
    hes_errbuf_printf(err, errlen, "relay: a rule needs a name of 1 to %zu characters",
                      sizeof(((hes_relay_cmd_t *)0)->rule) - 1);
    return EINVAL;
  }
  if (rule->severity != HES_RELAY_FAILURE && rule->severity != HES_RELAY_WARNING &&
      rule->severity != HES_RELAY_OKAY) {
    hes_errbuf_printf(err, errlen, "relay: rule \"%s\": Severity must be failure, warning or okay",
                      rule->name);
    return EINVAL;
  }
  if (rule->action != HES_RELAY_OPEN && rule->action != HES_RELAY_CLOSE) {
    hes_errbuf_printf(err, errlen, "relay: rule \"%s\": Action must be open or close", rule->name);
    return EINVAL;
  }
  if (rule->meters_num > 0 && rule->meters == NULL) {
    hes_errbuf_printf(err, errlen, "relay: rule \"%s\": no Meter list", rule->name);
    return EINVAL;
  }
  if (rule->meters_num > 0) {
    nr.meters = malloc(rule->meters_num * sizeof(*nr.meters));
    nr.meter_names = calloc(rule->meters_num, sizeof(*nr.meter_names));
    if (nr.meters == NULL || nr.meter_names == NULL) {
      free(nr.meter_names);
      hes_errbuf_printf(err, errlen, "relay: out of memory");
      return ENOMEM;
    }
    for (size_t i = 0; i < rule->meters_num; i++) {
      const char *m = rule->meters[i];
      uint32_t idx = m != NULL ? hes_meters_find(r->meters, m, strlen(m)) : HES_METER_NONE;
      if (idx == HES_METER_NONE || idx >= r->meters_num) {
        hes_errbuf_printf(err, errlen,
                          "relay: rule \"%s\": Meter \"%.40s\" is not a configured meter",
                          rule->name, relay__nz(m));
        nr.meters_num = i;
        relay__rule_free(&nr);
        return EINVAL;
      }
      nr.meters[i] = idx;
      nr.meter_names[i] = strdup(m);
      if (nr.meter_names[i] == NULL) {
        nr.meters_num = i;
        relay__rule_free(&nr);
        hes_errbuf_printf(err, errlen, "relay: out of memory");
        return ENOMEM;
      }
    }
    nr.meters_num = rule->meters_num;
  }
  nr.name = relay__strdup_opt(rule->name, &fail);
  nr.plugin = relay__strdup_opt(rule->plugin, &fail);
  nr.type = relay__strdup_opt(rule->type, &fail);
  nr.type_instance = relay__strdup_opt(rule->type_instance, &fail);
  nr.severity = rule->severity;
  nr.action = rule->action;
  if (fail) {
    relay__rule_free(&nr);
    hes_errbuf_printf(err, errlen, "relay: out of memory");
    return ENOMEM;
  }
  pthread_mutex_lock(&r->lock);
  grown = realloc(r->rules, (r->rules_num + 1) * sizeof(*r->rules));
  if (grown == NULL) {
    pthread_mutex_unlock(&r->lock);
    relay__rule_free(&nr);
    hes_errbuf_printf(err, errlen, "relay: out of memory");
    return ENOMEM;
  }
  r->rules = grown;
  r->rules[r->rules_num++] = nr;
  pthread_mutex_unlock(&r->lock);
  return 0;
}

/* The rule's fields other than severity; exact and case-sensitive, NULL matching anything. */
static bool relay__fields_match(const relay_rule_t *rule, const char *plugin, const char *type,
                                const char *type_instance) {
  if (rule->plugin != NULL && strcmp(rule->plugin, plugin) != 0)
    return false;
  if (rule->type != NULL && strcmp(rule->type, type) != 0)
    return false;
  if (rule->type_instance != NULL && strcmp(rule->type_instance, type_instance) != 0)
    return false;
  return true;
}

/* ---- submit --------------------------------------------------------------------- */

/* Decides one (rule, meter) pair; caller holds r->lock. On QUEUED, the command is charged,
 * its queue slot reserved and *c filled. */
static hes_relay_decision_t relay__decide(hes_relay_t *r, const relay_rule_t *rule, uint32_t i,
                                          const hes_relay_event_t *ev, double now,
                                          hes_relay_cmd_t *c) {
  if (!isnan(r->last[i]) && now - r->last[i] < r->holdoff)
    return HES_RELAY_SKIP_HOLDOFF;
  /* A last command in the future (the clock stepped back) also holds off. */
  if (!isnan(r->last[i]) && r->last[i] > now)
    return HES_RELAY_SKIP_HOLDOFF;
  if (relay__rate_count(r, now) >= r->max_per_minute)
    return HES_RELAY_SKIP_RATE;
  if (r->q_len + r->q_reserved >= r->queue_max)
    return HES_RELAY_SKIP_QUEUE_FULL;
  relay__charge(r, i, now, rule->action == HES_RELAY_OPEN ? LAST_OPEN : LAST_CLOSE);
  relay__rate_add(r, now);
  r->q_reserved++;
  memset(c, 0, sizeof(*c));
  c->id = atomic_fetch_add(&relay_next_id, 1);
  relay__copy_text(c->rule, sizeof(c->rule), rule->name);
  relay__copy_text(c->meter, sizeof(c->meter), hes_meters_at(r->meters, i));
  c->meter_index = i;
  c->action = rule->action;
  c->dry_run = r->dry_run;
  c->queued = now;
  relay__copy_text(c->value_text, sizeof(c->value_text), ev->value_text);
  relay__copy_text(c->threshold_text, sizeof(c->threshold_text), ev->threshold_text);
  return HES_RELAY_QUEUED;
}

static bool relay__is_own(const char *plugin, const char *type) {
  return strcmp(plugin, "hes") == 0 && strcmp(type, "relay") == 0;
}

size_t hes_relay_submit(hes_relay_t *r, const hes_relay_event_t *ev, double now,
                        hes_relay_decision_cb cb, void *ctx) {
  const char *plugin;
  const char *type;
  const char *type_instance;
  const char *pi;
  relay_pair_t stack_pairs[PAIRS_ON_STACK];
  relay_pair_t *pairs = stack_pairs;
  hes_relay_cmd_t stack_cmds[CMDS_ON_STACK];
  hes_relay_cmd_t *cmds = stack_cmds;
  size_t cmds_cap;
  const relay_rule_t *first = NULL;
  hes_relay_decision_t filtered = HES_RELAY_QUEUED;
  size_t npairs = 0;
  size_t want = 0;
  size_t queued = 0;
  bool okay_rules = false;
  char *key = NULL;
  size_t keylen = 0;
  uint32_t h = 0;
  uint32_t pi_idx;

  if (r == NULL || ev == NULL || !(now >= 0 && now < RELAY_TIME_MAX))
    return 0;
  plugin = relay__nz(ev->plugin);
  type = relay__nz(ev->type);
  type_instance = relay__nz(ev->type_instance);
  pi = relay__nz(ev->plugin_instance);

  pthread_mutex_lock(&r->lock);
  /* under the lock: hes_relay_set_meters may replace the list */
  pi_idx = hes_meters_find(r->meters, pi, strnlen(pi, HES_METER_MAX_LEN + 1));
  if (pi_idx != HES_METER_NONE && pi_idx >= r->meters_num)
    pi_idx = HES_METER_NONE;
  for (size_t k = 0; k < r->rules_num; k++) {
    const relay_rule_t *rule = &r->rules[k];
    if (!relay__fields_match(rule, plugin, type, type_instance))
      continue;
    if (rule->severity == HES_RELAY_OKAY)
      okay_rules = true;
    if (rule->severity != ev->severity)
      continue;
    if (first == NULL)
      first = rule;
    want += rule->meters != NULL ? rule->meters_num : 1;
  }

  if (relay__is_own(plugin, type))
    filtered = HES_RELAY_SKIP_OWN;
  else if (!ev->has_value)
    filtered = HES_RELAY_SKIP_NO_VALUE;
  else if (okay_rules) {
    key = relay__ident_key(ev, &keylen);
    if (key != NULL)
      h = hes_hashtab_hash(key, keylen);
    if (ev->severity != HES_RELAY_OKAY) {
      if (key != NULL)
        relay__seen_add(r, key, keylen, h);
    } else if (key == NULL || relay__seen_find(r, key, keylen, h) == NULL) {
      filtered = HES_RELAY_SKIP_FIRST_OKAY;
    }
    free(key);
  } else if (ev->severity == HES_RELAY_OKAY) {
    /* No OKAY rule matches these fields, so nothing was tracked and nothing can be acted
     * on; `first` is NULL here. */
    filtered = HES_RELAY_SKIP_FIRST_OKAY;
  }

  if (first == NULL) {
    pthread_mutex_unlock(&r->lock);
    if (cb != NULL)
      cb(ctx, HES_RELAY_SKIP_NO_RULE, NULL, pi, (hes_relay_action_t)0);
    return 0;
  }
  if (filtered != HES_RELAY_QUEUED) {
    const char *name = first->name;
    hes_relay_action_t action = first->action;
    pthread_mutex_unlock(&r->lock);
    if (cb != NULL)
      cb(ctx, filtered, name, pi, action);
    return 0;
  }
  /* At most one command a pair, and never more than the queue can take. */
  cmds_cap = want < r->queue_max ? want : r->queue_max;
  if (want > PAIRS_ON_STACK)
    pairs = malloc(want * sizeof(*pairs));
  if (cmds_cap > CMDS_ON_STACK)
    cmds = malloc(cmds_cap * sizeof(*cmds));
  if (pairs == NULL || cmds == NULL) {
    /* Not acting is the safe side of running out of memory. */
    pthread_mutex_unlock(&r->lock);
    if (pairs != stack_pairs)
      free(pairs);
    if (cmds != stack_cmds)
      free(cmds);
    return 0;
  }

  r->gen++;
  if (r->gen == 0) {
    memset(r->stamp, 0, r->meters_num * sizeof(*r->stamp));
    r->gen = 1;
  }
  for (size_t k = 0; k < r->rules_num && npairs < want; k++) {
    const relay_rule_t *rule = &r->rules[k];
    size_t n = rule->meters != NULL ? rule->meters_num : 1;

    if (rule->severity != ev->severity || !relay__fields_match(rule, plugin, type, type_instance))
      continue;
    for (size_t j = 0; j < n && npairs < want; j++) {
      uint32_t i = rule->meters != NULL ? rule->meters[j] : pi_idx;
      relay_pair_t *p = &pairs[npairs];

      p->rule = rule->name;
      p->action = rule->action;
      if (i == HES_METER_NONE) {
        snprintf(p->meter, sizeof(p->meter), "%s",
                 rule->meters != NULL ? rule->meter_names[j] : pi);
        p->decision = HES_RELAY_SKIP_UNKNOWN_METER;
        npairs++;
        continue;
      }
      if (r->stamp[i] == r->gen)
        continue;
      r->stamp[i] = r->gen;
      snprintf(p->meter, sizeof(p->meter), "%s", hes_meters_at(r->meters, i));
      if (queued < cmds_cap)
        p->decision = relay__decide(r, rule, i, ev, now, &cmds[queued]);
      else /* cannot happen: the queue bounds cmds_cap */
        p->decision = HES_RELAY_SKIP_QUEUE_FULL;
      if (p->decision == HES_RELAY_QUEUED)
        queued++;
      npairs++;
    }
  }
  pthread_mutex_unlock(&r->lock);

  if (queued > 0) {
    /* Persist before the worker can see the commands. A command whose time is not on disk
     * could be repeated inside Holdoff after a restart: when in doubt, a breaker is not
     * touched, so a failed save drops the commands (their slots are given back). Their
     * holdoff and rate stay charged in memory, the safe side: nothing is retried at once
     * against a disk that just failed. */
    bool saved = hes_relay_state_save(r) == 0;
    pthread_mutex_lock(&r->lock);
    for (size_t k = 0; k < queued; k++) {
      if (saved) {
        r->queue[(r->q_head + r->q_len) % r->queue_max] = cmds[k];
        r->q_len++;
      }
      r->q_reserved--;
    }
    if (saved)
      pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    if (!saved) {
      for (size_t k = 0; k < npairs; k++)
        if (pairs[k].decision == HES_RELAY_QUEUED)
          pairs[k].decision = HES_RELAY_SKIP_STATE;
      queued = 0;
    }
  }
  if (cb != NULL)
    for (size_t k = 0; k < npairs; k++)
      cb(ctx, pairs[k].decision, pairs[k].rule, pairs[k].meter, pairs[k].action);
  if (pairs != stack_pairs)
    free(pairs);
  if (cmds != stack_cmds)
    free(cmds);
  return queued;
}

/* ---- the worker's side ----------------------------------------------------------------- */

bool hes_relay_next(hes_relay_t *r, double timeout, hes_relay_cmd_t *out) {
  struct timespec deadline;
  bool got = false;

  if (r == NULL || out == NULL)
    return false;
  if (!(timeout > 0)) /* also NaN */
    timeout = 0;
  if (timeout > 86400.0 * 365)
    timeout = 86400.0 * 365;
  deadline = hes_clock_after(CLOCK_MONOTONIC, timeout);
  pthread_mutex_lock(&r->lock);
  while (!r->stopped && r->q_len == 0) {
    int rc = pthread_cond_timedwait(&r->cond, &r->lock, &deadline);
    if (rc == ETIMEDOUT)
      break;
  }
  if (!r->stopped && r->q_len > 0) {
    *out = r->queue[r->q_head];
    r->q_head = (r->q_head + 1) % r->queue_max;
    r->q_len--;
    got = true;
  }
  pthread_mutex_unlock(&r->lock);
  return got;
}

void hes_relay_stop(hes_relay_t *r) {
  if (r == NULL)
    return;
  pthread_mutex_lock(&r->lock);
  r->stopped = true;
  pthread_cond_broadcast(&r->cond);
  pthread_mutex_unlock(&r->lock);
}

size_t hes_relay_queue_len(hes_relay_t *r) {
  size_t n;

  if (r == NULL)
    return 0;
  pthread_mutex_lock(&r->lock);
  n = r->q_len;
  pthread_mutex_unlock(&r->lock);
  return n;
}

int hes_relay_sent(hes_relay_t *r, const hes_relay_cmd_t *cmd, const char *plan_id) {
  size_t len;

  if (r == NULL || cmd == NULL || plan_id == NULL)
    return EINVAL;
  len = strnlen(plan_id, HES_PLAN_ID_MAX);
  if (len == 0 || len >= HES_PLAN_ID_MAX)
    return EINVAL;
  pthread_mutex_lock(&r->lock);
  if (r->out_len == OUTSTANDING_MAX) {
    memmove(&r->out[0], &r->out[1], (r->out_len - 1) * sizeof(*r->out));
    r->out_len--;
  }
  if (r->out_len == r->out_cap) {
    size_t cap = r->out_cap == 0 ? 16 : r->out_cap * 2;
    relay_outstanding_t *o;
    if (cap > OUTSTANDING_MAX)
      cap = OUTSTANDING_MAX;
    o = realloc(r->out, cap * sizeof(*o));
    if (o == NULL) {
      pthread_mutex_unlock(&r->lock);
      return ENOMEM;
    }
    r->out = o;
    r->out_cap = cap;
  }
  r->out[r->out_len].cmd = *cmd;
  memcpy(r->out[r->out_len].plan_id, plan_id, len + 1);
  r->out_len++;
  pthread_mutex_unlock(&r->lock);
  return 0;
}

bool hes_relay_take(hes_relay_t *r, const char *plan_id, const char *meter, hes_relay_cmd_t *out) {
  bool found = false;

  if (r == NULL || plan_id == NULL || meter == NULL)
    return false;
  pthread_mutex_lock(&r->lock);
  for (size_t k = 0; k < r->out_len; k++) {
    if (strcmp(r->out[k].plan_id, plan_id) != 0 || strcmp(r->out[k].cmd.meter, meter) != 0)
      continue;
    if (out != NULL)
      *out = r->out[k].cmd;
    memmove(&r->out[k], &r->out[k + 1], (r->out_len - k - 1) * sizeof(*r->out));
    r->out_len--;
    found = true;
    break;
  }
  pthread_mutex_unlock(&r->lock);
  return found;
}

size_t hes_relay_outstanding(hes_relay_t *r) {
  size_t n;

  if (r == NULL)
    return 0;
  pthread_mutex_lock(&r->lock);
  n = r->out_len;
  pthread_mutex_unlock(&r->lock);
  return n;
}

/* ---- names ------------------------------------------------------------------------ */

const char *hes_relay_decision_string(hes_relay_decision_t d) {
  switch (d) {
  case HES_RELAY_QUEUED:
    return "queued";
  case HES_RELAY_SKIP_NO_RULE:
    return "no rule matches";
  case HES_RELAY_SKIP_OWN:
    return "own notification";
  case HES_RELAY_SKIP_NO_VALUE:
    return "no value (missing-value notification)";
  case HES_RELAY_SKIP_FIRST_OKAY:
    return "OKAY without an earlier problem";
  case HES_RELAY_SKIP_UNKNOWN_METER:
    return "not a configured meter";
  case HES_RELAY_SKIP_HOLDOFF:
    return "holdoff";
  case HES_RELAY_SKIP_RATE:
    return "over MaxPerMinute";
  case HES_RELAY_SKIP_QUEUE_FULL:
    return "queue full";
  case HES_RELAY_SKIP_STATE:
    return "state not saved";
  }
  return "unknown";
}

const char *hes_relay_action_string(hes_relay_action_t a) {
  switch (a) {
  case HES_RELAY_OPEN:
    return "open";
  case HES_RELAY_CLOSE:
    return "close";
  }
  return "none";
}

int hes_relay_set_meters(hes_relay_t *r, const hes_meters_t *meters) {
  size_t count = meters != NULL ? hes_meters_count(meters) : 0;
  if (r == NULL || meters == NULL || count > UINT32_MAX - 1)
    return EINVAL;
  double *last = malloc((count ? count : 1) * sizeof(*last));
  uint8_t *last_action = calloc(count ? count : 1, sizeof(*last_action));
  uint32_t *stamp = calloc(count ? count : 1, sizeof(*stamp));
  if (last == NULL || last_action == NULL || stamp == NULL) {
    free(last);
    free(last_action);
    free(stamp);
    return ENOMEM;
  }
  pthread_mutex_lock(&r->lock);
  /* Holdoff follows the meter, not its index: a meter in both lists keeps its last command. */
  size_t last_set = 0;
  for (uint32_t i = 0; i < count; i++) {
    const char *m = hes_meters_at(meters, i);
    uint32_t old = hes_meters_find(r->meters, m, strlen(m));
    last[i] = NAN;
    if (old != HES_METER_NONE && old < r->meters_num) {
      last[i] = r->last[old];
      last_action[i] = r->last_action[old];
    }
    last_set += !isnan(last[i]);
  }
  for (size_t k = 0; k < r->rules_num; k++) {
    relay_rule_t *rule = &r->rules[k];
    for (size_t j = 0; rule->meters != NULL && j < rule->meters_num; j++) {
      const char *m = rule->meter_names[j];
      rule->meters[j] = hes_meters_find(meters, m, strlen(m));
    }
  }
  for (size_t q = 0; q < r->q_len; q++) {
    hes_relay_cmd_t *c = &r->queue[(r->q_head + q) % r->queue_max];
    c->meter_index = hes_meters_find(meters, c->meter, strlen(c->meter));
  }
  free(r->last);
  free(r->last_action);
  free(r->stamp);
  r->last = last;
  r->last_action = last_action;
  r->stamp = stamp;
  r->last_set = last_set;
  r->meters = meters;
  r->meters_num = (uint32_t)count;
  pthread_mutex_unlock(&r->lock);
  return 0;
}
