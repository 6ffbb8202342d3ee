/* billing.c: the frozen items (dailyBilling, monthlyBilling, loadProfile) and the seed's
 * 4.1 loop, on a thread of its own: per freeze time still incomplete, history first, then
 * a real-time read of the meters history lacked; the backfill module keeps the books, this
 * file dispatches. A round ends by RetryInterval, so a slow HES never delays the readings. */
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
 * frozen items: the 4.1 loop */

/* Records the composite entries of a push or a history page: one meter at one freeze time
 * each, its channels converted to SI. Dispatching is the billing thread's (hes_frozen_dispatch),
 * so each identifier's values go out in time order. Called from the MQTT and billing
 * threads. */
static void hes_frozen_record(hes_server_t *s, struct hes_frozen *f, const hes_push_t *push,
                              const char *source) {
  size_t i = 0;
  while (i < push->count) {
    const hes_push_reading_t *first = &push->readings[i];
    hes_backfill_value_t values[HES_BACKFILL_VALUES_MAX];
    size_t n = 0;
    for (; i < push->count && push->readings[i].entry == first->entry; i++) {
      const hes_push_reading_t *r = &push->readings[i];
      const hes_item_t *channel = hes_item_by_cgcode(r->cgcode);
      if (channel == NULL || channel->category != HES_ITEM_SINGLE)
        continue; /* the vendor's 5100-5102: not in the table, skipped by design */
      double v;
      hes_item_result_t cr = hes_item_convert(channel, r->value, r->unit, &v);
      if (cr != HES_ITEM_OK || n >= HES_BACKFILL_VALUES_MAX) {
        atomic_fetch_add(&s->count.rejected, 1);
        HES_LOG_LIMITED(&s->log_value, LOG_WARNING,
                        "Server \"%s\": %s: meter %.*s: dropped %s channel %s value \"%.64s\" "
                        "unit \"%.16s\"",
                        s->conf->name, source, (int)(r->dev_addr_len > 32 ? 32 : r->dev_addr_len),
                        r->dev_addr, f->item->name, channel->name, r->value, r->unit);
        continue;
      }
      values[n++] = (hes_backfill_value_t){.cgcode = channel->cgcode, .value = v};
    }
    /* by number: the books' list may change on the billing thread meanwhile */
    hes_backfill_record_t rr = hes_backfill_record_dev(
        f->backfill, first->dev_addr, first->dev_addr_len, first->timestamp_ms / 1000, values, n);
    if (rr == HES_BACKFILL_EINVAL) /* not (or no longer) a listed meter */
      atomic_fetch_add(&s->count.rejected, 1);
    else if (rr == HES_BACKFILL_NOT_DUE)
      HES_LOG_LIMITED(&s->log_value, LOG_WARNING,
                      "Server \"%s\": %s: meter %.*s: %s at %" PRId64
                      " is not a freeze time being collected (check TimeZone)",
                      s->conf->name, source, (int)first->dev_addr_len, first->dev_addr,
                      f->item->name, first->timestamp_ms / 1000);
  }
}

/* Dispatches at most one period per meter (the oldest waiting), and nothing within half an
 * Interval of the last dispatch (the books' take_gap): collectd's write threads may reorder
 * two values of one identifier dispatched back to back, or lose one (csv's file creation
 * races). Called before, during and after a round: the books space the calls. */
static void hes_frozen_dispatch(hes_server_t *s, struct hes_frozen *f) {
  const hes_backfill_entry_t *entries;
  size_t n = hes_backfill_take(f->backfill, hes_clock_mono(), &entries);
  if (n == 0)
    return;
  cdtime_t interval = TIME_T_TO_CDTIME_T(f->item->cgcode == 1   ? 86400
                                         : f->item->cgcode == 2 ? 86400 * 31
                                                                : HES_BACKFILL_PROFILE_STEP);
  char type_instance[DATA_MAX_NAME_LEN];
  for (size_t i = 0; i < n; i++) {
    const hes_backfill_entry_t *e = &entries[i];
    const char *meter = hes_meters_at(f->meters, e->meter);
    for (uint32_t j = 0; j < e->n; j++) {
      const hes_item_t *channel = hes_item_by_cgcode(e->values[j].cgcode);
      if (channel == NULL)
        continue;
      snprintf(type_instance, sizeof(type_instance), "%s-%s", f->item->period,
               channel->type_instance);
      hes_dispatch_gauge(meter, channel->type, type_instance, TIME_T_TO_CDTIME_T(e->freeze_time),
                         interval, e->values[j].value);
      atomic_fetch_add(&s->count.dispatched, 1);
    }
  }
  /* Right after dispatching: "collected" in the state file means dispatched. */
  int err = hes_backfill_save(f->backfill);
  if (err != 0)
    HES_LOG_LIMITED(&s->log_value, LOG_ERR,
                    "Server \"%s\": %s: cannot save the backfill state: %s (a restart may "
                    "dispatch a period again)",
                    s->conf->name, f->item->name, STRERROR(err));
}

/* ---------------------------------------------------------------------------------------
 * the frozen sink: readFrozen plans' pushes */

static void hes_frozen_entries(void *user, const hes_session_plan_t *plan, const hes_push_t *push,
                               const uint32_t *meter) {
  (void)meter; /* the backfill books take the meter by number, as for history pages */
  struct hes_frozen *f = user;
  hes_frozen_record(f->server, f, push, plan->plan_id);
}

static void hes_frozen_rejected(void *user, const hes_session_reject_t *why) {
  hes_count_rejected(((struct hes_frozen *)user)->server, why);
}

/* No missing callback: the backfill books track what is missing, per period. */
static const hes_session_sink_t hes_frozen_sink = {
    .frozen = hes_frozen_entries,
    .rejected = hes_frozen_rejected,
};

void hes_billing_routes(hes_server_t *s) {
  for (size_t i = 0; i < s->conf->frozen_num; i++) {
    struct hes_frozen *f = &s->frozen[i];
    f->server = s;
    f->route = (hes_session_route_t){
        .sink = &hes_frozen_sink,
        .user = f,
        .kind = HES_PUSH_CHANNELS,
        .one_push = true, /* the books know what is still missing */
    };
  }
}

/* ---------------------------------------------------------------------------------------
 * the 4.1 loop */

/* Whether the round must stop sending: its deadline passed, or shutdown is under way (a round
 * may otherwise outlast collectd's shutdown by up to RetryInterval). */
static bool hes_billing_over(hes_server_t *s, double deadline) {
  return atomic_load(&s->billing_stop) || hes_clock_mono() >= deadline; /* monotonic: see below */
}

/* Gathers up to batch_size meters still missing at freeze time t, from the books' index
 * *from on, as indices of the round's version (what requests are made of). A meter the
 * version no longer lists is not asked for: the books learn it at the next change. */
static size_t hes_frozen_batch(hes_server_t *s, struct hes_frozen *f, int64_t t, uint32_t *from) {
  size_t n = 0;
  while (n < hes_batch_size(s)) {
    uint32_t m = hes_backfill_next_missing(f->backfill, t, *from);
    if (m == HES_METER_NONE)
      break;
    *from = m + 1;
    const char *name = hes_meters_at(f->meters, m);
    uint32_t idx = hes_meterver_find(s->billing_ver, name, strlen(name));
    if (idx != HES_METER_NONE)
      s->billing_index[n++] = idx;
  }
  return n;
}

static void hes_frozen_log(hes_server_t *s, struct hes_frozen *f, const hes_api_error_t *err,
                           const char *when, size_t n) {
  char what[128];
  snprintf(what, sizeof(what), "%s at %s for %zu meter(s) from %s", f->item->name, when, n,
           hes_meterver_name(s->billing_ver, s->billing_index[0]));
  hes_log_api_error(s, err, what);
}

/* Returns false when the round's deadline passed. */
static bool hes_frozen_history(hes_server_t *s, struct hes_frozen *f, int64_t t, const char *when,
                               double deadline) {
  uint32_t from = 0;
  size_t n;
  while ((n = hes_frozen_batch(s, f, t, &from)) > 0 && hes_backfill_room(f->backfill) > 0) {
    if (hes_billing_over(s, deadline))
      return false;
    hes_api_error_t err;
    hes_api_history_t *h = hes_session_history_new(s->billing_client, true, s->billing_index, n,
                                                   f->item->cgcode, when, when, 100, &err);
    hes_api_result_t r = h != NULL ? HES_API_OK : err.kind;
    hes_push_t page;
    while (r == HES_API_OK) {
      r = hes_session_history_next(s->billing_client, h, &page, &err);
      if (r != HES_API_OK || page.entries == 0)
        break;
      if (page.kind == HES_PUSH_CHANNELS)
        hes_frozen_record(s, f, &page, "historyFrozen");
      if (hes_billing_over(s, deadline))
        break; /* what this page brought is kept; the rest waits for the next round */
    }
    hes_api_history_free(h);
    if (r != HES_API_OK) {
      hes_frozen_log(s, f, &err, when, n);
      return true; /* the re-read still asks the meters */
    }
  }
  return true;
}

static bool hes_frozen_read(hes_server_t *s, struct hes_frozen *f, int64_t t, const char *when,
                            double deadline) {
  uint32_t from = 0;
  size_t n;
  while ((n = hes_frozen_batch(s, f, t, &from)) > 0) {
    if (hes_billing_over(s, deadline))
      return false;
    hes_session_request_t rq = {
        .route = &f->route,
        .tag = (uint32_t)f->item->cgcode,
        .meters = s->billing_index,
        .n = n,
        .timeout = s->conf->plan_timeout,
    };
    hes_api_plan_t plan;
    hes_api_error_t err;
    if (hes_session_read_frozen(s->billing_client, &rq, f->item->cgcode, when, when, &plan, &err) !=
        HES_API_OK)
      hes_frozen_log(s, f, &err, when, n);
  }
  return true;
}

/* One round of the seed's 4.1 loop for one frozen item: for every freeze time still
 * incomplete, history first, then a real-time read of the meters history lacked. A round cut
 * short by its deadline leaves f->resume at the freeze time it was on, and the next round
 * starts there (then wraps to the older ones), so a slow HES cannot keep the newer freeze
 * times waiting behind the oldest. Returns false when the deadline passed. */
static bool hes_frozen_round_in(hes_server_t *s, struct hes_frozen *f, int64_t now,
                                double deadline) {
  int64_t times[64];
  hes_backfill_advance(f->backfill, now);
  size_t nt = hes_backfill_due(f->backfill, times, STATIC_ARRAY_SIZE(times));
  size_t start = 0;
  while (f->resume != 0 && start < nt && times[start] < f->resume)
    start++;
  if (start == nt)
    start = 0;
  for (size_t k = 0; k < nt; k++) {
    int64_t t = times[(start + k) % nt];
    char when[HES_TZ_FORMAT_SIZE];
    if (!hes_tz_format(s->conf->tz, t, when, sizeof(when)))
      continue;
    if (!hes_frozen_history(s, f, t, when, deadline) || !hes_frozen_read(s, f, t, when, deadline)) {
      f->resume = t;
      return false;
    }
    /* Periods complete now go out without waiting for the round to end (if the last
     * dispatch is half an Interval old: a meter's next period must not follow at once). */
    hes_frozen_dispatch(s, f);
  }
  f->resume = 0;
  return true;
}

/* One version of the meter list for the round: the requests' indices refer to it. */
/* now: Unix seconds (calendar: which periods are due); deadline: hes_clock_mono seconds. */
static bool hes_frozen_round(hes_server_t *s, struct hes_frozen *f, int64_t now, double deadline) {
  s->billing_ver = hes_meterset_pin(s->set);
  hes_session_client_version(s->billing_client, s->billing_ver);
  bool done = hes_frozen_round_in(s, f, now, deadline);
  hes_session_client_version(s->billing_client, NULL);
  hes_meterset_unpin(s->set, s->billing_ver);
  s->billing_ver = NULL;
  return done;
}

void hes_billing_meters(hes_server_t *s, const hes_meterver_t *v) {
  if (s->conf->frozen_num == 0 || !s->billing_sync) {
    hes_meterset_unpin(s->set, v);
    return;
  }
  pthread_mutex_lock(&s->billing_lock);
  const hes_meterver_t *stale = s->billing_next; /* not taken yet: the newer one replaces it */
  s->billing_next = v;
  pthread_mutex_unlock(&s->billing_lock);
  hes_meterset_unpin(s->set, stale);
}

/* Billing thread, between takes: the books follow the meter list. A joiner's periods are
 * asked for as at a first start, a leaver's are dropped. */
static void hes_billing_follow(hes_server_t *s) {
  pthread_mutex_lock(&s->billing_lock);
  const hes_meterver_t *next = s->billing_next;
  s->billing_next = NULL;
  pthread_mutex_unlock(&s->billing_lock);
  if (next == NULL)
    return;
  /* Each item pins the version its books borrow from and lets the previous one go: the
   * books share the published list instead of keeping copies (issue 15's 64 bytes a meter). */
  const hes_meters_t *list = hes_meterver_meters(next);
  bool all = true;
  for (size_t i = 0; i < s->conf->frozen_num; i++) {
    struct hes_frozen *f = &s->frozen[i];
    if (hes_backfill_set_meters(f->backfill, list) == 0) {
      hes_meterset_unpin(s->set, f->ver);
      f->ver = hes_meterset_repin(s->set, next);
      f->meters = list;
    } else {
      all = false;
    }
  }
  if (!all)
    ERROR(HES_PLUGIN " plugin: Server \"%s\": some frozen items keep the previous meter list "
                     "(out of memory)",
          s->conf->name);
  hes_meterset_unpin(s->set, next);
}

/* Waits up to `seconds`; returns false when the thread must stop. */
static bool hes_billing_wait(hes_server_t *s, double seconds) {
  /* billing_cond waits on CLOCK_MONOTONIC (hes_server_start): a step of the wall clock
   * neither stretches the wait nor cuts it short */
  struct timespec ts = hes_clock_after(CLOCK_MONOTONIC, seconds);
  pthread_mutex_lock(&s->billing_lock);
  if (!atomic_load(&s->billing_stop))
    pthread_cond_timedwait(&s->billing_cond, &s->billing_lock, &ts);
  bool go_on = !atomic_load(&s->billing_stop);
  pthread_mutex_unlock(&s->billing_lock);
  return go_on;
}

/* The billing thread: every Interval, dispatch what the pushes completed; every
 * RetryInterval, a 4.1 round that ends by the next one is due.
 *
 * Two clocks: when a round is due and when it is out of time (frozen_last, deadline) are
 * monotonic, so that a step of the wall clock (a VM resumed, a manual `date`, a bad NTP
 * start) neither stops the rounds for as long as the clock went back nor cuts them short;
 * which periods are due is calendar (freeze times in the HES's zone), so the round is handed
 * the wall clock for that. */
static void *hes_billing_thread(void *arg) {
  hes_server_t *s = arg;
  double step = CDTIME_T_TO_DOUBLE(hes_interval(s));
  do {
    for (size_t i = 0; i < s->conf->frozen_num; i++)
      hes_frozen_dispatch(s, &s->frozen[i]);
    hes_billing_follow(s); /* between takes: what was taken went out under the old indices */
    double now = hes_clock_mono();
    if (!hes_mqtt_ready(s->mqtt) ||
        (s->frozen_last != 0 && now - s->frozen_last < s->conf->retry_interval))
      continue;
    s->frozen_last = now;
    double deadline = now + s->conf->retry_interval;
    /* The item a round cut short was on goes first next time: none starves the others. */
    size_t first = s->frozen_next;
    for (size_t k = 0; k < s->conf->frozen_num; k++) {
      size_t i = (first + k) % s->conf->frozen_num;
      /* wall: the calendar time that says which freeze times are due */
      if (!hes_frozen_round(s, &s->frozen[i], (int64_t)hes_clock_wall(), deadline)) {
        s->frozen_next = i;
        if (!atomic_load(&s->billing_stop))
          HES_LOG_LIMITED(&s->log_http, LOG_WARNING,
                          "Server \"%s\": the billing round took longer than RetryInterval "
                          "(%.0f s); the next one resumes with %s",
                          s->conf->name, s->conf->retry_interval, s->frozen[i].item->name);
        break;
      }
    }
    for (size_t i = 0; i < s->conf->frozen_num; i++)
      hes_frozen_dispatch(s, &s->frozen[i]);
  } while (hes_billing_wait(s, step));
  return NULL;
}

int hes_billing_start(hes_server_t *s) {
  if (s->conf->frozen_num == 0)
    return 0;
  hes_api_error_t err;
  s->billing_client = hes_session_client_new(s->session, &err);
  s->billing_index = calloc(hes_batch_size(s), sizeof(*s->billing_index));
  if (s->billing_client == NULL || s->billing_index == NULL) {
    ERROR(HES_PLUGIN " plugin: Server \"%s\": cannot set up the billing thread's HTTP client: %s",
          s->conf->name, s->billing_client == NULL ? err.msg : "out of memory");
    return -1;
  }
  int status = plugin_thread_create(&s->billing_thread, hes_billing_thread, s, "hes billing");
  if (status != 0) {
    ERROR(HES_PLUGIN " plugin: Server \"%s\": cannot start the billing thread: %s", s->conf->name,
          STRERROR(status));
    return -1;
  }
  s->billing_started = true;
  return 0;
}

void hes_billing_stop(hes_server_t *s) {
  if (!s->billing_started)
    return;
  pthread_mutex_lock(&s->billing_lock);
  atomic_store(&s->billing_stop, true);
  pthread_cond_signal(&s->billing_cond);
  pthread_mutex_unlock(&s->billing_lock);
  pthread_join(s->billing_thread, NULL);
  s->billing_started = false;
}
