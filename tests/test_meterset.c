/* test_meterset: stable indices across versions, holes and their reuse, pins that keep a
 * replaced version readable, abort, readers racing a writer, and memory at 100,000 meters. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meterset.h"

static hes_meters_t *list_of(const char *const *names, size_t n) {
  hes_meters_t *m = hes_meters_new();
  assert_non_null(m);
  for (size_t i = 0; i < n; i++)
    assert_int_equal(hes_meters_add(m, names[i]), HES_METERS_OK);
  return m;
}

static uint32_t idx_of(const hes_meterver_t *v, const char *name) {
  return hes_meterver_find(v, name, strlen(name));
}

/* Prepares, commits and finishes one update; returns its joined/left counts. */
static void swap_to(hes_meterset_t *s, const char *const *names, size_t n, size_t *joined,
                    size_t *left) {
  hes_meterset_update_t up;
  assert_int_equal(hes_meterset_prepare(s, list_of(names, n), &up), HES_METERSET_OK);
  if (joined != NULL)
    *joined = up.n_joined;
  if (left != NULL)
    *left = up.n_left;
  hes_meterset_commit(s, &up);
  hes_meterset_update_done(s, &up);
}

static void test_empty(void **state) {
  (void)state;
  hes_meterset_t *s = hes_meterset_new();
  const hes_meterver_t *v = hes_meterset_pin(s);
  assert_non_null(v);
  assert_int_equal(hes_meterver_count(v), 0);
  assert_int_equal(hes_meterver_capacity(v), 0);
  assert_int_equal(hes_meterver_generation(v), 0);
  assert_int_equal(idx_of(v, "1"), HES_METER_NONE);
  assert_null(hes_meterver_name(v, 0));
  assert_null(hes_meterver_at(v, 0, NULL));
  hes_meterset_unpin(s, v);
  hes_meterset_free(s);
}

static void test_first_list(void **state) {
  (void)state;
  const char *a[] = {"100", "101", "102"};
  hes_meterset_t *s = hes_meterset_new();
  hes_meterset_update_t up;

  assert_int_equal(hes_meterset_prepare(s, list_of(a, 3), &up), HES_METERSET_OK);
  assert_int_equal(up.n_joined, 3);
  assert_int_equal(up.n_left, 0);
  /* Not visible before the commit. */
  const hes_meterver_t *v = hes_meterset_pin(s);
  assert_int_equal(hes_meterver_count(v), 0);
  hes_meterset_unpin(s, v);
  /* A second prepare while one is pending is refused (and frees what it was given). */
  hes_meterset_update_t up2;
  assert_int_equal(hes_meterset_prepare(s, list_of(a, 1), &up2), HES_METERSET_EINVAL);

  hes_meterset_commit(s, &up);
  hes_meterset_update_done(s, &up);
  v = hes_meterset_pin(s);
  assert_int_equal(hes_meterver_generation(v), 1);
  assert_int_equal(hes_meterver_count(v), 3);
  assert_int_equal(hes_meterver_capacity(v), 3);
  for (uint32_t i = 0; i < 3; i++) {
    uint32_t idx;
    assert_string_equal(hes_meterver_at(v, i, &idx), a[i]);
    assert_int_equal(idx, i);
    assert_int_equal(idx_of(v, a[i]), i);
    assert_string_equal(hes_meterver_name(v, i), a[i]);
  }
  /* a copy in list order, by number */
  hes_meters_t *copy = hes_meterver_list(v);
  assert_non_null(copy);
  assert_int_equal(hes_meters_count(copy), 3);
  for (uint32_t i = 0; i < 3; i++)
    assert_int_equal(hes_meters_find(copy, a[i], strlen(a[i])), i);
  hes_meters_free(copy);
  hes_meterset_unpin(s, v);
  hes_meterset_free(s);
}

static void test_stable_indices_and_holes(void **state) {
  (void)state;
  const char *a[] = {"100", "101", "102", "103"};
  const char *b[] = {"103", "100", "200", "102"}; /* 101 leaves, 200 joins, order changes */
  const char *c[] = {"103", "100", "200", "102", "300"};
  hes_meterset_t *s = hes_meterset_new();
  hes_meterset_update_t up;

  swap_to(s, a, 4, NULL, NULL);
  assert_int_equal(hes_meterset_prepare(s, list_of(b, 4), &up), HES_METERSET_OK);
  assert_int_equal(up.n_joined, 1);
  assert_int_equal(up.n_left, 1);
  assert_int_equal(up.left[0], 1);
  assert_string_equal(hes_meterver_name(up.prev, up.left[0]), "101");
  /* 101's index is still in use by the current version: 200 gets a new one. */
  assert_int_equal(up.joined[0], 4);
  assert_string_equal(hes_meterver_name(up.next, 4), "200");
  assert_int_equal(hes_meterver_capacity(up.next), 5);
  assert_null(hes_meterver_name(up.next, 1)); /* the hole */
  hes_meterset_commit(s, &up);
  /* After the commit the leaver's name stays readable through up.prev. */
  assert_string_equal(hes_meterver_name(up.prev, 1), "101");
  hes_meterset_update_done(s, &up);

  const hes_meterver_t *v = hes_meterset_pin(s);
  assert_int_equal(idx_of(v, "100"), 0);
  assert_int_equal(idx_of(v, "102"), 2);
  assert_int_equal(idx_of(v, "103"), 3);
  assert_int_equal(idx_of(v, "101"), HES_METER_NONE);
  hes_meterset_unpin(s, v);

  /* Nobody pins the version that had 101 any more: its hole goes to the next joiner. */
  assert_int_equal(hes_meterset_prepare(s, list_of(c, 5), &up), HES_METERSET_OK);
  assert_int_equal(up.n_joined, 1);
  assert_int_equal(up.n_left, 0);
  assert_int_equal(up.joined[0], 1);
  assert_int_equal(hes_meterver_capacity(up.next), 5);
  hes_meterset_commit(s, &up);
  hes_meterset_update_done(s, &up);
  v = hes_meterset_pin(s);
  assert_int_equal(idx_of(v, "300"), 1);
  assert_int_equal(idx_of(v, "200"), 4);
  assert_int_equal(hes_meterver_generation(v), 3);
  hes_meterset_unpin(s, v);
  hes_meterset_free(s);
}

/* A reader that still pins an old version keeps it readable, and keeps the indices it gives
 * to meters that have left from being reused. */
static void test_pinned_reader(void **state) {
  (void)state;
  const char *a[] = {"1", "2", "3"};
  const char *b[] = {"1", "3"};
  const char *c[] = {"1", "3", "4"};
  hes_meterset_t *s = hes_meterset_new();
  size_t retired;

  swap_to(s, a, 3, NULL, NULL);
  const hes_meterver_t *old = hes_meterset_pin(s);
  swap_to(s, b, 2, NULL, NULL);
  assert_int_equal(idx_of(old, "2"), 1); /* still readable */
  hes_meterset_memory(s, &retired);
  assert_true(retired > 0);

  hes_meterset_update_t up;
  assert_int_equal(hes_meterset_prepare(s, list_of(c, 3), &up), HES_METERSET_OK);
  assert_int_equal(up.n_joined, 1);
  assert_int_not_equal(up.joined[0], 1); /* "2" in the pinned version still holds 1 */
  assert_int_equal(up.joined[0], 3);
  hes_meterset_commit(s, &up);
  hes_meterset_update_done(s, &up);

  hes_meterset_unpin(s, old);
  hes_meterset_memory(s, &retired);
  assert_int_equal(retired, 0);
  hes_meterset_free(s);
}

static void test_abort(void **state) {
  (void)state;
  const char *a[] = {"1", "2"};
  const char *b[] = {"9"};
  hes_meterset_t *s = hes_meterset_new();
  hes_meterset_update_t up;

  swap_to(s, a, 2, NULL, NULL);
  assert_int_equal(hes_meterset_prepare(s, list_of(b, 1), &up), HES_METERSET_OK);
  hes_meterset_abort(s, &up);
  const hes_meterver_t *v = hes_meterset_pin(s);
  assert_int_equal(hes_meterver_count(v), 2);
  assert_int_equal(hes_meterver_generation(v), 1);
  hes_meterset_unpin(s, v);
  /* A new prepare is possible again. */
  size_t joined, left;
  swap_to(s, b, 1, &joined, &left);
  assert_int_equal(joined, 1);
  assert_int_equal(left, 2);
  hes_meterset_free(s);
}

/* ---- readers against a writer ----------------------------------------------------------- */

#define RACE_N     2000
#define RACE_SWAPS 200

typedef struct {
  hes_meterset_t *s;
  atomic_bool stop;
  atomic_long checks;
  atomic_long bad;
} race_t;

/* Every version the writer publishes is either list A (meters 0..N-1) or list B (N/2..N+N/2-1):
 * a reader must see exactly one of them, whole, with names and indices that agree. */
static void *race_reader(void *arg) {
  race_t *r = arg;
  char name[16];

  while (!atomic_load(&r->stop)) {
    const hes_meterver_t *v = hes_meterset_pin(r->s);
    size_t n = hes_meterver_count(v);
    long bad = 0;
    if (n != 0 && n != RACE_N)
      bad++;
    const char *first = hes_meterver_at(v, 0, NULL);
    long base = first != NULL ? strtol(first, NULL, 10) : 0;
    for (size_t i = 0; i < n; i++) {
      uint32_t idx;
      const char *m = hes_meterver_at(v, i, &idx);
      snprintf(name, sizeof(name), "%ld", base + (long)i);
      if (m == NULL || strcmp(m, name) != 0 || idx_of(v, m) != idx ||
          hes_meterver_name(v, idx) != m)
        bad++;
    }
    hes_meterset_unpin(r->s, v);
    atomic_fetch_add(&r->bad, bad);
    atomic_fetch_add(&r->checks, 1);
  }
  return NULL;
}

static hes_meters_t *range_list(long from, long n) {
  hes_meters_t *m = hes_meters_new();
  char name[16];
  assert_non_null(m);
  for (long i = 0; i < n; i++) {
    snprintf(name, sizeof(name), "%ld", from + i);
    assert_int_equal(hes_meters_add(m, name), HES_METERS_OK);
  }
  return m;
}

static void test_readers_race_writer(void **state) {
  (void)state;
  race_t r = {.s = hes_meterset_new()};
  pthread_t th[2];

  for (int i = 0; i < 2; i++)
    assert_int_equal(pthread_create(&th[i], NULL, race_reader, &r), 0);
  for (int k = 0; k < RACE_SWAPS; k++) {
    hes_meterset_update_t up;
    long from = (k % 2) ? RACE_N / 2 + 100000 : 100000;
    assert_int_equal(hes_meterset_prepare(r.s, range_list(from, RACE_N), &up), HES_METERSET_OK);
    /* Kept meters keep their index: check the ones in both lists. */
    for (uint32_t i = 0; k > 0 && i < up.n_joined; i++)
      assert_null(hes_meterver_name(up.prev, up.joined[i]));
    hes_meterset_commit(r.s, &up);
    hes_meterset_update_done(r.s, &up);
  }
  atomic_store(&r.stop, true);
  for (int i = 0; i < 2; i++)
    pthread_join(th[i], NULL);
  assert_true(atomic_load(&r.checks) > 0);
  assert_int_equal(atomic_load(&r.bad), 0);
  size_t retired;
  hes_meterset_memory(r.s, &retired);
  assert_int_equal(retired, 0);
  hes_meterset_free(r.s);
}

/* ---- 100,000 meters ----------------------------------------------------------------------- */

static void test_big_memory_and_stability(void **state) {
  (void)state;
  hes_meterset_t *s = hes_meterset_new();
  hes_meterset_update_t up;
  const long n = 100000;

  assert_int_equal(hes_meterset_prepare(s, range_list(202400000000L, n), &up), HES_METERSET_OK);
  hes_meterset_commit(s, &up);
  hes_meterset_update_done(s, &up);
  size_t bytes = hes_meterset_memory(s, NULL);
  assert_true(bytes <= 64 * (size_t)n);

  /* Shift by 10 %: 90 % kept with their indices, 10 % leave, 10 % join. */
  const hes_meterver_t *before = hes_meterset_pin(s);
  assert_int_equal(hes_meterset_prepare(s, range_list(202400000000L + n / 10, n), &up),
                   HES_METERSET_OK);
  assert_int_equal(up.n_joined, n / 10);
  assert_int_equal(up.n_left, n / 10);
  hes_meterset_commit(s, &up);
  hes_meterset_update_done(s, &up);
  const hes_meterver_t *after = hes_meterset_pin(s);
  for (size_t i = 0; i < hes_meterver_count(after); i++) {
    uint32_t idx;
    const char *m = hes_meterver_at(after, i, &idx);
    uint32_t was = idx_of(before, m);
    if (was != HES_METER_NONE)
      assert_int_equal(was, idx);
  }
  hes_meterset_unpin(s, before);
  hes_meterset_unpin(s, after);
  assert_true(hes_meterset_memory(s, NULL) <= 64 * (size_t)n);
  hes_meterset_free(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_empty),
      cmocka_unit_test(test_first_list),
      cmocka_unit_test(test_stable_indices_and_holes),
      cmocka_unit_test(test_pinned_reader),
      cmocka_unit_test(test_abort),
      cmocka_unit_test(test_readers_race_writer),
      cmocka_unit_test(test_big_memory_and_stability),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
