import type { Aedes, Client, PublishPacket } from 'aedes';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { ErrorCode, GatewayMetrics, TemplateLimits } from '../core/index.ts';
import type { AuditInput } from '../registry/index.ts';
import type { ConnectionAdmission, ConnectionAdmissionOptions } from './connection-admission.ts';
import { effectiveLimits, type FlowControlConfig } from './flow-control-config.ts';
import { createIngressFlowControl } from './ingress-flow-control.ts';
import { limitOutboundQueue } from './outbound-queue-limit.ts';
import { classifyClientError } from './protocol-refusals.ts';
import { createRefusalSampler, type RefusalSample } from './refusal-sampler.ts';

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
  /** Right after `aedes.handle(socket)`; `inspectRead` sees each chunk read before the parser (broker/ingress-flow-control.ts). */
  attach(client: Client, inspectRead?: (chunk: Buffer) => boolean): void;
  /** In authorizePublish once the ACL allowed the packet, instead of `callback(null)`. */
  admitPublish(client: Client, packet: PublishPacket, callback: (error?: Error | null) => void): void;
  /** First thing in authenticate: false means answer CONNACK 3 with MQTT_CONNECT_RATE_LIMITED (already counted and audited). */
  admitConnect(client: Client): boolean;
  /** Audits a refusal that any peer can cause at will: sampled per code and second (broker/refusal-sampler.ts). */
  sampleRefusal(code: ErrorCode, sample: RefusalSample): void;
  /** A connection the listener's budgets refused (broker/mqtt-listener.ts): counted, and audited sampled. */
  connectionRefused: ConnectionAdmissionOptions['onRefused'];
  /** When the server closes: writes the pending audit summaries. */
  close(): void;
  /** The session's template limits changed: read them again from the next packet on. */
  refreshLimits(client: Client): void;
}

/** `connections`: the listener's budgets (broker/mqtt-listener.ts), which own the CONNECT rate. */
export function createFlowControl(aedes: Aedes, connections: ConnectionAdmission, config: FlowControlConfig, deps: FlowControlDeps): FlowControl {
  const { metrics, audit, log } = deps;
  // Kept from attach(): aedes reports a protocol error after it destroyed the socket, which forgets its address.
  const remotes = new WeakMap<Client, string>();
  const remoteOf = (client: Client) => remotes.get(client) ?? (client.conn as { remoteAddress?: string }).remoteAddress;
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
  // Refusals an unauthenticated peer can cause at will are audited per code and second, with a count.
  const sampled = createRefusalSampler<ErrorCode>((code, { refused, sample, remotes }) =>
    audit({
      actor: sample.actor ?? `anonymous@${sample.remote ?? '?'}`,
      action: sample.action ?? (code === 'MQTT_CONNECT_RATE_LIMITED' || code === 'MQTT_PROTOCOL_UNSUPPORTED' ? 'mqtt.connect' : code === 'MQTT_PROTOCOL_VIOLATION' || code === 'MQTT_PACKET_TOO_LARGE' ? 'mqtt.packet' : 'mqtt.connection'),
      result: 'refused',
      code,
      ...(sample.deviceId !== undefined ? { deviceId: sample.deviceId } : {}),
      detail: { remote: sample.remote, ...sample.detail, refused, remotes },
    }),
  );
  aedes.on('client', (client) => connections.sessionAdmitted(client.conn as TLSSocket));
  // aedes closes the connection on these and reports them as 'clientError' once the client has an id (after
  // CONNECT), as 'connectionError' before.
  const onProtocolError = (client: Client, error: Error) => {
    const refusal = classifyClientError(error);
    if (refusal === undefined) return;
    metrics.connectionRefused(refusal.code);
    const deviceId = deps.deviceIdOf(client);
    const actor = deps.actorOf(client);
    // Without a session the sampler names the peer by the address kept here.
    sampled.record(refusal.code, { remote: remoteOf(client), ...(actor.startsWith('anonymous@') ? {} : { actor }), ...(deviceId !== undefined ? { deviceId } : {}), detail: refusal.detail });
  };
  aedes.on('clientError', onProtocolError);
  aedes.on('connectionError', onProtocolError);

  return {
    attach(client, inspectRead) {
      const remote = (client.conn as { remoteAddress?: string }).remoteAddress;
      if (remote !== undefined) remotes.set(client, remote);
      ingress.attach(client, inspectRead);
      limitOutboundQueue(client, outbound);
    },
    admitPublish: (client, packet, callback) => ingress.admitPublish(client, packet, callback),
    admitConnect: (client) => connections.admitConnect(remoteOf(client)),
    refreshLimits(client) {
      resolved.delete(client);
      ingress.resetLimits(client);
    },
    sampleRefusal: (code, sample) => sampled.record(code, sample),
    connectionRefused(code, remote, detail) {
      if (code === 'MQTT_CONNECT_RATE_LIMITED') metrics.connectRefused(code);
      else metrics.connectionRefused(code);
      sampled.record(code, { remote, detail });
    },
    close() {
      sampled.flush();
    },
  };
}
