/* plans: the operation plans this instance asked the HES for, by planId, until their push
 * arrives or their deadline passes.
 *
 * - Exactly once: each meter of a plan is answered at most once; a finished plan is
 *   remembered for a while (a tombstone), so a QoS 1 redelivery is recognised as a duplicate
 *   and a push after the deadline as late.
 * - Push before response: the HES may push a plan's result before the HTTP answer that
 *   names the planId has been read. A push for an unknown planId that arrives while one of
 *   our requests is in flight is parked (bounded in count, bytes and time) and handed back
 *   by hes_plans_add. One that arrives while nothing of ours is in flight cannot be ours:
 *   it is another instance's (several collectd instances share a tenant) and is counted as
 *   foreign at once, so foreign traffic never fills the parking space. Parked pushes still
 *   unclaimed when the last in-flight request ends are foreign too.
 * - Expiry: plans past their deadline report the meters that never answered.
 *
 * Thread-safe: one mutex, held for lookups and updates only, never across I/O or callbacks
 * into the caller. O(1) lookups by planId. */
#ifndef HES_PLANS_H
#define HES_PLANS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct hes_plans hes_plans_t;

typedef struct {
  size_t park_max_count; /* parked pushes at most (default 1024) */
  size_t park_max_bytes; /* their payload bytes at most (default 64 MiB) */
  double park_window;    /* seconds a parked push may wait at most (default 30) */
  double tombstone_ttl;  /* seconds a finished or expired planId is remembered (default 3600) */
  size_t tombstone_max;  /* tombstones at most, oldest forgotten first (default 65536) */
} hes_plans_config_t;

/* A push parked before its plan was known; handed back by hes_plans_add. */
typedef struct hes_parked {
  struct hes_parked *next;
  double received; /* `now` of the hes_plans_lookup that parked it */
  size_t len;
  char payload[]; /* len bytes, then a '\0' */
} hes_parked_t;

typedef struct {
  uint32_t tag; /* the caller's, from hes_plans_add (e.g. an item cgcode) */
  void *user;   /* the caller's, not owned */
  size_t meters;
  size_t answered;
  double deadline; /* from hes_plans_add */
  double sent;     /* from hes_plans_add_sent: when its request was sent; NaN: not given */
} hes_plan_info_t;

typedef enum {
  HES_PLAN_OPEN,      /* known and waiting: answer its meters with hes_plans_answer */
  HES_PLAN_PARKED,    /* unknown while a request is in flight: the payload was copied */
  HES_PLAN_FOREIGN,   /* unknown, and nothing of ours in flight: another instance's plan */
  HES_PLAN_DUPLICATE, /* finished already: a redelivery */
  HES_PLAN_LATE,      /* expired already: arrived after its deadline */
  HES_PLAN_DROPPED,   /* would have been parked, but the parking space is full */
} hes_plan_lookup_t;

typedef struct {
  size_t plans_pending;  /* open plans */
  size_t meters_pending; /* meters of open plans not answered yet */
  size_t parked;         /* parked pushes now */
  size_t parked_bytes;
  uint64_t foreign;   /* pushes counted as another instance's */
  uint64_t duplicate; /* pushes for finished plans, and repeated meter answers */
  uint64_t late;      /* pushes for expired plans, and meter answers after the expiry */
  uint64_t dropped;   /* pushes that found the parking space full */
  uint64_t missing;   /* meters that never answered (finished partial, or expired) */
  size_t memory;      /* bytes allocated by the table now (allocator overhead not counted) */
} hes_plans_stats_t;

/* Called for the meters of a plan that never answered: from hes_plans_finish and
 * hes_plans_expire, after the plans lock is released (what expired is collected under the
 * lock, reported after it), so it may log, notify, or call hes_plans_* itself. One call per
 * plan, in expiry order. `meters` and `plan_id` are valid during the call only. */
typedef void (*hes_plans_missing_cb)(void *ctx, const char *plan_id, uint32_t tag, void *user,
                                     const uint32_t *meters, size_t n);

/* cfg NULL: defaults. Zero fields take their defaults too. */
hes_plans_t *hes_plans_new(const hes_plans_config_t *cfg);
/* Frees everything, including parked pushes, without reporting missing meters. */
void hes_plans_free(hes_plans_t *p);

/* Bracket every HES request that may create a plan: begin before sending, end after
 * hes_plans_add of its plan (or after the request failed). */
void hes_plans_request_begin(hes_plans_t *p);
void hes_plans_request_end(hes_plans_t *p);

/* Registers a plan for meters[0..n-1] (indices, copied), open until `deadline` (absolute
 * seconds, the same clock as every `now`). Pushes parked for this planId are moved to
 * *parked (oldest first; the caller handles each, then hes_parked_free; parked NULL: they
 * are freed and counted dropped). Repeated meter indices count once. Returns 0, EEXIST
 * when the planId is open or remembered already, EINVAL for a bad id (NULL, empty, 64
 * bytes or longer), meters NULL, n == 0 or a NaN deadline, ENOMEM. */
int hes_plans_add(hes_plans_t *p, const char *plan_id, uint32_t tag, void *user,
                  const uint32_t *meters, size_t n, double deadline, hes_parked_t **parked);
/* hes_plans_add with the time its request was sent (same clock), given back by lookups
 * (hes_plan_info_t.sent): the start of its pushes' latency. */
int hes_plans_add_sent(hes_plans_t *p, const char *plan_id, uint32_t tag, void *user,
                       const uint32_t *meters, size_t n, double sent, double deadline,
                       hes_parked_t **parked);

/* Classifies an arriving push by its planId; parks a copy of payload[0..len) when
 * HES_PLAN_PARKED. *info is filled for HES_PLAN_OPEN (may be NULL). An id that
 * hes_plans_add would refuse (NULL, empty, too long) is HES_PLAN_FOREIGN. Every result but
 * OPEN and PARKED is counted in the stats at once. */
hes_plan_lookup_t hes_plans_lookup(hes_plans_t *p, const char *plan_id, double now,
                                   const void *payload, size_t len, hes_plan_info_t *info);

/* Records that meter (an index) answered in plan_id. Returns 1 for its first answer (use
 * it), 0 for a repeat or a plan that finished meanwhile (drop it, counted as duplicate),
 * -1 for a meter that is not in the plan or an unknown plan (drop it). When the last meter
 * answers, the plan finishes by itself. A plan that expired meanwhile also gives 0, counted
 * as late. */
int hes_plans_answer(hes_plans_t *p, const char *plan_id, uint32_t meter);

/* hes_plans_answer for meters[0..n-1] under one lock and one lookup (a push's readings):
 * each entry that hes_plans_answer would not answer 1 for is set to UINT32_MAX (entries that
 * are UINT32_MAX already are skipped), with the same counting. Returns the entries kept. */
size_t hes_plans_answer_batch(hes_plans_t *p, const char *plan_id, uint32_t *meters, size_t n);

/* Finishes a plan whose final push has been handled (status partial or failure, or a
 * push kind that answers as a whole): meters that never answered are reported missing. */
void hes_plans_finish(hes_plans_t *p, const char *plan_id, hes_plans_missing_cb cb, void *ctx);

/* Expires open plans whose deadline is <= now (their unanswered meters reported missing)
 * and parked pushes with received + park_window <= now (counted foreign), and forgets
 * tombstones older than tombstone_ttl. answer and finish take no time: a tombstone's age
 * counts from the largest `now` any call had passed in when it was made. Returns the
 * number of plans expired. */
size_t hes_plans_expire(hes_plans_t *p, double now, hes_plans_missing_cb cb, void *ctx);

void hes_plans_stats(hes_plans_t *p, hes_plans_stats_t *out);

void hes_parked_free(hes_parked_t *list);

const char *hes_plan_lookup_string(hes_plan_lookup_t r);

/* Meters that left the list: open plans stop waiting for them, silently (neither answered
 * nor missing in the counters' sense: they are taken off meters_pending). A plan left with
 * nothing to wait for closes without a report. Indices UINT32_MAX are skipped. Returns how
 * many (plan, meter) waits were dropped. */
size_t hes_plans_forget(hes_plans_t *p, const uint32_t *meters, size_t n);

#endif
