/* hashtab: the one hash index of the library, for the meter list (meter number -> index, a
 * lookup per reading), the plans (planId -> plan, tombstone or parked pushes, a lookup per
 * push) and the relay's OKAY tracking set (identifier -> seen).
 *
 * Open addressing with linear probing over a power-of-two array of uint32_t references, load
 * at most 1/2, backward-shift deletion (no tombstones, so a miss stays short after many
 * deletes). A reference is the caller's number for an entry: the meter list's dense index
 * itself (4 bytes a slot, nothing else stored), or, through hes_hashdir_t, a slot of a
 * directory of the caller's objects with their hashes.
 *
 * The lookups are static inline and take the key comparison as a function pointer, so that at
 * a call site with a constant comparison the compiler inlines it: the hot paths pay no
 * indirect call. Not thread-safe: the caller locks. */
#ifndef HES_HASHTAB_H
#define HES_HASHTAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HES_HASHTAB_NONE UINT32_MAX          /* an empty slot, or "not found" */
#define HES_HASHTAB_MAX  (UINT32_C(1) << 30) /* references at most */

/* Is the entry of ref the key key[0..len)? */
typedef bool (*hes_hashtab_eq_fn)(const void *ctx, uint32_t ref, const char *key, size_t len);
/* The hash (hes_hashtab_hash) of the entry of ref's key, to rebuild the index. */
typedef uint32_t (*hes_hashtab_hash_fn)(const void *ctx, uint32_t ref);

typedef struct {
  uint32_t *slots; /* a reference or HES_HASHTAB_NONE; NULL until the first reserve */
  uint32_t len;    /* slots: 0 or a power of two */
  uint32_t count;  /* references held */
} hes_hashtab_t;

/* FNV-1a, then murmur3's finalizer: meter numbers are mostly sequential digits and planIds
 * often share long prefixes, and the finalizer spreads them over the low bits that pick the
 * slot. */
static inline uint32_t hes_hashtab_hash(const char *s, size_t len) {
  uint32_t h = 2166136261u;

  for (size_t i = 0; i < len; i++) {
    h ^= (unsigned char)s[i];
    h *= 16777619u;
  }
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

/* The slot that holds the key, or the empty slot where it would go. t->len must not be 0
 * (the load bound guarantees an empty slot, so the probe ends). */
static inline uint32_t hes_hashtab_slot(const hes_hashtab_t *t, uint32_t hash, hes_hashtab_eq_fn eq,
                                        const void *ctx, const char *key, size_t len) {
  uint32_t mask = t->len - 1;
  uint32_t i = hash & mask;

  for (;;) {
    uint32_t ref = t->slots[i];
    if (ref == HES_HASHTAB_NONE || eq(ctx, ref, key, len))
      return i;
    i = (i + 1) & mask;
  }
}

/* The reference of the key, or HES_HASHTAB_NONE. */
static inline uint32_t hes_hashtab_find(const hes_hashtab_t *t, uint32_t hash, hes_hashtab_eq_fn eq,
                                        const void *ctx, const char *key, size_t len) {
  if (t->len == 0)
    return HES_HASHTAB_NONE;
  return t->slots[hes_hashtab_slot(t, hash, eq, ctx, key, len)];
}

/* Makes room for `extra` more references at load 1/2, rebuilding the index with hash_of when
 * it grows (slots found before are then stale: probe again). 0, or ENOMEM / EOVERFLOW with
 * the index unchanged. */
int hes_hashtab_reserve(hes_hashtab_t *t, uint32_t extra, hes_hashtab_hash_fn hash_of,
                        const void *ctx);

/* Stores ref in slot, an empty slot that hes_hashtab_slot returned after a reserve. */
void hes_hashtab_put(hes_hashtab_t *t, uint32_t slot, uint32_t ref);

/* Empties slot and moves later entries of its probe run back (hash_of tells where each one
 * belongs). */
void hes_hashtab_remove(hes_hashtab_t *t, uint32_t slot, hes_hashtab_hash_fn hash_of,
                        const void *ctx);

/* Rebuilds the index with no more slots than `count` references need (after a seal). */
int hes_hashtab_shrink(hes_hashtab_t *t, hes_hashtab_hash_fn hash_of, const void *ctx);

size_t hes_hashtab_memory(const hes_hashtab_t *t);
void hes_hashtab_free(hes_hashtab_t *t);

/* ---- a directory of the caller's objects ---------------------------------------------- */

/* Objects by key, for callers whose entries are allocated one by one (plans, tombstones,
 * parked pushes, the relay's seen identifiers). The index refers to a dense array of the
 * objects with their hashes beside them, so a probe compares hashes before it touches an
 * object, and growth and deletion never call back into the caller. Removal moves the last
 * object into the hole. */
typedef struct {
  hes_hashtab_t index;
  void **items;
  uint32_t *hashes;
  uint32_t count;
  uint32_t cap;
} hes_hashdir_t;

/* Is item's key key[0..len)? */
typedef bool (*hes_hashdir_eq_fn)(const void *item, const char *key, size_t len);

static inline uint32_t hes_hashdir__slot(const hes_hashdir_t *d, uint32_t hash,
                                         hes_hashdir_eq_fn eq, const char *key, size_t len) {
  uint32_t mask = d->index.len - 1;
  uint32_t i = hash & mask;

  for (;;) {
    uint32_t ref = d->index.slots[i];
    if (ref == HES_HASHTAB_NONE || (d->hashes[ref] == hash && eq(d->items[ref], key, len)))
      return i;
    i = (i + 1) & mask;
  }
}

/* The object of the key, or NULL. hash: hes_hashtab_hash(key, len). */
static inline void *hes_hashdir_find(const hes_hashdir_t *d, uint32_t hash, hes_hashdir_eq_fn eq,
                                     const char *key, size_t len) {
  uint32_t ref;

  if (d->index.len == 0)
    return NULL;
  ref = d->index.slots[hes_hashdir__slot(d, hash, eq, key, len)];
  return ref != HES_HASHTAB_NONE ? d->items[ref] : NULL;
}

/* Adds item (whose key the caller knows is absent) under hash. 0, or ENOMEM / EOVERFLOW
 * with nothing added. */
int hes_hashdir_add(hes_hashdir_t *d, void *item, uint32_t hash);

/* Removes item, added under hash; false if it is not there. */
bool hes_hashdir_remove(hes_hashdir_t *d, const void *item, uint32_t hash);

/* Bytes held by the directory and its index. */
size_t hes_hashdir_memory(const hes_hashdir_t *d);
/* Frees the directory, not the objects. */
void hes_hashdir_free(hes_hashdir_t *d);

#endif
