/* sim_values: the readings of the HES simulator, a pure function of (meter, cgcode, time), so
 * that a test can predict every value the simulator pushes or pages out.
 *
 * An FNV-1a hash of "meter:key" gives each meter and quantity its own base and phase; time adds
 * a slow sine (period about 1 h). Powers are computed from the phase voltage, current and
 * power factor, so the values hang together (S = V*I, P = S*pf, Q = S*sqrt(1-pf^2), totals are
 * the sums of the phases). Energies grow linearly with the hours since 2024-01-01 00:00 UTC
 * (constant before that), so every meter's registers are monotonic in time. */
#include "sim_values.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

const int sim_frozen_channels[8] = {5069, 5074, 5084, 5089, 5099, 5100, 5101, 5102};

#define SIM_PI            3.14159265358979323846
#define SIM_EPOCH_2024_MS 1704067200000LL

/* FNV-1a over the meter number, a separator and a small key: a quantity gets its own hash
 * without formatting the key into a string. */
static uint64_t fnv1a(const char *meter, int key) {
  uint64_t h = 1469598103934665603ULL;
  for (const unsigned char *p = (const unsigned char *)meter; *p != '\0'; p++) {
    h ^= *p;
    h *= 1099511628211ULL;
  }
  h ^= ':';
  h *= 1099511628211ULL;
  for (int i = 0; i < 4; i++) {
    h ^= (unsigned char)((unsigned)key >> (8 * i));
    h *= 1099511628211ULL;
  }
  /* FNV's low bits mix poorly for short inputs: finish with a multiply-xorshift. */
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  return h;
}

/* A number in [0, 1) fixed for (meter, key). */
static double unit_hash(const char *meter, int key) {
  return (double)(fnv1a(meter, key) >> 11) / 9007199254740992.0;
}

/* The slow variation in [-1, 1] of (meter, key) at t. */
static double wave(const char *meter, int key, int64_t t_ms) {
  double phase = 2.0 * SIM_PI * unit_hash(meter, key + 100000);
  double hours = (double)t_ms / 3600000.0;
  return sin(2.0 * SIM_PI * hours + phase);
}

static double phase_voltage(const char *meter, int phase, int64_t t, bool overvoltage) {
  double u = unit_hash(meter, 5050 + phase);
  if (overvoltage)
    return 262.0 + 1.0 * (2.0 * u - 1.0) + 0.5 * wave(meter, 5050 + phase, t);
  return 230.0 + 3.0 * (2.0 * u - 1.0) + 1.5 * wave(meter, 5050 + phase, t);
}

static double phase_current(const char *meter, int phase, int64_t t) {
  double u = unit_hash(meter, 5053 + phase);
  return 0.5 + 15.0 * u + 2.0 * (1.0 + wave(meter, 5053 + phase, t));
}

static double phase_pf(const char *meter, int phase, int64_t t) {
  double u = unit_hash(meter, 5047 + phase);
  return 0.82 + 0.14 * u + 0.02 * wave(meter, 5047 + phase, t);
}

/* kVA, kW, kvar of one phase (0..2). */
static void phase_powers(const char *meter, int phase, int64_t t, bool ov, double *s, double *p,
                         double *q) {
  double pf = phase_pf(meter, phase, t);
  *s = phase_voltage(meter, phase, t, ov) * phase_current(meter, phase, t) / 1000.0;
  *p = *s * pf;
  *q = *s * sqrt(1.0 - pf * pf);
}

static void total_powers(const char *meter, int64_t t, bool ov, double *s, double *p, double *q) {
  *s = *p = *q = 0.0;
  for (int ph = 0; ph < 3; ph++) {
    double ps, pp, pq;
    phase_powers(meter, ph, t, ov, &ps, &pp, &pq);
    *s += ps;
    *p += pp;
    *q += pq;
  }
}

/* base + hours since 2024 * rate: monotonic in t. */
static double energy(const char *meter, int cgcode, int64_t t, double base_max, double rate_min,
                     double rate_max) {
  double base = base_max * unit_hash(meter, cgcode);
  double rate = rate_min + (rate_max - rate_min) * unit_hash(meter, cgcode + 200000);
  double hours = t > SIM_EPOCH_2024_MS ? (double)(t - SIM_EPOCH_2024_MS) / 3600000.0 : 0.0;
  return base + hours * rate;
}

/* Demand changes only with the day, as a register of the billing period would. */
static double demand(const char *meter, int cgcode, int64_t t, double lo, double hi) {
  int64_t day = t / 86400000;
  double u = unit_hash(meter, cgcode);
  double d = unit_hash(meter, cgcode + (int)(day % 100000) * 7 + 300000);
  return lo + (hi - lo) * (0.6 * u + 0.4 * d);
}

bool sim_value(const char *meter, int cgcode, int64_t t, bool ov, double *value,
               const char **unit) {
  double s, p, q;
  if (meter == NULL || value == NULL || unit == NULL)
    return false;
  switch (cgcode) {
  case 5050:
  case 5051:
  case 5052:
    *value = phase_voltage(meter, cgcode - 5050, t, ov);
    *unit = "V";
    return true;
  case 5053:
  case 5054:
  case 5055:
    *value = phase_current(meter, cgcode - 5053, t);
    *unit = "A";
    return true;
  case 5022:
    total_powers(meter, t, ov, &s, value, &q);
    *unit = "kW";
    return true;
  case 5023:
  case 5024:
  case 5025:
    phase_powers(meter, cgcode - 5023, t, ov, &s, value, &q);
    *unit = "kW";
    return true;
  case 5030:
    total_powers(meter, t, ov, &s, &p, value);
    *unit = "kvar";
    return true;
  case 5031:
  case 5032:
  case 5033:
    phase_powers(meter, cgcode - 5031, t, ov, &s, &p, value);
    *unit = "kvar";
    return true;
  case 5038:
    total_powers(meter, t, ov, value, &p, &q);
    *unit = "kVA";
    return true;
  case 5039:
  case 5040:
  case 5041:
    phase_powers(meter, cgcode - 5039, t, ov, value, &p, &q);
    *unit = "kVA";
    return true;
  case 5046:
    total_powers(meter, t, ov, &s, &p, &q);
    *value = p / s;
    *unit = "";
    return true;
  case 5047:
  case 5048:
  case 5049:
    *value = phase_pf(meter, cgcode - 5047, t);
    *unit = "";
    return true;
  case 5069:
    *value = energy(meter, cgcode, t, 9000.0, 0.2, 3.0);
    *unit = "kWh";
    return true;
  case 5074:
    *value = energy(meter, cgcode, t, 10.0, 0.0005, 0.01);
    *unit = "kWh";
    return true;
  case 5084:
    *value = energy(meter, cgcode, t, 2000.0, 0.05, 0.8);
    *unit = "kvarh";
    return true;
  case 5089:
    *value = energy(meter, cgcode, t, 5.0, 0.0002, 0.005);
    *unit = "kvarh";
    return true;
  case 5099:
  case 5100:
  case 5101:
  case 5102:
    *value = demand(meter, cgcode, t, 0.3, 12.0);
    *unit = "kW";
    return true;
  case 5104:
    *value = demand(meter, cgcode, t, 0.1, 5.0);
    *unit = "kvar";
    return true;
  default:
    return false;
  }
}

bool sim_value_string(const char *meter, int cgcode, int64_t t, bool ov, char *buf, size_t len,
                      const char **unit) {
  double v;
  if (buf == NULL || len == 0)
    return false;
  if (!sim_value(meter, cgcode, t, ov, &v, unit))
    return false;
  int n = snprintf(buf, len, "%.3f", v);
  return n > 0 && (size_t)n < len;
}
