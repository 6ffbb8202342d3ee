/* conf_tree: the reader of collectd's config syntax subset for hesctl (see the header).
 *
 * It works a logical line at a time (physical lines joined where one ends in a backslash):
 * collectd's grammar is line based, and so are the error messages an operator needs. */
#include "config.h"

#include "conf_tree.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <sys/stat.h>
#include <wordexp.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct {
  const char *name;
  int line;
  char *err;
  size_t errlen;
} conf_ctx_t;

static void conf__fail(conf_ctx_t *c, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void conf__fail(conf_ctx_t *c, int line, const char *fmt, ...) {
  char why[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof(why), fmt, ap);
  va_end(ap);
  if (c->err != NULL && c->errlen > 0)
    snprintf(c->err, c->errlen, "%s:%d: %s", c->name, line, why);
}

static void conf__free_item(hes_conf_node_t *ci) {
  if (ci == NULL)
    return;
  free(ci->key);
  free(ci->file);
  for (size_t i = 0; i < ci->nvalues; i++)
    free(ci->values[i].s);
  free(ci->values);
  for (size_t i = 0; i < ci->nchildren; i++)
    conf__free_item(&ci->children[i]);
  free(ci->children);
}

void hes_conf_tree_free(hes_conf_node_t *root) {
  conf__free_item(root);
  free(root);
}

static bool conf__key_char(int ch, bool first) {
  if (isalpha(ch) || ch == '_')
    return true;
  return !first && (isdigit(ch) || ch == '.' || ch == '-');
}

/* An unquoted word ends at blanks, quotes, angle brackets and comments. */
static bool conf__word_char(int ch) {
  return ch > ' ' && ch < 0x7f && ch != '"' && ch != '<' && ch != '>' && ch != '#' && ch != '\\';
}

/* collectd's NUMBER: [+-]?digits, [+-]?[digits].digits[e{+|-}digits], 0x hex; converted by
 * strtod as collectd does (so an "octal" 017 is 17). Anything else is a word (1e4 too). */
static bool conf__is_number(const char *s, double *out) {
  const char *p = s;
  if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X') && isxdigit((unsigned char)p[2])) {
    for (p += 2; isxdigit((unsigned char)*p); p++)
      ;
    if (*p != '\0')
      return false;
    *out = strtod(s, NULL);
    return isfinite(*out);
  }
  if (*p == '+' || *p == '-')
    p++;
  if (!isdigit((unsigned char)*p) && !(*p == '.' && isdigit((unsigned char)p[1])))
    return false;
  while (isdigit((unsigned char)*p))
    p++;
  bool fraction = *p == '.';
  if (fraction) {
    p++;
    if (!isdigit((unsigned char)*p))
      return false;
    while (isdigit((unsigned char)*p))
      p++;
  }
  /* collectd's scanner: an exponent only after a fraction, and with its sign (1.5e+3) */
  if (fraction && (*p == 'e' || *p == 'E')) {
    p++;
    if (*p != '+' && *p != '-')
      return false;
    p++;
    if (!isdigit((unsigned char)*p))
      return false;
    while (isdigit((unsigned char)*p))
      p++;
  }
  if (*p != '\0')
    return false;
  errno = 0;
  double v = strtod(s, NULL);
  if (errno != 0 || !isfinite(v))
    return false;
  *out = v;
  return true;
}

static int conf__bool_word(const char *s) {
  static const char *const yes[] = {"true", "yes", "on"};
  static const char *const no[] = {"false", "no", "off"};
  for (size_t i = 0; i < 3; i++) {
    if (strcasecmp(s, yes[i]) == 0)
      return 1;
    if (strcasecmp(s, no[i]) == 0)
      return 0;
  }
  return -1;
}

int hes_conf_tree_add_value(hes_conf_node_t *ci, hes_conf_value_t v) {
  hes_conf_value_t *nv = realloc(ci->values, (ci->nvalues + 1) * sizeof(*nv));
  if (nv == NULL)
    return -1;
  ci->values = nv;
  ci->values[ci->nvalues++] = v;
  return 0;
}

/* Parses the values of one statement from *pp, up to the end of the line, or up to '>'
 * when in_tag. Leaves *pp after what it read. */
static bool conf__values(conf_ctx_t *c, const char **pp, hes_conf_node_t *ci, bool in_tag) {
  const char *p = *pp;
  for (;;) {
    while (*p == ' ' || *p == '\t')
      p++;
    if (*p == '\0' || *p == '#' || (in_tag && *p == '>'))
      break;
    hes_conf_value_t v = {0};
    if (*p == '"') {
      p++;
      size_t cap = strlen(p) + 1, n = 0;
      char *s = malloc(cap);
      if (s == NULL) {
        conf__fail(c, c->line, "out of memory");
        return false;
      }
      while (*p != '"') {
        if (*p == '\0') {
          free(s);
          conf__fail(c, c->line, "unterminated string");
          return false;
        }
        if (*p == '\\') {
          p++;
          if (*p == '\0') {
            free(s);
            conf__fail(c, c->line, "unterminated string");
            return false;
          }
        }
        s[n++] = *p++;
      }
      p++;
      s[n] = '\0';
      v.type = HES_CONF_STRING;
      v.quoted = true;
      v.s = s;
    } else if (conf__word_char((unsigned char)*p)) {
      const char *start = p;
      while (conf__word_char((unsigned char)*p))
        p++;
      v.s = strndup(start, (size_t)(p - start));
      if (v.s == NULL) {
        conf__fail(c, c->line, "out of memory");
        return false;
      }
      int b = conf__bool_word(v.s);
      if (b >= 0) {
        v.type = HES_CONF_BOOL;
        v.b = b == 1;
      } else if (conf__is_number(v.s, &v.n)) {
        v.type = HES_CONF_NUMBER;
      } else {
        v.type = HES_CONF_STRING;
      }
    } else {
      conf__fail(c, c->line, "unexpected character '%c'%s", *p,
                 *p == '<' || *p == '>' ? " (a block tag must stand on its own line)" : "");
      return false;
    }
    if (*p != '\0' && *p != ' ' && *p != '\t' && *p != '#' && !(in_tag && *p == '>')) {
      free(v.s);
      conf__fail(c, c->line, "missing blank after a value of \"%s\"", ci->key);
      return false;
    }
    if (hes_conf_tree_add_value(ci, v) != 0) {
      free(v.s);
      conf__fail(c, c->line, "out of memory");
      return false;
    }
  }
  *pp = p;
  return true;
}

static bool conf__key(conf_ctx_t *c, const char **pp, char **key) {
  const char *p = *pp, *start = p;
  if (!conf__key_char((unsigned char)*p, true)) {
    conf__fail(c, c->line, "expected a key, found '%c'", *p);
    return false;
  }
  while (conf__key_char((unsigned char)*p, false))
    p++;
  *key = strndup(start, (size_t)(p - start));
  if (*key == NULL) {
    conf__fail(c, c->line, "out of memory");
    return false;
  }
  *pp = p;
  return true;
}

/* Only blanks or a comment may follow a statement. */
static bool conf__line_end(conf_ctx_t *c, const char *p) {
  while (*p == ' ' || *p == '\t')
    p++;
  if (*p != '\0' && *p != '#') {
    conf__fail(c, c->line, "unexpected text after the statement: \"%.20s\"", p);
    return false;
  }
  return true;
}

/* Appends an empty child to block and returns it. */
hes_conf_node_t *hes_conf_tree_child(hes_conf_node_t *block) {
  hes_conf_node_t *nc = realloc(block->children, (block->nchildren + 1) * sizeof(*nc));
  if (nc == NULL)
    return NULL;
  block->children = nc;
  hes_conf_node_t *ci = &block->children[block->nchildren++];
  memset(ci, 0, sizeof(*ci));
  return ci;
}

typedef struct {
  hes_conf_node_t *root;
  /* the open blocks, by their path of child indices from root (children move on realloc) */
  size_t path[HES_CONF_MAX_DEPTH];
  size_t depth;
} conf_state_t;

static hes_conf_node_t *conf__current(conf_state_t *st) {
  hes_conf_node_t *b = st->root;
  for (size_t i = 0; i < st->depth; i++)
    b = &b->children[st->path[i]];
  return b;
}

static bool conf__statement(conf_ctx_t *c, conf_state_t *st, const char *p) {
  while (*p == ' ' || *p == '\t')
    p++;
  if (*p == '\0' || *p == '#')
    return true;
  hes_conf_node_t *block = conf__current(st);
  if (p[0] == '<' && p[1] == '/') {
    p += 2;
    char *key = NULL;
    if (!conf__key(c, &p, &key))
      return false;
    bool match = st->depth > 0 && strcasecmp(key, block->key) == 0;
    if (!match) {
      if (st->depth == 0)
        conf__fail(c, c->line, "</%s> without an open <%s>", key, key);
      else
        conf__fail(c, c->line, "</%s> does not close <%s> of line %d", key, block->key,
                   block->line);
      free(key);
      return false;
    }
    free(key);
    while (*p == ' ' || *p == '\t')
      p++;
    if (*p != '>') {
      conf__fail(c, c->line, "expected '>' to end the closing tag");
      return false;
    }
    st->depth--;
    /* collectd's parser keeps a statement only if it has values or children: an empty
     * <Relay></Relay> is not there at all. The closed block is its parent's last child. */
    if (block->nvalues == 0 && block->nchildren == 0) {
      hes_conf_node_t *parent = conf__current(st);
      conf__free_item(block);
      parent->nchildren--;
    }
    return conf__line_end(c, p + 1);
  }
  bool tag = *p == '<';
  if (tag) {
    p++;
    if (st->depth == HES_CONF_MAX_DEPTH) {
      conf__fail(c, c->line, "blocks nested deeper than %d", HES_CONF_MAX_DEPTH);
      return false;
    }
  }
  hes_conf_node_t *ci = hes_conf_tree_child(block);
  if (ci == NULL) {
    conf__fail(c, c->line, "out of memory");
    return false;
  }
  ci->line = c->line;
  ci->block = tag;
  ci->file = strdup(c->name);
  if (ci->file == NULL) {
    conf__fail(c, c->line, "out of memory");
    return false;
  }
  if (!conf__key(c, &p, &ci->key) || !conf__values(c, &p, ci, tag))
    return false;
  if (tag) {
    if (*p != '>') {
      conf__fail(c, c->line, "expected '>' to end <%s", ci->key);
      return false;
    }
    st->path[st->depth++] = block->nchildren - 1;
    return conf__line_end(c, p + 1);
  }
  if (ci->nvalues == 0) {
    conf__fail(c, c->line, "\"%s\" needs a value", ci->key);
    return false;
  }
  return true;
}

hes_conf_node_t *hes_conf_tree_parse(const char *text, size_t len, const char *name, char *err,
                                     size_t errlen) {
  conf_ctx_t c = {.name = name != NULL ? name : "config", .line = 0, .err = err, .errlen = errlen};
  if (text == NULL && len > 0) {
    conf__fail(&c, 0, "no text");
    return NULL;
  }
  if (len > HES_CONF_MAX_BYTES) {
    conf__fail(&c, 0, "larger than %u bytes", HES_CONF_MAX_BYTES);
    return NULL;
  }
  conf_state_t st = {.root = calloc(1, sizeof(hes_conf_node_t))};
  char *buf = malloc(len + 1); /* a logical line is never longer than the text */
  if (st.root == NULL || buf == NULL) {
    free(buf);
    free(st.root);
    conf__fail(&c, 0, "out of memory");
    return NULL;
  }
  st.root->block = true;
  size_t i = 0;
  int line = 1;
  bool ok = true;
  while (ok && i < len) {
    size_t n = 0;
    c.line = line; /* a statement is reported at its first physical line */
    for (;;) {
      size_t start = i;
      while (i < len && text[i] != '\n')
        i++;
      size_t end = i;
      if (end > start && text[end - 1] == '\r')
        end--;
      for (size_t k = start; k < end; k++) {
        unsigned char ch = (unsigned char)text[k];
        if ((ch < ' ' && ch != '\t') || ch == 0x7f) {
          conf__fail(&c, line, "control character 0x%02x", ch);
          ok = false;
          break;
        }
      }
      if (!ok)
        break;
      bool cont = end > start && text[end - 1] == '\\';
      if (cont)
        end--;
      memcpy(buf + n, text + start, end - start);
      n += end - start;
      if (i < len) {
        i++;
        line++;
      }
      if (!cont || i >= len)
        break;
    }
    if (!ok)
      break;
    buf[n] = '\0';
    ok = conf__statement(&c, &st, buf);
  }
  if (ok && st.depth > 0) {
    hes_conf_node_t *b = conf__current(&st);
    conf__fail(&c, line, "<%s> of line %d is not closed", b->key, b->line);
    ok = false;
  }
  free(buf);
  if (!ok) {
    hes_conf_tree_free(st.root);
    return NULL;
  }
  return st.root;
}

static hes_conf_node_t *conf__read_one(const char *path, char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return NULL;
  }
  size_t cap = 64 * 1024, len = 0;
  char *text = malloc(cap);
  bool ok = text != NULL;
  while (ok) {
    if (len == cap) {
      if (cap > HES_CONF_MAX_BYTES) {
        snprintf(err, errlen, "%s: larger than %u bytes", path, HES_CONF_MAX_BYTES);
        ok = false;
        break;
      }
      char *nt = realloc(text, cap * 2);
      if (nt == NULL) {
        ok = false;
        snprintf(err, errlen, "%s: out of memory", path);
        break;
      }
      text = nt;
      cap *= 2;
    }
    size_t got = fread(text + len, 1, cap - len, f);
    len += got;
    if (got == 0) {
      if (ferror(f)) {
        snprintf(err, errlen, "%s: read error", path);
        ok = false;
      }
      break;
    }
  }
  if (text == NULL)
    snprintf(err, errlen, "%s: out of memory", path);
  fclose(f);
  hes_conf_node_t *root = NULL;
  if (ok)
    root = hes_conf_tree_parse(text, len, path, err, errlen);
  free(text);
  return root;
}

/* ---- Include, the way collectd's configfile.c does it -------------------------------------- */

static hes_conf_node_t *conf__read_generic(const char *path, const char *filter, int depth,
                                           char *err, size_t errlen);
static int conf__includes(hes_conf_node_t *node, int depth, char *err, size_t errlen);

/* Moves the children of from to the end of into; from is left empty. */
static int conf__append(hes_conf_node_t *into, hes_conf_node_t *from) {
  if (from->nchildren == 0)
    return 0;
  hes_conf_node_t *nc = realloc(into->children, (into->nchildren + from->nchildren) * sizeof(*nc));
  if (nc == NULL)
    return -1;
  into->children = nc;
  memcpy(into->children + into->nchildren, from->children, from->nchildren * sizeof(*nc));
  into->nchildren += from->nchildren;
  free(from->children);
  from->children = NULL;
  from->nchildren = 0;
  return 0;
}

static int conf__name_cmp(const struct dirent **a, const struct dirent **b) {
  return strcmp((*a)->d_name, (*b)->d_name);
}

static int conf__dir_filter(const struct dirent *d) {
  return d->d_name[0] != '.';
}

static int conf__read_path(hes_conf_node_t *root, const char *path, const char *filter, int depth,
                           char *err, size_t errlen) {
  struct stat st;
  if (stat(path, &st) != 0)
    return 0; /* collectd logs it and goes on: a glob that matches nothing is no error */
  if (S_ISDIR(st.st_mode)) {
    struct dirent **names = NULL;
    int n = scandir(path, &names, conf__dir_filter, conf__name_cmp);
    if (n < 0) {
      snprintf(err, errlen, "%s: %s", path, strerror(errno));
      return -1;
    }
    int rc = 0;
    for (int i = 0; i < n; i++) {
      char sub[4096];
      if (rc == 0 &&
          snprintf(sub, sizeof(sub), "%s/%s", path, names[i]->d_name) < (int)sizeof(sub)) {
        hes_conf_node_t *part = conf__read_generic(sub, filter, depth, err, errlen);
        if (part == NULL || conf__append(root, part) != 0)
          rc = -1;
        hes_conf_tree_free(part);
      }
      free(names[i]);
    }
    free(names);
    return rc;
  }
  const char *base = strrchr(path, '/');
  base = base != NULL ? base + 1 : path;
  if (filter != NULL && fnmatch(filter, base, 0) != 0)
    return 0;
  hes_conf_node_t *part = conf__read_one(path, err, errlen);
  if (part == NULL)
    return -1;
  int rc = conf__includes(part, depth, err, errlen);
  if (rc == 0 && conf__append(root, part) != 0) {
    snprintf(err, errlen, "%s: out of memory", path);
    rc = -1;
  }
  hes_conf_tree_free(part);
  return rc;
}

/* The items of every file path names (a file, a directory or a glob), as one block. */
static hes_conf_node_t *conf__read_generic(const char *path, const char *filter, int depth,
                                           char *err, size_t errlen) {
  if (depth >= HES_CONF_MAX_INCLUDE) {
    snprintf(err, errlen, "%s: Include nested deeper than %d", path, HES_CONF_MAX_INCLUDE);
    return NULL;
  }
  hes_conf_node_t *root = calloc(1, sizeof(*root));
  if (root == NULL) {
    snprintf(err, errlen, "%s: out of memory", path);
    return NULL;
  }
  root->block = true;
  wordexp_t we;
  if (wordexp(path, &we, WRDE_NOCMD) != 0) {
    snprintf(err, errlen, "Include \"%s\": not a valid path or pattern", path);
    hes_conf_tree_free(root);
    return NULL;
  }
  int rc = 0;
  for (size_t i = 0; i < we.we_wordc && rc == 0; i++)
    rc = conf__read_path(root, we.we_wordv[i], filter, depth, err, errlen);
  wordfree(&we);
  if (rc != 0) {
    hes_conf_tree_free(root);
    return NULL;
  }
  return root;
}

/* Replaces each Include among a file's top-level items by the items it names. collectd
 * includes nothing from within a block: an Include there stays an item, and the config
 * module refuses it as an unknown key, as the plugin does. */
static int conf__includes(hes_conf_node_t *node, int depth, char *err, size_t errlen) {
  for (size_t i = 0; i < node->nchildren; i++) {
    hes_conf_node_t *inc = &node->children[i];
    if (strcasecmp(inc->key, "Include") != 0)
      continue;
    if (inc->nvalues != 1 || inc->values[0].type != HES_CONF_STRING) {
      snprintf(err, errlen, "%s:%d: Include needs exactly one string argument", inc->file,
               inc->line);
      return -1;
    }
    const char *filter = NULL;
    for (size_t j = 0; j < inc->nchildren; j++) {
      const hes_conf_node_t *f = &inc->children[j];
      if (strcasecmp(f->key, "Filter") != 0 || f->nvalues != 1 ||
          f->values[0].type != HES_CONF_STRING) {
        snprintf(err, errlen, "%s:%d: <Include> takes only Filter \"pattern\"", f->file, f->line);
        return -1;
      }
      filter = f->values[0].s;
    }
    hes_conf_node_t *part = conf__read_generic(inc->values[0].s, filter, depth + 1, err, errlen);
    if (part == NULL)
      return -1;
    /* node->children[i] becomes part's children, in their order */
    size_t n = part->nchildren, tail = node->nchildren - i - 1;
    hes_conf_node_t *nc = node->children;
    if (n > 1) {
      nc = realloc(node->children, (node->nchildren + n - 1) * sizeof(*nc));
      if (nc == NULL) {
        snprintf(err, errlen, "%s: out of memory", inc->values[0].s);
        hes_conf_tree_free(part);
        return -1;
      }
      node->children = nc;
    }
    hes_conf_node_t old = nc[i];
    memmove(nc + i + n, nc + i + 1, tail * sizeof(*nc));
    if (n > 0)
      memcpy(nc + i, part->children, n * sizeof(*nc));
    node->nchildren = node->nchildren - 1 + n;
    free(part->children);
    part->children = NULL;
    part->nchildren = 0;
    hes_conf_tree_free(part);
    conf__free_item(&old);
    i = i + n - 1; /* the included items had their own Includes followed already */
  }
  return 0;
}

hes_conf_node_t *hes_conf_tree_read(const char *path, char *err, size_t errlen) {
  hes_conf_node_t *root = conf__read_one(path, err, errlen);
  if (root != NULL && conf__includes(root, 0, err, errlen) != 0) {
    hes_conf_tree_free(root);
    return NULL;
  }
  return root;
}
