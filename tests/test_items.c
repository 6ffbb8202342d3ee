/* test_items: the item table against interface.md section 2, the lookups, the strict
 * value/unit conversion of pushed readings, and that every collectd type the table names is
 * defined in collectd's types.db or in conf/hes-types.db. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "items.h"

/* A test that cannot run here fails and says why; only the Debian package build
 * (HES_DEB_BUILD, set by debian/rules) may skip it. */
#define CANNOT_RUN(why)                                                                            \
  do {                                                                                             \
    if (getenv("HES_DEB_BUILD") != NULL)                                                           \
      skip();                                                                                      \
    else                                                                                           \
      fail_msg("cannot run: %s (tests/install-deps.sh --test installs it)", why);                  \
  } while (0)

#define COLLECTD_TYPES_DB "/usr/share/collectd/types.db"

/* interface.md section 2, copied by hand: the table in items.c must match it row by row. */
static const struct {
  int cgcode;
  const char *name;
  hes_item_dim_t dim;
  const char *type;
  const char *type_instance;
} expected_single[] = {
    {5050, "voltageA", HES_DIM_VOLT, "voltage", "A"},
    {5051, "voltageB", HES_DIM_VOLT, "voltage", "B"},
    {5052, "voltageC", HES_DIM_VOLT, "voltage", "C"},
    {5053, "currentA", HES_DIM_AMPERE, "current", "A"},
    {5054, "currentB", HES_DIM_AMPERE, "current", "B"},
    {5055, "currentC", HES_DIM_AMPERE, "current", "C"},
    {5022, "activePowerTotal", HES_DIM_WATT, "power", "total"},
    {5023, "activePowerA", HES_DIM_WATT, "power", "A"},
    {5024, "activePowerB", HES_DIM_WATT, "power", "B"},
    {5025, "activePowerC", HES_DIM_WATT, "power", "C"},
    {5030, "reactivePowerTotal", HES_DIM_VAR, "reactive_power", "total"},
    {5031, "reactivePowerA", HES_DIM_VAR, "reactive_power", "A"},
    {5032, "reactivePowerB", HES_DIM_VAR, "reactive_power", "B"},
    {5033, "reactivePowerC", HES_DIM_VAR, "reactive_power", "C"},
    {5038, "apparentPowerTotal", HES_DIM_VOLTAMPERE, "apparent_power", "total"},
    {5039, "apparentPowerA", HES_DIM_VOLTAMPERE, "apparent_power", "A"},
    {5040, "apparentPowerB", HES_DIM_VOLTAMPERE, "apparent_power", "B"},
    {5041, "apparentPowerC", HES_DIM_VOLTAMPERE, "apparent_power", "C"},
    {5046, "powerFactorTotal", HES_DIM_NONE, "power_factor", "total"},
    {5047, "powerFactorA", HES_DIM_NONE, "power_factor", "A"},
    {5048, "powerFactorB", HES_DIM_NONE, "power_factor", "B"},
    {5049, "powerFactorC", HES_DIM_NONE, "power_factor", "C"},
    {5069, "importActiveEnergy", HES_DIM_WATTHOUR, "energy_wh", "import"},
    {5074, "exportActiveEnergy", HES_DIM_WATTHOUR, "energy_wh", "export"},
    {5084, "importReactiveEnergy", HES_DIM_VARHOUR, "reactive_energy", "import"},
    {5089, "exportReactiveEnergy", HES_DIM_VARHOUR, "reactive_energy", "export"},
    {5099, "activeMaxDemand", HES_DIM_WATT, "power", "max_demand"},
    {5104, "reactiveMaxDemand", HES_DIM_VAR, "reactive_power", "max_demand"},
};
#define N_SINGLE (sizeof(expected_single) / sizeof(expected_single[0]))

static const struct {
  int cgcode;
  const char *name;
  const char *period;
} expected_composite[] = {
    {1, "dailyBilling", "daily"},
    {2, "monthlyBilling", "monthly"},
    {3, "loadProfile", "profile"},
};
#define N_COMPOSITE (sizeof(expected_composite) / sizeof(expected_composite[0]))

static void test_table_matches_interface(void **state) {
  (void)state;
  assert_int_equal(hes_item_count(), N_SINGLE + N_COMPOSITE);

  for (size_t i = 0; i < N_SINGLE; i++) {
    const hes_item_t *it = hes_item_by_cgcode(expected_single[i].cgcode);
    assert_non_null(it);
    assert_int_equal(it->cgcode, expected_single[i].cgcode);
    assert_string_equal(it->name, expected_single[i].name);
    assert_int_equal(it->category, HES_ITEM_SINGLE);
    assert_int_equal(it->dim, expected_single[i].dim);
    assert_string_equal(it->type, expected_single[i].type);
    assert_string_equal(it->type_instance, expected_single[i].type_instance);
    assert_null(it->period);
  }
  for (size_t i = 0; i < N_COMPOSITE; i++) {
    const hes_item_t *it = hes_item_by_cgcode(expected_composite[i].cgcode);
    assert_non_null(it);
    assert_int_equal(it->cgcode, expected_composite[i].cgcode);
    assert_string_equal(it->name, expected_composite[i].name);
    assert_int_equal(it->category, HES_ITEM_COMPOSITE);
    assert_null(it->type);
    assert_null(it->type_instance);
    assert_string_equal(it->period, expected_composite[i].period);
  }
}

/* hes_item_by_cgcode is a binary search: the table must be strictly ascending. */
static void test_table_sorted_and_at(void **state) {
  (void)state;
  for (size_t i = 1; i < hes_item_count(); i++)
    assert_true(hes_item_at(i - 1)->cgcode < hes_item_at(i)->cgcode);
  assert_int_equal(hes_item_at(0)->cgcode, 1);
  assert_null(hes_item_at(hes_item_count()));
  assert_null(hes_item_at(SIZE_MAX));
}

static void test_round_trip_every_row(void **state) {
  char buf[16];
  (void)state;

  for (size_t i = 0; i < hes_item_count(); i++) {
    const hes_item_t *it = hes_item_at(i);
    assert_ptr_equal(hes_item_by_cgcode(it->cgcode), it);
    assert_ptr_equal(hes_item_by_name(it->name), it);
    assert_ptr_equal(hes_item_parse(it->name), it);
    snprintf(buf, sizeof(buf), "%d", it->cgcode);
    assert_ptr_equal(hes_item_by_cgcode_string(buf), it);
    assert_ptr_equal(hes_item_parse(buf), it);
  }
}

static void test_unknown_cgcodes(void **state) {
  (void)state;
  /* The vendor's channels 5100-5102 are skipped, by design. */
  assert_null(hes_item_by_cgcode(5100));
  assert_null(hes_item_by_cgcode(5101));
  assert_null(hes_item_by_cgcode(5102));
  assert_null(hes_item_by_cgcode(0));
  assert_null(hes_item_by_cgcode(4));
  assert_null(hes_item_by_cgcode(5021));
  assert_null(hes_item_by_cgcode(5026));
  assert_null(hes_item_by_cgcode(5105));
  assert_null(hes_item_by_cgcode(-5050));
  assert_null(hes_item_by_cgcode(INT32_MIN));
  assert_null(hes_item_by_cgcode(INT32_MAX));
  assert_null(hes_item_by_cgcode_string("5100"));
  assert_null(hes_item_parse("5101"));
}

static void test_cgcode_string_strict(void **state) {
  (void)state;
  assert_int_equal(hes_item_by_cgcode_string("5069")->cgcode, 5069);
  assert_int_equal(hes_item_by_cgcode_string("1")->cgcode, 1);
  /* Leading zeros are still plain decimal, within the 6-digit bound. */
  assert_int_equal(hes_item_by_cgcode_string("005069")->cgcode, 5069);
  assert_null(hes_item_by_cgcode_string("0005069")); /* 7 digits */
  assert_null(hes_item_by_cgcode_string(NULL));
  assert_null(hes_item_by_cgcode_string(""));
  assert_null(hes_item_by_cgcode_string("+5069"));
  assert_null(hes_item_by_cgcode_string("-5069"));
  assert_null(hes_item_by_cgcode_string(" 5069"));
  assert_null(hes_item_by_cgcode_string("5069 "));
  assert_null(hes_item_by_cgcode_string("5069\n"));
  assert_null(hes_item_by_cgcode_string("50 69"));
  assert_null(hes_item_by_cgcode_string("5069.0"));
  assert_null(hes_item_by_cgcode_string("0x13cd"));
  assert_null(hes_item_by_cgcode_string("5e3"));
  assert_null(hes_item_by_cgcode_string("voltageA"));
  /* Would overflow an int if the digits were not bounded. */
  assert_null(hes_item_by_cgcode_string("99999999999999999999995069"));
  assert_null(hes_item_by_cgcode_string("4294972365")); /* 5069 + 2^32 */
}

static void test_name_lookup(void **state) {
  (void)state;
  assert_int_equal(hes_item_by_name("voltageA")->cgcode, 5050);
  assert_int_equal(hes_item_by_name("VOLTAGEA")->cgcode, 5050);
  assert_int_equal(hes_item_by_name("voltagea")->cgcode, 5050);
  assert_int_equal(hes_item_by_name("DailyBilling")->cgcode, 1);
  assert_int_equal(hes_item_by_name("LOADPROFILE")->cgcode, 3);
  assert_null(hes_item_by_name(NULL));
  assert_null(hes_item_by_name(""));
  assert_null(hes_item_by_name("voltage"));   /* prefix */
  assert_null(hes_item_by_name("voltageAB")); /* longer */
  assert_null(hes_item_by_name(" voltageA"));
  assert_null(hes_item_by_name("voltageA "));
  assert_null(hes_item_by_name("5050"));

  assert_int_equal(hes_item_parse("currentC")->cgcode, 5055);
  assert_int_equal(hes_item_parse("5055")->cgcode, 5055);
  assert_int_equal(hes_item_parse("2")->cgcode, 2);
  assert_null(hes_item_parse(NULL));
  assert_null(hes_item_parse(""));
  assert_null(hes_item_parse("nosuchitem"));
  assert_null(hes_item_parse("+5055"));
  assert_null(hes_item_parse("5055x"));
}

static const hes_item_t *item(const char *name) {
  const hes_item_t *it = hes_item_by_name(name);
  assert_non_null(it);
  return it;
}

/* Converts and asserts success and the exact expected double. */
static void want_value(const char *name, const char *value, const char *unit, double want) {
  double out = -12345.0;
  assert_int_equal(hes_item_convert(item(name), value, unit, &out), HES_ITEM_OK);
  assert_true(out == want);
}

static void want_result(const char *name, const char *value, const char *unit,
                        hes_item_result_t want) {
  double out = -12345.0;
  assert_int_equal(hes_item_convert(item(name), value, unit, &out), want);
  assert_true(out == -12345.0); /* untouched on error */
}

static void test_convert_exact(void **state) {
  (void)state;
  want_value("importActiveEnergy", "7340.740", "kWh", 7340740.0);
  want_value("importActiveEnergy", "7340.740", "Wh", 7340.74);
  want_value("exportActiveEnergy", "0", "kWh", 0.0);
  want_value("activePowerTotal", "0.619", "kW", 619.0);
  want_value("activePowerA", "619", "W", 619.0);
  want_value("activePowerB", "1.5", "MW", 1500000.0);
  want_value("voltageA", "230.1", "V", 230.1);
  want_value("currentA", "-1.5", "A", -1.5); /* export direction: negative is fine */
  want_value("currentB", "5", "A", 5.0);
  want_value("reactivePowerTotal", "2", "kvar", 2000.0);
  want_value("reactivePowerA", "2", "var", 2.0);
  want_value("reactivePowerB", "2", "Mvar", 2000000.0);
  want_value("apparentPowerTotal", "3.25", "kVA", 3250.0);
  want_value("apparentPowerA", "3.25", "VA", 3.25);
  want_value("apparentPowerC", "3.25", "MVA", 3250000.0);
  want_value("importReactiveEnergy", "12.5", "kvarh", 12500.0);
  want_value("exportReactiveEnergy", "12.5", "varh", 12.5);
  want_value("exportReactiveEnergy", "0.5", "Mvarh", 500000.0);
  want_value("importActiveEnergy", "2", "MWh", 2000000.0);
  want_value("activeMaxDemand", "4.2", "kW", 4200.0);
  want_value("reactiveMaxDemand", "4.5", "kvar", 4500.0);
  want_value("powerFactorTotal", "0.95", "", 0.95);
  want_value("powerFactorA", "-0.5", "1", -0.5);
  want_value("powerFactorB", "1", NULL, 1.0); /* no unit field at all */
  /* Number forms a JSON string may carry. */
  want_value("voltageB", "+230", "V", 230.0);
  want_value("voltageB", ".5", "V", 0.5);
  want_value("voltageB", "5.", "V", 5.0);
  want_value("voltageB", "2.3e2", "V", 230.0);
  want_value("voltageB", "2300E-1", "V", 230.0);
  want_value("voltageB", "-0", "V", 0.0);
  want_value("importActiveEnergy", "00012.000", "kWh", 12000.0);
  /* Underflow is a (tiny) finite value, not an error. */
  want_value("voltageC", "1e-400", "V", 0.0);
}

static void test_convert_unit_case(void **state) {
  (void)state;
  want_value("importActiveEnergy", "1", "KWH", 1000.0);
  want_value("importActiveEnergy", "1", "kwh", 1000.0);
  want_value("voltageA", "1", "v", 1.0);
  want_value("reactivePowerA", "1", "KVAR", 1000.0);
  want_value("apparentPowerA", "1", "va", 1.0);
}

static void test_convert_bad_unit(void **state) {
  (void)state;
  want_result("voltageA", "230", "kWh", HES_ITEM_EUNIT);
  want_result("voltageA", "230", "kV", HES_ITEM_EUNIT); /* not in the list */
  want_result("voltageA", "230", "", HES_ITEM_EUNIT);
  want_result("voltageA", "230", NULL, HES_ITEM_EUNIT);
  want_result("voltageA", "230", "V ", HES_ITEM_EUNIT);
  want_result("voltageA", "230", " V", HES_ITEM_EUNIT);
  want_result("voltageA", "230", "VV", HES_ITEM_EUNIT);
  want_result("currentA", "1", "mA", HES_ITEM_EUNIT);
  want_result("activePowerTotal", "1", "kWh", HES_ITEM_EUNIT);
  want_result("activePowerTotal", "1", "kvar", HES_ITEM_EUNIT);
  want_result("activePowerTotal", "1", "VA", HES_ITEM_EUNIT);
  want_result("importActiveEnergy", "1", "kW", HES_ITEM_EUNIT);
  want_result("importActiveEnergy", "1", "kvarh", HES_ITEM_EUNIT);
  want_result("importReactiveEnergy", "1", "kWh", HES_ITEM_EUNIT);
  want_result("reactivePowerA", "1", "W", HES_ITEM_EUNIT);
  want_result("apparentPowerA", "1", "var", HES_ITEM_EUNIT);
  want_result("powerFactorTotal", "0.95", "V", HES_ITEM_EUNIT);
  want_result("powerFactorTotal", "0.95", "%", HES_ITEM_EUNIT);
  want_result("powerFactorTotal", "0.95", " ", HES_ITEM_EUNIT);
  /* A bad unit wins over a bad value: both are rejected either way. */
  want_result("voltageA", "abc", "kWh", HES_ITEM_EUNIT);
}

static void test_convert_bad_value(void **state) {
  static const char *const bad[] = {
      "",
      " ",
      "nan",
      "NaN",
      "-nan",
      "inf",
      "-inf",
      "Infinity",
      "0x1p3",
      "0x10",
      "1e",
      "1e+",
      "e5",
      ".",
      "-",
      "+",
      "1.2.3",
      " 230",
      "230 ",
      "230\n",
      "\t230",
      "230V",
      "2,30",
      "1e400",
      "-1e400",
      "--1",
      "+-1",
      "1..2",
      "0x",
      "1 000",
      "230\xff",
      "\xc2\xa0"
      "1",
      "1e5000000000000000000000",
  };
  (void)state;

  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    double out = -12345.0;
    hes_item_result_t r = hes_item_convert(item("voltageA"), bad[i], "V", &out);
    if (r != HES_ITEM_EVALUE)
      fail_msg("value \"%s\" gave %d, want EVALUE", bad[i], (int)r);
    assert_true(out == -12345.0);
  }
  want_result("voltageA", NULL, "V", HES_ITEM_EVALUE);
}

static void test_convert_overflow_after_scaling(void **state) {
  (void)state;
  /* Finite as read, infinite once multiplied by the unit. */
  want_result("importActiveEnergy", "1e306", "kWh", HES_ITEM_EVALUE);
  want_result("importActiveEnergy", "1e303", "MWh", HES_ITEM_EVALUE);
  want_value("importActiveEnergy", "1e300", "kWh", 1e303);
  want_result("voltageA", "1e309", "V", HES_ITEM_EVALUE);
  want_result("voltageA", "-1e309", "V", HES_ITEM_EVALUE);
  /* A huge exponent is clamped, not overflowed. */
  want_result("voltageA", "1e99999999999999999999", "kV", HES_ITEM_EUNIT);
  want_result("voltageA", "1e99999999999999999999", "V", HES_ITEM_EVALUE);
  want_result("importActiveEnergy", "1e99999999999999999999", "kWh", HES_ITEM_EVALUE);
  want_value("importActiveEnergy", "1e-99999999999999999999", "kWh", 0.0);
  want_value("importActiveEnergy", "1e-3", "kWh", 1.0);
  want_value("importActiveEnergy", "1E+2", "kWh", 100000.0);
}

/* The value string is bounded: HES_ITEM_VALUE_MAX characters, not one more. */
static void test_convert_length_bound(void **state) {
  char s[HES_ITEM_VALUE_MAX + 2];
  (void)state;

  memset(s, '0', sizeof(s));
  s[HES_ITEM_VALUE_MAX - 1] = '7';
  s[HES_ITEM_VALUE_MAX] = '\0';
  want_value("voltageA", s, "V", 7.0);
  want_value("importActiveEnergy", s, "kWh", 7000.0);
  s[HES_ITEM_VALUE_MAX] = '7';
  s[HES_ITEM_VALUE_MAX + 1] = '\0';
  want_result("voltageA", s, "V", HES_ITEM_EVALUE);
}

/* Multiplying the parsed double by 1000 is one ulp off for "1.001" and about 1.5% of all
 * 3-decimal readings; the conversion must give the double nearest the exact decimal. */
static void test_convert_exact_sweep(void **state) {
  char s[32];
  double out;
  (void)state;

  for (long i = 0; i < 2000000; i += 3) {
    snprintf(s, sizeof(s), "%ld.%03ld", i / 1000, i % 1000);
    assert_int_equal(hes_item_convert(item("importActiveEnergy"), s, "kWh", &out), HES_ITEM_OK);
    if (out != (double)i)
      fail_msg("%s kWh gave %.17g Wh, want %ld", s, out, i);
    snprintf(s, sizeof(s), "-%ld.%06ld", i / 1000000, i % 1000000);
    assert_int_equal(hes_item_convert(item("activePowerTotal"), s, "MW", &out), HES_ITEM_OK);
    if (out != -(double)i)
      fail_msg("%s MW gave %.17g W, want -%ld", s, out, i);
  }
  want_value("voltageA", "1.001", "V", 1.001);
  want_value("importActiveEnergy", "1.001", "kWh", 1001.0);
  want_value("importActiveEnergy", "2.023", "kWh", 2023.0);
}

/* hes_item_convert(value, unit) must equal strtod of the decimal with the unit's power of ten
 * added to its exponent, bit for bit (the sign of a zero too): glibc's strtod rounds
 * correctly, so this holds the fast path (Clinger's: digits <= 2^53, |power| <= 22) and the
 * strtod path to the same answer, on both sides of every bound of the fast path. */
static void want_strtod(const char *value, const char *unit, int unit_exp) {
  char mantissa[80], ref[96];
  const char *e = strpbrk(value, "eE");
  long exp10 = e != NULL ? strtol(e + 1, NULL, 10) : 0;
  size_t mlen = e != NULL ? (size_t)(e - value) : strlen(value);
  double out = -12345.0, want;

  snprintf(mantissa, sizeof(mantissa), "%.*s", (int)mlen, value);
  snprintf(ref, sizeof(ref), "%se%ld", mantissa, exp10 + unit_exp);
  want = strtod(ref, NULL);
  assert_int_equal(hes_item_convert(item("importActiveEnergy"), value, unit, &out), HES_ITEM_OK);
  if (memcmp(&out, &want, sizeof(out)) != 0)
    fail_msg("%s %s gave %.17g, strtod(\"%s\") %.17g", value, unit, out, ref, want);
}

static void test_convert_fast_path_bounds(void **state) {
  static const char *const values[] = {"9007199254740992",
                                       "9007199254740993",
                                       "9007199254740991",
                                       "900719925474099.3",
                                       "90071992547409921",
                                       "0.9007199254740993",
                                       "1e22",
                                       "1e23",
                                       "1e-22",
                                       "1e-23",
                                       "-0",
                                       "-0.0e-30",
                                       "0e400",
                                       "123456789012345678",
                                       "1.7976931348623157e302",
                                       "4.9e-324",
                                       "12345678901234567890123",
                                       "00000000000000000000001.5",
                                       "1.00000000000000000000",
                                       "-.5e-3",
                                       "8.5e21",
                                       "8.5e22",
                                       "0.000000000000000000000001",
                                       "7340.740",
                                       "+230.1",
                                       "5.",
                                       "2300E-1"};
  static const struct {
    const char *unit;
    int exp;
  } units[] = {{"Wh", 0}, {"kWh", 3}, {"MWh", 6}};
  (void)state;

  for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++)
    for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++)
      want_strtod(values[i], units[u].unit, units[u].exp);
}

/* The same on random decimals of every shape the fast path's bounds cut through: 1 to 20
 * digits, the point anywhere or nowhere, exponents -40..40, either sign. */
static void test_convert_fast_path_random(void **state) {
  static const struct {
    const char *unit;
    int exp;
  } units[] = {{"Wh", 0}, {"kWh", 3}, {"MWh", 6}};
  unsigned seed = 1414;
  char s[64];
  (void)state;

  for (int round = 0; round < 300000; round++) {
    size_t n = 0;
    int digits = 1 + rand_r(&seed) % 20;
    int point = rand_r(&seed) % (digits + 2) - 1; /* -1: no point */
    if (rand_r(&seed) % 4 == 0)
      s[n++] = rand_r(&seed) % 2 ? '-' : '+';
    for (int d = 0; d < digits; d++) {
      if (d == point)
        s[n++] = '.';
      s[n++] = (char)('0' + rand_r(&seed) % 10);
    }
    if (point == digits)
      s[n++] = '.';
    if (rand_r(&seed) % 2)
      n += (size_t)snprintf(s + n, sizeof(s) - n, "e%d", rand_r(&seed) % 81 - 40);
    s[n] = '\0';
    size_t u = (size_t)rand_r(&seed) % (sizeof(units) / sizeof(units[0]));
    want_strtod(s, units[u].unit, units[u].exp);
  }
}

/* Random strings from the bytes that matter to the number parser: only the documented
 * results, a finite value on success, and *out untouched otherwise. */
static void test_convert_random(void **state) {
  static const char alphabet[] = "0123456789.eE+-xXpPinfa \t\xff";
  char s[24];
  unsigned seed = 4711;
  int ok = 0;
  (void)state;

  for (int round = 0; round < 100000; round++) {
    size_t n = (size_t)(rand_r(&seed) % (sizeof(s) - 1));
    double out = -12345.0;
    hes_item_result_t r;

    for (size_t i = 0; i < n; i++)
      s[i] = alphabet[rand_r(&seed) % (sizeof(alphabet) - 1)];
    s[n] = '\0';
    r = hes_item_convert(item("importActiveEnergy"), s, round % 2 ? "kWh" : "Wh", &out);
    if (r == HES_ITEM_OK) {
      assert_true(isfinite(out));
      ok++;
    } else {
      assert_int_equal(r, HES_ITEM_EVALUE);
      assert_true(out == -12345.0);
    }
  }
  assert_true(ok > 0); /* the alphabet does make numbers */
}

static void test_convert_bad_args(void **state) {
  double out = -1.0;
  (void)state;
  assert_int_equal(hes_item_convert(NULL, "1", "V", &out), HES_ITEM_EUNIT);
  assert_int_equal(hes_item_convert(item("dailyBilling"), "1", "kWh", &out), HES_ITEM_EUNIT);
  assert_int_equal(hes_item_convert(item("voltageA"), "1", "V", NULL), HES_ITEM_EVALUE);
  assert_true(out == -1.0);
}

static void test_dim_symbol(void **state) {
  (void)state;
  assert_string_equal(hes_item_dim_symbol(HES_DIM_VOLT), "V");
  assert_string_equal(hes_item_dim_symbol(HES_DIM_AMPERE), "A");
  assert_string_equal(hes_item_dim_symbol(HES_DIM_WATT), "W");
  assert_string_equal(hes_item_dim_symbol(HES_DIM_VAR), "var");
  assert_string_equal(hes_item_dim_symbol(HES_DIM_VOLTAMPERE), "VA");
  assert_string_equal(hes_item_dim_symbol(HES_DIM_WATTHOUR), "Wh");
  assert_string_equal(hes_item_dim_symbol(HES_DIM_VARHOUR), "varh");
  assert_string_equal(hes_item_dim_symbol(HES_DIM_NONE), "1");
  assert_string_equal(hes_item_dim_symbol((hes_item_dim_t)99), "?");
  /* Every item's own SI symbol converts with factor 1. */
  for (size_t i = 0; i < hes_item_count(); i++) {
    const hes_item_t *it = hes_item_at(i);
    double out = 0;
    if (it->category != HES_ITEM_SINGLE)
      continue;
    assert_int_equal(hes_item_convert(it, "2.5", hes_item_dim_symbol(it->dim), &out), HES_ITEM_OK);
    assert_true(out == 2.5);
  }
}

/* --- types.db ----------------------------------------------------------------------------- */

typedef struct {
  char name[64];
  char spec[192];
} type_def_t;

/* Reads a collectd TypesDB file: "name ds:TYPE:min:max[, ds:...]" a line, '#' comments. */
static size_t read_types_db(const char *path, type_def_t *defs, size_t max) {
  char line[1024];
  size_t n = 0;
  FILE *fh = fopen(path, "r");

  if (fh == NULL)
    return SIZE_MAX;
  while (fgets(line, sizeof(line), fh) != NULL) {
    char name[64];
    char spec[192];
    if (line[0] == '#')
      continue;
    if (sscanf(line, "%63s %191[^\n]", name, spec) != 2)
      continue;
    assert_true(n < max);
    snprintf(defs[n].name, sizeof(defs[n].name), "%s", name);
    snprintf(defs[n].spec, sizeof(defs[n].spec), "%s", spec);
    n++;
  }
  fclose(fh);
  return n;
}

static const type_def_t *find_type(const type_def_t *defs, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++) {
    if (strcmp(defs[i].name, name) == 0)
      return &defs[i];
  }
  return NULL;
}

static void test_types_db(void **state) {
  static type_def_t collectd_defs[1024];
  static type_def_t hes_defs[64];
  const char *top = getenv("top_srcdir");
  char path[4096];
  size_t n_collectd;
  size_t n_hes;
  (void)state;

  snprintf(path, sizeof(path), "%s/conf/hes-types.db", top != NULL ? top : "..");
  n_hes = read_types_db(path, hes_defs, 64);
  if (n_hes == SIZE_MAX)
    fail_msg("cannot read %s (set top_srcdir to the source tree)", path);
  n_collectd = read_types_db(COLLECTD_TYPES_DB, collectd_defs, 1024);
  if (n_collectd == SIZE_MAX)
    CANNOT_RUN("no " COLLECTD_TYPES_DB " to compare against: install collectd-core");
  assert_true(n_collectd > 100);

  /* Exactly the four types the plugin adds, all gauges (see the file's header). */
  assert_int_equal(n_hes, 4);
  assert_string_equal(find_type(hes_defs, n_hes, "reactive_power")->spec, "value:GAUGE:U:U");
  assert_string_equal(find_type(hes_defs, n_hes, "apparent_power")->spec, "value:GAUGE:U:U");
  assert_string_equal(find_type(hes_defs, n_hes, "power_factor")->spec, "value:GAUGE:-1:1");
  assert_string_equal(find_type(hes_defs, n_hes, "reactive_energy")->spec, "value:GAUGE:U:U");

  /* None of them clashes with a collectd type. */
  for (size_t i = 0; i < n_hes; i++)
    assert_null(find_type(collectd_defs, n_collectd, hes_defs[i].name));

  /* Every type the table dispatches exists in one of the two, as a single gauge. */
  for (size_t i = 0; i < hes_item_count(); i++) {
    const hes_item_t *it = hes_item_at(i);
    const type_def_t *def;
    if (it->type == NULL)
      continue;
    def = find_type(collectd_defs, n_collectd, it->type);
    if (def == NULL)
      def = find_type(hes_defs, n_hes, it->type);
    if (def == NULL)
      fail_msg("type %s of %s is in no types.db", it->type, it->name);
    assert_non_null(strstr(def->spec, ":GAUGE:"));
    assert_null(strchr(def->spec, ','));
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_table_matches_interface),
      cmocka_unit_test(test_table_sorted_and_at),
      cmocka_unit_test(test_round_trip_every_row),
      cmocka_unit_test(test_unknown_cgcodes),
      cmocka_unit_test(test_cgcode_string_strict),
      cmocka_unit_test(test_name_lookup),
      cmocka_unit_test(test_convert_exact),
      cmocka_unit_test(test_convert_unit_case),
      cmocka_unit_test(test_convert_bad_unit),
      cmocka_unit_test(test_convert_bad_value),
      cmocka_unit_test(test_convert_overflow_after_scaling),
      cmocka_unit_test(test_convert_length_bound),
      cmocka_unit_test(test_convert_exact_sweep),
      cmocka_unit_test(test_convert_fast_path_bounds),
      cmocka_unit_test(test_convert_fast_path_random),
      cmocka_unit_test(test_convert_random),
      cmocka_unit_test(test_convert_bad_args),
      cmocka_unit_test(test_dim_symbol),
      cmocka_unit_test(test_types_db),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
