import type { Aedes, Client } from 'aedes';
import type { Logger } from 'pino';
import { type CertificateRequestHandler, type Clock, decideInScope, enrollTopics, type ErrorCode, type GatewayMetrics, isFleetgateError, renewTopics, type SessionSummary } from '../core/index.ts';
import type { AuditInput, Registry } from '../registry/index.ts';
import type { BrokerCluster } from './cluster/redis-cluster.ts';
import { connackReturnCode } from './connack-codes.ts';
import type { FlowControl } from './flow-control.ts';
import { type AdmissionResult, admitSession, type SessionContext } from './session-admission.ts';
import { claimClientId, remoteOf, type SessionTable } from './session-table.ts';
import type { WillDiscard } from './will-discard.ts';

export interface SessionHookDeps {
  readonly table: SessionTable;
  readonly registry: Registry;
  readonly clock: Clock;
  readonly log: Logger;
  readonly metrics: GatewayMetrics;
  /** Load shedding and rate limits (broker/flow-control.ts): the hooks ask it before and after their own decision. */
  readonly flow: Pick<FlowControl, 'admitConnect' | 'admitPublish' | 'sampleRefusal'>;
  readonly wills: Pick<WillDiscard, 'mayPublish' | 'authorizeOrphan' | 'cut'>;
  /** Cluster mode: fail closed while Redis is unreachable, and report sessions to the shared list. */
  readonly cluster?: Pick<BrokerCluster, 'unavailableReason' | 'sessions'>;
  /** The client registered under this id on this broker now (after a takeover, the newer one). */
  readonly clientById: (clientId: string) => Client | undefined;
  /** Enrollment and renewal over MQTT; without it the request topics are simply not answered. */
  readonly certificateRequests?: CertificateRequestHandler;
  /** Publishes a message from the broker itself (the answers to enrollment and renewal requests). */
  readonly publish: (topic: string, body: unknown) => void;
  readonly audit: (entry: AuditInput) => void;
}

type Hook<K extends 'preConnect' | 'authenticate' | 'authorizePublish' | 'authorizeSubscribe' | 'authorizeForward' | 'published'> = Aedes[K];

/** The aedes hooks of the gateway (R2 admission, R4 topic scope, R5 enrollment over MQTT: docs/THREAT-MODEL.md), and its session events. */
export interface SessionHooks {
  readonly preConnect: Hook<'preConnect'>;
  readonly authenticate: Hook<'authenticate'>;
  readonly authorizePublish: Hook<'authorizePublish'>;
  readonly authorizeSubscribe: Hook<'authorizeSubscribe'>;
  readonly authorizeForward: Hook<'authorizeForward'>;
  readonly published: Hook<'published'>;
  /** aedes 'client': the session is registered (CONNACK sent). */
  sessionOpened(client: Client): void;
  /** aedes 'clientDisconnect'. */
  sessionClosed(client: Client): void;
  /** Audits a refused action of a session (sampled for subscribe and receive, which a session can repeat at will). */
  refuse(client: Client, action: 'mqtt.connect' | 'mqtt.publish' | 'mqtt.subscribe' | 'mqtt.receive', code: ErrorCode, detail: Record<string, unknown>): void;
  /** Whether a device or service session with this id is open here or, in a cluster, on any broker. */
  isConnected(clientId: string): Promise<boolean>;
  summaryOf(client: Client, session: SessionContext): SessionSummary;
}

/**
 * The gateway's decisions at each MQTT step, as plain functions over the session table: nothing here holds
 * state of its own or reaches into aedes (test/broker/hooks-over-duplex.test.ts drives them through a bare
 * aedes over an in-memory stream). `installSessionHooks` hands them to an aedes instance.
 */
export function createSessionHooks(deps: SessionHookDeps): SessionHooks {
  const { table, registry, clock, log, metrics, flow, wills, cluster, audit } = deps;
  /**
   * The session a newly admitted one replaces under the same client id on this broker (aedes closes it when
   * the new one registers, [MQTT-3.1.4-2]): recorded as `mqtt.takeover` for the fleet health checks
   * (core/fleet-checks.ts: cloned credentials, client ids fought over).
   */
  const replacedSessions = new WeakMap<Client, { serial: string; connectedAt: number; remote: string | undefined }>();

  const refuse: SessionHooks['refuse'] = (client, action, code, detail) => {
    const session = table.sessionOf(client);
    if (action !== 'mqtt.connect') metrics.aclDenied(action === 'mqtt.publish' ? 'publish' : action === 'mqtt.subscribe' ? 'subscribe' : 'receive');
    if (action === 'mqtt.subscribe' || action === 'mqtt.receive') {
      // A session keeps going after these (one SUBSCRIBE can carry thousands of filters; every delivery is
      // checked): sampled per session and code, so one session cannot flood the audit trail.
      flow.sampleRefusal(code, {
        remote: remoteOf(client),
        actor: table.actorOf(client),
        action,
        ...(session?.identity.kind === 'device' ? { deviceId: session.clientId } : {}),
        detail,
        perActor: true,
      });
      return;
    }
    audit({
      actor: table.actorOf(client),
      action,
      result: 'refused',
      code,
      ...(session?.identity.kind === 'device' ? { deviceId: session.clientId } : {}),
      detail: { remote: remoteOf(client), ...detail },
    });
  };

  const isConnected = async (clientId: string) => {
    if (deps.clientById(clientId) !== undefined) return true;
    return cluster === undefined ? false : cluster.sessions.isOpen(clientId);
  };

  const summaryOf = (client: Client, session: SessionContext): SessionSummary => ({
    clientId: session.clientId,
    kind: session.identity.kind,
    certificateSerial: session.certificateSerial,
    remoteAddress: remoteOf(client),
    connectedAt: new Date(session.admittedAt),
  });

  function answerCertificateRequest(client: Client, session: SessionContext, topic: string, payload: Buffer | string): void {
    const handler = deps.certificateRequests;
    if (handler === undefined) return;
    // The certificate the session was admitted with, for a relay to forward (provisioning checks it itself).
    const certificate = table.certificateOf(client)?.raw;
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
      .then((answer) => deps.publish(answer.topic, answer.body));
  }

  return {
    refuse,
    isConnected,
    summaryOf,

    preConnect(client, packet, callback) {
      // Protocol level and MQTT 3.1.1 conformance were checked before aedes saw the packet (broker/mqtt-conformance-guard.ts).
      const claim = table.credentialOf(client).kind === 'claim';
      table.connecting(client, { willTopic: packet.will?.topic, claimSerial: claim ? packet.clientId : undefined });
      // A claim session lives in its own client-id namespace, so it can never take over, restore or clean
      // the session of the device whose serial it enrolls (aedes keys sessions and takeovers by client id).
      if (claim) packet.clientId = claimClientId(packet.clientId);
      callback(null, true);
    },

    authenticate(client, _username, _password, done) {
      const credential = table.credentialOf(client);
      // Load shedding before any registry work; counted and audited (sampled) by flow control. A peer whose
      // certificate proved nothing is refused below without drawing on the budget, so certificate-less
      // floods cannot use up the CONNECT rate that devices need.
      if (credential.kind !== 'refused' && !flow.admitConnect(client)) {
        return done(Object.assign(new Error('MQTT_CONNECT_RATE_LIMITED'), { returnCode: connackReturnCode.MQTT_CONNECT_RATE_LIMITED }), false);
      }
      const now = clock.now();
      const claimSerial = table.claimSerialOf(client);
      // Cut off from Redis, this broker would miss revocations and could not share the session: fail closed.
      const clusterDown = cluster?.unavailableReason();
      const admission = clusterDown
        ? Promise.resolve({ admitted: false as const, code: 'CLUSTER_UNAVAILABLE' as const, reason: clusterDown })
        : admitSession({ credential, clientId: claimSerial ?? client.id, willTopic: table.willTopicOf(client), now, isConnected }, registry);
      const settle = (result: AdmissionResult) => {
        if (result.admitted) {
          const previous = result.session.identity.kind === 'device' ? deps.clientById(result.session.clientId) : undefined;
          const previousSession = previous === undefined || previous === client ? undefined : table.sessionOf(previous);
          if (previous !== undefined && previousSession !== undefined) {
            replacedSessions.set(client, { serial: previousSession.certificateSerial, connectedAt: previousSession.admittedAt, remote: remoteOf(previous) });
          }
          table.setSession(client, result.session);
          done(null, true);
          return;
        }
        const deviceId = credential.kind === 'device' ? credential.deviceId : undefined;
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
      };
      // One reaction for both outcomes (not a catch, then a then: one promise and one microtask fewer per CONNECT).
      admission.then(settle, (error: unknown) => {
        // Fail closed: a registry we cannot read admits nobody.
        log.error({ err: error }, 'registry unavailable during CONNECT; refusing the session');
        settle({ admitted: false, code: 'AUTH_SERVICE_UNAVAILABLE', reason: 'registry error' });
      });
    },

    authorizePublish(client, packet, callback) {
      // client is null only for wills of clients whose broker died: checked against the registry as it is now.
      if (client === null) return wills.authorizeOrphan(packet, callback);
      const session = table.sessionOf(client);
      if (session === undefined) return callback(new Error('no session'));
      // A session the gateway cut publishes nothing more, its will included (broker/will-discard.ts).
      if (!wills.mayPublish(client, packet)) return callback(new Error('MQTT_WILL_DISCARDED'));
      const clusterDown = packet.qos > 0 ? cluster?.unavailableReason() : undefined;
      if (clusterDown !== undefined) {
        // aedes acknowledges QoS 1 before it stores or forwards (docs/THREAT-MODEL.md, residual risks): refuse instead, so the
        // device keeps the message and sends it again once Redis is back.
        audit({ actor: table.actorOf(client), action: 'mqtt.publish', result: 'refused', code: 'CLUSTER_UNAVAILABLE', detail: { remote: remoteOf(client), reason: clusterDown } });
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
      const session = table.sessionOf(client);
      const decision = session ? decideInScope(session.identity, 'subscribe', subscription.topic) : { allowed: false, code: 'ACL_SUBSCRIBE_DENIED' as const };
      if (decision.allowed) return callback(null, subscription);
      refuse(client, 'mqtt.subscribe', decision.code ?? 'ACL_SUBSCRIBE_DENIED', { filter: subscription.topic.slice(0, 256) });
      callback(null, null); // SUBACK 0x80 for this filter [MQTT-3.9.3]
    },

    // Runs after the PUBLISH was authorized and acknowledged: answer enrollment and renewal requests.
    published(packet, client, callback) {
      callback(null);
      // Cheap test first: this hook sees every message, and only "$fleetgate/…" requests concern it.
      // (client is null for the broker's own publishes, such as the replies below.)
      if (packet.topic.charCodeAt(0) !== 0x24 || !client) return;
      const session = table.sessionOf(client);
      if (session !== undefined) answerCertificateRequest(client, session, packet.topic, packet.payload);
    },

    authorizeForward(client, packet) {
      const session = table.sessionOf(client);
      if (session === undefined) return null;
      const decision = decideInScope(session.identity, 'receive', packet.topic);
      if (decision.allowed) return packet;
      if (!packet.topic.startsWith('$SYS/')) refuse(client, 'mqtt.receive', decision.code ?? 'ACL_RECEIVE_DENIED', { topic: packet.topic.slice(0, 256) });
      return null;
    },

    sessionOpened(client) {
      const session = table.sessionOf(client);
      if (session !== undefined && table.kickedSince(client.id, session.admittedAt)) {
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
        table.markCounted(client);
        metrics.sessionOpened(session.identity.kind);
        cluster?.sessions.opened(client.id, summaryOf(client, session));
      }
      audit({
        actor: table.actorOf(client),
        action: 'mqtt.connect',
        result: 'ok',
        ...(session?.identity.kind === 'device' ? { deviceId: client.id } : {}),
        detail: { remote: remoteOf(client), serial: session?.certificateSerial },
      });
      const replaced = replacedSessions.get(client);
      if (session !== undefined && replaced !== undefined) {
        audit({
          actor: table.actorOf(client),
          action: 'mqtt.takeover',
          result: 'ok',
          deviceId: client.id,
          detail: { remote: remoteOf(client), serial: session.certificateSerial, previous: { serial: replaced.serial, remote: replaced.remote ?? null, connectedAt: new Date(replaced.connectedAt).toISOString() } },
        });
      }
    },

    sessionClosed(client) {
      const session = table.sessionOf(client);
      if (session !== undefined && table.uncount(client)) {
        metrics.sessionClosed(session.identity.kind);
        // After a takeover on this node the table already holds the new session under the same id.
        const current = deps.clientById(client.id);
        if (current === undefined || current === client) cluster?.sessions.closed(client.id);
      }
    },
  };
}

/** Hands the hooks to aedes (its hooks are plain properties, read at each call: aedes.js) and follows its session events. */
export function installSessionHooks(aedes: Aedes, hooks: SessionHooks, log: Logger): void {
  aedes.preConnect = hooks.preConnect;
  aedes.authenticate = hooks.authenticate;
  aedes.authorizePublish = hooks.authorizePublish;
  aedes.authorizeSubscribe = hooks.authorizeSubscribe;
  aedes.authorizeForward = hooks.authorizeForward;
  aedes.published = hooks.published;
  aedes.on('client', (client) => hooks.sessionOpened(client));
  aedes.on('clientDisconnect', (client) => hooks.sessionClosed(client));
  aedes.on('clientError', (client, error) => log.debug({ clientId: client.id, err: error.message }, 'client error'));
}
