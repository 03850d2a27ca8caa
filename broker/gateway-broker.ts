import { Aedes, type Client, type Subscription } from 'aedes';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import {
  type CertificateRequestHandler,
  type Clock,
  classifyPeer,
  decideInScope,
  enrollTopics,
  type ErrorCode,
  type EventBus,
  type GatewayEvent,
  isFleetgateError,
  type PeerCredential,
  type SessionIdentity,
  type SessionSummary,
  type GatewayMetrics,
  compilePolicy,
  noMetrics,
  renewTopics,
  listenerSecureContext,
  trustedIssuers,
} from '../core/index.ts';
import type { AuditInput, Registry } from '../registry/index.ts';
import { connackReturnCode } from './connack-codes.ts';
import { guardFrameSize } from './frame-guard.ts';
import { remainingLengthTooLong } from './mqtt-conformance.ts';
import { createConformanceGuard } from './mqtt-conformance-guard.ts';
import { preventEmitterRecursion } from './emitter-trampoline.ts';
import { createFlowControl, type FlowControl } from './flow-control.ts';
import { defaultFlowControl, type FlowControlConfig } from './flow-control-config.ts';
import { admitSession, recheckSession, type SessionContext } from './session-admission.ts';
import type { BrokerCluster } from './cluster/redis-cluster.ts';
import { refreshSession } from './live-session-updates.ts';
import { createWillDiscard } from './will-discard.ts';

export interface GatewayBrokerConfig {
  readonly host: string;
  /** 0 picks a free port; read the real one from `GatewayBroker.port`. */
  readonly port: number;
  /** The server certificate and key, and every CA certificate a client chain may need (root + issuers). */
  readonly tls: { readonly cert: string; readonly key: string; readonly ca: readonly string[] };
  /** The CA that issues device and service certificates, and the CAs that issue claim certificates. */
  readonly issuers: { readonly device: string; readonly claim: readonly string[] };
  /** Largest MQTT packet accepted, header included. */
  readonly maxPacketBytes: number;
  /** A connection that has not sent CONNECT by then is closed. */
  readonly connectTimeoutMs: number;
  /** Rate, queue and admission limits (broker/flow-control-config.ts); gateway defaults when absent. */
  readonly flow?: FlowControlConfig;
}

export const defaultBrokerLimits = { maxPacketBytes: 256 * 1024, connectTimeoutMs: 10_000 } as const;

export interface GatewayBrokerDeps {
  readonly registry: Registry;
  readonly events: EventBus;
  readonly clock: Clock;
  readonly log: Logger;
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

/**
 * The id aedes knows a claim session by. Device ids cannot contain "/" or start with "$" (core/device-id.ts),
 * so no device or service session can ever share it.
 */
const claimClientId = (serial: string) => `$claim/${serial}`;

/** aedes keeps its client table untyped and null-prototyped. */
type ClientTable = Record<string, Client | undefined>;

const kickMemoryMs = 5 * 60_000;

export async function startGatewayBroker(config: GatewayBrokerConfig, deps: GatewayBrokerDeps): Promise<GatewayBroker> {
  const { registry, clock, log } = deps;
  const metrics = deps.metrics ?? noMetrics;
  // Manufacturer CAs (birth certificates) live in the registry and can be added while running.
  let manufacturerPems = (await registry.listClaimIssuers()).flatMap((claim) => (claim.issuerPem ? [claim.issuerPem] : []));
  const loadIssuers = () => trustedIssuers((pem) => new X509Certificate(pem), { device: config.issuers.device, claim: config.issuers.claim, manufacturer: manufacturerPems });
  let issuers = loadIssuers();
  const secureContextOptions = () => listenerSecureContext({ cert: config.tls.cert, key: config.tls.key, ca: [...config.tls.ca, ...manufacturerPems] });
  /**
   * What each connection's handshake proved, read once: the credential, and the client certificate a relay
   * forwards with an enrollment or renewal (by the time aedes runs the `published` hook, a client that sent
   * its request and left has a closed socket that no longer answers getPeerX509Certificate()). The
   * certificate object shares OpenSSL's copy; its DER is only made when a request is relayed.
   */
  const peers = new WeakMap<object, { readonly credential: PeerCredential; readonly certificate: X509Certificate | undefined }>();
  const credentialOfConnection = (conn: object): PeerCredential => peers.get(conn)?.credential ?? { kind: 'refused', code: 'AUTH_NO_CLIENT_CERT', reason: 'no TLS session' };
  const sessions = new WeakMap<Client, SessionContext>();
  const willTopics = new WeakMap<Client, string>();
  /** The client id a claim session asked for (its serial); aedes knows it under claimClientId(serial). */
  const claimSerials = new WeakMap<Client, string>();
  /** Sessions counted as open in the metrics (a session kicked while registering never was). */
  const counted = new WeakSet<Client>();
  /** clientId → when it was last kicked, to catch a session admitted just before and registered just after. */
  const kickedAt = new Map<string, number>();

  const audit = (entry: AuditInput) => {
    registry.appendAudit(entry).catch((error: unknown) => log.error({ err: error, action: entry.action }, 'audit write failed'));
  };
  const remoteOf = (client: Client) => (client.conn as TLSSocket).remoteAddress;
  const actorOf = (client: Client) => {
    const session = sessions.get(client);
    if (session === undefined) return `anonymous@${remoteOf(client) ?? '?'}`;
    return session.identity.kind === 'claim' ? `claim:${session.clientId}` : `device:${session.clientId}`;
  };
  const refuse = (client: Client, action: string, code: ErrorCode, detail: Record<string, unknown>) => {
    const session = sessions.get(client);
    if (action !== 'mqtt.connect') metrics.aclDenied(action === 'mqtt.publish' ? 'publish' : action === 'mqtt.subscribe' ? 'subscribe' : 'receive');
    if (action === 'mqtt.subscribe' || action === 'mqtt.receive') {
      // A session keeps going after these (one SUBSCRIBE can carry thousands of filters; every delivery is
      // checked): sampled per session and code, so one session cannot flood the audit trail.
      flow.sampleRefusal(code, {
        remote: remoteOf(client),
        actor: actorOf(client),
        action,
        ...(session?.identity.kind === 'device' ? { deviceId: session.clientId } : {}),
        detail,
        perActor: true,
      });
      return;
    }
    audit({
      actor: actorOf(client),
      action,
      result: 'refused',
      code,
      ...(session?.identity.kind === 'device' ? { deviceId: session.clientId } : {}),
      detail: { remote: remoteOf(client), ...detail },
    });
  };

  const { cluster } = deps;
  const aedes = await Aedes.createBroker({
    connectTimeout: config.connectTimeoutMs,
    // A crashed node's wills fire after 3 missed heartbeats: 30-40 s instead of aedes' 3-4 min.
    ...(cluster ? { id: cluster.brokerId, mq: cluster.mq, persistence: cluster.persistence, heartbeatInterval: 10_000 } : {}),

    preConnect(client, packet, callback) {
      // Protocol level and MQTT 3.1.1 conformance were checked before aedes saw the packet (conformance below).
      if (packet.will) willTopics.set(client, packet.will.topic);
      if (credentialOfConnection(client.conn).kind === 'claim') {
        // A claim session lives in its own client-id namespace, so it can never take over, restore or clean
        // the session of the device whose serial it enrolls (aedes keys sessions and takeovers by client id).
        claimSerials.set(client, packet.clientId);
        packet.clientId = claimClientId(packet.clientId);
      }
      callback(null, true);
    },

    authenticate(client, _username, _password, done) {
      const credential = credentialOfConnection(client.conn);
      // Load shedding before any registry work; counted and audited (sampled) by flow control. A peer whose
      // certificate proved nothing is refused below without drawing on the budget, so certificate-less
      // floods cannot use up the CONNECT rate that devices need.
      if (credential.kind !== 'refused' && !flow.admitConnect(client)) {
        return done(Object.assign(new Error('MQTT_CONNECT_RATE_LIMITED'), { returnCode: connackReturnCode.MQTT_CONNECT_RATE_LIMITED }), false);
      }
      const now = clock.now();
      // Cut off from Redis, this broker would miss revocations and could not share the session: fail closed.
      const clusterDown = cluster?.unavailableReason();
      const admission = clusterDown
        ? Promise.resolve({ admitted: false as const, code: 'CLUSTER_UNAVAILABLE' as const, reason: clusterDown })
        : admitSession({ credential, clientId: claimSerials.get(client) ?? client.id, willTopic: willTopics.get(client), now, isConnected }, registry);
      admission
        .catch((error: unknown) => {
          // Fail closed: a registry we cannot read admits nobody.
          log.error({ err: error }, 'registry unavailable during CONNECT; refusing the session');
          return { admitted: false as const, code: 'AUTH_SERVICE_UNAVAILABLE' as const, reason: 'registry error' };
        })
        .then((result) => {
          if (result.admitted) {
            sessions.set(client, result.session);
            done(null, true);
            return;
          }
          const deviceId = credential.kind === 'device' ? credential.deviceId : undefined;
          const claimSerial = claimSerials.get(client);
          metrics.connectRefused(result.code);
          const detail = { remote: remoteOf(client), clientId: (claimSerial ?? client.id).slice(0, 128), reason: result.reason, ...('serial' in credential ? { serial: credential.serial } : {}) };
          const error = Object.assign(new Error(result.code), { returnCode: connackReturnCode[result.code] });
          if (credential.kind === 'refused') {
            // No verified identity: anyone can send these at will, so they are sampled (counted, not one row each).
            flow.sampleRefusal(result.code, { remote: remoteOf(client), action: 'mqtt.connect', detail });
            return done(error, false);
          }
          audit({
            actor: deviceId !== undefined ? `device:${deviceId}` : claimSerial !== undefined ? `claim:${claimSerial.slice(0, 128)}` : `anonymous@${remoteOf(client) ?? '?'}`,
            action: 'mqtt.connect',
            result: 'refused',
            code: result.code,
            ...(deviceId !== undefined ? { deviceId } : {}),
            detail,
          });
          done(error, false);
        });
    },

    authorizePublish(client, packet, callback) {
      // client is null only for wills of clients whose broker died: checked against the registry as it is now.
      if (client === null) return wills.authorizeOrphan(packet, callback);
      const session = sessions.get(client);
      if (session === undefined) return callback(new Error('no session'));
      // A session the gateway cut publishes nothing more, its will included (broker/will-discard.ts).
      if (!wills.mayPublish(client, packet)) return callback(new Error('MQTT_WILL_DISCARDED'));
      const clusterDown = packet.qos > 0 ? cluster?.unavailableReason() : undefined;
      if (clusterDown !== undefined) {
        // aedes acknowledges QoS 1 before it stores or forwards (docs/THREAT-MODEL.md, residual risks): refuse instead, so the
        // device keeps the message and sends it again once Redis is back.
        audit({ actor: actorOf(client), action: 'mqtt.publish', result: 'refused', code: 'CLUSTER_UNAVAILABLE', detail: { remote: remoteOf(client), reason: clusterDown } });
        return callback(new Error('CLUSTER_UNAVAILABLE'));
      }
      const decision = decideInScope(session.identity, 'publish', packet.topic);
      if (decision.allowed) {
        // Requests on the gateway's own topics are answered, never kept: a retained request would let a
        // claim key park payloads in the broker under as many serials as it likes.
        if (packet.retain && packet.topic.charCodeAt(0) === 0x24) packet.retain = false;
        return flow.admitPublish(client, packet, callback);
      }
      refuse(client, 'mqtt.publish', decision.code ?? 'ACL_PUBLISH_DENIED', { topic: packet.topic.slice(0, 256), statement: decision.decision?.statementIndex });
      callback(new Error(decision.code)); // aedes closes the connection: MQTT 3.1.1 has no negative PUBACK
    },

    authorizeSubscribe(client, subscription, callback) {
      const session = sessions.get(client);
      const decision = session ? decideInScope(session.identity, 'subscribe', subscription.topic) : { allowed: false, code: 'ACL_SUBSCRIBE_DENIED' as const };
      if (decision.allowed) return callback(null, subscription);
      refuse(client, 'mqtt.subscribe', decision.code ?? 'ACL_SUBSCRIBE_DENIED', { filter: subscription.topic.slice(0, 256) });
      callback(null, null as unknown as Subscription); // SUBACK 0x80 for this filter [MQTT-3.9.3]
    },

    // Runs after the PUBLISH was authorized and acknowledged: answer enrollment and renewal requests.
    published(packet, client, callback) {
      callback(null);
      // Cheap test first: this hook sees every message, and only "$fleetgate/…" requests concern it.
      // (client is null for the broker's own publishes, such as the replies below.)
      if (packet.topic.charCodeAt(0) !== 0x24 || !client) return;
      const session = sessions.get(client);
      if (session !== undefined) answerCertificateRequest(client, session, packet.topic, packet.payload);
    },

    authorizeForward(client, packet) {
      const session = sessions.get(client);
      if (session === undefined) return null;
      const decision = decideInScope(session.identity, 'receive', packet.topic);
      if (decision.allowed) return packet;
      if (!packet.topic.startsWith('$SYS/')) refuse(client, 'mqtt.receive', decision.code ?? 'ACL_RECEIVE_DENIED', { topic: packet.topic.slice(0, 256) });
      return null;
    },
  });

  preventEmitterRecursion((aedes as unknown as { mq: unknown }).mq);
  const wills = createWillDiscard(aedes, { registry, audit, actorOf, deviceIdOf: (client) => (sessions.get(client)?.identity.kind === 'device' ? client.id : undefined), log });

  aedes.on('client', (client) => {
    const session = sessions.get(client);
    const kicked = kickedAt.get(client.id);
    if (session !== undefined && kicked !== undefined && kicked >= session.admittedAt) {
      wills.cut(client, 'session closed by the gateway while it was being admitted');
      client.close();
      return;
    }
    if (session?.replaces) {
      // First connection with a renewed certificate: only now is the old one retired (a device whose
      // renewal reply was lost keeps working with the old certificate until then).
      registry
        .supersedeReplaced(session.certificateSerial, { actor: `device:${client.id}`, action: 'certificate.supersede', result: 'ok' })
        .catch((error: unknown) => log.error({ err: error, clientId: client.id }, 'could not supersede the renewed certificate'));
    }
    if (session !== undefined) {
      counted.add(client);
      metrics.sessionOpened(session.identity.kind);
      cluster?.sessions.opened(client.id, summaryOf(client, session));
    }
    audit({
      actor: actorOf(client),
      action: 'mqtt.connect',
      result: 'ok',
      ...(session?.identity.kind === 'device' ? { deviceId: client.id } : {}),
      detail: { remote: remoteOf(client), serial: session?.certificateSerial },
    });
  });
  aedes.on('clientDisconnect', (client) => {
    const session = sessions.get(client);
    if (session !== undefined && counted.delete(client)) {
      metrics.sessionClosed(session.identity.kind);
      // After a takeover on this node the table already holds the new session under the same id.
      const current = (aedes as unknown as { clients: ClientTable }).clients[client.id];
      if (current === undefined || current === client) cluster?.sessions.closed(client.id);
    }
  });
  aedes.on('clientError', (client, error) => log.debug({ clientId: client.id, err: error.message }, 'client error'));

  function answerCertificateRequest(client: Client, session: SessionContext, topic: string, payload: Buffer | string): void {
    const handler = deps.certificateRequests;
    if (handler === undefined) return;
    // The certificate the session was admitted with, for a relay to forward (provisioning checks it itself).
    const certificate = peers.get(client.conn)?.certificate?.raw;
    if (certificate === undefined) return;
    const body = typeof payload === 'string' ? new TextEncoder().encode(payload) : new Uint8Array(payload);
    let topics: { accepted: string; rejected: string };
    let work: Promise<unknown>;
    if (session.identity.kind === 'claim' && topic === enrollTopics(session.clientId).request) {
      topics = enrollTopics(session.clientId);
      // Admission already bound a birth certificate's session to the serial in its CN (client id).
      work = handler.enroll({ claimKey: session.certificateSerial, serial: session.clientId, certificate, body, transport: 'mqtt' });
    } else if (session.identity.kind === 'device' && topic === renewTopics(session.clientId).request) {
      topics = renewTopics(session.clientId);
      work = handler.renew({ certificateSerial: session.certificateSerial, certificateFingerprint: session.certificateFingerprint, deviceId: session.clientId, certificate, body, transport: 'mqtt' });
    } else {
      return;
    }
    work
      .then(
        (reply) => ({ topic: topics.accepted, body: reply }),
        (error: unknown) => {
          if (!isFleetgateError(error)) log.error({ err: error, topic }, 'certificate request failed');
          return { topic: topics.rejected, body: isFleetgateError(error) ? { code: error.code, message: error.message } : { code: 'INTERNAL', message: 'Internal error; retry later.' } };
        },
      )
      .then((answer) => {
        aedes.publish({ cmd: 'publish', topic: answer.topic, payload: Buffer.from(JSON.stringify(answer.body)), qos: 1, retain: false, dup: false }, (error) => {
          if (error) log.warn({ err: error, topic: answer.topic }, 'could not publish the certificate reply');
        });
      });
  }

  const server: Server = createServer(
    {
      ...secureContextOptions(),
      requestCert: true,
      // Verify, but let the handshake finish: refusals are sent as CONNACK so devices can see them.
      rejectUnauthorized: false,
      handshakeTimeout: config.connectTimeoutMs,
      // MQTT's small packets (CONNACK after the TLS 1.3 session tickets, PUBACK, SUBACK) must not wait for
      // the peer's delayed ACK under Nagle's algorithm.
      noDelay: true,
    },
    (socket) => {
      metrics.tlsHandshake('ok');
      peers.set(socket, classifyPeer(socket, issuers));
      const client = aedes.handle(socket);
      guardFrameSize(socket, config.maxPacketBytes, (announced, malformedLength) => {
        if (malformedLength) return conformance.refuse(client, remainingLengthTooLong);
        metrics.aclDenied('packet');
        // Sampled: a TLS connection without a certificate can send this header as often as it reconnects.
        flow.sampleRefusal('MQTT_PACKET_TOO_LARGE', { remote: socket.remoteAddress, detail: { announcedBytes: announced, maxPacketBytes: config.maxPacketBytes } });
        socket.destroy();
      });
      socket.on('error', () => {}); // a reset peer is routine; aedes reports client errors itself
      conformance.attach(client);
      flow.attach(client);
    },
  );
  // MQTT 3.1.1 rules whose breach must close the connection, checked between mqtt-packet and aedes (README
  // "MQTT 3.1.1 strictness"); refusals reach aedes' error path, where flow control audits them (sampled).
  const conformance = createConformanceGuard();
  const flow: FlowControl = createFlowControl(aedes, server, { ...(config.flow ?? defaultFlowControl), connectTimeoutMs: config.connectTimeoutMs }, {
    sessionLimits: (client) => sessions.get(client)?.limits,
    actorOf,
    deviceIdOf: (client) => (sessions.get(client)?.identity.kind === 'device' ? client.id : undefined),
    audit,
    metrics,
    log,
  });
  server.on('tlsClientError', (error, socket) => {
    metrics.tlsHandshake('failed');
    log.debug({ err: error.message, remote: socket.remoteAddress }, 'TLS handshake failed');
  });

  const unsubscribe = deps.events.subscribe((event: GatewayEvent) => {
    if (event.type === 'device.status' && event.status !== 'active') disconnect(event.deviceId, `device ${event.status}`, event.at);
    if (event.type === 'policy.changed') applyPolicyChange(event.policy).catch((error: unknown) => log.error({ err: error, policy: event.policy }, 'could not apply the policy change'));
    if (event.type === 'template.changed') applyTemplateChange(event.template).catch((error: unknown) => log.error({ err: error, template: event.template }, 'could not apply the template change'));
    if (event.type === 'claim.revoked') disconnectClaimSessions(event.certificateSerial);
    if (event.type === 'trust.changed') reloadTrust().catch((error: unknown) => log.error({ err: error }, 'could not reload claim issuers'));
  });

  /** A revoked claim stops enrolling now, including sessions that are connected and about to ask. */
  function disconnectClaimSessions(claimKey: string): void {
    for (const client of Object.values((aedes as unknown as { clients: ClientTable }).clients)) {
      const session = client && sessions.get(client);
      if (client && session?.identity.kind === 'claim' && session.certificateSerial === claimKey) disconnect(client.id, 'claim revoked');
    }
  }

  /** New handshakes use the new CA list at once; established sessions are not affected. */
  async function reloadTrust(): Promise<void> {
    manufacturerPems = (await registry.listClaimIssuers()).flatMap((claim) => (claim.issuerPem ? [claim.issuerPem] : []));
    issuers = loadIssuers();
    server.setSecureContext(secureContextOptions());
    log.info({ manufacturerCas: manufacturerPems.length }, 'claim issuers reloaded');
  }

  /**
   * A changed policy applies to open sessions at once: each is recompiled, so the next publish, subscribe
   * and every delivery (authorizeForward) are judged by the new statements, and subscriptions it no longer
   * allows are removed. A deleted policy closes its sessions (fail closed).
   */
  async function applyPolicyChange(name: string): Promise<void> {
    const policy = await registry.getPolicy(name);
    for (const client of Object.values((aedes as unknown as { clients: ClientTable }).clients)) {
      const session = client && sessions.get(client);
      if (!client || session?.policyName !== name || session.subject === undefined) continue;
      if (policy === undefined) {
        disconnect(client.id, 'policy deleted');
        continue;
      }
      const identity = { kind: 'device' as const, id: session.subject.id, policy: compilePolicy(policy.document, session.subject) };
      if (!willStillAllowed(client, identity)) continue;
      sessions.set(client, { ...session, identity });
      dropForbiddenSubscriptions(client, identity);
    }
    log.info({ policy: name }, 'policy applied to open sessions');
  }

  /**
   * A changed template applies to the open sessions of its devices at once, as a policy change does (README
   * "Enrollment and renewal", templates): each is read again from the registry (broker/live-session-updates.ts),
   * recompiled against the policy it now gets, its subscriptions checked again, and the template's new traffic
   * limits apply from its next packet. A session admission would now refuse is closed.
   */
  async function applyTemplateChange(name: string): Promise<void> {
    const clients = (aedes as unknown as { clients: ClientTable }).clients;
    const affected = Object.values(clients).flatMap((client) => {
      const session = client && sessions.get(client);
      return client && session?.subject?.template === name ? [{ client, session }] : [];
    });
    await Promise.all(
      affected.map(async ({ client, session }) => {
        const update = await refreshSession(session, registry).catch((error: unknown) => {
          log.error({ err: error, clientId: client.id }, 'could not re-read the session; closing it');
          return { closeReason: 'session could not be re-checked' };
        });
        // Gone meanwhile, or replaced by a newer session admitted from the registry as it is now. (A policy
        // change applied meanwhile is overwritten: both are registry reads made after their events.)
        if (client.closed || clients[client.id] !== client) return;
        if ('closeReason' in update) return void disconnect(client.id, update.closeReason);
        if (!willStillAllowed(client, update.session.identity)) return;
        sessions.set(client, update.session);
        flow.refreshLimits(client);
        dropForbiddenSubscriptions(client, update.session.identity, 'template changed');
      }),
    );
    log.info({ template: name, sessions: affected.length }, 'template applied to open sessions');
  }

  /**
   * Admission refuses a will the policy does not allow (MQTT_WILL_DENIED), so a session whose new policy no
   * longer allows its will topic is closed, its will discarded; the device learns why when it reconnects.
   */
  function willStillAllowed(client: Client, identity: SessionIdentity): boolean {
    const topic = willTopics.get(client);
    if (topic === undefined || decideInScope(identity, 'publish', topic).allowed) return true;
    disconnect(client.id, 'will topic no longer allowed by the policy');
    return false;
  }

  /**
   * Subscriptions the new policy no longer allows are removed from the session, as if the device had
   * unsubscribed (no UNSUBACK is sent: it did not ask). A persistent session's stored copy is refused again
   * when the session is restored, since aedes re-authorizes stored subscriptions at CONNECT.
   */
  function dropForbiddenSubscriptions(client: Client, identity: SessionIdentity, reason = 'policy changed'): void {
    const filters = Object.keys((client as unknown as { subscriptions: Record<string, unknown> }).subscriptions ?? {});
    const forbidden = filters.filter((filter) => !decideInScope(identity, 'subscribe', filter).allowed);
    if (forbidden.length === 0) return;
    for (const filter of forbidden) refuse(client, 'mqtt.subscribe', 'ACL_SUBSCRIBE_DENIED', { filter: filter.slice(0, 256), reason });
    (client as unknown as { unsubscribe(filters: string[], done: (error?: Error) => void): void }).unsubscribe(forbidden, (error) => {
      if (error) log.warn({ err: error, clientId: client.id }, 'could not remove subscriptions the new policy forbids');
    });
  }

  function disconnect(clientId: string, reason: string, changedAt?: number): boolean {
    const now = clock.now().getTime();
    kickedAt.set(clientId, now);
    for (const [id, at] of kickedAt) if (at < now - kickMemoryMs) kickedAt.delete(id);
    const client = (aedes as unknown as { clients: ClientTable }).clients[clientId];
    if (client === undefined) return false;
    log.info({ clientId, reason }, 'closing session');
    wills.cut(client, reason);
    client.close(() => {
      if (changedAt !== undefined) metrics.revocationToDisconnect(Math.max(0, Date.now() - changedAt) / 1000);
    });
    return true;
  }

  /**
   * Back from a Redis outage: revocations published meanwhile never arrived (pub/sub is at-most-once), so
   * every open session is checked against the registry again and closed if it no longer passes.
   */
  cluster?.onRecovered(() => {
    // A manufacturer CA registered or revoked meanwhile was missed too (trust.changed is pub/sub as well).
    reloadTrust().catch((error: unknown) => log.error({ err: error }, 'could not reload claim issuers after the outage'));
    const policies = new Set<string>();
    const templates = new Set<string>();
    for (const client of Object.values((aedes as unknown as { clients: ClientTable }).clients)) {
      const session = client && sessions.get(client);
      if (!client || session === undefined) continue;
      if (session.policyName !== undefined) policies.add(session.policyName);
      if (session.subject !== undefined) templates.add(session.subject.template);
      recheckSession(session, registry, clock.now()).then(
        (reason) => reason !== undefined && disconnect(client.id, reason),
        (error: unknown) => {
          log.error({ err: error, clientId: client.id }, 'could not re-check the session; closing it');
          disconnect(client.id, 'session could not be re-checked');
        },
      );
    }
    // Policy changes made meanwhile were missed too: recompile every policy in use.
    for (const name of policies) applyPolicyChange(name).catch((error: unknown) => log.error({ err: error, policy: name }, 'could not re-apply the policy'));
    for (const name of templates) applyTemplateChange(name).catch((error: unknown) => log.error({ err: error, template: name }, 'could not re-apply the template'));
  });

  /** A device or service session with this id is open here or, in a cluster, on any broker. */
  async function isConnected(clientId: string): Promise<boolean> {
    const local = (aedes as unknown as { clients: ClientTable }).clients[clientId];
    if (local !== undefined) return true;
    return cluster === undefined ? false : cluster.sessions.isOpen(clientId);
  }

  function summaryOf(client: Client, session: SessionContext): SessionSummary {
    return { clientId: session.clientId, kind: session.identity.kind, certificateSerial: session.certificateSerial, remoteAddress: remoteOf(client), connectedAt: new Date(session.admittedAt) };
  }

  server.listen(config.port, config.host);
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;

  return {
    port,
    aedes,
    disconnect,
    sessions() {
      const clients = Object.values((aedes as unknown as { clients: ClientTable }).clients);
      return clients.flatMap((client) => {
        const session = client && sessions.get(client);
        return client && session ? [summaryOf(client, session)] : [];
      });
    },
    pendingHandshakes: () => flow.pendingHandshakes(),
    async close() {
      unsubscribe();
      const closed = once(server, 'close');
      server.close();
      flow.close();
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      await closed;
      await cluster?.close();
    },
  };
}
