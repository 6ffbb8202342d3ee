/* hesctl.h: what the files of hesctl share (src/hesctl/): exit codes, the settings, the
 * output table, the session (api, MQTT thread, plans, the pushes' queue and the result rows),
 * and the functions one file calls in another. hesctl is one program: these are not a
 * library's interface.
 *
 * The files, by duty: main.c (arguments, main), settings.c (the config file's <Server> block,
 * checked by the plugin's rules in conf.c, then the flags over it), output.c (table, JSON, CSV),
 * session.c (api, MQTT, plans, pushes), commands.c (read, history, relay, dcu). */
#ifndef HESCTL_H
#define HESCTL_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "api.h"
#include "backfill.h"
#include "clock.h"
#include "conf.h"
#include "conf_tree.h"
#include "items.h"
#include "meters.h"
#include "mqtt.h"
#include "plans.h"
#include "push.h"
#include "session.h"
#include "tz.h"

enum {
  EXIT_ALL_OK = 0,
  EXIT_SOME_FAILED = 1,
  EXIT_USAGE = 2,
  EXIT_HES = 3,
  EXIT_MQTT = 4,
  EXIT_CONFIG = 5,
  EXIT_PUSH = 6, /* pushes came but were rejected (not parseable, wrong kind, no room) */
};

#define CTL_ITEMS_MAX     16
#define CTL_MEMBERS_MAX   100000
#define CTL_READY_MAX     10.0 /* seconds to wait for the broker at most */
#define CTL_UNIT_MAX      16
#define CTL_TEXT_MAX      64
#define CTL_DEFAULT_BATCH 100
#define CTL_BATCH_MAX     10000 /* --batch-size at most */

typedef enum { FMT_TABLE, FMT_JSON, FMT_CSV } fmt_t;

typedef enum { OP_READ, OP_RELAY, OP_DCU_LIST, OP_DCU_ADD, OP_DCU_REMOVE, OP_CHECK } op_t;

/* ---- settings: the config file's <Server> block, then the flags over it ------------------- */

typedef struct {
  /* the config file's <Server> as the config module checked it, or a blank one without a
   * file; the flags and the environment are written over it (settings_finish) */
  hes_conf_server_t *srv;
  char *state_dir;
} settings_t;

typedef struct {
  const char *config, *server;
  const char *url, *tenant, *username, *broker, *mqtt_user;
  const char *items[CTL_ITEMS_MAX];
  size_t nitems;
  const char *from, *to;
  const char *meter_file;
  fmt_t fmt;
  bool raw, yes, disabled, all;
  double timeout;
  long page_size;
  long batch_size;
} opts_t;

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

/* ---- the session (src/lib/session.h) and this run's plans ------------------------------------ */

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
  double latency;     /* seconds from the plan's request to its push; < 0: none */
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

  hes_api_config_t api_cfg;
  hes_session_t *session;
  hes_session_client_t *client;              /* main thread */
  hes_mqtt_t *mqtt;                          /* the session's */
  hes_session_route_t routes[CTL_ITEMS_MAX]; /* read plans, by item */
  hes_session_route_t route_relay, route_dcu;
  pthread_t thread;
  bool thread_started;

  /* The sinks run on the MQTT thread and, for parked pushes, on the main thread: plans_made,
   * rows, answered, mqtt_why and rejected are under lock. */
  pthread_mutex_t lock;
  pthread_cond_t cond; /* a plan is done */
  char mqtt_why[256];
  uint64_t rejected; /* pushes rejected whole (not parseable, wrong kind, no room to park) */

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
extern volatile sig_atomic_t interrupted; /* set by the handler in session.c */

/* settings.c */
/* A blank server with hesctl's defaults (no config file); -1 out of memory. */
int settings_init(settings_t *s);
void settings_free(settings_t *s);
/* The first MeterFile (the plugin watches it), or NULL. */
const char *settings_meter_file(const settings_t *s);
void errx_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int load_config(const char *file, const char *name, settings_t *s);
int check_config(const char *file);
int settings_finish(settings_t *s, const opts_t *o);

/* output.c */
void sanitize(char *dst, size_t dstlen, const char *src, size_t srclen);
void out_cell(out_t *o, jtype_t type, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void out_free(out_t *o);
void out_print(const out_t *o, fmt_t fmt, FILE *f);

/* session.c */
void catch_interrupts(void);
void worst(ctl_t *c, int rc);
row_t *row_new(ctl_t *c);
int session_api(ctl_t *c);
int session_open(ctl_t *c, bool mqtt);
int session_mqtt(ctl_t *c);
void session_end(ctl_t *c);
void session_free(ctl_t *c);
void report_api_error(const hes_api_error_t *err);
void set_reading(ctl_t *c, row_t *row, const hes_item_t *item, const char *value, const char *unit);
hes_api_result_t plan_request(ctl_t *c, op_t op, size_t item, size_t first, size_t n,
                              hes_api_error_t *err);
void wait_pushes(ctl_t *c);

/* commands.c */
int cmd_read(ctl_t *c);
int cmd_history(ctl_t *c);
int cmd_relay(ctl_t *c);
int cmd_dcu(ctl_t *c);

/* roster.c: read --all */
int roster_meters(ctl_t *c);

#endif
