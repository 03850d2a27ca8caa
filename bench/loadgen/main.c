/*
 * fgload IDENTITY_FILE: reads one job per line on stdin ("kind key=value ..."), runs it, answers one JSON
 * line on stdout ({"ok":true,"result":…,"cpuSeconds":…,"wallSeconds":…} or {"ok":false,"error":…}), the
 * same reply as bench/load-worker.ts. Exits when stdin closes.
 */
#define _GNU_SOURCE
#include "fgload.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* ---------- utilities ---------- */

void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("fgload: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(2);
}

void buf_append(buf_t *b, const void *bytes, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n) cap *= 2;
    b->data = realloc(b->data, cap);
    if (b->data == NULL) die("out of memory");
    b->cap = cap;
  }
  memcpy(b->data + b->len, bytes, n);
  b->len += n;
}

void buf_consume(buf_t *b, size_t n) {
  if (n == 0) return;
  if (n < b->len) memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
}

void buf_free(buf_t *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

void buf_printf(buf_t *b, const char *fmt, ...) {
  char small[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  if (n < (int)sizeof small) {
    buf_append(b, small, (size_t)n);
    return;
  }
  char *big = malloc((size_t)n + 1);
  va_start(ap, fmt);
  vsnprintf(big, (size_t)n + 1, fmt, ap);
  va_end(ap);
  buf_append(b, big, (size_t)n);
  free(big);
}

void buf_json_string(buf_t *b, const char *s) {
  buf_append(b, "\"", 1);
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\') buf_printf(b, "\\%c", ch);
    else if (ch < 0x20) buf_printf(b, "\\u%04x", ch);
    else buf_append(b, s, 1);
  }
  buf_append(b, "\"", 1);
}

uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

double epoch_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec * 1000.0 + (double)(ts.tv_nsec / 1000000);
}

double cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

void tally_add(tally_t *t, const char *key) {
  char trimmed[61];
  snprintf(trimmed, sizeof trimmed, "%s", key); /* 60 characters, like mqtt-load.ts */
  for (int i = 0; i < t->n; i++)
    if (strcmp(t->keys[i], trimmed) == 0) {
      t->counts[i]++;
      return;
    }
  if (t->n == t->cap) {
    t->cap = t->cap ? t->cap * 2 : 8;
    t->keys = realloc(t->keys, sizeof(char *) * (size_t)t->cap);
    t->counts = realloc(t->counts, sizeof(long) * (size_t)t->cap);
  }
  t->keys[t->n] = strdup(trimmed);
  t->counts[t->n++] = 1;
}

void tally_json(buf_t *out, const tally_t *t) {
  buf_append(out, "{", 1);
  for (int i = 0; i < t->n; i++) {
    if (i) buf_append(out, ",", 1);
    buf_json_string(out, t->keys[i]);
    buf_printf(out, ":%ld", t->counts[i]);
  }
  buf_append(out, "}", 1);
}

void tally_free(tally_t *t) {
  for (int i = 0; i < t->n; i++) free(t->keys[i]);
  free(t->keys);
  free(t->counts);
  memset(t, 0, sizeof *t);
}

/* ---------- the job line ---------- */

static int parse_line(char *line, job_args_t *a, char *err, size_t errlen) {
  memset(a, 0, sizeof *a);
  a->concurrency = 20;
  a->inflight = 1;
  char *save = NULL, *tok = strtok_r(line, " \t\r", &save);
  if (tok == NULL) return -1;
  snprintf(a->kind, sizeof a->kind, "%s", tok);
  while ((tok = strtok_r(NULL, " \t\r", &save)) != NULL) {
    char *eq = strchr(tok, '=');
    if (eq == NULL) {
      snprintf(err, errlen, "bad argument '%.40s' (key=value expected)", tok);
      return -1;
    }
    *eq = 0;
    const char *key = tok, *value = eq + 1;
    if (strcmp(key, "host") == 0) {
      snprintf(a->host, sizeof a->host, "%s", value);
      continue;
    }
    char *end;
    long v = strtol(value, &end, 10);
    if (*value == 0 || *end != 0) {
      snprintf(err, errlen, "bad number for %s: '%.40s'", key, value);
      return -1;
    }
    struct { const char *name; long *field; } fields[] = {
      {"port", &a->port}, {"from", &a->from}, {"to", &a->to}, {"count", &a->count}, {"concurrency", &a->concurrency},
      {"resume", &a->resume}, {"qos", &a->qos}, {"durationMs", &a->durationMs}, {"payloadBytes", &a->payloadBytes},
      {"inflight", &a->inflight}, {"rate", &a->rate}, {"baseMs", &a->baseMs}, {"capMs", &a->capMs},
      {"maxAttempts", &a->maxAttempts}, {"timeoutMs", &a->timeoutMs},
    };
    size_t i;
    for (i = 0; i < sizeof fields / sizeof fields[0]; i++)
      if (strcmp(fields[i].name, key) == 0) break;
    if (i == sizeof fields / sizeof fields[0]) {
      snprintf(err, errlen, "unknown key '%.40s'", key);
      return -1;
    }
    *fields[i].field = v;
  }
  return 0;
}

static void reply_error(const char *error) {
  buf_t out = {0};
  buf_printf(&out, "{\"ok\":false,\"error\":");
  buf_json_string(&out, error);
  buf_printf(&out, "}\n");
  fwrite(out.data, 1, out.len, stdout);
  fflush(stdout);
  buf_free(&out);
}

static void reply_ok(const buf_t *result, double cpu, double wall) {
  buf_t out = {0};
  buf_printf(&out, "{\"ok\":true,\"result\":");
  buf_append(&out, result->data, result->len);
  buf_printf(&out, ",\"cpuSeconds\":%.6f,\"wallSeconds\":%.6f}\n", cpu, wall);
  fwrite(out.data, 1, out.len, stdout);
  fflush(stdout);
  buf_free(&out);
}

/* ---------- the loop ---------- */

static int stdin_marker;

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: fgload IDENTITY_FILE   (jobs on stdin, one JSON reply per job on stdout; see README.md)\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max; /* 10,000+ sockets: as many as the hard limit allows */
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  net_init();
  identities_load(argv[1]);

  fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
  struct epoll_event sev = {.events = EPOLLIN, .data.ptr = &stdin_marker};
  int stdin_polled = epoll_ctl(g_epoll, EPOLL_CTL_ADD, 0, &sev) == 0;
  buf_t lines = {0};
  int stdin_open = 1, running = 0;
  double job_cpu = 0;
  uint64_t job_started = 0, next_scan = 0;
  struct epoll_event events[512];

  while (stdin_open || running) {
    uint64_t now = now_ns();
    uint64_t wake = next_scan;
    uint64_t w = job_wake();
    if (running && w < wake) wake = w;
    w = fleet_wake();
    if (w < wake) wake = w;
    int timeout = wake <= now ? 0 : (int)((wake - now + 999999) / 1000000);
    if (!stdin_polled && !running) timeout = timeout > 10 ? 10 : timeout; /* stdin is a file: poll it */
    int n = epoll_wait(g_epoll, events, 512, timeout);
    if (n < 0 && errno != EINTR) die("epoll_wait: %s", strerror(errno));
    int stdin_ready = !stdin_polled;
    for (int i = 0; i < n; i++) {
      if (events[i].data.ptr == &stdin_marker) stdin_ready = 1;
      else conn_event(events[i].data.ptr, events[i].events);
    }
    if (stdin_ready && stdin_open) {
      char chunk[4096];
      ssize_t r;
      while ((r = read(0, chunk, sizeof chunk)) > 0) buf_append(&lines, chunk, (size_t)r);
      if (r == 0) {
        stdin_open = 0;
        if (stdin_polled) epoll_ctl(g_epoll, EPOLL_CTL_DEL, 0, NULL);
      }
    }
    now = now_ns();
    fleet_timers(now);
    if (now >= next_scan) {
      conns_scan(now);
      next_scan = now + 100000000ull;
    }
    if (running) {
      buf_t result = {0};
      char err[512] = "";
      int failed = 0;
      if (job_tick(now_ns(), &result, err, sizeof err, &failed)) {
        running = 0;
        if (failed) reply_error(err);
        else reply_ok(&result, cpu_seconds() - job_cpu, (double)(now_ns() - job_started) / 1e9);
        buf_free(&result);
      }
    }
    while (!running) {
      uint8_t *nl = lines.len ? memchr(lines.data, '\n', lines.len) : NULL;
      if (nl == NULL) break;
      *nl = 0;
      char line[2048], err[512] = "";
      snprintf(line, sizeof line, "%s", (char *)lines.data);
      buf_consume(&lines, (size_t)(nl - lines.data) + 1);
      job_args_t a;
      if (parse_line(line, &a, err, sizeof err) < 0) {
        if (err[0]) reply_error(err);
        continue; /* blank line: nothing to answer */
      }
      job_cpu = cpu_seconds();
      job_started = now_ns();
      if (job_start(&a, err, sizeof err) < 0) reply_error(err);
      else running = 1;
    }
  }
  fleet_release();
  return 0;
}
