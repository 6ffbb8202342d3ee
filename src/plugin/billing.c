/* billing.c: the frozen items (dailyBilling, monthlyBilling, loadProfile) and the seed's
 * 4.1 loop: per freeze time still incomplete, history first, then a real-time read of the
 * meters history lacked; the backfill module keeps the books, this file dispatches. */
#include "config.h"

#include "plugin.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------
 * frozen items: the 4.1 loop */

struct hes_frozen *hes_frozen_of(hes_server_t *s, uint32_t cgcode) {
  for (size_t i = 0; i < s->frozen_num; i++)
    if ((uint32_t)s->frozen[i].item->cgcode == cgcode)
      return &s->frozen[i];
  return NULL;
}

/* Records the composite entries of a push or a history page: one meter at one freeze time
 * each, its channels converted to SI. Dispatching is the read thread's (hes_frozen_dispatch),
 * so each identifier's values go out in time order. Called from the MQTT and read threads. */
void hes_frozen_record(hes_server_t *s, struct hes_frozen *f, const hes_push_t *push,
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
                        s->name, source, (int)(r->dev_addr_len > 32 ? 32 : r->dev_addr_len),
                        r->dev_addr, f->item->name, channel->name, r->value, r->unit);
        continue;
      }
      values[n++] = (hes_backfill_value_t){.cgcode = channel->cgcode, .value = v};
    }
    uint32_t idx = hes_meters_find(s->meters, first->dev_addr, first->dev_addr_len);
    if (idx == HES_METER_NONE) {
      atomic_fetch_add(&s->count.rejected, 1);
      continue;
    }
    hes_backfill_record_t rr =
        hes_backfill_record(f->backfill, idx, first->timestamp_ms / 1000, values, n);
    if (rr == HES_BACKFILL_NOT_DUE)
      HES_LOG_LIMITED(&s->log_value, LOG_WARNING,
                      "Server \"%s\": %s: meter %s: %s at %" PRId64
                      " is not a freeze time being collected (check TimeZone)",
                      s->name, source, hes_meters_at(s->meters, idx), f->item->name,
                      first->timestamp_ms / 1000);
  }
}

/* Dispatches at most one period per meter (the oldest waiting): collectd's write threads
 * may reorder two values of one identifier dispatched back to back. */
void hes_frozen_dispatch(hes_server_t *s, struct hes_frozen *f) {
  const hes_backfill_entry_t *entries;
  size_t n = hes_backfill_take(f->backfill, &entries);
  if (n == 0)
    return;
  cdtime_t interval = TIME_T_TO_CDTIME_T(f->item->cgcode == 1   ? 86400
                                         : f->item->cgcode == 2 ? 86400 * 31
                                                                : HES_BACKFILL_PROFILE_STEP);
  char type_instance[DATA_MAX_NAME_LEN];
  for (size_t i = 0; i < n; i++) {
    const hes_backfill_entry_t *e = &entries[i];
    const char *meter = hes_meters_at(s->meters, e->meter);
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
                    s->name, f->item->name, STRERROR(err));
}

/* Gathers up to batch_size meters still missing at freeze time t, from index *from on. */
static size_t hes_frozen_batch(hes_server_t *s, struct hes_frozen *f, int64_t t, uint32_t *from) {
  size_t n = 0;
  while (n < s->batch_size) {
    uint32_t m = hes_backfill_next_missing(f->backfill, t, *from);
    if (m == HES_METER_NONE)
      break;
    s->batch_index[n] = m;
    s->batch_meters[n] = hes_meters_at(s->meters, m);
    n++;
    *from = m + 1;
  }
  return n;
}

static void hes_frozen_history(hes_server_t *s, struct hes_frozen *f, int64_t t, const char *when) {
  uint32_t from = 0;
  size_t n;
  while ((n = hes_frozen_batch(s, f, t, &from)) > 0 && hes_backfill_room(f->backfill) > 0) {
    hes_api_error_t err;
    uint64_t sent = hes_api_requests(s->api);
    hes_api_history_t *h = hes_api_history_new(s->api, true, s->batch_meters, n, f->item->cgcode,
                                               when, when, 100, &err);
    hes_api_result_t r = h != NULL ? HES_API_OK : err.kind;
    hes_push_t page;
    while (r == HES_API_OK) {
      r = hes_api_history_next(h, hes_clock_wall(), &page, &err);
      if (r != HES_API_OK || page.entries == 0)
        break;
      if (page.kind == HES_PUSH_CHANNELS)
        hes_frozen_record(s, f, &page, "historyFrozen");
    }
    hes_api_history_free(h);
    atomic_fetch_add(&s->count.http, hes_api_requests(s->api) - sent);
    if (r != HES_API_OK) {
      atomic_fetch_add(&s->count.http_failed, 1);
      char what[128];
      snprintf(what, sizeof(what), "%s at %s for %zu meter(s) from %s", f->item->name, when, n,
               s->batch_meters[0]);
      hes_log_api_error(s, &err, what);
      return; /* the re-read below still asks the meters */
    }
  }
}

static void hes_frozen_read(hes_server_t *s, struct hes_frozen *f, int64_t t, const char *when) {
  uint32_t from = 0;
  size_t n;
  while ((n = hes_frozen_batch(s, f, t, &from)) > 0) {
    hes_api_plan_t plan;
    hes_api_error_t err;
    double now = hes_clock_wall();
    hes_plans_request_begin(s->plans);
    uint64_t sent = hes_api_requests(s->api);
    hes_api_result_t r = hes_api_read_frozen(s->api, now, s->batch_meters, n, f->item->cgcode, when,
                                             when, &plan, &err);
    atomic_fetch_add(&s->count.http, hes_api_requests(s->api) - sent);
    if (r != HES_API_OK) {
      hes_plans_request_end(s->plans);
      atomic_fetch_add(&s->count.http_failed, 1);
      char what[128];
      snprintf(what, sizeof(what), "%s at %s for %zu meter(s) from %s", f->item->name, when, n,
               s->batch_meters[0]);
      hes_log_api_error(s, &err, what);
      continue;
    }
    hes_parked_t *parked = NULL;
    int ar = hes_plans_add(s->plans, plan.plan_id, (uint32_t)f->item->cgcode, NULL, s->batch_index,
                           n, now + s->plan_timeout, &parked);
    hes_plans_request_end(s->plans);
    if (ar != 0)
      continue;
    for (hes_parked_t *p = parked; p != NULL; p = p->next)
      hes_handle_push(s, s->read_parser, p->payload, p->len, true);
    hes_parked_free(parked);
  }
}

/* One round of the seed's 4.1 loop for one frozen item: for every freeze time still
 * incomplete, history first, then a real-time read of the meters history lacked. */
void hes_frozen_round(hes_server_t *s, struct hes_frozen *f, int64_t now) {
  int64_t times[64];
  hes_backfill_advance(f->backfill, now);
  size_t nt = hes_backfill_due(f->backfill, times, STATIC_ARRAY_SIZE(times));
  for (size_t i = 0; i < nt; i++) {
    char when[HES_TZ_FORMAT_SIZE];
    if (!hes_tz_format(s->tz, times[i], when, sizeof(when)))
      continue;
    hes_frozen_history(s, f, times[i], when);
    hes_frozen_read(s, f, times[i], when);
  }
}
