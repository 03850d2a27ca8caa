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
  | { readonly kind: 'device'; readonly deviceId: string; readonly serial: string; readonly notAfter: Date }
  | {
      readonly kind: 'claim';
      readonly serial: string;
      readonly notAfter: Date;
      /** Registry key of the claim: the certificate serial, or `issuer:<sha256>` for a birth certificate. */
      readonly claimKey: string;
      /** Birth certificates name their device: the serial (CN) this credential may enroll, and no other. */
      readonly boundSerial?: string;
    }
  /** Device-CA certificate of an operator: for the admin API only; brokers refuse it. */
  | { readonly kind: 'operator'; readonly name: string; readonly serial: string; readonly notAfter: Date; readonly fingerprint256: string }
  | { readonly kind: 'refused'; readonly code: PeerRefusal; readonly reason: string; readonly serial?: string };

/** SHA-256 fingerprints, in Node's "AB:CD:…" form, of the CAs whose leaves we accept, by role. */
export interface TrustedIssuers {
  readonly device: string;
  /** Our claim CA: each claim certificate is its own claim, found by serial. */
  readonly claim: readonly string[];
  /** Manufacturer CAs registered as claim issuers: every birth certificate they sign shares one claim. */
  readonly manufacturer: readonly string[];
}

/** The claim key of a manufacturer CA, from its SHA-256 fingerprint in any case, with or without colons. */
export function claimKeyForIssuer(fingerprint256: string): string {
  return `issuer:${fingerprint256.replaceAll(':', '').toLowerCase()}`;
}

/**
 * The part of Node's TLSSocket this needs, declared structurally so core stays free of Node types.
 * `getPeerX509Certificate()` (undefined without a client certificate) costs ~0.01 ms where
 * `getPeerCertificate(true)` costs ~0.4 ms, on every connection (bench/RESULTS.md).
 */
export interface TlsPeer {
  readonly authorized: boolean;
  readonly authorizationError?: Error | string | null | undefined;
  getPeerX509Certificate():
    | {
        readonly serialNumber: string;
        /** One "KEY=value" per line. */
        readonly subject: string;
        readonly subjectAltName: string | undefined;
        readonly validTo: string;
        readonly fingerprint256: string;
        readonly issuerCertificate?: { readonly fingerprint256: string } | undefined;
      }
    | undefined;
  /** The slow path, for the issuer when the fast one lacks it (see issuerFingerprint). */
  getPeerCertificate(detailed: true): { readonly issuerCertificate?: { readonly fingerprint256?: string } };
}

/**
 * The issuer's fingerprint. getPeerX509Certificate() knows the issuer only when the client sent its chain
 * on a full handshake; for a leaf-only client or a resumed TLS session, ask the verified chain instead.
 */
function issuerFingerprint(peer: TlsPeer, fast: string | undefined): string | undefined {
  return fast ?? peer.getPeerCertificate(true).issuerCertificate?.fingerprint256;
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

export function credentialOf(peer: TlsPeer, issuers: TrustedIssuers): PeerCredential {
  const certificate = peer.getPeerX509Certificate();
  if (certificate === undefined) return { kind: 'refused', code: 'AUTH_NO_CLIENT_CERT', reason: 'no client certificate' };
  const serial = normaliseSerial(certificate.serialNumber);
  if (!peer.authorized) {
    const error = String(peer.authorizationError ?? 'unknown');
    return { kind: 'refused', code: verifyErrors[error] ?? 'AUTH_CERT_INVALID', reason: error, serial };
  }

  const issuer = issuerFingerprint(peer, certificate.issuerCertificate?.fingerprint256);
  const notAfter = new Date(certificate.validTo);
  const commonName = commonNameOf(certificate.subject);
  if (issuer === issuers.device) {
    const operator = namesInSubjectAltName(certificate.subjectAltName, [operatorUriPrefix]);
    if (operator.length > 0) {
      if (operator.length === 1 && operator[0] !== undefined && isValidDeviceId(operator[0]) && commonName === operator[0]) {
        return { kind: 'operator', name: operator[0], serial, notAfter, fingerprint256: certificate.fingerprint256 };
      }
      return { kind: 'refused', code: 'AUTH_CERT_INVALID', reason: 'operator certificate without a single matching operator URI SAN', serial };
    }
    const deviceId = identityFromSubjectAltName(certificate.subjectAltName);
    if (deviceId === undefined || commonName !== deviceId) {
      return { kind: 'refused', code: 'AUTH_CERT_INVALID', reason: 'device certificate without a matching fleetgate URI SAN', serial };
    }
    return { kind: 'device', deviceId, serial, notAfter };
  }
  if (issuer !== undefined && issuers.claim.includes(issuer)) return { kind: 'claim', serial, notAfter, claimKey: serial };
  if (issuer !== undefined && issuers.manufacturer.includes(issuer)) {
    const cn = commonName;
    if (cn === undefined || !isValidDeviceId(cn)) {
      return { kind: 'refused', code: 'AUTH_CERT_INVALID', reason: 'birth certificate CN is not a valid device serial', serial };
    }
    return { kind: 'claim', serial, notAfter, claimKey: claimKeyForIssuer(issuer), boundSerial: cn };
  }
  // Chains to our root, but through a CA that does not issue client identities (e.g. the server certificate).
  return { kind: 'refused', code: 'AUTH_CERT_UNTRUSTED', reason: 'issuer is not a device or claim CA', serial };
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
