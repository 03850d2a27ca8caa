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
};
