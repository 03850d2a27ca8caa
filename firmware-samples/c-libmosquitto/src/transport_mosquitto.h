/* MQTT 3.1.1 over mutual TLS, driven from the caller's loop (no background thread, no auto-reconnect):
 * every call pumps the network until its acknowledgement or a deadline. libmosquitto + OpenSSL here; on an
 * MCU: esp-mqtt + mbedTLS (ESP-IDF) or the Zephyr MQTT library over TLS sockets. */
#ifndef FG_TRANSPORT_H
#define FG_TRANSPORT_H

#include <stddef.h>

typedef enum {
  FG_OK = 0,
  FG_ERR_TIMEOUT,   /* no CONNACK/SUBACK/PUBACK/reply before the deadline */
  FG_ERR_NETWORK,   /* TCP or TLS failed, or the connection was lost */
  FG_ERR_UNTRUSTED, /* the gateway's certificate does not chain to ca_file or does not match host */
  FG_ERR_REFUSED,   /* CONNACK with a non-zero return code (see connack) */
  FG_ERR_DENIED,    /* SUBACK 0x80: the gateway's policy refused the filter */
  FG_ERR_INTERNAL,  /* out of memory, bad arguments */
} fg_status;

typedef struct fg_session fg_session;
typedef void (*fg_message_cb)(const char *topic, const char *payload, size_t len, void *user);

typedef struct {
  const char *host;
  int port;
  const char *ca_file;   /* the root the gateway's certificate must chain to; the host name is verified too */
  const char *cert_file; /* client certificate + chain */
  const char *key_file;
  const char *client_id;
  int keepalive_s;
} fg_session_config;

int fg_transport_init(void);
void fg_transport_cleanup(void);
const char *fg_status_str(fg_status status);

/* Messages that are not a pending request's reply go to on_message. */
fg_session *fg_session_new(const fg_session_config *config, fg_message_cb on_message, void *user);
/* TLS 1.2+ handshake and CONNECT (clean session). On FG_ERR_REFUSED *connack holds the return code. */
fg_status fg_session_connect(fg_session *s, int timeout_ms, int *connack);
/* QoS 1 subscriptions; waits for the SUBACK. */
fg_status fg_session_subscribe(fg_session *s, const char *const *filters, int count, int timeout_ms);
/* QoS 1 publish; waits for the PUBACK. */
fg_status fg_session_publish(fg_session *s, const char *topic, const char *payload, size_t len, int timeout_ms);
/* Request/reply: subscribes to base/accepted and base/rejected, publishes payload on base/request and waits
 * for one reply. *reply is malloc'd; *accepted is 1 for accepted, 0 for rejected. */
fg_status fg_session_request(fg_session *s, const char *base, const char *payload, int timeout_ms, char **reply, int *accepted);
/* Pumps the network for up to ms (delivering messages); FG_ERR_NETWORK if the connection is lost. */
fg_status fg_session_poll(fg_session *s, int ms);
/* DISCONNECT (if connected) and free. */
void fg_session_close(fg_session *s);

#endif
