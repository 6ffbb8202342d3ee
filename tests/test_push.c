/* Tests of the push parser (src/lib/push.c): the seed's examples as golden files under
 * tests/data/push/ with their expected outcome in golden[] below, exact field values, every
 * wrong type of every field, every prefix of valid messages, size and depth limits, and one
 * parser reused across many messages. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "push.h"

#define PID "P003_20240711162001113070"

/* ---- helpers ------------------------------------------------------------------------ */

static char data_dir[4096];
static char corpus_dir[4096];

/* make check exports top_srcdir; run by hand, the source path compiled in finds the data. */
static void find_data_dir(void) {
  const char *top = getenv("top_srcdir");
  char tests[2048];
  if (top != NULL && top[0] != '\0') {
    snprintf(tests, sizeof(tests), "%s/tests", top);
  } else {
    const char *file = __FILE__;
    const char *slash = strrchr(file, '/');
    if (slash == NULL)
      snprintf(tests, sizeof(tests), ".");
    else
      snprintf(tests, sizeof(tests), "%.*s", (int)(slash - file), file);
  }
  snprintf(data_dir, sizeof(data_dir), "%s/data/push", tests);
  snprintf(corpus_dir, sizeof(corpus_dir), "%s/fuzz/corpus_push", tests);
}

/* Reads a golden file into a buffer of exactly its size (no NUL after it), so that ASan
 * catches the parser reading past len. */
static char *load_from(const char *dir, const char *name, size_t *len) {
  char path[4200];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    fail_msg("cannot open %s", path);
  assert_int_equal(fseek(f, 0, SEEK_END), 0);
  long n = ftell(f);
  assert_true(n >= 0);
  assert_int_equal(fseek(f, 0, SEEK_SET), 0);
  char *buf = malloc(n > 0 ? (size_t)n : 1);
  assert_non_null(buf);
  assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  *len = (size_t)n;
  return buf;
}

static char *load(const char *name, size_t *len) {
  return load_from(data_dir, name, len);
}

/* Copies s without its NUL into a buffer of exactly its length. */
static char *exact(const char *s, size_t len) {
  char *b = malloc(len > 0 ? len : 1);
  assert_non_null(b);
  memcpy(b, s, len);
  return b;
}

static hes_push_result_t parse_str(hes_push_parser_t *p, const char *s, hes_push_t *out, char *err,
                                   size_t errlen) {
  size_t len = strlen(s);
  char *b = exact(s, len);
  hes_push_result_t r = hes_push_parse(p, b, len, out, err, errlen);
  free(b);
  return r;
}

static void assert_zeroed(const hes_push_t *out) {
  hes_push_t zero;
  memset(&zero, 0, sizeof(zero));
  assert_memory_equal(out, &zero, sizeof(zero));
}

static void assert_reading(const hes_push_reading_t *r, const char *dev, int64_t ts, int cgcode,
                           const char *unit, const char *value, uint32_t entry) {
  assert_string_equal(r->dev_addr, dev);
  assert_int_equal(r->dev_addr_len, strlen(dev));
  assert_int_equal(r->timestamp_ms, ts);
  assert_int_equal(r->cgcode, cgcode);
  assert_string_equal(r->unit, unit);
  assert_string_equal(r->value, value);
  assert_int_equal(r->entry, entry);
}

/* Assertions that name the case they fail on: the tables below hold hundreds. */
static void check_str(const char *ctx, const char *what, const char *got, const char *want) {
  if (strcmp(got, want) != 0)
    fail_msg("%s: %s is \"%s\", expected \"%s\"", ctx, what, got, want);
}

static void check_int(const char *ctx, const char *what, long long got, long long want) {
  if (got != want)
    fail_msg("%s: %s is %lld, expected %lld", ctx, what, got, want);
}

/* ---- golden files ----------------------------------------------------------------------- */

enum { AS_PUSH, AS_LIST };

typedef struct {
  const char *file;
  int mode; /* AS_LIST: the file is a history answer, data.list goes to hes_push_parse_list */
  hes_push_result_t result;
  const char *err;
  hes_push_kind_t kind;
  size_t count, entries, skipped;
  const char *reason;
} golden_t;

static const golden_t golden[] = {
    /* the seed's examples (3.3 both as printed, without the comma after planId, and fixed) */
    {"seed-3.2-read-frozen.json", AS_PUSH, HES_PUSH_OK, "", HES_PUSH_CHANNELS, 16, 2, 0, ""},
    {"seed-3.3-read-single-as-printed.json", AS_PUSH, HES_PUSH_ESYNTAX,
     "invalid JSON at byte 48: object value separator ',' expected", HES_PUSH_EMPTY, 0, 0, 0, ""},
    {"seed-3.3-read-single.json", AS_PUSH, HES_PUSH_OK, "", HES_PUSH_READINGS, 2, 2, 0, ""},
    {"seed-3.4-history-frozen.json", AS_LIST, HES_PUSH_OK, "", HES_PUSH_CHANNELS, 16, 2, 0, ""},
    {"seed-3.5-history-single.json", AS_LIST, HES_PUSH_OK, "", HES_PUSH_READINGS, 4, 4, 0, ""},
    {"seed-3.6-relay.json", AS_PUSH, HES_PUSH_OK, "", HES_PUSH_RELAY, 2, 2, 0, ""},
    {"seed-3.7-read-archive.json", AS_PUSH, HES_PUSH_OK, "", HES_PUSH_ARCHIVE, 2, 2, 0, ""},
    {"seed-3.8-add-archive.json", AS_PUSH, HES_PUSH_OK, "", HES_PUSH_EMPTY, 0, 0, 0, ""},
    {"seed-3.9-remove-archive.json", AS_PUSH, HES_PUSH_OK, "", HES_PUSH_EMPTY, 0, 0, 0, ""},
    /* not JSON, or more than one JSON value */
    {"empty-message.json", AS_PUSH, HES_PUSH_ESYNTAX, "empty message", HES_PUSH_EMPTY, 0, 0, 0, ""},
    {"truncated.json", AS_PUSH, HES_PUSH_ESYNTAX,
     "truncated JSON: the message ends after 131 bytes inside a value", HES_PUSH_EMPTY, 0, 0, 0,
     ""},
    {"trailing-garbage.json", AS_PUSH, HES_PUSH_ESYNTAX,
     "invalid JSON at byte 39: unexpected character", HES_PUSH_EMPTY, 0, 0, 0, ""},
    {"trailing-second-object.json", AS_PUSH, HES_PUSH_ESYNTAX,
     "invalid JSON at byte 38: unexpected character", HES_PUSH_EMPTY, 0, 0, 0, ""},
    {"nul-after-object.json", AS_PUSH, HES_PUSH_ESYNTAX,
     "invalid JSON at byte 38: trailing data after the JSON value", HES_PUSH_EMPTY, 0, 0, 0, ""},
    {"trailing-comma.json", AS_PUSH, HES_PUSH_ESYNTAX,
     "invalid JSON at byte 131: unexpected character", HES_PUSH_EMPTY, 0, 0, 0, ""},
    /* json-c took the single-quoted name and stopped at the value (byte 10); RFC 8259 stops
     * at the name */
    {"single-quotes.json", AS_PUSH, HES_PUSH_ESYNTAX,
     "invalid JSON at byte 1: quoted object property name expected", HES_PUSH_EMPTY, 0, 0, 0, ""},
    {"comment.json", AS_PUSH, HES_PUSH_ESYNTAX,
     "invalid JSON at byte 16: quoted object property name expected", HES_PUSH_EMPTY, 0, 0, 0, ""},
    {"invalid-utf8.json", AS_PUSH, HES_PUSH_ESYNTAX, "invalid JSON at byte 95: invalid UTF-8",
     HES_PUSH_EMPTY, 0, 0, 0, ""},
    {"depth-bomb.json", AS_PUSH, HES_PUSH_ESYNTAX,
     "invalid JSON at byte 71: nested deeper than 9 levels", HES_PUSH_EMPTY, 0, 0, 0, ""},
    /* JSON, but not a push */
    {"not-an-object.json", AS_PUSH, HES_PUSH_ESHAPE, "message: expected an object, got an array",
     HES_PUSH_EMPTY, 0, 0, 0, ""},
    {"json-null.json", AS_PUSH, HES_PUSH_ESHAPE, "message: expected an object, got null",
     HES_PUSH_EMPTY, 0, 0, 0, ""},
    {"planid-missing.json", AS_PUSH, HES_PUSH_ESHAPE, "planId: missing", HES_PUSH_EMPTY, 0, 0, 0,
     ""},
    {"planid-integer.json", AS_PUSH, HES_PUSH_ESHAPE, "planId: expected a string, got an integer",
     HES_PUSH_EMPTY, 0, 0, 0, ""},
    {"planid-empty.json", AS_PUSH, HES_PUSH_ESHAPE, "planId: empty", HES_PUSH_EMPTY, 0, 0, 0, ""},
    {"planid-wildcard.json", AS_PUSH, HES_PUSH_ESHAPE,
     "planId: a character that is not printable ASCII, or one of / + #", HES_PUSH_EMPTY, 0, 0, 0,
     ""},
    {"planid-control-char.json", AS_PUSH, HES_PUSH_ESHAPE,
     "planId: a character that is not printable ASCII, or one of / + #", HES_PUSH_EMPTY, 0, 0, 0,
     ""},
    {"planid-too-long.json", AS_PUSH, HES_PUSH_ESHAPE, "planId: longer than 63 characters",
     HES_PUSH_EMPTY, 0, 0, 0, ""},
    {"planid-63.json", AS_PUSH, HES_PUSH_OK, "", HES_PUSH_EMPTY, 0, 0, 0, ""},
    {"data-missing.json", AS_PUSH, HES_PUSH_ESHAPE, "data: missing", HES_PUSH_EMPTY, 0, 0, 0, ""},
    {"data-string.json", AS_PUSH, HES_PUSH_ESHAPE, "data: expected an object, got a string",
     HES_PUSH_EMPTY, 0, 0, 0, ""},
    {"status-missing.json", AS_PUSH, HES_PUSH_ESHAPE, "data.status: missing", HES_PUSH_EMPTY, 0, 0,
     0, ""},
    {"status-03.json", AS_PUSH, HES_PUSH_ESHAPE, "data.status: expected \"00\", \"01\" or \"02\"",
     HES_PUSH_EMPTY, 0, 0, 0, ""},
    {"status-integer.json", AS_PUSH, HES_PUSH_ESHAPE,
     "data.status: expected a string, got an integer", HES_PUSH_EMPTY, 0, 0, 0, ""},
    {"status-partial.json", AS_PUSH, HES_PUSH_OK, "", HES_PUSH_READINGS, 1, 1, 0, ""},
    {"status-failure.json", AS_PUSH, HES_PUSH_OK, "", HES_PUSH_EMPTY, 0, 0, 0, ""},
    {"list-object.json", AS_PUSH, HES_PUSH_ESHAPE, "data.list: expected an array, got an object",
     HES_PUSH_EMPTY, 0, 0, 0, ""},
    {"list-null.json", AS_PUSH, HES_PUSH_ESHAPE, "data.list: expected an array, got null",
     HES_PUSH_EMPTY, 0, 0, 0, ""},
    /* a good top level: entries accepted or skipped one by one */
    {"unknown-fields.json", AS_PUSH, HES_PUSH_OK, "", HES_PUSH_READINGS, 1, 1, 0, ""},
    {"mixed-kinds.json", AS_PUSH, HES_PUSH_OK, "", HES_PUSH_READINGS, 2, 2, 1,
     "data.list[1]: a relay entry in a list of reading entries"},
    {"first-entry-unknown.json", AS_PUSH, HES_PUSH_OK, "", HES_PUSH_RELAY, 1, 1, 2,
     "data.list[0]: expected an object, got an integer"},
    {"timestamp-string.json", AS_PUSH, HES_PUSH_OK, "", HES_PUSH_READINGS, 0, 0, 1,
     "data.list[0].timestamp: expected an integer, got a string"},
    {"timestamp-double.json", AS_PUSH, HES_PUSH_OK, "", HES_PUSH_READINGS, 0, 0, 1,
     "data.list[0].timestamp: expected an integer, got a floating-point number"},
    /* json-c's strict mode still takes NaN for a number: the type check catches it */
    {"nan-timestamp.json", AS_PUSH, HES_PUSH_OK, "", HES_PUSH_READINGS, 0, 0, 1,
     "data.list[0].timestamp: expected an integer, got a floating-point number"},
    {"timestamp-negative.json", AS_PUSH, HES_PUSH_OK, "", HES_PUSH_READINGS, 0, 0, 1,
     "data.list[0].timestamp: out of range (0 .. 7258118399999, before the year 2200)"},
    {"timestamp-huge.json", AS_PUSH, HES_PUSH_OK, "", HES_PUSH_READINGS, 0, 0, 1,
     "data.list[0].timestamp: out of range (0 .. 7258118399999, before the year 2200)"},
    {"timestamp-year-2200.json", AS_PUSH, HES_PUSH_OK, "", HES_PUSH_READINGS, 2, 2, 1,
     "data.list[0].timestamp: out of range (0 .. 7258118399999, before the year 2200)"},
    {"devaddr-bad.json", AS_PUSH, HES_PUSH_OK, "", HES_PUSH_RELAY, 2, 2, 4,
     "data.list[0].devAddr: a character outside [0-9A-Za-z_-]"},
    {"value-too-long.json", AS_PUSH, HES_PUSH_OK, "", HES_PUSH_READINGS, 1, 1, 1,
     "data.list[0].value: longer than 64 characters"},
    {"value-number.json", AS_PUSH, HES_PUSH_OK, "", HES_PUSH_READINGS, 0, 0, 1,
     "data.list[0].value: expected a string, got a floating-point number"},
    {"nul-in-value.json", AS_PUSH, HES_PUSH_OK, "", HES_PUSH_READINGS, 0, 0, 1,
     "data.list[0].value: contains a NUL character"},
    {"cgcode-integer.json", AS_PUSH, HES_PUSH_OK, "", HES_PUSH_READINGS, 0, 0, 1,
     "data.list[0].cgcode: expected a string, got an integer"},
    {"composite-bad-channels.json", AS_PUSH, HES_PUSH_OK, "", HES_PUSH_CHANNELS, 3, 3, 3,
     "data.list[0].channelData[1].cgcode: missing"},
    {"relay-bad.json", AS_PUSH, HES_PUSH_OK, "", HES_PUSH_RELAY, 1, 1, 3,
     "data.list[0].successful: expected a boolean, got a string"},
    {"archive-optional.json", AS_PUSH, HES_PUSH_OK, "", HES_PUSH_ARCHIVE, 2, 2, 2,
     "data.list[1].status: expected \"0\" or \"1\""},
};

#define N_GOLDEN (sizeof(golden) / sizeof(golden[0]))

static hes_push_result_t run_golden(hes_push_parser_t *p, const golden_t *g, hes_push_t *out,
                                    char *err, size_t errlen, json_object **keep) {
  size_t len;
  char *buf = load(g->file, &len);
  hes_push_result_t r;
  *keep = NULL;
  if (g->mode == AS_PUSH) {
    r = hes_push_parse(p, buf, len, out, err, errlen);
  } else {
    json_tokener *tok = json_tokener_new();
    json_object *root = json_tokener_parse_ex(tok, buf, (int)len);
    json_tokener_free(tok);
    assert_non_null(root);
    json_object *data = NULL, *list = NULL;
    assert_true(json_object_object_get_ex(root, "data", &data));
    assert_true(json_object_object_get_ex(data, "list", &list));
    r = hes_push_parse_list(p, list, out, err, errlen);
    *keep = root;
  }
  free(buf);
  return r;
}

static void test_golden(void **state) {
  (void)state;
  hes_push_parser_t *p = hes_push_parser_new(0);
  assert_non_null(p);
  for (size_t i = 0; i < N_GOLDEN; i++) {
    const golden_t *g = &golden[i];
    hes_push_t out;
    char err[256];
    json_object *keep;
    hes_push_result_t r = run_golden(p, g, &out, err, sizeof(err), &keep);
    check_str(g->file, "result", hes_push_result_string(r), hes_push_result_string(g->result));
    check_str(g->file, "err", err, g->err);
    if (r != HES_PUSH_OK) {
      assert_zeroed(&out);
    } else {
      check_int(g->file, "kind", out.kind, g->kind);
      check_int(g->file, "count", (long long)out.count, (long long)g->count);
      check_int(g->file, "entries", (long long)out.entries, (long long)g->entries);
      check_int(g->file, "skipped", (long long)out.skipped, (long long)g->skipped);
      check_str(g->file, "skipped_reason", out.skipped_reason, g->reason);
      if (g->mode == AS_LIST)
        check_str(g->file, "plan_id", out.plan_id, "");
      else
        check_int(g->file, "plan_id is set", out.plan_id[0] != '\0', 1);
    }
    json_object_put(keep);
  }
  hes_push_parser_free(p);
}

/* Every file in tests/data/push has its expected outcome above. */
static void test_golden_complete(void **state) {
  (void)state;
  DIR *d = opendir(data_dir);
  assert_non_null(d);
  struct dirent *de;
  size_t files = 0;
  while ((de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.')
      continue;
    files++;
    bool listed = false;
    for (size_t i = 0; i < N_GOLDEN; i++)
      if (strcmp(golden[i].file, de->d_name) == 0)
        listed = true;
    if (!listed)
      fail_msg("%s/%s has no expected outcome in golden[]", data_dir, de->d_name);
  }
  closedir(d);
  assert_int_equal(files, N_GOLDEN);
}

/* ---- exact values of the seed's examples ------------------------------------------------ */

static const struct {
  const char *unit, *value;
  int cgcode;
} frozen_channels[8] = {
    {"kWh", "7340.740", 5069}, {"kWh", "0.330", 5074}, {"kvarh", "1092.290", 5084},
    {"kvarh", "0.230", 5089},  {"kW", "0.619", 5099},  {"kW", "0.619", 5100},
    {"kW", "0.000", 5101},     {"kW", "0.000", 5102},
};

static void assert_frozen(const hes_push_t *out) {
  assert_int_equal(out->kind, HES_PUSH_CHANNELS);
  assert_int_equal(out->count, 16);
  assert_int_equal(out->entries, 2);
  assert_null(out->relays);
  assert_null(out->archives);
  for (size_t i = 0; i < 16; i++) {
    size_t e = i / 8, c = i % 8;
    assert_reading(&out->readings[i], e == 0 ? "202407100001" : "202407100002",
                   e == 0 ? INT64_C(1720540800000) : INT64_C(1720627200000),
                   frozen_channels[c].cgcode, frozen_channels[c].unit, frozen_channels[c].value,
                   (uint32_t)e);
  }
}

static void test_seed_read_frozen(void **state) {
  (void)state;
  hes_push_parser_t *p = hes_push_parser_new(0);
  size_t len;
  char *buf = load("seed-3.2-read-frozen.json", &len);
  hes_push_t out;
  assert_int_equal(hes_push_parse(p, buf, len, &out, NULL, 0), HES_PUSH_OK);
  free(buf);
  assert_string_equal(out.plan_id, PID);
  assert_int_equal(out.status, HES_PUSH_SUCCESS);
  assert_frozen(&out);
  hes_push_parser_free(p);
}

static void test_seed_read_single(void **state) {
  (void)state;
  hes_push_parser_t *p = hes_push_parser_new(0);
  size_t len;
  char *buf = load("seed-3.3-read-single.json", &len);
  hes_push_t out;
  char err[128];
  assert_int_equal(hes_push_parse(p, buf, len, &out, err, sizeof(err)), HES_PUSH_OK);
  free(buf);
  assert_string_equal(err, "");
  assert_string_equal(out.plan_id, PID);
  assert_int_equal(out.status, HES_PUSH_SUCCESS);
  assert_int_equal(out.kind, HES_PUSH_READINGS);
  assert_int_equal(out.count, 2);
  assert_reading(&out.readings[0], "202407100001", INT64_C(1720540800000), 5069, "kWh", "7340.740",
                 0);
  assert_reading(&out.readings[1], "202407100002", INT64_C(1720540800000), 5069, "kWh", "7340.740",
                 1);
  hes_push_parser_free(p);
}

static void test_seed_history(void **state) {
  (void)state;
  hes_push_parser_t *p = hes_push_parser_new(0);
  const golden_t *frozen = &golden[3], *single = &golden[4];
  assert_string_equal(frozen->file, "seed-3.4-history-frozen.json");
  assert_string_equal(single->file, "seed-3.5-history-single.json");
  hes_push_t out;
  json_object *keep;
  char err[64];

  assert_int_equal(run_golden(p, frozen, &out, err, sizeof(err), &keep), HES_PUSH_OK);
  assert_string_equal(out.plan_id, "");
  assert_int_equal(out.status, HES_PUSH_SUCCESS);
  assert_frozen(&out);
  json_object_put(keep);

  assert_int_equal(run_golden(p, single, &out, err, sizeof(err), &keep), HES_PUSH_OK);
  assert_int_equal(out.kind, HES_PUSH_READINGS);
  assert_int_equal(out.count, 4);
  static const char *const devs[4] = {"202407100001", "202407100001", "202407100002",
                                      "202407100002"};
  for (uint32_t i = 0; i < 4; i++)
    assert_reading(&out.readings[i], devs[i],
                   i % 2 == 0 ? INT64_C(1720540800000) : INT64_C(1720627200000), 0, "kWh",
                   "7340.740", i);
  json_object_put(keep);

  /* A history answer is not a push. */
  size_t len;
  char *buf = load(single->file, &len);
  assert_int_equal(hes_push_parse(p, buf, len, &out, err, sizeof(err)), HES_PUSH_ESHAPE);
  assert_string_equal(err, "planId: missing");
  free(buf);
  hes_push_parser_free(p);
}

static void test_seed_relay_archive(void **state) {
  (void)state;
  hes_push_parser_t *p = hes_push_parser_new(0);
  size_t len;
  hes_push_t out;
  char *buf = load("seed-3.6-relay.json", &len);
  assert_int_equal(hes_push_parse(p, buf, len, &out, NULL, 0), HES_PUSH_OK);
  free(buf);
  assert_string_equal(out.plan_id, PID);
  assert_int_equal(out.kind, HES_PUSH_RELAY);
  assert_null(out.readings);
  assert_int_equal(out.count, 2);
  assert_string_equal(out.relays[0].dev_addr, "202407100001");
  assert_int_equal(out.relays[0].dev_addr_len, 12);
  assert_true(out.relays[0].successful);
  assert_string_equal(out.relays[1].dev_addr, "202407100002");
  assert_true(out.relays[1].successful);

  buf = load("relay-bad.json", &len);
  assert_int_equal(hes_push_parse(p, buf, len, &out, NULL, 0), HES_PUSH_OK);
  free(buf);
  assert_int_equal(out.status, HES_PUSH_PARTIAL);
  assert_int_equal(out.count, 1);
  assert_string_equal(out.relays[0].dev_addr, "m2");
  assert_false(out.relays[0].successful);

  buf = load("seed-3.7-read-archive.json", &len);
  assert_int_equal(hes_push_parse(p, buf, len, &out, NULL, 0), HES_PUSH_OK);
  free(buf);
  assert_int_equal(out.kind, HES_PUSH_ARCHIVE);
  assert_int_equal(out.count, 2);
  assert_string_equal(out.archives[0].dev_addr, "202407100001");
  assert_true(out.archives[0].enabled);
  assert_string_equal(out.archives[0].comm_type, "1");
  assert_string_equal(out.archives[0].module_next, "202407100001");
  assert_string_equal(out.archives[1].dev_addr, "202407100002");
  assert_string_equal(out.archives[1].module_next, "202407100001");

  buf = load("archive-optional.json", &len);
  assert_int_equal(hes_push_parse(p, buf, len, &out, NULL, 0), HES_PUSH_OK);
  free(buf);
  assert_string_equal(out.archives[0].dev_addr, "m1");
  assert_false(out.archives[0].enabled);
  assert_string_equal(out.archives[0].comm_type, "");
  assert_string_equal(out.archives[0].module_next, "");
  assert_string_equal(out.archives[1].dev_addr, "m4");
  assert_true(out.archives[1].enabled);
  assert_string_equal(out.archives[1].comm_type, "PLC");
  assert_string_equal(out.archives[1].module_next, "m1");

  buf = load("seed-3.9-remove-archive.json", &len);
  assert_int_equal(hes_push_parse(p, buf, len, &out, NULL, 0), HES_PUSH_OK);
  free(buf);
  assert_string_equal(out.plan_id, PID);
  assert_int_equal(out.kind, HES_PUSH_EMPTY);
  assert_int_equal(out.count, 0);
  assert_null(out.readings);
  assert_null(out.relays);
  assert_null(out.archives);
  hes_push_parser_free(p);
}

static void test_composite_values(void **state) {
  (void)state;
  hes_push_parser_t *p = hes_push_parser_new(0);
  size_t len;
  hes_push_t out;
  char *buf = load("composite-bad-channels.json", &len);
  assert_int_equal(hes_push_parse(p, buf, len, &out, NULL, 0), HES_PUSH_OK);
  free(buf);
  assert_int_equal(out.count, 3);
  assert_reading(&out.readings[0], "m1", INT64_C(1720540800000), 5069, "kWh", "1.5", 0);
  assert_reading(&out.readings[1], "m1", INT64_C(1720540800000), 5074, "kWh", "3.5", 0);
  assert_reading(&out.readings[2], "m4", INT64_C(1720540800001), 5099, "kW", "0.6", 3);
  hes_push_parser_free(p);
}

/* ---- every field, every wrong type ----------------------------------------------------- */

typedef struct {
  const char *json; /* a JSON value */
  const char *phrase;
} jtype_t;

static const jtype_t jtypes[] = {
    {"\"s\"", "a string"}, {"12", "an integer"}, {"1.5", "a floating-point number"},
    {"true", "a boolean"}, {"null", "null"},     {"{}", "an object"},
    {"[]", "an array"},    {"-7", "an integer"},
};

typedef struct {
  const char *tmpl;  /* a push with one %s where the field's value goes */
  const char *path;  /* the field's path in the reason */
  const char *wants; /* the JSON type it takes */
  bool entry_level;  /* a bad value skips an entry or channel (OK) rather than the push */
} field_t;

#define READING(ts, cg, unit, value)                                                               \
  "{\"planId\":\"P1\",\"data\":{\"status\":\"00\",\"list\":[{\"devAddr\":\"m1\",\"timestamp\":" ts \
  ",\"cgcode\":" cg ",\"unit\":" unit ",\"value\":" value "}]}}"
#define CHANNEL(cg, unit, value)                                                                   \
  "{\"planId\":\"P1\",\"data\":{\"status\":\"00\",\"list\":[{\"devAddr\":\"m1\",\"timestamp\":1,"  \
  "\"channelData\":[{\"cgcode\":" cg ",\"unit\":" unit ",\"value\":" value "}]}]}}"

static const field_t fields[] = {
    {"{\"planId\":%s,\"data\":{\"status\":\"00\"}}", "planId", "a string", false},
    {"{\"planId\":\"P1\",\"data\":%s}", "data", "an object", false},
    {"{\"planId\":\"P1\",\"data\":{\"status\":%s}}", "data.status", "a string", false},
    {"{\"planId\":\"P1\",\"data\":{\"status\":\"00\",\"list\":%s}}", "data.list", "an array",
     false},
    {"{\"planId\":\"P1\",\"data\":{\"status\":\"00\",\"list\":[{\"devAddr\":%s,\"timestamp\":1,"
     "\"unit\":\"V\",\"value\":\"1\"}]}}",
     "data.list[0].devAddr", "a string", true},
    {READING("%s", "\"5050\"", "\"V\"", "\"1\""), "data.list[0].timestamp", "an integer", true},
    {READING("1", "%s", "\"V\"", "\"1\""), "data.list[0].cgcode", "a string", true},
    {READING("1", "\"5050\"", "%s", "\"1\""), "data.list[0].unit", "a string", true},
    {READING("1", "\"5050\"", "\"V\"", "%s"), "data.list[0].value", "a string", true},
    {"{\"planId\":\"P1\",\"data\":{\"status\":\"00\",\"list\":[{\"devAddr\":\"m1\",\"timestamp\":1,"
     "\"channelData\":%s}]}}",
     "data.list[0].channelData", "an array", true},
    {CHANNEL("%s", "\"V\"", "\"1\""), "data.list[0].channelData[0].cgcode", "a string", true},
    {CHANNEL("\"5050\"", "%s", "\"1\""), "data.list[0].channelData[0].unit", "a string", true},
    {CHANNEL("\"5050\"", "\"V\"", "%s"), "data.list[0].channelData[0].value", "a string", true},
    {"{\"planId\":\"P1\",\"data\":{\"status\":\"00\",\"list\":[{\"devAddr\":\"m1\",\"successful\":"
     "%s}]}}",
     "data.list[0].successful", "a boolean", true},
    {"{\"planId\":\"P1\",\"data\":{\"status\":\"00\",\"list\":[{\"devAddr\":\"m1\",\"status\":%s}]"
     "}}",
     "data.list[0].status", "a string", true},
    {"{\"planId\":\"P1\",\"data\":{\"status\":\"00\",\"list\":[{\"devAddr\":\"m1\",\"status\":"
     "\"1\",\"commType\":%s}]}}",
     "data.list[0].commType", "a string", true},
    {"{\"planId\":\"P1\",\"data\":{\"status\":\"00\",\"list\":[{\"devAddr\":\"m1\",\"status\":"
     "\"1\",\"moduleNext\":%s}]}}",
     "data.list[0].moduleNext", "a string", true},
};

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
static void test_wrong_types(void **state) {
  (void)state;
  hes_push_parser_t *p = hes_push_parser_new(0);
  size_t checked = 0;
  for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++) {
    for (size_t t = 0; t < sizeof(jtypes) / sizeof(jtypes[0]); t++) {
      if (strcmp(jtypes[t].phrase, fields[f].wants) == 0)
        continue;
      char msg[512], want[256], err[256];
      snprintf(msg, sizeof(msg), fields[f].tmpl, jtypes[t].json);
      snprintf(want, sizeof(want), "%s: expected %s, got %s", fields[f].path, fields[f].wants,
               jtypes[t].phrase);
      hes_push_t out;
      hes_push_result_t r = parse_str(p, msg, &out, err, sizeof(err));
      if (fields[f].entry_level) {
        check_str(msg, "result", hes_push_result_string(r), "ok");
        check_str(msg, "err", err, "");
        check_int(msg, "count", (long long)out.count, 0);
        check_int(msg, "skipped", (long long)out.skipped, 1);
        check_str(msg, "skipped_reason", out.skipped_reason, want);
      } else {
        check_str(msg, "result", hes_push_result_string(r), "not a push message");
        check_str(msg, "err", err, want);
        assert_zeroed(&out);
      }
      checked++;
    }
  }
  /* 17 fields x 8 values, less the right type (twice for the timestamp: 12 and -7) */
  assert_int_equal(checked, 17 * 8 - 16 - 2);
  hes_push_parser_free(p);
}
#pragma GCC diagnostic pop

/* ---- missing and out-of-range values ---------------------------------------------------- */

typedef struct {
  const char *msg;
  hes_push_result_t result;
  const char *reason; /* err for a rejected push, skipped_reason for an accepted one */
  size_t count;
} case_t;

static void run_cases(const case_t *cases, size_t n) {
  hes_push_parser_t *p = hes_push_parser_new(0);
  for (size_t i = 0; i < n; i++) {
    hes_push_t out;
    char err[256];
    const char *msg = cases[i].msg;
    hes_push_result_t r = parse_str(p, msg, &out, err, sizeof(err));
    check_str(msg, "result", hes_push_result_string(r), hes_push_result_string(cases[i].result));
    if (r == HES_PUSH_OK) {
      check_str(msg, "err", err, "");
      check_str(msg, "skipped_reason", out.skipped_reason, cases[i].reason);
      check_int(msg, "count", (long long)out.count, (long long)cases[i].count);
    } else {
      check_str(msg, "err", err, cases[i].reason);
      assert_zeroed(&out);
    }
  }
  hes_push_parser_free(p);
}

#define LIST(entries) "{\"planId\":\"P1\",\"data\":{\"status\":\"00\",\"list\":[" entries "]}}"

static void test_missing_fields(void **state) {
  (void)state;
  static const case_t cases[] = {
      {LIST("{\"timestamp\":1,\"unit\":\"V\",\"value\":\"1\"}"), HES_PUSH_OK,
       "data.list[0].devAddr: missing", 0},
      {LIST("{\"devAddr\":\"m\",\"unit\":\"V\",\"value\":\"1\"}"), HES_PUSH_OK,
       "data.list[0].timestamp: missing", 0},
      {LIST("{\"devAddr\":\"m\",\"timestamp\":1,\"value\":\"1\"}"), HES_PUSH_OK,
       "data.list[0].unit: missing", 0},
      {LIST("{\"devAddr\":\"m\",\"timestamp\":1,\"unit\":\"V\"}"), HES_PUSH_OK,
       "data.list[0].value: missing", 0},
      {LIST("{\"devAddr\":\"m\",\"timestamp\":1,\"unit\":\"\",\"value\":\"\"}"), HES_PUSH_OK, "",
       1},
      {LIST("{\"devAddr\":\"m\",\"channelData\":[]}"), HES_PUSH_OK,
       "data.list[0].timestamp: missing", 0},
      {LIST("{\"timestamp\":5,\"channelData\":[]}"), HES_PUSH_OK, "data.list[0].devAddr: missing",
       0},
      {LIST("{\"devAddr\":\"m\",\"timestamp\":1,\"channelData\":[{\"unit\":\"V\",\"value\":\"1\"}]"
            "}"),
       HES_PUSH_OK, "data.list[0].channelData[0].cgcode: missing", 0},
      {LIST("{\"devAddr\":\"m\",\"timestamp\":1,\"channelData\":[{\"cgcode\":\"1\",\"value\":\"1\"}"
            "]}"),
       HES_PUSH_OK, "data.list[0].channelData[0].unit: missing", 0},
      {LIST("{\"devAddr\":\"m\",\"timestamp\":1,\"channelData\":[{\"cgcode\":\"1\",\"unit\":\"V\"}"
            "]}"),
       HES_PUSH_OK, "data.list[0].channelData[0].value: missing", 0},
      {LIST("{\"successful\":true}"), HES_PUSH_OK, "data.list[0].devAddr: missing", 0},
      {LIST("{\"devAddr\":\"a\",\"successful\":true},{\"devAddr\":\"b\"}"), HES_PUSH_OK,
       "data.list[1].successful: missing", 1},
      {LIST("{\"devAddr\":\"a\",\"commType\":\"1\"}"), HES_PUSH_OK, "data.list[0].status: missing",
       0},
      {LIST("{\"status\":\"1\"}"), HES_PUSH_OK, "data.list[0].devAddr: missing", 0},
      {LIST("{}"), HES_PUSH_OK, "data.list[0]: not a reading, composite, relay or archive entry",
       0},
      {LIST(""), HES_PUSH_OK, "", 0},
      {LIST("{\"devAddr\":\"a\",\"timestamp\":1,\"channelData\":[]},{\"devAddr\":\"b\","
            "\"status\":\"1\"}"),
       HES_PUSH_OK, "data.list[1]: an archive entry in a list of composite entries", 0},
      {LIST("{\"devAddr\":\"b\",\"status\":\"1\"},{\"devAddr\":\"a\",\"timestamp\":1,"
            "\"channelData\":[]}"),
       HES_PUSH_OK, "data.list[1]: a composite entry in a list of archive entries", 1},
      {"{\"planId\":\"P1\",\"data\":{}}", HES_PUSH_ESHAPE, "data.status: missing", 0},
      {"{}", HES_PUSH_ESHAPE, "planId: missing", 0},
  };
  run_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

#define ONE(ts, cg, value)                                                                         \
  LIST("{\"devAddr\":\"m1\",\"timestamp\":" ts ",\"cgcode\":" cg                                   \
       ",\"unit\":\"V\",\"value\":" value "}")

static void test_ranges(void **state) {
  (void)state;
  static const case_t cases[] = {
      {ONE("0", "\"1\"", "\"1\""), HES_PUSH_OK, "", 1},
      {ONE("-0", "\"1\"", "\"1\""), HES_PUSH_OK, "", 1},
      {ONE("7258118399999", "\"1\"", "\"1\""), HES_PUSH_OK, "", 1},
      {ONE("7258118400000", "\"1\"", "\"1\""), HES_PUSH_OK,
       "data.list[0].timestamp: out of range (0 .. 7258118399999, before the year 2200)", 0},
      {ONE("9223372036854775807", "\"1\"", "\"1\""), HES_PUSH_OK,
       "data.list[0].timestamp: out of range (0 .. 7258118399999, before the year 2200)", 0},
      {ONE("9223372036854775808", "\"1\"", "\"1\""), HES_PUSH_OK,
       "data.list[0].timestamp: out of range (0 .. 7258118399999, before the year 2200)", 0},
      {ONE("18446744073709551616", "\"1\"", "\"1\""), HES_PUSH_OK,
       "data.list[0].timestamp: out of range (0 .. 7258118399999, before the year 2200)", 0},
      {ONE("-9223372036854775809", "\"1\"", "\"1\""), HES_PUSH_OK,
       "data.list[0].timestamp: out of range (0 .. 7258118399999, before the year 2200)", 0},
      {ONE("1e3", "\"1\"", "\"1\""), HES_PUSH_OK,
       "data.list[0].timestamp: expected an integer, got a floating-point number", 0},
      {ONE("1", "\"999999999\"", "\"1\""), HES_PUSH_OK, "", 1},
      {ONE("1", "\"1234567890\"", "\"1\""), HES_PUSH_OK,
       "data.list[0].cgcode: not 1 to 9 decimal digits", 0},
      {ONE("1", "\"\"", "\"1\""), HES_PUSH_OK, "data.list[0].cgcode: not 1 to 9 decimal digits", 0},
      {ONE("1", "\"-5\"", "\"1\""), HES_PUSH_OK, "data.list[0].cgcode: not 1 to 9 decimal digits",
       0},
      {ONE("1", "\" 50\"", "\"1\""), HES_PUSH_OK, "data.list[0].cgcode: not 1 to 9 decimal digits",
       0},
      {ONE("1", "\"000\"", "\"1\""), HES_PUSH_OK, "data.list[0].cgcode: zero", 0},
      {ONE("01", "\"1\"", "\"1\""), HES_PUSH_ESYNTAX, "invalid JSON at byte 75: number expected",
       0},
      {LIST("{\"devAddr\":\"m1\",\"timestamp\":1,\"unit\":\"123456789012345678901234567890123\","
            "\"value\":\"1\"}"),
       HES_PUSH_OK, "data.list[0].unit: longer than 32 characters", 0},
      {LIST("{\"devAddr\":\"m1\",\"status\":\"1\",\"moduleNext\":\"12345678901234567890123456789012"
            "345678901234567890123456789012345\"}"),
       HES_PUSH_OK, "data.list[0].moduleNext: longer than 64 characters", 0},
      {LIST("{\"devAddr\":\"m\\u00001\",\"successful\":true}"), HES_PUSH_OK,
       "data.list[0].devAddr: a character outside [0-9A-Za-z_-]", 0},
      {LIST("{\"devAddr\":\"m\\u00e91\",\"successful\":true}"), HES_PUSH_OK,
       "data.list[0].devAddr: a character outside [0-9A-Za-z_-]", 0},
      {LIST("{\"devAddr\":\"m1\",\"status\":\"01\"}"), HES_PUSH_OK,
       "data.list[0].status: expected \"0\" or \"1\"", 0},
      {"{\"planId\":\"P 1\",\"data\":{\"status\":\"02\"}}", HES_PUSH_OK, "", 0},
      {"{\"planId\":\"P+1\",\"data\":{\"status\":\"02\"}}", HES_PUSH_ESHAPE,
       "planId: a character that is not printable ASCII, or one of / + #", 0},
      {"{\"planId\":\"P\\u00e9\",\"data\":{\"status\":\"02\"}}", HES_PUSH_ESHAPE,
       "planId: a character that is not printable ASCII, or one of / + #", 0},
      {"{\"planId\":\"P1\",\"data\":{\"status\":\"0\"}}", HES_PUSH_ESHAPE,
       "data.status: expected \"00\", \"01\" or \"02\"", 0},
      {"{\"planId\":\"P1\",\"data\":{\"status\":\"000\"}}", HES_PUSH_ESHAPE,
       "data.status: expected \"00\", \"01\" or \"02\"", 0},
      {"{\"planId\":\"P1\",\"data\":{\"status\":\"00\"}} \r\n\t", HES_PUSH_OK, "", 0},
      {"  {\"planId\":\"P1\",\"data\":{\"status\":\"00\"}}", HES_PUSH_OK, "", 0},
      {"{\"planId\":\"P1\",\"data\":{\"status\":\"00\"}}\n{", HES_PUSH_ESYNTAX,
       "invalid JSON at byte 39: unexpected character", 0},
      {"\"planId\"", HES_PUSH_ESHAPE, "message: expected an object, got a string", 0},
      {"12", HES_PUSH_ESYNTAX, "truncated JSON: the message ends after 2 bytes inside a value", 0},
      {"nul", HES_PUSH_ESYNTAX, "truncated JSON: the message ends after 3 bytes inside a value", 0},
      {"Null", HES_PUSH_ESYNTAX, "invalid JSON at byte 1: null expected", 0},
  };
  run_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

/* ---- truncation, size, depth --------------------------------------------------------- */

/* Every proper prefix of a valid message is rejected as ESYNTAX, without reading past it. */
static void test_every_prefix(void **state) {
  (void)state;
  static const char *const files[] = {
      "seed-3.2-read-frozen.json",   "seed-3.3-read-single.json",    "seed-3.6-relay.json",
      "seed-3.7-read-archive.json",  "seed-3.9-remove-archive.json", "unknown-fields.json",
      "composite-bad-channels.json",
  };
  hes_push_parser_t *p = hes_push_parser_new(0);
  size_t tried = 0;
  for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
    size_t len;
    char *buf = load(files[f], &len);
    while (len > 0 && strchr(" \t\r\n", buf[len - 1]) != NULL)
      len--;
    hes_push_t out;
    char err[256];
    assert_int_equal(hes_push_parse(p, buf, len, &out, err, sizeof(err)), HES_PUSH_OK);
    for (size_t n = 0; n < len; n++) {
      char *pre = exact(buf, n);
      hes_push_result_t r = hes_push_parse(p, pre, n, &out, err, sizeof(err));
      if (r != HES_PUSH_ESYNTAX)
        fail_msg("%s: prefix of %zu bytes gave %s (%s)", files[f], n, hes_push_result_string(r),
                 err);
      assert_true(err[0] != '\0');
      assert_zeroed(&out);
      free(pre);
      tried++;
    }
    free(buf);
  }
  assert_true(tried > 3000);
  hes_push_parser_free(p);
}

static void test_max_bytes(void **state) {
  (void)state;
  const char *msg = "{\"planId\":\"P1\",\"data\":{\"status\":\"00\"}}"; /* 38 bytes */
  assert_int_equal(strlen(msg), 38);
  hes_push_parser_t *p = hes_push_parser_new(38);
  hes_push_t out;
  char err[128];
  assert_int_equal(parse_str(p, msg, &out, err, sizeof(err)), HES_PUSH_OK);
  char *big = malloc(39);
  memcpy(big, msg, 38);
  big[38] = ' ';
  assert_int_equal(hes_push_parse(p, big, 39, &out, err, sizeof(err)), HES_PUSH_ETOOBIG);
  assert_string_equal(err, "message of 39 bytes exceeds the limit of 38");
  assert_zeroed(&out);
  free(big);
  hes_push_parser_free(p);

  /* json-c takes an int length: a larger limit is cut to INT_MAX. The length is checked
   * before a byte is read, so the small buffer is never overrun. */
  p = hes_push_parser_new((size_t)INT_MAX + 100);
  assert_int_equal(hes_push_parse(p, msg, (size_t)INT_MAX + 1, &out, err, sizeof(err)),
                   HES_PUSH_ETOOBIG);
  assert_string_equal(err, "message of 2147483648 bytes exceeds the limit of 2147483647");
  hes_push_parser_free(p);

  /* The default limit is checked before a byte is read: the buffer here is not even JSON. */
  p = hes_push_parser_new(0);
  size_t n = HES_PUSH_DEFAULT_MAX_BYTES + 1;
  big = malloc(n);
  assert_non_null(big);
  memset(big, '[', n);
  assert_int_equal(hes_push_parse(p, big, n, &out, err, sizeof(err)), HES_PUSH_ETOOBIG);
  assert_string_equal(err, "message of 16777217 bytes exceeds the limit of 16777216");
  /* One byte less passes the size check and fails on depth at once. */
  assert_int_equal(hes_push_parse(p, big, n - 1, &out, err, sizeof(err)), HES_PUSH_ESYNTAX);
  assert_string_equal(err, "invalid JSON at byte 10: nested deeper than 9 levels");
  free(big);
  hes_push_parser_free(p);
}

static void test_depth(void **state) {
  (void)state;
  hes_push_parser_t *p = hes_push_parser_new(0);
  hes_push_t out;
  char err[128];
  /* root, data, list and entry are 4 levels: 5 more fit, 6 do not. */
  assert_int_equal(parse_str(p, LIST("{\"devAddr\":\"m\",\"successful\":true,\"x\":[[[[[1]]]]]}"),
                             &out, err, sizeof(err)),
                   HES_PUSH_OK);
  assert_int_equal(out.count, 1);
  assert_int_equal(
      parse_str(p, LIST("{\"devAddr\":\"m\",\"successful\":true,\"x\":[[[{\"a\":[[1]]}]]]}"), &out,
                err, sizeof(err)),
      HES_PUSH_ESYNTAX);
  assert_string_equal(err, "invalid JSON at byte 92: nested deeper than 9 levels");
  /* A composite push is 6 levels deep. */
  assert_int_equal(parse_str(p,
                             LIST("{\"devAddr\":\"m\",\"timestamp\":1,\"channelData\":[{\"cgcode\":"
                                  "\"1\",\"unit\":\"V\",\"value\":\"2\",\"x\":{\"y\":[[1]]}}]}"),
                             &out, err, sizeof(err)),
                   HES_PUSH_OK);
  assert_int_equal(out.count, 1);
  hes_push_parser_free(p);
}

/* UTF-8 is checked by the parser itself (RFC 3629), json-c's own check being looser. */
static void test_utf8(void **state) {
  (void)state;
  static const struct {
    const char *bytes; /* put into the value of an unknown member */
    bool valid;
  } cases[] = {
      {"plain", true},
      {"\xc3\xa9", true},                 /* e acute */
      {"\xe4\xb8\xad\xe6\x96\x87", true}, /* two CJK characters */
      {"\xf0\x9f\x98\x80", true},         /* U+1F600 */
      {"\xf4\x8f\xbf\xbf", true},         /* U+10FFFF */
      {"\xed\x9f\xbf", true},             /* U+D7FF */
      {"\xc0\x80", false},                /* overlong NUL */
      {"\xc1\xbf", false},                /* overlong */
      {"\xe0\x9f\xbf", false},            /* overlong */
      {"\xf0\x8f\xbf\xbf", false},        /* overlong */
      {"\xed\xa0\x80", false},            /* a surrogate */
      {"\xf4\x90\x80\x80", false},        /* above U+10FFFF */
      {"\xf5\x80\x80\x80", false},
      {"\x80", false}, /* a lone continuation byte */
      {"\xc3", false}, /* cut short before the quote */
      {"\xe4\xb8", false},
      {"\xe4\x41\x41", false}, /* a continuation byte missing */
      {"\xff", false},
  };
  hes_push_parser_t *p = hes_push_parser_new(0);
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char msg[256], err[128];
    /* the bad bytes come after 49 bytes of ASCII, past the 8-byte fast path's first steps */
    int n = snprintf(msg, sizeof(msg),
                     "{\"planId\":\"P1\",\"note\":\"0123456789abcdef012\",\"x\":\"%s\",\"data\":{"
                     "\"status\":\"00\"}}",
                     cases[i].bytes);
    hes_push_t out;
    hes_push_result_t r = hes_push_parse(p, msg, (size_t)n, &out, err, sizeof(err));
    char ctx[32];
    snprintf(ctx, sizeof(ctx), "utf8 case %zu", i);
    if (cases[i].valid) {
      check_str(ctx, "result", hes_push_result_string(r), "ok");
    } else {
      check_str(ctx, "result", hes_push_result_string(r), "not valid JSON");
      check_str(ctx, "err", err, "invalid JSON at byte 49: invalid UTF-8");
    }
  }
  /* The first byte, and a sequence cut by the end of the message. */
  hes_push_t out;
  char err[128];
  assert_int_equal(hes_push_parse(p, "\xef\xbb\xbf{}", 5, &out, err, sizeof(err)),
                   HES_PUSH_ESYNTAX);
  assert_string_equal(err, "invalid JSON at byte 0: unexpected character");
  assert_int_equal(hes_push_parse(p, "\xff{}", 3, &out, err, sizeof(err)), HES_PUSH_ESYNTAX);
  assert_string_equal(err, "invalid JSON at byte 0: invalid UTF-8");
  assert_int_equal(hes_push_parse(p, "{}\xe4\xb8", 4, &out, err, sizeof(err)), HES_PUSH_ESYNTAX);
  assert_string_equal(err, "invalid JSON at byte 2: invalid UTF-8");
  /* Valid UTF-8 in a value is handed on as sent. */
  const char *euro =
      LIST("{\"devAddr\":\"m\",\"timestamp\":1,\"unit\":\"\xe2\x82\xac\",\"value\":\"1\"}");
  assert_int_equal(parse_str(p, euro, &out, err, sizeof(err)), HES_PUSH_OK);
  assert_string_equal(out.readings[0].unit, "\xe2\x82\xac");
  hes_push_parser_free(p);
}

/* ---- the scanner's own corners ----------------------------------------------------------- */

/* A syntax error at the byte `delta` after the first `anchor` in msg. */
static void check_syntax(hes_push_parser_t *p, const char *msg, const char *anchor, size_t delta,
                         const char *what) {
  const char *a = strstr(msg, anchor);
  if (a == NULL)
    fail_msg("%s: anchor %s not found", msg, anchor);
  char want[256], err[256];
  snprintf(want, sizeof(want), "invalid JSON at byte %zu: %s", (size_t)(a - msg) + delta, what);
  hes_push_t out;
  hes_push_result_t r = parse_str(p, msg, &out, err, sizeof(err));
  check_str(msg, "result", hes_push_result_string(r), "not valid JSON");
  check_str(msg, "err", err, want);
  assert_zeroed(&out);
}

/* One reading whose unit is the JSON string u (quotes included): the decoded unit. */
static const char *unit_of(hes_push_parser_t *p, const char *u, hes_push_t *out) {
  char msg[512], err[256];
  snprintf(msg, sizeof(msg),
           LIST("{\"devAddr\":\"m\",\"timestamp\":1,\"unit\":%s,\"value\":\"1\"}"), u);
  hes_push_result_t r = parse_str(p, msg, out, err, sizeof(err));
  check_str(msg, "result", hes_push_result_string(r), "ok");
  check_int(msg, "count", (long long)out->count, 1);
  return out->readings[0].unit;
}

static void test_escapes(void **state) {
  (void)state;
  hes_push_parser_t *p = hes_push_parser_new(0);
  hes_push_t out;
  assert_string_equal(unit_of(p, "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", &out), "\"\\/\b\f\n\r\t");
  assert_string_equal(unit_of(p, "\"k\\u0057h\"", &out), "kWh");
  assert_string_equal(unit_of(p, "\"\\u00e9\\u20AC\"", &out), "\xc3\xa9\xe2\x82\xac");
  /* a surrogate pair is one character; lone halves become U+FFFD, as json-c made them */
  assert_string_equal(unit_of(p, "\"\\ud83d\\ude00\"", &out), "\xf0\x9f\x98\x80");
  assert_string_equal(unit_of(p, "\"\\uDBFF\\uDFFF\"", &out), "\xf4\x8f\xbf\xbf");
  assert_string_equal(unit_of(p, "\"\\ud800\"", &out), "\xef\xbf\xbd");
  assert_string_equal(unit_of(p, "\"\\udc00x\"", &out), "\xef\xbf\xbdx");
  assert_string_equal(unit_of(p, "\"\\ud800\\u0041\"", &out), "\xef\xbf\xbd"
                                                              "A");
  assert_string_equal(unit_of(p, "\"\\ud800\\ud800\\udc00\"", &out),
                      "\xef\xbf\xbd\xf0\x90\x80\x80");
  assert_string_equal(unit_of(p, "\"\\ud800\\n\"", &out), "\xef\xbf\xbd\n");
  /* a unit of 32 bytes, each written as an escape: the limit is on the decoded length */
  assert_string_equal(unit_of(p,
                              "\"\\u0041\\u0041\\u0041\\u0041\\u0041\\u0041\\u0041\\u0041"
                              "\\u0041\\u0041\\u0041\\u0041\\u0041\\u0041\\u0041\\u0041"
                              "\\u0041\\u0041\\u0041\\u0041\\u0041\\u0041\\u0041\\u0041"
                              "\\u0041\\u0041\\u0041\\u0041\\u0041\\u0041\\u0041\\u0041\"",
                              &out),
                      "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
  /* escaped member names are names like the others */
  const char *named = LIST("{\"dev\\u0041ddr\":\"m\",\"\\u0074imestamp\":5,\"unit\":\"V\","
                           "\"value\":\"1\"}");
  char err[256];
  assert_int_equal(parse_str(p, named, &out, err, sizeof(err)), HES_PUSH_OK);
  assert_reading(&out.readings[0], "m", 5, 0, "V", "1", 0);

  check_syntax(p, LIST("{\"devAddr\":\"m\\x\"}"), "\\x", 1, "invalid string sequence");
  check_syntax(p, LIST("{\"devAddr\":\"m\\u12G4\"}"), "\\u12G4", 4, "invalid string sequence");
  check_syntax(p, LIST("{\"devAddr\":\"m\\ud800\\u12\"}"), "\\u12\"", 4, "invalid string sequence");
  check_syntax(p, LIST("{\"devAddr\":\"m\\U0041\"}"), "\\U", 1, "invalid string sequence");
  /* RFC 8259: no raw control characters in strings (json-c 0.16 took them) */
  check_syntax(p, LIST("{\"devAddr\":\"m\t1\"}"), "\t", 0, "control character in a string");
  check_syntax(p, "{\"planId\":\"P\x01\",\"data\":{\"status\":\"00\"}}", "\x01", 0,
               "control character in a string");
  check_syntax(p, "{\"pl\nanId\":\"P1\",\"data\":{\"status\":\"00\"}}", "\n", 0,
               "control character in a string");
  check_syntax(p, "{\"planId\":'P1',\"data\":{\"status\":\"00\"}}", "'", 0, "unexpected character");
  /* DEL is not a control character for JSON */
  assert_string_equal(unit_of(p, "\"a\x7f\"", &out), "a\x7f");
  /* a string cut off in an escape */
  static const char *const cut[] = {"{\"planId\":\"P1\\", "{\"planId\":\"P1\\u00",
                                    "{\"planId\":\"P1\\ud800", "{\"planId\":\"P1\\ud800\\"};
  for (size_t i = 0; i < sizeof(cut) / sizeof(cut[0]); i++) {
    char want[128];
    snprintf(want, sizeof(want), "truncated JSON: the message ends after %zu bytes inside a value",
             strlen(cut[i]));
    assert_int_equal(parse_str(p, cut[i], &out, err, sizeof(err)), HES_PUSH_ESYNTAX);
    assert_string_equal(err, want);
  }
  hes_push_parser_free(p);
}

/* Strings are scanned eight bytes at a time: a quote, a backslash or a control character at
 * every offset of a word, and the bytes around the bounds (0x1f, 0x20, 0x7f, 0x80 and up),
 * must be found or passed over exactly as one byte at a time would. */
static void test_string_runs(void **state) {
  (void)state;
  hes_push_parser_t *p = hes_push_parser_new(0);
  hes_push_t out;
  char u[80], want[64], msg[512], anchor[8];
  for (size_t n = 1; n <= 24; n++) {
    for (size_t k = 0; k < n; k++) {
      /* an escaped quote and an escaped backslash at k: decoded, the run goes on */
      static const char *const esc[] = {"\\\"", "\\\\"};
      static const char dec[] = {'"', '\\'};
      for (size_t e = 0; e < 2; e++) {
        snprintf(u, sizeof(u), "\"%.*s%s%.*s\"", (int)k, "abcdefghijklmnopqrstuvwxyz", esc[e],
                 (int)(n - k - 1), "ABCDEFGHIJKLMNOPQRSTUVWXYZ");
        snprintf(want, sizeof(want), "%.*s%c%.*s", (int)k, "abcdefghijklmnopqrstuvwxyz", dec[e],
                 (int)(n - k - 1), "ABCDEFGHIJKLMNOPQRSTUVWXYZ");
        assert_string_equal(unit_of(p, u, &out), want);
      }
      /* plain bytes at the bounds of the tests: kept as they are */
      static const char *const plain[] = {" ", "\x7f", "\xc2\x80", "\xc3\xa9", "\xf4\x8f\xbf\xbf"};
      for (size_t e = 0; e < sizeof(plain) / sizeof(plain[0]); e++) {
        snprintf(want, sizeof(want), "%.*s%s%.*s", (int)k, "abcdefghijklmnopqrstuvwxyz", plain[e],
                 (int)(n - k - 1), "ABCDEFGHIJKLMNOPQRSTUVWXYZ");
        snprintf(u, sizeof(u), "\"%s\"", want);
        assert_string_equal(unit_of(p, u, &out), want);
      }
      /* a raw control character at k: rejected at that byte */
      static const char ctl[] = {'\x01', '\x1f', '\t'};
      for (size_t e = 0; e < sizeof(ctl); e++) {
        snprintf(anchor, sizeof(anchor), "%c", ctl[e]);
        snprintf(
            msg, sizeof(msg),
            LIST("{\"devAddr\":\"m\",\"timestamp\":1,\"unit\":\"%.*s%c%.*s\",\"value\":\"1\"}"),
            (int)k, "abcdefghijklmnopqrstuvwxyz", ctl[e], (int)(n - k - 1),
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ");
        check_syntax(p, msg, anchor, 0, "control character in a string");
      }
    }
  }
  hes_push_parser_free(p);
}

static void test_numbers(void **state) {
  (void)state;
  static const case_t cases[] = {
      {ONE("-0", "\"1\"", "\"1\""), HES_PUSH_OK, "", 1},
      {ONE("0", "\"1\"", "\"1\""), HES_PUSH_OK, "", 1},
      {ONE("1e400", "\"1\"", "\"1\""), HES_PUSH_OK,
       "data.list[0].timestamp: expected an integer, got a floating-point number", 0},
      {ONE("1E+2", "\"1\"", "\"1\""), HES_PUSH_OK,
       "data.list[0].timestamp: expected an integer, got a floating-point number", 0},
      {ONE("1.0", "\"1\"", "\"1\""), HES_PUSH_OK,
       "data.list[0].timestamp: expected an integer, got a floating-point number", 0},
      {ONE("-0.0e-0", "\"1\"", "\"1\""), HES_PUSH_OK,
       "data.list[0].timestamp: expected an integer, got a floating-point number", 0},
      {ONE("Infinity", "\"1\"", "\"1\""), HES_PUSH_OK,
       "data.list[0].timestamp: expected an integer, got a floating-point number", 0},
      {ONE("-Infinity", "\"1\"", "\"1\""), HES_PUSH_OK,
       "data.list[0].timestamp: expected an integer, got a floating-point number", 0},
      {ONE("99999999999999999999999999999", "\"1\"", "\"1\""), HES_PUSH_OK,
       "data.list[0].timestamp: out of range (0 .. 7258118399999, before the year 2200)", 0},
      {ONE("-99999999999999999999999999999", "\"1\"", "\"1\""), HES_PUSH_OK,
       "data.list[0].timestamp: out of range (0 .. 7258118399999, before the year 2200)", 0},
      {ONE("1720540800000", "\"1\"", "\"1\""), HES_PUSH_OK, "", 1},
  };
  run_cases(cases, sizeof(cases) / sizeof(cases[0]));

  hes_push_parser_t *p = hes_push_parser_new(0);
  hes_push_t out;
  char err[256];
  assert_int_equal(parse_str(p, ONE("-0", "\"1\"", "\"1\""), &out, err, sizeof(err)), HES_PUSH_OK);
  assert_int_equal(out.readings[0].timestamp_ms, 0);
  /* RFC 8259 numbers only; each failure is reported after the number's last byte. json-c
   * took 00, -01, 01.5, 1. and -.5. */
  static const char *const bad[] = {"00",   "-01", "01.5", "1.", "-.5",   "1e",   "1e+",
                                    "1.e5", "-",   "--1",  "+1", "1.5.3", "1e5e", "1-2"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char msg[256];
    snprintf(msg, sizeof(msg), "{\"planId\":\"P1\",\"n\":%s ,\"data\":{\"status\":\"00\"}}",
             bad[i]);
    size_t run = strspn(bad[i], "0123456789.eE+-");
    if (bad[i][0] == '+')
      check_syntax(p, msg, bad[i], 0, "unexpected character");
    else if (run < strlen(bad[i]))
      check_syntax(p, msg, bad[i], run, "number expected");
    else
      check_syntax(p, msg, " ,", 0, "number expected");
  }
  check_syntax(p, "{\"planId\":\"P1\",\"n\":-infinity}", "-i", 1, "number expected");
  check_syntax(p, "{\"planId\":\"P1\",\"n\":Inf}", "Inf}", 3, "unexpected character");
  check_syntax(p, "{\"planId\":\"P1\",\"n\":nan}", "nan", 1, "null expected");
  check_syntax(p, "{\"planId\":\"P1\",\"n\":True}", "True", 0, "boolean expected");
  check_syntax(p, "{\"planId\":\"P1\",\"n\":tru}", "tru}", 3, "boolean expected");
  check_syntax(p, "{\"planId\":\"P1\",\"n\":1x}", "x", 0, "object value separator ',' expected");
  check_syntax(p, "{\"planId\":\"P1\",\"n\":0x10}", "x", 0, "object value separator ',' expected");
  /* a scalar that ends the message: json-c waited for more, and so does the scanner */
  static const char *const open[] = {"0", "-", "1.5e", "true", "null", "NaN", "-Infinity"};
  for (size_t i = 0; i < sizeof(open) / sizeof(open[0]); i++) {
    char want[128];
    snprintf(want, sizeof(want), "truncated JSON: the message ends after %zu bytes inside a value",
             strlen(open[i]));
    assert_int_equal(parse_str(p, open[i], &out, err, sizeof(err)), HES_PUSH_ESYNTAX);
    check_str(open[i], "err", err, want);
  }
  assert_int_equal(parse_str(p, "-Infinity\n", &out, err, sizeof(err)), HES_PUSH_ESHAPE);
  assert_string_equal(err, "message: expected an object, got a floating-point number");
  assert_int_equal(parse_str(p, "false ", &out, err, sizeof(err)), HES_PUSH_ESHAPE);
  assert_string_equal(err, "message: expected an object, got a boolean");
  hes_push_parser_free(p);
}

/* Whitespace may stand between any two tokens, and only JSON's four kinds of it. */
static void test_whitespace(void **state) {
  (void)state;
  hes_push_parser_t *p = hes_push_parser_new(0);
  const char *msg = " \t\r\n{ \"planId\" :\t\"P1\" ,\n\"data\"\r:{ \"status\" : \"01\" , \"list\" "
                    ": [ { \"devAddr\" : \"m1\" , \"timestamp\" : 7 , \"channelData\" : [ { "
                    "\"cgcode\" : \"5\" , \"unit\" : \" V \" , \"value\" : \"1\" } , 3 ] } ] } "
                    "}\n\t \r";
  hes_push_t out;
  char err[256];
  assert_int_equal(parse_str(p, msg, &out, err, sizeof(err)), HES_PUSH_OK);
  assert_string_equal(out.plan_id, "P1");
  assert_int_equal(out.status, HES_PUSH_PARTIAL);
  assert_int_equal(out.kind, HES_PUSH_CHANNELS);
  assert_int_equal(out.count, 1);
  assert_int_equal(out.skipped, 1);
  assert_string_equal(out.skipped_reason,
                      "data.list[0].channelData[1]: expected an object, got an integer");
  assert_reading(&out.readings[0], "m1", 7, 5, " V ", "1", 0);
  check_syntax(p, "{\"planId\":\"P1\",\f\"data\":{\"status\":\"00\"}}", "\f", 0,
               "quoted object property name expected");
  check_syntax(p, "{\"planId\":\"P1\"\v}", "\v", 0, "object value separator ',' expected");
  check_syntax(p, "{\"planId\" \"P1\"}", " \"P1", 1, "object property name separator ':' expected");
  check_syntax(p, "[1 2]", "2", 0, "array value separator ',' expected");
  check_syntax(p, "[1,]", "]", 0, "unexpected character");
  check_syntax(p, "{\"a\":1,}", "}", 0, "unexpected character");
  check_syntax(p, "{\"planId\":\"P1\"}\xc2\xa0", "\xc2", 0, "unexpected character");
  assert_int_equal(parse_str(p, " \n\t", &out, err, sizeof(err)), HES_PUSH_ESYNTAX);
  assert_string_equal(err, "truncated JSON: the message ends after 3 bytes inside a value");
  hes_push_parser_free(p);
}

/* A repeated member counts with its last value, as json-c had it; every level is covered. */
static void test_duplicate_keys(void **state) {
  (void)state;
  static const case_t cases[] = {
      {"{\"planId\":\"P1\",\"planId\":\"P+2\",\"data\":{\"status\":\"00\"}}", HES_PUSH_ESHAPE,
       "planId: a character that is not printable ASCII, or one of / + #", 0},
      {"{\"planId\":1,\"planId\":\"P2\",\"data\":{\"status\":\"00\"}}", HES_PUSH_OK, "", 0},
      {"{\"planId\":\"P1\",\"data\":{\"status\":\"07\"},\"data\":{\"status\":\"00\"}}", HES_PUSH_OK,
       "", 0},
      {"{\"planId\":\"P1\",\"data\":{\"status\":\"00\",\"list\":[{\"devAddr\":\"a\",\"successful\":"
       "true}]},\"data\":{\"status\":\"00\"}}",
       HES_PUSH_OK, "", 0},
      {"{\"planId\":\"P1\",\"data\":{\"status\":\"00\"},\"data\":5}", HES_PUSH_ESHAPE,
       "data: expected an object, got an integer", 0},
      {"{\"planId\":\"P1\",\"data\":{\"status\":\"00\",\"status\":\"3\"}}", HES_PUSH_ESHAPE,
       "data.status: expected \"00\", \"01\" or \"02\"", 0},
      {"{\"planId\":\"P1\",\"data\":{\"status\":\"00\",\"list\":[{\"devAddr\":\"a\",\"successful\":"
       "1}],\"list\":[{\"devAddr\":\"a\",\"successful\":true},{\"devAddr\":\"b\",\"successful\":"
       "false}]}}",
       HES_PUSH_OK, "", 2},
      {"{\"planId\":\"P1\",\"data\":{\"status\":\"00\",\"list\":[{\"devAddr\":\"a\",\"successful\":"
       "true}],\"list\":null}}",
       HES_PUSH_ESHAPE, "data.list: expected an array, got null", 0},
      {LIST("{\"devAddr\":\"bad addr\",\"devAddr\":\"m1\",\"successful\":true}"), HES_PUSH_OK, "",
       1},
      {LIST("{\"devAddr\":\"m1\",\"devAddr\":\"bad addr\",\"successful\":true}"), HES_PUSH_OK,
       "data.list[0].devAddr: a character outside [0-9A-Za-z_-]", 0},
      {LIST(
           "{\"devAddr\":\"m1\",\"timestamp\":1,\"channelData\":[{\"cgcode\":\"1\",\"unit\":\"V\","
           "\"value\":\"1\"},{}],\"channelData\":[{\"cgcode\":\"2\",\"unit\":\"V\",\"value\":\"2\","
           "\"value\":\"3\"}]}"),
       HES_PUSH_OK, "", 1},
      {LIST("{\"devAddr\":\"m1\",\"timestamp\":1,\"channelData\":[{\"cgcode\":\"1\",\"unit\":\"V\","
            "\"value\":\"1\"}],\"channelData\":{}}"),
       HES_PUSH_OK, "data.list[0].channelData: expected an array, got an object", 0},
  };
  run_cases(cases, sizeof(cases) / sizeof(cases[0]));

  hes_push_parser_t *p = hes_push_parser_new(0);
  hes_push_t out;
  char err[256];
  const char *msg = LIST("{\"devAddr\":\"m1\",\"timestamp\":1,\"channelData\":[{\"cgcode\":\"1\","
                         "\"unit\":\"V\",\"value\":\"1\"},{}],\"channelData\":[{\"cgcode\":\"2\","
                         "\"unit\":\"V\",\"value\":\"2\",\"value\":\"3\"}]}");
  assert_int_equal(parse_str(p, msg, &out, err, sizeof(err)), HES_PUSH_OK);
  assert_int_equal(out.skipped, 0);
  assert_reading(&out.readings[0], "m1", 1, 2, "V", "3", 0);
  /* a name ends at an escaped NUL, as json-c kept names as C strings */
  msg = LIST("{\"devAddr\\u0000x\":\"m2\",\"successful\":true}");
  assert_int_equal(parse_str(p, msg, &out, err, sizeof(err)), HES_PUSH_OK);
  assert_int_equal(out.count, 1);
  assert_string_equal(out.relays[0].dev_addr, "m2");
  hes_push_parser_free(p);
}

/* Unknown members are skipped whatever they hold, checked to the same depth limit. */
static void test_unknown_nested(void **state) {
  (void)state;
  hes_push_parser_t *p = hes_push_parser_new(0);
  hes_push_t out;
  char err[256];
  /* "x" is 1 level below the root; 8 more arrays put the 1 at level 9, the deepest allowed */
  const char *ok =
      "{\"x\":[[[[[[[[1,{},[],\"s\\u00e9\",null,true,-2.5e-3]]]]]]]],\"planId\":\"P1\","
      "\"data\":{\"status\":\"00\",\"y\":{\"a\":{\"b\":{\"c\":{\"d\":{\"e\":{\"f\":"
      "[]}}}}}}}}";
  assert_int_equal(parse_str(p, ok, &out, err, sizeof(err)), HES_PUSH_OK);
  assert_string_equal(out.plan_id, "P1");
  check_syntax(p, "{\"x\":[[[[[[[[[1]]]]]]]]],\"planId\":\"P1\"}", "1", 0,
               "nested deeper than 9 levels");
  check_syntax(p, "{\"x\":[[[[[[[[{\"k\":1}]]]]]]]],\"planId\":\"P1\"}", "1", 0,
               "nested deeper than 9 levels");
  /* the depth check comes before the byte is looked at, as in json-c */
  check_syntax(p, "{\"x\":[[[[[[[[{\"k\":,}]]]]]]]]}", ":,", 1, "nested deeper than 9 levels");
  /* errors inside skipped members are errors */
  check_syntax(p, "{\"x\":[{\"a\":[1,2,{\"b\":tru]}]}],\"planId\":\"P1\"}", "tru]", 3,
               "boolean expected");
  check_syntax(p, LIST("{\"devAddr\":\"m1\",\"successful\":true,\"q\":{\"a\" 1}}"), " 1}", 1,
               "object property name separator ':' expected");
  /* a list of 3000 entries each with an unknown member nested 5 deep */
  size_t cap = 3000 * 96 + 128, o = 0;
  char *big = malloc(cap);
  assert_non_null(big);
  o += (size_t)snprintf(big + o, cap - o,
                        "{\"planId\":\"P1\",\"data\":{\"status\":\"00\",\"list\":[");
  for (int i = 0; i < 3000; i++)
    o +=
        (size_t)snprintf(big + o, cap - o,
                         "%s{\"u\":{\"v\":[[{\"w\":[%d]}]]},\"devAddr\":\"m%d\",\"successful\":%s}",
                         i ? "," : "", i, i, i % 2 ? "true" : "false");
  o += (size_t)snprintf(big + o, cap - o, "]}}");
  hes_push_result_t r = hes_push_parse(p, big, o, &out, err, sizeof(err));
  free(big);
  assert_int_equal(r, HES_PUSH_OK);
  assert_int_equal(out.count, 3000);
  assert_string_equal(out.relays[2999].dev_addr, "m2999");
  assert_true(out.relays[2999].successful);
  assert_false(out.relays[2998].successful);
  hes_push_parser_free(p);
}

/* ---- reuse, growth, arguments ---------------------------------------------------------- */

/* Builds a push of n single readings: devAddr "m<i>", timestamp 1720540800000 + i, cgcode
 * 5050 + i % 3, value "<i>.5". */
static char *build_readings(size_t n, const char *plan, size_t *len) {
  size_t cap = 128 + n * 120;
  char *b = malloc(cap);
  assert_non_null(b);
  size_t o =
      (size_t)snprintf(b, cap, "{\"planId\":\"%s\",\"data\":{\"status\":\"00\",\"list\":[", plan);
  for (size_t i = 0; i < n; i++)
    o += (size_t)snprintf(b + o, cap - o,
                          "%s{\"devAddr\":\"m%zu\",\"timestamp\":%lld,\"cgcode\":\"%zu\","
                          "\"unit\":\"V\",\"value\":\"%zu.5\"}",
                          i ? "," : "", i, 1720540800000LL + (long long)i, 5050 + i % 3, i);
  o += (size_t)snprintf(b + o, cap - o, "]}}");
  *len = o;
  return b;
}

static void check_readings(const hes_push_t *out, size_t n, const char *plan) {
  assert_string_equal(out->plan_id, plan);
  assert_int_equal(out->kind, HES_PUSH_READINGS);
  assert_int_equal(out->count, n);
  assert_int_equal(out->entries, n);
  assert_int_equal(out->skipped, 0);
  for (size_t i = 0; i < n; i++) {
    char dev[32], val[32];
    snprintf(dev, sizeof(dev), "m%zu", i);
    snprintf(val, sizeof(val), "%zu.5", i);
    assert_reading(&out->readings[i], dev, INT64_C(1720540800000) + (int64_t)i, (int)(5050 + i % 3),
                   "V", val, (uint32_t)i);
  }
}

static void test_reuse(void **state) {
  (void)state;
  hes_push_parser_t *p = hes_push_parser_new(0);
  static const size_t sizes[] = {1, 1000, 3, 0, 2500, 64, 65, 7};
  size_t len;
  char *relay = load("seed-3.6-relay.json", &len);
  size_t relay_len = len;
  for (size_t round = 0; round < 200; round++) {
    size_t n = sizes[round % (sizeof(sizes) / sizeof(sizes[0]))];
    char plan[32];
    snprintf(plan, sizeof(plan), "P%zu", round);
    char *msg = build_readings(n, plan, &len);
    hes_push_t out;
    char err[128];
    assert_int_equal(hes_push_parse(p, msg, len, &out, err, sizeof(err)), HES_PUSH_OK);
    /* The result refers to the parser, not to the caller's buffer. */
    memset(msg, 'x', len);
    free(msg);
    if (n == 0) {
      assert_int_equal(out.kind, HES_PUSH_EMPTY);
      assert_string_equal(out.plan_id, plan);
    } else {
      check_readings(&out, n, plan);
    }
    if (round % 5 == 0) {
      assert_int_equal(hes_push_parse(p, relay, relay_len, &out, NULL, 0), HES_PUSH_OK);
      assert_int_equal(out.kind, HES_PUSH_RELAY);
      assert_string_equal(out.relays[1].dev_addr, "202407100002");
    }
    if (round % 7 == 0) {
      assert_int_equal(parse_str(p, "{\"planId\":", &out, err, sizeof(err)), HES_PUSH_ESYNTAX);
      assert_zeroed(&out);
    }
  }
  free(relay);
  hes_push_parser_free(p);
}

static void test_parse_list_args(void **state) {
  (void)state;
  hes_push_parser_t *p = hes_push_parser_new(0);
  hes_push_t out;
  char err[128];
  assert_int_equal(hes_push_parse_list(p, NULL, &out, err, sizeof(err)), HES_PUSH_ESHAPE);
  assert_string_equal(err, "list: expected an array, got null");
  json_object *o = json_tokener_parse("{\"list\":[]}");
  assert_int_equal(hes_push_parse_list(p, o, &out, err, sizeof(err)), HES_PUSH_ESHAPE);
  assert_string_equal(err, "list: expected an array, got an object");
  assert_zeroed(&out);
  json_object_put(o);
  o = json_tokener_parse("[{\"devAddr\":\"m\",\"timestamp\":\"1\",\"unit\":\"V\",\"value\":\"1\"},"
                         "{\"devAddr\":\"m\",\"timestamp\":2,\"unit\":\"V\",\"value\":\"1\"}]");
  assert_int_equal(hes_push_parse_list(p, o, &out, err, sizeof(err)), HES_PUSH_OK);
  assert_string_equal(err, "");
  assert_string_equal(out.plan_id, "");
  assert_int_equal(out.status, HES_PUSH_SUCCESS);
  assert_int_equal(out.count, 1);
  assert_int_equal(out.skipped, 1);
  assert_string_equal(out.skipped_reason, "list[0].timestamp: expected an integer, got a string");
  assert_reading(&out.readings[0], "m", 2, 0, "V", "1", 1);
  /* The parser keeps its own reference: the result outlives the caller's tree. */
  json_object_put(o);
  assert_reading(&out.readings[0], "m", 2, 0, "V", "1", 1);
  o = json_object_new_array();
  assert_int_equal(hes_push_parse_list(p, o, &out, err, sizeof(err)), HES_PUSH_OK);
  assert_int_equal(out.kind, HES_PUSH_EMPTY);
  assert_int_equal(out.count, 0);
  json_object_put(o);
  assert_int_equal(hes_push_parse_list(NULL, o, &out, err, sizeof(err)), HES_PUSH_EINVAL);
  hes_push_parser_free(p);
}

static void test_args(void **state) {
  (void)state;
  hes_push_parser_t *p = hes_push_parser_new(0);
  hes_push_t out;
  char err[128];
  assert_int_equal(hes_push_parse(NULL, "{}", 2, &out, err, sizeof(err)), HES_PUSH_EINVAL);
  assert_string_equal(err, "invalid argument");
  assert_zeroed(&out);
  assert_int_equal(hes_push_parse(p, "{}", 2, NULL, err, sizeof(err)), HES_PUSH_EINVAL);
  assert_int_equal(hes_push_parse(p, NULL, 2, &out, err, sizeof(err)), HES_PUSH_EINVAL);
  assert_int_equal(hes_push_parse(p, NULL, 0, &out, err, sizeof(err)), HES_PUSH_ESYNTAX);
  assert_string_equal(err, "empty message");
  /* err may be absent or tiny. */
  assert_int_equal(hes_push_parse(p, "{}", 2, &out, NULL, 0), HES_PUSH_ESHAPE);
  char tiny[8];
  assert_int_equal(hes_push_parse(p, "{}", 2, &out, tiny, sizeof(tiny)), HES_PUSH_ESHAPE);
  assert_string_equal(tiny, "planId:");
  assert_int_equal(hes_push_parse(p, "{}", 2, &out, tiny, 0), HES_PUSH_ESHAPE);
  hes_push_parser_free(p);
  hes_push_parser_free(NULL);

  assert_string_equal(hes_push_result_string(HES_PUSH_OK), "ok");
  assert_string_equal(hes_push_result_string(HES_PUSH_ETOOBIG), "message too big");
  assert_string_equal(hes_push_result_string(HES_PUSH_ESYNTAX), "not valid JSON");
  assert_string_equal(hes_push_result_string(HES_PUSH_ESHAPE), "not a push message");
  assert_string_equal(hes_push_result_string(HES_PUSH_ENOMEM), "out of memory");
  assert_string_equal(hes_push_result_string(HES_PUSH_EINVAL), "invalid argument");
  assert_string_equal(hes_push_result_string((hes_push_result_t)99), "unknown result");
}

/* Only the first skipped entry's reason is kept; the others are counted. */
static void test_reason_is_the_first(void **state) {
  (void)state;
  hes_push_parser_t *p = hes_push_parser_new(0);
  hes_push_t out;
  char msg[8192];
  size_t o = (size_t)snprintf(msg, sizeof(msg),
                              "{\"planId\":\"P1\",\"data\":{\"status\":\"00\","
                              "\"list\":[{\"devAddr\":\"a\",\"successful\":true}");
  for (int i = 0; i < 100; i++)
    o += (size_t)snprintf(msg + o, sizeof(msg) - o, ",{\"devAddr\":\"a\",\"successful\":%d}", i);
  snprintf(msg + o, sizeof(msg) - o, ",{\"devAddr\":\"a\",\"value\":\"1\"}]}}");
  assert_int_equal(parse_str(p, msg, &out, NULL, 0), HES_PUSH_OK);
  assert_int_equal(out.count, 1);
  assert_int_equal(out.skipped, 101);
  assert_string_equal(out.skipped_reason,
                      "data.list[1].successful: expected a boolean, got an integer");
  hes_push_parser_free(p);
}

/* The fuzz corpus (large messages, and every input that once crashed the fuzz target) is
 * a regression suite: each parses without harm, and the large ones completely. */
static void test_fuzz_corpus(void **state) {
  (void)state;
  DIR *d = opendir(corpus_dir);
  assert_non_null(d);
  hes_push_parser_t *p = hes_push_parser_new(0);
  struct dirent *de;
  size_t files = 0;
  while ((de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.')
      continue;
    size_t len;
    char *buf = load_from(corpus_dir, de->d_name, &len);
    hes_push_t out;
    char err[256];
    hes_push_result_t r = hes_push_parse(p, buf, len, &out, err, sizeof(err));
    free(buf);
    if (r != HES_PUSH_OK && r != HES_PUSH_ESYNTAX && r != HES_PUSH_ESHAPE)
      fail_msg("%s: %s", de->d_name, hes_push_result_string(r));
    if (strcmp(de->d_name, "readings-1000.json") == 0) {
      check_int(de->d_name, "count", (long long)out.count, 1000);
      check_str(de->d_name, "last value", out.readings[999].value, "7999.999");
    } else if (strcmp(de->d_name, "composite-125x8.json") == 0) {
      check_int(de->d_name, "count", (long long)out.count, 1000);
      check_int(de->d_name, "entries", (long long)out.entries, 125);
    } else if (strcmp(de->d_name, "relay-many.json") == 0) {
      check_int(de->d_name, "count", (long long)out.count, 50);
    }
    files++;
  }
  closedir(d);
  assert_true(files >= 4);
  hes_push_parser_free(p);
}

int main(void) {
  find_data_dir();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_golden),
      cmocka_unit_test(test_golden_complete),
      cmocka_unit_test(test_seed_read_frozen),
      cmocka_unit_test(test_seed_read_single),
      cmocka_unit_test(test_seed_history),
      cmocka_unit_test(test_seed_relay_archive),
      cmocka_unit_test(test_composite_values),
      cmocka_unit_test(test_wrong_types),
      cmocka_unit_test(test_missing_fields),
      cmocka_unit_test(test_ranges),
      cmocka_unit_test(test_every_prefix),
      cmocka_unit_test(test_max_bytes),
      cmocka_unit_test(test_depth),
      cmocka_unit_test(test_utf8),
      cmocka_unit_test(test_escapes),
      cmocka_unit_test(test_string_runs),
      cmocka_unit_test(test_numbers),
      cmocka_unit_test(test_whitespace),
      cmocka_unit_test(test_duplicate_keys),
      cmocka_unit_test(test_unknown_nested),
      cmocka_unit_test(test_reuse),
      cmocka_unit_test(test_parse_list_args),
      cmocka_unit_test(test_args),
      cmocka_unit_test(test_reason_is_the_first),
      cmocka_unit_test(test_fuzz_corpus),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
