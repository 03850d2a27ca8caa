import mqtt, { type IClientOptions, type MqttClient, type Packet } from 'mqtt';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { createIssuingCa, createRootCa, generateKeyPair, issueCertificate, privateKeyToPem, systemClock } from '../../core/index.ts';
import { type ApiResponse, apiRequest } from '../../cli/api-client.ts';
import { resolveServeConfig } from '../../cli/config.ts';
import { type RunningGateway, startGateway } from '../../cli/serve.ts';
import { type ClientCredential, type RegistryFixtures, registryFixtures } from './registry-fixtures.ts';
import { makeTempDir } from './temp-dir.ts';

export { type ClientCredential, issueClaimCertificate } from './registry-fixtures.ts';

export interface TestGateway extends RegistryFixtures {
  readonly gateway: RunningGateway;
  readonly mqttPort: number;
  readonly apiPort: number;
  readonly dataDirPath: string;
  /** Root CA PEM: what clients verify the server with. */
  readonly ca: string;
  connect(clientId: string, credential: ClientCredential | undefined, extra?: Partial<IClientOptions>): Promise<MqttClient>;
  /** HTTPS call to the API; `token: true` sends the bootstrap admin token. */
  api<T = unknown>(method: string, path: string, options?: { body?: unknown; token?: string | true; credential?: ClientCredential; contentType?: string }): Promise<ApiResponse<T>>;
  /** A claim issued through POST /v1/claims, as a client credential. */
  issueClaim(body: { template?: string; maxUses?: number; expiresInSeconds?: number }): Promise<ClientCredential & { claimId: string }>;
  close(): Promise<void>;
}

export async function startTestGateway(env: Record<string, string> = {}, options: { beforeStart?: (dataDir: string) => Promise<void> } = {}): Promise<TestGateway> {
  const dir = makeTempDir();
  await options.beforeStart?.(dir.path);
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
    ...registryFixtures(gateway.dataDir.authorities, registry),
    connect(clientId, credential, extra = {}) {
      return connectClient(mqttPort, pki.pem.root, clientId, credential, extra);
    },
    api(method, path, options = {}) {
      const token = options.token === true ? gateway.dataDir.adminToken : options.token;
      // The trust bundle as CA rotations leave it (README "Rotating certificates and CAs"), as the CLI does.
      const bundle = join(dir.path, 'pki', 'trust-bundle.pem');
      return apiRequest(
        { baseUrl: `https://127.0.0.1:${apiPort}`, ca: existsSync(bundle) ? readFileSync(bundle, 'utf8') : pki.pem.root, ...(token ? { token } : {}), ...(options.credential ? { cert: options.credential.cert, key: options.credential.key } : {}) },
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
    async close() {
      await gateway.close();
      dir.remove();
    },
  };
  return testGateway;
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
/**
 * `beforeConnect` gets the client before CONNACK: a resumed session's queued messages can arrive in the same
 * read as the CONNACK, before code awaiting the connection could add its 'message' listener.
 */
export async function connectClient(port: number, ca: string, clientId: string, credential: ClientCredential | undefined, extra: Partial<IClientOptions> = {}, beforeConnect?: (client: MqttClient) => void): Promise<MqttClient> {
  const options: IClientOptions = {
    clientId,
    protocolVersion: 4,
    reconnectPeriod: 0,
    connectTimeout: 5000,
    ca,
    ...(credential ? { key: credential.key, cert: credential.cert } : {}),
    rejectUnauthorized: true,
    ...extra,
  };
  if (beforeConnect === undefined) return mqtt.connectAsync(`mqtts://127.0.0.1:${port}`, options, false);
  const client = mqtt.connect(`mqtts://127.0.0.1:${port}`, options);
  beforeConnect(client);
  return new Promise((resolve, reject) => {
    client.once('connect', () => resolve(client));
    client.once('error', (error) => {
      client.end(true);
      reject(error);
    });
  });
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
