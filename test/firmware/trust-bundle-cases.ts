import { type CaCredential, createIssuingCa, createRootCa, crossCertify, ecdsaSha256, generateKeyPair, rootsToTrust, systemClock, x509 } from '../../core/index.ts';

/**
 * Crafted trust bundles for the firmware samples' own implementations of the rule in README "The trust
 * bundle" (core rootsToTrust): honest rotations and the attacker's bundles. Each case also states what core
 * keeps, so a test can hold a sample to core's answer as well as to `expected`.
 */
export interface TrustCase {
  readonly name: string;
  /** The roots the device trusts now (its CA file). */
  readonly trusted: string;
  /** The bundle it receives. */
  readonly bundle: string;
  /** The roots it must trust afterwards. */
  readonly expected: readonly string[];
}

const pem = (certificate: x509.X509Certificate) => certificate.toString('pem') + '\n';
const hourMs = 3600_000;

/** A certificate signed by `signingKey` with exactly these fields: what an attacker can make. */
async function forge(options: {
  subject: string;
  issuer: string;
  publicKey: CryptoKey | x509.PublicKey;
  signingKey: CryptoKey;
  pathLength?: number;
  notBefore?: Date;
  notAfter?: Date;
  keyUsage?: number;
}): Promise<x509.X509Certificate> {
  return x509.X509CertificateGenerator.create({
    serialNumber: Math.floor(Math.random() * 0xffffff).toString(16).padStart(6, '1'),
    subject: options.subject,
    issuer: options.issuer,
    notBefore: options.notBefore ?? new Date(Date.now() - hourMs),
    notAfter: options.notAfter ?? new Date(Date.now() + 365 * 24 * hourMs),
    signingAlgorithm: ecdsaSha256,
    publicKey: options.publicKey,
    signingKey: options.signingKey,
    extensions: [
      new x509.BasicConstraintsExtension(true, options.pathLength, true),
      new x509.KeyUsagesExtension(options.keyUsage ?? x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    ],
  });
}

export async function trustCases(): Promise<TrustCase[]> {
  const oldRoot = await createRootCa({ commonName: 'fw old root', clock: systemClock });
  const newRoot = await createRootCa({ commonName: 'fw new root', clock: systemClock });
  const cross = await crossCertify({ subject: newRoot.certificate, issuer: oldRoot, clock: systemClock });
  const backCross = await crossCertify({ subject: oldRoot.certificate, issuer: newRoot, clock: systemClock });
  const deviceCa = await createIssuingCa({ issuer: oldRoot, commonName: 'fw device CA', clock: systemClock });
  const stranger = await createRootCa({ commonName: 'fw stranger root', clock: systemClock });
  const old = pem(oldRoot.certificate);
  const fresh = pem(newRoot.certificate);

  // Whoever stole the device CA's key self-signs it as a root; its real certificate (signed by the trusted
  // root, same subject and key) then looks like a cross-certificate, but it has path length 0.
  const stolenAsRoot = await forge({
    subject: deviceCa.certificate.subject,
    issuer: deviceCa.certificate.subject,
    publicKey: deviceCa.certificate.publicKey,
    signingKey: deviceCa.privateKey,
    pathLength: 1,
  });
  // A "cross-certificate" naming the trusted root as issuer, signed by the attacker's own key.
  const attacker = await generateKeyPair();
  const attackerRoot = await forge({ subject: 'CN=fw attacker root', issuer: 'CN=fw attacker root', publicKey: attacker.publicKey, signingKey: attacker.privateKey, pathLength: 1 });
  const crossByIssuingCa = await forge({ subject: 'CN=fw attacker root', issuer: deviceCa.certificate.subject, publicKey: attacker.publicKey, signingKey: deviceCa.privateKey, pathLength: 1 });
  const forgedCross = await forge({ subject: 'CN=fw attacker root', issuer: oldRoot.certificate.subject, publicKey: attacker.publicKey, signingKey: attacker.privateKey, pathLength: 1 });
  // A genuine cross-certificate that expired, and one that is not valid yet.
  const expiredCross = await forge({
    subject: newRoot.certificate.subject,
    issuer: oldRoot.certificate.subject,
    publicKey: newRoot.certificate.publicKey,
    signingKey: oldRoot.privateKey,
    pathLength: 1,
    notBefore: new Date(Date.now() - 48 * hourMs),
    notAfter: new Date(Date.now() - 24 * hourMs),
  });
  const futureCross = await forge({
    subject: newRoot.certificate.subject,
    issuer: oldRoot.certificate.subject,
    publicKey: newRoot.certificate.publicKey,
    signingKey: oldRoot.privateKey,
    pathLength: 1,
    notBefore: new Date(Date.now() + 24 * hourMs),
  });
  // A cross-certificate without keyCertSign, and a new "root" that is not allowed to sign CAs.
  const crossWithoutCertSign = await forge({
    subject: newRoot.certificate.subject,
    issuer: oldRoot.certificate.subject,
    publicKey: newRoot.certificate.publicKey,
    signingKey: oldRoot.privateKey,
    pathLength: 1,
    keyUsage: x509.KeyUsageFlags.cRLSign,
  });
  const leafCa: CaCredential = await (async () => {
    const keys = await generateKeyPair();
    const certificate = await forge({ subject: 'CN=fw path-0 root', issuer: 'CN=fw path-0 root', publicKey: keys.publicKey, signingKey: keys.privateKey, pathLength: 0 });
    return { certificate, privateKey: keys.privateKey };
  })();
  const leafCaCross = await forge({ subject: 'CN=fw path-0 root', issuer: oldRoot.certificate.subject, publicKey: leafCa.certificate.publicKey, signingKey: oldRoot.privateKey, pathLength: 1 });

  const cases: TrustCase[] = [
    { name: 'a root rotation: keeps the new root the old one cross-signs', trusted: old, bundle: old + fresh + pem(cross) + pem(backCross) + pem(deviceCa.certificate), expected: [old, fresh] },
    { name: 'after the old root retired: keeps only the new root', trusted: old + fresh, bundle: fresh, expected: [fresh] },
    { name: 'a self-signed root nobody trusted cross-signs is ignored', trusted: old, bundle: old + pem(stranger.certificate), expected: [old] },
    { name: 'an issuing CA self-signed under its own name is ignored', trusted: old, bundle: old + pem(stolenAsRoot) + pem(deviceCa.certificate), expected: [old] },
    { name: 'a cross-certificate naming the trusted root but signed by another key is ignored', trusted: old, bundle: old + pem(attackerRoot) + pem(forgedCross), expected: [old] },
    {
      name: 'a cross-certificate signed by an issuing CA the CA file also lists (its key stolen) is ignored',
      trusted: old + pem(deviceCa.certificate),
      bundle: old + pem(attackerRoot) + pem(crossByIssuingCa),
      expected: [old],
    },
    { name: 'an expired cross-certificate is ignored', trusted: old, bundle: old + fresh + pem(expiredCross), expected: [old] },
    { name: 'a cross-certificate not valid yet is ignored', trusted: old, bundle: old + fresh + pem(futureCross), expected: [old] },
    { name: 'a cross-certificate without keyCertSign is ignored', trusted: old, bundle: old + fresh + pem(crossWithoutCertSign), expected: [old] },
    { name: 'a new root with path length 0 is ignored', trusted: old, bundle: old + pem(leafCa.certificate) + pem(leafCaCross), expected: [old] },
    { name: 'a bundle naming none of its roots changes nothing', trusted: old, bundle: pem(stranger.certificate), expected: [old] },
    { name: 'a bundle with the new root alone and no cross-certificate changes nothing', trusted: old, bundle: fresh, expected: [old] },
    { name: 'a bundle that is not PEM changes nothing', trusted: old, bundle: 'not a bundle\n', expected: [old] },
  ];
  // The cases are the core rule's answers: a sample held to them behaves as core rootsToTrust does.
  for (const c of cases) {
    const core = await rootsToTrust([c.trusted], c.bundle, new Date());
    if (normalize(core.join('')).join() !== normalize(c.expected.join('')).join()) throw new Error(`trust case "${c.name}" disagrees with core rootsToTrust`);
  }
  return cases;
}

/** The certificates of a PEM text as base64 DER without line breaks, in order: compares PEM written by different libraries. */
export function normalize(pemText: string): string[] {
  return [...pemText.matchAll(/-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g)].map((m) => (m[1] ?? '').replace(/\s+/g, ''));
}
