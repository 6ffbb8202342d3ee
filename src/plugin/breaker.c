/* breaker.c: the <Relay> block at work: collectd notifications in (threshold, unixsock),
 * the relay module's decision, breaker commands out from their own thread, and the outcome
 * of each command as an audit line and a notification. */
#include "config.h"

#include "plugin.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

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

/* The audit line of an outcome, and its notification. Never called with a lock held: the
 * notification runs every notification plugin. */
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
 * the relay sink: relay plans' pushes */

static void hes_relay_results(void *user, const hes_session_plan_t *plan, const hes_push_t *push,
                              const uint32_t *meter) {
  (void)user;
  for (size_t i = 0; i < push->count; i++) {
    if (meter[i] == HES_METER_NONE)
      continue;
    const hes_push_relay_t *r = &push->relays[i];
    char name[HES_METER_MAX_LEN + 1];
    snprintf(name, sizeof(name), "%.*s", (int)r->dev_addr_len, r->dev_addr);
    hes_relay_outcome(plan->plan_id, name, r->successful,
                      r->successful ? NULL : "the HES reports the operation failed");
  }
}

static void hes_relay_missing(void *user, const hes_session_plan_t *plan, const uint32_t *meters,
                              size_t n) {
  hes_relay_conf_t *rc = user;
  char name[HES_METER_MAX_LEN + 32];
  for (size_t i = 0; i < n; i++)
    hes_relay_outcome(plan->plan_id, hes_roster_name(rc->server, meters[i], name, sizeof(name)),
                      false, "no result");
}

static void hes_relay_rejected(void *user, const hes_session_reject_t *why) {
  hes_count_rejected(((hes_relay_conf_t *)user)->server, why);
}

static const hes_session_sink_t hes_relay_sink = {
    .relay = hes_relay_results,
    .missing = hes_relay_missing,
    .rejected = hes_relay_rejected,
};

/* ---------------------------------------------------------------------------------------
 * relay: notifications in, breaker commands out */

static hes_ratelimit_t hes_log_holdoff = {.lock = PTHREAD_MUTEX_INITIALIZER};

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
    /* A threshold that stays crossed notifies every interval: one line each would flood the
     * log, so holdoff skips have their own limiter (not the warnings' one). */
    HES_LOG_LIMITED(&hes_log_holdoff, LOG_INFO,
                    "relay: rule \"%s\": not sending %s to meter %s: it got a command less than "
                    "Holdoff (%.0f s) ago.",
                    rule, what, meter, rc->conf->holdoff);
    break;
  case HES_RELAY_SKIP_STATE: {
    /* When in doubt, do not act on a breaker: its time could not be put on disk, so a
     * restart could repeat it inside Holdoff. Said as a FAILURE, like a failed command. */
    hes_relay_cmd_t cmd = {.action = action};
    char why[160];
    char outcome[176];
    int err = hes_relay_state_errno(rc->relay);
    sstrncpy(cmd.rule, rule != NULL ? rule : "-", sizeof(cmd.rule));
    sstrncpy(cmd.meter, meter != NULL ? meter : "-", sizeof(cmd.meter));
    snprintf(why, sizeof(why), "the holdoff state could not be saved (%s)",
             err != 0 ? STRERROR(err) : "unknown error");
    HES_LOG_LIMITED(&rc->log_skip, LOG_ERR, "relay: rule \"%s\": not sending %s to meter %s: %s",
                    cmd.rule, what, cmd.meter, why);
    snprintf(outcome, sizeof(outcome), "not sent: %s", why);
    hes_relay_notify(&cmd, NOTIF_FAILURE, NULL, outcome);
    break;
  }
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
  /* wall, not monotonic: the holdoff compares with the last commands' times, which the state
   * file keeps across restarts (and reboots) as Unix times */
  hes_relay_submit(rc->relay, &ev, hes_clock_wall(), hes_relay_decision, rc);
  return 0;
}

typedef struct {
  hes_relay_conf_t *rc;
  const hes_relay_cmd_t *cmd;
  bool sent;
} hes_relay_sent_ctx_t;

/* The HES took the command: registered as outstanding before the plan, so a push that
 * arrived already (parked, replayed once the plan is registered) finds it. */
static void hes_relay_sent_cb(void *ctx, const hes_api_plan_t *plan) {
  hes_relay_sent_ctx_t *sc = ctx;
  const hes_relay_cmd_t *cmd = sc->cmd;
  sc->sent = true;
  atomic_fetch_add(&sc->rc->server->count.relay_sent, 1);
  hes_relay_sent(sc->rc->relay, cmd, plan->plan_id);
  INFO(HES_PLUGIN " plugin: relay audit: rule \"%s\" meter %s action %s value %s threshold %s "
                  "planId %s outcome sent, waiting for the result",
       cmd->rule, cmd->meter, hes_relay_action_string(cmd->action), cmd->value_text,
       cmd->threshold_text[0] != '\0' ? cmd->threshold_text : "-", plan->plan_id);
}

static void hes_relay_send_in(hes_relay_conf_t *rc, const hes_relay_cmd_t *cmd, uint32_t index);

/* A command goes out only for a meter still in the list; its index is the current version's
 * (the relay books keep the list at start), pinned until the request is sent. */
static void hes_relay_send(hes_relay_conf_t *rc, const hes_relay_cmd_t *cmd) {
  hes_server_t *s = rc->server;
  const hes_meterver_t *v = hes_meterset_pin(s->set);
  uint32_t index = hes_meterver_find(v, cmd->meter, strlen(cmd->meter));
  if (index == HES_METER_NONE) {
    hes_meterset_unpin(s->set, v);
    atomic_fetch_add(&s->count.relay_skipped, 1);
    HES_LOG_LIMITED(&rc->log_skip, LOG_INFO,
                    "relay audit: rule \"%s\" meter %s action %s outcome skipped: the meter "
                    "left the meter list",
                    cmd->rule, cmd->meter, hes_relay_action_string(cmd->action));
    return;
  }
  hes_session_client_version(rc->client, v);
  hes_relay_send_in(rc, cmd, index);
  hes_session_client_version(rc->client, NULL);
  hes_meterset_unpin(s->set, v);
}

static void hes_relay_send_in(hes_relay_conf_t *rc, const hes_relay_cmd_t *cmd, uint32_t index) {
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
  hes_relay_sent_ctx_t sc = {.rc = rc, .cmd = cmd};
  hes_session_request_t rq = {
      .route = &rc->route,
      .tag = HES_TAG_RELAY | (uint32_t)cmd->action,
      .meters = &index,
      .n = 1,
      .timeout = s->conf->plan_timeout,
      .sent = hes_relay_sent_cb,
      .ctx = &sc,
  };
  hes_api_plan_t plan;
  hes_api_error_t err;
  hes_api_result_t r = hes_session_relay(rc->client, &rq, (int)cmd->action, &plan, &err);
  if (r != HES_API_OK && sc.sent) {
    /* Sent, but the plan could not be tracked. */
    hes_relay_outcome(plan.plan_id, cmd->meter, false, "the plan could not be tracked");
    return;
  }
  if (r != HES_API_OK) {
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
  }
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

int hes_relay_start(hes_relay_conf_t *rc) {
  hes_server_t *s = rc->server;
  char path[PATH_MAX];
  snprintf(path, sizeof(path), "%s/hes-relay-%s.state", hes_state_dir_path(), s->conf->name);
  char err[512] = "";
  /* The relay borrows the current version's list; the pin keeps it alive until the relay
   * takes the next one (roster.c). */
  rc->ver = hes_meterset_pin(s->set);
  hes_relay_config_t cfg = {
      .holdoff = rc->conf->holdoff,
      .max_per_minute = rc->conf->max_per_minute,
      .dry_run = rc->conf->dry_run,
      .queue_max = 64,
      .state_path = path,
      .meters = hes_meterver_meters(rc->ver),
  };
  rc->relay = hes_relay_new(&cfg, hes_clock_wall(), err, sizeof(err));
  if (rc->relay == NULL) {
    ERROR(HES_PLUGIN " plugin: <Relay>: %s", err);
    return -1;
  }
  if (err[0] != '\0')
    WARNING(HES_PLUGIN " plugin: <Relay>: %s", err);
  for (size_t i = 0; i < rc->conf->rules_num; i++) {
    const hes_conf_rule_t *r = &rc->conf->rules[i];
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
  rc->client = hes_session_client_new(s->session, &aerr);
  if (rc->client == NULL) {
    ERROR(HES_PLUGIN " plugin: <Relay>: cannot set up the HTTP client: %s", aerr.msg);
    return -1;
  }
  rc->route = (hes_session_route_t){
      .sink = &hes_relay_sink,
      .user = rc,
      .kind = HES_PUSH_RELAY,
  };
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
       rc->conf->rules_num, s->conf->name, rc->conf->holdoff, rc->conf->max_per_minute,
       rc->conf->dry_run ? ", DRY RUN: nothing will be sent" : "", path);
  return 0;
}
