/* meters: the meter numbers of one server in three flat arrays.
 *
 *   arena    the NUL-terminated numbers back to back ("2024...01\0""2024...02\0"...)
 *   offsets  offsets[i] is where meter i starts in the arena
 *   index    the hash index (hashtab.h: linear probing, power-of-two size, load <= 1/2),
 *            each slot holding a meter index
 *
 * The index is kept current while meters are added, so a duplicate is found in O(1) and a
 * 100,000-line MeterFile loads in milliseconds; seal() only gives back the spare capacity of
 * the growing arrays. For 12-digit numbers that is 13 + 4 + ~10.5 bytes a meter. */
#include "config.h"

#include "meters.h"
#include "hashtab.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Offsets are uint32_t, and the slot count must stay a power of two within uint32_t. */
#define METERS_MAX_COUNT (UINT32_C(1) << 30)
#define ARENA_MAX        ((size_t)UINT32_MAX)

struct hes_meters {
  char *arena;
  size_t arena_len;
  size_t arena_cap;
  uint32_t *offsets;
  uint32_t count;
  uint32_t offsets_cap;
  hes_hashtab_t index; /* meter number -> index */
  bool sealed;
};

bool hes_meter_is_valid(const char *s) {
  return hes_meterid_ok(s, HES_METER_MAX_LEN);
}

hes_meters_t *hes_meters_new(void) {
  return calloc(1, sizeof(hes_meters_t));
}

void hes_meters_free(hes_meters_t *m) {
  if (m == NULL)
    return;
  free(m->arena);
  free(m->offsets);
  hes_hashtab_free(&m->index);
  free(m);
}

/* A meter's key for the index. The arena holds the meters back to back in index order, so
 * a meter's length is the distance to the next one: compare lengths first, then bytes. A
 * stored meter has no NUL, so s needs no validation to be compared safely (the hot path:
 * every reading). */
static bool meters__eq(const void *ctx, uint32_t idx, const char *s, size_t len) {
  const hes_meters_t *m = ctx;
  uint32_t end = idx + 1 < m->count ? m->offsets[idx + 1] : (uint32_t)m->arena_len;

  return end - m->offsets[idx] - 1 == len && memcmp(m->arena + m->offsets[idx], s, len) == 0;
}

static uint32_t meters__hash_of(const void *ctx, uint32_t idx) {
  const hes_meters_t *m = ctx;
  const char *s = m->arena + m->offsets[idx];

  return hes_hashtab_hash(s, strlen(s));
}

/* Makes room for one more meter of `len` characters in every array. */
static hes_meters_result_t meters__reserve(hes_meters_t *m, size_t len) {
  if (m->count >= METERS_MAX_COUNT)
    return HES_METERS_ENOMEM;

  if (m->arena_len + len + 1 > m->arena_cap) {
    size_t cap = m->arena_cap != 0 ? m->arena_cap * 2 : 256;
    if (cap > ARENA_MAX)
      cap = ARENA_MAX;
    if (m->arena_len + len + 1 > cap)
      return HES_METERS_ENOMEM;
    char *arena = realloc(m->arena, cap);
    if (arena == NULL)
      return HES_METERS_ENOMEM;
    m->arena = arena;
    m->arena_cap = cap;
  }

  if (m->count == m->offsets_cap) {
    uint32_t cap = m->offsets_cap != 0 ? m->offsets_cap * 2 : 16;
    uint32_t *offsets = realloc(m->offsets, (size_t)cap * sizeof(*offsets));
    if (offsets == NULL)
      return HES_METERS_ENOMEM;
    m->offsets = offsets;
    m->offsets_cap = cap;
  }

  return hes_hashtab_reserve(&m->index, 1, meters__hash_of, m) == 0 ? HES_METERS_OK
                                                                    : HES_METERS_ENOMEM;
}

static hes_meters_result_t meters__add_n(hes_meters_t *m, const char *s, size_t len) {
  hes_meters_result_t res;
  uint32_t slot;
  uint32_t hash;

  if (!hes_meterid_ok_n(s, len, HES_METER_MAX_LEN))
    return HES_METERS_EINVAL;
  hash = hes_hashtab_hash(s, len);

  if (hes_hashtab_find(&m->index, hash, meters__eq, m, s, len) != HES_HASHTAB_NONE)
    return HES_METERS_EDUPLICATE;

  res = meters__reserve(m, len);
  if (res != HES_METERS_OK)
    return res;

  /* The reserve may have rehashed: probe again in the current index. */
  slot = hes_hashtab_slot(&m->index, hash, meters__eq, m, s, len);
  memcpy(m->arena + m->arena_len, s, len);
  m->arena[m->arena_len + len] = '\0';
  m->offsets[m->count] = (uint32_t)m->arena_len;
  hes_hashtab_put(&m->index, slot, m->count);
  m->arena_len += len + 1;
  m->count++;
  return HES_METERS_OK;
}

hes_meters_result_t hes_meters_add(hes_meters_t *m, const char *meter) {
  if (m == NULL || meter == NULL || m->sealed)
    return HES_METERS_EINVAL;
  return meters__add_n(m, meter, strnlen(meter, HES_METER_MAX_LEN + 1));
}

static bool meters__is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* One line of a MeterFile, without its '\n': strips the comment and the surrounding white
 * space, then adds what is left, if anything. */
static hes_meters_result_t meters__add_line(hes_meters_t *m, char *line, size_t len) {
  char *hash = memchr(line, '#', len);
  size_t start = 0;

  if (hash != NULL)
    len = (size_t)(hash - line);
  while (len > 0 && meters__is_space(line[len - 1]))
    len--;
  while (start < len && meters__is_space(line[start]))
    start++;
  if (start == len)
    return HES_METERS_OK;
  return meters__add_n(m, line + start, len - start);
}

hes_meters_result_t hes_meters_add_file(hes_meters_t *m, const char *path, size_t *bad_line) {
  char line[HES_METERS_LINE_MAX + 1];
  size_t len = 0;
  size_t lineno = 1;
  bool too_long = false;
  hes_meters_result_t res = HES_METERS_OK;
  FILE *fh;
  int c;

  if (bad_line != NULL)
    *bad_line = 0;
  if (m == NULL || path == NULL || m->sealed)
    return HES_METERS_EINVAL;

  fh = fopen(path, "r");
  if (fh == NULL)
    return HES_METERS_EIO;

  /* getc rather than fgets: a NUL byte in the file must not cut a line short unseen. */
  for (;;) {
    c = getc(fh);
    if (c == EOF || c == '\n') {
      if (too_long)
        res = HES_METERS_EINVAL;
      else
        res = meters__add_line(m, line, len);
      if (res != HES_METERS_OK || c == EOF)
        break;
      len = 0;
      lineno++;
      continue;
    }
    if (c == '\0') {
      res = HES_METERS_EINVAL;
      break;
    }
    if (len == HES_METERS_LINE_MAX) {
      /* Reported once the whole line is read, unless a read error comes first. */
      too_long = true;
      continue;
    }
    line[len++] = (char)c;
  }

  if (ferror(fh)) {
    res = HES_METERS_EIO;
    lineno = 0;
  }
  fclose(fh);

  if (res != HES_METERS_OK && bad_line != NULL)
    *bad_line = lineno;
  return res;
}

hes_meters_result_t hes_meters_seal(hes_meters_t *m) {
  if (m == NULL)
    return HES_METERS_EINVAL;
  if (m->sealed)
    return HES_METERS_OK;

  /* Give back the spare capacity of the doubling arrays; the index is already current. A
   * failed shrink leaves the larger block, which is just as good. */
  if (m->arena_len != 0 && m->arena_len < m->arena_cap) {
    char *arena = realloc(m->arena, m->arena_len);
    if (arena != NULL) {
      m->arena = arena;
      m->arena_cap = m->arena_len;
    }
  }
  if (m->count != 0 && m->count < m->offsets_cap) {
    uint32_t *offsets = realloc(m->offsets, (size_t)m->count * sizeof(*offsets));
    if (offsets != NULL) {
      m->offsets = offsets;
      m->offsets_cap = m->count;
    }
  }
  m->sealed = true;
  return HES_METERS_OK;
}

void hes_meters_drop_index(hes_meters_t *m) {
  if (m == NULL)
    return;
  hes_meters_seal(m);
  hes_hashtab_free(&m->index);
}

size_t hes_meters_count(const hes_meters_t *m) {
  if (m == NULL)
    return 0;
  return m->count;
}

const char *hes_meters_at(const hes_meters_t *m, uint32_t i) {
  if (m == NULL || i >= m->count)
    return NULL;
  return m->arena + m->offsets[i];
}

uint32_t hes_meters_find(const hes_meters_t *m, const char *s, size_t len) {
  if (m == NULL || s == NULL || len == 0 || len > HES_METER_MAX_LEN)
    return HES_METER_NONE;
  return hes_hashtab_find(&m->index, hes_hashtab_hash(s, len), meters__eq, m, s, len);
}

size_t hes_meters_memory(const hes_meters_t *m) {
  if (m == NULL)
    return 0;
  return sizeof(*m) + m->arena_cap + (size_t)m->offsets_cap * sizeof(*m->offsets) +
         hes_hashtab_memory(&m->index);
}
