#define _POSIX_C_SOURCE 200809L
#include "storage_files.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char state_dir[1024];

const char *fg_store_path(const char *name, char *buf, size_t size) {
  snprintf(buf, size, "%s/%s", state_dir, name);
  return buf;
}

int fg_store_open(const char *dir) {
  if (strlen(dir) >= sizeof state_dir - 64) return -1;
  snprintf(state_dir, sizeof state_dir, "%s", dir);
  char path[1024];
  snprintf(path, sizeof path, "%s", dir);
  for (char *p = path + 1; *p; p++) { /* mkdir -p */
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(path, 0700) != 0 && errno != EEXIST) return -1;
    *p = '/';
  }
  if (mkdir(path, 0700) != 0 && errno != EEXIST) return -1;
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode) ? 0 : -1;
}

int fg_store_exists(const char *name) {
  char path[1100];
  return access(fg_store_path(name, path, sizeof path), F_OK) == 0;
}

char *fg_read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 4096, len = 0;
  char *data = malloc(cap);
  while (data) {
    size_t n = fread(data + len, 1, cap - len - 1, f);
    len += n;
    if (n == 0) break;
    if (cap - len - 1 == 0) {
      char *bigger = realloc(data, cap * 2);
      if (!bigger) { free(data); data = NULL; break; }
      data = bigger;
      cap *= 2;
    }
  }
  fclose(f);
  if (data) data[len] = '\0';
  return data;
}

char *fg_store_read(const char *name) {
  char path[1100];
  return fg_read_file(fg_store_path(name, path, sizeof path));
}

static int sync_dir(void) {
  int fd = open(state_dir, O_RDONLY);
  if (fd < 0) return -1;
  int rc = fsync(fd);
  close(fd);
  return rc;
}

int fg_store_write(const char *name, const char *data, int secret) {
  char path[1100], tmp[1200];
  fg_store_path(name, path, sizeof path);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  unlink(tmp);
  /* The mode is set at creation: a key is never readable by others, not even for a moment. */
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, secret ? 0600 : 0644);
  if (fd < 0) return -1;
  size_t len = strlen(data), off = 0;
  while (off < len) {
    ssize_t n = write(fd, data + off, len - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) { close(fd); unlink(tmp); return -1; }
    off += (size_t)n;
  }
  if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) { unlink(tmp); return -1; }
  return sync_dir();
}

int fg_store_rename(const char *from, const char *to) {
  char a[1100], b[1100];
  if (rename(fg_store_path(from, a, sizeof a), fg_store_path(to, b, sizeof b)) != 0) return -1;
  return sync_dir();
}

int fg_store_remove(const char *name) {
  char path[1100];
  return unlink(fg_store_path(name, path, sizeof path)) == 0 || errno == ENOENT ? 0 : -1;
}
