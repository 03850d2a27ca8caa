import { pemBlocks } from './encoding.ts';
import { x509 } from './x509.ts';

/** RFC 7030 §4.1.3 / §4.2.3: a "certs-only" CMS SignedData (PKCS#7) carrying certificates, base64 DER. */
export function certsOnlyPkcs7Base64(pems: readonly string[]): string {
  const certificates = pems.flatMap((pem) => pemBlocks(pem, ['CERTIFICATE']).map((der) => new x509.X509Certificate(der)));
  return new x509.X509Certificates(certificates).export('base64');
}
