import { beforeAll, describe, expect, it } from 'vitest';
import { fixedClock } from '../clock.ts';
import type { CaCredential } from './certificate-authority.ts';
import { createIssuingCa, createRootCa } from './certificate-authority.ts';
import type { RevocationReason, RevokedEntry } from './crl.ts';
import { createCrl, isRevocationReason, revocationReasonCodes, revocationReasons } from './crl.ts';
import { pemBlocks, toHex } from './encoding.ts';
import { x509 } from './x509.ts';

const clock = fixedClock('2026-11-01T00:00:00Z');
const thisUpdate = new Date('2026-11-02T00:00:00Z');
const nextUpdate = new Date('2026-11-09T00:00:00Z');
const crlNumberOid = '2.5.29.20';

let deviceCa: CaCredential;
beforeAll(async () => {
  const root = await createRootCa({ commonName: 'crl test root', clock });
  deviceCa = await createIssuingCa({ issuer: root, commonName: 'crl test device CA', clock });
});

const crlOf = async (entries: readonly RevokedEntry[], crlNumber: bigint | number = 1) =>
  createCrl({ issuer: deviceCa, entries, crlNumber, thisUpdate, nextUpdate });

describe('revocation reasons', () => {
  it('are the RFC 5280 §5.3.1 names with their codes (7 unused)', () => {
    expect(revocationReasons).toHaveLength(10);
    expect(Object.values(revocationReasonCodes)).toEqual([0, 1, 2, 3, 4, 5, 6, 8, 9, 10]);
    for (const reason of revocationReasons) expect(x509.X509CrlReason[reason]).toBe(revocationReasonCodes[reason]);
  });

  it.each([
    ['keyCompromise', true],
    ['cACompromise', true],
    ['removeFromCRL', true],
    ['KeyCompromise', false],
    ['key_compromise', false],
    ['', false],
    [1, false],
    [undefined, false],
    ['toString', false],
  ] as const)('isRevocationReason(%j) is %s', (value, expected) => {
    expect(isRevocationReason(value)).toBe(expected);
  });
});

describe('createCrl', () => {
  it('lists every entry with its date and reason, signed by the device CA', async () => {
    const { der } = await crlOf([
      { serial: '4a01', revokedAt: new Date('2026-11-01T10:00:00Z'), reason: 'keyCompromise' },
      { serial: '8a02', revokedAt: new Date('2026-11-01T11:00:00Z'), reason: 'superseded' },
      { serial: '4a03', revokedAt: new Date('2026-11-01T12:00:00Z'), reason: 'unspecified' },
    ]);
    const crl = new x509.X509Crl(der);
    expect(crl.issuer).toBe(deviceCa.certificate.subject);
    expect(crl.thisUpdate).toEqual(thisUpdate);
    expect(crl.nextUpdate).toEqual(nextUpdate);
    expect(crl.entries.map((entry) => [entry.serialNumber, entry.revocationDate.toISOString(), entry.reason])).toEqual([
      ['4a01', '2026-11-01T10:00:00.000Z', x509.X509CrlReason.keyCompromise],
      ['8a02', '2026-11-01T11:00:00.000Z', x509.X509CrlReason.superseded],
      // RFC 5280 §5.3.1: no reasonCode rather than "unspecified", and no empty extension list either.
      ['4a03', '2026-11-01T12:00:00.000Z', undefined],
    ]);
    // Extensions is SIZE (1..MAX): the entry is SEQUENCE { serial, date } (19 octets), not one with `30 00` (21).
    expect(toHex(der)).toContain('301302024a03170d');
    expect(toHex(der)).not.toContain('301502024a03170d');
    // Verify against the issuer's public key, passed explicitly: that is what a relying party checks.
    expect(await crl.verify({ publicKey: deviceCa.certificate.publicKey })).toBe(true);
  });

  it('carries the CRL number and an authority key identifier equal to the CA subject key identifier', async () => {
    const crl = new x509.X509Crl((await crlOf([], 0x1234)).der);
    expect(toHex(crl.getExtension(crlNumberOid)?.value ?? new ArrayBuffer(0))).toBe('02021234');
    const aki = crl.getExtension(x509.AuthorityKeyIdentifierExtension);
    const ski = deviceCa.certificate.getExtension(x509.SubjectKeyIdentifierExtension);
    expect(aki?.keyId).toBeDefined();
    expect(aki?.keyId).toBe(ski?.keyId);
    expect(crl.entries).toEqual([]);
  });

  it.each([
    [0, '020100'],
    [127, '02017f'],
    [128, '02020080'], // a leading zero octet keeps the INTEGER positive
    [2n ** 64n, '0209010000000000000000'],
    [2n ** 151n, `0214${'00'}80${'00'.repeat(18)}`], // 20 octets: the most RFC 5280 §5.2.3 allows
  ])('encodes CRL number %s as %s', async (crlNumber, expected) => {
    const crl = new x509.X509Crl((await crlOf([], crlNumber)).der);
    expect(toHex(crl.getExtension(crlNumberOid)?.value ?? new ArrayBuffer(0))).toBe(expected);
  });

  it('writes the PEM label X509 CRL (Node and OpenSSL refuse "CRL") around the same DER', async () => {
    const { der, pem } = await crlOf([{ serial: '4a01', revokedAt: thisUpdate, reason: 'keyCompromise' }]);
    expect(pem).toMatch(/^-----BEGIN X509 CRL-----\n/);
    expect(pem).toMatch(/\n-----END X509 CRL-----\n$/);
    expect(pem).not.toMatch(/BEGIN CRL/);
    expect(toHex(pemBlocks(pem, ['X509 CRL'])[0] ?? new Uint8Array())).toBe(toHex(der));
  });

  it('accepts serials in Node form (upper case, leading 00) and stores them normalised', async () => {
    const crl = new x509.X509Crl((await crlOf([{ serial: '00C0FFEE', revokedAt: thisUpdate, reason: 'keyCompromise' }])).der);
    expect(crl.entries[0]?.serialNumber).toBe('c0ffee');
  });

  it('drops milliseconds, and uses GeneralizedTime without fractions after 2049', async () => {
    const { der } = await createCrl({
      issuer: deviceCa,
      entries: [{ serial: '4a01', revokedAt: new Date('2060-01-01T00:00:00.987Z'), reason: 'keyCompromise' }],
      crlNumber: 1,
      thisUpdate: new Date('2026-11-02T00:00:00.999Z'),
      nextUpdate,
    });
    const crl = new x509.X509Crl(der);
    expect(crl.thisUpdate.toISOString()).toBe('2026-11-02T00:00:00.000Z');
    expect(crl.entries[0]?.revocationDate.toISOString()).toBe('2060-01-01T00:00:00.000Z');
    const text = new TextDecoder('latin1').decode(der);
    expect(text).toContain('20600101000000Z');
    expect(text).not.toMatch(/\d{14}\.\d+Z/);
  });

  const entry = (serial: string, reason: RevocationReason = 'keyCompromise'): RevokedEntry => ({ serial, revokedAt: thisUpdate, reason });
  it.each([
    ['a duplicate serial', [entry('4a01'), entry('004A01')], 1, /listed twice/],
    ['removeFromCRL (delta CRLs only)', [entry('4a01', 'removeFromCRL')], 1, /removeFromCRL/],
    ['an unknown reason', [entry('4a01', 'lost' as RevocationReason)], 1, /unknown revocation reason/],
    ['a non-hex serial', [entry('xyz1')], 1, /not a hex serial/],
    ['an odd-length serial', [entry('abc')], 1, /not a hex serial/],
    ['an empty serial', [entry('')], 1, /not a hex serial/],
    ['a serial over 20 octets', [entry('4a'.repeat(21))], 1, /not a hex serial/],
    ['a negative CRL number', [], -1, /negative/],
    ['a fractional CRL number', [], 1.5, /safe integer/],
    ['a CRL number over 20 octets', [], 2n ** 159n, /longer than 20 octets/],
  ] as const)('refuses %s', async (_name, entries, crlNumber, message) => {
    await expect(crlOf(entries, crlNumber)).rejects.toThrow(message);
  });

  it('refuses nextUpdate not after thisUpdate, and invalid dates', async () => {
    await expect(createCrl({ issuer: deviceCa, entries: [], crlNumber: 1, thisUpdate, nextUpdate: thisUpdate })).rejects.toThrow(RangeError);
    await expect(createCrl({ issuer: deviceCa, entries: [], crlNumber: 1, thisUpdate: new Date(Number.NaN), nextUpdate })).rejects.toThrow(/thisUpdate/);
    await expect(crlOf([{ serial: '4a01', revokedAt: new Date('nope'), reason: 'keyCompromise' }])).rejects.toThrow(/revokedAt/);
  });
});
