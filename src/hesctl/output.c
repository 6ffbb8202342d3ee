/* output.c: one table of results, printed aligned for a terminal, as CSV or as JSON. Text
 * from the network is sanitised before it reaches the operator's terminal. */
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

/* Control bytes and non-ASCII from the network would reach the operator's terminal. */
void sanitize(char *dst, size_t dstlen, const char *src, size_t srclen) {
  size_t n = 0;
  for (size_t i = 0; i < srclen && src[i] != '\0' && n + 1 < dstlen; i++) {
    unsigned char ch = (unsigned char)src[i];
    dst[n++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
  }
  dst[n] = '\0';
}

void out_cell(out_t *o, jtype_t type, const char *fmt, ...) {
  if (o->oom)
    return;
  if (o->ncells == o->cap) {
    size_t cap = o->cap ? o->cap * 2 : 64;
    cell_t *nc = realloc(o->cells, cap * sizeof(*nc));
    if (nc == NULL) {
      o->oom = true;
      return;
    }
    o->cells = nc;
    o->cap = cap;
  }
  char *text = NULL;
  va_list ap;
  va_start(ap, fmt);
  int r = vasprintf(&text, fmt, ap);
  va_end(ap);
  if (r < 0) {
    o->oom = true;
    return;
  }
  o->cells[o->ncells].type = type;
  o->cells[o->ncells].text = text;
  o->ncells++;
}

void out_free(out_t *o) {
  for (size_t i = 0; i < o->ncells; i++)
    free(o->cells[i].text);
  free(o->cells);
}

static void print_json_string(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\')
      fprintf(f, "\\%c", ch);
    else if (ch < 0x20)
      fprintf(f, "\\u%04x", ch);
    else
      fputc(ch, f);
  }
  fputc('"', f);
}

static void print_csv_field(FILE *f, const char *s) {
  if (strpbrk(s, ",\"\r\n") == NULL && s[0] != ' ' && (s[0] == '\0' || s[strlen(s) - 1] != ' ')) {
    fputs(s, f);
    return;
  }
  fputc('"', f);
  for (; *s; s++) {
    if (*s == '"')
      fputc('"', f);
    fputc(*s, f);
  }
  fputc('"', f);
}

void out_print(const out_t *o, fmt_t fmt, FILE *f) {
  size_t rows = o->ncols ? o->ncells / o->ncols : 0;
  if (fmt == FMT_JSON) {
    fputs("[", f);
    for (size_t r = 0; r < rows; r++) {
      fputs(r ? ",\n  {" : "\n  {", f);
      for (size_t c = 0; c < o->ncols; c++) {
        const cell_t *cell = &o->cells[r * o->ncols + c];
        if (c)
          fputc(',', f);
        print_json_string(f, o->cols[c].name);
        fputc(':', f);
        if (cell->type == J_STR)
          print_json_string(f, cell->text);
        else if (cell->type == J_NULL)
          fputs("null", f);
        else
          fputs(cell->text, f);
      }
      fputc('}', f);
    }
    fputs(rows ? "\n]\n" : "]\n", f);
    return;
  }
  if (fmt == FMT_CSV) {
    for (size_t c = 0; c < o->ncols; c++) {
      if (c)
        fputc(',', f);
      fputs(o->cols[c].name, f);
    }
    fputs("\r\n", f);
    for (size_t r = 0; r < rows; r++) {
      for (size_t c = 0; c < o->ncols; c++) {
        const cell_t *cell = &o->cells[r * o->ncols + c];
        if (c)
          fputc(',', f);
        print_csv_field(f, cell->type == J_NULL ? "" : cell->text);
      }
      fputs("\r\n", f);
    }
    return;
  }
  size_t width[32] = {0};
  size_t last = 0;
  for (size_t c = 0; c < o->ncols && c < 32; c++) {
    if (!o->cols[c].table)
      continue;
    last = c;
    width[c] = strlen(o->cols[c].name);
    for (size_t r = 0; r < rows; r++) {
      const cell_t *cell = &o->cells[r * o->ncols + c];
      size_t w = cell->type == J_NULL ? 1 : strlen(cell->text);
      if (w > width[c])
        width[c] = w;
    }
  }
  for (size_t r = 0; r <= rows; r++) {
    bool first = true;
    for (size_t c = 0; c < o->ncols && c < 32; c++) {
      if (!o->cols[c].table)
        continue;
      char head[64];
      const char *text;
      if (r == 0) {
        size_t k = 0;
        for (; o->cols[c].name[k] && k + 1 < sizeof(head); k++)
          head[k] = (char)(o->cols[c].name[k] >= 'a' && o->cols[c].name[k] <= 'z'
                               ? o->cols[c].name[k] - 'a' + 'A'
                               : o->cols[c].name[k]);
        head[k] = '\0';
        text = head;
      } else {
        const cell_t *cell = &o->cells[(r - 1) * o->ncols + c];
        text = cell->type == J_NULL || cell->text[0] == '\0' ? "-" : cell->text;
      }
      if (!first)
        fputs("  ", f);
      first = false;
      if (c == last)
        fputs(text, f);
      else
        fprintf(f, "%-*s", (int)width[c], text);
    }
    fputc('\n', f);
  }
}
