"""Key, CSR and certificate dates: everything the device does with `cryptography`.

On an MCU this part maps to mbedTLS / PSA Crypto (or a secure element that keeps the key): make a P-256
key, sign a CSR whose CN is the serial, and read notBefore/notAfter from the issued certificate.
"""

from datetime import datetime, timezone

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

RENEW_FRACTION_LEFT = 1 / 3


def generate_key_pem():
    """A new P-256 private key as PKCS#8 PEM bytes (it never leaves the device)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def make_csr_pem(key_pem, serial):
    """A PKCS#10 CSR with CN=serial, signed with the key (SHA-256), as a PEM string."""
    key = serialization.load_pem_private_key(key_pem, password=None)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, serial)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


def certificate_info(cert_pem):
    """Serial (lower-case hex), notBefore and notAfter (aware UTC) of the first certificate in a PEM bundle."""
    cert = x509.load_pem_x509_certificate(_first_pem(cert_pem))
    # cryptography >= 42 has the *_utc properties; Debian 12 ships 38 with naive UTC datetimes.
    not_before = getattr(cert, "not_valid_before_utc", None) or cert.not_valid_before.replace(tzinfo=timezone.utc)
    not_after = getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after.replace(tzinfo=timezone.utc)
    return {"serial": format(cert.serial_number, "x"), "not_before": not_before, "not_after": not_after}


def parse_time(text):
    """ISO 8601 from the gateway (`2025-01-02T03:04:05.678Z`) as an aware datetime."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def renewal_at(not_before, not_after, server_time, received_at, fraction_left=RENEW_FRACTION_LEFT):
    """Local-clock instant to renew: notBefore + (1 - fraction_left) * lifetime on the gateway's clock,
    shifted by the skew the device learnt from the reply's serverTime (a device without RTC/NTP can be
    hours off and must still renew before the gateway considers the certificate expired)."""
    lifetime = not_after - not_before
    on_gateway_clock = not_before + lifetime * (1 - fraction_left)
    skew = server_time - received_at  # positive when the gateway is ahead of us
    return on_gateway_clock - skew


def utc_now():
    return datetime.now(timezone.utc)


def _first_pem(bundle):
    if isinstance(bundle, str):
        bundle = bundle.encode("ascii")
    end = b"-----END CERTIFICATE-----"
    index = bundle.find(end)
    return bundle if index < 0 else bundle[: index + len(end)] + b"\n"

