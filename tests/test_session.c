/* Tests for session: begin/add/end, parking of early pushes and their replay, routing of
 * each push to its plan's sink, rejections, and expiry reported after every lock is
 * released (a sink that re-enters the session must not deadlock). No network: pushes are
 * fed with hes_session_push, plans registered with hes_session_begin/add/end. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdatomic.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session.h"

/* ---- a recording sink ------------------------------------------------------------------ */

#define REC_MAX 64

typedef struct {
  const char *name; /* which sink */
  size_t readings, frozen, relays, archives, done, missing_calls, rejected_calls;
  uint32_t meters[REC_MAX]; /* meters handed over, in order */
  size_t nmeters;
  uint32_t missing[REC_MAX];
  size_t nmissing;
  uint32_t last_tag;
  char last_plan[64];
  double last_sent, last_arrived;
  hes_push_status_t last_status;
  hes_session_reject_kind_t reject_kinds[REC_MAX];
  size_t rejected_count; /* sum of count */
  size_t broker_calls;
  /* re-entry: the missing callback registers a follow-up plan through this client */
  hes_session_t *reenter_session;
  hes_session_client_t *reenter;
  const hes_session_route_t *reenter_route;
} rec_t;

static void rec_entries(rec_t *r, const hes_session_plan_t *plan, const hes_push_t *push,
                        const uint32_t *meter) {
  r->last_tag = plan->tag;
  r->last_sent = plan->sent;
  r->last_arrived = plan->arrived;
  snprintf(r->last_plan, sizeof(r->last_plan), "%s", plan->plan_id);
  for (size_t i = 0; i < push->count; i++)
    if (meter[i] != HES_METER_NONE && r->nmeters < REC_MAX)
      r->meters[r->nmeters++] = meter[i];
}

static void on_readings(void *user, const hes_session_plan_t *plan, const hes_push_t *push,
                        const uint32_t *meter) {
  rec_t *r = user;
  r->readings++;
  rec_entries(r, plan, push, meter);
}

static void on_frozen(void *user, const hes_session_plan_t *plan, const hes_push_t *push,
                      const uint32_t *meter) {
  rec_t *r = user;
  r->frozen++;
  rec_entries(r, plan, push, meter);
}

static void on_relay(void *user, const hes_session_plan_t *plan, const hes_push_t *push,
                     const uint32_t *meter) {
  rec_t *r = user;
  r->relays++;
  rec_entries(r, plan, push, meter);
}

static void on_archive(void *user, const hes_session_plan_t *plan, const hes_push_t *push) {
  (void)plan;
  rec_t *r = user;
  r->archives++;
  r->nmeters += push->count;
}

static void on_done(void *user, const hes_session_plan_t *plan, hes_push_status_t status) {
  rec_t *r = user;
  r->done++;
  r->last_status = status;
  snprintf(r->last_plan, sizeof(r->last_plan), "%s", plan->plan_id);
}

static void on_missing(void *user, const hes_session_plan_t *plan, const uint32_t *meters,
                       size_t n) {
  rec_t *r = user;
  r->missing_calls++;
  r->last_tag = plan->tag;
  r->last_sent = plan->sent;
  for (size_t i = 0; i < n && r->nmissing < REC_MAX; i++)
    r->missing[r->nmissing++] = meters[i];
  if (r->reenter != NULL) {
    /* Everything the session offers, from inside its own callback. */
    hes_session_stats_t st;
    hes_session_stats(r->reenter_session, &st);
    assert_true(st.plans.plans_pending <= 1);
    char id[80];
    snprintf(id, sizeof(id), "%s-again", plan->plan_id);
    hes_session_begin(r->reenter);
    assert_int_equal(hes_session_add(r->reenter, r->reenter_route, 99, id, meters, n, 100), 0);
    hes_session_end(r->reenter);
  }
}

static void on_rejected(void *user, const hes_session_reject_t *why) {
  rec_t *r = user;
  if (r->rejected_calls < REC_MAX)
    r->reject_kinds[r->rejected_calls] = why->kind;
  r->rejected_calls++;
  r->rejected_count += why->count;
}

static void on_broker(void *user, bool ready, const char *why) {
  (void)ready;
  (void)why;
  ((rec_t *)user)->broker_calls++;
}

static const hes_session_sink_t rec_sink = {
    .readings = on_readings,
    .frozen = on_frozen,
    .relay = on_relay,
    .archive = on_archive,
    .done = on_done,
    .missing = on_missing,
    .rejected = on_rejected,
    .broker = on_broker,
};

/* ---- fixtures ---------------------------------------------------------------------------- */

static double fake_now = 1000;
static double clock_now(void) {
  return fake_now;
}

typedef struct {
  hes_session_t *s;
  hes_session_client_t *c;
  hes_meters_t *meters;
  hes_api_config_t api;
  rec_t own, a, b;
  hes_session_route_t read_route, relay_route, frozen_route, archive_route;
  hes_latency_t push_latency;
} fx_t;

static int setup(void **state) {
  fx_t *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  fake_now = 1000;
  f->meters = hes_meters_new();
  const char *m[] = {"202407100001", "202407100002", "202407100003", "202407100004"};
  for (size_t i = 0; i < 4; i++)
    assert_int_equal(hes_meters_add(f->meters, m[i]), HES_METERS_OK);
  /* Nothing listens there; no test sends a request. */
  f->api = (hes_api_config_t){.url = "http://127.0.0.1:9",
                              .tenant_code = "1000000067",
                              .username = "u",
                              .password = "p",
                              .secret_key = "k"};
  f->own.name = "own";
  f->a.name = "a";
  f->b.name = "b";
  hes_latency_init(&f->push_latency);
  hes_session_config_t cfg = {.api = &f->api,
                              .meters = f->meters,
                              .sink = &rec_sink,
                              .user = &f->own,
                              .now = clock_now,
                              .push_latency = &f->push_latency};
  char why[256];
  f->s = hes_session_new(&cfg, why, sizeof(why));
  assert_non_null(f->s);
  hes_api_error_t err;
  f->c = hes_session_client_new(f->s, &err);
  assert_non_null(f->c);
  f->read_route = (hes_session_route_t){
      .sink = &rec_sink, .user = &f->a, .kind = HES_PUSH_READINGS, .cgcode = 5069};
  f->relay_route = (hes_session_route_t){.sink = &rec_sink, .user = &f->b, .kind = HES_PUSH_RELAY};
  f->frozen_route = (hes_session_route_t){
      .sink = &rec_sink, .user = &f->b, .kind = HES_PUSH_CHANNELS, .one_push = true};
  f->archive_route = (hes_session_route_t){
      .sink = &rec_sink, .user = &f->b, .kind = HES_PUSH_ARCHIVE, .one_push = true};
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx_t *f = *state;
  hes_session_client_free(f->c);
  hes_session_free(f->s);
  hes_meters_free(f->meters);
  free(f);
  return 0;
}

/* A readings push: meters by their last digit, status "00"/"01"/"02". */
static void push_readings(fx_t *f, const char *plan, const char *status, const char *digits,
                          int cgcode) {
  char buf[4096];
  size_t used = (size_t)snprintf(
      buf, sizeof(buf), "{\"planId\":\"%s\",\"data\":{\"status\":\"%s\",\"list\":[", plan, status);
  for (const char *d = digits; *d != '\0'; d++)
    used += (size_t)snprintf(buf + used, sizeof(buf) - used,
                             "%s{\"devAddr\":\"20240710000%c\",\"timestamp\":1720540800000,"
                             "\"cgcode\":\"%d\",\"unit\":\"kWh\",\"value\":\"1.5\"}",
                             d == digits ? "" : ",", *d, cgcode);
  used += (size_t)snprintf(buf + used, sizeof(buf) - used, "]}}");
  hes_session_push(f->s, buf, used);
}

static void push_relay(fx_t *f, const char *plan, const char *digit) {
  char buf[512];
  int n = snprintf(buf, sizeof(buf),
                   "{\"planId\":\"%s\",\"data\":{\"status\":\"00\",\"list\":[{\"devAddr\":"
                   "\"20240710000%s\",\"successful\":true}]}}",
                   plan, digit);
  hes_session_push(f->s, buf, (size_t)n);
}

static int add(fx_t *f, const hes_session_route_t *route, uint32_t tag, const char *plan,
               const uint32_t *m, size_t n, double timeout) {
  hes_session_begin(f->c);
  int r = hes_session_add(f->c, route, tag, plan, m, n, timeout);
  hes_session_end(f->c);
  return r;
}

/* ---- tests -------------------------------------------------------------------------------- */

static void test_begin_add_end(void **state) {
  fx_t *f = *state;
  const uint32_t m[] = {0, 1};
  assert_int_equal(add(f, &f->read_route, 7, "P1", m, 2, 10), 0);
  assert_int_equal(add(f, &f->read_route, 7, "P1", m, 2, 10), EEXIST);
  assert_int_equal(add(f, &f->read_route, 7, "", m, 2, 10), EINVAL);
  hes_session_stats_t st;
  hes_session_stats(f->s, &st);
  assert_int_equal(st.plans.plans_pending, 1);
  assert_int_equal(st.plans.meters_pending, 2);
  assert_int_equal(st.http, 0); /* nothing sent */

  push_readings(f, "P1", "00", "12", 5069);
  assert_int_equal(f->a.readings, 1);
  assert_int_equal(f->a.nmeters, 2);
  assert_int_equal(f->a.meters[0], 0);
  assert_int_equal(f->a.meters[1], 1);
  assert_int_equal(f->a.last_tag, 7);
  assert_string_equal(f->a.last_plan, "P1");
  assert_int_equal(f->a.done, 0); /* success, all answered: closed without a final push */
  hes_session_stats(f->s, &st);
  assert_int_equal(st.plans.plans_pending, 0);
  /* a redelivery: a duplicate, no sink call */
  push_readings(f, "P1", "00", "12", 5069);
  assert_int_equal(f->a.readings, 1);
  hes_session_stats(f->s, &st);
  assert_int_equal(st.plans.duplicate, 1);
}

static void test_parking_and_replay(void **state) {
  fx_t *f = *state;
  const uint32_t m[] = {2, 3};
  /* Nothing of ours in flight: another instance's. */
  push_readings(f, "FOREIGN", "00", "3", 5069);
  hes_session_stats_t st;
  hes_session_stats(f->s, &st);
  assert_int_equal(st.plans.foreign, 1);
  assert_int_equal(f->a.readings, 0);

  /* The push comes while the request is in flight, before its answer named the planId. */
  hes_session_begin(f->c);
  push_readings(f, "EARLY", "00", "34", 5069);
  assert_int_equal(f->a.readings, 0);
  hes_session_stats(f->s, &st);
  assert_int_equal(st.plans.parked, 1);
  assert_int_equal(hes_session_add(f->c, &f->read_route, 5, "EARLY", m, 2, 10), 0);
  /* replayed on this thread, during add, to the plan's sink */
  assert_int_equal(f->a.readings, 1);
  assert_int_equal(f->a.nmeters, 2);
  assert_int_equal(f->a.meters[0], 2);
  assert_int_equal(f->a.meters[1], 3);
  assert_int_equal(f->a.last_tag, 5);
  hes_session_end(f->c);
  hes_session_stats(f->s, &st);
  assert_int_equal(st.plans.parked, 0);
  assert_int_equal(st.plans.plans_pending, 0);
}

/* A readings push's latency runs from its plan's request to its arrival, once per meter it
 * answered; a parked push arrived when it was parked, not when it was replayed. */
static void test_push_latency(void **state) {
  fx_t *f = *state;
  const uint32_t m[] = {0, 1, 2};
  assert_int_equal(add(f, &f->read_route, 1, "LAT", m, 3, 10), 0); /* sent at 1000 */
  fake_now = 1002.5;
  push_readings(f, "LAT", "00", "12", 5069);
  assert_true(f->a.last_sent == 1000);
  assert_true(f->a.last_arrived == 1002.5);
  fake_now = 1003;
  push_readings(f, "LAT", "00", "15", 5069); /* 1 repeated, 5 not configured: neither counts */
  hes_latency_summary_t ls;
  hes_latency_take(&f->push_latency, &ls);
  assert_int_equal(ls.count, 2);
  assert_true(fabs(ls.max - 2.5) < 1e-6);

  const uint32_t m2[] = {3};
  fake_now = 1010;
  hes_session_begin(f->c);
  fake_now = 1011;
  push_readings(f, "EARLY", "00", "4", 5069);
  fake_now = 1013;
  assert_int_equal(hes_session_add(f->c, &f->read_route, 2, "EARLY", m2, 1, 10), 0);
  hes_session_end(f->c);
  assert_true(f->a.last_sent == 1010);
  assert_true(f->a.last_arrived == 1011);
  hes_latency_take(&f->push_latency, &ls);
  assert_int_equal(ls.count, 1);
  assert_true(fabs(ls.max - 1) < 1e-6);

  /* Missing meters have no push: no times. */
  fake_now = 1030;
  hes_session_expire(f->s);
  assert_int_equal(f->a.nmissing, 1);
  assert_true(isnan(f->a.last_sent));
  hes_latency_take(&f->push_latency, &ls);
  assert_int_equal(ls.count, 0);
}

static void test_routing(void **state) {
  fx_t *f = *state;
  const uint32_t r0[] = {0, 1, 2};
  const uint32_t r1[] = {3};
  assert_int_equal(add(f, &f->read_route, 1, "READ", r0, 3, 10), 0);
  assert_int_equal(add(f, &f->relay_route, 2, "RELAY", r1, 1, 10), 0);

  push_relay(f, "RELAY", "4");
  assert_int_equal(f->b.relays, 1);
  assert_int_equal(f->b.meters[0], 3);
  assert_int_equal(f->a.relays + f->a.readings, 0);

  /* a reading of another cgcode, one for a meter not configured, and a good one */
  const char *bad = "{\"planId\":\"READ\",\"data\":{\"status\":\"00\",\"list\":["
                    "{\"devAddr\":\"202407100001\",\"timestamp\":1,\"cgcode\":\"5074\","
                    "\"unit\":\"kWh\",\"value\":\"1\"},"
                    "{\"devAddr\":\"999999999999\",\"timestamp\":1,\"cgcode\":\"5069\","
                    "\"unit\":\"kWh\",\"value\":\"1\"},"
                    "{\"devAddr\":\"202407100002\",\"timestamp\":1,\"cgcode\":\"5069\","
                    "\"unit\":\"kWh\",\"value\":\"1\"}]}}";
  hes_session_push(f->s, bad, strlen(bad));
  assert_int_equal(f->a.readings, 1);
  assert_int_equal(f->a.nmeters, 1);
  assert_int_equal(f->a.meters[0], 1);
  assert_int_equal(f->a.rejected_calls, 2);
  assert_int_equal(f->a.reject_kinds[0], HES_SESSION_REJECT_CGCODE);
  assert_int_equal(f->a.reject_kinds[1], HES_SESSION_REJECT_METER);

  /* a relay push for a reading plan: rejected to the plan's sink, and the plan goes on */
  push_relay(f, "READ", "1");
  assert_int_equal(f->a.rejected_calls, 3);
  assert_int_equal(f->a.reject_kinds[2], HES_SESSION_REJECT_KIND);
  assert_int_equal(f->b.relays, 1);

  /* not a push at all: the session's own sink */
  hes_session_push(f->s, "{\"nope\":1}", 10);
  assert_int_equal(f->own.rejected_calls, 1);
  assert_int_equal(f->own.reject_kinds[0], HES_SESSION_REJECT_PARSE);

  /* a partial result is final: meter 0 and 2 never answered */
  push_readings(f, "READ", "01", "", 5069);
  assert_int_equal(f->a.done, 1);
  assert_int_equal(f->a.last_status, HES_PUSH_PARTIAL);
  assert_int_equal(f->a.missing_calls, 1);
  assert_int_equal(f->a.nmissing, 2);
  assert_int_equal(f->a.missing[0], 0);
  assert_int_equal(f->a.missing[1], 2);
}

static void test_one_push(void **state) {
  fx_t *f = *state;
  const uint32_t m[] = {0, 1};
  assert_int_equal(add(f, &f->frozen_route, 1, "FROZEN", m, 2, 10), 0);
  /* a push of the wrong kind is rejected and is not the plan's one push */
  push_relay(f, "FROZEN", "1");
  assert_int_equal(f->b.rejected_calls, 1);
  assert_int_equal(f->b.reject_kinds[0], HES_SESSION_REJECT_KIND);
  assert_int_equal(f->b.done, 0);
  assert_int_equal(f->b.relays, 0);
  const char *p = "{\"planId\":\"FROZEN\",\"data\":{\"status\":\"00\",\"list\":["
                  "{\"devAddr\":\"202407100002\",\"timestamp\":1720540800000,\"channelData\":["
                  "{\"unit\":\"kWh\",\"value\":\"1\",\"cgcode\":\"5069\"},"
                  "{\"unit\":\"kWh\",\"value\":\"2\",\"cgcode\":\"5074\"}]}]}}";
  hes_session_push(f->s, p, strlen(p));
  assert_int_equal(f->b.frozen, 1);
  assert_int_equal(f->b.nmeters, 2); /* both channels of meter 1 */
  assert_int_equal(f->b.meters[0], 1);
  assert_int_equal(f->b.meters[1], 1);
  /* success, but the first push is final: meter 0 is missing at once */
  assert_int_equal(f->b.done, 1);
  assert_int_equal(f->b.nmissing, 1);
  assert_int_equal(f->b.missing[0], 0);

  assert_int_equal(add(f, &f->archive_route, 3, "DCU", m, 1, 10), 0);
  const char *a = "{\"planId\":\"DCU\",\"data\":{\"status\":\"00\",\"list\":["
                  "{\"devAddr\":\"1\",\"status\":\"1\"},{\"devAddr\":\"2\",\"status\":\"0\"}]}}";
  hes_session_push(f->s, a, strlen(a));
  assert_int_equal(f->b.archives, 1);
  assert_int_equal(f->b.done, 2);
}

/* Expiry reports after every lock is released: the missing callback registers a follow-up
 * plan (plans lock) and reads the stats. Under the lock this deadlocks. */
static void test_expiry_reenters(void **state) {
  fx_t *f = *state;
  const uint32_t m[] = {0, 1, 2};
  assert_int_equal(add(f, &f->read_route, 4, "SLOW", m, 3, 5), 0);
  push_readings(f, "SLOW", "00", "2", 5069);
  f->a.reenter_session = f->s;
  f->a.reenter = f->c;
  f->a.reenter_route = &f->read_route;
  fake_now += 4.9;
  assert_int_equal(hes_session_expire(f->s), 0);
  assert_int_equal(f->a.missing_calls, 0);
  fake_now += 0.2;
  assert_int_equal(hes_session_expire(f->s), 1);
  assert_int_equal(f->a.missing_calls, 1);
  assert_int_equal(f->a.last_tag, 4);
  assert_int_equal(f->a.nmissing, 2);
  assert_int_equal(f->a.missing[0], 0);
  assert_int_equal(f->a.missing[1], 2);
  /* the plan the callback registered is open, and answers */
  f->a.reenter = NULL;
  hes_session_stats_t st;
  hes_session_stats(f->s, &st);
  assert_int_equal(st.plans.plans_pending, 1);
  assert_int_equal(st.plans.meters_pending, 2);
  push_readings(f, "SLOW-again", "00", "13", 5069);
  assert_int_equal(f->a.last_tag, 99);
  hes_session_stats(f->s, &st);
  assert_int_equal(st.plans.plans_pending, 0);
  /* a late push for the expired plan: counted late, not routed */
  size_t before = f->a.readings;
  push_readings(f, "SLOW", "00", "1", 5069);
  assert_int_equal(f->a.readings, before);
  hes_session_stats(f->s, &st);
  assert_int_equal(st.plans.late, 1);
}

/* A request the HES refuses counts its HTTP requests and a failure; nothing is registered. */
static void test_request_counted(void **state) {
  fx_t *f = *state;
  const uint32_t m[] = {0};
  hes_session_request_t rq = {.route = &f->read_route, .tag = 1, .meters = m, .n = 1, .timeout = 5};
  hes_api_plan_t plan;
  hes_api_error_t err;
  /* Port 9 refuses at once (or times out): getToken fails, the call with it. */
  assert_int_not_equal(hes_session_read_single(f->c, &rq, 5069, &plan, &err), HES_API_OK);
  hes_session_stats_t st;
  hes_session_stats(f->s, &st);
  assert_true(st.http >= 1);
  assert_int_equal(st.http_failed, 1);
  assert_int_equal(st.plans.plans_pending, 0);
  /* the request ended: a push now is foreign, not parked */
  push_readings(f, "LATE", "00", "1", 5069);
  hes_session_stats(f->s, &st);
  assert_int_equal(st.plans.parked, 0);
  assert_int_equal(st.plans.foreign, 1);
}

/* ---- counted requests, against a scripted HTTP server on 127.0.0.1 --------------------- */

static struct {
  pthread_mutex_t lock;
  const char *const *script; /* "STATUS BODY" */
  size_t pos, n;
  unsigned requests;
} http = {.lock = PTHREAD_MUTEX_INITIALIZER};

static enum MHD_Result http_handler(void *cls, struct MHD_Connection *c, const char *url,
                                    const char *method, const char *version,
                                    const char *upload_data, size_t *upload_size, void **con_cls) {
  (void)cls;
  (void)url;
  (void)method;
  (void)version;
  (void)upload_data;
  static int started;
  if (*con_cls == NULL) {
    *con_cls = &started;
    return MHD_YES;
  }
  if (*upload_size != 0) {
    *upload_size = 0; /* the body is not looked at */
    return MHD_YES;
  }
  pthread_mutex_lock(&http.lock);
  const char *line = http.pos < http.n ? http.script[http.pos++] : "599 {}";
  http.requests++;
  pthread_mutex_unlock(&http.lock);
  unsigned status = (unsigned)strtoul(line, NULL, 10);
  const char *body = strchr(line, ' ') + 1;
  struct MHD_Response *r =
      MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
  if (r == NULL)
    return MHD_NO;
  MHD_add_response_header(r, "Content-Type", "application/json;charset=UTF-8");
  enum MHD_Result ret = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return ret;
}

static void sent_cb(void *ctx, const hes_api_plan_t *plan) {
  snprintf(ctx, 64, "%s", plan->plan_id);
}

/* A call whose token turns out stale sends four requests (getToken, the call, getToken, the
 * retry): all four are counted, not one per call. */
static void test_every_request_counted(void **state) {
  fx_t *f = *state;
  static const char *const script[] = {
      "200 {\"code\":200,\"msg\":\"success\",\"data\":{\"token\":\"tokA\",\"expireIn\":7200}}",
      "401 {}",
      "200 {\"code\":200,\"msg\":\"success\",\"data\":{\"token\":\"tokB\",\"expireIn\":7200}}",
      "200 "
      "{\"code\":200,\"msg\":\"success\",\"data\":{\"planId\":\"PLAN-1\",\"topicId\":\"/t/x\"}}",
      "500 <html>busy</html>",
  };
  http.script = script;
  http.n = 5;
  http.pos = 0;
  http.requests = 0;
  struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  struct MHD_Daemon *d =
      MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, http_handler, NULL,
                       MHD_OPTION_SOCK_ADDR, &sin, MHD_OPTION_END);
  assert_non_null(d);
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
  char url[64];
  snprintf(url, sizeof(url), "http://127.0.0.1:%u", (unsigned)info->port);
  hes_api_config_t api = f->api;
  api.url = url;
  static hes_latency_t http_latency;
  hes_latency_init(&http_latency);
  api.latency = &http_latency;
  hes_session_config_t cfg = {.api = &api, .meters = f->meters, .now = clock_now};
  char why[256];
  hes_session_t *s = hes_session_new(&cfg, why, sizeof(why));
  assert_non_null(s);
  hes_api_error_t err;
  hes_session_client_t *c = hes_session_client_new(s, &err);
  assert_non_null(c);

  const uint32_t m[] = {0, 1};
  char named[64] = "";
  hes_session_request_t rq = {.route = &f->read_route,
                              .tag = 1,
                              .meters = m,
                              .n = 2,
                              .timeout = 5,
                              .sent = sent_cb,
                              .ctx = named};
  hes_api_plan_t plan;
  assert_int_equal(hes_session_read_single(c, &rq, 5069, &plan, &err), HES_API_OK);
  assert_string_equal(plan.plan_id, "PLAN-1");
  assert_string_equal(named, "PLAN-1");
  hes_session_stats_t st;
  hes_session_stats(s, &st);
  assert_int_equal(http.requests, 4);
  assert_int_equal(st.http, 4);
  assert_int_equal(st.http_failed, 0);
  assert_int_equal(st.plans.plans_pending, 1);

  /* a failed call: its one request counted, and the failure */
  assert_int_not_equal(hes_session_read_single(c, &rq, 5069, &plan, &err), HES_API_OK);
  hes_session_stats(s, &st);
  assert_int_equal(http.requests, 5);
  assert_int_equal(st.http, 5);
  assert_int_equal(st.http_failed, 1);
  assert_int_equal(st.plans.plans_pending, 1);
  /* every request's duration, from the clients the session made: a second one too */
  hes_session_client_t *c2 = hes_session_client_new(s, &err);
  assert_non_null(c2);
  http.pos = 4; /* 500 again */
  assert_int_not_equal(hes_session_token(c2, &err), HES_API_OK);
  hes_latency_summary_t ls;
  hes_latency_take(&http_latency, &ls);
  hes_session_stats(s, &st);
  assert_true(http.requests >= 6);
  assert_int_equal(ls.count, http.requests);
  assert_int_equal(st.http, http.requests);
  hes_session_client_free(c2);

  hes_session_client_free(c);
  hes_session_free(s);
  MHD_stop_daemon(d);
}

/* ---- the MQTT thread and a requesting thread at once ---------------------------------- */

enum { RACE_PLANS = 300 };

typedef struct {
  fx_t *f;
  atomic_int begun; /* plans whose request is in flight or done */
  atomic_int answers[RACE_PLANS];
  atomic_int calls;
} race_t;

static void race_readings(void *user, const hes_session_plan_t *plan, const hes_push_t *push,
                          const uint32_t *meter) {
  race_t *r = user;
  atomic_fetch_add(&r->calls, 1);
  for (size_t i = 0; i < push->count; i++)
    if (meter[i] != HES_METER_NONE)
      atomic_fetch_add(&r->answers[plan->tag], 1);
}

static void *race_pusher(void *arg) {
  race_t *r = arg;
  for (int i = 0; i < RACE_PLANS; i++) {
    while (atomic_load(&r->begun) <= i)
      ; /* the push is sent once the request is in flight, as the HES does */
    char id[32];
    snprintf(id, sizeof(id), "RACE-%d", i);
    push_readings(r->f, id, "00", "12", 5069);
    if (i % 3 == 0) /* a QoS 1 redelivery */
      push_readings(r->f, id, "00", "12", 5069);
  }
  return NULL;
}

/* Pushes race their plan's registration: each lands before the planId is known (parked, then
 * replayed by the requesting thread) or after (routed by the pushing thread). Either way
 * each meter of each plan reaches the sink exactly once. */
static void test_push_races_request(void **state) {
  fx_t *f = *state;
  static race_t r;
  memset(&r, 0, sizeof(r));
  r.f = f;
  static const hes_session_sink_t sink = {.readings = race_readings};
  hes_session_route_t route = {
      .sink = &sink, .user = &r, .kind = HES_PUSH_READINGS, .cgcode = 5069};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, race_pusher, &r), 0);
  const uint32_t m[] = {0, 1};
  for (int i = 0; i < RACE_PLANS; i++) {
    char id[32];
    snprintf(id, sizeof(id), "RACE-%d", i);
    hes_session_begin(f->c);
    atomic_store(&r.begun, i + 1);
    if (i % 2 == 0)
      sched_yield(); /* give the push a chance to come first */
    assert_int_equal(hes_session_add(f->c, &route, (uint32_t)i, id, m, 2, 100), 0);
    hes_session_end(f->c);
  }
  pthread_join(t, NULL);
  for (int i = 0; i < RACE_PLANS; i++)
    assert_int_equal(atomic_load(&r.answers[i]), 2);
  hes_session_stats_t st;
  hes_session_stats(f->s, &st);
  assert_int_equal(st.plans.plans_pending, 0);
  assert_int_equal(st.plans.parked, 0);
  assert_int_equal(st.plans.foreign, 0);
  assert_int_equal(st.plans.dropped, 0);
}

/* A session on a meterset: each push is looked up in the current version, so a meter that
 * left is rejected even in a plan that asked for it, and a joiner is routed by its own
 * stable index. The archive stand-in counts as answered: an archive plan's result reports
 * nothing missing. */
static void test_meterset_swap(void **state) {
  fx_t *f = *state;
  hes_meterset_t *set = hes_meterset_new();
  assert_non_null(set);
  hes_meters_t *first = hes_meters_new();
  assert_non_null(first);
  assert_int_equal(hes_meters_add(first, "202407100001"), HES_METERS_OK);
  assert_int_equal(hes_meters_add(first, "202407100002"), HES_METERS_OK);
  hes_meterset_update_t up;
  assert_int_equal(hes_meterset_prepare(set, first, &up), HES_METERSET_OK);
  hes_meterset_commit(set, &up);
  hes_meterset_update_done(set, &up);

  hes_session_config_t cfg = {
      .api = &f->api, .set = set, .sink = &rec_sink, .user = &f->own, .now = clock_now};
  char why[256];
  hes_session_t *s = hes_session_new(&cfg, why, sizeof(why));
  assert_non_null(s);
  hes_api_error_t err;
  hes_session_client_t *c = hes_session_client_new(s, &err);
  assert_non_null(c);
  hes_session_t *saved = f->s;
  f->s = s; /* push_readings feeds f->s */

  const uint32_t m[] = {0, 1};
  hes_session_begin(c);
  assert_int_equal(hes_session_add(c, &f->read_route, 1, "S1", m, 2, 10), 0);
  hes_session_end(c);
  /* 2 leaves, 3 joins */
  hes_meters_t *next = hes_meters_new();
  assert_non_null(next);
  assert_int_equal(hes_meters_add(next, "202407100001"), HES_METERS_OK);
  assert_int_equal(hes_meters_add(next, "202407100003"), HES_METERS_OK);
  assert_int_equal(hes_meterset_prepare(set, next, &up), HES_METERSET_OK);
  assert_int_equal(up.n_left, 1);
  assert_int_equal(up.n_joined, 1);
  uint32_t joiner = up.joined[0];
  hes_meterset_commit(set, &up);
  hes_meterset_update_done(set, &up);

  push_readings(f, "S1", "00", "12", 5069);
  assert_int_equal(f->a.readings, 1);
  assert_int_equal(f->a.nmeters, 1); /* only meter 1 */
  assert_int_equal(f->a.meters[0], 0);
  assert_int_equal(f->a.rejected_calls, 1);
  assert_int_equal(f->a.reject_kinds[0], HES_SESSION_REJECT_METER);

  const uint32_t j[] = {joiner};
  hes_session_begin(c);
  assert_int_equal(hes_session_add(c, &f->read_route, 1, "S2", j, 1, 10), 0);
  hes_session_end(c);
  push_readings(f, "S2", "00", "3", 5069);
  assert_int_equal(f->a.nmeters, 2);
  assert_int_equal(f->a.meters[1], joiner);

  const uint32_t stand_in = 0;
  hes_session_begin(c);
  assert_int_equal(hes_session_add(c, &f->archive_route, 4, "S3", &stand_in, 1, 10), 0);
  hes_session_end(c);
  const char arch[] = "{\"planId\":\"S3\",\"data\":{\"status\":\"00\",\"list\":[{\"devAddr\":"
                      "\"202407100005\",\"status\":\"1\"}]}}";
  hes_session_push(s, arch, sizeof(arch) - 1);
  assert_int_equal(f->b.archives, 1);
  assert_int_equal(f->b.done, 1);
  assert_int_equal(f->b.missing_calls, 0);

  f->s = saved;
  hes_session_client_free(c);
  hes_session_free(s);
  hes_meterset_free(set);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_begin_add_end, setup, teardown),
      cmocka_unit_test_setup_teardown(test_parking_and_replay, setup, teardown),
      cmocka_unit_test_setup_teardown(test_push_latency, setup, teardown),
      cmocka_unit_test_setup_teardown(test_routing, setup, teardown),
      cmocka_unit_test_setup_teardown(test_one_push, setup, teardown),
      cmocka_unit_test_setup_teardown(test_expiry_reenters, setup, teardown),
      cmocka_unit_test_setup_teardown(test_request_counted, setup, teardown),
      cmocka_unit_test_setup_teardown(test_every_request_counted, setup, teardown),
      cmocka_unit_test_setup_teardown(test_push_races_request, setup, teardown),
      cmocka_unit_test_setup_teardown(test_meterset_swap, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
