import { pemBlocks, toHex } from './encoding.ts';
import { x509 } from './x509.ts';

/**
 * What a device keeps from a trust bundle it received (`$fleetgate/trust/bundle`, GET /v1/pki/trust-bundle):
 * the roots it already trusts that the bundle still lists, and each new root the bundle vouches for with a
 * cross-certificate signed by a root the device already trusts. A bundle is never trusted for what it says
 * about itself: a forged bundle adds nothing, and a bundle that names none of the device's roots is ignored
 * (the device keeps what it had).
 *
 * A cross-certificate counts only if it is one a root rotation makes (provisioning/certificate-authorities.ts),
 * signed by a root the device trusts (self-issued, allowed to sign CAs): a CA certificate allowed to sign CAs below it (basicConstraints CA with no path length or one of at least
 * 1, keyUsage keyCertSign), valid at `now`, with the new root's subject and key. An issuing CA (path length 0)
 * is not one: otherwise whoever stole a device CA's key could self-sign that CA as a "root" and have devices
 * keep it for good.
 */
export async function rootsToTrust(trusted: readonly string[], bundlePem: string, now: Date): Promise<string[]> {
  const parse = (pem: string) => pemBlocks(pem, ['CERTIFICATE']).map((der) => new x509.X509Certificate(der));
  const known = trusted.flatMap(parse);
  const offered = parse(bundlePem);
  const validNow = (certificate: x509.X509Certificate) => certificate.notBefore.getTime() <= now.getTime() && now.getTime() <= certificate.notAfter.getTime();
  const signsCas = (certificate: x509.X509Certificate, minimumPathLength: number) => {
    const constraints = certificate.getExtension(x509.BasicConstraintsExtension);
    const usages = certificate.getExtension(x509.KeyUsagesExtension);
    return (
      constraints?.ca === true &&
      (constraints.pathLength === undefined || constraints.pathLength >= minimumPathLength) &&
      usages !== null &&
      (usages.usages & x509.KeyUsageFlags.keyCertSign) !== 0
    );
  };
  const isRoot = async (certificate: x509.X509Certificate) =>
    certificate.subject === certificate.issuer && signsCas(certificate, 1) && validNow(certificate) && (await certificate.verify({ signatureOnly: true }));
  const sameKey = (a: x509.X509Certificate, b: x509.X509Certificate) => a.subject === b.subject && toHex(a.publicKey.rawData) === toHex(b.publicKey.rawData);

  const keep: x509.X509Certificate[] = [];
  for (const root of offered) {
    if (known.some((certificate) => certificate.equal(root))) {
      keep.push(root);
      continue;
    }
    if (!(await isRoot(root))) continue;
    for (const cross of offered) {
      if (cross === root || !sameKey(cross, root) || !signsCas(cross, 1) || !validNow(cross)) continue;
      // Signed by a root the device trusts: never by an issuing CA its CA file might also list.
      const signer = known.find((certificate) => certificate.subject === cross.issuer && certificate.subject === certificate.issuer && signsCas(certificate, 1));
      if (signer !== undefined && (await cross.verify({ publicKey: signer.publicKey, signatureOnly: true }))) {
        keep.push(root);
        break;
      }
    }
  }
  return (keep.length > 0 ? keep : known).map((certificate) => certificate.toString('pem') + '\n');
}
