import type { BrokerName, BrokerUnderTest, Pinning } from './broker-under-test.ts';
import { freePort, launchPrefix } from './broker-under-test.ts';
import { startGatewayProcess, type GatewayProcess } from './gateway-process.ts';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { apiRequest } from '../cli/api-client.ts';
import type { NodeRuntime } from './node-runtimes.ts';

/**
 * The fleetgate side of the suite, in one of its deployment shapes:
 *   serve    the all-in-one `fleetgate serve` (registry, CA, API and broker in one process)
 *   cluster  `fleetgate provisioning` + `fleetgate broker --workers 2` on the local Redis (database 9,
 *            flushed first) and the data directory's SQLite file: two broker processes sharing one port
 *            (node:cluster), i.e. both cores, the shape a one-machine deployment would use to scale.
 *   cluster-1  the same with `--workers 1`: one broker node on Redis, to see what the second one adds.
 */
export const fleetgateModes = ['serve', 'cluster', 'cluster-1'] as const;
export type FleetgateMode = (typeof fleetgateModes)[number];

export interface FleetgateUnderTest extends BrokerUnderTest {
  readonly kind: 'fleetgate';
  readonly mode: FleetgateMode;
  /** Admin/enrollment API, https://127.0.0.1:PORT. */
  readonly apiUrl: string;
  readonly mqttUrl: string;
}

export interface FleetgateLaunch {
  readonly mode: FleetgateMode;
  /** A data directory whose PKI, token and registry already exist (bench/device-credentials.ts made them). */
  readonly dataDir: string;
  readonly pinning: Pinning;
  readonly env?: Record<string, string>;
  /** The Node runtime and fleetgate tree to run (bench/node-runtimes.ts); default this process's Node and checkout. */
  readonly runtime?: NodeRuntime;
  /** The broker's name in the suite's tables; default `fleetgate`. */
  readonly name?: BrokerName;
}

export class FleetgateModeUnavailable extends Error {}

/** Throws FleetgateModeUnavailable for a mode that cannot be launched here, before any set-up work. */
export function assertModeAvailable(mode: FleetgateMode): void {
  if (mode === 'cluster' || mode === 'cluster-1') {
    try {
      execFileSync('redis-cli', ['-n', String(benchRedisDb), 'ping'], { stdio: 'ignore' });
    } catch {
      throw new FleetgateModeUnavailable('--mode cluster needs Redis on 127.0.0.1:6379 (redis-cli ping failed). Use --mode serve.');
    }
  }
}

export async function startFleetgate(launch: FleetgateLaunch): Promise<FleetgateUnderTest> {
  assertModeAvailable(launch.mode);
  switch (launch.mode) {
    case 'serve':
      return startServe(launch);
    case 'cluster':
      return startCluster(launch, 2);
    case 'cluster-1':
      return startCluster(launch, 1);
  }
}

const benchRedisDb = 9;

const runtimeOptions = (launch: FleetgateLaunch) => (launch.runtime ? { nodeBinary: launch.runtime.nodeBinary, root: launch.runtime.fleetgateRoot } : {});
const runtimeFacts = (launch: FleetgateLaunch) => ({ runtime: launch.runtime?.version ?? process.version });
/** The same relaxed limits for every shape (see startServe). */
const benchEnv = {
  FLEETGATE_ENROLL_RATE_PER_CLAIM: '1000000',
  FLEETGATE_API_RATE_LIMIT_PER_MINUTE: '1000000',
  FLEETGATE_PUBLISH_RATE: '1000000',
  FLEETGATE_PUBLISH_BYTES_RATE: '1000000000',
  FLEETGATE_LOG_LEVEL: 'warn',
};

async function startCluster(launch: FleetgateLaunch, workers: number): Promise<FleetgateUnderTest> {
  execFileSync('redis-cli', ['-n', String(benchRedisDb), 'flushdb'], { stdio: 'ignore' });
  const mqttPort = await freePort();
  const apiPort = await freePort();
  const env = { ...benchEnv, FLEETGATE_REDIS_URL: `redis://127.0.0.1:6379/${benchRedisDb}`, FLEETGATE_CLUSTER_NAME: `bench-${process.pid}`, ...launch.env };
  const common = ['--data-dir', launch.dataDir, '--host', '127.0.0.1', '--hostname', 'localhost'];
  // Provisioning is not what is measured: it runs unpinned.
  const provisioning = await startGatewayProcess({ dataDir: launch.dataDir, env, ...runtimeOptions(launch), command: ['provisioning', ...common, '--api-port', String(apiPort)] });
  // Brokers relay enrollment with their own credential (role broker), never the admin token.
  const created = await apiRequest<{ token: string }>(
    { baseUrl: `https://127.0.0.1:${apiPort}`, ca: readFileSync(join(launch.dataDir, 'pki', 'ca.crt'), 'utf8'), token: readFileSync(join(launch.dataDir, 'admin.token'), 'utf8').trim() },
    'POST',
    '/v1/tokens',
    { name: `bench-broker-${randomBytes(3).toString('hex')}`, role: 'broker' },
  );
  if (created.status !== 201) throw new Error(`could not create the broker token: ${created.status} ${JSON.stringify(created.body)}`);
  const startBrokers = () =>
    startGatewayProcess({
      dataDir: launch.dataDir,
      ...runtimeOptions(launch),
      env: { ...env, FLEETGATE_PROVISIONING_URL: `https://localhost:${apiPort}`, FLEETGATE_BROKER_TOKEN: created.body.token },
      // Both cores: that is the point of this shape (the load generator shares them).
      launchPrefix: launchPrefix({ ...launch.pinning, ...(launch.pinning.cpus !== undefined && workers > 1 ? { cpus: '0,1' } : {}) }),
      ...(process.env.FLEETGATE_BENCH_CPU_PROFILE ? { nodeFlags: ['--cpu-prof', `--cpu-prof-dir=${process.env.FLEETGATE_BENCH_CPU_PROFILE}`] } : {}),
      command: ['broker', ...common, '--mqtt-port', String(mqttPort), '--broker-id', 'bench', '--workers', String(workers)],
    });
  let brokers: GatewayProcess = await startBrokers();
  const workersOf = (pid: number) => {
    try {
      return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number);
    } catch {
      return [];
    }
  };
  return {
    name: launch.name ?? 'fleetgate',
    kind: 'fleetgate',
    ...runtimeFacts(launch),
    mode: workers > 1 ? 'cluster' : 'cluster-1',
    host: '127.0.0.1',
    port: mqttPort,
    // The first worker stands for "the broker" where one pid is asked for; pids() has them all.
    get pid() {
      return workersOf(brokers.pid)[0] ?? brokers.pid;
    },
    pids: () => [brokers.pid, ...workersOf(brokers.pid), provisioning.pid],
    apiUrl: `https://127.0.0.1:${apiPort}`,
    mqttUrl: `mqtts://127.0.0.1:${mqttPort}`,
    async restart() {
      const started = performance.now();
      await brokers.stop();
      brokers = await startBrokers();
      return { downMs: performance.now() - started };
    },
    async stop() {
      await brokers.stop();
      await provisioning.stop();
    },
  };
}

async function startServe(launch: FleetgateLaunch): Promise<FleetgateUnderTest> {
  // Fixed ports so that a restart (reconnect storm) comes back at the address the devices retry.
  const mqttPort = await freePort();
  const apiPort = await freePort();
  const start = () =>
    startGatewayProcess({
      dataDir: launch.dataDir,
      ...runtimeOptions(launch),
      mqttPort,
      apiPort,
      launchPrefix: launchPrefix(launch.pinning),
      // FLEETGATE_BENCH_CPU_PROFILE=DIR writes a V8 CPU profile of the gateway there (bench/profile-summary.ts reads it).
      ...(process.env.FLEETGATE_BENCH_CPU_PROFILE ? { nodeFlags: ['--cpu-prof', `--cpu-prof-dir=${process.env.FLEETGATE_BENCH_CPU_PROFILE}`] } : {}),
      env: {
        // The per-claim and API limiters protect against a leaked credential; they are not what is measured.
        FLEETGATE_ENROLL_RATE_PER_CLAIM: '1000000',
        FLEETGATE_API_RATE_LIMIT_PER_MINUTE: '1000000',
        // Per-device publish limits (flow control) would cap the throughput scenarios at limit × publishers:
        // raised, as Mosquitto has none configured. Queue limits and the connect rate keep their defaults.
        FLEETGATE_PUBLISH_RATE: '1000000',
        FLEETGATE_PUBLISH_BYTES_RATE: '1000000000',
        FLEETGATE_LOG_LEVEL: 'warn',
        ...launch.env,
      },
    });
  let stopping = false;
  const watch = (process_: GatewayProcess) => {
    process_.child.once('exit', (code, signal) => {
      if (!stopping) process.stderr.write(`fleetgate (pid ${process_.pid}) exited unexpectedly: code ${code}, signal ${signal}\n${process_.stderrTail()}\n`);
    });
    return process_;
  };
  let gateway: GatewayProcess = watch(await start());
  return {
    name: launch.name ?? 'fleetgate',
    kind: 'fleetgate',
    ...runtimeFacts(launch),
    mode: 'serve',
    host: '127.0.0.1',
    port: mqttPort,
    get pid() {
      return gateway.pid;
    },
    pids: () => [gateway.pid],
    apiUrl: `https://127.0.0.1:${apiPort}`,
    mqttUrl: `mqtts://127.0.0.1:${mqttPort}`,
    async restart() {
      const started = performance.now();
      stopping = true;
      await gateway.stop();
      stopping = false;
      gateway = watch(await start());
      return { downMs: performance.now() - started };
    },
    async stop() {
      stopping = true;
      await gateway.stop();
    },
  };
}
