/* meterid: the one rule for a meter number (devAddr), shared by the meter list, the HES
 * requests and the push parser, so that what one accepts the others accept too: 1 to
 * HES_METER_MAX_LEN characters of [0-9A-Za-z_-]. The HES uses digits; the wider set costs
 * nothing and keeps a comma, quote or space out of devList and out of collectd identifiers.
 * Header-only: the push parser checks every devAddr on its hot path. */
#ifndef HES_METERID_H
#define HES_METERID_H

#include <stdbool.h>
#include <stddef.h>

#define HES_METER_MAX_LEN 32 /* longest accepted meter number */

/* One character of a meter number. */
static inline bool hes_meterid_char_ok(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' ||
         c == '-';
}

/* s[0..len) is 1..max characters, each one of a meter number (max: HES_METER_MAX_LEN, or
 * another bound for numbers of the same alphabet, such as a DCU's). */
static inline bool hes_meterid_ok_n(const char *s, size_t len, size_t max) {
  if (s == NULL || len == 0 || len > max)
    return false;
  for (size_t i = 0; i < len; i++) {
    if (!hes_meterid_char_ok((unsigned char)s[i]))
      return false;
  }
  return true;
}

/* The NUL-terminated s is 1..max such characters. */
static inline bool hes_meterid_ok(const char *s, size_t max) {
  size_t len = 0;

  if (s == NULL)
    return false;
  while (len <= max && s[len] != '\0')
    len++;
  return hes_meterid_ok_n(s, len, max);
}

#endif
