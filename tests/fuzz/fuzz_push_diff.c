/* Differential libFuzzer target for the push scanner (src/lib/push.c): every input goes through
 * hes_push_parse and through json-c 0.16's strict tokener (depth 10) plus the checks the
 * module made around it before (RFC 3629 UTF-8, no bytes after the value). It aborts when
 * one calls the input valid JSON and the other does not, or when both do and the results
 * differ: reference results come from json-c's tree, with the top level checked here and
 * data.list walked by hes_push_parse_list.
 *
 * json-c's strict mode is looser than RFC 8259 in three ways, and push.c follows the RFC:
 * raw control characters in strings, single-quoted member names, and numbers such as 00,
 * -01, 1. or -.5. A "json-c accepts, scanner rejects" verdict passes only when the
 * scanner's reason names one of those and the byte it names shows it.
 *
 * Built and run by tests/fuzz/run_all.sh. */
#include "config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "push.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "fuzz_push_diff: %s (line %d)\n", #cond, __LINE__);                          \
      abort();                                                                                     \
    }                                                                                              \
  } while (0)

/* RFC 3629, by code point rather than by byte ranges as push.c does it. */
static bool utf8_ok(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint32_t cp;
    size_t k;
    uint8_t c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      cp = c & 0x1fu;
      k = 1;
    } else if ((c & 0xf0) == 0xe0) {
      cp = c & 0x0fu;
      k = 2;
    } else if ((c & 0xf8) == 0xf0) {
      cp = c & 0x07u;
      k = 3;
    } else {
      return false;
    }
    if (n - i <= k)
      return false;
    for (size_t j = 1; j <= k; j++) {
      if ((s[i + j] & 0xc0) != 0x80)
        return false;
      cp = cp << 6 | (s[i + j] & 0x3fu);
    }
    static const uint32_t min[4] = {0, 0x80, 0x800, 0x10000};
    if (cp < min[k] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += k + 1;
  }
  return true;
}

/* json-c strict, as the module called it before. */
static json_object *reference_parse(const uint8_t *data, size_t size, bool *valid) {
  *valid = false;
  if (size == 0 || !utf8_ok(data, size))
    return NULL;
  json_tokener *tok = json_tokener_new_ex(10);
  CHECK(tok != NULL);
  json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
  json_object *root = json_tokener_parse_ex(tok, (const char *)data, (int)size);
  bool ok = json_tokener_get_error(tok) == json_tokener_success &&
            json_tokener_get_parse_end(tok) == size;
  json_tokener_free(tok);
  if (!ok) {
    json_object_put(root);
    return NULL;
  }
  *valid = true;
  return root;
}

static bool rfc_number(const uint8_t *s, size_t n) {
  size_t i = 0, d;
  if (i < n && s[i] == '-')
    i++;
  if (i < n && s[i] == '0') {
    i++;
  } else {
    for (d = i; i < n && s[i] >= '0' && s[i] <= '9';)
      i++;
    if (i == d || s[d] == '0')
      return false;
  }
  if (i < n && s[i] == '.') {
    for (d = ++i; i < n && s[i] >= '0' && s[i] <= '9';)
      i++;
    if (i == d)
      return false;
  }
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    i++;
    if (i < n && (s[i] == '+' || s[i] == '-'))
      i++;
    for (d = i; i < n && s[i] >= '0' && s[i] <= '9';)
      i++;
    if (i == d)
      return false;
  }
  return i == n;
}

/* json-c accepted what the scanner rejected for `err`: only the RFC's own rules may do that. */
static bool rfc_stricter(const uint8_t *data, size_t size, const char *err) {
  size_t at;
  int used = 0;
  if (sscanf(err, "invalid JSON at byte %zu: %n", &at, &used) != 1 || used == 0 || at > size)
    return false;
  const char *why = err + used;
  if (strcmp(why, "control character in a string") == 0)
    return at < size && data[at] >= 0x01 && data[at] <= 0x1f;
  if (strcmp(why, "quoted object property name expected") == 0)
    return at < size && data[at] == '\'';
  if (strcmp(why, "number expected") == 0) {
    size_t start = at;
    while (start > 0 && strchr("0123456789.eE+-", data[start - 1]) != NULL && data[start - 1])
      start--;
    return start < at && !rfc_number(data + start, at - start);
  }
  return false;
}

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
  return "?";
}

/* The top level of a push on json-c's tree, as push.c checked it before the scanner. */
static hes_push_result_t reference_push(hes_push_parser_t *q, json_object *root, hes_push_t *out,
                                        char *err, size_t errlen) {
  memset(out, 0, sizeof(*out));
  err[0] = '\0';
  json_object *plan, *data, *status, *list = NULL;
  if (!json_object_is_type(root, json_type_object)) {
    snprintf(err, errlen, "message: expected an object, got %s", type_phrase(root));
    return HES_PUSH_ESHAPE;
  }
  if (!json_object_object_get_ex(root, "planId", &plan)) {
    snprintf(err, errlen, "planId: missing");
    return HES_PUSH_ESHAPE;
  }
  if (!json_object_is_type(plan, json_type_string)) {
    snprintf(err, errlen, "planId: expected a string, got %s", type_phrase(plan));
    return HES_PUSH_ESHAPE;
  }
  const char *pid = json_object_get_string(plan);
  size_t plen = (size_t)json_object_get_string_len(plan);
  if (plen == 0) {
    snprintf(err, errlen, "planId: empty");
    return HES_PUSH_ESHAPE;
  }
  if (plen > 63) {
    snprintf(err, errlen, "planId: longer than 63 characters");
    return HES_PUSH_ESHAPE;
  }
  for (size_t i = 0; i < plen; i++)
    if ((unsigned char)pid[i] < 0x20 || (unsigned char)pid[i] > 0x7e || strchr("/+#", pid[i])) {
      snprintf(err, errlen, "planId: a character that is not printable ASCII, or one of / + #");
      return HES_PUSH_ESHAPE;
    }
  if (!json_object_object_get_ex(root, "data", &data)) {
    snprintf(err, errlen, "data: missing");
    return HES_PUSH_ESHAPE;
  }
  if (!json_object_is_type(data, json_type_object)) {
    snprintf(err, errlen, "data: expected an object, got %s", type_phrase(data));
    return HES_PUSH_ESHAPE;
  }
  if (!json_object_object_get_ex(data, "status", &status)) {
    snprintf(err, errlen, "data.status: missing");
    return HES_PUSH_ESHAPE;
  }
  if (!json_object_is_type(status, json_type_string)) {
    snprintf(err, errlen, "data.status: expected a string, got %s", type_phrase(status));
    return HES_PUSH_ESHAPE;
  }
  const char *st = json_object_get_string(status);
  if (json_object_get_string_len(status) != 2 || st[0] != '0' || st[1] < '0' || st[1] > '2') {
    snprintf(err, errlen, "data.status: expected \"00\", \"01\" or \"02\"");
    return HES_PUSH_ESHAPE;
  }
  bool has_list = json_object_object_get_ex(data, "list", &list);
  if (has_list && !json_object_is_type(list, json_type_array)) {
    snprintf(err, errlen, "data.list: expected an array, got %s", type_phrase(list));
    return HES_PUSH_ESHAPE;
  }
  if (has_list) {
    char why[256];
    hes_push_result_t r = hes_push_parse_list(q, list, out, why, sizeof(why));
    CHECK(r == HES_PUSH_OK);
    if (out->skipped_reason[0] != '\0') {
      char reason[sizeof(out->skipped_reason)];
      snprintf(reason, sizeof(reason), "data.%s", out->skipped_reason);
      memcpy(out->skipped_reason, reason, sizeof(reason));
    }
  }
  memcpy(out->plan_id, pid, plen);
  out->plan_id[plen] = '\0';
  out->status = st[1] == '0'   ? HES_PUSH_SUCCESS
                : st[1] == '1' ? HES_PUSH_PARTIAL
                               : HES_PUSH_FAILURE;
  return HES_PUSH_OK;
}

static void same_addr(const char *a, size_t alen, const char *b, size_t blen) {
  CHECK(alen == blen);
  CHECK(memcmp(a, b, alen) == 0);
  CHECK(a[alen] == '\0');
}

static void compare(const hes_push_t *got, const hes_push_t *want) {
  CHECK(strcmp(got->plan_id, want->plan_id) == 0);
  CHECK(got->status == want->status);
  CHECK(got->kind == want->kind);
  CHECK(got->count == want->count);
  CHECK(got->entries == want->entries);
  CHECK(got->skipped == want->skipped);
  CHECK(strcmp(got->skipped_reason, want->skipped_reason) == 0);
  CHECK((got->readings == NULL) == (want->readings == NULL));
  CHECK((got->relays == NULL) == (want->relays == NULL));
  CHECK((got->archives == NULL) == (want->archives == NULL));
  for (size_t i = 0; i < got->count; i++) {
    if (got->kind == HES_PUSH_READINGS || got->kind == HES_PUSH_CHANNELS) {
      const hes_push_reading_t *a = &got->readings[i], *b = &want->readings[i];
      same_addr(a->dev_addr, a->dev_addr_len, b->dev_addr, b->dev_addr_len);
      CHECK(a->timestamp_ms == b->timestamp_ms);
      CHECK(a->cgcode == b->cgcode);
      CHECK(strcmp(a->unit, b->unit) == 0);
      CHECK(strcmp(a->value, b->value) == 0);
      CHECK(a->entry == b->entry);
    } else if (got->kind == HES_PUSH_RELAY) {
      const hes_push_relay_t *a = &got->relays[i], *b = &want->relays[i];
      same_addr(a->dev_addr, a->dev_addr_len, b->dev_addr, b->dev_addr_len);
      CHECK(a->successful == b->successful);
    } else {
      const hes_push_archive_t *a = &got->archives[i], *b = &want->archives[i];
      same_addr(a->dev_addr, a->dev_addr_len, b->dev_addr, b->dev_addr_len);
      CHECK(a->enabled == b->enabled);
      CHECK(strcmp(a->comm_type, b->comm_type) == 0);
      CHECK(strcmp(a->module_next, b->module_next) == 0);
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static hes_push_parser_t *p, *q;
  if (p == NULL) {
    p = hes_push_parser_new(0);
    q = hes_push_parser_new(0);
    CHECK(p != NULL && q != NULL);
  }
  if (size > 1u << 20)
    return 0;
  hes_push_t got;
  char err[256];
  hes_push_result_t r = hes_push_parse(p, data, size, &got, err, sizeof(err));
  CHECK(r == HES_PUSH_OK || r == HES_PUSH_ESHAPE || r == HES_PUSH_ESYNTAX);
  bool valid;
  json_object *root = reference_parse(data, size, &valid);
  if (r == HES_PUSH_ESYNTAX) {
    if (valid && !rfc_stricter(data, size, err)) {
      fprintf(stderr, "fuzz_push_diff: json-c accepts, the scanner says: %s\n", err);
      abort();
    }
    json_object_put(root);
    return 0;
  }
  if (!valid) {
    fprintf(stderr, "fuzz_push_diff: json-c rejects, the scanner accepts (%s)\n",
            hes_push_result_string(r));
    abort();
  }
  hes_push_t want;
  char want_err[256];
  hes_push_result_t wr = reference_push(q, root, &want, want_err, sizeof(want_err));
  if (r != wr || strcmp(err, want_err) != 0) {
    fprintf(stderr, "fuzz_push_diff: scanner %s \"%s\", json-c %s \"%s\"\n",
            hes_push_result_string(r), err, hes_push_result_string(wr), want_err);
    abort();
  }
  if (r == HES_PUSH_OK)
    compare(&got, &want);
  json_object_put(root);
  return 0;
}
