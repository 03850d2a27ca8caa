import { Aedes, type Client } from 'aedes';
import { publishTrustBundle } from './trust-bundle.ts';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { type CertificateRequestHandler, type Clock, type EventBus, type GatewayMetrics, noMetrics, type SessionSummary, type TrustStore } from '../core/index.ts';
import type { AuditInput, Registry } from '../registry/index.ts';
import { assertPinnedVersions, clientById, emitterOf, preventEmitterRecursion, useConstantTimeEmitterQueue } from './aedes-internals.ts';
import type { BrokerCluster } from './cluster/redis-cluster.ts';
import type { ConnectionAdmission } from './connection-admission.ts';
import { defaultFlowControl, type FlowControlConfig } from './flow-control-config.ts';
import { createFlowControl, type FlowControl } from './flow-control.ts';
import { frameSizeGuard } from './frame-guard.ts';
import { createLiveSessions } from './live-session-updates.ts';
import { remainingLengthTooLong } from './mqtt-conformance.ts';
import { createConformanceGuard } from './mqtt-conformance-guard.ts';
import { createMqttListener } from './mqtt-listener.ts';
import { createSessionHooks, installSessionHooks } from './session-hooks.ts';
import { SessionTable, type VerifiedPeer } from './session-table.ts';
import { createWillDiscard } from './will-discard.ts';

/** Shared by every connection (one function, not one closure per socket). */
const ignoreError = () => {};

export interface GatewayBrokerConfig {
  readonly host: string;
  /** 0 picks a free port; read the real one from `GatewayBroker.port`. */
  readonly port: number;
  /** The server certificate and key, and every CA certificate a client chain may need (root + issuers). */
  /** Largest MQTT packet accepted, header included. */
  readonly maxPacketBytes: number;
  /** A connection that has not sent CONNECT by then is closed. */
  readonly connectTimeoutMs: number;
  /** Rate, queue and admission limits (broker/flow-control-config.ts); gateway defaults when absent. */
  readonly flow?: FlowControlConfig;
}


export interface GatewayBrokerDeps {
  readonly registry: Registry;
  readonly events: EventBus;
  readonly clock: Clock;
  readonly log: Logger;
  /** The process's trusted CAs (core/trust-store.ts, one per process, shared with the HTTPS API). */
  readonly trust: TrustStore;
  /** Enrollment and renewal over MQTT; without it the request topics are simply not answered. */
  readonly certificateRequests?: CertificateRequestHandler;
  readonly metrics?: GatewayMetrics;
  /** Cluster mode: shared state on Redis. Without it the broker keeps everything in memory. */
  readonly cluster?: BrokerCluster;
}

export interface GatewayBroker {
  readonly port: number;
  /** The Aedes instance, for in-process subscribers (enrollment over MQTT) in the all-in-one process. */
  readonly aedes: Aedes;
  /** Closes the live session of this client id now, and any that is being admitted; true if one was open. */
  disconnect(clientId: string, reason: string): boolean;
  sessions(): SessionSummary[];
  /** TLS handshakes in progress now: each holds one of `flow.maxPendingHandshakes` slots. */
  pendingHandshakes(): number;
  close(): Promise<void>;
}

/** The gateway without its TLS listener: aedes with the hooks, guards and flow control, over one session table. */
export interface GatewayCore {
  readonly aedes: Aedes;
  readonly table: SessionTable;
  /** A connection whose peer was verified (by the TLS listener, or directly by a test): hands it to aedes with every guard. */
  attach(conn: Duplex, peer: VerifiedPeer): Client;
  /** A connection the listener's budgets refused: counted, and audited sampled. */
  readonly connectionRefused: FlowControl['connectionRefused'];
  disconnect(clientId: string, reason: string): boolean;
  sessions(): SessionSummary[];
  /** Stops following events, writes the pending audit summaries, closes aedes and with it every session. */
  close(): Promise<void>;
}

/**
 * Everything of the gateway below the socket: aedes with the gateway's hooks (broker/session-hooks.ts)
 * over one session table (broker/session-table.ts), the guards and flow control that sit between the
 * connection and aedes, and the live updates of open sessions (broker/live-session-updates.ts).
 * `connections` are the listener's budgets (broker/mqtt-listener.ts), which also own the CONNECT rate.
 */
export async function createGatewayCore(config: Omit<GatewayBrokerConfig, 'host' | 'port'>, deps: GatewayBrokerDeps & { readonly connections: ConnectionAdmission }): Promise<GatewayCore> {
  assertPinnedVersions();
  const { registry, clock, log, cluster, trust } = deps;
  const metrics = deps.metrics ?? noMetrics;
  const table = new SessionTable();
  // Nobody waits for these (CONNECTs, sampled refusals, discarded wills): queued, many rows per commit.
  const audit = (entry: AuditInput) => registry.queueAudit(entry, (error) => log.error({ err: error, action: entry.action }, 'audit write failed'));

  const aedes = await Aedes.createBroker({
    connectTimeout: config.connectTimeoutMs,
    // A crashed node's wills fire after 3 missed heartbeats: 30-40 s instead of aedes' 3-4 min.
    ...(cluster ? { id: cluster.brokerId, mq: cluster.mq, persistence: cluster.persistence, heartbeatInterval: 10_000 } : {}),
  });
  preventEmitterRecursion(emitterOf(aedes));
  useConstantTimeEmitterQueue(emitterOf(aedes));

  // MQTT 3.1.1 rules whose breach must close the connection, checked between mqtt-packet and aedes (README
  // "MQTT 3.1.1 strictness"); refusals reach aedes' error path, where flow control audits them (sampled).
  const conformance = createConformanceGuard();
  const flow: FlowControl = createFlowControl(aedes, deps.connections, config.flow ?? defaultFlowControl, {
    sessionLimits: (client) => table.sessionOf(client)?.limits,
    actorOf: (client) => table.actorOf(client),
    deviceIdOf: (client) => table.deviceIdOf(client),
    audit,
    metrics,
    log,
  });
  const wills = createWillDiscard(aedes, { registry, audit, actorOf: (client) => table.actorOf(client), deviceIdOf: (client) => table.deviceIdOf(client), log });
  const hooks = createSessionHooks({
    table,
    registry,
    clock,
    log,
    metrics,
    flow,
    wills,
    ...(cluster ? { cluster } : {}),
    clientById: (clientId) => clientById(aedes, clientId),
    ...(deps.certificateRequests ? { certificateRequests: deps.certificateRequests } : {}),
    publish(topic, body) {
      aedes.publish({ cmd: 'publish', topic, payload: Buffer.from(JSON.stringify(body)), qos: 1, retain: false, dup: false }, (error) => {
        if (error) log.warn({ err: error, topic }, 'could not publish the certificate reply');
      });
    },
    audit,
  });
  installSessionHooks(aedes, hooks, log);
  const live = createLiveSessions({ aedes, table, registry, clock, log, metrics, wills, flow, hooks });

  const unsubscribe = deps.events.subscribe((event) => live.apply(event));
  const unpublishTrust = publishTrustBundle(aedes, trust, log);
  cluster?.onRecovered(() => {
    // A manufacturer CA registered or revoked meanwhile was missed too (trust.changed is pub/sub as well).
    trust.reload().catch((error: unknown) => log.error({ err: error }, 'could not reload claim issuers after the outage'));
    live.recheckAll();
  });

  return {
    aedes,
    table,
    attach(conn, peer) {
      const client = aedes.handle(conn);
      // aedes 1.2.0 parses only on 'readable' (lib/client.js), so no hook can have run for this client
      // yet; if a release ever parsed inside handle(), a hook would have judged it without its verified
      // peer, and the connection is closed rather than vouched for after the fact.
      if (!table.open(client, peer)) {
        conn.destroy();
        return client;
      }
      const remote = (conn as { remoteAddress?: string }).remoteAddress;
      const frameGuard = frameSizeGuard(config.maxPacketBytes, (announced, malformedLength) => {
        if (malformedLength) return conformance.refuse(client, remainingLengthTooLong);
        metrics.aclDenied('packet');
        // Sampled: a TLS connection without a certificate can send this header as often as it reconnects.
        flow.sampleRefusal('MQTT_PACKET_TOO_LARGE', { remote, detail: { announcedBytes: announced, maxPacketBytes: config.maxPacketBytes } });
        conn.destroy();
      });
      conn.on('error', ignoreError); // a reset peer is routine; aedes reports client errors itself
      conformance.attach(client);
      // One read interceptor for the frame guard and the ingress gate (broker/ingress-flow-control.ts).
      flow.attach(client, frameGuard);
      return client;
    },
    connectionRefused: (code, remote, detail) => flow.connectionRefused(code, remote, detail),
    disconnect: (clientId, reason) => live.disconnect(clientId, reason),
    sessions: () => live.sessions(),
    async close() {
      unsubscribe();
      unpublishTrust();
      flow.close();
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
    },
  };
}

/** The MQTT gateway: the TLS listener (broker/mqtt-listener.ts) in front of the gateway core. */
export async function startGatewayBroker(config: GatewayBrokerConfig, deps: GatewayBrokerDeps): Promise<GatewayBroker> {
  assertPinnedVersions(); // before the listener is opened (cli/broker-node.ts checks before joining a cluster; createGatewayCore checks too, for its other callers)
  const listener = createMqttListener(
    { connectTimeoutMs: config.connectTimeoutMs, budgets: config.flow ?? defaultFlowControl },
    {
      trust: deps.trust,
      metrics: deps.metrics ?? noMetrics,
      log: deps.log,
      onRefused: (code, remote, detail) => core.connectionRefused(code, remote, detail),
      onConnection: (socket, peer) => void core.attach(socket, peer),
    },
  );
  let core: Awaited<ReturnType<typeof createGatewayCore>>;
  try {
    core = await createGatewayCore(config, { ...deps, connections: listener.connections });
  } catch (error) {
    await listener.close(); // its trust subscription and connection budgets go with it
    throw error;
  }
  const port = await listener.listen(config.port, config.host);
  return {
    port,
    aedes: core.aedes,
    disconnect: (clientId, reason) => core.disconnect(clientId, reason),
    sessions: () => core.sessions(),
    pendingHandshakes: () => listener.connections.pendingHandshakes(),
    async close() {
      const closed = listener.close();
      await core.close();
      await closed;
      await deps.cluster?.close();
    },
  };
}
