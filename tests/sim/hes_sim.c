/* hes-sim: a stand-alone simulator of the HES OpenAPI of the seed document, for the tests and
 * the demo. It answers the nine /apis/openapi/ endpoints over HTTP (libmicrohttpd) and
 * publishes the plans' results to an MQTT broker (libmosquitto), with knobs for the failures a
 * client must survive: silent meters, an over-voltage meter, meters whose values are not
 * numbers, failing relays, injected HTTP failures, expiring tokens, incomplete frozen data,
 * early pushes. Values come from sim_values.c, so tests can predict them. It is an independent peer
 * of the plugin: it uses none of src/.
 *
 * Threads: libmicrohttpd runs one thread per connection; libmosquitto runs its own network
 * thread (loop_start, automatic reconnect); a scheduler thread publishes pushes when they fall
 * due. All shared simulator state sits behind g.lock; the push queue behind sched.lock; the
 * PUBACK bookkeeping behind acks.lock. No lock is held across network I/O. */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <microhttpd.h>
#include <mosquitto.h>

#include "sim_values.h"

#define SIM_MAX_BODY            (1024u * 1024u)
#define SIM_METER_MAX           32
#define SIM_HISTORY_MAX_SECONDS (184 * 86400)
#define SIM_MAX_FREEZE_TIMES    20000
#define SIM_MAX_FROZEN_ENTRIES  100000
#define SIM_MAX_PAGE_SIZE       1000
#define SIM_MAX_ARCHIVE         100000
#define SIM_PUBACK_WAIT_MS      5000
#define SIM_RETRY_MS            200
#define SIM_RETRY_MAX           300 /* x SIM_RETRY_MS: a push waits a minute for the broker */
#define SIM_ACK_RING            1024

/* ---- options ---------------------------------------------------------------------------- */

typedef struct {
  char **v;
  size_t n, cap;
} strset_t;

static struct {
  int http_port;
  const char *http_bind;
  const char *port_file;
  const char *broker_host;
  int broker_port;
  const char *tenant;
  const char *username;
  const char *password;
  const char *secret_key;
  long push_delay_ms;
  bool push_before_response;
  long token_lifetime;
  uint64_t seed;
  long max_devlist;
  const char *log_path;
  bool bench_reuse;
} opt = {
    .http_port = 0,
    .http_bind = "127.0.0.1",
    .broker_host = "127.0.0.1",
    .broker_port = 1883,
    .tenant = "1000000067",
    .username = "kuangda",
    .password = "kd123456",
    .secret_key = "55be0dc7ac554610165183db43991c50",
    .push_delay_ms = 50,
    .token_lifetime = 7200,
    .seed = 1,
    .max_devlist = 1000,
};

/* ---- shared state (g.lock) ---------------------------------------------------------------- */

typedef enum {
  EP_TOKEN,
  EP_READ_FROZEN,
  EP_READ_SINGLE,
  EP_HISTORY_FROZEN,
  EP_HISTORY_SINGLE,
  EP_RELAY,
  EP_DCU_READ,
  EP_DCU_ADD,
  EP_DCU_REMOVE,
  EP_COUNT
} endpoint_t;

static const struct {
  const char *path;
  const char *name;
} endpoints[EP_COUNT] = {
    [EP_TOKEN] = {"/apis/openapi/getToken", "getToken"},
    [EP_READ_FROZEN] = {"/apis/openapi/meter/readFrozen", "readFrozen"},
    [EP_READ_SINGLE] = {"/apis/openapi/meter/readSingle", "readSingle"},
    [EP_HISTORY_FROZEN] = {"/apis/openapi/meter/historyFrozen", "historyFrozen"},
    [EP_HISTORY_SINGLE] = {"/apis/openapi/meter/historySingle", "historySingle"},
    [EP_RELAY] = {"/apis/openapi/meter/relay", "relay"},
    [EP_DCU_READ] = {"/apis/openapi/dcu/readArchive", "readArchive"},
    [EP_DCU_ADD] = {"/apis/openapi/dcu/addArchive", "addArchive"},
    [EP_DCU_REMOVE] = {"/apis/openapi/dcu/removeArchive", "removeArchive"},
};

typedef struct {
  char dcu[SIM_METER_MAX + 1];
  char meter[SIM_METER_MAX + 1];
  char status; /* '0' disabled, '1' enabled */
} archive_t;

/* Frozen drop bookkeeping: key -> 1 (asked once, left out), 2 (answered since). */
typedef struct {
  uint64_t *keys;
  uint8_t *vals;
  size_t n, cap;
} dropmap_t;

static struct {
  pthread_mutex_t lock;
  char token[49];
  int64_t token_expiry_ms; /* monotonic; 0: no token */
  strset_t silent, overvoltage, relay_fail, bad_value;
  double fail_rate;
  double frozen_drop_rate;
  long slow_ms; /* /sim/slow: every API answer waits this long first */
  /* /sim/slow?endpoint=NAME: only this endpoint is slowed; "history" names both history
   * endpoints; "" slows all of them */
  char slow_endpoint[32];
  bool fail_alternate;
  int fail_kind;  /* /sim/fail-rate's kind: 0 alternates, 1 HTTP 500 only, 2 "System busy" only */
  long fail_next; /* /sim/fail-next: this many plan-creating calls fail before fail_rate counts */
  int fail_next_kind;       /* as fail_kind */
  char fail_next_meter[32]; /* "": any call; else only calls whose devList holds it */
  uint64_t prng;
  unsigned plan_counter;
  dropmap_t drops;
  archive_t *archives;
  size_t n_archives, cap_archives;
  FILE *log;
  /* counters for /sim/stats */
  uint64_t requests[EP_COUNT];
  uint64_t requests_total, http_errors, hes_errors, tokens_issued, tokens_renewed, token_rejected;
  uint64_t fail_injected, plans, pushes_published, pushes_acked, pushes_dropped, push_errors;
  uint64_t mqtt_connects;
  bool mqtt_connected;
} g = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* ---- small helpers ------------------------------------------------------------------------ */

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t real_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t splitmix64(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static double unit_of(uint64_t x) {
  return (double)(x >> 11) / 9007199254740992.0;
}

static bool strset_has(const strset_t *s, const char *v) {
  for (size_t i = 0; i < s->n; i++)
    if (strcmp(s->v[i], v) == 0)
      return true;
  return false;
}

static bool strset_add(strset_t *s, const char *v) {
  if (strset_has(s, v))
    return true;
  if (s->n == s->cap) {
    size_t cap = s->cap ? 2 * s->cap : 8;
    char **nv = realloc(s->v, cap * sizeof(*nv));
    if (nv == NULL)
      return false;
    s->v = nv;
    s->cap = cap;
  }
  char *copy = strdup(v);
  if (copy == NULL)
    return false;
  s->v[s->n++] = copy;
  return true;
}

static void strset_del(strset_t *s, const char *v) {
  for (size_t i = 0; i < s->n; i++) {
    if (strcmp(s->v[i], v) != 0)
      continue;
    free(s->v[i]);
    s->v[i] = s->v[--s->n];
    return;
  }
}

static void strset_free(strset_t *s) {
  for (size_t i = 0; i < s->n; i++)
    free(s->v[i]);
  free(s->v);
  memset(s, 0, sizeof(*s));
}

/* A meter number or DCU number: 1..32 of [0-9A-Za-z_-], so it can go into JSON and topics
 * unescaped. */
static bool valid_id(const char *s) {
  size_t n = 0;
  for (; s[n] != '\0'; n++) {
    unsigned char c = (unsigned char)s[n];
    if (n >= SIM_METER_MAX || !(isalnum(c) || c == '_' || c == '-'))
      return false;
  }
  return n > 0;
}

/* A growable string for the hand-built push and page bodies (their strings are all validated
 * ids, numbers and fixed units, so nothing needs escaping). oom sticks. */
typedef struct {
  char *p;
  size_t len, cap;
  bool oom;
} sbuf_t;

static void sb_printf(sbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf_t *b, const char *fmt, ...) {
  if (b->oom)
    return;
  for (;;) {
    va_list ap;
    size_t room = b->cap - b->len;
    va_start(ap, fmt);
    int n = vsnprintf(b->p ? b->p + b->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n < 0) {
      b->oom = true;
      return;
    }
    if ((size_t)n < room) {
      b->len += (size_t)n;
      return;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len <= (size_t)n)
      cap *= 2;
    char *np = realloc(b->p, cap);
    if (np == NULL) {
      b->oom = true;
      return;
    }
    b->p = np;
    b->cap = cap;
  }
}

/* Splits a comma-separated list (spaces around items ignored) into validated ids. Returns
 * NULL and a reason in why on any problem. The array and its strings are one allocation
 * each: free(list[0]) is not needed, free the array with free_list. */
static void free_list(char **list, size_t n) {
  if (list == NULL)
    return;
  for (size_t i = 0; i < n; i++)
    free(list[i]);
  free(list);
}

static char **split_ids(const char *s, const char *field, long max, size_t *n_out, char *why,
                        size_t whylen) {
  size_t count = 1;
  for (const char *p = s; *p; p++)
    count += *p == ',';
  if (max > 0 && count > (size_t)max) {
    snprintf(why, whylen, "%s too long: %zu meters, at most %ld", field, count, max);
    return NULL;
  }
  char **list = calloc(count, sizeof(*list));
  if (list == NULL) {
    snprintf(why, whylen, "out of memory");
    return NULL;
  }
  size_t n = 0;
  const char *p = s;
  for (;;) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    while (len > 0 && *p == ' ') {
      p++;
      len--;
    }
    while (len > 0 && p[len - 1] == ' ')
      len--;
    if (len == 0 || len > SIM_METER_MAX) {
      snprintf(why, whylen, "%s has an empty or too long meter number at position %zu", field,
               n + 1);
      free_list(list, n);
      return NULL;
    }
    list[n] = strndup(p, len);
    if (list[n] == NULL || !valid_id(list[n])) {
      snprintf(why, whylen, "%s has an invalid meter number at position %zu", field, n + 1);
      free_list(list, n + 1);
      return NULL;
    }
    n++;
    if (end == NULL)
      break;
    p = end + 1;
  }
  *n_out = n;
  return list;
}

/* "YYYY-MM-DD HH:MM:SS" in the local zone (TZ) -> time_t; strict: the fields must survive
 * mktime unchanged (no 30 February, no hour inside a DST gap). */
static bool parse_local_time(const char *s, time_t *out) {
  static const char pattern[] = "dddd-dd-dd dd:dd:dd";
  if (strlen(s) != sizeof(pattern) - 1)
    return false;
  for (size_t i = 0; pattern[i]; i++) {
    if (pattern[i] == 'd' ? !isdigit((unsigned char)s[i]) : s[i] != pattern[i])
      return false;
  }
  struct tm tm = {0};
  tm.tm_year = atoi(s) - 1900;
  tm.tm_mon = atoi(s + 5) - 1;
  tm.tm_mday = atoi(s + 8);
  tm.tm_hour = atoi(s + 11);
  tm.tm_min = atoi(s + 14);
  tm.tm_sec = atoi(s + 17);
  tm.tm_isdst = -1;
  struct tm want = tm;
  time_t t = mktime(&tm);
  if (t == (time_t)-1 || tm.tm_year != want.tm_year || tm.tm_mon != want.tm_mon ||
      tm.tm_mday != want.tm_mday || tm.tm_hour != want.tm_hour || tm.tm_min != want.tm_min ||
      tm.tm_sec != want.tm_sec)
    return false;
  *out = t;
  return true;
}

/* Freeze times of `period` (1 daily: local midnight, 2 monthly: local midnight of the 1st,
 * 3 load profile: 15-minute boundaries) in [start, end], into out[0..max). Returns how many
 * there are, or max + 1 when there are more than max. */
static size_t freeze_times(int period, time_t start, time_t end, int64_t *out, size_t max) {
  size_t n = 0;
  if (end < start)
    return 0;
  if (period == 3) {
    int64_t t = ((int64_t)start + 899) / 900 * 900;
    for (; t <= (int64_t)end; t += 900) {
      if (n == max)
        return max + 1;
      out[n++] = t * 1000;
    }
    return n;
  }
  struct tm base;
  localtime_r(&start, &base);
  for (int i = 0;; i++) {
    struct tm tm = {0};
    tm.tm_year = base.tm_year;
    tm.tm_mon = period == 2 ? base.tm_mon + i : base.tm_mon;
    tm.tm_mday = period == 2 ? 1 : base.tm_mday + i;
    tm.tm_isdst = -1;
    time_t t = mktime(&tm);
    if (t == (time_t)-1 || t > end)
      break;
    if (t < start)
      continue;
    if (n == max)
      return max + 1;
    out[n++] = (int64_t)t * 1000;
  }
  return n;
}

/* ---- frozen drop bookkeeping (g.lock) ------------------------------------------------------ */

static uint64_t drop_key(const char *meter, int period, int64_t ts_ms) {
  uint64_t h = 1469598103934665603ULL;
  for (const unsigned char *p = (const unsigned char *)meter; *p; p++)
    h = (h ^ *p) * 1099511628211ULL;
  uint64_t mix = h ^ ((uint64_t)ts_ms * 31 + (uint64_t)period);
  uint64_t k = splitmix64(&mix);
  return k ? k : 1;
}

static bool drop_selected(uint64_t key) {
  uint64_t s = key ^ 0x5eed;
  return unit_of(splitmix64(&s)) < g.frozen_drop_rate;
}

static uint8_t *drop_slot(dropmap_t *m, uint64_t key, bool create) {
  if (create && (m->n + 1) * 2 > m->cap) {
    size_t cap = m->cap ? 2 * m->cap : 1024;
    uint64_t *keys = calloc(cap, sizeof(*keys));
    uint8_t *vals = calloc(cap, 1);
    if (keys == NULL || vals == NULL) {
      free(keys);
      free(vals);
      return NULL;
    }
    for (size_t i = 0; i < m->cap; i++) {
      if (m->keys[i] == 0)
        continue;
      size_t j = m->keys[i] & (cap - 1);
      while (keys[j] != 0)
        j = (j + 1) & (cap - 1);
      keys[j] = m->keys[i];
      vals[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
  }
  if (m->cap == 0)
    return NULL;
  size_t j = key & (m->cap - 1);
  while (m->keys[j] != 0 && m->keys[j] != key)
    j = (j + 1) & (m->cap - 1);
  if (m->keys[j] == 0) {
    if (!create)
      return NULL;
    m->keys[j] = key;
    m->vals[j] = 0;
    m->n++;
  }
  return &m->vals[j];
}

/* readFrozen: is this meter x freeze time answered now? Marks the ask. */
static bool frozen_answer_read(const char *meter, int period, int64_t ts) {
  uint64_t key = drop_key(meter, period, ts);
  if (!drop_selected(key))
    return true;
  uint8_t *v = drop_slot(&g.drops, key, true);
  if (v == NULL)
    return true;
  if (*v == 0) {
    *v = 1;
    return false;
  }
  *v = 2;
  return true;
}

/* history: the HES only has what a read collected. Asking does not change anything, so that
 * the pages of one query agree with each other. */
static bool frozen_answer_history(const char *meter, int period, int64_t ts) {
  uint64_t key = drop_key(meter, period, ts);
  if (!drop_selected(key))
    return true;
  uint8_t *v = drop_slot(&g.drops, key, false);
  return v != NULL && *v == 2;
}

/* ---- PUBACK bookkeeping --------------------------------------------------------------------- */

static struct {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int ring[SIM_ACK_RING];
  size_t next;
} acks = {.lock = PTHREAD_MUTEX_INITIALIZER};

static struct mosquitto *mosq;

static void on_connect(struct mosquitto *m, void *ud, int rc) {
  (void)m;
  (void)ud;
  pthread_mutex_lock(&g.lock);
  g.mqtt_connected = rc == 0;
  if (rc == 0)
    g.mqtt_connects++;
  pthread_mutex_unlock(&g.lock);
  if (rc != 0)
    fprintf(stderr, "hes-sim: broker refused the connection: %s\n", mosquitto_connack_string(rc));
}

static void on_disconnect(struct mosquitto *m, void *ud, int rc) {
  (void)m;
  (void)ud;
  (void)rc;
  pthread_mutex_lock(&g.lock);
  g.mqtt_connected = false;
  pthread_mutex_unlock(&g.lock);
}

static void on_publish(struct mosquitto *m, void *ud, int mid) {
  (void)m;
  (void)ud;
  pthread_mutex_lock(&acks.lock);
  acks.ring[acks.next++ % SIM_ACK_RING] = mid;
  pthread_cond_broadcast(&acks.cond);
  pthread_mutex_unlock(&acks.lock);
  pthread_mutex_lock(&g.lock);
  g.pushes_acked++;
  pthread_mutex_unlock(&g.lock);
}

static bool wait_puback(int mid, int64_t timeout_ms) {
  int64_t deadline = mono_ms() + timeout_ms;
  bool found = false;
  pthread_mutex_lock(&acks.lock);
  while (!found) {
    size_t n = acks.next < SIM_ACK_RING ? acks.next : SIM_ACK_RING;
    for (size_t i = 0; i < n && !found; i++)
      found = acks.ring[(acks.next - 1 - i) % SIM_ACK_RING] == mid;
    int64_t left = deadline - mono_ms();
    if (found || left <= 0)
      break;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += left / 1000;
    ts.tv_nsec += (left % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&acks.cond, &acks.lock, &ts);
  }
  pthread_mutex_unlock(&acks.lock);
  return found;
}

/* libmosquitto's loop thread (loop_start) reconnects once a connection has been made, but
 * not after a refused first connect_async: it then idles without a socket for ever. So this
 * thread retries the first connect until the broker is there, then starts the loop. */
static struct {
  pthread_mutex_t lock;
  pthread_t thread;
  bool stop;
  bool loop_started; /* read by main only after joining the thread */
} starter = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void *mqtt_start_main(void *arg) {
  (void)arg;
  bool told = false;
  for (;;) {
    pthread_mutex_lock(&starter.lock);
    bool stop = starter.stop;
    pthread_mutex_unlock(&starter.lock);
    if (stop)
      return NULL;
    int rc = mosquitto_connect(mosq, opt.broker_host, opt.broker_port, 30);
    if (rc == MOSQ_ERR_SUCCESS) {
      rc = mosquitto_loop_start(mosq);
      if (rc != MOSQ_ERR_SUCCESS)
        fprintf(stderr, "hes-sim: mosquitto_loop_start: %s\n", mosquitto_strerror(rc));
      starter.loop_started = rc == MOSQ_ERR_SUCCESS;
      return NULL;
    }
    if (!told)
      fprintf(stderr, "hes-sim: broker %s:%d not reachable yet (%s), retrying\n", opt.broker_host,
              opt.broker_port, mosquitto_strerror(rc));
    told = true;
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 200 * 1000000L};
    nanosleep(&ts, NULL);
  }
}

/* ---- plans and pushes ------------------------------------------------------------------------ */

enum { MF_SILENT = 1, MF_OVERVOLTAGE = 2, MF_RELAY_FAIL = 4, MF_BAD_VALUE = 8 };

typedef struct {
  endpoint_t ep;
  char plan_id[48];
  char topic[128];
  int cgcode;       /* readSingle: the item; readFrozen: the period 1..3 */
  int control_mode; /* relay */
  char dcu[SIM_METER_MAX + 1];
  char **meters; /* devList, or the archives of add/remove */
  size_t n;
  uint8_t *flags;  /* per meter, MF_*: decided when the plan is made */
  int64_t *times;  /* readFrozen: freeze times (ms) */
  size_t n_times;  /* readFrozen */
  uint8_t *answer; /* readFrozen: n x n_times, 1 = answered */
  char *payload;   /* built on the first attempt, so retries send the same message */
  int64_t due_ms;  /* monotonic */
  int attempts;
} plan_t;

static void plan_free(plan_t *p) {
  if (p == NULL)
    return;
  free_list(p->meters, p->n);
  free(p->flags);
  free(p->times);
  free(p->answer);
  free(p->payload);
  free(p);
}

static const char *status_of(size_t answered, size_t expected) {
  if (answered == expected)
    return "00";
  return answered == 0 ? "02" : "01";
}

static void emit_frozen_entry(sbuf_t *b, const char *meter, int64_t ts) {
  sb_printf(b, "{\"devAddr\":\"%s\",\"timestamp\":%" PRId64 ",\"channelData\":[", meter, ts);
  for (size_t c = 0; c < 8; c++) {
    char v[64];
    const char *unit = "";
    if (!sim_value_string(meter, sim_frozen_channels[c], ts, false, v, sizeof(v), &unit))
      snprintf(v, sizeof(v), "0.000");
    sb_printf(b, "%s{\"unit\":\"%s\",\"value\":\"%s\",\"cgcode\":\"%d\"}", c ? "," : "", unit, v,
              sim_frozen_channels[c]);
  }
  sb_printf(b, "]}");
}

/* --bench-reuse: a benchmark needs the HES to be cheap, not exact. The readSingle list of a
 * (cgcode, devList) is rendered once and then reused with only its timestamps rewritten in
 * place (same width: 13 digits of ms), so the simulator costs a memcpy a push instead of a
 * formatted reading each; values stay those of the first render. Never used by the tests. */
typedef struct {
  int cgcode;
  char *first_meter;
  size_t n;
  char *list;
  size_t len;
  size_t *ts_at; /* offsets of the timestamps in list */
  size_t n_ts;
  size_t answered;
} reuse_t;

static struct {
  pthread_mutex_t lock;
  reuse_t *e;
  size_t n;
} reuse = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* A copy of the cached list for p with the timestamps set to now, or NULL (then: render). */
static char *reuse_list(const plan_t *p, int64_t now, size_t *answered) {
  char ts[32];
  int tl = snprintf(ts, sizeof(ts), "%" PRId64, now);
  char *out = NULL;
  pthread_mutex_lock(&reuse.lock);
  for (size_t i = 0; i < reuse.n && out == NULL; i++) {
    reuse_t *e = &reuse.e[i];
    if (e->cgcode != p->cgcode || e->n != p->n || strcmp(e->first_meter, p->meters[0]) != 0)
      continue;
    out = malloc(e->len + 1);
    if (out == NULL)
      break;
    memcpy(out, e->list, e->len + 1);
    for (size_t k = 0; k < e->n_ts; k++) {
      if (tl != 13) { /* a width change: render anew */
        free(out);
        out = NULL;
        break;
      }
      memcpy(out + e->ts_at[k], ts, 13);
    }
    *answered = e->answered;
  }
  pthread_mutex_unlock(&reuse.lock);
  return out;
}

static void reuse_keep(const plan_t *p, const char *list, size_t answered, int64_t now) {
  char ts[32];
  int tl = snprintf(ts, sizeof(ts), "\"timestamp\":%" PRId64, now);
  reuse_t e = {.cgcode = p->cgcode, .n = p->n, .answered = answered};
  e.first_meter = strdup(p->meters[0]);
  e.list = strdup(list);
  e.len = strlen(list);
  e.ts_at = calloc(answered + 1, sizeof(*e.ts_at));
  if (e.first_meter == NULL || e.list == NULL || e.ts_at == NULL)
    goto fail;
  for (const char *q = e.list; (q = strstr(q, ts)) != NULL && e.n_ts <= answered; q += tl)
    e.ts_at[e.n_ts++] = (size_t)(q - e.list) + (size_t)tl - 13;
  pthread_mutex_lock(&reuse.lock);
  reuse_t *grown = realloc(reuse.e, (reuse.n + 1) * sizeof(*grown));
  if (grown != NULL) {
    reuse.e = grown;
    reuse.e[reuse.n++] = e;
  }
  pthread_mutex_unlock(&reuse.lock);
  if (grown != NULL)
    return;
fail:
  free(e.first_meter);
  free(e.list);
  free(e.ts_at);
}

/* The push message of a plan, in the seed's shapes. */
static char *build_payload(const plan_t *p) {
  sbuf_t b = {0};
  size_t answered = 0, expected = 0;
  sbuf_t list = {0};
  int64_t now = real_ms();

  switch (p->ep) {
  case EP_READ_SINGLE:
    expected = p->n;
    if (opt.bench_reuse && p->n > 0) {
      list.p = reuse_list(p, now, &answered);
      if (list.p != NULL)
        break;
    }
    for (size_t i = 0; i < p->n; i++) {
      char v[64];
      const char *unit = "";
      if (p->flags[i] & MF_SILENT)
        continue;
      if (!sim_value_string(p->meters[i], p->cgcode, now, p->flags[i] & MF_OVERVOLTAGE, v,
                            sizeof(v), &unit))
        continue;
      if (p->flags[i] & MF_BAD_VALUE) /* a well-formed entry whose value is not a number */
        snprintf(v, sizeof(v), "n/a");
      sb_printf(&list,
                "%s{\"devAddr\":\"%s\",\"timestamp\":%" PRId64
                ",\"cgcode\":\"%d\",\"unit\":\"%s\",\"value\":\"%s\"}",
                answered ? "," : "", p->meters[i], now, p->cgcode, unit, v);
      answered++;
    }
    if (opt.bench_reuse && p->n > 0 && list.p != NULL && !list.oom)
      reuse_keep(p, list.p, answered, now);
    break;
  case EP_READ_FROZEN:
    expected = p->n * p->n_times;
    for (size_t i = 0; i < p->n; i++) {
      for (size_t t = 0; t < p->n_times; t++) {
        if (!p->answer[i * p->n_times + t])
          continue;
        if (answered)
          sb_printf(&list, ",");
        emit_frozen_entry(&list, p->meters[i], p->times[t]);
        answered++;
      }
    }
    break;
  case EP_RELAY: {
    size_t ok = 0;
    expected = p->n;
    for (size_t i = 0; i < p->n; i++) {
      if (p->flags[i] & MF_SILENT)
        continue;
      bool success = !(p->flags[i] & MF_RELAY_FAIL);
      sb_printf(&list, "%s{\"devAddr\":\"%s\",\"successful\":%s}", answered ? "," : "",
                p->meters[i], success ? "true" : "false");
      answered++;
      ok += success;
    }
    answered = ok; /* a refused command counts as not done for the status */
    break;
  }
  case EP_DCU_READ:
    pthread_mutex_lock(&g.lock);
    {
      const char *first = NULL;
      for (size_t i = 0; i < g.n_archives; i++) {
        const archive_t *a = &g.archives[i];
        if (strcmp(a->dcu, p->dcu) != 0)
          continue;
        if (first == NULL)
          first = a->meter;
        sb_printf(&list,
                  "%s{\"devAddr\":\"%s\",\"status\":\"%c\",\"commType\":\"1\","
                  "\"moduleNext\":\"%s\"}",
                  answered ? "," : "", a->meter, a->status, first);
        answered++;
      }
    }
    pthread_mutex_unlock(&g.lock);
    expected = answered;
    break;
  default: /* addArchive, removeArchive: status only */
    break;
  }

  sb_printf(&b, "{\"planId\":\"%s\",\"data\":{\"status\":\"%s\"", p->plan_id,
            status_of(answered, expected));
  if (p->ep != EP_DCU_ADD && p->ep != EP_DCU_REMOVE)
    sb_printf(&b, ",\"list\":[%s]", list.p ? list.p : "");
  sb_printf(&b, "}}");
  bool oom = list.oom || b.oom;
  free(list.p);
  if (oom) {
    free(b.p);
    return NULL;
  }
  return b.p;
}

/* Publishes a plan's push (QoS 1). Returns the mid, 0 when not connected (retry later), or
 * -1 on a failure that a retry would not mend. */
static int publish_plan(plan_t *p) {
  if (p->payload == NULL)
    p->payload = build_payload(p);
  if (p->payload == NULL)
    return -1;
  pthread_mutex_lock(&g.lock);
  bool connected = g.mqtt_connected;
  pthread_mutex_unlock(&g.lock);
  if (!connected)
    return 0;
  int mid = 0;
  int rc = mosquitto_publish(mosq, &mid, p->topic, (int)strlen(p->payload), p->payload, 1, false);
  pthread_mutex_lock(&g.lock);
  if (rc == MOSQ_ERR_SUCCESS)
    g.pushes_published++;
  else
    g.push_errors++;
  pthread_mutex_unlock(&g.lock);
  if (rc != MOSQ_ERR_SUCCESS) {
    fprintf(stderr, "hes-sim: publish %s: %s\n", p->plan_id, mosquitto_strerror(rc));
    return -1;
  }
  return mid > 0 ? mid : -1;
}

/* The scheduler: a binary heap of plans ordered by due time. */
static struct {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  plan_t **heap;
  size_t n, cap;
  bool stop;
  pthread_t thread;
} sched = {.lock = PTHREAD_MUTEX_INITIALIZER};

static bool sched_push_locked(plan_t *p) {
  if (sched.n == sched.cap) {
    size_t cap = sched.cap ? 2 * sched.cap : 256;
    plan_t **nh = realloc(sched.heap, cap * sizeof(*nh));
    if (nh == NULL)
      return false;
    sched.heap = nh;
    sched.cap = cap;
  }
  size_t i = sched.n++;
  while (i > 0 && sched.heap[(i - 1) / 2]->due_ms > p->due_ms) {
    sched.heap[i] = sched.heap[(i - 1) / 2];
    i = (i - 1) / 2;
  }
  sched.heap[i] = p;
  return true;
}

static plan_t *sched_pop_locked(void) {
  plan_t *top = sched.heap[0];
  plan_t *last = sched.heap[--sched.n];
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= sched.n)
      break;
    if (c + 1 < sched.n && sched.heap[c + 1]->due_ms < sched.heap[c]->due_ms)
      c++;
    if (sched.heap[c]->due_ms >= last->due_ms)
      break;
    sched.heap[i] = sched.heap[c];
    i = c;
  }
  if (sched.n > 0)
    sched.heap[i] = last;
  return top;
}

/* Takes ownership of p. */
static void sched_add(plan_t *p, int64_t due_ms) {
  p->due_ms = due_ms;
  pthread_mutex_lock(&sched.lock);
  bool ok = sched_push_locked(p);
  pthread_cond_signal(&sched.cond);
  pthread_mutex_unlock(&sched.lock);
  if (ok)
    return;
  pthread_mutex_lock(&g.lock);
  g.pushes_dropped++;
  pthread_mutex_unlock(&g.lock);
  plan_free(p);
}

/* Publishes p now if it can, else queues a retry. Takes ownership of p. Returns the mid. */
static int deliver(plan_t *p) {
  int mid = publish_plan(p);
  if (mid > 0 || mid < 0) {
    plan_free(p);
    return mid;
  }
  if (++p->attempts > SIM_RETRY_MAX) {
    fprintf(stderr, "hes-sim: no broker for a minute, dropping the push of %s\n", p->plan_id);
    pthread_mutex_lock(&g.lock);
    g.pushes_dropped++;
    pthread_mutex_unlock(&g.lock);
    plan_free(p);
    return -1;
  }
  sched_add(p, mono_ms() + SIM_RETRY_MS);
  return 0;
}

static void *sched_main(void *arg) {
  (void)arg;
  pthread_mutex_lock(&sched.lock);
  while (!sched.stop) {
    if (sched.n == 0) {
      pthread_cond_wait(&sched.cond, &sched.lock);
      continue;
    }
    int64_t wait = sched.heap[0]->due_ms - mono_ms();
    if (wait > 0) {
      struct timespec ts;
      clock_gettime(CLOCK_MONOTONIC, &ts);
      ts.tv_sec += wait / 1000;
      ts.tv_nsec += (wait % 1000) * 1000000;
      if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
      }
      pthread_cond_timedwait(&sched.cond, &sched.lock, &ts);
      continue;
    }
    plan_t *p = sched_pop_locked();
    pthread_mutex_unlock(&sched.lock);
    deliver(p);
    pthread_mutex_lock(&sched.lock);
  }
  pthread_mutex_unlock(&sched.lock);
  return NULL;
}

/* ---- HTTP ------------------------------------------------------------------------------------ */

/* What one request did, for the log line and the answer. Owns its allocations. */
typedef struct {
  int ep; /* endpoint_t, or -1 */
  unsigned http;
  int code;
  char msg[256];
  char plan_id[48];
  const char *cgcode; /* borrowed from root */
  int control_mode;   /* -1: none */
  char **meters;
  size_t n;
  bool token_ok;
  json_object *root;
  char *answer; /* the body to send */
  const char *ctype;
  long slow_ms; /* how long the answer was held back (/sim/slow) */
} req_t;

typedef struct {
  char *body;
  size_t len;
  bool too_big;
} conn_t;

static void log_request(const req_t *r) {
  pthread_mutex_lock(&g.lock);
  FILE *f = g.log;
  pthread_mutex_unlock(&g.lock);
  if (f == NULL)
    return;
  json_object *o = json_object_new_object();
  if (o == NULL)
    return;
  int64_t now = real_ms();
  time_t secs = (time_t)(now / 1000);
  struct tm tm;
  char when[64], zone[8];
  localtime_r(&secs, &tm);
  strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
  strftime(zone, sizeof(zone), "%z", &tm);
  char stamp[96];
  snprintf(stamp, sizeof(stamp), "%s.%03d%s", when, (int)(now % 1000), zone);
  json_object_object_add(o, "time", json_object_new_string(stamp));
  json_object_object_add(o, "time_ms", json_object_new_int64(now));
  json_object_object_add(o, "endpoint",
                         r->ep >= 0 ? json_object_new_string(endpoints[r->ep].name) : NULL);
  json_object_object_add(o, "http", json_object_new_int((int)r->http));
  json_object_object_add(o, "code", json_object_new_int(r->code));
  json_object_object_add(o, "msg", json_object_new_string(r->msg));
  json_object_object_add(o, "planId", r->plan_id[0] ? json_object_new_string(r->plan_id) : NULL);
  json_object_object_add(o, "cgcode", r->cgcode ? json_object_new_string(r->cgcode) : NULL);
  json_object_object_add(o, "controlMode",
                         r->control_mode >= 0 ? json_object_new_int(r->control_mode) : NULL);
  json_object *list = NULL;
  if (r->meters != NULL) {
    list = json_object_new_array_ext((int)r->n);
    for (size_t i = 0; list != NULL && i < r->n; i++)
      json_object_array_add(list, json_object_new_string(r->meters[i]));
  }
  json_object_object_add(o, "devList", list);
  json_object_object_add(o, "token_ok", json_object_new_boolean(r->token_ok));
  if (r->slow_ms > 0)
    json_object_object_add(o, "slow_ms", json_object_new_int64(r->slow_ms));
  const char *line =
      json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
  pthread_mutex_lock(&g.lock);
  if (g.log != NULL && line != NULL) {
    fputs(line, g.log);
    fputc('\n', g.log);
    fflush(g.log);
  }
  pthread_mutex_unlock(&g.lock);
  json_object_put(o);
}

static enum MHD_Result send_body(struct MHD_Connection *c, unsigned status, const char *ctype,
                                 char *body /* freed */) {
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
  if (resp == NULL) {
    free(body);
    return MHD_NO;
  }
  MHD_add_response_header(resp, "Content-Type", ctype);
  enum MHD_Result ret = MHD_queue_response(c, status, resp);
  MHD_destroy_response(resp);
  return ret;
}

/* Sets r's answer to {"code":500,"msg":...} (HTTP 200, as the HES does). */
static void fail(req_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(req_t *r, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->msg, sizeof(r->msg), fmt, ap);
  va_end(ap);
  r->http = r->http ? r->http : 200;
  r->code = 500;
  json_object *o = json_object_new_object();
  json_object_object_add(o, "code", json_object_new_int(500));
  json_object_object_add(o, "msg", json_object_new_string(r->msg));
  free(r->answer);
  r->answer = strdup(
      json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
  r->ctype = "application/json;charset=UTF-8";
  json_object_put(o);
}

/* Sets r's answer to {"code":200,"msg":"success","data":<data>}; takes data. */
static void succeed(req_t *r, json_object *data) {
  json_object *o = json_object_new_object();
  json_object_object_add(o, "code", json_object_new_int(200));
  json_object_object_add(o, "msg", json_object_new_string("success"));
  json_object_object_add(o, "data", data);
  r->http = 200;
  r->code = 200;
  snprintf(r->msg, sizeof(r->msg), "success");
  free(r->answer);
  r->answer = strdup(
      json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
  r->ctype = "application/json;charset=UTF-8";
  json_object_put(o);
}

/* A member that must be a string without NUL bytes; NULL (and r failed) otherwise. */
static const char *get_string(req_t *r, const char *key) {
  json_object *v = NULL;
  if (!json_object_object_get_ex(r->root, key, &v) || v == NULL) {
    fail(r, "Missing field: %s", key);
    return NULL;
  }
  if (!json_object_is_type(v, json_type_string)) {
    fail(r, "Field %s must be a string", key);
    return NULL;
  }
  const char *s = json_object_get_string(v);
  if ((size_t)json_object_get_string_len(v) != strlen(s)) {
    fail(r, "Field %s contains a NUL byte", key);
    return NULL;
  }
  return s;
}

static bool get_int(req_t *r, const char *key, long lo, long hi, long *out) {
  json_object *v = NULL;
  if (!json_object_object_get_ex(r->root, key, &v) || v == NULL) {
    fail(r, "Missing field: %s", key);
    return false;
  }
  if (!json_object_is_type(v, json_type_int)) {
    fail(r, "Field %s must be an integer", key);
    return false;
  }
  errno = 0;
  int64_t x = json_object_get_int64(v);
  if (errno != 0 || x < lo || x > hi) {
    fail(r, "Field %s out of range [%ld, %ld]", key, lo, hi);
    return false;
  }
  *out = (long)x;
  return true;
}

/* cgcode as the seed sends it: a decimal string. */
static bool get_cgcode(req_t *r, bool frozen, int *out) {
  const char *s = get_string(r, "cgcode");
  if (s == NULL)
    return false;
  r->cgcode = s;
  char *end = NULL;
  long v = isdigit((unsigned char)s[0]) ? strtol(s, &end, 10) : -1;
  bool ok = end != NULL && *end == '\0' && v >= 0;
  if (ok && frozen) {
    ok = v >= 1 && v <= 3;
  } else if (ok) {
    const char *unit;
    double d;
    ok = v >= 5022 && v <= 5104 && !(v >= 5100 && v <= 5102) &&
         sim_value("0", (int)v, 0, false, &d, &unit);
  }
  if (!ok) {
    fail(r, "Unsupported cgcode: %.32s", s);
    return false;
  }
  *out = (int)v;
  return true;
}

static bool get_meters(req_t *r) {
  const char *s = get_string(r, "devList");
  if (s == NULL)
    return false;
  char why[200];
  size_t n = 0;
  char **meters = split_ids(s, "devList", opt.max_devlist, &n, why, sizeof(why));
  if (meters == NULL) {
    fail(r, "%s", why);
    return false;
  }
  free_list(r->meters, r->n);
  r->meters = meters;
  r->n = n;
  return true;
}

static bool get_range(req_t *r, bool history, time_t *start, time_t *end) {
  const char *s = get_string(r, "start");
  if (s == NULL)
    return false;
  const char *e = get_string(r, "end");
  if (e == NULL)
    return false;
  if (!parse_local_time(s, start)) {
    fail(r, "Invalid start time, expected YYYY-MM-DD HH:mm:ss");
    return false;
  }
  if (!parse_local_time(e, end)) {
    fail(r, "Invalid end time, expected YYYY-MM-DD HH:mm:ss");
    return false;
  }
  if (*end < *start) {
    fail(r, "end time is before start time");
    return false;
  }
  if (history && *end - *start > SIM_HISTORY_MAX_SECONDS) {
    fail(r, "Time range must be within half a year");
    return false;
  }
  return true;
}

/* The meter flags at this moment. */
static uint8_t *meter_flags(char **meters, size_t n) {
  uint8_t *f = calloc(n ? n : 1, 1);
  if (f == NULL)
    return NULL;
  pthread_mutex_lock(&g.lock);
  for (size_t i = 0; i < n; i++) {
    f[i] = (strset_has(&g.silent, meters[i]) ? MF_SILENT : 0) |
           (strset_has(&g.overvoltage, meters[i]) ? MF_OVERVOLTAGE : 0) |
           (strset_has(&g.relay_fail, meters[i]) ? MF_RELAY_FAIL : 0) |
           (strset_has(&g.bad_value, meters[i]) ? MF_BAD_VALUE : 0);
  }
  pthread_mutex_unlock(&g.lock);
  return f;
}

static bool token_valid(struct MHD_Connection *c, json_object *root) {
  const char *candidates[2] = {MHD_lookup_connection_value(c, MHD_HEADER_KIND, "HES_Access_Token"),
                               NULL};
  json_object *v = NULL;
  if (root != NULL && json_object_object_get_ex(root, "token", &v) &&
      json_object_is_type(v, json_type_string))
    candidates[1] = json_object_get_string(v);
  bool ok = false;
  pthread_mutex_lock(&g.lock);
  bool live = g.token_expiry_ms != 0 && mono_ms() < g.token_expiry_ms;
  for (int i = 0; i < 2 && live && !ok; i++)
    ok = candidates[i] != NULL && strcmp(candidates[i], g.token) == 0;
  if (!ok)
    g.token_rejected++;
  pthread_mutex_unlock(&g.lock);
  return ok;
}

static void new_token_locked(void) {
  unsigned char raw[24];
  bool got = false;
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    got = read(fd, raw, sizeof(raw)) == (ssize_t)sizeof(raw);
    close(fd);
  }
  if (!got) {
    uint64_t s = (uint64_t)real_ms() ^ ((uint64_t)getpid() << 32) ^ g.tokens_issued;
    for (size_t i = 0; i < sizeof(raw); i++)
      raw[i] = (unsigned char)splitmix64(&s);
  }
  for (size_t i = 0; i < sizeof(raw); i++)
    snprintf(g.token + 2 * i, 3, "%02x", raw[i]);
}

static void do_get_token(req_t *r) {
  const char *fields[4] = {"tenantCode", "username", "password", "secretKey"};
  const char *want[4] = {opt.tenant, opt.username, opt.password, opt.secret_key};
  bool match = true;
  for (int i = 0; i < 4; i++) {
    const char *s = get_string(r, fields[i]);
    if (s == NULL)
      return;
    match = match && strcmp(s, want[i]) == 0;
  }
  if (!match) {
    fail(r, "Invalid tenantCode, username, password or secretKey");
    return;
  }
  char token[sizeof(g.token)];
  pthread_mutex_lock(&g.lock);
  int64_t now = mono_ms();
  if (g.token_expiry_ms != 0 && now < g.token_expiry_ms) {
    g.tokens_renewed++;
  } else {
    new_token_locked();
    g.tokens_issued++;
  }
  g.token_expiry_ms = now + opt.token_lifetime * 1000;
  memcpy(token, g.token, sizeof(token));
  pthread_mutex_unlock(&g.lock);
  r->token_ok = true;
  json_object *data = json_object_new_object();
  json_object_object_add(data, "token", json_object_new_string(token));
  json_object_object_add(data, "expireIn", json_object_new_int64(opt.token_lifetime));
  succeed(r, data);
}

/* --fail-rate: true when this plan-creating call is to fail (and r says how). */
static bool holds_meter(const req_t *r, const char *meter) {
  for (size_t i = 0; r->meters != NULL && i < r->n; i++)
    if (strcmp(r->meters[i], meter) == 0)
      return true;
  return false;
}

static bool injected_failure(req_t *r) {
  pthread_mutex_lock(&g.lock);
  bool next =
      g.fail_next > 0 && (g.fail_next_meter[0] == '\0' || holds_meter(r, g.fail_next_meter));
  bool hit = next || (g.fail_rate > 0 && unit_of(splitmix64(&g.prng)) < g.fail_rate);
  bool html = false;
  if (hit) {
    int kind = next ? g.fail_next_kind : g.fail_kind;
    if (next)
      g.fail_next--;
    html = kind == 0 ? g.fail_alternate : kind == 1;
    g.fail_alternate = !g.fail_alternate;
    g.fail_injected++;
  }
  pthread_mutex_unlock(&g.lock);
  if (!hit)
    return false;
  if (!html) {
    fail(r, "System busy, please try again later");
    return true;
  }
  r->http = 500;
  r->code = 0;
  snprintf(r->msg, sizeof(r->msg), "injected HTTP 500");
  free(r->answer);
  r->answer = strdup("<html><head><title>500 Internal Server Error</title></head><body>"
                     "<h1>500 Internal Server Error</h1></body></html>\n");
  r->ctype = "text/html;charset=UTF-8";
  return true;
}

/* Names the plan, answers with its planId and topic, and publishes or schedules its push.
 * Takes ownership of p. */
static void start_plan(req_t *r, plan_t *p) {
  char stamp[32];
  time_t now = time(NULL);
  struct tm tm;
  localtime_r(&now, &tm);
  strftime(stamp, sizeof(stamp), "%Y%m%d%H%M%S", &tm);
  pthread_mutex_lock(&g.lock);
  unsigned counter = g.plan_counter++ % 1000000;
  g.plans++;
  pthread_mutex_unlock(&g.lock);
  snprintf(p->plan_id, sizeof(p->plan_id), "P003_%s%06u", stamp, counter);
  snprintf(p->topic, sizeof(p->topic), "/%s/%s", opt.tenant, p->plan_id);
  snprintf(r->plan_id, sizeof(r->plan_id), "%s", p->plan_id);

  bool read = p->ep == EP_READ_SINGLE || p->ep == EP_READ_FROZEN;
  char answer_topic[160];
  snprintf(answer_topic, sizeof(answer_topic), "%s%s", p->topic, read ? "" : "/");
  json_object *data = json_object_new_object();
  json_object_object_add(data, "planId", json_object_new_string(p->plan_id));
  json_object_object_add(data, read ? "topicId" : "topic", json_object_new_string(answer_topic));
  succeed(r, data);

  if (!opt.push_before_response) {
    sched_add(p, mono_ms() + opt.push_delay_ms);
    return;
  }
  int mid = deliver(p);
  if (mid > 0 && !wait_puback(mid, SIM_PUBACK_WAIT_MS))
    fprintf(stderr, "hes-sim: no PUBACK for %s within %d ms\n", r->plan_id, SIM_PUBACK_WAIT_MS);
}

/* A plan for r's request, with a copy of its meters (r keeps its own for the log line). */
static plan_t *plan_with_meters(req_t *r, endpoint_t ep) {
  plan_t *p = calloc(1, sizeof(*p));
  bool ok = p != NULL;
  if (ok) {
    p->ep = ep;
    p->meters = calloc(r->n ? r->n : 1, sizeof(*p->meters));
    ok = p->meters != NULL;
  }
  for (size_t i = 0; ok && i < r->n; i++) {
    p->meters[i] = strdup(r->meters[i]);
    p->n = i + 1;
    ok = p->meters[i] != NULL;
  }
  if (ok) {
    p->flags = meter_flags(p->meters, p->n);
    ok = p->flags != NULL;
  }
  if (!ok) {
    plan_free(p);
    fail(r, "out of memory");
    return NULL;
  }
  return p;
}

static void do_read_single(req_t *r) {
  int cgcode;
  if (!get_meters(r) || !get_cgcode(r, false, &cgcode) || injected_failure(r))
    return;
  plan_t *p = plan_with_meters(r, EP_READ_SINGLE);
  if (p == NULL)
    return;
  p->cgcode = cgcode;
  start_plan(r, p);
}

static void do_read_frozen(req_t *r) {
  int period;
  time_t start, end;
  if (!get_meters(r) || !get_cgcode(r, true, &period) || !get_range(r, false, &start, &end))
    return;
  int64_t *times = malloc(SIM_MAX_FREEZE_TIMES * sizeof(*times));
  if (times == NULL) {
    fail(r, "out of memory");
    return;
  }
  size_t nt = freeze_times(period, start, end, times, SIM_MAX_FREEZE_TIMES);
  if (nt > SIM_MAX_FREEZE_TIMES || nt * r->n > SIM_MAX_FROZEN_ENTRIES) {
    free(times);
    fail(r, "Time range too large for %zu meters", r->n);
    return;
  }
  if (injected_failure(r)) {
    free(times);
    return;
  }
  plan_t *p = plan_with_meters(r, EP_READ_FROZEN);
  if (p == NULL) {
    free(times);
    return;
  }
  p->cgcode = period;
  p->times = times;
  p->n_times = nt;
  p->answer = calloc(nt * p->n + 1, 1);
  if (p->answer == NULL) {
    plan_free(p);
    fail(r, "out of memory");
    return;
  }
  pthread_mutex_lock(&g.lock);
  for (size_t i = 0; i < p->n; i++) {
    for (size_t t = 0; t < nt; t++) {
      p->answer[i * nt + t] =
          !(p->flags[i] & MF_SILENT) && frozen_answer_read(p->meters[i], period, times[t]);
    }
  }
  pthread_mutex_unlock(&g.lock);
  start_plan(r, p);
}

static void do_relay(req_t *r) {
  long mode;
  if (!get_meters(r) || !get_int(r, "controlMode", 1, 2, &mode))
    return;
  r->control_mode = (int)mode;
  if (injected_failure(r))
    return;
  plan_t *p = plan_with_meters(r, EP_RELAY);
  if (p == NULL)
    return;
  p->control_mode = (int)mode;
  start_plan(r, p);
}

static bool get_dcu(req_t *r, char *dcu) {
  const char *s = get_string(r, "dcuNo");
  if (s == NULL)
    return false;
  if (!valid_id(s)) {
    fail(r, "Invalid dcuNo");
    return false;
  }
  snprintf(dcu, SIM_METER_MAX + 1, "%s", s);
  return true;
}

static json_object *get_array(req_t *r, const char *key) {
  json_object *v = NULL;
  if (!json_object_object_get_ex(r->root, key, &v) || v == NULL) {
    fail(r, "Missing field: %s", key);
    return NULL;
  }
  if (!json_object_is_type(v, json_type_array)) {
    fail(r, "Field %s must be an array", key);
    return NULL;
  }
  size_t n = json_object_array_length(v);
  if (n == 0) {
    fail(r, "Field %s is empty", key);
    return NULL;
  }
  if (opt.max_devlist > 0 && n > (size_t)opt.max_devlist) {
    fail(r, "%s too long: %zu meters, at most %ld", key, n, opt.max_devlist);
    return NULL;
  }
  return v;
}

/* addArchive: [{devAddr, status}], removeArchive: ["meter", ...]. Fills r->meters, and
 * statuses for add. */
static bool get_archives(req_t *r, bool add, char **statuses) {
  json_object *arr = get_array(r, "archives");
  if (arr == NULL)
    return false;
  size_t n = json_object_array_length(arr);
  free_list(r->meters, r->n);
  r->n = 0;
  r->meters = calloc(n, sizeof(*r->meters));
  char *st = calloc(n + 1, 1);
  if (r->meters == NULL || st == NULL) {
    free(st);
    fail(r, "out of memory");
    return false;
  }
  for (size_t i = 0; i < n; i++) {
    json_object *e = json_object_array_get_idx(arr, i);
    json_object *dev = e, *status = NULL;
    if (add) {
      if (!json_object_is_type(e, json_type_object) ||
          !json_object_object_get_ex(e, "devAddr", &dev) ||
          !json_object_object_get_ex(e, "status", &status) ||
          !json_object_is_type(status, json_type_string)) {
        fail(r, "archives[%zu] must be an object with string devAddr and status", i);
        free(st);
        return false;
      }
      const char *s = json_object_get_string(status);
      if (strcmp(s, "0") != 0 && strcmp(s, "1") != 0) {
        fail(r, "archives[%zu].status must be \"0\" or \"1\"", i);
        free(st);
        return false;
      }
      st[i] = s[0];
    }
    const char *m = json_object_is_type(dev, json_type_string) ? json_object_get_string(dev) : "";
    if (!valid_id(m) || (size_t)json_object_get_string_len(dev) != strlen(m)) {
      fail(r, "archives[%zu]: invalid meter number", i);
      free(st);
      return false;
    }
    r->meters[i] = strdup(m);
    if (r->meters[i] == NULL) {
      fail(r, "out of memory");
      free(st);
      return false;
    }
    r->n = i + 1;
  }
  *statuses = st;
  return true;
}

static void do_dcu(req_t *r, endpoint_t ep) {
  char dcu[SIM_METER_MAX + 1];
  char *statuses = NULL;
  if (!get_dcu(r, dcu))
    return;
  if (ep != EP_DCU_READ && !get_archives(r, ep == EP_DCU_ADD, &statuses))
    return;
  if (injected_failure(r)) {
    free(statuses);
    return;
  }
  /* The DCU's archive changes when the plan is made, so a readArchive after it sees it. */
  bool full = false;
  pthread_mutex_lock(&g.lock);
  for (size_t i = 0; i < r->n && ep != EP_DCU_READ; i++) {
    size_t j = 0;
    while (j < g.n_archives &&
           !(strcmp(g.archives[j].dcu, dcu) == 0 && strcmp(g.archives[j].meter, r->meters[i]) == 0))
      j++;
    if (ep == EP_DCU_REMOVE) {
      if (j < g.n_archives)
        memmove(&g.archives[j], &g.archives[j + 1], (g.n_archives - j - 1) * sizeof(archive_t));
      g.n_archives -= j < g.n_archives;
      continue;
    }
    if (j == g.n_archives) {
      if (g.n_archives == g.cap_archives) {
        size_t cap = g.cap_archives ? 2 * g.cap_archives : 64;
        archive_t *na = cap <= SIM_MAX_ARCHIVE ? realloc(g.archives, cap * sizeof(*na)) : NULL;
        if (na == NULL) {
          full = true;
          break;
        }
        g.archives = na;
        g.cap_archives = cap;
      }
      snprintf(g.archives[j].dcu, sizeof(g.archives[j].dcu), "%s", dcu);
      snprintf(g.archives[j].meter, sizeof(g.archives[j].meter), "%s", r->meters[i]);
      g.n_archives++;
    }
    g.archives[j].status = statuses[i];
  }
  pthread_mutex_unlock(&g.lock);
  free(statuses);
  if (full) {
    fail(r, "DCU archive full");
    return;
  }
  plan_t *p = plan_with_meters(r, ep);
  if (p == NULL)
    return;
  snprintf(p->dcu, sizeof(p->dcu), "%s", dcu);
  start_plan(r, p);
}

static bool get_page(req_t *r, long *cur, long *size) {
  return get_int(r, "curPage", 1, 1000000000, cur) &&
         get_int(r, "pageSize", 1, SIM_MAX_PAGE_SIZE, size);
}

static void do_history(req_t *r, bool frozen) {
  int cgcode;
  long cur, size;
  time_t start, end;
  if (!get_meters(r) || !get_cgcode(r, frozen, &cgcode) || !get_range(r, true, &start, &end) ||
      !get_page(r, &cur, &size))
    return;
  int64_t *times = malloc(SIM_MAX_FREEZE_TIMES * sizeof(*times));
  uint8_t *flags = meter_flags(r->meters, r->n);
  if (times == NULL || flags == NULL) {
    free(times);
    free(flags);
    fail(r, "out of memory");
    return;
  }
  /* single items: the HES keeps a reading every 15 minutes */
  size_t nt = freeze_times(frozen ? cgcode : 3, start, end, times, SIM_MAX_FREEZE_TIMES);
  if (nt > SIM_MAX_FREEZE_TIMES)
    nt = SIM_MAX_FREEZE_TIMES;
  uint64_t first = (uint64_t)(cur - 1) * (uint64_t)size, total = 0;
  sbuf_t list = {0};
  size_t emitted = 0;
  pthread_mutex_lock(&g.lock);
  for (size_t i = 0; i < r->n; i++) {
    if (flags[i] & MF_SILENT)
      continue;
    for (size_t t = 0; t < nt; t++) {
      if (frozen && !frozen_answer_history(r->meters[i], cgcode, times[t]))
        continue;
      if (total++ < first || emitted >= (size_t)size)
        continue;
      if (emitted++)
        sb_printf(&list, ",");
      if (frozen) {
        emit_frozen_entry(&list, r->meters[i], times[t]);
        continue;
      }
      char v[64];
      const char *unit = "";
      sim_value_string(r->meters[i], cgcode, times[t], flags[i] & MF_OVERVOLTAGE, v, sizeof(v),
                       &unit);
      sb_printf(&list,
                "{\"devAddr\":\"%s\",\"timestamp\":%" PRId64
                ",\"cgcode\":\"%d\",\"unit\":\"%s\",\"value\":\"%s\"}",
                r->meters[i], times[t], cgcode, unit, v);
    }
  }
  pthread_mutex_unlock(&g.lock);
  free(times);
  free(flags);
  sbuf_t b = {0};
  sb_printf(&b,
            "{\"code\":200,\"msg\":\"success\",\"data\":{\"total\":%" PRIu64
            ",\"curPage\":%ld,\"pageSize\":%ld,\"list\":[%s]}}",
            total, cur, size, list.p ? list.p : "");
  bool oom = b.oom || list.oom;
  free(list.p);
  if (oom) {
    free(b.p);
    fail(r, "out of memory");
    return;
  }
  r->http = 200;
  r->code = 200;
  snprintf(r->msg, sizeof(r->msg), "success");
  free(r->answer);
  r->answer = b.p;
  r->ctype = "application/json;charset=UTF-8";
}

/* What the log line shows of a request that fails before its fields are checked. */
static void log_peek(req_t *r) {
  json_object *v = NULL;
  if (json_object_object_get_ex(r->root, "cgcode", &v) && json_object_is_type(v, json_type_string))
    r->cgcode = json_object_get_string(v);
  if (json_object_object_get_ex(r->root, "controlMode", &v) &&
      json_object_is_type(v, json_type_int))
    r->control_mode = json_object_get_int(v);
  if (json_object_object_get_ex(r->root, "devList", &v) &&
      json_object_is_type(v, json_type_string)) {
    char why[200];
    r->meters = split_ids(json_object_get_string(v), "devList", 0, &r->n, why, sizeof(why));
    if (r->meters == NULL)
      r->n = 0;
  }
}

static void handle_api(struct MHD_Connection *c, req_t *r, const conn_t *cn) {
  if (cn->too_big) {
    r->http = 413;
    fail(r, "Request body larger than %u bytes", SIM_MAX_BODY);
    return;
  }
  json_tokener *tok = json_tokener_new_ex(32);
  if (tok == NULL) {
    fail(r, "out of memory");
    return;
  }
  r->root = cn->len ? json_tokener_parse_ex(tok, cn->body, (int)cn->len) : NULL;
  enum json_tokener_error jerr = json_tokener_get_error(tok);
  size_t used = json_tokener_get_parse_end(tok);
  json_tokener_free(tok);
  while (used < cn->len && isspace((unsigned char)cn->body[used]))
    used++;
  if (r->root == NULL || jerr != json_tokener_success || used != cn->len ||
      !json_object_is_type(r->root, json_type_object)) {
    fail(r, "Invalid JSON body");
    return;
  }
  if (r->ep == EP_TOKEN) {
    do_get_token(r);
    return;
  }
  log_peek(r);
  r->token_ok = token_valid(c, r->root);
  if (!r->token_ok) {
    fail(r, "Token invalid or expired");
    return;
  }
  switch ((endpoint_t)r->ep) {
  case EP_READ_SINGLE:
    do_read_single(r);
    break;
  case EP_READ_FROZEN:
    do_read_frozen(r);
    break;
  case EP_HISTORY_FROZEN:
    do_history(r, true);
    break;
  case EP_HISTORY_SINGLE:
    do_history(r, false);
    break;
  case EP_RELAY:
    do_relay(r);
    break;
  default:
    do_dcu(r, (endpoint_t)r->ep);
    break;
  }
}

/* Whether /sim/slow's endpoint=NAME slows endpoint ep ("" slows every one). */
static bool slow_endpoint_matches(const char *name, int ep) {
  if (name[0] == '\0' || strcmp(name, endpoints[ep].name) == 0)
    return true;
  return strcmp(name, "history") == 0 && (ep == EP_HISTORY_FROZEN || ep == EP_HISTORY_SINGLE);
}

static bool slow_endpoint_known(const char *name) {
  for (int i = 0; i < EP_COUNT; i++)
    if (name[0] != '\0' && slow_endpoint_matches(name, i))
      return true;
  return false;
}

static bool parse_long(const char *s, long lo, long hi, long *out);

/* A `kind` argument as g.fail_kind: 0 mixed, 1 http, 2 busy; -1 for none of them. */
static int fail_kind_of(const char *arg, int absent) {
  return arg == NULL                 ? absent
         : strcmp(arg, "mixed") == 0 ? 0
         : strcmp(arg, "http") == 0  ? 1
         : strcmp(arg, "busy") == 0  ? 2
                                     : -1;
}

/* /sim/...: the test's remote control. */
static enum MHD_Result handle_control(struct MHD_Connection *c, const char *url,
                                      const char *method) {
  const char *meter = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "meter");
  const char *arg_on = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "on");
  const char *arg_rate = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "rate");
  const char *arg_ms = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "ms");
  const char *arg_ep = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "endpoint");
  const char *arg_kind = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "kind");
  bool is_post = strcmp(method, "POST") == 0;
  const char *err = NULL;
  unsigned status = 200;
  char *body = NULL;

  if (strcmp(url, "/sim/stats") == 0) {
    json_object *o = json_object_new_object();
    json_object *per = json_object_new_object();
    pthread_mutex_lock(&sched.lock);
    size_t pending = sched.n;
    pthread_mutex_unlock(&sched.lock);
    pthread_mutex_lock(&g.lock);
    for (int i = 0; i < EP_COUNT; i++)
      json_object_object_add(per, endpoints[i].name, json_object_new_int64((int64_t)g.requests[i]));
#define STAT(name) json_object_object_add(o, #name, json_object_new_int64((int64_t)g.name))
    STAT(requests_total);
    STAT(http_errors);
    STAT(hes_errors);
    STAT(tokens_issued);
    STAT(tokens_renewed);
    STAT(token_rejected);
    STAT(fail_injected);
    STAT(plans);
    STAT(pushes_published);
    STAT(pushes_acked);
    STAT(pushes_dropped);
    STAT(push_errors);
    STAT(mqtt_connects);
#undef STAT
    json_object_object_add(o, "mqtt_connected", json_object_new_boolean(g.mqtt_connected));
    json_object_object_add(o, "fail_rate", json_object_new_double(g.fail_rate));
    json_object_object_add(o, "silent_meters", json_object_new_int64((int64_t)g.silent.n));
    pthread_mutex_unlock(&g.lock);
    json_object_object_add(o, "pushes_pending", json_object_new_int64((int64_t)pending));
    json_object_object_add(o, "requests", per);
    body = strdup(
        json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
  } else if (!is_post) {
    status = 405;
    err = "use POST";
  } else if (strcmp(url, "/sim/expire-token") == 0) {
    pthread_mutex_lock(&g.lock);
    g.token_expiry_ms = 0;
    pthread_mutex_unlock(&g.lock);
  } else if (strcmp(url, "/sim/slow") == 0) {
    char *end = NULL;
    long ms = arg_ms ? strtol(arg_ms, &end, 10) : -1;
    if (end == NULL || end == arg_ms || *end != '\0' || ms < 0 || ms > 600000) {
      status = 400;
      err = "ms must be a number of milliseconds in [0, 600000]";
    } else if (arg_ep != NULL && !slow_endpoint_known(arg_ep)) {
      status = 400;
      err = "endpoint must be an endpoint's name (readSingle, historyFrozen...) or history";
    } else {
      pthread_mutex_lock(&g.lock);
      g.slow_ms = ms;
      snprintf(g.slow_endpoint, sizeof(g.slow_endpoint), "%s", arg_ep != NULL ? arg_ep : "");
      pthread_mutex_unlock(&g.lock);
    }
  } else if (strcmp(url, "/sim/fail-next") == 0) {
    const char *arg_n = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "n");
    long n = 0;
    int kind = fail_kind_of(arg_kind, 2);
    if (arg_n == NULL || !parse_long(arg_n, 0, 1000000, &n)) {
      status = 400;
      err = "n must be a count";
    } else if (meter != NULL && !valid_id(meter)) {
      status = 400;
      err = "invalid meter";
    } else if (kind < 0) {
      status = 400;
      err = "kind must be http, busy or mixed";
    } else {
      pthread_mutex_lock(&g.lock);
      g.fail_next = n;
      g.fail_next_kind = kind;
      snprintf(g.fail_next_meter, sizeof(g.fail_next_meter), "%s", meter != NULL ? meter : "");
      pthread_mutex_unlock(&g.lock);
    }
  } else if (strcmp(url, "/sim/fail-rate") == 0 || strcmp(url, "/sim/frozen-drop-rate") == 0) {
    char *end = NULL;
    double rate = arg_rate ? strtod(arg_rate, &end) : NAN;
    int kind = fail_kind_of(arg_kind, 0);
    if (end == NULL || end == arg_rate || *end != '\0' || !(rate >= 0.0 && rate <= 1.0)) {
      status = 400;
      err = "rate must be a number in [0, 1]";
    } else if (kind < 0) {
      status = 400;
      err = "kind must be http, busy or mixed";
    } else {
      pthread_mutex_lock(&g.lock);
      if (url[5] == 'f' && url[6] == 'a') {
        g.fail_rate = rate;
        g.fail_kind = kind;
      } else {
        g.frozen_drop_rate = rate;
      }
      pthread_mutex_unlock(&g.lock);
    }
  } else if (meter == NULL || !valid_id(meter)) {
    status = 400;
    err = "missing or invalid meter";
  } else {
    bool on = strcmp(url, "/sim/silence") == 0 || (arg_on != NULL && strcmp(arg_on, "1") == 0);
    strset_t *set = NULL;
    if (strcmp(url, "/sim/silence") == 0 || strcmp(url, "/sim/unsilence") == 0)
      set = &g.silent;
    else if (strcmp(url, "/sim/overvoltage") == 0)
      set = &g.overvoltage;
    else if (strcmp(url, "/sim/relay-fail") == 0)
      set = &g.relay_fail;
    if (set == NULL) {
      status = 404;
      err = "unknown control";
    } else {
      pthread_mutex_lock(&g.lock);
      bool ok = on ? strset_add(set, meter) : (strset_del(set, meter), true);
      pthread_mutex_unlock(&g.lock);
      if (!ok) {
        status = 500;
        err = "out of memory";
      }
    }
  }
  if (body == NULL) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "ok", json_object_new_boolean(err == NULL));
    if (err != NULL)
      json_object_object_add(o, "error", json_object_new_string(err));
    body = strdup(
        json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
  }
  if (body == NULL)
    return MHD_NO;
  return send_body(c, status, "application/json", body);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls) {
  (void)cls;
  (void)version;
  conn_t *cn = *con_cls;
  if (cn == NULL) {
    cn = calloc(1, sizeof(*cn));
    if (cn == NULL)
      return MHD_NO;
    *con_cls = cn;
    return MHD_YES;
  }
  if (*upload_size > 0) {
    size_t n = *upload_size;
    *upload_size = 0;
    if (cn->too_big || cn->len + n > SIM_MAX_BODY) {
      cn->too_big = true;
      return MHD_YES;
    }
    char *nb = realloc(cn->body, cn->len + n + 1);
    if (nb == NULL)
      return MHD_NO;
    memcpy(nb + cn->len, upload, n);
    cn->body = nb;
    cn->len += n;
    cn->body[cn->len] = '\0';
    return MHD_YES;
  }

  if (strncmp(url, "/sim/", 5) == 0)
    return handle_control(c, url, method);

  req_t r = {.ep = -1, .control_mode = -1};
  for (int i = 0; i < EP_COUNT; i++)
    if (strcmp(url, endpoints[i].path) == 0)
      r.ep = i;
  if (r.ep < 0) {
    char *body = strdup("{\"code\":404,\"msg\":\"Not Found\"}");
    return body ? send_body(c, 404, "application/json;charset=UTF-8", body) : MHD_NO;
  }
  if (strcmp(method, "POST") != 0) {
    r.http = 405;
    fail(&r, "Request method '%.16s' not supported", method);
  } else {
    /* /sim/slow: held back before anything is done, as a HES stuck in a queue would. */
    pthread_mutex_lock(&g.lock);
    r.slow_ms = slow_endpoint_matches(g.slow_endpoint, r.ep) ? g.slow_ms : 0;
    pthread_mutex_unlock(&g.lock);
    if (r.slow_ms > 0) {
      struct timespec ts = {.tv_sec = r.slow_ms / 1000, .tv_nsec = (r.slow_ms % 1000) * 1000000L};
      while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    }
    handle_api(c, &r, cn);
  }
  if (r.answer == NULL) {
    r.http = 500;
    r.answer = strdup("{\"code\":500,\"msg\":\"out of memory\"}");
  }
  pthread_mutex_lock(&g.lock);
  g.requests[r.ep]++;
  g.requests_total++;
  g.http_errors += r.http != 200;
  g.hes_errors += r.http == 200 && r.code != 200;
  pthread_mutex_unlock(&g.lock);
  log_request(&r);
  enum MHD_Result ret = MHD_NO;
  if (r.answer != NULL)
    ret = send_body(c, r.http, r.ctype ? r.ctype : "application/json;charset=UTF-8", r.answer);
  free_list(r.meters, r.n);
  json_object_put(r.root);
  return ret;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  (void)cls;
  (void)c;
  (void)toe;
  conn_t *cn = *con_cls;
  if (cn == NULL)
    return;
  free(cn->body);
  free(cn);
  *con_cls = NULL;
}

/* ---- main ------------------------------------------------------------------------------------ */

static void usage(FILE *f) {
  fputs(
      "usage: hes-sim [options]\n"
      "       hes-sim --value METER CGCODE TS_MS [--overvoltage]\n"
      "  --http-port N            listen on 127.0.0.1:N (0: a free port)\n"
      "  --http-bind ADDR         listen address (default 127.0.0.1)\n"
      "  --port-file F            write the HTTP port to F once listening\n"
      "  --broker-host H --broker-port N   MQTT broker for the pushes\n"
      "  --tenant T --username U --password P --secret-key K   getToken credentials\n"
      "  --push-delay-ms N        publish pushes N ms after the answer (default 50)\n"
      "  --bench-reuse            benchmarks only: reuse each readSingle list, new timestamps\n"
      "  --push-before-response   publish and wait for the PUBACK before answering\n"
      "  --token-lifetime S       token lifetime in seconds (default 7200)\n"
      "  --fail-rate R            fraction of plan-creating calls that fail\n"
      "  --seed N                 seed of the --fail-rate PRNG (default 1)\n"
      "  --silent-meters a,b,c    meters that never answer\n"
      "  --overvoltage-meter M    a meter with phase voltages near 262 V (repeatable)\n"
      "  --relay-fail-meters a,b  meters whose relay commands fail\n"
      "  --bad-value-meters a,b   meters whose readSingle values are \"n/a\" (not a number)\n"
      "  --max-devlist N          longest devList accepted (default 1000, 0: no limit)\n"
      "  --frozen-drop-rate R     fraction of meter x freeze time that readFrozen leaves out the\n"
      "                           first time it is asked (answered from the second ask on;\n"
      "                           history has them only once a readFrozen answered them)\n"
      "  --log F                  one JSON line per API request\n"
      "  --archive DCU=FILE       DCU's archive starts with FILE's meters (one a line), enabled;\n"
      "                           addArchive/removeArchive (hesctl dcu add/remove) change it\n"
      "runtime control: POST /sim/silence?meter=M, /sim/unsilence?meter=M,\n"
      "  /sim/overvoltage?meter=M&on=0|1, /sim/relay-fail?meter=M&on=0|1, "
      "/sim/fail-rate?rate=R[&kind=http|busy|mixed],\n"
      "  /sim/fail-next?n=N[&kind=busy|http|mixed][&meter=M] (the next N plan-creating calls,\n"
      "  or those of them whose devList holds M, fail),\n"
      "  /sim/frozen-drop-rate?rate=R, /sim/expire-token, /sim/slow?ms=N[&endpoint=NAME]\n"
      "  (every API answer, or NAME's only, N ms late; NAME history: both history endpoints;\n"
      "  logged as slow_ms); GET /sim/stats\n",
      f);
}

static bool parse_long(const char *s, long lo, long hi, long *out) {
  char *end = NULL;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
    return false;
  *out = v;
  return true;
}

static bool parse_rate(const char *s, double *out) {
  char *end = NULL;
  double v = strtod(s, &end);
  if (end == s || *end != '\0' || !(v >= 0.0 && v <= 1.0))
    return false;
  *out = v;
  return true;
}

static bool add_list(strset_t *set, const char *s) {
  size_t n = 0;
  char why[200];
  char **list = split_ids(s, "list", 0, &n, why, sizeof(why));
  if (list == NULL) {
    fprintf(stderr, "hes-sim: %s: %s\n", s, why);
    return false;
  }
  bool ok = true;
  for (size_t i = 0; i < n && ok; i++)
    ok = strset_add(set, list[i]);
  free_list(list, n);
  return ok;
}

/* --archive DCU=FILE: DCU's archive starts with FILE's meters, enabled: one a line, '#'
 * comments. Appended as they come (a 100,000-meter archive loads at once), so FILE must not
 * repeat a meter. addArchive and removeArchive change the archive later, as for any DCU. */
static bool seed_archive(const char *arg) {
  const char *eq = strchr(arg, '=');
  char dcu[SIM_METER_MAX + 1], line[256];
  size_t dlen = eq != NULL ? (size_t)(eq - arg) : 0;
  bool ok = true;

  if (dlen == 0 || dlen > SIM_METER_MAX) {
    fprintf(stderr, "hes-sim: --archive expects DCU=FILE\n");
    return false;
  }
  memcpy(dcu, arg, dlen);
  dcu[dlen] = '\0';
  FILE *f = fopen(eq + 1, "r");
  if (!valid_id(dcu) || f == NULL) {
    fprintf(stderr, "hes-sim: --archive %s: %s\n", arg,
            f == NULL ? strerror(errno) : "not a DCU number");
    if (f != NULL)
      fclose(f);
    return false;
  }
  for (size_t lineno = 1; ok && fgets(line, sizeof(line), f) != NULL; lineno++) {
    line[strcspn(line, "#\r\n")] = '\0';
    char *m = line + strspn(line, " \t");
    m[strcspn(m, " \t")] = '\0';
    if (*m == '\0')
      continue;
    if (!valid_id(m) || g.n_archives == SIM_MAX_ARCHIVE) {
      fprintf(stderr, "hes-sim: --archive %s line %zu: %s\n", arg, lineno,
              g.n_archives == SIM_MAX_ARCHIVE ? "archive full" : "not a meter number");
      ok = false;
      break;
    }
    if (g.n_archives == g.cap_archives) {
      size_t cap = g.cap_archives ? 2 * g.cap_archives : 64;
      archive_t *na = realloc(g.archives, cap * sizeof(*na));
      if (na == NULL) {
        ok = false;
        break;
      }
      g.archives = na;
      g.cap_archives = cap;
    }
    archive_t *a = &g.archives[g.n_archives++];
    snprintf(a->dcu, sizeof(a->dcu), "%s", dcu);
    snprintf(a->meter, sizeof(a->meter), "%s", m);
    a->status = '1';
  }
  fclose(f);
  return ok;
}

static int value_mode(const char *meter, int argc, char **argv, bool overvoltage) {
  long cgcode;
  char *end = NULL;
  if (argc != 2 || !parse_long(argv[0], 0, 99999, &cgcode)) {
    fprintf(stderr, "hes-sim: --value METER CGCODE TS_MS [--overvoltage]\n");
    return 2;
  }
  errno = 0;
  long long ts = strtoll(argv[1], &end, 10);
  if (errno != 0 || end == argv[1] || *end != '\0') {
    fprintf(stderr, "hes-sim: bad TS_MS: %s\n", argv[1]);
    return 2;
  }
  char v[64];
  const char *unit = "";
  if (!sim_value_string(meter, (int)cgcode, ts, overvoltage, v, sizeof(v), &unit)) {
    fprintf(stderr, "hes-sim: unknown cgcode %ld\n", cgcode);
    return 1;
  }
  printf("%s %s\n", v, unit);
  return 0;
}

static bool write_port_file(const char *path, unsigned port) {
  char tmp[4096];
  snprintf(tmp, sizeof(tmp), "%s.tmp%ld", path, (long)getpid());
  FILE *f = fopen(tmp, "w");
  if (f == NULL)
    return false;
  fprintf(f, "%u\n", port);
  if (fclose(f) != 0 || rename(tmp, path) != 0) {
    unlink(tmp);
    return false;
  }
  return true;
}

int main(int argc, char **argv) {
  enum {
    O_HTTP_PORT = 256,
    O_HTTP_BIND,
    O_PORT_FILE,
    O_BROKER_HOST,
    O_BROKER_PORT,
    O_TENANT,
    O_USERNAME,
    O_PASSWORD,
    O_SECRET,
    O_PUSH_DELAY,
    O_BENCH_REUSE,
    O_PUSH_BEFORE,
    O_TOKEN_LIFETIME,
    O_FAIL_RATE,
    O_SEED,
    O_SILENT,
    O_OVERVOLTAGE_METER,
    O_RELAY_FAIL,
    O_BAD_VALUE,
    O_MAX_DEVLIST,
    O_LOG,
    O_FROZEN_DROP,
    O_VALUE,
    O_OVERVOLTAGE,
    O_ARCHIVE,
    O_HELP,
  };
  static const struct option longopts[] = {
      {"http-port", required_argument, NULL, O_HTTP_PORT},
      {"http-bind", required_argument, NULL, O_HTTP_BIND},
      {"port-file", required_argument, NULL, O_PORT_FILE},
      {"broker-host", required_argument, NULL, O_BROKER_HOST},
      {"broker-port", required_argument, NULL, O_BROKER_PORT},
      {"tenant", required_argument, NULL, O_TENANT},
      {"username", required_argument, NULL, O_USERNAME},
      {"password", required_argument, NULL, O_PASSWORD},
      {"secret-key", required_argument, NULL, O_SECRET},
      {"push-delay-ms", required_argument, NULL, O_PUSH_DELAY},
      {"bench-reuse", no_argument, NULL, O_BENCH_REUSE},
      {"push-before-response", no_argument, NULL, O_PUSH_BEFORE},
      {"token-lifetime", required_argument, NULL, O_TOKEN_LIFETIME},
      {"fail-rate", required_argument, NULL, O_FAIL_RATE},
      {"seed", required_argument, NULL, O_SEED},
      {"silent-meters", required_argument, NULL, O_SILENT},
      {"overvoltage-meter", required_argument, NULL, O_OVERVOLTAGE_METER},
      {"relay-fail-meters", required_argument, NULL, O_RELAY_FAIL},
      {"bad-value-meters", required_argument, NULL, O_BAD_VALUE},
      {"max-devlist", required_argument, NULL, O_MAX_DEVLIST},
      {"log", required_argument, NULL, O_LOG},
      {"frozen-drop-rate", required_argument, NULL, O_FROZEN_DROP},
      {"value", required_argument, NULL, O_VALUE},
      {"overvoltage", no_argument, NULL, O_OVERVOLTAGE},
      {"archive", required_argument, NULL, O_ARCHIVE},
      {"help", no_argument, NULL, O_HELP},
      {NULL, 0, NULL, 0},
  };
  const char *value_meter = NULL;
  bool overvoltage = false;
  bool ok = true;
  long v;
  int ch;
  while (ok && (ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (ch) {
    case O_HTTP_PORT:
      ok = parse_long(optarg, 0, 65535, &v);
      opt.http_port = (int)v;
      break;
    case O_HTTP_BIND:
      opt.http_bind = optarg;
      break;
    case O_PORT_FILE:
      opt.port_file = optarg;
      break;
    case O_BROKER_HOST:
      opt.broker_host = optarg;
      break;
    case O_BROKER_PORT:
      ok = parse_long(optarg, 1, 65535, &v);
      opt.broker_port = (int)v;
      break;
    case O_TENANT:
      opt.tenant = optarg;
      ok = valid_id(optarg);
      break;
    case O_USERNAME:
      opt.username = optarg;
      break;
    case O_PASSWORD:
      opt.password = optarg;
      break;
    case O_SECRET:
      opt.secret_key = optarg;
      break;
    case O_PUSH_DELAY:
      ok = parse_long(optarg, 0, 3600000, &opt.push_delay_ms);
      break;
    case O_BENCH_REUSE:
      opt.bench_reuse = true;
      break;
    case O_PUSH_BEFORE:
      opt.push_before_response = true;
      break;
    case O_TOKEN_LIFETIME:
      ok = parse_long(optarg, 1, 100000000, &opt.token_lifetime);
      break;
    case O_FAIL_RATE:
      ok = parse_rate(optarg, &g.fail_rate);
      break;
    case O_SEED:
      ok = parse_long(optarg, 0, LONG_MAX, &v);
      opt.seed = (uint64_t)v;
      break;
    case O_SILENT:
      ok = add_list(&g.silent, optarg);
      break;
    case O_OVERVOLTAGE_METER:
      ok = add_list(&g.overvoltage, optarg);
      break;
    case O_RELAY_FAIL:
      ok = add_list(&g.relay_fail, optarg);
      break;
    case O_BAD_VALUE:
      ok = add_list(&g.bad_value, optarg);
      break;
    case O_MAX_DEVLIST:
      ok = parse_long(optarg, 0, 1000000, &opt.max_devlist);
      break;
    case O_LOG:
      opt.log_path = optarg;
      break;
    case O_FROZEN_DROP:
      ok = parse_rate(optarg, &g.frozen_drop_rate);
      break;
    case O_VALUE:
      value_meter = optarg;
      break;
    case O_OVERVOLTAGE:
      overvoltage = true;
      break;
    case O_ARCHIVE:
      ok = seed_archive(optarg);
      break;
    case O_HELP:
      usage(stdout);
      return 0;
    default:
      usage(stderr);
      return 2;
    }
    if (!ok)
      fprintf(stderr, "hes-sim: bad value for --%s: %s\n", longopts[ch - O_HTTP_PORT].name,
              optarg ? optarg : "");
  }
  if (!ok)
    return 2;
  if (value_meter != NULL)
    return value_mode(value_meter, argc - optind, argv + optind, overvoltage);
  if (optind != argc) {
    usage(stderr);
    return 2;
  }
  g.prng = opt.seed;

  if (opt.log_path != NULL) {
    g.log = fopen(opt.log_path, "a");
    if (g.log == NULL) {
      fprintf(stderr, "hes-sim: cannot open %s: %s\n", opt.log_path, strerror(errno));
      return 1;
    }
  }

  /* Signals go to sigwait in main only; every thread started below inherits the mask. */
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);
  signal(SIGPIPE, SIG_IGN);

  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&sched.cond, &ca);
  pthread_cond_init(&acks.cond, &ca);
  pthread_condattr_destroy(&ca);

  int rc = 1;
  struct MHD_Daemon *d = NULL;
  bool sched_started = false, starter_started = false;
  mosquitto_lib_init();
  char client_id[64];
  snprintf(client_id, sizeof(client_id), "hes-sim-%ld", (long)getpid());
  mosq = mosquitto_new(client_id, true, NULL);
  if (mosq == NULL) {
    fprintf(stderr, "hes-sim: mosquitto_new failed\n");
    goto out;
  }
  mosquitto_connect_callback_set(mosq, on_connect);
  mosquitto_disconnect_callback_set(mosq, on_disconnect);
  mosquitto_publish_callback_set(mosq, on_publish);
  mosquitto_reconnect_delay_set(mosq, 1, 2, false);
  if (pthread_create(&starter.thread, NULL, mqtt_start_main, NULL) != 0) {
    fprintf(stderr, "hes-sim: cannot start the MQTT thread\n");
    goto out;
  }
  starter_started = true;

  if (pthread_create(&sched.thread, NULL, sched_main, NULL) != 0) {
    fprintf(stderr, "hes-sim: cannot start the scheduler\n");
    goto out;
  }
  sched_started = true;

  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.http_port)};
  if (inet_pton(AF_INET, opt.http_bind, &sa.sin_addr) != 1) {
    fprintf(stderr, "hes-sim: bad --http-bind %s\n", opt.http_bind);
    goto out;
  }
  d = MHD_start_daemon(
      MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL |
          MHD_USE_ERROR_LOG,
      0, NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_NOTIFY_COMPLETED,
      on_completed, NULL, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60, MHD_OPTION_CONNECTION_LIMIT,
      (unsigned)1000, MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)1024, MHD_OPTION_END);
  if (d == NULL) {
    fprintf(stderr, "hes-sim: cannot listen on %s:%d\n", opt.http_bind, opt.http_port);
    goto out;
  }
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
  unsigned port = info ? info->port : (unsigned)opt.http_port;
  if (opt.port_file != NULL && !write_port_file(opt.port_file, port)) {
    fprintf(stderr, "hes-sim: cannot write %s: %s\n", opt.port_file, strerror(errno));
    goto out;
  }
  fprintf(stderr, "hes-sim: listening on http://%s:%u, broker %s:%d, tenant %s\n", opt.http_bind,
          port, opt.broker_host, opt.broker_port, opt.tenant);

  int sig = 0;
  sigwait(&sigs, &sig);
  fprintf(stderr, "hes-sim: signal %d, exiting\n", sig);
  rc = 0;

out:
  if (d != NULL)
    MHD_stop_daemon(d);
  if (sched_started) {
    pthread_mutex_lock(&sched.lock);
    sched.stop = true;
    pthread_cond_signal(&sched.cond);
    pthread_mutex_unlock(&sched.lock);
    pthread_join(sched.thread, NULL);
  }
  while (sched.n > 0)
    plan_free(sched_pop_locked());
  free(sched.heap);
  if (starter_started) {
    pthread_mutex_lock(&starter.lock);
    starter.stop = true;
    pthread_mutex_unlock(&starter.lock);
    pthread_join(starter.thread, NULL);
  }
  if (mosq != NULL) {
    mosquitto_disconnect(mosq);
    if (starter.loop_started)
      mosquitto_loop_stop(mosq, true);
    mosquitto_destroy(mosq);
  }
  mosquitto_lib_cleanup();
  strset_free(&g.silent);
  strset_free(&g.overvoltage);
  strset_free(&g.relay_fail);
  strset_free(&g.bad_value);
  free(g.drops.keys);
  free(g.drops.vals);
  free(g.archives);
  if (g.log != NULL)
    fclose(g.log);
  return rc;
}
