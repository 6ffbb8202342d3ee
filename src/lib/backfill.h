/* backfill: the bookkeeping of the seed's 4.1 loop for one server and one frozen item
 * (dailyBilling, monthlyBilling or loadProfile): which freeze times are due, which meters
 * are still missing for each, what arrived (exactly once), in which order it may be
 * dispatched, and what has been dispatched, persisted in a small state file so that a restart
 * neither repeats nor skips a meter x period.
 *
 * No I/O but the state file; no HTTP, no collectd. The plugin drives it:
 *
 *   every round:  hes_backfill_advance(b, now)
 *                 hes_backfill_due() / hes_backfill_next_missing() -> historyFrozen, then
 *                 readFrozen for what is still missing (every RetryInterval)
 *   any thread:   hes_backfill_record() for each meter x freeze time from a history page or
 *                 a push (values are queued, not dispatched)
 *   every round:  hes_backfill_take() -> dispatch those values, then hes_backfill_save()
 *
 * Dispatch order: collectd's write threads may reorder two values of one identifier that are
 * dispatched back to back, so take() hands out at most one period per meter per call (the
 * oldest queued), and only one newer than the last period dispatched for that meter. A period
 * that arrives after a newer one of its meter was dispatched would be "value too old" in
 * collectd: it is counted as collected and its values are dropped (stats.dropped_late).
 * Back to back also loses values outright: collectd 5.12's csv plugin creates a new file with
 * stat() then fopen("w"), so a second write thread can truncate the first one's row. Calls
 * are therefore spaced: a take within take_gap of the last one that handed something out
 * hands out nothing, however often the caller asks.
 *
 * "Collected" (persisted) means dispatched: take() marks what it hands out, save() writes
 * it. A period recorded but not yet taken is lost on a crash and fetched again after the
 * restart (never skipped); a period taken and dispatched but not yet saved is dispatched again
 * after a crash in that window: the same value at the same time once more (rrdtool refuses it,
 * time-series databases overwrite the point with itself; nothing is lost or changed). Call
 * save() right after dispatching to keep that window short.
 *
 * Memory: two bits per meter x freeze time (received, collected) plus the queued values
 * (HES_BACKFILL_ENTRY_SIZE bytes each, at most pending_max of them).
 *
 * Thread-safe: record() may run on the MQTT thread while the read thread does the rest. One
 * internal mutex, held for bitmap and queue work only; save() formats the file under it and
 * writes it without it. */
#ifndef HES_BACKFILL_H
#define HES_BACKFILL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "meters.h"
#include "tz.h"

typedef enum {
  HES_BACKFILL_DAILY = 1,   /* cgcode 1, dailyBilling: local midnight */
  HES_BACKFILL_MONTHLY = 2, /* cgcode 2, monthlyBilling: local midnight of the 1st */
  HES_BACKFILL_PROFILE = 3, /* cgcode 3, loadProfile: every 15 minutes of local time (a meter
                               with a longer profile interval leaves the others missing) */
} hes_backfill_kind_t;

#define HES_BACKFILL_PROFILE_STEP 900  /* seconds between load profile freeze times */
#define HES_BACKFILL_PERIODS_MAX  4096 /* BackfillPeriods at most */
#define HES_BACKFILL_SLOTS_MAX    8192 /* freeze times tracked at once (window + not given up) */
#define HES_BACKFILL_VALUES_MAX   8    /* channel values of one meter x period */
#define HES_BACKFILL_ANY          INT64_MIN /* next_missing: missing in any due freeze time */

/* One channel value, converted by the plugin (SI units); cgcode tells it the item. */
typedef struct {
  int cgcode;
  double value;
} hes_backfill_value_t;

/* One meter x period to dispatch, from hes_backfill_take. */
typedef struct {
  int64_t freeze_time; /* UTC seconds: the value's time */
  uint32_t meter;      /* index into the server's meter list */
  uint32_t n;          /* values used */
  hes_backfill_value_t values[HES_BACKFILL_VALUES_MAX];
} hes_backfill_entry_t;

#define HES_BACKFILL_ENTRY_SIZE sizeof(hes_backfill_entry_t)

typedef struct {
  const char *server;         /* the <Server> name, kept in the state file (no newline) */
  hes_backfill_kind_t kind;   /* also the item's cgcode */
  const hes_meters_t *meters; /* sealed, may be empty; must outlive the backfill */
  const hes_tz_t *tz;         /* the HES's zone; must outlive the backfill */
  unsigned periods;           /* BackfillPeriods: 1..HES_BACKFILL_PERIODS_MAX */
  int64_t give_up;            /* GiveUpAfter, seconds; 0: (periods + 1) nominal periods
                                 (a day, 31 days, 15 minutes) */
  const char *state_path;     /* NULL: nothing persisted */
  size_t pending_max;         /* queued periods at most; 0: 2 x meters + 1024, following the
                                 list through hes_backfill_set_meters */
  bool hold_gaps;             /* take() holds a period back while an older due period of the
                                 same meter is neither received nor given up (the plugin sets
                                 it: every period goes out, in order); false: the newest may go
                                 first and an older one arriving later is dropped as LATE */
  double take_gap;            /* seconds on take()'s clock: a take sooner than this after the
                                 last one that handed something out hands out nothing (the
                                 plugin: half its Interval); 0: every call may hand out */
} hes_backfill_config_t;

typedef enum {
  HES_BACKFILL_NEW = 0,   /* queued for dispatch */
  HES_BACKFILL_DUPLICATE, /* already received (queued or collected): do not dispatch */
  HES_BACKFILL_LATE,      /* older than a period already dispatched for the meter: counted as
                             collected, values dropped */
  HES_BACKFILL_NOT_DUE,   /* not a freeze time being chased (off the grid: check TimeZone;
                             given up; before the window; not yet in it) */
  HES_BACKFILL_FULL,      /* pending_max reached: not kept, will be asked for again */
  HES_BACKFILL_EINVAL,    /* meter index out of range, too many values, NULL arguments */
} hes_backfill_record_t;

/* What loading the state file found. */
typedef enum {
  HES_BACKFILL_STATE_NONE = 0, /* no file (or no state_path): starting empty */
  HES_BACKFILL_STATE_OK,       /* loaded; the meter list is the same */
  HES_BACKFILL_STATE_CHANGED,  /* loaded; meters were added or removed since (mapped by number) */
  HES_BACKFILL_STATE_CORRUPT,  /* unreadable or malformed: renamed <path>.corrupt */
  HES_BACKFILL_STATE_FOREIGN,  /* another server, item or meter list: renamed <path>.foreign */
} hes_backfill_state_t;

typedef struct {
  /* now, over the freeze times being chased (not given up), in meter x period: */
  uint64_t expected;   /* meters x freeze times */
  uint64_t collected;  /* dispatched (or dropped as late) */
  uint64_t pending;    /* received, waiting for take() */
  uint64_t missing;    /* neither: still to be fetched (expected - collected - pending) */
  size_t freeze_times; /* freeze times being chased */
  /* counters since hes_backfill_new: */
  uint64_t given_up;     /* meter x periods abandoned after GiveUpAfter */
  uint64_t dropped_late; /* HES_BACKFILL_LATE records */
  uint64_t duplicates;   /* HES_BACKFILL_DUPLICATE records */
  uint64_t not_due;      /* HES_BACKFILL_NOT_DUE records */
  uint64_t full;         /* HES_BACKFILL_FULL records */
  uint64_t dispatched;   /* entries handed out by take() */
} hes_backfill_stats_t;

typedef struct hes_backfill hes_backfill_t;

/* --- freeze times (pure, thread-safe) ------------------------------------------------------ */

/* The latest freeze time at or before t (UTC seconds). Daily: local midnight (or, when DST
 * skips midnight, the instant the day begins); monthly: that of the 1st; profile: the latest
 * instant whose local reading is a multiple of 15 minutes. */
int64_t hes_backfill_floor(hes_backfill_kind_t kind, const hes_tz_t *tz, int64_t t);

/* The n latest freeze times at or before now, oldest first, into out[0..n-1]; the last is
 * hes_backfill_floor(now). They are distinct: a day that did not exist (Samoa, 2011-12-30) is
 * skipped. Returns n, or 0 for a bad kind, n (0 or > HES_BACKFILL_PERIODS_MAX) or out. */
size_t hes_backfill_periods(hes_backfill_kind_t kind, const hes_tz_t *tz, int64_t now, unsigned n,
                            int64_t *out);

/* --- the loop's state ----------------------------------------------------------------------- */

/* The longest GiveUpAfter (seconds) hes_backfill_new accepts for kind and periods: the
 * config module checks it, so a config is refused when read, not at start. */
int64_t hes_backfill_give_up_max(hes_backfill_kind_t kind, unsigned periods);
/* Copies cfg (not meters, tz). Loads the state file if there is one. Returns NULL with err
 * filled on a bad cfg (no server, a newline in it, bad kind, meters NULL, tz NULL,
 * periods 0 or > HES_BACKFILL_PERIODS_MAX, give_up negative) or no memory. Otherwise err is
 * "" or a line to log: why the state file was set aside, or how the meter list changed.
 * hes_backfill_state() tells which. Nothing is due before the first hes_backfill_advance.
 * An empty list is valid (a DCU-only server before its first archive refresh): freeze times
 * are tracked but nothing is due until hes_backfill_set_meters brings meters, which are then
 * missing in every freeze time tracked, as at a first start.
 *
 * State file (text, written by save):
 *   collectd-hes backfill state v1
 *   server <name>
 *   cgcode <1|2|3>
 *   meters <count> <16 hex digits: FNV-1a 64 of the meter numbers, each followed by '\n'>
 *   times <t1> <t2> ...             (UTC seconds, ascending, each on the freeze time grid)
 *   <meter> <hex mask>              (one line per meter with something collected; nibble i
 *                                    holds times i*4..i*4+3, bit 0 first; exact length)
 *   end <number of meter lines>
 * Anything else (a bad header, a line out of place or malformed, a duplicate meter, a time
 * not on the grid of this kind and zone, a missing "end") is corrupt. A different server or
 * cgcode, or meter lines none of which names a configured meter, is foreign. Meters no longer
 * configured are dropped; new ones start missing. */
hes_backfill_t *hes_backfill_new(const hes_backfill_config_t *cfg, char *err, size_t errlen);
void hes_backfill_free(hes_backfill_t *b);

hes_backfill_state_t hes_backfill_state(const hes_backfill_t *b);
const char *hes_backfill_state_string(hes_backfill_state_t s);

/* Slides the window to now: adds the freeze times among the `periods` latest that are not
 * tracked yet, and gives up those with now - freeze_time > give_up (their missing meters
 * are counted in given_up; what was already received for them is still handed out by take).
 * Freeze times that left the window but are not given up are still chased. */
void hes_backfill_advance(hes_backfill_t *b, int64_t now);

/* The freeze times with missing meters, oldest first, at most max of them; returns how many.
 * (Received but not yet dispatched is not missing.) When more than max are due, half of max
 * goes to the newest and the rest rotates over the older ones from call to call, so that
 * neither old silent periods nor new ones are starved (see backfill.c). */
size_t hes_backfill_due(hes_backfill_t *b, int64_t *times, size_t max);

/* The first meter index >= from missing at freeze_time (HES_BACKFILL_ANY: at any due freeze
 * time), or HES_METER_NONE. Iterate with from = previous + 1 to build devList batches. */
uint32_t hes_backfill_next_missing(hes_backfill_t *b, int64_t freeze_time, uint32_t from);

/* Meters missing at freeze_time (HES_BACKFILL_ANY: meters missing at least one). */
size_t hes_backfill_missing_count(hes_backfill_t *b, int64_t freeze_time);

/* How many more periods record() would queue before HES_BACKFILL_FULL: the plugin stops
 * asking for history when this is 0. */
size_t hes_backfill_room(hes_backfill_t *b);

/* One meter x freeze time from a history page or a push (the values already converted).
 * HES_BACKFILL_NEW exactly once per meter x freeze time; see hes_backfill_record_t. */
hes_backfill_record_t hes_backfill_record(hes_backfill_t *b, uint32_t meter, int64_t freeze_time,
                                          const hes_backfill_value_t *values, size_t n);

/* hes_backfill_record for the meter numbered dev[0..len): the lookup and the record under
 * one lock, so a hes_backfill_set_meters on another thread cannot come in between. A meter
 * not in the list is HES_BACKFILL_EINVAL. */
hes_backfill_record_t hes_backfill_record_dev(hes_backfill_t *b, const char *dev, size_t len,
                                              int64_t freeze_time,
                                              const hes_backfill_value_t *values, size_t n);
/* Replaces the meter list (borrowed like cfg->meters; the previous one may be freed once this
 * returns). Meters are matched by number: one in both lists keeps its periods (received,
 * dispatched, queued); a joiner is missing in every freeze time tracked, so it is asked for
 * as at a first start; a leaver's periods and queued values are dropped. Entries handed out
 * by the last take keep the old indices: call it on the thread that takes, between takes.
 * The new list may be empty (every meter left). Returns 0, EINVAL (meters NULL) or ENOMEM
 * (nothing changed). */
int hes_backfill_set_meters(hes_backfill_t *b, const hes_meters_t *meters);

/* Hands out, for each meter with queued periods, the oldest one (at most one per meter),
 * ordered by meter index, and marks them collected. With hold_gaps, a period is held back
 * while an older due period of the same meter is neither received nor given up, so that
 * every period goes out, in time order, instead of the older one being dropped as too old.
 * now is the caller's clock in seconds (the plugin's is monotonic): nothing is handed out
 * within take_gap of the last take that handed something out. *out points to an array owned
 * by b, valid until the next take or free. Returns how many. */
size_t hes_backfill_take(hes_backfill_t *b, double now, const hes_backfill_entry_t **out);

/* Writes the state file if anything changed since the last save (atomically: a temp file,
 * fsync, rename, fsync of the directory). 0 (also when nothing was to be written, or no
 * state_path) or an errno; on error the next call tries again. */
int hes_backfill_save(hes_backfill_t *b);

void hes_backfill_stats(hes_backfill_t *b, hes_backfill_stats_t *out);

/* Approximate heap bytes held, for the memory test and benchmark. */
size_t hes_backfill_memory(hes_backfill_t *b);

const char *hes_backfill_record_string(hes_backfill_record_t r);

#endif
