/* config.c: the <Plugin hes> block of collectd's configuration, checked and turned into
 * the list of servers (hes_servers) and the <Relay> block (hes_relay_conf).
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
  for (size_t i = 0; i < s->frozen_num; i++)
    hes_backfill_free(s->frozen[i].backfill);
  hes_tz_free(s->tz);
  free(s->time_zone);
  hes_meters_free(s->meters);
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

int hes_config(oconfig_item_t *ci) {
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
