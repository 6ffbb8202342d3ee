/* items: the table of HES reading items (interface.md section 2 and the seed's 4.2 list),
 * lookups by cgcode and name, and the conversion of a pushed (value, unit) pair to the SI
 * base unit of its item.
 *
 * hes_item_by_cgcode and hes_item_convert run once per pushed reading, so they allocate
 * nothing and take no locks: the table is const and sorted by cgcode (binary search). */
#include "config.h"

#include "items.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SINGLE(code, nm, dm, ty, ti)                                                               \
  {                                                                                                \
    .cgcode = (code), .name = (nm), .category = HES_ITEM_SINGLE, .dim = (dm), .type = (ty),        \
    .type_instance = (ti), .period = NULL,                                                         \
  }
#define COMPOSITE(code, nm, per)                                                                   \
  {                                                                                                \
    .cgcode = (code), .name = (nm), .category = HES_ITEM_COMPOSITE, .dim = HES_DIM_NONE,           \
    .type = NULL, .type_instance = NULL, .period = (per),                                          \
  }

/* Sorted by cgcode, strictly ascending: hes_item_by_cgcode relies on it (and a test checks). */
static const hes_item_t items_table[] = {
    COMPOSITE(1, "dailyBilling", "daily"),
    COMPOSITE(2, "monthlyBilling", "monthly"),
    COMPOSITE(3, "loadProfile", "profile"),
    SINGLE(5022, "activePowerTotal", HES_DIM_WATT, "power", "total"),
    SINGLE(5023, "activePowerA", HES_DIM_WATT, "power", "A"),
    SINGLE(5024, "activePowerB", HES_DIM_WATT, "power", "B"),
    SINGLE(5025, "activePowerC", HES_DIM_WATT, "power", "C"),
    SINGLE(5030, "reactivePowerTotal", HES_DIM_VAR, "reactive_power", "total"),
    SINGLE(5031, "reactivePowerA", HES_DIM_VAR, "reactive_power", "A"),
    SINGLE(5032, "reactivePowerB", HES_DIM_VAR, "reactive_power", "B"),
    SINGLE(5033, "reactivePowerC", HES_DIM_VAR, "reactive_power", "C"),
    SINGLE(5038, "apparentPowerTotal", HES_DIM_VOLTAMPERE, "apparent_power", "total"),
    SINGLE(5039, "apparentPowerA", HES_DIM_VOLTAMPERE, "apparent_power", "A"),
    SINGLE(5040, "apparentPowerB", HES_DIM_VOLTAMPERE, "apparent_power", "B"),
    SINGLE(5041, "apparentPowerC", HES_DIM_VOLTAMPERE, "apparent_power", "C"),
    SINGLE(5046, "powerFactorTotal", HES_DIM_NONE, "power_factor", "total"),
    SINGLE(5047, "powerFactorA", HES_DIM_NONE, "power_factor", "A"),
    SINGLE(5048, "powerFactorB", HES_DIM_NONE, "power_factor", "B"),
    SINGLE(5049, "powerFactorC", HES_DIM_NONE, "power_factor", "C"),
    SINGLE(5050, "voltageA", HES_DIM_VOLT, "voltage", "A"),
    SINGLE(5051, "voltageB", HES_DIM_VOLT, "voltage", "B"),
    SINGLE(5052, "voltageC", HES_DIM_VOLT, "voltage", "C"),
    SINGLE(5053, "currentA", HES_DIM_AMPERE, "current", "A"),
    SINGLE(5054, "currentB", HES_DIM_AMPERE, "current", "B"),
    SINGLE(5055, "currentC", HES_DIM_AMPERE, "current", "C"),
    SINGLE(5069, "importActiveEnergy", HES_DIM_WATTHOUR, "energy_wh", "import"),
    SINGLE(5074, "exportActiveEnergy", HES_DIM_WATTHOUR, "energy_wh", "export"),
    SINGLE(5084, "importReactiveEnergy", HES_DIM_VARHOUR, "reactive_energy", "import"),
    SINGLE(5089, "exportReactiveEnergy", HES_DIM_VARHOUR, "reactive_energy", "export"),
    SINGLE(5099, "activeMaxDemand", HES_DIM_WATT, "power", "max_demand"),
    SINGLE(5104, "reactiveMaxDemand", HES_DIM_VAR, "reactive_power", "max_demand"),
};
#define ITEMS_COUNT (sizeof(items_table) / sizeof(items_table[0]))

/* An exponent beyond this is as good as infinite: DBL_MAX is 1.8e308. Small enough that
 * adding a unit's exponent cannot overflow a long. */
#define EXPONENT_CLAMP 100000L

/* The longest decimal cgcode accepted from the wire: enough for any real code, and small
 * enough that the accumulated value cannot overflow an int. */
#define CGCODE_MAX_DIGITS 6

typedef struct {
  const char *symbol;
  hes_item_dim_t dim;
  long exp10; /* the unit is 10^exp10 of the SI base unit */
} unit_t;

/* Matched case-insensitively, as the brief for this module asks; note that this makes "mW"
 * read as megawatt: no meter reports milliwatts, and the vendor is loose with case. */
static const unit_t units_table[] = {
    {"V", HES_DIM_VOLT, 0},
    {"A", HES_DIM_AMPERE, 0},
    {"W", HES_DIM_WATT, 0},
    {"kW", HES_DIM_WATT, 3},
    {"MW", HES_DIM_WATT, 6},
    {"var", HES_DIM_VAR, 0},
    {"kvar", HES_DIM_VAR, 3},
    {"Mvar", HES_DIM_VAR, 6},
    {"VA", HES_DIM_VOLTAMPERE, 0},
    {"kVA", HES_DIM_VOLTAMPERE, 3},
    {"MVA", HES_DIM_VOLTAMPERE, 6},
    {"Wh", HES_DIM_WATTHOUR, 0},
    {"kWh", HES_DIM_WATTHOUR, 3},
    {"MWh", HES_DIM_WATTHOUR, 6},
    {"varh", HES_DIM_VARHOUR, 0},
    {"kvarh", HES_DIM_VARHOUR, 3},
    {"Mvarh", HES_DIM_VARHOUR, 6},
    /* A power factor has no unit; the HES may send "" or "1". */
    {"", HES_DIM_NONE, 0},
    {"1", HES_DIM_NONE, 0},
};
#define UNITS_COUNT (sizeof(units_table) / sizeof(units_table[0]))

/* ASCII only: strcasecmp follows LC_CTYPE, and a unit or item name is never anything but
 * ASCII. */
static int items__lower(int c) {
  if (c >= 'A' && c <= 'Z')
    return c - 'A' + 'a';
  return c;
}

static bool items__equal_nocase(const char *a, const char *b) {
  while (*a != '\0' && *b != '\0') {
    if (items__lower((unsigned char)*a) != items__lower((unsigned char)*b))
      return false;
    a++;
    b++;
  }
  return *a == *b;
}

static bool items__is_digit(char c) {
  return c >= '0' && c <= '9';
}

const hes_item_t *hes_item_by_cgcode(int cgcode) {
  size_t lo = 0;
  size_t hi = ITEMS_COUNT;

  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (items_table[mid].cgcode == cgcode)
      return &items_table[mid];
    if (items_table[mid].cgcode < cgcode)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}

const hes_item_t *hes_item_by_name(const char *name) {
  if (name == NULL)
    return NULL;

  for (size_t i = 0; i < ITEMS_COUNT; i++) {
    if (items__equal_nocase(items_table[i].name, name))
      return &items_table[i];
  }
  return NULL;
}

const hes_item_t *hes_item_by_cgcode_string(const char *s) {
  int code = 0;
  size_t n = 0;

  if (s == NULL || s[0] == '\0')
    return NULL;

  for (n = 0; s[n] != '\0'; n++) {
    if (n >= CGCODE_MAX_DIGITS || !items__is_digit(s[n]))
      return NULL;
    code = code * 10 + (s[n] - '0');
  }
  return hes_item_by_cgcode(code);
}

const hes_item_t *hes_item_parse(const char *name_or_cgcode) {
  const hes_item_t *item = hes_item_by_name(name_or_cgcode);

  if (item != NULL)
    return item;
  return hes_item_by_cgcode_string(name_or_cgcode);
}

size_t hes_item_count(void) {
  return ITEMS_COUNT;
}

const hes_item_t *hes_item_at(size_t i) {
  if (i >= ITEMS_COUNT)
    return NULL;
  return &items_table[i];
}

/* Splits a plain decimal number, [+-]? digits [. digits]? ([eE] [+-]? digits)?, with at
 * least one mantissa digit, into the length of its mantissa and its exponent (clamped: far
 * beyond the range of a double either way). strtod alone would also take leading spaces,
 * "inf", "nan" and hex floats ("0x1p3"); none of these is a meter reading. */
static bool items__split_decimal(const char *s, size_t *mantissa_len, long *exponent) {
  const char *p = s;
  size_t mantissa_digits = 0;
  long e = 0;
  bool negative = false;

  if (*p == '+' || *p == '-')
    p++;
  while (items__is_digit(*p)) {
    p++;
    mantissa_digits++;
  }
  if (*p == '.') {
    p++;
    while (items__is_digit(*p)) {
      p++;
      mantissa_digits++;
    }
  }
  if (mantissa_digits == 0)
    return false;
  *mantissa_len = (size_t)(p - s);

  if (*p == 'e' || *p == 'E') {
    p++;
    if (*p == '+' || *p == '-')
      negative = *p++ == '-';
    if (!items__is_digit(*p))
      return false;
    while (items__is_digit(*p)) {
      if (e < EXPONENT_CLAMP)
        e = e * 10 + (*p - '0');
      p++;
    }
  }
  *exponent = negative ? -e : e;
  return *p == '\0';
}

static const unit_t *items__unit(const char *unit) {
  for (size_t i = 0; i < UNITS_COUNT; i++) {
    if (items__equal_nocase(units_table[i].symbol, unit))
      return &units_table[i];
  }
  return NULL;
}

/* buf = the mantissa's mlen characters, 'e', the exponent in decimal. By hand: this runs for
 * every kW and kWh reading, and snprintf was a visible share of the MQTT thread. */
static bool items__scaled(char *buf, size_t size, const char *mantissa, size_t mlen,
                          long exponent) {
  char digits[24];
  size_t nd = 0;
  unsigned long a = exponent < 0 ? 0UL - (unsigned long)exponent : (unsigned long)exponent;
  do {
    digits[nd++] = (char)('0' + a % 10);
    a /= 10;
  } while (a != 0 && nd < sizeof(digits));
  if (mlen + 1 + (exponent < 0) + nd + 1 > size)
    return false;
  memcpy(buf, mantissa, mlen);
  size_t p = mlen;
  buf[p++] = 'e';
  if (exponent < 0)
    buf[p++] = '-';
  while (nd > 0)
    buf[p++] = digits[--nd];
  buf[p] = '\0';
  return true;
}

/* Clinger's fast path: when the decimal's digits, read as an integer, fit in the 53 bits of
 * a double's significand and its power of ten is at most 22 (10^22 is the largest power of
 * ten a double holds exactly), the value is one correctly rounded multiplication or division
 * of two exact doubles, which is what strtod returns, bit for bit. Every meter reading
 * ("230.1", "7340.740" kWh) takes it; the rest goes to strtod. Only where double arithmetic
 * is done in double precision (not x87's extended one, whose double rounding breaks it).
 * The mantissa is already checked by items__split_decimal. */
static bool items__fast_decimal(const char *s, size_t mlen, long exponent, double *out) {
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD == 0
  static const double pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                 1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
  const char *end = s + mlen;
  bool negative = *s == '-';
  uint64_t sig = 0;
  long frac_digits = 0;
  bool in_frac = false;

  if (*s == '+' || *s == '-')
    s++;
  for (; s < end; s++) {
    if (*s == '.') {
      in_frac = true;
      continue;
    }
    /* 2^53 has 16 digits: a 17th non-leading digit means it does not fit. */
    if (sig > (UINT64_C(1) << 53) / 10)
      return false;
    sig = sig * 10 + (uint64_t)(*s - '0');
    frac_digits += in_frac;
  }
  if (sig > UINT64_C(1) << 53)
    return false;
  /* exponent is clamped to +-EXPONENT_CLAMP, far from overflowing. */
  long e = exponent - frac_digits;
  double v = (double)sig;
  if (e >= 0 && e <= 22)
    v *= pow10[e];
  else if (e < 0 && e >= -22)
    v /= pow10[-e];
  else
    return false;
  *out = negative ? -v : v;
  return true;
#else
  (void)s;
  (void)mlen;
  (void)exponent;
  (void)out;
  return false;
#endif
}

hes_item_result_t hes_item_convert(const hes_item_t *item, const char *value, const char *unit,
                                   double *out) {
  /* The mantissa, 'e', a sign and the digits of a clamped exponent plus the unit's. */
  char scaled[HES_ITEM_VALUE_MAX + 16];
  const char *text = value;
  const unit_t *u;
  size_t mantissa_len = 0;
  long exponent = 0;
  char *end = NULL;
  double v;

  if (item == NULL || item->category != HES_ITEM_SINGLE)
    return HES_ITEM_EUNIT;
  if (value == NULL || out == NULL)
    return HES_ITEM_EVALUE;

  /* A missing unit is the same as an empty one: fine for a power factor only. */
  u = items__unit(unit != NULL ? unit : "");
  if (u == NULL || u->dim != item->dim)
    return HES_ITEM_EUNIT;

  if (strnlen(value, HES_ITEM_VALUE_MAX + 1) > HES_ITEM_VALUE_MAX)
    return HES_ITEM_EVALUE;
  if (!items__split_decimal(value, &mantissa_len, &exponent))
    return HES_ITEM_EVALUE;

  if (items__fast_decimal(value, mantissa_len, exponent + u->exp10, out))
    return HES_ITEM_OK;

  /* "0.619" kW is parsed as "0.619e3", not as 0.619 * 1000.0: the product of two rounded
   * numbers is off by one ulp for about one value in seventy, the rewritten decimal is
   * rounded once, so 619 W it is. */
  if (u->exp10 != 0) {
    if (!items__scaled(scaled, sizeof(scaled), value, mantissa_len, exponent + u->exp10))
      return HES_ITEM_EVALUE;
    text = scaled;
  }

  /* strtod honours LC_NUMERIC. collectd runs with the "C" numeric locale, so '.' is the
   * decimal point; were it otherwise, strtod would stop at the '.', the end check below would
   * fail and the reading would be rejected rather than silently misread. */
  errno = 0;
  v = strtod(text, &end);
  if (end == text || *end != '\0')
    return HES_ITEM_EVALUE;
  /* ERANGE also flags underflow, which leaves a usable (tiny or zero) finite value. */
  if (!isfinite(v) || (errno == ERANGE && fabs(v) == HUGE_VAL))
    return HES_ITEM_EVALUE;

  *out = v;
  return HES_ITEM_OK;
}

const char *hes_item_dim_symbol(hes_item_dim_t dim) {
  switch (dim) {
  case HES_DIM_VOLT:
    return "V";
  case HES_DIM_AMPERE:
    return "A";
  case HES_DIM_WATT:
    return "W";
  case HES_DIM_VAR:
    return "var";
  case HES_DIM_VOLTAMPERE:
    return "VA";
  case HES_DIM_WATTHOUR:
    return "Wh";
  case HES_DIM_VARHOUR:
    return "varh";
  case HES_DIM_NONE:
    return "1";
  }
  return "?";
}
