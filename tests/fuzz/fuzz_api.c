/* libFuzzer target for the HES answer parser (hes_api_parse_answer in src/lib/api.c): any byte
 * sequence, as a body the HES might send, must give either HES_API_OK with a JSON object
 * root whose "data" member is the object handed back, or an error kind with both pointers
 * NULL and a terminated message; HES_API_EHES carries a code other than 200. Built and run
 * by tests/fuzz/run_all.sh. */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "fuzz_api: broken promise: %s (line %d)\n", #cond, __LINE__);                \
      abort();                                                                                     \
    }                                                                                              \
  } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 1u << 20)
    return 0;
  /* A copy of exactly size bytes, so that reading one past the end is caught. */
  char *body = malloc(size ? size : 1);
  CHECK(body != NULL);
  if (size)
    memcpy(body, data, size);

  struct json_object *root = (void *)1, *jdata = (void *)1;
  hes_api_error_t err;
  memset(&err, 'x', sizeof err);
  hes_api_result_t r = hes_api_parse_answer(body, size, &root, &jdata, &err);
  CHECK(memchr(err.msg, '\0', sizeof err.msg) != NULL);
  if (r == HES_API_OK) {
    CHECK(err.kind == HES_API_OK);
    CHECK(root != NULL && json_object_is_type(root, json_type_object));
    struct json_object *code = NULL, *d = NULL;
    CHECK(json_object_object_get_ex(root, "code", &code));
    CHECK(json_object_is_type(code, json_type_int) && json_object_get_int64(code) == 200);
    CHECK(json_object_object_get_ex(root, "data", &d) && d == jdata);
    CHECK(json_object_is_type(jdata, json_type_object));
    /* Serialising must work on whatever was accepted. */
    CHECK(json_object_to_json_string(root) != NULL);
    json_object_put(root);
  } else {
    CHECK(r == HES_API_EHES || r == HES_API_EANSWER || r == HES_API_ENOMEM);
    CHECK(err.kind == r);
    CHECK(root == NULL && jdata == NULL);
    if (r == HES_API_EHES)
      CHECK(err.code != 200);
    else
      CHECK(err.msg[0] != '\0');
  }
  free(body);
  return 0;
}
