import { type CertificateView, type KnownCa, normaliseFingerprint, type TrustedIssuers } from '../peer-identity.ts';
import { pemBlocks, toHex } from './encoding.ts';
import { x509 } from './x509.ts';

/** SHA-256 fingerprint in the form Node's TLS reports a certificate's: "AB:CD:…". */
export async function tlsFingerprint(pem: string): Promise<string> {
  const [der] = pemBlocks(pem, ['CERTIFICATE']);
  if (der === undefined) throw new RangeError('no CERTIFICATE block');
  const hex = toHex(await new x509.X509Certificate(der).getThumbprint('SHA-256')).toUpperCase();
  return hex.replace(/(..)(?!$)/g, '$1:');
}

/** Parses the first certificate of a PEM bundle: Node's `(pem) => new X509Certificate(pem)` at the edges. */
export type ParseCertificate = (pem: string) => CertificateView;

/**
 * The issuers every mTLS edge accepts, by role. For manufacturer bundles the first certificate is the CA
 * that signs birth certificates; any others in the bundle are its chain, trusted for path building only.
 */
export function trustedIssuers(parse: ParseCertificate, pems: { device: readonly string[]; claim: readonly string[]; manufacturer: readonly string[] }): TrustedIssuers {
  const known = (role: KnownCa['role'], pem: string): KnownCa => {
    const certificate = parse(pem);
    return { role, certificate, fingerprint: normaliseFingerprint(certificate.fingerprint256) };
  };
  return {
    device: pems.device.map((pem) => known('device', pem)),
    claim: pems.claim.map((pem) => known('claim', pem)),
    manufacturer: pems.manufacturer.map((pem) => known('manufacturer', pem)),
    checkedLeaves: new Map(),
  };
}
