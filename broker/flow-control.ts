import type { Aedes, Client, PublishPacket } from 'aedes';
import type { Server } from 'node:tls';
import type { Logger } from 'pino';
import type { GatewayMetrics, TemplateLimits } from '../core/index.ts';
import type { AuditInput } from '../registry/index.ts';
import { createConnectionAdmission } from './connection-admission.ts';
import { effectiveLimits, type FlowControlConfig } from './flow-control-config.ts';
import { createIngressFlowControl } from './ingress-flow-control.ts';
import { limitOutboundQueue } from './outbound-queue-limit.ts';

export interface FlowControlDeps {
  /** The template limits of the client's admitted session (undefined before CONNECT is admitted). */
  readonly sessionLimits: (client: Client) => TemplateLimits | undefined;
  readonly actorOf: (client: Client) => string;
  readonly deviceIdOf: (client: Client) => string | undefined;
  readonly audit: (entry: AuditInput) => void;
  readonly metrics: GatewayMetrics;
  readonly log: Logger;
}

/** The broker's hooks into ingress flow control, outbound queue limits and connection admission. */
export interface FlowControl {
  /** Right after `aedes.handle(socket)`. */
  attach(client: Client): void;
  /** In authorizePublish once the ACL allowed the packet, instead of `callback(null)`. */
  admitPublish(client: Client, packet: PublishPacket, callback: (error?: Error | null) => void): void;
  /** First thing in authenticate: false means answer CONNACK 3 with MQTT_CONNECT_RATE_LIMITED (already counted and audited). */
  admitConnect(client: Client): boolean;
  /** The session's template limits changed: read them again from the next packet on. */
  refreshLimits(client: Client): void;
}

export function createFlowControl(aedes: Aedes, server: Server, config: FlowControlConfig, deps: FlowControlDeps): FlowControl {
  const { metrics, audit, log } = deps;
  const remoteOf = (client: Client) => (client.conn as { remoteAddress?: string }).remoteAddress;
  // Looked up on every delivery, so computed once per session (and again when its template changes).
  const resolved = new WeakMap<Client, Required<TemplateLimits>>();
  const limitsOf = (client: Client) => {
    let limits = resolved.get(client);
    if (limits === undefined) {
      const template = deps.sessionLimits(client);
      limits = effectiveLimits(template, config);
      if (template !== undefined) resolved.set(client, limits);
    }
    return limits;
  };
  const cut = (client: Client, code: 'MQTT_PUBLISH_RATE_EXCEEDED' | 'MQTT_SUBSCRIBER_TOO_SLOW', detail: Record<string, unknown>) => {
    metrics.flowDisconnect(code);
    const deviceId = deps.deviceIdOf(client);
    audit({ actor: deps.actorOf(client), action: 'mqtt.flow', result: 'refused', code, ...(deviceId !== undefined ? { deviceId } : {}), detail: { remote: remoteOf(client), ...detail, limits: limitsOf(client) } });
    log.info({ clientId: client.id, code }, 'closing session over its flow limits');
    client.close();
  };

  const ingress = createIngressFlowControl(aedes, {
    limitsOf,
    maxInflightPublishes: config.maxInflightPublishes,
    overLimitGraceMs: config.overLimitGraceMs,
    onDropped: () => metrics.publishDropped('rate'),
    onThrottled: () => metrics.publishThrottled(),
    onViolation: (client, detail) => cut(client, 'MQTT_PUBLISH_RATE_EXCEEDED', detail),
  });
  const outbound = {
    limitsOf,
    overLimitGraceMs: config.overLimitGraceMs,
    onDropped: (qos: 0 | 1 | 2) => metrics.deliveryDropped(qos),
    onTooSlow: (client: Client, detail: Record<string, unknown>) => cut(client, 'MQTT_SUBSCRIBER_TOO_SLOW', detail),
  };
  const connections = createConnectionAdmission(server, {
    maxConnections: config.maxConnections,
    maxPendingHandshakes: config.maxPendingHandshakes,
    connectPerSecond: config.connectPerSecond,
    onRefused: (code) => (code === 'MQTT_CONNECT_RATE_LIMITED' ? metrics.connectRefused(code) : metrics.connectionRefused(code)),
    onRefusalSummary: (code, detail) => audit({ actor: `anonymous@${detail.remote ?? '?'}`, action: code === 'MQTT_CONNECT_RATE_LIMITED' ? 'mqtt.connect' : 'mqtt.connection', result: 'refused', code, detail }),
  });

  return {
    attach(client) {
      ingress.attach(client);
      limitOutboundQueue(client, outbound);
    },
    admitPublish: (client, packet, callback) => ingress.admitPublish(client, packet, callback),
    admitConnect: (client) => connections.admitConnect(remoteOf(client)),
    refreshLimits(client) {
      resolved.delete(client);
      ingress.resetLimits(client);
    },
  };
}
