import { X509Certificate } from 'node:crypto';
import type { DetailedPeerCertificate, TLSSocket } from 'node:tls';
import { deviceUriPrefix, isValidDeviceId, normaliseSerial, serviceUriPrefix } from '../core/index.ts';
import type { AdmissionRefusal } from './connack-codes.ts';

/**
 * What the TLS handshake proved about a peer, worked out once per connection in 'secureConnection'.
 * The TLS server completes handshakes even for bad certificates (rejectUnauthorized: false) so that the
 * refusal can be a CONNACK the device understands: Node closes a rejected TLS 1.3 peer without an alert,
 * and clients such as mqtt.js then retry forever.
 */
export type PeerCredential =
  | { readonly kind: 'device'; readonly deviceId: string; readonly serial: string; readonly notAfter: Date }
  | { readonly kind: 'claim'; readonly serial: string; readonly notAfter: Date }
  | { readonly kind: 'refused'; readonly code: AdmissionRefusal; readonly reason: string; readonly serial?: string };

/** SHA-256 fingerprints (Node's "AB:CD:…" form) of the CAs whose leaves we accept, by role. */
export interface TrustedIssuers {
  readonly device: string;
  readonly claim: readonly string[];
}

export function trustedIssuersFromPem(devicePem: string, claimPems: readonly string[]): TrustedIssuers {
  return {
    device: new X509Certificate(devicePem).fingerprint256,
    claim: claimPems.map((pem) => new X509Certificate(pem).fingerprint256),
  };
}

/** OpenSSL verify errors (X509_V_ERR_*) as Node names them, mapped to our catalogue. */
const verifyErrors: Record<string, AdmissionRefusal> = {
  CERT_HAS_EXPIRED: 'AUTH_CERT_EXPIRED',
  CERT_NOT_YET_VALID: 'AUTH_CERT_NOT_YET_VALID',
  CERT_REVOKED: 'AUTH_CERT_REVOKED',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'AUTH_CERT_UNTRUSTED',
  UNABLE_TO_GET_ISSUER_CERT: 'AUTH_CERT_UNTRUSTED',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'AUTH_CERT_UNTRUSTED',
  SELF_SIGNED_CERT_IN_CHAIN: 'AUTH_CERT_UNTRUSTED',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'AUTH_CERT_UNTRUSTED',
};

export function credentialOf(socket: TLSSocket, issuers: TrustedIssuers): PeerCredential {
  const certificate = socket.getPeerCertificate(true) as DetailedPeerCertificate | Record<string, never>;
  if (!certificate || Object.keys(certificate).length === 0) {
    return { kind: 'refused', code: 'AUTH_NO_CLIENT_CERT', reason: 'no client certificate' };
  }
  const peer = certificate as DetailedPeerCertificate;
  const serial = normaliseSerial(peer.serialNumber ?? '');
  if (!socket.authorized) {
    const error = String(socket.authorizationError ?? 'unknown');
    return { kind: 'refused', code: verifyErrors[error] ?? 'AUTH_CERT_INVALID', reason: error, serial };
  }

  const issuer = peer.issuerCertificate?.fingerprint256;
  const notAfter = new Date(peer.valid_to);
  if (issuer === issuers.device) {
    const deviceId = identityFromSubjectAltName(peer.subjectaltname);
    if (deviceId === undefined || peer.subject?.CN !== deviceId) {
      return { kind: 'refused', code: 'AUTH_CERT_INVALID', reason: 'device certificate without a matching fleetgate URI SAN', serial };
    }
    return { kind: 'device', deviceId, serial, notAfter };
  }
  if (issuer !== undefined && issuers.claim.includes(issuer)) return { kind: 'claim', serial, notAfter };
  // Chains to our root, but through a CA that does not issue client identities (e.g. the server certificate).
  return { kind: 'refused', code: 'AUTH_CERT_UNTRUSTED', reason: 'issuer is not a device or claim CA', serial };
}

/**
 * The id in a `urn:fleetgate:device:<id>` (or service) URI SAN. Node renders SANs as one string, quoting
 * entries that contain separators (`URI:"…\u002c…"`), so read each entry rather than splitting naively;
 * device ids cannot contain commas or quotes, so a quoted entry is never ours.
 */
function identityFromSubjectAltName(subjectAltName: string | undefined): string | undefined {
  const ids = (subjectAltName ?? '').split(', ').flatMap((entry) => {
    if (!entry.startsWith('URI:')) return [];
    const uri = entry.slice('URI:'.length);
    const prefix = identityUriPrefixes.find((candidate) => uri.startsWith(candidate));
    return prefix === undefined ? [] : [uri.slice(prefix.length)];
  });
  return ids.length === 1 && isValidDeviceId(ids[0]) ? ids[0] : undefined;
}

const identityUriPrefixes = [deviceUriPrefix, serviceUriPrefix];
