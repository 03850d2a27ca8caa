/**
 * The one error catalogue. Every refusal anywhere in fleetgate carries one of these codes; the HTTP API maps
 * them to a status, the broker to a CONNACK return code (broker/connack-codes.ts), and the README's error
 * table is checked against this file by a test. Codes are stable: rename one and you break operators' alerts.
 */
export interface ErrorSpec {
  /** HTTP status the API answers with. */
  readonly http: number;
  /** A user-safe message that says what to do next. Never includes internal causes. */
  readonly message: string;
}

export const errorCatalogue = {
  // identities and topics
  DEVICE_ID_INVALID: { http: 400, message: 'Device ids must match ^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$ (no "/", "+", "#", spaces or NUL).' },
  TOPIC_INVALID: { http: 400, message: 'The topic name is not a valid MQTT topic (non-empty, no wildcards, no NUL, at most 65535 bytes).' },
  TOPIC_FILTER_INVALID: { http: 400, message: 'The topic filter is not valid MQTT ("#" only last and alone in its level, "+" alone in its level).' },
  ATTRIBUTE_INVALID: { http: 400, message: 'Device attribute names must be identifiers and values short strings without "/", "+", "#" or NUL.' },

  // policies
  POLICY_INVALID: { http: 400, message: 'The policy document is not valid: each statement needs effect allow|deny, actions publish|subscribe|receive and valid topic filters.' },
  POLICY_NOT_FOUND: { http: 404, message: 'No policy with that name exists; list policies or create it first.' },
  ACL_PUBLISH_DENIED: { http: 403, message: 'The device policy does not allow publishing to this topic.' },
  ACL_SUBSCRIBE_DENIED: { http: 403, message: 'The device policy does not allow subscribing to this filter (every topic it can match must be allowed).' },
  ACL_RECEIVE_DENIED: { http: 403, message: 'The device policy does not allow receiving messages on this topic.' },
  ACL_RESERVED_TOPIC: { http: 403, message: 'Topics starting with "$" are reserved for the gateway.' },
  ACL_CLAIM_SCOPE: { http: 403, message: 'A claim certificate may only use its own enrollment topics $fleetgate/enroll/{serial}/...; enroll first, then reconnect with the device certificate.' },

  // PKI and CSRs
  PKI_PEM_MALFORMED: { http: 400, message: 'The PEM data could not be parsed; send a single PEM block with matching BEGIN/END lines.' },
  PKI_CSR_MALFORMED: { http: 400, message: 'The CSR could not be parsed as PKCS#10; send a PEM or base64 DER certificate request.' },
  PKI_CSR_SIGNATURE_INVALID: { http: 400, message: 'The CSR signature does not verify; sign the request with the private key it carries (proof of possession).' },
  PKI_CSR_SIGNATURE_ALGORITHM_REFUSED: { http: 400, message: 'The CSR is signed with a weak or unsupported algorithm (SHA-1, MD5, ...); sign it with ECDSA or RSA (PKCS#1 v1.5 or PSS) over SHA-256, SHA-384 or SHA-512.' },
  PKI_KEY_TYPE_NOT_ALLOWED: { http: 400, message: 'The CSR key type or size is not allowed; use ECDSA P-256 or P-384, or RSA 2048/3072/4096.' },
  PKI_CSR_EXTENSION_REFUSED: { http: 400, message: 'The CSR asks for CA:TRUE; device certificates are never CA certificates. Remove the basicConstraints extension from the request.' },
  PKI_PUBLIC_KEY_IN_USE: { http: 409, message: 'This public key is already bound to another identity; generate a new key pair.' },
  OCSP_REQUEST_MALFORMED: { http: 400, message: 'The body is not a DER OCSPRequest (RFC 6960); send application/ocsp-request with one to 32 CertIDs and a nonce of at most 32 octets.' },
  PKI_CA_EXPIRED: { http: 500, message: 'The issuing CA has expired and can no longer issue certificates; an operator must rotate the CA (`fleetgate ca rotate`).' },
  PKI_CA_IN_USE: { http: 409, message: 'The CA still vouches for unexpired certificates, claims or CAs; move them first (`fleetgate rotate start --select ca=<id>` for devices, new claims for factories) or wait until they expire, then retire it.' },
  PKI_CA_ROTATION_STAGE: { http: 409, message: 'That rotation stage cannot run now: stages go prepare, activate, retire, one CA at a time; see `fleetgate ca list` for where the rotation stands.' },
  PKI_CA_ROTATION_CONFLICT: { http: 409, message: 'Another rotation step changed the CAs at the same time; run `fleetgate ca list` and repeat the step if it is still needed.' },
  PKI_CA_NOT_FOUND: { http: 404, message: 'No CA with that id exists; list the CAs with `fleetgate ca list` (GET /v1/pki/cas).' },
  PKI_CA_MISSING: { http: 500, message: 'The certificate authority files are incomplete; run `fleetgate init` on a fresh data directory or restore the missing files.' },
  PKI_KEY_STORE_UNAVAILABLE: { http: 503, message: 'The CA key store (PKCS#11 token) is missing, locked or failed; check the token, its module path and PIN (FLEETGATE_PKCS11_PIN or FLEETGATE_PKCS11_PIN_FILE), then retry: fleetgate reconnects by itself.' },

  // broker admission (CONNECT)
  AUTH_NO_CLIENT_CERT: { http: 401, message: 'No client certificate was presented; connect with the device (or claim) certificate and key.' },
  AUTH_CERT_UNTRUSTED: { http: 401, message: 'The client certificate was not issued by this gateway; enroll the device to get a certificate from its device CA.' },
  AUTH_CERT_EXPIRED: { http: 401, message: 'The client certificate has expired; renew before expiry or re-enroll with a claim certificate.' },
  AUTH_CERT_NOT_YET_VALID: { http: 401, message: 'The client certificate is not valid yet; check the device clock.' },
  AUTH_CERT_INVALID: { http: 401, message: 'The client certificate failed verification (wrong purpose, bad signature or malformed); use the certificate this gateway issued.' },
  AUTH_CERT_UNKNOWN: { http: 401, message: 'The client certificate is not in the registry; it may have been issued by a CA that was reset. Re-enroll the device.' },
  AUTH_CERT_REVOKED: { http: 401, message: 'The client certificate has been revoked or superseded; connect with the current certificate of the device.' },
  AUTH_DEVICE_UNKNOWN: { http: 401, message: 'The device named in the certificate is not registered.' },
  AUTH_DEVICE_SUSPENDED: { http: 403, message: 'The device is suspended; an operator must resume it before it can connect.' },
  AUTH_DEVICE_REVOKED: { http: 403, message: 'The device has been revoked and can no longer connect.' },
  AUTH_CLIENT_ID_MISMATCH: { http: 401, message: 'The MQTT client id must equal the device id in the certificate (for claim certificates: the device serial).' },
  AUTH_CLAIM_INVALID: { http: 401, message: 'The claim credential is unknown, revoked or expired; ask the factory for a new claim certificate.' },
  AUTH_SERVICE_UNAVAILABLE: { http: 503, message: 'The gateway cannot check credentials right now and refuses new sessions; retry with backoff.' },
  CLUSTER_UNAVAILABLE: { http: 503, message: 'The cluster state store (Redis) is out of reach; new sessions and acknowledged publishes are refused until it is back. Retry with backoff.' },
  PROVISIONING_UNAVAILABLE: { http: 503, message: 'The provisioning service is out of reach of this broker; send the enrollment or renewal request again later.' },

  // MQTT protocol guard rails
  MQTT_PACKET_TOO_LARGE: { http: 413, message: 'The MQTT packet exceeds the maximum packet size of this gateway.' },
  MQTT_PROTOCOL_UNSUPPORTED: { http: 400, message: 'Only MQTT 3.1.1 (protocol level 4) is supported; connect with protocolVersion 4.' },
  MQTT_WILL_DENIED: { http: 403, message: 'The last-will topic is not allowed by the device policy.' },
  MQTT_PROTOCOL_VIOLATION: { http: 400, message: 'The client broke the MQTT 3.1.1 protocol (a second CONNECT, a packet before CONNECT, a reserved or malformed packet) and the connection was closed; fix the client.' },
  TLS_HANDSHAKE_FAILED: { http: 400, message: 'The TLS handshake failed (not TLS, or no common protocol version or cipher suite); connect with TLS 1.2 or later to the MQTTS port.' },
  MQTT_WILL_DISCARDED: { http: 403, message: 'The gateway closed this session (identity revoked or suspended, claim revoked, or a policy that no longer allows the session or its will topic), so its last will was discarded instead of published; the audit entry gives the reason.' },

  // flow control and admission limits (README "Flow control and admission limits")
  MQTT_CONNECTION_LIMIT: { http: 503, message: 'The gateway holds its maximum number of connections; the connection was closed before the TLS handshake. Retry with backoff.' },
  MQTT_HANDSHAKE_LIMIT: { http: 503, message: 'Too many TLS handshakes are in progress; the connection was closed before its handshake. Retry with jittered backoff.' },
  MQTT_SOURCE_LIMIT: { http: 429, message: 'Too many connections or TLS handshakes come from this network address; the connection was closed before its handshake. Retry with jittered backoff; for many devices behind one NAT, raise the per-source limits.' },
  MQTT_CONNECT_TIMEOUT: { http: 408, message: 'The connection did not finish its TLS handshake and MQTT CONNECT within the connect timeout and was closed; send CONNECT right after the handshake.' },
  MQTT_CONNECT_RATE_LIMITED: { http: 503, message: 'The gateway admits new sessions at a bounded rate and refused this CONNECT with return code 3 (server unavailable); retry with jittered backoff.' },
  MQTT_PUBLISH_RATE_EXCEEDED: { http: 429, message: 'The device kept publishing above its template rate limit (messages or bytes per second) and was disconnected; publish less often or raise the template limits.' },
  MQTT_SUBSCRIBER_TOO_SLOW: { http: 429, message: 'The subscriber did not read its messages fast enough: its outbound queue stayed full and the session was closed. Read faster, subscribe to less, or raise the template queue limits.' },

  // enrollment and renewal
  ENROLL_CLAIM_UNKNOWN: { http: 401, message: 'The claim certificate is not registered with this gateway; ask the factory for a valid claim certificate.' },
  ENROLL_CLAIM_REVOKED: { http: 403, message: 'The claim credential has been revoked; ask the factory for a new claim certificate.' },
  ENROLL_CLAIM_EXPIRED: { http: 403, message: 'The claim credential has expired; ask the factory for a new claim certificate.' },
  ENROLL_CLAIM_EXHAUSTED: { http: 403, message: 'The claim credential has no enrollments left (max-uses reached); ask the factory for a new claim certificate.' },
  ENROLL_SERIAL_NOT_ALLOWED: { http: 403, message: 'This device serial is not on the allow-list of the template; import it with `fleetgate allowlist import`.' },
  ENROLL_CLONE_SUSPECTED: { http: 409, message: 'This serial is already enrolled with a different key (a possible clone); an operator must revoke the old device or allow re-enrollment in the template.' },
  ENROLL_IDENTITY_NOT_REENROLLABLE: { http: 409, message: 'This serial names an identity a claim of this template may not enroll: a service, or a device registered under another template. Enroll with a claim of the template the device belongs to, or use another serial.' },
  ENROLL_SERIAL_MISMATCH: { http: 403, message: 'A birth certificate enrolls only the serial in its CN; use that serial as the MQTT client id and in the request.' },
  ENROLL_RATE_LIMITED: { http: 429, message: 'Too many enrollments with this claim right now; retry after a short backoff.' },
  ENROLL_REQUEST_INVALID: { http: 400, message: 'The enrollment request must be JSON {"csr": "<PEM>", "attributes": {...}?} with no other fields.' },
  RENEW_EXPIRED_NOT_ALLOWED: { http: 403, message: 'The certificate has expired and its template does not allow renewal after expiry; re-enroll the device with a claim certificate, or have an operator set renewAfterExpiryDays on the template.' },
  RENEW_EXPIRED_TOO_LATE: { http: 403, message: 'The certificate expired longer ago than its template allows renewal after expiry (renewAfterExpiryDays); re-enroll the device with a claim certificate.' },
  RENEW_EXPIRED_ALREADY_RENEWED: { http: 409, message: 'This expired certificate was already renewed once: send the same key again to get the certificate issued then, or re-enroll the device with a claim certificate.' },

  // registry
  DEVICE_NOT_FOUND: { http: 404, message: 'No device with that id is registered.' },
  DEVICE_REVOKED_FINAL: { http: 409, message: 'This identity has been revoked, and revocation is final: it cannot be suspended or resumed. Register a new identity instead.' },
  OPERATOR_TOKEN_EXISTS: { http: 409, message: 'An operator token with that name exists (names of revoked tokens are not reused); choose another name.' },
  OPERATOR_TOKEN_NOT_FOUND: { http: 404, message: 'No operator token with that name exists; list tokens with `fleetgate token list`.' },
  DEVICE_EXISTS: { http: 409, message: 'A device with that id is already registered; choose another id or revoke the old device.' },
  TEMPLATE_NOT_FOUND: { http: 404, message: 'No template with that name exists; list templates or create it first.' },
  CLAIM_ISSUER_INVALID: { http: 400, message: 'A manufacturer claim issuer must be one valid, unexpired CA certificate (basicConstraints CA:TRUE) in PEM, not yet registered.' },
  TEMPLATE_INVALID: { http: 400, message: 'The template is not valid: check its policy name, validity days and key rules.' },
  CLAIM_NOT_FOUND: { http: 404, message: 'No claim with that id exists; list claims to find it.' },
  CERT_NOT_FOUND: { http: 404, message: 'No certificate with that serial number is registered.' },

  // rotation campaigns (README "Rotation campaigns")
  ROTATION_SELECTOR_INVALID: { http: 400, message: 'The device selector is not valid; use template=NAME, ca=CA_ID, expires-within=30d or ids=@FILE (registered device ids, one per line).' },
  ROTATION_SELECTION_EMPTY: { http: 409, message: 'No device matches the selector (services and revoked devices are never selected); check it with `fleetgate device list`.' },
  ROTATION_CAMPAIGN_NOT_FOUND: { http: 404, message: 'No rotation campaign with that id exists; list campaigns with `fleetgate rotate status`.' },
  ROTATION_CAMPAIGN_STATE: { http: 409, message: 'The campaign cannot do that in its state: only a running campaign can be paused, only a paused one resumed, and a completed or closed campaign is final.' },

  // HTTPS API
  API_UNAUTHENTICATED: { http: 401, message: 'Send an operator token as "Authorization: Bearer <token>" (the bootstrap token is in <data-dir>/admin.token).' },
  API_FORBIDDEN: { http: 403, message: 'Your role does not allow this operation; ask an admin for a token with the right role.' },
  API_CLIENT_CERT_REQUIRED: { http: 401, message: 'This endpoint needs a client certificate: the claim certificate to enroll, the current device certificate to renew.' },
  API_NOT_FOUND: { http: 404, message: 'No such endpoint; see /docs for the API reference.' },
  API_RATE_LIMITED: { http: 429, message: 'Too many requests; retry after the time in the Retry-After header.' },
  CONSOLE_NOT_BUILT: { http: 503, message: 'The web console has not been built; run `npm run build:console`, then restart the gateway.' },

  // configuration and internals
  REQUEST_INVALID: { http: 400, message: 'The request is not valid; check the body against /openapi.json.' },
  CONFIG_INVALID: { http: 500, message: 'The configuration is not valid; see the listed problems.' },
  INTERNAL: { http: 500, message: 'Internal error; the gateway logged the cause. Retry, and report it if it persists.' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof errorCatalogue;

export const errorCodes = Object.keys(errorCatalogue) as ErrorCode[];

/**
 * A refusal with a stable code. `message` is safe to show to the caller; `cause` and `detail` are for logs
 * and audit entries and never leave the process in an API answer.
 */
export class FleetgateError extends Error {
  readonly code: ErrorCode;
  readonly detail: Readonly<Record<string, unknown>> | undefined;

  constructor(code: ErrorCode, options: { message?: string; detail?: Record<string, unknown>; cause?: unknown } = {}) {
    super(options.message ?? errorCatalogue[code].message, { cause: options.cause });
    this.name = 'FleetgateError';
    this.code = code;
    this.detail = options.detail;
  }

  get httpStatus(): number {
    return errorCatalogue[this.code].http;
  }
}

export function isFleetgateError(value: unknown): value is FleetgateError {
  return value instanceof FleetgateError;
}
