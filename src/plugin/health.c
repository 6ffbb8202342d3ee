/* health.c: how the HES is doing (interface.md section 3), per round and per server, in
 * <server>-self: the HTTP requests' latency, the push latency (a plan's request sent to each
 * meter's reading arriving), how long the round took and whether it overran its Interval,
 * and the broker's reconnects.
 *
 * The threads record into hes_health_state_t (lock-free histograms, see latency.h): every
 * session client's api records its HTTP requests, the session its readings pushes. The read
 * thread takes the round's figures at the end of its round and dispatches them. */
#include "config.h"

#include "plugin.h"

/* One round's figures. */
typedef struct {
  hes_latency_summary_t http;
  hes_latency_summary_t push;
  double round_duration; /* seconds; < 0: no round to report */
  uint64_t round_overruns;
  uint64_t mqtt_reconnects;
} hes_health_t;

void hes_health_init(hes_server_t *s) {
  hes_latency_init(&s->health.http);
  hes_latency_init(&s->health.push);
  s->health.round_start = 0;
  s->health.round_overruns = 0;
}

/* A round with no HTTP request or no push dispatches no latency of that kind: a 0 would
 * read as "fast". The counters go out every round. */
static void hes_health_dispatch(const char *server, cdtime_t interval, const hes_health_t *h) {
  char instance[DATA_MAX_NAME_LEN];
  snprintf(instance, sizeof(instance), "%s-self", server);
  cdtime_t now = cdtime();
  if (h->http.count > 0) {
    hes_dispatch_value(instance, "latency", "http", now, interval,
                       (value_t){.gauge = h->http.mean});
    hes_dispatch_value(instance, "latency", "http-max", now, interval,
                       (value_t){.gauge = h->http.max});
  }
  if (h->push.count > 0) {
    hes_dispatch_value(instance, "latency", "push-p50", now, interval,
                       (value_t){.gauge = h->push.p50});
    hes_dispatch_value(instance, "latency", "push-p95", now, interval,
                       (value_t){.gauge = h->push.p95});
    hes_dispatch_value(instance, "latency", "push-max", now, interval,
                       (value_t){.gauge = h->push.max});
  }
  if (h->round_duration >= 0)
    hes_dispatch_value(instance, "duration", "round", now, interval,
                       (value_t){.gauge = h->round_duration});
  hes_dispatch_value(instance, "total_operations", "round_overrun", now, interval,
                     (value_t){.derive = (derive_t)h->round_overruns});
  hes_dispatch_value(instance, "total_operations", "mqtt_reconnect", now, interval,
                     (value_t){.derive = (derive_t)h->mqtt_reconnects});
}

void hes_health_round_begin(hes_server_t *s) {
  s->health.round_start = hes_clock_mono();
}

/* Read thread, at the end of a round (also a skipped one). */
void hes_health_round_end(hes_server_t *s) {
  hes_health_t h = {.round_duration = -1};
  if (s->health.round_start > 0) {
    h.round_duration = hes_clock_mono() - s->health.round_start;
    if (h.round_duration > CDTIME_T_TO_DOUBLE(hes_interval(s)))
      s->health.round_overruns++;
  }
  hes_latency_take(&s->health.http, &h.http);
  hes_latency_take(&s->health.push, &h.push);
  h.round_overruns = s->health.round_overruns;
  h.mqtt_reconnects = hes_mqtt_reconnects(s->mqtt);
  hes_health_dispatch(s->conf->name, hes_interval(s), &h);
}
