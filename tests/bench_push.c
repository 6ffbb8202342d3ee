/* Benchmark of the push parser on the hot path's shape: one parser parses a push of 1000
 * single readings (about 98 bytes each, as the HES sends them) over and over, and a
 * composite push of 125 meters x 8 channels; it prints readings per second, microseconds
 * per reading and minor page faults per reading, next to json-c's tokenizer alone on the
 * same bytes (the floor this parser cannot go below). Times are the thread's CPU time.
 *
 * Not built by make. From the top of the tree, with a configured build directory BUILD
 * (for config.h; any directory holding an empty config.h does as well):
 *
 *   gcc -O2 -std=c11 -IBUILD -Isrc/lib tests/bench_push.c src/lib/push.c \
 *       $(pkg-config --cflags --libs json-c) -o /tmp/bench_push && /tmp/bench_push [seconds]
 *
 * On a loaded machine CPU time still varies; instruction counts do not. With a second
 * argument the benchmark parses each push exactly that many times, for callgrind:
 *
 *   valgrind --tool=callgrind --toggle-collect=hes_push_parse /tmp/bench_push 1 20
 *
 * counts the instructions of hes_push_parse alone (Ir / (2 x 20 x 1000) per reading).
 * To compare two versions, build one binary per push.c (git show REV:src/lib/push.c) and run
 * them alternately.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <json-c/json.h>

#include "push.h"

/* CPU time, not wall time: on a shared machine the figures then count only this work. */
static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long minflt(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_minflt;
}

static char *single_push(size_t n, size_t *len) {
  size_t cap = 128 + n * 128;
  char *b = malloc(cap);
  if (b == NULL)
    exit(1);
  size_t o = (size_t)snprintf(b, cap,
                              "{\"planId\":\"P003_20240711162001113070\",\"data\":{\"status\":"
                              "\"00\",\"list\":[");
  for (size_t i = 0; i < n; i++)
    o += (size_t)snprintf(b + o, cap - o,
                          "%s{\"devAddr\":\"2024071%05zu\",\"timestamp\":%lld,\"cgcode\":\"5069\","
                          "\"unit\":\"kWh\",\"value\":\"%zu.%03zu\"}",
                          i ? "," : "", i, 1720540800000LL + (long long)i, 7000 + i, i % 1000);
  o += (size_t)snprintf(b + o, cap - o, "]}}");
  *len = o;
  return b;
}

static char *composite_push(size_t meters, size_t *len) {
  static const char *const ch[8] = {"5069", "5074", "5084", "5089", "5099", "5100", "5101", "5102"};
  size_t cap = 128 + meters * 8 * 64 + meters * 96;
  char *b = malloc(cap);
  if (b == NULL)
    exit(1);
  size_t o = (size_t)snprintf(b, cap,
                              "{\"planId\":\"P003_20240711162001113070\",\"data\":{\"status\":"
                              "\"00\",\"list\":[");
  for (size_t i = 0; i < meters; i++) {
    o += (size_t)snprintf(b + o, cap - o,
                          "%s{\"devAddr\":\"2024071%05zu\",\"timestamp\":1720540800000,"
                          "\"channelData\":[",
                          i ? "," : "", i);
    for (size_t c = 0; c < 8; c++)
      o += (size_t)snprintf(b + o, cap - o,
                            "%s{\"unit\":\"kWh\",\"value\":\"%zu.740\",\"cgcode\":\"%s\"}",
                            c ? "," : "", 7000 + i, ch[c]);
    o += (size_t)snprintf(b + o, cap - o, "]}");
  }
  o += (size_t)snprintf(b + o, cap - o, "]}}");
  *len = o;
  return b;
}

static void bench(const char *name, const char *msg, size_t len, size_t expect, double secs) {
  hes_push_parser_t *p = hes_push_parser_new(0);
  json_tokener *tok = json_tokener_new_ex(10);
  hes_push_t out;
  char err[256];

  /* warm up: the arrays grow once */
  for (int i = 0; i < 20; i++)
    if (hes_push_parse(p, msg, len, &out, err, sizeof(err)) != HES_PUSH_OK || out.count != expect) {
      fprintf(stderr, "%s: parse failed: %s (count %zu)\n", name, err, out.count);
      exit(1);
    }

  size_t rounds = 0;
  long f0 = minflt();
  double t0 = now(), t;
  do {
    for (int i = 0; i < 50; i++)
      hes_push_parse(p, msg, len, &out, err, sizeof(err));
    rounds += 50;
    t = now();
  } while (t - t0 < secs);
  long faults = minflt() - f0;
  double per = (t - t0) / (double)(rounds * expect);
  printf("%-28s %5zu readings, %6zu bytes: %8.0f readings/s, %.3f us/reading, %.4f minor "
         "faults/reading\n",
         name, expect, len, 1.0 / per, per * 1e6, (double)faults / (double)(rounds * expect));

  /* json-c's tokenizer alone on the same message: tree built and freed, nothing walked */
  rounds = 0;
  t0 = now();
  do {
    for (int i = 0; i < 50; i++) {
      json_tokener_reset(tok);
      json_object_put(json_tokener_parse_ex(tok, msg, (int)len));
    }
    rounds += 50;
    t = now();
  } while (t - t0 < secs);
  double per_tok = (t - t0) / (double)(rounds * expect);
  printf("%-28s %5zu readings, %6zu bytes: %8.0f readings/s, %.3f us/reading (json-c alone)\n", "",
         expect, len, 1.0 / per_tok, per_tok * 1e6);

  json_tokener_free(tok);
  hes_push_parser_free(p);
}

/* Exactly `rounds` parses of msg, nothing else: for instruction counts under callgrind. */
static void count(const char *name, const char *msg, size_t len, size_t expect, long rounds) {
  hes_push_parser_t *p = hes_push_parser_new(0);
  hes_push_t out;
  char err[256];
  size_t readings = 0;
  for (long i = 0; i < rounds; i++) {
    if (hes_push_parse(p, msg, len, &out, err, sizeof(err)) != HES_PUSH_OK || out.count != expect) {
      fprintf(stderr, "%s: parse failed: %s\n", name, err);
      exit(1);
    }
    readings += out.count;
  }
  printf("%-28s %ld parses, %zu readings\n", name, rounds, readings);
  hes_push_parser_free(p);
}

int main(int argc, char **argv) {
  double secs = argc > 1 ? atof(argv[1]) : 2.0;
  long rounds = argc > 2 ? atol(argv[2]) : 0;
  if (secs <= 0)
    secs = 2.0;
  size_t len;
  char *msg = single_push(1000, &len);
  if (rounds > 0)
    count("single readings (readSingle)", msg, len, 1000, rounds);
  else
    bench("single readings (readSingle)", msg, len, 1000, secs);
  free(msg);
  msg = composite_push(125, &len);
  if (rounds > 0)
    count("composite (readFrozen)", msg, len, 1000, rounds);
  else
    bench("composite (readFrozen)", msg, len, 1000, secs);
  free(msg);
  return 0;
}
