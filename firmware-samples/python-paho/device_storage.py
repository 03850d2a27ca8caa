"""The device's persistent state: one directory, written so that a power cut at any point leaves a state
the next boot can use.

    device.key   current private key (0600)          written before the enrollment request
    device.crt   current certificate + chain          written when the accepted reply arrives
    reply.json   serverTime/receivedAt/notAfter...    written last: "enrolled" means crt + json exist
    renew.key    key of a renewal in flight (0600)    kept across reboots, reused when asking again
    renew.crt, renew.json   staged renewal; renew.json is written last and marks the stage complete
    ca.crt       the roots the device trusts, once a trust bundle changed them (else --ca is used)

Committing a renewal renames key, then crt, then json over the current ones; a boot that finds renew.json
finishes the commit. On an MCU this is the piece to port to NVS (ESP-IDF) or settings/littlefs (Zephyr),
with the key ideally in a secure element instead of a file.
"""

import json
import os

KEY, CERT, REPLY, TRUST = "device.key", "device.crt", "reply.json", "ca.crt"
RENEW_KEY, RENEW_CERT, RENEW_REPLY = "renew.key", "renew.crt", "renew.json"


class DeviceStore:
    def __init__(self, directory):
        self.directory = os.path.abspath(directory)
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        self._recover()

    def path(self, name):
        return os.path.join(self.directory, name)

    def exists(self, name):
        return os.path.exists(self.path(name))

    def read(self, name):
        with open(self.path(name), "rb") as handle:
            return handle.read()

    # --- enrollment -------------------------------------------------------------------------------

    def enrolled(self):
        return self.exists(KEY) and self.exists(CERT) and self.exists(REPLY)

    def device_key(self, generate):
        """The device key, made (by `generate()`) and stored on first boot, before any request is sent, so a
        lost reply is answered again for the same key instead of looking like a clone."""
        if not self.exists(KEY):
            _write_atomic(self.path(KEY), generate(), 0o600)
        return self.read(KEY)

    def save_enrollment(self, certificate_and_chain, reply_meta):
        _write_atomic(self.path(CERT), certificate_and_chain.encode("ascii"), 0o644)
        _write_atomic(self.path(REPLY), json.dumps(reply_meta, indent=2).encode("utf-8"), 0o644)

    def reply_meta(self):
        return json.loads(self.read(REPLY))

    # --- trusted roots ------------------------------------------------------------------------------

    def trust_file(self, factory_ca):
        """The CA file every connection verifies the gateway with: ca.crt here once a trust bundle changed
        the roots, the factory --ca until then."""
        return self.path(TRUST) if self.exists(TRUST) else factory_ca

    def save_trust(self, roots_pem):
        _write_atomic(self.path(TRUST), roots_pem, 0o644)

    # --- renewal ----------------------------------------------------------------------------------

    def renewal_key(self, generate):
        """Key of the renewal in flight: made once and reused until the renewal is committed."""
        if not self.exists(RENEW_KEY):
            _write_atomic(self.path(RENEW_KEY), generate(), 0o600)
        return self.read(RENEW_KEY)

    def commit_renewal(self, certificate_and_chain, reply_meta):
        _write_atomic(self.path(RENEW_CERT), certificate_and_chain.encode("ascii"), 0o644)
        _write_atomic(self.path(RENEW_REPLY), json.dumps(reply_meta, indent=2).encode("utf-8"), 0o644)
        self._finish_commit()

    def _finish_commit(self):
        for staged, current in ((RENEW_KEY, KEY), (RENEW_CERT, CERT), (RENEW_REPLY, REPLY)):
            if self.exists(staged):
                os.replace(self.path(staged), self.path(current))
        _fsync_dir(self.directory)

    def _recover(self):
        if self.exists(RENEW_REPLY):
            self._finish_commit()  # the stage was complete: finish what a power cut interrupted
        elif self.exists(RENEW_CERT):
            os.remove(self.path(RENEW_CERT))  # incomplete stage: ask again with renew.key
        for name in os.listdir(self.directory):
            if name.endswith(".tmp"):
                os.remove(self.path(name))


def _write_atomic(path, data, mode):
    temporary = path + ".tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.fchmod(fd, mode)  # O_CREAT's mode is filtered by the umask and ignored for an existing file
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    _fsync_dir(os.path.dirname(path))


def _fsync_dir(directory):
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
