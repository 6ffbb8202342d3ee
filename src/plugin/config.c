/* config.c: the <Plugin hes> block of collectd's configuration. It converts collectd's
 * oconfig_item_t into the neutral tree, lets the config module (src/lib/conf.c, shared with
 * hesctl) check it and work out the defaults into hes_conf, and makes the runtime of each
 * server (hes_servers) and of the <Relay> block (hes_relay_conf) around its part of hes_conf.
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

/* The config module's part (s->conf, rc->conf) is hes_conf's: freed with it at shutdown. */
void hes_server_free(hes_server_t *s) {
  if (s == NULL)
    return;
  hes_server_runtime_free(s);
  pthread_mutex_destroy(&s->log_http.lock);
  pthread_mutex_destroy(&s->log_push.lock);
  pthread_mutex_destroy(&s->log_value.lock);
  pthread_mutex_destroy(&s->log_missing.lock);
  pthread_mutex_destroy(&s->log_retry.lock);
  free(s);
}

void hes_relay_conf_free(hes_relay_conf_t *rc) {
  if (rc == NULL)
    return;
  hes_relay_free(rc->relay);
  hes_relay_runtime_free(rc);
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

static hes_server_t *hes_config_server(hes_conf_server_t *c) {
  hes_server_t *s = calloc(1, sizeof(*s));
  if (s == NULL)
    return NULL;
  hes_ratelimit_init(&s->log_http);
  hes_ratelimit_init(&s->log_push);
  hes_ratelimit_init(&s->log_value);
  hes_ratelimit_init(&s->log_missing);
  hes_ratelimit_init(&s->log_retry);
  s->conf = c;
  for (size_t i = 0; i < c->frozen_num; i++)
    s->frozen[i].item = c->frozen[i];
  return s;
}

static hes_relay_conf_t *hes_config_relay(const hes_conf_relay_t *c) {
  hes_relay_conf_t *rc = calloc(1, sizeof(*rc));
  if (rc == NULL)
    return NULL;
  hes_ratelimit_init(&rc->log_skip);
  rc->conf = c;
  for (hes_server_t *s = hes_servers; s != NULL; s = s->next)
    if (c->server_name != NULL && strcmp(s->conf->name, c->server_name) == 0)
      rc->server = s;
  if (rc->server == NULL) {
    hes_relay_conf_free(rc);
    return NULL;
  }
  return rc;
}

static bool hes_config_stored(const hes_conf_server_t *c) {
  for (const hes_server_t *s = hes_servers; s != NULL; s = s->next)
    if (s->conf == c)
      return true;
  return false;
}

/* collectd calls this once per <Plugin hes> block; the module checks each against what the
 * blocks before it held, as hesctl does. */
int hes_config(oconfig_item_t *ci) {
  char err[HES_CONF_ERR_MAX];
  hes_conf_node_t *root = calloc(1, sizeof(*root));
  if (root == NULL || hes_config_tree(ci, root) != 0) {
    hes_conf_tree_free(root);
    ERROR(HES_PLUGIN " plugin: out of memory reading the configuration.");
    return -1;
  }
  int status = hes_conf_load(root, &hes_conf, err, sizeof(err), NULL);
  hes_conf_tree_free(root);
  if (status != 0) {
    ERROR(HES_PLUGIN " plugin: %s", err);
    return -1;
  }
  for (hes_conf_server_t *c = hes_conf.servers; c != NULL; c = c->next) {
    if (hes_config_stored(c))
      continue; /* an earlier block's */
    hes_server_t *s = hes_config_server(c);
    if (s == NULL) {
      ERROR(HES_PLUGIN " plugin: out of memory storing Server \"%s\".", c->name);
      return -1;
    }
    s->next = hes_servers;
    hes_servers = s;
  }
  if (hes_conf.relay != NULL && hes_relay_conf == NULL) {
    hes_relay_conf = hes_config_relay(hes_conf.relay);
    if (hes_relay_conf == NULL) {
      ERROR(HES_PLUGIN " plugin: out of memory storing the <Relay> block.");
      return -1;
    }
  }
  return 0;
}
