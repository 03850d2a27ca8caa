import { FleetgateError } from '../errors.ts';
import { fromBase64, pemBlocks, sha256Hex } from './encoding.ts';
import { x509 } from './x509.ts';

/**
 * PKCS#10 checks before anything is issued: the request parses, it is signed with an accepted scheme and
 * hash (no SHA-1 or MD5), its signature verifies with the key it carries (proof of possession), and that key
 * is of an allowed type and size. A request for CA:TRUE is refused; the subject and other requested extensions are read for the audit trail only and never copied.
 */
export type KeyDescription = 'EC P-256' | 'EC P-384' | 'RSA 2048' | 'RSA 3072' | 'RSA 4096';
export const allowedKeyTypes: readonly KeyDescription[] = ['EC P-256', 'EC P-384', 'RSA 2048', 'RSA 3072', 'RSA 4096'];

export interface CheckedCsr {
  readonly publicKey: x509.PublicKey;
  readonly keyType: KeyDescription;
  /** SHA-256 of the SubjectPublicKeyInfo DER, lower-case hex. */
  readonly publicKeyHash: string;
  /** The subject the device asked for; informational, never used as the certificate subject. */
  readonly requestedSubject: string;
  /** Its CN, which EST enrollment (no other field carries it) takes as the device serial. */
  readonly requestedCommonName: string | undefined;
  /** OIDs of extensions the device asked for and did not get. */
  readonly ignoredExtensions: readonly string[];
}

/**
 * Signature schemes a CSR may use: the proof of possession is the one signature a device makes for its
 * identity, so it gets the same floor as the certificates fleetgate signs. SHA-1 is collision-broken
 * (SHAttered, 2017) and refused like MD5; SHA-224 and anything WebCrypto cannot name are refused too.
 */
const acceptedSignatureSchemes: readonly string[] = ['ECDSA', 'RSASSA-PKCS1-v1_5', 'RSA-PSS'];
const acceptedSignatureHashes: readonly string[] = ['SHA-256', 'SHA-384', 'SHA-512'];

/** Bigger than any sane CSR (an RSA 4096 request is ~1.7 KB PEM); refuse before parsing. */
const maxCsrChars = 16 * 1024;

/** Accepts PEM ("CERTIFICATE REQUEST" or the older "NEW CERTIFICATE REQUEST") or bare base64 DER (EST). */
export function decodeCsr(input: string): Uint8Array<ArrayBuffer> {
  if (typeof input !== 'string' || input.length === 0 || input.length > maxCsrChars) {
    throw new FleetgateError('PKI_CSR_MALFORMED', { detail: { reason: 'empty or larger than 16 KiB' } });
  }
  if (input.includes('-----BEGIN')) {
    let blocks: Uint8Array<ArrayBuffer>[];
    try {
      blocks = pemBlocks(input, ['CERTIFICATE REQUEST', 'NEW CERTIFICATE REQUEST']);
    } catch (cause) {
      throw new FleetgateError('PKI_CSR_MALFORMED', { detail: { reason: 'invalid base64 in the PEM block' }, cause });
    }
    if (blocks.length !== 1 || blocks[0] === undefined) throw new FleetgateError('PKI_CSR_MALFORMED', { detail: { reason: 'expected exactly one CERTIFICATE REQUEST PEM block' } });
    return blocks[0];
  }
  // RFC 7030 §4.2.1: base64 DER, with or without line breaks (RFC 2045 folds at 76 characters).
  if (!/^[A-Za-z0-9+/=\s]+$/.test(input)) throw new FleetgateError('PKI_CSR_MALFORMED', { detail: { reason: 'neither PEM nor base64' } });
  try {
    return fromBase64(input);
  } catch (cause) {
    throw new FleetgateError('PKI_CSR_MALFORMED', { detail: { reason: 'invalid base64' }, cause });
  }
}

export async function checkCsr(input: string): Promise<CheckedCsr> {
  const der = decodeCsr(input);
  let csr: x509.Pkcs10CertificateRequest;
  let requestedSubject: string;
  let requestedCommonName: string | undefined;
  let ignoredExtensions: string[];
  let asksForCa: boolean;
  let signatureAlgorithm: { name?: unknown; hash?: { name?: unknown } };
  try {
    // The getters parse lazily: read everything used below here, so a malformed part is refused with a code.
    csr = new x509.Pkcs10CertificateRequest(der);
    void csr.publicKey;
    requestedSubject = csr.subject;
    requestedCommonName = csr.subjectName.getField('CN')[0];
    ignoredExtensions = csr.extensions.map((extension) => extension.type);
    asksForCa = csr.extensions.some((extension) => extension instanceof x509.BasicConstraintsExtension && extension.ca);
    // @peculiar names what WebCrypto knows ({name, hash}) and leaves anything else as its OID.
    signatureAlgorithm = csr.signatureAlgorithm as typeof signatureAlgorithm;
  } catch (cause) {
    throw new FleetgateError('PKI_CSR_MALFORMED', { detail: { reason: 'not a PKCS#10 structure' }, cause });
  }

  const keyType = await describeKey(csr.publicKey);
  const scheme = String(signatureAlgorithm.name);
  const hash = signatureAlgorithm.hash?.name === undefined ? undefined : String(signatureAlgorithm.hash.name);
  if (!acceptedSignatureSchemes.includes(scheme) || hash === undefined || !acceptedSignatureHashes.includes(hash)) {
    throw new FleetgateError('PKI_CSR_SIGNATURE_ALGORITHM_REFUSED', { detail: { algorithm: scheme, ...(hash === undefined ? {} : { hash }) } });
  }
  let verified: boolean;
  try {
    verified = await csr.verify();
  } catch (cause) {
    throw new FleetgateError('PKI_CSR_SIGNATURE_INVALID', { detail: { reason: 'signature could not be checked' }, cause });
  }
  if (!verified) throw new FleetgateError('PKI_CSR_SIGNATURE_INVALID');
  // Other requested extensions are ignored (never copied); asking to become a CA is refused outright so the
  // device maker learns of the mistake instead of receiving something other than what they asked for.
  if (asksForCa) throw new FleetgateError('PKI_CSR_EXTENSION_REFUSED', { detail: { extension: 'basicConstraints cA=TRUE' } });

  return {
    publicKey: csr.publicKey,
    keyType,
    publicKeyHash: await sha256Hex(csr.publicKey.rawData),
    requestedSubject,
    requestedCommonName,
    ignoredExtensions,
  };
}

async function describeKey(publicKey: x509.PublicKey): Promise<KeyDescription> {
  let key: CryptoKey;
  try {
    key = await publicKey.export();
  } catch (cause) {
    throw new FleetgateError('PKI_KEY_TYPE_NOT_ALLOWED', { detail: { algorithm: publicKey.algorithm.name }, cause });
  }
  const algorithm = key.algorithm as Partial<EcKeyAlgorithm & RsaHashedKeyAlgorithm>;
  const description =
    algorithm.name === 'ECDSA' ? `EC ${algorithm.namedCurve}` : algorithm.name?.startsWith('RSA') ? `RSA ${algorithm.modulusLength}` : algorithm.name;
  if (!(allowedKeyTypes as readonly string[]).includes(description ?? '')) {
    throw new FleetgateError('PKI_KEY_TYPE_NOT_ALLOWED', { detail: { keyType: description } });
  }
  return description as KeyDescription;
}

/** Makes a CSR for `keys` (lab devices, the simulator and tests; real devices make their own). */
export async function createCsr(keys: CryptoKeyPair, commonName: string): Promise<string> {
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${commonName}`,
    keys,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
  });
  return csr.toString('pem') + '\n';
}
