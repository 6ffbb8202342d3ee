/* roster.c: the server's meter list while collectd runs (issue 15). The meterlist module
 * keeps the sources (Meter lines, MeterFile, DCU archives) and publishes versions through a
 * meterset; this file checks the sources once per read round, refreshes the DCU lists
 * through the session (the archive sink), and swaps the list.
 *
 * Who reads the list: the read round (pins one version per round and cuts its batches from
 * it), the MQTT thread (the session pins one version per push), the relay thread (checks a
 * command's meter in the current version) and the billing thread (one version per round).
 *
 * The backfill books and the relay rules keep state by list position and borrow the list of
 * a version they hold pinned, not a copy (issue 15: a copy was 27.5 bytes a meter each).
 * Each new version is handed to them (hes_backfill_set_meters on the billing thread, between
 * takes; hes_relay_set_meters here), so a joiner is billed and commandable and a leaver's
 * periods and holdoff are dropped; the version they held is unpinned once they have let go
 * of it, and freed when its last reader is done. */
#include "config.h"

#include "plugin.h"

#include <malloc.h>
#include <stdatomic.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------
 * the archive sink: readArchive plans' pushes (MQTT thread, or the read thread for a push
 * parked before its plan) */

/* A list swap frees a whole list's worth of small blocks (the old version, the union built
 * for the new one) in the middle of glibc's heap, where free() cannot give them back: without
 * a trim they stay resident until the next swap reuses them, and a steady 100,000-meter server
 * shows the swap's peak instead of its list. Once per swap, so its cost does not matter. */
static void hes_roster_trim(void) {
  malloc_trim(0);
}

static size_t hes_roster_dcu_of(const hes_session_plan_t *plan) {
  return (size_t)plan->tag;
}

static void hes_roster_end(hes_server_t *s, size_t dcu, bool ok) {
  char err[512] = "";
  hes_meterlist_result_t r = hes_meterlist_dcu_end(s->meterlist, dcu, ok, err, sizeof(err));
  const char *name = hes_meterlist_dcu_name(s->meterlist, dcu);
  if (r == HES_METERLIST_EFAILED)
    HES_LOG_LIMITED(&s->log_http, LOG_WARNING,
                    "Server \"%s\": DCU %s: the archive refresh failed; its previous list stays",
                    s->conf->name, name);
  else if (r == HES_METERLIST_ESAVE)
    HES_LOG_LIMITED(&s->log_http, LOG_WARNING, "Server \"%s\": DCU %s: %s", s->conf->name, name,
                    err);
}

static void hes_roster_archive(void *user, const hes_session_plan_t *plan, const hes_push_t *push) {
  hes_server_t *s = user;
  size_t dcu = hes_roster_dcu_of(plan);
  for (size_t i = 0; i < push->count; i++) {
    const hes_push_archive_t *a = &push->archives[i];
    hes_meterlist_dcu_entry(s->meterlist, dcu, a->dev_addr, a->dev_addr_len, a->enabled);
  }
}

static void hes_roster_done(void *user, const hes_session_plan_t *plan, hes_push_status_t status) {
  hes_roster_end(user, hes_roster_dcu_of(plan), status == HES_PUSH_SUCCESS);
}

/* The archive never came within PlanTimeout. */
static void hes_roster_missing(void *user, const hes_session_plan_t *plan, const uint32_t *meters,
                               size_t n) {
  (void)meters;
  (void)n;
  hes_roster_end(user, hes_roster_dcu_of(plan), false);
}

static void hes_roster_rejected(void *user, const hes_session_reject_t *why) {
  hes_count_rejected(user, why);
}

static const hes_session_sink_t hes_roster_sink = {
    .archive = hes_roster_archive,
    .done = hes_roster_done,
    .missing = hes_roster_missing,
    .rejected = hes_roster_rejected,
};

/* ---------------------------------------------------------------------------------------
 * start */

/* Relay rules act on the new list: joiners can be commanded, leavers no longer. */
static void hes_roster_relay(hes_server_t *s, const hes_meterver_t *v) {
  hes_relay_conf_t *rc = hes_relay_conf;
  if (rc == NULL || rc->server != s || rc->relay == NULL)
    return;
  if (hes_relay_set_meters(rc->relay, hes_meterver_meters(v)) != 0) {
    ERROR(HES_PLUGIN " plugin: <Relay>: out of memory: the rules keep the previous meter list "
                     "(a meter that left is still never commanded)");
    return;
  }
  hes_meterset_unpin(s->set, rc->ver);
  rc->ver = hes_meterset_repin(s->set, v);
}

int hes_roster_start(hes_server_t *s) {
  const char **lines = NULL;
  size_t n_lines = 0;
  if (hes_meterlist_lines(s->conf->meters,
                          s->conf->meter_files_num > 0 ? s->conf->meter_files[0] : NULL, &lines,
                          &n_lines) != 0) {
    ERROR(HES_PLUGIN " plugin: Server \"%s\": out of memory.", s->conf->name);
    return -1;
  }
  /* MeterFile lines beyond the first file's are fixed: only one file is watched. */
  hes_meterlist_config_t mc = {
      .server = s->conf->name,
      .meters = lines,
      .n_meters = n_lines,
      .meter_file = s->conf->meter_files_num > 0 ? s->conf->meter_files[0] : NULL,
      .dcus = (const char *const *)s->conf->dcus,
      .n_dcus = s->conf->dcus_num,
      .state_dir = hes_state_dir_path(),
  };
  char err[512] = "";
  s->meterlist = hes_meterlist_new(&mc, err, sizeof(err));
  free(lines);
  if (s->meterlist == NULL) {
    ERROR(HES_PLUGIN " plugin: Server \"%s\": %s", s->conf->name, err[0] ? err : "out of memory");
    return -1;
  }
  s->set = hes_meterlist_set(s->meterlist);
  err[0] = '\0';
  hes_meterlist_load_dcus(s->meterlist, err, sizeof(err));
  if (err[0] != '\0')
    WARNING(HES_PLUGIN " plugin: Server \"%s\": %s", s->conf->name, err);
  err[0] = '\0';
  if (hes_meterlist_check_file(s->meterlist, err, sizeof(err)) == HES_METERLIST_EFILE) {
    ERROR(HES_PLUGIN " plugin: Server \"%s\": %s", s->conf->name, err);
    return -1;
  }
  hes_meterset_update_t up;
  hes_meterlist_result_t r = hes_meterlist_update(s->meterlist, &up);
  if (r == HES_METERLIST_OK) {
    hes_meterlist_commit(s->meterlist, &up);
    hes_meterlist_done(s->meterlist, &up);
  } else if (r != HES_METERLIST_UNCHANGED) {
    ERROR(HES_PLUGIN " plugin: Server \"%s\": cannot build the meter list.", s->conf->name);
    return -1;
  }
  /* A DCU-only server's first start (or all its kept lists empty): it starts anyway, the books
   * and the relay take an empty list, and the first archive refresh that succeeds brings the
   * meters (the round's update hands them over as joiners). Said once, so that a server that
   * reads nothing while the HES is down is not a mystery. */
  const hes_meterver_t *v = hes_meterset_pin(s->set);
  if (hes_meterver_count(v) == 0)
    WARNING(HES_PLUGIN " plugin: Server \"%s\": no meters yet (no DCU list kept in StateDir "
                       "lists one): they come with the first DCU archive refresh that succeeds "
                       "(at start, then every %.0f s).",
            s->conf->name, (double)s->conf->dcu_refresh);
  hes_meterset_unpin(s->set, v);
  /* The published list replaces the config's: the relay and the books borrow from it. */
  hes_meters_free(s->conf->meters);
  s->conf->meters = NULL;
  hes_roster_trim();
  s->dcu_route = (hes_session_route_t){
      .sink = &hes_roster_sink,
      .user = s,
      .kind = HES_PUSH_ARCHIVE,
      .one_push = true,
  };
  s->dcu_next = 0; /* the first round refreshes */
  return 0;
}

void hes_roster_free(hes_server_t *s) {
  hes_meterlist_free(s->meterlist);
  s->meterlist = NULL;
  s->set = NULL;
}

/* ---------------------------------------------------------------------------------------
 * the read round */

static void hes_roster_refresh(hes_server_t *s) {
  for (size_t d = 0; d < s->conf->dcus_num; d++) {
    if (hes_meterlist_dcu_begin(s->meterlist, d) != HES_METERLIST_OK)
      continue;
    hes_session_request_t rq = {
        .route = &s->dcu_route,
        .tag = (uint32_t)d,
        .timeout = s->conf->plan_timeout,
    };
    hes_api_plan_t plan;
    hes_api_error_t err;
    if (hes_session_read_archive(s->read_client, &rq, s->conf->dcus[d], &plan, &err) !=
        HES_API_OK) {
      char what[64];
      snprintf(what, sizeof(what), "DCU %s", s->conf->dcus[d]);
      hes_log_api_error(s, &err, what);
      hes_roster_end(s, d, false);
    }
  }
}

void hes_roster_round(hes_server_t *s, bool can_request) {
  char err[512] = "";
  if (hes_meterlist_check_file(s->meterlist, err, sizeof(err)) == HES_METERLIST_EFILE)
    ERROR(HES_PLUGIN " plugin: Server \"%s\": %s", s->conf->name, err); /* once per broken file */
  double now = hes_clock_mono(); /* scheduling only: a wall clock step back must not stall it */
  if (s->conf->dcus_num > 0 && can_request && now >= s->dcu_next) {
    s->dcu_next = now + s->conf->dcu_refresh;
    hes_roster_refresh(s);
  }
  hes_meterset_update_t up;
  if (hes_meterlist_update(s->meterlist, &up) != HES_METERLIST_OK)
    return;
  /* No per-index state to grow: plans keep the indices they were made with, the relay and
   * the backfill books keep state by list position and are handed the new version below. */
  hes_meterlist_commit(s->meterlist, &up);
  /* The writer is this thread: the version pinned now is up.next. */
  const hes_meterver_t *v = hes_meterset_pin(s->set);
  hes_roster_relay(s, v);
  if (s->conf->frozen_num > 0)
    hes_billing_meters(s, hes_meterset_repin(s->set, v));
  hes_meterset_unpin(s->set, v);
  /* Open plans stop waiting for the leavers: not missing, and their indices can be reused. */
  hes_session_forget(s->session, up.left, up.n_left);
  size_t joined = up.n_joined, left = up.n_left, count = hes_meterver_count(up.next);
  hes_meterlist_done(s->meterlist, &up);
  hes_roster_trim();
  INFO(HES_PLUGIN " plugin: Server \"%s\": the meter list changed: %zu joined, %zu left, %zu "
                  "meter(s) now.",
       s->conf->name, joined, left, count);
}

void hes_roster_self(hes_server_t *s, const char *instance, cdtime_t now) {
  hes_meterlist_stats_t st;
  hes_meterlist_stats(s->meterlist, &st);
  hes_dispatch_gauge(instance, "gauge", "meters", now, hes_interval(s), (gauge_t)st.meters);
  hes_dispatch_derive(s, instance, "total_operations", "meters_added", now, st.meters_added);
  hes_dispatch_derive(s, instance, "total_operations", "meters_removed", now, st.meters_removed);
  if (s->conf->dcus_num == 0)
    return;
  hes_dispatch_derive(s, instance, "total_requests", "archive", now, st.archive);
  hes_dispatch_derive(s, instance, "total_requests", "archive_failed", now, st.archive_failed);
}

const char *hes_roster_name(hes_server_t *s, uint32_t idx, char *buf, size_t len) {
  const hes_meterver_t *v = hes_meterset_pin(s->set);
  const char *name = hes_meterver_name(v, idx);
  snprintf(buf, len, "%s", name != NULL ? name : "(left the list)");
  hes_meterset_unpin(s->set, v);
  return buf;
}
