"""What the device keeps from a trust bundle (README "The trust bundle"), with `cryptography` only.

The gateway publishes every trusted root, the cross-certificates between them and the issuing CAs as the
retained message `$fleetgate/trust/bundle` (PEM). A bundle is never trusted for what it says about itself:
the device keeps

  (a) every root it already trusts that the bundle still lists, and
  (b) each new self-signed root (a CA allowed to sign CAs, with keyCertSign, valid now) that the same bundle
      vouches for with a cross-certificate: the new root's subject and public key, signed by a root the
      device already trusts (a self-issued CA in its CA file, never an issuing CA listed there too), itself
      a CA with no path length or one of at least 1, keyCertSign, valid now.

An issuing CA (path length 0) is never a cross-certificate: otherwise whoever stole a device CA's key could
self-sign it as a "root" and have devices keep it for good. If nothing is kept (a bundle naming none of the
device's roots), the device keeps what it had. The same rule as core/pki/trust-bundle-update.ts.

Debian 12 ships cryptography 38 (no verify_directly_issued_by): signatures are checked with the issuer's
public key directly. On an MCU this maps to mbedTLS (mbedtls_x509_crt_parse, mbedtls_pk_verify).

Run as a script for a check by hand: `device_trust.py TRUSTED.pem BUNDLE.pem` prints the roots to keep.
"""

import re
import sys
from datetime import datetime, timezone

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

_PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----\s+[A-Za-z0-9+/=\s]+?-----END CERTIFICATE-----")


def load_certificates(pem):
    """Every certificate in a PEM text, in order; a block that does not parse is skipped."""
    if isinstance(pem, str):
        pem = pem.encode("ascii", "replace")
    certificates = []
    for block in _PEM_CERTIFICATE.findall(pem):
        try:
            certificates.append(x509.load_pem_x509_certificate(block + b"\n"))
        except ValueError:
            continue
    return certificates


def to_pem(certificates):
    return b"".join(certificate.public_bytes(serialization.Encoding.PEM) for certificate in certificates)


def roots_to_trust(trusted, bundle, now=None):
    """The roots (x509.Certificate list) to trust from now on, given the roots trusted so far (PEM) and a
    bundle (PEM). Returns the trusted roots unchanged when the bundle vouches for none."""
    now = now or datetime.now(timezone.utc)
    known = load_certificates(trusted)
    offered = load_certificates(bundle)
    keep = []
    for root in offered:
        if root in known:  # equality is on the DER encoding
            keep.append(root)
            continue
        if not _is_root(root, now):
            continue
        for cross in offered:
            if cross is root or not _same_subject_and_key(cross, root) or not _signs_cas(cross) or not _valid_now(cross, now):
                continue
            if any(_is_trusted_root(signer) and signer.subject == cross.issuer and _signed_by(cross, signer.public_key()) for signer in known):
                keep.append(root)
                break
    return keep if keep else known


def _valid_now(certificate, now):
    # cryptography >= 42 has the *_utc properties; 38 has naive datetimes in UTC.
    not_before = getattr(certificate, "not_valid_before_utc", None) or certificate.not_valid_before.replace(tzinfo=timezone.utc)
    not_after = getattr(certificate, "not_valid_after_utc", None) or certificate.not_valid_after.replace(tzinfo=timezone.utc)
    return not_before <= now <= not_after


def _signs_cas(certificate):
    """basicConstraints CA with no path length or one of at least 1 (RFC 5280 §4.2.1.9), keyUsage keyCertSign (§4.2.1.3)."""
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except (x509.ExtensionNotFound, ValueError):
        return False
    return constraints.ca and (constraints.path_length is None or constraints.path_length >= 1) and usage.key_cert_sign


def _is_root(certificate, now):
    return certificate.subject == certificate.issuer and _signs_cas(certificate) and _valid_now(certificate, now) and _signed_by(certificate, certificate.public_key())


def _is_trusted_root(certificate):
    """A signer must be a root in the CA file (self-issued, allowed to sign CAs), not an issuing CA that a
    CA file holding a chain would also list: its stolen key must not vouch for a root."""
    return certificate.subject == certificate.issuer and _signs_cas(certificate)


def _same_subject_and_key(a, b):
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return a.subject == b.subject and a.public_key().public_bytes(*spki) == b.public_key().public_bytes(*spki)


def _signed_by(certificate, public_key):
    """Whether `certificate`'s signature verifies under `public_key` (ECDSA, RSA PKCS#1 v1.5, Ed25519)."""
    signature, tbs = certificate.signature, certificate.tbs_certificate_bytes
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, tbs, ec.ECDSA(certificate.signature_hash_algorithm))
        elif isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, tbs, padding.PKCS1v15(), certificate.signature_hash_algorithm)
        elif isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(signature, tbs)
        else:
            return False
        return True
    except InvalidSignature:
        return False
    except (TypeError, ValueError, UnsupportedAlgorithm):  # an algorithm this code cannot check (RSA-PSS...): not vouched for
        return False


def main(argv):
    if len(argv) != 3:
        print("usage: device_trust.py TRUSTED.pem BUNDLE.pem", file=sys.stderr)
        return 2
    with open(argv[1], "rb") as trusted, open(argv[2], "rb") as bundle:
        sys.stdout.write(to_pem(roots_to_trust(trusted.read(), bundle.read())).decode("ascii"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
