/* statefile: see statefile.h. */
#include "config.h"

#include "statefile.h"
#include "fileio.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

hes_statefile_result_t hes_statefile_read(const char *path, const char *header, const char *what,
                                          size_t max, char **text, size_t *len, char **body,
                                          char *why, size_t whylen) {
  char *buf = NULL;
  size_t n = 0;
  size_t hlen;
  int rc;

  if (why != NULL && whylen > 0)
    why[0] = '\0';
  if (path == NULL || header == NULL || text == NULL || len == NULL || body == NULL) {
    snprintf(why, whylen, "no file name");
    return HES_STATEFILE_BAD;
  }
  rc = hes_file_read(path, max, &buf, &n);
  if (rc == ENOENT)
    return HES_STATEFILE_NONE;
  if (rc == ENOMEM)
    return HES_STATEFILE_NOMEM;
  if (rc == EINVAL) {
    snprintf(why, whylen, "not a %s (not a regular file)", what != NULL ? what : "state file");
    return HES_STATEFILE_BAD;
  }
  if (rc != 0) {
    snprintf(why, whylen, "cannot read it: %s", rc == EFBIG ? "too large" : strerror(rc));
    return HES_STATEFILE_BAD;
  }
  hlen = strlen(header);
  /* memcmp, not strcmp: the file may hold NUL bytes anywhere. */
  if (n <= hlen || memcmp(buf, header, hlen) != 0 || buf[hlen] != '\n') {
    snprintf(why, whylen, "not a %s (the first line is not \"%s\")",
             what != NULL ? what : "state file", header);
    free(buf);
    return HES_STATEFILE_BAD;
  }
  *text = buf;
  *len = n;
  *body = buf + hlen + 1;
  return HES_STATEFILE_OK;
}

void hes_statefile_lines_init(hes_statefile_lines_t *r, char *from, char *end) {
  r->p = from;
  r->end = end;
}

int hes_statefile_line(hes_statefile_lines_t *r, char **line) {
  char *nl;

  *line = NULL;
  if (r->p >= r->end)
    return 0;
  nl = memchr(r->p, '\n', (size_t)(r->end - r->p));
  if (nl == NULL || memchr(r->p, '\0', (size_t)(nl - r->p)) != NULL)
    return -1;
  *nl = '\0';
  *line = r->p;
  r->p = nl + 1;
  return 1;
}

int hes_statefile_write(const char *path, const char *text, size_t len) {
  return hes_file_write_atomic(path, text, len);
}

int hes_statefile_set_aside(const char *path, const char *suffix, char *desc, size_t desclen) {
  size_t plen;
  size_t slen;
  char *aside;
  int rc;

  if (path == NULL || suffix == NULL) {
    snprintf(desc, desclen, "could not set it aside: %s", strerror(EINVAL));
    return EINVAL;
  }
  plen = strlen(path);
  slen = strlen(suffix);
  aside = malloc(plen + slen + 1);
  if (aside == NULL) {
    snprintf(desc, desclen, "could not set it aside: %s", strerror(ENOMEM));
    return ENOMEM;
  }
  memcpy(aside, path, plen);
  memcpy(aside + plen, suffix, slen + 1);
  rc = rename(path, aside) == 0 ? 0 : errno;
  if (rc == 0)
    snprintf(desc, desclen, "set aside as %s", aside);
  else
    snprintf(desc, desclen, "could not set it aside: %s", strerror(rc));
  free(aside);
  return rc;
}
