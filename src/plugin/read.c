/* read.c: the read round (a readSingle request per item and batch of meters, then the
 * frozen items' turn), the pushes that come back (matched to their plan, converted,
 * dispatched), and the plugin's own metrics (<server>-self). */
#include "config.h"

#include "plugin.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------
 * values */

void hes_dispatch_gauge(const char *plugin_instance, const char *type, const char *type_instance,
                        cdtime_t time, cdtime_t interval, gauge_t g) {
  value_list_t vl = VALUE_LIST_INIT;
  value_t v = {.gauge = g};
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

static void hes_dispatch_derive(const hes_server_t *s, const char *plugin_instance,
                                const char *type, const char *type_instance, cdtime_t time,
                                uint64_t d) {
  value_list_t vl = VALUE_LIST_INIT;
  value_t v = {.derive = (derive_t)d};
  vl.values = &v;
  vl.values_len = 1;
  vl.time = time;
  vl.interval = s->interval;
  sstrncpy(vl.plugin, HES_PLUGIN, sizeof(vl.plugin));
  sstrncpy(vl.plugin_instance, plugin_instance, sizeof(vl.plugin_instance));
  sstrncpy(vl.type, type, sizeof(vl.type));
  sstrncpy(vl.type_instance, type_instance, sizeof(vl.type_instance));
  plugin_dispatch_values(&vl);
}

static void hes_dispatch_self(hes_server_t *s) {
  char instance[DATA_MAX_NAME_LEN];
  snprintf(instance, sizeof(instance), "%s-self", s->name);
  cdtime_t now = cdtime();
  hes_plans_stats_t ps;
  hes_plans_stats(s->plans, &ps);
  hes_dispatch_derive(s, instance, "total_requests", "http", now, atomic_load(&s->count.http));
  hes_dispatch_derive(s, instance, "total_requests", "http_failed", now,
                      atomic_load(&s->count.http_failed));
  hes_dispatch_gauge(instance, "gauge", "plans_pending", now, s->interval,
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
  hes_dispatch_gauge(instance, "gauge", "mqtt_connected", now, s->interval,
                     hes_mqtt_ready(s->mqtt) ? 1.0 : 0.0);
  hes_dispatch_derive(s, instance, "total_operations", "relay_sent", now,
                      atomic_load(&s->count.relay_sent));
  if (hes_relay_conf != NULL && hes_relay_conf->server == s)
    hes_dispatch_derive(s, instance, "total_operations", "relay_skipped", now,
                        atomic_load(&s->count.relay_skipped));
  if (s->frozen_num > 0) {
    uint64_t expected = 0, collected = 0, missing = 0;
    for (size_t i = 0; i < s->frozen_num; i++) {
      hes_backfill_stats_t bs;
      hes_backfill_stats(s->frozen[i].backfill, &bs);
      expected += bs.expected;
      collected += bs.collected;
      missing += bs.missing + bs.pending;
    }
    hes_dispatch_gauge(instance, "gauge", "periods_expected", now, s->interval, (gauge_t)expected);
    hes_dispatch_gauge(instance, "gauge", "periods_collected", now, s->interval,
                       (gauge_t)collected);
    hes_dispatch_gauge(instance, "gauge", "periods_missing", now, s->interval, (gauge_t)missing);
  }
}

/* ---------------------------------------------------------------------------------------
 * pushes */

typedef struct {
  hes_server_t *server;
} hes_missing_ctx_t;

/* Runs with the plans lock held: count and log, nothing else. */
static void hes_missing_cb(void *ctx, const char *plan_id, uint32_t tag, void *user,
                           const uint32_t *meters, size_t n) {
  (void)user;
  hes_server_t *s = ((hes_missing_ctx_t *)ctx)->server;
  if (tag <= 3)
    return; /* frozen plans: the backfill bookkeeping tracks what is missing, per period */
  if (tag & HES_TAG_RELAY) {
    for (size_t i = 0; i < n; i++)
      hes_relay_outcome(plan_id, hes_meters_at(s->meters, meters[i]), false, "no result");
    return;
  }
  atomic_fetch_add(&s->count.missing, n);
  const hes_item_t *item = hes_item_by_cgcode((int)tag);
  char few[160] = "";
  size_t used = 0;
  for (size_t i = 0; i < n && i < 3; i++) {
    int w = snprintf(few + used, sizeof(few) - used, "%s%s", i > 0 ? ", " : "",
                     hes_meters_at(s->meters, meters[i]));
    if (w < 0 || (size_t)w >= sizeof(few) - used)
      break;
    used += (size_t)w;
  }
  HES_LOG_LIMITED(&s->log_missing, LOG_WARNING,
                  "Server \"%s\": plan %s (%s): %zu meter(s) never answered: %s%s", s->name,
                  plan_id, item != NULL ? item->name : "?", n, few, n > 3 ? ", ..." : "");
}

_Static_assert(HES_METER_MAX_LEN < DATA_MAX_NAME_LEN, "a meter number fits a plugin_instance");

/* The meter a reading is for. The HES answers in devList order and reading plans cover
 * consecutive meter indices, so the one after the previous reading's meter is tried first:
 * one comparison instead of a hash probe and its cache misses, per reading. */
static uint32_t hes_reading_meter(const hes_server_t *s, const hes_push_reading_t *r,
                                  uint32_t guess) {
  if (guess < hes_meters_count(s->meters)) {
    const char *m = hes_meters_at(s->meters, guess);
    if (strncmp(m, r->dev_addr, r->dev_addr_len) == 0 && m[r->dev_addr_len] == '\0')
      return guess;
  }
  return hes_meters_find(s->meters, r->dev_addr, r->dev_addr_len);
}

/* The hot path: every reading of every push. Nothing here allocates or formats; the value
 * list is filled once per push and only the meter, time and value change per reading. */
static void hes_handle_readings(hes_server_t *s, const hes_push_t *push,
                                const hes_plan_info_t *info) {
  const hes_item_t *plan_item = hes_item_by_cgcode((int)info->tag);
  if (plan_item == NULL)
    return;
  value_list_t vl = VALUE_LIST_INIT;
  value_t v;
  vl.values = &v;
  vl.values_len = 1;
  vl.interval = s->interval; /* the threshold plugin's missing-value timer is based on it */
  sstrncpy(vl.plugin, HES_PLUGIN, sizeof(vl.plugin));
  sstrncpy(vl.type, plan_item->type, sizeof(vl.type));
  sstrncpy(vl.type_instance, plan_item->type_instance, sizeof(vl.type_instance));
  uint64_t dispatched = 0;
  uint32_t idx = HES_METER_NONE;
  for (size_t i = 0; i < push->count; i++) {
    const hes_push_reading_t *r = &push->readings[i];
    idx = hes_reading_meter(s, r, idx + 1);
    if (idx == HES_METER_NONE) {
      atomic_fetch_add(&s->count.rejected, 1);
      HES_LOG_LIMITED(&s->log_value, LOG_WARNING,
                      "Server \"%s\": plan %s: dropped a reading for meter \"%.*s\", which is "
                      "not configured",
                      s->name, push->plan_id, (int)(r->dev_addr_len > 32 ? 32 : r->dev_addr_len),
                      r->dev_addr);
      continue;
    }
    if (r->cgcode != 0 && r->cgcode != plan_item->cgcode) {
      atomic_fetch_add(&s->count.rejected, 1);
      HES_LOG_LIMITED(&s->log_value, LOG_WARNING,
                      "Server \"%s\": plan %s: meter %s: dropped a reading of cgcode %d, the "
                      "plan asked for %s",
                      s->name, push->plan_id, hes_meters_at(s->meters, idx), r->cgcode,
                      plan_item->name);
      continue;
    }
    if (hes_plans_answer(s->plans, push->plan_id, idx) != 1)
      continue; /* a repeat: counted by plans */
    hes_item_result_t cr = hes_item_convert(plan_item, r->value, r->unit, &v.gauge);
    if (cr != HES_ITEM_OK) {
      atomic_fetch_add(&s->count.rejected, 1);
      HES_LOG_LIMITED(
          &s->log_value, LOG_WARNING,
          "Server \"%s\": plan %s: meter %s: dropped %s value \"%.64s\" unit "
          "\"%.16s\": %s",
          s->name, push->plan_id, hes_meters_at(s->meters, idx), plan_item->name, r->value, r->unit,
          cr == HES_ITEM_EUNIT ? "the unit does not fit the item" : "not a finite number");
      continue;
    }
    /* A meter number is at most HES_METER_MAX_LEN characters: it fits, NUL included. */
    memcpy(vl.plugin_instance, r->dev_addr, r->dev_addr_len);
    vl.plugin_instance[r->dev_addr_len] = '\0';
    vl.time = MS_TO_CDTIME_T(r->timestamp_ms);
    plugin_dispatch_values(&vl);
    dispatched++;
  }
  atomic_fetch_add(&s->count.dispatched, dispatched);
}

static void hes_handle_relay(hes_server_t *s, const hes_push_t *push) {
  for (size_t i = 0; i < push->count; i++) {
    const hes_push_relay_t *r = &push->relays[i];
    uint32_t idx = hes_meters_find(s->meters, r->dev_addr, r->dev_addr_len);
    if (idx == HES_METER_NONE || hes_plans_answer(s->plans, push->plan_id, idx) != 1)
      continue;
    hes_relay_outcome(push->plan_id, hes_meters_at(s->meters, idx), r->successful,
                      r->successful ? NULL : "the HES reports the operation failed");
  }
}

/* Handles one push payload. `parser` belongs to the calling thread. */
void hes_handle_push(hes_server_t *s, hes_push_parser_t *parser, const void *payload, size_t len,
                     bool parked) {
  hes_push_t push;
  char err[256];
  hes_push_result_t pr = hes_push_parse(parser, payload, len, &push, err, sizeof(err));
  if (pr != HES_PUSH_OK) {
    atomic_fetch_add(&s->count.rejected, 1);
    HES_LOG_LIMITED(&s->log_push, LOG_WARNING, "Server \"%s\": rejected a push of %zu bytes: %s",
                    s->name, len, err);
    return;
  }
  hes_plan_info_t info;
  hes_plan_lookup_t lr;
  if (parked) {
    /* Handed back by hes_plans_add: the plan is known now. */
    lr = hes_plans_lookup(s->plans, push.plan_id, hes_clock_wall(), NULL, 0, &info);
    if (lr != HES_PLAN_OPEN)
      return;
  } else {
    lr = hes_plans_lookup(s->plans, push.plan_id, hes_clock_wall(), payload, len, &info);
    if (lr == HES_PLAN_DROPPED)
      HES_LOG_LIMITED(&s->log_push, LOG_WARNING,
                      "Server \"%s\": plan %s: no room to keep a push that came before its "
                      "plan; dropped",
                      s->name, push.plan_id);
    if (lr != HES_PLAN_OPEN)
      return; /* parked, foreign, duplicate or late: counted by plans */
  }
  if (push.skipped > 0) {
    atomic_fetch_add(&s->count.rejected, push.skipped);
    HES_LOG_LIMITED(
        &s->log_push, LOG_WARNING, "Server \"%s\": plan %s: skipped %zu malformed entr%s: %s",
        s->name, push.plan_id, push.skipped, push.skipped == 1 ? "y" : "ies", push.skipped_reason);
  }
  bool relay_plan = (info.tag & HES_TAG_RELAY) != 0;
  struct hes_frozen *frozen = relay_plan ? NULL : hes_frozen_of(s, info.tag);
  if (frozen != NULL) {
    if (push.kind == HES_PUSH_CHANNELS)
      hes_frozen_record(s, frozen, &push, push.plan_id);
    /* The backfill bookkeeping knows what is still missing; the plan is done. */
    hes_plans_finish(s->plans, push.plan_id, hes_missing_cb, &(hes_missing_ctx_t){.server = s});
    return;
  }
  if (relay_plan && push.kind == HES_PUSH_RELAY)
    hes_handle_relay(s, &push);
  else if (!relay_plan && push.kind == HES_PUSH_READINGS)
    hes_handle_readings(s, &push, &info);
  else if (push.kind != HES_PUSH_EMPTY) {
    atomic_fetch_add(&s->count.rejected, 1);
    HES_LOG_LIMITED(&s->log_push, LOG_WARNING,
                    "Server \"%s\": plan %s: a push of an unexpected kind for a %s plan", s->name,
                    push.plan_id, relay_plan ? "relay" : "reading");
  }
  /* One message per plan (seed): a partial or failed result is final. */
  if (push.status != HES_PUSH_SUCCESS) {
    hes_missing_ctx_t mctx = {.server = s};
    hes_plans_finish(s->plans, push.plan_id, hes_missing_cb, &mctx);
  }
}

/* ---------------------------------------------------------------------------------------
 * the read round */

void hes_log_api_error(hes_server_t *s, const hes_api_error_t *err, const char *what) {
  if (err->kind == HES_API_EHES)
    HES_LOG_LIMITED(&s->log_http, LOG_ERR, "Server \"%s\": %s: %s: HES code %d: %s", s->name,
                    err->endpoint, what, err->code, err->msg);
  else
    HES_LOG_LIMITED(&s->log_http, LOG_ERR, "Server \"%s\": %s: %s: %s: %s", s->name, err->endpoint,
                    what, hes_api_result_string(err->kind), err->msg);
}

static void hes_read_batch(hes_server_t *s, const hes_item_t *item, size_t first, size_t n) {
  for (size_t i = 0; i < n; i++) {
    s->batch_index[i] = (uint32_t)(first + i);
    s->batch_meters[i] = hes_meters_at(s->meters, (uint32_t)(first + i));
  }
  hes_api_plan_t plan;
  hes_api_error_t err;
  double now = hes_clock_wall();
  hes_plans_request_begin(s->plans);
  atomic_fetch_add(&s->count.http, 1);
  hes_api_result_t r =
      hes_api_read_single(s->api, now, s->batch_meters, n, item->cgcode, &plan, &err);
  if (r != HES_API_OK) {
    hes_plans_request_end(s->plans);
    atomic_fetch_add(&s->count.http_failed, 1);
    char what[128];
    snprintf(what, sizeof(what), "%s for %zu meter(s) from %s", item->name, n, s->batch_meters[0]);
    hes_log_api_error(s, &err, what);
    return;
  }
  hes_parked_t *parked = NULL;
  int ar = hes_plans_add(s->plans, plan.plan_id, (uint32_t)item->cgcode, NULL, s->batch_index, n,
                         now + s->plan_timeout, &parked);
  hes_plans_request_end(s->plans);
  if (ar != 0) {
    HES_LOG_LIMITED(&s->log_http, LOG_ERR, "Server \"%s\": readSingle %s: cannot track plan %s: %s",
                    s->name, item->name, plan.plan_id,
                    ar == EEXIST ? "planId reused" : STRERROR(ar));
    return;
  }
  for (hes_parked_t *p = parked; p != NULL; p = p->next)
    hes_handle_push(s, s->read_parser, p->payload, p->len, true);
  hes_parked_free(parked);
}

int hes_read(user_data_t *ud) {
  hes_server_t *s = ud->data;
  hes_missing_ctx_t mctx = {.server = s};
  hes_plans_expire(s->plans, hes_clock_wall(), hes_missing_cb, &mctx);

  bool ready = hes_mqtt_ready(s->mqtt);
  if (!ready && !s->ready_once)
    ready = hes_mqtt_wait_ready(s->mqtt, HES_READY_WAIT);
  if (!ready) {
    /* Without the subscription the results would be lost: skip the round, not the values
     * of later ones. Returning an error would make collectd back the callback off. */
    HES_LOG_LIMITED(&s->log_http, LOG_WARNING,
                    "Server \"%s\": MQTT broker %s:%d not connected; skipping this round", s->name,
                    s->mqtt_host, s->mqtt_port);
    hes_dispatch_self(s);
    return 0;
  }
  s->ready_once = true;

  hes_api_error_t err;
  uint64_t sent = hes_api_requests(s->api);
  hes_api_result_t tr = hes_api_token(s->api, hes_clock_wall(), &err);
  atomic_fetch_add(&s->count.http, hes_api_requests(s->api) - sent);
  if (tr != HES_API_OK) {
    atomic_fetch_add(&s->count.http_failed, 1);
    hes_log_api_error(s, &err, "cannot get a token");
    hes_dispatch_self(s);
    return 0;
  }

  size_t meters = hes_meters_count(s->meters);
  for (size_t i = 0; i < s->items_num; i++)
    for (size_t first = 0; first < meters; first += s->batch_size)
      hes_read_batch(s, s->items[i], first,
                     meters - first < s->batch_size ? meters - first : s->batch_size);

  for (size_t i = 0; i < s->frozen_num; i++)
    hes_frozen_dispatch(s, &s->frozen[i]);
  double now = hes_clock_wall();
  if (s->frozen_num > 0 && (s->frozen_last == 0 || now - s->frozen_last >= s->retry_interval)) {
    s->frozen_last = now;
    for (size_t i = 0; i < s->frozen_num; i++)
      hes_frozen_round(s, &s->frozen[i], (int64_t)now);
  }
  hes_dispatch_self(s);
  return 0;
}
