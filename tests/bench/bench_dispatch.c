/* bench_dispatch: collectd's bare dispatch cost, for tests/bench/ingest.sh. A thread made
 * with plugin_thread_create calls plugin_dispatch_values exactly as the hes plugin's MQTT
 * thread does (hes_dispatch_gauge: one gauge per value list, plugin "hes", plugin_instance =
 * the meter, the item's type and type_instance, the push's timestamp, vl.interval set), over
 * the same identifiers in the same order: bursts of Burst meters of one item, all meters of
 * an item, then the next item. Nothing is parsed, so what it costs is collectd's part.
 *
 * Rate 0 dispatches in a tight loop; Rate R paces the bursts to R values a second (the
 * plugin's shape: a push of 1000 readings at a time). Period P (seconds) instead dispatches
 * one round, every meter of every item in bursts back to back, at the start of every P
 * seconds and then idles: the shape of the plugin's read round when its pushes come in at
 * once (tests/bench/soak.sh SOAK_PLUGIN=dispatch). Items N uses the first N items (6 is
 * soak.sh's list: importActiveEnergy added). To keep collectd's unbounded write
 * queue from growing without end in the tight loop, it stops when more than MaxInFlight
 * values are dispatched but not yet counted by bench_count (found with dlsym; both plugins
 * need "Globals true").
 *
 *   <Plugin bench_dispatch>
 *     Meters 20000         (meter numbers MeterBase, MeterBase+1, ... as 12 digits)
 *     MeterBase 202407100001
 *     Burst 1000
 *     Rate 0
 *     MaxInFlight 20000
 *     Period 0
 *     Items 5
 *     Work 0               (us of busy work before each value: an experiment, see below)
 *   </Plugin>
 *
 * Work > 0 spins that long before each dispatch, standing in for the plugin's own work per
 * reading between two dispatches (meter lookup, plan bookkeeping, conversion): it tells how
 * collectd's cost changes when the values of a burst come further apart. */
#include "config.h"

#include "collectd/core/daemon/collectd.h"
#include "collectd/core/daemon/plugin.h"
#include "collectd/core/utils/common/common.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#define BD_METER_LEN 24

/* The five items ingest.sh configures for the hes plugin, in its Item order. */
static const struct {
  const char *type;
  const char *type_instance;
  double base;
} bd_items[] = {
    {"voltage", "A", 230.0},         {"current", "A", 7.3},
    {"power", "total", 1650.0},      {"reactive_power", "A", 120.0},
    {"power_factor", "total", 0.95}, {"energy_wh", "import", 1234.5},
};
#define BD_ITEMS (sizeof(bd_items) / sizeof(bd_items[0]))

static unsigned long long bd_meters = 20000;
static unsigned long long bd_meter_base = 202407100001ULL;
static unsigned long long bd_burst = 1000;
static double bd_rate;
static unsigned long long bd_max_in_flight = 20000;
static double bd_period;
static size_t bd_items_num = 5;
static double bd_work_us;

static char (*bd_names)[BD_METER_LEN];
static uint64_t (*bd_counted)(void);
static pthread_t bd_thread;
static bool bd_thread_started;
static atomic_bool bd_stop;

static double bd_mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void bd_sleep(double s) {
  if (s <= 0)
    return;
  struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};
  nanosleep(&ts, NULL);
}

/* The same work per value as hes_dispatch_gauge. */
static void bd_dispatch(const char *meter, const char *type, const char *type_instance,
                        cdtime_t time, gauge_t g) {
  value_list_t vl = VALUE_LIST_INIT;
  value_t v = {.gauge = g};
  vl.values = &v;
  vl.values_len = 1;
  vl.time = time;
  vl.interval = TIME_T_TO_CDTIME_T(1);
  sstrncpy(vl.plugin, "hes", sizeof(vl.plugin));
  sstrncpy(vl.plugin_instance, meter, sizeof(vl.plugin_instance));
  sstrncpy(vl.type, type, sizeof(vl.type));
  sstrncpy(vl.type_instance, type_instance, sizeof(vl.type_instance));
  plugin_dispatch_values(&vl);
}

static void *bd_main(void *arg) {
  (void)arg;
  uint64_t sent = 0;
  unsigned long long batches = (bd_meters + bd_burst - 1) / bd_burst;
  double start = bd_mono();
  for (uint64_t b = 0; !atomic_load_explicit(&bd_stop, memory_order_relaxed); b++) {
    if (bd_period > 0 && b % (batches * bd_items_num) == 0) {
      double next = start + bd_period * (double)(b / (batches * bd_items_num));
      while (!atomic_load(&bd_stop) && bd_mono() < next)
        bd_sleep(next - bd_mono() < 0.1 ? next - bd_mono() : 0.1);
    } else if (bd_period > 0) {
      /* within a round: back to back */
    } else if (bd_rate > 0) {
      bd_sleep(start + (double)sent / bd_rate - bd_mono());
    } else if (bd_counted != NULL) {
      while (sent - bd_counted() > bd_max_in_flight && !atomic_load(&bd_stop))
        bd_sleep(0.0002);
    }
    size_t item = (size_t)((b / batches) % bd_items_num);
    unsigned long long first = (b % batches) * bd_burst;
    unsigned long long n = bd_meters - first < bd_burst ? bd_meters - first : bd_burst;
    /* A push carries one millisecond timestamp for all its readings. */
    cdtime_t t = MS_TO_CDTIME_T(CDTIME_T_TO_MS(cdtime()));
    for (unsigned long long i = 0; i < n; i++) {
      if (bd_work_us > 0) {
        double until = bd_mono() + bd_work_us / 1e6;
        while (bd_mono() < until)
          ;
      }
      bd_dispatch(bd_names[first + i], bd_items[item].type, bd_items[item].type_instance, t,
                  bd_items[item].base + (double)((first + i) % 100) * 0.01);
    }
    sent += n;
  }
  INFO("bench_dispatch plugin: dispatched %" PRIu64 " values in %.3f s", sent, bd_mono() - start);
  return NULL;
}

/* collectd hands numbers over as "%lf" strings ("20000.000000"). */
static int bd_config(const char *key, const char *value) {
  char *end = NULL;
  double d = strtod(value, &end);
  if (end == value || *end != '\0' || !(d >= 0) || d > 1e15)
    return -1;
  if (strcasecmp(key, "Rate") == 0)
    bd_rate = d;
  else if (strcasecmp(key, "Meters") == 0 && d >= 1 && d <= 1e7)
    bd_meters = (unsigned long long)d;
  else if (strcasecmp(key, "MeterBase") == 0 && d < 9e11)
    bd_meter_base = (unsigned long long)d;
  else if (strcasecmp(key, "Burst") == 0 && d >= 1)
    bd_burst = (unsigned long long)d;
  else if (strcasecmp(key, "MaxInFlight") == 0 && d >= 1)
    bd_max_in_flight = (unsigned long long)d;
  else if (strcasecmp(key, "Period") == 0)
    bd_period = d;
  else if (strcasecmp(key, "Items") == 0 && d >= 1 && d <= BD_ITEMS)
    bd_items_num = (size_t)d;
  else if (strcasecmp(key, "Work") == 0 && d <= 1000)
    bd_work_us = d;
  else
    return -1;
  return 0;
}

static int bd_init(void) {
  if (bd_thread_started)
    return 0;
  bd_names = calloc(bd_meters, sizeof(*bd_names));
  if (bd_names == NULL)
    return -1;
  for (unsigned long long i = 0; i < bd_meters; i++)
    snprintf(bd_names[i], sizeof(bd_names[i]), "%012llu", bd_meter_base + i);
  bd_counted = (uint64_t(*)(void))dlsym(RTLD_DEFAULT, "bench_count_total");
  if (bd_counted == NULL && bd_rate <= 0)
    WARNING("bench_dispatch plugin: bench_count_total not found (load bench_count with "
            "Globals true): the tight loop is unbounded and collectd's write queue may grow.");
  if (plugin_thread_create(&bd_thread, bd_main, NULL, "bench_dispatch") != 0)
    return -1;
  bd_thread_started = true;
  return 0;
}

static int bd_shutdown(void) {
  if (bd_thread_started) {
    atomic_store(&bd_stop, true);
    pthread_join(bd_thread, NULL);
    bd_thread_started = false;
  }
  sfree(bd_names);
  return 0;
}

void module_register(void);
void module_register(void) {
  static const char *keys[] = {"Meters",      "MeterBase", "Burst", "Rate",
                               "MaxInFlight", "Period",    "Items", "Work"};
  plugin_register_config("bench_dispatch", bd_config, keys, STATIC_ARRAY_SIZE(keys));
  plugin_register_init("bench_dispatch", bd_init);
  plugin_register_shutdown("bench_dispatch", bd_shutdown);
}
