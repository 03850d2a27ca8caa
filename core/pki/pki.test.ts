import { beforeAll, describe, expect, it } from 'vitest';
import { fixedClock } from '../clock.ts';
import type { CaCredential } from './certificate-authority.ts';
import { createIssuingCa, createRootCa, describeCertificate, issueCertificate, normaliseSerial } from './certificate-authority.ts';
import { checkCsr, createCsr, decodeCsr } from './csr.ts';
import { sha256Hex, toBase64, toPem } from './encoding.ts';
import { generateKeyPair, privateKeyFromPem, privateKeyToPem } from './keys.ts';
import type { LeafProfile, RevocationUrls } from './profiles.ts';
import { backdateMs, dayMs } from './profiles.ts';
import { x509 } from './x509.ts';

/** A throwaway PKI at a fixed date (the certificates are checked at that date, not today's). */
const clock = fixedClock('2030-01-01T00:00:00Z');
const now = clock.now().getTime();
const revocation: RevocationUrls = { crl: 'https://gw.example:8443/v1/pki/crl', ocsp: 'https://gw.example:8443/v1/pki/ocsp' };
const oids = {
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectAltName: '2.5.29.17',
  subjectKeyId: '2.5.29.14',
  authorityKeyId: '2.5.29.35',
  crlDistributionPoints: '2.5.29.31',
  authorityInfoAccess: '1.3.6.1.5.5.7.1.1',
} as const;

const { KeyUsageFlags } = x509;
const ecdsaSha256 = { name: 'ECDSA', hash: 'SHA-256' };
const rsaPkcs1 = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };

let root: CaCredential;
let deviceCa: CaCredential;
let deviceKeys: CryptoKeyPair;

beforeAll(async () => {
  root = await createRootCa({ commonName: 'fleetgate test root', clock });
  deviceCa = await createIssuingCa({ issuer: root, commonName: 'fleetgate test devices', clock });
  deviceKeys = await generateKeyPair();
});

function deviceProfile(overrides: Partial<Extract<LeafProfile, { kind: 'device' }>> = {}): LeafProfile {
  return { kind: 'device', deviceId: 'sensor-0001', validityDays: 365, revocation, ...overrides };
}

async function csrFor(keys: CryptoKeyPair, signingAlgorithm: Algorithm | EcdsaParams, extra: Partial<x509.Pkcs10CertificateRequestCreateParams> = {}) {
  return x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=requested-by-device, O=Evil Corp', keys, signingAlgorithm, ...extra });
}

function pemOf(der: ArrayBuffer | Uint8Array, label = 'CERTIFICATE REQUEST'): string {
  return toPem(label, der);
}

function expectCode(code: string) {
  return expect.objectContaining({ name: 'FleetgateError', code });
}

describe('CA certificates', () => {
  it('root: self-signed, CA:TRUE pathLen 1 critical, keyCertSign|cRLSign critical, back-dated 5 minutes', async () => {
    const cert = root.certificate;
    expect(cert.subject).toBe('CN=fleetgate test root');
    expect(cert.issuer).toBe(cert.subject);
    expect(cert.notBefore.getTime()).toBe(now - backdateMs);
    expect(cert.notAfter.getTime()).toBe(now + 20 * 365 * dayMs);
    const bc = cert.getExtension(x509.BasicConstraintsExtension);
    expect(bc).toMatchObject({ ca: true, pathLength: 1, critical: true });
    expect(cert.getExtension(x509.KeyUsagesExtension)).toMatchObject({ usages: KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign, critical: true });
    expect(await cert.verify({ publicKey: cert.publicKey, date: clock.now() })).toBe(true);
    expect(await cert.isSelfSigned()).toBe(true);
  });

  it('issuing CA: signed by the root, pathLen 0, AKI = root SKI, never outlives the root', async () => {
    const cert = deviceCa.certificate;
    expect(cert.issuer).toBe(root.certificate.subject);
    expect(cert.getExtension(x509.BasicConstraintsExtension)).toMatchObject({ ca: true, pathLength: 0, critical: true });
    expect(cert.notAfter.getTime()).toBe(now + 10 * 365 * dayMs);
    expect(await cert.verify({ publicKey: root.certificate.publicKey, date: clock.now() })).toBe(true);
    expect(await cert.verify({ publicKey: cert.publicKey, signatureOnly: true })).toBe(false);
    expect(cert.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId).toBe(root.certificate.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId);

    // Issued 15 years later, the 10-year issuing CA is cut at the root's end of life.
    const later = fixedClock(new Date(now + 15 * 365 * dayMs));
    const late = await createIssuingCa({ issuer: root, commonName: 'late', clock: later });
    expect(late.certificate.notAfter.getTime()).toBe(root.certificate.notAfter.getTime());
  });

  it('private keys round-trip through PKCS#8 PEM; anything else is PKI_PEM_MALFORMED', async () => {
    const pem = await privateKeyToPem(deviceCa.privateKey);
    expect(pem).toMatch(/^-----BEGIN PRIVATE KEY-----\n[A-Za-z0-9+/=\n]+\n-----END PRIVATE KEY-----\n$/);
    const key = await privateKeyFromPem(pem);
    const data = new TextEncoder().encode('proof');
    const signature = await globalThis.crypto.subtle.sign(ecdsaSha256, key, data);
    const publicKey = await deviceCa.certificate.publicKey.export();
    expect(await globalThis.crypto.subtle.verify(ecdsaSha256, publicKey, signature, data)).toBe(true);
    for (const bad of ['', 'not pem', deviceCa.certificate.toString('pem'), pemOf(new Uint8Array([0x30, 0x00]), 'PRIVATE KEY')]) {
      await expect(privateKeyFromPem(bad)).rejects.toThrow(expectCode('PKI_PEM_MALFORMED'));
    }
  });
});

describe('device certificate profile', () => {
  let issued: Awaited<ReturnType<typeof issueCertificate>>;
  let cert: x509.X509Certificate;
  let checked: Awaited<ReturnType<typeof checkCsr>>;

  beforeAll(async () => {
    checked = await checkCsr(await createCsr(deviceKeys, 'whatever-the-device-asks'));
    issued = await issueCertificate({ issuer: deviceCa, publicKey: checked.publicKey, profile: deviceProfile(), clock });
    cert = issued.certificate;
  });

  it('subject CN = device id, issuer = the device CA; the requested subject is not copied', () => {
    expect(cert.subject).toBe('CN=sensor-0001');
    expect(cert.issuer).toBe(deviceCa.certificate.subject);
    expect(checked.requestedSubject).toBe('CN=whatever-the-device-asks');
  });

  it('SAN is exactly the device URI', () => {
    const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
    expect(san?.names.toJSON()).toEqual([{ type: 'url', value: 'urn:fleetgate:device:sensor-0001' }]);
  });

  it('EKU is clientAuth only; key usage digitalSignature (critical) for an EC key', () => {
    expect([...(cert.getExtension(x509.ExtendedKeyUsageExtension)?.usages ?? [])]).toEqual([x509.ExtendedKeyUsage.clientAuth]);
    expect(cert.getExtension(x509.KeyUsagesExtension)).toMatchObject({ usages: KeyUsageFlags.digitalSignature, critical: true });
  });

  it('basicConstraints CA:FALSE, critical, no path length', () => {
    const bc = cert.getExtension(x509.BasicConstraintsExtension);
    expect(bc).toMatchObject({ ca: false, critical: true });
    expect(bc?.pathLength).toBeUndefined();
  });

  it('has exactly the profile extensions, with CRL DP and OCSP pointing at the API', () => {
    expect(cert.extensions.map((extension) => extension.type).sort()).toEqual(Object.values(oids).sort());
    const crl = cert.getExtension(x509.CRLDistributionPointsExtension);
    expect(crl?.distributionPoints.map((point) => point.distributionPoint?.fullName?.map((name) => name.uniformResourceIdentifier))).toEqual([[revocation.crl]]);
    expect(cert.getExtension(x509.AuthorityInfoAccessExtension)?.ocsp.map((name) => name.toJSON())).toEqual([{ type: 'url', value: revocation.ocsp }]);
  });

  it('leaves out CRL DP and OCSP when no revocation URLs are given', async () => {
    const { revocation: _omit, ...bare } = deviceProfile() as Extract<LeafProfile, { kind: 'device' }>;
    const plain = await issueCertificate({ issuer: deviceCa, publicKey: checked.publicKey, profile: bare, clock });
    expect(plain.certificate.getExtension(x509.CRLDistributionPointsExtension)).toBeNull();
    expect(plain.certificate.getExtension(x509.AuthorityInfoAccessExtension)).toBeNull();
  });

  it('AKI = device CA SKI; SKI belongs to the device key', async () => {
    expect(cert.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId).toBe(deviceCa.certificate.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId);
    const expected = await x509.SubjectKeyIdentifierExtension.create(deviceKeys.publicKey);
    expect(cert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId).toBe(expected.keyId);
  });

  it('notBefore = now − 5 min, notAfter = now + validityDays', () => {
    expect(cert.notBefore.getTime()).toBe(now - 5 * 60 * 1000);
    expect(cert.notAfter.getTime()).toBe(now + 365 * dayMs);
    expect(issued.notBefore).toEqual(cert.notBefore);
    expect(issued.notAfter).toEqual(cert.notAfter);
  });

  it.each([1, 30, 3650])('validity of %i days', async (validityDays) => {
    const short = await issueCertificate({ issuer: deviceCa, publicKey: checked.publicKey, profile: deviceProfile({ validityDays }), clock });
    expect(short.notAfter.getTime()).toBe(now + validityDays * dayMs);
  });

  it('never outlives the issuer', async () => {
    const long = await issueCertificate({ issuer: deviceCa, publicKey: checked.publicKey, profile: deviceProfile({ validityDays: 100 * 365 }), clock });
    expect(long.notAfter.getTime()).toBe(deviceCa.certificate.notAfter.getTime());
    const nearEnd = fixedClock(new Date(deviceCa.certificate.notAfter.getTime() - 10 * dayMs));
    const late = await issueCertificate({ issuer: deviceCa, publicKey: checked.publicKey, profile: deviceProfile(), clock: nearEnd });
    expect(late.notAfter.getTime()).toBe(deviceCa.certificate.notAfter.getTime());
    expect(late.notBefore.getTime()).toBeLessThan(late.notAfter.getTime());
  });

  it('serial: 128-bit, positive, no leading 00 octet, fresh every time', async () => {
    const serials = new Set<string>();
    for (let i = 0; i < 8; i++) {
      const again = await issueCertificate({ issuer: deviceCa, publicKey: checked.publicKey, profile: deviceProfile(), clock });
      const hex = again.certificate.serialNumber.toLowerCase();
      expect(hex).toMatch(/^[0-9a-f]{32}$/); // 16 octets as encoded: no leading 00 added
      expect(Number.parseInt(hex.slice(0, 2), 16)).toBeGreaterThan(0); // no leading zero octet to strip
      expect(Number.parseInt(hex.slice(0, 2), 16)).toBeLessThan(0x80); // positive [RFC 5280 §4.1.2.2]
      expect(again.serial).toBe(hex);
      serials.add(hex);
    }
    expect(serials.size).toBe(8);
  });

  it('the signature verifies against the issuer, and only the issuer', async () => {
    expect(await cert.verify({ publicKey: deviceCa.certificate.publicKey, date: clock.now() })).toBe(true);
    expect(await cert.verify({ publicKey: deviceCa.certificate.publicKey, signatureOnly: true })).toBe(true);
    expect(await cert.verify({ publicKey: root.certificate.publicKey, signatureOnly: true })).toBe(false);
    expect(await cert.verify({ publicKey: deviceCa.certificate.publicKey, date: new Date(now + 366 * dayMs) })).toBe(false); // expired by then
  });

  it('a chain built from the certificates reaches the root', async () => {
    const chain = await new x509.X509ChainBuilder({ certificates: [root.certificate, deviceCa.certificate] }).build(cert);
    expect(chain.map((c) => c.subject)).toEqual(['CN=sensor-0001', 'CN=fleetgate test devices', 'CN=fleetgate test root']);
  });

  it('describes the certificate: PEM, fingerprint and the key hash that matches the CSR', async () => {
    expect(issued.pem).toMatch(/^-----BEGIN CERTIFICATE-----\n[\s\S]+\n-----END CERTIFICATE-----\n$/);
    expect(new x509.X509Certificate(issued.pem).serialNumber).toBe(cert.serialNumber);
    expect(issued.fingerprint).toBe(await sha256Hex(cert.rawData));
    expect(issued.fingerprint).toMatch(/^[0-9a-f]{64}$/);
    // The same key has the same hash in the CSR and in every certificate: that is what binds a key to one device.
    expect(issued.publicKeyHash).toBe(checked.publicKeyHash);
    expect((await describeCertificate(cert)).publicKeyHash).toBe(checked.publicKeyHash);
    expect(issued.publicKeyHash).not.toBe((await describeCertificate(deviceCa.certificate)).publicKeyHash);
  });

  it('accepts a CryptoKey as well as a PublicKey', async () => {
    const fromCryptoKey = await issueCertificate({ issuer: deviceCa, publicKey: deviceKeys.publicKey, profile: deviceProfile(), clock });
    expect(fromCryptoKey.publicKeyHash).toBe(checked.publicKeyHash);
  });
});

describe('other leaf profiles', () => {
  it('service: CN = name, service URI, clientAuth', async () => {
    const { certificate } = await issueCertificate({ issuer: deviceCa, publicKey: deviceKeys.publicKey, profile: { kind: 'service', name: 'analytics', validityDays: 30 }, clock });
    expect(certificate.subject).toBe('CN=analytics');
    expect(certificate.getExtension(x509.SubjectAlternativeNameExtension)?.names.toJSON()).toEqual([{ type: 'url', value: 'urn:fleetgate:service:analytics' }]);
    expect([...(certificate.getExtension(x509.ExtendedKeyUsageExtension)?.usages ?? [])]).toEqual([x509.ExtendedKeyUsage.clientAuth]);
  });

  it('claim: claim URI, clientAuth, the notAfter asked for (capped by the issuer)', async () => {
    const notAfter = new Date(now + 30 * dayMs);
    const { certificate } = await issueCertificate({ issuer: deviceCa, publicKey: deviceKeys.publicKey, profile: { kind: 'claim', claimId: 'batch-7', notAfter }, clock });
    expect(certificate.subject).toBe('CN=claim batch-7');
    expect(certificate.getExtension(x509.SubjectAlternativeNameExtension)?.names.toJSON()).toEqual([{ type: 'url', value: 'urn:fleetgate:claim:batch-7' }]);
    expect(certificate.notAfter).toEqual(notAfter);
    expect(certificate.getExtension(x509.CRLDistributionPointsExtension)).toBeNull();
    const capped = await issueCertificate({ issuer: deviceCa, publicKey: deviceKeys.publicKey, profile: { kind: 'claim', claimId: 'x', notAfter: new Date(now + 100 * 365 * dayMs) }, clock });
    expect(capped.notAfter).toEqual(deviceCa.certificate.notAfter);
  });

  it('server: serverAuth only, DNS and IP SANs', async () => {
    const { certificate } = await issueCertificate({
      issuer: deviceCa,
      publicKey: deviceKeys.publicKey,
      profile: { kind: 'server', dnsNames: ['gw.example', 'localhost'], ipAddresses: ['127.0.0.1'] },
      clock,
    });
    expect(certificate.subject).toBe('CN=gw.example');
    expect([...(certificate.getExtension(x509.ExtendedKeyUsageExtension)?.usages ?? [])]).toEqual([x509.ExtendedKeyUsage.serverAuth]);
    expect(certificate.getExtension(x509.SubjectAlternativeNameExtension)?.names.toJSON()).toEqual([
      { type: 'dns', value: 'gw.example' },
      { type: 'dns', value: 'localhost' },
      { type: 'ip', value: '127.0.0.1' },
    ]);
    expect(certificate.getExtension(x509.BasicConstraintsExtension)).toMatchObject({ ca: false });
  });
});

describe('checkCsr: proof of possession and allowed keys', () => {
  it('accepts P-256 (createCsr), and reports the key', async () => {
    const result = await checkCsr(await createCsr(deviceKeys, 'x'));
    expect(result.keyType).toBe('EC P-256');
    expect(result.ignoredExtensions).toEqual([]);
    expect(result.publicKeyHash).toMatch(/^[0-9a-f]{64}$/);
  });

  it('accepts P-384 signed with SHA-384', async () => {
    const keys = await globalThis.crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-384' }, true, ['sign', 'verify']);
    const csr = await csrFor(keys, { name: 'ECDSA', hash: 'SHA-384' } as EcdsaParams);
    expect((await checkCsr(csr.toString('pem'))).keyType).toBe('EC P-384');
  });

  it('accepts RSA 2048 (RSASSA-PKCS1-v1_5 SHA-256), and issues it with keyEncipherment too', async () => {
    const keys = await globalThis.crypto.subtle.generateKey(
      { name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' },
      true,
      ['sign', 'verify'],
    );
    const csr = await csrFor(keys, rsaPkcs1);
    const checked = await checkCsr(csr.toString('pem'));
    expect(checked.keyType).toBe('RSA 2048');
    const { certificate } = await issueCertificate({ issuer: deviceCa, publicKey: checked.publicKey, profile: deviceProfile(), clock });
    expect(certificate.getExtension(x509.KeyUsagesExtension)?.usages).toBe(KeyUsageFlags.digitalSignature | KeyUsageFlags.keyEncipherment);
    expect(await certificate.verify({ publicKey: deviceCa.certificate.publicKey, date: clock.now() })).toBe(true);
  });

  it('refuses CSRs signed with SHA-1 (ECDSA, PKCS#1 v1.5, PSS) with PKI_CSR_SIGNATURE_ALGORITHM_REFUSED', async () => {
    const rsa = (name: string) =>
      globalThis.crypto.subtle.generateKey({ name, modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-1' }, true, ['sign', 'verify']);
    const cases: [string, CryptoKeyPair, Algorithm][] = [
      ['ECDSA with SHA-1', deviceKeys, { name: 'ECDSA', hash: 'SHA-1' } as EcdsaParams],
      ['RSASSA-PKCS1-v1_5 with SHA-1', await rsa('RSASSA-PKCS1-v1_5'), { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-1' } as RsaHashedImportParams],
      ['RSA-PSS with SHA-1', await rsa('RSA-PSS'), { name: 'RSA-PSS', hash: 'SHA-1', saltLength: 20 } as RsaPssParams & { hash: string }],
    ];
    for (const [name, keys, algorithm] of cases) {
      const csr = await csrFor(keys, algorithm);
      expect(await csr.verify(), `${name} verifies: refused for its hash, not its signature`).toBe(true);
      await expect(checkCsr(csr.toString('pem')), name).rejects.toMatchObject({ code: 'PKI_CSR_SIGNATURE_ALGORITHM_REFUSED', detail: { hash: 'SHA-1' } });
    }
  });

  it('accepts RSA-PSS with SHA-256 and ECDSA with SHA-512', async () => {
    const pss = await globalThis.crypto.subtle.generateKey({ name: 'RSA-PSS', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' }, true, ['sign', 'verify']);
    expect((await checkCsr((await csrFor(pss, { name: 'RSA-PSS', hash: 'SHA-256', saltLength: 32 } as RsaPssParams & { hash: string })).toString('pem'))).keyType).toBe('RSA 2048');
    expect((await checkCsr((await csrFor(deviceKeys, { name: 'ECDSA', hash: 'SHA-512' } as EcdsaParams)).toString('pem'))).keyType).toBe('EC P-256');
  });

  it('refuses RSA 1024 with PKI_KEY_TYPE_NOT_ALLOWED', async () => {
    const keys = await globalThis.crypto.subtle.generateKey(
      { name: 'RSASSA-PKCS1-v1_5', modulusLength: 1024, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' },
      true,
      ['sign', 'verify'],
    );
    const csr = await csrFor(keys, rsaPkcs1);
    await expect(checkCsr(csr.toString('pem'))).rejects.toThrow(expectCode('PKI_KEY_TYPE_NOT_ALLOWED'));
  });

  it('refuses Ed25519 with PKI_KEY_TYPE_NOT_ALLOWED', async () => {
    const keys = (await globalThis.crypto.subtle.generateKey({ name: 'Ed25519' }, true, ['sign', 'verify'])) as CryptoKeyPair;
    const csr = await csrFor(keys, { name: 'Ed25519' });
    await expect(checkCsr(csr.toString('pem'))).rejects.toThrow(expectCode('PKI_KEY_TYPE_NOT_ALLOWED'));
  });

  it('refuses P-521 with PKI_KEY_TYPE_NOT_ALLOWED', async () => {
    const keys = await globalThis.crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-521' }, true, ['sign', 'verify']);
    const csr = await csrFor(keys, { name: 'ECDSA', hash: 'SHA-512' } as EcdsaParams);
    await expect(checkCsr(csr.toString('pem'))).rejects.toThrow(expectCode('PKI_KEY_TYPE_NOT_ALLOWED'));
  });

  it('refuses a CSR whose signature bits were tampered with (PKI_CSR_SIGNATURE_INVALID)', async () => {
    const der = new Uint8Array((await csrFor(deviceKeys, ecdsaSha256)).rawData);
    // The DER ends with the signature BIT STRING: its last octet is the last octet of ECDSA "s".
    const tampered = der.slice();
    tampered[tampered.length - 1] = (tampered[tampered.length - 1] ?? 0) ^ 0x01;
    await expect(checkCsr(pemOf(tampered))).rejects.toThrow(expectCode('PKI_CSR_SIGNATURE_INVALID'));
    await expect(checkCsr(pemOf(der))).resolves.toMatchObject({ keyType: 'EC P-256' });
  });

  it('refuses a CSR whose signed content was changed after signing (PKI_CSR_SIGNATURE_INVALID)', async () => {
    const der = new Uint8Array((await csrFor(deviceKeys, ecdsaSha256)).rawData);
    const needle = new TextEncoder().encode('Evil Corp');
    const at = der.findIndex((_, i) => needle.every((byte, j) => der[i + j] === byte));
    expect(at).toBeGreaterThan(0);
    const tampered = der.slice();
    tampered[at] = 'D'.charCodeAt(0); // "Devil Corp" is still a well-formed name
    await expect(checkCsr(pemOf(tampered))).rejects.toThrow(expectCode('PKI_CSR_SIGNATURE_INVALID'));
  });

  it('refuses a CSR signed by a different key than the one it carries', async () => {
    const other = await generateKeyPair();
    const csr = await csrFor({ publicKey: other.publicKey, privateKey: deviceKeys.privateKey }, ecdsaSha256);
    await expect(checkCsr(csr.toString('pem'))).rejects.toThrow(expectCode('PKI_CSR_SIGNATURE_INVALID'));
  });

  it('refuses a CSR asking for CA:TRUE', async () => {
    const csr = await csrFor(deviceKeys, ecdsaSha256, { extensions: [new x509.BasicConstraintsExtension(true, 5, true)] });
    await expect(checkCsr(csr.toString('pem'))).rejects.toMatchObject({ code: 'PKI_CSR_EXTENSION_REFUSED' });
  });

  it('ignores other requested extensions: SANs, key usages and CA:FALSE never reach the certificate', async () => {
    const csr = await csrFor(deviceKeys, ecdsaSha256, {
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, false),
        new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: 'bank.example' }, { type: 'url', value: 'urn:fleetgate:device:admin' }]),
        new x509.KeyUsagesExtension(KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.codeSigning]),
      ],
    });
    const checked = await checkCsr(csr.toString('pem'));
    expect(checked.ignoredExtensions).toEqual([oids.basicConstraints, oids.subjectAltName, oids.keyUsage, oids.extKeyUsage]);
    expect(checked.requestedSubject).toBe('CN=requested-by-device, O=Evil Corp');

    const { certificate } = await issueCertificate({ issuer: deviceCa, publicKey: checked.publicKey, profile: deviceProfile({ deviceId: 'd-7' }), clock });
    expect(certificate.subject).toBe('CN=d-7');
    expect(certificate.getExtension(x509.BasicConstraintsExtension)).toMatchObject({ ca: false, critical: true });
    expect(certificate.getExtensions(x509.BasicConstraintsExtension)).toHaveLength(1);
    expect(certificate.getExtension(x509.SubjectAlternativeNameExtension)?.names.toJSON()).toEqual([{ type: 'url', value: 'urn:fleetgate:device:d-7' }]);
    expect(certificate.getExtension(x509.KeyUsagesExtension)?.usages).toBe(KeyUsageFlags.digitalSignature);
    expect([...(certificate.getExtension(x509.ExtendedKeyUsageExtension)?.usages ?? [])]).toEqual([x509.ExtendedKeyUsage.clientAuth]);
  });
});

describe('checkCsr / decodeCsr: encodings', () => {
  let der: Uint8Array;
  let pem: string;

  beforeAll(async () => {
    const csr = await csrFor(deviceKeys, ecdsaSha256);
    der = new Uint8Array(csr.rawData);
    pem = csr.toString('pem');
  });

  it('accepts PEM, CRLF PEM, PEM with surrounding text and the legacy NEW CERTIFICATE REQUEST label', async () => {
    const variants = [
      pem,
      pem.replace(/\n/g, '\r\n'),
      `Subject: whatever\n${pem}\ntrailing words\n`,
      pem.replace(/CERTIFICATE REQUEST/g, 'NEW CERTIFICATE REQUEST'),
      // one CSR block next to a block of another kind (e.g. a chain pasted along) is still one CSR
      `${pem}\n${root.certificate.toString('pem')}`,
    ];
    for (const variant of variants) expect(decodeCsr(variant)).toEqual(der);
    await expect(checkCsr(variants[3] ?? '')).resolves.toMatchObject({ keyType: 'EC P-256' });
  });

  it('accepts bare base64 DER (EST, RFC 7030 §4.2.1) with and without 76-character line breaks', async () => {
    const flat = toBase64(der);
    const folded = flat.replace(/(.{76})/g, '$1\r\n');
    expect(folded).toContain('\r\n');
    for (const variant of [flat, folded, folded.replace(/\r\n/g, '\n'), `${flat}\n`]) {
      expect(decodeCsr(variant)).toEqual(der);
      await expect(checkCsr(variant)).resolves.toMatchObject({ keyType: 'EC P-256' });
    }
  });

  it('accepts up to 16 KiB of input and refuses more before parsing', async () => {
    const padded = pem + '\n'.repeat(16 * 1024 - pem.length);
    expect(padded).toHaveLength(16 * 1024);
    expect(decodeCsr(padded)).toEqual(der);
    expect(() => decodeCsr(padded + '\n')).toThrow(expectCode('PKI_CSR_MALFORMED'));
    expect(() => decodeCsr('A'.repeat(1024 * 1024))).toThrow(expectCode('PKI_CSR_MALFORMED'));
  });

  it.each<[string, () => string]>([
    ['the empty string', () => ''],
    ['plain text', () => 'hello, I am a certificate request'],
    ['JSON', () => '{"csr": "x"}'],
    ['a certificate PEM', () => root.certificate.toString('pem')],
    ['a private key PEM', () => '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n'],
    ['two CSR PEM blocks', () => `${pem}\n${pem}`],
    ['two blocks, old and new label', () => `${pem}\n${pem.replace(/CERTIFICATE REQUEST/g, 'NEW CERTIFICATE REQUEST')}`],
    ['BEGIN without END', () => pem.replace(/-----END[^\n]*/, '')],
    ['mismatched BEGIN/END labels', () => pem.replace('-----END CERTIFICATE REQUEST-----', '-----END CERTIFICATE-----')],
    ['a PEM block of junk bytes', () => pemOf(new Uint8Array([1, 2, 3, 4, 5]))],
    ['an empty PEM block', () => '-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n'],
    ['a PEM block holding a certificate', () => pemOf(new Uint8Array(root.certificate.rawData))],
    ['a truncated CSR', () => pemOf(der.slice(0, der.length - 10))],
    ['base64 of junk', () => toBase64(new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x00]))],
    ['bad base64 padding', () => 'AAA=A'],
    ['whitespace only', () => ' \n\t '],
    ['base64url', () => `${toBase64(der).replace(/\+/g, '-').replace(/\//g, '_')}-_`],
  ])('refuses %s with PKI_CSR_MALFORMED', async (_, input) => {
    await expect(checkCsr(input())).rejects.toThrow(expectCode('PKI_CSR_MALFORMED'));
  });

  it('refuses non-string input with PKI_CSR_MALFORMED', async () => {
    for (const value of [undefined, null, 42, { csr: 'x' }, der]) {
      await expect(checkCsr(value as unknown as string)).rejects.toThrow(expectCode('PKI_CSR_MALFORMED'));
    }
  });
});

describe('normaliseSerial', () => {
  it.each([
    ['7fc58350b244c04d91b6e61c4f681b7c', '7fc58350b244c04d91b6e61c4f681b7c'],
    ['7FC58350B244C04D91B6E61C4F681B7C', '7fc58350b244c04d91b6e61c4f681b7c'],
    ['00FF01', 'ff01'], // Node's TLS keeps the sign octet
    ['0000ff', 'ff'],
    ['00', '00'], // a zero serial keeps one octet
    ['0001', '01'],
    ['1000', '1000'],
    ['0100', '0100'],
  ])('%s → %s', (serial, expected) => {
    expect(normaliseSerial(serial)).toBe(expected);
  });
});
