/* test_api_sim: the api module against the HES simulator (tests/sim/hes-sim) and a real
 * mosquitto, as tests/integration.sh starts them. Every call goes over HTTP to the simulator;
 * for the plan-creating ones, a subscriber on /<tenant>/# (subscribed before the first call)
 * waits for the push with the plan's planId and checks its content against sim_values.
 * Without HES_SIM_URL (not run by integration.sh) it exits 77: skipped. */
#include "config.h"

#include "api.h"
#include "push.h"
#include "sim/sim_values.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <mosquitto.h>

static struct {
  const char *url;
  const char *log;
  int mqtt_port;
  const char *tenant;
  const char *user;
  const char *password;
  const char *secret;
  const char *silent;
  const char *overvoltage;
  const char *relay_fail;
} env;

#define M1          "202407100001"
#define PUSH_WAIT_S 5

static double mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* --- the subscriber --------------------------------------------------------------------------- */

typedef struct {
  char *topic;
  char *payload;
  size_t len;
} msg_t;

static struct {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  struct mosquitto *mosq;
  bool subscribed;
  msg_t msgs[256];
  size_t n;
} sub = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static void on_connect(struct mosquitto *m, void *ud, int rc) {
  (void)ud;
  if (rc == 0) {
    char topic[128];
    snprintf(topic, sizeof topic, "/%s/#", env.tenant);
    mosquitto_subscribe(m, NULL, topic, 1);
  }
}

static void on_subscribe(struct mosquitto *m, void *ud, int mid, int n, const int *qos) {
  (void)m;
  (void)ud;
  (void)mid;
  (void)n;
  (void)qos;
  pthread_mutex_lock(&sub.lock);
  sub.subscribed = true;
  pthread_cond_broadcast(&sub.cond);
  pthread_mutex_unlock(&sub.lock);
}

static void on_message(struct mosquitto *m, void *ud, const struct mosquitto_message *msg) {
  (void)m;
  (void)ud;
  pthread_mutex_lock(&sub.lock);
  if (sub.n < sizeof sub.msgs / sizeof sub.msgs[0]) {
    msg_t *d = &sub.msgs[sub.n];
    d->topic = strdup(msg->topic);
    d->payload = malloc((size_t)msg->payloadlen + 1);
    if (d->topic && d->payload) {
      memcpy(d->payload, msg->payload, (size_t)msg->payloadlen);
      d->payload[msg->payloadlen] = '\0';
      d->len = (size_t)msg->payloadlen;
      sub.n++;
    } else {
      free(d->topic);
      free(d->payload);
    }
  }
  pthread_cond_broadcast(&sub.cond);
  pthread_mutex_unlock(&sub.lock);
}

static bool deadline_wait(struct timespec *until) {
  return pthread_cond_timedwait(&sub.cond, &sub.lock, until) == 0;
}

static struct timespec in_seconds(int s) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += s;
  return ts;
}

static int subscriber_start(void) {
  mosquitto_lib_init();
  sub.mosq = mosquitto_new(NULL, true, NULL);
  if (!sub.mosq)
    return -1;
  mosquitto_connect_callback_set(sub.mosq, on_connect);
  mosquitto_subscribe_callback_set(sub.mosq, on_subscribe);
  mosquitto_message_callback_set(sub.mosq, on_message);
  if (mosquitto_connect(sub.mosq, "127.0.0.1", env.mqtt_port, 30) != MOSQ_ERR_SUCCESS)
    return -1;
  if (mosquitto_loop_start(sub.mosq) != MOSQ_ERR_SUCCESS)
    return -1;
  struct timespec until = in_seconds(PUSH_WAIT_S);
  pthread_mutex_lock(&sub.lock);
  while (!sub.subscribed && deadline_wait(&until))
    ;
  bool ok = sub.subscribed;
  pthread_mutex_unlock(&sub.lock);
  return ok ? 0 : -1;
}

static void subscriber_stop(void) {
  if (sub.mosq) {
    mosquitto_disconnect(sub.mosq);
    mosquitto_loop_stop(sub.mosq, false);
    mosquitto_destroy(sub.mosq);
  }
  mosquitto_lib_cleanup();
  for (size_t i = 0; i < sub.n; i++) {
    free(sub.msgs[i].topic);
    free(sub.msgs[i].payload);
  }
}

/* Waits for the push published on /<tenant>/<planId> and parses it into *out with p. */
static void wait_push(hes_push_parser_t *p, const char *plan_id, hes_push_t *out) {
  char topic[160];
  snprintf(topic, sizeof topic, "/%s/%s", env.tenant, plan_id);
  struct timespec until = in_seconds(PUSH_WAIT_S);
  const msg_t *found = NULL;
  pthread_mutex_lock(&sub.lock);
  for (;;) {
    for (size_t i = 0; i < sub.n && !found; i++)
      if (strcmp(sub.msgs[i].topic, topic) == 0)
        found = &sub.msgs[i];
    if (found || !deadline_wait(&until))
      break;
  }
  pthread_mutex_unlock(&sub.lock);
  if (!found)
    fail_msg("no push on %s within %d s", topic, PUSH_WAIT_S);
  char why[200];
  hes_push_result_t r = hes_push_parse(p, found->payload, found->len, out, why, sizeof why);
  if (r != HES_PUSH_OK)
    fail_msg("push on %s: %s: %s", topic, why, found->payload);
  assert_string_equal(out->plan_id, plan_id);
}

/* --- helpers -----------------------------------------------------------------------------------
 */

static hes_api_t *api_new_with(const char *password) {
  hes_api_config_t cfg = {.url = env.url,
                          .tenant_code = env.tenant,
                          .username = env.user,
                          .password = password,
                          .secret_key = env.secret,
                          .verify_peer = true,
                          .verify_host = true,
                          .timeout_ms = 5000};
  hes_api_error_t err;
  hes_api_t *api = hes_api_new(&cfg, &err);
  if (!api)
    fail_msg("hes_api_new: %s", err.msg);
  return api;
}

static hes_api_t *api_new(void) {
  return api_new_with(env.password);
}

static void assert_clean(const hes_api_error_t *err) {
  assert_null(strstr(err->msg, env.password));
  assert_null(strstr(err->msg, env.secret));
}

static void check_ok(hes_api_result_t r, const hes_api_error_t *err) {
  if (r != HES_API_OK)
    fail_msg("%s: %s (HTTP %ld, code %d): %s", err->endpoint, hes_api_result_string(r),
             err->http_status, err->code, err->msg);
}

/* A plan id as the simulator makes them: P003_ and 20 digits. */
static void assert_plan_id(const char *id) {
  assert_int_equal(strlen(id), 25);
  assert_memory_equal(id, "P003_", 5);
  for (size_t i = 5; i < 25; i++)
    assert_true(id[i] >= '0' && id[i] <= '9');
}

static void assert_sim_value(const hes_push_reading_t *rd, int cgcode, bool overvoltage) {
  char want[64];
  char meter[40];
  const char *unit = NULL;
  snprintf(meter, sizeof meter, "%.*s", (int)rd->dev_addr_len, rd->dev_addr);
  assert_true(
      sim_value_string(meter, cgcode, rd->timestamp_ms, overvoltage, want, sizeof want, &unit));
  assert_string_equal(rd->value, want);
  assert_string_equal(rd->unit, unit);
}

static bool dev_is(const char *dev, size_t len, const char *meter) {
  return len == strlen(meter) && memcmp(dev, meter, len) == 0;
}

/* "YYYY-MM-DD 00:00:00" of today minus `days`, in local time (the simulator's zone). */
static void local_midnight(int days, char *buf, size_t len) {
  time_t now = time(NULL);
  struct tm tm;
  localtime_r(&now, &tm);
  tm.tm_mday -= days;
  tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
  tm.tm_isdst = -1;
  time_t t = mktime(&tm);
  localtime_r(&t, &tm);
  strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
}

/* Counts the lines of the simulator's request log that contain every one of the strings. */
static int log_count(const char *a, const char *b) {
  FILE *f = env.log ? fopen(env.log, "r") : NULL;
  if (!f)
    return -1;
  char line[8192];
  int n = 0;
  while (fgets(line, sizeof line, f))
    if (strstr(line, a) && (!b || strstr(line, b)))
      n++;
  fclose(f);
  return n;
}

/* POST to a /sim/ control URL of the simulator, with a plain socket. */
static void sim_control(const char *path) {
  const char *hp = strstr(env.url, "://");
  assert_non_null(hp);
  hp += 3;
  const char *colon = strrchr(hp, ':');
  assert_non_null(colon);
  int port = atoi(colon + 1);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof sin), 0);
  char req[256];
  int n = snprintf(req, sizeof req,
                   "POST %s HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n", path);
  assert_int_equal(write(fd, req, (size_t)n), n);
  char resp[512];
  ssize_t got = read(fd, resp, sizeof resp - 1);
  close(fd);
  assert_true(got > 12);
  resp[got] = '\0';
  if (strncmp(resp + 9, "200", 3) != 0)
    fail_msg("%s: %s", path, resp);
}

/* --- tests ---------------------------------------------------------------------------------- */

static void test_token(void **state) {
  (void)state;
  hes_api_t *api = api_new();
  hes_api_error_t err;
  check_ok(hes_api_token(api, mono(), &err), &err);
  check_ok(hes_api_token(api, mono(), &err), &err);
  assert_int_equal(hes_api_token_fetches(api), 1);
  hes_api_free(api);

  api = api_new_with("wrong-password");
  assert_int_equal(hes_api_token(api, mono(), &err), HES_API_EHES);
  assert_int_equal(err.code, 500);
  assert_int_equal(err.http_status, 200);
  assert_string_equal(err.endpoint, "getToken");
  assert_string_equal(err.msg, "Invalid tenantCode, username, password or secretKey");
  assert_null(strstr(err.msg, "wrong-password"));
  assert_int_equal(hes_api_token_fetches(api), 0);
  hes_api_free(api);
}

static void test_read_single(void **state) {
  (void)state;
  hes_api_t *api = api_new();
  hes_push_parser_t *pp = hes_push_parser_new(0);
  assert_non_null(pp);
  hes_api_error_t err;
  hes_api_plan_t plan;
  const char *meters[] = {M1, env.overvoltage, env.silent};
  int64_t before = (int64_t)time(NULL) * 1000;
  check_ok(hes_api_read_single(api, mono(), meters, 3, 5050, &plan, &err), &err);
  assert_plan_id(plan.plan_id);
  char topic[160];
  snprintf(topic, sizeof topic, "/%s/%s", env.tenant, plan.plan_id);
  assert_string_equal(plan.topic, topic);

  hes_push_t push;
  wait_push(pp, plan.plan_id, &push);
  assert_int_equal(push.status, HES_PUSH_PARTIAL); /* the silent meter */
  assert_int_equal(push.kind, HES_PUSH_READINGS);
  assert_int_equal(push.count, 2);
  bool seen_m1 = false, seen_ov = false;
  for (size_t i = 0; i < push.count; i++) {
    const hes_push_reading_t *rd = &push.readings[i];
    bool ov = dev_is(rd->dev_addr, rd->dev_addr_len, env.overvoltage);
    assert_true(ov || dev_is(rd->dev_addr, rd->dev_addr_len, M1));
    seen_ov |= ov;
    seen_m1 |= !ov;
    assert_int_equal(rd->cgcode, 5050);
    assert_true(rd->timestamp_ms >= before - 1000 && rd->timestamp_ms < before + 10000);
    assert_sim_value(rd, 5050, ov);
  }
  assert_true(seen_m1 && seen_ov);
  /* the simulator saw our devList, cgcode and token */
  char needle[200];
  snprintf(needle, sizeof needle, "\"planId\":\"%s\",\"cgcode\":\"5050\"", plan.plan_id);
  assert_int_equal(log_count(needle, "\"token_ok\":true"), 1);
  hes_push_parser_free(pp);
  hes_api_free(api);
}

static void test_read_frozen(void **state) {
  (void)state;
  hes_api_t *api = api_new();
  hes_push_parser_t *pp = hes_push_parser_new(0);
  hes_api_error_t err;
  hes_api_plan_t plan;
  char start[32], end[32];
  local_midnight(3, start, sizeof start);
  local_midnight(0, end, sizeof end);
  const char *meters[] = {M1, env.silent};
  check_ok(hes_api_read_frozen(api, mono(), meters, 2, 1, start, end, &plan, &err), &err);
  assert_plan_id(plan.plan_id);
  hes_push_t push;
  wait_push(pp, plan.plan_id, &push);
  assert_int_equal(push.status, HES_PUSH_PARTIAL);
  assert_int_equal(push.kind, HES_PUSH_CHANNELS);
  assert_int_equal(push.entries, 4); /* 4 daily freeze times of M1 */
  assert_int_equal(push.count, 4 * 8);
  for (size_t i = 0; i < push.count; i++) {
    const hes_push_reading_t *rd = &push.readings[i];
    assert_true(dev_is(rd->dev_addr, rd->dev_addr_len, M1));
    assert_int_equal(rd->cgcode, sim_frozen_channels[i % 8]);
    assert_int_equal(rd->entry, i / 8);
    assert_sim_value(rd, rd->cgcode, false);
  }
  hes_push_parser_free(pp);
  hes_api_free(api);
}

static void test_relay(void **state) {
  (void)state;
  hes_api_t *api = api_new();
  hes_push_parser_t *pp = hes_push_parser_new(0);
  hes_api_error_t err;
  hes_api_plan_t plan;
  const char *meters[] = {M1, env.relay_fail};
  check_ok(hes_api_relay(api, mono(), meters, 2, 1, &plan, &err), &err);
  char topic[160];
  snprintf(topic, sizeof topic, "/%s/%s/", env.tenant, plan.plan_id);
  assert_string_equal(plan.topic, topic);
  hes_push_t push;
  wait_push(pp, plan.plan_id, &push);
  assert_int_equal(push.kind, HES_PUSH_RELAY);
  assert_int_equal(push.status, HES_PUSH_PARTIAL);
  assert_int_equal(push.count, 2);
  assert_true(dev_is(push.relays[0].dev_addr, push.relays[0].dev_addr_len, M1));
  assert_true(push.relays[0].successful);
  assert_true(dev_is(push.relays[1].dev_addr, push.relays[1].dev_addr_len, env.relay_fail));
  assert_false(push.relays[1].successful);
  char needle[200];
  snprintf(needle, sizeof needle, "\"planId\":\"%s\"", plan.plan_id);
  assert_int_equal(log_count(needle, "\"controlMode\":1"), 1);

  check_ok(hes_api_relay(api, mono(), meters, 1, 2, &plan, &err), &err);
  wait_push(pp, plan.plan_id, &push);
  assert_int_equal(push.status, HES_PUSH_SUCCESS);
  assert_int_equal(push.count, 1);
  snprintf(needle, sizeof needle, "\"planId\":\"%s\"", plan.plan_id);
  assert_int_equal(log_count(needle, "\"controlMode\":2"), 1);
  hes_push_parser_free(pp);
  hes_api_free(api);
}

static void test_archives(void **state) {
  (void)state;
  hes_api_t *api = api_new();
  hes_push_parser_t *pp = hes_push_parser_new(0);
  hes_api_error_t err;
  hes_api_plan_t plan;
  hes_push_t push;
  char dcu[32];
  snprintf(dcu, sizeof dcu, "22110%05d", (int)(getpid() % 100000));
  const hes_api_archive_t add[] = {{M1, true}, {"202407100099", false}};

  check_ok(hes_api_add_archive(api, mono(), dcu, add, 2, &plan, &err), &err);
  char topic[160];
  snprintf(topic, sizeof topic, "/%s/%s/", env.tenant, plan.plan_id);
  assert_string_equal(plan.topic, topic);
  wait_push(pp, plan.plan_id, &push);
  assert_int_equal(push.status, HES_PUSH_SUCCESS);
  assert_int_equal(push.kind, HES_PUSH_EMPTY);

  check_ok(hes_api_read_archive(api, mono(), dcu, &plan, &err), &err);
  wait_push(pp, plan.plan_id, &push);
  assert_int_equal(push.kind, HES_PUSH_ARCHIVE);
  assert_int_equal(push.count, 2);
  assert_true(dev_is(push.archives[0].dev_addr, push.archives[0].dev_addr_len, M1));
  assert_true(push.archives[0].enabled);
  assert_string_equal(push.archives[0].comm_type, "1");
  assert_true(dev_is(push.archives[1].dev_addr, push.archives[1].dev_addr_len, "202407100099"));
  assert_false(push.archives[1].enabled);

  /* removeArchive: the token travels in the header only, and the simulator takes it */
  const char *gone[] = {"202407100099"};
  check_ok(hes_api_remove_archive(api, mono(), dcu, gone, 1, &plan, &err), &err);
  wait_push(pp, plan.plan_id, &push);
  assert_int_equal(push.status, HES_PUSH_SUCCESS);
  assert_int_equal(push.kind, HES_PUSH_EMPTY);

  check_ok(hes_api_read_archive(api, mono(), dcu, &plan, &err), &err);
  wait_push(pp, plan.plan_id, &push);
  assert_int_equal(push.count, 1);
  assert_true(dev_is(push.archives[0].dev_addr, push.archives[0].dev_addr_len, M1));
  assert_int_equal(hes_api_token_fetches(api), 1);
  hes_push_parser_free(pp);
  hes_api_free(api);
}

static void test_history_single(void **state) {
  (void)state;
  hes_api_t *api = api_new();
  hes_api_error_t err;
  const char *meters[] = {M1, env.silent, env.overvoltage};
  /* 00:00 .. 02:00 every 15 minutes: 9 readings per answering meter, 18 in all */
  hes_api_history_t *h = hes_api_history_new(api, false, meters, 3, 5051, "2024-07-10 00:00:00",
                                             "2024-07-10 02:00:00", 4, &err);
  assert_non_null(h);
  hes_push_t page;
  size_t pages = 0, got = 0, m1 = 0, ov = 0;
  int64_t prev = -1;
  hes_api_result_t r;
  while ((r = hes_api_history_next(h, mono(), &page, &err)) == HES_API_OK && page.entries > 0) {
    pages++;
    assert_int_equal(page.kind, HES_PUSH_READINGS);
    assert_int_equal(page.skipped, 0);
    for (size_t i = 0; i < page.count; i++) {
      const hes_push_reading_t *rd = &page.readings[i];
      bool is_ov = dev_is(rd->dev_addr, rd->dev_addr_len, env.overvoltage);
      assert_true(is_ov || dev_is(rd->dev_addr, rd->dev_addr_len, M1));
      m1 += !is_ov;
      ov += is_ov;
      assert_int_equal(rd->timestamp_ms % 900000, 0);
      if (!is_ov && prev >= 0 && m1 > 1)
        assert_int_equal(rd->timestamp_ms - prev, 900000);
      if (!is_ov)
        prev = rd->timestamp_ms;
      assert_sim_value(rd, 5051, is_ov);
    }
    got += page.count;
  }
  check_ok(r, &err);
  assert_int_equal(hes_api_history_total(h), 18);
  assert_int_equal(got, 18);
  assert_int_equal(m1, 9);
  assert_int_equal(ov, 9);
  assert_int_equal(pages, 5); /* 4 4 4 4 2 */
  hes_api_history_free(h);
  assert_int_equal(log_count("\"endpoint\":\"historySingle\"", "\"cgcode\":\"5051\""), 5);
  hes_api_free(api);
}

static void test_history_frozen(void **state) {
  (void)state;
  hes_api_t *api = api_new();
  hes_api_error_t err;
  char start[32], end[32];
  local_midnight(5, start, sizeof start);
  local_midnight(1, end, sizeof end);
  const char *meters[] = {M1};
  hes_api_history_t *h =
      hes_api_history_new(api, true, meters, 1, 1, start, end, 2, &err); /* 5 days: 2 2 1 */
  assert_non_null(h);
  hes_push_t page;
  size_t pages = 0, entries = 0;
  hes_api_result_t r;
  while ((r = hes_api_history_next(h, mono(), &page, &err)) == HES_API_OK && page.entries > 0) {
    pages++;
    entries += page.entries;
    assert_int_equal(page.kind, HES_PUSH_CHANNELS);
    assert_int_equal(page.count, page.entries * 8);
    for (size_t i = 0; i < page.count; i++) {
      assert_int_equal(page.readings[i].cgcode, sim_frozen_channels[i % 8]);
      assert_sim_value(&page.readings[i], page.readings[i].cgcode, false);
    }
  }
  check_ok(r, &err);
  assert_int_equal(entries, 5);
  assert_int_equal(pages, 3);
  assert_int_equal(hes_api_history_total(h), 5);
  hes_api_history_free(h);
  hes_api_free(api);
}

static void test_stale_token(void **state) {
  (void)state;
  hes_api_t *api = api_new();
  hes_push_parser_t *pp = hes_push_parser_new(0);
  hes_api_error_t err;
  hes_api_plan_t plan;
  hes_push_t push;
  const char *meters[] = {M1};
  check_ok(hes_api_read_single(api, mono(), meters, 1, 5069, &plan, &err), &err);
  assert_int_equal(hes_api_token_fetches(api), 1);
  int refused = log_count("\"msg\":\"Token invalid or expired\"", NULL);
  sim_control("/sim/expire-token");
  /* the cached token is refused: a new one is fetched and the call made again */
  check_ok(hes_api_read_single(api, mono(), meters, 1, 5069, &plan, &err), &err);
  assert_int_equal(hes_api_token_fetches(api), 2);
  assert_int_equal(log_count("\"msg\":\"Token invalid or expired\"", NULL), refused + 1);
  wait_push(pp, plan.plan_id, &push);
  assert_int_equal(push.count, 1);
  assert_sim_value(&push.readings[0], 5069, false);
  hes_push_parser_free(pp);
  hes_api_free(api);
}

static void test_errors(void **state) {
  (void)state;
  hes_api_t *api = api_new();
  hes_api_error_t err;
  hes_api_plan_t plan;
  /* the simulator runs with --max-devlist 100 */
  static char buf[101][16];
  const char *many[101];
  for (int i = 0; i < 101; i++) {
    snprintf(buf[i], sizeof buf[i], "3000%08d", i);
    many[i] = buf[i];
  }
  assert_int_equal(hes_api_read_single(api, mono(), many, 101, 5050, &plan, &err), HES_API_EHES);
  assert_int_equal(err.code, 500);
  assert_memory_equal(err.msg, "devList too long", 16);
  assert_string_equal(plan.plan_id, "");
  assert_clean(&err);
  const char *one[] = {M1};
  assert_int_equal(hes_api_read_single(api, mono(), one, 1, 9999, &plan, &err), HES_API_EHES);
  assert_string_equal(err.msg, "Unsupported cgcode: 9999");

  /* injected failures alternate: a HES answer, then an HTML error page */
  sim_control("/sim/fail-rate?rate=1");
  assert_int_equal(hes_api_relay(api, mono(), one, 1, 1, &plan, &err), HES_API_EHES);
  assert_string_equal(err.msg, "System busy, please try again later");
  assert_int_equal(hes_api_relay(api, mono(), one, 1, 1, &plan, &err), HES_API_EHTTP);
  assert_int_equal(err.http_status, 500);
  assert_memory_equal(err.msg, "HTTP 500: <html>", 16);
  assert_int_equal(strlen(err.msg), strlen("HTTP 500: ") + 100);
  assert_clean(&err);
  sim_control("/sim/fail-rate?rate=0");
  check_ok(hes_api_relay(api, mono(), one, 1, 2, &plan, &err), &err);
  assert_int_equal(hes_api_token_fetches(api), 1);
  hes_api_free(api);
}

static int group_setup(void **state) {
  (void)state;
  return subscriber_start();
}

static int group_teardown(void **state) {
  (void)state;
  subscriber_stop();
  return 0;
}

static const char *need(const char *name) {
  const char *v = getenv(name);
  if (!v || !*v) {
    fprintf(stderr, "test_api_sim: %s is not set\n", name);
    exit(1);
  }
  return v;
}

int main(void) {
  env.url = getenv("HES_SIM_URL");
  if (!env.url || !*env.url) {
    fprintf(stderr, "test_api_sim: HES_SIM_URL is not set; tests/integration.sh runs this "
                    "against the simulator. Skipped.\n");
    return 77;
  }
  env.log = getenv("HES_SIM_LOG");
  env.mqtt_port = atoi(need("HES_MQTT_PORT"));
  env.tenant = need("HES_TENANT");
  env.user = need("HES_USER");
  env.password = need("HES_PASSWORD");
  env.secret = need("HES_SECRET");
  env.silent = need("HES_SILENT_METER");
  env.overvoltage = need("HES_OVERVOLTAGE_METER");
  env.relay_fail = need("HES_RELAY_FAIL_METER");

  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_token),          cmocka_unit_test(test_read_single),
      cmocka_unit_test(test_read_frozen),    cmocka_unit_test(test_relay),
      cmocka_unit_test(test_archives),       cmocka_unit_test(test_history_single),
      cmocka_unit_test(test_history_frozen), cmocka_unit_test(test_stale_token),
      cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
