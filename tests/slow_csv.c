/* slow_csv.c: an LD_PRELOAD shim for e2e_frozen.sh. collectd's csv plugin (5.12) creates a
 * new file with stat() and then fopen("w"), so two write threads that handle one identifier
 * at the same moment can both create it, and the second creation truncates the first one's
 * row. The window is microseconds wide; this shim holds every fopen("w") under a "/csv/"
 * directory for 200 ms, so that two values of one identifier dispatched closer than that
 * (by separate write threads) lose a row every time, and values dispatched further apart
 * never do. Nothing else is changed. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

typedef FILE *(*fopen_fn)(const char *, const char *);

static FILE *slow_open(const char *sym, const char *path, const char *mode) {
  void *p = dlsym(RTLD_NEXT, sym);
  fopen_fn real;
  if (p == NULL)
    return NULL;
  memcpy(&real, &p, sizeof(real)); /* ISO C has no object-to-function pointer cast */
  if (mode != NULL && mode[0] == 'w' && path != NULL && strstr(path, "/csv/") != NULL) {
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 200 * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
      ;
  }
  return real(path, mode);
}

FILE *fopen(const char *path, const char *mode) {
  return slow_open("fopen", path, mode);
}

FILE *fopen64(const char *path, const char *mode) {
  return slow_open("fopen64", path, mode);
}
