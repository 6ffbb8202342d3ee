/* sim_values: the HES simulator's readings, deterministic in (meter, cgcode, time), so a
 * test can predict every value the simulator pushes. Shared by the simulator and tests. */
#ifndef SIM_VALUES_H
#define SIM_VALUES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The value the simulator reports for `meter` and single item `cgcode` at `timestamp_ms`,
 * in the seed document's units, which *unit receives: "V", "A", "kW", "kvar", "kVA",
 * "" (power factor), "kWh", "kvarh". The simulator sends the value as "%.3f" of the result,
 * so compare with sim_value_string. `overvoltage` is true for the simulator's over-voltage
 * meter (phase voltages about 262 V). Returns false for a cgcode it does not know. */
bool sim_value(const char *meter, int cgcode, int64_t timestamp_ms, bool overvoltage, double *value,
               const char **unit);

/* The exact string the simulator puts in "value": snprintf("%.3f", sim_value(...)). */
bool sim_value_string(const char *meter, int cgcode, int64_t timestamp_ms, bool overvoltage,
                      char *buf, size_t len, const char **unit);

/* The channels of a composite (frozen) reading, in push order: 5069 5074 5084 5089 5099
 * 5100 5101 5102. Their values at a freeze time come from sim_value as well. */
extern const int sim_frozen_channels[8];

#endif
