import { FleetgateError } from '../errors.ts';
import {
  BasicOCSPResponse,
  CertID,
  CertStatus,
  id_pkix_ocsp_basic,
  id_pkix_ocsp_nonce,
  OCSPRequest,
  OCSPResponse,
  OCSPResponseStatus,
  ResponderID,
  ResponseBytes,
  ResponseData,
  RevokedInfo,
  SingleResponse,
} from '@peculiar/asn1-ocsp';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import { AlgorithmIdentifier, CRLReason, Extension, SubjectPublicKeyInfo } from '@peculiar/asn1-x509';
import type { CaCredential } from './certificate-authority.ts';
import { normaliseSerial, signerOf } from './certificate-authority.ts';
import type { RevocationReason } from './crl.ts';
import { revocationReasonCodes } from './crl.ts';
import { toHex } from './encoding.ts';
import { ecdsaSha256 } from './keys.ts';
import { x509 } from './x509.ts';

/**
 * The core of an RFC 6960 OCSP responder for the device CA (README "Revocation, audit and metrics": `POST /v1/pki/ocsp`).
 * Pure: the caller reads the request body, looks serials up in the registry and writes the answer with
 * `Content-Type: application/ocsp-response` (RFC 6960 Appendix A.1). The device CA signs its own responses,
 * so no delegated responder certificate exists (RFC 6960 §4.2.2.2, first case).
 */

/** One CertID of a request (RFC 6960 §4.1.1). */
export interface OcspCertId {
  /** OID of the hash the requester used for both issuer hashes, e.g. 1.3.14.3.2.26 (SHA-1, OpenSSL's default). */
  readonly hashAlgorithm: string;
  /** Hash of the DER issuer name. */
  readonly issuerNameHash: Uint8Array;
  /** Hash of the issuer's public key BIT STRING contents. */
  readonly issuerKeyHash: Uint8Array;
  /** Lower-case hex without a leading zero octet, as in the registry (`normaliseSerial`). */
  readonly serial: string;
}

export interface OcspRequestInfo {
  readonly certIds: readonly OcspCertId[];
  /** The Nonce value (RFC 6960 §4.4.1, RFC 8954), when the client sent one; echo it in the response. */
  readonly nonce?: Uint8Array;
}

export type OcspCertStatus =
  | { readonly status: 'good' }
  | { readonly status: 'revoked'; readonly revokedAt: Date; readonly reason: RevocationReason }
  | { readonly status: 'unknown' };

/** Answers for a serial of the device CA; may query the registry. */
export type OcspLookup = (serial: string) => OcspCertStatus | Promise<OcspCertStatus>;

export interface CreateOcspResponseOptions {
  readonly issuer: CaCredential;
  readonly requests: readonly OcspCertId[];
  /** Called only for CertIDs that name this CA. If it throws, so does createOcspResponse: answer internalError. */
  readonly lookup: OcspLookup;
  /** Also used as producedAt: status is looked up live, so the two coincide. */
  readonly thisUpdate: Date;
  readonly nextUpdate: Date;
  readonly nonce?: Uint8Array;
}

/** Statuses for an OCSPResponse without responseBytes (RFC 6960 §4.2.1). */
export type OcspErrorStatus = 'malformedRequest' | 'internalError' | 'tryLater' | 'unauthorized';

/**
 * A request that is not a well-formed OCSPRequest. OCSP clients expect the refusal as an OCSPResponse, so the
 * API answers `createOcspErrorResponse('malformedRequest')` (RFC 6960 §2.3), not a JSON error body.
 */
/** Refusal of an unparseable request; the API answers it with an OCSP `malformedRequest` response. */
function malformed(reason: string, options: { cause?: unknown } = {}): FleetgateError {
  return new FleetgateError('OCSP_REQUEST_MALFORMED', { detail: { reason }, cause: options.cause });
}

/** A one-CertID request with a nonce is about 100 bytes; 8 KiB is generous and bounds the parsing work. */
export const maxOcspRequestBytes = 8 * 1024;
/** OpenSSL sends one CertID per `-cert`; nothing legitimate asks about more at once. */
export const maxOcspCertIds = 32;
/** RFC 8954 §2.1: a nonce of 0 or more than 32 octets is refused with malformedRequest. */
const maxNonceOctets = 32;

const sha1Oid = '1.3.14.3.2.26';
const ecdsaWithSha256Oid = '1.2.840.10045.4.3.2'; // RFC 5758 §3.2: no parameters
const hashByOid: Readonly<Record<string, string>> = {
  [sha1Oid]: 'SHA-1',
  '2.16.840.1.101.3.4.2.1': 'SHA-256',
  '2.16.840.1.101.3.4.2.2': 'SHA-384',
  '2.16.840.1.101.3.4.2.3': 'SHA-512',
};

export function parseOcspRequest(der: Uint8Array): OcspRequestInfo {
  if (!(der instanceof Uint8Array) || der.length === 0 || der.length > maxOcspRequestBytes) {
    throw malformed(`empty or larger than ${maxOcspRequestBytes} bytes`);
  }
  const bytes = new Uint8Array(der); // a copy on its own ArrayBuffer: a Node Buffer may be a slice of a shared pool
  // The ASN.1 parser ignores trailing bytes; a DER request is exactly one SEQUENCE (RFC 6960 §4.1.1).
  if (derSequenceLength(bytes) !== bytes.length) throw malformed('not a single DER SEQUENCE');

  let request: OCSPRequest;
  try {
    request = AsnConvert.parse(bytes, OCSPRequest);
  } catch (cause) {
    throw malformed('not an OCSPRequest', { cause });
  }
  const tbs = request.tbsRequest;
  if (tbs.version !== 0) throw malformed(`unsupported version ${String(tbs.version)}`); // v1 only
  if (tbs.requestList.length === 0) throw malformed('empty requestList');
  if (tbs.requestList.length > maxOcspCertIds) throw malformed(`more than ${maxOcspCertIds} CertIDs`);

  let nonce: Uint8Array | undefined;
  for (const extension of tbs.requestExtensions ?? []) {
    if (extension.extnID === id_pkix_ocsp_nonce) {
      if (nonce !== undefined) throw malformed('two nonce extensions');
      nonce = parseNonce(extension);
    } else {
      refuseUnknownCritical(extension);
    }
  }

  // optionalSignature is optional (RFC 6960 §4.1.2) and not checked: revocation status is public.
  const certIds = tbs.requestList.map((single): OcspCertId => {
    for (const extension of single.singleRequestExtensions ?? []) refuseUnknownCritical(extension);
    const id = single.reqCert;
    return {
      hashAlgorithm: id.hashAlgorithm.algorithm,
      issuerNameHash: new Uint8Array(id.issuerNameHash.buffer),
      issuerKeyHash: new Uint8Array(id.issuerKeyHash.buffer),
      serial: normaliseSerial(toHex(id.serialNumber)),
    };
  });
  return nonce === undefined ? { certIds } : { certIds, nonce };
}

/**
 * A signed BasicOCSPResponse (RFC 6960 §4.2.1) wrapped in a successful OCSPResponse, DER. One SingleResponse
 * per requested CertID, in request order, carrying that CertID; a CertID whose issuer hashes do not name this CA
 * (or use a hash we cannot compute) is answered `unknown` without asking `lookup` (RFC 6960 §2.2).
 */
export async function createOcspResponse(options: CreateOcspResponseOptions): Promise<Uint8Array<ArrayBuffer>> {
  const { issuer } = options;
  const thisUpdate = wholeSeconds(options.thisUpdate, 'thisUpdate');
  const nextUpdate = wholeSeconds(options.nextUpdate, 'nextUpdate');
  // RFC 6960 §2.4: nextUpdate is the time at or before which newer status will be available.
  if (nextUpdate.getTime() <= thisUpdate.getTime()) throw new RangeError('OCSP nextUpdate must be later than thisUpdate');
  if (options.nonce !== undefined && (options.nonce.length === 0 || options.nonce.length > maxNonceOctets)) {
    throw new RangeError(`an OCSP nonce has 1 to ${maxNonceOctets} octets (RFC 8954 §2.1)`);
  }

  const identity = issuerIdentity(issuer.certificate);
  const responses = await Promise.all(
    options.requests.map(async (certId) => {
      const matches = await identity.matches(certId);
      const status: OcspCertStatus = matches ? await options.lookup(certId.serial) : { status: 'unknown' };
      return new SingleResponse({ certID: echoCertId(certId), certStatus: encodeStatus(status), thisUpdate, nextUpdate });
    }),
  );

  const responseData = new ResponseData({
    // RFC 6960 §4.2.1: byKey is the SHA-1 hash of the responder's public key BIT STRING contents.
    responderID: new ResponderID({ byKey: new OctetString(await identity.keyHash(sha1Oid)) }),
    producedAt: thisUpdate,
    responses,
  });
  if (options.nonce !== undefined) responseData.responseExtensions = [nonceExtension(options.nonce)];

  const tbs = AsnConvert.serialize(responseData);
  const basic = new BasicOCSPResponse({
    tbsResponseData: responseData,
    signatureAlgorithm: new AlgorithmIdentifier({ algorithm: ecdsaWithSha256Oid }),
    signature: await signEcdsaSha256(issuer, tbs),
  });
  const response = new OCSPResponse({
    responseStatus: OCSPResponseStatus.successful,
    responseBytes: new ResponseBytes({ responseType: id_pkix_ocsp_basic, response: new OctetString(AsnConvert.serialize(basic)) }),
  });
  return new Uint8Array(AsnConvert.serialize(response));
}

/** An unsigned OCSPResponse carrying only an error status (RFC 6960 §2.3, §4.2.1). */
export function createOcspErrorResponse(status: OcspErrorStatus): Uint8Array<ArrayBuffer> {
  return new Uint8Array(AsnConvert.serialize(new OCSPResponse({ responseStatus: OCSPResponseStatus[status] })));
}

/**
 * Whether a CertID names `certificate` as its issuer: how the responder picks, among several device CAs (a
 * rotation), the one that answers (RFC 6960 §4.1.1, issuerNameHash and issuerKeyHash).
 */
export function certIdNamesIssuer(certificate: x509.X509Certificate, certId: OcspCertId): Promise<boolean> {
  return issuerIdentity(certificate).matches(certId);
}

/** The device CA as CertIDs name it: hashes of its subject DER and of its public key bits, per algorithm. */
function issuerIdentity(certificate: x509.X509Certificate) {
  const nameDer = certificate.subjectName.toArrayBuffer();
  const keyBits = AsnConvert.parse(certificate.publicKey.rawData, SubjectPublicKeyInfo).subjectPublicKey;
  const cache = new Map<string, Promise<{ name: Uint8Array; key: Uint8Array }>>();
  const hashes = (oid: string) => {
    const algorithm = hashByOid[oid];
    if (algorithm === undefined) return undefined;
    let entry = cache.get(oid);
    if (entry === undefined) {
      entry = Promise.all([globalThis.crypto.subtle.digest(algorithm, nameDer), globalThis.crypto.subtle.digest(algorithm, keyBits)]).then(
        ([name, key]) => ({ name: new Uint8Array(name), key: new Uint8Array(key) }),
      );
      cache.set(oid, entry);
    }
    return entry;
  };
  return {
    async matches(certId: OcspCertId): Promise<boolean> {
      const expected = await hashes(certId.hashAlgorithm);
      return expected !== undefined && sameBytes(expected.name, certId.issuerNameHash) && sameBytes(expected.key, certId.issuerKeyHash);
    },
    async keyHash(oid: string): Promise<Uint8Array<ArrayBuffer>> {
      const expected = await hashes(oid);
      if (expected === undefined) throw new Error(`no hash for ${oid}`);
      return new Uint8Array(expected.key);
    },
  };
}

/**
 * RFC 6960 §4.2.1: the SingleResponse carries the CertID the client asked about. OpenSSL matches it by hash
 * OID, both hashes and the serial's value (OCSP_id_cmp), so a re-encoding with NULL parameters, as OpenSSL
 * itself writes them, is enough.
 */
function echoCertId(certId: OcspCertId): CertID {
  return new CertID({
    hashAlgorithm: new AlgorithmIdentifier({ algorithm: certId.hashAlgorithm, parameters: null }),
    issuerNameHash: new OctetString(new Uint8Array(certId.issuerNameHash)),
    issuerKeyHash: new OctetString(new Uint8Array(certId.issuerKeyHash)),
    serialNumber: positiveIntegerOctets(certId.serial),
  });
}

function encodeStatus(status: OcspCertStatus): CertStatus {
  switch (status.status) {
    case 'good':
      return new CertStatus({ good: null });
    case 'unknown':
      return new CertStatus({ unknown: null });
    case 'revoked': {
      // Same rule as the CRL (RFC 5280 §5.3.1): no reason rather than "unspecified"; removeFromCRL only
      // belongs in delta CRLs, and a certificate taken off hold is `good` again.
      if (status.reason === 'removeFromCRL') throw new RangeError('removeFromCRL is not a revocation reason for a revoked certificate');
      const info = new RevokedInfo({ revocationTime: wholeSeconds(status.revokedAt, 'revokedAt') });
      if (status.reason !== 'unspecified') info.revocationReason = new CRLReason(revocationReasonCodes[status.reason]);
      return new CertStatus({ revoked: info });
    }
  }
}

/** RFC 6960 §4.4.1 with RFC 8954: extnValue is the DER of `Nonce ::= OCTET STRING`, of 1 to 32 octets. */
function parseNonce(extension: Extension): Uint8Array {
  let nonce: OctetString;
  try {
    nonce = AsnConvert.parse(extension.extnValue.buffer, OctetString);
  } catch (cause) {
    throw malformed('the nonce is not an OCTET STRING', { cause });
  }
  const value = new Uint8Array(nonce.buffer);
  if (value.length === 0 || value.length > maxNonceOctets) throw malformed(`nonce of ${value.length} octets (RFC 8954 allows 1 to ${maxNonceOctets})`);
  return value;
}

function nonceExtension(nonce: Uint8Array): Extension {
  return new Extension({
    extnID: id_pkix_ocsp_nonce,
    critical: false,
    extnValue: new OctetString(AsnConvert.serialize(new OctetString(new Uint8Array(nonce)))),
  });
}

/** RFC 6960 §4.4: unrecognised extensions are ignored unless critical. */
function refuseUnknownCritical(extension: Extension): void {
  if (extension.critical) throw malformed(`unsupported critical extension ${extension.extnID}`);
}

async function signEcdsaSha256(issuer: CaCredential, data: ArrayBuffer): Promise<ArrayBuffer> {
  const key = issuer.privateKey;
  // WebCrypto returns r‖s; X.509 and OCSP carry the DER ECDSA-Sig-Value (RFC 5480 §2.2 / RFC 3279 §2.2.3).
  const signature = new x509.AsnEcSignatureFormatter().toAsnSignature(key.algorithm, await signerOf(issuer).subtle.sign(ecdsaSha256, key, data));
  if (signature === null) throw new Error('the OCSP signing key is not an ECDSA key');
  return signature;
}

/** The INTEGER content octets of a normalised hex serial (a leading zero octet keeps it positive). */
function positiveIntegerOctets(serial: string): ArrayBuffer {
  const hex = normaliseSerial(serial);
  if (!/^(?:[0-9a-f]{2})+$/.test(hex)) throw new RangeError(`serial ${serial} is not hex`);
  const padded = Number.parseInt(hex.slice(0, 2), 16) >= 0x80 ? `00${hex}` : hex;
  const out = new Uint8Array(padded.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(padded.slice(2 * i, 2 * i + 2), 16);
  return out.buffer;
}

/** Length of the DER SEQUENCE at the start of `bytes` (header included), or -1 if it is not one. */
function derSequenceLength(bytes: Uint8Array): number {
  if (bytes[0] !== 0x30 || bytes.length < 2) return -1;
  const first = bytes[1] ?? 0;
  if (first < 0x80) return 2 + first;
  const octets = first & 0x7f;
  if (octets === 0 || octets > 3 || bytes.length < 2 + octets) return -1; // 0x80 is BER's indefinite length
  let length = 0;
  for (let i = 0; i < octets; i++) length = length * 256 + (bytes[2 + i] ?? 0);
  return 2 + octets + length;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

/** RFC 6960 §4.2.2.1 times are GeneralizedTime; @peculiar/asn1-ocsp would write milliseconds if present. */
function wholeSeconds(date: Date, name: string): Date {
  const time = date instanceof Date ? date.getTime() : Number.NaN;
  if (!Number.isFinite(time)) throw new RangeError(`${name} is not a valid date`);
  return new Date(Math.floor(time / 1000) * 1000);
}
