import type { TrustedIssuers } from '../peer-identity.ts';
import { pemBlocks, toHex } from './encoding.ts';
import { x509 } from './x509.ts';

/** SHA-256 fingerprint in the form Node's TLS reports a peer's issuer: "AB:CD:…". */
export async function tlsFingerprint(pem: string): Promise<string> {
  const [der] = pemBlocks(pem, ['CERTIFICATE']);
  if (der === undefined) throw new RangeError('no CERTIFICATE block');
  const hex = toHex(await new x509.X509Certificate(der).getThumbprint('SHA-256')).toUpperCase();
  return hex.replace(/(..)(?!$)/g, '$1:');
}

/**
 * The issuers every mTLS edge accepts, by role. For manufacturer bundles the first certificate is the CA
 * that signs birth certificates; any others in the bundle are its chain, trusted for path building only.
 */
export async function trustedIssuers(devicePem: string, claimPems: readonly string[], manufacturerPems: readonly string[]): Promise<TrustedIssuers> {
  return {
    device: await tlsFingerprint(devicePem),
    claim: await Promise.all(claimPems.map(tlsFingerprint)),
    manufacturer: await Promise.all(manufacturerPems.map(tlsFingerprint)),
  };
}
