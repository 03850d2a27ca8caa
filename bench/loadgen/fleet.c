/*
 * The idle fleet (holdIdle in bench/mqtt-load.ts): devices connected once and kept; once armed, a device the
 * broker drops reconnects by itself with full-jitter exponential backoff, the policy of device-sim/backoff.ts
 * (delay before retry k uniform in [0, min(cap, base·2^k)), maxAttempts tries in all). It lives across jobs:
 * the drops happen while the parent restarts the broker, between the `arm` and `settle` jobs.
 */
#define _GNU_SOURCE
#include "fgload.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SEC 1000000000ull
#define MS 1000000ull
#define PING_EVERY (300 * SEC) /* half the 600 s keepalive of the CONNECT */

enum { H_NONE, H_FIRST, H_UP, H_WAITING, H_RETRYING, H_GAVE_UP };

typedef struct {
  conn_t *c;
  int state, attempt;
  uint64_t retry_at;
} held_t;

typedef struct {
  uint64_t at;
  int index;
} timer_t_;

static struct {
  int exists, closing, armed;
  target_t target;
  int from, n, concurrency, next, inflight;
  held_t *dev;
  long connected, failed, back, gave_up, pending;
  long base_ms, cap_ms, max_attempts;
  double last_back_at, first_drop_at;
  tally_t refusals;
  timer_t_ *heap; /* retry times, a binary min-heap; entries whose device moved on are skipped */
  int heap_n, heap_cap;
} F;

static void heap_push(uint64_t at, int index) {
  if (F.heap_n == F.heap_cap) {
    F.heap_cap = F.heap_cap ? F.heap_cap * 2 : 1024;
    F.heap = realloc(F.heap, sizeof(timer_t_) * (size_t)F.heap_cap);
  }
  int i = F.heap_n++;
  while (i > 0 && F.heap[(i - 1) / 2].at > at) {
    F.heap[i] = F.heap[(i - 1) / 2];
    i = (i - 1) / 2;
  }
  F.heap[i] = (timer_t_){at, index};
}

static void heap_pop(void) {
  timer_t_ last = F.heap[--F.heap_n];
  int i = 0;
  for (;;) {
    int child = 2 * i + 1;
    if (child >= F.heap_n) break;
    if (child + 1 < F.heap_n && F.heap[child + 1].at < F.heap[child].at) child++;
    if (F.heap[child].at >= last.at) break;
    F.heap[i] = F.heap[child];
    i = child;
  }
  if (F.heap_n > 0) F.heap[i] = last;
}

static int index_of(const conn_t *c) { return c->dev - F.from; }

static void hold_pump(void) {
  while (F.inflight < F.concurrency && F.next < F.n) {
    int i = F.next++;
    char err[128];
    conn_t *c = conn_open(&F.target, OWN_HOLD, F.from + i, 0, 0, 30 * SEC, 600, err, sizeof err);
    if (c == NULL) {
      F.failed++;
      continue;
    }
    F.dev[i].c = c;
    F.dev[i].state = H_FIRST;
    F.inflight++;
  }
}

int fleet_hold_start(const target_t *t, int from, int to, int concurrency) {
  fleet_release(); /* a second hold replaces the first fleet */
  F.exists = 1;
  F.target = *t;
  F.from = from;
  F.n = to - from;
  F.concurrency = concurrency;
  F.dev = calloc((size_t)F.n, sizeof(held_t));
  srand48((long)now_ns() ^ (long)getpid());
  hold_pump();
  return 0;
}

int fleet_hold_done(buf_t *result) {
  if (F.next < F.n || F.inflight > 0) return 0;
  buf_printf(result, "{\"connected\":%ld,\"failed\":%ld}", F.connected, F.failed);
  return 1;
}

static void schedule_retry(int i) {
  uint64_t ceiling = (uint64_t)F.cap_ms;
  /* base·2^attempt overflows long after the cap is reached: compare before shifting. */
  if (F.dev[i].attempt < 40 && (uint64_t)F.base_ms << F.dev[i].attempt < ceiling) ceiling = (uint64_t)F.base_ms << F.dev[i].attempt;
  uint64_t delay_ms = (uint64_t)floor(drand48() * (double)ceiling);
  F.dev[i].state = H_WAITING;
  F.dev[i].retry_at = now_ns() + delay_ms * MS;
  heap_push(F.dev[i].retry_at, i);
}

static void attempt_failed(int i, const char *key) {
  tally_add(&F.refusals, key);
  F.dev[i].c = NULL;
  if (++F.dev[i].attempt < F.max_attempts) return schedule_retry(i);
  F.dev[i].state = H_GAVE_UP;
  F.gave_up++;
  F.pending--;
}

void fleet_conn_up(conn_t *c) {
  int i = index_of(c);
  c->ping_at_ns = now_ns() + PING_EVERY;
  if (F.dev[i].state == H_FIRST) {
    F.connected++;
    F.inflight--;
    F.dev[i].state = H_UP;
    hold_pump();
    return;
  }
  F.dev[i].state = H_UP;
  F.back++;
  F.last_back_at = epoch_ms();
  F.pending--;
}

void fleet_conn_end(conn_t *c, const char *reason, int connack_code) {
  int i = index_of(c);
  held_t *d = &F.dev[i];
  d->c = NULL;
  switch (d->state) {
    case H_FIRST:
      F.failed++;
      F.inflight--;
      d->state = H_NONE;
      hold_pump();
      return;
    case H_UP:
      if (F.closing || !F.armed) {
        d->state = H_NONE;
        return;
      }
      if (F.first_drop_at == 0) F.first_drop_at = epoch_ms();
      F.pending++;
      d->attempt = 0;
      schedule_retry(i);
      return;
    case H_RETRYING: {
      char key[80];
      if (connack_code >= 0) snprintf(key, sizeof key, "CONNACK %d", connack_code);
      else snprintf(key, sizeof key, "%.40s", reason);
      attempt_failed(i, key);
      return;
    }
    default:
      return;
  }
}

void fleet_timers(uint64_t now) {
  while (F.heap_n > 0 && F.heap[0].at <= now) {
    timer_t_ top = F.heap[0];
    heap_pop();
    held_t *d = &F.dev[top.index];
    if (F.closing || d->state != H_WAITING || d->retry_at != top.at) continue;
    char err[128];
    d->state = H_RETRYING;
    d->c = conn_open(&F.target, OWN_HOLD, F.from + top.index, 0, 0, 15 * SEC, 600, err, sizeof err);
    if (d->c == NULL) attempt_failed(top.index, err);
  }
}

uint64_t fleet_wake(void) { return F.heap_n > 0 ? F.heap[0].at : UINT64_MAX; }

void fleet_arm(long base_ms, long cap_ms, long max_attempts) {
  if (!F.exists) return;
  F.armed = 1;
  F.base_ms = base_ms > 0 ? base_ms : 1;
  F.cap_ms = cap_ms > 0 ? cap_ms : 1;
  F.max_attempts = max_attempts;
}

int fleet_exists(void) { return F.exists; }

/* Every device that was held is back or has given up (a device dropped twice counts twice, as in mqtt-load.ts). */
int fleet_settled(void) { return F.back + F.gave_up >= F.connected; }

void fleet_settle_json(buf_t *result) {
  buf_printf(result, "{\"back\":%ld,\"failed\":%ld,\"lastBackAt\":%.0f,\"firstDropAt\":%.0f,\"refusals\":", F.back, F.gave_up + F.pending, F.last_back_at, F.first_drop_at);
  tally_json(result, &F.refusals);
  buf_printf(result, "}");
}

void fleet_release(void) {
  if (!F.exists) return;
  F.closing = 1;
  for (int i = 0; i < F.n; i++)
    if (F.dev[i].c) conn_close(F.dev[i].c, 0);
  free(F.dev);
  free(F.heap);
  tally_free(&F.refusals);
  memset(&F, 0, sizeof F);
}
