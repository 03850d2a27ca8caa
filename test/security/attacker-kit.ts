import type { MqttClient } from 'mqtt';
import {
  type CaCredential,
  createRootCa,
  deviceUri,
  generateKeyPair,
  issueCertificate,
  privateKeyToPem,
  systemClock,
} from '../../core/index.ts';
import type { AuditEntry, Registry } from '../../registry/index.ts';
import { operatorRoles } from '../../registry/index.ts';
import { forgedLeaf } from '../helpers/forged-certificates.ts';
import { deviceKeyAndCsr } from '../helpers/device-keys.ts';
import { type ClientCredential, foreignDeviceCredential, startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';
import { until } from '../helpers/until.ts';
import type { Capability } from './attack-table.ts';
import { enrolledOffline, forgedVictim, victim } from './attack-table.ts';

/**
 * Everything an attacker of the table holds, made against one running test gateway: real certificates
 * (a manufacturer CA registered through the API, a foreign CA, a leaf forged with another device's serial),
 * real claims (one usable, one spent, one revoked) and real operator tokens. Also the fixture's victims and
 * a backend watcher that sees everything published under devices/#.
 */
export interface AttackerKit {
  readonly gw: TestGateway;
  readonly registry: Registry;
  /** The client certificate a capability presents when it claims `as`; undefined for token holders and `none`. */
  credential(capability: Capability, as: string): Promise<ClientCredential | undefined>;
  /** The Bearer token a capability sends; undefined when it has none. */
  token(capability: Capability): string | undefined;
  /** False when the gateway has no such credential (e.g. no broker role): its cells are skipped. */
  available(capability: Capability): boolean;
  /** A registered device of the default template (or with `policy`), for the legitimate control cells. */
  device(id: string, policy?: string): Promise<ClientCredential & { serial: string }>;
  readonly batchClaim: ClientCredential;
  /** A batch claim of the `tenant` template, whose policy grants groups/${device.attributes.tenant}/#. */
  readonly tenantClaim: ClientCredential;
  readonly serials: { readonly forgedVictim: string };
  /** Messages the backend watcher received (topic and payload), in order. */
  readonly watched: { topic: string; payload: string }[];
  /** Publishes `payload` on `topic` as the backend watcher and returns once it has come back: a fence. */
  watcherPublish(topic: string, payload: string): Promise<void>;
  readonly watcher: MqttClient;
  /** The victim's live session; reconnects it if an attack closed it, and says whether it had been closed. */
  victimSession(): Promise<{ client: MqttClient; wasClosed: boolean }>;
  close(): Promise<void>;
}

/** Devices the legitimate control cells connect as (attack-table.ts). */
const legitimateDevices = ['dev-ok', 'dev-tls', 'dev-will', 'dev-renew-mqtt', 'dev-renew-https', 'dev-renew-est', 'dev-after'];

export const fixtureEnv = {
  // A socket that is not a session within a second is closed: the handshake row waits for that.
  FLEETGATE_CONNECT_TIMEOUT_MS: '1000',
  FLEETGATE_API_RATE_LIMIT_PER_MINUTE: '1000000',
  FLEETGATE_ENROLL_RATE_PER_CLAIM: '1000',
};

/** A birth certificate from `manufacturer`: any clientAuth leaf whose CN is the serial. */
async function birthCertificate(manufacturer: CaCredential, serial: string): Promise<ClientCredential> {
  const keys = await generateKeyPair();
  const issued = await issueCertificate({ issuer: manufacturer, publicKey: keys.publicKey, profile: { kind: 'device', deviceId: serial, validityDays: 3650 }, clock: systemClock });
  return { key: await privateKeyToPem(keys.privateKey), cert: issued.pem };
}

export async function startAttackerKit(): Promise<AttackerKit> {
  const gw = await startTestGateway(fixtureEnv);
  const { registry, pki } = gw.gateway.dataDir;

  // Victims and a backend watcher (policy `backend`: devices/#).
  const victimCredential = await gw.createDevice(victim);
  const forgedVictimDevice = await gw.createDevice(forgedVictim);
  await gw.createDevice(enrolledOffline);
  const watcherCredential = await gw.createDevice('watch', { policy: 'backend' });
  const watched: { topic: string; payload: string }[] = [];
  const watcher = await gw.connect('watch', watcherCredential);
  watcher.on('message', (topic, payload) => watched.push({ topic, payload: payload.toString() }));
  await watcher.subscribeAsync('devices/#', { qos: 1 });

  // The manufacturer CA, registered as a claim issuer for the default template.
  const manufacturer = await createRootCa({ commonName: 'Acme Devices Birth CA', clock: systemClock });
  const registered = await gw.api('POST', '/v1/claim-issuers', { body: { name: 'acme', template: 'default', certificate: manufacturer.certificate.toString('pem') }, token: true });
  if (registered.status !== 201) throw new Error(`manufacturer CA registration failed: ${registered.status} ${JSON.stringify(registered.body)}`);
  // Both TLS listeners reload their trust asynchronously to the API answer: wait until each accepts a birth certificate.
  const ready = await birthCertificate(manufacturer, 'MFR-READY');
  await until(async () => (await gw.api('POST', '/v1/enroll', { body: { csr: 'not a csr' }, credential: ready })).status === 400, 'the API to trust the manufacturer CA');
  await until(async () => {
    try {
      await (await gw.connect('MFR-READY', ready)).endAsync();
      return true;
    } catch {
      return false;
    }
  }, 'the broker to trust the manufacturer CA');

  // A template whose policy an attribute widens: what a device reports must never fill it.
  const tenantPolicy = { statements: [{ effect: 'allow', actions: ['publish', 'subscribe', 'receive'], topics: ['devices/${device.id}/#', 'groups/${device.attributes.tenant}/#'] }] };
  if ((await gw.api('PUT', '/v1/policies/tenant', { body: tenantPolicy, token: true })).status >= 300) throw new Error('could not create the tenant policy');
  if ((await gw.api('POST', '/v1/templates', { body: { name: 'tenant', policy: 'tenant' }, token: true })).status !== 201) throw new Error('could not create the tenant template');
  const tenantClaim = await gw.issueClaim({ template: 'tenant' });

  // Claims: one usable batch claim, one spent, one revoked.
  const batchClaim = await gw.issueClaim({});
  const exhaustedClaim = await gw.issueClaim({ maxUses: 1 });
  const spend = await deviceKeyAndCsr('SN-spent-1');
  const spent = await gw.api('POST', '/v1/enroll', { body: { csr: spend.csr, serial: 'SN-spent-1' }, credential: exhaustedClaim });
  if (spent.status !== 201) throw new Error(`could not spend the exhausted claim: ${spent.status}`);
  const revokedClaim = await gw.issueClaim({});
  if ((await gw.api('POST', `/v1/claims/${revokedClaim.claimId}/revoke`, { token: true })).status !== 200) throw new Error('could not revoke the claim');

  // Operator credentials. The broker role exists once the relay is restricted to brokers.
  const tokens = new Map<Capability, string>();
  const roleOf: Partial<Record<Capability, string>> = { 'station-token': 'station', 'viewer-token': 'viewer', 'broker-credential': 'broker' };
  for (const [capability, role] of Object.entries(roleOf) as [Capability, string][]) {
    if (!(operatorRoles as readonly string[]).includes(role)) continue;
    const created = await gw.api<{ token: string }>('POST', '/v1/tokens', { token: true, body: { name: `attacker-${role}`, role } });
    if (created.status === 201) tokens.set(capability, created.body.token);
  }

  const minted = new Map<string, Promise<ClientCredential>>();
  const once = (key: string, make: () => Promise<ClientCredential>) => {
    let credential = minted.get(key);
    if (credential === undefined) {
      credential = make();
      minted.set(key, credential);
    }
    return credential;
  };
  const devices = new Map<string, Promise<ClientCredential & { serial: string }>>();

  // The control cells' own identities, made now so that making them never shows up as a change of state.
  for (const id of legitimateDevices) devices.set(id, gw.createDevice(id));
  devices.set('watch-retained', gw.createDevice('watch-retained', { policy: 'backend' }));
  await Promise.all(devices.values());

  let victimClient = await gw.connect(victim, victimCredential);
  let victimClosed = false;
  const watchVictim = (client: MqttClient) => client.once('close', () => (victimClosed = true));
  watchVictim(victimClient);

  const kit: AttackerKit = {
    gw,
    registry,
    batchClaim,
    tenantClaim,
    watched,
    watcher,
    serials: { forgedVictim: forgedVictimDevice.serial },
    available: (capability) => !(capability in roleOf) || tokens.has(capability),
    token: (capability) => (capability === 'legitimate' ? gw.gateway.dataDir.adminToken : tokens.get(capability)),
    async credential(capability, as) {
      switch (capability) {
        case 'foreign-ca':
          return once(`foreign:${as}`, () => foreignDeviceCredential(as === '-' ? victim : as));
        case 'manufacturer-ca':
          return once(`birth:${as}`, () => birthCertificate(manufacturer, as === '-' ? 'MFR-0002' : as));
        case 'batch-claim':
          return batchClaim;
        case 'exhausted-claim':
          return exhaustedClaim;
        case 'revoked-claim':
          return revokedClaim;
        case 'forged-serial':
          return once('forged', () => forgedLeaf(manufacturer, { serial: forgedVictimDevice.serial, commonName: forgedVictim, uri: deviceUri(forgedVictim), chain: pki.pem.deviceCa }));
        case 'legitimate':
          return as.startsWith('SN-') ? batchClaim : kit.device(as);
        default:
          return undefined;
      }
    },
    device(id, policy) {
      let device = devices.get(id);
      if (device === undefined) {
        device = gw.createDevice(id, policy ? { policy } : {});
        devices.set(id, device);
      }
      return device;
    },
    async watcherPublish(topic, payload) {
      const back = new Promise<void>((resolve) => {
        const onMessage = (received: string, body: Buffer) => {
          if (received === topic && body.toString() === payload) {
            watcher.off('message', onMessage);
            resolve();
          }
        };
        watcher.on('message', onMessage);
      });
      await watcher.publishAsync(topic, payload, { qos: 1 });
      await back;
    },
    async victimSession() {
      const wasClosed = victimClosed || !victimClient.connected;
      if (wasClosed) {
        victimClient.end(true);
        victimClient = await gw.connect(victim, victimCredential);
        victimClosed = false;
        watchVictim(victimClient);
      }
      return { client: victimClient, wasClosed };
    },
    async close() {
      victimClient.end(true);
      watcher.end(true);
      await gw.close();
    },
  };
  return kit;
}

/** What the registry knows about identities and credentials: a refusal must leave all of it unchanged. */
export async function registrySnapshot(registry: Registry): Promise<Map<string, string>> {
  const devices = await registry.listDevices({ limit: 1000 });
  const rows = new Map<string, string>();
  const add = (key: string, value: unknown) => rows.set(key, JSON.stringify(value));
  for (const device of devices) {
    add(`device ${device.id}`, device);
    for (const certificate of await registry.listCertificates(device.id)) add(`certificate ${certificate.serial} of ${device.id}`, { ...certificate, pem: undefined });
  }
  for (const claim of await registry.listClaims()) add(`claim ${claim.id}`, { ...claim, issuerPem: undefined });
  for (const token of await registry.listOperatorTokens()) add(`token ${token.name}`, token);
  for (const template of await registry.listTemplates()) add(`template ${template.name}`, template);
  for (const policy of await registry.listPolicies()) add(`policy ${policy.name}`, policy);
  return rows;
}

/** The rows that differ between two snapshots, one short line each ("+ new", "- gone", "~ changed"). */
export function snapshotChanges(before: Map<string, string>, after: Map<string, string>): string[] {
  const changes: string[] = [];
  for (const [key, value] of after) {
    if (!before.has(key)) changes.push(`+ ${key}`);
    else if (before.get(key) !== value) changes.push(`~ ${key}: ${before.get(key)} -> ${value}`);
  }
  for (const key of before.keys()) if (!after.has(key)) changes.push(`- ${key}`);
  return changes;
}

/**
 * A refused audit entry written for a refusal that happened at `since` or later. Refusals an attacker could
 * repeat are audited sampled (one entry per code and second, with a count), so an entry written up to a
 * second before counts: it stands for this one too. Without `sampled`, only entries from `since` on count.
 */
export async function refusalAudited(registry: Registry, since: number, code?: string, sampled = true): Promise<AuditEntry | undefined> {
  for (let attempt = 0; attempt < 60; attempt++) {
    const entries = await registry.queryAudit({ result: 'refused', since: new Date(since - (sampled ? 1100 : 0)), limit: 1000 });
    const match = entries.find((entry) => code === undefined || entry.code === code);
    if (match) return match;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return undefined;
}
