/* session.c: hesctl on the session module (src/lib/session.h): the MQTT thread, the sink
 * that turns this run's pushes into result rows, and the requests that make plans. */
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

volatile sig_atomic_t interrupted;

static void on_signal(int sig) {
  (void)sig;
  interrupted = 1;
}

void catch_interrupts(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

/* The exit code that wins when several things went wrong: the cause an operator must see. */
void worst(ctl_t *c, int rc) {
  static const int rank[] = {
      [EXIT_ALL_OK] = 0, [EXIT_SOME_FAILED] = 1, [EXIT_MQTT] = 2,  [EXIT_PUSH] = 3,
      [EXIT_HES] = 4,    [EXIT_USAGE] = 5,       [EXIT_CONFIG] = 6};
  if (rank[rc] > rank[c->rc])
    c->rc = rc;
}

row_t *row_new(ctl_t *c) {
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
  r->latency = -1;
  return r;
}

static void *mqtt_thread(void *arg) {
  hes_mqtt_run(arg);
  return NULL;
}

/* Checks the HES settings: a config the api module refuses is a config error, before
 * anything is sent. */
int session_api(ctl_t *c) {
  c->api_cfg = (hes_api_config_t){
      .url = c->set.srv->url,
      .tenant_code = c->set.srv->tenant,
      .username = c->set.srv->username,
      .password = c->set.srv->password,
      .secret_key = c->set.srv->secret_key,
      .verify_peer = c->set.srv->verify_peer,
      .verify_host = c->set.srv->verify_host,
      .ca_cert = c->set.srv->ca_cert,
      .timeout_ms = (long)c->set.srv->timeout_ms,
  };
  hes_api_error_t err;
  hes_api_t *api = hes_api_new(&c->api_cfg, &err);
  if (api == NULL) {
    errx_("HES %s: %s", c->set.srv->url, err.msg);
    return EXIT_CONFIG;
  }
  hes_api_free(api);
  return EXIT_ALL_OK;
}

static const hes_session_sink_t ctl_sink;

/* The session, with MQTT (read, relay, dcu) or without (history). With MQTT it returns once
 * the subscription is acknowledged. */
int session_open(ctl_t *c, bool mqtt) {
  char topic[HES_METER_MAX_LEN + 8], client_id[128], host[64] = "host";
  snprintf(topic, sizeof(topic), "/%s/#", c->set.srv->tenant);
  gethostname(host, sizeof(host) - 1);
  host[sizeof(host) - 1] = '\0';
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  /* unique per run: two operators, or the plugin, must not take each other's session */
  snprintf(client_id, sizeof(client_id), "hesctl-%.40s-%ld-%08lx", host, (long)getpid(),
           (unsigned long)(ts.tv_nsec ^ ts.tv_sec));
  hes_mqtt_config_t mc = {
      .host = c->set.srv->mqtt_host,
      .port = c->set.srv->mqtt_port,
      .user = c->set.srv->mqtt_user,
      .password = c->set.srv->mqtt_password,
      .client_id = client_id,
      .qos = c->set.srv->mqtt_qos,
      .clean_session = true,
      .tls = c->set.srv->mqtt_tls,
      .ca_cert = c->set.srv->mqtt_ca_cert,
      .cert_file = c->set.srv->mqtt_cert_file,
      .key_file = c->set.srv->mqtt_key_file,
      .tls_protocol = c->set.srv->mqtt_tls_protocol,
      .topic = topic,
      .backoff_min = 0.2,
      .backoff_max = 1,
      .connect_timeout = CTL_READY_MAX,
  };
  hes_session_config_t sc = {
      .api = &c->api_cfg,
      .meters = c->meters,
      .mqtt = mqtt ? &mc : NULL,
      .sink = &ctl_sink,
      .user = c,
      .now = hes_clock_mono,
  };
  char why[256] = "";
  c->session = hes_session_new(&sc, why, sizeof(why));
  if (c->session == NULL) {
    errx_("%s%s", mqtt ? "MQTT: " : "", why);
    return EXIT_CONFIG;
  }
  hes_api_error_t err;
  c->client = hes_session_client_new(c->session, &err);
  if (c->client == NULL) {
    errx_("HES %s: %s", c->set.srv->url, err.msg);
    return EXIT_CONFIG;
  }
  for (size_t i = 0; i < c->nitems; i++) {
    bool frozen = c->items[i]->category == HES_ITEM_COMPOSITE;
    c->routes[i] = (hes_session_route_t){
        .sink = &ctl_sink,
        .user = c,
        .kind = frozen ? HES_PUSH_CHANNELS : HES_PUSH_READINGS,
        .cgcode = frozen ? 0 : c->items[i]->cgcode,
        .one_push = true, /* one message per plan (seed): whatever it holds is final */
    };
  }
  c->route_relay =
      (hes_session_route_t){.sink = &ctl_sink, .user = c, .kind = HES_PUSH_RELAY, .one_push = true};
  /* DCU add/remove answer with a status only (an empty push) */
  c->route_dcu = (hes_session_route_t){
      .sink = &ctl_sink, .user = c, .kind = HES_PUSH_ARCHIVE, .one_push = true};
  if (!mqtt)
    return EXIT_ALL_OK;

  c->mqtt = hes_session_mqtt(c->session);
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
    char reason[sizeof(c->mqtt_why)];
    snprintf(reason, sizeof(reason), "%s", c->mqtt_why[0] ? c->mqtt_why : "no answer");
    pthread_mutex_unlock(&c->lock);
    errx_("MQTT broker %s:%d: not ready after %g s: %s", c->set.srv->mqtt_host,
          c->set.srv->mqtt_port, wait, reason);
    return EXIT_MQTT;
  }
  return EXIT_ALL_OK;
}

/* Connects and subscribes; returns once the subscription is acknowledged. */
int session_mqtt(ctl_t *c) {
  if (c->set.srv->mqtt_host == NULL) {
    errx_("no MQTT broker: give --broker HOST[:PORT] or an <MQTT> Host in the config");
    return EXIT_CONFIG;
  }
  return session_open(c, true);
}

/* Stops the MQTT thread: no sink runs after this. */
void session_end(ctl_t *c) {
  if (c->thread_started) {
    hes_mqtt_stop(c->mqtt);
    pthread_join(c->thread, NULL);
    c->thread_started = false;
  }
}

void session_free(ctl_t *c) {
  session_end(c);
  hes_session_client_free(c->client);
  c->client = NULL;
  hes_session_free(c->session);
  c->session = NULL;
  c->mqtt = NULL;
}

void report_api_error(const hes_api_error_t *err) {
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
void set_reading(ctl_t *c, row_t *row, const hes_item_t *item, const char *value,
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

/* ---- the sink: the MQTT thread's pushes and the main thread's replays, under c->lock ------ */

static void on_entries(void *user, const hes_session_plan_t *plan, const hes_push_t *push,
                       const uint32_t *meter) {
  ctl_t *c = user;
  pthread_mutex_lock(&c->lock);
  const plan_t *pl = &c->plans_made[plan->tag];
  double latency = plan->arrived - plan->sent;
  for (size_t i = 0; i < push->count; i++) {
    if (meter[i] == HES_METER_NONE)
      continue;
    row_t *row = NULL;
    if (pl->op == OP_RELAY) {
      const hes_push_relay_t *r = &push->relays[i];
      if ((row = row_new(c)) == NULL)
        break;
      row->meter = meter[i];
      row->status = r->successful ? "ok" : "failed";
      c->answered[meter[i]] = true;
      continue;
    }
    const hes_push_reading_t *r = &push->readings[i];
    const hes_item_t *item = c->items[pl->item];
    bool frozen = item->category == HES_ITEM_COMPOSITE;
    const hes_item_t *chan = NULL;
    if (frozen) {
      chan = hes_item_by_cgcode(r->cgcode);
      if (chan != NULL && chan->category != HES_ITEM_SINGLE)
        chan = NULL;
      if (chan == NULL && !c->opt.raw)
        continue; /* the vendor's channels without a unit of their own: --raw shows them */
    }
    if ((row = row_new(c)) == NULL)
      break;
    row->meter = meter[i];
    row->item = pl->item;
    row->ts_ms = r->timestamp_ms;
    row->channel = frozen ? r->cgcode : 0;
    row->latency = latency;
    set_reading(c, row, frozen ? chan : item, r->value, r->unit);
    c->answered[pl->item * c->nmeters + meter[i]] = true;
  }
  pthread_mutex_unlock(&c->lock);
}

static void on_archive(void *user, const hes_session_plan_t *plan, const hes_push_t *push) {
  (void)plan;
  ctl_t *c = user;
  pthread_mutex_lock(&c->lock);
  for (size_t i = 0; i < push->count; i++) {
    const hes_push_archive_t *a = &push->archives[i];
    row_t *row = row_new(c);
    if (row == NULL)
      break;
    sanitize(row->dev, sizeof(row->dev), a->dev_addr, a->dev_addr_len);
    row->enabled = a->enabled;
    sanitize(row->comm_type, sizeof(row->comm_type), a->comm_type, strlen(a->comm_type));
    sanitize(row->module_next, sizeof(row->module_next), a->module_next, strlen(a->module_next));
  }
  pthread_mutex_unlock(&c->lock);
}

static void on_done(void *user, const hes_session_plan_t *plan, hes_push_status_t status) {
  ctl_t *c = user;
  pthread_mutex_lock(&c->lock);
  plan_t *pl = &c->plans_made[plan->tag];
  pl->failed = status != HES_PUSH_SUCCESS;
  pl->done = true;
  pthread_cond_signal(&c->cond);
  pthread_mutex_unlock(&c->lock);
}

static void on_rejected(void *user, const hes_session_reject_t *why) {
  ctl_t *c = user;
  switch (why->kind) {
  case HES_SESSION_REJECT_PARSE:
  case HES_SESSION_REJECT_DROPPED:
  case HES_SESSION_REJECT_KIND:
    pthread_mutex_lock(&c->lock);
    c->rejected++;
    pthread_mutex_unlock(&c->lock);
    if (why->kind == HES_SESSION_REJECT_PARSE)
      errx_("warning: rejected a push of %zu bytes: %s", why->len, why->detail);
    else if (why->kind == HES_SESSION_REJECT_DROPPED)
      errx_("warning: plan %s: no room to keep a push that came before its plan; dropped",
            why->plan_id);
    else
      errx_("warning: plan %s: a push of an unexpected kind", why->plan_id);
    break;
  case HES_SESSION_REJECT_SKIPPED:
    errx_("warning: plan %s: skipped %zu malformed entr%s: %s", why->plan_id, why->count,
          why->count == 1 ? "y" : "ies", why->detail);
    break;
  default:
    break; /* readings for meters or items not asked for: not shown */
  }
}

static void on_broker(void *user, bool ready, const char *why) {
  ctl_t *c = user;
  if (ready)
    return;
  pthread_mutex_lock(&c->lock);
  snprintf(c->mqtt_why, sizeof(c->mqtt_why), "%s", why != NULL ? why : "connection lost");
  pthread_mutex_unlock(&c->lock);
}

static const hes_session_sink_t ctl_sink = {
    .readings = on_entries,
    .frozen = on_entries,
    .relay = on_entries,
    .archive = on_archive,
    .done = on_done,
    .rejected = on_rejected,
    .broker = on_broker,
};

/* ---- requests ------------------------------------------------------------------------------- */

typedef struct {
  ctl_t *c;
  plan_t plan; /* filled but for plan_id */
  bool sent;
} sent_ctx_t;

/* The HES named the planId: the plan joins plans_made before any push of it is handled. */
static void on_sent(void *ctx, const hes_api_plan_t *ap) {
  sent_ctx_t *sc = ctx;
  ctl_t *c = sc->c;
  pthread_mutex_lock(&c->lock);
  if (c->nplans == c->plans_cap) {
    size_t cap = c->plans_cap ? c->plans_cap * 2 : 16;
    plan_t *np = realloc(c->plans_made, cap * sizeof(*np));
    if (np == NULL) {
      pthread_mutex_unlock(&c->lock);
      return; /* the tag points nowhere: plan_request fails the request */
    }
    c->plans_made = np;
    c->plans_cap = cap;
  }
  plan_t *pl = &c->plans_made[c->nplans++];
  *pl = sc->plan;
  snprintf(pl->plan_id, sizeof(pl->plan_id), "%s", ap->plan_id);
  pl->deadline = hes_clock_mono() + c->opt.timeout;
  sc->sent = true;
  pthread_mutex_unlock(&c->lock);
}

/* One request that makes a plan: op's call for meters [first, first + n) (read: of item;
 * dcu: the whole meter list), its plan registered for the sink. */
hes_api_result_t plan_request(ctl_t *c, op_t op, size_t item, size_t first, size_t n,
                              hes_api_error_t *err) {
  uint32_t *idx = malloc((n ? n : 1) * sizeof(*idx));
  if (idx == NULL) {
    memset(err, 0, sizeof(*err));
    err->kind = HES_API_ENOMEM;
    snprintf(err->msg, sizeof(err->msg), "out of memory");
    return HES_API_ENOMEM;
  }
  for (size_t i = 0; i < n; i++)
    idx[i] = (uint32_t)(first + i);
  sent_ctx_t sc = {.c = c, .plan = {.op = op, .item = item, .first = first, .n = n}};
  hes_session_request_t rq = {
      .route = op == OP_READ    ? &c->routes[item]
               : op == OP_RELAY ? &c->route_relay
                                : &c->route_dcu,
      .tag = (uint32_t)c->nplans, /* on_sent puts the plan there: only this thread adds */
      .meters = idx,
      .n = n,
      .timeout = c->opt.timeout,
      .sent = on_sent,
      .ctx = &sc,
  };
  hes_api_plan_t plan;
  hes_api_result_t r = HES_API_EINVAL;
  const hes_item_t *it = op == OP_READ ? c->items[item] : NULL;
  if (op == OP_READ && it->category == HES_ITEM_COMPOSITE) {
    r = hes_session_read_frozen(c->client, &rq, it->cgcode, c->from, c->to, &plan, err);
  } else if (op == OP_READ) {
    r = hes_session_read_single(c->client, &rq, it->cgcode, &plan, err);
  } else if (op == OP_RELAY) {
    r = hes_session_relay(c->client, &rq, c->control_mode, &plan, err);
  } else if (op == OP_DCU_LIST) {
    r = hes_session_read_archive(c->client, &rq, c->dcu, &plan, err);
  } else if (op == OP_DCU_ADD) {
    hes_api_archive_t *a = calloc(c->nmeters ? c->nmeters : 1, sizeof(*a));
    if (a != NULL) {
      for (size_t i = 0; i < c->nmeters; i++) {
        a[i].dev_addr = c->meter_list[i];
        a[i].enabled = !c->opt.disabled;
      }
      r = hes_session_add_archive(c->client, &rq, c->dcu, a, c->nmeters, &plan, err);
      free(a);
    } else {
      r = HES_API_ENOMEM;
      snprintf(err->msg, sizeof(err->msg), "out of memory");
    }
  } else {
    r = hes_session_remove_archive(c->client, &rq, c->dcu, c->meter_list, c->nmeters, &plan, err);
  }
  free(idx);
  if (r == HES_API_OK && !sc.sent) {
    memset(err, 0, sizeof(*err));
    err->kind = HES_API_ENOMEM;
    snprintf(err->msg, sizeof(err->msg), "out of memory");
    r = HES_API_ENOMEM;
  }
  if (r != HES_API_OK && sc.sent) {
    /* The HES made the plan but it cannot be tracked: nothing to wait for. */
    pthread_mutex_lock(&c->lock);
    c->plans_made[c->nplans - 1].done = true;
    c->plans_made[c->nplans - 1].failed = true;
    pthread_mutex_unlock(&c->lock);
  }
  return r;
}

static bool all_done(const ctl_t *c) {
  for (size_t i = 0; i < c->nplans; i++)
    if (!c->plans_made[i].done)
      return false;
  return true;
}

/* Waits until every plan is done or the last deadline passed; the sinks do the work. */
void wait_pushes(ctl_t *c) {
  pthread_mutex_lock(&c->lock);
  double deadline = 0;
  for (size_t i = 0; i < c->nplans; i++)
    if (c->plans_made[i].deadline > deadline)
      deadline = c->plans_made[i].deadline;
  while (!all_done(c) && !interrupted) {
    double left = deadline - hes_clock_mono();
    if (left <= 0)
      break;
    struct timespec ts = hes_clock_after(CLOCK_REALTIME, left < 0.2 ? left : 0.2);
    pthread_cond_timedwait(&c->cond, &c->lock, &ts);
  }
  uint64_t rejected = c->rejected;
  pthread_mutex_unlock(&c->lock);
  /* The MQTT thread is stopped by the caller (session_end) before the rows are read; plans
   * not done by now stay so. */
  for (size_t i = 0; i < c->nplans; i++) {
    pthread_mutex_lock(&c->lock);
    bool done = c->plans_made[i].done;
    char id[HES_PLAN_ID_MAX];
    snprintf(id, sizeof(id), "%s", c->plans_made[i].plan_id);
    pthread_mutex_unlock(&c->lock);
    if (done || interrupted)
      continue;
    if (rejected > 0) {
      errx_("plan %s: no usable push within %g s: %" PRIu64 " push(es) were rejected (see the "
            "warnings above)",
            id, c->opt.timeout, rejected);
      worst(c, EXIT_PUSH);
    } else {
      errx_("plan %s: no push within %g s (is the HES publishing to this broker?)", id,
            c->opt.timeout);
      worst(c, EXIT_MQTT);
    }
  }
}
