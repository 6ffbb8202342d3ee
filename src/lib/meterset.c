/* meterset: versions of a meter list with stable indices, pinned by readers.
 *
 * A version is a sealed hes_meters_t (the numbers, its hash index, dense positions in list
 * order) plus two uint32_t arrays: map (dense position -> stable index) and rev (stable index
 * -> dense position, or a hole). For 12-digit numbers that is about 27.5 bytes of meters.c
 * plus 8: some 36 bytes a meter, and twice that only while a swap is under way.
 *
 * Why a pin count under a mutex rather than an epoch scheme or a bare generation number:
 * - A generation number (or a seqlock) tells a reader that the list changed, but cannot keep
 *   the memory it is reading from being freed under it; something must count readers.
 * - Epoch-based reclamation (RCU) needs every reader thread registered and passing through
 *   quiescent states. Most readers here run on collectd's thread pools (read and write
 *   threads), which the plugin neither creates nor can hook, and a lost registration would be
 *   a use-after-free. A per-version count needs no registration.
 * - Taking the count with a bare atomic increment races with the writer freeing the version
 *   between the reader's load of the pointer and its increment. A mutex held for the load
 *   and the increment (a few ns uncontended) closes that window simply; readers pin once per
 *   unit of work (one push message of up to 1000 readings), so the lock costs well under a
 *   nanosecond a reading, and the lookups themselves take no lock.
 * The count also tells the writer when a leaver's index can be handed to a joiner: not while
 * any version in which the leaver held it is still pinned, so per-index state is never shared
 * by two meters at once. */
#include "config.h"

#include "meterset.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define IDX_HOLE UINT32_MAX

struct hes_meterver {
  hes_meters_t *m;
  uint32_t *map; /* dense position -> stable index */
  uint32_t *rev; /* stable index -> dense position, IDX_HOLE for a hole; cap entries */
  uint32_t cap;
  uint64_t gen;
  unsigned refs;                 /* under the set's lock; the set's own reference is one */
  struct hes_meterver *next_old; /* on the retired list */
};

struct hes_meterset {
  pthread_mutex_t lock; /* guards cur, retired and every version's refs */
  hes_meterver_t *cur;
  hes_meterver_t *retired; /* replaced versions that readers still pin */
  hes_meterver_t *pending; /* prepared, not yet committed; writer-only */
};

static void meterset__ver_free(hes_meterver_t *v) {
  if (v == NULL)
    return;
  hes_meters_free(v->m);
  free(v->map);
  free(v->rev);
  free(v);
}

static size_t meterset__ver_memory(const hes_meterver_t *v) {
  return sizeof(*v) + hes_meters_memory(v->m) + hes_meters_count(v->m) * sizeof(*v->map) +
         (size_t)v->cap * sizeof(*v->rev);
}

hes_meterset_t *hes_meterset_new(void) {
  hes_meterset_t *s = calloc(1, sizeof(*s));
  hes_meterver_t *v = calloc(1, sizeof(*v));

  if (s == NULL || v == NULL)
    goto fail;
  v->m = hes_meters_new();
  if (v->m == NULL || hes_meters_seal(v->m) != HES_METERS_OK)
    goto fail;
  if (pthread_mutex_init(&s->lock, NULL) != 0)
    goto fail;
  v->refs = 1;
  s->cur = v;
  return s;

fail:
  meterset__ver_free(v);
  free(s);
  return NULL;
}

void hes_meterset_free(hes_meterset_t *s) {
  if (s == NULL)
    return;
  meterset__ver_free(s->cur);
  meterset__ver_free(s->pending);
  while (s->retired != NULL) {
    hes_meterver_t *v = s->retired;
    s->retired = v->next_old;
    meterset__ver_free(v);
  }
  pthread_mutex_destroy(&s->lock);
  free(s);
}

/* ---- readers ------------------------------------------------------------------------- */

const hes_meterver_t *hes_meterset_pin(hes_meterset_t *s) {
  hes_meterver_t *v;

  if (s == NULL)
    return NULL;
  pthread_mutex_lock(&s->lock);
  v = s->cur;
  v->refs++;
  pthread_mutex_unlock(&s->lock);
  return v;
}

/* Drops one reference. A replaced version whose last reference goes is unlinked under the
 * lock and freed after it. */
void hes_meterset_unpin(hes_meterset_t *s, const hes_meterver_t *cv) {
  hes_meterver_t *v = (hes_meterver_t *)cv;
  hes_meterver_t *dead = NULL;

  if (s == NULL || v == NULL)
    return;
  pthread_mutex_lock(&s->lock);
  if (--v->refs == 0 && v != s->cur) {
    for (hes_meterver_t **pp = &s->retired; *pp != NULL; pp = &(*pp)->next_old) {
      if (*pp == v) {
        *pp = v->next_old;
        dead = v;
        break;
      }
    }
  }
  pthread_mutex_unlock(&s->lock);
  meterset__ver_free(dead);
}

uint32_t hes_meterver_find(const hes_meterver_t *v, const char *s, size_t len) {
  uint32_t d;

  if (v == NULL)
    return HES_METER_NONE;
  d = hes_meters_find(v->m, s, len);
  return d == HES_METER_NONE ? HES_METER_NONE : v->map[d];
}

const char *hes_meterver_name(const hes_meterver_t *v, uint32_t idx) {
  if (v == NULL || idx >= v->cap || v->rev[idx] == IDX_HOLE)
    return NULL;
  return hes_meters_at(v->m, v->rev[idx]);
}

size_t hes_meterver_count(const hes_meterver_t *v) {
  return v != NULL ? hes_meters_count(v->m) : 0;
}

uint32_t hes_meterver_capacity(const hes_meterver_t *v) {
  return v != NULL ? v->cap : 0;
}

const char *hes_meterver_at(const hes_meterver_t *v, size_t i, uint32_t *idx) {
  if (v == NULL || i >= hes_meters_count(v->m))
    return NULL;
  if (idx != NULL)
    *idx = v->map[i];
  return hes_meters_at(v->m, (uint32_t)i);
}

uint64_t hes_meterver_generation(const hes_meterver_t *v) {
  return v != NULL ? v->gen : 0;
}

/* ---- the writer ------------------------------------------------------------------------ */

/* The indices a joiner may take, ascending, into *out (caller frees), and in *span the first
 * index above every index any live version uses. An index is free when neither the current
 * version nor a replaced one still pinned gives it to a meter. The replaced versions are
 * pinned for the walk, so the lock is held only to take and drop them. */
static hes_meterset_result_t meterset__free_indices(hes_meterset_t *s, uint32_t **out, size_t *n,
                                                    uint32_t *span) {
  hes_meterver_t **old = NULL;
  size_t n_old = 0;
  uint32_t top = s->cur->cap;
  uint32_t *idx = NULL;
  size_t k = 0;

  pthread_mutex_lock(&s->lock);
  for (hes_meterver_t *v = s->retired; v != NULL; v = v->next_old)
    n_old++;
  if (n_old > 0) {
    old = malloc(n_old * sizeof(*old));
    if (old == NULL) {
      pthread_mutex_unlock(&s->lock);
      return HES_METERSET_ENOMEM;
    }
    n_old = 0;
    for (hes_meterver_t *v = s->retired; v != NULL; v = v->next_old) {
      v->refs++;
      old[n_old++] = v;
    }
  }
  pthread_mutex_unlock(&s->lock);

  for (size_t j = 0; j < n_old; j++)
    top = old[j]->cap > top ? old[j]->cap : top;
  if (top > 0)
    idx = malloc((size_t)top * sizeof(*idx));
  if (top > 0 && idx == NULL) {
    for (size_t j = 0; j < n_old; j++)
      hes_meterset_unpin(s, old[j]);
    free(old);
    return HES_METERSET_ENOMEM;
  }
  for (uint32_t i = 0; i < top; i++) {
    bool used = i < s->cur->cap && s->cur->rev[i] != IDX_HOLE;
    for (size_t j = 0; j < n_old && !used; j++)
      used = i < old[j]->cap && old[j]->rev[i] != IDX_HOLE;
    if (!used)
      idx[k++] = i;
  }
  for (size_t j = 0; j < n_old; j++)
    hes_meterset_unpin(s, old[j]);
  free(old);
  *out = idx;
  *n = k;
  *span = top;
  return HES_METERSET_OK;
}

static void meterset__update_clear(hes_meterset_update_t *up) {
  free(up->joined);
  free(up->left);
  memset(up, 0, sizeof(*up));
}

/* Gives every member of v->m its index: the one it had in cur, else a free one (lowest
 * first), else a new one above `span`. Fills v->map, v->rev, v->cap and up->joined. */
static hes_meterset_result_t meterset__assign(hes_meterset_t *s, hes_meterver_t *v,
                                              hes_meterset_update_t *up) {
  const hes_meterver_t *cur = s->cur;
  size_t n = hes_meters_count(v->m);
  uint32_t *freeidx = NULL;
  size_t n_free = 0, used_free = 0;
  uint32_t span = 0, cap = 0;
  hes_meterset_result_t res;

  res = meterset__free_indices(s, &freeidx, &n_free, &span);
  if (res != HES_METERSET_OK)
    return res;
  v->map = malloc((n > 0 ? n : 1) * sizeof(*v->map));
  up->joined = malloc((n > 0 ? n : 1) * sizeof(*up->joined));
  if (v->map == NULL || up->joined == NULL) {
    free(freeidx);
    return HES_METERSET_ENOMEM;
  }
  for (size_t d = 0; d < n; d++) {
    const char *name = hes_meters_at(v->m, (uint32_t)d);
    uint32_t idx = hes_meterver_find(cur, name, strlen(name));
    if (idx == HES_METER_NONE) {
      idx = used_free < n_free ? freeidx[used_free++] : span++;
      up->joined[up->n_joined++] = idx;
    }
    v->map[d] = idx;
    cap = idx + 1 > cap ? idx + 1 : cap;
  }
  free(freeidx);

  v->cap = cap;
  v->rev = malloc((cap > 0 ? cap : 1) * sizeof(*v->rev));
  if (v->rev == NULL)
    return HES_METERSET_ENOMEM;
  memset(v->rev, 0xff, (size_t)cap * sizeof(*v->rev)); /* all IDX_HOLE */
  for (size_t d = 0; d < n; d++)
    v->rev[v->map[d]] = (uint32_t)d;
  return HES_METERSET_OK;
}

/* The meters of cur that v no longer lists, into up->left. */
static hes_meterset_result_t meterset__leavers(const hes_meterver_t *cur, const hes_meterver_t *v,
                                               hes_meterset_update_t *up) {
  size_t n = hes_meters_count(cur->m);

  up->left = malloc((n > 0 ? n : 1) * sizeof(*up->left));
  if (up->left == NULL)
    return HES_METERSET_ENOMEM;
  for (size_t d = 0; d < n; d++) {
    const char *name = hes_meters_at(cur->m, (uint32_t)d);
    if (hes_meters_find(v->m, name, strlen(name)) == HES_METER_NONE)
      up->left[up->n_left++] = cur->map[d];
  }
  return HES_METERSET_OK;
}

hes_meterset_result_t hes_meterset_prepare(hes_meterset_t *s, hes_meters_t *members,
                                           hes_meterset_update_t *up) {
  hes_meterver_t *v;
  hes_meterset_result_t res;

  if (up != NULL)
    memset(up, 0, sizeof(*up));
  if (s == NULL || members == NULL || up == NULL || s->pending != NULL) {
    hes_meters_free(members);
    return HES_METERSET_EINVAL;
  }
  v = calloc(1, sizeof(*v));
  if (v == NULL) {
    hes_meters_free(members);
    return HES_METERSET_ENOMEM;
  }
  v->m = members;
  if (hes_meters_seal(members) != HES_METERS_OK) {
    meterset__ver_free(v);
    return HES_METERSET_EINVAL;
  }
  res = meterset__assign(s, v, up);
  if (res == HES_METERSET_OK)
    res = meterset__leavers(s->cur, v, up);
  if (res != HES_METERSET_OK) {
    meterset__update_clear(up);
    meterset__ver_free(v);
    return res;
  }
  v->gen = s->cur->gen + 1;
  v->refs = 1;
  s->pending = v;
  /* The update's own reference keeps prev (and its leavers' names) alive past the commit. */
  up->prev = hes_meterset_pin(s);
  up->next = v;
  return HES_METERSET_OK;
}

void hes_meterset_commit(hes_meterset_t *s, hes_meterset_update_t *up) {
  hes_meterver_t *old;

  if (s == NULL || up == NULL || up->next == NULL || up->next != s->pending)
    return;
  pthread_mutex_lock(&s->lock);
  old = s->cur;
  s->cur = s->pending;
  s->pending = NULL;
  /* The set's reference moves to the new version; up->prev holds one more, so old is
   * still referenced and goes on the retired list until its readers are done. */
  old->refs--;
  old->next_old = s->retired;
  s->retired = old;
  pthread_mutex_unlock(&s->lock);
}

void hes_meterset_abort(hes_meterset_t *s, hes_meterset_update_t *up) {
  if (s == NULL || up == NULL || up->next == NULL || up->next != s->pending)
    return;
  meterset__ver_free(s->pending);
  s->pending = NULL;
  hes_meterset_unpin(s, up->prev);
  meterset__update_clear(up);
}

void hes_meterset_update_done(hes_meterset_t *s, hes_meterset_update_t *up) {
  if (s == NULL || up == NULL || up->prev == NULL)
    return;
  hes_meterset_unpin(s, up->prev);
  meterset__update_clear(up);
}

size_t hes_meterset_memory(hes_meterset_t *s, size_t *retired_bytes) {
  size_t cur, old = 0;

  if (s == NULL)
    return 0;
  pthread_mutex_lock(&s->lock);
  cur = meterset__ver_memory(s->cur);
  for (const hes_meterver_t *v = s->retired; v != NULL; v = v->next_old)
    old += meterset__ver_memory(v);
  pthread_mutex_unlock(&s->lock);
  if (retired_bytes != NULL)
    *retired_bytes = old;
  return sizeof(*s) + cur;
}

hes_meters_t *hes_meterver_list(const hes_meterver_t *v) {
  hes_meters_t *m = hes_meters_new();
  if (m == NULL)
    return NULL;
  size_t n = hes_meterver_count(v);
  for (size_t i = 0; i < n; i++) {
    if (hes_meters_add(m, hes_meterver_at(v, i, NULL)) != HES_METERS_OK) {
      hes_meters_free(m);
      return NULL;
    }
  }
  if (hes_meters_seal(m) != HES_METERS_OK) {
    hes_meters_free(m);
    return NULL;
  }
  return m;
}
