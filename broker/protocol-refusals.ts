import { type ErrorCode, errorCatalogue } from '../core/index.ts';

/** A connection aedes closed because of what the peer sent (or did not send), as the gateway audits it. */
export interface ProtocolRefusal {
  readonly code: ErrorCode;
  /** `reason`, and `stage` for a connect timeout: what the audit entry records. */
  readonly detail: { readonly reason: string; readonly stage?: 'tls' | 'mqtt'; readonly statement?: string };
}

/** Errors aedes reports when a connection ends for reasons that are not a refusal of the peer. */
const routine = new Set([
  'keep alive timeout', // the device went away; closing is [MQTT-3.1.2-24], not a refusal
  'connection closed', // a write raced the close
  'drain timeout', // a slow reader: flow control audits its own limits
  'packet received not valid', // the broker's own outgoing packet, not the peer's
]);

/**
 * Classifies an error from aedes' `clientError` (session has an id) or `connectionError` (before CONNECT)
 * events. Returns undefined for errors that are routine or already audited where they were decided:
 * socket errors (ECONNRESET…), CONNECT refusals (they carry a CONNACK `errorCode`; audited in
 * authenticate/preConnect), and hook refusals whose message is a catalogue code (ACL_PUBLISH_DENIED…).
 * An error that carries a catalogue `code` is audited under that code; every other error the peer caused
 * is a protocol violation: aedes and mqtt-packet close the connection for them as MQTT 3.1.1 requires.
 */
export function classifyClientError(error: Error): ProtocolRefusal | undefined {
  const { code, errorCode, info, statement } = error as Error & { code?: unknown; errorCode?: unknown; info?: { cmd?: unknown }; statement?: unknown };
  const reason = error.message.slice(0, 200);
  // The conformance guard (broker/mqtt-conformance-guard.ts) names the MQTT 3.1.1 statement that was broken.
  if (typeof code === 'string' && Object.hasOwn(errorCatalogue, code)) return { code: code as ErrorCode, detail: { reason, ...(typeof statement === 'string' ? { statement } : {}) } };
  if (typeof code === 'string' && /^(E[A-Z]+|ERR_[A-Z_]+)$/.test(code)) return undefined;
  if (typeof errorCode === 'number' || Object.hasOwn(errorCatalogue, error.message) || routine.has(error.message)) return undefined;
  if (error.message === 'connect did not arrive in time') return { code: 'MQTT_CONNECT_TIMEOUT', detail: { reason: 'no CONNECT after the TLS handshake', stage: 'mqtt' } };
  if (error.message === 'Invalid protocol') {
    // aedes' lib/handlers/index.js: a CONNECT on an open session, or any other packet before CONNECT.
    const cmd = typeof info?.cmd === 'string' ? info.cmd.toUpperCase() : 'packet';
    return { code: 'MQTT_PROTOCOL_VIOLATION', detail: { reason: cmd === 'CONNECT' ? 'second CONNECT [MQTT-3.1.0-2]' : `${cmd} before CONNECT [MQTT-3.1.0-1]` } };
  }
  return { code: 'MQTT_PROTOCOL_VIOLATION', detail: { reason } };
}
