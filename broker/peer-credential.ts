import { X509Certificate } from 'node:crypto';
import type { TrustedIssuers } from '../core/index.ts';

/** Fingerprints of the issuing CAs, in the form Node's TLS reports for a peer's issuer. */
export function trustedIssuersFromPem(devicePem: string, claimPems: readonly string[]): TrustedIssuers {
  return {
    device: new X509Certificate(devicePem).fingerprint256,
    claim: claimPems.map((pem) => new X509Certificate(pem).fingerprint256),
  };
}
