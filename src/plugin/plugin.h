/* plugin.h: what the collectd glue of the hes plugin shares across its files (src/plugin/):
 * the state of a <Server> and of the <Relay> block, the counters, the rate-limited log macro,
 * and the functions one glue file calls in another. They are not static, but hes.so exports
 * module_register only (-export-symbols-regex in Makefile.am).
 *
 * The glue, by duty: hes.c (module_register, init, shutdown, the threads), config.c (the
 * <Plugin hes> block), read.c (the read round, readings pushes, self-metrics), billing.c
 * (frozen items, the 4.1 loop), breaker.c (notifications in, breaker commands out), health.c
 * (latency, round duration and reconnect self-metrics). These are
 * the only files that include collectd's headers.
 *
 * The request path (token, request, plan, parked pushes, routing, expiry) is the session
 * module's (src/lib/session.h); these files implement its sinks: read.c the readings,
 * billing.c the frozen entries, breaker.c the relay results, hes.c the broker state.
 *
 * Threads, one per duty: collectd's read thread calls hes_read (instantaneous readings,
 * never twice at once for one server); a billing thread per server with frozen items runs
 * the 4.1 loop; the relay thread sends breaker commands; one MQTT thread per server routes
 * pushes. All are made with plugin_thread_create so dispatches carry the plugin's context.
 * Each thread that sends requests has its own session client (its own curl handle); they
 * share the session (its own locks) and atomic counters. Every round has a deadline: a
 * read round stops at Interval, a billing round at RetryInterval, so a slow HES delays only
 * the duty it slows. */
#ifndef HES_PLUGIN_H
#define HES_PLUGIN_H

#include "collectd/core/daemon/collectd.h"
#include "collectd/core/daemon/plugin.h"
#include "collectd/core/utils/common/common.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "api.h"
#include "backfill.h"
#include "clock.h"
#include "conf.h"
#include "items.h"
#include "latency.h"
#include "meterlist.h"
#include "meters.h"
#include "meterset.h"
#include "mqtt.h"
#include "plans.h"
#include "push.h"
#include "relay.h"
#include "session.h"
#include "tz.h"

#define HES_PLUGIN    "hes"
#define HES_ITEMS_MAX HES_CONF_ITEMS_MAX
/* How long the first read waits for the MQTT subscription before it gives up on the round:
 * without the subscription the round's results would be lost. */
#define HES_READY_WAIT 2.0
/* Log lines of one kind per minute per server, before they are summarised. */
#define HES_LOG_BURST 5
/* How many PlanTimeouts a finished plan's id is remembered (hes.c says why). */
#define HES_TOMBSTONE_PLAN_TIMEOUTS 4
/* Plans of relay commands carry this bit in their tag; reading plans carry the cgcode. */
#define HES_TAG_RELAY 0x80000000u

/* A small log rate limiter: HES_LOG_BURST lines per minute, then one line saying how many
 * were suppressed. c_complain does not fit: it backs off to a day and is not thread-safe. */
typedef struct {
  pthread_mutex_t lock;
  cdtime_t window_start;
  int lines;
  uint64_t suppressed;
} hes_ratelimit_t;

/* A read round's batch whose request failed, to be tried again in the round (read.c). */
typedef struct {
  size_t batch;
  double took; /* seconds the failed try took */
} hes_read_failed_t;

/* HTTP requests are counted by the session (hes_session_stats). */
typedef struct {
  atomic_uint_fast64_t dispatched;
  atomic_uint_fast64_t missing;
  atomic_uint_fast64_t rejected;
  atomic_uint_fast64_t relay_sent;
  atomic_uint_fast64_t relay_skipped;
  atomic_uint_fast64_t read_retried; /* readSingle requests sent a second time in a round */
} hes_counters_t;

/* How the HES is doing (health.c): what the threads record between two rounds. */
typedef struct {
  hes_latency_t http;      /* every client's HTTP requests (api.c records them) */
  hes_latency_t push;      /* readings plans: request sent to reading arrived (session) */
  double round_start;      /* read thread only */
  uint64_t round_overruns; /* read thread only */
} hes_health_state_t;

struct hes_server;
/* The sink's user pointer of a readSingle route. */
typedef struct {
  struct hes_server *server;
  const hes_item_t *item;
} hes_read_route_t;

typedef struct hes_server {
  struct hes_server *next;
  /* the <Server> block as the config module checked it (hes_conf owns it for the run): the
   * server's settings are read there and nowhere else */
  hes_conf_server_t *conf;

  /* the meter list as it changes (roster.c); conf->meters is freed once it is built at start */
  hes_meterlist_t *meterlist;
  hes_meterset_t *set;           /* the meterlist's: pin a version for one unit of work */
  hes_session_route_t dcu_route; /* readArchive plans' pushes */
  double dcu_next; /* read thread: when the DCU lists are refreshed next (hes_clock_mono) */

  /* frozen items: the seed's 4.1 loop (history, then re-read what is missing, repeat) */
  struct hes_frozen {
    const hes_item_t *item;
    hes_backfill_t *backfill;
    const hes_meters_t *meters; /* billing thread: the backfill's list (its indices) */
    const hes_meterver_t *ver;  /* pinned while the backfill borrows its list as meters */
    hes_session_route_t route;  /* its readFrozen plans' pushes */
    struct hes_server *server;
    int64_t resume;   /* billing thread: the freeze time a round cut short was on; 0: none */
  } frozen[3];        /* conf->frozen_num of them, in conf->frozen's order */
  double frozen_last; /* billing thread: when the last 4.1 round ran (hes_clock_mono; 0: never) */
  size_t frozen_next; /* billing thread: the item the next round starts with */

  /* runtime */
  char topic_filter[128];
  hes_api_config_t api_config; /* the session's clients are made from it */
  hes_session_t *session;
  hes_mqtt_t *mqtt;                               /* the session's */
  hes_session_client_t *read_client;              /* read thread only */
  hes_session_client_t *billing_client;           /* billing thread only */
  hes_session_route_t read_routes[HES_ITEMS_MAX]; /* readSingle plans, by item */
  hes_read_route_t read_route_user[HES_ITEMS_MAX];
  pthread_t mqtt_thread;
  bool mqtt_thread_started;
  uint32_t *batch_index;              /* read thread scratch: batch_size entries */
  uint32_t *billing_index;            /* billing thread scratch: batch_size entries */
  const hes_meterver_t *billing_ver;  /* billing thread: the version of its round */
  const hes_meterver_t *billing_next; /* a new version for the books (pinned), under billing_lock */
  size_t read_cursor;                 /* the batch the next read round starts with */
  hes_read_failed_t *read_failed;     /* read thread: the round's batches to retry */
  size_t read_failed_cap;
  bool ready_once;
  /* the billing thread */
  pthread_t billing_thread;
  bool billing_started;
  pthread_mutex_t billing_lock;
  pthread_cond_t billing_cond;
  bool billing_sync;        /* billing_lock and _cond initialised */
  atomic_bool billing_stop; /* read without the lock by the billing round */
  hes_counters_t count;
  hes_health_state_t health;
  hes_ratelimit_t log_http;
  hes_ratelimit_t log_push;
  hes_ratelimit_t log_value;
  hes_ratelimit_t log_missing;
  /* failures to be retried: their own budget, so they never crowd out the errors */
  hes_ratelimit_t log_retry;
} hes_server_t;

/* The <Relay> block and its runtime: the commands go out from their own thread with their
 * own api handle, so a long read round never delays a breaker command. */
typedef struct {
  const hes_conf_relay_t *conf; /* hes_conf's, for the run */
  hes_server_t *server;

  hes_relay_t *relay;
  const hes_meterver_t *ver;    /* pinned while the relay borrows its list */
  hes_session_client_t *client; /* relay thread only */
  hes_session_route_t route;    /* relay plans' pushes */
  pthread_t thread;
  bool thread_started;
  hes_ratelimit_t log_skip;
} hes_relay_conf_t;

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

/* Defined in hes.c; filled by config.c, before init, in collectd's main thread. */
extern hes_server_t *hes_servers;
extern atomic_bool hes_initialised;
extern hes_relay_conf_t *hes_relay_conf; /* NULL: no <Relay> block */
extern hes_conf_t hes_conf; /* every <Plugin hes> block's, checked; freed at shutdown */

/* hes.c: logging, clock, state directory, runtime teardown */
void hes_ratelimit_init(hes_ratelimit_t *rl);
bool hes_ratelimit_allow(hes_ratelimit_t *rl, uint64_t *suppressed_before);
const char *hes_state_dir_path(void);
void hes_server_runtime_free(hes_server_t *s);
void hes_relay_runtime_free(hes_relay_conf_t *rc);

/* config.c */
void hes_server_free(hes_server_t *s);
/* The server's Interval as collectd's time. */
static inline cdtime_t hes_interval(const hes_server_t *s) {
  return DOUBLE_TO_CDTIME_T(s->conf->interval);
}
/* BatchSize as a count (the config module keeps it as the int it checked). */
static inline size_t hes_batch_size(const hes_server_t *s) {
  return (size_t)s->conf->batch_size;
}
void hes_relay_conf_free(hes_relay_conf_t *rc);
int hes_config(oconfig_item_t *ci);

/* read.c */
extern const hes_session_sink_t hes_server_sink; /* the session's own: rejected, broker */
/* One value of plugin "hes"; interval set explicitly (the threshold plugin's missing-value
 * timer is based on it). */
void hes_dispatch_value(const char *plugin_instance, const char *type, const char *type_instance,
                        cdtime_t time, cdtime_t interval, value_t v);
void hes_dispatch_gauge(const char *plugin_instance, const char *type, const char *type_instance,
                        cdtime_t time, cdtime_t interval, gauge_t g);
void hes_dispatch_derive(const hes_server_t *s, const char *plugin_instance, const char *type,
                         const char *type_instance, cdtime_t time, uint64_t d);
void hes_log_api_error(hes_server_t *s, const hes_api_error_t *err, const char *what);
void hes_count_rejected(hes_server_t *s, const hes_session_reject_t *why);
void hes_read_routes(hes_server_t *s);
int hes_read(user_data_t *ud);

/* roster.c: the meter list while collectd runs */
int hes_roster_start(hes_server_t *s);
void hes_roster_free(hes_server_t *s);
/* Read thread, before each round's requests; can_request: the broker is ready. */
void hes_roster_round(hes_server_t *s, bool can_request);
void hes_roster_self(hes_server_t *s, const char *instance, cdtime_t now);
/* A meter's number in the current version, for log lines ("(left the list)" if gone). */
const char *hes_roster_name(hes_server_t *s, uint32_t idx, char *buf, size_t len);

/* billing.c */
/* Read thread: hands the billing thread a new version of the meter list (pinned; the pin is
 * taken over). */
void hes_billing_meters(hes_server_t *s, const hes_meterver_t *v);
void hes_billing_routes(hes_server_t *s);
int hes_billing_start(hes_server_t *s);
void hes_billing_stop(hes_server_t *s);

/* health.c */
void hes_health_init(hes_server_t *s);
void hes_health_round_begin(hes_server_t *s);
void hes_health_round_end(hes_server_t *s);

/* breaker.c */
int hes_relay_start(hes_relay_conf_t *rc);

#endif
