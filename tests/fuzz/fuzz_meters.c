/* libFuzzer target for the MeterFile parser (hes_meters_add_file in src/lib/meters.c): the input
 * is written to a file and read back through the parser, and the result is compared with a
 * small independent model of meters.h's rules (one meter a line, '#' comments, blank and
 * white space trimmed, lines over HES_METERS_LINE_MAX bytes or holding NUL refused, the
 * first bad line reported, nothing after it added). Built and run by tests/fuzz/run_all.sh. */
#include "config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "meters.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "fuzz_meters: broken promise: %s (line %d)\n", #cond, __LINE__);             \
      abort();                                                                                     \
    }                                                                                              \
  } while (0)

static bool model_space(uint8_t c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static bool model_valid(const uint8_t *s, size_t len) {
  if (len == 0 || len > HES_METER_MAX_LEN)
    return false;
  for (size_t i = 0; i < len; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'Z') ||
          (s[i] >= 'a' && s[i] <= 'z') || s[i] == '_' || s[i] == '-'))
      return false;
  return true;
}

/* What the parser must produce: the meters in order (start/len pairs into data), or the
 * failing line and kind. */
typedef struct {
  size_t start, len;
} span_t;

static hes_meters_result_t model(const uint8_t *data, size_t size, span_t *out, size_t *n,
                                 size_t *bad_line) {
  size_t line = 1, pos = 0;
  *n = 0;
  *bad_line = 0;
  for (;;) {
    size_t end = pos;
    while (end < size && data[end] != '\n')
      end++;
    if (memchr(data + pos, '\0', end - pos) != NULL || end - pos > HES_METERS_LINE_MAX) {
      *bad_line = line;
      return HES_METERS_EINVAL;
    }
    const uint8_t *hash = memchr(data + pos, '#', end - pos);
    size_t s = pos, e = hash ? (size_t)(hash - data) : end;
    while (e > s && model_space(data[e - 1]))
      e--;
    while (s < e && model_space(data[s]))
      s++;
    if (s < e) {
      if (!model_valid(data + s, e - s)) {
        *bad_line = line;
        return HES_METERS_EINVAL;
      }
      for (size_t i = 0; i < *n; i++) {
        if (out[i].len == e - s && memcmp(data + out[i].start, data + s, e - s) == 0) {
          *bad_line = line;
          return HES_METERS_EDUPLICATE;
        }
      }
      out[*n].start = s;
      out[*n].len = e - s;
      (*n)++;
    }
    if (end == size)
      return HES_METERS_OK;
    pos = end + 1;
    line++;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static char path[64];
  if (path[0] == '\0') {
    snprintf(path, sizeof path, "/tmp/fuzz_meters.%ld", (long)getpid());
  }
  if (size > 1u << 16)
    return 0;
  FILE *fh = fopen(path, "wb");
  CHECK(fh != NULL);
  CHECK(fwrite(data, 1, size, fh) == size);
  CHECK(fclose(fh) == 0);

  /* At most one meter per two bytes (a meter and its newline). */
  span_t *want = malloc((size / 2 + 1) * sizeof *want);
  CHECK(want != NULL);
  size_t nwant, want_bad;
  hes_meters_result_t want_r = model(data, size, want, &nwant, &want_bad);

  hes_meters_t *m = hes_meters_new();
  CHECK(m != NULL);
  size_t bad = 12345;
  hes_meters_result_t r = hes_meters_add_file(m, path, &bad);
  unlink(path);
  CHECK(r == want_r);
  CHECK(bad == want_bad);
  /* Nothing after the bad line is added; everything before it is. */
  CHECK(hes_meters_count(m) == nwant);
  for (size_t i = 0; i < nwant; i++) {
    const char *s = hes_meters_at(m, (uint32_t)i);
    CHECK(strlen(s) == want[i].len && memcmp(s, data + want[i].start, want[i].len) == 0);
  }
  CHECK(hes_meters_seal(m) == HES_METERS_OK);
  for (size_t i = 0; i < nwant; i++)
    CHECK(hes_meters_find(m, (const char *)data + want[i].start, want[i].len) == i);
  CHECK(hes_meters_find(m, "", 0) == HES_METER_NONE);
  hes_meters_free(m);
  free(want);
  return 0;
}
