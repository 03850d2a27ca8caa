/**
 * How revocations and policy changes reach every broker. One port: in-process by default (below), Redis
 * pub/sub in a cluster. Delivery is at-most-once, so brokers also re-check the registry on every CONNECT;
 * the bus only makes the effect immediate for sessions that are already open.
 */
export type GatewayEvent =
  | {
      readonly type: 'device.status';
      readonly deviceId: string;
      readonly status: 'active' | 'suspended' | 'revoked';
      readonly reason?: string;
      /** When the change was committed (epoch ms), to measure revocation-to-disconnect latency. */
      readonly at?: number;
    }
  | { readonly type: 'policy.changed'; readonly policy: string }
  /** A template changed (its policy or limits): the open sessions of its devices are re-evaluated. */
  | { readonly type: 'template.changed'; readonly template: string }
  | { readonly type: 'claim.revoked'; readonly claimId: string; readonly certificateSerial: string }
  /** The set of trusted claim issuers (manufacturer CAs) changed: reload TLS trust. */
  | { readonly type: 'trust.changed' }
  /**
   * A rotation campaign reached this device (README "Rotation campaigns"): the broker holding its live
   * session sends the rotate command. Brokers that missed it deliver it when the device next subscribes.
   */
  | { readonly type: 'rotation.notify'; readonly campaignId: string; readonly deviceId: string };

export type GatewayEventHandler = (event: GatewayEvent) => void;

export interface EventBus {
  publish(event: GatewayEvent): Promise<void>;
  /** Returns the unsubscribe function. */
  subscribe(handler: GatewayEventHandler): () => void;
  close(): Promise<void>;
}

export function createInProcessEventBus(onHandlerError: (error: unknown) => void = () => {}): EventBus {
  const handlers = new Set<GatewayEventHandler>();
  return {
    async publish(event) {
      for (const handler of [...handlers]) {
        try {
          handler(event);
        } catch (error) {
          onHandlerError(error); // one failing subscriber must not stop a revocation reaching the others
        }
      }
    },
    subscribe(handler) {
      handlers.add(handler);
      return () => handlers.delete(handler);
    },
    async close() {
      handlers.clear();
    },
  };
}
