import { createCsr, generateKeyPair, privateKeyToPem, x509 } from '../../core/index.ts';

/** A device's own key pair and a CSR for it, as firmware would make them. */
export async function deviceKeyAndCsr(commonName: string, extensions: x509.Extension[] = []): Promise<{ key: string; csr: string }> {
  const keys = await generateKeyPair();
  const csr =
    extensions.length === 0
      ? await createCsr(keys, commonName)
      : (await x509.Pkcs10CertificateRequestGenerator.create({ name: `CN=${commonName}`, keys, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' }, extensions })).toString('pem');
  return { key: await privateKeyToPem(keys.privateKey), csr };
}

/** A CSR for an arbitrary WebCrypto key (RSA sizes, other curves). */
export async function csrForKey(commonName: string, algorithm: RsaHashedKeyGenParams | EcKeyGenParams, signing: Algorithm | EcdsaParams): Promise<string> {
  const keys = (await globalThis.crypto.subtle.generateKey(algorithm, true, ['sign', 'verify'])) as CryptoKeyPair;
  return (await x509.Pkcs10CertificateRequestGenerator.create({ name: `CN=${commonName}`, keys, signingAlgorithm: signing })).toString('pem');
}
