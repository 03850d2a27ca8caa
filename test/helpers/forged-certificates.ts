import { type CaCredential, dayMs, ecdsaSha256, generateKeyPair, privateKeyToPem, x509 } from '../../core/index.ts';
import type { ClientCredential } from './test-gateway.ts';

/**
 * The forgery of an attacker holding a CA key the gateway trusts for something else (a registered
 * manufacturer CA): a clientAuth leaf carrying whatever serial, CN and URI SAN the victim's certificate
 * shows, sent followed by `chain` (a copy of the device CA certificate, say), so that a server reading the
 * issuer from what the peer sent takes it for one of its own device certificates.
 */
export async function forgedLeaf(
  signer: CaCredential,
  options: { serial: string; commonName: string; uri: string; chain: string; notBefore?: Date; notAfter?: Date; serverAuth?: boolean },
): Promise<ClientCredential & { der: Uint8Array }> {
  const keys = await generateKeyPair();
  const now = Date.now();
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: options.serial,
    subject: [{ CN: [options.commonName] }],
    issuer: signer.certificate.subjectName,
    notBefore: options.notBefore ?? new Date(now - 5 * 60_000),
    notAfter: options.notAfter ?? new Date(now + 30 * dayMs),
    signingAlgorithm: ecdsaSha256,
    publicKey: keys.publicKey,
    signingKey: signer.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([options.serverAuth ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: options.uri }]),
      await x509.AuthorityKeyIdentifierExtension.create(signer.certificate),
    ],
  });
  return { key: await privateKeyToPem(keys.privateKey), cert: `${leaf.toString('pem')}\n${options.chain}`, der: new Uint8Array(leaf.rawData) };
}
