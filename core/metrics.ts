import type { PolicyAction } from './policy.ts';

/**
 * What the gateway counts. The edges (broker, provisioning) report through this port; the composition
 * root backs it with Prometheus. Labels are codes and enums only, never device ids (unbounded cardinality).
 */
export interface GatewayMetrics {
  tlsHandshake(outcome: 'ok' | 'failed'): void;
  sessionOpened(kind: 'device' | 'claim'): void;
  sessionClosed(kind: 'device' | 'claim'): void;
  connectRefused(code: string): void;
  aclDenied(action: PolicyAction | 'packet'): void;
  enrollment(operation: 'enroll' | 'renew', transport: string, result: 'ok' | 'refused', code?: string): void;
  /** From the registry commit of a revocation/suspension to the live session being closed. */
  revocationToDisconnect(seconds: number): void;
  /** A QoS 0 PUBLISH over the device's rate limit, read and discarded (MQTT 3.1.1 has no negative ack). */
  publishDropped(reason: 'rate'): void;
  /** A QoS 1/2 PUBLISH over the rate limit, held (and its socket left unread) until tokens refill. */
  publishThrottled(): void;
  /** A message not queued towards a subscriber whose outbound queue is full. */
  deliveryDropped(qos: 0 | 1 | 2): void;
  /** A session closed by flow control (MQTT_PUBLISH_RATE_EXCEEDED, MQTT_SUBSCRIBER_TOO_SLOW). */
  flowDisconnect(code: string): void;
  /**
   * A connection closed before a session was admitted (MQTT_CONNECTION_LIMIT, MQTT_HANDSHAKE_LIMIT,
   * MQTT_SOURCE_LIMIT, MQTT_CONNECT_TIMEOUT, TLS_HANDSHAKE_FAILED) or for a protocol violation.
   */
  connectionRefused(code: string): void;
}

const noop = () => {};
export const noMetrics: GatewayMetrics = {
  tlsHandshake: noop,
  sessionOpened: noop,
  sessionClosed: noop,
  connectRefused: noop,
  aclDenied: noop,
  enrollment: noop,
  revocationToDisconnect: noop,
  publishDropped: noop,
  publishThrottled: noop,
  deliveryDropped: noop,
  flowDisconnect: noop,
  connectionRefused: noop,
};
