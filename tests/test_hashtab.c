/* Tests for hashtab: the index with the meter list's kind of references (dense indices, a
 * caller-given hash, so that collisions can be forced), growth, backward-shift deletion in
 * long collision runs, and the object directory against a reference model under random adds
 * and removes. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hashtab.h"

/* --- the raw index, keyed by small strings in an array ------------------------------------ */

#define NKEYS 5000

typedef struct {
  char keys[NKEYS][16];
  uint32_t buckets; /* 0: the real hash; otherwise hash % buckets, to force collisions */
} keyset_t;

static uint32_t ks_hash(const keyset_t *ks, const char *s, size_t len) {
  uint32_t h = hes_hashtab_hash(s, len);
  return ks->buckets != 0 ? h % ks->buckets : h;
}

static bool ks_eq(const void *ctx, uint32_t ref, const char *key, size_t len) {
  const keyset_t *ks = ctx;
  return strlen(ks->keys[ref]) == len && memcmp(ks->keys[ref], key, len) == 0;
}

static uint32_t ks_hash_of(const void *ctx, uint32_t ref) {
  const keyset_t *ks = ctx;
  return ks_hash(ks, ks->keys[ref], strlen(ks->keys[ref]));
}

static uint32_t ks_find(const hes_hashtab_t *t, const keyset_t *ks, const char *key) {
  return hes_hashtab_find(t, ks_hash(ks, key, strlen(key)), ks_eq, ks, key, strlen(key));
}

static void ks_add(hes_hashtab_t *t, keyset_t *ks, uint32_t ref) {
  const char *k = ks->keys[ref];
  assert_int_equal(hes_hashtab_reserve(t, 1, ks_hash_of, ks), 0);
  uint32_t slot = hes_hashtab_slot(t, ks_hash(ks, k, strlen(k)), ks_eq, ks, k, strlen(k));
  assert_int_equal(t->slots[slot], HES_HASHTAB_NONE);
  hes_hashtab_put(t, slot, ref);
}

static void ks_del(hes_hashtab_t *t, keyset_t *ks, uint32_t ref) {
  const char *k = ks->keys[ref];
  uint32_t slot = hes_hashtab_slot(t, ks_hash(ks, k, strlen(k)), ks_eq, ks, k, strlen(k));
  assert_int_equal(t->slots[slot], ref);
  hes_hashtab_remove(t, slot, ks_hash_of, ks);
}

static void run_index(uint32_t buckets) {
  static keyset_t ks;
  hes_hashtab_t t = {0};
  bool in[NKEYS] = {false};
  uint64_t rng = 0x9E3779B97F4A7C15u;

  ks.buckets = buckets;
  for (uint32_t i = 0; i < NKEYS; i++)
    snprintf(ks.keys[i], sizeof(ks.keys[i]), "2024%08u", i);
  assert_int_equal(ks_find(&t, &ks, ks.keys[0]), HES_HASHTAB_NONE); /* empty: no slots yet */
  /* growth: every key findable after every doubling */
  for (uint32_t i = 0; i < NKEYS; i++) {
    ks_add(&t, &ks, i);
    in[i] = true;
    assert_true((uint64_t)t.count * 2 <= t.len);
    if ((i & (i + 1)) == 0) { /* at powers of two, check all so far */
      for (uint32_t j = 0; j <= i; j++)
        assert_int_equal(ks_find(&t, &ks, ks.keys[j]), j);
    }
  }
  assert_int_equal(t.count, NKEYS);
  assert_int_equal(ks_find(&t, &ks, "nope"), HES_HASHTAB_NONE);
  assert_int_equal(hes_hashtab_memory(&t), (size_t)t.len * sizeof(uint32_t));
  /* random deletes and re-adds: the index always agrees with the model */
  for (int step = 0; step < 20000; step++) {
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    uint32_t k = (uint32_t)((rng * 2685821657736338717u) >> 33) % NKEYS;
    if (in[k])
      ks_del(&t, &ks, k);
    else
      ks_add(&t, &ks, k);
    in[k] = !in[k];
    if (step % 2000 == 0) {
      uint32_t count = 0;
      for (uint32_t j = 0; j < NKEYS; j++) {
        assert_int_equal(ks_find(&t, &ks, ks.keys[j]), in[j] ? j : HES_HASHTAB_NONE);
        count += in[j];
      }
      assert_int_equal(t.count, count);
    }
  }
  /* delete everything: nothing is found, every slot is empty again (no tombstones) */
  for (uint32_t j = 0; j < NKEYS; j++)
    if (in[j])
      ks_del(&t, &ks, j);
  assert_int_equal(t.count, 0);
  for (uint32_t i = 0; i < t.len; i++)
    assert_int_equal(t.slots[i], HES_HASHTAB_NONE);
  /* shrink after refilling a few */
  for (uint32_t j = 0; j < 10; j++)
    ks_add(&t, &ks, j);
  assert_int_equal(hes_hashtab_shrink(&t, ks_hash_of, &ks), 0);
  assert_int_equal(t.len, 32);
  for (uint32_t j = 0; j < NKEYS; j++)
    assert_int_equal(ks_find(&t, &ks, ks.keys[j]), j < 10 ? j : HES_HASHTAB_NONE);
  hes_hashtab_free(&t);
  assert_int_equal(t.len, 0);
}

static void test_index_growth_and_delete(void **state) {
  (void)state;
  run_index(0);
}

/* Hashes folded onto 7 and then onto 1 value: long runs that wrap around the array's end,
 * where backward-shift deletion has to move entries past the wrap correctly. */
static void test_index_collisions(void **state) {
  (void)state;
  run_index(7);
  run_index(1);
}

static void test_index_limits(void **state) {
  static keyset_t ks;
  hes_hashtab_t t = {0};

  (void)state;
  assert_int_equal(hes_hashtab_reserve(&t, HES_HASHTAB_MAX + 1u, ks_hash_of, &ks), EOVERFLOW);
  assert_int_equal(t.len, 0);
  assert_int_equal(hes_hashtab_reserve(&t, 0, ks_hash_of, &ks), 0);
  assert_int_equal(t.len, 16);
  assert_int_equal(hes_hashtab_reserve(&t, 8, ks_hash_of, &ks), 0);
  assert_int_equal(t.len, 16); /* load exactly 1/2: no growth */
  assert_int_equal(hes_hashtab_reserve(&t, 9, ks_hash_of, &ks), 0);
  assert_int_equal(t.len, 32);
  hes_hashtab_free(&t);
  assert_true(hes_hashtab_hash("202407100001", 12) != hes_hashtab_hash("202407100002", 12));
}

/* --- the directory ------------------------------------------------------------------------ */

typedef struct {
  int id;
  char key[24];
} obj_t;

static bool obj_eq(const void *item, const char *key, size_t len) {
  const obj_t *o = item;
  return strlen(o->key) == len && memcmp(o->key, key, len) == 0;
}

static obj_t *dir_find(const hes_hashdir_t *d, const char *key) {
  return hes_hashdir_find(d, hes_hashtab_hash(key, strlen(key)), obj_eq, key, strlen(key));
}

static void test_directory(void **state) {
  enum { N = 3000 };
  static obj_t objs[N];
  bool in[N] = {false};
  hes_hashdir_t d = {0};
  uint64_t rng = 12345;

  (void)state;
  for (int i = 0; i < N; i++) {
    objs[i].id = i;
    snprintf(objs[i].key, sizeof(objs[i].key), "plan-%d-%x", i, i * 7919);
  }
  assert_null(dir_find(&d, objs[0].key));
  assert_false(hes_hashdir_remove(&d, &objs[0], 0));
  for (int i = 0; i < N; i++) {
    assert_int_equal(
        hes_hashdir_add(&d, &objs[i], hes_hashtab_hash(objs[i].key, strlen(objs[i].key))), 0);
    in[i] = true;
  }
  assert_int_equal(d.count, N);
  for (int i = 0; i < N; i++)
    assert_ptr_equal(dir_find(&d, objs[i].key), &objs[i]);
  assert_true(hes_hashdir_memory(&d) >= (size_t)N * (sizeof(void *) + 4 + 8));
  for (int step = 0; step < 30000; step++) {
    rng = rng * 6364136223846793005u + 1442695040888963407u;
    int k = (int)((rng >> 33) % N);
    uint32_t h = hes_hashtab_hash(objs[k].key, strlen(objs[k].key));
    if (in[k]) {
      assert_true(hes_hashdir_remove(&d, &objs[k], h));
      assert_false(hes_hashdir_remove(&d, &objs[k], h)); /* once only */
    } else {
      assert_int_equal(hes_hashdir_add(&d, &objs[k], h), 0);
    }
    in[k] = !in[k];
    if (step % 3000 == 0) {
      uint32_t count = 0;
      for (int j = 0; j < N; j++) {
        if (in[j])
          assert_ptr_equal(dir_find(&d, objs[j].key), &objs[j]);
        else
          assert_null(dir_find(&d, objs[j].key));
        count += in[j];
      }
      assert_int_equal(d.count, count);
    }
  }
  /* two objects with the same key text are told apart by identity on removal */
  {
    obj_t a = {1, "same"};
    obj_t b = {2, "same"};
    hes_hashdir_t d2 = {0};
    uint32_t h = hes_hashtab_hash("same", 4);
    assert_int_equal(hes_hashdir_add(&d2, &a, h), 0);
    assert_int_equal(hes_hashdir_add(&d2, &b, h), 0);
    assert_true(hes_hashdir_remove(&d2, &a, h));
    assert_ptr_equal(dir_find(&d2, "same"), &b);
    hes_hashdir_free(&d2);
  }
  hes_hashdir_free(&d);
  assert_int_equal(d.count, 0);
  assert_int_equal(hes_hashdir_memory(&d), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_index_growth_and_delete),
      cmocka_unit_test(test_index_collisions),
      cmocka_unit_test(test_index_limits),
      cmocka_unit_test(test_directory),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
