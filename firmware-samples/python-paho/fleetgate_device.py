#!/usr/bin/python3
"""fleetgate device sample: Debian's python3-paho-mqtt + python3-cryptography, the whole life of a device.

First boot: make a P-256 key, connect with the factory claim certificate (client id = serial), enroll over
MQTT, store the certificate. Then, on every boot: connect as the device, subscribe to its commands and to
its rotate topic and to the trust bundle, publish telemetry, and renew when a third of the certificate's lifetime is left, or at
once when the gateway asks on `$fleetgate/certs/{id}/rotate` (a rotation campaign). Refusals that cannot get better
stop the device with the gateway's code; everything else is retried with full-jitter backoff. The
retained trust bundle (`$fleetgate/trust/bundle`) updates the roots the device verifies the gateway with
(device_trust.py), stored as ca.crt in the state directory, so the device follows a root rotation.

Pieces: device_crypto.py (key, CSR, dates), device_storage.py (state dir), device_transport.py (MQTT/TLS),
device_trust.py (what to keep from a trust bundle).
"""

import argparse
import json
import os
import random
import sys
import time

sys.dont_write_bytecode = True  # run from a checkout: leave no __pycache__ next to the sample
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from device_crypto import certificate_info, generate_key_pem, make_csr_pem, parse_time, renewal_at, utc_now  # noqa: E402
from device_storage import CERT, KEY, TRUST, DeviceStore  # noqa: E402
from device_transport import Refused, Session, TransportError  # noqa: E402
from device_trust import load_certificates, roots_to_trust, to_pem  # noqa: E402

TRUST_BUNDLE_TOPIC = "$fleetgate/trust/bundle"

EXIT_REFUSED = 3  # the gateway refused for a reason retrying cannot change
EXIT_GAVE_UP = 4  # --max-attempts transient failures in a row


class GaveUp(Exception):
    pass


class Device:
    def __init__(self, args, store):
        self.args = args
        self.store = store
        self.serial = args.serial
        self.force_renew = args.renew_now
        self.renew_reason = "--renew-now" if args.renew_now else None
        self.sent = 0
        self.next_telemetry = 0.0
        self.started = time.monotonic()

    def log(self, message):
        print(f"[{self.serial}] {message}", flush=True)

    # --- life --------------------------------------------------------------------------------------

    def run(self):
        if self.store.enrolled():
            self.log(f"state in {self.store.directory}: already enrolled, skipping enrollment")
        else:
            self._with_retries(self._enroll)
        while self._with_retries(self._device_session) == "reconnect":
            pass  # renewed: connect again at once, with the new certificate (this supersedes the old one)
        self.log(f"done: {self.sent} telemetry messages sent")

    def _with_retries(self, operation):
        attempt = 0
        while True:
            self.progress = False
            try:
                return operation()
            except Refused as refusal:
                if not refusal.retryable:
                    raise
                failure = refusal
            except TransportError as error:
                failure = error
            if self.progress:
                attempt = 0  # the session was up: this is a new outage, not the same one getting longer
            attempt += 1
            if self.args.max_attempts and attempt >= self.args.max_attempts:
                raise GaveUp(f"{failure} ({attempt} attempts)")
            # Full jitter: a fleet that lost the gateway together does not come back in one wave.
            delay = random.uniform(0, min(self.args.backoff_max, self.args.backoff_base * 2 ** (attempt - 1)))
            self.log(f"{failure}; retrying in {delay:.1f} s (attempt {attempt + 1})")
            time.sleep(delay)

    # --- enrollment with the claim certificate ------------------------------------------------------

    def _enroll(self):
        key = self.store.device_key(generate_key_pem)
        csr = make_csr_pem(key, self.serial)
        session = Session(self.args.host, self.args.port, self.store.trust_file(self.args.ca), self.args.claim_cert, self.args.claim_key, self.serial)
        try:
            try:
                session.connect(self.args.timeout)
            except Refused as refusal:
                if refusal.code == "CONNACK_5":
                    raise Refused(refusal.code, "claim certificate not accepted (unknown, revoked or expired claim)", refusal.retryable) from refusal
                raise
            self.log("connected with the claim certificate; requesting a certificate")
            reply, received_at = session.request(f"$fleetgate/enroll/{self.serial}", {"csr": csr}, self.args.timeout)
        finally:
            session.close()
        self.store.save_enrollment(_bundle(reply), _meta(reply, received_at))
        self.log(f"enrolled as {reply['deviceId']}: certificate {reply.get('serial', '?')} valid until {reply['notAfter']}")

    # --- the device session -------------------------------------------------------------------------

    def _device_session(self):
        device_id = self.store.reply_meta()["deviceId"]
        session = Session(self.args.host, self.args.port, self.store.trust_file(self.args.ca), self.store.path(CERT), self.store.path(KEY), device_id, on_message=self._command)
        try:
            session.connect(self.args.timeout)
            # The rotate topic on every session: a command that waited while we were offline arrives right after this SUBACK.
            session.subscribe([f"devices/{device_id}/commands/#", f"$fleetgate/certs/{device_id}/rotate"], self.args.timeout)
            # The retained trust bundle arrives right after this SUBACK, and again whenever the gateway's roots change.
            # Its own SUBSCRIBE: a policy that refuses it must not stop the device, which then keeps the roots it has.
            try:
                session.subscribe([TRUST_BUNDLE_TOPIC], self.args.timeout)
            except Refused:
                self.log(f"the gateway refused {TRUST_BUNDLE_TOPIC}: keeping the roots in {self.store.trust_file(self.args.ca)}")
            self.progress = True
            self.log(f"connected as {device_id} (certificate {certificate_info(self.store.read(CERT))['serial']})")
            while True:
                if self.force_renew or self._renewal_due():
                    self._renew(session, device_id)
                    self.force_renew = False
                    return "reconnect"
                if self.args.telemetry_count and self.sent >= self.args.telemetry_count:
                    return "done"
                wait = self.next_telemetry - time.monotonic()
                if wait > 0:
                    # Wake at least every minute to look at the renewal date, and at once for a rotate command.
                    session.wait(min(wait, 60), until=lambda: self.force_renew)
                    continue
                self._publish_telemetry(session, device_id)
        finally:
            session.close()

    def _publish_telemetry(self, session, device_id):
        seq = self.sent + 1
        body = {"serial": self.serial, "seq": seq, "uptimeS": round(time.monotonic() - self.started, 1), "temperatureC": round(20 + random.uniform(-2, 2), 2)}
        session.publish(f"devices/{device_id}/telemetry", json.dumps(body), self.args.timeout)
        self.sent = seq
        self.next_telemetry = time.monotonic() + self.args.telemetry_interval
        total = f"/{self.args.telemetry_count}" if self.args.telemetry_count else ""
        self.log(f"telemetry {seq}{total} sent")

    def _command(self, topic, payload):
        if topic == TRUST_BUNDLE_TOPIC:
            self._follow_trust_bundle(payload)
            return
        if topic.startswith("$fleetgate/certs/") and topic.endswith("/rotate"):
            try:
                campaign = json.loads(payload).get("campaignId", "?")
            except (ValueError, AttributeError):
                campaign = "?"  # a command without a readable body still means "renew now"
            self.log(f"rotation campaign {campaign}: renewing now")
            self.force_renew = True
            self.renew_reason = f"rotation campaign {campaign}"
            return
        self.log(f"command {topic}: {payload.decode('utf-8', 'replace')}")

    # --- the trust bundle (README "The trust bundle") ----------------------------------------------

    def _follow_trust_bundle(self, bundle):
        """Keeps the roots the bundle still lists and the new ones it cross-signs with a root we trust
        (device_trust.py); stores them as ca.crt (atomic) for every later connection."""
        with open(self.store.trust_file(self.args.ca), "rb") as handle:
            current = load_certificates(handle.read())
        roots = roots_to_trust(to_pem(current), bundle)
        if roots == current:
            return
        self.store.save_trust(to_pem(roots))
        self.log(f"trust bundle: now trusting {len(roots)} root(s) ({', '.join(root.subject.rfc4514_string() for root in roots)}), stored in {TRUST}")

    # --- renewal ----------------------------------------------------------------------------------

    def _renewal_due(self):
        meta = self.store.reply_meta()
        info = certificate_info(self.store.read(CERT))
        due = renewal_at(info["not_before"], info["not_after"], parse_time(meta["serverTime"]), parse_time(meta["receivedAt"]))
        return utc_now() >= due

    def _renew(self, session, device_id):
        reason = self.renew_reason if self.force_renew and self.renew_reason else "a third of the lifetime left"
        key = self.store.renewal_key(generate_key_pem)
        self.log(f"renewing ({reason})")
        reply, received_at = session.request(f"$fleetgate/certs/{device_id}/renew", {"csr": make_csr_pem(key, self.serial)}, self.args.timeout)
        self.store.commit_renewal(_bundle(reply), _meta(reply, received_at))
        self.log(f"renewed: certificate {reply.get('serial', '?')} valid until {reply['notAfter']}; reconnecting with it")


def _bundle(reply):
    certificate = reply["certificate"] if reply["certificate"].endswith("\n") else reply["certificate"] + "\n"
    return certificate + reply["chain"]


def _meta(reply, received_at):
    """What the renewal schedule needs later: the gateway's clock at the reply and ours when it arrived."""
    return {
        "deviceId": reply["deviceId"],
        "serial": reply.get("serial"),
        "notAfter": reply["notAfter"],
        "serverTime": reply["serverTime"],
        "receivedAt": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(received_at)) + f".{int(received_at % 1 * 1000):03d}Z",
    }


def parse_args(argv):
    parser = argparse.ArgumentParser(description="fleetgate device sample (paho-mqtt, MQTT 3.1.1 over mTLS)")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, default=8883)
    parser.add_argument("--ca", required=True, help="roots the gateway's certificate must chain to (ca.crt); STATE_DIR/ca.crt replaces it once a trust bundle changes them")
    parser.add_argument("--claim-cert", required=True, help="claim certificate (+ chain) from `fleetgate claim create`")
    parser.add_argument("--claim-key", required=True)
    parser.add_argument("--serial", required=True, help="device serial: the MQTT client id and the device id")
    parser.add_argument("--state-dir", required=True, help="where the key (0600) and certificates are kept")
    parser.add_argument("--telemetry-count", type=int, default=0, help="messages to send, then exit (0: until Ctrl-C)")
    parser.add_argument("--telemetry-interval", type=float, default=10.0, help="seconds between messages")
    parser.add_argument("--renew-now", action="store_true", help="renew once right after connecting (for tests)")
    parser.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for CONNACK, SUBACK, PUBACK or a reply")
    parser.add_argument("--max-attempts", type=int, default=10, help="transient failures in a row before giving up (0: never)")
    parser.add_argument("--backoff-base", type=float, default=1.0, help="first backoff ceiling in seconds (doubles per attempt)")
    parser.add_argument("--backoff-max", type=float, default=120.0, help="backoff ceiling in seconds")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    device = Device(args, DeviceStore(args.state_dir))
    try:
        device.run()
        return 0
    except Refused as refusal:
        print(f"[{args.serial}] refused: {refusal.code}{': ' + refusal.message if refusal.message else ''}", file=sys.stderr, flush=True)
        return EXIT_REFUSED
    except GaveUp as error:
        print(f"[{args.serial}] giving up: {error}", file=sys.stderr, flush=True)
        return EXIT_GAVE_UP
    except KeyboardInterrupt:
        device.log(f"stopped: {device.sent} telemetry messages sent")
        return 0


if __name__ == "__main__":
    sys.exit(main())
