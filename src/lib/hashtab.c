/* hashtab: see hashtab.h. */
#include "config.h"

#include "hashtab.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS_MIN 16

/* Builds an index of `len` slots holding the current references; the old one stays if the
 * allocation fails. */
static int hashtab__rebuild(hes_hashtab_t *t, uint32_t len, hes_hashtab_hash_fn hash_of,
                            const void *ctx) {
  uint32_t *slots = malloc((size_t)len * sizeof(*slots));
  uint32_t mask = len - 1;

  if (slots == NULL)
    return ENOMEM;
  memset(slots, 0xff, (size_t)len * sizeof(*slots)); /* all HES_HASHTAB_NONE */
  for (uint32_t k = 0; k < t->len; k++) {
    uint32_t ref = t->slots[k];
    uint32_t i;
    if (ref == HES_HASHTAB_NONE)
      continue;
    i = hash_of(ctx, ref) & mask;
    while (slots[i] != HES_HASHTAB_NONE)
      i = (i + 1) & mask;
    slots[i] = ref;
  }
  free(t->slots);
  t->slots = slots;
  t->len = len;
  return 0;
}

/* The smallest power of two >= SLOTS_MIN that holds n references at load 1/2. */
static uint32_t hashtab__len_for(uint32_t n) {
  uint32_t len = SLOTS_MIN;

  while ((uint64_t)n * 2 > len)
    len *= 2;
  return len;
}

int hes_hashtab_reserve(hes_hashtab_t *t, uint32_t extra, hes_hashtab_hash_fn hash_of,
                        const void *ctx) {
  uint64_t want = (uint64_t)t->count + extra;

  if (want > HES_HASHTAB_MAX)
    return EOVERFLOW;
  if (t->len != 0 && want * 2 <= t->len)
    return 0;
  return hashtab__rebuild(t, hashtab__len_for((uint32_t)want), hash_of, ctx);
}

void hes_hashtab_put(hes_hashtab_t *t, uint32_t slot, uint32_t ref) {
  t->slots[slot] = ref;
  t->count++;
}

void hes_hashtab_remove(hes_hashtab_t *t, uint32_t slot, hes_hashtab_hash_fn hash_of,
                        const void *ctx) {
  uint32_t mask = t->len - 1;
  uint32_t hole = slot;
  uint32_t i = slot;

  /* Knuth's algorithm R: an entry after the hole moves into it unless its home lies
   * cyclically in (hole, i], where it is still reachable without passing the hole. */
  for (;;) {
    uint32_t ref;
    uint32_t home;
    i = (i + 1) & mask;
    ref = t->slots[i];
    if (ref == HES_HASHTAB_NONE)
      break;
    home = hash_of(ctx, ref) & mask;
    if (((i - home) & mask) >= ((i - hole) & mask)) {
      t->slots[hole] = ref;
      hole = i;
    }
  }
  t->slots[hole] = HES_HASHTAB_NONE;
  t->count--;
}

int hes_hashtab_shrink(hes_hashtab_t *t, hes_hashtab_hash_fn hash_of, const void *ctx) {
  uint32_t len = hashtab__len_for(t->count);

  if (t->len == 0 || len >= t->len)
    return 0;
  return hashtab__rebuild(t, len, hash_of, ctx);
}

size_t hes_hashtab_memory(const hes_hashtab_t *t) {
  return (size_t)t->len * sizeof(*t->slots);
}

void hes_hashtab_free(hes_hashtab_t *t) {
  free(t->slots);
  t->slots = NULL;
  t->len = 0;
  t->count = 0;
}

/* ---- the directory ------------------------------------------------------------------- */

static uint32_t hashdir__hash_of(const void *ctx, uint32_t ref) {
  return ((const hes_hashdir_t *)ctx)->hashes[ref];
}

int hes_hashdir_add(hes_hashdir_t *d, void *item, uint32_t hash) {
  uint32_t mask;
  uint32_t i;
  int rc;

  if (d->count == d->cap) {
    uint32_t cap = d->cap != 0 ? d->cap * 2 : 8;
    void **items;
    uint32_t *hashes;
    if (d->cap >= HES_HASHTAB_MAX)
      return EOVERFLOW;
    items = realloc(d->items, (size_t)cap * sizeof(*items));
    if (items == NULL)
      return ENOMEM;
    d->items = items;
    hashes = realloc(d->hashes, (size_t)cap * sizeof(*hashes));
    if (hashes == NULL)
      return ENOMEM; /* the larger items array is kept: harmless */
    d->hashes = hashes;
    d->cap = cap;
  }
  rc = hes_hashtab_reserve(&d->index, 1, hashdir__hash_of, d);
  if (rc != 0)
    return rc;
  d->items[d->count] = item;
  d->hashes[d->count] = hash;
  mask = d->index.len - 1;
  i = hash & mask;
  while (d->index.slots[i] != HES_HASHTAB_NONE)
    i = (i + 1) & mask;
  hes_hashtab_put(&d->index, i, d->count);
  d->count++;
  return 0;
}

/* The slot holding ref, whose hash is hash. */
static uint32_t hashdir__slot_of(const hes_hashdir_t *d, uint32_t ref, uint32_t hash) {
  uint32_t mask = d->index.len - 1;
  uint32_t i = hash & mask;

  while (d->index.slots[i] != ref && d->index.slots[i] != HES_HASHTAB_NONE)
    i = (i + 1) & mask;
  return i;
}

bool hes_hashdir_remove(hes_hashdir_t *d, const void *item, uint32_t hash) {
  uint32_t mask;
  uint32_t i;
  uint32_t ref;
  uint32_t last;

  if (d->index.len == 0)
    return false;
  mask = d->index.len - 1;
  i = hash & mask;
  for (;;) {
    ref = d->index.slots[i];
    if (ref == HES_HASHTAB_NONE)
      return false;
    if (d->items[ref] == item)
      break;
    i = (i + 1) & mask;
  }
  hes_hashtab_remove(&d->index, i, hashdir__hash_of, d);
  last = d->count - 1;
  if (ref != last) {
    /* The last object fills the hole, so the array stays dense. */
    uint32_t s = hashdir__slot_of(d, last, d->hashes[last]);
    d->items[ref] = d->items[last];
    d->hashes[ref] = d->hashes[last];
    d->index.slots[s] = ref;
  }
  d->count--;
  return true;
}

size_t hes_hashdir_memory(const hes_hashdir_t *d) {
  return hes_hashtab_memory(&d->index) + (size_t)d->cap * (sizeof(*d->items) + sizeof(*d->hashes));
}

void hes_hashdir_free(hes_hashdir_t *d) {
  hes_hashtab_free(&d->index);
  free(d->items);
  free(d->hashes);
  d->items = NULL;
  d->hashes = NULL;
  d->count = 0;
  d->cap = 0;
}
