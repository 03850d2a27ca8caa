import { pemBlocks, toHex } from './encoding.ts';
import { x509 } from './x509.ts';

/**
 * What a device keeps from a trust bundle it received (`$fleetgate/trust/bundle`, GET /v1/pki/trust-bundle):
 * the roots it already trusts that the bundle still lists, and each new root the bundle vouches for with a
 * cross-certificate signed by a root the device already trusts (same subject and key as the new root). A
 * bundle is never trusted for what it says about itself: a forged bundle adds nothing, and a bundle that
 * drops every root the device knows is ignored (the device keeps what it had). Returns PEM certificates.
 */
export async function rootsToTrust(trusted: readonly string[], bundlePem: string): Promise<string[]> {
  const parse = (pem: string) => pemBlocks(pem, ['CERTIFICATE']).map((der) => new x509.X509Certificate(der));
  const known = trusted.flatMap(parse);
  const offered = parse(bundlePem);
  const isSelfSigned = async (certificate: x509.X509Certificate) => certificate.subject === certificate.issuer && (await certificate.verify({ signatureOnly: true }));
  const sameKey = (a: x509.X509Certificate, b: x509.X509Certificate) => a.subject === b.subject && toHex(a.publicKey.rawData) === toHex(b.publicKey.rawData);
  const keep: x509.X509Certificate[] = [];
  for (const root of offered) {
    if (!(await isSelfSigned(root))) continue;
    if (known.some((certificate) => certificate.equal(root))) {
      keep.push(root);
      continue;
    }
    for (const cross of offered) {
      if (!sameKey(cross, root) || cross.subject === cross.issuer) continue;
      const signer = known.find((certificate) => certificate.subject === cross.issuer);
      if (signer !== undefined && (await cross.verify({ publicKey: signer.publicKey, signatureOnly: true }))) {
        keep.push(root);
        break;
      }
    }
  }
  return (keep.length > 0 ? keep : known).map((certificate) => certificate.toString('pem') + '\n');
}
