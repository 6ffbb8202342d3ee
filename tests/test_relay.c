/* Tests of the relay safety logic: rule matching, Holdoff, MaxPerMinute, the queue, the
 * filters (own, missing value, first OKAY, unknown meter), the state file and threads.
 * Time is simulated: every call gets its `now`. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "relay.h"

#define T0         1720000000.0
#define NMETERS    50
#define DECISION_N 10

/* ---- fixtures ---------------------------------------------------------------------- */

static char meter_names[NMETERS][24];

static hes_meters_t *make_meters(int n) {
  hes_meters_t *m = hes_meters_new();

  assert_non_null(m);
  for (int i = 0; i < n; i++) {
    snprintf(meter_names[i], sizeof(meter_names[i]), "2024071000%02d", i);
    assert_int_equal(hes_meters_add(m, meter_names[i]), HES_METERS_OK);
  }
  assert_int_equal(hes_meters_seal(m), HES_METERS_OK);
  return m;
}

static hes_relay_config_t base_cfg(const hes_meters_t *m) {
  hes_relay_config_t c = {0};

  c.holdoff = 300;
  c.max_per_minute = 10;
  c.dry_run = false;
  c.queue_max = 64;
  c.state_path = NULL;
  c.meters = m;
  return c;
}

static hes_relay_t *new_relay(const hes_relay_config_t *cfg, double now) {
  char err[512] = "junk";
  hes_relay_t *r = hes_relay_new(cfg, now, err, sizeof(err));

  assert_non_null(r);
  assert_string_equal(err, "");
  return r;
}

static void add_rule_m(hes_relay_t *r, const char *name, const char *plugin, const char *type,
                       const char *ti, int sev, hes_relay_action_t action,
                       const char *const *meters, size_t n) {
  char err[256];
  hes_relay_rule_t rule = {.name = name,
                           .plugin = plugin,
                           .type = type,
                           .type_instance = ti,
                           .severity = sev,
                           .action = action,
                           .meters = meters,
                           .meters_num = n};

  assert_int_equal(hes_relay_add_rule(r, &rule, err, sizeof(err)), 0);
  assert_string_equal(err, "");
}

static void add_rule(hes_relay_t *r, const char *name, const char *plugin, const char *type,
                     const char *ti, int sev, hes_relay_action_t action) {
  add_rule_m(r, name, plugin, type, ti, sev, action, NULL, 0);
}

static hes_relay_event_t event(int sev, const char *plugin, const char *pi, const char *type,
                               const char *ti) {
  hes_relay_event_t e = {0};

  e.severity = sev;
  e.time = T0;
  e.host = "collector";
  e.plugin = plugin;
  e.plugin_instance = pi;
  e.type = type;
  e.type_instance = ti;
  e.message = "Host collector, plugin hes ... Data source \"value\" is currently 262.000000.";
  e.has_value = true;
  e.value_text = "262.000000";
  e.threshold_text = "FailureMax 255";
  return e;
}

static hes_relay_event_t volt(int sev, int meter) {
  return event(sev, "hes", meter_names[meter], "voltage", "A");
}

/* What the decision callback saw. */
typedef struct {
  int count[DECISION_N];
  int calls;
  hes_relay_decision_t last;
  char rule[64];
  char meter[64];
  int action;
  bool rule_null;
} tally_t;

static void tally_cb(void *ctx, hes_relay_decision_t d, const char *rule, const char *meter,
                     hes_relay_action_t action) {
  tally_t *t = ctx;

  assert_true((int)d >= 0 && (int)d < DECISION_N);
  t->count[d]++;
  t->calls++;
  t->last = d;
  t->rule_null = rule == NULL;
  snprintf(t->rule, sizeof(t->rule), "%s", rule != NULL ? rule : "");
  snprintf(t->meter, sizeof(t->meter), "%s", meter != NULL ? meter : "(null)");
  t->action = (int)action;
}

/* Submits ev and checks the number queued and the single decision reported. */
static void expect_one(hes_relay_t *r, const hes_relay_event_t *ev, double now,
                       hes_relay_decision_t want) {
  tally_t t = {0};
  size_t q = hes_relay_submit(r, ev, now, tally_cb, &t);

  assert_int_equal(t.calls, 1);
  assert_int_equal(t.last, want);
  assert_int_equal(q, want == HES_RELAY_QUEUED ? 1 : 0);
}

static size_t drain(hes_relay_t *r) {
  hes_relay_cmd_t c;
  size_t n = 0;

  while (hes_relay_next(r, 0, &c))
    n++;
  return n;
}

/* A private directory for state files, removed with everything in it. */
static char tmpdir[64];

static void make_tmpdir(void) {
  snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_relay.XXXXXX");
  assert_non_null(mkdtemp(tmpdir));
}

static void rm_tmpdir(void) {
  char cmd[128];

  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
  assert_int_equal(system(cmd), 0);
}

static void write_file(const char *path, const char *data, size_t len) {
  FILE *f = fopen(path, "wb");

  assert_non_null(f);
  assert_int_equal(fwrite(data, 1, len, f), len);
  assert_int_equal(fclose(f), 0);
}

/* The file's content, NUL-terminated; *len its length. */
static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  char *buf;
  size_t n;

  if (f == NULL)
    return NULL;
  buf = malloc(1 << 20);
  assert_non_null(buf);
  n = fread(buf, 1, (1 << 20) - 1, f);
  buf[n] = '\0';
  fclose(f);
  if (len != NULL)
    *len = n;
  return buf;
}

static double mono(void) {
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- configuration ------------------------------------------------------------------ */

static void test_new_invalid(void **state) {
  hes_meters_t *m = make_meters(3);
  hes_relay_config_t c;
  char err[256];

  (void)state;
  assert_null(hes_relay_new(NULL, T0, err, sizeof(err)));
  assert_true(strlen(err) > 0);
  c = base_cfg(NULL);
  assert_null(hes_relay_new(&c, T0, err, sizeof(err)));
  assert_string_equal(err, "relay: no meters");
  c = base_cfg(m);
  c.holdoff = -1;
  assert_null(hes_relay_new(&c, T0, err, sizeof(err)));
  assert_non_null(strstr(err, "Holdoff"));
  c.holdoff = NAN;
  assert_null(hes_relay_new(&c, T0, err, sizeof(err)));
  c.holdoff = INFINITY;
  assert_null(hes_relay_new(&c, T0, err, sizeof(err)));
  c = base_cfg(m);
  c.max_per_minute = -1;
  assert_null(hes_relay_new(&c, T0, err, sizeof(err)));
  assert_non_null(strstr(err, "MaxPerMinute"));
  c = base_cfg(m);
  c.queue_max = 0;
  assert_null(hes_relay_new(&c, T0, err, sizeof(err)));
  c = base_cfg(m);
  assert_null(hes_relay_new(&c, NAN, err, sizeof(err)));
  assert_null(hes_relay_new(&c, -1, err, sizeof(err)));
  assert_null(hes_relay_new(&c, 1e13, err, sizeof(err)));
  /* err may be absent */
  assert_null(hes_relay_new(NULL, T0, NULL, 0));
  hes_relay_free(NULL);
  hes_meters_free(m);
}

static void test_add_rule_invalid(void **state) {
  hes_meters_t *m = make_meters(3);
  hes_relay_config_t c = base_cfg(m);
  hes_relay_t *r = new_relay(&c, T0);
  char err[256];
  char longname[65];
  const char *bad_meters[] = {meter_names[0], "999999"};
  const char *null_meter[] = {NULL};
  hes_relay_rule_t ok = {.name = "x", .severity = HES_RELAY_FAILURE, .action = HES_RELAY_OPEN};
  hes_relay_rule_t rule;

  (void)state;
  memset(longname, 'n', 64);
  longname[64] = '\0';

  rule = ok;
  rule.name = NULL;
  assert_int_equal(hes_relay_add_rule(r, &rule, err, sizeof(err)), EINVAL);
  rule.name = "";
  assert_int_equal(hes_relay_add_rule(r, &rule, err, sizeof(err)), EINVAL);
  rule.name = longname;
  assert_int_equal(hes_relay_add_rule(r, &rule, err, sizeof(err)), EINVAL);
  longname[63] = '\0'; /* 63 characters fit cmd.rule */
  assert_int_equal(hes_relay_add_rule(r, &rule, err, sizeof(err)), 0);

  rule = ok;
  rule.severity = 0;
  assert_int_equal(hes_relay_add_rule(r, &rule, err, sizeof(err)), EINVAL);
  assert_non_null(strstr(err, "Severity"));
  rule.severity = 3;
  assert_int_equal(hes_relay_add_rule(r, &rule, err, sizeof(err)), EINVAL);

  rule = ok;
  rule.action = 0;
  assert_int_equal(hes_relay_add_rule(r, &rule, err, sizeof(err)), EINVAL);
  assert_non_null(strstr(err, "Action"));
  rule.action = 3;
  assert_int_equal(hes_relay_add_rule(r, &rule, err, sizeof(err)), EINVAL);

  rule = ok;
  rule.meters = bad_meters;
  rule.meters_num = 2;
  assert_int_equal(hes_relay_add_rule(r, &rule, err, sizeof(err)), EINVAL);
  assert_string_equal(err, "relay: rule \"x\": Meter \"999999\" is not a configured meter");
  rule.meters = null_meter;
  rule.meters_num = 1;
  assert_int_equal(hes_relay_add_rule(r, &rule, err, sizeof(err)), EINVAL);
  rule.meters = NULL;
  rule.meters_num = 1;
  assert_int_equal(hes_relay_add_rule(r, &rule, err, sizeof(err)), EINVAL);
  assert_int_equal(hes_relay_add_rule(NULL, &ok, err, sizeof(err)), EINVAL);
  assert_int_equal(hes_relay_add_rule(r, NULL, err, sizeof(err)), EINVAL);

  /* The rejected rules were not added: only longname's rule exists, matching anything. */
  {
    hes_relay_event_t e = volt(HES_RELAY_FAILURE, 0);
    tally_t t = {0};
    assert_int_equal(hes_relay_submit(r, &e, T0, tally_cb, &t), 1);
    assert_int_equal(t.calls, 1);
    assert_string_equal(t.rule, longname);
  }
  hes_relay_free(r);
  hes_meters_free(m);
}

static void test_strings(void **state) {
  (void)state;
  assert_string_equal(hes_relay_decision_string(HES_RELAY_QUEUED), "queued");
  assert_string_equal(hes_relay_decision_string(HES_RELAY_SKIP_NO_RULE), "no rule matches");
  assert_string_equal(hes_relay_decision_string(HES_RELAY_SKIP_OWN), "own notification");
  assert_string_equal(hes_relay_decision_string(HES_RELAY_SKIP_NO_VALUE),
                      "no value (missing-value notification)");
  assert_string_equal(hes_relay_decision_string(HES_RELAY_SKIP_FIRST_OKAY),
                      "OKAY without an earlier problem");
  assert_string_equal(hes_relay_decision_string(HES_RELAY_SKIP_UNKNOWN_METER),
                      "not a configured meter");
  assert_string_equal(hes_relay_decision_string(HES_RELAY_SKIP_HOLDOFF), "holdoff");
  assert_string_equal(hes_relay_decision_string(HES_RELAY_SKIP_RATE), "over MaxPerMinute");
  assert_string_equal(hes_relay_decision_string(HES_RELAY_SKIP_QUEUE_FULL), "queue full");
  assert_string_equal(hes_relay_decision_string(HES_RELAY_SKIP_STATE), "state not saved");
  assert_string_equal(hes_relay_decision_string((hes_relay_decision_t)99), "unknown");
  assert_string_equal(hes_relay_action_string(HES_RELAY_OPEN), "open");
  assert_string_equal(hes_relay_action_string(HES_RELAY_CLOSE), "close");
  assert_string_equal(hes_relay_action_string((hes_relay_action_t)0), "none");
}

/* ---- rule matching ------------------------------------------------------------------- */

static void test_rule_matching(void **state) {
  hes_meters_t *m = make_meters(6);
  hes_relay_config_t c = base_cfg(m);
  hes_relay_t *r;
  hes_relay_event_t e;
  tally_t t;
  hes_relay_cmd_t cmd;

  (void)state;
  c.holdoff = 0;
  c.max_per_minute = 1000;
  r = new_relay(&c, T0);
  add_rule(r, "overvoltage", "hes", "voltage", "A", HES_RELAY_FAILURE, HES_RELAY_OPEN);
  add_rule(r, "any-warning", NULL, NULL, NULL, HES_RELAY_WARNING, HES_RELAY_CLOSE);
  add_rule(r, "current", NULL, "current", NULL, HES_RELAY_FAILURE, HES_RELAY_OPEN);

  /* exact match */
  e = volt(HES_RELAY_FAILURE, 1);
  memset(&t, 0, sizeof(t));
  assert_int_equal(hes_relay_submit(r, &e, T0, tally_cb, &t), 1);
  assert_int_equal(t.calls, 1);
  assert_int_equal(t.last, HES_RELAY_QUEUED);
  assert_string_equal(t.rule, "overvoltage");
  assert_string_equal(t.meter, meter_names[1]);
  assert_int_equal(t.action, HES_RELAY_OPEN);
  assert_true(hes_relay_next(r, 0, &cmd));
  assert_string_equal(cmd.rule, "overvoltage");
  assert_string_equal(cmd.meter, meter_names[1]);
  assert_int_equal(cmd.meter_index, 1);
  assert_int_equal(cmd.action, HES_RELAY_OPEN);

  /* case-sensitive, every field, and severity equal */
  e = event(HES_RELAY_FAILURE, "hes", meter_names[1], "Voltage", "A");
  memset(&t, 0, sizeof(t));
  assert_int_equal(hes_relay_submit(r, &e, T0, tally_cb, &t), 0);
  assert_int_equal(t.calls, 1);
  assert_int_equal(t.last, HES_RELAY_SKIP_NO_RULE);
  assert_true(t.rule_null);
  assert_string_equal(t.meter, meter_names[1]);
  assert_int_equal(t.action, 0);
  e = event(HES_RELAY_FAILURE, "HES", meter_names[1], "voltage", "A");
  expect_one(r, &e, T0, HES_RELAY_SKIP_NO_RULE);
  e = event(HES_RELAY_FAILURE, "hes", meter_names[1], "voltage", "B");
  expect_one(r, &e, T0, HES_RELAY_SKIP_NO_RULE);
  e = event(HES_RELAY_FAILURE, "hes", meter_names[1], "voltage", NULL);
  expect_one(r, &e, T0, HES_RELAY_SKIP_NO_RULE);
  e = event(HES_RELAY_FAILURE, NULL, meter_names[1], "voltage", "A");
  expect_one(r, &e, T0, HES_RELAY_SKIP_NO_RULE);
  e = volt(HES_RELAY_OKAY, 1);
  expect_one(r, &e, T0, HES_RELAY_SKIP_NO_RULE);
  e = volt(3, 1); /* not a severity */
  expect_one(r, &e, T0, HES_RELAY_SKIP_NO_RULE);

  /* NULL fields match anything, including NULL and "" */
  e = event(HES_RELAY_WARNING, "foo", meter_names[2], "bar", NULL);
  memset(&t, 0, sizeof(t));
  assert_int_equal(hes_relay_submit(r, &e, T0, tally_cb, &t), 1);
  assert_string_equal(t.rule, "any-warning");
  assert_int_equal(t.action, HES_RELAY_CLOSE);
  e = event(HES_RELAY_WARNING, NULL, meter_names[2], NULL, NULL);
  expect_one(r, &e, T0, HES_RELAY_QUEUED);
  e = event(HES_RELAY_FAILURE, "x", meter_names[3], "current", "");
  memset(&t, 0, sizeof(t));
  assert_int_equal(hes_relay_submit(r, &e, T0, tally_cb, &t), 1);
  assert_string_equal(t.rule, "current");
  assert_int_equal(drain(r), 3);

  /* Several rules for one event: each target at most one command; Meter lists apply. */
  {
    const char *list[] = {meter_names[3], meter_names[4], meter_names[3], meter_names[1]};
    add_rule(r, "also-voltage", NULL, "voltage", NULL, HES_RELAY_FAILURE, HES_RELAY_CLOSE);
    add_rule_m(r, "list", NULL, "voltage", NULL, HES_RELAY_FAILURE, HES_RELAY_OPEN, list, 4);
  }
  e = volt(HES_RELAY_FAILURE, 1);
  memset(&t, 0, sizeof(t));
  assert_int_equal(hes_relay_submit(r, &e, T0, tally_cb, &t), 3);
  assert_int_equal(t.calls, 3);
  assert_int_equal(t.count[HES_RELAY_QUEUED], 3);
  assert_true(hes_relay_next(r, 0, &cmd));
  assert_string_equal(cmd.rule, "overvoltage"); /* the first rule wins meter 1 */
  assert_int_equal(cmd.meter_index, 1);
  assert_true(hes_relay_next(r, 0, &cmd));
  assert_string_equal(cmd.rule, "list");
  assert_int_equal(cmd.meter_index, 3);
  assert_true(hes_relay_next(r, 0, &cmd));
  assert_string_equal(cmd.rule, "list");
  assert_int_equal(cmd.meter_index, 4);
  assert_false(hes_relay_next(r, 0, &cmd));

  /* A Meter-list rule ignores the plugin_instance: even an unknown one. */
  e = event(HES_RELAY_FAILURE, "other", "not-a-meter", "voltage", "C");
  memset(&t, 0, sizeof(t));
  assert_int_equal(hes_relay_submit(r, &e, T0, tally_cb, &t), 3);
  /* also-voltage targets the plugin_instance: unknown; list: 3, 4, 1 */
  assert_int_equal(t.calls, 4);
  assert_int_equal(t.count[HES_RELAY_SKIP_UNKNOWN_METER], 1);
  assert_int_equal(t.count[HES_RELAY_QUEUED], 3);
  assert_int_equal(drain(r), 3);

  hes_relay_free(r);
  hes_meters_free(m);
}

static void test_submit_guards(void **state) {
  hes_meters_t *m = make_meters(2);
  hes_relay_config_t c = base_cfg(m);
  hes_relay_t *r = new_relay(&c, T0);
  hes_relay_event_t e = volt(HES_RELAY_FAILURE, 0);
  tally_t t = {0};

  (void)state;
  add_rule(r, "r", NULL, NULL, NULL, HES_RELAY_FAILURE, HES_RELAY_OPEN);
  assert_int_equal(hes_relay_submit(NULL, &e, T0, tally_cb, &t), 0);
  assert_int_equal(hes_relay_submit(r, NULL, T0, tally_cb, &t), 0);
  assert_int_equal(hes_relay_submit(r, &e, NAN, tally_cb, &t), 0);
  assert_int_equal(hes_relay_submit(r, &e, INFINITY, tally_cb, &t), 0);
  assert_int_equal(hes_relay_submit(r, &e, -1, tally_cb, &t), 0);
  assert_int_equal(t.calls, 0);
  assert_int_equal(hes_relay_queue_len(r), 0);
  /* a NULL callback is fine */
  assert_int_equal(hes_relay_submit(r, &e, T0, NULL, NULL), 1);
  assert_int_equal(hes_relay_queue_len(r), 1);
  /* an event with every string NULL matches the catch-all rule but names no meter */
  memset(&e, 0, sizeof(e));
  e.severity = HES_RELAY_FAILURE;
  e.has_value = true;
  memset(&t, 0, sizeof(t));
  assert_int_equal(hes_relay_submit(r, &e, T0, tally_cb, &t), 0);
  assert_int_equal(t.last, HES_RELAY_SKIP_UNKNOWN_METER);
  assert_string_equal(t.meter, "");
  hes_relay_free(r);
  hes_meters_free(m);
}

/* ---- MaxPerMinute ------------------------------------------------------------------- */

/* 1,000 events for 50 meters within a simulated minute. */
static void rate_burst(double holdoff, hes_relay_action_t action, int want_holdoff) {
  hes_meters_t *m = make_meters(NMETERS);
  hes_relay_config_t c = base_cfg(m);
  hes_relay_t *r;
  tally_t t = {0};
  size_t queued = 0;
  hes_relay_cmd_t cmd;
  const double step = 1.0 / 32; /* exact in binary: the window edges below are exact */

  c.holdoff = holdoff;
  c.max_per_minute = 10;
  c.queue_max = 2000;
  r = new_relay(&c, T0);
  add_rule(r, "rule", "hes", "voltage", NULL, HES_RELAY_FAILURE, action);
  for (int i = 0; i < 1000; i++) {
    hes_relay_event_t e = volt(HES_RELAY_FAILURE, i % NMETERS);
    queued += hes_relay_submit(r, &e, T0 + i * step, tally_cb, &t);
  }
  assert_int_equal(queued, 10);
  assert_int_equal(t.calls, 1000);
  assert_int_equal(t.count[HES_RELAY_QUEUED], 10);
  assert_int_equal(t.count[HES_RELAY_SKIP_HOLDOFF], want_holdoff);
  assert_int_equal(t.count[HES_RELAY_SKIP_RATE], 990 - want_holdoff);
  assert_int_equal(hes_relay_queue_len(r), 10);
  for (int i = 0; i < 10; i++) {
    assert_true(hes_relay_next(r, 0, &cmd));
    assert_int_equal(cmd.meter_index, i);
    assert_int_equal(cmd.action, action);
    assert_true(cmd.queued == T0 + i * step);
  }
  assert_false(hes_relay_next(r, 0, &cmd));

  /* The window slides: the first command (T0) leaves it at exactly T0 + 60, the second
   * at T0 + 60 + step; a dropped event never comes back. */
  {
    hes_relay_event_t e = volt(HES_RELAY_FAILURE, 20);
    hes_relay_event_t e2 = volt(HES_RELAY_FAILURE, 21);
    hes_relay_event_t e3 = volt(HES_RELAY_FAILURE, 22);
    expect_one(r, &e, T0 + 60 - step, HES_RELAY_SKIP_RATE);
    expect_one(r, &e, T0 + 60, HES_RELAY_QUEUED);
    expect_one(r, &e2, T0 + 60, HES_RELAY_SKIP_RATE);
    expect_one(r, &e2, T0 + 60 + step, HES_RELAY_QUEUED);
    expect_one(r, &e3, T0 + 60 + step, HES_RELAY_SKIP_RATE);
    assert_int_equal(drain(r), 2);
  }
  hes_relay_free(r);
  hes_meters_free(m);
}

static void test_rate_burst(void **state) {
  (void)state;
  /* Holdoff 0: everything over the cap is SKIP_RATE. */
  rate_burst(0, HES_RELAY_OPEN, 0);
  /* Holdoff 300: the 10 commanded meters come round 19 more times each (i % 50 < 10 for
   * i in 50..999: 190 events) and are held off first. */
  rate_burst(300, HES_RELAY_OPEN, 190);
}

static void test_close_capped_like_open(void **state) {
  hes_meters_t *m = make_meters(NMETERS);
  hes_relay_config_t c = base_cfg(m);
  hes_relay_t *r;
  tally_t t = {0};
  size_t queued = 0;

  (void)state;
  rate_burst(0, HES_RELAY_CLOSE, 0);
  rate_burst(300, HES_RELAY_CLOSE, 190);

  /* open and close share one cap */
  c.holdoff = 0;
  c.max_per_minute = 5;
  r = new_relay(&c, T0);
  add_rule(r, "open", NULL, "voltage", NULL, HES_RELAY_FAILURE, HES_RELAY_OPEN);
  add_rule(r, "close", NULL, "voltage", NULL, HES_RELAY_WARNING, HES_RELAY_CLOSE);
  for (int i = 0; i < 3; i++) {
    hes_relay_event_t e = volt(HES_RELAY_FAILURE, i);
    queued += hes_relay_submit(r, &e, T0 + i, tally_cb, &t);
  }
  for (int i = 3; i < 8; i++) {
    hes_relay_event_t e = volt(HES_RELAY_WARNING, i);
    queued += hes_relay_submit(r, &e, T0 + i, tally_cb, &t);
  }
  assert_int_equal(queued, 5);
  assert_int_equal(t.count[HES_RELAY_QUEUED], 5);
  assert_int_equal(t.count[HES_RELAY_SKIP_RATE], 3);
  assert_int_equal(t.action, HES_RELAY_CLOSE);
  hes_relay_free(r);
  hes_meters_free(m);
}

static void test_rate_zero(void **state) {
  hes_meters_t *m = make_meters(2);
  hes_relay_config_t c = base_cfg(m);
  hes_relay_t *r;
  hes_relay_event_t e = volt(HES_RELAY_FAILURE, 0);

  (void)state;
  c.max_per_minute = 0; /* nothing, ever */
  r = new_relay(&c, T0);
  add_rule(r, "r", NULL, NULL, NULL, HES_RELAY_FAILURE, HES_RELAY_OPEN);
  expect_one(r, &e, T0, HES_RELAY_SKIP_RATE);
  expect_one(r, &e, T0 + 3600, HES_RELAY_SKIP_RATE);
  hes_relay_free(r);
  hes_meters_free(m);
}

/* ---- Holdoff ------------------------------------------------------------------------ */

static void test_holdoff(void **state) {
  hes_meters_t *m = make_meters(3);
  hes_relay_config_t c = base_cfg(m);
  hes_relay_t *r;
  hes_relay_event_t f0 = volt(HES_RELAY_FAILURE, 0);
  hes_relay_event_t w0 = volt(HES_RELAY_WARNING, 0);
  hes_relay_event_t f1 = volt(HES_RELAY_FAILURE, 1);

  (void)state;
  c.max_per_minute = 100;
  r = new_relay(&c, T0);
  add_rule(r, "open", NULL, "voltage", NULL, HES_RELAY_FAILURE, HES_RELAY_OPEN);
  add_rule(r, "close", NULL, "voltage", NULL, HES_RELAY_WARNING, HES_RELAY_CLOSE);
  expect_one(r, &f0, T0, HES_RELAY_QUEUED);
  expect_one(r, &f0, T0, HES_RELAY_SKIP_HOLDOFF);
  expect_one(r, &f0, T0 + 299.999, HES_RELAY_SKIP_HOLDOFF);
  /* open and close alike */
  expect_one(r, &w0, T0 + 299.999, HES_RELAY_SKIP_HOLDOFF);
  /* another meter is not held off */
  expect_one(r, &f1, T0 + 1, HES_RELAY_QUEUED);
  /* a clock that stepped back holds off too */
  expect_one(r, &f0, T0 - 10, HES_RELAY_SKIP_HOLDOFF);
  expect_one(r, &w0, T0 + 300, HES_RELAY_QUEUED);
  expect_one(r, &f0, T0 + 300, HES_RELAY_SKIP_HOLDOFF); /* now charged from T0 + 300 */
  expect_one(r, &f0, T0 + 600, HES_RELAY_QUEUED);
  assert_int_equal(drain(r), 4);
  hes_relay_free(r);
  hes_meters_free(m);
}

/* ---- dry run, unknown meter, filters ------------------------------------------------- */

static void test_dry_run(void **state) {
  hes_meters_t *m = make_meters(3);
  hes_relay_config_t c = base_cfg(m);
  hes_relay_t *r;
  hes_relay_event_t e = volt(HES_RELAY_FAILURE, 2);
  hes_relay_cmd_t cmd;
  hes_relay_cmd_t cmd2;
  char longval[200];

  (void)state;
  c.dry_run = true;
  r = new_relay(&c, T0);
  add_rule(r, "overvoltage", "hes", "voltage", "A", HES_RELAY_FAILURE, HES_RELAY_OPEN);
  assert_int_equal(hes_relay_submit(r, &e, T0 + 0.5, NULL, NULL), 1);
  assert_true(hes_relay_next(r, 0, &cmd));
  assert_true(cmd.dry_run);
  assert_true(cmd.id > 0);
  assert_string_equal(cmd.rule, "overvoltage");
  assert_string_equal(cmd.meter, meter_names[2]);
  assert_int_equal(cmd.meter_index, 2);
  assert_int_equal(cmd.action, HES_RELAY_OPEN);
  assert_true(cmd.queued == T0 + 0.5);
  assert_string_equal(cmd.value_text, "262.000000");
  assert_string_equal(cmd.threshold_text, "FailureMax 255");
  hes_relay_free(r);

  /* not dry: the flag is false; text is bounded and cannot forge log lines */
  c.dry_run = false;
  r = new_relay(&c, T0);
  add_rule(r, "overvoltage", "hes", "voltage", "A", HES_RELAY_FAILURE, HES_RELAY_OPEN);
  memset(longval, '7', sizeof(longval) - 1);
  longval[sizeof(longval) - 1] = '\0';
  e = volt(HES_RELAY_FAILURE, 0);
  e.value_text = longval;
  e.threshold_text = "FailureMax 255\nfake: log line\t!";
  assert_int_equal(hes_relay_submit(r, &e, T0, NULL, NULL), 1);
  e = volt(HES_RELAY_FAILURE, 1);
  e.value_text = NULL;
  e.threshold_text = NULL;
  assert_int_equal(hes_relay_submit(r, &e, T0, NULL, NULL), 1);
  assert_true(hes_relay_next(r, 0, &cmd));
  assert_true(hes_relay_next(r, 0, &cmd2));
  assert_false(cmd.dry_run);
  assert_int_equal(strlen(cmd.value_text), sizeof(cmd.value_text) - 1);
  assert_string_equal(cmd.threshold_text, "FailureMax 255?fake: log line?!");
  assert_string_equal(cmd2.value_text, "");
  assert_string_equal(cmd2.threshold_text, "");
  assert_true(cmd2.id > cmd.id);
  hes_relay_free(r);
  hes_meters_free(m);
}

static void test_unknown_meter(void **state) {
  hes_meters_t *m = make_meters(3);
  hes_relay_config_t c = base_cfg(m);
  hes_relay_t *r;
  hes_relay_event_t e;
  tally_t t = {0};
  char longpi[100];

  (void)state;
  r = new_relay(&c, T0);
  add_rule(r, "overvoltage", NULL, "voltage", NULL, HES_RELAY_FAILURE, HES_RELAY_OPEN);
  e = event(HES_RELAY_FAILURE, "hes", "999999999999", "voltage", "A");
  assert_int_equal(hes_relay_submit(r, &e, T0, tally_cb, &t), 0);
  assert_int_equal(t.calls, 1);
  assert_int_equal(t.last, HES_RELAY_SKIP_UNKNOWN_METER);
  assert_string_equal(t.rule, "overvoltage");
  assert_string_equal(t.meter, "999999999999");
  assert_int_equal(t.action, HES_RELAY_OPEN);
  /* a prefix, a longer string, the empty string, NULL, an over-long one */
  e.plugin_instance = "20240710000";
  expect_one(r, &e, T0, HES_RELAY_SKIP_UNKNOWN_METER);
  e.plugin_instance = "2024071000001";
  expect_one(r, &e, T0, HES_RELAY_SKIP_UNKNOWN_METER);
  e.plugin_instance = "";
  expect_one(r, &e, T0, HES_RELAY_SKIP_UNKNOWN_METER);
  e.plugin_instance = NULL;
  expect_one(r, &e, T0, HES_RELAY_SKIP_UNKNOWN_METER);
  memset(longpi, '1', sizeof(longpi) - 1);
  longpi[sizeof(longpi) - 1] = '\0';
  e.plugin_instance = longpi;
  expect_one(r, &e, T0, HES_RELAY_SKIP_UNKNOWN_METER);
  /* the unknown ones charged nothing: the cap and holdoff are untouched */
  assert_int_equal(hes_relay_queue_len(r), 0);
  for (int i = 0; i < 3; i++) {
    e = volt(HES_RELAY_FAILURE, i);
    expect_one(r, &e, T0, HES_RELAY_QUEUED);
  }
  hes_relay_free(r);
  hes_meters_free(m);
}

static void test_own_notification(void **state) {
  hes_meters_t *m = make_meters(3);
  hes_relay_config_t c = base_cfg(m);
  hes_relay_t *r;
  hes_relay_event_t e;
  tally_t t = {0};

  (void)state;
  r = new_relay(&c, T0);
  add_rule(r, "catch-all", NULL, NULL, NULL, HES_RELAY_FAILURE, HES_RELAY_OPEN);
  e = event(HES_RELAY_FAILURE, "hes", meter_names[0], "relay", NULL);
  assert_int_equal(hes_relay_submit(r, &e, T0, tally_cb, &t), 0);
  assert_int_equal(t.calls, 1);
  assert_int_equal(t.last, HES_RELAY_SKIP_OWN);
  assert_string_equal(t.rule, "catch-all");
  assert_string_equal(t.meter, meter_names[0]);
  e.has_value = false; /* own comes first */
  expect_one(r, &e, T0, HES_RELAY_SKIP_OWN);
  /* nothing was charged */
  e = event(HES_RELAY_FAILURE, "hes", meter_names[0], "voltage", "A");
  expect_one(r, &e, T0, HES_RELAY_QUEUED);
  /* only plugin hes AND type relay */
  e = event(HES_RELAY_FAILURE, "hesx", meter_names[1], "relay", NULL);
  expect_one(r, &e, T0, HES_RELAY_QUEUED);
  e = event(HES_RELAY_FAILURE, "hes", meter_names[2], "relays", NULL);
  expect_one(r, &e, T0, HES_RELAY_QUEUED);
  hes_relay_free(r);

  /* own, but no rule would have matched: SKIP_NO_RULE */
  r = new_relay(&c, T0);
  add_rule(r, "v", NULL, "voltage", NULL, HES_RELAY_FAILURE, HES_RELAY_OPEN);
  e = event(HES_RELAY_FAILURE, "hes", meter_names[0], "relay", NULL);
  expect_one(r, &e, T0, HES_RELAY_SKIP_NO_RULE);
  hes_relay_free(r);
  hes_meters_free(m);
}

static void test_missing_value(void **state) {
  hes_meters_t *m = make_meters(3);
  hes_relay_config_t c = base_cfg(m);
  hes_relay_t *r;
  hes_relay_event_t e = volt(HES_RELAY_FAILURE, 0);
  tally_t t = {0};

  (void)state;
  r = new_relay(&c, T0);
  add_rule(r, "overvoltage", NULL, "voltage", NULL, HES_RELAY_FAILURE, HES_RELAY_OPEN);
  e.has_value = false;
  e.value_text = NULL;
  assert_int_equal(hes_relay_submit(r, &e, T0, tally_cb, &t), 0);
  assert_int_equal(t.calls, 1);
  assert_int_equal(t.last, HES_RELAY_SKIP_NO_VALUE);
  assert_string_equal(t.rule, "overvoltage");
  assert_string_equal(t.meter, meter_names[0]);
  assert_int_equal(t.action, HES_RELAY_OPEN);
  /* a value-less event that matches no rule is just SKIP_NO_RULE */
  e.type = "current";
  expect_one(r, &e, T0, HES_RELAY_SKIP_NO_RULE);
  /* nothing was charged */
  e = volt(HES_RELAY_FAILURE, 0);
  expect_one(r, &e, T0 + 1, HES_RELAY_QUEUED);
  hes_relay_free(r);
  hes_meters_free(m);
}

static void test_first_okay(void **state) {
  hes_meters_t *m = make_meters(5);
  hes_relay_config_t c = base_cfg(m);
  hes_relay_t *r;
  hes_relay_event_t e;
  tally_t t = {0};

  (void)state;
  c.holdoff = 0;
  c.max_per_minute = 1000;
  r = new_relay(&c, T0);
  add_rule(r, "open", NULL, "voltage", NULL, HES_RELAY_FAILURE, HES_RELAY_OPEN);
  add_rule(r, "reconnect", NULL, "voltage", NULL, HES_RELAY_OKAY, HES_RELAY_CLOSE);

  /* a series appears: the threshold plugin's first OKAY */
  e = volt(HES_RELAY_OKAY, 0);
  assert_int_equal(hes_relay_submit(r, &e, T0, tally_cb, &t), 0);
  assert_int_equal(t.calls, 1);
  assert_int_equal(t.last, HES_RELAY_SKIP_FIRST_OKAY);
  assert_string_equal(t.rule, "reconnect");
  assert_int_equal(t.action, HES_RELAY_CLOSE);
  /* a missing-value FAILURE does not count as a problem seen */
  e = volt(HES_RELAY_FAILURE, 0);
  e.has_value = false;
  expect_one(r, &e, T0 + 1, HES_RELAY_SKIP_NO_VALUE);
  e = volt(HES_RELAY_OKAY, 0);
  expect_one(r, &e, T0 + 2, HES_RELAY_SKIP_FIRST_OKAY);
  /* a real FAILURE, then the OKAY is acted on (and again later: still seen) */
  e = volt(HES_RELAY_FAILURE, 0);
  expect_one(r, &e, T0 + 3, HES_RELAY_QUEUED);
  e = volt(HES_RELAY_OKAY, 0);
  expect_one(r, &e, T0 + 4, HES_RELAY_QUEUED);
  expect_one(r, &e, T0 + 5, HES_RELAY_QUEUED);
  /* per identifier: another type_instance, host or meter has not seen a problem */
  e = event(HES_RELAY_OKAY, "hes", meter_names[0], "voltage", "B");
  expect_one(r, &e, T0 + 6, HES_RELAY_SKIP_FIRST_OKAY);
  e = volt(HES_RELAY_OKAY, 0);
  e.host = "other-host";
  expect_one(r, &e, T0 + 6, HES_RELAY_SKIP_FIRST_OKAY);
  e = volt(HES_RELAY_OKAY, 1);
  expect_one(r, &e, T0 + 6, HES_RELAY_SKIP_FIRST_OKAY);
  /* a WARNING with a value counts, even though no WARNING rule exists */
  e = volt(HES_RELAY_WARNING, 1);
  expect_one(r, &e, T0 + 7, HES_RELAY_SKIP_NO_RULE);
  e = volt(HES_RELAY_OKAY, 1);
  expect_one(r, &e, T0 + 8, HES_RELAY_QUEUED);
  /* an OKAY that no OKAY rule would match is SKIP_NO_RULE */
  e = event(HES_RELAY_OKAY, "hes", meter_names[0], "current", "A");
  expect_one(r, &e, T0 + 9, HES_RELAY_SKIP_NO_RULE);
  hes_relay_free(r);

  /* bounded: beyond okay_track_max the oldest identifier is forgotten */
  c.okay_track_max = 2;
  r = new_relay(&c, T0);
  add_rule(r, "reconnect", NULL, "voltage", NULL, HES_RELAY_OKAY, HES_RELAY_CLOSE);
  for (int i = 0; i < 3; i++) {
    e = volt(HES_RELAY_FAILURE, i);
    expect_one(r, &e, T0, HES_RELAY_SKIP_NO_RULE);
  }
  e = volt(HES_RELAY_FAILURE, 1); /* seen again: no new entry, no eviction */
  expect_one(r, &e, T0, HES_RELAY_SKIP_NO_RULE);
  e = volt(HES_RELAY_OKAY, 0);
  expect_one(r, &e, T0 + 1, HES_RELAY_SKIP_FIRST_OKAY);
  e = volt(HES_RELAY_OKAY, 1);
  expect_one(r, &e, T0 + 1, HES_RELAY_QUEUED);
  e = volt(HES_RELAY_OKAY, 2);
  expect_one(r, &e, T0 + 1, HES_RELAY_QUEUED);
  /* many more than the bound: the memory stays bounded (checked by ASan's leak check) */
  for (int i = 0; i < 1000; i++) {
    char ti[16];
    snprintf(ti, sizeof(ti), "x%d", i);
    e = event(HES_RELAY_FAILURE, "hes", meter_names[3], "voltage", ti);
    assert_int_equal(hes_relay_submit(r, &e, T0 + 2, NULL, NULL), 0);
  }
  e = event(HES_RELAY_OKAY, "hes", meter_names[3], "voltage", "x998");
  expect_one(r, &e, T0 + 3, HES_RELAY_QUEUED);
  e = event(HES_RELAY_OKAY, "hes", meter_names[3], "voltage", "x997");
  expect_one(r, &e, T0 + 3, HES_RELAY_SKIP_FIRST_OKAY);
  e = event(HES_RELAY_OKAY, "hes", meter_names[4], "voltage", "x2");
  expect_one(r, &e, T0 + 3, HES_RELAY_SKIP_FIRST_OKAY);
  hes_relay_free(r);
  hes_meters_free(m);
}

/* ---- the queue and the worker's side ---------------------------------------------------- */

static void test_queue_full(void **state) {
  hes_meters_t *m = make_meters(6);
  hes_relay_config_t c = base_cfg(m);
  hes_relay_t *r;
  hes_relay_event_t e;
  hes_relay_cmd_t cmd;
  tally_t t = {0};

  (void)state;
  c.queue_max = 3;
  c.max_per_minute = 5;
  r = new_relay(&c, T0);
  add_rule(r, "r", NULL, NULL, NULL, HES_RELAY_FAILURE, HES_RELAY_OPEN);
  for (int i = 0; i < 5; i++) {
    e = volt(HES_RELAY_FAILURE, i);
    hes_relay_submit(r, &e, T0, tally_cb, &t);
  }
  assert_int_equal(t.count[HES_RELAY_QUEUED], 3);
  assert_int_equal(t.count[HES_RELAY_SKIP_QUEUE_FULL], 2);
  assert_string_equal(t.meter, meter_names[4]);
  assert_int_equal(hes_relay_queue_len(r), 3);
  /* queue full charged neither holdoff nor the cap: after one is taken, meter 3 goes and
   * the fifth command of the minute fits */
  assert_true(hes_relay_next(r, 0, &cmd));
  assert_int_equal(cmd.meter_index, 0);
  e = volt(HES_RELAY_FAILURE, 3);
  expect_one(r, &e, T0, HES_RELAY_QUEUED);
  e = volt(HES_RELAY_FAILURE, 4);
  expect_one(r, &e, T0, HES_RELAY_SKIP_QUEUE_FULL);
  assert_true(hes_relay_next(r, 0, &cmd));
  expect_one(r, &e, T0, HES_RELAY_QUEUED);
  e = volt(HES_RELAY_FAILURE, 5);
  expect_one(r, &e, T0, HES_RELAY_SKIP_RATE);
  /* order is kept across the ring's wrap */
  for (int want = 2; want <= 4; want++) {
    assert_true(hes_relay_next(r, 0, &cmd));
    assert_int_equal(cmd.meter_index, want);
  }
  assert_false(hes_relay_next(r, 0, &cmd));
  hes_relay_free(r);
  hes_meters_free(m);
}

/* A rule listing every meter: one event considers 50 pairs; the queue takes 3. */
static void test_meter_list_rule(void **state) {
  hes_meters_t *m = make_meters(NMETERS);
  hes_relay_config_t c = base_cfg(m);
  hes_relay_t *r;
  hes_relay_event_t e = event(HES_RELAY_FAILURE, "cpu", "0", "percent", "idle");
  const char *all[NMETERS];
  hes_relay_cmd_t cmd;
  tally_t t = {0};

  (void)state;
  for (int i = 0; i < NMETERS; i++)
    all[i] = meter_names[i];
  c.queue_max = 3;
  c.max_per_minute = 100;
  r = new_relay(&c, T0);
  add_rule_m(r, "all", "cpu", NULL, NULL, HES_RELAY_FAILURE, HES_RELAY_OPEN, all, NMETERS);
  assert_int_equal(hes_relay_submit(r, &e, T0, tally_cb, &t), 3);
  assert_int_equal(t.calls, NMETERS);
  assert_int_equal(t.count[HES_RELAY_QUEUED], 3);
  assert_int_equal(t.count[HES_RELAY_SKIP_QUEUE_FULL], NMETERS - 3);
  assert_string_equal(t.meter, meter_names[NMETERS - 1]);
  for (int i = 0; i < 3; i++) {
    assert_true(hes_relay_next(r, 0, &cmd));
    assert_int_equal(cmd.meter_index, i);
    assert_string_equal(cmd.rule, "all");
  }
  /* the next event: the three are held off, the queue takes the next three */
  memset(&t, 0, sizeof(t));
  assert_int_equal(hes_relay_submit(r, &e, T0 + 1, tally_cb, &t), 3);
  assert_int_equal(t.count[HES_RELAY_SKIP_HOLDOFF], 3);
  assert_int_equal(t.count[HES_RELAY_QUEUED], 3);
  assert_int_equal(t.count[HES_RELAY_SKIP_QUEUE_FULL], NMETERS - 6);
  for (int i = 3; i < 6; i++) {
    assert_true(hes_relay_next(r, 0, &cmd));
    assert_int_equal(cmd.meter_index, i);
  }
  hes_relay_free(r);
  hes_meters_free(m);
}

typedef struct {
  hes_relay_t *r;
  double timeout;
  bool got;
  double took;
} waiter_t;

static void *waiter_main(void *arg) {
  waiter_t *w = arg;
  hes_relay_cmd_t cmd;
  double t0 = mono();

  w->got = hes_relay_next(w->r, w->timeout, &cmd);
  w->took = mono() - t0;
  return NULL;
}

static void test_next_timeout_and_stop(void **state) {
  hes_meters_t *m = make_meters(3);
  hes_relay_config_t c = base_cfg(m);
  hes_relay_t *r;
  hes_relay_cmd_t cmd;
  hes_relay_event_t e;
  double t0;
  double took;
  pthread_t th;
  waiter_t w;

  (void)state;
  r = new_relay(&c, T0);
  add_rule(r, "r", NULL, NULL, NULL, HES_RELAY_FAILURE, HES_RELAY_OPEN);
  t0 = mono();
  assert_false(hes_relay_next(r, 0.1, &cmd));
  took = mono() - t0;
  assert_true(took >= 0.095);
  assert_true(took < 2.0);
  t0 = mono();
  assert_false(hes_relay_next(r, 0, &cmd));
  assert_false(hes_relay_next(r, -5, &cmd));
  assert_false(hes_relay_next(r, NAN, &cmd));
  assert_true(mono() - t0 < 0.5);
  assert_false(hes_relay_next(NULL, 0, &cmd));
  assert_false(hes_relay_next(r, 0, NULL));

  /* a waiting worker gets a command as soon as it is queued */
  w = (waiter_t){.r = r, .timeout = 10};
  assert_int_equal(pthread_create(&th, NULL, waiter_main, &w), 0);
  usleep(50000);
  e = volt(HES_RELAY_FAILURE, 0);
  assert_int_equal(hes_relay_submit(r, &e, T0, NULL, NULL), 1);
  assert_int_equal(pthread_join(th, NULL), 0);
  assert_true(w.got);
  assert_true(w.took < 5.0);

  /* stop wakes a waiting worker */
  w = (waiter_t){.r = r, .timeout = 10};
  assert_int_equal(pthread_create(&th, NULL, waiter_main, &w), 0);
  usleep(50000);
  hes_relay_stop(r);
  assert_int_equal(pthread_join(th, NULL), 0);
  assert_false(w.got);
  assert_true(w.took < 5.0);
  /* after stop: false at once, even with a command queued */
  e = volt(HES_RELAY_FAILURE, 1);
  assert_int_equal(hes_relay_submit(r, &e, T0, NULL, NULL), 1);
  t0 = mono();
  assert_false(hes_relay_next(r, 10, &cmd));
  assert_true(mono() - t0 < 1.0);
  hes_relay_stop(r); /* twice is fine */
  hes_relay_stop(NULL);
  hes_relay_free(r);
  hes_meters_free(m);
}

static void test_sent_take(void **state) {
  hes_meters_t *m = make_meters(3);
  hes_relay_config_t c = base_cfg(m);
  hes_relay_t *r;
  hes_relay_event_t e = volt(HES_RELAY_FAILURE, 1);
  hes_relay_cmd_t cmd;
  hes_relay_cmd_t got;
  char plan[80];

  (void)state;
  r = new_relay(&c, T0);
  add_rule(r, "r", NULL, NULL, NULL, HES_RELAY_FAILURE, HES_RELAY_OPEN);
  assert_int_equal(hes_relay_submit(r, &e, T0, NULL, NULL), 1);
  assert_true(hes_relay_next(r, 0, &cmd));
  assert_int_equal(hes_relay_outstanding(r), 0);
  assert_int_equal(hes_relay_sent(r, &cmd, "P003_20240711162001113070"), 0);
  assert_int_equal(hes_relay_outstanding(r), 1);
  assert_false(hes_relay_take(r, "P003_20240711162001113070", meter_names[0], &got));
  assert_false(hes_relay_take(r, "P003_2024071116200111307", meter_names[1], &got));
  assert_false(hes_relay_take(r, NULL, meter_names[1], &got));
  assert_false(hes_relay_take(r, "P003_20240711162001113070", NULL, &got));
  assert_int_equal(hes_relay_outstanding(r), 1);
  memset(&got, 0, sizeof(got));
  assert_true(hes_relay_take(r, "P003_20240711162001113070", meter_names[1], &got));
  assert_true(got.id == cmd.id);
  assert_string_equal(got.rule, cmd.rule);
  assert_string_equal(got.meter, meter_names[1]);
  assert_int_equal(got.meter_index, 1);
  assert_int_equal(got.action, HES_RELAY_OPEN);
  assert_true(got.queued == T0);
  assert_false(hes_relay_take(r, "P003_20240711162001113070", meter_names[1], &got));
  assert_int_equal(hes_relay_outstanding(r), 0);

  /* bad arguments */
  assert_int_equal(hes_relay_sent(r, &cmd, NULL), EINVAL);
  assert_int_equal(hes_relay_sent(r, &cmd, ""), EINVAL);
  assert_int_equal(hes_relay_sent(r, NULL, "P"), EINVAL);
  assert_int_equal(hes_relay_sent(NULL, &cmd, "P"), EINVAL);
  memset(plan, 'p', sizeof(plan));
  plan[HES_PLAN_ID_MAX] = '\0'; /* 64 characters: too long */
  assert_int_equal(hes_relay_sent(r, &cmd, plan), EINVAL);
  plan[HES_PLAN_ID_MAX - 1] = '\0';
  assert_int_equal(hes_relay_sent(r, &cmd, plan), 0);
  assert_true(hes_relay_take(r, plan, meter_names[1], NULL));

  /* one plan, two meters; and the bound: beyond 4096 the oldest is forgotten */
  {
    hes_relay_cmd_t c2 = cmd;
    snprintf(c2.meter, sizeof(c2.meter), "%s", meter_names[2]);
    assert_int_equal(hes_relay_sent(r, &cmd, "P1"), 0);
    assert_int_equal(hes_relay_sent(r, &c2, "P1"), 0);
    assert_true(hes_relay_take(r, "P1", meter_names[2], &got));
    assert_string_equal(got.meter, meter_names[2]);
    assert_true(hes_relay_take(r, "P1", meter_names[1], &got));
    assert_string_equal(got.meter, meter_names[1]);
  }
  for (int i = 0; i < 4097; i++) {
    snprintf(plan, sizeof(plan), "P%d", i);
    assert_int_equal(hes_relay_sent(r, &cmd, plan), 0);
  }
  assert_int_equal(hes_relay_outstanding(r), 4096);
  assert_false(hes_relay_take(r, "P0", meter_names[1], &got));
  assert_true(hes_relay_take(r, "P1", meter_names[1], &got));
  assert_true(hes_relay_take(r, "P4096", meter_names[1], &got));
  assert_int_equal(hes_relay_outstanding(r), 4094);
  hes_relay_free(r);
  hes_meters_free(m);
}

/* ---- the state file ------------------------------------------------------------------ */

static void test_state_round_trip(void **state) {
  hes_meters_t *m = make_meters(5);
  hes_meters_t *fewer;
  hes_relay_config_t c = base_cfg(m);
  hes_relay_t *r;
  hes_relay_event_t e;
  char path[128];
  char want[512];
  char *text;

  (void)state;
  make_tmpdir();
  snprintf(path, sizeof(path), "%s/relay.state", tmpdir);
  c.state_path = path;
  c.max_per_minute = 100;

  r = new_relay(&c, T0);
  add_rule(r, "open", NULL, "voltage", NULL, HES_RELAY_FAILURE, HES_RELAY_OPEN);
  add_rule(r, "close", NULL, "voltage", NULL, HES_RELAY_WARNING, HES_RELAY_CLOSE);
  assert_null(read_file(path, NULL)); /* nothing queued yet: no file */
  e = volt(HES_RELAY_FAILURE, 1);
  expect_one(r, &e, T0, HES_RELAY_QUEUED);
  e = volt(HES_RELAY_WARNING, 2);
  expect_one(r, &e, T0 + 10.25, HES_RELAY_QUEUED);
  assert_int_equal(hes_relay_state_errno(r), 0);
  text = read_file(path, NULL);
  assert_non_null(text);
  snprintf(want, sizeof(want),
           "collectd-hes relay state v1\n"
           "%s 1720000000.000 open\n"
           "%s 1720000010.250 close\n",
           meter_names[1], meter_names[2]);
  assert_string_equal(text, want);
  free(text);
  /* no temp file left behind */
  {
    char tmp[160];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    assert_int_equal(access(tmp, F_OK), -1);
  }
  assert_int_equal(hes_relay_state_save(r), 0); /* nothing new: fine */
  hes_relay_free(r);

  /* "restart" */
  r = new_relay(&c, T0 + 100);
  add_rule(r, "open", NULL, "voltage", NULL, HES_RELAY_FAILURE, HES_RELAY_OPEN);
  e = volt(HES_RELAY_FAILURE, 1);
  expect_one(r, &e, T0 + 100, HES_RELAY_SKIP_HOLDOFF);
  e = volt(HES_RELAY_FAILURE, 2);
  expect_one(r, &e, T0 + 309, HES_RELAY_SKIP_HOLDOFF);
  e = volt(HES_RELAY_FAILURE, 3);
  expect_one(r, &e, T0 + 100, HES_RELAY_QUEUED);
  e = volt(HES_RELAY_FAILURE, 1);
  expect_one(r, &e, T0 + 300, HES_RELAY_QUEUED);
  e = volt(HES_RELAY_FAILURE, 2);
  expect_one(r, &e, T0 + 310.25, HES_RELAY_QUEUED);
  hes_relay_free(r);

  /* meters no longer configured are dropped; the next save leaves them out */
  fewer = hes_meters_new();
  assert_int_equal(hes_meters_add(fewer, meter_names[2]), HES_METERS_OK);
  assert_int_equal(hes_meters_add(fewer, meter_names[4]), HES_METERS_OK);
  assert_int_equal(hes_meters_seal(fewer), HES_METERS_OK);
  c.meters = fewer;
  r = new_relay(&c, T0 + 320);
  add_rule(r, "open", NULL, "voltage", NULL, HES_RELAY_FAILURE, HES_RELAY_OPEN);
  e = volt(HES_RELAY_FAILURE, 2);
  expect_one(r, &e, T0 + 320, HES_RELAY_SKIP_HOLDOFF);
  e = volt(HES_RELAY_FAILURE, 4);
  expect_one(r, &e, T0 + 320, HES_RELAY_QUEUED);
  text = read_file(path, NULL);
  snprintf(want, sizeof(want),
           "collectd-hes relay state v1\n"
           "%s 1720000310.250 open\n"
           "%s 1720000320.000 open\n",
           meter_names[2], meter_names[4]);
  assert_string_equal(text, want);
  free(text);
  hes_relay_free(r);
  c.meters = m;

  /* entries that no longer matter (older than Holdoff and the minute) are pruned */
  r = new_relay(&c, T0 + 2000);
  add_rule(r, "open", NULL, "voltage", NULL, HES_RELAY_FAILURE, HES_RELAY_OPEN);
  e = volt(HES_RELAY_FAILURE, 0);
  expect_one(r, &e, T0 + 2000, HES_RELAY_QUEUED);
  text = read_file(path, NULL);
  snprintf(want, sizeof(want), "collectd-hes relay state v1\n%s 1720002000.000 open\n",
           meter_names[0]);
  assert_string_equal(text, want);
  free(text);
  hes_relay_free(r);

  hes_meters_free(fewer);
  hes_meters_free(m);
  rm_tmpdir();
}

/* The rate window survives a restart too, and hand-written files are read exactly. */
static void test_state_rate_and_format(void **state) {
  hes_meters_t *m = make_meters(5);
  hes_relay_config_t c = base_cfg(m);
  hes_relay_t *r;
  hes_relay_event_t e;
  char path[128];
  char text[512];

  (void)state;
  make_tmpdir();
  snprintf(path, sizeof(path), "%s/relay.state", tmpdir);
  c.state_path = path;
  c.max_per_minute = 2;
  r = new_relay(&c, T0);
  add_rule(r, "open", NULL, NULL, NULL, HES_RELAY_FAILURE, HES_RELAY_OPEN);
  e = volt(HES_RELAY_FAILURE, 0);
  expect_one(r, &e, T0, HES_RELAY_QUEUED);
  e = volt(HES_RELAY_FAILURE, 1);
  expect_one(r, &e, T0 + 1, HES_RELAY_QUEUED);
  hes_relay_free(r);
  r = new_relay(&c, T0 + 30);
  add_rule(r, "open", NULL, NULL, NULL, HES_RELAY_FAILURE, HES_RELAY_OPEN);
  e = volt(HES_RELAY_FAILURE, 2);
  expect_one(r, &e, T0 + 30, HES_RELAY_SKIP_RATE);
  expect_one(r, &e, T0 + 59.5, HES_RELAY_SKIP_RATE);
  expect_one(r, &e, T0 + 60, HES_RELAY_QUEUED); /* T0's command left the window */
  e = volt(HES_RELAY_FAILURE, 3);
  expect_one(r, &e, T0 + 60.5, HES_RELAY_SKIP_RATE);
  expect_one(r, &e, T0 + 61, HES_RELAY_QUEUED);
  hes_relay_free(r);

  /* fractional and integral times, "reset", a meter not configured (dropped, no error) */
  snprintf(text, sizeof(text),
           "collectd-hes relay state v1\n"
           "%s 1720000000.5 open\n"
           "999999999999 1720000000 close\n"
           "%s 1720000001 reset\n",
           meter_names[3], meter_names[4]);
  write_file(path, text, strlen(text));
  c.max_per_minute = 100;
  r = new_relay(&c, T0 + 100);
  add_rule(r, "open", NULL, NULL, NULL, HES_RELAY_FAILURE, HES_RELAY_OPEN);
  e = volt(HES_RELAY_FAILURE, 3);
  expect_one(r, &e, T0 + 300.4, HES_RELAY_SKIP_HOLDOFF);
  expect_one(r, &e, T0 + 300.5, HES_RELAY_QUEUED);
  e = volt(HES_RELAY_FAILURE, 4);
  expect_one(r, &e, T0 + 300.5, HES_RELAY_SKIP_HOLDOFF);
  expect_one(r, &e, T0 + 301, HES_RELAY_QUEUED);
  hes_relay_free(r);

  /* a header alone: nothing held off */
  write_file(path, "collectd-hes relay state v1\n", 28);
  r = new_relay(&c, T0);
  add_rule(r, "open", NULL, NULL, NULL, HES_RELAY_FAILURE, HES_RELAY_OPEN);
  e = volt(HES_RELAY_FAILURE, 0);
  expect_one(r, &e, T0, HES_RELAY_QUEUED);
  hes_relay_free(r);

  /* no state path: nothing to save */
  c.state_path = NULL;
  r = new_relay(&c, T0);
  assert_int_equal(hes_relay_state_save(r), 0);
  assert_int_equal(hes_relay_state_save(NULL), EINVAL);
  hes_relay_free(r);
  hes_meters_free(m);
  rm_tmpdir();
}

/* Writes content as the state file, starts a relay at T0 + 1000 and checks that the file
 * was set aside and reported, and that every meter waits Holdoff, across a restart too. */
static void corrupt_case(const char *content, size_t len, const char *why) {
  hes_meters_t *m = make_meters(3);
  hes_relay_config_t c = base_cfg(m);
  hes_relay_t *r;
  hes_relay_event_t e;
  char path[128];
  char aside[160];
  char want[512];
  char err[512];
  char *text;
  size_t got_len;
  const double now = T0 + 1000;

  make_tmpdir();
  snprintf(path, sizeof(path), "%s/relay.state", tmpdir);
  snprintf(aside, sizeof(aside), "%s.corrupt", path);
  write_file(path, content, len);
  c.state_path = path;
  c.max_per_minute = 100;
  r = hes_relay_new(&c, now, err, sizeof(err));
  assert_non_null(r);
  if (strstr(err, why) == NULL || strstr(err, "set aside as") == NULL || strstr(err, aside) == NULL)
    fail_msg("err \"%s\" lacks \"%s\"", err, why);
  text = read_file(aside, &got_len);
  assert_non_null(text);
  assert_int_equal(got_len, len);
  assert_memory_equal(text, content, len);
  free(text);
  /* a fresh file, holding every meter off from now */
  text = read_file(path, NULL);
  snprintf(want, sizeof(want),
           "collectd-hes relay state v1\n"
           "%s 1720001000.000 reset\n%s 1720001000.000 reset\n%s 1720001000.000 reset\n",
           meter_names[0], meter_names[1], meter_names[2]);
  assert_string_equal(text, want);
  free(text);
  add_rule(r, "open", NULL, NULL, NULL, HES_RELAY_FAILURE, HES_RELAY_OPEN);
  for (int i = 0; i < 3; i++) {
    e = volt(HES_RELAY_FAILURE, i);
    expect_one(r, &e, now + 299, HES_RELAY_SKIP_HOLDOFF);
  }
  hes_relay_free(r);
  /* a restart inside the wait still waits */
  r = new_relay(&c, now + 100);
  add_rule(r, "open", NULL, NULL, NULL, HES_RELAY_FAILURE, HES_RELAY_OPEN);
  for (int i = 0; i < 3; i++) {
    e = volt(HES_RELAY_FAILURE, i);
    expect_one(r, &e, now + 299, HES_RELAY_SKIP_HOLDOFF);
    expect_one(r, &e, now + 300, HES_RELAY_QUEUED);
  }
  hes_relay_free(r);
  hes_meters_free(m);
  rm_tmpdir();
}

#define CORRUPT(s, why) corrupt_case(s, sizeof(s) - 1, why)
#define HDR             "collectd-hes relay state v1\n"

static void test_state_corrupt(void **state) {
  char longline[400];

  (void)state;
  CORRUPT("", "not a relay state file");
  CORRUPT("garbage\n", "not a relay state file");
  CORRUPT("collectd-hes relay state v1", "not a relay state file"); /* no newline */
  CORRUPT("\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "not a relay state file");
  CORRUPT(HDR "202407100001 1720000000.000 open\n202407100002 17200",
          "line 3: too long, truncated");
  CORRUPT(HDR "202407100001 1720000000.000 open\n\n", "line 3: not");
  CORRUPT(HDR "202407100001 1720000000.000\n", "line 2: not \"<meter> <time> <action>\"");
  CORRUPT(HDR "202407100001 1720000000.000 open extra\n", "line 2: not");
  CORRUPT(HDR "202407100001  1720000000.000 open\n", "line 2: not");
  CORRUPT(HDR " 202407100001 1720000000.000 open\n", "line 2: not");
  CORRUPT(HDR "202407100001 1720000000.000 open \n", "line 2: not");
  CORRUPT(HDR "202407100001 1720000000.000 open\r\n", "line 2: not open, close or reset");
  CORRUPT(HDR "202407100001 1720000000.000 toggle\n", "line 2: not open, close or reset");
  CORRUPT(HDR "2024!0100001 1720000000.000 open\n", "line 2: not a meter number");
  CORRUPT(HDR "202407100001 -1720000000 open\n", "line 2: not a time");
  CORRUPT(HDR "202407100001 0x1p30 open\n", "line 2: not a time");
  CORRUPT(HDR "202407100001 inf open\n", "line 2: not a time");
  CORRUPT(HDR "202407100001 nan open\n", "line 2: not a time");
  CORRUPT(HDR "202407100001 1.72e9 open\n", "line 2: not a time");
  CORRUPT(HDR "202407100001 1720000000. open\n", "line 2: not a time");
  CORRUPT(HDR "202407100001 .5 open\n", "line 2: not a time");
  CORRUPT(HDR "202407100001 1720000000.0000000001 open\n", "line 2: not a time");
  CORRUPT(HDR "202407100001 9999999999999 open\n", "line 2: not a time");
  CORRUPT(HDR "202407100001 1720001000.001 open\n", "line 2: a time in the future");
  CORRUPT(HDR "202407100001 1720000000.000 open\n202407100001 1720000001.000 open\n",
          "line 3: meter 202407100001 listed twice");
  CORRUPT(HDR "2024071000\0001 1720000000.000 open\n",
          "line 2: too long, truncated or holding a NUL");
  CORRUPT("collectd-hes relay state v2\n202407100001 1720000000.000 open\n",
          "not a relay state file");
  CORRUPT("Collectd-hes relay state v1\n", "not a relay state file");
  memset(longline, '1', sizeof(longline));
  memcpy(longline, HDR, strlen(HDR));
  longline[sizeof(longline) - 1] = '\n';
  corrupt_case(longline, sizeof(longline), "line 2: too long");
}

/* Random lines from the file's own alphabet (run under ASan): every file either loads
 * cleanly or is set aside and reported, never anything in between. */
static void test_state_random(void **state) {
  static const char alphabet[] = "0123456789012345678901234567.  \n\nopenclosreset\0-x";
  hes_meters_t *m = make_meters(3);
  hes_relay_config_t c = base_cfg(m);
  char path[128];
  char aside[160];
  char buf[300];
  unsigned seed = 12345;
  int loaded = 0;
  int set_aside = 0;

  (void)state;
  make_tmpdir();
  snprintf(path, sizeof(path), "%s/relay.state", tmpdir);
  snprintf(aside, sizeof(aside), "%s.corrupt", path);
  c.state_path = path;
  for (int iter = 0; iter < 150; iter++) {
    size_t n = strlen(HDR);
    size_t len;
    hes_relay_t *r;
    char err[512];

    memcpy(buf, HDR, n);
    if (iter % 3 == 0) /* a plausible line, then noise */
      n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s 1719%06u open\n", meter_names[iter % 3],
                            (unsigned)(rand_r(&seed) % 1000000));
    len = n + (iter % 2 == 0 ? 0 : (size_t)(rand_r(&seed) % 60));
    for (size_t i = n; i < len; i++)
      buf[i] = alphabet[rand_r(&seed) % (sizeof(alphabet) - 1)];
    write_file(path, buf, len);
    unlink(aside);
    r = hes_relay_new(&c, T0 + 1000, err, sizeof(err));
    assert_non_null(r);
    if (err[0] != '\0') {
      assert_int_equal(access(aside, F_OK), 0);
      set_aside++;
    } else {
      assert_int_equal(access(aside, F_OK), -1);
      loaded++;
    }
    hes_relay_free(r);
  }
  /* both outcomes were exercised */
  assert_true(loaded > 0);
  assert_true(set_aside > 0);
  hes_meters_free(m);
  rm_tmpdir();
}

static void test_state_unwritable(void **state) {
  hes_meters_t *m = make_meters(3);
  hes_relay_config_t c = base_cfg(m);
  hes_relay_t *r;
  hes_relay_event_t e = volt(HES_RELAY_FAILURE, 0);

  (void)state;
  c.state_path = "/nonexistent-dir-of-test-relay/relay.state";
  r = new_relay(&c, T0); /* no file: a fresh start, no complaint */
  add_rule(r, "open", NULL, NULL, NULL, HES_RELAY_FAILURE, HES_RELAY_OPEN);
  assert_int_equal(hes_relay_state_errno(r), 0);
  /* within the limits, but its time cannot be put on disk: not sent, and said so */
  expect_one(r, &e, T0, HES_RELAY_SKIP_STATE);
  assert_int_equal(hes_relay_queue_len(r), 0);
  assert_int_equal(drain(r), 0);
  assert_int_equal(hes_relay_state_errno(r), ENOENT);
  assert_int_equal(hes_relay_state_save(r), ENOENT);
  /* the holdoff stays charged: no retry against the disk that just failed */
  expect_one(r, &e, T0 + 1, HES_RELAY_SKIP_HOLDOFF);
  /* after Holdoff, still not sent while the disk fails; several meters at once: none */
  {
    tally_t t = {0};
    hes_relay_t *r2;
    hes_relay_rule_t all = {.name = "all",
                            .severity = HES_RELAY_FAILURE,
                            .action = HES_RELAY_OPEN,
                            .meters = (const char *const[]){"202407100001", "202407100002"},
                            .meters_num = 2};
    char err[256];
    expect_one(r, &e, T0 + 1000, HES_RELAY_SKIP_STATE);
    r2 = new_relay(&c, T0);
    assert_int_equal(hes_relay_add_rule(r2, &all, err, sizeof(err)), 0);
    assert_int_equal(hes_relay_submit(r2, &e, T0, tally_cb, &t), 0);
    assert_int_equal(t.count[HES_RELAY_SKIP_STATE], 2);
    assert_int_equal(t.count[HES_RELAY_QUEUED], 0);
    assert_int_equal(hes_relay_queue_len(r2), 0);
    hes_relay_free(r2);
  }
  assert_int_equal(hes_relay_state_errno(NULL), EINVAL);
  hes_relay_free(r);

  /* a state path that is a directory: unreadable, reported, the relay still starts */
  {
    char err[512];
    make_tmpdir();
    c.state_path = tmpdir;
    r = hes_relay_new(&c, T0, err, sizeof(err));
    assert_non_null(r);
    assert_non_null(strstr(err, "relay state file"));
    assert_non_null(strstr(err, "not a relay state file"));
    add_rule(r, "open", NULL, NULL, NULL, HES_RELAY_FAILURE, HES_RELAY_OPEN);
    expect_one(r, &e, T0 + 1, HES_RELAY_SKIP_HOLDOFF);
    hes_relay_free(r);
    /* it was renamed away as .corrupt and a real file written in its place */
    {
      char aside[128];
      struct stat st;
      snprintf(aside, sizeof(aside), "%s.corrupt", tmpdir);
      assert_int_equal(stat(aside, &st), 0);
      assert_true(S_ISDIR(st.st_mode));
      assert_int_equal(stat(tmpdir, &st), 0);
      assert_true(S_ISREG(st.st_mode));
      assert_int_equal(unlink(tmpdir), 0);
      assert_int_equal(rename(aside, tmpdir), 0);
    }
    rm_tmpdir();
  }
  hes_meters_free(m);
}

/* ---- threads ----------------------------------------------------------------------- */

typedef struct {
  hes_relay_t *r;
  int thread;
  int events;
  double now_step;
  bool same_now;
  atomic_int *count; /* per decision */
  size_t queued;
} submitter_t;

static void atomic_cb(void *ctx, hes_relay_decision_t d, const char *rule, const char *meter,
                      hes_relay_action_t action) {
  atomic_int *count = ctx;

  (void)rule;
  (void)meter;
  (void)action;
  if ((int)d >= 0 && (int)d < DECISION_N)
    atomic_fetch_add(&count[d], 1);
}

static void *submitter_main(void *arg) {
  submitter_t *s = arg;

  for (int i = 0; i < s->events; i++) {
    hes_relay_event_t e = volt(HES_RELAY_FAILURE, (s->thread * 7 + i) % NMETERS);
    double now = s->same_now ? T0 : T0 + i * s->now_step;
    s->queued += hes_relay_submit(s->r, &e, now, atomic_cb, s->count);
  }
  return NULL;
}

typedef struct {
  hes_relay_t *r;
  atomic_bool *done;
  size_t received;
  uint64_t ids[4096];
  int per_meter[NMETERS];
} worker_t;

static void *worker_main(void *arg) {
  worker_t *w = arg;
  hes_relay_cmd_t cmd;

  for (;;) {
    if (hes_relay_next(w->r, 0.01, &cmd)) {
      if (w->received < 4096)
        w->ids[w->received] = cmd.id;
      w->received++;
      if (cmd.meter_index < NMETERS)
        w->per_meter[cmd.meter_index]++;
      continue;
    }
    if (atomic_load(w->done) && hes_relay_queue_len(w->r) == 0)
      break;
  }
  return NULL;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a;
  uint64_t y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static void run_threads(hes_relay_config_t *c, int events, bool same_now, atomic_int *count,
                        size_t *queued, worker_t *w) {
  hes_relay_t *r = new_relay(c, T0);
  submitter_t s[4];
  pthread_t th[4];
  pthread_t wt;
  atomic_bool done = false;

  add_rule(r, "r", NULL, "voltage", NULL, HES_RELAY_FAILURE, HES_RELAY_OPEN);
  memset(w, 0, sizeof(*w));
  w->r = r;
  w->done = &done;
  assert_int_equal(pthread_create(&wt, NULL, worker_main, w), 0);
  for (int i = 0; i < 4; i++) {
    s[i] = (submitter_t){.r = r,
                         .thread = i,
                         .events = events,
                         .now_step = 0.001,
                         .same_now = same_now,
                         .count = count};
    assert_int_equal(pthread_create(&th[i], NULL, submitter_main, &s[i]), 0);
  }
  *queued = 0;
  for (int i = 0; i < 4; i++) {
    assert_int_equal(pthread_join(th[i], NULL), 0);
    *queued += s[i].queued;
  }
  atomic_store(&done, true);
  assert_int_equal(pthread_join(wt, NULL), 0);
  hes_relay_stop(r);
  hes_relay_free(r);
}

static void test_concurrency(void **state) {
  hes_meters_t *m = make_meters(NMETERS);
  hes_relay_config_t c = base_cfg(m);
  atomic_int count[DECISION_N];
  size_t queued;
  worker_t *w = calloc(1, sizeof(*w));
  char path[128];

  (void)state;
  assert_non_null(w);
  /* No limit bites: every one of the 1,000 events is queued and received once. */
  for (int i = 0; i < DECISION_N; i++)
    atomic_init(&count[i], 0);
  c.holdoff = 0;
  c.max_per_minute = 100000;
  c.queue_max = 1000;
  run_threads(&c, 250, true, count, &queued, w);
  assert_int_equal(queued, 1000);
  assert_int_equal(atomic_load(&count[HES_RELAY_QUEUED]), 1000);
  assert_int_equal(w->received, 1000);
  qsort(w->ids, 1000, sizeof(w->ids[0]), cmp_u64);
  for (int i = 1; i < 1000; i++)
    assert_true(w->ids[i] != w->ids[i - 1]);

  /* A small queue: whatever is not queued is reported full; nothing is lost or doubled. */
  for (int i = 0; i < DECISION_N; i++)
    atomic_init(&count[i], 0);
  c.queue_max = 4;
  run_threads(&c, 250, true, count, &queued, w);
  assert_int_equal(
      atomic_load(&count[HES_RELAY_QUEUED]) + atomic_load(&count[HES_RELAY_SKIP_QUEUE_FULL]), 1000);
  assert_int_equal(atomic_load(&count[HES_RELAY_QUEUED]), (int)queued);
  assert_int_equal(w->received, queued);
  assert_true(queued >= 4);

  /* Holdoff and the cap under contention, with the state file being written: each of
   * the 50 meters exactly once, whatever the interleaving; 30 over the cap of 20. */
  make_tmpdir();
  snprintf(path, sizeof(path), "%s/relay.state", tmpdir);
  for (int i = 0; i < DECISION_N; i++)
    atomic_init(&count[i], 0);
  c.holdoff = 300;
  c.max_per_minute = 20;
  c.queue_max = 64;
  c.state_path = path;
  run_threads(&c, NMETERS, true, count, &queued, w);
  assert_int_equal(queued, 20);
  assert_int_equal(atomic_load(&count[HES_RELAY_QUEUED]), 20);
  assert_int_equal(w->received, 20);
  /* 200 events: 20 queued; each of the other 180 is held off if its meter got one of
   * the 20, else over the cap: 20 meters x 3 held off, 30 meters x 4 over the cap. */
  assert_int_equal(atomic_load(&count[HES_RELAY_SKIP_HOLDOFF]), 60);
  assert_int_equal(atomic_load(&count[HES_RELAY_SKIP_RATE]), 120);
  for (int i = 0; i < NMETERS; i++)
    assert_true(w->per_meter[i] <= 1);
  {
    char *text = read_file(path, NULL);
    int lines = 0;
    assert_non_null(text);
    for (char *p = text; *p != '\0'; p++)
      lines += *p == '\n';
    assert_int_equal(lines, 21); /* header + the 20 commanded meters */
    free(text);
  }
  rm_tmpdir();
  free(w);
  hes_meters_free(m);
}

/* A new meter list: a joiner can be commanded, a leaver never (by the plugin_instance or by a
 * rule's Meter list), and a meter in both lists keeps its Holdoff. */
static void test_set_meters(void **state) {
  (void)state;
  hes_meters_t *m = make_meters(3); /* meters 0, 1, 2 */
  hes_relay_config_t c = base_cfg(m);
  hes_relay_t *r = new_relay(&c, T0);
  add_rule(r, "over", "hes", "voltage", "A", HES_RELAY_FAILURE, HES_RELAY_OPEN);
  const char *explicit_meters[] = {meter_names[2]};
  add_rule_m(r, "fixed", "hes", "voltage", "B", HES_RELAY_FAILURE, HES_RELAY_OPEN, explicit_meters,
             1);
  hes_relay_event_t e0 = volt(HES_RELAY_FAILURE, 0);
  expect_one(r, &e0, T0, HES_RELAY_QUEUED);
  assert_int_equal(drain(r), 1);

  /* 2 leaves, 3 joins; 0 stays */
  hes_meters_t *next = hes_meters_new();
  assert_non_null(next);
  snprintf(meter_names[3], sizeof(meter_names[3]), "2024071000%02d", 3);
  assert_int_equal(hes_meters_add(next, meter_names[3]), HES_METERS_OK);
  assert_int_equal(hes_meters_add(next, meter_names[0]), HES_METERS_OK);
  assert_int_equal(hes_meters_add(next, meter_names[1]), HES_METERS_OK);
  assert_int_equal(hes_meters_seal(next), HES_METERS_OK);
  assert_int_equal(hes_relay_set_meters(r, next), 0);
  hes_meters_free(m); /* the relay no longer uses it */

  expect_one(r, &e0, T0 + 1, HES_RELAY_SKIP_HOLDOFF); /* kept across the swap */
  hes_relay_event_t e3 = volt(HES_RELAY_FAILURE, 3);
  expect_one(r, &e3, T0 + 1, HES_RELAY_QUEUED);
  hes_relay_event_t e2 = volt(HES_RELAY_FAILURE, 2);
  expect_one(r, &e2, T0 + 1, HES_RELAY_SKIP_UNKNOWN_METER);
  hes_relay_event_t b = event(HES_RELAY_FAILURE, "hes", meter_names[1], "voltage", "B");
  tally_t t = {0};
  assert_int_equal(hes_relay_submit(r, &b, T0 + 1, tally_cb, &t), 0);
  assert_int_equal(t.last, HES_RELAY_SKIP_UNKNOWN_METER);
  assert_string_equal(t.meter, meter_names[2]);
  hes_relay_cmd_t cmd;
  assert_true(hes_relay_next(r, 0, &cmd));
  assert_string_equal(cmd.meter, meter_names[3]);
  assert_int_equal(hes_relay_set_meters(r, NULL), EINVAL);
  hes_relay_free(r);
  hes_meters_free(next);
}

/* A DCU-only server's first start: the relay takes the empty list (every meter unknown, so
 * nothing is commanded), and the meters the first archive refresh brings can be commanded. */
static void test_empty_start(void **state) {
  (void)state;
  hes_meters_t *none = make_meters(0);
  hes_relay_config_t c = base_cfg(none);
  hes_relay_t *r = new_relay(&c, T0);
  add_rule(r, "over", "hes", "voltage", "A", HES_RELAY_FAILURE, HES_RELAY_OPEN);
  hes_meters_t *m = make_meters(2);
  hes_relay_event_t e1 = volt(HES_RELAY_FAILURE, 1);
  expect_one(r, &e1, T0, HES_RELAY_SKIP_UNKNOWN_METER);
  assert_int_equal(hes_relay_set_meters(r, m), 0);
  hes_meters_free(none);
  expect_one(r, &e1, T0 + 1, HES_RELAY_QUEUED);
  hes_relay_cmd_t cmd;
  assert_true(hes_relay_next(r, 0, &cmd));
  assert_string_equal(cmd.meter, meter_names[1]);
  hes_relay_free(r);
  hes_meters_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_new_invalid),
      cmocka_unit_test(test_add_rule_invalid),
      cmocka_unit_test(test_strings),
      cmocka_unit_test(test_rule_matching),
      cmocka_unit_test(test_submit_guards),
      cmocka_unit_test(test_rate_burst),
      cmocka_unit_test(test_close_capped_like_open),
      cmocka_unit_test(test_rate_zero),
      cmocka_unit_test(test_holdoff),
      cmocka_unit_test(test_dry_run),
      cmocka_unit_test(test_unknown_meter),
      cmocka_unit_test(test_own_notification),
      cmocka_unit_test(test_missing_value),
      cmocka_unit_test(test_first_okay),
      cmocka_unit_test(test_queue_full),
      cmocka_unit_test(test_meter_list_rule),
      cmocka_unit_test(test_next_timeout_and_stop),
      cmocka_unit_test(test_sent_take),
      cmocka_unit_test(test_state_round_trip),
      cmocka_unit_test(test_state_rate_and_format),
      cmocka_unit_test(test_state_corrupt),
      cmocka_unit_test(test_state_random),
      cmocka_unit_test(test_state_unwritable),
      cmocka_unit_test(test_concurrency),
      cmocka_unit_test(test_set_meters),
      cmocka_unit_test(test_empty_start),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
