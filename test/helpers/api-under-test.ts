import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { createInProcessEventBus, type EventBus, type SessionDirectory, systemClock } from '../../core/index.ts';
import type { ApiApp } from '../../provisioning/index.ts';
import { type ApiResponse, apiRequest } from '../../cli/api-client.ts';
import { resolveServeConfig } from '../../cli/config.ts';
import { type DataDir, openDataDir } from '../../cli/data-dir.ts';
import { createProvisioning } from '../../cli/provisioning-api.ts';
import { type ClientCredential, type RegistryFixtures, registryFixtures } from './registry-fixtures.ts';
import { makeTempDir } from './temp-dir.ts';

export interface ApiCallOptions {
  readonly body?: unknown;
  /** `true` sends the bootstrap admin token. */
  readonly token?: string | true;
  /** A raw Authorization header, for the malformed ones no client sends (wins over `token`). */
  readonly authorization?: string;
  /** A TLS client certificate. Only a socket carries one, so such a call goes over the API's HTTPS listener. */
  readonly credential?: ClientCredential;
  readonly contentType?: string;
}

/**
 * The provisioning side's HTTPS API as `fleetgate serve` builds it (cli/provisioning-api.ts →
 * provisioning/api/build-api.ts), on its real dependencies — the PKI store and the SQLite registry in a
 * temporary data directory, the certificate service, the revocation status, token auth, an in-process
 * event bus — but with no MQTT broker and, until a test asks for one, no listener: requests go through
 * Fastify's `inject()`, the way Fastify tests itself.
 */
export interface ApiUnderTest extends RegistryFixtures {
  readonly app: ApiApp;
  readonly dataDir: DataDir;
  readonly dataDirPath: string;
  readonly events: EventBus;
  /** Root CA PEM: what clients verify the API's server certificate with. */
  readonly ca: string;
  /** One request through `inject()`, answered as cli/api-client.ts answers (JSON parsed when the type says so). */
  api<T = unknown>(method: string, path: string, options?: ApiCallOptions): Promise<ApiResponse<T>>;
  /**
   * Opens the API's HTTPS listener on 127.0.0.1 (once) and answers its port, for what only a socket shows:
   * TLS client certificates, and clients that are processes (curl, openssl, the CLI, a browser).
   */
  listen(): Promise<number>;
  /** A claim issued through POST /v1/claims, as a client credential. */
  issueClaim(body: { template?: string; maxUses?: number; expiresInSeconds?: number }): Promise<ClientCredential & { claimId: string }>;
  close(): Promise<void>;
}

export interface ApiUnderTestOptions {
  /** Environment settings, as `startTestGateway` takes them (FLEETGATE_API_RATE_LIMIT_PER_MINUTE, …). */
  readonly env?: Record<string, string>;
  /** What GET /v1/sessions lists; nothing by default (a provisioning process without a broker lists none). */
  readonly sessions?: SessionDirectory;
  /** The built console to serve at /console; default: the configuration's (console/dist). */
  readonly consoleDir?: string;
}

export async function startApiUnderTest(options: ApiUnderTestOptions = {}): Promise<ApiUnderTest> {
  const dir = makeTempDir('fleetgate-api-');
  const log = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
  const resolved = resolveServeConfig({ dataDir: dir.path, host: '127.0.0.1', mqttPort: '0', apiPort: '0', hostname: 'localhost' }, { FLEETGATE_LOG_LEVEL: 'silent', ...options.env });
  const config = options.consoleDir === undefined ? resolved : { ...resolved, consoleDir: options.consoleDir };
  const dataDir = await openDataDir({ path: dir.path, hostnames: [config.hostname], clock: systemClock });
  const events = createInProcessEventBus((error) => log.error({ err: error }, 'event handler failed'));
  const provisioning = createProvisioning(config, { dataDir, events, clock: systemClock, log });
  const app = await provisioning.buildApi(options.sessions ?? { list: async () => [] });
  const { pki, registry, adminToken } = dataDir;

  let port: Promise<number> | undefined;
  const listen = () =>
    (port ??= app.listen({ host: '127.0.0.1', port: 0 }).then(() => (app.server.address() as AddressInfo).port));

  const under: ApiUnderTest = {
    app,
    dataDir,
    dataDirPath: dir.path,
    events,
    ca: pki.pem.root,
    ...registryFixtures(dataDir.authorities, registry),
    listen,
    async api<T>(method: string, path: string, call: ApiCallOptions = {}): Promise<ApiResponse<T>> {
      const token = call.token === true ? adminToken : call.token;
      if (call.credential !== undefined) {
        const client = { baseUrl: `https://127.0.0.1:${await listen()}`, ca: pki.pem.root, ...(token ? { token } : {}), cert: call.credential.cert, key: call.credential.key };
        return apiRequest<T>(client, method, path, call.body, call.contentType);
      }
      const payload = call.body === undefined ? undefined : typeof call.body === 'string' ? call.body : JSON.stringify(call.body);
      const authorization = call.authorization ?? (token ? `Bearer ${token}` : undefined);
      const answer = await app.inject({
        method: method as 'GET',
        url: path,
        headers: {
          accept: 'application/json',
          ...(payload === undefined ? {} : { 'content-type': call.contentType ?? 'application/json' }),
          ...(authorization === undefined ? {} : { authorization }),
        },
        ...(payload === undefined ? {} : { payload }),
      });
      const isJson = String(answer.headers['content-type'] ?? '').includes('json');
      const headers = Object.fromEntries(Object.entries(answer.headers).map(([name, value]) => [name, typeof value === 'number' ? String(value) : value]));
      return { status: answer.statusCode, body: (isJson && answer.body ? JSON.parse(answer.body) : answer.body) as T, headers };
    },
    async issueClaim(body) {
      const response = await under.api<{ claimId: string; certificate: string; privateKey: string }>('POST', '/v1/claims', { body: { template: 'default', ...body }, token: true });
      if (response.status !== 201) throw new Error(`claim creation failed: ${response.status} ${JSON.stringify(response.body)}`);
      return { claimId: response.body.claimId, cert: response.body.certificate, key: response.body.privateKey };
    },
    async close() {
      await app.close();
      await events.close();
      await registry.close();
      dir.remove();
    },
  };
  return under;
}
