import type { ErrorCode } from './errors.ts';
import { normaliseSerial } from './pki/certificate-authority.ts';
import { dayMs } from './pki/profiles.ts';
import { type CertificateView, classifyPeer, credentialOfCertificate, issuingCaOf, type PeerCredential, type TlsPeer, type TrustedIssuers } from './peer-identity.ts';

/**
 * Renewal after expiry (README "Renewal after expiry"): a device whose certificate expired less than its
 * template's `renewAfterExpiryDays` ago, and was neither revoked nor superseded, may renew once over
 * POST /v1/renew or EST simplereenroll, with the expired certificate as its TLS client certificate. Never
 * over MQTT, and never on any other route: those keep classifying peers with `classifyPeer` alone.
 *
 * Two decisions live here, each once: which TLS peer may be taken as an expired device certificate
 * (`classifyRenewalPeer`, asked by the two HTTPS routes), and whether the registry lets that certificate
 * renew (`decideRenewalAfterExpiry`, asked by the renewal use-case in provisioning/certificate-service.ts).
 */

/** id-kp-clientAuth (RFC 5280 §4.2.1.12). */
const clientAuthOid = '1.3.6.1.5.5.7.3.2';

/** A peer as the two renewal routes see it; `afterExpiry` is true only for an expired device certificate re-checked here. */
export interface RenewalPeer<C extends CertificateView> {
  readonly credential: PeerCredential;
  readonly certificate: C | undefined;
  readonly afterExpiry: boolean;
}

/**
 * `classifyPeer`, except that a device certificate refused only because it expired is accepted, after
 * `expiredRenewalCredential` checked it again. For POST /v1/renew and EST simplereenroll only. A peer
 * OpenSSL passed whose leaf has nevertheless expired at `now` (a TLS session resumed from before the
 * expiry keeps its old verdict, or a clock that differs from OpenSSL's) goes through the same check, so
 * the use-case always knows it renews an expired certificate.
 */
export function classifyRenewalPeer<C extends CertificateView>(peer: TlsPeer<C>, issuers: TrustedIssuers, now: Date): RenewalPeer<C> {
  const { credential, certificate } = classifyPeer(peer, issuers);
  const expiredLeaf = credential.kind === 'refused' ? credential.code === 'AUTH_CERT_EXPIRED' : credential.kind === 'device' && credential.notAfter.getTime() < now.getTime();
  if (!expiredLeaf || certificate === undefined) return { credential, certificate, afterExpiry: false };
  const expired = expiredRenewalCredential(certificate, issuers, now);
  return { credential: expired, certificate, afterExpiry: expired.kind === 'device' };
}

/**
 * Who an expired client certificate speaks for, when OpenSSL's verdict on its chain was CERT_HAS_EXPIRED.
 * That verdict is not trusted to mean "valid but expired": Node's verify callback lets OpenSSL carry on after
 * each error and reports the last one, and OpenSSL checks a certificate's validity period after its
 * signature and after the chain's trust and purpose, so an expired leaf hides an unknown issuer, a bad
 * signature, a wrong purpose or an expired CA above it. Everything is checked again here:
 * - the client certificate itself is the one that expired (not a CA above it), with a sane validity period,
 *   issued for TLS client authentication;
 * - it is a device certificate: signed by our device CA, found by verifying its signature against the CAs
 *   we know (`credentialOfCertificate`, evaluated at the certificate's last valid moment), with the names
 *   that CA lets it assert; claim, birth and operator certificates never renew after expiry;
 * - the device CA is valid now.
 * The root is not looked at: it is our own trust anchor, and with an expired root no client can verify
 * this server's certificate anyway. Revocation, supersession and the registry row are the use-case's.
 */
export function expiredRenewalCredential(certificate: CertificateView, issuers: TrustedIssuers, now: Date): PeerCredential {
  const serial = normaliseSerial(certificate.serialNumber);
  const refuse = (code: Extract<ErrorCode, 'AUTH_CERT_EXPIRED' | 'AUTH_CERT_INVALID' | 'AUTH_CERT_UNTRUSTED'>, reason: string): PeerCredential => ({ kind: 'refused', code, reason, serial });
  const notBefore = Date.parse(certificate.validFrom);
  const notAfter = Date.parse(certificate.validTo);
  if (!Number.isFinite(notBefore) || !Number.isFinite(notAfter) || notBefore > notAfter) return refuse('AUTH_CERT_INVALID', 'certificate with an unreadable or empty validity period');
  if (notAfter >= now.getTime()) return refuse('AUTH_CERT_EXPIRED', 'a CA certificate in the chain has expired, not the client certificate');
  // RFC 5280 §4.2.1.12: a certificate with an extended key usage serves only those purposes; ours say clientAuth.
  if (certificate.keyUsage !== undefined && !certificate.keyUsage.includes(clientAuthOid)) return refuse('AUTH_CERT_INVALID', 'certificate not issued for TLS client authentication');
  const credential = credentialOfCertificate(certificate, issuers, new Date(notAfter));
  if (credential.kind === 'refused') return credential;
  if (credential.kind !== 'device') return refuse('AUTH_CERT_EXPIRED', `certificate expired; a ${credential.kind} certificate never renews after expiry`);
  // The device CA that signed it (one of several during a rotation; a retired one is not among the issuers).
  const ca = issuingCaOf(certificate, issuers)?.certificate;
  if (ca === undefined) return refuse('AUTH_CERT_UNTRUSTED', 'not signed by a device CA in service');
  if (Date.parse(ca.validFrom) > now.getTime() || Date.parse(ca.validTo) < now.getTime()) return refuse('AUTH_CERT_EXPIRED', 'the device CA that signed the certificate is not valid now');
  return credential;
}

/** What the registry says about an expired certificate that asks to renew. */
export interface RenewalAfterExpiryFacts {
  readonly notAfter: Date;
  readonly now: Date;
  /** The device template's `renewAfterExpiryDays`; 0 when renewal after expiry is off. */
  readonly renewAfterExpiryDays: number;
  /**
   * The device's certificates that came after the expired one: those naming it in `replaces`, and any
   * issued later. The CSR's key decides whether one of them answers a repeated request.
   */
  readonly later: readonly { readonly serial: string; readonly publicKeyHash: string; readonly status: string; readonly replaces: string | null }[];
  readonly expiredSerial: string;
  readonly publicKeyHash: string;
}

export type RenewalAfterExpiryDecision =
  | { readonly outcome: 'renew'; readonly expiredForDays: number }
  /** The same request again (same expired certificate, same key): answer with the certificate issued then. */
  | { readonly outcome: 'repeat'; readonly serial: string; readonly expiredForDays: number }
  | { readonly outcome: 'refused'; readonly code: ErrorCode; readonly reason: string; readonly expiredForDays: number };

/** Days since expiry, to the hundredth, for audit entries and refusals. */
export function expiredForDays(notAfter: Date, now: Date): number {
  return Math.floor(((now.getTime() - notAfter.getTime()) / dayMs) * 100) / 100;
}

/**
 * Checks in a fixed order, after the caller found the registry row of this exact certificate, an active
 * device and an active certificate (not revoked, not superseded): the template allows renewal after expiry,
 * the certificate expired less than that many days ago, and it was not renewed already. Once means once:
 * a second request with the same key gets the certificate issued the first time, a different key is
 * refused, and the registry enforces it again in its write transaction (registerCertificate `onlySuccessor`, registry/registry-port.ts).
 */
export function decideRenewalAfterExpiry(facts: RenewalAfterExpiryFacts): RenewalAfterExpiryDecision {
  const days = expiredForDays(facts.notAfter, facts.now);
  if (facts.renewAfterExpiryDays <= 0) return { outcome: 'refused', code: 'RENEW_EXPIRED_NOT_ALLOWED', reason: 'the template does not allow renewal after expiry', expiredForDays: days };
  if (facts.now.getTime() - facts.notAfter.getTime() >= facts.renewAfterExpiryDays * dayMs) {
    return { outcome: 'refused', code: 'RENEW_EXPIRED_TOO_LATE', reason: `expired ${days} days ago; the template allows ${facts.renewAfterExpiryDays}`, expiredForDays: days };
  }
  const same = facts.later.find((c) => c.replaces === facts.expiredSerial && c.publicKeyHash === facts.publicKeyHash && c.status === 'active');
  if (same !== undefined) return { outcome: 'repeat', serial: same.serial, expiredForDays: days };
  const first = facts.later[0];
  if (first !== undefined) return { outcome: 'refused', code: 'RENEW_EXPIRED_ALREADY_RENEWED', reason: `certificate ${first.serial} came after it`, expiredForDays: days };
  return { outcome: 'renew', expiredForDays: days };
}
