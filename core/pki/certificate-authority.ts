import type { Clock } from '../clock.ts';
import { FleetgateError } from '../errors.ts';
import { randomSerial, sha256Hex } from './encoding.ts';
import { ecdsaSha256, generateKeyPair } from './keys.ts';
import {
  backdateMs,
  claimUri,
  dayMs,
  deviceUri,
  issuingCaValidityDays,
  type LeafProfile,
  rootValidityDays,
  serverValidityDays,
  operatorUri,
  serviceUri,
} from './profiles.ts';
import { x509 } from './x509.ts';

/** A CA certificate with its private key. Keys stay in the process that holds custody (provisioning). */
export interface CaCredential {
  readonly certificate: x509.X509Certificate;
  readonly privateKey: CryptoKey;
  /**
   * The WebCrypto provider that holds `privateKey` and signs with it (a PKCS#11 token's, README "CA keys in an
   * HSM"); absent for a key in this process's memory (the platform's WebCrypto).
   */
  readonly crypto?: Crypto;
}

/** A new CA's key pair, made by a key store (a token generates it inside; the public half is exported). */
export interface CaKeyPair {
  readonly publicKey: x509.PublicKey;
  readonly privateKey: CryptoKey;
  readonly crypto?: Crypto;
}

/** The provider that signs with a CA's key. */
export function signerOf(credential: Pick<CaCredential, 'crypto'>): Crypto {
  return credential.crypto ?? x509.cryptoProvider.get();
}

async function ownKeyPair(keys: CaKeyPair | undefined): Promise<CaKeyPair> {
  if (keys !== undefined) return keys;
  const made = await generateKeyPair();
  return { publicKey: await x509.PublicKey.create(made.publicKey), privateKey: made.privateKey };
}

function credentialOf(certificate: x509.X509Certificate, keys: CaKeyPair): CaCredential {
  return keys.crypto === undefined ? { certificate, privateKey: keys.privateKey } : { certificate, privateKey: keys.privateKey, crypto: keys.crypto };
}

export interface IssuedCertificate {
  readonly certificate: x509.X509Certificate;
  readonly pem: string;
  /** Lower-case hex, no leading zero octet. */
  readonly serial: string;
  /** SHA-256 of the DER certificate, lower-case hex. */
  readonly fingerprint: string;
  /** SHA-256 of the SubjectPublicKeyInfo DER, lower-case hex: the key's identity across certificates. */
  readonly publicKeyHash: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

const { KeyUsageFlags } = x509;

export async function createRootCa(options: { commonName: string; clock: Clock; keys?: CaKeyPair }): Promise<CaCredential> {
  const keys = await ownKeyPair(options.keys);
  const now = options.clock.now();
  const name = `CN=${options.commonName}`;
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: name,
    issuer: name,
    notBefore: new Date(now.getTime() - backdateMs),
    notAfter: new Date(now.getTime() + rootValidityDays * dayMs),
    signingAlgorithm: ecdsaSha256,
    publicKey: keys.publicKey,
    signingKey: keys.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(true, 1, true), // RFC 5280 §4.2.1.9: critical in CA certificates
      new x509.KeyUsagesExtension(KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  }, signerOf(keys));
  return credentialOf(certificate, keys);
}

/**
 * An issuing CA under the root: pathLen 0, so it can sign leaves only, and extended key usage clientAuth
 * only, so that its key cannot vouch for a server: OpenSSL (and the TLS stacks that follow RFC 5280 the same
 * way) refuses a server certificate whose chain holds a CA restricted to clientAuth. Whoever steals a device
 * or claim CA key cannot impersonate the gateway to devices; the server certificate comes from the root.
 */
export async function createIssuingCa(options: { issuer: CaCredential; commonName: string; clock: Clock; keys?: CaKeyPair }): Promise<CaCredential> {
  const keys = await ownKeyPair(options.keys);
  const now = options.clock.now();
  const notAfter = new Date(Math.min(now.getTime() + issuingCaValidityDays * dayMs, options.issuer.certificate.notAfter.getTime()));
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: `CN=${options.commonName}`,
    issuer: options.issuer.certificate.subjectName,
    notBefore: new Date(now.getTime() - backdateMs),
    notAfter,
    signingAlgorithm: ecdsaSha256,
    publicKey: keys.publicKey,
    signingKey: options.issuer.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(options.issuer.certificate),
    ],
  }, signerOf(options.issuer));
  return credentialOf(certificate, keys);
}

/**
 * A cross-certificate (RFC 4158 §2.3): `subject`'s name and public key, signed by another root, so that a
 * device trusting only `issuer` can still build a path to a certificate `subject` signed. Used during a root
 * rotation in both directions; path length 1 like a root, so it vouches for issuing CAs and the server only.
 */
export async function crossCertify(options: { subject: x509.X509Certificate; issuer: CaCredential; clock: Clock }): Promise<x509.X509Certificate> {
  const now = options.clock.now();
  const notAfter = new Date(Math.min(options.subject.notAfter.getTime(), options.issuer.certificate.notAfter.getTime()));
  return x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: options.subject.subjectName,
    issuer: options.issuer.certificate.subjectName,
    notBefore: new Date(now.getTime() - backdateMs),
    notAfter,
    signingAlgorithm: ecdsaSha256,
    publicKey: options.subject.publicKey,
    signingKey: options.issuer.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(true, 1, true),
      new x509.KeyUsagesExtension(KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(options.subject.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(options.issuer.certificate),
    ],
  }, signerOf(options.issuer));
}

/**
 * Issues a leaf certificate for `publicKey` (already checked: see csr.ts) under `profile`. Subject, SANs,
 * key usages and validity come from the profile only. The certificate never outlives its issuer.
 */
export async function issueCertificate(options: {
  issuer: CaCredential;
  publicKey: x509.PublicKey | CryptoKey;
  profile: LeafProfile;
  clock: Clock;
}): Promise<IssuedCertificate> {
  const { issuer, profile } = options;
  const now = options.clock.now().getTime();
  const notBefore = new Date(now - backdateMs);
  const requestedNotAfter =
    profile.kind === 'claim' ? profile.notAfter.getTime() : now + (profile.kind === 'server' ? serverValidityDays : profile.validityDays) * dayMs;
  const notAfter = new Date(Math.min(requestedNotAfter, issuer.certificate.notAfter.getTime()));
  if (notAfter.getTime() <= now) throw new FleetgateError('PKI_CA_EXPIRED', { detail: { issuerNotAfter: issuer.certificate.notAfter.toISOString() } });
  const publicKey = options.publicKey instanceof x509.PublicKey ? options.publicKey : await x509.PublicKey.create(options.publicKey);

  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: subjectFor(profile),
    issuer: issuer.certificate.subjectName,
    notBefore,
    notAfter,
    signingAlgorithm: ecdsaSha256,
    publicKey,
    signingKey: issuer.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(keyUsageFor(publicKey), true),
      new x509.ExtendedKeyUsageExtension([profile.kind === 'server' ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension(alternativeNamesFor(profile)),
      await x509.SubjectKeyIdentifierExtension.create(publicKey),
      await authorityKeyIdentifier(issuer.certificate),
      ...revocationExtensions(profile),
    ],
  }, signerOf(issuer));
  return describeCertificate(certificate);
}

/** The same for every certificate an issuer signs; computing it costs ~0.65 ms per enrollment otherwise. */
const authorityKeyIdentifiers = new WeakMap<x509.X509Certificate, Promise<x509.AuthorityKeyIdentifierExtension>>();
function authorityKeyIdentifier(issuer: x509.X509Certificate): Promise<x509.AuthorityKeyIdentifierExtension> {
  let extension = authorityKeyIdentifiers.get(issuer);
  if (extension === undefined) {
    extension = x509.AuthorityKeyIdentifierExtension.create(issuer);
    authorityKeyIdentifiers.set(issuer, extension);
  }
  return extension;
}

export async function describeCertificate(certificate: x509.X509Certificate): Promise<IssuedCertificate> {
  return {
    certificate,
    pem: certificate.toString('pem') + '\n',
    serial: normaliseSerial(certificate.serialNumber),
    fingerprint: await sha256Hex(certificate.rawData),
    publicKeyHash: await sha256Hex(certificate.publicKey.rawData),
    notBefore: certificate.notBefore,
    notAfter: certificate.notAfter,
  };
}

/** @peculiar writes lower-case hex, Node's TLS upper-case, and either may keep a leading "00" octet. */
export function normaliseSerial(serial: string): string {
  return serial.toLowerCase().replace(/^(00)+(?=[0-9a-f]{2})/, '');
}

/** Built as a structured name, never by pasting strings, so no value can smuggle in extra RDNs. */
function subjectFor(profile: LeafProfile): x509.JsonName {
  return [{ CN: [commonNameFor(profile)] }];
}

function commonNameFor(profile: LeafProfile): string {
  switch (profile.kind) {
    case 'device':
      return profile.deviceId;
    case 'service':
    case 'operator':
      return profile.name;
    case 'claim':
      return `claim ${profile.claimId}`;
    case 'server':
      return profile.dnsNames[0] ?? 'localhost';
  }
}

function alternativeNamesFor(profile: LeafProfile): x509.JsonGeneralName[] {
  switch (profile.kind) {
    case 'device':
      return [{ type: 'url', value: deviceUri(profile.deviceId) }];
    case 'service':
      return [{ type: 'url', value: serviceUri(profile.name) }];
    case 'operator':
      return [{ type: 'url', value: operatorUri(profile.name) }];
    case 'claim':
      return [{ type: 'url', value: claimUri(profile.claimId) }];
    case 'server':
      return [...profile.dnsNames.map((value) => ({ type: 'dns' as const, value })), ...profile.ipAddresses.map((value) => ({ type: 'ip' as const, value }))];
  }
}

/** RFC 5280 §4.2.1.3; TLS 1.2 RSA key exchange also needs keyEncipherment. */
function keyUsageFor(publicKey: x509.PublicKey): number {
  return publicKey.algorithm.name === 'ECDSA'
    ? KeyUsageFlags.digitalSignature
    : KeyUsageFlags.digitalSignature | KeyUsageFlags.keyEncipherment;
}

function revocationExtensions(profile: LeafProfile): x509.Extension[] {
  if ((profile.kind !== 'device' && profile.kind !== 'service') || profile.revocation === undefined) return [];
  return [
    new x509.CRLDistributionPointsExtension([profile.revocation.crl]),
    new x509.AuthorityInfoAccessExtension({ ocsp: [profile.revocation.ocsp] }),
  ];
}
