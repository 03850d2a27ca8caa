#include "transport_mosquitto.h"

#include <mosquitto.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "platform.h"

struct fg_session {
  struct mosquitto *mosq;
  fg_session_config config;
  fg_message_cb on_message;
  void *user;
  bool connected;
  bool lost;
  int connack; /* -1 until CONNACK */
  int awaited_mid;
  bool acked;
  int granted_denied;
  bool untrusted; /* the TLS handshake failed verifying the gateway */
  /* pending request */
  char accepted_topic[512];
  char rejected_topic[512];
  char *reply;
  int reply_accepted;
};

int fg_transport_init(void) { return mosquitto_lib_init() == MOSQ_ERR_SUCCESS ? 0 : -1; }
void fg_transport_cleanup(void) { mosquitto_lib_cleanup(); }

const char *fg_status_str(fg_status status) {
  switch (status) {
    case FG_OK: return "ok";
    case FG_ERR_TIMEOUT: return "timed out";
    case FG_ERR_NETWORK: return "connection failed or lost";
    case FG_ERR_REFUSED: return "connection refused";
    case FG_ERR_DENIED: return "subscription denied";
    case FG_ERR_UNTRUSTED: return "the gateway's certificate is not trusted by --ca (or does not name --host)";
    default: return "internal error";
  }
}

static void on_connect(struct mosquitto *mosq, void *obj, int rc) {
  (void)mosq;
  fg_session *s = obj;
  s->connack = rc;
  s->connected = rc == 0;
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc) {
  (void)mosq;
  (void)rc;
  fg_session *s = obj;
  s->connected = false;
  s->lost = true;
}

static void on_log(struct mosquitto *mosq, void *obj, int level, const char *text) {
  (void)mosq;
  fg_session *s = obj;
  if (level == MOSQ_LOG_ERR && text && strstr(text, "certificate verify failed")) s->untrusted = true;
}

static void on_subscribe(struct mosquitto *mosq, void *obj, int mid, int count, const int *granted) {
  (void)mosq;
  fg_session *s = obj;
  if (mid != s->awaited_mid) return;
  for (int i = 0; i < count; i++)
    if (granted[i] == 0x80) s->granted_denied = 1;
  s->acked = true;
}

static void on_publish(struct mosquitto *mosq, void *obj, int mid) {
  (void)mosq;
  fg_session *s = obj;
  if (mid == s->awaited_mid) s->acked = true;
}

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *m) {
  (void)mosq;
  fg_session *s = obj;
  int accepted = s->accepted_topic[0] && strcmp(m->topic, s->accepted_topic) == 0;
  int rejected = s->rejected_topic[0] && strcmp(m->topic, s->rejected_topic) == 0;
  if ((accepted || rejected) && !s->reply) {
    s->reply = malloc((size_t)m->payloadlen + 1);
    if (s->reply) {
      memcpy(s->reply, m->payload, (size_t)m->payloadlen);
      s->reply[m->payloadlen] = '\0';
      s->reply_accepted = accepted;
    }
    return;
  }
  if (s->on_message) s->on_message(m->topic, m->payload, (size_t)m->payloadlen, s->user);
}

fg_session *fg_session_new(const fg_session_config *config, fg_message_cb cb, void *user) {
  fg_session *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->config = *config;
  s->on_message = cb;
  s->user = user;
  s->connack = -1;
  s->mosq = mosquitto_new(config->client_id, true, s);
  if (!s->mosq) { free(s); return NULL; }
  int v311 = MQTT_PROTOCOL_V311;
  mosquitto_opts_set(s->mosq, MOSQ_OPT_PROTOCOL_VERSION, &v311);
  /* Verify the gateway against the CA (SSL_VERIFY_PEER = 1) and its host name; NULL version = TLS 1.2+. */
  if (mosquitto_tls_set(s->mosq, config->ca_file, NULL, config->cert_file, config->key_file, NULL) != MOSQ_ERR_SUCCESS ||
      mosquitto_tls_opts_set(s->mosq, 1, NULL, NULL) != MOSQ_ERR_SUCCESS || mosquitto_tls_insecure_set(s->mosq, false) != MOSQ_ERR_SUCCESS) {
    mosquitto_destroy(s->mosq);
    free(s);
    return NULL;
  }
  mosquitto_connect_callback_set(s->mosq, on_connect);
  mosquitto_disconnect_callback_set(s->mosq, on_disconnect);
  mosquitto_subscribe_callback_set(s->mosq, on_subscribe);
  mosquitto_publish_callback_set(s->mosq, on_publish);
  mosquitto_message_callback_set(s->mosq, on_message);
  mosquitto_log_callback_set(s->mosq, on_log);
  return s;
}

/* Pumps until *flag is set, the connection is lost, or the deadline passes. */
static fg_status pump_until(fg_session *s, const bool *flag, int timeout_ms) {
  int64_t deadline = fg_monotonic_ms() + timeout_ms;
  while (!(flag && *flag)) {
    if (s->lost) return FG_ERR_NETWORK;
    int64_t left = deadline - fg_monotonic_ms();
    if (left <= 0) return flag ? FG_ERR_TIMEOUT : FG_OK;
    int rc = mosquitto_loop(s->mosq, left < 100 ? (int)left : 100, 1);
    if (rc != MOSQ_ERR_SUCCESS) {
      s->connected = false;
      s->lost = true;
      if (flag && *flag) break;
      return FG_ERR_NETWORK;
    }
  }
  return FG_OK;
}

fg_status fg_session_connect(fg_session *s, int timeout_ms, int *connack) {
  s->lost = false;
  s->untrusted = false;
  s->connack = -1;
  if (connack) *connack = -1;
  int rc = mosquitto_connect(s->mosq, s->config.host, s->config.port, s->config.keepalive_s > 0 ? s->config.keepalive_s : 30);
  if (rc != MOSQ_ERR_SUCCESS) return s->untrusted ? FG_ERR_UNTRUSTED : FG_ERR_NETWORK;
  int64_t deadline = fg_monotonic_ms() + timeout_ms;
  while (s->connack < 0) {
    int64_t left = deadline - fg_monotonic_ms();
    if (left <= 0) return FG_ERR_TIMEOUT;
    rc = mosquitto_loop(s->mosq, left < 100 ? (int)left : 100, 1);
    if (rc != MOSQ_ERR_SUCCESS && s->connack < 0) return s->untrusted ? FG_ERR_UNTRUSTED : FG_ERR_NETWORK;
  }
  if (connack) *connack = s->connack;
  if (s->connack != 0) {
    s->lost = true;
    return FG_ERR_REFUSED;
  }
  s->lost = false;
  return FG_OK;
}

fg_status fg_session_subscribe(fg_session *s, const char *const *filters, int count, int timeout_ms) {
  int mid;
  s->acked = false;
  s->granted_denied = 0;
  if (mosquitto_subscribe_multiple(s->mosq, &mid, count, (char *const *const)filters, 1, 0, NULL) != MOSQ_ERR_SUCCESS) return FG_ERR_NETWORK;
  s->awaited_mid = mid;
  fg_status st = pump_until(s, &s->acked, timeout_ms);
  if (st == FG_OK && s->granted_denied) return FG_ERR_DENIED;
  return st;
}

fg_status fg_session_publish(fg_session *s, const char *topic, const char *payload, size_t len, int timeout_ms) {
  int mid;
  s->acked = false;
  s->awaited_mid = -1;
  if (mosquitto_publish(s->mosq, &mid, topic, (int)len, payload, 1, false) != MOSQ_ERR_SUCCESS) return FG_ERR_NETWORK;
  s->awaited_mid = mid;
  return pump_until(s, &s->acked, timeout_ms);
}

fg_status fg_session_request(fg_session *s, const char *base, const char *payload, int timeout_ms, char **reply, int *accepted) {
  char request_topic[512];
  *reply = NULL;
  if (strlen(base) > 480) return FG_ERR_INTERNAL;
  snprintf(s->accepted_topic, sizeof s->accepted_topic, "%s/accepted", base);
  snprintf(s->rejected_topic, sizeof s->rejected_topic, "%s/rejected", base);
  snprintf(request_topic, sizeof request_topic, "%s/request", base);
  free(s->reply);
  s->reply = NULL;
  const char *filters[] = {s->accepted_topic, s->rejected_topic};
  fg_status st = fg_session_subscribe(s, filters, 2, timeout_ms); /* before the request: never miss the reply */
  if (st == FG_OK) st = fg_session_publish(s, request_topic, payload, strlen(payload), timeout_ms);
  if (st == FG_OK && !s->reply) {
    /* pump until the reply arrives */
    int64_t deadline = fg_monotonic_ms() + timeout_ms;
    while (!s->reply && st == FG_OK) {
      int64_t left = deadline - fg_monotonic_ms();
      if (left <= 0) { st = FG_ERR_TIMEOUT; break; }
      st = fg_session_poll(s, left < 100 ? (int)left : 100);
    }
    if (s->reply) st = FG_OK;
  }
  if (st == FG_OK) {
    *reply = s->reply;
    *accepted = s->reply_accepted;
    s->reply = NULL;
  }
  s->accepted_topic[0] = s->rejected_topic[0] = '\0';
  return st;
}

fg_status fg_session_poll(fg_session *s, int ms) { return pump_until(s, NULL, ms); }

void fg_session_close(fg_session *s) {
  if (!s) return;
  if (s->connected) {
    mosquitto_disconnect(s->mosq);
    for (int i = 0; i < 10 && !s->lost; i++)
      if (mosquitto_loop(s->mosq, 50, 1) != MOSQ_ERR_SUCCESS) break;
  }
  mosquitto_destroy(s->mosq);
  free(s->reply);
  free(s);
}
