/* fleetgate device sample: the life of a device as a state machine.
 *
 *   BOOT ──(no certificate)──▶ ENROLL ──▶ CONNECT ──▶ RUN ──(a third of the lifetime left)──▶ RENEW ─┐
 *     └──(enrolled)────────────────────────▲  ▲          └──(telemetry done / Ctrl-C)──▶ DONE         │
 *                                          │  └────────────────── reconnect with the new certificate ─┘
 *
 * Transient failures (network, timeouts, CONNACK 3, ENROLL_RATE_LIMITED, ...) go back to the state that
 * failed after a full-jitter backoff; refusals that cannot get better (CONNACK 5 or 2, a rejected reply such
 * as ENROLL_CLONE_SUSPECTED) stop the device with the code. Every device session also reads the retained trust
 * bundle and keeps the roots it vouches for (trust_openssl.h) in ca.crt in the state directory, which every
 * later connection verifies the gateway with. This file is portable as is: it only uses crypto_openssl.h,
 * storage_files.h, transport_mosquitto.h, trust_openssl.h, json_min.h and platform.h. */
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto_openssl.h"
#include "json_min.h"
#include "platform.h"
#include "storage_files.h"
#include "transport_mosquitto.h"
#include "trust_openssl.h"

#define TRUST_BUNDLE_TOPIC "$fleetgate/trust/bundle"

enum { EXIT_OK = 0, EXIT_USAGE = 2, EXIT_REFUSED = 3, EXIT_GAVE_UP = 4 };

typedef struct {
  const char *host, *ca, *claim_cert, *claim_key, *serial, *state_dir;
  int port;
  long telemetry_count;
  long telemetry_interval_ms;
  int renew_now;
  int timeout_ms;
  int max_attempts;
  long backoff_base_ms, backoff_max_ms;
} options;

typedef enum { ST_BOOT, ST_ENROLL, ST_CONNECT, ST_RUN, ST_RENEW, ST_DONE, ST_REFUSED, ST_GAVE_UP } state;
typedef enum { OUT_OK, OUT_RETRY, OUT_FATAL } outcome;

typedef struct {
  options opt;
  fg_session *session;
  char device_id[130];
  int force_renew;
  char renew_reason[96]; /* why force_renew is set: --renew-now, or the rotation campaign that asked */
  long sent;
  int64_t next_telemetry_ms;
  int64_t started_ms;
  int attempt;           /* failures in a row; reset once a device session is up */
  char failure[512];     /* why the last operation failed (logs) */
  char code[64];         /* the gateway's code for a refusal */
  char ca_path[1100];    /* the CA file of the current session (ca.crt in the state directory, or --ca) */
} device;

static volatile sig_atomic_t stop_requested = 0;
static void on_signal(int sig) {
  (void)sig;
  stop_requested = 1;
}

static const char *log_prefix = "device";
static void say(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("[%s] ", log_prefix);
  vprintf(fmt, ap);
  printf("\n");
  fflush(stdout);
  va_end(ap);
}

static outcome fail(device *d, outcome out, const char *code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(d->failure, sizeof d->failure, fmt, ap);
  va_end(ap);
  snprintf(d->code, sizeof d->code, "%s", code ? code : "");
  return out;
}

/* Gateway codes that may clear up by themselves; every other rejected code is final. */
static int retryable_code(const char *code) {
  static const char *const transient[] = {"ENROLL_RATE_LIMITED", "AUTH_SERVICE_UNAVAILABLE", "API_RATE_LIMITED", "INTERNAL"};
  for (size_t i = 0; i < sizeof transient / sizeof *transient; i++)
    if (code && strcmp(code, transient[i]) == 0) return 1;
  return 0;
}

/* ---- stored state -------------------------------------------------------------------------------- */

typedef struct {
  char device_id[130];
  char not_after[40];
  int64_t clock_offset_s; /* gateway clock − device clock, measured when the last reply arrived */
} meta;

static int read_meta(const char *name, meta *m) {
  char *text = fg_store_read(name);
  if (!text) return -1;
  memset(m, 0, sizeof *m);
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
    char *eq = strchr(line, '=');
    if (!eq) continue;
    *eq = '\0';
    const char *value = eq + 1;
    if (strcmp(line, "deviceId") == 0) snprintf(m->device_id, sizeof m->device_id, "%s", value);
    else if (strcmp(line, "notAfter") == 0) snprintf(m->not_after, sizeof m->not_after, "%s", value);
    else if (strcmp(line, "clockOffsetS") == 0) m->clock_offset_s = strtoll(value, NULL, 10);
  }
  free(text);
  return fg_valid_device_id(m->device_id) ? 0 : -1;
}

static int enrolled(void) { return fg_store_exists("device.key") && fg_store_exists("device.crt") && fg_store_exists("device.meta"); }

/* A renewal is committed by renaming renew.{key,crt,meta} over device.*; renew.meta is written last and
 * renamed last, so its presence means "a complete stage, maybe half committed": finish it. */
static void recover_renewal(void) {
  if (fg_store_exists("renew.meta")) {
    if (fg_store_exists("renew.key")) fg_store_rename("renew.key", "device.key");
    if (fg_store_exists("renew.crt")) fg_store_rename("renew.crt", "device.crt");
    fg_store_rename("renew.meta", "device.meta");
    say("finished a renewal interrupted by a reboot");
  } else {
    fg_store_remove("renew.crt"); /* incomplete stage; renew.key is kept and asked for again */
  }
}

/* Loads a private key, or makes one and stores it (0600) before anything is sent with it. */
static char *load_or_create_key(const char *name) {
  char *key = fg_store_read(name);
  if (key) return key;
  key = fg_crypto_generate_key_pem();
  if (!key) return NULL;
  if (fg_store_write(name, key, 1) != 0) {
    free(key);
    return NULL;
  }
  return key;
}

/* Stores an accepted reply as <prefix>.crt (certificate + chain) and <prefix>.meta. */
static outcome store_reply(device *d, const char *reply, const char *prefix, meta *out, char serial_hex[80]) {
  char *device_id = fg_json_get_string(reply, "deviceId");
  char *certificate = fg_json_get_string(reply, "certificate");
  char *chain = fg_json_get_string(reply, "chain");
  char *not_after = fg_json_get_string(reply, "notAfter");
  char *server_time = fg_json_get_string(reply, "serverTime");
  outcome result = OUT_OK;
  int64_t nb, na, server_now;
  if (!device_id || !certificate || !not_after || !fg_valid_device_id(device_id) ||
      fg_crypto_cert_info(certificate, &nb, &na, serial_hex) != 0) {
    result = fail(d, OUT_RETRY, "REPLY_MALFORMED", "the accepted reply is not a certificate");
    goto done;
  }
  memset(out, 0, sizeof *out);
  snprintf(out->device_id, sizeof out->device_id, "%s", device_id);
  snprintf(out->not_after, sizeof out->not_after, "%s", not_after);
  /* The device's clock may be wrong (no RTC, no SNTP yet): keep the gateway's view of "now". */
  out->clock_offset_s = server_time && fg_parse_iso8601(server_time, &server_now) == 0 ? server_now - fg_wall_clock_s() : 0;

  size_t cert_len = strlen(certificate);
  size_t bundle_len = cert_len + 1 + (chain ? strlen(chain) : 0) + 1;
  char *bundle = malloc(bundle_len);
  char meta_text[512], name[64];
  if (!bundle) {
    result = fail(d, OUT_FATAL, "NO_MEMORY", "out of memory");
    goto done;
  }
  snprintf(bundle, bundle_len, "%s%s%s", certificate, cert_len && certificate[cert_len - 1] == '\n' ? "" : "\n", chain ? chain : "");
  snprintf(meta_text, sizeof meta_text, "deviceId=%s\nnotAfter=%s\nserverTime=%s\nclockOffsetS=%lld\n", out->device_id, out->not_after,
           server_time ? server_time : "", (long long)out->clock_offset_s);
  snprintf(name, sizeof name, "%s.crt", prefix);
  int rc = fg_store_write(name, bundle, 0);
  snprintf(name, sizeof name, "%s.meta", prefix);
  if (rc == 0) rc = fg_store_write(name, meta_text, 0); /* last: marks the stage complete */
  free(bundle);
  if (rc != 0) result = fail(d, OUT_FATAL, "STORAGE", "cannot write %s in the state directory", name);
done:
  free(device_id), free(certificate), free(chain), free(not_after), free(server_time);
  return result;
}

/* A rejected reply: {"code", "message"}. */
static outcome rejected(device *d, const char *reply, const char *what) {
  char *code = fg_json_get_string(reply, "code");
  char *message = fg_json_get_string(reply, "message");
  outcome out = fail(d, retryable_code(code) ? OUT_RETRY : OUT_FATAL, code ? code : "REJECTED", "%s rejected: %s: %s", what,
                     code ? code : "?", message ? message : "");
  free(code), free(message);
  return out;
}

static outcome connect_failure(device *d, fg_status st, int connack, const char *as) {
  if (st == FG_ERR_UNTRUSTED) return fail(d, OUT_FATAL, "TLS_SERVER_UNTRUSTED", "connecting %s: %s", as, fg_status_str(st));
  if (st != FG_ERR_REFUSED) return fail(d, OUT_RETRY, "", "connecting %s: %s", as, fg_status_str(st));
  char code[32];
  snprintf(code, sizeof code, "CONNACK_%d", connack);
  if (connack == 3) return fail(d, OUT_RETRY, code, "gateway unavailable (CONNACK 3)");
  const char *why = connack == 5 ? (strcmp(as, "with the claim certificate") == 0 ? "claim certificate not accepted (unknown, revoked or expired claim)"
                                                                                   : "device certificate not accepted (revoked, superseded or suspended)")
                    : connack == 2 ? "client id does not match the certificate"
                                   : "connection refused";
  return fail(d, OUT_FATAL, code, "connecting %s: %s", as, why);
}

/* The roots every connection verifies the gateway with: ca.crt in the state directory once a trust bundle
 * changed them, the factory --ca until then. */
static const char *trusted_ca_file(device *d) {
  if (fg_store_exists("ca.crt")) return fg_store_path("ca.crt", d->ca_path, sizeof d->ca_path);
  snprintf(d->ca_path, sizeof d->ca_path, "%s", d->opt.ca);
  return d->ca_path;
}

static fg_session_config session_config(device *d, const char *cert, const char *key, const char *client_id) {
  fg_session_config c = {.host = d->opt.host, .port = d->opt.port, .ca_file = trusted_ca_file(d), .cert_file = cert, .key_file = key,
                         .client_id = client_id, .keepalive_s = 30};
  return c;
}

/* The retained trust bundle (README "The trust bundle"): keep the roots it still lists and the new ones a
 * root we trust cross-signs in it (trust_openssl.c), stored atomically as ca.crt for every later connection.
 * A bundle that vouches for none of our roots changes nothing. */
static void follow_trust_bundle(device *d, const char *bundle, size_t len) {
  char path[1100];
  if (fg_store_exists("ca.crt")) fg_store_path("ca.crt", path, sizeof path);
  else snprintf(path, sizeof path, "%s", d->opt.ca);
  char *current = fg_read_file(path);
  char *roots = NULL;
  int count = 0;
  int changed = current ? fg_trust_update(current, bundle, len, &roots, &count) : -1;
  if (changed < 0) say("trust bundle: cannot read %s or the bundle; keeping the roots it has", path);
  else if (changed && fg_store_write("ca.crt", roots, 0) != 0) say("trust bundle: cannot write ca.crt in the state directory");
  else if (changed) say("trust bundle: now trusting %d root(s), stored in ca.crt", count);
  free(current), free(roots);
}

/* ---- ENROLL: claim session, CSR, accepted certificate ---------------------------------------------- */

static outcome do_enroll(device *d) {
  const char *serial = d->opt.serial;
  char *key = load_or_create_key("device.key"); /* reused if a previous attempt lost the reply */
  char *csr = key ? fg_crypto_make_csr_pem(key, serial) : NULL;
  char *quoted = csr ? fg_json_quote(csr) : NULL;
  free(key), free(csr);
  if (!quoted) return fail(d, OUT_FATAL, "CRYPTO", "cannot make a key and CSR: %s", fg_crypto_last_error());
  char *request = malloc(strlen(quoted) + 16);
  if (!request) { free(quoted); return fail(d, OUT_FATAL, "NO_MEMORY", "out of memory"); }
  sprintf(request, "{\"csr\":%s}", quoted);
  free(quoted);

  fg_session_config config = session_config(d, d->opt.claim_cert, d->opt.claim_key, serial);
  fg_session *s = fg_session_new(&config, NULL, NULL);
  if (!s) { free(request); return fail(d, OUT_FATAL, "CONFIG", "cannot set up TLS with --ca, --claim-cert and --claim-key"); }
  int connack;
  outcome out = OUT_OK;
  char *reply = NULL;
  int accepted = 0;
  fg_status st = fg_session_connect(s, d->opt.timeout_ms, &connack);
  if (st != FG_OK) {
    out = connect_failure(d, st, connack, "with the claim certificate");
  } else {
    say("connected with the claim certificate; requesting a certificate");
    char base[200];
    snprintf(base, sizeof base, "$fleetgate/enroll/%s", serial);
    st = fg_session_request(s, base, request, d->opt.timeout_ms, &reply, &accepted);
    if (st != FG_OK) out = fail(d, OUT_RETRY, "", "enrollment request: %s", fg_status_str(st));
  }
  fg_session_close(s);
  free(request);
  if (out != OUT_OK) return out;
  if (!accepted) {
    out = rejected(d, reply, "enrollment");
    free(reply);
    return out;
  }
  meta m;
  char serial_hex[80];
  out = store_reply(d, reply, "device", &m, serial_hex);
  free(reply);
  if (out == OUT_OK) say("enrolled as %s, certificate %s valid until %s", m.device_id, serial_hex, m.not_after);
  return out;
}

/* ---- CONNECT / RUN: the device session ------------------------------------------------------------- */

/* A rotation campaign's command on $fleetgate/certs/{id}/rotate (README "Rotation campaigns"): renew now,
 * as the schedule would. Its body names the campaign; a command without one still means "renew now". */
static void on_command(const char *topic, const char *payload, size_t len, void *user) {
  device *d = user;
  if (strcmp(topic, TRUST_BUNDLE_TOPIC) == 0) {
    follow_trust_bundle(d, payload, len);
    return;
  }
  char rotate[200];
  snprintf(rotate, sizeof rotate, "$fleetgate/certs/%s/rotate", d->device_id);
  if (strcmp(topic, rotate) == 0) {
    say("rotate command: %.*s", (int)len, payload);
    d->force_renew = 1;
    snprintf(d->renew_reason, sizeof d->renew_reason, "a rotation campaign asked");
    return;
  }
  say("command %s: %.*s", topic, (int)len, payload);
}

static outcome do_connect(device *d) {
  meta m;
  if (read_meta("device.meta", &m) != 0) return fail(d, OUT_FATAL, "STATE", "device.meta in the state directory is unreadable");
  snprintf(d->device_id, sizeof d->device_id, "%s", m.device_id);
  char cert_path[1100], key_path[1100];
  fg_session_config config = session_config(d, fg_store_path("device.crt", cert_path, sizeof cert_path),
                                            fg_store_path("device.key", key_path, sizeof key_path), d->device_id);
  d->session = fg_session_new(&config, on_command, d);
  if (!d->session) return fail(d, OUT_FATAL, "CONFIG", "cannot set up TLS with --ca and the stored device certificate");
  int connack;
  fg_status st = fg_session_connect(d->session, d->opt.timeout_ms, &connack);
  if (st != FG_OK) return connect_failure(d, st, connack, "as the device");
  char filter[200], rotate[200];
  snprintf(filter, sizeof filter, "devices/%s/commands/#", d->device_id);
  /* On every session: a rotate command that waited while the device was offline arrives after this SUBACK. */
  snprintf(rotate, sizeof rotate, "$fleetgate/certs/%s/rotate", d->device_id);
  const char *filters[] = {filter, rotate};
  st = fg_session_subscribe(d->session, filters, 2, d->opt.timeout_ms);
  if (st == FG_ERR_DENIED) return fail(d, OUT_FATAL, "ACL_SUBSCRIBE_DENIED", "the gateway refused %s", filter);
  if (st != FG_OK) return fail(d, OUT_RETRY, "", "subscribing to %s: %s", filter, fg_status_str(st));
  /* The retained trust bundle arrives after this SUBACK, and again whenever the gateway's roots change. Its
   * own SUBSCRIBE: a policy that refuses it must not stop the device, which then keeps the roots it has. */
  const char *trust[] = {TRUST_BUNDLE_TOPIC};
  st = fg_session_subscribe(d->session, trust, 1, d->opt.timeout_ms);
  if (st == FG_ERR_DENIED) say("the gateway refused %s: keeping the roots in %s", TRUST_BUNDLE_TOPIC, d->ca_path);
  else if (st != FG_OK) return fail(d, OUT_RETRY, "", "subscribing to %s: %s", TRUST_BUNDLE_TOPIC, fg_status_str(st));

  char *cert = fg_store_read("device.crt");
  int64_t nb = 0, na = 0;
  char serial_hex[80] = "?", due[32] = "?";
  if (cert && fg_crypto_cert_info(cert, &nb, &na, serial_hex) == 0) fg_format_iso8601(nb + (na - nb) / 3 * 2, due);
  free(cert);
  say("connected as %s (certificate %s, renewal due %s)", d->device_id, serial_hex, due);
  return OUT_OK;
}

/* Renew at notBefore + 2/3 of the lifetime, on the gateway's clock (device clock + offset from serverTime). */
static int renewal_due(void) {
  meta m;
  char *cert = fg_store_read("device.crt");
  int64_t nb, na;
  int ok = cert && read_meta("device.meta", &m) == 0 && fg_crypto_cert_info(cert, &nb, &na, NULL) == 0;
  free(cert);
  if (!ok) return 0;
  return fg_wall_clock_s() + m.clock_offset_s >= nb + (na - nb) / 3 * 2;
}

static outcome publish_telemetry(device *d) {
  char topic[200], body[300];
  long seq = d->sent + 1;
  double uptime = (double)(fg_monotonic_ms() - d->started_ms) / 1000.0;
  double temperature = 18.0 + (double)fg_crypto_random_upto(400) / 100.0;
  snprintf(topic, sizeof topic, "devices/%s/telemetry", d->device_id);
  snprintf(body, sizeof body, "{\"serial\":\"%s\",\"seq\":%ld,\"uptimeS\":%.1f,\"temperatureC\":%.2f}", d->device_id, seq, uptime, temperature);
  fg_status st = fg_session_publish(d->session, topic, body, strlen(body), d->opt.timeout_ms);
  if (st != FG_OK) return fail(d, OUT_RETRY, "", "publishing telemetry: %s", fg_status_str(st));
  d->sent = seq;
  d->next_telemetry_ms = fg_monotonic_ms() + d->opt.telemetry_interval_ms;
  if (d->opt.telemetry_count) say("telemetry %ld/%ld sent", seq, d->opt.telemetry_count);
  else say("telemetry %ld sent", seq);
  return OUT_OK;
}

/* One step of RUN: returns the next state, or ST_RUN to stay. */
static state run_step(device *d, outcome *out) {
  *out = OUT_OK;
  if (stop_requested) return ST_DONE;
  if (d->force_renew || renewal_due()) return ST_RENEW;
  if (d->opt.telemetry_count && d->sent >= d->opt.telemetry_count) return ST_DONE;
  int64_t wait = d->next_telemetry_ms - fg_monotonic_ms();
  if (wait > 0) {
    /* Wake at least every second for Ctrl-C and the renewal date; commands arrive meanwhile. */
    fg_status st = fg_session_poll(d->session, wait > 1000 ? 1000 : (int)wait);
    if (st != FG_OK) *out = fail(d, OUT_RETRY, "", "connection lost: %s", fg_status_str(st));
    return ST_RUN;
  }
  *out = publish_telemetry(d);
  return ST_RUN;
}

/* ---- RENEW: new key, CSR over the device session, staged commit ------------------------------------ */

static outcome do_renew(device *d) {
  say("renewing (%s)", d->force_renew ? d->renew_reason : "a third of the lifetime left");
  char *key = load_or_create_key("renew.key");
  char *csr = key ? fg_crypto_make_csr_pem(key, d->device_id) : NULL;
  char *quoted = csr ? fg_json_quote(csr) : NULL;
  free(key), free(csr);
  if (!quoted) return fail(d, OUT_FATAL, "CRYPTO", "cannot make a renewal key and CSR: %s", fg_crypto_last_error());
  char *request = malloc(strlen(quoted) + 16);
  if (!request) { free(quoted); return fail(d, OUT_FATAL, "NO_MEMORY", "out of memory"); }
  sprintf(request, "{\"csr\":%s}", quoted);
  free(quoted);
  char base[200], *reply = NULL;
  int accepted = 0;
  snprintf(base, sizeof base, "$fleetgate/certs/%s/renew", d->device_id);
  fg_status st = fg_session_request(d->session, base, request, d->opt.timeout_ms, &reply, &accepted);
  free(request);
  if (st != FG_OK) return fail(d, OUT_RETRY, "", "renewal request: %s", fg_status_str(st));
  if (!accepted) {
    outcome out = rejected(d, reply, "renewal");
    free(reply);
    return out;
  }
  meta m;
  char serial_hex[80];
  outcome out = store_reply(d, reply, "renew", &m, serial_hex);
  free(reply);
  if (out != OUT_OK) return out;
  if (fg_store_rename("renew.key", "device.key") != 0 || fg_store_rename("renew.crt", "device.crt") != 0 ||
      fg_store_rename("renew.meta", "device.meta") != 0)
    return fail(d, OUT_FATAL, "STORAGE", "cannot commit the renewed certificate");
  d->force_renew = 0;
  say("renewed: certificate %s valid until %s; reconnecting with it", serial_hex, m.not_after);
  return OUT_OK;
}

/* ---- the state machine ------------------------------------------------------------------------------ */

static void close_session(device *d) {
  fg_session_close(d->session);
  d->session = NULL;
}

/* After a failure: OUT_FATAL stops; OUT_RETRY waits random(0, min(cap, base·2^n)) and goes back to `retry`. */
static state after_failure(device *d, outcome out, state retry) {
  close_session(d);
  if (out == OUT_FATAL) return ST_REFUSED;
  d->attempt++;
  if (d->opt.max_attempts && d->attempt >= d->opt.max_attempts) return ST_GAVE_UP;
  int shift = d->attempt - 1 > 30 ? 30 : d->attempt - 1;
  int64_t ceiling = (int64_t)d->opt.backoff_base_ms << shift;
  if (ceiling > d->opt.backoff_max_ms) ceiling = d->opt.backoff_max_ms;
  int64_t delay = (int64_t)fg_crypto_random_upto((uint64_t)ceiling);
  say("%s; retrying in %lld ms (attempt %d)", d->failure, (long long)delay, d->attempt + 1);
  for (int64_t end = fg_monotonic_ms() + delay; !stop_requested && fg_monotonic_ms() < end;) fg_sleep_ms(end - fg_monotonic_ms() > 200 ? 200 : end - fg_monotonic_ms());
  return stop_requested ? ST_DONE : retry;
}

static int run(device *d) {
  state st = ST_BOOT;
  outcome out;
  for (;;) {
    switch (st) {
      case ST_BOOT:
        if (fg_store_open(d->opt.state_dir) != 0) {
          fprintf(stderr, "[%s] cannot create the state directory %s\n", log_prefix, d->opt.state_dir);
          return EXIT_USAGE;
        }
        recover_renewal();
        if (enrolled()) {
          say("state in %s: already enrolled, skipping enrollment", d->opt.state_dir);
          st = ST_CONNECT;
        } else if (!d->opt.claim_cert || !d->opt.claim_key) {
          fprintf(stderr, "[%s] not enrolled yet: --claim-cert and --claim-key are required\n", log_prefix);
          return EXIT_USAGE;
        } else {
          say("first boot: enrolling with the claim certificate");
          st = ST_ENROLL;
        }
        break;
      case ST_ENROLL:
        out = do_enroll(d);
        st = out == OUT_OK ? ST_CONNECT : after_failure(d, out, ST_ENROLL);
        break;
      case ST_CONNECT:
        out = do_connect(d);
        if (out == OUT_OK) {
          d->attempt = 0; /* the session is up: a later failure is a new outage */
          st = ST_RUN;
        } else {
          st = after_failure(d, out, ST_CONNECT);
        }
        break;
      case ST_RUN:
        st = run_step(d, &out);
        if (out != OUT_OK) st = after_failure(d, out, ST_CONNECT);
        break;
      case ST_RENEW:
        out = do_renew(d);
        close_session(d); /* reconnecting with the new certificate makes the gateway supersede the old one */
        st = out == OUT_OK ? ST_CONNECT : after_failure(d, out, ST_CONNECT);
        break;
      case ST_DONE:
        close_session(d);
        say("done: %ld telemetry messages sent", d->sent);
        return EXIT_OK;
      case ST_REFUSED:
        fprintf(stderr, "[%s] refused: %s: %s\n", log_prefix, d->code[0] ? d->code : "ERROR", d->failure);
        return EXIT_REFUSED;
      case ST_GAVE_UP:
        fprintf(stderr, "[%s] giving up after %d attempts: %s\n", log_prefix, d->attempt, d->failure);
        return EXIT_GAVE_UP;
    }
  }
}

/* ---- command line ----------------------------------------------------------------------------------- */

static void usage(FILE *to) {
  fprintf(to,
          "usage: fleetgate-device --host H --port P --ca ca.crt --claim-cert claim.crt --claim-key claim.key\n"
          "                        --serial SN --state-dir DIR [options]\n"
          "  --telemetry-count N        messages to send, then exit 0 (default 0: until Ctrl-C)\n"
          "  --telemetry-interval-ms MS between messages (default 10000)\n"
          "  --renew-now                renew once right after connecting (or FLEETGATE_RENEW_AT_START=1)\n"
          "  --timeout-ms MS            wait for CONNACK, SUBACK, PUBACK or a reply (default 15000)\n"
          "  --max-attempts N           failures in a row before giving up, 0 = never (default 10)\n"
          "  --backoff-base-ms MS       first backoff ceiling, doubled per attempt (default 1000)\n"
          "  --backoff-max-ms MS        backoff ceiling (default 120000)\n"
          "exit codes: 0 done, 2 bad arguments, 3 refused for good (code on stderr), 4 gave up\n");
}

static int parse_long(const char *text, long min, long *out) {
  char *end;
  long v = strtol(text, &end, 10);
  if (*text == '\0' || *end != '\0' || v < min) return -1;
  *out = v;
  return 0;
}

static int parse_args(int argc, char **argv, options *o) {
  *o = (options){.port = 8883, .telemetry_interval_ms = 10000, .timeout_ms = 15000, .max_attempts = 10, .backoff_base_ms = 1000, .backoff_max_ms = 120000};
  const char *renew_env = getenv("FLEETGATE_RENEW_AT_START");
  o->renew_now = renew_env && strcmp(renew_env, "1") == 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) { usage(stdout); exit(EXIT_OK); }
    if (strcmp(a, "--renew-now") == 0) { o->renew_now = 1; continue; }
    if (i + 1 >= argc) { fprintf(stderr, "fleetgate-device: %s needs a value\n", a); return -1; }
    const char *v = argv[++i];
    long n = 0;
    if (strcmp(a, "--host") == 0) o->host = v;
    else if (strcmp(a, "--ca") == 0) o->ca = v;
    else if (strcmp(a, "--claim-cert") == 0) o->claim_cert = v;
    else if (strcmp(a, "--claim-key") == 0) o->claim_key = v;
    else if (strcmp(a, "--serial") == 0) o->serial = v;
    else if (strcmp(a, "--state-dir") == 0) o->state_dir = v;
    else if (strcmp(a, "--port") == 0 && parse_long(v, 1, &n) == 0 && n <= 65535) o->port = (int)n;
    else if (strcmp(a, "--telemetry-count") == 0 && parse_long(v, 0, &n) == 0) o->telemetry_count = n;
    else if (strcmp(a, "--telemetry-interval-ms") == 0 && parse_long(v, 0, &n) == 0) o->telemetry_interval_ms = n;
    else if (strcmp(a, "--timeout-ms") == 0 && parse_long(v, 1, &n) == 0 && n <= 600000) o->timeout_ms = (int)n;
    else if (strcmp(a, "--max-attempts") == 0 && parse_long(v, 0, &n) == 0 && n <= 1000000) o->max_attempts = (int)n;
    else if (strcmp(a, "--backoff-base-ms") == 0 && parse_long(v, 1, &n) == 0) o->backoff_base_ms = n;
    else if (strcmp(a, "--backoff-max-ms") == 0 && parse_long(v, 1, &n) == 0) o->backoff_max_ms = n;
    else { fprintf(stderr, "fleetgate-device: bad option or value: %s %s\n", a, v); return -1; }
  }
  if (!o->host || !o->ca || !o->serial || !o->state_dir) { fprintf(stderr, "fleetgate-device: --host, --ca, --serial and --state-dir are required\n"); return -1; }
  if (!fg_valid_device_id(o->serial)) { fprintf(stderr, "fleetgate-device: --serial must match ^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$\n"); return -1; }
  return 0;
}

int main(int argc, char **argv) {
  device d;
  memset(&d, 0, sizeof d);
  if (parse_args(argc, argv, &d.opt) != 0) {
    usage(stderr);
    return EXIT_USAGE;
  }
  log_prefix = d.opt.serial;
  d.force_renew = d.opt.renew_now;
  snprintf(d.renew_reason, sizeof d.renew_reason, "--renew-now");
  d.started_ms = fg_monotonic_ms();
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  if (fg_transport_init() != 0) return EXIT_USAGE;
  int code = run(&d);
  fg_transport_cleanup();
  return code;
}
