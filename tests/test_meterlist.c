/* test_meterlist: the union of Meter lines, MeterFile and DCU lists; MeterFile change
 * detection (rename, in-place edit, broken, empty, missing: one report, previous list kept);
 * DCU refreshes (enabled entries only, failure keeps the list), their files in StateDir and
 * loading them at start; the self-metric counters. */
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
#include <unistd.h>

#include "meterlist.h"

static char tmp_dir[64];
static char file_path[128];

static int setup(void **state) {
  (void)state;
  snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/test_meterlist.XXXXXX");
  if (mkdtemp(tmp_dir) == NULL)
    return -1;
  snprintf(file_path, sizeof(file_path), "%s/meters.list", tmp_dir);
  return 0;
}

static int teardown(void **state) {
  char cmd[128];
  (void)state;
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp_dir);
  return system(cmd) == 0 ? 0 : -1;
}

/* Replaces `path` by rename, as an editor or a deploy tool does. */
static void write_by_rename(const char *path, const char *text) {
  char tmp[256];
  snprintf(tmp, sizeof(tmp), "%s.new", path);
  FILE *f = fopen(tmp, "w");
  assert_non_null(f);
  fputs(text, f);
  assert_int_equal(fclose(f), 0);
  assert_int_equal(rename(tmp, path), 0);
}

/* Runs one update, commits it, and returns joined/left (or -1, -1 for UNCHANGED). */
static hes_meterlist_result_t apply(hes_meterlist_t *ml, long *joined, long *left) {
  hes_meterset_update_t up;
  hes_meterlist_result_t r = hes_meterlist_update(ml, &up);
  *joined = *left = -1;
  if (r != HES_METERLIST_OK)
    return r;
  *joined = (long)up.n_joined;
  *left = (long)up.n_left;
  hes_meterlist_commit(ml, &up);
  hes_meterlist_done(ml, &up);
  return r;
}

static bool has(hes_meterlist_t *ml, const char *m) {
  const hes_meterver_t *v = hes_meterset_pin(hes_meterlist_set(ml));
  bool found = hes_meterver_find(v, m, strlen(m)) != HES_METER_NONE;
  hes_meterset_unpin(hes_meterlist_set(ml), v);
  return found;
}

static size_t count(hes_meterlist_t *ml) {
  const hes_meterver_t *v = hes_meterset_pin(hes_meterlist_set(ml));
  size_t n = hes_meterver_count(v);
  hes_meterset_unpin(hes_meterlist_set(ml), v);
  return n;
}

static void test_config_errors(void **state) {
  (void)state;
  char err[256] = "";
  const char *bad_meter[] = {"12,3"};
  const char *bad_dcu[] = {"DCU 1"};
  hes_meterlist_config_t cfg = {.server = "s", .meters = bad_meter, .n_meters = 1};
  assert_null(hes_meterlist_new(&cfg, err, sizeof(err)));
  assert_non_null(strstr(err, "12,3"));
  cfg = (hes_meterlist_config_t){.server = "s", .dcus = bad_dcu, .n_dcus = 1};
  assert_null(hes_meterlist_new(&cfg, err, sizeof(err)));
  assert_non_null(strstr(err, "DCU 1"));
}

static void test_fixed_only(void **state) {
  (void)state;
  const char *m[] = {"1", "2"};
  hes_meterlist_config_t cfg = {.server = "s", .meters = m, .n_meters = 2};
  hes_meterlist_t *ml = hes_meterlist_new(&cfg, NULL, 0);
  hes_meterlist_stats_t st;
  long j, l;

  assert_non_null(ml);
  assert_int_equal(hes_meterlist_check_file(ml, NULL, 0), HES_METERLIST_UNCHANGED);
  assert_int_equal(apply(ml, &j, &l), HES_METERLIST_OK);
  assert_int_equal(j, 2);
  assert_int_equal(count(ml), 2);
  assert_int_equal(apply(ml, &j, &l), HES_METERLIST_UNCHANGED);
  hes_meterlist_stats(ml, &st);
  assert_int_equal(st.meters, 2);

  /* An aborted update is tried again next time. */
  const char *on[] = {"3"};
  hes_meterlist_config_t cfg2 = {
      .server = "s", .meters = m, .n_meters = 2, .dcus = on, .n_dcus = 1};
  hes_meterlist_t *ml2 = hes_meterlist_new(&cfg2, NULL, 0);
  hes_meterset_update_t up;
  assert_int_equal(hes_meterlist_update(ml2, &up), HES_METERLIST_OK);
  hes_meterlist_abort(ml2, &up);
  assert_int_equal(count(ml2), 0);
  assert_int_equal(apply(ml2, &j, &l), HES_METERLIST_OK);
  assert_int_equal(count(ml2), 2);
  hes_meterlist_free(ml2);
  assert_int_equal(st.meters_added, 0); /* the first list is not a change */
  assert_int_equal(st.meters_removed, 0);
  hes_meterlist_free(ml);
}

static void test_file_changes(void **state) {
  (void)state;
  const char *m[] = {"1"};
  hes_meterlist_config_t cfg = {.server = "s", .meters = m, .n_meters = 1, .meter_file = file_path};
  char err[512] = "";
  hes_meterlist_stats_t st;
  long j, l;

  write_by_rename(file_path, "# first\n1\n10\n11 # x\n");
  hes_meterlist_t *ml = hes_meterlist_new(&cfg, NULL, 0);
  assert_int_equal(hes_meterlist_check_file(ml, err, sizeof(err)), HES_METERLIST_OK);
  assert_int_equal(apply(ml, &j, &l), HES_METERLIST_OK);
  assert_int_equal(count(ml), 3); /* "1" is in both: once */
  assert_int_equal(hes_meterlist_check_file(ml, err, sizeof(err)), HES_METERLIST_UNCHANGED);

  /* Replaced by rename: 10 leaves, 12 and 13 join. */
  write_by_rename(file_path, "11\n12\n13\n");
  assert_int_equal(hes_meterlist_check_file(ml, err, sizeof(err)), HES_METERLIST_OK);
  assert_int_equal(apply(ml, &j, &l), HES_METERLIST_OK);
  assert_int_equal(j, 2);
  assert_int_equal(l, 1);
  assert_false(has(ml, "10"));
  assert_true(has(ml, "13"));
  assert_true(has(ml, "1"));
  hes_meterlist_stats(ml, &st);
  assert_int_equal(st.meters, 4);
  assert_int_equal(st.meters_added, 2);
  assert_int_equal(st.meters_removed, 1);

  /* A malformed line: reported once, naming the file and the line; the list stays. */
  write_by_rename(file_path, "11\n12\n1 3\n14\n");
  assert_int_equal(hes_meterlist_check_file(ml, err, sizeof(err)), HES_METERLIST_EFILE);
  assert_non_null(strstr(err, file_path));
  assert_non_null(strstr(err, "line 3"));
  assert_non_null(strstr(err, "keeping the previous list (3 meters)"));
  assert_int_equal(hes_meterlist_check_file(ml, err, sizeof(err)), HES_METERLIST_UNCHANGED);
  assert_int_equal(apply(ml, &j, &l), HES_METERLIST_UNCHANGED);
  assert_true(hes_meterlist_check_file(ml, err, sizeof(err)) == HES_METERLIST_UNCHANGED);
  assert_true(has(ml, "13"));

  /* A repeat inside the file is refused as at start. */
  write_by_rename(file_path, "11\n11\n");
  assert_int_equal(hes_meterlist_check_file(ml, err, sizeof(err)), HES_METERLIST_EFILE);
  assert_non_null(strstr(err, "line 2 repeats"));

  /* Only comments: no meter at all. */
  write_by_rename(file_path, "# nothing yet\n\n");
  assert_int_equal(hes_meterlist_check_file(ml, err, sizeof(err)), HES_METERLIST_EFILE);
  assert_non_null(strstr(err, "lists no meter"));

  /* Gone. */
  assert_int_equal(unlink(file_path), 0);
  assert_int_equal(hes_meterlist_check_file(ml, err, sizeof(err)), HES_METERLIST_EFILE);
  assert_non_null(strstr(err, "cannot read it"));
  assert_int_equal(hes_meterlist_check_file(ml, err, sizeof(err)), HES_METERLIST_UNCHANGED);
  assert_int_equal(count(ml), 4);

  /* Back, edited in place (same inode would do too): read again. */
  FILE *f = fopen(file_path, "w");
  assert_non_null(f);
  fputs("11\n", f);
  fclose(f);
  assert_int_equal(hes_meterlist_check_file(ml, err, sizeof(err)), HES_METERLIST_OK);
  assert_int_equal(apply(ml, &j, &l), HES_METERLIST_OK);
  assert_int_equal(l, 2);
  assert_int_equal(count(ml), 2);
  hes_meterlist_free(ml);
}

static void test_file_broken_at_start(void **state) {
  (void)state;
  hes_meterlist_config_t cfg = {.server = "s", .meter_file = file_path};
  char err[512] = "";

  write_by_rename(file_path, "ok1\nnot/ok\n");
  hes_meterlist_t *ml = hes_meterlist_new(&cfg, NULL, 0);
  assert_int_equal(hes_meterlist_check_file(ml, err, sizeof(err)), HES_METERLIST_EFILE);
  assert_non_null(strstr(err, "line 2"));
  assert_null(strstr(err, "keeping")); /* nothing to keep: the caller refuses to start */
  hes_meterlist_free(ml);
}

static void feed(hes_meterlist_t *ml, size_t dcu, const char *const *on, size_t n_on,
                 const char *const *off, size_t n_off) {
  assert_int_equal(hes_meterlist_dcu_begin(ml, dcu), HES_METERLIST_OK);
  for (size_t i = 0; i < n_on; i++)
    hes_meterlist_dcu_entry(ml, dcu, on[i], strlen(on[i]), true);
  for (size_t i = 0; i < n_off; i++)
    hes_meterlist_dcu_entry(ml, dcu, off[i], strlen(off[i]), false);
}

static void test_dcu_lists(void **state) {
  (void)state;
  const char *m[] = {"1"};
  const char *dcus[] = {"D1", "D2"};
  hes_meterlist_config_t cfg = {
      .server = "s", .meters = m, .n_meters = 1, .dcus = dcus, .n_dcus = 2, .state_dir = tmp_dir};
  char err[512] = "", path[256];
  hes_meterlist_stats_t st;
  long j, l;
  struct stat sb;

  hes_meterlist_t *ml = hes_meterlist_new(&cfg, NULL, 0);
  assert_non_null(ml);
  assert_int_equal(hes_meterlist_dcu_find(ml, "D2"), 1);
  assert_int_equal(hes_meterlist_dcu_find(ml, "D3"), (size_t)-1);
  assert_int_equal(hes_meterlist_load_dcus(ml, err, sizeof(err)), 0);
  assert_int_equal(hes_meterlist_dcu_meters(ml, 0), -1);
  assert_int_equal(apply(ml, &j, &l), HES_METERLIST_OK);
  assert_int_equal(count(ml), 1);

  /* An entry with no refresh under way is ignored. */
  hes_meterlist_dcu_entry(ml, 0, "77", 2, true);
  const char *on1[] = {"1", "100", "101"}, *off1[] = {"102"};
  feed(ml, 0, on1, 3, off1, 1);
  assert_int_equal(hes_meterlist_dcu_end(ml, 0, true, err, sizeof(err)), HES_METERLIST_OK);
  assert_int_equal(hes_meterlist_dcu_meters(ml, 0), 3);
  snprintf(path, sizeof(path), "%s/hes-dcu-s-D1.list", tmp_dir);
  assert_int_equal(stat(path, &sb), 0);
  assert_int_equal(apply(ml, &j, &l), HES_METERLIST_OK);
  assert_int_equal(j, 2);
  assert_int_equal(count(ml), 3);
  assert_false(has(ml, "102")); /* disabled */
  assert_false(has(ml, "77"));

  /* A failed refresh (or a partial one: the caller passes ok = false) keeps the list. */
  const char *on2[] = {"100"};
  feed(ml, 0, on2, 1, NULL, 0);
  assert_int_equal(hes_meterlist_dcu_end(ml, 0, false, err, sizeof(err)), HES_METERLIST_EFAILED);
  assert_non_null(strstr(err, "DCU D1"));
  assert_non_null(strstr(err, "keeping its previous list (3 meters)"));
  assert_int_equal(apply(ml, &j, &l), HES_METERLIST_UNCHANGED);
  /* An end with no begin is a failed refresh too. */
  assert_int_equal(hes_meterlist_dcu_end(ml, 1, true, err, sizeof(err)), HES_METERLIST_EFAILED);
  assert_non_null(strstr(err, "stay unknown"));

  /* The same list again changes nothing. */
  feed(ml, 0, on1, 3, off1, 1);
  assert_int_equal(hes_meterlist_dcu_end(ml, 0, true, err, sizeof(err)), HES_METERLIST_OK);
  assert_int_equal(apply(ml, &j, &l), HES_METERLIST_UNCHANGED);

  /* 101 leaves D1, and joins D2 (moved between DCUs): stays in the union. 100 leaves. A new
   * begin throws away a refresh that never ended. */
  const char *junk[] = {"999"};
  feed(ml, 0, junk, 1, NULL, 0);
  const char *on3[] = {"1"}, *on4[] = {"101", "200"};
  feed(ml, 0, on3, 1, NULL, 0);
  assert_int_equal(hes_meterlist_dcu_end(ml, 0, true, err, sizeof(err)), HES_METERLIST_OK);
  feed(ml, 1, on4, 2, NULL, 0);
  assert_int_equal(hes_meterlist_dcu_end(ml, 1, true, err, sizeof(err)), HES_METERLIST_OK);
  assert_int_equal(apply(ml, &j, &l), HES_METERLIST_OK);
  assert_int_equal(j, 1);
  assert_int_equal(l, 1);
  assert_false(has(ml, "100"));
  assert_false(has(ml, "999"));
  assert_true(has(ml, "101"));
  assert_true(has(ml, "200"));

  hes_meterlist_stats(ml, &st);
  assert_int_equal(st.archive, 6);
  assert_int_equal(st.archive_failed, 2);
  assert_int_equal(st.meters, 3);
  assert_int_equal(st.meters_added, 3);
  assert_int_equal(st.meters_removed, 1);
  hes_meterlist_free(ml);

  /* A restart with the HES down: the kept lists are the meters. */
  ml = hes_meterlist_new(&cfg, NULL, 0);
  assert_int_equal(hes_meterlist_load_dcus(ml, err, sizeof(err)), 2);
  assert_int_equal(apply(ml, &j, &l), HES_METERLIST_OK);
  assert_int_equal(count(ml), 3);
  assert_true(has(ml, "200"));
  assert_int_equal(hes_meterlist_dcu_meters(ml, 0), 1);
  hes_meterlist_free(ml);

  /* A damaged kept list is reported and skipped; the other DCU's list still loads. */
  write_by_rename(path, "1\nbad line\n");
  ml = hes_meterlist_new(&cfg, NULL, 0);
  assert_int_equal(hes_meterlist_load_dcus(ml, err, sizeof(err)), 1);
  assert_non_null(strstr(err, path));
  assert_non_null(strstr(err, "line 2"));
  assert_int_equal(hes_meterlist_dcu_meters(ml, 0), -1);
  hes_meterlist_free(ml);
}

/* An archive that lists no enabled meter is a real answer: the DCU serves none now. */
static void test_dcu_empty_archive(void **state) {
  (void)state;
  const char *dcus[] = {"D9"};
  hes_meterlist_config_t cfg = {.server = "e", .dcus = dcus, .n_dcus = 1, .state_dir = tmp_dir};
  long j, l;

  hes_meterlist_t *ml = hes_meterlist_new(&cfg, NULL, 0);
  const char *on[] = {"5"}, *off[] = {"5"};
  feed(ml, 0, on, 1, NULL, 0);
  assert_int_equal(hes_meterlist_dcu_end(ml, 0, true, NULL, 0), HES_METERLIST_OK);
  assert_int_equal(apply(ml, &j, &l), HES_METERLIST_OK);
  feed(ml, 0, NULL, 0, off, 1);
  assert_int_equal(hes_meterlist_dcu_end(ml, 0, true, NULL, 0), HES_METERLIST_OK);
  assert_int_equal(apply(ml, &j, &l), HES_METERLIST_OK);
  assert_int_equal(l, 1);
  assert_int_equal(count(ml), 0);
  hes_meterlist_free(ml);

  ml = hes_meterlist_new(&cfg, NULL, 0);
  assert_int_equal(hes_meterlist_load_dcus(ml, NULL, 0), 1);
  assert_int_equal(hes_meterlist_dcu_meters(ml, 0), 0);
  hes_meterlist_free(ml);
}

/* StateDir not writable: the new list is used all the same, and the caller hears why it is
 * not kept. */
static void test_dcu_save_fails(void **state) {
  (void)state;
  const char *dcus[] = {"D1"};
  char dir[128], err[512] = "";
  long j, l;

  snprintf(dir, sizeof(dir), "%s/no-such-dir", tmp_dir);
  hes_meterlist_config_t cfg = {.server = "s", .dcus = dcus, .n_dcus = 1, .state_dir = dir};
  hes_meterlist_t *ml = hes_meterlist_new(&cfg, NULL, 0);
  const char *on[] = {"5", "6"};
  feed(ml, 0, on, 2, NULL, 0);
  assert_int_equal(hes_meterlist_dcu_end(ml, 0, true, err, sizeof(err)), HES_METERLIST_ESAVE);
  assert_non_null(strstr(err, "no-such-dir"));
  assert_int_equal(apply(ml, &j, &l), HES_METERLIST_OK);
  assert_int_equal(count(ml), 2);
  hes_meterlist_free(ml);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_config_errors),
      cmocka_unit_test(test_fixed_only),
      cmocka_unit_test_setup_teardown(test_file_changes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_file_broken_at_start, setup, teardown),
      cmocka_unit_test_setup_teardown(test_dcu_lists, setup, teardown),
      cmocka_unit_test_setup_teardown(test_dcu_empty_archive, setup, teardown),
      cmocka_unit_test_setup_teardown(test_dcu_save_fails, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
