import mqtt, { type IClientOptions, type MqttClient, type Packet } from 'mqtt';
import { pino } from 'pino';
import {
  type CaCredential,
  type Clock,
  createCsr,
  createIssuingCa,
  createRootCa,
  dayMs,
  generateKeyPair,
  issueCertificate,
  privateKeyToPem,
  systemClock,
} from '../../core/index.ts';
import { registerDevice } from '../../provisioning/index.ts';
import type { AuditEntry, AuditQuery } from '../../registry/index.ts';
import { type ApiResponse, apiRequest } from '../../cli/api-client.ts';
import { resolveServeConfig } from '../../cli/config.ts';
import { type RunningGateway, startGateway } from '../../cli/serve.ts';
import { makeTempDir } from './temp-dir.ts';

/** PEM material a client connects with. */
export interface ClientCredential {
  readonly key: string;
  readonly cert: string;
}

export interface TestGateway {
  readonly gateway: RunningGateway;
  readonly mqttPort: number;
  readonly apiPort: number;
  readonly dataDirPath: string;
  /** Root CA PEM: what clients verify the server with. */
  readonly ca: string;
  /** Registers a device through the real use-case; `clock` lets a test issue an already-expired certificate. */
  createDevice(id: string, options?: { clock?: Clock; template?: string; policy?: string; attributes?: Record<string, string> }): Promise<ClientCredential & { serial: string }>;
  /** A claim certificate from the claim CA, registered as a claim. */
  createClaim(id: string, options?: { expiresAt?: Date }): Promise<ClientCredential & { serial: string }>;
  connect(clientId: string, credential: ClientCredential | undefined, extra?: Partial<IClientOptions>): Promise<MqttClient>;
  /** HTTPS call to the API; `token: true` sends the bootstrap admin token. */
  api<T = unknown>(method: string, path: string, options?: { body?: unknown; token?: string | true; credential?: ClientCredential; contentType?: string }): Promise<ApiResponse<T>>;
  /** A claim issued through POST /v1/claims, as a client credential. */
  issueClaim(body: { template?: string; maxUses?: number; expiresInSeconds?: number }): Promise<ClientCredential & { claimId: string }>;
  /** Polls the audit log until an entry matches (audit writes are asynchronous to the MQTT exchange). */
  waitForAudit(query: AuditQuery, predicate?: (entry: AuditEntry) => boolean): Promise<AuditEntry>;
  close(): Promise<void>;
}

export async function startTestGateway(env: Record<string, string> = {}): Promise<TestGateway> {
  const dir = makeTempDir();
  const config = resolveServeConfig({ dataDir: dir.path, host: '127.0.0.1', mqttPort: '0', apiPort: '0', hostname: 'localhost' }, { FLEETGATE_LOG_LEVEL: 'silent', ...env });
  const gateway = await startGateway(config, pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }));
  const { pki, registry } = gateway.dataDir;
  const mqttPort = Number(new URL(gateway.mqttUrl.replace('mqtts:', 'https:')).port);
  const apiPort = Number(new URL(gateway.apiUrl).port);

  const testGateway: TestGateway = {
    gateway,
    mqttPort,
    apiPort,
    dataDirPath: dir.path,
    ca: pki.pem.root,
    async createDevice(id, options = {}) {
      const keys = await generateKeyPair();
      const record = await registerDevice(
        { registry, deviceCa: pki.deviceCa, clock: options.clock ?? systemClock },
        {
          id,
          csr: await createCsr(keys, id),
          actor: 'test',
          ...(options.template ? { template: options.template } : {}),
          ...(options.policy ? { policy: options.policy } : {}),
          ...(options.attributes ? { attributes: options.attributes } : {}),
        },
      );
      return { key: await privateKeyToPem(keys.privateKey), cert: record.pem + pki.pem.deviceCa, serial: record.serial };
    },
    async createClaim(id, options = {}) {
      const expiresAt = options.expiresAt ?? new Date(Date.now() + 30 * dayMs);
      const issued = await issueClaimCertificate(pki.claimCa, id, new Date(Math.max(expiresAt.getTime(), Date.now() + dayMs)));
      await registry.createClaim({ id, template: 'default', certificateSerial: issued.serial, maxUses: null, expiresAt }, { actor: 'test', action: 'claim.create', result: 'ok' });
      return { ...issued, cert: issued.cert + pki.pem.claimCa };
    },
    connect(clientId, credential, extra = {}) {
      return connectClient(mqttPort, pki.pem.root, clientId, credential, extra);
    },
    api(method, path, options = {}) {
      const token = options.token === true ? gateway.dataDir.adminToken : options.token;
      return apiRequest(
        { baseUrl: `https://127.0.0.1:${apiPort}`, ca: pki.pem.root, ...(token ? { token } : {}), ...(options.credential ? { cert: options.credential.cert, key: options.credential.key } : {}) },
        method,
        path,
        options.body,
        options.contentType,
      );
    },
    async issueClaim(body) {
      const response = await testGateway.api<{ claimId: string; certificate: string; privateKey: string }>('POST', '/v1/claims', { body: { template: 'default', ...body }, token: true });
      if (response.status !== 201) throw new Error(`claim creation failed: ${response.status} ${JSON.stringify(response.body)}`);
      return { claimId: response.body.claimId, cert: response.body.certificate, key: response.body.privateKey };
    },
    async waitForAudit(query, predicate = () => true) {
      for (let attempt = 0; attempt < 100; attempt++) {
        const match = (await registry.queryAudit({ ...query, limit: 1000 })).find(predicate);
        if (match) return match;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      throw new Error(`no audit entry matching ${JSON.stringify(query)}`);
    },
    async close() {
      await gateway.close();
      dir.remove();
    },
  };
  return testGateway;
}

export async function issueClaimCertificate(claimCa: CaCredential, claimId: string, notAfter: Date): Promise<ClientCredential & { serial: string }> {
  const keys = await generateKeyPair();
  const issued = await issueCertificate({ issuer: claimCa, publicKey: keys.publicKey, profile: { kind: 'claim', claimId, notAfter }, clock: systemClock });
  return { key: await privateKeyToPem(keys.privateKey), cert: issued.pem, serial: issued.serial };
}

/** A CA hierarchy nobody registered with the gateway, issuing a certificate that looks exactly like ours. */
export async function foreignDeviceCredential(id: string): Promise<ClientCredential> {
  const root = await createRootCa({ commonName: 'fleetgate root CA', clock: systemClock });
  const deviceCa = await createIssuingCa({ issuer: root, commonName: 'fleetgate device CA', clock: systemClock });
  const keys = await generateKeyPair();
  const issued = await issueCertificate({ issuer: deviceCa, publicKey: keys.publicKey, profile: { kind: 'device', deviceId: id, validityDays: 30 }, clock: systemClock });
  return { key: await privateKeyToPem(keys.privateKey), cert: issued.pem + deviceCa.certificate.toString('pem') + '\n' };
}

/**
 * Connects with mqtt.js, MQTT 3.1.1, no automatic reconnect. Resolves once CONNACK 0 arrives and rejects
 * with the CONNACK error (err.code = return code) otherwise. `connectAsync(url, opts, false)`: the
 * two-argument form never settles when the server closes without CONNACK.
 */
export async function connectClient(port: number, ca: string, clientId: string, credential: ClientCredential | undefined, extra: Partial<IClientOptions> = {}): Promise<MqttClient> {
  return mqtt.connectAsync(
    `mqtts://127.0.0.1:${port}`,
    {
      clientId,
      protocolVersion: 4,
      reconnectPeriod: 0,
      connectTimeout: 5000,
      ca,
      ...(credential ? { key: credential.key, cert: credential.cert } : {}),
      rejectUnauthorized: true,
      ...extra,
    },
    false,
  );
}

/** Resolves with the next message on `topic`, or undefined after `ms`. */
export function nextMessage(client: MqttClient, topic: string, ms = 2000): Promise<string | undefined> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      client.off('message', onMessage);
      resolve(undefined);
    }, ms);
    const onMessage = (received: string, payload: Buffer) => {
      if (received !== topic) return;
      clearTimeout(timer);
      client.off('message', onMessage);
      resolve(payload.toString());
    };
    client.on('message', onMessage);
  });
}

/** Resolves when the client's connection closes. */
export function closed(client: MqttClient, ms = 3000): Promise<boolean> {
  return new Promise((resolve) => {
    if (!client.connected) return resolve(true);
    const timer = setTimeout(() => resolve(false), ms);
    client.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** SUBACK return codes for `filters` (mqtt.js rejects subscribeAsync when any is 0x80, hiding the others). */
export function subscribeGranted(client: MqttClient, filters: string[]): Promise<number[]> {
  return new Promise((resolve, reject) => {
    const onPacket = (packet: Packet) => {
      if (packet.cmd !== 'suback') return;
      client.off('packetreceive', onPacket);
      resolve(packet.granted as number[]);
    };
    client.on('packetreceive', onPacket);
    client.subscribe(filters, () => {});
    setTimeout(() => reject(new Error('no SUBACK within 3 s')), 3000).unref();
  });
}
