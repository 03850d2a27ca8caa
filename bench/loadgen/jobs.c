/*
 * The timed jobs: connect rate, throughput and latency, each a small state machine advanced by connection
 * callbacks and by job_tick(). Same semantics as measureConnectRate / measureThroughput / measureLatency in
 * bench/mqtt-load.ts. Rule that keeps the epoll batch valid: a callback only ever frees its own connection;
 * everything else is closed from job_tick(), outside the batch.
 */
#define _GNU_SOURCE
#include "fgload.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { J_NONE, J_CONNECT, J_THROUGHPUT, J_LATENCY, J_HOLD, J_ARM, J_SETTLE, J_RELEASE };
enum { P_PRIME, P_MAIN, P_SUB, P_SUBACK, P_PUBS, P_RUN, P_DRAIN, P_DONE };

#define SEC 1000000000ull
#define MS 1000000ull
#define CONNECT_TIMEOUT (15 * SEC)

static struct {
  int kind, phase, failed;
  char error[256];
  job_args_t a;
  target_t target;
  int from, ndev;
  /* connect */
  long next, active, count, resumed;
  double *lat;
  long nlat, latcap;
  tally_t errors;
  double cpu0;
  uint64_t t0, ramp_end, end, drain_until, warm_at;
  /* throughput / latency */
  conn_t *sub;
  conn_t **pubs;
  int pubs_up, rr;
  long sent, delivered, warm_delivered, window_sent0, window_delivered0;
  double window_cpu0;
  uint8_t *payload;
  size_t payload_len;
  /* This job's start (CLOCK_MONOTONIC ns); throughput payloads carry it in their first 8 bytes. */
  uint64_t tag;
} J;

static void push_latency(double ms) {
  if (J.nlat == J.latcap) {
    J.latcap = J.latcap ? J.latcap * 2 : 4096;
    J.lat = realloc(J.lat, sizeof(double) * (size_t)J.latcap);
  }
  J.lat[J.nlat++] = ms;
}

static void fail_job(const char *fmt, const char *detail) {
  if (J.failed) return;
  J.failed = 1;
  snprintf(J.error, sizeof J.error, fmt, detail);
}

static void reset(void) {
  free(J.lat);
  free(J.pubs);
  free(J.payload);
  tally_free(&J.errors);
  memset(&J, 0, sizeof J);
}

/* ---------- connect ---------- */

static void connect_pump(void) {
  long total = J.phase == P_PRIME ? J.ndev : J.count;
  while (J.active < J.a.concurrency && J.next < total) {
    int dev = J.from + (int)(J.next++ % J.ndev);
    char err[128];
    int main_phase = J.phase == P_MAIN;
    int resume = J.a.resume != 0;
    conn_t *c = conn_open(&J.target, main_phase ? OWN_CONNECT : OWN_PRIME, dev, main_phase && resume, resume, CONNECT_TIMEOUT, 600, err, sizeof err);
    if (c == NULL) {
      if (main_phase) tally_add(&J.errors, err);
      continue;
    }
    J.active++;
  }
}

static void connect_main_start(void) {
  J.phase = P_MAIN;
  J.next = 0;
  J.cpu0 = cpu_seconds();
  J.t0 = now_ns();
  connect_pump();
}

/* ---------- shared by throughput and latency ---------- */

/*
 * QoS 1 throughput is closed-loop end to end: a message counts against the publishers' windows until the
 * subscriber has it, not merely until the broker's PUBACK. Otherwise publishers outrun the subscriber and the
 * figure measures how a broker drops or queues (Mosquitto's max_queued_messages, fleetgate's outbound queue
 * limit, both 1,000) rather than how fast it delivers.
 */
static long e2e_room(void) { return (long)J.ndev * J.a.inflight - (J.sent - J.delivered); }

static void publisher_refill(conn_t *c) {
  uint8_t header[300];
  if (J.kind == J_THROUGHPUT && J.a.qos == 0) {
    /* As fast as the socket takes it: refill up to 64 KiB whenever it is writable. */
    size_t h = mqtt_publish_header(header, g_devices[c->dev].topic, J.payload_len, 0, 0);
    while (c->out.len < 65536) {
      buf_append(&c->out, header, h);
      buf_append(&c->out, J.payload, J.payload_len);
      J.sent++;
    }
  } else {
    while (c->outstanding < J.a.inflight && e2e_room() > 0) {
      size_t h = mqtt_publish_header(header, g_devices[c->dev].topic, J.payload_len, 1, c->next_id);
      c->next_id = c->next_id == 65535 ? 1 : c->next_id + 1;
      buf_append(&c->out, header, h);
      buf_append(&c->out, J.payload, J.payload_len);
      c->outstanding++;
      J.sent++;
    }
  }
  conn_flush(c);
}

/* A delivery made room end to end: the next publishers in turn with PUBACK room send. */
static void refill_next(void) {
  for (int k = 0; k < J.ndev && e2e_room() > 0; k++) {
    conn_t *c = J.pubs[J.rr];
    J.rr = (J.rr + 1) % J.ndev;
    if (c != NULL && c->outstanding < J.a.inflight) publisher_refill(c);
  }
}

static void run_start(uint64_t now) {
  J.phase = P_RUN;
  J.t0 = now;
  J.cpu0 = cpu_seconds();
  uint64_t ramp = (uint64_t)J.a.durationMs / 4 < 500 ? (uint64_t)J.a.durationMs / 4 : 500;
  J.ramp_end = now + ramp * MS;
  J.warm_at = J.ramp_end; /* latency: the first half second is not recorded (new sessions, cold caches) */
  J.end = now + (uint64_t)J.a.durationMs * MS;
  J.window_sent0 = -1;
  if (J.kind != J_THROUGHPUT) return;
  for (int i = 0; i < J.ndev; i++) {
    conn_t *c = J.pubs[i];
    if (c == NULL) continue;
    if (J.a.qos == 0) c->pumping = 1;
    publisher_refill(c);
  }
}

static void pubs_pump(void) {
  while (J.active < 20 && J.next < J.ndev) {
    char err[128];
    int i = (int)J.next++;
    conn_t *c = conn_open(&J.target, OWN_PUB, J.from + i, 0, 0, CONNECT_TIMEOUT, 600, err, sizeof err);
    if (c == NULL) return fail_job("publisher connect: %s", err);
    J.pubs[i] = c;
    J.active++;
  }
}

/* Throughput destroys its sockets (a QoS 0 backlog is not waited for); latency says DISCONNECT. */
static void close_all(int polite) {
  for (int i = 0; J.pubs && i < J.ndev; i++)
    if (J.pubs[i]) conn_close(J.pubs[i], polite), J.pubs[i] = NULL;
  if (J.sub) conn_close(J.sub, polite), J.sub = NULL;
}

/* ---------- connection callbacks ---------- */

void job_conn_up(conn_t *c) {
  if (c->owner == OWN_HOLD) return fleet_conn_up(c);
  if (c->owner == OWN_CONNECT || c->owner == OWN_PRIME) {
    if (c->owner == OWN_CONNECT) {
      push_latency((double)(now_ns() - c->started_ns) / 1e6);
      if (conn_resumed(c)) J.resumed++;
    }
    conn_close(c, 1);
    J.active--;
    connect_pump();
    return;
  }
  if (c->owner == OWN_SUB) {
    uint8_t frame[300];
    conn_send(c, frame, mqtt_subscribe(frame, 1, "devices/+/telemetry", (int)J.a.qos));
    J.phase = P_SUBACK;
    return;
  }
  /* OWN_PUB */
  J.active--;
  if (++J.pubs_up == J.ndev) run_start(now_ns());
  else pubs_pump();
}

void job_conn_frame(conn_t *c, int type, int flags, const uint8_t *body, size_t len) {
  if (c->owner == OWN_SUB) {
    if (type == 9 && J.phase == P_SUBACK) {
      if (len < 3 || body[2] == 0x80) return fail_job("SUBSCRIBE %s refused", "devices/+/telemetry");
      J.phase = P_PUBS;
      J.next = J.active = 0;
      pubs_pump();
      return;
    }
    if (type != 3 || len < 2) return;
    size_t topic_len = ((size_t)body[0] << 8) | body[1];
    size_t off = 2 + topic_len;
    if ((flags >> 1) & 3) {
      if (len < off + 2) return;
      uint8_t puback[4] = {0x40, 0x02, body[off], body[off + 1]};
      buf_append(&c->out, puback, 4); /* written after the whole read (conn layer flushes) */
      off += 2;
    }
    /*
     * A flood's backlog can outlive its job: the broker still routes PUBLISHes it had buffered from the
     * previous job's publishers to this job's subscriber. Only payloads stamped by this job count.
     */
    if (len >= off + 8) {
      uint64_t stamp;
      memcpy(&stamp, body + off, 8);
      if (J.kind == J_THROUGHPUT && stamp != J.tag) return;
      if (J.kind == J_LATENCY) {
        uint64_t now = now_ns();
        if (stamp < J.tag || stamp > now) return;
        if (stamp >= J.warm_at) push_latency((double)(now - stamp) / 1e6);
        else J.warm_delivered++;
      }
    }
    J.delivered++;
    if (J.kind == J_THROUGHPUT && J.a.qos == 1 && J.phase == P_RUN) refill_next();
    return;
  }
  if (c->owner == OWN_PUB && J.phase == P_RUN && J.kind == J_THROUGHPUT) {
    if (type == 4 && c->outstanding > 0) c->outstanding--;
    if (type == 4 || type == -1) publisher_refill(c);
  }
}

void job_conn_end(conn_t *c, const char *reason, int connack_code) {
  if (c->owner == OWN_HOLD) return fleet_conn_end(c, reason, connack_code);
  if (c->owner == OWN_CONNECT || c->owner == OWN_PRIME) {
    if (c->owner == OWN_CONNECT) tally_add(&J.errors, reason);
    J.active--;
    connect_pump();
    return;
  }
  if (c->owner == OWN_SUB) {
    J.sub = NULL;
    if (J.phase < P_RUN) fail_job("subscriber: %s", reason);
    return;
  }
  int i = c->dev - J.from;
  if (i >= 0 && i < J.ndev && J.pubs[i] == c) J.pubs[i] = NULL;
  if (J.phase < P_RUN) fail_job("publisher: %s", reason);
}

/* ---------- start / tick ---------- */

int job_start(const job_args_t *a, char *err, size_t errlen) {
  reset();
  J.a = *a;
  const char *k = a->kind;
  J.kind = !strcmp(k, "connect") ? J_CONNECT : !strcmp(k, "throughput") ? J_THROUGHPUT : !strcmp(k, "latency") ? J_LATENCY
         : !strcmp(k, "hold") ? J_HOLD : !strcmp(k, "arm") ? J_ARM : !strcmp(k, "settle") ? J_SETTLE : !strcmp(k, "release") ? J_RELEASE : J_NONE;
  if (J.kind == J_NONE) {
    snprintf(err, errlen, "unknown job kind '%s'", k);
    return -1;
  }
  if (J.kind == J_ARM) fleet_arm(a->baseMs, a->capMs, a->maxAttempts);
  if (J.kind == J_RELEASE) fleet_release();
  if (J.kind == J_SETTLE) J.end = now_ns() + (uint64_t)(a->timeoutMs > 0 ? a->timeoutMs : 0) * MS;
  if (J.kind == J_ARM || J.kind == J_SETTLE || J.kind == J_RELEASE) return 0;

  /* Device range: a JavaScript slice(from, to) of the identities. */
  long from = a->from < 0 ? 0 : a->from > g_ndevices ? g_ndevices : a->from;
  long to = a->to > g_ndevices ? g_ndevices : a->to;
  if (to <= from) {
    snprintf(err, errlen, "no devices in [%ld, %ld) (%d loaded)", a->from, a->to, g_ndevices);
    return -1;
  }
  J.from = (int)from;
  J.ndev = (int)(to - from);
  if (target_resolve(&J.target, a->host[0] ? a->host : "127.0.0.1", (int)a->port, err, errlen) < 0) return -1;
  if (a->concurrency < 1) J.a.concurrency = 1;

  /* Like contextFor() before the timer in mqtt-load.ts: parse the identities this job uses, untimed. */
  if (identity_ready(&g_service, err, errlen) < 0) return -1;
  for (int i = J.from; i < J.from + J.ndev; i++)
    if (identity_ready(&g_devices[i], err, errlen) < 0) return -1;

  if (J.kind == J_HOLD) return fleet_hold_start(&J.target, J.from, J.from + J.ndev, (int)J.a.concurrency);
  if (J.kind == J_CONNECT) {
    J.count = a->count;
    for (int i = J.from; i < J.from + J.ndev; i++)
      if (g_devices[i].ticket) SSL_SESSION_free(g_devices[i].ticket), g_devices[i].ticket = NULL;
    if (a->resume) {
      J.phase = P_PRIME; /* not timed: one full handshake per device to obtain its session ticket */
      connect_pump();
    } else {
      connect_main_start();
    }
    return 0;
  }
  /* throughput / latency */
  if (a->qos != 0 && a->qos != 1) {
    snprintf(err, errlen, "qos must be 0 or 1");
    return -1;
  }
  J.payload_len = (size_t)(a->payloadBytes < 0 ? 0 : a->payloadBytes);
  if (J.kind == J_LATENCY && J.payload_len < 8) J.payload_len = 8; /* room for the send time */
  if (J.kind == J_LATENCY && a->rate <= 0) {
    snprintf(err, errlen, "rate must be positive");
    return -1;
  }
  J.payload = malloc(J.payload_len + 8);
  memset(J.payload, 0x61, J.payload_len);
  J.tag = now_ns();
  if (J.payload_len >= 8) memcpy(J.payload, &J.tag, 8);
  J.pubs = calloc((size_t)J.ndev, sizeof(conn_t *));
  if (J.a.inflight < 1) J.a.inflight = 1;
  J.phase = P_SUB;
  J.sub = conn_open(&J.target, OWN_SUB, -1, 0, 0, CONNECT_TIMEOUT, 600, err, errlen);
  return J.sub == NULL ? -1 : 0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Same ranks and rounding as summarizeLatencies (device-sim/latency-stats.ts), plus p999. */
static void latency_json(buf_t *out) {
  if (J.nlat == 0) {
    buf_printf(out, "{\"count\":0,\"min\":0,\"mean\":0,\"p50\":0,\"p90\":0,\"p99\":0,\"p999\":0,\"max\":0}");
    return;
  }
  qsort(J.lat, (size_t)J.nlat, sizeof(double), cmp_double);
  double sum = 0;
  for (long i = 0; i < J.nlat; i++) sum += J.lat[i];
#define RANK(p) J.lat[(long)fmin((double)J.nlat - 1, fmax(0, ceil((p) / 100.0 * (double)J.nlat) - 1))]
#define R1(v) (round((v) * 10) / 10)
  buf_printf(out, "{\"count\":%ld,\"min\":%.1f,\"mean\":%.1f,\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f}", J.nlat, R1(J.lat[0]),
             R1(sum / (double)J.nlat), R1(RANK(50)), R1(RANK(90)), R1(RANK(99)), R1(RANK(99.9)), R1(J.lat[J.nlat - 1]));
}

uint64_t job_wake(void) {
  switch (J.kind) {
    case J_SETTLE: return J.end;
    case J_THROUGHPUT:
      if (J.phase != P_RUN) return UINT64_MAX;
      return J.window_sent0 < 0 ? J.ramp_end : J.end;
    case J_LATENCY:
      if (J.phase == P_DRAIN) return now_ns() + 50 * MS;
      if (J.phase != P_RUN) return UINT64_MAX;
      {
        /* Absolute schedule: message k is due at t0 + k/rate, whatever the timer jitter was. */
        uint64_t due = J.t0 + (uint64_t)((double)(J.sent + 1) * 1e9 / (double)J.a.rate);
        return due < J.end ? due : J.end;
      }
    default: return UINT64_MAX;
  }
}

int job_tick(uint64_t now, buf_t *result, char *err, size_t errlen, int *failed) {
  if (J.failed) {
    close_all(0);
    snprintf(err, errlen, "%s", J.error);
    *failed = 1;
    J.kind = J_NONE;
    return 1;
  }
  switch (J.kind) {
    case J_ARM:
    case J_RELEASE:
      buf_printf(result, "null");
      return 1;
    case J_SETTLE:
      if (!fleet_exists()) {
        buf_printf(result, "null");
        return 1;
      }
      if (!fleet_settled() && now < J.end) return 0;
      fleet_settle_json(result);
      return 1;
    case J_HOLD:
      return fleet_hold_done(result);
    case J_CONNECT: {
      long total = J.phase == P_PRIME ? J.ndev : J.count;
      if (J.next < total || J.active > 0) return 0;
      if (J.phase == P_PRIME) {
        connect_main_start();
        return 0;
      }
      double elapsed_ms = (double)(now - J.t0) / 1e6, cpu = cpu_seconds() - J.cpu0;
      buf_printf(result, "{\"ok\":%ld,\"failed\":%ld,\"elapsedMs\":%.3f,\"perSecond\":%.3f,\"resumed\":%ld,\"latencyMs\":", J.nlat, J.count - J.nlat, elapsed_ms,
                 elapsed_ms > 0 ? (double)J.nlat * 1000.0 / elapsed_ms : 0, J.resumed);
      latency_json(result);
      buf_printf(result, ",\"errors\":");
      tally_json(result, &J.errors);
      buf_printf(result, ",\"loaderCpuSeconds\":%.6f}", cpu);
      J.kind = J_NONE;
      return 1;
    }
    case J_THROUGHPUT: {
      if (J.phase != P_RUN) return 0;
      if (J.window_sent0 < 0) {
        if (now < J.ramp_end) return 0;
        J.window_sent0 = J.sent;
        J.window_delivered0 = J.delivered;
        J.window_cpu0 = cpu_seconds();
        J.t0 = now;
      }
      if (now < J.end) return 0;
      double window_ms = (double)(now - J.t0) / 1e6, cpu = cpu_seconds() - J.window_cpu0;
      long delivered = J.delivered - J.window_delivered0;
      buf_printf(result, "{\"sent\":%ld,\"delivered\":%ld,\"windowMs\":%.3f,\"perSecond\":%.3f,\"loaderCpuSeconds\":%.6f}", J.sent - J.window_sent0, delivered, window_ms,
                 (double)delivered * 1000.0 / window_ms, cpu);
      close_all(0); /* the window never waits for a backlog to drain */
      J.kind = J_NONE;
      return 1;
    }
    case J_LATENCY: {
      if (J.phase == P_RUN) {
        if (now >= J.end) {
          J.phase = P_DRAIN;
          J.drain_until = now + 5 * SEC;
        } else {
          uint64_t due = (uint64_t)((double)(now - J.t0) / 1e9 * (double)J.a.rate);
          uint8_t header[300];
          while ((uint64_t)J.sent < due) {
            int i = (int)(J.sent % J.ndev);
            conn_t *c = J.pubs[i];
            J.sent++;
            if (c == NULL) continue; /* dropped by the broker: the message counts as sent, never delivered */
            uint64_t stamp = now_ns();
            memcpy(J.payload, &stamp, 8);
            size_t h = mqtt_publish_header(header, g_devices[c->dev].topic, J.payload_len, (int)J.a.qos, c->next_id);
            c->next_id = c->next_id == 65535 ? 1 : c->next_id + 1;
            buf_append(&c->out, header, h);
            buf_append(&c->out, J.payload, J.payload_len);
            conn_flush(c);
          }
          return 0;
        }
      }
      if (J.phase != P_DRAIN) return 0;
      if (J.nlat + J.warm_delivered < J.sent && now < J.drain_until) return 0;
      double cpu = cpu_seconds() - J.cpu0, window_ms = (double)(now - J.t0) / 1e6;
      buf_printf(result, "{\"sent\":%ld,\"delivered\":%ld,\"ratePerSecond\":%ld,\"latencyMs\":", J.sent, J.nlat + J.warm_delivered, J.a.rate);
      latency_json(result);
      buf_printf(result, ",\"loaderCpuSeconds\":%.6f,\"windowMs\":%.3f}", cpu, window_ms);
      close_all(1);
      J.kind = J_NONE;
      return 1;
    }
    default:
      snprintf(err, errlen, "no job");
      *failed = 1;
      return 1;
  }
}
