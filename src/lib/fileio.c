/* fileio: see fileio.h. */
#include "config.h"

#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int hes_file_read(const char *path, size_t max, char **out, size_t *outlen) {
  struct stat st;
  size_t len = 0;
  int rc = 0;

  if (path == NULL || out == NULL || outlen == NULL)
    return EINVAL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return errno;
  if (fstat(fd, &st) != 0)
    rc = errno;
  else if (!S_ISREG(st.st_mode))
    rc = EINVAL;
  else if ((uint64_t)st.st_size > max)
    rc = EFBIG;
  if (rc != 0) {
    close(fd);
    return rc;
  }
  char *buf = malloc((size_t)st.st_size + 1);
  if (buf == NULL) {
    close(fd);
    return ENOMEM;
  }
  for (;;) {
    ssize_t n = read(fd, buf + len, (size_t)st.st_size + 1 - len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      rc = errno;
      break;
    }
    if (n == 0)
      break;
    len += (size_t)n;
    if (len > (size_t)st.st_size) { /* it grew while we read it */
      rc = EFBIG;
      break;
    }
  }
  close(fd);
  if (rc != 0) {
    free(buf);
    return rc;
  }
  buf[len] = '\0';
  *out = buf;
  *outlen = len;
  return 0;
}

static int fileio__write_all(int fd, const char *p, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return errno;
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

/* fsync of the directory makes the rename itself durable. */
static int fileio__sync_dir(const char *path) {
  char *dir = strdup(path);
  int rc = 0;

  if (dir == NULL)
    return ENOMEM;
  char *slash = strrchr(dir, '/');
  if (slash == NULL)
    strcpy(dir, ".");
  else if (slash == dir)
    slash[1] = '\0';
  else
    *slash = '\0';
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    rc = errno;
  } else {
    if (fsync(fd) != 0 && errno != EINVAL)
      rc = errno;
    close(fd);
  }
  free(dir);
  return rc;
}

int hes_file_write_atomic(const char *path, const char *text, size_t len) {
  if (path == NULL || (text == NULL && len > 0))
    return EINVAL;
  size_t plen = strlen(path);
  char *tmp = malloc(plen + sizeof(".tmp"));
  if (tmp == NULL)
    return ENOMEM;
  memcpy(tmp, path, plen);
  memcpy(tmp + plen, ".tmp", sizeof(".tmp"));
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    int rc = errno;
    free(tmp);
    return rc;
  }
  int rc = fileio__write_all(fd, text, len);
  if (rc == 0 && fsync(fd) != 0)
    rc = errno;
  if (close(fd) != 0 && rc == 0)
    rc = errno;
  if (rc == 0 && rename(tmp, path) != 0)
    rc = errno;
  if (rc != 0)
    unlink(tmp);
  free(tmp);
  if (rc == 0)
    rc = fileio__sync_dir(path);
  return rc;
}
