/* meterlist: the Meter lines, the MeterFile and the DCU archives of one server, combined
 * into the versions of a hes_meterset_t.
 *
 * Every list is a hes_meters_t, so meter-number validation and MeterFile parsing are
 * meters.c's; a DCU's list is kept in StateDir in MeterFile format for the same reason. */
#include "config.h"
#include "errbuf.h"

#include "meterlist.h"

#include "fileio.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* What identifies one state of the MeterFile. An atomic rename gives a new inode; an edit in
 * place changes the size or the mtime (nanoseconds on the file systems that matter). */
typedef struct {
  int err; /* errno of stat, 0 if it worked */
  dev_t dev;
  ino_t ino;
  off_t size;
  struct timespec mtime;
} meterlist__sig_t;

typedef struct {
  char *name;
  char *path;             /* its file in StateDir, or NULL */
  hes_meters_t *list;     /* the last good list; NULL while unknown. Freed only by _dcu_end
                           * under save_lock, so the saver may read it without `lock`. */
  hes_meters_t *building; /* the refresh under way, or NULL */
  bool broken;            /* an entry of this refresh could not be stored */
} meterlist__dcu_t;

struct hes_meterlist {
  char *server;
  hes_meters_t *fixed; /* the Meter lines */
  char *file_path;
  hes_meters_t *file_list; /* the MeterFile's last good list, or NULL once in the set */
  size_t file_count;       /* meters of the last good MeterFile, 0 before one */
  meterlist__sig_t file_sig;
  bool file_checked; /* file_sig holds the state last looked at */
  meterlist__dcu_t *dcus;
  size_t n_dcus;
  hes_meterset_t *set;

  pthread_mutex_t lock;      /* guards dcus[].list/building/broken, dirty, stats */
  pthread_mutex_t save_lock; /* one _dcu_end at a time: orders the files written */
  bool dirty;                /* a source changed since the last commit */
  bool first_done;           /* the first list is committed */
  hes_meterlist_stats_t stats;
};

static char *meterlist__printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *meterlist__printf(const char *fmt, ...) {
  va_list ap;
  char *s = NULL;
  int n;

  va_start(ap, fmt);
  n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0)
    return NULL;
  s = malloc((size_t)n + 1);
  if (s == NULL)
    return NULL;
  va_start(ap, fmt);
  vsnprintf(s, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return s;
}

void hes_meterlist_free(hes_meterlist_t *ml) {
  if (ml == NULL)
    return;
  for (size_t i = 0; i < ml->n_dcus; i++) {
    free(ml->dcus[i].name);
    free(ml->dcus[i].path);
    hes_meters_free(ml->dcus[i].list);
    hes_meters_free(ml->dcus[i].building);
  }
  free(ml->dcus);
  hes_meters_free(ml->fixed);
  hes_meters_free(ml->file_list);
  free(ml->file_path);
  free(ml->server);
  hes_meterset_free(ml->set);
  pthread_mutex_destroy(&ml->lock);
  pthread_mutex_destroy(&ml->save_lock);
  free(ml);
}

hes_meterlist_t *hes_meterlist_new(const hes_meterlist_config_t *cfg, char *err, size_t errlen) {
  hes_meterlist_t *ml;

  if (cfg == NULL || cfg->server == NULL || (cfg->n_meters > 0 && cfg->meters == NULL) ||
      (cfg->n_dcus > 0 && cfg->dcus == NULL)) {
    hes_errbuf_printf(err, errlen, "invalid meter list configuration");
    return NULL;
  }
  ml = calloc(1, sizeof(*ml));
  if (ml == NULL)
    goto nomem;
  if (pthread_mutex_init(&ml->lock, NULL) != 0) {
    free(ml);
    goto nomem;
  }
  if (pthread_mutex_init(&ml->save_lock, NULL) != 0) {
    pthread_mutex_destroy(&ml->lock);
    free(ml);
    goto nomem;
  }
  ml->server = strdup(cfg->server);
  ml->fixed = hes_meters_new();
  ml->set = hes_meterset_new();
  ml->dcus = calloc(cfg->n_dcus > 0 ? cfg->n_dcus : 1, sizeof(*ml->dcus));
  if (ml->server == NULL || ml->fixed == NULL || ml->set == NULL || ml->dcus == NULL)
    goto fail_nomem;
  if (cfg->meter_file != NULL && (ml->file_path = strdup(cfg->meter_file)) == NULL)
    goto fail_nomem;

  for (size_t i = 0; i < cfg->n_meters; i++) {
    hes_meters_result_t r = hes_meters_add(ml->fixed, cfg->meters[i]);
    if (r == HES_METERS_ENOMEM)
      goto fail_nomem;
    if (r == HES_METERS_EINVAL) {
      hes_errbuf_printf(err, errlen, "\"%s\" is not a valid meter number", cfg->meters[i]);
      hes_meterlist_free(ml);
      return NULL;
    }
  }
  for (size_t i = 0; i < cfg->n_dcus; i++) {
    meterlist__dcu_t *d = &ml->dcus[i];
    if (!hes_meter_is_valid(cfg->dcus[i])) {
      hes_errbuf_printf(err, errlen, "\"%s\" is not a valid DCU number", cfg->dcus[i]);
      hes_meterlist_free(ml);
      return NULL;
    }
    ml->n_dcus = i + 1;
    d->name = strdup(cfg->dcus[i]);
    if (d->name == NULL)
      goto fail_nomem;
    /* Server names are free text: a '/' in one must not leave StateDir. */
    if (cfg->state_dir != NULL && strchr(cfg->server, '/') == NULL) {
      d->path = meterlist__printf("%s/hes-dcu-%s-%s.list", cfg->state_dir, cfg->server, d->name);
      if (d->path == NULL)
        goto fail_nomem;
    }
  }
  ml->dirty = true;
  return ml;

fail_nomem:
  hes_meterlist_free(ml);
nomem:
  hes_errbuf_printf(err, errlen, "out of memory");
  return NULL;
}

hes_meterset_t *hes_meterlist_set(hes_meterlist_t *ml) {
  return ml != NULL ? ml->set : NULL;
}

/* ---- MeterFile ------------------------------------------------------------------------- */

static meterlist__sig_t meterlist__stat(const char *path) {
  meterlist__sig_t sig;
  struct stat st;

  memset(&sig, 0, sizeof(sig));
  if (stat(path, &st) != 0) {
    sig.err = errno;
    return sig;
  }
  sig.dev = st.st_dev;
  sig.ino = st.st_ino;
  sig.size = st.st_size;
  sig.mtime = st.st_mtim;
  return sig;
}

static bool meterlist__sig_eq(const meterlist__sig_t *a, const meterlist__sig_t *b) {
  return a->err == b->err && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
         a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

/* The one line for an unusable MeterFile, with what happens instead. */
static void meterlist__file_err(const hes_meterlist_t *ml, char *err, size_t errlen,
                                const char *what) {
  if (ml->file_count > 0)
    hes_errbuf_printf(err, errlen, "MeterFile \"%s\": %s; keeping the previous list (%zu meters)",
                      ml->file_path, what, ml->file_count);
  else
    hes_errbuf_printf(err, errlen, "MeterFile \"%s\": %s", ml->file_path, what);
}

hes_meterlist_result_t hes_meterlist_check_file(hes_meterlist_t *ml, char *err, size_t errlen) {
  meterlist__sig_t sig;
  hes_meters_t *m;
  hes_meters_result_t r;
  size_t line = 0;
  char what[128];

  if (ml == NULL)
    return HES_METERLIST_EINVAL;
  if (ml->file_path == NULL)
    return HES_METERLIST_UNCHANGED;

  sig = meterlist__stat(ml->file_path);
  if (ml->file_checked && meterlist__sig_eq(&sig, &ml->file_sig))
    return HES_METERLIST_UNCHANGED;
  /* Remembered before reading, so a bad file is reported once, not every round. A change
   * between this stat and the read is seen next round. */
  ml->file_sig = sig;
  ml->file_checked = true;
  if (sig.err != 0) {
    snprintf(what, sizeof(what), "cannot read it: %s", strerror(sig.err));
    meterlist__file_err(ml, err, errlen, what);
    return HES_METERLIST_EFILE;
  }

  m = hes_meters_new();
  if (m == NULL) {
    ml->file_checked = false; /* try again next round */
    meterlist__file_err(ml, err, errlen, "out of memory");
    return HES_METERLIST_EFILE;
  }
  r = hes_meters_add_file(m, ml->file_path, &line);
  if (r == HES_METERS_OK && hes_meters_count(m) == 0) {
    hes_meters_free(m);
    meterlist__file_err(ml, err, errlen, "lists no meter");
    return HES_METERLIST_EFILE;
  }
  if (r != HES_METERS_OK) {
    int e = errno;
    hes_meters_free(m);
    switch (r) {
    case HES_METERS_EIO:
      snprintf(what, sizeof(what), "cannot read it: %s", strerror(e));
      break;
    case HES_METERS_EINVAL:
      snprintf(what, sizeof(what),
               "line %zu is not a valid meter number (1 to %d characters of 0-9, A-Z, a-z, '_' "
               "and '-')",
               line, HES_METER_MAX_LEN);
      break;
    case HES_METERS_EDUPLICATE:
      snprintf(what, sizeof(what), "line %zu repeats a meter listed before", line);
      break;
    default:
      ml->file_checked = false;
      snprintf(what, sizeof(what), "out of memory");
    }
    meterlist__file_err(ml, err, errlen, what);
    return HES_METERLIST_EFILE;
  }
  hes_meters_drop_index(m);
  hes_meters_free(ml->file_list);
  ml->file_list = m;
  ml->file_count = hes_meters_count(m);
  pthread_mutex_lock(&ml->lock);
  ml->dirty = true;
  pthread_mutex_unlock(&ml->lock);
  return HES_METERLIST_OK;
}

/* ---- DCU lists --------------------------------------------------------------------------- */

/* Keeps one DCU's list in StateDir in MeterFile format, so hes_meters_add_file loads it. All
 * of the DCU lists' file writing is here. */
static int meterlist__dcu_save(const meterlist__dcu_t *d, const char *server) {
  size_t n = hes_meters_count(d->list);
  size_t cap = 128 + strlen(server) + strlen(d->name) + n * (HES_METER_MAX_LEN + 1);
  char *text = malloc(cap);
  size_t len;
  int rc;

  if (text == NULL)
    return ENOMEM;
  len = (size_t)snprintf(text, cap,
                         "# collectd-hes: the enabled archive entries of DCU %s (server %s), as "
                         "last read\n",
                         d->name, server);
  for (size_t i = 0; i < n; i++) {
    const char *m = hes_meters_at(d->list, (uint32_t)i);
    size_t ml = strlen(m);
    memcpy(text + len, m, ml);
    text[len + ml] = '\n';
    len += ml + 1;
  }
  rc = hes_file_write_atomic(d->path, text, len);
  free(text);
  return rc;
}

size_t hes_meterlist_load_dcus(hes_meterlist_t *ml, char *err, size_t errlen) {
  size_t loaded = 0;
  bool reported = false;

  if (err != NULL && errlen > 0)
    err[0] = '\0';
  if (ml == NULL)
    return 0;
  for (size_t i = 0; i < ml->n_dcus; i++) {
    meterlist__dcu_t *d = &ml->dcus[i];
    struct stat st;
    hes_meters_t *m, *old;
    hes_meters_result_t r;
    size_t line = 0;

    if (d->path == NULL || (stat(d->path, &st) != 0 && errno == ENOENT))
      continue;
    m = hes_meters_new();
    r = m != NULL ? hes_meters_add_file(m, d->path, &line) : HES_METERS_ENOMEM;
    if (r != HES_METERS_OK) {
      if (!reported)
        hes_errbuf_printf(err, errlen,
                          "DCU %s: its kept list \"%s\" is unusable (%s, line %zu); it is unknown "
                          "until the next refresh",
                          d->name, d->path,
                          r == HES_METERS_EIO ? "cannot read it" : "not a list of meter numbers",
                          line);
      reported = true;
      hes_meters_free(m);
      continue;
    }
    hes_meters_drop_index(m);
    pthread_mutex_lock(&ml->save_lock);
    pthread_mutex_lock(&ml->lock);
    old = d->list;
    d->list = m;
    ml->dirty = true;
    pthread_mutex_unlock(&ml->lock);
    pthread_mutex_unlock(&ml->save_lock);
    hes_meters_free(old);
    loaded++;
  }
  return loaded;
}

size_t hes_meterlist_dcu_count(const hes_meterlist_t *ml) {
  return ml != NULL ? ml->n_dcus : 0;
}

size_t hes_meterlist_dcu_find(const hes_meterlist_t *ml, const char *dcu) {
  for (size_t i = 0; ml != NULL && dcu != NULL && i < ml->n_dcus; i++) {
    if (strcmp(ml->dcus[i].name, dcu) == 0)
      return i;
  }
  return (size_t)-1;
}

const char *hes_meterlist_dcu_name(const hes_meterlist_t *ml, size_t dcu) {
  return ml != NULL && dcu < ml->n_dcus ? ml->dcus[dcu].name : NULL;
}

long hes_meterlist_dcu_meters(hes_meterlist_t *ml, size_t dcu) {
  long n;

  if (ml == NULL || dcu >= ml->n_dcus)
    return -1;
  pthread_mutex_lock(&ml->lock);
  n = ml->dcus[dcu].list != NULL ? (long)hes_meters_count(ml->dcus[dcu].list) : -1;
  pthread_mutex_unlock(&ml->lock);
  return n;
}

hes_meterlist_result_t hes_meterlist_dcu_begin(hes_meterlist_t *ml, size_t dcu) {
  hes_meters_t *m, *old;

  if (ml == NULL || dcu >= ml->n_dcus)
    return HES_METERLIST_EINVAL;
  m = hes_meters_new();
  if (m == NULL)
    return HES_METERLIST_ENOMEM;
  pthread_mutex_lock(&ml->lock);
  old = ml->dcus[dcu].building;
  ml->dcus[dcu].building = m;
  ml->dcus[dcu].broken = false;
  pthread_mutex_unlock(&ml->lock);
  hes_meters_free(old);
  return HES_METERLIST_OK;
}

void hes_meterlist_dcu_entry(hes_meterlist_t *ml, size_t dcu, const char *dev_addr, size_t len,
                             bool enabled) {
  char buf[HES_METER_MAX_LEN + 1];

  if (ml == NULL || dcu >= ml->n_dcus || dev_addr == NULL || !enabled)
    return;
  pthread_mutex_lock(&ml->lock);
  meterlist__dcu_t *d = &ml->dcus[dcu];
  if (d->building != NULL) {
    /* A number meters.c refuses is skipped (it cannot go in a devList); a repeat is the
     * same meter. Only running out of memory makes the refresh incomplete. */
    if (len <= HES_METER_MAX_LEN) {
      memcpy(buf, dev_addr, len);
      buf[len] = '\0';
      if (hes_meters_add(d->building, buf) == HES_METERS_ENOMEM)
        d->broken = true;
    }
  }
  pthread_mutex_unlock(&ml->lock);
}

/* Whether a and b hold the same meters. b must still have its index; a need not. */
static bool meterlist__same(const hes_meters_t *a, const hes_meters_t *b) {
  size_t n = hes_meters_count(a);

  if (a == NULL || b == NULL || n != hes_meters_count(b))
    return false;
  for (size_t i = 0; i < n; i++) {
    const char *m = hes_meters_at(a, (uint32_t)i);
    if (hes_meters_find(b, m, strlen(m)) == HES_METER_NONE)
      return false;
  }
  return true;
}

hes_meterlist_result_t hes_meterlist_dcu_end(hes_meterlist_t *ml, size_t dcu, bool ok, char *err,
                                             size_t errlen) {
  meterlist__dcu_t *d;
  hes_meters_t *m, *old = NULL;
  bool changed = false, failed;
  int rc;

  if (ml == NULL || dcu >= ml->n_dcus)
    return HES_METERLIST_EINVAL;
  d = &ml->dcus[dcu];
  pthread_mutex_lock(&ml->save_lock);
  pthread_mutex_lock(&ml->lock);
  m = d->building;
  d->building = NULL;
  ml->stats.archive++;
  failed = !ok || m == NULL || d->broken;
  if (failed) {
    ml->stats.archive_failed++;
    old = m;
  } else {
    hes_meters_seal(m);
    changed = !meterlist__same(d->list, m);
    /* Kept only to be copied into the union, which has its own index. */
    hes_meters_drop_index(m);
    if (changed || d->list == NULL) {
      old = d->list;
      d->list = m;
      ml->dirty = ml->dirty || changed;
    } else {
      old = m;
    }
  }
  pthread_mutex_unlock(&ml->lock);
  hes_meters_free(old);

  if (failed) {
    long n = d->list != NULL ? (long)hes_meters_count(d->list) : -1;
    if (n >= 0)
      hes_errbuf_printf(err, errlen,
                        "DCU %s: archive refresh failed; keeping its previous list (%ld "
                        "meters)",
                        d->name, n);
    else
      hes_errbuf_printf(err, errlen, "DCU %s: archive refresh failed; its meters stay unknown",
                        d->name);
    pthread_mutex_unlock(&ml->save_lock);
    return HES_METERLIST_EFAILED;
  }
  rc = changed && d->path != NULL ? meterlist__dcu_save(d, ml->server) : 0;
  pthread_mutex_unlock(&ml->save_lock);
  if (rc != 0) {
    hes_errbuf_printf(err, errlen, "DCU %s: cannot keep its list in \"%s\": %s", d->name, d->path,
                      strerror(rc));
    return HES_METERLIST_ESAVE;
  }
  return HES_METERLIST_OK;
}

/* ---- the union ------------------------------------------------------------------------- */

static hes_meters_result_t meterlist__add_all(hes_meters_t *u, const hes_meters_t *from) {
  size_t n = hes_meters_count(from);

  for (size_t i = 0; i < n; i++) {
    hes_meters_result_t r = hes_meters_add(u, hes_meters_at(from, (uint32_t)i));
    if (r == HES_METERS_ENOMEM)
      return r;
  }
  return HES_METERS_OK;
}

/* Without DCU lists the union is rebuilt only when the MeterFile changes, and then from the
 * new file's list: the old one would only hold memory (17 bytes a meter at 100,000 meters,
 * a quarter of the budget) while the set already has every meter. With DCU lists a refresh
 * rebuilds the union, so the file's list stays. */
static void meterlist__release_file(hes_meterlist_t *ml) {
  if (ml->n_dcus > 0)
    return;
  hes_meters_free(ml->file_list);
  ml->file_list = NULL;
}

hes_meterlist_result_t hes_meterlist_update(hes_meterlist_t *ml, hes_meterset_update_t *up) {
  hes_meters_t *u;
  hes_meters_result_t r;
  bool dirty;

  if (ml == NULL || up == NULL)
    return HES_METERLIST_EINVAL;
  pthread_mutex_lock(&ml->lock);
  dirty = ml->dirty;
  pthread_mutex_unlock(&ml->lock);
  if (!dirty && ml->first_done)
    return HES_METERLIST_UNCHANGED;

  u = hes_meters_new();
  if (u == NULL)
    return HES_METERLIST_ENOMEM;
  r = meterlist__add_all(u, ml->fixed);
  if (r == HES_METERS_OK)
    r = meterlist__add_all(u, ml->file_list);
  pthread_mutex_lock(&ml->lock);
  for (size_t i = 0; i < ml->n_dcus && r == HES_METERS_OK; i++)
    r = meterlist__add_all(u, ml->dcus[i].list);
  ml->dirty = false;
  pthread_mutex_unlock(&ml->lock);
  if (r != HES_METERS_OK) {
    hes_meters_free(u);
    pthread_mutex_lock(&ml->lock);
    ml->dirty = true;
    pthread_mutex_unlock(&ml->lock);
    return HES_METERLIST_ENOMEM;
  }

  switch (hes_meterset_prepare(ml->set, u, up)) {
  case HES_METERSET_OK:
    break;
  case HES_METERSET_ENOMEM:
    pthread_mutex_lock(&ml->lock);
    ml->dirty = true;
    pthread_mutex_unlock(&ml->lock);
    return HES_METERLIST_ENOMEM;
  default:
    return HES_METERLIST_EINVAL;
  }
  if (up->n_joined == 0 && up->n_left == 0 && ml->first_done) {
    hes_meterset_abort(ml->set, up);
    meterlist__release_file(ml);
    return HES_METERLIST_UNCHANGED;
  }
  return HES_METERLIST_OK;
}

void hes_meterlist_commit(hes_meterlist_t *ml, hes_meterset_update_t *up) {
  if (ml == NULL || up == NULL || up->next == NULL)
    return;
  hes_meterset_commit(ml->set, up);
  meterlist__release_file(ml);
  pthread_mutex_lock(&ml->lock);
  if (ml->first_done) {
    ml->stats.meters_added += up->n_joined;
    ml->stats.meters_removed += up->n_left;
  }
  ml->stats.meters = hes_meterver_count(up->next);
  pthread_mutex_unlock(&ml->lock);
  ml->first_done = true;
}

void hes_meterlist_abort(hes_meterlist_t *ml, hes_meterset_update_t *up) {
  if (ml == NULL || up == NULL || up->next == NULL)
    return;
  hes_meterset_abort(ml->set, up);
  pthread_mutex_lock(&ml->lock);
  ml->dirty = true;
  pthread_mutex_unlock(&ml->lock);
}

void hes_meterlist_done(hes_meterlist_t *ml, hes_meterset_update_t *up) {
  if (ml == NULL)
    return;
  hes_meterset_update_done(ml->set, up);
}

size_t hes_meterlist_memory(hes_meterlist_t *ml) {
  size_t bytes;

  if (ml == NULL)
    return 0;
  bytes = sizeof(*ml) + hes_meterset_memory(ml->set, NULL) + hes_meters_memory(ml->fixed) +
          hes_meters_memory(ml->file_list) + ml->n_dcus * sizeof(*ml->dcus);
  pthread_mutex_lock(&ml->lock);
  for (size_t i = 0; i < ml->n_dcus; i++)
    bytes += hes_meters_memory(ml->dcus[i].list) + hes_meters_memory(ml->dcus[i].building);
  pthread_mutex_unlock(&ml->lock);
  return bytes;
}

void hes_meterlist_stats(hes_meterlist_t *ml, hes_meterlist_stats_t *out) {
  if (out == NULL)
    return;
  memset(out, 0, sizeof(*out));
  if (ml == NULL)
    return;
  pthread_mutex_lock(&ml->lock);
  *out = ml->stats;
  pthread_mutex_unlock(&ml->lock);
}

int hes_meterlist_lines(const hes_meters_t *all, const char *meter_file, const char ***lines,
                        size_t *n) {
  size_t total = all != NULL ? hes_meters_count(all) : 0;
  *n = 0;
  *lines = calloc(total ? total : 1, sizeof(**lines));
  hes_meters_t *file = hes_meters_new();
  if (*lines == NULL || file == NULL) {
    free(*lines);
    *lines = NULL;
    hes_meters_free(file);
    return ENOMEM;
  }
  size_t bad = 0;
  if (meter_file != NULL)
    (void)hes_meters_add_file(file, meter_file, &bad); /* what it read before a fault counts */
  if (hes_meters_seal(file) != HES_METERS_OK) {
    free(*lines);
    *lines = NULL;
    hes_meters_free(file);
    return ENOMEM;
  }
  for (uint32_t i = 0; i < total; i++) {
    const char *m = hes_meters_at(all, i);
    if (hes_meters_find(file, m, strlen(m)) == HES_METER_NONE)
      (*lines)[(*n)++] = m;
  }
  hes_meters_free(file);
  return 0;
}
