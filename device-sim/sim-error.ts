/**
 * Why a simulated device gave up, or retried. `code` is either a gateway code from a `rejected` reply
 * (core's catalogue, e.g. ENROLL_CLAIM_EXHAUSTED) or one of the simulator's own below, for what the device
 * can only observe on the wire: a CONNACK return code, a silent close, a timeout.
 */
export const wireCodes = {
  CONNECT_TIMEOUT: 'no CONNACK before the connect timeout',
  CONNECTION_REFUSED: 'nothing listens at the MQTT address (ECONNREFUSED)',
  CONNECTION_CLOSED: 'the connection closed before CONNACK (Node closes a refused TLS 1.3 peer without an alert)',
  TLS_ERROR: 'the TLS handshake failed on the device side (server certificate not trusted, wrong name)',
  CONNACK_PROTOCOL_REJECTED: 'CONNACK 1: unacceptable protocol version',
  CONNACK_IDENTIFIER_REJECTED: 'CONNACK 2: client id refused (it must equal the serial or device id)',
  CONNACK_SERVER_UNAVAILABLE: 'CONNACK 3: the gateway cannot check credentials right now',
  CONNACK_BAD_CREDENTIALS: 'CONNACK 4: bad user name or password',
  CONNACK_NOT_AUTHORIZED: 'CONNACK 5: certificate refused (unknown, expired, revoked or suspended, or a claim used up or not allowed this serial; see the audit log)',
  CONNACK_REFUSED: 'CONNACK with a non-standard return code',
  SUBSCRIBE_REFUSED: 'SUBACK 0x80 for a reply topic',
  SESSION_CLOSED: 'the session closed while waiting for an answer',
  REPLY_TIMEOUT: 'no accepted/rejected reply before the reply timeout',
  REPLY_INVALID: 'the reply is not the JSON shape the README describes (Enrollment and renewal)',
  STOPPED: 'the device was stopped',
  SIM_UNEXPECTED: 'the simulator itself failed (a bug, or a credential it cannot load)',
} as const;

export type WireCode = keyof typeof wireCodes;

/** Failures worth another try after a backoff; everything else is final for this device. */
const retryableCodes = new Set<string>([
  'CONNECT_TIMEOUT',
  'CONNECTION_REFUSED',
  'CONNECTION_CLOSED',
  'CONNACK_SERVER_UNAVAILABLE',
  'SESSION_CLOSED',
  'REPLY_TIMEOUT',
  // Gateway codes whose catalogue message says "retry".
  'ENROLL_RATE_LIMITED',
  'AUTH_SERVICE_UNAVAILABLE',
  'API_RATE_LIMITED',
  'INTERNAL',
]);

export class SimError extends Error {
  readonly code: string;

  constructor(code: string, message?: string, options?: { cause?: unknown }) {
    super(message ?? (wireCodes as Record<string, string>)[code] ?? code, options);
    this.name = 'SimError';
    this.code = code;
  }

  get retryable(): boolean {
    return retryableCodes.has(this.code);
  }
}

const connackCodes: Record<number, WireCode> = {
  1: 'CONNACK_PROTOCOL_REJECTED',
  2: 'CONNACK_IDENTIFIER_REJECTED',
  3: 'CONNACK_SERVER_UNAVAILABLE',
  4: 'CONNACK_BAD_CREDENTIALS',
  5: 'CONNACK_NOT_AUTHORIZED',
};

/** Classifies what mqtt.js or the TLS socket reported while connecting. */
export function connectErrorToSimError(error: unknown): SimError {
  if (error instanceof SimError) return error;
  const code = (error as { code?: unknown } | undefined)?.code;
  const message = error instanceof Error ? error.message : String(error);
  // mqtt.js puts the CONNACK return code in `code` as a number.
  if (typeof code === 'number') return new SimError(connackCodes[code] ?? 'CONNACK_REFUSED', `${wireCodes[connackCodes[code] ?? 'CONNACK_REFUSED']} (rc ${code})`, { cause: error });
  if (code === 'ECONNREFUSED') return new SimError('CONNECTION_REFUSED', undefined, { cause: error });
  if (code === 'ECONNRESET' || code === 'EPIPE') return new SimError('CONNECTION_CLOSED', undefined, { cause: error });
  if (code === 'ETIMEDOUT' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'EAI_AGAIN') return new SimError('CONNECT_TIMEOUT', `${message}`, { cause: error });
  return new SimError('TLS_ERROR', `${wireCodes.TLS_ERROR}: ${message}`, { cause: error });
}
