/* items: the HES reading items (cgcodes) of interface.md section 2, and the conversion of a
 * pushed (value, unit) pair to the SI base unit of its item.
 *
 * Knows nothing of HTTP, MQTT or collectd: the table is static data, every function is
 * pure and thread-safe. */
#ifndef HES_ITEMS_H
#define HES_ITEMS_H

#include <stdbool.h>
#include <stddef.h>

typedef enum {
  HES_ITEM_SINGLE,    /* instantaneous: readSingle / historySingle */
  HES_ITEM_COMPOSITE, /* frozen: readFrozen / historyFrozen (dailyBilling, ...) */
} hes_item_category_t;

/* The SI base unit a value is converted to. */
typedef enum {
  HES_DIM_VOLT,
  HES_DIM_AMPERE,
  HES_DIM_WATT,
  HES_DIM_VAR,
  HES_DIM_VOLTAMPERE,
  HES_DIM_WATTHOUR,
  HES_DIM_VARHOUR,
  HES_DIM_NONE, /* power factor: dimensionless */
} hes_item_dim_t;

typedef struct {
  int cgcode;
  const char *name; /* the seed's "Data Name", e.g. "voltageA" */
  hes_item_category_t category;
  hes_item_dim_t dim;        /* meaningless for composite items */
  const char *type;          /* collectd type, NULL for composite items */
  const char *type_instance; /* collectd type_instance, NULL for composite items */
  const char *period;        /* composite only: "daily", "monthly", "profile" */
} hes_item_t;

typedef enum {
  HES_ITEM_OK = 0,
  HES_ITEM_EUNIT,  /* the unit does not fit the item (or is unknown) */
  HES_ITEM_EVALUE, /* the value is not a finite number */
} hes_item_result_t;

/* Lookups return a pointer into the static table, or NULL. */
const hes_item_t *hes_item_by_cgcode(int cgcode);
const hes_item_t *hes_item_by_name(const char *name); /* case-insensitive */
/* A config word: an item name, or a cgcode in decimal ("5050"). */
const hes_item_t *hes_item_parse(const char *name_or_cgcode);
/* A cgcode as the HES sends it: a decimal string ("5069"). Strict: no sign, no spaces. */
const hes_item_t *hes_item_by_cgcode_string(const char *s);

size_t hes_item_count(void);
const hes_item_t *hes_item_at(size_t i);

/* The longest value string hes_item_convert accepts; a meter reading is far shorter. */
#define HES_ITEM_VALUE_MAX 64

/* Converts a pushed value (a JSON string such as "7.340") in `unit` to the item's SI base
 * unit. The value must be a plain decimal number ([+-]digits[.digits][e[+-]digits], at most
 * HES_ITEM_VALUE_MAX characters, no spaces) whose result is finite; the unit is matched
 * case-insensitively ("kWh", "KWH"). The result is the double nearest to the exact decimal
 * ("0.619" kW is exactly 619 W). `item` must be a single (non-composite) item. On error
 * *out is untouched. No allocation, no lock: made for the per-reading path. */
hes_item_result_t hes_item_convert(const hes_item_t *item, const char *value, const char *unit,
                                   double *out);

/* The SI unit symbol of a dimension, for log lines ("V", "Wh", "1"). */
const char *hes_item_dim_symbol(hes_item_dim_t dim);

#endif
