/* hes.c: the collectd plugin's entry points. It wires the collectd-free modules together:
 * per <Server> a session (the request path: api, mqtt, plans, push), a read callback that
 * asks the HES for readings, an MQTT thread whose pushes the session routes to the sinks
 * of read.c, billing.c and breaker.c, and a billing thread for frozen items. Here:
 * module_register, init (the types, then per <Server> the session, the MQTT thread, the
 * billing thread and the read callback, and the relay thread), shutdown, and the helpers
 * every glue file uses. */
#include "config.h"

#include "plugin.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

hes_server_t *hes_servers;
atomic_bool hes_initialised;
hes_relay_conf_t *hes_relay_conf;
hes_conf_t hes_conf;

/* ---------------------------------------------------------------------------------------
 * logging helpers */

void hes_ratelimit_init(hes_ratelimit_t *rl) {
  pthread_mutex_init(&rl->lock, NULL);
  rl->window_start = 0;
  rl->lines = 0;
  rl->suppressed = 0;
}

/* Returns true if a line may be logged now; *suppressed_before receives how many lines were
 * swallowed since the last one that was let through. */
bool hes_ratelimit_allow(hes_ratelimit_t *rl, uint64_t *suppressed_before) {
  cdtime_t now = cdtime();
  bool allow;
  pthread_mutex_lock(&rl->lock);
  if (now - rl->window_start >= TIME_T_TO_CDTIME_T(60)) {
    rl->window_start = now;
    rl->lines = 0;
  }
  allow = rl->lines < HES_LOG_BURST;
  if (allow) {
    rl->lines++;
    *suppressed_before = rl->suppressed;
    rl->suppressed = 0;
  } else {
    rl->suppressed++;
  }
  pthread_mutex_unlock(&rl->lock);
  return allow;
}

/* StateDir, or collectd's BaseDir. */
const char *hes_state_dir_path(void) {
  if (hes_conf.state_dir != NULL)
    return hes_conf.state_dir;
  const char *base = global_option_get("BaseDir");
  return base != NULL ? base : ".";
}

/* ---------------------------------------------------------------------------------------
 * the MQTT thread: pushes in, routed by the session to their plans' sinks */

static void *hes_mqtt_thread(void *arg) {
  hes_server_t *s = arg;
  hes_mqtt_run(s->mqtt);
  return NULL;
}

/* ---------------------------------------------------------------------------------------
 * init and shutdown */

/* What hes_server_start made; the MQTT thread, the billing thread and the relay thread are
 * gone by now. */
void hes_server_runtime_free(hes_server_t *s) {
  hes_session_client_free(s->read_client);
  hes_session_client_free(s->billing_client);
  s->read_client = s->billing_client = NULL;
  hes_session_free(s->session);
  s->session = NULL;
  s->mqtt = NULL;
  /* The books and the relay borrow their lists from pinned versions of the set: they go,
   * and the pins with them, before the set. */
  for (size_t i = 0; i < s->conf->frozen_num; i++) {
    hes_backfill_free(s->frozen[i].backfill);
    s->frozen[i].backfill = NULL;
    s->frozen[i].meters = NULL;
    hes_meterset_unpin(s->set, s->frozen[i].ver);
    s->frozen[i].ver = NULL;
  }
  hes_meterset_unpin(s->set, s->billing_next);
  s->billing_next = NULL;
  hes_relay_conf_t *rc = hes_relay_conf;
  if (rc != NULL && rc->server == s) {
    hes_relay_free(rc->relay); /* its thread is gone already */
    rc->relay = NULL;
    hes_meterset_unpin(s->set, rc->ver);
    rc->ver = NULL;
  }
  hes_roster_free(s); /* after the session, which looks meters up in its set */
  free(s->batch_index);
  free(s->read_failed);
  s->read_failed = NULL;
  s->read_failed_cap = 0;
  free(s->billing_index);
  s->batch_index = s->billing_index = NULL;
  if (s->billing_sync) {
    pthread_mutex_destroy(&s->billing_lock);
    pthread_cond_destroy(&s->billing_cond);
    s->billing_sync = false;
  }
}

void hes_relay_runtime_free(hes_relay_conf_t *rc) {
  hes_session_client_free(rc->client);
  rc->client = NULL;
}

static int hes_check_type(const char *type) {
  if (plugin_get_ds(type) != NULL)
    return 0;
  ERROR(HES_PLUGIN " plugin: the type \"%s\" is not defined. Load the plugin's types next to "
                   "collectd's: TypesDB \"/usr/share/collectd/types.db\" "
                   "\"/usr/share/collectd-hes/hes-types.db\"",
        type);
  return -1;
}

static int hes_server_start(hes_server_t *s) {
  pthread_mutex_init(&s->billing_lock, NULL);
  /* The billing thread's waits are on CLOCK_MONOTONIC (hes_billing_wait): on pthread's
   * default CLOCK_REALTIME a step of the wall clock stretches or cuts them. */
  int rc = hes_clock_cond_init(&s->billing_cond);
  if (rc != 0) {
    pthread_mutex_destroy(&s->billing_lock);
    ERROR(HES_PLUGIN " plugin: Server \"%s\": cannot set up the billing thread's condition "
                     "variable: %s",
          s->conf->name, STRERROR(rc));
    return -1;
  }
  s->billing_sync = true;
  hes_health_init(s);
  s->batch_index = calloc(hes_batch_size(s), sizeof(*s->batch_index));
  if (s->batch_index == NULL) {
    ERROR(HES_PLUGIN " plugin: Server \"%s\": out of memory.", s->conf->name);
    return -1;
  }
  if (hes_roster_start(s) != 0)
    return -1;
  for (size_t i = 0; i < s->conf->frozen_num; i++) {
    struct hes_frozen *f = &s->frozen[i];
    char path[PATH_MAX];
    char why[512] = "";
    snprintf(path, sizeof(path), "%s/hes-backfill-%s-%s.state", hes_state_dir_path(), s->conf->name,
             f->item->period);
    f->ver = hes_meterset_pin(s->set);
    f->meters = hes_meterver_meters(f->ver);
    hes_backfill_config_t bc = {
        .server = s->conf->name,
        .kind = (hes_backfill_kind_t)f->item->cgcode,
        .meters = f->meters,
        .tz = s->conf->tz,
        .periods = (unsigned)s->conf->backfill_periods,
        .give_up = (int64_t)s->conf->give_up_after,
        .hold_gaps = true,
        /* The billing thread takes before, during and after a round: half an Interval apart
         * at least, so a meter's periods never reach collectd back to back (half: the loop's
         * own take, an Interval after the last, is never refused for clock jitter). */
        .take_gap = CDTIME_T_TO_DOUBLE(hes_interval(s)) / 2,
        .state_path = path,
    };
    f->backfill = hes_backfill_new(&bc, why, sizeof(why));
    if (f->backfill == NULL) {
      ERROR(HES_PLUGIN " plugin: Server \"%s\": %s: %s", s->conf->name, f->item->name, why);
      return -1;
    }
    if (why[0] != '\0')
      WARNING(HES_PLUGIN " plugin: Server \"%s\": %s: %s", s->conf->name, f->item->name, why);
  }

  if (s->conf->mqtt_client_id == NULL) {
    char id[256];
    snprintf(id, sizeof(id), "collectd-hes-%s-%s", hostname_g, s->conf->name);
    s->conf->mqtt_client_id = strdup(id);
    if (s->conf->mqtt_client_id == NULL)
      return -1;
  }
  snprintf(s->topic_filter, sizeof(s->topic_filter), "/%s/#", s->conf->tenant);
  s->api_config = (hes_api_config_t){
      .url = s->conf->url,
      .tenant_code = s->conf->tenant,
      .username = s->conf->username,
      .password = s->conf->password,
      .secret_key = s->conf->secret_key,
      .verify_peer = s->conf->verify_peer,
      .verify_host = s->conf->verify_host,
      .ca_cert = s->conf->ca_cert,
      .timeout_ms = (long)s->conf->timeout_ms,
      .latency = &s->health.http, /* every client's requests: read, billing, relay */
  };
  hes_mqtt_config_t mc = {
      .host = s->conf->mqtt_host,
      .port = s->conf->mqtt_port,
      .user = s->conf->mqtt_user,
      .password = s->conf->mqtt_password,
      .client_id = s->conf->mqtt_client_id,
      .qos = s->conf->mqtt_qos,
      .clean_session = s->conf->mqtt_clean_session,
      .keepalive = s->conf->mqtt_keepalive,
      .tls = s->conf->mqtt_tls,
      .ca_cert = s->conf->mqtt_ca_cert,
      .cert_file = s->conf->mqtt_cert_file,
      .key_file = s->conf->mqtt_key_file,
      .tls_protocol = s->conf->mqtt_tls_protocol,
      .topic = s->topic_filter,
  };
  /* A finished or expired planId is remembered so that a QoS 1 redelivery counts as duplicate
   * and a push after the deadline as late, not as another instance's. Both come soon after
   * the deadline (a broker's redelivery at reconnect, a slow HES), so a few PlanTimeouts are
   * enough; the library's default of an hour made a busy server's memory grow for its first
   * hour (60 plans a round every 10 s: 21,600 tombstones, about 2.6 MB). */
  hes_plans_config_t pc = {.tombstone_ttl = HES_TOMBSTONE_PLAN_TIMEOUTS * s->conf->plan_timeout};
  hes_session_config_t sc = {
      .api = &s->api_config,
      .plans = &pc,
      .set = s->set,
      .mqtt = &mc,
      .sink = &hes_server_sink,
      .user = s,
      /* monotonic (the session's default): plan deadlines, token lifetimes and push
       * latencies are durations, which a step of the wall clock must not stretch or cut */
      .now = hes_clock_mono,
      .push_latency = &s->health.push,
  };
  char why[256] = "";
  s->session = hes_session_new(&sc, why, sizeof(why));
  if (s->session == NULL) {
    ERROR(HES_PLUGIN " plugin: Server \"%s\": <MQTT>: %s", s->conf->name, why);
    return -1;
  }
  s->mqtt = hes_session_mqtt(s->session);
  hes_api_error_t err;
  s->read_client = hes_session_client_new(s->session, &err);
  if (s->read_client == NULL) {
    ERROR(HES_PLUGIN " plugin: Server \"%s\": cannot set up the HTTP client: %s", s->conf->name,
          err.msg);
    return -1;
  }
  hes_read_routes(s);
  hes_billing_routes(s);
  int status = plugin_thread_create(&s->mqtt_thread, hes_mqtt_thread, s, "hes mqtt");
  if (status != 0) {
    ERROR(HES_PLUGIN " plugin: Server \"%s\": cannot start the MQTT thread: %s", s->conf->name,
          STRERROR(status));
    return -1;
  }
  s->mqtt_thread_started = true;
  if (hes_billing_start(s) != 0)
    return -1;

  char cb_name[DATA_MAX_NAME_LEN];
  snprintf(cb_name, sizeof(cb_name), HES_PLUGIN "-%s", s->conf->name);
  /* No free_func: collectd frees read user data before the shutdown callback runs, while
   * the MQTT thread still uses the server. hes_shutdown frees it. */
  status = plugin_register_complex_read(HES_PLUGIN, cb_name, hes_read, hes_interval(s),
                                        &(user_data_t){.data = s});
  if (status != 0) {
    ERROR(HES_PLUGIN " plugin: Server \"%s\": cannot register the read callback.", s->conf->name);
    return -1;
  }
  const hes_meterver_t *v = hes_meterset_pin(s->set);
  size_t count = hes_meterver_count(v);
  hes_meterset_unpin(s->set, v);
  INFO(HES_PLUGIN " plugin: Server \"%s\": %zu meter(s) x %zu item(s) every %.3f s, batches of "
                  "%zu, HES %s, broker %s:%d.",
       s->conf->name, count, s->conf->items_num, CDTIME_T_TO_DOUBLE(hes_interval(s)),
       hes_batch_size(s), s->conf->url, s->conf->mqtt_host, s->conf->mqtt_port);
  return 0;
}

static int hes_init(void) {
  if (hes_initialised)
    return 0;
  /* Types are complete only now (a TypesDB line may follow the <Plugin> block). */
  int status = 0;
  static const char *self_types[] = {"total_requests", "gauge", "total_values", "total_operations"};
  for (size_t i = 0; i < STATIC_ARRAY_SIZE(self_types); i++)
    status |= hes_check_type(self_types[i]);
  for (hes_server_t *s = hes_servers; s != NULL; s = s->next) {
    for (size_t i = 0; i < s->conf->items_num; i++)
      status |= hes_check_type(s->conf->items[i]->type);
    if (s->conf->frozen_num > 0) {
      static const int channels[] = {5069, 5074, 5084, 5089, 5099};
      for (size_t i = 0; i < STATIC_ARRAY_SIZE(channels); i++)
        status |= hes_check_type(hes_item_by_cgcode(channels[i])->type);
    }
  }
  if (status != 0)
    return -1;
  hes_initialised = true;
  for (hes_server_t *s = hes_servers; s != NULL; s = s->next) {
    if (hes_server_start(s) != 0) {
      plugin_unregister_read_group(HES_PLUGIN);
      return -1;
    }
  }
  if (hes_relay_conf != NULL && hes_relay_start(hes_relay_conf) != 0) {
    plugin_unregister_read_group(HES_PLUGIN);
    return -1;
  }
  return 0;
}

static int hes_shutdown(void) {
  hes_initialised = false;
  if (hes_relay_conf != NULL) {
    plugin_unregister_notification(HES_PLUGIN);
    if (hes_relay_conf->thread_started) {
      hes_relay_stop(hes_relay_conf->relay);
      pthread_join(hes_relay_conf->thread, NULL);
    }
  }
  for (hes_server_t *s = hes_servers; s != NULL; s = s->next) {
    hes_billing_stop(s);
    if (s->mqtt_thread_started)
      hes_mqtt_stop(s->mqtt);
  }
  while (hes_servers != NULL) {
    hes_server_t *s = hes_servers;
    hes_servers = s->next;
    if (s->mqtt_thread_started)
      pthread_join(s->mqtt_thread, NULL);
    hes_server_free(s);
  }
  hes_relay_conf_free(hes_relay_conf);
  hes_relay_conf = NULL;
  hes_conf_free(&hes_conf);
  return 0;
}

void module_register(void);
void module_register(void) {
  plugin_register_complex_config(HES_PLUGIN, hes_config);
  plugin_register_init(HES_PLUGIN, hes_init);
  plugin_register_shutdown(HES_PLUGIN, hes_shutdown);
}
