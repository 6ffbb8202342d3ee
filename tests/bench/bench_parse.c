/* bench_parse: the parse-only rate of the hes plugin's push path, for tests/bench/ingest.sh.
 * It reads pushes, one JSON message per line (ingest.sh captures them from the simulator
 * with mosquitto_sub, so they are the very messages the plugin parses), and for a fixed time
 * does what hes_handle_readings does before it dispatches: hes_push_parse with one reused
 * parser, then hes_item_by_cgcode and hes_item_convert for every reading. No meter lookup,
 * no plans, no collectd. Prints two lines:
 *
 *   parse <readings/s> <us/reading> <minor faults/reading> <pushes> <readings per push>
 *   heap  <same fields>
 *
 * "parse" is the parser alone. "heap" is the same work on a heap shaped like the plugin's
 * inside collectd: each payload arrives in a fresh buffer (as libmosquitto hands it over)
 * and each reading allocates the three blocks plugin_dispatch_values allocates, which a
 * second thread frees as collectd's write threads do. The difference is what the json-c
 * tree's allocations cost once they interleave with collectd's. CPU time is the parsing
 * thread's own.
 *
 * usage: bench_parse PUSHES_FILE [seconds (default 3)] [max passes over the file]
 * Built by ingest.sh: gcc -O2 -std=c11 -I<build dir> -I<src>/lib bench_parse.c src/lib/push.c
 *   src/lib/items.c $(pkg-config --cflags --libs json-c) -lm */
#include "config.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "items.h"
#include "push.h"

#define MAX_PUSHES 1000

/* This thread's CPU time: the parsing thread's, not the heap writer's. */
static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long minflt(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_minflt;
}

/* The collectd-like heap of run(..., true): per reading, what plugin_dispatch_values
 * allocates (the value_list_t copy, its values, the write queue entry), freed later by
 * another thread, as collectd's write threads do. Handed over per push. */
#define HEAP_SLOTS 64
static struct {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  void **batch[HEAP_SLOTS];
  size_t len[HEAP_SLOTS];
  size_t head, tail;
  bool stop;
} heap = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static void *heap_writer(void *arg) {
  (void)arg;
  pthread_mutex_lock(&heap.lock);
  for (;;) {
    while (heap.head == heap.tail && !heap.stop)
      pthread_cond_wait(&heap.cond, &heap.lock);
    if (heap.head == heap.tail)
      break;
    void **b = heap.batch[heap.tail % HEAP_SLOTS];
    size_t n = heap.len[heap.tail % HEAP_SLOTS];
    heap.tail++;
    pthread_cond_broadcast(&heap.cond);
    pthread_mutex_unlock(&heap.lock);
    for (size_t i = 0; i < n; i++)
      free(b[i]);
    free(b);
    pthread_mutex_lock(&heap.lock);
  }
  pthread_mutex_unlock(&heap.lock);
  return NULL;
}

static void heap_hand_over(void **b, size_t n) {
  pthread_mutex_lock(&heap.lock);
  while (heap.head - heap.tail >= HEAP_SLOTS)
    pthread_cond_wait(&heap.cond, &heap.lock);
  heap.batch[heap.head % HEAP_SLOTS] = b;
  heap.len[heap.head % HEAP_SLOTS] = n;
  heap.head++;
  pthread_cond_broadcast(&heap.cond);
  pthread_mutex_unlock(&heap.lock);
}

/* Parses the pushes over and over for `secs` of this thread's CPU time. With collectd_heap,
 * each push is first copied into a fresh buffer (libmosquitto allocates every payload) and
 * every reading allocates what a dispatch does. Returns "<readings/s> <us/reading>
 * <minor faults/reading> <pushes> <readings per push>" (static buffer). */
static const char *run(hes_push_parser_t *p, char **msg, const size_t *len, size_t n,
                       size_t per_pass, double secs, long max_passes, bool collectd_heap) {
  static char out[128];
  pthread_t writer;
  if (collectd_heap) {
    heap.stop = false;
    if (pthread_create(&writer, NULL, heap_writer, NULL) != 0)
      exit(1);
  }
  char err[256];
  hes_push_t push;
  uint64_t readings = 0;
  double sum = 0; /* keeps the conversions from being optimised away */
  long f0 = minflt();
  double t0 = cpu_now(), t1 = t0;
  for (long pass = 0; (max_passes == 0 || pass < max_passes) && t1 - t0 < secs; pass++) {
    for (size_t i = 0; i < n; i++) {
      char *buf = msg[i];
      if (collectd_heap) {
        buf = malloc(len[i] + 1);
        if (buf == NULL)
          exit(1);
        memcpy(buf, msg[i], len[i] + 1);
      }
      if (hes_push_parse(p, buf, len[i], &push, err, sizeof(err)) != HES_PUSH_OK)
        exit(1);
      void **b = collectd_heap ? malloc(3 * push.count * sizeof(*b)) : NULL;
      for (size_t r = 0; r < push.count; r++) {
        const hes_push_reading_t *rd = &push.readings[r];
        const hes_item_t *it = hes_item_by_cgcode(rd->cgcode);
        double v;
        if (it != NULL && hes_item_convert(it, rd->value, rd->unit, &v) == HES_ITEM_OK)
          sum += v;
        if (b != NULL) {
          b[3 * r] = malloc(680);
          b[3 * r + 1] = calloc(1, 8);
          b[3 * r + 2] = malloc(48);
        }
      }
      if (b != NULL)
        heap_hand_over(b, 3 * push.count);
      if (collectd_heap)
        free(buf);
      readings += push.count;
    }
    t1 = cpu_now();
  }
  double el = t1 - t0;
  long faults = minflt() - f0;
  if (collectd_heap) {
    pthread_mutex_lock(&heap.lock);
    heap.stop = true;
    pthread_cond_broadcast(&heap.cond);
    pthread_mutex_unlock(&heap.lock);
    pthread_join(writer, NULL);
  }
  if (sum == 0)
    fprintf(stderr, "bench_parse: every value was 0?\n");
  snprintf(out, sizeof(out), "%.0f %.3f %.4f %zu %.0f", (double)readings / el,
           el * 1e6 / (double)readings, (double)faults / (double)readings, n,
           (double)per_pass / (double)n);
  return out;
}

struct heap_run {
  hes_push_parser_t *p;
  char **msg;
  const size_t *len;
  size_t n, per_pass;
  double secs;
  long max_passes;
  const char *result;
};

static void *heap_run_main(void *arg) {
  struct heap_run *h = arg;
  h->result = run(h->p, h->msg, h->len, h->n, h->per_pass, h->secs, h->max_passes, true);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: bench_parse PUSHES_FILE [seconds] [max passes]\n");
    return 2;
  }
  double secs = argc > 2 ? atof(argv[2]) : 3.0;
  long max_passes = argc > 3 ? atol(argv[3]) : 0;
  FILE *f = fopen(argv[1], "r");
  if (f == NULL) {
    perror(argv[1]);
    return 1;
  }
  static char *msg[MAX_PUSHES];
  static size_t len[MAX_PUSHES];
  size_t n = 0, cap = 0;
  char *line = NULL;
  ssize_t got;
  while (n < MAX_PUSHES && (got = getline(&line, &cap, f)) > 0) {
    while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r'))
      got--;
    if (got == 0)
      continue;
    msg[n] = malloc((size_t)got + 1);
    if (msg[n] == NULL)
      return 1;
    memcpy(msg[n], line, (size_t)got);
    msg[n][got] = '\0';
    len[n++] = (size_t)got;
  }
  free(line);
  fclose(f);
  if (n == 0) {
    fprintf(stderr, "bench_parse: no pushes in %s\n", argv[1]);
    return 1;
  }

  hes_push_parser_t *p = hes_push_parser_new(0);
  if (p == NULL)
    return 1;
  char err[256];
  hes_push_t push;
  /* Check every message once (and warm up): all readings must parse and convert. */
  size_t per_pass = 0;
  for (size_t i = 0; i < n; i++) {
    if (hes_push_parse(p, msg[i], len[i], &push, err, sizeof(err)) != HES_PUSH_OK ||
        push.kind != HES_PUSH_READINGS || push.skipped != 0) {
      fprintf(stderr, "bench_parse: push %zu rejected: %s\n", i, err);
      return 1;
    }
    for (size_t r = 0; r < push.count; r++) {
      double v;
      const hes_item_t *it = hes_item_by_cgcode(push.readings[r].cgcode);
      if (it == NULL ||
          hes_item_convert(it, push.readings[r].value, push.readings[r].unit, &v) != HES_ITEM_OK) {
        fprintf(stderr, "bench_parse: push %zu reading %zu does not convert\n", i, r);
        return 1;
      }
    }
    per_pass += push.count;
  }

  printf("parse %s\n", run(p, msg, len, n, per_pass, secs, max_passes, false));
  /* In a thread of its own, as the plugin's MQTT thread: glibc gives it an arena of its own. */
  struct heap_run hr = {p, msg, len, n, per_pass, secs, max_passes, NULL};
  pthread_t t;
  if (pthread_create(&t, NULL, heap_run_main, &hr) != 0)
    return 1;
  pthread_join(t, NULL);
  printf("heap %s\n", hr.result);
  hes_push_parser_free(p);
  for (size_t i = 0; i < n; i++)
    free(msg[i]);
  return 0;
}
