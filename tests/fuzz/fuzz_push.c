/* libFuzzer target for the push parser (src/lib/push.c): any byte sequence goes through
 * hes_push_parse with one parser reused across inputs, as on the MQTT thread, and the JSON
 * ones also through hes_push_parse_list. Every accepted result is checked against the
 * promises of push.h, so a wrong answer aborts just like a crash does.
 * Built and run by tests/fuzz/run_all.sh. */
#include "config.h"

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
      fprintf(stderr, "fuzz_push: broken promise: %s (line %d)\n", #cond, __LINE__);               \
      abort();                                                                                     \
    }                                                                                              \
  } while (0)

static void check_dev_addr(const char *s, size_t len) {
  CHECK(s != NULL);
  CHECK(len >= 1 && len <= 32);
  CHECK(strlen(s) == len);
  for (size_t i = 0; i < len; i++)
    CHECK(strchr("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_-", s[i]) != NULL);
}

static void check_result(const hes_push_t *out, bool from_list) {
  CHECK(memchr(out->plan_id, '\0', sizeof(out->plan_id)) != NULL);
  size_t plen = strlen(out->plan_id);
  if (from_list) {
    CHECK(plen == 0);
    CHECK(out->status == HES_PUSH_SUCCESS);
  } else {
    CHECK(plen >= 1 && plen <= 63);
    for (size_t i = 0; i < plen; i++) {
      unsigned char c = (unsigned char)out->plan_id[i];
      CHECK(c >= 0x20 && c <= 0x7e && c != '/' && c != '+' && c != '#');
    }
  }
  CHECK(out->status == HES_PUSH_SUCCESS || out->status == HES_PUSH_PARTIAL ||
        out->status == HES_PUSH_FAILURE);
  CHECK(memchr(out->skipped_reason, '\0', sizeof(out->skipped_reason)) != NULL);
  CHECK((out->skipped == 0) == (out->skipped_reason[0] == '\0'));
  switch (out->kind) {
  case HES_PUSH_EMPTY:
    CHECK(out->count == 0 && out->entries == 0);
    CHECK(out->readings == NULL && out->relays == NULL && out->archives == NULL);
    break;
  case HES_PUSH_READINGS:
  case HES_PUSH_CHANNELS:
    CHECK(out->relays == NULL && out->archives == NULL);
    if (out->kind == HES_PUSH_READINGS)
      CHECK(out->count == out->entries);
    for (size_t i = 0; i < out->count; i++) {
      const hes_push_reading_t *r = &out->readings[i];
      check_dev_addr(r->dev_addr, r->dev_addr_len);
      CHECK(r->timestamp_ms >= 0 && r->timestamp_ms < INT64_C(7258118400000));
      CHECK(r->cgcode >= 0 && r->cgcode <= 999999999);
      CHECK(out->kind == HES_PUSH_READINGS || r->cgcode > 0);
      CHECK(strlen(r->unit) <= 32);
      CHECK(strlen(r->value) <= 64);
      CHECK(i == 0 || r->entry >= out->readings[i - 1].entry);
    }
    break;
  case HES_PUSH_RELAY:
    CHECK(out->readings == NULL && out->archives == NULL);
    CHECK(out->count == out->entries);
    for (size_t i = 0; i < out->count; i++)
      check_dev_addr(out->relays[i].dev_addr, out->relays[i].dev_addr_len);
    break;
  case HES_PUSH_ARCHIVE:
    CHECK(out->readings == NULL && out->relays == NULL);
    CHECK(out->count == out->entries);
    for (size_t i = 0; i < out->count; i++) {
      const hes_push_archive_t *a = &out->archives[i];
      check_dev_addr(a->dev_addr, a->dev_addr_len);
      CHECK(strlen(a->comm_type) <= 64 && strlen(a->module_next) <= 64);
    }
    break;
  default:
    CHECK(!"unknown kind");
  }
}

static void check_failure(const hes_push_t *out, const char *err, size_t errlen) {
  static const hes_push_t zero;
  CHECK(memcmp(out, &zero, sizeof(zero)) == 0);
  CHECK(memchr(err, '\0', errlen) != NULL);
  CHECK(err[0] != '\0');
}

/* The list of a history answer: the input itself when it is an array, or its data.list. */
static void fuzz_list(hes_push_parser_t *p, const uint8_t *data, size_t size) {
  json_tokener *tok = json_tokener_new_ex(10);
  CHECK(tok != NULL);
  json_object *root = json_tokener_parse_ex(tok, (const char *)data, (int)size);
  json_tokener_free(tok);
  if (root == NULL)
    return;
  json_object *list = root, *d;
  if (json_object_object_get_ex(root, "data", &d))
    json_object_object_get_ex(d, "list", &list);
  hes_push_t out;
  char err[256];
  hes_push_result_t r = hes_push_parse_list(p, list, &out, err, sizeof(err));
  if (r == HES_PUSH_OK)
    check_result(&out, true);
  else
    check_failure(&out, err, sizeof(err));
  json_object_put(root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static hes_push_parser_t *p;
  if (p == NULL) {
    p = hes_push_parser_new(0);
    CHECK(p != NULL);
  }
  if (size > 1u << 20)
    return 0;
  hes_push_t out;
  char err[256];
  hes_push_result_t r = hes_push_parse(p, data, size, &out, err, sizeof(err));
  if (r == HES_PUSH_OK) {
    CHECK(err[0] == '\0');
    check_result(&out, false);
  } else {
    CHECK(r == HES_PUSH_ESYNTAX || r == HES_PUSH_ESHAPE);
    check_failure(&out, err, sizeof(err));
  }
  fuzz_list(p, data, size);
  return 0;
}
