import type { TemplateLimits } from '../core/index.ts';

/**
 * Gateway-wide traffic and admission limits. The per-device fields are the defaults a template's
 * `limits` override (core/flow-limits.ts); the rest protect the process as a whole.
 */
export interface FlowControlConfig extends Required<TemplateLimits> {
  /** How long a session may stay over a limit (publishing too fast, or not reading) before it is closed. */
  readonly overLimitGraceMs: number;
  /** PUBLISH packets read from one connection but not yet handled; beyond it the socket is not read. */
  readonly maxInflightPublishes: number;
  /** Open connections, handshaking or not; further ones are closed before the TLS handshake. */
  readonly maxConnections: number;
  /** TLS handshakes in progress at once; further connections are closed before their handshake. */
  readonly maxPendingHandshakes: number;
  /**
   * TLS handshakes in progress from one source (an IPv4 address or an IPv6 /64), so that one host cannot
   * take the whole handshake budget. Behind a load balancer that hides client addresses, every connection
   * comes from the balancer: raise this to `maxPendingHandshakes` there and limit per source at the balancer.
   */
  readonly maxPendingHandshakesPerSource: number;
  /** Open connections from one source, handshaking or in session (devices behind one NAT share a source). */
  readonly maxConnectionsPerSource: number;
  /** CONNECTs admitted per second across the gateway (burst: twice that); the rest get CONNACK 3. */
  readonly connectPerSecond: number;
}

export const defaultFlowControl: FlowControlConfig = Object.freeze({
  publishPerSecond: 1000,
  publishBytesPerSecond: 1024 * 1024,
  outboundQueueMessages: 1000,
  outboundQueueBytes: 4 * 1024 * 1024,
  overLimitGraceMs: 10_000,
  maxInflightPublishes: 64,
  maxConnections: 100_000,
  maxPendingHandshakes: 512,
  ...perSourceDefaults(512, 100_000),
  connectPerSecond: 1000,
});

/**
 * The per-source defaults follow the global budgets they protect: an eighth of the handshakes (eight hosts
 * must gang up to fill them) and a tenth of the connections (room for a NAT with many devices).
 */
export function perSourceDefaults(maxPendingHandshakes: number, maxConnections: number): Pick<FlowControlConfig, 'maxPendingHandshakesPerSource' | 'maxConnectionsPerSource'> {
  return { maxPendingHandshakesPerSource: Math.max(1, Math.floor(maxPendingHandshakes / 8)), maxConnectionsPerSource: Math.max(1, Math.floor(maxConnections / 10)) };
}

/** A session's effective limits: its template's, else the gateway defaults. */
export function effectiveLimits(template: TemplateLimits | undefined, defaults: FlowControlConfig): Required<TemplateLimits> {
  return {
    publishPerSecond: template?.publishPerSecond ?? defaults.publishPerSecond,
    publishBytesPerSecond: template?.publishBytesPerSecond ?? defaults.publishBytesPerSecond,
    outboundQueueMessages: template?.outboundQueueMessages ?? defaults.outboundQueueMessages,
    outboundQueueBytes: template?.outboundQueueBytes ?? defaults.outboundQueueBytes,
  };
}

export const defaultBrokerLimits = { maxPacketBytes: 256 * 1024, connectTimeoutMs: 10_000 } as const;
