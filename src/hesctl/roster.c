/* roster.c: `read --all`, the meters the plugin would read. The same meterlist module as the
 * plugin, fed the same way: the Meter lines, the watched MeterFile, the DCU lists kept in
 * StateDir, and one refresh of every DCU through the session (readArchive, its push). */
#include "config.h"

#include "hesctl.h"

#include "meterlist.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
  ctl_t *c;
  hes_meterlist_t *ml;
  size_t ended; /* DCU refreshes over, under c->lock */
  bool *open;   /* per DCU: begun and not over, under c->lock */
} roster_t;

static void roster_end(roster_t *r, size_t dcu, bool ok) {
  char err[256] = "";
  if (hes_meterlist_dcu_end(r->ml, dcu, ok, err, sizeof(err)) == HES_METERLIST_EFAILED)
    errx_("DCU %s: the refresh failed; its kept list is used", hes_meterlist_dcu_name(r->ml, dcu));
  pthread_mutex_lock(&r->c->lock);
  r->ended++;
  r->open[dcu] = false;
  pthread_cond_broadcast(&r->c->cond);
  pthread_mutex_unlock(&r->c->lock);
}

static void roster_archive(void *user, const hes_session_plan_t *plan, const hes_push_t *push) {
  roster_t *r = user;
  for (size_t i = 0; i < push->count; i++)
    hes_meterlist_dcu_entry(r->ml, plan->tag, push->archives[i].dev_addr,
                            push->archives[i].dev_addr_len, push->archives[i].enabled);
}

static void roster_done(void *user, const hes_session_plan_t *plan, hes_push_status_t status) {
  roster_end(user, plan->tag, status == HES_PUSH_SUCCESS);
}

static const hes_session_sink_t roster_sink = {
    .archive = roster_archive,
    .done = roster_done,
};

/* One refresh of every DCU; what did not come within --timeout keeps its kept list. */
static int roster_refresh(roster_t *r) {
  ctl_t *c = r->c;
  int rc = session_mqtt(c);
  if (rc != EXIT_ALL_OK)
    return rc;
  hes_session_route_t route = {
      .sink = &roster_sink, .user = r, .kind = HES_PUSH_ARCHIVE, .one_push = true};
  size_t n = hes_meterlist_dcu_count(r->ml);
  r->open = calloc(n ? n : 1, sizeof(*r->open));
  if (r->open == NULL) {
    errx_("out of memory");
    return EXIT_SOME_FAILED;
  }
  size_t sent = 0;
  for (size_t d = 0; d < n && !interrupted; d++) {
    if (hes_meterlist_dcu_begin(r->ml, d) != HES_METERLIST_OK)
      continue;
    pthread_mutex_lock(&c->lock);
    r->open[d] = true;
    pthread_mutex_unlock(&c->lock);
    hes_session_request_t rq = {.route = &route, .tag = (uint32_t)d, .timeout = c->opt.timeout};
    hes_api_plan_t plan;
    hes_api_error_t err;
    if (hes_session_read_archive(c->client, &rq, hes_meterlist_dcu_name(r->ml, d), &plan, &err) !=
        HES_API_OK) {
      report_api_error(&err);
      worst(c, EXIT_HES);
      roster_end(r, d, false);
    }
    sent++;
  }
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += (time_t)c->opt.timeout;
  pthread_mutex_lock(&c->lock);
  while (r->ended < sent && !interrupted &&
         pthread_cond_timedwait(&c->cond, &c->lock, &until) != ETIMEDOUT)
    ;
  bool late = r->ended < sent;
  pthread_mutex_unlock(&c->lock);
  /* No sink runs after this: what did not come is a failed refresh. */
  session_free(c);
  if (late) {
    errx_("%zu DCU archive(s) did not come within %g s; their kept lists are used", sent - r->ended,
          c->opt.timeout);
    worst(c, EXIT_PUSH);
    for (size_t d = 0; d < n; d++)
      if (r->open[d])
        (void)hes_meterlist_dcu_end(r->ml, d, false, NULL, 0);
  }
  free(r->open);
  r->open = NULL;
  return EXIT_ALL_OK;
}

/* Replaces c's meters with the list's (in the list's order). */
static int roster_take(ctl_t *c, hes_meterlist_t *ml) {
  hes_meterset_t *set = hes_meterlist_set(ml);
  const hes_meterver_t *v = hes_meterset_pin(set);
  size_t n = hes_meterver_count(v);
  hes_meters_t *m = hes_meterver_list(v);
  hes_meterset_unpin(set, v);
  const char **list = m != NULL ? calloc(n ? n : 1, sizeof(*list)) : NULL;
  if (list == NULL) {
    errx_("out of memory");
    hes_meters_free(m);
    return EXIT_SOME_FAILED;
  }
  for (size_t i = 0; i < n; i++)
    list[i] = hes_meters_at(m, (uint32_t)i);
  hes_meters_free(c->meters);
  free(c->meter_list);
  c->meters = m;
  c->meter_list = list;
  c->nmeters = n;
  return EXIT_ALL_OK;
}

int roster_meters(ctl_t *c) {
  const settings_t *s = &c->set;
  const char **lines = NULL;
  size_t n_lines = 0;
  if (hes_meterlist_lines(s->srv->meters, settings_meter_file(s), &lines, &n_lines) != 0) {
    errx_("out of memory");
    return EXIT_SOME_FAILED;
  }
  hes_meterlist_config_t mc = {
      .server = s->srv->name,
      .meters = lines,
      .n_meters = n_lines,
      .meter_file = settings_meter_file(s),
      .dcus = (const char *const *)s->srv->dcus,
      .n_dcus = s->srv->dcus_num,
      .state_dir = s->state_dir,
  };
  char err[512] = "";
  hes_meterlist_t *ml = hes_meterlist_new(&mc, err, sizeof(err));
  free(lines);
  if (ml == NULL) {
    errx_("%s", err[0] ? err : "out of memory");
    return EXIT_CONFIG;
  }
  int rc = EXIT_ALL_OK;
  err[0] = '\0';
  hes_meterlist_load_dcus(ml, err, sizeof(err));
  if (err[0] != '\0')
    errx_("warning: %s", err);
  if (hes_meterlist_check_file(ml, err, sizeof(err)) == HES_METERLIST_EFILE) {
    errx_("%s", err);
    rc = EXIT_CONFIG;
  }
  roster_t r = {.c = c, .ml = ml};
  if (rc == EXIT_ALL_OK && s->srv->dcus_num > 0)
    rc = roster_refresh(&r);
  hes_meterset_update_t up;
  if (rc == EXIT_ALL_OK) {
    hes_meterlist_result_t ur = hes_meterlist_update(ml, &up);
    if (ur == HES_METERLIST_OK) {
      hes_meterlist_commit(ml, &up);
      hes_meterlist_done(ml, &up);
    }
    rc = roster_take(c, ml);
  }
  hes_meterlist_free(ml);
  if (rc == EXIT_ALL_OK && c->nmeters == 0) {
    errx_("read --all: server \"%s\" has no meters", s->srv->name != NULL ? s->srv->name : "");
    rc = EXIT_SOME_FAILED;
  } else if (rc == EXIT_ALL_OK && c->nmeters > CTL_MEMBERS_MAX) {
    errx_("%zu meters: at most %d at a time", c->nmeters, CTL_MEMBERS_MAX);
    rc = EXIT_USAGE;
  }
  return rc;
}
