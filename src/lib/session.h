/* session: the one request path of the plugin and of hesctl. It ties api, mqtt, plans and
 * the push parser together: the token, the request, the registration of its plan, the
 * pushes that came before their plan (parked, then replayed), the routing of each push to
 * its plan's sink, and the expiry of plans whose meters never answered.
 *
 * The caller implements sinks (hes_session_sink_t: callbacks and a user pointer) and
 * nothing else of the path. A plan is registered with a route: the sink that gets its
 * pushes, and what those pushes must hold.
 *
 * Threads: one hes_session_t is one server. Each thread that sends requests has its own
 * client (hes_session_client_t: its own api handle, i.e. its own curl handle and
 * connection, and its own push parser for replays), so duties never share one. The MQTT
 * thread's pushes are routed on that thread. Sinks are therefore called from the MQTT
 * thread (pushes), from the thread whose request registered the plan (parked pushes
 * replayed), and from the thread calling hes_session_expire (missing meters). No lock of
 * this module or of plans is held while a sink runs.
 *
 * Counters: every HTTP request is counted, getToken and retries included. */
#ifndef HES_SESSION_H
#define HES_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api.h"
#include "latency.h"
#include "meters.h"
#include "meterset.h"
#include "mqtt.h"
#include "plans.h"
#include "push.h"

typedef struct hes_session hes_session_t;
typedef struct hes_session_client hes_session_client_t;
typedef struct hes_session_sink hes_session_sink_t;

/* Where a plan's pushes go, and what they must hold. The caller owns it; it must outlive
 * every plan registered with it. */
typedef struct {
  const hes_session_sink_t *sink;
  void *user;           /* the sink's */
  hes_push_kind_t kind; /* HES_PUSH_READINGS, _CHANNELS, _RELAY or _ARCHIVE */
  int cgcode;           /* READINGS: a reading of another cgcode is rejected; 0: any */
  /* The plan's first push is final (status success included): meters it lacks are missing
   * at once. Otherwise only a push whose status is not success is final, and a plan waits
   * for its other meters until they answer or its deadline passes. */
  bool one_push;
} hes_session_route_t;

typedef struct {
  const char *plan_id;
  uint32_t tag; /* the caller's, from the request */
  const hes_session_route_t *route;
  /* The session's clock (hes_session_now) when the plan's request was sent (before its
   * token, if one was fetched), and when the push being handed over arrived (a parked one:
   * when it was parked): arrived - sent is its latency. Both NaN for missing meters. */
  double sent;
  double arrived;
} hes_session_plan_t;

typedef enum {
  HES_SESSION_REJECT_PARSE,   /* not a push: detail says why (no plan known) */
  HES_SESSION_REJECT_DROPPED, /* came before its plan and the parking space was full */
  HES_SESSION_REJECT_SKIPPED, /* `count` malformed entries of a push: detail says why */
  HES_SESSION_REJECT_METER,   /* a reading for a meter not configured: dev[0..dev_len) */
  HES_SESSION_REJECT_CGCODE,  /* a reading of another cgcode than its plan's: meter, cgcode */
  HES_SESSION_REJECT_KIND,    /* a push of another kind than its plan's: the plan waits on */
} hes_session_reject_kind_t;

typedef struct {
  hes_session_reject_kind_t kind;
  const char *plan_id; /* "" when not known */
  size_t len;          /* bytes of the push */
  size_t count;        /* entries rejected: SKIPPED's count, else 1 */
  const char *detail;  /* PARSE, SKIPPED */
  const char *dev;     /* METER: not NUL-terminated, untrusted */
  size_t dev_len;
  uint32_t meter; /* CGCODE */
  int cgcode;     /* CGCODE: the reading's */
} hes_session_reject_t;

/* Every callback may be NULL. Pushes of an open plan go to its route's sink: readings,
 * frozen or relay (by the route's kind) with, per entry i of the push, meter[i]: its meter
 * index, or HES_METER_NONE for an entry to skip (meter not configured or not in the plan,
 * a repeat, a reading of another cgcode: the first two of these were reported rejected
 * already). Frozen (CHANNELS) pushes hold several entries per meter; every one of a plan's
 * meters is given. Archive pushes are given whole. */
struct hes_session_sink {
  void (*readings)(void *user, const hes_session_plan_t *plan, const hes_push_t *push,
                   const uint32_t *meter);
  void (*frozen)(void *user, const hes_session_plan_t *plan, const hes_push_t *push,
                 const uint32_t *meter);
  void (*relay)(void *user, const hes_session_plan_t *plan, const hes_push_t *push,
                const uint32_t *meter);
  void (*archive)(void *user, const hes_session_plan_t *plan, const hes_push_t *push);
  /* A final push was handled (see one_push) and the plan is closed. */
  void (*done)(void *user, const hes_session_plan_t *plan, hes_push_status_t status);
  /* Meters that did not answer: after a final push that lacked them, or at the deadline
   * (PlanTimeout) from hes_session_expire. meters is valid during the call only. */
  void (*missing)(void *user, const hes_session_plan_t *plan, const uint32_t *meters, size_t n);
  /* A push or a part of it that was rejected: the session's own sink for pushes no plan is
   * known for (PARSE, DROPPED), the plan's route's sink for the others. */
  void (*rejected)(void *user, const hes_session_reject_t *why);
  /* The broker's state (the session's own sink): ready means subscribed. */
  void (*broker)(void *user, bool ready, const char *why);
};

typedef struct {
  /* Borrowed, with every string it points to, for the session's lifetime: each client
   * makes its api handle from it. */
  const hes_api_config_t *api;
  /* Borrowed: the meters plans are made of, by index. */
  const hes_meters_t *meters;
  /* Borrowed; when not NULL, used instead of meters: a list that changes while it runs. Each
   * push pins the current version once and looks its meters up in it, so a meter that left
   * is rejected (HES_SESSION_REJECT_METER) and sinks get indices of that version. */
  hes_meterset_t *set;
  const hes_plans_config_t *plans; /* NULL: the defaults */
  /* NULL: no MQTT (tests feed pushes with hes_session_push). Copied; its on_message,
   * on_state and ctx are the session's. */
  const hes_mqtt_config_t *mqtt;
  /* The session's own sink: broker state, pushes rejected before a plan is known. */
  const hes_session_sink_t *sink;
  void *user;
  /* The clock of plan deadlines and of the api's token (seconds); NULL: CLOCK_MONOTONIC. */
  double (*now)(void);
  /* Borrowed, NULL: not recorded. Per readings push, its latency (plan.arrived - plan.sent)
   * once for each meter it answered. (HTTP request durations: api->latency.) */
  hes_latency_t *push_latency;
} hes_session_config_t;

typedef struct {
  uint64_t http;        /* HTTP requests sent, getToken and retries included */
  uint64_t http_failed; /* calls that failed (a call may send several requests) */
  hes_plans_stats_t plans;
} hes_session_stats_t;

/* Returns NULL for no memory or a bad MQTT config (why filled). */
hes_session_t *hes_session_new(const hes_session_config_t *cfg, char *why, size_t whylen);
/* The MQTT thread and every client must be gone. Open plans are dropped unreported. */
void hes_session_free(hes_session_t *s);

/* The MQTT client (NULL without one): run it on a thread of the caller's (hes_mqtt_run),
 * wait for it, stop it. */
hes_mqtt_t *hes_session_mqtt(hes_session_t *s);
double hes_session_now(const hes_session_t *s);
void hes_session_stats(hes_session_t *s, hes_session_stats_t *out);

/* Routes one push as if it came from the broker (the MQTT thread's on_message; tests and
 * fuzzers). Not thread-safe against itself: one thread at a time. */
void hes_session_push(hes_session_t *s, const void *payload, size_t len);

/* Meters that left the list: open plans stop waiting for them (hes_plans_forget). */
size_t hes_session_forget(hes_session_t *s, const uint32_t *meters, size_t n);

/* Expires plans past their deadline (their sinks' missing called, after every lock is
 * released) and parked pushes past the park window. Returns the plans expired. */
size_t hes_session_expire(hes_session_t *s);

/* ---- clients: one per thread that sends requests ---------------------------------------- */

hes_session_client_t *hes_session_client_new(hes_session_t *s, hes_api_error_t *err);
void hes_session_client_free(hes_session_client_t *c);
/* With a meterset: the version the indices of this client's requests refer to (the caller
 * pinned it, and keeps it pinned while it sends). NULL: the current version at each call. */
void hes_session_client_version(hes_session_client_t *c, const hes_meterver_t *v);
/* Fetches or renews the token now (also done by every call when needed). */
hes_api_result_t hes_session_token(hes_session_client_t *c, hes_api_error_t *err);

/* The parts of every request: begin before sending, add the plan the HES created (its
 * parked pushes replayed to the route's sink on this thread), end after add or after the
 * request failed. The calls below do all three; these are exposed for requests the calls
 * do not cover and for tests. */
void hes_session_begin(hes_session_client_t *c);
/* Returns 0, or EEXIST (planId open or remembered), EINVAL, ENOMEM as hes_plans_add. */
int hes_session_add(hes_session_client_t *c, const hes_session_route_t *route, uint32_t tag,
                    const char *plan_id, const uint32_t *meters, size_t n, double timeout);
void hes_session_end(hes_session_client_t *c);

/* A request: its plan's route and tag, the meters (indices) the plan waits for, and how long
 * it waits (seconds from the request). sent, when not NULL, is called once the HES named the
 * planId, before the plan is registered and its parked pushes replayed. */
typedef struct {
  const hes_session_route_t *route;
  uint32_t tag;
  const uint32_t *meters;
  size_t n;
  double timeout;
  void (*sent)(void *ctx, const hes_api_plan_t *plan);
  void *ctx;
} hes_session_request_t;

/* Each: begin, the api call with the request's meters, add, end. A plan the HES created
 * but that cannot be tracked (planId reused...) gives HES_API_EANSWER, err saying so. */
hes_api_result_t hes_session_read_single(hes_session_client_t *c, const hes_session_request_t *rq,
                                         int cgcode, hes_api_plan_t *plan, hes_api_error_t *err);
hes_api_result_t hes_session_read_frozen(hes_session_client_t *c, const hes_session_request_t *rq,
                                         int cgcode, const char *start, const char *end,
                                         hes_api_plan_t *plan, hes_api_error_t *err);
hes_api_result_t hes_session_relay(hes_session_client_t *c, const hes_session_request_t *rq,
                                   int control_mode, hes_api_plan_t *plan, hes_api_error_t *err);
/* DCU calls: the plan waits for one stand-in meter, rq->meters is ignored. add and remove
 * send `meters`/`archives` (meter numbers) for the DCU. */
hes_api_result_t hes_session_read_archive(hes_session_client_t *c, const hes_session_request_t *rq,
                                          const char *dcu, hes_api_plan_t *plan,
                                          hes_api_error_t *err);
hes_api_result_t hes_session_add_archive(hes_session_client_t *c, const hes_session_request_t *rq,
                                         const char *dcu, const hes_api_archive_t *archives,
                                         size_t n, hes_api_plan_t *plan, hes_api_error_t *err);
hes_api_result_t hes_session_remove_archive(hes_session_client_t *c,
                                            const hes_session_request_t *rq, const char *dcu,
                                            const char *const *meters, size_t n,
                                            hes_api_plan_t *plan, hes_api_error_t *err);

/* History pages (no plan: the answer is the page), counted like every request. meters are
 * indices. The iterator is the api's: hes_api_history_total and _free apply. */
hes_api_history_t *hes_session_history_new(hes_session_client_t *c, bool frozen,
                                           const uint32_t *meters, size_t n, int cgcode,
                                           const char *start, const char *end, int page_size,
                                           hes_api_error_t *err);
hes_api_result_t hes_session_history_next(hes_session_client_t *c, hes_api_history_t *h,
                                          hes_push_t *page, hes_api_error_t *err);

#endif
