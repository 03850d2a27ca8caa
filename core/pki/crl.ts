import { AsnConvert } from '@peculiar/asn1-schema';
import { CertificateList } from '@peculiar/asn1-x509';
import type { CaCredential } from './certificate-authority.ts';
import { normaliseSerial, signerOf } from './certificate-authority.ts';
import { toPem } from './encoding.ts';
import { ecdsaSha256 } from './keys.ts';
import { x509 } from './x509.ts';

/**
 * Certificate revocation lists for the device CA (README "Revocation, audit and metrics": `GET /v1/pki/crl`). Pure: the
 * caller reads the revoked serials from the registry and keeps the CRL number; this file only encodes and
 * signs. OCSP (ocsp.ts) answers from the same data and uses the same reason names.
 */

/** CRLReason names, RFC 5280 §5.3.1 (value 7 is unused). */
export const revocationReasons = [
  'unspecified',
  'keyCompromise',
  'cACompromise',
  'affiliationChanged',
  'superseded',
  'cessationOfOperation',
  'certificateHold',
  'removeFromCRL',
  'privilegeWithdrawn',
  'aACompromise',
] as const;

export type RevocationReason = (typeof revocationReasons)[number];

export function isRevocationReason(value: unknown): value is RevocationReason {
  return typeof value === 'string' && (revocationReasons as readonly string[]).includes(value);
}

/** The ENUMERATED value of each reason (RFC 5280 §5.3.1); OCSP's RevokedInfo uses the same type. */
export const revocationReasonCodes: Readonly<Record<RevocationReason, number>> = {
  unspecified: 0,
  keyCompromise: 1,
  cACompromise: 2,
  affiliationChanged: 3,
  superseded: 4,
  cessationOfOperation: 5,
  certificateHold: 6,
  removeFromCRL: 8,
  privilegeWithdrawn: 9,
  aACompromise: 10,
};

export interface RevokedEntry {
  /** Lower-case hex without a leading zero octet, as in the registry (`normaliseSerial`). */
  readonly serial: string;
  readonly revokedAt: Date;
  readonly reason: RevocationReason;
}

export interface CreateCrlOptions {
  readonly issuer: CaCredential;
  readonly entries: readonly RevokedEntry[];
  /** Monotonically increasing per issuer (RFC 5280 §5.2.3); the caller persists it. */
  readonly crlNumber: bigint | number;
  readonly thisUpdate: Date;
  readonly nextUpdate: Date;
}

export interface EncodedCrl {
  readonly der: ArrayBuffer;
  /** Labelled `X509 CRL` (RFC 7468 §6): Node and OpenSSL refuse @peculiar's default `CRL` label. */
  readonly pem: string;
}

const crlNumberOid = '2.5.29.20'; // id-ce-cRLNumber, RFC 5280 §5.2.3
const maxSerialOctets = 20; // RFC 5280 §4.1.2.2
const maxCrlNumberOctets = 20; // RFC 5280 §5.2.3

/**
 * A complete (not delta) v2 CRL signed by `issuer` with ECDSA-SHA256, carrying the CRL number and the
 * authority key identifier (both required by RFC 5280 §5.2). Throws RangeError on inputs that would make an
 * invalid CRL; those are programming or data errors, never device input.
 */
export async function createCrl(options: CreateCrlOptions): Promise<EncodedCrl> {
  const { issuer } = options;
  const thisUpdate = wholeSeconds(options.thisUpdate, 'thisUpdate');
  const nextUpdate = wholeSeconds(options.nextUpdate, 'nextUpdate');
  // RFC 5280 §5.1.2.5: nextUpdate is the date by which the next CRL will be issued.
  if (nextUpdate.getTime() <= thisUpdate.getTime()) throw new RangeError('CRL nextUpdate must be later than thisUpdate');

  const seen = new Set<string>();
  const entries: x509.X509CrlEntryParams[] = options.entries.map((entry) => {
    const serial = checkedSerial(entry.serial);
    if (seen.has(serial)) throw new RangeError(`serial ${serial} is listed twice`);
    seen.add(serial);
    if (!isRevocationReason(entry.reason)) throw new RangeError(`unknown revocation reason ${String(entry.reason)}`);
    // RFC 5280 §5.3.1: removeFromCRL only appears in delta CRLs, which fleetgate does not publish; a released
    // hold is simply no longer listed.
    if (entry.reason === 'removeFromCRL') throw new RangeError(`serial ${serial}: removeFromCRL has no place in a complete CRL`);
    return {
      serialNumber: serial,
      revocationDate: wholeSeconds(entry.revokedAt, 'revokedAt'),
      // RFC 5280 §5.3.1: "unspecified" SHOULD be absent rather than encoded; @peculiar omits a reason of 0.
      reason: x509.X509CrlReason[entry.reason],
    };
  });

  const crl = await x509.X509CrlGenerator.create({
    issuer: issuer.certificate.subjectName,
    thisUpdate,
    nextUpdate,
    signingAlgorithm: ecdsaSha256,
    signingKey: issuer.privateKey,
    extensions: [
      await authorityKeyIdentifier(issuer.certificate),
      new x509.Extension(crlNumberOid, false, derInteger(options.crlNumber, maxCrlNumberOctets)),
    ],
    entries,
  }, signerOf(issuer));
  const der = entries.some((entry) => entry.reason === undefined || entry.reason === x509.X509CrlReason.unspecified)
    ? await withoutEmptyEntryExtensions(crl.rawData, issuer)
    : crl.rawData;
  return { der, pem: toPem('X509 CRL', der) };
}

/**
 * X509CrlGenerator 2.2.0 writes an empty `crlEntryExtensions` SEQUENCE for an entry without a reason code,
 * but Extensions is SIZE (1..MAX) (RFC 5280 §5.1). OpenSSL tolerates it; stricter DER parsers need not.
 * Re-encode the TBSCertList without the empty lists (the parser already reads an empty one as absent) and
 * sign it again.
 */
async function withoutEmptyEntryExtensions(der: ArrayBuffer, issuer: CaCredential): Promise<ArrayBuffer> {
  const signingKey = issuer.privateKey;
  const crl = AsnConvert.parse(der, CertificateList);
  for (const entry of crl.tbsCertList.revokedCertificates ?? []) {
    if (entry.crlEntryExtensions?.length === 0) entry.crlEntryExtensions = undefined;
  }
  const tbs = AsnConvert.serialize(crl.tbsCertList);
  const signature = new x509.AsnEcSignatureFormatter().toAsnSignature(signingKey.algorithm, await signerOf(issuer).subtle.sign(ecdsaSha256, signingKey, tbs));
  if (signature === null) throw new Error('the CRL signing key is not an ECDSA key');
  crl.signature = signature;
  return AsnConvert.serialize(crl);
}

/**
 * RFC 5280 §5.2.1: the AKI keyIdentifier matches the issuer's subject key identifier; copy it when the CA
 * certificate has one, so relying parties match the CRL to the same CA certificate the chain uses.
 */
async function authorityKeyIdentifier(certificate: x509.X509Certificate): Promise<x509.AuthorityKeyIdentifierExtension> {
  const ski = certificate.getExtension(x509.SubjectKeyIdentifierExtension);
  return ski === null ? x509.AuthorityKeyIdentifierExtension.create(certificate) : new x509.AuthorityKeyIdentifierExtension(ski.keyId);
}

function checkedSerial(serial: string): string {
  const normalised = typeof serial === 'string' ? normaliseSerial(serial) : '';
  if (!/^(?:[0-9a-f]{2})+$/.test(normalised) || normalised.length / 2 > maxSerialOctets) {
    throw new RangeError(`serial ${String(serial)} is not a hex serial number of at most ${maxSerialOctets} octets`);
  }
  return normalised;
}

/** DER encoding of a non-negative INTEGER (X.690 §8.3), refused beyond `maxOctets` content octets. */
function derInteger(value: bigint | number, maxOctets: number): Uint8Array<ArrayBuffer> {
  if (typeof value === 'number' && !Number.isSafeInteger(value)) throw new RangeError('CRL number must be a safe integer or a bigint');
  const big = BigInt(value);
  if (big < 0n) throw new RangeError('CRL number must not be negative');
  let hex = big.toString(16);
  if (hex.length % 2 === 1) hex = `0${hex}`;
  if (Number.parseInt(hex.slice(0, 2), 16) >= 0x80) hex = `00${hex}`; // keep it positive
  const length = hex.length / 2;
  if (length > maxOctets) throw new RangeError(`CRL number is longer than ${maxOctets} octets`);
  const out = new Uint8Array(2 + length);
  out[0] = 0x02;
  out[1] = length;
  for (let i = 0; i < length; i++) out[2 + i] = Number.parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** RFC 5280 §4.1.2.5.2 / §5.1.2.4: times carry whole seconds only, never fractions. */
function wholeSeconds(date: Date, name: string): Date {
  const time = date instanceof Date ? date.getTime() : Number.NaN;
  if (!Number.isFinite(time)) throw new RangeError(`${name} is not a valid date`);
  return new Date(Math.floor(time / 1000) * 1000);
}
