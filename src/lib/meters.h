/* meters: the configured meter numbers of one server, stored compactly, with an O(1)
 * lookup from the devAddr string the HES pushes back to a dense index.
 *
 * Memory matters: a server may list 100,000 meters, and the index (uint32_t) is what
 * plans store. Not thread-safe while being filled; read-only (and safe to share) after
 * hes_meters_seal(). */
#ifndef HES_METERS_H
#define HES_METERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "meterid.h" /* HES_METER_MAX_LEN and the rule itself */

#define HES_METER_NONE      UINT32_MAX
#define HES_METERS_LINE_MAX 256 /* longest MeterFile line, comment included */

typedef struct hes_meters hes_meters_t;

typedef enum {
  HES_METERS_OK = 0,
  HES_METERS_EINVAL,     /* not a valid meter number (empty, too long, bad characters) */
  HES_METERS_EDUPLICATE, /* already in the list */
  HES_METERS_ENOMEM,
  HES_METERS_EIO, /* MeterFile unreadable */
} hes_meters_result_t;

hes_meters_t *hes_meters_new(void);
void hes_meters_free(hes_meters_t *m);

/* A valid meter number: the rule of meterid.h (1..HES_METER_MAX_LEN characters of
 * [0-9A-Za-z_-]). */
bool hes_meter_is_valid(const char *s);

/* Appends one meter. A duplicate is reported (HES_METERS_EDUPLICATE) and not added. O(1):
 * the index is kept current while adding. After hes_meters_seal: HES_METERS_EINVAL. */
hes_meters_result_t hes_meters_add(hes_meters_t *m, const char *meter);

/* Reads a meter file: one meter number a line, blank lines and '#' comments ignored (whole
 * line or after the number), surrounding whitespace and a CR before the LF trimmed. A line
 * longer than HES_METERS_LINE_MAX bytes or holding a NUL byte is HES_METERS_EINVAL. On error,
 * *bad_line (if given) is the 1-based line number of the offending line (0 for an I/O error) and
 * nothing after it is added. */
hes_meters_result_t hes_meters_add_file(hes_meters_t *m, const char *path, size_t *bad_line);

/* Builds the lookup index; call once after the last add. */
hes_meters_result_t hes_meters_seal(hes_meters_t *m);

/* Seals m and frees its hash index, for a list that is only iterated from now on (a source of
 * a larger list): about 10 bytes a meter less. hes_meters_find answers HES_METER_NONE after. */
void hes_meters_drop_index(hes_meters_t *m);

size_t hes_meters_count(const hes_meters_t *m);
/* The meter number at index i (i < count); the string lives as long as m. */
const char *hes_meters_at(const hes_meters_t *m, uint32_t i);
/* Index of a meter number, or HES_METER_NONE. Meant for after seal (it also works before,
 * but is not thread-safe then). `len` is the length of s; s need not be NUL-terminated. */
uint32_t hes_meters_find(const hes_meters_t *m, const char *s, size_t len);

/* Approximate heap bytes held, for the memory benchmark. */
size_t hes_meters_memory(const hes_meters_t *m);

#endif
