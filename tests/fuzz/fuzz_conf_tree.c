/* libFuzzer target for the config tree's reader of collectd's syntax (hes_conf_tree_parse
 * in src/lib/conf_tree.c), which hesctl uses. Any byte sequence is parsed; an accepted tree is
 * checked against conf_tree.h's promises (key syntax, typed values, depth, line numbers in file
 * order), printed back as config text and parsed again, and the two trees must be equal. A refused
 * input must come with a "fuzz:<line>: why" message. Built and run by tests/fuzz/run_all.sh. */
#include "config.h"

#include <ctype.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf_tree.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "fuzz_conf_tree: broken promise: %s (line %d)\n", #cond, __LINE__);          \
      abort();                                                                                     \
    }                                                                                              \
  } while (0)

static bool is_bool_word(const char *s) {
  static const char *const w[] = {"true", "yes", "on", "false", "no", "off"};
  for (size_t i = 0; i < 6; i++)
    if (strcasecmp(s, w[i]) == 0)
      return true;
  return false;
}

static void check_item(const hes_conf_node_t *ci, size_t depth, int *last_line) {
  CHECK(ci->key != NULL && ci->key[0] != '\0');
  CHECK(isalpha((unsigned char)ci->key[0]) || ci->key[0] == '_');
  for (const char *k = ci->key; *k; k++)
    CHECK(isalnum((unsigned char)*k) || *k == '_' || *k == '.' || *k == '-');
  CHECK(ci->file != NULL && strcmp(ci->file, "fuzz") == 0);
  CHECK(!ci->block || ci->nvalues > 0 || ci->nchildren > 0); /* empty blocks are dropped */
  CHECK(ci->line >= *last_line);
  *last_line = ci->line;
  CHECK(ci->nvalues == 0 || ci->values != NULL);
  for (size_t i = 0; i < ci->nvalues; i++) {
    const hes_conf_value_t *v = &ci->values[i];
    CHECK(v->s != NULL);
    switch (v->type) {
    case HES_CONF_STRING:
      break;
    case HES_CONF_NUMBER:
      CHECK(!v->quoted && isfinite(v->n));
      break;
    case HES_CONF_BOOL:
      CHECK(!v->quoted && is_bool_word(v->s));
      break;
    default:
      CHECK(!"unknown value type");
    }
  }
  if (!ci->block) {
    CHECK(ci->nvalues >= 1);
    CHECK(ci->children == NULL && ci->nchildren == 0);
    return;
  }
  CHECK(depth <= HES_CONF_MAX_DEPTH);
  for (size_t i = 0; i < ci->nchildren; i++)
    check_item(&ci->children[i], depth + 1, last_line);
}

/* Appends to a growing buffer; the reader's own limit keeps it bounded. */
typedef struct {
  char *p;
  size_t len, cap;
} buf_t;

static void put(buf_t *b, const char *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1)
      cap *= 2;
    b->p = realloc(b->p, cap);
    CHECK(b->p != NULL);
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void puts_(buf_t *b, const char *s) {
  put(b, s, strlen(s));
}

static void print_item(buf_t *b, const hes_conf_node_t *ci) {
  if (ci->block)
    puts_(b, "<");
  puts_(b, ci->key);
  for (size_t i = 0; i < ci->nvalues; i++) {
    const hes_conf_value_t *v = &ci->values[i];
    puts_(b, " ");
    if (!v->quoted) {
      puts_(b, v->s);
      continue;
    }
    puts_(b, "\"");
    for (const char *s = v->s; *s; s++) {
      if (*s == '"' || *s == '\\')
        puts_(b, "\\");
      put(b, s, 1);
    }
    puts_(b, "\"");
  }
  if (!ci->block) {
    puts_(b, "\n");
    return;
  }
  puts_(b, ">\n");
  for (size_t i = 0; i < ci->nchildren; i++)
    print_item(b, &ci->children[i]);
  puts_(b, "</");
  puts_(b, ci->key);
  puts_(b, ">\n");
}

static void check_equal(const hes_conf_node_t *a, const hes_conf_node_t *b) {
  CHECK(strcmp(a->key, b->key) == 0);
  CHECK(a->block == b->block);
  CHECK(a->nvalues == b->nvalues);
  for (size_t i = 0; i < a->nvalues; i++) {
    const hes_conf_value_t *x = &a->values[i], *y = &b->values[i];
    CHECK(x->type == y->type && x->quoted == y->quoted && strcmp(x->s, y->s) == 0);
    CHECK(x->type != HES_CONF_NUMBER || x->n == y->n);
    CHECK(x->type != HES_CONF_BOOL || x->b == y->b);
  }
  CHECK(a->nchildren == b->nchildren);
  for (size_t i = 0; i < a->nchildren; i++)
    check_equal(&a->children[i], &b->children[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char err[512];
  memset(err, 'x', sizeof err);
  hes_conf_node_t *root = hes_conf_tree_parse((const char *)data, size, "fuzz", err, sizeof err);
  if (root == NULL) {
    CHECK(memchr(err, '\0', sizeof err) != NULL);
    CHECK(strncmp(err, "fuzz:", 5) == 0 && strlen(err) > 6);
    return 0;
  }
  CHECK(root->block);
  int last = 0;
  for (size_t i = 0; i < root->nchildren; i++)
    check_item(&root->children[i], 1, &last);
  CHECK(last <= 1 || (size_t)last <= size);

  buf_t b = {0};
  puts_(&b, "");
  for (size_t i = 0; i < root->nchildren; i++)
    print_item(&b, &root->children[i]);
  hes_conf_node_t *again = hes_conf_tree_parse(b.p, b.len, "fuzz", err, sizeof err);
  if (again == NULL)
    fprintf(stderr, "fuzz_conf_tree: reprint refused: %s\n%s\n", err, b.p);
  CHECK(again != NULL);
  CHECK(again->nchildren == root->nchildren);
  for (size_t i = 0; i < root->nchildren; i++)
    check_equal(&root->children[i], &again->children[i]);
  hes_conf_tree_free(again);
  hes_conf_tree_free(root);
  free(b.p);
  return 0;
}
