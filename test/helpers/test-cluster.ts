import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import type { IClientOptions, MqttClient } from 'mqtt';
import { type ApiResponse, apiRequest } from '../../cli/api-client.ts';
import { deviceKeyAndCsr } from './device-keys.ts';
import { type FleetgateProcess, startFleetgateProcess } from './fleetgate-process.ts';
import { databaseUrlVia, startPostgresProxy, testSchemas } from './postgres.ts';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.ts';
import { makeTempDir } from './temp-dir.ts';
import { type ClientCredential, connectClient } from './test-gateway.ts';

export interface ClusterBroker {
  readonly id: string;
  readonly port: number;
  /** Plain-HTTP /metrics and /healthz. */
  readonly metricsPort: number;
  readonly process: FleetgateProcess;
}

export interface TestCluster {
  readonly dataDir: string;
  readonly apiPort: number;
  readonly brokers: readonly ClusterBroker[];
  /** The `fleetgate provisioning` process (its output, when a test needs to show why something failed). */
  readonly provisioning: FleetgateProcess;
  /** Root CA PEM. */
  readonly ca: string;
  /** Every process reaches Redis through this proxy: stop it to take Redis away. */
  readonly redisProxy: TcpProxy;
  /** Likewise for PostgreSQL. */
  readonly postgresProxy: TcpProxy;
  api<T = unknown>(method: string, path: string, options?: { body?: unknown; token?: string; credential?: ClientCredential }): Promise<ApiResponse<T>>;
  /** A device enrolled over HTTPS with a fresh claim: the real bootstrap path. */
  enrollDevice(serial: string): Promise<ClientCredential>;
  /** A claim credential issued through the API. */
  issueClaim(): Promise<ClientCredential>;
  /** A backend service identity (policy `backend`: devices/#). */
  createService(name: string): Promise<ClientCredential>;
  connect(broker: ClusterBroker, clientId: string, credential: ClientCredential, extra?: Partial<IClientOptions>, beforeConnect?: (client: MqttClient) => void): Promise<MqttClient>;
  /**
   * Starts another broker process, with extra `fleetgate broker` flags (e.g. --workers). With `env`, the
   * broker gets exactly those variables (e.g. its own FLEETGATE_BROKER_TOKEN_FILE) instead of a token made here.
   */
  startBroker(id: string, extraArgs?: readonly string[], env?: Record<string, string>): Promise<ClusterBroker>;
  close(): Promise<void>;
}

/**
 * `fleetgate provisioning` plus brokers as separate processes on the machine's Redis and PostgreSQL (a fresh
 * schema, dropped at close), each reached through a proxy the test can cut. `redisDb` gives the test file a
 * Redis database of its own: aedes-persistence-redis uses fixed key names.
 */
export async function startTestCluster(options: { redisDb: number; brokers?: readonly string[] }): Promise<TestCluster> {
  const redisAdmin = new Redis(`redis://127.0.0.1:6379/${options.redisDb}`);
  await redisAdmin.flushdb();
  redisAdmin.disconnect();
  const redisProxy = await startTcpProxy(6379);
  const postgresProxy = await startPostgresProxy();
  const schemas = testSchemas();
  const dir = makeTempDir('fleetgate-cluster-');
  const env: Record<string, string> = {
    FLEETGATE_REDIS_URL: `redis://127.0.0.1:${redisProxy.port}/${options.redisDb}`,
    FLEETGATE_DATABASE_URL: databaseUrlVia(postgresProxy.port, schemas.fresh()),
    FLEETGATE_CLUSTER_NAME: `test-${randomBytes(4).toString('hex')}`,
    FLEETGATE_LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'warn',
  };
  const common = ['--data-dir', dir.path, '--host', '127.0.0.1', '--hostname', 'localhost'];
  const processes: FleetgateProcess[] = [];
  const brokers: ClusterBroker[] = [];
  try {
    const provisioning = await startFleetgateProcess(['provisioning', ...common, '--api-port', '0'], env);
    processes.push(provisioning);
    const apiPort = Number(/api=https:\/\/[^ ]+:(\d+)/.exec(provisioning.readyLine)?.[1]);
    const ca = readFileSync(join(dir.path, 'pki', 'ca.crt'), 'utf8');
    const adminToken = readFileSync(join(dir.path, 'admin.token'), 'utf8').trim();

    const brokerToken = async (id: string) => {
      // Each broker relays with its own credential (role broker), as in production: never the admin token.
      const created = await apiRequest<{ token: string }>({ baseUrl: `https://127.0.0.1:${apiPort}`, ca, token: adminToken }, 'POST', '/v1/tokens', { name: `broker-${id}-${randomBytes(3).toString('hex')}`, role: 'broker' });
      if (created.status !== 201) throw new Error(`broker token: ${created.status} ${JSON.stringify(created.body)}`);
      return created.body.token;
    };
    const startBroker = async (id: string, extraArgs: readonly string[] = [], brokerEnv?: Record<string, string>): Promise<ClusterBroker> => {
      const started = await startFleetgateProcess(
        ['broker', ...common, '--mqtt-port', '0', '--broker-id', id, '--metrics-port', '0', '--provisioning-url', `https://localhost:${apiPort}`, ...extraArgs],
        { ...env, ...(brokerEnv ?? { FLEETGATE_BROKER_TOKEN: await brokerToken(id) }) },
      );
      processes.push(started);
      const port = (pattern: RegExp) => Number(pattern.exec(started.readyLine)?.[1]);
      return { id, port: port(/mqtt=mqtts:\/\/[^ ]+:(\d+)/), metricsPort: port(/metrics=http:\/\/[^ ]+:(\d+)/), process: started };
    };
    for (const id of options.brokers ?? ['a', 'b']) brokers.push(await startBroker(id));

    const api = <T>(method: string, path: string, call: { body?: unknown; token?: string; credential?: ClientCredential } = {}) =>
      apiRequest<T>(
        { baseUrl: `https://127.0.0.1:${apiPort}`, ca, token: call.token ?? adminToken, ...(call.credential ? { cert: call.credential.cert, key: call.credential.key } : {}) },
        method,
        path,
        call.body,
      );
    const expectStatus = <T>(response: ApiResponse<T>, status: number, what: string): T => {
      if (response.status !== status) throw new Error(`${what}: ${response.status} ${JSON.stringify(response.body)}`);
      return response.body;
    };
    const issueClaim = async () => {
      const body = expectStatus(await api<{ certificate: string; privateKey: string }>('POST', '/v1/claims', { body: { template: 'default' } }), 201, 'claim');
      return { cert: body.certificate, key: body.privateKey };
    };
    return {
      dataDir: dir.path,
      apiPort,
      brokers,
      provisioning,
      ca,
      redisProxy,
      postgresProxy,
      api,
      issueClaim,
      async enrollDevice(serial) {
        const claim = await issueClaim();
        const device = await deviceKeyAndCsr(serial);
        const reply = expectStatus(await api<{ certificate: string }>('POST', '/v1/enroll', { body: { csr: device.csr, serial }, credential: claim }), 201, 'enroll');
        return { cert: reply.certificate, key: device.key };
      },
      async createService(name) {
        const service = await deviceKeyAndCsr(name);
        const body = expectStatus(await api<{ certificate: string }>('POST', '/v1/services', { body: { name, csr: service.csr } }), 201, 'service');
        return { cert: body.certificate, key: service.key };
      },
      // Generous: these brokers share two cores with the whole test suite.
      connect: (broker, clientId, credential, extra = {}, beforeConnect) => connectClient(broker.port, ca, clientId, credential, { connectTimeout: 15_000, ...extra }, beforeConnect),
      async startBroker(id, extraArgs, brokerEnv) {
        const broker = await startBroker(id, extraArgs, brokerEnv);
        brokers.push(broker);
        return broker;
      },
      async close() {
        await Promise.all(processes.map((p) => p.stop()));
        await Promise.all([redisProxy.close(), postgresProxy.close()]);
        await schemas.dropAll();
        dir.remove();
      },
    };
  } catch (error) {
    await Promise.all(processes.map((p) => p.stop()));
    await Promise.all([redisProxy.close(), postgresProxy.close()]);
    await schemas.dropAll();
    throw error;
  }
}
