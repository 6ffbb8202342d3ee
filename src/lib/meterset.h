/* meterset: the meter list of one server as a series of immutable versions, swapped while
 * other threads read it.
 *
 * Every meter has a stable index: a meter present in two consecutive versions keeps its index,
 * so state kept in arrays by index (plans, billing, relay holdoff) survives a swap for it. A
 * meter that leaves leaves a hole; holes are reused by later joiners, lowest first, but only
 * once no reader still holds a version in which the old meter had that index.
 *
 * Readers (MQTT thread, relay thread, billing loop, read rounds) pin the current version,
 * look meters up in it without any lock, and unpin it. The writer (one thread at a time, the
 * one that checks the sources each round) prepares a version from a new member list, learns
 * who joins and who leaves, gets its per-index state ready, then commits. */
#ifndef HES_METERSET_H
#define HES_METERSET_H

#include <stddef.h>
#include <stdint.h>

#include "meters.h"

typedef struct hes_meterset hes_meterset_t;
typedef struct hes_meterver hes_meterver_t;

typedef enum {
  HES_METERSET_OK = 0,
  HES_METERSET_EINVAL, /* NULL argument, or an update already prepared and not committed */
  HES_METERSET_ENOMEM,
} hes_meterset_result_t;

/* What a prepared version changes. joined[] are the indices the new version gives its new
 * meters (names: hes_meterver_name(next, i)); left[] the indices of the meters it drops
 * (names: hes_meterver_name(prev, i), valid until hes_meterset_update_done). */
typedef struct {
  const hes_meterver_t *prev;
  const hes_meterver_t *next;
  uint32_t *joined;
  size_t n_joined;
  uint32_t *left;
  size_t n_left;
} hes_meterset_update_t;

/* A set holding an empty version (generation 0). */
hes_meterset_t *hes_meterset_new(void);
/* Frees the set and every version. No version may still be pinned. */
void hes_meterset_free(hes_meterset_t *s);

/* ---- readers: any thread ---------------------------------------------------------- */

/* The current version, which stays valid (and unchanged) until unpinned. Pin for one unit of
 * work (a push message, a relay command, a billing step), not across rounds: a pinned version
 * keeps its leavers' indices from being reused. Never NULL for a non-NULL set. */
const hes_meterver_t *hes_meterset_pin(hes_meterset_t *s);
void hes_meterset_unpin(hes_meterset_t *s, const hes_meterver_t *v);

/* The stable index of a meter number, or HES_METER_NONE. s need not be NUL-terminated. No
 * lock: as cheap as hes_meters_find plus one array read. */
uint32_t hes_meterver_find(const hes_meterver_t *v, const char *s, size_t len);
/* The meter at a stable index, or NULL for a hole or an index >= capacity. */
const char *hes_meterver_name(const hes_meterver_t *v, uint32_t idx);
/* Meters in this version. */
size_t hes_meterver_count(const hes_meterver_t *v);
/* One more than the highest index in use: the size per-index state arrays need. */
uint32_t hes_meterver_capacity(const hes_meterver_t *v);
/* The i-th meter in list order (i < count), its index in *idx: for building devLists. */
const char *hes_meterver_at(const hes_meterver_t *v, size_t i, uint32_t *idx);
/* A copy of the version's meters in list order, sealed (index i: the i-th meter, not the
 * stable index): for lists kept by meter number. NULL: no memory. */
hes_meters_t *hes_meterver_list(const hes_meterver_t *v);
/* 0 for the initial empty version, then one more per commit. */
uint64_t hes_meterver_generation(const hes_meterver_t *v);

/* ---- the writer: one thread at a time --------------------------------------------------- */

/* Builds the next version from `members` (the whole new list; taken over, sealed here and
 * freed with the version, even on failure) and fills *up. Nothing is visible to readers
 * until hes_meterset_commit. At most one update may be pending. */
hes_meterset_result_t hes_meterset_prepare(hes_meterset_t *s, hes_meters_t *members,
                                           hes_meterset_update_t *up);
/* Publishes up->next: pins taken from now on see it. up->prev stays readable. */
void hes_meterset_commit(hes_meterset_t *s, hes_meterset_update_t *up);
/* Drops a prepared update without publishing it. */
void hes_meterset_abort(hes_meterset_t *s, hes_meterset_update_t *up);
/* Ends a committed update: frees the lists and lets up->prev go once its readers are done. */
void hes_meterset_update_done(hes_meterset_t *s, hes_meterset_update_t *up);

/* Heap bytes of the current version (the benchmark's bytes per meter), and of the versions
 * still pinned by readers after a swap. */
size_t hes_meterset_memory(hes_meterset_t *s, size_t *retired_bytes);

#endif
