/* commands.c: hesctl's commands: read (readSingle, or frozen items as history), history
 * pages, relay (with a confirmation), and the DCU archive (list, add, remove). */
#include "config.h"

#include "hesctl.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* ---- commands -------------------------------------------------------------------------------- */

static int cmp_rows(const void *a, const void *b) {
  const row_t *x = a, *y = b;
  if (x->meter != y->meter)
    return x->meter < y->meter ? -1 : 1;
  if (x->item != y->item)
    return x->item < y->item ? -1 : 1;
  if (x->ts_ms != y->ts_ms)
    return x->ts_ms < y->ts_ms ? -1 : 1;
  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* The freeze times of dailyBilling (local midnights) or monthlyBilling (local midnights of
 * the 1st) in [from, to], in seconds; the load profile's interval is the HES's business, so
 * 0 for it. Returns how many, at most max. */
static size_t freeze_times(const ctl_t *c, int cgcode, int64_t *out, size_t max) {
  struct tm a = {0}, b = {0};
  if ((cgcode != 1 && cgcode != 2) || strptime(c->from, "%Y-%m-%d %H:%M:%S", &a) == NULL ||
      strptime(c->to, "%Y-%m-%d %H:%M:%S", &b) == NULL)
    return 0;
  hes_tz_civil_t ca = {a.tm_year + 1900, a.tm_mon + 1, a.tm_mday, a.tm_hour, a.tm_min, a.tm_sec};
  hes_tz_civil_t cb = {b.tm_year + 1900, b.tm_mon + 1, b.tm_mday, b.tm_hour, b.tm_min, b.tm_sec};
  int64_t start, end;
  if (!hes_tz_local_to_utc(c->tz, &ca, &start) || !hes_tz_local_to_utc(c->tz, &cb, &end))
    return 0;
  /* The plugin's calendar (backfill): the freeze times at or before `to`, back to `from`. */
  size_t n = 0;
  for (int64_t t = hes_backfill_floor((hes_backfill_kind_t)cgcode, c->tz, end);
       t >= start && n < max; t = hes_backfill_floor((hes_backfill_kind_t)cgcode, c->tz, t - 1))
    out[n++] = t;
  for (size_t i = 0; i < n / 2; i++) { /* oldest first */
    int64_t x = out[i];
    out[i] = out[n - 1 - i];
    out[n - 1 - i] = x;
  }
  return n;
}

static row_t *add_missing_row(ctl_t *c, size_t meter, size_t item, int64_t ts_ms) {
  row_t *row = row_new(c);
  if (row == NULL)
    return NULL;
  row->meter = (uint32_t)meter;
  row->item = item;
  row->ts_ms = ts_ms;
  row->status = "missing";
  return row;
}

/* Missing rows: per meter and item, or for billing items per meter and freeze time, so the
 * operator sees which days a meter lacks. Rows must not be sorted yet. */
static void add_missing(ctl_t *c) {
  int64_t times[400]; /* half a year of days */
  for (size_t it = 0; it < (c->op == OP_READ ? c->nitems : 1); it++) {
    size_t nt = 0;
    if (c->op == OP_READ && c->items[it]->category == HES_ITEM_COMPOSITE)
      nt = freeze_times(c, c->items[it]->cgcode, times, sizeof(times) / sizeof(times[0]));
    bool *seen = nt > 0 ? calloc(c->nmeters * nt, sizeof(bool)) : NULL;
    if (seen != NULL) {
      size_t rows = c->nrows;
      for (size_t i = 0; i < rows; i++) {
        const row_t *r = &c->rows[i];
        if (r->item != it)
          continue;
        for (size_t t = 0; t < nt; t++)
          if (times[t] * 1000 == r->ts_ms)
            seen[r->meter * nt + t] = true;
      }
      for (size_t m = 0; m < c->nmeters; m++)
        for (size_t t = 0; t < nt; t++)
          if (!seen[m * nt + t] && add_missing_row(c, m, it, times[t] * 1000) == NULL)
            break;
      free(seen);
      continue;
    }
    for (size_t m = 0; m < c->nmeters; m++)
      if (!c->answered[it * c->nmeters + m] && add_missing_row(c, m, it, -1) == NULL)
        return;
  }
}

static void format_time(const ctl_t *c, int64_t ts_ms, char *buf, size_t len) {
  if (ts_ms < 0 || !hes_tz_format(c->tz, ts_ms / 1000, buf, len))
    snprintf(buf, len, "?");
}

/* Prints the readings (read and history) and sets the exit code from them. */
static void print_readings(ctl_t *c) {
  bool frozen = false;
  for (size_t i = 0; i < c->nitems; i++)
    frozen |= c->items[i]->category == HES_ITEM_COMPOSITE;
  add_missing(c);
  qsort(c->rows, c->nrows, sizeof(*c->rows), cmp_rows);
  static const col_t cols[] = {{"meter", true}, {"time", true},    {"timestamp_ms", false},
                               {"item", true},  {"channel", true}, {"value", true},
                               {"unit", true},  {"status", true},  {"latency_ms", false}};
  col_t shown[9];
  memcpy(shown, cols, sizeof(cols));
  shown[4].table = frozen;
  out_t o = {.cols = shown, .ncols = 9};
  for (size_t i = 0; i < c->nrows; i++) {
    const row_t *r = &c->rows[i];
    const hes_item_t *item = c->items[r->item];
    bool missing = strcmp(r->status, "missing") == 0;
    if (strcmp(r->status, "ok") != 0)
      worst(c, EXIT_SOME_FAILED);
    out_cell(&o, J_STR, "%s", c->meter_list[r->meter]);
    if (r->ts_ms < 0) {
      out_cell(&o, J_NULL, "%s", "");
      out_cell(&o, J_NULL, "%s", "");
    } else {
      char t[HES_TZ_FORMAT_SIZE];
      format_time(c, r->ts_ms, t, sizeof(t));
      out_cell(&o, J_STR, "%s", t);
      out_cell(&o, J_NUM, "%" PRId64, r->ts_ms);
    }
    out_cell(&o, J_STR, "%s", item->name);
    if (r->channel != 0) {
      const hes_item_t *ch = hes_item_by_cgcode(r->channel);
      if (ch != NULL)
        out_cell(&o, J_STR, "%s", ch->name);
      else
        out_cell(&o, J_STR, "%d", r->channel);
    } else {
      out_cell(&o, J_NULL, "%s", "");
    }
    if (missing) {
      out_cell(&o, J_NULL, "%s", "");
      out_cell(&o, J_NULL, "%s", "");
    } else {
      out_cell(&o, r->number ? J_NUM : J_STR, "%s", r->value);
      out_cell(&o, J_STR, "%s", r->unit);
    }
    out_cell(&o, J_STR, "%s", r->status);
    if (r->latency >= 0)
      out_cell(&o, J_NUM, "%.1f", r->latency * 1e3);
    else
      out_cell(&o, J_NULL, "%s", "");
  }
  if (o.oom) {
    errx_("out of memory");
    worst(c, EXIT_SOME_FAILED);
  } else {
    out_print(&o, c->opt.fmt, stdout);
  }
  out_free(&o);
}

static int alloc_answered(ctl_t *c, size_t n) {
  c->answered = calloc(n ? n : 1, sizeof(bool));
  if (c->answered == NULL) {
    errx_("out of memory");
    return -1;
  }
  return 0;
}

int cmd_read(ctl_t *c) {
  if (alloc_answered(c, c->nitems * c->nmeters) != 0)
    return EXIT_SOME_FAILED;
  int rc = session_mqtt(c);
  if (rc != EXIT_ALL_OK)
    return rc;
  size_t batch = (size_t)c->opt.batch_size;
  bool stop = false;
  for (size_t it = 0; it < c->nitems && !stop && !interrupted; it++) {
    for (size_t first = 0; first < c->nmeters && !stop && !interrupted; first += batch) {
      size_t n = c->nmeters - first < batch ? c->nmeters - first : batch;
      hes_api_error_t err;
      hes_api_result_t r = plan_request(c, OP_READ, it, first, n, &err);
      if (r != HES_API_OK) {
        report_api_error(&err);
        worst(c, r == HES_API_EINVAL ? EXIT_USAGE : EXIT_HES);
        stop = true;
        break;
      }
    }
  }
  wait_pushes(c);
  session_end(c);
  if (c->nplans == 0)
    return c->rc; /* the HES refused the first request: nothing to show */
  print_readings(c);
  return c->rc;
}

int cmd_history(ctl_t *c) {
  if (alloc_answered(c, c->nitems * c->nmeters) != 0)
    return EXIT_SOME_FAILED;
  int rc = session_open(c, false);
  if (rc != EXIT_ALL_OK)
    return rc;
  bool tty = isatty(STDERR_FILENO);
  size_t batch = (size_t)c->opt.batch_size;
  bool stop = false;
  for (size_t it = 0; it < c->nitems && !stop && !interrupted; it++) {
    const hes_item_t *item = c->items[it];
    bool frozen = item->category == HES_ITEM_COMPOSITE;
    for (size_t first = 0; first < c->nmeters && !stop && !interrupted; first += batch) {
      size_t n = c->nmeters - first < batch ? c->nmeters - first : batch;
      hes_api_error_t err;
      uint32_t batch_idx[CTL_BATCH_MAX];
      for (size_t i = 0; i < n; i++)
        batch_idx[i] = (uint32_t)(first + i);
      hes_api_history_t *h = hes_session_history_new(c->client, frozen, batch_idx, n, item->cgcode,
                                                     c->from, c->to, (int)c->opt.page_size, &err);
      if (h == NULL) {
        report_api_error(&err);
        worst(c, err.kind == HES_API_EINVAL ? EXIT_USAGE : EXIT_HES);
        stop = true;
        break;
      }
      size_t pages = 0, got = 0;
      for (;;) {
        hes_push_t page;
        hes_api_result_t r = hes_session_history_next(c->client, h, &page, &err);
        if (r != HES_API_OK) {
          if (tty)
            fputs("\r\033[K", stderr);
          report_api_error(&err);
          worst(c, EXIT_HES);
          stop = true;
          break;
        }
        if (page.entries == 0 || interrupted)
          break;
        pages++;
        got += page.entries;
        if (page.skipped > 0)
          errx_("warning: %s history: skipped %zu malformed entr%s: %s", item->name, page.skipped,
                page.skipped == 1 ? "y" : "ies", page.skipped_reason);
        for (size_t i = 0; i < page.count; i++) {
          const hes_push_reading_t *rd = &page.readings[i];
          uint32_t idx = hes_meters_find(c->meters, rd->dev_addr, rd->dev_addr_len);
          if (idx == HES_METER_NONE || idx < first || idx >= first + n)
            continue;
          const hes_item_t *conv = item;
          if (frozen) {
            conv = hes_item_by_cgcode(rd->cgcode);
            if (conv != NULL && conv->category != HES_ITEM_SINGLE)
              conv = NULL;
            if (conv == NULL && !c->opt.raw)
              continue;
          } else if (rd->cgcode != 0 && rd->cgcode != item->cgcode) {
            continue;
          }
          row_t *row = row_new(c);
          if (row == NULL)
            break;
          row->meter = idx;
          row->item = it;
          row->ts_ms = rd->timestamp_ms;
          row->channel = frozen ? rd->cgcode : 0;
          set_reading(c, row, conv, rd->value, rd->unit);
          c->answered[it * c->nmeters + idx] = true;
        }
        if (tty) {
          long total = hes_api_history_total(h);
          fprintf(stderr, "\r\033[Khesctl: %s history: page %zu, %zu of %ld entries", item->name,
                  pages, got, total);
          fflush(stderr);
        }
      }
      hes_api_history_free(h);
    }
  }
  if (tty)
    fputs("\r\033[K", stderr);
  if (stop && c->nrows == 0)
    return c->rc; /* the HES refused: nothing to show */
  print_readings(c);
  return c->rc;
}

static int confirm(const ctl_t *c) {
  if (c->opt.yes)
    return EXIT_ALL_OK;
  if (!isatty(STDIN_FILENO)) {
    errx_("relay %s: refusing without --yes: stdin is not a terminal to confirm on",
          c->control_mode == 1 ? "open" : "close");
    return EXIT_USAGE;
  }
  fprintf(stderr, "%s the breaker of %zu meter%s (%s%s)? Type yes to confirm: ",
          c->control_mode == 1 ? "Open (disconnect)" : "Close (reconnect)", c->nmeters,
          c->nmeters == 1 ? "" : "s", c->meter_list[0], c->nmeters > 1 ? ", ..." : "");
  fflush(stderr);
  char line[64];
  if (fgets(line, sizeof(line), stdin) == NULL)
    line[0] = '\0';
  line[strcspn(line, "\r\n")] = '\0';
  if (strcmp(line, "yes") != 0) {
    errx_("not confirmed: nothing sent");
    return EXIT_USAGE;
  }
  return EXIT_ALL_OK;
}

int cmd_relay(ctl_t *c) {
  int rc = confirm(c);
  if (rc != EXIT_ALL_OK)
    return rc;
  if (alloc_answered(c, c->nmeters) != 0)
    return EXIT_SOME_FAILED;
  rc = session_mqtt(c);
  if (rc != EXIT_ALL_OK)
    return rc;
  size_t batch = (size_t)c->opt.batch_size;
  for (size_t first = 0; first < c->nmeters && !interrupted; first += batch) {
    size_t n = c->nmeters - first < batch ? c->nmeters - first : batch;
    hes_api_error_t err;
    if (plan_request(c, OP_RELAY, 0, first, n, &err) != HES_API_OK) {
      report_api_error(&err);
      worst(c, EXIT_HES);
      break;
    }
  }
  wait_pushes(c);
  session_end(c);
  if (c->nplans == 0)
    return c->rc; /* the HES refused the first request: nothing to show */
  add_missing(c);
  qsort(c->rows, c->nrows, sizeof(*c->rows), cmp_rows);
  static const col_t cols[] = {{"meter", true}, {"action", true}, {"outcome", true}};
  out_t o = {.cols = cols, .ncols = 3};
  for (size_t i = 0; i < c->nrows; i++) {
    if (strcmp(c->rows[i].status, "ok") != 0)
      worst(c, EXIT_SOME_FAILED);
    out_cell(&o, J_STR, "%s", c->meter_list[c->rows[i].meter]);
    out_cell(&o, J_STR, "%s", c->control_mode == 1 ? "open" : "close");
    out_cell(&o, J_STR, "%s", c->rows[i].status);
  }
  out_print(&o, c->opt.fmt, stdout);
  out_free(&o);
  return c->rc;
}

int cmd_dcu(ctl_t *c) {
  int rc = session_mqtt(c);
  if (rc != EXIT_ALL_OK)
    return rc;
  hes_api_error_t err;
  hes_api_result_t r = plan_request(c, c->op, 0, 0, 0, &err);
  if (r != HES_API_OK) {
    report_api_error(&err);
    session_end(c);
    return r == HES_API_EINVAL ? EXIT_USAGE : EXIT_HES;
  }
  wait_pushes(c);
  session_end(c);
  const plan_t *pl = &c->plans_made[0];
  if (c->op == OP_DCU_LIST) {
    static const col_t cols[] = {{"dcu", true},
                                 {"meter", true},
                                 {"enabled", true},
                                 {"comm_type", true},
                                 {"module_next", true}};
    out_t o = {.cols = cols, .ncols = 5};
    for (size_t i = 0; i < c->nrows; i++) {
      const row_t *row = &c->rows[i];
      out_cell(&o, J_STR, "%s", c->dcu);
      out_cell(&o, J_STR, "%s", row->dev);
      out_cell(&o, J_BOOL, "%s", row->enabled ? "true" : "false");
      out_cell(&o, J_STR, "%s", row->comm_type);
      out_cell(&o, J_STR, "%s", row->module_next);
    }
    out_print(&o, c->opt.fmt, stdout);
    out_free(&o);
    if (pl->done && pl->failed) {
      errx_("dcu list %s: the HES reports the operation failed", c->dcu);
      worst(c, EXIT_SOME_FAILED);
    }
    return c->rc;
  }
  const char *outcome = !pl->done ? "missing" : pl->failed ? "failed" : "ok";
  static const col_t cols[] = {{"dcu", true}, {"meter", true}, {"action", true}, {"outcome", true}};
  out_t o = {.cols = cols, .ncols = 4};
  for (size_t i = 0; i < c->nmeters; i++) {
    out_cell(&o, J_STR, "%s", c->dcu);
    out_cell(&o, J_STR, "%s", c->meter_list[i]);
    out_cell(&o, J_STR, "%s", c->op == OP_DCU_ADD ? "add" : "remove");
    out_cell(&o, J_STR, "%s", outcome);
  }
  out_print(&o, c->opt.fmt, stdout);
  out_free(&o);
  if (strcmp(outcome, "ok") != 0)
    worst(c, EXIT_SOME_FAILED);
  return c->rc;
}
