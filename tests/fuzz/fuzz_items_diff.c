/* libFuzzer target for the decimal conversion of pushed readings (hes_item_convert in
 * src/lib/items.c), differential: the input's first byte picks the unit (Wh, kWh or MWh), the
 * rest is the value string. Whenever the conversion accepts a value, the result must be, bit
 * for bit, what glibc's correctly rounded strtod makes of the same decimal with the unit's
 * power of ten added to its exponent: so the fast path (Clinger's) and the strtod path give
 * the same double. A rejected value must be one a plain decimal grammar rejects, or one whose
 * result is not finite. Built and run by tests/fuzz/run_all.sh. */
#include "config.h"

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "items.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "fuzz_items_diff: broken promise: %s (line %d)\n", #cond, __LINE__);         \
      abort();                                                                                     \
    }                                                                                              \
  } while (0)

static bool model_digit(char c) {
  return c >= '0' && c <= '9';
}

/* [+-]? digits [. digits]? ([eE] [+-]? digits)? with a mantissa digit: the mantissa's length
 * and the exponent (saturated far beyond a double's range). */
static bool model_decimal(const char *s, size_t *mlen, long *exp) {
  const char *p = s;
  size_t digits = 0;
  bool neg = false;
  long e = 0;
  if (*p == '+' || *p == '-')
    p++;
  for (; model_digit(*p); p++)
    digits++;
  if (*p == '.')
    for (p++; model_digit(*p); p++)
      digits++;
  if (digits == 0)
    return false;
  *mlen = (size_t)(p - s);
  if (*p == 'e' || *p == 'E') {
    p++;
    if (*p == '+' || *p == '-')
      neg = *p++ == '-';
    if (!model_digit(*p))
      return false;
    for (; model_digit(*p); p++)
      if (e < 1000000)
        e = e * 10 + (*p - '0');
  }
  *exp = neg ? -e : e;
  return *p == '\0';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const struct {
    const char *unit;
    long exp;
  } units[] = {{"Wh", 0}, {"kWh", 3}, {"MWh", 6}};
  char value[HES_ITEM_VALUE_MAX + 2], ref[HES_ITEM_VALUE_MAX + 32];
  if (size < 1 || size - 1 > HES_ITEM_VALUE_MAX)
    return 0;
  memcpy(value, data + 1, size - 1);
  value[size - 1] = '\0';
  if (strlen(value) != size - 1)
    return 0; /* a NUL inside: not a JSON string the push parser hands over */
  size_t u = data[0] % 3;
  const hes_item_t *item = hes_item_by_name("importActiveEnergy");
  CHECK(item != NULL);

  double out = -12345.0;
  hes_item_result_t r = hes_item_convert(item, value, units[u].unit, &out);
  size_t mlen;
  long exp;
  bool decimal = model_decimal(value, &mlen, &exp);
  if (!decimal) {
    CHECK(r == HES_ITEM_EVALUE && out == -12345.0);
    return 0;
  }
  snprintf(ref, sizeof(ref), "%.*se%ld", (int)mlen, value, exp + units[u].exp);
  double want = strtod(ref, NULL);
  if (!isfinite(want)) {
    CHECK(r == HES_ITEM_EVALUE && out == -12345.0);
    return 0;
  }
  CHECK(r == HES_ITEM_OK);
  CHECK(memcmp(&out, &want, sizeof(out)) == 0);
  return 0;
}
