import { FleetgateError } from './errors.ts';

/**
 * Enrollment and renewal messages, the same on every transport (MQTT JSON payloads, POST /v1/enroll and
 * /v1/renew; EST carries the CSR alone). README "Enrollment and renewal".
 */
export interface CertificateRequest {
  readonly csr: string;
  readonly attributes?: Readonly<Record<string, unknown>>;
  /** HTTPS only: the device serial when it differs from the CSR's CN. MQTT takes it from the topic. */
  readonly serial?: string;
}

/** `accepted` reply. `serverTime` lets devices without a clock check validity and schedule renewal. */
export interface CertificateReply {
  readonly deviceId: string;
  readonly serial: string;
  readonly certificate: string;
  /** PEM bundle: the issuing CA, then the root. */
  readonly chain: string;
  readonly notAfter: string;
  readonly serverTime: string;
}

/** `rejected` reply. */
export interface CertificateRejection {
  readonly code: string;
  readonly message: string;
}

export type CertificateTransport = 'mqtt' | 'https' | 'est';

const requestKeys = new Set(['csr', 'attributes', 'serial']);

/** Strict parse: unknown fields are refused, never ignored (a typo must not silently change meaning). */
export function parseCertificateRequest(body: unknown, allowSerial: boolean): CertificateRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new FleetgateError('ENROLL_REQUEST_INVALID');
  const record = body as Record<string, unknown>;
  const unknown = Object.keys(record).find((key) => !requestKeys.has(key) || (key === 'serial' && !allowSerial));
  if (unknown !== undefined) throw new FleetgateError('ENROLL_REQUEST_INVALID', { message: `Unknown field "${unknown.slice(0, 64)}" in the enrollment request.` });
  if (typeof record.csr !== 'string') throw new FleetgateError('ENROLL_REQUEST_INVALID', { message: 'The enrollment request needs "csr": a PEM certificate request.' });
  if (record.attributes !== undefined && (typeof record.attributes !== 'object' || record.attributes === null || Array.isArray(record.attributes))) {
    throw new FleetgateError('ENROLL_REQUEST_INVALID', { message: '"attributes" must be an object of strings.' });
  }
  if (record.serial !== undefined && typeof record.serial !== 'string') throw new FleetgateError('ENROLL_REQUEST_INVALID', { message: '"serial" must be a string.' });
  return {
    csr: record.csr,
    ...(record.attributes === undefined ? {} : { attributes: record.attributes as Record<string, unknown> }),
    ...(record.serial === undefined ? {} : { serial: record.serial }),
  };
}

/** MQTT payloads arrive as bytes; anything that is not a JSON object is a coded refusal, not a crash. */
export function decodeJsonPayload(payload: Uint8Array): unknown {
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(payload));
  } catch {
    throw new FleetgateError('ENROLL_REQUEST_INVALID', { message: 'The payload is not UTF-8 JSON.' });
  }
}

export interface EnrollInput {
  /** Registry key of the claim the request was authenticated with (TLS): see PeerCredential.claimKey. */
  readonly claimKey: string;
  /** The device serial: the MQTT topic level; otherwise the body's "serial" (HTTPS) or the CSR's CN. */
  readonly serial: string | undefined;
  /** Set for birth certificates: the only serial this credential may enroll (its CN). */
  readonly boundSerial?: string;
  /** The claim certificate (DER) the request was authenticated with, which a relay forwards. */
  readonly certificate: Uint8Array;
  /** Raw MQTT payload bytes, or the parsed HTTPS JSON body. */
  readonly body: Uint8Array | unknown;
  readonly transport: CertificateTransport;
}

export interface RenewInput {
  /** Serial of the device certificate the request was authenticated with (TLS). */
  readonly certificateSerial: string;
  /** The device id that certificate proved. */
  readonly deviceId: string;
  /** SHA-256 of that certificate, lower-case hex: renewal needs the registry row of this exact certificate. */
  readonly certificateFingerprint: string;
  /** That certificate (DER), which a relay forwards. */
  readonly certificate: Uint8Array;
  readonly body: Uint8Array | unknown;
  readonly transport: CertificateTransport;
  /**
   * The certificate has expired and the edge accepted it for renewal after expiry (classifyRenewalPeer,
   * core/renewal-after-expiry.ts): set by POST /v1/renew and EST simplereenroll only. Without it an expired
   * certificate is refused, whatever the transport.
   */
  readonly afterExpiry?: boolean;
}

/**
 * Implemented by provisioning; called by every transport (the broker for MQTT, the API for HTTPS and EST).
 * Refusals are thrown as FleetgateError, already audited.
 */
export interface CertificateRequestHandler {
  enroll(input: EnrollInput): Promise<CertificateReply>;
  renew(input: RenewInput): Promise<CertificateReply>;
}

/** Parses a request body from any transport (bytes from MQTT, an object from HTTPS). */
export function readCertificateRequest(body: Uint8Array | unknown, transport: CertificateTransport): CertificateRequest {
  const parsed = body instanceof Uint8Array ? decodeJsonPayload(body) : body;
  return parseCertificateRequest(parsed, transport !== 'mqtt');
}
