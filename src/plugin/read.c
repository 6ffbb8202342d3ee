/* read.c: the read round (a readSingle request per item and batch of meters, on collectd's
 * read thread, within the Interval), the readings sink (converted, dispatched), the
 * session's own sink (rejected pushes, broker state), and the plugin's own metrics
 * (<server>-self). */
#include "config.h"

#include "plugin.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

/* ---------------------------------------------------------------------------------------
 * values */

void hes_dispatch_value(const char *plugin_instance, const char *type, const char *type_instance,
                        cdtime_t time, cdtime_t interval, value_t v) {
  value_list_t vl = VALUE_LIST_INIT;
  vl.values = &v;
  vl.values_len = 1;
  vl.time = time;
  /* Set explicitly: the threshold plugin's missing-value timer is based on it. */
  vl.interval = interval;
  sstrncpy(vl.plugin, HES_PLUGIN, sizeof(vl.plugin));
  sstrncpy(vl.plugin_instance, plugin_instance, sizeof(vl.plugin_instance));
  sstrncpy(vl.type, type, sizeof(vl.type));
  sstrncpy(vl.type_instance, type_instance, sizeof(vl.type_instance));
  plugin_dispatch_values(&vl);
}

void hes_dispatch_gauge(const char *plugin_instance, const char *type, const char *type_instance,
                        cdtime_t time, cdtime_t interval, gauge_t g) {
  hes_dispatch_value(plugin_instance, type, type_instance, time, interval, (value_t){.gauge = g});
}

void hes_dispatch_derive(const hes_server_t *s, const char *plugin_instance, const char *type,
                         const char *type_instance, cdtime_t time, uint64_t d) {
  hes_dispatch_value(plugin_instance, type, type_instance, time, hes_interval(s),
                     (value_t){.derive = (derive_t)d});
}

static void hes_dispatch_self(hes_server_t *s) {
  char instance[DATA_MAX_NAME_LEN];
  snprintf(instance, sizeof(instance), "%s-self", s->conf->name);
  cdtime_t now = cdtime();
  hes_session_stats_t ss;
  hes_session_stats(s->session, &ss);
  const hes_plans_stats_t ps = ss.plans;
  hes_dispatch_derive(s, instance, "total_requests", "http", now, ss.http);
  hes_dispatch_derive(s, instance, "total_requests", "http_failed", now, ss.http_failed);
  hes_dispatch_derive(s, instance, "total_requests", "retried", now,
                      atomic_load(&s->count.read_retried));
  hes_dispatch_gauge(instance, "gauge", "plans_pending", now, hes_interval(s),
                     (gauge_t)ps.plans_pending);
  hes_dispatch_derive(s, instance, "total_values", "dispatched", now,
                      atomic_load(&s->count.dispatched));
  hes_dispatch_derive(s, instance, "total_values", "missing", now, atomic_load(&s->count.missing));
  hes_dispatch_derive(s, instance, "total_values", "rejected", now,
                      atomic_load(&s->count.rejected));
  hes_dispatch_derive(s, instance, "total_values", "foreign", now, ps.foreign);
  hes_dispatch_derive(s, instance, "total_values", "duplicate", now, ps.duplicate);
  hes_dispatch_derive(s, instance, "total_values", "late", now, ps.late);
  /* Early pushes that found the parking space full: lost, so they must show. */
  hes_dispatch_derive(s, instance, "total_values", "dropped", now, ps.dropped);
  hes_dispatch_gauge(instance, "gauge", "mqtt_connected", now, hes_interval(s),
                     hes_mqtt_ready(s->mqtt) ? 1.0 : 0.0);
  hes_dispatch_derive(s, instance, "total_operations", "relay_sent", now,
                      atomic_load(&s->count.relay_sent));
  if (hes_relay_conf != NULL && hes_relay_conf->server == s)
    hes_dispatch_derive(s, instance, "total_operations", "relay_skipped", now,
                        atomic_load(&s->count.relay_skipped));
  hes_roster_self(s, instance, now);
  if (s->conf->frozen_num > 0) {
    uint64_t expected = 0, collected = 0, missing = 0;
    for (size_t i = 0; i < s->conf->frozen_num; i++) {
      hes_backfill_stats_t bs;
      hes_backfill_stats(s->frozen[i].backfill, &bs);
      expected += bs.expected;
      collected += bs.collected;
      missing += bs.missing + bs.pending;
    }
    hes_dispatch_gauge(instance, "gauge", "periods_expected", now, hes_interval(s),
                       (gauge_t)expected);
    hes_dispatch_gauge(instance, "gauge", "periods_collected", now, hes_interval(s),
                       (gauge_t)collected);
    hes_dispatch_gauge(instance, "gauge", "periods_missing", now, hes_interval(s),
                       (gauge_t)missing);
  }
  hes_health_round_end(s);
}

/* ---------------------------------------------------------------------------------------
 * the readings sink */

/* Counts and logs what the session rejected (rate-limited). Any thread. */
void hes_count_rejected(hes_server_t *s, const hes_session_reject_t *why) {
  switch (why->kind) {
  case HES_SESSION_REJECT_PARSE:
    atomic_fetch_add(&s->count.rejected, 1);
    HES_LOG_LIMITED(&s->log_push, LOG_WARNING, "Server \"%s\": rejected a push of %zu bytes: %s",
                    s->conf->name, why->len, why->detail);
    break;
  case HES_SESSION_REJECT_DROPPED:
    /* counted as "dropped" by the plans table */
    HES_LOG_LIMITED(&s->log_push, LOG_WARNING,
                    "Server \"%s\": plan %s: no room to keep a push that came before its "
                    "plan; dropped",
                    s->conf->name, why->plan_id);
    break;
  case HES_SESSION_REJECT_SKIPPED:
    atomic_fetch_add(&s->count.rejected, why->count);
    HES_LOG_LIMITED(&s->log_push, LOG_WARNING,
                    "Server \"%s\": plan %s: skipped %zu malformed entr%s: %s", s->conf->name,
                    why->plan_id, why->count, why->count == 1 ? "y" : "ies", why->detail);
    break;
  case HES_SESSION_REJECT_METER:
    atomic_fetch_add(&s->count.rejected, 1);
    HES_LOG_LIMITED(&s->log_value, LOG_WARNING,
                    "Server \"%s\": plan %s: dropped a reading for meter \"%.*s\", which is "
                    "not configured",
                    s->conf->name, why->plan_id, (int)(why->dev_len > 32 ? 32 : why->dev_len),
                    why->dev);
    break;
  case HES_SESSION_REJECT_CGCODE: /* only readSingle routes check the cgcode */
    atomic_fetch_add(&s->count.rejected, 1);
    break;
  case HES_SESSION_REJECT_KIND:
    atomic_fetch_add(&s->count.rejected, 1);
    HES_LOG_LIMITED(&s->log_push, LOG_WARNING,
                    "Server \"%s\": plan %s: a push of an unexpected kind for its plan",
                    s->conf->name, why->plan_id);
    break;
  }
}

static void hes_read_rejected(void *user, const hes_session_reject_t *why) {
  const hes_read_route_t *rr = user;
  hes_server_t *s = rr->server;
  if (why->kind != HES_SESSION_REJECT_CGCODE) {
    hes_count_rejected(s, why);
    return;
  }
  atomic_fetch_add(&s->count.rejected, 1);
  char name[HES_METER_MAX_LEN + 32];
  HES_LOG_LIMITED(&s->log_value, LOG_WARNING,
                  "Server \"%s\": plan %s: meter %s: dropped a reading of cgcode %d, the plan "
                  "asked for %s",
                  s->conf->name, why->plan_id, hes_roster_name(s, why->meter, name, sizeof(name)),
                  why->cgcode, rr->item->name);
}

/* Count and log. Runs without any lock held (the session's contract). */
static void hes_read_missing(void *user, const hes_session_plan_t *plan, const uint32_t *meters,
                             size_t n) {
  const hes_read_route_t *rr = user;
  hes_server_t *s = rr->server;
  atomic_fetch_add(&s->count.missing, n);
  char few[160] = "", name[HES_METER_MAX_LEN + 32];
  size_t used = 0;
  for (size_t i = 0; i < n && i < 3; i++) {
    int w = snprintf(few + used, sizeof(few) - used, "%s%s", i > 0 ? ", " : "",
                     hes_roster_name(s, meters[i], name, sizeof(name)));
    if (w < 0 || (size_t)w >= sizeof(few) - used)
      break;
    used += (size_t)w;
  }
  HES_LOG_LIMITED(&s->log_missing, LOG_WARNING,
                  "Server \"%s\": plan %s (%s): %zu meter(s) never answered: %s%s", s->conf->name,
                  plan->plan_id, rr->item->name, n, few, n > 3 ? ", ..." : "");
}

_Static_assert(HES_METER_MAX_LEN < DATA_MAX_NAME_LEN, "a meter number fits a plugin_instance");

/* Readings converted per chunk before any of them is dispatched. collectd 5.12 signals its
 * write threads once per value, and a sleeping writer wakes for it: values that reach
 * plugin_dispatch_values back to back (as from collectd's own readers) cost collectd fewer
 * wake-ups and context switches than values spaced by the plugin's conversion work
 * (tests/bench/RESULTS.md, "How collectd's write threads wake"). So a push is converted a
 * chunk at a time and each chunk dispatched in a tight loop. The chunk lives on the stack
 * (16 bytes a reading, 16 KiB): the callback runs on the MQTT thread and, for parked pushes,
 * on the read thread, so nothing is shared and nothing is allocated; a push's count is
 * bounded only by the message size, so it is walked in chunks. 1024 holds a whole push of
 * BatchSize <= 1024 (the default is 100; 1000 in the benchmarks). */
#define HES_READ_CHUNK 1024

typedef struct {
  gauge_t value;
  size_t reading; /* index into push->readings: the meter number and the time */
} hes_read_converted_t;

/* Converts readings [*next, push->count) of an open plan until `out` holds HES_READ_CHUNK
 * of them or the push ends; rejects are counted and logged here, so they never reach the
 * dispatch loop. Returns how many `out` holds; *next is where the next chunk starts. */
static size_t hes_read_convert(hes_server_t *s, const hes_item_t *item,
                               const hes_session_plan_t *plan, const hes_push_t *push,
                               const uint32_t *meter, size_t *next,
                               hes_read_converted_t out[static HES_READ_CHUNK]) {
  size_t n = 0, i = *next;
  for (; i < push->count && n < HES_READ_CHUNK; i++) {
    if (meter[i] == HES_METER_NONE)
      continue;
    const hes_push_reading_t *r = &push->readings[i];
    hes_item_result_t cr = hes_item_convert(item, r->value, r->unit, &out[n].value);
    if (cr != HES_ITEM_OK) {
      atomic_fetch_add(&s->count.rejected, 1);
      HES_LOG_LIMITED(
          &s->log_value, LOG_WARNING,
          "Server \"%s\": plan %s: meter %.*s: dropped %s value \"%.64s\" unit "
          "\"%.16s\": %s",
          s->conf->name, plan->plan_id, (int)r->dev_addr_len, r->dev_addr, item->name, r->value,
          r->unit, cr == HES_ITEM_EUNIT ? "the unit does not fit the item" : "not a finite number");
      continue;
    }
    out[n++].reading = i;
  }
  *next = i;
  return n;
}

/* The hot path: every reading of every push. Nothing here allocates or formats; the value
 * list is filled once per push and only the meter, time and value change per reading. The
 * readings are converted a chunk at a time and each chunk dispatched back to back (above). */
static void hes_read_readings(void *user, const hes_session_plan_t *plan, const hes_push_t *push,
                              const uint32_t *meter) {
  const hes_read_route_t *rr = user;
  hes_server_t *s = rr->server;
  const hes_item_t *item = rr->item;
  value_list_t vl = VALUE_LIST_INIT;
  value_t v;
  vl.values = &v;
  vl.values_len = 1;
  vl.interval = hes_interval(s); /* the threshold plugin's missing-value timer is based on it */
  sstrncpy(vl.plugin, HES_PLUGIN, sizeof(vl.plugin));
  sstrncpy(vl.type, item->type, sizeof(vl.type));
  sstrncpy(vl.type_instance, item->type_instance, sizeof(vl.type_instance));
  hes_read_converted_t conv[HES_READ_CHUNK];
  uint64_t dispatched = 0;
  size_t next = 0;
  while (next < push->count) {
    size_t n = hes_read_convert(s, item, plan, push, meter, &next, conv);
    for (size_t k = 0; k < n; k++) {
      const hes_push_reading_t *r = &push->readings[conv[k].reading];
      /* A meter number is at most HES_METER_MAX_LEN characters: it fits, NUL included. */
      memcpy(vl.plugin_instance, r->dev_addr, r->dev_addr_len);
      vl.plugin_instance[r->dev_addr_len] = '\0';
      vl.time = MS_TO_CDTIME_T(r->timestamp_ms);
      v.gauge = conv[k].value;
      plugin_dispatch_values(&vl);
    }
    dispatched += n;
  }
  atomic_fetch_add(&s->count.dispatched, dispatched);
}

static const hes_session_sink_t hes_read_sink = {
    .readings = hes_read_readings,
    .missing = hes_read_missing,
    .rejected = hes_read_rejected,
};

static void hes_server_rejected(void *user, const hes_session_reject_t *why) {
  hes_count_rejected(user, why);
}

static void hes_server_broker(void *user, bool ready, const char *why) {
  hes_server_t *s = user;
  if (ready)
    INFO(HES_PLUGIN " plugin: Server \"%s\": MQTT %s:%d connected, subscribed to \"%s\".",
         s->conf->name, s->conf->mqtt_host, s->conf->mqtt_port, s->topic_filter);
  else if (!atomic_load(&hes_initialised))
    INFO(HES_PLUGIN " plugin: Server \"%s\": MQTT disconnected (shutdown).", s->conf->name);
  else /* the reason names the broker */
    WARNING(HES_PLUGIN " plugin: Server \"%s\": MQTT not connected: %s.", s->conf->name,
            why != NULL ? why : "unknown reason");
}

const hes_session_sink_t hes_server_sink = {
    .rejected = hes_server_rejected,
    .broker = hes_server_broker,
};

/* The routes of the readSingle plans, one per item. */
void hes_read_routes(hes_server_t *s) {
  for (size_t i = 0; i < s->conf->items_num; i++) {
    s->read_route_user[i] = (hes_read_route_t){.server = s, .item = s->conf->items[i]};
    s->read_routes[i] = (hes_session_route_t){
        .sink = &hes_read_sink,
        .user = &s->read_route_user[i],
        .kind = HES_PUSH_READINGS,
        .cgcode = s->conf->items[i]->cgcode,
    };
  }
}

/* ---------------------------------------------------------------------------------------
 * the read round */

static void hes_log_api_error_to(hes_server_t *s, hes_ratelimit_t *rl, int level,
                                 const hes_api_error_t *err, const char *what) {
  if (err->kind == HES_API_EHES)
    HES_LOG_LIMITED(rl, level, "Server \"%s\": %s: %s: HES code %d: %s", s->conf->name,
                    err->endpoint, what, err->code, err->msg);
  else
    HES_LOG_LIMITED(rl, level, "Server \"%s\": %s: %s: %s: %s", s->conf->name, err->endpoint, what,
                    hes_api_result_string(err->kind), err->msg);
}

void hes_log_api_error(hes_server_t *s, const hes_api_error_t *err, const char *what) {
  hes_log_api_error_to(s, &s->log_http, LOG_ERR, err, what);
}

/* Failures worth a second try within the round: the HES did not answer, answered with an
 * HTTP error, or said it failed ("System busy", the failure utilities see most). Not: bad
 * arguments, no memory, or a 200 whose body was not understood (a plan may exist then, and
 * a second request would read its meters twice). A read changes nothing on a meter, so the
 * worst a needless retry costs is one more request. */
static bool hes_read_retriable(const hes_api_error_t *err) {
  return err->kind == HES_API_ETRANSPORT || err->kind == HES_API_EHTTP || err->kind == HES_API_EHES;
}

typedef enum {
  HES_READ_ONCE,  /* a failure is final (no room to remember it for a retry) */
  HES_READ_FIRST, /* a retriable failure gets a second try later in the round */
  HES_READ_RETRY, /* the second try */
} hes_read_try_t;

/* Sends one readSingle and logs a failure: a warning when the batch gets a second try, else
 * an error (the batch has no values this round). Returns true when it is to be retried. */
static bool hes_read_batch(hes_server_t *s, const hes_meterver_t *v, size_t item, size_t first,
                           size_t n, hes_read_try_t attempt) {
  const char *first_name = NULL;
  for (size_t i = 0; i < n; i++) {
    const char *name = hes_meterver_at(v, first + i, &s->batch_index[i]);
    if (i == 0)
      first_name = name;
  }
  hes_session_request_t rq = {
      .route = &s->read_routes[item],
      .tag = (uint32_t)s->conf->items[item]->cgcode,
      .meters = s->batch_index,
      .n = n,
      .timeout = s->conf->plan_timeout,
  };
  hes_api_plan_t plan;
  hes_api_error_t err;
  if (hes_session_read_single(s->read_client, &rq, s->conf->items[item]->cgcode, &plan, &err) ==
      HES_API_OK)
    return false;
  bool again = attempt == HES_READ_FIRST && hes_read_retriable(&err);
  char what[160];
  snprintf(what, sizeof(what), "%s for %zu meter(s) from %s%s", s->conf->items[item]->name, n,
           first_name,
           again                       ? " (retry pending)"
           : attempt == HES_READ_RETRY ? " (retried)"
                                       : "");
  if (again)
    hes_log_api_error_to(s, &s->log_retry, LOG_WARNING, &err, what);
  else
    hes_log_api_error(s, &err, what);
  return again;
}

/* Sleeps until `when` (hes_clock_mono); a time already past returns at once. */
static void hes_read_wait_until(double when) {
  double wait = when - hes_clock_mono();
  if (wait <= 0)
    return;
  struct timespec ts = {.tv_sec = (time_t)wait,
                        .tv_nsec = (long)((wait - (double)(time_t)wait) * 1e9)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
}

/* Spread: request k of a round's n waits until k/n of the round's share of the Interval has
 * passed since its start. Fired at once, a round's pushes (60 of 1,000 readings at the soak's
 * load) reach collectd together and its write queue and heap take the whole burst; spread,
 * they arrive a few at a time, and the HES sees a steady load instead of a spike (its "System
 * busy" answers). A round that is behind (a slow HES) never waits; the last request starts
 * at Spread x Interval at most, before the deadline. */
static void hes_read_pace(const hes_server_t *s, double start, size_t k, size_t n) {
  if (s->conf->spread <= 0 || k == 0)
    return;
  hes_read_wait_until(start + s->conf->spread * CDTIME_T_TO_DOUBLE(hes_interval(s)) * (double)k /
                                  (double)n);
}

/* Batch b of the round: item b / per_item, its (b % per_item)th BatchSize meters. */
static bool hes_read_one(hes_server_t *s, const hes_meterver_t *v, size_t per_item, size_t b,
                         hes_read_try_t attempt) {
  size_t meters = hes_meterver_count(v), item = b / per_item,
         first = (b % per_item) * hes_batch_size(s);
  return hes_read_batch(s, v, item, first,
                        meters - first < hes_batch_size(s) ? meters - first : hes_batch_size(s),
                        attempt);
}

/* The second try of the round's failed batches, each once, paced over the first half of the
 * time the spread requests left free (Interval x (1 - Spread) / 2 after they end), so a
 * "System busy" HES gets a pause before it sees them and the pushes still come before the
 * next round. Without such a retry, a batch that failed has no values for a whole Interval,
 * and under a window of failures collectd drops its values from the cache (Timeout) and
 * creates them again when they return: a gap on the graphs and churn in collectd's heap
 * (tests/bench/RESULTS.md, issue 17). A retry starts only when the time its first try took
 * is left before the deadline: a HES that timed out once is not waited on past the round.
 * (hes_read_round retries nothing when more than half of the round failed.) */
static void hes_read_retry(hes_server_t *s, const hes_meterver_t *v, size_t per_item, double start,
                           double deadline, size_t failed) {
  double interval = CDTIME_T_TO_DOUBLE(hes_interval(s));
  double spread = s->conf->spread > 0 ? s->conf->spread : 0;
  double from = start + spread * interval, span = (1 - spread) * interval / 2;
  size_t skipped = 0;
  for (size_t k = 0; k < failed; k++) {
    hes_read_wait_until(from + span * (double)k / (double)failed);
    if (hes_clock_mono() + s->read_failed[k].took >= deadline) {
      skipped++;
      continue;
    }
    atomic_fetch_add(&s->count.read_retried, 1);
    hes_read_one(s, v, per_item, s->read_failed[k].batch, HES_READ_RETRY);
  }
  if (skipped > 0)
    HES_LOG_LIMITED(&s->log_http, LOG_ERR,
                    "Server \"%s\": no time left in the round to retry %zu failed request(s); "
                    "their meters have no values this round",
                    s->conf->name, skipped);
}

/* Reads every (item, batch) once, starting at the batch where the last round stopped, until
 * all are done or the round's deadline (Interval) passes: a slow HES then thins the rounds
 * out instead of piling them up, and every batch still gets its turn. Then the batches whose
 * request failed are tried once more (hes_read_retry). */
static void hes_read_round(hes_server_t *s, const hes_meterver_t *v, double start,
                           double deadline) {
  size_t meters = hes_meterver_count(v);
  size_t per_item = (meters + hes_batch_size(s) - 1) / hes_batch_size(s);
  size_t total = per_item * s->conf->items_num;
  if (total == 0)
    return;
  if (s->read_cursor >= total)
    s->read_cursor = 0;
  if (total > s->read_failed_cap) {
    /* grows with the meter list, never shrinks; without room the failures are not retried */
    hes_read_failed_t *grown = realloc(s->read_failed, total * sizeof(*grown));
    if (grown != NULL) {
      s->read_failed = grown;
      s->read_failed_cap = total;
    }
  }
  size_t done = 0, failed = 0;
  while (done < total) {
    if (done > 0 && hes_clock_mono() >= deadline) {
      HES_LOG_LIMITED(&s->log_http, LOG_WARNING,
                      "Server \"%s\": the read round took longer than the Interval; %zu of %zu "
                      "request(s) left for the next round",
                      s->conf->name, total - done, total);
      break; /* the retries then find no time left, and say so */
    }
    hes_read_pace(s, start, done, total);
    size_t b = s->read_cursor;
    double sent = hes_clock_mono();
    if (hes_read_one(s, v, per_item, b,
                     failed < s->read_failed_cap ? HES_READ_FIRST : HES_READ_ONCE))
      s->read_failed[failed++] = (hes_read_failed_t){.batch = b, .took = hes_clock_mono() - sent};
    s->read_cursor = (b + 1) % total;
    done++;
  }
  /* Retries are for a HES that fails now and then, not one that is down or overloaded:
   * when more than half of a round failed, a second request each would only add load. */
  if (failed > 1 && failed > done / 2) {
    HES_LOG_LIMITED(&s->log_http, LOG_ERR,
                    "Server \"%s\": %zu of %zu request(s) failed this round; not retrying them "
                    "(the HES looks down or overloaded), their meters have no values this round",
                    s->conf->name, failed, done);
    return;
  }
  hes_read_retry(s, v, per_item, start, deadline, failed);
}

int hes_read(user_data_t *ud) {
  hes_server_t *s = ud->data;
  hes_health_round_begin(s);
  /* monotonic: the round's pacing and deadline are scheduling, which a step of the wall
   * clock must neither stall nor rush (collectd's own timestamps stay its cdtime) */
  double start = hes_clock_mono();
  hes_session_expire(s->session);

  bool ready = hes_mqtt_ready(s->mqtt);
  if (!ready && !s->ready_once)
    ready = hes_mqtt_wait_ready(s->mqtt, HES_READY_WAIT);
  hes_roster_round(s, ready);
  if (!ready) {
    /* Without the subscription the results would be lost: skip the round, not the values
     * of later ones. Returning an error would make collectd back the callback off. */
    HES_LOG_LIMITED(&s->log_http, LOG_WARNING,
                    "Server \"%s\": MQTT broker %s:%d not connected; skipping this round",
                    s->conf->name, s->conf->mqtt_host, s->conf->mqtt_port);
    hes_dispatch_self(s);
    return 0;
  }
  s->ready_once = true;

  hes_api_error_t err;
  if (hes_session_token(s->read_client, &err) != HES_API_OK) {
    hes_log_api_error(s, &err, "cannot get a token");
    hes_dispatch_self(s);
    return 0;
  }
  /* One version for the round: its batches are cut from it and its indices stay valid. */
  const hes_meterver_t *v = hes_meterset_pin(s->set);
  hes_session_client_version(s->read_client, v);
  hes_read_round(s, v, start, start + CDTIME_T_TO_DOUBLE(hes_interval(s)));
  hes_session_client_version(s->read_client, NULL);
  hes_meterset_unpin(s->set, v);
  hes_dispatch_self(s);
  return 0;
}
