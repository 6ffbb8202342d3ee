/* statefile: what the relay's and the backfill's state files share: a first line that names
 * the file's kind and version, a size bound when reading, a line reader, an atomic write
 * (temporary file, fsync, rename) and the setting aside of a file that cannot be trusted, so
 * that it is reported once and never looked at again. The modules keep their own body
 * formats. */
#ifndef HES_STATEFILE_H
#define HES_STATEFILE_H

#include <stddef.h>

typedef enum {
  HES_STATEFILE_OK,    /* read, and its first line is the header */
  HES_STATEFILE_NONE,  /* there is no file */
  HES_STATEFILE_BAD,   /* unreadable, too large, or not this kind of file: why says */
  HES_STATEFILE_NOMEM, /* out of memory */
} hes_statefile_result_t;

/* Reads the state file at path, at most max bytes. header is the first line without its
 * '\n' (for example "collectd-hes relay state v1"), what names the kind of file in why
 * ("relay state file"). On OK, *text (the caller frees it) holds the whole file,
 * NUL-terminated, *len its length, and *body points just past the header line. On BAD, why
 * says what is wrong with it and nothing is returned. */
hes_statefile_result_t hes_statefile_read(const char *path, const char *header, const char *what,
                                          size_t max, char **text, size_t *len, char **body,
                                          char *why, size_t whylen);

/* Walks the lines of a text read by hes_statefile_read, NUL-terminating each in place. */
typedef struct {
  char *p;   /* the next unread byte */
  char *end; /* the end of the text */
} hes_statefile_lines_t;

void hes_statefile_lines_init(hes_statefile_lines_t *r, char *from, char *end);

/* 1: *line is the next line, without its '\n'. 0: the end. -1: a last line without '\n' (a
 * truncated file) or a line holding a NUL byte; the reader stays at that line. */
int hes_statefile_line(hes_statefile_lines_t *r, char **line);

/* Replaces path with text[0..len) so that a crash leaves the old or the new file, never a
 * mix (hes_file_write_atomic). text must begin with the header line. 0 or an errno. */
int hes_statefile_write(const char *path, const char *text, size_t len);

/* Renames path to path + suffix (".corrupt", ".foreign"), so that the next start does not
 * read it again but an operator can. desc gets what happened, for the caller's one log
 * line: "set aside as <path><suffix>" or "could not set it aside: <reason>". 0 or an
 * errno. */
int hes_statefile_set_aside(const char *path, const char *suffix, char *desc, size_t desclen);

#endif
