/* conf: the <Plugin hes> block's rules, once, for the plugin and for hesctl. One table holds
 * every key (interface.md section 1 and the README's additions): the block it belongs to, its
 * type, its default, its range; the cross-checks and the defaults that follow other keys are
 * in one function after it. Both programs hand over the same neutral tree (conf_tree.h): the
 * plugin converts collectd's oconfig_item_t, hesctl reads the file itself. So both accept and
 * refuse the same files, with the same one-line message naming block, key and value.
 *
 * Defaults never contradict what the user wrote (interface.md 1):
 *   Timeout      min(10000 ms, 0.9 x Interval, 0.9 x PlanTimeout)
 *   Interval     60 s; when the user's Timeout is 60 s or more, the first whole second above it
 *   PlanTimeout  max(300 s, 2 x Timeout)
 *   RetryInterval 300 s, or GiveUpAfter / 2 when the user's GiveUpAfter makes that smaller
 *   BackfillPeriods 7, or fewer when the user's GiveUpAfter would give the oldest up at once
 * Only a contradiction between keys the user wrote is refused, and the message says which key
 * to change and to what. */
#ifndef HES_CONF_H
#define HES_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf_tree.h"
#include "items.h"
#include "meters.h"
#include "relay.h"
#include "tz.h"

#define HES_CONF_ITEMS_MAX 64
#define HES_CONF_BATCH_MAX 10000
#define HES_CONF_RULES_MAX 64
#define HES_CONF_ERR_MAX   512

typedef struct hes_conf_server {
  struct hes_conf_server *next;
  char *name;

  /* HES */
  char *url;
  char *tenant;
  char *username;
  char *password;
  char *secret_key;
  char *ca_cert;
  bool verify_peer;
  bool verify_host;
  double timeout_ms;

  /* MQTT */
  char *mqtt_host;
  int mqtt_port; /* the default worked out: hes_conf_mqtt_port */
  char *mqtt_user;
  char *mqtt_password;
  char *mqtt_client_id; /* NULL: the plugin's default */
  int mqtt_qos;
  bool mqtt_clean_session;
  int mqtt_keepalive;
  bool mqtt_tls;
  char *mqtt_ca_cert;
  char *mqtt_cert_file;
  char *mqtt_key_file;
  char *mqtt_tls_protocol;

  /* what to read: the meters of Meter and MeterFile (sealed), the files, the DCUs */
  hes_meters_t *meters;
  char **meter_files;
  size_t meter_files_num;
  char **dcus;
  size_t dcus_num;
  double dcu_refresh;
  const hes_item_t *items[HES_CONF_ITEMS_MAX];
  size_t items_num;
  const hes_item_t *frozen[3];
  size_t frozen_num;
  int batch_size;
  double interval;
  double plan_timeout;
  double spread; /* the fraction of the Interval a read round's requests are spread over */
  int backfill_periods;
  double retry_interval;
  double give_up_after; /* 0: the backfill module's default, (BackfillPeriods + 1) periods */
  char *time_zone;      /* NULL: the host's */
  hes_tz_t *tz;

  uint64_t set; /* the keys the user wrote, by table row */
} hes_conf_server_t;

typedef struct {
  char *name;
  char *plugin;
  char *type;
  char *type_instance;
  int severity;
  hes_relay_action_t action;
  char **meters;
  size_t meters_num;
} hes_conf_rule_t;

typedef struct {
  char *server_name; /* NULL in the file: filled with the only server's */
  double holdoff;
  int max_per_minute;
  bool dry_run;
  hes_conf_rule_t rules[HES_CONF_RULES_MAX];
  size_t rules_num;
  uint64_t set;
} hes_conf_relay_t;

typedef struct {
  hes_conf_server_t *servers; /* in file order */
  char *state_dir;            /* NULL: collectd's BaseDir */
  hes_conf_relay_t *relay;    /* NULL: no <Relay> */
} hes_conf_t;

/* Checks one <Plugin hes> block (plugin's children are its items) and adds its servers and
 * relay to conf: collectd calls the plugin once per <Plugin hes> block, hesctl does the same.
 * Returns 0, or -1 with err set to one line naming the block, key and value (no trailing
 * newline, never a password or secret key) and *where (when not NULL) set to the item at
 * fault, or NULL when the fault is a missing key. */
int hes_conf_load(const hes_conf_node_t *plugin, hes_conf_t *conf, char *err, size_t errlen,
                  const hes_conf_node_t **where);
void hes_conf_free(hes_conf_t *conf);
void hes_conf_server_free(hes_conf_server_t *s);
void hes_conf_relay_free(hes_conf_relay_t *r);

/* The broker port when the config does not give one: 8883 with TLS (TLS true, or a CACert or
 * client certificate), else 1883. The one place both programs take it from. */
int hes_conf_mqtt_port(int port, bool tls, const char *ca_cert, const char *cert_file);

/* The server named name, or the only one when name is NULL; NULL otherwise. */
const hes_conf_server_t *hes_conf_server(const hes_conf_t *conf, const char *name);

#endif
