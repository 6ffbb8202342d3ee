/* bench_count: a no-op collectd write plugin for tests/bench/ingest.sh. It counts the values
 * of plugin "hes" (readings, not the "-self" metrics) that reach the write threads, and once per
 * Period a thread appends one sample line to File, taken from the same instant so rate and CPU cost
 * line up:
 *
 *   <monotonic s> <values counted> <utime+stime ticks> <minor faults> <VmRSS kB>
 *   <hes self-metrics: dispatched missing rejected foreign duplicate late>
 *   [with Heap true: <malloc'd bytes in use, kB> <free bytes inside malloc's heaps, kB>]
 *
 * (the CPU, fault and RSS figures are collectd's own, from /proc/self/stat and
 * /proc/self/statm). It also exports bench_count_total() so that bench_dispatch, loaded
 * into the same collectd with "Globals true", can bound the values it has in flight.
 *
 * Built by ingest.sh: gcc -O2 -shared -fPIC -DHAVE_CONFIG_H -I<dir with a config.h that
 * defines _GNU_SOURCE> -I/usr/include/collectd bench_count.c -o bench_count.so
 *
 *   <LoadPlugin bench_count>
 *     Globals true
 *   </LoadPlugin>
 *   <Plugin bench_count>
 *     File "/tmp/x/count.txt"
 *     Period 0.5
 *     Server "soak"       (optional: the self-metrics of this <Server> only; default any)
 *     Heap true           (optional: glibc's mallinfo2, all arenas; it locks each arena
 *                          and walks its free lists, so not for the CPU benchmarks)
 *   </Plugin>
 *
 * Heap tells growth of live memory (a leak, a queue) from growth of the holes between it
 * (fragmentation): RSS counts both. */
#include "config.h"

#include "collectd/core/daemon/collectd.h"
#include "collectd/core/daemon/plugin.h"
#include "collectd/core/utils/common/common.h"

#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_uint_fast64_t bc_count;
static char *bc_file;
static double bc_period = 1.0;
static pthread_t bc_thread;
static bool bc_thread_started;
static atomic_bool bc_stop;
static bool bc_heap;

/* For bench_dispatch (dlsym): values of plugin "hes" counted so far. */
uint64_t bench_count_total(void);
uint64_t bench_count_total(void) {
  return atomic_load_explicit(&bc_count, memory_order_relaxed);
}

/* The hes plugin's self-metrics total_values-<name>, last value seen: they tell where
 * readings went when the count falls short. */
static const char *const bc_self_names[] = {"dispatched", "missing",   "rejected",
                                            "foreign",    "duplicate", "late"};
#define BC_SELF (sizeof(bc_self_names) / sizeof(bc_self_names[0]))
static atomic_int_fast64_t bc_self[BC_SELF];
static char bc_self_instance[DATA_MAX_NAME_LEN]; /* "<Server>-self", or "" for any */

static int bc_write(const data_set_t *ds, const value_list_t *vl, user_data_t *ud) {
  (void)ds;
  (void)ud;
  if (vl->plugin[0] != 'h' || strcmp(vl->plugin, "hes") != 0)
    return 0;
  /* The plugin's own self-metrics (plugin_instance "<server>-self") are not readings. */
  if (strstr(vl->plugin_instance, "-self") == NULL) {
    atomic_fetch_add_explicit(&bc_count, vl->values_len, memory_order_relaxed);
    return 0;
  }
  if (strcmp(vl->type, "total_values") != 0 || vl->values_len != 1)
    return 0;
  if (bc_self_instance[0] != '\0' && strcmp(vl->plugin_instance, bc_self_instance) != 0)
    return 0;
  for (size_t i = 0; i < BC_SELF; i++)
    if (strcmp(vl->type_instance, bc_self_names[i]) == 0)
      atomic_store(&bc_self[i], vl->values[0].derive);
  return 0;
}

/* utime+stime (clock ticks) and minor faults of this process, from /proc/self/stat. */
static int bc_self_stat(unsigned long long *ticks, unsigned long long *minflt) {
  char buf[1024];
  FILE *f = fopen("/proc/self/stat", "r");
  if (f == NULL)
    return -1;
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  /* The command name may hold spaces: fields count from the last ')'. */
  char *p = strrchr(buf, ')');
  if (p == NULL)
    return -1;
  /* After ") ": state(3) ppid pgrp session tty tpgid flags minflt(10) cminflt majflt
   * cmajflt utime(14) stime(15). */
  unsigned long long v[13] = {0};
  p += 2;
  char *save = NULL;
  char *tok = strtok_r(p, " ", &save);
  for (int i = 0; tok != NULL && i < 13; i++) {
    if (i > 0)
      v[i] = strtoull(tok, NULL, 10);
    tok = strtok_r(NULL, " ", &save);
  }
  *minflt = v[7];
  *ticks = v[11] + v[12];
  return 0;
}

static long bc_rss_kb(void) {
  long size = 0, resident = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (f == NULL)
    return -1;
  if (fscanf(f, "%ld %ld", &size, &resident) != 2)
    resident = -1;
  fclose(f);
  return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static double bc_mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *bc_sampler(void *arg) {
  FILE *out = arg;
  double next = bc_mono();
  while (!atomic_load(&bc_stop)) {
    unsigned long long ticks = 0, minflt = 0;
    double t = bc_mono();
    uint64_t count = bench_count_total();
    bc_self_stat(&ticks, &minflt);
    fprintf(out, "%.6f %" PRIu64 " %llu %llu %ld", t, count, ticks, minflt, bc_rss_kb());
    for (size_t i = 0; i < BC_SELF; i++)
      fprintf(out, " %" PRIdFAST64, atomic_load(&bc_self[i]));
    if (bc_heap) {
      struct mallinfo2 mi = mallinfo2();
      fprintf(out, " %zu %zu", mi.uordblks / 1024, mi.fordblks / 1024);
    }
    fputc('\n', out);
    fflush(out);
    next += bc_period;
    double wait = next - bc_mono();
    if (wait > 0) {
      struct timespec ts = {.tv_sec = (time_t)wait,
                            .tv_nsec = (long)((wait - (double)(time_t)wait) * 1e9)};
      nanosleep(&ts, NULL);
    }
  }
  fclose(out);
  return NULL;
}

static int bc_config(const char *key, const char *value) {
  if (strcasecmp(key, "File") == 0) {
    free(bc_file);
    bc_file = strdup(value);
    return bc_file == NULL ? -1 : 0;
  }
  if (strcasecmp(key, "Period") == 0) {
    char *end = NULL;
    double d = strtod(value, &end);
    if (end == value || *end != '\0' || !(d >= 0.01 && d <= 60))
      return -1;
    bc_period = d;
    return 0;
  }
  if (strcasecmp(key, "Heap") == 0) {
    bc_heap = IS_TRUE(value);
    return 0;
  }
  if (strcasecmp(key, "Server") == 0) {
    int n = snprintf(bc_self_instance, sizeof(bc_self_instance), "%s-self", value);
    return n > 0 && (size_t)n < sizeof(bc_self_instance) ? 0 : -1;
  }
  return -1;
}

static int bc_init(void) {
  if (bc_file == NULL || bc_thread_started)
    return 0;
  FILE *out = fopen(bc_file, "w");
  if (out == NULL) {
    ERROR("bench_count plugin: cannot open %s: %s", bc_file, STRERRNO);
    return -1;
  }
  if (plugin_thread_create(&bc_thread, bc_sampler, out, "bench_count") != 0) {
    fclose(out);
    return -1;
  }
  bc_thread_started = true;
  return 0;
}

static int bc_shutdown(void) {
  if (bc_thread_started) {
    atomic_store(&bc_stop, true);
    pthread_join(bc_thread, NULL);
    bc_thread_started = false;
  }
  sfree(bc_file);
  return 0;
}

void module_register(void);
void module_register(void) {
  static const char *keys[] = {"File", "Period", "Server", "Heap"};
  plugin_register_config("bench_count", bc_config, keys, STATIC_ARRAY_SIZE(keys));
  plugin_register_init("bench_count", bc_init);
  plugin_register_write("bench_count", bc_write, NULL);
  plugin_register_shutdown("bench_count", bc_shutdown);
}
