/* push: turns the HES's MQTT push messages (seed 3.2-3.9) and the "list" of history answers
 * into hes_push_t, strictly and without copying (see push.h for the contract).
 *
 * Cost model: json-c allocates the tree; this file then walks every list entry once with
 * json_object_object_foreach, keeps pointers into json-c's strings and appends to arrays
 * that live as long as the parser. Reasons for rejections are formatted only when needed
 * (once per message for skipped entries), never per accepted reading. */
#include "config.h"

#include "push.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

/* A push is 6 levels deep (root, data, list, entry, channelData, channel); the margin is
 * for unknown extra members. The tokener rejects a message with more than PUSH_DEPTH - 1
 * nested containers itself, so a depth bomb costs neither memory nor stack. */
#define PUSH_DEPTH         10
#define DEV_ADDR_MAX       32
#define VALUE_MAX          64
#define UNIT_MAX           32
#define TEXT_MAX           64                     /* commType, moduleNext */
#define CGCODE_DIGITS      9                      /* fits an int without overflow checks */
#define TIMESTAMP_LIMIT_MS INT64_C(7258118400000) /* 2200-01-01T00:00:00Z, exclusive */
#define ARRAY_MIN_CAP      64

struct hes_push_parser {
  json_tokener *tok;
  json_object *root; /* the latest tree: the latest result's strings point into it */
  size_t max_bytes;
  hes_push_reading_t *readings;
  size_t readings_cap;
  hes_push_relay_t *relays;
  size_t relays_cap;
  hes_push_archive_t *archives;
  size_t archives_cap;
};

/* The members of one list entry or channel we know, gathered in one walk. A JSON null
 * member is a NULL json_object, so `seen` tells "null" from "absent". */
enum {
  F_DEV_ADDR = 1u << 0,
  F_TIMESTAMP = 1u << 1,
  F_CGCODE = 1u << 2,
  F_UNIT = 1u << 3,
  F_VALUE = 1u << 4,
  F_CHANNEL_DATA = 1u << 5,
  F_SUCCESSFUL = 1u << 6,
  F_STATUS = 1u << 7,
  F_COMM_TYPE = 1u << 8,
  F_MODULE_NEXT = 1u << 9,
};

typedef struct {
  unsigned seen;
  json_object *dev_addr, *timestamp, *cgcode, *unit, *value, *channel_data, *successful, *status,
      *comm_type, *module_next;
} fields_t;

/* What was wrong with one field; turned into text only when somebody will read it. */
typedef struct {
  const char *field;    /* NULL: the entry (or channel) itself */
  const char *expected; /* "an integer", or a whole complaint when got is NULL */
  const char *got;
} problem_t;

/* The state of one list walk. */
typedef struct {
  hes_push_parser_t *p;
  hes_push_t *out;
  const char *prefix; /* "data.list" or "list" */
  hes_push_kind_t kind;
  size_t count;
} walk_t;

static const char *type_phrase(json_object *o) {
  switch (json_object_get_type(o)) {
  case json_type_null:
    return "null";
  case json_type_boolean:
    return "a boolean";
  case json_type_double:
    return "a floating-point number";
  case json_type_int:
    return "an integer";
  case json_type_object:
    return "an object";
  case json_type_array:
    return "an array";
  case json_type_string:
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

static bool fail_type(problem_t *pr, const char *field, const char *expected, json_object *o) {
  return fail(pr, field, expected, type_phrase(o));
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

static void gather(json_object *obj, fields_t *f) {
  memset(f, 0, sizeof(*f));
  /* One pass over the members; the first letter keeps this to one strcmp per known key. */
  json_object_object_foreach(obj, key, val) {
    switch (key[0]) {
    case 'd':
      if (strcmp(key, "devAddr") == 0) {
        f->dev_addr = val;
        f->seen |= F_DEV_ADDR;
      }
      break;
    case 't':
      if (strcmp(key, "timestamp") == 0) {
        f->timestamp = val;
        f->seen |= F_TIMESTAMP;
      }
      break;
    case 'c':
      if (strcmp(key, "cgcode") == 0) {
        f->cgcode = val;
        f->seen |= F_CGCODE;
      } else if (strcmp(key, "channelData") == 0) {
        f->channel_data = val;
        f->seen |= F_CHANNEL_DATA;
      } else if (strcmp(key, "commType") == 0) {
        f->comm_type = val;
        f->seen |= F_COMM_TYPE;
      }
      break;
    case 'u':
      if (strcmp(key, "unit") == 0) {
        f->unit = val;
        f->seen |= F_UNIT;
      }
      break;
    case 'v':
      if (strcmp(key, "value") == 0) {
        f->value = val;
        f->seen |= F_VALUE;
      }
      break;
    case 's':
      if (strcmp(key, "successful") == 0) {
        f->successful = val;
        f->seen |= F_SUCCESSFUL;
      } else if (strcmp(key, "status") == 0) {
        f->status = val;
        f->seen |= F_STATUS;
      }
      break;
    case 'm':
      if (strcmp(key, "moduleNext") == 0) {
        f->module_next = val;
        f->seen |= F_MODULE_NEXT;
      }
      break;
    default:
      break;
    }
  }
}

/* The shape an entry has by the members it carries, valid or not; EMPTY: none known. */
static hes_push_kind_t entry_kind(const fields_t *f) {
  if (f->seen & F_CHANNEL_DATA)
    return HES_PUSH_CHANNELS;
  if (f->seen & F_SUCCESSFUL)
    return HES_PUSH_RELAY;
  if (f->seen & (F_TIMESTAMP | F_VALUE | F_UNIT | F_CGCODE))
    return HES_PUSH_READINGS;
  if (f->seen & (F_STATUS | F_COMM_TYPE | F_MODULE_NEXT))
    return HES_PUSH_ARCHIVE;
  return HES_PUSH_EMPTY;
}

static bool is_addr_char(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' ||
         c == '-';
}

static bool check_dev_addr(const fields_t *f, const char **s, size_t *len, problem_t *pr) {
  if (!(f->seen & F_DEV_ADDR))
    return fail(pr, "devAddr", "missing", NULL);
  if (!json_object_is_type(f->dev_addr, json_type_string))
    return fail_type(pr, "devAddr", "a string", f->dev_addr);
  const char *v = json_object_get_string(f->dev_addr);
  size_t n = (size_t)json_object_get_string_len(f->dev_addr);
  if (n == 0)
    return fail(pr, "devAddr", "empty", NULL);
  if (n > DEV_ADDR_MAX)
    return fail(pr, "devAddr", "longer than 32 characters", NULL);
  for (size_t i = 0; i < n; i++)
    if (!is_addr_char((unsigned char)v[i]))
      return fail(pr, "devAddr", "a character outside [0-9A-Za-z_-]", NULL);
  *s = v;
  *len = n;
  return true;
}

static bool check_timestamp(const fields_t *f, int64_t *ms, problem_t *pr) {
  if (!(f->seen & F_TIMESTAMP))
    return fail(pr, "timestamp", "missing", NULL);
  if (!json_object_is_type(f->timestamp, json_type_int))
    return fail_type(pr, "timestamp", "an integer", f->timestamp);
  /* Beyond INT64_MAX json-c holds a uint64 and get_int64 saturates: still out of range. */
  int64_t v = json_object_get_int64(f->timestamp);
  if (v < 0 || v >= TIMESTAMP_LIMIT_MS)
    return fail(pr, "timestamp", "out of range (0 .. 7258118399999, before the year 2200)", NULL);
  *ms = v;
  return true;
}

/* A string member of at most max bytes without NUL; absent is "" when optional. */
static bool check_text(json_object *o, bool seen, bool optional, const char *field, size_t max,
                       const char *toolong, const char **s, problem_t *pr) {
  if (!seen) {
    if (!optional)
      return fail(pr, field, "missing", NULL);
    *s = "";
    return true;
  }
  if (!json_object_is_type(o, json_type_string))
    return fail_type(pr, field, "a string", o);
  const char *v = json_object_get_string(o);
  size_t n = (size_t)json_object_get_string_len(o);
  if (n > max)
    return fail(pr, field, toolong, NULL);
  /* An embedded NUL (\u0000) would make C see a different string than the HES sent. */
  if (memchr(v, '\0', n) != NULL)
    return fail(pr, field, "contains a NUL character", NULL);
  *s = v;
  return true;
}

static bool check_cgcode(const fields_t *f, bool optional, int *cgcode, problem_t *pr) {
  if (!(f->seen & F_CGCODE)) {
    if (!optional)
      return fail(pr, "cgcode", "missing", NULL);
    *cgcode = 0;
    return true;
  }
  if (!json_object_is_type(f->cgcode, json_type_string))
    return fail_type(pr, "cgcode", "a string", f->cgcode);
  const char *v = json_object_get_string(f->cgcode);
  size_t n = (size_t)json_object_get_string_len(f->cgcode);
  if (n == 0 || n > CGCODE_DIGITS)
    return fail(pr, "cgcode", "not 1 to 9 decimal digits", NULL);
  int code = 0;
  for (size_t i = 0; i < n; i++) {
    if (v[i] < '0' || v[i] > '9')
      return fail(pr, "cgcode", "not 1 to 9 decimal digits", NULL);
    code = code * 10 + (v[i] - '0');
  }
  /* 0 means "no cgcode" in the result, so the HES may not send it. */
  if (code == 0)
    return fail(pr, "cgcode", "zero", NULL);
  *cgcode = code;
  return true;
}

static bool check_unit_value(const fields_t *f, const char **unit, const char **value,
                             problem_t *pr) {
  if (!check_text(f->unit, f->seen & F_UNIT, false, "unit", UNIT_MAX, "longer than 32 characters",
                  unit, pr))
    return false;
  return check_text(f->value, f->seen & F_VALUE, false, "value", VALUE_MAX,
                    "longer than 64 characters", value, pr);
}

static bool reading_entry(walk_t *w, const fields_t *f, size_t i, problem_t *pr) {
  hes_push_reading_t r;
  if (!check_dev_addr(f, &r.dev_addr, &r.dev_addr_len, pr) ||
      !check_timestamp(f, &r.timestamp_ms, pr) || !check_cgcode(f, true, &r.cgcode, pr) ||
      !check_unit_value(f, &r.unit, &r.value, pr))
    return false;
  r.entry = (uint32_t)i;
  w->p->readings[w->count++] = r;
  return true;
}

static bool relay_entry(walk_t *w, const fields_t *f, problem_t *pr) {
  hes_push_relay_t r;
  if (!check_dev_addr(f, &r.dev_addr, &r.dev_addr_len, pr))
    return false;
  if (!(f->seen & F_SUCCESSFUL))
    return fail(pr, "successful", "missing", NULL);
  if (!json_object_is_type(f->successful, json_type_boolean))
    return fail_type(pr, "successful", "a boolean", f->successful);
  r.successful = json_object_get_boolean(f->successful) != 0;
  w->p->relays[w->count++] = r;
  return true;
}

static bool archive_entry(walk_t *w, const fields_t *f, problem_t *pr) {
  hes_push_archive_t a;
  if (!check_dev_addr(f, &a.dev_addr, &a.dev_addr_len, pr))
    return false;
  if (!(f->seen & F_STATUS))
    return fail(pr, "status", "missing", NULL);
  if (!json_object_is_type(f->status, json_type_string))
    return fail_type(pr, "status", "a string", f->status);
  const char *st = json_object_get_string(f->status);
  if (json_object_get_string_len(f->status) != 1 || (st[0] != '0' && st[0] != '1'))
    return fail(pr, "status", "expected \"0\" or \"1\"", NULL);
  a.enabled = st[0] == '1';
  if (!check_text(f->comm_type, f->seen & F_COMM_TYPE, true, "commType", TEXT_MAX,
                  "longer than 64 characters", &a.comm_type, pr) ||
      !check_text(f->module_next, f->seen & F_MODULE_NEXT, true, "moduleNext", TEXT_MAX,
                  "longer than 64 characters", &a.module_next, pr))
    return false;
  w->p->archives[w->count++] = a;
  return true;
}

/* A composite entry: the entry is accepted when devAddr, timestamp and channelData are;
 * its channels are then accepted or skipped one by one. Returns false (entry skipped) or
 * true; *oom on allocation failure. */
static bool channels_entry(walk_t *w, const fields_t *f, size_t i, problem_t *pr, bool *oom) {
  const char *dev_addr;
  size_t dev_addr_len;
  int64_t ts;
  if (!check_dev_addr(f, &dev_addr, &dev_addr_len, pr) || !check_timestamp(f, &ts, pr))
    return false;
  if (!json_object_is_type(f->channel_data, json_type_array))
    return fail_type(pr, "channelData", "an array", f->channel_data);
  size_t n = json_object_array_length(f->channel_data);
  if (!grow((void **)&w->p->readings, &w->p->readings_cap, w->count + n,
            sizeof(hes_push_reading_t))) {
    *oom = true;
    return false;
  }
  for (size_t j = 0; j < n; j++) {
    json_object *ch = json_object_array_get_idx(f->channel_data, j);
    problem_t cp;
    if (!json_object_is_type(ch, json_type_object)) {
      fail_type(&cp, NULL, "an object", ch);
      skip(w, i, (long)j, &cp);
      continue;
    }
    fields_t cf;
    gather(ch, &cf);
    hes_push_reading_t r;
    if (!check_cgcode(&cf, false, &r.cgcode, &cp) ||
        !check_unit_value(&cf, &r.unit, &r.value, &cp)) {
      skip(w, i, (long)j, &cp);
      continue;
    }
    r.dev_addr = dev_addr;
    r.dev_addr_len = dev_addr_len;
    r.timestamp_ms = ts;
    r.entry = (uint32_t)i;
    w->p->readings[w->count++] = r;
  }
  return true;
}

/* Picks the result array for the list's kind, sized for n entries (composites grow per
 * entry, as their channel count is known only there). */
static bool reserve(walk_t *w, size_t n) {
  hes_push_parser_t *p = w->p;
  switch (w->kind) {
  case HES_PUSH_READINGS:
  case HES_PUSH_CHANNELS:
    return grow((void **)&p->readings, &p->readings_cap, n, sizeof(hes_push_reading_t));
  case HES_PUSH_RELAY:
    return grow((void **)&p->relays, &p->relays_cap, n, sizeof(hes_push_relay_t));
  case HES_PUSH_ARCHIVE:
    return grow((void **)&p->archives, &p->archives_cap, n, sizeof(hes_push_archive_t));
  case HES_PUSH_EMPTY:
    break;
  }
  return true;
}

static hes_push_result_t walk_list(hes_push_parser_t *p, json_object *list, const char *prefix,
                                   hes_push_t *out) {
  walk_t w = {.p = p, .out = out, .prefix = prefix, .kind = HES_PUSH_EMPTY};
  size_t n = json_object_array_length(list);
  /* Entries this long are impossible within max_bytes (INT_MAX), but entry is 32 bits. */
  if (n > UINT32_MAX)
    n = UINT32_MAX;
  for (size_t i = 0; i < n; i++) {
    json_object *e = json_object_array_get_idx(list, i);
    problem_t pr;
    if (!json_object_is_type(e, json_type_object)) {
      fail_type(&pr, NULL, "an object", e);
      skip(&w, i, -1, &pr);
      continue;
    }
    fields_t f;
    gather(e, &f);
    hes_push_kind_t k = entry_kind(&f);
    if (w.kind == HES_PUSH_EMPTY) {
      /* The first recognisable entry decides what the whole list holds. */
      if (k == HES_PUSH_EMPTY) {
        fail(&pr, NULL, "not a reading, composite, relay or archive entry", NULL);
        skip(&w, i, -1, &pr);
        continue;
      }
      w.kind = k;
      if (!reserve(&w, n))
        return HES_PUSH_ENOMEM;
    } else if (k != HES_PUSH_EMPTY && k != w.kind) {
      /* The reason names two kinds, so it is formatted here, and only for the first. */
      if (out->skipped_reason[0] == '\0') {
        char what[80];
        snprintf(what, sizeof(what), "%s %s entry in a list of %s entries",
                 k == HES_PUSH_ARCHIVE ? "an" : "a", kind_noun(k), kind_noun(w.kind));
        fail(&pr, NULL, what, NULL);
        skip(&w, i, -1, &pr);
      } else {
        out->skipped++;
      }
      continue;
    }
    bool ok = false;
    bool oom = false;
    switch (w.kind) {
    case HES_PUSH_READINGS:
      ok = reading_entry(&w, &f, i, &pr);
      break;
    case HES_PUSH_CHANNELS:
      ok = channels_entry(&w, &f, i, &pr, &oom);
      break;
    case HES_PUSH_RELAY:
      ok = relay_entry(&w, &f, &pr);
      break;
    case HES_PUSH_ARCHIVE:
      ok = archive_entry(&w, &f, &pr);
      break;
    case HES_PUSH_EMPTY:
      break;
    }
    if (oom)
      return HES_PUSH_ENOMEM;
    if (ok)
      out->entries++;
    else
      skip(&w, i, -1, &pr);
  }
  out->kind = w.kind;
  out->count = w.count;
  switch (w.kind) {
  case HES_PUSH_READINGS:
  case HES_PUSH_CHANNELS:
    out->readings = p->readings;
    break;
  case HES_PUSH_RELAY:
    out->relays = p->relays;
    break;
  case HES_PUSH_ARCHIVE:
    out->archives = p->archives;
    break;
  case HES_PUSH_EMPTY:
    break;
  }
  return HES_PUSH_OK;
}

static bool check_plan_id(json_object *o, bool seen, char *plan_id, problem_t *pr) {
  if (!seen)
    return fail(pr, "planId", "missing", NULL);
  if (!json_object_is_type(o, json_type_string))
    return fail_type(pr, "planId", "a string", o);
  const char *v = json_object_get_string(o);
  size_t n = (size_t)json_object_get_string_len(o);
  if (n == 0)
    return fail(pr, "planId", "empty", NULL);
  if (n >= HES_PLAN_ID_MAX)
    return fail(pr, "planId", "longer than 63 characters", NULL);
  /* It names an MQTT topic level and shows up in logs: no wildcards, separators or
   * control characters. */
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)v[i];
    if (c < 0x20 || c > 0x7e || c == '/' || c == '+' || c == '#')
      return fail(pr, "planId", "a character that is not printable ASCII, or one of / + #", NULL);
  }
  memcpy(plan_id, v, n);
  plan_id[n] = '\0';
  return true;
}

static bool check_status(json_object *o, bool seen, hes_push_status_t *st, problem_t *pr) {
  if (!seen)
    return fail(pr, "data.status", "missing", NULL);
  if (!json_object_is_type(o, json_type_string))
    return fail_type(pr, "data.status", "a string", o);
  const char *v = json_object_get_string(o);
  if (json_object_get_string_len(o) != 2 || v[0] != '0' || v[1] < '0' || v[1] > '2')
    return fail(pr, "data.status", "expected \"00\", \"01\" or \"02\"", NULL);
  *st = v[1] == '0' ? HES_PUSH_SUCCESS : v[1] == '1' ? HES_PUSH_PARTIAL : HES_PUSH_FAILURE;
  return true;
}

/* The top level: {"planId": "...", "data": {"status": "..", "list": [...]}}. *list is NULL
 * when there is none. */
static bool check_top(json_object *root, hes_push_t *out, json_object **list, problem_t *pr) {
  if (!json_object_is_type(root, json_type_object))
    return fail_type(pr, "message", "an object", root);
  json_object *plan_id = NULL, *data = NULL;
  bool plan_seen = false, data_seen = false;
  {
    json_object_object_foreach(root, key, val) {
      if (strcmp(key, "planId") == 0) {
        plan_id = val;
        plan_seen = true;
      } else if (strcmp(key, "data") == 0) {
        data = val;
        data_seen = true;
      }
    }
  }
  if (!check_plan_id(plan_id, plan_seen, out->plan_id, pr))
    return false;
  if (!data_seen)
    return fail(pr, "data", "missing", NULL);
  if (!json_object_is_type(data, json_type_object))
    return fail_type(pr, "data", "an object", data);
  json_object *status = NULL, *l = NULL;
  bool status_seen = false, list_seen = false;
  {
    json_object_object_foreach(data, key, val) {
      if (strcmp(key, "status") == 0) {
        status = val;
        status_seen = true;
      } else if (strcmp(key, "list") == 0) {
        l = val;
        list_seen = true;
      }
    }
  }
  if (!check_status(status, status_seen, &out->status, pr))
    return false;
  if (list_seen && !json_object_is_type(l, json_type_array))
    return fail_type(pr, "data.list", "an array", l);
  *list = l;
  return true;
}

/* Offset of the first byte that is not well-formed UTF-8 (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF), or n. Done here rather than by json-c's
 * JSON_TOKENER_VALIDATE_UTF8, which checks only the byte count of each sequence and costs
 * about a tenth of the whole parse: pushes are ASCII, so eight bytes go at a time. */
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
  p->tok = json_tokener_new_ex(PUSH_DEPTH);
  if (p->tok == NULL) {
    free(p);
    return NULL;
  }
  json_tokener_set_flags(p->tok, JSON_TOKENER_STRICT);
  if (max_bytes == 0)
    max_bytes = HES_PUSH_DEFAULT_MAX_BYTES;
  /* json_tokener_parse_ex takes an int length. */
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
  json_tokener_free(p->tok);
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

  json_tokener_reset(p->tok);
  json_object *root = json_tokener_parse_ex(p->tok, buf, (int)len);
  enum json_tokener_error jerr = json_tokener_get_error(p->tok);
  size_t end = json_tokener_get_parse_end(p->tok);
  if (jerr != json_tokener_success) {
    if (jerr == json_tokener_continue)
      set_text(err, errlen, "truncated JSON: the message ends after %zu bytes inside a value", len);
    else if (jerr == json_tokener_error_depth)
      set_text(err, errlen, "invalid JSON at byte %zu: nested deeper than %d levels", end,
               PUSH_DEPTH - 1); /* json-c counts from 0 */
    else
      set_text(err, errlen, "invalid JSON at byte %zu: %s", end, json_tokener_error_desc(jerr));
    json_object_put(root);
    /* Frees a partial tree now rather than at the next message. */
    json_tokener_reset(p->tok);
    return failed(p, out, HES_PUSH_ESYNTAX);
  }
  p->root = root;
  /* json-c stops at a NUL byte and calls what came before a complete document. */
  if (end < len) {
    set_text(err, errlen, "invalid JSON at byte %zu: trailing data after the JSON value", end);
    return failed(p, out, HES_PUSH_ESYNTAX);
  }

  problem_t pr;
  json_object *list = NULL;
  if (!check_top(root, out, &list, &pr)) {
    problem_text(err, errlen, "", &pr);
    return failed(p, out, HES_PUSH_ESHAPE);
  }
  if (list == NULL)
    return HES_PUSH_OK;
  hes_push_result_t r = walk_list(p, list, "data.list", out);
  if (r != HES_PUSH_OK) {
    set_text(err, errlen, "out of memory");
    return failed(p, out, r);
  }
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
    set_text(err, errlen, "list: expected an array, got %s", type_phrase(list));
    return failed(p, out, HES_PUSH_ESHAPE);
  }
  /* The parser holds its own reference, taken before the previous tree goes: the list
   * then outlives its parent even when it came from that very tree. */
  json_object_get(list);
  release_tree(p);
  p->root = list;
  out->status = HES_PUSH_SUCCESS;
  hes_push_result_t r = walk_list(p, list, "list", out);
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
