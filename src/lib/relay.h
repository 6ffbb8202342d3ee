/* relay: the safety logic that turns threshold notifications into breaker (relay) commands.
 *
 * Opening a breaker cuts a customer's power, so everything here errs on the side of not
 * acting: a notification must match a rule, carry a value, concern a configured meter, and
 * pass the per-meter Holdoff and the global MaxPerMinute cap before a command is queued.
 * What is over the cap is dropped, never queued for later. The time of each meter's last
 * command is kept in a small state file so that a restart loop cannot become a command loop.
 *
 * Knows nothing of collectd or HTTP: the plugin flattens a notification into a
 * hes_relay_event_t, submits it, and a worker thread takes commands with hes_relay_next and
 * sends them. Thread-safe: submit runs concurrently on collectd's threads. */
#ifndef HES_RELAY_H
#define HES_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "meters.h"
#include "push.h"

/* The severities, with collectd's values (NOTIF_FAILURE, NOTIF_WARNING, NOTIF_OKAY). */
#define HES_RELAY_FAILURE 1
#define HES_RELAY_WARNING 2
#define HES_RELAY_OKAY    4

typedef enum {
  HES_RELAY_OPEN = 1,  /* controlMode 1: disconnect */
  HES_RELAY_CLOSE = 2, /* controlMode 2: reconnect */
} hes_relay_action_t;

typedef struct {
  const char *name;          /* the <Rule "name"> */
  const char *plugin;        /* NULL: any */
  const char *type;          /* NULL: any */
  const char *type_instance; /* NULL: any */
  int severity;              /* required: HES_RELAY_FAILURE, _WARNING or _OKAY */
  hes_relay_action_t action;
  const char *const *meters; /* explicit targets instead of the plugin_instance; may be NULL */
  size_t meters_num;
} hes_relay_rule_t;

typedef struct {
  double holdoff;             /* seconds between two commands to one meter (default 300) */
  int max_per_minute;         /* all meters together (default 10) */
  bool dry_run;               /* queue and report, but the worker sends nothing */
  size_t queue_max;           /* queued commands at most (default 64) */
  const char *state_path;     /* the last-command state file; NULL: not persisted */
  const hes_meters_t *meters; /* the configured meters (sealed); others are never commanded */
  size_t okay_track_max;      /* identifiers remembered for the first-OKAY rule (0: 100000);
                                 beyond it the oldest is forgotten */
} hes_relay_config_t;

/* A notification, flattened by the plugin. Strings may be NULL or "". */
typedef struct {
  int severity;
  double time; /* seconds */
  const char *host;
  const char *plugin;
  const char *plugin_instance;
  const char *type;
  const char *type_instance;
  const char *message;
  bool has_value;             /* a CurrentValue meta entry was present (double or string) */
  const char *value_text;     /* it, as text ("262.000000") */
  const char *threshold_text; /* e.g. "FailureMax 255" or the message's threshold part */
} hes_relay_event_t;

/* Why a (rule, meter) pair led to no command, or that it did. */
typedef enum {
  HES_RELAY_QUEUED = 0,
  HES_RELAY_SKIP_NO_RULE,       /* no rule matches (not counted as a skip by the plugin) */
  HES_RELAY_SKIP_OWN,           /* the plugin's own notification (plugin hes, type relay) */
  HES_RELAY_SKIP_NO_VALUE,      /* no CurrentValue: a missing-value notification */
  HES_RELAY_SKIP_FIRST_OKAY,    /* an OKAY with no earlier non-OKAY for that identifier */
  HES_RELAY_SKIP_UNKNOWN_METER, /* not one of the configured meters */
  HES_RELAY_SKIP_HOLDOFF,       /* the meter got a command less than Holdoff ago */
  HES_RELAY_SKIP_RATE,          /* over MaxPerMinute */
  HES_RELAY_SKIP_QUEUE_FULL,
  HES_RELAY_SKIP_STATE, /* within the limits, but the state file could not be written: not
                           sent (hes_relay_state_errno says why) */
} hes_relay_decision_t;

/* One decision, reported to the plugin for logging and counting. */
typedef void (*hes_relay_decision_cb)(void *ctx, hes_relay_decision_t d, const char *rule,
                                      const char *meter, hes_relay_action_t action);

typedef struct {
  uint64_t id; /* unique per process */
  char rule[64];
  char meter[HES_METER_MAX_LEN + 1];
  uint32_t meter_index;
  hes_relay_action_t action;
  bool dry_run;
  double queued; /* time it was queued */
  char value_text[64];
  char threshold_text[128];
} hes_relay_cmd_t;

typedef struct hes_relay hes_relay_t;

/* Copies cfg (not the meters). Loads the state file if there is one; a corrupt or
 * unreadable state file is reported in err and set aside (renamed *.corrupt) — the relay
 * then starts with every meter's last command at "now" (the safe side: nothing is sent to
 * a meter before Holdoff has passed) and writes a fresh state file saying so, so that a
 * restart cannot skip the wait. Meters in the file that are not configured are dropped.
 *
 * Returns NULL with err filled on a bad cfg (meters NULL, holdoff negative or not finite,
 * max_per_minute negative, queue_max 0) or no memory. Otherwise err is "" unless the state
 * file was set aside: then err is a warning to log and the relay is usable.
 *
 * The state file is text: the line "collectd-hes relay state v1", then one line a meter
 * "<meter> <unix-time> <open|close|reset>" (time with up to 9 decimals; "reset": held off
 * after a state file was set aside). A file with another header, a malformed or duplicate
 * line, a missing final newline or a time after now is corrupt. The times loaded within the
 * last 60 s also count against MaxPerMinute. */
hes_relay_t *hes_relay_new(const hes_relay_config_t *cfg, double now, char *err, size_t errlen);
void hes_relay_free(hes_relay_t *r);
/* Replaces the configured meters (borrowed like cfg->meters; the previous list may be freed
 * once this returns). The last command of a meter in both lists is kept (Holdoff follows the
 * meter); a rule's Meter that left matches nothing (HES_RELAY_SKIP_UNKNOWN_METER) until it
 * is listed again. Returns 0, EINVAL or ENOMEM (the old list stays). */
int hes_relay_set_meters(hes_relay_t *r, const hes_meters_t *meters);

/* Copies the rule. Returns 0, or EINVAL (no severity, bad action, empty name, a Meter that
 * is not configured) with err filled. */
int hes_relay_add_rule(hes_relay_t *r, const hes_relay_rule_t *rule, char *err, size_t errlen);

/* Matches ev against the rules; queues what passes the checks. Calls cb once per (rule,
 * target) pair considered and once with SKIP_OWN / SKIP_NO_VALUE / SKIP_FIRST_OKAY when
 * the event is filtered before rules are looked at and some rule would have matched it
 * (rule: the first such rule, meter: the plugin_instance). An event that matches no rule
 * gets one SKIP_NO_RULE call with rule NULL and action 0. A meter that was already
 * considered for this event (several rules, or a Meter listed twice) is not considered
 * again: no second call, no second command. cb may be NULL; it runs without any lock held.
 * now: Unix seconds (the clock of the state file); one outside [0, 1e12) does nothing.
 * Returns the number of commands queued. Never blocks on I/O except the state save, which
 * happens before the queued commands become visible to hes_relay_next (a crash can lose a
 * command, never repeat one after a restart). When that save fails, no command of this
 * event is queued: each pair that would have been is reported as SKIP_STATE, and its
 * holdoff and rate stay charged. */
size_t hes_relay_submit(hes_relay_t *r, const hes_relay_event_t *ev, double now,
                        hes_relay_decision_cb cb, void *ctx);

/* Worker: waits up to timeout seconds for a command. Returns true with *out filled, false on
 * timeout or after hes_relay_stop. */
bool hes_relay_next(hes_relay_t *r, double timeout, hes_relay_cmd_t *out);
void hes_relay_stop(hes_relay_t *r);

/* Outstanding commands, between sending and their pushed outcome. sent: 0, or EINVAL (a
 * NULL argument, plan_id empty or longer than HES_PLAN_ID_MAX - 1). At most 4096 are kept;
 * beyond that the oldest is forgotten (its push would never be matched anyway). */
int hes_relay_sent(hes_relay_t *r, const hes_relay_cmd_t *cmd, const char *plan_id);
/* Looks up and forgets the command of plan_id for meter; false if there is none. */
bool hes_relay_take(hes_relay_t *r, const char *plan_id, const char *meter, hes_relay_cmd_t *out);

/* Persists the last-command times (atomically: write a temp file, fsync, rename). Called by
 * submit itself whenever it would queue; exposed for tests. 0 or an errno. */
int hes_relay_state_save(hes_relay_t *r);
/* The result of the latest state save (0 or an errno): submit cannot return it. */
int hes_relay_state_errno(hes_relay_t *r);

/* Commands waiting for hes_relay_next; commands between sent and take. */
size_t hes_relay_queue_len(hes_relay_t *r);
size_t hes_relay_outstanding(hes_relay_t *r);

const char *hes_relay_decision_string(hes_relay_decision_t d);
const char *hes_relay_action_string(hes_relay_action_t a);

#endif
