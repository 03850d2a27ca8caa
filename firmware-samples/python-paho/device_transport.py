"""MQTT 3.1.1 over mutual TLS with paho, driven from one thread.

The device calls `loop()` itself (no paho background thread, no paho auto-reconnect), the way an MCU main
loop would drive ESP-MQTT or Zephyr's MQTT client: every wait is "pump the network until X or a deadline".
Reconnecting and backing off is the caller's decision, not the library's.
"""

import json
import ssl
import time

import paho.mqtt.client as mqtt

CONNACK_MEANING = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorised",
}


class Refused(Exception):
    """The gateway said no. `code` is the gateway's error code or CONNACK_<rc>; `retryable` says whether
    asking again later can give a different answer."""

    def __init__(self, code, message="", retryable=False):
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.retryable = retryable


class TransportError(Exception):
    """Network trouble (refused TCP, TLS failure, timeout, session closed): worth retrying with backoff."""

    def __init__(self, code, message=""):
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code


class Session:
    def __init__(self, host, port, ca_file, cert_file, key_file, client_id, keepalive=30, on_message=None):
        self.host, self.port, self.keepalive = host, port, keepalive
        self.client_id = client_id
        self.on_message = on_message or (lambda topic, payload: None)
        self._connack = None
        self._closed = False
        self._subacks = {}
        self._replies = {}
        self._watched = set()
        client = mqtt.Client(client_id=client_id, clean_session=True, protocol=mqtt.MQTTv311)
        # Verifies the gateway's certificate against ca.crt and its host name; presents ours (cert + chain).
        client.tls_set(ca_certs=ca_file, certfile=cert_file, keyfile=key_file, cert_reqs=ssl.CERT_REQUIRED)
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_subscribe = self._handle_subscribe
        client.on_message = self._handle_message
        self.client = client

    # --- paho callbacks (run inside loop(), on our thread) --------------------------------------------

    def _handle_connect(self, client, userdata, flags, rc):
        self._connack = rc

    def _handle_disconnect(self, client, userdata, rc):
        self._closed = True

    def _handle_subscribe(self, client, userdata, mid, granted_qos):
        self._subacks[mid] = granted_qos

    def _handle_message(self, client, userdata, message):
        if message.topic in self._watched:
            self._replies.setdefault(message.topic, message.payload)
        else:
            self.on_message(message.topic, message.payload)

    # --- operations -------------------------------------------------------------------------------

    def connect(self, timeout):
        """TCP + TLS handshake + CONNECT, then wait for CONNACK. Raises Refused(CONNACK_<rc>) on a refusal."""
        try:
            self.client.connect(self.host, self.port, keepalive=self.keepalive)
        except ssl.SSLCertVerificationError as error:
            # Our ca.crt does not vouch for this server: no amount of retrying fixes a wrong CA or host name.
            raise Refused("TLS_SERVER_UNTRUSTED", error.verify_message or str(error)) from error
        except (OSError, ssl.SSLError) as error:
            raise TransportError("CONNECT_FAILED", str(error)) from error
        self._pump_until(lambda: self._connack is not None, timeout, "CONNACK_TIMEOUT")
        if self._connack != 0:
            rc = self._connack
            self.close()
            raise Refused(f"CONNACK_{rc}", CONNACK_MEANING.get(rc, "refused"), retryable=rc == 3)

    def subscribe(self, topics, timeout, qos=1):
        result, mid = self.client.subscribe([(topic, qos) for topic in topics])
        if result != mqtt.MQTT_ERR_SUCCESS:
            raise TransportError("SESSION_CLOSED", mqtt.error_string(result))
        self._pump_until(lambda: mid in self._subacks, timeout, "SUBACK_TIMEOUT")
        if any(granted == 0x80 for granted in self._subacks.pop(mid)):
            raise Refused("SUBSCRIBE_REFUSED", ", ".join(topics))

    def publish(self, topic, payload, timeout, qos=1):
        info = self.client.publish(topic, payload, qos=qos)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise TransportError("SESSION_CLOSED", mqtt.error_string(info.rc))
        self._pump_until(info.is_published, timeout, "PUBACK_TIMEOUT")

    def request(self, base, body, timeout):
        """The gateway's exchange (README "Enrollment and renewal"): subscribe to `{base}/accepted` and `{base}/rejected` first, then publish
        `{base}/request`. Returns (accepted_json, received_at_epoch) or raises Refused with the reply's code."""
        accepted, rejected = f"{base}/accepted", f"{base}/rejected"
        self._watched = {accepted, rejected}
        self._replies = {}
        deadline = time.monotonic() + timeout
        self.subscribe([accepted, rejected], timeout)
        self.publish(f"{base}/request", json.dumps(body), max(0.1, deadline - time.monotonic()))
        self._pump_until(lambda: self._replies, max(0.1, deadline - time.monotonic()), "REPLY_TIMEOUT")
        received_at = time.time()
        topic, payload = next(iter(self._replies.items()))
        self._watched = set()
        try:
            reply = json.loads(payload)
        except ValueError as error:
            raise TransportError("REPLY_INVALID", f"{topic}: not JSON") from error
        if topic == rejected:
            code = str(reply.get("code", "REPLY_INVALID"))
            raise Refused(code, str(reply.get("message", "")), retryable=code in RETRYABLE_CODES)
        missing = [field for field in ("deviceId", "certificate", "chain", "notAfter", "serverTime") if not isinstance(reply.get(field), str)]
        if missing:
            raise TransportError("REPLY_INVALID", f"{topic}: missing {', '.join(missing)}")
        return reply, received_at

    def wait(self, seconds, until=lambda: False):
        """Sleep while keeping the session alive (PINGREQ) and delivering incoming commands; returns early once `until()` holds."""
        self._pump_until(until, seconds, None)

    def close(self, timeout=2.0):
        """Graceful DISCONNECT when connected, bounded so a dead socket cannot hold the device."""
        if not self._closed and self._connack == 0:
            self.client.disconnect()
            try:
                self._pump_until(lambda: self._closed, timeout, None)
            except TransportError:
                pass
        self._closed = True
        sock = self.client.socket()
        if sock is not None:
            sock.close()

    def _pump_until(self, done, timeout, timeout_code):
        deadline = time.monotonic() + timeout
        while True:
            if done():
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if timeout_code is None:
                    return
                raise TransportError(timeout_code, f"nothing within {timeout:g} s")
            result = self.client.loop(timeout=min(0.1, remaining))
            if done():
                return
            if result != mqtt.MQTT_ERR_SUCCESS or self._closed:
                self._closed = True
                raise TransportError("SESSION_CLOSED", mqtt.error_string(result))


# Rejected-reply codes where asking again later can succeed; every other code is final (a clone, an
# exhausted or revoked claim, a serial not on the allow-list, a malformed CSR...).
RETRYABLE_CODES = frozenset({"ENROLL_RATE_LIMITED", "AUTH_SERVICE_UNAVAILABLE", "INTERNAL"})
