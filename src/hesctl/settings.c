/* settings.c: hesctl's settings: the config file's <Server> block (read by conf_tree),
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

int settings_init(settings_t *s) {
  s->srv = calloc(1, sizeof(*s->srv));
  if (s->srv == NULL)
    return -1;
  s->srv->verify_peer = true;
  s->srv->verify_host = true;
  s->srv->mqtt_qos = 1;
  return 0;
}

void settings_free(settings_t *s) {
  hes_conf_server_free(s->srv); /* zeroes the secrets */
  s->srv = NULL;
  free(s->state_dir);
  s->state_dir = NULL;
}

const char *settings_meter_file(const settings_t *s) {
  return s->srv->meter_files_num > 0 ? s->srv->meter_files[0] : NULL;
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

static int copy_str(char **dst, const char *v) {
  return v == NULL ? 0 : set_str(dst, v);
}

/* Reads the file (following its Includes) and checks every <Plugin hes> block with the
 * plugin's own rules (conf.c), one block after the other as collectd hands them over. A
 * refusal is printed as the plugin logs it, after the file and line it comes from. */
static int read_conf(const char *file, hes_conf_t *conf) {
  char err[HES_CONF_ERR_MAX];
  hes_conf_node_t *root = hes_conf_tree_read(file, err, sizeof(err));
  if (root == NULL) {
    errx_("%s", err);
    return -1;
  }
  int rc = 0;
  size_t blocks = 0;
  for (size_t i = 0; i < root->nchildren && rc == 0; i++) {
    const hes_conf_node_t *p = &root->children[i];
    if (strcasecmp(p->key, "Plugin") != 0 || p->nvalues != 1 ||
        p->values[0].type != HES_CONF_STRING || strcasecmp(p->values[0].s, "hes") != 0)
      continue;
    blocks++;
    const hes_conf_node_t *where = NULL;
    if (hes_conf_load(p, conf, err, sizeof(err), &where) != 0) {
      if (where != NULL && where->file != NULL)
        errx_("%s:%d: %s", where->file, where->line, err);
      else
        errx_("%s: %s", p->file != NULL ? p->file : file, err);
      rc = -1;
    }
  }
  if (rc == 0 && blocks == 0) {
    errx_("%s: no <Plugin hes> block", file);
    rc = -1;
  }
  hes_conf_tree_free(root);
  return rc;
}

int check_config(const char *file) {
  hes_conf_t conf = {0};
  int rc = read_conf(file, &conf);
  if (rc == 0) {
    size_t n = 0;
    for (const hes_conf_server_t *s = conf.servers; s != NULL; s = s->next)
      n++;
    printf("OK: %s: %zu server(s)%s\n", file, n, conf.relay != NULL ? ", a <Relay> block" : "");
  }
  hes_conf_free(&conf);
  return rc;
}

/* Finds <Plugin hes> <Server NAME> (the only one when name is NULL) and takes its settings. */
int load_config(const char *file, const char *name, settings_t *s) {
  hes_conf_t conf = {0};
  if (read_conf(file, &conf) != 0) {
    hes_conf_free(&conf);
    return -1;
  }
  const hes_conf_server_t *sv = hes_conf_server(&conf, name);
  if (sv == NULL) {
    char names[256] = "";
    size_t servers = 0;
    for (const hes_conf_server_t *o = conf.servers; o != NULL; o = o->next, servers++) {
      size_t len = strlen(names);
      snprintf(names + len, sizeof(names) - len, "%s\"%s\"", len ? ", " : "", o->name);
    }
    if (name == NULL)
      errx_("%s: %zu servers (%s): choose one with --server NAME", file, servers, names);
    else
      errx_("%s: no <Server \"%s\">; the servers are %s", file, name, names);
    hes_conf_free(&conf);
    return -1;
  }
  if (copy_str(&s->state_dir, conf.state_dir) != 0) {
    errx_("out of memory");
    hes_conf_free(&conf);
    return -1;
  }
  /* taken over whole: out of the module's list, which is freed without it */
  hes_conf_server_t **at = &conf.servers;
  while (*at != sv)
    at = &(*at)->next;
  *at = sv->next;
  hes_conf_server_t *own = (hes_conf_server_t *)sv;
  own->next = NULL;
  hes_conf_server_free(s->srv);
  s->srv = own;
  hes_conf_free(&conf);
  return 0;
}

/* Flags and environment over the file; then the checks. */
int settings_finish(settings_t *s, const opts_t *o) {
  if ((o->url != NULL && set_str(&s->srv->url, o->url) != 0) ||
      (o->tenant != NULL && set_str(&s->srv->tenant, o->tenant) != 0) ||
      (o->username != NULL && set_str(&s->srv->username, o->username) != 0) ||
      (o->mqtt_user != NULL && set_str(&s->srv->mqtt_user, o->mqtt_user) != 0)) {
    errx_("out of memory");
    return -1;
  }
  const char *env = getenv("HES_PASSWORD");
  if (env != NULL && *env != '\0' && set_str(&s->srv->password, env) != 0)
    return -1;
  env = getenv("HES_SECRET_KEY");
  if (env != NULL && *env != '\0' && set_str(&s->srv->secret_key, env) != 0)
    return -1;
  env = getenv("HES_MQTT_PASSWORD");
  if (env != NULL && *env != '\0' && set_str(&s->srv->mqtt_password, env) != 0)
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
      s->srv->mqtt_port = (int)port;
    }
    if (set_str(&s->srv->mqtt_host, host) != 0)
      return -1;
  }
  struct {
    const char *what;
    const char *v;
  } need[] = {{"URL (--url)", s->srv->url},
              {"TenantCode (--tenant)", s->srv->tenant},
              {"Username (--username)", s->srv->username},
              {"Password (the environment variable HES_PASSWORD)", s->srv->password},
              {"SecretKey (the environment variable HES_SECRET_KEY)", s->srv->secret_key}};
  for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
    if (need[i].v == NULL || need[i].v[0] == '\0') {
      errx_("no %s: give --config FILE or the flags", need[i].what);
      return -1;
    }
  }
  s->srv->mqtt_port = hes_conf_mqtt_port(s->srv->mqtt_port, s->srv->mqtt_tls, s->srv->mqtt_ca_cert,
                                         s->srv->mqtt_cert_file);
  if (!hes_meter_is_valid(s->srv->tenant)) {
    errx_("TenantCode \"%.40s\" is not a valid tenant code", s->srv->tenant);
    return -1;
  }
  return 0;
}
