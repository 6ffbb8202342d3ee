/* hes.c: the collectd plugin. It reads the <Plugin hes> configuration, and per <Server>
 * wires the collectd-free modules together: a read callback asks the HES for readings
 * (api), an MQTT thread receives the results (mqtt), matches them to the plans this instance
 * made (plans), parses them (push), converts them (items) and dispatches collectd values.
 *
 * This is the only file that includes collectd's headers.
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
 *
 * Threads: collectd's read threads call hes_read (never twice at once for one server); one
 * MQTT thread per server, made with plugin_thread_create so dispatches carry the plugin's
 * context. They share the plans table (its own lock) and atomic counters; each thread has
 * its own push parser and api handle. */
#include "config.h"

#include "collectd/core/daemon/collectd.h"
#include "collectd/core/daemon/plugin.h"
#include "collectd/core/utils/common/common.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "api.h"
#include "backfill.h"
#include "items.h"
#include "meters.h"
#include "mqtt.h"
#include "plans.h"
#include "push.h"
#include "relay.h"
#include "tz.h"

#define HES_PLUGIN    "hes"
#define HES_BATCH_MAX 10000
#define HES_ITEMS_MAX 64
/* How long the first read waits for the MQTT subscription before it gives up on the round:
 * without the subscription the round's results would be lost. */
#define HES_READY_WAIT 2.0
/* Log lines of one kind per minute per server, before they are summarised. */
#define HES_LOG_BURST 5
/* Plans of relay commands carry this bit in their tag; reading plans carry the cgcode. */
#define HES_TAG_RELAY 0x80000000u
#define HES_RULES_MAX 64

/* A small log rate limiter: HES_LOG_BURST lines per minute, then one line saying how many
 * were suppressed. c_complain does not fit: it backs off to a day and is not thread-safe. */
typedef struct {
  pthread_mutex_t lock;
  cdtime_t window_start;
  int lines;
  uint64_t suppressed;
} hes_ratelimit_t;

typedef struct {
  atomic_uint_fast64_t http;
  atomic_uint_fast64_t http_failed;
  atomic_uint_fast64_t dispatched;
  atomic_uint_fast64_t missing;
  atomic_uint_fast64_t rejected;
  atomic_uint_fast64_t relay_sent;
  atomic_uint_fast64_t relay_skipped;
} hes_counters_t;

typedef struct hes_server {
  struct hes_server *next;
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
  long timeout_ms;

  /* MQTT */
  char *mqtt_host;
  int mqtt_port;
  char *mqtt_user;
  char *mqtt_password;
  char *mqtt_client_id;
  int mqtt_qos;
  bool mqtt_clean_session;
  int mqtt_keepalive;
  bool mqtt_tls;
  char *mqtt_ca_cert;
  char *mqtt_cert_file;
  char *mqtt_key_file;
  char *mqtt_tls_protocol;

  /* what to read */
  hes_meters_t *meters;
  const hes_item_t *items[HES_ITEMS_MAX];
  size_t items_num;
  size_t batch_size;
  cdtime_t interval;
  double plan_timeout;

  /* frozen items: the seed's 4.1 loop (history, then re-read what is missing, repeat) */
  struct hes_frozen {
    const hes_item_t *item;
    hes_backfill_t *backfill;
  } frozen[3];
  size_t frozen_num;
  int backfill_periods;
  double retry_interval;
  double give_up_after; /* 0: the backfill module's default */
  char *time_zone;      /* NULL: the host's */
  hes_tz_t *tz;
  double frozen_last; /* when the last 4.1 round ran */

  /* runtime */
  char topic_filter[128];
  hes_api_t *api;                 /* read thread only */
  hes_push_parser_t *read_parser; /* read thread only: parked pushes */
  hes_push_parser_t *mqtt_parser; /* MQTT thread only */
  hes_plans_t *plans;
  hes_mqtt_t *mqtt;
  pthread_t mqtt_thread;
  bool mqtt_thread_started;
  const char **batch_meters; /* read thread scratch: batch_size entries */
  uint32_t *batch_index;
  bool ready_once;
  hes_counters_t count;
  hes_ratelimit_t log_http;
  hes_ratelimit_t log_push;
  hes_ratelimit_t log_value;
  hes_ratelimit_t log_missing;
} hes_server_t;

static hes_server_t *hes_servers;
static atomic_bool hes_initialised;

typedef struct {
  char *name;
  char *plugin;
  char *type;
  char *type_instance;
  int severity;
  hes_relay_action_t action;
  char **meters;
  size_t meters_num;
} hes_rule_conf_t;

/* The <Relay> block and its runtime: the commands go out from their own thread with their
 * own api handle, so a long read round never delays a breaker command. */
typedef struct {
  char *server_name;
  hes_server_t *server;
  double holdoff;
  int max_per_minute;
  bool dry_run;
  hes_rule_conf_t rules[HES_RULES_MAX];
  size_t rules_num;

  hes_relay_t *relay;
  hes_api_t *api;            /* relay thread only */
  hes_push_parser_t *parser; /* relay thread only: parked pushes */
  pthread_t thread;
  bool thread_started;
  hes_ratelimit_t log_skip;
} hes_relay_conf_t;

static hes_relay_conf_t *hes_relay_conf;
static char *hes_state_dir;

/* ---------------------------------------------------------------------------------------
 * logging helpers */

static void hes_ratelimit_init(hes_ratelimit_t *rl) {
  pthread_mutex_init(&rl->lock, NULL);
  rl->window_start = 0;
  rl->lines = 0;
  rl->suppressed = 0;
}

/* Returns true if a line may be logged now; *suppressed_before receives how many lines were
 * swallowed since the last one that was let through. */
static bool hes_ratelimit_allow(hes_ratelimit_t *rl, uint64_t *suppressed_before) {
  cdtime_t now = cdtime();
  bool allow;
  pthread_mutex_lock(&rl->lock);
  if (now - rl->window_start >= TIME_T_TO_CDTIME_T(60)) {
    rl->window_start = now;
    rl->lines = 0;
  }
  allow = rl->lines < HES_LOG_BURST;
  if (allow) {
    rl->lines++;
    *suppressed_before = rl->suppressed;
    rl->suppressed = 0;
  } else {
    rl->suppressed++;
  }
  pthread_mutex_unlock(&rl->lock);
  return allow;
}

#define HES_LOG_LIMITED(rl, level, fmt, ...)                                                       \
  do {                                                                                             \
    uint64_t hes_suppressed_;                                                                      \
    if (hes_ratelimit_allow((rl), &hes_suppressed_)) {                                             \
      if (hes_suppressed_ > 0)                                                                     \
        plugin_log((level), HES_PLUGIN " plugin: " fmt " (%" PRIu64 " similar lines suppressed)",  \
                   __VA_ARGS__, hes_suppressed_);                                                  \
      else                                                                                         \
        plugin_log((level), HES_PLUGIN " plugin: " fmt, __VA_ARGS__);                              \
    }                                                                                              \
  } while (0)

static double hes_now(void) {
  return CDTIME_T_TO_DOUBLE(cdtime());
}

/* StateDir, or collectd's BaseDir. */
static const char *hes_state_dir_path(void) {
  if (hes_state_dir != NULL)
    return hes_state_dir;
  const char *base = global_option_get("BaseDir");
  return base != NULL ? base : ".";
}

/* ---------------------------------------------------------------------------------------
 * configuration */

static void hes_server_free(hes_server_t *s) {
  if (s == NULL)
    return;
  if (s->mqtt != NULL)
    hes_mqtt_free(s->mqtt);
  hes_api_free(s->api);
  hes_push_parser_free(s->read_parser);
  hes_push_parser_free(s->mqtt_parser);
  hes_plans_free(s->plans);
  for (size_t i = 0; i < s->frozen_num; i++)
    hes_backfill_free(s->frozen[i].backfill);
  hes_tz_free(s->tz);
  free(s->time_zone);
  hes_meters_free(s->meters);
  free(s->batch_meters);
  free(s->batch_index);
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

/* The value of a config option as the user wrote it, for error messages. */
static const char *hes_config_value_text(const oconfig_value_t *v, char *buf, size_t len) {
  switch (v->type) {
  case OCONFIG_TYPE_STRING:
    snprintf(buf, len, "\"%s\"", v->value.string);
    break;
  case OCONFIG_TYPE_NUMBER:
    snprintf(buf, len, "%.15g", v->value.number);
    break;
  case OCONFIG_TYPE_BOOLEAN:
    snprintf(buf, len, "%s", v->value.boolean ? "true" : "false");
    break;
  default:
    snprintf(buf, len, "(unknown type)");
  }
  return buf;
}

/* "Server \"hes1\"" or "MQTT block of Server \"hes1\"": where an option sits. */
static const char *hes_config_block(const hes_server_t *s, bool mqtt, char *buf, size_t len) {
  snprintf(buf, len, "%sServer \"%s\"", mqtt ? "<MQTT> of " : "", s->name ? s->name : "");
  return buf;
}

static int hes_config_fail(const oconfig_item_t *ci, const char *block, const char *why) {
  char value[256] = "(none)";
  /* Credentials never reach the log, not even a malformed one. */
  bool secret = strcasecmp(ci->key, "Password") == 0 || strcasecmp(ci->key, "SecretKey") == 0;
  if (ci->values_num >= 1 && secret)
    sstrncpy(value, "(a value, not shown)", sizeof(value));
  else if (ci->values_num >= 1)
    hes_config_value_text(&ci->values[0], value, sizeof(value));
  ERROR(HES_PLUGIN " plugin: %s: option \"%s\" %s, got %s%s.", block, ci->key, why, value,
        ci->values_num > 1 ? " and more" : "");
  return -1;
}

/* One string. A number is accepted where the user may well leave a numeric code unquoted
 * (TenantCode 1000000067); it must be a whole number. */
static int hes_config_string(const oconfig_item_t *ci, const char *block, char **out) {
  char buf[64];
  if (ci->values_num != 1)
    return hes_config_fail(ci, block, "needs exactly one string argument");
  const oconfig_value_t *v = &ci->values[0];
  const char *text = NULL;
  if (v->type == OCONFIG_TYPE_STRING) {
    text = v->value.string;
  } else if (v->type == OCONFIG_TYPE_NUMBER && v->value.number >= 0 &&
             v->value.number < 9007199254740992.0 && floor(v->value.number) == v->value.number) {
    snprintf(buf, sizeof(buf), "%.0f", v->value.number);
    text = buf;
  } else {
    return hes_config_fail(ci, block, "needs exactly one string argument");
  }
  if (text[0] == '\0')
    return hes_config_fail(ci, block, "must not be empty");
  char *copy = strdup(text);
  if (copy == NULL)
    return hes_config_fail(ci, block, "could not be stored (out of memory)");
  free(*out);
  *out = copy;
  return 0;
}

/* A number in [min, max]; a quoted number is accepted too. */
static int hes_config_number(const oconfig_item_t *ci, const char *block, double min, double max,
                             double *out) {
  char why[128];
  snprintf(why, sizeof(why), "needs one number from %.15g to %.15g", min, max);
  if (ci->values_num != 1)
    return hes_config_fail(ci, block, why);
  const oconfig_value_t *v = &ci->values[0];
  double d;
  if (v->type == OCONFIG_TYPE_NUMBER) {
    d = v->value.number;
  } else if (v->type == OCONFIG_TYPE_STRING) {
    char *end = NULL;
    errno = 0;
    d = strtod(v->value.string, &end);
    if (errno != 0 || end == v->value.string || *end != '\0')
      return hes_config_fail(ci, block, why);
  } else {
    return hes_config_fail(ci, block, why);
  }
  if (!isfinite(d) || d < min || d > max)
    return hes_config_fail(ci, block, why);
  *out = d;
  return 0;
}

static int hes_config_int(const oconfig_item_t *ci, const char *block, int min, int max, int *out) {
  double d;
  if (hes_config_number(ci, block, min, max, &d) != 0)
    return -1;
  if (floor(d) != d)
    return hes_config_fail(ci, block, "needs a whole number");
  *out = (int)d;
  return 0;
}

static int hes_config_bool(const oconfig_item_t *ci, const char *block, bool *out) {
  if (ci->values_num != 1 || ci->values[0].type != OCONFIG_TYPE_BOOLEAN)
    return hes_config_fail(ci, block, "needs exactly one boolean argument (true or false)");
  *out = ci->values[0].value.boolean != 0;
  return 0;
}

static int hes_config_meters(const oconfig_item_t *ci, hes_server_t *s, const char *block) {
  if (ci->values_num < 1)
    return hes_config_fail(ci, block, "needs at least one meter number");
  for (int i = 0; i < ci->values_num; i++) {
    const oconfig_value_t *v = &ci->values[i];
    char buf[64];
    const char *meter;
    if (v->type == OCONFIG_TYPE_STRING) {
      meter = v->value.string;
    } else if (v->type == OCONFIG_TYPE_NUMBER && v->value.number >= 0 &&
               v->value.number < 9007199254740992.0 && floor(v->value.number) == v->value.number) {
      /* Unquoted, a meter number with leading zeros would lose them: quote it. */
      snprintf(buf, sizeof(buf), "%.0f", v->value.number);
      meter = buf;
    } else {
      char value[128];
      ERROR(HES_PLUGIN " plugin: %s: option \"Meter\": %s is not a meter number.", block,
            hes_config_value_text(v, value, sizeof(value)));
      return -1;
    }
    hes_meters_result_t r = hes_meters_add(s->meters, meter);
    if (r == HES_METERS_EINVAL) {
      ERROR(HES_PLUGIN " plugin: %s: option \"Meter\": \"%s\" is not a valid meter number "
                       "(1 to %d characters of 0-9, A-Z, a-z, '_' and '-').",
            block, meter, HES_METER_MAX_LEN);
      return -1;
    }
    if (r == HES_METERS_EDUPLICATE) {
      ERROR(HES_PLUGIN " plugin: %s: option \"Meter\": meter \"%s\" is listed twice.", block,
            meter);
      return -1;
    }
    if (r != HES_METERS_OK) {
      ERROR(HES_PLUGIN " plugin: %s: option \"Meter\": could not store \"%s\" (out of memory).",
            block, meter);
      return -1;
    }
  }
  return 0;
}

static int hes_config_meter_file(const oconfig_item_t *ci, hes_server_t *s, const char *block) {
  char *path = NULL;
  if (hes_config_string(ci, block, &path) != 0)
    return -1;
  size_t line = 0;
  hes_meters_result_t r = hes_meters_add_file(s->meters, path, &line);
  int status = 0;
  switch (r) {
  case HES_METERS_OK:
    break;
  case HES_METERS_EIO:
    ERROR(HES_PLUGIN " plugin: %s: option \"MeterFile\": cannot read \"%s\": %s.", block, path,
          STRERRNO);
    status = -1;
    break;
  case HES_METERS_EINVAL:
    ERROR(HES_PLUGIN " plugin: %s: option \"MeterFile\": \"%s\" line %zu is not a valid meter "
                     "number (1 to %d characters of 0-9, A-Z, a-z, '_' and '-').",
          block, path, line, HES_METER_MAX_LEN);
    status = -1;
    break;
  case HES_METERS_EDUPLICATE:
    ERROR(HES_PLUGIN " plugin: %s: option \"MeterFile\": \"%s\" line %zu repeats a meter "
                     "listed before.",
          block, path, line);
    status = -1;
    break;
  default:
    ERROR(HES_PLUGIN " plugin: %s: option \"MeterFile\": \"%s\": out of memory.", block, path);
    status = -1;
  }
  free(path);
  return status;
}

static int hes_config_items(const oconfig_item_t *ci, hes_server_t *s, const char *block) {
  if (ci->values_num < 1)
    return hes_config_fail(ci, block, "needs at least one item name or cgcode");
  for (int i = 0; i < ci->values_num; i++) {
    const oconfig_value_t *v = &ci->values[i];
    char text[128];
    const hes_item_t *item = NULL;
    if (v->type == OCONFIG_TYPE_STRING) {
      item = hes_item_parse(v->value.string);
      sstrncpy(text, v->value.string, sizeof(text));
    } else if (v->type == OCONFIG_TYPE_NUMBER) {
      snprintf(text, sizeof(text), "%.15g", v->value.number);
      item = hes_item_parse(text);
    } else {
      sstrncpy(text, "a boolean", sizeof(text));
    }
    if (item == NULL) {
      ERROR(HES_PLUGIN " plugin: %s: option \"Item\": unknown item \"%s\" (use a name such as "
                       "\"voltageA\" or a cgcode such as 5050, see collectd-hes(5)).",
            block, text);
      return -1;
    }
    if (item->category == HES_ITEM_COMPOSITE) {
      for (size_t j = 0; j < s->frozen_num; j++) {
        if (s->frozen[j].item == item) {
          ERROR(HES_PLUGIN " plugin: %s: option \"Item\": \"%s\" is listed twice.", block, text);
          return -1;
        }
      }
      s->frozen[s->frozen_num++].item = item;
      continue;
    }
    for (size_t j = 0; j < s->items_num; j++) {
      if (s->items[j] == item) {
        ERROR(HES_PLUGIN " plugin: %s: option \"Item\": \"%s\" is listed twice.", block, text);
        return -1;
      }
    }
    if (s->items_num >= HES_ITEMS_MAX) {
      ERROR(HES_PLUGIN " plugin: %s: option \"Item\": more than %d items.", block, HES_ITEMS_MAX);
      return -1;
    }
    s->items[s->items_num++] = item;
  }
  return 0;
}

static int hes_config_mqtt(const oconfig_item_t *ci, hes_server_t *s) {
  char block[256];
  hes_config_block(s, true, block, sizeof(block));
  if (ci->values_num != 0) {
    ERROR(HES_PLUGIN " plugin: %s: the <MQTT> block takes no argument.", block);
    return -1;
  }
  for (int i = 0; i < ci->children_num; i++) {
    const oconfig_item_t *c = ci->children + i;
    int status;
    if (strcasecmp("Host", c->key) == 0)
      status = hes_config_string(c, block, &s->mqtt_host);
    else if (strcasecmp("Port", c->key) == 0)
      status = hes_config_int(c, block, 1, 65535, &s->mqtt_port);
    else if (strcasecmp("User", c->key) == 0)
      status = hes_config_string(c, block, &s->mqtt_user);
    else if (strcasecmp("Password", c->key) == 0)
      status = hes_config_string(c, block, &s->mqtt_password);
    else if (strcasecmp("ClientId", c->key) == 0)
      status = hes_config_string(c, block, &s->mqtt_client_id);
    else if (strcasecmp("QoS", c->key) == 0)
      status = hes_config_int(c, block, 0, 2, &s->mqtt_qos);
    else if (strcasecmp("CleanSession", c->key) == 0)
      status = hes_config_bool(c, block, &s->mqtt_clean_session);
    else if (strcasecmp("KeepAlive", c->key) == 0)
      status = hes_config_int(c, block, 5, 65535, &s->mqtt_keepalive);
    else if (strcasecmp("TLS", c->key) == 0)
      status = hes_config_bool(c, block, &s->mqtt_tls);
    else if (strcasecmp("CACert", c->key) == 0)
      status = hes_config_string(c, block, &s->mqtt_ca_cert);
    else if (strcasecmp("CertificateFile", c->key) == 0)
      status = hes_config_string(c, block, &s->mqtt_cert_file);
    else if (strcasecmp("CertificateKeyFile", c->key) == 0)
      status = hes_config_string(c, block, &s->mqtt_key_file);
    else if (strcasecmp("TLSProtocol", c->key) == 0)
      status = hes_config_string(c, block, &s->mqtt_tls_protocol);
    else {
      ERROR(HES_PLUGIN " plugin: %s: unknown option \"%s\".", block, c->key);
      status = -1;
    }
    if (status != 0)
      return -1;
  }
  if (s->mqtt_host == NULL) {
    ERROR(HES_PLUGIN " plugin: %s: option \"Host\" is required.", block);
    return -1;
  }
  if ((s->mqtt_cert_file == NULL) != (s->mqtt_key_file == NULL)) {
    ERROR(HES_PLUGIN " plugin: %s: options \"CertificateFile\" and \"CertificateKeyFile\" go "
                     "together.",
          block);
    return -1;
  }
  return 0;
}

static int hes_config_server(const oconfig_item_t *ci) {
  char block[256];
  if (ci->values_num != 1 || ci->values[0].type != OCONFIG_TYPE_STRING ||
      ci->values[0].value.string[0] == '\0') {
    ERROR(HES_PLUGIN " plugin: a <Server> block needs exactly one name: <Server \"hes1\">.");
    return -1;
  }
  hes_server_t *s = calloc(1, sizeof(*s));
  if (s == NULL) {
    ERROR(HES_PLUGIN " plugin: out of memory.");
    return -1;
  }
  hes_ratelimit_init(&s->log_http);
  hes_ratelimit_init(&s->log_push);
  hes_ratelimit_init(&s->log_value);
  hes_ratelimit_init(&s->log_missing);
  s->name = strdup(ci->values[0].value.string);
  s->meters = hes_meters_new();
  s->verify_peer = true;
  s->verify_host = true;
  s->timeout_ms = 10000;
  s->mqtt_port = 0;
  s->mqtt_qos = 1;
  s->mqtt_keepalive = 30;
  s->batch_size = 100;
  s->interval = TIME_T_TO_CDTIME_T(60);
  s->plan_timeout = 300;
  s->backfill_periods = 7;
  s->retry_interval = 300;
  if (s->name == NULL || s->meters == NULL) {
    ERROR(HES_PLUGIN " plugin: out of memory.");
    hes_server_free(s);
    return -1;
  }
  for (hes_server_t *o = hes_servers; o != NULL; o = o->next) {
    if (strcmp(o->name, s->name) == 0) {
      ERROR(HES_PLUGIN " plugin: <Server \"%s\"> is defined twice.", s->name);
      hes_server_free(s);
      return -1;
    }
  }
  hes_config_block(s, false, block, sizeof(block));

  bool have_mqtt = false;
  int status = 0;
  for (int i = 0; i < ci->children_num && status == 0; i++) {
    const oconfig_item_t *c = ci->children + i;
    double d;
    if (strcasecmp("URL", c->key) == 0)
      status = hes_config_string(c, block, &s->url);
    else if (strcasecmp("TenantCode", c->key) == 0)
      status = hes_config_string(c, block, &s->tenant);
    else if (strcasecmp("Username", c->key) == 0)
      status = hes_config_string(c, block, &s->username);
    else if (strcasecmp("Password", c->key) == 0)
      status = hes_config_string(c, block, &s->password);
    else if (strcasecmp("SecretKey", c->key) == 0)
      status = hes_config_string(c, block, &s->secret_key);
    else if (strcasecmp("VerifyPeer", c->key) == 0)
      status = hes_config_bool(c, block, &s->verify_peer);
    else if (strcasecmp("VerifyHost", c->key) == 0)
      status = hes_config_bool(c, block, &s->verify_host);
    else if (strcasecmp("CACert", c->key) == 0)
      status = hes_config_string(c, block, &s->ca_cert);
    else if (strcasecmp("Timeout", c->key) == 0) {
      status = hes_config_number(c, block, 100, 600000, &d);
      s->timeout_ms = (long)d;
    } else if (strcasecmp("MQTT", c->key) == 0) {
      status = hes_config_mqtt(c, s);
      have_mqtt = true;
    } else if (strcasecmp("Meter", c->key) == 0)
      status = hes_config_meters(c, s, block);
    else if (strcasecmp("MeterFile", c->key) == 0)
      status = hes_config_meter_file(c, s, block);
    else if (strcasecmp("Item", c->key) == 0)
      status = hes_config_items(c, s, block);
    else if (strcasecmp("BatchSize", c->key) == 0) {
      int n = 0;
      status = hes_config_int(c, block, 1, HES_BATCH_MAX, &n);
      s->batch_size = (size_t)n;
    } else if (strcasecmp("Interval", c->key) == 0) {
      status = hes_config_number(c, block, 1, 86400 * 31, &d);
      s->interval = DOUBLE_TO_CDTIME_T(d);
    } else if (strcasecmp("PlanTimeout", c->key) == 0) {
      status = hes_config_number(c, block, 1, 86400 * 7, &d);
      s->plan_timeout = d;
    } else if (strcasecmp("BackfillPeriods", c->key) == 0)
      status = hes_config_int(c, block, 1, HES_BACKFILL_PERIODS_MAX, &s->backfill_periods);
    else if (strcasecmp("RetryInterval", c->key) == 0)
      status = hes_config_number(c, block, 1, 86400 * 31, &s->retry_interval);
    else if (strcasecmp("GiveUpAfter", c->key) == 0)
      status = hes_config_number(c, block, 60, 86400.0 * 3660, &s->give_up_after);
    else if (strcasecmp("TimeZone", c->key) == 0)
      status = hes_config_string(c, block, &s->time_zone);
    else {
      ERROR(HES_PLUGIN " plugin: %s: unknown option \"%s\".", block, c->key);
      status = -1;
    }
  }

  static const struct {
    size_t offset;
    const char *key;
  } required[] = {
      {offsetof(hes_server_t, url), "URL"},
      {offsetof(hes_server_t, tenant), "TenantCode"},
      {offsetof(hes_server_t, username), "Username"},
      {offsetof(hes_server_t, password), "Password"},
      {offsetof(hes_server_t, secret_key), "SecretKey"},
  };
  for (size_t i = 0; i < STATIC_ARRAY_SIZE(required) && status == 0; i++) {
    if (*(char **)((char *)s + required[i].offset) == NULL) {
      ERROR(HES_PLUGIN " plugin: %s: option \"%s\" is required.", block, required[i].key);
      status = -1;
    }
  }
  if (status == 0 && !have_mqtt) {
    ERROR(HES_PLUGIN " plugin: %s: an <MQTT> block (the broker the HES pushes to) is "
                     "required.",
          block);
    status = -1;
  }
  if (status == 0 && hes_meters_count(s->meters) == 0) {
    ERROR(HES_PLUGIN " plugin: %s: at least one \"Meter\" or \"MeterFile\" is required.", block);
    status = -1;
  }
  if (status == 0 && s->items_num == 0 && s->frozen_num == 0) {
    ERROR(HES_PLUGIN " plugin: %s: at least one \"Item\" is required.", block);
    status = -1;
  }
  if (status == 0 && strncasecmp(s->url, "http://", 7) != 0 &&
      strncasecmp(s->url, "https://", 8) != 0) {
    ERROR(HES_PLUGIN " plugin: %s: option \"URL\" must start with http:// or https://, got "
                     "\"%s\".",
          block, s->url);
    status = -1;
  }
  if (status == 0 && (strchr(s->tenant, '/') != NULL || strchr(s->tenant, '#') != NULL ||
                      strchr(s->tenant, '+') != NULL)) {
    ERROR(HES_PLUGIN " plugin: %s: option \"TenantCode\" must not contain '/', '+' or '#', got "
                     "\"%s\".",
          block, s->tenant);
    status = -1;
  }
  if (status == 0 && s->plan_timeout * 1000.0 <= (double)s->timeout_ms) {
    ERROR(HES_PLUGIN " plugin: %s: option \"PlanTimeout\" (%.15g s) must be longer than the "
                     "HTTP Timeout (%ld ms).",
          block, s->plan_timeout, s->timeout_ms);
    status = -1;
  }
  if (status == 0 && (double)s->timeout_ms >= CDTIME_T_TO_DOUBLE(s->interval) * 1000.0) {
    ERROR(HES_PLUGIN " plugin: %s: option \"Timeout\" (%ld ms) must be below the Interval "
                     "(%.15g s): a read round must not outlast its interval.",
          block, s->timeout_ms, CDTIME_T_TO_DOUBLE(s->interval));
    status = -1;
  }
  if (status == 0) {
    char err[256] = "";
    s->tz = hes_tz_load(s->time_zone, err, sizeof(err));
    if (s->tz == NULL) {
      ERROR(HES_PLUGIN " plugin: %s: option \"TimeZone\": \"%s\": %s", block,
            s->time_zone != NULL ? s->time_zone : "(the host's)", err);
      status = -1;
    }
  }
  if (status == 0 && hes_meters_seal(s->meters) != HES_METERS_OK) {
    ERROR(HES_PLUGIN " plugin: %s: out of memory indexing the meters.", block);
    status = -1;
  }
  if (status != 0) {
    hes_server_free(s);
    return -1;
  }
  s->next = hes_servers;
  hes_servers = s;
  return 0;
}

static void hes_relay_conf_free(hes_relay_conf_t *rc) {
  if (rc == NULL)
    return;
  hes_relay_free(rc->relay);
  hes_api_free(rc->api);
  hes_push_parser_free(rc->parser);
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

static int hes_config_rule_meters(const oconfig_item_t *ci, hes_rule_conf_t *r, const char *block) {
  if (ci->values_num < 1)
    return hes_config_fail(ci, block, "needs at least one meter number");
  for (int i = 0; i < ci->values_num; i++) {
    char *meter = NULL;
    oconfig_item_t one = *ci;
    one.values = ci->values + i;
    one.values_num = 1;
    if (hes_config_string(&one, block, &meter) != 0)
      return -1;
    char **grown = realloc(r->meters, (r->meters_num + 1) * sizeof(*grown));
    if (grown == NULL) {
      free(meter);
      return hes_config_fail(ci, block, "could not be stored (out of memory)");
    }
    r->meters = grown;
    r->meters[r->meters_num++] = meter;
  }
  return 0;
}

static int hes_config_rule(const oconfig_item_t *ci, hes_relay_conf_t *rc) {
  if (ci->values_num != 1 || ci->values[0].type != OCONFIG_TYPE_STRING ||
      ci->values[0].value.string[0] == '\0') {
    ERROR(HES_PLUGIN " plugin: <Relay>: a <Rule> block needs exactly one name: "
                     "<Rule \"overvoltage\">.");
    return -1;
  }
  if (rc->rules_num >= HES_RULES_MAX) {
    ERROR(HES_PLUGIN " plugin: <Relay>: more than %d rules.", HES_RULES_MAX);
    return -1;
  }
  hes_rule_conf_t *r = &rc->rules[rc->rules_num++];
  r->name = strdup(ci->values[0].value.string);
  if (r->name == NULL)
    return -1;
  char block[256];
  snprintf(block, sizeof(block), "<Relay> <Rule \"%s\">", r->name);
  for (int i = 0; i < ci->children_num; i++) {
    const oconfig_item_t *c = ci->children + i;
    int status;
    char *word = NULL;
    if (strcasecmp("Plugin", c->key) == 0)
      status = hes_config_string(c, block, &r->plugin);
    else if (strcasecmp("Type", c->key) == 0)
      status = hes_config_string(c, block, &r->type);
    else if (strcasecmp("TypeInstance", c->key) == 0)
      status = hes_config_string(c, block, &r->type_instance);
    else if (strcasecmp("Meter", c->key) == 0)
      status = hes_config_rule_meters(c, r, block);
    else if (strcasecmp("Severity", c->key) == 0) {
      status = hes_config_string(c, block, &word);
      if (status == 0) {
        if (strcasecmp(word, "failure") == 0)
          r->severity = HES_RELAY_FAILURE;
        else if (strcasecmp(word, "warning") == 0)
          r->severity = HES_RELAY_WARNING;
        else if (strcasecmp(word, "okay") == 0)
          r->severity = HES_RELAY_OKAY;
        else
          status = hes_config_fail(c, block, "must be failure, warning or okay");
      }
    } else if (strcasecmp("Action", c->key) == 0) {
      status = hes_config_string(c, block, &word);
      if (status == 0) {
        if (strcasecmp(word, "open") == 0)
          r->action = HES_RELAY_OPEN;
        else if (strcasecmp(word, "close") == 0)
          r->action = HES_RELAY_CLOSE;
        else
          status = hes_config_fail(c, block, "must be open or close");
      }
    } else {
      ERROR(HES_PLUGIN " plugin: %s: unknown option \"%s\".", block, c->key);
      status = -1;
    }
    free(word);
    if (status != 0)
      return -1;
  }
  if (r->severity == 0) {
    ERROR(HES_PLUGIN " plugin: %s: option \"Severity\" is required (failure, warning or "
                     "okay).",
          block);
    return -1;
  }
  if (r->action == 0) {
    ERROR(HES_PLUGIN " plugin: %s: option \"Action\" is required (open or close).", block);
    return -1;
  }
  return 0;
}

static int hes_config_relay(const oconfig_item_t *ci) {
  if (hes_relay_conf != NULL) {
    ERROR(HES_PLUGIN " plugin: only one <Relay> block is allowed.");
    return -1;
  }
  hes_relay_conf_t *rc = calloc(1, sizeof(*rc));
  if (rc == NULL)
    return -1;
  hes_ratelimit_init(&rc->log_skip);
  rc->holdoff = 300;
  rc->max_per_minute = 10;
  hes_relay_conf = rc; /* freed by hes_shutdown even when config fails */
  const char *block = "<Relay>";
  for (int i = 0; i < ci->children_num; i++) {
    const oconfig_item_t *c = ci->children + i;
    int status;
    if (strcasecmp("Server", c->key) == 0)
      status = hes_config_string(c, block, &rc->server_name);
    else if (strcasecmp("Holdoff", c->key) == 0)
      status = hes_config_number(c, block, 0, 86400 * 365, &rc->holdoff);
    else if (strcasecmp("MaxPerMinute", c->key) == 0)
      status = hes_config_int(c, block, 1, 100000, &rc->max_per_minute);
    else if (strcasecmp("DryRun", c->key) == 0)
      status = hes_config_bool(c, block, &rc->dry_run);
    else if (strcasecmp("Rule", c->key) == 0)
      status = hes_config_rule(c, rc);
    else {
      ERROR(HES_PLUGIN " plugin: %s: unknown option \"%s\".", block, c->key);
      status = -1;
    }
    if (status != 0)
      return -1;
  }
  if (rc->rules_num == 0) {
    ERROR(HES_PLUGIN " plugin: <Relay>: at least one <Rule> is required.");
    return -1;
  }
  return 0;
}

/* The Relay's Server exists, and the rules' meters are configured there. Runs after every
 * <Server> is parsed: the blocks may come in any order. */
static int hes_config_relay_check(void) {
  hes_relay_conf_t *rc = hes_relay_conf;
  if (rc->server_name == NULL) {
    if (hes_servers == NULL || hes_servers->next != NULL) {
      ERROR(HES_PLUGIN " plugin: <Relay>: option \"Server\" is required when there is more "
                       "than one <Server>.");
      return -1;
    }
    rc->server = hes_servers;
  } else {
    for (hes_server_t *s = hes_servers; s != NULL; s = s->next)
      if (strcmp(s->name, rc->server_name) == 0)
        rc->server = s;
    if (rc->server == NULL) {
      ERROR(HES_PLUGIN " plugin: <Relay>: option \"Server\": there is no <Server \"%s\">.",
            rc->server_name);
      return -1;
    }
  }
  for (size_t i = 0; i < rc->rules_num; i++) {
    const hes_rule_conf_t *r = &rc->rules[i];
    for (size_t j = 0; j < r->meters_num; j++) {
      if (hes_meters_find(rc->server->meters, r->meters[j], strlen(r->meters[j])) ==
          HES_METER_NONE) {
        ERROR(HES_PLUGIN " plugin: <Relay> <Rule \"%s\">: option \"Meter\": \"%s\" is not a "
                         "meter of Server \"%s\": the plugin never commands a meter it does "
                         "not read.",
              r->name, r->meters[j], rc->server->name);
        return -1;
      }
    }
  }
  return 0;
}

static int hes_config(oconfig_item_t *ci) {
  for (int i = 0; i < ci->children_num; i++) {
    const oconfig_item_t *c = ci->children + i;
    if (strcasecmp("Server", c->key) == 0) {
      if (hes_config_server(c) != 0)
        return -1;
    } else if (strcasecmp("Relay", c->key) == 0) {
      if (hes_config_relay(c) != 0)
        return -1;
    } else if (strcasecmp("StateDir", c->key) == 0) {
      if (hes_config_string(c, "<Plugin hes>", &hes_state_dir) != 0)
        return -1;
    } else {
      ERROR(HES_PLUGIN " plugin: <Plugin hes>: unknown option \"%s\".", c->key);
      return -1;
    }
  }
  if (hes_servers == NULL) {
    ERROR(HES_PLUGIN " plugin: <Plugin hes>: at least one <Server> block is required.");
    return -1;
  }
  if (hes_relay_conf != NULL && hes_config_relay_check() != 0)
    return -1;
  return 0;
}

/* ---------------------------------------------------------------------------------------
 * values */

static void hes_dispatch_gauge(const char *plugin_instance, const char *type,
                               const char *type_instance, cdtime_t time, cdtime_t interval,
                               gauge_t g) {
  value_list_t vl = VALUE_LIST_INIT;
  value_t v = {.gauge = g};
  vl.values = &v;
  vl.values_len = 1;
  vl.time = time;
  /* Set explicitly: the threshold plugin's missing-value timer is based on it. */
  vl.interval = interval;
  sstrncpy(vl.plugin, HES_PLUGIN, sizeof(vl.plugin));
  sstrncpy(vl.plugin_instance, plugin_instance, sizeof(vl.plugin_instance));
  sstrncpy(vl.type, type, sizeof(vl.type));
  sstrncpy(vl.type_instance, type_instance, sizeof(vl.type_instance));
  plugin_dispatch_values(&vl);
}

static void hes_dispatch_derive(const hes_server_t *s, const char *plugin_instance,
                                const char *type, const char *type_instance, cdtime_t time,
                                uint64_t d) {
  value_list_t vl = VALUE_LIST_INIT;
  value_t v = {.derive = (derive_t)d};
  vl.values = &v;
  vl.values_len = 1;
  vl.time = time;
  vl.interval = s->interval;
  sstrncpy(vl.plugin, HES_PLUGIN, sizeof(vl.plugin));
  sstrncpy(vl.plugin_instance, plugin_instance, sizeof(vl.plugin_instance));
  sstrncpy(vl.type, type, sizeof(vl.type));
  sstrncpy(vl.type_instance, type_instance, sizeof(vl.type_instance));
  plugin_dispatch_values(&vl);
}

static void hes_dispatch_self(hes_server_t *s) {
  char instance[DATA_MAX_NAME_LEN];
  snprintf(instance, sizeof(instance), "%s-self", s->name);
  cdtime_t now = cdtime();
  hes_plans_stats_t ps;
  hes_plans_stats(s->plans, &ps);
  hes_dispatch_derive(s, instance, "total_requests", "http", now, atomic_load(&s->count.http));
  hes_dispatch_derive(s, instance, "total_requests", "http_failed", now,
                      atomic_load(&s->count.http_failed));
  hes_dispatch_gauge(instance, "gauge", "plans_pending", now, s->interval,
                     (gauge_t)ps.plans_pending);
  hes_dispatch_derive(s, instance, "total_values", "dispatched", now,
                      atomic_load(&s->count.dispatched));
  hes_dispatch_derive(s, instance, "total_values", "missing", now, atomic_load(&s->count.missing));
  hes_dispatch_derive(s, instance, "total_values", "rejected", now,
                      atomic_load(&s->count.rejected));
  hes_dispatch_derive(s, instance, "total_values", "foreign", now, ps.foreign);
  hes_dispatch_derive(s, instance, "total_values", "duplicate", now, ps.duplicate);
  hes_dispatch_derive(s, instance, "total_values", "late", now, ps.late);
  /* Early pushes that found the parking space full: lost, so they must show. */
  hes_dispatch_derive(s, instance, "total_values", "dropped", now, ps.dropped);
  hes_dispatch_gauge(instance, "gauge", "mqtt_connected", now, s->interval,
                     hes_mqtt_ready(s->mqtt) ? 1.0 : 0.0);
  hes_dispatch_derive(s, instance, "total_operations", "relay_sent", now,
                      atomic_load(&s->count.relay_sent));
  if (hes_relay_conf != NULL && hes_relay_conf->server == s)
    hes_dispatch_derive(s, instance, "total_operations", "relay_skipped", now,
                        atomic_load(&s->count.relay_skipped));
  if (s->frozen_num > 0) {
    uint64_t expected = 0, collected = 0, missing = 0;
    for (size_t i = 0; i < s->frozen_num; i++) {
      hes_backfill_stats_t bs;
      hes_backfill_stats(s->frozen[i].backfill, &bs);
      expected += bs.expected;
      collected += bs.collected;
      missing += bs.missing + bs.pending;
    }
    hes_dispatch_gauge(instance, "gauge", "periods_expected", now, s->interval, (gauge_t)expected);
    hes_dispatch_gauge(instance, "gauge", "periods_collected", now, s->interval,
                       (gauge_t)collected);
    hes_dispatch_gauge(instance, "gauge", "periods_missing", now, s->interval, (gauge_t)missing);
  }
}

/* ---------------------------------------------------------------------------------------
 * relay outcomes */

/* The collectd notification of one command's outcome: plugin hes, type relay, plugin
 * instance the meter. The notification callback recognises and ignores these. */
static void hes_relay_notify(const hes_relay_cmd_t *cmd, int severity, const char *plan_id,
                             const char *outcome) {
  notification_t n = {.severity = severity, .time = cdtime()};
  sstrncpy(n.host, hostname_g, sizeof(n.host));
  sstrncpy(n.plugin, HES_PLUGIN, sizeof(n.plugin));
  sstrncpy(n.plugin_instance, cmd->meter, sizeof(n.plugin_instance));
  sstrncpy(n.type, "relay", sizeof(n.type));
  sstrncpy(n.type_instance, hes_relay_action_string(cmd->action), sizeof(n.type_instance));
  snprintf(n.message, sizeof(n.message), "breaker %s on meter %s: %s (rule %s, plan %s)",
           hes_relay_action_string(cmd->action), cmd->meter, outcome, cmd->rule,
           plan_id != NULL && plan_id[0] != '\0' ? plan_id : "-");
  plugin_dispatch_notification(&n);
}

/* The audit line of an outcome, and its notification. */
static void hes_relay_outcome(const char *plan_id, const char *meter, bool success,
                              const char *why) {
  hes_relay_cmd_t cmd;
  if (hes_relay_conf == NULL || !hes_relay_take(hes_relay_conf->relay, plan_id, meter, &cmd))
    return;
  INFO(HES_PLUGIN " plugin: relay audit: rule \"%s\" meter %s action %s planId %s outcome %s%s%s",
       cmd.rule, cmd.meter, hes_relay_action_string(cmd.action), plan_id,
       success ? "success" : "FAILURE", why != NULL ? ": " : "", why != NULL ? why : "");
  hes_relay_notify(&cmd, success ? NOTIF_OKAY : NOTIF_FAILURE, plan_id,
                   success ? "success" : (why != NULL ? why : "failure"));
}

/* ---------------------------------------------------------------------------------------
 * pushes */

typedef struct {
  hes_server_t *server;
} hes_missing_ctx_t;

/* Runs with the plans lock held: count and log, nothing else. */
static void hes_missing_cb(void *ctx, const char *plan_id, uint32_t tag, void *user,
                           const uint32_t *meters, size_t n) {
  (void)user;
  hes_server_t *s = ((hes_missing_ctx_t *)ctx)->server;
  if (tag <= 3)
    return; /* frozen plans: the backfill bookkeeping tracks what is missing, per period */
  if (tag & HES_TAG_RELAY) {
    for (size_t i = 0; i < n; i++)
      hes_relay_outcome(plan_id, hes_meters_at(s->meters, meters[i]), false, "no result");
    return;
  }
  atomic_fetch_add(&s->count.missing, n);
  const hes_item_t *item = hes_item_by_cgcode((int)tag);
  char few[160] = "";
  size_t used = 0;
  for (size_t i = 0; i < n && i < 3; i++) {
    int w = snprintf(few + used, sizeof(few) - used, "%s%s", i > 0 ? ", " : "",
                     hes_meters_at(s->meters, meters[i]));
    if (w < 0 || (size_t)w >= sizeof(few) - used)
      break;
    used += (size_t)w;
  }
  HES_LOG_LIMITED(&s->log_missing, LOG_WARNING,
                  "Server \"%s\": plan %s (%s): %zu meter(s) never answered: %s%s", s->name,
                  plan_id, item != NULL ? item->name : "?", n, few, n > 3 ? ", ..." : "");
}

_Static_assert(HES_METER_MAX_LEN < DATA_MAX_NAME_LEN, "a meter number fits a plugin_instance");

/* The meter a reading is for. The HES answers in devList order and reading plans cover
 * consecutive meter indices, so the one after the previous reading's meter is tried first:
 * one comparison instead of a hash probe and its cache misses, per reading. */
static uint32_t hes_reading_meter(const hes_server_t *s, const hes_push_reading_t *r,
                                  uint32_t guess) {
  if (guess < hes_meters_count(s->meters)) {
    const char *m = hes_meters_at(s->meters, guess);
    if (strncmp(m, r->dev_addr, r->dev_addr_len) == 0 && m[r->dev_addr_len] == '\0')
      return guess;
  }
  return hes_meters_find(s->meters, r->dev_addr, r->dev_addr_len);
}

/* The hot path: every reading of every push. Nothing here allocates or formats; the value
 * list is filled once per push and only the meter, time and value change per reading. */
static void hes_handle_readings(hes_server_t *s, const hes_push_t *push,
                                const hes_plan_info_t *info) {
  const hes_item_t *plan_item = hes_item_by_cgcode((int)info->tag);
  if (plan_item == NULL)
    return;
  value_list_t vl = VALUE_LIST_INIT;
  value_t v;
  vl.values = &v;
  vl.values_len = 1;
  vl.interval = s->interval; /* the threshold plugin's missing-value timer is based on it */
  sstrncpy(vl.plugin, HES_PLUGIN, sizeof(vl.plugin));
  sstrncpy(vl.type, plan_item->type, sizeof(vl.type));
  sstrncpy(vl.type_instance, plan_item->type_instance, sizeof(vl.type_instance));
  uint64_t dispatched = 0;
  uint32_t idx = HES_METER_NONE;
  for (size_t i = 0; i < push->count; i++) {
    const hes_push_reading_t *r = &push->readings[i];
    idx = hes_reading_meter(s, r, idx + 1);
    if (idx == HES_METER_NONE) {
      atomic_fetch_add(&s->count.rejected, 1);
      HES_LOG_LIMITED(&s->log_value, LOG_WARNING,
                      "Server \"%s\": plan %s: dropped a reading for meter \"%.*s\", which is "
                      "not configured",
                      s->name, push->plan_id, (int)(r->dev_addr_len > 32 ? 32 : r->dev_addr_len),
                      r->dev_addr);
      continue;
    }
    if (r->cgcode != 0 && r->cgcode != plan_item->cgcode) {
      atomic_fetch_add(&s->count.rejected, 1);
      HES_LOG_LIMITED(&s->log_value, LOG_WARNING,
                      "Server \"%s\": plan %s: meter %s: dropped a reading of cgcode %d, the "
                      "plan asked for %s",
                      s->name, push->plan_id, hes_meters_at(s->meters, idx), r->cgcode,
                      plan_item->name);
      continue;
    }
    if (hes_plans_answer(s->plans, push->plan_id, idx) != 1)
      continue; /* a repeat: counted by plans */
    hes_item_result_t cr = hes_item_convert(plan_item, r->value, r->unit, &v.gauge);
    if (cr != HES_ITEM_OK) {
      atomic_fetch_add(&s->count.rejected, 1);
      HES_LOG_LIMITED(
          &s->log_value, LOG_WARNING,
          "Server \"%s\": plan %s: meter %s: dropped %s value \"%.64s\" unit "
          "\"%.16s\": %s",
          s->name, push->plan_id, hes_meters_at(s->meters, idx), plan_item->name, r->value, r->unit,
          cr == HES_ITEM_EUNIT ? "the unit does not fit the item" : "not a finite number");
      continue;
    }
    /* A meter number is at most HES_METER_MAX_LEN characters: it fits, NUL included. */
    memcpy(vl.plugin_instance, r->dev_addr, r->dev_addr_len);
    vl.plugin_instance[r->dev_addr_len] = '\0';
    vl.time = MS_TO_CDTIME_T(r->timestamp_ms);
    plugin_dispatch_values(&vl);
    dispatched++;
  }
  atomic_fetch_add(&s->count.dispatched, dispatched);
}

static void hes_handle_relay(hes_server_t *s, const hes_push_t *push) {
  for (size_t i = 0; i < push->count; i++) {
    const hes_push_relay_t *r = &push->relays[i];
    uint32_t idx = hes_meters_find(s->meters, r->dev_addr, r->dev_addr_len);
    if (idx == HES_METER_NONE || hes_plans_answer(s->plans, push->plan_id, idx) != 1)
      continue;
    hes_relay_outcome(push->plan_id, hes_meters_at(s->meters, idx), r->successful,
                      r->successful ? NULL : "the HES reports the operation failed");
  }
}

struct hes_frozen;
static struct hes_frozen *hes_frozen_of(hes_server_t *s, uint32_t cgcode);
static void hes_frozen_record(hes_server_t *s, struct hes_frozen *f, const hes_push_t *push,
                              const char *source);

/* Handles one push payload. `parser` belongs to the calling thread. */
static void hes_handle_push(hes_server_t *s, hes_push_parser_t *parser, const void *payload,
                            size_t len, bool parked) {
  hes_push_t push;
  char err[256];
  hes_push_result_t pr = hes_push_parse(parser, payload, len, &push, err, sizeof(err));
  if (pr != HES_PUSH_OK) {
    atomic_fetch_add(&s->count.rejected, 1);
    HES_LOG_LIMITED(&s->log_push, LOG_WARNING, "Server \"%s\": rejected a push of %zu bytes: %s",
                    s->name, len, err);
    return;
  }
  hes_plan_info_t info;
  hes_plan_lookup_t lr;
  if (parked) {
    /* Handed back by hes_plans_add: the plan is known now. */
    lr = hes_plans_lookup(s->plans, push.plan_id, hes_now(), NULL, 0, &info);
    if (lr != HES_PLAN_OPEN)
      return;
  } else {
    lr = hes_plans_lookup(s->plans, push.plan_id, hes_now(), payload, len, &info);
    if (lr == HES_PLAN_DROPPED)
      HES_LOG_LIMITED(&s->log_push, LOG_WARNING,
                      "Server \"%s\": plan %s: no room to keep a push that came before its "
                      "plan; dropped",
                      s->name, push.plan_id);
    if (lr != HES_PLAN_OPEN)
      return; /* parked, foreign, duplicate or late: counted by plans */
  }
  if (push.skipped > 0) {
    atomic_fetch_add(&s->count.rejected, push.skipped);
    HES_LOG_LIMITED(
        &s->log_push, LOG_WARNING, "Server \"%s\": plan %s: skipped %zu malformed entr%s: %s",
        s->name, push.plan_id, push.skipped, push.skipped == 1 ? "y" : "ies", push.skipped_reason);
  }
  bool relay_plan = (info.tag & HES_TAG_RELAY) != 0;
  struct hes_frozen *frozen = relay_plan ? NULL : hes_frozen_of(s, info.tag);
  if (frozen != NULL) {
    if (push.kind == HES_PUSH_CHANNELS)
      hes_frozen_record(s, frozen, &push, push.plan_id);
    /* The backfill bookkeeping knows what is still missing; the plan is done. */
    hes_plans_finish(s->plans, push.plan_id, hes_missing_cb, &(hes_missing_ctx_t){.server = s});
    return;
  }
  if (relay_plan && push.kind == HES_PUSH_RELAY)
    hes_handle_relay(s, &push);
  else if (!relay_plan && push.kind == HES_PUSH_READINGS)
    hes_handle_readings(s, &push, &info);
  else if (push.kind != HES_PUSH_EMPTY) {
    atomic_fetch_add(&s->count.rejected, 1);
    HES_LOG_LIMITED(&s->log_push, LOG_WARNING,
                    "Server \"%s\": plan %s: a push of an unexpected kind for a %s plan", s->name,
                    push.plan_id, relay_plan ? "relay" : "reading");
  }
  /* One message per plan (seed): a partial or failed result is final. */
  if (push.status != HES_PUSH_SUCCESS) {
    hes_missing_ctx_t mctx = {.server = s};
    hes_plans_finish(s->plans, push.plan_id, hes_missing_cb, &mctx);
  }
}

static void hes_mqtt_on_message(void *ctx, const char *topic, const void *payload, size_t len) {
  (void)topic; /* the planId in the payload is what counts: the seed's topics disagree */
  hes_server_t *s = ctx;
  hes_handle_push(s, s->mqtt_parser, payload, len, false);
}

static void hes_mqtt_on_state(void *ctx, bool ready, const char *why) {
  hes_server_t *s = ctx;
  if (ready)
    INFO(HES_PLUGIN " plugin: Server \"%s\": MQTT %s:%d connected, subscribed to \"%s\".", s->name,
         s->mqtt_host, s->mqtt_port, s->topic_filter);
  else if (!atomic_load(&hes_initialised))
    INFO(HES_PLUGIN " plugin: Server \"%s\": MQTT disconnected (shutdown).", s->name);
  else /* the reason names the broker */
    WARNING(HES_PLUGIN " plugin: Server \"%s\": MQTT not connected: %s.", s->name,
            why != NULL ? why : "unknown reason");
}

static void *hes_mqtt_thread(void *arg) {
  hes_server_t *s = arg;
  hes_mqtt_run(s->mqtt);
  return NULL;
}

/* ---------------------------------------------------------------------------------------
 * the read round */

static void hes_log_api_error(hes_server_t *s, const hes_api_error_t *err, const char *what) {
  if (err->kind == HES_API_EHES)
    HES_LOG_LIMITED(&s->log_http, LOG_ERR, "Server \"%s\": %s: %s: HES code %d: %s", s->name,
                    err->endpoint, what, err->code, err->msg);
  else
    HES_LOG_LIMITED(&s->log_http, LOG_ERR, "Server \"%s\": %s: %s: %s: %s", s->name, err->endpoint,
                    what, hes_api_result_string(err->kind), err->msg);
}

/* ---------------------------------------------------------------------------------------
 * frozen items: the 4.1 loop */

static struct hes_frozen *hes_frozen_of(hes_server_t *s, uint32_t cgcode) {
  for (size_t i = 0; i < s->frozen_num; i++)
    if ((uint32_t)s->frozen[i].item->cgcode == cgcode)
      return &s->frozen[i];
  return NULL;
}

/* Records the composite entries of a push or a history page: one meter at one freeze time
 * each, its channels converted to SI. Dispatching is the read thread's (hes_frozen_dispatch),
 * so each identifier's values go out in time order. Called from the MQTT and read threads. */
static void hes_frozen_record(hes_server_t *s, struct hes_frozen *f, const hes_push_t *push,
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
static void hes_frozen_dispatch(hes_server_t *s, struct hes_frozen *f) {
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
      r = hes_api_history_next(h, hes_now(), &page, &err);
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
    double now = hes_now();
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
static void hes_frozen_round(hes_server_t *s, struct hes_frozen *f, int64_t now) {
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

static void hes_read_batch(hes_server_t *s, const hes_item_t *item, size_t first, size_t n) {
  for (size_t i = 0; i < n; i++) {
    s->batch_index[i] = (uint32_t)(first + i);
    s->batch_meters[i] = hes_meters_at(s->meters, (uint32_t)(first + i));
  }
  hes_api_plan_t plan;
  hes_api_error_t err;
  double now = hes_now();
  hes_plans_request_begin(s->plans);
  atomic_fetch_add(&s->count.http, 1);
  hes_api_result_t r =
      hes_api_read_single(s->api, now, s->batch_meters, n, item->cgcode, &plan, &err);
  if (r != HES_API_OK) {
    hes_plans_request_end(s->plans);
    atomic_fetch_add(&s->count.http_failed, 1);
    char what[128];
    snprintf(what, sizeof(what), "%s for %zu meter(s) from %s", item->name, n, s->batch_meters[0]);
    hes_log_api_error(s, &err, what);
    return;
  }
  hes_parked_t *parked = NULL;
  int ar = hes_plans_add(s->plans, plan.plan_id, (uint32_t)item->cgcode, NULL, s->batch_index, n,
                         now + s->plan_timeout, &parked);
  hes_plans_request_end(s->plans);
  if (ar != 0) {
    HES_LOG_LIMITED(&s->log_http, LOG_ERR, "Server \"%s\": readSingle %s: cannot track plan %s: %s",
                    s->name, item->name, plan.plan_id,
                    ar == EEXIST ? "planId reused" : STRERROR(ar));
    return;
  }
  for (hes_parked_t *p = parked; p != NULL; p = p->next)
    hes_handle_push(s, s->read_parser, p->payload, p->len, true);
  hes_parked_free(parked);
}

static int hes_read(user_data_t *ud) {
  hes_server_t *s = ud->data;
  hes_missing_ctx_t mctx = {.server = s};
  hes_plans_expire(s->plans, hes_now(), hes_missing_cb, &mctx);

  bool ready = hes_mqtt_ready(s->mqtt);
  if (!ready && !s->ready_once)
    ready = hes_mqtt_wait_ready(s->mqtt, HES_READY_WAIT);
  if (!ready) {
    /* Without the subscription the results would be lost: skip the round, not the values
     * of later ones. Returning an error would make collectd back the callback off. */
    HES_LOG_LIMITED(&s->log_http, LOG_WARNING,
                    "Server \"%s\": MQTT broker %s:%d not connected; skipping this round", s->name,
                    s->mqtt_host, s->mqtt_port);
    hes_dispatch_self(s);
    return 0;
  }
  s->ready_once = true;

  hes_api_error_t err;
  uint64_t sent = hes_api_requests(s->api);
  hes_api_result_t tr = hes_api_token(s->api, hes_now(), &err);
  atomic_fetch_add(&s->count.http, hes_api_requests(s->api) - sent);
  if (tr != HES_API_OK) {
    atomic_fetch_add(&s->count.http_failed, 1);
    hes_log_api_error(s, &err, "cannot get a token");
    hes_dispatch_self(s);
    return 0;
  }

  size_t meters = hes_meters_count(s->meters);
  for (size_t i = 0; i < s->items_num; i++)
    for (size_t first = 0; first < meters; first += s->batch_size)
      hes_read_batch(s, s->items[i], first,
                     meters - first < s->batch_size ? meters - first : s->batch_size);

  for (size_t i = 0; i < s->frozen_num; i++)
    hes_frozen_dispatch(s, &s->frozen[i]);
  double now = hes_now();
  if (s->frozen_num > 0 && (s->frozen_last == 0 || now - s->frozen_last >= s->retry_interval)) {
    s->frozen_last = now;
    for (size_t i = 0; i < s->frozen_num; i++)
      hes_frozen_round(s, &s->frozen[i], (int64_t)now);
  }
  hes_dispatch_self(s);
  return 0;
}

/* ---------------------------------------------------------------------------------------
 * relay: notifications in, breaker commands out */

static double hes_unix_now(void) {
  return CDTIME_T_TO_DOUBLE(cdtime());
}

static void hes_relay_decision(void *ctx, hes_relay_decision_t d, const char *rule,
                               const char *meter, hes_relay_action_t action) {
  hes_relay_conf_t *rc = ctx;
  hes_server_t *s = rc->server;
  if (d == HES_RELAY_QUEUED || d == HES_RELAY_SKIP_NO_RULE)
    return;
  atomic_fetch_add(&s->count.relay_skipped, 1);
  const char *what = action != 0 ? hes_relay_action_string(action) : "act";
  switch (d) {
  case HES_RELAY_SKIP_HOLDOFF:
    INFO(HES_PLUGIN " plugin: relay: rule \"%s\": not sending %s to meter %s: it got a command "
                    "less than Holdoff (%.0f s) ago.",
         rule, what, meter, rc->holdoff);
    break;
  case HES_RELAY_SKIP_RATE:
  case HES_RELAY_SKIP_QUEUE_FULL:
  case HES_RELAY_SKIP_UNKNOWN_METER:
    HES_LOG_LIMITED(&rc->log_skip, LOG_WARNING,
                    "relay: rule \"%s\": not sending %s to meter %s: %s", rule != NULL ? rule : "-",
                    what, meter != NULL ? meter : "-",
                    d == HES_RELAY_SKIP_RATE         ? "over MaxPerMinute; dropped, not queued"
                    : d == HES_RELAY_SKIP_QUEUE_FULL ? "the command queue is full; dropped"
                                                     : "not one of the configured meters");
    break;
  default:
    /* Missing-value, first-OKAY and own notifications: by design, counted only. */
    break;
  }
}

static int hes_notification(const notification_t *n, user_data_t *ud) {
  (void)ud;
  hes_relay_conf_t *rc = hes_relay_conf;
  if (rc == NULL || rc->relay == NULL)
    return 0;
  char value[64] = "";
  char threshold[128] = "";
  bool has_value = false;
  size_t used = 0;
  for (const notification_meta_t *m = n->meta; m != NULL; m = m->next) {
    if (strcmp(m->name, "CurrentValue") == 0) {
      /* A double from the threshold plugin, a string from unixsock's PUTNOTIF. */
      if (m->type == NM_TYPE_DOUBLE) {
        snprintf(value, sizeof(value), "%f", m->nm_value.nm_double);
        has_value = !isnan(m->nm_value.nm_double);
      } else if (m->type == NM_TYPE_STRING && m->nm_value.nm_string != NULL) {
        sstrncpy(value, m->nm_value.nm_string, sizeof(value));
        has_value = value[0] != '\0';
      }
    } else if (m->type == NM_TYPE_DOUBLE && !isnan(m->nm_value.nm_double) &&
               (strcmp(m->name, "FailureMax") == 0 || strcmp(m->name, "FailureMin") == 0 ||
                strcmp(m->name, "WarningMax") == 0 || strcmp(m->name, "WarningMin") == 0) &&
               used < sizeof(threshold)) {
      int w = snprintf(threshold + used, sizeof(threshold) - used, "%s%s %g", used > 0 ? ", " : "",
                       m->name, m->nm_value.nm_double);
      if (w > 0)
        used += (size_t)w;
    }
  }
  hes_relay_event_t ev = {
      .severity = n->severity,
      .time = CDTIME_T_TO_DOUBLE(n->time),
      .host = n->host,
      .plugin = n->plugin,
      .plugin_instance = n->plugin_instance,
      .type = n->type,
      .type_instance = n->type_instance,
      .message = n->message,
      .has_value = has_value,
      .value_text = value,
      .threshold_text = threshold,
  };
  hes_relay_submit(rc->relay, &ev, hes_unix_now(), hes_relay_decision, rc);
  return 0;
}

static void hes_relay_send(hes_relay_conf_t *rc, const hes_relay_cmd_t *cmd) {
  hes_server_t *s = rc->server;
  const char *action = hes_relay_action_string(cmd->action);
  if (cmd->dry_run) {
    INFO(HES_PLUGIN " plugin: relay audit: rule \"%s\" meter %s action %s value %s threshold "
                    "%s planId - outcome dry run: nothing sent",
         cmd->rule, cmd->meter, action, cmd->value_text,
         cmd->threshold_text[0] != '\0' ? cmd->threshold_text : "-");
    hes_relay_notify(cmd, NOTIF_OKAY, NULL, "dry run, nothing sent");
    return;
  }
  const char *meters[1] = {cmd->meter};
  uint32_t index = cmd->meter_index;
  hes_api_plan_t plan;
  hes_api_error_t err;
  double now = hes_now();
  hes_plans_request_begin(s->plans);
  uint64_t sent = hes_api_requests(rc->api);
  hes_api_result_t r = hes_api_relay(rc->api, now, meters, 1, (int)cmd->action, &plan, &err);
  atomic_fetch_add(&s->count.http, hes_api_requests(rc->api) - sent);
  if (r != HES_API_OK) {
    hes_plans_request_end(s->plans);
    atomic_fetch_add(&s->count.http_failed, 1);
    char why[HES_API_MSG_MAX + 64];
    if (err.kind == HES_API_EHES)
      snprintf(why, sizeof(why), "HES code %d: %s", err.code, err.msg);
    else
      snprintf(why, sizeof(why), "%s: %s", hes_api_result_string(err.kind), err.msg);
    INFO(HES_PLUGIN " plugin: relay audit: rule \"%s\" meter %s action %s value %s threshold "
                    "%s planId - outcome FAILURE: not sent: %s",
         cmd->rule, cmd->meter, action, cmd->value_text,
         cmd->threshold_text[0] != '\0' ? cmd->threshold_text : "-", why);
    hes_relay_notify(cmd, NOTIF_FAILURE, NULL, "the command could not be sent");
    return;
  }
  atomic_fetch_add(&s->count.relay_sent, 1);
  /* Registered as outstanding before the plan, so a push that arrives at once finds it. */
  hes_relay_sent(rc->relay, cmd, plan.plan_id);
  INFO(HES_PLUGIN " plugin: relay audit: rule \"%s\" meter %s action %s value %s threshold %s "
                  "planId %s outcome sent, waiting for the result",
       cmd->rule, cmd->meter, action, cmd->value_text,
       cmd->threshold_text[0] != '\0' ? cmd->threshold_text : "-", plan.plan_id);
  hes_parked_t *parked = NULL;
  int ar = hes_plans_add(s->plans, plan.plan_id, HES_TAG_RELAY | (uint32_t)cmd->action, NULL,
                         &index, 1, now + s->plan_timeout, &parked);
  hes_plans_request_end(s->plans);
  if (ar != 0) {
    hes_relay_outcome(plan.plan_id, cmd->meter, false, "the plan could not be tracked");
    return;
  }
  for (hes_parked_t *p = parked; p != NULL; p = p->next)
    hes_handle_push(s, rc->parser, p->payload, p->len, true);
  hes_parked_free(parked);
}

static void *hes_relay_thread(void *arg) {
  hes_relay_conf_t *rc = arg;
  hes_relay_cmd_t cmd;
  for (;;) {
    if (hes_relay_next(rc->relay, 1.0, &cmd))
      hes_relay_send(rc, &cmd);
    else if (!hes_initialised)
      break;
  }
  return NULL;
}

/* An HTTP client for the server: the read thread and the relay thread each have one. */
static hes_api_t *hes_server_api_new(const hes_server_t *s, hes_api_error_t *err) {
  const hes_api_config_t ac = {
      .url = s->url,
      .tenant_code = s->tenant,
      .username = s->username,
      .password = s->password,
      .secret_key = s->secret_key,
      .verify_peer = s->verify_peer,
      .verify_host = s->verify_host,
      .ca_cert = s->ca_cert,
      .timeout_ms = s->timeout_ms,
  };
  return hes_api_new(&ac, err);
}

static int hes_relay_start(hes_relay_conf_t *rc) {
  hes_server_t *s = rc->server;
  char path[PATH_MAX];
  snprintf(path, sizeof(path), "%s/hes-relay-%s.state", hes_state_dir_path(), s->name);
  char err[512] = "";
  hes_relay_config_t cfg = {
      .holdoff = rc->holdoff,
      .max_per_minute = rc->max_per_minute,
      .dry_run = rc->dry_run,
      .queue_max = 64,
      .state_path = path,
      .meters = s->meters,
  };
  rc->relay = hes_relay_new(&cfg, hes_unix_now(), err, sizeof(err));
  if (rc->relay == NULL) {
    ERROR(HES_PLUGIN " plugin: <Relay>: %s", err);
    return -1;
  }
  if (err[0] != '\0')
    WARNING(HES_PLUGIN " plugin: <Relay>: %s", err);
  for (size_t i = 0; i < rc->rules_num; i++) {
    const hes_rule_conf_t *r = &rc->rules[i];
    hes_relay_rule_t rule = {
        .name = r->name,
        .plugin = r->plugin,
        .type = r->type,
        .type_instance = r->type_instance,
        .severity = r->severity,
        .action = r->action,
        .meters = (const char *const *)r->meters,
        .meters_num = r->meters_num,
    };
    if (hes_relay_add_rule(rc->relay, &rule, err, sizeof(err)) != 0) {
      ERROR(HES_PLUGIN " plugin: <Relay> <Rule \"%s\">: %s", r->name, err);
      return -1;
    }
  }
  hes_api_error_t aerr;
  rc->api = hes_server_api_new(s, &aerr);
  rc->parser = hes_push_parser_new(0);
  if (rc->api == NULL || rc->parser == NULL) {
    ERROR(HES_PLUGIN " plugin: <Relay>: cannot set up the HTTP client: %s",
          rc->api == NULL ? aerr.msg : "out of memory");
    return -1;
  }
  int status = plugin_thread_create(&rc->thread, hes_relay_thread, rc, "hes relay");
  if (status != 0) {
    ERROR(HES_PLUGIN " plugin: <Relay>: cannot start the relay thread: %s", STRERROR(status));
    return -1;
  }
  rc->thread_started = true;
  status = plugin_register_notification(HES_PLUGIN, hes_notification, NULL);
  if (status != 0) {
    ERROR(HES_PLUGIN " plugin: <Relay>: cannot register the notification callback.");
    return -1;
  }
  INFO(HES_PLUGIN " plugin: <Relay>: %zu rule(s) for Server \"%s\", Holdoff %.0f s, "
                  "MaxPerMinute %d%s, state in %s.",
       rc->rules_num, s->name, rc->holdoff, rc->max_per_minute,
       rc->dry_run ? ", DRY RUN: nothing will be sent" : "", path);
  return 0;
}

/* ---------------------------------------------------------------------------------------
 * init and shutdown */

static int hes_check_type(const char *type) {
  if (plugin_get_ds(type) != NULL)
    return 0;
  ERROR(HES_PLUGIN " plugin: the type \"%s\" is not defined. Load the plugin's types next to "
                   "collectd's: TypesDB \"/usr/share/collectd/types.db\" "
                   "\"/usr/share/collectd-hes/hes-types.db\"",
        type);
  return -1;
}

static int hes_server_start(hes_server_t *s) {
  hes_api_error_t err;
  s->api = hes_server_api_new(s, &err);
  if (s->api == NULL) {
    ERROR(HES_PLUGIN " plugin: Server \"%s\": cannot set up the HTTP client: %s", s->name, err.msg);
    return -1;
  }
  s->read_parser = hes_push_parser_new(0);
  s->mqtt_parser = hes_push_parser_new(0);
  s->plans = hes_plans_new(NULL);
  s->batch_meters = calloc(s->batch_size, sizeof(*s->batch_meters));
  s->batch_index = calloc(s->batch_size, sizeof(*s->batch_index));
  if (s->read_parser == NULL || s->mqtt_parser == NULL || s->plans == NULL ||
      s->batch_meters == NULL || s->batch_index == NULL) {
    ERROR(HES_PLUGIN " plugin: Server \"%s\": out of memory.", s->name);
    return -1;
  }
  for (size_t i = 0; i < s->frozen_num; i++) {
    struct hes_frozen *f = &s->frozen[i];
    char path[PATH_MAX];
    char why[512] = "";
    snprintf(path, sizeof(path), "%s/hes-backfill-%s-%s.state", hes_state_dir_path(), s->name,
             f->item->period);
    hes_backfill_config_t bc = {
        .server = s->name,
        .kind = (hes_backfill_kind_t)f->item->cgcode,
        .meters = s->meters,
        .tz = s->tz,
        .periods = (unsigned)s->backfill_periods,
        .give_up = (int64_t)s->give_up_after,
        .hold_gaps = true,
        .state_path = path,
    };
    f->backfill = hes_backfill_new(&bc, why, sizeof(why));
    if (f->backfill == NULL) {
      ERROR(HES_PLUGIN " plugin: Server \"%s\": %s: %s", s->name, f->item->name, why);
      return -1;
    }
    if (why[0] != '\0')
      WARNING(HES_PLUGIN " plugin: Server \"%s\": %s: %s", s->name, f->item->name, why);
  }

  if (s->mqtt_client_id == NULL) {
    char id[256];
    snprintf(id, sizeof(id), "collectd-hes-%s-%s", hostname_g, s->name);
    s->mqtt_client_id = strdup(id);
    if (s->mqtt_client_id == NULL)
      return -1;
  }
  snprintf(s->topic_filter, sizeof(s->topic_filter), "/%s/#", s->tenant);
  char merr[256] = "";
  hes_mqtt_config_t mc = {
      .host = s->mqtt_host,
      .port = s->mqtt_port,
      .user = s->mqtt_user,
      .password = s->mqtt_password,
      .client_id = s->mqtt_client_id,
      .qos = s->mqtt_qos,
      .clean_session = s->mqtt_clean_session,
      .keepalive = s->mqtt_keepalive,
      .tls = s->mqtt_tls,
      .ca_cert = s->mqtt_ca_cert,
      .cert_file = s->mqtt_cert_file,
      .key_file = s->mqtt_key_file,
      .tls_protocol = s->mqtt_tls_protocol,
      .topic = s->topic_filter,
      .on_message = hes_mqtt_on_message,
      .on_state = hes_mqtt_on_state,
      .ctx = s,
  };
  s->mqtt = hes_mqtt_new(&mc, merr, sizeof(merr));
  if (s->mqtt == NULL) {
    ERROR(HES_PLUGIN " plugin: Server \"%s\": <MQTT>: %s", s->name, merr);
    return -1;
  }
  if (s->mqtt_port == 0)
    s->mqtt_port = (s->mqtt_tls || s->mqtt_ca_cert || s->mqtt_cert_file) ? 8883 : 1883;
  int status = plugin_thread_create(&s->mqtt_thread, hes_mqtt_thread, s, "hes mqtt");
  if (status != 0) {
    ERROR(HES_PLUGIN " plugin: Server \"%s\": cannot start the MQTT thread: %s", s->name,
          STRERROR(status));
    return -1;
  }
  s->mqtt_thread_started = true;

  char cb_name[DATA_MAX_NAME_LEN];
  snprintf(cb_name, sizeof(cb_name), HES_PLUGIN "-%s", s->name);
  /* No free_func: collectd frees read user data before the shutdown callback runs, while
   * the MQTT thread still uses the server. hes_shutdown frees it. */
  status = plugin_register_complex_read(HES_PLUGIN, cb_name, hes_read, s->interval,
                                        &(user_data_t){.data = s});
  if (status != 0) {
    ERROR(HES_PLUGIN " plugin: Server \"%s\": cannot register the read callback.", s->name);
    return -1;
  }
  INFO(HES_PLUGIN " plugin: Server \"%s\": %zu meter(s) x %zu item(s) every %.3f s, batches of "
                  "%zu, HES %s, broker %s:%d.",
       s->name, hes_meters_count(s->meters), s->items_num, CDTIME_T_TO_DOUBLE(s->interval),
       s->batch_size, s->url, s->mqtt_host, s->mqtt_port);
  return 0;
}

static int hes_init(void) {
  if (hes_initialised)
    return 0;
  /* Types are complete only now (a TypesDB line may follow the <Plugin> block). */
  int status = 0;
  static const char *self_types[] = {"total_requests", "gauge", "total_values", "total_operations"};
  for (size_t i = 0; i < STATIC_ARRAY_SIZE(self_types); i++)
    status |= hes_check_type(self_types[i]);
  for (hes_server_t *s = hes_servers; s != NULL; s = s->next) {
    for (size_t i = 0; i < s->items_num; i++)
      status |= hes_check_type(s->items[i]->type);
    if (s->frozen_num > 0) {
      static const int channels[] = {5069, 5074, 5084, 5089, 5099};
      for (size_t i = 0; i < STATIC_ARRAY_SIZE(channels); i++)
        status |= hes_check_type(hes_item_by_cgcode(channels[i])->type);
    }
  }
  if (status != 0)
    return -1;
  hes_initialised = true;
  for (hes_server_t *s = hes_servers; s != NULL; s = s->next) {
    if (hes_server_start(s) != 0) {
      plugin_unregister_read_group(HES_PLUGIN);
      return -1;
    }
  }
  if (hes_relay_conf != NULL && hes_relay_start(hes_relay_conf) != 0) {
    plugin_unregister_read_group(HES_PLUGIN);
    return -1;
  }
  return 0;
}

static int hes_shutdown(void) {
  hes_initialised = false;
  if (hes_relay_conf != NULL) {
    plugin_unregister_notification(HES_PLUGIN);
    if (hes_relay_conf->thread_started) {
      hes_relay_stop(hes_relay_conf->relay);
      pthread_join(hes_relay_conf->thread, NULL);
    }
  }
  for (hes_server_t *s = hes_servers; s != NULL; s = s->next)
    if (s->mqtt_thread_started)
      hes_mqtt_stop(s->mqtt);
  while (hes_servers != NULL) {
    hes_server_t *s = hes_servers;
    hes_servers = s->next;
    if (s->mqtt_thread_started)
      pthread_join(s->mqtt_thread, NULL);
    hes_server_free(s);
  }
  hes_relay_conf_free(hes_relay_conf);
  hes_relay_conf = NULL;
  free(hes_state_dir);
  hes_state_dir = NULL;
  return 0;
}

void module_register(void);
void module_register(void) {
  plugin_register_complex_config(HES_PLUGIN, hes_config);
  plugin_register_init(HES_PLUGIN, hes_init);
  plugin_register_shutdown(HES_PLUGIN, hes_shutdown);
}
