/*
 * Identities, the TLS client context and one connection's life: non-blocking TCP connect, OpenSSL handshake
 * driven by epoll readiness, CONNECT/CONNACK, then MQTT frames to the job. Mirrors connectSession() in
 * bench/mqtt-load.ts.
 */
#define _GNU_SOURCE
#include "fgload.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/pem.h>

identity_t *g_devices;
int g_ndevices;
identity_t g_service;
int g_epoll = -1;

static SSL_CTX *ctx;
static int conn_index; /* SSL ex_data slot holding the conn_t */
static conn_t *live;   /* head of the live list */

/* ---------- identities ---------- */

static void set_identity(identity_t *id, const char *name, const char *cert, size_t certn, const char *key, size_t keyn) {
  id->id = strdup(name);
  id->cert_pem = cert;
  id->cert_len = certn;
  id->key_pem = key;
  id->key_len = keyn;
  if (asprintf(&id->topic, "devices/%s/telemetry", name) < 0) die("out of memory");
}

int identity_ready(identity_t *id, char *err, size_t errlen) {
  if (id->key != NULL) return 0;
  BIO *bio = BIO_new_mem_buf(id->cert_pem, (int)id->cert_len);
  X509 *cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
  if (cert == NULL) {
    BIO_free(bio);
    ERR_clear_error();
    snprintf(err, errlen, "identity %s: no certificate", id->id);
    return -1;
  }
  STACK_OF(X509) *chain = sk_X509_new_null();
  X509 *extra;
  while ((extra = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) sk_X509_push(chain, extra);
  ERR_clear_error(); /* the loop ends on "no start line" */
  BIO_free(bio);
  bio = BIO_new_mem_buf(id->key_pem, (int)id->key_len);
  EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
  BIO_free(bio);
  if (key == NULL) {
    ERR_clear_error();
    X509_free(cert);
    sk_X509_pop_free(chain, X509_free);
    snprintf(err, errlen, "identity %s: no private key", id->id);
    return -1;
  }
  id->cert = cert;
  id->chain = chain;
  id->key = key;
  return 0;
}

/* The file bench/c-loadgen.ts writes: "ca N\n" + N bytes, then "service|device ID CERTN KEYN\n" + cert + key. */
void identities_load(const char *file) {
  FILE *f = fopen(file, "rb");
  if (f == NULL) die("cannot open %s: %s", file, strerror(errno));
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *data = malloc((size_t)size + 1);
  if (data == NULL || fread(data, 1, (size_t)size, f) != (size_t)size) die("cannot read %s", file);
  data[size] = 0;
  fclose(f);

  X509_STORE *store = SSL_CTX_get_cert_store(ctx);
  int cap = 0, have_ca = 0;
  char *p = data, *end = data + size;
  while (p < end) {
    char *nl = memchr(p, '\n', (size_t)(end - p));
    if (nl == NULL) break;
    *nl = 0;
    char kind[16], name[256];
    size_t a = 0, b = 0;
    if (sscanf(p, "ca %zu", &a) == 1) {
      char *pem = nl + 1;
      if (pem + a > end) die("%s: truncated CA", file);
      BIO *bio = BIO_new_mem_buf(pem, (int)a);
      X509 *ca;
      while ((ca = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        X509_STORE_add_cert(store, ca);
        X509_free(ca);
        have_ca = 1;
      }
      ERR_clear_error();
      BIO_free(bio);
      p = pem + a;
    } else if (sscanf(p, "%15s %255s %zu %zu", kind, name, &a, &b) == 4) {
      char *cert = nl + 1;
      if (cert + a + b > end) die("%s: truncated identity %s", file, name);
      if (strcmp(kind, "service") == 0) {
        set_identity(&g_service, name, cert, a, cert + a, b);
      } else {
        if (g_ndevices == cap) {
          cap = cap ? cap * 2 : 1024;
          g_devices = realloc(g_devices, sizeof(identity_t) * (size_t)cap);
        }
        identity_t *id = &g_devices[g_ndevices++];
        memset(id, 0, sizeof *id);
        set_identity(id, name, cert, a, cert + a, b);
      }
      p = cert + a + b;
    } else {
      die("%s: unexpected line '%.40s'", file, p);
    }
    while (p < end && *p == '\n') p++;
  }
  /* `data` stays: the identities point into it. */
  if (!have_ca) die("%s: no CA certificate", file);
  if (g_service.id == NULL) die("%s: no service identity", file);
}

/* ---------- TLS context ---------- */

/* TLS 1.3 tickets arrive after the handshake (and TLS 1.2 sessions at its end): keep the newest per identity. */
static int on_new_session(SSL *ssl, SSL_SESSION *session) {
  conn_t *c = SSL_get_ex_data(ssl, conn_index);
  if (c == NULL || !c->save_ticket) return 0;
  identity_t *id = c->dev < 0 ? &g_service : &g_devices[c->dev];
  if (id->ticket != NULL) SSL_SESSION_free(id->ticket);
  id->ticket = session;
  return 1; /* we keep the reference */
}

void net_init(void) {
  ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == NULL) die("SSL_CTX_new failed");
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  /* Without read-ahead OpenSSL reads each record with two read()s (header, then body): one for many records. */
  SSL_CTX_set_read_ahead(ctx, 1);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(ctx, on_new_session);
  conn_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
  g_epoll = epoll_create1(EPOLL_CLOEXEC);
  if (g_epoll < 0) die("epoll_create1: %s", strerror(errno));
}

int target_resolve(target_t *t, const char *host, int port, char *err, size_t errlen) {
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
  char service[16];
  snprintf(service, sizeof service, "%d", port);
  int rc = getaddrinfo(host, service, &hints, &res);
  if (rc != 0 || res == NULL) {
    snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(rc));
    return -1;
  }
  memcpy(&t->addr, res->ai_addr, res->ai_addrlen);
  t->addrlen = res->ai_addrlen;
  snprintf(t->host, sizeof t->host, "%s", host);
  freeaddrinfo(res);
  return 0;
}

/* ---------- MQTT frames ---------- */

static size_t remaining_length(uint8_t *out, size_t length) {
  size_t n = 0;
  do {
    uint8_t byte = length % 128;
    length /= 128;
    if (length > 0) byte |= 0x80;
    out[n++] = byte;
  } while (length > 0);
  return n;
}

static size_t utf8_field(uint8_t *out, const char *text) {
  size_t n = strlen(text);
  out[0] = (uint8_t)(n >> 8);
  out[1] = (uint8_t)n;
  memcpy(out + 2, text, n);
  return n + 2;
}

/* CONNECT, clean session, no credentials: the certificate is the identity [MQTT-3.1]. */
size_t mqtt_connect(uint8_t *out, const char *client_id, int keepalive_s) {
  uint8_t body[512];
  size_t n = utf8_field(body, "MQTT");
  body[n++] = 4;
  body[n++] = 0x02;
  body[n++] = (uint8_t)(keepalive_s >> 8);
  body[n++] = (uint8_t)keepalive_s;
  n += utf8_field(body + n, client_id);
  out[0] = 0x10;
  size_t h = 1 + remaining_length(out + 1, n);
  memcpy(out + h, body, n);
  return h + n;
}

/* Fixed header + topic (+ packet id): the payload follows. */
size_t mqtt_publish_header(uint8_t *out, const char *topic, size_t payload_len, int qos, uint16_t packet_id) {
  size_t topic_len = strlen(topic);
  out[0] = qos ? 0x32 : 0x30;
  size_t h = 1 + remaining_length(out + 1, 2 + topic_len + (qos ? 2 : 0) + payload_len);
  h += utf8_field(out + h, topic);
  if (qos) {
    out[h++] = (uint8_t)(packet_id >> 8);
    out[h++] = (uint8_t)packet_id;
  }
  return h;
}

size_t mqtt_subscribe(uint8_t *out, uint16_t packet_id, const char *filter, int qos) {
  uint8_t body[300];
  body[0] = (uint8_t)(packet_id >> 8);
  body[1] = (uint8_t)packet_id;
  size_t n = 2 + utf8_field(body + 2, filter);
  body[n++] = (uint8_t)qos;
  out[0] = 0x82;
  size_t h = 1 + remaining_length(out + 1, n);
  memcpy(out + h, body, n);
  return h + n;
}

/* ---------- one connection ---------- */

static void set_mask(conn_t *c, uint32_t mask) {
  if (mask == c->mask) return;
  struct epoll_event ev = {.events = mask, .data.ptr = c};
  epoll_ctl(g_epoll, EPOLL_CTL_MOD, c->fd, &ev);
  c->mask = mask;
}

void conn_want_write(conn_t *c, int on) { set_mask(c, EPOLLIN | (on ? EPOLLOUT : 0)); }

static void unlink_and_free(conn_t *c) {
  if (c->prev) c->prev->next = c->next;
  else live = c->next;
  if (c->next) c->next->prev = c->prev;
  if (c->ssl) SSL_free(c->ssl);
  close(c->fd); /* also leaves the epoll set */
  buf_free(&c->in);
  buf_free(&c->out);
  free(c);
}

static const char *errno_name(int e) {
  switch (e) {
    case ECONNREFUSED: return "ECONNREFUSED";
    case ECONNRESET: return "ECONNRESET";
    case ETIMEDOUT: return "ETIMEDOUT";
    case EPIPE: return "EPIPE";
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    case EHOSTUNREACH: return "EHOSTUNREACH";
    case ENETUNREACH: return "ENETUNREACH";
    default: return strerror(e);
  }
}

/* The connection failed or was dropped: tell the job once, then free it. */
static void conn_fail(conn_t *c, const char *reason, int connack_code) {
  job_conn_end(c, reason, connack_code);
  unlink_and_free(c);
}

/* An OpenSSL failure as one short line ("closed before CONNACK" when the peer just went away). */
static void ssl_failure(conn_t *c, int ret, const char *during) {
  int e = SSL_get_error(c->ssl, ret);
  char reason[200];
  unsigned long code = ERR_get_error();
  if (code != 0) {
    char text[160];
    ERR_error_string_n(code, text, sizeof text);
    snprintf(reason, sizeof reason, "%s: %s", during, text);
  } else if (e == SSL_ERROR_SYSCALL && errno != 0 && ret < 0) {
    snprintf(reason, sizeof reason, "%s", errno_name(errno));
  } else {
    snprintf(reason, sizeof reason, "%s", c->state == ST_UP ? "closed" : "closed before CONNACK");
  }
  ERR_clear_error();
  conn_fail(c, reason, -1);
}

conn_t *conn_open(const target_t *t, int owner, int dev, int use_ticket, int save_ticket, uint64_t timeout_ns, int keepalive_s, char *err, size_t errlen) {
  int fd = socket(t->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    snprintf(err, errlen, "%s", errno_name(errno));
    return NULL;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, (const struct sockaddr *)&t->addr, t->addrlen) < 0 && errno != EINPROGRESS) {
    snprintf(err, errlen, "%s", errno_name(errno));
    close(fd);
    return NULL;
  }
  conn_t *c = calloc(1, sizeof *c);
  c->fd = fd;
  c->owner = owner;
  c->dev = dev;
  c->save_ticket = save_ticket;
  c->state = ST_TCP;
  c->started_ns = now_ns();
  c->deadline_ns = c->started_ns + timeout_ns;
  c->next_id = 1;
  identity_t *id = dev < 0 ? &g_service : &g_devices[dev];
  if (identity_ready(id, err, errlen) < 0) {
    close(fd);
    free(c);
    return NULL;
  }
  c->ssl = SSL_new(ctx);
  SSL_set_ex_data(c->ssl, conn_index, c);
  SSL_use_certificate(c->ssl, id->cert);
  SSL_use_PrivateKey(c->ssl, id->key);
  SSL_set1_chain(c->ssl, id->chain);
  if (owner == OWN_HOLD) SSL_set_mode(c->ssl, SSL_MODE_RELEASE_BUFFERS); /* idle: keep memory small */
  if (use_ticket && id->ticket != NULL) SSL_set_session(c->ssl, id->ticket);
  SSL_set_fd(c->ssl, fd);
  /* The CONNECT is queued now and written once the handshake is done. */
  uint8_t frame[600];
  buf_append(&c->out, frame, mqtt_connect(frame, id->id, keepalive_s));
  c->next = live;
  if (live) live->prev = c;
  live = c;
  c->mask = EPOLLIN | EPOLLOUT;
  struct epoll_event ev = {.events = c->mask, .data.ptr = c};
  epoll_ctl(g_epoll, EPOLL_CTL_ADD, fd, &ev);
  return c;
}

int conn_resumed(const conn_t *c) { return SSL_session_reused(c->ssl); }

void conn_flush(conn_t *c) {
  while (c->out.len > 0) {
    ERR_clear_error();
    int n = SSL_write(c->ssl, c->out.data, (int)(c->out.len > (1 << 20) ? (1 << 20) : c->out.len));
    if (n > 0) {
      buf_consume(&c->out, (size_t)n);
      continue;
    }
    int e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
      conn_want_write(c, 1);
      return;
    }
    /* A write error shows up as a read error (EOF, reset) right after: let the read side report it. */
    ERR_clear_error();
    c->out.len = 0;
    conn_want_write(c, 0);
    return;
  }
  conn_want_write(c, c->pumping);
}

void conn_send(conn_t *c, const void *bytes, size_t n) {
  buf_append(&c->out, bytes, n);
  if (c->state >= ST_CONNACK) conn_flush(c);
}

void conn_close(conn_t *c, int polite) {
  if (polite && c->state == ST_UP) {
    static const uint8_t disconnect[] = {0xe0, 0x00};
    c->out.len = 0;
    ERR_clear_error();
    SSL_write(c->ssl, disconnect, 2);
    SSL_shutdown(c->ssl);
    ERR_clear_error();
  }
  unlink_and_free(c);
}

/* Splits c->in into frames; returns -1 when the connection was freed. */
static int parse_frames(conn_t *c) {
  size_t off = 0;
  while (c->in.len - off >= 2) {
    const uint8_t *p = c->in.data + off;
    size_t avail = c->in.len - off, length = 0, i = 1;
    unsigned mult = 1;
    int complete = 0;
    while (i < avail && i < 5) {
      uint8_t byte = p[i++];
      length += (size_t)(byte & 0x7f) * mult;
      mult *= 128;
      if ((byte & 0x80) == 0) {
        complete = 1;
        break;
      }
    }
    if (!complete) {
      if (i >= 5) {
        conn_fail(c, "malformed frame", -1);
        return -1;
      }
      break;
    }
    if (avail < i + length) break;
    int type = p[0] >> 4, flags = p[0] & 0x0f;
    off += i + length;
    if (c->state == ST_CONNACK) {
      if (type != 2 || length < 2) {
        char reason[64];
        snprintf(reason, sizeof reason, "expected CONNACK, got packet type %d", type);
        conn_fail(c, reason, -1);
        return -1;
      }
      if (p[i + 1] != 0) {
        char reason[64];
        snprintf(reason, sizeof reason, "CONNACK return code %d", p[i + 1]);
        conn_fail(c, reason, p[i + 1]);
        return -1;
      }
      c->state = ST_UP;
      int owner = c->owner;
      job_conn_up(c); /* may close c (connect job: DISCONNECT at once) */
      if (owner == OWN_CONNECT || owner == OWN_PRIME) return -1;
      continue;
    }
    job_conn_frame(c, type, flags, p + i, length);
  }
  buf_consume(&c->in, off);
  return 0;
}

static void on_readable(conn_t *c) {
  static uint8_t chunk[65536];
  for (;;) {
    ERR_clear_error();
    errno = 0;
    int n = SSL_read(c->ssl, chunk, sizeof chunk);
    if (n > 0) {
      buf_append(&c->in, chunk, (size_t)n);
      if (parse_frames(c) < 0) return;
      /* Nothing buffered in OpenSSL: stop here rather than pay a read() for EAGAIN; epoll (level-triggered)
       * reports the socket again if more arrived. */
      if (!SSL_has_pending(c->ssl)) break;
      continue;
    }
    int e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_WANT_READ) break;
    if (e == SSL_ERROR_WANT_WRITE) {
      conn_want_write(c, 1);
      break;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
      conn_fail(c, c->state == ST_UP ? "closed" : "closed before CONNACK", -1);
      return;
    }
    ssl_failure(c, n, "TLS");
    return;
  }
  if (c->out.len > 0) conn_flush(c); /* PUBACKs and follow-up PUBLISHes queued by the frames just read */
}

static void handshake(conn_t *c) {
  ERR_clear_error();
  errno = 0;
  int r = SSL_connect(c->ssl);
  if (r == 1) {
    c->state = ST_CONNACK;
    conn_flush(c); /* the CONNECT */
    on_readable(c);
    return;
  }
  int e = SSL_get_error(c->ssl, r);
  if (e == SSL_ERROR_WANT_READ) conn_want_write(c, 0);
  else if (e == SSL_ERROR_WANT_WRITE) conn_want_write(c, 1);
  else ssl_failure(c, r, "TLS handshake");
}

void conn_event(conn_t *c, uint32_t events) {
  if (c->state == ST_TCP) {
    int soerr = 0;
    socklen_t len = sizeof soerr;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
    if (soerr != 0) return conn_fail(c, errno_name(soerr), -1);
    if (!(events & (EPOLLOUT | EPOLLIN))) return conn_fail(c, "closed before CONNACK", -1);
    c->state = ST_TLS;
  }
  if (c->state == ST_TLS) return handshake(c);
  if (events & EPOLLOUT) {
    conn_flush(c);
    if (c->pumping) {
      job_conn_frame(c, -1, 0, NULL, 0); /* "writable": the QoS 0 publisher refills */
      return;
    }
  }
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
}

/* Connect timeouts (a job's 15 s, the hold's 30 s) and a PINGREQ every 300 s on held connections. */
void conns_scan(uint64_t now) {
  conn_t *c = live;
  while (c) {
    conn_t *next = c->next;
    if (c->state != ST_UP && now >= c->deadline_ns) {
      conn_fail(c, "connect timeout", -1);
    } else if (c->state == ST_UP && c->ping_at_ns != 0 && now >= c->ping_at_ns) {
      static const uint8_t pingreq[] = {0xc0, 0x00};
      c->ping_at_ns = now + 300ull * 1000000000ull;
      conn_send(c, pingreq, 2);
    }
    c = next;
  }
}
