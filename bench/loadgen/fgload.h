/*
 * fgload: the suite's load generator in C (see README.md beside this file). One thread, one epoll loop that
 * never stops while the process lives: jobs arrive as lines on stdin, and held devices keep reconnecting
 * between jobs (the reconnect storm happens between the `arm` and `settle` jobs). Semantics of every job are
 * those of bench/mqtt-load.ts; bench/c-loadgen.ts is the parent side.
 */
#ifndef FGLOAD_H
#define FGLOAD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <openssl/ssl.h>

/* ---- small utilities (main.c) ---- */
typedef struct {
  uint8_t *data;
  size_t len, cap;
} buf_t;

void buf_append(buf_t *b, const void *bytes, size_t n);
void buf_consume(buf_t *b, size_t n);
void buf_free(buf_t *b);
/* printf into a growable buffer (JSON replies). */
void buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_json_string(buf_t *b, const char *s);

uint64_t now_ns(void);      /* CLOCK_MONOTONIC */
double epoch_ms(void);      /* CLOCK_REALTIME, for the suite's Date.now() comparisons */
double cpu_seconds(void);   /* getrusage user + sys of this process */
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Per-job counters keyed by an error text (errors / refusals objects of the JSON reply). */
typedef struct {
  char **keys;
  long *counts;
  int n, cap;
} tally_t;
void tally_add(tally_t *t, const char *key);
void tally_json(buf_t *out, const tally_t *t);
void tally_free(tally_t *t);

/* ---- identities and TLS (net.c) ---- */
typedef struct {
  char *id;
  /* PEM text in the loaded file; parsed on first use (identity_ready): OpenSSL 3.0's decoders cost ~8 M
   * instructions per key, 10,000 identities would take half a minute at start. */
  const char *cert_pem, *key_pem;
  size_t cert_len, key_len;
  X509 *cert;
  STACK_OF(X509) *chain; /* the device CA after the leaf */
  EVP_PKEY *key;
  SSL_SESSION *ticket;   /* last session the server issued to this identity (resumed connects) */
  char *topic;           /* devices/<id>/telemetry */
} identity_t;

extern identity_t *g_devices;
extern int g_ndevices;
extern identity_t g_service;

void identities_load(const char *file); /* dies on a bad file: nothing can run without it */
/* Parses the identity's certificate chain and key once; returns 0, or -1 with a message. */
int identity_ready(identity_t *id, char *err, size_t errlen);

/* ---- connections (net.c) ---- */
enum { ST_TCP, ST_TLS, ST_CONNACK, ST_UP };
enum { OWN_CONNECT, OWN_PRIME, OWN_SUB, OWN_PUB, OWN_HOLD };

typedef struct conn {
  struct conn *prev, *next; /* every live connection, for the timeout / ping scan */
  int fd;
  SSL *ssl;
  int state, owner;
  int dev;           /* index in g_devices, -1 for the service identity */
  int save_ticket;   /* keep the tickets this connection receives as the identity's */
  uint32_t mask;     /* epoll events registered now */
  int pumping;       /* QoS 0 publisher: always wants to write */
  buf_t in, out;
  uint64_t started_ns, deadline_ns, ping_at_ns;
  int outstanding;   /* QoS 1 PUBLISHes not yet acknowledged */
  uint16_t next_id;
} conn_t;

typedef struct {
  struct sockaddr_storage addr;
  socklen_t addrlen;
  char host[256];
} target_t;

/* Resolves host:port into t; returns 0, or -1 with a message in err. */
int target_resolve(target_t *t, const char *host, int port, char *err, size_t errlen);

/*
 * Starts TCP + TLS + CONNECT for identity `dev` (-1 = service). Returns NULL with a message in err when the
 * attempt fails at once (no socket, immediate refusal); otherwise the job hears of it through job_conn_*.
 */
conn_t *conn_open(const target_t *t, int owner, int dev, int use_ticket, int save_ticket, uint64_t timeout_ns, int keepalive_s, char *err, size_t errlen);
void conn_event(conn_t *c, uint32_t events);
/* Queue bytes and try to write them now. */
void conn_send(conn_t *c, const void *bytes, size_t n);
void conn_flush(conn_t *c);
void conn_want_write(conn_t *c, int on);
/* DISCONNECT (when `polite`), close_notify, close, free; the job is not told. */
void conn_close(conn_t *c, int polite);
void conns_scan(uint64_t now); /* connect timeouts and keepalive PINGREQs */
int conn_resumed(const conn_t *c);

void net_init(void);
extern int g_epoll;
/* An epoll batch stays valid because connection callbacks free only their own connection (jobs.c). */

/* ---- jobs (jobs.c, fleet.c), called by the connection layer and the main loop ---- */
void job_conn_up(conn_t *c);                  /* CONNACK 0 */
void job_conn_frame(conn_t *c, int type, int flags, const uint8_t *body, size_t len);
/* The connection ended (failure before CONNACK, refusal, or a drop later); it is freed right after. */
void job_conn_end(conn_t *c, const char *reason, int connack_code);

typedef struct {
  char kind[32];
  char host[256];
  long port, from, to, count, concurrency, resume, qos, durationMs, payloadBytes, inflight, rate, baseMs, capMs, maxAttempts, timeoutMs;
} job_args_t;

/* Starts a job; returns 0, or -1 with a message (the job failed at once). */
int job_start(const job_args_t *a, char *err, size_t errlen);
/* Advances the running job; returns 1 and fills `result` (JSON) or `err` when it is finished. */
int job_tick(uint64_t now, buf_t *result, char *err, size_t errlen, int *failed);
/* Earliest time the running job needs a tick without any event (UINT64_MAX = none). */
uint64_t job_wake(void);

/* The held fleet outlives jobs (fleet.c). */
void fleet_conn_up(conn_t *c);
void fleet_conn_end(conn_t *c, const char *reason, int connack_code);
void fleet_timers(uint64_t now);
uint64_t fleet_wake(void);
int fleet_hold_start(const target_t *t, int from, int to, int concurrency);
int fleet_hold_done(buf_t *result);
void fleet_arm(long baseMs, long capMs, long maxAttempts);
int fleet_exists(void);
int fleet_settled(void);
void fleet_settle_json(buf_t *result);
void fleet_release(void);

/* MQTT 3.1.1 frames [MQTT-3.x] */
size_t mqtt_connect(uint8_t *out, const char *client_id, int keepalive_s);
size_t mqtt_publish_header(uint8_t *out, const char *topic, size_t payload_len, int qos, uint16_t packet_id);
size_t mqtt_subscribe(uint8_t *out, uint16_t packet_id, const char *filter, int qos);

#endif
