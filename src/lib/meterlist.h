/* meterlist: where a server's meters come from, and when the list changes.
 *
 * Three sources make the list, as a union without duplicates:
 *   Meter lines  fixed at start
 *   MeterFile    checked once per round (inode, size, mtime) and re-read when it changed;
 *                a file that cannot be read, has a bad line or lists no meter keeps the
 *                previous list
 *   DCU          each DCU's enabled archive entries (readArchive, status "1"), collected by
 *                the caller from the archive push between _dcu_begin and _dcu_end; a failed
 *                or partial refresh keeps that DCU's previous list; the last good list is
 *                kept in StateDir and loaded at start
 * The result is published through a hes_meterset_t (stable indices, pinned versions).
 *
 * Threads: _check_file, _update, _commit and _done run on one thread at a time (the read
 * round). The _dcu_* calls may come from another (the MQTT thread, where the archive push
 * arrives) and _stats from any: they share one internal lock, never held across file I/O. */
#ifndef HES_METERLIST_H
#define HES_METERLIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "meters.h"
#include "meterset.h"

typedef struct hes_meterlist hes_meterlist_t;

typedef enum {
  HES_METERLIST_OK = 0,
  HES_METERLIST_UNCHANGED, /* nothing to do */
  HES_METERLIST_EFILE,     /* MeterFile unusable; the previous list stays (message in err) */
  HES_METERLIST_EFAILED,   /* a DCU refresh failed; its previous list stays */
  HES_METERLIST_ESAVE,     /* the new DCU list is in use but could not be kept in StateDir */
  HES_METERLIST_EINVAL,
  HES_METERLIST_ENOMEM,
} hes_meterlist_result_t;

typedef struct {
  const char *server;        /* for file names and messages */
  const char *const *meters; /* the Meter lines, validated by the config */
  size_t n_meters;
  const char *meter_file;  /* NULL: none */
  const char *const *dcus; /* DCU numbers */
  size_t n_dcus;
  const char *state_dir; /* NULL: DCU lists are not kept */
} hes_meterlist_config_t;

/* The self-metrics of section 3. */
typedef struct {
  uint64_t meters;         /* gauge-meters: meters in the published list */
  uint64_t meters_added;   /* total_operations-meters_added (the first list does not count) */
  uint64_t meters_removed; /* total_operations-meters_removed */
  uint64_t archive;        /* total_requests-archive: DCU refreshes finished */
  uint64_t archive_failed; /* total_requests-archive_failed */
} hes_meterlist_stats_t;

/* The Meter lines of a config whose list (`all`, sealed) holds the Meter lines and the
 * meters of meter_file (NULL: none) together, as the config module builds it: the config
 * refuses a meter in both, so the lines are those the file does not list. *lines (freed by
 * the caller) points into all. Returns 0, or ENOMEM. A file unreadable now lists nothing. */
int hes_meterlist_lines(const hes_meters_t *all, const char *meter_file, const char ***lines,
                        size_t *n);

/* Copies cfg. A Meter line that is not a valid meter number, or a DCU number that is not one,
 * is HES_METERLIST_EINVAL (err says which). Nothing is read yet. */
hes_meterlist_t *hes_meterlist_new(const hes_meterlist_config_t *cfg, char *err, size_t errlen);
void hes_meterlist_free(hes_meterlist_t *ml);

/* The published list, for readers to pin. Lives as long as ml. */
hes_meterset_t *hes_meterlist_set(hes_meterlist_t *ml);

/* Loads the DCU lists kept in StateDir, once at start. A DCU with no file is unknown until
 * its first refresh. Returns how many lists were loaded; an unreadable or malformed file is
 * skipped (that DCU starts unknown) and the first such problem is described in err. */
size_t hes_meterlist_load_dcus(hes_meterlist_t *ml, char *err, size_t errlen);

/* Once per round: re-reads the MeterFile if it changed. HES_METERLIST_OK: a new list was
 * read (call _update); UNCHANGED; EFILE: the file is unusable, err holds the one line to log
 * (naming the file and the line), and the same problem is not reported again until the file
 * changes. At start, EFILE means there is no list at all: a configuration error. */
hes_meterlist_result_t hes_meterlist_check_file(hes_meterlist_t *ml, char *err, size_t errlen);

/* A DCU refresh: _begin when its readArchive request is made, _entry for each archive entry
 * of its push, _end with ok = the push said success ("00") and the plan neither failed nor
 * timed out. _end returns OK (list replaced, or the same as before), EFAILED (previous list
 * kept) or ESAVE (replaced, but not kept in StateDir: err says why). */
hes_meterlist_result_t hes_meterlist_dcu_begin(hes_meterlist_t *ml, size_t dcu);
void hes_meterlist_dcu_entry(hes_meterlist_t *ml, size_t dcu, const char *dev_addr, size_t len,
                             bool enabled);
hes_meterlist_result_t hes_meterlist_dcu_end(hes_meterlist_t *ml, size_t dcu, bool ok, char *err,
                                             size_t errlen);
size_t hes_meterlist_dcu_count(const hes_meterlist_t *ml);
/* The index of a configured DCU number, or (size_t)-1. */
size_t hes_meterlist_dcu_find(const hes_meterlist_t *ml, const char *dcu);
const char *hes_meterlist_dcu_name(const hes_meterlist_t *ml, size_t dcu);
/* Meters in a DCU's current list; -1 while it is unknown (never read, nothing kept). */
long hes_meterlist_dcu_meters(hes_meterlist_t *ml, size_t dcu);

/* Builds the union of the sources if one changed since the last commit, and prepares it as
 * the next version (see hes_meterset_prepare). OK: *up lists who joins and leaves; act on it
 * (grow per-index state to hes_meterver_capacity(up->next), clear the joiners'), then
 * _commit, forget the leavers, _done. UNCHANGED: same members, nothing prepared. */
hes_meterlist_result_t hes_meterlist_update(hes_meterlist_t *ml, hes_meterset_update_t *up);
void hes_meterlist_commit(hes_meterlist_t *ml, hes_meterset_update_t *up);
/* Drops a prepared update (say, per-index state could not grow); the next _update tries
 * again. */
void hes_meterlist_abort(hes_meterlist_t *ml, hes_meterset_update_t *up);
void hes_meterlist_done(hes_meterlist_t *ml, hes_meterset_update_t *up);

void hes_meterlist_stats(hes_meterlist_t *ml, hes_meterlist_stats_t *out);

/* Heap bytes held: the published version and every source list (the benchmark's figure). */
size_t hes_meterlist_memory(hes_meterlist_t *ml);

#endif
