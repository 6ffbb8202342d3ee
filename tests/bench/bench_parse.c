/* bench_parse: the parse-only rate of the hes plugin's push path, for tests/bench/ingest.sh.
 * It reads pushes, one JSON message per line (ingest.sh captures them from the simulator
 * with mosquitto_sub, so they are the very messages the plugin parses), and for a fixed time
 * does what hes_handle_readings does before it dispatches: hes_push_parse with one reused
 * parser, then hes_item_by_cgcode and hes_item_convert for every reading. No meter lookup,
 * no plans, no collectd. Prints one line:
 *
 *   parse <readings/s> <us/reading> <minor faults/reading> <pushes> <readings per push>
 *
 * usage: bench_parse PUSHES_FILE [seconds (default 3)] [max passes over the file]
 * Built by ingest.sh: gcc -O2 -std=c11 -I<build dir> -I<src> bench_parse.c src/push.c
 *   src/items.c $(pkg-config --cflags --libs json-c) -lm */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "items.h"
#include "push.h"

#define MAX_PUSHES 1000

static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long minflt(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_minflt;
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
    msg[n] = malloc((size_t)got);
    if (msg[n] == NULL)
      return 1;
    memcpy(msg[n], line, (size_t)got);
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

  uint64_t readings = 0;
  double sum = 0; /* keeps the conversions from being optimised away */
  long f0 = minflt();
  double t0 = cpu_now(), t1 = t0;
  for (long pass = 0; (max_passes == 0 || pass < max_passes) && t1 - t0 < secs; pass++) {
    for (size_t i = 0; i < n; i++) {
      if (hes_push_parse(p, msg[i], len[i], &push, err, sizeof(err)) != HES_PUSH_OK)
        return 1;
      for (size_t r = 0; r < push.count; r++) {
        const hes_push_reading_t *rd = &push.readings[r];
        const hes_item_t *it = hes_item_by_cgcode(rd->cgcode);
        double v;
        if (it != NULL && hes_item_convert(it, rd->value, rd->unit, &v) == HES_ITEM_OK)
          sum += v;
      }
      readings += push.count;
    }
    t1 = cpu_now();
  }
  double el = t1 - t0;
  long faults = minflt() - f0;
  printf("parse %.0f %.3f %.4f %zu %.0f\n", (double)readings / el, el * 1e6 / (double)readings,
         (double)faults / (double)readings, n, (double)per_pass / (double)n);
  if (sum == 0)
    fprintf(stderr, "bench_parse: every value was 0?\n");
  hes_push_parser_free(p);
  for (size_t i = 0; i < n; i++)
    free(msg[i]);
  return 0;
}
