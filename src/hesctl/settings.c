/* settings.c: hesctl's settings: the config file's <Server> block (read by hesctl_conf),
 * then the flags over it, then checks and defaults. Messages name file:line. */
#include "config.h"

#include "hesctl.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

void settings_free(settings_t *s) {
  char **all[] = {&s->url,        &s->tenant,           &s->username,     &s->password,
                  &s->secret_key, &s->ca_cert,          &s->time_zone,    &s->mqtt_host,
                  &s->mqtt_user,  &s->mqtt_password,    &s->mqtt_ca_cert, &s->mqtt_cert,
                  &s->mqtt_key,   &s->mqtt_tls_protocol};
  for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
    if (*all[i] != NULL &&
        (all[i] == &s->password || all[i] == &s->mqtt_password || all[i] == &s->secret_key))
      explicit_bzero(*all[i], strlen(*all[i]));
    free(*all[i]);
    *all[i] = NULL;
  }
}

static int set_str(char **dst, const char *v) {
  char *c = strdup(v);
  if (c == NULL)
    return -1;
  free(*dst);
  *dst = c;
  return 0;
}

void errx_(const char *fmt, ...) {
  va_list ap;
  fputs("hesctl: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

/* One string value, or an error naming file:line. */
static int conf_string(const char *file, const hesctl_ci_t *ci, char **dst) {
  if (ci->nvalues != 1 || ci->values[0].type != HESCTL_CV_STRING) {
    errx_("%s:%d: %s needs one quoted string", file, ci->line, ci->key);
    return -1;
  }
  return set_str(dst, ci->values[0].s);
}

static int conf_bool(const char *file, const hesctl_ci_t *ci, bool *dst) {
  if (ci->nvalues != 1 || ci->values[0].type != HESCTL_CV_BOOL) {
    errx_("%s:%d: %s needs true or false", file, ci->line, ci->key);
    return -1;
  }
  *dst = ci->values[0].b;
  return 0;
}

static int conf_int(const char *file, const hesctl_ci_t *ci, long lo, long hi, long *dst) {
  if (ci->nvalues != 1 || ci->values[0].type != HESCTL_CV_NUMBER || ci->values[0].n < lo ||
      ci->values[0].n > hi || ci->values[0].n != floor(ci->values[0].n)) {
    errx_("%s:%d: %s needs a whole number from %ld to %ld", file, ci->line, ci->key, lo, hi);
    return -1;
  }
  *dst = (long)ci->values[0].n;
  return 0;
}

/* Keys of <Server> that only the plugin uses: accepted, not used. */
static bool plugin_only_key(const char *key) {
  static const char *const keys[] = {"Meter",           "MeterFile",     "Item",
                                     "BatchSize",       "Interval",      "PlanTimeout",
                                     "BackfillPeriods", "RetryInterval", "GiveUpAfter"};
  for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
    if (strcasecmp(key, keys[i]) == 0)
      return true;
  return false;
}

static int conf_mqtt(const char *file, const hesctl_ci_t *b, settings_t *s) {
  for (size_t i = 0; i < b->nchildren; i++) {
    const hesctl_ci_t *ci = &b->children[i];
    const char *k = ci->key;
    long n = 0;
    int r = 0;
    if (ci->block) {
      errx_("%s:%d: unknown block <%s> in <MQTT>", file, ci->line, k);
      return -1;
    }
    if (strcasecmp(k, "Host") == 0)
      r = conf_string(file, ci, &s->mqtt_host);
    else if (strcasecmp(k, "Port") == 0) {
      r = conf_int(file, ci, 1, 65535, &n);
      s->mqtt_port = (int)n;
    } else if (strcasecmp(k, "User") == 0)
      r = conf_string(file, ci, &s->mqtt_user);
    else if (strcasecmp(k, "Password") == 0)
      r = conf_string(file, ci, &s->mqtt_password);
    else if (strcasecmp(k, "QoS") == 0) {
      r = conf_int(file, ci, 0, 2, &n);
      s->mqtt_qos = (int)n;
    } else if (strcasecmp(k, "TLS") == 0)
      r = conf_bool(file, ci, &s->mqtt_tls);
    else if (strcasecmp(k, "CACert") == 0)
      r = conf_string(file, ci, &s->mqtt_ca_cert);
    else if (strcasecmp(k, "CertificateFile") == 0)
      r = conf_string(file, ci, &s->mqtt_cert);
    else if (strcasecmp(k, "CertificateKeyFile") == 0)
      r = conf_string(file, ci, &s->mqtt_key);
    else if (strcasecmp(k, "TLSProtocol") == 0)
      r = conf_string(file, ci, &s->mqtt_tls_protocol);
    else if (strcasecmp(k, "ClientId") == 0 || strcasecmp(k, "CleanSession") == 0 ||
             strcasecmp(k, "KeepAlive") == 0)
      r = 0; /* hesctl uses its own client id and a clean session: it must not take the
                plugin's session over */
    else {
      errx_("%s:%d: unknown key %s in <MQTT>", file, ci->line, k);
      return -1;
    }
    if (r != 0)
      return -1;
  }
  return 0;
}

static int conf_server(const char *file, const hesctl_ci_t *b, settings_t *s) {
  for (size_t i = 0; i < b->nchildren; i++) {
    const hesctl_ci_t *ci = &b->children[i];
    const char *k = ci->key;
    int r = 0;
    if (ci->block) {
      if (strcasecmp(k, "MQTT") == 0 && ci->nvalues == 0)
        r = conf_mqtt(file, ci, s);
      else {
        errx_("%s:%d: unknown block <%s> in <Server>", file, ci->line, k);
        return -1;
      }
    } else if (strcasecmp(k, "URL") == 0)
      r = conf_string(file, ci, &s->url);
    else if (strcasecmp(k, "TenantCode") == 0)
      r = conf_string(file, ci, &s->tenant);
    else if (strcasecmp(k, "Username") == 0)
      r = conf_string(file, ci, &s->username);
    else if (strcasecmp(k, "Password") == 0)
      r = conf_string(file, ci, &s->password);
    else if (strcasecmp(k, "SecretKey") == 0)
      r = conf_string(file, ci, &s->secret_key);
    else if (strcasecmp(k, "VerifyPeer") == 0)
      r = conf_bool(file, ci, &s->verify_peer);
    else if (strcasecmp(k, "VerifyHost") == 0)
      r = conf_bool(file, ci, &s->verify_host);
    else if (strcasecmp(k, "CACert") == 0)
      r = conf_string(file, ci, &s->ca_cert);
    else if (strcasecmp(k, "Timeout") == 0)
      r = conf_int(file, ci, 1, 3600000, &s->timeout_ms);
    else if (strcasecmp(k, "TimeZone") == 0)
      r = conf_string(file, ci, &s->time_zone);
    else if (plugin_only_key(k))
      r = 0;
    else {
      errx_("%s:%d: unknown key %s in <Server>", file, ci->line, k);
      return -1;
    }
    if (r != 0)
      return -1;
  }
  return 0;
}

/* Finds <Plugin hes> <Server NAME> (the only one when name is NULL) and reads it. */
int load_config(const char *file, const char *name, settings_t *s) {
  char err[512];
  hesctl_ci_t *root = hesctl_conf_parse_file(file, err, sizeof(err));
  if (root == NULL) {
    errx_("%s", err);
    return -1;
  }
  const hesctl_ci_t *found = NULL;
  size_t servers = 0;
  char names[256] = "";
  int rc = 0;
  for (size_t i = 0; i < root->nchildren && rc == 0; i++) {
    const hesctl_ci_t *p = &root->children[i];
    if (!p->block || strcasecmp(p->key, "Plugin") != 0 || p->nvalues != 1 ||
        strcasecmp(p->values[0].s, "hes") != 0)
      continue;
    for (size_t j = 0; j < p->nchildren; j++) {
      const hesctl_ci_t *sv = &p->children[j];
      if (!sv->block || strcasecmp(sv->key, "Server") != 0)
        continue;
      if (sv->nvalues != 1 || sv->values[0].type != HESCTL_CV_STRING) {
        errx_("%s:%d: <Server> needs one quoted name", file, sv->line);
        rc = -1;
        break;
      }
      servers++;
      size_t len = strlen(names);
      snprintf(names + len, sizeof(names) - len, "%s\"%s\"", len ? ", " : "", sv->values[0].s);
      if (name == NULL || strcmp(name, sv->values[0].s) == 0) {
        if (found != NULL && name != NULL) {
          errx_("%s:%d: a second <Server \"%s\">", file, sv->line, name);
          rc = -1;
          break;
        }
        found = sv;
      }
    }
  }
  if (rc == 0 && servers == 0) {
    errx_("%s: no <Plugin hes> block with a <Server> in it", file);
    rc = -1;
  } else if (rc == 0 && name == NULL && servers > 1) {
    errx_("%s: %zu servers (%s): choose one with --server NAME", file, servers, names);
    rc = -1;
  } else if (rc == 0 && found == NULL) {
    errx_("%s: no <Server \"%s\">; the servers are %s", file, name, names);
    rc = -1;
  }
  if (rc == 0)
    rc = conf_server(file, found, s);
  hesctl_conf_free(root);
  return rc;
}

/* Flags and environment over the file; then the checks. */
int settings_finish(settings_t *s, const opts_t *o) {
  if ((o->url != NULL && set_str(&s->url, o->url) != 0) ||
      (o->tenant != NULL && set_str(&s->tenant, o->tenant) != 0) ||
      (o->username != NULL && set_str(&s->username, o->username) != 0) ||
      (o->secret_key != NULL && set_str(&s->secret_key, o->secret_key) != 0) ||
      (o->mqtt_user != NULL && set_str(&s->mqtt_user, o->mqtt_user) != 0)) {
    errx_("out of memory");
    return -1;
  }
  const char *env = getenv("HES_PASSWORD");
  if (env != NULL && *env != '\0' && set_str(&s->password, env) != 0)
    return -1;
  env = getenv("HES_SECRET_KEY");
  if (o->secret_key == NULL && env != NULL && *env != '\0' && set_str(&s->secret_key, env) != 0)
    return -1;
  env = getenv("HES_MQTT_PASSWORD");
  if (env != NULL && *env != '\0' && set_str(&s->mqtt_password, env) != 0)
    return -1;
  if (o->broker != NULL) {
    const char *b = o->broker, *colon = strrchr(b, ':');
    char host[256];
    size_t hl = colon != NULL ? (size_t)(colon - b) : strlen(b);
    if (b[0] == '[') { /* [v6]:port */
      const char *close = strchr(b, ']');
      colon = close != NULL && close[1] == ':' ? close + 1 : NULL;
      if (close == NULL || (close[1] != ':' && close[1] != '\0')) {
        errx_("--broker %s: expected HOST[:PORT] or [IPV6][:PORT]", b);
        return -1;
      }
      b++;
      hl = (size_t)(close - b);
    }
    if (hl == 0 || hl >= sizeof(host)) {
      errx_("--broker %s: expected HOST[:PORT]", o->broker);
      return -1;
    }
    memcpy(host, b, hl);
    host[hl] = '\0';
    if (colon != NULL) {
      char *end = NULL;
      errno = 0;
      long port = strtol(colon + 1, &end, 10);
      if (errno != 0 || end == colon + 1 || *end != '\0' || port < 1 || port > 65535) {
        errx_("--broker %s: the port must be 1..65535", o->broker);
        return -1;
      }
      s->mqtt_port = (int)port;
    }
    if (set_str(&s->mqtt_host, host) != 0)
      return -1;
  }
  struct {
    const char *what;
    const char *v;
  } need[] = {{"URL (--url)", s->url},
              {"TenantCode (--tenant)", s->tenant},
              {"Username (--username)", s->username},
              {"Password (the environment variable HES_PASSWORD)", s->password},
              {"SecretKey (--secret-key)", s->secret_key}};
  for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
    if (need[i].v == NULL || need[i].v[0] == '\0') {
      errx_("no %s: give --config FILE or the flags", need[i].what);
      return -1;
    }
  }
  if (!hes_meter_is_valid(s->tenant)) {
    errx_("TenantCode \"%.40s\" is not a valid tenant code", s->tenant);
    return -1;
  }
  return 0;
}
