/* fileio: the two file operations the state-keeping modules (backfill, relay, tz) share:
 * reading a whole small file with a size bound, and replacing a file atomically. */
#ifndef HES_FILEIO_H
#define HES_FILEIO_H

#include <stddef.h>

/* Reads the regular file at path, at most max bytes, into a new NUL-terminated buffer the
 * caller frees. Returns 0, or an errno: ENOENT, EINVAL (not a regular file), EFBIG (larger
 * than max, or grew while read), ENOMEM, or what open/read said. */
int hes_file_read(const char *path, size_t max, char **out, size_t *outlen);

/* Replaces path with text[0..len) so that a crash leaves either the old or the new file:
 * writes "<path>.tmp" (mode 0600), fsyncs it, renames it over path and fsyncs the
 * directory. Returns 0 or an errno; on failure the temporary file is removed. */
int hes_file_write_atomic(const char *path, const char *text, size_t len);

#endif
