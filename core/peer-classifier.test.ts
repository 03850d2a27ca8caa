import { describe, expect, it } from 'vitest';
import { createPeerClassifier, type SummarisedTlsPeer } from './peer-classifier.ts';
import type { CertificateView, KnownCa, TrustedIssuers } from './peer-identity.ts';

/** A certificate as Node's X509Certificate shows it; `issuedBy` is the CA certificate that signed it. */
function certificate(name: string, options: { issuedBy?: CertificateView; fingerprint?: string; san?: string } = {}): CertificateView {
  const view: CertificateView = {
    serialNumber: Buffer.from(name).toString('hex').toUpperCase(),
    subject: `CN=${name}`,
    subjectAltName: options.san ?? `URI:urn:fleetgate:device:${name}`,
    validFrom: 'Jan  1 00:00:00 2026 GMT',
    validTo: 'Jan  1 00:00:00 2036 GMT',
    fingerprint256: options.fingerprint ?? `AA:BB:${Buffer.from(name).toString('hex').toUpperCase()}`,
    raw: new Uint8Array([1, 2, 3]),
    publicKey: name,
    checkIssued: (other) => other === options.issuedBy,
    verify: (publicKey: never) => options.issuedBy !== undefined && publicKey === (options.issuedBy.publicKey as never),
  };
  return view;
}

function issuers(): TrustedIssuers {
  const ca = certificate('device-ca');
  const known: KnownCa = { role: 'device', certificate: ca, fingerprint: 'device-ca' };
  return { device: [known], claim: [], manufacturer: [], checkedLeaves: new Map() };
}

/** A TLS peer that counts how often its certificate object is asked for (the expensive read). */
function peer(leaf: CertificateView | undefined, authorized = true, authorizationError?: string) {
  let certificateReads = 0;
  const tlsPeer: SummarisedTlsPeer<CertificateView> = {
    authorized,
    authorizationError,
    getPeerX509Certificate() {
      certificateReads++;
      return leaf;
    },
    getPeerCertificate: () => (leaf === undefined ? {} : { fingerprint256: leaf.fingerprint256, raw: leaf.raw }),
  };
  return { tlsPeer, reads: () => certificateReads };
}

/** The classifier with a parser that counts what it parsed (a remembered peer's certificate, from its DER). */
function classifierWith(limit?: number) {
  const parsed: Uint8Array[] = [];
  const classifier = createPeerClassifier<CertificateView>({
    parse: (der) => {
      parsed.push(der);
      return certificate('parsed-from-der');
    },
    ...(limit === undefined ? {} : { limit }),
  });
  return { classifier, parsed };
}

describe('the peer classifier', () => {
  it('classifies a certificate once per trust snapshot, and parses a remembered peer’s certificate only when read', () => {
    const trusted = issuers();
    const leaf = certificate('device-1', { issuedBy: trusted.device[0]!.certificate });
    const { classifier, parsed } = classifierWith();
    const first = peer(leaf);
    const again = peer(leaf);
    const a = classifier.classify(first.tlsPeer, trusted);
    const b = classifier.classify(again.tlsPeer, trusted);
    expect(a.credential).toMatchObject({ kind: 'device', deviceId: 'device-1' });
    expect(a.certificate).toBe(leaf);
    expect(b.credential).toBe(a.credential);
    expect([first.reads(), again.reads()]).toEqual([1, 0]);
    expect(parsed).toEqual([]);
    expect(b.certificate?.subject).toBe('CN=parsed-from-der');
    expect(b.certificate).toBe(b.certificate);
    expect(parsed).toEqual([leaf.raw]);
  });

  it('reads OpenSSL’s verdict on every handshake: a certificate it refuses now is refused, remembered or not', () => {
    const trusted = issuers();
    const leaf = certificate('device-1', { issuedBy: trusted.device[0]!.certificate });
    const { classifier } = classifierWith();
    expect(classifier.classify(peer(leaf).tlsPeer, trusted).credential.kind).toBe('device');
    const expired = classifier.classify(peer(leaf, false, 'CERT_HAS_EXPIRED').tlsPeer, trusted);
    expect(expired.credential).toMatchObject({ kind: 'refused', code: 'AUTH_CERT_EXPIRED' });
  });

  it('never remembers a refusal: neither OpenSSL’s nor one of the certificate’s names', () => {
    const trusted = issuers();
    const leaf = certificate('device-1', { issuedBy: trusted.device[0]!.certificate });
    const { classifier } = classifierWith();
    classifier.classify(peer(leaf, false, 'CERT_HAS_EXPIRED').tlsPeer, trusted);
    expect(classifier.size).toBe(0);
    // Signed by the device CA, but its URI SAN names another device than its CN.
    const mismatched = certificate('device-2', { issuedBy: trusted.device[0]!.certificate, san: 'URI:urn:fleetgate:device:device-3' });
    const refused = peer(mismatched);
    expect(classifier.classify(refused.tlsPeer, trusted).credential).toMatchObject({ kind: 'refused', code: 'AUTH_CERT_INVALID' });
    expect(classifier.classify(refused.tlsPeer, trusted).credential.kind).toBe('refused');
    expect(refused.reads()).toBe(2);
    expect(classifier.size).toBe(0);
    // Without a certificate there is nothing to remember either.
    expect(classifier.classify(peer(undefined).tlsPeer, trusted).credential).toMatchObject({ kind: 'refused', code: 'AUTH_NO_CLIENT_CERT' });
    expect(classifier.size).toBe(0);
  });

  it('forgets everything when the trusted issuers change (a new trust snapshot)', () => {
    const before = issuers();
    const leaf = certificate('device-1', { issuedBy: before.device[0]!.certificate });
    const { classifier } = classifierWith();
    expect(classifier.classify(peer(leaf).tlsPeer, before).credential.kind).toBe('device');
    expect(classifier.size).toBe(1);
    // The new snapshot no longer trusts the CA that signed the leaf.
    const after = issuers();
    const reconnect = peer(leaf);
    expect(classifier.classify(reconnect.tlsPeer, after).credential).toMatchObject({ kind: 'refused', code: 'AUTH_CERT_UNTRUSTED' });
    expect(reconnect.reads()).toBe(1);
    expect(classifier.size).toBe(0);
  });

  it('is bounded: when full, the certificate used least recently goes first', () => {
    const trusted = issuers();
    const leaves = ['d-1', 'd-2', 'd-3'].map((name) => certificate(name, { issuedBy: trusted.device[0]!.certificate }));
    const [d1, d2, d3] = leaves as [CertificateView, CertificateView, CertificateView];
    const { classifier } = classifierWith(2);
    classifier.classify(peer(d1).tlsPeer, trusted);
    classifier.classify(peer(d2).tlsPeer, trusted);
    classifier.classify(peer(d1).tlsPeer, trusted); // d-1 is now the most recent
    classifier.classify(peer(d3).tlsPeer, trusted); // evicts d-2
    expect(classifier.size).toBe(2);
    const [again1, again2, again3] = [peer(d1), peer(d2), peer(d3)];
    classifier.classify(again1.tlsPeer, trusted);
    classifier.classify(again3.tlsPeer, trusted);
    expect([again1.reads(), again3.reads()]).toEqual([0, 0]);
    classifier.classify(again2.tlsPeer, trusted);
    expect(again2.reads()).toBe(1);
  });

  it('remembers nothing when the certificate object is not the one fingerprinted', () => {
    const trusted = issuers();
    const leaf = certificate('device-1', { issuedBy: trusted.device[0]!.certificate });
    const { classifier } = classifierWith();
    const odd: SummarisedTlsPeer<CertificateView> = { authorized: true, getPeerX509Certificate: () => leaf, getPeerCertificate: () => ({ fingerprint256: 'CC:DD', raw: leaf.raw }) };
    expect(classifier.classify(odd, trusted).credential.kind).toBe('device');
    expect(classifier.size).toBe(0);
  });
});
