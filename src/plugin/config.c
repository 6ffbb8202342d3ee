/* config.c: the <Plugin hes> block of collectd's configuration. It converts collectd's
 * oconfig_item_t into the neutral tree, lets the config module (src/lib/conf.c, shared with
 * hesctl) check it and work out the defaults, and moves the result into the list of servers
 * (hes_servers) and the <Relay> block (hes_relay_conf).
 *
 * Config grammar (interface.md section 1, and collectd-hes(5)):
 *
 *   <Plugin hes>
 *     <Server "name">
 *       URL "https://..."  TenantCode "..."  Username "..."  Password "..."  SecretKey "..."
 *       VerifyPeer true  VerifyHost true  CACert "file"  Timeout <ms>
 *       <MQTT>
 *         Host "..."  Port 1883  User "..."  Password "..."  ClientId "..."  QoS 0..2
 *         CleanSession false  KeepAlive 30  TLS false  CACert "file"
 *         CertificateFile "file"  CertificateKeyFile "file"  TLSProtocol "tlsv1.2"
 *       </MQTT>
 *       Meter "m1" "m2" ...     (repeatable)
 *       MeterFile "file"        (repeatable)
 *       Item "voltageA" 5051 "dailyBilling" ... (names or cgcodes, repeatable)
 *       BatchSize 100  Interval 60  PlanTimeout 300
 *       BackfillPeriods 7  RetryInterval 300  GiveUpAfter <s>  TimeZone "Asia/Shanghai"
 *     </Server>
 *     StateDir "dir"
 *     <Relay>
 *       Server "name"  Holdoff 300  MaxPerMinute 10  DryRun false
 *       <Rule "name">
 *         Plugin "hes"  Type "voltage"  TypeInstance "A"  Severity "failure"  Action "open"
 *         Meter "m1" ...   (optional)
 *       </Rule>
 *     </Relay>
 *   </Plugin>
 * */
#include "config.h"

#include "plugin.h"

#include "conf.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------
 * configuration */

void hes_server_free(hes_server_t *s) {
  if (s == NULL)
    return;
  hes_server_runtime_free(s);
  hes_tz_free(s->tz);
  free(s->time_zone);
  hes_meters_free(s->meters);
  for (size_t i = 0; i < s->meter_files_num; i++)
    free(s->meter_files[i]);
  free(s->meter_files);
  for (size_t i = 0; i < s->dcus_num; i++)
    free(s->dcus[i]);
  free(s->dcus);
  char **strings[] = {&s->name,           &s->url,           &s->tenant,           &s->username,
                      &s->password,       &s->secret_key,    &s->ca_cert,          &s->mqtt_host,
                      &s->mqtt_user,      &s->mqtt_password, &s->mqtt_client_id,   &s->mqtt_ca_cert,
                      &s->mqtt_cert_file, &s->mqtt_key_file, &s->mqtt_tls_protocol};
  for (size_t i = 0; i < STATIC_ARRAY_SIZE(strings); i++)
    sfree(*strings[i]);
  pthread_mutex_destroy(&s->log_http.lock);
  pthread_mutex_destroy(&s->log_push.lock);
  pthread_mutex_destroy(&s->log_value.lock);
  pthread_mutex_destroy(&s->log_missing.lock);
  free(s);
}

void hes_relay_conf_free(hes_relay_conf_t *rc) {
  if (rc == NULL)
    return;
  hes_relay_free(rc->relay);
  hes_relay_runtime_free(rc);
  for (size_t i = 0; i < rc->rules_num; i++) {
    hes_rule_conf_t *r = &rc->rules[i];
    free(r->name);
    free(r->plugin);
    free(r->type);
    free(r->type_instance);
    for (size_t j = 0; j < r->meters_num; j++)
      free(r->meters[j]);
    free(r->meters);
  }
  free(rc->server_name);
  pthread_mutex_destroy(&rc->log_skip.lock);
  free(rc);
}

/* collectd's tree as the neutral one (no file:line: collectd does not keep them). */
static int hes_config_tree(const oconfig_item_t *ci, hes_conf_node_t *node) {
  node->key = strdup(ci->key);
  node->block = ci->children_num > 0;
  if (node->key == NULL)
    return -1;
  for (int i = 0; i < ci->values_num; i++) {
    const oconfig_value_t *v = &ci->values[i];
    hes_conf_value_t cv = {.type = HES_CONF_STRING, .quoted = true};
    if (v->type == OCONFIG_TYPE_NUMBER) {
      cv.type = HES_CONF_NUMBER;
      cv.n = v->value.number;
    } else if (v->type == OCONFIG_TYPE_BOOLEAN) {
      cv.type = HES_CONF_BOOL;
      cv.b = v->value.boolean != 0;
    }
    cv.s = strdup(v->type == OCONFIG_TYPE_STRING ? v->value.string : "");
    if (cv.s == NULL || hes_conf_tree_add_value(node, cv) != 0) {
      free(cv.s);
      return -1;
    }
  }
  for (int i = 0; i < ci->children_num; i++) {
    hes_conf_node_t *child = hes_conf_tree_child(node);
    if (child == NULL || hes_config_tree(ci->children + i, child) != 0)
      return -1;
  }
  return 0;
}

/* Takes a string over from the config module. */
static char *hes_config_take(char **from) {
  char *s = *from;
  *from = NULL;
  return s;
}

static hes_server_t *hes_config_server(hes_conf_server_t *c) {
  hes_server_t *s = calloc(1, sizeof(*s));
  if (s == NULL)
    return NULL;
  hes_ratelimit_init(&s->log_http);
  hes_ratelimit_init(&s->log_push);
  hes_ratelimit_init(&s->log_value);
  hes_ratelimit_init(&s->log_missing);
  s->name = strdup(c->name); /* the module keeps its own: a later <Plugin hes> block checks
                                names and relay meters against it */
  s->url = hes_config_take(&c->url);
  s->tenant = hes_config_take(&c->tenant);
  s->username = hes_config_take(&c->username);
  s->password = hes_config_take(&c->password);
  s->secret_key = hes_config_take(&c->secret_key);
  s->ca_cert = hes_config_take(&c->ca_cert);
  s->verify_peer = c->verify_peer;
  s->verify_host = c->verify_host;
  s->timeout_ms = (long)c->timeout_ms;
  s->mqtt_host = hes_config_take(&c->mqtt_host);
  s->mqtt_port = c->mqtt_port;
  s->mqtt_user = hes_config_take(&c->mqtt_user);
  s->mqtt_password = hes_config_take(&c->mqtt_password);
  s->mqtt_client_id = hes_config_take(&c->mqtt_client_id);
  s->mqtt_qos = c->mqtt_qos;
  s->mqtt_clean_session = c->mqtt_clean_session;
  s->mqtt_keepalive = c->mqtt_keepalive;
  s->mqtt_tls = c->mqtt_tls;
  s->mqtt_ca_cert = hes_config_take(&c->mqtt_ca_cert);
  s->mqtt_cert_file = hes_config_take(&c->mqtt_cert_file);
  s->mqtt_key_file = hes_config_take(&c->mqtt_key_file);
  s->mqtt_tls_protocol = hes_config_take(&c->mqtt_tls_protocol);
  s->meters = c->meters;
  c->meters_borrowed = true;
  s->meter_files = c->meter_files;
  s->meter_files_num = c->meter_files_num;
  c->meter_files = NULL;
  c->meter_files_num = 0;
  s->dcus = c->dcus;
  s->dcus_num = c->dcus_num;
  c->dcus = NULL;
  c->dcus_num = 0;
  s->dcu_refresh = c->dcu_refresh;
  memcpy(s->items, c->items, c->items_num * sizeof(s->items[0]));
  s->items_num = c->items_num;
  for (size_t i = 0; i < c->frozen_num; i++)
    s->frozen[i].item = c->frozen[i];
  s->frozen_num = c->frozen_num;
  s->batch_size = (size_t)c->batch_size;
  s->interval = DOUBLE_TO_CDTIME_T(c->interval);
  s->plan_timeout = c->plan_timeout;
  s->spread = c->spread;
  s->backfill_periods = c->backfill_periods;
  s->retry_interval = c->retry_interval;
  s->give_up_after = c->give_up_after;
  s->time_zone = hes_config_take(&c->time_zone);
  s->tz = c->tz;
  c->tz = NULL;
  if (s->name == NULL) {
    hes_server_free(s);
    return NULL;
  }
  return s;
}

static hes_relay_conf_t *hes_config_relay(hes_conf_relay_t *c) {
  hes_relay_conf_t *rc = calloc(1, sizeof(*rc));
  if (rc == NULL)
    return NULL;
  hes_ratelimit_init(&rc->log_skip);
  rc->server_name = strdup(c->server_name);
  rc->holdoff = c->holdoff;
  rc->max_per_minute = c->max_per_minute;
  rc->dry_run = c->dry_run;
  for (size_t i = 0; i < c->rules_num; i++) {
    hes_rule_conf_t *r = &rc->rules[i];
    hes_conf_rule_t *from = &c->rules[i];
    r->name = hes_config_take(&from->name);
    r->plugin = hes_config_take(&from->plugin);
    r->type = hes_config_take(&from->type);
    r->type_instance = hes_config_take(&from->type_instance);
    r->severity = from->severity;
    r->action = from->action;
    r->meters = from->meters;
    r->meters_num = from->meters_num;
    from->meters = NULL;
    from->meters_num = 0;
  }
  rc->rules_num = c->rules_num;
  for (hes_server_t *s = hes_servers; s != NULL; s = s->next)
    if (rc->server_name != NULL && strcmp(s->name, rc->server_name) == 0)
      rc->server = s;
  if (rc->server == NULL) {
    hes_relay_conf_free(rc);
    return NULL;
  }
  return rc;
}

/* collectd calls this once per <Plugin hes> block; the module checks each against what the
 * blocks before it held, as hesctl does. */
int hes_config(oconfig_item_t *ci) {
  static hes_conf_t conf;
  char err[HES_CONF_ERR_MAX];
  hes_conf_node_t *root = calloc(1, sizeof(*root));
  if (root == NULL || hes_config_tree(ci, root) != 0) {
    hes_conf_tree_free(root);
    ERROR(HES_PLUGIN " plugin: out of memory reading the configuration.");
    return -1;
  }
  int status = hes_conf_load(root, &conf, err, sizeof(err), NULL);
  hes_conf_tree_free(root);
  if (status != 0) {
    ERROR(HES_PLUGIN " plugin: %s", err);
    return -1;
  }
  for (hes_conf_server_t *c = conf.servers; c != NULL; c = c->next) {
    if (c->meters_borrowed)
      continue; /* moved by an earlier block */
    hes_server_t *s = hes_config_server(c);
    if (s == NULL) {
      ERROR(HES_PLUGIN " plugin: out of memory storing Server \"%s\".", c->name);
      return -1;
    }
    s->next = hes_servers;
    hes_servers = s;
  }
  if (conf.state_dir != NULL) {
    free(hes_state_dir);
    hes_state_dir = hes_config_take(&conf.state_dir);
  }
  if (conf.relay != NULL && hes_relay_conf == NULL) {
    hes_relay_conf = hes_config_relay(conf.relay);
    if (hes_relay_conf == NULL) {
      ERROR(HES_PLUGIN " plugin: out of memory storing the <Relay> block.");
      return -1;
    }
  }
  return 0;
}
