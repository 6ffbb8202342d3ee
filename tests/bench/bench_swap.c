/* bench_swap: memory per meter and the cost of swapping a meter list of 100,000 meters while
 * readers look meters up (issue 15: at most 64 bytes a meter; a swap costs at most one
 * round's worth of time and loses no lookup of a meter present in both lists).
 *
 * The meters come from one DCU's archive, fed entry by entry as the MQTT thread would; each
 * refresh shifts the list by CHURN meters (that many leave, that many join). A reader thread
 * pins the current version, looks up 1000 meters of the range every version holds, unpins,
 * and counts lookups that fail or whose index changed.
 *
 * Then the plugin's own work per swap (src/plugin/roster.c, billing.c) on the same lists: the
 * list copied for the relay and the billing books, hes_relay_set_meters, hes_backfill_set_meters
 * (three freeze times tracked) and hes_plans_forget (one round's plans open).
 *
 * Build and run from the repository, with a configured build directory _b:
 *   gcc -O2 -std=c11 -D_GNU_SOURCE -I_b -Isrc/lib tests/bench/bench_swap.c src/lib/meterlist.c \
 *     src/lib/meterset.c src/lib/meters.c src/lib/fileio.c src/lib/hashtab.c src/lib/relay.c \
 *     src/lib/backfill.c src/lib/plans.c src/lib/tz.c src/lib/statefile.c src/lib/clock.c -lpthread
 * -lm \ -o /tmp/bench_swap /tmp/bench_swap [meters] [churn] [swaps] Prints one line per figure;
 * tests/bench/RESULTS.md holds a run. */
#include "config.h"

#include "backfill.h"
#include "meterlist.h"
#include "plans.h"
#include "relay.h"
#include "tz.h"

#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BASE 202400000000LL

static long n_meters = 100000;
static long churn = 4000;
static int swaps = 20;

static atomic_bool stop;
static atomic_long lookups, lost, moved, pins;
static hes_meterset_t *set;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t heap_used(void) {
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

static void feed(hes_meterlist_t *ml, long long from, long n) {
  char buf[24];
  hes_meterlist_dcu_begin(ml, 0);
  for (long i = 0; i < n; i++) {
    int len = snprintf(buf, sizeof(buf), "%lld", from + i);
    hes_meterlist_dcu_entry(ml, 0, buf, (size_t)len, true);
  }
}

/* Meters BASE + churn*swaps .. BASE + n_meters - 1 are in every version. */
static void *reader(void *arg) {
  char buf[24];
  long long lo = BASE + churn * swaps, span = n_meters - churn * swaps;
  uint32_t *first_idx = calloc((size_t)span, sizeof(*first_idx));
  unsigned seed = 1;
  (void)arg;

  memset(first_idx, 0xff, (size_t)span * sizeof(*first_idx));
  while (!atomic_load(&stop)) {
    const hes_meterver_t *v = hes_meterset_pin(set);
    long l = 0, m = 0;
    if (hes_meterver_count(v) == 0) {
      hes_meterset_unpin(set, v);
      continue;
    }
    for (int i = 0; i < 1000; i++) {
      long k = (long)(rand_r(&seed) % (unsigned)span);
      int len = snprintf(buf, sizeof(buf), "%lld", lo + k);
      uint32_t idx = hes_meterver_find(v, buf, (size_t)len);
      if (idx == HES_METER_NONE)
        l++;
      else if (first_idx[k] == UINT32_MAX)
        first_idx[k] = idx;
      else if (first_idx[k] != idx)
        m++;
    }
    hes_meterset_unpin(set, v);
    atomic_fetch_add(&lookups, 1000);
    atomic_fetch_add(&lost, l);
    atomic_fetch_add(&moved, m);
    atomic_fetch_add(&pins, 1);
  }
  free(first_idx);
  return NULL;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Lookups per second of the bare meters.c index against a pinned version, one thread. */
static void lookup_cost(hes_meterlist_t *ml) {
  enum { KEYS = 50000 };
  static char keys[KEYS][16];
  static uint8_t lens[KEYS];
  const long iters = 5000000;
  hes_meters_t *plain = hes_meters_new();
  const hes_meterver_t *v = hes_meterset_pin(hes_meterlist_set(ml));
  volatile uint32_t sink = 0;
  unsigned seed = 7;
  double t0, t_plain, t_ver, t_pin;

  for (size_t i = 0; i < hes_meterver_count(v); i++)
    hes_meters_add(plain, hes_meterver_at(v, i, NULL));
  hes_meters_seal(plain);
  for (long k = 0; k < KEYS; k++)
    lens[k] = (uint8_t)snprintf(keys[k], sizeof(keys[k]), "%lld",
                                BASE + (long long)(rand_r(&seed) % (unsigned)n_meters));

  t0 = now();
  for (long i = 0; i < iters; i++)
    sink += hes_meters_find(plain, keys[i % KEYS], lens[i % KEYS]);
  t_plain = now() - t0;
  t0 = now();
  for (long i = 0; i < iters; i++)
    sink += hes_meterver_find(v, keys[i % KEYS], lens[i % KEYS]);
  t_ver = now() - t0;
  hes_meterset_unpin(hes_meterlist_set(ml), v);
  t0 = now();
  for (long i = 0; i < iters; i++)
    hes_meterset_unpin(hes_meterlist_set(ml), hes_meterset_pin(hes_meterlist_set(ml)));
  t_pin = now() - t0;
  (void)sink;
  printf("lookup: meters.c %.0f ns, meterset %.0f ns; "
         "pin+unpin %.0f ns\n",
         t_plain / iters * 1e9, t_ver / iters * 1e9, t_pin / iters * 1e9);
  hes_meters_free(plain);
}

/* The plugin's work after a commit: copies, relay, backfill, plans, with `left` leaving. */
static void books_cost(hes_meterlist_t *ml, long long shift) {
  hes_meterset_t *s = hes_meterlist_set(ml);
  char buf[24];
  hes_meters_t *before = hes_meters_new(); /* shift .. shift + n_meters - 1 */
  for (long i = 0; i < n_meters; i++) {
    snprintf(buf, sizeof(buf), "%lld", shift + i);
    hes_meters_add(before, buf);
  }
  hes_meters_seal(before);
  char err[256];
  hes_tz_t *tz = hes_tz_load("UTC", err, sizeof(err));
  hes_relay_config_t rc = {.holdoff = 300, .max_per_minute = 10, .queue_max = 64, .meters = before};
  hes_relay_t *relay = hes_relay_new(&rc, 1.7e9, err, sizeof(err));
  hes_backfill_config_t bc = {
      .server = "bench", .kind = HES_BACKFILL_DAILY, .meters = before, .tz = tz, .periods = 3};
  hes_backfill_t *bf = hes_backfill_new(&bc, err, sizeof(err));
  hes_backfill_advance(bf, (int64_t)1.7e9);
  hes_plans_t *plans = hes_plans_new(NULL);
  uint32_t *idx = malloc(100 * sizeof(*idx));
  char id[32];
  for (long p = 0; p < n_meters / 100; p++) {
    for (int i = 0; i < 100; i++)
      idx[i] = (uint32_t)(p * 100 + i);
    snprintf(id, sizeof(id), "P%ld", p);
    hes_plans_add(plans, id, 0, NULL, idx, 100, 1e12, NULL);
  }
  uint32_t *gone = malloc((size_t)churn * sizeof(*gone));
  for (long i = 0; i < churn; i++)
    gone[i] = (uint32_t)i;
  /* the next list: the first `churn` leave, as many join */
  hes_meters_t *after = hes_meters_new();
  for (long i = churn; i < n_meters + churn; i++) {
    snprintf(buf, sizeof(buf), "%lld", shift + i);
    hes_meters_add(after, buf);
  }
  hes_meters_seal(after);

  double t = now();
  const hes_meterver_t *v = hes_meterset_pin(s);
  hes_meters_t *copy = hes_meterver_list(v);
  double t_copy = now() - t;
  hes_meterset_unpin(s, v);
  t = now();
  hes_relay_set_meters(relay, after);
  double t_relay = now() - t;
  t = now();
  hes_backfill_set_meters(bf, after);
  double t_bf = now() - t;
  t = now();
  size_t f = hes_plans_forget(plans, gone, (size_t)churn);
  double t_plans = now() - t;
  printf("plugin work per swap, ms: list copy %.1f (x2: relay, billing); relay_set_meters %.1f; "
         "backfill_set_meters (3 freeze times) %.1f; plans_forget (%ld plans open, %zu waits "
         "dropped) %.1f; a copy holds %.1f bytes/meter\n",
         t_copy * 1e3, t_relay * 1e3, t_bf * 1e3, n_meters / 100, f, t_plans * 1e3,
         (double)hes_meters_memory(copy) / (double)n_meters);
  hes_plans_free(plans);
  hes_backfill_free(bf);
  hes_relay_free(relay);
  hes_meters_free(copy);
  hes_meters_free(after);
  hes_meters_free(before);
  hes_tz_free(tz);
  free(idx);
  free(gone);
}

int main(int argc, char **argv) {
  const char *dcus[] = {"2211000051"};
  hes_meterlist_config_t cfg = {.server = "bench", .dcus = dcus, .n_dcus = 1};
  hes_meterset_update_t up;
  double t_end[64], t_upd[64], t_commit[64], t_done[64];
  size_t peak = 0;
  pthread_t th;

  if (argc > 1)
    n_meters = atol(argv[1]);
  if (argc > 2)
    churn = atol(argv[2]);
  if (argc > 3)
    swaps = atoi(argv[3]);
  if (swaps > 64 || churn * swaps >= n_meters) {
    fprintf(stderr, "usage: bench_swap [meters] [churn] [swaps <= 64, churn*swaps < meters]\n");
    return 2;
  }

  size_t heap0 = heap_used();
  hes_meterlist_t *ml = hes_meterlist_new(&cfg, NULL, 0);
  set = hes_meterlist_set(ml);
  feed(ml, BASE, n_meters);
  hes_meterlist_dcu_end(ml, 0, true, NULL, 0);
  hes_meterlist_update(ml, &up);
  hes_meterlist_commit(ml, &up);
  hes_meterlist_done(ml, &up);
  size_t heap1 = heap_used();
  size_t held = hes_meterlist_memory(ml);
  size_t ver = hes_meterset_memory(set, NULL);
  printf("meters %ld, churn %ld a swap, swaps %d\n", n_meters, churn, swaps);
  printf("bytes/meter, steady: %.1f counted (published version %.1f + source list %.1f); "
         "%.1f by malloc\n",
         (double)held / n_meters, (double)ver / n_meters, (double)(held - ver) / n_meters,
         (double)(heap1 - heap0) / n_meters);

  lookup_cost(ml);

  pthread_create(&th, NULL, reader, NULL);
  /* Let the reader run alone a moment for its baseline rate. */
  double t0 = now();
  struct timespec half = {0, 500000000L};
  nanosleep(&half, NULL);
  long base_lookups = atomic_load(&lookups);
  double base_rate = (double)base_lookups / (now() - t0);

  double t_swaps = now();
  long lk0 = atomic_load(&lookups);
  for (int k = 0; k < swaps; k++) {
    double t;
    feed(ml, BASE + churn * (k + 1), n_meters);
    t = now();
    hes_meterlist_dcu_end(ml, 0, true, NULL, 0);
    t_end[k] = now() - t;
    t = now();
    hes_meterlist_result_t r = hes_meterlist_update(ml, &up);
    t_upd[k] = now() - t;
    if (r != HES_METERLIST_OK || (long)up.n_joined != churn || (long)up.n_left != churn) {
      fprintf(stderr, "swap %d: unexpected result %d (%zu joined, %zu left)\n", k, r, up.n_joined,
              up.n_left);
      return 1;
    }
    size_t h = heap_used() - heap0;
    peak = h > peak ? h : peak;
    t = now();
    hes_meterlist_commit(ml, &up);
    t_commit[k] = now() - t;
    t = now();
    hes_meterlist_done(ml, &up);
    t_done[k] = now() - t;
  }
  double swap_window = now() - t_swaps;
  double swap_rate = (double)(atomic_load(&lookups) - lk0) / swap_window;
  atomic_store(&stop, true);
  pthread_join(th, NULL);

  qsort(t_end, (size_t)swaps, sizeof(double), cmp_double);
  qsort(t_upd, (size_t)swaps, sizeof(double), cmp_double);
  qsort(t_commit, (size_t)swaps, sizeof(double), cmp_double);
  qsort(t_done, (size_t)swaps, sizeof(double), cmp_double);
  printf("swap, median / max ms: dcu_end (seal, compare, no StateDir) %.1f / %.1f; "
         "update (union + index + diff) %.1f / %.1f; commit %.4f / %.4f; done %.2f / %.2f\n",
         t_end[swaps / 2] * 1e3, t_end[swaps - 1] * 1e3, t_upd[swaps / 2] * 1e3,
         t_upd[swaps - 1] * 1e3, t_commit[swaps / 2] * 1e3, t_commit[swaps - 1] * 1e3,
         t_done[swaps / 2] * 1e3, t_done[swaps - 1] * 1e3);
  printf("peak heap during a swap: %.1f bytes/meter\n", (double)peak / n_meters);
  printf("reader: %.2f M lookups/s alone, %.2f M/s while swapping (writer on the other CPU); "
         "%ld lookups, %ld pins, lost %ld, index changed %ld\n",
         base_rate / 1e6, swap_rate / 1e6, atomic_load(&lookups), atomic_load(&pins),
         atomic_load(&lost), atomic_load(&moved));
  books_cost(ml, BASE);
  hes_meterlist_free(ml);
  return atomic_load(&lost) == 0 && atomic_load(&moved) == 0 ? 0 : 1;
}
