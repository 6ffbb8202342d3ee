/* plans: the table shared by the threads that send requests (which add plans; the read
 * thread also expires them) and the MQTT thread (which classifies pushes and answers
 * meters). Everything sits behind one mutex; every operation is O(1) or O(log n) in the
 * number of open plans, so the MQTT thread never waits behind a scan, and no callback runs
 * under it.
 *
 * Three hash tables keyed by planId (open plans, tombstones, parked pushes), each a
 * directory of the library's one hash index (hashtab.h). Open plans also sit in a binary min-heap
 * by deadline, so expiry touches only what expires. Tombstones are kept in creation order, which is
 * also time order (their time is the largest `now` seen), so forgetting them pops from the front.
 */
#include "config.h"

#include "plans.h"
#include "hashtab.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* planIds are 1..PLAN_ID_MAX-1 bytes: the HES issues short ids, and a bound keeps a hostile
 * push from making us hash megabytes. */
#define PLAN_ID_MAX 64

/* The head of every object in a table: its key and the key's hash. */
typedef struct hnode {
  uint32_t hash;
  const char *key;
} hnode_t;

typedef hes_hashdir_t htable_t;

typedef struct plan {
  hnode_t h;
  size_t heap_idx;
  double deadline;
  double sent; /* hes_plans_add_sent's; NaN from hes_plans_add */
  void *user;
  uint32_t tag;
  uint32_t n;        /* distinct meters */
  uint32_t answered; /* bits set in `bits` */
  uint64_t *bits;    /* one bit per entry of meters[], after meters[] in this allocation */
  size_t alloc_size;
  struct plan *closed_next; /* closed, to be reported after the lock (report_closed) */
  char id[PLAN_ID_MAX];
  uint32_t meters[]; /* sorted, distinct */
} plan_t;

typedef struct tomb {
  hnode_t h;
  struct tomb *newer;
  double at;
  hes_plan_lookup_t kind; /* HES_PLAN_DUPLICATE (finished) or HES_PLAN_LATE (expired) */
  size_t alloc_size;
  char id[];
} tomb_t;

/* The pushes parked for one unknown planId, oldest first. */
typedef struct pgroup {
  hnode_t h;
  struct pgroup *prev, *next; /* every group, for the park window sweep */
  hes_parked_t *head, *tail;
  size_t alloc_size;
  char id[];
} pgroup_t;

struct hes_plans {
  pthread_mutex_t lock;
  hes_plans_config_t cfg;
  htable_t plans, tombs, groups;
  plan_t **heap;
  size_t heap_len, heap_cap;
  tomb_t *tomb_oldest, *tomb_newest;
  pgroup_t *group_first, *group_last;
  size_t in_flight;
  /* The largest `now` seen: answer and finish take no time, yet their tombstones need one. */
  double clock;
  hes_plans_stats_t st; /* st.memory counts every allocation made here */
};

/* --- memory accounting ------------------------------------------------------------------ */

static void *plans__alloc(hes_plans_t *p, size_t size) {
  void *ptr = malloc(size);
  if (ptr != NULL)
    p->st.memory += size;
  return ptr;
}

static void plans__release(hes_plans_t *p, void *ptr, size_t size) {
  if (ptr == NULL)
    return;
  p->st.memory -= size;
  free(ptr);
}

/* --- the hash table --------------------------------------------------------------------- */

static uint32_t plans__hash(const char *s, size_t len) {
  return hes_hashtab_hash(s, len);
}

static bool table_eq(const void *item, const char *key, size_t len) {
  (void)len;
  return strcmp(((const hnode_t *)item)->key, key) == 0;
}

static hnode_t *table_find(const htable_t *t, const char *key, uint32_t hash) {
  return hes_hashdir_find(t, hash, table_eq, key, 0);
}

/* 0, or ENOMEM with n not in the table. */
static int table_insert(hes_plans_t *p, htable_t *t, hnode_t *n) {
  size_t before = hes_hashdir_memory(t);
  int rc = hes_hashdir_add(t, n, n->hash);

  p->st.memory += hes_hashdir_memory(t) - before;
  return rc != 0 ? ENOMEM : 0;
}

static void table_remove(htable_t *t, hnode_t *n) {
  hes_hashdir_remove(t, n, n->hash);
}

static void table_free(hes_plans_t *p, htable_t *t) {
  p->st.memory -= hes_hashdir_memory(t);
  hes_hashdir_free(t);
}

/* --- the deadline heap ------------------------------------------------------------------ */

static void heap_set(hes_plans_t *p, size_t i, plan_t *pl) {
  p->heap[i] = pl;
  pl->heap_idx = i;
}

static void heap_up(hes_plans_t *p, size_t i) {
  plan_t *pl = p->heap[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!(pl->deadline < p->heap[parent]->deadline))
      break;
    heap_set(p, i, p->heap[parent]);
    i = parent;
  }
  heap_set(p, i, pl);
}

static void heap_down(hes_plans_t *p, size_t i) {
  plan_t *pl = p->heap[i];
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= p->heap_len)
      break;
    if (c + 1 < p->heap_len && p->heap[c + 1]->deadline < p->heap[c]->deadline)
      c++;
    if (!(p->heap[c]->deadline < pl->deadline))
      break;
    heap_set(p, i, p->heap[c]);
    i = c;
  }
  heap_set(p, i, pl);
}

static int heap_reserve(hes_plans_t *p) {
  if (p->heap_len < p->heap_cap)
    return 0;
  size_t cap = p->heap_cap ? p->heap_cap * 2 : 64;
  if (cap > SIZE_MAX / sizeof(*p->heap))
    return ENOMEM;
  plan_t **nh = realloc(p->heap, cap * sizeof(*nh));
  if (nh == NULL)
    return ENOMEM;
  p->st.memory += (cap - p->heap_cap) * sizeof(*nh);
  p->heap = nh;
  p->heap_cap = cap;
  return 0;
}

static void heap_remove(hes_plans_t *p, plan_t *pl) {
  size_t i = pl->heap_idx;
  p->heap_len--;
  if (i == p->heap_len)
    return;
  plan_t *moved = p->heap[p->heap_len];
  heap_set(p, i, moved);
  heap_up(p, i);
  heap_down(p, moved->heap_idx);
}

/* --- tombstones ------------------------------------------------------------------------- */

static void tomb_forget_oldest(hes_plans_t *p) {
  tomb_t *t = p->tomb_oldest;
  if (t == NULL)
    return;
  p->tomb_oldest = t->newer;
  if (p->tomb_oldest == NULL)
    p->tomb_newest = NULL;
  table_remove(&p->tombs, &t->h);
  plans__release(p, t, t->alloc_size);
}

/* A tombstone that cannot be allocated is not remembered: a later redelivery is then
 * treated as unknown, which costs a wrong counter, not a wrong reading. */
static void tomb_add(hes_plans_t *p, const char *id, uint32_t hash, hes_plan_lookup_t kind) {
  while (p->tombs.count > 0 && p->tombs.count >= p->cfg.tombstone_max)
    tomb_forget_oldest(p);
  size_t len = strlen(id);
  size_t size = sizeof(tomb_t) + len + 1;
  tomb_t *t = plans__alloc(p, size);
  if (t == NULL)
    return;
  memcpy(t->id, id, len + 1);
  t->h.key = t->id;
  t->h.hash = hash;
  t->alloc_size = size;
  t->at = p->clock;
  t->kind = kind;
  t->newer = NULL;
  if (table_insert(p, &p->tombs, &t->h) != 0) {
    plans__release(p, t, size);
    return;
  }
  if (p->tomb_newest != NULL)
    p->tomb_newest->newer = t;
  else
    p->tomb_oldest = t;
  p->tomb_newest = t;
}

/* --- parked pushes ---------------------------------------------------------------------- */

static void group_unlink(hes_plans_t *p, pgroup_t *g) {
  if (g->prev != NULL)
    g->prev->next = g->next;
  else
    p->group_first = g->next;
  if (g->next != NULL)
    g->next->prev = g->prev;
  else
    p->group_last = g->prev;
  table_remove(&p->groups, &g->h);
}

static size_t parked_size(const hes_parked_t *pk) {
  return sizeof(*pk) + pk->len + 1;
}

/* Takes pk out of the accounting; the caller frees it or hands it on. */
static void parked_detach(hes_plans_t *p, hes_parked_t *pk) {
  p->st.parked--;
  p->st.parked_bytes -= pk->len;
  p->st.memory -= parked_size(pk);
}

/* Frees a group's pushes, each counted as foreign. */
static void group_drop(hes_plans_t *p, pgroup_t *g) {
  hes_parked_t *pk = g->head;
  while (pk != NULL) {
    hes_parked_t *next = pk->next;
    parked_detach(p, pk);
    p->st.foreign++;
    free(pk);
    pk = next;
  }
  group_unlink(p, g);
  plans__release(p, g, g->alloc_size);
}

static hes_plan_lookup_t park(hes_plans_t *p, const char *id, size_t id_len, uint32_t hash,
                              const void *payload, size_t len, double now) {
  if (payload == NULL)
    len = 0;
  if (p->st.parked >= p->cfg.park_max_count || len > p->cfg.park_max_bytes - p->st.parked_bytes ||
      len > SIZE_MAX - sizeof(hes_parked_t) - 1)
    return HES_PLAN_DROPPED;

  pgroup_t *g = (pgroup_t *)table_find(&p->groups, id, hash);
  bool new_group = false;
  if (g == NULL) {
    size_t gsize = sizeof(*g) + id_len + 1;
    g = plans__alloc(p, gsize);
    if (g == NULL)
      return HES_PLAN_DROPPED;
    memset(g, 0, sizeof(*g));
    memcpy(g->id, id, id_len + 1);
    g->h.key = g->id;
    g->h.hash = hash;
    g->alloc_size = gsize;
    if (table_insert(p, &p->groups, &g->h) != 0) {
      plans__release(p, g, gsize);
      return HES_PLAN_DROPPED;
    }
    new_group = true;
  }

  hes_parked_t *pk = malloc(sizeof(*pk) + len + 1);
  if (pk == NULL) {
    if (new_group) {
      table_remove(&p->groups, &g->h);
      plans__release(p, g, g->alloc_size);
    }
    return HES_PLAN_DROPPED;
  }
  pk->next = NULL;
  pk->received = now;
  pk->len = len;
  if (len > 0)
    memcpy(pk->payload, payload, len);
  pk->payload[len] = '\0';
  p->st.parked++;
  p->st.parked_bytes += len;
  p->st.memory += parked_size(pk);

  if (new_group) {
    g->prev = p->group_last;
    if (p->group_last != NULL)
      p->group_last->next = g;
    else
      p->group_first = g;
    p->group_last = g;
  }
  if (g->tail != NULL)
    g->tail->next = pk;
  else
    g->head = pk;
  g->tail = pk;
  return HES_PLAN_PARKED;
}

static void parked_sweep(hes_plans_t *p, double now) {
  pgroup_t *g = p->group_first;
  while (g != NULL) {
    pgroup_t *next = g->next;
    while (g->head != NULL && g->head->received + p->cfg.park_window <= now) {
      hes_parked_t *pk = g->head;
      g->head = pk->next;
      parked_detach(p, pk);
      p->st.foreign++;
      free(pk);
    }
    if (g->head == NULL) {
      g->tail = NULL;
      group_unlink(p, g);
      plans__release(p, g, g->alloc_size);
    }
    g = next;
  }
}

/* --- plans ------------------------------------------------------------------------------ */

static size_t valid_id_len(const char *id) {
  if (id == NULL)
    return 0;
  size_t len = strnlen(id, PLAN_ID_MAX);
  return len < PLAN_ID_MAX ? len : 0;
}

static bool plan_bit(const plan_t *pl, size_t i) {
  return (pl->bits[i / 64] >> (i % 64)) & 1u;
}

static long plan_index(const plan_t *pl, uint32_t meter) {
  size_t lo = 0, hi = pl->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (pl->meters[mid] < meter)
      lo = mid + 1;
    else
      hi = mid;
  }
  return (lo < pl->n && pl->meters[lo] == meter) ? (long)lo : -1;
}

/* Ends an open plan: leaves a tombstone of `kind`. A plan with meters that never answered
 * goes onto *closed (detached, no longer counted in st.memory) when closed is not NULL, to be
 * reported by report_closed once the lock is released; otherwise it is freed. */
static void plan_close(hes_plans_t *p, plan_t *pl, hes_plan_lookup_t kind, plan_t **closed) {
  size_t unanswered = pl->n - pl->answered;
  p->st.missing += unanswered;
  p->st.meters_pending -= unanswered;
  p->st.plans_pending--;
  heap_remove(p, pl);
  table_remove(&p->plans, &pl->h);
  tomb_add(p, pl->id, pl->h.hash, kind);
  if (closed != NULL && unanswered > 0) {
    p->st.memory -= pl->alloc_size;
    pl->closed_next = *closed;
    *closed = pl;
    return;
  }
  plans__release(p, pl, pl->alloc_size);
}

/* Reports the meters that never answered of the plans plan_close set aside, and frees them.
 * Called without the lock: the callback may log, notify, or call hes_plans_* again. The
 * plans are detached, so their meters[] can hold the unanswered meters in place. */
static void report_closed(plan_t *closed, hes_plans_missing_cb cb, void *ctx) {
  plan_t *in_order = NULL; /* plan_close pushed them newest first */
  while (closed != NULL) {
    plan_t *pl = closed;
    closed = pl->closed_next;
    pl->closed_next = in_order;
    in_order = pl;
  }
  closed = in_order;
  while (closed != NULL) {
    plan_t *pl = closed;
    closed = pl->closed_next;
    size_t j = 0;
    for (size_t i = 0; i < pl->n; i++)
      if (!plan_bit(pl, i))
        pl->meters[j++] = pl->meters[i];
    if (cb != NULL && j > 0)
      cb(ctx, pl->id, pl->tag, pl->user, pl->meters, j);
    free(pl);
  }
}

static void plans_clock(hes_plans_t *p, double now) {
  if (!(now > p->clock))
    return;
  /* Tombstones made before any time was known take the first time seen, so that they live
   * their full ttl and the list stays in time order. */
  if (p->clock == -INFINITY) {
    for (tomb_t *t = p->tomb_oldest; t != NULL; t = t->newer)
      t->at = now;
  }
  p->clock = now;
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return (x > y) - (x < y);
}

/* --- the API ---------------------------------------------------------------------------- */

hes_plans_t *hes_plans_new(const hes_plans_config_t *cfg) {
  hes_plans_t *p = calloc(1, sizeof(*p));
  if (p == NULL)
    return NULL;
  p->st.memory = sizeof(*p);
  if (cfg != NULL)
    p->cfg = *cfg;
  if (p->cfg.park_max_count == 0)
    p->cfg.park_max_count = 1024;
  if (p->cfg.park_max_bytes == 0)
    p->cfg.park_max_bytes = 64 * 1024 * 1024;
  if (!(p->cfg.park_window > 0))
    p->cfg.park_window = 30;
  if (!(p->cfg.tombstone_ttl > 0))
    p->cfg.tombstone_ttl = 3600;
  if (p->cfg.tombstone_max == 0)
    p->cfg.tombstone_max = 65536;
  p->clock = -INFINITY;

  if (pthread_mutex_init(&p->lock, NULL) != 0) {
    free(p);
    return NULL;
  }
  return p;
}

void hes_plans_free(hes_plans_t *p) {
  if (p == NULL)
    return;
  for (size_t i = 0; i < p->heap_len; i++)
    free(p->heap[i]);
  free(p->heap);
  while (p->tomb_oldest != NULL) {
    tomb_t *t = p->tomb_oldest;
    p->tomb_oldest = t->newer;
    free(t);
  }
  while (p->group_first != NULL) {
    pgroup_t *g = p->group_first;
    p->group_first = g->next;
    hes_parked_free(g->head);
    free(g);
  }
  table_free(p, &p->plans);
  table_free(p, &p->tombs);
  table_free(p, &p->groups);
  pthread_mutex_destroy(&p->lock);
  free(p);
}

void hes_plans_request_begin(hes_plans_t *p) {
  if (p == NULL)
    return;
  pthread_mutex_lock(&p->lock);
  p->in_flight++;
  pthread_mutex_unlock(&p->lock);
}

void hes_plans_request_end(hes_plans_t *p) {
  if (p == NULL)
    return;
  pthread_mutex_lock(&p->lock);
  if (p->in_flight > 0) {
    p->in_flight--;
    /* Nothing of ours is in flight any more: whatever is still parked belongs to no plan
     * we can ever learn of. */
    if (p->in_flight == 0) {
      while (p->group_first != NULL)
        group_drop(p, p->group_first);
    }
  }
  pthread_mutex_unlock(&p->lock);
}

int hes_plans_add(hes_plans_t *p, const char *plan_id, uint32_t tag, void *user,
                  const uint32_t *meters, size_t n, double deadline, hes_parked_t **parked) {
  return hes_plans_add_sent(p, plan_id, tag, user, meters, n, NAN, deadline, parked);
}

int hes_plans_add_sent(hes_plans_t *p, const char *plan_id, uint32_t tag, void *user,
                       const uint32_t *meters, size_t n, double sent, double deadline,
                       hes_parked_t **parked) {
  if (parked != NULL)
    *parked = NULL;
  size_t id_len = valid_id_len(plan_id);
  if (p == NULL || id_len == 0 || meters == NULL || n == 0 || n > UINT32_MAX || isnan(deadline))
    return EINVAL;
  /* 4 bytes and a bit a meter: only a 32-bit size_t can overflow here. */
  if (n > (SIZE_MAX - sizeof(plan_t) - 16) / 5)
    return ENOMEM;
  size_t words = (n + 63) / 64;
  size_t meters_bytes = (n * sizeof(uint32_t) + 7) & ~(size_t)7;
  size_t size = sizeof(plan_t) + meters_bytes + words * sizeof(uint64_t);
  uint32_t hash = plans__hash(plan_id, id_len);

  pthread_mutex_lock(&p->lock);
  if (table_find(&p->plans, plan_id, hash) != NULL ||
      table_find(&p->tombs, plan_id, hash) != NULL) {
    pthread_mutex_unlock(&p->lock);
    return EEXIST;
  }
  plan_t *pl = NULL;
  if (heap_reserve(p) == 0)
    pl = plans__alloc(p, size);
  if (pl == NULL) {
    pthread_mutex_unlock(&p->lock);
    return ENOMEM;
  }
  memset(pl, 0, sizeof(*pl));
  memcpy(pl->id, plan_id, id_len + 1);
  pl->h.key = pl->id;
  pl->h.hash = hash;
  pl->deadline = deadline;
  pl->sent = sent;
  pl->user = user;
  pl->tag = tag;
  pl->alloc_size = size;
  memcpy(pl->meters, meters, n * sizeof(uint32_t));
  qsort(pl->meters, n, sizeof(uint32_t), cmp_u32);
  size_t distinct = 1;
  for (size_t i = 1; i < n; i++) {
    if (pl->meters[i] != pl->meters[distinct - 1])
      pl->meters[distinct++] = pl->meters[i];
  }
  pl->n = (uint32_t)distinct;
  pl->bits = (uint64_t *)((char *)pl + sizeof(plan_t) + meters_bytes);
  memset(pl->bits, 0, words * sizeof(uint64_t));

  if (table_insert(p, &p->plans, &pl->h) != 0) {
    plans__release(p, pl, size);
    pthread_mutex_unlock(&p->lock);
    return ENOMEM;
  }
  p->heap[p->heap_len] = pl;
  p->heap_len++;
  heap_up(p, p->heap_len - 1);
  p->st.plans_pending++;
  p->st.meters_pending += distinct;

  pgroup_t *g = (pgroup_t *)table_find(&p->groups, plan_id, hash);
  if (g != NULL) {
    if (parked != NULL) {
      for (hes_parked_t *pk = g->head; pk != NULL; pk = pk->next)
        parked_detach(p, pk);
      *parked = g->head;
      g->head = NULL;
    } else {
      /* The caller wants none: they are lost, and counted so. */
      while (g->head != NULL) {
        hes_parked_t *pk = g->head;
        g->head = pk->next;
        parked_detach(p, pk);
        p->st.dropped++;
        free(pk);
      }
    }
    group_unlink(p, g);
    plans__release(p, g, g->alloc_size);
  }
  pthread_mutex_unlock(&p->lock);
  return 0;
}

hes_plan_lookup_t hes_plans_lookup(hes_plans_t *p, const char *plan_id, double now,
                                   const void *payload, size_t len, hes_plan_info_t *info) {
  if (p == NULL)
    return HES_PLAN_FOREIGN;
  size_t id_len = valid_id_len(plan_id);
  hes_plan_lookup_t r;

  pthread_mutex_lock(&p->lock);
  plans_clock(p, now);
  /* An id we could never have added cannot be ours. */
  if (id_len == 0) {
    p->st.foreign++;
    pthread_mutex_unlock(&p->lock);
    return HES_PLAN_FOREIGN;
  }
  uint32_t hash = plans__hash(plan_id, id_len);
  plan_t *pl = (plan_t *)table_find(&p->plans, plan_id, hash);
  if (pl != NULL) {
    if (info != NULL) {
      info->tag = pl->tag;
      info->user = pl->user;
      info->meters = pl->n;
      info->answered = pl->answered;
      info->deadline = pl->deadline;
      info->sent = pl->sent;
    }
    pthread_mutex_unlock(&p->lock);
    return HES_PLAN_OPEN;
  }
  tomb_t *t = (tomb_t *)table_find(&p->tombs, plan_id, hash);
  if (t != NULL) {
    r = t->kind;
    if (r == HES_PLAN_DUPLICATE)
      p->st.duplicate++;
    else
      p->st.late++;
  } else if (p->in_flight == 0) {
    r = HES_PLAN_FOREIGN;
    p->st.foreign++;
  } else {
    r = park(p, plan_id, id_len, hash, payload, len, now);
    if (r == HES_PLAN_DROPPED)
      p->st.dropped++;
  }
  pthread_mutex_unlock(&p->lock);
  return r;
}

int hes_plans_answer(hes_plans_t *p, const char *plan_id, uint32_t meter) {
  size_t id_len = valid_id_len(plan_id);
  if (p == NULL || id_len == 0)
    return -1;
  uint32_t hash = plans__hash(plan_id, id_len);
  int r = -1;

  pthread_mutex_lock(&p->lock);
  plan_t *pl = (plan_t *)table_find(&p->plans, plan_id, hash);
  if (pl != NULL) {
    long i = plan_index(pl, meter);
    if (i < 0) {
      r = -1;
    } else if (plan_bit(pl, (size_t)i)) {
      p->st.duplicate++;
      r = 0;
    } else {
      pl->bits[i / 64] |= UINT64_C(1) << (i % 64);
      pl->answered++;
      p->st.meters_pending--;
      if (pl->answered == pl->n)
        plan_close(p, pl, HES_PLAN_DUPLICATE, NULL);
      r = 1;
    }
  } else {
    tomb_t *t = (tomb_t *)table_find(&p->tombs, plan_id, hash);
    if (t != NULL) {
      if (t->kind == HES_PLAN_DUPLICATE)
        p->st.duplicate++;
      else
        p->st.late++;
      r = 0;
    }
  }
  pthread_mutex_unlock(&p->lock);
  return r;
}

size_t hes_plans_answer_batch(hes_plans_t *p, const char *plan_id, uint32_t *meters, size_t n) {
  size_t id_len = valid_id_len(plan_id);
  if (p == NULL || id_len == 0) {
    for (size_t i = 0; i < n; i++)
      meters[i] = UINT32_MAX;
    return 0;
  }
  uint32_t hash = plans__hash(plan_id, id_len);
  size_t kept = 0, i = 0;
  pthread_mutex_lock(&p->lock);
  plan_t *pl = (plan_t *)table_find(&p->plans, plan_id, hash);
  for (; pl != NULL && i < n; i++) {
    if (meters[i] == UINT32_MAX)
      continue;
    long k = plan_index(pl, meters[i]);
    if (k < 0) {
      meters[i] = UINT32_MAX;
    } else if (plan_bit(pl, (size_t)k)) {
      p->st.duplicate++;
      meters[i] = UINT32_MAX;
    } else {
      pl->bits[k / 64] |= UINT64_C(1) << (k % 64);
      pl->answered++;
      p->st.meters_pending--;
      kept++;
      if (pl->answered == pl->n) {
        plan_close(p, pl, HES_PLAN_DUPLICATE, NULL);
        pl = NULL; /* the rest are repeats of a finished plan, as for hes_plans_answer */
      }
    }
  }
  if (i < n) {
    const tomb_t *t = (const tomb_t *)table_find(&p->tombs, plan_id, hash);
    for (; i < n; i++) {
      if (meters[i] == UINT32_MAX)
        continue;
      if (t != NULL && t->kind == HES_PLAN_DUPLICATE)
        p->st.duplicate++;
      else if (t != NULL)
        p->st.late++;
      meters[i] = UINT32_MAX;
    }
  }
  pthread_mutex_unlock(&p->lock);
  return kept;
}

void hes_plans_finish(hes_plans_t *p, const char *plan_id, hes_plans_missing_cb cb, void *ctx) {
  size_t id_len = valid_id_len(plan_id);
  if (p == NULL || id_len == 0)
    return;
  uint32_t hash = plans__hash(plan_id, id_len);
  plan_t *closed = NULL;
  pthread_mutex_lock(&p->lock);
  plan_t *pl = (plan_t *)table_find(&p->plans, plan_id, hash);
  if (pl != NULL)
    plan_close(p, pl, HES_PLAN_DUPLICATE, cb != NULL ? &closed : NULL);
  pthread_mutex_unlock(&p->lock);
  report_closed(closed, cb, ctx);
}

size_t hes_plans_expire(hes_plans_t *p, double now, hes_plans_missing_cb cb, void *ctx) {
  if (p == NULL || isnan(now))
    return 0;
  size_t expired = 0;
  plan_t *closed = NULL;
  pthread_mutex_lock(&p->lock);
  plans_clock(p, now);
  while (p->heap_len > 0 && p->heap[0]->deadline <= now) {
    plan_close(p, p->heap[0], HES_PLAN_LATE, cb != NULL ? &closed : NULL);
    expired++;
  }
  if (p->st.parked > 0)
    parked_sweep(p, now);
  while (p->tomb_oldest != NULL && p->tomb_oldest->at + p->cfg.tombstone_ttl <= now)
    tomb_forget_oldest(p);
  pthread_mutex_unlock(&p->lock);
  report_closed(closed, cb, ctx);
  return expired;
}

void hes_plans_stats(hes_plans_t *p, hes_plans_stats_t *out) {
  if (out == NULL)
    return;
  if (p == NULL) {
    memset(out, 0, sizeof(*out));
    return;
  }
  pthread_mutex_lock(&p->lock);
  *out = p->st;
  pthread_mutex_unlock(&p->lock);
}

void hes_parked_free(hes_parked_t *list) {
  while (list != NULL) {
    hes_parked_t *next = list->next;
    free(list);
    list = next;
  }
}

const char *hes_plan_lookup_string(hes_plan_lookup_t r) {
  switch (r) {
  case HES_PLAN_OPEN:
    return "open";
  case HES_PLAN_PARKED:
    return "parked";
  case HES_PLAN_FOREIGN:
    return "foreign";
  case HES_PLAN_DUPLICATE:
    return "duplicate";
  case HES_PLAN_LATE:
    return "late";
  case HES_PLAN_DROPPED:
    return "dropped";
  }
  return "unknown";
}

size_t hes_plans_forget(hes_plans_t *p, const uint32_t *meters, size_t n) {
  if (p == NULL || meters == NULL || n == 0)
    return 0;
  uint32_t max = 0;
  for (size_t i = 0; i < n; i++)
    if (meters[i] != UINT32_MAX && meters[i] > max)
      max = meters[i];
  uint64_t *gone = calloc((size_t)max / 64 + 1, sizeof(*gone));
  if (gone == NULL)
    return 0; /* they stay: reported missing at the deadline, the old behaviour */
  for (size_t i = 0; i < n; i++)
    if (meters[i] != UINT32_MAX)
      gone[meters[i] / 64] |= UINT64_C(1) << (meters[i] % 64);
  size_t forgotten = 0;
  pthread_mutex_lock(&p->lock);
  /* Plans all of whose meters are answered now close after the walk: closing moves plans in
   * the heap being walked. */
  plan_t **done = malloc((p->heap_len ? p->heap_len : 1) * sizeof(*done));
  size_t ndone = 0;
  for (size_t h = 0; h < p->heap_len; h++) {
    plan_t *pl = p->heap[h];
    for (uint32_t i = 0; i < pl->n; i++) {
      uint32_t m = pl->meters[i];
      if (m > max || !((gone[m / 64] >> (m % 64)) & 1u) || plan_bit(pl, i))
        continue;
      pl->bits[i / 64] |= UINT64_C(1) << (i % 64);
      pl->answered++;
      p->st.meters_pending--;
      forgotten++;
    }
    if (pl->answered == pl->n && done != NULL)
      done[ndone++] = pl;
  }
  for (size_t i = 0; i < ndone; i++)
    plan_close(p, done[i], HES_PLAN_DUPLICATE, NULL);
  pthread_mutex_unlock(&p->lock);
  free(done);
  free(gone);
  return forgotten;
}
