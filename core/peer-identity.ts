import type { ErrorCode } from './errors.ts';
import { isValidDeviceId } from './device-id.ts';
import { normaliseSerial } from './pki/certificate-authority.ts';
import { deviceUriPrefix, operatorUriPrefix, serviceUriPrefix } from './pki/profiles.ts';

/**
 * What a TLS handshake proved about a client, for every edge that accepts client certificates (the MQTT
 * broker, the HTTPS enrollment and EST routes). Servers verify the chain but let the handshake finish
 * (rejectUnauthorized: false) so the refusal can be a protocol answer the device understands: Node closes
 * a rejected TLS 1.3 peer without an alert, and clients such as mqtt.js then retry forever.
 */
export type PeerRefusal = Extract<
  ErrorCode,
  'AUTH_NO_CLIENT_CERT' | 'AUTH_CERT_UNTRUSTED' | 'AUTH_CERT_EXPIRED' | 'AUTH_CERT_NOT_YET_VALID' | 'AUTH_CERT_INVALID' | 'AUTH_CERT_REVOKED'
>;

export type PeerCredential =
  | {
      readonly kind: 'device';
      readonly deviceId: string;
      readonly serial: string;
      readonly notAfter: Date;
      /** SHA-256 of the certificate, lower-case hex: admission and renewal compare it with the registry row. */
      readonly fingerprint: string;
    }
  | {
      readonly kind: 'claim';
      readonly serial: string;
      readonly notAfter: Date;
      readonly fingerprint: string;
      /** Registry key of the claim: the certificate serial, or `issuer:<sha256>` for a birth certificate. */
      readonly claimKey: string;
      /** Birth certificates name their device: the serial (CN) this credential may enroll, and no other. */
      readonly boundSerial?: string;
    }
  /** Device-CA certificate of an operator: for the admin API only; brokers refuse it. */
  | { readonly kind: 'operator'; readonly name: string; readonly serial: string; readonly notAfter: Date; readonly fingerprint: string }
  | { readonly kind: 'refused'; readonly code: PeerRefusal; readonly reason: string; readonly serial?: string };

/**
 * The parts of an X.509 certificate this needs, declared structurally so core stays free of Node types;
 * Node's `crypto.X509Certificate` (what `TLSSocket.getPeerX509Certificate()` returns) fits it.
 */
export interface CertificateView {
  readonly serialNumber: string;
  /** One "KEY=value" per line. */
  readonly subject: string;
  readonly subjectAltName: string | undefined;
  readonly validFrom: string;
  readonly validTo: string;
  /** "AB:CD:…" */
  readonly fingerprint256: string;
  /** DER. */
  readonly raw: Uint8Array;
  readonly publicKey: unknown;
  /**
   * Extended key usage OIDs; undefined without the extension. Node's X509Certificate names it `keyUsage`.
   * Optional: only the renewal-after-expiry check reads it (core/renewal-after-expiry.ts).
   */
  readonly keyUsage?: readonly string[] | undefined;
  /** Issuer name and key identifiers match `other` (OpenSSL X509_check_issued); says nothing of the signature. */
  checkIssued(other: CertificateView): boolean;
  /** The signature verifies under `publicKey`. */
  verify(publicKey: never): boolean;
}

/** A CA whose leaves fleetgate accepts, with its role. */
export interface KnownCa {
  readonly role: 'device' | 'claim' | 'manufacturer';
  readonly certificate: CertificateView;
  /** SHA-256 of the CA certificate, lower-case hex. */
  readonly fingerprint: string;
}

/** The CAs whose leaves we accept, by role; build it with `trustedIssuers` (core/pki/trusted-issuers.ts). */
export interface TrustedIssuers {
  /** Issue device, service and operator certificates: the active device CA, and during a rotation the next or retiring one. */
  readonly device: readonly KnownCa[];
  /** Our claim CAs (likewise): each claim certificate is its own claim, found by serial. */
  readonly claim: readonly KnownCa[];
  /** Manufacturer CAs registered as claim issuers: every birth certificate they sign shares one claim. */
  readonly manufacturer: readonly KnownCa[];
  /**
   * Leaves already checked against these CAs, by SHA-256 fingerprint (which covers the signature): a
   * device reconnecting with the same certificate costs a lookup instead of a signature verification
   * (about 60 µs with P-256). A new set of CAs comes with a new, empty map.
   */
  readonly checkedLeaves: Map<string, KnownCa | null>;
}

/** Bounds the memory of checkedLeaves; when full it starts over (a reconnect storm refills it). */
const checkedLeavesLimit = 50_000;

/** The claim key of a manufacturer CA, from its SHA-256 fingerprint in any case, with or without colons. */
export function claimKeyForIssuer(fingerprint256: string): string {
  return `issuer:${normaliseFingerprint(fingerprint256)}`;
}

/** SHA-256 fingerprints are compared as lower-case hex without colons, the form the registry stores. */
export function normaliseFingerprint(fingerprint: string): string {
  return fingerprint.replaceAll(':', '').toLowerCase();
}

/**
 * The part of Node's TLSSocket this needs, declared structurally so core stays free of Node types.
 * `getPeerX509Certificate()` (undefined without a client certificate) costs ~0.01 ms where
 * `getPeerCertificate(true)` costs ~0.4 ms, on every connection (bench/RESULTS.md).
 */
export interface TlsPeer<C extends CertificateView = CertificateView> {
  readonly authorized: boolean;
  readonly authorizationError?: Error | string | null | undefined;
  getPeerX509Certificate(): C | undefined;
}

/**
 * The CA among those we know that signed `leaf`: its issuer name and key identifier match, and the signature
 * verifies under that CA's key. Never taken from the chain a peer sent: `issuerCertificate` of a peer
 * certificate is merely the next certificate the peer put after its leaf, and OpenSSL accepts the chain
 * if *any* trusted anchor verifies it. A leaf signed by a manufacturer CA, followed by a copy of the
 * device CA certificate, must stay a manufacturer leaf.
 */
export function issuingCaOf(leaf: CertificateView, issuers: TrustedIssuers): KnownCa | undefined {
  const fingerprint = leaf.fingerprint256;
  const known = issuers.checkedLeaves.get(fingerprint);
  if (known !== undefined) return known ?? undefined;
  const issuer = [...issuers.device, ...issuers.claim, ...issuers.manufacturer].find((ca) => leaf.checkIssued(ca.certificate) && leaf.verify(ca.certificate.publicKey as never));
  if (issuers.checkedLeaves.size >= checkedLeavesLimit) issuers.checkedLeaves.clear();
  issuers.checkedLeaves.set(fingerprint, issuer ?? null);
  return issuer;
}

/** OpenSSL verify errors (X509_V_ERR_*) as Node names them, mapped to the catalogue. */
const verifyErrors: Readonly<Record<string, PeerRefusal>> = {
  CERT_HAS_EXPIRED: 'AUTH_CERT_EXPIRED',
  CERT_NOT_YET_VALID: 'AUTH_CERT_NOT_YET_VALID',
  CERT_REVOKED: 'AUTH_CERT_REVOKED',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'AUTH_CERT_UNTRUSTED',
  UNABLE_TO_GET_ISSUER_CERT: 'AUTH_CERT_UNTRUSTED',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'AUTH_CERT_UNTRUSTED',
  SELF_SIGNED_CERT_IN_CHAIN: 'AUTH_CERT_UNTRUSTED',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'AUTH_CERT_UNTRUSTED',
};

/** What the TLS handshake of `peer` proved: OpenSSL's verdict on the chain, then `credentialOfCertificate`. */
export function credentialOf(peer: TlsPeer, issuers: TrustedIssuers): PeerCredential {
  return classifyPeer(peer, issuers).credential;
}

/**
 * credentialOf, with the certificate it read: the edges keep it (a relay forwards it), and each read of
 * `getPeerX509Certificate()` makes a new native object, so it is read once per handshake.
 */
export function classifyPeer<C extends CertificateView>(peer: TlsPeer<C>, issuers: TrustedIssuers): { readonly credential: PeerCredential; readonly certificate: C | undefined } {
  const certificate = peer.getPeerX509Certificate();
  if (certificate === undefined) return { credential: { kind: 'refused', code: 'AUTH_NO_CLIENT_CERT', reason: 'no client certificate' }, certificate };
  if (!peer.authorized) {
    const error = String(peer.authorizationError ?? 'unknown');
    return { credential: { kind: 'refused', code: verifyErrors[error] ?? 'AUTH_CERT_INVALID', reason: error, serial: normaliseSerial(certificate.serialNumber) }, certificate };
  }
  return { credential: credentialOfCertificate(certificate, issuers), certificate };
}

/**
 * Who a certificate speaks for, decided from the CA that signed it (found cryptographically among the CAs
 * we know) and from the names that CA's role lets it assert:
 * - the device CA: a device or service (URI SAN = CN) or an operator;
 * - our claim CA: the claim registered under the certificate's serial;
 * - a manufacturer CA: a claim for the serial in its CN, whatever else the certificate says.
 * Also used where no TLS handshake vouches for the chain (a broker relaying a device's certificate), so the
 * validity period is checked here too, against `now` when given.
 */
export function credentialOfCertificate(certificate: CertificateView, issuers: TrustedIssuers, now?: Date): PeerCredential {
  const serial = normaliseSerial(certificate.serialNumber);
  const notAfter = new Date(certificate.validTo);
  if (now !== undefined) {
    if (now.getTime() < new Date(certificate.validFrom).getTime()) return { kind: 'refused', code: 'AUTH_CERT_NOT_YET_VALID', reason: 'certificate not yet valid', serial };
    if (now.getTime() > notAfter.getTime()) return { kind: 'refused', code: 'AUTH_CERT_EXPIRED', reason: 'certificate expired', serial };
  }
  const issuer = issuingCaOf(certificate, issuers);
  const fingerprint = normaliseFingerprint(certificate.fingerprint256);
  const commonName = commonNameOf(certificate.subject);
  if (issuer?.role === 'device') {
    const operator = namesInSubjectAltName(certificate.subjectAltName, [operatorUriPrefix]);
    if (operator.length > 0) {
      if (operator.length === 1 && operator[0] !== undefined && isValidDeviceId(operator[0]) && commonName === operator[0]) {
        return { kind: 'operator', name: operator[0], serial, notAfter, fingerprint };
      }
      return { kind: 'refused', code: 'AUTH_CERT_INVALID', reason: 'operator certificate without a single matching operator URI SAN', serial };
    }
    const deviceId = identityFromSubjectAltName(certificate.subjectAltName);
    if (deviceId === undefined || commonName !== deviceId) {
      return { kind: 'refused', code: 'AUTH_CERT_INVALID', reason: 'device certificate without a matching fleetgate URI SAN', serial };
    }
    return { kind: 'device', deviceId, serial, notAfter, fingerprint };
  }
  if (issuer?.role === 'claim') return { kind: 'claim', serial, notAfter, fingerprint, claimKey: serial };
  if (issuer?.role === 'manufacturer') {
    if (commonName === undefined || !isValidDeviceId(commonName)) {
      return { kind: 'refused', code: 'AUTH_CERT_INVALID', reason: 'birth certificate CN is not a valid device serial', serial };
    }
    return { kind: 'claim', serial, notAfter, fingerprint, claimKey: claimKeyForIssuer(issuer.fingerprint), boundSerial: commonName };
  }
  // Chains to a trusted anchor, but no CA that issues client identities signed it (e.g. the server certificate).
  return { kind: 'refused', code: 'AUTH_CERT_UNTRUSTED', reason: 'not signed by a device or claim CA', serial };
}

/** Only these name an MQTT identity; operator certificates share the device CA but are classified apart. */
const identityUriPrefixes = [deviceUriPrefix, serviceUriPrefix];

/** The single CN of a subject rendered one attribute per line; undefined if absent or repeated. */
function commonNameOf(subject: string): string | undefined {
  const names = subject.split('\n').filter((line) => line.startsWith('CN=')).map((line) => line.slice(3));
  return names.length === 1 ? names[0] : undefined;
}

/**
 * The id in a `urn:fleetgate:device:<id>` (or service) URI SAN. Node renders SANs as one string and quotes
 * entries that contain separators (`URI:"…\u002c…"`); ids cannot contain commas or quotes, so a quoted
 * entry is never ours and splitting on ", " is safe for the entries we accept.
 */
function identityFromSubjectAltName(subjectAltName: string | undefined): string | undefined {
  const ids = namesInSubjectAltName(subjectAltName, identityUriPrefixes);
  return ids.length === 1 && isValidDeviceId(ids[0]) ? ids[0] : undefined;
}

/** The names after any of `prefixes` in the URI entries of a SAN rendered by Node ("URI:…, DNS:…"). */
function namesInSubjectAltName(subjectAltName: string | undefined, prefixes: readonly string[]): string[] {
  return (subjectAltName ?? '').split(', ').flatMap((entry) => {
    if (!entry.startsWith('URI:')) return [];
    const uri = entry.slice('URI:'.length);
    const prefix = prefixes.find((candidate) => uri.startsWith(candidate));
    return prefix === undefined ? [] : [uri.slice(prefix.length)];
  });
}
