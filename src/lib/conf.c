/* conf: the <Plugin hes> block's rules, for the plugin and hesctl alike (see the header).
 *
 * keys[] below is the one table of keys. A key is looked up by its block and name; its type
 * says how its values are read and where they go (an offset into the block's struct); min, max
 * and def are its range and default. Rows marked derived get their default in
 * conf__server_finish, from the keys the user wrote, and that is also where the cross-checks
 * are: a contradiction between two keys the user wrote is refused there with the fix named. */
#include "config.h"

#include "conf.h"

#include "backfill.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef enum { B_PLUGIN, B_SERVER, B_MQTT, B_RELAY, B_RULE } conf_block_t;

typedef enum {
  T_STRING,     /* one string; a whole number is taken as its digits (TenantCode 1000000067) */
  T_BOOL,       /* true or false */
  T_INT,        /* a whole number in [min, max]; quoted is fine ("1883") */
  T_NUMBER,     /* a number in [min, max]; quoted is fine */
  T_METERS,     /* Meter "m1" "m2" ... into the server's meters */
  T_METER_FILE, /* MeterFile "path": its meters, and the path kept */
  T_DCUS,       /* DCU "d1" "d2" ... */
  T_ITEMS,      /* Item "name" cgcode ... */
  T_SEVERITY,   /* failure | warning | okay */
  T_ACTION,     /* open | close */
  T_RULE_METERS,
  T_BLOCK, /* <MQTT>, <Server>, <Relay>, <Rule> */
} conf_type_t;

typedef struct {
  conf_block_t block;
  const char *key;
  conf_type_t type;
  size_t offset;
  double min, max, def;
  bool derived; /* default worked out from other keys, in conf__server_finish */
} conf_key_t;

#define DAY     86400.0
#define SRV(f)  offsetof(hes_conf_server_t, f)
#define RLY(f)  offsetof(hes_conf_relay_t, f)
#define RULE(f) offsetof(hes_conf_rule_t, f)
#define PLG(f)  offsetof(hes_conf_t, f)
#define NONE    0

/* Every key of the <Plugin hes> block. Order within a block is the order of the docs. */
static const conf_key_t keys[] = {
    {B_PLUGIN, "Server", T_BLOCK, NONE, 0, 0, 0, false},
    {B_PLUGIN, "StateDir", T_STRING, PLG(state_dir), 0, 0, 0, false},
    {B_PLUGIN, "Relay", T_BLOCK, NONE, 0, 0, 0, false},

    {B_SERVER, "URL", T_STRING, SRV(url), 0, 0, 0, false},
    {B_SERVER, "TenantCode", T_STRING, SRV(tenant), 0, 0, 0, false},
    {B_SERVER, "Username", T_STRING, SRV(username), 0, 0, 0, false},
    {B_SERVER, "Password", T_STRING, SRV(password), 0, 0, 0, false},
    {B_SERVER, "SecretKey", T_STRING, SRV(secret_key), 0, 0, 0, false},
    {B_SERVER, "VerifyPeer", T_BOOL, SRV(verify_peer), 0, 0, 1, false},
    {B_SERVER, "VerifyHost", T_BOOL, SRV(verify_host), 0, 0, 1, false},
    {B_SERVER, "CACert", T_STRING, SRV(ca_cert), 0, 0, 0, false},
    {B_SERVER, "Timeout", T_NUMBER, SRV(timeout_ms), 100, 600000, 10000, true},
    {B_SERVER, "MQTT", T_BLOCK, NONE, 0, 0, 0, false},
    {B_SERVER, "Meter", T_METERS, NONE, 0, 0, 0, false},
    {B_SERVER, "MeterFile", T_METER_FILE, NONE, 0, 0, 0, false},
    {B_SERVER, "DCU", T_DCUS, NONE, 0, 0, 0, false},
    {B_SERVER, "DCURefresh", T_NUMBER, SRV(dcu_refresh), 1, 31 * DAY, 3600, false},
    {B_SERVER, "Item", T_ITEMS, NONE, 0, 0, 0, false},
    {B_SERVER, "BatchSize", T_INT, SRV(batch_size), 1, HES_CONF_BATCH_MAX, 100, false},
    {B_SERVER, "Interval", T_NUMBER, SRV(interval), 1, 31 * DAY, 60, true},
    {B_SERVER, "PlanTimeout", T_NUMBER, SRV(plan_timeout), 1, 7 * DAY, 300, true},
    {B_SERVER, "Spread", T_NUMBER, SRV(spread), 0, 0.9, 0.5, false},
    {B_SERVER, "BackfillPeriods", T_INT, SRV(backfill_periods), 1, 4096, 7, true},
    {B_SERVER, "RetryInterval", T_NUMBER, SRV(retry_interval), 1, 31 * DAY, 300, true},
    {B_SERVER, "GiveUpAfter", T_NUMBER, SRV(give_up_after), 60, 3660 * DAY, 0, false},
    {B_SERVER, "TimeZone", T_STRING, SRV(time_zone), 0, 0, 0, false},

    {B_MQTT, "Host", T_STRING, SRV(mqtt_host), 0, 0, 0, false},
    {B_MQTT, "Port", T_INT, SRV(mqtt_port), 1, 65535, 0, true},
    {B_MQTT, "User", T_STRING, SRV(mqtt_user), 0, 0, 0, false},
    {B_MQTT, "Password", T_STRING, SRV(mqtt_password), 0, 0, 0, false},
    {B_MQTT, "ClientId", T_STRING, SRV(mqtt_client_id), 0, 0, 0, false},
    {B_MQTT, "QoS", T_INT, SRV(mqtt_qos), 0, 2, 1, false},
    {B_MQTT, "CleanSession", T_BOOL, SRV(mqtt_clean_session), 0, 0, 0, false},
    {B_MQTT, "KeepAlive", T_INT, SRV(mqtt_keepalive), 5, 65535, 30, false},
    {B_MQTT, "TLS", T_BOOL, SRV(mqtt_tls), 0, 0, 0, false},
    {B_MQTT, "CACert", T_STRING, SRV(mqtt_ca_cert), 0, 0, 0, false},
    {B_MQTT, "CertificateFile", T_STRING, SRV(mqtt_cert_file), 0, 0, 0, false},
    {B_MQTT, "CertificateKeyFile", T_STRING, SRV(mqtt_key_file), 0, 0, 0, false},
    {B_MQTT, "TLSProtocol", T_STRING, SRV(mqtt_tls_protocol), 0, 0, 0, false},

    {B_RELAY, "Server", T_STRING, RLY(server_name), 0, 0, 0, false},
    {B_RELAY, "Holdoff", T_NUMBER, RLY(holdoff), 0, 365 * DAY, 300, false},
    {B_RELAY, "MaxPerMinute", T_INT, RLY(max_per_minute), 1, 100000, 10, false},
    {B_RELAY, "DryRun", T_BOOL, RLY(dry_run), 0, 0, 0, false},
    {B_RELAY, "Rule", T_BLOCK, NONE, 0, 0, 0, false},

    {B_RULE, "Plugin", T_STRING, RULE(plugin), 0, 0, 0, false},
    {B_RULE, "Type", T_STRING, RULE(type), 0, 0, 0, false},
    {B_RULE, "TypeInstance", T_STRING, RULE(type_instance), 0, 0, 0, false},
    {B_RULE, "Severity", T_SEVERITY, RULE(severity), 0, 0, 0, false},
    {B_RULE, "Action", T_ACTION, RULE(action), 0, 0, 0, false},
    {B_RULE, "Meter", T_RULE_METERS, NONE, 0, 0, 0, false},
};
#define KEYS_NUM (sizeof(keys) / sizeof(keys[0]))
_Static_assert(KEYS_NUM <= 64, "the set masks hold one bit per key");

typedef struct {
  char *err;
  size_t errlen;
  const hes_conf_node_t **where;
} conf_ctx_t;

static int conf__fail(conf_ctx_t *c, const hes_conf_node_t *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int conf__fail(conf_ctx_t *c, const hes_conf_node_t *at, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->err, c->errlen, fmt, ap);
  va_end(ap);
  if (c->where != NULL)
    *c->where = at;
  return -1;
}

static size_t conf__row(conf_block_t block, const char *key) {
  for (size_t i = 0; i < KEYS_NUM; i++)
    if (keys[i].block == block && strcasecmp(keys[i].key, key) == 0)
      return i;
  return KEYS_NUM;
}

static bool conf__is_set(uint64_t set, conf_block_t block, const char *key) {
  return (set >> conf__row(block, key)) & 1u;
}

/* A value as the user wrote it, for messages. */
static const char *conf__value_text(const hes_conf_value_t *v, char *buf, size_t len) {
  if (v->type == HES_CONF_NUMBER)
    snprintf(buf, len, "%.15g", v->n);
  else if (v->type == HES_CONF_BOOL)
    snprintf(buf, len, "%s", v->b ? "true" : "false");
  else
    snprintf(buf, len, "\"%s\"", v->s != NULL ? v->s : "");
  return buf;
}

/* "<block>: option "Key" <why>, got <value>." Credentials never reach a message. */
static int conf__bad(conf_ctx_t *c, const hes_conf_node_t *ci, const char *block, const char *why) {
  char value[256] = "(none)";
  bool secret = strcasecmp(ci->key, "Password") == 0 || strcasecmp(ci->key, "SecretKey") == 0;
  if (ci->nvalues >= 1 && secret)
    snprintf(value, sizeof(value), "(a value, not shown)");
  else if (ci->nvalues >= 1)
    conf__value_text(&ci->values[0], value, sizeof(value));
  return conf__fail(c, ci, "%s: option \"%s\" %s, got %s%s.", block, ci->key, why, value,
                    ci->nvalues > 1 ? " and more" : "");
}

/* A value as a string: a string, or a whole number written without quotes. */
static bool conf__text(const hes_conf_value_t *v, char *buf, size_t len, const char **out) {
  if (v->type == HES_CONF_STRING) {
    *out = v->s;
    return true;
  }
  if (v->type == HES_CONF_NUMBER && v->n >= 0 && v->n < 9007199254740992.0 && floor(v->n) == v->n) {
    snprintf(buf, len, "%.0f", v->n);
    *out = buf;
    return true;
  }
  return false;
}

static int conf__string(conf_ctx_t *c, const hes_conf_node_t *ci, const char *block, char **out) {
  char buf[64];
  const char *text = NULL;
  if (ci->nvalues != 1 || !conf__text(&ci->values[0], buf, sizeof(buf), &text))
    return conf__bad(c, ci, block, "needs exactly one string argument");
  if (text[0] == '\0')
    return conf__bad(c, ci, block, "must not be empty");
  char *copy = strdup(text);
  if (copy == NULL)
    return conf__bad(c, ci, block, "could not be stored (out of memory)");
  free(*out);
  *out = copy;
  return 0;
}

static int conf__number(conf_ctx_t *c, const hes_conf_node_t *ci, const char *block,
                        const conf_key_t *k, double *out) {
  char why[128];
  snprintf(why, sizeof(why), "needs one number from %.15g to %.15g", k->min, k->max);
  if (ci->nvalues != 1)
    return conf__bad(c, ci, block, why);
  const hes_conf_value_t *v = &ci->values[0];
  double d;
  if (v->type == HES_CONF_NUMBER) {
    d = v->n;
  } else if (v->type == HES_CONF_STRING) {
    char *end = NULL;
    errno = 0;
    d = strtod(v->s, &end);
    if (errno != 0 || end == v->s || *end != '\0')
      return conf__bad(c, ci, block, why);
  } else {
    return conf__bad(c, ci, block, why);
  }
  if (!isfinite(d) || d < k->min || d > k->max)
    return conf__bad(c, ci, block, why);
  if (k->type == T_INT && floor(d) != d)
    return conf__bad(c, ci, block, "needs a whole number");
  *out = d;
  return 0;
}

static int conf__bool(conf_ctx_t *c, const hes_conf_node_t *ci, const char *block, bool *out) {
  if (ci->nvalues != 1 || ci->values[0].type != HES_CONF_BOOL)
    return conf__bad(c, ci, block, "needs exactly one boolean argument (true or false)");
  *out = ci->values[0].b;
  return 0;
}

static int conf__meter_fail(conf_ctx_t *c, const hes_conf_node_t *ci, const char *block,
                            const char *what, const char *meter, hes_meters_result_t r) {
  if (r == HES_METERS_EINVAL)
    return conf__fail(c, ci,
                      "%s: option \"%s\": \"%s\" is not a valid %s number (1 to %d characters of "
                      "0-9, A-Z, a-z, '_' and '-').",
                      block, ci->key, meter, what, HES_METER_MAX_LEN);
  if (r == HES_METERS_EDUPLICATE)
    return conf__fail(c, ci, "%s: option \"%s\": %s \"%s\" is listed twice.", block, ci->key, what,
                      meter);
  return conf__fail(c, ci, "%s: option \"%s\": could not store \"%s\" (out of memory).", block,
                    ci->key, meter);
}

/* Meter, and DCU (the same number rule, kept in a list of its own). */
static int conf__numbers(conf_ctx_t *c, const hes_conf_node_t *ci, const char *block,
                         hes_meters_t *meters, char ***list, size_t *num) {
  const char *what = list != NULL ? "DCU" : "meter";
  if (ci->nvalues < 1)
    return conf__bad(c, ci, block,
                     list != NULL ? "needs at least one DCU number"
                                  : "needs at least one meter number");
  for (size_t i = 0; i < ci->nvalues; i++) {
    char buf[64], value[128];
    const char *text = NULL;
    if (!conf__text(&ci->values[i], buf, sizeof(buf), &text))
      return conf__fail(c, ci, "%s: option \"%s\": %s is not a %s number.", block, ci->key,
                        conf__value_text(&ci->values[i], value, sizeof(value)), what);
    if (list == NULL) {
      hes_meters_result_t r = hes_meters_add(meters, text);
      if (r != HES_METERS_OK)
        return conf__meter_fail(c, ci, block, what, text, r);
      continue;
    }
    if (!hes_meter_is_valid(text))
      return conf__meter_fail(c, ci, block, what, text, HES_METERS_EINVAL);
    for (size_t j = 0; j < *num; j++)
      if (strcmp((*list)[j], text) == 0)
        return conf__meter_fail(c, ci, block, what, text, HES_METERS_EDUPLICATE);
    char **grown = realloc(*list, (*num + 1) * sizeof(*grown));
    char *copy = strdup(text);
    if (grown != NULL)
      *list = grown;
    if (grown == NULL || copy == NULL) {
      free(copy);
      return conf__meter_fail(c, ci, block, what, text, HES_METERS_ENOMEM);
    }
    (*list)[(*num)++] = copy;
  }
  return 0;
}

static int conf__meter_file(conf_ctx_t *c, const hes_conf_node_t *ci, const char *block,
                            hes_conf_server_t *s) {
  char *path = NULL;
  if (conf__string(c, ci, block, &path) != 0)
    return -1;
  size_t line = 0;
  errno = 0;
  hes_meters_result_t r = hes_meters_add_file(s->meters, path, &line);
  int status = 0;
  if (r == HES_METERS_EIO)
    status = conf__fail(c, ci, "%s: option \"MeterFile\": cannot read \"%s\": %s.", block, path,
                        strerror(errno));
  else if (r == HES_METERS_EINVAL)
    status = conf__fail(c, ci,
                        "%s: option \"MeterFile\": \"%s\" line %zu is not a valid meter number (1 "
                        "to %d characters of 0-9, A-Z, a-z, '_' and '-').",
                        block, path, line, HES_METER_MAX_LEN);
  else if (r == HES_METERS_EDUPLICATE)
    status = conf__fail(c, ci,
                        "%s: option \"MeterFile\": \"%s\" line %zu repeats a meter listed before.",
                        block, path, line);
  else if (r != HES_METERS_OK)
    status = conf__fail(c, ci, "%s: option \"MeterFile\": \"%s\": out of memory.", block, path);
  char **grown =
      status == 0 ? realloc(s->meter_files, (s->meter_files_num + 1) * sizeof(*grown)) : NULL;
  if (status == 0 && grown == NULL)
    status = conf__fail(c, ci, "%s: option \"MeterFile\": \"%s\": out of memory.", block, path);
  if (status != 0) {
    free(path);
    return -1;
  }
  s->meter_files = grown;
  s->meter_files[s->meter_files_num++] = path;
  return 0;
}

static int conf__items(conf_ctx_t *c, const hes_conf_node_t *ci, const char *block,
                       hes_conf_server_t *s) {
  if (ci->nvalues < 1)
    return conf__bad(c, ci, block, "needs at least one item name or cgcode");
  for (size_t i = 0; i < ci->nvalues; i++) {
    const hes_conf_value_t *v = &ci->values[i];
    char text[128];
    const hes_item_t *item = NULL;
    if (v->type == HES_CONF_STRING) {
      snprintf(text, sizeof(text), "%s", v->s);
      item = hes_item_parse(v->s);
    } else if (v->type == HES_CONF_NUMBER) {
      snprintf(text, sizeof(text), "%.15g", v->n);
      item = hes_item_parse(text);
    } else {
      snprintf(text, sizeof(text), "a boolean");
    }
    if (item == NULL)
      return conf__fail(c, ci,
                        "%s: option \"Item\": unknown item \"%s\" (use a name such as "
                        "\"voltageA\" or a cgcode such as 5050, see collectd-hes(5)).",
                        block, text);
    bool frozen = item->category == HES_ITEM_COMPOSITE;
    const hes_item_t **list = frozen ? s->frozen : s->items;
    size_t *num = frozen ? &s->frozen_num : &s->items_num;
    for (size_t j = 0; j < *num; j++)
      if (list[j] == item)
        return conf__fail(c, ci, "%s: option \"Item\": \"%s\" is listed twice.", block, text);
    if (*num >= (frozen ? 3 : HES_CONF_ITEMS_MAX))
      return conf__fail(c, ci, "%s: option \"Item\": more than %d items.", block,
                        HES_CONF_ITEMS_MAX);
    list[(*num)++] = item;
  }
  return 0;
}

static int conf__word(conf_ctx_t *c, const hes_conf_node_t *ci, const char *block,
                      const char *const *words, const int *codes, const char *why, int *out) {
  char *word = NULL;
  if (conf__string(c, ci, block, &word) != 0)
    return -1;
  for (size_t i = 0; words[i] != NULL; i++) {
    if (strcasecmp(word, words[i]) == 0) {
      *out = codes[i];
      free(word);
      return 0;
    }
  }
  free(word);
  return conf__bad(c, ci, block, why);
}

static int conf__rule_meters(conf_ctx_t *c, const hes_conf_node_t *ci, const char *block,
                             hes_conf_rule_t *r) {
  if (ci->nvalues < 1)
    return conf__bad(c, ci, block, "needs at least one meter number");
  for (size_t i = 0; i < ci->nvalues; i++) {
    hes_conf_node_t one = *ci;
    one.values = ci->values + i;
    one.nvalues = 1;
    char *meter = NULL;
    if (conf__string(c, &one, block, &meter) != 0) {
      if (c->where != NULL)
        *c->where = ci;
      return -1;
    }
    char **grown = realloc(r->meters, (r->meters_num + 1) * sizeof(*grown));
    if (grown == NULL) {
      free(meter);
      return conf__bad(c, ci, block, "could not be stored (out of memory)");
    }
    r->meters = grown;
    r->meters[r->meters_num++] = meter;
  }
  return 0;
}

/* Sets the table's plain defaults of a block's struct. */
static void conf__defaults(conf_block_t block, void *base) {
  for (size_t i = 0; i < KEYS_NUM; i++) {
    const conf_key_t *k = &keys[i];
    if (k->block != block || k->derived)
      continue;
    if (k->type == T_BOOL)
      *(bool *)((char *)base + k->offset) = k->def != 0;
    else if (k->type == T_INT)
      *(int *)((char *)base + k->offset) = (int)k->def;
    else if (k->type == T_NUMBER)
      *(double *)((char *)base + k->offset) = k->def;
  }
}

/* One option of a block whose struct is base; the special types are the caller's. Returns 0,
 * -1 on error, or 1 when the key is not this block's or needs the caller. */
static int conf__option(conf_ctx_t *c, const hes_conf_node_t *ci, conf_block_t block,
                        const char *block_text, void *base, uint64_t *set, const conf_key_t **kp) {
  size_t row = conf__row(block, ci->key);
  if (row == KEYS_NUM)
    return conf__fail(c, ci, "%s: unknown option \"%s\".", block_text, ci->key);
  const conf_key_t *k = &keys[row];
  *kp = k;
  *set |= UINT64_C(1) << row;
  void *field = (char *)base + k->offset;
  double d = 0;
  static const char *const severities[] = {"failure", "warning", "okay", NULL};
  static const int severity_codes[] = {HES_RELAY_FAILURE, HES_RELAY_WARNING, HES_RELAY_OKAY};
  static const char *const actions[] = {"open", "close", NULL};
  static const int action_codes[] = {HES_RELAY_OPEN, HES_RELAY_CLOSE};
  switch (k->type) {
  case T_STRING:
    return conf__string(c, ci, block_text, (char **)field);
  case T_BOOL:
    return conf__bool(c, ci, block_text, (bool *)field);
  case T_INT:
    if (conf__number(c, ci, block_text, k, &d) != 0)
      return -1;
    *(int *)field = (int)d;
    return 0;
  case T_NUMBER:
    return conf__number(c, ci, block_text, k, (double *)field);
  case T_SEVERITY:
    return conf__word(c, ci, block_text, severities, severity_codes,
                      "must be failure, warning or okay", (int *)field);
  case T_ACTION: {
    int a = 0;
    if (conf__word(c, ci, block_text, actions, action_codes, "must be open or close", &a) != 0)
      return -1;
    *(hes_relay_action_t *)field = (hes_relay_action_t)a;
    return 0;
  }
  default:
    return 1;
  }
}

static int conf__mqtt(conf_ctx_t *c, const hes_conf_node_t *b, hes_conf_server_t *s) {
  char block[256];
  snprintf(block, sizeof(block), "<MQTT> of Server \"%s\"", s->name);
  if (b->nvalues != 0)
    return conf__fail(c, b, "%s: the <MQTT> block takes no argument.", block);
  for (size_t i = 0; i < b->nchildren; i++) {
    const conf_key_t *k = NULL;
    if (conf__option(c, &b->children[i], B_MQTT, block, s, &s->set, &k) != 0)
      return -1;
  }
  if (s->mqtt_host == NULL)
    return conf__fail(c, NULL, "%s: option \"Host\" is required.", block);
  if ((s->mqtt_cert_file == NULL) != (s->mqtt_key_file == NULL))
    return conf__fail(
        c, NULL, "%s: options \"CertificateFile\" and \"CertificateKeyFile\" go together.", block);
  return 0;
}

int hes_conf_mqtt_port(int port, bool tls, const char *ca_cert, const char *cert_file) {
  if (port != 0)
    return port;
  return tls || ca_cert != NULL || cert_file != NULL ? 8883 : 1883;
}

/* The nominal length of the longest period among the server's frozen items. */
static double conf__longest_period(const hes_conf_server_t *s) {
  double longest = 0;
  for (size_t i = 0; i < s->frozen_num; i++) {
    int cg = s->frozen[i]->cgcode;
    double p = cg == 2 ? 31 * DAY : cg == 3 ? 900 : DAY;
    if (p > longest)
      longest = p;
  }
  return longest;
}

/* Derived defaults, then the cross-checks between keys the user wrote. */
static int conf__server_finish(conf_ctx_t *c, hes_conf_server_t *s, const char *block) {
  bool timeout_set = conf__is_set(s->set, B_SERVER, "Timeout");
  bool interval_set = conf__is_set(s->set, B_SERVER, "Interval");
  bool plan_set = conf__is_set(s->set, B_SERVER, "PlanTimeout");
  bool give_up_set = conf__is_set(s->set, B_SERVER, "GiveUpAfter");
  if (!interval_set)
    s->interval = timeout_set && s->timeout_ms >= 60000 ? floor(s->timeout_ms / 1000) + 1 : 60;
  if (!plan_set)
    s->plan_timeout = timeout_set ? fmax(300, ceil(2 * s->timeout_ms / 1000)) : 300;
  if (!timeout_set)
    s->timeout_ms = floor(fmin(10000, fmin(0.9 * s->interval, 0.9 * s->plan_timeout) * 1000));
  if (!conf__is_set(s->set, B_SERVER, "RetryInterval"))
    s->retry_interval = give_up_set ? fmin(300, floor(s->give_up_after / 2)) : 300;
  if (!conf__is_set(s->set, B_SERVER, "BackfillPeriods")) {
    s->backfill_periods = 7;
    double longest = conf__longest_period(s);
    if (give_up_set && longest > 0)
      s->backfill_periods = (int)fmax(1, fmin(7, floor(s->give_up_after / longest)));
  }
  if (!conf__is_set(s->set, B_MQTT, "Port"))
    s->mqtt_port = hes_conf_mqtt_port(0, s->mqtt_tls, s->mqtt_ca_cert, s->mqtt_cert_file);

  /* Only both written can disagree: each default above stays inside the others. */
  for (size_t i = 0; i < s->frozen_num && give_up_set; i++) {
    int64_t max = hes_backfill_give_up_max((hes_backfill_kind_t)s->frozen[i]->cgcode,
                                           (unsigned)s->backfill_periods);
    if (s->give_up_after > (double)max)
      return conf__fail(c, NULL,
                        "%s: option \"GiveUpAfter\" (%.15g s) is too long for \"%s\" with "
                        "BackfillPeriods %d: set GiveUpAfter to at most %lld.",
                        block, s->give_up_after, s->frozen[i]->name, s->backfill_periods,
                        (long long)max);
  }
  if (s->timeout_ms >= s->interval * 1000)
    return conf__fail(c, NULL,
                      "%s: option \"Timeout\" (%.15g ms) must be below the Interval (%.15g s): a "
                      "read round must not outlast its interval; set Timeout to at most %.15g or "
                      "Interval to at least %.15g.",
                      block, s->timeout_ms, s->interval, floor(0.9 * s->interval * 1000),
                      floor(s->timeout_ms / 1000) + 1);
  if (s->plan_timeout * 1000 <= s->timeout_ms)
    return conf__fail(c, NULL,
                      "%s: option \"PlanTimeout\" (%.15g s) must be longer than the HTTP Timeout "
                      "(%.15g ms); set PlanTimeout to at least %.15g or Timeout to at most %.15g.",
                      block, s->plan_timeout, s->timeout_ms, floor(s->timeout_ms / 1000) + 1,
                      floor(0.9 * s->plan_timeout * 1000));
  if (give_up_set && s->retry_interval >= s->give_up_after)
    return conf__fail(c, NULL,
                      "%s: option \"RetryInterval\" (%.15g s) must be below GiveUpAfter (%.15g "
                      "s): no missing meter would be asked again; set RetryInterval to at most "
                      "%.15g or GiveUpAfter to at least %.15g.",
                      block, s->retry_interval, s->give_up_after, floor(s->give_up_after / 2),
                      fmax(60, 2 * s->retry_interval));
  return 0;
}

static int conf__server_check(conf_ctx_t *c, hes_conf_server_t *s, const char *block,
                              bool have_mqtt) {
  static const struct {
    size_t offset;
    const char *key;
  } required[] = {
      {SRV(url), "URL"},           {SRV(tenant), "TenantCode"},    {SRV(username), "Username"},
      {SRV(password), "Password"}, {SRV(secret_key), "SecretKey"},
  };
  for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
    if (*(char **)((char *)s + required[i].offset) == NULL)
      return conf__fail(c, NULL, "%s: option \"%s\" is required.", block, required[i].key);
  if (!have_mqtt)
    return conf__fail(c, NULL, "%s: an <MQTT> block (the broker the HES pushes to) is required.",
                      block);
  if (hes_meters_count(s->meters) == 0 && s->dcus_num == 0)
    return conf__fail(c, NULL, "%s: at least one \"Meter\", \"MeterFile\" or \"DCU\" is required.",
                      block);
  if (s->items_num == 0 && s->frozen_num == 0)
    return conf__fail(c, NULL, "%s: at least one \"Item\" is required.", block);
  if (strncasecmp(s->url, "http://", 7) != 0 && strncasecmp(s->url, "https://", 8) != 0)
    return conf__fail(c, NULL,
                      "%s: option \"URL\" must start with http:// or https://, got \"%s\".", block,
                      s->url);
  if (strpbrk(s->tenant, "/+#") != NULL)
    return conf__fail(c, NULL,
                      "%s: option \"TenantCode\" must not contain '/', '+' or '#', got \"%s\".",
                      block, s->tenant);
  if (conf__server_finish(c, s, block) != 0)
    return -1;
  char why[256] = "";
  s->tz = hes_tz_load(s->time_zone, why, sizeof(why));
  if (s->tz == NULL)
    return conf__fail(c, NULL, "%s: option \"TimeZone\": %s.", block, why);
  if (hes_meters_seal(s->meters) != HES_METERS_OK)
    return conf__fail(c, NULL, "%s: out of memory indexing the meters.", block);
  return 0;
}

static int conf__server(conf_ctx_t *c, const hes_conf_node_t *ci, hes_conf_t *conf) {
  if (ci->nvalues != 1 || ci->values[0].type != HES_CONF_STRING || ci->values[0].s[0] == '\0')
    return conf__fail(c, ci, "a <Server> block needs exactly one name: <Server \"hes1\">.");
  hes_conf_server_t **tail = &conf->servers;
  for (; *tail != NULL; tail = &(*tail)->next)
    if (strcmp((*tail)->name, ci->values[0].s) == 0)
      return conf__fail(c, ci, "<Server \"%s\"> is defined twice.", ci->values[0].s);
  hes_conf_server_t *s = calloc(1, sizeof(*s));
  if (s == NULL || (s->name = strdup(ci->values[0].s)) == NULL ||
      (s->meters = hes_meters_new()) == NULL) {
    hes_conf_server_free(s);
    return conf__fail(c, ci, "out of memory.");
  }
  conf__defaults(B_SERVER, s);
  conf__defaults(B_MQTT, s);
  char block[256];
  snprintf(block, sizeof(block), "Server \"%s\"", s->name);
  bool have_mqtt = false;
  int status = 0;
  for (size_t i = 0; i < ci->nchildren && status == 0; i++) {
    const hes_conf_node_t *o = &ci->children[i];
    const conf_key_t *k = NULL;
    status = conf__option(c, o, B_SERVER, block, s, &s->set, &k);
    if (status != 1)
      continue;
    if (k->type == T_BLOCK) {
      status = conf__mqtt(c, o, s);
      have_mqtt = true;
    } else if (k->type == T_METERS) {
      status = conf__numbers(c, o, block, s->meters, NULL, NULL);
    } else if (k->type == T_DCUS) {
      status = conf__numbers(c, o, block, NULL, &s->dcus, &s->dcus_num);
    } else if (k->type == T_METER_FILE) {
      status = conf__meter_file(c, o, block, s);
    } else {
      status = conf__items(c, o, block, s);
    }
  }
  if (status == 0)
    status = conf__server_check(c, s, block, have_mqtt);
  if (status != 0) {
    hes_conf_server_free(s);
    return -1;
  }
  *tail = s;
  return 0;
}

static int conf__rule(conf_ctx_t *c, const hes_conf_node_t *ci, hes_conf_relay_t *rc) {
  if (ci->nvalues != 1 || ci->values[0].type != HES_CONF_STRING || ci->values[0].s[0] == '\0')
    return conf__fail(c, ci,
                      "<Relay>: a <Rule> block needs exactly one name: <Rule \"overvoltage\">.");
  if (rc->rules_num >= HES_CONF_RULES_MAX)
    return conf__fail(c, ci, "<Relay>: more than %d rules.", HES_CONF_RULES_MAX);
  hes_conf_rule_t *r = &rc->rules[rc->rules_num++];
  r->name = strdup(ci->values[0].s);
  if (r->name == NULL)
    return conf__fail(c, ci, "<Relay>: out of memory.");
  char block[256];
  snprintf(block, sizeof(block), "<Relay> <Rule \"%s\">", r->name);
  uint64_t set = 0;
  for (size_t i = 0; i < ci->nchildren; i++) {
    const conf_key_t *k = NULL;
    int status = conf__option(c, &ci->children[i], B_RULE, block, r, &set, &k);
    if (status == 1)
      status = conf__rule_meters(c, &ci->children[i], block, r);
    if (status != 0)
      return -1;
  }
  if (r->severity == 0)
    return conf__fail(c, ci, "%s: option \"Severity\" is required (failure, warning or okay).",
                      block);
  if (r->action == 0)
    return conf__fail(c, ci, "%s: option \"Action\" is required (open or close).", block);
  return 0;
}

static int conf__relay(conf_ctx_t *c, const hes_conf_node_t *ci, hes_conf_t *conf) {
  if (conf->relay != NULL)
    return conf__fail(c, ci, "only one <Relay> block is allowed.");
  hes_conf_relay_t *rc = calloc(1, sizeof(*rc));
  if (rc == NULL)
    return conf__fail(c, ci, "out of memory.");
  conf->relay = rc;
  conf__defaults(B_RELAY, rc);
  for (size_t i = 0; i < ci->nchildren; i++) {
    const conf_key_t *k = NULL;
    int status = conf__option(c, &ci->children[i], B_RELAY, "<Relay>", rc, &rc->set, &k);
    if (status == 1)
      status = conf__rule(c, &ci->children[i], rc);
    if (status != 0)
      return -1;
  }
  if (rc->rules_num == 0)
    return conf__fail(c, ci, "<Relay>: at least one <Rule> is required.");
  return 0;
}

/* The Relay's Server exists and the rules' meters are its meters. After every <Server>: the
 * blocks may come in any order. */
static int conf__relay_check(conf_ctx_t *c, hes_conf_t *conf) {
  hes_conf_relay_t *rc = conf->relay;
  const hes_conf_server_t *server = hes_conf_server(conf, rc->server_name);
  if (rc->server_name == NULL && server == NULL)
    return conf__fail(c, NULL,
                      "<Relay>: option \"Server\" is required when there is more than "
                      "one <Server>.");
  if (server == NULL)
    return conf__fail(c, NULL, "<Relay>: option \"Server\": there is no <Server \"%s\">.",
                      rc->server_name);
  if (rc->server_name == NULL && (rc->server_name = strdup(server->name)) == NULL)
    return conf__fail(c, NULL, "<Relay>: out of memory.");
  for (size_t i = 0; i < rc->rules_num; i++) {
    const hes_conf_rule_t *r = &rc->rules[i];
    for (size_t j = 0; j < r->meters_num; j++)
      if (hes_meters_find(server->meters, r->meters[j], strlen(r->meters[j])) == HES_METER_NONE)
        return conf__fail(c, NULL,
                          "<Relay> <Rule \"%s\">: option \"Meter\": \"%s\" is not a meter of "
                          "Server \"%s\": the plugin never commands a meter it does not read.",
                          r->name, r->meters[j], server->name);
  }
  return 0;
}

int hes_conf_load(const hes_conf_node_t *plugin, hes_conf_t *conf, char *err, size_t errlen,
                  const hes_conf_node_t **where) {
  conf_ctx_t c = {.err = err, .errlen = errlen, .where = where};
  if (where != NULL)
    *where = NULL;
  for (size_t i = 0; i < plugin->nchildren; i++) {
    const hes_conf_node_t *ci = &plugin->children[i];
    const conf_key_t *k = NULL;
    uint64_t set = 0;
    int status = conf__option(&c, ci, B_PLUGIN, "<Plugin hes>", conf, &set, &k);
    if (status == 1 && strcasecmp(k->key, "Server") == 0)
      status = conf__server(&c, ci, conf);
    else if (status == 1)
      status = conf__relay(&c, ci, conf);
    if (status != 0)
      return -1;
  }
  if (conf->servers == NULL)
    return conf__fail(&c, NULL, "<Plugin hes>: at least one <Server> block is required.");
  if (conf->relay != NULL && conf__relay_check(&c, conf) != 0)
    return -1;
  return 0;
}

const hes_conf_server_t *hes_conf_server(const hes_conf_t *conf, const char *name) {
  if (name == NULL)
    return conf->servers != NULL && conf->servers->next == NULL ? conf->servers : NULL;
  for (const hes_conf_server_t *s = conf->servers; s != NULL; s = s->next)
    if (strcmp(s->name, name) == 0)
      return s;
  return NULL;
}

static void conf__free_secret(char *s) {
  if (s != NULL)
    explicit_bzero(s, strlen(s));
  free(s);
}

void hes_conf_server_free(hes_conf_server_t *s) {
  if (s == NULL)
    return;
  char *strings[] = {s->name,          s->url,
                     s->tenant,        s->username,
                     s->ca_cert,       s->mqtt_host,
                     s->mqtt_user,     s->mqtt_client_id,
                     s->mqtt_ca_cert,  s->mqtt_cert_file,
                     s->mqtt_key_file, s->mqtt_tls_protocol,
                     s->time_zone};
  for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++)
    free(strings[i]);
  conf__free_secret(s->password);
  conf__free_secret(s->secret_key);
  conf__free_secret(s->mqtt_password);
  hes_meters_free(s->meters);
  for (size_t i = 0; i < s->meter_files_num; i++)
    free(s->meter_files[i]);
  free(s->meter_files);
  for (size_t i = 0; i < s->dcus_num; i++)
    free(s->dcus[i]);
  free(s->dcus);
  hes_tz_free(s->tz);
  free(s);
}

void hes_conf_relay_free(hes_conf_relay_t *rc) {
  if (rc == NULL)
    return;
  for (size_t i = 0; i < rc->rules_num; i++) {
    hes_conf_rule_t *r = &rc->rules[i];
    free(r->name);
    free(r->plugin);
    free(r->type);
    free(r->type_instance);
    for (size_t j = 0; j < r->meters_num; j++)
      free(r->meters[j]);
    free(r->meters);
  }
  free(rc->server_name);
  free(rc);
}

void hes_conf_free(hes_conf_t *conf) {
  if (conf == NULL)
    return;
  while (conf->servers != NULL) {
    hes_conf_server_t *next = conf->servers->next;
    hes_conf_server_free(conf->servers);
    conf->servers = next;
  }
  hes_conf_relay_free(conf->relay);
  free(conf->state_dir);
  conf->relay = NULL;
  conf->state_dir = NULL;
}
