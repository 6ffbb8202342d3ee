/* hesctl_conf: a small, strict reader of the subset of collectd's config syntax that the
 * plugin's configuration uses, so hesctl can read the same file as collectd:
 *
 *   # a comment, to the end of the line (outside quotes)
 *   Key value value ...            values: "quoted \"string\"", numbers, true/false
 *                                  (also yes/no/on/off), unquoted words (LoadPlugin hes)
 *   <Block "arg" ...>              nested blocks, closed by </Block>
 *   </Block>
 *   A line ending in a backslash continues on the next line.
 *
 * The result is a tree of items, each with its line number, so the caller's errors can
 * name file:line as well. Errors name file:line and what was wrong. Bounded: files larger
 * than HESCTL_CONF_MAX_BYTES, blocks nested deeper than HESCTL_CONF_MAX_DEPTH and NUL or
 * control bytes are refused. */
#ifndef HESCTL_CONF_H
#define HESCTL_CONF_H

#include <stdbool.h>
#include <stddef.h>

#define HESCTL_CONF_MAX_BYTES (4u * 1024u * 1024u)
#define HESCTL_CONF_MAX_DEPTH 16

typedef enum {
  HESCTL_CV_STRING, /* quoted, or an unquoted word */
  HESCTL_CV_NUMBER,
  HESCTL_CV_BOOL,
} hesctl_cv_type_t;

typedef struct {
  hesctl_cv_type_t type;
  bool quoted; /* a STRING that was written in quotes */
  char *s;     /* the text (unescaped for quoted strings); set for every type */
  double n;    /* NUMBER */
  bool b;      /* BOOL */
} hesctl_cv_t;

typedef struct hesctl_ci {
  char *key;
  hesctl_cv_t *values;
  size_t nvalues;
  struct hesctl_ci *children; /* a block's items; NULL for an option */
  size_t nchildren;
  bool block;
  int line;
} hesctl_ci_t;

/* Parses text[0..len) (name is used in error messages). Returns the root, a block whose
 * children are the file's top-level items, or NULL with err set to "name:line: why". */
hesctl_ci_t *hesctl_conf_parse(const char *text, size_t len, const char *name, char *err,
                               size_t errlen);
/* Reads and parses a file. */
hesctl_ci_t *hesctl_conf_parse_file(const char *path, char *err, size_t errlen);
void hesctl_conf_free(hesctl_ci_t *root);

#endif
