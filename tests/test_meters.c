/* test_meters: meter number validation, the compact store and its hash index, MeterFile
 * parsing (golden files in tests/data/meters-*.list and generated ones), and the memory and
 * speed targets at 100,000 meters. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "meters.h"

#define BIG_COUNT 100000

static char data_dir[4096];
static char tmp_dir[64];

static const char *data_path(const char *name) {
  static char path[8192];
  snprintf(path, sizeof(path), "%s/%s", data_dir, name);
  return path;
}

static const char *tmp_path(const char *name) {
  static char path[256];
  snprintf(path, sizeof(path), "%s/%s", tmp_dir, name);
  return path;
}

static void write_file(const char *path, const char *content, size_t len) {
  FILE *fh = fopen(path, "wb");
  assert_non_null(fh);
  assert_int_equal(fwrite(content, 1, len, fh), len);
  assert_int_equal(fclose(fh), 0);
}

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Seconds a timed step may take: 1, times HES_TEST_TIME_FACTOR under valgrind and the like. */
static double time_limit(void) {
  const char *f = getenv("HES_TEST_TIME_FACTOR");
  double factor = f != NULL ? atof(f) : 1.0;
  return factor > 1.0 ? factor : 1.0;
}

static uint32_t find_str(const hes_meters_t *m, const char *s) {
  return hes_meters_find(m, s, strlen(s));
}

static void test_is_valid(void **state) {
  (void)state;
  assert_true(hes_meter_is_valid("202407100001"));
  assert_true(hes_meter_is_valid("0"));
  assert_true(hes_meter_is_valid("AZaz09_-"));
  assert_true(hes_meter_is_valid("12345678901234567890123456789012"));   /* 32 */
  assert_false(hes_meter_is_valid("123456789012345678901234567890123")); /* 33 */
  assert_false(hes_meter_is_valid(NULL));
  assert_false(hes_meter_is_valid(""));
  assert_false(hes_meter_is_valid(" 202407100001"));
  assert_false(hes_meter_is_valid("202407100001 "));
  assert_false(hes_meter_is_valid("2024,0710"));
  assert_false(hes_meter_is_valid("2024\"0710"));
  assert_false(hes_meter_is_valid("2024.0710"));
  assert_false(hes_meter_is_valid("2024/0710"));
  assert_false(hes_meter_is_valid("2024#0710"));
  assert_false(hes_meter_is_valid("2024\n"));
  assert_false(hes_meter_is_valid("caf\xc3\xa9"));
  assert_false(hes_meter_is_valid("\xff"));
}

static void test_add_find_at(void **state) {
  hes_meters_t *m = hes_meters_new();
  (void)state;

  assert_non_null(m);
  assert_int_equal(hes_meters_count(m), 0);
  assert_int_equal(find_str(m, "202407100001"), HES_METER_NONE); /* empty, no index yet */
  assert_int_equal(hes_meters_add(m, "202407100001"), HES_METERS_OK);
  assert_int_equal(hes_meters_add(m, "202407100002"), HES_METERS_OK);
  assert_int_equal(hes_meters_add(m, "7"), HES_METERS_OK);
  assert_int_equal(hes_meters_add(m, "202407100001"), HES_METERS_EDUPLICATE);
  assert_int_equal(hes_meters_add(m, "7"), HES_METERS_EDUPLICATE);
  assert_int_equal(hes_meters_add(m, ""), HES_METERS_EINVAL);
  assert_int_equal(hes_meters_add(m, "2024 0710"), HES_METERS_EINVAL);
  assert_int_equal(hes_meters_add(m, "123456789012345678901234567890123"), HES_METERS_EINVAL);
  assert_int_equal(hes_meters_add(m, NULL), HES_METERS_EINVAL);
  assert_int_equal(hes_meters_add(NULL, "1"), HES_METERS_EINVAL);
  assert_int_equal(hes_meters_count(m), 3);

  /* The index is current before seal too. */
  assert_int_equal(find_str(m, "202407100002"), 1);
  assert_int_equal(hes_meters_seal(m), HES_METERS_OK);
  assert_int_equal(hes_meters_seal(m), HES_METERS_OK);                    /* idempotent */
  assert_int_equal(hes_meters_add(m, "202407100009"), HES_METERS_EINVAL); /* read-only now */
  assert_int_equal(hes_meters_count(m), 3);

  assert_string_equal(hes_meters_at(m, 0), "202407100001");
  assert_string_equal(hes_meters_at(m, 1), "202407100002");
  assert_string_equal(hes_meters_at(m, 2), "7");
  assert_null(hes_meters_at(m, 3));
  assert_null(hes_meters_at(m, HES_METER_NONE));
  assert_null(hes_meters_at(NULL, 0));

  assert_int_equal(find_str(m, "202407100001"), 0);
  assert_int_equal(find_str(m, "202407100002"), 1);
  assert_int_equal(find_str(m, "7"), 2);
  hes_meters_free(m);
}

static void test_find_edge_cases(void **state) {
  hes_meters_t *m = hes_meters_new();
  const char buf[] = "2024071000019999"; /* not a stored meter, but starts with one */
  (void)state;

  assert_int_equal(hes_meters_add(m, "202407100001"), HES_METERS_OK);
  assert_int_equal(hes_meters_add(m, "20240710000"), HES_METERS_OK);
  assert_int_equal(hes_meters_seal(m), HES_METERS_OK);

  assert_int_equal(find_str(m, "202407100001"), 0);
  assert_int_equal(find_str(m, "20240710000"), 1);
  assert_int_equal(find_str(m, "2024071000"), HES_METER_NONE);    /* prefix of both */
  assert_int_equal(find_str(m, "2024071000011"), HES_METER_NONE); /* longer */
  assert_int_equal(find_str(m, "202407100002"), HES_METER_NONE);
  assert_int_equal(find_str(m, "unknown"), HES_METER_NONE);
  assert_int_equal(find_str(m, ""), HES_METER_NONE);
  assert_int_equal(find_str(m, "202407100001 "), HES_METER_NONE);
  /* s need not be NUL-terminated: the length decides. */
  assert_int_equal(hes_meters_find(m, buf, 12), 0);
  assert_int_equal(hes_meters_find(m, buf, 11), 1);
  assert_int_equal(hes_meters_find(m, buf, 13), HES_METER_NONE);
  assert_int_equal(hes_meters_find(m, buf, 0), HES_METER_NONE);
  /* An embedded NUL never matches. */
  assert_int_equal(hes_meters_find(m, "20240710000\0", 12), HES_METER_NONE);
  assert_int_equal(hes_meters_find(m, NULL, 3), HES_METER_NONE);
  assert_int_equal(hes_meters_find(NULL, "1", 1), HES_METER_NONE);
  assert_int_equal(hes_meters_find(m, "12345678901234567890123456789012345", 35), HES_METER_NONE);
  hes_meters_free(m);
}

static void test_empty_and_null(void **state) {
  hes_meters_t *m = hes_meters_new();
  (void)state;

  assert_int_equal(hes_meters_seal(m), HES_METERS_OK);
  assert_int_equal(hes_meters_count(m), 0);
  assert_null(hes_meters_at(m, 0));
  assert_int_equal(find_str(m, "1"), HES_METER_NONE);
  assert_true(hes_meters_memory(m) > 0);
  hes_meters_free(m);

  hes_meters_free(NULL);
  assert_int_equal(hes_meters_count(NULL), 0);
  assert_int_equal(hes_meters_memory(NULL), 0);
  assert_int_equal(hes_meters_seal(NULL), HES_METERS_EINVAL);
}

/* Loads a file into a new store; returns the result, the store in *out. */
static hes_meters_result_t load(const char *path, hes_meters_t **out, size_t *bad_line) {
  hes_meters_t *m = hes_meters_new();
  hes_meters_result_t r;

  assert_non_null(m);
  *bad_line = 4242;
  r = hes_meters_add_file(m, path, bad_line);
  *out = m;
  return r;
}

/* A list kept only to be iterated gives its index back and keeps its meters. */
static void test_drop_index(void **state) {
  (void)state;
  hes_meters_t *m = hes_meters_new();
  assert_int_equal(hes_meters_add(m, "1001"), HES_METERS_OK);
  assert_int_equal(hes_meters_add(m, "1002"), HES_METERS_OK);
  size_t before = hes_meters_memory(m);
  hes_meters_drop_index(m);
  assert_true(hes_meters_memory(m) < before);
  assert_int_equal(hes_meters_count(m), 2);
  assert_string_equal(hes_meters_at(m, 1), "1002");
  assert_int_equal(hes_meters_find(m, "1001", 4), HES_METER_NONE);
  assert_int_equal(hes_meters_add(m, "1003"), HES_METERS_EINVAL); /* sealed */
  hes_meters_drop_index(NULL);
  hes_meters_free(m);
}

static void test_file_ok(void **state) {
  hes_meters_t *m;
  size_t line;
  (void)state;

  assert_int_equal(load(data_path("meters-ok.list"), &m, &line), HES_METERS_OK);
  assert_int_equal(line, 0);
  assert_int_equal(hes_meters_count(m), 6);
  assert_string_equal(hes_meters_at(m, 0), "202407100001");
  assert_string_equal(hes_meters_at(m, 1), "202407100002");
  assert_string_equal(hes_meters_at(m, 2), "202407100003");
  assert_string_equal(hes_meters_at(m, 3), "202407100004");
  assert_string_equal(hes_meters_at(m, 4), "AB-12_x");
  assert_string_equal(hes_meters_at(m, 5), "202407100005"); /* last line, no newline */
  assert_int_equal(hes_meters_seal(m), HES_METERS_OK);
  assert_int_equal(find_str(m, "AB-12_x"), 4);
  hes_meters_free(m);
}

static void test_file_crlf(void **state) {
  hes_meters_t *m;
  size_t line;
  (void)state;

  assert_int_equal(load(data_path("meters-crlf.list"), &m, &line), HES_METERS_OK);
  assert_int_equal(hes_meters_count(m), 3);
  assert_string_equal(hes_meters_at(m, 0), "202407100001");
  assert_string_equal(hes_meters_at(m, 1), "202407100002");
  assert_string_equal(hes_meters_at(m, 2), "202407100003");
  hes_meters_free(m);
}

static void test_file_empty_and_comments(void **state) {
  hes_meters_t *m;
  size_t line;
  (void)state;

  assert_int_equal(load(data_path("meters-empty.list"), &m, &line), HES_METERS_OK);
  assert_int_equal(hes_meters_count(m), 0);
  hes_meters_free(m);
  assert_int_equal(load(data_path("meters-comments.list"), &m, &line), HES_METERS_OK);
  assert_int_equal(hes_meters_count(m), 0);
  hes_meters_free(m);
}

static void test_file_errors(void **state) {
  hes_meters_t *m;
  size_t line;
  (void)state;

  /* Duplicate on line 4; what came before stays, nothing after is added. */
  assert_int_equal(load(data_path("meters-dup.list"), &m, &line), HES_METERS_EDUPLICATE);
  assert_int_equal(line, 4);
  assert_int_equal(hes_meters_count(m), 2);
  hes_meters_free(m);

  /* Two numbers on one line are not a meter number. */
  assert_int_equal(load(data_path("meters-bad.list"), &m, &line), HES_METERS_EINVAL);
  assert_int_equal(line, 3);
  assert_int_equal(hes_meters_count(m), 1);
  hes_meters_free(m);

  assert_int_equal(load(data_path("meters-toolong-number.list"), &m, &line), HES_METERS_EINVAL);
  assert_int_equal(line, 2);
  assert_int_equal(hes_meters_count(m), 1);
  hes_meters_free(m);

  /* A 300-character comment makes line 3 too long, even though its number is fine. */
  assert_int_equal(load(data_path("meters-longline.list"), &m, &line), HES_METERS_EINVAL);
  assert_int_equal(line, 3);
  assert_int_equal(hes_meters_count(m), 2);
  hes_meters_free(m);

  assert_int_equal(load(data_path("no-such-file.list"), &m, &line), HES_METERS_EIO);
  assert_int_equal(line, 0);
  hes_meters_free(m);

  /* A directory opens but does not read. */
  assert_int_equal(load(tmp_dir, &m, &line), HES_METERS_EIO);
  assert_int_equal(line, 0);
  hes_meters_free(m);

  /* A meter from the config, then the same one in the file. */
  m = hes_meters_new();
  assert_int_equal(hes_meters_add(m, "202407100003"), HES_METERS_OK);
  assert_int_equal(hes_meters_add_file(m, data_path("meters-ok.list"), &line),
                   HES_METERS_EDUPLICATE);
  assert_int_equal(line, 5);
  assert_int_equal(hes_meters_count(m), 3);
  /* Sealed: no more files. */
  assert_int_equal(hes_meters_seal(m), HES_METERS_OK);
  assert_int_equal(hes_meters_add_file(m, data_path("meters-crlf.list"), &line), HES_METERS_EINVAL);
  hes_meters_free(m);

  /* bad_line is optional. */
  m = hes_meters_new();
  assert_int_equal(hes_meters_add_file(m, data_path("meters-dup.list"), NULL),
                   HES_METERS_EDUPLICATE);
  assert_int_equal(hes_meters_add_file(m, NULL, &line), HES_METERS_EINVAL);
  assert_int_equal(hes_meters_add_file(NULL, data_path("meters-ok.list"), &line),
                   HES_METERS_EINVAL);
  hes_meters_free(m);
}

static void test_file_nul_byte(void **state) {
  static const char content[] = "202407100001\n2024\0"
                                "07100002\n202407100003\n";
  hes_meters_t *m;
  size_t line;
  (void)state;

  write_file(tmp_path("nul.list"), content, sizeof(content) - 1);
  assert_int_equal(load(tmp_path("nul.list"), &m, &line), HES_METERS_EINVAL);
  assert_int_equal(line, 2);
  assert_int_equal(hes_meters_count(m), 1);
  hes_meters_free(m);
}

/* HES_METERS_LINE_MAX bytes before the '\n' are fine, one more is not. */
static void test_file_line_length_bound(void **state) {
  char content[HES_METERS_LINE_MAX + 64];
  hes_meters_t *m;
  size_t line;
  size_t n;
  (void)state;

  n = (size_t)snprintf(content, sizeof(content), "1\n202407100001 #");
  memset(content + n, 'x', HES_METERS_LINE_MAX - (n - 2));
  n = 2 + HES_METERS_LINE_MAX;
  content[n++] = '\n';
  write_file(tmp_path("max.list"), content, n);
  assert_int_equal(load(tmp_path("max.list"), &m, &line), HES_METERS_OK);
  assert_int_equal(hes_meters_count(m), 2);
  hes_meters_free(m);

  content[n - 1] = 'x';
  content[n++] = '\n';
  write_file(tmp_path("max1.list"), content, n);
  assert_int_equal(load(tmp_path("max1.list"), &m, &line), HES_METERS_EINVAL);
  assert_int_equal(line, 2);
  assert_int_equal(hes_meters_count(m), 1);
  hes_meters_free(m);

  /* The same long line as the last one, without '\n'. */
  write_file(tmp_path("max2.list"), content, n - 1);
  assert_int_equal(load(tmp_path("max2.list"), &m, &line), HES_METERS_EINVAL);
  assert_int_equal(line, 2);
  hes_meters_free(m);
}

/* Random files from the bytes that matter to the parser: never a crash, only the documented
 * results, and whatever got in is a valid, findable meter number. */
static void test_file_random(void **state) {
  static const char alphabet[] = "0123456789aZ_-#  \t\r\n\n\n\0\xff,";
  char content[600];
  size_t line;
  unsigned seed = 12345;
  (void)state;

  for (int round = 0; round < 300; round++) {
    hes_meters_t *m;
    hes_meters_result_t r;
    size_t n = (size_t)(rand_r(&seed) % sizeof(content));

    for (size_t i = 0; i < n; i++)
      content[i] = alphabet[rand_r(&seed) % (sizeof(alphabet) - 1)];
    write_file(tmp_path("random.list"), content, n);
    r = load(tmp_path("random.list"), &m, &line);
    assert_true(r == HES_METERS_OK || r == HES_METERS_EINVAL || r == HES_METERS_EDUPLICATE);
    if (r == HES_METERS_OK)
      assert_int_equal(line, 0);
    else
      assert_true(line >= 1 && line <= n + 1);
    assert_int_equal(hes_meters_seal(m), HES_METERS_OK);
    for (uint32_t i = 0; i < hes_meters_count(m); i++) {
      assert_true(hes_meter_is_valid(hes_meters_at(m, i)));
      assert_int_equal(find_str(m, hes_meters_at(m, i)), i);
    }
    hes_meters_free(m);
  }
}

static void big_name(char *buf, size_t size, uint32_t i) {
  snprintf(buf, size, "2024%08u", (unsigned)i);
}

static void check_big(const hes_meters_t *m) {
  char name[32];

  assert_int_equal(hes_meters_count(m), BIG_COUNT);
  for (uint32_t i = 0; i < BIG_COUNT; i++) {
    big_name(name, sizeof(name), i);
    if (find_str(m, name) != i)
      fail_msg("find(%s) != %u", name, (unsigned)i);
    assert_string_equal(hes_meters_at(m, i), name);
  }
  /* Unknown meters just beside the known ones, and their prefixes. */
  for (uint32_t i = BIG_COUNT; i < 2 * BIG_COUNT; i++) {
    big_name(name, sizeof(name), i);
    assert_int_equal(find_str(m, name), HES_METER_NONE);
    name[11] = '\0';
    assert_int_equal(find_str(m, name), HES_METER_NONE);
  }
}

static void test_100k_add(void **state) {
  hes_meters_t *m = hes_meters_new();
  char name[32];
  double t0;
  double per_meter;
  (void)state;

  t0 = now_seconds();
  for (uint32_t i = 0; i < BIG_COUNT; i++) {
    big_name(name, sizeof(name), i);
    assert_int_equal(hes_meters_add(m, name), HES_METERS_OK);
  }
  big_name(name, sizeof(name), 4711);
  assert_int_equal(hes_meters_add(m, name), HES_METERS_EDUPLICATE);
  assert_int_equal(hes_meters_seal(m), HES_METERS_OK);
  assert_true(now_seconds() - t0 < time_limit());

  per_meter = (double)hes_meters_memory(m) / BIG_COUNT;
  print_message("# %d meters: %.1f bytes/meter\n", BIG_COUNT, per_meter);
  assert_true(per_meter < 40.0);
  /* The arena alone is 13 bytes a meter: the figure is not a made-up small number. */
  assert_true(per_meter > 17.0);

  t0 = now_seconds();
  check_big(m);
  assert_true(now_seconds() - t0 < time_limit());
  hes_meters_free(m);
}

static void test_100k_file(void **state) {
  hes_meters_t *m = hes_meters_new();
  FILE *fh = fopen(tmp_path("big.list"), "w");
  char name[32];
  size_t line;
  double t0;
  (void)state;

  assert_non_null(fh);
  fprintf(fh, "# %d meters\n", BIG_COUNT);
  for (uint32_t i = 0; i < BIG_COUNT; i++) {
    big_name(name, sizeof(name), i);
    fprintf(fh, i % 3 == 0 ? "%s\r\n" : "%s\n", name);
  }
  big_name(name, sizeof(name), 99999);
  fprintf(fh, "%s\n", name); /* line BIG_COUNT + 2 */
  assert_int_equal(fclose(fh), 0);

  t0 = now_seconds();
  assert_int_equal(hes_meters_add_file(m, tmp_path("big.list"), &line), HES_METERS_EDUPLICATE);
  assert_int_equal(line, BIG_COUNT + 2);
  assert_int_equal(hes_meters_seal(m), HES_METERS_OK);
  assert_true(now_seconds() - t0 < time_limit());
  assert_true((double)hes_meters_memory(m) / BIG_COUNT < 40.0);
  check_big(m);
  hes_meters_free(m);
}

static int setup(void **state) {
  const char *top = getenv("top_srcdir");
  (void)state;

  snprintf(data_dir, sizeof(data_dir), "%s/tests/data", top != NULL ? top : "..");
  snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/test_meters.XXXXXX");
  if (mkdtemp(tmp_dir) == NULL)
    return -1;
  return 0;
}

static int teardown(void **state) {
  static const char *const files[] = {"nul.list",  "max.list", "max1.list",
                                      "max2.list", "big.list", "random.list"};
  (void)state;

  for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
    unlink(tmp_path(files[i]));
  return rmdir(tmp_dir);
}

/* The one rule (meterid.h) against an independent statement of it, for every byte, as the
 * meter list, the HES requests and the push parser all use it. */
static void test_meterid_rule(void **state) {
  char s[HES_METER_MAX_LEN + 2];

  (void)state;
  for (int c = 1; c < 256; c++) {
    bool want =
        strchr("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_-", c) != NULL;
    s[0] = (char)c;
    s[1] = '\0';
    assert_int_equal(hes_meterid_char_ok((unsigned char)c), want);
    assert_int_equal(hes_meter_is_valid(s), want);
    assert_int_equal(hes_meterid_ok_n(s, 1, HES_METER_MAX_LEN), want);
  }
  memset(s, '7', sizeof(s));
  s[HES_METER_MAX_LEN] = '\0';
  assert_true(hes_meter_is_valid(s));
  assert_true(hes_meterid_ok(s, HES_METER_MAX_LEN));
  assert_false(hes_meterid_ok(s, HES_METER_MAX_LEN - 1)); /* a smaller bound (a DCU's) */
  s[HES_METER_MAX_LEN] = '7';
  s[HES_METER_MAX_LEN + 1] = '\0';
  assert_false(hes_meter_is_valid(s));
  assert_false(hes_meterid_ok_n(s, HES_METER_MAX_LEN + 1, HES_METER_MAX_LEN));
  assert_false(hes_meter_is_valid(""));
  assert_false(hes_meterid_ok(NULL, HES_METER_MAX_LEN));
  assert_false(hes_meterid_ok_n("1", 0, HES_METER_MAX_LEN));
  assert_false(hes_meterid_ok_n("1\0002", 3, HES_METER_MAX_LEN)); /* a NUL inside */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_is_valid),
      cmocka_unit_test(test_meterid_rule),
      cmocka_unit_test(test_add_find_at),
      cmocka_unit_test(test_find_edge_cases),
      cmocka_unit_test(test_empty_and_null),
      cmocka_unit_test(test_drop_index),
      cmocka_unit_test(test_file_ok),
      cmocka_unit_test(test_file_crlf),
      cmocka_unit_test(test_file_empty_and_comments),
      cmocka_unit_test(test_file_errors),
      cmocka_unit_test(test_file_nul_byte),
      cmocka_unit_test(test_file_line_length_bound),
      cmocka_unit_test(test_file_random),
      cmocka_unit_test(test_100k_add),
      cmocka_unit_test(test_100k_file),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
