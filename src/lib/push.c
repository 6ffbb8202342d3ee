/* push: turns the HES's MQTT push messages (seed 3.2-3.9) and the "list" of history answers
 * into hes_push_t, strictly (see push.h for the contract).
 *
 * Pushes are read by a one-pass scanner written for this job, not by json-c: the ingest
 * benchmark (tests/bench/RESULTS.md) found json-c's tree building and glibc's malloc behind
 * 55-70% of the MQTT thread. The scanner allocates nothing per reading: strings are decoded
 * into one buffer owned by the parser (sized to the message once, never shrunk), and the
 * result arrays grow geometrically and are reused. History lists arrive as a json-c tree
 * from the api module and are walked by the same entry checks.
 *
 * What the scanner accepts (tests/fuzz/fuzz_push_diff.c holds it against json-c 0.16's
 * strict mode, which the module used before):
 *  - RFC 8259. Where json-c's strict mode is looser, the RFC wins: raw control characters
 *    in strings, single-quoted member names, and numbers such as 00, -01, 01.5, 1. and -.5
 *    are rejected. These are the only differences the differential fuzz target allows.
 *  - Kept from json-c because the golden files pin them: NaN, Infinity and -Infinity are
 *    floating-point numbers; a number or literal that ends the message is "truncated" (a
 *    top-level scalar is never a push anyway); a NUL byte after the value is trailing data.
 *  - A repeated member name: the last one wins, as in json-c. A name ends at an escaped
 *    NUL (json-c kept names as C strings). A lone surrogate escape becomes U+FFFD, as in
 *    json-c; RFC 8259 allows it in the grammar and leaves its meaning open.
 *  - Values nest at most PUSH_DEPTH - 1 levels below the root, and a deeper one is reported
 *    at the byte json-c named; every unknown member is validated as it is skipped.
 *  - UTF-8 is checked over the whole message first (RFC 3629), as before.
 * Reasons for rejections are formatted only when needed (once per message for skipped
 * entries), never per accepted reading. */
#include "config.h"

#include "push.h"
#include "meterid.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

/* A push is 6 levels deep (root, data, list, entry, channelData, channel); the margin is
 * for unknown extra members. json-c's depth counted the root as 0 and allowed PUSH_DEPTH
 * levels, so values nest at most NEST_MAX levels below the root. The scanner's recursion
 * is bounded by the same limit. */
#define PUSH_DEPTH         10
#define NEST_MAX           (PUSH_DEPTH - 1)
#define DEV_ADDR_MAX       HES_METER_MAX_LEN
#define VALUE_MAX          64
#define UNIT_MAX           32
#define TEXT_MAX           64                     /* commType, moduleNext */
#define CGCODE_DIGITS      9                      /* fits an int without overflow checks */
#define TIMESTAMP_LIMIT_MS INT64_C(7258118400000) /* 2200-01-01T00:00:00Z, exclusive */
#define ARRAY_MIN_CAP      64

struct hes_push_parser {
  json_object *root; /* the latest history list: that result's strings point into it */
  size_t max_bytes;
  char *text; /* the latest push's decoded strings, each NUL-terminated */
  size_t text_cap;
  hes_push_reading_t *readings;
  size_t readings_cap;
  hes_push_relay_t *relays;
  size_t relays_cap;
  hes_push_archive_t *archives;
  size_t archives_cap;
};

/* ---- values and the members of an entry -------------------------------------------------- */

typedef enum { V_NULL, V_BOOL, V_INT, V_DOUBLE, V_STRING, V_OBJECT, V_ARRAY } vtype_t;

/* One JSON value as far as the checks need it: containers are known by type only. */
typedef struct {
  vtype_t type;
  bool b;        /* V_BOOL */
  int64_t i;     /* V_INT, saturated at INT64_MIN and INT64_MAX as json-c's get_int64 */
  const char *s; /* V_STRING (kept): NUL-terminated, but it may hold a NUL of its own */
  size_t len;
} val_t;

/* The members of one list entry or channel we know. */
enum {
  FD_DEV_ADDR,
  FD_TIMESTAMP,
  FD_CGCODE,
  FD_UNIT,
  FD_VALUE,
  FD_CHANNEL_DATA,
  FD_SUCCESSFUL,
  FD_STATUS,
  FD_COMM_TYPE,
  FD_MODULE_NEXT,
  FD_COUNT
};

static const struct {
  const char *name;
  size_t len;
} field_names[FD_COUNT] = {
    {"devAddr", 7},      {"timestamp", 9},   {"cgcode", 6}, {"unit", 4},     {"value", 5},
    {"channelData", 11}, {"successful", 10}, {"status", 6}, {"commType", 8}, {"moduleNext", 10},
};

/* A member is read only when its bit in `seen` is set; a JSON null is a V_NULL there. */
typedef struct {
  unsigned seen;
  val_t v[FD_COUNT];
} fields_t;

#define SEEN(f, fd) (((f)->seen >> (fd)) & 1u)

/* Each known length has one name, or two told apart by their first letter. */
static int field_of(const char *name, size_t len) {
  int fd;
  switch (len) {
  case 4:
    fd = FD_UNIT;
    break;
  case 5:
    fd = FD_VALUE;
    break;
  case 6:
    fd = name[0] == 'c' ? FD_CGCODE : FD_STATUS;
    break;
  case 7:
    fd = FD_DEV_ADDR;
    break;
  case 8:
    fd = FD_COMM_TYPE;
    break;
  case 9:
    fd = FD_TIMESTAMP;
    break;
  case 10:
    fd = name[0] == 's' ? FD_SUCCESSFUL : FD_MODULE_NEXT;
    break;
  case 11:
    fd = FD_CHANNEL_DATA;
    break;
  default:
    return -1;
  }
  return memcmp(field_names[fd].name, name, len) == 0 ? fd : -1;
}

static bool name_is(const char *name, size_t len, const char *want) {
  return strlen(want) == len && memcmp(name, want, len) == 0;
}

/* What was wrong with one field; turned into text only when somebody will read it. */
typedef struct {
  const char *field;    /* NULL: the entry (or channel) itself */
  const char *expected; /* "an integer", or a whole complaint when got is NULL */
  const char *got;
} problem_t;

/* The state of one list walk, for a push and for a history list alike. */
typedef struct {
  hes_push_parser_t *p;
  hes_push_t *out;    /* entries, skipped and skipped_reason are kept there as they come */
  const char *prefix; /* "data.list" or "list" */
  hes_push_kind_t kind;
  size_t count;
  /* The accepted channels of the entry being read wait at readings[count .. count +
   * ch_count) until the entry itself is accepted; skipped ones are only counted. */
  size_t ch_count, ch_skipped, ch_first;
  problem_t ch_problem;
  bool oom;
} walk_t;

static const char *type_phrase(vtype_t t) {
  switch (t) {
  case V_NULL:
    return "null";
  case V_BOOL:
    return "a boolean";
  case V_DOUBLE:
    return "a floating-point number";
  case V_INT:
    return "an integer";
  case V_OBJECT:
    return "an object";
  case V_ARRAY:
    return "an array";
  case V_STRING:
    return "a string";
  }
  return "something else";
}

static const char *kind_noun(hes_push_kind_t k) {
  switch (k) {
  case HES_PUSH_READINGS:
    return "reading";
  case HES_PUSH_CHANNELS:
    return "composite";
  case HES_PUSH_RELAY:
    return "relay";
  case HES_PUSH_ARCHIVE:
    return "archive";
  case HES_PUSH_EMPTY:
    break;
  }
  return "unknown";
}

static void set_text(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_text(char *buf, size_t len, const char *fmt, ...) {
  if (buf == NULL || len == 0)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, len, fmt, ap);
  va_end(ap);
}

static void problem_text(char *buf, size_t len, const char *path, const problem_t *pr) {
  const char *dot = pr->field && path[0] != '\0' ? "." : "";
  const char *field = pr->field ? pr->field : "";
  if (pr->got != NULL)
    set_text(buf, len, "%s%s%s: expected %s, got %s", path, dot, field, pr->expected, pr->got);
  else
    set_text(buf, len, "%s%s%s: %s", path, dot, field, pr->expected);
}

static bool fail(problem_t *pr, const char *field, const char *expected, const char *got) {
  pr->field = field;
  pr->expected = expected;
  pr->got = got;
  return false;
}

static bool fail_type(problem_t *pr, const char *field, const char *expected, const val_t *v) {
  return fail(pr, field, expected, type_phrase(v->type));
}

/* Counts a rejected entry (channel < 0) or channel; the first one's reason is kept. */
static void skip(walk_t *w, size_t entry, long channel, const problem_t *pr) {
  hes_push_t *out = w->out;
  out->skipped++;
  if (out->skipped_reason[0] != '\0')
    return;
  char path[96];
  if (channel < 0)
    snprintf(path, sizeof(path), "%s[%zu]", w->prefix, entry);
  else
    snprintf(path, sizeof(path), "%s[%zu].channelData[%ld]", w->prefix, entry, channel);
  problem_text(out->skipped_reason, sizeof(out->skipped_reason), path, pr);
}

/* Grows *arr geometrically to hold at least `need` elements; arrays outlive the parse. */
static bool grow(void **arr, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap)
    return true;
  size_t ncap = *cap < ARRAY_MIN_CAP ? ARRAY_MIN_CAP : *cap;
  while (ncap < need) {
    if (ncap > SIZE_MAX / 2)
      return false;
    ncap *= 2;
  }
  if (ncap > SIZE_MAX / elem)
    return false;
  void *n = realloc(*arr, ncap * elem);
  if (n == NULL)
    return false;
  *arr = n;
  *cap = ncap;
  return true;
}

/* ---- checks of one entry --------------------------------------------------------------- */

/* The shape an entry has by the members it carries, valid or not; EMPTY: none known. */
static hes_push_kind_t entry_kind(const fields_t *f) {
  if (SEEN(f, FD_CHANNEL_DATA))
    return HES_PUSH_CHANNELS;
  if (SEEN(f, FD_SUCCESSFUL))
    return HES_PUSH_RELAY;
  if (SEEN(f, FD_TIMESTAMP) || SEEN(f, FD_VALUE) || SEEN(f, FD_UNIT) || SEEN(f, FD_CGCODE))
    return HES_PUSH_READINGS;
  if (SEEN(f, FD_STATUS) || SEEN(f, FD_COMM_TYPE) || SEEN(f, FD_MODULE_NEXT))
    return HES_PUSH_ARCHIVE;
  return HES_PUSH_EMPTY;
}

static bool check_dev_addr(const fields_t *f, const char **s, size_t *len, problem_t *pr) {
  const val_t *v = &f->v[FD_DEV_ADDR];
  if (!SEEN(f, FD_DEV_ADDR))
    return fail(pr, "devAddr", "missing", NULL);
  if (v->type != V_STRING)
    return fail_type(pr, "devAddr", "a string", v);
  if (v->len == 0)
    return fail(pr, "devAddr", "empty", NULL);
  if (v->len > DEV_ADDR_MAX)
    return fail(pr, "devAddr", "longer than 32 characters", NULL);
  for (size_t i = 0; i < v->len; i++)
    if (!hes_meterid_char_ok((unsigned char)v->s[i]))
      return fail(pr, "devAddr", "a character outside [0-9A-Za-z_-]", NULL);
  *s = v->s;
  *len = v->len;
  return true;
}

static bool check_timestamp(const fields_t *f, int64_t *ms, problem_t *pr) {
  const val_t *v = &f->v[FD_TIMESTAMP];
  if (!SEEN(f, FD_TIMESTAMP))
    return fail(pr, "timestamp", "missing", NULL);
  if (v->type != V_INT)
    return fail_type(pr, "timestamp", "an integer", v);
  if (v->i < 0 || v->i >= TIMESTAMP_LIMIT_MS)
    return fail(pr, "timestamp", "out of range (0 .. 7258118399999, before the year 2200)", NULL);
  *ms = v->i;
  return true;
}

/* A string member of at most max bytes without NUL; absent is "" when optional. */
static bool check_text(const fields_t *f, int fd, bool optional, size_t max, const char *toolong,
                       const char **s, problem_t *pr) {
  const char *field = field_names[fd].name;
  const val_t *v = &f->v[fd];
  if (!SEEN(f, fd)) {
    if (!optional)
      return fail(pr, field, "missing", NULL);
    *s = "";
    return true;
  }
  if (v->type != V_STRING)
    return fail_type(pr, field, "a string", v);
  if (v->len > max)
    return fail(pr, field, toolong, NULL);
  /* An embedded NUL (\u0000) would make C see a different string than the HES sent. */
  if (memchr(v->s, '\0', v->len) != NULL)
    return fail(pr, field, "contains a NUL character", NULL);
  *s = v->s;
  return true;
}

static bool check_cgcode(const fields_t *f, bool optional, int *cgcode, problem_t *pr) {
  const val_t *v = &f->v[FD_CGCODE];
  if (!SEEN(f, FD_CGCODE)) {
    if (!optional)
      return fail(pr, "cgcode", "missing", NULL);
    *cgcode = 0;
    return true;
  }
  if (v->type != V_STRING)
    return fail_type(pr, "cgcode", "a string", v);
  if (v->len == 0 || v->len > CGCODE_DIGITS)
    return fail(pr, "cgcode", "not 1 to 9 decimal digits", NULL);
  int code = 0;
  for (size_t i = 0; i < v->len; i++) {
    if (v->s[i] < '0' || v->s[i] > '9')
      return fail(pr, "cgcode", "not 1 to 9 decimal digits", NULL);
    code = code * 10 + (v->s[i] - '0');
  }
  /* 0 means "no cgcode" in the result, so the HES may not send it. */
  if (code == 0)
    return fail(pr, "cgcode", "zero", NULL);
  *cgcode = code;
  return true;
}

static bool check_unit_value(const fields_t *f, const char **unit, const char **value,
                             problem_t *pr) {
  if (!check_text(f, FD_UNIT, false, UNIT_MAX, "longer than 32 characters", unit, pr))
    return false;
  return check_text(f, FD_VALUE, false, VALUE_MAX, "longer than 64 characters", value, pr);
}

/* ---- the list walk ----------------------------------------------------------------------- */

static void walk_begin(walk_t *w) {
  w->kind = HES_PUSH_EMPTY;
  w->count = 0;
  w->ch_count = 0;
  w->ch_skipped = 0;
  w->out->entries = 0;
  w->out->skipped = 0;
  w->out->skipped_reason[0] = '\0';
}

static void walk_end(walk_t *w) {
  hes_push_t *out = w->out;
  out->kind = w->kind;
  out->count = w->count;
  switch (w->kind) {
  case HES_PUSH_READINGS:
  case HES_PUSH_CHANNELS:
    out->readings = w->p->readings;
    break;
  case HES_PUSH_RELAY:
    out->relays = w->p->relays;
    break;
  case HES_PUSH_ARCHIVE:
    out->archives = w->p->archives;
    break;
  case HES_PUSH_EMPTY:
    break;
  }
}

/* A new entry, or a repeated channelData member that replaces the earlier one. */
static void channels_begin(walk_t *w) {
  w->ch_count = 0;
  w->ch_skipped = 0;
}

static void channel_skipped(walk_t *w, size_t j, const problem_t *pr) {
  if (w->ch_skipped++ == 0) {
    w->ch_first = j;
    w->ch_problem = *pr;
  }
}

static void channel_not_object(walk_t *w, size_t j, const val_t *v) {
  problem_t pr;
  fail_type(&pr, NULL, "an object", v);
  channel_skipped(w, j, &pr);
}

/* A channel of the entry being read; its devAddr and timestamp come when the entry ends. */
static void channel_done(walk_t *w, const fields_t *cf, size_t j) {
  hes_push_reading_t r;
  problem_t pr;
  if (!check_cgcode(cf, false, &r.cgcode, &pr) || !check_unit_value(cf, &r.unit, &r.value, &pr)) {
    channel_skipped(w, j, &pr);
    return;
  }
  size_t at = w->count + w->ch_count;
  if (!grow((void **)&w->p->readings, &w->p->readings_cap, at + 1, sizeof(hes_push_reading_t))) {
    w->oom = true;
    return;
  }
  w->p->readings[at] = r;
  w->ch_count++;
}

static bool reading_entry(walk_t *w, const fields_t *f, size_t i, problem_t *pr) {
  hes_push_reading_t r;
  if (!check_dev_addr(f, &r.dev_addr, &r.dev_addr_len, pr) ||
      !check_timestamp(f, &r.timestamp_ms, pr) || !check_cgcode(f, true, &r.cgcode, pr) ||
      !check_unit_value(f, &r.unit, &r.value, pr))
    return false;
  if (!grow((void **)&w->p->readings, &w->p->readings_cap, w->count + 1,
            sizeof(hes_push_reading_t))) {
    w->oom = true;
    return false;
  }
  r.entry = (uint32_t)i;
  w->p->readings[w->count++] = r;
  return true;
}

static bool relay_entry(walk_t *w, const fields_t *f, problem_t *pr) {
  hes_push_relay_t r;
  const val_t *v = &f->v[FD_SUCCESSFUL];
  if (!check_dev_addr(f, &r.dev_addr, &r.dev_addr_len, pr))
    return false;
  if (!SEEN(f, FD_SUCCESSFUL))
    return fail(pr, "successful", "missing", NULL);
  if (v->type != V_BOOL)
    return fail_type(pr, "successful", "a boolean", v);
  r.successful = v->b;
  if (!grow((void **)&w->p->relays, &w->p->relays_cap, w->count + 1, sizeof(hes_push_relay_t))) {
    w->oom = true;
    return false;
  }
  w->p->relays[w->count++] = r;
  return true;
}

static bool archive_entry(walk_t *w, const fields_t *f, problem_t *pr) {
  hes_push_archive_t a;
  const val_t *st = &f->v[FD_STATUS];
  if (!check_dev_addr(f, &a.dev_addr, &a.dev_addr_len, pr))
    return false;
  if (!SEEN(f, FD_STATUS))
    return fail(pr, "status", "missing", NULL);
  if (st->type != V_STRING)
    return fail_type(pr, "status", "a string", st);
  if (st->len != 1 || (st->s[0] != '0' && st->s[0] != '1'))
    return fail(pr, "status", "expected \"0\" or \"1\"", NULL);
  a.enabled = st->s[0] == '1';
  if (!check_text(f, FD_COMM_TYPE, true, TEXT_MAX, "longer than 64 characters", &a.comm_type, pr) ||
      !check_text(f, FD_MODULE_NEXT, true, TEXT_MAX, "longer than 64 characters", &a.module_next,
                  pr))
    return false;
  if (!grow((void **)&w->p->archives, &w->p->archives_cap, w->count + 1,
            sizeof(hes_push_archive_t))) {
    w->oom = true;
    return false;
  }
  w->p->archives[w->count++] = a;
  return true;
}

/* A composite entry is accepted when devAddr, timestamp and channelData are; its channels,
 * already checked one by one, are then accepted or counted as skipped. */
static bool channels_entry(walk_t *w, const fields_t *f, size_t i, problem_t *pr) {
  const char *dev_addr;
  size_t dev_addr_len;
  int64_t ts;
  const val_t *cd = &f->v[FD_CHANNEL_DATA];
  if (!check_dev_addr(f, &dev_addr, &dev_addr_len, pr) || !check_timestamp(f, &ts, pr))
    return false;
  if (cd->type != V_ARRAY)
    return fail_type(pr, "channelData", "an array", cd);
  for (size_t k = 0; k < w->ch_count; k++) {
    hes_push_reading_t *r = &w->p->readings[w->count + k];
    r->dev_addr = dev_addr;
    r->dev_addr_len = dev_addr_len;
    r->timestamp_ms = ts;
    r->entry = (uint32_t)i;
  }
  w->count += w->ch_count;
  if (w->ch_skipped > 0) {
    skip(w, i, (long)w->ch_first, &w->ch_problem);
    w->out->skipped += w->ch_skipped - 1;
  }
  return true;
}

static void entry_not_object(walk_t *w, size_t i, const val_t *v) {
  problem_t pr;
  fail_type(&pr, NULL, "an object", v);
  skip(w, i, -1, &pr);
}

/* List entry i with its members (and, for a composite, its channels) read. */
static void entry_done(walk_t *w, const fields_t *f, size_t i) {
  problem_t pr;
  hes_push_kind_t k = entry_kind(f);
  if (w->kind == HES_PUSH_EMPTY) {
    /* The first recognisable entry decides what the whole list holds. */
    if (k == HES_PUSH_EMPTY) {
      fail(&pr, NULL, "not a reading, composite, relay or archive entry", NULL);
      skip(w, i, -1, &pr);
      return;
    }
    w->kind = k;
  } else if (k != HES_PUSH_EMPTY && k != w->kind) {
    /* The reason names two kinds, so it is formatted here, and only for the first. */
    if (w->out->skipped_reason[0] == '\0') {
      char what[80];
      snprintf(what, sizeof(what), "%s %s entry in a list of %s entries",
               k == HES_PUSH_ARCHIVE ? "an" : "a", kind_noun(k), kind_noun(w->kind));
      fail(&pr, NULL, what, NULL);
      skip(w, i, -1, &pr);
    } else {
      w->out->skipped++;
    }
    return;
  }
  bool ok = false;
  switch (w->kind) {
  case HES_PUSH_READINGS:
    ok = reading_entry(w, f, i, &pr);
    break;
  case HES_PUSH_CHANNELS:
    ok = channels_entry(w, f, i, &pr);
    break;
  case HES_PUSH_RELAY:
    ok = relay_entry(w, f, &pr);
    break;
  case HES_PUSH_ARCHIVE:
    ok = archive_entry(w, f, &pr);
    break;
  case HES_PUSH_EMPTY:
    break;
  }
  if (w->oom)
    return;
  if (ok)
    w->out->entries++;
  else
    skip(w, i, -1, &pr);
}

/* ---- the top level ---------------------------------------------------------------------- */

/* The members of {"planId": "...", "data": {"status": "..", "list": [...]}}, last one wins. */
typedef struct {
  val_t root, plan_id, data, status, list;
  bool plan_seen, data_seen, status_seen, list_seen;
} top_t;

static bool check_plan_id(const top_t *t, char *plan_id, problem_t *pr) {
  const val_t *v = &t->plan_id;
  if (!t->plan_seen)
    return fail(pr, "planId", "missing", NULL);
  if (v->type != V_STRING)
    return fail_type(pr, "planId", "a string", v);
  if (v->len == 0)
    return fail(pr, "planId", "empty", NULL);
  if (v->len >= HES_PLAN_ID_MAX)
    return fail(pr, "planId", "longer than 63 characters", NULL);
  /* It names an MQTT topic level and shows up in logs: no wildcards, separators or
   * control characters. */
  for (size_t i = 0; i < v->len; i++) {
    unsigned char c = (unsigned char)v->s[i];
    if (c < 0x20 || c > 0x7e || c == '/' || c == '+' || c == '#')
      return fail(pr, "planId", "a character that is not printable ASCII, or one of / + #", NULL);
  }
  memcpy(plan_id, v->s, v->len);
  plan_id[v->len] = '\0';
  return true;
}

static bool check_status(const top_t *t, hes_push_status_t *st, problem_t *pr) {
  const val_t *v = &t->status;
  if (!t->status_seen)
    return fail(pr, "data.status", "missing", NULL);
  if (v->type != V_STRING)
    return fail_type(pr, "data.status", "a string", v);
  if (v->len != 2 || v->s[0] != '0' || v->s[1] < '0' || v->s[1] > '2')
    return fail(pr, "data.status", "expected \"00\", \"01\" or \"02\"", NULL);
  *st = v->s[1] == '0' ? HES_PUSH_SUCCESS : v->s[1] == '1' ? HES_PUSH_PARTIAL : HES_PUSH_FAILURE;
  return true;
}

static bool check_top(const top_t *t, hes_push_t *out, problem_t *pr) {
  if (t->root.type != V_OBJECT)
    return fail_type(pr, "message", "an object", &t->root);
  if (!check_plan_id(t, out->plan_id, pr))
    return false;
  if (!t->data_seen)
    return fail(pr, "data", "missing", NULL);
  if (t->data.type != V_OBJECT)
    return fail_type(pr, "data", "an object", &t->data);
  if (!check_status(t, &out->status, pr))
    return false;
  if (t->list_seen && t->list.type != V_ARRAY)
    return fail_type(pr, "data.list", "an array", &t->list);
  return true;
}

/* ---- the scanner --------------------------------------------------------------------------- */

typedef enum { SCAN_SYNTAX = 1, SCAN_TRUNCATED, SCAN_DEPTH, SCAN_TRAILING, SCAN_NOMEM } scan_err_t;

/* Decoded strings go to text + text_len. A string's decoded bytes and NUL never outnumber
 * its bytes in the message, quotes included, so text_len <= pos always holds and a buffer
 * of the message's length + 1 never overflows. */
typedef struct {
  const unsigned char *s;
  size_t pos, end;
  char *text;
  size_t text_len;
  walk_t *w;
  scan_err_t err;
  size_t err_at;
  const char *err_what;
} scan_t;

typedef bool (*member_fn)(scan_t *sc, int depth, const char *name, size_t len, void *ctx);
typedef bool (*element_fn)(scan_t *sc, int depth, size_t index, void *ctx);

static bool scan_value(scan_t *sc, int depth, val_t *v, bool keep);

static bool error_at(scan_t *sc, scan_err_t err, size_t at, const char *what) {
  sc->err = err;
  sc->err_at = at;
  sc->err_what = what;
  return false;
}

static bool unexpected(scan_t *sc, size_t at, const char *what) {
  return error_at(sc, SCAN_SYNTAX, at, what);
}

static bool truncated(scan_t *sc) {
  return error_at(sc, SCAN_TRUNCATED, sc->end, NULL);
}

static bool out_of_memory(scan_t *sc) {
  return error_at(sc, SCAN_NOMEM, sc->pos, NULL);
}

/* Pushes come without white space, so the first byte almost always ends it: every JSON
 * white space byte is below '!', and that one comparison is all most calls do. */
static inline void skip_ws(scan_t *sc) {
  while (sc->pos < sc->end) {
    unsigned char c = sc->s[sc->pos];
    if (c > ' ' || (c != ' ' && c != '\t' && c != '\n' && c != '\r'))
      return;
    sc->pos++;
  }
}

#define BYTES_01 UINT64_C(0x0101010101010101)
#define BYTES_80 UINT64_C(0x8080808080808080)

/* The first byte at or after i that ends a run of plain string bytes: a quote, a backslash,
 * a control character (below 0x20), or end. Eight bytes at a time: a word's byte is flagged
 * when it is zero after XOR with '"' or '\\', or below 0x20 ((x - 0x20) borrows into the
 * high bit of a byte that had it clear); bytes of 0x80 and above never are. A flagged word
 * is finished byte by byte, so the borrow's false flags above a real one do not matter. */
static size_t string_run(const unsigned char *s, size_t i, size_t end) {
  while (end - i >= 8) {
    uint64_t w;
    memcpy(&w, s + i, sizeof(w));
    uint64_t q = w ^ (BYTES_01 * '"');
    uint64_t b = w ^ (BYTES_01 * '\\');
    uint64_t hit = ((q - BYTES_01) & ~q) | ((b - BYTES_01) & ~b) | ((w - BYTES_01 * 0x20) & ~w);
    if ((hit & BYTES_80) != 0)
      break;
    i += 8;
  }
  while (i < end && s[i] != '"' && s[i] != '\\' && s[i] >= 0x20)
    i++;
  return i;
}

/* Moves to the first byte of a value nested `depth` levels below the root. */
static bool value_start(scan_t *sc, int depth) {
  skip_ws(sc);
  if (sc->pos == sc->end)
    return truncated(sc);
  if (depth > NEST_MAX)
    return error_at(sc, SCAN_DEPTH, sc->pos, NULL);
  return true;
}

static int hex_digit(unsigned char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* The four hex digits at i. */
static bool scan_hex4(scan_t *sc, size_t i, unsigned *cp) {
  unsigned v = 0;
  for (size_t k = 0; k < 4; k++) {
    if (i + k == sc->end)
      return truncated(sc);
    int d = hex_digit(sc->s[i + k]);
    if (d < 0)
      return unexpected(sc, i + k, "invalid string sequence");
    v = v << 4 | (unsigned)d;
  }
  *cp = v;
  return true;
}

static void put_utf8(char **o, unsigned cp) {
  if (o == NULL)
    return;
  unsigned char *p = (unsigned char *)*o;
  if (cp < 0x80) {
    *p++ = (unsigned char)cp;
  } else if (cp < 0x800) {
    *p++ = (unsigned char)(0xc0 | cp >> 6);
    *p++ = (unsigned char)(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    *p++ = (unsigned char)(0xe0 | cp >> 12);
    *p++ = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
    *p++ = (unsigned char)(0x80 | (cp & 0x3f));
  } else {
    *p++ = (unsigned char)(0xf0 | cp >> 18);
    *p++ = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
    *p++ = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
    *p++ = (unsigned char)(0x80 | (cp & 0x3f));
  }
  *o = (char *)p;
}

#define IS_HIGH_SURROGATE(c) ((c) >= 0xd800 && (c) <= 0xdbff)
#define IS_LOW_SURROGATE(c)  ((c) >= 0xdc00 && (c) <= 0xdfff)

/* \uXXXX at *ip (the backslash), with a surrogate pair taken whole; o: where the decoded
 * bytes go, NULL to check only. */
static bool scan_unicode(scan_t *sc, size_t *ip, char **o) {
  size_t i = *ip + 2;
  unsigned cp;
  if (!scan_hex4(sc, i, &cp))
    return false;
  i += 4;
  while (IS_HIGH_SURROGATE(cp)) {
    if (i + 1 >= sc->end || sc->s[i] != '\\' || sc->s[i + 1] != 'u') {
      cp = 0xfffd;
      break;
    }
    unsigned lo;
    if (!scan_hex4(sc, i + 2, &lo))
      return false;
    i += 6;
    if (IS_LOW_SURROGATE(lo)) {
      cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
      break;
    }
    /* as json-c: the lone high one becomes U+FFFD, the next escape counts on its own */
    put_utf8(o, 0xfffd);
    cp = lo;
  }
  if (IS_LOW_SURROGATE(cp))
    cp = 0xfffd;
  put_utf8(o, cp);
  *ip = i;
  return true;
}

/* The escape at *ip (the backslash). */
static bool scan_escape(scan_t *sc, size_t *ip, char **o) {
  size_t i = *ip + 1;
  if (i == sc->end)
    return truncated(sc);
  char c;
  switch (sc->s[i]) {
  case '"':
  case '\\':
  case '/':
    c = (char)sc->s[i];
    break;
  case 'b':
    c = '\b';
    break;
  case 'f':
    c = '\f';
    break;
  case 'n':
    c = '\n';
    break;
  case 'r':
    c = '\r';
    break;
  case 't':
    c = '\t';
    break;
  case 'u':
    return scan_unicode(sc, ip, o);
  default:
    return unexpected(sc, i, "invalid string sequence");
  }
  if (o != NULL)
    *(*o)++ = c;
  *ip = i + 1;
  return true;
}

/* The string at pos (its opening quote). keep: decode it into the text buffer, NUL-terminated;
 * otherwise only check it (v->s is then NULL). */
static bool scan_string(scan_t *sc, val_t *v, bool keep) {
  const unsigned char *s = sc->s;
  size_t i = sc->pos + 1;
  char *start = keep ? sc->text + sc->text_len : NULL;
  char *o = start;
  for (;;) {
    size_t run = i;
    i = string_run(s, i, sc->end);
    if (keep) {
      memcpy(o, s + run, i - run);
      o += i - run;
    }
    if (i == sc->end)
      return truncated(sc);
    if (s[i] == '"')
      break;
    if (s[i] != '\\')
      return unexpected(sc, i, "control character in a string");
    if (!scan_escape(sc, &i, keep ? &o : NULL))
      return false;
  }
  sc->pos = i + 1;
  v->type = V_STRING;
  v->s = start;
  v->len = keep ? (size_t)(o - start) : 0;
  if (keep) {
    *o = '\0';
    sc->text_len += v->len + 1;
  }
  return true;
}

/* A member name at pos. Names are matched, never kept: one without escapes is used where it
 * stands in the message; one with escapes is decoded into the text buffer's free space,
 * where it lasts until the next string is kept, and ends at its first NUL as in json-c
 * (which kept names as C strings). */
static bool scan_name(scan_t *sc, const char **name, size_t *len) {
  const unsigned char *s = sc->s;
  size_t i = string_run(s, sc->pos + 1, sc->end);
  if (i < sc->end && s[i] == '"') {
    *name = (const char *)s + sc->pos + 1;
    *len = i - sc->pos - 1;
    sc->pos = i + 1;
    return true;
  }
  size_t mark = sc->text_len;
  val_t v;
  if (!scan_string(sc, &v, true))
    return false;
  sc->text_len = mark;
  *name = v.s;
  *len = strlen(v.s);
  return true;
}

/* A literal: json-c's strict spelling; `what` names a mismatch. A literal that ends the
 * message is truncated, as json-c waited for the byte after it. */
static bool scan_word(scan_t *sc, const char *word, const char *what) {
  size_t n = strlen(word);
  for (size_t k = 0; k < n; k++) {
    if (sc->pos + k == sc->end)
      return truncated(sc);
    if (sc->s[sc->pos + k] != (unsigned char)word[k])
      return unexpected(sc, sc->pos + k, what);
  }
  sc->pos += n;
  if (sc->pos == sc->end)
    return truncated(sc);
  return true;
}

static bool is_digit(unsigned char c) {
  return c >= '0' && c <= '9';
}

/* A byte json-c would have taken as part of a number. */
static bool is_number_byte(unsigned char c) {
  return is_digit(c) || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-';
}

static size_t skip_digits(const unsigned char *s, size_t i, size_t end) {
  while (i < end && is_digit(s[i]))
    i++;
  return i;
}

/* A number per RFC 8259: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, or -Infinity.
 * A bad one is reported after all the bytes json-c would have read as part of it, so "01"
 * fails where it did before. */
static bool scan_number(scan_t *sc, val_t *v) {
  const unsigned char *s = sc->s;
  size_t end = sc->end, i = sc->pos;
  bool neg = s[i] == '-';
  if (neg) {
    i++;
    if (i < end && s[i] == 'I') {
      sc->pos = i;
      v->type = V_DOUBLE;
      return scan_word(sc, "Infinity", "unexpected character");
    }
  }
  size_t digits = i;
  i = skip_digits(s, i, end);
  size_t ndigits = i - digits;
  bool ok = ndigits > 0 && !(ndigits > 1 && s[digits] == '0');
  bool is_double = false;
  if (ok && i < end && s[i] == '.') {
    is_double = true;
    size_t frac = i + 1;
    i = skip_digits(s, frac, end);
    ok = i > frac;
  }
  if (ok && i < end && (s[i] == 'e' || s[i] == 'E')) {
    is_double = true;
    i++;
    if (i < end && (s[i] == '+' || s[i] == '-'))
      i++;
    size_t exp = i;
    i = skip_digits(s, exp, end);
    ok = i > exp;
  }
  size_t stop = i;
  while (stop < end && is_number_byte(s[stop]))
    stop++;
  if (stop == end)
    return truncated(sc);
  if (!ok || stop != i)
    return unexpected(sc, stop, "number expected");
  sc->pos = i;
  if (is_double) {
    v->type = V_DOUBLE;
    return true;
  }
  /* Saturated like json-c: the timestamp check rejects either end. */
  int64_t x = 0;
  for (size_t k = digits; k < digits + ndigits; k++) {
    int d = s[k] - '0';
    if (x > (INT64_MAX - d) / 10) {
      x = neg ? INT64_MIN : INT64_MAX;
      neg = false;
      break;
    }
    x = x * 10 + d;
  }
  v->type = V_INT;
  v->i = neg ? -x : x;
  return true;
}

/* {"name": value, ...} at pos; member() reads each value (from its first byte) and must
 * look at the name before it keeps a string (see scan_name). */
static bool scan_object(scan_t *sc, int depth, member_fn member, void *ctx) {
  sc->pos++;
  skip_ws(sc);
  if (sc->pos == sc->end)
    return truncated(sc);
  if (sc->s[sc->pos] == '}') {
    sc->pos++;
    return true;
  }
  for (;;) {
    if (sc->s[sc->pos] != '"')
      return unexpected(sc, sc->pos, "quoted object property name expected");
    const char *name;
    size_t len;
    if (!scan_name(sc, &name, &len))
      return false;
    skip_ws(sc);
    if (sc->pos == sc->end)
      return truncated(sc);
    if (sc->s[sc->pos] != ':')
      return unexpected(sc, sc->pos, "object property name separator ':' expected");
    sc->pos++;
    if (!value_start(sc, depth + 1) || !member(sc, depth + 1, name, len, ctx))
      return false;
    skip_ws(sc);
    if (sc->pos == sc->end)
      return truncated(sc);
    unsigned char c = sc->s[sc->pos];
    if (c == '}') {
      sc->pos++;
      return true;
    }
    if (c != ',')
      return unexpected(sc, sc->pos, "object value separator ',' expected");
    sc->pos++;
    skip_ws(sc);
    if (sc->pos == sc->end)
      return truncated(sc);
    if (sc->s[sc->pos] == '}')
      return unexpected(sc, sc->pos, "unexpected character");
  }
}

/* [value, ...] at pos; element() reads each value (from its first byte). */
static bool scan_array(scan_t *sc, int depth, element_fn element, void *ctx) {
  sc->pos++;
  skip_ws(sc);
  if (sc->pos == sc->end)
    return truncated(sc);
  if (sc->s[sc->pos] == ']') {
    sc->pos++;
    return true;
  }
  for (size_t i = 0;; i++) {
    if (!value_start(sc, depth + 1) || !element(sc, depth + 1, i, ctx))
      return false;
    skip_ws(sc);
    if (sc->pos == sc->end)
      return truncated(sc);
    unsigned char c = sc->s[sc->pos];
    if (c == ']') {
      sc->pos++;
      return true;
    }
    if (c != ',')
      return unexpected(sc, sc->pos, "array value separator ',' expected");
    sc->pos++;
    skip_ws(sc);
    if (sc->pos == sc->end)
      return truncated(sc);
    if (sc->s[sc->pos] == ']')
      return unexpected(sc, sc->pos, "unexpected character");
  }
}

static bool skip_member(scan_t *sc, int depth, const char *name, size_t len, void *ctx) {
  (void)name;
  (void)len;
  (void)ctx;
  val_t v;
  return scan_value(sc, depth, &v, false);
}

static bool skip_element(scan_t *sc, int depth, size_t index, void *ctx) {
  (void)index;
  (void)ctx;
  val_t v;
  return scan_value(sc, depth, &v, false);
}

/* Any value at pos, checked and skipped; keep: a string is decoded into the text buffer. */
static bool scan_value(scan_t *sc, int depth, val_t *v, bool keep) {
  unsigned char c = sc->s[sc->pos];
  switch (c) {
  case '{':
    v->type = V_OBJECT;
    return scan_object(sc, depth, skip_member, NULL);
  case '[':
    v->type = V_ARRAY;
    return scan_array(sc, depth, skip_element, NULL);
  case '"':
    return scan_string(sc, v, keep);
  case 't':
    v->type = V_BOOL;
    v->b = true;
    return scan_word(sc, "true", "boolean expected");
  case 'f':
    v->type = V_BOOL;
    v->b = false;
    return scan_word(sc, "false", "boolean expected");
  case 'T':
  case 'F':
    return unexpected(sc, sc->pos, "boolean expected");
  case 'n':
    v->type = V_NULL;
    return scan_word(sc, "null", "null expected");
  case 'N':
    v->type = V_DOUBLE;
    return scan_word(sc, "NaN", "null expected");
  case 'I':
    v->type = V_DOUBLE;
    return scan_word(sc, "Infinity", "unexpected character");
  default:
    break;
  }
  if (c == '-' || is_digit(c))
    return scan_number(sc, v);
  return unexpected(sc, sc->pos, "unexpected character");
}

/* ---- the push's structure: root, data, list, entry, channelData, channel ----------------------
 */

static bool channel_member(scan_t *sc, int depth, const char *name, size_t len, void *ctx) {
  fields_t *cf = ctx;
  int fd = field_of(name, len);
  if (fd != FD_CGCODE && fd != FD_UNIT && fd != FD_VALUE) {
    val_t v;
    return scan_value(sc, depth, &v, false);
  }
  cf->seen |= 1u << fd;
  return scan_value(sc, depth, &cf->v[fd], true);
}

static bool channel_element(scan_t *sc, int depth, size_t j, void *ctx) {
  walk_t *w = ctx;
  if (sc->s[sc->pos] != '{') {
    val_t v;
    if (!scan_value(sc, depth, &v, false))
      return false;
    channel_not_object(w, j, &v);
    return true;
  }
  fields_t cf;
  cf.seen = 0;
  if (!scan_object(sc, depth, channel_member, &cf))
    return false;
  channel_done(w, &cf, j);
  return w->oom ? out_of_memory(sc) : true;
}

typedef struct {
  walk_t *w;
  fields_t f;
} entry_t;

static bool entry_member(scan_t *sc, int depth, const char *name, size_t len, void *ctx) {
  entry_t *e = ctx;
  int fd = field_of(name, len);
  if (fd < 0) {
    val_t v;
    return scan_value(sc, depth, &v, false);
  }
  e->f.seen |= 1u << fd;
  val_t *v = &e->f.v[fd];
  if (fd != FD_CHANNEL_DATA)
    return scan_value(sc, depth, v, true);
  channels_begin(e->w); /* a repeated channelData replaces the earlier one */
  if (sc->s[sc->pos] != '[')
    return scan_value(sc, depth, v, false);
  v->type = V_ARRAY;
  return scan_array(sc, depth, channel_element, e->w);
}

static bool list_element(scan_t *sc, int depth, size_t i, void *ctx) {
  walk_t *w = ctx;
  if (sc->s[sc->pos] != '{') {
    val_t v;
    if (!scan_value(sc, depth, &v, false))
      return false;
    entry_not_object(w, i, &v);
    return true;
  }
  entry_t e;
  e.w = w;
  e.f.seen = 0;
  channels_begin(w);
  if (!scan_object(sc, depth, entry_member, &e))
    return false;
  entry_done(w, &e.f, i);
  return w->oom ? out_of_memory(sc) : true;
}

static bool data_member(scan_t *sc, int depth, const char *name, size_t len, void *ctx) {
  top_t *t = ctx;
  if (name_is(name, len, "status")) {
    t->status_seen = true;
    return scan_value(sc, depth, &t->status, true);
  }
  if (!name_is(name, len, "list")) {
    val_t v;
    return scan_value(sc, depth, &v, false);
  }
  t->list_seen = true;
  walk_begin(sc->w); /* a repeated list replaces the earlier one */
  if (sc->s[sc->pos] != '[')
    return scan_value(sc, depth, &t->list, false);
  t->list.type = V_ARRAY;
  return scan_array(sc, depth, list_element, sc->w);
}

static bool root_member(scan_t *sc, int depth, const char *name, size_t len, void *ctx) {
  top_t *t = ctx;
  if (name_is(name, len, "planId")) {
    t->plan_seen = true;
    return scan_value(sc, depth, &t->plan_id, true);
  }
  if (!name_is(name, len, "data")) {
    val_t v;
    return scan_value(sc, depth, &v, false);
  }
  /* a repeated data replaces the earlier one, with its status and list */
  t->data_seen = true;
  t->status_seen = false;
  t->list_seen = false;
  walk_begin(sc->w);
  if (sc->s[sc->pos] != '{')
    return scan_value(sc, depth, &t->data, false);
  t->data.type = V_OBJECT;
  return scan_object(sc, depth, data_member, t);
}

/* The whole message: one value, then nothing but whitespace. */
static bool scan_push(scan_t *sc, top_t *t) {
  if (!value_start(sc, 0))
    return false;
  if (sc->s[sc->pos] == '{') {
    t->root.type = V_OBJECT;
    if (!scan_object(sc, 0, root_member, t))
      return false;
  } else if (!scan_value(sc, 0, &t->root, false)) {
    return false;
  }
  skip_ws(sc);
  if (sc->pos == sc->end)
    return true;
  /* json-c stopped at a NUL byte and called what came before a complete document */
  if (sc->s[sc->pos] == '\0')
    return error_at(sc, SCAN_TRAILING, sc->pos, NULL);
  return unexpected(sc, sc->pos, "unexpected character");
}

static void scan_error_text(const scan_t *sc, char *err, size_t errlen) {
  switch (sc->err) {
  case SCAN_TRUNCATED:
    set_text(err, errlen, "truncated JSON: the message ends after %zu bytes inside a value",
             sc->end);
    break;
  case SCAN_DEPTH:
    set_text(err, errlen, "invalid JSON at byte %zu: nested deeper than %d levels", sc->err_at,
             NEST_MAX);
    break;
  case SCAN_TRAILING:
    set_text(err, errlen, "invalid JSON at byte %zu: trailing data after the JSON value",
             sc->err_at);
    break;
  case SCAN_NOMEM:
    set_text(err, errlen, "out of memory");
    break;
  case SCAN_SYNTAX:
    set_text(err, errlen, "invalid JSON at byte %zu: %s", sc->err_at, sc->err_what);
    break;
  }
}

/* Offset of the first byte that is not well-formed UTF-8 (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF), or n. Pushes are ASCII, so eight bytes go at a time. */
static size_t utf8_invalid_at(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (n - i >= 8) {
      uint64_t w;
      memcpy(&w, s + i, sizeof(w));
      if ((w & UINT64_C(0x8080808080808080)) == 0) {
        i += 8;
        continue;
      }
    }
    unsigned char c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t need;
    unsigned char lo = 0x80, hi = 0xbf; /* the range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) {
      need = 1;
    } else if (c >= 0xe0 && c <= 0xef) {
      need = 2;
      if (c == 0xe0)
        lo = 0xa0;
      else if (c == 0xed)
        hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      need = 3;
      if (c == 0xf0)
        lo = 0x90;
      else if (c == 0xf4)
        hi = 0x8f;
    } else {
      return i;
    }
    if (n - i <= need || s[i + 1] < lo || s[i + 1] > hi)
      return i;
    for (size_t k = 2; k <= need; k++)
      if ((s[i + k] & 0xc0) != 0x80)
        return i;
    i += need + 1;
  }
  return n;
}

hes_push_parser_t *hes_push_parser_new(size_t max_bytes) {
  hes_push_parser_t *p = calloc(1, sizeof(*p));
  if (p == NULL)
    return NULL;
  if (max_bytes == 0)
    max_bytes = HES_PUSH_DEFAULT_MAX_BYTES;
  /* The limit json-c's int length set before; byte offsets in reasons stay below it. */
  if (max_bytes > INT_MAX)
    max_bytes = INT_MAX;
  p->max_bytes = max_bytes;
  return p;
}

static void release_tree(hes_push_parser_t *p) {
  if (p->root != NULL) {
    json_object_put(p->root);
    p->root = NULL;
  }
}

void hes_push_parser_free(hes_push_parser_t *p) {
  if (p == NULL)
    return;
  release_tree(p);
  free(p->text);
  free(p->readings);
  free(p->relays);
  free(p->archives);
  free(p);
}

/* On failure: no result and no tree survive. */
static hes_push_result_t failed(hes_push_parser_t *p, hes_push_t *out, hes_push_result_t r) {
  if (p != NULL)
    release_tree(p);
  if (out != NULL)
    memset(out, 0, sizeof(*out));
  return r;
}

hes_push_result_t hes_push_parse(hes_push_parser_t *p, const void *buf, size_t len, hes_push_t *out,
                                 char *err, size_t errlen) {
  if (err != NULL && errlen > 0)
    err[0] = '\0';
  if (out != NULL)
    memset(out, 0, sizeof(*out));
  if (p == NULL || out == NULL || (buf == NULL && len > 0)) {
    set_text(err, errlen, "invalid argument");
    return failed(p, out, HES_PUSH_EINVAL);
  }
  release_tree(p);
  if (len > p->max_bytes) {
    set_text(err, errlen, "message of %zu bytes exceeds the limit of %zu", len, p->max_bytes);
    return failed(p, out, HES_PUSH_ETOOBIG);
  }
  if (len == 0) {
    set_text(err, errlen, "empty message");
    return failed(p, out, HES_PUSH_ESYNTAX);
  }

  size_t bad = utf8_invalid_at(buf, len);
  if (bad < len) {
    set_text(err, errlen, "invalid JSON at byte %zu: invalid UTF-8", bad);
    return failed(p, out, HES_PUSH_ESYNTAX);
  }

  /* Room for every string of the message, decoded: the buffer only ever grows. */
  if (!grow((void **)&p->text, &p->text_cap, len + 1, 1)) {
    set_text(err, errlen, "out of memory");
    return failed(p, out, HES_PUSH_ENOMEM);
  }
  walk_t w = {.p = p, .out = out, .prefix = "data.list"};
  walk_begin(&w);
  scan_t sc = {.s = buf, .end = len, .text = p->text, .w = &w};
  top_t top;
  memset(&top, 0, sizeof(top));
  if (!scan_push(&sc, &top)) {
    scan_error_text(&sc, err, errlen);
    return failed(p, out, sc.err == SCAN_NOMEM ? HES_PUSH_ENOMEM : HES_PUSH_ESYNTAX);
  }

  problem_t pr;
  if (!check_top(&top, out, &pr)) {
    problem_text(err, errlen, "", &pr);
    return failed(p, out, HES_PUSH_ESHAPE);
  }
  walk_end(&w);
  return HES_PUSH_OK;
}

/* ---- history lists: a json-c tree ------------------------------------------------------ */

static void val_of(json_object *o, val_t *v) {
  switch (json_object_get_type(o)) {
  case json_type_null:
    v->type = V_NULL;
    break;
  case json_type_boolean:
    v->type = V_BOOL;
    v->b = json_object_get_boolean(o) != 0;
    break;
  case json_type_double:
    v->type = V_DOUBLE;
    break;
  case json_type_int:
    /* Beyond INT64_MAX json-c holds a uint64 and get_int64 saturates: still out of range. */
    v->type = V_INT;
    v->i = json_object_get_int64(o);
    break;
  case json_type_object:
    v->type = V_OBJECT;
    break;
  case json_type_array:
    v->type = V_ARRAY;
    break;
  case json_type_string:
    v->type = V_STRING;
    v->s = json_object_get_string(o);
    v->len = (size_t)json_object_get_string_len(o);
    break;
  }
}

/* The known members of obj; returns its channelData member (or NULL). */
static json_object *gather(json_object *obj, fields_t *f) {
  json_object *channels = NULL;
  f->seen = 0;
  json_object_object_foreach(obj, key, val) {
    int fd = field_of(key, strlen(key));
    if (fd < 0)
      continue;
    f->seen |= 1u << fd;
    val_of(val, &f->v[fd]);
    if (fd == FD_CHANNEL_DATA)
      channels = val;
  }
  return channels;
}

static hes_push_result_t walk_tree(walk_t *w, json_object *list) {
  size_t n = json_object_array_length(list);
  /* Entries this long are impossible within max_bytes (INT_MAX), but entry is 32 bits. */
  if (n > UINT32_MAX)
    n = UINT32_MAX;
  for (size_t i = 0; i < n; i++) {
    json_object *e = json_object_array_get_idx(list, i);
    val_t v;
    val_of(e, &v);
    if (v.type != V_OBJECT) {
      entry_not_object(w, i, &v);
      continue;
    }
    fields_t f;
    json_object *channels = gather(e, &f);
    channels_begin(w);
    if (json_object_is_type(channels, json_type_array)) {
      size_t nch = json_object_array_length(channels);
      for (size_t j = 0; j < nch && !w->oom; j++) {
        json_object *ch = json_object_array_get_idx(channels, j);
        val_of(ch, &v);
        if (v.type != V_OBJECT) {
          channel_not_object(w, j, &v);
          continue;
        }
        fields_t cf;
        gather(ch, &cf);
        channel_done(w, &cf, j);
      }
    }
    if (!w->oom)
      entry_done(w, &f, i);
    if (w->oom)
      return HES_PUSH_ENOMEM;
  }
  walk_end(w);
  return HES_PUSH_OK;
}

hes_push_result_t hes_push_parse_list(hes_push_parser_t *p, struct json_object *list,
                                      hes_push_t *out, char *err, size_t errlen) {
  if (err != NULL && errlen > 0)
    err[0] = '\0';
  if (out != NULL)
    memset(out, 0, sizeof(*out));
  if (p == NULL || out == NULL) {
    set_text(err, errlen, "invalid argument");
    return failed(p, out, HES_PUSH_EINVAL);
  }
  if (!json_object_is_type(list, json_type_array)) {
    val_t v;
    val_of(list, &v);
    set_text(err, errlen, "list: expected an array, got %s", type_phrase(v.type));
    return failed(p, out, HES_PUSH_ESHAPE);
  }
  /* The parser holds its own reference, taken before the previous tree goes: the list
   * then outlives its parent even when it came from that very tree. */
  json_object_get(list);
  release_tree(p);
  p->root = list;
  out->status = HES_PUSH_SUCCESS;
  walk_t w = {.p = p, .out = out, .prefix = "list"};
  walk_begin(&w);
  hes_push_result_t r = walk_tree(&w, list);
  if (r != HES_PUSH_OK) {
    set_text(err, errlen, "out of memory");
    return failed(p, out, r);
  }
  return HES_PUSH_OK;
}

const char *hes_push_result_string(hes_push_result_t r) {
  switch (r) {
  case HES_PUSH_OK:
    return "ok";
  case HES_PUSH_ETOOBIG:
    return "message too big";
  case HES_PUSH_ESYNTAX:
    return "not valid JSON";
  case HES_PUSH_ESHAPE:
    return "not a push message";
  case HES_PUSH_ENOMEM:
    return "out of memory";
  case HES_PUSH_EINVAL:
    return "invalid argument";
  }
  return "unknown result";
}
