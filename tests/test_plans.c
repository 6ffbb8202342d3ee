/* Tests for plans: the planId table, its tombstones, the parking of early pushes, expiry
 * and the counters, single-threaded with exact values and under concurrent use. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plans.h"

/* --- a missing-meters recorder ---------------------------------------------------------- */

#define REC_MAX 4096

typedef struct {
  char id[64];
  uint32_t tag;
  void *user;
  uint32_t *meters;
  size_t n;
} rec_call_t;

typedef struct {
  rec_call_t calls[REC_MAX];
  size_t ncalls;
  size_t meters_total;
} rec_t;

static void rec_cb(void *ctx, const char *plan_id, uint32_t tag, void *user, const uint32_t *meters,
                   size_t n) {
  rec_t *r = ctx;
  r->meters_total += n;
  if (r->ncalls >= REC_MAX)
    return;
  rec_call_t *c = &r->calls[r->ncalls++];
  snprintf(c->id, sizeof(c->id), "%s", plan_id);
  c->tag = tag;
  c->user = user;
  c->n = n;
  c->meters = malloc(n * sizeof(*meters) + 1);
  assert_non_null(c->meters);
  memcpy(c->meters, meters, n * sizeof(*meters));
}

static rec_t *rec_new(void) {
  rec_t *r = calloc(1, sizeof(*r));
  assert_non_null(r);
  return r;
}

static void rec_free(rec_t *r) {
  for (size_t i = 0; i < r->ncalls; i++)
    free(r->calls[i].meters);
  free(r);
}

static hes_plans_stats_t stats(hes_plans_t *p) {
  hes_plans_stats_t st;
  memset(&st, 0xa5, sizeof(st));
  hes_plans_stats(p, &st);
  return st;
}

/* Every counter at once, so a test states the whole picture after each step. */
static void check_stats(hes_plans_t *p, size_t plans, size_t meters, size_t parked,
                        size_t parked_bytes, uint64_t foreign, uint64_t duplicate, uint64_t late,
                        uint64_t dropped, uint64_t missing) {
  hes_plans_stats_t st = stats(p);
  assert_int_equal(st.plans_pending, plans);
  assert_int_equal(st.meters_pending, meters);
  assert_int_equal(st.parked, parked);
  assert_int_equal(st.parked_bytes, parked_bytes);
  assert_int_equal(st.foreign, foreign);
  assert_int_equal(st.duplicate, duplicate);
  assert_int_equal(st.late, late);
  assert_int_equal(st.dropped, dropped);
  assert_int_equal(st.missing, missing);
}

static int add(hes_plans_t *p, const char *id, const uint32_t *m, size_t n, double deadline) {
  return hes_plans_add(p, id, 0, NULL, m, n, deadline, NULL);
}

/* --- tests ------------------------------------------------------------------------------ */

static void test_defaults_and_null(void **state) {
  (void)state;
  hes_plans_t *p = hes_plans_new(NULL);
  assert_non_null(p);
  check_stats(p, 0, 0, 0, 0, 0, 0, 0, 0, 0);
  assert_true(stats(p).memory > 0);
  hes_plans_free(p);

  hes_plans_config_t zero = {0};
  p = hes_plans_new(&zero);
  assert_non_null(p);
  /* park_window 0 took its default of 30 s: a push parked at 0 is still there at 29. */
  hes_plans_request_begin(p);
  assert_int_equal(hes_plans_lookup(p, "x", 0, "a", 1, NULL), HES_PLAN_PARKED);
  assert_int_equal(hes_plans_expire(p, 29.9, NULL, NULL), 0);
  assert_int_equal(stats(p).parked, 1);
  hes_plans_expire(p, 30, NULL, NULL);
  assert_int_equal(stats(p).parked, 0);
  hes_plans_request_end(p);
  check_stats(p, 0, 0, 0, 0, 1, 0, 0, 0, 0);
  hes_plans_free(p);

  hes_plans_stats_t st;
  memset(&st, 0xff, sizeof(st));
  hes_plans_stats(NULL, &st);
  assert_int_equal(st.foreign, 0);
  assert_int_equal(st.memory, 0);
  hes_plans_stats(NULL, NULL);
  hes_plans_free(NULL);
  hes_plans_request_begin(NULL);
  hes_plans_request_end(NULL);
  hes_plans_finish(NULL, "a", NULL, NULL);
  hes_parked_free(NULL);
  assert_int_equal(hes_plans_lookup(NULL, "a", 0, NULL, 0, NULL), HES_PLAN_FOREIGN);
  assert_int_equal(hes_plans_answer(NULL, "a", 1), -1);
  assert_int_equal(hes_plans_expire(NULL, 1, NULL, NULL), 0);

  assert_string_equal(hes_plan_lookup_string(HES_PLAN_OPEN), "open");
  assert_string_equal(hes_plan_lookup_string(HES_PLAN_PARKED), "parked");
  assert_string_equal(hes_plan_lookup_string(HES_PLAN_FOREIGN), "foreign");
  assert_string_equal(hes_plan_lookup_string(HES_PLAN_DUPLICATE), "duplicate");
  assert_string_equal(hes_plan_lookup_string(HES_PLAN_LATE), "late");
  assert_string_equal(hes_plan_lookup_string(HES_PLAN_DROPPED), "dropped");
  assert_string_equal(hes_plan_lookup_string((hes_plan_lookup_t)99), "unknown");
}

static void test_add_lookup_answer_finish(void **state) {
  (void)state;
  hes_plans_t *p = hes_plans_new(NULL);
  rec_t *r = rec_new();
  int user;
  const uint32_t m[] = {5, 3, 9};
  hes_parked_t *parked = (hes_parked_t *)&user;
  assert_int_equal(hes_plans_add(p, "P1", 7, &user, m, 3, 1000, &parked), 0);
  assert_null(parked);
  check_stats(p, 1, 3, 0, 0, 0, 0, 0, 0, 0);

  hes_plan_info_t info;
  memset(&info, 0xa5, sizeof(info));
  assert_int_equal(hes_plans_lookup(p, "P1", 10, "{}", 2, &info), HES_PLAN_OPEN);
  assert_int_equal(info.tag, 7);
  assert_ptr_equal(info.user, &user);
  assert_int_equal(info.meters, 3);
  assert_int_equal(info.answered, 0);
  assert_true(info.deadline == 1000);
  assert_true(isnan(info.sent)); /* hes_plans_add gives no send time */
  assert_int_equal(hes_plans_lookup(p, "P1", 10, NULL, 0, NULL), HES_PLAN_OPEN);
  hes_plans_t *q = hes_plans_new(NULL);
  assert_int_equal(hes_plans_add_sent(q, "PS", 7, &user, m, 1, 995, 1000, NULL), 0);
  assert_int_equal(hes_plans_lookup(q, "PS", 10, NULL, 0, &info), HES_PLAN_OPEN);
  assert_true(info.sent == 995 && info.deadline == 1000);
  hes_plans_free(q);
  check_stats(p, 1, 3, 0, 0, 0, 0, 0, 0, 0);

  assert_int_equal(hes_plans_answer(p, "P1", 3), 1);
  check_stats(p, 1, 2, 0, 0, 0, 0, 0, 0, 0);
  assert_int_equal(hes_plans_answer(p, "P1", 3), 0);
  check_stats(p, 1, 2, 0, 0, 0, 1, 0, 0, 0);
  assert_int_equal(hes_plans_answer(p, "P1", 4), -1);
  assert_int_equal(hes_plans_answer(p, "P1", 0), -1);
  assert_int_equal(hes_plans_answer(p, "P1", 10), -1);
  assert_int_equal(hes_plans_answer(p, "P2", 3), -1);
  assert_int_equal(hes_plans_answer(p, "", 3), -1);
  assert_int_equal(hes_plans_answer(p, NULL, 3), -1);
  check_stats(p, 1, 2, 0, 0, 0, 1, 0, 0, 0);

  assert_int_equal(hes_plans_lookup(p, "P1", 11, NULL, 0, &info), HES_PLAN_OPEN);
  assert_int_equal(info.answered, 1);

  hes_plans_finish(p, "P1", rec_cb, r);
  assert_int_equal(r->ncalls, 1);
  assert_string_equal(r->calls[0].id, "P1");
  assert_int_equal(r->calls[0].tag, 7);
  assert_ptr_equal(r->calls[0].user, &user);
  assert_int_equal(r->calls[0].n, 2);
  assert_int_equal(r->calls[0].meters[0], 5);
  assert_int_equal(r->calls[0].meters[1], 9);
  check_stats(p, 0, 0, 0, 0, 0, 1, 0, 0, 2);

  /* A QoS 1 redelivery of the finished plan, and its answers. */
  assert_int_equal(hes_plans_lookup(p, "P1", 12, "{}", 2, &info), HES_PLAN_DUPLICATE);
  check_stats(p, 0, 0, 0, 0, 0, 2, 0, 0, 2);
  assert_int_equal(hes_plans_answer(p, "P1", 5), 0);
  assert_int_equal(hes_plans_answer(p, "P1", 4), 0);
  check_stats(p, 0, 0, 0, 0, 0, 4, 0, 0, 2);
  hes_plans_finish(p, "P1", rec_cb, r);
  hes_plans_finish(p, "nope", rec_cb, r);
  assert_int_equal(r->ncalls, 1);
  check_stats(p, 0, 0, 0, 0, 0, 4, 0, 0, 2);
  /* The tombstone outlives the deadline: expiry does not touch it. */
  assert_int_equal(hes_plans_expire(p, 2000, rec_cb, r), 0);
  assert_int_equal(hes_plans_lookup(p, "P1", 2000, NULL, 0, NULL), HES_PLAN_DUPLICATE);
  check_stats(p, 0, 0, 0, 0, 0, 5, 0, 0, 2);
  assert_int_equal(r->ncalls, 1);

  rec_free(r);
  hes_plans_free(p);
}

static void test_all_answered_finishes(void **state) {
  (void)state;
  hes_plans_t *p = hes_plans_new(NULL);
  rec_t *r = rec_new();
  const uint32_t m[] = {1, 2};
  assert_int_equal(add(p, "A", m, 2, 100), 0);
  assert_int_equal(hes_plans_answer(p, "A", 2), 1);
  check_stats(p, 1, 1, 0, 0, 0, 0, 0, 0, 0);
  assert_int_equal(hes_plans_answer(p, "A", 1), 1);
  check_stats(p, 0, 0, 0, 0, 0, 0, 0, 0, 0);
  /* QoS 1 redelivers the whole push: the lookup says duplicate, and so do its answers. */
  assert_int_equal(hes_plans_lookup(p, "A", 5, "x", 1, NULL), HES_PLAN_DUPLICATE);
  assert_int_equal(hes_plans_answer(p, "A", 1), 0);
  check_stats(p, 0, 0, 0, 0, 0, 2, 0, 0, 0);
  hes_plans_finish(p, "A", rec_cb, r);
  assert_int_equal(hes_plans_expire(p, 1000, rec_cb, r), 0);
  assert_int_equal(r->ncalls, 0);
  check_stats(p, 0, 0, 0, 0, 0, 2, 0, 0, 0);
  assert_int_equal(add(p, "A", m, 2, 2000), EEXIST);
  rec_free(r);
  hes_plans_free(p);
}

static void test_late(void **state) {
  (void)state;
  hes_plans_t *p = hes_plans_new(NULL);
  rec_t *r = rec_new();
  const uint32_t m[] = {1, 2, 3};
  assert_int_equal(hes_plans_add(p, "L", 42, NULL, m, 3, 100, NULL), 0);
  assert_int_equal(hes_plans_answer(p, "L", 2), 1);
  assert_int_equal(hes_plans_expire(p, 99.999, rec_cb, r), 0);
  assert_int_equal(r->ncalls, 0);
  check_stats(p, 1, 2, 0, 0, 0, 0, 0, 0, 0);
  assert_int_equal(hes_plans_expire(p, 100, rec_cb, r), 1);
  assert_int_equal(r->ncalls, 1);
  assert_string_equal(r->calls[0].id, "L");
  assert_int_equal(r->calls[0].tag, 42);
  assert_null(r->calls[0].user);
  assert_int_equal(r->calls[0].n, 2);
  assert_int_equal(r->calls[0].meters[0], 1);
  assert_int_equal(r->calls[0].meters[1], 3);
  check_stats(p, 0, 0, 0, 0, 0, 0, 0, 0, 2);

  assert_int_equal(hes_plans_lookup(p, "L", 101, "{}", 2, NULL), HES_PLAN_LATE);
  check_stats(p, 0, 0, 0, 0, 0, 0, 1, 0, 2);
  /* Looked up while open, expired before its answers: dropped as late. */
  assert_int_equal(hes_plans_answer(p, "L", 1), 0);
  assert_int_equal(hes_plans_answer(p, "L", 9), 0);
  check_stats(p, 0, 0, 0, 0, 0, 0, 3, 0, 2);
  /* A late push is never parked, even with a request in flight. */
  hes_plans_request_begin(p);
  assert_int_equal(hes_plans_lookup(p, "L", 102, "{}", 2, NULL), HES_PLAN_LATE);
  hes_plans_request_end(p);
  check_stats(p, 0, 0, 0, 0, 0, 0, 4, 0, 2);
  assert_int_equal(add(p, "L", m, 3, 1000), EEXIST);
  assert_int_equal(hes_plans_expire(p, 200, rec_cb, r), 0);
  assert_int_equal(r->ncalls, 1);
  rec_free(r);
  hes_plans_free(p);
}

static void test_foreign(void **state) {
  (void)state;
  hes_plans_t *p = hes_plans_new(NULL);
  const uint32_t m[] = {1};
  assert_int_equal(add(p, "mine", m, 1, 100), 0);
  assert_int_equal(hes_plans_lookup(p, "theirs", 1, "{}", 2, NULL), HES_PLAN_FOREIGN);
  assert_int_equal(hes_plans_lookup(p, "theirs", 1, "{}", 2, NULL), HES_PLAN_FOREIGN);
  check_stats(p, 1, 1, 0, 0, 2, 0, 0, 0, 0);

  /* Ids we could never add are foreign even while a request is in flight. */
  char longid[65];
  memset(longid, 'a', 64);
  longid[64] = '\0';
  hes_plans_request_begin(p);
  assert_int_equal(hes_plans_lookup(p, "", 1, "{}", 2, NULL), HES_PLAN_FOREIGN);
  assert_int_equal(hes_plans_lookup(p, NULL, 1, "{}", 2, NULL), HES_PLAN_FOREIGN);
  assert_int_equal(hes_plans_lookup(p, longid, 1, "{}", 2, NULL), HES_PLAN_FOREIGN);
  check_stats(p, 1, 1, 0, 0, 5, 0, 0, 0, 0);
  longid[63] = '\0';
  assert_int_equal(hes_plans_lookup(p, longid, 1, "{}", 2, NULL), HES_PLAN_PARKED);
  check_stats(p, 1, 1, 1, 2, 5, 0, 0, 0, 0);
  hes_plans_request_end(p);
  check_stats(p, 1, 1, 0, 0, 6, 0, 0, 0, 0);
  hes_plans_free(p);
}

static void test_park_then_add(void **state) {
  (void)state;
  hes_plans_t *p = hes_plans_new(NULL);
  const uint32_t m[] = {4, 8};
  const char first[] = {'a', 'b', 'c', '\0', 'd', 'e', 'f'}; /* binary-safe */
  size_t empty_mem = stats(p).memory;

  hes_plans_request_begin(p);
  assert_int_equal(hes_plans_lookup(p, "Q", 10, first, sizeof(first), NULL), HES_PLAN_PARKED);
  check_stats(p, 0, 0, 1, 7, 0, 0, 0, 0, 0);
  assert_int_equal(hes_plans_lookup(p, "Q", 11, "second", 6, NULL), HES_PLAN_PARKED);
  assert_int_equal(hes_plans_lookup(p, "R", 11.5, "xyz", 3, NULL), HES_PLAN_PARKED);
  assert_int_equal(hes_plans_lookup(p, "Q", 12, NULL, 0, NULL), HES_PLAN_PARKED);
  check_stats(p, 0, 0, 4, 16, 0, 0, 0, 0, 0);
  assert_true(stats(p).memory > empty_mem + 16);

  hes_parked_t *parked = NULL;
  assert_int_equal(hes_plans_add(p, "Q", 1, NULL, m, 2, 100, &parked), 0);
  check_stats(p, 1, 2, 1, 3, 0, 0, 0, 0, 0);
  assert_non_null(parked);
  assert_int_equal(parked->len, 7);
  assert_memory_equal(parked->payload, first, 7);
  assert_int_equal(parked->payload[7], '\0');
  assert_true(parked->received == 10);
  hes_parked_t *second = parked->next;
  assert_non_null(second);
  assert_int_equal(second->len, 6);
  assert_string_equal(second->payload, "second");
  assert_true(second->received == 11);
  hes_parked_t *third = second->next;
  assert_non_null(third);
  assert_int_equal(third->len, 0);
  assert_int_equal(third->payload[0], '\0');
  assert_true(third->received == 12);
  assert_null(third->next);
  hes_parked_free(parked);

  /* Now known: no more parking for it. */
  assert_int_equal(hes_plans_lookup(p, "Q", 13, "again", 5, NULL), HES_PLAN_OPEN);
  /* R is still parked; the last request end makes it foreign. */
  hes_plans_request_end(p);
  check_stats(p, 1, 2, 0, 0, 1, 0, 0, 0, 0);

  /* parked NULL: the caller wants none, they are freed and counted dropped. */
  hes_plans_request_begin(p);
  assert_int_equal(hes_plans_lookup(p, "S", 14, "s1", 2, NULL), HES_PLAN_PARKED);
  assert_int_equal(hes_plans_lookup(p, "S", 14, "s2", 2, NULL), HES_PLAN_PARKED);
  assert_int_equal(add(p, "S", m, 2, 100), 0);
  hes_plans_request_end(p);
  check_stats(p, 2, 4, 0, 0, 1, 0, 0, 2, 0);

  hes_plans_finish(p, "Q", NULL, NULL);
  hes_plans_finish(p, "S", NULL, NULL);
  check_stats(p, 0, 0, 0, 0, 1, 0, 0, 2, 4);
  hes_plans_free(p);
}

static void test_park_overflow_count(void **state) {
  (void)state;
  hes_plans_config_t cfg = {.park_max_count = 2};
  hes_plans_t *p = hes_plans_new(&cfg);
  hes_plans_request_begin(p);
  assert_int_equal(hes_plans_lookup(p, "a", 1, "1", 1, NULL), HES_PLAN_PARKED);
  assert_int_equal(hes_plans_lookup(p, "b", 1, "22", 2, NULL), HES_PLAN_PARKED);
  assert_int_equal(hes_plans_lookup(p, "a", 1, "333", 3, NULL), HES_PLAN_DROPPED);
  assert_int_equal(hes_plans_lookup(p, "c", 1, "", 0, NULL), HES_PLAN_DROPPED);
  check_stats(p, 0, 0, 2, 3, 0, 0, 0, 2, 0);
  /* Claiming one frees a place. */
  const uint32_t m[] = {1};
  hes_parked_t *parked = NULL;
  assert_int_equal(hes_plans_add(p, "a", 0, NULL, m, 1, 100, &parked), 0);
  assert_non_null(parked);
  assert_string_equal(parked->payload, "1");
  assert_null(parked->next);
  hes_parked_free(parked);
  assert_int_equal(hes_plans_lookup(p, "c", 1, "4444", 4, NULL), HES_PLAN_PARKED);
  check_stats(p, 1, 1, 2, 6, 0, 0, 0, 2, 0);
  hes_plans_request_end(p);
  check_stats(p, 1, 1, 0, 0, 2, 0, 0, 2, 0);
  hes_plans_free(p);
}

static void test_park_overflow_bytes(void **state) {
  (void)state;
  hes_plans_config_t cfg = {.park_max_bytes = 10};
  hes_plans_t *p = hes_plans_new(&cfg);
  hes_plans_request_begin(p);
  assert_int_equal(hes_plans_lookup(p, "a", 1, "123456", 6, NULL), HES_PLAN_PARKED);
  assert_int_equal(hes_plans_lookup(p, "a", 1, "12345", 5, NULL), HES_PLAN_DROPPED);
  assert_int_equal(hes_plans_lookup(p, "b", 1, "1234", 4, NULL), HES_PLAN_PARKED);
  check_stats(p, 0, 0, 2, 10, 0, 0, 0, 1, 0);
  assert_int_equal(hes_plans_lookup(p, "c", 1, "1", 1, NULL), HES_PLAN_DROPPED);
  /* Empty payloads take no bytes. */
  assert_int_equal(hes_plans_lookup(p, "c", 1, "", 0, NULL), HES_PLAN_PARKED);
  check_stats(p, 0, 0, 3, 10, 0, 0, 0, 2, 0);
  hes_plans_request_end(p);
  check_stats(p, 0, 0, 0, 0, 3, 0, 0, 2, 0);

  /* A push bigger than the whole space never fits. */
  hes_plans_request_begin(p);
  assert_int_equal(hes_plans_lookup(p, "d", 1, "12345678901", 11, NULL), HES_PLAN_DROPPED);
  assert_int_equal(hes_plans_lookup(p, "d", 1, "1234567890", 10, NULL), HES_PLAN_PARKED);
  hes_plans_request_end(p);
  check_stats(p, 0, 0, 0, 0, 4, 0, 0, 3, 0);

  /* No payload with a length: nothing to copy, parked as empty. */
  hes_plans_request_begin(p);
  assert_int_equal(hes_plans_lookup(p, "e", 1, NULL, 100, NULL), HES_PLAN_PARKED);
  check_stats(p, 0, 0, 1, 0, 4, 0, 0, 3, 0);
  hes_parked_t *parked = NULL;
  const uint32_t m[] = {1};
  assert_int_equal(hes_plans_add(p, "e", 0, NULL, m, 1, 100, &parked), 0);
  hes_plans_request_end(p);
  assert_non_null(parked);
  assert_int_equal(parked->len, 0);
  assert_int_equal(parked->payload[0], '\0');
  hes_parked_free(parked);
  check_stats(p, 1, 1, 0, 0, 4, 0, 0, 3, 0);
  hes_plans_free(p);
}

static void test_unclaimed_at_last_end(void **state) {
  (void)state;
  hes_plans_t *p = hes_plans_new(NULL);
  hes_plans_request_begin(p);
  hes_plans_request_begin(p);
  assert_int_equal(hes_plans_lookup(p, "A", 1, "aa", 2, NULL), HES_PLAN_PARKED);
  assert_int_equal(hes_plans_lookup(p, "A", 2, "aaa", 3, NULL), HES_PLAN_PARKED);
  assert_int_equal(hes_plans_lookup(p, "B", 2, "b", 1, NULL), HES_PLAN_PARKED);
  hes_plans_request_end(p);
  check_stats(p, 0, 0, 3, 6, 0, 0, 0, 0, 0);
  hes_plans_request_end(p);
  check_stats(p, 0, 0, 0, 0, 3, 0, 0, 0, 0);
  /* An unbalanced end neither underflows nor counts anything. */
  hes_plans_request_end(p);
  check_stats(p, 0, 0, 0, 0, 3, 0, 0, 0, 0);
  assert_int_equal(hes_plans_lookup(p, "A", 3, "aa", 2, NULL), HES_PLAN_FOREIGN);
  check_stats(p, 0, 0, 0, 0, 4, 0, 0, 0, 0);
  /* The ids are forgotten: once a request is in flight again they park again. */
  hes_plans_request_begin(p);
  assert_int_equal(hes_plans_lookup(p, "A", 4, "aa", 2, NULL), HES_PLAN_PARKED);
  hes_parked_t *parked = NULL;
  const uint32_t m[] = {1};
  assert_int_equal(hes_plans_add(p, "A", 0, NULL, m, 1, 100, &parked), 0);
  hes_plans_request_end(p);
  assert_non_null(parked);
  assert_true(parked->received == 4);
  assert_null(parked->next);
  hes_parked_free(parked);
  check_stats(p, 1, 1, 0, 0, 4, 0, 0, 0, 0);
  hes_plans_free(p);
}

static void test_park_window(void **state) {
  (void)state;
  hes_plans_config_t cfg = {.park_window = 5};
  hes_plans_t *p = hes_plans_new(&cfg);
  hes_plans_request_begin(p);
  assert_int_equal(hes_plans_lookup(p, "A", 10, "a1", 2, NULL), HES_PLAN_PARKED);
  assert_int_equal(hes_plans_lookup(p, "B", 12, "b1", 2, NULL), HES_PLAN_PARKED);
  assert_int_equal(hes_plans_lookup(p, "A", 13, "a2", 2, NULL), HES_PLAN_PARKED);
  assert_int_equal(hes_plans_expire(p, 14.9, NULL, NULL), 0);
  check_stats(p, 0, 0, 3, 6, 0, 0, 0, 0, 0);
  assert_int_equal(hes_plans_expire(p, 15, NULL, NULL), 0);
  check_stats(p, 0, 0, 2, 4, 1, 0, 0, 0, 0);
  assert_int_equal(hes_plans_expire(p, 17, NULL, NULL), 0);
  check_stats(p, 0, 0, 1, 2, 2, 0, 0, 0, 0);
  /* A2 is the survivor; it is handed back alone. */
  hes_parked_t *parked = NULL;
  const uint32_t m[] = {1};
  assert_int_equal(hes_plans_add(p, "A", 0, NULL, m, 1, 100, &parked), 0);
  assert_non_null(parked);
  assert_string_equal(parked->payload, "a2");
  assert_null(parked->next);
  hes_parked_free(parked);
  check_stats(p, 1, 1, 0, 0, 2, 0, 0, 0, 0);
  /* B timed out, so B's plan arriving later gets nothing. */
  assert_int_equal(hes_plans_add(p, "B", 0, NULL, m, 1, 100, &parked), 0);
  assert_null(parked);
  assert_int_equal(hes_plans_lookup(p, "C", 20, "c", 1, NULL), HES_PLAN_PARKED);
  assert_int_equal(hes_plans_expire(p, 30, NULL, NULL), 0);
  check_stats(p, 2, 2, 0, 0, 3, 0, 0, 0, 0);
  hes_plans_request_end(p);
  check_stats(p, 2, 2, 0, 0, 3, 0, 0, 0, 0);
  hes_plans_free(p);
}

static void test_eexist_einval(void **state) {
  (void)state;
  hes_plans_t *p = hes_plans_new(NULL);
  const uint32_t m[] = {1, 2};
  int dummy;
  hes_parked_t *parked = (hes_parked_t *)&dummy;
  char id64[65], id63[64];
  memset(id64, 'x', 64);
  id64[64] = '\0';
  memset(id63, 'x', 63);
  id63[63] = '\0';

  assert_int_equal(hes_plans_add(p, "", 0, NULL, m, 2, 100, &parked), EINVAL);
  assert_null(parked);
  assert_int_equal(hes_plans_add(p, NULL, 0, NULL, m, 2, 100, NULL), EINVAL);
  assert_int_equal(hes_plans_add(p, id64, 0, NULL, m, 2, 100, NULL), EINVAL);
  assert_int_equal(hes_plans_add(p, "a", 0, NULL, m, 0, 100, NULL), EINVAL);
  assert_int_equal(hes_plans_add(p, "a", 0, NULL, NULL, 2, 100, NULL), EINVAL);
  assert_int_equal(hes_plans_add(p, "a", 0, NULL, m, 2, NAN, NULL), EINVAL);
  parked = (hes_parked_t *)&dummy;
  assert_int_equal(hes_plans_add(NULL, "a", 0, NULL, m, 2, 100, &parked), EINVAL);
  assert_null(parked);
  check_stats(p, 0, 0, 0, 0, 0, 0, 0, 0, 0);

  assert_int_equal(hes_plans_add(p, id63, 0, NULL, m, 2, 100, NULL), 0);
  assert_int_equal(hes_plans_lookup(p, id63, 1, NULL, 0, NULL), HES_PLAN_OPEN);
  assert_int_equal(hes_plans_answer(p, id63, 2), 1);
  assert_int_equal(hes_plans_add(p, "a", 0, NULL, m, 2, 100, NULL), 0);
  parked = (hes_parked_t *)&dummy;
  assert_int_equal(hes_plans_add(p, "a", 0, NULL, m, 1, 200, &parked), EEXIST);
  assert_null(parked);
  assert_int_equal(hes_plans_add(p, id63, 0, NULL, m, 1, 200, NULL), EEXIST);
  /* The refused adds changed nothing. */
  check_stats(p, 2, 3, 0, 0, 0, 0, 0, 0, 0);
  hes_plans_finish(p, "a", NULL, NULL);
  assert_int_equal(hes_plans_add(p, "a", 0, NULL, m, 2, 100, NULL), EEXIST);
  check_stats(p, 1, 1, 0, 0, 0, 0, 0, 0, 2);
  /* An infinite deadline is allowed: such a plan only ends by its answers or finish. */
  assert_int_equal(hes_plans_add(p, "inf", 0, NULL, m, 2, INFINITY, NULL), 0);
  assert_int_equal(hes_plans_expire(p, 1e300, NULL, NULL), 1);
  check_stats(p, 1, 2, 0, 0, 0, 0, 0, 0, 3);
  hes_plans_free(p);
}

static void test_expire_order(void **state) {
  (void)state;
  hes_plans_t *p = hes_plans_new(NULL);
  rec_t *r = rec_new();
  const uint32_t m[] = {1};
  assert_int_equal(add(p, "d5", m, 1, 50), 0);
  assert_int_equal(add(p, "d1", m, 1, 10), 0);
  assert_int_equal(add(p, "d3", m, 1, 30), 0);
  assert_int_equal(add(p, "d2", m, 1, 20), 0);
  assert_int_equal(add(p, "d4", m, 1, 40), 0);
  assert_int_equal(add(p, "d3b", m, 1, 30), 0);
  assert_int_equal(add(p, "d0", m, 1, 5), 0);
  hes_plans_finish(p, "d0", rec_cb, r); /* removed from the top of the heap */
  hes_plans_finish(p, "d4", rec_cb, r); /* and from the middle */
  assert_int_equal(r->ncalls, 2);

  assert_int_equal(hes_plans_expire(p, 9, rec_cb, r), 0);
  assert_int_equal(hes_plans_expire(p, 25, rec_cb, r), 2);
  assert_int_equal(r->ncalls, 4);
  assert_string_equal(r->calls[2].id, "d1");
  assert_string_equal(r->calls[3].id, "d2");
  assert_int_equal(hes_plans_expire(p, 30, rec_cb, r), 2);
  assert_int_equal(r->ncalls, 6);
  assert_true((strcmp(r->calls[4].id, "d3") == 0 && strcmp(r->calls[5].id, "d3b") == 0) ||
              (strcmp(r->calls[4].id, "d3b") == 0 && strcmp(r->calls[5].id, "d3") == 0));
  check_stats(p, 1, 1, 0, 0, 0, 0, 0, 0, 6);
  assert_int_equal(hes_plans_expire(p, 100, rec_cb, r), 1);
  assert_string_equal(r->calls[6].id, "d5");
  assert_int_equal(r->ncalls, 7);
  check_stats(p, 0, 0, 0, 0, 0, 0, 0, 0, 7);
  assert_int_equal(hes_plans_lookup(p, "d4", 101, NULL, 0, NULL), HES_PLAN_DUPLICATE);
  assert_int_equal(hes_plans_lookup(p, "d5", 101, NULL, 0, NULL), HES_PLAN_LATE);
  rec_free(r);
  hes_plans_free(p);
}

/* Many random deadlines with removals from anywhere: the heap must stay a heap. */
#define RAND_PLANS 3000
static uint32_t lcg_state = 12345;
static uint32_t lcg(void) {
  lcg_state = lcg_state * 1664525u + 1013904223u;
  return lcg_state >> 8;
}

typedef struct {
  double deadlines[RAND_PLANS];
  bool gone[RAND_PLANS];
  double now;
  size_t calls;
  size_t bad;
} order_ctx_t;

static void order_cb(void *ctx, const char *plan_id, uint32_t tag, void *user,
                     const uint32_t *meters, size_t n) {
  order_ctx_t *o = ctx;
  (void)plan_id;
  (void)user;
  (void)meters;
  o->calls++;
  if (tag >= RAND_PLANS || o->gone[tag] || n != 1) {
    o->bad++;
    return;
  }
  o->gone[tag] = true;
  if (!(o->deadlines[tag] <= o->now))
    o->bad++;
}

static void test_expire_random(void **state) {
  (void)state;
  hes_plans_t *p = hes_plans_new(NULL);
  order_ctx_t *o = calloc(1, sizeof(*o));
  assert_non_null(o);
  const uint32_t m[] = {7};
  char id[32];
  for (uint32_t i = 0; i < RAND_PLANS; i++) {
    o->deadlines[i] = (double)(lcg() % 1000);
    snprintf(id, sizeof(id), "r%u", i);
    assert_int_equal(hes_plans_add(p, id, i, NULL, m, 1, o->deadlines[i], NULL), 0);
  }
  size_t finished = 0;
  for (uint32_t i = 0; i < RAND_PLANS; i += 7) {
    snprintf(id, sizeof(id), "r%u", i);
    o->now = -1;
    hes_plans_finish(p, id, order_cb, o);
    finished++;
  }
  assert_int_equal(o->bad, RAND_PLANS / 7 + 1); /* finish reports with a deadline > -1 */
  o->bad = 0;
  o->calls = 0;
  size_t expired = 0;
  for (int now = 0;; now += 13) {
    o->now = now;
    expired += hes_plans_expire(p, now, order_cb, o);
    assert_int_equal(o->bad, 0);
    size_t open = 0;
    for (uint32_t i = 0; i < RAND_PLANS; i++) {
      if (o->gone[i])
        continue;
      open++;
      assert_true(o->deadlines[i] > now);
    }
    assert_int_equal(stats(p).plans_pending, open);
    if (now > 1000)
      break;
  }
  assert_int_equal(expired, RAND_PLANS - finished);
  assert_int_equal(o->calls, expired);
  check_stats(p, 0, 0, 0, 0, 0, 0, 0, 0, RAND_PLANS);
  free(o);
  hes_plans_free(p);
}

static void test_tombstone_ttl(void **state) {
  (void)state;
  hes_plans_config_t cfg = {.tombstone_ttl = 100};
  hes_plans_t *p = hes_plans_new(&cfg);
  const uint32_t m[] = {1};

  /* Made before any time was seen: it lives from the first time seen. */
  assert_int_equal(add(p, "early", m, 1, 1e9), 0);
  assert_int_equal(hes_plans_answer(p, "early", 1), 1);
  hes_plans_expire(p, 5000, NULL, NULL);
  assert_int_equal(hes_plans_lookup(p, "early", 5099, NULL, 0, NULL), HES_PLAN_DUPLICATE);
  assert_int_equal(add(p, "T", m, 1, 1e9), 0);
  assert_int_equal(hes_plans_answer(p, "T", 1), 1); /* tombstone at 5099 */
  assert_int_equal(add(p, "E", m, 1, 5120), 0);
  hes_plans_expire(p, 5099.5, NULL, NULL);
  assert_int_equal(hes_plans_lookup(p, "early", 5099.5, NULL, 0, NULL), HES_PLAN_DUPLICATE);
  hes_plans_expire(p, 5100, NULL, NULL);
  assert_int_equal(hes_plans_lookup(p, "early", 5100, NULL, 0, NULL), HES_PLAN_FOREIGN);
  assert_int_equal(hes_plans_lookup(p, "T", 5100, NULL, 0, NULL), HES_PLAN_DUPLICATE);
  check_stats(p, 1, 1, 0, 0, 1, 3, 0, 0, 0);
  assert_int_equal(hes_plans_expire(p, 5120, NULL, NULL), 1); /* E's tombstone at 5120 */
  hes_plans_expire(p, 5198.9, NULL, NULL);
  assert_int_equal(hes_plans_lookup(p, "T", 5199, NULL, 0, NULL), HES_PLAN_DUPLICATE);
  hes_plans_expire(p, 5199, NULL, NULL);
  assert_int_equal(hes_plans_lookup(p, "T", 5199, NULL, 0, NULL), HES_PLAN_FOREIGN);
  assert_int_equal(hes_plans_lookup(p, "E", 5219, NULL, 0, NULL), HES_PLAN_LATE);
  hes_plans_expire(p, 5220, NULL, NULL);
  assert_int_equal(hes_plans_lookup(p, "E", 5220, NULL, 0, NULL), HES_PLAN_FOREIGN);
  check_stats(p, 0, 0, 0, 0, 3, 4, 1, 0, 1);
  /* Forgotten ids may be used again. */
  assert_int_equal(add(p, "T", m, 1, 1e9), 0);
  assert_int_equal(add(p, "E", m, 1, 1e9), 0);
  check_stats(p, 2, 2, 0, 0, 3, 4, 1, 0, 1);
  hes_plans_free(p);
}

static void test_tombstone_max(void **state) {
  (void)state;
  hes_plans_config_t cfg = {.tombstone_max = 3};
  hes_plans_t *p = hes_plans_new(&cfg);
  const uint32_t m[] = {1, 2};
  const char *ids[] = {"A", "B", "C", "D"};
  for (int i = 0; i < 4; i++) {
    assert_int_equal(add(p, ids[i], m, 2, 100), 0);
    if (i == 3)
      assert_int_equal(hes_plans_expire(p, 100, NULL, NULL), 1);
    else
      hes_plans_finish(p, ids[i], NULL, NULL);
  }
  check_stats(p, 0, 0, 0, 0, 0, 0, 0, 0, 8);
  assert_int_equal(hes_plans_lookup(p, "A", 101, NULL, 0, NULL), HES_PLAN_FOREIGN);
  assert_int_equal(hes_plans_lookup(p, "B", 101, NULL, 0, NULL), HES_PLAN_DUPLICATE);
  assert_int_equal(hes_plans_lookup(p, "C", 101, NULL, 0, NULL), HES_PLAN_DUPLICATE);
  assert_int_equal(hes_plans_lookup(p, "D", 101, NULL, 0, NULL), HES_PLAN_LATE);
  check_stats(p, 0, 0, 0, 0, 1, 2, 1, 0, 8);
  assert_int_equal(add(p, "B", m, 2, 200), EEXIST);
  assert_int_equal(add(p, "A", m, 2, 200), 0);
  hes_plans_finish(p, "A", NULL, NULL); /* pushes B out */
  assert_int_equal(hes_plans_lookup(p, "B", 102, NULL, 0, NULL), HES_PLAN_FOREIGN);
  assert_int_equal(hes_plans_lookup(p, "A", 102, NULL, 0, NULL), HES_PLAN_DUPLICATE);
  check_stats(p, 0, 0, 0, 0, 2, 3, 1, 0, 10);
  hes_plans_free(p);
}

/* The missing callback runs after the plans lock is released: a callback that uses the
 * table again (registers a follow-up plan, reads the stats, finishes another plan) must
 * not deadlock. With the callback under the lock, this test hangs. */
typedef struct {
  hes_plans_t *p;
  size_t calls;
  size_t pending_seen;
} reenter_t;

static void reenter_cb(void *ctx, const char *plan_id, uint32_t tag, void *user,
                       const uint32_t *meters, size_t n) {
  (void)tag;
  (void)user;
  (void)meters;
  (void)n;
  reenter_t *r = ctx;
  r->calls++;
  hes_plans_stats_t st;
  hes_plans_stats(r->p, &st);
  r->pending_seen = st.plans_pending;
  char again[64];
  snprintf(again, sizeof(again), "%s-retry", plan_id);
  const uint32_t m[] = {1};
  assert_int_equal(hes_plans_add(r->p, again, 0, NULL, m, 1, 1000, NULL), 0);
  hes_plans_finish(r->p, "other", NULL, NULL);
  assert_int_equal(hes_plans_answer(r->p, again, 1), 1);
}

static void test_missing_reenters(void **state) {
  (void)state;
  hes_plans_t *p = hes_plans_new(NULL);
  reenter_t r = {.p = p};
  const uint32_t m[] = {1, 2};
  assert_int_equal(add(p, "A", m, 2, 10), 0);
  assert_int_equal(add(p, "B", m, 2, 20), 0);
  assert_int_equal(add(p, "other", m, 2, 500), 0);
  assert_int_equal(hes_plans_expire(p, 30, reenter_cb, &r), 2);
  assert_int_equal(r.calls, 2);
  assert_int_equal(hes_plans_lookup(p, "A-retry", 31, NULL, 0, NULL), HES_PLAN_DUPLICATE);
  assert_int_equal(hes_plans_lookup(p, "B-retry", 31, NULL, 0, NULL), HES_PLAN_DUPLICATE);
  assert_int_equal(hes_plans_lookup(p, "other", 31, NULL, 0, NULL), HES_PLAN_DUPLICATE);
  assert_int_equal(r.pending_seen, 0);

  assert_int_equal(add(p, "C", m, 2, 100), 0);
  hes_plans_finish(p, "C", reenter_cb, &r);
  assert_int_equal(r.calls, 3);
  assert_int_equal(hes_plans_lookup(p, "C-retry", 31, NULL, 0, NULL), HES_PLAN_DUPLICATE);
  hes_plans_free(p);
}

/* hes_plans_answer_batch gives what hes_plans_answer gives reading by reading: the same
 * readings kept, the same counters, the plan finished by its last meter with the repeats
 * after it counted duplicate, and late or unknown plans. */
static void test_answer_batch(void **state) {
  (void)state;
  hes_plans_t *one = hes_plans_new(NULL), *batch = hes_plans_new(NULL);
  srand(7);
  for (int round = 0; round < 200; round++) {
    char id[32];
    snprintf(id, sizeof(id), "B%d", round);
    uint32_t m[8];
    size_t n = 1 + (size_t)(rand() % 8);
    for (size_t i = 0; i < n; i++)
      m[i] = (uint32_t)(rand() % 12);
    double deadline = round % 10 == 9 ? 1 : 1000; /* some expire before their push */
    assert_int_equal(hes_plans_add(one, id, 0, NULL, m, n, deadline, NULL) == 0,
                     hes_plans_add(batch, id, 0, NULL, m, n, deadline, NULL) == 0);
    hes_plans_expire(one, 2, NULL, NULL);
    hes_plans_expire(batch, 2, NULL, NULL);
    uint32_t push[16], want[16];
    size_t k = (size_t)(rand() % 16);
    for (size_t i = 0; i < k; i++)
      push[i] = rand() % 9 == 0 ? UINT32_MAX : (uint32_t)(rand() % 14);
    size_t kept_one = 0;
    const char *target = rand() % 20 == 0 ? "nosuch" : id;
    for (size_t i = 0; i < k; i++) {
      want[i] = UINT32_MAX;
      if (push[i] != UINT32_MAX && hes_plans_answer(one, target, push[i]) == 1) {
        want[i] = push[i];
        kept_one++;
      }
    }
    assert_int_equal(hes_plans_answer_batch(batch, target, push, k), kept_one);
    for (size_t i = 0; i < k; i++)
      assert_int_equal(push[i], want[i]);
    hes_plans_stats_t a, b;
    hes_plans_stats(one, &a);
    hes_plans_stats(batch, &b);
    assert_int_equal(a.plans_pending, b.plans_pending);
    assert_int_equal(a.meters_pending, b.meters_pending);
    assert_int_equal(a.duplicate, b.duplicate);
    assert_int_equal(a.late, b.late);
    assert_int_equal(a.missing, b.missing);
  }
  hes_plans_stats_t st;
  hes_plans_stats(batch, &st);
  assert_true(st.duplicate > 0 && st.late > 0);
  hes_plans_free(one);
  hes_plans_free(batch);
}

static void test_missing_exact(void **state) {
  (void)state;
  hes_plans_t *p = hes_plans_new(NULL);
  rec_t *r = rec_new();
  const uint32_t m[] = {9, 2, 7, 2, 100, 0, UINT32_MAX};
  hes_plan_info_t info;
  assert_int_equal(add(p, "M", m, 7, 100), 0);
  assert_int_equal(hes_plans_lookup(p, "M", 1, NULL, 0, &info), HES_PLAN_OPEN);
  assert_int_equal(info.meters, 6); /* the repeated 2 counts once */
  check_stats(p, 1, 6, 0, 0, 0, 0, 0, 0, 0);
  assert_int_equal(hes_plans_answer(p, "M", 7), 1);
  assert_int_equal(hes_plans_answer(p, "M", 0), 1);
  assert_int_equal(hes_plans_answer(p, "M", UINT32_MAX), 1);
  assert_int_equal(hes_plans_answer(p, "M", 1), -1);
  hes_plans_finish(p, "M", rec_cb, r);
  assert_int_equal(r->ncalls, 1);
  assert_int_equal(r->calls[0].n, 3);
  assert_int_equal(r->calls[0].meters[0], 2);
  assert_int_equal(r->calls[0].meters[1], 9);
  assert_int_equal(r->calls[0].meters[2], 100);
  check_stats(p, 0, 0, 0, 0, 0, 0, 0, 0, 3);

  /* A bigger plan crossing bitmap words; every third meter answered, then expired. */
  enum { BIG = 1000 };
  uint32_t *big = malloc(BIG * sizeof(*big));
  assert_non_null(big);
  for (uint32_t i = 0; i < BIG; i++)
    big[i] = (BIG - 1 - i) * 5; /* descending: the copy is sorted */
  assert_int_equal(add(p, "big", big, BIG, 200), 0);
  size_t answered = 0;
  for (uint32_t i = 0; i < BIG; i += 3) {
    assert_int_equal(hes_plans_answer(p, "big", i * 5), 1);
    answered++;
  }
  check_stats(p, 1, BIG - answered, 0, 0, 0, 0, 0, 0, 3);
  assert_int_equal(hes_plans_expire(p, 200, rec_cb, r), 1);
  assert_int_equal(r->ncalls, 2);
  assert_int_equal(r->calls[1].n, BIG - answered);
  size_t k = 0;
  for (uint32_t i = 0; i < BIG; i++) {
    if (i % 3 == 0)
      continue;
    assert_int_equal(r->calls[1].meters[k], i * 5);
    k++;
  }
  assert_int_equal(k, BIG - answered);
  check_stats(p, 0, 0, 0, 0, 0, 0, 0, 0, 3 + BIG - answered);

  /* No callback: still counted. */
  assert_int_equal(add(p, "nocb", big, 10, 300), 0);
  hes_plans_finish(p, "nocb", NULL, NULL);
  check_stats(p, 0, 0, 0, 0, 0, 0, 0, 0, 13 + BIG - answered);
  free(big);
  rec_free(r);
  hes_plans_free(p);
}

static void test_100k_meters(void **state) {
  (void)state;
  enum { PLANS = 100, PER = 1000 };
  hes_plans_t *p = hes_plans_new(NULL);
  size_t empty_mem = stats(p).memory;
  uint32_t *m = malloc(PER * sizeof(*m));
  assert_non_null(m);
  char id[32];
  for (uint32_t i = 0; i < PLANS; i++) {
    for (uint32_t j = 0; j < PER; j++)
      m[j] = i * PER + (PER - 1 - j);
    snprintf(id, sizeof(id), "plan-%u", i);
    assert_int_equal(hes_plans_add(p, id, i, NULL, m, PER, 1000 + i, NULL), 0);
  }
  check_stats(p, PLANS, PLANS * PER, 0, 0, 0, 0, 0, 0, 0);
  /* About 4.2 bytes a pending meter, plus a fixed cost per plan. */
  size_t mem = stats(p).memory - empty_mem;
  assert_true(mem <= (size_t)(PLANS * PER * 4.2) + PLANS * 256);

  for (uint32_t j = 0; j < PER; j++) {
    for (uint32_t i = 0; i < PLANS; i++) {
      snprintf(id, sizeof(id), "plan-%u", i);
      assert_int_equal(hes_plans_answer(p, id, i * PER + j), 1);
    }
    if (j == PER / 2) {
      snprintf(id, sizeof(id), "plan-%u", 0u);
      assert_int_equal(hes_plans_answer(p, id, j), 0);
    }
  }
  check_stats(p, 0, 0, 0, 0, 0, 1, 0, 0, 0);
  /* What remains is 100 small tombstones and the grown arrays. */
  mem = stats(p).memory - empty_mem;
  assert_true(mem <= PLANS * 128 + 4096);
  assert_int_equal(hes_plans_expire(p, 5000, NULL, NULL), 0);
  free(m);
  hes_plans_free(p);
}

/* --- concurrency ------------------------------------------------------------------------ */

#define MT_PLANS         300
#define MT_METERS        64
#define MT_DOOMED_METERS 5
#define MT_THREADS       3

typedef struct {
  hes_plans_t *p;
  atomic_uint added;
  atomic_uint expired;
  atomic_bool failed;
} mt_shared_t;

typedef struct {
  mt_shared_t *sh;
  unsigned t;
  unsigned firsts, repeats, errors, foreign_lookups;
} mt_answerer_t;

static void *mt_adder(void *arg) {
  mt_shared_t *sh = arg;
  uint32_t m[MT_METERS];
  for (uint32_t j = 0; j < MT_METERS; j++)
    m[j] = j;
  char id[32];
  for (unsigned i = 0; i < MT_PLANS; i++) {
    hes_plans_request_begin(sh->p);
    snprintf(id, sizeof(id), "ok%u", i);
    int r1 = hes_plans_add(sh->p, id, i, NULL, m, MT_METERS, 1e12, NULL);
    snprintf(id, sizeof(id), "dm%u", i);
    int r2 = hes_plans_add(sh->p, id, i, NULL, m, MT_DOOMED_METERS, i, NULL);
    if (r1 != 0 || r2 != 0) {
      /* Let the answerers run out rather than wait forever. */
      atomic_store(&sh->failed, true);
      hes_plans_request_end(sh->p);
      atomic_store(&sh->added, MT_PLANS);
      return NULL;
    }
    hes_plans_request_end(sh->p);
    atomic_store(&sh->added, i + 1);
    atomic_fetch_add(&sh->expired, (unsigned)hes_plans_expire(sh->p, i, NULL, NULL));
  }
  return NULL;
}

static void *mt_answer(void *arg) {
  mt_answerer_t *a = arg;
  hes_plans_t *p = a->sh->p;
  char id[32];
  for (unsigned i = 0; i < MT_PLANS; i++) {
    while (atomic_load(&a->sh->added) <= i)
      sched_yield();
    snprintf(id, sizeof(id), "ok%u", i);
    hes_plan_info_t info;
    /* Our own meters are unanswered, so the plan cannot have finished yet. */
    if (hes_plans_lookup(p, id, 0, "{}", 2, &info) != HES_PLAN_OPEN || info.tag != i)
      a->errors++;
    for (uint32_t j = a->t; j < MT_METERS; j += MT_THREADS) {
      if (hes_plans_answer(p, id, j) == 1)
        a->firsts++;
      else
        a->errors++;
      if (hes_plans_answer(p, id, j) == 0)
        a->repeats++;
      else
        a->errors++;
    }
    snprintf(id, sizeof(id), "fx%u-%u", a->t, i);
    hes_plan_lookup_t r = hes_plans_lookup(p, id, 0, "zz", 2, NULL);
    if (r == HES_PLAN_PARKED || r == HES_PLAN_FOREIGN)
      a->foreign_lookups++;
    else
      a->errors++;
    hes_plans_stats_t st;
    hes_plans_stats(p, &st);
  }
  return NULL;
}

static void test_threads(void **state) {
  (void)state;
  hes_plans_config_t cfg = {.park_max_count = 1u << 20};
  mt_shared_t sh = {.p = hes_plans_new(&cfg)};
  assert_non_null(sh.p);
  atomic_init(&sh.added, 0);
  atomic_init(&sh.expired, 0);
  atomic_init(&sh.failed, false);
  mt_answerer_t a[MT_THREADS];
  pthread_t th[MT_THREADS + 1];
  assert_int_equal(pthread_create(&th[MT_THREADS], NULL, mt_adder, &sh), 0);
  for (unsigned t = 0; t < MT_THREADS; t++) {
    a[t] = (mt_answerer_t){.sh = &sh, .t = t};
    assert_int_equal(pthread_create(&th[t], NULL, mt_answer, &a[t]), 0);
  }
  for (unsigned t = 0; t <= MT_THREADS; t++)
    assert_int_equal(pthread_join(th[t], NULL), 0);

  assert_false(atomic_load(&sh.failed));
  unsigned firsts = 0, repeats = 0, foreign = 0;
  for (unsigned t = 0; t < MT_THREADS; t++) {
    assert_int_equal(a[t].errors, 0);
    firsts += a[t].firsts;
    repeats += a[t].repeats;
    foreign += a[t].foreign_lookups;
  }
  assert_int_equal(firsts, MT_PLANS * MT_METERS);
  assert_int_equal(repeats, MT_PLANS * MT_METERS);
  assert_int_equal(foreign, MT_PLANS * MT_THREADS);
  assert_int_equal(atomic_load(&sh.added), MT_PLANS);
  assert_int_equal(atomic_load(&sh.expired), MT_PLANS);
  check_stats(sh.p, 0, 0, 0, 0, MT_PLANS * MT_THREADS, MT_PLANS * MT_METERS, 0, 0,
              MT_PLANS * MT_DOOMED_METERS);
  hes_plans_free(sh.p);
}

/* Meters that left the list: no plan waits for them any more, none reports them missing, and
 * a plan left with nothing to wait for closes quietly. */
static void test_forget(void **state) {
  (void)state;
  hes_plans_t *p = hes_plans_new(NULL);
  rec_t *r = rec_new();
  const uint32_t a[] = {1, 2, 3}, b[] = {3}, c[] = {5, 200};
  assert_int_equal(add(p, "A", a, 3, 100), 0);
  assert_int_equal(add(p, "B", b, 1, 100), 0);
  assert_int_equal(add(p, "C", c, 2, 100), 0);
  assert_int_equal(hes_plans_answer(p, "C", 200), 1);
  const uint32_t gone[] = {3, 5, 7, UINT32_MAX};
  assert_int_equal(hes_plans_forget(p, gone, 4), 3);
  hes_plans_stats_t st;
  hes_plans_stats(p, &st);
  assert_int_equal(st.plans_pending, 1);
  assert_int_equal(st.meters_pending, 2);
  assert_int_equal(hes_plans_forget(p, gone, 4), 0); /* nothing left to forget */
  assert_int_equal(hes_plans_expire(p, 1000, rec_cb, r), 1);
  assert_int_equal(r->ncalls, 1);
  assert_int_equal(r->calls[0].n, 2);
  assert_int_equal(r->calls[0].meters[0], 1);
  assert_int_equal(r->calls[0].meters[1], 2);
  assert_int_equal(hes_plans_forget(NULL, gone, 4), 0);
  rec_free(r);
  hes_plans_free(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults_and_null),
      cmocka_unit_test(test_add_lookup_answer_finish),
      cmocka_unit_test(test_all_answered_finishes),
      cmocka_unit_test(test_late),
      cmocka_unit_test(test_foreign),
      cmocka_unit_test(test_park_then_add),
      cmocka_unit_test(test_park_overflow_count),
      cmocka_unit_test(test_park_overflow_bytes),
      cmocka_unit_test(test_unclaimed_at_last_end),
      cmocka_unit_test(test_park_window),
      cmocka_unit_test(test_eexist_einval),
      cmocka_unit_test(test_expire_order),
      cmocka_unit_test(test_expire_random),
      cmocka_unit_test(test_tombstone_ttl),
      cmocka_unit_test(test_tombstone_max),
      cmocka_unit_test(test_answer_batch),
      cmocka_unit_test(test_missing_exact),
      cmocka_unit_test(test_forget),
      cmocka_unit_test(test_missing_reenters),
      cmocka_unit_test(test_100k_meters),
      cmocka_unit_test(test_threads),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
