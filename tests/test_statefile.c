/* Tests for statefile: the header check, the size bound, the line reader's view of truncated
 * and NUL-holding lines, the atomic write, and setting a file aside. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "statefile.h"

#define HDR "collectd-hes test state v1"

static char dir[128];

static int setup(void **state) {
  (void)state;
  snprintf(dir, sizeof(dir), "/tmp/test_statefile.XXXXXX");
  return mkdtemp(dir) == NULL ? -1 : 0;
}

static void path_of(char *out, size_t cap, const char *name) {
  snprintf(out, cap, "%s/%s", dir, name);
}

static void put(const char *path, const char *text, size_t len) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(text, 1, len, f), len);
  assert_int_equal(fclose(f), 0);
}

static bool exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

static hes_statefile_result_t rd(const char *path, size_t max, char **text, char **body,
                                 size_t *len, char *why, size_t whylen) {
  return hes_statefile_read(path, HDR, "test state file", max, text, len, body, why, whylen);
}

static void test_read(void **state) {
  char path[256];
  char why[256];
  char *text = NULL;
  char *body = NULL;
  size_t len = 0;

  (void)state;
  path_of(path, sizeof(path), "r.state");
  unlink(path);
  assert_int_equal(rd(path, 1024, &text, &body, &len, why, sizeof(why)), HES_STATEFILE_NONE);

  put(path, HDR "\nline one\n", strlen(HDR "\nline one\n"));
  assert_int_equal(rd(path, 1024, &text, &body, &len, why, sizeof(why)), HES_STATEFILE_OK);
  assert_int_equal(len, strlen(HDR "\nline one\n"));
  assert_string_equal(body, "line one\n");
  free(text);

  static const struct {
    const char *text;
    size_t len;
  } bad[] = {
      {"", 0},
      {HDR, sizeof(HDR) - 1},             /* no newline after the header */
      {HDR "x\n", sizeof(HDR "x\n") - 1}, /* a longer first line */
      {"collectd-hes test state v2\n", sizeof(HDR)},
      {"collectd-hes test\0state v1\n", sizeof(HDR)},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    put(path, bad[i].text, bad[i].len);
    text = NULL;
    assert_int_equal(rd(path, 1024, &text, &body, &len, why, sizeof(why)), HES_STATEFILE_BAD);
    assert_null(text);
    assert_non_null(strstr(why, "not a test state file"));
  }
  /* the size bound */
  put(path, HDR "\n0123456789\n", strlen(HDR "\n0123456789\n"));
  assert_int_equal(rd(path, 20, &text, &body, &len, why, sizeof(why)), HES_STATEFILE_BAD);
  assert_non_null(strstr(why, "too large"));
  /* a directory */
  path_of(path, sizeof(path), "d.state");
  assert_int_equal(mkdir(path, 0700), 0);
  assert_int_equal(rd(path, 1024, &text, &body, &len, why, sizeof(why)), HES_STATEFILE_BAD);
  assert_non_null(strstr(why, "not a regular file"));
  assert_int_equal(rmdir(path), 0);
}

static void test_lines(void **state) {
  char text[] = "one\n\nthree\nfo\0ur\nfive";
  hes_statefile_lines_t r;
  char *line;

  (void)state;
  hes_statefile_lines_init(&r, text, text + sizeof(text) - 1);
  assert_int_equal(hes_statefile_line(&r, &line), 1);
  assert_string_equal(line, "one");
  assert_int_equal(hes_statefile_line(&r, &line), 1);
  assert_string_equal(line, "");
  assert_int_equal(hes_statefile_line(&r, &line), 1);
  assert_string_equal(line, "three");
  /* a NUL byte inside a line: refused, and the reader stays there */
  assert_int_equal(hes_statefile_line(&r, &line), -1);
  assert_null(line);
  assert_int_equal(hes_statefile_line(&r, &line), -1);

  char text2[] = "a\nlast without newline";
  hes_statefile_lines_init(&r, text2, text2 + sizeof(text2) - 1);
  assert_int_equal(hes_statefile_line(&r, &line), 1);
  assert_int_equal(hes_statefile_line(&r, &line), -1);

  char text3[] = "a\n";
  hes_statefile_lines_init(&r, text3, text3 + sizeof(text3) - 1);
  assert_int_equal(hes_statefile_line(&r, &line), 1);
  assert_int_equal(hes_statefile_line(&r, &line), 0);
}

static void test_write_and_set_aside(void **state) {
  char path[256];
  char aside[300];
  char desc[512];
  char why[256];
  char *text = NULL;
  char *body = NULL;
  size_t len = 0;
  struct stat st;

  (void)state;
  path_of(path, sizeof(path), "w.state");
  unlink(path);
  assert_int_equal(hes_statefile_write(path, HDR "\nfirst\n", strlen(HDR "\nfirst\n")), 0);
  assert_int_equal(hes_statefile_write(path, HDR "\nsecond\n", strlen(HDR "\nsecond\n")), 0);
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  snprintf(aside, sizeof(aside), "%s.tmp", path);
  assert_false(exists(aside)); /* no temporary file left behind */
  assert_int_equal(rd(path, 1024, &text, &body, &len, why, sizeof(why)), HES_STATEFILE_OK);
  assert_string_equal(body, "second\n");
  free(text);

  assert_int_equal(hes_statefile_set_aside(path, ".corrupt", desc, sizeof(desc)), 0);
  snprintf(aside, sizeof(aside), "%s.corrupt", path);
  assert_true(exists(aside));
  assert_false(exists(path));
  assert_non_null(strstr(desc, "set aside as "));
  assert_non_null(strstr(desc, aside));
  /* nothing there any more: said, not hidden */
  assert_int_equal(hes_statefile_set_aside(path, ".corrupt", desc, sizeof(desc)), ENOENT);
  assert_non_null(strstr(desc, "could not set it aside"));
  unlink(aside);

  /* a directory that does not exist: the write fails and says why */
  assert_int_equal(hes_statefile_write("/nonexistent-dir-of-test-statefile/x", "x\n", 2), ENOENT);
}

static int teardown(void **state) {
  char cmd[256];
  (void)state;
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_read),
      cmocka_unit_test(test_lines),
      cmocka_unit_test(test_write_and_set_aside),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
