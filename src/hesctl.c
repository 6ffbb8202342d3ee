/* hesctl: the command-line tool of collectd-hes, for an operator at a terminal. It reads
 * meters, pages through history, switches breakers and edits DCU archives through the same
 * modules as the plugin (api, mqtt, plans, push, items, meters) and the same configuration
 * file (hesctl_conf), and prints what the HES pushed back as a table, JSON or CSV.
 *
 * Flow of a command that makes a plan: subscribe to /<TenantCode>/# (own client id, clean
 * session) and wait until the subscription is acknowledged, THEN send the HTTP request
 * bracketed by hes_plans_request_begin/end, so a push that beats the HTTP answer is parked by
 * the plans table and handed back by hes_plans_add. The MQTT thread only classifies pushes
 * (hes_plans_lookup) and queues the ones of open plans; the main thread handles them all, so
 * the results need no lock of their own.
 *
 * Exit codes (also in hesctl(1)): 0 all ok, 1 some meters failed or are missing, 2 usage
 * error (or a relay command not confirmed), 3 HES or HTTP error, 4 MQTT error or no push at
 * all for a plan within --timeout, 5 configuration error. */
#include "config.h"

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

#include "api.h"
#include "backfill.h"
#include "hesctl_conf.h"
#include "items.h"
#include "meters.h"
#include "mqtt.h"
#include "plans.h"
#include "push.h"
#include "tz.h"

enum {
  EXIT_ALL_OK = 0,
  EXIT_SOME_FAILED = 1,
  EXIT_USAGE = 2,
  EXIT_HES = 3,
  EXIT_MQTT = 4,
  EXIT_CONFIG = 5,
};

#define CTL_ITEMS_MAX     16
#define CTL_MEMBERS_MAX   100000
#define CTL_QUEUE_MAX     (256u * 1024u * 1024u) /* bytes of pushes waiting for the main thread */
#define CTL_READY_MAX     10.0                   /* seconds to wait for the broker at most */
#define CTL_UNIT_MAX      16
#define CTL_TEXT_MAX      64
#define CTL_DEFAULT_BATCH 100

typedef enum { FMT_TABLE, FMT_JSON, FMT_CSV } fmt_t;

typedef enum { OP_READ, OP_RELAY, OP_DCU_LIST, OP_DCU_ADD, OP_DCU_REMOVE } op_t;

/* ---- settings: the config file's <Server> block, then the flags over it ------------------- */

typedef struct {
  char *url, *tenant, *username, *password, *secret_key, *ca_cert, *time_zone;
  bool verify_peer, verify_host;
  long timeout_ms;
  char *mqtt_host, *mqtt_user, *mqtt_password, *mqtt_ca_cert, *mqtt_cert, *mqtt_key,
      *mqtt_tls_protocol;
  int mqtt_port;
  int mqtt_qos;
  bool mqtt_tls;
} settings_t;

typedef struct {
  const char *config, *server;
  const char *url, *tenant, *username, *secret_key, *broker, *mqtt_user;
  const char *items[CTL_ITEMS_MAX];
  size_t nitems;
  const char *from, *to;
  const char *meter_file;
  fmt_t fmt;
  bool raw, yes, disabled;
  double timeout;
  long page_size;
  long batch_size;
} opts_t;

static void settings_free(settings_t *s) {
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

static void errx_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void errx_(const char *fmt, ...) {
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
static int load_config(const char *file, const char *name, settings_t *s) {
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
static int settings_finish(settings_t *s, const opts_t *o) {
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

/* ---- output: one table, printed aligned, as CSV or as JSON ---------------------------------- */

typedef enum { J_STR, J_NUM, J_BOOL, J_NULL } jtype_t;

typedef struct {
  const char *name; /* JSON key and CSV header; upper-cased for the table */
  bool table;       /* shown in the table */
} col_t;

typedef struct {
  jtype_t type;
  char *text;
} cell_t;

typedef struct {
  const col_t *cols;
  size_t ncols;
  cell_t *cells;
  size_t ncells, cap;
  bool oom;
} out_t;

/* Control bytes and non-ASCII from the network would reach the operator's terminal. */
static void sanitize(char *dst, size_t dstlen, const char *src, size_t srclen) {
  size_t n = 0;
  for (size_t i = 0; i < srclen && src[i] != '\0' && n + 1 < dstlen; i++) {
    unsigned char ch = (unsigned char)src[i];
    dst[n++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
  }
  dst[n] = '\0';
}

static void out_cell(out_t *o, jtype_t type, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void out_cell(out_t *o, jtype_t type, const char *fmt, ...) {
  if (o->oom)
    return;
  if (o->ncells == o->cap) {
    size_t cap = o->cap ? o->cap * 2 : 64;
    cell_t *nc = realloc(o->cells, cap * sizeof(*nc));
    if (nc == NULL) {
      o->oom = true;
      return;
    }
    o->cells = nc;
    o->cap = cap;
  }
  char *text = NULL;
  va_list ap;
  va_start(ap, fmt);
  int r = vasprintf(&text, fmt, ap);
  va_end(ap);
  if (r < 0) {
    o->oom = true;
    return;
  }
  o->cells[o->ncells].type = type;
  o->cells[o->ncells].text = text;
  o->ncells++;
}

static void out_free(out_t *o) {
  for (size_t i = 0; i < o->ncells; i++)
    free(o->cells[i].text);
  free(o->cells);
}

static void print_json_string(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\')
      fprintf(f, "\\%c", ch);
    else if (ch < 0x20)
      fprintf(f, "\\u%04x", ch);
    else
      fputc(ch, f);
  }
  fputc('"', f);
}

static void print_csv_field(FILE *f, const char *s) {
  if (strpbrk(s, ",\"\r\n") == NULL && s[0] != ' ' && (s[0] == '\0' || s[strlen(s) - 1] != ' ')) {
    fputs(s, f);
    return;
  }
  fputc('"', f);
  for (; *s; s++) {
    if (*s == '"')
      fputc('"', f);
    fputc(*s, f);
  }
  fputc('"', f);
}

static void out_print(const out_t *o, fmt_t fmt, FILE *f) {
  size_t rows = o->ncols ? o->ncells / o->ncols : 0;
  if (fmt == FMT_JSON) {
    fputs("[", f);
    for (size_t r = 0; r < rows; r++) {
      fputs(r ? ",\n  {" : "\n  {", f);
      for (size_t c = 0; c < o->ncols; c++) {
        const cell_t *cell = &o->cells[r * o->ncols + c];
        if (c)
          fputc(',', f);
        print_json_string(f, o->cols[c].name);
        fputc(':', f);
        if (cell->type == J_STR)
          print_json_string(f, cell->text);
        else if (cell->type == J_NULL)
          fputs("null", f);
        else
          fputs(cell->text, f);
      }
      fputc('}', f);
    }
    fputs(rows ? "\n]\n" : "]\n", f);
    return;
  }
  if (fmt == FMT_CSV) {
    for (size_t c = 0; c < o->ncols; c++) {
      if (c)
        fputc(',', f);
      fputs(o->cols[c].name, f);
    }
    fputs("\r\n", f);
    for (size_t r = 0; r < rows; r++) {
      for (size_t c = 0; c < o->ncols; c++) {
        const cell_t *cell = &o->cells[r * o->ncols + c];
        if (c)
          fputc(',', f);
        print_csv_field(f, cell->type == J_NULL ? "" : cell->text);
      }
      fputs("\r\n", f);
    }
    return;
  }
  size_t width[32] = {0};
  size_t last = 0;
  for (size_t c = 0; c < o->ncols && c < 32; c++) {
    if (!o->cols[c].table)
      continue;
    last = c;
    width[c] = strlen(o->cols[c].name);
    for (size_t r = 0; r < rows; r++) {
      const cell_t *cell = &o->cells[r * o->ncols + c];
      size_t w = cell->type == J_NULL ? 1 : strlen(cell->text);
      if (w > width[c])
        width[c] = w;
    }
  }
  for (size_t r = 0; r <= rows; r++) {
    bool first = true;
    for (size_t c = 0; c < o->ncols && c < 32; c++) {
      if (!o->cols[c].table)
        continue;
      char head[64];
      const char *text;
      if (r == 0) {
        size_t k = 0;
        for (; o->cols[c].name[k] && k + 1 < sizeof(head); k++)
          head[k] = (char)(o->cols[c].name[k] >= 'a' && o->cols[c].name[k] <= 'z'
                               ? o->cols[c].name[k] - 'a' + 'A'
                               : o->cols[c].name[k]);
        head[k] = '\0';
        text = head;
      } else {
        const cell_t *cell = &o->cells[(r - 1) * o->ncols + c];
        text = cell->type == J_NULL || cell->text[0] == '\0' ? "-" : cell->text;
      }
      if (!first)
        fputs("  ", f);
      first = false;
      if (c == last)
        fputs(text, f);
      else
        fprintf(f, "%-*s", (int)width[c], text);
    }
    fputc('\n', f);
  }
}

/* ---- the session: api, MQTT thread, plans, and the pushes' queue ---------------------------- */

typedef struct msg {
  struct msg *next;
  size_t len;
  char payload[];
} msg_t;

typedef struct {
  char plan_id[HES_PLAN_ID_MAX];
  op_t op;
  size_t item;  /* OP_READ: index into ctl.items */
  size_t first; /* meters [first, first + n) of ctl.meters */
  size_t n;
  bool done;   /* its push was handled */
  bool failed; /* push status not success (DCU add/remove) */
  double deadline;
} plan_t;

/* One result line: a reading, a relay outcome, an archive entry. */
typedef struct {
  uint32_t meter; /* index in ctl.meters; for DCU lists, the row's own text in dev */
  size_t item;
  int64_t ts_ms; /* -1: none */
  int channel;   /* frozen: the channel's cgcode; 0 otherwise */
  size_t seq;
  const char *status; /* "ok", "missing", "failed", "bad-value", "bad-unit" */
  bool number;        /* value is a JSON number */
  char value[CTL_TEXT_MAX + 1];
  char unit[CTL_UNIT_MAX + 1];
  /* archive rows */
  char dev[HES_METER_MAX_LEN + 1];
  bool enabled;
  char comm_type[CTL_UNIT_MAX + 1];
  char module_next[HES_METER_MAX_LEN + 1];
} row_t;

typedef struct {
  opts_t opt;
  settings_t set;
  op_t op;
  const hes_item_t *items[CTL_ITEMS_MAX];
  size_t nitems;
  hes_meters_t *meters;
  const char **meter_list; /* the meter numbers, by index */
  size_t nmeters;
  const char *dcu;
  int control_mode;
  char from[20], to[20];

  hes_api_t *api;
  hes_plans_t *plans;
  hes_push_parser_t *parser;      /* main thread */
  hes_push_parser_t *mqtt_parser; /* MQTT thread */
  hes_mqtt_t *mqtt;
  pthread_t thread;
  bool thread_started;

  pthread_mutex_t lock; /* the queue and mqtt_why */
  pthread_cond_t cond;
  msg_t *head, *tail;
  size_t queued_bytes;
  char mqtt_why[256];
  uint64_t rejected; /* pushes not parseable: MQTT thread, under lock */

  plan_t *plans_made;
  size_t nplans, plans_cap;

  row_t *rows;
  size_t nrows, rows_cap;
  bool *answered; /* nitems x nmeters: OP_READ; nmeters: relay */
  int rc;         /* the worst exit code so far */
  hes_tz_t *tz;   /* the HES's zone: --from/--to and the times printed */
} ctl_t;

/* Ctrl-C (or SIGTERM) while waiting: stop waiting, print what came, exit 130. */
#define EXIT_INTERRUPTED 130
static volatile sig_atomic_t interrupted;

static void on_signal(int sig) {
  (void)sig;
  interrupted = 1;
}

static void catch_interrupts(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The exit code that wins when several things went wrong: the cause an operator must see. */
static void worst(ctl_t *c, int rc) {
  static const int rank[] = {[EXIT_ALL_OK] = 0, [EXIT_SOME_FAILED] = 1, [EXIT_MQTT] = 2,
                             [EXIT_HES] = 3,    [EXIT_USAGE] = 4,       [EXIT_CONFIG] = 5};
  if (rank[rc] > rank[c->rc])
    c->rc = rc;
}

static row_t *row_new(ctl_t *c) {
  if (c->nrows == c->rows_cap) {
    size_t cap = c->rows_cap ? c->rows_cap * 2 : 64;
    row_t *nr = realloc(c->rows, cap * sizeof(*nr));
    if (nr == NULL)
      return NULL;
    c->rows = nr;
    c->rows_cap = cap;
  }
  row_t *r = &c->rows[c->nrows];
  memset(r, 0, sizeof(*r));
  r->seq = c->nrows++;
  r->ts_ms = -1;
  r->status = "ok";
  return r;
}

static void on_message(void *ctx, const char *topic, const void *payload, size_t len) {
  (void)topic; /* the planId in the payload counts: the seed's topics disagree */
  ctl_t *c = ctx;
  hes_push_t push;
  if (hes_push_parse(c->mqtt_parser, payload, len, &push, NULL, 0) != HES_PUSH_OK) {
    pthread_mutex_lock(&c->lock);
    c->rejected++;
    pthread_mutex_unlock(&c->lock);
    return;
  }
  hes_plan_lookup_t lr = hes_plans_lookup(c->plans, push.plan_id, now_s(), payload, len, NULL);
  if (lr != HES_PLAN_OPEN)
    return; /* parked for hes_plans_add, or not ours */
  pthread_mutex_lock(&c->lock);
  msg_t *m = c->queued_bytes + len <= CTL_QUEUE_MAX ? malloc(sizeof(*m) + len) : NULL;
  if (m != NULL) {
    m->next = NULL;
    m->len = len;
    memcpy(m->payload, payload, len);
    if (c->tail != NULL)
      c->tail->next = m;
    else
      c->head = m;
    c->tail = m;
    c->queued_bytes += len;
    pthread_cond_signal(&c->cond);
  } else {
    c->rejected++;
  }
  pthread_mutex_unlock(&c->lock);
}

static void on_state(void *ctx, bool ready, const char *why) {
  ctl_t *c = ctx;
  if (ready)
    return;
  pthread_mutex_lock(&c->lock);
  snprintf(c->mqtt_why, sizeof(c->mqtt_why), "%s", why != NULL ? why : "connection lost");
  pthread_mutex_unlock(&c->lock);
}

static void *mqtt_thread(void *arg) {
  hes_mqtt_run(arg);
  return NULL;
}

static int session_api(ctl_t *c) {
  hes_api_config_t cfg = {
      .url = c->set.url,
      .tenant_code = c->set.tenant,
      .username = c->set.username,
      .password = c->set.password,
      .secret_key = c->set.secret_key,
      .verify_peer = c->set.verify_peer,
      .verify_host = c->set.verify_host,
      .ca_cert = c->set.ca_cert,
      .timeout_ms = c->set.timeout_ms,
  };
  hes_api_error_t err;
  c->api = hes_api_new(&cfg, &err);
  if (c->api == NULL) {
    errx_("HES %s: %s", c->set.url, err.msg);
    return EXIT_CONFIG;
  }
  return EXIT_ALL_OK;
}

/* Connects and subscribes; returns once the subscription is acknowledged. */
static int session_mqtt(ctl_t *c) {
  if (c->set.mqtt_host == NULL) {
    errx_("no MQTT broker: give --broker HOST[:PORT] or an <MQTT> Host in the config");
    return EXIT_CONFIG;
  }
  char topic[HES_METER_MAX_LEN + 8], client_id[128], host[64] = "host";
  snprintf(topic, sizeof(topic), "/%s/#", c->set.tenant);
  gethostname(host, sizeof(host) - 1);
  host[sizeof(host) - 1] = '\0';
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  /* unique per run: two operators, or the plugin, must not take each other's session */
  snprintf(client_id, sizeof(client_id), "hesctl-%.40s-%ld-%08lx", host, (long)getpid(),
           (unsigned long)(ts.tv_nsec ^ ts.tv_sec));
  hes_mqtt_config_t cfg = {
      .host = c->set.mqtt_host,
      .port = c->set.mqtt_port,
      .user = c->set.mqtt_user,
      .password = c->set.mqtt_password,
      .client_id = client_id,
      .qos = c->set.mqtt_qos,
      .clean_session = true,
      .tls = c->set.mqtt_tls,
      .ca_cert = c->set.mqtt_ca_cert,
      .cert_file = c->set.mqtt_cert,
      .key_file = c->set.mqtt_key,
      .tls_protocol = c->set.mqtt_tls_protocol,
      .topic = topic,
      .backoff_min = 0.2,
      .backoff_max = 1,
      .connect_timeout = CTL_READY_MAX,
      .on_message = on_message,
      .on_state = on_state,
      .ctx = c,
  };
  char err[256];
  c->mqtt = hes_mqtt_new(&cfg, err, sizeof(err));
  if (c->mqtt == NULL) {
    errx_("MQTT: %s", err);
    return EXIT_CONFIG;
  }
  /* The signals are the main thread's: libmosquitto's poll must not see EINTR. */
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &block, &old);
  int pr = pthread_create(&c->thread, NULL, mqtt_thread, c->mqtt);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (pr != 0) {
    errx_("MQTT: cannot start a thread");
    return EXIT_MQTT;
  }
  c->thread_started = true;
  double wait = c->opt.timeout < CTL_READY_MAX ? c->opt.timeout : CTL_READY_MAX;
  if (!hes_mqtt_wait_ready(c->mqtt, wait)) {
    pthread_mutex_lock(&c->lock);
    errx_("MQTT broker %s:%d: not ready after %g s: %s", c->set.mqtt_host,
          c->set.mqtt_port ? c->set.mqtt_port : (c->set.mqtt_tls ? 8883 : 1883), wait,
          c->mqtt_why[0] ? c->mqtt_why : "no answer");
    pthread_mutex_unlock(&c->lock);
    return EXIT_MQTT;
  }
  return EXIT_ALL_OK;
}

static void session_end(ctl_t *c) {
  if (c->thread_started) {
    hes_mqtt_stop(c->mqtt);
    pthread_join(c->thread, NULL);
    c->thread_started = false;
  }
  hes_mqtt_free(c->mqtt);
  c->mqtt = NULL;
  for (msg_t *m = c->head, *next; m != NULL; m = next) {
    next = m->next;
    free(m);
  }
  c->head = c->tail = NULL;
}

static void report_api_error(const hes_api_error_t *err) {
  if (err->kind == HES_API_EHES)
    errx_("%s: HES code %d: %s", err->endpoint, err->code, err->msg);
  else
    errx_("%s: %s: %s", err->endpoint, hes_api_result_string(err->kind), err->msg);
}

/* ---- pushes ---------------------------------------------------------------------------------- */

/* As sent (sanitized); a value or unit too long to show whole is flagged, not cut silently. */
static void copy_value(row_t *row, const char *value, const char *unit) {
  size_t vl = strlen(value), ul = strlen(unit);
  sanitize(row->value, sizeof(row->value), value, vl);
  sanitize(row->unit, sizeof(row->unit), unit, ul);
  if (vl >= sizeof(row->value))
    row->status = "bad-value";
  else if (ul >= sizeof(row->unit))
    row->status = "bad-unit";
}

/* Fills the row's value: SI (or raw with --raw). Returns false when it is not convertible. */
static void set_reading(ctl_t *c, row_t *row, const hes_item_t *item, const char *value,
                        const char *unit) {
  double si;
  if (c->opt.raw || item == NULL) {
    copy_value(row, value, unit);
    return;
  }
  hes_item_result_t r = hes_item_convert(item, value, unit, &si);
  if (r != HES_ITEM_OK) {
    copy_value(row, value, unit);
    row->status = r == HES_ITEM_EUNIT ? "bad-unit" : "bad-value";
    return;
  }
  snprintf(row->value, sizeof(row->value), "%.15g", si);
  snprintf(row->unit, sizeof(row->unit), "%s", hes_item_dim_symbol(item->dim));
  row->number = true;
}

static void handle_readings(ctl_t *c, plan_t *pl, const hes_push_t *push) {
  const hes_item_t *item = c->items[pl->item];
  bool frozen = item->category == HES_ITEM_COMPOSITE;
  for (size_t i = 0; i < push->count; i++) {
    const hes_push_reading_t *r = &push->readings[i];
    uint32_t idx = hes_meters_find(c->meters, r->dev_addr, r->dev_addr_len);
    if (idx == HES_METER_NONE || idx < pl->first || idx >= pl->first + pl->n)
      continue;
    const hes_item_t *chan = NULL;
    if (frozen) {
      chan = hes_item_by_cgcode(r->cgcode);
      if (chan != NULL && chan->category != HES_ITEM_SINGLE)
        chan = NULL;
      if (chan == NULL && !c->opt.raw)
        continue; /* the vendor's channels without a unit of their own: --raw shows them */
      hes_plans_answer(c->plans, pl->plan_id, idx); /* several rows per meter */
    } else {
      if (r->cgcode != 0 && r->cgcode != item->cgcode)
        continue;
      if (hes_plans_answer(c->plans, pl->plan_id, idx) != 1)
        continue; /* a repeat */
    }
    row_t *row = row_new(c);
    if (row == NULL)
      return;
    row->meter = idx;
    row->item = pl->item;
    row->ts_ms = r->timestamp_ms;
    row->channel = frozen ? r->cgcode : 0;
    set_reading(c, row, frozen ? chan : item, r->value, r->unit);
    c->answered[pl->item * c->nmeters + idx] = true;
  }
}

static void handle_relay(ctl_t *c, plan_t *pl, const hes_push_t *push) {
  for (size_t i = 0; i < push->count; i++) {
    const hes_push_relay_t *r = &push->relays[i];
    uint32_t idx = hes_meters_find(c->meters, r->dev_addr, r->dev_addr_len);
    if (idx == HES_METER_NONE || hes_plans_answer(c->plans, pl->plan_id, idx) != 1)
      continue;
    row_t *row = row_new(c);
    if (row == NULL)
      return;
    row->meter = idx;
    row->status = r->successful ? "ok" : "failed";
    c->answered[idx] = true;
  }
}

static void handle_archive(ctl_t *c, const hes_push_t *push) {
  for (size_t i = 0; i < push->count; i++) {
    const hes_push_archive_t *a = &push->archives[i];
    row_t *row = row_new(c);
    if (row == NULL)
      return;
    sanitize(row->dev, sizeof(row->dev), a->dev_addr, a->dev_addr_len);
    row->enabled = a->enabled;
    sanitize(row->comm_type, sizeof(row->comm_type), a->comm_type, strlen(a->comm_type));
    sanitize(row->module_next, sizeof(row->module_next), a->module_next, strlen(a->module_next));
  }
}

/* Handles a push of one of our open plans (from the queue, or parked). Main thread only. */
static void handle_push(ctl_t *c, const void *payload, size_t len) {
  hes_push_t push;
  char why[256];
  if (hes_push_parse(c->parser, payload, len, &push, why, sizeof(why)) != HES_PUSH_OK) {
    errx_("warning: rejected a push of %zu bytes: %s", len, why);
    return;
  }
  hes_plan_info_t info;
  if (hes_plans_lookup(c->plans, push.plan_id, now_s(), NULL, 0, &info) != HES_PLAN_OPEN)
    return; /* a redelivery of a plan handled already */
  plan_t *pl = &c->plans_made[(size_t)info.tag];
  if (push.skipped > 0)
    errx_("warning: plan %s: skipped %zu malformed entr%s: %s", push.plan_id, push.skipped,
          push.skipped == 1 ? "y" : "ies", push.skipped_reason);
  bool frozen = pl->op == OP_READ && c->items[pl->item]->category == HES_ITEM_COMPOSITE;
  if (push.kind == HES_PUSH_READINGS && pl->op == OP_READ && !frozen)
    handle_readings(c, pl, &push);
  else if (push.kind == HES_PUSH_CHANNELS && pl->op == OP_READ && frozen)
    handle_readings(c, pl, &push);
  else if (push.kind == HES_PUSH_RELAY && pl->op == OP_RELAY)
    handle_relay(c, pl, &push);
  else if (push.kind == HES_PUSH_ARCHIVE && pl->op == OP_DCU_LIST)
    handle_archive(c, &push);
  else if (push.kind != HES_PUSH_EMPTY)
    errx_("warning: plan %s: a push of an unexpected kind", push.plan_id);
  pl->failed = push.status != HES_PUSH_SUCCESS;
  pl->done = true;
  /* One message per plan (seed): whatever it holds is final. */
  hes_plans_finish(c->plans, push.plan_id, NULL, NULL);
}

/* Registers a plan the HES created; handles pushes that came before its HTTP answer.
 * Call between hes_plans_request_begin and _end. */
static int plan_track(ctl_t *c, const hes_api_plan_t *ap, op_t op, size_t item, size_t first,
                      size_t n) {
  if (c->nplans == c->plans_cap) {
    size_t cap = c->plans_cap ? c->plans_cap * 2 : 16;
    plan_t *np = realloc(c->plans_made, cap * sizeof(*np));
    if (np == NULL)
      return -1;
    c->plans_made = np;
    c->plans_cap = cap;
  }
  plan_t *pl = &c->plans_made[c->nplans];
  memset(pl, 0, sizeof(*pl));
  snprintf(pl->plan_id, sizeof(pl->plan_id), "%s", ap->plan_id);
  pl->op = op;
  pl->item = item;
  pl->first = first;
  pl->n = n;
  pl->deadline = now_s() + c->opt.timeout;
  uint32_t *idx = malloc((n ? n : 1) * sizeof(*idx));
  if (idx == NULL)
    return -1;
  for (size_t i = 0; i < n; i++)
    idx[i] = (uint32_t)(first + i);
  if (n == 0)
    idx[0] = 0; /* DCU plans: one stand-in for the DCU */
  hes_parked_t *parked = NULL;
  int ar = hes_plans_add(c->plans, pl->plan_id, (uint32_t)c->nplans, NULL, idx, n ? n : 1,
                         pl->deadline, &parked);
  free(idx);
  if (ar != 0) {
    errx_("plan %s: cannot track it: %s", pl->plan_id,
          ar == EEXIST ? "the HES reused a planId" : strerror(ar));
    hes_parked_free(parked);
    return -1;
  }
  c->nplans++;
  for (hes_parked_t *p = parked; p != NULL; p = p->next)
    handle_push(c, p->payload, p->len);
  hes_parked_free(parked);
  return 0;
}

static bool all_done(const ctl_t *c) {
  for (size_t i = 0; i < c->nplans; i++)
    if (!c->plans_made[i].done)
      return false;
  return true;
}

/* Handles pushes until every plan is done or the last deadline passed. */
static void wait_pushes(ctl_t *c) {
  double deadline = 0;
  for (size_t i = 0; i < c->nplans; i++)
    if (c->plans_made[i].deadline > deadline)
      deadline = c->plans_made[i].deadline;
  pthread_mutex_lock(&c->lock);
  while (!all_done(c) && !interrupted) {
    if (c->head == NULL) {
      double left = deadline - now_s();
      if (left <= 0)
        break;
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      double wait = left < 0.2 ? left : 0.2;
      ts.tv_sec += (time_t)wait;
      ts.tv_nsec += (long)((wait - floor(wait)) * 1e9);
      if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
      }
      pthread_cond_timedwait(&c->cond, &c->lock, &ts);
      continue;
    }
    msg_t *m = c->head;
    c->head = m->next;
    if (c->head == NULL)
      c->tail = NULL;
    c->queued_bytes -= m->len;
    pthread_mutex_unlock(&c->lock);
    handle_push(c, m->payload, m->len);
    free(m);
    pthread_mutex_lock(&c->lock);
  }
  pthread_mutex_unlock(&c->lock);
  for (size_t i = 0; i < c->nplans; i++) {
    if (!c->plans_made[i].done && !interrupted) {
      errx_("plan %s: no push within %g s (is the HES publishing to this broker?)",
            c->plans_made[i].plan_id, c->opt.timeout);
      worst(c, EXIT_MQTT);
    }
  }
}

/* ---- commands -------------------------------------------------------------------------------- */

static int cmp_rows(const void *a, const void *b) {
  const row_t *x = a, *y = b;
  if (x->meter != y->meter)
    return x->meter < y->meter ? -1 : 1;
  if (x->item != y->item)
    return x->item < y->item ? -1 : 1;
  if (x->ts_ms != y->ts_ms)
    return x->ts_ms < y->ts_ms ? -1 : 1;
  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* The freeze times of dailyBilling (local midnights) or monthlyBilling (local midnights of
 * the 1st) in [from, to], in seconds; the load profile's interval is the HES's business, so
 * 0 for it. Returns how many, at most max. */
static size_t freeze_times(const ctl_t *c, int cgcode, int64_t *out, size_t max) {
  struct tm a = {0}, b = {0};
  if ((cgcode != 1 && cgcode != 2) || strptime(c->from, "%Y-%m-%d %H:%M:%S", &a) == NULL ||
      strptime(c->to, "%Y-%m-%d %H:%M:%S", &b) == NULL)
    return 0;
  hes_tz_civil_t ca = {a.tm_year + 1900, a.tm_mon + 1, a.tm_mday, a.tm_hour, a.tm_min, a.tm_sec};
  hes_tz_civil_t cb = {b.tm_year + 1900, b.tm_mon + 1, b.tm_mday, b.tm_hour, b.tm_min, b.tm_sec};
  int64_t start, end;
  if (!hes_tz_local_to_utc(c->tz, &ca, &start) || !hes_tz_local_to_utc(c->tz, &cb, &end))
    return 0;
  /* The plugin's calendar (backfill): the freeze times at or before `to`, back to `from`. */
  size_t n = 0;
  for (int64_t t = hes_backfill_floor((hes_backfill_kind_t)cgcode, c->tz, end);
       t >= start && n < max; t = hes_backfill_floor((hes_backfill_kind_t)cgcode, c->tz, t - 1))
    out[n++] = t;
  for (size_t i = 0; i < n / 2; i++) { /* oldest first */
    int64_t x = out[i];
    out[i] = out[n - 1 - i];
    out[n - 1 - i] = x;
  }
  return n;
}

static row_t *add_missing_row(ctl_t *c, size_t meter, size_t item, int64_t ts_ms) {
  row_t *row = row_new(c);
  if (row == NULL)
    return NULL;
  row->meter = (uint32_t)meter;
  row->item = item;
  row->ts_ms = ts_ms;
  row->status = "missing";
  return row;
}

/* Missing rows: per meter and item, or for billing items per meter and freeze time, so the
 * operator sees which days a meter lacks. Rows must not be sorted yet. */
static void add_missing(ctl_t *c) {
  int64_t times[400]; /* half a year of days */
  for (size_t it = 0; it < (c->op == OP_READ ? c->nitems : 1); it++) {
    size_t nt = 0;
    if (c->op == OP_READ && c->items[it]->category == HES_ITEM_COMPOSITE)
      nt = freeze_times(c, c->items[it]->cgcode, times, sizeof(times) / sizeof(times[0]));
    bool *seen = nt > 0 ? calloc(c->nmeters * nt, sizeof(bool)) : NULL;
    if (seen != NULL) {
      size_t rows = c->nrows;
      for (size_t i = 0; i < rows; i++) {
        const row_t *r = &c->rows[i];
        if (r->item != it)
          continue;
        for (size_t t = 0; t < nt; t++)
          if (times[t] * 1000 == r->ts_ms)
            seen[r->meter * nt + t] = true;
      }
      for (size_t m = 0; m < c->nmeters; m++)
        for (size_t t = 0; t < nt; t++)
          if (!seen[m * nt + t] && add_missing_row(c, m, it, times[t] * 1000) == NULL)
            break;
      free(seen);
      continue;
    }
    for (size_t m = 0; m < c->nmeters; m++)
      if (!c->answered[it * c->nmeters + m] && add_missing_row(c, m, it, -1) == NULL)
        return;
  }
}

static void format_time(const ctl_t *c, int64_t ts_ms, char *buf, size_t len) {
  if (ts_ms < 0 || !hes_tz_format(c->tz, ts_ms / 1000, buf, len))
    snprintf(buf, len, "?");
}

/* Prints the readings (read and history) and sets the exit code from them. */
static void print_readings(ctl_t *c) {
  bool frozen = false;
  for (size_t i = 0; i < c->nitems; i++)
    frozen |= c->items[i]->category == HES_ITEM_COMPOSITE;
  add_missing(c);
  qsort(c->rows, c->nrows, sizeof(*c->rows), cmp_rows);
  static const col_t cols[] = {{"meter", true}, {"time", true},    {"timestamp_ms", false},
                               {"item", true},  {"channel", true}, {"value", true},
                               {"unit", true},  {"status", true}};
  col_t shown[8];
  memcpy(shown, cols, sizeof(cols));
  shown[4].table = frozen;
  out_t o = {.cols = shown, .ncols = 8};
  for (size_t i = 0; i < c->nrows; i++) {
    const row_t *r = &c->rows[i];
    const hes_item_t *item = c->items[r->item];
    bool missing = strcmp(r->status, "missing") == 0;
    if (strcmp(r->status, "ok") != 0)
      worst(c, EXIT_SOME_FAILED);
    out_cell(&o, J_STR, "%s", c->meter_list[r->meter]);
    if (r->ts_ms < 0) {
      out_cell(&o, J_NULL, "%s", "");
      out_cell(&o, J_NULL, "%s", "");
    } else {
      char t[HES_TZ_FORMAT_SIZE];
      format_time(c, r->ts_ms, t, sizeof(t));
      out_cell(&o, J_STR, "%s", t);
      out_cell(&o, J_NUM, "%" PRId64, r->ts_ms);
    }
    out_cell(&o, J_STR, "%s", item->name);
    if (r->channel != 0) {
      const hes_item_t *ch = hes_item_by_cgcode(r->channel);
      if (ch != NULL)
        out_cell(&o, J_STR, "%s", ch->name);
      else
        out_cell(&o, J_STR, "%d", r->channel);
    } else {
      out_cell(&o, J_NULL, "%s", "");
    }
    if (missing) {
      out_cell(&o, J_NULL, "%s", "");
      out_cell(&o, J_NULL, "%s", "");
    } else {
      out_cell(&o, r->number ? J_NUM : J_STR, "%s", r->value);
      out_cell(&o, J_STR, "%s", r->unit);
    }
    out_cell(&o, J_STR, "%s", r->status);
  }
  if (o.oom) {
    errx_("out of memory");
    worst(c, EXIT_SOME_FAILED);
  } else {
    out_print(&o, c->opt.fmt, stdout);
  }
  out_free(&o);
}

static int alloc_answered(ctl_t *c, size_t n) {
  c->answered = calloc(n ? n : 1, sizeof(bool));
  if (c->answered == NULL) {
    errx_("out of memory");
    return -1;
  }
  return 0;
}

static int cmd_read(ctl_t *c) {
  if (alloc_answered(c, c->nitems * c->nmeters) != 0)
    return EXIT_SOME_FAILED;
  int rc = session_mqtt(c);
  if (rc != EXIT_ALL_OK)
    return rc;
  size_t batch = (size_t)c->opt.batch_size;
  bool stop = false;
  for (size_t it = 0; it < c->nitems && !stop && !interrupted; it++) {
    const hes_item_t *item = c->items[it];
    for (size_t first = 0; first < c->nmeters && !stop && !interrupted; first += batch) {
      size_t n = c->nmeters - first < batch ? c->nmeters - first : batch;
      hes_api_plan_t plan;
      hes_api_error_t err;
      hes_plans_request_begin(c->plans);
      hes_api_result_t r;
      if (item->category == HES_ITEM_COMPOSITE)
        r = hes_api_read_frozen(c->api, now_s(), c->meter_list + first, n, item->cgcode, c->from,
                                c->to, &plan, &err);
      else
        r = hes_api_read_single(c->api, now_s(), c->meter_list + first, n, item->cgcode, &plan,
                                &err);
      if (r != HES_API_OK) {
        hes_plans_request_end(c->plans);
        report_api_error(&err);
        worst(c, r == HES_API_EINVAL ? EXIT_USAGE : EXIT_HES);
        stop = true;
        break;
      }
      int tr = plan_track(c, &plan, OP_READ, it, first, n);
      hes_plans_request_end(c->plans);
      if (tr != 0) {
        worst(c, EXIT_HES);
        stop = true;
      }
    }
  }
  wait_pushes(c);
  session_end(c);
  if (c->nplans == 0)
    return c->rc; /* the HES refused the first request: nothing to show */
  print_readings(c);
  return c->rc;
}

static int cmd_history(ctl_t *c) {
  if (alloc_answered(c, c->nitems * c->nmeters) != 0)
    return EXIT_SOME_FAILED;
  bool tty = isatty(STDERR_FILENO);
  size_t batch = (size_t)c->opt.batch_size;
  bool stop = false;
  for (size_t it = 0; it < c->nitems && !stop && !interrupted; it++) {
    const hes_item_t *item = c->items[it];
    bool frozen = item->category == HES_ITEM_COMPOSITE;
    for (size_t first = 0; first < c->nmeters && !stop && !interrupted; first += batch) {
      size_t n = c->nmeters - first < batch ? c->nmeters - first : batch;
      hes_api_error_t err;
      hes_api_history_t *h =
          hes_api_history_new(c->api, frozen, c->meter_list + first, n, item->cgcode, c->from,
                              c->to, (int)c->opt.page_size, &err);
      if (h == NULL) {
        report_api_error(&err);
        worst(c, err.kind == HES_API_EINVAL ? EXIT_USAGE : EXIT_HES);
        stop = true;
        break;
      }
      size_t pages = 0, got = 0;
      for (;;) {
        hes_push_t page;
        hes_api_result_t r = hes_api_history_next(h, now_s(), &page, &err);
        if (r != HES_API_OK) {
          if (tty)
            fputs("\r\033[K", stderr);
          report_api_error(&err);
          worst(c, EXIT_HES);
          stop = true;
          break;
        }
        if (page.entries == 0 || interrupted)
          break;
        pages++;
        got += page.entries;
        if (page.skipped > 0)
          errx_("warning: %s history: skipped %zu malformed entr%s: %s", item->name, page.skipped,
                page.skipped == 1 ? "y" : "ies", page.skipped_reason);
        for (size_t i = 0; i < page.count; i++) {
          const hes_push_reading_t *rd = &page.readings[i];
          uint32_t idx = hes_meters_find(c->meters, rd->dev_addr, rd->dev_addr_len);
          if (idx == HES_METER_NONE || idx < first || idx >= first + n)
            continue;
          const hes_item_t *conv = item;
          if (frozen) {
            conv = hes_item_by_cgcode(rd->cgcode);
            if (conv != NULL && conv->category != HES_ITEM_SINGLE)
              conv = NULL;
            if (conv == NULL && !c->opt.raw)
              continue;
          } else if (rd->cgcode != 0 && rd->cgcode != item->cgcode) {
            continue;
          }
          row_t *row = row_new(c);
          if (row == NULL)
            break;
          row->meter = idx;
          row->item = it;
          row->ts_ms = rd->timestamp_ms;
          row->channel = frozen ? rd->cgcode : 0;
          set_reading(c, row, conv, rd->value, rd->unit);
          c->answered[it * c->nmeters + idx] = true;
        }
        if (tty) {
          long total = hes_api_history_total(h);
          fprintf(stderr, "\r\033[Khesctl: %s history: page %zu, %zu of %ld entries", item->name,
                  pages, got, total);
          fflush(stderr);
        }
      }
      hes_api_history_free(h);
    }
  }
  if (tty)
    fputs("\r\033[K", stderr);
  if (stop && c->nrows == 0)
    return c->rc; /* the HES refused: nothing to show */
  print_readings(c);
  return c->rc;
}

static int confirm(const ctl_t *c) {
  if (c->opt.yes)
    return EXIT_ALL_OK;
  if (!isatty(STDIN_FILENO)) {
    errx_("relay %s: refusing without --yes: stdin is not a terminal to confirm on",
          c->control_mode == 1 ? "open" : "close");
    return EXIT_USAGE;
  }
  fprintf(stderr, "%s the breaker of %zu meter%s (%s%s)? Type yes to confirm: ",
          c->control_mode == 1 ? "Open (disconnect)" : "Close (reconnect)", c->nmeters,
          c->nmeters == 1 ? "" : "s", c->meter_list[0], c->nmeters > 1 ? ", ..." : "");
  fflush(stderr);
  char line[64];
  if (fgets(line, sizeof(line), stdin) == NULL)
    line[0] = '\0';
  line[strcspn(line, "\r\n")] = '\0';
  if (strcmp(line, "yes") != 0) {
    errx_("not confirmed: nothing sent");
    return EXIT_USAGE;
  }
  return EXIT_ALL_OK;
}

static int cmd_relay(ctl_t *c) {
  int rc = confirm(c);
  if (rc != EXIT_ALL_OK)
    return rc;
  if (alloc_answered(c, c->nmeters) != 0)
    return EXIT_SOME_FAILED;
  rc = session_mqtt(c);
  if (rc != EXIT_ALL_OK)
    return rc;
  size_t batch = (size_t)c->opt.batch_size;
  for (size_t first = 0; first < c->nmeters && !interrupted; first += batch) {
    size_t n = c->nmeters - first < batch ? c->nmeters - first : batch;
    hes_api_plan_t plan;
    hes_api_error_t err;
    hes_plans_request_begin(c->plans);
    hes_api_result_t r =
        hes_api_relay(c->api, now_s(), c->meter_list + first, n, c->control_mode, &plan, &err);
    if (r != HES_API_OK) {
      hes_plans_request_end(c->plans);
      report_api_error(&err);
      worst(c, EXIT_HES);
      break;
    }
    int tr = plan_track(c, &plan, OP_RELAY, 0, first, n);
    hes_plans_request_end(c->plans);
    if (tr != 0) {
      worst(c, EXIT_HES);
      break;
    }
  }
  wait_pushes(c);
  session_end(c);
  if (c->nplans == 0)
    return c->rc; /* the HES refused the first request: nothing to show */
  add_missing(c);
  qsort(c->rows, c->nrows, sizeof(*c->rows), cmp_rows);
  static const col_t cols[] = {{"meter", true}, {"action", true}, {"outcome", true}};
  out_t o = {.cols = cols, .ncols = 3};
  for (size_t i = 0; i < c->nrows; i++) {
    if (strcmp(c->rows[i].status, "ok") != 0)
      worst(c, EXIT_SOME_FAILED);
    out_cell(&o, J_STR, "%s", c->meter_list[c->rows[i].meter]);
    out_cell(&o, J_STR, "%s", c->control_mode == 1 ? "open" : "close");
    out_cell(&o, J_STR, "%s", c->rows[i].status);
  }
  out_print(&o, c->opt.fmt, stdout);
  out_free(&o);
  return c->rc;
}

static int cmd_dcu(ctl_t *c) {
  int rc = session_mqtt(c);
  if (rc != EXIT_ALL_OK)
    return rc;
  hes_api_plan_t plan;
  hes_api_error_t err;
  hes_api_result_t r;
  hes_plans_request_begin(c->plans);
  if (c->op == OP_DCU_LIST) {
    r = hes_api_read_archive(c->api, now_s(), c->dcu, &plan, &err);
  } else if (c->op == OP_DCU_ADD) {
    hes_api_archive_t *a = calloc(c->nmeters, sizeof(*a));
    if (a == NULL) {
      hes_plans_request_end(c->plans);
      errx_("out of memory");
      return EXIT_SOME_FAILED;
    }
    for (size_t i = 0; i < c->nmeters; i++) {
      a[i].dev_addr = c->meter_list[i];
      a[i].enabled = !c->opt.disabled;
    }
    r = hes_api_add_archive(c->api, now_s(), c->dcu, a, c->nmeters, &plan, &err);
    free(a);
  } else {
    r = hes_api_remove_archive(c->api, now_s(), c->dcu, c->meter_list, c->nmeters, &plan, &err);
  }
  if (r != HES_API_OK) {
    hes_plans_request_end(c->plans);
    report_api_error(&err);
    session_end(c);
    return r == HES_API_EINVAL ? EXIT_USAGE : EXIT_HES;
  }
  int tr = plan_track(c, &plan, c->op, 0, 0, 0);
  hes_plans_request_end(c->plans);
  if (tr != 0) {
    session_end(c);
    return EXIT_HES;
  }
  wait_pushes(c);
  session_end(c);
  const plan_t *pl = &c->plans_made[0];
  if (c->op == OP_DCU_LIST) {
    static const col_t cols[] = {{"dcu", true},
                                 {"meter", true},
                                 {"enabled", true},
                                 {"comm_type", true},
                                 {"module_next", true}};
    out_t o = {.cols = cols, .ncols = 5};
    for (size_t i = 0; i < c->nrows; i++) {
      const row_t *row = &c->rows[i];
      out_cell(&o, J_STR, "%s", c->dcu);
      out_cell(&o, J_STR, "%s", row->dev);
      out_cell(&o, J_BOOL, "%s", row->enabled ? "true" : "false");
      out_cell(&o, J_STR, "%s", row->comm_type);
      out_cell(&o, J_STR, "%s", row->module_next);
    }
    out_print(&o, c->opt.fmt, stdout);
    out_free(&o);
    if (pl->done && pl->failed) {
      errx_("dcu list %s: the HES reports the operation failed", c->dcu);
      worst(c, EXIT_SOME_FAILED);
    }
    return c->rc;
  }
  const char *outcome = !pl->done ? "missing" : pl->failed ? "failed" : "ok";
  static const col_t cols[] = {{"dcu", true}, {"meter", true}, {"action", true}, {"outcome", true}};
  out_t o = {.cols = cols, .ncols = 4};
  for (size_t i = 0; i < c->nmeters; i++) {
    out_cell(&o, J_STR, "%s", c->dcu);
    out_cell(&o, J_STR, "%s", c->meter_list[i]);
    out_cell(&o, J_STR, "%s", c->op == OP_DCU_ADD ? "add" : "remove");
    out_cell(&o, J_STR, "%s", outcome);
  }
  out_print(&o, c->opt.fmt, stdout);
  out_free(&o);
  if (strcmp(outcome, "ok") != 0)
    worst(c, EXIT_SOME_FAILED);
  return c->rc;
}

/* ---- arguments ------------------------------------------------------------------------------- */

static void usage(FILE *f) {
  fputs(
      "usage: hesctl [options] read METER... --item ITEM [--item ITEM...] [--from T --to T]\n"
      "       hesctl [options] history METER... --item ITEM --from T --to T\n"
      "       hesctl [options] relay open|close METER... [--yes]\n"
      "       hesctl [options] dcu list DCU\n"
      "       hesctl [options] dcu add|remove DCU METER...\n"
      "\n"
      "Connection (a <Plugin hes> <Server> block of the collectd config, or flags):\n"
      "  -c, --config FILE      read the plugin's collectd config file\n"
      "  -s, --server NAME      the <Server \"NAME\"> block, when there are several\n"
      "      --url URL          HES base URL (the tool appends /apis/openapi/...)\n"
      "      --tenant CODE      TenantCode\n"
      "      --username USER    Username\n"
      "      --secret-key KEY   SecretKey (or the environment variable HES_SECRET_KEY)\n"
      "      --broker HOST[:PORT]  the MQTT broker the HES pushes to\n"
      "      --mqtt-user USER   MQTT user (its password: HES_MQTT_PASSWORD)\n"
      "  The HES password comes from the config or the environment variable HES_PASSWORD.\n"
      "\n"
      "What and how:\n"
      "  -i, --item ITEM        voltageA, importActiveEnergy, ..., dailyBilling, monthlyBilling,\n"
      "                         loadProfile, or a cgcode (repeatable for read)\n"
      "      --from T, --to T   \"YYYY-MM-DD[ HH:MM:SS]\" in the HES's time zone (the\n"
      "                         config's TimeZone, else TZ): frozen reads and history\n"
      "  -f, --meter-file FILE  more meters, one a line, '#' comments\n"
      "  -t, --timeout SEC      wait for the pushes this long (default 60)\n"
      "      --batch-size N     meters per request (default 100)\n"
      "      --page-size N      history entries per page (default 100)\n"
      "      --raw              values and units as the HES sent them (default: SI units)\n"
      "      --disabled         dcu add: add the meters disabled (status 0)\n"
      "  -y, --yes              relay: do not ask for confirmation\n"
      "      --json, --csv      machine-readable output (default: a table)\n"
      "  -h, --help, -V, --version\n"
      "\n"
      "Exit status: 0 all ok; 1 some meters failed or are missing; 2 usage error or relay not\n"
      "confirmed; 3 HES or HTTP error; 4 MQTT error or no push within --timeout;\n"
      "5 configuration error. See hesctl(1).\n",
      f);
}

static bool parse_long_arg(const char *name, const char *s, long lo, long hi, long *out) {
  char *end = NULL;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
    errx_("%s %s: expected a whole number from %ld to %ld", name, s, lo, hi);
    return false;
  }
  *out = v;
  return true;
}

/* "YYYY-MM-DD" or "YYYY-MM-DD HH:MM:SS" (or with a T): the HES's form, in out[20]. */
static bool parse_time_arg(const char *name, const char *s, bool end_of_day, char *out) {
  size_t len = strlen(s);
  if (len == 10) {
    snprintf(out, 20, "%s %s", s, end_of_day ? "23:59:59" : "00:00:00");
  } else if (len == 19 && (s[10] == ' ' || s[10] == 'T')) {
    memcpy(out, s, 19);
    out[10] = ' ';
    out[19] = '\0';
  } else {
    errx_("%s \"%.40s\": expected YYYY-MM-DD or \"YYYY-MM-DD HH:MM:SS\"", name, s);
    return false;
  }
  char why[128];
  if (!hes_api_range_valid(out, out, why, sizeof(why))) {
    errx_("%s \"%.40s\": %s", name, s, why);
    return false;
  }
  return true;
}

static int add_meter(ctl_t *c, const char *m) {
  hes_meters_result_t r = hes_meters_add(c->meters, m);
  if (r == HES_METERS_EDUPLICATE)
    return 0; /* listed twice: asked once */
  if (r == HES_METERS_EINVAL) {
    errx_("\"%.40s\" is not a meter number (1..%d of 0-9 A-Z a-z _ -)", m, HES_METER_MAX_LEN);
    return EXIT_USAGE;
  }
  if (r != HES_METERS_OK) {
    errx_("out of memory");
    return EXIT_SOME_FAILED;
  }
  return 0;
}

enum {
  OPT_URL = 256,
  OPT_TENANT,
  OPT_USERNAME,
  OPT_SECRET,
  OPT_BROKER,
  OPT_MQTT_USER,
  OPT_FROM,
  OPT_TO,
  OPT_JSON,
  OPT_CSV,
  OPT_RAW,
  OPT_PAGE,
  OPT_BATCH,
  OPT_DISABLED,
};

static const struct option long_opts[] = {
    {"config", required_argument, NULL, 'c'},
    {"server", required_argument, NULL, 's'},
    {"url", required_argument, NULL, OPT_URL},
    {"tenant", required_argument, NULL, OPT_TENANT},
    {"username", required_argument, NULL, OPT_USERNAME},
    {"secret-key", required_argument, NULL, OPT_SECRET},
    {"broker", required_argument, NULL, OPT_BROKER},
    {"mqtt-user", required_argument, NULL, OPT_MQTT_USER},
    {"item", required_argument, NULL, 'i'},
    {"from", required_argument, NULL, OPT_FROM},
    {"to", required_argument, NULL, OPT_TO},
    {"meter-file", required_argument, NULL, 'f'},
    {"timeout", required_argument, NULL, 't'},
    {"batch-size", required_argument, NULL, OPT_BATCH},
    {"page-size", required_argument, NULL, OPT_PAGE},
    {"raw", no_argument, NULL, OPT_RAW},
    {"disabled", no_argument, NULL, OPT_DISABLED},
    {"yes", no_argument, NULL, 'y'},
    {"json", no_argument, NULL, OPT_JSON},
    {"csv", no_argument, NULL, OPT_CSV},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

/* Returns -1 to go on, or the exit code. */
static int parse_args(ctl_t *c, int argc, char **argv) {
  opts_t *o = &c->opt;
  o->timeout = 60;
  o->page_size = 100;
  o->batch_size = CTL_DEFAULT_BATCH;
  int ch;
  long n;
  opterr = 0;
  while ((ch = getopt_long(argc, argv, ":c:s:i:f:t:yhV", long_opts, NULL)) != -1) {
    switch (ch) {
    case 'c':
      o->config = optarg;
      break;
    case 's':
      o->server = optarg;
      break;
    case OPT_URL:
      o->url = optarg;
      break;
    case OPT_TENANT:
      o->tenant = optarg;
      break;
    case OPT_USERNAME:
      o->username = optarg;
      break;
    case OPT_SECRET:
      o->secret_key = optarg;
      break;
    case OPT_BROKER:
      o->broker = optarg;
      break;
    case OPT_MQTT_USER:
      o->mqtt_user = optarg;
      break;
    case 'i':
      if (o->nitems == CTL_ITEMS_MAX) {
        errx_("at most %d --item", CTL_ITEMS_MAX);
        return EXIT_USAGE;
      }
      o->items[o->nitems++] = optarg;
      break;
    case OPT_FROM:
      o->from = optarg;
      break;
    case OPT_TO:
      o->to = optarg;
      break;
    case 'f':
      o->meter_file = optarg;
      break;
    case 't':
      if (!parse_long_arg("--timeout", optarg, 1, 86400, &n))
        return EXIT_USAGE;
      o->timeout = (double)n;
      break;
    case OPT_BATCH:
      if (!parse_long_arg("--batch-size", optarg, 1, 10000, &o->batch_size))
        return EXIT_USAGE;
      break;
    case OPT_PAGE:
      if (!parse_long_arg("--page-size", optarg, 1, 10000, &o->page_size))
        return EXIT_USAGE;
      break;
    case OPT_RAW:
      o->raw = true;
      break;
    case OPT_DISABLED:
      o->disabled = true;
      break;
    case 'y':
      o->yes = true;
      break;
    case OPT_JSON:
      o->fmt = FMT_JSON;
      break;
    case OPT_CSV:
      o->fmt = FMT_CSV;
      break;
    case 'h':
      usage(stdout);
      return EXIT_ALL_OK;
    case 'V':
      printf("hesctl (%s) %s\n", PACKAGE_NAME, PACKAGE_VERSION);
      return EXIT_ALL_OK;
    case ':':
      errx_("%s needs a value (see --help)", argv[optind - 1]);
      return EXIT_USAGE;
    default:
      errx_("unknown option %s (see --help)", argv[optind - 1]);
      return EXIT_USAGE;
    }
  }
  char **args = argv + optind;
  int nargs = argc - optind;
  if (nargs < 1) {
    usage(stderr);
    return EXIT_USAGE;
  }
  const char *cmd = args[0];
  int first_meter = 1;
  if (strcmp(cmd, "read") == 0 || strcmp(cmd, "history") == 0) {
    c->op = OP_READ;
  } else if (strcmp(cmd, "relay") == 0) {
    c->op = OP_RELAY;
    if (nargs < 2 || (strcmp(args[1], "open") != 0 && strcmp(args[1], "close") != 0)) {
      errx_("relay: expected open or close, then meters");
      return EXIT_USAGE;
    }
    c->control_mode = strcmp(args[1], "open") == 0 ? 1 : 2;
    first_meter = 2;
  } else if (strcmp(cmd, "dcu") == 0) {
    if (nargs < 3) {
      errx_("dcu: expected list DCU, add DCU METER... or remove DCU METER...");
      return EXIT_USAGE;
    }
    if (strcmp(args[1], "list") == 0)
      c->op = OP_DCU_LIST;
    else if (strcmp(args[1], "add") == 0)
      c->op = OP_DCU_ADD;
    else if (strcmp(args[1], "remove") == 0)
      c->op = OP_DCU_REMOVE;
    else {
      errx_("dcu: expected list, add or remove, not \"%.20s\"", args[1]);
      return EXIT_USAGE;
    }
    c->dcu = args[2];
    if (!hes_meter_is_valid(c->dcu)) {
      errx_("\"%.40s\" is not a DCU number", c->dcu);
      return EXIT_USAGE;
    }
    if (c->op == OP_DCU_LIST && nargs > 3) {
      errx_("dcu list: takes one DCU and no meters");
      return EXIT_USAGE;
    }
    first_meter = 3;
  } else {
    errx_("unknown command \"%.20s\" (see --help)", cmd);
    return EXIT_USAGE;
  }
  bool history = strcmp(cmd, "history") == 0;
  c->meters = hes_meters_new();
  if (c->meters == NULL) {
    errx_("out of memory");
    return EXIT_SOME_FAILED;
  }
  for (int i = first_meter; i < nargs; i++) {
    int r = add_meter(c, args[i]);
    if (r != 0)
      return r;
  }
  if (o->meter_file != NULL) {
    size_t bad = 0;
    hes_meters_result_t r = hes_meters_add_file(c->meters, o->meter_file, &bad);
    if (r == HES_METERS_EIO) {
      errx_("%s: %s", o->meter_file, strerror(errno));
      return EXIT_USAGE;
    }
    if (r == HES_METERS_EDUPLICATE) {
      /* the module stops at a duplicate: going on would drop the meters after it */
      errx_("%s:%zu: a meter listed twice (in the file, or also on the command line)",
            o->meter_file, bad);
      return EXIT_USAGE;
    }
    if (r != HES_METERS_OK) {
      errx_("%s:%zu: not a meter number", o->meter_file, bad);
      return EXIT_USAGE;
    }
  }
  c->nmeters = hes_meters_count(c->meters);
  if (c->op != OP_DCU_LIST && c->nmeters == 0) {
    errx_("%s: no meters given", cmd);
    return EXIT_USAGE;
  }
  if (c->nmeters > CTL_MEMBERS_MAX) {
    errx_("%zu meters: at most %d at a time", c->nmeters, CTL_MEMBERS_MAX);
    return EXIT_USAGE;
  }
  if (hes_meters_seal(c->meters) != HES_METERS_OK) {
    errx_("out of memory");
    return EXIT_SOME_FAILED;
  }
  c->meter_list = calloc(c->nmeters ? c->nmeters : 1, sizeof(*c->meter_list));
  if (c->meter_list == NULL) {
    errx_("out of memory");
    return EXIT_SOME_FAILED;
  }
  for (size_t i = 0; i < c->nmeters; i++)
    c->meter_list[i] = hes_meters_at(c->meters, (uint32_t)i);

  if (c->op == OP_READ) {
    if (o->nitems == 0) {
      errx_("%s: --item is required", cmd);
      return EXIT_USAGE;
    }
    if (history && o->nitems > 1) {
      errx_("history: one --item at a time");
      return EXIT_USAGE;
    }
    bool frozen = false, single = false;
    for (size_t i = 0; i < o->nitems; i++) {
      const hes_item_t *it = hes_item_parse(o->items[i]);
      if (it == NULL) {
        errx_("--item %.40s: unknown item (see hesctl(1) for the list)", o->items[i]);
        return EXIT_USAGE;
      }
      c->items[c->nitems++] = it;
      frozen |= it->category == HES_ITEM_COMPOSITE;
      single |= it->category == HES_ITEM_SINGLE;
    }
    bool ranged = history || frozen;
    if (!history && frozen && single) {
      errx_("read: frozen items (%s) and instantaneous ones cannot be mixed",
            "dailyBilling, monthlyBilling, loadProfile");
      return EXIT_USAGE;
    }
    if (ranged && (o->from == NULL || o->to == NULL)) {
      errx_("%s %s: --from and --to are required", cmd, history ? "" : "of a frozen item");
      return EXIT_USAGE;
    }
    if (!ranged && (o->from != NULL || o->to != NULL)) {
      errx_("read: --from and --to are for frozen items (and history) only");
      return EXIT_USAGE;
    }
    if (ranged) {
      char why[128];
      if (!parse_time_arg("--from", o->from, false, c->from) ||
          !parse_time_arg("--to", o->to, true, c->to))
        return EXIT_USAGE;
      if (!hes_api_range_valid(c->from, c->to, why, sizeof(why))) {
        errx_("--from %s --to %s: %s", c->from, c->to, why);
        return EXIT_USAGE;
      }
    }
  } else if (o->nitems > 0 || o->from != NULL || o->to != NULL) {
    errx_("%s: --item, --from and --to are for read and history", cmd);
    return EXIT_USAGE;
  }
  if (o->disabled && c->op != OP_DCU_ADD) {
    errx_("--disabled is for dcu add");
    return EXIT_USAGE;
  }
  if (o->yes && c->op != OP_RELAY) {
    errx_("--yes is for relay");
    return EXIT_USAGE;
  }
  return history ? -2 : -1;
}

int main(int argc, char **argv) {
  static ctl_t ctl; /* zeroed */
  ctl_t *c = &ctl;
  c->set.verify_peer = true;
  c->set.verify_host = true;
  c->set.mqtt_qos = 1;
  pthread_mutex_init(&c->lock, NULL);
  pthread_cond_init(&c->cond, NULL);

  catch_interrupts();
  int rc = parse_args(c, argc, argv);
  bool history = rc == -2;
  if (rc >= 0)
    goto out;
  rc = EXIT_ALL_OK;
  if (c->opt.config != NULL && load_config(c->opt.config, c->opt.server, &c->set) != 0) {
    rc = EXIT_CONFIG;
    goto out;
  }
  if (c->opt.config == NULL && c->opt.server != NULL) {
    errx_("--server needs --config");
    rc = EXIT_USAGE;
    goto out;
  }
  if (settings_finish(&c->set, &c->opt) != 0) {
    rc = EXIT_CONFIG;
    goto out;
  }
  {
    /* The HES's zone, for --from/--to and the times printed: the config's TimeZone, else TZ,
     * else the host's. The tz module reads the zone itself, as the plugin does. */
    const char *zone = c->set.time_zone;
    if (zone == NULL && getenv("TZ") != NULL && getenv("TZ")[0] != '\0')
      zone = getenv("TZ")[0] == ':' ? getenv("TZ") + 1 : getenv("TZ");
    char why[256] = "";
    c->tz = hes_tz_load(zone, why, sizeof(why));
    if (c->tz == NULL) {
      errx_("TimeZone \"%s\": %s", zone != NULL ? zone : "", why);
      rc = EXIT_CONFIG;
      goto out;
    }
  }
  c->plans = hes_plans_new(NULL);
  c->parser = hes_push_parser_new(0);
  c->mqtt_parser = hes_push_parser_new(0);
  if (c->plans == NULL || c->parser == NULL || c->mqtt_parser == NULL) {
    errx_("out of memory");
    rc = EXIT_SOME_FAILED;
    goto out;
  }
  rc = session_api(c);
  if (rc != EXIT_ALL_OK)
    goto out;
  if (history)
    rc = cmd_history(c);
  else if (c->op == OP_READ)
    rc = cmd_read(c);
  else if (c->op == OP_RELAY)
    rc = cmd_relay(c);
  else
    rc = cmd_dcu(c);
  if (interrupted) {
    errx_("interrupted");
    rc = EXIT_INTERRUPTED;
  }

out:
  session_end(c);
  hes_api_free(c->api);
  hes_plans_free(c->plans);
  hes_tz_free(c->tz);
  hes_push_parser_free(c->parser);
  hes_push_parser_free(c->mqtt_parser);
  hes_meters_free(c->meters);
  free(c->meter_list);
  free(c->plans_made);
  free(c->rows);
  free(c->answered);
  settings_free(&c->set);
  pthread_cond_destroy(&c->cond);
  pthread_mutex_destroy(&c->lock);
  if (fflush(stdout) != 0 && rc == EXIT_ALL_OK)
    rc = EXIT_SOME_FAILED;
  return rc;
}
