/* test_conf: the config module's rules (src/lib/conf.c), shared by the plugin and hesctl:
 * plain defaults, the defaults that follow the keys the user wrote, the refusals and their
 * messages to the letter. The golden test (e2e_conf_golden.sh) runs files through both
 * programs; this one pins the values the defaults come to. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"

#define SERVER_HEAD                                                                                \
  "<Plugin hes>\n"                                                                                 \
  "  <Server \"s\">\n"                                                                             \
  "    URL \"http://127.0.0.1:1\"\n"                                                               \
  "    TenantCode \"1000000067\"\n"                                                                \
  "    Username \"u\"\n"                                                                           \
  "    Password \"p\"\n"                                                                           \
  "    SecretKey \"k\"\n"

/* A server with the required keys, the given lines, and an <MQTT> block with mqtt lines. */
static int load(hes_conf_t *conf, char *err, const char *lines, const char *mqtt) {
  char text[4096];
  snprintf(text, sizeof(text),
           SERVER_HEAD "    <MQTT>\n      Host \"127.0.0.1\"\n%s    </MQTT>\n%s  </Server>\n"
                       "</Plugin>\n",
           mqtt != NULL ? mqtt : "", lines);
  char perr[256];
  hes_conf_node_t *root = hes_conf_tree_parse(text, strlen(text), "t.conf", perr, sizeof(perr));
  assert_non_null(root);
  assert_int_equal(root->nchildren, 1);
  memset(conf, 0, sizeof(*conf));
  err[0] = '\0';
  int rc = hes_conf_load(&root->children[0], conf, err, HES_CONF_ERR_MAX, NULL);
  hes_conf_tree_free(root);
  return rc;
}

static void accept(hes_conf_t *conf, const char *lines, const char *mqtt) {
  char err[HES_CONF_ERR_MAX];
  if (load(conf, err, lines, mqtt) != 0)
    fail_msg("refused: %s", err);
}

static void refuse(const char *lines, const char *mqtt, const char *want) {
  hes_conf_t conf;
  char err[HES_CONF_ERR_MAX];
  assert_int_equal(load(&conf, err, lines, mqtt), -1);
  assert_string_equal(err, want);
  hes_conf_free(&conf);
}

static void test_plain_defaults(void **state) {
  (void)state;
  hes_conf_t conf;
  accept(&conf, "    Meter \"1\"\n    Item \"voltageA\"\n", NULL);
  const hes_conf_server_t *s = hes_conf_server(&conf, NULL);
  assert_non_null(s);
  assert_true(s->timeout_ms == 10000 && s->interval == 60 && s->plan_timeout == 300);
  assert_int_equal(s->mqtt_port, 1883);
  assert_int_equal(s->mqtt_qos, 1);
  assert_int_equal(s->mqtt_keepalive, 30);
  assert_false(s->mqtt_clean_session);
  assert_true(s->verify_peer && s->verify_host);
  assert_int_equal(s->batch_size, 100);
  assert_true(s->spread == 0.5);
  assert_int_equal(s->backfill_periods, 7);
  assert_true(s->retry_interval == 300 && s->give_up_after == 0 && s->dcu_refresh == 3600);
  assert_int_equal(hes_meters_count(s->meters), 1);
  assert_null(conf.relay);
  hes_conf_free(&conf);
}

/* Timeout follows Interval and PlanTimeout; Interval and PlanTimeout follow a Timeout. */
static void test_derived_timeouts(void **state) {
  (void)state;
  static const struct {
    const char *lines;
    double timeout_ms, interval, plan_timeout;
  } cases[] = {
      {"Interval 10", 9000, 10, 300},
      {"Interval 5", 4500, 5, 300},
      {"Interval 1", 900, 1, 300},
      {"Interval 2.5", 2250, 2.5, 300},
      {"PlanTimeout 5", 4500, 60, 5},
      {"Interval 10\n PlanTimeout 3", 2700, 10, 3},
      {"Timeout 20000", 20000, 60, 300},
      {"Timeout 60000", 60000, 61, 300},
      {"Timeout 200000", 200000, 201, 400},
      {"Timeout 2000.5", 2000.5, 60, 300},
      {"Timeout 900\n Interval 1\n PlanTimeout 3", 900, 1, 3},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char lines[256];
    snprintf(lines, sizeof(lines), "    Meter \"1\"\n    Item 5050\n    %s\n", cases[i].lines);
    hes_conf_t conf;
    accept(&conf, lines, NULL);
    const hes_conf_server_t *s = conf.servers;
    if (s->timeout_ms != cases[i].timeout_ms || s->interval != cases[i].interval ||
        s->plan_timeout != cases[i].plan_timeout)
      fail_msg("%s: Timeout %g Interval %g PlanTimeout %g", cases[i].lines, s->timeout_ms,
               s->interval, s->plan_timeout);
    hes_conf_free(&conf);
  }
}

static void test_contradictions(void **state) {
  (void)state;
  refuse("    Meter \"1\"\n    Item 5050\n    Timeout 20000\n    Interval 10\n", NULL,
         "Server \"s\": option \"Timeout\" (20000 ms) must be below the Interval (10 s): a read "
         "round must not outlast its interval; set Timeout to at most 9000 or Interval to at "
         "least 21.");
  refuse("    Meter \"1\"\n    Item 5050\n    Timeout 8000\n    PlanTimeout 5\n", NULL,
         "Server \"s\": option \"PlanTimeout\" (5 s) must be longer than the HTTP Timeout (8000 "
         "ms); set PlanTimeout to at least 9 or Timeout to at most 4500.");
  refuse("    Meter \"1\"\n    Item \"dailyBilling\"\n    GiveUpAfter 600\n    RetryInterval 700\n",
         NULL,
         "Server \"s\": option \"RetryInterval\" (700 s) must be below GiveUpAfter (600 s): no "
         "missing meter would be asked again; set RetryInterval to at most 300 or GiveUpAfter to "
         "at least 1400.");
}

static void test_derived_backfill(void **state) {
  (void)state;
  hes_conf_t conf;
  accept(&conf, "    Meter \"1\"\n    Item \"dailyBilling\"\n    GiveUpAfter 172800\n", NULL);
  assert_int_equal(conf.servers->backfill_periods, 2);
  assert_true(conf.servers->retry_interval == 300);
  hes_conf_free(&conf);
  accept(&conf, "    Meter \"1\"\n    Item \"dailyBilling\"\n    GiveUpAfter 400\n", NULL);
  assert_int_equal(conf.servers->backfill_periods, 1);
  assert_true(conf.servers->retry_interval == 200);
  hes_conf_free(&conf);
  accept(&conf,
         "    Meter \"1\"\n    Item \"loadProfile\"\n    GiveUpAfter 3600\n"
         "    BackfillPeriods 20\n",
         NULL);
  assert_int_equal(conf.servers->backfill_periods, 20);
  assert_int_equal(conf.servers->frozen_num, 1);
  hes_conf_free(&conf);
}

/* One function works the broker's port out, for both programs. */
static void test_mqtt_port(void **state) {
  (void)state;
  assert_int_equal(hes_conf_mqtt_port(0, false, NULL, NULL), 1883);
  assert_int_equal(hes_conf_mqtt_port(0, true, NULL, NULL), 8883);
  assert_int_equal(hes_conf_mqtt_port(0, false, "/ca.pem", NULL), 8883);
  assert_int_equal(hes_conf_mqtt_port(0, false, NULL, "/c.pem"), 8883);
  assert_int_equal(hes_conf_mqtt_port(1884, true, "/ca.pem", NULL), 1884);
  hes_conf_t conf;
  accept(&conf, "    Meter \"1\"\n    Item 5050\n", "      CACert \"/etc/ssl/ca.pem\"\n");
  assert_int_equal(conf.servers->mqtt_port, 8883);
  hes_conf_free(&conf);
  accept(&conf, "    Meter \"1\"\n    Item 5050\n", "      Port \"1883\"\n      TLS true\n");
  assert_int_equal(conf.servers->mqtt_port, 1883);
  assert_true(conf.servers->mqtt_tls);
  hes_conf_free(&conf);
}

/* collectd's number rules: unquoted digits are a number, and fine where a string is due. */
static void test_numbers_as_collectd(void **state) {
  (void)state;
  const char *text = "<Plugin hes>\n  <Server \"s\">\n    URL \"http://h\"\n"
                     "    TenantCode 1000000067\n    Username \"u\"\n    Password \"p\"\n"
                     "    SecretKey \"k\"\n    <MQTT>\n      Host \"h\"\n      Port 0x75b\n"
                     "    </MQTT>\n    Meter 202407100001\n    Item 5050\n  </Server>\n"
                     "</Plugin>\n";
  char err[HES_CONF_ERR_MAX];
  hes_conf_node_t *root = hes_conf_tree_parse(text, strlen(text), "t", err, sizeof(err));
  assert_non_null(root);
  hes_conf_t conf = {0};
  assert_int_equal(hes_conf_load(&root->children[0], &conf, err, sizeof(err), NULL), 0);
  assert_string_equal(conf.servers->tenant, "1000000067");
  assert_int_equal(conf.servers->mqtt_port, 1883);
  assert_int_not_equal(hes_meters_find(conf.servers->meters, "202407100001", 12), HES_METER_NONE);
  hes_conf_free(&conf);
  hes_conf_tree_free(root);
}

static void test_refusals(void **state) {
  (void)state;
  refuse("    Meter \"1\"\n    Item \"voltageX\"\n", NULL,
         "Server \"s\": option \"Item\": unknown item \"voltageX\" (use a name such as "
         "\"voltageA\" or a cgcode such as 5050, see collectd-hes(5)).");
  refuse("    Meter \"1\"\n    Item 5050\n    BatchSize 0\n", NULL,
         "Server \"s\": option \"BatchSize\" needs one number from 1 to 10000, got 0.");
  refuse("    Meter \"1\"\n    Item 5050\n    BatchSize 2.5\n", NULL,
         "Server \"s\": option \"BatchSize\" needs a whole number, got 2.5.");
  refuse("    Meter \"1\"\n    Item 5050\n", "      KeepAlive 0\n",
         "<MQTT> of Server \"s\": option \"KeepAlive\" needs one number from 5 to 65535, got 0.");
  refuse("    Meter \"2024,0710\"\n    Item 5050\n", NULL,
         "Server \"s\": option \"Meter\": \"2024,0710\" is not a valid meter number (1 to 32 "
         "characters of 0-9, A-Z, a-z, '_' and '-').");
  refuse("    MeterFile \"/nonexistent/m.list\"\n    Item 5050\n", NULL,
         "Server \"s\": option \"MeterFile\": cannot read \"/nonexistent/m.list\": No such file "
         "or directory.");
  refuse("    Item 5050\n", NULL,
         "Server \"s\": at least one \"Meter\", \"MeterFile\" or \"DCU\" is required.");
  refuse("    Meter \"1\"\n    Item 5050\n    Colour \"red\"\n", NULL,
         "Server \"s\": unknown option \"Colour\".");
  refuse("    Meter \"1\"\n    Item 5050\n    SecretKey \"k\" \"second\"\n", NULL,
         "Server \"s\": option \"SecretKey\" needs exactly one string argument, got (a value, not "
         "shown) and more.");
  refuse("    Meter \"1\"\n    Item 5050\n    VerifyPeer \"yes\"\n", NULL,
         "Server \"s\": option \"VerifyPeer\" needs exactly one boolean argument (true or false), "
         "got \"yes\".");
}

static void test_dcu(void **state) {
  (void)state;
  hes_conf_t conf;
  accept(&conf, "    DCU \"2211000051\" 2211000052\n    Item 5050\n    DCURefresh 60\n", NULL);
  assert_int_equal(conf.servers->dcus_num, 2);
  assert_string_equal(conf.servers->dcus[1], "2211000052");
  assert_true(conf.servers->dcu_refresh == 60);
  assert_int_equal(hes_meters_count(conf.servers->meters), 0);
  hes_conf_free(&conf);
  refuse("    DCU \"22,11\"\n    Item 5050\n", NULL,
         "Server \"s\": option \"DCU\": \"22,11\" is not a valid DCU number (1 to 32 characters "
         "of 0-9, A-Z, a-z, '_' and '-').");
  refuse("    DCU \"1\" \"1\"\n    Item 5050\n", NULL,
         "Server \"s\": option \"DCU\": DCU \"1\" is listed twice.");
  refuse("    DCU \"1\"\n    Item 5050\n    DCURefresh 0\n", NULL,
         "Server \"s\": option \"DCURefresh\" needs one number from 1 to 2678400, got 0.");
}

static void test_relay(void **state) {
  (void)state;
  hes_conf_t conf;
  char err[HES_CONF_ERR_MAX];
  const char *text = SERVER_HEAD "    <MQTT>\n      Host \"h\"\n    </MQTT>\n    Meter \"1\"\n"
                                 "    Item 5050\n  </Server>\n  <Relay>\n    <Rule \"r\">\n"
                                 "      Severity \"failure\"\n      Action \"open\"\n"
                                 "      Meter \"2\"\n    </Rule>\n  </Relay>\n</Plugin>\n";
  hes_conf_node_t *root = hes_conf_tree_parse(text, strlen(text), "t", err, sizeof(err));
  assert_non_null(root);
  memset(&conf, 0, sizeof(conf));
  assert_int_equal(hes_conf_load(&root->children[0], &conf, err, sizeof(err), NULL), -1);
  assert_string_equal(err, "<Relay> <Rule \"r\">: option \"Meter\": \"2\" is not a meter of "
                           "Server \"s\": the plugin never commands a meter it does not read.");
  hes_conf_free(&conf);
  hes_conf_tree_free(root);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_plain_defaults), cmocka_unit_test(test_derived_timeouts),
      cmocka_unit_test(test_contradictions), cmocka_unit_test(test_derived_backfill),
      cmocka_unit_test(test_mqtt_port),      cmocka_unit_test(test_numbers_as_collectd),
      cmocka_unit_test(test_refusals),       cmocka_unit_test(test_dcu),
      cmocka_unit_test(test_relay),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
