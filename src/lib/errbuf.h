/* errbuf: the caller's error buffer, filled the one way every collectd-free module fills it
 * (a NULL or empty buffer is allowed: the caller did not want the message). */
#ifndef HES_ERRBUF_H
#define HES_ERRBUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

static inline void hes_errbuf_printf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline void hes_errbuf_printf(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;

  if (err == NULL || errlen == 0)
    return;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

#endif
