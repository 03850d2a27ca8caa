import 'reflect-metadata';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { X509Certificate } from 'node:crypto';
import { duplexPair } from 'node:stream';
import { createServer } from 'node:tls';
import { pino } from 'pino';
import {
  type CaCredential,
  type Clock,
  createCsr,
  createInProcessEventBus,
  createIssuingCa,
  createRootCa,
  credentialOfCertificate,
  dayMs,
  type EventBus,
  generateKeyPair,
  issueCertificate,
  privateKeyToPem,
  systemClock,
  type TrustStore,
} from '../../core/index.ts';
import { createConnectionAdmission } from '../../broker/connection-admission.ts';
import { defaultFlowControl } from '../../broker/flow-control-config.ts';
import { createGatewayCore, type GatewayCore } from '../../broker/gateway-broker.ts';
import type { VerifiedPeer } from '../../broker/session-table.ts';
import { registerDevice } from '../../provisioning/index.ts';
import { wireTrustStore } from '../../cli/trust-wiring.ts';
import { type AuditEntry, type AuditQuery, openSqliteRegistry, type Registry, seedDefaults } from '../../registry/index.ts';
import { authoritiesFor } from './certificate-authorities.ts';
import { waitForAudit } from './registry-fixtures.ts';

/**
 * The gateway's broker without its TLS listener (broker/gateway-broker.ts `createGatewayCore`: the real
 * hooks, session table, guards, flow control and live updates), reached through in-memory stream pairs the
 * way aedes' own tests drive `broker.handle()`. What a TLS handshake would have proved is handed to the
 * session table directly (`VerifiedPeer`); classifying a real handshake is broker/mqtt-listener.ts's job,
 * played over real TLS in test/broker/mtls-admission.test.ts and test/security/.
 */
export interface DuplexGateway {
  readonly core: GatewayCore;
  readonly registry: Registry;
  readonly events: EventBus;
  readonly trust: TrustStore;
  readonly deviceCa: CaCredential;
  /** A device registered through the real use-case, and what its handshake would prove. */
  createDevice(id: string, options?: { clock?: Clock; policy?: string }): Promise<VerifiedPeer & { serial: string }>;
  /** A claim certificate from the claim CA, registered as a claim. */
  createClaim(id: string, options?: { expiresAt?: Date }): Promise<VerifiedPeer & { serial: string }>;
  /** mqtt.js (MQTT 3.1.1) on one end of a stream pair; resolves on CONNACK 0, rejects with `code` = the CONNACK return code. */
  connect(clientId: string, peer: VerifiedPeer | undefined, extra?: Partial<IClientOptions>): Promise<MqttClient>;
  waitForAudit(query: AuditQuery, predicate?: (entry: AuditEntry) => boolean): Promise<AuditEntry>;
  close(): Promise<void>;
}

export async function startDuplexGateway(): Promise<DuplexGateway> {
  const registry = await openSqliteRegistry({ path: ':memory:' });
  await seedDefaults(registry);
  const root = await createRootCa({ commonName: 'duplex root', clock: systemClock });
  const deviceCa = await createIssuingCa({ issuer: root, commonName: 'duplex device CA', clock: systemClock });
  const claimCa = await createIssuingCa({ issuer: root, commonName: 'duplex claim CA', clock: systemClock });
  const events = createInProcessEventBus();
  const log = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
  // The process's trust store as the composition roots make it (cli/trust-wiring.ts).
  const authorities = await authoritiesFor(registry, { root, deviceCa, claimCa });
  const serverKeys = await generateKeyPair();
  const server = { cert: (await issueCertificate({ issuer: root, publicKey: serverKeys.publicKey, profile: { kind: 'server', dnsNames: ['localhost'], ipAddresses: [] }, clock: systemClock })).pem, key: await privateKeyToPem(serverKeys.privateKey) };
  const pem = { root: root.certificate.toString('pem'), deviceCa: deviceCa.certificate.toString('pem'), claimCa: claimCa.certificate.toString('pem') };
  const { trust } = await wireTrustStore({ registry, dataDir: { readServer: () => server }, pem, events, log });
  // The listener's budgets on a server that never listens: only the CONNECT rate is ever asked here.
  const connections = createConnectionAdmission(createServer(), { ...defaultFlowControl, connectTimeoutMs: 10_000, onRefused: (code, remote, detail) => core.connectionRefused(code, remote, detail) });
  const core = await createGatewayCore({ maxPacketBytes: 256 * 1024, connectTimeoutMs: 10_000 }, { registry, events, clock: systemClock, log, trust, connections });
  const clients: MqttClient[] = [];
  const peerOf = (pem: string) => ({ credential: credentialOfCertificate(new X509Certificate(pem), trust.current().issuers, new Date()), certificate: new X509Certificate(pem) });

  return {
    core,
    registry,
    events,
    trust,
    deviceCa,
    async createDevice(id, options = {}) {
      const keys = await generateKeyPair();
      const record = await registerDevice({ registry, authorities, clock: options.clock ?? systemClock }, { id, csr: await createCsr(keys, id), actor: 'test', ...(options.policy ? { policy: options.policy } : {}) });
      return { ...peerOf(record.pem), serial: record.serial };
    },
    async createClaim(id, options = {}) {
      const expiresAt = options.expiresAt ?? new Date(Date.now() + 30 * dayMs);
      const keys = await generateKeyPair();
      const issued = await issueCertificate({ issuer: claimCa, publicKey: keys.publicKey, profile: { kind: 'claim', claimId: id, notAfter: new Date(Math.max(expiresAt.getTime(), Date.now() + dayMs)) }, clock: systemClock });
      await registry.createClaim({ id, template: 'default', certificateSerial: issued.serial, maxUses: null, expiresAt }, { actor: 'test', action: 'claim.create', result: 'ok' });
      return { ...peerOf(issued.pem), serial: issued.serial };
    },
    connect(clientId, peer, extra = {}) {
      const [server, device] = duplexPair();
      server.once('close', () => device.destroy()); // node:stream's pair does not carry a close across (Node 20)
      // As the listener hands over a TLS connection whose peer sent no certificate (core/peer-identity.ts).
      core.attach(server, peer ?? { credential: { kind: 'refused', code: 'AUTH_NO_CLIENT_CERT', reason: 'no client certificate' }, certificate: undefined });
      const client = new mqtt.MqttClient(() => device, { clientId, protocolVersion: 4, reconnectPeriod: 0, keepalive: 0, ...extra });
      clients.push(client);
      return new Promise((resolve, reject) => {
        client.once('connect', () => resolve(client));
        client.once('error', (error) => {
          client.end(true);
          reject(error);
        });
      });
    },
    waitForAudit: (query, predicate) => waitForAudit(registry, query, predicate),
    async close() {
      for (const client of clients) client.end(true);
      await core.close();
      await events.close();
      await registry.close();
    },
  };
}
