/* session.c: hesctl's session: the api handle, the MQTT thread and its queue of pushes, the
 * plans this run made, and the handling of each push on the main thread. */
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
  static const int rank[] = {[EXIT_ALL_OK] = 0, [EXIT_SOME_FAILED] = 1, [EXIT_MQTT] = 2,
                             [EXIT_HES] = 3,    [EXIT_USAGE] = 4,       [EXIT_CONFIG] = 5};
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
  hes_plan_lookup_t lr =
      hes_plans_lookup(c->plans, push.plan_id, hes_clock_mono(), payload, len, NULL);
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

int session_api(ctl_t *c) {
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
int session_mqtt(ctl_t *c) {
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

void session_end(ctl_t *c) {
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
  if (hes_plans_lookup(c->plans, push.plan_id, hes_clock_mono(), NULL, 0, &info) != HES_PLAN_OPEN)
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
int plan_track(ctl_t *c, const hes_api_plan_t *ap, op_t op, size_t item, size_t first, size_t n) {
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
  pl->deadline = hes_clock_mono() + c->opt.timeout;
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
void wait_pushes(ctl_t *c) {
  double deadline = 0;
  for (size_t i = 0; i < c->nplans; i++)
    if (c->plans_made[i].deadline > deadline)
      deadline = c->plans_made[i].deadline;
  pthread_mutex_lock(&c->lock);
  while (!all_done(c) && !interrupted) {
    if (c->head == NULL) {
      double left = deadline - hes_clock_mono();
      if (left <= 0)
        break;
      struct timespec ts = hes_clock_after(CLOCK_REALTIME, left < 0.2 ? left : 0.2);
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
