import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { GatewayMetrics } from '../core/index.ts';

/** The GatewayMetrics port on prom-client, plus the process defaults (CPU, memory, event loop lag). */
export function createPrometheusMetrics(): { metrics: GatewayMetrics; registry: Registry } {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'fleetgate_' });
  const handshakes = new Counter({ name: 'fleetgate_tls_handshakes_total', help: 'TLS handshakes on the MQTT listener', labelNames: ['outcome'], registers: [registry] });
  const sessions = new Gauge({ name: 'fleetgate_mqtt_sessions', help: 'Open MQTT sessions', labelNames: ['kind'], registers: [registry] });
  const connects = new Counter({ name: 'fleetgate_mqtt_sessions_opened_total', help: 'MQTT sessions admitted', labelNames: ['kind'], registers: [registry] });
  const refusals = new Counter({ name: 'fleetgate_mqtt_connect_refusals_total', help: 'CONNECT refusals by reason code', labelNames: ['code'], registers: [registry] });
  const denials = new Counter({ name: 'fleetgate_acl_denials_total', help: 'Refused publish/subscribe/receive (and oversized packets)', labelNames: ['action'], registers: [registry] });
  const enrollments = new Counter({ name: 'fleetgate_enrollments_total', help: 'Enrollments and renewals by result', labelNames: ['operation', 'transport', 'result', 'code'], registers: [registry] });
  const revocation = new Histogram({
    name: 'fleetgate_revocation_to_disconnect_seconds',
    help: 'From the revocation commit to the live session closed',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  const publishDrops = new Counter({ name: 'fleetgate_mqtt_publish_dropped_total', help: 'QoS 0 PUBLISH packets discarded over the device rate limit', labelNames: ['reason'], registers: [registry] });
  const publishThrottles = new Counter({ name: 'fleetgate_mqtt_publish_throttled_total', help: 'QoS 1/2 PUBLISH packets held back until the device rate limit allowed them', registers: [registry] });
  const deliveryDrops = new Counter({ name: 'fleetgate_mqtt_deliveries_dropped_total', help: 'Messages not queued to a subscriber whose outbound queue was full', labelNames: ['qos'], registers: [registry] });
  const flowDisconnects = new Counter({ name: 'fleetgate_mqtt_flow_disconnects_total', help: 'Sessions closed by flow control, by code', labelNames: ['code'], registers: [registry] });
  const connectionRefusals = new Counter({ name: 'fleetgate_mqtt_connection_refusals_total', help: 'Connections closed before a session was admitted, or for a protocol violation, by code', labelNames: ['code'], registers: [registry] });
  return {
    registry,
    metrics: {
      tlsHandshake: (outcome) => handshakes.inc({ outcome }),
      sessionOpened: (kind) => {
        sessions.inc({ kind });
        connects.inc({ kind });
      },
      sessionClosed: (kind) => sessions.dec({ kind }),
      connectRefused: (code) => refusals.inc({ code }),
      aclDenied: (action) => denials.inc({ action }),
      enrollment: (operation, transport, result, code) => enrollments.inc({ operation, transport, result, code: code ?? '' }),
      revocationToDisconnect: (seconds) => revocation.observe(seconds),
      publishDropped: (reason) => publishDrops.inc({ reason }),
      publishThrottled: () => publishThrottles.inc(),
      deliveryDropped: (qos) => deliveryDrops.inc({ qos: String(qos) }),
      flowDisconnect: (code) => flowDisconnects.inc({ code }),
      connectionRefused: (code) => connectionRefusals.inc({ code }),
    },
  };
}
