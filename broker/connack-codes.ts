import type { ErrorCode } from '../core/index.ts';

/**
 * MQTT 3.1.1 CONNACK return codes (§3.2.2.3) for every refusal the broker can make at CONNECT. The compiler
 * checks this table is exhaustive over AdmissionRefusal. Devices stop retrying on 2 and 5; mqtt.js does not
 * reconnect after a CONNACK error, which is exactly what keeps a revoked fleet from storming.
 */
/** Each member must be a catalogue code: the constraint on `Codes` makes a typo a compile error. */
type Codes<T extends ErrorCode> = T;

export type AdmissionRefusal = Codes<
  | 'AUTH_NO_CLIENT_CERT'
  | 'AUTH_CERT_UNTRUSTED'
  | 'AUTH_CERT_EXPIRED'
  | 'AUTH_CERT_NOT_YET_VALID'
  | 'AUTH_CERT_INVALID'
  | 'AUTH_CERT_UNKNOWN'
  | 'AUTH_CERT_REVOKED'
  | 'AUTH_DEVICE_UNKNOWN'
  | 'AUTH_DEVICE_SUSPENDED'
  | 'AUTH_DEVICE_REVOKED'
  | 'AUTH_CLIENT_ID_MISMATCH'
  | 'AUTH_CLAIM_INVALID'
  | 'AUTH_SERVICE_UNAVAILABLE'
  | 'CLUSTER_UNAVAILABLE'
  | 'POLICY_NOT_FOUND'
  | 'MQTT_WILL_DENIED'
  | 'MQTT_CONNECT_RATE_LIMITED'
>;

export const connackReturnCode = {
  AUTH_NO_CLIENT_CERT: 5,
  AUTH_CERT_UNTRUSTED: 5,
  AUTH_CERT_EXPIRED: 5,
  AUTH_CERT_NOT_YET_VALID: 5,
  AUTH_CERT_INVALID: 5,
  AUTH_CERT_UNKNOWN: 5,
  AUTH_CERT_REVOKED: 5,
  AUTH_DEVICE_UNKNOWN: 5,
  AUTH_DEVICE_SUSPENDED: 5,
  AUTH_DEVICE_REVOKED: 5,
  AUTH_CLIENT_ID_MISMATCH: 2, // identifier rejected
  AUTH_CLAIM_INVALID: 5,
  AUTH_SERVICE_UNAVAILABLE: 3, // server unavailable: retry later
  CLUSTER_UNAVAILABLE: 3,
  POLICY_NOT_FOUND: 5,
  MQTT_WILL_DENIED: 5,
  MQTT_CONNECT_RATE_LIMITED: 3, // server unavailable: the storm is shed, the device retries later
} as const satisfies Record<AdmissionRefusal, 2 | 3 | 4 | 5>;
