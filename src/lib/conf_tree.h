/* conf_tree: a small, strict reader of the subset of collectd's config syntax that the
 * plugin's configuration uses, so hesctl can read the same file as collectd:
 *
 *   # a comment, to the end of the line (outside quotes)
 *   Key value value ...            values: "quoted \"string\"", numbers, true/false
 *                                  (also yes/no/on/off), unquoted words (LoadPlugin hes)
 *   <Block "arg" ...>              nested blocks, closed by </Block>
 *   </Block>
 *   A line ending in a backslash continues on the next line.
 *
 *   Include "path" / <Include "path"> Filter "*.conf" </Include>   as collectd does it: a
 *                                  file, a directory (its files in name order, recursively,
 *                                  dot files skipped) or a shell glob; at a file's top level
 *                                  only (collectd includes nothing from within a block); a
 *                                  path that matches nothing is skipped; 8 levels at most
 *
 * The result is a tree of items, each with its file and line number, so the caller's errors can
 * name file:line as well. Errors name file:line and what was wrong. Bounded: files larger
 * than HES_CONF_MAX_BYTES, blocks nested deeper than HES_CONF_MAX_DEPTH and NUL or
 * control bytes are refused. */
#ifndef HES_CONF_TREE_H
#define HES_CONF_TREE_H

#include <stdbool.h>
#include <stddef.h>

#define HES_CONF_MAX_BYTES   (4u * 1024u * 1024u)
#define HES_CONF_MAX_DEPTH   16
#define HES_CONF_MAX_INCLUDE 8 /* collectd's CF_MAX_DEPTH */

typedef enum {
  HES_CONF_STRING, /* quoted, or an unquoted word */
  HES_CONF_NUMBER,
  HES_CONF_BOOL,
} hes_conf_value_type_t;

typedef struct {
  hes_conf_value_type_t type;
  bool quoted; /* a STRING that was written in quotes */
  char *s;     /* the text (unescaped for quoted strings); set for every type */
  double n;    /* NUMBER */
  bool b;      /* BOOL */
} hes_conf_value_t;

typedef struct hes_conf_node {
  char *key;
  hes_conf_value_t *values;
  size_t nvalues;
  struct hes_conf_node *children; /* a block's items; NULL for an option */
  size_t nchildren;
  bool block;
  int line;
  char *file; /* NULL when the tree did not come from a file (the plugin's adapter) */
} hes_conf_node_t;

/* Parses text[0..len) (name is used in error messages). Returns the root, a block whose
 * children are the file's top-level items, or NULL with err set to "name:line: why". */
hes_conf_node_t *hes_conf_tree_parse(const char *text, size_t len, const char *name, char *err,
                                     size_t errlen);
/* Reads and parses a file and follows its Include statements. */
hes_conf_node_t *hes_conf_tree_read(const char *path, char *err, size_t errlen);
/* The tree's own allocations, for an adapter that builds a tree from another source. */
hes_conf_node_t *hes_conf_tree_child(hes_conf_node_t *block);
int hes_conf_tree_add_value(hes_conf_node_t *node, hes_conf_value_t v);
void hes_conf_tree_free(hes_conf_node_t *root);

#endif
