/* session: the one request path (see session.h). */
#include "config.h"

#include "session.h"

#include "clock.h"

_Static_assert(HES_METER_NONE == UINT32_MAX,
               "hes_plans_answer_batch's skip mark is HES_METER_NONE");

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What a thread needs to route pushes: its parser, and the meter of each entry. */
typedef struct {
  hes_push_parser_t *parser;
  uint32_t *meter;
  size_t cap;
} worker_t;

struct hes_session {
  hes_api_config_t api; /* strings borrowed from the caller */
  const hes_meters_t *meters;
  hes_meterset_t *set; /* NULL: meters */
  hes_plans_t *plans;
  hes_mqtt_t *mqtt;
  const hes_session_sink_t *sink;
  void *user;
  double (*now)(void);
  hes_latency_t *push_latency;
  worker_t mqtt_worker; /* the MQTT thread's */
  atomic_uint_fast64_t http;
  atomic_uint_fast64_t http_failed;
};

struct hes_session_client {
  hes_session_t *s;
  hes_api_t *api;
  worker_t replay; /* parked pushes, replayed on this client's thread */
  const char **names;
  size_t names_cap;
  const hes_meterver_t *ver; /* the caller's pinned version, or NULL */
  double began;              /* hes_session_begin's `now`: plan deadlines count from the request */
};

static int worker_init(worker_t *w) {
  memset(w, 0, sizeof(*w));
  w->parser = hes_push_parser_new(0);
  return w->parser != NULL ? 0 : ENOMEM;
}

static void worker_free(worker_t *w) {
  hes_push_parser_free(w->parser);
  free(w->meter);
  memset(w, 0, sizeof(*w));
}

static bool worker_reserve(worker_t *w, size_t n) {
  if (n <= w->cap)
    return true;
  size_t cap = w->cap ? w->cap : 256;
  while (cap < n)
    cap *= 2;
  uint32_t *m = realloc(w->meter, cap * sizeof(*m));
  if (m == NULL)
    return false;
  w->meter = m;
  w->cap = cap;
  return true;
}

/* The meters one unit of work looks up: the fixed list, or a pinned version of the set. */
typedef struct {
  const hes_meters_t *m;
  const hes_meterver_t *v;
} view_t;

static view_t view_pin(hes_session_t *s) {
  return s->set != NULL ? (view_t){.v = hes_meterset_pin(s->set)} : (view_t){.m = s->meters};
}

static void view_unpin(hes_session_t *s, view_t *w) {
  if (w->v != NULL)
    hes_meterset_unpin(s->set, w->v);
  w->v = NULL;
}

static uint32_t view_find(const view_t *w, const char *dev, size_t len) {
  return w->v != NULL ? hes_meterver_find(w->v, dev, len) : hes_meters_find(w->m, dev, len);
}

/* NULL for an index the view does not hold (a meter that left). */
static const char *view_name(const view_t *w, uint32_t idx) {
  if (w->v != NULL)
    return hes_meterver_name(w->v, idx);
  return idx < hes_meters_count(w->m) ? hes_meters_at(w->m, idx) : NULL;
}

/* ---- routing ------------------------------------------------------------------------------ */

static void reject(const hes_session_sink_t *sink, void *user, const hes_session_reject_t *r) {
  if (sink != NULL && sink->rejected != NULL)
    sink->rejected(user, r);
}

static void on_missing(void *ctx, const char *plan_id, uint32_t tag, void *user,
                       const uint32_t *meters, size_t n) {
  (void)ctx;
  const hes_session_route_t *route = user;
  if (route == NULL || route->sink == NULL || route->sink->missing == NULL)
    return;
  hes_session_plan_t plan = {
      .plan_id = plan_id, .tag = tag, .route = route, .sent = NAN, .arrived = NAN};
  route->sink->missing(route->user, &plan, meters, n);
}

/* The meter of a reading. The HES answers in devList order and plans cover consecutive
 * meter indices mostly, so the one after the previous reading's meter is tried first: one
 * comparison instead of a hash probe and its cache misses, per reading. */
static uint32_t reading_meter(const view_t *m, const char *dev, size_t len, uint32_t guess) {
  const char *g = guess != HES_METER_NONE ? view_name(m, guess) : NULL;
  if (g != NULL && strncmp(g, dev, len) == 0 && g[len] == '\0')
    return guess;
  return view_find(m, dev, len);
}

/* Fills w->meter for the readings of an open plan: the meters to hand to the sink. */
static void route_readings(hes_session_t *s, const view_t *m, worker_t *w,
                           const hes_session_plan_t *plan, const hes_push_t *push) {
  const hes_session_route_t *route = plan->route;
  uint32_t idx = HES_METER_NONE;
  for (size_t i = 0; i < push->count; i++) {
    const hes_push_reading_t *r = &push->readings[i];
    idx = reading_meter(m, r->dev_addr, r->dev_addr_len, idx + 1);
    w->meter[i] = HES_METER_NONE;
    if (idx == HES_METER_NONE) {
      hes_session_reject_t rj = {.kind = HES_SESSION_REJECT_METER,
                                 .plan_id = plan->plan_id,
                                 .count = 1,
                                 .dev = r->dev_addr,
                                 .dev_len = r->dev_addr_len};
      reject(route->sink, route->user, &rj);
      continue;
    }
    if (route->cgcode != 0 && r->cgcode != 0 && r->cgcode != route->cgcode) {
      hes_session_reject_t rj = {.kind = HES_SESSION_REJECT_CGCODE,
                                 .plan_id = plan->plan_id,
                                 .count = 1,
                                 .meter = idx,
                                 .cgcode = r->cgcode};
      reject(route->sink, route->user, &rj);
      continue;
    }
    w->meter[i] = idx;
  }
  /* One lock and one lookup for the push: repeats (counted by plans) and meters not in the
   * plan become HES_METER_NONE. */
  size_t kept = hes_plans_answer_batch(s->plans, plan->plan_id, w->meter, push->count);
  /* Per push, not per reading: one relaxed add per bucket, sum and max. */
  hes_latency_record_n(s->push_latency, plan->arrived - plan->sent, kept);
}

/* Frozen entries: several per meter, each of the plan's meters given. */
static void route_channels(hes_session_t *s, const view_t *m, worker_t *w,
                           const hes_session_plan_t *plan, const hes_push_t *push) {
  uint32_t idx = HES_METER_NONE;
  for (size_t i = 0; i < push->count; i++) {
    const hes_push_reading_t *r = &push->readings[i];
    if (i == 0 || r->entry != push->readings[i - 1].entry) {
      idx = view_find(m, r->dev_addr, r->dev_addr_len);
      if (idx != HES_METER_NONE && hes_plans_answer(s->plans, plan->plan_id, idx) < 0)
        idx = HES_METER_NONE; /* not one of the plan's meters */
    }
    w->meter[i] = idx;
  }
}

static void route_relays(hes_session_t *s, const view_t *m, worker_t *w,
                         const hes_session_plan_t *plan, const hes_push_t *push) {
  for (size_t i = 0; i < push->count; i++) {
    const hes_push_relay_t *r = &push->relays[i];
    uint32_t idx = view_find(m, r->dev_addr, r->dev_addr_len);
    w->meter[i] = idx != HES_METER_NONE && hes_plans_answer(s->plans, plan->plan_id, idx) == 1
                      ? idx
                      : HES_METER_NONE;
  }
}

/* Handles one push with the worker's parser. parked: handed back by hes_plans_add, its
 * plan known now, arrived when it was parked; otherwise arrived now. */
static void route_push(hes_session_t *s, worker_t *w, const void *payload, size_t len, bool parked,
                       double arrived) {
  hes_push_t push;
  char why[256];
  if (hes_push_parse(w->parser, payload, len, &push, why, sizeof(why)) != HES_PUSH_OK) {
    hes_session_reject_t rj = {
        .kind = HES_SESSION_REJECT_PARSE, .plan_id = "", .len = len, .count = 1, .detail = why};
    reject(s->sink, s->user, &rj);
    return;
  }
  hes_plan_info_t info;
  double now = parked ? s->now() : arrived;
  hes_plan_lookup_t lr = hes_plans_lookup(s->plans, push.plan_id, now, parked ? NULL : payload,
                                          parked ? 0 : len, &info);
  if (lr == HES_PLAN_DROPPED) {
    hes_session_reject_t rj = {
        .kind = HES_SESSION_REJECT_DROPPED, .plan_id = push.plan_id, .len = len, .count = 1};
    reject(s->sink, s->user, &rj);
  }
  if (lr != HES_PLAN_OPEN)
    return; /* parked, foreign, duplicate or late: counted by plans */
  const hes_session_route_t *route = info.user;
  const hes_session_sink_t *sink = route->sink;
  hes_session_plan_t plan = {.plan_id = push.plan_id,
                             .tag = info.tag,
                             .route = route,
                             .sent = info.sent,
                             .arrived = arrived};
  if (push.skipped > 0) {
    hes_session_reject_t rj = {.kind = HES_SESSION_REJECT_SKIPPED,
                               .plan_id = push.plan_id,
                               .len = len,
                               .count = push.skipped,
                               .detail = push.skipped_reason};
    reject(sink, route->user, &rj);
  }
  if (push.kind != HES_PUSH_EMPTY && push.kind != route->kind) {
    /* Not this plan's result: the plan goes on waiting for one (or expires). */
    hes_session_reject_t rj = {
        .kind = HES_SESSION_REJECT_KIND, .plan_id = push.plan_id, .len = len, .count = 1};
    reject(sink, route->user, &rj);
    return;
  }
  if (route->kind == HES_PUSH_ARCHIVE)
    /* The stand-in meter answered: the archive (or an empty one) is the whole result, so
     * only a plan that never got one reports it missing. */
    (void)hes_plans_answer(s->plans, push.plan_id, 0);
  if (push.kind == HES_PUSH_ARCHIVE) {
    if (sink->archive != NULL)
      sink->archive(route->user, &plan, &push);
  } else if (push.kind != HES_PUSH_EMPTY) {
    if (!worker_reserve(w, push.count)) {
      hes_session_reject_t rj = {.kind = HES_SESSION_REJECT_SKIPPED,
                                 .plan_id = push.plan_id,
                                 .len = len,
                                 .count = push.count,
                                 .detail = "out of memory"};
      reject(sink, route->user, &rj);
    } else {
      /* One version for the whole message: its indices stay valid while the sink runs. */
      view_t m = view_pin(s);
      if (push.kind == HES_PUSH_READINGS) {
        route_readings(s, &m, w, &plan, &push);
        if (sink->readings != NULL)
          sink->readings(route->user, &plan, &push, w->meter);
      } else if (push.kind == HES_PUSH_CHANNELS) {
        route_channels(s, &m, w, &plan, &push);
        if (sink->frozen != NULL)
          sink->frozen(route->user, &plan, &push, w->meter);
      } else if (push.kind == HES_PUSH_RELAY) {
        route_relays(s, &m, w, &plan, &push);
        if (sink->relay != NULL)
          sink->relay(route->user, &plan, &push, w->meter);
      }
      view_unpin(s, &m);
    }
  }
  /* One message per plan (seed): a partial or failed result is final. */
  if (route->one_push || push.status != HES_PUSH_SUCCESS) {
    hes_plans_finish(s->plans, push.plan_id, on_missing, NULL);
    if (sink->done != NULL)
      sink->done(route->user, &plan, push.status);
  }
}

static void on_message(void *ctx, const char *topic, const void *payload, size_t len) {
  (void)topic; /* the planId in the payload is what counts: the seed's topics disagree */
  hes_session_t *s = ctx;
  route_push(s, &s->mqtt_worker, payload, len, false, s->now());
}

static void on_state(void *ctx, bool ready, const char *why) {
  hes_session_t *s = ctx;
  if (s->sink != NULL && s->sink->broker != NULL)
    s->sink->broker(s->user, ready, why);
}

void hes_session_push(hes_session_t *s, const void *payload, size_t len) {
  route_push(s, &s->mqtt_worker, payload, len, false, s->now());
}

size_t hes_session_forget(hes_session_t *s, const uint32_t *meters, size_t n) {
  return hes_plans_forget(s->plans, meters, n);
}

size_t hes_session_expire(hes_session_t *s) {
  return hes_plans_expire(s->plans, s->now(), on_missing, NULL);
}

/* ---- the session -------------------------------------------------------------------------- */

hes_session_t *hes_session_new(const hes_session_config_t *cfg, char *why, size_t whylen) {
  hes_session_t *s = calloc(1, sizeof(*s));
  if (s == NULL) {
    snprintf(why, whylen, "out of memory");
    return NULL;
  }
  s->api = *cfg->api;
  s->meters = cfg->meters;
  s->set = cfg->set;
  s->sink = cfg->sink;
  s->user = cfg->user;
  s->now = cfg->now != NULL ? cfg->now : hes_clock_mono;
  s->push_latency = cfg->push_latency;
  atomic_init(&s->http, 0);
  atomic_init(&s->http_failed, 0);
  s->plans = hes_plans_new(cfg->plans);
  if (s->plans == NULL || worker_init(&s->mqtt_worker) != 0) {
    snprintf(why, whylen, "out of memory");
    hes_session_free(s);
    return NULL;
  }
  if (cfg->mqtt != NULL) {
    hes_mqtt_config_t mc = *cfg->mqtt;
    mc.on_message = on_message;
    mc.on_state = on_state;
    mc.ctx = s;
    s->mqtt = hes_mqtt_new(&mc, why, whylen);
    if (s->mqtt == NULL) {
      hes_session_free(s);
      return NULL;
    }
  }
  return s;
}

void hes_session_free(hes_session_t *s) {
  if (s == NULL)
    return;
  hes_mqtt_free(s->mqtt);
  hes_plans_free(s->plans);
  worker_free(&s->mqtt_worker);
  free(s);
}

hes_mqtt_t *hes_session_mqtt(hes_session_t *s) {
  return s->mqtt;
}

double hes_session_now(const hes_session_t *s) {
  return s->now();
}

void hes_session_stats(hes_session_t *s, hes_session_stats_t *out) {
  out->http = atomic_load(&s->http);
  out->http_failed = atomic_load(&s->http_failed);
  hes_plans_stats(s->plans, &out->plans);
}

/* ---- clients ------------------------------------------------------------------------------ */

hes_session_client_t *hes_session_client_new(hes_session_t *s, hes_api_error_t *err) {
  hes_session_client_t *c = calloc(1, sizeof(*c));
  if (c == NULL || worker_init(&c->replay) != 0) {
    if (c != NULL)
      worker_free(&c->replay);
    free(c);
    memset(err, 0, sizeof(*err));
    err->kind = HES_API_ENOMEM;
    snprintf(err->msg, sizeof(err->msg), "out of memory");
    return NULL;
  }
  c->s = s;
  c->api = hes_api_new(&s->api, err);
  if (c->api == NULL) {
    worker_free(&c->replay);
    free(c);
    return NULL;
  }
  return c;
}

void hes_session_client_free(hes_session_client_t *c) {
  if (c == NULL)
    return;
  hes_api_free(c->api);
  worker_free(&c->replay);
  free(c->names);
  free(c);
}

/* Counts the requests a call sent, and the call when it failed. */
static hes_api_result_t counted(hes_session_client_t *c, uint64_t before, hes_api_result_t r) {
  atomic_fetch_add(&c->s->http, hes_api_requests(c->api) - before);
  if (r != HES_API_OK)
    atomic_fetch_add(&c->s->http_failed, 1);
  return r;
}

hes_api_result_t hes_session_token(hes_session_client_t *c, hes_api_error_t *err) {
  uint64_t before = hes_api_requests(c->api);
  return counted(c, before, hes_api_token(c->api, c->s->now(), err));
}

void hes_session_begin(hes_session_client_t *c) {
  c->began = c->s->now();
  hes_plans_request_begin(c->s->plans);
}

void hes_session_end(hes_session_client_t *c) {
  hes_plans_request_end(c->s->plans);
}

int hes_session_add(hes_session_client_t *c, const hes_session_route_t *route, uint32_t tag,
                    const char *plan_id, const uint32_t *meters, size_t n, double timeout) {
  hes_parked_t *parked = NULL;
  int r = hes_plans_add_sent(c->s->plans, plan_id, tag, (void *)route, meters, n, c->began,
                             c->began + timeout, &parked);
  for (hes_parked_t *p = parked; p != NULL; p = p->next)
    route_push(c->s, &c->replay, p->payload, p->len, true, p->received);
  hes_parked_free(parked);
  return r;
}

void hes_session_client_version(hes_session_client_t *c, const hes_meterver_t *v) {
  c->ver = v;
}

/* The meter numbers of rq's indices, in the client's scratch, looked up in the client's
 * version, else in *pinned (pinned here; the caller unpins it once the request is sent).
 * NULL: no memory, or an index the version does not hold (*bad set). */
static const char *const *names_of(hes_session_client_t *c, const uint32_t *meters, size_t n,
                                   view_t *pinned, bool *bad) {
  *bad = false;
  if (n > c->names_cap) {
    const char **nn = realloc(c->names, n * sizeof(*nn));
    if (nn == NULL)
      return NULL;
    c->names = nn;
    c->names_cap = n;
  }
  view_t given = {.v = c->ver};
  const view_t *m = &given;
  if (c->ver == NULL) {
    *pinned = view_pin(c->s);
    m = pinned;
  }
  for (size_t i = 0; i < n; i++) {
    c->names[i] = view_name(m, meters[i]);
    if (c->names[i] == NULL) {
      *bad = true;
      return NULL;
    }
  }
  return c->names;
}

static hes_api_result_t nomem(hes_api_error_t *err, const char *endpoint) {
  memset(err, 0, sizeof(*err));
  err->kind = HES_API_ENOMEM;
  snprintf(err->endpoint, sizeof(err->endpoint), "%s", endpoint);
  snprintf(err->msg, sizeof(err->msg), "out of memory");
  return HES_API_ENOMEM;
}

static hes_api_result_t bad_index(hes_api_error_t *err, const char *endpoint) {
  memset(err, 0, sizeof(*err));
  err->kind = HES_API_EINVAL;
  snprintf(err->endpoint, sizeof(err->endpoint), "%s", endpoint);
  snprintf(err->msg, sizeof(err->msg), "a meter index that is not in the meter list");
  return HES_API_EINVAL;
}

typedef enum { CALL_SINGLE, CALL_FROZEN, CALL_RELAY, CALL_ARCHIVE, CALL_ADD, CALL_REMOVE } call_t;

typedef struct {
  call_t call;
  int code; /* cgcode or control mode */
  const char *start, *end, *dcu;
  const hes_api_archive_t *archives;
  const char *const *dcu_meters;
  size_t dcu_n;
} call_args_t;

static const char *const call_names[] = {"readSingle",  "readFrozen", "relay",
                                         "readArchive", "addArchive", "removeArchive"};

/* begin, the call, add, end: the one sequence every request that makes a plan goes through. */
static hes_api_result_t request(hes_session_client_t *c, const hes_session_request_t *rq,
                                const call_args_t *a, hes_api_plan_t *plan, hes_api_error_t *err) {
  static const uint32_t stand_in = 0;
  bool dcu = a->call >= CALL_ARCHIVE;
  const uint32_t *meters = dcu ? &stand_in : rq->meters;
  size_t n = dcu ? 1 : rq->n;
  view_t pinned = {0};
  bool bad = false;
  const char *const *names = dcu ? NULL : names_of(c, rq->meters, rq->n, &pinned, &bad);
  if (!dcu && names == NULL) {
    view_unpin(c->s, &pinned);
    return bad ? bad_index(err, call_names[a->call]) : nomem(err, call_names[a->call]);
  }

  hes_session_begin(c);
  uint64_t before = hes_api_requests(c->api);
  double now = c->began;
  hes_api_result_t r = HES_API_EINVAL;
  switch (a->call) {
  case CALL_SINGLE:
    r = hes_api_read_single(c->api, now, names, n, a->code, plan, err);
    break;
  case CALL_FROZEN:
    r = hes_api_read_frozen(c->api, now, names, n, a->code, a->start, a->end, plan, err);
    break;
  case CALL_RELAY:
    r = hes_api_relay(c->api, now, names, n, a->code, plan, err);
    break;
  case CALL_ARCHIVE:
    r = hes_api_read_archive(c->api, now, a->dcu, plan, err);
    break;
  case CALL_ADD:
    r = hes_api_add_archive(c->api, now, a->dcu, a->archives, a->dcu_n, plan, err);
    break;
  case CALL_REMOVE:
    r = hes_api_remove_archive(c->api, now, a->dcu, a->dcu_meters, a->dcu_n, plan, err);
    break;
  }
  counted(c, before, r);
  view_unpin(c->s, &pinned);
  if (r != HES_API_OK) {
    hes_session_end(c);
    return r;
  }
  if (rq->sent != NULL)
    rq->sent(rq->ctx, plan);
  int ar = hes_session_add(c, rq->route, rq->tag, plan->plan_id, meters, n, rq->timeout);
  hes_session_end(c);
  if (ar != 0) {
    memset(err, 0, sizeof(*err));
    err->kind = HES_API_EANSWER;
    snprintf(err->endpoint, sizeof(err->endpoint), "%s", call_names[a->call]);
    snprintf(err->msg, sizeof(err->msg), "cannot track plan %s: %s", plan->plan_id,
             ar == EEXIST ? "the HES reused a planId" : strerror(ar));
    return HES_API_EANSWER;
  }
  return HES_API_OK;
}

hes_api_result_t hes_session_read_single(hes_session_client_t *c, const hes_session_request_t *rq,
                                         int cgcode, hes_api_plan_t *plan, hes_api_error_t *err) {
  call_args_t a = {.call = CALL_SINGLE, .code = cgcode};
  return request(c, rq, &a, plan, err);
}

hes_api_result_t hes_session_read_frozen(hes_session_client_t *c, const hes_session_request_t *rq,
                                         int cgcode, const char *start, const char *end,
                                         hes_api_plan_t *plan, hes_api_error_t *err) {
  call_args_t a = {.call = CALL_FROZEN, .code = cgcode, .start = start, .end = end};
  return request(c, rq, &a, plan, err);
}

hes_api_result_t hes_session_relay(hes_session_client_t *c, const hes_session_request_t *rq,
                                   int control_mode, hes_api_plan_t *plan, hes_api_error_t *err) {
  call_args_t a = {.call = CALL_RELAY, .code = control_mode};
  return request(c, rq, &a, plan, err);
}

hes_api_result_t hes_session_read_archive(hes_session_client_t *c, const hes_session_request_t *rq,
                                          const char *dcu, hes_api_plan_t *plan,
                                          hes_api_error_t *err) {
  call_args_t a = {.call = CALL_ARCHIVE, .dcu = dcu};
  return request(c, rq, &a, plan, err);
}

hes_api_result_t hes_session_add_archive(hes_session_client_t *c, const hes_session_request_t *rq,
                                         const char *dcu, const hes_api_archive_t *archives,
                                         size_t n, hes_api_plan_t *plan, hes_api_error_t *err) {
  call_args_t a = {.call = CALL_ADD, .dcu = dcu, .archives = archives, .dcu_n = n};
  return request(c, rq, &a, plan, err);
}

hes_api_result_t hes_session_remove_archive(hes_session_client_t *c,
                                            const hes_session_request_t *rq, const char *dcu,
                                            const char *const *meters, size_t n,
                                            hes_api_plan_t *plan, hes_api_error_t *err) {
  call_args_t a = {.call = CALL_REMOVE, .dcu = dcu, .dcu_meters = meters, .dcu_n = n};
  return request(c, rq, &a, plan, err);
}

hes_api_history_t *hes_session_history_new(hes_session_client_t *c, bool frozen,
                                           const uint32_t *meters, size_t n, int cgcode,
                                           const char *start, const char *end, int page_size,
                                           hes_api_error_t *err) {
  view_t pinned = {0};
  bool bad = false;
  const char *endpoint = frozen ? "historyFrozen" : "historySingle";
  const char *const *names = names_of(c, meters, n, &pinned, &bad);
  if (names == NULL) {
    view_unpin(c->s, &pinned);
    if (bad)
      bad_index(err, endpoint);
    else
      nomem(err, endpoint);
    atomic_fetch_add(&c->s->http_failed, 1);
    return NULL;
  }
  /* the request body is built here: the names are not kept */
  hes_api_history_t *h =
      hes_api_history_new(c->api, frozen, names, n, cgcode, start, end, page_size, err);
  view_unpin(c->s, &pinned);
  if (h == NULL)
    atomic_fetch_add(&c->s->http_failed, 1);
  return h;
}

hes_api_result_t hes_session_history_next(hes_session_client_t *c, hes_api_history_t *h,
                                          hes_push_t *page, hes_api_error_t *err) {
  uint64_t before = hes_api_requests(c->api);
  return counted(c, before, hes_api_history_next(h, c->s->now(), page, err));
}
