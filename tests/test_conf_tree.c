/* test_conf_tree: hesctl's reader of collectd's config syntax. Trees are dumped to text and
 * compared whole (golden strings), every error is checked to the letter (file:line: why),
 * the shipped conf/hes.conf must parse, and random mutations of a valid file must give a
 * tree or an error, never a crash (run it under ASan). */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "conf_tree.h"

typedef struct {
  char buf[8192];
  size_t len;
} dump_t;

static void dump_add(dump_t *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void dump_add(dump_t *d, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(d->buf + d->len, sizeof(d->buf) - d->len, fmt, ap);
  va_end(ap);
  assert_true(n >= 0 && (size_t)n < sizeof(d->buf) - d->len);
  d->len += (size_t)n;
}

/* One line per item: key, then values as s"..." (quoted), w:word, n:number, b:bool;
 * blocks as <key ...> with their children indented, then </key>. */
static void dump_item(dump_t *d, const hes_conf_node_t *ci, int depth) {
  dump_add(d, "%*s%s%s@%d", depth * 2, "", ci->block ? "<" : "", ci->key, ci->line);
  for (size_t i = 0; i < ci->nvalues; i++) {
    const hes_conf_value_t *v = &ci->values[i];
    switch (v->type) {
    case HES_CONF_STRING:
      if (v->quoted)
        dump_add(d, " s\"%s\"", v->s);
      else
        dump_add(d, " w:%s", v->s);
      break;
    case HES_CONF_NUMBER:
      dump_add(d, " n:%g", v->n);
      break;
    case HES_CONF_BOOL:
      dump_add(d, " b:%s", v->b ? "true" : "false");
      break;
    }
  }
  dump_add(d, "%s\n", ci->block ? ">" : "");
  for (size_t i = 0; i < ci->nchildren; i++)
    dump_item(d, &ci->children[i], depth + 1);
  if (ci->block)
    dump_add(d, "%*s</%s>\n", depth * 2, "", ci->key);
}

/* Parses text and returns its dump (static), or fails the test with the error. */
static const char *dump_of(const char *text) {
  static dump_t d;
  char err[256] = "";
  hes_conf_node_t *root = hes_conf_tree_parse(text, strlen(text), "t.conf", err, sizeof(err));
  if (root == NULL)
    fail_msg("parse failed: %s", err);
  d.len = 0;
  d.buf[0] = '\0';
  assert_true(root->block);
  for (size_t i = 0; i < root->nchildren; i++)
    dump_item(&d, &root->children[i], 0);
  hes_conf_tree_free(root);
  return d.buf;
}

/* The error of a text that must not parse. */
static const char *error_of(const char *text, size_t len) {
  static char err[256];
  err[0] = '\0';
  hes_conf_node_t *root = hes_conf_tree_parse(text, len, "t.conf", err, sizeof(err));
  assert_null(root);
  return err;
}

static void test_values(void **state) {
  (void)state;
  assert_string_equal(dump_of("URL \"http://h/\\\"q\\\"\\\\x\"\n"
                              "Port 1883\n"
                              "Neg -12.5e+2 +3 0.25\n"
                              "Flags true False YES no On off\n"
                              "Words hes csv.so a:b\n"
                              "Quoted \"1883\" \"true\" \"\"\n"
                              "Edges 0x10 1. .5 1e 12ab 1e4 1.5e3 017\n"),
                      "URL@1 s\"http://h/\"q\"\\x\"\n"
                      "Port@2 n:1883\n"
                      "Neg@3 n:-1250 n:3 n:0.25\n"
                      "Flags@4 b:true b:false b:true b:false b:true b:false\n"
                      "Words@5 w:hes w:csv.so w:a:b\n"
                      "Quoted@6 s\"1883\" s\"true\" s\"\"\n"
                      "Edges@7 n:16 w:1. n:0.5 w:1e w:12ab w:1e4 w:1.5e3 n:17\n");
}

static void test_blocks_comments_continuation(void **state) {
  (void)state;
  assert_string_equal(dump_of("# head comment\n"
                              "\n"
                              "LoadPlugin hes   # trailing\n"
                              "<Plugin \"hes\">\n"
                              "\t<Server \"a # not a comment\">\n"
                              "    Item \"voltageA\" \\\n"
                              "         \"voltageB\"\n"
                              "    <MQTT>\n"
                              "      Host \"h\"\r\n"
                              "    </mqtt>\n"
                              "  </Server>   # done\n"
                              "  <Relay>\n" /* no argument, no item: dropped, as collectd does */
                              "  </Relay>\n"
                              "</Plugin>"),
                      "LoadPlugin@3 w:hes\n"
                      "<Plugin@4 s\"hes\">\n"
                      "  <Server@5 s\"a # not a comment\">\n"
                      "    Item@6 s\"voltageA\" s\"voltageB\"\n"
                      "    <MQTT@8>\n"
                      "      Host@9 s\"h\"\n"
                      "    </MQTT>\n"
                      "  </Server>\n"
                      "</Plugin>\n");
  assert_string_equal(dump_of(""), "");
  assert_string_equal(dump_of("\n\n# only comments\n   \n"), "");
}

static void test_errors(void **state) {
  (void)state;
  static const struct {
    const char *text;
    const char *err;
  } cases[] = {
      {"A \"x\n", "t.conf:1: unterminated string"},
      {"A \"x\\", "t.conf:1: unterminated string"},
      {"A\n", "t.conf:1: \"A\" needs a value"},
      {"A \"x\"\"y\"\n", "t.conf:1: missing blank after a value of \"A\""},
      {"A x <B>\n", "t.conf:1: unexpected character '<' (a block tag must stand on its own line)"},
      {"1A x\n", "t.conf:1: expected a key, found '1'"},
      {"\"A\" x\n", "t.conf:1: expected a key, found '\"'"},
      {"<A>\n", "t.conf:2: <A> of line 1 is not closed"},
      {"<A>\n<B x>\n</A>\n", "t.conf:3: </A> does not close <B> of line 2"},
      {"</A>\n", "t.conf:1: </A> without an open <A>"},
      {"<A x\n</A>\n", "t.conf:1: expected '>' to end <A"},
      {"<A>\n</A\n", "t.conf:2: expected '>' to end the closing tag"},
      {"<A> x\n</A>\n", "t.conf:1: unexpected text after the statement: \"x\""},
      {"<A>\n</A> x\n", "t.conf:2: unexpected text after the statement: \"x\""},
      {"A \"\x01\"\n", "t.conf:1: control character 0x01"},
      {"A b\nB \"\x7f\"\n", "t.conf:2: control character 0x7f"},
      {"A b\rB c\n", "t.conf:1: control character 0x0d"},
      {"A \\\n  b \\\n  \"c\n", "t.conf:1: unterminated string"},
      {"A b\nC d \\\ne \"f\n", "t.conf:2: unterminated string"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    const char *got = error_of(cases[i].text, strlen(cases[i].text));
    if (strcmp(got, cases[i].err) != 0)
      fail_msg("case %zu: got \"%s\", expected \"%s\"", i, got, cases[i].err);
  }
  /* a NUL byte inside the text */
  assert_string_equal(error_of("A b\nC \"\0\"\n", 10), "t.conf:2: control character 0x00");
}

static void test_depth_and_size(void **state) {
  (void)state;
  char text[2048];
  size_t n = 0;
  for (int i = 0; i < HES_CONF_MAX_DEPTH; i++)
    n += (size_t)snprintf(text + n, sizeof(text) - n, "<B%d>\n", i);
  for (int i = HES_CONF_MAX_DEPTH - 1; i >= 0; i--)
    n += (size_t)snprintf(text + n, sizeof(text) - n, "</B%d>\n", i);
  char err[256];
  hes_conf_node_t *root = hes_conf_tree_parse(text, n, "t.conf", err, sizeof(err));
  assert_non_null(root);
  hes_conf_tree_free(root);

  n = 0;
  for (int i = 0; i <= HES_CONF_MAX_DEPTH; i++)
    n += (size_t)snprintf(text + n, sizeof(text) - n, "<B%d>\n", i);
  assert_string_equal(error_of(text, n), "t.conf:17: blocks nested deeper than 16");

  size_t big = HES_CONF_MAX_BYTES + 1;
  char *huge = malloc(big);
  assert_non_null(huge);
  memset(huge, '\n', big);
  assert_string_equal(error_of(huge, big), "t.conf:0: larger than 4194304 bytes");
  free(huge);
}

static void test_shipped_conf(void **state) {
  (void)state;
  const char *top = getenv("top_srcdir");
  char path[4096];
  snprintf(path, sizeof(path), "%s/conf/hes.conf", top != NULL ? top : ".");
  char err[512] = "";
  hes_conf_node_t *root = hes_conf_tree_read(path, err, sizeof(err));
  if (root == NULL)
    fail_msg("%s", err);
  const hes_conf_node_t *server = NULL;
  for (size_t i = 0; i < root->nchildren; i++) {
    const hes_conf_node_t *p = &root->children[i];
    if (p->block && strcmp(p->key, "Plugin") == 0 && p->nvalues == 1 &&
        strcmp(p->values[0].s, "hes") == 0 && p->nchildren > 0)
      server = &p->children[0];
  }
  assert_non_null(server);
  assert_string_equal(server->key, "Server");
  assert_string_equal(server->values[0].s, "hes1");
  const char *url = NULL, *tenant = NULL;
  for (size_t i = 0; i < server->nchildren; i++) {
    if (strcmp(server->children[i].key, "URL") == 0)
      url = server->children[i].values[0].s;
    if (strcmp(server->children[i].key, "TenantCode") == 0)
      tenant = server->children[i].values[0].s;
  }
  assert_string_equal(url, "https://hes.example.com");
  assert_string_equal(tenant, "1000000067");
  hes_conf_tree_free(root);

  err[0] = '\0';
  assert_null(hes_conf_tree_read("/nonexistent/hes.conf", err, sizeof(err)));
  assert_string_equal(err, "/nonexistent/hes.conf: No such file or directory");
}

static void write_file(const char *dir, const char *name, const char *text) {
  char path[4096];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  assert_int_equal(fclose(f), 0);
}

/* Include as collectd does it: a directory's files in name order (dot files skipped,
 * recursively), a glob, a Filter, at a file's top level only (an Include in a block stays an
 * item); a path that matches nothing is skipped; each item keeps the file and line it came from; a
 * loop stops at 8 levels. */
static void test_include(void **state) {
  (void)state;
  char dir[] = "/tmp/test_conf_tree.XXXXXX";
  assert_non_null(mkdtemp(dir));
  char sub[4200], path[4200], text[4096];
  snprintf(sub, sizeof(sub), "%s/d", dir);
  assert_int_equal(mkdir(sub, 0700), 0);
  write_file(sub, "b.conf", "B 2\n");
  write_file(sub, "a.conf", "A 1\n");
  write_file(sub, ".hidden.conf", "Hidden 1\n");
  write_file(sub, "c.txt", "C 3\n");
  write_file(dir, "g1.conf", "G1 \"x\"\n");
  write_file(dir, "g2.conf", "G2 \"y\"\n");
  snprintf(text, sizeof(text),
           "First 0\n"
           "<Include \"%s/d\">\n  Filter \"*.conf\"\n</Include>\n"
           "Include \"%s/g*.conf\"\nInclude \"%s/none*.conf\"\n"
           "<Plugin hes>\n  Include \"%s/g*.conf\"\n</Plugin>\n"
           "Last 9\n",
           dir, dir, dir, dir);
  write_file(dir, "main.conf", text);
  snprintf(path, sizeof(path), "%s/main.conf", dir);
  char err[512] = "";
  hes_conf_node_t *root = hes_conf_tree_read(path, err, sizeof(err));
  if (root == NULL)
    fail_msg("%s", err);
  dump_t d = {.len = 0};
  for (size_t i = 0; i < root->nchildren; i++)
    dump_item(&d, &root->children[i], 0);
  char want[4096];
  snprintf(want, sizeof(want),
           "First@1 n:0\n"
           "A@1 n:1\n"
           "B@1 n:2\n"
           "G1@1 s\"x\"\n"
           "G2@1 s\"y\"\n"
           "<Plugin@7 w:hes>\n"
           "  Include@8 s\"%s/g*.conf\"\n"
           "</Plugin>\n"
           "Last@10 n:9\n",
           dir);
  assert_string_equal(d.buf, want);
  snprintf(path, sizeof(path), "%s/d/a.conf", dir);
  assert_string_equal(root->children[1].file, path);
  hes_conf_tree_free(root);

  /* a file that includes itself */
  snprintf(text, sizeof(text), "Include \"%s/loop.conf\"\n", dir);
  write_file(dir, "loop.conf", text);
  snprintf(path, sizeof(path), "%s/loop.conf", dir);
  assert_null(hes_conf_tree_read(path, err, sizeof(err)));
  assert_non_null(strstr(err, "Include nested deeper than 8"));
  /* a syntax error in an included file names that file */
  write_file(dir, "bad.inc", "<Oops>\n");
  snprintf(text, sizeof(text), "Include \"%s/bad.inc\"\n", dir);
  write_file(dir, "top.conf", text);
  snprintf(path, sizeof(path), "%s/top.conf", dir);
  assert_null(hes_conf_tree_read(path, err, sizeof(err)));
  snprintf(text, sizeof(text), "%s/bad.inc:2: <Oops> of line 1 is not closed", dir);
  assert_string_equal(err, text);

  snprintf(text, sizeof(text), "rm -rf '%s'", dir);
  assert_int_equal(system(text), 0);
}

/* Random single-byte edits, insertions and cuts of a valid file: a tree or an error naming
 * t.conf, never a crash or a leak. */
static void test_random_mutations(void **state) {
  (void)state;
  static const char base[] = "LoadPlugin hes\n"
                             "<Plugin hes>\n"
                             "  <Server \"hes1\">\n"
                             "    URL \"https://h\"  # c\n"
                             "    Timeout 10000\n"
                             "    VerifyPeer false\n"
                             "    Item \"a\" \\\n"
                             "      \"b\"\n"
                             "    <MQTT>\n"
                             "      Host \"x\\\"y\"\n"
                             "    </MQTT>\n"
                             "  </Server>\n"
                             "</Plugin>\n";
  static const char alphabet[] = "<>/\"\\# \t\n\rabAZ09.-+e\x01";
  uint64_t seed = 0x2545F4914F6CDD1DULL;
  size_t parsed = 0, refused = 0;
  char text[sizeof(base) + 16];
  for (int round = 0; round < 20000; round++) {
    size_t len = sizeof(base) - 1;
    memcpy(text, base, len);
    int edits = 1 + (int)(seed % 3);
    for (int e = 0; e < edits && len > 0; e++) {
      seed ^= seed << 13;
      seed ^= seed >> 7;
      seed ^= seed << 17;
      size_t at = (size_t)(seed % len);
      char ch = alphabet[(seed >> 32) % (sizeof(alphabet) - 1)];
      switch ((seed >> 40) % 3) {
      case 0:
        text[at] = ch;
        break;
      case 1:
        if (len < sizeof(text)) {
          memmove(text + at + 1, text + at, len - at);
          text[at] = ch;
          len++;
        }
        break;
      default:
        len = at;
        break;
      }
    }
    char err[256] = "";
    hes_conf_node_t *root = hes_conf_tree_parse(text, len, "t.conf", err, sizeof(err));
    if (root != NULL) {
      parsed++;
      hes_conf_tree_free(root);
    } else {
      refused++;
      if (strncmp(err, "t.conf:", 7) != 0)
        fail_msg("round %d: error without file:line: \"%s\"", round, err);
    }
  }
  /* both outcomes are common, or the mutations test nothing */
  assert_true(parsed > 1000);
  assert_true(refused > 1000);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_values),           cmocka_unit_test(test_blocks_comments_continuation),
      cmocka_unit_test(test_errors),           cmocka_unit_test(test_depth_and_size),
      cmocka_unit_test(test_shipped_conf),     cmocka_unit_test(test_include),
      cmocka_unit_test(test_random_mutations),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
